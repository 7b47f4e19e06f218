"""The live activity stream: single-use tickets and Server-Sent Events.

A browser's EventSource cannot send an Authorization header, and a cookie
or access token in a URL would outlive its purpose. So a signed-in caller
asks for a ticket (``POST /api/v1/auth/stream-ticket``): 256 random bits,
stored as SHA-256, bound to the caller and one event, good once within 60
seconds. The stream checks and burns it in one conditional UPDATE, commits,
and from then on holds no database connection: it waits on this process's
live hub (``live.py``), sends a heartbeat comment when idle, replays from
the database after a ``Last-Event-ID``, and ends after
``guard.stream.max_seconds`` so access is checked again on reconnection (or
at once when the process stops serving).
"""
from __future__ import annotations

import datetime as dt
import json
import queue
import time
import uuid
from collections.abc import Iterator

from sqlalchemy import delete, select, update

from guestguard import rls
from guestguard.accounts.models import AuthSession, User
from guestguard.accounts.tokens import hash_token, looks_like_token, new_token
from guestguard.activity import feed
from guestguard.activity.live import CLOSING, RESYNC, Listener
from guestguard.activity.models import StreamTicket
from guestguard.context import context_of
from guestguard.db import utcnow
from guestguard.events.models import Event
from guestguard.workspaces.models import ApiKey, Workspace
from guestguard.workspaces.services import membership_of

TICKET_PREFIX = "ggt_"
TICKET_SECONDS = 60
REPLAY_PAGE = 200
REPLAY_LIMIT = 2000   # items one reconnection may catch up; beyond, the page reloads
RETRY_MS = 3000
# The holder lost access (signed out, removed, key revoked...): the page stops.
ENDED = b"event: ended\ndata: {}\n\n"
# The page asks for a new ticket and connects again (to whichever process serves).
RECONNECT = b"event: reconnect\ndata: {}\n\n"


def issue_ticket(ctx, event: Event) -> tuple[str, dt.datetime]:
    """A ticket for ``event`` bound to the caller. Returns (raw, expires_at)."""
    identity = ctx.identity
    raw, token_hash = new_token(TICKET_PREFIX)
    expires_at = utcnow() + dt.timedelta(seconds=TICKET_SECONDS)
    ctx.db.add(StreamTicket(
        token_hash=token_hash, workspace_id=event.workspace_id, event_id=event.id,
        user_id=identity.user.id if identity.user is not None else None,
        session_id=identity.session.id if identity.session is not None else None,
        api_key_id=identity.api_key.id if identity.api_key is not None else None,
        expires_at=expires_at))
    return raw, expires_at


def redeem_ticket(db, raw: object, event_id: uuid.UUID) -> StreamTicket | None:
    """Burn a ticket for ``event_id``; None when it is malformed, unknown,
    used, expired, for another event, or its holder lost access meanwhile."""
    if not looks_like_token(raw, TICKET_PREFIX):
        return None
    now = utcnow()
    token_hash = hash_token(raw)
    rls.open_credential(db, StreamTicket.token_hash, token_hash)
    burned = db.execute(
        update(StreamTicket)
        .where(StreamTicket.token_hash == token_hash, StreamTicket.event_id == event_id,
               StreamTicket.used_at.is_(None), StreamTicket.expires_at > now)
        .values(used_at=now).execution_options(synchronize_session=False)).rowcount
    if burned != 1:
        return None
    ticket = db.scalar(select(StreamTicket).where(StreamTicket.token_hash == token_hash))
    return ticket if still_allowed(db, ticket, now) else None


def still_allowed(db, ticket: StreamTicket, now: dt.datetime) -> bool:
    """Whether the ticket's holder may still watch its event: the event and
    workspace exist; a person is still a member, not locked out, and still
    signed in through the login that asked; a key is not revoked."""
    event = db.get(Event, ticket.event_id)
    workspace = db.get(Workspace, ticket.workspace_id)
    if event is None or event.deleted_at is not None or workspace is None or workspace.deleted_at is not None:
        return False
    if ticket.api_key_id is not None:
        key = db.get(ApiKey, ticket.api_key_id)
        return key is not None and key.revoked_at is None
    user = db.get(User, ticket.user_id) if ticket.user_id else None
    session = db.get(AuthSession, ticket.session_id) if ticket.session_id else None
    return (user is not None and user.locked_at is None and user.deleted_at is None
            and session is not None and session.is_active(now)
            and membership_of(db, ticket.workspace_id, ticket.user_id) is not None)


