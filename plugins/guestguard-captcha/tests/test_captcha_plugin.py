"""guestguard-captcha against a real siteverify stub: an HTTP server on
127.0.0.1 that checks the posted form like hCaptcha and Turnstile do and can
also fail, stall, or answer garbage. Then through the whole app."""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from bs4 import BeautifulSoup

import guestguard_captcha
from guestguard import make_config
from guestguard.plugins import CaptchaUnavailable, CaptchaVerifier, SettingsError, hookimpl
from guestguard.testing import signup as api_signup
from guestguard_captcha import HCAPTCHA, TURNSTILE, SiteverifyVerifier, Vendor

SECRET = "0x4AAAAAAA-test-secret-do-not-leak"
SITE_KEY = "0x4AAAAAAA-site-key"
GOOD_TOKEN = "XXXX.DUMMY.TOKEN.XXXX"
BAD_TOKEN = "robot-token"
CLIENT_IP = "203.0.113.9"


# --- the stub ----------------------------------------------------------------


class SiteverifyStub(ThreadingHTTPServer):
    """Paths: /siteverify answers like the vendor (success for GOOD_TOKEN with
    SECRET); /500, /slow, /garbage, /no-success, /list, /redirect, /201 misbehave."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SiteverifyHandler)
        self.posts: list[dict[str, str]] = []
        self.release = threading.Event()

    def url(self, path: str = "/siteverify") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class SiteverifyHandler(BaseHTTPRequestHandler):
    server: SiteverifyStub

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("ascii")
        if self.headers["Content-Type"] != "application/x-www-form-urlencoded":
            return self.answer(415, b"{}")
        form = {name: values[0] for name, values in parse_qs(body).items()}
        self.server.posts.append(form)
        if self.path == "/500":
            return self.answer(500, b'{"success": true}')
        if self.path == "/201":
            return self.answer(201, b'{"success": true}')
        if self.path == "/slow":
            self.server.release.wait(10)
            return None  # the client gave up long ago: hang up
        if self.path == "/garbage":
            return self.answer(200, b"<html>502 Bad Gateway</html>")
        if self.path == "/no-success":
            return self.answer(200, b'{"hostname": "example.com"}')
        if self.path == "/list":
            return self.answer(200, b'[true]')
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.server.url())
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if form.get("secret") != SECRET:
            return self.verdict(False, ["invalid-input-secret"])
        if form.get("response") != GOOD_TOKEN:
            return self.verdict(False, ["invalid-input-response", "<script>alert(1)</script>"])
        return self.verdict(True, [])

    def verdict(self, success: bool, codes: list[str]) -> None:
        self.answer(200, json.dumps({"success": success, "error-codes": codes}).encode())

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[SiteverifyStub]:
    server = SiteverifyStub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/siteverify"


def verifier(url: str, vendor: Vendor = TURNSTILE, secret: str = SECRET,
             timeout: float = 2) -> SiteverifyVerifier:
    return SiteverifyVerifier(vendor, site_key=SITE_KEY, secret=secret, verify_url=url,
                              timeout=timeout)


# --- the verifiers -------------------------------------------------------------


@pytest.mark.parametrize("vendor", [HCAPTCHA, TURNSTILE], ids=lambda v: v.name)
def test_a_good_token_passes_and_the_form_is_what_the_vendor_expects(stub, vendor):
    assert verifier(stub.url(), vendor).verify(GOOD_TOKEN, CLIENT_IP) is True
    expected = {"secret": SECRET, "response": GOOD_TOKEN, "remoteip": CLIENT_IP}
    if vendor is HCAPTCHA:
        expected["sitekey"] = SITE_KEY
    assert stub.posts == [expected]


def test_without_a_client_address_no_remoteip_is_sent(stub):
    assert verifier(stub.url()).verify(GOOD_TOKEN, None) is True
    assert "remoteip" not in stub.posts[0]


@pytest.mark.parametrize("vendor", [HCAPTCHA, TURNSTILE], ids=lambda v: v.name)
def test_a_rejected_token_fails(stub, vendor, caplog):
    with caplog.at_level(logging.INFO, logger="guestguard_captcha"):
        assert verifier(stub.url(), vendor).verify(BAD_TOKEN, CLIENT_IP) is False
    assert "invalid-input-response" in caplog.text
    assert "<script>" not in caplog.text, "only well-formed error codes are logged"


@pytest.mark.parametrize("path, reason", [
    ("/500", "answered HTTP 500"),
    ("/201", "answered HTTP 201"),
    ("/redirect", "answered HTTP 302"),
    ("/garbage", "other than JSON"),
    ("/no-success", "without a true/false 'success'"),
    ("/list", "not an object"),
])
def test_a_misbehaving_endpoint_is_unavailable(stub, path, reason):
    with pytest.raises(CaptchaUnavailable, match=reason) as caught:
        verifier(stub.url(path)).verify(GOOD_TOKEN, CLIENT_IP)
    assert stub.posts[0]["secret"] == SECRET, "the secret was sent"
    assert_no_secrets(caught.value)


def test_a_slow_endpoint_is_unavailable_after_the_timeout(stub):
    started = time.monotonic()
    with pytest.raises(CaptchaUnavailable, match=r"no answer within 0\.3 s") as caught:
        verifier(stub.url("/slow"), timeout=0.3).verify(GOOD_TOKEN, CLIENT_IP)
    assert time.monotonic() - started < 3
    assert_no_secrets(caught.value)


def test_an_unreachable_endpoint_is_unavailable():
    with pytest.raises(CaptchaUnavailable, match="ConnectionRefusedError") as caught:
        verifier(closed_port_url()).verify(GOOD_TOKEN, CLIENT_IP)
    assert_no_secrets(caught.value)


def test_a_rejected_secret_is_an_outage_not_the_visitors_failure(stub, caplog):
    with (caplog.at_level(logging.INFO, logger="guestguard_captcha"),
          pytest.raises(CaptchaUnavailable, match="invalid-input-secret") as caught):
        verifier(stub.url(), secret="wrong-secret").verify(GOOD_TOKEN, CLIENT_IP)
    assert_no_secrets(caught.value, "wrong-secret")
    assert "captcha.turnstile.secret" in caplog.text
    assert "wrong-secret" not in caplog.text


def test_neither_secret_nor_token_reaches_the_logs(stub, caplog):
    with caplog.at_level(logging.DEBUG):
        for path in ("/siteverify", "/500", "/garbage", "/redirect"):
            for token in (GOOD_TOKEN, BAD_TOKEN):
                with contextlib.suppress(CaptchaUnavailable):
                    verifier(stub.url(path)).verify(token, CLIENT_IP)
    assert caplog.records
    for secret in (SECRET, GOOD_TOKEN, BAD_TOKEN):
        assert secret not in caplog.text
    assert SECRET not in repr(verifier(stub.url()))


def assert_no_secrets(exc: BaseException, secret: str = SECRET) -> None:
    """Neither the exception nor anything chained to it names the secret or the token."""
    while exc is not None:
        for text in (str(exc), repr(exc)):
            assert secret not in text and GOOD_TOKEN not in text
        exc = exc.__cause__ or exc.__context__


def test_the_widgets_tell_the_forms_what_to_load():
    hcaptcha, turnstile = guestguard_captcha.register_captcha_verifiers(settings=settings_for())
    assert all(isinstance(v, CaptchaVerifier) for v in (hcaptcha, turnstile))
    assert (hcaptcha.widget.script_url, hcaptcha.widget.element_class,
            hcaptcha.widget.response_field, hcaptcha.widget.csp_sources) == (
        "https://js.hcaptcha.com/1/api.js", "h-captcha", "h-captcha-response",
        ("https://hcaptcha.com", "https://*.hcaptcha.com"))
    assert (turnstile.widget.script_url, turnstile.widget.element_class,
            turnstile.widget.response_field, turnstile.widget.csp_sources) == (
        "https://challenges.cloudflare.com/turnstile/v0/api.js", "cf-turnstile",
        "cf-turnstile-response", ("https://challenges.cloudflare.com",))


def settings_for() -> dict[str, object]:
    """The plugin's defaults, with no verifier of its own selected."""
    settings: dict[str, object] = {name: s.default for name, s in guestguard_captcha.SETTINGS.items()}
    settings["captcha.verifier"] = "disabled"
    return settings


