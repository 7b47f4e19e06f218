"""Every kind of credential, presented almost right: the real value with one
character changed, one character short, one too long; and the right value
once it should no longer work (revoked, used, expired, or its parent gone:
a deleted event or workspace, a removed member, an ended login, a changed
password). Each must be refused exactly as garbage is."""
import datetime as dt
import uuid

import jwt
import pytest
import time_machine
from sqlalchemy import select, update

from guestguard.accounts import sessions
from guestguard.accounts.models import WEB, AuthSession, User
from guestguard.activity.stream import redeem_ticket
from guestguard.db import utcnow
from guestguard.keys import derive_key
from guestguard.testing import TEST_PASSWORD, acting_as, bearer_for, create_user, csrf, inbox, link, signup
from guestguard.workspaces import services as workspaces
from guestguard.workspaces.models import Workspace

SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def other_char(char: str) -> str:
    return SAFE[(SAFE.index(char) + 1) % len(SAFE)]


def near_misses(value: str) -> dict[str, str]:
    """The value with its last character changed, its first secret character
    changed, one character short and one too long."""
    return {
        "last character changed": value[:-1] + other_char(value[-1]),
        "a middle character changed": value[:-20] + other_char(value[-20]) + value[-19:],
        "one character short": value[:-1],
        "one character too long": value + "A",
    }


def unauthorized(app, headers) -> bool:
    return app.get("/api/v1/workspaces", headers=headers, status="*").status_int == 401


# --- workspace API keys -------------------------------------------------------------


@pytest.fixture
def keys(app, run_in_request):
    def build(request):
        ada = create_user(request, "ada@example.com", "Ada")
        ours = workspaces.create_workspace(request.ctx, ada, "Ours")
        ctx = acting_as(request.ctx, ada)
        _, first = workspaces.create_api_key(ctx, ours, "first", "admin")
        _, second = workspaces.create_api_key(ctx, ours, "second", "staff")
        return {"workspace": ours.id, "first": first, "second": second}

    return run_in_request(build, app.app.registry)


def test_a_real_api_key_works(app, keys):
    response = app.get("/api/v1/workspaces", headers={"Authorization": f"Bearer {keys['first']}"})
    assert [w["id"] for w in response.json["workspaces"]] == [str(keys["workspace"])]


def test_a_wrong_secret_for_a_real_api_key_is_refused(app, keys):
    key = keys["first"]
    for case, presented in near_misses(key).items():
        assert unauthorized(app, {"Authorization": f"Bearer {presented}"}), case
    lookup_id = key.split("_")[1]
    other_secret = keys["second"].split("_", 2)[2]
    assert unauthorized(app, {"Authorization": f"Bearer ggk_{lookup_id}_{other_secret}"}), "another key's secret"
    changed_lookup = lookup_id[:-1] + ("0" if lookup_id[-1] != "0" else "1")
    assert unauthorized(app, {"Authorization": f"Bearer ggk_{changed_lookup}_{key.split('_', 2)[2]}"})
    assert unauthorized(app, {"Authorization": f"Bearer {key.upper()}"})
    assert unauthorized(app, {"Authorization": f"Basic {key}"}), "only as a bearer token"


def test_a_revoked_keys_right_secret_is_refused(app, keys, run_in_request):
    ada = bearer_for(app, "ada@example.com")
    listed = app.get(f"/api/v1/workspaces/{keys['workspace']}/api-keys", headers=ada).json["api_keys"]
    first = next(key for key in listed if key["name"] == "first")
    app.delete(f"/api/v1/workspaces/{keys['workspace']}/api-keys/{first['id']}", headers=ada, status=204)
    assert unauthorized(app, {"Authorization": f"Bearer {keys['first']}"})
    assert not unauthorized(app, {"Authorization": f"Bearer {keys['second']}"}), "the other key still works"


def test_a_key_of_a_deleted_workspace_is_refused(app, keys, run_in_request):
    def delete_quietly(request):  # as if the keys had not been revoked with it
        request.db.execute(update(Workspace).where(Workspace.id == keys["workspace"]).values(deleted_at=utcnow()))

    run_in_request(delete_quietly, app.app.registry)
    assert unauthorized(app, {"Authorization": f"Bearer {keys['first']}"})


def test_deleting_a_workspace_revokes_its_keys(app, keys):
    ada = bearer_for(app, "ada@example.com")
    app.delete(f"/api/v1/workspaces/{keys['workspace']}", headers=ada, status=204)
    assert unauthorized(app, {"Authorization": f"Bearer {keys['second']}"})


# --- the login cookie -----------------------------------------------------------------


def signed_in_as(client) -> bool:
    response = client.get("/account", status="*")
    return response.status_int == 200


def cookie_client(app, value):
    app.reset()
    app.set_cookie("gg_session", value)
    return app


@pytest.fixture
def ada(app, run_in_request):
    return run_in_request(lambda r: create_user(r, "ada@example.com", "Ada").id, app.app.registry)


