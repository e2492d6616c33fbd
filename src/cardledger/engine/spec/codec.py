"""The journal's on-disk record encoding (pure-Python twin of the core's codec).

A journal record (JOURNAL_DTYPE, 216 bytes) is mostly zeros and values that can be
predicted from their neighbours, and every stored byte is written, hashed and fsynced
on the batch path. So each record is stored as its 27 little-endian 64-bit words,
after predictors, as: a varint bitmap of the non-zero words, then each non-zero word
as a LEB128 varint. The words go in JOURNAL_DTYPE order except `user_data`, which
goes after credit_prev_seq (`DWORD`): it was added after the first records were
written, whose bitmaps then simply lack its bit. union_id and union_fen, appended to
JOURNAL_DTYPE later still, and offer_fen, offer_day and refundable_fen after them, are
the last words in both orders: records written before them lack their bits and decode
them as 0. Predictors (all exactly invertible):

- journal_seq: minus (previous record's journal_seq + 1), the batch's first_seq - 1
  before the first record: 0 for every record of a batch;
- time_us: zigzag of the difference from the previous record's time_us (0 before the
  first record);
- result_amount_fen XOR amount_fen; debit_id XOR account_id; credit_id XOR
  counterparty_id: 0 for the usual successful op;
- debit_prev_seq, credit_prev_seq: journal_seq + 1 minus the pointer, with 0 (no
  pointer) and journal_seq + 1 swapped so that the map stays a bijection;
- amount_fen, limit_fen, balance_fen, subsidy_fen: zigzag (small negatives stay short);
- every other word (union_id and union_fen among them) as it is.

`cardledger._core` has the same codec in C (`pack_journal`, `unpack_journal`); tests
check that both produce identical bytes.
"""

from __future__ import annotations

import bisect
import struct

import numpy as np

from ...errors import CorruptionError
from ...schema import JOURNAL_DTYPE

WORDS = JOURNAL_DTYPE.itemsize // 8
assert WORDS == 27
MASK64 = (1 << 64) - 1
# Word positions in the encoding: a record's words in JOURNAL_DTYPE order, except
# user_data (the op's word 12, added after the format's first version), which is
# encoded after credit_prev_seq. Records written before it then decode as they were,
# user_data 0. union_id, union_fen, offer_fen, offer_day and refundable_fen (words 22
# to 26, appended later) keep their place.
W_SOURCE, W_SEQ, W_ACCOUNT, W_COUNTERPARTY, W_AMOUNT, W_TIME, W_LIMIT = 0, 1, 2, 3, 4, 5, 6
W_RESULT_AMOUNT, W_BALANCE, W_JSEQ, W_DEBIT, W_CREDIT, W_SUBSIDY, W_DPREV, W_CPREV = 13, 14, 15, 16, 17, 18, 19, 20
W_USER_DATA = 21
W_UNION, W_UNION_FEN = 22, 23
OP_USER_DATA_WORD = JOURNAL_DTYPE.fields["user_data"][1] // 8
assert OP_USER_DATA_WORD == 12
#: The JOURNAL_DTYPE word of each encoded word, and back.
DWORD = [k if k < OP_USER_DATA_WORD or k > W_USER_DATA else (OP_USER_DATA_WORD if k == W_USER_DATA else k + 1)
         for k in range(WORDS)]
assert sorted(DWORD) == list(range(WORDS)) and DWORD[W_UNION:] == list(range(W_UNION, WORDS))
ZIGZAG_WORDS = (W_AMOUNT, W_LIMIT, W_BALANCE, W_SUBSIDY)
#: Longest encoding of one record: a 4-byte bitmap and 27 ten-byte varints.
RECORD_BYTES_MAX = 4 + WORDS * 10


def _zigzag(u: int) -> int:
    s = u - (1 << 64) if u >> 63 else u
    return ((s << 1) ^ (s >> 63)) & MASK64


def _unzigzag(z: int) -> int:
    return ((z >> 1) ^ -(z & 1)) & MASK64


