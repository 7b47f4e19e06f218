"""The account pages, driven through the real app like a browser would:
forms with their CSRF tokens, cookies, redirects, and the emails the console
provider delivered."""
import base64
import datetime as dt
import json
import re
from urllib.parse import quote

import pytest
from sqlalchemy import func, select, update

from guestguard.accounts.models import AuthSession, User, UserToken
from guestguard.audit.models import AuditEvent
from guestguard.testing import h1, inbox, link, main_text, new_client

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


PASSWORD = "lantern orchard pebble 42"
NEW_PASSWORD = "quiet harbour meadow 7"
PHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
         "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
LAPTOP = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAME_ANSWER = "If that address can receive email, a message is on its way."


# --- a browser and its mailbox ------------------------------------------------


def browser(app, user_agent=LAPTOP, ip="203.0.113.7"):
    """Another browser on the same application, with its own cookie jar."""
    return new_client(app.app, REMOTE_ADDR=ip, HTTP_USER_AGENT=user_agent)


def sign_up(client, email, password=PASSWORD, name="Ada Host"):
    form = client.get("/signup").forms["signup-form"]
    form["display_name"] = name
    form["email"] = email
    form["password"] = password
    form["accept_policies"] = True
    return form.submit(status=303).follow()


def verify(client, email):
    return client.get(link(inbox(client, email)[0], "verify-email"))


def log_in(client, email, password=PASSWORD, next_path=None, status=303):
    page = client.get("/login" + (f"?next={quote(next_path, safe='')}" if next_path else ""))
    form = page.forms["login-form"]
    form["email"] = email
    form["password"] = password
    return form.submit(status=status)


def registered(client, email, password=PASSWORD, name="Ada Host"):
    """Signed up and verified, the link opened in another browser (so
    ``client`` is not signed in by it)."""
    sign_up(client, email, password, name)
    assert "Your email address is verified" in verify(new_client(client.app), email).text


def session_state(client) -> dict:
    """What the browser's signed session cookie holds (readable by the
    browser: signed, not encrypted)."""
    raw = client.cookies["gg_flash"]
    signed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    return json.loads(signed[64:])[2]  # after the SHA-512 signature: (accessed, created, state)


def signed_in(app, email, user_agent=LAPTOP, ip="203.0.113.7", register=True):
    client = browser(app, user_agent, ip)
    if register:
        registered(client, email)
    log_in(client, email)
    return client


def csrf(client):
    return client.get("/forgot-password").forms["forgot-form"]["csrf_token"].value


def user_row(run_in_request, email):
    def load(request):
        user = request.db.scalar(select(User).where(User.email == email))
        return None if user is None else {c.name: getattr(user, c.key) for c in User.__mapper__.columns}
    return run_in_request(load)


def session_rows(run_in_request, email):
    def load(request):
        user_id = request.db.scalar(select(User.id).where(User.email == email))
        return [{"id": s.id, "user_agent": s.user_agent, "revoked_reason": s.revoked_reason,
                 "active": s.revoked_at is None, "kind": s.kind}
                for s in request.db.scalars(select(AuthSession).where(AuthSession.user_id == user_id)
                                            .order_by(AuthSession.created_at))]
    return run_in_request(load)


def revoked_reasons(run_in_request, email):
    return {row["user_agent"]: row["revoked_reason"] for row in session_rows(run_in_request, email)}


def audit(run_in_request, action, result=None):
    def load(request):
        query = select(AuditEvent).where(AuditEvent.action == action)
        if result:
            query = query.where(AuditEvent.result == result)
        return [{"result": e.result, "actor": e.actor_user_id, "details": e.details}
                for e in request.db.scalars(query)]
    return run_in_request(load)


# --- the whole journey ---------------------------------------------------------


