"""The journal record codec: lossless, identical in C and Python, and strict on bad bytes."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers.opgen import OpWorld

from cardledger.engine.spec import batch as reference
from cardledger.engine.spec import codec
from cardledger.errors import CorruptionError
from cardledger.schema import JOURNAL_DTYPE

core = pytest.importorskip("cardledger._core")


def real_journal(seed: int) -> np.ndarray:
    rng = random.Random(seed)
    world = OpWorld(rng)
    e = reference.Engine()
    parts = [e.apply(world.setup_batch())[1]] + [e.apply(world.batch(30, 0.2))[1] for _ in range(10)]
    return np.concatenate(parts)


@pytest.mark.parametrize("seed", range(5))
def test_a_real_journal_round_trips_and_both_codecs_agree(seed):
    recs = real_journal(seed)
    packed = codec.pack_journal(recs)
    assert core.pack_journal(recs) == packed
    first = int(recs[0]["journal_seq"])
    for unpack in (codec.unpack_journal, core.unpack_journal):
        assert unpack(packed, len(recs), first).tobytes() == recs.tobytes()
    assert len(packed) < recs.nbytes / 2  # the point of it


words = st.integers(0, 2**64 - 1) | st.integers(0, 300) | st.just(0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(words, min_size=codec.WORDS, max_size=codec.WORDS), min_size=1, max_size=8),
       st.integers(1, 2**40))
def test_arbitrary_words_round_trip(rows, first):
    recs = np.array(rows, dtype=np.uint64).reshape(-1).view(JOURNAL_DTYPE).copy()
    recs["journal_seq"] = np.arange(first, first + len(recs), dtype=np.uint64)
    packed = codec.pack_journal(recs)
    assert core.pack_journal(recs) == packed
    assert codec.unpack_journal(packed, len(recs), first).tobytes() == recs.tobytes()
    assert core.unpack_journal(packed, len(recs), first).tobytes() == recs.tobytes()


#: Three records (a TOPUP, a SPEND, a TAP) as the codec wrote them before OP_DTYPE had
#: user_data (format 4's first records): pinned so that older journals keep decoding.
RECORDS_BEFORE_USER_DATA = bytes.fromhex(
    "bf844d07016401904e808082e288d2a30602904e656502bf842107026402f403f601049c4a02b7dc2909"
    "01643b8a877a0d85808080900101aafeffffffffffffff018c470302")


def _three_records() -> np.ndarray:
    r = np.zeros(3, dtype=JOURNAL_DTYPE)
    r["source"], r["seq"], r["kind"], r["account_id"] = [7, 7, 9], [1, 2, 1], [2, 4, 13], 100
    r["counterparty_id"], r["amount_fen"] = [1, 2, 0], [5000, 250, -30]
    r["time_us"] = [1_767_225_600_000_000, 1_767_225_600_000_123, 1_767_225_601_000_000]
    r["result_amount_fen"], r["balance_fen"], r["journal_seq"] = [5000, 250, 200], [5000, 4750, 4550], [41, 42, 43]
    r["debit_id"], r["credit_id"] = [1, 100, 100], [100, 2, 3]
    r["debit_prev_seq"], r["credit_prev_seq"] = [0, 41, 42], [40, 0, 0]
    r["route"], r["stop"], r["tap"] = [0, 0, 5], [0, 0, 9], [0, 0, 1]
    return r


def test_records_written_before_user_data_decode_as_they_were_with_user_data_zero():
    want = _three_records()
    for unpack in (codec.unpack_journal, core.unpack_journal):
        got = unpack(RECORDS_BEFORE_USER_DATA, 3, 41)
        assert got.tobytes() == want.tobytes() and (got["user_data"] == 0).all()
    # ...and records without a user_data are written exactly as they were.
    assert codec.pack_journal(want) == core.pack_journal(want) == RECORDS_BEFORE_USER_DATA


def test_user_data_round_trips_in_both_codecs():
    recs = _three_records()
    recs["user_data"] = [2**64 - 1, 0, 6_222_021_234_567_890]
    packed = codec.pack_journal(recs)
    assert core.pack_journal(recs) == packed
    for unpack in (codec.unpack_journal, core.unpack_journal):
        assert unpack(packed, 3, 41).tobytes() == recs.tobytes()


#: A PURCHASE and a REFUND with a user_data, as the codec wrote them before
#: JOURNAL_DTYPE had union_id and union_fen: pinned so that those journals keep decoding.
RECORDS_BEFORE_UNION_LEGS = bytes.fromhex(
    "bfe4e101070364c801d00f808082e288d2a306128080808010c801d0410706d2d5e2abd3dc860bb3e76d"
    "0704a006809c9c390703138080808010d001d046c801640202")


def _purchase_and_refund() -> np.ndarray:
    r = np.zeros(2, dtype=JOURNAL_DTYPE)
    r["source"], r["seq"], r["kind"] = [7, 7], [3, 4], [18, 19]
    r["account_id"], r["counterparty_id"], r["amount_fen"] = [100, 0], [200, 0], [1000, 400]
    r["ref_source"], r["ref_seq"] = [0, 7], [0, 3]
    r["time_us"] = [1_767_225_600_000_000, 1_767_225_660_000_000]
    r["user_data"] = [6_222_021_234_567_890, 0]
    r["result_amount_fen"], r["balance_fen"], r["journal_seq"] = [800, 320], [4200, 4520], [50, 51]
    r["discounts"] = [1, 1]
    r["debit_id"], r["credit_id"] = [100, 200], [200, 100]
    r["debit_prev_seq"], r["credit_prev_seq"] = [44, 50], [45, 50]
    return r


def test_records_written_before_union_legs_decode_as_they_were_with_no_union_leg():
    want = _purchase_and_refund()
    for unpack in (codec.unpack_journal, core.unpack_journal):
        got = unpack(RECORDS_BEFORE_UNION_LEGS, 2, 50)
        assert got.tobytes() == want.tobytes()
        assert (got["union_id"] == 0).all() and (got["union_fen"] == 0).all()
    # ...and records without a union leg are written exactly as they were.
    assert codec.pack_journal(want) == core.pack_journal(want) == RECORDS_BEFORE_UNION_LEGS


def test_union_legs_round_trip_in_both_codecs_as_the_last_words():
    recs = _purchase_and_refund()
    recs["union_id"], recs["union_fen"] = [300, 300], [120, 48]
    packed = codec.pack_journal(recs)
    assert core.pack_journal(recs) == packed
    for unpack in (codec.unpack_journal, core.unpack_journal):
        assert unpack(packed, 2, 50).tobytes() == recs.tobytes()
    # They are the encoding's words 22 and 23, after every older word and before the
    # offer words appended after them: nothing else moves.
    assert codec.DWORD[codec.W_UNION] == JOURNAL_DTYPE.fields["union_id"][1] // 8 == 22
    assert codec.DWORD[codec.W_UNION_FEN] == JOURNAL_DTYPE.fields["union_fen"][1] // 8 == 23


def test_offer_words_round_trip_in_both_codecs_as_the_last_words():
    """offer_fen, offer_day and refundable_fen, appended after the union leg, are the
    encoding's last words (bits 24 to 26); a record without them packs as before."""
    recs = _purchase_and_refund()
    before = codec.pack_journal(recs)
    recs["offer_fen"], recs["offer_day"], recs["refundable_fen"] = [500, 125], [20_430, 20_430], [0, 3_000]
    packed = codec.pack_journal(recs)
    assert core.pack_journal(recs) == packed and len(packed) > len(before)
    for unpack in (codec.unpack_journal, core.unpack_journal):
        assert unpack(packed, 2, 50).tobytes() == recs.tobytes()
    for k, name in enumerate(("offer_fen", "offer_day", "refundable_fen")):
        assert codec.DWORD[codec.WORDS - 3 + k] == JOURNAL_DTYPE.fields[name][1] // 8 == 24 + k


