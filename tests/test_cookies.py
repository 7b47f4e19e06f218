"""The two cookies the site sets, attribute by attribute, in development and

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")

in production: ``gg_session`` (the login) and ``gg_flash`` (the signed
session holding the CSRF token and flash messages). Both are HttpOnly,
SameSite=Lax and site-wide; Secure in production only (development serves
plain http on localhost). The login lasts ``auth.session_ttl_days``; the
flash cookie is a browser-session cookie whose content the server honours
for 12 idle hours."""
import datetime as dt

import pytest
import time_machine
import webtest

from guestguard.testing import TEST_PASSWORD, create_user, new_client

PRODUCTION = {"app.env": "production", "app.secret": "s" * 40, "app.base_url": "https://guestguard.test",
              # the console provider sends nothing, so production refuses it
              "notifications.email.provider": "smtp", "smtp.host": "127.0.0.1", "smtp.port": "9",
              "smtp.security": "none", "notifications.sms.provider": ""}
DEVELOPMENT = {"app.env": "development"}


def cookies_set(response) -> dict[str, dict[str, str]]:
    """Each Set-Cookie of ``response``: its attributes, names lower-cased,
    the value under ``value``."""
    found = {}
    for header in response.headers.getall("Set-Cookie"):
        name_value, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = name_value.partition("=")
        parsed = {"value": value}
        for attribute in attributes:
            key, _, setting = attribute.partition("=")
            parsed[key.lower()] = setting
        found[name] = parsed
    return found


def browser(app, secure: bool) -> webtest.TestApp:
    environ = {}
    if secure:  # over https Pyramid's CSRF check also wants the request's origin
        environ["wsgi.url_scheme"] = "https"
        environ["HTTP_ORIGIN"] = "https://guestguard.test"
    return new_client(app.app, **environ)


def sign_in(client):
    page = client.get("/login")
    token = page.html.find("input", {"name": "csrf_token"})["value"]
    response = client.post("/login", {"email": "ada@example.com", "password": TEST_PASSWORD,
                                      "csrf_token": token}, status=303)
    return page, response


@pytest.fixture(params=["development", "production"])
def site(request, make_app, run_in_request, tmp_path):
    production = request.param == "production"
    settings = DEVELOPMENT
    if production:  # production wants a queue its workers share; nothing here reaches the stream's Redis
        queue = tmp_path / "queue.sqlite"
        settings = {**PRODUCTION, "huey.url": f"sqlite:///{queue}", "huey.immediate": "false",
                    "guard.stream.url": "redis://127.0.0.1:6379/3"}
    app = make_app(settings=settings)
    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    return app, production


def test_the_session_cookie_is_http_only_same_site_lax_site_wide_and_secure_in_production(site):
    app, production = site
    _, response = sign_in(browser(app, secure=production))
    cookie = cookies_set(response)["gg_session"]
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert ("secure" in cookie) is production
    assert "domain" not in cookie  # this host only
    ttl = app.app.registry.settings["auth.session_ttl_days"] * 86400
    assert ttl - 60 <= int(cookie["max-age"]) <= ttl


def test_the_flash_cookie_is_http_only_same_site_lax_site_wide_and_secure_in_production(site):
    app, production = site
    page, _ = sign_in(browser(app, secure=production))
    cookie = cookies_set(page)["gg_flash"]
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert ("secure" in cookie) is production
    assert "domain" not in cookie
    assert "max-age" not in cookie and "expires" not in cookie  # gone when the browser closes


def test_signing_out_clears_the_session_cookie_site_wide(site, run_in_request):
    app, production = site
    client = browser(app, secure=production)
    sign_in(client)
    page = client.get("/logout")
    token = page.html.find("input", {"name": "csrf_token"})["value"]
    response = client.post("/logout", {"csrf_token": token}, status=303)
    cookie = cookies_set(response)["gg_session"]
    assert cookie["value"] in ("", '""')
    assert cookie["path"] == "/"
    assert cookie.get("max-age") == "0"


def test_the_session_cookie_value_is_a_fresh_256_bit_token_per_login(site):
    app, production = site
    first = cookies_set(sign_in(browser(app, secure=production))[1])["gg_session"]["value"]
    second = cookies_set(sign_in(browser(app, secure=production))[1])["gg_session"]["value"]
    assert first != second
    assert len(first) >= 43


def test_a_form_still_submits_after_eleven_idle_hours_but_not_after_thirteen(make_app, run_in_request):
    app = make_app(settings=DEVELOPMENT)
    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    start = dt.datetime(2030, 1, 1, 9, tzinfo=dt.UTC)
    for hours, status in ((11, 303), (13, 400)):
        client = browser(app, secure=False)
        with time_machine.travel(start, tick=False):
            token = client.get("/login").html.find("input", {"name": "csrf_token"})["value"]
        with time_machine.travel(start + dt.timedelta(hours=hours), tick=False):
            client.post("/login", {"email": "ada@example.com", "password": TEST_PASSWORD, "csrf_token": token},
                        status=status)
