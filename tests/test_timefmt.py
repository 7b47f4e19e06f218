"""How times read: one module for the host's pages, the guest's pages, emails
and text messages."""
import datetime as dt

import jinja2
import pytest

from guestguard import timefmt
from guestguard.notifications.rendering import MessageRenderer
from guestguard.web import default_templates_dir

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


UTC = dt.UTC


def at(*parts):
    return dt.datetime(*parts, tzinfo=UTC)


def test_london_switches_from_gmt_to_bst():
    # Clocks go forward at 01:00 UTC on the last Sunday of March 2030.
    before, after = at(2030, 3, 31, 0, 30), at(2030, 3, 31, 1, 30)
    assert timefmt.when(before, "Europe/London") == "Sun 31 Mar 2030, 00:30 GMT"
    assert timefmt.when(after, "Europe/London") == "Sun 31 Mar 2030, 02:30 BST"
    assert timefmt.long_when(before, "Europe/London") == "Sunday 31 March 2030, 00:30 GMT"
    assert timefmt.long_when(after, "Europe/London") == "Sunday 31 March 2030, 02:30 BST"
    # Across the switch the zone is named at both ends.
    assert (timefmt.long_span(before, after, "Europe/London")
            == "Sunday 31 March 2030, 00:30 GMT – 02:30 BST")
    assert timefmt.span(before, after, "Europe/London") == "Sun 31 Mar 2030, 00:30 GMT – 02:30"


def test_the_two_voices_of_one_evening():
    starts, ends = at(2030, 6, 21, 18), at(2030, 6, 21, 22, 30)
    assert timefmt.span(starts, ends, "Europe/London") == "Fri 21 Jun 2030, 19:00 BST – 23:30"
    assert timefmt.long_span(starts, ends, "Europe/London") == "Friday 21 June 2030, 19:00 – 23:30 BST"
    assert timefmt.text_when(starts, "Europe/London") == "Fri 21 Jun 2030, 19:00 BST"
    assert timefmt.short_when(starts, "Europe/London") == "Fri 21 Jun, 19:00"
    assert timefmt.day_month(starts, "Europe/London") == "21 Jun"
    assert timefmt.form_value(starts, "Europe/London") == "2030-06-21T19:00"
    # Over midnight, both dates.
    late = at(2030, 6, 22, 1)
    assert timefmt.span(starts, late, "Europe/London") == "Fri 21 Jun 2030, 19:00 BST – Sat 22 Jun 2030, 02:00 BST"
    assert (timefmt.long_span(starts, late, "Europe/London")
            == "Friday 21 June 2030, 19:00 BST – Saturday 22 June 2030, 02:00 BST")


@pytest.mark.parametrize("zone, twelve", [
    ("America/New_York", True), ("America/Los_Angeles", True), ("America/Toronto", True),
    ("Australia/Sydney", True), ("Asia/Kolkata", True), ("Asia/Seoul", True),
    ("Europe/London", False), ("Europe/Dublin", False), ("Europe/Berlin", False), ("Europe/Paris", False),
    ("Asia/Tokyo", False), ("America/Sao_Paulo", False), ("UTC", False), ("Etc/GMT+3", False),
])
def test_each_event_reads_on_the_clock_of_its_zones_country(zone, twelve):
    evening = timefmt.in_zone(at(2030, 6, 21, 18, 5), zone)
    wanted = timefmt.clock(evening) if twelve else timefmt.clock24(evening)
    assert timefmt.twelve_hour(zone) is twelve
    assert timefmt.hour_cycle(zone) == ("h12" if twelve else "h23")
    # The same clock in every voice: the host's pages, the guest's, text messages, the feed.
    for formatter in (timefmt.when, timefmt.long_when, timefmt.text_when, timefmt.short_when):
        assert f", {wanted}" in formatter(at(2030, 6, 21, 18, 5), zone), formatter.__name__
    assert timefmt.time_of_day(evening) == wanted


def test_the_twelve_hour_countries_are_those_cldr_says_through_babel():
    """Every country of the zone database, read as babel reads CLDR: the
    short time format of the country's main language has an "h" or "K"
    hour outside quoted text. A babel upgrade that changes CLDR's answer
    fails here until the table follows."""
    from babel import Locale, UnknownLocaleError

    def twelve(country: str) -> bool:
        try:
            pattern = Locale.parse(f"und_{country}").time_formats["short"].pattern
        except (UnknownLocaleError, ValueError, KeyError):
            return False
        fields = "".join(pattern.split("'")[::2])
        return "h" in fields or "K" in fields

    countries = set(timefmt.zone_countries().values())
    assert {country for country in countries if twelve(country)} == timefmt.TWELVE_HOUR_COUNTRIES
    assert countries >= timefmt.TWELVE_HOUR_COUNTRIES


