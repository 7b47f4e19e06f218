"""The account API under /api/v1: JSON in, JSON out.

Refusals that leave a trace (a failed login counts, an audit row, a revoked
session after a refresh-token replay) are *returned* as error responses, not
raised, so the transaction that records them commits."""
from __future__ import annotations

from pyramid.httpexceptions import HTTPNoContent
from pyramid.view import view_config

from guestguard.accounts import services, sessions
from guestguard.accounts.devices import describe_device
from guestguard.accounts.models import API, AuthSession, User
from guestguard.accounts.schemas import (
    ChangePasswordInput,
    EmailInput,
    ForgotPasswordInput,
    LoginInput,
    OneUser,
    PasswordChanged,
    ProfileInput,
    RefreshInput,
    ResetPasswordInput,
    SessionList,
    SessionOut,
    SignupInput,
    TokenInput,
    TokensOut,
    UserOut,
    Verified,
)
from guestguard.audit.services import FAILURE, record
from guestguard.captcha import require_captcha
from guestguard.contract import Message, Refused
from guestguard.errors import APIError, json_error
from guestguard.permissions import ACCOUNT, ACCOUNT_BASICS
from guestguard.workspaces.resources import parse_id

ACCEPTED = "If the address can receive email, a message is on its way."
CAPTCHA_REFUSALS = {400: Refused("captcha_failed"), 503: Refused("captcha_unavailable")}


def one_user(request, user: User) -> OneUser:
    return OneUser(user=UserOut.of(user, policies_accepted=services.policies_accepted(request.registry.settings, user)))


def session_out(session: AuthSession, current: AuthSession | None) -> SessionOut:
    return SessionOut.of(session, device=describe_device(session.user_agent),
                         current=current is not None and session.id == current.id)


@view_config(route_name="api_signup", request_method="POST", renderer="json", rate_limit="signup",
             body=SignupInput, response={202: Message, **CAPTCHA_REFUSALS})
def signup(request):
    """Create an account; the same answer whether or not the address has one."""
    data = request.body_input
    require_captcha(request, data.captcha_token)
    services.signup(request.ctx, email=data.email, password=data.password, display_name=data.display_name)
    return Message(message="Check your inbox: we sent a link to verify your address.")


@view_config(route_name="api_verify_email", request_method="POST", renderer="json", body=TokenInput,
             response={200: Verified, 400: Refused("invalid_token"), 409: Refused("already_verified")})
def verify_email(request):
    """Verify an email address with the token of the emailed link; a link
    used before by an account that is verified answers 409 ``already_verified``."""
    data = request.body_input
    services.verify_email(request.ctx, data.token)
    return Verified(verified=True)


@view_config(route_name="api_resend_verification", request_method="POST", renderer="json",
             rate_limit="resend_verification", body=EmailInput, response={202: Message})
def resend_verification(request):
    """Send the verification link again; the same answer for any address."""
    data = request.body_input
    services.resend_verification(request.ctx, data.email)
    return Message(message=ACCEPTED)


@view_config(route_name="api_login", request_method="POST", renderer="json", rate_limit=("login_ip", "login"),
             body=LoginInput, shows_secret=True, response={200: TokensOut, 401: Refused("invalid_credentials"),
                                        403: Refused("email_not_verified", "policy_acceptance_required")})
def login(request):
    """Log in: an access token and a refresh token for a new session."""
    data = request.body_input
    result = services.login(request.ctx, email=data.email, password=data.password, kind=API,
                            accept_policies=data.accept_policies)
    pair = sessions.issue_tokens(request.db, request.registry.settings, result.session)
    return TokensOut.of(pair)


@view_config(route_name="api_refresh", request_method="POST", renderer="json", body=RefreshInput,
             shows_secret=True, response={200: TokensOut, 401: Refused(services.INVALID_TOKEN)})
