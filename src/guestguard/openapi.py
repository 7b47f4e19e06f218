"""The API contract: an OpenAPI 3.1 document made from the route table and
what each view declares (``permission``, ``rate_limit``, ``body``, ``query``,
``response``, ``checks_permission``), so it cannot drift from the code.

Served at ``GET /api/v1/openapi.json``, built on first use and kept. Every
view of a route under ``/api/`` is an operation; a view elsewhere is one
when it declares ``response=`` (the live stream); views of routes under
``/webhooks/`` (calls that providers make to us) are ``webhooks``, keyed by
route name. ``tests/test_openapi.py`` checks both ways against the route
table and validates the document; ``tests/test_api_fuzz.py`` calls every
operation with generated input and checks the answers against it."""
from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import metadata
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema
from pyramid.view import view_config

from guestguard.contract import MULTIPART, Batch, Body, Multipart, Refused, Stream, as_answers, as_body, model_types
from guestguard.errors import API_PREFIX
from guestguard.idempotency import (
    ANSWER_NOT_KEPT,
    HEADER as IDEMPOTENCY_HEADER,
    INVALID_KEY,
    KEY_IN_USE,
    KEY_PATTERN,
    KEY_REUSED,
    MAX_KEY_LENGTH,
    REPLAYED,
    UNSAFE_METHODS,
)
from guestguard.permissions import ALLOWED_BEFORE_POLICY_ACCEPTANCE, API_KEY_PERMISSIONS, WORKSPACES_LIST
from guestguard.web import SESSION_COOKIE

OPENAPI_VERSION = "3.1.0"
WEBHOOK_PREFIX = "/webhooks/"
DOCUMENT_PATH = "/api/v1/openapi.json"
REF = "#/components/schemas/{model}"
JSON = "application/json"

# The words for the errors the machinery (not a service) answers with.
CODE_WORDS = {
    "bad_request": "a query string that is not valid UTF-8 or has a bad parameter; a NUL character in it or the body",
    "invalid_json": "the body is not valid JSON",
    "csrf_failed": "a cookie-authenticated request without its X-CSRF-Token",
    "unauthorized": "no or a bad access token",
    "forbidden": "the caller's role lacks the permission (`required`, `role`)",
    "policy_acceptance_required": "updated policies to accept first",
    "not_found": "an unknown id, or one in a workspace the caller is not a member of",
    "too_large": "the body is over the limit (`limit`)",
    "unsupported_media_type": "the body is not sent as application/json",
    "validation_failed": "`fields` names each bad field (`rows` each bad row of an array)",
    "rate_limited": "too many requests: see `Retry-After`",
    INVALID_KEY: f"the `{IDEMPOTENCY_HEADER}` header is not 1 to {MAX_KEY_LENGTH} printable ASCII characters",
    KEY_IN_USE: f"a request with this `{IDEMPOTENCY_HEADER}` is still running: see `Retry-After`",
    ANSWER_NOT_KEPT: f"the first request with this `{IDEMPOTENCY_HEADER}` succeeded, but its answer "
                     "carried a secret shown once and was not kept",
    KEY_REUSED: f"this `{IDEMPOTENCY_HEADER}` was used for another request (method, path, query or body)",
}


def _error_schemas() -> dict[str, Any]:
    messages = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "Error": {
            "type": "object", "title": "Error", "required": ["error"], "additionalProperties": False,
            "description": "Every error: a code for programs, a message for people.",
            "properties": {"error": {"$ref": REF.format(model="ErrorDetail")}},
            "examples": [{"error": {"code": "validation_failed", "message": "Some fields are invalid.",
                                    "fields": {"email": "An email address must have an @-sign."}}}],
        },
        "ErrorDetail": {
            "type": "object", "title": "ErrorDetail", "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {**messages, "description": "Each bad field and what is wrong with it."},
                "rows": {"type": "object", "additionalProperties": messages,
                         "description": "Each bad row of an array (its index) and its fields."},
                "required": {"type": ["string", "null"], "description": "The permission that was missing."},
                "role": {"type": ["string", "null"], "description": "The caller's role."},
                "limit": {"type": "integer", "description": "The largest body accepted, in bytes."},
                "retry_after": {"type": "integer", "description": "Seconds to wait."},
            },
            "additionalProperties": True,
        },
    }


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "An access token from `POST /api/v1/auth/login` or `/auth/refresh`."},
    "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "ggk_<lookup>_<secret>",
               "description": "A workspace API key: it acts in its one workspace with its role, "
                              "and never manages people, keys or the workspace itself."},
    "cookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
               "description": "The web UI's session cookie. Requests with a JSON body, PUT, PATCH "
                              "and DELETE need nothing more; other unsafe requests need `csrf` too."},
    "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
             "description": "The CSRF token of the web UI's session, for cookie-authenticated "
                            "unsafe requests that are not JSON."},
}

