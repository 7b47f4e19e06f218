"""The account pages: signup, login, email verification, password reset,
the account page with its sessions, policy acceptance and the legal texts.

Refusals that leave a trace (a failed login counts, an audit row) are
*rendered*, never raised: pyramid_tm would roll the trace back with the
exception."""
from __future__ import annotations

import uuid
from pathlib import Path

from pyramid.httpexceptions import HTTPFound, HTTPNotFound
from pyramid.renderers import render_to_response
from pyramid.security import forget, remember
from pyramid.view import view_config

from guestguard import timefmt
from guestguard.accounts import services, sessions
from guestguard.accounts.devices import describe_device
from guestguard.accounts.models import WEB
from guestguard.accounts.schemas import (
    AcceptPoliciesInput,
    ChangePasswordInput,
    EmailInput,
    LoginInput,
    NewPasswordInput,
    ProfileInput,
    SignupInput,
)
from guestguard.accounts.services import AccountError
from guestguard.captcha import FORM_ERROR_KEY, form_captcha, form_captcha_refusal
from guestguard.db import utcnow
from guestguard.permissions import ACCOUNT, ACCOUNT_BASICS
from guestguard.ratelimit import enforce
from guestguard.web import CHECKBOX, PASSWORD, Field, Form, private, redirect, safe_next
from guestguard.workspaces import services as workspaces

DISPLAY_NAME = Field("display_name", "Your name")
EMAIL = Field("email", "Email")
SIGNUP_FORM = Form(SignupInput, DISPLAY_NAME, EMAIL, Field("password", "Password", PASSWORD),
                   Field("accept_policies", kind=CHECKBOX))
EMAIL_FORM = Form(EmailInput, EMAIL)
LOGIN_FORM = Form(LoginInput, EMAIL, Field("password", "Password", PASSWORD), Field("accept_policies", kind=CHECKBOX))
RESET_FORM = Form(NewPasswordInput, Field("password", "New password", PASSWORD))
PROFILE_FORM = Form(ProfileInput, DISPLAY_NAME)
PASSWORD_FORM = Form(ChangePasswordInput, Field("current_password", "Current password", PASSWORD),
                     Field("new_password", "New password", PASSWORD), Field("end_other_sessions", kind=CHECKBOX))
ACCEPT_FORM = Form(AcceptPoliciesInput, Field("accept", kind=CHECKBOX,
                                              choice="Tick the box to accept the privacy policy and terms."))
ACCOUNT_PAGE = "accounts/account.jinja2"
# The session key holding the address this browser signed up with.
SIGNED_UP = "signed_up"
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


def joining_invitation(request):
    """The workspace invitation this browser followed to the signup form, if still open."""
    return workspaces.joining(request.db, request.session.get(workspaces.JOINING))


def signup_page(request, invitation, status: int = 200, **context) -> dict:
    """The signup form; opened from a workspace invitation, it names the
    workspace and proposes the invited address."""
    return captcha_page(request, status, joining=invitation, **context)


@view_config(route_name="signup", request_method="GET", renderer="accounts/signup.jinja2")
def signup_form(request):
    if request.identity is not None:
        return redirect(request, request.route_path("dashboard"))
    invitation = joining_invitation(request)
    return signup_page(request, invitation, values={"email": invitation.email} if invitation else {}, errors={})


@view_config(route_name="signup", request_method="POST", renderer="accounts/signup.jinja2")
def signup(request):
    """Only an attempt that passes the form's checks counts against the
    ``signup`` limit: a mistyped field costs nothing."""
    if request.identity is not None:
        return redirect(request, request.route_path("dashboard"))
    form = SIGNUP_FORM.read(request)
    status = check_captcha(request, form.errors)
    invitation = joining_invitation(request)
    if form.errors:
        return signup_page(request, invitation, status, values=SIGNUP_FORM.typed(request), errors=form.errors)
    enforce(request, "signup")
    data = form.model
    # The mark of the link sent (or, for a taken address, of none: the same
    # shape): that link, opened in this browser, signs it in.
    request.session[SIGNED_UP] = services.signup(
        request.ctx, email=data.email, password=data.password, display_name=data.display_name,
        personal_workspace=invitation is None or invitation.email != data.email)
    request.session.flash(f"Almost done: we sent a link to {data.email}. Open it to finish signing up.", "success")
    return redirect(request, request.route_path("resend_verification"))


