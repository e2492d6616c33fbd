"""The journal: hash-chained batches of records, and reading records back.

The journal is the write-ahead truth of a ledger: one LMDB value per committed batch
in the ``journal`` database (see `keys.py`), keyed by the batch's last journal_seq.
A value is a 128-byte header and the batch's records packed by the engine's codec;
the header carries the previous batch's hash and this batch's, so `verify` and every
reopen walk a chain that cannot change silently. Records are read back one by one
for id lookups (a resent op gets its original figures) through a cache of checked
batches (`DecodedBatches`, `RecordFetcher`).
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CorruptionError
from ..schema import JOURNAL_DTYPE
from .keys import FORMAT_VERSION, KEY

BATCH_MAGIC = b"CLJB"
#: magic, version, header size, record count, first/last journal_seq, commit time,
#: previous hash, hash, padding to 128 bytes so the records start 8-byte aligned.
BATCH_HEADER = struct.Struct("<4sHHIQQq32s32s28x")
BATCH_HEADER_SIZE = BATCH_HEADER.size
#: the header fields covered by the batch hash (everything but the hashes).
_HASHED_FIELDS = struct.Struct("<4sHHIQQq")
#: The header's padding: zeros, checked on every read since the hash does not cover it.
_BATCH_PAD_AT = struct.calcsize("<4sHHIQQq32s32s")
_BATCH_PAD = bytes(BATCH_HEADER_SIZE - _BATCH_PAD_AT)
GENESIS_HASH = bytes(32)

assert BATCH_HEADER_SIZE == 128
assert JOURNAL_DTYPE.itemsize % 8 == 0

def batch_hash(prev_hash: bytes, fields: bytes, records: bytes | memoryview) -> bytes:
    """SHA-256 chaining one batch to the previous one."""
    h = hashlib.sha256(prev_hash)
    h.update(fields)
    h.update(records)
    return h.digest()


def encode_batch(codec: Any, records: np.ndarray, prev_hash: bytes, commit_time_us: int,
                 body: bytes | None = None) -> tuple[bytes, bytes]:
    """Return (value, hash) of a journal batch holding `records` (JOURNAL_DTYPE).

    `body`: the records already packed (`pack_journal(records)`, as the core's window
    holds them), so they are not packed twice."""
    n = len(records)
    assert n > 0
    seqs = records["journal_seq"]
    first, last = int(seqs[0]), int(seqs[-1])
    assert last - first + 1 == n, "journal_seq must be contiguous within a batch"
    if body is None:
        body = codec.pack_journal(records)
    fields = _HASHED_FIELDS.pack(BATCH_MAGIC, FORMAT_VERSION, BATCH_HEADER_SIZE, n, first, last, commit_time_us)
    digest = batch_hash(prev_hash, fields, body)
    header = BATCH_HEADER.pack(
        BATCH_MAGIC, FORMAT_VERSION, BATCH_HEADER_SIZE, n, first, last, commit_time_us, prev_hash, digest
    )
    return header + body, digest


def batch_range(value: bytes | memoryview) -> tuple[int, int]:
    """(first, last) journal_seq that a journal batch's header names (not checked:
    reading the batch checks it)."""
    if len(value) < BATCH_HEADER_SIZE:
        raise CorruptionError(f"a journal batch of {len(value)} bytes is shorter than its {BATCH_HEADER_SIZE}-byte header")
    fields = BATCH_HEADER.unpack_from(value)
    if fields[0] != BATCH_MAGIC:
        raise CorruptionError("not a journal batch: its magic is not CLJB")
    return int(fields[4]), int(fields[5])


def batch_hashes(value: bytes | memoryview) -> tuple[bytes, bytes]:
    """(previous batch's hash, this batch's hash) from a journal batch's header."""
    fields = BATCH_HEADER.unpack_from(value)
    return bytes(fields[7]), bytes(fields[8])


@dataclass(frozen=True)
class Batch:
    """A decoded journal batch."""

    first_seq: int
    last_seq: int
    commit_time_us: int
    prev_hash: bytes
    hash: bytes
    records: np.ndarray


