"""CLOSE and REPLACE release a card's holds through the core's per-card hold lists
(cext/holdidx.pxi), not a walk of every hold (an account of another kind, here the
merchant, still walks): the same results, journal and state as the reference engine,
and the hold table left in the very order the walk left it (the core's checkpoints
copy its rows in that order).

Cards with many holds, on either side, interleaved with other cards' holds;
holds posted and voided out of the table's middle (its swap-removal moves holds
between slots); CLOSE and REPLACE in LINKED chains that fail and roll back; the state
exported and loaded again between batches.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from helpers import Ops

from cardledger import AccountKind, OpFlags, OpKind
from cardledger.engine.spec import batch as reference

core = pytest.importorskip("cardledger._core")

CLEARING, MERCHANT = 1, 2
CARDS = list(range(100, 140))
NOBODY = 999_999  # no account has this id
LINKED, PENDING = int(OpFlags.LINKED), int(OpFlags.PENDING)


def setup_ops(b: Ops) -> np.ndarray:
    """Clearing 1, merchant 2, and the cards, each topped up."""
    b.add(OpKind.OPEN, CLEARING, account_kind=AccountKind.CLEARING)
    b.add(OpKind.OPEN, MERCHANT, account_kind=AccountKind.MERCHANT)
    for c in CARDS:
        b.add(OpKind.OPEN, c, account_kind=AccountKind.CARD)
        b.add(OpKind.TOPUP, c, CLEARING, 400_000)
    return b.take()


class World:
    """Random batches over the cards: holds placed (card to merchant, card to card),
    posted and voided, cards closed and replaced, alone or in chains made to fail."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.b = Ops(source=7)
        self.live = list(CARDS)  # cards neither closed nor replaced (as far as we ask)
        self.holds: list[tuple[int, int]] = []  # ids of pending TRANSFERs, maybe gone
        self.next_card = 10_000

    def hold(self) -> None:
        r = self.rng
        a = r.choice(self.live)
        c = r.choice(self.live) if r.random() < 0.3 else MERCHANT
        self.holds.append((self.b.source, self.b.seq))
        self.b.add(OpKind.TRANSFER, a, c, r.randrange(1, 300), flags=PENDING)

    def resolve(self) -> None:
        r = self.rng
        src, seq = self.holds.pop(r.randrange(len(self.holds)))
        if r.random() < 0.5:
            self.b.add(OpKind.POST, 0, 0, r.randrange(0, 2), ref_source=src, ref_seq=seq)
        else:
            self.b.add(OpKind.VOID, ref_source=src, ref_seq=seq)

    def end_of_card(self, fail: bool) -> None:
        """CLOSE or REPLACE a card (with `fail`, now and then CLOSE the merchant), with
        `fail` in a chain whose last op fails."""
        r = self.rng
        a = r.choice(self.live)
        flags = LINKED if fail else 0
        if fail and r.random() < 0.1:  # the merchant, in no hold list: the walk
            self.b.add(OpKind.CLOSE, MERCHANT, CLEARING, flags=flags)
            successor = None
        elif r.random() < 0.5:
            self.b.add(OpKind.CLOSE, a, CLEARING, flags=flags)
            successor = None
        else:
            successor = self.next_card
            self.next_card += 1
            self.b.add(OpKind.REPLACE, a, successor, flags=flags)
        if fail:
            self.b.add(OpKind.TRANSFER, NOBODY, MERCHANT, 1)  # ACCOUNT_NOT_FOUND: the chain fails
        else:
            self.live.remove(a)
            if successor is not None:
                self.live.append(successor)

    def batch(self, n: int) -> np.ndarray:
        r = self.rng
        for _ in range(n):
            x = r.random()
            if x < 0.55 or not self.holds:
                self.hold()
            elif x < 0.8:
                self.resolve()
            elif x < 0.93 or len(self.live) < 4:
                self.end_of_card(fail=True)
            else:
                self.end_of_card(fail=False)
        return self.b.take()


