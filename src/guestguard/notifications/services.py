"""The notification outbox: queue a message as a row, then deliver it from a
task with retries on the durable-job block."""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from sqlalchemy import bindparam, func, insert, select, update

from guestguard import keys, sms_segments
from guestguard.db import ALL_ROWS, utcnow
from guestguard.domain import emit_many
from guestguard.events.models import Guest
from guestguard.notifications import resilience, suppression, unsubscribe
from guestguard.notifications.delivery import (
    FAILED,
    SENT,
    SUPPRESSED,
    DayCounts,
    announce,
    count_day,
    moves_forward,
    outcome_event,
    set_delivery_state,
)
from guestguard.notifications.models import Notification
from guestguard.notifications.suppression import ACCOUNT_MESSAGE, GUEST_MESSAGE, MESSAGE_KINDS, Listed
from guestguard.plugins import NotificationProvider, OutgoingMessage
from guestguard.tasks import (
    INTERRUPTED,
    PENDING,
    claim_jobs,
    enqueue,
    enqueue_job,
    fail_job,
    finish_job,
    job_task,
    still_claimed,
    was_interrupted,
)

log = logging.getLogger(__name__)

# Seconds to wait before each retry; after the last one the message fails.
RETRY_BACKOFF = (1, 5, 30, 300, 1800)
# SUPPRESSED (from delivery): a final status beside sent and failed, the
# address being on the suppression list; that message's delivery state too.
SEAL_PURPOSE = "notifications.sealed-context"
# Why a message to a guest the host removed is not sent: it fails, and a
# guest put back afterwards gets what the host sends them next.
GUEST_REMOVED = "the guest was removed from the list"
UNKNOWN_OUTCOME_RESENDS = Counter(
    "gg_notification_unknown_outcome_resends", "Attempts that send again a message whose previous attempt "
    "ended with no recorded outcome (its worker stopped or lost the database): the provider may have "
    "accepted it, so the person may get it twice.", ["channel"])
RECONCILED = Counter(
    "gg_notification_reconciled", "Attempts after one whose outcome is unknown that asked the provider and "
    "found the message already accepted: recorded as sent, not sent again.", ["channel"])


def message_id_for(settings: Mapping[str, Any], notification_id: uuid.UUID) -> str:
    """The Message-ID of an email notification: its id at the sender's domain
    (the host of app.base_url when the sender's is not plain ASCII)."""
    domain = _message_domain(settings['notifications.email.sender'], settings['app.base_url'])
    return f"<{notification_id.hex}@{domain}>"


@functools.lru_cache(maxsize=8)
def _message_domain(sender: str, base_url: str) -> str:
    from email.utils import parseaddr
    from urllib.parse import urlsplit

    domain = parseaddr(sender)[1].rpartition("@")[2]
    if not domain or not domain.isascii():
        domain = urlsplit(base_url).hostname or "localhost"
    return domain


def queue_notification(
    ctx,
    *,
    channel: str,
    recipient: str,
    template: str,
    context: Mapping[str, Any] | None = None,
    sealed: Mapping[str, Any] | None = None,
    workspace_id: uuid.UUID | None = None,
    about: Mapping[str, str] | None = None,
    kind: str = ACCOUNT_MESSAGE,
    plan_counted: bool = False,
) -> Notification:
    """Store a notification and enqueue its delivery after commit.

    ``sealed`` values (links with tokens) are rendered like ``context`` but
    stored encrypted and erased once the message is sent or has failed.
    ``about`` names what the message concerns; it travels with the
    ``notification.sent`` and ``notification.failed`` domain events.
    ``kind`` is GUEST_MESSAGE for what a workspace sends its guests (an
    unsubscribe from that workspace stops it), else ACCOUNT_MESSAGE.
    A text longer than ``notifications.sms.max_segments`` raises
    ``sms_segments.MessageTooLong`` and nothing is stored. A text to a guest
    counts against the workspace's plan (402 ``plan_limit`` past it) unless
    the caller counted it already (``plan_counted``).
    """
    values = _row_values(ctx, channel=channel, recipient=recipient, template=template, context=context,
                         sealed=sealed, workspace_id=workspace_id, about=about, kind=kind, plan_counted=plan_counted)
    notification = Notification(**values)
    ctx.db.add(notification)
    ctx.db.flush()
    enqueue_job(ctx, notification)
    return notification


