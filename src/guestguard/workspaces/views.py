"""The workspace pages: overview, settings, members, invitations, API keys,
the emailed invitation link, and the workspace switcher of the navigation.

Each view declares the permission of its JSON counterpart in ``api.py``.
Refusals from the services are rendered, never raised: pyramid_tm would roll
their audit rows back with the exception."""
from __future__ import annotations

from pyramid.events import BeforeRender, subscriber
from pyramid.view import view_config
from sqlalchemy import select

from guestguard.accounts.models import User
from guestguard.db import lock_name
from guestguard.permissions import (
    ACCOUNT,
    ADMIN,
    API_KEYS_MANAGE,
    BILLING_MANAGE,
    MEMBERS_MANAGE,
    MEMBERS_VIEW,
    OWNER,
    OWNERSHIP_TRANSFER,
    ROLES,
    STAFF,
    WORKSPACE_CREATE,
    WORKSPACE_DELETE,
    WORKSPACE_EDIT,
    WORKSPACE_VIEW,
    granted,
)
from guestguard.security import workspace_of
from guestguard.web import FORM, Field, Form, private, redirect
from guestguard.workspaces import services
from guestguard.workspaces.api import own_membership
from guestguard.workspaces.models import ApiKey, Workspace
from guestguard.workspaces.schemas import (
    ApiKeyInput,
    DeleteWorkspaceInput,
    InvitationInput,
    RoleInput,
    TransferInput,
    WorkspaceInput,
)
from guestguard.workspaces.services import WorkspaceError

NAME = Field("name", "Name")
# Choices come from a <select>: pydantic's wording about literals would not help.
ROLE = Field("role", "Role", choice="Choose a role from the list.")
NEW_OWNER = Field("member_id", "New owner", choice="Choose the member who becomes the owner.")
WORKSPACE_FORM = Form(WorkspaceInput, NAME)
TRANSFER_FORM = Form(TransferInput, NEW_OWNER)
DELETE_FORM = Form(DeleteWorkspaceInput, Field("confirm_name", choice="Type the workspace name exactly as shown "
                                                                     "to delete it."))
ROLE_FORM = Form(RoleInput, ROLE)
INVITATION_FORM = Form(InvitationInput, Field("email", "Email"), ROLE)
API_KEY_FORM = Form(ApiKeyInput, NAME, ROLE)
SENSITIVITY_CHOICES = (
    ("relaxed", "Relaxed", "Only the clearest sharing: more networks, people or opens before a flag."),
    ("normal", "Normal", "The usual thresholds: recommended."),
    ("strict", "Strict", ("Earlier warnings, and more of them about ordinary guests: for events where a "
                         "shared link costs the most.")),
)
ROLE_DESCRIPTIONS = {
    OWNER: "Everything, including billing, ownership and deleting the workspace.",
    ADMIN: "Everything except billing, ownership and deleting the workspace.",
    STAFF: "Door staff: sees events and guests and checks guests in.",
}
# The workspace's pages and who may open them; the tabs show the allowed ones.
SECTIONS = (
    ("workspace_home", "Overview", WORKSPACE_VIEW),
    ("workspace_members", "Members", MEMBERS_VIEW),
    ("workspace_invitations", "Invitations", MEMBERS_MANAGE),
    ("workspace_api_keys", "API keys", API_KEYS_MANAGE),
    ("workspace_billing", "Billing", BILLING_MANAGE),
    ("workspace_settings", "Settings", WORKSPACE_VIEW),
)
ABILITIES = {"rename": WORKSPACE_EDIT, "transfer": OWNERSHIP_TRANSFER, "delete": WORKSPACE_DELETE,
             "view_members": MEMBERS_VIEW, "manage_members": MEMBERS_MANAGE,
             "manage_keys": API_KEYS_MANAGE}
SETTINGS_PAGE = "workspaces/settings.jinja2"
MEMBERS_PAGE = "workspaces/members.jinja2"
INVITATIONS_PAGE = "workspaces/invitations.jinja2"
API_KEYS_PAGE = "workspaces/api_keys.jinja2"
INVITATION_PAGE = "workspaces/invitation.jinja2"


