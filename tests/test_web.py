import json
import uuid

import pytest

from guestguard.errors import APIError
from guestguard.plugins import hookimpl

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


class FailingViews:
    """A plugin adding routes that fail in each way the error views handle."""

    @hookimpl
    def configure(self, config):
        config.add_route("boom_api", "/api/v1/boom")
        config.add_route("boom_html", "/boom")
        config.add_route("invalid_api", "/api/v1/invalid")
        config.add_view(self.boom, route_name="boom_api")
        config.add_view(self.boom, route_name="boom_html")
        config.add_view(self.invalid, route_name="invalid_api")

    @staticmethod
    def boom(request):
        raise RuntimeError("secret-internal-detail")

    @staticmethod
    def invalid(request):
        raise APIError(422, "validation_failed", "Some fields are invalid.",
                       fields={"email": "is not an email address"})


def test_health(app):
    response = app.get("/health")
    assert response.json == {"status": "ok"}


def test_readyz_reports_each_component(app):
    response = app.get("/readyz")
    assert response.json == {"status": "ok", "checks": {"database": "ok", "queue": "ok"}, "details": {
        "guard_networks": "address prefixes (/24, /48) and published ranges: no network database configured"}}


def test_readyz_is_503_naming_the_database_when_it_is_unreachable(make_app):
    app = make_app({"db.url": "postgresql+psycopg://nobody@127.0.0.1:1/none", "db.pool_timeout": "1"})
    response = app.get("/readyz", status=503)
    assert response.json["status"] == "unavailable"
    assert response.json["checks"]["database"].startswith("failed")
    assert response.json["checks"]["queue"] == "ok"
    assert "nobody" not in response.text


def test_readyz_names_a_schema_that_is_not_migrated(make_app, tmp_path):
    app = make_app({"db.url": f"sqlite:///{tmp_path}/empty.sqlite"})
    response = app.get("/readyz", status=503)
    assert "not migrated" in response.json["checks"]["database"]


def test_readyz_checks_redis_when_configured(make_app):
    app = make_app({"redis.url": "redis://127.0.0.1:1/0"})
    response = app.get("/readyz", status=503)
    assert response.json["checks"]["redis"].startswith("failed")


def test_sane_request_id_is_echoed(app):
    response = app.get("/health", headers={"X-Request-ID": "abc-12345.xyz"})
    assert response.headers["X-Request-ID"] == "abc-12345.xyz"


@pytest.mark.parametrize("bad", ["<script>alert(1)</script>", "a" * 200, "short", "white space here", "",
                                 "abcdefgh\n"])
def test_insane_request_id_is_replaced_not_echoed(app, bad):
    response = app.get("/health", headers={"X-Request-ID": bad})
    echoed = response.headers["X-Request-ID"]
    assert echoed != bad
    uuid.UUID(hex=echoed)


def test_request_id_is_generated_when_absent(app):
    first = app.get("/health").headers["X-Request-ID"]
    second = app.get("/health").headers["X-Request-ID"]
    assert first != second


def test_unknown_api_path_gets_the_json_404(app):
    response = app.get("/api/v1/no-such-thing", status=404)
    assert response.content_type == "application/json"
    assert response.json == {"error": {"code": "not_found", "message": "The resource was not found."}}


def test_unknown_html_path_gets_the_404_page(app):
    response = app.get("/no-such-page", status=404)
    assert response.content_type == "text/html"
    assert "Page not found" in response.text


def test_security_headers(app):
    headers = app.get("/health").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in headers


def test_hsts_in_production(make_app, tmp_path):
    app = make_app({"app.env": "production", "app.secret": "p" * 40, "notifications.email.provider": "smtp",
                    "smtp.host": "127.0.0.1", "smtp.port": "9", "smtp.security": "none",
                    "notifications.sms.provider": "",
                    "huey.url": f"sqlite:///{tmp_path}/queue.sqlite", "huey.immediate": "false",
                    "guard.stream.url": "redis://127.0.0.1:6379/3"})
    assert app.get("/health").headers["Strict-Transport-Security"].startswith("max-age=")


def test_unexpected_api_error_is_a_json_500_without_details(make_app, caplog):
    app = make_app(plugins=[("failing", FailingViews())])
    response = app.get("/api/v1/boom", status=500, headers={"X-Request-ID": "trace-me-123"})
    assert response.json["error"]["code"] == "internal_error"
    assert "secret-internal-detail" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["X-Request-ID"] == "trace-me-123"
    logged = [r for r in caplog.records if r.name == "guestguard.errors"]
    assert logged and logged[0].request_id == "trace-me-123"
    assert "secret-internal-detail" in str(logged[0].exc_info[1])


def test_unexpected_html_error_is_the_500_page(make_app):
    app = make_app(plugins=[("failing", FailingViews())])
    response = app.get("/boom", status=500)
    assert "Something went wrong" in response.text
    assert "secret-internal-detail" not in response.text


def test_api_errors_carry_code_and_fields(make_app):
    app = make_app(plugins=[("failing", FailingViews())])
    response = app.get("/api/v1/invalid", status=422)
    assert response.json == {"error": {"code": "validation_failed", "message": "Some fields are invalid.",
                                       "fields": {"email": "is not an email address"}}}


