"""The workspace pages through the real app, as a browser uses them: cookie
sessions, forms with their CSRF tokens, redirects with flash messages, and
the invitation emails the console provider delivered."""
import re
import uuid

import pytest
from sqlalchemy import select

from guestguard.accounts.models import User
from guestguard.audit.models import AuditEvent
from guestguard.testing import TEST_PASSWORD, create_user, csrf, h1, inbox, link, main_text, new_client, signed_in
from guestguard.workspaces import services as workspaces
from guestguard.workspaces.models import Membership, Workspace

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


# --- people, browsers and mail --------------------------------------------------


@pytest.fixture
def gala(app, run_in_request):
    """Ada owns "Ada's Gala"; Grace, Eve and Sam have only their own
    workspaces. Returns the gala's id."""

    def setup(request):
        users = {name: create_user(request, f"{name}@example.com", name.title())
                 for name in ("ada", "grace", "eve", "sam")}
        return workspaces.create_workspace(request.ctx, users["ada"], "Ada's Gala").id

    return run_in_request(setup)


def signed_out(app):
    return new_client(app.app, REMOTE_ADDR="198.51.100.4")


def join(run_in_request, workspace_id, email, role):
    """Make ``email`` a member directly: for tests about what comes after."""
    def add(request):
        user_id = request.db.scalar(select(User.id).where(User.email == email))
        request.db.add(Membership(workspace_id=workspace_id, user_id=user_id, role=role))
    run_in_request(add)


def roles_in(run_in_request, workspace_id):
    return run_in_request(lambda r: {m.user.email: m.role for m in workspaces.members(r.db, workspace_id)})


def invitation_path(app, recipient):
    return link(inbox(app, recipient)[0], "invitations")


def page_of(workspace_id, suffix=""):
    return f"/workspaces/{workspace_id}{suffix}"


def named_forms(page):
    return {name for name in page.forms if isinstance(name, str)}


def switcher(page):
    """(name, aria-current) for each workspace in the navigation's menu."""
    menu = page.html.find("li", class_="switcher")
    if menu is None:
        return None
    return [(a.find(class_="switcher-name").get_text(strip=True), a.get("aria-current"))
            for a in menu.select("a") if a.find(class_="switcher-name")]


def audit(run_in_request, action):
    return run_in_request(lambda r: [(e.result, e.details) for e in r.db.scalars(
        select(AuditEvent).where(AuditEvent.action == action))])


# --- creating and switching -----------------------------------------------------


def test_creating_a_workspace_and_switching_between_them(app, run_in_request, gala):
    grace = signed_in(app, run_in_request, "grace@example.com")
    account = grace.get("/account")
    assert switcher(account) == [("Grace's events", None)]
    assert account.html.find("li", class_="switcher").find("summary").get_text(" ", strip=True) == \
        "Workspace: Workspaces"
    assert account.html.find("a", string=re.compile("New workspace"))["href"] == "/workspaces/new"

    form = grace.get("/workspaces/new").forms["workspace-form"]
    form["name"] = "   "
    refused = form.submit(status=400)
    assert "Name is required." in main_text(refused)
    assert refused.html.find("input", {"name": "name"})["aria-invalid"] == "true"

    form = refused.forms["workspace-form"]
    form["name"] = "Summer Party"
    created = form.submit(status=303)
    workspace_id = re.fullmatch(r"http://guestguard.test/workspaces/([0-9a-f-]{36})", created.location).group(1)
    home = created.follow()
    assert h1(home) == "Overview"
    text = main_text(home)
    assert "Workspace “Summer Party” created. You are its owner." in text
    assert "Your role owner" in text and "1 member" in text
    assert "are on your dashboard" in text
    assert home.html.find("a", string="New event")["href"] == f"/workspaces/{workspace_id}/events/new"
    links = {a.get_text(strip=True) for a in home.html.select("nav.subnav a")}
    assert links == {"Overview", "Members", "Invitations", "API keys", "Billing", "Settings"}
    assert switcher(home) == [("Grace's events", None), ("Summer Party", "page")]
    assert home.html.find("li", class_="switcher").find("summary").get_text(" ", strip=True) == \
        "Workspace: Summer Party"
    # inside the workspace but not on its overview: marked, not "page"
    assert switcher(grace.get(page_of(workspace_id, "/settings"))) == [
        ("Grace's events", None), ("Summer Party", "true")]
    assert roles_in(run_in_request, uuid.UUID(workspace_id)) == {"grace@example.com": "owner"}


