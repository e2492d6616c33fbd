"""A checkpoint's snapshot is taken copy-on-write and still holds the state it began at.

`Engine.snapshot_begin` copies only the holds; the core copies the accounts and the
journeys row by row: a batch copies a row before it changes it, and
`snapshot_complete` (the checkpoint writer's thread, beside the batches) copies the
rest. These tests change the rows after the snapshot began, with batches large enough
to run without the GIL while a copier thread runs, open enough accounts to move the
accounts array mid-snapshot, and check that the completed snapshot is the state as it
was. The reference engine copies at once; the same tests hold for it.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import cardledger
from cardledger import AccountKind, OpKind, Result
from cardledger.engine.select import Engine
from cardledger.schema import ACCOUNT_DTYPE, OpFlags

CLEARING, MERCHANT = 1, 2
CARD_BASE = 1_000
T0 = 1_767_225_600_000_000  # every op's time_us (2026-01-01 UTC): it must be positive


def _open_cards(engine, first: int, n: int, seq0: int) -> int:
    ops = cardledger.new_ops(2 * n)
    ops["source"], ops["seq"] = 1, seq0 + np.arange(2 * n)
    ops["kind"][:n], ops["account_id"][:n], ops["account_kind"][:n] = OpKind.OPEN, first + np.arange(n), AccountKind.CARD
    ops["kind"][n:], ops["account_id"][n:], ops["counterparty_id"][n:] = OpKind.TOPUP, first + np.arange(n), CLEARING
    ops["amount_fen"][n:] = 100_000
    ops["time_us"] = T0
    results, _ = engine.apply(ops)
    assert (results["code"] == 0).all()
    return seq0 + 2 * n


def _world(cards: int):
    engine = Engine()
    ops = cardledger.new_ops(2)
    ops["source"], ops["seq"], ops["kind"] = 1, [1, 2], OpKind.OPEN
    ops["account_id"], ops["account_kind"] = [CLEARING, MERCHANT], [AccountKind.CLEARING, AccountKind.MERCHANT]
    ops["time_us"] = T0
    engine.apply(ops)
    seq = _open_cards(engine, CARD_BASE, cards, 3)
    return engine, seq


def _spends(rng, cards: int, n: int, source: int, seq0: int) -> np.ndarray:
    ops = cardledger.new_ops(n)
    ops["source"], ops["seq"], ops["kind"] = source, seq0 + np.arange(n), OpKind.SPEND
    ops["account_id"] = CARD_BASE + rng.integers(0, cards, n)
    ops["counterparty_id"], ops["amount_fen"] = MERCHANT, rng.integers(1, 500, n)
    ops["time_us"] = T0 + ops["seq"]
    return ops


def _setup_ops(cards: int) -> np.ndarray:
    """Open the clearing account, a merchant and `cards` cards, each topped up."""
    ops = cardledger.new_ops(2 + 2 * cards)
    ops["source"], ops["seq"] = 1, np.arange(1, len(ops) + 1)
    ops["kind"][:2], ops["account_id"][:2] = OpKind.OPEN, [CLEARING, MERCHANT]
    ops["account_kind"][:2] = [AccountKind.CLEARING, AccountKind.MERCHANT]
    ops["kind"][2 : 2 + cards], ops["account_id"][2 : 2 + cards] = OpKind.OPEN, CARD_BASE + np.arange(cards)
    ops["account_kind"][2 : 2 + cards] = AccountKind.CARD
    ops["kind"][2 + cards :], ops["account_id"][2 + cards :] = OpKind.TOPUP, CARD_BASE + np.arange(cards)
    ops["counterparty_id"][2 + cards :], ops["amount_fen"][2 + cards :] = CLEARING, 100_000
    ops["time_us"] = T0
    return ops


def _expected(engine):
    accounts, _, pending = engine.export_checkpoint(sort=False)
    return accounts.copy(), pending.copy(), engine.snapshot_journeys().copy()


def _assert_snapshot(engine, got, want) -> None:
    engine.snapshot_complete()
    assert not engine.snapshot_pending()
    accounts, pending, journeys = got
    engine.clear_unused_legs(journeys)
    assert accounts.tobytes() == want[0].tobytes()
    assert pending.tobytes() == want[1].tobytes()
    assert journeys.tobytes() == want[2].tobytes()


@pytest.mark.parametrize("copier", [False, True], ids=["completed-after", "copier-thread"])
def test_snapshot_keeps_the_state_it_began_at_while_batches_change_it(copier: bool) -> None:
    """Batches that run after snapshot_begin change most cards; the snapshot, once
    complete, still holds every account as it was when it began."""
    rng = np.random.default_rng(7)
    cards = 20_000
    engine, _ = _world(cards)
    want = _expected(engine)
    buf = np.zeros(cards + 100, ACCOUNT_DTYPE)
    got = engine.snapshot_begin(buf, None)
    thread = threading.Thread(target=engine.snapshot_complete) if copier else None
    if thread is not None:
        thread.start()
    for b in range(6):  # batches of 8,192 run without the GIL, beside the copier
        results, _ = engine.apply(_spends(rng, cards, 8192, 7, 1 + 8192 * b))
        assert (results["code"] == 0).all()
    if thread is not None:
        thread.join()
    _assert_snapshot(engine, got, want)
    now = engine.export_checkpoint(sort=False)[0]
    assert now.tobytes() != want[0].tobytes(), "the batches changed nothing: the test tests nothing"


def test_snapshot_survives_the_accounts_array_moving() -> None:
    """Opening accounts past the array's capacity mid-snapshot moves the array: the
    snapshot is finished first and holds the state it began at; the new accounts are
    not in it."""
    rng = np.random.default_rng(8)
    cards = 5_000
    engine, seq = _world(cards)
    engine.apply(_spends(rng, cards, 2048, 7, 1))
    want = _expected(engine)
    got = engine.snapshot_begin(None, None)
    thread = threading.Thread(target=engine.snapshot_complete)
    thread.start()
    _open_cards(engine, 900_000, 40_000, seq)  # grows the accounts array at least once
    engine.apply(_spends(rng, cards, 4096, 7, 5000))
    thread.join()
    _assert_snapshot(engine, got, want)
    assert len(got[0]) == cards + 2


def test_a_failed_linked_chain_rolls_back_without_disturbing_the_snapshot() -> None:
    """A chain that fails restores the accounts it changed; the rows it touched were
    copied into the snapshot before the change, so the snapshot is the state before."""
    engine, _ = _world(10)
    want = _expected(engine)
    got = engine.snapshot_begin(None, None)
    ops = cardledger.new_ops(2)
    ops["source"], ops["seq"], ops["kind"] = 9, [1, 2], OpKind.SPEND
    ops["account_id"], ops["counterparty_id"], ops["amount_fen"] = CARD_BASE, MERCHANT, [100, 10**9]
    ops["flags"][0] = OpFlags.LINKED
    ops["time_us"] = T0
    results, _ = engine.apply(ops)
    assert [int(c) for c in results["code"]] == [Result.LINKED_FAILED, Result.INSUFFICIENT_FUNDS]  # the chain failed whole
    _assert_snapshot(engine, got, want)
    assert engine.export_checkpoint(sort=False)[0].tobytes() == want[0].tobytes()


def test_a_second_snapshot_finishes_the_first() -> None:
    """snapshot_begin while a snapshot is still being taken completes that one first:
    each holds the state it began at."""
    rng = np.random.default_rng(9)
    cards = 3_000
    engine, _ = _world(cards)
    want1 = _expected(engine)
    got1 = engine.snapshot_begin(None, None)
    engine.apply(_spends(rng, cards, 2048, 7, 1))
    want2 = _expected(engine)
    got2 = engine.snapshot_begin(None, None)
    assert got1[0].tobytes() == want1[0].tobytes()  # finished by the second begin
    engine.apply(_spends(rng, cards, 2048, 7, 3000))
    _assert_snapshot(engine, got2, want2)


def test_loading_a_checkpoint_mid_snapshot_finishes_it_first() -> None:
    """Replacing the state wholesale (load_checkpoint) while a snapshot is being taken
    first completes the snapshot from the state it began at."""
    engine, _ = _world(2_000)
    want = _expected(engine)
    got = engine.snapshot_begin(None, None)
    other, _ = _world(10)
    accounts, sources, pending = other.export_checkpoint()
    engine.load_checkpoint(accounts, sources, pending, other.journal_seq)
    _assert_snapshot(engine, got, want)


def test_ledger_checkpoints_taken_beside_batches_reopen_to_the_same_state(tmp_path) -> None:
    """Through the Ledger: checkpoints taken every few thousand ops, completed by the
    checkpoint thread beside the next batches, reopen to the state the journal gives."""
    rng = np.random.default_rng(10)
    cards = 4_000
    with cardledger.open(str(tmp_path / "l"), checkpoint_ops=5_000, create=True) as led:
        led.apply(_setup_ops(cards))
        for b in range(12):
            led.apply(_spends(rng, cards, 2048, 7, 1 + 2048 * b))
        led.checkpoint()
        for b in range(12, 15):
            led.apply(_spends(rng, cards, 2048, 7, 1 + 2048 * b))
        before = led.accounts()
        assert led.verify().ok
    with cardledger.open(str(tmp_path / "l"), create=True) as led:
        assert led.accounts().tobytes() == before.tobytes()
        assert led.verify().ok


def test_pipelined_batches_take_snapshots_beside_the_commits_and_reopen_to_the_same_state(tmp_path) -> None:
    """Through `Ledger.submit` (kernels run ahead of the commits): snapshots are begun in
    the submitting thread and completed by the checkpoint thread while later batches
    run; every future resolves, the ledger verifies, and it reopens from its latest
    checkpoint to the same accounts."""
    rng = np.random.default_rng(11)
    cards = 4_000
    with cardledger.open(str(tmp_path / "l"), checkpoint_ops=3_000, create=True) as led:
        led.apply(_setup_ops(cards))
        futures = [led.submit(_spends(rng, cards, 1024, 7, 1 + 1024 * b)) for b in range(40)]
        for f in futures:
            assert (f.result()["code"] == 0).all()
        before = led.accounts()
        assert led.verify().ok
    with cardledger.open(str(tmp_path / "l"), create=True) as led:
        assert led.accounts().tobytes() == before.tobytes()
        assert led.verify().ok
