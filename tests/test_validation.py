"""The house's words for input errors, and the conversions models declare."""
import datetime as dt
import uuid
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError, model_validator

from guestguard.errors import APIError
from guestguard.events.schemas import EventInput, check_times
from guestguard.validation import (
    NO_ID,
    Blank,
    CommaList,
    Input,
    LocalDateTime,
    OneOf,
    Query,
    QueryFlag,
    Trimmed,
    UUIDOr,
    WholeNumber,
    field_errors,
    field_problem,
    house_error,
    parse_query,
)


def errors_of(model, data):
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return field_errors(caught.value)


def test_pydantic_error_types_get_the_house_words():
    class Form(Input):
        name: Annotated[str, Trimmed(100)]
        code: str = ""
        count: int = 0
        agreed: bool = False

    class Short(Input):
        name: Annotated[str | None, Blank] = None

    assert errors_of(Form, {"code": 5, "count": "x", "agreed": "perhaps", "other": 1}) == {
        "name": "is required", "code": "must be text", "count": "must be a whole number",
        "agreed": "must be true or false", "other": "is not a known field"}
    assert Short.model_validate({"name": "  "}).name is None


def test_a_check_across_fields_names_its_field_without_parsing_words():
    class Range(Input):
        low: int
        high: int

        @model_validator(mode="after")
        def _order(self):
            if self.high <= self.low:
                raise field_problem("high", "must be above low: say so")
            return self

    assert errors_of(Range, {"low": 2, "high": 1}) == {"high": "must be above low: say so"}
    common = {"workspace_id": str(uuid.uuid4()), "name": "Gala", "timezone": "Europe/London",
              "starts_at": "2030-06-21T19:00"}
    assert errors_of(EventInput, {**common, "ends_at": "2030-06-21T18:00"}) == {"ends_at": "must be after starts_at"}
    assert errors_of(EventInput, {**common, "rsvp_deadline": "2030-06-22T10:00"}) == {
        "rsvp_deadline": "must not be after starts_at"}
    # The same problem read as text (the HTML forms do) still names its field first.
    with pytest.raises(ValueError, match="^ends_at: must be after starts_at$"):
        check_times(dt.datetime(2030, 1, 2, tzinfo=dt.UTC), dt.datetime(2030, 1, 1, tzinfo=dt.UTC), None, "UTC")


def test_form_conversions_are_declared_on_the_model():
    class EventForm(Input):
        starts_at: Annotated[dt.datetime | None, LocalDateTime] = None
        tags: Annotated[list[str], CommaList] = Field(default_factory=list)
        venue: Annotated[str | None, Blank] = None

    form = EventForm.model_validate({"starts_at": "2030-06-21T19:00", "tags": "vip, family,, ", "venue": " "})
    assert (form.starts_at.isoformat(), form.tags, form.venue) == ("2030-06-21T19:00:00", ["vip", "family"], None)
    assert EventForm.model_validate({"starts_at": ""}).starts_at is None
    assert EventForm.model_validate({"tags": ["a"]}).tags == ["a"]
    assert errors_of(EventForm, {"starts_at": "next friday"}) == {
        "starts_at": "must be a date and time, like 2030-06-21 19:00"}


def test_query_types():
    class Listing(Query):
        status: OneOf("open", "closed") | None = None
        flagged: QueryFlag = False
        lookback: WholeNumber(0, 60, "must be a whole number of seconds from 0 to 60") = 0
        guest_id: UUIDOr("must be a guest's id") = None
        workspace_id: UUIDOr(None) = None
        q: Annotated[str, Trimmed(5)] = ""

    some = uuid.uuid4()
    parsed = Listing.model_validate({"status": "open", "flagged": "true", "lookback": "60", "guest_id": str(some),
                                     "workspace_id": "not an id", "q": "  abcdefgh "})
    assert (parsed.status, parsed.flagged, parsed.lookback, parsed.guest_id, parsed.workspace_id, parsed.q) == (
        "open", True, 60, some, NO_ID, "abcde")
    blank = Listing.model_validate({"guest_id": "", "workspace_id": ""})
    assert (blank.guest_id, blank.workspace_id) == (None, NO_ID)
    assert errors_of(Listing, {"status": "", "flagged": "yes", "lookback": "+5", "guest_id": "x"}) == {
        "status": "must be one of open, closed", "flagged": "must be true or false",
        "lookback": "must be a whole number of seconds from 0 to 60", "guest_id": "must be a guest's id"}
    for value in ("61", "-1", "٣", " 5", "5.0"):
        assert "lookback" in errors_of(Listing, {"lookback": value})
    schema = Listing.model_json_schema()["properties"]
    assert schema["status"]["anyOf"][0]["enum"] == ["open", "closed"]
    assert (schema["lookback"]["minimum"], schema["lookback"]["maximum"]) == (0, 60)


def test_a_query_string_refused_names_its_first_bad_parameter():
    class Listing(Query):
        order: OneOf("asc", "desc") = "asc"
        limit: WholeNumber(1, 500, "must be a whole number from 1 to 500") = 50

    class Request:
        def __init__(self, query):
            from webob.multidict import MultiDict

            self.GET = MultiDict(query)

    with pytest.raises(APIError) as caught:
        parse_query(Request([("limit", "0"), ("order", "up")]), Listing)
    assert (caught.value.code, caught.value.error_code, caught.value.error_message) == (
        400, "bad_request", "order must be one of asc, desc.")
    # A repeated parameter counts by its last value, as request.GET.get() reads it.
    assert parse_query(Request([("limit", "0"), ("limit", "7")]), Listing).limit == 7


def test_house_errors_carry_their_words():
    class Named(BaseModel):
        name: str

        @model_validator(mode="before")
        @classmethod
        def _never(cls, _data):
            raise house_error("is not {a} name we take")

    assert errors_of(Named, {"name": "x"}) == {"body": "is not {a} name we take"}