def test_truncated_or_trailing_bytes_are_refused():
    recs = real_journal(1)
    packed = codec.pack_journal(recs)
    first = int(recs[0]["journal_seq"])
    for bad in (packed[:-1], packed + b"\x00", b"\xff" * 5):
        with pytest.raises(CorruptionError):
            codec.unpack_journal(bad, len(recs), first)
        with pytest.raises(ValueError):
            core.unpack_journal(bad, len(recs), first)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2**64 - 1), st.integers(1, 2**64 - 1)), unique_by=lambda t: t[0], max_size=50))
def test_id_runs_find_every_pair_and_nothing_else(pairs):
    pairs.sort()
    seqs = np.array([p[0] for p in pairs], dtype=np.uint64)
    jseqs = np.array([p[1] for p in pairs], dtype=np.uint64)
    run = codec.pack_pairs(seqs, jseqs)
    assert core.pack_pairs(seqs, jseqs) == run
    for s, j in pairs:
        assert codec.find_pair(run, s) == j and core.find_pair(run, s) == j
    for missing in {0, 2**64 - 1, *(s + 1 for s, _ in pairs if s + 1 < 2**64)} - {s for s, _ in pairs}:
        assert codec.find_pair(run, missing) is None and core.find_pair(run, missing) is None


def test_id_runs_pack_the_same_in_both_codecs_and_cut_long_runs():
    """pack_id_runs: one value per source run of at most max_pairs pairs, keyed by its
    highest seq; the core's bytes equal the Python twin's."""
    core = pytest.importorskip("cardledger._core")
    src = np.array([1, 1, 1, 2, 5, 5, 5, 5, 5], dtype=np.uint64)
    seq = np.array([1, 4, 9, 2, 1, 2, 3, 10, 11], dtype=np.uint64)
    jseq = np.arange(100, 109, dtype=np.uint64)
    want = codec.pack_id_runs(src, seq, jseq, 3)
    got = core.pack_id_runs(src, seq, jseq, 3)
    assert want[0].tolist() == got[0].tolist() == [1, 2, 5, 5]
    assert want[1].tolist() == got[1].tolist() == [9, 2, 3, 11]
    assert want[2].tolist() == got[2].tolist() and want[3] == got[3]
    blob, off = want[3], want[2].tolist()
    assert codec.find_pair(blob[off[3] : off[4]], 10) == 107


