"""Declared input and output of views: the one way an API view reads its
input and gives its answer, and what the OpenAPI document is made of.

A view declares, beside its ``permission`` and ``rate_limit``::

    @view_config(route_name="api_guests", request_method="GET", renderer="json",
                 permission=GUESTS_VIEW, query=GuestQuery, response=GuestPage)

- ``body=Model`` (or ``Body(Model, optional=True, max_bytes=...)``, or
  ``Batch(Model, ...)`` for one object or an array): ``request.body_input``
  is the JSON body read by ``validation.read_json`` (415, 413, 400
  ``invalid_json``) and validated (422 naming every field).
- ``query=Model``: ``request.query_input`` is the query string validated,
  the first problem a 400 ``bad_request`` naming the parameter.
- ``response=Model`` or ``{201: Model, 204: None, 409: Refused("code"),
  ...}``: the answers. A view returns an instance of one of the declared
  models and the status declared for it is set; a view may still return a
  Response (a 204, an error it built). ``Refused`` lists the error codes its
  services may answer with; the statuses that permission, body, query and
  rate_limit bring are added to the document by themselves.
- ``checks_permission=PERMISSION``: the view checks this permission itself
  on a resource it finds from its input (documented like ``permission``).
- ``links={"get_event": {"event_id": "$response.body#/event/id"}}``: what
  a client (and the fuzz's stateful run) can call next with the answer,
  by operationId (the view's name), as OpenAPI link expressions.

Input is read when the view first asks for it, so checks a view makes
first (a token, the caller) keep their order. Refusals raised by services
are answered by ``errors.refusal_deriver``; nothing here catches them but a
batch sent as one object, whose row errors are answered as fields."""
from __future__ import annotations

import datetime as dt
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema

from guestguard.errors import APIError, Refusal
from guestguard.validation import parse_query, read_json, validate

Model = TypeVar("Model", bound=BaseModel)

OPTIONS = ("body", "query", "response", "checks_permission", "links")


# --- answers ------------------------------------------------------------------


