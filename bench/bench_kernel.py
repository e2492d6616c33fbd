#!/usr/bin/env python
"""The core's batch loop alone (no storage): SPEND batches over N cards.

    python bench/bench_kernel.py --cards 1000000 --batches 100 [--repeat 5]

Drives the core's `Engine.apply` (`cardledger.Engine`) directly, so it measures the
kernel without LMDB, hashing or encoding (the decisions window is emptied every 2^16
decisions, as the ledger's id flush does, untimed): random cards (every access a cache
miss) and 1,000 hot cards. Prints ops/s per repeat: this machine is noisy, so A/B two
builds by alternating runs (PYTHONPATH=<other build>/src python bench/bench_kernel.py).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import cardledger
from cardledger import AccountKind, OpKind

#: Decisions held before the window is emptied (the ledger's IDS_FLUSH_OPS_DEFAULT): a
#: window left to grow would time its rehashing and page faults, not the loop.
WINDOW_OPS = 1 << 16


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", type=int, default=1_000_000)
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--batch", type=int, default=8192)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    if cardledger.IMPLEMENTATION != "cython":
        print("bench_kernel: the Cython core is not built (pip install -e . with a C compiler)", file=sys.stderr)
        return 2
    e = cardledger.Engine()
    seq = [0]

    def mk(n, kind, acct, cp, amt, ak=0):
        ops = cardledger.new_ops(n)
        ops["source"], ops["seq"] = 7, np.arange(seq[0] + 1, seq[0] + n + 1)
        seq[0] += n
        ops["kind"], ops["account_id"], ops["counterparty_id"] = kind, acct, cp
        ops["amount_fen"], ops["account_kind"] = amt, ak
        ops["time_us"] = 1_767_225_600_000_000 + ops["seq"]  # the ledger refuses time 0
        return ops

    e.apply(mk(2, OpKind.OPEN, np.array([1, 2]), 0, 0, np.array([AccountKind.CLEARING, AccountKind.MERCHANT])))
    cards = np.arange(1_000_000, 1_000_000 + a.cards, dtype=np.uint64)
    for i in range(0, a.cards, 65_536):
        c = cards[i : i + 65_536]
        e.apply(mk(len(c), OpKind.OPEN, c, 0, 0, AccountKind.CARD))
        e.apply(mk(len(c), OpKind.TOPUP, c, 1, 100_000))
    e.take_decisions()
    rng = np.random.default_rng(1)
    for r in range(a.repeat):
        for label, pool in (("random", cards), ("hot 1k", cards[:1000])):
            batches = [mk(a.batch, OpKind.SPEND, rng.choice(pool, a.batch), 2, 1) for _ in range(a.batches)]
            dt = 0.0
            for ops in batches:
                t = time.perf_counter()
                e.apply(ops)
                dt += time.perf_counter() - t
                if e.recent_count >= WINDOW_OPS:
                    e.take_decisions()  # as the ledger's id flush does; not timed
            print(f"repeat {r}: {label:7s} {a.batches * a.batch / dt:>12,.0f} ops/s")
        e.take_decisions()
    return 0


if __name__ == "__main__":
    sys.exit(main())
