"""The API against its contract: schemathesis calls every operation of
/api/v1/openapi.json in process, with the documented examples, boundary and
invalid values (its coverage phase) and generated input (a few dozen
examples each, no shrinking), as a host who owns a workspace with a
published event, guests, a link, flags, an API key and a pending invitation,
and fails on any 5xx and on any answer the document does not describe (its
status, content type, headers and body). ``test_api_links`` then follows the
document's links (create an event, then read and change it, add guests...).

The database is the suite's: SQLite, or PostgreSQL (and Redis for the live
feed and the limiter) when GG_TEST_DATABASE_URL / GG_TEST_REDIS_URL are set.
Rate limits are raised out of the way (their 429s are tested elsewhere).
Half the time an id in a path or body names a real record of that world.

What an operation ends or changes, the others do not rely on: it gets
records of its own (a workspace to delete, one to transfer, one to leave, one
whose member is changed and removed; an event to delete, one to change;
guests to delete, guests whose links are issued, sent and revoked; a flag to
reissue; a spare session to revoke; emailed tokens to verify and reset
with), and signing out uses a fresh session, signing out everywhere and
changing the password a fresh person. Not fuzzed, with the reason:

- the live stream (``live_stream``): a valid ticket holds the call open for
  ``guard.stream.max_seconds``; tests/test_stream.py covers it.

Checks left out, with the reason:

- ``positive_data_acceptance``: a schema cannot say which emails, phone
  numbers and time zones exist, so valid-looking bodies are refused (422) by
  design;
- ``negative_data_rejection``: fields are read as pydantic reads them in
  lax mode, the same models serving the HTML forms: ``"2"`` is taken for 2
  and ``0`` for false, which the schema's types do not allow;
- ``unsupported_method``: a method no view takes gets the not-found answer
  (404), the same as an unknown path, on purpose;
- ``missing_required_header``: no operation requires a header;
- ``use_after_free``, ``ensure_resource_availability``: they follow links,
  so they run in ``test_api_links``.
"""
from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, strategies as st
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.generation.meta import TestPhase

from guestguard.idempotency import HEADER, VALID_KEY
from guestguard.testing import (
    REDIS_ENV,
    TEST_PASSWORD,
    AppFactory,
    bearer_for,
    create_team,
    create_user,
    inbox,
    link,
    scripted,
    settings_for,
)

# In the PostgreSQL pass only when make test runs both: it is the backend that refuses the most.
pytestmark = pytest.mark.one_pass("services")

RATE_LIMITS = ("signup", "login", "login_ip", "password_change", "workspace_create", "workspace_invite",
               "forgot_password", "resend_verification", "rsvp", "invitation_page", "invalid_link",
               "stream_ticket", "event_create", "guest_create", "link_issue", "api")
NOT_FUZZED = {"live_stream": "a valid ticket holds the call open for minutes; tests/test_stream.py covers it"}
# Left out of the links run only: without a billing backend in this world
# each answers 409 whatever came before, so it adds no sequence worth
# following (test_api fuzzes them; tests/test_billing.py and the Stripe
# plugin's tests drive them with a backend).
NOT_LINKED = ("start_checkout", "open_portal", "preview_plan_change", "change_plan", "cancel_subscription")
LEFT_OUT_CHECKS = ("positive_data_acceptance", "negative_data_rejection", "unsupported_method",
                   "missing_required_header", "use_after_free", "ensure_resource_availability")
# A few dozen examples per operation keep the run near a minute; GG_FUZZ_EXAMPLES
# asks for more, GG_FUZZ_RANDOM=1 for other examples than the usual ones.
EXAMPLES = int(os.environ.get("GG_FUZZ_EXAMPLES", "25"))
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("GG_FUZZ_RANDOM"), database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
STATS = Counter()


@dataclass
class World:
    """The host's world and the records each operation may use."""

    app: object
    run: object
    headers: dict[str, str]
    ids: dict[str, list[str]] = field(default_factory=dict)
    # The records of the operations that end or change them, by operationId.
    own: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    people: int = 0

    def credentials(self, operation_id: str) -> dict[str, str]:
        """The host's, or for what ends sessions or changes a password, a
        new session (signing out) or a new person (everywhere, password)."""
        if operation_id == "logout":
            return bearer_for(self.app, "ada@example.com")
        if operation_id in ("logout_all", "change_password"):
            self.people += 1
            email = f"person{self.people}@example.com"
            self.run(lambda request: create_user(request, email))
            return bearer_for(self.app, email)
        return self.headers


def fuzz_settings(redis_url):
    settings = {f"ratelimit.{name}": "1000000/hour" for name in RATE_LIMITS}
    if redis_url:
        settings.update({"ratelimit.url": redis_url, "guard.stream.url": redis_url})
    return settings