# --- helpers -----------------------------------------------------------------


def workspace_page(request, context, section: str, status: int = 200, **extra) -> dict:
    private(request, status)
    allowed = granted(request.identity, context.workspace_id)
    return {
        "workspace": context.workspace,
        "role": request.identity.roles.get(context.workspace_id),
        "can": {name: permission in allowed for name, permission in ABILITIES.items()},
        "sections": [{"label": label, "current": route == section,
                      "url": request.route_path(route, workspace_id=context.workspace_id)}
                     for route, label, permission in SECTIONS if permission in allowed],
        "role_descriptions": ROLE_DESCRIPTIONS,
        **extra,
    }


def go(request, route: str, context=None, message: str | None = None):
    if message:
        request.session.flash(message, "success")
    if context is None:
        return redirect(request, request.route_path(route))
    return redirect(request, request.route_path(route, workspace_id=context.workspace_id))


# --- the workspace switcher --------------------------------------------------


def workspace_menu(request) -> dict | None:
    """The signed-in person's workspaces for the navigation, in one query,
    the one the page belongs to marked."""
    identity = request.identity
    if identity is None or identity.user is None:
        return None
    roles = identity.roles
    rows = request.db.execute(select(Workspace.id, Workspace.name)
                              .where(Workspace.id.in_(list(roles)))) if roles else ()
    names = {row.id: row.name for row in rows}
    current = workspace_of(getattr(request, "context", None))
    try:
        here = request.path
    except UnicodeDecodeError:  # the error page for an address that is not UTF-8
        here = None
    items = []
    for workspace_id, role in roles.items():  # already ordered: personal first, then by name
        if workspace_id in names:
            url = request.route_path("workspace_home", workspace_id=workspace_id)
            items.append({"name": names[workspace_id], "role": role, "url": url,
                          "current": workspace_id == current, "here": url == here})
    return {"workspaces": items, "current": next((item for item in items if item["current"]), None)}


@subscriber(BeforeRender)
def add_workspace_menu(event) -> None:
    request = event.get("request")
    if request is not None:
        event.setdefault("workspace_menu", lambda: workspace_menu(request))


# --- creating a workspace and its overview -----------------------------------


@view_config(route_name="workspace_new", request_method="GET", permission=WORKSPACE_CREATE,
             renderer="workspaces/new.jinja2")
def new_workspace_form(request):
    private(request)
    return {"values": {}, "errors": {}}


@view_config(route_name="workspace_new", request_method="POST", permission=WORKSPACE_CREATE,
             renderer="workspaces/new.jinja2", rate_limit="workspace_create")
def new_workspace(request):
    form = WORKSPACE_FORM.read(request)
    if not form.ok:
        private(request, 400)
        return {"values": WORKSPACE_FORM.typed(request), "errors": form.errors}
    workspace = services.create_workspace(request.ctx, request.identity.user, form.model.name)
    request.session.flash(f"Workspace “{workspace.name}” created. You are its owner.", "success")
    return redirect(request, request.route_path("workspace_home", workspace_id=workspace.id))


@view_config(route_name="workspace_home", request_method="GET", permission=WORKSPACE_VIEW,
             renderer="workspaces/home.jinja2")
def workspace_home(context, request):
    return workspace_page(request, context, "workspace_home",
                          member_count=len(services.members(request.db, context.workspace_id)))


# --- settings: rename, transfer, leave, delete -------------------------------


def settings_page(request, context, status: int = 200, **forms) -> dict:
    page = workspace_page(request, context, "workspace_settings", status)
    successors = []
    if page["can"]["transfer"]:
        me = request.identity.user
        successors = [(str(m.id), f"{m.user.display_name} ({m.user.email}, {m.role})")
                      for m in services.members(request.db, context.workspace_id)
                      if me is None or m.user_id != me.id]
    page.update({
        "sole_owner": page["role"] == OWNER and services.owner_count(request.db, context.workspace_id) == 1,
        "successors": successors,
        "rename": {"values": {"name": context.workspace.name}, "errors": {}},
        "transfer": {"values": {}, "errors": {}},
        "delete": {"values": {}, "errors": {}},
        "leave": {"errors": {}},
        "guard": {"values": {"sensitivity": context.workspace.guard_sensitivity}, "errors": {}},
        "sensitivities": SENSITIVITY_CHOICES,
    })
    page.update(forms)
    return page