def test_signup_verify_login_change_password_logout(app, run_in_request):
    phone = browser(app, PHONE, "198.51.100.4")
    laptop = browser(app, LAPTOP, "203.0.113.7")

    after_signup = sign_up(phone, "Ada@Example.com")
    assert h1(after_signup) == "Verify your email address"
    assert "Almost done: we sent a link to ada@example.com." in main_text(after_signup)
    assert user_row(run_in_request, "ada@example.com")["email_verified_at"] is None

    [message] = inbox(phone, "ada@example.com")
    response = phone.get(link(message, "verify-email"), status=303)  # the browser that signed up is signed in
    assert response.location.endswith("/dashboard")
    assert user_row(run_in_request, "ada@example.com")["email_verified_at"] is not None
    cookie = next(v for k, v in response.headerlist if k == "Set-Cookie" and v.startswith("gg_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert 29 * 86400 < int(re.search(r"Max-Age=(\d+)", cookie).group(1)) <= 30 * 86400
    dashboard = response.follow()
    assert h1(dashboard) == "Dashboard"
    assert "Welcome to GuestGuard, Ada Host: your address is verified." in main_text(dashboard)
    assert [row["details"] for row in audit(run_in_request, "account.login")] == [
        {"kind": "web", "via": "email_verification"}]
    account = phone.get("/account")
    sessions = account.html.select("ul.sessions > li")
    assert len(sessions) == 1
    assert "Mobile Safari on iOS" in sessions[0].get_text()
    assert "198.51.100.4" in sessions[0].get_text()
    assert "this device" in sessions[0].get_text()
    assert sessions[0].find("form") is None  # no sign-out button for the current session

    log_in(laptop, "ada@example.com")
    account = laptop.get("/account")
    rows = account.html.select("ul.sessions > li")
    assert [("this device" in row.get_text(), row.find("form") is not None) for row in rows] == [
        (True, False), (False, True)]
    assert "Firefox on Linux" in rows[0].get_text() and "Mobile Safari on iOS" in rows[1].get_text()

    form = account.forms["password-form"]
    assert form["end_other_sessions"].checked  # on by default
    form["current_password"] = PASSWORD
    form["new_password"] = NEW_PASSWORD
    changed = form.submit(status=303).follow()
    assert "Your password was changed. 1 other session signed out." in main_text(changed)
    assert len(changed.html.select("ul.sessions > li")) == 1
    assert inbox(laptop, "ada@example.com")[0].subject == "Your GuestGuard password was changed"

    assert phone.get("/account", status=302).location.endswith("/login?next=%2Faccount")
    assert revoked_reasons(run_in_request, "ada@example.com") == {PHONE: "password_changed", LAPTOP: None}

    signed_out = laptop.get("/account").forms["sign-out-form"].submit(status=303)
    assert signed_out.location.endswith("/")
    home = signed_out.follow()
    assert "You are signed out." in main_text(home)
    assert home.html.find("a", string="Log in") is not None
    assert laptop.get("/account", status=302).location.endswith("/login?next=%2Faccount")
    assert all(not row["active"] for row in session_rows(run_in_request, "ada@example.com"))
    assert len(audit(run_in_request, "account.logout")) == 1
    log_in(laptop, "ada@example.com", NEW_PASSWORD)


def test_forgot_and_reset_password_through_the_emailed_link(app, run_in_request):
    old = signed_in(app, "ada@example.com")
    other = browser(app, PHONE, "198.51.100.4")

    form = other.get("/forgot-password").forms["forgot-form"]
    form["email"] = "ada@example.com"
    answer = form.submit(status=303).follow()
    assert SAME_ANSWER in main_text(answer)
    reset_path = link(inbox(other, "ada@example.com")[0], "reset-password")

    page = other.get(reset_path)
    assert h1(page) == "Choose a new password"
    assert reset_path.rsplit("/", 1)[1] not in page.text  # the token is not echoed back
    form = page.forms["reset-form"]
    form["password"] = NEW_PASSWORD
    done = form.submit(status=303)
    assert done.location.endswith("/login")
    assert "Your password was changed and every session was signed out." in main_text(done.follow())

    assert old.get("/account", status=302).location.endswith("/login?next=%2Faccount")
    assert set(revoked_reasons(run_in_request, "ada@example.com").values()) == {"password_reset"}
    assert inbox(other, "ada@example.com")[0].subject == "Your GuestGuard password was changed"

    again = other.get(reset_path, status=400)
    assert h1(again) == "This link is not valid"
    assert again.html.find("a", string="Ask for a new reset link")["href"] == "/forgot-password"
    refused = other.post(reset_path, {"csrf_token": csrf(other), "password": "another fine password 9"},
                         status=400)
    assert h1(refused) == "This link is not valid"

    log_in(other, "ada@example.com", PASSWORD, status=401)
    log_in(other, "ada@example.com", NEW_PASSWORD)


def test_a_reset_form_with_a_weak_password_is_shown_again_and_the_link_still_works(app, run_in_request):
    client = browser(app)
    registered(client, "ada@example.com")
    form = client.get("/forgot-password").forms["forgot-form"]
    form["email"] = "ada@example.com"
    form.submit(status=303)
    reset_path = link(inbox(client, "ada@example.com")[0], "reset-password")
    form = client.get(reset_path).forms["reset-form"]
    form["password"] = "password1"
    page = form.submit(status=400)
    assert "New password is one of the most common passwords; choose another." in main_text(page)
    assert page.html.find("input", {"name": "password"}).get("value") is None
    form = page.forms["reset-form"]
    form["password"] = NEW_PASSWORD
    form.submit(status=303)
    log_in(client, "ada@example.com", NEW_PASSWORD)


def test_garbage_reset_and_verify_links_get_the_neutral_page(app):
    for path in ("/reset-password/garbage", "/reset-password/" + "A" * 43, "/verify-email/garbage"):
        page = app.get(path, status=400)
        assert h1(page) == "This link is not valid"


# --- login refusals ------------------------------------------------------------


def test_wrong_password_and_unknown_email_get_the_same_page_and_status(app, run_in_request):
    client = browser(app)
    registered(client, "ada@example.com")
    wrong = log_in(client, "ada@example.com", "not the password at all", status=401)
    unknown = log_in(client, "nobody@example.com", PASSWORD, status=401)
    summary = [page.html.find(class_="error-summary") for page in (wrong, unknown)]
    assert summary[0]["role"] == "alert"
    assert summary[0].get_text(" ", strip=True) == summary[1].get_text(" ", strip=True)
    assert "The email or password is not right." in summary[0].get_text()
    assert h1(wrong) == h1(unknown) == "Log in"
    assert wrong.html.find("input", {"name": "password"}).get("value") is None
    # The refusal is rendered, not raised, so what it recorded is kept.
    assert user_row(run_in_request, "ada@example.com")["failed_logins"] == 1
    failures = audit(run_in_request, "account.login", "failure")
    assert len(failures) == 2 and sum(1 for row in failures if row["actor"] is None) == 1
    assert session_rows(run_in_request, "ada@example.com") == []


def test_an_unverified_user_is_offered_a_new_verification_link(app, run_in_request):
    client = browser(app)
    sign_up(client, "ada@example.com")
    first_link = link(inbox(client, "ada@example.com")[0], "verify-email")
    page = log_in(client, "ada@example.com", status=403)
    assert "Verify your email address first" in main_text(page)
    resend = page.forms["resend-form"]
    assert resend.action == "/verify-email" and resend["email"].value == "ada@example.com"
    answer = resend.submit(status=303).follow()
    assert SAME_ANSWER in main_text(answer)
    assert len(inbox(client, "ada@example.com")) == 2
    assert session_rows(run_in_request, "ada@example.com") == []

    assert h1(client.get(first_link, status=400)) == "This link is not valid"  # replaced by the new one
    assert h1(verify(client, "ada@example.com")) == "Your email address is verified"  # a resent link only verifies
    assert session_rows(run_in_request, "ada@example.com") == []
    log_in(client, "ada@example.com")


def test_resend_and_forgot_answer_the_same_for_unknown_addresses(app):
    client = browser(app)
    registered(client, "ada@example.com")
    before = len(inbox(client, "nobody@example.com"))
    for page_path, form_id in (("/verify-email", "resend-form"), ("/forgot-password", "forgot-form")):
        answers = []
        for email in ("ada@example.com", "nobody@example.com"):
            form = client.get(page_path).forms[form_id]
            form["email"] = email
            answers.append(main_text(form.submit(status=303).follow()))
        assert answers[0] == answers[1]
        assert SAME_ANSWER in answers[0]
    assert len(inbox(client, "nobody@example.com")) == before == 0


def test_signing_up_with_a_taken_address_looks_the_same_and_creates_nothing(app, run_in_request):
    client = browser(app)
    registered(client, "ada@example.com")
    page = sign_up(browser(app), "ada@example.com", name="Someone Else")
    assert h1(page) == "Verify your email address"
    assert user_row(run_in_request, "ada@example.com")["display_name"] == "Ada Host"
    assert inbox(client, "ada@example.com")[0].text != inbox(client, "ada@example.com")[1].text


@pytest.mark.parametrize("bad_next", [
    "//evil.example", "https://evil.example", "/\\evil.example", "\\\\evil.example",
    "/\t/evil.example", "http:/evil.example", "javascript:alert(1)", "evil.example",
])
def test_next_never_leaves_the_site(app, bad_next):
    client = browser(app)
    registered(client, "ada@example.com")
    page = client.get("/login?next=" + quote(bad_next, safe=""))
    assert page.html.find("input", {"name": "next"}) is None
    fields = dict(page.forms["login-form"].submit_fields())
    fields.update(email="ada@example.com", password=PASSWORD, next=bad_next)
    response = client.post("/login", fields, status=303)
    assert response.location == "http://guestguard.test/dashboard"


def test_next_on_this_site_is_followed(app):
    client = browser(app)
    registered(client, "ada@example.com")
    redirect = client.get("/account", status=302)
    assert redirect.location.endswith("/login?next=%2Faccount")
    page = redirect.follow()
    assert page.html.find("input", {"name": "next"})["value"] == "/account"
    form = page.forms["login-form"]
    form["email"] = "ada@example.com"
    form["password"] = PASSWORD
    assert form.submit(status=303).location == "http://guestguard.test/account"
    assert log_in(browser(app), "ada@example.com", next_path="/privacy?x=1").location == \
        "http://guestguard.test/privacy?x=1"


def test_signed_in_users_are_sent_from_login_and_signup_to_their_account(app):
    client = signed_in(app, "ada@example.com")
    assert client.get("/login", status=303).location.endswith("/dashboard")
    assert client.get("/signup", status=303).location.endswith("/dashboard")


# --- CSRF ------------------------------------------------------------------------


def test_cookie_authenticated_posts_without_the_csrf_token_are_refused(app, run_in_request):
    client = signed_in(app, "ada@example.com")
    client.post("/account/sign-out-everywhere", status=400)
    client.post("/account/profile", {"display_name": "Mallory"}, status=400)
    client.post("/account/profile", {"display_name": "Mallory", "csrf_token": "forged"}, status=400)
    client.post("/logout", status=400)
    assert user_row(run_in_request, "ada@example.com")["display_name"] == "Ada Host"
    assert [row["active"] for row in session_rows(run_in_request, "ada@example.com")] == [True]
    assert h1(client.get("/account")) == "Your account"


def test_every_form_carries_the_csrf_token(app):
    client = signed_in(app, "ada@example.com")
    page = client.get("/account")
    token = page.forms["profile-form"]["csrf_token"].value
    assert len(token) >= 32
    assert {form["csrf_token"].value for form in page.forms.values()} == {token}
    # profile, password, data export, account deletion, sign out everywhere, sign out (nav)
    assert len(page.html.find_all("form")) == 6


def test_login_starts_a_fresh_csrf_token(app):
    client = browser(app)
    registered(client, "ada@example.com")
    before = client.get("/login").forms["login-form"]["csrf_token"].value
    log_in(client, "ada@example.com")
    assert client.get("/account").forms["profile-form"]["csrf_token"].value != before


# --- the account page ------------------------------------------------------------


def test_signing_out_another_session(app, run_in_request):
    phone = signed_in(app, "ada@example.com", PHONE, "198.51.100.4")
    laptop = signed_in(app, "ada@example.com", LAPTOP, register=False)
    phone_id = next(row["id"] for row in session_rows(run_in_request, "ada@example.com")
                    if row["user_agent"] == PHONE)
    page = laptop.get("/account")
    [form] = [f for f in page.forms.values() if f.action == f"/account/sessions/{phone_id}/revoke"]
    done = form.submit(status=303).follow()
    assert "Signed out Mobile Safari on iOS." in main_text(done)
    assert "Mobile Safari on iOS" not in done.html.find("ul", class_="sessions").get_text()
    assert phone.get("/account", status=302)
    assert laptop.get("/account").status_int == 200
    assert revoked_reasons(run_in_request, "ada@example.com") == {PHONE: "revoked_by_user", LAPTOP: None}
    assert len(audit(run_in_request, "account.session_revoked")) == 1


def test_sessions_of_someone_else_cannot_be_signed_out(app, run_in_request):
    ada = signed_in(app, "ada@example.com")
    bob = browser(app, PHONE)
    registered(bob, "bob@example.com")
    log_in(bob, "bob@example.com")
    [bob_session] = session_rows(run_in_request, "bob@example.com")
    token = csrf(ada)
    ada.post(f"/account/sessions/{bob_session['id']}/revoke", {"csrf_token": token}, status=404)
    ada.post("/account/sessions/not-a-uuid/revoke", {"csrf_token": token}, status=404)
    assert h1(bob.get("/account")) == "Your account"
    assert session_rows(run_in_request, "bob@example.com")[0]["active"]


def test_sign_out_everywhere_ends_web_and_api_sessions(app, run_in_request):
    phone = signed_in(app, "ada@example.com", PHONE, "198.51.100.4")
    laptop = signed_in(app, "ada@example.com", LAPTOP, register=False)
    token = app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": PASSWORD}).json[
        "access_token"]
    page = laptop.get("/account")
    rows = page.html.select("ul.sessions > li")
    assert len(rows) == 3
    assert [row.find(class_="session-device").get_text(" ", strip=True) for row in rows] == [
        "Firefox on Linux this device", "Unknown device app", "Mobile Safari on iOS"]
    done = page.forms["sign-out-everywhere-form"].submit(status=303)
    assert done.location.endswith("/login")
    assert "You are signed out everywhere (3 sessions)." in main_text(done.follow())
    for client in (phone, laptop):
        client.get("/account", status=302)
    app.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}, status=401)
    assert {row["revoked_reason"] for row in session_rows(run_in_request, "ada@example.com")} == {
        "logout_all"}


