"""The CAPTCHA on signup and forgot-password, through the real app with the
built-in ``test`` verifier (answer ``pass``; ``unavailable`` plays an outage)
and verifiers registered by test plugins."""
import pytest
from bs4 import BeautifulSoup
from sqlalchemy import func, select

from guestguard import make_config
from guestguard.accounts.models import User
from guestguard.captcha_builtin import register_captcha_verifiers as builtin_verifiers
from guestguard.notifications.models import Notification
from guestguard.plugins import CaptchaUnavailable, CaptchaWidget, hookimpl
from guestguard.settings import SettingsError
from guestguard.testing import create_user, signup

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


PASSWORD = "lantern orchard pebble 42"
KNOWN = "known@example.com"
FAILED = "The CAPTCHA was not solved"
UNAVAILABLE = "We cannot check the CAPTCHA right now"


@pytest.fixture
def captcha_app(make_app):
    def build(verifier="test", **settings):
        return make_app({"captcha.verifier": verifier, **settings})
    return build


def users(app, run_in_request):
    return run_in_request(lambda r: r.db.scalar(select(func.count()).select_from(User)),
                          app.app.registry)


def notifications_to(app, run_in_request, recipient):
    return run_in_request(lambda r: r.db.scalar(
        select(func.count()).select_from(Notification).where(Notification.recipient == recipient)),
        app.app.registry)


def with_known_user(app, run_in_request):
    run_in_request(lambda r: create_user(r, KNOWN), app.app.registry)


def api_signup(app, token=None, status=202, email="ada@example.com"):
    return signup(app, email, PASSWORD, "Ada", status, captcha_token=token)


def api_forgot(app, token=None, status=202):
    body = {"email": KNOWN} if token is None else {"email": KNOWN, "captcha_token": token}
    return app.post_json("/api/v1/auth/forgot-password", body, status=status)


def error_code(response):
    return response.json["error"]["code"]


# --- the API --------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "wrong", "pa ss", "päss", "x" * 4096])
def test_api_signup_without_a_solved_captcha_is_refused(captcha_app, run_in_request, token):
    app = captcha_app()
    answer = api_signup(app, token, status=400)
    assert error_code(answer) == "captcha_failed"
    assert answer.json["error"]["fields"] == {"captcha_token": answer.json["error"]["message"]}
    assert users(app, run_in_request) == 0
    assert notifications_to(app, run_in_request, "ada@example.com") == 0


def test_api_signup_with_a_solved_captcha_works(captcha_app, run_in_request):
    app = captcha_app()
    api_signup(app, "pass")
    assert users(app, run_in_request) == 1
    assert notifications_to(app, run_in_request, "ada@example.com") == 1


def test_a_token_longer_than_4096_characters_is_a_failed_captcha(captcha_app):
    answer = api_signup(captcha_app(), "p" * 4097, status=400)
    assert answer.json["error"]["code"] == "captcha_failed"
    assert "captcha_token" in answer.json["error"]["fields"]


def test_invalid_fields_are_reported_before_the_captcha_is_spent(captcha_app):
    answer = captcha_app().post_json("/api/v1/auth/signup", {"email": "nope", "captcha_token": "pass"},
                                     status=422)
    assert "email" in answer.json["error"]["fields"]


def test_api_forgot_password_needs_the_captcha(captcha_app, run_in_request):
    app = captcha_app()
    with_known_user(app, run_in_request)
    assert error_code(api_forgot(app, status=400)) == "captcha_failed"
    assert error_code(api_forgot(app, "wrong", status=400)) == "captcha_failed"
    assert notifications_to(app, run_in_request, KNOWN) == 0
    api_forgot(app, "pass")
    assert notifications_to(app, run_in_request, KNOWN) == 1


def test_an_unavailable_service_refuses_by_default(captcha_app, run_in_request):
    app = captcha_app()
    with_known_user(app, run_in_request)
    signup = api_signup(app, "unavailable", status=503)
    forgot = api_forgot(app, "unavailable", status=503)
    assert error_code(signup) == error_code(forgot) == "captcha_unavailable"
    assert users(app, run_in_request) == 1
    assert notifications_to(app, run_in_request, KNOWN) == 0


