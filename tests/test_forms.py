"""The one reader of HTML forms (web.Form): what blanks, checkboxes, comma
lists and datetime-local inputs become, and how problems read."""
import datetime as dt
from typing import Annotated, Literal

import pytest
from pydantic import Field as Constraint, StringConstraints, model_validator
from pyramid.testing import DummyRequest
from webob.multidict import MultiDict

from guestguard.errors import Refusal
from guestguard.events.schemas import TimeZone
from guestguard.validation import Input, field_problem
from guestguard.web import CHECKBOX, DATETIME, FORM, LIST, NONE, OMIT, PASSWORD, Field, Form

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


class Party(Input):
    name: Annotated[str, StringConstraints(min_length=1)]
    starts_at: dt.datetime
    ends_at: dt.datetime | None = None
    timezone: TimeZone
    seats: Annotated[int, Constraint(ge=0, le=20)] | None = None
    kind: Literal["dinner", "dance"] | None = None
    tags: list[str] | None = None
    secret: Annotated[str, StringConstraints(strip_whitespace=False)] = ""
    public: bool = False

    @model_validator(mode="after")
    def _order(self):
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise field_problem("ends_at", "must be after starts_at")
        return self


PARTY = Form(
    Party,
    Field("name", "Name"), Field("starts_at", "Start", DATETIME, NONE), Field("ends_at", "End", DATETIME, NONE),
    Field("timezone", "Time zone"), Field("seats", "Seats", blank=OMIT),
    Field("kind", "Kind", blank=OMIT, choice="Choose a kind from the list."), Field("tags", "Tags", LIST),
    Field("secret", "Secret", PASSWORD), Field("public", kind=CHECKBOX),
    zone_field="timezone")


def post(**values) -> DummyRequest:
    return DummyRequest(post=MultiDict(values))


GOOD = {"name": " Gala ", "starts_at": "2030-06-21T19:00", "timezone": "Europe/London"}


def test_a_good_form_fills_the_model():
    form = PARTY.read(post(**GOOD, ends_at="", seats="", kind="", tags=" vip, , speaker ,", secret=" s3 ",
                           public="on"))
    assert form.ok and form.errors == {}
    party = form.model
    assert party.name == "Gala"
    assert party.starts_at == dt.datetime(2030, 6, 21, 18, tzinfo=dt.UTC)  # 19:00 BST
    assert party.starts_at.utcoffset() == dt.timedelta(hours=1)
    assert party.ends_at is None  # blank: none
    assert party.seats is None and party.kind is None  # blank: left out, the model's default
    assert party.tags == ["vip", "speaker"]
    assert party.secret == " s3 "  # passwords as typed
    assert party.public is True
    assert PARTY.read(post(**GOOD)).model.public is False  # an unticked box is not sent


def test_problems_read_as_sentences_in_the_order_of_the_form():
    form = PARTY.read(post(name="", starts_at="tomorrow", timezone="Mars/Olympus", seats="-1", kind="party"))
    assert form.model is None and not form.ok
    assert form.errors == {
        "name": "Name is required.",
        "starts_at": "Start must be a date and time, like 2030-06-21 19:00.",
        "timezone": "Time zone is not a time zone we know: use a name like Europe/Paris.",
        "seats": "Seats must be greater than or equal to 0.",
        "kind": "Choose a kind from the list.",
    }


def test_a_required_field_left_blank_is_required_not_none():
    form = PARTY.read(post(**{**GOOD, "starts_at": "  "}))
    assert form.errors == {"starts_at": "Start is required."}


def test_a_check_across_fields_names_the_other_field_by_its_label():
    form = PARTY.read(post(**GOOD, ends_at="2030-06-21T18:00"))
    assert form.errors == {"ends_at": "End must be after the start."}


def test_absent_fields_are_missing_unless_the_form_sends_them_all():
    assert PARTY.read(post()).errors["name"] == "Name is required."
    everything = Form(Party, Field("name", "Name"), Field("tags", "Tags", LIST), absent_as_blank=True)
    form = everything.read(post())
    assert form.values == {"name": "", "tags": []}


def test_times_stay_as_typed_when_the_zone_is_unknown():
    form = PARTY.read(post(**{**GOOD, "timezone": "Nowhere/Land"}))
    assert form.values["starts_at"] == dt.datetime(2030, 6, 21, 19)  # naive: the zone is the problem
    assert list(form.errors) == ["timezone"]
    # A form without a zone field takes the view's.
    timed = Form(Party, Field("starts_at", "Start", DATETIME))
    values = timed.read(post(starts_at="2030-01-10T09:30"), zone="America/Sao_Paulo").values
    assert values["starts_at"].utcoffset() == dt.timedelta(hours=-3)


def test_what_was_typed_comes_back_without_passwords():
    request = post(**GOOD, secret="hunter2", public="on")
    typed = PARTY.typed(request)
    assert typed["name"] == " Gala " and typed["ends_at"] == "" and typed["public"] is True
    assert "secret" not in typed


def test_assumed_values_check_the_other_fields_and_report_the_blank_one():
    form = PARTY.read(post(**{**GOOD, "kind": ""}), assume={"kind": "dinner"})
    assert form.model is not None and form.model.kind == "dinner"  # the rest was checked
    assert form.errors == {"kind": "Choose a kind from the list."}


def test_a_view_adds_its_own_problems_worded_and_in_order():
    form = PARTY.read(post(**GOOD, seats="3"))
    form.refuse("seats", "must be at most 2: the room is small")
    form.refuse("name", "is taken")
    form.refuse("name", "is also something else")  # the first problem of a field stays
    assert list(form.errors.items()) == [("name", "Name is taken."),
                                         ("seats", "Seats must be at most 2: the room is small.")]


def test_a_services_refusal_becomes_the_forms_errors():
    form = PARTY.read(post(**GOOD))
    fields = Refusal(422, "validation_failed", "Some fields are invalid.",
                     fields={"timezone": "is closed", "name": "is required", "elsewhere": "x"})
    assert list(form.refused(fields).items()) == [("name", "Name is required."), ("timezone", "Time zone is closed.")]
    rows = Refusal(422, "validation_failed", "Some rows are invalid.", rows={"0": {"seats": "is too many"}})
    assert form.refused(rows) == {"seats": "Seats is too many."}
    assert form.refused(Refusal(409, "taken", "That name is taken.", "name")) == {"name": "That name is taken."}
    assert form.refused(Refusal(409, "closed", "The list is closed.", "other")) == {FORM: "The list is closed."}
