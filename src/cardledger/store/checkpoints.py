"""Checkpoints: the account state written to a file of its own, and who writes it.

A checkpoint is split in two, so that the big part never sits on a batch's path:
- the *id state* (the per-source array and the id index up to journal_seq C',
  "ids_upto") is written inside the batch transaction that takes the snapshot
  (`ids.py`);
- the *account state* (accounts, pending holds and cards' fare state at the same C')
  is written by the checkpoint thread to its own file, `checkpoint-<C>.cl` in the
  ledger directory, fsynced, and only then named by the ``checkpoint`` descriptor in
  LMDB, in a later transaction. Until then the previous checkpoint file stays valid:
  opening loads the accounts at C <= C', the sources at C', and replays the journal
  after C.

`CheckpointWriter` owns that thread, its pacing and the snapshot buffers.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import struct
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CorruptionError
from ..schema import ACCOUNT_DTYPE, CARD_OFFER_DTYPE, JOURNEY_DTYPE, OFFER_BUDGET_DTYPE, PENDING_DTYPE, REFUNDED_DTYPE
from .keys import FORMAT_VERSION, STATE_CHECKPOINT_KEY

CHECKPOINT_MAGIC = b"CLCP"
#: The checkpoint file's own format: its body is the three tables packed with
#: `pack_words` (raw, a city's accounts and fare state are hundreds of MB written every
#: checkpoint, and every batch commit's fsync meanwhile shared the disk with them).
CHECKPOINT_FILE_VERSION = 7
#: magic, version, journal_seq, account/hold/journey/offer slot/card offer/refunded
#: purchase counts, their packed sizes in bytes, last batch hash, body SHA-256
CHECKPOINT_HEADER = struct.Struct("<4sHxxQ" + "Q" * 12 + "32s32s")
#: Format-6 files (still read): the same header; the offer state kept every purchase
#: and each slot's spent budget only (`_offer_state_from_6` converts it).
CHECKPOINT_FILE_VERSION_6 = 6
_OFFER_BUDGET_DTYPE_6 = np.dtype([("slot", "<i8"), ("used_fen", "<i8")])
_PURCHASE_DTYPE_6 = np.dtype(
    [("source", "<u8"), ("seq", "<u8"), ("card_id", "<u8"), ("merchant_id", "<u8"), ("union_id", "<u8"),
     ("gross_fen", "<i8"), ("subsidy_fen", "<i8"), ("cash_fen", "<i8"), ("discount_fen", "<i8"),
     ("union_fen", "<i8"), ("refunded_fen", "<i8"), ("slot", "<i8"), ("day", "<i8"), ("month", "<i8")]
)
#: Format-5 files (still read): the first three tables only (no offer state).
CHECKPOINT_FILE_VERSION_5 = 5
CHECKPOINT_HEADER_5 = struct.Struct("<4sHxxQQQQQQQ32s32s")
#: Format-4 files (still read): magic, version, journal_seq, account/hold/journey
#: counts, last batch hash, body SHA-256; the body is the tables' raw records.
CHECKPOINT_HEADER_RAW = struct.Struct("<4sHxxQQQQ32s32s")
_CHECKPOINT_TABLES = (ACCOUNT_DTYPE, PENDING_DTYPE, JOURNEY_DTYPE, OFFER_BUDGET_DTYPE, CARD_OFFER_DTYPE, REFUNDED_DTYPE)
_CHECKPOINT_TABLES_6 = _CHECKPOINT_TABLES[:3] + (_OFFER_BUDGET_DTYPE_6, CARD_OFFER_DTYPE, _PURCHASE_DTYPE_6)


def no_offer_state() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The offer state of a ledger that has none (slot use, card counters, refunded purchases)."""
    return tuple(np.zeros(0, dtype=dt) for dt in _CHECKPOINT_TABLES[3:])  # type: ignore[return-value]
#: descriptor in LMDB: version, journal_seq, last batch hash, file body SHA-256
CHECKPOINT_DESC = struct.Struct("<HxxxxxxQ32s32s")


def checkpoint_file_name(journal_seq: int) -> str:
    """File name of the checkpoint covering the journal up to `journal_seq`."""
    return f"checkpoint-{journal_seq:020d}.cl"


