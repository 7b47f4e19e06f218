"""A login's credentials at the level of the sessions module: the cookie,
the access token (JWT) with its exact claims, the rotating refresh token,
and what ends each. test_token_edges.py presents the same credentials
through the web; these tests call the module on a database of their own,
without an application, so they run in a moment (the mutation run's
checks of the module, and a developer's while changing it)."""
import datetime as dt
import uuid

import jwt
import pytest
import time_machine
from sqlalchemy.orm import Session

from guestguard import read_settings
from guestguard.accounts import sessions
from guestguard.accounts.models import API, WEB, AuthSession, RefreshToken, User
from guestguard.accounts.tokens import hash_token, looks_like_token
from guestguard.db import make_engine
from guestguard.keys import derive_key
from guestguard.testing import settings_for

NOW = dt.datetime(2030, 3, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def settings(module_db_url):
    return read_settings(settings_for(module_db_url), environ={})[0]


@pytest.fixture
def db(settings):
    engine = make_engine(settings)
    with Session(engine) as session:
        yield session
        session.rollback()
    engine.dispose()


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def user(db):
    person = User(email=f"{uuid.uuid4().hex}@example.com", display_name="Ada", password_hash="-")
    db.add(person)
    db.flush()
    return person


def start(db, settings, user, kind=API):
    return sessions.start_session(db, settings, user, kind=kind, user_agent="Firefox", ip="203.0.113.7")


# --- starting a login ----------------------------------------------------------------


def test_a_web_login_gets_a_fresh_cookie_stored_as_its_hash(db, settings, user, clock):
    session, cookie = sessions.start_session(db, settings, user, kind=WEB, user_agent="A" * 600, ip="203.0.113.7")
    assert looks_like_token(cookie)
    assert session.token_hash == hash_token(cookie)
    assert (session.user_id, session.kind, session.ip) == (user.id, WEB, "203.0.113.7")
    assert session.user_agent == "A" * 512
    assert session.created_at == session.last_seen_at == NOW
    assert session.expires_at == NOW + dt.timedelta(days=settings["auth.session_ttl_days"])
    assert session.revoked_at is None
    assert db.get(AuthSession, session.id) is session
    _, another = sessions.start_session(db, settings, user, kind=WEB, user_agent="", ip=None)
    assert another != cookie


def test_an_api_login_has_no_cookie(db, settings, user, clock):
    session, cookie = start(db, settings, user, kind=API)
    assert cookie is None and session.token_hash is None
    assert session.kind == API
    assert sessions.start_session(db, settings, user, kind=API, user_agent=None, ip=None)[0].user_agent == ""


# --- access tokens ---------------------------------------------------------------------


def test_an_access_token_carries_exactly_its_claims_signed_with_hs256(db, settings, user, clock):
    session, _ = start(db, settings, user)
    token = sessions.encode_access_token(settings, session)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(token, derive_key(settings, "jwt-access"), algorithms=["HS256"],
                        audience=settings["auth.jwt_audience"])
    now = int(NOW.timestamp())
    assert claims == {"sub": str(user.id), "sid": str(session.id), "iat": now,
                      "exp": now + settings["auth.access_token_ttl"], "typ": "access",
                      "aud": settings["auth.jwt_audience"]}
    assert sessions.decode_access_token(settings, token) == claims


def signed(settings, claims, key=None, algorithm="HS256", **changes):
    claims = {**claims, **changes}
    for name in [name for name, value in changes.items() if value is None]:
        del claims[name]
    if algorithm == "none":
        return jwt.encode(claims, None, algorithm="none")
    return jwt.encode(claims, key or derive_key(settings, "jwt-access"), algorithm=algorithm)


@pytest.fixture
def claims(settings, user, clock):
    now = int(NOW.timestamp())
    return {"sub": str(user.id), "sid": str(uuid.uuid4()), "iat": now, "exp": now + settings["auth.access_token_ttl"],
            "typ": "access", "aud": settings["auth.jwt_audience"]}


@pytest.mark.filterwarnings("ignore:The HMAC key is")
@pytest.mark.parametrize("change", [
    {"key": b"k" * 32}, {"algorithm": "HS512"}, {"algorithm": "none"},
    {"aud": "elsewhere"}, {"typ": "refresh"}, {"typ": None},
    {"sub": None}, {"sid": None}, {"iat": None}, {"exp": None}, {"aud": None},
    {"sub": 42}, {"sid": 42}, {"aud": ["guestguard"]}, {"iat": "1"}, {"iat": 1.5}, {"exp": 4102444800.0},
    {"exp": True}, {"iat": True},
])
def test_a_token_not_made_here_is_refused(settings, claims, change):
    change = dict(change)
    key, algorithm = change.pop("key", None), change.pop("algorithm", "HS256")
    if "aud" in change and change["aud"] not in (None, "elsewhere"):
        change["aud"] = [settings["auth.jwt_audience"]] if isinstance(change["aud"], list) else change["aud"]
    token = signed(settings, claims, key=key, algorithm=algorithm, **change)
    with pytest.raises(sessions.InvalidToken):
        sessions.decode_access_token(settings, token)


def test_a_token_living_longer_than_the_lifetime_is_refused_and_one_living_exactly_it_is_not(settings, claims):
    ttl = settings["auth.access_token_ttl"]
    assert sessions.decode_access_token(settings, signed(settings, claims))["exp"] == claims["iat"] + ttl
    shorter = signed(settings, claims, exp=claims["iat"] + 1)
    assert sessions.decode_access_token(settings, shorter)["exp"] == claims["iat"] + 1
    with pytest.raises(sessions.InvalidToken):
        sessions.decode_access_token(settings, signed(settings, claims, exp=claims["iat"] + ttl + 1))
    assert sessions.made_here(settings, claims)
    assert not sessions.made_here(settings, {**claims, "exp": claims["iat"] + ttl + 1})
    for name, value in (("sub", 1), ("sid", None), ("aud", ["x"]), ("iat", 1.0), ("exp", False)):
        assert not sessions.made_here(settings, {**claims, name: value}), name


def test_an_access_token_expires_after_its_lifetime(db, settings, user, clock):
    session, _ = start(db, settings, user)
    token = sessions.encode_access_token(settings, session)
    clock.shift(settings["auth.access_token_ttl"] - 1)
    assert sessions.session_from_access_token(db, settings, token) is session
    clock.shift(2)
    with pytest.raises(sessions.InvalidToken):
        sessions.session_from_access_token(db, settings, token)


def test_an_access_token_names_its_live_api_login_and_its_user(db, settings, user, clock):
    session, _ = start(db, settings, user)
    assert sessions.session_from_access_token(db, settings, sessions.encode_access_token(settings, session)) is session
    web, _ = start(db, settings, user, kind=WEB)
    other = User(email=f"{uuid.uuid4().hex}@example.com", display_name="Eve", password_hash="-")
    db.add(other)
    db.flush()
    now = int(NOW.timestamp())
    base = {"sub": str(user.id), "sid": str(session.id), "iat": now, "exp": now + 60, "typ": "access",
            "aud": settings["auth.jwt_audience"]}
    for change in ({"sid": str(web.id)}, {"sid": str(uuid.uuid4())}, {"sub": str(other.id)}, {"sid": "not-a-uuid"},
                   {"sid": ""}):
        with pytest.raises(sessions.InvalidToken):
            sessions.session_from_access_token(db, settings, signed(settings, base, **change))


def test_an_access_token_of_an_ended_login_or_a_deleted_user_is_refused(db, settings, user, clock):
    session, _ = start(db, settings, user)
    token = sessions.encode_access_token(settings, session)
    sessions.revoke(session, "logout")
    with pytest.raises(sessions.InvalidToken):
        sessions.session_from_access_token(db, settings, token)
    session, _ = start(db, settings, user)
    token = sessions.encode_access_token(settings, session)
    user.deleted_at = NOW
    with pytest.raises(sessions.InvalidToken):
        sessions.session_from_access_token(db, settings, token)


# --- cookies ---------------------------------------------------------------------------


def test_a_cookie_names_its_live_web_login_and_nothing_near_it_does(db, settings, user, clock):
    session, cookie = start(db, settings, user, kind=WEB)
    assert sessions.session_from_cookie(db, cookie) is session
    for presented in (cookie[:-1] + ("A" if cookie[-1] != "A" else "B"), cookie[:-1], cookie + "A", "", "x" * 43,
                      cookie.upper() if cookie.upper() != cookie else cookie.lower()):
        with pytest.raises(sessions.InvalidToken):
            sessions.session_from_cookie(db, presented)


def test_a_cookie_of_an_api_login_is_refused(db, settings, user, clock):
    session, cookie = start(db, settings, user, kind=WEB)
    session.kind = API
    with pytest.raises(sessions.InvalidToken):
        sessions.session_from_cookie(db, cookie)


@pytest.mark.parametrize("ending", ["revoked", "expired", "user deleted"])
def test_a_cookie_stops_working_when_its_login_ends(db, settings, user, clock, ending):
    session, cookie = start(db, settings, user, kind=WEB)
    if ending == "revoked":
        sessions.revoke(session, "logout")
    elif ending == "expired":
        clock.move_to(session.expires_at)
    else:
        user.deleted_at = NOW
    with pytest.raises(sessions.InvalidToken):
        sessions.session_from_cookie(db, cookie)


def test_a_cookie_works_until_the_moment_its_login_expires(db, settings, user, clock):
    session, cookie = start(db, settings, user, kind=WEB)
    clock.move_to(session.expires_at - dt.timedelta(seconds=1))
    assert sessions.session_from_cookie(db, cookie) is session


def test_the_last_use_is_written_once_it_is_more_than_five_minutes_old(db, settings, user, clock):
    session, cookie = start(db, settings, user, kind=WEB)
    clock.shift(dt.timedelta(minutes=5))
    sessions.session_from_cookie(db, cookie)
    assert session.last_seen_at == NOW
    clock.shift(dt.timedelta(seconds=1))
    sessions.session_from_cookie(db, cookie)
    assert session.last_seen_at == NOW + dt.timedelta(minutes=5, seconds=1)


# --- refresh tokens ---------------------------------------------------------------------


def test_a_refresh_token_is_exchanged_once_for_a_new_pair(db, settings, user, clock):
    session, _ = start(db, settings, user)
    pair = sessions.issue_tokens(db, settings, session)
    db.flush()
    clock.shift(dt.timedelta(minutes=10))
    later = NOW + dt.timedelta(minutes=10)
    new = sessions.rotate_refresh_token(db, settings, pair.refresh_token)
    assert new.session_id == session.id and new.refresh_token != pair.refresh_token
    assert new.expires_in == settings["auth.access_token_ttl"]
    assert sessions.session_from_access_token(db, settings, new.access_token) is session
    assert session.last_seen_at == later
    old = db.query(RefreshToken).filter_by(token_hash=hash_token(pair.refresh_token)).one()
    assert old.rotated_at == later
    db.flush()
    assert sessions.rotate_refresh_token(db, settings, new.refresh_token).session_id == session.id


def test_replaying_a_used_refresh_token_ends_the_login(db, settings, user, clock):
    session, _ = start(db, settings, user)
    pair = sessions.issue_tokens(db, settings, session)
    db.flush()
    sessions.rotate_refresh_token(db, settings, pair.refresh_token)
    db.flush()
    with pytest.raises(sessions.RefreshReplay) as replay:
        sessions.rotate_refresh_token(db, settings, pair.refresh_token)
    assert replay.value.session is session
    assert (session.revoked_at, session.revoked_reason) == (NOW, "refresh_token_replayed")


@pytest.mark.parametrize("presented", ["", "x", "x" * 43, None])
def test_an_unknown_or_malformed_refresh_token_is_refused(db, settings, user, presented):
    with pytest.raises(sessions.InvalidToken) as refused:
        sessions.rotate_refresh_token(db, settings, presented)
    assert not isinstance(refused.value, sessions.RefreshReplay)


@pytest.mark.parametrize("ending", ["revoked", "expired", "user deleted"])
def test_a_refresh_token_of_an_ended_login_is_refused_without_ending_anything(db, settings, user, clock, ending):
    session, _ = start(db, settings, user)
    pair = sessions.issue_tokens(db, settings, session)
    db.flush()
    if ending == "revoked":
        sessions.revoke(session, "logout")
    elif ending == "expired":
        clock.move_to(session.expires_at)
    else:
        user.deleted_at = NOW
    with pytest.raises(sessions.InvalidToken) as refused:
        sessions.rotate_refresh_token(db, settings, pair.refresh_token)
    assert not isinstance(refused.value, sessions.RefreshReplay)
    assert db.query(RefreshToken).filter_by(token_hash=hash_token(pair.refresh_token)).one().rotated_at is None
    assert session.revoked_reason in (None, "logout")


def test_a_refresh_token_that_another_request_rotated_first_ends_the_login(db, settings, user, clock):
    """The race: both read the token unrotated; the database lets one win."""
    session, _ = start(db, settings, user)
    pair = sessions.issue_tokens(db, settings, session)
    db.flush()
    token = db.query(RefreshToken).filter_by(token_hash=hash_token(pair.refresh_token)).one()
    db.execute(RefreshToken.__table__.update().where(RefreshToken.id == token.id).values(rotated_at=NOW))
    assert token.rotated_at is None  # this request's copy has not seen the other's write
    with pytest.raises(sessions.RefreshReplay) as replay:
        sessions.rotate_refresh_token(db, settings, pair.refresh_token)
    assert replay.value.session is session
    assert session.revoked_reason == "refresh_token_replayed"


def test_refreshing_one_login_leaves_every_other_refresh_token_alone(db, settings, user, clock):
    first, _ = start(db, settings, user)
    second, _ = start(db, settings, user)
    mine, theirs = sessions.issue_tokens(db, settings, first), sessions.issue_tokens(db, settings, second)
    db.flush()
    sessions.rotate_refresh_token(db, settings, mine.refresh_token)
    db.flush()
    assert sessions.rotate_refresh_token(db, settings, theirs.refresh_token).session_id == second.id
    assert first.revoked_at is None and second.revoked_at is None


# --- ending a login ------------------------------------------------------------------------


def test_revoking_records_when_and_why_once(db, settings, user, clock):
    session, _ = start(db, settings, user)
    assert sessions.revoke(session, "logout") is True
    assert (session.revoked_at, session.revoked_reason) == (NOW, "logout")
    assert sessions.revoke(session, "password_changed", NOW + dt.timedelta(hours=1)) is False
    assert (session.revoked_at, session.revoked_reason) == (NOW, "logout")
    other, _ = start(db, settings, user)
    when = NOW - dt.timedelta(minutes=3)
    assert sessions.revoke(other, "admin", when) is True
    assert other.revoked_at == when
