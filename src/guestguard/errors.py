"""One error format. API paths (``/api/``) answer
``{"error": {"code", "message", ...}}``; HTML paths render an error page."""
from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from pyramid.exceptions import BadCSRFOrigin, BadCSRFToken, URLDecodeError
from pyramid.httpexceptions import HTTPException, HTTPInternalServerError
from pyramid.renderers import render_to_response
from pyramid.response import Response
from pyramid.view import exception_view_config, notfound_view_config

log = logging.getLogger(__name__)

API_PREFIX = "/api/"

CODES = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

MESSAGES = {
    404: "The resource was not found.",
    500: "Something went wrong on our side. The request id identifies it in our logs.",
}


class APIError(HTTPException):
    """An error with a machine-readable code, raised from any view or service
    called by one. ``extra`` fields join the error body (``fields``,
    ``required``, ``retry_after``...)."""

    def __init__(self, status: int, code: str | None = None, message: str = "", **extra: Any):
        self.code = status
        self.title = HTTPStatus(status).phrase
        self.error_code = code or CODES.get(status, "error")
        self.error_message = message or MESSAGES.get(status, "")
        self.extra = extra
        super().__init__(detail=self.error_message)


class Refusal(Exception):
    """A service saying no: an HTTP status, a machine code and a message for
    people; ``field`` names the input at fault, ``extra`` joins the error
    body. Views let it through: ``refusal_deriver`` turns it into the answer
    inside the transaction, so what the refusal recorded (audit rows,
    counters) commits."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra


def refusal(request, error: Refusal) -> Response:
    """The house's JSON error for a refusal."""
    extra = dict(error.extra)
    if error.field:
        extra.setdefault("fields", {error.field: error.message})
    return json_error(request, error.status, error.code, error.message, **extra)


def refusal_deriver(view, info):
    """Every view: a Refusal its services raise becomes the answer (JSON
    under /api/, an error page elsewhere). The deriver *returns* that answer
    rather than letting the exception through, so the request's transaction
    commits what the refusal recorded (audit rows, counters), exactly as a
    view that caught it itself."""

    def answering_refusals(context, request):
        try:
            return view(context, request)
        except Refusal as error:
            if is_api_request(request):
                return refusal(request, error)
            return html_error(request, error.status, error.message, **error.extra)

    return answering_refusals


def validation_error(fields: dict[str, str], message: str = "Some fields are invalid.") -> APIError:
    return APIError(422, "validation_failed", message, fields=fields)


TOKEN_SEGMENT = re.compile(r"/[A-Za-z0-9_-]{32,}")


def redacted(path: str) -> str:
    """A path fit for a log line: segments that look like tokens are cut."""
    return TOKEN_SEGMENT.sub("/[redacted]", path)


def raw_path(request) -> str:
    """The path as the server received it: decoding may be what failed."""
    return request.environ.get("PATH_INFO", "")


def is_api_request(request) -> bool:
    path = raw_path(request)
    return path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")


def error_body(status: int, code: str | None = None, message: str = "", **extra: Any) -> dict:
    body = {"code": code or CODES.get(status, "error"),
            "message": message or MESSAGES.get(status, "")}
    body.update(extra)
    return {"error": body}


def json_error(request, status: int, code: str | None = None, message: str = "",
               headers: dict[str, str] | None = None, **extra: Any) -> Response:
    response = Response(json_body=error_body(status, code, message, **extra), status=status,
                        charset="utf-8")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def html_error(request, status: int, message: str = "", **extra: Any) -> Response:
    template = f"errors/{status}.jinja2" if status in (402, 403, 404, 429, 500) else "errors/generic.jinja2"
    response = render_to_response(
        template, {"status": status, "message": message, **extra}, request=request)
    response.status = status
    return response


@notfound_view_config()
def not_found(exc, request):
    if is_api_request(request):
        return json_error(request, 404)
    return html_error(request, 404)


@exception_view_config(HTTPException)
def http_exception(exc: HTTPException, request):
    if exc.code < 400:
        return exc
    carried = {k: v for k, v in exc.headers.items()
               if k.lower() in ("retry-after", "www-authenticate", "allow", "location",
                                "ratelimit", "ratelimit-policy")}
    if isinstance(exc, APIError):
        code, message, extra = exc.error_code, exc.error_message, exc.extra
    else:
        code, message, extra = None, exc.detail or MESSAGES.get(exc.code, exc.title), {}
    if is_api_request(request):
        response = json_error(request, exc.code, code, message, **extra)
    else:
        response = html_error(request, exc.code, message, **extra)
    response.headers.update(carried)
    return response


@exception_view_config(URLDecodeError)
def undecodable_url(exc, request):
    message = "The address contains an invalid character encoding."
    if is_api_request(request):
        return json_error(request, 400, "bad_request", message)
    return html_error(request, 400, message)


@exception_view_config(BadCSRFToken)
@exception_view_config(BadCSRFOrigin)
def csrf_failed(exc, request):
    if is_api_request(request):
        return json_error(request, 400, "csrf_failed",
                          "Missing or wrong CSRF token: cookie-authenticated requests send it "
                          "in the X-CSRF-Token header.")
    return html_error(request, 400, "This form has expired or did not come from this site. "
                                    "Go back, reload the page and try again.")


@exception_view_config(Exception)
def unexpected(exc: Exception, request):
    log.error("unhandled error on %s %r", request.method, redacted(raw_path(request)), exc_info=exc)
    if is_api_request(request):
        return json_error(request, 500)
    try:
        return html_error(request, 500)
    except Exception:  # the error page itself must never fail
        return HTTPInternalServerError()


def includeme(config) -> None:
    config.add_view_deriver(refusal_deriver)
    config.scan(__name__)
