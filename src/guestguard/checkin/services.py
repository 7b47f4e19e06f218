"""Door check-in: a pass scanned (or a code typed, or a guest found by
name) lets the guest and their plus-ones in, each exactly once.

Exactly once, whatever the doors do:

- each person let in is an ``admissions`` row for (guest, seat) under a
  unique index of the live rows, written with INSERT … ON CONFLICT DO
  NOTHING: of two doors scanning one pass at the same moment, one inserts,
  and the other's insert waits for it and then inserts nothing;
- each scan carries an id the door made (``scan_id``); its answer is kept in
  ``door_scans`` (unique per event), so a scan sent again (a retry after a
  lost answer) gets the first answer and changes nothing.

Every attempt, refused ones too, goes to the access log (kind
``check_in``) where the guard's rules see it. A pass of another event gets
the same neutral answer whatever the event it belongs to.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select, update

from guestguard import timefmt
from guestguard.activity import feed
from guestguard.audit.services import record
from guestguard.checkin import passes
from guestguard.checkin.models import Admission, DoorScan, GuestPass
from guestguard.db import insert_ignoring_conflict, utcnow
from guestguard.events.models import CANCELLED, MAYBE, NO, YES, Event, Guest, InvitationLink
from guestguard.guard import access
from guestguard.guard.access import LinkRow, TokenUse
from guestguard.guard.models import CHECK_IN, EXPIRED, OK, REVOKED, UNKNOWN

WRONG_EVENT = "wrong_event"  # an access-log outcome: a real pass, shown at another event's door
CHECKED_IN = "checked_in"
NOT_FOR_THIS_EVENT = "This pass is not for this event."
UNKNOWN_PASS = "No guest has this pass: check the code, or find the guest by name."


@dataclass
class Party:
    """The guest at the door: who they are, how many they may bring and
    how many of them are in."""

    guest_id: uuid.UUID
    name: str
    response: str | None
    plus_ones_coming: int
    plus_ones_allowed: int
    plus_one_names: list
    inside: int
    checked_in_at: dt.datetime | None
    checked_in_by: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class ScanAnswer:
    """A check-in's answer: the HTTP status, the outcome's code and words,
    the party (None when no guest was found) and how many came in by it."""

    status: int
    outcome: str
    message: str
    party: Party | None = None
    admitted: int = 0
    scan_id: str = ""
    checked_in: int = 0
    expected: int = 0

    def as_json(self) -> dict:
        party = None
        if self.party is not None:
            p = self.party
            party = {"guest_id": str(p.guest_id), "name": p.name, "response": p.response,
                     "plus_ones_coming": p.plus_ones_coming, "plus_ones_allowed": p.plus_ones_allowed,
                     "plus_one_names": list(p.plus_one_names or []), "inside": p.inside,
                     "checked_in_at": p.checked_in_at.isoformat() if p.checked_in_at else None,
                     "checked_in_by": p.checked_in_by, "warnings": list(p.warnings)}
        return {"outcome": self.outcome, "message": self.message, "scan_id": self.scan_id,
                "admitted": self.admitted, "party": party,
                "counts": {"checked_in": self.checked_in, "expected": self.expected}}


@dataclass(frozen=True)
class Counts:
    checked_in: int
    expected: int


def counts(db, event_id: uuid.UUID) -> Counts:
    """People in, and people expected (guests who said yes, not waiting for a
    place, with the plus-ones they said they bring): one statement."""
    inside = (select(func.count()).select_from(Admission)
              .where(Admission.event_id == event_id, Admission.undone_at.is_(None)).scalar_subquery())
    expected = (select(func.coalesce(func.sum(1 + Guest.plus_ones_coming), 0))
                .where(Guest.event_id == event_id, Guest.response == YES, Guest.waitlisted_at.is_(None))
                .scalar_subquery())
    checked_in, wanted = db.execute(select(inside.label("checked_in"), expected.label("expected"))).one()
    return Counts(int(checked_in or 0), int(wanted or 0))


def staff_name(ctx) -> str:
    identity = ctx.identity
    if identity is not None and identity.user is not None:
        return identity.user.display_name or identity.user.email.split("@", 1)[0]
    return "an API key"


def party_of(db, guest: Guest, event: Event) -> Party:
    seats = db.execute(select(Admission.seat, Admission.admitted_at, Admission.admitted_by)
                       .where(Admission.guest_id == guest.id, Admission.undone_at.is_(None))
                       .order_by(Admission.seat)).all()
    first = next((row for row in seats if row.seat == 0), seats[0] if seats else None)
    party = Party(guest.id, guest.name, guest.response, guest.plus_ones_coming, guest.plus_ones_allowed,
                  list(guest.plus_one_names or []), len(seats), first.admitted_at if first else None,
                  first.admitted_by if first else "")
    if guest.open_flags:
        party.warnings.append(
            f"{guest.name}'s invitation has {guest.open_flags} open guard flag"
            f"{'' if guest.open_flags == 1 else 's'}: it may have been shared. Check who this is.")
    if guest.response == NO:
        party.warnings.append(f"{guest.name} answered no.")
    elif guest.response is None:
        party.warnings.append(f"{guest.name} has not answered the invitation.")
    elif guest.response == MAYBE:
        party.warnings.append(f"{guest.name} answered maybe.")
    elif guest.waitlisted_at is not None:
        party.warnings.append(f"{guest.name} is on the waitlist: the event was full when they answered.")
    return party


def log_attempt(ctx, outcome: str, *, guest: Guest | None = None, link_id: uuid.UUID | None = None,
                revoked_at: dt.datetime | None = None) -> None:
    """The attempt in the access log, under the guest it named (none for an
    unknown code)."""
    link = None
    if guest is not None:
        link = LinkRow(link_id, guest.workspace_id, guest.event_id, guest.id, revoked_at)
    access.record(ctx, TokenUse(outcome, link), CHECK_IN)


def _at(moment: dt.datetime, event: Event) -> str:
    return timefmt.time_of_day(timefmt.in_zone(moment, event.timezone))


def claim_scan(ctx, event: Event, scan_id: str) -> DoorScan | None:
    """The scan's row, new; or None when the scan id was seen before (its
    first answer is then ``replayed``). On PostgreSQL a second sender waits
    here for the first one's transaction, then finds its row."""
    inserted = insert_ignoring_conflict(
        ctx.db, DoorScan.__table__,
        {"id": uuid.uuid4(), "workspace_id": event.workspace_id, "event_id": event.id, "scan_id": scan_id,
         "guest_id": None, "scanned_by_id": ctx.actor_id, "created_at": utcnow(), "status": 0, "answer": {}},
        index_elements=["event_id", "scan_id"])
    if not inserted:
        return None
    return ctx.db.scalar(select(DoorScan).where(DoorScan.event_id == event.id, DoorScan.scan_id == scan_id))


