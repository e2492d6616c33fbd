"""Storage: durability across reopen, checkpoints, the id index, corruption, readers."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading

import lmdb
import numpy as np
import pytest
from helpers import Ops, codes, open_cards

import cardledger
from cardledger.store import env as env_module
from cardledger import OpKind, Result, schema
from cardledger.engine import select
from cardledger.store import checkpoints, datafile, ids, journal, keys


def _setup(led, cards=range(100, 110)):
    open_cards(led, cards, 10_000)


def test_reopen_restores_balances_and_journal_position(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)
        led.apply(Ops(source=7).add(OpKind.SPEND, 100, 2, 2_500).take())
        seq, accounts = led.journal_seq, led.accounts()
    with cardledger.open(ledger_path, create=True) as led:
        assert led.journal_seq == seq
        assert led.accounts().tobytes() == accounts.tobytes()
        assert led.balance(100) == 7_500


@pytest.mark.parametrize("checkpoint_ops", [1, 3, 1000])
def test_ids_stay_decided_across_checkpoints_and_restarts(ledger_path, checkpoint_ops):
    """Every id is decided once: replays after checkpoints and reopens move nothing."""
    b = Ops(source=9)
    with cardledger.open(ledger_path, checkpoint_ops=checkpoint_ops, create=True) as led:
        _setup(led)
        first = b.add(OpKind.SPEND, 100, 2, 1_000).add(OpKind.SPEND, 101, 2, 99_999_999).take()
        later = b.add(OpKind.SPEND, 102, 2, 500).take()
        r1 = led.apply(first)
        led.apply(later)
    for _ in range(2):
        with cardledger.open(ledger_path, checkpoint_ops=checkpoint_ops, create=True) as led:
            r = led.apply(np.concatenate([first, later]))
            assert codes(r) == ["EXISTS", "ID_ALREADY_FAILED", "EXISTS"]
            assert r["journal_seq"][0] == r1["journal_seq"][0]
            assert r["balance_fen"][0] == 9_000
            assert led.balance(100) == 9_000 and led.balance(102) == 9_500
            led.checkpoint()


def test_out_of_order_ids_are_found_after_checkpoint(ledger_path):
    """A gap left by a terminal, filled after a checkpoint, is indexed and replays as EXISTS."""
    with cardledger.open(ledger_path, checkpoint_ops=2, create=True) as led:
        _setup(led)
        b = Ops(source=11, start_seq=10)
        led.apply(b.add(OpKind.SPEND, 100, 2, 100).add(OpKind.SPEND, 100, 2, 100).take())
        led.checkpoint()
        gap = Ops(source=11, start_seq=3).add(OpKind.SPEND, 100, 2, 7).take()
        assert codes(led.apply(gap)) == ["OK"]  # seq 3 < 11 but never used: a new op
        led.checkpoint()
    with cardledger.open(ledger_path, create=True) as led:
        assert codes(led.apply(gap)) == ["EXISTS"]
        assert led.balance(100) == 10_000 - 207


def test_readonly_reader_sees_committed_state_and_catches_up(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)
        reader = cardledger.open(ledger_path, readonly=True)
        assert reader.balance(100) == 10_000
        led.apply(Ops(source=3).add(OpKind.SPEND, 100, 2, 400).take())
        assert reader.balance(100) == 9_600  # caught up from the journal
        with pytest.raises(cardledger.LedgerReadOnlyError):
            reader.apply(Ops(source=3, start_seq=99).add(OpKind.SPEND, 100, 2, 1).take())
        assert reader.verify().ok
        reader.close()


def _reader_process(path, queue, rounds):
    """Sum every balance, repeatedly, while a writer moves money (another process)."""
    led = cardledger.open(path, readonly=True)
    totals = set()
    for _ in range(rounds):
        acc = led.accounts()
        totals.add(int(acc["cash_fen"].sum() + acc["subsidy_fen"].sum()))
    queue.put(sorted(totals))
    led.close()


def test_reader_in_another_process_never_sees_a_partial_batch(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_reader_process, args=(ledger_path, q, 200))
        p.start()
        rng = np.random.default_rng(1)
        b = Ops(source=21)
        while p.is_alive():
            for _ in range(20):
                a, c = rng.choice(np.arange(100, 110), 2, replace=False)
                b.add(OpKind.TRANSFER, int(a), int(c), int(rng.integers(1, 50)))
            led.apply(b.take())
        p.join()
        assert q.get(timeout=30) == [0]  # money only moves between accounts: the sum never changes


def _flip_journal_byte(path, offset_in_records):
    env = lmdb.open(path, max_dbs=len(keys.DB_NAMES), map_size=1 << 34)
    db = env.open_db(b"journal")
    with env.begin(write=True) as txn:
        key, value = next(iter(txn.cursor(db=db)))
        value = bytearray(value)
        body = len(value) - journal.BATCH_HEADER_SIZE
        value[journal.BATCH_HEADER_SIZE + offset_in_records % body] ^= 0x01
        txn.put(key, bytes(value), db=db)
    env.close()


@pytest.mark.parametrize("offset", [0, 40, 151, -1])
def test_a_flipped_journal_byte_is_found(ledger_path, offset):
    with cardledger.open(ledger_path, checkpoint_ops=1 << 20, create=True) as led:
        _setup(led)
        led.checkpoint()  # the damaged batch lies before the checkpoint: open succeeds
    _flip_journal_byte(ledger_path, offset)
    with cardledger.open(ledger_path, create=True) as led:
        report = led.verify()
        assert not report.ok
        assert any("hash mismatch" in p for p in report.problems)


def test_every_byte_of_a_journal_batch_header_is_checked(ledger_path):
    """Flipping any of the 128 header bytes of a stored batch (the hashes, the fields and
    the padding the hash does not cover) is found by verify() or refused at open."""
    with cardledger.open(ledger_path, checkpoint_ops=1 << 20, create=True) as led:
        _setup(led)
        led.checkpoint()  # the damaged batch lies before the checkpoint: open may succeed
    env = lmdb.open(ledger_path, max_dbs=len(keys.DB_NAMES), map_size=1 << 34)
    db = env.open_db(b"journal")
    with env.begin() as txn:
        key, original = next(iter(txn.cursor(db=db)))
    missed = []
    for offset in range(journal.BATCH_HEADER_SIZE):
        damaged = bytearray(original)
        damaged[offset] ^= 0x01
        with env.begin(write=True) as txn:
            txn.put(key, bytes(damaged), db=db)
        env.close()
        try:
            with cardledger.open(ledger_path, create=True) as led:
                if led.verify().ok:
                    missed.append(offset)
        except cardledger.CorruptionError:
            pass
        env = lmdb.open(ledger_path, max_dbs=len(keys.DB_NAMES), map_size=1 << 34)
        db = env.open_db(b"journal")
    with env.begin(write=True) as txn:
        txn.put(key, original, db=db)
    env.close()
    assert missed == []
    with cardledger.open(ledger_path, create=True) as led:
        assert led.verify().ok  # and the undamaged ledger still verifies


@pytest.mark.parametrize("field", range(3))
def test_a_checkpoint_row_count_altered_refuses_to_open_with_a_typed_error(ledger_path, field):
    """The tables' row counts sit outside the body's checksum: a count inflated (here
    by 2^32, which would allocate terabytes) is a CorruptionError, not a MemoryError."""
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)
        led.checkpoint()
    (name,) = [n for n in os.listdir(ledger_path) if n.startswith("checkpoint-") and n.endswith(".cl")]
    count_at = 8 + 8 + 8 * field  # magic, version, padding, journal_seq, then the counts
    with open(os.path.join(ledger_path, name), "r+b") as f:
        f.seek(count_at + 4)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(cardledger.CorruptionError):
        cardledger.open(ledger_path, create=True)


def test_a_damaged_journal_tail_refuses_to_open(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)  # no checkpoint yet: opening replays this batch
    _flip_journal_byte(ledger_path, 60)
    with pytest.raises(cardledger.CorruptionError):
        cardledger.open(ledger_path, create=True)


def test_a_damaged_checkpoint_refuses_to_open(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)
        led.checkpoint()
    (name,) = [n for n in os.listdir(ledger_path) if n.startswith("checkpoint-") and n.endswith(".cl")]
    with open(os.path.join(ledger_path, name), "r+b") as f:
        f.seek(checkpoints.CHECKPOINT_HEADER.size + 20)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x80]))
    with pytest.raises(cardledger.CorruptionError, match="checksum"):
        cardledger.open(ledger_path, create=True)


def test_a_checkpoint_file_of_format_4_still_opens(ledger_path):
    """Format 4 stored the checkpoint tables raw; this version packs them, and reads both."""
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)
        led.checkpoint()
        before = np.sort(led.accounts(), order="id")
        desc = checkpoints.decode_checkpoint_desc(led._store.begin_read().get(b"checkpoint", db=led._store.state_db))
    accounts, pending, journeys = checkpoints.read_checkpoint_file(select.codec_for(None), ledger_path, desc)
    body = accounts.tobytes() + pending.tobytes() + journeys.tobytes()
    import hashlib

    digest = hashlib.sha256(body).digest()
    header = checkpoints.CHECKPOINT_HEADER_RAW.pack(
        checkpoints.CHECKPOINT_MAGIC, keys.FORMAT_VERSION, desc.journal_seq, len(accounts), len(pending),
        len(journeys), desc.last_batch_hash, digest,
    )  # fmt: skip
    with open(os.path.join(ledger_path, checkpoints.checkpoint_file_name(desc.journal_seq)), "wb") as f:
        f.write(header + body)
    env = lmdb.open(ledger_path, max_dbs=len(keys.DB_NAMES), map_size=1 << 34)
    with env.begin(write=True) as txn:
        txn.put(b"checkpoint", checkpoints.encode_checkpoint_desc(desc.journal_seq, desc.last_batch_hash, digest),
                db=env.open_db(b"state", txn=txn))
    env.close()
    with cardledger.open(ledger_path, create=True) as led:
        assert np.sort(led.accounts(), order="id").tobytes() == before.tobytes()
        assert led.verify().ok


def test_a_checkpoint_file_is_stored_packed(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led, cards=range(100, 2100))
        led.checkpoint()
        raw = led.accounts().nbytes
    (name,) = [n for n in os.listdir(ledger_path) if n.startswith("checkpoint-") and n.endswith(".cl")]
    assert os.path.getsize(os.path.join(ledger_path, name)) < raw / 2


def test_a_damaged_id_state_refuses_to_open(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)
        led.checkpoint()
    env = lmdb.open(ledger_path, max_dbs=len(keys.DB_NAMES), map_size=1 << 34)
    db = env.open_db(b"state")
    with env.begin(write=True) as txn:
        blob = bytearray(txn.get(b"sources", db=db))
        blob[3] ^= 0x80
        txn.put(b"sources", bytes(blob), db=db)
    env.close()
    with pytest.raises(cardledger.CorruptionError, match="checksum"):
        cardledger.open(ledger_path, create=True)


def test_a_missing_checkpoint_file_is_reported(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)
        led.checkpoint()
    for n in os.listdir(ledger_path):
        if n.startswith("checkpoint-"):
            os.remove(os.path.join(ledger_path, n))
    with pytest.raises(cardledger.CorruptionError, match="missing"):
        cardledger.open(ledger_path, create=True)


def test_old_checkpoint_files_are_removed(ledger_path):
    with cardledger.open(ledger_path, checkpoint_ops=2, create=True) as led:
        _setup(led)
        for i in range(6):
            led.apply(Ops(source=70, start_seq=10 * i + 1).add(OpKind.SPEND, 100, 2, 1).add(OpKind.SPEND, 101, 2, 1).take())
    files = [n for n in os.listdir(ledger_path) if n.startswith("checkpoint-")]
    assert len(files) == 1, files
    with cardledger.open(ledger_path, create=True) as led:
        assert led.verify().ok
        assert led.balance(100) == 10_000 - 6


def test_statement_walks_back_pointers_across_batches_and_checkpoints(ledger_path):
    with cardledger.open(ledger_path, checkpoint_ops=5, create=True) as led:
        _setup(led)
        b = Ops(source=4, start_seq=1_000)  # event times after the setup's
        for amount in (100, 200, 300):
            led.apply(b.add(OpKind.SPEND, 100, 2, amount).take())
        st = led.statement(100)
        assert st["kind"].tolist() == [OpKind.OPEN, OpKind.TOPUP, OpKind.SPEND, OpKind.SPEND, OpKind.SPEND]
        assert st["balance_fen"].tolist() == [0, 10_000, 9_900, 9_700, 9_400]
        t = int(st["time_us"][3])
        assert led.statement(100, start_us=t)["result_amount_fen"].tolist() == [200, 300]
        merchant = led.statement(2)
        assert merchant["result_amount_fen"].tolist() == [0, 100, 200, 300]


def test_fork_use_is_refused(ledger_path):
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)
        pid = os.fork()
        if pid == 0:  # child: using the parent's Ledger must raise, opening anew must work
            code = 1
            try:
                led.balance(100)
            except cardledger.LedgerError:
                with cardledger.open(ledger_path, readonly=True) as mine:
                    code = 0 if mine.balance(100) == 10_000 else 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert led.balance(100) == 10_000


def test_verify_reports_ok_on_a_healthy_ledger(ledger_path):
    with cardledger.open(ledger_path, checkpoint_ops=7, create=True) as led:
        _setup(led)
        report = led.verify()
        assert report.ok, report.problems
        assert report.records == led.journal_seq
        assert report.accounts == 12
        assert Result.OK == 0


def test_ids_of_a_busy_source_span_several_index_values(ledger_path, monkeypatch):
    """A source's run longer than one index value is cut; every id is still found."""
    monkeypatch.setattr(ids, "ID_RUN_PAIRS_MAX", 3)
    with cardledger.open(ledger_path, checkpoint_ops=1 << 20, create=True) as led:
        _setup(led)
        b = Ops(source=33)
        for _ in range(10):
            b.add(OpKind.SPEND, 100, 2, 1)
        first = b.take()
        led.apply(first)
        led.checkpoint()
    with cardledger.open(ledger_path, create=True) as led:
        assert codes(led.apply(first)) == ["EXISTS"] * 10
        assert led.balance(100) == 10_000 - 10


