"""The security policy's decisions, compactly: one application and one
workspace, built once for the module, and one route of each kind of
permission asked by every kind of caller

  O   the workspace's owner        A   an admin        S   door staff
  AK  an admin API key             SK  a staff API key
  E   a person of another workspace (a platform admin: no way in either)
  N   nobody signed in

with the exact answer each refusal gets. test_permissions_matrix.py walks
every route the same way; this module is the quick check of the same rules
(the mutation run's, and a developer's while changing the policy). Every
request is a dry run: its transaction is rolled back, so no call changes
what the next one sees."""
import re
import uuid

import pytest
from pyramid.authorization import Authenticated, Everyone
from pyramid.request import Request
from pyramid.scripting import prepare

from guestguard import rls
from guestguard.accounts import sessions
from guestguard.accounts.models import API, WEB
from guestguard.permissions import API_KEY_PRINCIPAL, api_key_principal, member_principal
from guestguard.testing import AppFactory, acting_as, create_user, in_request, new_client, settings_for
from guestguard.web import blank_request
from guestguard.workspaces import services as workspaces

DRY_RUN = "guestguard.test.dry_run"
PEOPLE_OF_THE_WORKSPACE = ("O", "A", "S")
KEYS = ("AK", "SK")
CALLERS = (*PEOPLE_OF_THE_WORKSPACE, *KEYS, "E", "N")
ROLES = {"O": "owner", "A": "admin", "S": "staff", "AK": "admin", "SK": "staff"}

# Who gets past the permission check: the product's table (docs/api.md),
# one route for each kind of permission, written out, not read from the code.
EVERYONE = "O A S AK SK"
EDITORS = "O A AK"
MANAGERS = "O A"
OWNER = "O"
PEOPLE = "O A S E"
PEOPLE_AND_KEYS = "O A S E AK SK"
PUBLIC = "O A S AK SK E N"

# (method, path, who may, the permission a route of a workspace asks for)
ROUTES = [
    ("GET", "/api/v1/workspaces/{workspace_id}", EVERYONE, "workspace.view"),
    ("PATCH", "/api/v1/workspaces/{workspace_id}", EDITORS, "workspace.edit"),
    ("DELETE", "/api/v1/workspaces/{workspace_id}", OWNER, "workspace.delete"),
    ("GET", "/api/v1/workspaces/{workspace_id}/members", EDITORS, "members.view"),
    ("GET", "/api/v1/workspaces/{workspace_id}/api-keys", MANAGERS, "api_keys.manage"),
    ("GET", "/api/v1/events/{event_id}", EVERYONE, "events.view"),
    ("PATCH", "/api/v1/events/{event_id}", EDITORS, "events.edit"),
    ("GET", "/api/v1/events/{event_id}/guests/export", EDITORS, "guests.export"),
    ("GET", "/api/v1/workspaces", PEOPLE_AND_KEYS, "workspaces.list"),
    ("GET", "/api/v1/me", PEOPLE, "account.basics"),
    ("GET", "/api/v1/me/sessions", PEOPLE, "account"),
    ("GET", "/workspaces/{workspace_id}/members", EDITORS, "members.view"),
    ("POST", "/workspaces/{workspace_id}/delete", OWNER, "workspace.delete"),
    ("GET", "/events/{event_id}", EVERYONE, "events.view"),
    ("GET", "/dashboard", PEOPLE, "account"),
    ("GET", "/login", PUBLIC, None),
    ("GET", "/health", PUBLIC, None),
]


def roll_back_dry_runs(request, response):
    """pyramid_tm's commit veto: a request marked as a dry run never commits."""
    return bool(request.environ.get(DRY_RUN))