def test_a_route_matched_with_the_wrong_method_is_not_found(app):
    """Pyramid reports a predicate mismatch as 404, in each area's format."""
    assert app.post("/health", status=404).content_type == "text/html"
    assert json.loads(app.post("/api/v1/nothing", status=404).text)["error"]["code"] == "not_found"


@pytest.mark.parametrize("path, kind", [("/%ff", "text/html"), ("/api/v1/%ff", "application/json")])
def test_an_undecodable_path_is_a_400_in_the_right_format(app, path, kind):
    response = app.get(path, status=400, headers={"X-Request-ID": "bad-path-1234"})
    assert response.content_type == kind
    assert response.headers["X-Request-ID"] == "bad-path-1234"



def test_home_page_renders(app):
    page = app.get("/")
    assert "<h1>Personal invitations, honest RSVPs</h1>" in page.text
    assert 'name="viewport"' in page.text
    assert page.html.find("a", string="Create your account")["href"] == "/signup"
    assert page.html.find("a", string="Sign in")["href"] == "/login"


def test_home_page_sends_a_signed_in_host_to_the_dashboard(app, run_in_request):
    from guestguard.testing import create_user, signed_in

    run_in_request(lambda request: create_user(request, "ada@example.com"), app.app.registry)
    page = signed_in(app, run_in_request, "ada@example.com").get("/")
    assert page.html.find("a", string="Go to your dashboard")["href"] == "/dashboard"
    assert page.html.find("a", string="Create your account") is None


class FormView:
    @hookimpl
    def configure(self, config):
        config.add_route("form", "/test-form")
        config.add_view(lambda request: {"ok": True}, route_name="form", renderer="json",
                        request_method="POST")


def test_unsafe_request_without_csrf_token_is_refused(make_app):
    app = make_app(plugins=[("form", FormView())])
    response = app.post("/test-form", status=400)
    assert "This form has expired" in response.text


def test_unsafe_request_with_a_bearer_token_skips_the_cookie_csrf_check(make_app):
    app = make_app(plugins=[("form", FormView())])
    app.post("/test-form", headers={"Authorization": "Bearer anything"}, status=200)


def test_basic_credentials_do_not_skip_the_csrf_check(make_app):
    """Browsers attach cached Basic credentials cross-site on their own."""
    app = make_app(plugins=[("form", FormView())])
    app.post("/test-form", headers={"Authorization": "Basic dXNlcjpwYXNz"}, status=400)


def test_pages_without_flash_messages_set_no_cookie(app):
    assert "Set-Cookie" not in app.get("/").headers
    assert "Set-Cookie" not in app.get("/missing", status=404).headers


def test_a_json_post_needs_no_csrf_token(make_app):
    """A cross-site page cannot send a JSON body without a CORS preflight."""
    app = make_app(plugins=[("form", FormView())])
    app.post_json("/test-form", {"a": 1}, status=200)


def test_a_text_plain_post_still_needs_the_token(make_app):
    app = make_app(plugins=[("form", FormView())])
    app.post("/test-form", '{"a": 1}', content_type="text/plain", status=400)


def test_redirects_name_the_base_url_whatever_host_the_request_claims(app):
    for host in ("evil.example", "guestguard.test.evil.example", "localhost:8080"):
        response = app.get("/dashboard", headers={"Host": host}, status=302)
        assert response.location == "http://guestguard.test/login?next=%2Fdashboard"


def test_pages_for_someone_signed_in_are_never_stored(app, run_in_request):
    from guestguard.testing import create_user, signed_in

    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    browser = signed_in(app, run_in_request, "ada@example.com")
    for path in ("/", "/dashboard", "/account", "/privacy"):
        assert browser.get(path).headers["Cache-Control"] == "no-store", path
    assert "no-store" not in browser.get("/static/site.css").headers.get("Cache-Control", "")
    assert "no-store" not in app.get("/privacy").headers.get("Cache-Control", "")


@pytest.mark.parametrize("reloading", [False, True], ids=["production: found once", "reloading: edits show"])
def test_a_views_template_is_looked_up_once_per_process_unless_templates_reload(tmp_path, reloading):
    from types import SimpleNamespace

    import jinja2

    from guestguard.web import templates_found_once

    page = tmp_path / "page.jinja2"
    page.write_text("first {{ n }}")
    loads = []

    class CountingLoader(jinja2.FileSystemLoader):
        def get_source(self, environment, template):
            loads.append(template)
            return super().get_source(environment, template)

    env = jinja2.Environment(loader=CountingLoader(str(tmp_path)), auto_reload=reloading, cache_size=0, autoescape=True)
    make = templates_found_once(env)
    info = SimpleNamespace(name="page.jinja2", package=None)
    assert make(info)({"n": 1}, {}) == "first 1"
    page.write_text("second {{ n }}")
    # Renderers are made anew for many renders: the template is kept by name.
    assert make(info)({"n": 2}, {}) == ("second 2" if reloading else "first 2")
    assert len(loads) == (2 if reloading else 1)


def test_every_request_is_made_from_one_class_holding_the_request_properties(app):
    """Pyramid would make a class for each request to hold the properties
    (``ctx``, ``db``, ``tm``...): made once at startup instead."""
    from pyramid.scripting import prepare

    made = []
    for _ in range(2):
        with prepare(registry=app.app.registry) as env:
            request = env["request"]
            assert request.ctx is request.ctx and request.db is request.ctx.db and request.tm is not None
            made.append(type(request))
    assert made[0] is made[1]