def test_password_change_can_keep_the_other_sessions(app, run_in_request):
    phone = signed_in(app, "ada@example.com", PHONE)
    laptop = signed_in(app, "ada@example.com", LAPTOP, register=False)
    form = laptop.get("/account").forms["password-form"]
    form["current_password"] = PASSWORD
    form["new_password"] = NEW_PASSWORD
    form["end_other_sessions"] = False
    page = form.submit(status=303).follow()
    assert "Your password was changed." in main_text(page) and "signed out" not in main_text(page)
    assert h1(phone.get("/account")) == "Your account"


def test_password_change_with_a_wrong_current_password_is_shown_on_the_form(app, run_in_request):
    client = signed_in(app, "ada@example.com")
    before = user_row(run_in_request, "ada@example.com")["password_hash"]
    form = client.get("/account").forms["password-form"]
    form["current_password"] = "not my password"
    form["new_password"] = NEW_PASSWORD
    form["end_other_sessions"] = False
    page = form.submit(status=400)
    field = page.html.find("input", {"name": "current_password"})
    assert field["aria-invalid"] == "true"
    error = page.html.find(id=field["aria-describedby"])
    assert "The current password is not right." in error.get_text()
    # The user's choice is kept.
    assert page.html.find("input", {"name": "end_other_sessions"}).get("checked") is None
    assert field.get("value") is None and NEW_PASSWORD not in page.text
    assert user_row(run_in_request, "ada@example.com")["password_hash"] == before
    assert audit(run_in_request, "account.password_changed", "failure")[0]["details"] == {
        "reason": "wrong_current_password"}