RATE_LIMIT_HEADERS = {
    "Retry-After": {"required": True, "description": "Seconds to wait.", "schema": {"type": "integer"}},
    "RateLimit-Policy": {"description": "The limit (IETF draft).", "schema": {"type": "string"}},
    "RateLimit": {"description": "What is left of it (IETF draft).", "schema": {"type": "string"}},
}


@dataclass
class Operation:
    """One documented view: a route and a method."""

    route_name: str
    pattern: str
    method: str
    view: Any
    options: Any
    permission: str | None
    factory: Any

    @property
    def webhook(self) -> bool:
        return self.pattern.startswith(WEBHOOK_PREFIX)

    @property
    def operation_id(self) -> str:
        return getattr(self.view, "__name__", self.route_name)

    @property
    def area(self) -> str:
        parts = getattr(self.view, "__module__", "").split(".")
        return parts[1] if len(parts) > 2 and parts[0] == "guestguard" else parts[-1]


def view_methods(view_intr) -> tuple[str, ...] | None:
    methods = view_intr["request_methods"]
    if methods is None:
        return None
    return (methods,) if isinstance(methods, str) else tuple(sorted(set(methods) - {"HEAD"}))


def operations(registry) -> list[Operation]:
    """Every view that declares ``response=`` and its request methods, in
    route order. An API view that declares none is left out, and
    ``tests/test_openapi.py`` names it."""
    introspector = registry.introspector
    found = []
    for route in introspector.get_category("routes"):
        intr = route["introspectable"]
        for view in (r for r in route["related"] if r.category_name == "views"):
            methods = view_methods(view)
            if methods is None or view.get("response") is None:
                continue
            permission = next((p["value"] for p in introspector.related(view)
                               if p.category_name == "permissions"), None)
            for method in methods:
                found.append(Operation(intr["name"], intr["pattern"], method, view["callable"], view,
                                       permission, intr["factory"]))
    return found


# --- schemas ------------------------------------------------------------------


@dataclass
class Schemas:
    """The models an operation refers to, gathered, then written as components."""

    wanted: dict[tuple[type[BaseModel], str], None] = field(default_factory=dict)
    refs: dict[tuple[type[BaseModel], str], dict[str, Any]] = field(default_factory=dict)
    components: dict[str, Any] = field(default_factory=dict)

    def want(self, model: type[BaseModel], mode: str) -> None:
        self.wanted[(model, mode)] = None

    def build(self) -> None:
        keys, top = models_json_schema(list(self.wanted), ref_template=REF)
        self.refs = keys
        self.components = top.get("$defs", {})

    def ref(self, model: type[BaseModel], mode: str) -> dict[str, Any]:
        return dict(self.refs[(model, mode)])


def schema_of(kind: Any, schemas: Schemas, mode: str) -> dict[str, Any]:
    models = model_types(kind)
    if models and len(models) == 1 and kind is models[0]:
        return schemas.ref(kind, mode)
    if models:
        return {"anyOf": [schemas.ref(model, mode) for model in models]}
    return TypeAdapter(kind).json_schema(mode=mode)


def not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: absence is how it says "none"."""
    schema = dict(schema)
    options = schema.pop("anyOf", None)
    if options:
        options = [option for option in options if option != {"type": "null"}]
        if len(options) == 1:
            schema.update(options[0])
        else:
            schema["anyOf"] = options
    if schema.get("default", ...) is None:
        del schema["default"]
    schema.pop("title", None)
    return schema


# --- operations ---------------------------------------------------------------


def docstring(view) -> tuple[str, str]:
    """(summary, description) from the view's docstring."""
    text = (inspect.getdoc(view) or "").replace("``", "`")
    paragraphs = [" ".join(part.split()) for part in text.split("\n\n") if part.strip()]
    if not paragraphs:
        name = getattr(view, "__name__", "operation").replace("_", " ")
        return name[:1].upper() + name[1:], ""
    return paragraphs[0].rstrip("."), "\n\n".join(paragraphs[1:])


