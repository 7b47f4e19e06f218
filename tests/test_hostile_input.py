"""No input answers 5xx: every route of the route table, with every method
its views take, gets generated hostile input (hypothesis) as a signed-in
host would send it, and must answer below 500; under ``/api/`` an error is
the house's JSON body.

The input: NUL characters, lone UTF-16 surrogates, huge strings, deep JSON
nesting, JSON values of the wrong type, bytes that are not UTF-8, form
bodies with file parts or repeated keys, ``text/plain`` and other odd
content types; sent in the query string, as a form (with the host's session
cookie and a valid CSRF token, so the view's body is reached) and as a JSON
body (with the host's bearer token, or an API key, or none). Path
placeholders are filled with real ids of the host's workspace, event, guest,
member, invitation, API key, flag, session and invitation link, or with
hostile values. The findings of the outside assessment are explicit examples,
sent to every route on every run.

The database is the suite's: SQLite, or PostgreSQL (and Redis for the
limiter) when GG_TEST_DATABASE_URL / GG_TEST_REDIS_URL are set. Rate limits
are raised out of the way. An action that ends the host's world (deleting
the workspace, signing out) is followed by a new world before the next
route. GG_HOSTILE_EXAMPLES sets the number of generated cases per route and
method (default 25); the run reports how many were sent.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote_from_bytes

import jwt
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from webob import Request

from guestguard.keys import derive_key
from guestguard.ratelimit.service import POLICY_KEYS
from guestguard.testing import REDIS_ENV, AppFactory, create_user, csrf, in_request, new_client, settings_for
from guestguard.validation import Input, Query

EXAMPLES = int(os.environ.get("GG_HOSTILE_EXAMPLES", "25"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
STATS: Counter = Counter()
PLACEHOLDER = re.compile(r"\{(\w+)(?::[^}]*)?\}|\*(\w+)")


# --- the route table --------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    pattern: str
    method: str
    fields: tuple[str, ...]  # what its views declare they read (body, query)


def declared_fields(view) -> set[str]:
    names: set[str] = set()
    for option in ("body", "query"):
        model = view.get(option)
        model = getattr(model, "model", model)
        if isinstance(model, type):
            names.update(model.model_fields)
    return names


def route_table() -> list[Route]:
    """Every route and method, from the registry of an application built
    without a database (collection comes before the world)."""
    factory = AppFactory(settings_for(f"sqlite:///{tempfile.gettempdir()}/guestguard-not-opened.sqlite"))
    try:
        introspector = factory().app.registry.introspector
        table = []
        for route in introspector.get_category("routes"):
            intr = route["introspectable"]
            views = [related for related in route["related"] if related.category_name == "views"]
            by_method: dict[str, set[str]] = {}
            for view in views:
                methods = view["request_methods"]
                methods = ("GET", "POST") if methods is None else (methods,) if isinstance(methods, str) else methods
                for method in set(methods) - {"HEAD"}:
                    by_method.setdefault(method, set()).update(declared_fields(view))
            table += [Route(intr["name"], intr["pattern"], method, tuple(sorted(fields)))
                      for method, fields in sorted(by_method.items())]
        return table
    finally:
        factory.close()


ROUTES = route_table()


def subclasses(cls) -> set[type]:
    found = set(cls.__subclasses__())
    return found.union(*(subclasses(sub) for sub in found)) if found else found


# Every field name a body, form or query string of the app reads, to send
# hostile values where they are read.
FIELD_NAMES = sorted({name for model in subclasses(Input) | subclasses(Query) for name in model.model_fields}
                     | {"csrf_token", "next", "after", "cursor", "limit", "q"})


# --- the world --------------------------------------------------------------------

@dataclass
class World:
    """A signed-in host (bearer token, session cookie and its CSRF token, an
    API key) and the records path placeholders name."""

    wsgi: object
    bearer: str = ""
    cookie: str = ""
    csrf_token: str = ""
    api_key: str = ""
    forged: str = ""  # an access token signed with the app's key, its claims malformed
    ids: dict[str, str] = field(default_factory=dict)
    built: int = 0


def build(world: World, run) -> None:
    """A new host (the previous one may have signed out or deleted its
    workspace) with a workspace (its staff member, invitation and API key),
    a published event, guests, a link and a flag."""
    from guestguard.accounts import sessions
    from guestguard.accounts.models import API, WEB
    from guestguard.events.invitations import issue_link
    from guestguard.events.schemas import EventInput, GuestInput
    from guestguard.events.services import add_guests, create_event
    from guestguard.guard.models import Flag
    from guestguard.testing import acting_as
    from guestguard.workspaces.models import Membership
    from guestguard.workspaces.services import create_api_key, create_workspace, invite

    world.built += 1
    n = world.built

    def records(request):
        settings = request.registry.settings
        host = create_user(request, f"host{n}@example.com", "Host")
        staff = create_user(request, f"staff{n}@example.com", "Staff")
        ctx = acting_as(request.ctx, host)
        workspace = create_workspace(ctx, host, "Hostile")
        member = Membership(workspace_id=workspace.id, user_id=staff.id, role="staff")
        request.db.add(member)
        invitation = invite(ctx, host, workspace, f"invited{n}@example.com", "staff")
        key, secret = create_api_key(ctx, workspace, "door", "admin")
        event = create_event(ctx, workspace.id, EventInput(
            workspace_id=workspace.id, name="Gala", timezone="Europe/London", starts_at="2030-06-21T19:00",
            status="published"))
        guest, other = add_guests(ctx, event, [GuestInput(name="Grace", email=f"grace{n}@example.com"),
                                               GuestInput(name="Alan", phone="+44 20 7946 0958")])
        token = issue_link(ctx, guest, event)
        flag = Flag(workspace_id=workspace.id, event_id=event.id, guest_id=other.id, rule="networks", score=60,
                    evidence="opened from two networks")
        request.db.add(flag)
        api, _ = sessions.start_session(request.db, settings, host, kind=API, user_agent="", ip=None)
        web, cookie = sessions.start_session(request.db, settings, host, kind=WEB, user_agent="", ip=None)
        spare, _ = sessions.start_session(request.db, settings, host, kind=WEB, user_agent="", ip=None)
        request.db.flush()
        world.bearer = sessions.issue_tokens(request.db, settings, api).access_token
        claims = jwt.decode(world.bearer, options={"verify_signature": False})
        world.forged = jwt.encode({**claims, "sid": 5}, derive_key(settings, "jwt-access"))
        world.cookie, world.api_key = cookie, secret
        world.ids = {"workspace_id": workspace.id, "event_id": event.id, "guest_id": guest.id,
                     "member_id": member.id, "invitation_id": invitation.id, "key_id": key.id,
                     "flag_id": flag.id, "session_id": spare.id, "token": token, "subpath": "site.css",
                     "email": host.email}
        world.ids = {name: str(value) for name, value in world.ids.items()}

    run(records)
    browser = new_client(world.wsgi, REMOTE_ADDR="203.0.113.9")
    browser.set_cookie("gg_session", world.cookie)
    world.csrf_token = csrf(browser.get("/account"))
    world.cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())


def intact(world: World) -> bool:
    """Whether the host is still signed in both ways and its records stand."""
    bearer = Request.blank(f"/api/v1/events/{world.ids['event_id']}/guests/{world.ids['guest_id']}",
                           headers={"Authorization": f"Bearer {world.bearer}"})
    cookie = Request.blank(f"/workspaces/{world.ids['workspace_id']}/members", headers={"Cookie": world.cookie})
    return all(request.get_response(world.wsgi).status_int == 200 for request in (bearer, cookie))


@pytest.fixture(scope="module")
def world_app(request, module_db_url):
    limits = {f"ratelimit.{name}": "1000000/hour" for name in (*POLICY_KEYS, "api")}
    redis_url = os.environ.get(REDIS_ENV)
    if redis_url:
        limits["ratelimit.url"] = redis_url
    factory = AppFactory(settings_for(module_db_url))
    app = factory({**limits, "auth.lockout_threshold": "100"})

    def run(func):
        return in_request(app.app.registry, func)

    world = World(app.app)
    build(world, run)
    started = time.perf_counter()
    yield world, run
    STATS["seconds"] = time.perf_counter() - started
    STATS["worlds"] = world.built
    factory.close()
    report(request.config, "PostgreSQL" if module_db_url.startswith("postgresql") else "SQLite")


@pytest.fixture
def world(world_app) -> World:
    """The world, built again when what the last route did ended it."""
    world, run = world_app
    if not intact(world):
        build(world, run)
    return world


def report(config, database: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not STATS["cases"]:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(
            f"hostile input on {database}: {STATS['cases']} cases ({STATS['explicit']} explicit) to "
            f"{len(ROUTES)} routes and methods in {STATS['seconds']:.1f} s ({STATS['worlds']} worlds built); answers: "
            + ", ".join(f"{status} x{count}" for status, count in sorted(
                (key[7:], count) for key, count in STATS.items() if key.startswith("status:"))))


# --- hostile values ---------------------------------------------------------------

HOSTILE = ["\x00", "a\x00b", "\ud800", "x\udfffy", "\udc80\udcff", "\ufeff", "\u202e", "\U0001f600",
           "\r\n", "%00", "%ED%A0%80", "[" * 3000, "{" * 3000, "A" * 100_000, "-1", "1e309", "NaN",
           "Infinity", "null", "' OR 1=1 --", "../" * 20, "<script>", "\\", "\u0661\u0662", "0x10"]
BENIGN = ["", " ", "ada@example.com", "correct horse battery staple", "a new long passphrase", "Gala", "yes",
          "no", "maybe", "true", "false", "on", "UTC", "Europe/London", "2030-06-21T19:00",
          "2030-06-21T19:00:00+00:00", "staff", "admin", "owner", "email", "sms", "0", "5", "500",
          "+44 20 7946 0958", "00000000-0000-0000-0000-000000000000", "/dashboard"]
# Real ids of the world, put in place when a case is sent.
REAL = "\x1freal:"
ID_NAMES = ("workspace_id", "event_id", "guest_id", "member_id", "invitation_id", "key_id", "flag_id",
            "session_id", "token")

unicode_text = st.one_of(st.text(st.characters(exclude_categories=()), max_size=40),
                         st.text(st.characters(categories=("Cs", "Cc", "Co", "Cn")), max_size=10))
texts = st.one_of(
    st.sampled_from(HOSTILE), st.sampled_from(BENIGN), unicode_text,
    st.sampled_from(ID_NAMES).map(lambda name: REAL + name),
    st.tuples(st.sampled_from(BENIGN), st.sampled_from(HOSTILE[:10]), unicode_text).map("".join),
)
names = st.one_of(st.sampled_from(FIELD_NAMES), texts)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30), st.floats(), texts),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=5),
    max_leaves=12)
pairs = st.lists(st.tuples(names, texts), max_size=8)  # repeated keys included

ODD_TYPES = ["text/plain", "application/xml", "application/octet-stream", "multipart/form-data",
             "application/x-www-form-urlencoded; charset=bogus", "application/json; charset=latin-1",
             "application/json", "text/html", ""]


def utf8(text: str) -> bytes:
    """As a client encodes it: a lone surrogate becomes the (invalid) bytes it stands for."""
    return text.encode("utf-8", "surrogatepass")


def encoded(items) -> bytes:
    return b"&".join(quote_from_bytes(utf8(name)).encode() + b"=" + quote_from_bytes(utf8(value)).encode()
                     for name, value in items)


GARBAGE = ["Bearer \x00", "Bearer ggk_0123456789abcdef_" + "A" * 43, "Bearer ggk_\x00", "Basic \x00\xff",
           "Bearer " + "A" * 10_000, "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOjV9.x", "Bearer", "\xff\xfe"]
AGENTS = ["hostile-input-test", "Mozilla\x00/5.0", "A" * 5000, "\xff\xfe\x01"]


@dataclass(frozen=True, eq=False)
class Case:
    """What to send: ``channel`` is query, form, multipart, json or raw;
    ``auth`` bearer, cookie, api_key, none or garbage."""

    channel: str
    auth: str
    query: tuple = ()
    items: tuple = ()  # form fields, or multipart parts (name, value, filename or None)
    body: object = None  # a JSON value (json), or bytes (raw, json as text)
    content_type: str = ""
    path: dict = field(default_factory=dict)  # placeholder -> value (None: a real id)
    raw_query: bytes = b""
    agent: str = "hostile-input-test"  # the User-Agent
    garbage: str = GARBAGE[0]  # the Authorization header of auth "garbage"


path_values = st.one_of(st.none(), st.none(), st.sampled_from(
    ["%00", "x%00y", "%ED%A0%80", "%FF", "%", "A" * 5000, "..", "%2F", "0", "-1",
     "00000000-0000-0000-0000-000000000000", "%3Cscript%3E", "%F0%9F%98%80", "ggk_"]))
auths = st.sampled_from(["bearer", "cookie", "cookie", "api_key", "none", "forged", "garbage"])
API_CHANNELS = ["json", "json", "json", "query", "query", "form", "multipart", "raw"]
PAGE_CHANNELS = ["form", "form", "form", "multipart", "query", "query", "json", "raw"]

# A value each field would take, so that one or two hostile ones among them
# reach what the view does with a valid request.
PLAUSIBLE = {
    "email": REAL + "email", "password": "correct horse battery staple", "current_password":
    "correct horse battery staple", "new_password": "a new long passphrase", "display_name": "Host",
    "accept_policies": True, "accept": True, "end_other_sessions": False, "name": "Gala", "description": "A night",
    "venue": "The hall", "starts_at": "2030-06-21T19:00", "ends_at": "2030-06-21T23:00", "timezone": "Europe/London",
    "rsvp_deadline": "2030-06-14T12:00", "default_plus_ones": 1, "host_message": "Welcome", "status": "published",
    "workspace_id": REAL + "workspace_id", "event_id": REAL + "event_id", "guest_id": REAL + "guest_id",
    "member_id": REAL + "member_id", "token": REAL + "token", "phone": "+44 20 7946 0958", "plus_ones_allowed": 1,
    "group": "Family", "tags": ["friends"], "notes": "A note", "response": "yes", "plus_ones": 0,
    "dietary": "none", "message": "See you there", "channel": "email", "role": "staff", "confirm_name": "Hostile",
    "order": "asc", "lookback": 0, "limit": 5, "rule": "networks", "q": "Gr", "flagged": "false", "next": "/dashboard",
}


def as_form(value) -> str | None:
    """A JSON value as a form sends it (an unticked box: not at all)."""
    if isinstance(value, bool):
        return "on" if value else None
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


@st.composite
def cases(draw, route: Route):
    channel = draw(st.sampled_from(API_CHANNELS if route.pattern.startswith("/api/") else PAGE_CHANNELS))
    case = {"channel": channel, "auth": draw(auths), "path": draw(st.dictionaries(
        st.sampled_from((*ID_NAMES, "subpath")), path_values, max_size=3)),
        "agent": draw(st.sampled_from(AGENTS)), "garbage": draw(st.sampled_from(GARBAGE))}
    fields = list(route.fields or FIELD_NAMES)
    values = None
    if draw(st.booleans()):  # every field plausible but one or two
        values = {name: PLAUSIBLE.get(name, "x") for name in fields}
        values.update(draw(st.dictionaries(st.sampled_from(fields), json_values if channel == "json" else texts,
                                           min_size=1, max_size=2)))
    free_pairs = draw(pairs)
    form_pairs = free_pairs if values is None else [
        (name, form) for name, value in values.items() if (form := as_form(value)) is not None]
    if channel == "query" or draw(st.booleans()):
        case["query"] = tuple(form_pairs if channel == "query" else draw(pairs))
        case["raw_query"] = draw(st.sampled_from([b"", b"%", b"%ZZ=1", b"a=%ED%A0%80", b"&&=&;", b"q=%FF%FE"]))
    if channel == "form":
        case["items"] = tuple(form_pairs)
    elif channel == "multipart":
        files = st.one_of(st.none(), st.none(), st.sampled_from(["a.txt", "", "x\x00.csv"]))
        case["items"] = tuple((name, value, draw(files)) for name, value in form_pairs)
    elif channel == "json":
        case["body"] = values if values is not None else draw(st.one_of(
            st.dictionaries(names, json_values, max_size=6), json_values,
            st.integers(30, 5000).map(lambda depth: "[" * depth + "]" * depth),  # as text: deep
            st.lists(st.dictionaries(names, json_values, max_size=3), max_size=3)))
    elif channel == "raw":
        case["body"] = draw(st.one_of(st.binary(max_size=200), texts.map(utf8)))
        case["content_type"] = draw(st.sampled_from(ODD_TYPES))
    return Case(**case)


# The outside assessment's findings, sent to every route.
FINDINGS = [
    Case("json", "bearer", body={"email": "ada@example.com\x00", "password": "a\x00" * 8, "name": "Gala\x00"}),
    Case("json", "none", body={"email": "\ud800@example.com", "password": "\ud800" * 10, "display_name": "\ud800"}),
    Case("json", "bearer", body="[" * 100_000 + "]" * 100_000),
    Case("form", "cookie", items=(("email", "a\x00@example.com"), ("password", "pass\x00word"), ("name", "\x00"))),
    Case("form", "cookie", items=(("email", "\ud800@example.com"), ("password", "\udfff" * 10))),
    Case("query", "cookie", query=(("next", "/\x00"), ("after", "\ud800"), ("q", "\x00"))),
    Case("query", "bearer", query=(("after", "W1" * 2000), ("limit", "1" * 5000))),
    Case("query", "bearer", query=(("after", "WyJ" + "W1" * 1000),)),
    Case("multipart", "cookie", items=(("email", "a@example.com", "a.txt"), ("password", "x" * 12, "p.txt"),
                                       ("csrf_token", "x", "c.txt"))),
    Case("multipart", "cookie", items=(("email", "a@example.com", None), ("password", "secret", "p.txt"))),
    Case("raw", "cookie", body=b"email=a%40example.com&password=\xff\xfe", content_type="text/plain"),
    Case("raw", "bearer", body=b'{"name": "\xed\xa0\x80"}', content_type="application/json"),
    Case("form", "cookie", items=(("email", "a@example.com"), ("email", "b@example.com"), ("csrf_token", "x"))),
    Case("json", "forged", body={"name": "x"}),
    Case("query", "garbage", agent="Mozilla\x00/5.0", garbage="Bearer ggk_\x00"),
]


# --- sending ----------------------------------------------------------------------


def real(value, world: World):
    if isinstance(value, str) and value.startswith(REAL):
        return world.ids[value[len(REAL):]]
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {real(key, world): real(item, world) for key, item in value.items()}
    if isinstance(value, list):
        return [real(item, world) for item in value]
    return value


def path_of(route: Route, case: Case, world: World) -> str:
    def fill(match):
        name = match.group(1) or match.group(2)
        value = case.path.get(name)
        return world.ids.get(name, "x") if value is None else value

    return "/" + PLACEHOLDER.sub(fill, route.pattern).lstrip("/")


def multipart(parts, csrf_token: str | None) -> tuple[bytes, str]:
    boundary = "hostile-boundary-7d41"
    chunks = []
    if csrf_token:
        parts = [("csrf_token", csrf_token, None), *parts]
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + ("" if filename is None else f'; filename="{filename}"')
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if filename is not None:
            head += "Content-Type: application/octet-stream\r\n"
        chunks.append(utf8(head) + b"\r\n" + utf8(value) + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request_for(route: Route, case: Case, world: World) -> Request:
    headers = {"User-Agent": case.agent}
    csrf_token = None
    if case.auth in ("bearer", "api_key", "forged"):
        headers["Authorization"] = f"Bearer {getattr(world, case.auth)}"
    elif case.auth == "garbage":
        headers["Authorization"] = case.garbage
    elif case.auth == "cookie":
        headers["Cookie"] = world.cookie
        headers["X-CSRF-Token"] = csrf_token = world.csrf_token
    query = [(real(name, world), real(value, world)) for name, value in case.query]
    raw_query = b"&".join(part for part in (encoded(query), case.raw_query) if part)
    url = path_of(route, case, world) + ("?" + raw_query.decode("latin-1") if raw_query else "")
    body, content_type = b"", case.content_type
    if case.channel == "form":
        items = [("csrf_token", csrf_token)] if csrf_token else []
        body = encoded(items + [(real(name, world), real(value, world)) for name, value in case.items])
        content_type = "application/x-www-form-urlencoded"
    elif case.channel == "multipart":
        body, content_type = multipart([(real(n, world), real(v, world), f) for n, v, f in case.items],
                                       csrf_token)
    elif case.channel == "json":
        value = real(case.body, world)
        body = value.encode() if isinstance(value, str) and value[:1] == "[" else json.dumps(value).encode()
        content_type = "application/json"
    elif case.channel == "raw":
        body = case.body
    if content_type:
        headers["Content-Type"] = content_type
    request = Request.blank(url, method=route.method, headers=headers,
                            environ={"REMOTE_ADDR": "203.0.113.9", "wsgi.multithread": True})
    if body or route.method in ("POST", "PUT", "PATCH"):
        request.body = body
    return request


def send(route: Route, case: Case, world: World, explicit: bool) -> None:
    request = request_for(route, case, world)
    target = request.environ["PATH_INFO"] + "?" + request.environ["QUERY_STRING"]
    described = f"{route.method} {target[:300]!r} ({case.channel}, {case.auth}): {request.body[:300]!r}"
    response = request.get_response(world.wsgi)  # an exception escaping the app fails here too
    STATS["cases"] += 1
    STATS["explicit"] += explicit
    STATS[f"status:{response.status_int}"] += 1
    assert response.status_int < 500, f"{described} answered {response.status}: {response.body[:500]!r}"
    if route.pattern.startswith("/api/") and response.status_int >= 400 and response.content_type == "application/json":
        error = response.json["error"]
        assert error["code"] and error["message"], described


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: f"{route.method} {route.pattern}")
def test_no_input_answers_5xx(route, world):
    for case in FINDINGS:
        send(route, case, world, explicit=True)

    @SETTINGS
    @given(case=cases(route))
    def hostile(case):
        send(route, case, world, explicit=False)

    hostile()


def test_every_route_was_walked():
    assert {route.name for route in ROUTES} >= {"login", "signup", "api_login", "rsvp", "api_guests", "__static/"}
    assert len(ROUTES) > 100