#: A checked batch remembers where every RECORD_MARK_STRIDE-th record starts.
RECORD_MARK_STRIDE = 32
#: A batch is decoded whole when asked for at least 1/DENSE_SHARE of its records.
DENSE_SHARE = 4


@dataclass(frozen=True)
class CheckedBody:
    """A journal batch whose header and hash were checked, its records still encoded."""

    first_seq: int
    last_seq: int
    body: bytes
    marks: Any  # codec.journal_record_marks(...), or None: computed on first use
    codec: Any  # the codec that decodes the body

    def record(self, journal_seq: int) -> np.void:
        """Decode the one record with this journal_seq (CorruptionError if malformed)."""
        return self.records(np.array([journal_seq], dtype=np.uint64))[0]

    def marked(self) -> Any:
        """This batch's record marks (`journal_record_marks`), computed on first use:
        a derived index of the immutable body, kept once computed (ValueError if the
        body is malformed)."""
        if self.marks is None:
            n = self.last_seq - self.first_seq + 1
            object.__setattr__(self, "marks", self.codec.journal_record_marks(self.body, n, self.first_seq, RECORD_MARK_STRIDE))
        return self.marks

    def records(self, journal_seqs: np.ndarray) -> np.ndarray:
        """Decode the records with these journal_seqs (all in this batch), in one call."""
        n = self.last_seq - self.first_seq + 1
        try:
            self.marked()
            recs = self.codec.unpack_journal_records(self.body, n, self.first_seq, journal_seqs.astype(np.int64) - self.first_seq,
                                                     self.marks, RECORD_MARK_STRIDE)
        except (ValueError, CorruptionError) as e:
            raise CorruptionError(f"journal batch ending at {self.last_seq}: {e}") from None
        if not np.array_equal(recs["journal_seq"], journal_seqs):
            raise CorruptionError(f"journal batch ending at {self.last_seq}: a record is not where it belongs")
        return recs


def _checked_header(key: bytes, value: bytes | memoryview) -> tuple[str, int, int, int, bytes, bytes, memoryview]:
    """(where, first, last, commit_time_us, prev hash, hash, body) of a batch whose
    header matches its key and whose hash matches its bytes; CorruptionError if not."""
    value = memoryview(value)
    if len(value) < BATCH_HEADER_SIZE:
        raise CorruptionError(f"journal batch {key.hex()}: {len(value)} bytes, shorter than its header")
    magic, version, hsize, n, first, last, t_us, prev, digest = BATCH_HEADER.unpack_from(value)
    where = f"journal batch ending at journal_seq {KEY.unpack(key)[0] if len(key) == 8 else key.hex()}"
    if magic != BATCH_MAGIC or version != FORMAT_VERSION or hsize != BATCH_HEADER_SIZE:
        raise CorruptionError(f"{where}: bad header (magic/version)")
    if value[_BATCH_PAD_AT:BATCH_HEADER_SIZE] != _BATCH_PAD:  # (outside the hash: must stay zero)
        raise CorruptionError(f"{where}: bad header (padding altered)")
    if last - first + 1 != n or KEY.pack(last) != bytes(key):
        raise CorruptionError(f"{where}: header journal_seq range {first}..{last} does not match its key")
    body = value[BATCH_HEADER_SIZE:]
    fields = _HASHED_FIELDS.pack(magic, version, hsize, n, first, last, t_us)
    if batch_hash(prev, fields, body) != digest:
        raise CorruptionError(f"{where}: hash mismatch (the batch was altered or damaged)")
    return where, first, last, t_us, prev, digest, body


def check_batch(codec: Any, key: bytes, value: bytes | memoryview) -> CheckedBody:
    """Check one journal batch's header and hash without decoding its records."""
    where, first, last, _, _, _, body = _checked_header(key, value)
    try:
        marks = codec.journal_record_marks(body, last - first + 1, first, RECORD_MARK_STRIDE)
    except (ValueError, CorruptionError) as e:
        raise CorruptionError(f"{where}: {e}") from None
    return CheckedBody(first, last, bytes(body), marks, codec)


