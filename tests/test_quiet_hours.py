"""The quiet-hours decision: a pure function of the moment, the number and
the event's zone."""
import datetime as dt

import pytest

from guestguard.notifications.quiet_hours import next_allowed, recipient_zone
from guestguard.settings import as_clock

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


DAY = {"start": dt.time(8, 0), "end": dt.time(21, 0)}
NEW_YORK = "+12125550123"
SYDNEY_MOBILE = "+61412345678"  # Australian mobiles span every Australian zone
LONDON = "+447700900123"  # phonenumbers knows no zone for UK mobiles


def utc(*parts):
    return dt.datetime(*parts, tzinfo=dt.UTC)


@pytest.mark.parametrize("now, expected", [
    (utc(2026, 5, 1, 12, 0), None),                      # 08:00 EDT: the first allowed minute
    (utc(2026, 5, 1, 11, 59), utc(2026, 5, 1, 12, 0)),    # 07:59: wait one minute
    (utc(2026, 5, 2, 0, 59), None),                       # 20:59 EDT
    (utc(2026, 5, 2, 1, 0), utc(2026, 5, 2, 12, 0)),      # 21:00: tomorrow 08:00
    (utc(2026, 5, 2, 4, 30), utc(2026, 5, 2, 12, 0)),     # 00:30 local, already the next day
])
def test_the_window_in_the_numbers_zone(now, expected):
    assert next_allowed(now, NEW_YORK, "Europe/Paris", **DAY) == expected


def test_the_morning_after_a_change_of_clocks_is_in_the_new_offset():
    # New York moves to EDT on 2026-03-08: 22:00 EST on the 7th waits for 08:00 EDT.
    assert next_allowed(utc(2026, 3, 8, 3, 0), NEW_YORK, None, **DAY) == utc(2026, 3, 8, 12, 0)


@pytest.mark.parametrize("phone, event_zone, zone", [
    (NEW_YORK, "Europe/Paris", "America/New_York"),        # one zone: the number's
    (SYDNEY_MOBILE, "Australia/Perth", "Australia/Perth"),  # several, the event's among them
    (SYDNEY_MOBILE, "Europe/Paris", "Europe/Paris"),        # several, the event's not among them
    (LONDON, "Europe/London", "Europe/London"),             # none known: the event's
    ("not a number", "Asia/Tokyo", "Asia/Tokyo"),
    (LONDON, None, "UTC"),                                  # nothing to go on
    (LONDON, "Not/AZone", "UTC"),
])
def test_the_recipients_zone(phone, event_zone, zone):
    assert recipient_zone(phone, event_zone).key == zone


def test_a_window_across_midnight():
    night_shift = {"start": dt.time(22, 0), "end": dt.time(6, 0)}
    assert next_allowed(utc(2026, 5, 1, 23, 0), LONDON, None, **night_shift) is None
    assert next_allowed(utc(2026, 5, 1, 5, 59), LONDON, None, **night_shift) is None
    assert next_allowed(utc(2026, 5, 1, 12, 0), LONDON, None, **night_shift) == utc(2026, 5, 1, 22, 0)


def test_an_empty_window_means_no_quiet_hours():
    assert next_allowed(utc(2026, 5, 1, 3, 0), NEW_YORK, None, start=dt.time(8), end=dt.time(8)) is None


@pytest.mark.parametrize("bad", ["8", "8:0", "24:00", "07:60", "ab:cd", "", "08:00:00"])
def test_the_settings_read_clock_times_strictly(bad):
    with pytest.raises(ValueError, match="time of day"):
        as_clock(bad)
    assert as_clock(" 7:05 ") == dt.time(7, 5)
