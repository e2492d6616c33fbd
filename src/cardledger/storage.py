"""LMDB storage: the hash-chained journal, checkpoints, and the id index.

Layout (named LMDB databases in one environment directory):

- ``meta``: format version and ledger settings, written once at creation.
- ``journal``: one value per committed batch, keyed by the batch's last journal_seq
  (8 bytes, big-endian, so keys grow and every put is an append). A value is a
  128-byte header (magic, version, record count, first/last journal_seq, commit time,
  previous batch's hash, this batch's hash) followed by the records, encoded by
  `codec.py` (about 30-50 bytes a record instead of 152). The hash is SHA-256 over
  the previous hash, the header fields and the encoded records.
- ``state``: the checkpoint descriptors: ``checkpoint`` names the checkpoint file
  (accounts and pending holds, in the ledger directory) and its SHA-256;
  ``ids_state`` + ``sources``: the per-source array and how far the id index reaches.
- ``ids``: decided op ids up to the checkpoint, one value per (source, run): key
  source+hi_seq (big-endian), value the sorted (seq, journal_seq) pairs of the ids
  that source decided in order between two checkpoints, delta-varint encoded
  (`codec.pack_pairs`, ~3 bytes a pair). Terminals issue increasing
  seqs, so a checkpoint writes about one value per active source, not one per op.
- ``ids_late``: ids decided out of order (seq at or below the source's seq at the
  previous checkpoint), one key source+seq each; rare by construction.
- the *id log* (``state`` keys ``idlog`` + journal_seq): the id flushes not yet
  merged into ``ids``/``ids_late``, one value each (`encode_id_log`). A flush puts
  one value appended at the end of the log, where writing its thousand sources' runs
  straight into ``ids`` dirtied a thousand B-tree pages. Once the log holds
  IDS_LOG_FLUSHES_MAX flushes they are merged into the index together, a slice of
  sources per batch (``state`` key ``idmerge``: the last flush being merged and the
  first source not merged yet); a flush leaves the log when all of it is merged.

Nothing here knows op semantics; `ledger.py` drives it.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lmdb
import numpy as np

from . import codec
from .errors import CorruptionError
from .schema import ACCOUNT_DTYPE, JOURNAL_DTYPE, JOURNEY_DTYPE, PENDING_DTYPE, SOURCE_DTYPE

FORMAT_VERSION = 4

#: The codec functions the core implements in C, twins of those in codec.py.
_CODEC_FUNCTIONS = (
    "pack_journal", "unpack_journal", "unpack_journal_record", "unpack_journal_records", "journal_record_marks",
    "unpack_records_of_batches", "id_index_items",
    "pack_pairs", "find_pair", "pack_id_runs", "find_ids_in_runs", "find_ids_exact", "pack_words", "unpack_words",
)


def _codec_module() -> Any:
    """The core's C codec, unless the pure-Python engine is forced or the core is not
    built. A core built from older sources (a function missing) is refused: silently
    falling back to the Python twins would make every batch many times slower."""
    if os.environ.get("CARDLEDGER_PURE", "") not in ("", "0"):
        return codec
    try:
        from . import _core
    except ImportError:  # pragma: no cover - only without a compiler
        return codec
    missing = [name for name in _CODEC_FUNCTIONS if not hasattr(_core, name)]
    if missing:
        raise ImportError(f"cardledger._core is out of date (it lacks {', '.join(missing)}): rebuild it with "
                          "`pip install -e .` or `python setup.py build_ext --inplace`")
    return _core


_codec = _codec_module()
pack_journal, unpack_journal = _codec.pack_journal, _codec.unpack_journal
unpack_journal_record, unpack_journal_records = _codec.unpack_journal_record, _codec.unpack_journal_records
journal_record_marks, unpack_records_of_batches = _codec.journal_record_marks, _codec.unpack_records_of_batches
id_index_items = _codec.id_index_items
pack_pairs, find_pair, pack_id_runs = _codec.pack_pairs, _codec.find_pair, _codec.pack_id_runs
find_ids_in_runs, find_ids_exact = _codec.find_ids_in_runs, _codec.find_ids_exact
pack_words, unpack_words = _codec.pack_words, _codec.unpack_words

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
KEY = struct.Struct(">Q")
KEY2 = struct.Struct(">QQ")

assert BATCH_HEADER_SIZE == 128
assert JOURNAL_DTYPE.itemsize % 8 == 0

DB_NAMES = (b"meta", b"journal", b"state", b"ids", b"ids_late", b"fares")
#: Most (seq, journal_seq) pairs in one value of the id index (and of an id log run).
#: A lookup decodes its run from the start, and LMDB moves a value over ~2 KB (a 4 KiB
#: page's node limit) to overflow pages of its own: 128 pairs (~0.6 KB) keeps both
#: small. (At 4,096, the city's id index took 1,556 overflow pages beside 3,444 leaves,
#: and a resend found in a long run cost a decode of up to 4,096 pairs per id log
#: searched; at 128: 4,550 leaves, none overflow.) Readers take runs of any length.
ID_RUN_PAIRS_MAX = 128


def batch_hash(prev_hash: bytes, fields: bytes, records: bytes | memoryview) -> bytes:
    """SHA-256 chaining one batch to the previous one."""
    h = hashlib.sha256(prev_hash)
    h.update(fields)
    h.update(records)
    return h.digest()


def encode_batch(records: np.ndarray, prev_hash: bytes, commit_time_us: int,
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
        body = pack_journal(records)
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


#: A checked batch remembers where every RECORD_MARK_STRIDE-th record starts.
RECORD_MARK_STRIDE = 32


@dataclass(frozen=True)
class CheckedBody:
    """A journal batch whose header and hash were checked, its records still encoded."""

    first_seq: int
    last_seq: int
    body: bytes
    marks: Any  # journal_record_marks(...), or None: computed on first use

    def record(self, journal_seq: int) -> np.void:
        """Decode the one record with this journal_seq (CorruptionError if malformed)."""
        return self.records(np.array([journal_seq], dtype=np.uint64))[0]

    def marked(self) -> Any:
        """This batch's record marks (`journal_record_marks`), computed on first use:
        a derived index of the immutable body, kept once computed (ValueError if the
        body is malformed)."""
        if self.marks is None:
            n = self.last_seq - self.first_seq + 1
            object.__setattr__(self, "marks", journal_record_marks(self.body, n, self.first_seq, RECORD_MARK_STRIDE))
        return self.marks

    def records(self, journal_seqs: np.ndarray) -> np.ndarray:
        """Decode the records with these journal_seqs (all in this batch), in one call."""
        n = self.last_seq - self.first_seq + 1
        try:
            self.marked()
            recs = unpack_journal_records(self.body, n, self.first_seq, journal_seqs.astype(np.int64) - self.first_seq,
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


def check_batch(key: bytes, value: bytes | memoryview) -> CheckedBody:
    """Check one journal batch's header and hash without decoding its records."""
    where, first, last, _, _, _, body = _checked_header(key, value)
    try:
        marks = journal_record_marks(body, last - first + 1, first, RECORD_MARK_STRIDE)
    except (ValueError, CorruptionError) as e:
        raise CorruptionError(f"{where}: {e}") from None
    return CheckedBody(first, last, bytes(body), marks)