@view_config(route_name="workspace_settings", request_method="GET", permission=WORKSPACE_VIEW,
             renderer=SETTINGS_PAGE)
def workspace_settings(context, request):
    return settings_page(request, context)


@view_config(route_name="workspace_settings", request_method="POST", permission=WORKSPACE_EDIT,
             renderer=SETTINGS_PAGE)
def rename_workspace(context, request):
    form = WORKSPACE_FORM.read(request)
    if not form.ok:
        return settings_page(request, context, 400,
                             rename={"values": WORKSPACE_FORM.typed(request), "errors": form.errors})
    data = form.model
    services.rename_workspace(request.ctx, context.workspace, data.name)
    return go(request, "workspace_settings", context, f"The workspace is now called “{data.name}”.")


@view_config(route_name="workspace_transfer", request_method="POST", permission=OWNERSHIP_TRANSFER,
             renderer=SETTINGS_PAGE)
def transfer_ownership(context, request):
    form = TRANSFER_FORM.read(request)
    target = services.find_membership(request.db, context.workspace_id, form.model.member_id) if form.ok else None
    if target is None:
        form.refuse("member_id", "is not a member")  # worded as the field's choice
        return settings_page(request, context, 400, transfer={"values": {}, "errors": form.errors})
    try:
        services.transfer_ownership(request.ctx, own_membership(request, context.workspace_id), target)
    except WorkspaceError as error:
        return settings_page(request, context, error.status, transfer={
            "values": {"member_id": str(target.id)}, "errors": form.refused(error)})
    return go(request, "workspace_settings", context,
              f"{target.user.display_name} is now the owner of “{context.workspace.name}”. "
              "You are an admin.")


@view_config(route_name="workspace_leave", request_method="POST", permission=WORKSPACE_VIEW,
             renderer=SETTINGS_PAGE)
def leave_workspace(context, request):
    membership = own_membership(request, context.workspace_id)
    if membership is None:  # an API key is no member
        return settings_page(request, context, 403,
                             leave={"errors": {FORM: "Only members can leave a workspace."}})
    try:
        services.remove_member(request.ctx, membership.role, membership)
    except WorkspaceError as error:
        return settings_page(request, context, error.status, leave={"errors": {FORM: error.message}})
    return go(request, "account", message=f"You left “{context.workspace.name}”.")


@view_config(route_name="workspace_delete", request_method="POST", permission=WORKSPACE_DELETE,
             renderer=SETTINGS_PAGE)
def delete_workspace(context, request):
    form = DELETE_FORM.read(request)
    if form.ok and form.model.confirm_name != context.workspace.name:
        form.refuse("confirm_name", "is not the workspace's name")  # worded as the field's choice
    if not form.ok:
        return settings_page(request, context, 400, delete={
            "values": {"confirm_name": form.values.get("confirm_name", "")}, "errors": form.errors})
    services.delete_workspace(request.ctx, context.workspace)
    return go(request, "account", message=f"Workspace “{context.workspace.name}” was deleted.")


# --- members -----------------------------------------------------------------


def members_page(request, context, status: int = 200, refusal: str | None = None,
                 failed=None) -> dict:
    page = workspace_page(request, context, "workspace_members", status)
    me = request.identity.user
    role = page["role"]
    sole_owner = role == OWNER and services.owner_count(request.db, context.workspace_id) == 1
    rows = []
    for member in services.members(request.db, context.workspace_id):
        you = me is not None and member.user_id == me.id
        rows.append({
            "member": member, "you": you,
            # The only owner cannot step down: a workspace keeps an owner.
            "sole_owner": you and sole_owner,
            # Only an owner touches an owner; the service says so too.
            "manageable": page["can"]["manage_members"] and (role == OWNER or member.role != OWNER)
            and not (you and sole_owner),
            "failed": member.id == failed,
        })
    page.update(members=rows, refusal=refusal,
                role_choices=ROLES if role == OWNER else (ADMIN, STAFF))
    return page