def account_tokens(app, run) -> tuple[str, str, str]:
    """Emailed tokens (Val verifies her address; Rex resets his password,
    ending his own sessions) and a refresh token of Ada's."""
    app.post_json("/api/v1/auth/signup", {"email": "val@example.com", "password": "a long enough passphrase",
                                          "display_name": "Val", "accept_policies": True})
    run(lambda request: create_user(request, "rex@example.com", "Rex"))
    app.post_json("/api/v1/auth/forgot-password", {"email": "rex@example.com"})
    verify_token = link(inbox(app, "val@example.com")[0], "verify-email").rsplit("/", 1)[1]
    reset_token = link(inbox(app, "rex@example.com")[0], "reset-password").rsplit("/", 1)[1]
    login = app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD}).json
    return verify_token, reset_token, login["refresh_token"]


def build_world(factory, redis_url) -> World:
    """Ada owns a workspace (Sam is its staff) with a published event, its
    guests, a link, flags, an API key and a pending invitation; and the spare
    records of the operations that end or change what others use."""
    from guestguard.accounts.services import find_user
    from guestguard.events.models import Guest
    from guestguard.guard.models import Flag
    from guestguard.workspaces.models import Membership

    app = factory(fuzz_settings(redis_url))

    def run(func):
        with scripted(app.app.registry) as env:
            request = env["request"]
            with request.tm:
                return func(request)

    workspace = run(create_team)
    ada = bearer_for(app, "ada@example.com")

    def spare_workspace(name, sam_role=None):
        created = app.post_json("/api/v1/workspaces", {"name": name}, headers=ada).json["workspace"]["id"]
        if sam_role is None:
            return created, None

        def join(request):
            membership = Membership(workspace_id=uuid.UUID(created), role=sam_role,
                                    user_id=find_user(request.db, "sam@example.com").id)
            request.db.add(membership)
            request.db.flush()
            return str(membership.id)

        return created, run(join)

    members = app.get(f"/api/v1/workspaces/{workspace}/members", headers=ada).json["members"]
    sam = next(m["id"] for m in members if m["email"] == "sam@example.com")
    event_body = {"workspace_id": workspace, "name": "Summer gala", "timezone": "Europe/London",
                  "starts_at": "2030-06-21T19:00", "rsvp_deadline": "2030-06-14T12:00", "status": "published"}
    event = app.post_json("/api/v1/events", event_body, headers=ada).json["event"]["id"]
    spare_event, changed_event = (app.post_json("/api/v1/events", {**event_body, "name": name}, headers=ada)
                                  .json["event"]["id"] for name in ("Spare", "Changed"))
    guests_url = f"/api/v1/events/{event}/guests"
    rows = [("Ivy Holder", "ivy@example.com", None), ("Hal Flagged", "hal@example.com", None),
            ("Alan Phone", None, "+44 20 7946 0958"), ("Nora Nocontact", None, None),
            ("Sid Spare", "sid@example.com", None), ("Sue Spare", None, "+33 1 23 45 67 89"),
            ("Dora Deleted", "dora@example.com", None), ("Dan Deleted", None, None),
            ("Fay Forgotten", "fay@example.com", None), ("Finn Forgotten", None, "+33 1 23 45 67 88")]
    guests = app.post_json(guests_url, [{"name": name, "email": email, "phone": phone} for name, email, phone in rows],
                           headers=ada).json["guests"]
    ivy, hal, alan, nora, sid, sue, dora, dan, fay, finn = (guest["id"] for guest in guests)
    token = app.post_json(f"{guests_url}/{ivy}/tokens", {}, headers=ada).json["token"]

    def flags_and_invites(request):
        for guest_id in (ivy, hal, alan):  # invited: sending to every guest not invited passes them by
            request.db.get(Guest, uuid.UUID(guest_id)).invited_at = dt.datetime.now(dt.UTC)
        flags = [Flag(workspace_id=uuid.UUID(workspace), event_id=uuid.UUID(event), guest_id=uuid.UUID(guest),
                      rule="networks", score=60, evidence="opened from two networks", details={"networks": 2})
                 for guest in (hal, hal, alan)]
        request.db.add_all(flags)
        request.db.flush()
        return [str(flag.id) for flag in flags]

    dismissed, also_dismissed, reissued = run(flags_and_invites)
    key = app.post_json(f"/api/v1/workspaces/{workspace}/api-keys", {"name": "Door", "role": "staff"},
                        headers=ada).json["api_key"]["id"]
    invitation = app.post_json(f"/api/v1/workspaces/{workspace}/invitations",
                               {"email": "new@example.com", "role": "staff"}, headers=ada).json["invitation"]["id"]
    other = bearer_for(app, "ada@example.com")
    session = next(s["id"] for s in app.get("/api/v1/me/sessions", headers=other).json["sessions"] if s["current"])
    verify_token, reset_token, refresh_token = account_tokens(app, run)
    doomed, _ = spare_workspace("Doomed")
    transferred, heir = spare_workspace("Transferred", "admin")
    left, co_owner = spare_workspace("Left", "owner")
    staffed, staff = spare_workspace("Staffed", "staff")
    world = World(app, run, ada)
    world.ids = {"workspace_id": [workspace], "event_id": [event], "guest_id": [ivy, hal, alan, nora],
                 "flag_id": [dismissed, also_dismissed], "member_id": [sam], "invitation_id": [invitation],
                 "key_id": [key], "token": [token], "session_id": [session], "refresh_token": [refresh_token]}
    links = {"event_id": [event], "guest_id": [sid, sue, nora]}
    world.own = {
        "delete_workspace": {"workspace_id": [doomed]},
        "transfer_ownership": {"workspace_id": [transferred], "member_id": [heir]},
        "leave_workspace": {"workspace_id": [left], "member_id": [co_owner]},
        "change_member_role": {"workspace_id": [staffed], "member_id": [staff]},
        "remove_member": {"workspace_id": [staffed], "member_id": [staff]},
        "delete_event": {"event_id": [spare_event]},
        "update_event": {"event_id": [changed_event]},
        "delete_guest": {"event_id": [event], "guest_id": [dora, dan]},
        # Putting back the guests the fuzz removed, within the undo window.
        "restore_guest": {"event_id": [event], "guest_id": [dora, dan]},
        # Forgetting a guest deletes their links: the others' guests keep theirs.
        "forget_guest": {"event_id": [event], "guest_id": [fay, finn]},
        "issue_token": links, "revoke_token": links, "send_one": links,
        "reissue_link": {"event_id": [event], "flag_id": [reissued]},
        "verify_email": {"token": [verify_token]},
        "reset_password": {"token": [reset_token]},
    }
    return world


