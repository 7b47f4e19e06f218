"""Abuse cases found in review: lockout, bucket evasion, races on owners,
keys outliving their creator, hostile bodies, spam through invitations."""

import uuid

import pytest
from sqlalchemy import select

from guestguard import rls
from guestguard.accounts.models import User
from guestguard.testing import acting_as, bearer_for, create_host, create_user, new_client, signup
from guestguard.workspaces.models import ApiKey, Membership
from guestguard.workspaces.services import create_api_key, create_workspace


def test_email_spellings_share_one_bucket(make_app, run_in_request):
    app = make_app({"ratelimit.forgot_password": "3/hour"})
    for email in ("victim@example.com", "Victim@EXAMPLE.com", "victim@ｅxample.com"):
        app.post_json("/api/v1/auth/forgot-password", {"email": email}, status=202)
    blocked = app.post_json("/api/v1/auth/forgot-password", {"email": "victim@eｘample.com"}, status=429)
    assert blocked.json["error"]["code"] == "rate_limited"


def test_ipv6_clients_count_by_their_64(make_app):
    app = make_app({"ratelimit.signup": "2/hour"})
    for n in range(2):
        signup(app, f"a{n}@example.com", extra_environ={"REMOTE_ADDR": f"2001:db8:1:2::{n + 1}"})
    signup(app, "a9@example.com", status=429, extra_environ={"REMOTE_ADDR": "2001:db8:1:2::ffff"})
    signup(app, "b1@example.com", extra_environ={"REMOTE_ADDR": "2001:db8:1:3::1"})


def test_one_address_cannot_try_many_accounts(make_app):
    app = make_app({"ratelimit.login_ip": "4/5 minutes"})
    for n in range(4):
        app.post_json("/api/v1/auth/login", {"email": f"u{n}@example.com", "password": "guess guess"},
                      status=401)
    app.post_json("/api/v1/auth/login", {"email": "u9@example.com", "password": "guess guess"}, status=429)


def test_invitations_are_rate_limited(make_app, run_in_request):
    app = make_app({"ratelimit.workspace_invite": "2/day"})
    workspace_id = run_in_request(create_host, app.app.registry)
    headers = bearer_for(app, "ada@example.com")
    for n in range(2):
        app.post_json(f"/api/v1/workspaces/{workspace_id}/invitations",
                      {"email": f"x{n}@example.com", "role": "staff"}, headers=headers, status=201)
    app.post_json(f"/api/v1/workspaces/{workspace_id}/invitations",
                  {"email": "x9@example.com", "role": "staff"}, headers=headers, status=429)


def test_keys_and_invitations_leave_with_their_creator(app, run_in_request):
    def setup(request):
        ada = create_user(request, "ada@example.com", "Ada")
        grace = create_user(request, "grace@example.com", "Grace")
        workspace = create_workspace(request.ctx, ada, "W")
        request.db.add(Membership(workspace_id=workspace.id, user_id=grace.id, role="admin"))
        request.db.flush()
        _, secret = create_api_key(acting_as(request.ctx, grace), workspace, "grace's", "admin")
        return str(workspace.id), secret

    workspace_id, secret = run_in_request(setup, app.app.registry)
    key_headers = {"Authorization": f"Bearer {secret}"}
    app.get(f"/api/v1/workspaces/{workspace_id}", headers=key_headers)
    grace = bearer_for(app, "grace@example.com")
    app.post_json(f"/api/v1/workspaces/{workspace_id}/invitations", {"email": "new@example.com", "role": "staff"},
                  headers=grace, status=201)
    ada = bearer_for(app, "ada@example.com")
    members = app.get(f"/api/v1/workspaces/{workspace_id}/members", headers=ada).json["members"]
    grace_id = next(m["id"] for m in members if m["email"] == "grace@example.com")
    app.patch_json(f"/api/v1/workspaces/{workspace_id}/members/{grace_id}", {"role": "staff"}, headers=ada)
    app.get(f"/api/v1/workspaces/{workspace_id}", headers=key_headers, status=401)
    assert app.get(f"/api/v1/workspaces/{workspace_id}/invitations", headers=ada).json["invitations"] == []
    assert run_in_request(lambda r: r.db.scalar(select(ApiKey)).revoked_at is not None, app.app.registry)


def test_a_demotion_rechecks_roles_after_taking_the_lock(app, run_in_request):
    """The route loaded the target before an ownership transfer committed;
    the service rereads it, so an admin cannot demote the new owner."""
    from guestguard.workspaces import services

    def setup(request):
        ada = create_user(request, "ada@example.com", "Ada")
        bob = create_user(request, "bob@example.com", "Bob")
        xena = create_user(request, "xena@example.com", "Xena")
        workspace = create_workspace(request.ctx, ada, "W")
        bob_m = Membership(workspace_id=workspace.id, user_id=bob.id, role="admin")
        request.db.add_all([bob_m, Membership(workspace_id=workspace.id, user_id=xena.id, role="admin")])
        request.db.flush()
        return workspace.id, bob_m.id, xena.id

    workspace_id, bob_membership_id, xena_id = run_in_request(setup, app.app.registry)

    def race(request):
        stale = request.db.get(Membership, bob_membership_id)  # loaded as admin
        # meanwhile the owner hands ownership to Bob
        import transaction

        from guestguard.db import session_for

        other_tm = transaction.TransactionManager(explicit=True)
        with other_tm:
            other = session_for(request.registry["db.session_factory"], other_tm)
            rls.set_scope(other, rls.SYSTEM)  # as the scripted request it stands for
            other.get(Membership, bob_membership_id).role = "owner"
        with pytest.raises(services.WorkspaceError) as refused:
            services.change_role(acting_as(request.ctx, request.db.get(User, xena_id)), "admin", stale, "staff")
        return refused.value.status

    assert run_in_request(race, app.app.registry) == 403


