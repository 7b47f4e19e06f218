"""The account pages: signup, login, email verification, password reset,
the account page with its sessions, policy acceptance and the legal texts.

Refusals that leave a trace (a failed login counts, an audit row) are
*rendered*, never raised: pyramid_tm would roll the trace back with the
exception."""
from __future__ import annotations

import uuid

from pyramid.httpexceptions import HTTPNotFound
from pyramid.security import forget, remember
from pyramid.view import view_config

from guestguard import timefmt
from guestguard.accounts import services, sessions
from guestguard.accounts.devices import describe_device
from guestguard.accounts.models import WEB
from guestguard.accounts.schemas import (
    ChangePasswordInput, EmailInput, LoginInput, NewPasswordInput, ProfileInput, SignupInput,
)
from guestguard.accounts.services import AccountError
from guestguard.captcha import FORM_ERROR_KEY, form_captcha, form_captcha_refusal
from guestguard.db import utcnow
from guestguard.permissions import ACCOUNT, ACCOUNT_BASICS
from guestguard.web import FORM, echo, private, read_form, redirect, safe_next

LABELS = {
    "display_name": "Your name",
    "email": "Email",
    "password": "Password",
    "current_password": "Current password",
    "new_password": "New password",
}
ACCOUNT_PAGE = "accounts/account.jinja2"
SAME_ANSWER = ("If that address can receive email, a message is on its way. "
               "Check your inbox (and spam folder).")


# --- helpers -----------------------------------------------------------------


def captcha_page(request, status: int = 200, **context) -> dict:
    """A private page whose form carries the CAPTCHA."""
    private(request, status)
    return {**context, "captcha": form_captcha(request)}


def check_captcha(request, errors: dict[str, str]) -> int:
    """Once the fields are valid, check the CAPTCHA (not before: its token is
    single-use). Adds a refusal to ``errors``; returns the status to answer."""
    if errors:
        return 400
    refusal = form_captcha_refusal(request)
    if refusal is None:
        return 200
    errors[FORM_ERROR_KEY] = refusal.error_message
    return refusal.code


# --- signup and email verification -------------------------------------------


@view_config(route_name="signup", request_method="GET", renderer="accounts/signup.jinja2")
def signup_form(request):
    if request.identity is not None:
        return redirect(request, request.route_path("dashboard"))
    return captcha_page(request, values={}, errors={})


@view_config(route_name="signup", request_method="POST", renderer="accounts/signup.jinja2",
             rate_limit="signup")
def signup(request):
    if request.identity is not None:
        return redirect(request, request.route_path("dashboard"))
    data, errors = read_form(request, SignupInput, ("display_name", "email", "password"),
                             checkboxes=("accept_policies",), labels=LABELS)
    status = check_captcha(request, errors)
    if errors:
        values = echo(request, "email", "display_name")
        values["accept_policies"] = "accept_policies" in request.POST
        return captcha_page(request, status, values=values, errors=errors)
    services.signup(request.ctx, email=data.email, password=data.password, display_name=data.display_name)
    request.session.flash("Almost done: we sent a link to verify your address. Open it to finish signing up.",
                          "success")
    return redirect(request, request.route_path("resend_verification"))


@view_config(route_name="verify_email", request_method="GET", renderer="accounts/verified.jinja2")
def verify_email(request):
    private(request)
    try:
        services.verify_email(request.ctx, request.matchdict["token"])
    except AccountError:
        return link_invalid(request, "resend_verification", "Get a new verification link")
    return {}


def link_invalid(request, again_route: str, again_label: str):
    private(request, 400)
    request.override_renderer = "accounts/link_invalid.jinja2"
    return {"again_url": request.route_path(again_route), "again_label": again_label}


@view_config(route_name="resend_verification", request_method="GET",
             renderer="accounts/resend_verification.jinja2")
def resend_verification_form(request):
    private(request)
    return {"values": {}, "errors": {}}


@view_config(route_name="resend_verification", request_method="POST",
             renderer="accounts/resend_verification.jinja2", rate_limit="resend_verification")
def resend_verification(request):
    data, errors = read_form(request, EmailInput, ("email",), labels=LABELS)
    if errors:
        private(request, 400)
        return {"values": echo(request, "email"), "errors": errors}
    services.resend_verification(request.ctx, data.email)
    request.session.flash(SAME_ANSWER, "success")
    return redirect(request, request.route_path("resend_verification"))


# --- login and logout --------------------------------------------------------


