"""What the ledger's engines need to charge taps under one fare-system version.

`FareTables` price journeys; `TapTables` adds the transit-card rules of the
system's `fares.toml` as integer arrays: who is paid for each route, which
networks are metered or gated (entry/exit), the caps and spend tiers, the
negative balance each product allows, and which rider category each card
category code rates as. Both engines (the core and the reference) read these
same arrays; a ledger holds one TapTables per installed version, ordered by
`effective_from_us`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from ..schema import (  # (the modes and periods are schema's: the engines read them too)
    FARE_CAPS_MAX,
    FARE_TIERS_MAX,
    INT64_MAX,
    MODE_GATED,
    MODE_METERED,
    PERIOD_DAY,
    PERIOD_MONTH,
    PERIOD_ROLLING_7D,
    PERIOD_WEEK,
    US_PER_S,
)
from .tables import FareTables

if TYPE_CHECKING:  # (FareSystem sits above the engines that use these tables)
    from .system import FareSystem

_PERIODS = {"day": PERIOD_DAY, "week": PERIOD_WEEK, "rolling_7d": PERIOD_ROLLING_7D, "month": PERIOD_MONTH}


@dataclasses.dataclass
class TapTables:
    """One fare-system version as the engines charge taps with it."""

    effective_from_us: int
    fares: FareTables
    rider_category_of_code: np.ndarray  # int32[K]: card category code -> category index
    fare_media: int  # the medium taps are rated with (n_media: none given)
    journey_break_us: int
    day_start_s: int
    route_operator: np.ndarray  # uint64[R]: operator account paid for the route (0: none)
    network_mode: np.ndarray  # uint8[N]
    gate_max_fare_fen: np.ndarray  # int64[N]
    gate_timeout_us: np.ndarray  # int64[N]
    gate_incomplete_fen: np.ndarray  # int64[N]
    gate_same_station_fen: np.ndarray  # int64[N]: -1 = rate by the feed's rules
    network_allowance_fen: np.ndarray  # int64[N]: largest negative balance its products allow
    product_allowance_fen: np.ndarray  # int64[P]
    cap_period: np.ndarray  # int32[caps]
    cap_amount_fen: np.ndarray  # int64[caps]
    cap_category: np.ndarray  # uint8[caps, C+1]
    cap_network: np.ndarray  # uint8[caps, N]
    tier_from_fen: np.ndarray  # int64[tiers]
    tier_until_fen: np.ndarray  # int64[tiers]: INT64_MAX = no upper bound
    tier_percent_off: np.ndarray  # int32[tiers]
    tier_category: np.ndarray  # uint8[tiers, C+1]
    tier_network: np.ndarray  # uint8[tiers, N]

    def rider_category(self, code: int) -> int:
        """Category index a card with category `code` is rated as (default rider if unmapped)."""
        if 0 <= code < len(self.rider_category_of_code):
            return int(self.rider_category_of_code[code])
        return self.fares.n_categories


def compile_taps(system: FareSystem, effective_from_us: int) -> TapTables:
    """Build the TapTables of a `FareSystem` coming into force at `effective_from_us`."""
    t = system.tables
    cfg = system.config
    n_net, n_cat = len(t.network_ids), t.n_categories
    net_ix = {n: i for i, n in enumerate(t.network_ids)}
    cat_ix = {c: i for i, c in enumerate(t.rider_category_ids)}
    max_code = max(cfg.rider_categories, default=-1)
    of_code = np.full(max_code + 1, n_cat, dtype=np.int32)
    for code, cat in cfg.rider_categories.items():
        of_code[code] = cat_ix[cat]
    media = t.fare_media_ids.index(cfg.fare_media_id) if cfg.fare_media_id else t.n_media

    route_operator = np.zeros(len(t.route_ids), dtype=np.uint64)
    for r, ag in enumerate(t.route_agency.tolist()):
        if ag >= 0:
            route_operator[r] = cfg.operators.get(t.agency_ids[ag], 0)

    mode = np.zeros(n_net, dtype=np.uint8)
    for n in cfg.metered_network_ids:
        mode[net_ix[n]] = MODE_METERED
    gmax = np.zeros(n_net, dtype=np.int64)
    gtimeout = np.zeros(n_net, dtype=np.int64)
    gincomplete = np.zeros(n_net, dtype=np.int64)
    gsame = np.full(n_net, -1, dtype=np.int64)
    for e in cfg.entry_exit:
        i = net_ix[e.network_id]
        mode[i] = MODE_GATED
        gmax[i] = e.max_fare_minor
        gtimeout[i] = e.incomplete_timeout_s * US_PER_S
        gincomplete[i] = e.incomplete_charge_minor
        if e.same_station_charge_minor is not None:
            gsame[i] = e.same_station_charge_minor

    prod_ix = {p: i for i, p in enumerate(t.product_ids)}
    product_allowance = np.zeros(len(t.product_ids), dtype=np.int64)
    for p, amount in cfg.negative_balance_minor.items():
        product_allowance[prod_ix[p]] = amount
    network_allowance = np.zeros(n_net, dtype=np.int64)
    for net, prod in zip(t.lr_network.tolist(), t.lr_product.tolist()):
        nets = range(n_net) if net < 0 else [net]
        for n in nets:
            network_allowance[n] = max(network_allowance[n], product_allowance[prod])

    if len(cfg.caps) > FARE_CAPS_MAX:
        raise ValueError(f"a fare system may configure at most {FARE_CAPS_MAX} caps")
    if len(cfg.tiers) > FARE_TIERS_MAX:
        raise ValueError(f"a fare system may configure at most {FARE_TIERS_MAX} spend tiers")

    def cat_mask(ids: tuple[str, ...] | None) -> np.ndarray:
        m = np.zeros(n_cat + 1, dtype=np.uint8)
        if ids is None:
            m[:] = 1
        else:
            for c in ids:
                m[cat_ix[c]] = 1
        return m

    def net_mask(ids: tuple[str, ...] | None) -> np.ndarray:
        m = np.zeros(n_net, dtype=np.uint8)
        if ids is None:
            m[:] = 1
        else:
            for n in ids:
                m[net_ix[n]] = 1
        return m

    def stack(rows: list[np.ndarray], width: int) -> np.ndarray:
        return np.array(rows, dtype=np.uint8).reshape(len(rows), width)

    return TapTables(
        effective_from_us=int(effective_from_us),
        fares=t,
        rider_category_of_code=of_code,
        fare_media=media,
        journey_break_us=cfg.journey_break_s * US_PER_S,
        day_start_s=cfg.day_start_s,
        route_operator=route_operator,
        network_mode=mode,
        gate_max_fare_fen=gmax,
        gate_timeout_us=gtimeout,
        gate_incomplete_fen=gincomplete,
        gate_same_station_fen=gsame,
        network_allowance_fen=network_allowance,
        product_allowance_fen=product_allowance,
        cap_period=np.array([_PERIODS[c.period] for c in cfg.caps], dtype=np.int32),
        cap_amount_fen=np.array([c.amount_minor for c in cfg.caps], dtype=np.int64),
        cap_category=stack([cat_mask(c.rider_category_ids) for c in cfg.caps], n_cat + 1),
        cap_network=stack([net_mask(c.network_ids) for c in cfg.caps], n_net),
        tier_from_fen=np.array([x.from_minor for x in cfg.tiers], dtype=np.int64),
        tier_until_fen=np.array(
            [x.until_minor if x.until_minor is not None else INT64_MAX for x in cfg.tiers],
            dtype=np.int64,
        ),
        tier_percent_off=np.array([x.percent_off for x in cfg.tiers], dtype=np.int32),
        tier_category=stack([cat_mask(x.rider_category_ids) for x in cfg.tiers], n_cat + 1),
        tier_network=stack([net_mask(x.network_ids) for x in cfg.tiers], n_net),
    )