def is_checkpoint_file_name(name: str) -> bool:
    """Whether `name` is a checkpoint file's (or one being written)."""
    return name.startswith("checkpoint-") and (name.endswith(".cl") or ".cl.tmp-" in name)


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
    codec: Any,
    directory: str,
    journal_seq: int,
    last_batch_hash: bytes,
    accounts: np.ndarray,
    pending: np.ndarray,
    journeys: np.ndarray,
    offers: tuple | None = None,
    pace: Callable[[int], None] | None = None,
) -> bytes:
    """Write, fsync and atomically rename the checkpoint file; return its body SHA-256.

    `pace(bytes_written)`, if given, is called after each piece written (it may sleep
    to spread the writes out: see `CheckpointWriter.pace_bytes_per_s`).

    The body is the accounts, the outstanding holds and the cards' fare state
    (JOURNEY_DTYPE), each packed with the codec's `pack_words` (in the core, without the GIL: this
    runs in the checkpoint thread, beside the batches).

    The file is written with O_DIRECT where the filesystem allows it. Buffered, a
    snapshot of a million cards sits dirty in the page cache, and on ext4
    (data=ordered) every batch commit's fsync of the LMDB file meanwhile also waits
    for part of it. Direct writes go to the device at once and leave the page cache
    alone. Elsewhere (tmpfs) it is written buffered, made durable slice by slice.
    """
    arrays = (accounts, pending, journeys, *(offers if offers is not None else no_offer_state()))
    tables = [codec.pack_words(np.ascontiguousarray(a, dtype=dt)) for a, dt in zip(arrays, _CHECKPOINT_TABLES)]
    h = hashlib.sha256()
    for t in tables:
        h.update(t)
    digest = h.digest()
    header = CHECKPOINT_HEADER.pack(
        CHECKPOINT_MAGIC, CHECKPOINT_FILE_VERSION, journal_seq, *(len(a) for a in arrays),
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
                    # Made durable slice by slice: a whole file left dirty at once
                    # stalled concurrent commits (docs/performance-log.md).
                    f.flush()
                    os.fdatasync(f.fileno())
                    unsynced = 0
                if pace is not None:
                    pace(written)
        f.flush()
        os.fsync(f.fileno())


def read_checkpoint_file(codec: Any, directory: str, desc: CheckpointDesc, with_offers: bool = False) -> tuple:
    """Read and check the checkpoint file `desc` names: (accounts, pending holds, journeys),
    and with `with_offers` the offer state as a fourth item (budgets, card counters,
    purchases).

    Reads this version's packed files, format 6's (its offer state converted), format
    5's (no offer state: none) and the raw ones of format 4."""
    path = os.path.join(directory, checkpoint_file_name(desc.journal_seq))
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 6:
        raise CorruptionError(f"{path}: shorter than its header")
    magic, version = struct.unpack_from("<4sH", data)
    if magic != CHECKPOINT_MAGIC or version not in (CHECKPOINT_FILE_VERSION, CHECKPOINT_FILE_VERSION_6,
                                                    CHECKPOINT_FILE_VERSION_5, FORMAT_VERSION):
        raise CorruptionError(f"{path}: bad header")
    packed = version != FORMAT_VERSION
    n_tables = len(_CHECKPOINT_TABLES) if version in (CHECKPOINT_FILE_VERSION, CHECKPOINT_FILE_VERSION_6) else 3
    tables = _CHECKPOINT_TABLES_6 if version == CHECKPOINT_FILE_VERSION_6 else _CHECKPOINT_TABLES
    fmt = {CHECKPOINT_FILE_VERSION: CHECKPOINT_HEADER, CHECKPOINT_FILE_VERSION_6: CHECKPOINT_HEADER,
           CHECKPOINT_FILE_VERSION_5: CHECKPOINT_HEADER_5}.get(version, CHECKPOINT_HEADER_RAW)
    if len(data) < fmt.size:
        raise CorruptionError(f"{path}: shorter than its header")
    fields = fmt.unpack_from(data)
    jseq, counts, (last_hash, digest) = fields[2], fields[3 : 3 + n_tables], fields[-2:]
    sizes = (fields[3 + n_tables : 3 + 2 * n_tables] if packed
             else tuple(n * dt.itemsize for n, dt in zip(counts, tables)))
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
    for n, size, dt in zip(counts, sizes, tables):
        part = body[start : start + size]
        start += size
        if not packed:
            out.append(np.frombuffer(part, dtype=dt).copy())
            continue
        try:
            out.append(codec.unpack_words(part, n, dt))
        except (ValueError, CorruptionError) as e:  # a bad encoding under a good checksum
            raise CorruptionError(f"{path}: {e}") from None
    accounts, pending, journeys = out[:3]
    if not with_offers:
        return accounts, pending, journeys
    offers = tuple(out[3:]) if len(out) > 3 else no_offer_state()
    if version == CHECKPOINT_FILE_VERSION_6:
        offers = _offer_state_from_6(*offers)
    return accounts, pending, journeys, offers


def _offer_state_from_6(budgets: np.ndarray, cards: np.ndarray, purchases: np.ndarray) -> tuple:
    """A format-6 offer state as this format keeps it: each slot's use (its spent budget,
    and the union share and purchases its kept purchases add up to, net of refunds),
    and of its purchases only those refunded (what is left to refund). The others are
    read from the journal when a REFUND names them."""
    use: dict[int, list[int]] = {int(slot): [int(used), 0, 0] for slot, used in budgets.tolist()}
    refunded = []
    for p in purchases.tolist():
        source, seq, g, u, r, slot = p[0], p[1], p[5], p[9], p[10], p[11]
        if slot >= 0:
            row = use.setdefault(slot, [0, 0, 0])
            row[1] += u - u * r // g if g else 0
            row[2] += int(r < g)
        if r:
            refunded.append((source, seq, g - r))
    slots = np.array(sorted((s, *v) for s, v in use.items() if any(v)), dtype=OFFER_BUDGET_DTYPE)
    return slots, cards, np.array(sorted(refunded), dtype=REFUNDED_DTYPE)


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


#: Memory page size, for touching a buffer's pages.
PAGE_BYTES = 4096
#: How fast a checkpoint file written beside the batches goes to disk. Each batch's
#: commit ends in a device cache flush, which also writes out whatever part of the
#: checkpoint file reached the device since the previous commit: unpaced, a large
#: file stretched the commits meanwhile several-fold (docs/performance-log.md). At
#: this pace a commit flushes a small slice of it. `Ledger.checkpoint()` and
#: `close()`, which wait for the file, lift the pace.
CHECKPOINT_PACE_BYTES_PER_S_DEFAULT = 32 << 20


class CheckpointFileGone(CorruptionError):
    """The checkpoint file the ledger names is missing (replaced meanwhile, or lost)."""


def read_named_checkpoint(codec: Any, directory: str, desc: CheckpointDesc) -> tuple:
    """`read_checkpoint_file` with the offer state, a missing file as CheckpointFileGone."""
    try:
        return read_checkpoint_file(codec, directory, desc, with_offers=True)
    except FileNotFoundError:
        raise CheckpointFileGone(
            f"checkpoint file {checkpoint_file_name(desc.journal_seq)} named by the ledger is missing from {directory!r}"
        ) from None


def decode_stored_desc(txn: Any, state_db: Any) -> CheckpointDesc | None:
    """The stored checkpoint descriptor (None: no checkpoint file yet)."""
    return decode_checkpoint_desc(txn.get(STATE_CHECKPOINT_KEY, db=state_db))


class CheckpointWriter:
    """A ledger's checkpoint files: the snapshots the batch path takes, the checkpoint
    thread (`cardledger-checkpoint`) that writes them, its pacing, and naming a finished
    file in LMDB.

    Threads: the batch path (under the ledger's lock) takes snapshots and names
    finished files; while batches are in flight, the pipeline's store thread does the
    naming and starts the file of a staged snapshot (every other path first waits for
    it). The checkpoint thread only completes a snapshot and writes its file.
    """

    def __init__(self, path: str, codec: Any, state_db: Any) -> None:
        self.path = path
        self.codec = codec
        self.state_db = state_db
        #: Bytes a second a file written beside the batches goes to disk at; None: as
        #: fast as it can (see CHECKPOINT_PACE_BYTES_PER_S_DEFAULT).
        self.pace_bytes_per_s: int | None = CHECKPOINT_PACE_BYTES_PER_S_DEFAULT
        #: The last error writing a checkpoint file in the background (None: none).
        self.error: OSError | None = None
        #: journal_seq of the checkpoint file in force, and of the last snapshot taken.
        self.ckpt_seq = 0
        self.snap_seq = 0
        #: A snapshot rides with a batch in flight (its file not started yet).
        self.snapshot_in_flight = False
        self._hurry = threading.Event()  # set: someone waits for the file, stop pacing
        self._executor: ThreadPoolExecutor | None = None
        #: (journal_seq, last hash, future of the body digest) of the file being written.
        self.file_job: tuple[int, bytes, Future[bytes]] | None = None
        #: A snapshot taken by the current transaction, written after its commit.
        self._taken: tuple | None = None
        #: A file named by the current transaction, adopted after its commit.
        self._recorded: int | None = None
        self._accounts_buf: np.ndarray | None = None
        self._journeys_buf: np.ndarray | None = None
        self._pending_buf: np.ndarray | None = None

    # -- the batch path

    def loaded(self, ckpt_seq: int) -> None:
        """The engine was (re)loaded from the checkpoint at `ckpt_seq`."""
        self.ckpt_seq = self.snap_seq = ckpt_seq

    def begin_transaction(self) -> None:
        """A write transaction begins: nothing taken or named in it yet."""
        self._taken = None
        self._recorded = None

    def due(self, engine: Any, checkpoint_ops: int) -> bool:
        """Whether the batch just run must take a snapshot: never while the previous one
        rides with a batch in flight or is still being written (its buffers are reused)."""
        return engine.journal_seq - self.snap_seq >= checkpoint_ops and self.file_job is None and not self.snapshot_in_flight

    def due_before(self, engine: Any, checkpoint_ops: int, n_ops: int) -> bool:
        """Whether a batch of n_ops about to run would take a snapshot, assuming every
        op is decided anew (judged before its kernel)."""
        passes = int(engine.journal_seq) + n_ops - self.snap_seq >= checkpoint_ops
        return passes and self.file_job is None and not self.snapshot_in_flight

    def export_snapshot(self, engine: Any, ids_upto: int) -> tuple:
        """Snapshot the accounts, holds and journeys as of the ids flush just prepared:
        (journal_seq, accounts, pending, journeys). Only the holds are copied now; the
        accounts and journeys are copied on write (`Engine.snapshot_begin`), and the
        checkpoint thread completes them (`_write_job`) while the next batches run. The
        buffers are reused: the previous file job has finished by now (see `due`)."""
        n = engine.account_count()
        if self._accounts_buf is None or len(self._accounts_buf) < n:
            self._accounts_buf = np.empty(n + n // 4 + 1024, dtype=ACCOUNT_DTYPE)
        # (fresh arrays where a buffer is too small; rows in the store's order, which
        # loading takes; the journeys' unused legs are cleared by the checkpoint thread)
        accounts, pending, journeys = engine.snapshot_begin(self._accounts_buf, self._journeys_buf, self._pending_buf)
        # the offer state is copied now, as the holds are
        offers = engine.export_offer_state(sort=False)
        self.snap_seq = ids_upto
        return ids_upto, accounts, pending, journeys, offers

    def take(self, snapshot: tuple, last_hash: bytes) -> None:
        """Keep a snapshot (`export_snapshot`) taken by the current transaction, whose
        last batch hash is `last_hash`: its file is started once the transaction commits."""
        jseq, accounts, pending, journeys, offers = snapshot
        self._taken = (jseq, last_hash, accounts, pending, journeys, offers)

    def record_finished(self, txn: Any, wait: bool) -> None:
        """Name a finished checkpoint file in LMDB (inside the caller's write txn); with
        `wait`, wait for the file being written first."""
        job = self.file_job
        if job is None or (not wait and not job[2].done()):
            return
        if wait:
            self._hurry.set()
        self.file_job = None
        jseq, last_hash, future = job
        try:
            digest = future.result()
        except OSError as e:
            # The journal still holds everything: opening replays a longer tail.
            self.error = e
            warnings.warn(f"cardledger: checkpoint file not written ({e}); the journal is intact", RuntimeWarning)
            return
        stored = decode_stored_desc(txn, self.state_db)
        if stored is not None and stored.journal_seq >= jseq:
            return  # another writer named a newer checkpoint meanwhile: never go back
        if not os.path.exists(os.path.join(self.path, checkpoint_file_name(jseq))):
            return  # superseded and removed by another writer
        txn.put(STATE_CHECKPOINT_KEY, encode_checkpoint_desc(jseq, last_hash, digest), db=self.state_db)
        self._recorded = jseq

    def committed(self, engine: Any, expect_taps: Callable[[], bool]) -> None:
        """The transaction committed: adopt the file it named (older ones go), and start
        writing the snapshot it took. `expect_taps()`: whether a fare system is installed
        (asked once the file is written, to size the next snapshot's buffers)."""
        self.adopt_recorded()
        self.start_file(engine, expect_taps)

    def adopt_recorded(self) -> None:
        """After a commit that named a checkpoint file: it is ours now; older ones go."""
        if self._recorded is not None:
            self.ckpt_seq, self._recorded = self._recorded, None
            remove_old_checkpoint_files(self.path, self.ckpt_seq)

    def start_file(self, engine: Any, expect_taps: Callable[[], bool]) -> None:
        """Start writing the snapshot taken by the transaction that just committed."""
        snap, self._taken = self._taken, None
        if snap is None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardledger-checkpoint")
        jseq, last_hash, accounts, pending, journeys, offers = snap
        self._hurry.clear()  # (the previous file is done: nobody waits any more)
        self.file_job = (jseq, last_hash, self._executor.submit(
            self._write_job, engine, jseq, last_hash, accounts, pending, journeys, offers, expect_taps
        ))

    def finish(self, env: Any) -> None:
        """Wait for a checkpoint file being written and name it in LMDB (a write
        transaction of its own)."""
        if self.file_job is None:
            return
        self._recorded = None
        with env.begin(write=True) as txn:
            self.record_finished(txn, wait=True)
        self.adopt_recorded()

    def close(self) -> None:
        """Stop the checkpoint thread (after `finish`)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- the checkpoint thread

    def _write_job(self, engine: Any, jseq: int, last_hash: bytes, accounts: np.ndarray,
                   pending: np.ndarray, journeys: np.ndarray, offers: tuple,
                   expect_taps: Callable[[], bool]) -> bytes:
        """In the checkpoint thread: complete the snapshot `engine` began, write the
        file, then ready the next snapshot's buffers.

        A fresh buffer's first fill page-faults, and it would land on the batch that
        takes the next snapshot. So buffers are grown and touched here, off the batch
        path; the batch path only takes a snapshot once this job is done (`due`), so
        nothing races on them.
        """
        engine.snapshot_complete()  # copies the rows no batch has copied yet, without the GIL
        engine.clear_unused_legs(journeys)  # left to this thread by export_snapshot
        digest = write_checkpoint_file(self.codec, self.path, jseq, last_hash, accounts, pending, journeys,
                                       offers, pace=self._pacer())
        n_acc, n_jny = len(accounts), len(journeys)
        self._accounts_buf = _warm_buffer(self._accounts_buf, n_acc + n_acc // 4 + 1024, ACCOUNT_DTYPE)
        # Once cards tap, their journeys soon number nearly the cards (never more): size
        # for that at once rather than grow again on the batch path, as soon as taps are
        # expected (a fare system is installed, by now: the file took a while).
        taps_expected = n_jny > 0 or expect_taps()
        self._journeys_buf = _warm_buffer(self._journeys_buf, (max(n_jny, n_acc) if taps_expected else 0) + 1024,
                                          journeys.dtype)
        # Holds come and go (a metro entry holds its fare until the exit): room for
        # twice today's, or for one card in four once cards tap (the engine's own room).
        n_pen = len(pending)
        self._pending_buf = _warm_buffer(self._pending_buf, max(2 * n_pen, n_acc // 4 if taps_expected else 0) + 1024,
                                         pending.dtype)
        return digest

    def _pacer(self) -> Callable[[int], None] | None:
        """A `pace(bytes_written)` that sleeps while the file runs ahead of
        `pace_bytes_per_s`, and no longer once someone waits for the file."""
        rate = self.pace_bytes_per_s
        if not rate:
            return None
        start, hurry = time.monotonic(), self._hurry

        def pace(written: int) -> None:
            delay = start + written / rate - time.monotonic()
            if delay > 0 and not hurry.is_set():
                hurry.wait(delay)  # returns at once when someone starts waiting

        return pace


def _warm_buffer(buf: np.ndarray | None, n: int, dtype: Any) -> np.ndarray:
    """`buf` if it holds `n` records, else a new buffer of `n` with every page touched."""
    if buf is not None and len(buf) >= n:
        return buf
    buf = np.empty(n, dtype=dtype)
    buf.view(np.uint8)[:: PAGE_BYTES] = 0
    return buf