def _hold_a_reader_and_die(path, ready, max_readers=4):
    import lmdb as _lmdb

    env = _lmdb.open(path, max_dbs=len(keys.DB_NAMES), map_size=1 << 34, max_readers=max_readers)
    txn = env.begin()  # a reader slot, never released: the process is killed
    ready.set()
    import time as _t

    _t.sleep(60)
    del txn


def test_reader_slots_of_dead_processes_are_reclaimed(ledger_path):
    import multiprocessing as _mp
    import signal

    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)
    ctx = _mp.get_context("spawn")
    procs = []
    for _ in range(3):
        ready = ctx.Event()
        p = ctx.Process(target=_hold_a_reader_and_die, args=(ledger_path, ready))
        p.start()
        assert ready.wait(30)
        procs.append(p)
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
        p.join()
    with cardledger.open(ledger_path, readonly=True) as reader:  # reader_check on open
        assert reader.balance(100) == 10_000


def _readers_holding_every_slot(path, slots):
    """`slots` processes, each holding one reader slot of the ledger at `path` (spawned)."""
    import multiprocessing as _mp

    ctx = _mp.get_context("spawn")
    procs = []
    for _ in range(slots):
        ready = ctx.Event()
        p = ctx.Process(target=_hold_a_reader_and_die, args=(path, ready, slots))
        p.start()
        assert ready.wait(30)
        procs.append(p)
    return procs