def _back(jseq: int, x: int) -> int:
    """The back-pointer predictor; it is its own inverse."""
    nxt = (jseq + 1) & MASK64
    if x == 0:
        return 0
    if x == nxt:
        return nxt
    return (nxt - x) & MASK64


def _put_varint(out: bytearray, v: int) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _put_sparse(out: bytearray, words: list[int], values: list[int]) -> None:
    """A record's encoding: a varint bitmap of its non-zero `words`, then, for each of
    them, values[i] as a varint."""
    bitmap = 0
    for i, w in enumerate(words):
        if w:
            bitmap |= 1 << i
    _put_varint(out, bitmap)
    for i, w in enumerate(words):
        if w:
            _put_varint(out, values[i])


def _get_sparse(mv: memoryview, pos: int, nw: int, what: str) -> tuple[int, list[int], int]:
    """Read a record written by `_put_sparse`: (bitmap, its nw values with 0 where the
    bitmap has no bit, next position)."""
    bitmap, pos = _get_varint(mv, pos)
    if bitmap >> nw:
        raise CorruptionError(f"{what} encoding has an unknown word")
    values = [0] * nw
    for i in range(nw):
        if bitmap >> i & 1:
            values[i], pos = _get_varint(mv, pos)
    return bitmap, values, pos


def _get_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CorruptionError("journal record encoding is truncated or malformed")
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v & MASK64, pos
        shift += 7


def pack_journal(records: np.ndarray) -> bytes:
    """Encode JOURNAL_DTYPE records (contiguous journal_seq) into bytes."""
    words = np.ascontiguousarray(records).view(np.uint64).reshape(len(records), WORDS)[:, DWORD].tolist()
    out = bytearray()
    prev_time = 0
    prev_jseq = int(records[0]["journal_seq"]) - 1 if len(records) else 0
    for w in words:
        t = list(w)
        jseq = w[W_JSEQ]
        t[W_JSEQ] = (jseq - (prev_jseq + 1)) & MASK64
        t[W_TIME] = _zigzag((w[W_TIME] - prev_time) & MASK64)
        t[W_RESULT_AMOUNT] = w[W_RESULT_AMOUNT] ^ w[W_AMOUNT]
        t[W_DEBIT] = w[W_DEBIT] ^ w[W_ACCOUNT]
        t[W_CREDIT] = w[W_CREDIT] ^ w[W_COUNTERPARTY]
        t[W_DPREV] = _back(jseq, w[W_DPREV])
        t[W_CPREV] = _back(jseq, w[W_CPREV])
        for i in ZIGZAG_WORDS:
            t[i] = _zigzag(w[i])
        _put_sparse(out, t, t)
        prev_time, prev_jseq = w[W_TIME], jseq
    return bytes(out)


def unpack_journal(buf: bytes | memoryview, n: int, first_seq: int) -> np.ndarray:
    """Decode `n` records (the first has journal_seq `first_seq`); CorruptionError if malformed."""
    mv = memoryview(buf).cast("B")
    out = np.zeros((n, WORDS), dtype=np.uint64)
    pos = 0
    prev_time = 0
    prev_jseq = first_seq - 1
    for r in range(n):
        bitmap, t, pos = _get_sparse(mv, pos, WORDS, "journal record")
        if any(bitmap >> i & 1 and not t[i] for i in range(WORDS)):
            raise CorruptionError("journal record encoding is not canonical")
        w = list(t)
        for i in ZIGZAG_WORDS:
            w[i] = _unzigzag(t[i])
        jseq = (t[W_JSEQ] + prev_jseq + 1) & MASK64
        w[W_JSEQ] = jseq
        w[W_TIME] = (_unzigzag(t[W_TIME]) + prev_time) & MASK64
        w[W_RESULT_AMOUNT] = t[W_RESULT_AMOUNT] ^ w[W_AMOUNT]
        w[W_DEBIT] = t[W_DEBIT] ^ w[W_ACCOUNT]
        w[W_CREDIT] = t[W_CREDIT] ^ w[W_COUNTERPARTY]
        w[W_DPREV] = _back(jseq, t[W_DPREV])
        w[W_CPREV] = _back(jseq, t[W_CPREV])
        out[r, DWORD] = w
        prev_time, prev_jseq = w[W_TIME], jseq
    if pos != len(mv):
        raise CorruptionError("journal batch has bytes after its last record")
    return out.reshape(-1).view(JOURNAL_DTYPE)


