"""Input errors read in the house's words, whatever pydantic type raised
them: no message in a test below starts with pydantic's "Input should"."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

import pytest
from pydantic import Field, ValidationError

from guestguard.validation import Input, field_errors

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


class Everything(Input):
    count: int = Field(default=0, ge=0, le=20)
    above: int = Field(default=1, gt=0, lt=10)
    tags: list[str] = Field(default_factory=list, min_length=0, max_length=2)
    pair: list[str] = Field(default_factory=lambda: ["a"], min_length=1)
    choice: Literal["yes", "no"] = "yes"
    ratio: float = 0.5
    ident: uuid.UUID | None = None
    at: dt.datetime | None = None
    day: dt.date | None = None
    name: str = Field(default="x", min_length=1, max_length=5)
    flag: bool = False


@pytest.mark.parametrize("data, field, words", [
    ({"count": -1}, "count", "must be greater than or equal to 0"),
    ({"count": 21}, "count", "must be less than or equal to 20"),
    ({"above": 0}, "above", "must be greater than 0"),
    ({"above": 10}, "above", "must be less than 10"),
    ({"count": "many"}, "count", "must be a whole number"),
    ({"count": 1.5}, "count", "must be a whole number"),
    ({"tags": ["a", "b", "c"]}, "tags", "must have at most 2 items"),
    ({"pair": []}, "pair", "must have at least 1 item"),
    ({"tags": "a"}, "tags", "must be a list"),
    ({"choice": "maybe"}, "choice", "must be one of 'yes' or 'no'"),
    ({"ratio": "half"}, "ratio", "must be a number"),
    ({"ident": "not-an-id"}, "ident", "must be an id"),
    ({"at": "soon"}, "at", "must be a date and time"),
    ({"day": "someday"}, "day", "must be a date"),
    ({"name": ""}, "name", "is required"),
    ({"name": "toolong"}, "name", "must be at most 5 characters"),
    ({"flag": "perhaps"}, "flag", "must be true or false"),
    ({"unknown": 1}, "unknown", "is not a known field"),
])
def test_every_type_of_problem_reads_in_the_house_words(data, field, words):
    with pytest.raises(ValidationError) as caught:
        Everything.model_validate(data)
    errors = field_errors(caught.value)
    assert errors == {field: words}
    assert not errors[field].startswith(("Input should", "List should", "Value error"))
