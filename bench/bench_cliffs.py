#!/usr/bin/env python
"""Hostile op shapes against the core's batch loop: each shape's ops/s against plain
SPEND batches of the same size, timed alternately in the same run.

    python bench/bench_cliffs.py [--cards 100000] [--batch 8192] [--rounds 8] [--shape NAME ...]

An authenticated terminal controls every field of the ops it sends. Each shape is
a way to make one op cost far more than a SPEND does (docs/performance-log.md,
"Hostile shapes"). Drives `cardledger.Engine().apply` directly (no storage), as
bench_kernel.py does, emptying the decisions window every 2^16 decisions (untimed),
as the ledger's id flush does. Prints, per shape, the median over rounds of
(SPEND ops/s) / (shape ops/s): the slowdown an op of that shape costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import cardledger
from cardledger import AccountKind, OpFlags, OpKind

WINDOW_OPS = 1 << 16
T0 = 1_767_225_600_000_000

# The ids built to collide under the unkeyed hash are the test suite's (tests/helpers).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
from helpers.hashkeys import colliding_keys  # noqa: E402


class Bench:
    """A core engine with `a.cards` cards, and the plain SPEND batches shapes are timed
    against (`compare`)."""

    def __init__(self, a):
        self.a = a
        self.e = cardledger.Engine()
        self.rng = np.random.default_rng(1)
        self.seq = {}
        self.cards = np.arange(1_000_000, 1_000_000 + a.cards, dtype=np.uint64)
        self.run(self.mk(2, OpKind.OPEN, np.array([1, 2], dtype=np.uint64), 0, 0,
                         ak=np.array([AccountKind.CLEARING, AccountKind.MERCHANT])))
        for i in range(0, a.cards, 65_536):
            c = self.cards[i:i + 65_536]
            self.run(self.mk(len(c), OpKind.OPEN, c, 0, 0, ak=AccountKind.CARD, limit=10**12))
            self.run(self.mk(len(c), OpKind.TOPUP, c, 1, 10**9))
        self.e.take_decisions()

    def mk(self, n, kind, acct, cp, amt, source=7, ak=0, limit=0, seqs=None, flags=0):
        ops = cardledger.new_ops(n)
        if seqs is None:
            s0 = self.seq.get(source, 0)
            seqs = np.arange(s0 + 1, s0 + n + 1, dtype=np.uint64)
            self.seq[source] = s0 + n
        ops["source"], ops["seq"] = source, seqs
        ops["kind"], ops["account_id"], ops["counterparty_id"] = kind, acct, cp
        ops["amount_fen"], ops["account_kind"], ops["limit_fen"] = amt, ak, limit
        ops["flags"] = flags
        ops["time_us"] = T0 + np.arange(n)
        return ops

    def run(self, ops, prior=None, has_prior=None):
        """Apply untimed; empty the window as the ledger's id flush does."""
        res = self.e.apply(ops, prior, has_prior)[0]
        if self.e.recent_count >= WINDOW_OPS:
            self.e.take_decisions()
        return res

    def timed(self, ops, **kw):
        t = time.perf_counter()
        res = self.e.apply(ops, **kw)[0]
        dt = time.perf_counter() - t
        if self.e.recent_count >= WINDOW_OPS:
            self.e.take_decisions()
        return dt, res

    def spend(self):
        return self.mk(self.a.batch, OpKind.SPEND, self.rng.choice(self.cards, self.a.batch), 2, 1)

    def compare(self, name, make, rounds=None, check=None, note=""):
        """Alternate plain SPEND batches and the shape's batches; print the slowdown."""
        ratios, n_ops = [], 0
        codes = {}
        for r in range(rounds or self.a.rounds):
            base, hostile = self.spend(), make(r)
            order = ("base", "hostile") if r % 2 == 0 else ("hostile", "base")
            dt = {}
            for side in order:
                ops = base if side == "base" else hostile
                d, res = self.timed(ops)
                dt[side] = d
                if side == "hostile":
                    for c, k in zip(*np.unique(res["code"], return_counts=True)):
                        codes[int(c)] = codes.get(int(c), 0) + int(k)
            base_rate = len(base) / dt["base"]
            hostile_rate = len(hostile) / dt["hostile"]
            ratios.append(base_rate / hostile_rate)
            n_ops = len(hostile)
        print(f"{name:34s} slowdown x{np.median(ratios):8.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}, "
              f"{n_ops} ops a batch) codes {codes} {note}", flush=True)
        return float(np.median(ratios))


# ------------------------------------------------------------------ the shapes

