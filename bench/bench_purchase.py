#!/usr/bin/env python
"""PURCHASE against plain SPEND, through `Ledger.apply`, durable, in the same run.

    python bench/bench_purchase.py [--cards 1000000 --merchants 10000 --offers-per-merchant 5
        --campaigns 20 --ops 2000000 --batch 8192 --rounds 4 --no-reserve --dir DIR]

A city of N cards (each topped up) and M merchants, an offer catalog in force with a
few offers per merchant (percent off, 满X减Y, 每满X减Y, day and month limits, budgets,
union shares, lunch hours) plus city-wide campaign offers for every merchant: 50,000
offers with the defaults. The cards' offer counters are reserved before the timed rounds
(`Ledger.reserve_offer_counters()`, one per card, as a ledger before its lunch hour;
`--no-reserve` times their growth instead). Then the same random (card, merchant, amount) ops, at lunch
time, as PURCHASE and as SPEND, in batches of --batch, alternating SPEND and PURCHASE
rounds so drift hits both alike. Reports ops/s of each (time inside `apply`: one
durable commit per batch) and their ratio. docs/performance-log.md has the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time

import numpy as np

import cardledger
from cardledger import AccountKind, OfferCatalog, OpKind

#: 2026-12-07 12:00 Asia/Shanghai: lunch, a Monday
LUNCH_US = int(dt.datetime(2026, 12, 7, 12, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()) * 1_000_000
CLEARING, UNION, MERCHANT0, CARD0 = 1, 2, 10_000, 1_000_000


def catalog(merchants: int, per_merchant: int, campaigns: int, rng: np.random.Generator) -> OfferCatalog:
    """The catalog: `per_merchant` offers at each merchant, `campaigns` for every merchant."""
    ms = [{"id": MERCHANT0 + m, "name": f"商户{m}", "group": f"g{m % 20}"} for m in range(merchants)]
    offers = []
    kinds = (
        {"percent_off_bp": 500},
        {"amount_off_fen": 2_000, "min_gross_fen": 10_000},
        {"amount_off_fen": 500, "every_fen": 5_000, "max_discount_fen": 3_000},
        {"percent_off_bp": 1_000, "per_card_day_count": 1, "hours": ["11:00-14:00"]},
        {"percent_off_bp": 800, "per_card_month_discount_fen": 5_000, "budget_fen": 10_000_000,
         "union_share_bp": 5_000, "union_account": UNION},
    )
    for m in range(merchants):
        for k in range(per_merchant):
            offers.append({"id": f"m{m}-{k}", "merchants": [MERCHANT0 + m], **kinds[(m + k) % len(kinds)]})
    for c in range(campaigns):
        offers.append({"id": f"city-{c}", "percent_off_bp": int(rng.integers(100, 600)), "days_of_week": [1, 2, 3, 4, 5],
                       "budget_fen": 1_000_000_000, "union_share_bp": 10_000, "union_account": UNION})
    return OfferCatalog.from_dict({"merchant": ms, "offer": offers})


def open_city(base: str, n_cards: int, n_merchants: int, per_merchant: int, campaigns: int,
              rng: np.random.Generator) -> tuple:
    """A new ledger in `base`/ledger holding the city: the clearing account, the union's
    fund, `n_merchants` merchants, `n_cards` cards each topped up, and the catalog in
    force. Returns (ledger, mk, cards, merchants, catalog); `mk(n, kind)` makes n ops of
    `kind` at lunch with the next ids of source 7."""
    os.makedirs(base, exist_ok=True)
    led = cardledger.open(os.path.join(base, "ledger"), create=True)
    seq = [0]

    def mk(n: int, kind: int) -> np.ndarray:
        ops = cardledger.new_ops(n)
        ops["source"], ops["seq"] = 7, np.arange(seq[0] + 1, seq[0] + n + 1)
        seq[0] += n
        ops["kind"] = kind
        ops["time_us"] = LUNCH_US
        return ops

    ops = mk(2, OpKind.OPEN)
    ops["account_id"], ops["account_kind"] = [CLEARING, UNION], [AccountKind.CLEARING, AccountKind.SUBSIDY]
    led.apply(ops)
    ops = mk(1, OpKind.TRANSFER)
    ops["account_id"], ops["counterparty_id"], ops["amount_fen"] = CLEARING, UNION, 10**15
    led.apply(ops)
    merchants = np.arange(MERCHANT0, MERCHANT0 + n_merchants, dtype=np.uint64)
    ops = mk(len(merchants), OpKind.OPEN)
    ops["account_id"], ops["account_kind"] = merchants, AccountKind.MERCHANT
    led.apply(ops)
    cards = np.arange(CARD0, CARD0 + n_cards, dtype=np.uint64)
    for i in range(0, n_cards, 65_536):
        c = cards[i : i + 65_536]
        ops = mk(len(c), OpKind.OPEN)
        ops["account_id"], ops["account_kind"] = c, AccountKind.CARD
        led.apply(ops)
        ops = mk(len(c), OpKind.TOPUP)
        ops["account_id"], ops["counterparty_id"], ops["amount_fen"] = c, CLEARING, 400_000
        led.apply(ops)
    cat = catalog(n_merchants, per_merchant, campaigns, rng)
    led.install_offers(cat, 0)
    return led, mk, cards, merchants, cat


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", type=int, default=1_000_000)
    p.add_argument("--merchants", type=int, default=10_000)
    p.add_argument("--offers-per-merchant", type=int, default=5)
    p.add_argument("--campaigns", type=int, default=20)
    p.add_argument("--ops", type=int, default=2_000_000, help="purchases (and as many spends) timed")
    p.add_argument("--batch", type=int, default=8192)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--no-reserve", action="store_true",
                   help="do not reserve the cards' offer counters first (their growth is then timed)")
    p.add_argument("--dir", default=None, help="where the ledger goes (default: a temporary directory)")
    a = p.parse_args()
    rng = np.random.default_rng(7)
    base = a.dir or tempfile.mkdtemp(prefix="cardledger-purchase-")
    t = time.perf_counter()
    led, mk, cards, merchants, cat = open_city(base, a.cards, a.merchants, a.offers_per_merchant, a.campaigns, rng)
    print(f"engine {led.implementation}; ledger in {base}")
    if not a.no_reserve:
        led.reserve_offer_counters()  # as a ledger before its lunch hour (docs/purchases.md)
    print(f"setup: {a.cards:,} cards, {a.merchants:,} merchants, {len(cat.offers):,} offers "
          f"in {time.perf_counter() - t:.1f} s")

    per_round = max(a.batch, a.ops // a.rounds // a.batch * a.batch)
    spent = {OpKind.SPEND: 0.0, OpKind.PURCHASE: 0.0}
    done = {OpKind.SPEND: 0, OpKind.PURCHASE: 0}
    discounted = 0
    for r in range(a.rounds):
        card = rng.choice(cards, per_round)
        merchant = rng.choice(merchants, per_round)
        amount = rng.integers(100, 20_000, per_round)
        for kind in ((OpKind.SPEND, OpKind.PURCHASE) if r % 2 == 0 else (OpKind.PURCHASE, OpKind.SPEND)):
            for i in range(0, per_round, a.batch):
                ops = mk(a.batch, kind)
                ops["account_id"], ops["counterparty_id"] = card[i : i + a.batch], merchant[i : i + a.batch]
                ops["amount_fen"] = amount[i : i + a.batch]
                ops["time_us"] = LUNCH_US + ops["seq"] % 3_600_000_000  # within the lunch hour
                t = time.perf_counter()
                res = led.apply(ops)
                spent[kind] += time.perf_counter() - t
                done[kind] += len(ops)
                if kind == OpKind.PURCHASE:
                    discounted += int(((res["code"] == 0) & (res["discounts"] > 0)).sum())
        print(f"round {r}: spend {done[OpKind.SPEND] / spent[OpKind.SPEND]:>12,.0f} ops/s, "
              f"purchase {done[OpKind.PURCHASE] / spent[OpKind.PURCHASE]:>12,.0f} ops/s")
    s = done[OpKind.SPEND] / spent[OpKind.SPEND]
    q = done[OpKind.PURCHASE] / spent[OpKind.PURCHASE]
    print(f"SPEND    {s:>12,.0f} ops/s ({done[OpKind.SPEND]:,} ops)")
    print(f"PURCHASE {q:>12,.0f} ops/s ({done[OpKind.PURCHASE]:,} ops, {discounted:,} discounted)")
    print(f"PURCHASE / SPEND = {q / s:.2f}")
    led.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