@view_config(route_name="login", request_method="GET", renderer="accounts/login.jinja2")
def login_form(request):
    if request.identity is not None:
        return redirect(request, request.route_path("dashboard"))
    private(request)
    return {"values": {}, "errors": {}, "next": safe_next(request.GET.get("next"))}


@view_config(route_name="login", request_method="POST", renderer="accounts/login.jinja2",
             rate_limit=("login_ip", "login"))
def login(request):
    if request.identity is not None:
        return redirect(request, request.route_path("dashboard"))
    next_path = safe_next(request.POST.get("next"))
    page = {"values": echo(request, "email"), "next": next_path}
    data, errors = read_form(request, LoginInput, ("email", "password"), checkboxes=("accept_policies",), labels=LABELS)
    if errors:
        private(request, 400)
        return {**page, "errors": errors}
    try:
        result = services.login(request.ctx, email=data.email, password=data.password, kind=WEB,
                                accept_policies=data.accept_policies)
    except AccountError as error:
        private(request, error.status)
        return {**page, "errors": {error.field or FORM: error.message}, "refusal": error.code,
                "unverified_email": data.email if error.code == "email_not_verified" else None}
    request.session.invalidate()
    seconds = int((result.session.expires_at - utcnow()).total_seconds())
    remember(request, str(result.user.id), token=result.cookie_token, max_age=seconds)
    request.session.flash(f"Welcome back, {result.user.display_name}.", "success")
    return redirect(request, next_path or request.route_path("dashboard"))


@view_config(route_name="logout", request_method="GET", renderer="accounts/logout.jinja2")
def logout_confirm(request):
    if request.identity is None:
        return redirect(request, request.route_path("home"))
    private(request)
    return {}


@view_config(route_name="logout", request_method="POST")
def logout(request):
    identity = request.identity
    if identity is not None:
        services.logout(request.ctx, identity.session)
    forget(request)
    request.session.invalidate()
    request.session.flash("You are signed out.", "success")
    return redirect(request, request.route_path("home"))


# --- forgotten password ------------------------------------------------------


@view_config(route_name="forgot_password", request_method="GET", renderer="accounts/forgot_password.jinja2")
def forgot_password_form(request):
    return captcha_page(request, values={}, errors={})


@view_config(route_name="forgot_password", request_method="POST",
             renderer="accounts/forgot_password.jinja2", rate_limit="forgot_password")
def forgot_password(request):
    data, errors = read_form(request, EmailInput, ("email",), labels=LABELS)
    status = check_captcha(request, errors)
    if errors:
        return captcha_page(request, status, values=echo(request, "email"), errors=errors)
    services.forgot_password(request.ctx, data.email)
    request.session.flash(SAME_ANSWER, "success")
    return redirect(request, request.route_path("forgot_password"))


@view_config(route_name="reset_password", request_method="GET", renderer="accounts/reset_password.jinja2")
def reset_password_form(request):
    if not services.check_reset_token(request.ctx, request.matchdict["token"]):
        return link_invalid(request, "forgot_password", "Ask for a new reset link")
    private(request)
    return {"errors": {}}


@view_config(route_name="reset_password", request_method="POST", renderer="accounts/reset_password.jinja2")
def reset_password(request):
    token = request.matchdict["token"]
    data, errors = read_form(request, NewPasswordInput, ("password",), labels={"password": "New password"})
    if errors:
        if not services.check_reset_token(request.ctx, token):
            return link_invalid(request, "forgot_password", "Ask for a new reset link")
        private(request, 400)
        return {"errors": errors}
    try:
        services.reset_password(request.ctx, token, data.password)
    except AccountError:
        return link_invalid(request, "forgot_password", "Ask for a new reset link")
    # Every session ended, this browser's included.
    forget(request)
    request.session.invalidate()
    request.session.flash("Your password was changed and every session was signed out. "
                          "Log in with your new password.", "success")
    return redirect(request, request.route_path("login"))


# --- the account page --------------------------------------------------------


def account_page(request, status: int = 200, **forms):
    """The account page's context; ``forms`` carries the values and errors
    of the one form being re-rendered."""
    private(request, status)
    identity = request.identity
    now = utcnow()
    rows = [{
        "id": str(session.id),
        "device": describe_device(session.user_agent),
        "kind": session.kind,
        "ip": session.ip,
        "created_at": session.created_at,
        "last_seen_at": session.last_seen_at,
        "last_seen": timefmt.ago(session.last_seen_at, now),
        "current": session.id == identity.session.id,
    } for session in sessions.active_sessions(request.db, identity.user.id)]
    rows.sort(key=lambda row: not row["current"])  # this device first
    context = {
        "user": identity.user,
        "sessions": rows,
        "others": sum(1 for row in rows if not row["current"]),
        "profile": {"values": {"display_name": identity.user.display_name}, "errors": {}},
        "password": {"values": {"end_other_sessions": True}, "errors": {}},
    }
    context.update(forms)
    return context


