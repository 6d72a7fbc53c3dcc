"""Cron arithmetic in the schedule's time zone: DST gaps and repeats, latest tick."""

from datetime import UTC, datetime

from apps.scheduler import cron

BERLIN = "Europe/Berlin"


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_daily_0200_across_spring_forward_berlin_2027():
    # 2027-03-28: 02:00 CET jumps to 03:00 CEST; 02:00 does not exist that day
    ticks = cron.next_ticks("0 2 * * *", BERLIN, now=utc(2027, 3, 26, 12), count=4)
    assert [t.isoformat() for t in ticks] == [
        "2027-03-27T02:00:00+01:00",
        "2027-03-28T03:00:00+02:00",  # the skipped 02:00 fires right after the gap
        "2027-03-29T02:00:00+02:00",
        "2027-03-30T02:00:00+02:00",
    ]
    assert [t.astimezone(UTC).hour for t in ticks] == [1, 1, 0, 0]


def test_daily_0230_across_fall_back_fires_once():
    # 2027-10-31: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice, the schedule fires once
    ticks = cron.next_ticks("30 2 * * *", BERLIN, now=utc(2027, 10, 29, 12), count=4)
    assert [t.isoformat() for t in ticks] == [
        "2027-10-30T02:30:00+02:00",
        "2027-10-31T02:30:00+02:00",
        "2027-11-01T02:30:00+01:00",
        "2027-11-02T02:30:00+01:00",
    ]


def test_every_15_minutes_through_the_gap_has_no_duplicates():
    ticks = cron.next_ticks("*/15 * * * *", BERLIN, now=utc(2027, 3, 28, 0, 40), count=4)
    assert [t.isoformat() for t in ticks] == [
        "2027-03-28T01:45:00+01:00",
        "2027-03-28T03:00:00+02:00",
        "2027-03-28T03:15:00+02:00",
        "2027-03-28T03:30:00+02:00",
    ]


def test_latest_tick_in_repeated_hour_is_the_first_occurrence():
    # 01:40 UTC is 02:40 CET, the second pass of 02:xx; the 02:30 tick already happened in the first pass
    tick = cron.latest_tick("30 2 * * *", BERLIN, now=utc(2027, 10, 31, 1, 40))
    assert tick.isoformat() == "2027-10-31T02:30:00+02:00"


def test_latest_tick_and_key():
    tick = cron.latest_tick("*/5 * * * *", "UTC", now=utc(2026, 1, 1, 10, 7, 30))
    assert tick == utc(2026, 1, 1, 10, 5)
    assert cron.tick_key(tick) == "2026-01-01T10:05:00Z"
    assert cron.latest_tick("0 9 * * *", "America/New_York", now=utc(2026, 7, 1, 14)) == utc(2026, 7, 1, 13)


def test_validation_messages():
    assert cron.cron_error("*/5 * * * *") is None
    assert "5 fields" in cron.cron_error("* * * *")
    assert "5 fields" in cron.cron_error("0 * * * * *")
    assert cron.cron_error("61 * * * *")
    assert cron.cron_error("0 0 * * 1#2")  # beat cannot run it
    assert cron.timezone_error("Europe/Berlin") is None
    assert cron.timezone_error("Mars/Olympus")