def test_an_unavailable_service_lets_requests_through_when_allowed(captcha_app, run_in_request, caplog):
    app = captcha_app(**{"captcha.on_unavailable": "allow"})
    with_known_user(app, run_in_request)
    api_signup(app, "unavailable")
    api_forgot(app, "unavailable")
    assert users(app, run_in_request) == 2
    assert notifications_to(app, run_in_request, KNOWN) == 1
    assert "allowed by captcha.on_unavailable = allow" in caplog.text
    assert error_code(api_signup(app, "wrong", status=400, email="bo@example.com")) == "captcha_failed"


def test_the_disabled_verifier_needs_no_token(make_app, run_in_request):
    app = make_app()
    assert app.app.registry["captcha.verifier"].name == "disabled"
    with_known_user(app, run_in_request)
    api_signup(app)
    api_forgot(app)
    assert users(app, run_in_request) == 2


# --- the web forms ----------------------------------------------------------------


def fill_signup(app, answer=None, email="ada@example.com"):
    form = app.get("/signup").forms["signup-form"]
    form["display_name"] = "Ada"
    form["email"] = email
    form["password"] = PASSWORD
    form["accept_policies"] = True
    if answer is not None:
        form["captcha_token"] = answer
    return form


def fill_forgot(app, answer=None):
    form = app.get("/forgot-password").forms["forgot-form"]
    form["email"] = KNOWN
    if answer is not None:
        form["captcha_token"] = answer
    return form


def captcha_error(page):
    found = BeautifulSoup(page.text, "html.parser").find(id=lambda i: i and i.endswith("-captcha-error"))
    return found.get_text(" ", strip=True) if found else None


@pytest.mark.parametrize("answer", ["", "wrong"])
def test_the_signup_form_shows_a_failed_captcha(captcha_app, run_in_request, answer):
    app = captcha_app()
    page = fill_signup(app, answer).submit(status=400)
    assert FAILED in captcha_error(page)
    html = BeautifulSoup(page.text, "html.parser")
    assert html.find("input", attrs={"name": "email"})["value"] == "ada@example.com"
    assert html.find(class_="error-summary").find("a")["href"] == "#signup-captcha"
    assert page.headers["Cache-Control"] == "no-store"
    assert users(app, run_in_request) == 0


def test_the_signup_form_with_a_solved_captcha_signs_up(captcha_app, run_in_request):
    app = captcha_app()
    fill_signup(app, "pass").submit(status=303)
    assert users(app, run_in_request) == 1


def test_the_forgot_password_form_needs_the_captcha(captcha_app, run_in_request):
    app = captcha_app()
    with_known_user(app, run_in_request)
    page = fill_forgot(app, "wrong").submit(status=400)
    assert FAILED in captcha_error(page)
    assert notifications_to(app, run_in_request, KNOWN) == 0
    fill_forgot(app, "pass").submit(status=303)
    assert notifications_to(app, run_in_request, KNOWN) == 1


def test_the_forms_show_an_unavailable_service(captcha_app, run_in_request):
    app = captcha_app()
    with_known_user(app, run_in_request)
    assert UNAVAILABLE in captcha_error(fill_signup(app, "unavailable").submit(status=503))
    assert UNAVAILABLE in captcha_error(fill_forgot(app, "unavailable").submit(status=503))
    assert users(app, run_in_request) == 1


def test_the_forms_go_through_an_outage_when_allowed(captcha_app, run_in_request):
    app = captcha_app(**{"captcha.on_unavailable": "allow"})
    fill_signup(app, "unavailable").submit(status=303)
    assert users(app, run_in_request) == 1


def test_with_the_captcha_disabled_the_forms_show_none(make_app, run_in_request):
    app = make_app()
    page = app.get("/signup")
    assert "captcha_token" not in page.forms["signup-form"].fields
    assert "captcha" not in page.text.lower()
    fill_signup(app).submit(status=303)
    assert users(app, run_in_request) == 1


# --- verifiers from plugins ----------------------------------------------------------