def check_in(ctx, event: Event, *, scan_id: str, code: str | None = None, guest_id: uuid.UUID | None = None,
             plus_ones: int | None = None) -> tuple[int, dict]:
    """Let the guest named by ``code`` (a pass's QR content or its short
    code) or ``guest_id`` in, with ``plus_ones`` of their guests (None: all
    they said they bring, on their first check-in). Returns the HTTP status
    and the answer's JSON, the same for a repeated ``scan_id``."""
    scan = claim_scan(ctx, event, scan_id)
    if scan is None:
        first = ctx.db.scalar(select(DoorScan).where(DoorScan.event_id == event.id, DoorScan.scan_id == scan_id))
        return first.status, dict(first.answer)
    answer = _check_in(ctx, event, scan_id, code, guest_id, plus_ones)
    answer.scan_id = scan_id
    tally = counts(ctx.db, event.id)
    answer.checked_in, answer.expected = tally.checked_in, tally.expected
    body = answer.as_json()
    scan.status, scan.answer = answer.status, body
    scan.guest_id = answer.party.guest_id if answer.party else None
    if answer.admitted:
        _announce(ctx, event, answer, tally)
    return answer.status, body


def _find(ctx, event: Event, code: str | None, guest_id: uuid.UUID | None):
    """(guest, pass, refusal): the guest named, their pass when named by
    one, or the answer refusing."""
    db = ctx.db
    if guest_id is not None:
        guest = db.scalar(select(Guest).where(Guest.id == guest_id, Guest.event_id == event.id))
        if guest is None:
            log_attempt(ctx, UNKNOWN)
            return None, None, ScanAnswer(404, "guest_not_found", "No guest of this event has this id.")
        return guest, None, None
    value = (code or "").strip()
    typed = passes.normalized_code(value)
    found = None
    if passes.looks_like_secret(value):
        found = passes.find_by_secret(db, value)
    elif passes.looks_like_code(typed):
        found = passes.find_by_code(db, event.id, typed)
    if found is None:
        log_attempt(ctx, UNKNOWN)
        return None, None, ScanAnswer(404, "unknown_pass", UNKNOWN_PASS)
    guest = db.get(Guest, found.guest_id)
    if guest is None:  # removed from the list: their pass opens nothing, as their link
        log_attempt(ctx, UNKNOWN)
        return None, None, ScanAnswer(404, "unknown_pass", UNKNOWN_PASS)
    revoked_at = db.scalar(select(InvitationLink.revoked_at).where(InvitationLink.id == found.link_id))
    if found.event_id != event.id:
        # Logged under its own guest (their host's guard sees a pass shown
        # elsewhere); the door learns nothing of whose or which event.
        log_attempt(ctx, WRONG_EVENT, guest=guest, link_id=found.link_id, revoked_at=revoked_at)
        return None, None, ScanAnswer(409, "not_for_this_event", NOT_FOR_THIS_EVENT)
    if revoked_at is not None:
        log_attempt(ctx, REVOKED, guest=guest, link_id=found.link_id, revoked_at=revoked_at)
        party = party_of(db, guest, event)
        party.warnings.insert(0, "This pass was revoked: its invitation link was replaced or withdrawn. "
                                 "Check who this is before letting them in by name.")
        return None, None, ScanAnswer(409, "pass_revoked", "This pass was revoked.", party)
    return guest, found, None


