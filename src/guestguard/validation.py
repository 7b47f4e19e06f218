"""One way to read input: a pydantic model per request body, query string or
form (forms through ``web.Form``), and errors in the house's words with every
field named.

The house's words live in one place, ``MESSAGES``, keyed by pydantic's error
*type*. Checks of our own raise ``house_error`` (a field's problem) or
``field_problem`` (a check across fields naming the field at fault): both are
``PydanticCustomError``s whose context carries the words, so nothing here
reads pydantic's English. The types below (``Blank``, ``CommaList``,
``LocalDateTime``, ``OneOf``, ``WholeNumber``, ``Trimmed``, ``QueryFlag``,
``UUIDOr``) declare on a model what forms and query strings need."""
from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError

from guestguard.errors import APIError

if TYPE_CHECKING:
    import phonenumbers

Model = TypeVar("Model", bound=BaseModel)

# Error types of our own checks.
HOUSE = "house"              # a field's problem, in our words
HOUSE_FIELD = "house_field"  # a check across fields that names its field


def house_error(message: str) -> PydanticCustomError:
    """A field's problem in our words, for a validator to raise."""
    return PydanticCustomError(HOUSE, "{message}", {"message": message})


def field_problem(field: str, message: str) -> PydanticCustomError:
    """A check across fields (a model validator) naming the field at fault.
    It is a ValueError whose text reads ``"field: message"``."""
    return PydanticCustomError(HOUSE_FIELD, "{field}: {message}", {"field": field, "message": message})


def _items(count: Any) -> str:
    return f"{count} item{'' if count == 1 else 's'}"


def _too_short(ctx: dict[str, Any]) -> str:
    minimum = ctx.get("min_length", 1)
    return "is required" if minimum == 1 else f"must be at least {minimum} characters"


# pydantic's error type -> the house's words (a string, or a function of the
# error's context). A type not listed (none our models raise today) keeps
# pydantic's message; tests/test_validation.py walks the types we rely on.
MESSAGES: dict[str, str | Callable[[dict[str, Any]], str]] = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "string_too_short": _too_short,
    "string_too_long": lambda ctx: f"must be at most {ctx.get('max_length')} characters",
    "greater_than": lambda ctx: f"must be greater than {ctx.get('gt')}",
    "greater_than_equal": lambda ctx: f"must be greater than or equal to {ctx.get('ge')}",
    "less_than": lambda ctx: f"must be less than {ctx.get('lt')}",
    "less_than_equal": lambda ctx: f"must be less than or equal to {ctx.get('le')}",
    "too_short": lambda ctx: f"must have at least {_items(ctx.get('min_length'))}",
    "too_long": lambda ctx: f"must have at most {_items(ctx.get('max_length'))}",
    "literal_error": lambda ctx: f"must be one of {ctx.get('expected')}",
    "enum": lambda ctx: f"must be one of {ctx.get('expected')}",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "int_from_float": "must be a whole number",
    "uuid_type": "must be an id",
    "uuid_parsing": "must be an id",
    "datetime_type": "must be a date and time",
    "datetime_parsing": "must be a date and time",
    "datetime_from_date_parsing": "must be a date and time",
    "date_type": "must be a date",
    "date_parsing": "must be a date",
    "date_from_datetime_parsing": "must be a date",
    "timezone_aware": "must name its time zone",
    "timezone_naive": "must not name a time zone",
    # A ValueError raised by a validator: its own text.
    "value_error": lambda ctx: str(ctx.get("error", "")),
    HOUSE: lambda ctx: ctx["message"],
    HOUSE_FIELD: lambda ctx: ctx["message"],
}


