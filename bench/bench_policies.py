#!/usr/bin/env python
"""What a set of source policies costs SPEND and TOPUP through `Ledger.apply` (durable).

    python bench/bench_policies.py [--cards 1000000] [--policies 10000] [--batches 40] [--repeat 8]

Two ledgers built alike on a temporary directory: the cards are opened and topped up
and every source applies one op, untimed; then every repeat times batches of 8,192 ops
from 100,000 sources at random (SPEND at random cards into merchant 2, then TOPUP from
clearing 1), each batch applied to both ledgers one after the other, in alternating
order, with a set of N policies in force in one of them (each ten sources allowed
SPEND and TOPUP into 2 to 9 listed counterparties up to an amount: every timed op
passes the full check) and none in the other, the two swapping roles every repeat; it
prints each repeat's ratio and their median. Pairs of batches milliseconds apart share
the machine's drift and fsync's moods, which runs seconds apart did not. This is the
durable path the throughput targets are stated on (docs/performance.md);
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
    cards = np.arange(1_000_000, 1_000_000 + a.cards, dtype=np.uint64)
    setup = [mk(2, OpKind.OPEN, np.array([1, 2]), 0, 0, np.array([AccountKind.CLEARING, AccountKind.MERCHANT]))]
    for i in range(0, a.cards, 65_536):
        c = cards[i : i + 65_536]
        setup += [mk(len(c), OpKind.OPEN, c, 0, 0, AccountKind.CARD), mk(len(c), OpKind.TOPUP, c, 1, 100_000)]
    # Every source once, untimed: the timed batches then add no source to the tables.
    for lo in range(0, n_sources, 65_536):
        src = 1000 + np.arange(lo, min(lo + 65_536, n_sources))
        setup.append(mk(len(src), OpKind.SPEND, cards[(src - 1000) % len(cards)], 2, 1, sources=src))
    with tempfile.TemporaryDirectory(prefix="bench-policies-") as d, \
            cardledger.open(d + "/a", create=True) as led_a, cardledger.open(d + "/b", create=True) as led_b:
        for led in (led_a, led_b):
            for ops in setup:
                led.apply(ops)
        del setup
        ratios: dict[str, list[float]] = {}
        for r in range(a.repeat):
            # The set in force in one ledger, the other in every other repeat.
            sides = {"none": (led_a, led_b)[r % 2], "set": (led_b, led_a)[r % 2]}
            sides["none"].install_policies(None)
            sides["set"].install_policies(policies)
            for label, kind, cp in (("SPEND random", OpKind.SPEND, 2), ("TOPUP random", OpKind.TOPUP, 1)):
                dt = dict.fromkeys(sides, 0.0)
                for b in range(a.batches):
                    ops = mk(a.batch, kind, rng.choice(cards, a.batch), cp, 1,
                             sources=1000 + rng.integers(0, n_sources, a.batch))
                    for side in ("none", "set") if b % 2 == 0 else ("set", "none"):
                        t = time.perf_counter()
                        res = sides[side].apply(ops)
                        dt[side] += time.perf_counter() - t
                        assert (res["code"] == 0).all(), ("every timed op is allowed", np.unique(res["code"]))
                rate = {side: a.batches * a.batch / t for side, t in dt.items()}
                ratios.setdefault(label, []).append(rate["set"] / rate["none"])
                print(f"repeat {r}: {label}: none {rate['none']:>12,.0f} ops/s  set of {a.policies} "
                      f"{rate['set']:>12,.0f} ops/s  ratio {rate['set'] / rate['none']:.3f}", flush=True)
        for label, rs in ratios.items():
            print(f"{label}: ratio with the set / without: median {float(np.median(rs)):.3f}, geometric mean "
                  f"{float(np.exp(np.mean(np.log(rs)))):.3f} over {len(rs)} repeats (range {min(rs):.3f}-{max(rs):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