# A moment as ``datetime.isoformat()`` writes it: "+00:00", never "Z".
Moment = Annotated[dt.datetime, PlainSerializer(lambda moment: moment.isoformat(), return_type=str),
                   WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization")]


class _With:
    """An object's attributes, some supplied or replaced."""

    __slots__ = ("_extra", "_obj")

    def __init__(self, obj: Any, extra: dict[str, Any]):
        self._obj = obj
        self._extra = extra

    def __getattr__(self, name: str) -> Any:
        extra = object.__getattribute__(self, "_extra")
        if name in extra:
            return extra[name]
        return getattr(object.__getattribute__(self, "_obj"), name)


class Out(BaseModel):
    """Base of every answer: built from an object's attributes (an ORM row,
    a dataclass); the field order is the JSON's key order."""

    model_config = ConfigDict(from_attributes=True, json_schema_serialization_defaults_required=True)

    @classmethod
    def of(cls: type[Model], obj: Any, **extra: Any) -> Model:
        """The answer for ``obj``; ``extra`` supplies what it does not carry."""
        return cls.model_validate(_With(obj, extra) if extra else obj)


class Message(Out):
    message: str


@dataclass(frozen=True)
class Refused:
    """Error codes a view's services may answer with at one status."""

    codes: tuple[str, ...]

    def __init__(self, *codes: str):
        object.__setattr__(self, "codes", codes)


@dataclass(frozen=True)
class Stream:
    """A body that is not JSON (Server-Sent Events, a file); ``media_type``
    may be a tuple when the answer is one of several (an export's format)."""

    media_type: str | tuple[str, ...]
    description: str = ""

    @property
    def media_types(self) -> tuple[str, ...]:
        return self.media_type if isinstance(self.media_type, tuple) else (self.media_type,)


# --- bodies -------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """A JSON object validated by ``model``. ``optional``: a request without
    a body gets the model's defaults; ``max_bytes`` replaces
    ``api.max_body_bytes``."""

    model: type[BaseModel]
    optional: bool = False
    max_bytes: int | None = None

    def read(self, request) -> BaseModel:
        if self.optional and not request.body:
            return self.model()
        return validate(self.model, read_json(request, self.max_bytes))

    def refusal(self, error: Refusal, read: Any) -> Refusal:
        return error


@dataclass(frozen=True)
class Batched(Generic[Model]):
    """What a ``Batch`` body read: its items, and whether an array was sent."""

    items: list[Model]
    many: bool


@dataclass(frozen=True)
class Batch:
    """One JSON object, or an array of 1 to ``settings[max_setting]`` of them,
    all or nothing: a bad array answers 422 with ``rows`` (index -> fields),
    a bad object with its ``fields``. ``counted_by`` is a rate-limit policy
    each item counts against (before the items are validated); ``noun`` and
    ``nouns`` name an item in the messages."""

    model: type[BaseModel]
    max_setting: str
    max_bytes: int | None = None
    counted_by: str | None = None
    noun: str = "item"
    nouns: str = "items"

    def read(self, request) -> Batched:
        from guestguard.ratelimit import enforce

        body = read_json(request, self.max_bytes)
        many = isinstance(body, list)
        items = body if many else [body]
        limit = request.registry.settings[self.max_setting]
        if many and not 1 <= len(items) <= limit:
            raise APIError(422, "validation_failed", f"Send 1 to {limit} {self.nouns} at once; nothing was added.",
                           count=len(items))
        if self.counted_by:
            enforce(request, self.counted_by, cost=len(items))
        inputs, problems = [], {}
        for index, item in enumerate(items):
            try:
                inputs.append(validate(self.model, item))
            except APIError as error:
                problems[str(index)] = error.extra.get("fields", {"body": error.error_message})
        if problems:
            if not many:
                raise APIError(422, "validation_failed", "Some fields are invalid.", fields=problems["0"])
            raise APIError(422, "validation_failed", f"Some rows are invalid; no {self.noun} was added.", rows=problems)
        return Batched(inputs, many)

    def refusal(self, error: Refusal, read: Batched | None) -> Refusal:
        """A refusal naming rows, for a request that sent one object: its fields."""
        if read is not None and not read.many and "rows" in error.extra:
            return Refusal(error.status, error.code, "Some fields are invalid.",
                           fields=error.extra["rows"]["0"])
        return error


@dataclass(frozen=True)
class UploadedFile:
    name: str
    data: bytes


@dataclass(frozen=True)
class Uploaded(Generic[Model]):
    """What a ``Multipart`` body read: its text fields validated, and its file (None when optional and absent)."""

    fields: Model
    file: UploadedFile | None


MULTIPART = "multipart/form-data"


@dataclass(frozen=True)
class Multipart:
    """A ``multipart/form-data`` body: one file part named ``file`` (at most
    ``settings[max_setting]`` bytes: 413 naming the limit) and text fields
    validated by ``model`` (422 naming each). With ``file_required=False``
    a url-encoded form without the file is taken too. The input guard lets
    a file part through only on routes listed by ``inputs.accept_uploads``."""

    model: type[BaseModel]
    max_setting: str
    file: str = "file"
    file_required: bool = True

    def read(self, request) -> Uploaded:
        forms = (MULTIPART,) if self.file_required else (MULTIPART, "application/x-www-form-urlencoded")
        if request.content_type not in forms:
            raise APIError(415, "unsupported_media_type",
                           f"Send the body as multipart/form-data, the file in its {self.file!r} part.")
        fields = {name: value for name, value in request.POST.items() if isinstance(value, str)}
        part = request.POST.get(self.file)
        fields.pop(self.file, None)
        found = None
        if part is not None and not isinstance(part, str):
            limit = request.registry.settings[self.max_setting]
            data = part.file.read(limit + 1)
            if len(data) > limit:
                raise APIError(413, "too_large", f"The file is larger than {limit:,} bytes, the most a guest "
                               "list may be; nothing was imported.", limit=limit)
            found = UploadedFile((part.filename or "upload").strip()[:255] or "upload", data)
        elif self.file_required:
            raise APIError(422, "validation_failed", "Attach the file.", fields={self.file: "is required"})
        return Uploaded(validate(self.model, fields), found)

    def refusal(self, error: Refusal, read: Any) -> Refusal:
        return error


def links_to(operations: tuple[str, ...], **parameters: str) -> dict[str, dict[str, str]]:
    """``links=`` to each of ``operations`` with the same parameters."""
    return {operation: dict(parameters) for operation in operations}


def as_body(option: Any) -> Body | Batch | Multipart | None:
    if option is None or isinstance(option, (Body, Batch, Multipart)):
        return option
    return Body(option)


def as_answers(option: Any) -> dict[int, Any]:
    """``response=`` as {status: model, None, Refused or Stream}."""
    if option is None:
        return {}
    if isinstance(option, Mapping):
        return {int(status): kind for status, kind in option.items()}
    return {200: option}


def model_types(kind: Any) -> tuple[type, ...]:
    """The classes a declared answer may be an instance of."""
    if get_origin(kind) in (Union, types.UnionType):
        return tuple(t for arg in get_args(kind) for t in model_types(arg))
    return (kind,) if isinstance(kind, type) and issubclass(kind, BaseModel) else ()


# --- the deriver --------------------------------------------------------------


@dataclass
class Declared:
    """What the view being run declared (``request.declared``)."""

    body: Body | Batch | Multipart | None
    query: type[BaseModel] | None


def body_input(request) -> Any:
    """The validated body (reified: read once, when first asked)."""
    declared = getattr(request, "declared", None)
    if declared is None or declared.body is None:
        raise AttributeError("this view declares no body: add body= to its view configuration")
    return declared.body.read(request)


def query_input(request) -> Any:
    """The validated query string (reified)."""
    declared = getattr(request, "declared", None)
    if declared is None or declared.query is None:
        raise AttributeError("this view declares no query: add query= to its view configuration")
    return parse_query(request, declared.query)


def contract_deriver(view, info):
    """``body``, ``query`` and ``response`` on a view (see the module's
    docstring). It sits next to the view callable, under the renderer, so
    it sees the model a view returns."""
    body = as_body(info.options.get("body"))
    query = info.options.get("query")
    answers = as_answers(info.options.get("response"))
    if body is None and query is None and not answers:
        return view
    statuses = [(status, model_types(kind)) for status, kind in answers.items()]
    statuses = [(status, found) for status, found in statuses if found]

    def declared_view(context, request):
        request.declared = Declared(body, query)
        try:
            result = view(context, request)
        except Refusal as error:
            if body is None:
                raise
            read = request.__dict__.get("body_input")
            answer = body.refusal(error, read)
            if answer is error:
                raise
            raise answer from None
        if isinstance(result, BaseModel):
            status = next((status for status, found in statuses if isinstance(result, found)), None)
            if status is None:
                raise TypeError(f"{info.original_view!r} answered a {type(result).__name__}, "
                                f"which its response= does not declare")
            request.response.status = status
            return result.model_dump(mode="json")
        return result

    return declared_view


contract_deriver.options = OPTIONS


def includeme(config) -> None:
    config.add_request_method(body_input, "body_input", reify=True)
    config.add_request_method(query_input, "query_input", reify=True)
    config.add_view_deriver(contract_deriver, under="rendered_view", over="mapped_view")