def test_signed_out_pages_and_api_keys_get_no_switcher(app, run_in_request, gala):
    anonymous = signed_out(app)
    assert switcher(anonymous.get("/")) is None
    login_redirect = anonymous.get("/workspaces/new", status=302)
    assert login_redirect.location.endswith("/login?next=%2Fworkspaces%2Fnew")
    _, secret = run_in_request(lambda r: workspaces.create_api_key(
        r.ctx, workspaces.find_workspace(r.db, gala), "kiosk", "staff"))
    page = anonymous.get(page_of(gala), headers={"Authorization": f"Bearer {secret}"})
    assert h1(page) == "Overview" and switcher(page) is None


def test_renaming_shows_the_new_name_everywhere(app, run_in_request, gala):
    ada = signed_in(app, run_in_request, "ada@example.com")
    form = ada.get(page_of(gala, "/settings")).forms["rename-form"]
    assert form["name"].value == "Ada's Gala"
    form["name"] = ""
    refused = form.submit(status=400)
    assert "Name is required." in main_text(refused)
    form = refused.forms["rename-form"]
    form["name"] = "Ada's Ball"
    page = form.submit(status=303).follow()
    assert "The workspace is now called “Ada's Ball”." in main_text(page)
    assert ("Ada's Ball", "true") in switcher(page)


# --- invitations ------------------------------------------------------------------


def test_invite_email_sign_in_and_accept(app, run_in_request, gala):
    ada = signed_in(app, run_in_request, "ada@example.com")
    form = ada.get(page_of(gala, "/invitations")).forms["invite-form"]
    form["email"] = "Grace@Example.com"
    form["role"] = "admin"
    sent = form.submit(status=303).follow()
    assert "Invitation sent to grace@example.com." in main_text(sent)
    pending = sent.html.select("ul.rows > li")
    assert len(pending) == 1
    assert "grace@example.com" in pending[0].get_text() and "admin" in pending[0].get_text()

    path = invitation_path(app, "grace@example.com")
    browser = signed_out(app)
    invitation = browser.get(path)
    assert invitation.headers["Cache-Control"] == "no-store"
    assert invitation.headers["Referrer-Policy"] == "no-referrer"
    assert h1(invitation) == "Join “Ada's Gala”"
    text = main_text(invitation)
    assert "Ada invited you" in text and "Admin" in text and "Invited by Ada" in text
    assert "accept-form" not in invitation.forms
    log_in_link = invitation.html.find("a", string="Log in to accept")["href"]
    assert log_in_link.startswith("/login?next=%2Finvitations%2F")
    assert invitation.html.find("main").find("a", string="Sign up")["href"] == "/signup"

    form = browser.get(log_in_link).forms["login-form"]
    form["email"] = "grace@example.com"
    form["password"] = TEST_PASSWORD
    back = form.submit(status=303)
    assert back.location.endswith(path)
    invitation = back.follow()
    assert "You are signed in as grace@example.com" in main_text(invitation)
    joined = invitation.forms["accept-form"].submit(status=303)
    assert joined.location.endswith(page_of(gala))
    home = joined.follow()
    assert "Welcome to “Ada's Gala”. You joined as admin." in main_text(home)
    assert ("Ada's Gala", "page") in switcher(home)
    assert roles_in(run_in_request, gala)["grace@example.com"] == "admin"
    assert [result for result, _ in audit(run_in_request, "invitation.accepted")] == ["success"]

    members = ada.get(page_of(gala, "/members"))
    assert any("Grace" in row.get_text() and "admin" in row.get_text()
               for row in members.html.select("ul.members > li"))
    assert ada.get(page_of(gala, "/invitations")).html.select("ul.rows > li") == []
    used = browser.get(path, status=404)
    assert h1(used) == "This invitation can't be used"


