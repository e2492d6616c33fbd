"""Time zone rules of a fare system: computed from the host's tz database once, then
kept with the system.

A timeframe is matched in the stop's local time, so a tap's fare depends on the UTC
offset in force at its event time. Those offsets come from the IANA tz database, which
the host updates on its own schedule (a country drops daylight saving time, and every
later instant moves). A ledger replays its journal on open and checks that every tap
rates to the fare it recorded; rating with rules that changed under it would refuse to
open a sound ledger, or rate tomorrow's taps differently on two gateways.

So a fare system records the offsets it was compiled with, as `TIMEZONES_FILE` beside
its feed files (`FareSystem.files`, persisted by `to_bytes`), and a system rebuilt from
those bytes uses the recorded offsets, never the host's. A system built from a feed
without the file computes them from the host (`zoneinfo`, or the `tzdata` package where
the host has no tz database) and records them.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import zoneinfo
from collections.abc import Mapping

from .errors import FeedError, Problem

#: The file, beside a fare system's feed files, that holds its zones' UTC offsets.
TIMEZONES_FILE = "cardledger-timezones.json"
#: Its format version.
TIMEZONES_FORMAT = 1
#: Offsets are computed for instants in [TZ_FIRST_YEAR, TZ_LAST_YEAR); outside them the
#: nearest computed offset holds.
TZ_FIRST_YEAR = 1970
TZ_LAST_YEAR = 2100
#: The start of the first offset of every zone: in force before the table.
INSTANT_MIN_US = -(1 << 63)
#: No zone is further than this from UTC (the largest real offset is +14:00).
OFFSET_ABS_MAX_S = 18 * 3600

_US_PER_S = 1_000_000
_S_PER_DAY = 86_400

#: A zone's offsets: (from_us, offset_s) pairs as two tuples, from_us increasing.
Transitions = tuple[tuple[int, ...], tuple[int, ...]]


@functools.lru_cache(maxsize=64)
def tz_transitions(name: str) -> Transitions:
    """(from_us, offset_s) pairs of a timezone's UTC offset changes, from the host's tz
    database.

    The first pair starts at INSTANT_MIN_US (in force before the table). Found by
    stepping day by day through TZ_FIRST_YEAR..TZ_LAST_YEAR and bisecting each change
    to the second: zoneinfo offers no transition list.
    """
    zone = zoneinfo.ZoneInfo(name)

    def offset(ts: int) -> int:
        off = dt.datetime.fromtimestamp(ts, zone).utcoffset()
        assert off is not None
        return int(off.total_seconds())

    t0 = int(dt.datetime(TZ_FIRST_YEAR, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    t1 = int(dt.datetime(TZ_LAST_YEAR, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    froms = [INSTANT_MIN_US]
    offs = [offset(t0)]
    ts = t0
    cur = offs[0]
    while ts < t1:
        nxt = ts + _S_PER_DAY
        o = offset(nxt)
        if o != cur:
            lo, hi = ts, nxt  # offset(lo) == cur, offset(hi) == o
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(mid) == cur:
                    lo = mid
                else:
                    hi = mid
            froms.append(hi * _US_PER_S)
            offs.append(o)
            cur = o
        ts = nxt
    return tuple(froms), tuple(offs)


def encode_timezones(zones: Mapping[str, Transitions]) -> bytes:
    """The TIMEZONES_FILE bytes for these zones (deterministic: sorted, compact)."""
    doc = {
        "format": TIMEZONES_FORMAT,
        "zones": {name: [list(froms), list(offs)] for name, (froms, offs) in sorted(zones.items())},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def decode_timezones(raw: bytes) -> dict[str, Transitions]:
    """The zones of a TIMEZONES_FILE; FeedError naming the file if it is malformed."""

    def bad(message: str) -> FeedError:
        return FeedError([Problem(TIMEZONES_FILE, 0, None, message)])

    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != TIMEZONES_FORMAT or not isinstance(doc.get("zones"), dict):
        raise bad(f'expected {{"format": {TIMEZONES_FORMAT}, "zones": {{...}}}}')
    zones: dict[str, Transitions] = {}
    for name, pair in doc["zones"].items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(c, list) for c in pair)):
            raise bad(f"zone {name!r}: expected [[from_us, ...], [offset_s, ...]]")
        froms, offs = pair
        if not froms or len(froms) != len(offs):
            raise bad(f"zone {name!r}: the two lists must be non-empty and of one length")
        if not all(type(v) is int for v in froms + offs):
            raise bad(f"zone {name!r}: every value must be an integer")
        if froms[0] != INSTANT_MIN_US or any(a >= b for a, b in itertools.pairwise(froms)):
            raise bad(f"zone {name!r}: from_us must start at {INSTANT_MIN_US} and increase")
        if any(abs(o) > OFFSET_ABS_MAX_S for o in offs):
            raise bad(f"zone {name!r}: an offset is beyond {OFFSET_ABS_MAX_S} s")
        zones[name] = (tuple(froms), tuple(offs))
    return zones
