"""Offer catalogs compiled into flat integer tables: what the engines decide purchases by.

`compile_offers(catalog, effective_from_us, slots)` turns one installed catalog version
into an `OfferTables` of numpy arrays, so that a PURCHASE never scans the catalog:

- one row per offer, in catalog order (the order breaks ties): its discount terms, its
  limits, its funding, its `slot` (offers are numbered by id across every installed
  version, in the order they first appear: a later version with the same offer id
  continues its budget);
- its dates as local day numbers (days since 1970-01-01 in the catalog's zone;
  `valid_from` / `valid_to` inclusive; none: unbounded), its days of the week as a
  7-bit mask (bit 0: Monday), its hours as minute ranges [start, end) of the local day
  (CSR: `hour_off`), its card categories as a sorted array (CSR: `cat_off`; -1 in
  `cat_off` of an offer for every category);
- a per-merchant candidate index: `merchant_ids` sorted, `merchant_off` (CSR) into
  `merchant_offers` (offer rows, in catalog order), and `all_offers`, the offers of
  every merchant;
- the catalog zone's recorded UTC offsets (`tz_from_us`, `tz_offset_s`).

The engines (engine/spec/purchases.py and its core twin) read only these arrays.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from .catalog import MINUTES_PER_DAY, OfferCatalog

_EPOCH = dt.date(1970, 1, 1)
#: A date bound that is not set.
DAY_MIN = -(1 << 62)
DAY_MAX = 1 << 62
#: Every day of the week.
ALL_DAYS_MASK = 0x7F


@dataclass(frozen=True)
class OfferTables:
    """One installed catalog version, compiled (see the module docstring)."""

    start_us: int
    ids: tuple[str, ...]
    slot: np.ndarray  # i8, per offer
    percent_off_bp: np.ndarray  # i8
    amount_off_fen: np.ndarray  # i8
    min_gross_fen: np.ndarray  # i8
    every_fen: np.ndarray  # i8
    max_discount_fen: np.ndarray  # i8
    from_day: np.ndarray  # i8
    to_day: np.ndarray  # i8
    dow_mask: np.ndarray  # i8
    day_count: np.ndarray  # i8: per_card_day_count
    month_discount_fen: np.ndarray  # i8: per_card_month_discount_fen
    budget_fen: np.ndarray  # i8
    union_share_bp: np.ndarray  # i8
    union_account: np.ndarray  # u8
    hour_off: np.ndarray  # i8, n + 1
    hour_start: np.ndarray  # i8 minutes
    hour_end: np.ndarray  # i8 minutes
    cat_off: np.ndarray  # i8, n + 1; cat_all marks offers for every category
    cat_all: np.ndarray  # i8 (1: every category)
    cats: np.ndarray  # i8, sorted per offer
    merchant_ids: np.ndarray  # u8, sorted
    merchant_off: np.ndarray  # i8, len(merchant_ids) + 1
    merchant_offers: np.ndarray  # i8 offer rows
    all_offers: np.ndarray  # i8 offer rows
    tz_from_us: np.ndarray  # i8
    tz_offset_s: np.ndarray  # i8

    def __len__(self) -> int:
        return len(self.ids)


def _day(d: dt.date) -> int:
    return (d - _EPOCH).days


def compile_offers(catalog: OfferCatalog, start_us: int, slots: dict[str, int]) -> OfferTables:
    """Compile `catalog`, in force from `start_us`. `slots` maps every offer id of the
    versions before it to its slot; new ids are added to it (in catalog order)."""
    offers = catalog.offers

    def col(values: list[int], dtype: str = "<i8") -> np.ndarray:
        return np.array(values, dtype=dtype).reshape(len(values))

    for o in offers:
        if o.id not in slots:
            slots[o.id] = len(slots)
    hour_off, hour_start, hour_end = [0], [], []
    cat_off, cat_all, cats = [0], [], []
    by_merchant: dict[int, list[int]] = {}
    all_offers: list[int] = []
    for i, o in enumerate(offers):
        for start, end in o.hours if o.hours is not None else ((0, MINUTES_PER_DAY),):
            hour_start.append(start)
            hour_end.append(end)
        hour_off.append(len(hour_start))
        if o.categories is None:
            cat_all.append(1)
        else:
            cat_all.append(0)
            cats.extend(sorted(set(o.categories)))
        cat_off.append(len(cats))
        merchants = catalog.merchants_of(o)
        if merchants is None:
            all_offers.append(i)
        else:
            for m in merchants:
                by_merchant.setdefault(m, []).append(i)
    merchant_ids = sorted(by_merchant)
    merchant_off = [0]
    merchant_offers: list[int] = []
    for m in merchant_ids:
        merchant_offers.extend(by_merchant[m])  # appended in catalog order
        merchant_off.append(len(merchant_offers))
    froms, offsets = catalog.transitions
    return OfferTables(
        start_us=int(start_us),
        ids=tuple(o.id for o in offers),
        slot=col([slots[o.id] for o in offers]),
        percent_off_bp=col([o.percent_off_bp for o in offers]),
        amount_off_fen=col([o.amount_off_fen for o in offers]),
        min_gross_fen=col([o.min_gross_fen for o in offers]),
        every_fen=col([o.every_fen for o in offers]),
        max_discount_fen=col([o.max_discount_fen for o in offers]),
        from_day=col([DAY_MIN if o.valid_from is None else _day(o.valid_from) for o in offers]),
        to_day=col([DAY_MAX if o.valid_to is None else _day(o.valid_to) for o in offers]),
        dow_mask=col([ALL_DAYS_MASK if o.days_of_week is None else sum(1 << (d - 1) for d in set(o.days_of_week))
                      for o in offers]),
        day_count=col([o.per_card_day_count for o in offers]),
        month_discount_fen=col([o.per_card_month_discount_fen for o in offers]),
        budget_fen=col([o.budget_fen for o in offers]),
        union_share_bp=col([o.union_share_bp for o in offers]),
        union_account=col([o.union_account for o in offers], "<u8"),
        hour_off=col(hour_off),
        hour_start=col(hour_start),
        hour_end=col(hour_end),
        cat_off=col(cat_off),
        cat_all=col(cat_all),
        cats=col(cats),
        merchant_ids=col(merchant_ids, "<u8"),
        merchant_off=col(merchant_off),
        merchant_offers=col(merchant_offers),
        all_offers=col(all_offers),
        tz_from_us=col(list(froms)),
        tz_offset_s=col(list(offsets)),
    )


def compile_versions(versions: list[tuple[int, OfferCatalog]]) -> tuple[list[OfferTables], list[str]]:
    """Compile every installed version (oldest first): (tables, offer id of each slot)."""
    slots: dict[str, int] = {}
    tables = [compile_offers(catalog, start, slots) for start, catalog in versions]
    return tables, list(slots)
