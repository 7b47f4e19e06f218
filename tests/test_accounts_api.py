"""The account API end to end through the real app: signup, verification,
login, rotating refresh tokens, logout, password reset and change, sessions,
policy acceptance, and the bad input of each."""
import logging
import re

import pytest
import time_machine

from guestguard.accounts.models import AuthSession, User
from guestguard.testing import TEST_PASSWORD, guestguard_command, outbox, signup, site_ini

PASSWORD = TEST_PASSWORD
NEW_PASSWORD = "a different long passphrase"


def last_link(app, recipient, path):
    for _, message in outbox(app):
        if message.recipient == recipient:
            match = re.search(rf"https?://\S+{path}(\S+)", message.text)
            if match:
                return match.group(0), match.group(1)
    raise AssertionError(f"no {path} link sent to {recipient}")


def verify(app, email="ada@example.com"):
    _, token = last_link(app, email, "/verify-email/")
    return app.post_json("/api/v1/auth/verify-email", {"token": token})


def login(app, email="ada@example.com", password=PASSWORD, status=200, **extra):
    return app.post_json("/api/v1/auth/login", {"email": email, "password": password, **extra},
                         status=status)


def bearer(tokens):
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
def verified_user(app):
    signup(app)
    verify(app)
    return "ada@example.com"


