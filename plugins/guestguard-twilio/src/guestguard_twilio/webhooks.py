"""Twilio's calls to us: message status callbacks and incoming texts.

Both are form posts signed by Twilio (``X-Twilio-Signature``: HMAC-SHA1 of
the URL Twilio called and the sorted form fields, keyed with the auth
token), checked with twilio's ``RequestValidator`` against the URL built
from ``twilio.public_base_url``, never from the Host header, so the check
holds behind a proxy. A missing or wrong signature is a 403 and nothing is
stored. A signed call is stored in the webhook inbox and answered at once;
the worker then acts on it (``TwilioWebhooks.handle``).

* Status callbacks (one per status change of a message we sent) are stored
  as ``status:<MessageSid>:<MessageStatus>``, so a repeat is a no-op and
  each status is applied once; the notification's delivery state only moves
  forward, so a late "sent" after "delivered" changes nothing.
* Incoming texts are stored as ``inbound:<MessageSid>`` only when the whole
  body is an opt-out word (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT:
  the number is suppressed everywhere, reason STOP) or an opt-in word
  (START, UNSTOP, YES: a STOP suppression is lifted, never one an operator
  or a bounce made). Anything else, HELP included, is answered and not
  kept: Twilio answers the keywords itself, and a guest's other texts are
  none of our business. The answer is empty TwiML: we send no reply.
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from urllib.parse import parse_qs

from pyramid.httpexceptions import HTTPNoContent
from pyramid.response import Response

from guestguard.notifications import suppression
from guestguard.notifications.delivery import advance_delivery, record_cost
from guestguard.webhooks import InvalidWebhook, receive
from guestguard_twilio.provider import INBOUND_PATH, STATUS_PATH, TwilioConfig

log = logging.getLogger(__name__)

PROVIDER = "twilio"
MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-f]{32}")
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "UNSTOP", "YES"})
NOT_SIGNED = "The request is not signed by Twilio."
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

# Message statuses Twilio reports, and the delivery report each one is.
# Statuses before "sent" change nothing: the row is "queued" from the start.
NOT_YET = frozenset({"accepted", "scheduled", "queued", "sending"})
REPORTS = {"sent": "sent", "delivered": "delivered", "read": "delivered", "partially_delivered": "delivered",
           "failed": "failed", "canceled": "failed"}
UNDELIVERED = "undelivered"
STATUSES = NOT_YET | frozenset(REPORTS) | {UNDELIVERED}
# Undelivered because of the number itself: it does not exist, cannot take
# texts (a landline) or refuses ours. Retrying never helps, so it counts as
# a hard bounce and the number is suppressed (an operator can lift it).
# Other undelivered codes (30003: the phone is off or out of coverage;
# 30007: a carrier filtered the content; 30008: unknown) say nothing
# lasting about the number: the message failed, the next one is tried.
BOUNCE_CODES = {
    "30004": "the recipient's carrier or the recipient blocks our messages",
    "30005": "the number does not exist or is no longer in service",
    "30006": "the number cannot receive text messages (a landline, or an unreachable carrier)",
}
FAILURE_CODES = {
    "30003": "the phone was switched off or out of coverage",
    "30007": "a carrier filtered the message as spam",
    "30008": "the carrier gave no reason",
    "21610": "the recipient replied STOP to this sender",
}
UNSUBSCRIBED_RECIPIENT = "21610"


class Refused(Exception):
    """A call answered with ``status`` and ``message`` (plain text), nothing
    stored. Not Pyramid's HTTPForbidden: that is the sign-in redirect's cue."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def answering_refusals(view):
    @functools.wraps(view)
    def answer(request):
        try:
            return view(request)
        except Refused as refused:
            return Response(str(refused), status=refused.status, content_type="text/plain", charset="utf-8")

    return answer


def signed_form(request, config: TwilioConfig, path: str) -> Mapping[str, str]:
    """The call's form fields, once its size, shape and signature are
    checked; Refused (the status and words that answer it) otherwise."""
    limit = request.registry.settings["webhooks.max_payload_bytes"]
    if (request.content_length or 0) > limit or len(request.body) > limit:
        raise Refused(413, f"The body is larger than {limit} bytes.")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not config.auth_token or not signature:
        # Without an auth token anyone could sign with the empty key.
        raise Refused(403, NOT_SIGNED)
    if request.content_type != "application/x-www-form-urlencoded":
        raise Refused(400, "The body must be a form (application/x-www-form-urlencoded).")
    try:
        request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "The body must be UTF-8 text.") from None
    from twilio.request_validator import RequestValidator  # at the first call, not when the plugin loads

    url = config.public_base_url + path + (f"?{request.query_string}" if request.query_string else "")
    if not RequestValidator(config.auth_token).validate(url, request.POST, signature):
        log.warning("a call to %s with a wrong Twilio signature was refused", path)
        raise Refused(403, NOT_SIGNED)
    return request.POST


