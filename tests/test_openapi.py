"""The API contract: /api/v1/openapi.json describes every API route and
method there is and nothing else, webhooks included, and is valid OpenAPI 3.1.

The route table is walked here independently of the generator: a route
added without declaring ``response=`` (and ``body=``/``query=``) fails this
test the day it is added."""
import re

import pytest
from openapi_spec_validator import validate
from pyramid.httpexceptions import HTTPNoContent

from guestguard.contract import Refused
from guestguard.openapi import WEBHOOK_PREFIX
from guestguard.plugins import hookimpl
from guestguard.validation import Input

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def route_table(registry):
    """{(kind, key, method)} for every view of every API and webhook route,
    and the names of views that answer any method (which cannot be documented)."""
    found, unbounded = set(), []
    for route in registry.introspector.get_category("routes"):
        intr = route["introspectable"]
        pattern = intr["pattern"]
        if pattern.startswith("/api/"):
            kind, key = "path", re.sub(r"{(\w+):[^}]*}", r"{\1}", pattern)
        elif pattern.startswith(WEBHOOK_PREFIX):
            kind, key = "webhook", intr["name"]
        else:
            continue
        for view in (r for r in route["related"] if r.category_name == "views"):
            methods = view["request_methods"]
            if methods is None:
                unbounded.append(intr["name"])
                continue
            for method in (methods,) if isinstance(methods, str) else methods:
                if method != "HEAD":
                    found.add((kind, key, method.lower()))
    return found, unbounded


def documented(document):
    found = set()
    for kind, section in (("path", document["paths"]), ("webhook", document["webhooks"])):
        for key, item in section.items():
            found.update((kind, key, method) for method in item if method in METHODS)
    return found


def other_routes(registry):
    """Patterns of the routes that are neither API nor webhook routes."""
    return {re.sub(r"{(\w+):[^}]*}", r"{\1}", route["introspectable"]["pattern"])
            for route in registry.introspector.get_category("routes")}


def mismatch(app):
    registry = app.app.registry
    document = app.get("/api/v1/openapi.json").json
    expected, unbounded = route_table(registry)
    have = documented(document)
    missing = sorted(expected - have)
    # Documented operations outside /api/ (the live stream) must name a real route.
    extra = sorted(item for item in have - expected
                   if item[0] == "webhook" or item[1].startswith("/api/") or item[1] not in other_routes(registry))
    return missing, extra, unbounded


@pytest.fixture
def document(app):
    return app.get("/api/v1/openapi.json").json


def test_every_api_route_and_method_is_documented_and_nothing_else(app):
    missing, extra, unbounded = mismatch(app)
    assert missing == [], "undocumented: declare response= (and body=/query=) on these views"
    assert extra == [], "documented but not in the route table"
    assert unbounded == [], "API views must name their request_method"


def test_the_document_is_valid_openapi_3_1(app, document):
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "http://guestguard.test"}]
    assert document["info"]["version"]
    # Only what installed plugins contribute (guestguard-ses's events) is a webhook.
    assert all(hook["x-path"].startswith("/webhooks/") for hook in document["webhooks"].values())
    assert app.get("/api/v1/openapi.json").json == document  # built once, served the same


def test_every_operation_is_named_summarized_tagged_and_answers_errors_in_the_house_shape(document):
    tags = {tag["name"] for tag in document["tags"]}
    ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            assert operation["summary"] and set(operation["tags"]) <= tags, (method, path)
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema["allOf"] == [{"$ref": "#/components/schemas/Error"}], (method, path, status)
                    assert schema["properties"]["error"]["properties"]["code"]["enum"]
            if path.startswith("/api/"):
                assert {"400", "429"} <= set(operation["responses"]), (method, path)
    assert len(ids) == len(set(ids))
    assert {"accounts", "workspaces", "events", "guard", "activity"} <= tags


