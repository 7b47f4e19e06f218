"""Who may do what inside their own workspace: the product's permission
table, written out here route by route (docs/api.md, "Workspaces"), and
checked by calling every route in the route table as

  O   the workspace's owner        A   an admin        S   door staff
  AK  an admin API key             SK  a staff API key

of the workspace the route's records belong to. Every request runs in a
transaction that is rolled back, so no call changes what the next one sees.

A caller the table names must get past the permission check (any answer but
401, 403 or a redirect to sign in); any other caller must get 403. The table
is the specification, not a copy of ``ROLE_PERMISSIONS``: a change to the
role table that gives admin billing, staff guest editing or a key workspace
deletion fails here. A route added without an entry fails too."""
import datetime as dt
import uuid
from importlib.metadata import entry_points

import pytest
import time_machine

from guestguard import rls
from guestguard.accounts import sessions
from guestguard.accounts.models import API, WEB
from guestguard.testing import TEST_PASSWORD, acting_as, create_user, new_client, signed_in
from guestguard.workspaces import services as workspaces

CALLERS = ("O", "A", "S", "AK", "SK")

# Shorthands for the rows below; each is literal, none read from the code.
EVERYONE = "O A S AK SK"  # every member and every key of the workspace
EDITORS = "O A AK"        # the people who run the event, and admin keys
MANAGERS = "O A"          # people, keys and invitations: admins and owners
OWNER = "O"               # money, ownership, deleting the workspace
PEOPLE = "O A S"          # one's own account: any signed-in person, never a key
PUBLIC = "O A S AK SK"    # no sign-in needed (the login page, an invitation link)
SIGNED = ""               # a provider's webhook: its signature is the only credential, unsigned is 403

