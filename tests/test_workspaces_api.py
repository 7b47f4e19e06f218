"""Workspaces, members, invitations and API keys through the JSON API."""
import re

import pytest
import time_machine
from sqlalchemy import select

from guestguard.audit.models import AuditEvent
from guestguard.testing import create_user, outbox, session_bearer
from guestguard.workspaces.models import Workspace


@pytest.fixture
def people(app, run_in_request):
    """Ada owns a workspace; Grace and Eve are users with their own."""
    registry = app.app.registry

    def setup(request):
        users = {name: create_user(request, f"{name}@example.com", name.title())
                 for name in ("ada", "grace", "eve")}
        from guestguard.workspaces.services import create_workspace

        workspace = create_workspace(request.ctx, users["ada"], "Ada's Gala")
        return {name: user.id for name, user in users.items()}, workspace.id

    ids, workspace_id = run_in_request(setup, registry)
    headers = {name: session_bearer(app.app.registry, f"{name}@example.com") for name in ids}
    return {"ids": ids, "workspace": str(workspace_id), "headers": headers}


def url(people, suffix=""):
    return f"/api/v1/workspaces/{people['workspace']}{suffix}"


def invite_and_accept(app, people, who, role):
    app.post_json(url(people, "/invitations"), {"email": f"{who}@example.com", "role": role},
                  headers=people["headers"]["ada"], status=201)
    _, message = outbox(app)[0]
    token = re.search(r"/invitations/(\S+)", message.text).group(1)
    return app.post_json("/api/v1/invitations/accept", {"token": token},
                         headers=people["headers"][who])


def member_id(app, people, who):
    members = app.get(url(people, "/members"), headers=people["headers"]["ada"]).json["members"]
    return next(m["id"] for m in members if m["email"] == f"{who}@example.com")


def test_list_and_create_workspaces(app, people):
    listed = app.get("/api/v1/workspaces", headers=people["headers"]["ada"]).json["workspaces"]
    assert {(w["name"], w["role"]) for w in listed} == {("Ada's events", "owner"), ("Ada's Gala", "owner")}
    created = app.post_json("/api/v1/workspaces", {"name": "Summer Party"},
                            headers=people["headers"]["grace"], status=201).json["workspace"]
    assert created["role"] == "owner" and created["slug"] == "summer-party"
    app.post_json("/api/v1/workspaces", {"name": ""}, headers=people["headers"]["grace"], status=422)


def test_invitation_email_accept_and_role(app, people, run_in_request):
    app.post_json(url(people, "/invitations"), {"email": "Grace@Example.com", "role": "admin"},
                  headers=people["headers"]["ada"], status=201)
    _, message = outbox(app)[0]
    assert message.recipient == "grace@example.com"
    assert message.subject == "Ada invited you to Ada's Gala on GuestGuard"
    assert "as an admin" in message.text
    token = re.search(r"http://guestguard.test/invitations/(\S+)", message.text).group(1)
    pending = app.get(url(people, "/invitations"), headers=people["headers"]["ada"]).json["invitations"]
    assert [(i["email"], i["role"]) for i in pending] == [("grace@example.com", "admin")]
    # another signed-in address cannot use it
    refused = app.post_json("/api/v1/invitations/accept", {"token": token},
                            headers=people["headers"]["eve"], status=403)
    assert refused.json["error"]["code"] == "invitation_email_mismatch"
    joined = app.post_json("/api/v1/invitations/accept", {"token": token},
                           headers=people["headers"]["grace"]).json["workspace"]
    assert (joined["id"], joined["role"]) == (people["workspace"], "admin")
    again = app.post_json("/api/v1/invitations/accept", {"token": token},
                          headers=people["headers"]["grace"], status=404)
    assert again.json["error"]["code"] == "invalid_invitation"
    assert app.get(url(people, "/invitations"), headers=people["headers"]["ada"]).json["invitations"] == []
    actions = run_in_request(lambda r: [e.action for e in r.db.scalars(select(AuditEvent))], app.app.registry)
    assert {"invitation.created", "invitation.accepted"} <= set(actions)