@view_config(route_name="account", request_method="GET", permission=ACCOUNT,
             renderer=ACCOUNT_PAGE)
def account(request):
    return account_page(request)


@view_config(route_name="account_profile", request_method="POST", permission=ACCOUNT,
             renderer=ACCOUNT_PAGE)
def account_profile(request):
    data, errors = read_form(request, ProfileInput, ("display_name",), labels=LABELS)
    if errors:
        return account_page(request, 400, profile={"values": echo(request, "display_name"), "errors": errors})
    services.update_profile(request.ctx, request.identity.user, display_name=data.display_name)
    request.session.flash("Your profile was saved.", "success")
    return redirect(request, request.route_path("account"))


@view_config(route_name="account_password", request_method="POST", permission=ACCOUNT,
             renderer=ACCOUNT_PAGE, rate_limit="password_change")
def account_password(request):
    data, errors = read_form(request, ChangePasswordInput, ("current_password", "new_password"),
                             checkboxes=("end_other_sessions",), labels=LABELS)
    ticked = "end_other_sessions" in request.POST
    if errors:
        return account_page(request, 400,
                            password={"values": {"end_other_sessions": ticked}, "errors": errors})
    identity = request.identity
    try:
        ended = services.change_password(
            request.ctx, identity.user, identity.session, current_password=data.current_password,
            new_password=data.new_password, end_other_sessions=data.end_other_sessions)
    except AccountError as error:
        return account_page(request, error.status, password={
            "values": {"end_other_sessions": ticked},
            "errors": {error.field or FORM: error.message}})
    message = "Your password was changed."
    if ended:
        message += f" {ended} other session{'' if ended == 1 else 's'} signed out."
    request.session.flash(message, "success")
    return redirect(request, request.route_path("account"))


@view_config(route_name="account_session_revoke", request_method="POST", permission=ACCOUNT)
def account_session_revoke(request):
    try:
        session_id = uuid.UUID(request.matchdict["session_id"])
    except ValueError:
        raise HTTPNotFound() from None
    identity = request.identity
    session = services.revoke_own_session(request.ctx, identity.user, session_id)
    if session is None:
        raise HTTPNotFound()
    if session.id == identity.session.id:
        forget(request)
        request.session.flash("You are signed out.", "success")
        return redirect(request, request.route_path("home"))
    request.session.flash(f"Signed out {describe_device(session.user_agent)}.", "success")
    return redirect(request, request.route_path("account"))


@view_config(route_name="account_sign_out_everywhere", request_method="POST", permission=ACCOUNT_BASICS)
def account_sign_out_everywhere(request):
    count = services.logout_everywhere(request.ctx, request.identity.user)
    forget(request)
    request.session.invalidate()
    request.session.flash(f"You are signed out everywhere ({count} session{'' if count == 1 else 's'}).",
                          "success")
    return redirect(request, request.route_path("login"))


# --- policies ----------------------------------------------------------------


def policies_context(request) -> dict:
    return {"updated_at": request.registry.settings["policies.updated_at"]}


@view_config(route_name="accept_policies", request_method="GET", permission=ACCOUNT_BASICS,
             renderer="accounts/accept_policies.jinja2")
def accept_policies_form(request):
    next_path = safe_next(request.GET.get("next"))
    if not request.identity.needs_policy_acceptance:
        return redirect(request, next_path or request.route_path("account"))
    private(request)
    return {**policies_context(request), "next": next_path, "errors": {}}


@view_config(route_name="accept_policies", request_method="POST", permission=ACCOUNT_BASICS,
             renderer="accounts/accept_policies.jinja2")
def accept_policies(request):
    next_path = safe_next(request.POST.get("next"))
    if "accept" not in request.POST:
        private(request, 400)
        return {**policies_context(request), "next": next_path,
                "errors": {"accept": "Tick the box to accept the privacy policy and terms."}}
    services.accept_current_policies(request.ctx, request.identity.user)
    request.session.flash("Thank you: you accepted the current privacy policy and terms.", "success")
    return redirect(request, next_path or request.route_path("account"))


@view_config(route_name="privacy", request_method="GET", renderer="legal/privacy.jinja2")
def privacy(request):
    return policies_context(request)


@view_config(route_name="terms", request_method="GET", renderer="legal/terms.jinja2")
def terms(request):
    return policies_context(request)