def decode_batch(codec: Any, key: bytes, value: bytes | memoryview, prev_hash: bytes | None = None) -> Batch:
    """Decode and check one journal batch; raise CorruptionError on any mismatch.

    With `prev_hash`, the batch must chain to it.
    """
    where, first, last, t_us, prev, digest, body = _checked_header(key, value)
    if prev_hash is not None and prev != prev_hash:
        raise CorruptionError(f"{where}: does not chain to the previous batch's hash")
    n = last - first + 1
    try:
        records = codec.unpack_journal(body, n, first)
    except (ValueError, CorruptionError) as e:
        raise CorruptionError(f"{where}: {e}") from None
    seqs = records["journal_seq"]
    if n and (int(seqs[0]) != first or np.any(np.diff(seqs.astype(np.int64)) != 1)):
        raise CorruptionError(f"{where}: records' journal_seq are not {first}..{last}")
    return Batch(first, last, t_us, prev, digest, records)


def iter_batches(codec: Any, txn: Any, journal_db: Any, after_seq: int,
                 prev_hash: bytes | None) -> Iterator[Batch]:
    """The stored batches after journal_seq `after_seq`, decoded and checked, in order:
    each must follow the previous one's last journal_seq and, with `prev_hash`, chain
    to its hash (CorruptionError otherwise)."""
    cur = txn.cursor(db=journal_db)
    if not cur.set_range(KEY.pack(after_seq + 1)):
        return
    expected_first = after_seq + 1
    for key, value in cur:
        batch = decode_batch(codec, key, value, prev_hash)
        if batch.first_seq != expected_first:
            raise CorruptionError(
                f"journal batch {batch.first_seq}..{batch.last_seq} does not follow journal_seq {expected_first - 1}"
            )
        expected_first = batch.last_seq + 1
        prev_hash = batch.hash
        yield batch


def journal_head(txn: Any, journal_db: Any) -> int:
    """The last stored journal_seq (0: the journal is empty)."""
    cur = txn.cursor(db=journal_db)
    return KEY.unpack(cur.key())[0] if cur.last() else 0


#: Checked journal batches kept for id lookups of resent ops.
DECODED_BATCHES_MAX = 256


class DecodedBatches:
    """Journal batches recently stored by this ledger or read for id lookups, checked
    but still encoded.

    Stored batches never change (the journal is append-only), so an entry stays valid;
    the cache only bounds memory (DECODED_BATCHES_MAX encoded batches). A record is
    decoded alone from its batch's bytes. Every batch this ledger commits goes in as
    it was written (resent ops point at recent batches: they need neither an LMDB
    read nor a checksum); the pipeline's store thread adds them while a submitter
    looks up, hence the lock.
    """

    def __init__(self, codec: Any) -> None:
        self.codec = codec
        self._by_last: dict[int, CheckedBody] = {}  # insertion order = age
        self._lasts: list[int] = []  # the same batches' last journal_seqs, sorted
        self._lock = threading.Lock()

    def find(self, jseq: int) -> CheckedBody | None:
        """The cached batch holding jseq, if any (marked as recently used)."""
        with self._lock:
            i = bisect.bisect_left(self._lasts, jseq)  # the first cached batch ending at or after jseq
            if i == len(self._lasts):
                return None
            last = self._lasts[i]
            b = self._by_last[last]
            if b.first_seq > jseq:
                return None
            self._by_last[last] = self._by_last.pop(last)
            return b

    def add(self, b: CheckedBody) -> None:
        """Cache a decoded batch, dropping the least recently used beyond the limit."""
        with self._lock:
            if self._by_last.pop(b.last_seq, None) is None:
                bisect.insort(self._lasts, b.last_seq)
            self._by_last[b.last_seq] = b  # the most recently used
            while len(self._by_last) > DECODED_BATCHES_MAX:
                oldest = next(iter(self._by_last))
                del self._by_last[oldest]
                del self._lasts[bisect.bisect_left(self._lasts, oldest)]

    def add_written(self, journal: np.ndarray | None, packed: bytes | None, marks: Any) -> None:
        """Cache a batch this ledger just committed, from the bytes it wrote."""
        if journal is not None and packed is not None:
            seqs = journal["journal_seq"]
            self.add(CheckedBody(int(seqs[0]), int(seqs[-1]), packed, marks, self.codec))


