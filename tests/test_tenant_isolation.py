"""The cross-tenant matrix. It walks the application's route table; every
route whose factory resolves a tenant-owned resource is called, with each of
its views' methods, as

  (a) anonymous                          -> 401 (API) / redirect to login (HTML)
  (b) the owner of another workspace     -> 404, the very body of a missing id
  (c) an API key of another workspace    -> 404, likewise
  (d) staff of the right workspace       -> 403 where the view's permission is
                                            not a staff permission

and every such view must declare a permission. A route added later is covered
without touching this file, unless it names a new kind of id: then add a
record of that kind to ``world`` below."""
import re
import uuid

import pytest

from guestguard.accounts.models import WEB
from guestguard.accounts.services import login
from guestguard.permissions import ROLE_PERMISSIONS, STAFF
from guestguard.testing import TEST_PASSWORD, acting_as, create_user, session_bearer
from guestguard.workspaces import services as workspaces

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def tenant_views(registry):
    """(route name, pattern, method, permission) for every view of every
    route whose factory is marked tenant-owned."""
    introspector = registry.introspector
    found = []
    routes_without_views = []
    for route in introspector.get_category("routes"):
        intr = route["introspectable"]
        factory = intr["factory"]
        if not getattr(factory, "tenant_owned", False):
            continue
        views = [related for related in route["related"] if related.category_name == "views"]
        if not views:
            routes_without_views.append(intr["name"])
        for view in views:
            permission = next((p["value"] for p in introspector.related(view)
                               if p.category_name == "permissions"), None)
            methods = view["request_methods"] or ("GET",)
            for method in (methods,) if isinstance(methods, str) else methods:
                found.append((intr["name"], intr["pattern"], method, permission))
    return sorted(set(found)), routes_without_views


@pytest.fixture
def world(app, run_in_request):
    registry = app.app.registry

    def build(request):
        ada = create_user(request, "ada@example.com", "Ada")
        sam = create_user(request, "sam@example.com", "Sam")
        eve = create_user(request, "eve@example.com", "Eve")
        ours = workspaces.create_workspace(request.ctx, ada, "Ours")
        theirs = workspaces.create_workspace(request.ctx, eve, "Theirs")
        from guestguard.workspaces.models import Membership

        staff = Membership(workspace_id=ours.id, user_id=sam.id, role=STAFF)
        request.db.add(staff)
        invitation = workspaces.invite(request.ctx, ada, ours, "newcomer@example.com", "staff")
        key, _ = workspaces.create_api_key(acting_as(request.ctx, ada), ours, "ours", "admin")
        import datetime as dt

        from guestguard.events.models import Event, Guest
        from guestguard.guard.models import Flag

        event = Event(workspace_id=ours.id, name="Gala", timezone="Europe/London",
                      starts_at=dt.datetime(2030, 6, 1, 18, tzinfo=dt.UTC))
        request.db.add(event)
        request.db.flush()
        guest = Guest(workspace_id=ours.id, event_id=event.id, name="Grace", email="grace@example.com")
        request.db.add(guest)
        request.db.flush()
        flag = Flag(workspace_id=ours.id, event_id=event.id, guest_id=guest.id, rule="networks", score=50,
                    evidence="used from 4 different networks within 2 hours")
        request.db.add(flag)
        from guestguard.imports.models import GuestImport

        imported = GuestImport(workspace_id=ours.id, event_id=event.id, status="imported", file_name="list.csv",
                               file_size=10, file_sha256="0" * 64, format="csv", content=b"Name\nAda\n", added=1)
        request.db.add(imported)
        _, foreign_secret = workspaces.create_api_key(acting_as(request.ctx, eve), theirs, "theirs", "admin")
        request.db.flush()
        return {
            "ids": {"workspace_id": ours.id, "member_id": staff.id,
                    "invitation_id": invitation.id, "key_id": key.id,
                    "event_id": event.id, "guest_id": guest.id, "flag_id": flag.id,
                    "import_id": imported.id,
                    # A door's scan id names no record of its own: the event in the path is the tenant's.
                    "scan_id": "scan-0001"},
            "foreign_key": foreign_secret,
        }

    data = run_in_request(build, registry)

    def cookie_for(email):
        return run_in_request(lambda r: login(r.ctx, email=email, password=TEST_PASSWORD, kind=WEB),
                              registry).cookie_token

    data["bearer"] = {who: session_bearer(app.app.registry, f"{who}@example.com") for who in ("eve", "sam")}
    data["cookie"] = {who: cookie_for(f"{who}@example.com") for who in ("eve", "sam")}
    return data