@view_config(route_name="workspace_members", request_method="GET", permission=MEMBERS_VIEW,
             renderer=MEMBERS_PAGE)
def workspace_members(context, request):
    return members_page(request, context)


@view_config(route_name="workspace_member_role", request_method="POST", permission=MEMBERS_MANAGE,
             renderer=MEMBERS_PAGE)
def change_member_role(context, request):
    member = context.record
    form = ROLE_FORM.read(request)
    if not form.ok:
        return members_page(request, context, 400, form.errors["role"], member.id)
    data = form.model
    try:
        services.change_role(request.ctx, request.identity.roles.get(context.workspace_id),
                             member, data.role)
    except WorkspaceError as error:
        return members_page(request, context, error.status, error.message, member.id)
    if member.user_id == request.ctx.actor_id:
        # One's own new role may not show the members page any more.
        return go(request, "workspace_home", context, f"Your role is now {data.role}.")
    return go(request, "workspace_members", context,
              f"{member.user.display_name} is now {data.role}.")


@view_config(route_name="workspace_member_remove", request_method="POST",
             permission=MEMBERS_MANAGE, renderer=MEMBERS_PAGE)
def remove_member(context, request):
    member = context.record
    name, leaving = member.user.display_name, member.user_id == request.ctx.actor_id
    try:
        services.remove_member(request.ctx, request.identity.roles.get(context.workspace_id),
                               member)
    except WorkspaceError as error:
        return members_page(request, context, error.status, error.message, member.id)
    if leaving:
        return go(request, "account", message=f"You left “{context.workspace.name}”.")
    return go(request, "workspace_members", context,
              f"{name} was removed from “{context.workspace.name}”.")


# --- invitations -------------------------------------------------------------


def invitations_page(request, context, status: int = 200, changing=None, **invite) -> dict:
    return workspace_page(
        request, context, "workspace_invitations", status, changing=changing,
        invite=invite or {"values": {"role": STAFF}, "errors": {}},
        pending=services.pending_invitations(request.db, context.workspace_id))


@view_config(route_name="workspace_invitations", request_method="GET", permission=MEMBERS_MANAGE,
             renderer=INVITATIONS_PAGE)
def workspace_invitations(context, request):
    return invitations_page(request, context)


@view_config(route_name="workspace_invitations", request_method="POST", permission=MEMBERS_MANAGE,
             renderer=INVITATIONS_PAGE, rate_limit="workspace_invite")
def invite(context, request):
    form = INVITATION_FORM.read(request)
    if not form.ok:
        return invitations_page(request, context, 400, values=INVITATION_FORM.typed(request), errors=form.errors)
    data = form.model
    waiting = next((invitation for invitation in services.pending_invitations(request.db, context.workspace_id)
                    if invitation.email == data.email), None)
    if waiting is not None and waiting.role != data.role and request.POST.get("confirm") != "role":
        # A pending invitation with another role: ask before replacing it.
        return invitations_page(request, context, 409, changing={"invitation": waiting, "role": data.role},
                                values=INVITATION_FORM.typed(request), errors={})
    try:
        services.invite(request.ctx, request.identity.user, context.workspace, data.email, data.role)
    except WorkspaceError as error:
        return invitations_page(request, context, error.status, values=INVITATION_FORM.typed(request),
                                errors=form.refused(error))
    return go(request, "workspace_invitations", context,
              f"Invitation sent to {data.email}. The link in it works for "
              f"{request.registry.settings['workspaces.invitation_ttl_days']} days.")


@view_config(route_name="workspace_invitation_revoke", request_method="POST",
             permission=MEMBERS_MANAGE)
def revoke_invitation(context, request):
    services.revoke_invitation(request.ctx, context.record)
    return go(request, "workspace_invitations", context,
              f"The invitation to {context.record.email} was withdrawn: its link no longer works.")


# --- API keys ----------------------------------------------------------------