def web_login(app, run_in_request):
    from guestguard.accounts.services import login

    return run_in_request(lambda r: login(r.ctx, email="ada@example.com", password=TEST_PASSWORD, kind=WEB),
                          app.app.registry).cookie_token


def test_a_near_miss_of_a_real_session_cookie_is_refused(app, run_in_request, ada):
    cookie = web_login(app, run_in_request)
    assert signed_in_as(cookie_client(app, cookie))
    for case, presented in near_misses(cookie).items():
        assert not signed_in_as(cookie_client(app, presented)), case


def test_a_session_cookie_stops_working_once_signed_out_expired_or_its_user_deleted(app, run_in_request, ada):
    signed_out = web_login(app, run_in_request)
    client = cookie_client(app, signed_out)
    client.post("/logout", {"csrf_token": csrf(client.get("/account"))})
    assert not signed_in_as(cookie_client(app, signed_out)), "signed out"

    expiring = web_login(app, run_in_request)
    days = app.app.registry.settings["auth.session_ttl_days"]
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=days, seconds=1)):
        assert not signed_in_as(cookie_client(app, expiring)), "expired"
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=days, seconds=-60)):
        assert signed_in_as(cookie_client(app, expiring)), "a minute before it expires"

    deleted = web_login(app, run_in_request)
    run_in_request(lambda r: r.db.execute(update(User).where(User.id == ada).values(deleted_at=utcnow())),
                   app.app.registry)
    assert not signed_in_as(cookie_client(app, deleted)), "the user was deleted"


def test_a_cookie_is_not_a_bearer_token_and_a_bearer_header_overrides_the_cookie(app, run_in_request, ada):
    cookie = web_login(app, run_in_request)
    app.get("/api/v1/me", headers={"Authorization": f"Bearer {cookie}"}, status=401)
    client = cookie_client(app, cookie)
    client.get("/api/v1/me", headers={"Authorization": "Bearer garbage"}, status=401)
    assert client.get("/api/v1/me").json["user"]["email"] == "ada@example.com"


# --- access tokens (JWT) and refresh tokens ------------------------------------------------


@pytest.fixture
def tokens(app, ada):
    return app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD}).json


def claims_of(app, token):
    settings = app.app.registry.settings
    return jwt.decode(token, derive_key(settings, "jwt-access"), algorithms=["HS256"],
                      audience=settings["auth.jwt_audience"])


def forge(app, claims, key=None, algorithm="HS256", headers=None):
    settings = app.app.registry.settings
    return jwt.encode(claims, key if key is not None else derive_key(settings, "jwt-access"), algorithm=algorithm,
                      headers=headers)


def me(app, token) -> int:
    return app.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}, status="*").status_int


def test_a_real_access_token_works_and_near_misses_do_not(app, tokens):
    assert me(app, tokens["access_token"]) == 200
    for case, presented in near_misses(tokens["access_token"]).items():
        assert me(app, presented) == 401, case


@pytest.mark.filterwarnings("ignore:The HMAC key is 32 bytes long")  # HS512 with our (HS256) key, on purpose
def test_access_tokens_with_a_wrong_signature_audience_type_or_algorithm_are_refused(app, tokens):
    claims = claims_of(app, tokens["access_token"])
    assert me(app, forge(app, claims)) == 200, "the forger's tools are right"
    refused = {
        "signed with another key": forge(app, claims, key=b"k" * 32),
        "signed with the cookie key": forge(app, claims, key=derive_key(app.app.registry.settings, "session-cookie")),
        "another audience": forge(app, {**claims, "aud": "someone-else"}),
        "a list of audiences without ours": forge(app, {**claims, "aud": ["someone-else"]}),
        "another type": forge(app, {**claims, "typ": "refresh"}),
        "no type": forge(app, {key: value for key, value in claims.items() if key != "typ"}),
        "no session": forge(app, {key: value for key, value in claims.items() if key != "sid"}),
        "no expiry": forge(app, {key: value for key, value in claims.items() if key != "exp"}),
        "a malformed session id": forge(app, {**claims, "sid": "not-a-uuid"}),
        "an unknown session id": forge(app, {**claims, "sid": str(uuid.uuid4())}),
        "another user's id": forge(app, {**claims, "sub": str(uuid.uuid4())}),
        "HS512": forge(app, claims, algorithm="HS512"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
    }
    for case, token in refused.items():
        assert me(app, token) == 401, case


@pytest.mark.parametrize("path", ["/api/v1/me", "/dashboard", "/"])
def test_access_tokens_signed_with_our_key_but_malformed_claims_are_a_401_never_a_500(app, tokens, path):
    """Found by an outside assessment: a non-string ``sid`` in a token we
    could have signed was a bare 500, the identity being looked up above the
    error views."""
    claims = claims_of(app, tokens["access_token"])
    ttl = app.app.registry.settings["auth.access_token_ttl"]
    malformed = {
        "a number as sid": {"sid": 5}, "a list as sid": {"sid": [claims["sid"]]}, "an object as sid": {"sid": {}},
        "null as sid": {"sid": None}, "a number as sub": {"sub": 7}, "a list as sub": {"sub": [claims["sub"]]},
        "a list of audiences with ours": {"aud": [claims["aud"]]},
        "a list of audiences with a number": {"aud": [claims["aud"], 5]},
        "a huge expiry": {"exp": 10**40}, "a lifetime one second too long": {"exp": claims["iat"] + ttl + 1},
        "an expiry as text": {"exp": str(claims["exp"])}, "an infinite expiry": {"exp": float("inf")},
        "an issue time as a fraction": {"iat": claims["iat"] + 0.5}, "a list as typ": {"typ": ["access"]},
    }
    assert me(app, forge(app, {**claims, "exp": claims["iat"] + ttl})) == 200, "the longest lifetime we give"
    for case, changed in malformed.items():
        response = app.get(path, headers={"Authorization": f"Bearer {forge(app, {**claims, **changed})}"},
                           status="*")
        if path.startswith("/api/"):
            assert response.status_int == 401, case
            assert response.json["error"]["code"] == "unauthorized", case
        else:  # a page: as anonymous
            assert response.status_int in (200, 302), case


def test_an_access_token_expires_after_its_lifetime(app, tokens):
    ttl = app.app.registry.settings["auth.access_token_ttl"]
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now + dt.timedelta(seconds=ttl - 30)):
        assert me(app, tokens["access_token"]) == 200
    with time_machine.travel(now + dt.timedelta(seconds=ttl + 30)):
        assert me(app, tokens["access_token"]) == 401