def field(form: Mapping[str, str], name: str, allowed: re.Pattern | frozenset) -> str:
    """A field Twilio always sends, checked for its shape (400 naming it)."""
    value = form.get(name, "")
    if not (value in allowed if isinstance(allowed, frozenset) else allowed.fullmatch(value)):
        raise Refused(400, f"{name} is missing or not one Twilio sends.")
    return value


def keyword(body: str) -> str:
    """The text's keyword (the whole body, trimmed, upper-cased)."""
    return body.strip().upper()


def store(request, event_id: str) -> None:
    try:
        received = receive(request.ctx, PROVIDER, event_id, request.body.decode("utf-8"))
    except InvalidWebhook as exc:
        raise Refused(400, f"The call cannot be stored: {exc}.") from None
    if received.duplicate:
        log.info("twilio webhook %s was stored before: a repeat, nothing changed", received.id)


@answering_refusals
def status_callback(request):
    """POST /webhooks/twilio/status: a message we sent changed status."""
    form = signed_form(request, request.registry["twilio.config"], STATUS_PATH)
    sid = field(form, "MessageSid", MESSAGE_SID)
    status = field(form, "MessageStatus", STATUSES)
    store(request, f"status:{sid}:{status}")
    return HTTPNoContent()


@answering_refusals
def inbound_message(request):
    """POST /webhooks/twilio/inbound: someone texted our number."""
    form = signed_form(request, request.registry["twilio.config"], INBOUND_PATH)
    sid = field(form, "MessageSid", MESSAGE_SID)
    word = keyword(form.get("Body", ""))
    if word in OPT_OUT or word in OPT_IN:
        store(request, f"inbound:{sid}")
    return Response(EMPTY_TWIML, content_type="text/xml", charset="utf-8")


# --- in the worker -------------------------------------------------------------


def form_of(body: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(body, keep_blank_values=True).items()}


class TwilioWebhooks:
    """Acts on the stored calls (``register_webhook_handlers``)."""

    provider = PROVIDER

    def handle(self, ctx, webhook) -> str:
        kind = webhook.event_id.partition(":")[0]
        form = form_of(webhook.body)
        if kind == "status":
            return apply_status(ctx, form)
        if kind == "inbound":
            return apply_keyword(ctx, form)
        return f"{webhook.event_id!r} is no kind of Twilio call this plugin stores: nothing done"


def apply_status(ctx, form: Mapping[str, str]) -> str:
    sid = form["MessageSid"]
    note = apply_state(ctx, form)
    # Twilio's callbacks may carry the segments and, once it is known, the
    # price; when they do, they are kept.
    if any(form.get(name) for name in ("NumSegments", "Price")):
        note += "; " + record_cost(ctx, PROVIDER, sid, segments=form.get("NumSegments"),
                                   price=form.get("Price"), price_unit=form.get("PriceUnit"))
    return note


def apply_state(ctx, form: Mapping[str, str]) -> str:
    sid, status, code = form["MessageSid"], form["MessageStatus"], form.get("ErrorCode", "")
    if status in NOT_YET:
        return f"{sid} is {status}: no state to record"
    if status == UNDELIVERED and code in BOUNCE_CODES:
        return advance_delivery(ctx, PROVIDER, sid, "bounced", f"Twilio {code}: {BOUNCE_CODES[code]}")
    report = REPORTS.get(status, "failed")
    detail = None
    if report == "failed":
        meaning = FAILURE_CODES.get(code, "Twilio gave no reason" if not code else "see Twilio's error code")
        detail = f"{status}" + (f", Twilio {code}" if code else "") + f": {meaning}"
    note = advance_delivery(ctx, PROVIDER, sid, report, detail)
    if code == UNSUBSCRIBED_RECIPIENT and form.get("To"):
        try:
            suppression.suppress(ctx, "sms", form["To"], suppression.STOP, source=PROVIDER)
        except suppression.AddressError:
            return note + "; the recipient is not a number the suppression list can hold"
        note += "; the recipient replied STOP to this sender earlier: suppressed"
    return note


def apply_keyword(ctx, form: Mapping[str, str]) -> str:
    word, sender = keyword(form.get("Body", "")), form.get("From", "")
    try:
        if word in OPT_OUT:
            suppression.suppress(ctx, "sms", sender, suppression.STOP, source=PROVIDER)
            return f"{word}: the sender is suppressed (reason stop)"
        if word in OPT_IN:
            lifted = suppression.lift(ctx, "sms", sender, reason=suppression.STOP)
            return f"{word}: {'the STOP was lifted' if lifted else 'no STOP to lift'}"
    except suppression.AddressError:
        return f"{word}: the sender is not a number the suppression list can hold; nothing done"
    return "not an opt-out or opt-in word: nothing done"
