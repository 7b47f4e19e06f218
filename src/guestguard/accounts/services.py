"""Accounts: signup, email verification, login, password reset and change,
profile and policy acceptance. Functions take the service context (its
database session, settings, enqueue and audit facts) and plain values."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update

from guestguard.accounts import sessions
from guestguard.accounts.models import RESET_PASSWORD, VERIFY_EMAIL, AuthSession, User, UserToken
from guestguard.accounts.passwords import Passwords
from guestguard.accounts.tokens import hash_token, looks_like_token, new_token
from guestguard.audit.services import FAILURE, record
from guestguard.context import context_of
from guestguard.db import lock_row, utcnow
from guestguard.errors import Refusal
from guestguard.notifications.services import queue_notification
from guestguard.ratelimit.service import allow_account_mail
from guestguard.workspaces.services import create_personal_workspace


class AccountError(Refusal):
    """A refusal with a machine code; views turn it into 4xx responses."""

    def __init__(self, code: str, message: str, status: int = 400, field: str | None = None):
        super().__init__(status, code, message, field)


INVALID_CREDENTIALS = "invalid_credentials"
WRONG_CREDENTIALS = ("The email or password is not right. After several failed attempts the "
                     "account is locked and its owner is emailed a link to unlock it.")
INVALID_TOKEN = "invalid_token"
ALREADY_VERIFIED = "already_verified"


def passwords(ctx) -> Passwords:
    return ctx.registry["accounts.passwords"]


def find_user(db, email: str) -> User | None:
    return db.scalar(select(User).where(User.email == email, User.deleted_at.is_(None)))


def policies_accepted(settings, user: User) -> bool:
    """Whether the user accepted the policies in force: those dated
    ``policies.updated_at`` once that day has come (a version announced for a
    later date does not apply yet)."""
    updated = settings["policies.updated_at"]
    in_force_since = dt.datetime.combine(updated, dt.time(), tzinfo=dt.UTC)
    if in_force_since > utcnow():
        in_force_since = dt.datetime.min.replace(tzinfo=dt.UTC)
    return all(accepted is not None and accepted >= in_force_since
               for accepted in (user.privacy_accepted_at, user.terms_accepted_at))


# --- signup and verification -------------------------------------------------


def signup(ctx, *, email: str, password: str, display_name: str, personal_workspace: bool = True) -> str:
    """Create an unverified user, with a personal workspace unless they are
    joining another one, and email a verification link. An address already
    registered gets an email saying so instead, and the caller sees the same
    answer (no enumeration). Returns the browser's mark (``browser_mark``)
    of the link sent, or of a link never sent when the address was taken:
    the same shape either way."""
    db = ctx.db
    existing = db.scalar(select(User).where(User.email == email))
    if existing is not None:
        if existing.deleted_at is None:
            queue_notification(ctx, channel="email", recipient=email, template="account_exists",
                               context={"display_name": existing.display_name},
                               sealed={"login_url": ctx.url("login"),
                                       "reset_url": ctx.url("forgot_password")})
        record(ctx, "account.signup", result=FAILURE, target_type="user",
               target_id=existing.id, reason="email_taken")
        passwords(ctx).hash(password)  # same cost as a real signup
        return browser_mark(new_token()[0])
    now = utcnow()
    user = User(email=email, display_name=display_name, password_hash=passwords(ctx).hash(password),
                privacy_accepted_at=now, terms_accepted_at=now)
    db.add(user)
    db.flush()
    if personal_workspace:
        create_personal_workspace(ctx, user)
    raw = send_verification(ctx, user)
    record(ctx, "account.signup", actor_id=user.id, target_type="user", target_id=user.id)
    return browser_mark(raw)


def browser_mark(raw_token: str) -> str:
    """What the browser that signed up keeps (in its signed, readable
    session) so that the verification link sent then signs it in: derived
    from the link's token, never the hash stored for it."""
    return hashlib.sha256(b"signed-up-browser:" + raw_token.encode("utf-8", "surrogatepass")).hexdigest()


def verification_signs_in(db, raw_token: str, mark: str | None) -> User | None:
    """The account the verification link ``raw_token`` signs in, in a
    browser holding ``mark``: the browser that signed up and was sent this
    very link, within the link's lifetime, the account verified and neither
    locked nor deleted. Anyone else gets None (the link only verifies)."""
    if not mark or not looks_like_token(raw_token) or not hmac.compare_digest(browser_mark(raw_token), mark):
        return None
    token = db.scalar(select(UserToken).where(UserToken.token_hash == hash_token(raw_token),
                                              UserToken.purpose == VERIFY_EMAIL))
    if token is None or token.expires_at <= utcnow():
        return None
    user = db.get(User, token.user_id)
    if user is None or not user.is_verified or user.deleted_at is not None or user.locked_at is not None:
        return None
    return user