def _check_in(ctx, event: Event, scan_id: str, code: str | None, guest_id: uuid.UUID | None,
              plus_ones: int | None) -> ScanAnswer:
    db = ctx.db
    guest, found, refusal = _find(ctx, event, code, guest_id)
    if refusal is not None:
        return refusal
    link_id = found.link_id if found else None
    if event.status == CANCELLED:
        log_attempt(ctx, EXPIRED, guest=guest, link_id=link_id)
        return ScanAnswer(409, "event_cancelled", "This event is cancelled: nobody is checked in.")
    log_attempt(ctx, OK, guest=guest, link_id=link_id)
    now = utcnow()
    by = staff_name(ctx)
    row = {"workspace_id": event.workspace_id, "event_id": event.id, "guest_id": guest.id, "scan_id": scan_id,
           "admitted_at": now, "admitted_by_id": ctx.actor_id, "admitted_by": by[:100],
           "undone_at": None, "undone_by_id": None}
    live = {"index_elements": ["guest_id", "seat"], "index_where": Admission.undone_at.is_(None)}
    table = Admission.__table__
    guest_in = insert_ignoring_conflict(db, table, {**row, "id": uuid.uuid4(), "seat": 0}, **live) == 1
    wanted = plus_ones if plus_ones is not None else (guest.plus_ones_coming if guest_in else 0)
    cap = max(guest.plus_ones_allowed, guest.plus_ones_coming)
    wanted = min(wanted, cap)
    with_them = 0
    for seat in range(1, cap + 1):
        if with_them >= wanted:
            break
        with_them += insert_ignoring_conflict(db, table, {**row, "id": uuid.uuid4(), "seat": seat}, **live)
    admitted = int(guest_in) + with_them
    party = party_of(db, guest, event)
    if not admitted:
        when = _at(party.checked_in_at, event) if party.checked_in_at else ""
        extra = ""
        if plus_ones:
            extra = f" No more of their guests can come in: {party.inside - 1} of {cap} already did."
        message = f"Already checked in at {when} by {party.checked_in_by}.{extra}"
        record(ctx, "guest.check_in_repeated", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
               result="failure", target_type="guest", target_id=guest.id, scan_id=scan_id)
        return ScanAnswer(409, "already_checked_in", message, party)
    words = guest.name if guest_in else f"{with_them} of {guest.name}'s guests"
    if guest_in and with_them:
        words += f" with {with_them} guest{'' if with_them == 1 else 's'}"
    return ScanAnswer(201, CHECKED_IN, f"Checked in: {words}.", party, admitted)


