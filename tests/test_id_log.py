"""The id log: id flushes are appended to it and merged into the id index every
IDS_LOG_FLUSHES_MAX flushes; an id is found wherever it sits, before and after a merge,
across reopens, in order or late, and a damaged entry is detected."""

from __future__ import annotations

import lmdb
import numpy as np
import pytest
from conftest import Ops, codes, open_cards

import cardledger
from cardledger import OpKind, storage
from cardledger.ledger import IDS_LOG_FLUSHES_MAX

CARDS = range(100, 140)
TERMINALS = range(1_000, 1_007)


def _setup(led) -> None:
    open_cards(led, CARDS, 100_000)


def _spends(terminals: dict[int, Ops], n: int, rng: np.random.Generator) -> np.ndarray:
    """n SPENDs from the terminals in turn (each with its own increasing seqs)."""
    for i in range(n):
        t = terminals[TERMINALS[i % len(TERMINALS)]]
        t.add(OpKind.SPEND, int(rng.choice(CARDS)), 2, int(rng.integers(1, 50)))
    return np.concatenate([t.take() for t in terminals.values()])


def _log_entries(ledger_path: str) -> int:
    env = lmdb.open(ledger_path, max_dbs=len(storage.DB_NAMES), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return len(storage.read_id_log(txn, env.open_db(b"state", txn=txn, create=False)))
    finally:
        env.close()


def _history(ledger_path: str, flushes: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Apply `flushes` flushes' worth of batches (one flush per batch); return the
    batches and their results."""
    rng = np.random.default_rng(7)
    terminals = {t: Ops(source=t) for t in TERMINALS}
    batches, results = [], []
    with cardledger.open(ledger_path, checkpoint_ops=1 << 20) as led:
        led.ids_flush_ops = 1  # every batch flushes its ids
        _setup(led)
        for _ in range(flushes):
            batch = _spends(terminals, 20, rng)
            batches.append(batch)
            results.append(led.apply(batch))
    return batches, results


@pytest.mark.parametrize("flushes", [3, IDS_LOG_FLUSHES_MAX - 1, IDS_LOG_FLUSHES_MAX + 3])
def test_ids_in_the_log_and_in_the_index_replay_as_exists_after_reopen(ledger_path, flushes):
    batches, results = _history(ledger_path, flushes)
    # the setup batch and each later one flushed: merged every IDS_LOG_FLUSHES_MAX
    assert _log_entries(ledger_path) == (flushes + 1) % IDS_LOG_FLUSHES_MAX
    with cardledger.open(ledger_path) as led:
        before = led.accounts().tobytes()
        for batch, first in zip(batches, results):
            again = led.apply(batch)
            assert set(codes(again)) == {"EXISTS"}
            assert (again["journal_seq"] == first["journal_seq"]).all()
            assert (again["balance_fen"] == first["balance_fen"]).all()
        assert led.accounts().tobytes() == before
        assert led.verify().ok


def test_a_merge_writes_every_flushed_id_into_the_index(ledger_path):
    batches, _ = _history(ledger_path, IDS_LOG_FLUSHES_MAX - 1)  # + setup = one full log
    assert _log_entries(ledger_path) == 0
    env = lmdb.open(ledger_path, max_dbs=len(storage.DB_NAMES), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            cur = txn.cursor(db=env.open_db(b"ids", txn=txn, create=False))
            late_get = lambda k: txn.get(k, db=env.open_db(b"ids_late", txn=txn, create=False))  # noqa: E731
            for batch in batches:
                for source, seq in zip(batch["source"].tolist(), batch["seq"].tolist()):
                    assert storage.lookup_id(cur, late_get, source, seq) is not None
            assert storage.lookup_id(cur, late_get, TERMINALS[0], 10**9) is None
    finally:
        env.close()


def test_late_ids_are_found_in_the_log_and_after_the_merge(ledger_path):
    """Ids filled into a terminal's gap after its later seqs were flushed are 'late'."""
    with cardledger.open(ledger_path, checkpoint_ops=1 << 20) as led:
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
    with cardledger.open(ledger_path) as led:
        assert [codes(led.apply(g)) for g in gaps] == [["EXISTS"]] * len(gaps)
        assert led.balance(101) == balance


def test_submit_finds_ids_in_the_log_as_apply_does(ledger_path):
    batches, results = _history(ledger_path, IDS_LOG_FLUSHES_MAX + 5)
    with cardledger.open(ledger_path) as led:
        led.ids_flush_ops = 1
        futures = [led.submit(b) for b in batches]
        for f, first in zip(futures, results):
            again = f.result(timeout=60)
            assert set(codes(again)) == {"EXISTS"}
            assert (again["journal_seq"] == first["journal_seq"]).all()


def test_a_damaged_id_log_entry_is_detected(ledger_path):
    _history(ledger_path, 3)
    env = lmdb.open(ledger_path, max_dbs=len(storage.DB_NAMES), map_size=1 << 34)
    with env.begin(write=True) as txn:
        db = env.open_db(b"state", txn=txn)
        key = storage.idlog_key(storage.read_id_log(txn, db)[0].ids_upto)
        value = bytearray(txn.get(key, db=db))
        value[-3] ^= 0x01
        txn.put(key, bytes(value), db=db)
    env.close()
    with pytest.raises(cardledger.CorruptionError, match="id log"):
        cardledger.open(ledger_path)


def test_an_id_log_entry_round_trips():
    rng = np.random.default_rng(3)
    n = 500
    decisions = np.zeros(n, dtype=[("source", "<u8"), ("seq", "<u8"), ("journal_seq", "<u8")])
    decisions["source"] = np.sort(rng.integers(1, 20, n))
    decisions["seq"] = np.arange(n) + 1
    decisions["journal_seq"] = rng.permutation(n) + 1000
    late = rng.random(n) < 0.1
    key, value, log = storage.encode_id_log(decisions, late, 5000)
    back = storage.decode_id_log(key, value)
    q_src = np.append(decisions["source"], [19, 0]).astype(np.uint64)
    q_seq = np.append(decisions["seq"], [10**6, 1]).astype(np.uint64)
    for found_log in (log, back):
        out = np.zeros(n + 2, dtype=np.uint64)
        found_log.find(q_src, q_seq, out)
        assert (out[:n] == decisions["journal_seq"]).all() and (out[n:] == 0).all()


@pytest.mark.parametrize("seed", range(3))
def test_both_codecs_find_the_same_ids_in_a_log(seed):
    from cardledger import _core, codec

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