# ---------------------------------------------------------------- id index runs
#
# One value of the id index holds the (seq, journal_seq) pairs a source decided in
# order between two checkpoints, sorted by seq: seqs as varint deltas from the
# previous seq (mostly 1), journal_seqs as zigzag varint deltas from the previous
# journal_seq (small: ops of one terminal sit close together in the journal). About
# 3 bytes a pair instead of 16.


def pack_pairs(seqs: np.ndarray, journal_seqs: np.ndarray) -> bytes:
    """Encode sorted (seq, journal_seq) pairs."""
    out = bytearray()
    prev_s = prev_j = 0
    for s, j in zip(seqs.tolist(), journal_seqs.tolist()):
        _put_varint(out, (s - prev_s) & MASK64)
        _put_varint(out, _zigzag((j - prev_j) & MASK64))
        prev_s, prev_j = s, j
    return bytes(out)


def journal_record_marks(buf: bytes | memoryview, n: int, first_seq: int, stride: int) -> None:
    """The core's record marks speed up single-record reads; the pure twin needs none."""
    return None


def unpack_journal_record(
    buf: bytes | memoryview, n: int, first_seq: int, index: int, marks: object = None, stride: int = 0
) -> np.void:
    """Decode only record `index` of `n` encoded records (the pure twin decodes them all)."""
    if not 0 <= index < n:
        raise ValueError(f"record index {index} outside 0..{n - 1}")
    return unpack_journal(buf, n, first_seq)[index]


def unpack_journal_records(
    buf: bytes | memoryview, n: int, first_seq: int, indexes: np.ndarray, marks: object, stride: int
) -> np.ndarray:
    """Decode records `indexes` of `n` encoded records (the pure twin decodes them all)."""
    idx = np.asarray(indexes, dtype=np.int64)
    if len(idx) and not ((0 <= idx) & (idx < n)).all():
        raise ValueError(f"a record index is outside 0..{n - 1}")
    return unpack_journal(buf, n, first_seq)[idx] if len(idx) else np.zeros(0, dtype=JOURNAL_DTYPE)


def unpack_records_of_batches(
    bodies: list, marks: list, counts: np.ndarray, firsts: np.ndarray, which: np.ndarray,
    journal_seqs: np.ndarray, stride: int,
) -> np.ndarray:
    """Decode record journal_seqs[i] from batch which[i] (bodies[b]: counts[b] encoded
    records from journal_seq firsts[b]); ValueError if malformed or misplaced."""
    which = np.asarray(which, dtype=np.int64)
    js = np.asarray(journal_seqs, dtype=np.uint64)
    if not (len(bodies) == len(marks) == len(counts) == len(firsts)) or len(which) != len(js) or stride <= 0:
        raise ValueError("unpack_records_of_batches: arguments differ in length, or stride <= 0")
    out = np.zeros(len(js), dtype=JOURNAL_DTYPE)
    decoded: dict[int, np.ndarray] = {}  # each batch decoded once
    for i, (b, j) in enumerate(zip(which.tolist(), js.tolist())):
        if not 0 <= b < len(bodies):
            raise ValueError("unpack_records_of_batches: a batch index is out of range")
        first, n = int(firsts[b]), int(counts[b])
        if not first <= j < first + n:
            raise ValueError(f"journal record {j} is not in the batch given for it")
        if b not in decoded:
            decoded[b] = unpack_journal(bodies[b], n, first)
        out[i] = decoded[b][j - first]
        if int(out[i]["journal_seq"]) != j:
            raise ValueError(f"journal record {j} is not where it belongs")
    return out