def _kill_all(procs):
    import signal

    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
        p.join()


def test_reader_slots_all_taken_by_dead_processes_are_reclaimed_while_the_ledger_is_open(
        ledger_path, monkeypatch):
    """With the environment kept open here (so LMDB cannot reset its lock file), dead
    processes fill every reader slot: the next read finds none free, reclaims theirs
    (reader_check) and goes on; a new open in another process does the same."""
    import multiprocessing as _mp

    slots = 6
    monkeypatch.setattr(env_module, "MAX_READERS", slots)
    with cardledger.open(ledger_path, create=True) as led, cardledger.open(ledger_path, readonly=True) as reader:
        _setup(led)
        procs = _readers_holding_every_slot(ledger_path, slots)
        _kill_all(procs)
        assert led._store.env.readers().count("\n") > slots  # the dead processes' slots are still taken
        assert reader.balance(100) == 10_000  # a read transaction: slots reclaimed, not ReadersFull
        ctx = _mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_balance_in_child, args=(ledger_path, 100, q))
        p.start()
        p.join(60)
        assert q.get(timeout=5) == 10_000


def _balance_in_child(path, account, q):
    with cardledger.open(path, readonly=True) as reader:
        q.put(reader.balance(account))


def test_reader_slots_held_by_live_processes_give_a_storage_error_then_recover(ledger_path, monkeypatch):
    """Every reader slot held by a live process: a read raises StorageError naming the
    cause; once those processes are gone, reads work again."""
    slots = 4
    monkeypatch.setattr(env_module, "MAX_READERS", slots)
    with cardledger.open(ledger_path, create=True) as led, cardledger.open(ledger_path, readonly=True) as reader:
        _setup(led)
        procs = _readers_holding_every_slot(ledger_path, slots)
        with pytest.raises(cardledger.StorageError, match="reader slots"):
            reader.balance(100)
        _kill_all(procs)
        assert reader.balance(100) == 10_000