def test_expired_and_revoked_invitations_are_refused(app, people):
    app.post_json(url(people, "/invitations"), {"email": "grace@example.com", "role": "staff"},
                  headers=people["headers"]["ada"], status=201)
    token = re.search(r"/invitations/(\S+)", outbox(app)[0][1].text).group(1)
    with time_machine.travel("2099-01-01"):
        app.post_json("/api/v1/invitations/accept", {"token": token},
                      headers=session_bearer(app.app.registry, "grace@example.com"), status=404)
    invitation_id = app.get(url(people, "/invitations"),
                            headers=people["headers"]["ada"]).json["invitations"][0]["id"]
    app.delete(url(people, f"/invitations/{invitation_id}"), headers=people["headers"]["ada"], status=204)
    app.post_json("/api/v1/invitations/accept", {"token": token},
                  headers=people["headers"]["grace"], status=404)
    app.post_json("/api/v1/invitations/accept", {"token": "garbage"},
                  headers=people["headers"]["grace"], status=404)


def test_inviting_a_member_again_is_a_conflict(app, people):
    response = app.post_json(url(people, "/invitations"), {"email": "ada@example.com", "role": "staff"},
                             headers=people["headers"]["ada"], status=409)
    assert response.json["error"]["code"] == "already_member"


@pytest.mark.parametrize("body, field", [
    ({"email": "nope", "role": "staff"}, "email"),
    ({"email": "x@example.com", "role": "superuser"}, "role"),
    ({"email": "x@example.com", "role": "owner"}, "role"),
])
def test_bad_invitations_name_the_field(app, people, body, field):
    response = app.post_json(url(people, "/invitations"), body, headers=people["headers"]["ada"], status=422)
    assert field in response.json["error"]["fields"]


def test_role_changes_and_the_last_owner(app, people):
    invite_and_accept(app, people, "grace", "staff")
    grace = member_id(app, people, "grace")
    ada = member_id(app, people, "ada")
    changed = app.patch_json(url(people, f"/members/{grace}"), {"role": "admin"},
                             headers=people["headers"]["ada"]).json["member"]
    assert changed["role"] == "admin"
    # an admin cannot touch an owner, nor make one
    refused = app.patch_json(url(people, f"/members/{ada}"), {"role": "staff"},
                             headers=people["headers"]["grace"], status=403)
    assert refused.json["error"]["code"] == "forbidden"
    app.patch_json(url(people, f"/members/{grace}"), {"role": "owner"},
                   headers=people["headers"]["grace"], status=403)
    # the last owner cannot be demoted or leave
    last = app.patch_json(url(people, f"/members/{ada}"), {"role": "admin"},
                          headers=people["headers"]["ada"], status=409)
    assert last.json["error"]["code"] == "last_owner"
    app.post(url(people, "/leave"), headers=people["headers"]["ada"], status=409)
    app.patch_json(url(people, f"/members/{grace}"), {"role": "god"},
                   headers=people["headers"]["ada"], status=422)


def test_ownership_transfer(app, people):
    invite_and_accept(app, people, "grace", "admin")
    grace = member_id(app, people, "grace")
    app.post_json(url(people, "/transfer-ownership"), {"member_id": grace},
                  headers=people["headers"]["grace"], status=403)
    app.post_json(url(people, "/transfer-ownership"), {"member_id": grace},
                  headers=people["headers"]["ada"])
    roles = {m["email"]: m["role"] for m in
             app.get(url(people, "/members"), headers=people["headers"]["ada"]).json["members"]}
    assert roles == {"ada@example.com": "admin", "grace@example.com": "owner"}
    app.post(url(people, "/leave"), headers=people["headers"]["ada"], status=204)
    app.get(url(people), headers=people["headers"]["ada"], status=404)
    app.post_json(url(people, "/transfer-ownership"), {"member_id": "not-a-uuid"},
                  headers=people["headers"]["grace"], status=422)


def test_removing_a_member(app, people):
    invite_and_accept(app, people, "grace", "staff")
    grace = member_id(app, people, "grace")
    app.get(url(people), headers=people["headers"]["grace"])
    app.delete(url(people, f"/members/{grace}"), headers=people["headers"]["ada"], status=204)
    app.get(url(people), headers=people["headers"]["grace"], status=404)


