"""The id log: id flushes are appended to it and, once it holds IDS_LOG_FLUSHES_MAX,
merged into the id index a slice of sources per batch; an id is found wherever it
sits, before, during and after a merge, across reopens, in order or late, and a
damaged entry is detected."""

from __future__ import annotations

import threading

import lmdb
import numpy as np
import pytest
from helpers import Ops, codes, open_cards

import cardledger
from cardledger import OpKind
from cardledger.engine import select
from cardledger.store import ids, keys
from cardledger.store.ids import IDS_LOG_FLUSHES_MAX, IDS_MERGE_SLICES

#: The codec of the engine under test (the pure one when CARDLEDGER_PURE=1).
CODEC = select.codec_for(None)

CARDS = range(100, 140)
TERMINALS = range(1_000, 1_007)


def _setup(led) -> None:
    open_cards(led, CARDS, 100_000)


def _spends(terminals: dict[int, Ops], n: int, rng: np.random.Generator) -> np.ndarray:
    """n SPENDs from the terminals in turn (each with its own increasing seqs)."""
    ids = list(terminals)
    for i in range(n):
        t = terminals[ids[i % len(ids)]]
        t.add(OpKind.SPEND, int(rng.choice(CARDS)), 2, int(rng.integers(1, 50)))
    return np.concatenate([t.take() for t in terminals.values()])


def _log_entries(ledger_path: str) -> int:
    return _log_state(ledger_path)[0]


