"""Declared input and output: the body, query and response view options."""
import datetime as dt
import uuid
import zoneinfo
from dataclasses import dataclass

import pytest
from pyramid.httpexceptions import HTTPNoContent

from guestguard.contract import Batch, Body, Moment, Out, Refused
from guestguard.errors import Refusal
from guestguard.plugins import hookimpl
from guestguard.validation import Input, OneOf, Query, WholeNumber

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


class ThingInput(Input):
    name: str
    size: int = 1


class ThingQuery(Query):
    order: OneOf("asc", "desc") = "asc"
    limit: WholeNumber(1, 9, "must be a whole number from 1 to 9") = 3


class ThingOut(Out):
    id: uuid.UUID
    name: str
    at: Moment
    label: str


class Things(Out):
    things: list[ThingOut]


@dataclass
class Thing:
    id: uuid.UUID
    name: str
    at: dt.datetime


class ThingViews:
    """A plugin with views that declare what they read and answer."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def configure(self, config):
        config.add_route("things", "/api/v1/things")
        config.add_route("thing_batch", "/api/v1/thing-batch")
        config.add_route("thing_wrong", "/api/v1/thing-wrong")
        config.add_view(self.create, route_name="things", request_method="POST", renderer="json",
                        body=ThingInput, response={201: ThingOut, 409: Refused("taken")})
        config.add_view(self.listing, route_name="things", request_method="GET", renderer="json",
                        query=ThingQuery, response=Things)
        config.add_view(self.touch, route_name="things", request_method="PATCH",
                        body=Body(ThingInput, optional=True), response={204: None})
        config.add_view(self.batch, route_name="thing_batch", request_method="POST", renderer="json",
                        body=Batch(ThingInput, "guests.max_batch", noun="thing", nouns="things"),
                        response={201: Things, 409: Refused("taken")})
        config.add_view(self.wrong, route_name="thing_wrong", request_method="GET", renderer="json",
                        response=Things)

    def create(self, request):
        self.calls.append("create")  # before the body is read
        data = request.body_input
        if data.name == "taken":
            raise Refusal(409, "taken", "That name is taken.", field="name")
        return ThingOut.of(Thing(uuid.UUID(int=1), data.name, dt.datetime(2030, 6, 21, 18, tzinfo=dt.UTC)),
                           label=f"{data.name} x{data.size}")

    def listing(self, request):
        query = request.query_input
        return Things(things=[ThingOut(id=uuid.UUID(int=n), name=f"{query.order}{n}", label="",
                                       at=dt.datetime(2030, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")))
                              for n in range(query.limit)])

    def touch(self, request):
        self.calls.append(request.body_input.name if request.body else None)
        return HTTPNoContent()

    def batch(self, request):
        data = request.body_input
        if any(item.name == "taken" for item in data.items):
            raise Refusal(422, "validation_failed", "Some rows are invalid; no thing was added.",
                          rows={"0": {"name": "is taken"}})
        return Things(things=[ThingOut(id=uuid.UUID(int=0), name=item.name, label=str(data.many),
                                       at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)) for item in data.items])

    def wrong(self, request):
        return ThingOut(id=uuid.UUID(int=0), name="", label="", at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))


@pytest.fixture
def views():
    return ThingViews()


@pytest.fixture
def things(make_app, views):
    return make_app(plugins=[("thing-views", views)])


def test_a_declared_body_is_read_and_the_declared_status_set(things, views):
    answer = things.post_json("/api/v1/things", {"name": "Box", "size": 2}, status=201)
    assert answer.body == (b'{"id": "00000000-0000-0000-0000-000000000001", "name": "Box", '
                           b'"at": "2030-06-21T18:00:00+00:00", "label": "Box x2"}')
    refused = things.post_json("/api/v1/things", {"name": "taken"}, status=409).json
    assert refused == {"error": {"code": "taken", "message": "That name is taken.",
                                 "fields": {"name": "That name is taken."}}}
    bad = things.post_json("/api/v1/things", {"size": "big", "colour": "red"}, status=422).json
    assert bad["error"]["fields"] == {"name": "is required", "size": "must be a whole number",
                                      "colour": "is not a known field"}
    things.post("/api/v1/things", "name=Box", status=415)
    things.post("/api/v1/things", "{", headers={"Content-Type": "application/json"}, status=400)
    assert views.calls == ["create"] * 5


def test_a_declared_query_is_read_and_refused_plainly(things):
    listed = things.get("/api/v1/things?order=desc&limit=2&other=x").json
    assert [thing["name"] for thing in listed["things"]] == ["desc0", "desc1"]
    assert listed["things"][0]["at"] == "2030-01-01T00:00:00+01:00"
    refused = things.get("/api/v1/things?order=up&limit=0", status=400).json
    assert refused == {"error": {"code": "bad_request", "message": "order must be one of asc, desc."}}


def test_an_optional_body_may_be_left_out(things, views):
    things.patch("/api/v1/things", status=204)
    things.patch_json("/api/v1/things", {"name": "Lid"}, status=204)
    things.patch_json("/api/v1/things", {"nope": 1}, status=422)
    assert views.calls == [None, "Lid"]


def test_a_batch_is_one_object_or_an_array(things):
    one = things.post_json("/api/v1/thing-batch", {"name": "A"}, status=201).json
    assert [(t["name"], t["label"]) for t in one["things"]] == [("A", "False")]
    many = things.post_json("/api/v1/thing-batch", [{"name": "A"}, {"name": "B"}], status=201).json
    assert [t["label"] for t in many["things"]] == ["True", "True"]
    rows = things.post_json("/api/v1/thing-batch", [{"name": "A"}, {}], status=422).json["error"]
    assert rows == {"code": "validation_failed", "message": "Some rows are invalid; no thing was added.",
                    "rows": {"1": {"name": "is required"}}}
    empty = things.post_json("/api/v1/thing-batch", [], status=422).json["error"]
    assert empty["message"] == "Send 1 to 1000 things at once; nothing was added."
    # A refusal naming rows answers a single object with its fields.
    assert things.post_json("/api/v1/thing-batch", {"name": "taken"}, status=422).json == {
        "error": {"code": "validation_failed", "message": "Some fields are invalid.",
                  "fields": {"name": "is taken"}}}
    assert "rows" in things.post_json("/api/v1/thing-batch", [{"name": "taken"}], status=422).json["error"]


def test_an_answer_its_view_does_not_declare_is_a_bug(things, caplog):
    assert things.get("/api/v1/thing-wrong", status=500).json["error"]["code"] == "internal_error"
    assert "which its response= does not declare" in caplog.text
