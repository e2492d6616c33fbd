#!/usr/bin/env python
"""Reopen time and memory of a large ledger.

    python bench/bench_reopen.py --cards 1000000 --entries 10000000 [--json out.json]

Builds a ledger of --cards cards whose journal holds --entries records (OPEN and one
TOPUP per card, then SPEND/TOPUP batches of 8,192), closes it, then opens it in fresh
processes and reports: the time `cardledger.open` takes (best and median of --runs),
the resident memory the opened ledger adds (RSS after open - RSS before), per card,
and the size on disk. Opening loads the last checkpoint file and replays the journal
after it, so the figure depends on where the last checkpoint fell (reported).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import cardledger
from cardledger import AccountKind, OpKind
from cardledger.benchmark.runner import disk_bytes

BATCH = 8_192
CARD_BASE = 10_000_000


def build(path: str, cards: int, entries: int) -> None:
    """Fill a ledger with `cards` cards and about `entries` journal records."""
    seq = 0
    rng = np.random.default_rng(5)

    def batch(kind, account, counterparty, amount, account_kind=0):
        nonlocal seq
        n = len(account)
        ops = cardledger.new_ops(n)
        ops["source"] = 1 + (np.arange(n) % 512)  # 512 terminals
        ops["seq"] = seq // 512 + 1 + np.arange(n) // 512
        seq += n + (512 - n % 512) % 512
        ops["kind"], ops["account_id"], ops["counterparty_id"] = kind, account, counterparty
        ops["amount_fen"], ops["account_kind"] = amount, account_kind
        ops["time_us"] = 1_767_225_600_000_000 + seq
        return ops

    with cardledger.open(path, create=True) as led:
        led.apply(batch(OpKind.OPEN, np.array([1, 2]), 0, 0, np.array([AccountKind.CLEARING, AccountKind.MERCHANT])))
        ids = np.arange(CARD_BASE, CARD_BASE + cards, dtype=np.uint64)
        for lo in range(0, cards, 65_536):
            part = ids[lo : lo + 65_536]
            led.apply(batch(OpKind.OPEN, part, 0, 0, AccountKind.CARD))
            led.apply(batch(OpKind.TOPUP, part, 1, 100_000))
        done = led.journal_seq
        t = time.perf_counter()
        while done < entries:
            n = min(BATCH, entries - done)
            accts = rng.choice(ids, n)
            spend = rng.random(n) < 0.7
            ops = batch(OpKind.SPEND, accts, 2, rng.integers(100, 2_000, n))
            ops["kind"][~spend] = OpKind.TOPUP
            ops["counterparty_id"][~spend] = 1
            done += len(led.apply(ops))
            if done % (BATCH * 200) < BATCH:
                print(f"  {done:,} records, {done / (time.perf_counter() - t):,.0f} ops/s", file=sys.stderr)


PROBE = r"""
import json, os, sys, time
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
import cardledger, numpy
before = rss()
t = time.perf_counter()
led = cardledger.open(sys.argv[1], readonly=True)
dt = time.perf_counter() - t
after = rss()
print(json.dumps({"open_s": dt, "rss_added_bytes": after - before, "journal_seq": led.journal_seq,
                  "checkpoint_seq": led._checkpoints.ckpt_seq, "accounts": led._engine.account_count()}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", type=int, default=1_000_000)
    p.add_argument("--entries", type=int, default=10_000_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--path", help="use (and keep) this ledger directory; built if empty")
    p.add_argument("--json")
    a = p.parse_args()
    path = a.path or tempfile.mkdtemp(prefix="cardledger-reopen-")
    if not os.path.exists(os.path.join(path, "data.mdb")):
        t = time.perf_counter()
        build(path, a.cards, a.entries)
        print(f"built in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    runs = [json.loads(subprocess.check_output([sys.executable, "-c", PROBE, path])) for _ in range(a.runs)]
    opens = sorted(r["open_s"] for r in runs)
    disk = disk_bytes(path)  # (not the zeros written ahead of the data file's pages)
    report = {
        "implementation": cardledger.IMPLEMENTATION,
        "cards": a.cards,
        "journal_records": runs[0]["journal_seq"],
        "checkpoint_seq": runs[0]["checkpoint_seq"],
        "tail_replayed": runs[0]["journal_seq"] - runs[0]["checkpoint_seq"],
        "open_s_best": opens[0],
        "open_s_median": opens[len(opens) // 2],
        "rss_added_bytes": runs[0]["rss_added_bytes"],
        "rss_per_card_bytes": runs[0]["rss_added_bytes"] / runs[0]["accounts"],
        "disk_bytes": disk,
        "disk_bytes_per_record": disk / max(1, runs[0]["journal_seq"]),
    }
    print(json.dumps(report, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
