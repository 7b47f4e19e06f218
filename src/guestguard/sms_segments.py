"""How many SMS segments a text takes, before it is sent.

A text that fits one SMS goes as one; a longer one is split into parts
(segments), each carrying a header that joins them again on the phone, so
each part holds less. Carriers charge per segment, and a text of many
segments arrives late or mangled, so a text over the configured cap is
refused before it is queued (``notifications.sms.max_segments``).

* GSM-7 (3GPP TS 23.038), when every character is in its basic table or
  its extension table: 160 septets in one segment, 153 per segment when
  split. A character of the extension table (``^ { } \\ [ ~ ] | €`` and form
  feed) is an escape plus the character: two septets, never split across
  two segments.
* UCS-2 otherwise (one emoji or Cyrillic letter is enough): 70 UTF-16
  units in one segment, 67 per segment when split. A character outside the
  Basic Multilingual Plane (most emoji) is two units, a surrogate pair,
  never split across two segments.

The count is of the text as given: no provider-side "smart encoding" that
swaps curly quotes for straight ones is assumed, so the estimate is never
below what the carrier bills.
"""
from __future__ import annotations

from dataclasses import dataclass

GSM7, UCS2 = "GSM-7", "UCS-2"

# The basic table, less the escape (0x1B) which is not a character of text.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

# (units in a text of one segment, units per segment of a longer text)
CAPACITY = {GSM7: (160, 153), UCS2: (70, 67)}


@dataclass(frozen=True)
class SmsLength:
    """A text's encoding, its length in that encoding's units (septets or
    UTF-16 units) and the segments it is sent as."""

    encoding: str
    units: int
    segments: int


def encoding_of(text: str) -> str:
    """GSM-7 when every character has a GSM-7 code, else UCS-2."""
    for char in text:
        if char not in GSM7_BASIC and char not in GSM7_EXTENSION:
            return UCS2
    return GSM7


def unit_sizes(text: str, encoding: str) -> list[int]:
    """Each character's size in the encoding's units, in order."""
    if encoding == GSM7:
        return [2 if char in GSM7_EXTENSION else 1 for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def pack(sizes: list[int], per_segment: int) -> int:
    """Segments needed to carry characters of these sizes, a character
    never split between two segments."""
    segments, room = 0, 0
    for size in sizes:
        if size > room:
            segments += 1
            room = per_segment
        room -= size
    return segments


def estimate(text: str) -> SmsLength:
    """The segments ``text`` is sent as (0 for an empty text)."""
    encoding = encoding_of(text)
    sizes = unit_sizes(text, encoding)
    units = sum(sizes)
    single, per_segment = CAPACITY[encoding]
    if units <= single:
        return SmsLength(encoding, units, 1 if units else 0)
    return SmsLength(encoding, units, pack(sizes, per_segment))


def sms_body(text: str) -> str:
    """What is sent of a rendered text: the surrounding blank space (the
    renderer's final newline) would cost a character and show nothing."""
    return text.strip()


class MessageTooLong(ValueError):
    """A text over the segment cap; the message says so in the host's words."""

    def __init__(self, length: SmsLength, cap: int) -> None:
        super().__init__(too_long(length, cap))
        self.length = length
        self.cap = cap


def too_long(length: SmsLength, cap: int) -> str | None:
    """Why a text of this length is refused under ``cap``, or None."""
    if length.segments <= cap:
        return None
    words = f"this text is {length.segments} SMS segments long, the limit is {cap}"
    if length.encoding == UCS2:
        words += (" (it has a character outside the GSM-7 alphabet, an emoji say, so each segment "
                  "holds only 67 characters)")
    return words


def check(text: str, cap: int) -> SmsLength:
    """The text's length; MessageTooLong when it is over ``cap`` segments."""
    length = estimate(text)
    if too_long(length, cap) is not None:
        raise MessageTooLong(length, cap)
    return length
