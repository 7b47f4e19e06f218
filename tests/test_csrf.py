"""When an unsafe request needs a CSRF token (docs/architecture.md): always
for a browser form carrying the login cookie, API or not; never for a
bearer token, a JSON body or PUT/PATCH/DELETE (a cross-site page cannot
send those without a CORS preflight); not for an API call that carries no
cookie at all."""
import pytest

from guestguard.testing import create_user, signed_in


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