SPEC = {
    # --- the workspace and its members -------------------------------------------
    ("api_workspaces", "GET"): EVERYONE,
    # --- billing: the plan is seen by every member, changed by owners only ---------
    ("api_billing", "GET"): EVERYONE,
    ("api_billing_checkout", "POST"): OWNER,
    ("api_billing_portal", "POST"): OWNER,
    ("api_billing_preview", "POST"): OWNER,
    ("api_billing_plan", "POST"): OWNER,
    ("api_billing_cancel", "POST"): OWNER,
    ("workspace_billing", "GET"): OWNER,
    ("workspace_billing_checkout", "POST"): OWNER,
    ("workspace_billing_success", "GET"): OWNER,
    ("workspace_billing_portal", "POST"): OWNER,
    ("workspace_billing_change", "POST"): OWNER,
    ("workspace_billing_cancel", "POST"): OWNER,
    ("api_workspaces", "POST"): PEOPLE,
    ("api_workspace", "GET"): EVERYONE,
    ("api_workspace", "PATCH"): EDITORS,
    ("api_workspace", "DELETE"): OWNER,
    ("api_workspace_deliveries", "GET"): EVERYONE,
    ("api_workspace_leave", "POST"): PEOPLE,
    ("api_workspace_transfer", "POST"): OWNER,
    ("api_workspace_retention", "PUT"): EDITORS,
    ("api_workspace_guard", "GET"): EVERYONE,
    ("api_workspace_guard", "PUT"): EDITORS,
    ("api_members", "GET"): EDITORS,
    ("api_member", "PATCH"): MANAGERS,
    ("api_member", "DELETE"): MANAGERS,
    ("api_invitations", "GET"): MANAGERS,
    ("api_invitations", "POST"): MANAGERS,
    ("api_invitation", "DELETE"): MANAGERS,
    ("api_invitation_accept", "POST"): PEOPLE,
    ("api_api_keys", "GET"): MANAGERS,
    ("api_api_keys", "POST"): MANAGERS,
    ("api_api_key", "DELETE"): MANAGERS,
    ("workspace_new", "GET"): PEOPLE,
    ("workspace_new", "POST"): PEOPLE,
    ("workspace_home", "GET"): EVERYONE,
    ("workspace_settings", "GET"): EVERYONE,
    ("workspace_settings", "POST"): EDITORS,
    ("workspace_guard", "POST"): EDITORS,
    ("workspace_leave", "POST"): PEOPLE,
    ("workspace_transfer", "POST"): OWNER,
    ("workspace_delete", "POST"): OWNER,
    ("workspace_members", "GET"): EDITORS,
    ("workspace_member_role", "POST"): MANAGERS,
    ("workspace_member_remove", "POST"): MANAGERS,
    ("workspace_invitations", "GET"): MANAGERS,
    ("workspace_invitations", "POST"): MANAGERS,
    ("workspace_invitation_revoke", "POST"): MANAGERS,
    ("workspace_api_keys", "GET"): MANAGERS,
    ("workspace_api_keys", "POST"): MANAGERS,
    ("workspace_api_key_revoke", "POST"): MANAGERS,
    ("invitation", "GET"): PUBLIC,
    ("invitation", "POST"): PEOPLE,
    # --- events and guests -------------------------------------------------------
    ("api_events", "GET"): EVERYONE,
    ("api_events", "POST"): EDITORS,  # events.edit in the workspace named in the body
    ("api_event", "GET"): EVERYONE,
    ("api_event", "PATCH"): EDITORS,
    ("api_event", "DELETE"): EDITORS,
    ("api_guests", "GET"): EVERYONE,
    ("api_guests", "POST"): EDITORS,
    ("api_guest", "GET"): EVERYONE,
    ("api_guest", "PATCH"): EDITORS,
    ("api_guest", "DELETE"): EDITORS,
    ("api_guest_restore", "POST"): EDITORS,
    ("api_guest_forget", "POST"): EDITORS,
    ("api_guest_tokens", "POST"): EDITORS,
    ("api_guest_tokens", "DELETE"): EDITORS,
    ("api_guest_send", "POST"): EDITORS,
    ("api_event_send", "POST"): EDITORS,
    ("api_event_duplicate", "POST"): EDITORS,
    ("api_event_alerts", "GET"): PEOPLE,
    ("api_event_alerts", "PUT"): PEOPLE,
    ("dashboard", "GET"): PEOPLE,
    ("event_new", "GET"): EDITORS,
    ("event_new", "POST"): EDITORS,
    ("event_page", "GET"): EVERYONE,
    ("event_edit", "GET"): EDITORS,
    ("event_edit", "POST"): EDITORS,
    ("event_guests_new", "GET"): EDITORS,
    ("event_guests_new", "POST"): EDITORS,
    ("event_guest", "GET"): EVERYONE,
    ("event_guest", "POST"): EDITORS,
    ("event_headcount_svg", "GET"): EVERYONE,
    ("event_send", "GET"): EDITORS,
    ("event_duplicate", "GET"): EDITORS,
    ("event_alerts", "POST"): PEOPLE,           # guests.view, and a person: a key has no address
    ("event_duplicate", "POST"): EDITORS,
    ("event_send", "POST"): EDITORS,
    ("event_send_test", "POST"): "O A",        # guests.edit, and a person: a key has no address to send to
    ("event_invitation_preview", "GET"): EVERYONE,
    ("event_cover_upload", "POST"): EDITORS,
    ("event_questions", "POST"): EDITORS,
    ("event_guest_send", "POST"): EDITORS,
    ("event_guest_restore", "POST"): EDITORS,
    # --- the door (guests.check_in: door staff included) ---------------------------------
    ("api_checkins", "POST"): EVERYONE,
    ("api_checkin", "DELETE"): EVERYONE,
    ("api_door_guests", "GET"): EVERYONE,
    ("api_door_decode", "POST"): EVERYONE,
    ("event_door", "GET"): EVERYONE,
    ("event_door_checkin", "POST"): EVERYONE,
    ("event_door_undo", "POST"): EVERYONE,
    ("access_pass", "GET"): PUBLIC,           # the invitation token is the credential
    # --- reminders -----------------------------------------------------------------------
    ("api_event_reminders", "GET"): EVERYONE,
    ("event_reminders", "POST"): EDITORS,
    ("event_reminder_test", "POST"): EDITORS,
    ("event_change_notice", "POST"): EDITORS,
    ("api_event_change_notice", "GET"): EDITORS,
    ("api_event_change_notice", "POST"): EDITORS,
    # --- guest lists from spreadsheets -------------------------------------------------
    ("api_guest_import_preview", "POST"): EDITORS,
    ("api_guest_import", "POST"): EDITORS,
    ("api_guest_import_template", "GET"): EDITORS,
    ("api_guest_export", "GET"): EDITORS,       # guests.export
    ("api_import", "DELETE"): EDITORS,
    ("api_import_errors", "GET"): EDITORS,
    ("event_import", "GET"): EDITORS,
    ("event_import", "POST"): EDITORS,
    ("event_import_commit", "POST"): EDITORS,
    ("event_import_done", "GET"): EDITORS,
    ("event_import_undo", "POST"): EDITORS,
    # --- the guard and the activity feed -------------------------------------------
    ("api_flags", "GET"): EVERYONE,
    ("api_flag_dismiss", "POST"): EDITORS,
    ("api_flag_reissue", "POST"): EDITORS,
    ("api_guest_access", "GET"): EVERYONE,
    ("event_flag_dismiss", "POST"): EDITORS,
    ("event_flag_reissue", "POST"): EDITORS,
    ("api_activity", "GET"): EVERYONE,
    ("api_stream_ticket", "POST"): EVERYONE,  # guests.view on the event named in the body
    ("activity_stream", "GET"): PUBLIC,       # the ticket is the credential
    # --- messages ------------------------------------------------------------------
    ("unsubscribe", "GET"): PUBLIC,           # the link is the credential
    ("unsubscribe", "POST"): PUBLIC,          # one click, from a mail client too
    ("twilio_status", "POST"): SIGNED,        # plugin guestguard-twilio
    ("twilio_inbound", "POST"): SIGNED,
    ("ses_webhook", "POST"): PUBLIC,          # its SNS signature is the credential (guestguard-ses)
    # --- one's own account -------------------------------------------------------
    ("api_me", "GET"): PEOPLE,
    ("api_me", "PATCH"): PEOPLE,
    ("api_me", "DELETE"): PEOPLE,
    ("api_me_password", "POST"): PEOPLE,
    ("api_me_sessions", "GET"): PEOPLE,
    ("api_me_session", "DELETE"): PEOPLE,
    ("api_me_accept_policies", "POST"): PEOPLE,
    ("api_me_data_export", "POST"): PEOPLE,
    ("account_data_export", "POST"): PEOPLE,
    ("data_export_download", "GET"): PEOPLE,  # and only the export's owner: anyone else gets 404
    ("data_export_download", "POST"): PEOPLE,  # an account being deleted: its owner's password
    ("account_delete", "POST"): PEOPLE,
    ("api_logout", "POST"): PEOPLE,
    ("api_logout_all", "POST"): PEOPLE,
    ("account", "GET"): PEOPLE,
    ("account_profile", "POST"): PEOPLE,
    ("account_password", "POST"): PEOPLE,
    ("account_session_revoke", "POST"): PEOPLE,
    ("account_sign_out_everywhere", "POST"): PEOPLE,
    ("accept_policies", "GET"): PEOPLE,
    ("accept_policies", "POST"): PEOPLE,
    # --- no sign-in needed ---------------------------------------------------------
    ("api_signup", "POST"): PUBLIC,
    ("api_verify_email", "POST"): PUBLIC,
    ("api_resend_verification", "POST"): PUBLIC,
    ("api_login", "POST"): PUBLIC,
    ("api_refresh", "POST"): PUBLIC,
    ("api_forgot_password", "POST"): PUBLIC,
    ("api_reset_password", "POST"): PUBLIC,
    ("api_access", "GET"): PUBLIC,
    ("api_rsvp", "POST"): PUBLIC,
    ("signup", "GET"): PUBLIC,
    ("signup", "POST"): PUBLIC,
    ("login", "GET"): PUBLIC,
    ("login", "POST"): PUBLIC,
    ("logout", "GET"): PUBLIC,
    ("logout", "POST"): PUBLIC,
    ("verify_email", "GET"): PUBLIC,
    ("resend_verification", "GET"): PUBLIC,
    ("resend_verification", "POST"): PUBLIC,
    ("forgot_password", "GET"): PUBLIC,
    ("forgot_password", "POST"): PUBLIC,
    ("reset_password", "GET"): PUBLIC,
    ("reset_password", "POST"): PUBLIC,
    ("access", "GET"): PUBLIC,
    ("access_ics", "GET"): PUBLIC,
    ("event_cover", "GET"): PUBLIC,  # its address is unguessable (events/branding.py)
    ("rsvp", "POST"): PUBLIC,
    ("account_deletion_cancel", "GET"): PUBLIC,  # the emailed token is the credential
    ("account_deletion_cancel", "POST"): PUBLIC,
    ("privacy", "GET"): PUBLIC,
    ("terms", "GET"): PUBLIC,
    ("home", "GET"): PUBLIC,
    ("health", "GET"): PUBLIC,
    ("health", "HEAD"): PUBLIC,
    ("readyz", "GET"): PUBLIC,
    ("readyz", "HEAD"): PUBLIC,
    ("api_openapi", "GET"): PUBLIC,  # the API contract
    # Prometheus metrics: no workspace role reaches them, only the scraper
    # the settings name (token, addresses); everyone else gets HIDDEN's 404.
    ("metrics", "GET"): "",
    ("metrics", "HEAD"): "",
    # Operators' (platform admins') calls: no workspace role reaches them.
    ("api_suppressions", "GET"): "",
    ("api_suppressions", "POST"): "",
    ("api_suppressions_lift", "POST"): "",
}
# Stripe's signature is the credential of its webhook (400 without it);
# the route exists where the guestguard-stripe distribution is installed.
if any(point.name == "stripe" for point in entry_points(group="guestguard")):
    SPEC["stripe_webhook", "POST"] = PUBLIC