@pytest.fixture(scope="module")
def team(module_db_url):
    factory = AppFactory(settings_for(module_db_url))
    app = factory({"ratelimit.enabled": "false", "tm.commit_veto": roll_back_dry_runs})
    registry = app.app.registry

    def build(request):
        import datetime as dt

        from guestguard.events.models import Event
        from guestguard.workspaces.models import Membership

        ada = create_user(request, "ada@example.com", "Ada")
        al = create_user(request, "al@example.com", "Al")
        sam = create_user(request, "sam@example.com", "Sam")
        eve = create_user(request, "eve@example.com", "Eve")
        eve.role = "admin"  # a platform admin: no way into a tenant's workspace through that role
        pat = create_user(request, "pat@example.com", "Pat")
        pat.terms_accepted_at = None  # has not accepted the terms in force
        ours = workspaces.create_workspace(request.ctx, ada, "Ours")
        request.db.add(Membership(workspace_id=ours.id, user_id=al.id, role="admin"))
        request.db.add(Membership(workspace_id=ours.id, user_id=sam.id, role="staff"))
        ctx = acting_as(request.ctx, ada)
        admin_key, admin_secret = workspaces.create_api_key(ctx, ours, "admin key", "admin")
        staff_key, staff_secret = workspaces.create_api_key(ctx, ours, "staff key", "staff")
        revoked, revoked_secret = workspaces.create_api_key(ctx, ours, "revoked key", "admin")
        workspaces.revoke_api_key(ctx, revoked)
        event = Event(workspace_id=ours.id, name="Gala", timezone="Europe/London",
                      starts_at=dt.datetime(2030, 6, 1, 18, tzinfo=dt.UTC), status="published")
        request.db.add(event)
        request.db.flush()
        people = {"O": ada, "A": al, "S": sam, "E": eve, "P": pat}
        credentials = {"AK": {"bearer": admin_secret}, "SK": {"bearer": staff_secret},
                       "revoked": {"bearer": revoked_secret}, "N": {}}
        settings = request.registry.settings
        for name, user in people.items():
            api_session, _ = sessions.start_session(request.db, settings, user, kind=API, user_agent="t",
                                                    ip="127.0.0.1")
            _, cookie = sessions.start_session(request.db, settings, user, kind=WEB, user_agent="t", ip="127.0.0.1")
            credentials[name] = {"bearer": sessions.issue_tokens(request.db, settings, api_session).access_token,
                                 "cookie": cookie}
        request.db.flush()
        ids = {"workspace_id": ours.id, "event_id": event.id, "admin_key": admin_key.id,
               "staff_key": staff_key.id, "personal": {name: workspaces.memberships_of(request.db, user.id)[0]
                                                       .workspace_id for name, user in people.items()},
               "users": {name: user.id for name, user in people.items()}}
        return ids, credentials

    ids, credentials = in_request(registry, build)
    yield {"app": app, "ids": ids, "credentials": credentials, "client": new_client(app.app, **{DRY_RUN: "1"})}
    factory.close()


def fill(path: str, ids) -> str:
    return path.format(**{name: value for name, value in ids.items() if not isinstance(value, dict)})


def call(team, method: str, path: str, caller: str, **headers):
    """``caller``'s request, as a browser (the login cookie) for a page and
    as an integration (the bearer token or key) for the API or a key."""
    client = team["client"]
    client.reset()
    credentials = team["credentials"][caller]
    path = fill(path, team["ids"])
    if credentials and (path.startswith("/api/") or caller in KEYS):
        headers.setdefault("Authorization", f"Bearer {credentials['bearer']}")
    elif credentials:
        client.set_cookie("gg_session", credentials["cookie"])
    if method in ("GET", "HEAD"):
        return client.request(path, method=method, headers=headers, expect_errors=True)
    if path.startswith("/api/"):
        return client.request(path, method=method, body=b"{}", content_type="application/json",
                              headers=headers, expect_errors=True)
    # A form without its CSRF token: past the permission check it is a 400.
    return client.request(path, method=method, body=b"name=x", content_type="application/x-www-form-urlencoded",
                          headers=headers, expect_errors=True)