@dataclass(frozen=True)
class Outgoing:
    """One message of a bulk action, as ``queue_notification`` takes it."""

    channel: str
    recipient: str
    template: str
    context: Mapping[str, Any]
    sealed: Mapping[str, Any] | None = None
    workspace_id: uuid.UUID | None = None
    about: Mapping[str, str] | None = None
    kind: str = ACCOUNT_MESSAGE
    # A text to a guest the caller counted against the plan already.
    plan_counted: bool = False


def queue_notifications(ctx, messages: list[Outgoing]) -> list[uuid.UUID]:
    """``queue_notification`` for a bulk action's messages: the same checks
    and one multi-row INSERT. Their ids, in the order given."""
    checked: set[tuple[str, str]] = set()
    rows = [_row_values(ctx, channel=m.channel, recipient=m.recipient, template=m.template, context=m.context,
                        sealed=m.sealed, workspace_id=m.workspace_id, about=m.about, kind=m.kind,
                        plan_counted=m.plan_counted, checked=checked)
            for m in messages]
    if rows:
        now = utcnow()
        ctx.db.execute(insert(Notification), [whole_row(row, now) for row in rows])
    # A delivery task per batch: it sends them one after another, and a send
    # that keeps it waiting gives the rest back (``Patience``), so a provider
    # that hangs holds one message while other threads send the others.
    ids = [row["id"] for row in rows]
    size = ctx.settings["notifications.batch_size"]
    for start in range(0, len(ids), size):
        batch = ids[start:start + size]
        if len(batch) == 1:
            deliver_after_commit(ctx, batch[0])
        else:
            enqueue(ctx, ctx.registry["notifications.batch_task"], batch)
    return ids


def notification_row(ctx, **message: Any) -> dict[str, Any]:
    """``queue_notification``'s row, checked the same way, every column
    given, for a caller that writes it in a statement of its own (a guest's
    answer writes its confirmation with the rest of the answer); the caller
    then queues its delivery with ``deliver_after_commit``."""
    return whole_row(_row_values(ctx, **message), utcnow())


def deliver_after_commit(ctx, notification_id: uuid.UUID) -> None:
    enqueue(ctx, job_task(ctx.registry, Notification), notification_id)


def whole_row(row: Mapping[str, Any], now) -> dict[str, Any]:
    return {**DEFAULTS, "created_at": now, "updated_at": now, "next_attempt_at": now, **row}


# What a row made by queue_notifications holds beside its message (the
# model's defaults, given here so every row of the INSERT has every column).
DEFAULTS = {"status": PENDING, "attempts": 0, "claimed_at": None, "lease_until": None, "last_error": None,
            "provider": None, "provider_message_id": None, "sent_at": None, "delivery_state": "queued",
            "delivery_detail": None, "delivered_at": None, "segments": None, "price": None, "price_unit": None}