# Routes that answer a caller they refuse 404, as if they did not exist
# (nothing of the product is behind them: the operator's metrics).
HIDDEN = {("metrics", "GET"), ("metrics", "HEAD")}
DRY_RUN = "guestguard.test.dry_run"


def roll_back_dry_runs(request, response):
    """pyramid_tm's commit veto: a request marked as a dry run never commits."""
    return bool(request.environ.get(DRY_RUN))


def all_views(registry):
    """(route name, pattern, method) for every view of every route."""
    found = set()
    for route in registry.introspector.get_category("routes"):
        intr = route["introspectable"]
        if intr["name"].startswith("__"):  # static files
            continue
        views = [related for related in route["related"] if related.category_name == "views"]
        for view in views:
            methods = view["request_methods"] or ("GET",)
            for method in (methods,) if isinstance(methods, str) else methods:
                found.add((intr["name"], intr["pattern"], method))
    return sorted(found)


@pytest.fixture
def matrix_app(make_app):
    return make_app(settings={"ratelimit.enabled": "false", "tm.commit_veto": roll_back_dry_runs})


@pytest.fixture
def team(matrix_app, run_in_request):
    """One workspace with an owner, an admin, door staff and two keys, and
    one of every record a route names; the credentials each caller sends."""
    from guestguard.events.models import Event, Guest
    from guestguard.guard.models import Flag
    from guestguard.imports.models import GuestImport
    from guestguard.workspaces.models import Membership

    def build(request):
        ada = create_user(request, "ada@example.com", "Ada")
        al = create_user(request, "al@example.com", "Al")
        sam = create_user(request, "sam@example.com", "Sam")
        ours = workspaces.create_workspace(request.ctx, ada, "Ours")
        request.db.add(Membership(workspace_id=ours.id, user_id=al.id, role="admin"))
        staff = Membership(workspace_id=ours.id, user_id=sam.id, role="staff")
        request.db.add(staff)
        invitation = workspaces.invite(request.ctx, ada, ours, "newcomer@example.com", "staff")
        key, admin_key = workspaces.create_api_key(acting_as(request.ctx, ada), ours, "admin key", "admin")
        _, staff_key = workspaces.create_api_key(acting_as(request.ctx, ada), ours, "staff key", "staff")
        event = Event(workspace_id=ours.id, name="Gala", timezone="Europe/London",
                      starts_at=dt.datetime(2030, 6, 1, 18, tzinfo=dt.UTC), status="published")
        request.db.add(event)
        request.db.flush()
        guest = Guest(workspace_id=ours.id, event_id=event.id, name="Grace", email="grace@example.com")
        request.db.add(guest)
        request.db.flush()
        flag = Flag(workspace_id=ours.id, event_id=event.id, guest_id=guest.id, rule="networks", score=50,
                    evidence="used from 4 different networks within 2 hours")
        request.db.add(flag)
        imported = GuestImport(workspace_id=ours.id, event_id=event.id, status="imported", file_name="list.csv",
                               file_size=20, file_sha256="0" * 64, format="csv", content=b"Name\nAda\n", added=1)
        request.db.add(imported)
        credentials = {"AK": {"bearer": admin_key, "cookie": None}, "SK": {"bearer": staff_key, "cookie": None}}
        session_id = None
        for name, user in (("O", ada), ("A", al), ("S", sam)):
            api_session, _ = sessions.start_session(request.db, request.registry.settings, user, kind=API,
                                                    user_agent="matrix", ip="127.0.0.1")
            _, cookie = sessions.start_session(request.db, request.registry.settings, user, kind=WEB,
                                               user_agent="matrix", ip="127.0.0.1")
            pair = sessions.issue_tokens(request.db, request.registry.settings, api_session)
            credentials[name] = {"bearer": pair.access_token, "cookie": cookie}
            session_id = session_id or api_session.id
        request.db.flush()
        ids = {"workspace_id": ours.id, "member_id": staff.id, "invitation_id": invitation.id,
               "key_id": key.id, "event_id": event.id, "guest_id": guest.id, "flag_id": flag.id,
               "import_id": imported.id,
               "session_id": session_id, "token": "x" * 43, "scan_id": "scan-0001", "export_id": uuid.uuid4(),
               "cover_id": uuid.uuid4(), "signature": "0" * 64}
        return ids, credentials

    ids, credentials = run_in_request(build, matrix_app.app.registry)
    client = new_client(matrix_app.app, **{DRY_RUN: "1"})
    return {"ids": ids, "credentials": credentials, "client": client}