def test_an_access_token_of_a_web_session_or_an_ended_login_is_refused(app, run_in_request, tokens, ada):
    claims = claims_of(app, tokens["access_token"])
    web_session = run_in_request(lambda r: r.db.scalar(select(AuthSession.id).where(AuthSession.kind == WEB)),
                                 app.app.registry)
    if web_session is None:
        web_login(app, run_in_request)
        web_session = run_in_request(lambda r: r.db.scalar(select(AuthSession.id).where(AuthSession.kind == WEB)),
                                     app.app.registry)
    assert me(app, forge(app, {**claims, "sid": str(web_session)})) == 401, "a web login's session"
    app.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"}, status=204)
    assert me(app, tokens["access_token"]) == 401, "signed out"


def refresh(app, token) -> int:
    return app.post_json("/api/v1/auth/refresh", {"refresh_token": token}, status="*").status_int


def test_near_misses_of_a_refresh_token_are_refused_and_the_real_one_works_once(app, tokens):
    for case, presented in near_misses(tokens["refresh_token"]).items():
        assert refresh(app, presented) == 401, case
    assert refresh(app, tokens["refresh_token"]) == 200
    assert refresh(app, tokens["refresh_token"]) == 401, "used"


def test_a_refresh_token_of_an_ended_login_or_deleted_user_is_refused(app, run_in_request, tokens, ada):
    app.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"}, status=204)
    assert refresh(app, tokens["refresh_token"]) == 401, "signed out"
    again = app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD}).json
    days = app.app.registry.settings["auth.session_ttl_days"]
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=days, seconds=1)):
        assert refresh(app, again["refresh_token"]) == 401, "the login expired"
    run_in_request(lambda r: r.db.execute(update(User).where(User.id == ada).values(deleted_at=utcnow())),
                   app.app.registry)
    assert refresh(app, again["refresh_token"]) == 401, "the user was deleted"


def test_an_access_token_is_not_a_refresh_token(app, tokens):
    assert refresh(app, tokens["access_token"]) in (401, 422)


# --- emailed links: password reset and address verification -----------------------------


def reset_link(app, email="ada@example.com") -> str:
    app.post_json("/api/v1/auth/forgot-password", {"email": email}, status=202)
    return link(inbox(app, email)[0], "reset-password").rsplit("/", 1)[1]


NEW_PASSWORD = "a brand new passphrase"


INVALID_LINK = {"error": {"code": "invalid_token",
                          "message": "This link is not valid. It may have expired or been used already."}}


def answered(response) -> int:
    """The status; a refused link must be refused in the one documented way."""
    if response.status_int == 400:
        assert response.json == INVALID_LINK
    return response.status_int


def reset(app, token, password=NEW_PASSWORD) -> int:
    return answered(app.post_json("/api/v1/auth/reset-password", {"token": token, "password": password},
                                  status="*"))


def reset_page_offers_the_form(app, token) -> bool:
    page = app.get(f"/reset-password/{token}", status="*")
    assert page.status_int in (200, 400)
    return page.status_int == 200 and page.html.find("input", {"name": "password"}) is not None


def verify(app, token) -> int:
    return answered(app.post_json("/api/v1/auth/verify-email", {"token": token}, status="*"))