def _issue_user_token(ctx, user: User, purpose: str, ttl: dt.timedelta) -> str:
    """A fresh single-use token; earlier unused ones of the same purpose die."""
    now = utcnow()
    _expire_user_tokens(ctx, user, purpose, now)
    raw, token_hash = new_token()
    ctx.db.add(UserToken(user_id=user.id, purpose=purpose, token_hash=token_hash,
                             expires_at=now + ttl))
    return raw


def _expire_user_tokens(ctx, user: User, purpose: str, now: dt.datetime) -> None:
    ctx.db.execute(update(UserToken)
                       .where(UserToken.user_id == user.id, UserToken.purpose == purpose,
                              UserToken.used_at.is_(None))
                       .values(used_at=now)
                       .execution_options(synchronize_session=False))


def _consume_user_token(ctx, raw: str, purpose: str) -> User:
    if not looks_like_token(raw):
        raise AccountError(INVALID_TOKEN, "This link is not valid. It may have expired or been used already.")
    now = utcnow()
    token = ctx.db.scalar(select(UserToken).where(UserToken.token_hash == hash_token(raw),
                                                      UserToken.purpose == purpose))
    if token is None or token.used_at is not None or token.expires_at <= now:
        raise AccountError(INVALID_TOKEN, "This link is not valid. It may have expired or been used already.")
    won = ctx.db.execute(update(UserToken)
                             .where(UserToken.id == token.id, UserToken.used_at.is_(None))
                             .values(used_at=now)
                             .execution_options(synchronize_session=False)).rowcount
    user = ctx.db.get(User, token.user_id)
    if won != 1 or user is None or user.deleted_at is not None:
        raise AccountError(INVALID_TOKEN, "This link is not valid. It may have expired or been used already.")
    return user


def verified_by(db, raw: str) -> bool:
    """Whether ``raw`` is a verification link already used by an account
    that is verified (and not deleted)."""
    if not looks_like_token(raw):
        return False
    user_id = db.scalar(select(UserToken.user_id).where(
        UserToken.token_hash == hash_token(raw), UserToken.purpose == VERIFY_EMAIL, UserToken.used_at.is_not(None)))
    user = db.get(User, user_id) if user_id else None
    return user is not None and user.is_verified and user.deleted_at is None


def send_verification(ctx, user: User) -> str:
    """Email a new verification link; its token."""
    hours = ctx.settings["auth.verify_email_ttl_hours"]
    raw = _issue_user_token(ctx, user, VERIFY_EMAIL, dt.timedelta(hours=hours))
    queue_notification(ctx, channel="email", recipient=user.email, template="verify_email",
                       context={"display_name": user.display_name, "hours": hours},
                       sealed={"verify_url": ctx.url("verify_email", token=raw)})
    return raw


def verify_email(ctx, raw_token: str) -> User:
    """Mark the address verified; a link used before, by an account now
    verified, is refused as ALREADY_VERIFIED (sign in), any other as invalid."""
    try:
        user = _consume_user_token(ctx, raw_token, VERIFY_EMAIL)
    except AccountError:
        if verified_by(ctx.db, raw_token):
            raise AccountError(ALREADY_VERIFIED, "This address is verified already: sign in.", status=409) from None
        raise
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    record(ctx, "account.email_verified", actor_id=user.id, target_type="user", target_id=user.id)
    return user


def resend_verification(ctx, email: str) -> None:
    """Queue the lookup: the answer takes the same time whether or not the
    address has an account."""
    ctx.enqueue(resend_verification_task, email, ctx.client_ip)


def resend_verification_task(request, email: str, ip: str | None) -> None:
    """Send a new link to an unverified address; silently nothing otherwise."""
    ctx = context_of(request, client_ip=ip)
    user = find_user(ctx.db, email)
    if user is not None and not user.is_verified and allow_account_mail(ctx.registry, user.id):
        send_verification(ctx, user)


# --- login -------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    user: User
    session: AuthSession
    cookie_token: str | None


