"""Crash atomicity: a writer killed with SIGKILL at random instants loses no
acknowledged batch, leaves no batch half-applied, and the ledger keeps working.

The writer (a child process) applies batches of transfers among a few accounts and
reports each batch's index on a pipe only after `apply` returned. The parent kills it
at a random moment — inside the kernel, the LMDB commit, a checkpoint snapshot or the
background checkpoint file write (checkpoint_ops is small, so those are frequent) —
then reopens and checks: every acknowledged batch is present, every batch present is
whole, the balances equal a replay of exactly those batches, and `verify()` passes.
The writer either applies each batch (`apply`) or pipelines them (`submit`, up to two
in flight, each acknowledged once its future resolved). The quick versions run in CI;
the soak (`-m soak`, CRASH_MODE=apply|submit) does 1,000 kills.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time

import numpy as np
import pytest

import cardledger
from cardledger import AccountKind, OpKind
from cardledger.commit.pipeline import SubmitWindow

ACCOUNTS = list(range(10, 18))
SOURCE = 77
OPS_PER_BATCH = 40


def batch_ops(index: int) -> np.ndarray:
    """Batch `index`: deterministic transfers (one id range per batch)."""
    rng = np.random.default_rng(index)
    ops = cardledger.new_ops(OPS_PER_BATCH)
    ops["source"] = SOURCE
    ops["seq"] = index * OPS_PER_BATCH + 1 + np.arange(OPS_PER_BATCH)
    ops["kind"] = OpKind.TRANSFER
    pairs = np.array([rng.choice(ACCOUNTS, 2, replace=False) for _ in range(OPS_PER_BATCH)])
    ops["account_id"], ops["counterparty_id"] = pairs[:, 0], pairs[:, 1]
    ops["amount_fen"] = rng.integers(1, 500, OPS_PER_BATCH)
    ops["time_us"] = 1_767_225_600_000_000 + index
    return ops


def setup_ops() -> np.ndarray:
    ops = cardledger.new_ops(2 * len(ACCOUNTS))
    ops["source"] = 1
    ops["seq"] = np.arange(1, len(ops) + 1)
    for i, a in enumerate(ACCOUNTS):
        ops[i]["kind"], ops[i]["account_id"], ops[i]["account_kind"] = OpKind.OPEN, a, AccountKind.MERCHANT
        j = len(ACCOUNTS) + i
        ops[j]["kind"], ops[j]["account_id"], ops[j]["counterparty_id"] = OpKind.TRANSFER, 1, a
        ops[j]["amount_fen"] = 1_000_000
    head = cardledger.new_ops(1)
    head["source"], head["seq"], head["kind"], head["account_id"] = 1, 1_000, OpKind.OPEN, 1
    head["account_kind"] = AccountKind.CLEARING
    return np.concatenate([head, ops])


def writer(path: str, start: int, conn, durability: str = "full", mode: str = "apply") -> None:
    """Apply batches start, start+1, ... forever; acknowledge each once it is durable:
    after `apply` returns, or (mode "submit") once its `submit` future resolved, with
    the pipeline kept full."""
    led = cardledger.open(path, checkpoint_ops=97, durability=durability, create=True)
    window = SubmitWindow(led, lambda j, _results, _seconds: conn.send(j))
    i = start
    while True:
        if mode == "apply":
            led.apply(batch_ops(i))
            conn.send(i)
        else:
            window.submit(batch_ops(i), i)
        i += 1


class ReferenceReplay:
    """The pure-Python engine fed exactly the batches the crashed ledger holds.

    Batches present are always a prefix 0..k (the writer applies them in order and a
    batch is whole or absent), so the reference only ever applies the new ones: the
    soak's checks stay linear in the batches, not quadratic."""

    def __init__(self, path: str) -> None:
        self.ledger = cardledger.open(path, engine="python", create=True)
        self.ledger.apply(setup_ops())
        self.upto = -1  # highest batch applied

    def state_after(self, batches: list[int]) -> np.ndarray:
        assert batches == list(range(len(batches))), "the batches present are not a prefix 0..k"
        assert len(batches) - 1 >= self.upto, "a batch present before is gone"
        for i in range(self.upto + 1, len(batches)):
            self.ledger.apply(batch_ops(i))
        self.upto = len(batches) - 1
        return self.ledger.accounts()

    def close(self) -> None:
        self.ledger.close()