def body_for(name, ids):
    """Bodies for the routes that decide inside the view, from the body, who
    may: a valid request, so the decision is reached."""
    if name == "api_events":
        return {"workspace_id": str(ids["workspace_id"]), "name": "Party", "timezone": "Europe/London",
                "starts_at": "2031-01-01T18:00:00"}
    if name == "api_stream_ticket":
        return {"event_id": str(ids["event_id"])}
    if name == "api_workspaces":
        return {"name": "Another"}
    return {}


def call(team, name, pattern, method, caller):
    app, ids = team["client"], team["ids"]
    path = pattern
    for placeholder, value in ids.items():
        path = path.replace("{" + placeholder + "}", str(value))
    credentials = team["credentials"][caller]
    headers = {}
    app.reset()
    api = path.startswith("/api/")
    if api or caller in ("AK", "SK"):
        headers["Authorization"] = f"Bearer {credentials['bearer']}"
    else:
        app.set_cookie("gg_session", credentials["cookie"])
    kwargs = {"headers": headers, "expect_errors": True}
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        if api:
            return app.request(path, method=method, body=app.JSONEncoder().encode(body_for(name, ids)).encode(),
                               content_type="application/json", **kwargs)
        # An HTML form without its CSRF token: past the permission check it
        # is refused with 400 (the CSRF check runs after it), so nothing changes.
        return app.request(path, method=method, body=b"name=x", content_type="application/x-www-form-urlencoded",
                           **kwargs)
    return app.request(path, method=method, **kwargs)