def authenticate(ctx, email: str, password: str) -> User:
    """The user whose password this is. Unknown email and wrong password are
    one answer, in the same time (a hash is checked either way)."""
    user = find_user(ctx.db, email)
    hasher = passwords(ctx)
    right = hasher.verify(user.password_hash if user else None, password)
    if not right or user.locked_at is not None:
        # A locked account answers exactly like a wrong password, right
        # password or not: guessing on a locked account learns nothing. Its
        # owner was emailed a reset link when it locked.
        if user is not None and not right:
            _count_failure(ctx, user)
        reason = "locked" if right else INVALID_CREDENTIALS
        record(ctx, "account.login", result=FAILURE, actor_id=user.id if user else None,
               target_type="user", target_id=user.id if user else None, reason=reason)
        raise AccountError(INVALID_CREDENTIALS, WRONG_CREDENTIALS, status=401)
    if hasher.needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return user


def _count_failure(ctx, user: User) -> None:
    """Count in the database (concurrent failures all count); lock the
    account at the threshold and tell its owner, once."""
    ctx.db.execute(update(User).where(User.id == user.id)
                       .values(failed_logins=User.failed_logins + 1)
                       .execution_options(synchronize_session=False))
    ctx.db.refresh(user, ["failed_logins", "locked_at"])
    if user.locked_at is None and user.failed_logins >= ctx.settings["auth.lockout_threshold"]:
        user.locked_at = utcnow()
        minutes = ctx.settings["auth.reset_password_ttl_minutes"]
        raw = _issue_user_token(ctx, user, RESET_PASSWORD, dt.timedelta(minutes=minutes))
        queue_notification(ctx, channel="email", recipient=user.email, template="account_locked",
                           context={"display_name": user.display_name, "minutes": minutes,
                                    "attempts": user.failed_logins},
                           sealed={"reset_url": ctx.url("reset_password", token=raw)})
        record(ctx, "account.locked", actor_id=user.id, target_type="user", target_id=user.id,
               attempts=user.failed_logins)


def login(ctx, *, email: str, password: str, kind: str, accept_policies: bool = False) -> Login:
    user = authenticate(ctx, email, password)
    # The account's row held to the end of the login, as a deletion holds
    # it: a deletion at the same moment either ends this new session with
    # the others or is seen here, and the login refused like any unknown one.
    lock_row(ctx.db, User, user.id)
    ctx.db.refresh(user, ["deleted_at"])
    if user.deleted_at is not None:
        raise AccountError(INVALID_CREDENTIALS, WRONG_CREDENTIALS, status=401)
    if not user.is_verified:
        record(ctx, "account.login", result=FAILURE, actor_id=user.id, target_type="user",
               target_id=user.id, reason="email_not_verified")
        raise AccountError("email_not_verified",
                           "Verify your email address first: we sent you a link.", status=403)
    if accept_policies:
        accept_current_policies(ctx, user)
    if not policies_accepted(ctx.settings, user):
        raise AccountError("policy_acceptance_required",
                           "Accept the updated privacy policy and terms to continue.", status=403)
    user.failed_logins = 0
    return start_login(ctx, user, kind)


def start_login(ctx, user: User, kind: str, **audit: str) -> Login:
    """A new login of ``user``, whose credentials the caller checked."""
    session, cookie_token = sessions.start_session(
        ctx.db, ctx.settings, user, kind=kind,
        user_agent=ctx.user_agent, ip=ctx.client_ip)
    record(ctx, "account.login", actor_id=user.id, target_type="session", target_id=session.id,
           kind=kind, **audit)
    return Login(user, session, cookie_token)


def accept_current_policies(ctx, user: User) -> None:
    now = utcnow()
    user.privacy_accepted_at = now
    user.terms_accepted_at = now
    record(ctx, "account.policies_accepted", actor_id=user.id, target_type="user", target_id=user.id)


def logout(ctx, session: AuthSession) -> None:
    if sessions.revoke(session, "logout"):
        record(ctx, "account.logout", actor_id=session.user_id, target_type="session",
               target_id=session.id)


def logout_everywhere(ctx, user: User) -> int:
    count = sessions.revoke_all(ctx.db, user.id, "logout_all")
    record(ctx, "account.logout_all", actor_id=user.id, target_type="user", target_id=user.id,
           sessions=count)
    return count


def revoke_own_session(ctx, user: User, session_id: uuid.UUID) -> AuthSession | None:
    session = ctx.db.get(AuthSession, session_id)
    if session is None or session.user_id != user.id:
        return None
    if sessions.revoke(session, "revoked_by_user"):
        record(ctx, "account.session_revoked", actor_id=user.id, target_type="session",
               target_id=session.id)
    return session


