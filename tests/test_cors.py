import uuid

import pytest
from pyramid.events import NewRequest
from pyramid.interfaces import ITweens

from guestguard.cors import parse_origin
from guestguard.plugins import hookimpl
from guestguard.settings import SettingsError

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


ORIGINS = "https://app.example, https://admin.example:8443"
APP = "https://app.example"
ADMIN = "https://admin.example:8443"
EVIL = "https://evil.example"


def preflight_headers(origin, method="DELETE", headers="Authorization, Content-Type"):
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers}


def vary(response):
    return [v.strip() for v in response.headers.get("Vary", "").split(",") if v.strip()]


class ApiViews:
    """A plugin adding API views that fail, set their own Vary, and a
    NewRequest subscriber that counts what reaches routing."""

    def __init__(self):
        self.routed = []

    @hookimpl
    def configure(self, config):
        config.add_subscriber(lambda event: self.routed.append(event.request.path), NewRequest)
        config.add_route("cors_boom", "/api/v1/cors-boom")
        config.add_route("cors_thing", "/api/v1/cors-things/{thing_id}")
        config.add_view(self.boom, route_name="cors_boom")
        config.add_view(self.thing, route_name="cors_thing", renderer="json")

    @staticmethod
    def boom(request):
        raise RuntimeError("kaput")

    @staticmethod
    def thing(request):
        request.response.vary = ("Accept-Encoding",)
        return {"id": request.matchdict["thing_id"]}


@pytest.fixture
def views():
    return ApiViews()


@pytest.fixture
def cors_app(make_app, views):
    return make_app({"cors.allowed_origins": ORIGINS, "cors.max_age": "900"},
                    plugins=[("cors-views", views)])


# --- preflight ---------------------------------------------------------------


@pytest.mark.parametrize("origin", [APP, ADMIN])
def test_preflight_from_a_listed_origin_is_approved(cors_app, origin):
    response = cors_app.options("/api/v1/me/sessions/" + str(uuid.uuid4()),
                                headers=preflight_headers(origin), status=204)
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == origin
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["Access-Control-Allow-Methods"] == "GET, POST, PUT, PATCH, DELETE"
    assert headers["Access-Control-Allow-Headers"] == \
        "Authorization, Content-Type, X-CSRF-Token, X-Request-ID, Idempotency-Key"
    assert headers["Access-Control-Max-Age"] == "900"
    assert "Origin" in vary(response)
    assert "X-Request-ID" in headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert response.body == b""
    assert "Content-Type" not in headers


def test_preflight_is_answered_for_routes_that_do_not_exist_too(cors_app):
    cors_app.options("/api/v1/workspaces/abc/members/def", headers=preflight_headers(APP), status=204)


def test_preflight_never_reaches_routing_transaction_or_session(cors_app, views):
    response = cors_app.options(
        "/api/v1/me", headers={**preflight_headers(APP, "PATCH"),
                               "Cookie": "gg_session=whatever; gg_flash=whatever"}, status=204)
    assert views.routed == []
    assert "Set-Cookie" not in response.headers
    # The tween sits above pyramid_tm: an answered preflight opens no transaction.
    names = [name for name, _ in cors_app.app.registry.queryUtility(ITweens).implicit()]
    assert names.index("guestguard.cors.cors_tween_factory") < names.index("pyramid_tm.tm_tween_factory")
    assert names.index("guestguard.web.security_headers_tween_factory") < \
        names.index("guestguard.cors.cors_tween_factory")


@pytest.mark.parametrize("origin", [EVIL, "null", "https://app.example.evil.example",
                                    "http://app.example", "https://app.example:8443"])
def test_preflight_from_an_unlisted_origin_is_refused(cors_app, origin):
    response = cors_app.options("/api/v1/me", headers=preflight_headers(origin), status=403)
    assert response.content_type == "application/json"
    assert response.json["error"]["code"] == "cors_origin_not_allowed"
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    assert "Origin" in vary(response)


def test_preflight_is_refused_when_no_origin_is_listed(app):
    response = app.options("/api/v1/me", headers=preflight_headers(APP), status=403)
    assert response.json["error"]["code"] == "cors_origin_not_allowed"