def test_accepting_with_another_address_is_refused_and_changes_nothing(app, run_in_request, gala):
    ada = signed_in(app, run_in_request, "ada@example.com")
    form = ada.get(page_of(gala, "/invitations")).forms["invite-form"]
    form["email"] = "grace@example.com"
    form.submit(status=303)
    path = invitation_path(app, "grace@example.com")

    eve = signed_in(app, run_in_request, "eve@example.com")
    page = eve.get(path)
    assert "accept-form" not in page.forms
    assert "You are signed in as eve@example.com , but this invitation was sent to another email address" \
        in main_text(page)
    assert "switch-account-form" in page.forms

    refused = eve.post(path, {"csrf_token": csrf(page)}, status=403)
    assert "This invitation was sent to another email address. Sign in with that address to accept it." \
        in main_text(refused)
    assert "eve@example.com" not in roles_in(run_in_request, gala)
    assert [result for result, _ in audit(run_in_request, "invitation.accepted")] == ["failure"]
    assert len(ada.get(page_of(gala, "/invitations")).html.select("ul.rows > li")) == 1
    # and the invitation still works for its address
    grace = signed_in(app, run_in_request, "grace@example.com")
    grace.get(path).forms["accept-form"].submit(status=303)
    assert roles_in(run_in_request, gala)["grace@example.com"] == "staff"


def test_inviting_a_pending_address_with_another_role_asks_first(app, run_in_request, gala):
    ada = signed_in(app, run_in_request, "ada@example.com")
    form = ada.get(page_of(gala, "/invitations")).forms["invite-form"]
    form["email"], form["role"] = "grace@example.com", "staff"
    form.submit(status=303)
    form = ada.get(page_of(gala, "/invitations")).forms["invite-form"]
    form["email"], form["role"] = "grace@example.com", "admin"
    asked = form.submit(status=409)
    assert "grace@example.com already has an invitation as staff" in main_text(asked)
    assert [row.find("span", class_="badge").get_text() for row in asked.html.select("ul.rows > li")] == ["staff"]
    assert len(inbox(app, "grace@example.com")) == 1  # nothing sent yet
    sent = asked.forms["confirm-role-form"].submit(status=303).follow()
    assert "Invitation sent to grace@example.com." in main_text(sent)
    assert [row.find("span", class_="badge").get_text() for row in sent.html.select("ul.rows > li")] == ["admin"]
    assert len(inbox(app, "grace@example.com")) == 2
    form = sent.forms["invite-form"]  # the same role again: sent again without asking
    form["email"], form["role"] = "grace@example.com", "admin"
    form.submit(status=303)
    assert len(inbox(app, "grace@example.com")) == 3


def invite(app, run_in_request, gala, email, role="staff"):
    ada = signed_in(app, run_in_request, "ada@example.com")
    form = ada.get(page_of(gala, "/invitations")).forms["invite-form"]
    form["email"], form["role"] = email, role
    form.submit(status=303)
    return ada, invitation_path(app, email)


def sign_up_from(browser, invitation_path, *, email=None, name="Nora New"):
    """Open the invitation signed out, follow its Sign up, fill the form."""
    browser.get(invitation_path)
    form = browser.get("/signup").forms["signup-form"]
    if email is not None:
        form["email"] = email
    form["display_name"], form["password"] = name, TEST_PASSWORD
    form["accept_policies"] = True
    return form.submit(status=303)


def verify_link(app, email):
    return link(next(m for m in inbox(app, email) if "/verify-email/" in m.text), "verify-email")


def workspaces_of(run_in_request, email):
    return run_in_request(lambda r: sorted(
        (w.name, w.personal, m.role) for m, w in r.db.execute(
            select(Membership, Workspace).join(Workspace, Workspace.id == Membership.workspace_id)
            .join(User, User.id == Membership.user_id).where(User.email == email)).all()))


