"""CORS for the JSON API: which other sites' pages may call ``/api/`` from a
browser, with credentials.

Only origins listed in ``cors.allowed_origins`` get ``Access-Control-*``
headers; every other origin gets none, so the browser keeps the response from
the calling page. Preflights (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) are answered here, before routing, the
transaction and the session, so they work for every API route, path
parameters included, and cost nothing. Paths outside ``/api/`` are not
touched: the HTML pages are same-origin only.

The CSRF rules in :mod:`guestguard.web` rely on this: a JSON body or a
PUT/PATCH/DELETE can only be sent cross-site after a preflight, and only the
listed origins pass one.
"""
from __future__ import annotations

import re

from pyramid.response import Response
from pyramid.tweens import EXCVIEW

from guestguard.errors import is_api_request, json_error
from guestguard.settings import SettingsError, env_var_for

SETTING = "cors.allowed_origins"
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, X-CSRF-Token, X-Request-ID, Idempotency-Key"
EXPOSE_HEADERS = "X-Request-ID, Retry-After, RateLimit, RateLimit-Policy, Idempotent-Replayed"

DEFAULT_PORTS = {"http": 80, "https": 443}
LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
NETLOC = re.compile(rf"(?P<host>{LABEL}(?:\.{LABEL})*|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?")


def parse_origin(value: str) -> str:
    """``value`` when it is an origin exactly as a browser sends it in the
    ``Origin`` header: ``http`` or ``https``, a host, an optional
    non-default port, nothing else. Raises ValueError saying what is wrong."""
    example = "an origin is scheme://host[:port], like https://app.example.com"
    if "*" in value:
        raise ValueError(f"{value!r} is a wildcard: list each origin ({example})")
    scheme, separator, rest = value.partition("://")
    if not separator or scheme.lower() not in DEFAULT_PORTS:
        raise ValueError(f"{value!r} is not an http:// or https:// origin ({example})")
    if extra := re.search(r"[/?#]", rest):
        what = "a trailing slash" if rest[extra.start():] == "/" else "a path"
        raise ValueError(f"{value!r} has {what}: {example}")
    if "@" in rest:
        raise ValueError(f"{value!r} has user information: {example}")
    match = NETLOC.fullmatch(rest)
    if match is None and NETLOC.fullmatch(rest.lower()) is None:
        raise ValueError(f"{value!r} names no valid host and port: {example}")
    if match is None or scheme not in DEFAULT_PORTS:
        raise ValueError(f"{value!r}: write it in lower case, as browsers send it")
    host, port = match["host"], match["port"]
    if port is not None:
        if port.startswith("0") or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} has an invalid port")
        if int(port) == DEFAULT_PORTS[scheme]:
            raise ValueError(f"{value!r}: leave out the default port, browsers send {scheme}://{host}")
    return value


def allowed_origins(values) -> frozenset[str]:
    """The validated allowlist; SettingsError naming the setting and every
    bad entry otherwise."""
    problems = []
    for value in values:
        try:
            parse_origin(value)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingsError(f"setting {SETTING!r} (ini file or {env_var_for(SETTING)}) is invalid: "
                            + "; ".join(problems))
    return frozenset(values)


def add_vary(response, name: str) -> None:
    """Add ``name`` to the response's ``Vary``, keeping what is there."""
    current = tuple(response.vary or ())
    if "*" in current or name.lower() in (v.lower() for v in current):
        return
    response.vary = (*current, name)


def is_preflight(request) -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def cors_tween_factory(handler, registry):
    origins: frozenset[str] = registry["cors.allowed_origins"]
    max_age = str(registry.settings["cors.max_age"])

    def preflight(request) -> Response:
        origin = request.headers["Origin"]
        if origin not in origins:
            response = json_error(request, 403, "cors_origin_not_allowed",
                                  "This origin may not call the API from a browser.")
        else:
            response = Response(status=204)
            # A 204 has no body, so neither a type nor a length.
            response.headers.pop("Content-Type", None)
            response.headers.pop("Content-Length", None)
            response.headers.update({
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": max_age,
            })
        add_vary(response, "Origin")
        return response

    def tween(request):
        if not is_api_request(request):
            return handler(request)
        if is_preflight(request):
            return preflight(request)
        response = handler(request)
        add_vary(response, "Origin")
        origin = request.headers.get("Origin")
        if origin is not None and origin in origins:
            response.headers.update({
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Expose-Headers": EXPOSE_HEADERS,
            })
        return response

    return tween


def includeme(config) -> None:
    config.registry["cors.allowed_origins"] = allowed_origins(config.get_settings()[SETTING])
    # Above the transaction, the session and (later) rate limiting, so a
    # preflight costs nothing; above the exception views, so their error
    # responses get the headers too; under the security headers, so the
    # preflight answers get those.
    config.add_tween("guestguard.cors.cors_tween_factory",
                     under="guestguard.web.security_headers_tween_factory",
                     over=("pyramid_tm.tm_tween_factory", EXCVIEW))
