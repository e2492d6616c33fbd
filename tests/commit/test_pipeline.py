"""Ledger.submit: pipelined batches give exactly what apply gives, and a failed commit
loses nothing.

`submit` runs a batch's kernel at once and commits it in the ledger's store thread
while the next batch runs; the future resolves after the durable commit. These tests
hold it to `apply`'s contract: the same results, balances and journal for the same
batches; checkpoints and id flushes in the middle of a pipeline; a commit that fails
or meets another writer's batch re-applies what was staged after it, in order.
"""

from __future__ import annotations

import random
import threading
import time

import lmdb
import numpy as np
import pytest

import cardledger
import cardledger.ledger as ledger_module
from cardledger.store import env as env_module
from cardledger import CorruptionError, LedgerClosedError, LedgerReadOnlyError, SchemaError, StorageError
from cardledger.commit.pipeline import PIPELINE_BATCHES_MAX
from helpers.opgen import OpWorld

#: Small, so id flushes and snapshots happen every few batches of the pipeline.
CHECKPOINT_OPS = 300


def _world_batches(seed: int, count: int = 40, size: int = 60) -> list[np.ndarray]:
    world = OpWorld(random.Random(seed))
    return [world.setup_batch()] + [world.batch(size) for _ in range(count)]


def _hold_commits(monkeypatch) -> threading.Event:
    """Make every pipelined commit wait until the returned event is set."""
    gate = threading.Event()
    real = ledger_module.Ledger._commit_pipelined

    def held(self, staged):
        gate.wait(60)
        return real(self, staged)

    monkeypatch.setattr(ledger_module.Ledger, "_commit_pipelined", held)
    return gate


def _transfer_batches(count: int, size: int = 10, source: int = 5) -> list[np.ndarray]:
    """Plain transfers 1 -> 2 with fresh ids: every batch goes through the pipeline."""
    batches = []
    for i in range(count):
        b = cardledger.new_ops(size)
        b["source"], b["seq"], b["kind"] = source, 1 + size * i + np.arange(size), cardledger.OpKind.TRANSFER
        b["account_id"], b["counterparty_id"], b["amount_fen"] = 1, 2, 1
        b["time_us"] = 1_767_225_600_000_000 + b["seq"]
        batches.append(b)
    return batches