def refused(response) -> bool:
    """Whether the answer is the security layer's refusal (not a refusal of
    the request's content, such as a stream without its ticket)."""
    if response.content_type == "application/json" and response.status_int == 401:
        return response.json["error"]["code"] == "unauthorized"
    if response.status_int in (401, 403):
        return True
    location = response.headers.get("Location", "")
    return response.status_int in (302, 303) and ("/login" in location or "/accept-policies" in location)


def test_the_specification_covers_every_route_and_nothing_else(matrix_app):
    routes = {(name, method) for name, _, method in all_views(matrix_app.app.registry)}
    assert sorted(routes - SPEC.keys()) == [], "routes with no row in SPEC: add one"
    assert sorted(SPEC.keys() - routes) == [], "rows in SPEC for routes that do not exist"


def test_every_route_admits_exactly_the_roles_the_specification_names(matrix_app, team):
    problems = []
    for name, pattern, method in all_views(matrix_app.app.registry):
        allowed = set(SPEC.get((name, method), "").split())
        for caller in CALLERS:
            response = call(team, name, pattern, method, caller)
            if response.status_int >= 500:
                problems.append(f"{method} {pattern} as {caller}: {response.status_int}")
            elif caller in allowed and refused(response):
                problems.append(f"{method} {pattern} as {caller}: refused ({response.status_int}), "
                                "the specification allows it")
            elif caller not in allowed and response.status_int != (404 if (name, method) in HIDDEN else 403):
                problems.append(f"{method} {pattern} as {caller}: {response.status_int}, "
                                "expected 403 (the specification does not allow it)")
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("caller, role", [("A", "admin"), ("S", "staff"), ("AK", "admin"), ("SK", "staff")])
def test_a_refusal_names_the_permission_and_the_callers_role(matrix_app, team, caller, role):
    response = call(team, "api_workspace", "/api/v1/workspaces/{workspace_id}", "DELETE", caller)
    assert response.status_int == 403
    assert response.json == {"error": {
        "code": "forbidden", "message": f"Your role ({role}) does not have the workspace.delete permission.",
        "required": "workspace.delete", "role": role}}


