"""SMS segment estimates: GSM-7 (extension characters count twice, never
split), UCS-2 (characters outside the BMP count twice, never split), and
the cap's refusal. Fast and pure: the mutation run's tests for
guestguard.sms_segments."""
from __future__ import annotations

import pytest

from guestguard.sms_segments import (
    GSM7,
    GSM7_BASIC,
    GSM7_EXTENSION,
    UCS2,
    MessageTooLong,
    SmsLength,
    check,
    encoding_of,
    estimate,
    pack,
    sms_body,
    too_long,
    unit_sizes,
)

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


EMOJI = "\U0001F600"  # outside the BMP: a surrogate pair in UTF-16


def test_the_tables_hold_the_gsm_alphabet():
    assert len(GSM7_BASIC) == 127, "128 codes less the escape"
    assert "\x1b" not in GSM7_BASIC
    assert set("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\n\r") <= GSM7_BASIC
    assert frozenset("^{}\\[~]|€\f") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize("text, encoding", [
    ("", GSM7), ("Hello, world!", GSM7), ("Café à 8 € {ok}", GSM7), ("ÄÖÜß\r\n", GSM7),
    ("á", UCS2), ("tab\there", UCS2), ("`", UCS2), ("Привет", UCS2), (f"hi {EMOJI}", UCS2),
    ("a" * 200 + "ж", UCS2), ("ж" + "a" * 200, UCS2),
])
def test_a_text_is_gsm7_only_when_every_character_has_a_gsm7_code(text, encoding):
    assert encoding_of(text) == encoding


def test_unit_sizes_count_extension_characters_and_surrogate_pairs_twice():
    assert unit_sizes("a€^\f|é", GSM7) == [1, 2, 2, 2, 2, 1]
    assert unit_sizes(f"aж{EMOJI}\uffff\U00010000", UCS2) == [1, 1, 2, 1, 2]
    assert unit_sizes("", GSM7) == []


@pytest.mark.parametrize("sizes, per_segment, segments", [
    ([], 153, 0), ([1], 153, 1), ([1] * 153, 153, 1), ([1] * 154, 153, 2), ([1] * 306, 153, 2),
    ([1] * 307, 153, 3), ([1] * 151 + [2], 153, 1), ([1] * 152 + [2], 153, 2), ([2] * 4, 3, 4),
    ([2, 1], 3, 1), ([1, 2, 1], 3, 2),
])
def test_pack_never_splits_a_character(sizes, per_segment, segments):
    assert pack(sizes, per_segment) == segments


@pytest.mark.parametrize("text, expected", [
    ("", SmsLength(GSM7, 0, 0)),
    ("a", SmsLength(GSM7, 1, 1)),
    ("a" * 160, SmsLength(GSM7, 160, 1)),
    ("a" * 161, SmsLength(GSM7, 161, 2)),
    ("a" * 306, SmsLength(GSM7, 306, 2)),
    ("a" * 307, SmsLength(GSM7, 307, 3)),
    ("€" * 80, SmsLength(GSM7, 160, 1)),
    ("€" * 81, SmsLength(GSM7, 162, 2)),
    ("a" * 152 + "€" + "a" * 152, SmsLength(GSM7, 306, 3)),  # the € moves whole to the second part
    ("ж" * 70, SmsLength(UCS2, 70, 1)),
    ("ж" * 71, SmsLength(UCS2, 71, 2)),
    ("ж" * 134, SmsLength(UCS2, 134, 2)),
    ("ж" * 135, SmsLength(UCS2, 135, 3)),
    (EMOJI * 35, SmsLength(UCS2, 70, 1)),
    (EMOJI * 36, SmsLength(UCS2, 72, 2)),
    ("ж" * 66 + EMOJI * 34, SmsLength(UCS2, 134, 3)),  # no surrogate pair split across two parts
    ("a" * 159 + "é", SmsLength(GSM7, 160, 1)),
    ("a" * 159 + "á", SmsLength(UCS2, 160, 3)),  # one character changes the whole text's encoding
])
def test_estimate(text, expected):
    assert estimate(text) == expected


def test_the_body_sent_is_the_text_without_surrounding_blank_space():
    assert sms_body("  Hello\nthere \n") == "Hello\nthere"
    assert sms_body("Hi\n") == "Hi"


def test_too_long_says_how_long_and_what_the_limit_is():
    assert too_long(SmsLength(GSM7, 612, 4), 4) is None
    assert too_long(SmsLength(GSM7, 10, 1), 4) is None
    assert too_long(SmsLength(GSM7, 613, 5), 4) == "this text is 5 SMS segments long, the limit is 4"
    assert too_long(SmsLength(UCS2, 400, 6), 4) == (
        "this text is 6 SMS segments long, the limit is 4 (it has a character outside the GSM-7 alphabet, "
        "an emoji say, so each segment holds only 67 characters)")


def test_check_returns_the_length_or_refuses_with_the_numbers():
    assert check("a" * 306, 2) == SmsLength(GSM7, 306, 2)
    assert check("", 1) == SmsLength(GSM7, 0, 0)
    with pytest.raises(MessageTooLong) as refused:
        check("a" * 307, 2)
    assert refused.value.length == SmsLength(GSM7, 307, 3)
    assert refused.value.cap == 2
    assert str(refused.value) == "this text is 3 SMS segments long, the limit is 2"
    assert isinstance(refused.value, ValueError)
