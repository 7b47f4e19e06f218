"""Every lookup of a presented token, called directly in one application
built once for the module: the right value works, a near miss does not,
and the right value stops working once it should (used, expired, revoked,
or its parent gone). test_token_edges.py presents the same tokens through
the routes; these tests run in a moment (the mutation run's checks of the
lookups, and a developer's while changing them)."""
import datetime as dt
import uuid

import pytest
import time_machine

from guestguard import rls
from guestguard.accounts import services as accounts
from guestguard.accounts.models import API, RESET_PASSWORD, VERIFY_EMAIL, UserToken
from guestguard.accounts.sessions import revoke, start_session
from guestguard.accounts.tokens import hash_token, new_token
from guestguard.activity.models import StreamTicket
from guestguard.activity.stream import TICKET_PREFIX, redeem_ticket
from guestguard.db import utcnow
from guestguard.events.models import Event, Guest, InvitationLink
from guestguard.guard.access import LOOK_UP, found_in, keep, look_up, use_of
from guestguard.guard.models import EXPIRED, OK, REVOKED, UNKNOWN
from guestguard.testing import AppFactory, acting_as, create_user, in_request, settings_for
from guestguard.workspaces import services as workspaces
from guestguard.workspaces.models import Invitation, Membership, Workspace

NOW = dt.datetime(2030, 3, 1, 12, tzinfo=dt.UTC)
SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def near_misses(value: str) -> list[str]:
    def other(char):
        return SAFE[(SAFE.index(char) + 1) % len(SAFE)]

    return [value[:-1] + other(value[-1]), value[:-20] + other(value[-20]) + value[-19:], value[:-1], value + "A",
            value.swapcase()]


@pytest.fixture(scope="module")
def site(module_db_url):
    factory = AppFactory(settings_for(module_db_url))
    app = factory()
    yield app.app.registry
    factory.close()


@pytest.fixture
def run(site):
    def run_(func):
        return in_request(site, func)

    return run_


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def team(request):
    """A workspace of its own (so a test may delete it) with an owner and
    door staff, an event and a guest."""
    tag = uuid.uuid4().hex[:8]
    ada = create_user(request, f"ada-{tag}@example.com", "Ada")
    sam = create_user(request, f"sam-{tag}@example.com", "Sam")
    ours = workspaces.create_workspace(request.ctx, ada, "Ours")
    request.db.add(Membership(workspace_id=ours.id, user_id=sam.id, role="staff"))
    event = Event(workspace_id=ours.id, name="Gala", timezone="UTC", starts_at=NOW + dt.timedelta(days=30),
                  status="published")
    request.db.add(event)
    request.db.flush()
    guest = Guest(workspace_id=ours.id, event_id=event.id, name="Grace")
    request.db.add(guest)
    request.db.flush()
    return {"ada": ada, "sam": sam, "workspace": ours, "event": event, "guest": guest}


# --- workspace API keys ---------------------------------------------------------------


def test_a_key_is_found_by_its_whole_secret_only(run, clock):
    def check(request):
        world = team(request)
        key, secret = workspaces.create_api_key(acting_as(request.ctx, world["ada"]), world["workspace"], "k", "admin")
        found = workspaces.api_key_for(request.db, secret)
        assert found is key and key.last_used_at == NOW
        prefix, lookup_id, raw = secret[:4], secret[4:20], secret[21:]
        assert secret == f"{prefix}{lookup_id}_{raw}"
        presented = [f"{prefix}{lookup_id}_{miss}" for miss in near_misses(raw)]
        presented += [f"{prefix}{lookup_id[:-1]}_{raw}", f"{prefix}{lookup_id}0_{raw}",
                      f"{prefix}{lookup_id.upper()}_{raw}", f"{prefix}{'0' * 16}_{raw}", f"{lookup_id}_{raw}",
                      f"{prefix}{lookup_id}{raw}", f"{prefix}{lookup_id}_", raw, ""]
        return [value for value in presented if workspaces.api_key_for(request.db, value) is not None]

    assert run(check) == []