def _row_values(ctx, *, channel: str, recipient: str, template: str, context: Mapping[str, Any] | None,
                sealed: Mapping[str, Any] | None, workspace_id: uuid.UUID | None, about: Mapping[str, str] | None,
                kind: str, plan_counted: bool = False, checked: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """A notification's row, checked: a known kind, a served channel, an
    existing template, a text within the segment cap, a guest's text within
    the plan (unless ``plan_counted``). ``checked``: the (channel, template)
    pairs a batch has found already."""
    if kind not in MESSAGE_KINDS:
        raise ValueError(f"unknown message kind {kind!r}")
    if channel not in ctx.registry["notifications.providers"]:
        raise ValueError(f"no provider serves the {channel!r} channel")
    if checked is None or (channel, template) not in checked:
        ctx.registry["notifications.renderer"].check(channel, template)
        if checked is not None:
            checked.add((channel, template))
    if channel == "sms":
        measure_sms(ctx, template, {**(context or {}), **(sealed or {})})
        if workspace_id is not None and kind == GUEST_MESSAGE and not plan_counted:
            from guestguard.billing.services import SMS, charge

            charge(ctx, workspace_id, SMS, event_id=_event_of(about))
    notification_id = uuid.uuid4()
    return {"id": notification_id,
            "message_id": message_id_for(ctx.settings, notification_id) if channel == "email" else None,
            "channel": channel, "recipient": recipient, "template": template, "kind": kind,
            "context": dict(context or {}), "sealed_context": seal(ctx.settings, sealed) if sealed else None,
            "workspace_id": workspace_id, "about": dict(about or {}), "guest_id": _guest_of(about)}


def _guest_of(about: Mapping[str, str] | None) -> uuid.UUID | None:
    """The guest a message is about, for the indexed ``guest_id``."""
    guest_id = (about or {}).get("guest_id")
    return uuid.UUID(str(guest_id)) if guest_id else None


def _event_of(about: Mapping[str, str] | None) -> uuid.UUID | None:
    """The event a guest's text is about (its own plan may count the text)."""
    try:
        return uuid.UUID((about or {}).get("event_id", ""))
    except ValueError:
        return None


def measure_sms(ctx, template: str, context: Mapping[str, Any]) -> sms_segments.SmsLength:
    """The length of the text ``template`` renders to; MessageTooLong when
    it is over ``notifications.sms.max_segments``. Texts are refused here,
    before they are queued, so the person who asked for one hears why; the
    SMS provider refuses one over the cap again as a backstop."""
    rendered = ctx.registry["notifications.renderer"].render("sms", template, context)
    return sms_segments.check(sms_segments.sms_body(rendered.text), ctx.settings["notifications.sms.max_segments"])


def drop_secrets(notification: Notification) -> None:
    """Called once a notification is final: sealed values are not kept."""
    notification.sealed_context = None


def finish_given_up(notification: Notification) -> None:
    """The reaper gave up on the message: its attempts all stopped without
    an outcome recorded. One a provider had accepted (noted: ``sent_at``)
    was sent, so it is finished as sent and counted on the day it was sent,
    as a recorded success is (``sent_values``); any other stays failed.
    Its sealed values go either way."""
    drop_secrets(notification)
    if notification.sent_at is not None:
        notification.status, notification.last_error = Notification.succeeded_status, None
        count_day(notification, SENT, notification.sent_at)


def seal(settings: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    return keys.seal(settings, SEAL_PURPOSE, json.dumps(dict(values)).encode()).decode()


def unseal(settings: Mapping[str, Any], token: str) -> dict[str, Any]:
    return json.loads(keys.open_sealed(settings, SEAL_PURPOSE, token.encode()))


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt needs, read while the job is claimed."""

    notification_id: uuid.UUID
    claimed_at: dt.datetime
    provider: NotificationProvider | None
    message: OutgoingMessage | None
    error: str | None
    # The previous attempt ended with no recorded outcome: the provider may
    # already have accepted this message.
    interrupted: bool = False
    # The address is on the suppression list: the message must not go out.
    suppressed: Listed | None = None
    # The providers to try (the channel's, then its fallback) and their breakers.
    route: resilience.Route | None = None
    breakers: Any = None
    # The provider of the attempt whose outcome is unknown: the one to ask.
    earlier: NotificationProvider | None = None
    # An earlier attempt's note that a provider accepted the message (its
    # message id and the provider's name), its outcome not recorded: the
    # message is not sent again.
    accepted: tuple[str | None, str | None] | None = None
    # The provider's name the claim writes on the row (the channel's, or
    # the route's once one is chosen); None: the row keeps its own.
    chosen: str | None = None


def begin_attempt(ctx, notification_id) -> Attempt | None:
    """Claim the notification and render it; None when it is not ours to send."""
    attempts = begin_attempts(ctx, [notification_id])
    return attempts[0] if attempts else None


def begin_attempts(ctx, notification_ids) -> list[Attempt]:
    """Claim notifications (in one statement, read as plain rows, not
    objects) and render each; those not ours to send (or held) are left
    out. The provider each attempt goes through is written on its row
    (one UPDATE for all): the one to ask when the outcome is lost."""
    claimed = claim_jobs(ctx, Notification, notification_ids, columns=CLAIM_READS)
    stopped = suppression.stopping_many(ctx.db, [(n.id, n.channel, n.recipient, n.kind, n.workspace_id)
                                                 for n in claimed])
    removed = removed_guests(ctx.db, {n.guest_id for n in claimed if n.kind == GUEST_MESSAGE and n.guest_id})
    attempts = [Attempt(notification.id, notification.claimed_at, None, None, GUEST_REMOVED)
                if notification.guest_id in removed and not noted(notification)
                else prepare_attempt(ctx, notification, stopped.get(notification.id)) for notification in claimed]
    attempts = [attempt for attempt in attempts if attempt is not None]
    chosen = [{"notification_id": attempt.notification_id, "chosen": attempt.chosen,
               "message_id": (attempt.message.message_id or None) if attempt.message is not None else None}
              for attempt in attempts if attempt.chosen is not None]
    if chosen:
        ctx.db.execute(CHOSEN, chosen)
    return attempts


# What preparing an attempt reads of a claimed notification's row.
CLAIM_READS = (Notification.claimed_at, Notification.attempts, Notification.last_error, Notification.channel,
               Notification.recipient, Notification.template, Notification.kind, Notification.context,
               Notification.sealed_context, Notification.workspace_id, Notification.guest_id,
               Notification.provider, Notification.provider_message_id, Notification.message_id,
               Notification.sent_at)
# The attempt's provider, and the Message-ID of an email queued before
# Message-IDs were kept.
CHOSEN = (update(Notification.__table__).where(Notification.__table__.c.id == bindparam("notification_id"))
          .values(provider=bindparam("chosen"),
                  message_id=func.coalesce(Notification.__table__.c.message_id, bindparam("message_id"))))


def noted(notification: Notification) -> bool:
    """Whether a provider accepted the message on an attempt whose outcome
    was not recorded (its worker died, or the reaper gave up on it): the
    acceptance's note (``tasks.note_accepted``) set ``sent_at``, which
    otherwise only a recorded success sets. Such a message is recorded as
    sent, never sent again."""
    return notification.sent_at is not None


def removed_guests(db, guest_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``guest_ids`` the host has removed from the list (the undo
    window still open; once it closes the purge fails their messages)."""
    if not guest_ids:
        return set()
    return set(db.scalars(select(Guest.id).where(Guest.id.in_(guest_ids), Guest.removed_at.is_not(None))
                          .execution_options(**{ALL_ROWS: True})))


def prepare_attempt(ctx, notification: Any, listed: Listed | None) -> Attempt | None:
    """Render a claimed notification (its row, read with ``CLAIM_READS``)
    for its provider, or say why it is not sent (None: held for later).
    ``listed``: its suppression (``stopping_many``)."""
    earlier = ctx.registry["notifications.providers_by_name"].get(notification.provider or "")
    provider = ctx.registry["notifications.providers"].get(notification.channel)
    if noted(notification):
        return Attempt(notification.id, notification.claimed_at, provider, None, None,
                       accepted=(notification.provider_message_id, notification.provider))
    if provider is None:
        return Attempt(notification.id, notification.claimed_at, None, None,
                       f"no provider for {notification.channel}")
    if listed is not None:
        return Attempt(notification.id, notification.claimed_at, provider, None,
                       f"suppressed: {listed.text}", suppressed=listed, chosen=provider.name)
    route = resilience.plan(ctx, notification)
    if isinstance(route, resilience.Hold):  # quiet hours, or every provider's breaker open
        held = ctx.db.get(Notification, notification.id, populate_existing=True)
        held.provider = provider.name
        resilience.hold(ctx, held, route)
        return None
    chosen = route.provider.name
    settings = ctx.settings
    message_id = notification.message_id
    if notification.channel == "email" and not message_id:  # queued before Message-IDs were kept
        message_id = message_id_for(settings, notification.id)
    unsubscribe_url = ""
    # Texts are stopped by replying STOP, which the SMS provider handles.
    if notification.kind == GUEST_MESSAGE and notification.workspace_id and notification.channel == "email":
        unsubscribe_url = unsubscribe.url_for(settings, unsubscribe.Subscription(
            notification.workspace_id, notification.channel, notification.recipient))
    try:
        context = dict(notification.context)
        if notification.sealed_context:
            context.update(unseal(settings, notification.sealed_context))
        if unsubscribe_url:
            context["unsubscribe_url"] = unsubscribe_url
        rendered = ctx.registry["notifications.renderer"].render(
            notification.channel, notification.template, context)
    except keys.Unreadable:
        return Attempt(notification.id, notification.claimed_at, provider, None,
                       "sealed context cannot be decrypted", chosen=chosen)
    except Exception as exc:  # a template error will not fix itself
        return Attempt(notification.id, notification.claimed_at, provider, None,
                       f"rendering failed: {exc!r}", chosen=chosen)
    message = OutgoingMessage(
        notification_id=notification.id,
        channel=notification.channel,
        recipient=notification.recipient,
        sender=sender_for(settings, notification) if notification.channel == "email" else "",
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id or "",
        unsubscribe_url=unsubscribe_url,
        reply_to=(str(context.get("reply_to") or "")
                  if notification.kind == GUEST_MESSAGE and notification.channel == "email" else ""),
        timeout=settings["notifications.send_timeout_seconds"],
    )
    # The last attempt's worker stopped (or lost the database) before it
    # recorded what the provider said: it may have sent the message.
    interrupted = was_interrupted(notification)
    return Attempt(notification.id, notification.claimed_at, route.provider, message, None,
                   interrupted=interrupted, route=route, breakers=ctx.registry["notifications.breakers"],
                   earlier=earlier if interrupted else None, chosen=chosen)


def sender_for(settings: Mapping[str, Any], notification: Notification) -> str:
    """The From of an email: the configured sender, under the host's name
    when a workspace writes to its guests (the address stays the
    platform's, which the domain's SPF and DKIM cover)."""
    sender = settings["notifications.email.sender"]
    name = (notification.context or {}).get("sender_name")
    if notification.kind != GUEST_MESSAGE or not name:
        return sender
    return _named_sender(" ".join(str(name).split()), sender)


@functools.lru_cache(maxsize=256)
def _named_sender(name: str, sender: str) -> str:
    """Parsed and encoded once per host name: a bulk send's messages all
    carry the same one."""
    from email.utils import formataddr, parseaddr

    return formataddr((name, parseaddr(sender)[1]))


def reconcile(attempt: Attempt) -> tuple[str | None, str | None] | None:
    """After an attempt whose outcome is unknown: ask a provider that can be
    asked whether it accepted the message. (provider message id, None) when
    it did, (None, error) when it could not say, None to send (again)."""
    message, channel = attempt.message, attempt.message.channel
    asked = attempt.earlier or attempt.provider
    find_accepted = getattr(asked, "find_accepted", None)
    if find_accepted is None:
        UNKNOWN_OUTCOME_RESENDS.labels(channel).inc()
        log.warning("notification %s sends again after an attempt whose outcome is unknown (same Message-ID %s)",
                    attempt.notification_id, message.message_id or "-")
        return None
    try:
        accepted = find_accepted(message)
    except Exception as exc:  # not knowing is no reason to risk a second copy: ask again later
        # Still an interrupted attempt's outcome (was_interrupted reads this):
        # the next attempt asks again.
        return None, f"{INTERRUPTED}; could not ask {asked.name} about it: {exc!r}"
    if accepted is None:
        log.info("notification %s: %s has no record of the interrupted attempt; sending",
                 attempt.notification_id, asked.name)
        return None
    RECONCILED.labels(channel).inc()
    log.info("notification %s: %s had accepted the interrupted attempt; not sent again",
             attempt.notification_id, asked.name)
    return accepted, None


def deliver(attempt: Attempt, patience: resilience.Patience | None = None
            ) -> tuple[str | None, str | None, bool, str | None, str | None]:
    """Hand the message to the provider, or its fallback (unless a provider
    accepted it already, on an attempt whose outcome was lost). Returns
    (provider message id, error, permanent, the provider that sent it or
    was tried last, the suppression reason a permanent refusal gave).
    ``patience``: what to do when the send keeps its caller waiting."""
    if attempt.accepted is not None:
        log.info("notification %s: noted as accepted by %s before its outcome was lost; not sent again",
                 attempt.notification_id, attempt.accepted[1])
        return attempt.accepted[0], None, False, attempt.accepted[1], None
    if attempt.message is None:  # unrenderable, or suppressed: nothing to hand over
        return None, attempt.error, True, None, None
    if attempt.interrupted and (known := reconcile(attempt)) is not None:
        provider_message_id, error = known
        return provider_message_id, error, False, (attempt.earlier or attempt.provider).name, None
    outcome = resilience.send_through(attempt.route, attempt.message, attempt.breakers, patience)
    return outcome.provider_message_id, outcome.error, outcome.permanent, outcome.provider, outcome.suppress


def record_outcomes(ctx, results: list[tuple[Attempt, tuple]]) -> list[tuple[uuid.UUID, dt.datetime]]:
    """Store the outcomes (``deliver``'s) of attempts made together, their
    rows locked in one statement (in id order, as every locker takes
    them); return the retries due, (notification id, when). A bulk send's
    outcomes are mostly plain successes: those are read as plain rows and
    written with one UPDATE for all (the message finished and sent, its
    secrets dropped, its delivery state moved to sent unless it is
    further), their ``notification.sent`` events with one INSERT; only the
    others are loaded as objects and recorded one by one
    (``record_failure``)."""
    ids = sorted(attempt.notification_id for attempt, _ in results)
    locked = {row.id: row for row in ctx.db.execute(
        select(*RECORD_READS).where(Notification.id.in_(ids)).order_by(Notification.id).with_for_update())}
    others = {attempt.notification_id for attempt, outcome in results if outcome[1] is not None}
    loaded = ({row.id: row for row in ctx.db.scalars(
        select(Notification).where(Notification.id.in_(sorted(others))).order_by(Notification.id)
        .with_for_update().execution_options(populate_existing=True))} if others else {})
    retries, sent, events = [], [], []
    counts = DayCounts()
    now = utcnow()
    for attempt, outcome in results:
        if attempt.notification_id in others:
            retry_at = record_failure(ctx, attempt, loaded.get(attempt.notification_id), outcome, counts)
            if retry_at is not None:
                retries.append((attempt.notification_id, retry_at))
            continue
        row = locked.get(attempt.notification_id)
        if row is not None and claim_kept(row, attempt, succeeded=True):
            sent.append(sent_values(row, outcome, now, counts))
            events.append(outcome_event(row, "notification.sent"))
            log.info("notification %s sent through %s", row.id, sent[-1]["sent_by"])
    if sent:
        ctx.db.execute(RECORD_SENT, sent)
        emit_many(ctx, events)
    counts.write(ctx.db)
    return retries


# What recording a plain success reads of its notification's row.
RECORD_READS = (Notification.id, Notification.status, Notification.claimed_at, Notification.attempts,
                Notification.workspace_id,
                Notification.channel, Notification.template, Notification.about, Notification.provider,
                Notification.sent_at, Notification.delivery_state, Notification.delivery_detail)
# A plain success: finished, sent, its secrets dropped.
RECORD_SENT = (update(Notification.__table__).where(Notification.__table__.c.id == bindparam("notification_id"))
               .values(status=Notification.succeeded_status, claimed_at=None, lease_until=None, last_error=None,
                       sealed_context=None, provider=bindparam("sent_by"), sent_at=bindparam("sent_at"),
                       provider_message_id=bindparam("provider_message_id"),
                       delivery_state=bindparam("delivery_state"), delivery_detail=bindparam("delivery_detail"),
                       updated_at=bindparam("now")))


def claim_kept(notification: Any, attempt: Attempt, succeeded: bool) -> bool:
    """Whether the attempt's outcome is recorded on ``notification``: when
    the reaper took the job back meanwhile (the lease lapsed: the worker
    could not renew it), a success is still recorded so the message is not
    sent again, and a failure is left to the retry the reaper queued."""
    if still_claimed(notification, attempt.claimed_at):
        return True
    log.warning("notification %s was taken back while attempt %d ran", notification.id, notification.attempts)
    return succeeded and notification.status == PENDING


def sent_values(row: Any, outcome: tuple, now: dt.datetime, counts: DayCounts) -> dict[str, Any]:
    """``RECORD_SENT``'s values for a plain success of ``row`` (read with
    ``RECORD_READS``), its send added to ``counts`` on the day it was sent:
    a message counts once in ``sent``, when its success is recorded (which
    happens once), whatever moved its delivery state (its acceptance's note,
    a provider's early report, this record)."""
    provider_message_id, _, _, sent_by, _ = outcome
    moved = moves_forward(row.delivery_state, SENT)
    sent_at = row.sent_at or now
    counts.add(row, SENT, sent_at)
    return {"notification_id": row.id, "sent_by": sent_by or row.provider, "sent_at": sent_at,
            "provider_message_id": provider_message_id, "now": now,
            "delivery_state": SENT if moved else row.delivery_state,
            "delivery_detail": None if moved else row.delivery_detail}


def record_failure(ctx, attempt: Attempt, notification: Notification | None, outcome: tuple,
                   counts: DayCounts) -> dt.datetime | None:
    """Store an attempt that did not send (``notification`` locked and
    loaded; None when erased meanwhile); return when to retry, if ever (a
    job the reaper took back meanwhile: ``claim_kept``). A refusal naming a
    suppression reason lists the address and ends the message
    ``suppressed``."""
    _, error, permanent, sent_by, suppress = outcome
    if notification is None:  # erased meanwhile (privacy): nothing to record
        return None
    if not claim_kept(notification, attempt, succeeded=False):
        return None
    listed = attempt.suppressed
    if suppress is not None:
        try:
            suppression.suppress(ctx, notification.channel, notification.recipient, suppress,
                                 source=notification.provider or "provider")
        except ValueError as exc:  # an unlistable address, or a reason no one knows: a plain failure
            log.warning("notification %s: the provider's refusal could not list the address: %s",
                        notification.id, type(exc).__name__)
        else:
            listed = Listed(suppress, suppression.REASONS[suppress])
            error = f"{error}; suppressed: {listed.text}"
    if listed is not None:
        finish_job(notification)
        notification.status, notification.last_error = SUPPRESSED, error
        set_delivery_state(notification, SUPPRESSED, listed.text, counts=counts)
        drop_secrets(notification)
        log.info("notification %s not sent: the address is suppressed (%s)", notification.id, listed.reason)
        announce(ctx, notification, "notification.suppressed", reason=listed.reason)
        return None
    if sent_by:  # the fallback, when the provider could not take it
        notification.provider = sent_by
    retry_at = fail_job(notification, error, permanent=permanent, backoff=RETRY_BACKOFF)
    if retry_at is None:
        drop_secrets(notification)
        set_delivery_state(notification, FAILED, error, counts=counts)
        log.warning("notification %s failed after %d attempt(s): %s",
                    notification.id, notification.attempts, error)
        announce(ctx, notification, "notification.failed", error=error)
    else:
        log.info("notification %s attempt %d failed, retrying at %s: %s",
                 notification.id, notification.attempts, retry_at.isoformat(), error)
    return retry_at