def test_a_key_refused_an_account_route_is_told_it_has_no_role(matrix_app, team):
    response = call(team, "api_me", "/api/v1/me", "GET", "AK")
    assert response.status_int == 403
    assert response.json["error"]["required"] == "account.basics"
    assert response.json["error"]["role"] is None


def test_dry_runs_leave_the_workspace_as_it_was(matrix_app, team):
    """The matrix relies on it: the owner's DELETE did not delete anything."""
    response = call(team, "api_workspace", "/api/v1/workspaces/{workspace_id}", "DELETE", "O")
    assert response.status_int == 204
    owner = {"Authorization": f"Bearer {team['credentials']['O']['bearer']}"}
    matrix_app.get(f"/api/v1/workspaces/{team['ids']['workspace_id']}", headers=owner, status=200)


# The permission table of docs/api.md, one row per permission: it covers the
# permissions no route uses yet (billing), so a change to them shows too.
PERMISSIONS = {
    "workspace.view": EVERYONE,
    "events.view": EVERYONE,
    "guests.view": EVERYONE,
    "guests.check_in": EVERYONE,
    "workspace.edit": EDITORS,
    "members.view": EDITORS,
    "events.edit": EDITORS,
    "guests.edit": EDITORS,
    "guests.export": EDITORS,
    "members.manage": MANAGERS,
    "api_keys.manage": MANAGERS,
    "billing.manage": OWNER,
    "ownership.transfer": OWNER,
    "workspace.delete": OWNER,
}


def test_each_permission_is_granted_in_the_workspace_to_exactly_the_roles_the_table_names(matrix_app, team):
    from pyramid.scripting import prepare

    from guestguard.permissions import ALL_WORKSPACE_PERMISSIONS, granted
    from guestguard.web import blank_request
    from guestguard.workspaces.resources import WorkspaceResource

    assert set(PERMISSIONS) == ALL_WORKSPACE_PERMISSIONS, "a permission without a row in the table"
    registry = matrix_app.app.registry
    problems = []
    for caller in CALLERS:
        credentials = team["credentials"][caller]
        request = blank_request(registry, "/api/v1/me", headers={"Authorization": f"Bearer {credentials['bearer']}"})
        with prepare(request=request, registry=registry) as env:
            request = env["request"]
            with request.tm:
                rls.scope_request(request)  # as the web request's tween does
                workspace = workspaces.find_workspace(request.db, team["ids"]["workspace_id"])
                resource = WorkspaceResource(request, workspace)
                assert request.identity is not None, caller
                for permission, who in PERMISSIONS.items():
                    expected = caller in who.split()
                    if bool(request.has_permission(permission, resource)) != expected:
                        problems.append(f"{caller} {'lacks' if expected else 'has'} {permission}")
                    if (permission in granted(request.identity, workspace.id)) != expected:
                        problems.append(f"granted() {'omits' if expected else 'gives'} {permission} for {caller}")
                if granted(request.identity, uuid.uuid4()) != frozenset():
                    problems.append(f"granted() gives {caller} something in a workspace not theirs")
    assert problems == [], "\n".join(problems)


# --- how the security layer answers a refusal ------------------------------------------


def test_an_anonymous_api_call_is_told_to_send_a_bearer_token(matrix_app, team):
    response = matrix_app.get(f"/api/v1/events/{team['ids']['event_id']}", status=401)
    assert response.json == {"error": {"code": "unauthorized", "message": "Sign in: send a bearer access token."}}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="guestguard"'


def test_an_anonymous_page_request_is_sent_to_sign_in_and_back(matrix_app, team):
    path = f"/events/{team['ids']['event_id']}"
    for method in ("GET", "HEAD"):
        response = matrix_app.request(f"{path}?tab=guests", method=method, status=302)
        assert response.location == f"http://guestguard.test/login?next={path.replace('/', '%2F')}%3Ftab%3Dguests"
    posted = matrix_app.post(f"{path}/send-invitations", status=302)
    assert posted.location == "http://guestguard.test/login", "a form's target cannot be come back to"


