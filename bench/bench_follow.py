"""Does `Ledger.follow` keep up? A writer process applies 2,000,000 SPENDs in batches of
8,192 as fast as it can while a readonly follower in another process follows the
journal; prints the writer's rate and how long after its last commit the follower saw
the last record.

    python bench/bench_follow.py
"""

import multiprocessing as mp
import os
import shutil
import time

import numpy as np

import cardledger
from cardledger import OpKind, AccountKind
PATH = "/tmp/cardledger-follow-bench/l"
N, B = 2_000_000, 8192
def writer(q):
    """Apply the SPENDs; report the time taken, the head and the wall time at the end."""
    rng = np.random.default_rng(1)
    with cardledger.open(PATH) as led:
        cards = np.arange(1000, 101000, dtype=np.uint64)
        t = time.perf_counter(); seq = 1
        for lo in range(0, N, B):
            o = cardledger.new_ops(B); o["source"] = 5; o["seq"] = np.arange(seq, seq + B); seq += B
            o["time_us"] = 1_800_000_000_000_000 + o["seq"]; o["kind"] = OpKind.SPEND
            o["account_id"] = rng.choice(cards, B); o["counterparty_id"] = 2; o["amount_fen"] = 1
            led.apply(o)
        q.put((time.perf_counter() - t, led.journal_seq, time.time()))
def follower(q, start):
    """Follow from `start` until two idle seconds; report the records seen and when."""
    with cardledger.open(PATH, readonly=True) as led:
        n = 0; t = None
        for recs in led.follow(start, idle_timeout_s=2.0):
            if t is None: t = time.perf_counter()
            n += len(recs); last = time.time()
        q.put((n, last))
if __name__ == "__main__":
    shutil.rmtree("/tmp/cardledger-follow-bench", ignore_errors=True); os.makedirs("/tmp/cardledger-follow-bench")
    with cardledger.open(PATH, create=True) as led:
        o = cardledger.new_ops(2 + 100000); o["source"] = 1; o["seq"] = np.arange(1, len(o) + 1); o["time_us"] = 1
        o["kind"] = OpKind.OPEN; o["account_id"][:2] = [1, 2]; o["account_kind"][:2] = [AccountKind.CLEARING, AccountKind.MERCHANT]
        o["account_id"][2:] = np.arange(1000, 101000); o["account_kind"][2:] = AccountKind.CARD
        led.apply(o)
        t = cardledger.new_ops(100000); t["source"] = 2; t["seq"] = np.arange(1, 100001); t["time_us"] = 1
        t["kind"] = OpKind.TOPUP; t["account_id"] = np.arange(1000, 101000); t["counterparty_id"] = 1; t["amount_fen"] = 400000
        led.apply(t); start = led.journal_seq
    ctx = mp.get_context("fork"); qw, qf = ctx.Queue(), ctx.Queue()
    f = ctx.Process(target=follower, args=(qf, start)); f.start(); time.sleep(0.5)
    w = ctx.Process(target=writer, args=(qw,)); w.start()
    dt, head, wend = qw.get(); n, fend = qf.get(); w.join(); f.join()
    print(f"writer: {N:,} ops in {dt:.2f} s ({N/dt:,.0f} ops/s); follower saw {n:,} records, its last {max(0.0, fend - wend):.3f} s after the writer's last commit")