@view_config(route_name="verify_email", request_method="GET", renderer="accounts/verified.jinja2")
def verify_email(request):
    """The link signs in only the browser that signed up and was sent it,
    while the link is valid (a mail scanner opening it first leaves that
    browser able to); opened anywhere else it verifies, and the page asks to
    sign in."""
    private(request)
    token = request.matchdict["token"]
    try:
        user = services.verify_email(request.ctx, token)
    except AccountError as error:
        if error.code != services.ALREADY_VERIFIED:
            return link_invalid(request, "resend_verification", "Get a new verification link")
        user = None
    signing_in = None if request.identity is not None else services.verification_signs_in(
        request.db, token, request.session.get(SIGNED_UP))
    if signing_in is not None:
        login = services.start_login(request.ctx, signing_in, WEB, via="email_verification")
        welcome = f"Welcome to GuestGuard, {signing_in.display_name}: your address is verified."
        return joining_after(request, login, welcome, request.session.get(workspaces.JOINING))
    if user is None:
        return link_invalid(request, "login", "Sign in", verified=True)
    return {"user": user}


def joining_after(request, login: services.Login, welcome: str, invitation_token: str | None):
    """Where a new login from the verification link lands: the workspace
    invitation the browser signed up from, to accept it there, if it is
    still open and for this address; else the dashboard, saying why the
    invitation is gone and giving a workspace of their own to a user
    without any."""
    invitation = workspaces.joining(request.db, invitation_token)
    if invitation is not None and invitation.email == login.user.email:
        return signed_in(request, login, f"{welcome} Accept the invitation to join “{invitation.workspace.name}”.",
                         request.route_path("invitation", token=invitation_token))
    if invitation_token is not None:
        if not workspaces.has_workspace(request.db, login.user.id):
            workspaces.create_personal_workspace(request.ctx, login.user)
        welcome += (" The workspace invitation you signed up from was sent to another address: it stays for that "
                    "address." if invitation is not None else
                    " The workspace invitation you signed up from can no longer be used (withdrawn, expired or "
                    "used): ask for a new one.")
    return signed_in(request, login, welcome, request.route_path("dashboard"))


def signed_in(request, login: services.Login, welcome: str, next_path: str):
    """Start the browser's login: a new cookie session (nothing of the
    signed-out one carries over), the login's cookie, a welcome."""
    request.session.invalidate()
    seconds = int((login.session.expires_at - utcnow()).total_seconds())
    remember(request, str(login.user.id), token=login.cookie_token, max_age=seconds)
    request.session.flash(welcome, "success")
    return redirect(request, next_path)


def link_invalid(request, again_route: str, again_label: str, verified: bool = False):
    private(request, 400)
    request.override_renderer = "accounts/link_invalid.jinja2"
    return {"again_url": request.route_path(again_route), "again_label": again_label, "verified": verified}


@view_config(route_name="resend_verification", request_method="GET",
             renderer="accounts/resend_verification.jinja2")
def resend_verification_form(request):
    private(request)
    return {"values": {}, "errors": {}}


@view_config(route_name="resend_verification", request_method="POST",
             renderer="accounts/resend_verification.jinja2", rate_limit="resend_verification")
def resend_verification(request):
    form = EMAIL_FORM.read(request)
    if not form.ok:
        private(request, 400)
        return {"values": EMAIL_FORM.typed(request), "errors": form.errors}
    services.resend_verification(request.ctx, form.model.email)
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
    page = {"values": LOGIN_FORM.typed(request), "next": next_path}
    form = LOGIN_FORM.read(request)
    if not form.ok:
        private(request, 400)
        return {**page, "errors": form.errors}
    data = form.model
    try:
        result = services.login(request.ctx, email=data.email, password=data.password, kind=WEB,
                                accept_policies=data.accept_policies)
    except AccountError as error:
        private(request, error.status)
        return {**page, "errors": form.refused(error), "refusal": error.code,
                "unverified_email": data.email if error.code == "email_not_verified" else None}
    return signed_in(request, result, f"Welcome back, {result.user.display_name}.",
                     next_path or request.route_path("dashboard"))