# --- passwords ---------------------------------------------------------------


def forgot_password(ctx, email: str) -> None:
    """Queue the lookup: the answer is the same, in the same time, whether
    or not the address has an account."""
    ctx.enqueue(forgot_password_task, email, ctx.client_ip)


def forgot_password_task(request, email: str, ip: str | None) -> None:
    """Email a reset link when the address belongs to a user."""
    ctx = context_of(request, client_ip=ip)  # the audit row records who asked
    user = find_user(ctx.db, email)
    if user is None or not allow_account_mail(ctx.registry, user.id):
        return
    minutes = ctx.settings["auth.reset_password_ttl_minutes"]
    raw = _issue_user_token(ctx, user, RESET_PASSWORD, dt.timedelta(minutes=minutes))
    queue_notification(ctx, channel="email", recipient=user.email, template="reset_password",
                       context={"display_name": user.display_name, "minutes": minutes},
                       sealed={"reset_url": ctx.url("reset_password", token=raw)})
    record(ctx, "account.password_reset_requested", actor_id=user.id, target_type="user",
           target_id=user.id)


def check_reset_token(ctx, raw_token: str) -> bool:
    """Whether a reset link still works, without using it up."""
    if not looks_like_token(raw_token):
        return False
    token = ctx.db.scalar(select(UserToken).where(UserToken.token_hash == hash_token(raw_token),
                                                      UserToken.purpose == RESET_PASSWORD))
    return token is not None and token.used_at is None and token.expires_at > utcnow()


def reset_password(ctx, raw_token: str, new_password: str) -> User:
    """Set a new password from an emailed link; every session ends."""
    user = _consume_user_token(ctx, raw_token, RESET_PASSWORD)
    _set_password(ctx, user, new_password)
    # Proving control of the mailbox also proves the address.
    user.email_verified_at = user.email_verified_at or utcnow()
    user.failed_logins = 0
    user.locked_at = None
    sessions.revoke_all(ctx.db, user.id, "password_reset")
    record(ctx, "account.password_reset", actor_id=user.id, target_type="user", target_id=user.id)
    return user


def change_password(ctx, user: User, current_session: AuthSession | None, *,
                    current_password: str, new_password: str, end_other_sessions: bool) -> int:
    """Returns how many other sessions were ended."""
    if not passwords(ctx).verify(user.password_hash, current_password):
        record(ctx, "account.password_changed", result=FAILURE, actor_id=user.id,
               target_type="user", target_id=user.id, reason="wrong_current_password")
        raise AccountError("invalid_password", "The current password is not right.", status=400,
                           field="current_password")
    _set_password(ctx, user, new_password)
    ended = 0
    if end_other_sessions:
        ended = sessions.revoke_all(ctx.db, user.id, "password_changed",
                                    keep=current_session.id if current_session else None)
    record(ctx, "account.password_changed", actor_id=user.id, target_type="user",
           target_id=user.id, other_sessions_ended=ended)
    return ended


def _set_password(ctx, user: User, new_password: str) -> None:
    user.password_hash = passwords(ctx).hash(new_password)
    user.password_changed_at = utcnow()
    # A reset link mailed before the change must not undo it.
    _expire_user_tokens(ctx, user, RESET_PASSWORD, user.password_changed_at)
    queue_notification(ctx, channel="email", recipient=user.email, template="password_changed",
                       context={"display_name": user.display_name},
                       sealed={"reset_url": ctx.url("forgot_password")})


def update_profile(ctx, user: User, *, display_name: str) -> User:
    if display_name != user.display_name:
        user.display_name = display_name
        record(ctx, "account.profile_updated", actor_id=user.id, target_type="user",
               target_id=user.id)
    return user


def create_admin(ctx, *, email: str, password: str, display_name: str) -> User:
    """Bootstrap an operator from the command line (never over HTTP)."""
    user = find_user(ctx.db, email)
    now = utcnow()
    if user is None:
        user = User(email=email, display_name=display_name,
                    password_hash=passwords(ctx).hash(password),
                    privacy_accepted_at=now, terms_accepted_at=now, email_verified_at=now)
        ctx.db.add(user)
        ctx.db.flush()
        create_personal_workspace(ctx, user)
    user.role = "admin"
    record(ctx, "account.admin_created", target_type="user", target_id=user.id)
    return user