def contract_document() -> dict:
    """The document as the application serves it, built without a database
    so the operations are known when the tests are collected."""
    from guestguard.openapi import document

    factory = AppFactory(settings_for(f"sqlite:///{tempfile.gettempdir()}/guestguard-not-opened.sqlite"))
    try:
        return document(factory().app.registry)
    finally:
        factory.close()


DOCUMENT = contract_document()


@pytest.fixture(scope="module")
def world(request, module_db_url):
    """One world for the module; what an operation may end has its own targets."""
    factory = AppFactory(settings_for(module_db_url))
    built = build_world(factory, os.environ.get(REDIS_ENV) or None)
    yield built
    factory.close()
    report(request.config)


def report(config) -> None:
    """The figures of the run, on the terminal."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not (STATS["examples"] or STATS["stateful"]):
        return
    operations = {key[3:] for key in STATS if key.startswith("op:")}
    answered = {key.split(":")[1] for key in STATS if key.startswith("2xx:")}
    with capture.global_and_fixture_disabled():
        reporter.write_line(
            f"API fuzz: {len(operations)} operations ({len(answered)} answered 2xx), {STATS['examples']} calls, "
            f"{STATS['failures']} failing, {STATS['seconds']:.1f} s in calls; not fuzzed: {', '.join(NOT_FUZZED)}")
        phases = ", ".join(f"{key[6:]} {count}" for key, count in sorted(STATS.items()) if key.startswith("phase:"))
        phases += f", stateful {STATS['stateful']}"
        reporter.write_line(f"API fuzz: calls by phase: {phases}")
        linked = sorted(key[7:] for key in STATS if key.startswith("linked:"))
        if linked:
            reporter.write_line(f"API fuzz: stateful run called {len(linked)} operations: {', '.join(linked)}")
        never = sorted(operations - answered)
        if never:
            reporter.write_line(f"API fuzz: never answered 2xx: {', '.join(never)}")


schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(operation_id=list(NOT_FUZZED))


# Path parameters that can name a record of the world; the values drawn for
# them are placeholders, replaced by real ids when the case is called (the
# examples are drawn when the tests are collected, before the world exists).
REAL = "real-record-"
RECORDS = ("workspace_id", "event_id", "guest_id", "flag_id", "member_id", "invitation_id", "key_id", "token",
           "session_id", "refresh_token")


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Half the time, records of the world (see ``real_records``)."""
    if not path_parameters:
        return st.just(path_parameters)
    real = {name: st.integers(0, 3).map(f"{REAL}{{}}".format) if name in RECORDS else st.just(value)
            for name, value in path_parameters.items()}
    return st.one_of(st.just(path_parameters), st.fixed_dictionaries(real))


