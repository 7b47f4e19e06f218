"""Privacy: the data map (every personal-looking column claimed by a privacy
job) and forgetting a guest, through the real application."""
import uuid

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, select

from guestguard.activity.models import Activity
from guestguard.audit.models import AuditEvent
from guestguard.events.models import Guest, InvitationLink, Rsvp
from guestguard.guard.models import AccessEntry, AccessTally
from guestguard.models import metadata
from guestguard.notifications.models import Notification
from guestguard.plugins import PersonalData, PrivacyJob, SettingsError, hookimpl
from guestguard.privacy.datamap import looks_personal, unclaimed, unknown_claims
from guestguard.privacy.jobs import FORGOTTEN_NAME
from guestguard.privacy.models import DataExport
from guestguard.tasks import PENDING
from guestguard.testing import add_guest, csrf, event_host, inbox, issue, link, main_text, scalar, signed_in

EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London", "default_plus_ones": 2}
PROXY = "10.0.0.1"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


class NotesPlugin:
    """A plugin storing personal data of its own: it declares it, and erases
    its part when a guest is forgotten."""

    def __init__(self):
        self.forgotten = []
        self.broken = False

    def export(self, ctx, user):
        if self.broken:
            raise OSError("the notes store is away")
        yield "door_notes.json", iter([{"remark": "Came early"}])

    @hookimpl
    def register_privacy_jobs(self, settings):
        return [PrivacyJob(
            name="door_notes",
            data=(PersonalData("door_notes", ("remark",), "free text", "guest", "door_notes.json",
                               "deleted by forget"),),
            forget_guest=lambda ctx, guest: self.forgotten.append(guest.id),
            export_user=self.export)]


@pytest.fixture
def notes():
    return NotesPlugin()


@pytest.fixture
def app(make_app, notes):
    return make_app({"app.trusted_proxies": PROXY}, plugins=[("notes", notes)])


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def jobs(app):
    return app.app.registry["privacy.jobs"]


# --- the data map ------------------------------------------------------------------------


def test_every_personal_looking_column_is_claimed_by_a_privacy_job(app):
    assert unclaimed(metadata, jobs(app)) == []


def test_every_claim_names_a_stored_column(app):
    core = [job for job in jobs(app) if job.name != "door_notes"]  # the test plugin's table is imaginary
    assert unknown_claims(metadata, core) == []
    assert unknown_claims(metadata, jobs(app)) == ["door_notes: door_notes.remark"]


def test_a_planted_personal_column_no_job_claims_fails_the_map(app):
    planted = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(planted)
    Table("loyalty_cards", planted, Column("id", String(36), primary_key=True),
          Column("holder_email", String(320)), Column("card_number", String(20)))
    guests = planted.tables["guests"]
    guests.append_column(Column("home_address", String(300)))
    assert unclaimed(planted, jobs(app)) == ["guests.home_address", "loyalty_cards.holder_email"]


@pytest.mark.parametrize("name, kind, personal", [
    ("email", String(320), True), ("user_agent", String(500), True), ("ip", String(45), True),
    ("host_message", String(500), True), ("created_by_id", String(36), True), ("actor_id", String(36), True),
    ("guest_id", String(36), False), ("provider_message_id", String(255), False), ("status", String(16), False),
])
def test_what_looks_personal(name, kind, personal):
    assert looks_personal(Column(name, kind)) is personal


def test_a_job_with_an_unknown_subject_is_refused():
    with pytest.raises(SettingsError, match="unknown subject 'visitor'"):
        PersonalData("guests", ("name",), "contact", "visitor", "", "")


def test_two_jobs_of_one_name_stop_startup(make_app):
    class Twice:
        @hookimpl
        def register_privacy_jobs(self, settings):
            return [PrivacyJob("events", ())]

    with pytest.raises(SettingsError, match="two privacy jobs are named 'events'"):
        make_app(plugins=[("twice", Twice())])


# --- forgetting a guest -------------------------------------------------------------------


def visit(app, token, ip="203.0.113.7"):
    return app.get(f"/access/{token}", headers={"X-Forwarded-For": ip, "User-Agent": IPHONE},
                   extra_environ={"REMOTE_ADDR": PROXY})


def answer(app, token, response="yes", plus_ones=1, message="Can't wait! Grace, 07700 900123"):
    return app.post(f"/rsvp/{token}", {"response": response, "plus_ones": str(plus_ones), "message": message},
                    status=303, headers={"X-Forwarded-For": "203.0.113.7", "User-Agent": IPHONE},
                    extra_environ={"REMOTE_ADDR": PROXY})