def test_near_misses_of_a_reset_token_are_refused_and_the_real_one_works_once(app, ada):
    token = reset_link(app)
    for case, presented in near_misses(token).items():
        assert reset(app, presented) == 400, case
        assert not reset_page_offers_the_form(app, presented), case
    assert reset_page_offers_the_form(app, token)
    assert reset_page_offers_the_form(app, token), "looking does not use it up"
    assert reset(app, token) == 200
    assert reset(app, token) == 400, "used"
    assert not reset_page_offers_the_form(app, token), "used"


def test_malformed_emailed_links_are_refused_in_the_same_way(app, ada):
    for garbage in ("garbage", "x" * 39, "x" * 65, "x" * 42 + "!"):
        assert reset(app, garbage) == 400, garbage
        assert verify(app, garbage) == 400, garbage
        assert not reset_page_offers_the_form(app, garbage), garbage


def test_an_emailed_link_expires_on_the_minute(app, ada):
    minutes = app.app.registry.settings["auth.reset_password_ttl_minutes"]
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now, tick=False):
        token = reset_link(app)
    with time_machine.travel(now + dt.timedelta(minutes=minutes), tick=False):
        assert reset(app, token) == 400


def test_two_uses_of_one_reset_link_at_once_reset_once(app, run_in_request, ada):
    """The other use wins between this one's read and its update."""
    from sqlalchemy import event

    from guestguard.accounts.models import UserToken
    from guestguard.accounts.services import AccountError, reset_password

    token = reset_link(app)

    def race(request):
        db = request.db
        won = []

        def the_other_use_wins(state):
            if state.is_update and state.statement.table.name == "user_tokens" and not won:
                won.append(True)
                db.execute(update(UserToken).values(used_at=utcnow()))

        event.listen(db, "do_orm_execute", the_other_use_wins)
        with pytest.raises(AccountError) as refused:
            reset_password(request.ctx, token, NEW_PASSWORD)
        return refused.value.code

    assert run_in_request(race, app.app.registry) == "invalid_token"
    app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD}, status=200)


def test_the_reset_page_refuses_a_verification_link_and_an_expired_one(app, ada):
    signup(app, "new@example.com")
    verification = link(inbox(app, "new@example.com")[0], "verify-email").rsplit("/", 1)[1]
    assert not reset_page_offers_the_form(app, verification)
    minutes = app.app.registry.settings["auth.reset_password_ttl_minutes"]
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now, tick=False):
        token = reset_link(app)
    with time_machine.travel(now + dt.timedelta(minutes=minutes), tick=False):
        assert not reset_page_offers_the_form(app, token), "expired on the minute"
    with time_machine.travel(now + dt.timedelta(minutes=minutes, seconds=-1), tick=False):
        assert reset_page_offers_the_form(app, token)


def test_a_reset_token_expires(app, ada):
    minutes = app.app.registry.settings["auth.reset_password_ttl_minutes"]
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now, tick=False):
        token = reset_link(app)
    with time_machine.travel(now + dt.timedelta(minutes=minutes, seconds=1)):
        assert reset(app, token) == 400


def test_a_reset_token_dies_when_the_password_changes(app, ada):
    token = reset_link(app)
    headers = bearer_for(app, "ada@example.com")
    app.post_json("/api/v1/me/password", {"current_password": TEST_PASSWORD,
                                          "new_password": "another fine passphrase"}, headers=headers)
    assert reset(app, token) == 400, "a link mailed before the change must not undo it"


def test_a_reset_token_dies_when_another_is_sent_or_the_user_is_deleted(app, run_in_request, ada):
    first = reset_link(app)
    second = reset_link(app)
    assert reset(app, first) == 400
    run_in_request(lambda r: r.db.execute(update(User).where(User.id == ada).values(deleted_at=utcnow())),
                   app.app.registry)
    assert reset(app, second) == 400


def test_locking_an_account_replaces_earlier_reset_links_with_the_one_it_mails(make_app, run_in_request):
    app = make_app({"auth.lockout_threshold": "2", "ratelimit.enabled": "false"})
    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    before = reset_link(app)
    for _ in range(2):
        app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": "wrong!"}, status=401)
    locked_mail = inbox(app, "ada@example.com")[0]
    assert reset(app, before) == 400, "a link from before the lock"
    assert reset(app, link(locked_mail, "reset-password").rsplit("/", 1)[1]) == 200, "the lock email's link"
    app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": NEW_PASSWORD},
                  status=200)


def test_a_verification_token_is_not_a_reset_token_nor_the_other_way_round(app):
    signup(app, "new@example.com")
    verification = link(inbox(app, "new@example.com")[0], "verify-email").rsplit("/", 1)[1]
    assert reset(app, verification) == 400
    forgot = reset_link(app, "new@example.com")
    assert verify(app, forgot) == 400
    assert verify(app, verification) == 200


def test_near_misses_of_a_verification_token_are_refused_and_the_real_one_works_once(app):
    signup(app, "new@example.com")
    token = link(inbox(app, "new@example.com")[0], "verify-email").rsplit("/", 1)[1]
    for case, presented in near_misses(token).items():
        assert verify(app, presented) == 400, case
    assert verify(app, token) == 200
    assert verify(app, token) == 409  # used: the address is verified already (sign in)


