"""Per-connection schedules (hub/schedule.py, connectors.PollingOptions, hub.polling): a poll
interval and an optional daily window in an explicit time zone, checked when hub.yaml loads.
The clock is injected: no test waits for a time of day, and nothing is timed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.config import load_config
from hub.errors import ConfigError
from hub.polling import CursorStore, Poller
from hub.schedule import parse_window
from tests.support.feed import Feed, FeedOptions, FeedServer, feed_config

from .support.harness import HubFactory

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def test_a_window_is_open_between_its_hours_in_its_zone() -> None:
    day = parse_window("06:00-22:00", "Europe/Berlin")
    assert day.is_open(at("2026-12-06T06:00"))
    assert day.is_open(at("2026-12-06T21:59"))
    assert not day.is_open(at("2026-12-06T22:00"))  # the end is not in it
    assert not day.is_open(at("2026-12-06T05:59"))
    # 05:30 UTC is 06:30 in Berlin in winter
    assert day.is_open(datetime(2026, 12, 6, 5, 30, tzinfo=UTC))
    assert day.wait_s(at("2026-12-06T12:00")) == 0
    assert day.wait_s(at("2026-12-06T22:00")) == 8 * 3600  # until 06:00 the next morning
    assert day.wait_s(at("2026-12-06T05:59")) == 60
    assert str(day) == "06:00-22:00 Europe/Berlin"


def test_a_window_across_midnight_and_until_midnight() -> None:
    night = parse_window("22:00-06:00", "UTC")
    utc = ZoneInfo("UTC")
    assert night.is_open(at("2026-12-06T23:00", utc)) and night.is_open(at("2026-12-07T05:00", utc))
    assert not night.is_open(at("2026-12-06T12:00", utc))
    assert night.wait_s(at("2026-12-06T12:00", utc)) == 10 * 3600
    evening = parse_window("18:00-24:00", "UTC")
    assert evening.is_open(at("2026-12-06T23:59", utc))
    assert not evening.is_open(at("2026-12-07T00:00", utc))


def test_the_wait_counts_a_daylight_saving_change() -> None:
    day = parse_window("06:00-22:00", "Europe/Berlin")
    # the night of 28 to 29 March 2026 is an hour short in Berlin: 22:00 -> 06:00 is 7 hours
    assert day.wait_s(at("2026-03-28T22:00")) == 7 * 3600
    # and the night of 24 to 25 October an hour long
    assert day.wait_s(at("2026-10-24T22:00")) == 9 * 3600


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"poll_window": "6-22", "poll_timezone": "UTC"}, "expected HH:MM-HH:MM"),
        ({"poll_window": "06:00-25:00", "poll_timezone": "UTC"}, "expected HH:MM-HH:MM"),
        ({"poll_window": "06:00-06:00", "poll_timezone": "UTC"}, "is empty"),
        ({"poll_window": "06:00-24:30", "poll_timezone": "UTC"}, "24:00 is the latest end"),
        ({"poll_window": "06:00-22:00"}, "poll_window needs poll_timezone"),
        ({"poll_window": "06:00-22:00", "poll_timezone": "Mars/Olympus"}, "not an IANA"),
        ({"poll_timezone": "UTC"}, "without poll_window"),
        ({"poll_interval_s": 0}, "greater than 0"),
    ],
)
def test_a_bad_schedule_is_refused_when_hub_yaml_loads(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    lines = "".join(f"      {k}: {v!r}\n" for k, v in options.items()).replace("'", '"')
    text = feed_config("http://127.0.0.1:1/changes") + lines
    path = tmp_path / "hub.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert message in str(refused.value)
    assert "hub.yaml" in str(refused.value)  # it names the file (and line)


def test_a_good_schedule_loads(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        feed_config("http://127.0.0.1:1/changes", interval_s=30)
        + '      poll_window: "06:00-22:00"\n      poll_timezone: Europe/Berlin\n'
    )
    options = load_config(path).connections["feed"].options
    assert isinstance(options, FeedOptions)
    assert str(options.window()) == "06:00-22:00 Europe/Berlin"


async def test_the_poller_polls_only_within_its_window(hubs: HubFactory) -> None:
    async with FeedServer() as feed, FeedServer() as other:
        feed.add(3)
        hub = await hubs.start(config=feed_config(other.url, interval_s=30))  # its own poller
        options = FeedOptions.model_validate(
            {
                "url": feed.url,
                "poll_interval_s": 30,
                "poll_window": "06:00-22:00",
                "poll_timezone": "Europe/Berlin",
            }
        )
        now = [at("2026-12-06T23:30")]
        poller = Poller(hub, "scheduled", Feed("scheduled", options), clock=lambda: now[0])
        try:
            # outside the window: nothing asked, and the wait is until it opens (in steps of
            # at most a minute or an interval, so a stop is seen)
            assert await poller.step() == 60
            assert feed.polls == [] and poller.polls == 0
            now[0] = at("2026-12-07T05:59:30")
            assert await poller.step() == 30  # 30 s before 06:00
            assert feed.polls == []
            # inside: polled, page after page, then the interval
            now[0] = at("2026-12-07T06:00")
            assert await poller.step() == 0  # a full page: on at once
            assert await poller.step() == 30
            assert feed.polls == ["0", "2"]
            assert await CursorStore(hub.db).cursor("scheduled") == "3"
            now[0] = at("2026-12-07T22:00")
            assert await poller.step() == 60
            assert feed.polls == ["0", "2"]  # closed again
        finally:
            await poller.stop()