@pytest.mark.parametrize("new_password, message", [
    ("short", "New password must be at least 8 characters."),
    ("iloveyou", "New password is one of the most common passwords; choose another."),
])
def test_password_change_with_a_weak_new_password(app, run_in_request, new_password, message):
    client = signed_in(app, "ada@example.com")
    form = client.get("/account").forms["password-form"]
    form["current_password"] = PASSWORD
    form["new_password"] = new_password
    page = form.submit(status=400)
    assert message in page.html.find(class_="error-summary").get_text()
    assert h1(page) == "Your account" and page.html.select("ul.sessions > li")
    log_in(browser(app), "ada@example.com", PASSWORD)


def test_profile_update(app, run_in_request):
    client = signed_in(app, "ada@example.com")
    form = client.get("/account").forms["profile-form"]
    assert form["display_name"].value == "Ada Host"
    form["display_name"] = "  Ada Lovelace  "
    page = form.submit(status=303).follow()
    assert "Your profile was saved." in main_text(page)
    assert user_row(run_in_request, "ada@example.com")["display_name"] == "Ada Lovelace"

    form = page.forms["profile-form"]
    form["display_name"] = "   "
    page = form.submit(status=400)
    assert "Your name is required." in page.html.find(id="profile-display-name-error").get_text()
    assert user_row(run_in_request, "ada@example.com")["display_name"] == "Ada Lovelace"