def decode_batch(key: bytes, value: bytes | memoryview, prev_hash: bytes | None = None) -> Batch:
    """Decode and check one journal batch; raise CorruptionError on any mismatch.

    With `prev_hash`, the batch must chain to it.
    """
    where, first, last, t_us, prev, digest, body = _checked_header(key, value)
    if prev_hash is not None and prev != prev_hash:
        raise CorruptionError(f"{where}: does not chain to the previous batch's hash")
    n = last - first + 1
    try:
        records = unpack_journal(body, n, first)
    except (ValueError, CorruptionError) as e:
        raise CorruptionError(f"{where}: {e}") from None
    seqs = records["journal_seq"]
    if n and (int(seqs[0]) != first or np.any(np.diff(seqs.astype(np.int64)) != 1)):
        raise CorruptionError(f"{where}: records' journal_seq are not {first}..{last}")
    return Batch(first, last, t_us, prev, digest, records)


# ---------------------------------------------------------------- checkpoints
#
# A checkpoint is split in two, so that the big part never sits on a batch's path:
# - the *id state* (the per-source array and the id index entries up to journal_seq
#   C', "ids_upto") is written inside the batch transaction that takes the snapshot;
# - the *account state* (accounts and pending holds at the same C') is written by a
#   background thread to its own file, `checkpoint-<C>.cl` in the ledger directory,
#   fsynced, and only then named by the `checkpoint` descriptor in LMDB, in a later
#   transaction. Until then the previous checkpoint file stays valid: opening loads
#   the accounts at C <= C', the sources at C', and replays the journal after C.