def test_a_verification_token_of_a_deleted_or_expired_signup_is_refused(app, run_in_request):
    hours = app.app.registry.settings["auth.verify_email_ttl_hours"]
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now, tick=False):
        signup(app, "late@example.com")
        signup(app, "gone@example.com")
    late = link(inbox(app, "late@example.com")[0], "verify-email").rsplit("/", 1)[1]
    gone = link(inbox(app, "gone@example.com")[0], "verify-email").rsplit("/", 1)[1]
    run_in_request(lambda r: r.db.execute(update(User).where(User.email == "gone@example.com")
                                          .values(deleted_at=utcnow())), app.app.registry)
    assert verify(app, gone) == 400
    with time_machine.travel(now + dt.timedelta(hours=hours, seconds=1)):
        assert verify(app, late) == 400


def test_a_verification_link_still_proves_the_address_after_a_password_change_or_a_lock(make_app, run_in_request):
    """It proves who reads the mailbox, nothing about the password; a locked
    account stays locked."""
    app = make_app({"auth.lockout_threshold": "2", "ratelimit.enabled": "false"})
    signup(app, "new@example.com")
    token = link(inbox(app, "new@example.com")[0], "verify-email").rsplit("/", 1)[1]
    for _ in range(2):
        app.post_json("/api/v1/auth/login", {"email": "new@example.com", "password": "wrong!"}, status=401)
    assert verify(app, token) == 200
    app.post_json("/api/v1/auth/login", {"email": "new@example.com", "password": TEST_PASSWORD}, status=401)


# --- guests' invitation links --------------------------------------------------------------


@pytest.fixture
def host(app, run_in_request):
    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    ada = bearer_for(app, "ada@example.com")
    workspace = app.post_json("/api/v1/workspaces", {"name": "Gala team"}, headers=ada).json["workspace"]
    event = app.post_json("/api/v1/events", {"workspace_id": workspace["id"], "name": "Gala", "timezone": "UTC",
                                             "starts_at": "2031-01-01T18:00:00", "status": "published"},
                          headers=ada).json["event"]
    guests = [app.post_json(f"/api/v1/events/{event['id']}/guests", {"name": f"G{n}"}, headers=ada).json["guest"]
              for n in range(2)]
    tokens = [app.post_json(f"/api/v1/events/{event['id']}/guests/{guest['id']}/tokens", {},
                            headers=ada).json["token"] for guest in guests]
    return {"ada": ada, "workspace": workspace["id"], "event": event["id"], "guests": guests, "tokens": tokens}


def refused_link(app, token) -> bytes:
    """The answer to a link that must not work (the same for every case)."""
    response = app.get(f"/api/v1/access/{token}", status=404)
    assert response.json["error"]["code"] == "invalid_link"
    app.get(f"/access/{token}", status=404)
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"}, status=404)
    return response.body


def test_near_misses_of_an_invitation_link_are_refused(app, host):
    token = host["tokens"][0]
    for guest, own in zip(host["guests"], host["tokens"], strict=True):
        assert app.get(f"/api/v1/access/{own}").json["guest"]["name"] == guest["name"], "the link's own guest"
    answers = {refused_link(app, presented) for presented in near_misses(token).values()}
    answers.add(refused_link(app, "garbage"))
    assert len(answers) == 1


def test_an_invitation_link_dies_when_reissued_revoked_or_its_guest_deleted(app, host):
    first, second = host["tokens"]
    url = f"/api/v1/events/{host['event']}/guests"
    app.post_json(f"{url}/{host['guests'][0]['id']}/tokens", {}, headers=host["ada"], status=201)
    answers = {refused_link(app, first)}
    app.delete(f"{url}/{host['guests'][1]['id']}/tokens", headers=host["ada"], status=204)
    answers.add(refused_link(app, second))
    fresh = app.post_json(f"{url}/{host['guests'][1]['id']}/tokens", {}, headers=host["ada"]).json["token"]
    app.delete(f"{url}/{host['guests'][1]['id']}", headers=host["ada"], status=204)
    answers.add(refused_link(app, fresh))
    assert len(answers) == 1


def test_an_invitation_link_of_a_deleted_event_is_refused(app, host):
    app.delete(f"/api/v1/events/{host['event']}", headers=host["ada"], status=204)
    for token in host["tokens"]:
        refused_link(app, token)
    app.get(f"/access/{host['tokens'][0]}/event.ics", status=404)


def test_an_invitation_link_of_a_deleted_workspace_is_refused(app, host):
    app.delete(f"/api/v1/workspaces/{host['workspace']}", headers=host["ada"], status=204)
    for token in host["tokens"]:
        refused_link(app, token)
    app.get(f"/access/{host['tokens'][0]}/event.ics", status=404)


