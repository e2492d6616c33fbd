"""Compile a validated fare feed into the integer tables both evaluators read.

The core (Cython) and the reference (plain Python) evaluators never see a string:
every GTFS identifier becomes a dense index, every time a count of seconds or
microseconds, every amount an int of minor units. The GTFS matching rules that can
be decided once per feed are decided here (which values a column lists, a stop's
station and areas, which days a service runs, a timezone's UTC offsets), so that
evaluating a leg is lookups and integer comparisons.

Indexes are stable across fare-system versions when `previous` is given: a route or
stop id the previous system knew keeps its index, new ids are appended. A TAP op
names routes and stops by these indexes, so a gateway's indexes stay valid when a
new fare system comes into force.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping

import numpy as np

from ..schema import AMOUNT_MAX_FEN, NO_PRICE, NONE  # (schema's: the engines read them too)
from .config import FareConfig
from .model import Feed, Stop
from .timezones import Transitions, tz_transitions

UNIX_EPOCH_DATE = dt.date(1970, 1, 1)
#: How stops.txt and stop_areas.txt are read. 2: as the GTFS reference says (a
#: location with a parent station takes the station's stop_timezone, a boarding area
#: through its platform; a stop in several areas is matched area by area, an empty
#: area field matching it through any unlisted area). 1 (legacy): a stop's own
#: stop_timezone first, one level of parents, and an empty area field matching only a
#: stop none of whose areas is listed: how systems stored before rules 2 were rated.
GTFS_RULES = 2
GTFS_RULES_LEGACY = 1


@dataclasses.dataclass
class FareTables:
    """A fare system as integer arrays (see the module docstring).

    Naming: `*_ptr` arrays are CSR row pointers (rows of entity i are
    `ptr[i]:ptr[i+1]` of the matching value array). Leg rules are sorted by
    `lr_key = (network + 1) * (n_areas + 1) + (from_area + 1)` so that the
    evaluators find a leg's candidate rules by binary search on `lr_keys`.
    """

    currency: str
    has_rule_priority: bool
    # ids, in index order (index -> GTFS id)
    route_ids: list[str]
    stop_ids: list[str]
    network_ids: list[str]
    area_ids: list[str]
    leg_group_ids: list[str]
    product_ids: list[str]
    rider_category_ids: list[str]
    fare_media_ids: list[str]
    agency_ids: list[str]
    timeframe_group_ids: list[str]
    tz_names: list[str]
    # routes
    route_network: np.ndarray  # int32[R]
    route_agency: np.ndarray  # int32[R]
    route_known: np.ndarray  # uint8[R]: 0 for an id only an older version had
    # stops
    stop_station: np.ndarray  # int32[S]: parent station, or the stop itself
    stop_known: np.ndarray  # uint8[S]
    stop_tz: np.ndarray  # int32[S]
    stop_area_ptr: np.ndarray  # int32[S+1]
    stop_area: np.ndarray  # int32[...]
    # whether an empty from_area_id / to_area_id matches the stop (always with
    # rule_priority; without, when some area of the stop is unlisted, or it has none)
    stop_from_empty: np.ndarray  # uint8[S]
    stop_to_empty: np.ndarray  # uint8[S]
    # timezones: offsets in force from tz_from_us[k] on (first entry: -inf)
    tz_ptr: np.ndarray  # int32[Z+1]
    tz_from_us: np.ndarray  # int64[...]
    tz_offset_s: np.ndarray  # int64[...]
    # services: bit day d (days since 1970-01-01, local) at svc_bits[v, d - svc_day0]
    svc_day0: int
    svc_bits: np.ndarray  # uint8[V, D]
    # timeframes per group
    tf_ptr: np.ndarray  # int32[T+1]
    tf_start_s: np.ndarray  # int32[...]
    tf_end_s: np.ndarray  # int32[...]
    tf_service: np.ndarray  # int32[...]
    # products: price[p, c, m]; c == C means "no category given" (the default
    # rider), m == M means "no medium given" (any medium)
    price: np.ndarray  # int64[P, C+1, M+1]
    # leg rules, sorted by key
    lr_keys: np.ndarray  # int64[L]
    lr_network: np.ndarray  # int32[L]
    lr_from_area: np.ndarray
    lr_to_area: np.ndarray
    lr_from_tf: np.ndarray
    lr_to_tf: np.ndarray
    lr_group: np.ndarray
    lr_product: np.ndarray
    lr_priority: np.ndarray  # int32[L]
    lr_nspec: np.ndarray  # int32[L]: how many of the five matching fields are set
    lr_order: np.ndarray  # int32[L]: row order in fare_leg_rules.txt (tie-break)
    network_listed: np.ndarray  # uint8[N]
    from_area_listed: np.ndarray  # uint8[A]
    to_area_listed: np.ndarray  # uint8[A]
    # transfer rules, in file order
    tr_from_group: np.ndarray  # int32[X]
    tr_to_group: np.ndarray
    tr_count: np.ndarray  # int32: -1 unlimited (also when not given)
    tr_duration_s: np.ndarray  # int64: -1 no limit
    tr_duration_type: np.ndarray  # int32
    tr_type: np.ndarray  # int32
    tr_product: np.ndarray  # int32: -1 costs 0
    from_group_listed: np.ndarray  # uint8[G]
    to_group_listed: np.ndarray  # uint8[G]
    # join rules
    jr_from_network: np.ndarray  # int32[J]
    jr_to_network: np.ndarray
    jr_from_stop: np.ndarray  # int32: -1 = same station required
    jr_to_stop: np.ndarray

    @property
    def n_categories(self) -> int:
        """Number of rider categories (index C of `price` is 'none given')."""
        return len(self.rider_category_ids)

    @property
    def n_media(self) -> int:
        """Number of fare media (index M of `price` is 'none given')."""
        return len(self.fare_media_ids)


def _station_of(feed: Feed, stop: Stop) -> Stop:
    """The station a location belongs to: itself when it is a station or has no parent;
    a boarding area's is its platform's (the loader checked the hierarchy, so the walk
    is at most two steps)."""
    s = stop
    for _ in range(2):
        if s.location_type == 1 or not s.parent_station:
            return s
        parent = feed.stops.get(s.parent_station)
        if parent is None:
            return s
        s = parent
    return s


def _areas_of(feed: Feed, stop: Stop, own_areas: dict[str, list[int]]) -> list[int]:
    """A location's areas (stop_areas.txt): its own if it has any; otherwise a platform
    takes its station's, and a boarding area its platform's (so, in turn, the
    station's)."""
    s = stop
    for _ in range(3):
        if s.stop_id in own_areas:
            return own_areas[s.stop_id]
        if s.location_type == 1 or not s.parent_station:
            return []
        parent = feed.stops.get(s.parent_station)
        if parent is None:
            return []
        s = parent
    return []


def _empty_matches(ptr: np.ndarray, areas: list[int], listed: np.ndarray, priority: bool,
                   gtfs_rules: int) -> np.ndarray:
    """Per stop: whether an empty area field of a leg rule matches it. With
    rule_priority, always. Without, an empty field stands for every area no rule lists
    in that column: it matches a stop in no area, or with some unlisted area (each of
    its areas is matched on its own). GTFS_RULES_LEGACY: only a stop none of whose
    areas is listed."""
    out = np.ones(len(ptr) - 1, dtype=np.uint8)
    if priority:
        return out
    for i in range(len(ptr) - 1):
        mine = [bool(listed[a]) for a in areas[ptr[i] : ptr[i + 1]]]
        if gtfs_rules == GTFS_RULES_LEGACY:
            out[i] = not any(mine)
        else:
            out[i] = not mine or not all(mine)
    return out


def _indexer(ids: list[str]) -> dict[str, int]:
    return {x: i for i, x in enumerate(ids)}


def _stable_order(new_ids: list[str], previous: list[str] | None) -> list[str]:
    """Ids ordered so that those `previous` knew keep their index; new ones appended.

    Ids the new system no longer has keep a placeholder slot (their old id), so
    every old index still means the same id; the evaluators treat a placeholder as
    unknown because nothing refers to it.
    """
    if not previous:
        return list(new_ids)
    known = set(previous)
    return list(previous) + [x for x in new_ids if x not in known]


def _service_days(feed: Feed) -> tuple[list[str], int, np.ndarray]:
    """Every service id and the local days it runs, as a bit table."""
    service_ids: list[str] = list(feed.calendar)
    for cd in feed.calendar_dates:
        if cd.service_id not in service_ids:
            service_ids.append(cd.service_id)
    dates = [c.start_date for c in feed.calendar.values()] + [
        c.end_date for c in feed.calendar.values()
    ]
    dates += [cd.date for cd in feed.calendar_dates]
    if not dates:
        return service_ids, 0, np.zeros((len(service_ids), 0), dtype=np.uint8)
    first, last = min(dates), max(dates)
    day0 = (first - UNIX_EPOCH_DATE).days
    ndays = (last - first).days + 1
    bits = np.zeros((len(service_ids), ndays), dtype=np.uint8)
    sidx = _indexer(service_ids)
    for c in feed.calendar.values():
        row = bits[sidx[c.service_id]]
        d = c.start_date
        while d <= c.end_date:
            if c.weekdays[d.weekday()]:
                row[(d - first).days] = 1
            d += dt.timedelta(days=1)
    for cd in feed.calendar_dates:
        bits[sidx[cd.service_id], (cd.date - first).days] = 1 if cd.exception_type == 1 else 0
    return service_ids, day0, bits


def compile_feed(
    feed: Feed,
    config: FareConfig | None = None,
    previous: FareTables | None = None,
    timezones: Mapping[str, Transitions] | None = None,
    gtfs_rules: int = GTFS_RULES,
) -> FareTables:
    """Turn a validated feed into `FareTables` (see the module docstring).

    `timezones`: the UTC offsets recorded with the system (see `timezones.py`); a zone
    not in it is read from the host's tz database. `gtfs_rules`: how stops.txt and
    stop_areas.txt are read (GTFS_RULES; GTFS_RULES_LEGACY for a system a ledger
    stored before, so that it rates its journal as it did)."""
    currencies = {p.currency for p in feed.fare_products}
    currency = currencies.pop() if currencies else "XXX"

    route_ids = _stable_order(list(feed.routes), previous.route_ids if previous else None)
    stop_ids = _stable_order(list(feed.stops), previous.stop_ids if previous else None)
    network_ids = list(feed.networks)
    for r in feed.routes.values():
        net = feed.route_networks.get(r.route_id, r.network_id)
        if net is not None and net not in network_ids:
            network_ids.append(net)
    for lr in feed.fare_leg_rules:
        if lr.network_id is not None and lr.network_id not in network_ids:
            network_ids.append(lr.network_id)
    if config is not None:
        for e in config.entry_exit:
            if e.network_id not in network_ids:
                network_ids.append(e.network_id)
    area_ids = list(feed.areas)
    leg_group_ids: list[str] = []
    for lr in feed.fare_leg_rules:
        if lr.leg_group_id is not None and lr.leg_group_id not in leg_group_ids:
            leg_group_ids.append(lr.leg_group_id)
    product_ids: list[str] = []
    for p in feed.fare_products:
        if p.fare_product_id not in product_ids:
            product_ids.append(p.fare_product_id)
    category_ids = list(feed.rider_categories)
    for p in feed.fare_products:
        if p.rider_category_id is not None and p.rider_category_id not in category_ids:
            category_ids.append(p.rider_category_id)
    media_ids = list(feed.fare_media)
    agency_ids = list(feed.agencies)
    tf_group_ids: list[str] = []
    for tf in feed.timeframes:
        if tf.timeframe_group_id not in tf_group_ids:
            tf_group_ids.append(tf.timeframe_group_id)

    net_ix, area_ix, grp_ix = _indexer(network_ids), _indexer(area_ids), _indexer(leg_group_ids)
    prod_ix, cat_ix, med_ix = _indexer(product_ids), _indexer(category_ids), _indexer(media_ids)
    agency_ix, tfg_ix, stop_ix = _indexer(agency_ids), _indexer(tf_group_ids), _indexer(stop_ids)

    # routes
    n_routes = len(route_ids)
    route_network = np.full(n_routes, NONE, dtype=np.int32)
    route_agency = np.full(n_routes, NONE, dtype=np.int32)
    only_agency = agency_ids[0] if len(agency_ids) == 1 else None
    for i, rid in enumerate(route_ids):
        r = feed.routes.get(rid)
        if r is None:
            continue
        net = feed.route_networks.get(rid, r.network_id)
        if net is not None:
            route_network[i] = net_ix[net]
        ag = r.agency_id or only_agency
        if ag is not None and ag in agency_ix:
            route_agency[i] = agency_ix[ag]

    # timezones and stops
    default_tz = next(iter(feed.agencies.values())).agency_timezone if feed.agencies else "UTC"
    tz_names = [default_tz]
    n_stops = len(stop_ids)
    stop_station = np.arange(n_stops, dtype=np.int32)
    stop_tz = np.zeros(n_stops, dtype=np.int32)
    own_areas: dict[str, list[int]] = {}
    for sa in feed.stop_areas:
        own_areas.setdefault(sa.stop_id, []).append(area_ix[sa.area_id])
    stop_area_ptr = np.zeros(n_stops + 1, dtype=np.int32)
    stop_area_vals: list[int] = []
    for i, sid in enumerate(stop_ids):
        s = feed.stops.get(sid)
        areas: list[int] = []
        if s is not None and gtfs_rules == GTFS_RULES_LEGACY:
            parent = feed.stops.get(s.parent_station) if s.parent_station else None
            if parent is not None and s.location_type != 1:
                stop_station[i] = stop_ix[parent.stop_id]
            tz = s.stop_timezone or (parent.stop_timezone if parent is not None else None) or default_tz
            if tz not in tz_names:
                tz_names.append(tz)
            stop_tz[i] = tz_names.index(tz)
            areas = own_areas.get(sid) or (own_areas.get(parent.stop_id, []) if parent else [])
        elif s is not None:
            station = _station_of(feed, s)
            if station is not s:
                stop_station[i] = stop_ix[station.stop_id]
            # stops.txt, stop_timezone: a location with a parent station takes the
            # station's zone instead of its own; a station or parentless stop without
            # one takes the agency's. A boarding area reaches its station through
            # its platform.
            tz = station.stop_timezone or default_tz
            if tz not in tz_names:
                tz_names.append(tz)
            stop_tz[i] = tz_names.index(tz)
            areas = _areas_of(feed, s, own_areas)
        stop_area_vals.extend(sorted(set(areas)))
        stop_area_ptr[i + 1] = len(stop_area_vals)
    tz_ptr = [0]
    tz_from: list[int] = []
    tz_off: list[int] = []
    for name in tz_names:
        f, o = timezones[name] if timezones is not None and name in timezones else tz_transitions(name)
        tz_from.extend(f)
        tz_off.extend(o)
        tz_ptr.append(len(tz_from))

    # services and timeframes
    service_ids, svc_day0, svc_bits = _service_days(feed)
    svc_ix = _indexer(service_ids)
    tf_rows: list[list[tuple[int, int, int]]] = [[] for _ in tf_group_ids]
    for tf in feed.timeframes:
        tf_rows[tfg_ix[tf.timeframe_group_id]].append((tf.start_s, tf.end_s, svc_ix[tf.service_id]))
    tf_ptr = [0]
    tf_start: list[int] = []
    tf_end: list[int] = []
    tf_svc: list[int] = []
    for rows in tf_rows:
        for a, b, v in rows:
            tf_start.append(a)
            tf_end.append(b)
            tf_svc.append(v)
        tf_ptr.append(len(tf_start))

    # products: the cheapest eligible row per (product, category, medium)
    n_cat, n_med = len(category_ids), len(media_ids)
    price = np.full((len(product_ids), n_cat + 1, n_med + 1), NO_PRICE, dtype=np.int64)
    default_cat: dict[str, int] = {}
    for p in feed.fare_products:
        rc = p.rider_category_id
        if rc is not None and feed.rider_categories.get(rc) is not None:
            if feed.rider_categories[rc].is_default_fare_category:
                default_cat[p.fare_product_id] = cat_ix[rc]
    for p in feed.fare_products:
        if abs(p.amount_minor) > AMOUNT_MAX_FEN:
            raise ValueError(
                f"fare product {p.fare_product_id!r}: |amount| {p.amount_minor} above AMOUNT_MAX_FEN ({AMOUNT_MAX_FEN})"
            )
        pi = prod_ix[p.fare_product_id]
        cats = range(n_cat) if p.rider_category_id is None else [cat_ix[p.rider_category_id]]
        meds = range(n_med) if p.fare_media_id is None else [med_ix[p.fare_media_id]]
        # the rider who names no category is the product's default rider, or any
        # rider if the product has no default (empty-category rows)
        cat_cols = list(cats)
        if p.rider_category_id is None or default_cat.get(p.fare_product_id) == cat_ix.get(
            p.rider_category_id or ""
        ):
            cat_cols.append(n_cat)
        med_cols = list(meds) + [n_med]
        for c in cat_cols:
            for m in med_cols:
                cur = price[pi, c, m]
                if cur == NO_PRICE or p.amount_minor < cur:
                    price[pi, c, m] = p.amount_minor

    # leg rules
    n_areas = len(area_ids)
    rows = []
    for order, lr in enumerate(feed.fare_leg_rules):
        fields = (
            net_ix[lr.network_id] if lr.network_id is not None else NONE,
            area_ix[lr.from_area_id] if lr.from_area_id is not None else NONE,
            area_ix[lr.to_area_id] if lr.to_area_id is not None else NONE,
            tfg_ix[lr.from_timeframe_group_id] if lr.from_timeframe_group_id is not None else NONE,
            tfg_ix[lr.to_timeframe_group_id] if lr.to_timeframe_group_id is not None else NONE,
        )
        key = (fields[0] + 1) * (n_areas + 1) + (fields[1] + 1)
        rows.append(
            (
                key,
                *fields,
                grp_ix[lr.leg_group_id] if lr.leg_group_id is not None else NONE,
                prod_ix[lr.fare_product_id],
                lr.rule_priority or 0,
                sum(1 for f in fields if f != NONE),
                order,
            )
        )
    rows.sort(key=lambda r: (r[0], r[-1]))
    cols = list(zip(*rows)) if rows else [()] * 11
    i32 = functools.partial(np.array, dtype=np.int32)
    network_listed = np.zeros(len(network_ids), dtype=np.uint8)
    from_area_listed = np.zeros(n_areas, dtype=np.uint8)
    to_area_listed = np.zeros(n_areas, dtype=np.uint8)
    for r in rows:
        if r[1] != NONE:
            network_listed[r[1]] = 1
        if r[2] != NONE:
            from_area_listed[r[2]] = 1
        if r[3] != NONE:
            to_area_listed[r[3]] = 1

    # transfer rules
    tr = feed.fare_transfer_rules
    from_group_listed = np.zeros(len(leg_group_ids), dtype=np.uint8)
    to_group_listed = np.zeros(len(leg_group_ids), dtype=np.uint8)
    for t in tr:
        if t.from_leg_group_id is not None:
            from_group_listed[grp_ix[t.from_leg_group_id]] = 1
        if t.to_leg_group_id is not None:
            to_group_listed[grp_ix[t.to_leg_group_id]] = 1

    def gix(x: str | None) -> int:
        return grp_ix[x] if x is not None and x in grp_ix else NONE

    jr = feed.fare_leg_join_rules
    return FareTables(
        currency=currency,
        has_rule_priority=feed.has_rule_priority,
        route_ids=route_ids,
        stop_ids=stop_ids,
        network_ids=network_ids,
        area_ids=area_ids,
        leg_group_ids=leg_group_ids,
        product_ids=product_ids,
        rider_category_ids=category_ids,
        fare_media_ids=media_ids,
        agency_ids=agency_ids,
        timeframe_group_ids=tf_group_ids,
        tz_names=tz_names,
        route_network=route_network,
        route_agency=route_agency,
        route_known=np.array([r in feed.routes for r in route_ids], dtype=np.uint8),
        stop_station=stop_station,
        stop_known=np.array([s in feed.stops for s in stop_ids], dtype=np.uint8),
        stop_tz=stop_tz,
        stop_area_ptr=stop_area_ptr,
        stop_area=i32(stop_area_vals),
        tz_ptr=i32(tz_ptr),
        tz_from_us=np.array(tz_from, dtype=np.int64),
        tz_offset_s=np.array(tz_off, dtype=np.int64),
        svc_day0=svc_day0,
        svc_bits=np.ascontiguousarray(svc_bits),
        tf_ptr=i32(tf_ptr),
        tf_start_s=i32(tf_start),
        tf_end_s=i32(tf_end),
        tf_service=i32(tf_svc),
        price=price,
        lr_keys=np.array(cols[0], dtype=np.int64),
        lr_network=i32(cols[1]),
        lr_from_area=i32(cols[2]),
        lr_to_area=i32(cols[3]),
        lr_from_tf=i32(cols[4]),
        lr_to_tf=i32(cols[5]),
        lr_group=i32(cols[6]),
        lr_product=i32(cols[7]),
        lr_priority=i32(cols[8]),
        lr_nspec=i32(cols[9]),
        lr_order=i32(cols[10]),
        network_listed=network_listed,
        from_area_listed=from_area_listed,
        to_area_listed=to_area_listed,
        stop_from_empty=_empty_matches(stop_area_ptr, stop_area_vals, from_area_listed, feed.has_rule_priority, gtfs_rules),
        stop_to_empty=_empty_matches(stop_area_ptr, stop_area_vals, to_area_listed, feed.has_rule_priority, gtfs_rules),
        tr_from_group=i32([gix(t.from_leg_group_id) for t in tr]),
        tr_to_group=i32([gix(t.to_leg_group_id) for t in tr]),
        tr_count=i32([t.transfer_count if t.transfer_count is not None else -1 for t in tr]),
        tr_duration_s=np.array(
            [t.duration_limit if t.duration_limit is not None else -1 for t in tr], dtype=np.int64
        ),
        tr_duration_type=i32([t.duration_limit_type or 0 for t in tr]),
        tr_type=i32([t.fare_transfer_type for t in tr]),
        tr_product=i32(
            [prod_ix[t.fare_product_id] if t.fare_product_id is not None else NONE for t in tr]
        ),
        from_group_listed=from_group_listed,
        to_group_listed=to_group_listed,
        jr_from_network=i32([net_ix[j.from_network_id] for j in jr]),
        jr_to_network=i32([net_ix[j.to_network_id] for j in jr]),
        jr_from_stop=i32([stop_ix[j.from_stop_id] if j.from_stop_id else NONE for j in jr]),
        jr_to_stop=i32([stop_ix[j.to_stop_id] if j.to_stop_id else NONE for j in jr]),
    )
