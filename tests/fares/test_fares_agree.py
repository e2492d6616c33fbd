"""The core's fare evaluator agrees with the reference evaluator, result for result.

`cardledger.engine.spec.fares.ReferenceEvaluator` is the executable specification of
`cext/fares.pxi`. Here both price the same journeys over the same compiled tables,
and every (status, amount, discounts) must be identical:

* random but valid feeds built directly from the model dataclasses (agencies in one
  timezone with and without DST, networks both ways a feed may give them, stations
  and platforms, areas inherited and overridden, timeframes over calendars with
  exceptions, rider categories with defaults, fare media, products, leg rules with
  and without the rule_priority column, transfer rules, join rules), and random
  journeys on them around DST changes, local midnights and timeframe edges;
* the packaged Harbin fare system, with random journeys;
* the statuses that do not depend on the feed (no legs, too many legs, unknown
  route or stop).

The whole module is skipped when the core is not in use: there is nothing to
compare then.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import zoneinfo

import numpy as np
import pytest
from helpers import HYPOTHESIS_EXAMPLES
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cardledger.engine.select import IMPLEMENTATION

if IMPLEMENTATION != "cython":
    pytest.skip(
        "the Cython core is not in use (CARDLEDGER_PURE=1 or not built): nothing to compare",
        allow_module_level=True,
    )

from cardledger.fares.config import FareConfig  # noqa: E402
from cardledger.engine.spec.fares import QUOTE_LEGS_MAX, FareDiscount, FareStatus  # noqa: E402
from cardledger.fares.model import (  # noqa: E402
    Agency,
    Area,
    Calendar,
    CalendarDate,
    FareLegJoinRule,
    FareLegRule,
    FareMedia,
    FareProduct,
    FareTransferRule,
    Feed,
    Network,
    RiderCategory,
    Route,
    Stop,
    StopArea,
    Timeframe,
)
from cardledger.fares.system import LEG_DTYPE, FareSystem  # noqa: E402
from cardledger.fares.tables import tz_transitions  # noqa: E402

TIMEZONES = ("Asia/Shanghai", "America/New_York", "Europe/London", "UTC")
#: Days the journeys are centred on: DST starts and ends (US and EU), a new year.
ANCHORS = (
    dt.date(2024, 3, 10),  # US DST starts (02:00 -> 03:00 local)
    dt.date(2024, 3, 31),  # EU DST starts
    dt.date(2024, 10, 27),  # EU DST ends
    dt.date(2024, 11, 3),  # US DST ends (02:00 -> 01:00 local)
    dt.date(2024, 12, 31),  # midnight into a new year
)
WINDOW_DAYS = range(-3, 5)  # the days around the anchor that journeys and calendars use
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
US = 1_000_000
DAY_S = 86_400
Legs = list[tuple[int, int, int, int, int]]  # route, from_stop, to_stop, departure_us, arrival_us


# --------------------------------------------------------------------------- comparing


def leg_array(legs: Legs) -> np.ndarray:
    arr = np.zeros(len(legs), dtype=LEG_DTYPE)
    for i, (r, f, t, d, a) in enumerate(legs):
        arr[i] = (r, f, t, 0, d, a)
    return arr


def core_quote(fs: FareSystem, legs: Legs, cat: int, med: int) -> tuple[int, int, int]:
    s, a, f = fs._core.quote_many(leg_array(legs), np.array([0, len(legs)], dtype=np.int64), cat, med)
    return int(s[0]), int(a[0]), int(f[0])


def reference_quote(fs: FareSystem, legs: Legs, cat: int, med: int) -> tuple[int, int, int]:
    s, a, f = fs._reference.quote(legs, cat, med)
    return int(s), int(a), int(f)


def show(result: tuple[int, int, int]) -> str:
    s, a, f = result
    return f"({FareStatus(s).name}, {a}, {FareDiscount(f)!r})"


def assert_agree(fs: FareSystem, legs: Legs, cat: int, med: int) -> tuple[int, int, int]:
    """Core and reference price one journey alike, both directly and through FareSystem."""
    ref = reference_quote(fs, legs, cat, med)
    core = core_quote(fs, legs, cat, med)
    assert core == ref, (
        f"core {show(core)} != reference {show(ref)} for legs={legs} cat={cat} med={med}"
    )
    arr = leg_array(legs)
    assert fs.quote_reference(arr, cat, med) == ref
    if legs:
        s, a, f = fs.quote_many(arr, np.array([0, len(legs)], dtype=np.int64), cat, med)
        assert (int(s[0]), int(a[0]), int(f[0])) == ref
    return ref


def assert_batch_agrees(fs: FareSystem, journeys: list[Legs], cat: int, med: int) -> None:
    """All journeys through one quote_many call give the per-journey reference results."""
    arr = leg_array([leg for legs in journeys for leg in legs])
    ptr = np.cumsum([0] + [len(legs) for legs in journeys], dtype=np.int64)
    for status, amount, flags in (fs.quote_many(arr, ptr, cat, med), fs._core.quote_many(arr, ptr, cat, med)):
        assert len(status) == len(journeys)
        for j, legs in enumerate(journeys):
            ref = reference_quote(fs, legs, cat, med)
            got = (int(status[j]), int(amount[j]), int(flags[j]))
            assert got == ref, (
                f"batch: journey {j} core {show(got)} != reference {show(ref)} "
                f"for legs={legs} cat={cat} med={med}"
            )


def system_of(feed: Feed) -> FareSystem:
    """A FareSystem over `feed` (the config only names an operator per agency)."""
    operators = {a: i + 1 for i, a in enumerate(feed.agencies)}
    return FareSystem(feed, dataclasses.replace(FareConfig.default(), operators=operators))


# --------------------------------------------------------------------------- random feeds


@dataclasses.dataclass
class JourneySpace:
    """What a random journey on one feed is drawn from (indexes as the tables number them)."""

    n_routes: int
    n_stops: int
    n_cat: int
    n_med: int
    siblings: list[list[int]]  # per stop: itself and the other stops of its station
    instants: list[int]  # µs: local midnights, timeframe edges, offset changes
    lo: int  # µs: the window journeys start in
    hi: int


class _Draws:
    """Random choices drawn from hypothesis (so they shrink)."""

    def __init__(self, draw) -> None:
        self.draw = draw

    def randint(self, a: int, b: int) -> int:
        return self.draw(st.integers(a, b))

    def choice(self, seq):
        return self.draw(st.sampled_from(seq))

    def chance(self, p: float) -> bool:
        return self.draw(st.integers(0, 99)) < round(p * 100)


class _Seeded:
    """Random choices from a seeded generator (many journeys cheaply; the seed is in the example)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def randint(self, a: int, b: int) -> int:
        return self.rng.randint(a, b)

    def choice(self, seq):
        return self.rng.choice(seq)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