CHECKPOINT_MAGIC = b"CLCP"
#: The checkpoint file's own format: its body is the three tables packed with
#: `pack_words` (a million cards' accounts and fare state: ~400 MB raw, written every
#: checkpoint, and every batch commit's fsync meanwhile shared the disk with it).
CHECKPOINT_FILE_VERSION = 5
#: magic, version, journal_seq, account/hold/journey counts, their packed sizes in
#: bytes, last batch hash, body SHA-256
CHECKPOINT_HEADER = struct.Struct("<4sHxxQQQQQQQ32s32s")
#: Format-4 files (still read): magic, version, journal_seq, account/hold/journey
#: counts, last batch hash, body SHA-256; the body is the tables' raw records.
CHECKPOINT_HEADER_RAW = struct.Struct("<4sHxxQQQQ32s32s")
_CHECKPOINT_TABLES = (ACCOUNT_DTYPE, PENDING_DTYPE, JOURNEY_DTYPE)
#: descriptor in LMDB: version, journal_seq, last batch hash, file body SHA-256
CHECKPOINT_DESC = struct.Struct("<HxxxxxxQ32s32s")
#: id state in LMDB: version, ids_upto, source count, sources SHA-256
IDS_STATE = struct.Struct("<HxxxxxxQQ32s")


def checkpoint_file_name(journal_seq: int) -> str:
    """File name of the checkpoint covering the journal up to `journal_seq`."""
    return f"checkpoint-{journal_seq:020d}.cl"


@dataclass(frozen=True)
class CheckpointDesc:
    """What the LMDB descriptor says about the current checkpoint file."""

    journal_seq: int
    last_batch_hash: bytes
    body_sha256: bytes


def encode_checkpoint_desc(journal_seq: int, last_batch_hash: bytes, body_sha256: bytes) -> bytes:
    """The LMDB value naming a completed checkpoint file."""
    return CHECKPOINT_DESC.pack(FORMAT_VERSION, journal_seq, last_batch_hash, body_sha256)


def decode_checkpoint_desc(value) -> CheckpointDesc | None:
    """Decode the descriptor (None: the ledger has no checkpoint file yet)."""
    if value is None:
        return None
    value = bytes(value)
    if len(value) != CHECKPOINT_DESC.size:
        raise CorruptionError("checkpoint descriptor has the wrong size")
    version, jseq, last_hash, sha = CHECKPOINT_DESC.unpack(value)
    if version != FORMAT_VERSION:
        raise CorruptionError(f"checkpoint format {version}, this library reads {FORMAT_VERSION}")
    return CheckpointDesc(jseq, last_hash, sha)


#: The checkpoint file is written and made durable this many bytes at a time.
CHECKPOINT_SYNC_BYTES = 8 << 20
#: Direct (O_DIRECT) writes go through an aligned buffer of this size; a multiple of
#: every block size a filesystem may ask O_DIRECT writes to be aligned to.
DIRECT_CHUNK_BYTES = 1 << 20
DIRECT_ALIGN_BYTES = 4096


def write_checkpoint_file(
    directory: str,
    journal_seq: int,
    last_batch_hash: bytes,
    accounts: np.ndarray,
    pending: np.ndarray,
    journeys: np.ndarray,
    pace: Callable[[int], None] | None = None,
) -> bytes:
    """Write, fsync and atomically rename the checkpoint file; return its body SHA-256.

    `pace(bytes_written)`, if given, is called after each piece written (it may sleep
    to spread the writes out: see `Ledger.checkpoint_pace_bytes_per_s`).

    The body is the accounts, the outstanding holds and the cards' fare state
    (JOURNEY_DTYPE), each packed with `pack_words` (in the core, without the GIL: this
    runs in the checkpoint thread, beside the batches).

    The file is written with O_DIRECT where the filesystem allows it. Buffered, a
    snapshot of a million cards sits dirty in the page cache, and on ext4
    (data=ordered) every batch commit's fsync of the LMDB file meanwhile also waits
    for part of it. Direct writes go to the device at once and leave the page cache
    alone. Elsewhere (tmpfs) it is written buffered, made durable slice by slice.
    """
    tables = [pack_words(np.ascontiguousarray(a, dtype=dt)) for a, dt in zip((accounts, pending, journeys), _CHECKPOINT_TABLES)]
    h = hashlib.sha256()
    for t in tables:
        h.update(t)
    digest = h.digest()
    header = CHECKPOINT_HEADER.pack(
        CHECKPOINT_MAGIC, CHECKPOINT_FILE_VERSION, journal_seq, len(accounts), len(pending), len(journeys),
        *(len(t) for t in tables), last_batch_hash, digest,
    )  # fmt: skip
    parts = (memoryview(header), *(memoryview(t) for t in tables))
    final = os.path.join(directory, checkpoint_file_name(journal_seq))
    tmp = f"{final}.tmp-{os.getpid()}"
    if not _write_direct(tmp, parts, pace):
        _write_buffered(tmp, parts, pace)
    os.replace(tmp, final)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return digest


