"""HTML basics: Jinja2 from templates/, static files, security headers."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel
from pyramid.csrf import get_csrf_token
from pyramid.events import BeforeRender, NewRequest, subscriber
from pyramid.session import SignedCookieSessionFactory
from pyramid.view import view_config

from guestguard.errors import APIError, is_api_request
from guestguard.keys import derive_key
from guestguard.timefmt import add_filters
from guestguard.validation import parse_form

CSP_DIRECTIVES: tuple[tuple[str, str], ...] = (
    ("default-src", "'self'"),
    ("img-src", "'self' data:"),
    ("style-src", "'self'"),
    ("script-src", "'self'"),
    ("object-src", "'none'"),
    ("base-uri", "'none'"),
    ("form-action", "'self'"),
    ("frame-ancestors", "'none'"),
)


def content_security_policy(extra: Mapping[str, Iterable[str]] | None = None) -> str:
    """The site's policy, with ``extra`` sources added to the named directives
    (a directive the policy lacks starts from ``'self'``). For the one page
    that needs a third-party script; every other page gets ``CSP``."""
    directives = {name: sources.split() for name, sources in CSP_DIRECTIVES}
    for name, sources in (extra or {}).items():
        current = directives.setdefault(name, ["'self'"])
        current.extend(source for source in sources if source not in current)
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


CSP = content_security_policy()
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
        if is_api_request(request):
            # API answers carry tokens and personal data: never cached.
            headers.setdefault("Cache-Control", "no-store")
        if production:
            headers.setdefault("Strict-Transport-Security", HSTS)
        return response

    return tween


SESSION_COOKIE = "gg_session"
# A browser sends these cross-site only after a CORS preflight our CORS
# policy answers, so they cannot be forged by another site's page.
PREFLIGHTED_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
PREFLIGHTED_TYPES = frozenset({"application/json"})


def csrf_applies(request) -> bool:
    """Whether an unsafe request must carry a CSRF token.

    Not when it authenticates with a bearer token (the cookie is then
    ignored), nor when a cross-site page could not have sent it without a
    preflight (JSON bodies, PUT/PATCH/DELETE). A form-like POST always
    needs one, even with Basic credentials, which browsers attach unasked."""
    authorization = request.authorization
    if authorization is not None and authorization.authtype.lower() == "bearer":
        return False
    if request.method in PREFLIGHTED_METHODS or request.content_type in PREFLIGHTED_TYPES:
        return False
    # The API sets no cookies: without a session cookie there is nothing
    # ambient to abuse. HTML forms are always checked (login CSRF).
    if is_api_request(request) and SESSION_COOKIE not in request.cookies:
        return False
    return True


@subscriber(BeforeRender)
def add_csrf_token(event) -> None:
    """Every template, the layout's sign-out button included, can call
    ``csrf_token()``; only pages that do start the session cookie."""
    request = event.get("request")
    if request is not None:
        event.setdefault("csrf_token", lambda: get_csrf_token(request))


@view_config(route_name="home", renderer="home.jinja2", request_method="GET")
def home(request):
    return {}


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def guard_body(event) -> None:
    """Refuse, before anything reads it, a body over ``http.max_body_bytes``;
    and answer 400, not 500, to a form body that cannot be parsed (the CSRF
    check and the views read forms)."""
    request = event.request
    limit = request.registry.settings["http.max_body_bytes"]
    if request.content_length is not None and request.content_length > limit:
        raise APIError(413, "too_large", f"The body is larger than {limit} bytes.", limit=limit)
    try:
        query = request.GET
    except UnicodeDecodeError:
        raise APIError(400, "bad_request", "The query string is not valid UTF-8.") from None
    if any("\x00" in value for value in query.values()):
        raise APIError(400, "bad_request", "The query string holds a NUL character.")
    if request.method in ("POST", "PUT", "PATCH") and request.content_type in FORM_TYPES:
        try:
            form = request.POST
        except Exception:
            raise APIError(400, "bad_request", "The form data could not be read.") from None
        if any(isinstance(value, str) and "\x00" in value for value in form.values()):
            raise APIError(400, "bad_request", "The form data holds a NUL character.")


# --- helpers for pages -----------------------------------------------------------

FORM = "form"  # the errors key of a refusal that belongs to no single field


def safe_next(value: str | None) -> str | None:
    """A same-site path to go on to, or None. Browsers treat ``\\`` as ``/``
    and drop tabs and newlines, so anything beyond printable ASCII is out."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return None
    if any(not ("!" <= char <= "~") or char == "\\" for char in value):
        return None
    parts = urlsplit(value)
    return None if parts.scheme or parts.netloc else value


def redirect(request, location: str):
    """See Other, keeping the cookies already set on request.response."""
    response = request.response
    response.status = 303
    response.location = location
    return response


def private(request, status: int = 200) -> None:
    """Pages with a CSRF token, personal data or a token in the address:
    never cached, and the address is never sent on as a referrer."""
    request.response.status = status
    request.response.cache_control.no_store = True
    request.response.headers["Referrer-Policy"] = "no-referrer"


def sentence(field: str, message: str, labels: dict[str, str] | None = None) -> str:
    label = (labels or {}).get(field)
    if label and message[:1].islower():
        message = f"{label} {message}"
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "?", "!")) else message + "."


def read_form(request, schema: type[BaseModel], fields: tuple[str, ...],
              checkboxes: tuple[str, ...] = (), labels: dict[str, str] | None = None,
              ) -> tuple[BaseModel | None, dict[str, str]]:
    """The form validated, errors as sentences in the order of the form."""
    data, errors = parse_form(request, schema, fields, checkboxes)
    order = {name: index for index, name in enumerate(fields + checkboxes)}
    found = sorted(errors.items(), key=lambda item: order.get(item[0], len(order)))
    return data, {name: sentence(name, message, labels) for name, message in found}


def echo(request, *fields: str) -> dict[str, str]:
    """What the user typed, for re-rendering a form (never passwords)."""
    return {name: request.POST.get(name, "") for name in fields}


def flash(request, message: str) -> None:
    request.session.flash(message, "success")


def add_routes(config, routes) -> None:
    """Config directive: add an area's routes, ``(name, pattern, factory)``
    each (the factory None for a route outside the resource tree)."""
    for name, pattern, factory in routes:
        config.add_route(name, pattern, factory=factory)


def includeme(config) -> None:
    settings = config.get_settings()
    config.add_directive("add_routes", add_routes)
    config.add_subscriber(guard_body, NewRequest)
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
    add_filters(env)  # {{ guest.opened_at|when(event.timezone) }}, {{ event|event_span }}, ...
    config.add_static_view("static", "guestguard:static", cache_max_age=3600)
    config.add_tween("guestguard.web.security_headers_tween_factory",
                     under="guestguard.audit.request_id.request_id_tween_factory")