@view_config(route_name="logout", request_method="GET", renderer="accounts/logout.jinja2")
def logout_confirm(request):
    if request.identity is None:
        return redirect(request, request.route_path("home"))
    private(request)
    return {}


@view_config(route_name="logout", request_method="POST")
def logout(request):
    identity = request.identity
    if identity is not None and identity.session is not None:  # an API key has no login to end
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
    form = EMAIL_FORM.read(request)
    status = check_captcha(request, form.errors)
    if form.errors:
        return captcha_page(request, status, values=EMAIL_FORM.typed(request), errors=form.errors)
    services.forgot_password(request.ctx, form.model.email)
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
    form = RESET_FORM.read(request)
    if not form.ok:
        if not services.check_reset_token(request.ctx, token):
            return link_invalid(request, "forgot_password", "Ask for a new reset link")
        private(request, 400)
        return {"errors": form.errors}
    try:
        services.reset_password(request.ctx, token, form.model.password)
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
    from guestguard.privacy.exports import latest_export

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
        # The privacy section: the latest copy of the user's data asked for.
        "data_export": latest_export(request.db, identity.user.id),
        "export_link_days": request.registry.settings["privacy.export_link_days"],
        "deletion": {"errors": {}},
        "deletion_grace_days": request.registry.settings["privacy.deletion_grace_days"],
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
    form = PROFILE_FORM.read(request)
    if not form.ok:
        return account_page(request, 400, profile={"values": PROFILE_FORM.typed(request), "errors": form.errors})
    services.update_profile(request.ctx, request.identity.user, display_name=form.model.display_name)
    request.session.flash("Your profile was saved.", "success")
    return redirect(request, request.route_path("account"))


@view_config(route_name="account_password", request_method="POST", permission=ACCOUNT,
             renderer=ACCOUNT_PAGE, rate_limit="password_change")
def account_password(request):
    form = PASSWORD_FORM.read(request)
    typed = PASSWORD_FORM.typed(request)  # the checkbox alone: passwords are never echoed
    if not form.ok:
        return account_page(request, 400, password={"values": typed, "errors": form.errors})
    data = form.model
    identity = request.identity
    try:
        ended = services.change_password(
            request.ctx, identity.user, identity.session, current_password=data.current_password,
            new_password=data.new_password, end_other_sessions=data.end_other_sessions)
    except AccountError as error:
        return account_page(request, error.status, password={"values": typed, "errors": form.refused(error)})
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
    form = ACCEPT_FORM.read(request)
    if not form.ok:
        private(request, 400)
        return {**policies_context(request), "next": next_path, "errors": form.errors}
    services.accept_current_policies(request.ctx, request.identity.user)
    request.session.flash("Thank you: you accepted the current privacy policy and terms.", "success")
    return redirect(request, next_path or request.route_path("account"))


def policy_page(request, setting: str, title: str):
    """The operator's page when one is configured (a URL to go to, or an
    HTML file to show), else the built-in placeholder."""
    page = request.registry.settings[setting]
    if page.startswith(("https://", "http://")):
        return HTTPFound(page)
    if page:
        content = Path(page).read_text(encoding="utf-8")
        return render_to_response("legal/operator.jinja2", {"title": title, "content": content},
                                  request=request)
    return policies_context(request)


@view_config(route_name="privacy", request_method="GET", renderer="legal/privacy.jinja2")
def privacy(request):
    return policy_page(request, "policies.privacy_page", "Privacy policy")


@view_config(route_name="terms", request_method="GET", renderer="legal/terms.jinja2")
def terms(request):
    return policy_page(request, "policies.terms_page", "Terms of service")