def test_a_ledger_that_fails_to_open_releases_its_environment(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)  # no checkpoint: opening replays this batch
    _flip_journal_byte(ledger_path, 60)
    for _ in range(2):  # the second attempt must fail the same way, not on a leaked env
        with pytest.raises(cardledger.CorruptionError):
            cardledger.open(ledger_path, create=True)
    from cardledger.store.env import ENVS  # the environment registry holds nothing for this path now

    assert os.path.realpath(ledger_path) not in ENVS._envs


def _checkpoint_tables(n: int, seed: int = 5):
    """Accounts and journeys of `n` cards with varied contents (they pack to several pieces)."""
    rng = np.random.default_rng(seed)
    tables = []
    for dtype in (schema.ACCOUNT_DTYPE, schema.JOURNEY_DTYPE):
        a = np.zeros(n, dtype=dtype)
        words = a.view(np.uint64).reshape(n, -1)
        words[:, :3] = rng.integers(0, 1 << 40, (n, 3), dtype=np.uint64)
        tables.append(a)
    return tables[0], np.zeros(0, dtype=schema.PENDING_DTYPE), tables[1]


def test_a_paced_checkpoint_file_is_the_same_file_and_reports_its_progress(tmp_path, monkeypatch):
    """`pace` is called after every piece written with the bytes written so far (never
    decreasing, ending at the whole file), and pacing changes nothing in the file."""
    monkeypatch.setattr(checkpoints, "DIRECT_CHUNK_BYTES", 64 << 10)
    monkeypatch.setattr(checkpoints, "CHECKPOINT_SYNC_BYTES", 64 << 10)
    accounts, pending, journeys = _checkpoint_tables(20_000)
    plain, paced = tmp_path / "plain", tmp_path / "paced"
    plain.mkdir()
    paced.mkdir()
    calls: list[int] = []
    d1 = checkpoints.write_checkpoint_file(select.codec_for(None), str(plain), 9, b"\1" * 32, accounts, pending, journeys)
    d2 = checkpoints.write_checkpoint_file(select.codec_for(None), str(paced), 9, b"\1" * 32, accounts, pending, journeys, pace=calls.append)
    name = checkpoints.checkpoint_file_name(9)
    data = (plain / name).read_bytes()
    assert d1 == d2 and data == (paced / name).read_bytes()
    assert len(calls) >= 4 and calls == sorted(calls)
    assert len(data) - (64 << 10) <= calls[-1] <= len(data)


