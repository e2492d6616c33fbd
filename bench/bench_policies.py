#!/usr/bin/env python
"""What a set of source policies costs SPEND and TOPUP through `Ledger.apply` (durable).

    python bench/bench_policies.py [--cards 1000000] [--policies 10000] [--batches 40] [--repeat 8]

One ledger on a temporary directory: the cards are opened and topped up, then every
repeat times the same kind of batches (8,192 ops from 100,000 sources at random, SPEND
at random cards into merchant 2, then TOPUP from clearing 1) with no set in force
(`install_policies(None)`) and with a set of N policies (each ten sources allowed SPEND
and TOPUP into 2 to 9 listed counterparties up to an amount: every timed op passes the
full check), in alternating order, and prints each pair's ratio and their median. This
is the durable path the throughput targets are stated on (docs/performance.md);
bench/bench_kernel.py --policies times the kernel alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np

import cardledger
from cardledger import AccountKind, OpKind, SourcePolicy

T0_US = 1_767_225_600_000_000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", type=int, default=1_000_000)
    p.add_argument("--policies", type=int, default=10_000)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--batch", type=int, default=8192)
    p.add_argument("--repeat", type=int, default=8)
    a = p.parse_args()
    rng = np.random.default_rng(1)
    n_sources = a.policies * 10
    seqs = np.zeros(1000 + n_sources, dtype=np.uint64)  # the last seq of each source

    def mk(n: int, kind: OpKind, acct, cp, amt, ak=0, sources=None) -> np.ndarray:
        ops = cardledger.new_ops(n)
        src = np.full(n, 7, dtype=np.uint64) if sources is None else sources.astype(np.uint64)
        # seqs rise per source: the k-th op of a source in this batch gets last + k
        order = np.argsort(src, kind="stable")
        s = src[order]
        first = np.r_[True, s[1:] != s[:-1]]
        run_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
        rank = np.arange(n) - run_start + 1
        seq = np.empty(n, dtype=np.uint64)
        seq[order] = seqs[s] + rank.astype(np.uint64)
        np.maximum.at(seqs, src, seq)
        ops["source"], ops["seq"], ops["kind"] = src, seq, kind
        ops["account_id"], ops["counterparty_id"], ops["amount_fen"], ops["account_kind"] = acct, cp, amt, ak
        ops["time_us"] = T0_US
        return ops

    policies = [SourcePolicy(1000 + 10 * i, 1009 + 10 * i, [OpKind.SPEND, OpKind.TOPUP],
                             counterparties=[1, 2] + [10 + j for j in range(i % 8)], amount_max_fen=50_000)
                for i in range(a.policies)]
    with tempfile.TemporaryDirectory(prefix="bench-policies-") as d, \
            cardledger.open(d + "/ledger", create=True) as led:
        led.apply(mk(2, OpKind.OPEN, np.array([1, 2]), 0, 0, np.array([AccountKind.CLEARING, AccountKind.MERCHANT])))
        cards = np.arange(1_000_000, 1_000_000 + a.cards, dtype=np.uint64)
        for i in range(0, a.cards, 65_536):
            c = cards[i : i + 65_536]
            led.apply(mk(len(c), OpKind.OPEN, c, 0, 0, AccountKind.CARD))
            led.apply(mk(len(c), OpKind.TOPUP, c, 1, 100_000))
        ratios: dict[str, list[float]] = {}
        for r in range(a.repeat):
            for label, kind, cp in (("SPEND random", OpKind.SPEND, 2), ("TOPUP random", OpKind.TOPUP, 1)):
                rate = {}
                for mode in ("none", "set") if r % 2 == 0 else ("set", "none"):
                    led.install_policies(policies if mode == "set" else None)
                    batches = [mk(a.batch, kind, rng.choice(cards, a.batch), cp, 1,
                                  sources=1000 + rng.integers(0, n_sources, a.batch)) for _ in range(a.batches)]
                    t = time.perf_counter()
                    for ops in batches:
                        res = led.apply(ops)
                    dt = time.perf_counter() - t
                    assert (res["code"] == 0).all(), ("every timed op is allowed", np.unique(res["code"]))
                    rate[mode] = a.batches * a.batch / dt
                ratios.setdefault(label, []).append(rate["set"] / rate["none"])
                print(f"repeat {r}: {label}: none {rate['none']:>12,.0f} ops/s  set of {a.policies} "
                      f"{rate['set']:>12,.0f} ops/s  ratio {rate['set'] / rate['none']:.3f}", flush=True)
        for label, rs in ratios.items():
            print(f"{label}: median ratio with the set / without {float(np.median(rs)):.3f} over {len(rs)} pairs "
                  f"(range {min(rs):.3f}-{max(rs):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
