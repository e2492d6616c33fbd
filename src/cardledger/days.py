"""Service days: a local date in a time zone, from a configurable start of day.

Reconciliation works by service day: the union's finance office, the bank and the
transit operators agree on what happened on 2027-01-15 in Harbin. A transit day
often starts at 04:00, so the night's last buses belong to the day before. Times in
the ledger are µs since the epoch, UTC; a service day is the interval
[start_us, end_us) of local `day` at `day_start` to the next day at `day_start`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import numpy as np

#: The ledger's service time zone (the design card's).
SERVICE_TZ_DEFAULT = "Asia/Shanghai"
#: Where a service day starts, local time, unless said otherwise.
DAY_START_DEFAULT = "00:00"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
US = 1_000_000


def parse_day(text: str) -> dt.date:
    """A YYYY-MM-DD date (ValueError naming the text otherwise)."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date as YYYY-MM-DD") from None


def parse_day_start(text: str) -> dt.time:
    """An HH:MM local time of day (ValueError naming the text otherwise)."""
    try:
        t = dt.time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time of day as HH:MM") from None
    if t.tzinfo is not None:
        raise ValueError(f"{text!r}: a day's start is local time, without an offset")
    return t


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone `name` (ValueError naming it if unknown)."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None


def to_us(moment: dt.datetime) -> int:
    """µs since the epoch of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone: give an offset")
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def service_day(day: dt.date | str, tz: str = SERVICE_TZ_DEFAULT,
                day_start: dt.time | str = DAY_START_DEFAULT) -> tuple[int, int]:
    """[start_us, end_us) of service day `day` in zone `tz`, starting at `day_start`."""
    d = parse_day(day) if isinstance(day, str) else day
    t = parse_day_start(day_start) if isinstance(day_start, str) else day_start
    z = zone(tz)
    start = dt.datetime.combine(d, t, tzinfo=z)
    end = dt.datetime.combine(d + dt.timedelta(days=1), t, tzinfo=z)
    return to_us(start), to_us(end)


def iso_times(time_us: np.ndarray, tz: str = SERVICE_TZ_DEFAULT) -> list[str]:
    """ISO 8601 local times with their offset (µs precision) of µs-since-epoch times."""
    if not len(time_us):
        return []
    z = zone(tz)
    t = np.asarray(time_us, dtype=np.int64)
    lo = dt.datetime.fromtimestamp(int(t.min()) / US, tz=z).utcoffset()
    hi = dt.datetime.fromtimestamp(int(t.max()) / US, tz=z).utcoffset()
    if lo == hi and lo is not None:
        # One offset over the whole range (always so in Asia/Shanghai): vectorised.
        off_us = lo // dt.timedelta(microseconds=1)
        local = (t + off_us).astype("datetime64[us]")
        sign = "+" if off_us >= 0 else "-"
        minutes = abs(off_us) // (60 * US)
        suffix = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
        return [s + suffix for s in np.datetime_as_string(local, unit="us").tolist()]
    # The offset changes within the range (daylight saving elsewhere): one by one.
    return [(_EPOCH + dt.timedelta(microseconds=v)).astimezone(z).isoformat(timespec="microseconds")
            for v in t.tolist()]