def test_a_revoked_key_or_a_key_of_a_deleted_workspace_is_refused_with_its_right_secret(run, clock):
    def check(request):
        world = team(request)
        ctx = acting_as(request.ctx, world["ada"])
        revoked, revoked_secret = workspaces.create_api_key(ctx, world["workspace"], "old", "admin")
        workspaces.revoke_api_key(ctx, revoked)
        _, orphan_secret = workspaces.create_api_key(ctx, world["workspace"], "orphan", "staff")
        found_before = workspaces.api_key_for(request.db, orphan_secret) is not None
        world["workspace"].deleted_at = NOW
        return (workspaces.api_key_for(request.db, revoked_secret), found_before,
                workspaces.api_key_for(request.db, orphan_secret))

    assert run(check) == (None, True, None)


def test_a_keys_last_use_is_written_at_most_once_a_minute(run, clock):
    def check(request):
        world = team(request)
        key, secret = workspaces.create_api_key(acting_as(request.ctx, world["ada"]), world["workspace"], "k", "admin")
        seen = []
        for seconds in (0, 60, 61, 122):
            clock.move_to(NOW + dt.timedelta(seconds=seconds))
            workspaces.api_key_for(request.db, secret)
            seen.append(key.last_used_at)
        return seen

    first, sixty, later = NOW, NOW + dt.timedelta(seconds=61), NOW + dt.timedelta(seconds=122)
    assert run(check) == [first, first, sixty, later]


# --- workspace invitations ---------------------------------------------------------------


def invitation(request, world, **fields) -> str:
    raw, token_hash = new_token()
    request.db.add(Invitation(workspace_id=world["workspace"].id, email="new@example.com", role="staff",
                              token_hash=token_hash, invited_by_id=world["ada"].id,
                              expires_at=fields.pop("expires_at", NOW + dt.timedelta(days=7)), **fields))
    request.db.flush()
    return raw


def invitation_found(request, raw) -> bool:
    """Whether the token names a pending invitation; refused the one way otherwise."""
    try:
        workspaces.invitation_for_token(request.db, raw)
    except workspaces.WorkspaceError as error:
        refusal = (error.status, error.code, error.message)
    else:
        return True
    assert refusal == (404, "invalid_invitation",
                       "This invitation is not valid. It may have expired, been used or been withdrawn.")
    return False


def test_a_pending_invitation_is_found_by_its_token_only(run, clock):
    def check(request):
        world = team(request)
        raw = invitation(request, world)
        assert workspaces.invitation_for_token(request.db, raw).token_hash == hash_token(raw)
        return [miss for miss in [*near_misses(raw), "", "x"] if invitation_found(request, miss)]

    assert run(check) == []


@pytest.mark.parametrize("state", ["accepted", "revoked", "expires now", "expired", "workspace deleted"])
def test_an_invitation_no_longer_pending_or_of_a_deleted_workspace_is_not_found(run, clock, state):
    def check(request):
        world = team(request)
        fields = {"accepted": {"accepted_at": NOW}, "revoked": {"revoked_at": NOW},
                  "expires now": {"expires_at": NOW}, "expired": {"expires_at": NOW - dt.timedelta(seconds=1)},
                  "workspace deleted": {}}[state]
        raw = invitation(request, world, **fields)
        if state == "workspace deleted":
            world["workspace"].deleted_at = NOW
        return invitation_found(request, raw)

    assert run(check) is False


def test_an_invitation_is_found_until_the_moment_it_expires(run, clock):
    assert run(lambda request: invitation_found(request, invitation(
        request, team(request), expires_at=NOW + dt.timedelta(seconds=1)))) is True


# --- invitation links ------------------------------------------------------------------------


def link(request, world) -> str:
    raw, token_hash = new_token()
    request.db.add(InvitationLink(workspace_id=world["workspace"].id, event_id=world["event"].id,
                                  guest_id=world["guest"].id, token_hash=token_hash))
    request.db.flush()
    return raw


def test_a_link_names_its_guest_and_event_and_nothing_near_it_does(run, clock):
    def check(request):
        world = team(request)
        raw = link(request, world)
        use = look_up(request.db, raw)
        found = request.db.query(InvitationLink).filter_by(token_hash=hash_token(raw)).one()
        assert (use.outcome, use.link.id, use.guest.id, use.event.id) == (
            OK, found.id, world["guest"].id, world["event"].id)
        misses = [look_up(request.db, miss) for miss in [*near_misses(raw), "", None, 42]]
        return {(use.outcome, use.link, use.guest, use.event) for use in misses}

    assert run(check) == {(UNKNOWN, None, None, None)}