# --- settings -------------------------------------------------------------------


def test_the_real_endpoints_and_a_five_second_timeout_are_the_defaults():
    settings = settings_for()
    assert settings["captcha.hcaptcha.verify_url"] == "https://api.hcaptcha.com/siteverify"
    assert settings["captcha.turnstile.verify_url"] == (
        "https://challenges.cloudflare.com/turnstile/v0/siteverify")
    assert settings["captcha.timeout"] == 5


@pytest.mark.parametrize("vendor", ["hcaptcha", "turnstile"])
@pytest.mark.parametrize("missing", ["site_key", "secret"])
def test_a_selected_verifier_without_its_keys_stops_startup(base_settings, vendor, missing):
    raw = {**base_settings, "captcha.verifier": vendor,
           f"captcha.{vendor}.site_key": SITE_KEY, f"captcha.{vendor}.secret": SECRET}
    del raw[f"captcha.{vendor}.{missing}"]
    env_var = f"GG_CAPTCHA_{vendor.upper()}_{missing.upper()}"
    with pytest.raises(SettingsError, match=rf"'captcha\.{vendor}\.{missing}'.*{env_var}"):
        make_config(raw, environ={})


def test_installed_but_not_selected_needs_no_keys(make_app):
    app = make_app({"captcha.verifier": "disabled"})
    assert app.app.registry["captcha.verifier"].name == "disabled"