def api_keys_page(request, context, status: int = 200, created: dict | None = None, repeated=None,
                  **form) -> dict:
    return workspace_page(
        request, context, "workspace_api_keys", status, created=created, repeated=repeated,
        form=form or {"values": {"role": STAFF}, "errors": {}},
        keys=services.api_keys(request.db, context.workspace_id),
        key_prefix=services.API_KEY_PREFIX)


@view_config(route_name="workspace_api_keys", request_method="GET", permission=API_KEYS_MANAGE,
             renderer=API_KEYS_PAGE)
def workspace_api_keys(context, request):
    return api_keys_page(request, context)


@view_config(route_name="workspace_api_keys", request_method="POST", permission=API_KEYS_MANAGE,
             renderer=API_KEYS_PAGE)
def create_api_key(context, request):
    form = API_KEY_FORM.read(request)
    if not form.ok:
        return api_keys_page(request, context, 400, values=API_KEY_FORM.typed(request), errors=form.errors)
    lock_name(request.db, f"api-keys:{context.workspace_id}", ApiKey)  # clicks at once: one after the other
    repeated = services.just_created_key(request.db, context.workspace_id, request.ctx.actor_id, form.model.name)
    if repeated is not None:  # the page reloaded, resending its form: no second key
        return api_keys_page(request, context, 409, repeated=repeated)
    key, secret = services.create_api_key(request.ctx, context.workspace, form.model.name, form.model.role)
    # Rendered, not redirected: the secret exists only in this response,
    # which private() keeps out of every cache.
    return api_keys_page(request, context, 201, created={"key": key, "secret": secret})


@view_config(route_name="workspace_api_key_revoke", request_method="POST", permission=API_KEYS_MANAGE)
def revoke_api_key(context, request):
    services.revoke_api_key(request.ctx, context.record)
    return go(request, "workspace_api_keys", context,
              f"API key “{context.record.name}” was revoked: requests using it are refused from now on.")


# --- the emailed invitation link ---------------------------------------------


def invitation_page(request, invitation, status: int = 200, refusal: str | None = None) -> dict:
    private(request, status)
    user = request.identity.user if request.identity is not None else None
    inviter = request.db.get(User, invitation.invited_by_id) if invitation.invited_by_id else None
    here = request.path
    return {
        "invitation": invitation,
        "inviter": inviter.display_name if inviter else None,
        "user": user,
        "invited": user is not None and user.email == invitation.email,
        "refusal": refusal,
        "role_description": ROLE_DESCRIPTIONS.get(invitation.role),
        "login_url": request.route_path("login", _query={"next": here}),
        "signup_url": request.route_path("signup"),
    }


def invitation_invalid(request, error: WorkspaceError):
    """One page for every token that cannot be used, whatever the reason."""
    private(request, 404)
    request.override_renderer = "workspaces/invitation_invalid.jinja2"
    return {"message": error.message}


@view_config(route_name="invitation", request_method="GET", renderer=INVITATION_PAGE)
def invitation(request):
    try:
        found = services.invitation_for_token(request.db, request.matchdict["token"])
    except WorkspaceError as error:
        return invitation_invalid(request, error)
    if request.identity is None:  # signing up from here joins this workspace once the address is verified
        request.session[services.JOINING] = request.matchdict["token"]
    return invitation_page(request, found)


@view_config(route_name="invitation", request_method="POST", permission=ACCOUNT,
             renderer=INVITATION_PAGE)
def accept_invitation(request):
    token = request.matchdict["token"]
    try:
        membership = services.accept_invitation(request.ctx, request.identity.user, token)
    except WorkspaceError as refusal:
        if refusal.code == "invalid_invitation":
            return invitation_invalid(request, refusal)
        try:
            found = services.invitation_for_token(request.db, token)
        except WorkspaceError as error:  # used up in the meantime
            return invitation_invalid(request, error)
        return invitation_page(request, found, refusal.status, refusal.message)
    workspace = membership.workspace
    request.session.flash(f"Welcome to “{workspace.name}”. You joined as {membership.role}.", "success")
    return redirect(request, request.route_path("workspace_home", workspace_id=workspace.id))