def test_checkpoint_and_close_do_not_wait_for_the_pace(ledger_path, monkeypatch):
    """A checkpoint file written beside the batches goes out at
    `checkpoint_pace_bytes_per_s`; `checkpoint()` and `close()`, which wait for it, lift
    the pace: here a pace of 1 byte a second would take hours."""
    monkeypatch.setattr(checkpoints, "DIRECT_CHUNK_BYTES", 4096)
    monkeypatch.setattr(checkpoints, "CHECKPOINT_SYNC_BYTES", 4096)
    led = cardledger.open(ledger_path, checkpoint_ops=500, create=True)
    try:
        led.checkpoint_pace_bytes_per_s = 1
        paced: list[int] = []  # bytes written, at each call of the file's pace
        make_pacer = led._checkpoints._pacer

        def counting_pacer():
            pace = make_pacer()
            return lambda written: (paced.append(written), pace(written))

        monkeypatch.setattr(led._checkpoints, "_pacer", counting_pacer)
        # 6,002 ops: a snapshot is taken, its file (~25 kB, several 4 kB pieces) paced
        _setup(led, cards=range(100, 3_100))
        assert led._checkpoints.file_job is not None and not led._checkpoints.file_job[2].done()
        done = threading.Event()
        t = threading.Thread(target=lambda: (led.checkpoint(), done.set()), daemon=True)
        t.start()
        t.join(120)
        assert done.is_set(), "checkpoint() waited for the pace"
        assert paced and paced == sorted(paced)  # the file was paced, then hurried
        led.apply(Ops(source=7).add(OpKind.SPEND, 100, 2, 2_500).take())
        more = Ops(source=8)
        for c in range(3_100, 3_400):
            more.add(OpKind.OPEN, c, account_kind=cardledger.AccountKind.CARD).add(OpKind.TOPUP, c, 1, 10_000)
        assert (led.apply(more.take())["code"] == 0).all()
        assert led._checkpoints.file_job is not None and not led._checkpoints.file_job[2].done()  # paced at close
    finally:
        closer = threading.Thread(target=led.close, daemon=True)
        closer.start()
        closer.join(120)
        assert not closer.is_alive(), "close() waited for the pace"
    with cardledger.open(ledger_path, create=True) as led:
        assert led.verify().ok
        assert led.balance(100) == 7_500 and led.balance(3_399) == 10_000