def test_rename_and_delete(app, people, run_in_request):
    renamed = app.patch_json(url(people), {"name": "Ada's Ball"}, headers=people["headers"]["ada"]).json
    assert renamed["workspace"]["name"] == "Ada's Ball"
    app.delete(url(people), headers=people["headers"]["ada"], status=204)
    app.get(url(people), headers=people["headers"]["ada"], status=404)
    deleted = run_in_request(lambda r: r.db.scalar(select(Workspace).where(Workspace.name == "Ada's Ball")),
                             app.app.registry)
    assert deleted.deleted_at is not None


def test_api_key_lifecycle(app, people):
    created = app.post_json(url(people, "/api-keys"), {"name": "Zapier", "role": "admin"},
                            headers=people["headers"]["ada"], status=201).json["api_key"]
    secret = created["secret"]
    assert secret.startswith(created["prefix"] + "_")
    key_headers = {"Authorization": f"Bearer {secret}"}
    listed = app.get(url(people, "/api-keys"), headers=people["headers"]["ada"]).json["api_keys"]
    assert [k["name"] for k in listed] == ["Zapier"] and "secret" not in listed[0]
    assert listed[0]["last_used_at"] is None
    assert app.get(url(people), headers=key_headers).json["workspace"]["role"] == "admin"
    assert [w["id"] for w in app.get("/api/v1/workspaces", headers=key_headers).json["workspaces"]] == [
        people["workspace"]]
    assert app.get(url(people, "/api-keys"), headers=people["headers"]["ada"]).json["api_keys"][0]["last_used_at"]
    # keys never manage members, keys or billing, nor reach account pages
    for method, path, body in (("post_json", "/invitations", {"email": "x@example.com", "role": "staff"}),
                               ("post_json", "/api-keys", {"name": "k", "role": "admin"}),
                               ("get", "/api-keys", None)):
        call = getattr(app, method)
        args = (url(people, path), body) if body is not None else (url(people, path),)
        response = call(*args, headers=key_headers, status=403)
        assert response.json["error"]["role"] == "admin"
    app.get("/api/v1/me", headers=key_headers, status=403)
    app.delete(url(people, f"/api-keys/{created['id']}"), headers=people["headers"]["ada"], status=204)
    refused = app.get(url(people), headers=key_headers, status=401)
    assert refused.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("value", [
    "ggk_", "ggk_0123456789abcdef_", "ggk_zzzz_abc", "ggk_0123456789abcdef_" + "x" * 43,
    "ggk_" + "0" * 16 + "_" + "a" * 43,
])
def test_garbage_api_keys_are_401(app, people, value):
    app.get(url(people), headers={"Authorization": f"Bearer {value}"}, status=401)


def test_forbidden_names_the_permission_and_role(app, people):
    invite_and_accept(app, people, "grace", "staff")
    response = app.patch_json(url(people), {"name": "Mine now"}, headers=people["headers"]["grace"],
                              status=403)
    assert response.json["error"]["required"] == "workspace.edit"
    assert response.json["error"]["role"] == "staff"


def test_a_foreign_workspace_answers_exactly_like_a_missing_one(app, people):
    headers = {**people["headers"]["eve"], "X-Request-ID": "same-request-id"}
    foreign = app.get(url(people), headers=headers, status=404)
    missing = app.get("/api/v1/workspaces/00000000-0000-4000-8000-000000000000", headers=headers, status=404)
    malformed = app.get("/api/v1/workspaces/not-a-uuid", headers=headers, status=404)
    assert foreign.body == missing.body == malformed.body
    assert dict(foreign.headers) == dict(missing.headers)


def test_a_foreign_page_answers_exactly_like_a_missing_one(app, people, run_in_request):
    from guestguard.accounts.models import WEB
    from guestguard.accounts.services import login

    result = run_in_request(lambda r: login(r.ctx, email="eve@example.com", password="correct horse battery staple",
                                            kind=WEB), app.app.registry)
    app.set_cookie("gg_session", result.cookie_token)
    headers = {"X-Request-ID": "same-request-id"}
    foreign = app.get(f"/workspaces/{people['workspace']}/members", headers=headers, status=404)
    missing = app.get("/workspaces/00000000-0000-4000-8000-000000000000/members", headers=headers, status=404)
    assert foreign.body == missing.body
