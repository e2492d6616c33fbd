"""Benchmarks of fare quoting on the packaged Harbin system (pytest-benchmark).

Run explicitly, never part of the default suite (see conftest.py):

    pytest bench/test_bench_fares.py --benchmark-columns=median,ops,rounds

`test_quote_many[core]`: `FareSystem.quote_many` on batches of 8,192 journeys through
the core's evaluator. Journeys are a fixed mix drawn with a fixed seed: 55% one bus
leg, 30% one metro leg (random origin and destination station, random time of day,
so peak and off-peak rules both match), 15% bus then metro. Riders are adults,
students and seniors in turn.

`test_quote_many[reference]`: the same journeys through the pure-Python reference
evaluator (one batch of 1,024, as an application without the core would price them).

`extra_info.journeys_per_s` = journeys per round / median round time; compare the
two rows of one run for the core's ratio.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from cardledger import IMPLEMENTATION
from cardledger.fares import LEG_DTYPE, FareSystem

SEED = 7
BATCH_JOURNEYS = 8192
REFERENCE_JOURNEYS = 1024
DAY0_US = int(dt.datetime(2026, 11, 23, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp() * 1_000_000)


def harbin_journeys(fs: FareSystem, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(legs, journey_ptr) for n journeys of the benchmark mix (module docstring)."""
    rng = np.random.default_rng(seed)
    t = fs.tables
    bus = [i for i, r in enumerate(t.route_ids) if r.startswith("bus_")]
    metro = [i for i, r in enumerate(t.route_ids) if r.startswith("metro_")]
    bus_stops = [i for i, s in enumerate(t.stop_ids) if s.startswith("bs_")]
    platforms = [i for i, s in enumerate(t.stop_ids) if s[0] == "m" and s[1].isdigit()]
    legs: list[tuple[int, int, int, int, int, int]] = []
    ptr = [0]
    for _ in range(n):
        start = DAY0_US + int(rng.integers(5 * 3600, 23 * 3600)) * 1_000_000
        kind = rng.random()
        if kind < 0.55 or kind >= 0.85:
            s = int(rng.choice(bus_stops))
            legs.append((int(rng.choice(bus)), s, s, 0, start, start))
            start += 600_000_000
        if kind >= 0.55:
            a, b = (int(x) for x in rng.choice(platforms, 2))
            legs.append((int(rng.choice(metro)), a, b, 0, start, start + 1_500_000_000))
        ptr.append(len(legs))
    return np.array(legs, dtype=LEG_DTYPE), np.array(ptr, dtype=np.int64)


@pytest.fixture(scope="module")
def harbin() -> FareSystem:
    return FareSystem.harbin()


@pytest.mark.parametrize("evaluator", ["core", "reference"])
def test_quote_many(benchmark, harbin: FareSystem, evaluator: str) -> None:
    """Journeys priced per second by one evaluator (module docstring)."""
    if evaluator == "core" and IMPLEMENTATION != "cython":
        pytest.skip("the Cython core is not in use")
    n = BATCH_JOURNEYS if evaluator == "core" else REFERENCE_JOURNEYS
    legs, ptr = harbin_journeys(harbin, n, SEED)
    cats = [harbin.rider_category_index(c) for c in ("adult", "student", "senior_65")]
    med = harbin.fare_media_index(None)
    rows = legs[["route", "from_stop", "to_stop", "departure_us", "arrival_us"]].tolist()
    ref = harbin._reference

    def core_round() -> None:
        for c in cats:
            status, _, _ = harbin._core.quote_many(legs, ptr, c, med)
            assert not status.any()

    def reference_round() -> None:
        for c in cats:
            for j in range(n):
                assert ref.quote(rows[ptr[j] : ptr[j + 1]], c, med)[0] == 0

    fn = core_round if evaluator == "core" else reference_round
    benchmark.pedantic(fn, rounds=20 if evaluator == "core" else 3, warmup_rounds=1)
    per_round = n * len(cats)
    benchmark.extra_info["journeys_per_round"] = per_round
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    if stats is not None and stats.stats.median > 0:
        benchmark.extra_info["journeys_per_s"] = per_round / stats.stats.median