@schema.hook
def flatmap_body(context, body):
    """Half the time, a body naming records of the world (``workspace_id`` of
    a new event, ``event_id`` of a stream ticket, ``member_id`` of an heir,
    an emailed ``token``, a ``refresh_token``)."""
    named = [name for name in RECORDS if isinstance(body, dict) and name in body]
    if not named:
        return st.just(body)
    real = st.fixed_dictionaries({name: st.integers(0, 3).map(f"{REAL}{{}}".format) for name in named})
    return st.one_of(st.just(body), real.map(lambda ids: {**body, **ids}))


def real_records(case, world: World, operation_id: str) -> None:
    """Put the world's ids (the operation's own ones first) in place of the
    placeholders; the documented examples always name real records."""
    targets = {**world.ids, **world.own.get(operation_id, {})}
    example = case.meta is not None and case.meta.phase.name == TestPhase.EXAMPLES
    places = [case.path_parameters or {}, case.body if isinstance(case.body, dict) else {}]
    for place in places:
        for name, value in place.items():
            if isinstance(value, str) and value.startswith(REAL):
                choices = targets[name]
                place[name] = choices[int(value[len(REAL):]) % len(choices)]
            elif example and name in targets:
                place[name] = targets[name][0]


def fresh_idempotency_key(case) -> None:
    """A new key in place of a well-formed generated one: a sequence's steps
    are drawn from the answers, and the answer to a key used before (a
    replay, or 422 for another request) depends on what an earlier example
    sent, which hypothesis takes for a flaky strategy. ``test_api`` keeps
    the generated keys, replays included."""
    key = (case.headers or {}).get(HEADER)
    if key is not None and VALID_KEY.fullmatch(key):
        case.headers[HEADER] = str(uuid.uuid4())


def checks():
    load_all_checks()
    return [check for check in CHECKS.get_all() if check.__name__ not in LEFT_OUT_CHECKS]


def test_the_document_fuzzed_is_the_one_served(world):
    assert world.app.get("/api/v1/openapi.json").json == DOCUMENT


@schema.parametrize()
@SETTINGS
def test_api(case, world):
    operation_id = case.operation.definition.raw.get("operationId")
    # In process: the checks' own probes (calls without credentials...) go there too.
    case.operation.schema.app = case.operation.app = world.app.app
    real_records(case, world, operation_id)
    headers = world.credentials(operation_id)
    started = time.perf_counter()
    try:
        response = case.call_and_validate(headers=headers, checks=checks())
        if 200 <= response.status_code < 300:
            STATS[f"2xx:{operation_id}"] += 1
    except BaseException:
        STATS["failures"] += 1
        raise
    finally:
        STATS["examples"] += 1
        STATS[f"phase:{case.meta.phase.name if case.meta else 'unknown'}"] += 1
        STATS["seconds"] += time.perf_counter() - started
        STATS[f"op:{operation_id}"] += 1


NOT_IN_SEQUENCES = ("forget_guest", "request_data_export", "delete_account", "set_retention", *NOT_LINKED)
STATEFUL = hypothesis.settings(SETTINGS, max_examples=15, stateful_step_count=8)
STATEFUL_CHECKS = ("use_after_free", "ensure_resource_availability")


def test_api_links(world):
    """Sequences that follow the document's links: create an event, then read,
    change and list it, add guests, issue a link and answer through it... A
    generated session cookie rides along with the host's bearer token (which
    wins, by design), so ``ignored_auth`` is left to ``test_api``."""
    schema.app = world.app.app
    # Privacy's calls and billing's writes are fuzzed one by one (test_api)
    # but left out of the sequences: a forget, an export or a deletion
    # changes what every later step of a sequence meets (links gone, mail
    # sent), which hypothesis takes for a flaky strategy when it replays it.
    machine = schema.exclude(operation_id=list(NOT_IN_SEQUENCES)).as_state_machine()
    linked = [check for check in CHECKS.get_all() if check.__name__ in STATEFUL_CHECKS]

    class Links(machine):
        def get_call_kwargs(self, case):
            operation_id = case.operation.definition.raw.get("operationId")
            real_records(case, world, operation_id)
            fresh_idempotency_key(case)
            return {"headers": world.credentials(operation_id), "app": world.app.app}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            operation_id = case.operation.definition.raw.get("operationId")
            STATS["stateful"] += 1
            STATS[f"linked:{operation_id}"] += 1
            if 200 <= response.status_code < 300:
                STATS[f"2xx:{operation_id}"] += 1
            try:
                case.validate_response(response, transport_kwargs=kwargs, checks=[
                    check for check in checks() + linked if check.__name__ != "ignored_auth"])
            except BaseException:
                STATS["failures"] += 1
                raise

    Links.run(settings=STATEFUL)
