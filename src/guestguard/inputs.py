"""Hostile input stops at the door: one check of every request, before any
view, view deriver (the CSRF check, rate-limit keys) or service reads it.

- A body over ``http.max_body_bytes`` (a route that takes a large upload:
  its own limit, ``allow_large_body``): 413, before it is read.
- The address holding a NUL: 400. A NUL in a header is dropped (no header
  may hold one; the user agent is stored).
- Every name and value of the query string, of a form body and of a JSON
  body must be text that PostgreSQL can store and UTF-8 can encode: no NUL,
  no lone surrogate (JSON's ``"\\ud800"``, or its UTF-8 bytes). Otherwise
  400 ``bad_request`` naming the field, under ``fields`` as well.
- A form's file part: 400 naming the field, except the ``file`` part of a
  route listed by ``accept_uploads`` (a guest-list import), whose file name
  is checked like a value.
- A JSON body nested deeper than ``MAX_JSON_DEPTH`` (no body we read is
  nested more than three deep): 400 ``invalid_json``. A body that is not
  JSON at all is left to the view that reads it (400 ``invalid_json``).

HTML paths answer with the 400 page and its message, API paths with the
house's JSON error."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pyramid.events import NewRequest
from pyramid.interfaces import IRoutesMapper

from guestguard.errors import APIError
from guestguard.validation import too_large

MAX_JSON_DEPTH = 32
NAME_SHOWN = 100  # characters of a field's name in a message

NO_NUL = "must not contain a NUL character"
NO_SURROGATE = "must be valid Unicode text"
NOT_A_FILE = "must be text, not a file"

_UNFIT = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be taken (a NUL, a lone surrogate), or None."""
    found = _UNFIT.search(text)
    if found is None:
        return None
    return NO_NUL if found.group() == "\x00" else NO_SURROGATE


def shown(name: str) -> str:
    """A field's name fit for a message (and a log line): what cannot be
    shown is replaced, a long one cut."""
    return _UNFIT.sub("\N{REPLACEMENT CHARACTER}", name)[:NAME_SHOWN] or '""'


def refused(name: str, problem: str) -> APIError:
    name = shown(name)
    return APIError(400, "bad_request", f"{name} {problem}.", fields={name: problem})


UPLOAD_FIELD = "file"


def check_pairs(pairs: Iterable[tuple[str, Any]], upload: bool = False) -> None:
    """Names and values of a query string or a form (``upload``: its
    ``file`` part may be a file)."""
    for name, value in pairs:
        text = value
        if not isinstance(value, str):
            if not (upload and name == UPLOAD_FIELD):
                raise refused(name, NOT_A_FILE)
            text = getattr(value, "filename", "") or ""  # the file's name, as a value
        problem = text_problem(name) or text_problem(text)
        if problem:
            raise refused(name, problem)


def _walk(data: Any) -> Iterator[tuple[str, str, int]]:
    """(where, text, depth) for every value of parsed JSON and every key,
    without recursion: where is the dotted path (``guests.0.name``, ``body``
    at the top), text the key or string ("" for anything else)."""
    pending = [("", data, 1)]
    while pending:
        where, value, depth = pending.pop()
        yield where or "body", value if isinstance(value, str) else "", depth
        if isinstance(value, dict):
            for key, item in value.items():
                path = f"{where}.{key}" if where else key
                yield path, key, depth
                pending.append((path, item, depth + 1))
        elif isinstance(value, list):
            pending.extend((f"{where}.{index}" if where else str(index), item, depth + 1)
                           for index, item in enumerate(value))


def check_json(data: Any) -> None:
    for where, text, depth in _walk(data):
        if depth > MAX_JSON_DEPTH:
            raise too_deep()
        problem = text_problem(text)
        if problem:
            raise refused(where, problem)


def too_deep() -> APIError:
    return APIError(400, "invalid_json", f"The body is not valid JSON: it is nested more than "
                                         f"{MAX_JSON_DEPTH} levels deep.")