def _announce(ctx, event: Event, answer: ScanAnswer, tally: Counts) -> None:
    party = answer.party
    record(ctx, "guest.checked_in", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="guest", target_id=party.guest_id, scan_id=answer.scan_id, admitted=answer.admitted)
    ctx.emit("guest.checked_in", {"event_id": str(event.id), "guest_id": str(party.guest_id),
                                  "admitted": answer.admitted, "inside": party.inside,
                                  "scan_id": answer.scan_id}, event.workspace_id)
    feed.add(ctx, workspace_id=event.workspace_id, event_id=event.id, guest_id=party.guest_id,
             kind="guest.checked_in", summary=f"{answer.message} ({tally.checked_in} of {tally.expected} in)",
             data={"checked_in": tally.checked_in, "expected": tally.expected, "admitted": answer.admitted})


@dataclass(frozen=True)
class Undone:
    status: int
    code: str
    message: str
    undone: int = 0


def undo(ctx, event: Event, scan_id: str, now: dt.datetime | None = None) -> Undone:
    """Let out again whoever ``scan_id`` let in, within ``checkin.undo_minutes``
    of it. Undoing twice undoes once."""
    db = ctx.db
    now = now or utcnow()
    minutes = ctx.settings["checkin.undo_minutes"]
    rows = db.execute(select(Admission.id, Admission.guest_id, Admission.admitted_at, Admission.undone_at)
                      .where(Admission.event_id == event.id, Admission.scan_id == scan_id)).all()
    if not rows:
        return Undone(404, "scan_not_found", "No check-in of this event has this scan id.")
    if all(row.undone_at is not None for row in rows):
        return Undone(200, "undone", "This check-in was already undone.", 0)
    admitted_at = min(row.admitted_at for row in rows)
    if now - admitted_at > dt.timedelta(minutes=minutes):
        return Undone(409, "undo_expired",
                      f"A check-in can be undone for {minutes} minute{'' if minutes == 1 else 's'}; this one "
                      f"was at {_at(admitted_at, event)}.")
    undone = db.execute(update(Admission)
                        .where(Admission.event_id == event.id, Admission.scan_id == scan_id,
                               Admission.undone_at.is_(None))
                        .values(undone_at=now, undone_by_id=ctx.actor_id)
                        .execution_options(synchronize_session=False)).rowcount
    if undone:
        guest_id = rows[0].guest_id
        name = db.scalar(select(Guest.name).where(Guest.id == guest_id))
        tally = counts(db, event.id)
        record(ctx, "guest.check_in_undone", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
               target_type="guest", target_id=guest_id, scan_id=scan_id, undone=undone)
        feed.add(ctx, workspace_id=event.workspace_id, event_id=event.id, guest_id=guest_id,
                 kind="guest.check_in_undone",
                 summary=f"Check-in of {name} undone ({tally.checked_in} of {tally.expected} in)",
                 data={"checked_in": tally.checked_in, "expected": tally.expected, "undone": undone})
    return Undone(200, "undone", f"Undone: {undone} {'person' if undone == 1 else 'people'} no longer checked in.",
                  undone)


def search(db, event_id: uuid.UUID, query: str, limit: int) -> list[Guest]:
    """Guests of the event whose name contains ``query`` (at least 2
    characters; callers check), by name."""
    pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(db.scalars(select(Guest).where(Guest.event_id == event_id,
                                               func.lower(Guest.name).like(pattern, escape="\\"))
                           .order_by(Guest.name, Guest.id).limit(limit)))


def inside_by_guest(db, guest_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not guest_ids:
        return {}
    rows = db.execute(select(Admission.guest_id, func.count())
                      .where(Admission.guest_id.in_(guest_ids), Admission.undone_at.is_(None))
                      .group_by(Admission.guest_id))
    return dict(rows.all())


def pass_of_guest(db, guest_id: uuid.UUID) -> GuestPass | None:
    """The guest's pass that still works (its link live), if any."""
    return db.scalar(select(GuestPass).join(InvitationLink, InvitationLink.id == GuestPass.link_id)
                     .where(GuestPass.guest_id == guest_id, InvitationLink.revoked_at.is_(None)))