def expected_answer(team, method: str, path: str, allowed: str, permission: str | None, caller: str):
    """What the caller must be told: ``None`` for "past the check", else
    (status, what identifies the answer)."""
    if caller in allowed.split():
        return None
    api = path.startswith("/api/")
    in_workspace = "{" in path
    if caller == "N":
        if api:
            return 401, {"error": {"code": "unauthorized", "message": "Sign in: send a bearer access token."}}
        back = f"?next={fill(path, team['ids']).replace('/', '%2F')}" if method == "GET" else ""
        return 302, f"http://guestguard.test/login{back}"
    if caller == "E" and in_workspace:
        return 404, "as a missing id"
    role = ROLES[caller] if in_workspace else None
    if api:
        return 403, {"error": {"code": "forbidden",
                               "message": f"Your role ({role}) does not have the {permission} permission.",
                               "required": permission, "role": role}}
    return 403, f"It needs the {permission} permission"


def shown(response):
    """What the answer says: the JSON, or the page's main text (the footer
    names each request)."""
    if response.content_type == "application/json":
        return response.json
    return " ".join(response.html.find("main").get_text(" ").split())


def answer_of(response, team, method: str, path: str, caller: str):
    """The answer in the terms of ``expected_answer``."""
    status = response.status_int
    if status in (301, 302, 303):
        return status, response.location
    if status == 404 and "{" in path:
        missing = call(team, method, fill(path, {"workspace_id": uuid.UUID(int=1), "event_id": uuid.UUID(int=2)}),
                       caller)
        same = missing.status_int == 404 and shown(missing) == shown(response)
        return 404, "as a missing id" if same else shown(response)
    if status in (401, 403) and response.content_type == "application/json":
        return status, response.json
    if status == 403:
        needs = re.search(r"It needs the \S+ permission", shown(response))
        return 403, needs.group() if needs else response.text
    return status, response.text[:200]


@pytest.mark.parametrize("method, path, allowed, permission", ROUTES, ids=str)
def test_each_caller_gets_exactly_the_answer_the_table_gives(team, method, path, allowed, permission):
    problems = []
    for caller in CALLERS:
        response = call(team, method, path, caller)
        expected = expected_answer(team, method, path, allowed, permission, caller)
        if response.status_int >= 500:
            problems.append(f"{caller}: {response.status_int}")
        elif expected is None:
            if response.status_int in (401, 403, 404) or (response.status_int in (302, 303) and (
                    "/login" in response.location or "/accept-policies" in response.location)):
                problems.append(f"{caller}: refused ({response.status_int}) but the table allows it")
        elif answer_of(response, team, method, path, caller) != expected:
            problems.append(f"{caller}: {answer_of(response, team, method, path, caller)!r}, expected {expected!r}")
    assert problems == [], "\n".join(problems)


def test_an_anonymous_api_call_is_told_how_to_sign_in(team):
    response = call(team, "GET", "/api/v1/events/{event_id}", "N")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="guestguard"'


def test_an_anonymous_page_is_sent_to_sign_in_and_back_with_its_query(team):
    for method in ("GET", "HEAD"):
        response = call(team, method, "/events/{event_id}?tab=guests", "N")
        event = team["ids"]["event_id"]
        assert response.location == f"http://guestguard.test/login?next=%2Fevents%2F{event}%3Ftab%3Dguests"


def test_a_refused_page_names_the_callers_role(team):
    for caller in ("A", "S"):
        response = call(team, "POST", "/workspaces/{workspace_id}/delete", caller)
        assert response.status_int == 403
        text = " ".join(response.html.find("main").get_text(" ", strip=True).split())
        assert f"your role is {ROLES[caller]}" in text


def test_a_member_can_do_in_their_own_workspace_what_they_cannot_in_ours(team):
    """Roles are per workspace: staff here, owner of their own."""
    personal = team["ids"]["personal"]["S"]
    response = call(team, "GET", f"/api/v1/workspaces/{personal}/members", "S")
    assert response.status_int == 200
    assert call(team, "GET", "/api/v1/workspaces/{workspace_id}/members", "S").status_int == 403


