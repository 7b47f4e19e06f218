"""Row-level security on PostgreSQL (migration 0028, ``guestguard.rls``): the
application connects as a role that owns nothing, and each transaction sees
only the workspaces its actor may. These tests run the real application as
such a role (``rls_app``), made in the test database as operators make theirs
(``guestguard app-role``)."""
import uuid

import psycopg
import pytest
from pyramid.scripting import prepare
from sqlalchemy import create_engine, func, select, text, update

from guestguard import rls
from guestguard.db import utcnow
from guestguard.events.models import Event
from guestguard.notifications.models import Suppression
from guestguard.plugins import hookimpl
from guestguard.testing import (
    add_guest,
    app_role_url,
    event_host,
    in_request,
    inbox,
    issue,
    session_bearer,
    settings_for,
)

pytestmark = pytest.mark.one_pass("services")

EVENT = {"name": "Harvest Supper", "status": "published", "starts_at": "2030-09-20T19:00:00",
         "timezone": "Europe/London"}
TASK_SAW: list[list[str]] = []


def event_names_of_every_workspace(request) -> None:
    """A task that forgets the workspace filter, as the view below does."""
    TASK_SAW.append(sorted(request.db.scalars(select(Event.name))))


def leaky_event_names(request):
    """A view that forgets its workspace filter: every event it can read."""
    if request.identity is None:
        return {"names": None}
    request.ctx.enqueue(event_names_of_every_workspace)
    return {"names": sorted(request.db.scalars(select(Event.name)))}


class LeakyPlugin:
    @hookimpl
    def configure(self, config):
        config.add_route("leaky_event_names", "/test/leaky-event-names")
        config.add_view(leaky_event_names, route_name="leaky_event_names", renderer="json",
                        request_method="GET")
        config.add_task(event_names_of_every_workspace)


@pytest.fixture(scope="module")
def app_url(postgres_owner_url):
    if postgres_owner_url is None:
        pytest.skip("row-level security is PostgreSQL's")
    return app_role_url(postgres_owner_url)


@pytest.fixture
def rls_app(make_app, app_url, db_url):
    return make_app({"db.url": app_url}, plugins=[("leaky", LeakyPlugin())])


@pytest.fixture
def host(rls_app):
    return event_host(rls_app, lambda func, registry: in_request(registry, func), EVENT)


@pytest.fixture
def two_workspaces(rls_app, host):
    """Ada's team (host) with its event, and Eve's own workspace with one of hers."""
    eve_workspace = rls_app.get("/api/v1/workspaces", headers=host["eve"]).json["workspaces"][0]["id"]
    rls_app.post_json("/api/v1/events", {"workspace_id": eve_workspace, **EVENT, "name": "Eve's Picnic"},
                      headers=host["eve"])
    return host


def app_connection(app_url):
    """A psycopg connection as the application's role, outside the app."""
    return psycopg.connect(app_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=False)


def tenant_tables(owner_url) -> list[str]:
    engine = create_engine(owner_url)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(text(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND column_name = 'workspace_id' ORDER BY table_name")))
    finally:
        engine.dispose()


def test_every_table_with_a_workspace_is_forced_under_a_policy(postgres_owner_url, app_url):
    engine = create_engine(postgres_owner_url)
    with engine.connect() as connection:
        unprotected = list(connection.scalars(text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname = ANY(:tables) "
            "AND NOT (c.relrowsecurity AND c.relforcerowsecurity AND EXISTS "
            "(SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))"),
            {"tables": [*tenant_tables(postgres_owner_url), "workspaces", "domain_event_deliveries"]}))
        role = connection.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :name"),
                                  {"name": app_url.split("://", 1)[1].split("@", 1)[0]}).one()
        owners = set(connection.scalars(text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")))
    engine.dispose()
    assert unprotected == []
    assert tuple(role) == (False, False)
    assert app_url.split("://", 1)[1].split("@", 1)[0] not in owners


def test_a_query_without_the_settings_sees_no_rows(two_workspaces, postgres_owner_url, app_url):
    tables = [*tenant_tables(postgres_owner_url), "workspaces"]
    with app_connection(app_url) as connection:
        seen = {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}
    assert seen == dict.fromkeys(tables, 0)
    # The same tables as the owner's system scope: the rows are there.
    engine = create_engine(postgres_owner_url)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Event)) == 2
    engine.dispose()