def reloaded(engine, cls):
    """A fresh engine of class `cls` loaded from `engine`'s checkpoint, its holds in
    the store's order (as a checkpoint taken mid-peak copies them)."""
    fresh = cls()
    accounts, sources, pending = engine.export_checkpoint(sort=False)
    fresh.load_checkpoint(accounts, sources, pending, engine.journal_seq)
    return fresh


@pytest.mark.parametrize("seed", range(6))
def test_closes_and_replaces_agree_with_the_reference(seed: int) -> None:
    """Random holds, POSTs, VOIDs, CLOSEs and REPLACEs (most of them rolled back by a
    failing chain), and reloads from checkpoints: the core's results, journal and
    state equal the reference's batch after batch."""
    rng = random.Random(seed)
    world = World(rng)
    engines = [reference.Engine(), core.Engine()]
    ops = setup_ops(world.b)
    for e in engines:
        e.apply(ops)
    closed_with_holds = 0
    for k in range(60):
        ops = world.batch(rng.randrange(1, 120))
        before = engines[1].export_checkpoint()[2]
        (r_ref, j_ref), (r_core, j_core) = (e.apply(ops) for e in engines)
        assert r_ref.tobytes() == r_core.tobytes(), f"seed {seed} batch {k}: results differ"
        assert j_ref.tobytes() == j_core.tobytes(), f"seed {seed} batch {k}: journals differ"
        for x, y in zip(engines[0].export_checkpoint(), engines[1].export_checkpoint()):
            assert x.tobytes() == y.tobytes(), f"seed {seed} batch {k}: state differs"
        ended = ops["account_id"][np.isin(ops["kind"], (OpKind.CLOSE, OpKind.REPLACE))]
        closed_with_holds += int(np.isin(before["debit_id"], ended).sum() + np.isin(before["credit_id"], ended).sum())
        if rng.random() < 0.25:
            engines = [reloaded(engines[0], reference.Engine), reloaded(engines[1], core.Engine)]
    assert closed_with_holds > 100  # the CLOSEs and REPLACEs did meet holds


def walked(pending: np.ndarray, account_id: int) -> tuple[np.ndarray, list]:
    """What the core's former CLOSE did to its hold table: walk every hold from the
    end, swap-removing the account's; returns the table left and the removed holds in
    the order removed."""
    rows = list(pending)
    removed = []
    i = len(rows) - 1
    while i >= 0:
        if i < len(rows) and account_id in (int(rows[i]["debit_id"]), int(rows[i]["credit_id"])):
            removed.append(rows[i])
            rows[i] = rows[-1]
            rows.pop()
        i -= 1
    return np.array(rows, dtype=pending.dtype), removed


def test_the_hold_table_keeps_the_order_a_full_walk_left() -> None:
    """One CLOSE or REPLACE a batch, alone or rolled back: the core's hold table, in its
    own order (export_checkpoint(sort=False), the order a checkpoint copies), is what
    walking every hold from the end and swap-removing the account's leaves; a
    rolled-back chain puts the removed holds back at the end, last removed first."""
    rng = random.Random(11)
    world = World(rng)
    engine = core.Engine()
    engine.apply(setup_ops(world.b))
    for _ in range(4):
        engine.apply(world.batch(400))
    checked = 0
    for k in range(80):
        before = engine.export_checkpoint(sort=False)[2]
        fail = rng.random() < 0.6 or len(world.live) < 10
        world.end_of_card(fail=fail)
        ops = world.b.take()
        left, removed = walked(before, int(ops[0]["account_id"]))
        if fail:
            left = np.concatenate([left, np.array(removed[::-1], dtype=before.dtype)])
        codes = engine.apply(ops)[0]["code"]
        assert (codes[1:] != 0).all() if fail else (codes == 0).all(), codes
        after = engine.export_checkpoint(sort=False)[2]
        assert after.tobytes() == left.tobytes(), f"op {k}: the hold table's order differs"
        checked += len(removed)
        engine.apply(world.batch(rng.randrange(1, 30)))  # more holds, posts and voids between
        if k % 10 == 9:
            engine = reloaded(engine, core.Engine)
    assert checked > 100