# --- credentials: which ones count, and as whom ---------------------------------


@pytest.mark.parametrize("value", ["Bearer", "Bearer a=b, c=d", "Basic {token}", "Digest {token}", "{token}",
                                   "Bearer {token}x", "Bearer x{token}"])
@pytest.mark.parametrize("caller", ["O", "AK"])
def test_a_credential_counts_only_as_a_plain_bearer_value(team, value, caller):
    token = team["credentials"][caller]["bearer"]
    response = call(team, "GET", "/api/v1/workspaces", "N", Authorization=value.format(token=token))
    assert response.status_int == 401
    assert call(team, "GET", "/api/v1/workspaces", "N", Authorization=f"bearer {token}").status_int == 200


def test_a_wrong_secret_for_a_real_key_and_a_revoked_keys_right_secret_are_refused(team):
    secret = team["credentials"]["AK"]["bearer"]
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for presented in (wrong, team["credentials"]["revoked"]["bearer"]):
        response = call(team, "GET", "/api/v1/workspaces", "N", Authorization=f"Bearer {presented}")
        assert response.status_int == 401


def test_a_request_with_an_authorization_header_is_judged_by_it_alone(team):
    """A login cookie does not rescue a bad bearer value, nor the other way round."""
    client = team["client"]
    client.reset()
    client.set_cookie("gg_session", team["credentials"]["O"]["cookie"])
    path = fill("/workspaces/{workspace_id}/members", team["ids"])
    assert client.get(path, headers={"Authorization": "Bearer nonsense"}, expect_errors=True).status_int == 302
    assert client.get(path, expect_errors=True).status_int == 200
    client.reset()
    client.set_cookie("gg_session", team["credentials"]["S"]["bearer"])
    assert client.get(path, expect_errors=True).status_int == 302, "an access token is not a login cookie"


def test_a_near_miss_of_a_login_cookie_is_nobody(team):
    cookie = team["credentials"]["O"]["cookie"]
    for presented in (cookie[:-1] + ("A" if cookie[-1] != "A" else "B"), cookie[:-1], cookie + "A", "x"):
        client = team["client"]
        client.reset()
        client.set_cookie("gg_session", presented)
        assert client.get("/dashboard", expect_errors=True).status_int == 302


def identify(team, **blank):
    """(identity, authenticated_userid, effective principals) of a request."""
    request = blank_request(team["app"].app.registry, "/api/v1/me", **blank)
    with prepare(request=request, registry=team["app"].app.registry) as env:
        request = env["request"]
        with request.tm:
            rls.scope_request(request)  # as the web request's tween does
            identity = request.identity
            policy = request.registry.queryUtility(__import__("pyramid.interfaces").interfaces.ISecurityPolicy)
            return identity, request.authenticated_userid, policy.effective_principals(request)


def test_who_a_request_is_from_and_what_it_holds(team):
    ids, credentials = team["ids"], team["credentials"]
    ours, ada = ids["workspace_id"], ids["users"]["O"]
    personal = ids["personal"]["O"]

    identity, userid, principals = identify(team, headers={"Authorization": f"Bearer {credentials['O']['bearer']}"})
    assert (identity.method, userid) == ("jwt", str(ada))
    assert sorted(principals) == sorted([Everyone, Authenticated, f"user:{ada}", "role:user",
                                         member_principal(ours, "owner"), member_principal(personal, "owner")])
    assert not identity.needs_policy_acceptance

    identity, userid, principals = identify(team, headers={"Cookie": f"gg_session={credentials['O']['cookie']}"})
    assert (identity.method, userid, identity.session.kind) == ("cookie", str(ada), WEB)

    identity, userid, principals = identify(team, headers={"Authorization": f"Bearer {credentials['SK']['bearer']}"})
    assert (identity.method, userid, identity.user) == ("api_key", None, None)
    assert identity.api_key.id == ids["staff_key"]
    assert principals == [Everyone, API_KEY_PRINCIPAL, f"api_key:{ids['staff_key']}",
                          api_key_principal(ours, "staff")]

    eve = ids["users"]["E"]
    identity, userid, principals = identify(team, headers={"Authorization": f"Bearer {credentials['E']['bearer']}"})
    assert sorted(principals) == sorted([Everyone, Authenticated, f"user:{eve}", "role:admin",
                                         member_principal(ids["personal"]["E"], "owner")])

    assert identify(team) == (None, None, [Everyone])
    assert identify(team, headers={"Cookie": "gg_session="}) == (None, None, [Everyone])