def test_signing_up_from_an_invitation_joins_its_workspace_without_one_of_ones_own(app, run_in_request, gala):
    invite(app, run_in_request, gala, "nora@example.com", "admin")
    path = invitation_path(app, "nora@example.com")
    browser = signed_out(app)
    page = browser.get(path)
    assert "once you verify it in this browser, you join “Ada's Gala”" in main_text(page)
    form_page = browser.get("/signup")
    assert form_page.forms["signup-form"]["email"].value == "nora@example.com"
    assert "You're joining “Ada's Gala”" in main_text(form_page)
    sign_up_from(browser, path)
    assert workspaces_of(run_in_request, "nora@example.com") == []  # no empty workspace of her own

    arrived = browser.get(verify_link(app, "nora@example.com"), status=303)
    assert arrived.location.endswith(path)  # signed in, back at the invitation to accept it there
    invitation = arrived.follow()
    assert "Accept the invitation to join “Ada's Gala”." in main_text(invitation)
    assert workspaces_of(run_in_request, "nora@example.com") == []  # nothing joined by opening a page
    home = invitation.forms["accept-form"].submit(status=303).follow()
    assert "Welcome to “Ada's Gala”. You joined as admin." in main_text(home)
    assert workspaces_of(run_in_request, "nora@example.com") == [("Ada's Gala", False, "admin")]
    dashboard = browser.get("/dashboard")
    assert "Nora New's events" not in dashboard.text
    assert h1(browser.get(path, status=404)) == "This invitation can't be used"  # accepted: used up


def test_an_invitation_withdrawn_before_verifying_leaves_a_workspace_of_ones_own(app, run_in_request, gala):
    ada, path = invite(app, run_in_request, gala, "nora@example.com")
    browser = signed_out(app)
    sign_up_from(browser, path)
    pending = ada.get(page_of(gala, "/invitations"))
    pending.forms[next(name for name in named_forms(pending) if name.startswith("revoke"))].submit(status=303)
    arrived = browser.get(verify_link(app, "nora@example.com"), status=303)
    assert arrived.location.endswith("/dashboard")
    assert "can no longer be used (withdrawn, expired or used)" in main_text(arrived.follow())
    assert workspaces_of(run_in_request, "nora@example.com") == [("Nora New's events", True, "owner")]


def test_signing_up_from_an_invitation_with_another_address_keeps_ones_own_workspace(app, run_in_request, gala):
    _, path = invite(app, run_in_request, gala, "nora@example.com")
    browser = signed_out(app)
    sign_up_from(browser, path, email="other@example.com")
    arrived = browser.get(verify_link(app, "other@example.com"), status=303)
    assert "was sent to another address: it stays for that address" in main_text(arrived.follow())
    assert workspaces_of(run_in_request, "other@example.com") == [("Nora New's events", True, "owner")]
    assert run_in_request(lambda r: workspaces.invitation_for_token(r.db, path.rsplit("/", 1)[1]).accepted_at) is None


def test_verified_elsewhere_the_dashboard_offers_to_join_or_start_a_workspace(app, run_in_request, gala):
    _, path = invite(app, run_in_request, gala, "nora@example.com")
    browser = signed_out(app)
    sign_up_from(browser, path)
    signed_out(app).get(verify_link(app, "nora@example.com"))  # another browser
    nora = signed_in(app, run_in_request, "nora@example.com")
    dashboard = nora.get("/dashboard")
    assert "You're not in a workspace yet" in main_text(dashboard)
    assert dashboard.html.find("a", string="Create a workspace")["href"] == "/workspaces/new"
    invitation = nora.get(path)
    invitation.forms["accept-form"].submit(status=303)
    assert workspaces_of(run_in_request, "nora@example.com") == [("Ada's Gala", False, "staff")]


def test_invalid_invitation_tokens_get_one_neutral_404(app, run_in_request, gala):
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(page_of(gala, "/invitations"))
    form = page.forms["invite-form"]
    form["email"] = "grace@example.com"
    page = form.submit(status=303).follow()
    path = invitation_path(app, "grace@example.com")
    page.forms[next(name for name in named_forms(page) if name.startswith("revoke-invitation-"))].submit(
        status=303)

    anonymous = signed_out(app)
    pages = [anonymous.get(p, status=404) for p in ("/invitations/garbage", "/invitations/" + "A" * 43, path)]
    assert {h1(p) for p in pages} == {"This invitation can't be used"}
    assert len({main_text(p) for p in pages}) == 1
    assert "It may have expired, been used or been withdrawn." in main_text(pages[0])
    grace = signed_in(app, run_in_request, "grace@example.com")
    accepted = grace.post(path, {"csrf_token": csrf(grace.get("/account"))}, status=404)
    assert h1(accepted) == "This invitation can't be used"
    assert "grace@example.com" not in roles_in(run_in_request, gala)
    # accepting needs a signed-in person
    token = csrf(anonymous.get("/login"))
    assert "/login" in anonymous.post(path, {"csrf_token": token}, status=302).location