class Input(BaseModel):
    """Base of every body and form schema: unknown fields are refused, strings trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Query(BaseModel):
    """Base of every query-string schema: other parameters are ignored, values
    are taken as sent (declare trimming with ``Trimmed``)."""

    model_config = ConfigDict(extra="ignore")


# The plain addresses nearly everyone has (ASCII dot-atom local part, a
# domain of letters, digits and inner hyphens under an alphabetic top-level
# domain): email_validator accepts every one of them and normalizes it to
# itself, so a guest list's thousands of rows need not each pay for its full
# Unicode and IDNA checks. Anything else, or any domain with "--" (Punycode
# and R-LDH labels) or a special-use name, takes the full path.
_PLAIN_EMAIL = re.compile(
    r"(?=.{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)


def _plain_email(value: str) -> str | None:
    if len(value) > 254 or not _PLAIN_EMAIL.fullmatch(value):
        return None
    domain = value.rpartition("@")[2].lower()
    if "--" in domain or domain.rpartition(".")[2] in _SPECIAL_USE:  # each special-use name is one label
        return None
    return value.lower()


def normalize_email(value: str) -> str:
    """The canonical form we store and compare: validated, lower-cased."""
    plain = _plain_email(value)
    if plain is not None:
        return plain
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return result.normalized.lower()


def normalize_phone(value: str, region: str | None) -> str:
    """E.164; a number without its country code is read in ``region``
    (none: it must have one). phonenumbers (its metadata is over 1 MiB in a
    process) is imported by the first number read, not by every web worker
    at startup: guests' pages and answers carry none."""
    import phonenumbers

    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise ValueError("is not a phone number") from None
    if not _valid_number(number):
        raise ValueError("is not a valid phone number (write it with its country code, like +44 20 7946 0958)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _valid_number(number: phonenumbers.PhoneNumber) -> bool:
    """``phonenumbers.is_valid_number`` in one pass over the country code's
    regions instead of two. It takes as the number's region the first one
    whose leading digits match or, for a region without that rule, where the
    number has a known type, then checks the number against that region
    again; here the first such check is the answer."""
    import phonenumbers
    from phonenumbers.phonemetadata import PhoneMetadata

    regions = phonenumbers.region_codes_for_country_code(number.country_code)
    if len(regions) < 2:  # one region (or a non-geographic code): the library checks once
        return phonenumbers.is_valid_number(number)
    national = phonenumbers.national_significant_number(number)
    for region in regions:
        leading = PhoneMetadata.metadata_for_region(region).leading_digits
        if leading is not None:
            if re.match(leading, national):
                return phonenumbers.is_valid_number_for_region(number, region)
        elif phonenumbers.is_valid_number_for_region(number, region):
            return True
    return False


def field_errors(exc: ValidationError) -> dict[str, str]:
    """{field: what is wrong with it}, in the house's words; the first
    problem of each field."""
    fields: dict[str, str] = {}
    for error in exc.errors():
        ctx = error.get("ctx") or {}
        name = ".".join(str(part) for part in error["loc"]) or "body"
        if error["type"] == HOUSE_FIELD:  # under the model it checks: "questions.0.choices"
            name = ".".join([*(str(part) for part in error["loc"]), ctx["field"]])
        words = MESSAGES.get(error["type"], error["msg"])
        fields.setdefault(name, words(ctx) if callable(words) else words)
    return fields


# --- declarable conversions --------------------------------------------------------


def _blank(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


# An empty or all-space string means "none" (a form's empty field), on an
# optional type: ``Annotated[str | None, Blank]``.
Blank = BeforeValidator(_blank)


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# "a, b,,c" -> ["a", "b", "c"] (a form's text field); a list passes as it is.
CommaList = BeforeValidator(_comma_list)

LOCAL_TIME_ERROR = "must be a date and time, like 2030-06-21 19:00"


def _local_datetime(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    raw = value.strip()
    if not raw:
        return None
    try:
        return dt.datetime.fromisoformat(raw)
    except ValueError:
        raise house_error(LOCAL_TIME_ERROR) from None


# A datetime-local input's value ("2030-06-21T19:00"), blank -> None; without
# an offset it stays naive: the model decides whose wall clock it is.
LocalDateTime = BeforeValidator(_local_datetime)


def OneOf(*allowed: str) -> Any:  # noqa: N802 - a type
    """A text that must be one of ``allowed`` ("must be one of a, b")."""
    words = f"must be one of {', '.join(allowed)}"

    def check(value: Any) -> Any:
        if value not in allowed:
            raise house_error(words)
        return value

    return Annotated[Literal[allowed], BeforeValidator(check)]


def WholeNumber(low: int, high: int, words: str) -> Any:  # noqa: N802 - a type
    """A whole number from ``low`` to ``high`` written in ASCII digits; ``words`` otherwise."""

    def check(value: Any) -> Any:
        if isinstance(value, str):
            if not (value.isascii() and value.isdigit()):
                raise house_error(words)
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise house_error(words)
        return value

    return Annotated[int, Field(ge=low, le=high), BeforeValidator(check)]


def Trimmed(max_length: int, empty: Any = "") -> BeforeValidator:  # noqa: N802 - a type
    """Surrounding spaces dropped and cut to ``max_length`` characters
    (never refused); ``empty`` when nothing is left."""

    def trim(value: Any) -> Any:
        if isinstance(value, str):
            return value.strip()[:max_length] or empty
        return value

    return BeforeValidator(trim)


def _query_flag(value: Any) -> Any:
    if value in ("true", "false"):
        return value == "true"
    if isinstance(value, bool):
        return value
    raise house_error("must be true or false")


# A query flag spelt exactly ``true`` or ``false``.
QueryFlag = Annotated[bool, BeforeValidator(_query_flag)]


def UUIDOr(words: str | None) -> Any:  # noqa: N802 - a type
    """An id as ``uuid.UUID`` parses it. A malformed one is refused with
    ``words`` (an empty one is None); when ``words`` is None, anything
    malformed, empty included, becomes ``NO_ID``: an id that names nothing,
    answered like an unknown one."""

    def parse(value: Any) -> Any:
        if isinstance(value, str):
            if not value and words is not None:
                return None
            try:
                return uuid.UUID(value)
            except ValueError:
                if words is None:
                    return NO_ID
                raise house_error(words) from None
        return value

    if words is None:  # any text is taken: the contract says so
        return Annotated[uuid.UUID | None, BeforeValidator(parse), WithJsonSchema({"type": "string"})]
    return Annotated[uuid.UUID | None, BeforeValidator(parse)]


NO_ID = uuid.UUID(int=0)  # never issued (ids are random)


# --- reading ------------------------------------------------------------------------


def validate(schema: type[Model], data: Any) -> Model:
    if not isinstance(data, dict):
        raise APIError(422, "validation_failed", "The body must be a JSON object.")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise APIError(422, "validation_failed", "Some fields are invalid.",
                       fields=field_errors(exc)) from None


def too_large(limit: int) -> APIError:
    return APIError(413, "too_large", f"The body is larger than {limit} bytes.", limit=limit)


def read_json(request, max_bytes: int | None = None) -> Any:
    """The request's JSON body; 415, 413 or 400 with a clear code otherwise."""
    if request.content_type != "application/json":
        raise APIError(415, "unsupported_media_type", "Send the body as application/json.")
    limit = max_bytes or request.registry.settings["api.max_body_bytes"]
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    body = request.body_file_seekable.read(limit + 1)
    if len(body) > limit:
        raise too_large(limit)
    if not body:
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise APIError(400, "invalid_json", "The body is not valid JSON.") from None


def parse_query(request, schema: type[Model]) -> Model:
    """The query string as ``schema`` (the last value of a repeated
    parameter); the first problem is a 400 ``bad_request`` naming it."""
    data = {name: request.GET[name] for name in request.GET}
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        name, words = next(iter(field_errors(exc).items()))
        message = f"{name} {words}"
        raise APIError(400, "bad_request", message if message.endswith(".") else message + ".") from None