def test_one_evening_on_both_clocks():
    starts, ends = at(2030, 6, 21, 23), at(2030, 6, 22, 3, 30)
    assert timefmt.span(starts, ends, "America/New_York") == "Fri 21 Jun 2030, 7:00 pm EDT – 11:30 pm"
    assert timefmt.long_span(starts, ends, "America/New_York") == "Friday 21 June 2030, 7:00 pm – 11:30 pm EDT"
    assert timefmt.span(starts, ends, "Europe/Berlin") == "Sat 22 Jun 2030, 01:00 CEST – 05:30"
    assert timefmt.long_span(starts, ends, "Europe/Berlin") == "Saturday 22 June 2030, 01:00 – 05:30 CEST"
    # Midnight and noon on the 12-hour clock.
    assert timefmt.when(at(2030, 6, 21, 4), "America/New_York") == "Fri 21 Jun 2030, 12:00 am EDT"
    assert timefmt.when(at(2030, 6, 21, 16), "America/New_York") == "Fri 21 Jun 2030, 12:00 pm EDT"
    # A moment with a bare offset (no zone name, no country) reads on the 24-hour clock.
    assert timefmt.time_of_day(dt.datetime(2030, 6, 21, 19, tzinfo=dt.timezone(dt.timedelta(hours=-4)))) == "19:00"


def test_zones_with_abbreviations_keep_them():
    winter = at(2030, 1, 15, 18)
    assert timefmt.when(winter, "Europe/Paris") == "Tue 15 Jan 2030, 19:00 CET"
    assert timefmt.when(winter, "America/New_York") == "Tue 15 Jan 2030, 1:00 pm EST"


def test_sao_paulo_reads_as_an_offset_not_minus_03():
    starts = at(2030, 6, 21, 22)
    assert timefmt.zone_label(timefmt.in_zone(starts, "America/Sao_Paulo")) == "UTC\u221203:00"
    assert timefmt.when(starts, "America/Sao_Paulo") == "Fri 21 Jun 2030, 19:00 UTC\u221203:00"
    assert timefmt.long_when(starts, "America/Sao_Paulo") == "Friday 21 June 2030, 19:00 UTC\u221203:00"
    # Text messages keep to ASCII (the GSM alphabet has no U+2212).
    assert timefmt.text_when(starts, "America/Sao_Paulo") == "Fri 21 Jun 2030, 19:00 UTC-03:00"


def test_half_hour_offsets():
    starts = at(2030, 6, 21, 13, 30)
    # Kolkata has a name, IST, five and a half hours ahead (and India a 12-hour clock).
    assert timefmt.when(starts, "Asia/Kolkata") == "Fri 21 Jun 2030, 7:00 pm IST"
    assert timefmt.long_when(at(2030, 6, 21, 19), "Asia/Kolkata") == "Saturday 22 June 2030, 12:30 am IST"
    # Colombo, at the same offset, has only the number.
    assert timefmt.when(starts, "Asia/Colombo") == "Fri 21 Jun 2030, 19:00 UTC+05:30"
    assert timefmt.offset(timefmt.in_zone(starts, "Asia/Kathmandu")) == "UTC+05:45"


def test_utc():
    moment = at(2030, 6, 21, 19, 5, 9)
    assert timefmt.when(moment, "UTC") == "Fri 21 Jun 2030, 19:05 UTC"
    assert timefmt.long_when(moment, "UTC") == "Friday 21 June 2030, 19:05 UTC"
    assert timefmt.zone_label(timefmt.in_zone(moment, "Etc/GMT+3")) == "UTC\u221203:00"
    assert timefmt.date(moment) == "21 Jun 2030"
    assert timefmt.full_date(dt.date(2026, 11, 1)) == "1 November 2026"
    assert timefmt.utc_minute(moment) == "2030-06-21 19:05 UTC"
    assert timefmt.utc_second(moment) == "2030-06-21 19:05:09 UTC"
    assert timefmt.utc_when(moment) == "21 Jun 2030, 19:05 UTC"
    # Shown in UTC whatever zone the value carries.
    assert timefmt.utc_minute(timefmt.in_zone(moment, "Asia/Tokyo")) == "2030-06-21 19:05 UTC"


def test_none_reads_as_nothing():
    for formatter in (timefmt.when, timefmt.short_when, timefmt.day_month, timefmt.form_value,
                      timefmt.long_when, timefmt.text_when):
        assert formatter(None, "Europe/London") == ""
    assert timefmt.in_zone(None, "Europe/London") is None
    assert timefmt.span(at(2030, 6, 21, 18), None, "Europe/London") == "Fri 21 Jun 2030, 19:00 BST"
    assert timefmt.long_span(at(2030, 6, 21, 18), None, "Europe/London") == "Friday 21 June 2030, 19:00 BST"
    for formatter in (timefmt.date, timefmt.full_date, timefmt.utc_minute, timefmt.utc_second,
                      timefmt.utc_when, timefmt.ago):
        assert formatter(None) == ""


