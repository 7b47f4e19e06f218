"""Accept a sane ``X-Request-ID`` or make one; echo it, log it."""
from __future__ import annotations

import contextvars
import re
import uuid

HEADER = "X-Request-ID"
SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def request_id_for(value: str | None) -> str:
    """The caller's id when it is sane (8-128 letters, digits, ``. _ : -``),
    otherwise a fresh one: an odd value is replaced, never echoed."""
    if value and SANE.fullmatch(value):
        return value
    return uuid.uuid4().hex


def request_id_tween_factory(handler, registry):
    def tween(request):
        request_id = request_id_for(request.headers.get(HEADER))
        request.request_id = request_id
        token = current_request_id.set(request_id)
        try:
            response = handler(request)
        finally:
            current_request_id.reset(token)
        response.headers[HEADER] = request_id
        return response

    return tween
