"""A polling connection's schedule: how often, and optionally only within a daily window.

``poll_window: "06:00-22:00"`` with ``poll_timezone: Europe/Berlin`` polls from 06:00 until
22:00 local time, every day (daylight saving time applied); a window may cross midnight
(``"22:00-06:00"``). Outside it the poller waits until it opens (a change made meanwhile is
found by the first poll of the next window: the cursor is where the last one left it). Checked
when hub.yaml loads (:func:`parse_window`). The clock is given (:meth:`Window.wait_s`), so the
schedule is tested at any time of day without waiting for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_WINDOW = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]|24):([0-5][0-9])$")


@dataclass(frozen=True)
class Window:
    start: time
    end: time  # exclusive; time(0) with a start after it: until midnight
    zone: ZoneInfo

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # across midnight (or until 24:00)

    def wait_s(self, now: datetime) -> float:
        """0 while the window is open, else the seconds until it next opens (at least 1)."""
        if self.is_open(now):
            return 0.0
        local = now.astimezone(self.zone)
        opens = datetime.combine(local.date(), self.start, self.zone)
        if opens <= local:
            opens = datetime.combine(local.date() + timedelta(days=1), self.start, self.zone)
        # wall-clock arithmetic in the zone, then compared in UTC: a DST change in between
        # is counted
        return max(1.0, (opens.astimezone(UTC) - now.astimezone(UTC)).total_seconds())

    def __str__(self) -> str:
        end = "24:00" if self.end == time(0) else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end} {self.zone.key}"


def parse_window(text: str, zone: str | None) -> Window:
    """``"HH:MM-HH:MM"`` in the IANA time zone ``zone``; ValueError saying what is wrong."""
    m = _WINDOW.match(text.strip())
    if not m:
        raise ValueError(
            f"poll_window {text!r}: expected HH:MM-HH:MM on a 24-hour clock, e.g. 06:00-22:00"
        )
    if not zone:
        raise ValueError(
            "poll_window needs poll_timezone, the IANA time zone its hours are in "
            "(e.g. Europe/Berlin, or UTC)"
        )
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"poll_timezone {zone!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)"
        ) from None
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h2 == 24 and m2:
        raise ValueError(f"poll_window {text!r}: 24:00 is the latest end")
    start, end = time(h1, m1), time(h2 % 24, m2)
    if start == end:
        raise ValueError(f"poll_window {text!r} is empty: leave poll_window out to poll all day")
    return Window(start, end, tz)


__all__ = ["Window", "parse_window"]