class RecordingVerifier:
    """Passes ``human``; raises whatever ``outcome`` says for anything else."""

    name = "recording"
    widget = CaptchaWidget(script_url="https://captcha.test/api.js", element_class="rec-captcha",
                           site_key="site-123", response_field="rec-response",
                           csp_sources=("https://captcha.test",))

    def __init__(self, outcome=False):
        self.outcome = outcome
        self.calls = []

    def verify(self, token, remote_ip):
        self.calls.append((token, remote_ip))
        if token == "human":
            return True
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class RecordingPlugin:
    def __init__(self, verifier):
        self.verifier = verifier

    @hookimpl
    def register_captcha_verifiers(self, settings):
        return [self.verifier]


@pytest.fixture
def recording_app(make_app):
    def build(outcome=False):
        verifier = RecordingVerifier(outcome)
        app = make_app({"captcha.verifier": "recording"},
                       plugins=[("recording", RecordingPlugin(verifier))])
        return app, verifier
    return build


def test_a_plugins_verifier_gets_the_token_and_the_client_address(recording_app):
    app, verifier = recording_app()
    api_signup(app, "human")
    api_signup(app, "robot", status=400, email="bo@example.com")
    assert verifier.calls == [("human", "127.0.0.1"), ("robot", "127.0.0.1")]


def test_the_form_shows_the_widget_and_reads_its_field(recording_app, run_in_request):
    app, verifier = recording_app()
    page = app.get("/signup")
    form = BeautifulSoup(page.text, "html.parser").find("form", id="signup-form")
    assert form.find("div", class_="rec-captcha")["data-sitekey"] == "site-123"
    assert form.find("script", src="https://captcha.test/api.js").has_attr("async")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' https://captcha.test" in policy
    assert "frame-src 'self' https://captcha.test" in policy
    assert "captcha.test" not in app.get("/").headers["Content-Security-Policy"]
    csrf = page.forms["signup-form"]["csrf_token"].value
    app.post("/signup", {"csrf_token": csrf, "display_name": "Ada", "email": "ada@example.com",
                         "password": PASSWORD, "accept_policies": "on", "rec-response": "human"},
             status=303)
    assert verifier.calls == [("human", "127.0.0.1")]


def test_a_form_with_invalid_fields_does_not_spend_the_token(recording_app):
    app, verifier = recording_app()
    csrf = app.get("/signup").forms["signup-form"]["csrf_token"].value
    page = app.post("/signup", {"csrf_token": csrf, "email": "nope", "rec-response": "human"},
                    status=400)
    assert verifier.calls == []
    assert "rec-captcha" in page.text


@pytest.mark.parametrize("outcome", ["yes", 1, None])
def test_only_true_counts_as_solved(recording_app, outcome):
    app, _ = recording_app(outcome)
    assert error_code(api_signup(app, "robot", status=400)) == "captcha_failed"


def test_a_crashing_verifier_is_an_outage_not_a_500(recording_app, caplog):
    app, _ = recording_app(RuntimeError("plugin bug"))
    assert error_code(api_signup(app, "robot", status=503)) == "captcha_unavailable"
    assert "failed unexpectedly" in caplog.text


def test_unavailable_from_a_plugin_follows_the_policy(recording_app):
    app, _ = recording_app(CaptchaUnavailable("vendor down"))
    assert error_code(api_signup(app, "robot", status=503)) == "captcha_unavailable"


# --- settings ----------------------------------------------------------------------


def test_an_unknown_verifier_stops_startup_naming_the_setting(base_settings):
    with pytest.raises(SettingsError, match=r"'captcha\.verifier'.*'recaptcha'.*available: "
                                            r".*disabled.*test"):
        make_config({**base_settings, "captcha.verifier": "recaptcha"}, environ={})


def test_a_bad_unavailable_policy_stops_startup(base_settings):
    with pytest.raises(SettingsError, match="captcha.on_unavailable"):
        make_config({**base_settings, "captcha.on_unavailable": "maybe"}, environ={})


def test_the_test_verifier_is_refused_in_production():
    with pytest.raises(SettingsError, match="captcha.verifier.*production"):
        builtin_verifiers(settings={"captcha.verifier": "test", "app.env": "production"})
    assert builtin_verifiers(settings={"captcha.verifier": "disabled", "app.env": "production"})