#: Journeys per random feed drawn from a seeded generator, besides the shrinkable ones.
SEEDED_JOURNEYS = 40
JITTER_US = (0, 0, 0, -1, 1, -US, US, -59 * US, 3599 * US)


def _duration_us(r, max_minutes: int) -> int:
    kind = r.randint(0, 2)
    if kind == 0:
        return r.randint(0, max_minutes) * 60 * US
    if kind == 1:
        return r.randint(0, max_minutes * 60 * US)
    return 0


def journey(r, sp: JourneySpace) -> tuple[Legs, int, int]:
    """1-6 legs, mostly in time order and boarding where the last leg alighted; a rider."""
    legs: Legs = []
    for _ in range(r.randint(1, 6)):
        route = r.randint(0, sp.n_routes - 1)
        if legs and 0 <= legs[-1][2] < sp.n_stops and r.chance(0.6):
            from_stop = r.choice(sp.siblings[legs[-1][2]])
        else:
            from_stop = r.randint(0, sp.n_stops - 1)
        to_stop = r.randint(0, sp.n_stops - 1)
        if not legs or r.chance(0.15):
            if r.chance(0.5):
                dep = r.choice(sp.instants) + r.choice(JITTER_US)
            else:
                dep = r.randint(sp.lo, sp.hi)
        else:
            dep = legs[-1][4] + _duration_us(r, 120)
        arr = dep + _duration_us(r, 180)
        if r.chance(0.02):  # a leg the tables do not know
            if r.chance(0.5):
                route = r.choice((-1, sp.n_routes, 2**31 - 1, -(2**31)))
            elif r.chance(0.5):
                from_stop = r.choice((-1, sp.n_stops, 2**31 - 1))
            else:
                to_stop = r.choice((-1, sp.n_stops, 2**31 - 1))
        legs.append((route, from_stop, to_stop, dep, arr))
    return legs, r.randint(0, sp.n_cat), r.randint(0, sp.n_med)