def _log_state(ledger_path: str) -> tuple[int, tuple[int, int] | None]:
    """(flushes in the id log, the merge in progress) as stored."""
    env = lmdb.open(ledger_path, max_dbs=len(keys.DB_NAMES), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            db = env.open_db(b"state", txn=txn, create=False)
            return len(ids.read_id_log(CODEC, txn, db)), ids.decode_id_merge(txn.get(ids.IDMERGE_KEY, db=db))
    finally:
        env.close()


def _history(ledger_path: str, flushes: int, terminals=TERMINALS) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Apply `flushes` flushes' worth of batches (one flush per batch); return the
    batches and their results.

    `apply` stores the flush a batch made due with the next batch (taken before that
    batch's kernel): the last batch is resent at the end, which decides nothing anew
    (every op EXISTS) and stores the last flush."""
    rng = np.random.default_rng(7)
    by_id = {t: Ops(source=t) for t in terminals}
    batches, results = [], []
    with cardledger.open(ledger_path, checkpoint_ops=1 << 20, create=True) as led:
        led.ids_flush_ops = 1  # every batch flushes its ids
        _setup(led)
        for _ in range(flushes):
            batch = _spends(by_id, 20, rng)
            batches.append(batch)
            results.append(led.apply(batch))
        if batches:
            assert set(codes(led.apply(batches[-1]))) == {"EXISTS"}
    return batches, results


@pytest.mark.parametrize("flushes", [3, IDS_LOG_FLUSHES_MAX - 1, IDS_LOG_FLUSHES_MAX + 3])
def test_ids_in_the_log_and_in_the_index_replay_as_exists_after_reopen(ledger_path, flushes):
    batches, results = _history(ledger_path, flushes)
    # The setup batch and each later one flushed. A full log starts merging with the
    # flush that filled it, a slice of its 8 sources per batch after: 8 batches later,
    # the merged flushes leave the log.
    entries, merging = _log_state(ledger_path)
    if flushes + 1 < IDS_LOG_FLUSHES_MAX:
        assert (entries, merging) == (flushes + 1, None)
    elif flushes + 1 == IDS_LOG_FLUSHES_MAX:
        assert entries == IDS_LOG_FLUSHES_MAX and merging is not None and merging[1] == 0
    else:
        assert entries == flushes + 1 and merging is not None and merging[1] > 0
    with cardledger.open(ledger_path, create=True) as led:
        before = led.accounts().tobytes()
        for batch, first in zip(batches, results):
            again = led.apply(batch)
            assert set(codes(again)) == {"EXISTS"}
            assert (again["journal_seq"] == first["journal_seq"]).all()
            assert (again["balance_fen"] == first["balance_fen"]).all()
        assert led.accounts().tobytes() == before
        assert led.verify().ok


def test_a_full_log_is_merged_a_slice_of_sources_per_batch(ledger_path):
    """After the log fills, each batch that stores journal records merges the next slice
    of sources (the merge state moves up, source by source here), ids are found
    mid-merge, and once every source is merged the flushes leave the log and the index
    holds every id. A batch of replays only (no journal records) merges nothing."""
    batches, _ = _history(ledger_path, IDS_LOG_FLUSHES_MAX - 1)  # + setup = one full log
    entries, merging = _log_state(ledger_path)
    assert entries == IDS_LOG_FLUSHES_MAX and merging is not None and merging[1] == 0
    upto = merging[0]
    sources = sorted({50, *TERMINALS})  # the setup's source and the terminals'
    assert len(sources) < IDS_MERGE_SLICES  # so one slice a source
    spender = Ops(source=5_000)
    seen = []
    with cardledger.open(ledger_path, checkpoint_ops=1 << 20, create=True) as led:
        for step in range(len(sources)):
            if step == 3:  # mid-merge, each id is found, in the log or in the index
                again = led.apply(np.concatenate(batches + [spender.add(OpKind.SPEND, CARDS[0], 2, 1).take()]))
                assert set(codes(again[:-1])) == {"EXISTS"} and codes(again[-1:]) == ["OK"]
            else:
                led.apply(spender.add(OpKind.SPEND, CARDS[0], 2, 1).take())
            seen.append((len(led._ids.committed.logs), led._ids.committed.merging))
            if step == 1:
                assert set(codes(led.apply(batches[0]))) == {"EXISTS"}  # nothing stored: no step
                assert (len(led._ids.committed.logs), led._ids.committed.merging) == seen[-1]
    assert [m for _, m in seen] == [(upto, s) for s in sources[1:]] + [None]
    assert [e for e, _ in seen] == [IDS_LOG_FLUSHES_MAX] * (len(sources) - 1) + [0]
    assert _log_state(ledger_path) == (0, None)
    env = lmdb.open(ledger_path, max_dbs=len(keys.DB_NAMES), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            cur = txn.cursor(db=env.open_db(b"ids", txn=txn, create=False))
            late_get = lambda k: txn.get(k, db=env.open_db(b"ids_late", txn=txn, create=False))  # noqa: E731
            for batch in batches:
                for source, seq in zip(batch["source"].tolist(), batch["seq"].tolist()):
                    assert ids.lookup_id(CODEC, cur, late_get, source, seq) is not None
            assert ids.lookup_id(CODEC, cur, late_get, TERMINALS[0], 10**9) is None
    finally:
        env.close()


def test_late_ids_are_found_in_the_log_and_after_the_merge(ledger_path):
    """Ids filled into a terminal's gap after its later seqs were flushed are 'late'."""
    with cardledger.open(ledger_path, checkpoint_ops=1 << 20, create=True) as led:
        led.ids_flush_ops = 1
        _setup(led)
        led.apply(Ops(source=77, start_seq=100).add(OpKind.SPEND, 100, 2, 5).take())
        gaps = [Ops(source=77, start_seq=s).add(OpKind.SPEND, 101, 2, s).take() for s in range(1, 40)]
        for k, gap in enumerate(gaps):
            assert codes(led.apply(gap)) == ["OK"]
            # every earlier gap replays, whether its flush sits in the log or was merged
            for earlier in gaps[: k + 1 : 7]:
                assert codes(led.apply(earlier)) == ["EXISTS"]
        balance = led.balance(101)
    with cardledger.open(ledger_path, create=True) as led:
        assert [codes(led.apply(g)) for g in gaps] == [["EXISTS"]] * len(gaps)
        assert led.balance(101) == balance


def test_submit_finds_ids_in_the_log_as_apply_does(ledger_path):
    batches, results = _history(ledger_path, IDS_LOG_FLUSHES_MAX + 5)
    with cardledger.open(ledger_path, create=True) as led:
        led.ids_flush_ops = 1
        futures = [led.submit(b) for b in batches]
        for f, first in zip(futures, results):
            again = f.result(timeout=60)
            assert set(codes(again)) == {"EXISTS"}
            assert (again["journal_seq"] == first["journal_seq"]).all()


def test_a_damaged_id_log_entry_is_detected(ledger_path):
    _history(ledger_path, 3)
    env = lmdb.open(ledger_path, max_dbs=len(keys.DB_NAMES), map_size=1 << 34)
    with env.begin(write=True) as txn:
        db = env.open_db(b"state", txn=txn)
        key = ids.idlog_key(ids.read_id_log(CODEC, txn, db)[0].ids_upto)
        value = bytearray(txn.get(key, db=db))
        value[-3] ^= 0x01
        txn.put(key, bytes(value), db=db)
    env.close()
    with pytest.raises(cardledger.CorruptionError, match="id log"):
        cardledger.open(ledger_path, create=True)


def test_an_id_log_entry_round_trips():
    rng = np.random.default_rng(3)
    n = 500
    decisions = np.zeros(n, dtype=[("source", "<u8"), ("seq", "<u8"), ("journal_seq", "<u8")])
    decisions["source"] = np.sort(rng.integers(1, 20, n))
    decisions["seq"] = np.arange(n) + 1
    decisions["journal_seq"] = rng.permutation(n) + 1000
    late = rng.random(n) < 0.1
    key, value, log = ids.encode_id_log(CODEC, decisions, late, 5000)
    back = ids.decode_id_log(CODEC, key, value)
    q_src = np.append(decisions["source"], [19, 0]).astype(np.uint64)
    q_seq = np.append(decisions["seq"], [10**6, 1]).astype(np.uint64)
    for found_log in (log, back):
        out = np.zeros(n + 2, dtype=np.uint64)
        found_log.find(q_src, q_seq, out)
        assert (out[:n] == decisions["journal_seq"]).all() and (out[n:] == 0).all()


@pytest.mark.parametrize("seed", range(3))
def test_both_codecs_find_the_same_ids_in_a_log(seed):
    from cardledger import _core
    from cardledger.engine.spec import codec

    rng = np.random.default_rng(seed)
    n = 300
    src = np.sort(rng.integers(1, 12, n)).astype(np.uint64)
    seq = (np.arange(n) * 3 + 1).astype(np.uint64)
    jseq = (rng.permutation(n) + 1).astype(np.uint64)
    key_src, key_seq, offsets, blob = _core.pack_id_runs(src, seq, jseq, 7)  # short runs: several per source
    q_src = rng.integers(0, 13, 2000).astype(np.uint64)
    q_seq = rng.integers(0, 3 * n + 3, 2000).astype(np.uint64)
    results = []
    for find_runs, find_exact in ((codec.find_ids_in_runs, codec.find_ids_exact),
                                  (_core.find_ids_in_runs, _core.find_ids_exact)):
        runs = np.zeros(len(q_src), dtype=np.uint64)
        find_runs(key_src, key_seq, offsets, blob, q_src, q_seq, runs)
        exact = np.zeros(len(q_src), dtype=np.uint64)
        find_exact(src, seq, jseq, q_src, q_seq, exact)
        results.append((runs, exact))
    truth = {(s, q): j for s, q, j in zip(src.tolist(), seq.tolist(), jseq.tolist())}
    expected = np.array([truth.get((s, q), 0) for s, q in zip(q_src.tolist(), q_seq.tolist())], dtype=np.uint64)
    assert expected.any()
    for runs, exact in results:
        assert (runs == expected).all() and (exact == expected).all()


def test_a_merge_that_falls_behind_the_flushes_is_finished_at_once(ledger_path):
    """With more sources than the flushes leave batches for (41 slices, a flush every
    batch), the merge still in progress when the log fills again is finished in that
    flush's batch: the log never holds more than two logs' worth, and every id stays
    found, before and after a reopen."""
    terminals = range(2_000, 2_040)
    flushes = 3 * IDS_LOG_FLUSHES_MAX
    batches, results = _history(ledger_path, flushes, terminals)
    entries, merging = _log_state(ledger_path)
    assert entries < 2 * IDS_LOG_FLUSHES_MAX and merging is not None
    with cardledger.open(ledger_path, create=True) as led:
        for batch, first in zip(batches, results):
            again = led.apply(batch)
            assert set(codes(again)) == {"EXISTS"}
            assert (again["journal_seq"] == first["journal_seq"]).all()
        assert led.verify().ok


def test_a_damaged_merge_state_is_detected(ledger_path):
    """A merge state naming no flush of the id log is refused on open and by verify."""
    _history(ledger_path, 3)
    env = lmdb.open(ledger_path, max_dbs=len(keys.DB_NAMES), map_size=1 << 34)
    with env.begin(write=True) as txn:
        db = env.open_db(b"state", txn=txn)
        txn.put(ids.IDMERGE_KEY, ids.encode_id_merge(1, 0), db=db)  # before every flush
    env.close()
    with pytest.raises(cardledger.CorruptionError, match="merge"):
        cardledger.open(ledger_path, create=True)


def _merge_stepper(path: str, commands, replies) -> None:
    """A writer in another process: applies one spend per command (never flushing)."""
    spender = Ops(source=6_000)
    with cardledger.open(path, checkpoint_ops=1 << 20, create=True) as led:
        while commands.get(timeout=60):
            led.apply(spender.add(OpKind.SPEND, CARDS[1], 2, 1).take())
            replies.put(led._ids.committed.merging)


def test_a_writer_continues_the_merge_another_process_advanced(ledger_path):
    """Two writer processes take turns mid-merge: each catches up with the slices the
    other merged (none is merged twice, none skipped), and every id stays found."""
    import multiprocessing as mp

    batches, results = _history(ledger_path, IDS_LOG_FLUSHES_MAX - 1)
    ctx = mp.get_context("spawn")
    commands, replies = ctx.Queue(), ctx.Queue()
    other = ctx.Process(target=_merge_stepper, args=(ledger_path, commands, replies))
    other.start()
    states = []
    try:
        with cardledger.open(ledger_path, checkpoint_ops=1 << 20, create=True) as led:
            spender = Ops(source=6_001)
            while True:
                commands.put(True)
                states.append(replies.get(timeout=60))
                if states[-1] is None:
                    break
                led.apply(spender.add(OpKind.SPEND, CARDS[2], 2, 1).take())
                states.append(led._ids.committed.merging)
                if states[-1] is None:
                    break
            for batch, first in zip(batches, results):
                again = led.apply(batch)
                assert set(codes(again)) == {"EXISTS"}
                assert (again["journal_seq"] == first["journal_seq"]).all()
            assert led.verify().ok
    finally:
        commands.put(False)
        other.join(60)
    assert other.exitcode == 0
    next_sources = [m[1] for m in states[:-1]]
    assert states[-1] is None and next_sources == sorted(set(next_sources)) and len(states) >= 3


@pytest.mark.parametrize("seed", range(3))
def test_merged_index_items_are_every_flushs_items_in_key_order_in_both_codecs(seed):
    """id_index_items: the runs (and late ids) of several flushes for a range of
    sources, merged in key order; slices that tile the sources give every item once,
    and the core and the pure codec give the same bytes."""
    from cardledger import _core
    from cardledger.engine.spec import codec

    rng = np.random.default_rng(seed)
    logs = []
    for f in range(5):
        n = int(rng.integers(0, 400))
        d = np.zeros(n, dtype=[("source", "<u8"), ("seq", "<u8"), ("journal_seq", "<u8")])
        d["source"] = np.sort(rng.integers(1, 40, n))
        d["seq"] = np.arange(n) * 5 + f + 1  # flushes decide disjoint seqs
        d["journal_seq"] = rng.permutation(n) + 1 + 1000 * f
        late = rng.random(n) < 0.2
        logs.append(ids.encode_id_log(CODEC, d, late, 10_000 + f)[2])
    cols = lambda name: [getattr(lg, name) for lg in logs]  # noqa: E731
    cuts = [0, 3, 17, 18, 30]
    for args in ((cols("key_src"), cols("key_seq"), cols("blob"), cols("offsets")),
                 (cols("late_src"), cols("late_seq"), cols("late_jseq"), None)):
        whole = {impl: impl.id_index_items(*args, 0, None) for impl in (_core, codec)}
        assert whole[_core] == whole[codec] == sorted(whole[codec])
        assert len({k for k, _ in whole[_core]}) == len(whole[_core]) == sum(len(a) for a in args[0])
        tiled = []
        for lo, hi in zip(cuts, cuts[1:] + [None]):
            part = _core.id_index_items(*args, lo, hi)
            assert part == codec.id_index_items(*args, lo, hi)
            tiled += part
        assert tiled == whole[_core]


def _stored_log_entries(led) -> int:
    """Flushes in the id log of an open ledger, as stored."""
    with led._store.env.begin() as txn:
        return len(ids.read_id_log(CODEC, txn, led._store.state_db))


def test_apply_stores_a_due_flush_with_the_next_batch_which_finds_its_ids(ledger_path):
    """`apply` takes the flush a batch made due before the next batch's kernel and
    stores it in that batch's transaction: that batch's resends of the taken ids (and
    of older ones) are answered from the flush in flight, EXISTS with their figures."""
    rng = np.random.default_rng(3)
    by_id = {t: Ops(source=t) for t in TERMINALS}
    with cardledger.open(ledger_path, checkpoint_ops=1 << 20, create=True) as led:
        led.ids_flush_ops = 30
        _setup(led)  # 82 decisions: a flush is due
        first = _spends(by_id, 40, rng)
        r_first = led.apply(first)  # took the setup's flush before its kernel
        assert _stored_log_entries(led) == 1 and led._engine.recent_count == len(first)
        second = _spends(by_id, 20, rng)
        both = np.concatenate([first[:7], second, first[7:]])  # resends around new ops
        r = led.apply(both)  # takes `first`'s decisions before its kernel
        assert _stored_log_entries(led) == 2 and led._engine.recent_count == len(second)
        resent = np.r_[0:7, 7 + len(second) : len(both)]
        assert set(codes(r[resent])) == {"EXISTS"} and set(codes(r[7 : 7 + len(second)])) == {"OK"}
        assert (r["journal_seq"][resent] == r_first["journal_seq"]).all()
        assert (r["balance_fen"][resent] == r_first["balance_fen"]).all()
        assert led.verify().ok


def test_a_batch_that_fails_after_taking_a_flush_loses_no_id(ledger_path, monkeypatch):
    """If the batch that took a flush fails (here its encoding), nothing of it is stored,
    the engine is rebuilt from disk, and the ids it took are found again afterwards."""
    rng = np.random.default_rng(4)
    by_id = {t: Ops(source=t) for t in TERMINALS}
    with cardledger.open(ledger_path, checkpoint_ops=1 << 20, create=True) as led:
        led.ids_flush_ops = 30
        _setup(led)
        first = _spends(by_id, 40, rng)
        r_first = led.apply(first)  # a flush of its 40 decisions is now due
        entries = _stored_log_entries(led)

        def broken(flush):
            raise OSError("encoding failed")

        monkeypatch.setattr(led._ids, "encode", broken)
        second = _spends(by_id, 20, rng)
        with pytest.raises(OSError, match="encoding failed"):
            led.apply(second)
        monkeypatch.undo()
        assert _stored_log_entries(led) == entries
        r = led.apply(np.concatenate([first, second]))
        assert set(codes(r[: len(first)])) == {"EXISTS"} and set(codes(r[len(first) :])) == {"OK"}
        assert (r["journal_seq"][: len(first)] == r_first["journal_seq"]).all()
        assert led.verify().ok
    with cardledger.open(ledger_path, create=True) as led:
        assert set(codes(led.apply(np.concatenate([first, second])))) == {"EXISTS"}


def test_apply_builds_each_merge_steps_items_beside_the_kernel(ledger_path, monkeypatch):
    """`apply` builds the id index items of its merge step in the id-flush thread while
    its kernel runs (the slice is known before it): every step of a whole merge uses
    them, none is built on the batch thread, and every id is in the index after."""
    batches, _ = _history(ledger_path, IDS_LOG_FLUSHES_MAX - 1)  # + setup = one full log
    built_in = []
    merged = ids.merged_index_items

    def recording(*args, **kwargs):
        built_in.append(threading.current_thread().name)
        return merged(*args, **kwargs)

    monkeypatch.setattr(ids, "merged_index_items", recording)
    spender = Ops(source=5_000)
    with cardledger.open(ledger_path, checkpoint_ops=1 << 20, create=True) as led:
        while led._ids.committed.merging is not None:
            led.apply(spender.add(OpKind.SPEND, CARDS[0], 2, 1).take())
        steps = len(built_in)
        assert steps == len({50, *TERMINALS}) and all(n.startswith("cardledger-idflush") for n in built_in)
        again = led.apply(np.concatenate(batches))
        assert set(codes(again)) == {"EXISTS"}
        assert led.verify().ok
    assert _log_state(ledger_path) == (0, None)