@pytest.mark.parametrize("email, role, status, message", [
    ("not an address", "staff", 400, "An email address must have an @-sign."),
    ("grace@example.com", "owner", 400, "Choose a role from the list."),
    ("ada@example.com", "staff", 409, "That person is already a member."),
])
def test_bad_invitations_are_shown_on_the_form(app, run_in_request, gala, email, role, status, message):
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(page_of(gala, "/invitations"))
    refused = ada.post(page_of(gala, "/invitations"),
                       {"csrf_token": csrf(page), "email": email, "role": role}, status=status)
    summary = refused.html.find(class_="error-summary")
    assert summary["role"] == "alert" and message in summary.get_text()
    assert refused.forms["invite-form"]["email"].value == email
    assert inbox(app, email) == []


# --- members --------------------------------------------------------------------------


def test_changing_roles_and_removing_members(app, run_in_request, gala):
    join(run_in_request, gala, "grace@example.com", "staff")
    ada = signed_in(app, run_in_request, "ada@example.com")
    members = ada.get(page_of(gala, "/members"))
    grace_id = next(m.id for m in run_in_request(lambda r: workspaces.members(r.db, gala))
                    if m.user.email == "grace@example.com")
    form = members.forms[f"role-form-{grace_id}"]
    assert [value for value, *_ in form["role"].options] == ["owner", "admin", "staff"]
    form["role"] = "admin"
    changed = form.submit(status=303).follow()
    assert "Grace is now admin." in main_text(changed)
    assert roles_in(run_in_request, gala)["grace@example.com"] == "admin"
    assert [result for result, _ in audit(run_in_request, "member.role_changed")] == ["success"]
    # the owner's own row has no Remove button: leaving is on the settings page
    ada_id = next(m.id for m in run_in_request(lambda r: workspaces.members(r.db, gala))
                  if m.user.email == "ada@example.com")
    assert f"remove-form-{ada_id}" not in changed.forms

    # an admin neither sees controls for the owner nor gets past the service
    grace = signed_in(app, run_in_request, "grace@example.com")
    as_admin = grace.get(page_of(gala, "/members"))
    assert f"role-form-{ada_id}" not in as_admin.forms and f"remove-form-{ada_id}" not in as_admin.forms
    own_choices = as_admin.forms[f"role-form-{grace_id}"]["role"].options
    assert [value for value, *_ in own_choices] == ["admin", "staff"]
    refused = grace.post(page_of(gala, f"/members/{ada_id}/role"),
                         {"csrf_token": csrf(as_admin), "role": "staff"}, status=403)
    assert "Ada: Only an owner can make or unmake owners." in main_text(refused)
    refused = grace.post(page_of(gala, f"/members/{grace_id}/role"),
                         {"csrf_token": csrf(as_admin), "role": "superuser"}, status=400)
    assert "Choose a role from the list." in main_text(refused)
    assert roles_in(run_in_request, gala)["ada@example.com"] == "owner"

    removed = ada.get(page_of(gala, "/members")).forms[f"remove-form-{grace_id}"].submit(status=303).follow()
    assert "Grace was removed from “Ada's Gala”." in main_text(removed)
    assert "grace@example.com" not in roles_in(run_in_request, gala)
    grace.get(page_of(gala), status=404)
    assert ("Ada's Gala", None) not in (switcher(grace.get("/account")) or [])


def test_the_last_owner_can_neither_leave_nor_step_down(app, run_in_request, gala):
    ada = signed_in(app, run_in_request, "ada@example.com")
    settings = ada.get(page_of(gala, "/settings"))
    assert "leave-form" not in settings.forms  # not offered what would be refused
    assert "You are the only owner, and a workspace always keeps one: transfer ownership first" in main_text(settings)
    token = csrf(settings)
    refused = ada.post(page_of(gala, "/leave"), {"csrf_token": token}, status=409)  # sent anyway
    assert "The last owner cannot leave: transfer ownership first." in main_text(refused)
    assert refused.html.find(class_="error-summary")["role"] == "alert"
    ada.get(page_of(gala))
    assert roles_in(run_in_request, gala)["ada@example.com"] == "owner"

    ada_id = next(m.id for m in run_in_request(lambda r: workspaces.members(r.db, gala)))
    members = ada.get(page_of(gala, "/members"))
    assert f"role-form-{ada_id}" not in members.forms
    assert "You are the only owner. To change your role, first make someone else an owner." in main_text(members)
    refused = ada.post(page_of(gala, f"/members/{ada_id}/role"), {"csrf_token": token, "role": "admin"},
                       status=409)
    assert "A workspace needs an owner: make someone else owner first." in main_text(refused)
    assert roles_in(run_in_request, gala)["ada@example.com"] == "owner"