def _write_direct(path: str, parts: tuple[memoryview, ...], pace: Callable[[int], None] | None = None) -> bool:
    """Write `parts` to a new file `path` with O_DIRECT and fsync it; False (nothing
    left behind) where the filesystem does not take O_DIRECT."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o644)
    except OSError:
        return False
    try:
        buf = mmap.mmap(-1, DIRECT_CHUNK_BYTES)  # page-aligned, as O_DIRECT needs
        try:
            total = 0
            fill = 0
            for part in parts:
                pos = 0
                while pos < len(part):
                    n = min(DIRECT_CHUNK_BYTES - fill, len(part) - pos)
                    buf[fill : fill + n] = part[pos : pos + n]
                    fill += n
                    pos += n
                    if fill == DIRECT_CHUNK_BYTES:
                        _write_all(fd, memoryview(buf))
                        total += fill
                        fill = 0
                        if pace is not None:
                            pace(total)
            if fill:
                # The tail goes out padded to an aligned length, then is cut back.
                padded = -(-fill // DIRECT_ALIGN_BYTES) * DIRECT_ALIGN_BYTES
                buf[fill:padded] = bytes(padded - fill)
                _write_all(fd, memoryview(buf)[:padded])
                total += fill
                os.ftruncate(fd, total)
        finally:
            buf.close()
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        os.unlink(path)
        if e.errno == errno.EINVAL:  # O_DIRECT accepted at open but refused on write
            return False
        raise
    os.close(fd)
    return True


def _write_all(fd: int, data: memoryview) -> None:
    while len(data):
        data = data[os.write(fd, data) :]


def _write_buffered(path: str, parts: tuple[memoryview, ...], pace: Callable[[int], None] | None = None) -> None:
    with open(path, "wb") as f:  # buffered: its write() writes everything it is given
        unsynced = written = 0
        for part in parts:
            for start in range(0, len(part), CHECKPOINT_SYNC_BYTES):
                piece = part[start : start + CHECKPOINT_SYNC_BYTES]
                f.write(piece)
                unsynced += len(piece)
                written += len(piece)
                if unsynced >= CHECKPOINT_SYNC_BYTES:
                    # Made durable slice by slice: hundreds of MB left dirty at once
                    # stalled concurrent commits for up to a second.
                    f.flush()
                    os.fdatasync(f.fileno())
                    unsynced = 0
                if pace is not None:
                    pace(written)
        f.flush()
        os.fsync(f.fileno())


def read_checkpoint_file(directory: str, desc: CheckpointDesc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and check the checkpoint file `desc` names: (accounts, pending holds, journeys).

    Reads this version's packed files and the raw ones of format 4."""
    path = os.path.join(directory, checkpoint_file_name(desc.journal_seq))
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 6:
        raise CorruptionError(f"{path}: shorter than its header")
    magic, version = struct.unpack_from("<4sH", data)
    if magic != CHECKPOINT_MAGIC or version not in (CHECKPOINT_FILE_VERSION, FORMAT_VERSION):
        raise CorruptionError(f"{path}: bad header")
    packed = version == CHECKPOINT_FILE_VERSION
    fmt = CHECKPOINT_HEADER if packed else CHECKPOINT_HEADER_RAW
    if len(data) < fmt.size:
        raise CorruptionError(f"{path}: shorter than its header")
    fields = fmt.unpack_from(data)
    jseq, counts, (last_hash, digest) = fields[2], fields[3:6], fields[-2:]
    sizes = fields[6:9] if packed else tuple(n * dt.itemsize for n, dt in zip(counts, _CHECKPOINT_TABLES))
    body = memoryview(data)[fmt.size :]
    if jseq != desc.journal_seq or data[6:8] != b"\0\0":
        raise CorruptionError(f"{path}: bad header")
    # The counts are outside the body's checksum: bound them before anything is sized
    # by them (a packed row takes at least one byte, its bitmap).
    if packed and any(n > size for n, size in zip(counts, sizes)):
        raise CorruptionError(f"{path}: a table's row count does not fit its bytes")
    if len(body) != sum(sizes):
        raise CorruptionError(f"{path}: length does not match its counts")
    if digest != desc.body_sha256 or hashlib.sha256(body).digest() != digest or last_hash != desc.last_batch_hash:
        raise CorruptionError(f"{path}: fails its checksum")
    out = []
    start = 0
    for n, size, dt in zip(counts, sizes, _CHECKPOINT_TABLES):
        part = body[start : start + size]
        start += size
        if not packed:
            out.append(np.frombuffer(part, dtype=dt).copy())
            continue
        try:
            out.append(unpack_words(part, n, dt))
        except (ValueError, CorruptionError) as e:  # a bad encoding under a good checksum
            raise CorruptionError(f"{path}: {e}") from None
    accounts, pending, journeys = out
    return accounts, pending, journeys