def shape_spend_hot(b):
    """SPENDs at 1,000 hot cards (cached accounts): below 1 is cheaper than plain."""
    b.compare("SPEND, 1k hot cards", lambda r: b.mk(b.a.batch, OpKind.SPEND, b.rng.choice(b.cards[:1000], b.a.batch), 2, 1))


def shape_window_collide(b):
    """SPENDs whose ids (source, seq) all hash to one slot of the recent map."""
    src = 9001
    seqs = np.sort(colliding_keys(b.a.batch * b.a.rounds, first=src))
    b.compare("SPEND, ids colliding (recent map)", lambda r: b.mk(
        b.a.batch, OpKind.SPEND, b.rng.choice(b.cards, b.a.batch), 2, 1, source=src,
        seqs=seqs[r * b.a.batch:(r + 1) * b.a.batch]))


def shape_holds_plain(b):
    """PENDING TRANSFERs with plain ids: what a hold costs, for the colliding shapes."""
    src = 9002
    b.compare("PENDING TRANSFER (holds), plain ids", lambda r: b.mk(
        b.a.batch, OpKind.TRANSFER, b.rng.choice(b.cards, b.a.batch), 2, 1, source=src, flags=OpFlags.PENDING))


def shape_holds_collide(b):
    """Holds keyed by ids that all hash to one slot: the hold map (and the window)."""
    src = 9003
    seqs = np.sort(colliding_keys(b.a.batch * b.a.rounds, first=src, rng=np.random.default_rng(6)))
    b.compare("PENDING TRANSFER, ids colliding", lambda r: b.mk(
        b.a.batch, OpKind.TRANSFER, b.rng.choice(b.cards, b.a.batch), 2, 1, source=src, flags=OpFlags.PENDING,
        seqs=seqs[r * b.a.batch:(r + 1) * b.a.batch]))


def shape_accounts_collide(b):
    """OPEN cards whose ids all hash to one slot of the account map, then SPEND on them
    (and on ids that do not exist, whose lookup walks the whole run)."""
    ids = colliding_keys(b.a.batch * b.a.rounds, rng=np.random.default_rng(7))
    b.compare("OPEN, account ids colliding", lambda r: b.mk(
        b.a.batch, OpKind.OPEN, ids[r * b.a.batch:(r + 1) * b.a.batch], 0, 0, ak=AccountKind.CARD))
    b.compare("SPEND on those accounts", lambda r: b.mk(
        b.a.batch, OpKind.SPEND, b.rng.choice(ids, b.a.batch), 2, 1))
    missing = colliding_keys(b.a.batch, rng=np.random.default_rng(8))
    missing = missing[~np.isin(missing, ids)]
    b.compare("SPEND on missing colliding ids", lambda r: b.mk(
        len(missing), OpKind.SPEND, missing, 2, 1))


def shape_resend_exists(b):
    """Every op a resend of a decided op still in the window (EXISTS)."""
    def make(r):
        ops = b.spend()
        b.run(ops)
        return ops.copy()
    b.compare("resend, same fields (EXISTS)", make)

    def make2(r):
        ops = b.spend()
        b.run(ops)
        ops = ops.copy()
        ops["amount_fen"] = 2
        return ops
    b.compare("resend, other fields", make2)


def late_batch(b, src, r):
    """Round r's batch of SPENDs from `src` at seqs just below one it applies first
    (a jump past GAP_JUMP_TRACKED_MAX: none of them is a recorded gap), descending."""
    top = 10**9 + r * 10**7
    b.run(b.mk(1, OpKind.SPEND, b.cards[:1], 2, 1, source=src, seqs=np.array([top], dtype=np.uint64)))
    seqs = np.arange(top - b.a.batch, top, dtype=np.uint64)[::-1].copy()
    return b.mk(b.a.batch, OpKind.SPEND, b.rng.choice(b.cards, b.a.batch), 2, 1, source=src, seqs=seqs)


def shape_late_unknown(b):
    """Ops below their source's last_seq, never decided (the engine alone: new)."""
    b.compare("late seqs below last_seq (descending)", lambda r: late_batch(b, 9004, r))


