"""Who is calling, and may they. One policy tries, in order: a bearer access
token (JWT), then the ``gg_session`` cookie. A request carrying an
Authorization header is judged by that header alone."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyramid.authorization import ACLHelper, Authenticated, Everyone
from pyramid.httpexceptions import HTTPFound
from pyramid.security import Denied
from pyramid.view import forbidden_view_config

from guestguard.accounts import sessions
from guestguard.accounts.models import AuthSession, User
from guestguard.accounts.services import policies_accepted
from guestguard.errors import html_error, is_api_request, json_error
from guestguard.permissions import ALLOWED_BEFORE_POLICY_ACCEPTANCE, Root
from guestguard.web import SESSION_COOKIE

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Identity:
    user: User
    session: AuthSession
    method: str  # "jwt" or "cookie"
    needs_policy_acceptance: bool


class PolicyAcceptanceRequired(Denied):
    pass


class SecurityPolicy:
    def identity(self, request) -> Identity | None:
        cached = request.environ.get("guestguard.identity", False)
        if cached is not False:
            return cached
        identity = self._identify(request)
        request.environ["guestguard.identity"] = identity
        return identity

    def _identify(self, request) -> Identity | None:
        settings = request.registry.settings
        authorization = request.authorization
        try:
            if authorization is not None:
                if authorization.authtype.lower() != "bearer" or not isinstance(authorization.params, str):
                    return None
                session = sessions.session_from_access_token(request.db, settings, authorization.params)
                method = "jwt"
            else:
                raw = request.cookies.get(SESSION_COOKIE)
                if not raw:
                    return None
                session = sessions.session_from_cookie(request.db, raw)
                method = "cookie"
        except sessions.InvalidToken:
            return None
        return Identity(session.user, session, method, not policies_accepted(request, session.user))

    def authenticated_userid(self, request):
        identity = self.identity(request)
        return str(identity.user.id) if identity else None

    def effective_principals(self, request) -> list[str]:
        identity = self.identity(request)
        if identity is None:
            return [Everyone]
        return [Everyone, Authenticated, f"user:{identity.user.id}", f"role:{identity.user.role}"]

    def permits(self, request, context, permission):
        identity = self.identity(request)
        if (identity is not None and identity.needs_policy_acceptance
                and permission not in ALLOWED_BEFORE_POLICY_ACCEPTANCE):
            return PolicyAcceptanceRequired("policy acceptance required")
        return ACLHelper().permits(context, self.effective_principals(request), permission)

    def remember(self, request, userid, token: str = "", max_age: int | None = None, **kw):
        secure = request.registry.settings["app.env"] == "production"
        request.response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True,
                                    secure=secure, samesite="Lax", path="/")
        return []

    def forget(self, request, **kw):
        request.response.delete_cookie(SESSION_COOKIE, path="/")
        return []


def come_back_to(request) -> dict[str, str]:
    """Where to return after signing in: the page asked for, when it is one
    that can be reached with GET (a form's POST target cannot)."""
    return {"next": request.path_qs} if request.method in ("GET", "HEAD") else {}


@forbidden_view_config()
def forbidden(exc, request):
    identity = request.identity
    api = is_api_request(request)
    if identity is None:
        if api:
            return json_error(request, 401, "unauthorized", "Sign in: send a bearer access token.",
                              headers={"WWW-Authenticate": 'Bearer realm="guestguard"'})
        return HTTPFound(request.route_url("login", _query=come_back_to(request)))
    if isinstance(exc.result, PolicyAcceptanceRequired):
        if api:
            return json_error(request, 403, "policy_acceptance_required",
                              "Accept the updated privacy policy and terms: POST /api/v1/me/accept-policies.")
        return HTTPFound(request.route_url("accept_policies", _query=come_back_to(request)))
    permission = getattr(exc.result, "permission", None)
    role = identity.user.role
    if api:
        return json_error(request, 403, "forbidden", "You do not have permission for this.",
                          required=permission, role=role)
    return html_error(request, 403, required=permission, role=role)


def includeme(config) -> None:
    config.set_security_policy(SecurityPolicy())
    config.set_root_factory(Root)
    config.scan(__name__)