def counts(app, host):
    return app.get(host["url"], headers=host["ada"]).json["event"]["headcount"]


def access_totals(app, host, guest_id):
    return app.get(f"{host['url']}/guests/{guest_id}/access", headers=host["ada"]).json["totals"]


def count(app, run_in_request, model, *where):
    return scalar(app, run_in_request, select(func.count()).select_from(model).where(*where))


@pytest.fixture
def known_guest(app, host):
    """Grace, who was invited, opened her link twice and answered yes with a
    plus-one and a message; Alan, who stays."""
    grace = add_guest(app, host, phone="+44 20 7946 0958", notes="Allergic to nuts", tags=["family"],
                      group="Hoppers", plus_ones_allowed=2)
    add_guest(app, host, name="Alan Turing", email="alan@example.com")
    app.post_json(f"{host['url']}/guests/{grace['id']}/send", {}, headers=host["ada"], status=202)
    token = issue(app, host, grace)["token"]
    visit(app, token)
    visit(app, token, "198.51.100.4")
    answer(app, token)
    return grace, token


def test_forgetting_erases_the_guest_and_keeps_every_count(app, host, known_guest, run_in_request, notes):
    grace, token = known_guest
    guest_id = uuid.UUID(grace["id"])
    before, uses_before = counts(app, host), access_totals(app, host, grace["id"])
    assert before["yes"] == 1 and before["expected"] == 2 and before["opened"] == 1
    assert count(app, run_in_request, Rsvp, Rsvp.guest_id == guest_id) == 1

    forgotten = app.post_json(f"{host['url']}/guests/{grace['id']}/forget", {}, headers=host["ada"]).json["guest"]
    assert forgotten["name"] == FORGOTTEN_NAME and forgotten["forgotten_at"]

    guest = app.get(f"{host['url']}/guests/{grace['id']}", headers=host["ada"]).json["guest"]
    assert (guest["name"], guest["email"], guest["phone"], guest["notes"], guest["tags"], guest["group"],
            guest["plus_one_names"], guest["answers"]) == (FORGOTTEN_NAME, None, None, "", [], "", [], {})
    assert (guest["response"], guest["plus_ones_coming"]) == ("yes", 1), "the answer's tally stays"
    assert counts(app, host) == before
    assert access_totals(app, host, grace["id"]) == uses_before, "uses live on in the tallies"
    assert count(app, run_in_request, AccessTally, AccessTally.guest_id == guest_id) > 0
    for model in (Rsvp, AccessEntry, InvitationLink, Activity):
        assert count(app, run_in_request, model, model.guest_id == guest_id) == 0, model.__tablename__
    recipients = run_in_request(lambda r: [(n.recipient, n.context) for n in r.db.scalars(
        select(Notification).where(Notification.kind == "guest"))], app.app.registry)
    assert recipients and all(recipient != "grace@example.com" for recipient, _ in recipients)
    assert ("", {}) in recipients
    assert notes.forgotten == [guest_id], "a plugin's job erases its part"
    # The link opens nothing.
    app.get(f"/access/{token}", status=404)
    # The audit trail says what happened to whom by id, never by name.
    audits = run_in_request(lambda r: list(r.db.scalars(select(AuditEvent).where(
        AuditEvent.target_id == grace["id"]))), app.app.registry)
    forgot = [row for row in audits if row.action == "guest.forgotten"]
    assert len(forgot) == 1 and "Grace" not in str(forgot[0].details) and "grace@" not in str(forgot[0].details)
    guests_own = [row for row in audits if row.actor_user_id is None]
    assert guests_own and all(row.ip is None for row in guests_own), "the guest's address goes"
    # Nothing about Grace is left in any column of her rows.
    stored = run_in_request(lambda r: repr([getattr(r.db.get(Guest, guest_id), c.name)
                                            for c in Guest.__table__.columns]), app.app.registry)
    assert "Grace" not in stored and "Hopper" not in stored and "nuts" not in stored and "+44" not in stored
    # Alan is untouched.
    alan = app.get(f"{host['url']}/guests", params={"q": "alan"}, headers=host["ada"]).json["guests"][0]
    assert alan["email"] == "alan@example.com"