def id_index_items(
    sources: list, seqs: list, payloads: list, offsets: list | None, lo: int, hi: int | None
) -> list[tuple[bytes, bytes]]:
    """The id index items of several id log flushes for the sources in [lo, hi), merged
    in key order (the core's twin; see there)."""
    if len(seqs) != len(sources) or len(payloads) != len(sources) or (
        offsets is not None and len(offsets) != len(sources)
    ):
        raise ValueError("id_index_items: one entry per flush in every list")
    out = []
    for f in range(len(sources)):
        src = np.asarray(sources[f], dtype=np.uint64)
        a = int(np.searchsorted(src, np.uint64(lo), side="left"))
        b = len(src) if hi is None else int(np.searchsorted(src, np.uint64(hi), side="left"))
        for k in range(a, max(a, b)):
            key = struct.pack(">QQ", int(src[k]), int(seqs[f][k]))
            if offsets is not None:
                o0, o1 = int(offsets[f][k]), int(offsets[f][k + 1])
                if not 0 <= o0 <= o1 <= len(payloads[f]):
                    raise ValueError("id_index_items: an offset is outside its payload")
                out.append((key, bytes(payloads[f][o0:o1])))
            else:
                out.append((key, struct.pack(">Q", int(payloads[f][k]))))
    out.sort()
    return out


