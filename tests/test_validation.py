"""Input errors read in the house's words, whatever pydantic type raised
them: no message in a test below starts with pydantic's "Input should"."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

import hypothesis
import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import strategies as st
from pydantic import Field, ValidationError

from guestguard import validation
from guestguard.validation import Input, field_errors, normalize_email, normalize_phone

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


# --- the plain-address and main-region shortcuts ------------------------------------

def _full_email(value: str) -> str | None:
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def _normalized_or_none(normalize, *args) -> str | None:
    try:
        return normalize(*args)
    except ValueError:
        return None


PLAIN_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,70}"
PLAIN_DOMAIN = r"(?:[A-Za-z0-9-]{1,65}\.){1,4}(?:[A-Za-z]{2,64}|arpa|local|localhost|onion|test|invalid|[0-9]{2})"


@hypothesis.settings(max_examples=400, deadline=None, derandomize=True)
@hypothesis.given(st.from_regex(rf"\A{PLAIN_LOCAL}@{PLAIN_DOMAIN}\Z") | st.text(max_size=80))
def test_an_address_reads_as_the_full_check_reads_it(value):
    assert _normalized_or_none(normalize_email, value) == _full_email(value)


@pytest.mark.parametrize("value", [
    "Ada.Lovelace@Example.COM", "a@b.co", "x@sub.example.test", "x@example.local", "x@localhost",
    "x@xn--bcher-kva.example", "x@ab--cd.example", "x@a-b.example", "x.@example.com", ".x@example.com",
    "x..y@example.com", "x@-a.example", "x@a-.example", "x@example.c0m", "x@123.example",
    "x" * 64 + "@example.com", "x" * 65 + "@example.com", "x@" + "a" * 63 + ".com", "x@" + "a" * 64 + ".com",
    "x@" + ".".join(["a" * 60] * 4) + ".com", "user+tag@example.com", "o'brien@example.ie", "x@example.com\n",
])
def test_the_edges_of_the_plain_address(value):
    assert _normalized_or_none(normalize_email, value) == _full_email(value)


def test_a_plain_address_skips_the_full_check(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the full check ran")

    monkeypatch.setattr(validation, "validate_email", refuse)
    assert normalize_email("Guest1@Example.com") == "guest1@example.com"


@hypothesis.settings(max_examples=600, deadline=None, derandomize=True)
@hypothesis.given(st.sampled_from(["1", "44", "33", "49", "61", "81", "7", "39", "91", "55", "262", "590", "672",
                                   "47", "212", "290", "358", "599", "800", "882"]),
                  st.from_regex(r"\A[0-9]{4,13}\Z"))
def test_a_number_is_valid_as_phonenumbers_says(country, digits):
    value = f"+{country}{digits}"
    try:
        expected = phonenumbers.is_valid_number(phonenumbers.parse(value, None))
    except phonenumbers.NumberParseException:
        expected = False
    assert (_normalized_or_none(normalize_phone, value, None) is not None) == expected


@pytest.mark.parametrize("value", [
    "+44 7911 123456", "+44 7624 123456", "+44 1534 123456", "+44 1481 123456", "+1 212 555 0123",
    "+1 876 555 0123", "+1 684 733 1234", "+7 700 123 4567", "+7 912 345 6789", "+262 262 12 34 56",
    "+262 269 61 23 45", "+590 590 27 12 34", "+61 2 9876 5432", "+61 8 9162 1234", "+39 06 6982",
])
def test_numbers_shared_by_several_regions(value):
    expected = phonenumbers.is_valid_number(phonenumbers.parse(value, None))
    assert (_normalized_or_none(normalize_phone, value, None) is not None) == expected


def test_a_number_is_checked_once_per_region(monkeypatch):
    """A Guernsey mobile (+44 shares GB, GG, IM, JE): not valid in GB, valid
    in GG, and the check stops there."""
    asked = []
    real = phonenumbers.is_valid_number_for_region

    def spy(number, region):
        asked.append(region)
        return real(number, region)

    monkeypatch.setattr(phonenumbers, "is_valid_number_for_region", spy)
    assert normalize_phone("+44 7911 123456", None) == "+447911123456"
    assert asked == ["GB", "GG"]
    asked.clear()
    assert normalize_phone("+44 7400 123456", None) == "+447400123456"
    assert asked == ["GB"]


def test_every_regions_example_numbers_read_as_phonenumbers_reads_them():
    """Each region's example number of each type, and the same with its last
    digit changed or dropped, in every country code shared by regions."""
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(11):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            digits = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            for value in (digits, digits[:-1] + str((int(digits[-1]) + 1) % 10), digits[:-1]):
                number = phonenumbers.parse(value, None)
                expected = phonenumbers.is_valid_number(number)
                assert (_normalized_or_none(normalize_phone, value, None) is not None) == expected, value
                checked += 1
    assert checked > 3000
