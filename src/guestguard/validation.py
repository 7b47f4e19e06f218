"""One way to read input: a pydantic model per request body or form, and
errors in the house format with every field named."""
from __future__ import annotations

import json
from typing import Any, TypeVar

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, ValidationError

from guestguard.errors import APIError

Model = TypeVar("Model", bound=BaseModel)

MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
}


class Input(BaseModel):
    """Base of every input schema: unknown fields are refused, strings trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def normalize_email(value: str) -> str:
    """The canonical form we store and compare: validated, lower-cased."""
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return result.normalized.lower()


def field_errors(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "body"
        ctx = error.get("ctx", {})
        message = MESSAGES.get(error["type"], error["msg"])
        if error["type"] == "value_error":
            message = str(ctx.get("error", message))
            # A check across fields names its field as "field: message".
            field, separator, rest = message.partition(": ")
            if not error["loc"] and separator and field.isidentifier():
                name, message = field, rest
        elif error["type"] == "string_too_short":
            minimum = ctx.get("min_length", 1)
            message = "is required" if minimum == 1 else f"must be at least {minimum} characters"
        elif error["type"] == "string_too_long":
            message = f"must be at most {ctx.get('max_length')} characters"
        fields.setdefault(name, message)
    return fields


def validate(schema: type[Model], data: Any) -> Model:
    if not isinstance(data, dict):
        raise APIError(422, "validation_failed", "The body must be a JSON object.")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise APIError(422, "validation_failed", "Some fields are invalid.",
                       fields=field_errors(exc)) from None


def read_json(request, max_bytes: int | None = None) -> Any:
    """The request's JSON body; 415, 413 or 400 with a clear code otherwise."""
    if request.content_type != "application/json":
        raise APIError(415, "unsupported_media_type", "Send the body as application/json.")
    limit = max_bytes or request.registry.settings["api.max_body_bytes"]
    if request.content_length is not None and request.content_length > limit:
        raise APIError(413, "too_large", f"The body is larger than {limit} bytes.", limit=limit)
    body = request.body_file_seekable.read(limit + 1)
    if len(body) > limit:
        raise APIError(413, "too_large", f"The body is larger than {limit} bytes.", limit=limit)
    if not body:
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise APIError(400, "invalid_json", "The body is not valid JSON.") from None


def parse_json(request, schema: type[Model], max_bytes: int | None = None) -> Model:
    return validate(schema, read_json(request, max_bytes))


def one_of(request, name: str, allowed) -> str | None:
    """A query parameter that must be one of ``allowed`` when given."""
    value = request.GET.get(name)
    if value is not None and value not in allowed:
        raise APIError(400, "bad_request", f"{name} must be one of {', '.join(allowed)}.")
    return value