def path_parameters(pattern: str) -> list[str]:
    return re.findall(r"{(\w+)(?::[^}]*)?}", pattern)


def path_template(pattern: str) -> str:
    return re.sub(r"{(\w+):[^}]*}", r"{\1}", pattern)


def may_use_api_keys(permission: str) -> bool:
    return permission == WORKSPACES_LIST or any(permission in granted for granted in API_KEY_PERMISSIONS.values())


class Answers:
    """An operation's responses, status by status, with the codes each may carry."""

    def __init__(self):
        self.codes: dict[int, list[str]] = {}
        self.success: dict[int, Any] = {}
        self.links: dict[str, dict[str, str]] = {}
        self.headers: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, list[str]] = {}

    @classmethod
    def declared(cls, response: Any, *, api: bool) -> Answers:
        """What ``response=`` declares; every API call may also meet the
        query-string guard (400) and the API's ceiling (429)."""
        answers = cls()
        for status, kind in as_answers(response).items():
            if isinstance(kind, Refused):
                answers.error(status, *kind.codes)
            else:
                answers.success[status] = kind
        if api:
            answers.error(400, "bad_request")
            answers.error(429, "rate_limited", note="the API's ceiling, per caller and address (`ratelimit.api`)")
        return answers

    def error(self, status: int, *codes: str, note: str = "") -> None:
        known = self.codes.setdefault(status, [])
        known.extend(code for code in codes if code not in known)
        if note:
            self.notes.setdefault(status, []).append(note)

    def write(self, schemas: Schemas) -> dict[str, Any]:
        written: dict[str, Any] = {}
        for status, kind in sorted(self.success.items()):
            phrase = HTTPStatus(status).phrase
            if kind is None:
                written[str(status)] = {"description": f"{phrase}: no body."}
            elif isinstance(kind, Stream):
                written[str(status)] = {"description": kind.description or phrase,
                                        "content": {media_type: {"schema": {"type": "string"}}
                                                    for media_type in kind.media_types}}
            else:
                written[str(status)] = {"description": phrase,
                                        "content": {JSON: {"schema": schema_of(kind, schemas, "serialization")}}}
                if self.links:
                    written[str(status)]["links"] = {
                        target: {"operationId": target, "parameters": parameters}
                        for target, parameters in self.links.items()}
        for status, codes in sorted(self.codes.items()):
            lines = [f"`{code}`: {CODE_WORDS[code]}" if code in CODE_WORDS else f"`{code}`" for code in codes]
            schema = {"allOf": [{"$ref": REF.format(model="Error")}],
                      "properties": {"error": {"properties": {"code": {"enum": codes}}}}}
            answer: dict[str, Any] = {"description": "; ".join(lines + self.notes.get(status, [])) + ".",
                                      "content": {JSON: {"schema": schema}}}
            if status in self.headers:
                answer["headers"] = self.headers[status]
            written[str(status)] = answer
        return written