def test_forgetting_twice_answers_the_same_and_records_once(app, host, known_guest, run_in_request):
    grace, _ = known_guest
    url = f"{host['url']}/guests/{grace['id']}/forget"
    first = app.post_json(url, {}, headers=host["ada"]).json
    second = app.post_json(url, {}, headers=host["ada"]).json
    assert first == second
    assert count(app, run_in_request, AuditEvent, AuditEvent.action == "guest.forgotten") == 1


def test_a_guest_of_another_workspace_is_not_found(app, host, known_guest, run_in_request):
    grace, _ = known_guest
    refused = app.post_json(f"{host['url']}/guests/{grace['id']}/forget", {}, headers=host["eve"], status=404)
    assert refused.json["error"]["code"] == "not_found"
    app.post_json(f"{host['url']}/guests/{uuid.uuid4()}/forget", {}, headers=host["ada"], status=404)
    assert scalar(app, run_in_request, select(Guest.name).where(Guest.id == uuid.UUID(grace["id"]))) == "Grace Hopper"


def test_door_staff_may_not_forget(app, host, known_guest):
    grace, _ = known_guest
    refused = app.post_json(f"{host['url']}/guests/{grace['id']}/forget", {}, headers=host["sam"], status=403)
    assert refused.json["error"]["required"] == "guests.edit"


def test_the_host_forgets_a_guest_from_the_guest_page(app, host, known_guest, run_in_request):
    grace, _ = known_guest
    ada = signed_in(app, run_in_request, "ada@example.com")
    path = f"/events/{host['event']['id']}/guests/{grace['id']}"
    page = ada.get(path)
    assert "Forget Grace Hopper…" in main_text(page)
    # Without its token the form is refused and nothing changes.
    ada.post(path, {"action": "forget", "confirm": "yes"}, status=400)
    asked = ada.post(path, {"action": "forget", "csrf_token": csrf(page)})
    assert "Are you sure?" in main_text(asked) and asked.html.find("details", id="confirm-forget").has_attr("open")
    assert scalar(app, run_in_request, select(Guest.forgotten_at).where(Guest.id == uuid.UUID(grace["id"]))) is None
    done = asked.forms["confirm-forget-form"].submit(status=303).follow()
    text = main_text(done)
    assert "Grace Hopper was forgotten" in text and "Forget " not in text
    assert scalar(app, run_in_request, select(Guest.name).where(Guest.id == uuid.UUID(grace["id"]))) == FORGOTTEN_NAME


def test_an_answer_that_waited_for_the_forget_is_refused(app, host, known_guest, run_in_request):
    """The guest's answer read their link before the host's forget and took
    the guest's row after it: it records nothing."""
    from guestguard.events.invitations import submit_rsvp
    from guestguard.events.schemas import RsvpInput
    from guestguard.events.services import EventsError
    from guestguard.guard.access import look_up
    from guestguard.privacy.services import forget_guest

    grace, token = known_guest

    def answer_after_forget(request):
        found = look_up(request.db, token)
        forget_guest(request.ctx, found.guest.id)
        with pytest.raises(EventsError) as refused:
            submit_rsvp(request.ctx, found.link, found.guest, found.event, RsvpInput(response="no"), token)
        return refused.value.status, refused.value.code

    assert run_in_request(answer_after_forget, app.app.registry) == (404, "not_found")
    assert count(app, run_in_request, Rsvp, Rsvp.guest_id == uuid.UUID(grace["id"])) == 0


# --- the data export -----------------------------------------------------------------------


@pytest.fixture
def export_dir(tmp_path):
    return tmp_path / "exports"


@pytest.fixture
def exporting(make_app, notes, export_dir):
    return make_app({"app.trusted_proxies": PROXY, "privacy.export_dir": str(export_dir)},
                    plugins=[("notes", notes)])


def read_archive(body: bytes) -> dict:
    import json
    import zipfile
    from io import BytesIO

    with zipfile.ZipFile(BytesIO(body)) as archive:
        return {name: json.loads(archive.read(name)) for name in archive.namelist()}


def download_link(app, email="ada@example.com") -> str:
    (message,) = [m for m in inbox(app, email) if "data is ready" in m.subject]
    return link(message, "account/data-exports")