#: Zeros are written in pieces of this size when the data file is extended ahead.
ZERO_PIECE_BYTES = 1 << 20


def zero_extend(fd: int, extra_bytes: int, limit_bytes: int) -> int:
    """Append `extra_bytes` of zeros (written, not a hole) to the file open as `fd`,
    never past `limit_bytes`, and fdatasync it; return the file's new size.

    For the LMDB data file, ahead of its last page: LMDB then overwrites blocks the
    file already has, and a commit's fdatasync need not also commit the file's growth
    (its size and new blocks) to the filesystem journal. Call it only while the
    ledger holds LMDB's write lock and writes no page (during a batch's kernel):
    it writes past the end of what LMDB has written."""
    size = os.fstat(fd).st_size
    end = min(size + extra_bytes, limit_bytes)
    if end <= size:
        return size
    zeros = memoryview(bytes(ZERO_PIECE_BYTES))
    at = size
    while at < end:
        at += os.pwrite(fd, zeros[: min(ZERO_PIECE_BYTES, end - at)], at)
    os.fdatasync(fd)
    return end


def ledger_disk_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the files under `path` (a closed ledger's folder, or any folder), an
    LMDB data file counted up to its last page (`lmdb_used_bytes`): the zeros written
    ahead of it are room for the next batches, not what the stored ops take."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                size = os.path.getsize(full)
                if name == "data.mdb":
                    size = min(size, lmdb_used_bytes(root))
            except (OSError, lmdb.Error):
                continue
            total += size
    return total


def lmdb_used_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the LMDB data file in `path` that hold pages (its last page's end):
    the file itself may run further, in zeros written ahead (`zero_extend`)."""
    env = lmdb.open(os.fspath(path), max_dbs=len(DB_NAMES), readonly=True, lock=False)
    try:
        return env_used_bytes(env)
    finally:
        env.close()


def env_used_bytes(env: Any) -> int:
    """Bytes of an open LMDB environment's data file up to its last committed page."""
    return (env.info()["last_pgno"] + 1) * env.stat()["psize"]


def remove_old_checkpoint_files(directory: str, keep_journal_seq: int) -> None:
    """Delete checkpoint files older than the one in force, and temporaries of dead writers."""
    for name in os.listdir(directory):
        if not name.startswith("checkpoint-"):
            continue
        path = os.path.join(directory, name)
        try:
            if name.endswith(".cl"):
                if int(name[len("checkpoint-") : -3]) < keep_journal_seq:
                    os.remove(path)
            elif ".cl.tmp-" in name:
                pid = int(name.rsplit("-", 1)[1])
                if pid != os.getpid() and not _pid_alive(pid):
                    os.remove(path)
        except (ValueError, OSError):
            continue


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def encode_ids_state(ids_upto: int, sources: np.ndarray) -> dict[bytes, bytes]:
    """The LMDB items of the id state: the sources array, sorted by source id here
    (it may come in any order), and its descriptor."""
    n = len(sources)
    if n > 1:
        # Source ids are unique, so any sort gives the one order; rows are moved as
        # whole words (a structured array's fancy index copies field by field).
        order = np.argsort(sources["source"])
        sources = sources.view(np.uint64).reshape(n, SOURCE_DTYPE.itemsize // 8)[order].reshape(-1).view(SOURCE_DTYPE)
    blob = sources.tobytes()
    return {
        b"sources": blob,
        b"ids_state": IDS_STATE.pack(FORMAT_VERSION, ids_upto, len(sources), hashlib.sha256(blob).digest()),
    }


def decode_ids_state(get) -> tuple[int, np.ndarray]:
    """(ids_upto, sources) through `get(key)`; (0, empty) for a new ledger."""
    desc = get(b"ids_state")
    if desc is None:
        return 0, np.zeros(0, dtype=SOURCE_DTYPE)
    desc = bytes(desc)
    if len(desc) != IDS_STATE.size:
        raise CorruptionError("id state descriptor has the wrong size")
    version, upto, n, digest = IDS_STATE.unpack(desc)
    blob = get(b"sources")
    if version != FORMAT_VERSION or blob is None:
        raise CorruptionError("id state is missing or of another format")
    blob = bytes(blob)
    if len(blob) != n * SOURCE_DTYPE.itemsize or hashlib.sha256(blob).digest() != digest:
        raise CorruptionError("id state (sources array) fails its checksum")
    return upto, np.frombuffer(blob, dtype=SOURCE_DTYPE).copy()


def lookup_id(ids_cursor, late_get, source: int, seq: int) -> int | None:
    """journal_seq of a decided id up to the checkpoint, or None if never decided there."""
    key = KEY2.pack(source, seq)
    # Keys are big-endian (source, seq): the same source iff the same first 8 bytes.
    if ids_cursor.set_range(key) and ids_cursor.key()[:8] == key[:8]:
        try:
            jseq = find_pair(ids_cursor.value(), seq)
        except (ValueError, CorruptionError) as e:
            raise CorruptionError(f"id index entry of source {source}: {e}") from None
        if jseq is not None:
            return int(jseq)
    v = late_get(key)
    return None if v is None else KEY.unpack(bytes(v))[0]


# ------------------------------------------------------------------ the id log

IDLOG_MAGIC = b"CLIL"
IDLOG_PREFIX = b"idlog"
#: magic, version, ids_upto, run count, late id count, blob size, SHA-256 of the rest
IDLOG_HEADER = struct.Struct("<4sHxxQQQQ32s")
def idlog_key(ids_upto: int) -> bytes:
    """The `state` key of the id log value of the flush up to `ids_upto`."""
    return IDLOG_PREFIX + KEY.pack(ids_upto)


class IdLog:
    """One id flush not yet merged into the id index, decoded for lookups.

    Its runs are keyed by (key_src[k], key_seq[k]) = (source, highest seq), sorted;
    run k's (seq, journal_seq) pairs are blob[offsets[k]:offsets[k+1]]
    (`codec.pack_pairs`). Its ids decided out of order are (late_src, late_seq) ->
    late_jseq, sorted. Every array is contiguous uint64 (offsets: int64).
    """

    __slots__ = ("ids_upto", "key_src", "key_seq", "offsets", "blob", "late_src", "late_seq", "late_jseq")
    #: The value's arrays, in the order it stores them after its header and before the blob.
    COLUMNS = (("key_src", np.uint64), ("key_seq", np.uint64), ("offsets", np.int64),
               ("late_src", np.uint64), ("late_seq", np.uint64), ("late_jseq", np.uint64))

    def __init__(self, ids_upto: int, blob: bytes, **columns: np.ndarray) -> None:
        self.ids_upto, self.blob = ids_upto, blob
        for name, dtype in self.COLUMNS:
            setattr(self, name, np.ascontiguousarray(columns[name], dtype=dtype))

    def find(self, q_src: np.ndarray, q_seq: np.ndarray, out: np.ndarray) -> None:
        """Fill out[i] (where still 0) with the journal_seq of id (q_src[i], q_seq[i]) if
        this flush decided it (q_src, q_seq: contiguous uint64)."""
        try:
            find_ids_in_runs(self.key_src, self.key_seq, self.offsets, self.blob, q_src, q_seq, out)
        except ValueError as e:
            raise CorruptionError(f"id log at {self.ids_upto}: {e}") from None
        find_ids_exact(self.late_src, self.late_seq, self.late_jseq, q_src, q_seq, out)


def merged_index_items(logs: list[IdLog], lo_source: int = 0, hi_source: int | None = None) -> tuple[list, list]:
    """The (ids items, ids_late items) of several id log flushes for the sources in
    [lo_source, hi_source) (None: to the last), each list in key order (for putmulti)."""
    try:
        items = id_index_items([lg.key_src for lg in logs], [lg.key_seq for lg in logs],
                               [lg.blob for lg in logs], [lg.offsets for lg in logs], lo_source, hi_source)
        late = id_index_items([lg.late_src for lg in logs], [lg.late_seq for lg in logs],
                              [lg.late_jseq for lg in logs], None, lo_source, hi_source)
    except ValueError as e:
        raise CorruptionError(f"id log: {e}") from None
    return items, late


def encode_id_log(decisions: np.ndarray, late: np.ndarray, ids_upto: int) -> tuple[bytes, bytes, IdLog]:
    """The id log entry of a flush (decisions sorted by (source, seq)): (key, value, IdLog)."""
    run, lt = decisions[~late], decisions[late]
    key_src, key_seq, offsets, blob = pack_id_runs(run["source"], run["seq"], run["journal_seq"], ID_RUN_PAIRS_MAX)
    log = IdLog(ids_upto, blob, key_src=key_src, key_seq=key_seq, offsets=offsets,
                late_src=lt["source"], late_seq=lt["seq"], late_jseq=lt["journal_seq"])
    body = b"".join([getattr(log, name).tobytes() for name, _ in IdLog.COLUMNS] + [blob])
    header = IDLOG_HEADER.pack(IDLOG_MAGIC, FORMAT_VERSION, ids_upto, len(key_src), len(lt), len(blob),
                               hashlib.sha256(body).digest())
    return idlog_key(ids_upto), header + body, log


def decode_id_log(key: bytes, value: Any) -> IdLog:
    """Decode and check an id log value; CorruptionError if it is damaged."""
    value = bytes(value)
    where = f"id log entry {bytes(key)!r}"
    if len(value) < IDLOG_HEADER.size:
        raise CorruptionError(f"{where}: shorter than its header")
    magic, version, upto, n_runs, n_late, n_blob, digest = IDLOG_HEADER.unpack_from(value)
    body = memoryview(value)[IDLOG_HEADER.size :]
    counts = dict(key_src=n_runs, key_seq=n_runs, offsets=n_runs + 1, late_src=n_late, late_seq=n_late, late_jseq=n_late)
    if (magic != IDLOG_MAGIC or version != FORMAT_VERSION or idlog_key(upto) != bytes(key)
            or len(body) != 8 * sum(counts.values()) + n_blob):
        raise CorruptionError(f"{where}: bad header")
    if hashlib.sha256(body).digest() != digest:
        raise CorruptionError(f"{where}: fails its checksum")
    columns, start = {}, 0
    for name, dtype in IdLog.COLUMNS:
        columns[name] = np.frombuffer(body, dtype=dtype, count=counts[name], offset=start).copy()
        start += 8 * counts[name]
    return IdLog(upto, bytes(body[start:]), **columns)


#: `state` key of the merge of the id log into the index in progress (absent: none).
IDMERGE_KEY = b"idmerge"
#: ids_upto of the last flush being merged, first source not merged yet.
IDMERGE = struct.Struct("<QQ")


def encode_id_merge(ids_upto: int, next_source: int) -> bytes:
    """The `idmerge` value: the flushes up to `ids_upto` are being merged, and every
    source below `next_source` of theirs is in the index already."""
    return IDMERGE.pack(ids_upto, next_source)


def decode_id_merge(value: bytes | memoryview | None) -> tuple[int, int] | None:
    """(ids_upto, next_source) of the merge in progress, or None; CorruptionError if malformed."""
    if value is None:
        return None
    if len(value) != IDMERGE.size:
        raise CorruptionError(f"id log merge state: {len(value)} bytes, expected {IDMERGE.size}")
    upto, next_source = IDMERGE.unpack(bytes(value))
    return upto, next_source


def read_id_log(txn: Any, state_db: Any) -> list[IdLog]:
    """Every id log entry in the `state` database, oldest first."""
    logs = []
    cur = txn.cursor(db=state_db)
    if cur.set_range(IDLOG_PREFIX):
        for key, value in cur:
            if not bytes(key).startswith(IDLOG_PREFIX):
                break
            logs.append(decode_id_log(key, value))
    return logs