def test_html_paths_are_not_cors_handled(cors_app, views):
    response = cors_app.options("/login", headers=preflight_headers(APP), expect_errors=True)
    assert response.status_int != 204
    assert response.content_type == "text/html"
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    assert views.routed == ["/login"]


def test_options_without_request_method_is_not_a_preflight(cors_app, views):
    cors_app.options("/api/v1/me", headers={"Origin": APP}, expect_errors=True)
    assert views.routed == ["/api/v1/me"]


# --- actual requests ---------------------------------------------------------


def test_non_api_paths_get_no_cors_headers(cors_app):
    response = cors_app.get("/health", headers={"Origin": APP})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" not in vary(response)


@pytest.mark.parametrize("origin", [APP, ADMIN])
def test_api_404_for_a_listed_origin_carries_the_headers(cors_app, origin):
    response = cors_app.get("/api/v1/no-such-thing", headers={"Origin": origin}, status=404)
    assert response.json["error"]["code"] == "not_found"
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    exposed = [h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")]
    assert {"X-Request-ID", "Retry-After", "RateLimit", "RateLimit-Policy", "Idempotent-Replayed"} <= set(exposed)
    assert "Origin" in vary(response)


def test_api_401_and_500_for_a_listed_origin_carry_the_headers(cors_app):
    unauthorized = cors_app.get("/api/v1/me", headers={"Origin": APP}, status=401)
    assert unauthorized.json["error"]["code"] == "unauthorized"
    failed = cors_app.get("/api/v1/cors-boom", headers={"Origin": APP}, status=500)
    assert failed.json["error"]["code"] == "internal_error"
    for response in (unauthorized, failed):
        assert response.headers["Access-Control-Allow-Origin"] == APP
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert "Origin" in vary(response)


def test_vary_is_appended_not_replaced(cors_app):
    response = cors_app.get("/api/v1/cors-things/42", headers={"Origin": APP})
    assert response.json == {"id": "42"}
    assert vary(response) == ["Accept-Encoding", "Origin"]
    assert response.headers["Access-Control-Allow-Origin"] == APP


@pytest.mark.parametrize("origin", [EVIL, "null", APP + "/", "HTTPS://APP.EXAMPLE"])
def test_unlisted_origin_gets_no_cors_headers(cors_app, origin):
    response = cors_app.get("/api/v1/cors-things/42", headers={"Origin": origin})
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    assert vary(response) == ["Accept-Encoding", "Origin"]


def test_api_request_without_origin_gets_no_cors_headers_but_varies(cors_app):
    response = cors_app.get("/api/v1/no-such-thing", status=404)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in vary(response)


# --- settings ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["https://a.example https://b.example:8443",
                                   "https://a.example,https://b.example:8443",
                                   " https://a.example ,\n https://b.example:8443 "])
def test_origins_may_be_separated_by_commas_or_spaces(make_app, value):
    app = make_app({"cors.allowed_origins": value})
    for origin in ("https://a.example", "https://b.example:8443"):
        response = app.options("/api/v1/me", headers=preflight_headers(origin), status=204)
        assert response.headers["Access-Control-Allow-Origin"] == origin


def test_origins_can_come_from_the_environment(make_app):
    app = make_app(environ={"GG_CORS_ALLOWED_ORIGINS": "https://env.example"})
    app.options("/api/v1/me", headers=preflight_headers("https://env.example"), status=204)


@pytest.mark.parametrize("bad", ["https://x.example/path", "*", "https://*.example", "ftp://x",
                                 "https://x.example/", "null", "x.example", "https://",
                                 "https://user@x.example", "https://x.example?a=1",
                                 "https://x.example:0", "https://x.example:99999",
                                 "https://x.example:443", "http://x.example:80",
                                 "https://X.example", "HTTPS://x.example"])
def test_bad_origins_stop_startup_naming_the_setting_and_value(make_app, bad):
    with pytest.raises(SettingsError) as raised:
        make_app({"cors.allowed_origins": f"https://fine.example {bad}"})
    message = str(raised.value)
    assert "cors.allowed_origins" in message
    assert repr(bad) in message
    assert "fine.example" not in message


@pytest.mark.parametrize("good", ["https://app.example", "http://localhost:6543", "http://127.0.0.1:8080",
                                  "http://[::1]:8080", "https://a-b.c.example:65535"])
def test_good_origins(good):
    assert parse_origin(good) == good