@dataclasses.dataclass
class Case:
    """A random feed and journeys priced on it: (legs, category index, medium index)."""

    feed: Feed
    journeys: list[tuple[Legs, int, int]]


def _us(aware: dt.datetime) -> int:
    return (aware - EPOCH) // dt.timedelta(microseconds=1)


def _local_us(day: dt.date, seconds: int, zone: zoneinfo.ZoneInfo) -> int:
    """The instant of wall-clock `seconds` after local midnight of `day` (fold 0)."""
    naive = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=seconds)
    return _us(naive.replace(tzinfo=zone))


def _unique(rows: list, key) -> list:
    seen: set = set()
    out = []
    for row in rows:
        k = key(row)
        if k not in seen:
            seen.add(k)
            out.append(row)
    return out


def _chance(draw, p: float) -> bool:
    """True with probability about p (floats would lean on 0.0 and 1.0)."""
    return draw(st.integers(0, 99)) < round(p * 100)


def _maybe(draw, values, p_none: float = 0.5):
    """None (with probability about p_none) or one of `values` (None if there are none)."""
    if not values or _chance(draw, p_none):
        return None
    return draw(st.sampled_from(values))


@st.composite
def cases(draw) -> Case:
    tz = draw(st.sampled_from(TIMEZONES))
    anchor = draw(st.sampled_from(ANCHORS))
    days = [anchor + dt.timedelta(days=k) for k in WINDOW_DAYS]

    # agencies, networks, routes
    n_ag = draw(st.integers(1, 3))
    agencies = {f"A{i}": Agency(f"A{i}", f"agency {i}", tz) for i in range(n_ag)}
    all_nets = [f"N{i}" for i in range(draw(st.integers(2, 6)))]
    networks_file = draw(st.booleans())  # networks.txt + route_networks.txt, else routes.network_id
    routes: dict[str, Route] = {}
    for i in range(draw(st.integers(2, 10))):
        net = _maybe(draw, all_nets, 0.2)
        ag = draw(st.sampled_from(list(agencies)))
        routes[f"R{i}"] = Route(f"R{i}", ag, 3, f"{i}", net)
    route_networks = {r.route_id: r.network_id for r in routes.values() if r.network_id is not None}
    networks = {n: Network(n, f"network {n}") for n in all_nets} if networks_file else {}
    known_nets = all_nets if networks_file else list(dict.fromkeys(route_networks.values()))

    # stops: plain stops, stations, platforms of stations
    n_stops = draw(st.integers(3, 15))
    n_stations = draw(st.integers(0, min(3, n_stops - 1)))
    stations = [f"T{i}" for i in range(n_stations)]
    stops: dict[str, Stop] = {}
    for s in stations:
        stops[s] = Stop(s, f"station {s}", 1, None, _maybe(draw, TIMEZONES, 0.85))
    for i in range(n_stops - n_stations):
        parent = _maybe(draw, stations, 0.4)
        stops[f"s{i}"] = Stop(f"s{i}", None, 0, parent, _maybe(draw, TIMEZONES, 0.9))
    stop_ids = list(stops)

    # areas: some stops in two, platforms inherit their station's unless they have their own
    area_ids = [f"Z{i}" for i in range(draw(st.integers(0, 6)))]
    areas = {a: Area(a, None) for a in area_ids}
    stop_areas: list[StopArea] = []
    if area_ids:
        for s in stop_ids:
            own = draw(st.lists(st.sampled_from(area_ids), max_size=2, unique=True))
            if stops[s].parent_station is not None and _chance(draw, 0.6):
                own = []  # inherits
            stop_areas.extend(StopArea(a, s) for a in own)
        stop_areas = draw(st.permutations(stop_areas))

    # services and timeframes
    n_groups = draw(st.integers(0, 3))
    tf_groups = [f"TF{i}" for i in range(n_groups)]
    services = [f"svc{i}" for i in range(draw(st.integers(1, 2)))] if n_groups else []
    calendar: dict[str, Calendar] = {}
    calendar_dates: list[CalendarDate] = []
    for v in services:
        has_calendar = _chance(draw, 0.8)
        if has_calendar:
            weekdays = tuple(draw(st.lists(st.booleans(), min_size=7, max_size=7)))
            start = anchor + dt.timedelta(days=draw(st.integers(-4, 1)))
            end = start + dt.timedelta(days=draw(st.integers(0, 8)))
            calendar[v] = Calendar(v, weekdays, start, end)  # type: ignore[arg-type]
        n_ex = draw(st.integers(0 if has_calendar else 1, 3))
        ex_days = draw(st.lists(st.sampled_from(days), min_size=n_ex, max_size=n_ex, unique=True))
        calendar_dates.extend(CalendarDate(v, d, draw(st.sampled_from((1, 2)))) for d in ex_days)
    timeframes: list[Timeframe] = []
    hour = st.integers(0, 24).map(lambda h: h * 3600)
    for g in tf_groups:
        kept: list[Timeframe] = []
        for _ in range(draw(st.integers(1, 3))):
            v = draw(st.sampled_from(services))
            if _chance(draw, 0.25):
                start, end = 0, DAY_S
            else:
                a = draw(hour | st.integers(0, DAY_S))
                b = draw(hour | st.integers(0, DAY_S))
                if a == b:
                    continue
                start, end = min(a, b), max(a, b)
            if any(t.service_id == v and start < t.end_s and t.start_s < end for t in kept):
                continue  # intervals of one group and service may not overlap
            kept.append(Timeframe(g, start, end, v))
        if not kept:
            kept.append(Timeframe(g, 0, DAY_S, services[0]))
        timeframes.extend(kept)
    timeframes = draw(st.permutations(timeframes))

    # rider categories, fare media, products
    cats = [f"C{i}" for i in range(draw(st.integers(1, 4)))]
    defaults = draw(st.lists(st.sampled_from(cats), max_size=2, unique=True))
    rider_categories = {c: RiderCategory(c, f"category {c}", c in defaults) for c in cats}
    media = [f"M{i}" for i in range(draw(st.integers(0, 2)))]
    fare_media = {m: FareMedia(m, None, draw(st.integers(0, 4))) for m in media}
    amount = st.integers(0, 60).map(lambda x: x * 10) | st.integers(-50, 1000)
    products: list[FareProduct] = []
    product_ids = [f"P{i}" for i in range(draw(st.integers(1, 8)))]
    for p in product_ids:
        rows = []
        for _ in range(draw(st.integers(1, 4))):
            rows.append([_maybe(draw, cats, 0.4), _maybe(draw, media, 0.5), draw(amount)])
        named = list(dict.fromkeys(r[0] for r in rows if r[0] is not None))
        if len(named) >= 2 and sum(c in defaults for c in named) != 1:
            # the loader wants exactly one default category among a product's named ones
            if defaults:
                d = draw(st.sampled_from(defaults))
                rename = {c: d for c in named if c in defaults} or {named[0]: d}
            else:
                rename = {c: named[0] for c in named}
            for r in rows:
                r[0] = rename.get(r[0], r[0])
        rows = _unique(rows, lambda r: (r[0], r[1]))
        products.extend(FareProduct(p, a, "CNY", None, c, m) for c, m, a in rows)
    products = draw(st.permutations(products))

    # leg rules
    has_priority = draw(st.booleans())
    groups = [f"G{i}" for i in range(draw(st.integers(1, 4)))]
    leg_rules: list[FareLegRule] = []
    for _ in range(draw(st.integers(1, 20))):
        priority = None
        if has_priority and _chance(draw, 0.8):
            priority = draw(st.integers(0, 3))
        leg_rules.append(
            FareLegRule(
                fare_product_id=draw(st.sampled_from(product_ids)),
                leg_group_id=_maybe(draw, groups, 0.3),
                network_id=_maybe(draw, known_nets, 0.5),
                from_area_id=_maybe(draw, area_ids, 0.6),
                to_area_id=_maybe(draw, area_ids, 0.6),
                from_timeframe_group_id=_maybe(draw, tf_groups, 0.6),
                to_timeframe_group_id=_maybe(draw, tf_groups, 0.75),
                rule_priority=priority,
            )
        )
    leg_rules = _unique(
        leg_rules,
        lambda r: (r.network_id, r.from_area_id, r.to_area_id, r.from_timeframe_group_id,
                   r.to_timeframe_group_id, r.fare_product_id),
    )

    # transfer rules
    used_groups = list(dict.fromkeys(r.leg_group_id for r in leg_rules if r.leg_group_id))
    transfer_rules: list[FareTransferRule] = []
    for _ in range(draw(st.integers(0, 6))):
        fg = _maybe(draw, used_groups, 0.25)
        tg = fg if _chance(draw, 0.4) else _maybe(draw, used_groups, 0.25)
        count = draw(st.sampled_from((-1, 1, 2, 3))) if fg == tg else None
        limit = limit_type = None
        if _chance(draw, 0.6):
            limit = draw(st.sampled_from((60, 1800, 3600, 5400, 7200)) | st.integers(1, 4 * 3600))
            limit_type = draw(st.integers(0, 3))
        transfer_rules.append(
            FareTransferRule(
                fare_transfer_type=draw(st.integers(0, 2)),
                from_leg_group_id=fg,
                to_leg_group_id=tg,
                transfer_count=count,
                duration_limit=limit,
                duration_limit_type=limit_type,
                fare_product_id=_maybe(draw, product_ids, 0.4),
            )
        )
    transfer_rules = _unique(
        transfer_rules,
        lambda t: (t.from_leg_group_id, t.to_leg_group_id, t.fare_product_id, t.transfer_count,
                   t.duration_limit),
    )

    # join rules
    join_rules: list[FareLegJoinRule] = []
    if known_nets:
        for _ in range(draw(st.integers(0, 3))):
            fn, tn = draw(st.sampled_from(known_nets)), draw(st.sampled_from(known_nets))
            js = jt = None
            if draw(st.booleans()):
                js, jt = draw(st.sampled_from(stop_ids)), draw(st.sampled_from(stop_ids))
            join_rules.append(FareLegJoinRule(fn, tn, js, jt))
        join_rules = _unique(
            join_rules, lambda j: (j.from_network_id, j.to_network_id, j.from_stop_id, j.to_stop_id)
        )

    feed = Feed(
        agencies=agencies,
        routes=routes,
        stops=stops,
        fare_media=fare_media,
        rider_categories=rider_categories,
        fare_products=products,
        fare_leg_rules=leg_rules,
        has_rule_priority=has_priority,
        fare_leg_join_rules=join_rules,
        fare_transfer_rules=transfer_rules,
        timeframes=timeframes,
        calendar=calendar,
        calendar_dates=calendar_dates,
        networks=networks,
        route_networks=route_networks,
        areas=areas,
        stop_areas=stop_areas,
    )

    # instants worth hitting: local midnights and timeframe edges in every zone the
    # stops use, and the zones' UTC offset changes in the window
    zones = {tz} | {s.stop_timezone for s in stops.values() if s.stop_timezone}
    edges = sorted({0, DAY_S} | {t.start_s for t in timeframes} | {t.end_s for t in timeframes})
    lo = _us(dt.datetime.combine(days[0], dt.time(), dt.timezone.utc))
    hi = _us(dt.datetime.combine(days[-1], dt.time(), dt.timezone.utc)) + DAY_S * US
    instants: set[int] = set()
    for name in sorted(zones):
        zone = zoneinfo.ZoneInfo(name)
        instants.update(_local_us(d, s, zone) for d in days[1:-1] for s in edges)
        instants.update(f for f in tz_transitions(name)[0] if lo <= f <= hi)
    siblings = []  # per stop: the stops a rider may board at after alighting there
    for s in stop_ids:
        station = stops[s].parent_station or s
        siblings.append([i for i, x in enumerate(stop_ids) if station in (x, stops[x].parent_station)])
    space = JourneySpace(
        len(routes), n_stops, len(cats), len(media), siblings, sorted(instants), lo, hi
    )
    r = _Draws(draw)
    journeys = [journey(r, space) for _ in range(draw(st.integers(1, 6)))]
    seeded = _Seeded(draw(st.integers(0, 2**32 - 1)))
    journeys += [journey(seeded, space) for _ in range(SEEDED_JOURNEYS)]
    return Case(feed, journeys)