def check_json_body(request, limit: int) -> None:
    """A JSON body, read once here (the view reads it again from the start)."""
    body = request.body_file_seekable.read(limit + 1)
    request.body_file_seekable.seek(0)
    if len(body) > limit:
        raise too_large(limit)
    try:
        data = json.loads(body) if body else None
    except RecursionError:
        raise too_deep() from None
    except ValueError:
        return  # not JSON: the view that reads the body says so
    check_json(data)


def guard_input(event) -> None:
    """The NewRequest subscriber (see the module's docstring)."""
    request = event.request
    environ = request.environ
    limit = body_limit(request)
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    if "\x00" in environ.get("PATH_INFO", ""):
        raise APIError(400, "bad_request", "The address holds a NUL character.")
    for key, value in list(environ.items()):
        if key.startswith("HTTP_") and isinstance(value, str) and "\x00" in value:
            environ[key] = value.replace("\x00", "")
    try:
        query = request.GET
    except UnicodeDecodeError:
        raise APIError(400, "bad_request", "The query string is not valid UTF-8.") from None
    check_pairs(query.items())
    if request.content_type == "application/json":
        check_json_body(request, limit)
        return
    try:
        form = request.POST  # empty unless the body is a form
    except Exception:
        raise APIError(400, "bad_request", "The form data could not be read.") from None
    if form:  # a GET's, and most POSTs', is empty: no route to look up for it
        check_pairs(form.items(), upload=takes_upload(request))


def takes_upload(request) -> bool:
    """Whether the request is for a route that takes a file (``accept_uploads``)."""
    names = request.registry.get("inputs.upload_routes")
    return bool(names) and route_name(request) in names


def accept_uploads(config, *route_names: str) -> None:
    """Config directive: these routes take a ``file`` part."""
    config.registry.setdefault("inputs.upload_routes", set()).update(route_names)


# Room in a form's body for its other fields and the multipart boundaries.
FORM_ROOM = 64 * 1024


def body_limit(request) -> int:
    """``http.max_body_bytes``, or for a route that takes a large upload
    (``allow_large_body``) its setting's bytes plus the form's room."""
    settings = request.registry.settings
    limit = settings["http.max_body_bytes"]
    large = request.registry.get("inputs.large_bodies")
    if large and request.method == "POST" and _may_route_to(request, large):
        name = route_name(request)
        if name in large:
            limit = max(limit, settings[large[name]] + FORM_ROOM)
    return limit


def _may_route_to(request, names) -> bool:
    """Whether the path matches the pattern of one of the routes ``names``:
    a few patterns tried, so that most POSTs (an answer, a login) skip the
    look-up of their route among all of them. Whether it does route there
    is still for ``route_name`` to say."""
    mapper = request.registry.queryUtility(IRoutesMapper)
    try:
        path = request.path_info
    except (UnicodeDecodeError, KeyError):  # not UTF-8, or no PATH_INFO at all: no upload's route
        return False
    return any((route := mapper.get_route(name)) is not None and route.match(path) is not None for name in names)


def route_name(request) -> str | None:
    """The name of the route the request's path matches, before routing;
    None for none, or for a path that is not UTF-8 (the router refuses it
    later, as for any other request)."""
    try:
        route = request.registry.queryUtility(IRoutesMapper)(request)["route"]
    except UnicodeDecodeError:
        return None
    return route.name if route is not None else None


def allow_large_body(config, route_name: str, setting: str) -> None:
    """Config directive: POSTs to this route may carry ``setting`` bytes of
    upload (a cover image) even past ``http.max_body_bytes``."""
    config.registry.setdefault("inputs.large_bodies", {})[route_name] = setting


def includeme(config) -> None:
    config.add_directive("accept_uploads", accept_uploads)
    config.add_directive("allow_large_body", allow_large_body)
    config.add_subscriber(guard_input, NewRequest)