def test_logout_confirmation_page(app):
    client = signed_in(app, "ada@example.com")
    page = client.get("/logout")
    assert h1(page) == "Sign out?"
    page.forms["logout-form"].submit(status=303)
    assert browser(app).get("/logout", status=303).location.endswith("/")


# --- policies --------------------------------------------------------------------


def backdate_acceptance(run_in_request, email):
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    run_in_request(lambda request: request.db.execute(
        update(User).where(User.email == email)
        .values(privacy_accepted_at=long_ago, terms_accepted_at=long_ago)))


def test_updated_policies_must_be_accepted_before_using_the_account(app, run_in_request):
    client = signed_in(app, "ada@example.com")
    backdate_acceptance(run_in_request, "ada@example.com")
    redirect = client.get("/account", status=302)
    assert redirect.location.endswith("/accept-policies?next=%2Faccount")
    page = redirect.follow()
    assert h1(page) == "We updated our privacy policy and terms"
    assert "1 November 2026" in main_text(page)
    assert page.html.find("a", string="privacy policy")["href"] == "/privacy"

    refused = page.forms["accept-policies-form"].submit(status=400)
    assert "Tick the box to accept" in refused.html.find(class_="error-summary").get_text()
    assert user_row(run_in_request, "ada@example.com")["terms_accepted_at"].year == 2020

    form = refused.forms["accept-policies-form"]
    form["accept"] = True
    accepted = form.submit(status=303)
    assert accepted.location == "http://guestguard.test/account"
    assert h1(accepted.follow()) == "Your account"
    row = user_row(run_in_request, "ada@example.com")
    assert row["privacy_accepted_at"].date() >= dt.date(2026, 11, 1)
    assert row["terms_accepted_at"].date() >= dt.date(2026, 11, 1)
    assert len(audit(run_in_request, "account.policies_accepted")) == 1
    # Once accepted, the page sends the user on.
    assert client.get("/accept-policies", status=303).location.endswith("/account")