@pytest.mark.parametrize("value", ["0", "31", "soon"])
def test_a_bad_timeout_stops_startup(base_settings, value):
    with pytest.raises(SettingsError, match="captcha.timeout"):
        make_config({**base_settings, "captcha.timeout": value}, environ={})


def test_secrets_come_from_the_environment(make_app, stub):
    app = make_app({"captcha.verifier": "turnstile", "captcha.turnstile.verify_url": stub.url()},
                   environ={"GG_CAPTCHA_TURNSTILE_SITE_KEY": SITE_KEY,
                            "GG_CAPTCHA_TURNSTILE_SECRET": SECRET})
    signup(app, GOOD_TOKEN, status=202)
    assert stub.posts[0]["secret"] == SECRET


class ImpostorPlugin:
    """A second plugin claiming the name ``turnstile``."""

    @hookimpl
    def register_captcha_verifiers(self, settings):
        return [verifier("http://127.0.0.1:9/")]


def test_two_verifiers_with_one_name_stop_startup(base_settings):
    with pytest.raises(SettingsError, match="two CAPTCHA verifiers are named 'turnstile'"):
        make_config(base_settings, environ={}, extra_plugins=[("impostor", ImpostorPlugin())])


# --- through the app -------------------------------------------------------------


@pytest.fixture
def turnstile_app(make_app, stub):
    def build(path: str = "/siteverify"):
        return make_app({"captcha.verifier": "turnstile",
                         "captcha.turnstile.site_key": SITE_KEY,
                         "captcha.turnstile.secret": SECRET,
                         "captcha.turnstile.verify_url": stub.url(path),
                         "captcha.timeout": "0.5"})
    return build


def signup(app, token: str | None, email: str = "ada@example.com", status: int = 202):
    return api_signup(app, email, name="Ada", status=status, captcha_token=token)


def test_signup_through_the_api(turnstile_app, stub):
    app = turnstile_app()
    signup(app, GOOD_TOKEN, "ada@example.com", status=202)
    assert stub.posts[-1] == {"secret": SECRET, "response": GOOD_TOKEN, "remoteip": "127.0.0.1"}
    refused = signup(app, BAD_TOKEN, "bob@example.com", status=400)
    assert refused.json["error"]["code"] == "captcha_failed"
    missing = signup(app, None, "cy@example.com", status=400)
    assert missing.json["error"]["code"] == "captcha_failed"
    assert len(stub.posts) == 2, "a missing token is refused without asking the vendor"


def test_signup_when_the_vendor_times_out(turnstile_app):
    app = turnstile_app("/slow")
    answer = signup(app, GOOD_TOKEN, status=503)
    assert answer.json["error"]["code"] == "captcha_unavailable"
    assert SECRET not in answer.text


def test_the_signup_page_shows_the_widget_and_allows_only_its_origin(turnstile_app):
    app = turnstile_app()
    page = app.get("/signup")
    html = BeautifulSoup(page.text, "html.parser")
    form = html.find("form", id="signup-form")
    widget = form.find("div", class_="cf-turnstile")
    assert widget["data-sitekey"] == SITE_KEY
    assert form.find("script", src="https://challenges.cloudflare.com/turnstile/v0/api.js")
    assert SECRET not in page.text
    policy = directives(page.headers["Content-Security-Policy"])
    for directive in ("script-src", "frame-src"):
        assert "https://challenges.cloudflare.com" in policy[directive]
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    home = app.get("/")
    assert "cloudflare" not in home.headers["Content-Security-Policy"]
    assert "cf-turnstile" not in home.text
    assert "cloudflare" not in app.get("/login").headers["Content-Security-Policy"]


def test_the_signup_form_posts_the_widgets_field(turnstile_app, stub):
    app = turnstile_app()
    fields = {"display_name": "Ada", "email": "ada@example.com",
              "password": "correct horse battery staple", "accept_policies": "on"}
    csrf = app.get("/signup").forms["signup-form"]["csrf_token"].value
    refused = app.post("/signup", {**fields, "csrf_token": csrf,
                                   "cf-turnstile-response": BAD_TOKEN}, status=400)
    assert "The CAPTCHA was not solved" in refused.text
    assert "cf-turnstile" in refused.text, "the widget is shown again"
    assert "challenges.cloudflare.com" in refused.headers["Content-Security-Policy"]
    app.post("/signup", {**fields, "csrf_token": csrf, "cf-turnstile-response": GOOD_TOKEN},
             status=303)
    assert [post["response"] for post in stub.posts] == [BAD_TOKEN, GOOD_TOKEN]


def directives(policy: str) -> dict[str, list[str]]:
    return {name: sources for name, *sources in (part.split() for part in policy.split(";"))}
