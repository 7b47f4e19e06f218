"""The account API under /api/v1: JSON in, JSON out.

Refusals that leave a trace (a failed login counts, an audit row, a revoked
session after a refresh-token replay) are *returned* as error responses, not
raised, so the transaction that records them commits."""
from __future__ import annotations

import uuid

from pyramid.httpexceptions import HTTPNoContent
from pyramid.view import view_config

from guestguard.accounts import services, sessions
from guestguard.accounts.devices import describe_device
from guestguard.accounts.models import API, AuthSession, User
from guestguard.accounts.schemas import (
    ChangePasswordInput, EmailInput, ForgotPasswordInput, LoginInput, ProfileInput, RefreshInput,
    ResetPasswordInput, SignupInput, TokenInput,
)
from guestguard.audit.services import FAILURE, record
from guestguard.captcha import require_captcha
from guestguard.errors import APIError, json_error
from guestguard.permissions import ACCOUNT, ACCOUNT_BASICS
from guestguard.validation import parse_json

ACCEPTED = {"message": "If the address can receive email, a message is on its way."}


def user_json(request, user: User) -> dict:
    return {
        "id": str(user.id),
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role,
        "email_verified": user.is_verified,
        "policies_accepted": services.policies_accepted(request.registry.settings, user),
        "created_at": user.created_at.isoformat(),
    }


def session_json(session: AuthSession, current: AuthSession | None) -> dict:
    return {
        "id": str(session.id),
        "kind": session.kind,
        "device": describe_device(session.user_agent),
        "ip": session.ip,
        "created_at": session.created_at.isoformat(),
        "last_seen_at": session.last_seen_at.isoformat(),
        "expires_at": session.expires_at.isoformat(),
        "current": current is not None and session.id == current.id,
    }


@view_config(route_name="api_signup", request_method="POST", renderer="json", rate_limit="signup")
def signup(request):
    data = parse_json(request, SignupInput)
    require_captcha(request, data.captcha_token)
    services.signup(request.ctx, email=data.email, password=data.password, display_name=data.display_name)
    request.response.status = 202
    return {"message": "Check your inbox: we sent a link to verify your address."}


@view_config(route_name="api_verify_email", request_method="POST", renderer="json")
def verify_email(request):
    data = parse_json(request, TokenInput)
    services.verify_email(request.ctx, data.token)
    return {"verified": True}


@view_config(route_name="api_resend_verification", request_method="POST", renderer="json",
             rate_limit="resend_verification")
def resend_verification(request):
    data = parse_json(request, EmailInput)
    services.resend_verification(request.ctx, data.email)
    request.response.status = 202
    return ACCEPTED


@view_config(route_name="api_login", request_method="POST", renderer="json", rate_limit=("login_ip", "login"))
def login(request):
    data = parse_json(request, LoginInput)
    result = services.login(request.ctx, email=data.email, password=data.password, kind=API,
                            accept_policies=data.accept_policies)
    pair = sessions.issue_tokens(request.db, request.registry.settings, result.session)
    return pair.as_json()


@view_config(route_name="api_refresh", request_method="POST", renderer="json")
def refresh(request):
    data = parse_json(request, RefreshInput)
    try:
        pair = sessions.rotate_refresh_token(request.db, request.registry.settings, data.refresh_token)
    except sessions.RefreshReplay as replay:
        record(request.ctx, "account.session_revoked", result=FAILURE, actor_id=replay.session.user_id,
               target_type="session", target_id=replay.session.id, reason="refresh_token_replayed")
        return json_error(request, 401, services.INVALID_TOKEN, "This refresh token is not valid.")
    except sessions.InvalidToken:
        return json_error(request, 401, services.INVALID_TOKEN, "This refresh token is not valid.")
    return pair.as_json()


@view_config(route_name="api_logout", request_method="POST", permission=ACCOUNT_BASICS)
def logout(request):
    services.logout(request.ctx, request.identity.session)
    return HTTPNoContent()


@view_config(route_name="api_logout_all", request_method="POST", permission=ACCOUNT_BASICS)
def logout_all(request):
    services.logout_everywhere(request.ctx, request.identity.user)
    return HTTPNoContent()


@view_config(route_name="api_forgot_password", request_method="POST", renderer="json",
             rate_limit="forgot_password")
def forgot_password(request):
    data = parse_json(request, ForgotPasswordInput)
    require_captcha(request, data.captcha_token)
    services.forgot_password(request.ctx, data.email)
    request.response.status = 202
    return ACCEPTED


@view_config(route_name="api_reset_password", request_method="POST", renderer="json")
def reset_password(request):
    data = parse_json(request, ResetPasswordInput)
    services.reset_password(request.ctx, data.token, data.password)
    return {"message": "Your password was changed. Every session was signed out: log in again."}


@view_config(route_name="api_me", request_method="GET", renderer="json", permission=ACCOUNT_BASICS)
def me(request):
    return {"user": user_json(request, request.identity.user)}


@view_config(route_name="api_me", request_method="PATCH", renderer="json", permission=ACCOUNT)
def update_me(request):
    data = parse_json(request, ProfileInput)
    user = services.update_profile(request.ctx, request.identity.user, display_name=data.display_name)
    return {"user": user_json(request, user)}


@view_config(route_name="api_me_password", request_method="POST", renderer="json", permission=ACCOUNT,
             rate_limit="password_change")
def change_password(request):
    data = parse_json(request, ChangePasswordInput)
    identity = request.identity
    ended = services.change_password(
        request.ctx, identity.user, identity.session, current_password=data.current_password,
        new_password=data.new_password, end_other_sessions=data.end_other_sessions)
    return {"message": "Your password was changed.", "other_sessions_ended": ended}


@view_config(route_name="api_me_sessions", request_method="GET", renderer="json", permission=ACCOUNT)
def list_sessions(request):
    identity = request.identity
    return {"sessions": [session_json(s, identity.session)
                         for s in sessions.active_sessions(request.db, identity.user.id)]}


@view_config(route_name="api_me_session", request_method="DELETE", permission=ACCOUNT)
def revoke_session(request):
    try:
        session_id = uuid.UUID(request.matchdict["session_id"])
    except ValueError:
        raise APIError(404) from None
    if services.revoke_own_session(request.ctx, request.identity.user, session_id) is None:
        raise APIError(404)
    return HTTPNoContent()


@view_config(route_name="api_me_accept_policies", request_method="POST", renderer="json",
             permission=ACCOUNT_BASICS)
def accept_policies(request):
    services.accept_current_policies(request.ctx, request.identity.user)
    return {"user": user_json(request, request.identity.user)}
