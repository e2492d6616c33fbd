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
    return iso_times_bytes(time_us, tz).astype("U32").tolist()


def iso_times_bytes(time_us: np.ndarray, tz: str = SERVICE_TZ_DEFAULT) -> np.ndarray:
    """`iso_times` as an array of ASCII bytes (dtype S32), for writers that take them."""
    z = zone(tz)
    t = np.asarray(time_us, dtype=np.int64)
    day_us = 86_400 * US
    days = np.floor_divide(t, day_us)
    uniq, inverse = np.unique(days, return_inverse=True)
    # The zone's offset on each UTC day the times fall on; a day whose offset changes
    # (a daylight-saving switch) is formatted one time at a time.
    offsets = np.empty(len(uniq), dtype=np.int64)
    for i, d in enumerate(uniq.tolist()):
        first = dt.datetime.fromtimestamp(d * 86_400, tz=z).utcoffset()
        last = dt.datetime.fromtimestamp(d * 86_400 + 86_399, tz=z).utcoffset()
        offsets[i] = first // dt.timedelta(microseconds=1) if first == last else _MIXED
    per = offsets[inverse]
    out = np.empty(len(t), dtype="S32")
    for off in np.unique(per).tolist():
        pick = per == off
        if off == _MIXED:
            out[pick] = [(_EPOCH + dt.timedelta(microseconds=v)).astimezone(z).isoformat(timespec="microseconds")
                         .encode() for v in t[pick].tolist()]
        else:
            out[pick] = iso_bytes(t[pick], off)
    return out


#: An offset no zone has: marks a day whose offset changes within it.
_MIXED = -(1 << 62)


#: Bytes of one ISO 8601 local time as `iso_bytes` writes it: 2027-01-15T08:03:11.000000+08:00.
ISO_BYTES = 32
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


def iso_bytes(time_us: np.ndarray, offset_us: int) -> np.ndarray:
    """ISO 8601 local times (dtype S32) of µs-since-epoch times in a zone whose offset
    from UTC is `offset_us` throughout: the date from numpy's calendar, one string per
    distinct day, the time of day and the offset written digit by digit (an export
    formats millions of these)."""
    local = np.asarray(time_us, dtype=np.int64) + offset_us
    day_us = 86_400 * US
    days = np.floor_divide(local, day_us)
    of_day = local - days * day_us
    out = np.empty((len(local), ISO_BYTES), dtype=np.uint8)
    uniq, inverse = np.unique(days, return_inverse=True)
    dates = np.datetime_as_string(uniq.astype("datetime64[D]")).astype("S10").view(np.uint8).reshape(-1, 10)
    out[:, :10] = dates[inverse]
    out[:, 10] = ord("T")
    fields = ((of_day // (3600 * US), 11), ((of_day // (60 * US)) % 60, 14), ((of_day // US) % 60, 17))
    for value, at in fields:
        out[:, at] = _DIGITS[value // 10]
        out[:, at + 1] = _DIGITS[value % 10]
    out[:, 13] = out[:, 16] = ord(":")
    out[:, 19] = ord(".")
    frac = of_day % US
    for k in range(6):
        out[:, 25 - k] = _DIGITS[frac % 10]
        frac = frac // 10
    minutes = abs(offset_us) // (60 * US)
    suffix = f"{'+' if offset_us >= 0 else '-'}{minutes // 60:02d}:{minutes % 60:02d}".encode()
    out[:, 26:] = np.frombuffer(suffix, dtype=np.uint8)
    return out.view("S32").reshape(-1)