def test_the_whole_journey(app):
    assert signup(app).json["message"].startswith("Check your inbox")
    login(app, status=403)
    assert verify(app).json == {"verified": True}
    tokens = login(app).json
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    me = app.get("/api/v1/me", headers=bearer(tokens)).json["user"]
    assert me["email"] == "ada@example.com" and me["email_verified"] is True
    refreshed = app.post_json("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}).json
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    app.get("/api/v1/me", headers=bearer(refreshed))
    app.post("/api/v1/auth/logout", headers=bearer(refreshed), status=204)
    app.get("/api/v1/me", headers=bearer(refreshed), status=401)
    app.post_json("/api/v1/auth/refresh", {"refresh_token": refreshed["refresh_token"]}, status=401)


def test_signup_creates_an_unverified_user_with_a_personal_workspace(app, run_in_request):
    from sqlalchemy import select

    from guestguard.workspaces.models import Membership, Workspace

    signup(app, email="  Ada@Example.COM ")
    user, membership, workspace = run_in_request(lambda r: (
        r.db.scalar(select(User)), r.db.scalar(select(Membership)), r.db.scalar(select(Workspace))),
        app.app.registry)
    assert user.email == "ada@example.com"
    assert user.email_verified_at is None and user.password_hash.startswith("$argon2id$")
    assert (membership.user_id, membership.role, membership.workspace_id) == (user.id, "owner", workspace.id)
    assert workspace.personal


def test_signup_with_a_taken_address_answers_the_same_and_warns_the_owner(app, verified_user):
    first = signup(app, email="ada@example.com", password="another long password", name="Mallory")
    assert first.status_int == 202
    assert first.json["message"].startswith("Check your inbox")
    subjects = [m.subject for _, m in outbox(app) if m.recipient == "ada@example.com"]
    assert subjects[0] == "Someone tried to sign up to GuestGuard with your address"
    login(app)  # the original password still works


def test_verification_email_has_a_link_that_works_once(app):
    signup(app)
    _, message = outbox(app)[0]
    assert message.subject == "Confirm your email address for GuestGuard"
    url, token = last_link(app, "ada@example.com", "/verify-email/")
    assert url.startswith("http://guestguard.test/verify-email/")
    assert url in message.html
    app.post_json("/api/v1/auth/verify-email", {"token": token})
    again = app.post_json("/api/v1/auth/verify-email", {"token": token}, status=409)
    assert again.json["error"] == {"code": "already_verified", "message": "This address is verified already: sign in."}


def test_verification_links_expire(app):
    signup(app)
    _, token = last_link(app, "ada@example.com", "/verify-email/")
    with time_machine.travel("2099-01-01"):
        response = app.post_json("/api/v1/auth/verify-email", {"token": token}, status=400)
    assert response.json["error"]["code"] == "invalid_token"


def test_resending_verification_replaces_the_old_link(app):
    signup(app)
    _, old = last_link(app, "ada@example.com", "/verify-email/")
    app.post_json("/api/v1/auth/resend-verification", {"email": "ada@example.com"}, status=202)
    _, new = last_link(app, "ada@example.com", "/verify-email/")
    assert new != old
    app.post_json("/api/v1/auth/verify-email", {"token": old}, status=400)
    app.post_json("/api/v1/auth/verify-email", {"token": new}, status=200)


def test_resend_for_an_unknown_address_answers_the_same(app):
    known = signup(app) and app.post_json("/api/v1/auth/resend-verification", {"email": "ada@example.com"})
    unknown = app.post_json("/api/v1/auth/resend-verification", {"email": "nobody@example.com"})
    assert (known.status_int, known.json) == (unknown.status_int, unknown.json)


def test_wrong_password_and_unknown_email_are_one_answer(app, verified_user):
    wrong = login(app, password="not the password at all", status=401).json
    unknown = login(app, email="nobody@example.com", status=401).json
    assert wrong == unknown
    assert wrong["error"]["code"] == "invalid_credentials"


def test_failed_logins_are_counted_and_audited(app, verified_user, run_in_request):
    from sqlalchemy import select

    from guestguard.audit.models import AuditEvent

    login(app, password="not the password at all", status=401)
    user = run_in_request(lambda r: r.db.scalar(select(User)), app.app.registry)
    assert user.failed_logins == 1
    actions = run_in_request(lambda r: [(e.action, e.result, e.details.get("reason"))
                                        for e in r.db.scalars(select(AuditEvent).order_by(AuditEvent.created_at))],
                             app.app.registry)
    assert ("account.login", "failure", "invalid_credentials") in actions
    login(app)
    assert run_in_request(lambda r: r.db.scalar(select(User)), app.app.registry).failed_logins == 0


def test_unverified_users_cannot_log_in(app):
    signup(app)
    response = login(app, status=403)
    assert response.json["error"]["code"] == "email_not_verified"


def test_replaying_a_rotated_refresh_token_revokes_the_session(app, verified_user, run_in_request):
    tokens = login(app).json
    rotated = app.post_json("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}).json
    replay = app.post_json("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, status=401)
    assert replay.json["error"]["code"] == "invalid_token"
    app.get("/api/v1/me", headers=bearer(rotated), status=401)
    app.post_json("/api/v1/auth/refresh", {"refresh_token": rotated["refresh_token"]}, status=401)
    from sqlalchemy import select

    session = run_in_request(lambda r: r.db.scalar(select(AuthSession)), app.app.registry)
    assert session.revoked_reason == "refresh_token_replayed"


def test_access_tokens_expire(app, verified_user):
    tokens = login(app).json
    with time_machine.travel("2099-01-01"):
        app.get("/api/v1/me", headers=bearer(tokens), status=401)


@pytest.mark.parametrize("header", [
    "Bearer not-a-jwt",
    "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIn0.",
    "Basic YWRhOnBhc3N3b3Jk",
    "Bearer",
])
def test_garbage_credentials_are_401_never_500(app, header):
    response = app.get("/api/v1/me", headers={"Authorization": header}, status=401)
    assert response.json["error"]["code"] == "unauthorized"


def test_a_token_signed_with_another_key_or_algorithm_is_refused(app, verified_user):
    import jwt

    claims = jwt.decode(login(app).json["access_token"], options={"verify_signature": False})
    forged = jwt.encode(claims, "another secret of at least thirty-two bytes", algorithm="HS256")
    app.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"}, status=401)
    downgraded = jwt.encode(claims, None, algorithm="none")
    app.get("/api/v1/me", headers={"Authorization": f"Bearer {downgraded}"}, status=401)


def test_logout_all_ends_every_session(app, verified_user):
    first, second = login(app).json, login(app).json
    app.post("/api/v1/auth/logout-all", headers=bearer(first), status=204)
    for tokens in (first, second):
        app.get("/api/v1/me", headers=bearer(tokens), status=401)
        app.post_json("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, status=401)


def test_forgot_and_reset_end_every_earlier_session(app, verified_user):
    tokens = login(app).json
    before = app.post_json("/api/v1/auth/forgot-password", {"email": "ada@example.com"}, status=202)
    unknown = app.post_json("/api/v1/auth/forgot-password", {"email": "nobody@example.com"}, status=202)
    assert before.json == unknown.json
    url, token = last_link(app, "ada@example.com", "/reset-password/")
    assert url.startswith("http://guestguard.test/reset-password/")
    app.post_json("/api/v1/auth/reset-password", {"token": token, "password": NEW_PASSWORD})
    app.get("/api/v1/me", headers=bearer(tokens), status=401)
    app.post_json("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, status=401)
    login(app, status=401)
    login(app, password=NEW_PASSWORD)
    again = app.post_json("/api/v1/auth/reset-password", {"token": token, "password": PASSWORD}, status=400)
    assert again.json["error"]["code"] == "invalid_token"
    assert outbox(app)[0][1].subject == "Your GuestGuard password was changed"


def test_changing_the_password_needs_the_current_one_and_can_end_other_sessions(app, verified_user):
    mine, other = login(app).json, login(app).json
    wrong = app.post_json("/api/v1/me/password", {"current_password": "not it at all!",
                                                  "new_password": NEW_PASSWORD},
                          headers=bearer(mine), status=400)
    assert wrong.json["error"]["fields"] == {"current_password": "The current password is not right."}
    done = app.post_json("/api/v1/me/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                 "end_other_sessions": True}, headers=bearer(mine))
    assert done.json["other_sessions_ended"] == 1
    app.get("/api/v1/me", headers=bearer(mine))
    app.get("/api/v1/me", headers=bearer(other), status=401)
    assert outbox(app)[0][1].subject == "Your GuestGuard password was changed"


def test_sessions_are_listed_and_revoked_by_their_owner_only(app, verified_user):
    mine = login(app).json
    other = app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": PASSWORD},
                          headers={"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
                                                 "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
                                                 "Mobile/15E148 Safari/604.1"}).json
    listed = app.get("/api/v1/me/sessions", headers=bearer(mine)).json["sessions"]
    assert len(listed) == 2
    assert sum(s["current"] for s in listed) == 1
    phone = next(s for s in listed if not s["current"])
    assert phone["device"] == "Mobile Safari on iOS"
    signup(app, email="eve@example.com")
    verify(app, email="eve@example.com")
    eve = login(app, email="eve@example.com").json
    app.delete(f"/api/v1/me/sessions/{phone['id']}", headers=bearer(eve), status=404)
    app.delete("/api/v1/me/sessions/not-a-uuid", headers=bearer(eve), status=404)
    app.get("/api/v1/me", headers=bearer(other))
    app.delete(f"/api/v1/me/sessions/{phone['id']}", headers=bearer(mine), status=204)
    app.get("/api/v1/me", headers=bearer(other), status=401)


def test_profile_update(app, verified_user):
    tokens = login(app).json
    user = app.patch_json("/api/v1/me", {"display_name": "  Countess  "}, headers=bearer(tokens)).json["user"]
    assert user["display_name"] == "Countess"
    app.patch_json("/api/v1/me", {"display_name": ""}, headers=bearer(tokens), status=422)


def test_updated_policies_must_be_accepted_at_login(make_app):
    app = make_app({"policies.updated_at": "2030-01-01"})
    with time_machine.travel("2029-06-01"):
        signup(app)
        verify(app)
    with time_machine.travel("2030-01-02"):
        refused = login(app, status=403).json
        assert refused["error"]["code"] == "policy_acceptance_required"
        tokens = login(app, accept_policies=True).json
        assert app.get("/api/v1/me", headers=bearer(tokens)).json["user"]["policies_accepted"] is True


def test_policy_acceptance_is_enforced_on_protected_calls(make_app):
    app = make_app({"policies.updated_at": "2030-01-01"})
    with time_machine.travel("2029-12-30"):
        signup(app)
        verify(app)
        tokens = login(app).json
    with time_machine.travel("2030-01-02", tick=False):
        tokens = app.post_json("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}).json
        blocked = app.get("/api/v1/me/sessions", headers=bearer(tokens), status=403)
        assert blocked.json["error"]["code"] == "policy_acceptance_required"
        app.get("/api/v1/me", headers=bearer(tokens))  # basics still work
        app.post("/api/v1/me/accept-policies", headers=bearer(tokens))
        app.get("/api/v1/me/sessions", headers=bearer(tokens))


def test_protected_calls_without_credentials_are_401(app):
    response = app.get("/api/v1/me/sessions", status=401)
    assert response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("body, field, message", [
    ({"email": "not-an-email", "password": PASSWORD, "display_name": "A", "accept_policies": True},
     "email", "@"),
    ({"email": "a@example.com", "password": "short", "display_name": "A", "accept_policies": True},
     "password", "at least 8"),
    ({"email": "a@example.com", "password": "password123", "display_name": "A", "accept_policies": True},
     "password", "most common"),
    ({"email": "a@example.com", "password": "x" * 129, "display_name": "A", "accept_policies": True},
     "password", "at most 128"),
    ({"email": "a@example.com", "password": PASSWORD, "display_name": "A", "accept_policies": False},
     "accept_policies", "accept"),
    ({"email": "a@example.com", "password": PASSWORD, "accept_policies": True},
     "display_name", "required"),
    ({"email": "a@example.com", "password": PASSWORD, "display_name": "A", "accept_policies": True,
      "role": "admin"}, "role", "not a known field"),
])
def test_signup_input_errors_name_the_field(app, body, field, message, run_in_request):
    response = app.post_json("/api/v1/auth/signup", body, status=422)
    error = response.json["error"]
    assert error["code"] == "validation_failed"
    assert message in error["fields"][field]
    from sqlalchemy import func, select

    assert run_in_request(lambda r: r.db.scalar(select(func.count()).select_from(User)), app.app.registry) == 0


def test_64_character_passwords_are_fine(app):
    signup(app, password="p" * 30 + " long passphrase with spaces " + "q" * 6)


def test_wrong_content_type_is_415(app):
    response = app.post("/api/v1/auth/login", "email=a@example.com", status=415,
                        content_type="application/x-www-form-urlencoded")
    assert response.json["error"]["code"] == "unsupported_media_type"


def test_malformed_json_is_400(app):
    response = app.post("/api/v1/auth/login", "{not json", content_type="application/json", status=400)
    assert response.json["error"]["code"] == "invalid_json"


def test_a_json_array_is_422(app):
    app.post_json("/api/v1/auth/login", ["a", "b"], status=422)


def test_oversized_bodies_are_413(app):
    response = app.post_json("/api/v1/auth/signup", {"display_name": "x" * 70000}, status=413)
    assert response.json["error"]["code"] == "too_large"


def test_create_admin_command(tmp_path, db_url):
    ini = site_ini(tmp_path)
    env = {"GG_DB_URL": db_url, "GG_HUEY_URL": "memory://",
           "GG_PASSWORDS_MEMORY_KIB": "19456", "GG_PASSWORDS_TIME_COST": "2", "GG_PASSWORDS_PARALLELISM": "1"}
    command = ["create-admin", str(ini), "--email", "Ops@Example.com", "--name", "Operator", "--password-stdin"]
    result = guestguard_command(*command, input=PASSWORD + "\n", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    weak = guestguard_command(*command, input="password\n", env=env, timeout=60)
    assert weak.returncode == 2 and "most common" in weak.stderr
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as connection:
        row = connection.execute(text("SELECT email, role, email_verified_at FROM users")).one()
    engine.dispose()
    assert row[0] == "ops@example.com" and row[1] == "admin" and row[2] is not None


def test_no_raw_token_or_password_is_stored_or_logged(app, run_in_request, caplog):
    """Runs every flow, keeps every secret it saw, then reads every column of
    every table and every log line looking for them."""
    from sqlalchemy import inspect, text

    from guestguard.accounts import services
    from guestguard.accounts.models import WEB

    caplog.set_level(logging.DEBUG)
    secrets_seen = {PASSWORD, NEW_PASSWORD}
    signup(app)
    secrets_seen.add(last_link(app, "ada@example.com", "/verify-email/")[1])
    app.post_json("/api/v1/auth/resend-verification", {"email": "ada@example.com"})
    secrets_seen.add(verify(app) and last_link(app, "ada@example.com", "/verify-email/")[1])
    tokens = login(app).json
    secrets_seen.update({tokens["access_token"], tokens["refresh_token"]})
    rotated = app.post_json("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}).json
    secrets_seen.update({rotated["access_token"], rotated["refresh_token"]})
    app.post_json("/api/v1/auth/forgot-password", {"email": "ada@example.com"})
    reset_token = last_link(app, "ada@example.com", "/reset-password/")[1]
    secrets_seen.add(reset_token)
    app.post_json("/api/v1/auth/reset-password", {"token": reset_token, "password": NEW_PASSWORD})
    web = run_in_request(lambda r: services.login(r.ctx, email="ada@example.com", password=NEW_PASSWORD,
                                                  kind=WEB), app.app.registry)
    secrets_seen.add(web.cookie_token)
    assert all(len(secret) >= 8 for secret in secrets_seen)

    engine = app.app.registry["db.engine"]
    stored = []
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            for row in connection.execute(text(f"SELECT * FROM {table}")):
                stored.extend(str(value) for value in row)
    assert stored, "the flows stored rows"
    leaks = [s for s in secrets_seen if any(s in value for value in stored)]
    assert leaks == []
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "notification" in logged, "the flows logged something"
    assert [s for s in secrets_seen if s in logged] == []


def test_a_hash_made_with_older_parameters_is_upgraded_at_login(make_app, run_in_request):
    from sqlalchemy import select

    old = make_app()
    signup(old)
    verify(old)
    before = run_in_request(lambda r: r.db.scalar(select(User)).password_hash, old.app.registry)
    assert "t=2" in before
    stronger = make_app({"passwords.time_cost": "3"})
    login(stronger)
    after = run_in_request(lambda r: r.db.scalar(select(User)).password_hash, stronger.app.registry)
    assert "t=3" in after and after != before
    login(stronger)  # and the new hash verifies