def test_login_after_a_policy_update_asks_for_acceptance(app, run_in_request):
    client = browser(app)
    registered(client, "ada@example.com")
    backdate_acceptance(run_in_request, "ada@example.com")
    page = log_in(client, "ada@example.com", status=403)
    assert "Accept the updated privacy policy and terms to continue." in main_text(page)
    assert session_rows(run_in_request, "ada@example.com") == []
    form = page.forms["login-form"]
    form["password"] = PASSWORD
    form["accept_policies"] = True
    assert form.submit(status=303).location.endswith("/dashboard")
    assert h1(client.get("/account")) == "Your account"


def test_the_accept_page_is_reachable_before_acceptance_and_sign_out_everywhere_too(app, run_in_request):
    client = signed_in(app, "ada@example.com")
    backdate_acceptance(run_in_request, "ada@example.com")
    page = client.get("/accept-policies?next=%2F%2Fevil.example")
    assert page.html.find("input", {"name": "next"}) is None
    token = page.forms["accept-policies-form"]["csrf_token"].value
    client.post("/account/sign-out-everywhere", {"csrf_token": token}, status=303)
    assert session_rows(run_in_request, "ada@example.com")[0]["revoked_reason"] == "logout_all"


# --- bad input -------------------------------------------------------------------


@pytest.mark.parametrize("fields, field, message", [
    ({"email": "not-an-email"}, "email", "An email address must have an @-sign."),
    ({"password": "short"}, "password", "Password must be at least 8 characters."),
    ({"password": "qwertyuiop"}, "password", "Password is one of the most common passwords; choose another."),
    ({"password": "ada@example.com"}, "password", "Password must not be your email address."),
    ({"display_name": ""}, "display_name", "Your name is required."),
    ({"accept_policies": False}, "accept_policies", "You must accept the privacy policy and terms."),
])
def test_invalid_signup_is_shown_on_the_form_and_stores_nothing(app, run_in_request, fields, field, message):
    client = browser(app)
    form = client.get("/signup").forms["signup-form"]
    values = {"display_name": "Ada Host", "email": "ada@example.com", "password": PASSWORD,
              "accept_policies": True, **fields}
    for name, value in values.items():
        form[name] = value
    page = form.submit(status=400)

    summary = page.html.find(class_="error-summary")
    assert summary["role"] == "alert"
    assert [li.get_text(strip=True) for li in summary.find_all("li")] == [message]
    field_id = "signup-" + field.replace("_", "-")
    assert summary.find("a")["href"] == "#" + field_id
    control = page.html.find(id=field_id)
    assert control["aria-invalid"] == "true"
    assert field_id + "-error" in control["aria-describedby"].split()
    assert message in page.html.find(id=field_id + "-error").get_text()
    assert page.html.find("title").get_text().startswith("Error: ")

    again = page.forms["signup-form"]
    if field != "display_name":
        assert again["display_name"].value == "Ada Host"
    if field != "email":
        assert again["email"].value == "ada@example.com"
    assert again["password"].value == ""
    assert page.html.find(id="signup-password").get("value") is None
    assert again["accept_policies"].checked == bool(values["accept_policies"])
    assert run_in_request(lambda request: request.db.scalar(select(func.count()).select_from(User))) == 0
    assert inbox(client, "ada@example.com") == []


