"""HTML basics: Jinja2 from templates/, static files, security headers."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyramid_jinja2
from pydantic import BaseModel, ValidationError
from pyramid.csrf import get_csrf_token
from pyramid.events import BeforeRender, subscriber
from pyramid.interfaces import PHASE3_CONFIG, IRequestExtensions, IRequestFactory
from pyramid.request import Request
from pyramid.session import SignedCookieSessionFactory
from pyramid.view import view_config
from pyramid_jinja2 import Jinja2RendererFactory

from guestguard import timefmt
from guestguard.csrf import LoginBoundCSRF
from guestguard.errors import Refusal, is_api_request
from guestguard.keys import derive_key
from guestguard.timefmt import add_filters
from guestguard.validation import MESSAGES, field_errors

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
# Every response's, unless it set its own (a page's policy with its style's hash).
SECURITY_HEADERS = (("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                    ("Referrer-Policy", "same-origin"), ("X-Frame-Options", "DENY"))


def default_templates_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "templates"


def security_headers_tween_factory(handler, registry):
    production = registry.settings["app.env"] == "production"
    origin = origin_of(registry.settings["app.base_url"])

    defaults = [*SECURITY_HEADERS, *([("Strict-Transport-Security", HSTS)] if production else [])]

    def tween(request):
        response = handler(request)
        headerlist = response.headerlist
        # Each header the response has not set itself, with one look at
        # those it has (WebOb's setdefault reads all of them every time).
        present = {name.lower() for name, _ in headerlist}
        headerlist.extend(header for header in defaults if header[0].lower() not in present)
        if is_api_request(request):
            # API answers carry tokens and personal data: never cached.
            if "cache-control" not in present:
                headerlist.append(("Cache-Control", "no-store"))
        # The raw PATH_INFO: an address that is not UTF-8 gets these headers too.
        elif SESSION_COOKIE in request.cookies and not request.environ.get("PATH_INFO", "").startswith(STATIC_PREFIX):
            # A page for someone signed in is theirs alone: no shared cache,
            # nor the browser's back button after sign-out, may keep it.
            response.headers["Cache-Control"] = "no-store"
        if response.location:
            response.location = from_base_url(response.location, request, origin)
        return response

    return tween


STATIC_PREFIX = "/static/"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def from_base_url(location: str, request, origin: str) -> str:
    """A redirect within the site points at ``app.base_url``, never at the
    Host header the request came with (which anyone can set)."""
    parts = urlsplit(location)
    if not parts.scheme and not parts.netloc and location.startswith("/"):
        return origin + location
    if f"{parts.scheme}://{parts.netloc}" == request.host_url:
        return origin + location[len(request.host_url):]
    return location


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
    return not (is_api_request(request) and SESSION_COOKIE not in request.cookies)


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
    response = request.response
    # Set only when they change: WebOb's status and Cache-Control setters
    # parse what they are given, a guest's page at every view.
    if response.status_code != status:
        response.status = status
    if "Cache-Control" in response.headers:
        response.cache_control.no_store = True
    else:
        response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"


# --- reading HTML forms ------------------------------------------------------------
#
# Every page's form is declared once (its fields, labels and what a blank
# means) and read by Form.read: the values go to the area's pydantic model,
# the problems come back as sentences in the order of the form.

TEXT, PASSWORD, CHECKBOX, LIST, DATETIME = "text", "password", "checkbox", "list", "datetime"
KEEP, OMIT, NONE = "keep", "omit", "none"
NOT_A_TIME = "must be a date and time, like 2030-06-21 19:00"


@dataclass(frozen=True)
class Field:
    """One field of a form.

    ``kind``: ``text`` (trimmed), ``password`` (taken as typed, never echoed
    back), ``checkbox`` (ticked or not: a bool), ``list`` (comma-separated,
    blanks dropped) or ``datetime`` (a datetime-local input: wall-clock time
    in the form's zone, made aware). ``blank``: what an empty value means —
    ``keep`` the empty string, ``omit`` the field (the model's default) or
    ``none``: None, or left out when the model requires the field, so it
    reads "is required". ``choice``: the one message for any problem with a
    field whose value comes from a list (pydantic's wording about literals
    helps nobody)."""
    name: str
    label: str | None = None
    kind: str = TEXT
    blank: str = KEEP
    choice: str | None = None


def sentence(field: str, message: str, labels: dict[str, str] | None = None) -> str:
    """A message as a sentence: "is required" under "Name" is "Name is required."."""
    label = (labels or {}).get(field)
    if label and message[:1].islower():
        message = f"{label} {message}"
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "?", "!")) else message + "."


class Form:
    """A page's form: the model it fills and its fields, in page order.

    ``absent_as_blank``: a field missing from the body reads as blank (forms
    whose every field is always sent); otherwise it is left out, so a
    required one reads "is required". ``zone_field`` names the field whose
    time zone the datetime fields are in."""

    def __init__(self, schema: type[BaseModel], *fields: Field, absent_as_blank: bool = False,
                 zone_field: str | None = None):
        self.schema = schema
        self.fields = fields
        self.by_name = {field.name: field for field in fields}
        self.labels = {field.name: field.label for field in fields if field.label}
        self.absent_as_blank = absent_as_blank
        self.zone_field = zone_field

    def using(self, schema: type[BaseModel]) -> Form:
        """The same fields filling another model (editing rather than creating)."""
        return Form(schema, *self.fields, absent_as_blank=self.absent_as_blank, zone_field=self.zone_field)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.by_name)

    def word(self, name: str, message: str) -> str:
        """A problem with ``name`` as the page shows it."""
        field = self.by_name.get(name)
        if field is not None and field.choice:
            return field.choice
        # A check across fields names the other field: by its label here.
        for other in self.fields:
            if "_" in other.name and other.label and other.name in message:
                label = other.label if other.label[1:2].isupper() else other.label[:1].lower() + other.label[1:]
                message = re.sub(rf"\b{re.escape(other.name)}\b", f"the {label}", message)
        return sentence(name, message, self.labels)

    def rank(self, errors: dict[str, str]) -> dict[str, str]:
        order = {name: index for index, name in enumerate(self.names)}
        return dict(sorted(errors.items(), key=lambda item: order.get(item[0], len(order))))

    def typed(self, request) -> dict[str, Any]:
        """What was typed, to fill the form again (never passwords)."""
        typed: dict[str, Any] = {}
        for field in self.fields:
            if field.kind == CHECKBOX:
                typed[field.name] = field.name in request.POST
            elif field.kind != PASSWORD:
                typed[field.name] = request.POST.get(field.name, "")
        return typed

    def _zone(self, request, zone: str | None) -> str | None:
        if self.zone_field:
            named = request.POST.get(self.zone_field, "").strip()
            try:
                timefmt.zone(named)
            except timefmt.UnknownZone:
                pass  # the zone field has its own error; times stay as typed
            else:
                return named
        return zone

    def read(self, request, *, extra: dict[str, Any] | None = None, zone: str | None = None,
             assume: dict[str, Any] | None = None) -> Submitted:
        """Read and validate the form. ``extra``: values that do not come from
        the page (the workspace of a new event). ``zone``: the datetime
        fields' zone when the form has no zone field of its own (or an
        unusable one). ``assume``: values standing in for fields left blank,
        so that every other field is still checked; the blank ones are
        reported all the same."""
        values: dict[str, Any] = dict(extra or {})
        errors: dict[str, str] = {}
        zone = self._zone(request, zone)
        for field in self.fields:
            present, value, problem = self._field_value(field, request, zone)
            if problem is not None:
                errors[field.name] = problem
            elif present:
                values[field.name] = value
        assumed = {name: value for name, value in (assume or {}).items() if name not in values}
        model = None
        try:
            model = self.schema.model_validate({**values, **assumed})
        except ValidationError as exc:
            for name, message in field_errors(exc).items():
                errors.setdefault(name, message)  # our own reading first
        for name in assumed:
            errors.setdefault(name, MESSAGES["missing"])
        submitted = Submitted(self, model, {}, values)
        for name, message in errors.items():
            submitted.refuse(name, message)
        return submitted

    def _field_value(self, field: Field, request, zone: str | None) -> tuple[bool, Any, str | None]:
        """What the page gave for ``field``: (whether it counts as given, its
        value, a problem reading it)."""
        name = field.name
        if field.kind == CHECKBOX:
            return True, name in request.POST, None
        if name not in request.POST and not self.absent_as_blank:
            return False, None, None
        raw = request.POST.get(name, "")
        if field.kind == LIST:
            return True, [item.strip() for item in raw.split(",") if item.strip()], None
        value = raw if field.kind == PASSWORD else raw.strip()
        if not value:
            if field.blank == KEEP:
                return True, value, None
            return field.blank == NONE and not self._required(name), None, None
        if field.kind == DATETIME:
            try:
                return True, timefmt.from_form(value, zone) if zone else dt.datetime.fromisoformat(value), None
            except ValueError:
                return False, None, NOT_A_TIME
        return True, value, None

    def _required(self, name: str) -> bool:
        field = self.schema.model_fields.get(name)
        return field is not None and field.is_required()


@dataclass
class Submitted:
    """A form as read: the model (None when the values did not validate;
    with ``assume``, validated with the assumed values), every problem as a
    sentence in the order of the form, and the values read from the page.
    Use the model only when ``ok``."""
    form: Form
    model: Any
    errors: dict[str, str]
    values: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.errors

    def refuse(self, name: str, message: str) -> None:
        """Add a problem found by the view ("must be after starts_at"),
        worded like the others; the first problem of a field stays."""
        if name not in self.errors:
            self.errors[name] = self.form.word(name, message)
            ranked = self.form.rank(self.errors)
            self.errors.clear()
            self.errors.update(ranked)

    def refused(self, error: Refusal) -> dict[str, str]:
        """A service's refusal as the form's errors: its fields' problems
        worded (a batch's only row counts as the fields), else its message
        under the field it names, else under FORM."""
        fields = error.extra.get("fields") or error.extra.get("rows", {}).get("0") or {}
        names = self.form.names
        found = {name: self.form.word(name, message) for name, message in fields.items() if name in names}
        if found:
            return self.form.rank(found)
        return {error.field if error.field in names else FORM: error.message}


def flash(request, message: str, kind: str = "success") -> None:
    """A message for the next page: ``success``, ``info`` or ``error`` (a
    refusal, shown as an alert)."""
    request.session.flash(message, kind)


def add_routes(config, routes) -> None:
    """Config directive: add an area's routes, ``(name, pattern, factory)``
    each (the factory None for a route outside the resource tree)."""
    for name, pattern, factory in routes:
        config.add_route(name, pattern, factory=factory)


def templates_found_once(env):
    """pyramid_jinja2's renderer, finding each template once per process:
    its own looks the template up at every render, first by a name relative
    to the view's package, a miss Jinja2 does not remember (a lookup and a
    caught exception a page, a tenth of a guest's page). Kept by name and
    package, as renderers are made anew for many renders. With
    ``pyramid.reload_templates`` on, each render looks again, so an edited
    template shows."""
    factory = Jinja2RendererFactory()
    factory.environment = env
    found: dict[tuple[str, str | None], Any] = {}

    def renderer(info):
        made = factory(info)
        if env.auto_reload:
            return made
        key = (info.name, getattr(info.package, "__name__", None))
        look_up = made.template_loader

        def template_loader():
            template = found.get(key)
            if template is None:
                template = found[key] = look_up()
            return template

        made.template_loader = template_loader
        return made

    return renderer


# A few script names at most (the one the site is mounted under); a
# request naming another is answered as usual, without being kept.
FIXED_PATHS_KEPT = 8


def fixed_paths(request) -> dict[str, str]:
    """The addresses every guest's page links to (stylesheet, icon, privacy,
    terms), the same for every page under one script name: generated once
    for it rather than at each render, a fifth of the guest layout's cost.
    Paths, not URLs: the page's own origin serves them."""
    # Kept by the application (its routes and static views), per script name.
    kept = request.registry.setdefault("web.fixed_paths", {})
    script_name = request.script_name
    paths = kept.get(script_name)
    if paths is None:
        paths = {"stylesheet": request.static_path("guestguard:static/site.css"),
                 "icon": request.static_path("guestguard:static/favicon.svg"),
                 "privacy": request.route_path("privacy"), "terms": request.route_path("terms")}
        if len(kept) < FIXED_PATHS_KEPT:
            kept[script_name] = paths
    return paths


# After every other action of the default order in the same commit.
AFTER_THE_REQUEST_PROPERTIES = PHASE3_CONFIG + 10


def one_request_class(config) -> None:
    """Have every request made from one class holding the request
    properties (``add_request_method(..., reify=True)``: ``ctx``, ``db``,
    ``tm``, ...). Pyramid otherwise gives each request a class of its own
    made at run time to hold them: some 30 µs a request, slower attribute
    look-ups on it, and a class left for the cyclic garbage collector.
    Called last, once the areas, pyramid_tm and the plugins have added theirs;
    a property added later still works, the Pyramid way."""

    def fold() -> None:
        registry = config.registry
        extensions = registry.queryUtility(IRequestExtensions)
        if extensions is None or not extensions.descriptors:
            return
        base = registry.queryUtility(IRequestFactory, default=Request)
        folded = type(base.__name__, (base,), dict(extensions.descriptors))
        registry.registerUtility(folded, IRequestFactory)
        extensions.descriptors = {}

    config.action(("guestguard", "one request class"), fold, order=AFTER_THE_REQUEST_PROPERTIES)


def blank_request(registry, path: str, **options):
    """A request of ``registry``'s application for ``path`` (WebOb's
    ``blank`` options), made from its request class: with the request
    properties, unlike ``pyramid.request.Request.blank``, for
    ``pyramid.scripting.prepare``."""
    return registry.queryUtility(IRequestFactory, default=Request).blank(path, **options)


JINJA2_DIRECTIVES = ("add_jinja2_renderer", "add_jinja2_search_path", "add_jinja2_extension",
                     "get_jinja2_environment")


def use_jinja2(config) -> None:
    """What ``config.include("pyramid_jinja2")`` sets up (its directives, the
    ``.jinja2`` renderer searching this package first), with the package
    named: the include finds it by walking the caller's stack and reading
    the source of every frame, a tenth of a second per application under a
    test runner's deep stack."""
    for directive in JINJA2_DIRECTIVES:
        config.add_directive(directive, getattr(pyramid_jinja2, directive))
    package = config.maybe_dotted("guestguard")
    config.add_jinja2_renderer(".jinja2", package=package)
    config.add_jinja2_search_path(f"{package.__name__}:", name=".jinja2")


def includeme(config) -> None:
    settings = config.get_settings()
    config.add_directive("add_routes", add_routes)
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
    config.set_csrf_storage_policy(LoginBoundCSRF(settings))
    config.set_default_csrf_options(require_csrf=True, callback=csrf_applies)
    config.add_route("home", "/")
    config.scan(__name__)
    use_jinja2(config)
    config.add_jinja2_search_path(settings["app.templates_dir"], name=".jinja2")
    config.commit()
    env = config.get_jinja2_environment(".jinja2")
    config.add_renderer(".jinja2", templates_found_once(env))
    env.globals["app_env"] = settings["app.env"]
    env.globals["fixed_paths"] = fixed_paths
    add_filters(env)  # {{ guest.opened_at|when(event.timezone) }}, {{ event|event_span }}, ...
    config.add_static_view("static", "guestguard:static", cache_max_age=3600)
    config.add_tween("guestguard.web.security_headers_tween_factory",
                     under="guestguard.audit.request_id.request_id_tween_factory")
