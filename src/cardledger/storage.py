"""LMDB storage: the hash-chained journal, checkpoints, and the id index.

Layout (named LMDB databases in one environment directory):

- ``meta``: format version and ledger settings, written once at creation.
- ``journal``: one value per committed batch, keyed by the batch's last journal_seq
  (8 bytes, big-endian, so keys grow and every put is an append). A value is a
  128-byte header (magic, version, record count, first/last journal_seq, commit time,
  previous batch's hash, this batch's hash) followed by the JOURNAL_DTYPE records.
  The hash is SHA-256 over the previous hash, the header fields and the records.
- ``state``: the latest checkpoint: account, source and pending-hold arrays and a
  descriptor with their SHA-256 digests and the journal position they cover.
- ``ids``: decided op ids up to the checkpoint, one value per (source, run): key
  source+hi_seq (big-endian), value the sorted (seq, journal_seq) pairs of the ids
  that source decided in order between two checkpoints. Terminals issue increasing
  seqs, so a checkpoint writes about one value per active source, not one per op.
- ``ids_late``: ids decided out of order (seq at or below the source's seq at the
  previous checkpoint), one key source+seq each; rare by construction.

Nothing here knows op semantics; `ledger.py` drives it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import numpy as np

from .errors import CorruptionError
from .schema import ACCOUNT_DTYPE, JOURNAL_DTYPE, PENDING_DTYPE, SOURCE_DTYPE

FORMAT_VERSION = 1
BATCH_MAGIC = b"CLJB"
#: magic, version, header size, record count, first/last journal_seq, commit time,
#: previous hash, hash, padding to 128 bytes so the records start 8-byte aligned.
BATCH_HEADER = struct.Struct("<4sHHIQQq32s32s28x")
BATCH_HEADER_SIZE = BATCH_HEADER.size
#: the header fields covered by the batch hash (everything but the hashes).
_HASHED_FIELDS = struct.Struct("<4sHHIQQq")
CHECKPOINT = struct.Struct("<HxxxxxxQQ32s32s32s32sQQQ")
GENESIS_HASH = bytes(32)
KEY = struct.Struct(">Q")
KEY2 = struct.Struct(">QQ")
PAIR_DTYPE = np.dtype([("seq", "<u8"), ("journal_seq", "<u8")])

assert BATCH_HEADER_SIZE == 128
assert JOURNAL_DTYPE.itemsize % 8 == 0

DB_NAMES = (b"meta", b"journal", b"state", b"ids", b"ids_late")


def batch_hash(prev_hash: bytes, fields: bytes, records: bytes) -> bytes:
    """SHA-256 chaining one batch to the previous one."""
    h = hashlib.sha256(prev_hash)
    h.update(fields)
    h.update(records)
    return h.digest()


def encode_batch(records: np.ndarray, prev_hash: bytes, commit_time_us: int) -> tuple[bytes, bytes]:
    """Return (value, hash) of a journal batch holding `records` (JOURNAL_DTYPE)."""
    n = len(records)
    assert n > 0
    first = int(records[0]["journal_seq"])
    last = int(records[-1]["journal_seq"])
    assert last - first + 1 == n, "journal_seq must be contiguous within a batch"
    body = records.tobytes()
    fields = _HASHED_FIELDS.pack(BATCH_MAGIC, FORMAT_VERSION, BATCH_HEADER_SIZE, n, first, last, commit_time_us)
    digest = batch_hash(prev_hash, fields, body)
    header = BATCH_HEADER.pack(
        BATCH_MAGIC, FORMAT_VERSION, BATCH_HEADER_SIZE, n, first, last, commit_time_us, prev_hash, digest
    )
    return header + body, digest


@dataclass(frozen=True)
class Batch:
    """A decoded journal batch."""

    first_seq: int
    last_seq: int
    commit_time_us: int
    prev_hash: bytes
    hash: bytes
    records: np.ndarray


def decode_batch(key: bytes, value: bytes | memoryview, prev_hash: bytes | None = None) -> Batch:
    """Decode and check one journal batch; raise CorruptionError on any mismatch.

    With `prev_hash`, the batch must chain to it.
    """
    value = bytes(value)
    if len(value) < BATCH_HEADER_SIZE:
        raise CorruptionError(f"journal batch {key.hex()}: {len(value)} bytes, shorter than its header")
    magic, version, hsize, n, first, last, t_us, prev, digest = BATCH_HEADER.unpack_from(value)
    where = f"journal batch ending at journal_seq {KEY.unpack(key)[0] if len(key) == 8 else key.hex()}"
    if magic != BATCH_MAGIC or version != FORMAT_VERSION or hsize != BATCH_HEADER_SIZE:
        raise CorruptionError(f"{where}: bad header (magic/version)")
    if len(value) != BATCH_HEADER_SIZE + n * JOURNAL_DTYPE.itemsize:
        raise CorruptionError(f"{where}: length does not match its record count {n}")
    if last - first + 1 != n or KEY.pack(last) != key:
        raise CorruptionError(f"{where}: header journal_seq range {first}..{last} does not match its key")
    body = value[BATCH_HEADER_SIZE:]
    fields = _HASHED_FIELDS.pack(magic, version, hsize, n, first, last, t_us)
    if batch_hash(prev, fields, body) != digest:
        raise CorruptionError(f"{where}: hash mismatch (the batch was altered or damaged)")
    if prev_hash is not None and prev != prev_hash:
        raise CorruptionError(f"{where}: does not chain to the previous batch's hash")
    records = np.frombuffer(body, dtype=JOURNAL_DTYPE).copy()
    seqs = records["journal_seq"]
    if n and (int(seqs[0]) != first or np.any(np.diff(seqs.astype(np.int64)) != 1)):
        raise CorruptionError(f"{where}: records' journal_seq are not {first}..{last}")
    return Batch(first, last, t_us, prev, digest, records)


@dataclass(frozen=True)
class Checkpoint:
    """A decoded checkpoint: state arrays and the journal position they cover."""

    journal_seq: int
    last_batch_hash: bytes
    accounts: np.ndarray
    sources: np.ndarray
    pending: np.ndarray


def encode_checkpoint(
    journal_seq: int, last_batch_hash: bytes, accounts: np.ndarray, sources: np.ndarray, pending: np.ndarray
) -> dict[bytes, bytes]:
    """Return the state-database items of a checkpoint."""
    blobs = {b"accounts": accounts.tobytes(), b"sources": sources.tobytes(), b"pending": pending.tobytes()}
    digests = [hashlib.sha256(blobs[k]).digest() for k in (b"accounts", b"sources", b"pending")]
    desc = CHECKPOINT.pack(
        FORMAT_VERSION, journal_seq, 0, last_batch_hash, *digests, len(accounts), len(sources), len(pending)
    )
    blobs[b"checkpoint"] = desc
    return blobs


def decode_checkpoint(get) -> Checkpoint | None:
    """Read the checkpoint through `get(key)`; None if the ledger has none yet."""
    desc = get(b"checkpoint")
    if desc is None:
        return None
    desc = bytes(desc)
    if len(desc) != CHECKPOINT.size:
        raise CorruptionError("checkpoint descriptor has the wrong size")
    version, jseq, _, last_hash, d_acc, d_src, d_pen, n_acc, n_src, n_pen = CHECKPOINT.unpack(desc)
    if version != FORMAT_VERSION:
        raise CorruptionError(f"checkpoint format {version}, this library reads {FORMAT_VERSION}")
    arrays = []
    for key, digest, dtype, n in (
        (b"accounts", d_acc, ACCOUNT_DTYPE, n_acc),
        (b"sources", d_src, SOURCE_DTYPE, n_src),
        (b"pending", d_pen, PENDING_DTYPE, n_pen),
    ):
        blob = get(key)
        if blob is None:
            raise CorruptionError(f"checkpoint is missing its {key.decode()} array")
        blob = bytes(blob)
        if hashlib.sha256(blob).digest() != digest or len(blob) != n * dtype.itemsize:
            raise CorruptionError(f"checkpoint {key.decode()} array fails its checksum")
        arrays.append(np.frombuffer(blob, dtype=dtype).copy())
    return Checkpoint(jseq, last_hash, *arrays)


def id_index_items(decisions: np.ndarray, late: np.ndarray) -> tuple[list, list]:
    """Group checkpointed decisions into (ids items, ids_late items), keys sorted."""
    run = decisions[~late]
    items = []
    if len(run):
        src = run["source"]
        cuts = np.flatnonzero(src[1:] != src[:-1]) + 1
        for part in np.split(run, cuts):
            pairs = np.empty(len(part), dtype=PAIR_DTYPE)
            pairs["seq"] = part["seq"]
            pairs["journal_seq"] = part["journal_seq"]
            items.append((KEY2.pack(int(part[0]["source"]), int(part[-1]["seq"])), pairs.tobytes()))
    late_items = [
        (KEY2.pack(int(d["source"]), int(d["seq"])), KEY.pack(int(d["journal_seq"]))) for d in decisions[late]
    ]
    return items, late_items


def lookup_id(ids_cursor, late_get, source: int, seq: int) -> int | None:
    """journal_seq of a decided id up to the checkpoint, or None if never decided there."""
    if ids_cursor.set_range(KEY2.pack(source, seq)):
        k_source, _ = KEY2.unpack(ids_cursor.key())
        if k_source == source:
            pairs = np.frombuffer(ids_cursor.value(), dtype=PAIR_DTYPE)
            i = int(np.searchsorted(pairs["seq"], seq))
            if i < len(pairs) and int(pairs["seq"][i]) == seq:
                return int(pairs["journal_seq"][i])
    v = late_get(KEY2.pack(source, seq))
    return None if v is None else KEY.unpack(bytes(v))[0]