def test_zero_extend_appends_written_zeros_up_to_the_limit(tmp_path):
    """zero_extend appends zeros (blocks the file owns, not a hole) after the data and
    never past its limit; at or past the limit it changes nothing."""
    p = tmp_path / "f"
    p.write_bytes(b"x" * 5000)
    fd = os.open(p, os.O_RDWR)
    try:
        assert datafile.zero_extend(fd, 3 * datafile.ZERO_PIECE_BYTES + 7, 1 << 30) == 5000 + 3 * datafile.ZERO_PIECE_BYTES + 7
        assert datafile.zero_extend(fd, 1 << 20, 5000 + 3 * datafile.ZERO_PIECE_BYTES + 100) == 5000 + 3 * datafile.ZERO_PIECE_BYTES + 100
        assert datafile.zero_extend(fd, 1 << 20, 10) == 5000 + 3 * datafile.ZERO_PIECE_BYTES + 100
        st = os.fstat(fd)
        assert st.st_blocks * 512 >= st.st_size - 4096  # written, not sparse
    finally:
        os.close(fd)
    data = p.read_bytes()
    assert data[:5000] == b"x" * 5000 and data[5000:] == bytes(len(data) - 5000)


def test_apply_keeps_the_data_file_extended_ahead_of_its_pages(ledger_path, monkeypatch):
    """Batches through `apply` extend the LMDB data file with zeros, a piece at a time,
    until it runs DATA_FILE_AHEAD_BYTES past LMDB's last page (a file already that long);
    LMDB writes into that room, the ledger reopens and verifies, and the disk figure
    counts only the pages."""
    from cardledger.store import datafile as datafile_mod

    ahead = 256 << 10
    monkeypatch.setattr(datafile_mod, "DATA_FILE_AHEAD_BYTES", ahead)
    monkeypatch.setattr(datafile_mod, "DATA_FILE_EXTEND_BYTES", ahead // 2)
    spender = Ops(source=77)
    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, range(100, 200), 100_000)
        more = Ops(source=51)  # pages past `ahead`
        for card in range(1_000, 21_000):
            more.add(OpKind.OPEN, card, account_kind=cardledger.AccountKind.CARD)
        assert set(codes(led.apply(more.take()))) == {"OK"}
        for _ in range(6):
            for card in range(100, 200):
                spender.add(OpKind.SPEND, card, 2, 1)
            assert set(codes(led.apply(spender.take()))) == {"OK"}
        balances = led.accounts().tobytes()
    size = os.path.getsize(os.path.join(ledger_path, "data.mdb"))
    used = datafile.lmdb_used_bytes(ledger_path)
    assert used > ahead
    slack = 1 << 16  # the last batch's own pages, written after the last extension
    assert size - used >= ahead - slack
    assert datafile.ledger_disk_bytes(ledger_path) <= sum(
        os.path.getsize(os.path.join(ledger_path, f)) for f in os.listdir(ledger_path)) - (ahead - slack)

    with cardledger.open(ledger_path, create=True) as led:
        assert led.verify().ok and led.accounts().tobytes() == balances
        for card in range(100, 200):
            spender.add(OpKind.SPEND, card, 2, 1)
        assert set(codes(led.apply(spender.take()))) == {"OK"}