def test_one_record_decodes_alone_with_or_without_marks():
    """unpack_journal_record gives exactly the record unpack_journal gives, from the start
    or from the nearest mark; a truncated encoding is refused."""
    core = pytest.importorskip("cardledger._core")
    rng = np.random.default_rng(3)
    n = 200
    recs = np.zeros(n, dtype=JOURNAL_DTYPE)
    recs["journal_seq"] = np.arange(100, 100 + n)
    recs["time_us"] = np.cumsum(rng.integers(-50, 1000, n))
    recs["amount_fen"] = rng.integers(-5, 500, n)
    recs["account_id"] = rng.integers(1, 99, n)
    recs["debit_id"] = recs["account_id"]
    recs["debit_prev_seq"] = rng.integers(0, 99, n)
    buf = core.pack_journal(recs)
    marks = core.journal_record_marks(buf, n, 100, 32)
    for k in range(n):
        assert core.unpack_journal_record(buf, n, 100, k, marks, 32).tobytes() == recs[k].tobytes()
        assert core.unpack_journal_record(buf, n, 100, k).tobytes() == recs[k].tobytes()
    assert codec.unpack_journal_record(buf, n, 100, 7).tobytes() == recs[7].tobytes()
    with pytest.raises(ValueError):
        core.journal_record_marks(buf[:-3], n, 100, 32)


# ------------------------------------------------------- checkpoint word tables


def real_state(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A reference engine's accounts and holds after random batches."""
    rng = random.Random(seed)
    world = OpWorld(rng)
    e = reference.Engine()
    e.apply(world.setup_batch())
    for _ in range(10):
        e.apply(world.batch(30, 0.2))
    accounts, _, pending = e.export_checkpoint()
    return accounts, pending


@pytest.mark.parametrize("seed", range(3))
def test_checkpoint_tables_round_trip_and_both_codecs_agree(seed):
    for table in real_state(seed):
        packed = codec.pack_words(table)
        assert core.pack_words(table) == packed
        for unpack in (codec.unpack_words, core.unpack_words):
            assert unpack(packed, len(table), table.dtype).tobytes() == table.tobytes()


def test_a_city_of_similar_accounts_packs_small():
    accounts, _ = real_state(0)
    cards = np.repeat(accounts[:1], 10_000)
    cards["id"] = np.arange(1_000_000, 1_010_000, dtype=np.uint64)
    cards["cash_fen"] = np.arange(10_000) * 37 % 500_000
    packed = core.pack_words(cards)
    assert codec.pack_words(cards) == packed
    assert len(packed) < cards.nbytes / 4  # the point of it: ids in order, repeated fields


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64).flatmap(lambda nw: st.lists(st.lists(words, min_size=nw, max_size=nw), max_size=8)
                                  .map(lambda rows: (nw, rows))))
def test_arbitrary_word_tables_round_trip(table):
    nw, rows = table
    dt = np.dtype([("w", "<u8", (nw,))])
    recs = np.array(rows, dtype=np.uint64).reshape(len(rows), nw).view(dt).reshape(len(rows))
    packed = codec.pack_words(recs)
    assert core.pack_words(recs) == packed
    assert codec.unpack_words(packed, len(recs), dt).tobytes() == recs.tobytes()
    assert core.unpack_words(packed, len(recs), dt).tobytes() == recs.tobytes()


def test_bad_word_tables_are_refused():
    accounts, _ = real_state(2)
    packed = codec.pack_words(accounts)
    n, dt = len(accounts), accounts.dtype
    # truncated, trailing bytes, a bitmap naming words past the record, a zero word
    for bad in (packed[:-1], packed + b"\x00", b"\xff" * 5, b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
                b"\x01\x00" + packed[2:]):
        with pytest.raises(CorruptionError):
            codec.unpack_words(bad, n, dt)
        with pytest.raises(ValueError):
            core.unpack_words(bad, n, dt)
    for pack in (codec.pack_words, core.pack_words):
        with pytest.raises(ValueError):
            pack(np.zeros(3, dtype="<u4"))  # not whole 64-bit words