def test_the_owner_gets_a_copy_of_their_data_once(exporting, run_in_request, export_dir):
    app = exporting
    host = event_host(app, run_in_request, EVENT)
    grace = add_guest(app, host, notes="Allergic to nuts")
    token = issue(app, host, grace)["token"]
    visit(app, token)
    answer(app, token)

    asked = app.post_json("/api/v1/me/data-export", {}, headers=host["ada"], status=202).json["export"]
    assert asked["status"] == "pending"
    path = download_link(app)
    assert path.startswith(f"/account/data-exports/{asked['id']}/")

    # Anonymous: sign in first, then the link.
    anonymous = app.get(path, status=302)
    assert "/login?next=" in anonymous.location
    # Someone else signed in: as if there were no such link.
    eve = signed_in(app, run_in_request, "eve@example.com")
    assert "Page not found" in eve.get(path, status=404).text
    ada = signed_in(app, run_in_request, "ada@example.com")
    got = ada.get(path, status=200)
    assert got.content_type == "application/zip" and "attachment" in got.headers["Content-Disposition"]
    assert got.headers["Cache-Control"].startswith("no-store") or "no-store" in got.headers["Cache-Control"]
    files = read_archive(got.body)
    manifest = files.pop("manifest.json")
    assert manifest["schema_version"] == 1 and manifest["generated_at"]
    assert manifest["files"] == {name: len(rows) for name, rows in files.items()}
    assert set(files) == {"user.json", "sessions.json", "workspaces.json", "members.json", "events.json",
                          "guests.json", "rsvps.json", "access_log.json", "notifications.json",
                          "audit_events.json", "door_notes.json"}
    assert files["door_notes.json"] == [{"remark": "Came early"}], "a plugin's job adds its file"
    assert files["user.json"][0]["email"] == "ada@example.com" and "password_hash" not in files["user.json"][0]
    assert all("token_hash" not in row for row in files["sessions.json"])
    assert [g["notes"] for g in files["guests.json"]] == ["Allergic to nuts"]
    assert files["rsvps.json"][0]["message"].startswith("Can't wait!")
    assert files["access_log.json"][0]["user_agent"] == IPHONE
    assert {m["email"] for m in files["members.json"]} == {"ada@example.com", "sam@example.com"}
    assert any(row["action"] == "data_export.requested" for row in files["audit_events.json"])
    # The file is gone once downloaded; the link works once.
    assert list(export_dir.iterdir()) == []
    again = ada.get(path, status=410)
    assert "already used" in again.text


def test_asking_twice_while_it_is_built_makes_one_export(exporting, run_in_request):
    app = exporting
    host = event_host(app, run_in_request, EVENT)

    def ask_twice(request):
        from guestguard.accounts.models import User
        from guestguard.privacy.exports import request_export

        user = request.db.scalar(select(User).where(User.email == "ada@example.com"))
        first, new = request_export(request.ctx, user)
        second, again = request_export(request.ctx, user)
        return first.id == second.id, new, again, first.status

    assert run_in_request(ask_twice, app.app.registry) == (True, True, False, PENDING)
    assert count(app, run_in_request, DataExport) == 1
    assert len([m for m in inbox(app, "ada@example.com") if "data is ready" in m.subject]) == 1
    # Once built, a new ask is a new export.
    app.post_json("/api/v1/me/data-export", {}, headers=host["ada"], status=202)
    assert count(app, run_in_request, DataExport) == 2


def test_an_expired_link_is_refused_and_its_file_deleted(exporting, run_in_request, export_dir):
    import datetime as dt

    import time_machine

    from guestguard.privacy.tasks import purge_export_files
    from guestguard.tasks import run_task_now

    app = exporting
    host = event_host(app, run_in_request, EVENT)
    app.post_json("/api/v1/me/data-export", {}, headers=host["ada"], status=202)
    path = download_link(app)
    assert len(list(export_dir.iterdir())) == 1
    ada = signed_in(app, run_in_request, "ada@example.com")
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=7, minutes=1)):
        refused = ada.get(path, status=410)
        assert "expired" in refused.text
        assert run_task_now(app.app.registry, purge_export_files) == 1
    assert list(export_dir.iterdir()) == []


def test_a_wrong_or_malformed_token_is_not_found(exporting, run_in_request):
    app = exporting
    host = event_host(app, run_in_request, EVENT)
    app.post_json("/api/v1/me/data-export", {}, headers=host["ada"], status=202)
    path = download_link(app)
    ada = signed_in(app, run_in_request, "ada@example.com")
    export_id = path.split("/")[3]
    ada.get(f"/account/data-exports/{export_id}/{'A' * 43}", status=404)
    ada.get(f"/account/data-exports/{export_id}/short", status=404)
    ada.get(f"/account/data-exports/not-an-id/{'A' * 43}", status=404)
    ada.get(path, status=200)