def test_transferring_ownership_then_leaving(app, run_in_request, gala):
    join(run_in_request, gala, "grace@example.com", "admin")
    ada = signed_in(app, run_in_request, "ada@example.com")
    settings = ada.get(page_of(gala, "/settings"))
    form = settings.forms["transfer-form"]
    assert [label for _, _, label in form["member_id"].options] == [
        "Choose a member", "Grace (grace@example.com, admin)"]
    refused = form.submit(status=400)
    assert "Choose the member who becomes the owner." in main_text(refused)

    form = refused.forms["transfer-form"]
    form["member_id"] = form["member_id"].options[1][0]
    done = form.submit(status=303).follow()
    assert "Grace is now the owner of “Ada's Gala”. You are an admin." in main_text(done)
    assert roles_in(run_in_request, gala) == {"ada@example.com": "admin", "grace@example.com": "owner"}
    assert named_forms(done) - {"sign-out-form"} == {"rename-form", "guard-form", "leave-form"}
    assert [result for result, _ in audit(run_in_request, "workspace.ownership_transferred")] == ["success"]

    left = done.forms["leave-form"].submit(status=303)
    assert left.location.endswith("/account")
    assert "You left “Ada's Gala”." in main_text(left.follow())
    ada.get(page_of(gala), status=404)


def test_deleting_needs_the_exact_name(app, run_in_request, gala):
    ada = signed_in(app, run_in_request, "ada@example.com")
    form = ada.get(page_of(gala, "/settings")).forms["delete-form"]
    form["confirm_name"] = "ada's gala"
    refused = form.submit(status=400)
    assert "Type the workspace name exactly as shown to delete it." in main_text(refused)
    assert refused.forms["delete-form"]["confirm_name"].value == "ada's gala"
    assert run_in_request(lambda r: workspaces.find_workspace(r.db, gala)) is not None

    form = refused.forms["delete-form"]
    form["confirm_name"] = "Ada's Gala"
    deleted = form.submit(status=303)
    assert deleted.location.endswith("/account")
    account = deleted.follow()
    assert "Workspace “Ada's Gala” was deleted." in main_text(account)
    assert switcher(account) == [("Ada's events", None)]
    ada.get(page_of(gala), status=404)
    assert run_in_request(lambda r: r.db.get(Workspace, gala).deleted_at) is not None


# --- API keys ----------------------------------------------------------------------------


def test_an_api_key_is_shown_once_works_and_stops_when_revoked(app, run_in_request, gala):
    ada = signed_in(app, run_in_request, "ada@example.com")
    form = ada.get(page_of(gala, "/api-keys")).forms["api-key-form"]
    form["name"] = ""
    refused = form.submit(status=400)
    assert "Name is required." in main_text(refused)

    form = refused.forms["api-key-form"]
    form["name"] = "Zapier"
    form["role"] = "admin"
    created = form.submit(status=201)
    assert created.headers["Cache-Control"] == "no-store"
    secret = created.html.find(id="new-secret").get_text(strip=True)
    assert re.fullmatch(r"ggk_[0-9a-f]{16}_\S{43}", secret)
    assert "it is shown only this once" in main_text(created)
    reloaded = form.submit(status=409)  # the browser sends the form again: no second key, no secret
    assert "The key “Zapier” was created moments ago" in main_text(reloaded)
    assert reloaded.html.find(id="new-secret") is None and secret not in reloaded.text

    listing = ada.get(page_of(gala, "/api-keys"))
    assert secret not in listing.text and listing.html.find(id="new-secret") is None
    [row] = listing.html.select("ul.rows > li")
    assert secret[:len("ggk_") + 16] in row.get_text() and "never used" in row.get_text()

    key = {"Authorization": f"Bearer {secret}"}
    assert app.get(f"/api/v1/workspaces/{gala}", headers=key).json["workspace"]["role"] == "admin"
    row = ada.get(page_of(gala, "/api-keys")).html.select_one("ul.rows > li")
    assert "last used" in row.get_text()

    revoked = ada.get(page_of(gala, "/api-keys")).forms[row.find("form")["id"]].submit(status=303).follow()
    assert "API key “Zapier” was revoked" in main_text(revoked)
    assert revoked.html.select("ul.rows > li") == []
    app.get(f"/api/v1/workspaces/{gala}", headers=key, status=401)