def parameters_of(op: Operation, query: type[BaseModel] | None) -> list[dict[str, Any]]:
    """Path parameters (``*_id`` ones are UUIDs) and the query model's fields."""
    parameters = []
    for name in path_parameters(op.pattern):
        schema = {"type": "string", "format": "uuid"} if name.endswith("_id") else {"type": "string"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    if query is not None:
        query_schema = query.model_json_schema(mode="validation")
        required = set(query_schema.get("required", ()))
        for name, schema in query_schema.get("properties", {}).items():
            parameters.append({"name": name, "in": "query", "required": name in required,
                               "schema": not_null(schema)})
    return parameters


def read_body(operation: dict[str, Any], body: Body | Batch | Multipart, answers: Answers,
              schemas: Schemas) -> None:
    schemas.want(body.model, "validation")
    # The schema is written once every model is known (see build()).
    media_type = MULTIPART if isinstance(body, Multipart) else JSON
    operation["requestBody"] = {"required": not getattr(body, "optional", False),
                                "content": {media_type: {"schema": body}}}
    if not isinstance(body, Multipart):
        answers.error(400, "invalid_json")
    answers.error(413, "too_large")
    answers.error(415, "unsupported_media_type")
    answers.error(422, "validation_failed")


def secure(operation: dict[str, Any], op: Operation, permission: str, answers: Answers, *,
           checked: bool, csrf: bool) -> str:
    """Who may call, and the refusals that brings; returns a note for the description."""
    cookie = {"cookie": [], "csrf": []} if csrf else {"cookie": []}
    operation["security"] = [{"bearer": []}, cookie] + ([{"apiKey": []}] if may_use_api_keys(permission) else [])
    answers.error(401, "unauthorized")
    answers.headers[401] = {"WWW-Authenticate": {"description": '`Bearer realm="guestguard"`',
                                                 "schema": {"type": "string"}}}
    answers.error(403, "forbidden")
    if permission not in ALLOWED_BEFORE_POLICY_ACCEPTANCE:
        answers.error(403, "policy_acceptance_required")
    if op.factory is not None or checked:
        answers.error(404, "not_found")
    if op.method == "POST" and op.pattern.startswith(API_PREFIX):  # PUT, PATCH, DELETE: see web.csrf_applies
        answers.error(400, "csrf_failed")
    where = " (checked on the resource the body names)" if checked else ""
    return f"Permission: `{permission}`{where}."


def idempotent(operation: dict[str, Any], answers: Answers, *, shows_secret: bool) -> None:
    """The optional ``Idempotency-Key`` header of an unsafe API call, and its refusals."""
    operation.setdefault("parameters", []).append({
        "name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
        "description": "Makes a retry safe: the first answer to this key (yours, for "
                       "`idempotency.ttl_hours`) is given again to a repeat of the same request, with "
                       f"`{REPLAYED}: true`, and the call is not made twice.",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": KEY_PATTERN}})
    answers.error(400, INVALID_KEY)
    answers.error(409, KEY_IN_USE)
    if shows_secret:
        answers.error(409, ANSWER_NOT_KEPT)
    answers.headers.setdefault(409, {})["Retry-After"] = {
        "description": f"Seconds to wait (`{KEY_IN_USE}`).", "schema": {"type": "integer"}}
    answers.error(422, KEY_REUSED)


def build_operation(op: Operation, settings, schemas: Schemas) -> dict[str, Any]:
    """The operation, its responses still an ``Answers`` (see build())."""
    options = op.options
    body = as_body(options.get("body"))
    query = options.get("query")
    rate_limit = options.get("rate_limit")
    policies = [rate_limit] if isinstance(rate_limit, str) else list(rate_limit or ())
    api = op.pattern.startswith(API_PREFIX)
    summary, description = docstring(op.view)
    operation: dict[str, Any] = {"operationId": op.operation_id, "summary": summary, "tags": [op.area]}
    notes = []

    answers = Answers.declared(options.get("response"), api=api)
    answers.links = dict(options.get("links") or {})
    parameters = parameters_of(op, query)
    if parameters:
        operation["parameters"] = parameters
    if api and path_parameters(op.pattern):
        answers.error(404, "not_found")
    if query is not None:
        answers.error(400, "bad_request")
    if body is not None:
        read_body(operation, body, answers, schemas)
        if isinstance(body, Batch):
            policies += [body.counted_by] if body.counted_by else []
            notes.append(f"One object or an array of up to {settings[body.max_setting]} "
                         f"(`{body.max_setting}`), all or nothing.")
    permission = op.permission or options.get("checks_permission")
    if permission is not None:
        csrf = op.method == "POST" and (body is None or getattr(body, "optional", False)
                                        or isinstance(body, Multipart))
        notes.append(secure(operation, op, permission, answers, csrf=csrf,
                            checked=op.permission is None))
    else:
        operation["security"] = []
    if api and op.method in UNSAFE_METHODS:
        idempotent(operation, answers, shows_secret=bool(options.get("shows_secret")))
    if policies:
        names = ", ".join(f"`ratelimit.{policy}`" for policy in policies)
        answers.error(429, "rate_limited", note=f"limited by {names}")
        notes.append(f"Rate limit: {names}.")
    if 429 in answers.codes:
        answers.headers[429] = RATE_LIMIT_HEADERS
    operation["description"] = "\n\n".join(part for part in (description, " ".join(notes)) if part)
    operation["responses"] = answers
    for kind in answers.success.values():
        for model in model_types(kind):
            schemas.want(model, "serialization")
    return operation


TAGS = {
    "accounts": "Signing up and in, tokens and sessions, your own account.",
    "workspaces": "Workspaces (the tenants), their members, invitations and API keys.",
    "events": "Events, guest lists, personal invitation links, and the guest's own calls (token alone).",
    "guard": "Flags raised by the access rules, their review, and a guest's use of their links.",
    "activity": "An event's activity feed, and its live stream through single-use tickets.",
    "openapi": "This contract.",
}


def area_tags(ops: list[Operation]) -> list[dict[str, str]]:
    """One tag per area, described here or by the area's package docstring (a plugin's)."""
    tags = []
    for area in dict.fromkeys(op.area for op in ops):
        description = TAGS.get(area)
        if description is None:
            module = sys.modules.get(getattr(next(op.view for op in ops if op.area == area), "__module__", ""))
            description = " ".join((inspect.getdoc(module) or "").split("\n\n")[0].split())
        tags.append({"name": area, "description": description})
    return tags


def version() -> str:
    try:
        return metadata.version("guestguard")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0"


def build(registry) -> dict[str, Any]:
    """The document, from the registry's routes and views."""
    settings = registry.settings
    ops = operations(registry)
    schemas = Schemas()
    built = [(op, build_operation(op, settings, schemas)) for op in ops]
    schemas.build()
    paths: dict[str, dict[str, Any]] = {}
    webhooks: dict[str, dict[str, Any]] = {}
    seen: dict[str, Operation] = {}
    for op, operation in built:
        if operation["operationId"] in seen:
            operation["operationId"] = f"{op.area}_{operation['operationId']}"
        seen[operation["operationId"]] = op
        operation["responses"] = operation["responses"].write(schemas)
        body = operation.get("requestBody")
        if body is not None:
            content = next(iter(body["content"].values()))
            content["schema"] = request_body_schema(content["schema"], settings, schemas)
        target = webhooks.setdefault(op.route_name, {}) if op.webhook else paths.setdefault(
            path_template(op.pattern), {})
        if op.webhook:
            target.setdefault("x-path", op.pattern)
        target[op.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "GuestGuard API",
            "version": version(),
            "summary": "Personal invitations, RSVPs and a quiet guard against shared links.",
            "description": "Everything under `/api/v1` speaks JSON; every error has the `Error` shape. "
                           "See docs/api.md for the flows behind the operations.",
        },
        "servers": [{"url": settings["app.base_url"].rstrip("/")}],
        "tags": area_tags(ops),
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": {**schemas.components, **_error_schemas()},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def request_body_schema(spec: Body | Batch | Multipart, settings, schemas: Schemas) -> dict[str, Any]:
    one = schemas.ref(spec.model, "validation")
    if isinstance(spec, Multipart):
        file = {"type": "string", "contentMediaType": "application/octet-stream",
                "description": f"The file, at most {settings[spec.max_setting]:,} bytes (`{spec.max_setting}`)."}
        fields = spec.model.model_json_schema(mode="validation")
        return {"type": "object", "title": fields.get("title", ""), "additionalProperties": False,
                "properties": {spec.file: file, **fields.get("properties", {})},
                "required": [spec.file] if spec.file_required else []}
    if isinstance(spec, Batch):
        return {"oneOf": [one, {"type": "array", "items": one, "minItems": 1,
                                "maxItems": settings[spec.max_setting]}]}
    return one


def document(registry) -> dict[str, Any]:
    """The document, built once per application."""
    found = registry.get("openapi.document")
    if found is None:
        found = registry["openapi.document"] = build(registry)
    return found


@view_config(route_name="api_openapi", request_method="GET", renderer="json", response={200: dict[str, Any]})
def openapi_document(request):
    """This document: the API contract (OpenAPI 3.1)."""
    return document(request.registry)


def includeme(config) -> None:
    config.add_routes((("api_openapi", DOCUMENT_PATH, None),))
    config.scan(__name__)