@settings(
    max_examples=HYPOTHESIS_EXAMPLES * 3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_core_and_reference_agree_on_random_feeds_and_journeys(case: Case) -> None:
    fs = system_of(case.feed)
    assert fs._core is not None
    for legs, cat, med in case.journeys:
        status, _, flags = assert_agree(fs, legs, cat, med)
        event(f"status {FareStatus(status).name}")
        if status == FareStatus.OK:
            event(f"discounts {FareDiscount(flags)!r}")
            event(f"effective legs {len(legs) - len(fs._reference.effective_legs(legs))} joined")
    # everything at once, for every rider and medium
    journeys = [legs for legs, _, _ in case.journeys]
    for cat in range(fs.tables.n_categories + 1):
        for med in range(fs.tables.n_media + 1):
            assert_batch_agrees(fs, journeys, cat, med)


# --------------------------------------------------------------------------- the Harbin system


@pytest.fixture(scope="module")
def harbin() -> FareSystem:
    return FareSystem.harbin()


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_core_and_reference_agree_on_harbin(harbin: FareSystem, data) -> None:
    fs = harbin
    n_routes, n_stops = len(fs.tables.route_ids), len(fs.tables.stop_ids)
    start = _us(dt.datetime(2025, 3, 10, tzinfo=dt.timezone.utc))
    journeys = []
    for _ in range(data.draw(st.integers(1, 8))):
        legs: Legs = []
        t = start + data.draw(st.integers(0, 7 * DAY_S)) * US
        for _ in range(data.draw(st.integers(1, 5))):
            dep = t + data.draw(st.integers(0, 3600)) * US
            arr = dep + data.draw(st.integers(0, 5400)) * US
            legs.append(
                (data.draw(st.integers(0, n_routes - 1)), data.draw(st.integers(0, n_stops - 1)),
                 data.draw(st.integers(0, n_stops - 1)), dep, arr)
            )
            t = arr
        journeys.append(legs)
    for cat in range(fs.tables.n_categories + 1):
        for med in range(fs.tables.n_media + 1):
            for legs in journeys:
                assert_agree(fs, legs, cat, med)
            assert_batch_agrees(fs, journeys, cat, med)


# --------------------------------------------------------------------------- fixed cases


def _small_feed(**changes) -> Feed:
    """One agency, network N, routes R0 (in N) and R1 (no network), stops a, b, c."""
    feed = Feed(
        agencies={"A": Agency("A", "agency", "America/New_York")},
        routes={"R0": Route("R0", "A", 3, None, "N"), "R1": Route("R1", "A", 3)},
        stops={s: Stop(s) for s in "abc"},
        fare_media={},
        rider_categories={},
        fare_products=[FareProduct("P", 200, "USD"), FareProduct("X", 50, "USD")],
        fare_leg_rules=[FareLegRule("P", leg_group_id="G")],
        has_rule_priority=False,
        fare_leg_join_rules=[],
        fare_transfer_rules=[],
        timeframes=[],
        calendar={},
        calendar_dates=[],
        networks={},
        route_networks={"R0": "N"},
        areas={},
        stop_areas=[],
    )
    return dataclasses.replace(feed, **changes)


T0 = _us(dt.datetime(2024, 3, 10, 5, 0, tzinfo=dt.timezone.utc))


def _ride(route: int, a: int, b: int, minute: int) -> tuple[int, int, int, int, int]:
    return (route, a, b, T0 + minute * 60 * US, T0 + (minute + 10) * 60 * US)


@pytest.fixture(scope="module")
def small() -> FareSystem:
    return system_of(_small_feed())


def test_small_feed_prices_in_both(small: FareSystem) -> None:
    assert assert_agree(small, [_ride(0, 0, 1, 0)], 0, 0) == (FareStatus.OK, 200, 0)
    assert assert_agree(small, [_ride(0, 0, 1, 0), _ride(1, 1, 2, 20)], 0, 0) == (FareStatus.OK, 400, 0)


def test_no_legs_in_both(small: FareSystem) -> None:
    assert reference_quote(small, [], 0, 0) == (FareStatus.NO_LEGS, 0, 0)
    assert core_quote(small, [], 0, 0) == (FareStatus.NO_LEGS, 0, 0)
    # empty journeys among others in one batch
    assert_batch_agrees(small, [[], [_ride(0, 0, 1, 0)], [], []], 0, 0)


@pytest.mark.parametrize("n", [QUOTE_LEGS_MAX - 1, QUOTE_LEGS_MAX, QUOTE_LEGS_MAX + 1, 200])
def test_leg_count_limit_in_both(small: FareSystem, n: int) -> None:
    legs = [_ride(i % 2, i % 3, (i + 1) % 3, 15 * i) for i in range(n)]
    result = assert_agree(small, legs, 0, 0)
    if n > QUOTE_LEGS_MAX:
        assert result == (FareStatus.TOO_MANY_LEGS, 0, 0)
    else:
        assert result == (FareStatus.OK, 200 * n, 0)
    # too many legs wins over unknown routes and stops
    bad = [(-1, -1, 99, T0, T0)] * n
    assert assert_agree(small, bad, 0, 0)[0] == (
        FareStatus.TOO_MANY_LEGS if n > QUOTE_LEGS_MAX else FareStatus.UNKNOWN_ROUTE
    )
    assert_batch_agrees(small, [legs, bad, legs[:3]], 0, 0)


@pytest.mark.parametrize("route", [-1, -(2**31), 2, 3, 2**31 - 1])
def test_unknown_route_in_both(small: FareSystem, route: int) -> None:
    for legs in ([(route, 0, 1, T0, T0)], [_ride(0, 0, 1, 0), (route, 1, 2, T0, T0)]):
        assert assert_agree(small, legs, 0, 0) == (FareStatus.UNKNOWN_ROUTE, 0, 0)
    # a bad route is reported before a bad stop of the same leg
    assert assert_agree(small, [(route, -1, 99, T0, T0)], 0, 0) == (FareStatus.UNKNOWN_ROUTE, 0, 0)


@pytest.mark.parametrize("stop", [-1, -(2**31), 3, 4, 2**31 - 1])
def test_unknown_stop_in_both(small: FareSystem, stop: int) -> None:
    for legs in (
        [(0, stop, 1, T0, T0)],
        [(0, 1, stop, T0, T0)],
        [_ride(0, 0, 1, 0), (1, stop, 2, T0, T0)],
        [_ride(0, 0, 1, 0), (1, 2, stop, T0, T0)],
    ):
        assert assert_agree(small, legs, 0, 0) == (FareStatus.UNKNOWN_STOP, 0, 0)
    # the first bad leg decides: a bad stop before a bad route
    legs = [(0, stop, 1, T0, T0), (-1, 0, 1, T0, T0)]
    assert assert_agree(small, legs, 0, 0) == (FareStatus.UNKNOWN_STOP, 0, 0)


# --------------------------------------------------------------------------- disagreements found


@pytest.mark.parametrize("count", [2**30, 2**30 + 1, 2**31 - 1])
def test_huge_transfer_count_ranks_before_unlimited(count: int) -> None:
    # Two G->G rules both match the first transfer. The reference (the spec) picks
    # the smallest transfer_count >= 1, so the finite one (cost 50, total 250); the
    # core once treated unlimited as 2**30 and picked the unlimited free one (200).
    feed = _small_feed(
        fare_transfer_rules=[
            FareTransferRule(0, "G", "G", transfer_count=-1),
            FareTransferRule(0, "G", "G", transfer_count=count, fare_product_id="X"),
        ]
    )
    fs = system_of(feed)
    legs = [_ride(0, 0, 1, 0), _ride(0, 1, 2, 20)]
    assert reference_quote(fs, legs, 0, 0) == (FareStatus.OK, 250, FareDiscount.TRANSFER)
    assert_agree(fs, legs, 0, 0)


def test_a_product_amount_beyond_the_ledgers_limit_is_refused() -> None:
    """Amounts are bounded by AMOUNT_MAX_FEN (the loader checks it too), so no journey total
    (at most 64 legs and transfers) can leave int64 in the core."""
    feed = _small_feed(fare_products=[FareProduct("P", 2**62 - 1, "USD")])
    with pytest.raises(ValueError, match="AMOUNT_MAX_FEN"):
        system_of(feed)


def test_leg_times_far_from_the_epoch_are_refused() -> None:
    """quote_many refuses leg times beyond ±2^60 µs, so no duration span overflows int64."""
    feed = _small_feed(
        fare_transfer_rules=[
            FareTransferRule(0, "G", "G", transfer_count=-1, duration_limit=60, duration_limit_type=0)
        ]
    )
    fs = system_of(feed)
    legs = np.array([(0, 0, 1, 0, -(2**63), -(2**63)), (0, 1, 2, 0, 2**63 - 1, 2**63 - 1)], dtype=LEG_DTYPE)
    with pytest.raises(ValueError, match="epoch"):
        fs.quote_many(legs, np.array([0, 2]), 0, 0)


def _two_ways_feed() -> Feed:
    """Every leg may be priced by P (200, leg group G) or Y (300, no group); a G->G
    transfer costs Z (400) on top of both legs (fare_transfer_type 1)."""
    return _small_feed(
        fare_products=[
            FareProduct("P", 200, "USD"),
            FareProduct("Y", 300, "USD"),
            FareProduct("Z", 400, "USD"),
        ],
        fare_leg_rules=[FareLegRule("P", leg_group_id="G"), FareLegRule("Y")],
        fare_transfer_rules=[FareTransferRule(1, "G", "G", transfer_count=-1, fare_product_id="Z")],
    )


@pytest.mark.parametrize("n", [2, 3, 12])
def test_leg_options_search(n: int) -> None:
    # A per-leg choice would take P for every leg, so every transfer is G->G:
    # 200 + (n-1) * (400 + 200), 800 for two legs. Both evaluators search: the cheapest combination, e.g. P then Y: 500 for two legs, no
    # transfer (3000 for 12 legs, P and Y alternating; 12 legs are 4096 combinations,
    # QUOTE_COMBINATIONS_MAX, so the search still runs).
    fs = system_of(_two_ways_feed())
    legs = [_ride(0, i % 3, (i + 1) % 3, 15 * i) for i in range(n)]
    assert_agree(fs, legs, 0, 0)


def test_leg_options_beyond_the_combination_cap() -> None:
    # 13 legs with two options each are 8192 > QUOTE_COMBINATIONS_MAX combinations:
    # each leg takes its cheapest option, in both.
    fs = system_of(_two_ways_feed())
    legs = [_ride(0, i % 3, (i + 1) % 3, 15 * i) for i in range(13)]
    assert assert_agree(fs, legs, 0, 0) == (FareStatus.OK, 200 + 12 * 600, FareDiscount.TRANSFER)