def pack_id_runs(
    sources: np.ndarray, seqs: np.ndarray, journal_seqs: np.ndarray, max_pairs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """Group decisions sorted by (source, seq) into id index values.

    Returns (key_sources, key_seqs, offsets, blob): value k is blob[offsets[k]:offsets[k+1]],
    the `pack_pairs` encoding of at most max_pairs consecutive pairs of one source,
    keyed by that source and the highest seq in it.
    """
    src, sq, jq = sources.tolist(), seqs.tolist(), journal_seqs.tolist()
    if not (len(src) == len(sq) == len(jq)) or max_pairs < 1:
        raise ValueError("pack_id_runs: arrays differ in length, or max_pairs < 1")
    key_src: list[int] = []
    key_seq: list[int] = []
    offsets = [0]
    blob = bytearray()
    i, n = 0, len(src)
    while i < n:
        hi = i + 1
        while hi < n and src[hi] == src[i] and hi - i < max_pairs:
            hi += 1
        blob += pack_pairs(np.array(sq[i:hi], dtype=np.uint64), np.array(jq[i:hi], dtype=np.uint64))
        key_src.append(src[i])
        key_seq.append(sq[hi - 1])
        offsets.append(len(blob))
        i = hi
    return (
        np.array(key_src, dtype=np.uint64),
        np.array(key_seq, dtype=np.uint64),
        np.array(offsets, dtype=np.int64),
        bytes(blob),
    )


def find_pair(buf: bytes | memoryview, seq: int) -> int | None:
    """journal_seq paired with `seq` in an encoded run, or None."""
    mv = memoryview(buf).cast("B")
    pos = 0
    s = j = 0
    while pos < len(mv):
        ds, pos = _get_varint(mv, pos)
        dj, pos = _get_varint(mv, pos)
        s = (s + ds) & MASK64
        j = (j + _unzigzag(dj)) & MASK64
        if s == seq:
            return j
        if s > seq:
            return None
    return None




def find_ids_in_runs(key_src: np.ndarray, key_seq: np.ndarray, offsets: np.ndarray, buf: bytes | memoryview,
                     q_src: np.ndarray, q_seq: np.ndarray, out: np.ndarray) -> None:
    """Fill out[i], where it is 0, with the journal_seq of id (q_src[i], q_seq[i]) if an
    id log's runs hold it: runs keyed by (source, highest seq), sorted; run k's pairs
    are buf[offsets[k]:offsets[k+1]]."""
    keys = list(zip(np.asarray(key_src).tolist(), np.asarray(key_seq).tolist()))
    off = np.asarray(offsets).tolist()
    mv = memoryview(buf).cast("B")
    for i, (s, q) in enumerate(zip(np.asarray(q_src).tolist(), np.asarray(q_seq).tolist())):
        if out[i]:
            continue
        k = bisect.bisect_left(keys, (s, q))
        if k == len(keys) or keys[k][0] != s:
            continue
        if not 0 <= off[k] < off[k + 1] <= len(mv):
            raise CorruptionError("id log run is out of range")
        j = find_pair(mv[off[k] : off[k + 1]], q)
        if j is not None:
            out[i] = j


def find_ids_exact(key_src: np.ndarray, key_seq: np.ndarray, values: np.ndarray,
                   q_src: np.ndarray, q_seq: np.ndarray, out: np.ndarray) -> None:
    """Fill out[i], where it is 0, with values[k] for the k whose (key_src[k],
    key_seq[k]) equals (q_src[i], q_seq[i]), the keys sorted that way."""
    keys = list(zip(np.asarray(key_src).tolist(), np.asarray(key_seq).tolist()))
    vals = np.asarray(values).tolist()
    for i, (s, q) in enumerate(zip(np.asarray(q_src).tolist(), np.asarray(q_seq).tolist())):
        if out[i]:
            continue
        k = bisect.bisect_left(keys, (s, q))
        if k < len(keys) and keys[k] == (s, q):
            out[i] = vals[k]

#: A word table's records have at most this many 64-bit words (the bitmap's width).
TABLE_WORDS_MAX = 64


def pack_words(records: np.ndarray) -> bytes:
    """Encode a table of fixed-size records (checkpoint bodies) into bytes.

    Each record is taken as its little-endian 64-bit words (1 to TABLE_WORDS_MAX): a
    varint bitmap of its non-zero words, then each non-zero word as the varint zigzag
    of its difference from the last non-zero value of the same column (0 before the
    first). A card's account or fare state is mostly zeros and fields that repeat or
    change little from one card to the next (kind, cap, ids in order), so packing
    shrinks it several-fold on disk (docs/performance-log.md).
    """
    arr = np.ascontiguousarray(records)
    nw = _table_words(arr.dtype, arr.ndim)
    words = arr.view(np.uint64).reshape(len(arr), nw).tolist()
    out = bytearray()
    last = [0] * nw
    for w in words:
        _put_sparse(out, w, [_zigzag((w[i] - last[i]) & MASK64) for i in range(nw)])
        last = [w[i] or last[i] for i in range(nw)]
    return bytes(out)


def unpack_words(buf: bytes | memoryview, n: int, dtype: np.dtype) -> np.ndarray:
    """Decode `n` records of `dtype` encoded by `pack_words`; CorruptionError if malformed."""
    dt = np.dtype(dtype)
    nw = _table_words(dt, 1)
    if n < 0:
        raise ValueError("unpack_words: n must be >= 0")
    mv = memoryview(buf).cast("B")
    rows = []
    last = [0] * nw
    pos = 0
    for _ in range(n):
        bitmap, w, pos = _get_sparse(mv, pos, nw, "word table")
        for i in range(nw):
            if bitmap >> i & 1:
                w[i] = last[i] = (last[i] + _unzigzag(w[i])) & MASK64
                if w[i] == 0:
                    raise CorruptionError("word table encoding is not canonical")
        rows.append(w)
    if pos != len(mv):
        raise CorruptionError("word table encoding has trailing bytes")
    return np.array(rows, dtype=np.uint64).reshape(n, nw).view(dt).reshape(n)


def _table_words(dt: np.dtype, ndim: int) -> int:
    if ndim != 1 or dt.itemsize % 8 or not 8 <= dt.itemsize <= 8 * TABLE_WORDS_MAX:
        raise ValueError("pack_words: records must be 1-d, of 1 to 64 whole 64-bit words")
    return dt.itemsize // 8