def _applied(path: str, batches: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Results, accounts and journal of `batches` applied one by one with apply."""
    with cardledger.open(path, checkpoint_ops=CHECKPOINT_OPS, create=True) as led:
        results = [led.apply(b) for b in batches]
        return results, led.accounts(), led.journal()


def _same_results(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.tobytes() == w.tobytes(), f"batch {i} differs"


def _same_journal(got: np.ndarray, want: np.ndarray) -> None:
    # commit_time_us is wall-clock: everything else must match.
    keep = [n for n in want.dtype.names if n != "commit_time_us"]
    assert got[keep].tobytes() == want[keep].tobytes()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_submitted_batches_give_what_apply_gives(tmp_path, seed):
    """Same results, balances and journal as apply, across id flushes, snapshots and a reopen."""
    batches = _world_batches(seed)
    want, want_accounts, want_journal = _applied(str(tmp_path / "applied"), batches)
    path = str(tmp_path / "submitted")
    with cardledger.open(path, checkpoint_ops=CHECKPOINT_OPS, create=True) as led:
        futures = [led.submit(b) for b in batches]
        got = [f.result(timeout=60) for f in futures]
        assert led.accounts().tobytes() == want_accounts.tobytes()
        assert led.verify().ok
        # Snapshots were taken and their files named while batches were in flight.
        assert led._checkpoints.ckpt_seq > 0
    _same_results(got, want)
    with cardledger.open(path, create=True) as again:
        assert again.accounts().tobytes() == want_accounts.tobytes()
        _same_journal(again.journal(), want_journal)
        assert again.verify().ok


def test_a_future_resolves_only_after_its_commit_and_cannot_be_cancelled(tmp_path):
    batches = _world_batches(4, count=3)
    with cardledger.open(str(tmp_path / "l"), create=True) as led:
        futures = [led.submit(b) for b in batches]
        assert not any(f.cancel() for f in futures)
        results = [f.result(timeout=60) for f in futures]
        # Every batch resolved is stored: a reader in a new transaction sees its journal.
        with cardledger.open(str(tmp_path / "l"), readonly=True) as reader:
            assert reader.journal_seq == max(int(r["journal_seq"].max()) for r in results)


def test_apply_after_submit_waits_for_the_batches_in_flight(tmp_path):
    """Mixing apply and submit keeps call order."""
    batches = _world_batches(5)
    want, want_accounts, _ = _applied(str(tmp_path / "applied"), batches)
    with cardledger.open(str(tmp_path / "mixed"), checkpoint_ops=CHECKPOINT_OPS, create=True) as led:
        got: list = []
        for i, b in enumerate(batches):
            got.append(led.submit(b) if i % 3 else led.apply(b))
        got = [g.result(timeout=60) if hasattr(g, "result") else g for g in got]
        assert led.accounts().tobytes() == want_accounts.tobytes()
    _same_results(got, want)


def test_the_caller_may_reuse_its_array_at_once(tmp_path):
    batches = _world_batches(6, count=10)
    want, _, _ = _applied(str(tmp_path / "applied"), batches)
    buf = np.zeros(max(len(b) for b in batches), dtype=cardledger.OP_DTYPE)
    with cardledger.open(str(tmp_path / "reused"), checkpoint_ops=CHECKPOINT_OPS, create=True) as led:
        futures = []
        for b in batches:
            buf[: len(b)] = b
            futures.append(led.submit(buf[: len(b)]))
            buf[:] = 0  # scribbled over while the batch may still be in flight
        _same_results([f.result(timeout=60) for f in futures], want)


def test_close_stores_every_batch_handed_over(tmp_path):
    batches = _world_batches(7)
    _, want_accounts, _ = _applied(str(tmp_path / "applied"), batches)
    path = str(tmp_path / "closing")
    led = cardledger.open(path, checkpoint_ops=CHECKPOINT_OPS, create=True)
    futures = [led.submit(b) for b in batches]
    led.close()
    assert all(f.done() for f in futures)
    with cardledger.open(path, create=True) as again:
        assert again.accounts().tobytes() == want_accounts.tobytes()


@pytest.mark.parametrize("fail_at", [0, 3, 9])
def test_a_failed_commit_re_applies_it_and_what_followed_in_order(tmp_path, monkeypatch, fail_at):
    """One pipelined commit fails once: it and every batch staged after it are applied
    again from the stored state, so the results equal plain applies."""
    batches = _world_batches(8, count=20)
    want, want_accounts, want_journal = _applied(str(tmp_path / "applied"), batches)
    calls = {"n": 0}
    real = ledger_module.Ledger._commit_pipelined

    def flaky(self, staged):
        calls["n"] += 1
        if calls["n"] == fail_at + 1:
            raise lmdb.DiskError("injected: the disk said no")
        return real(self, staged)

    monkeypatch.setattr(ledger_module.Ledger, "_commit_pipelined", flaky)
    path = str(tmp_path / "flaky")
    with cardledger.open(path, checkpoint_ops=1 << 20, create=True) as led:  # no checkpoint: every commit pipelined
        futures = [led.submit(b) for b in batches]
        got = [f.result(timeout=60) for f in futures]
        assert calls["n"] > fail_at  # the failure did happen
        assert led.accounts().tobytes() == want_accounts.tobytes()
        assert led.verify().ok
    _same_results(got, want)
    with cardledger.open(path, create=True) as again:
        _same_journal(again.journal(), want_journal)


def test_a_storage_error_that_persists_fails_the_future_and_applies_nothing(tmp_path, monkeypatch):
    batches = _world_batches(9, count=4)
    path = str(tmp_path / "l")
    with cardledger.open(path, create=True) as led:
        led.apply(batches[0])
        before = led.accounts()

        def broken_commit(self, staged):
            raise lmdb.DiskError("injected: the disk is gone")

        def broken_apply(self, ops):
            raise lmdb.DiskError("injected: the disk is gone")

        monkeypatch.setattr(ledger_module.Ledger, "_commit_pipelined", broken_commit)
        monkeypatch.setattr(ledger_module.Ledger, "_apply_once", broken_apply)
        futures = [led.submit(b) for b in batches[1:]]
        for f in futures:
            with pytest.raises(StorageError):
                f.result(timeout=60)
        monkeypatch.undo()
        assert led.accounts().tobytes() == before.tobytes()
        led.apply(batches[1])  # usable again once the disk is
        assert led.verify().ok


def test_a_full_map_during_pipelined_commits_grows_and_loses_nothing(tmp_path, monkeypatch):
    batches = _world_batches(10, count=60, size=120)
    want, want_accounts, _ = _applied(str(tmp_path / "roomy"), batches)
    monkeypatch.setattr(env_module, "MAP_SIZE_INITIAL_BYTES", 128 * 1024)
    path = str(tmp_path / "cramped")
    with cardledger.open(path, checkpoint_ops=CHECKPOINT_OPS, create=True) as led:
        got = [f.result(timeout=60) for f in [led.submit(b) for b in batches]]
        grown_to = led._store.env.info()["map_size"]
        assert led.accounts().tobytes() == want_accounts.tobytes()
        assert led.verify().ok
    assert grown_to > 128 * 1024
    _same_results(got, want)


def test_a_kernel_failing_on_state_a_failed_commit_discarded_is_applied_again(tmp_path, monkeypatch):
    """An earlier batch's commit fails while the next batch's kernel runs, and that
    kernel fails because of it (CI met this: a resent id's decision pointed at a
    journal record the failed commit would never store). The batch is applied again
    on the reloaded state, like the batches set aside, and its future carries the
    results apply would give; nothing raises."""
    # (Transfers only: a batch with taps is applied synchronously before fares are stored.)
    batches = [OpWorld(random.Random(12)).setup_batch()] + _transfer_batches(12, size=60)
    want, want_accounts, _ = _applied(str(tmp_path / "serial"), batches)
    real_commit, real_kernel = ledger_module.Ledger._commit_pipelined, ledger_module.Ledger._run_kernel
    calls = {"commits": 0, "injected": 0}
    failing, kernel_started = threading.Event(), threading.Event()

    def commit_failing_third(self, staged):
        calls["commits"] += 1
        if calls["commits"] == 3:
            failing.set()
            kernel_started.wait(60)  # fail while the next batch's kernel runs
            raise lmdb.MapFullError("injected: the third pipelined commit fails")
        return real_commit(self, staged)

    def kernel_failing_on_discarded_state(self, txn, ops, *args, **kwargs):
        # (txn is None: a pipelined kernel; the re-applies run in a write transaction)
        if txn is None and failing.is_set() and not kernel_started.is_set():
            kernel_started.set()
            deadline = time.monotonic() + 60
            while not self._pipeline.broken and time.monotonic() < deadline:
                time.sleep(0.001)
            assert self._pipeline.broken
            calls["injected"] += 1
            raise CorruptionError("injected: journal record 683 is missing")
        return real_kernel(self, txn, ops, *args, **kwargs)

    monkeypatch.setattr(ledger_module.Ledger, "_commit_pipelined", commit_failing_third)
    monkeypatch.setattr(ledger_module.Ledger, "_run_kernel", kernel_failing_on_discarded_state)
    with cardledger.open(str(tmp_path / "piped"), checkpoint_ops=CHECKPOINT_OPS, create=True) as led:
        got = [f.result(timeout=60) for f in [led.submit(b) for b in batches]]
        assert calls["injected"] == 1
        assert led.accounts().tobytes() == want_accounts.tobytes()
        assert led.verify().ok
    _same_results(got, want)


def test_a_batch_staged_on_state_another_writer_changed_is_re_applied_after_it(tmp_path):
    """Writer a stages a batch on state that writer b has moved on from: the commit
    thread finds the journal head moved, and the batch is applied again on top of b's,
    as a synchronous apply would (which catches up first)."""
    world = OpWorld(random.Random(11))
    setup, x1, y, x2 = world.setup_batch(), world.batch(50), world.batch(50), world.batch(50)
    x2 = x2[x2["kind"] != cardledger.OpKind.TAP]  # (a TAP without fares installed is never staged)
    x2["flags"][-1] &= ~cardledger.OpFlags.LINKED  # (nor is a chain left open by the cut)
    with cardledger.open(str(tmp_path / "serial"), create=True) as serial:
        want = [serial.apply(b) for b in (setup, x1, y, x2)]
        want_accounts = serial.accounts()
    path = str(tmp_path / "shared")
    with cardledger.open(path, create=True) as a:
        a.apply(setup)
        assert a.submit(x1).result(timeout=60).tobytes() == want[1].tobytes()
        with cardledger.open(path, create=True) as b:  # a second writer of the same ledger
            assert b.apply(y).tobytes() == want[2].tobytes()
        got = a.submit(x2).result(timeout=60)
        assert got.tobytes() == want[3].tobytes()
        assert a._pipeline_off  # it did meet b's batch; from now on a applies synchronously
        assert a.accounts().tobytes() == want_accounts.tobytes()
        assert a.verify().ok


def test_submit_refuses_misuse_at_once(tmp_path):
    path = str(tmp_path / "l")
    led = cardledger.open(path, create=True)
    with pytest.raises(SchemaError):
        led.submit(np.zeros(3, dtype=np.int64))
    assert led.submit(cardledger.new_ops(0)).result().size == 0
    led.close()
    with pytest.raises(LedgerClosedError):
        led.submit(cardledger.new_ops(1))
    with cardledger.open(path, readonly=True) as reader:
        with pytest.raises(LedgerReadOnlyError):
            reader.submit(cardledger.new_ops(1))


def test_at_most_the_pipeline_depth_is_in_flight(tmp_path, monkeypatch):
    """submit blocks rather than stage more than PIPELINE_BATCHES_MAX batches ahead."""
    gate = _hold_commits(monkeypatch)
    setup = OpWorld(random.Random(12)).setup_batch()
    batches = _transfer_batches(PIPELINE_BATCHES_MAX + 3)
    with cardledger.open(str(tmp_path / "l"), checkpoint_ops=1 << 20, create=True) as led:
        led.apply(setup)
        submitted: list = []

        def submitter():
            for b in batches:
                submitted.append(led.submit(b))

        t = threading.Thread(target=submitter)
        t.start()
        t.join(1.0)
        # One in the store thread, PIPELINE_BATCHES_MAX - 1 queued, the next one waits.
        assert t.is_alive() and len(submitted) == PIPELINE_BATCHES_MAX
        gate.set()
        t.join(60)
        assert all(f.result(timeout=60) is not None for f in submitted)


def test_replays_of_ids_in_an_id_flush_still_in_flight_are_found(tmp_path, monkeypatch):
    """A batch's id flush leaves the engine's window before its commit is stored; a
    replay of those ids meanwhile is found in the flush in flight, with the original
    figures from the journal in flight: EXISTS, nothing moved twice."""
    setup = OpWorld(random.Random(13)).setup_batch()
    (first,) = _transfer_batches(1, size=60, source=9)
    first["amount_fen"] = 1 + np.arange(60)
    with cardledger.open(str(tmp_path / "l"), create=True) as led:
        led.apply(setup)
        led.ids_flush_ops = 50  # the first batch's decisions are flushed with it
        before = led.balance(2)
        gate = _hold_commits(monkeypatch)
        done_first = led.submit(first)
        replayed = led.submit(first.copy())  # every id decided by `first`, not stored yet
        assert not done_first.done() and not replayed.done()
        gate.set()
        want, got = done_first.result(timeout=60), replayed.result(timeout=60)
        assert (want["code"] == cardledger.Result.OK).all()
        assert (got["code"] == cardledger.Result.EXISTS).all()
        assert (got["amount_fen"] == want["amount_fen"]).all()
        assert (got["journal_seq"] == want["journal_seq"]).all()
        assert led.balance(2) - before == int(first["amount_fen"].sum())  # moved once
        assert led.verify().ok


def test_a_done_callback_calling_the_ledger_is_refused_not_deadlocked(tmp_path, monkeypatch):
    """Callbacks run in the store thread; calling the ledger from there would wait for
    that very thread, so it raises LedgerError at once, and the ledger goes on."""
    batches = [OpWorld(random.Random(14)).setup_batch()] + _transfer_batches(6)
    seen: list = []

    def callback(_future):
        for call in (lambda: led.balance(1), lambda: led.submit(batches[1]), lambda: led.journal()):
            try:
                call()
            except cardledger.LedgerError as e:
                seen.append(str(e))

    with cardledger.open(str(tmp_path / "l"), create=True) as led:
        led.apply(batches[0])
        gate = _hold_commits(monkeypatch)
        futures = [led.submit(b) for b in batches[1:3]]
        futures[0].add_done_callback(callback)  # not resolved yet: it runs in the store thread
        gate.set()
        futures += [led.submit(b) for b in batches[3:]]
        results = [f.result(timeout=60) for f in futures]
        assert len(results) == 6 and led.verify().ok
    assert len(seen) == 3 and all("store thread" in e for e in seen)
