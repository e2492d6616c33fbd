"""Reconciliation reads on a ledger of many days: an operator's day, a day's
settlement, exports, by the time index.

    python bench/bench_reconcile.py [--cards 1000000] [--days 5] [--ops-per-day 2000000]
                                    [--keep DIR | --reuse DIR] [--repeat N] [--devnull]

Builds a fresh ledger: the cards, then each day's SPEND/TOPUP/TAP-like traffic (SPENDs
at a merchant, TOPUPs from the bank, TRANSFERs to the metro operator standing in for
fares), batches of 8,192, event times spread over the day in order. Then times, on the
last full day: `query(day, account=operator)`, `settle(day)`, and exports of the day
to Parquet, JSON lines and CSV. Prints one JSON line of figures per repeat.
`--keep DIR` builds the ledger in DIR and leaves it there; `--reuse DIR` times the
reads on a ledger built so (with the same --days and --ops-per-day), without building.
`--devnull` also times each export written to /dev/null: what the export costs
without the file system's writing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np

import cardledger
from cardledger import AccountKind, OpKind
from cardledger.days import service_day
from cardledger.exports import export

CARD_BASE = 100_000_000
BANK, MERCHANT, METRO = 1, 2, 3
DAY0 = "2027-03-01"


def main() -> None:
    """Build the ledger, time the reads, print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=5)
    p.add_argument("--ops-per-day", type=int, default=2_000_000)
    p.add_argument("--keep", help="build the ledger here and keep it")
    p.add_argument("--reuse", help="time the reads on a ledger kept by --keep")
    p.add_argument("--repeat", type=int, default=1, help="time the reads this many times")
    p.add_argument("--devnull", action="store_true", help="also time each export written to /dev/null")
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="cardledger-recon-")
    path = a.reuse or a.keep or f"{work}/ledger"
    try:
        if not a.reuse:
            build(path, a)
        with cardledger.open(path, readonly=True) as led:
            for _ in range(a.repeat):
                print(json.dumps(reads(led, a, work)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build(path: str, a: argparse.Namespace) -> None:
    """A fresh ledger at `path`: the cards, then `a.days` days of traffic."""
    rng = np.random.default_rng(7)
    with cardledger.open(path, create=True) as led:
        t0 = service_day(DAY0)[0]
        ops = cardledger.new_ops(3)
        ops["source"], ops["seq"], ops["kind"], ops["time_us"] = 1, [1, 2, 3], OpKind.OPEN, t0 - 1
        ops["account_id"], ops["account_kind"] = [BANK, MERCHANT, METRO], [AccountKind.CLEARING, AccountKind.MERCHANT,
                                                                          AccountKind.OPERATOR]
        led.apply(ops)
        cards = np.arange(CARD_BASE, CARD_BASE + a.cards, dtype=np.uint64)
        seq = 1
        for lo in range(0, a.cards, 1 << 19):
            part = cards[lo : lo + (1 << 19)]
            o = cardledger.new_ops(2 * len(part))
            o["source"], o["seq"] = 2, np.arange(seq, seq + len(o))
            seq += len(o)
            o["time_us"] = t0 - 1
            o["kind"][0::2], o["account_id"][0::2], o["account_kind"][0::2] = OpKind.OPEN, part, AccountKind.CARD
            o["kind"][1::2], o["account_id"][1::2] = OpKind.TOPUP, part
            o["counterparty_id"][1::2], o["amount_fen"][1::2] = BANK, 200_000
            led.apply(o)
        build = time.perf_counter()
        src_seq = 0
        for d in range(a.days):
            start, end = service_day(str(np.datetime64(DAY0) + np.timedelta64(d, "D")))
            times = np.sort(rng.integers(start, end, a.ops_per_day))
            for lo in range(0, a.ops_per_day, 8192):
                n = min(8192, a.ops_per_day - lo)
                o = cardledger.new_ops(n)
                o["source"], o["seq"] = 3, np.arange(src_seq + 1, src_seq + 1 + n)
                src_seq += n
                o["time_us"] = times[lo : lo + n]
                o["account_id"] = rng.choice(cards, n)
                pick = rng.random(n)
                o["kind"] = np.where(pick < 0.6, OpKind.TRANSFER, np.where(pick < 0.9, OpKind.SPEND, OpKind.TOPUP))
                o["counterparty_id"] = np.where(pick < 0.6, METRO, np.where(pick < 0.9, MERCHANT, BANK))
                o["amount_fen"] = rng.integers(100, 400, n)
                o["user_data"] = o["seq"]
                led.apply(o)
        build = time.perf_counter() - build
        print(json.dumps({"records": led.journal_seq, "build_s": round(build, 1)}), flush=True)


def reads(led: cardledger.Ledger, a: argparse.Namespace, work: str) -> dict:
    """Time the reads of the last full day; the figures as a dict."""
    day = str(np.datetime64(DAY0) + np.timedelta64(a.days - 1, "D"))
    start, end = service_day(day)
    out = {"cards": a.cards, "days": a.days, "records": led.journal_seq}
    t = time.perf_counter()
    q = led.query(start, end, account_id=METRO)
    out["operator_day_query_s"], out["operator_day_records"] = round(time.perf_counter() - t, 3), len(q)
    t = time.perf_counter()
    rows = led.settle(start, end)
    out["settle_day_s"], out["settle_accounts"] = round(time.perf_counter() - t, 3), len(rows)
    for fmt in ("parquet", "jsonl", "csv"):
        t = time.perf_counter()
        n = export(led.batches(led.journal_seq - a.ops_per_day, None), f"{work}/day.{fmt}", fmt)
        dt = time.perf_counter() - t
        out[f"export_{fmt}_records_per_s"] = round(n / dt)
        os.unlink(f"{work}/day.{fmt}")
        if a.devnull:
            t = time.perf_counter()
            n = export(led.batches(led.journal_seq - a.ops_per_day, None), os.devnull, fmt)
            out[f"export_{fmt}_to_devnull_records_per_s"] = round(n / (time.perf_counter() - t))
    return out


if __name__ == "__main__":
    main()