def test_the_access_log_tells_a_deleted_parent_from_an_unknown_link(app, host, run_in_request):
    from guestguard.guard.access import look_up

    app.delete(f"/api/v1/workspaces/{host['workspace']}", headers=host["ada"], status=204)
    found = run_in_request(lambda r: look_up(r.db, host["tokens"][0]), app.app.registry)
    assert found.outcome == "expired" and found.link is not None
    unknown = run_in_request(lambda r: look_up(r.db, near_misses(host["tokens"][0])["last character changed"]),
                             app.app.registry)
    assert unknown.outcome == "unknown" and unknown.link is None


# --- live stream tickets ---------------------------------------------------------------------


@pytest.fixture
def watchers(app, run_in_request, host):
    """Ada's event with Sam as staff, both with tickets; a key's ticket."""
    def build(request):
        sam = create_user(request, "sam@example.com", "Sam")
        from guestguard.workspaces.models import Membership

        request.db.add(Membership(workspace_id=uuid.UUID(host["workspace"]), user_id=sam.id, role="staff"))
        ada = request.db.scalar(select(User).where(User.email == "ada@example.com"))
        workspace = request.db.get(Workspace, uuid.UUID(host["workspace"]))
        return workspaces.create_api_key(acting_as(request.ctx, ada), workspace, "k", "staff")[1]

    secret = run_in_request(build, app.app.registry)
    sam = bearer_for(app, "sam@example.com")
    return {"sam": sam, "key": {"Authorization": f"Bearer {secret}"}}


def ticket(app, headers, event_id) -> str:
    return app.post_json("/api/v1/auth/stream-ticket", {"event_id": event_id}, headers=headers).json["ticket"]


def redeemed(app, run_in_request, raw, event_id) -> bool:
    return run_in_request(lambda r: redeem_ticket(r.db, raw, uuid.UUID(event_id)) is not None, app.app.registry)


def test_near_misses_of_a_stream_ticket_are_refused_and_the_real_one_works_once(app, run_in_request, host):
    raw = ticket(app, host["ada"], host["event"])
    for case, presented in near_misses(raw).items():
        assert not redeemed(app, run_in_request, presented, host["event"]), case
    assert not redeemed(app, run_in_request, raw.removeprefix("ggt_"), host["event"]), "without its prefix"
    assert redeemed(app, run_in_request, raw, host["event"])
    assert not redeemed(app, run_in_request, raw, host["event"]), "used"


def test_a_stream_ticket_expires_after_sixty_seconds(app, run_in_request, host):
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now, tick=False):
        early, late = ticket(app, host["ada"], host["event"]), ticket(app, host["ada"], host["event"])
    with time_machine.travel(now + dt.timedelta(seconds=59), tick=False):
        assert redeemed(app, run_in_request, early, host["event"])
    with time_machine.travel(now + dt.timedelta(seconds=60), tick=False):
        assert not redeemed(app, run_in_request, late, host["event"]), "sixty seconds on: expired"


def test_a_stream_ticket_dies_with_its_holders_access(app, run_in_request, host, watchers):
    removed, locked, ended = (ticket(app, watchers["sam"], host["event"]) for _ in range(3))
    key_ticket = ticket(app, watchers["key"], host["event"])
    ada_ticket = ticket(app, host["ada"], host["event"])
    members = app.get(f"/api/v1/workspaces/{host['workspace']}/members", headers=host["ada"]).json["members"]
    sam = next(member for member in members if member["email"] == "sam@example.com")

    def lock(request):
        request.db.execute(update(User).where(User.email == "sam@example.com").values(locked_at=utcnow()))

    run_in_request(lock, app.app.registry)
    assert not redeemed(app, run_in_request, locked, host["event"]), "the holder was locked out"
    run_in_request(lambda r: r.db.execute(update(User).where(User.email == "sam@example.com")
                                          .values(locked_at=None)), app.app.registry)
    app.post("/api/v1/auth/logout", headers=watchers["sam"], status=204)
    assert not redeemed(app, run_in_request, ended, host["event"]), "the login that asked ended"
    app.delete(f"/api/v1/workspaces/{host['workspace']}/members/{sam['id']}", headers=host["ada"], status=204)
    assert not redeemed(app, run_in_request, removed, host["event"]), "the holder was removed"
    keys = app.get(f"/api/v1/workspaces/{host['workspace']}/api-keys", headers=host["ada"]).json["api_keys"]
    app.delete(f"/api/v1/workspaces/{host['workspace']}/api-keys/{keys[0]['id']}", headers=host["ada"], status=204)
    assert not redeemed(app, run_in_request, key_ticket, host["event"]), "the key was revoked"
    assert redeemed(app, run_in_request, ada_ticket, host["event"]), "the owner's is untouched"


