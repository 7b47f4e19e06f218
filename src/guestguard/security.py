"""Who is calling, and may they. One policy tries, in order: a bearer
workspace API key (``ggk_…``), a bearer access token (JWT), then the
``gg_session`` cookie. A request carrying an Authorization header is judged by
that header alone."""
from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass, field

from pyramid.authorization import ACLHelper, Authenticated, Everyone
from pyramid.httpexceptions import HTTPFound
from pyramid.location import lineage
from pyramid.security import Denied
from sqlalchemy import bindparam, select

from guestguard import rls
from guestguard.accounts import sessions
from guestguard.accounts.models import AuthSession, User
from guestguard.accounts.services import policies_accepted
from guestguard.errors import html_error, is_api_request, json_error, not_found
from guestguard.permissions import (
    ALLOWED_BEFORE_POLICY_ACCEPTANCE,
    API_KEY_PRINCIPAL,
    Root,
    api_key_principal,
    member_principal,
)
from guestguard.web import SESSION_COOKIE
from guestguard.workspaces import services as workspaces
from guestguard.workspaces.models import ApiKey

log = logging.getLogger(__name__)


@dataclass
class Identity:
    """A person (with the session they came through) or a workspace API key."""

    method: str  # "jwt", "cookie" or "api_key"
    user: User | None = None
    session: AuthSession | None = None
    api_key: ApiKey | None = None
    needs_policy_acceptance: bool = False
    _db: object = field(default=None, repr=False)
    # Read with the session (an access token's), or on first use.
    _roles: dict[uuid.UUID, str] | None = field(default=None, repr=False)

    @property
    def roles(self) -> dict[uuid.UUID, str]:
        """The caller's role in each workspace they can reach."""
        if self._roles is None:
            if self.api_key is not None:
                self._roles = {self.api_key.workspace_id: self.api_key.role}
            else:
                self._roles = workspaces.roles_of(self._db, self.user.id)
        return self._roles


# An access token's session (its person joined) and that person's roles: one statement, built once.
TOKEN_SESSION = workspaces.with_roles(select(AuthSession).where(AuthSession.id == bindparam("session_id")),
                                      AuthSession.user_id)


def token_identity(request, session_id: uuid.UUID, subject: str) -> Identity:
    """The person an access token names, with the session it names and
    their roles, read in one statement. On PostgreSQL their memberships are
    seen under their own id (``rls``): the transaction's scope names the
    person the token (signed by us) names before that statement, and what
    it named before again if the session is not theirs or not live."""
    db = request.db
    try:
        user_id = uuid.UUID(subject)
    except ValueError:
        raise sessions.InvalidToken("malformed sub") from None
    before = rls.scope_of(db)
    if rls.applies(db):
        rls.set_scope(db, dataclasses.replace(before, user_id=user_id))
    try:
        rows = db.execute(TOKEN_SESSION, {"session_id": session_id}).all()
        session = sessions.live_api_session(db, rows[0][0] if rows else None, subject)
    except sessions.InvalidToken:  # a dead token: the scope is as it was
        if rls.scope_of(db) != before:
            rls.set_scope(db, before)
        raise
    except Exception:
        # The database failed: this transaction is lost (no statement more
        # on it, or the error the outage handlers know would be replaced),
        # and the next one begins with the scope as it was.
        rls.keep_for_next(db, before)
        raise
    return Identity("jwt", user=session.user, session=session, _db=db, _roles=workspaces.roles_in(rows),
                    needs_policy_acceptance=not policies_accepted(request.registry.settings, session.user))


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
                presented = authorization.params
                if presented.startswith(workspaces.API_KEY_PREFIX):
                    key = workspaces.api_key_for(request.db, presented)
                    return Identity("api_key", api_key=key, _db=request.db) if key else None
                session_id, subject = sessions.access_token_names(settings, presented)
                return token_identity(request, session_id, subject)
            raw = request.cookies.get(SESSION_COOKIE)
            if not raw:
                return None
            session = sessions.session_from_cookie(request.db, raw)
            method = "cookie"
        except sessions.InvalidToken:
            return None
        return Identity(method, user=session.user, session=session, _db=request.db,
                        needs_policy_acceptance=not policies_accepted(request.registry.settings, session.user))

    def authenticated_userid(self, request):
        identity = self.identity(request)
        if identity is None or identity.user is None:
            return None
        return str(identity.user.id)

    def effective_principals(self, request) -> list[str]:
        identity = self.identity(request)
        if identity is None:
            return [Everyone]
        if identity.api_key is not None:
            key = identity.api_key
            # Not Authenticated: a key is no person and reaches no account pages.
            return [Everyone, API_KEY_PRINCIPAL, f"api_key:{key.id}",
                    api_key_principal(key.workspace_id, key.role)]
        user = identity.user
        return [Everyone, Authenticated, f"user:{user.id}", f"role:{user.role}"] + [
            member_principal(workspace_id, role) for workspace_id, role in identity.roles.items()]

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


def workspace_of(context) -> uuid.UUID | None:
    for resource in lineage(context):
        workspace_id = getattr(resource, "workspace_id", None)
        if workspace_id is not None:
            return workspace_id
    return None


def come_back_to(request) -> dict[str, str]:
    """Where to return after signing in: the page asked for, when it is one
    that can be reached with GET (a form's POST target cannot)."""
    return {"next": request.path_qs} if request.method in ("GET", "HEAD") else {}


def forbidden(exc, request):
    identity = request.identity
    api = is_api_request(request)
    if identity is None:
        if api:
            return json_error(request, 401, "unauthorized", "Sign in: send a bearer access token.",
                              headers={"WWW-Authenticate": 'Bearer realm="guestguard"'})
        return HTTPFound(request.route_url("login", _query=come_back_to(request)))
    workspace_id = workspace_of(request.context)
    if workspace_id is not None and workspace_id not in identity.roles:
        # Not a member: indistinguishable from an id that does not exist.
        return not_found(exc, request)
    if isinstance(exc.result, PolicyAcceptanceRequired):
        if api:
            return json_error(request, 403, "policy_acceptance_required",
                              "Accept the updated privacy policy and terms: POST /api/v1/me/accept-policies.")
        return HTTPFound(request.route_url("accept_policies", _query=come_back_to(request)))
    permission = getattr(exc.result, "permission", None)
    role = identity.roles.get(workspace_id) if workspace_id else (
        identity.user.role if identity.user else None)
    if api:
        return json_error(request, 403, "forbidden",
                          f"Your role ({role}) does not have the {permission} permission.",
                          required=permission, role=role)
    return html_error(request, 403, required=permission, role=role)


def includeme(config) -> None:
    config.set_security_policy(SecurityPolicy())
    config.set_root_factory(Root)
    # Added here rather than by decorator, so the mutation run reaches its body.
    config.add_forbidden_view(forbidden)