def test_the_account_page_asks_for_a_copy(exporting, run_in_request):
    app = exporting
    event_host(app, run_in_request, EVENT)
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get("/account")
    assert "Email me a copy of my data" in main_text(page)
    ada.post("/account/data-export", {}, status=400)  # no CSRF token: refused, nothing asked
    assert count(app, run_in_request, DataExport) == 0
    done = page.forms["data-export-form"].submit(status=303).follow()
    text = main_text(done)
    assert "putting together a copy of your data" in text
    assert "Your copy is ready" in text  # built at once by the test's immediate worker
    assert download_link(app)


def test_a_build_that_fails_is_kept_for_a_retry_and_mails_nothing(exporting, run_in_request, export_dir, notes):
    app = exporting
    host = event_host(app, run_in_request, EVENT)
    notes.broken = True
    asked = app.post_json("/api/v1/me/data-export", {}, headers=host["ada"], status=202).json["export"]
    export = run_in_request(lambda r: r.db.get(DataExport, uuid.UUID(asked["id"])), app.app.registry)
    assert (export.status, export.attempts, export.token_hash) == (PENDING, 1, None)
    assert "the notes store is away" in export.last_error
    assert list(export_dir.iterdir()) == [], "no half-written file is left"
    assert not [m for m in inbox(app, "ada@example.com") if "data is ready" in m.subject]
    # Asking again while it waits for its retry answers the same export.
    again = app.post_json("/api/v1/me/data-export", {}, headers=host["ada"], status=202).json["export"]
    assert again["id"] == asked["id"]


# --- deleting one's account ------------------------------------------------------------------


def orphans(db) -> list[str]:
    """Rows pointing at a row that does not exist, through every foreign key
    of every table, and through the columns that name a workspace without one."""
    from sqlalchemy import exists

    found = []
    for table in metadata.sorted_tables:
        references = [(fk.parent, fk.column) for fk in table.foreign_keys]
        if "workspace_id" in table.c and not table.c.workspace_id.foreign_keys:
            references.append((table.c.workspace_id, metadata.tables["workspaces"].c.id))
        for column, target in references:
            missing = db.scalar(select(func.count()).select_from(table).where(
                column.is_not(None), ~exists().where(target == column)))
            if missing:
                found.append(f"{table.name}.{column.name}: {missing}")
    return found


def rows_naming(db, needle: str) -> list[str]:
    """table.column of every stored value that contains ``needle``."""
    from sqlalchemy import LargeBinary, Text, cast

    found = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, LargeBinary):
                continue
            if db.scalar(select(func.count()).select_from(table).where(
                    cast(column, Text).like(f"%{needle}%"))):
                found.append(f"{table.name}.{column.name}")
    return found


@pytest.fixture
def eve(exporting, run_in_request):
    """Eve, who has her own workspace only, with an event and a guest."""
    from guestguard.testing import session_bearer

    app = exporting
    host = event_host(app, run_in_request, EVENT)
    eve = session_bearer(app.app.registry, "eve@example.com")
    workspace = app.get("/api/v1/workspaces", headers=eve).json["workspaces"][0]["id"]
    event = app.post_json("/api/v1/events", {"workspace_id": workspace, **EVENT}, headers=eve).json["event"]
    app.post_json(f"/api/v1/events/{event['id']}/guests", {"name": "Gus Guest", "email": "gus@example.com"},
                  headers=eve, status=201)
    return {"headers": eve, "workspace": workspace, "event": event, "host": host}


def test_a_wrong_password_deletes_nothing(exporting, eve, run_in_request):
    from guestguard.accounts.models import User

    refused = exporting.delete_json("/api/v1/me", {"password": "not my password"}, headers=eve["headers"],
                                    status=400).json["error"]
    assert refused["code"] == "invalid_password" and "password" in refused["fields"]
    missing = exporting.delete_json("/api/v1/me", {}, headers=eve["headers"], status=422).json["error"]
    assert "password" in missing["fields"]
    assert scalar(exporting, run_in_request, select(User.deleted_at).where(User.email == "eve@example.com")) is None
    exporting.get("/api/v1/me", headers=eve["headers"], status=200)