def shape_gap_each_op(b):
    """Ops skipping one seq each (a gap recorded each), then late ops filling them."""
    src = 9005

    def make(r):
        s0 = b.seq.get(src, 0)
        seqs = s0 + 2 * np.arange(1, b.a.batch + 1, dtype=np.uint64)
        b.seq[src] = int(seqs[-1])
        return b.mk(b.a.batch, OpKind.SPEND, b.rng.choice(b.cards, b.a.batch), 2, 1, source=src, seqs=seqs)
    b.compare("seqs skipping one each op (gaps)", make)

    def make_fill(r):
        s0 = b.seq.get(src, 0)
        seqs = s0 + 2 * np.arange(1, b.a.batch + 1, dtype=np.uint64)
        b.seq[src] = int(seqs[-1])
        b.run(b.mk(b.a.batch, OpKind.SPEND, b.rng.choice(b.cards, b.a.batch), 2, 1, source=src, seqs=seqs))
        return b.mk(b.a.batch, OpKind.SPEND, b.rng.choice(b.cards, b.a.batch), 2, 1, source=src, seqs=seqs - 1)
    b.compare("late ops filling known gaps", make_fill)


def shape_new_sources(b):
    """Every op from a source never seen: the source table grows by a batch each time."""
    nxt = [10**6]

    def make(r):
        ops = b.spend()
        ops["source"] = np.arange(nxt[0], nxt[0] + len(ops), dtype=np.uint64)
        ops["seq"] = 1
        nxt[0] += len(ops)
        return ops
    b.compare("every op a new source", make)


def shape_sources_many_flush(b):
    """The window emptied (take_decisions) with many sources known: its cost per flush."""
    def window_rate():
        t = time.perf_counter()
        for _ in range(8):
            b.run(b.spend())
        b.e.take_decisions()
        return 8 * b.a.batch / (time.perf_counter() - t)
    few = window_rate()
    n0 = b.e.export_sources().shape[0]
    src = np.arange(5 * 10**6, 5 * 10**6 + 1_000_000, dtype=np.uint64)
    for i in range(0, len(src), 65_536):
        ops = b.mk(min(65_536, len(src) - i), OpKind.SPEND, b.rng.choice(b.cards, min(65_536, len(src) - i)), 2, 1)
        ops["source"], ops["seq"] = src[i:i + len(ops)], 1
        b.run(ops)
    b.e.take_decisions()
    many = window_rate()
    print(f"{'SPEND + flush, 1M sources known':34s} slowdown x{few / many:8.2f} ({few:,.0f} ops/s with {n0} "
          f"sources, {many:,.0f} with {n0 + len(src)}; 8 batches and the flush)", flush=True)


def shape_chain_fails_at_end(b):
    """One linked chain of the whole batch, whose last op fails: all rolled back."""
    def make(r):
        ops = b.spend()
        ops["flags"] = OpFlags.LINKED
        ops["flags"][-1] = 0
        ops["amount_fen"][-1] = 10**15  # insufficient funds
        return ops
    b.compare("LINKED chain of a batch, last fails", make)

    def make_pending(r):
        ops = b.spend()
        ops["kind"], ops["flags"] = OpKind.TRANSFER, OpFlags.LINKED | OpFlags.PENDING
        ops["flags"][-1] = OpFlags.PENDING
        ops["amount_fen"][-1] = 10**15
        return ops
    b.compare("LINKED chain of holds, last fails", make_pending)


