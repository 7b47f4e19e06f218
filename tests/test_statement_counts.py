"""How many SQL statements the busiest requests run, counted on the engine.

A guest's page, answer and calendar file, and a host's event page and guest
list, each run a small fixed number of statements: the counts are exact, so
a change that adds a query (a lazy load, a flush of its own, a write that
changes nothing) fails here, and the host's pages cost the same with 3
guests as with 30. Tasks are queued, not run (``huey.immediate`` off): what
is counted is the request alone."""
from __future__ import annotations

import contextlib
import re

import pytest
from sqlalchemy import event

from guestguard.testing import add_guest, event_host, issue, new_client, signed_in

EVENT = {"name": "Gala", "status": "published", "starts_at": "2030-06-21T19:00:00", "timezone": "UTC"}
BROWSER = {"HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                              "Chrome/131.0.0.0 Safari/537.36"}


@pytest.fixture
def app(make_app):
    return make_app({"huey.immediate": "false"})


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


@contextlib.contextmanager
def statements(app):
    """The statements the app's engine runs meanwhile, first words only
    ("SELECT", "INSERT INTO access_log", ...)."""
    seen: list[str] = []
    engine = app.app.registry["db.engine"]

    def count(_conn, _cursor, statement, _parameters, _context, _many):
        words = re.match(r"\s*(\w+)(?:\s+(?:INTO|FROM)?\s*(\w+))?", statement)
        seen.append(" ".join(part for part in words.groups() if part).upper() if words else statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def sqlite(app) -> bool:
    return app.app.registry["db.engine"].dialect.name == "sqlite"


@pytest.fixture
def guest_link(app, host):
    return issue(app, host, add_guest(app, host))["token"]


def scoped(app) -> list[str]:
    """On PostgreSQL a signed-in request first reads its caller's roles under
    their own id, then scopes its transaction to their workspaces (two
    set_config statements around the roles)."""
    return [] if sqlite(app) else ["SELECT SET_CONFIG", "SELECT MEMBERSHIPS", "SELECT SET_CONFIG"]


def write_lock(app) -> list[str]:
    """SQLite has no row locks: an answer takes its write lock first, by
    deleting nothing from guests (``db.sqlite_write_lock``)."""
    return ["DELETE GUESTS"] if sqlite(app) else []


def look_up(app) -> list[str]:
    """The token's look-up and the use's row in the access log: one
    statement on PostgreSQL (the link's workspace opened to row-level
    security, then the look-up and the row: ``access.LOOK_UP_LOGGED``), two
    on SQLite."""
    return ["SELECT INVITATION_LINKS", "INSERT ACCESS_LOG"] if sqlite(app) else ["WITH OPENED"]


def news(app) -> list[str]:
    """What a change the host hears about writes besides itself: its audit
    row, domain event and activity item, in one statement on PostgreSQL
    (``activity.news``)."""
    return ["INSERT AUDIT_EVENTS", "INSERT DOMAIN_EVENTS", "INSERT ACTIVITY"] if sqlite(app) else ["WITH AUDIT_ROW"]


def answered(app, *, confirmed: bool = True) -> list[str]:
    """A new answer's writes after the guest's row lock: its row, the
    guest's, the confirmation's outbox row (``confirmed``) and the host's
    news, all in the news' one statement on PostgreSQL (``news.Along``)."""
    if not sqlite(app):
        return news(app)
    return ["INSERT RSVPS", "UPDATE GUESTS", *(["INSERT NOTIFICATIONS"] if confirmed else []), *news(app)]


def test_a_repeat_view_of_the_invitation_is_one_select_and_the_access_log_insert(app, guest_link):
    guest = new_client(app.app, **BROWSER)
    guest.get(f"/access/{guest_link}")
    with statements(app) as repeat:
        page = guest.get(f"/access/{guest_link}")
    assert "Grace Hopper" in page.text
    assert repeat == look_up(app)
    with statements(app) as api:
        guest.get(f"/api/v1/access/{guest_link}")
    assert api == look_up(app)


PREVIEW = {"HTTP_USER_AGENT": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"}


@pytest.mark.parametrize("environ,person", [(BROWSER, True), (PREVIEW, False)],
                         ids=["a person's first open tells the host", "a link preview is no open"])
def test_the_first_view_writes_opened_at_once(app, guest_link, environ, person):
    with statements(app) as first:
        new_client(app.app, **environ).get(f"/access/{guest_link}")
    assert first == [*look_up(app), *(["UPDATE GUESTS", *news(app)] if person else [])]


def test_an_answer_locks_the_guest_once_and_writes_what_changed(app, guest_link):
    guest = new_client(app.app, **BROWSER)
    with statements(app) as answer:
        assert guest.post_json(f"/api/v1/rsvp/{guest_link}", {"response": "yes"}).json["recorded"]
    # The lock also reads where to confirm the answer.
    locked = [*write_lock(app), "SELECT GUESTS"]
    # A yes brings the guest's pass (one INSERT), which the confirmation carries.
    assert answer == [*look_up(app), *locked, "INSERT GUEST_PASSES", *answered(app)]
    with statements(app) as same:
        assert not guest.post_json(f"/api/v1/rsvp/{guest_link}", {"response": "yes"}).json["recorded"]
    assert same == [*look_up(app), *locked]
    with statements(app) as form:
        guest.post(f"/rsvp/{guest_link}", {"response": "no"}, status=303)
    assert form == [*look_up(app), *locked, *answered(app)]


def test_the_calendar_file_is_one_select_and_the_access_log_insert(app, guest_link):
    guest = new_client(app.app, **BROWSER)
    with statements(app) as ics:
        assert "BEGIN:VCALENDAR" in guest.get(f"/access/{guest_link}/event.ics").text
    assert ics == look_up(app)


def test_an_unknown_token_is_one_select_and_the_access_log_insert(app, guest_link):
    guest = new_client(app.app, **BROWSER)
    with statements(app) as seen:
        guest.get(f"/access/{guest_link[:-1]}{'A' if guest_link[-1] != 'A' else 'B'}", status=404)
    assert seen == look_up(app)


def host_pages(app, run_in_request, host) -> tuple[list[str], list[str]]:
    ada = signed_in(app, run_in_request, "ada@example.com")
    event_id = host["event"]["id"]
    with statements(app) as page:
        ada.get(f"/events/{event_id}")
    with statements(app) as api:
        app.get(f"{host['url']}/guests", headers=host["ada"])
    return page, api


def test_the_hosts_event_page_and_guest_list_cost_the_same_for_3_and_30_guests(app, run_in_request, host):
    for n in range(3):
        guest = add_guest(app, host, name=f"Guest {n:02}", email=f"guest{n}@example.com")
        app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    few_page, few_api = host_pages(app, run_in_request, host)
    for n in range(3, 30):
        add_guest(app, host, name=f"Guest {n:02}", email=f"guest{n}@example.com")
    many_page, many_api = host_pages(app, run_in_request, host)
    assert many_page == few_page and many_api == few_api
    # Who is signed in (once per request), the event with its workspace,
    # the caller's roles, then what the page shows: a page of guests, the
    # activity feed, the headcount, the flagged count (for the filter chips
    # too), what became of the page's invitations, the caller's answer
    # alerts, the event's delivery summary, the door's counts (people in and
    # expected, one statement of two subqueries), the reminders' tallies,
    # the workspace menu.
    # On PostgreSQL the roles are read first, to scope the transaction.
    roles = scoped(app) or ["SELECT MEMBERSHIPS"]
    event_and_roles = [*roles, "SELECT EVENTS"] if scoped(app) else ["SELECT EVENTS", *roles]
    assert few_page == ["SELECT AUTH_SESSIONS", *event_and_roles, "SELECT GUESTS",
                        "SELECT ACTIVITY", "SELECT GUESTS", "SELECT COUNT", "SELECT NOTIFICATIONS",
                        "SELECT ANSWER_ALERTS", "SELECT GUESTS", "SELECT", "SELECT SCHEDULED_MESSAGES",
                        "SELECT WORKSPACES"]
    # An access token names its person: their session and roles are one
    # statement, which on PostgreSQL runs under their id, set first.
    token = ["SELECT SET_CONFIG", "SELECT AUTH_SESSIONS", "SELECT SET_CONFIG"] if scoped(app) else [
        "SELECT AUTH_SESSIONS"]
    assert few_api == [*token, "SELECT EVENTS", "SELECT GUESTS", "SELECT NOTIFICATIONS"]


def scans_of_answers(connection, statement, params) -> list[str]:
    """Each scan of ``rsvps`` in the plan of ``statement``, with the line after
    it (the index condition it walks by, if any); sequential scans are off so
    that only a scan that cannot use an index reads the whole table."""
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    compiled = statement.compile(dialect=connection.dialect)
    plan = [row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled.string}", {**compiled.params, **params})]
    return [f"{line.strip()} | {plan[n + 1].strip()}" for n, line in enumerate(plan) if " on rsvps" in line]


def scans_after_the_opening(node: dict, after: bool = False) -> list[bool]:
    """For each scan of ``invitation_links`` in a JSON plan, whether it is on
    the inner side of a nested loop whose outer side is the scan of the
    ``opened`` CTE (so it runs only once ``guestguard_open`` has)."""
    found = [after] if node.get("Relation Name") == "invitation_links" else []
    children = node.get("Plans", [])
    opened_first = (node["Node Type"] == "Nested Loop" and children
                    and children[0].get("CTE Name") == "opened")
    for index, child in enumerate(children):
        found += scans_after_the_opening(child, after or (opened_first and index == 1))
    return found


def test_the_look_up_reads_the_link_only_after_the_opening_in_custom_and_generic_plans(app, guest_link):
    """``access.LOOK_UP_LOGGED`` runs ``guestguard_open`` first: every scan of
    the links is the inner side of a nested loop on the opened CTE, in the
    plan for the token at hand and in the generic plan a prepared statement
    moves to after five runs, and with nested loops discouraged (row-level
    security reads what the function set: read before it, the link would be
    invisible)."""
    if sqlite(app):
        pytest.skip("plans: PostgreSQL")
    import json

    import psycopg

    from guestguard.accounts.tokens import hash_token
    from guestguard.guard.access import LOOK_UP_LOGGED

    engine = app.app.registry["db.engine"]
    sql, defaults, _, order, _, _ = LOOK_UP_LOGGED._form(engine.dialect)
    values = {**defaults, "token_hash": hash_token(guest_link)}
    with engine.begin() as connection:
        connection.exec_driver_sql(f"PREPARE look_up AS {sql}")
        (types,) = connection.exec_driver_sql(
            "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = 'look_up'").one()
        arguments = ", ".join(f"%({name})s::{kind}" for name, kind in zip(order, types, strict=True))
        # Nested loops discouraged: only the LATERAL reference to the opening
        # keeps the loop (and its order), not the planner's taste for one row.
        connection.exec_driver_sql("SET LOCAL enable_nestloop = off")
        plans = {}
        for mode in ("force_custom_plan", "force_generic_plan"):
            connection.exec_driver_sql(f"SET LOCAL plan_cache_mode = {mode}")
            # EXPLAIN takes no bound parameters: the values go in as literals.
            with psycopg.ClientCursor(connection.connection.dbapi_connection) as cursor:
                cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE look_up({arguments})",
                               {name: values.get(name) for name in order})
                (plan,) = cursor.fetchone()
            plan = json.loads(plan) if isinstance(plan, str) else plan
            plans[mode] = scans_after_the_opening(plan[0]["Plan"])
        connection.exec_driver_sql("DEALLOCATE look_up")
    assert plans == {"force_custom_plan": [True], "force_generic_plan": [True]}, plans


def test_the_latest_answer_is_found_through_the_guests_index(app, guest_link):
    """The latest answer folded into the guest's statements is read through
    the index on ``rsvps.guest_id``: every scan of ``rsvps`` is by the guest
    (a join on the latest answer once read the whole table for each answer
    under load)."""
    if sqlite(app):
        pytest.skip("plans: PostgreSQL")
    from guestguard.accounts.tokens import hash_token
    from guestguard.events.invitations import KEPT, LOCKED_ANSWER, Answer
    from guestguard.guard.access import LOOK_UP_LOGGED

    guest = new_client(app.app, **BROWSER)
    for answer in ("yes", "no", "maybe"):
        guest.post_json(f"/api/v1/rsvp/{guest_link}", {"response": answer})
    engine = app.app.registry["db.engine"]
    with engine.begin() as connection:
        guest_id = connection.exec_driver_sql("SELECT id FROM guests").scalar()
        scans = [*scans_of_answers(connection, LOOK_UP_LOGGED.statement, {"token_hash": hash_token(guest_link)}),
                 *scans_of_answers(connection, LOCKED_ANSWER.statement, {"guest_id": guest_id})]
    # The page's columns of the latest answer; the lock's: its time, its id and what it kept.
    assert len(scans) == len(Answer.__slots__) + 2 + len(KEPT), scans
    assert all("guest_id" in scan for scan in scans), scans