def test_invalid_login_and_email_forms_are_400_with_the_field_named(app):
    client = browser(app)
    form = client.get("/login").forms["login-form"]
    form["email"] = "nope"
    page = form.submit(status=400)
    assert page.html.find(id="login-password")["aria-invalid"] == "true"
    assert page.html.find(id="login-email")["aria-invalid"] == "true"
    for path, form_id in (("/forgot-password", "forgot-form"), ("/verify-email", "resend-form")):
        form = client.get(path).forms[form_id]
        form["email"] = "still not an email"
        page = form.submit(status=400)
        assert page.html.find(id=form_id.split("-")[0] + "-email")["aria-invalid"] == "true"
        assert page.html.find(class_="error-summary")["role"] == "alert"


# --- pages -----------------------------------------------------------------------


def test_legal_pages_are_marked_placeholders_and_linked(app):
    for path, heading in (("/privacy", "Privacy policy"), ("/terms", "Terms of service")):
        page = app.get(path)
        assert h1(page).startswith(heading)
        assert "PLACEHOLDER" in main_text(page)
        footer = page.html.find("footer")
        assert {a["href"] for a in footer.find_all("a")} >= {"/privacy", "/terms"}
    signup = app.get("/signup").html.find(id="signup-form")
    assert {a["href"] for a in signup.find_all("a")} == {"/privacy", "/terms"}


def test_navigation_follows_the_identity(app):
    anonymous = app.get("/").html.find("nav")
    assert anonymous.find("a", string="Log in") and anonymous.find("a", string="Sign up")
    assert anonymous.find("form") is None
    client = signed_in(app, "ada@example.com")
    nav = client.get("/").html.find("nav")
    assert nav.find("a", string="Account")["href"] == "/account"
    assert nav.find("form", id="sign-out-form").find("input", {"name": "csrf_token"})["value"]
    assert nav.find("a", string="Log in") is None


def test_account_pages_are_not_cached(app):
    client = signed_in(app, "ada@example.com")
    for path in ("/account", "/login?next=/x"):
        response = (client if path == "/account" else app).get(path)
        assert "no-store" in response.headers["Cache-Control"]


AUTOCOMPLETE = {"email": "email", "display_name": "name", "password": {"current-password", "new-password"},
                "current_password": "current-password", "new_password": "new-password"}


def test_every_input_is_labelled_and_autocompletes(app, run_in_request):
    client = signed_in(app, "ada@example.com")
    backdate_acceptance(run_in_request, "ada@example.com")
    form = client.get("/forgot-password").forms["forgot-form"]
    form["email"] = "ada@example.com"
    form.submit()
    reset_path = link(inbox(client, "ada@example.com")[0], "reset-password")
    pages = [(path, client.get(path).html) for path in ("/accept-policies", reset_path)]
    run_in_request(lambda request: request.db.execute(
        update(User).values(privacy_accepted_at=dt.datetime.now(dt.UTC),
                            terms_accepted_at=dt.datetime.now(dt.UTC))))
    pages += [(path, client.get(path).html) for path in ("/account",)]
    pages += [(path, app.get(path).html)
              for path in ("/signup", "/login", "/forgot-password", "/verify-email")]
    for path, html in pages:
        for control in html.find_all("input"):
            if control["type"] == "hidden":
                continue
            label = html.find("label", attrs={"for": control.get("id")})
            assert label is not None and label.get_text(strip=True), (path, control)
            expected = AUTOCOMPLETE.get(control["name"])
            if expected:
                allowed = expected if isinstance(expected, set) else {expected}
                assert control.get("autocomplete") in allowed, (path, control)
        for form in html.find_all("form", method="post"):
            assert form.find("input", {"name": "csrf_token"}), (path, form.get("id"))


def test_only_signups_that_pass_the_forms_checks_count_against_the_limit(make_app):
    app = make_app({"ratelimit.signup": "2/hour"})
    client = browser(app)
    for _ in range(4):  # mistakes cost nothing
        form = client.get("/signup").forms["signup-form"]
        form["display_name"], form["email"], form["password"] = "Ada", "not-an-email", PASSWORD
        form["accept_policies"] = True
        form.submit(status=400)
    sign_up(client, "ada@example.com")
    sign_up(client, "bob@example.com")
    form = client.get("/signup").forms["signup-form"]
    form["display_name"], form["email"], form["password"] = "Cy", "cy@example.com", PASSWORD
    form["accept_policies"] = True
    form.submit(status=429)


