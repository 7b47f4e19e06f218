"""HTML basics: Jinja2 from templates/, static files, security headers."""
from __future__ import annotations

from pathlib import Path

from pyramid.session import SignedCookieSessionFactory
from pyramid.view import view_config

from guestguard.keys import derive_key

CSP = "; ".join((
    "default-src 'self'",
    "img-src 'self' data:",
    "style-src 'self'",
    "script-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
HSTS = "max-age=63072000; includeSubDomains"


def default_templates_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "templates"


def security_headers_tween_factory(handler, registry):
    production = registry.settings["app.env"] == "production"

    def tween(request):
        response = handler(request)
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        if production:
            headers.setdefault("Strict-Transport-Security", HSTS)
        return response

    return tween


def csrf_applies(request) -> bool:
    """Cookie-authenticated requests need a CSRF token. A bearer token is the
    only credential of a request that carries one (the cookie is ignored),
    and a browser cannot attach it cross-site without CORS approval. Basic
    credentials, which browsers do attach on their own, get no exemption."""
    authorization = request.authorization
    return authorization is None or authorization.authtype.lower() != "bearer"


@view_config(route_name="home", renderer="home.jinja2", request_method="GET")
def home(request):
    return {}


def includeme(config) -> None:
    settings = config.get_settings()
    config.set_session_factory(SignedCookieSessionFactory(
        derive_key(settings, "session-cookie").hex(),
        cookie_name="gg_flash",
        secure=settings["app.env"] == "production",
        httponly=True,
        samesite="Lax",
        hashalg="sha512",
        # The cookie holds flash messages and the CSRF token: a form left open
        # for an afternoon must still submit.
        timeout=12 * 3600,
        reissue_time=3600,
    ))
    config.set_default_csrf_options(require_csrf=True, callback=csrf_applies)
    config.add_route("home", "/")
    config.scan(__name__)
    config.include("pyramid_jinja2")
    config.add_jinja2_search_path(settings["app.templates_dir"], name=".jinja2")
    config.add_jinja2_renderer(".jinja2")
    config.commit()
    env = config.get_jinja2_environment(".jinja2")
    env.globals["app_env"] = settings["app.env"]
    config.add_static_view("static", "guestguard:static", cache_max_age=3600)
    config.add_tween("guestguard.web.security_headers_tween_factory",
                     under="guestguard.audit.request_id.request_id_tween_factory")