def test_a_link_brings_its_guests_latest_answer_and_none_before_the_first(run, clock):
    from guestguard.events.models import Rsvp

    def check(request):
        world = team(request)
        raw = link(request, world)
        before = look_up(request.db, raw).latest
        for n, (when, dietary) in enumerate(((NOW, "vegan"), (NOW + dt.timedelta(minutes=1), "no nuts"))):
            request.db.add(Rsvp(workspace_id=world["workspace"].id, event_id=world["event"].id,
                                guest_id=world["guest"].id, response="yes", dietary=dietary,
                                message=f"answer {n}", created_at=when))
        request.db.flush()
        latest = look_up(request.db, raw).latest
        return before, (latest.dietary, latest.message)

    assert run(check) == (None, ("no nuts", "answer 1"))


@pytest.mark.parametrize("state, outcome", [
    ("revoked", REVOKED), ("event deleted", EXPIRED), ("workspace deleted", EXPIRED),
    ("revoked in a deleted workspace", REVOKED)])
def test_a_revoked_link_or_one_whose_event_or_workspace_is_gone_is_told_apart(run, clock, state, outcome):
    def check(request):
        world = team(request)
        raw = link(request, world)
        found = request.db.query(InvitationLink).filter_by(token_hash=hash_token(raw)).one()
        if "revoked" in state:
            found.revoked_at = NOW
        if state == "event deleted":
            world["event"].deleted_at = NOW
        if "workspace deleted" in state or "deleted workspace" in state:
            world["workspace"].deleted_at = NOW
        request.db.flush()
        use = look_up(request.db, raw)
        return (use.outcome, use.link.id == found.id, use.guest.id == world["guest"].id,
                use.event.id == world["event"].id)

    assert run(check) == (outcome, True, True, True)


@pytest.mark.parametrize("state, outcome", [("live", OK), ("revoked", REVOKED), ("unknown", UNKNOWN),
                                            ("not a token", UNKNOWN)])
def test_a_use_to_log_is_logged_by_the_look_up_on_postgresql_and_said_so(run, clock, state, outcome):
    """Given the use to log, PostgreSQL's look-up writes its row in the same
    statement and says it did (the caller logs it otherwise, as SQLite's
    does): the row's outcome and link are the look-up's."""
    from guestguard.guard.models import AccessEntry

    def check(request):
        world = team(request)
        raw = link(request, world)
        found = request.db.query(InvitationLink).filter_by(token_hash=hash_token(raw)).one()
        if state == "revoked":
            found.revoked_at = NOW
        presented = {"unknown": near_misses(raw)[0], "not a token": "nope"}.get(state, raw)
        request.db.flush()
        use = {"id": uuid.uuid4(), "at": NOW, "kind": "view", "ip": "192.0.2.1", "network": "192.0.2.0/24",
               "user_agent": "test", "device": "Other", "automated": False}
        looked = look_up(request.db, presented, use)
        rows = [(row.id, row.outcome, row.link_id) for row in request.db.query(AccessEntry).filter_by(id=use["id"])]
        postgresql = request.db.get_bind().dialect.name == "postgresql"
        return looked.outcome, looked.logged, rows, postgresql, found.id, use["id"]

    looked, logged, rows, postgresql, link_id, use_id = run(check)
    assert looked == outcome
    named = link_id if state in ("live", "revoked") else None
    if postgresql and state != "not a token":
        assert logged is True and rows == [(use_id, outcome, named)]
    else:
        assert logged is False and rows == []