def test_the_last_owner_of_a_shared_workspace_must_hand_it_over_first(exporting, eve, run_in_request):
    from guestguard.testing import TEST_PASSWORD

    ada = eve["host"]["ada"]  # owns "Gala team", where Sam is door staff
    refused = exporting.delete_json("/api/v1/me", {"password": TEST_PASSWORD}, headers=ada, status=409).json
    assert refused["error"]["code"] == "last_owner" and "“Gala team”" in refused["error"]["message"]
    assert refused["error"]["workspaces"] == [{"id": eve["host"]["workspace"], "name": "Gala team"}]
    exporting.get("/api/v1/me", headers=ada, status=200)


def test_deleting_signs_out_mails_the_data_and_can_be_undone(exporting, eve, run_in_request):
    from guestguard.testing import TEST_PASSWORD, new_client

    app = exporting
    browser = signed_in(app, run_in_request, "eve@example.com")
    done = app.delete_json("/api/v1/me", {"password": TEST_PASSWORD}, headers=eve["headers"], status=202)
    assert "eve@example.com" in done.json["message"]
    # Signed out everywhere, logins refused, her workspace closed.
    app.get("/api/v1/me", headers=eve["headers"], status=401)
    assert "/login" in browser.get("/account", status=302).location
    login = app.post_json("/api/v1/auth/login", {"email": "eve@example.com", "password": TEST_PASSWORD},
                          status=401)
    assert login.json["error"]["code"] == "invalid_credentials"
    # Export first: she cannot sign in, so her password opens the link (once).
    path = download_link(app, "eve@example.com")
    outsider = new_client(app.app)
    asked = outsider.get(path, status=200)
    form = asked.forms["download-form"]
    form["password"] = "not hers"
    assert "The password is not right." in main_text(form.submit(status=400))
    form = asked.forms["download-form"]
    form["password"] = TEST_PASSWORD
    files = read_archive(form.submit(status=200).body)
    assert [g["name"] for g in files["guests.json"]] == ["Gus Guest"]
    used = new_client(app.app).get(path)
    form = used.forms["download-form"]
    form["password"] = TEST_PASSWORD
    assert "already used" in form.submit(status=410).text
    (notice,) = [m for m in inbox(app, "eve@example.com") if "account is deleted" in m.subject]
    cancel = link(notice, "account/deletion/cancel")
    # Again: nothing more (a retried request).
    page = new_client(app.app).get(cancel)
    assert "Keep my account" in main_text(page)
    page.forms["cancel-deletion-form"].submit(status=303)
    again = app.post_json("/api/v1/auth/login", {"email": "eve@example.com", "password": TEST_PASSWORD},
                          status=200).json
    headers = {"Authorization": f"Bearer {again['access_token']}"}
    assert app.get(f"/api/v1/events/{eve['event']['id']}", headers=headers).json["event"]["headcount"]["guests"] == 1
    # The link worked once.
    new_client(app.app).get(cancel, status=404)


def test_an_account_is_erased_after_the_grace_period_leaving_no_orphans(exporting, eve, run_in_request, export_dir):
    import datetime as dt

    import time_machine

    from guestguard.accounts.models import User
    from guestguard.privacy.tasks import erase_deleted_accounts
    from guestguard.tasks import run_task_now
    from guestguard.testing import TEST_PASSWORD

    app = exporting
    token = issue(app, {"url": f"/api/v1/events/{eve['event']['id']}", "ada": eve["headers"]},
                  {"id": app.get(f"/api/v1/events/{eve['event']['id']}/guests",
                                 headers=eve["headers"]).json["guests"][0]["id"]})["token"]
    visit(app, token)
    app.delete_json("/api/v1/me", {"password": TEST_PASSWORD}, headers=eve["headers"], status=202)
    registry = app.app.registry
    assert run_task_now(registry, erase_deleted_accounts) == 0, "not before the grace period"
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=30, minutes=1)):
        assert run_task_now(registry, erase_deleted_accounts) == 1
        assert run_task_now(registry, erase_deleted_accounts) == 0, "a second run finds nothing to do"
    assert scalar(app, run_in_request, select(User.id).where(User.email == "eve@example.com")) is None
    assert run_in_request(lambda r: orphans(r.db), registry) == []
    assert run_in_request(lambda r: rows_naming(r.db, "eve@example.com"), registry) == []
    assert run_in_request(lambda r: rows_naming(r.db, "gus@example.com"), registry) == []
    assert list(export_dir.iterdir()) == []
    # Ada's workspace and event are untouched.
    assert app.get(eve["host"]["url"], headers=eve["host"]["ada"]).json["event"]["name"] == "Midsummer Gala"