def test_a_stream_ticket_of_a_deleted_event_or_workspace_or_another_event_is_refused(app, run_in_request, host):
    other = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], "name": "Other", "timezone": "UTC",
                                             "starts_at": "2031-02-01T18:00:00"}, headers=host["ada"]).json["event"]
    for_other = ticket(app, host["ada"], other["id"])
    assert not redeemed(app, run_in_request, for_other, host["event"]), "for another event"
    event_gone = ticket(app, host["ada"], host["event"])
    workspace_gone = ticket(app, host["ada"], other["id"])
    app.delete(f"/api/v1/events/{host['event']}", headers=host["ada"], status=204)
    assert not redeemed(app, run_in_request, event_gone, host["event"]), "the event was deleted"
    app.delete(f"/api/v1/workspaces/{host['workspace']}", headers=host["ada"], status=204)
    assert not redeemed(app, run_in_request, workspace_gone, other["id"]), "the workspace was deleted"


def test_a_key_holders_ticket_works_while_the_key_does(app, run_in_request, host, watchers):
    assert redeemed(app, run_in_request, ticket(app, watchers["key"], host["event"]), host["event"])


# --- workspace invitations -------------------------------------------------------------------


@pytest.fixture
def invited(app, run_in_request):
    run_in_request(lambda r: [create_user(r, "ada@example.com", "Ada"), create_user(r, "new@example.com", "New")],
                   app.app.registry)
    ada = bearer_for(app, "ada@example.com")
    workspace = app.post_json("/api/v1/workspaces", {"name": "Gala team"}, headers=ada).json["workspace"]
    app.post_json(f"/api/v1/workspaces/{workspace['id']}/invitations", {"email": "new@example.com",
                                                                         "role": "staff"}, headers=ada)
    token = link(inbox(app, "new@example.com")[0], "invitations").rsplit("/", 1)[1]
    return {"ada": ada, "workspace": workspace["id"], "token": token, "new": bearer_for(app, "new@example.com")}


def accept(app, invited, token) -> int:
    response = app.post_json("/api/v1/invitations/accept", {"token": token}, headers=invited["new"], status="*")
    if response.status_int == 404:
        assert response.json == {"error": {"code": "invalid_invitation", "message": (
            "This invitation is not valid. It may have expired, been used or been withdrawn.")}}
    return response.status_int


def test_near_misses_of_an_invitation_are_refused_and_the_real_one_works_once(app, invited):
    for case, presented in near_misses(invited["token"]).items():
        assert accept(app, invited, presented) == 404, case
    assert accept(app, invited, invited["token"]) == 200
    assert accept(app, invited, invited["token"]) == 404, "used"


def test_an_invitation_of_a_deleted_workspace_is_refused(app, invited):
    app.delete(f"/api/v1/workspaces/{invited['workspace']}", headers=invited["ada"], status=204)
    assert accept(app, invited, invited["token"]) == 404
    app.get(f"/invitations/{invited['token']}", status=404)


def test_a_revoked_replaced_or_expired_invitation_is_refused(app, invited):
    pending = app.get(f"/api/v1/workspaces/{invited['workspace']}/invitations",
                      headers=invited["ada"]).json["invitations"]
    app.delete(f"/api/v1/workspaces/{invited['workspace']}/invitations/{pending[0]['id']}", headers=invited["ada"],
               status=204)
    assert accept(app, invited, invited["token"]) == 404, "revoked"

    url = f"/api/v1/workspaces/{invited['workspace']}/invitations"
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now, tick=False):
        app.post_json(url, {"email": "new@example.com", "role": "staff"}, headers=invited["ada"])
        replaced = link(inbox(app, "new@example.com")[0], "invitations").rsplit("/", 1)[1]
        app.post_json(url, {"email": "new@example.com", "role": "admin"}, headers=invited["ada"])
        latest = link(inbox(app, "new@example.com")[0], "invitations").rsplit("/", 1)[1]
    assert accept(app, invited, replaced) == 404, "replaced by a newer one"
    days = app.app.registry.settings["workspaces.invitation_ttl_days"]
    with time_machine.travel(now + dt.timedelta(days=days, seconds=1)):
        fresh = bearer_for(app, "new@example.com")
        response = app.post_json("/api/v1/invitations/accept", {"token": latest}, headers=fresh, status="*")
        assert response.status_int == 404, "expired"


def test_a_logins_last_use_is_written_at_most_every_five_minutes(app, ada):
    """Reads stay reads: the last-seen time moves only once it is more than
    five minutes old."""
    start = dt.datetime(2031, 1, 1, 12, tzinfo=dt.UTC)

    def last_seen(headers):
        sessions_ = app.get("/api/v1/me/sessions", headers=headers).json["sessions"]
        return next(item["last_seen_at"] for item in sessions_ if item["current"])

    with time_machine.travel(start, tick=False) as clock:
        headers = bearer_for(app, "ada@example.com")
        first = last_seen(headers)
        clock.shift(dt.timedelta(minutes=5))
        assert last_seen(headers) == first, "five minutes exactly: not yet"
        clock.shift(dt.timedelta(seconds=1))
        assert last_seen(headers) == (start + dt.timedelta(minutes=5, seconds=1)).isoformat()