def test_deeply_nested_json_is_a_400(app):
    response = app.post("/api/v1/auth/login", "[" * 60000, content_type="application/json", status=400)
    assert response.json["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("body, field", [({"name": "Gala\u0000"}, "name"), ({"name\u0000": "Gala"}, "name\ufffd"),
                                         ([{"tags": ["a", "b\u0000"]}], "0.tags.1")])
def test_nul_characters_in_json_bodies_are_refused_plainly(app, run_in_request, body, field):
    """Found by the API fuzz on PostgreSQL, whose text columns cannot hold a NUL: a 500."""
    run_in_request(lambda request: create_user(request, "ada@example.com"), app.app.registry)
    refused = app.post_json("/api/v1/workspaces", body, headers=bearer_for(app, "ada@example.com"), status=400)
    problem = "must not contain a NUL character"
    assert refused.json == {"error": {"code": "bad_request", "message": f"{field} {problem}.",
                                      "fields": {field: problem}}}


@pytest.mark.parametrize("content_type", ["multipart/form-data", "application/x-www-form-urlencoded; charset=bogus"])
@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/login", "/signup"])
def test_unreadable_form_bodies_are_refused_not_a_500(app, content_type, path):
    response = app.post(path, b"--x\r\nnonsense", content_type=content_type, expect_errors=True)
    assert response.status_int in (400, 415)


def test_an_oversized_body_is_refused_before_it_is_read(make_app):
    app = make_app({"http.max_body_bytes": "4096"})
    response = app.post("/api/v1/auth/login", b"x" * 5000, content_type="application/json", status=413)
    assert response.json["error"]["code"] == "too_large"


def test_api_answers_are_never_cached(app):
    assert app.get("/api/v1/nothing", status=404).headers["Cache-Control"] == "no-store"


def test_token_segments_are_cut_from_logged_paths():
    from guestguard.errors import redacted

    token = "k7Qw0n3u8L2x9P1m4R5t6Y7u8I9o0P1a2S3d4F5g6H7"
    assert redacted(f"/reset-password/{token}") == "/reset-password/[redacted]"
    assert redacted("/events/42/guests") == "/events/42/guests"


def test_ip_and_email_limits_count_ipv6_clients_by_their_64(make_app):
    app = make_app({"ratelimit.forgot_password": "2/hour"})
    for n in range(2):
        app.post_json("/api/v1/auth/forgot-password", {"email": "ada@example.com"}, status=202,
                      extra_environ={"REMOTE_ADDR": f"2001:db8:5:6::{n + 1}"})
    app.post_json("/api/v1/auth/forgot-password", {"email": "ada@example.com"}, status=429,
                  extra_environ={"REMOTE_ADDR": "2001:db8:5:6:ffff::9"})
    app.post_json("/api/v1/auth/forgot-password", {"email": "ada@example.com"}, status=202,
                  extra_environ={"REMOTE_ADDR": "2001:db8:5:7::1"})


@pytest.mark.parametrize("path, verified", [
    ("/api/v1/auth/forgot-password", True),
    ("/api/v1/auth/resend-verification", False),
])
def test_many_addresses_cannot_mail_one_account_past_its_limit(make_app, run_in_request, path, verified):
    from guestguard.testing import outbox

    app = make_app({"ratelimit.account_mail": "2/hour"})
    run_in_request(lambda r: create_user(r, "victim@example.com", "Vic", verified=verified), app.app.registry)
    run_in_request(lambda r: create_user(r, "other@example.com", "Otto", verified=verified), app.app.registry)
    for n in range(6):  # six networks, each well inside its own limit
        app.post_json(path, {"email": "victim@example.com"}, status=202,
                      extra_environ={"REMOTE_ADDR": f"198.51.100.{n + 1}"})
    app.post_json(path, {"email": "other@example.com"}, status=202)
    sent = [message.recipient for _, message in outbox(app)]
    assert sorted(sent) == ["other@example.com", "victim@example.com", "victim@example.com"]


def test_two_owners_leaving_at_once_leave_one_owner_on_every_database(app, run_in_request):
    """Each of two owners sees the other and leaves: only one may go. SQLite
    ignores FOR UPDATE, so the owners' lock takes its write lock there."""
    import threading

    from guestguard.workspaces.services import OWNER

    def setup(request):
        ada = create_user(request, "ada@example.com", "Ada")
        bob = create_user(request, "bob@example.com", "Bob")
        workspace = create_workspace(request.ctx, ada, "W")
        request.db.add(Membership(workspace_id=workspace.id, user_id=bob.id, role=OWNER))
        request.db.flush()
        return str(workspace.id)

    workspace_id = run_in_request(setup, app.app.registry)
    owners = [bearer_for(app, f"{name}@example.com") for name in ("ada", "bob")]
    barrier = threading.Barrier(2)
    statuses = []

    def leave(headers):
        client = new_client(app.app)
        barrier.wait()
        statuses.append(client.post(f"/api/v1/workspaces/{workspace_id}/leave", headers=headers,
                                    expect_errors=True).status_int)

    threads = [threading.Thread(target=leave, args=(headers,)) for headers in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [204, 409]
    left = run_in_request(lambda r: r.db.scalars(select(Membership.role).where(
        Membership.workspace_id == uuid.UUID(workspace_id))).all(), app.app.registry)
    assert left == [OWNER]