def test_permissions_bodies_and_rate_limits_show_in_the_document(document):
    paths = document["paths"]
    guests = paths["/api/v1/events/{event_id}/guests"]
    listing, adding = guests["get"], guests["post"]
    assert {"bearer", "cookie", "apiKey"} == {name for scheme in listing["security"] for name in scheme}
    assert {"401", "403", "404"} <= set(listing["responses"])
    assert [p["name"] for p in listing["parameters"]] == ["event_id", "response", "q", "flagged", "invitation", "after",
                                                          "limit"]
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
    assert {"413", "415", "422", "409"} <= set(adding["responses"])
    assert adding["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]["maxItems"] == 1000
    assert "ratelimit.guest_create" in adding["responses"]["429"]["description"]
    assert adding["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    # Keys never delete workspaces; nobody needs credentials to sign up.
    delete = paths["/api/v1/workspaces/{workspace_id}"]["delete"]
    assert "apiKey" not in {name for scheme in delete["security"] for name in scheme}
    signup = paths["/api/v1/auth/signup"]["post"]
    assert signup["security"] == [] and {"202", "400", "503"} <= set(signup["responses"])
    assert "401" not in signup["responses"]
    logout = paths["/api/v1/auth/logout"]["post"]
    assert {"cookie": [], "csrf": []} in logout["security"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["cookie"] == {**schemes["cookie"], "type": "apiKey", "in": "cookie", "name": "gg_session"}
    assert schemes["csrf"]["name"] == "X-CSRF-Token"
    assert schemes["bearer"]["bearerFormat"] == "JWT"
    ticket = paths["/api/v1/auth/stream-ticket"]["post"]
    assert {"401", "403", "404"} <= set(ticket["responses"])
    stream = paths["/events/{event_id}/activity/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]


def test_main_bodies_carry_examples_and_answers_their_schemas(document):
    schemas = document["components"]["schemas"]
    for name in ("SignupInput", "LoginInput", "EventInput", "GuestInput", "RsvpInput", "WorkspaceInput"):
        assert schemas[name]["examples"], name
    guest = schemas["GuestOut"]
    assert "group" in guest["properties"] and "group_name" not in guest["properties"]
    assert guest["properties"]["responded_at"]["anyOf"][0] == {"type": "string", "format": "date-time"}
    assert set(guest["required"]) == set(guest["properties"])
    assert "token_type" in schemas["TokensOut"]["required"]


class Webhooks:
    """A plugin with a provider webhook route and an API view that declares nothing."""

    def __init__(self, declared=True):
        self.declared = declared

    @hookimpl
    def configure(self, config):
        class DeliveryReport(Input):
            message_id: str

        config.add_route("webhook_test_provider", "/webhooks/test-provider/{secret}")
        config.add_view(self.report, route_name="webhook_test_provider", request_method="POST",
                        body=DeliveryReport, response={204: None, 404: Refused("unknown_webhook")})
        if not self.declared:
            config.add_route("api_undeclared", "/api/v1/undeclared")
            config.add_view(self.report, route_name="api_undeclared", request_method="GET", renderer="json")

    @staticmethod
    def report(request):
        """A provider reports a delivery."""
        return HTTPNoContent()


def test_provider_webhook_routes_are_documented_as_webhooks(make_app):
    app = make_app(plugins=[("webhooks", Webhooks())])
    assert mismatch(app) == ([], [], [])
    document = app.get("/api/v1/openapi.json").json
    validate(document)
    hook = document["webhooks"]["webhook_test_provider"]
    assert hook["x-path"] == "/webhooks/test-provider/{secret}"
    assert hook["post"]["summary"] == "A provider reports a delivery"
    assert set(hook["post"]["responses"]) == {"204", "404", "413", "415", "400", "422"}
    assert not any(path.startswith("/webhooks/") for path in document["paths"])


def test_an_api_view_that_declares_nothing_is_named(make_app):
    app = make_app(plugins=[("webhooks", Webhooks(declared=False))])
    missing, extra, _ = mismatch(app)
    assert (missing, extra) == ([("path", "/api/v1/undeclared", "get")], [])


def test_links_name_operations_and_parameters_that_exist(document):
    operations = {operation["operationId"]: operation
                  for item in document["paths"].values() for operation in item.values()}
    found = 0
    for operation in operations.values():
        for answer in operation["responses"].values():
            for link in answer.get("links", {}).values():
                target = operations[link["operationId"]]
                names = {parameter["name"] for parameter in target.get("parameters", ())}
                assert set(link["parameters"]) <= names, (operation["operationId"], link)
                found += 1
    assert found >= 20
    created = operations["create_event"]["responses"]["201"]["links"]["get_event"]
    assert created == {"operationId": "get_event", "parameters": {"event_id": "$response.body#/event/id"}}