def test_replaying_a_used_refresh_token_ends_the_whole_login(app, run_in_request, tokens):
    fresh = app.post_json("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}).json
    assert me(app, fresh["access_token"]) == 200
    assert refresh(app, tokens["refresh_token"]) == 401, "the old one again: a replay"
    assert me(app, fresh["access_token"]) == 401, "every token of that login ends"
    assert refresh(app, fresh["refresh_token"]) == 401
    session_id = uuid.UUID(claims_of(app, tokens["access_token"])["sid"])
    reason = run_in_request(lambda r: r.db.get(AuthSession, session_id).revoked_reason, app.app.registry)
    assert reason == "refresh_token_replayed"


def test_refreshing_one_login_leaves_every_other_logins_refresh_token_alone(app, tokens):
    other = app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD}).json
    assert refresh(app, tokens["refresh_token"]) == 200
    assert refresh(app, other["refresh_token"]) == 200, "not taken for a replay"
    assert me(app, other["access_token"]) == 200


def test_a_keys_last_use_is_recorded_at_most_once_a_minute(app, keys):
    ada = bearer_for(app, "ada@example.com")

    def last_used():
        listed = app.get(f"/api/v1/workspaces/{keys['workspace']}/api-keys", headers=ada).json["api_keys"]
        return next(key["last_used_at"] for key in listed if key["name"] == "first")

    start = dt.datetime(2031, 1, 1, 12, tzinfo=dt.UTC)
    key = {"Authorization": f"Bearer {keys['first']}"}
    assert last_used() is None
    with time_machine.travel(start, tick=False) as clock:
        ada = bearer_for(app, "ada@example.com")
        app.get("/api/v1/workspaces", headers=key)
        assert last_used() == start.isoformat()
        clock.shift(60)
        app.get("/api/v1/workspaces", headers=key)
        assert last_used() == start.isoformat(), "a minute exactly: not yet"
        clock.shift(1)
        app.get("/api/v1/workspaces", headers=key)
        assert last_used() == (start + dt.timedelta(seconds=61)).isoformat()


def test_two_uses_of_one_refresh_token_at_once_end_the_login(app, run_in_request, tokens):
    """The other use wins between this one's read and its update: a replay."""
    from sqlalchemy import event

    from guestguard.accounts.models import RefreshToken

    def race(request):
        db = request.db
        won = []

        def the_other_use_wins(state):
            if state.is_update and state.statement.table.name == "refresh_tokens" and not won:
                won.append(True)
                db.execute(update(RefreshToken).values(rotated_at=utcnow()))

        event.listen(db, "do_orm_execute", the_other_use_wins)
        with pytest.raises(sessions.RefreshReplay) as replay:
            sessions.rotate_refresh_token(db, request.registry.settings, tokens["refresh_token"])
        return replay.value.session.id

    session_id = run_in_request(race, app.app.registry)
    assert str(session_id) == claims_of(app, tokens["access_token"])["sid"]
    reason = run_in_request(lambda r: r.db.get(AuthSession, session_id).revoked_reason, app.app.registry)
    assert reason == "refresh_token_replayed"
    assert me(app, tokens["access_token"]) == 401


def test_ending_a_login_records_why_once(app, run_in_request, tokens):
    from guestguard.audit.models import AuditEvent

    other = app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD}).json
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    other_id = claims_of(app, other["access_token"])["sid"]
    for _ in range(2):
        app.delete(f"/api/v1/me/sessions/{other_id}", headers=headers, status=204)
    app.post("/api/v1/auth/logout", headers=headers, status=204)

    def facts(request):
        rows = request.db.scalars(select(AuditEvent).where(AuditEvent.action.in_(
            ["account.session_revoked", "account.logout"]))).all()
        reasons = {str(s.id): s.revoked_reason for s in request.db.scalars(select(AuthSession))}
        return sorted(row.action for row in rows), reasons

    actions, reasons = run_in_request(facts, app.app.registry)
    assert actions == ["account.logout", "account.session_revoked"], "revoking twice is recorded once"
    assert reasons[other_id] == "revoked_by_user"
    assert reasons[claims_of(app, tokens["access_token"])["sid"]] == "logout"


def test_a_login_remembers_when_from_where_and_which_browser(app, run_in_request, ada):
    start = dt.datetime(2031, 1, 1, 12, tzinfo=dt.UTC)
    browser = "Mozilla/5.0 " + "x" * 600
    with time_machine.travel(start, tick=False):
        with_agent = app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD},
                                   headers={"User-Agent": browser}, extra_environ={"REMOTE_ADDR": "203.0.113.5"}).json
        without = app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD},
                                extra_environ={"REMOTE_ADDR": "203.0.113.6"}).json

        sids = [uuid.UUID(claims_of(app, tokens["access_token"])["sid"]) for tokens in (with_agent, without)]

    def stored(session_id):
        def read(request):
            session = request.db.get(AuthSession, session_id)
            return session.user_agent, session.ip, session.created_at, session.last_seen_at

        return run_in_request(read, app.app.registry)

    assert stored(sids[0]) == (browser[:512], "203.0.113.5", start, start)
    assert stored(sids[1]) == ("", "203.0.113.6", start, start)