@pytest.mark.parametrize("logged", [True, False])
def test_a_look_ups_row_says_whether_its_statement_logged_the_use_and_keep_logs_it_once(run, clock, logged):
    """What a look-up's row names carries the look-up's word on whether its
    statement logged the use (PostgreSQL's, given one), and ``keep`` logs
    the use only when it did not. SQLite's look-up never logs, so its row
    is read here and taken as each kind of look-up would take it: the
    PostgreSQL pass checks the logging statement itself (above)."""
    from guestguard.guard.models import AccessEntry

    def check(request):
        world = team(request)
        token_hash = hash_token(link(request, world))
        rls.open_credential(request.db, InvitationLink.token_hash, token_hash)  # as look_up opens it
        row = LOOK_UP.first(request.db, {"token_hash": token_hash})
        found = found_in(row, logged)
        use = use_of(request.ctx, "view")
        keep(request.ctx, use, found)
        written = request.db.query(AccessEntry).filter_by(id=use["id"]).count()
        return found.logged, found.outcome, found.guest.id == world["guest"].id, written

    assert run(check) == (logged, OK, True, 0 if logged else 1)


# --- stream tickets ----------------------------------------------------------------------------


def ticket(request, world, holder: str = "sam", **fields) -> str:
    raw, token_hash = new_token(TICKET_PREFIX)
    if holder == "key":
        key, _ = workspaces.create_api_key(acting_as(request.ctx, world["ada"]), world["workspace"], "k", "staff")
        world["key"] = key
        fields = {"api_key_id": key.id, **fields}
    elif holder is not None:
        session, _ = start_session(request.db, request.registry.settings, world[holder], kind=API, user_agent="",
                                   ip=None)
        world["session"] = session
        fields = {"user_id": world[holder].id, "session_id": session.id, **fields}
    request.db.add(StreamTicket(token_hash=token_hash, workspace_id=world["workspace"].id,
                                event_id=world["event"].id,
                                expires_at=fields.pop("expires_at", NOW + dt.timedelta(seconds=60)), **fields))
    request.db.flush()
    return raw


def test_a_ticket_works_once_for_its_event_and_nothing_near_it_does(run, clock):
    def check(request):
        world = team(request)
        raw = ticket(request, world)
        event_id = world["event"].id
        wrong = [miss for miss in [*near_misses(raw), raw.removeprefix(TICKET_PREFIX), "", None]
                 if redeem_ticket(request.db, miss, event_id) is not None]
        assert redeem_ticket(request.db, raw, uuid.uuid4()) is None, "another event"
        first = redeem_ticket(request.db, raw, event_id)
        assert first is not None and first.token_hash == hash_token(raw) and first.used_at == NOW
        return wrong, redeem_ticket(request.db, raw, event_id)

    assert run(check) == ([], None)


def test_a_ticket_works_until_its_sixtieth_second(run, clock):
    def check(request):
        world = team(request)
        early, late = ticket(request, world), ticket(request, world)
        clock.move_to(NOW + dt.timedelta(seconds=59))
        ok = redeem_ticket(request.db, early, world["event"].id) is not None
        clock.move_to(NOW + dt.timedelta(seconds=60))
        return ok, redeem_ticket(request.db, late, world["event"].id)

    assert run(check) == (True, None)


@pytest.mark.parametrize("change", ["left the workspace", "locked", "deleted", "signed out", "login expired",
                                    "event deleted", "workspace deleted", "no holder"])
def test_a_persons_ticket_dies_with_their_access(run, clock, change):
    def check(request):
        world = team(request)
        raw = ticket(request, world, holder=None if change == "no holder" else "sam")
        sam = world["sam"]
        if change == "left the workspace":
            request.db.query(Membership).filter_by(workspace_id=world["workspace"].id, user_id=sam.id).delete()
        elif change == "locked":
            sam.locked_at = NOW
        elif change == "deleted":
            sam.deleted_at = NOW
        elif change == "signed out":
            revoke(world["session"], "logout")
        elif change == "login expired":
            world["session"].expires_at = NOW
        elif change == "event deleted":
            world["event"].deleted_at = NOW
        elif change == "workspace deleted":
            world["workspace"].deleted_at = NOW
        request.db.flush()
        return redeem_ticket(request.db, raw, world["event"].id)

    assert run(check) is None


def test_a_persons_ticket_works_while_they_keep_their_access(run, clock):
    def check(request):
        world = team(request)
        raw = ticket(request, world, holder="ada")
        world["session"].expires_at = NOW + dt.timedelta(seconds=1)
        return redeem_ticket(request.db, raw, world["event"].id) is not None

    assert run(check) is True