class RecordFetcher:
    """Reads single journal records by journal_seq, through a cache of decoded batches."""

    def __init__(self, txn: Any, journal_db: Any, cache: DecodedBatches) -> None:
        self._cur = txn.cursor(db=journal_db)
        self._cache = cache

    def __call__(self, jseq: int) -> np.void:
        """The record with this journal_seq (CorruptionError if missing or damaged)."""
        return self._batch(jseq).record(jseq)

    def many(self, jseqs: np.ndarray) -> np.ndarray:
        """The records of these journal_seqs (sorted), decoded in one call.

        Resent ops point at records spread over many stored batches, one or two in
        each: the batches are found here, the records decoded together."""
        seqs = jseqs.tolist()
        which = np.empty(len(seqs), dtype=np.int64)
        found: list[CheckedBody] = []
        spans: list[tuple[int, int]] = []
        k = 0
        while k < len(seqs):
            b = self._batch(seqs[k])
            hi = bisect.bisect_right(seqs, b.last_seq, k)
            which[k:hi] = len(found)
            found.append(b)
            spans.append((k, hi))
            k = hi
        codec = self._cache.codec
        if len(found) == 1 and seqs[-1] - seqs[0] + 1 == len(seqs) == found[0].last_seq - found[0].first_seq + 1:
            # One whole batch (a long list read back): decoded once, nothing copied.
            b = found[0]
            try:
                return codec.unpack_journal(b.body, len(seqs), b.first_seq)  # type: ignore[no-any-return]
            except (ValueError, CorruptionError) as e:
                raise CorruptionError(f"journal batch ending at {b.last_seq}: {e}") from None
        out = np.zeros(len(seqs), dtype=JOURNAL_DTYPE)
        # A batch asked for many of its records is decoded whole: a record decoded
        # alone first skips up to RECORD_MARK_STRIDE - 1 records from its mark.
        sparse = np.ones(len(seqs), dtype=bool)
        try:
            for b, (lo, hi) in zip(found, spans):
                n = b.last_seq - b.first_seq + 1
                if (hi - lo) * DENSE_SHARE >= n:
                    out[lo:hi] = codec.unpack_journal(b.body, n, b.first_seq)[jseqs[lo:hi].astype(np.int64) - b.first_seq]
                    sparse[lo:hi] = False
            if sparse.any():
                out[sparse] = codec.unpack_records_of_batches(
                    [b.body for b in found], [b.marked() for b in found],
                    np.array([b.last_seq - b.first_seq + 1 for b in found], dtype=np.int64),
                    np.array([b.first_seq for b in found], dtype=np.uint64), which[sparse], jseqs[sparse],
                    RECORD_MARK_STRIDE,
                )
        except (ValueError, CorruptionError) as e:
            raise CorruptionError(f"a journal batch holding records {seqs[0]}..{seqs[-1]}: {e}") from None
        if not np.array_equal(out["journal_seq"], jseqs):
            raise CorruptionError(f"a journal batch holding records {seqs[0]}..{seqs[-1]}: a record is not where it belongs")
        return out

    def _batch(self, jseq: int) -> CheckedBody:
        """The stored batch holding jseq: cached, or read and checked."""
        b = self._cache.find(jseq)
        if b is None:
            if not self._cur.set_range(KEY.pack(jseq)):
                raise CorruptionError(f"journal record {jseq} is missing")
            b = check_batch(self._cache.codec, self._cur.key(), self._cur.value())
            if not (b.first_seq <= jseq <= b.last_seq):
                raise CorruptionError(f"journal record {jseq} is missing")
            self._cache.add(b)
        return b


def staged_record(journals: list[np.ndarray], jseq: int) -> np.void | None:
    """The record `jseq` from the journal of a batch not stored yet, or None."""
    for j in journals:
        first = int(j["journal_seq"][0])
        if first <= jseq < first + len(j):
            return j[jseq - first]
    return None