def test_a_small_ledger_is_kept_only_as_far_ahead_as_it_is_long():
    """A new or small ledger is not given 32 MiB of zeros: it is kept as far ahead of its
    pages as it is long (at least a piece), a large one the whole distance."""
    assert datafile.ahead_bytes(100_000) == datafile.ZERO_PIECE_BYTES
    assert datafile.ahead_bytes(5 << 20) == 5 << 20
    assert datafile.ahead_bytes(10 << 30) == datafile.DATA_FILE_AHEAD_BYTES


def test_a_failed_data_file_extension_costs_no_batch(ledger_path, monkeypatch):
    """Extending the data file is best effort: when it fails (a full disk), the batch
    commits as usual and the ledger stops extending."""
    import errno

    calls = []

    def full(*args):
        calls.append(args)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datafile, "zero_extend", full)
    spender = Ops(source=78)
    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, range(100, 110), 1_000)
        for _ in range(3):
            spender.add(OpKind.SPEND, 100, 2, 1)
            assert codes(led.apply(spender.take())) == ["OK"]
        assert len(calls) == 1 and led.balance(100) == 1_000 - 3
        assert led.verify().ok


def test_the_id_state_is_stored_sorted_by_source_whatever_order_it_comes_in():
    """`encode_ids_state` sorts the sources (the core hands them over unsorted, so the
    sort runs beside the kernel): any order gives the same stored bytes, and they
    decode to the rows by source id."""
    from cardledger.schema import SOURCE_DTYPE

    rng = np.random.default_rng(3)
    rows = np.zeros(500, SOURCE_DTYPE)
    rows["source"] = rng.permutation(10_000)[:500] + 1
    rows["last_seq"], rows["checkpoint_seq"] = rng.integers(0, 1 << 40, 500), rng.integers(0, 1 << 40, 500)
    by_source = rows[np.argsort(rows["source"])]
    shuffled = ids.encode_ids_state(77, rows)
    assert shuffled == ids.encode_ids_state(77, by_source)
    upto, decoded = ids.decode_ids_state(shuffled.get)
    assert upto == 77 and decoded.tobytes() == by_source.tobytes()


@pytest.mark.parametrize("key", [b"default_cap_fen", b"format"])
def test_a_damaged_meta_value_refuses_to_open_with_a_typed_error(ledger_path, key):
    """The ledger's meta values (format marker, default cap) cut short: CorruptionError."""
    with cardledger.open(ledger_path, create=True) as led:
        _setup(led)
    env = lmdb.open(ledger_path, max_dbs=len(keys.DB_NAMES), map_size=1 << 34)
    db = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(key, b"\x01\x02\x03", db=db)
    env.close()
    with pytest.raises(cardledger.CorruptionError, match="damaged"):
        cardledger.open(ledger_path, create=True)
