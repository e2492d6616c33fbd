#!/usr/bin/env python
"""Group commit: single ops from many concurrent submitters through a Committer.

    python bench/bench_committer.py --submitters 256 --ops 200000 [--mode asyncio|threads]
                                    [--loop uvloop|asyncio]

Each submitter (an asyncio task, or a thread) sends SPEND ops one at a time and waits
for each durable result before the next, as a gateway connection would. Reports ops/s
and the per-op latency (submit to durable result) p50/p99, and how many ops shared a
commit on average.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
import threading
import time

import numpy as np

import cardledger
from cardledger import AccountKind, Committer, OpKind

CARDS = 100_000
#: Every op's time_us (2026-01-01 UTC): the ledger refuses an op at or before the epoch.
T0_US = 1_767_225_600_000_000


def setup(led) -> None:
    ops = cardledger.new_ops(2 + 2 * CARDS)
    ops["source"], ops["seq"] = 1, np.arange(1, len(ops) + 1)
    ops[0]["kind"], ops[0]["account_id"], ops[0]["account_kind"] = OpKind.OPEN, 1, AccountKind.CLEARING
    ops[1]["kind"], ops[1]["account_id"], ops[1]["account_kind"] = OpKind.OPEN, 2, AccountKind.MERCHANT
    cards = 1_000_000 + np.arange(CARDS)
    ops["kind"][2 : 2 + CARDS], ops["account_id"][2 : 2 + CARDS] = OpKind.OPEN, cards
    ops["account_kind"][2 : 2 + CARDS] = AccountKind.CARD
    ops["kind"][2 + CARDS :], ops["account_id"][2 + CARDS :] = OpKind.TOPUP, cards
    ops["counterparty_id"][2 + CARDS :], ops["amount_fen"][2 + CARDS :] = 1, 400_000
    ops["time_us"] = T0_US
    assert (led.apply(ops)["code"] == 0).all()


def make_ops(source: int, n: int) -> np.ndarray:
    """A terminal's n SPEND ops, built in bulk beforehand (a gateway decodes requests
    into records; building them is not what this measures)."""
    rng = np.random.default_rng(source)
    ops = cardledger.new_ops(n)
    ops["source"], ops["seq"], ops["kind"] = 100 + source, np.arange(1, n + 1), OpKind.SPEND
    ops["account_id"], ops["counterparty_id"], ops["amount_fen"] = 1_000_000 + rng.integers(0, CARDS, n), 2, 1
    ops["time_us"] = T0_US + ops["seq"]
    return ops


def make_op(source: int, seq: int, rng) -> np.void:
    """One op built on the spot (used by tests of this script)."""
    op = cardledger.new_ops(1)[0]
    op["source"], op["seq"], op["kind"] = 100 + source, seq, OpKind.SPEND
    op["account_id"], op["counterparty_id"], op["amount_fen"] = 1_000_000 + rng.integers(CARDS), 2, 1
    op["time_us"] = T0_US + seq
    return op


def run_asyncio(committer, submitters: int, per: int, loop_kind: str = "asyncio") -> list[float]:
    lat: list[float] = []

    async def terminal(s: int) -> None:
        ops = make_ops(s, per)
        for seq in range(per):
            op = ops[seq]
            t = time.perf_counter()
            await committer.apply_async(op)
            lat.append(time.perf_counter() - t)

    async def main() -> None:
        await asyncio.gather(*(terminal(s) for s in range(submitters)))

    if loop_kind == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    return lat


def run_threads(committer, submitters: int, per: int) -> list[float]:
    lat: list[float] = []
    lock = threading.Lock()

    def terminal(s: int) -> None:
        ops = make_ops(s, per)
        mine = []
        for seq in range(per):
            op = ops[seq]
            t = time.perf_counter()
            committer.apply(op)
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=terminal, args=(s,)) for s in range(submitters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submitters", type=int, default=256)
    p.add_argument("--ops", type=int, default=200_000)
    p.add_argument("--mode", choices=("asyncio", "threads"), default="asyncio")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default=None,
                   help="event loop for --mode asyncio (default: uvloop when installed)")
    p.add_argument("--linger-us", type=int, default=0)
    p.add_argument("--batch-ops-max", type=int, default=8192, help="most ops per commit")
    p.add_argument("--switch-interval-us", type=int, default=0,
                   help="sys.setswitchinterval for the run (0: leave Python's default, 5000)")
    p.add_argument("--json")
    a = p.parse_args()
    if a.switch_interval_us:
        sys.setswitchinterval(a.switch_interval_us / 1e6)
    if a.loop is None:
        a.loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    per = max(1, a.ops // a.submitters)
    with cardledger.open(tempfile.mkdtemp(prefix="cardledger-gc-"), create=True) as led:
        setup(led)
        with Committer(led, linger_us=a.linger_us, batch_ops_max=a.batch_ops_max) as committer:
            t, cpu = time.perf_counter(), time.process_time()
            if a.mode == "asyncio":
                lat = run_asyncio(committer, a.submitters, per, a.loop)
            else:
                lat = run_threads(committer, a.submitters, per)
            dt, cpu = time.perf_counter() - t, time.process_time() - cpu
            batches = committer.batches
        lat_ms = np.array(lat) * 1e3
        report = {
            "mode": a.mode,
        "loop": a.loop if a.mode == "asyncio" else None,
        "python": sys.version.split()[0],
            "submitters": a.submitters,
            "ops": len(lat),
            "ops_per_s": len(lat) / dt,
            "latency_ms_p50": float(np.percentile(lat_ms, 50)),
            "latency_ms_p99": float(np.percentile(lat_ms, 99)),
            "ops_per_commit": len(lat) / max(1, batches),
            # CPU time of every thread of the process per op: steadier than ops/s on a
            # shared machine, where other tenants' load moves the wall clock.
            "cpu_us_per_op": cpu / len(lat) * 1e6,
            "verify_ok": led.verify().ok,
        }
    print(json.dumps(report, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