def test_the_identity_is_worked_out_once_per_request(team):
    request = blank_request(team["app"].app.registry, "/api/v1/me",
                            headers={"Authorization": f"Bearer {team['credentials']['A']['bearer']}"})
    with prepare(request=request, registry=team["app"].app.registry) as env:
        request = env["request"]
        with request.tm:
            assert request.identity is request.identity


# --- updated policies not yet accepted ----------------------------------------------------


def test_until_updated_terms_are_accepted_only_the_account_basics_are_open(team):
    identity, _, _ = identify(team, headers={"Authorization": f"Bearer {team['credentials']['P']['bearer']}"})
    assert identity.needs_policy_acceptance
    assert call(team, "GET", "/api/v1/me", "P").status_int == 200
    refused = call(team, "GET", "/api/v1/me/sessions", "P")
    assert (refused.status_int, refused.json) == (403, {"error": {
        "code": "policy_acceptance_required",
        "message": "Accept the updated privacy policy and terms: POST /api/v1/me/accept-policies."}})
    page = call(team, "GET", "/account", "P")
    assert (page.status_int, page.location) == (302, "http://guestguard.test/accept-policies?next=%2Faccount")
    form = call(team, "POST", "/account/profile", "P")
    assert (form.status_int, form.location) == (302, "http://guestguard.test/accept-policies")
    personal = team["ids"]["personal"]["P"]
    assert call(team, "GET", f"/api/v1/workspaces/{personal}", "P").status_int == 403
    assert call(team, "GET", "/accept-policies", "P").status_int == 200


# --- the login cookie the policy sets and clears ---------------------------------------------


def set_cookie(app_env: str, action: str) -> dict[str, str]:
    """The gg_session Set-Cookie of remember (or forget) under ``app.env``:
    its attributes, names lower-cased, the value under ``value``."""
    from pyramid.registry import Registry

    from guestguard.security import SecurityPolicy

    registry = Registry()
    registry.settings = {"app.env": app_env}
    request = Request.blank("/login")
    request.registry = registry
    policy = SecurityPolicy()
    if action == "remember":
        assert policy.remember(request, "someone", token="t" * 43, max_age=3600) == []
    else:
        assert policy.forget(request) == []
    [header] = request.response.headers.getall("Set-Cookie")
    name_value, *attributes = (part.strip() for part in header.split(";"))
    name, _, value = name_value.partition("=")
    assert name == "gg_session"
    parsed = {"value": value}
    for attribute in attributes:
        key, _, setting = attribute.partition("=")
        parsed[key.lower()] = setting
    return parsed


@pytest.mark.parametrize("app_env", ["development", "test", "production"])
def test_the_login_cookie_is_http_only_lax_site_wide_and_secure_in_production_only(app_env):
    cookie = set_cookie(app_env, "remember")
    assert cookie["value"] == "t" * 43
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == "3600"
    assert ("secure" in cookie) is (app_env == "production")
    assert "domain" not in cookie


def test_signing_out_clears_the_login_cookie_site_wide():
    cookie = set_cookie("production", "forget")
    assert cookie["value"] in ("", '""')
    assert (cookie["path"], cookie["max-age"]) == ("/", "0")