def test_an_unknown_zone_is_refused_never_utc():
    # The machine's zone files hold more than zones: its own clock's zone,
    # copies under posix/ and right/, and a placeholder. Only IANA names count.
    for name in ("Mars/Olympus_Mons", "", "../etc/passwd", "utc ", "localtime", "posixrules", "Factory",
                 "posix/Europe/Paris", "right/UTC", "zone.tab", "Europe", "europe/paris"):
        with pytest.raises(timefmt.UnknownZone):
            timefmt.when(at(2030, 6, 21, 18), name)
    assert issubclass(timefmt.UnknownZone, ValueError)


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="without a zone"):
        timefmt.when(dt.datetime(2030, 6, 21, 18), "UTC")


def test_ago():
    now = at(2030, 6, 21, 12)
    assert timefmt.ago(now - dt.timedelta(seconds=59), now) == "just now"
    assert timefmt.ago(now + dt.timedelta(minutes=5), now) == "just now"  # a clock ahead
    assert timefmt.ago(now - dt.timedelta(minutes=1), now) == "1 minute ago"
    assert timefmt.ago(now - dt.timedelta(hours=3, minutes=59), now) == "3 hours ago"
    assert timefmt.ago(now - dt.timedelta(days=2), now) == "2 days ago"


def test_datetime_local_values_are_wall_clock_in_the_zone():
    moment = timefmt.from_form("2030-06-21T19:00", "Europe/London")
    assert moment.utcoffset() == dt.timedelta(hours=1) and moment.astimezone(UTC) == at(2030, 6, 21, 18)
    assert timefmt.from_form("2030-06-21T19:00+00:00", "Europe/London") == at(2030, 6, 21, 19)
    with pytest.raises(ValueError, match="isoformat"):
        timefmt.from_form("21/06/2030", "Europe/London")


def test_filters_read_datetimes_and_stored_iso_strings():
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=True)
    timefmt.add_filters(env)
    render = lambda source, **context: env.from_string(source).render(**context)  # noqa: E731
    assert render("{{ t|when('Europe/London') }}", t=at(2030, 6, 21, 18)) == "Fri 21 Jun 2030, 19:00 BST"
    assert (render("{{ s|long_span(e, z) }}", s="2030-06-21T19:00:00+01:00", e="2030-06-21T23:30:00+01:00",
                   z="Europe/London") == "Friday 21 June 2030, 19:00 – 23:30 BST")
    assert (render("{{ s|long_span(e, z) }}", s="2030-06-21T19:00:00-04:00", e="2030-06-21T23:30:00-04:00",
                   z="America/New_York") == "Friday 21 June 2030, 7:00 pm – 11:30 pm EDT")
    assert render("{{ s|long_span(none, 'UTC') }}", s="2030-06-21T19:00:00+00:00") == "Friday 21 June 2030, 19:00 UTC"
    assert render("{{ z|hour_cycle }}", z="America/New_York") == "h12"
    assert render("{{ none|when('UTC') }}") == ""
    with pytest.raises(ValueError, match="without a zone"):
        render("{{ '2030-06-21T19:00:00'|when('UTC') }}")  # no offset: refused


def test_the_message_templates_word_times_in_the_events_zone():
    renderer = MessageRenderer(default_templates_dir())
    context = {"guest_name": "Grace", "event_name": "Festa", "timezone": "America/Sao_Paulo",
               "starts_at": "2030-06-21T19:00:00-03:00", "ends_at": "2030-06-21T23:00:00-03:00",
               "rsvp_deadline": "2030-06-01T12:00:00-03:00", "venue": "", "description": "",
               "host_message": "", "plus_ones_allowed": "0", "invitation_url": "https://gg.example/access/x",
               "unsubscribe_url": "https://gg.example/unsubscribe/x", "host_name": "", "theme_colour": "",
               "theme_ink": "", "cover_url": None, "map_url": None}
    email = renderer.render("email", "invitation", context)
    assert "When: Friday 21 June 2030, 19:00 – 23:00 UTC\u221203:00" in email.text
    assert "Please reply by: Saturday 1 June 2030, 12:00 UTC\u221203:00" in email.text
    assert "19:00 – 23:00 UTC\u221203:00" in email.html
    sms = renderer.render("sms", "invitation", context)
    assert "on Fri 21 Jun 2030, 19:00 UTC-03:00." in sms.text
    # The same message for an event in New York reads on its 12-hour clock.
    context |= {"timezone": "America/New_York", "starts_at": "2030-06-21T19:00:00-04:00",
                "ends_at": "2030-06-21T23:00:00-04:00", "rsvp_deadline": "2030-06-01T12:00:00-04:00"}
    email = renderer.render("email", "invitation", context)
    assert "When: Friday 21 June 2030, 7:00 pm – 11:00 pm EDT" in email.text
    assert "Please reply by: Saturday 1 June 2030, 12:00 pm EDT" in email.text
    assert "on Fri 21 Jun 2030, 7:00 pm EDT." in renderer.render("sms", "invitation", context).text


def test_every_iana_zone_name_is_accepted():
    names = timefmt.iana_zone_names()
    assert {"Europe/London", "America/Sao_Paulo", "UTC", "Etc/GMT+5", "Asia/Kolkata"} <= names
    assert len(names) > 500
    for name in names:
        assert timefmt.when(at(2030, 6, 21, 18), name)