def refresh(request):
    """A new token pair for a refresh token, which rotates; a replayed one ends the session."""
    data = request.body_input
    try:
        pair = sessions.rotate_refresh_token(request.db, request.registry.settings, data.refresh_token)
    except sessions.RefreshReplay as replay:
        record(request.ctx, "account.session_revoked", result=FAILURE, actor_id=replay.session.user_id,
               target_type="session", target_id=replay.session.id, reason="refresh_token_replayed")
        return json_error(request, 401, services.INVALID_TOKEN, "This refresh token is not valid.")
    except sessions.InvalidToken:
        return json_error(request, 401, services.INVALID_TOKEN, "This refresh token is not valid.")
    return TokensOut.of(pair)


@view_config(route_name="api_logout", request_method="POST", permission=ACCOUNT_BASICS,
             response={204: None})
def logout(request):
    """End this session and both its tokens."""
    services.logout(request.ctx, request.identity.session)
    return HTTPNoContent()


@view_config(route_name="api_logout_all", request_method="POST", permission=ACCOUNT_BASICS,
             response={204: None})
def logout_all(request):
    """End every session of the user."""
    services.logout_everywhere(request.ctx, request.identity.user)
    return HTTPNoContent()


@view_config(route_name="api_forgot_password", request_method="POST", renderer="json",
             rate_limit="forgot_password", body=ForgotPasswordInput,
             response={202: Message, **CAPTCHA_REFUSALS})
def forgot_password(request):
    """Email a password-reset link; the same answer for any address."""
    data = request.body_input
    require_captcha(request, data.captcha_token)
    services.forgot_password(request.ctx, data.email)
    return Message(message=ACCEPTED)


@view_config(route_name="api_reset_password", request_method="POST", renderer="json",
             body=ResetPasswordInput, response={200: Message, 400: Refused("invalid_token")})
def reset_password(request):
    """Set a new password with the token of the emailed link; every session ends."""
    data = request.body_input
    services.reset_password(request.ctx, data.token, data.password)
    return Message(message="Your password was changed. Every session was signed out: log in again.")


@view_config(route_name="api_me", request_method="GET", renderer="json", permission=ACCOUNT_BASICS,
             response=OneUser)
def me(request):
    """The signed-in user."""
    return one_user(request, request.identity.user)


@view_config(route_name="api_me", request_method="PATCH", renderer="json", permission=ACCOUNT,
             body=ProfileInput, response=OneUser)
def update_me(request):
    """Change the display name."""
    data = request.body_input
    user = services.update_profile(request.ctx, request.identity.user, display_name=data.display_name)
    return one_user(request, user)


@view_config(route_name="api_me_password", request_method="POST", renderer="json", permission=ACCOUNT,
             rate_limit="password_change", body=ChangePasswordInput,
             response={200: PasswordChanged, 400: Refused("invalid_password")})
def change_password(request):
    """Change the password; other sessions end unless asked otherwise."""
    data = request.body_input
    identity = request.identity
    ended = services.change_password(
        request.ctx, identity.user, identity.session, current_password=data.current_password,
        new_password=data.new_password, end_other_sessions=data.end_other_sessions)
    return PasswordChanged(message="Your password was changed.", other_sessions_ended=ended)


@view_config(route_name="api_me_sessions", request_method="GET", renderer="json", permission=ACCOUNT,
             response=SessionList)
def list_sessions(request):
    """The user's live sessions, one per login."""
    identity = request.identity
    return SessionList(sessions=[session_out(s, identity.session)
                                 for s in sessions.active_sessions(request.db, identity.user.id)])


@view_config(route_name="api_me_session", request_method="DELETE", permission=ACCOUNT,
             response={204: None})
def revoke_session(request):
    """End one of the user's sessions."""
    session_id = parse_id(request, "session_id")
    if services.revoke_own_session(request.ctx, request.identity.user, session_id) is None:
        raise APIError(404)
    return HTTPNoContent()


@view_config(route_name="api_me_accept_policies", request_method="POST", renderer="json",
             permission=ACCOUNT_BASICS, response=OneUser)
def accept_policies(request):
    """Accept the privacy policy and terms in force."""
    services.accept_current_policies(request.ctx, request.identity.user)
    return one_user(request, request.identity.user)