class EventStream:
    """The response body of one stream (a WSGI iterable whose ``close`` the
    server calls when the stream ends or the client goes away)."""

    def __init__(self, session_factory, event_id: uuid.UUID, listener: Listener, after: str | None,
                 heartbeat: float, lifetime: float, clock=time.monotonic, ticket: StreamTicket | None = None,
                 recheck: float = 5.0):
        self.session_factory = session_factory
        self.event_id = event_id
        self.listener = listener
        self.last = after
        self.heartbeat = heartbeat
        self.deadline = clock() + lifetime
        self.clock = clock
        self.sent: set[str] = set()
        # Whose stream it is: their access is checked again every ``recheck``
        # seconds, so signing out or losing access ends it within seconds.
        self.ticket = ticket
        self.recheck = recheck

    def still_allowed(self) -> bool:
        """The holder's access, read on a session held only for the check; a
        database away for a moment does not end the stream."""
        if self.ticket is None:
            return True
        try:
            with self.session_factory() as db:
                return still_allowed(db, self.ticket, utcnow())
        except Exception:  # checked again at the next turn
            return True

    def replay(self) -> Iterator[bytes]:
        """What was recorded after the last item sent, from the database, on
        a session held only while reading."""
        if self.last is None:
            return
        total, lookback = 0, feed.LOOKBACK_SECONDS
        while total < REPLAY_LIMIT:
            # Each page is read, and the connection given back, before the
            # client (who may read slowly) is sent anything.
            with self.session_factory() as db:
                items, more = feed.page(db, self.event_id, after=self.last, limit=REPLAY_PAGE,
                                            lookback=lookback)
                messages = [(feed.cursor_of(item),
                             json.dumps(feed.item_out(item).model_dump(mode="json"), separators=(",", ":")))
                            for item in items]
            lookback = 0
            for item_id, message in messages:
                if item_id not in self.sent:
                    yield self.send(item_id, message)
            total += len(messages)
            if not more:
                return
        yield b"event: reload\ndata: {}\n\n"

    def send(self, item_id: str, message: str) -> bytes:
        """One SSE message for an activity item (a JSON string); its id is
        the item's feed cursor, so Last-Event-ID resumes the feed."""
        self.sent.add(item_id)
        self.last = item_id
        return f"id: {item_id}\nevent: activity\ndata: {message}\n\n".encode()

    def __iter__(self) -> Iterator[bytes]:
        yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
        yield from self.replay()
        written = self.clock()
        next_check = written + self.recheck  # redeeming the ticket has just checked
        while True:
            now = self.clock()
            if now >= self.deadline:
                yield RECONNECT
                return
            if now >= next_check:
                if not self.still_allowed():
                    yield ENDED
                    return
                next_check = now + self.recheck
            heartbeat_due = written + self.heartbeat
            wake = min(self.deadline, next_check, heartbeat_due)
            try:
                message = self.listener.get(timeout=max(wake - now, 0.001))
            except queue.Empty:
                if wake == heartbeat_due:
                    yield b": heartbeat\n\n"
                    written = self.clock()
                continue
            written = self.clock()
            if message is None:  # fell too far behind: the client reconnects and replays
                return
            if message == CLOSING:  # this process stops serving
                yield RECONNECT
                return
            if message == RESYNC:
                yield from self.replay()
                continue
            item_id = json.loads(message)["id"]
            if item_id not in self.sent:
                yield self.send(item_id, message)

    def close(self) -> None:
        self.listener.close()


def purge_tickets(request, now: dt.datetime | None = None) -> int:
    """Periodic task: delete tickets an hour past their expiry."""
    ctx = context_of(request)
    cutoff = (now or utcnow()) - dt.timedelta(hours=1)
    return ctx.db.execute(delete(StreamTicket).where(StreamTicket.expires_at < cutoff)
                              .execution_options(synchronize_session=False)).rowcount