# A soak starts a fresh ledger every EPOCH_KILLS kills: verify() replays the whole
# journal, so one ever-growing ledger would make a 1,000-kill soak quadratic. Each
# epoch still runs long enough for its kills to land in checkpoints and id flushes.
EPOCH_KILLS = 100


def run_kills(tmp_path, kills: int, seed: int, durability: str = "full", mode: str = "apply") -> None:
    rnd = random.Random(seed)
    for epoch, first in enumerate(range(0, kills, EPOCH_KILLS)):
        kill_numbers = range(first, min(kills, first + EPOCH_KILLS))
        _run_epoch(tmp_path / f"epoch-{epoch}", kill_numbers, rnd, seed, durability, mode)


def _run_epoch(root, kill_numbers: range, rnd: random.Random, seed: int, durability: str, mode: str) -> None:
    root.mkdir()
    path = str(root / "ledger")
    with cardledger.open(path, create=True) as led:
        led.apply(setup_ops())
        seen_seq = led.journal_seq
    ctx = mp.get_context("fork")
    acked: list[int] = []
    applied: list[int] = []
    reference = ReferenceReplay(str(root / "reference"))
    try:
        for k in kill_numbers:
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(target=writer, args=(path, len(applied), child, durability, mode))
            p.start()
            child.close()
            deadline = time.monotonic() + rnd.uniform(0.02, 0.4)
            while time.monotonic() < deadline:
                if parent.poll(0.005):
                    acked.append(parent.recv())
            os.kill(p.pid, signal.SIGKILL)
            p.join()
            while parent.poll():
                try:
                    acked.append(parent.recv())
                except EOFError:
                    break
            parent.close()
            with cardledger.open(path, create=True) as led:
                now_seq = led.journal_seq
                assert now_seq >= seen_seq, f"seed {seed} kill {k}: the journal lost committed batches"
                applied += _batches_between(led, seen_seq + 1)
                seen_seq = now_seq
                assert set(acked) <= set(applied), f"seed {seed} kill {k}: acknowledged batches lost"
                report = led.verify()
                assert report.ok, f"seed {seed} kill {k}: {report.problems}"
                live = led.accounts()
            want = reference.state_after(applied)
            assert live.tobytes() == want.tobytes(), f"seed {seed} kill {k}: state is not the replay of whole batches"
    finally:
        reference.close()


def _batches_between(led, start_seq: int) -> list[int]:
    """Batches whose records are in the journal from start_seq on; each must be whole."""
    recs = led.journal(start_seq)
    mine = recs[recs["source"] == SOURCE]
    idx = (mine["seq"] - 1) // OPS_PER_BATCH
    batches, counts = np.unique(idx, return_counts=True)
    assert (counts == OPS_PER_BATCH).all(), "a batch is only partly present"
    return [int(b) for b in batches]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_never_loses_or_splits_a_batch(tmp_path):
    seed = int(os.environ.get("CRASH_SEED", "1"))
    run_kills(tmp_path, kills=12, seed=seed)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_with_pipelined_submits_never_loses_or_splits_a_batch(tmp_path):
    """Ledger.submit: kills land while batches are staged ahead of the disk too."""
    run_kills(tmp_path, kills=8, seed=int(os.environ.get("CRASH_SEED", "3")), mode="submit")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_in_nometasync_mode_loses_nothing_either(tmp_path):
    """nometasync weakens only power-loss durability: a process crash still loses nothing."""
    run_kills(tmp_path, kills=4, seed=5, durability="nometasync")


def test_unknown_or_unsafe_durability_modes_are_refused(tmp_path):
    for mode in ("nosync", "writemap", ""):
        with pytest.raises(ValueError, match="durability"):
            cardledger.open(str(tmp_path / "x"), durability=mode, create=True)


@pytest.mark.soak
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_soak(tmp_path):
    seed = int(os.environ.get("CRASH_SEED", str(random.randrange(1 << 30))))
    mode = os.environ.get("CRASH_MODE", "apply")  # or "submit": the writer pipelines its batches
    print(f"crash soak seed {seed} mode {mode}")
    run_kills(tmp_path, kills=int(os.environ.get("CRASH_KILLS", "1000")), seed=seed, mode=mode)
