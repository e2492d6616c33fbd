#!/usr/bin/env python
"""The core's batch loop alone (no storage): SPEND batches over N cards.

    python bench/bench_kernel.py --cards 1000000 --batches 100 [--repeat 5] [--policies 10000]

Drives the core's `Engine.apply` (`cardledger.Engine`) directly, so it measures the
kernel without LMDB, hashing or encoding (the decisions window is emptied every 2^16
decisions, as the ledger's id flush does, untimed): random cards (every access a cache
miss) and 1,000 hot cards. Prints ops/s per repeat: this machine is noisy, so A/B two
builds by alternating runs (PYTHONPATH=<other build>/src python bench/bench_kernel.py).

With --policies N, the ops come from N*10 sources, and two engines are built alike, a
set of N policies in force in one of them (each 10 sources allowed SPEND and TOPUP into
listed counterparties, up to an amount), the second in even repeats, the first in odd
ones: every batch is applied to both, one after the other in alternating order, and
each repeat prints the rates and their ratio (docs/policies.md). Pairs of batches
milliseconds apart see the same machine, which runs seconds apart did not; swapping
the engines cancels what differs between two engines built alike. Use an even --repeat.
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
    p.add_argument("--policies", type=int, default=0, help="compare with a set of this many policies in force")
    p.add_argument("--mode", choices=("alternate", "none", "set"), default="alternate",
                   help="with --policies: time both (alternating), or only one (for callgrind)")
    a = p.parse_args()
    if cardledger.IMPLEMENTATION != "cython":
        print("bench_kernel: the Cython core is not built (pip install -e . with a C compiler)", file=sys.stderr)
        return 2
    seq = [0]
    rng = np.random.default_rng(1)
    n_sources = a.policies * 10

    def mk(n, kind, acct, cp, amt, ak=0):
        ops = cardledger.new_ops(n)
        ops["source"], ops["seq"] = 7, np.arange(seq[0] + 1, seq[0] + n + 1)
        if n_sources and kind != OpKind.OPEN:
            ops["source"] = 1000 + rng.integers(0, n_sources, n)  # (seqs rise per source too)
        seq[0] += n
        ops["kind"], ops["account_id"], ops["counterparty_id"] = kind, acct, cp
        ops["amount_fen"], ops["account_kind"] = amt, ak
        ops["time_us"] = 1_767_225_600_000_000 + ops["seq"]  # the ledger refuses time 0
        return ops

    cards = np.arange(1_000_000, 1_000_000 + a.cards, dtype=np.uint64)
    setup = [mk(2, OpKind.OPEN, np.array([1, 2]), 0, 0, np.array([AccountKind.CLEARING, AccountKind.MERCHANT]))]
    for i in range(0, a.cards, 65_536):
        c = cards[i : i + 65_536]
        setup += [mk(len(c), OpKind.OPEN, c, 0, 0, AccountKind.CARD), mk(len(c), OpKind.TOPUP, c, 1, 100_000)]
    if a.policies:
        # Every source once, untimed: the timed batches then add no source to the tables.
        for lo in range(0, n_sources, 65_536):
            ops = mk(min(65_536, n_sources - lo), OpKind.SPEND, 0, 2, 1)
            ops["account_id"] = cards[(lo + np.arange(len(ops))) % len(cards)]
            ops["source"] = 1000 + np.arange(lo, lo + len(ops))
            setup.append(ops)
    engines = [cardledger.Engine() for _ in range(2 if a.policies and a.mode == "alternate" else 1)]
    for e in engines:
        for ops in setup:
            e.apply(ops)
        e.take_decisions()
    del setup
    if a.policies:
        return compare_policies(engines, a, mk, cards, rng)
    e = engines[0]
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


def install(e, policies) -> None:
    """Put a set in force in the engine as the ledger does: store it, apply its record."""
    from cardledger.policies import PolicyVersion, check_set, encode_set
    from cardledger.schema import POLICY_SOURCE

    jseq = e.journal_seq + 1
    version = PolicyVersion(jseq, encode_set(check_set(policies)))
    e.set_policy_versions([version])
    op = cardledger.new_ops(1)
    op["source"], op["seq"], op["kind"] = POLICY_SOURCE, jseq, OpKind.SET_POLICIES
    op["time_us"], op["user_data"] = 1, version.digest
    assert e.apply(op)[0]["code"][0] == 0


def compare_policies(engines, a, mk, cards, rng) -> int:
    """Time the same batches without and with a set of a.policies policies: two engines
    built alike, each batch applied to both in turn (the order alternating), so that the
    machine's drift, which moves rates by tens of percent within minutes, falls on both
    sides alike. The set is in force in one engine, the other in every other repeat:
    two engines built alike still differ by a few percent (where their memory landed)."""
    from cardledger import SourcePolicy

    policies = [SourcePolicy(1000 + 10 * i, 1009 + 10 * i, [OpKind.SPEND, OpKind.TOPUP],
                             counterparties=[1, 2] + [10 + j for j in range(i % 8)], amount_max_fen=50_000)
                for i in range(a.policies)]
    if a.mode == "set":
        install(engines[0], policies)
    ratios: dict[str, list[float]] = {}
    for r in range(a.repeat):
        if a.mode == "alternate":
            if r:
                install(engines[r % 2], None)  # (it held the set in the repeat before)
            install(engines[1 - r % 2], policies)
            sides = {"none": engines[r % 2], "set": engines[1 - r % 2]}
        else:
            sides = {a.mode: engines[0]}
        for label, kind, pool, cp in (("SPEND random", OpKind.SPEND, cards, 2), ("SPEND hot 1k", OpKind.SPEND, cards[:1000], 2),
                                      ("TOPUP random", OpKind.TOPUP, cards, 1)):
            dt = dict.fromkeys(sides, 0.0)
            for b in range(a.batches):
                ops = mk(a.batch, kind, rng.choice(pool, a.batch), cp, 1)
                for side in (list(sides) if b % 2 == 0 else list(sides)[::-1]):
                    e = sides[side]
                    t = time.perf_counter()
                    res = e.apply(ops)[0]
                    dt[side] += time.perf_counter() - t
                    if e.recent_count >= WINDOW_OPS:
                        e.take_decisions()  # as the ledger's id flush does; not timed
                    assert (res["code"] == 0).all(), ("the set allows every op timed", np.unique(res["code"]))
            rate = {side: a.batches * a.batch / t if t else 0.0 for side, t in dt.items()}  # (--batches 0: the setup alone)
            if len(sides) == 1:
                print(f"repeat {r}: {label:12s} {a.mode} {rate[a.mode]:>12,.0f} ops/s")
                continue
            ratios.setdefault(label, []).append(rate["set"] / rate["none"])
            print(f"repeat {r}: {label:12s} none {rate['none']:>12,.0f} ops/s  set of {a.policies} "
                  f"{rate['set']:>12,.0f} ops/s  ratio {rate['set'] / rate['none']:.3f}")
    for e in engines:
        e.take_decisions()
    for label, rs in ratios.items():
        print(f"{label:12s} ratio with the set / without: median {float(np.median(rs)):.3f}, geometric mean "
              f"{float(np.exp(np.mean(np.log(rs)))):.3f} over {len(rs)} repeats (min {min(rs):.3f}, max {max(rs):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
