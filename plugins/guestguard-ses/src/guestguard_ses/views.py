"""``POST /webhooks/ses``: Amazon SNS delivers SES's events here.

No login and no CSRF token: the message's signature is its credential. A
message is verified (signature, certificate host, age, topic) before
anything is stored; a genuine one is stored in the webhook inbox under its
SNS MessageId and answered 200 at once (a repeat too), and the worker acts
on it. Forged: 403. Malformed or stale: 400. Too large: 413. The signing
certificate out of reach: 503, so SNS delivers it again later."""
from __future__ import annotations

import datetime as dt
import json
import logging

from pydantic import BaseModel
from pyramid.response import Response

from guestguard.webhooks import InvalidWebhook, receive
from guestguard_ses import sns

log = logging.getLogger(__name__)

PROVIDER = "ses"
TYPE_HEADER = "x-amz-sns-message-type"


class Stored(BaseModel):
    """The message is in the inbox: ``stored`` is false for a repeat."""

    stored: bool


def _refuse(request, status: int, code: str, message: str) -> Response:
    log.info("SNS message refused (%d %s): %s", status, code, message)
    answer = Response(json_body={"error": {"code": code, "message": message}}, status=status)
    if status == 503:
        answer.headers["Retry-After"] = "60"
    return answer


def ses_events(request):
    """Amazon SNS delivers an Amazon SES event (or a subscription confirmation)."""
    limit = request.registry.settings["webhooks.max_payload_bytes"]
    if (request.content_length or 0) > limit or len(request.body) > limit:
        return _refuse(request, 413, "too_large", f"The body is larger than {limit} bytes.")
    try:
        text = request.body.decode("utf-8")
        message = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return _refuse(request, 400, "invalid_notification", "The body is not a JSON SNS message.")
    header = request.headers.get(TYPE_HEADER)
    if header is not None and isinstance(message, dict) and header != message.get("Type"):
        return _refuse(request, 400, "invalid_notification", f"{TYPE_HEADER} does not match the message's Type.")
    try:
        sns.verify(message, request.registry["ses.sns_policy"], request.registry["ses.certificates"],
                   dt.datetime.now(dt.UTC))
    except sns.Refused as refused:
        if refused.forged:
            return _refuse(request, 403, "forged_notification", f"Not a genuine SNS message: {refused}.")
        return _refuse(request, 400, "invalid_notification", f"Not an acceptable SNS message: {refused}.")
    except sns.CertificateUnavailable as exc:
        return _refuse(request, 503, "certificate_unavailable", f"The signing certificate is out of reach: {exc}.")
    try:
        received = receive(request.ctx, PROVIDER, message["MessageId"], text,
                           {TYPE_HEADER: message["Type"]})
    except InvalidWebhook as exc:
        return _refuse(request, 400, "invalid_notification", f"The message cannot be stored: {exc}.")
    return Stored(stored=not received.duplicate)
