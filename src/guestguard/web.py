"""HTML basics: Jinja2 from templates/, static files, security headers."""
from __future__ import annotations

from pathlib import Path

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


def includeme(config) -> None:
    settings = config.get_settings()
    config.include("pyramid_jinja2")
    config.add_jinja2_search_path(settings["app.templates_dir"], name=".jinja2")
    config.add_jinja2_renderer(".jinja2")
    config.commit()
    env = config.get_jinja2_environment(".jinja2")
    env.globals["app_env"] = settings["app.env"]
    config.add_static_view("static", "guestguard:static", cache_max_age=3600)
    config.add_tween("guestguard.web.security_headers_tween_factory",
                     under="guestguard.audit.request_id.request_id_tween_factory")