def fill(pattern, ids):
    def value(match):
        name = match.group(1)
        if name not in ids:
            pytest.fail(f"route placeholder {{{name}}} has no record in the world fixture: add one")
        return str(ids[name])

    return re.sub(r"\{(\w+)\}", value, pattern)


def call(app, method, path, headers=None, cookie=None):
    app.reset()
    if cookie:
        app.set_cookie("gg_session", cookie)
    return app.request(path, method=method, headers={"X-Request-ID": "matrix-request-1", **(headers or {})},
                       expect_errors=True, content_type="application/json" if method in UNSAFE else None,
                       body=b"{}" if method in UNSAFE else b"")


def test_every_tenant_route_is_closed_to_other_tenants(app, world):
    views, dead_routes = tenant_views(app.app.registry)
    assert dead_routes == [], "tenant routes without any view"
    assert len(views) >= 14, "the walk found the tenant routes"
    missing_ids = {name: uuid.UUID(int=0x4000_8000_0000_0000_0000) for name in world["ids"]}
    problems = []
    for _, pattern, method, permission in views:
        path = fill(pattern, world["ids"])
        api = path.startswith("/api/")
        if permission is None:
            problems.append(f"{method} {pattern}: no permission declared")

        anonymous = call(app, method, path)
        if api and anonymous.status_int != 401:
            problems.append(f"{method} {pattern} anonymous: {anonymous.status_int}, expected 401")
        if not api and not (anonymous.status_int in (302, 303) and "/login" in anonymous.location):
            problems.append(f"{method} {pattern} anonymous: {anonymous.status_int}, expected a login redirect")

        missing = (call(app, method, fill(pattern, missing_ids), headers=world["bearer"]["eve"]) if api
                   else call(app, method, fill(pattern, missing_ids), cookie=world["cookie"]["eve"]))
        outsiders = {
            "owner of another workspace": (call(app, method, path, headers=world["bearer"]["eve"]) if api
                                           else call(app, method, path, cookie=world["cookie"]["eve"])),
            "API key of another workspace": call(app, method, path, headers={
                "Authorization": f"Bearer {world['foreign_key']}"}),
        }
        for who, response in outsiders.items():
            if response.status_int != 404:
                problems.append(f"{method} {pattern} {who}: {response.status_int}, expected 404")
            elif response.body != missing.body:
                problems.append(f"{method} {pattern} {who}: the 404 differs from a missing id's")

        if method in UNSAFE and permission not in ROLE_PERMISSIONS[STAFF]:
            staff = (call(app, method, path, headers=world["bearer"]["sam"]) if api
                     else call(app, method, path, cookie=world["cookie"]["sam"]))
            if staff.status_int != 403:
                problems.append(f"{method} {pattern} staff: {staff.status_int}, expected 403")
    assert problems == []


def test_the_walk_sees_a_route_added_without_a_permission(make_app):
    """The matrix cannot silently skip a careless route."""
    from guestguard.plugins import hookimpl
    from guestguard.workspaces.resources import workspace_factory

    class Careless:
        @hookimpl
        def configure(self, config):
            config.add_route("careless", "/api/v1/workspaces/{workspace_id}/careless",
                             factory=workspace_factory)
            config.add_view(lambda request: {}, route_name="careless", renderer="json")

    app = make_app(plugins=[("careless", Careless())])
    views, _ = tenant_views(app.app.registry)
    assert ("careless", "/api/v1/workspaces/{workspace_id}/careless", "GET", None) in views