def test_deleting_while_an_export_is_built_keeps_that_one_export(exporting, eve, run_in_request, notes):
    from guestguard.testing import TEST_PASSWORD

    notes.broken = True  # the first build fails and waits for its retry
    exporting.post_json("/api/v1/me/data-export", {}, headers=eve["headers"], status=202)
    exporting.delete_json("/api/v1/me", {"password": TEST_PASSWORD}, headers=eve["headers"], status=202)
    assert count(exporting, run_in_request, DataExport) == 1


def test_the_account_page_deletes_with_the_password(exporting, eve, run_in_request):
    from guestguard.testing import TEST_PASSWORD

    app = exporting
    browser = signed_in(app, run_in_request, "eve@example.com")
    page = browser.get("/account")
    form = page.forms["delete-account-form"]
    form["password"] = "wrong one"
    wrong = form.submit(status=400)
    assert "The password is not right." in main_text(wrong)
    browser.post("/account/delete", {"password": TEST_PASSWORD}, status=400)  # without its CSRF token
    form = wrong.forms["delete-account-form"]
    form["password"] = TEST_PASSWORD
    done = form.submit(status=303)
    assert done.location.endswith("/login")
    assert "Your account is deleted" in main_text(done.follow())
    assert "/login" in browser.get("/account", status=302).location


# --- retention -----------------------------------------------------------------------------


def test_months_before_keeps_to_the_calendar():
    import datetime as dt

    from guestguard.privacy.retention import months_before

    assert months_before(dt.datetime(2031, 3, 31, tzinfo=dt.UTC), 1) == dt.datetime(2031, 2, 28, tzinfo=dt.UTC)
    assert months_before(dt.datetime(2032, 1, 15, tzinfo=dt.UTC), 18) == dt.datetime(2030, 7, 15, tzinfo=dt.UTC)


def after_event(days: int = 0, months: int = 18):
    """A moment ``months`` months and ``days`` days after EVENT's start (it has no end)."""
    import datetime as dt

    import time_machine

    from guestguard.privacy.retention import months_before

    start = dt.datetime(2030, 6, 21, 18, tzinfo=dt.UTC)  # 19:00 in London
    return time_machine.travel(months_before(start, -months) + dt.timedelta(days=days), tick=False)


def test_retention_anonymizes_past_events_and_tells_the_owners_first(app, host, known_guest, run_in_request):
    from guestguard.events.models import Event
    from guestguard.privacy.tasks import apply_retention
    from guestguard.tasks import run_task_now

    registry = app.app.registry
    before = counts(app, host)
    event_id = uuid.UUID(host["event"]["id"])
    with after_event(days=-20):
        assert run_task_now(registry, apply_retention) == 0
    assert not [m for m in inbox(app, "ada@example.com") if "anonymized soon" in m.subject]
    with after_event(days=-10):
        assert run_task_now(registry, apply_retention) == 0
        assert run_task_now(registry, apply_retention) == 0
    (notice,) = [m for m in inbox(app, "ada@example.com") if "anonymized soon" in m.subject]
    assert "Midsummer Gala: 2 guests, on 21 December 2031" in notice.text
    assert count(app, run_in_request, Guest, Guest.forgotten_at.is_not(None)) == 0
    with after_event(days=1):
        assert run_task_now(registry, apply_retention) == 1
        assert run_task_now(registry, apply_retention) == 0, "done once"
    assert count(app, run_in_request, Guest, Guest.event_id == event_id, Guest.forgotten_at.is_(None)) == 0
    assert scalar(app, run_in_request, select(Event.anonymized_at).where(Event.id == event_id)) is not None
    assert counts(app, host) == before
    assert run_in_request(lambda r: rows_naming(r.db, "grace@example.com"), registry) == []
    audit = scalar(app, run_in_request, select(AuditEvent.details).where(AuditEvent.action == "event.anonymized"))
    assert audit == {"guests": 2, "reason": "retention"}


