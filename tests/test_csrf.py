"""When an unsafe request needs a CSRF token (docs/architecture.md): always
for a browser form carrying the login cookie, API or not; never for a
bearer token, a JSON body or PUT/PATCH/DELETE (a cross-site page cannot
send those without a CORS preflight); not for an API call that carries no
cookie at all."""
import pytest

from guestguard.testing import create_user, signed_in

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


@pytest.fixture
def browser(app, run_in_request):
    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    return signed_in(app, run_in_request, "ada@example.com")


def csrf_refused(response) -> bool:
    return response.status_int == 400 and (
        response.content_type != "application/json" or response.json["error"]["code"] == "csrf_failed")


def test_a_form_post_to_the_api_with_the_login_cookie_needs_the_token(browser):
    response = browser.post("/api/v1/me/accept-policies", {"x": "1"}, status="*")
    assert csrf_refused(response)


def test_a_form_post_to_the_api_without_any_cookie_is_judged_without_one(app):
    response = app.post("/api/v1/auth/login", {"email": "ada@example.com"}, status="*")
    assert not csrf_refused(response)
    assert response.status_int == 415  # the API reads JSON


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_preflighted_methods_need_no_token(browser, method):
    response = browser.request("/api/v1/me/sessions/00000000-0000-0000-0000-000000000000", method=method,
                               expect_errors=True)
    assert not csrf_refused(response)


def test_a_json_body_needs_no_token(browser):
    response = browser.post_json("/api/v1/me/accept-policies", {}, status="*")
    assert not csrf_refused(response)
    assert response.status_int == 200


def test_a_cookie_authenticated_page_form_needs_the_token(browser):
    assert csrf_refused(browser.post("/account/profile", {"display_name": "Ada L"}, status="*"))


def test_a_bearer_token_needs_no_csrf_token_but_basic_credentials_do(app, run_in_request, browser):
    response = app.post("/account/profile", {"display_name": "Ada L"}, headers={"Authorization": "Bearer x"},
                        status="*")
    assert not csrf_refused(response)
    response = app.post("/login", {"email": "ada@example.com", "password": "x"},
                        headers={"Authorization": "Basic dXNlcjpwYXNz"}, status="*")
    assert csrf_refused(response)


# --- the token belongs to the login ------------------------------------------


def sign_in_by_form(app, email="ada@example.com"):
    from guestguard.testing import TEST_PASSWORD, csrf

    form = app.get("/login")
    return app.post("/login", {"email": email, "password": TEST_PASSWORD, "csrf_token": csrf(form)}, status=303)


def profile_token(app) -> str:
    from guestguard.testing import csrf

    return csrf(app.get("/account"))


def test_the_token_changes_at_login_and_at_logout(make_app, run_in_request):
    from guestguard.testing import csrf

    app = make_app()
    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    before = csrf(app.get("/login"))
    sign_in_by_form(app)
    first = profile_token(app)
    assert first != before
    app.post("/logout", {"csrf_token": first}, status=303)
    sign_in_by_form(app)
    second = profile_token(app)
    assert second not in (first, before)
    # The first login's token is no good in the second.
    assert csrf_refused(app.post("/account/profile", {"display_name": "Eve", "csrf_token": first}, status="*"))
    app.post("/account/profile", {"display_name": "Ada L", "csrf_token": second}, status=303)


def test_a_planted_cookie_session_cannot_carry_a_known_token_into_a_login(make_app, run_in_request):
    """An attacker who can set cookies for the site (a sibling subdomain can)
    plants their own signed cookie session, whose token they know, next to
    Ada's login: the token does not work for her login."""
    from guestguard.testing import csrf

    app = make_app()
    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    run_in_request(lambda r: create_user(r, "mallory@example.com", "Mallory"), app.app.registry)
    attacker = make_app()
    known = csrf(attacker.get("/login"))
    planted = attacker.cookies["gg_flash"]
    sign_in_by_form(app)
    app.set_cookie("gg_flash", planted)
    forged = app.post("/account/profile", {"display_name": "Pwned", "csrf_token": known}, status="*")
    assert csrf_refused(forged)
    assert "Pwned" not in app.get("/account").text


def test_a_new_token_asked_for_through_pyramid_is_the_logins_own_or_a_fresh_one(app, run_in_request):
    """``pyramid.csrf.new_csrf_token``, which a plugin may call: signed in
    through the cookie, it is the login's token (the one pages show, which
    stays the same); before signing in, a fresh token that the page then
    shows and the check then takes."""
    from pyramid.csrf import check_csrf_token, get_csrf_token, new_csrf_token
    from pyramid.scripting import prepare

    from guestguard.accounts.models import WEB
    from guestguard.accounts.services import login
    from guestguard.testing import TEST_PASSWORD
    from guestguard.web import blank_request

    registry = app.app.registry
    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), registry)
    cookie = run_in_request(lambda r: login(r.ctx, email="ada@example.com", password=TEST_PASSWORD, kind=WEB),
                            registry).cookie_token

    def tokens(headers):
        request = blank_request(registry, "/account", method="POST", headers=headers)
        with prepare(request=request, registry=registry) as env:
            request = env["request"]
            with request.tm:
                shown = get_csrf_token(request)
                fresh = new_csrf_token(request)
                request.POST["csrf_token"] = fresh
                return shown, fresh, get_csrf_token(request), check_csrf_token(request, raises=False)

    shown, fresh, after, accepted = tokens({"Cookie": f"gg_session={cookie}"})
    assert shown == fresh == after and accepted
    shown, fresh, after, accepted = tokens({})
    assert fresh != shown and after == fresh and accepted