def test_a_used_verification_link_says_the_address_is_verified_already(app):
    client = browser(app)
    sign_up(client, "ada@example.com")
    elsewhere = browser(app, PHONE, "198.51.100.4")  # opened in another browser: verified, not signed in
    welcome = elsewhere.get(link(inbox(client, "ada@example.com")[0], "verify-email"))
    assert "Welcome to GuestGuard, Ada Host. Your account for ada@example.com is ready" in main_text(welcome)
    assert welcome.html.find("main").find("a", string="Log in")["href"] == "/login"
    assert elsewhere.get("/account", status=302).location.endswith("/login?next=%2Faccount")
    again = elsewhere.get(link(inbox(client, "ada@example.com")[0], "verify-email"), status=400)
    assert h1(again) == "Your address is verified already"
    assert again.html.find("main").find("a", string="Sign in")["href"] == "/login"


def test_the_link_signs_in_the_browser_that_signed_up_once_even_after_a_mail_scanner(app, run_in_request):
    client = browser(app)
    sign_up(client, "ada@example.com")
    verify_path = link(inbox(client, "ada@example.com")[0], "verify-email")
    browser(app, "Mozilla/5.0 (compatible; scanner)", "40.94.0.9").get(verify_path)  # the scanner uses it first
    signed = client.get(verify_path, status=303)
    assert signed.location.endswith("/dashboard")
    assert client.get("/account").status_int == 200
    assert len(session_rows(run_in_request, "ada@example.com")) == 1
    client.get(verify_path, status=400)  # once: the signed-up mark went with the new login
    assert len(session_rows(run_in_request, "ada@example.com")) == 1


def test_signing_up_marks_the_browser_alike_for_new_and_taken_addresses(app):
    registered(browser(app), "bob@example.com")
    cookies = []
    for email in ("ada@example.com", "bob@example.com"):
        client = browser(app)
        sign_up(client, email)
        state = session_state(client)
        cookies.append((sorted(state), re.fullmatch(r"[0-9a-f]{64}", state["signed_up"]) is not None))
    assert cookies == [(["_csrft_", "signed_up"], True)] * 2
    other = browser(app)
    sign_up(other, "cy@example.com")
    stranger = browser(app)
    stranger.get(link(inbox(other, "cy@example.com")[0], "verify-email"), status=200)  # the mark is per browser


def test_signing_up_with_a_taken_address_never_signs_in_as_its_owner(app, run_in_request):
    """Whoever signs up with Ada's address holds a mark, but not of any link
    Ada was sent: her verification link, even in their hands, only says
    "verified already"."""
    ada = browser(app)
    sign_up(ada, "ada@example.com")
    ada_link = link(inbox(ada, "ada@example.com")[0], "verify-email")
    browser(app, PHONE, "198.51.100.4").get(ada_link)  # Ada verifies on her phone
    intruder = browser(app, LAPTOP, "192.0.2.66")
    sign_up(intruder, "ada@example.com")
    assert h1(intruder.get(ada_link, status=400)) == "Your address is verified already"
    intruder.get("/account", status=302)
    assert session_rows(run_in_request, "ada@example.com") == []


def test_the_mark_of_one_signup_does_not_open_another_accounts_link(app, run_in_request):
    first, second = browser(app), browser(app)
    sign_up(first, "ada@example.com")
    sign_up(second, "bob@example.com", name="Bob")
    assert h1(first.get(link(inbox(second, "bob@example.com")[0], "verify-email"))) == "Your email address is verified"
    assert session_rows(run_in_request, "bob@example.com") == []


@pytest.mark.parametrize("spoil", ["expired", "locked", "deleted"])
def test_a_link_out_of_its_time_or_for_a_barred_account_only_verifies(app, run_in_request, spoil):
    client = browser(app)
    sign_up(client, "ada@example.com")
    verify_path = link(inbox(client, "ada@example.com")[0], "verify-email")
    browser(app, PHONE, "198.51.100.4").get(verify_path)  # a scanner uses it first

    def spoiled(request):
        user = request.db.scalar(select(User).where(User.email == "ada@example.com"))
        if spoil == "expired":
            request.db.execute(update(UserToken).where(UserToken.user_id == user.id)
                               .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
        elif spoil == "locked":
            user.locked_at = dt.datetime.now(dt.UTC)
        else:
            user.deleted_at = dt.datetime.now(dt.UTC)
    run_in_request(spoiled)
    client.get(verify_path, status=400)
    assert session_rows(run_in_request, "ada@example.com") == []