def test_a_workspace_keeps_guests_for_its_own_months(app, host, known_guest, run_in_request):
    from guestguard.privacy.tasks import apply_retention
    from guestguard.tasks import run_task_now

    url = f"/api/v1/workspaces/{host['workspace']}/retention"
    bad = app.put_json(url, {"months": 0}, headers=host["ada"], status=422).json["error"]
    assert "months" in bad["fields"]
    app.put_json(url, {"months": 200}, headers=host["ada"], status=422)
    app.put_json(url, {"months": 24}, headers=host["sam"], status=403)
    assert app.put_json(url, {"months": 24}, headers=host["ada"]).json == {"months": 24, "default_months": 18}
    with after_event(days=1):
        assert run_task_now(app.app.registry, apply_retention) == 0
    with after_event(days=1, months=24):
        assert run_task_now(app.app.registry, apply_retention) == 1
    assert app.put_json(url, {"months": None}, headers=host["ada"]).json["months"] is None


def test_an_interrupted_run_never_half_anonymizes_an_event(app, host, known_guest, run_in_request):
    from guestguard.events.models import Event
    from guestguard.privacy.tasks import apply_retention
    from guestguard.tasks import run_task_now

    later = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **EVENT,
                                             "starts_at": "2030-06-28T19:00:00"}, headers=host["ada"]).json["event"]
    for n in range(3):
        app.post_json(f"/api/v1/events/{later['id']}/guests", {"name": f"Late {n}"}, headers=host["ada"],
                      status=201)

    class Crash(Exception):
        pass

    later_guests = []

    def crash_on_the_later_event(ctx, guest):
        """Lets the later event's first guest be forgotten, then stops the run."""
        if str(guest.event_id) == later["id"]:
            later_guests.append(guest.id)
            if len(later_guests) == 2:
                raise Crash("the worker stopped")

    registry = app.app.registry
    original = registry["privacy.jobs"]
    registry["privacy.jobs"] = [PrivacyJob("crash", (), forget_guest=crash_on_the_later_event), *original]
    try:
        with after_event(days=30), pytest.raises(Crash):
            run_task_now(registry, apply_retention)
    finally:
        registry["privacy.jobs"] = original
    anonymized = run_in_request(lambda r: {str(e.id): e.anonymized_at is not None
                                           for e in r.db.scalars(select(Event))}, registry)
    assert anonymized == {host["event"]["id"]: True, later["id"]: False}
    assert count(app, run_in_request, Guest, Guest.event_id == uuid.UUID(later["id"]),
                 Guest.forgotten_at.is_not(None)) == 0, "the later event is untouched, not half done"
    with after_event(days=30):
        assert run_task_now(registry, apply_retention) == 1, "the next run goes on"
    assert count(app, run_in_request, Guest, Guest.forgotten_at.is_(None)) == 0


def test_the_privacy_report_is_a_dry_run(tmp_path, db_url, app, host, known_guest, run_in_request):
    import datetime as dt

    from guestguard.events.models import Event
    from guestguard.testing import guestguard_command, site_ini

    # The event ended long ago as far as the command's clock knows.
    run_in_request(lambda r: r.db.get(Event, uuid.UUID(host["event"]["id"])).__setattr__(
        "starts_at", dt.datetime(2020, 1, 1, tzinfo=dt.UTC)), app.app.registry)
    result = guestguard_command("privacy", "report", str(site_ini(tmp_path)),
                                env={"GG_DB_URL": db_url, "GG_HUEY_URL": "memory://"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "anonymized at the next nightly run: 1 event(s)" in result.stdout
    assert f"{host['event']['id']}  2 guest(s)" in result.stdout
    assert "grace" not in result.stdout.lower()
    assert count(app, run_in_request, Guest, Guest.forgotten_at.is_not(None)) == 0


# --- the policy pages ------------------------------------------------------------------------


def test_operators_replace_the_policy_pages_by_url_or_file(make_app, tmp_path):
    from guestguard.testing import main_text

    placeholder = make_app().get("/privacy")
    assert "placeholder" in main_text(placeholder).lower()
    page = tmp_path / "terms.html"
    page.write_text("<h1>Terms of Example Events Ltd</h1><p>Be kind.</p>", encoding="utf-8")
    app = make_app({"policies.privacy_page": "https://example.com/privacy", "policies.terms_page": str(page)})
    assert app.get("/privacy", status=302).location == "https://example.com/privacy"
    terms = app.get("/terms", status=200)
    assert "Terms of Example Events Ltd Be kind." in main_text(terms)
    assert terms.html.find("footer").find("a", string="Privacy")["href"] == "/privacy"
    with pytest.raises(SettingsError, match="policies.terms_page"):
        make_app({"policies.terms_page": str(tmp_path / "missing.html")})
