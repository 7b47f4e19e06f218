"""The core areas' part of the data map (a default plugin, registered like
any other through ``register_privacy_jobs``): what each area stores about
people, how a copy reaches them and how it goes; and what each area erases
when a host forgets a guest.

Forgetting keeps the guest's row, stripped of everything that identifies
them ("Forgotten guest", no contact, no notes, no plus-ones' names, no
answers to questions): the row is the event's tally of that guest's answer,
headcount and invitation state, so every count stays exact. Their uses of
links are rolled into the daily access tallies before the log rows go, so
opens stay exact too.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select, update

from guestguard.plugins import PersonalData, PrivacyJob, hookimpl

FORGOTTEN_NAME = "Forgotten guest"

USER, GUEST, WORKSPACE = "user", "guest", "workspace"
IN_USER_EXPORT = "in the account's data export"
NOT_EXPORTED = "not exported"
STREAM_BATCH = 500


def stream(ctx, statement) -> Iterable[dict[str, Any]]:
    """Rows of ``statement`` as dicts, fetched a batch at a time."""
    for row in ctx.db.execute(statement.execution_options(yield_per=STREAM_BATCH)):
        yield dict(row._mapping)


def columns(model, *leave_out: str) -> list[Any]:
    """Every column of ``model`` but ``leave_out`` (secrets: token hashes)."""
    return [column for column in model.__table__.columns if column.name not in leave_out]


def owned_workspaces(user) -> Any:
    from guestguard.permissions import OWNER
    from guestguard.workspaces.models import Membership

    return select(Membership.workspace_id).where(Membership.user_id == user.id, Membership.role == OWNER)


# --- events -----------------------------------------------------------------------


def forget_in_events(ctx, guest) -> None:
    from guestguard.events.models import InvitationLink, Rsvp

    db = ctx.db
    db.execute(delete(Rsvp).where(Rsvp.guest_id == guest.id).execution_options(synchronize_session=False))
    # The links go too: an old link then opens nothing and ties no one's use
    # of it to the forgotten guest.
    db.execute(delete(InvitationLink).where(InvitationLink.guest_id == guest.id)
               .execution_options(synchronize_session=False))
    guest.name, guest.email, guest.phone = FORGOTTEN_NAME, None, None
    guest.group_name, guest.tags, guest.notes = "", [], ""
    guest.plus_one_names, guest.answers = [], {}


def export_events(ctx, user):
    from guestguard.events.models import Event, Guest, Rsvp

    owned = owned_workspaces(user)
    yield "events.json", stream(ctx, select(*columns(Event)).where(Event.workspace_id.in_(owned))
                                .order_by(Event.starts_at, Event.id))
    yield "guests.json", stream(ctx, select(*columns(Guest)).where(Guest.workspace_id.in_(owned))
                                .order_by(Guest.event_id, Guest.name, Guest.id))
    yield "rsvps.json", stream(ctx, select(*columns(Rsvp)).where(Rsvp.workspace_id.in_(owned))
                               .order_by(Rsvp.created_at, Rsvp.id))


EVENTS_JOB = PrivacyJob(
    name="events",
    data=(
        PersonalData("guests", ("name", "email", "phone", "group_name", "tags", "notes", "plus_one_names",
                                "answers"), "contact and answers", GUEST,
                     f"{IN_USER_EXPORT} of the workspace's owner (guests.json)",
                     "forget: the row stays as the answer's tally with the name 'Forgotten guest' and "
                     "every other field emptied; retention does the same for past events; a removed guest "
                     "is erased the same way and deleted once the undo window has passed"),
        PersonalData("rsvps", ("dietary", "message", "plus_one_names", "answers"), "answers", GUEST,
                     f"{IN_USER_EXPORT} of the workspace's owner (rsvps.json)",
                     "forget and retention: deleted (the guest row keeps the current answer's counts)"),
        PersonalData("events", ("name", "description", "venue", "host_message", "reply_to", "host_name"),
                     "free text", WORKSPACE, f"{IN_USER_EXPORT} (events.json)",
                     "deleted with the event, the workspace or its last owner's account"),
        PersonalData("events", ("created_by_id",), "reference", USER, f"{IN_USER_EXPORT} (events.json)",
                     "set to null when the user is deleted"),
        PersonalData("event_covers", ("data",), "image", WORKSPACE, NOT_EXPORTED + " (the host has the original)",
                     "re-encoded without metadata at upload; deleted with the event"),
        PersonalData("invitation_links", ("issued_by_id",), "reference", USER, NOT_EXPORTED,
                     "set to null when the user is deleted; forget deletes the guest's links"),
        PersonalData("bulk_actions", ("actor_id",), "reference", USER, NOT_EXPORTED,
                     "set to null when the user is deleted"),
    ),
    forget_guest=forget_in_events,
    export_user=export_events,
    not_personal=("event_covers.content_type",),
)


# --- the guard (access log, flags) ------------------------------------------------


def forget_in_guard(ctx, guest) -> None:
    from guestguard.guard.models import AccessEntry, AccessTally, Flag

    db = ctx.db
    keys = (AccessEntry.kind, AccessEntry.outcome, AccessEntry.automated)
    # The UTC day of each use, as the retention purge tallies them.
    at = AccessEntry.at if db.bind.dialect.name == "sqlite" else func.timezone("UTC", AccessEntry.at)
    day = func.date(at)
    groups = db.execute(select(day, *keys, func.count()).where(AccessEntry.guest_id == guest.id)
                        .group_by(day, *keys)).all()
    db.add_all(AccessTally(workspace_id=guest.workspace_id, event_id=guest.event_id, guest_id=guest.id,
                           day=on if isinstance(on, dt.date) else dt.date.fromisoformat(on),
                           kind=kind, outcome=outcome, automated=automated, uses=count)
               for on, kind, outcome, automated, count in groups)
    db.execute(delete(AccessEntry).where(AccessEntry.guest_id == guest.id)
               .execution_options(synchronize_session=False))
    db.execute(delete(Flag).where(Flag.guest_id == guest.id).execution_options(synchronize_session=False))
    guest.open_flags = 0


def export_guard(ctx, user):
    from guestguard.guard.models import AccessEntry

    yield "access_log.json", stream(ctx, select(*columns(AccessEntry, "evaluated_at"))
                                    .where(AccessEntry.workspace_id.in_(owned_workspaces(user)))
                                    .order_by(AccessEntry.at, AccessEntry.id))


GUARD_JOB = PrivacyJob(
    name="guard",
    data=(
        PersonalData("access_log", ("ip", "network", "user_agent", "device"), "network", GUEST,
                     f"{IN_USER_EXPORT} of the workspace's owner (access_log.json)",
                     "rolled into daily tallies without them after guard.retention_days; forget does so at once"),
        PersonalData("flags", ("evidence", "details"), "network", GUEST, NOT_EXPORTED,
                     "deleted by forget and with the event"),
        PersonalData("flags", ("closed_by_id",), "reference", USER, NOT_EXPORTED,
                     "set to null when the user is deleted"),
    ),
    forget_guest=forget_in_guard,
    export_user=export_guard,
)


# --- derived stores: the rate limiter's counters in Redis --------------------------


def forget_counters(ctx, guest) -> None:
    """The buckets counting the guest's links (by the token's digest) go
    once the forget commits; read here, before the events job deletes the
    links."""
    from guestguard.events.models import InvitationLink
    from guestguard.privacy.services import purge_counters_after_commit
    from guestguard.ratelimit.service import person_keys

    hashes = ctx.db.scalars(select(InvitationLink.token_hash).where(InvitationLink.guest_id == guest.id)).all()
    if hashes:
        purge_counters_after_commit(ctx, person_keys(token_hashes=hashes))


COUNTERS_JOB = PrivacyJob(
    name="ratelimit",
    # Nothing in the database: the limiter's store (ratelimit.url) counts
    # requests by account, API key, link and hashed email address.
    data=(),
    forget_guest=forget_counters,
)


# --- the activity feed --------------------------------------------------------------


def forget_in_activity(ctx, guest) -> None:
    from guestguard.activity.models import Activity

    # Lines of the feed name the guest ("Ann Lee answered yes"): they go.
    ctx.db.execute(delete(Activity).where(Activity.guest_id == guest.id)
                   .execution_options(synchronize_session=False))


ACTIVITY_JOB = PrivacyJob(
    name="activity",
    data=(
        PersonalData("activity", ("summary", "data"), "activity", GUEST, NOT_EXPORTED,
                     "deleted by forget and with the event"),
        PersonalData("stream_tickets", ("user_id",), "reference", USER, NOT_EXPORTED,
                     "single-use, expire within a minute; deleted with the user"),
    ),
    forget_guest=forget_in_activity,
)


# --- notifications ------------------------------------------------------------------


def forget_in_notifications(ctx, guest) -> None:
    from guestguard.notifications.delivery import SENT, DayCounts
    from guestguard.notifications.models import Notification
    from guestguard.tasks import FAILED, PENDING, SUCCEEDED

    db = ctx.db
    # Through the index on guest_id, not by reading every message's ``about``.
    about_guest = Notification.guest_id == guest.id
    forget_reports(ctx, select(Notification.id).where(about_guest))
    # One a provider accepted before its worker stopped (noted, waiting for
    # its next attempt to record it) was sent: finished as sent, and counted
    # on the day it was sent, as its record would have.
    counts = DayCounts()
    for sent in db.execute(update(Notification).where(
            about_guest, Notification.status == PENDING, Notification.sent_at.is_not(None))
            .values(status=SUCCEEDED, last_error=None)
            .returning(Notification.workspace_id, Notification.channel, Notification.sent_at)
            .execution_options(synchronize_session=False)):
        counts.add(sent, SENT, sent.sent_at)
    counts.write(db)
    # A message not sent yet is not sent at all: its address is gone.
    db.execute(update(Notification).where(about_guest, Notification.status == PENDING)
               .values(status=FAILED, last_error="the guest was forgotten before it was sent")
               .execution_options(synchronize_session=False))
    db.execute(update(Notification).where(about_guest)
               .values(recipient="", context={}, sealed_context=None)
               .execution_options(synchronize_session=False))


def forget_reports(ctx, messages) -> None:
    """Providers' reports about ``messages`` (a select of notification ids)
    name the address they went to: they go."""
    from guestguard.webhooks.models import InboxEntry

    ctx.db.execute(delete(InboxEntry).where(InboxEntry.notification_id.in_(messages))
                   .execution_options(synchronize_session=False))


def export_notifications(ctx, user):
    from guestguard.notifications.models import Notification

    wanted = ("id", "channel", "recipient", "template", "kind", "status", "delivery_state", "created_at",
              "sent_at", "delivered_at")
    yield "notifications.json", stream(ctx, select(*(Notification.__table__.c[name] for name in wanted))
                                       .where(Notification.recipient == user.email)
                                       .order_by(Notification.created_at, Notification.id))


NOTIFICATIONS_JOB = PrivacyJob(
    name="notifications",
    data=(
        PersonalData("notifications", ("recipient", "context", "sealed_context", "delivery_detail"),
                     "contact", GUEST, f"{IN_USER_EXPORT} (notifications.json, messages to the account)",
                     "forget: address and rendering values emptied; sealed values dropped at a final status"),
        PersonalData("suppressions", ("address",), "contact", GUEST, NOT_EXPORTED,
                     "kept: it is the record that the address asked not to be written to, "
                     "which an erasure must go on honouring"),
    ),
    forget_guest=forget_in_notifications,
    export_user=export_notifications,
)


# --- imports ------------------------------------------------------------------------


def forget_in_imports(ctx, guest) -> None:
    from guestguard.imports.models import GuestImport

    db = ctx.db
    imports = db.scalars(select(GuestImport).where(GuestImport.event_id == guest.event_id)).all()
    for imp in imports:
        # One row cannot be cut out of a spreadsheet: a kept file goes
        # whole, with the rows its preview checked.
        imp.content = imp.checks = None
        kept = [change for change in imp.updates if change.get("guest_id") != str(guest.id)]
        if len(kept) != len(imp.updates):
            imp.updates = kept


IMPORTS_JOB = PrivacyJob(
    name="imports",
    data=(
        PersonalData("guest_imports", ("content", "checks", "updates", "file_name", "mapping"), "file", GUEST,
                     NOT_EXPORTED + " (the guests it added are)",
                     "the file is dropped after imports.keep_hours; forget drops the event's kept files "
                     "and the guest's earlier values"),
        PersonalData("guest_imports", ("actor_id",), "reference", USER, NOT_EXPORTED,
                     "set to null when the user is deleted"),
    ),
    forget_guest=forget_in_imports,
)


# --- audit --------------------------------------------------------------------------


def forget_in_audit(ctx, guest) -> None:
    from guestguard.audit.models import AuditEvent

    # Rows about the guest hold ids, never their details; the addresses of
    # what the guest did themselves (answers: no signed-in actor) go.
    ctx.db.execute(update(AuditEvent).where(AuditEvent.target_type == "guest",
                                            AuditEvent.target_id == str(guest.id),
                                            AuditEvent.actor_user_id.is_(None))
                   .values(ip=None).execution_options(synchronize_session=False))


def export_audit(ctx, user):
    from sqlalchemy import or_

    from guestguard.audit.models import AuditEvent

    about = or_(AuditEvent.actor_user_id == user.id,
                (AuditEvent.target_type == "user") & (AuditEvent.target_id == str(user.id)))
    yield "audit_events.json", stream(ctx, select(*columns(AuditEvent)).where(about)
                                      .order_by(AuditEvent.created_at, AuditEvent.id))


AUDIT_JOB = PrivacyJob(
    name="audit",
    data=(
        PersonalData("audit_events", ("actor_user_id", "ip", "details"), "activity", USER,
                     f"{IN_USER_EXPORT} (audit_events.json: events the user did)",
                     "details hold ids, never personal values; forget clears the guest's addresses; "
                     "the actor is set to null when the user is deleted"),
    ),
    forget_guest=forget_in_audit,
    export_user=export_audit,
)


# --- accounts and workspaces ---------------------------------------------------------


def export_account(ctx, user):
    from guestguard.accounts.models import AuthSession, User

    yield "user.json", stream(ctx, select(*columns(User, "password_hash")).where(User.id == user.id))
    yield "sessions.json", stream(ctx, select(*columns(AuthSession, "token_hash"))
                                  .where(AuthSession.user_id == user.id)
                                  .order_by(AuthSession.created_at, AuthSession.id))


ACCOUNTS_JOB = PrivacyJob(
    name="accounts",
    data=(
        PersonalData("users", ("email", "display_name"), "identity", USER, f"{IN_USER_EXPORT} (user.json)",
                     "deleted with the account"),
        PersonalData("auth_sessions", ("user_id", "user_agent", "ip"), "network", USER,
                     f"{IN_USER_EXPORT} (sessions.json)", "deleted with the account"),
        PersonalData("user_tokens", ("user_id",), "reference", USER, NOT_EXPORTED,
                     "single-use, expiring; deleted with the account"),
    ),
    export_user=export_account,
)

def export_workspaces(ctx, user):
    from guestguard.accounts.models import User
    from guestguard.workspaces.models import Membership, Workspace

    yield "workspaces.json", stream(ctx, select(Workspace.id, Workspace.name, Workspace.slug, Workspace.personal,
                                                Membership.role, Membership.created_at.label("member_since"))
                                    .join(Membership, Membership.workspace_id == Workspace.id)
                                    .where(Membership.user_id == user.id).order_by(Workspace.name, Workspace.id))
    # The people of the workspaces the user owns.
    yield "members.json", stream(ctx, select(Membership.workspace_id, User.email, User.display_name,
                                             Membership.role, Membership.created_at.label("member_since"))
                                 .join(User, User.id == Membership.user_id)
                                 .where(Membership.workspace_id.in_(owned_workspaces(user)))
                                 .order_by(Membership.workspace_id, User.email))


WORKSPACES_JOB = PrivacyJob(
    name="workspaces",
    data=(
        PersonalData("workspaces", ("name",), "free text", WORKSPACE, f"{IN_USER_EXPORT} (workspaces.json)",
                     "deleted with the workspace"),
        PersonalData("memberships", ("user_id",), "reference", USER, f"{IN_USER_EXPORT} (workspaces.json)",
                     "deleted with the account"),
        PersonalData("workspace_invitations", ("email", "invited_by_id", "accepted_by_id"), "contact", USER,
                     NOT_EXPORTED, "expire; deleted with the workspace, references set to null with the user"),
        PersonalData("api_keys", ("name", "created_by_id"), "reference", USER, NOT_EXPORTED,
                     "set to null when the user is deleted; deleted with the workspace"),
    ),
    export_user=export_workspaces,
)


# --- what the platform keeps for a while ---------------------------------------------


PLATFORM_JOB = PrivacyJob(
    name="platform",
    data=(
        PersonalData("idempotency_keys", ("caller", "headers", "body"), "request", USER, NOT_EXPORTED,
                     "a replayable answer, purged hourly after idempotency.ttl_hours"),
        PersonalData("webhook_inbox", ("body", "headers", "note"), "contact", GUEST, NOT_EXPORTED,
                     "providers' reports (they name addresses); purged after webhooks.retention_days; "
                     "a processed report goes with the forget or erasure of its message's person"),
        PersonalData("domain_events", ("data",), "reference", GUEST, NOT_EXPORTED,
                     "ids and answers, never contact details; purged once delivered"),
    ),
    # The kind of a domain event ("guest.created").
    not_personal=("domain_events.name",),
)

# In the order forget runs them: the guard rolls the log into tallies before
# the events job deletes the links the log's rows hang from (their deletion
# cascades). Plugins' jobs come before all of these (a plugin registered
# later is called first), so a plugin's rows may still point at the links.
PRIVACY_JOB = PrivacyJob(
    name="privacy",
    data=(
        PersonalData("data_exports", ("user_id",), "reference", USER, NOT_EXPORTED,
                     "the file is deleted after its download or privacy.export_link_days; "
                     "the row goes with the account"),
    ),
)



# --- the door and the hosts' answer alerts ---------------------------------------------


def forget_at_the_door(ctx, guest) -> None:
    """The door's stored answers named the guest; the admissions stay, as
    the headcount of who came in (their pass went with the guest's links)."""
    from guestguard.checkin.models import DoorScan

    ctx.db.execute(update(DoorScan).where(DoorScan.guest_id == guest.id).values(answer={})
                   .execution_options(synchronize_session=False))


DOOR_JOB = PrivacyJob(
    name="door",
    data=(
        PersonalData("admissions", ("admitted_by_id", "undone_by_id", "admitted_by"), "who let a guest in",
                     USER, NOT_EXPORTED, "the references are set to null when the user is deleted; the rows "
                     "go with the event"),
        PersonalData("door_scans", ("scanned_by_id",), "reference", USER, NOT_EXPORTED,
                     "set to null when the user is deleted; the rows go with the event"),
        PersonalData("door_scans", ("answer",), "the door's answer, naming the guest", GUEST, NOT_EXPORTED,
                     "forget: emptied; the rows go with the event"),
        PersonalData("answer_alerts", ("user_id",), "reference", USER, NOT_EXPORTED,
                     "deleted with the user, the event or the workspace"),
    ),
    forget_guest=forget_at_the_door,
)

# --- billing ------------------------------------------------------------------------

BILLING_JOB = PrivacyJob(
    name="billing",
    data=(
        PersonalData("billing_entitlements", ("customer_id", "subscription_id"), "the billing provider's "
                     "references to the paying customer", WORKSPACE, NOT_EXPORTED + " (the provider holds the "
                     "payment details)", "deleted with the workspace; the provider keeps its own records"),
    ),
    not_personal=("feature_flags.name",),
)

CORE_JOBS = (COUNTERS_JOB, BILLING_JOB, PRIVACY_JOB, GUARD_JOB, ACTIVITY_JOB, NOTIFICATIONS_JOB, IMPORTS_JOB,
             AUDIT_JOB, ACCOUNTS_JOB, WORKSPACES_JOB, PLATFORM_JOB, EVENTS_JOB, DOOR_JOB)


@hookimpl
def register_privacy_jobs(settings):
    return list(CORE_JOBS)