def test_a_member_refused_a_page_sees_the_403_page_naming_the_permission(team):
    response = call(team, "workspace_delete", "/workspaces/{workspace_id}/delete", "POST", "S")
    assert response.status_int == 403
    text = " ".join(response.html.find("main").get_text(" ", strip=True).split())
    assert "It needs the workspace.delete permission" in text and "your role is staff" in text


def test_a_stranger_gets_the_missing_ids_404_and_a_member_the_403(matrix_app, team, run_in_request):
    def stranger(request):
        from guestguard.accounts.models import API

        user = create_user(request, "eve@example.com", "Eve")
        session, _ = sessions.start_session(request.db, request.registry.settings, user, kind=API,
                                            user_agent="t", ip="127.0.0.1")
        return sessions.issue_tokens(request.db, request.registry.settings, session).access_token

    eve = {"Authorization": f"Bearer {run_in_request(stranger, matrix_app.app.registry)}"}
    path = f"/api/v1/workspaces/{team['ids']['workspace_id']}"
    missing = matrix_app.delete("/api/v1/workspaces/00000000-0000-4000-8000-000000000000", headers=eve, status=404)
    assert matrix_app.delete(path, headers=eve, status=404).body == missing.body
    staff = {"Authorization": f"Bearer {team['credentials']['S']['bearer']}"}
    assert matrix_app.delete(path, headers=staff, status=403).json["error"]["role"] == "staff"


@pytest.mark.parametrize("value", ["Bearer", "Bearer a=b, c=d", "Basic {jwt}", "Digest {jwt}", "{jwt}"])
def test_an_access_token_counts_only_as_a_plain_bearer_value(matrix_app, team, value):
    token = team["credentials"]["O"]["bearer"]
    matrix_app.get("/api/v1/me", headers={"Authorization": value.format(jwt=token)}, status=401)
    matrix_app.get("/api/v1/me", headers={"Authorization": f"bearer {token}"}, status=200)


def test_until_updated_policies_are_accepted_pages_send_there_and_the_api_says_so(make_app, run_in_request):
    app = make_app({"policies.updated_at": "2030-01-01"})
    with time_machine.travel("2029-12-30", tick=False):
        run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
        client = signed_in(app, run_in_request, "ada@example.com")
        tokens = app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD}).json
    with time_machine.travel("2030-01-02", tick=False):
        tokens = app.post_json("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}).json
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        page = client.get("/account", status=302)
        assert page.location == "http://guestguard.test/accept-policies?next=%2Faccount"
        assert client.post("/account/profile", {"display_name": "A"}, status=302).location.endswith(
            "/accept-policies")
        client.get("/accept-policies", status=200)
        refused = app.get("/api/v1/me/sessions", headers=headers, status=403)
        assert refused.json == {"error": {
            "code": "policy_acceptance_required",
            "message": "Accept the updated privacy policy and terms: POST /api/v1/me/accept-policies."}}
        app.get("/api/v1/me", headers=headers, status=200)


def test_who_a_request_is_from_as_plugins_see_it(matrix_app, team):
    """``request.identity`` says how the caller came in; ``authenticated_userid``
    is a person's id, never a key's."""
    from pyramid.scripting import prepare

    from guestguard.web import blank_request

    credentials = team["credentials"]
    cases = {
        "jwt": {"headers": {"Authorization": f"Bearer {credentials['O']['bearer']}"}},
        "cookie": {"headers": {"Cookie": f"gg_session={credentials['O']['cookie']}"}},
        "api_key": {"headers": {"Authorization": f"Bearer {credentials['AK']['bearer']}"}},
        None: {},
    }
    for method, blank in cases.items():
        request = blank_request(matrix_app.app.registry, "/api/v1/me", **blank)
        with prepare(request=request, registry=matrix_app.app.registry) as env:
            request = env["request"]
            with request.tm:
                identity = request.identity
                assert (identity.method if identity else None) == method
                if method in ("jwt", "cookie"):
                    assert request.authenticated_userid == str(identity.user.id)
                    assert identity.user.email == "ada@example.com"
                else:
                    assert request.authenticated_userid is None