@pytest.mark.parametrize("revoked", [False, True])
def test_a_keys_ticket_works_while_the_key_does(run, clock, revoked):
    def check(request):
        world = team(request)
        raw = ticket(request, world, holder="key")
        if revoked:
            world["key"].revoked_at = NOW
        request.db.flush()
        return redeem_ticket(request.db, raw, world["event"].id) is not None

    assert run(check) is not revoked


# --- emailed links (password reset, address verification) -----------------------------------


def user_token(request, user, purpose: str, **fields) -> str:
    raw, token_hash = new_token()
    request.db.add(UserToken(user_id=user.id, purpose=purpose, token_hash=token_hash,
                             expires_at=fields.pop("expires_at", NOW + dt.timedelta(hours=1)), **fields))
    request.db.flush()
    return raw


def consumed(request, raw, purpose: str):
    """The user the link names, using it up; None when refused (the one way)."""
    try:
        return accounts._consume_user_token(request.ctx, raw, purpose)
    except accounts.AccountError as error:
        refusal = (error.status, error.code, error.message)
    assert refusal == (400, "invalid_token", "This link is not valid. It may have expired or been used already.")
    return None


def test_an_emailed_link_works_once_for_its_purpose_and_nothing_near_it_does(run, clock):
    def check(request):
        world = team(request)
        raw = user_token(request, world["ada"], RESET_PASSWORD)
        assert accounts.check_reset_token(request.ctx, raw) is True
        wrong = [miss for miss in [*near_misses(raw), "", "x"] if accounts.check_reset_token(request.ctx, miss)
                 or consumed(request, miss, RESET_PASSWORD) is not None]
        assert consumed(request, raw, VERIFY_EMAIL) is None, "another purpose"
        assert consumed(request, raw, RESET_PASSWORD) is world["ada"]
        token = request.db.query(UserToken).filter_by(token_hash=hash_token(raw)).one()
        assert token.used_at == NOW
        return wrong, consumed(request, raw, RESET_PASSWORD), accounts.check_reset_token(request.ctx, raw)

    assert run(check) == ([], None, False)


@pytest.mark.parametrize("state", ["expires now", "expired", "used", "user deleted"])
def test_an_emailed_link_expired_used_or_of_a_deleted_user_is_refused(run, clock, state):
    def check(request):
        world = team(request)
        fields = {"expires now": {"expires_at": NOW}, "expired": {"expires_at": NOW - dt.timedelta(seconds=1)},
                  "used": {"used_at": NOW - dt.timedelta(minutes=1)}, "user deleted": {}}[state]
        raw = user_token(request, world["ada"], RESET_PASSWORD, **fields)
        if state == "user deleted":
            world["ada"].deleted_at = NOW
        checked = accounts.check_reset_token(request.ctx, raw)
        return (checked if state != "user deleted" else False), consumed(request, raw, RESET_PASSWORD)

    assert run(check) == (False, None)


def test_an_emailed_link_works_until_the_moment_it_expires_and_checking_does_not_use_it(run, clock):
    def check(request):
        world = team(request)
        raw = user_token(request, world["ada"], RESET_PASSWORD, expires_at=NOW + dt.timedelta(seconds=1))
        verify = user_token(request, world["ada"], VERIFY_EMAIL)
        return (accounts.check_reset_token(request.ctx, raw), accounts.check_reset_token(request.ctx, raw),
                accounts.check_reset_token(request.ctx, verify), consumed(request, raw, RESET_PASSWORD) is not None)

    assert run(check) == (True, True, False, True)


def test_a_link_used_by_another_request_first_is_refused(run, clock):
    """The race: this request read the token unused; the other's write wins."""
    def check(request):
        world = team(request)
        raw = user_token(request, world["ada"], RESET_PASSWORD)
        token = request.db.query(UserToken).filter_by(token_hash=hash_token(raw)).one()
        request.db.execute(UserToken.__table__.update().where(UserToken.id == token.id).values(used_at=utcnow()))
        assert token.used_at is None
        return consumed(request, raw, RESET_PASSWORD)

    assert run(check) is None


def test_workspaces_of_the_module_are_its_own(run):
    """The tests above each build their own workspace: none sees another's."""
    assert run(lambda request: request.db.query(Workspace).count()) >= 1
