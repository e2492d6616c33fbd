"""Several processes on one ledger: writers serialise and catch up; hot backup."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

import cardledger
from cardledger import AccountKind, OpKind

HOT = [10, 11, 12, 13]
START_FEN = 1_000_000
T0 = 1_767_225_600_000_000  # every op's time_us (2026-01-01 UTC): it must be positive


def _setup(path):
    with cardledger.open(path, checkpoint_ops=50, create=True) as led:
        ops = cardledger.new_ops(1 + 2 * len(HOT))
        ops["source"], ops["seq"] = 1, np.arange(1, len(ops) + 1)
        ops[0]["kind"], ops[0]["account_id"], ops[0]["account_kind"] = OpKind.OPEN, 1, AccountKind.CLEARING
        for i, a in enumerate(HOT):
            ops[1 + i]["kind"], ops[1 + i]["account_id"], ops[1 + i]["account_kind"] = OpKind.OPEN, a, AccountKind.MERCHANT
            j = 1 + len(HOT) + i
            ops[j]["kind"], ops[j]["account_id"], ops[j]["counterparty_id"] = OpKind.TRANSFER, 1, a
            ops[j]["amount_fen"] = START_FEN
        ops["time_us"] = T0
        assert (led.apply(ops)["code"] == 0).all()


def _writer(path, source, batches, queue, checkpoint_ops=50, ids_flush_ops=None):
    """Move money among the hot accounts; report the money this writer moved."""
    rng = np.random.default_rng(source)
    moved = ok = 0
    with cardledger.open(path, checkpoint_ops=checkpoint_ops, create=True) as led:
        if ids_flush_ops is not None:
            led.ids_flush_ops = ids_flush_ops
        for b in range(batches):
            ops = cardledger.new_ops(20)
            ops["source"], ops["seq"], ops["kind"] = source, b * 20 + 1 + np.arange(20), OpKind.TRANSFER
            for i in range(20):
                ops[i]["account_id"], ops[i]["counterparty_id"] = rng.choice(HOT, 2, replace=False)
            ops["amount_fen"] = rng.integers(1, 1_000, 20)
            ops["time_us"] = T0 + ops["seq"]
            r = led.apply(ops)
            ok += int((r["code"] == 0).sum())
            moved += int(r["amount_fen"].sum())
    queue.put((source, ok, moved))


def _reader(path, rounds, queue):
    totals = set()
    with cardledger.open(path, readonly=True) as led:
        for _ in range(rounds):
            acc = led.accounts()
            totals.add(int(acc["cash_fen"][acc["kind"] != AccountKind.CLEARING].sum()))
    queue.put(("reader", sorted(totals)))


@pytest.mark.parametrize("checkpoint_ops, ids_flush_ops", [(50, None), (1 << 20, 30)])
def test_writers_in_several_processes_serialise_and_readers_see_whole_batches(tmp_path, checkpoint_ops, ids_flush_ops):
    """Writers in three processes, checkpointing often, or flushing ids often (so the
    id log fills and is merged by the writers)."""
    path = str(tmp_path / "ledger")
    _setup(path)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, 100 + w, 60, q, checkpoint_ops, ids_flush_ops)) for w in range(3)]
    procs.append(ctx.Process(target=_reader, args=(path, 150, q)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    out = [q.get(timeout=10) for _ in procs]
    reader = [o for o in out if o[0] == "reader"][0]
    assert reader[1] == [len(HOT) * START_FEN]  # money only moves among the hot accounts
    writers = [o for o in out if o[0] != "reader"]
    with cardledger.open(path, create=True) as led:
        assert led.verify().ok
        recs = led.journal()
        for source, ok, moved in writers:  # every writer's batches are all there, once
            mine = recs[(recs["source"] == source) & (recs["code"] == 0)]
            assert len(mine) == ok and int(mine["result_amount_fen"].sum()) == moved
        assert sum(led.balance(a) for a in HOT) == len(HOT) * START_FEN


def _busy_writer(path, stop):
    rng = np.random.default_rng(5)
    with cardledger.open(path, checkpoint_ops=50, create=True) as led:
        b = 0
        while not stop.is_set():
            ops = cardledger.new_ops(30)
            ops["source"], ops["seq"], ops["kind"] = 300, b * 30 + 1 + np.arange(30), OpKind.TRANSFER
            for i in range(30):
                ops[i]["account_id"], ops[i]["counterparty_id"] = rng.choice(HOT, 2, replace=False)
            ops["amount_fen"] = rng.integers(1, 100, 30)
            ops["time_us"] = T0 + ops["seq"]
            led.apply(ops)
            b += 1


def test_hot_backup_while_a_writer_runs_opens_and_verifies(tmp_path):
    path = str(tmp_path / "ledger")
    _setup(path)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    p = ctx.Process(target=_busy_writer, args=(path, stop))
    p.start()
    try:
        with cardledger.open(path, readonly=True) as reader:
            for k in range(3):
                while reader.journal_seq < 300 * (k + 1):
                    pass
                dest = str(tmp_path / f"backup{k}")
                reader.backup(dest)
                with cardledger.open(dest) as copy:
                    report = copy.verify()
                    assert report.ok, report.problems
                    assert sum(copy.balance(a) for a in HOT) == len(HOT) * START_FEN
                    assert copy.journal_seq >= 300 * (k + 1)
    finally:
        stop.set()
        p.join(60)
    assert p.exitcode == 0
    with pytest.raises(ValueError, match="not empty"):
        with cardledger.open(path, create=True) as led:
            led.backup(str(tmp_path / "backup0"))


def test_backups_taken_under_a_write_load_each_open_and_verify(tmp_path):
    """`cardledger backup` (the command an operator runs) while another process writes:
    every copy inspects clean, opens, and holds all the money."""
    import subprocess
    import sys

    path = str(tmp_path / "ledger")
    _setup(path)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    p = ctx.Process(target=_busy_writer, args=(path, stop))
    p.start()
    seqs = []
    try:
        with cardledger.open(path, readonly=True) as reader:
            for k in range(3):
                while reader.journal_seq < 200 * (k + 1):
                    pass
                dest = str(tmp_path / f"backup{k}")
                proc = subprocess.run([sys.executable, "-m", "cardledger", "backup", path, dest],
                                      capture_output=True, text=True, timeout=120)
                assert proc.returncode == 0, proc.stderr
                assert cardledger.inspect(dest).ok
                with cardledger.open(dest) as copy:
                    assert sum(copy.balance(a) for a in HOT) == len(HOT) * START_FEN
                    seqs.append(copy.journal_seq)
    finally:
        stop.set()
        p.join(60)
    assert p.exitcode == 0
    assert seqs == sorted(seqs) and seqs[0] >= 200
