"""``POST /webhooks/stripe``: Stripe delivers its events here.

No login and no CSRF token: the ``Stripe-Signature`` header is the
credential, verified with the Stripe SDK against each configured secret
(two during a rotation) and the tolerance setting before anything is
stored. A genuine event is stored in the webhook inbox under its event id
and answered 200 at once (a repeat too); the worker acts on it. Forged or
stale: 400 (Stripe's own advice: any non-2xx makes it retry, and a
signature that never verifies stops being retried after three days)."""
from __future__ import annotations

import json
import logging

from pydantic import BaseModel
from pyramid.response import Response

from guestguard.webhooks import InvalidWebhook, receive

log = logging.getLogger(__name__)

PROVIDER = "stripe"
SIGNATURE_HEADER = "Stripe-Signature"


class Stored(BaseModel):
    """The event is in the inbox: ``stored`` is false for a repeat."""

    stored: bool


def _refuse(status: int, code: str, message: str) -> Response:
    log.info("Stripe webhook refused (%d %s): %s", status, code, message)
    return Response(json_body={"error": {"code": code, "message": message}}, status=status)


def verify(payload: str, header: str | None, secrets: tuple[str, ...], tolerance: int) -> str | None:
    """None when the signature is Stripe's for one of ``secrets`` within
    ``tolerance`` seconds; otherwise why not."""
    if not secrets:
        return "no webhook secret is configured (stripe.webhook_secrets)"
    import stripe  # at the first event, not when the plugin loads (see backend.py)

    reason = "no signature matches"
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
            return None
        except stripe.SignatureVerificationError as failed:
            reason = str(failed).split(".")[0]
    return reason


def stripe_events(request):
    """Stripe delivers an event."""
    settings = request.registry.settings
    limit = settings["webhooks.max_payload_bytes"]
    if (request.content_length or 0) > limit or len(request.body) > limit:
        return _refuse(413, "too_large", f"The body is larger than {limit} bytes.")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return _refuse(400, "invalid_event", "The body is not UTF-8 text.")
    problem = verify(text, request.headers.get(SIGNATURE_HEADER), settings["stripe.webhook_secrets"],
                     settings["stripe.webhook_tolerance"])
    if problem is not None:
        return _refuse(400, "invalid_signature", f"Not a genuine, fresh Stripe event: {problem}.")
    try:
        event = json.loads(text)
        event_id, kind = event["id"], event["type"]
    except (ValueError, KeyError, TypeError):
        return _refuse(400, "invalid_event", "The body is not a Stripe event (id and type).")
    if not isinstance(event_id, str) or not isinstance(kind, str):
        return _refuse(400, "invalid_event", "The event's id and type must be text.")
    try:
        received = receive(request.ctx, PROVIDER, event_id, text, {"type": kind[:100]})
    except InvalidWebhook as exc:
        return _refuse(400, "invalid_event", f"The event cannot be stored: {exc}.")
    return Stored(stored=not received.duplicate)