# --- staff --------------------------------------------------------------------------------


def test_staff_see_no_management_and_are_refused_it(app, run_in_request, gala):
    join(run_in_request, gala, "sam@example.com", "staff")
    join(run_in_request, gala, "grace@example.com", "admin")
    sam = signed_in(app, run_in_request, "sam@example.com")
    home = sam.get(page_of(gala))
    assert [a.get_text(strip=True) for a in home.html.select("nav.subnav a")] == ["Overview", "Settings"]
    hrefs = [a["href"] for a in home.html.find("main").find_all("a")]
    assert not any(h.endswith(("/members", "/invitations", "/api-keys")) for h in hrefs)
    settings = sam.get(page_of(gala, "/settings"))
    assert named_forms(settings) - {"sign-out-form"} == {"leave-form"}

    token = csrf(home)
    members = run_in_request(lambda r: {m.user.email: m.id for m in workspaces.members(r.db, gala)})
    refused = sam.get(page_of(gala, "/members"), status=403)
    assert "members.view" in main_text(refused) and "staff" in main_text(refused)
    for path, body in ((f"/members/{members['grace@example.com']}/role", {"role": "staff"}),
                       (f"/members/{members['grace@example.com']}/remove", {}),
                       ("/invitations", {"email": "x@example.com", "role": "admin"})):
        refused = sam.post(page_of(gala, path), {"csrf_token": token, **body}, status=403)
        assert h1(refused) == "You can't do that here"
        assert "It needs the members.manage permission; your role is staff ." in main_text(refused)
    refused = sam.post(page_of(gala, "/api-keys"), {"csrf_token": token, "name": "k", "role": "admin"},
                       status=403)
    assert "api_keys.manage" in main_text(refused)
    assert roles_in(run_in_request, gala)["grace@example.com"] == "admin"
    assert inbox(app, "x@example.com") == []

    left = sam.get(page_of(gala, "/settings")).forms["leave-form"].submit(status=303)
    assert "You left “Ada's Gala”." in main_text(left.follow())


def test_posts_without_the_csrf_token_are_refused(app, run_in_request, gala):
    ada = signed_in(app, run_in_request, "ada@example.com")
    refused = ada.post(page_of(gala, "/delete"), {"confirm_name": "Ada's Gala"}, status=400)
    assert "This form has expired" in main_text(refused)
    assert run_in_request(lambda r: workspaces.find_workspace(r.db, gala)) is not None


def test_every_workspace_page_is_private(app, run_in_request, gala):
    ada = signed_in(app, run_in_request, "ada@example.com")
    for suffix in ("", "/settings", "/members", "/invitations", "/api-keys"):
        page = ada.get(page_of(gala, suffix))
        assert page.headers["Cache-Control"] == "no-store", suffix
        for field in page.html.select("main input:not([type=hidden]), main select"):
            assert page.html.find("label", attrs={"for": field["id"]}) is not None, (suffix, field)


def test_a_foreign_workspace_page_is_the_missing_page_whoever_asks(app, run_in_request, gala):
    """Fresh sessions (new CSRF tokens) and another identity's workspaces
    must not tell a foreign workspace from a missing one."""
    headers = {"X-Request-ID": "same-request-id"}
    foreign = signed_in(app, run_in_request, "eve@example.com").get(page_of(gala, "/settings"),
                                                                   headers=headers, status=404)
    missing = signed_in(app, run_in_request, "grace@example.com").get(
        page_of("00000000-0000-4000-8000-000000000000", "/settings"), headers=headers, status=404)
    assert foreign.body == missing.body
    assert switcher(foreign) is None and "csrf_token" not in foreign.text
    assert foreign.html.find("header").find("a", string="Account") is not None