@pytest.mark.parametrize("seed", range(3))
def test_the_engines_hand_over_each_batch_packed_as_the_journal_stores_it(seed):
    """The core packs a batch once, into its decisions window; the ledger stores those
    bytes. They must be pack_journal's bytes exactly (the reference packs them anew)."""
    for engine in (reference.Engine(), core.Engine()):
        rng = random.Random(seed)
        world = OpWorld(rng)
        batches = [world.setup_batch()] + [world.batch(30, 0.2) for _ in range(12)]
        decided: dict[tuple[int, int], np.void] = {}  # what the ledger's id index would hold
        for i, batch in enumerate(batches + batches[3:6]):  # the replays decide nothing anew
            # As the ledger does: ids the window no longer holds come with their records.
            cand = engine.candidates(batch)
            prior = np.zeros(len(batch), dtype=JOURNAL_DTYPE)
            has_prior = np.zeros(len(batch), dtype=bool)
            for k in np.flatnonzero(cand).tolist():
                rec = decided.get((int(batch[k]["source"]), int(batch[k]["seq"])))
                if rec is not None:
                    prior[k], has_prior[k] = rec, True
            _, journal = engine.apply(batch, prior, has_prior)
            expected = codec.pack_journal(journal) if len(journal) else b""
            assert engine.last_batch_packed() == expected
            for rec in journal:
                decided[(int(rec["source"]), int(rec["seq"]))] = rec.copy()
            if i == 7:
                engine.take_decisions()  # a flush empties the window


def test_several_records_decode_at_once_as_the_whole_batch_does():
    recs = real_journal(3)
    packed = codec.pack_journal(recs)
    first, n = int(recs[0]["journal_seq"]), len(recs)
    marks = core.journal_record_marks(packed, n, first, 16)
    picks = np.array([0, 1, 15, 16, 17, n // 2, n - 1, 5], dtype=np.int64)
    expected = recs[picks].tobytes()
    assert core.unpack_journal_records(packed, n, first, picks, marks, 16).tobytes() == expected
    assert codec.unpack_journal_records(packed, n, first, picks, None, 16).tobytes() == expected
    for bad in (np.array([n]), np.array([-1])):
        with pytest.raises(ValueError):
            core.unpack_journal_records(packed, n, first, bad, marks, 16)
        with pytest.raises(ValueError):
            codec.unpack_journal_records(packed, n, first, bad, None, 16)


def test_records_of_many_batches_decode_in_one_call_in_both_codecs():
    """unpack_records_of_batches: each record from the batch named for it, as decoding
    each batch whole gives it; a record not in its batch, or not where it belongs, is
    refused."""
    recs = real_journal(4)
    cuts = [0, 40, 41, 150, len(recs)]
    parts = [recs[a:b] for a, b in zip(cuts, cuts[1:])]
    bodies = [codec.pack_journal(p) for p in parts]
    counts = np.array([len(p) for p in parts], dtype=np.int64)
    firsts = np.array([int(p[0]["journal_seq"]) for p in parts], dtype=np.uint64)
    marks = [core.journal_record_marks(b, len(p), int(p[0]["journal_seq"]), 8) for b, p in zip(bodies, parts)]
    picks = [(0, 0), (0, 39), (1, 0), (2, 8), (2, 9), (2, 108), (3, len(parts[3]) - 1)]
    which = np.array([b for b, _ in picks], dtype=np.int64)
    seqs = np.array([int(parts[b][i]["journal_seq"]) for b, i in picks], dtype=np.uint64)
    expected = np.concatenate([parts[b][i : i + 1] for b, i in picks]).tobytes()
    for impl in (core, codec):
        assert impl.unpack_records_of_batches(bodies, marks, counts, firsts, which, seqs, 8).tobytes() == expected
        with pytest.raises(ValueError):  # record 41's seq asked of the first batch
            impl.unpack_records_of_batches(bodies, marks, counts, firsts, np.array([0]), seqs[2:3], 8)
        with pytest.raises(ValueError):  # a batch index out of range
            impl.unpack_records_of_batches(bodies, marks, counts, firsts, np.array([4]), seqs[:1], 8)
    # A body whose records are not the ones its header says: caught by the seq check.
    shifted = firsts.copy()
    shifted[2] += 1
    with pytest.raises(ValueError):
        core.unpack_records_of_batches(bodies, marks, counts, shifted, which[3:4], seqs[3:4] + 1, 8)
