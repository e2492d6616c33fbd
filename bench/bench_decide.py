#!/usr/bin/env python
"""PURCHASE alone on bench_purchase.py's city, each batch timed, for comparing code.

    python bench/bench_decide.py [--cards 1000000 --purchases 1000000 --batch 8192 --dir DIR]

The same city, catalog and random purchases as bench_purchase.py (1M cards, 10,000
merchants, 50,020 offers), but no SPEND rounds: every batch of purchases is timed
alone, and the median and 90th percentile of the batches' rates are printed beside the
mean, so that a batch slowed by another process on the machine (or by a table's
growth) moves the mean more than the median. Run two builds alternately and compare.

For instruction counts (which do not drift with the machine's load), run it under
callgrind with `--toggle-collect='__pyx_pw_10cardledger_5_core_6Engine_*apply'` and
subtract a run with `--purchases 0` (the setup's ops). docs/performance-log.md has the
figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_purchase as city  # noqa: E402  (the city and its catalog)

from cardledger import OpKind  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", type=int, default=1_000_000)
    p.add_argument("--merchants", type=int, default=10_000)
    p.add_argument("--purchases", type=int, default=1_000_000, help="timed (whole batches; 0: the setup alone)")
    p.add_argument("--batch", type=int, default=8192)
    p.add_argument("--dir", default=None, help="where the ledger goes (default: a temporary directory)")
    a = p.parse_args()
    rng = np.random.default_rng(7)
    base = a.dir or tempfile.mkdtemp(prefix="cardledger-decide-")
    led, mk, cards, merchants, _ = city.open_city(base, a.cards, a.merchants, 5, 20, rng)
    n = a.purchases // a.batch * a.batch
    card, merchant = rng.choice(cards, n), rng.choice(merchants, n)
    amount = rng.integers(100, 20_000, n)
    rates, chosen = [], 0
    for i in range(0, n, a.batch):
        ops = mk(a.batch, OpKind.PURCHASE)
        ops["account_id"], ops["counterparty_id"] = card[i : i + a.batch], merchant[i : i + a.batch]
        ops["amount_fen"] = amount[i : i + a.batch]
        ops["time_us"] = city.LUNCH_US + ops["seq"] % 3_600_000_000  # within the lunch hour
        t = time.perf_counter()
        res = led.apply(ops)
        rates.append(a.batch / (time.perf_counter() - t))
        chosen += int(res["discounts"].astype(np.int64).sum())
    led.close()
    if not rates:
        print("setup only")
        return 0
    r = np.array(rates)
    print(f"PURCHASE median {np.median(r):,.0f} p90 {np.percentile(r, 90):,.0f} "
          f"mean {len(r) * a.batch / (a.batch / r).sum():,.0f} ops/s ({n:,} ops; offers chosen, summed: {chosen})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