def test_the_settings_show_exactly_the_workspaces_they_name(two_workspaces, app_url):
    ours = two_workspaces["workspace"]
    with app_connection(app_url) as connection:
        connection.execute("SELECT set_config('guestguard.workspaces', %s, true)", (ours,))
        assert [row[0] for row in connection.execute("SELECT name FROM events")] == ["Harvest Supper"]
        assert {str(row[0]) for row in connection.execute("SELECT workspace_id FROM memberships")} == {ours}
        connection.rollback()
        # A transaction-local setting ends with its transaction: nothing is
        # left on the connection for the next client of a pooler.
        assert connection.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_the_role_cannot_switch_row_security_off_nor_step_around_it(two_workspaces, app_url):
    ours = two_workspaces["workspace"]
    with app_connection(app_url) as connection:
        connection.execute("SET row_security = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            connection.execute("SELECT count(*) FROM events")
        connection.rollback()
        for statement in ("ALTER TABLE events DISABLE ROW LEVEL SECURITY",
                          "ALTER TABLE events NO FORCE ROW LEVEL SECURITY", "DROP POLICY tenant ON events",
                          "SET ROLE postgres", "ALTER ROLE CURRENT_USER BYPASSRLS"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute(statement)
            connection.rollback()
        # Nor write a row into a workspace it was not given.
        connection.execute("SELECT set_config('guestguard.workspaces', %s, true)", (ours,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            connection.execute("UPDATE events SET workspace_id = %s", (str(uuid.uuid4()),))
        connection.rollback()


def test_a_view_that_forgets_its_workspace_filter_is_still_caught(two_workspaces, rls_app, make_app, db_url):
    TASK_SAW.clear()
    eve = two_workspaces["eve"]
    assert rls_app.get("/test/leaky-event-names", headers=eve).json["names"] == ["Eve's Picnic"]
    assert rls_app.get("/test/leaky-event-names").json["names"] is None
    # Ada is in her team and her own workspace: what she sees is hers.
    assert rls_app.get("/test/leaky-event-names", headers=two_workspaces["ada"]).json["names"] == [
        "Harvest Supper"]
    # The task Eve's request queued ran in Eve's workspaces only.
    assert TASK_SAW[0] == ["Eve's Picnic"] and TASK_SAW[1] == ["Harvest Supper"]
    # The very same view on a connection that bypasses the policies (the
    # test database's superuser) shows the leak the policies stop.
    owner_app = make_app(settings_for(db_url), plugins=[("leaky", LeakyPlugin())])
    assert owner_app.get("/test/leaky-event-names", headers=session_bearer(
        owner_app.app.registry, "eve@example.com")).json["names"] == ["Eve's Picnic", "Harvest Supper"]


def identified(registry, headers):
    """A request's identity with these headers, the session's scope and what
    the transaction's settings name after it."""
    with prepare(registry=registry) as env:
        request = env["request"]
        request.headers.update(headers)
        with request.tm:
            identity = request.identity
            named = request.db.execute(text("SELECT current_setting('guestguard.user', true), "
                                            "current_setting('guestguard.workspaces', true)")).one()
            return identity, rls.scope_of(request.db), tuple(value or "" for value in named)


def test_an_access_token_reads_its_persons_roles_under_their_id_and_a_dead_one_is_left_no_scope(
        two_workspaces, rls_app):
    registry = rls_app.app.registry
    ada = two_workspaces["ada"]
    listed = rls_app.get("/api/v1/workspaces", headers=ada).json["workspaces"]
    identity, scope, named = identified(registry, ada)
    # The app's role sees Ada's memberships only under her id: both are read.
    assert {str(workspace_id): role for workspace_id, role in identity.roles.items()} == {
        workspace["id"]: workspace["role"] for workspace in listed} and len(listed) == 2
    assert scope == rls.Scope(user_id=identity.user.id) and named == (str(identity.user.id), "")
    rls_app.post_json("/api/v1/auth/logout", {}, headers=ada, status=204)
    assert identified(registry, ada) == (None, rls.NOBODY, ("", ""))


def test_a_task_queued_by_nobody_works_across_workspaces(two_workspaces, rls_app):
    TASK_SAW.clear()
    huey_task = rls_app.app.registry["huey.tasks"][f"{__name__}.event_names_of_every_workspace"]
    huey_task()  # as the reaper or a periodic task would: no one's workspace queued it
    assert TASK_SAW == [["Eve's Picnic", "Harvest Supper"]]


def test_the_cross_tenant_requests_answer_as_without_row_security(two_workspaces, rls_app):
    host = two_workspaces
    guest = add_guest(rls_app, host)
    guest_url = f"{host['url']}/guests/{guest['id']}"
    assert rls_app.get(host["url"], headers=host["ada"]).json["event"]["name"] == "Harvest Supper"
    assert rls_app.get(guest_url, headers=host["sam"]).json["guest"]["name"] == "Grace Hopper"
    missing = rls_app.get(f"/api/v1/events/{uuid.uuid4()}", headers=host["eve"], status=404).json
    assert rls_app.get(host["url"], headers=host["eve"], status=404).json == missing
    rls_app.get(guest_url, headers=host["eve"], status=404)
    rls_app.patch_json(host["url"], {"name": "Mine now"}, headers=host["eve"], status=404)
    rls_app.delete(guest_url, headers=host["sam"], status=403)
    rls_app.get(host["url"], status=401)
    key = rls_app.post_json(f"/api/v1/workspaces/{host['workspace']}/api-keys", {"name": "door", "role": "admin"},
                            headers=host["ada"], status=201).json["api_key"]["secret"]
    with_key = {"Authorization": f"Bearer {key}"}
    assert rls_app.get(host["url"], headers=with_key).json["event"]["name"] == "Harvest Supper"
    assert [event["name"] for event in rls_app.get("/api/v1/events", headers=with_key).json["events"]] == [
        "Harvest Supper"]
    assert [event["name"] for event in rls_app.get("/api/v1/events", headers=host["eve"]).json["events"]] == [
        "Eve's Picnic"]


def test_the_guest_token_paths_work_under_row_security(two_workspaces, rls_app):
    host = two_workspaces
    guest = add_guest(rls_app, host)
    token = issue(rls_app, host, guest)["token"]
    assert rls_app.get(f"/api/v1/access/{token}").json["guest"]["name"] == "Grace Hopper"
    assert "Harvest Supper" in rls_app.get(f"/access/{token}").text
    assert rls_app.get(f"/access/{token}/event.ics").content_type == "text/calendar"
    answer = rls_app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 0})
    assert answer.json["recorded"] is True
    headcount = rls_app.get(host["url"], headers=host["ada"]).json["event"]["headcount"]
    assert headcount["yes"] == 1
    rls_app.get(f"/api/v1/access/{token[:-1]}x", status=404)
    # The invitation email's unsubscribe link, read and used without a login.
    rls_app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    message = inbox(rls_app, "grace@example.com")[-1]
    path = message.unsubscribe_url.removeprefix("http://guestguard.test")
    assert "Gala team" in rls_app.get(path).text
    rls_app.post(path, {"List-Unsubscribe": "One-Click"})
    suppressed = in_request(rls_app.app.registry, lambda request: list(request.db.scalars(
        select(Suppression.address))))
    assert suppressed == ["grace@example.com"]


def test_the_look_up_that_opens_and_logs_at_once_sees_its_links_workspace_alone(two_workspaces, rls_app,
                                                                                   postgres_owner_url):
    """``access.LOOK_UP_LOGGED`` opens the link's workspace in the statement
    that reads it: as the application's role, the link, guest and event are
    found, the use's row is written in that workspace, and the transaction
    and the session's scope see that workspace and no other."""
    from guestguard.guard.access import look_up
    from guestguard.guard.models import OK, REVOKED, UNKNOWN, AccessEntry

    host = two_workspaces
    token = issue(rls_app, host, add_guest(rls_app, host))["token"]

    def use(request, raw):
        rls.set_scope(request.db, rls.NOBODY)  # a guest's request: no workspace until the link opens one
        entry = {"id": uuid.uuid4(), "at": utcnow(), "kind": "view", "ip": "192.0.2.7", "network": "192.0.2.0/24",
                 "user_agent": "Mozilla/5.0", "device": "Firefox on Linux", "automated": False}
        found = look_up(request.db, raw, entry)
        logged = request.db.scalars(select(AccessEntry.workspace_id).where(AccessEntry.id == entry["id"])).all()
        return (found, rls.scope_of(request.db), sorted(request.db.scalars(select(Event.name))), logged,
                request.db.scalar(text("SELECT current_setting('guestguard.workspaces', true)")))

    found, scope, events, logged, named = in_request(rls_app.app.registry, lambda request: use(request, token))
    workspace = uuid.UUID(host["workspace"])
    assert (found.outcome, found.logged, found.guest.name, found.event.name) == (OK, True, "Grace Hopper",
                                                                              "Harvest Supper")
    assert scope.workspaces == {workspace} and events == ["Harvest Supper"]
    assert logged == [workspace] and named == str(workspace)
    unknown = f"{token[:-1]}{'A' if token[-1] != 'A' else 'B'}"
    found, scope, events, logged, named = in_request(rls_app.app.registry, lambda request: use(request, unknown))
    # An unknown token's use is logged in no workspace, which opens nothing.
    assert (found.outcome, found.logged, found.link) == (UNKNOWN, True, None)
    assert (scope, events, named) == (rls.NOBODY, [], "") and logged == [None]
    # A revoked link is found and logged as revoked, in its workspace.
    owner = create_engine(postgres_owner_url)
    with owner.begin() as connection:
        connection.execute(text("UPDATE invitation_links SET revoked_at = now()"))
    owner.dispose()
    found, scope, events, logged, named = in_request(rls_app.app.registry, lambda request: use(request, token))
    assert (found.outcome, found.logged, found.guest.name) == (REVOKED, True, "Grace Hopper")
    assert scope.workspaces == {workspace} and logged == [workspace] and events == ["Harvest Supper"]


def test_signing_up_makes_a_workspace_the_new_owner_sees(rls_app):
    from guestguard.testing import signup

    signup(rls_app, email="lin@example.com", name="Lin")
    [message] = inbox(rls_app, "lin@example.com")
    assert message is not None
    names = in_request(rls_app.app.registry,
                       lambda request: list(request.db.scalars(text("SELECT name FROM workspaces"))))
    assert names == ["Lin's events"]


def test_scopes_are_kept_for_tasks_without_credentials():
    scope = rls.Scope(workspaces=frozenset({uuid.UUID(int=1)}), user_id=uuid.UUID(int=2))
    assert rls.from_stored(scope.stored()) == scope
    assert rls.SYSTEM.stored() is None and rls.NOBODY.stored() is None
    assert rls.from_stored(None) == rls.SYSTEM
    with pytest.raises(ValueError, match="role name"):
        rls.app_role_statements("app; DROP TABLE users")


def test_a_group_of_deliveries_takes_each_hosts_messages_whoever_leads_it(make_app, app_url, db_url):
    """The worker thread that claims and records for threads arriving with
    it runs in its own task's workspaces; the others' messages, of another
    host, are claimed, sent and recorded all the same."""
    from guestguard.notifications.models import Notification
    from guestguard.notifications.services import deliver
    from guestguard.notifications.tasks import claim_together, record_together

    app = make_app({"db.url": app_url, "huey.immediate": "false"})
    registry = app.app.registry
    host = event_host(app, lambda func, registry: in_request(registry, func), EVENT)
    eve_workspace = app.get("/api/v1/workspaces", headers=host["eve"]).json["workspaces"][0]["id"]
    picnic = app.post_json("/api/v1/events", {"workspace_id": eve_workspace, **EVENT, "name": "Eve's Picnic"},
                           headers=host["eve"]).json["event"]["id"]
    theirs = app.post_json(f"/api/v1/events/{picnic}/guests", {"name": "Alan Turing", "email": "alan@example.com"},
                           headers=host["eve"], status=201).json["guest"]
    app.post_json(f"/api/v1/events/{picnic}/guests/{theirs['id']}/send", {}, headers=host["eve"], status=202)
    grace = add_guest(app, host)
    app.post_json(f"{host['url']}/guests/{grace['id']}/send", {}, headers=host["ada"], status=202)
    owner = create_engine(db_url)
    with owner.connect() as connection:
        queued = dict(connection.execute(select(Notification.recipient, Notification.id)).all())
    owner.dispose()

    with prepare(registry=registry) as env:  # as a task of Ada's runs
        request = env["request"]
        rls.set_scope(request.db, rls.Scope(workspaces=frozenset({uuid.UUID(host["workspace"])})))
        attempts = claim_together(request.ctx, [queued["grace@example.com"], queued["alan@example.com"]])
        assert None not in attempts, "each host's message claimed"
        record_together(request.ctx, [(attempt, deliver(attempt)) for attempt in attempts])
    assert {message.recipient for message in inbox(app, "grace@example.com") + inbox(app, "alan@example.com")} == {
        "grace@example.com", "alan@example.com"}
    with create_engine(db_url).connect() as connection:
        assert set(connection.execute(select(Notification.status)).scalars()) == {"succeeded"}


def test_the_worker_and_the_operator_tools_on_their_own_connections_see_every_workspace(make_app, app_url,
                                                                                        db_url):
    """The lease keeper, the scrape's outbox counts and the export read from
    a replica each use a connection or session of their own, not a task's
    or request's: they too must name what they may see, or they see nothing."""
    from guestguard.notifications.models import Notification
    from guestguard.ops.metrics import StateCollector
    from guestguard.tasks import RUNNING, renew_leases

    app = make_app({"db.url": app_url, "huey.immediate": "false", "db.replica_url": app_url})
    registry = app.app.registry
    host = event_host(app, lambda func, registry: in_request(registry, func), EVENT)
    grace = add_guest(app, host)
    app.post_json(f"{host['url']}/guests/{grace['id']}/send", {}, headers=host["ada"], status=202)
    owner = create_engine(db_url)
    with owner.begin() as connection:
        claimed_at = utcnow()
        notification_id = connection.execute(
            update(Notification).values(status=RUNNING, claimed_at=claimed_at).returning(Notification.id)).scalar()
    owner.dispose()
    assert renew_leases(registry, Notification, [notification_id], claimed_at) == 1
    outbox = {family.name: family for family in StateCollector(registry["db.engine"], None)._database()}
    assert [sample.value for sample in outbox["gg_outbox_messages"].samples] == [1]
    export = app.get(f"{host['url']}/guests/export?format=csv", headers=host["ada"]).body.decode("utf-8-sig")
    assert "Grace Hopper" in export


def test_a_batchs_notes_on_its_own_connection_see_every_workspace(make_app, app_url, db_url):
    """A bulk batch's acceptance notes go through the driver on a connection
    the batch keeps: as the application's role they too must name what they
    may see, or the note finds no row and the batch stops as if its claim
    were gone."""
    from guestguard.notifications.models import DeliveryDay, Notification
    from guestguard.notifications.services import deliver
    from guestguard.notifications.tasks import _Notes, claim_together

    app = make_app({"db.url": app_url, "huey.immediate": "false"})
    registry = app.app.registry
    host = event_host(app, lambda func, registry: in_request(registry, func), EVENT)
    grace = add_guest(app, host)
    app.post_json(f"{host['url']}/guests/{grace['id']}/send", {}, headers=host["ada"], status=202)
    owner = create_engine(db_url)
    with owner.connect() as connection:
        notification_id = connection.execute(select(Notification.id)).scalar_one()

    with prepare(registry=registry) as env:  # a task queued by nobody, as a send-all's batch
        [attempt] = claim_together(env["request"].ctx, [notification_id])
    provider_message_id, error, _, sent_by, _ = deliver(attempt)
    assert error is None
    notes = _Notes(registry)
    try:
        assert notes.write(attempt, provider_message_id, sent_by), "the note found the claimed row"
    finally:
        notes.close()
    with owner.connect() as connection:
        noted = connection.execute(select(Notification.sent_at, Notification.delivery_state,
                                          Notification.provider_message_id)).one()
        counted = connection.execute(select(DeliveryDay.sent)).all()
    owner.dispose()
    assert noted.sent_at is not None and noted.delivery_state == "sent"
    assert noted.provider_message_id == provider_message_id
    assert counted == [], "the send is counted when its outcome is recorded, not by the note"