def shape_close_scan(b, holds=100_000):
    """CLOSE of a card with one hold among 100,000 holds of other cards (it used to
    walk every hold in the ledger; now the card's own, through the core's hold lists);
    in a chain that fails, it is rolled back and can be sent again and again."""
    src = 9006
    have = [0]
    while have[0] < holds:  # holds of other cards
        n = min(65_536, holds - have[0])
        b.run(b.mk(n, OpKind.TRANSFER, b.rng.choice(b.cards[1000:], n), 2, 1, source=src, flags=OpFlags.PENDING))
        have[0] += n
    victim = b.cards[:b.a.batch // 2]
    b.run(b.mk(len(victim), OpKind.TRANSFER, victim, 2, 1, source=src, flags=OpFlags.PENDING))

    def make(r):
        n = b.a.batch // 2
        ops = b.mk(2 * n, OpKind.CLOSE, 0, 1, 0)
        ops["account_id"][0::2] = victim[:n]
        ops["flags"][0::2] = OpFlags.LINKED
        ops["kind"][1::2] = OpKind.SPEND  # fails: the card is closed
        ops["account_id"][1::2] = victim[:n]
        ops["counterparty_id"][1::2] = 2
        ops["amount_fen"][1::2] = 1
        return ops
    b.compare(f"CLOSE+failing SPEND, {holds // 1000}k holds", make, rounds=4)


# ------------------------------------------------------------------ shapes on a Ledger

class LedgerBench(Bench):
    """The same, through `Ledger.apply` (storage, id lookups, what REVERSE names)."""

    def __init__(self, a):
        import tempfile
        self.a = a
        self.rng = np.random.default_rng(1)
        self.seq = {}
        self.dir = tempfile.TemporaryDirectory(prefix="bench_cliffs_")
        self.led = cardledger.open(self.dir.name, create=True, durability="nometasync")
        self.cards = np.arange(1_000_000, 1_000_000 + a.cards, dtype=np.uint64)
        # (9001-9005: the packaged Harbin system's operators)
        self.run(self.mk(7, OpKind.OPEN, np.array([1, 2, 9001, 9002, 9003, 9004, 9005], dtype=np.uint64), 0, 0,
                         ak=np.array([AccountKind.CLEARING, AccountKind.MERCHANT] + [AccountKind.OPERATOR] * 5)))
        for i in range(0, a.cards, 65_536):
            c = self.cards[i:i + 65_536]
            self.run(self.mk(len(c), OpKind.OPEN, c, 0, 0, ak=AccountKind.CARD, limit=10**12))
            self.run(self.mk(len(c), OpKind.TOPUP, c, 1, 10**9))

    def run(self, ops, prior=None, has_prior=None):
        return self.led.apply(ops)

    def timed(self, ops, **kw):
        t = time.perf_counter()
        res = self.led.apply(ops)
        return time.perf_counter() - t, res


def shape_ledger_late(b):
    """Ops below their source's floor, never decided: each is looked up in the id index."""
    b.compare("ledger: late seqs, never decided", lambda r: late_batch(b, 9101, r), rounds=4)


def shape_ledger_resend_old(b):
    """Resends of ops decided several id flushes ago (in the id index, not the window)."""
    old = [b.spend() for _ in range(4)]
    for ops in old:
        b.run(ops)
    for _ in range(10):  # past the window: 80k decisions later
        b.run(b.spend())
    b.compare("ledger: resends of old ids (EXISTS)", lambda r: old[r % 4].copy(), rounds=4)


def shape_ledger_reverse_walk(b, history=2_000):
    """REVERSEs naming one metro EXIT (without an entry) of a card whose `history`
    records before it are not taps: what the REVERSE names is found by walking them
    back (once while the EXIT is remembered, queries.ReverseRefs; before, once per
    REVERSE op), and the engine refuses all but the first. --reverse-ops a batch
    (default 64: the walk per op made more unbearable; a batch that small also pays a
    full batch's commit, which SPEND's 8,192 share)."""
    n = b.a.reverse_ops
    from cardledger.fares import FareSystem
    from cardledger.schema import TapType
    fs = FareSystem.harbin()
    b.led.install_fares(fs, 0)
    card = b.cards[5]
    for i in range(0, history, 8192):
        m = min(8192, history - i)
        b.run(b.mk(m, OpKind.SPEND, card, 2, 1))
    ex = b.mk(1, OpKind.TAP, card, 0, 0, source=9102)
    ex["tap"], ex["route"], ex["stop"] = TapType.EXIT, fs.route_index("metro_1"), fs.stop_index("m1_museum")
    ex["time_us"] = T0 + 10**9
    res = b.run(ex)
    assert res["code"][0] == 0, res
    for _ in range(10):
        b.run(b.spend())

    def make(r):
        ops = b.mk(n, OpKind.REVERSE, card, 0, 0, source=9103)
        ops["ref_source"], ops["ref_seq"], ops["time_us"] = 9102, ex["seq"][0], T0 + 2 * 10**9
        return ops
    b.compare(f"ledger: REVERSE of an EXIT, {history} back", make, rounds=4)


SHAPES = {f.__name__[6:]: f for f in [
    shape_spend_hot, shape_window_collide, shape_holds_plain, shape_holds_collide, shape_accounts_collide,
    shape_resend_exists, shape_late_unknown, shape_gap_each_op, shape_new_sources, shape_chain_fails_at_end,
    shape_close_scan, shape_sources_many_flush, shape_ledger_late, shape_ledger_resend_old,
    shape_ledger_reverse_walk]}


def main() -> int:
    """Run the shapes asked for (all by default), each on a fresh engine or ledger."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=8192)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--shape", nargs="*", choices=sorted(SHAPES), help="the shapes to run (default: all)")
    p.add_argument("--reverse-ops", type=int, default=64, help="ops a batch of the ledger_reverse_walk shape")
    a = p.parse_args()
    if cardledger.IMPLEMENTATION != "cython":
        print("bench_cliffs: the Cython core is not built", file=sys.stderr)
        return 2
    for name in a.shape or SHAPES:
        b = (LedgerBench if name.startswith("ledger_") else Bench)(a)  # each shape on a fresh engine
        SHAPES[name](b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
