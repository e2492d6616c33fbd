"""The public face: `cardledger.open(path)` and the `Ledger` it returns.

A Ledger couples one engine (the in-memory state machine: Cython core or reference)
with one LMDB environment (journal + checkpoints, see `storage.py`). `apply` runs a
batch through the engine inside one LMDB write transaction and returns only after
that transaction's durable commit; if anything fails before the commit, the engine
is reloaded from disk, so memory never runs ahead of what is stored.
"""

from __future__ import annotations

import bisect
import builtins
import functools
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import lmdb
import numpy as np

from . import fare_store, storage
from .pipeline import CommitPipeline, StagedBatch
from .engine_select import engine_class
from .errors import (
    AccountNotFoundError,
    CorruptionError,
    LedgerClosedError,
    LedgerError,
    LedgerReadOnlyError,
    SchemaError,
    StorageError,
)
from .schema import (
    ACCOUNT_DTYPE,
    BATCH_OPS_MAX,
    CHECKPOINT_OPS_DEFAULT,
    DEFAULT_CASH_CAP_FEN,
    JOURNAL_DTYPE,
    JOURNEY_DTYPE,
    OP_DTYPE,
    PENDING_DTYPE,
    RESULT_DTYPE,
    TAP_HORIZON_NONE,
    AccountFlags,
    AccountKind,
    OpKind,
    Result,
)

#: Memory page size, for touching a buffer's pages.
PAGE_BYTES = 4096
#: OpKind.TAP as a plain int: compared once per batch on the hot path.
_TAP = int(OpKind.TAP)
#: Initial LMDB map size. It is address space, not disk: the file grows as needed,
#: and a full map is grown and the batch retried transparently.
MAP_SIZE_INITIAL_BYTES = 1 << 34
#: Reader slots shared by all processes (lock.mdb is sparse, slots are cheap).
MAX_READERS = 1024
#: Most decided ops held in memory between checkpoints (the core indexes them in 32 bits).
CHECKPOINT_OPS_MAX = 1 << 30
builtins_open = builtins.open  # `open` below is the public cardledger.open

#: Decisions held in memory before a flush to the LMDB id index (at most checkpoint_ops).
IDS_FLUSH_OPS_DEFAULT = 1 << 16
#: How far past this host's clock a TAP's time_us may be (a day): later ones are refused
#: with TAP_TIME_IN_FUTURE. A validator whose clock ran ahead would otherwise rate taps by
#: a future fare version and, since a fare version must start after every tap already
#: rated, keep any new version from being installed before that future instant.
TAP_TIME_AHEAD_MAX_US_DEFAULT = 24 * 3600 * 1_000_000
#: How fast a checkpoint file written beside the batches goes to disk. Each batch's
#: commit ends in a device cache flush, which also writes out whatever part of the
#: checkpoint file reached the device since the previous commit: unpaced, a million
#: cards' file (~45 MB packed) went out in ~250 ms and the commits meanwhile took 20-36
#: ms instead of ~3. At this pace that file takes ~1.4 s and a commit flushes about half
#: a MB of it. `checkpoint()` and `close()`, which wait for the file, lift the pace.
CHECKPOINT_PACE_BYTES_PER_S_DEFAULT = 32 << 20
#: The LMDB data file is kept at least this far ahead of its last page, in zeros
#: written and synced beforehand (`storage.zero_extend`), a piece of DATA_FILE_EXTEND_BYTES
#: at a time beside a batch's kernel. A commit that grows the file also commits the
#: growth to the filesystem's journal in its fdatasync; into blocks the file already
#: has, it does not: the city's commits took 2.0 ms instead of 2.4-2.9 (p50; mean
#: 2.6-2.8 instead of 3.3-3.7) with the file extended ahead. The file is larger than
#: its pages by up to the sum of the two (`storage.lmdb_used_bytes` counts the pages).
DATA_FILE_AHEAD_BYTES = 32 << 20
DATA_FILE_EXTEND_BYTES = 4 << 20
#: Id flushes kept in the id log (one value each, appended) before they are merged
#: into the id index in one go. Put straight into the index, a flush of a thousand
#: terminals' runs dirtied a thousand B-tree pages: a 17 ms commit every 8 batches of
#: 8,192 at a million cards. Merged 16 at a time, the same pages are written once.
IDS_LOG_FLUSHES_MAX = 16
#: A full id log is merged into the index in about this many slices of its sources,
#: one per batch after it filled: merged in one go, it stalled one batch for 250-500
#: ms at a million cards (and the commit after it for ~100 ms).
IDS_MERGE_SLICES = 64
_UNSET: Any = object()  # "no change staged" (None is a value: no merge in progress)
#: How often opening retries when a writer replaces the checkpoint file meanwhile.
LOAD_RETRIES_MAX = 5
#: What each durability mode guarantees. Modes that could corrupt the ledger on
#: power loss (LMDB without sync, or with write-map and async flushes) are refused.
DURABILITY_MODES = {
    "full": "every acknowledged batch survives a process crash and power loss (LMDB sync + metasync)",
    "nometasync": (
        "every acknowledged batch survives a process crash; after power loss or an OS crash the "
        "last acknowledged batch(es) may be missing, never half-present, and the ledger is never "
        "corrupted (LMDB sync without metasync: one fsync per commit instead of two)"
    ),
}
#: Checked journal batches kept for id lookups of resent ops (about 200 KB each at 8,192 ops).
DECODED_BATCHES_MAX = 256
#: How many times one batch is retried after growing a full map.
MAP_GROW_RETRIES_MAX = 8


@dataclass(frozen=True)
class AccountInfo:
    """One account's state, as `Ledger.account` reports it (amounts in fen)."""

    id: int
    kind: AccountKind
    balance_fen: int  # available: both purses of a card
    cash_fen: int
    subsidy_fen: int
    cap_fen: int
    category: int
    frozen: bool
    closed: bool
    cash_first: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    last_journal_seq: int


@dataclass
class VerifyReport:
    """What `Ledger.verify` found; `ok` is true when `problems` is empty."""

    problems: list[str] = field(default_factory=list)
    batches: int = 0
    records: int = 0
    accounts: int = 0

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def _locked(method):
    """Serialise a Ledger method: the engine is not thread-safe, and the core releases
    the GIL while it applies a batch."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self._pipeline is not None and self._pipeline.owns_current_thread():
            _refuse_in_pipeline_thread()
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


def _refuse_in_pipeline_thread() -> None:
    """A submit future's done-callback runs in the ledger's commit thread: calling the
    ledger from there would wait for that very thread (the batches in flight)."""
    raise LedgerError(
        "a submit future's done-callback runs in the ledger's commit thread and must not call the "
        "ledger: hand the result to another thread (e.g. loop.call_soon_threadsafe or a queue)"
    )


def open(  # noqa: A001 - the pinned public name
    path: str | os.PathLike[str],
    *,
    readonly: bool = False,
    default_cap_fen: int = DEFAULT_CASH_CAP_FEN,
    checkpoint_ops: int = CHECKPOINT_OPS_DEFAULT,
    engine: str | None = None,
    durability: str = "full",
) -> "Ledger":
    """Open (or create) the ledger in directory `path` and return a Ledger.

    readonly=True opens an existing ledger for queries only; it reads committed
    state while a writer runs and never waits for it. `default_cap_fen` is the cash
    purse cap of cards opened with limit_fen=0 (fixed when the ledger is created).
    `checkpoint_ops` is how many decided ops accumulate between checkpoints.
    `engine` picks the implementation ("cython" or "python"); default: IMPLEMENTATION.
    `durability` is "full" (default) or "nometasync": see DURABILITY_MODES.
    """
    return Ledger(
        path,
        readonly=readonly,
        default_cap_fen=default_cap_fen,
        checkpoint_ops=checkpoint_ops,
        engine=engine,
        durability=durability,
    )


class Ledger:
    """An open ledger. Use as a context manager, or call close()."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        default_cap_fen: int = DEFAULT_CASH_CAP_FEN,
        checkpoint_ops: int = CHECKPOINT_OPS_DEFAULT,
        engine: str | None = None,
        durability: str = "full",
    ) -> None:
        self._lock = threading.RLock()
        if durability not in DURABILITY_MODES:
            raise ValueError(
                f"durability must be one of {sorted(DURABILITY_MODES)}, got {durability!r}; "
                "modes that can corrupt the ledger on power loss (no sync, write-map) are not offered"
            )
        self.durability = durability
        self.path = os.fspath(path)
        self._engine_class = engine_class(engine)
        self.readonly = readonly
        if not 1 <= checkpoint_ops <= CHECKPOINT_OPS_MAX:
            raise ValueError(f"checkpoint_ops must be in 1..{CHECKPOINT_OPS_MAX}, got {checkpoint_ops}")
        self.checkpoint_ops = int(checkpoint_ops)
        #: Decisions held in memory before they are flushed to the id index.
        self.ids_flush_ops = min(IDS_FLUSH_OPS_DEFAULT, self.checkpoint_ops)
        #: How far past this host's clock a TAP's time_us may be; None: no limit.
        self.tap_time_ahead_max_us: int | None = TAP_TIME_AHEAD_MAX_US_DEFAULT
        #: Bytes a second a checkpoint file written beside the batches goes to disk at;
        #: None: as fast as it can (see CHECKPOINT_PACE_BYTES_PER_S_DEFAULT).
        self.checkpoint_pace_bytes_per_s: int | None = CHECKPOINT_PACE_BYTES_PER_S_DEFAULT
        self._ckpt_hurry = threading.Event()  # set: someone waits for the file, stop pacing
        self._pid = os.getpid()
        self._env: Any = None
        self._writer: ThreadPoolExecutor | None = None  # writes checkpoint files
        self._flush_encoder: ThreadPoolExecutor | None = None  # encodes id flushes beside the kernel
        self._file_job: tuple | None = None  # (journal_seq, last hash, future) in flight
        self._snapshot: tuple | None = None  # taken by the current txn, written after commit
        self._recorded_ckpt: int | None = None
        self._snap_buf: np.ndarray | None = None  # reused account snapshot buffer
        self._jny_buf: np.ndarray | None = None  # reused journey snapshot buffer
        self._pen_buf: np.ndarray | None = None  # reused holds snapshot buffer
        self._snap_seq = 0  # journal_seq of the last account snapshot taken
        self._ids_upto = 0
        self._journeys_prefaulted = 0  # journey store capacity already faulted in
        #: Id flushes stored in the id log but not merged into the index yet.
        self._id_logs: list[storage.IdLog] = []
        #: The id log as the transaction being committed leaves it (published after).
        self._id_logs_next: list[storage.IdLog] | None = None
        #: The merge of the id log into the index in progress: (ids_upto of its last
        #: flush, first source not merged yet), or None; and as the transaction being
        #: committed leaves it (_UNSET: unchanged).
        self._merging: tuple[int, int] | None = None
        self._merging_next: Any = _UNSET
        self._merge_bounds: tuple[int, np.ndarray] | None = None  # (ids_upto, slice bounds)
        #: (ids_upto, lo, hi, Future of the items) of the merge step the batch being
        #: applied will take, computed beside its kernel (`_merge_items_beside`).
        self._merge_ready: tuple | None = None
        #: The data file, opened for `_extend_data_file_beside` (None: not yet, or off).
        self._data_fd: int | None = None
        self._data_extend_off = readonly  # (set for good by a failed extension: a full disk)
        self._extension: Future[int] | None = None
        self._extender: ThreadPoolExecutor | None = None
        self._fare_versions: list = []  # (effective_from_us, FareSystem), oldest first
        self._decoded = _DecodedBatches()
        self._pipeline: CommitPipeline | None = None  # started by the first submit
        #: Set once a pipelined commit met another writer's batch: from then on every
        #: batch is applied synchronously (writers in several processes serialise).
        self._pipeline_off = False
        #: A snapshot is staged with a batch in flight (its file job not started yet).
        self._snapshot_staged = False
        #: The last error writing a checkpoint file in the background (None: none).
        self.checkpoint_error: OSError | None = None
        if readonly and not os.path.exists(os.path.join(self.path, "data.mdb")):
            raise FileNotFoundError(f"no ledger at {self.path!r}: open it once with readonly=False to create it")
        if not readonly:
            os.makedirs(self.path, exist_ok=True)
        try:
            self._env = _ENVS.acquire(self.path, readonly, self.durability)
            self._dbs = {name: self._env.open_db(name, create=not readonly) for name in storage.DB_NAMES}
        except lmdb.Error as e:
            if self._env is not None:
                _ENVS.release(self.path)
                self._env = None
            raise StorageError(f"cannot open ledger at {self.path!r}: {e}") from e
        try:
            try:
                self._init_meta(default_cap_fen)
                self._load()
            except (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.BadTxnError, lmdb.BadValsizeError,
                    lmdb.InvalidError, lmdb.VersionMismatchError) as e:
                # LMDB's own findings in a damaged data file: ours to name.
                raise CorruptionError(f"ledger at {self.path!r} is damaged: {type(e).__name__}: {e}") from e
            except lmdb.Error as e:
                raise StorageError(f"cannot open ledger at {self.path!r}: {type(e).__name__}: {e}") from e
        except BaseException:
            # A ledger that cannot be opened must not keep the environment open.
            _ENVS.release(self.path)
            self._env = None
            raise

    # ------------------------------------------------------------------ lifecycle

    def _init_meta(self, default_cap_fen: int) -> None:
        meta = self._dbs[b"meta"]
        with self._env.begin(write=not self.readonly) as txn:
            version = txn.get(b"format", db=meta)
            if version is None:
                if self.readonly:
                    raise CorruptionError(f"{self.path!r} is an LMDB environment but not a cardledger ledger")
                txn.put(b"format", storage.KEY.pack(storage.FORMAT_VERSION), db=meta)
                txn.put(b"default_cap_fen", storage.KEY.pack(int(default_cap_fen)), db=meta)
                version = storage.KEY.pack(storage.FORMAT_VERSION)
            if len(version) != storage.KEY.size:
                raise CorruptionError(f"ledger at {self.path!r}: its format marker is damaged")
            if storage.KEY.unpack(bytes(version))[0] != storage.FORMAT_VERSION:
                raise CorruptionError(
                    f"ledger format {storage.KEY.unpack(bytes(version))[0]}, this library reads {storage.FORMAT_VERSION}"
                )
            cap = txn.get(b"default_cap_fen", db=meta)
            if cap is None or len(cap) != storage.KEY.size:
                raise CorruptionError(f"ledger at {self.path!r}: its default cap is missing or damaged")
            self.default_cap_fen = storage.KEY.unpack(bytes(cap))[0]

    def _load(self, txn: Any = None) -> None:
        """(Re)build the engine: checkpoint file, id state, then replay of the journal.

        Without `txn`, a read transaction is used, and renewed if another process
        replaced the checkpoint file between our reading its name and opening it.
        Inside a write transaction that cannot happen: a file is complete before it is
        named, and only files older than the one named are ever deleted.
        """
        if txn is not None:
            return self._load_from(txn)
        for attempt in range(LOAD_RETRIES_MAX):
            with self._begin_read() as t:
                try:
                    return self._load_from(t)
                except _CheckpointFileGone:
                    if attempt + 1 == LOAD_RETRIES_MAX:
                        raise
        raise AssertionError("unreachable")

    def _load_from(self, txn: Any) -> None:
        state = self._dbs[b"state"]
        desc = storage.decode_checkpoint_desc(txn.get(b"checkpoint", db=state))
        ids_upto, sources = storage.decode_ids_state(lambda k: txn.get(k, db=state))
        engine = self._engine_class(self.default_cap_fen)
        if desc is None:
            accounts = np.zeros(0, dtype=ACCOUNT_DTYPE)
            pending = np.zeros(0, dtype=PENDING_DTYPE)
            journeys = np.zeros(0, dtype=JOURNEY_DTYPE)
            ckpt_seq, last_hash = 0, storage.GENESIS_HASH
        else:
            try:
                accounts, pending, journeys = storage.read_checkpoint_file(self.path, desc)
            except FileNotFoundError:
                raise _CheckpointFileGone(
                    f"checkpoint file {storage.checkpoint_file_name(desc.journal_seq)} named by the "
                    f"ledger is missing from {self.path!r}"
                ) from None
            ckpt_seq, last_hash = desc.journal_seq, desc.last_batch_hash
        if ckpt_seq > ids_upto:
            raise CorruptionError(f"checkpoint at {ckpt_seq} is newer than the id state at {ids_upto}")
        id_logs = storage.read_id_log(txn, state)
        if any(log.ids_upto > ids_upto for log in id_logs):
            raise CorruptionError(f"the id log reaches past the id state at {ids_upto}")
        merging = _checked_merge(storage.decode_id_merge(txn.get(storage.IDMERGE_KEY, db=state)), id_logs)
        engine.load_checkpoint(accounts, sources, pending, ckpt_seq)
        engine.load_journeys(journeys)
        self._use_stored_fares(txn, engine)
        self._engine = engine
        self._ckpt_seq, self._last_hash, self._ids_upto = ckpt_seq, last_hash, ids_upto
        self._id_logs, self._id_logs_next = id_logs, None
        self._merging, self._merging_next = merging, _UNSET
        self._snap_seq = ckpt_seq
        self._replay_from(txn, ckpt_seq)

    def _replay_from(self, txn: Any, after_seq: int) -> None:
        """Replay journal batches after `after_seq` into the engine, checking the chain."""
        for batch in self._iter_batches(txn, after_seq, self._last_hash):
            try:
                self._engine.replay(batch.records)
            except ValueError as e:
                raise CorruptionError(f"journal replay failed: {e}") from e
            self._last_hash = batch.hash
        if self.readonly and self._engine.recent_count > self.ids_flush_ops:
            # A reader never applies ops, so it has no use for the decisions window.
            self._engine.take_decisions()

    def _iter_batches(self, txn: Any, after_seq: int, prev_hash: bytes | None) -> Iterator[storage.Batch]:
        cur = txn.cursor(db=self._dbs[b"journal"])
        if not cur.set_range(storage.KEY.pack(after_seq + 1)):
            return
        expected_first = after_seq + 1
        for key, value in cur:
            batch = storage.decode_batch(key, value, prev_hash)
            if batch.first_seq != expected_first:
                raise CorruptionError(
                    f"journal batch {batch.first_seq}..{batch.last_seq} does not follow journal_seq {expected_first - 1}"
                )
            expected_first = batch.last_seq + 1
            prev_hash = batch.hash
            yield batch

    @_locked
    def close(self) -> None:
        """Close the ledger; further calls raise LedgerClosedError. Idempotent.

        A checkpoint file still being written is finished and recorded first.
        """
        if self._env is not None and self._pid == os.getpid():
            try:
                if self._pipeline is not None:
                    try:
                        self._settle()  # every batch handed over is stored (or failed) first
                    finally:
                        self._pipeline.stop()
                        self._pipeline = None
                if not self.readonly:
                    self._finish_checkpoint_file()
            except lmdb.Error as e:
                warnings.warn(f"cardledger: checkpoint not recorded at close ({e})", RuntimeWarning)
            finally:
                if self._writer is not None:
                    self._writer.shutdown(wait=True)
                    self._writer = None
                if self._flush_encoder is not None:
                    self._flush_encoder.shutdown(wait=True)
                    self._flush_encoder = None
                if self._extender is not None:
                    self._extender.shutdown(wait=True)
                    self._extender = None
                if self._data_fd is not None:
                    os.close(self._data_fd)
                    self._data_fd = None
        if self._env is not None:
            self._env = None
            self._engine = None
            if self._pid == os.getpid():
                _ENVS.release(self.path)

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            if self._env is not None and self._pid == os.getpid():
                self.close()
        except Exception:
            pass

    def _begin_read(self) -> Any:
        """A read transaction; if every reader slot is taken, slots of dead processes are
        reclaimed and it is tried once more."""
        try:
            return self._env.begin()
        except lmdb.ReadersFullError:
            self._env.reader_check()
            try:
                return self._env.begin()
            except lmdb.ReadersFullError as e:
                raise StorageError(
                    f"all {MAX_READERS} LMDB reader slots of {self.path!r} are in use by live processes: "
                    "close idle readers"
                ) from e

    def _check_usable(self) -> None:
        """Raise unless the ledger is open in this process; then wait for batches in flight."""
        self._check_open()
        if self._pipeline is not None:
            self._settle()

    def _check_open(self) -> None:
        if self._env is None:
            raise LedgerClosedError(f"ledger {self.path!r} is closed: open it again with cardledger.open(path)")
        if os.getpid() != self._pid:
            raise LedgerError(
                "this Ledger was opened in another process (before fork()); open the ledger again in this process"
            )

    @property
    def implementation(self) -> str:
        """Which engine runs this ledger: "cython" or "python"."""
        return str(self._engine_class.implementation)

    @property
    @_locked
    def journal_seq(self) -> int:
        """journal_seq of the last decided op."""
        self._check_usable()
        self._refresh()
        return int(self._engine.journal_seq)

    # ------------------------------------------------------------------ writes

    @_locked
    def apply(self, ops: np.ndarray) -> np.ndarray:
        """Apply a batch of ops (dtype OP_DTYPE); return one RESULT_DTYPE record per op.

        The batch is one LMDB write transaction; this returns after its durable
        commit. Operating errors are result codes; misuse raises (SchemaError for a
        malformed batch, LedgerReadOnlyError, LedgerClosedError); a storage failure
        raises StorageError and applies nothing.
        """
        self._check_usable()
        if self.readonly:
            raise LedgerReadOnlyError(f"ledger {self.path!r} was opened readonly: open it with readonly=False to apply ops")
        ops = _check_batch(ops)
        if len(ops) == 0:
            return np.zeros(0, dtype=RESULT_DTYPE)
        return self._apply_retrying(ops)

    def _apply_retrying(self, ops: np.ndarray) -> np.ndarray:
        """Apply one batch synchronously: grow a full map and retry; on any failure
        reload the engine from disk, so memory never runs ahead of what is stored."""
        for attempt in range(MAP_GROW_RETRIES_MAX + 1):
            try:
                return self._apply_once(ops)
            except lmdb.MapFullError:
                self._reload_after_failure()
                if attempt == MAP_GROW_RETRIES_MAX:
                    raise StorageError("LMDB map still full after growing it: is the disk full?")
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
            except lmdb.Error as e:
                self._reload_after_failure()
                raise StorageError(f"batch not applied: {type(e).__name__}: {e}") from e
            except BaseException:
                self._reload_after_failure()
                raise
        raise AssertionError("unreachable")

    def submit(self, ops: np.ndarray) -> Future[np.ndarray]:
        """Apply a batch like `apply`, but return at once a Future of its results.

        The batch runs through the engine now, in call order; its durable commit
        happens in the ledger's commit thread while the caller goes on (for example
        with the next batch), and the future resolves only once that commit is
        durable. So `submit(a); submit(b)` applies a then b exactly as two `apply`
        calls would, with b's kernel overlapping a's commit: see `pipeline.py`.
        At most PIPELINE_BATCHES_MAX batches are in flight; one more waits.

        Misuse raises here (SchemaError, LedgerReadOnlyError, LedgerClosedError); a
        storage failure is the future's exception (StorageError: the batch is not
        applied). The ops are copied, so the caller may reuse its array at once.
        Every other method of the ledger first waits for the batches in flight.
        The future's done-callbacks run in the ledger's commit thread: they must not
        call the ledger (LedgerError), only hand the result on.
        """
        return self._submit(ops, wait=True)  # type: ignore[return-value]

    def _try_submit(self, ops: np.ndarray) -> Future[np.ndarray] | None:
        """`submit`, or None at once (nothing done) where `submit` would wait: another
        thread holds the ledger, PIPELINE_BATCHES_MAX batches are in flight, the batch
        cannot be pipelined, or it would take a snapshot (a copy of every account). For
        an event loop, which must not block (the Committer)."""
        return self._submit(ops, wait=False)

    def _submit(self, ops: np.ndarray, wait: bool) -> Future[np.ndarray] | None:
        self._check_open()
        if self.readonly:
            raise LedgerReadOnlyError(f"ledger {self.path!r} was opened readonly: open it with readonly=False to apply ops")
        ops = _check_batch(ops)
        if self._pipeline is not None and self._pipeline.owns_current_thread():
            _refuse_in_pipeline_thread()
        if not wait:
            if not self._lock.acquire(blocking=False):
                return None
            try:
                if not self._may_submit_now(ops):
                    return None
                return self._submit(ops, wait=True)  # (the lock is re-entrant)
            finally:
                self._lock.release()
        future: Future = Future()
        future.set_running_or_notify_cancel()  # a batch handed over cannot be taken back
        if len(ops) == 0:
            future.set_result(np.zeros(0, dtype=RESULT_DTYPE))
            return future
        # Kept to re-apply the batch should an earlier commit fail. Copied as raw bytes
        # (a structured copy goes field by field) and first, so the passes below read
        # it from cache.
        ops = ops.view(np.uint8).copy().view(OP_DTYPE)
        taps = ops["kind"] == _TAP
        with self._lock:
            self._check_open()
            if self._pipeline is not None and self._pipeline.broken:
                self._settle()
            if not self._can_pipeline(taps):
                self._settle()
                try:
                    future.set_result(self._apply_retrying(ops))
                except BaseException as e:
                    future.set_exception(e)
                return future
            if self._pipeline is None:
                self._pipeline = CommitPipeline(self._encode_staged, self._commit_pipelined, self._repair_soon)
            expected_seq, ids_upto, fare_count = int(self._engine.journal_seq), self._ids_upto, len(self._fare_versions)
            try:
                staged = self._run_kernel(None, ops, taps)
            except Exception:
                # The engine may hold part of this batch: wait for the batches before
                # it to be stored, then rebuild the engine from disk.
                broke_meanwhile = self._pipeline.broken
                self._settle()
                if not broke_meanwhile:
                    self._reload_after_failure()
                    raise
                # An earlier batch's commit failed while this kernel ran: it ran on
                # state that never became durable (a lookup may even have been sent to
                # a journal record that will never exist). The failed batches were
                # re-applied by _settle; this one is applied the same way, on the
                # reloaded state, where a genuine error raises again.
                try:
                    future.set_result(self._apply_retrying(ops))
                except BaseException as e:
                    future.set_exception(e)
                return future
            except BaseException:
                self._settle()
                self._reload_after_failure()
                raise
            staged.expected_seq, staged.ids_upto, staged.fare_count = expected_seq, ids_upto, fare_count
            staged.future = future
            if staged.journal is not None and self._snapshot_due():
                # The snapshot is of the engine as this batch leaves it; the commit
                # thread hands it to the checkpoint writer once the batch is stored.
                staged.flush = self._prepare_flush()
                staged.snapshot = self._export_snapshot()
                self._snapshot_staged = True
            elif staged.journal is not None and self._flush_due():
                staged.flush = self._prepare_flush()
            self._pipeline.push(staged)
        return future

    def _may_submit_now(self, ops: np.ndarray) -> bool:
        """With the lock held: whether `submit` of these ops would return without
        waiting for a commit or copying a snapshot."""
        if self._env is None or self._pipeline_off:
            return False
        pipeline = self._pipeline
        if pipeline is not None and (pipeline.broken or not pipeline.has_room):
            return False
        if not self._fare_versions and bool((ops["kind"] == _TAP).any()):
            return False  # the default fares go in the batch's own transaction
        # A snapshot is due once the journal passes checkpoint_ops (and the previous one
        # is written): judged before the kernel, assuming every op is decided anew.
        passes = int(self._engine.journal_seq) + len(ops) - self._snap_seq >= self.checkpoint_ops
        return not (passes and self._file_job is None and not self._snapshot_staged)

    def _can_pipeline(self, taps: np.ndarray) -> bool:
        """Whether a batch (`taps`: which of its ops are TAPs) may be staged ahead of the
        disk; else it is applied synchronously."""
        if self._pipeline_off:
            return False
        return bool(self._fare_versions) or not bool(taps.any())  # else the default fares go in its txn

    def _commit_pipelined(self, staged: StagedBatch) -> None:
        """In the commit thread: store one staged batch in its own write transaction.

        While batches are in flight this thread also owns the checkpoint files: it
        names a finished one in its transaction and starts writing a staged snapshot
        once the batch it was taken after is stored (every other path first waits
        for this thread)."""
        self._recorded_ckpt = None
        self._id_logs_next, self._merging_next = None, _UNSET
        with self._env.begin(write=True) as txn:
            self._check_staged_base(txn, staged)
            self._record_checkpoint_file(txn, wait=False)
            self._store_staged(txn, staged)
        self._decoded.add_stored(staged)
        self._publish_id_log()
        self._adopt_recorded_checkpoint()
        if staged.snapshot is not None:
            jseq, accounts, pending, journeys = staged.snapshot
            self._snapshot = (jseq, staged.hash, accounts, pending, journeys)
            self._after_commit()
            self._snapshot_staged = False

    def _check_staged_base(self, txn: Any, staged: StagedBatch) -> None:
        """Raise _StagedOnStaleState unless the stored ledger is what the staged batch
        was computed on: the same journal head, id state and fare versions."""
        cur = txn.cursor(db=self._dbs[b"journal"])
        head = storage.KEY.unpack(cur.key())[0] if cur.last() else 0
        ids_state = txn.get(b"ids_state", db=self._dbs[b"state"])
        ids_upto = storage.IDS_STATE.unpack(bytes(ids_state))[1] if ids_state is not None else 0
        fare_count = txn.stat(self._dbs[b"fares"])["entries"]
        if (head, ids_upto, fare_count) != (staged.expected_seq, staged.ids_upto, staged.fare_count):
            raise _StagedOnStaleState(
                f"another writer changed the ledger: journal head {head}, staged on {staged.expected_seq}"
            )

    def _repair_soon(self) -> None:
        """In the commit thread, after a failed commit: have another thread re-apply the
        batches set aside. (This thread cannot take the ledger lock: a submitter may
        hold it while it waits for this thread.)"""
        threading.Thread(target=self._repair, name="cardledger-repair", daemon=True).start()

    def _repair(self) -> None:
        try:
            with self._lock:
                if self._env is not None and self._pid == os.getpid():
                    self._settle()
        except BaseException:  # pragma: no cover - every future already carries its error
            pass

    def _settle(self) -> None:
        """Wait for the batches in flight to be stored; re-apply, synchronously and in
        order, any set aside after a failed commit, resolving their futures."""
        pipeline = self._pipeline
        if pipeline is None or (pipeline.idle and not pipeline.broken):
            return
        if pipeline.owns_current_thread():
            _refuse_in_pipeline_thread()
        with self._lock:
            failed = pipeline.drain()
            if failed:
                self._reapply(failed)

    def _reapply(self, staged: list[StagedBatch]) -> None:
        """Rebuild the engine from disk and apply these staged batches again,
        synchronously and in order, resolving their futures (under the lock)."""
        if any(isinstance(item.error, _StagedOnStaleState) for item in staged):
            self._pipeline_off = True
        self._snapshot_staged = False
        try:
            self._reload_after_failure()
        except BaseException as e:
            for item in staged:
                assert item.future is not None
                item.future.set_exception(e)
            raise
        for item in staged:
            assert item.future is not None
            try:
                results = self._apply_retrying(item.ops)
            except BaseException as e:
                item.future.set_exception(e)
            else:
                item.future.set_result(results)

    def _after_commit(self) -> None:
        """Start writing the snapshot taken by the transaction that just committed."""
        snap, self._snapshot = self._snapshot, None
        if snap is None:
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardledger-checkpoint")
        jseq, last_hash, accounts, pending, journeys = snap
        self._ckpt_hurry.clear()  # (the previous file is done: nobody waits any more)
        self._file_job = (jseq, last_hash, self._writer.submit(
            self._write_checkpoint_job, self._engine, jseq, last_hash, accounts, pending, journeys
        ))

    def _write_checkpoint_job(self, engine: Any, jseq: int, last_hash: bytes, accounts: np.ndarray,
                              pending: np.ndarray, journeys: np.ndarray) -> bytes:
        """In the checkpoint thread: complete the snapshot `engine` began, write the
        file, then ready the next snapshot's buffers.

        A fresh buffer's first fill page-faults (about half a second for a million
        cards' journeys here), and it would land on the batch that takes the next
        snapshot. So buffers are grown and touched here, off the batch path; the batch
        thread only takes a snapshot once this job is done, so nothing races on them.
        """
        engine.snapshot_complete()  # copies the rows no batch has copied yet, without the GIL
        engine.clear_unused_legs(journeys)  # left to this thread by _export_snapshot
        digest = storage.write_checkpoint_file(self.path, jseq, last_hash, accounts, pending, journeys,
                                               pace=self._checkpoint_pacer())
        n_acc, n_jny = len(accounts), len(journeys)
        self._snap_buf = _warm_buffer(self._snap_buf, n_acc + n_acc // 4 + 1024, ACCOUNT_DTYPE)
        # Once cards tap, their journeys soon number nearly the cards (never more): size
        # for that at once rather than grow again on the batch path (a cold 336 MB at a
        # million cards cost the snapshot 350 ms), as soon as taps are expected: a fare
        # system is installed.
        expect_taps = n_jny > 0 or bool(self._fare_versions)
        self._jny_buf = _warm_buffer(self._jny_buf, (max(n_jny, n_acc) if expect_taps else 0) + 1024, journeys.dtype)
        # Holds come and go (a metro entry holds its fare until the exit): room for
        # twice today's, or for one card in four once cards tap (the engine's own room).
        n_pen = len(pending)
        self._pen_buf = _warm_buffer(self._pen_buf, max(2 * n_pen, n_acc // 4 if expect_taps else 0) + 1024,
                                     pending.dtype)
        return digest

    def _checkpoint_pacer(self) -> Callable[[int], None] | None:
        """For the checkpoint thread: a `pace(bytes_written)` that sleeps while the file
        runs ahead of `checkpoint_pace_bytes_per_s`, and no longer once someone waits
        for the file (`_ckpt_hurry`)."""
        rate = self.checkpoint_pace_bytes_per_s
        if not rate:
            return None
        start, hurry = time.monotonic(), self._ckpt_hurry

        def pace(written: int) -> None:
            delay = start + written / rate - time.monotonic()
            if delay > 0 and not hurry.is_set():
                hurry.wait(delay)  # returns at once when someone starts waiting

        return pace

    def _record_checkpoint_file(self, txn: Any, wait: bool) -> None:
        """Name a finished checkpoint file in LMDB (inside the caller's write txn)."""
        job = self._file_job
        if job is None or (not wait and not job[2].done()):
            return
        if wait:
            self._ckpt_hurry.set()
        self._file_job = None
        jseq, last_hash, future = job
        try:
            digest = future.result()
        except OSError as e:
            # The journal still holds everything: opening replays a longer tail.
            self.checkpoint_error = e
            warnings.warn(f"cardledger: checkpoint file not written ({e}); the journal is intact", RuntimeWarning)
            return
        stored = storage.decode_checkpoint_desc(txn.get(b"checkpoint", db=self._dbs[b"state"]))
        if stored is not None and stored.journal_seq >= jseq:
            return  # another writer named a newer checkpoint meanwhile: never go back
        if not os.path.exists(os.path.join(self.path, storage.checkpoint_file_name(jseq))):
            return  # superseded and removed by another writer
        txn.put(b"checkpoint", storage.encode_checkpoint_desc(jseq, last_hash, digest), db=self._dbs[b"state"])
        self._recorded_ckpt = jseq

    def _reload_after_failure(self) -> None:
        # The engine may hold a batch that never committed: rebuild it from disk.
        try:
            self._load()
        except lmdb.Error as e:  # pragma: no cover - disk gone entirely
            self._engine = self._engine_class(self.default_cap_fen)
            raise StorageError(f"cannot reload the ledger after a failed batch: {e}") from e

    def _apply_once(self, ops: np.ndarray) -> np.ndarray:
        self._snapshot = None
        self._recorded_ckpt = None
        self._id_logs_next, self._merging_next = None, _UNSET
        try:
            with self._env.begin(write=True) as txn:
                self._catch_up(txn)
                self._record_checkpoint_file(txn, wait=False)
                # An id flush the last batch made due is taken here, before this batch's
                # kernel, and encoded in a helper thread while the kernel runs (without
                # the GIL); it is stored in this transaction. Meanwhile this batch finds
                # the ids it took in the flush itself (`_find_in_flushes`).
                early = self._start_flush() if self._flush_due() else None
                staged = self._run_kernel(txn, ops, flushing=early, merge_beside=True)
                self._join_extension()  # (before this transaction writes a page)
                self._write_staged(txn, staged)
                if early is not None:
                    assert early.flush_rows is not None  # (encoded beside the kernel)
                    self._put_flush(txn, early.flush_rows.result())
                if staged.journal is not None and self._snapshot_due():
                    self._take_snapshot(txn)
        finally:
            self._merge_ready = None  # (unused when the batch wrote no journal, or failed)
            self._join_extension()
        self._committed()
        self._decoded.add_stored(staged)
        return staged.results

    def _run_kernel(self, txn: Any, ops: np.ndarray, taps: np.ndarray | None = None,
                    flushing: StagedBatch | None = None, merge_beside: bool = False) -> StagedBatch:
        """Run a batch through the engine (nothing encoded or stored yet).

        `txn` is the batch's write transaction, or None in a pipelined submit: then
        the id index is read in a read transaction of its own, and ids whose flush is
        still in flight are found in that flush (see `_read_prior`). `flushing`: an id
        flush taken for this transaction (`_start_flush`), searched the same way.
        `merge_beside`: compute the items of this transaction's id log merge step
        while the kernel runs (`_merge_items_beside`).
        """
        tap_time_us = -1
        if taps is None:
            taps = ops["kind"] == _TAP
        has_taps = bool(taps.any())
        if has_taps and not self._fare_versions:
            self._install_default_fares(txn)
        if has_taps:
            ahead = self.tap_time_ahead_max_us
            self._engine.set_tap_horizon(TAP_HORIZON_NONE if ahead is None else time.time_ns() // 1000 + ahead)
        prior, has_prior = self._lookup_prior(txn, ops, flushing)
        if flushing is not None:
            # Encoded now, while the kernel runs without the GIL: started before the
            # id lookups (Python), the encoding thread and this one took turns at it.
            self._encode_beside(flushing)
        if merge_beside:
            self._merge_items_beside()
            self._extend_data_file_beside()
        results, journal = self._engine.apply(ops, prior, has_prior)
        packed = marks = None
        if len(journal):
            packed = self._engine.last_batch_packed()
            marks = self._engine.last_batch_marks(storage.RECORD_MARK_STRIDE)
        if has_taps:
            charged = taps & (results["code"] == Result.OK)
            if charged.any():
                tap_time_us = int(ops["time_us"][charged].max())
            self._prefault_journeys_if_grown()
        staged = StagedBatch(ops, results, journal if len(journal) else None, packed, tap_time_us)
        staged.marks = marks
        return staged

    def _prefault_journeys_if_grown(self) -> None:
        """After the journey store grew (at once, to the number of cards): fault its new
        pages in from a thread beside the batches, not one first tap at a time."""
        capacity = self._engine.journey_capacity()
        if capacity > self._journeys_prefaulted:
            self._journeys_prefaulted = capacity
            threading.Thread(target=self._engine.prefault_journeys, name="cardledger-prefault", daemon=True).start()

    def _write_staged(self, txn: Any, staged: StagedBatch) -> None:
        """Encode a staged batch and store it in `txn` (see the two steps below)."""
        self._encode_staged(staged)
        self._store_staged(txn, staged)

    def _encode_staged(self, staged: StagedBatch) -> None:
        """Encode a staged batch: its journal batch, chained to the previous one, and
        the rows of an id flush prepared with it.

        In a pipelined submit this runs in the encoder thread, which then owns the hash
        chain (`_last_hash`); every other path first waits for the pipeline."""
        journal = staged.journal
        if journal is not None:
            staged.value, staged.hash = storage.encode_batch(journal, self._last_hash, time.time_ns() // 1000,
                                                             body=staged.packed)
            staged.key = storage.KEY.pack(int(journal[-1]["journal_seq"]))
            self._last_hash = staged.hash
        if staged.flush is not None:
            staged.flush_rows = self._encode_flush(staged.flush)

    def _store_staged(self, txn: Any, staged: StagedBatch) -> None:
        """Store an encoded staged batch in `txn`: the journal batch, the latest tap
        time, the id flush."""
        if staged.tap_time_us >= 0:
            self._note_tap_time(txn, staged.tap_time_us)
        if staged.value is not None and not txn.put(staged.key, staged.value, db=self._dbs[b"journal"], append=True):
            raise CorruptionError("journal key out of order: another writer raced this one")
        if staged.value is not None:
            # Only with a journal batch: a writer in another process notices a merge step
            # by the journal head moving (`_catch_up`), as it notices a flush.
            self._merge_step(txn)
        if staged.flush_rows is not None:
            self._put_flush(txn, staged.flush_rows)

    def _snapshot_due(self) -> bool:
        """Whether the batch just run must take a snapshot (which also flushes the ids):
        never while the previous one is staged or still being written (its buffers are
        reused)."""
        return (self._engine.journal_seq - self._snap_seq >= self.checkpoint_ops and self._file_job is None
                and not self._snapshot_staged)

    def _flush_due(self) -> bool:
        """Whether the decisions window is due for an id flush: checked after a batch's
        kernel in a pipelined submit (the flush goes with that batch), and before the
        kernel in `apply` (the flush goes with the batch about to run)."""
        return self._engine.recent_count >= self.ids_flush_ops

    def _start_flush(self) -> StagedBatch:
        """Take the decisions out of the engine's window now (`_prepare_flush`): a
        stand-in staged batch whose `flush` the batch's id lookups search, and whose
        `flush_rows` becomes the future of the encoded rows once `_run_kernel` starts
        encoding them beside the kernel (`_encode_beside`; `_put_flush` them in the
        same transaction). Encoding (the id runs, the sources array, their SHA-256) took 3-4
        ms of a flushing batch of the city."""
        taken = StagedBatch(None, None, None, None, -1)
        taken.flush = self._prepare_flush()
        return taken

    def _encode_beside(self, taken: StagedBatch) -> None:
        """Start encoding a flush taken by `_start_flush` in the id-flush thread."""
        taken.flush_rows = self._beside(self._encode_flush, taken.flush)  # type: ignore[assignment]

    def _merge_items_beside(self) -> None:
        """Start computing, in the id-flush thread, the id index items of the merge
        step this transaction will take (`_merge_step` uses them if its slice is this
        one). Building them (one Python bytes pair per run) took ~1.3 ms of each
        merging batch of the city, half of its batches; beside the kernel, it is free.
        The slice is known before the kernel: nothing this batch does moves the merge
        until its merge step."""
        merging = self._merging_now()
        if merging is None:
            return
        upto, lo = merging
        flushes = [lg for lg in self._logs_now() if lg.ids_upto <= upto]
        hi = self._merge_bound(upto, flushes, lo)
        self._merge_ready = (upto, lo, hi, self._beside(storage.merged_index_items, flushes, lo, hi))

    def _extend_data_file_beside(self) -> None:
        """If the data file runs less than DATA_FILE_AHEAD_BYTES past LMDB's last page,
        start appending DATA_FILE_EXTEND_BYTES of zeros to it in a thread of its own
        (its fdatasync waits on the disk, not the CPU), while the kernel runs: this
        transaction holds LMDB's write lock and writes no page before
        `_join_extension`. Best effort: a failure (a full disk) turns it off."""
        if self._data_extend_off:
            return
        try:
            if self._data_fd is None:
                self._data_fd = os.open(os.path.join(self.path, "data.mdb"), os.O_WRONLY | os.O_CLOEXEC)
            # (the file's own size: another Ledger of this process may have extended it)
            if os.fstat(self._data_fd).st_size - storage.env_used_bytes(self._env) >= DATA_FILE_AHEAD_BYTES:
                return
        except OSError:
            self._data_extend_off = True
            return
        if self._extender is None:
            self._extender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardledger-extend")
        limit = self._env.info()["map_size"]
        self._extension = self._extender.submit(storage.zero_extend, self._data_fd, DATA_FILE_EXTEND_BYTES, limit)

    def _join_extension(self) -> None:
        """Wait for the data file extension started beside the kernel, if any."""
        extension, self._extension = self._extension, None
        if extension is None:
            return
        try:
            extension.result()
        except OSError:
            self._data_extend_off = True

    def _beside(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run fn(*args) in the id-flush thread (one, so its jobs run in order)."""
        if self._flush_encoder is None:
            self._flush_encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardledger-idflush")
        return self._flush_encoder.submit(fn, *args)

    def _install_default_fares(self, txn: Any) -> None:
        """Before the first batch with taps on a ledger without fares: Harbin from 0."""
        from .fares import FareSystem

        self._put_fares(txn, FareSystem.harbin(), 0)

    def _note_tap_time(self, txn: Any, latest_us: int) -> None:
        """Remember the latest time of a tap that rated a fare (install_fares checks it)."""
        meta = self._dbs[b"meta"]
        if latest_us > fare_store.read_max_tap_time(txn, meta):
            txn.put(fare_store.MAX_TAP_TIME_KEY, fare_store.MAX_TAP_TIME.pack(latest_us), db=meta)

    def _put_fares(self, txn: Any, system: Any, effective_from_us: int) -> None:
        db = self._dbs[b"fares"]
        if not txn.put(fare_store.VERSION_KEY.pack(effective_from_us), system.to_bytes(), db=db, overwrite=False):
            raise ValueError(f"a fare system is already installed effective from {effective_from_us}")
        self._use_stored_fares(txn)

    @_locked
    def install_fares(self, system: Any, effective_from_us: int) -> None:
        """Install a fare system (a `cardledger.fares.FareSystem`) in force from `effective_from_us`.

        Taps are rated by the version in force at their time_us. Versions are only
        appended: `effective_from_us` must be later than every installed version's
        and every tap already applied (so no posted fare is ever re-rated). Route
        and stop indexes stay stable: ids the previous version knew keep theirs, so
        take a TAP op's indexes from `fare_system(time_us)`, not from the object
        passed here (whose own indexes ignore earlier versions).
        Without any installed version, the first batch with a TAP installs the
        packaged Harbin system effective from 0.
        """
        from .fares import FareSystem

        self._check_usable()
        if self.readonly:
            raise LedgerReadOnlyError("a readonly ledger cannot install fare systems")
        if not isinstance(system, FareSystem):
            raise TypeError(f"install_fares needs a cardledger.fares.FareSystem, got {type(system).__name__}")
        if not system.files:
            raise ValueError(
                "this FareSystem has no source files to store: build it with FareSystem.from_gtfs(path)"
            )
        if not 0 <= effective_from_us < 1 << 63:
            raise ValueError(f"effective_from_us must be in [0, 2^63), got {effective_from_us}")
        try:
            with self._env.begin(write=True) as txn:
                self._catch_up(txn)
                if self._fare_versions and effective_from_us <= self._fare_versions[-1][0]:
                    raise ValueError(
                        f"effective_from_us {effective_from_us} is not after the latest installed version "
                        f"({self._fare_versions[-1][0]}): versions are only appended"
                    )
                latest = fare_store.read_max_tap_time(txn, self._dbs[b"meta"])
                if effective_from_us <= latest:
                    raise ValueError(
                        f"effective_from_us {effective_from_us} is not after the latest tap applied "
                        f"({latest}): installing it would re-rate posted fares"
                    )
                prev = self._fare_versions[-1][1] if self._fare_versions else None
                # What is stored is the system's source files: the system rebuilt from
                # them must be the one given (a config passed as an object, not a file,
                # would be lost), with indexes stable after the previous version's.
                stored = FareSystem.from_bytes(system.to_bytes(), previous=prev)
                if stored.config != system.config or stored.feed != system.feed:
                    raise ValueError(
                        "this FareSystem's source files do not rebuild it (was its config passed "
                        "as an object?): build it with FareSystem.from_gtfs(path, config=<path to fares.toml>)"
                    )
                self._put_fares(txn, stored, int(effective_from_us))
        except lmdb.Error as e:
            self._reload_after_failure()
            raise StorageError(f"fare system not installed: {e}") from e
        except BaseException:
            self._reload_after_failure()
            raise

    @_locked
    def fare_system(self, time_us: int | None = None) -> Any:
        """The FareSystem in force at `time_us` (default: the latest installed).

        Gateways use it to turn GTFS route and stop ids into a TAP op's indexes
        (`route_index`, `stop_index`). Raises LookupError if none is in force.
        """
        self._check_usable()
        self._refresh()
        self._refresh_fares()
        chosen = None
        for start, system in self._fare_versions:
            if time_us is None or start <= time_us:
                chosen = system
        if chosen is None:
            raise LookupError("no fare system is in force at that time: install one with install_fares")
        return chosen

    @_locked
    def denylist(self) -> np.ndarray:
        """Card ids that validators must refuse, sorted: frozen, closed, or unable to pay.

        A card cannot pay when its balance (available plus what its open metro
        entry holds, so a card mid-ride is not refused at the exit gate) is at or
        below minus the largest negative balance any product of the latest fare
        system allows (with no allowance configured: at or below zero). Offline
        validators load this list; an online gate checks the same thing.
        """
        self._check_usable()
        self._refresh()
        self._refresh_fares()
        accounts = self._engine.export_checkpoint()[0]
        cards = accounts[accounts["kind"] == AccountKind.CARD]
        allowance = 0
        if self._fare_versions:
            tt = fare_store.tap_tables(self._fare_versions)[-1]
            if len(tt.product_allowance_fen):
                allowance = int(tt.product_allowance_fen.max())
        avail = cards["cash_fen"] + cards["subsidy_fen"] + cards["debits_pending"]
        blocked = ((cards["flags"] & (AccountFlags.FROZEN | AccountFlags.CLOSED)) != 0) | (avail <= -allowance)
        return np.sort(cards["id"][blocked])

    @_locked
    def overdue_entries(self, time_us: int) -> np.ndarray:
        """Card ids whose open metro (gated) entry has timed out at `time_us`, sorted:
        the cards a SWEEP tap at that instant would charge the incomplete charge.

        An open entry is settled at the card's next ENTRY, at its next EXIT after the
        network's timeout, or by a SWEEP; a BOARD tap, or a tap at another operator's
        gate, leaves it open (a journal record names one card and one operator, and the
        incomplete charge is owed to the entry's operator). So a gateway sweeps, e.g.
        nightly: one SWEEP op per card listed, with ids of its own and this `time_us`.
        Frozen and closed cards are left out: a SWEEP of theirs would be refused (a
        REPLACE voids the old card's holds; its open entry goes with them).
        """
        self._check_usable()
        if type(time_us) is not int and not isinstance(time_us, np.integer):
            raise TypeError(f"time_us must be an int (µs since the epoch), got {type(time_us).__name__}")
        time_us = int(time_us)
        self._refresh()
        self._refresh_fares()
        none = np.zeros(0, dtype=np.uint64)
        if not self._fare_versions:
            return none
        journeys = self._engine.export_journeys()
        journeys = journeys[journeys["entry_version"] >= 0]
        if not len(journeys):
            return none
        accounts = self._engine.export_checkpoint()[0]
        blocked = accounts["id"][(accounts["flags"] & (AccountFlags.FROZEN | AccountFlags.CLOSED)) != 0]
        journeys = journeys[~np.isin(journeys["account_id"], blocked)]
        tables = fare_store.tap_tables(self._fare_versions)
        overdue = np.zeros(len(journeys), dtype=bool)
        for version in np.unique(journeys["entry_version"]).tolist():
            tt = tables[version]
            rows = np.flatnonzero(journeys["entry_version"] == version)
            net = tt.fares.route_network[journeys["entry_route"][rows]]
            gated = net >= 0  # (an entry is always on a gated network's route)
            rows, net = rows[gated], net[gated]
            # As the engines compare (time - entry > timeout), in Python ints: no overflow.
            ages = [time_us - int(t) for t in journeys["entry_time_us"][rows].tolist()]
            limits = tt.gate_timeout_us[net].tolist()
            overdue[rows] = [age > limit for age, limit in zip(ages, limits)]
        return np.sort(journeys["account_id"][overdue].astype(np.uint64))

    def _refresh_fares(self) -> None:
        """Pick up fare versions another process installed (writers refresh only on apply)."""
        with self._begin_read() as txn:
            self._reload_fares_if_changed(txn)

    def _reload_fares_if_changed(self, txn: Any) -> None:
        """Reload the fare versions when the stored ones are not those in memory (append-only)."""
        if txn.stat(self._dbs[b"fares"])["entries"] != len(self._fare_versions):
            self._use_stored_fares(txn)

    def _use_stored_fares(self, txn: Any, engine: Any = None) -> None:
        """Load every stored fare version and give them to the engine."""
        self._fare_versions = fare_store.load_versions(txn, self._dbs[b"fares"])
        (engine if engine is not None else self._engine).set_fare_versions(fare_store.tap_tables(self._fare_versions))

    def _committed(self) -> None:
        self._publish_id_log()
        self._adopt_recorded_checkpoint()
        self._after_commit()

    def _publish_id_log(self) -> None:
        """After a commit that wrote the id log: lookups use it from now on. (A new
        list, assigned once: a lookup in another thread holds the old one or this.)"""
        if self._id_logs_next is not None:
            self._id_logs, self._id_logs_next = self._id_logs_next, None
        if self._merging_next is not _UNSET:
            self._merging, self._merging_next = self._merging_next, _UNSET

    def _adopt_recorded_checkpoint(self) -> None:
        """After a commit that named a checkpoint file: it is ours now; older ones go."""
        if self._recorded_ckpt is not None:
            self._ckpt_seq, self._recorded_ckpt = self._recorded_ckpt, None
            storage.remove_old_checkpoint_files(self.path, self._ckpt_seq)

    def _catch_up(self, txn: Any) -> None:
        """Bring the engine up to the stored journal (another process may have written)."""
        self._reload_fares_if_changed(txn)
        cur = txn.cursor(db=self._dbs[b"journal"])
        if not cur.last():
            if self._engine.journal_seq != 0:
                raise CorruptionError("the journal is empty but this ledger had applied ops")
            return
        head = storage.KEY.unpack(cur.key())[0]
        if head == self._engine.journal_seq:
            return
        if head < self._engine.journal_seq:
            raise CorruptionError(f"the stored journal ends at {head}, before this ledger's {self._engine.journal_seq}")
        if not self.readonly:
            ids_state = txn.get(b"ids_state", db=self._dbs[b"state"])
            stored_upto = storage.IDS_STATE.unpack(bytes(ids_state))[1] if ids_state is not None else 0
            if stored_upto != self._ids_upto:
                # Another writer took a snapshot: its id state replaces ours.
                self._load(txn)
                return
            state = self._dbs[b"state"]
            merging = storage.decode_id_merge(txn.get(storage.IDMERGE_KEY, db=state))
            if merging != self._merging:
                # Another writer merged slices of the id log: the log and the merge as stored.
                logs = storage.read_id_log(txn, state)
                self._merging, self._id_logs = _checked_merge(merging, logs), logs
        self._replay_from(txn, self._engine.journal_seq)

    def _lookup_prior(self, txn: Any, ops: np.ndarray,
                      flushing: StagedBatch | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The stored decisions of ops whose ids the engine cannot decide from memory.

        `txn` is the batch's write transaction, or None to read in a transaction of
        its own (a pipelined submit); `flushing` holds an id flush taken for `txn` and
        not stored yet."""
        cand = self._engine.candidates(ops)
        if not cand.any():  # the usual case: every id is new or decided in memory
            return None, None
        if txn is None:
            # Batches in flight first, then the id log, the read transaction last: a
            # batch stored in between is then seen by the transaction (a batch's id
            # log is published before it leaves the batches in flight).
            staged = self._pipeline.in_flight_items() if self._pipeline is not None else []
            logs = self._id_logs
            with self._begin_read() as rtxn:
                return self._read_prior(rtxn, ops, cand, staged, logs)
        return self._read_prior(txn, ops, cand, [] if flushing is None else [flushing], self._id_logs)

    def _read_prior(self, txn: Any, ops: np.ndarray, cand: np.ndarray, staged: list[StagedBatch],
                    logs: list[storage.IdLog]) -> tuple[np.ndarray, np.ndarray]:
        """Find the candidates' decisions: in an id flush still in flight, in the id
        log, else in the id index; read each decision's record from a journal batch in
        flight or stored."""
        idx = np.flatnonzero(cand)
        prior = np.zeros(len(ops), dtype=JOURNAL_DTYPE)
        has_prior = np.zeros(len(ops), dtype=bool)
        # Resent ops are mostly recent: look in the flushes in flight and in the id
        # log first, all at once.
        q_src = np.ascontiguousarray(ops["source"][idx])
        q_seq = np.ascontiguousarray(ops["seq"][idx])
        in_flush = _find_in_flushes(staged, q_src, q_seq)
        for log in reversed(logs):  # newest first: a resent op is most likely a recent one
            if in_flush.all():
                break  # (an id is decided once: found, it is in no other flush)
            log.find(q_src, q_seq, in_flush)
        hit = in_flush != 0
        found = list(zip(in_flush[hit].tolist(), idx[hit].tolist()))  # (journal_seq, op index)
        ids_cur = txn.cursor(db=self._dbs[b"ids"])
        late_db = self._dbs[b"ids_late"]
        rest = idx[~hit]
        sources, seqs = ops["source"][rest].tolist(), ops["seq"][rest].tolist()
        late_get = functools.partial(txn.get, db=late_db)
        for i, source, seq in zip(rest.tolist(), sources, seqs):
            jseq = storage.lookup_id(ids_cur, late_get, source, seq)
            if jseq is not None:
                found.append((jseq, i))
        # In journal order, so each stored batch is read at most once per apply, and its
        # records decoded in one call; the fetcher also keeps recently read batches
        # (resent taps point at recent ones).
        found.sort()
        journals = [item.journal for item in staged if item.journal is not None]
        stored = []
        for jseq, i in found:
            rec = _staged_record(journals, jseq) if journals else None
            if rec is None:
                stored.append((jseq, i))
            else:
                prior[i] = rec
            has_prior[i] = True
        if stored:
            fetch = _RecordFetcher(txn, self._dbs[b"journal"], self._decoded)
            jseqs = np.array([j for j, _ in stored], dtype=np.uint64)
            prior[np.array([i for _, i in stored], dtype=np.int64)] = fetch.many(jseqs)
        return prior, has_prior

    def _flush_ids(self, txn: Any) -> None:
        """Move the decisions held in memory into the LMDB id index (this transaction).

        Done every `ids_flush_ops` decisions, so each flush is small (a stall of a few
        ms) and the in-memory decisions window stays small too.
        """
        self._put_flush(txn, self._encode_flush(self._prepare_flush()))

    def _prepare_flush(self) -> tuple:
        """Take the decisions out of the engine's window, with the id state (sources)
        as of now; `_encode_flush` and `_put_flush` then encode and store them (in a
        pipelined submit, in the encoder and commit threads, off the batch path)."""
        decisions, late = self._engine.take_decisions()
        # After a reload, the decisions up to ids_upto are replayed but already indexed.
        keep = decisions["journal_seq"] > self._ids_upto
        if not keep.all():  # (a structured copy goes field by field: skip it when it can)
            decisions, late = decisions[keep], late[keep]
        jseq = int(self._engine.journal_seq)
        sources = self._engine.export_sources()  # (sorted by `_encode_flush`, beside the kernel)
        self._ids_upto = jseq
        return decisions, late, jseq, sources

    @staticmethod
    def _encode_flush(flush: tuple) -> tuple:
        """The id log entry (key, value, IdLog) and id state entries of a prepared flush."""
        decisions, late, jseq, sources = flush
        log = storage.encode_id_log(decisions, late, jseq) if len(decisions) else None  # (nothing new: no entry)
        return log, storage.encode_ids_state(jseq, sources)

    def _put_flush(self, txn: Any, rows: tuple) -> None:
        """Store an encoded flush: append it to the id log, and start merging the log
        into the id index once it holds IDS_LOG_FLUSHES_MAX flushes (`_merge_step`
        then merges a slice of it with each batch). The id log and merge this leaves
        are published once the transaction commits (`_publish_id_log`)."""
        entry, state_rows = rows
        state = self._dbs[b"state"]
        if entry is not None:
            key, value, log = entry
            if not txn.put(key, value, db=state, overwrite=False):
                raise CorruptionError(f"id log entry {key!r} was written before")
            logs = self._logs_now() + [log]
            self._id_logs_next = logs
            merging = self._merging_now()
            if merging is not None and sum(lg.ids_upto > merging[0] for lg in logs) >= IDS_LOG_FLUSHES_MAX:
                self._merge_step(txn, finish=True)  # the merge fell behind the flushes: finish it
                logs, merging = self._logs_now(), None
            if merging is None and len(logs) >= IDS_LOG_FLUSHES_MAX:
                upto = logs[-1].ids_upto
                txn.put(storage.IDMERGE_KEY, storage.encode_id_merge(upto, 0), db=state)
                self._merging_next = (upto, 0)
        for k, v in state_rows.items():
            txn.put(k, v, db=state)

    def _logs_now(self) -> list[storage.IdLog]:
        """The id log as this transaction leaves it so far."""
        return self._id_logs if self._id_logs_next is None else self._id_logs_next

    def _merging_now(self) -> tuple[int, int] | None:
        """The id log merge in progress as this transaction leaves it so far."""
        return self._merging if self._merging_next is _UNSET else self._merging_next

    def _merge_step(self, txn: Any, finish: bool = False) -> None:
        """Merge the next slice of sources of the flushes being merged into the id
        index (every remaining source if `finish`); once all are merged, the flushes
        leave the id log. Lookups search the whole log until then, so an id is found
        whether its slice is merged yet or not."""
        merging = self._merging_now()
        if merging is None:
            return
        upto, lo = merging
        logs = self._logs_now()
        flushes = [lg for lg in logs if lg.ids_upto <= upto]
        hi = None if finish else self._merge_bound(upto, flushes, lo)
        ready, self._merge_ready = self._merge_ready, None
        # In key order: putmulti writes fastest so; each key is new.
        if ready is not None and ready[:3] == (upto, lo, hi):
            items, late_items = ready[3].result()  # (the same flushes: ids_upto <= upto)
        else:
            items, late_items = storage.merged_index_items(flushes, lo, hi)
        # putmulti: one C loop for the thousands of values (a Python loop of puts was
        # most of the time). No `append`: it would skip keys silently.
        for db, rows, what in ((self._dbs[b"ids"], items, "id index"), (self._dbs[b"ids_late"], late_items, "late id index")):
            if rows:
                consumed, added = txn.cursor(db=db).putmulti(rows, overwrite=False)
                if added != len(rows):
                    raise CorruptionError(f"{what}: {len(rows) - added} of {len(rows)} entries were written before")
        state = self._dbs[b"state"]
        if hi is not None:
            txn.put(storage.IDMERGE_KEY, storage.encode_id_merge(upto, hi), db=state)
            self._merging_next = (upto, hi)
            return
        for lg in flushes:
            if not txn.delete(storage.idlog_key(lg.ids_upto), db=state):
                raise CorruptionError(f"id log entry at {lg.ids_upto} is missing")
        txn.delete(storage.IDMERGE_KEY, db=state)
        self._id_logs_next = [lg for lg in logs if lg.ids_upto > upto]
        self._merging_next = None

    def _merge_bound(self, upto: int, flushes: list[storage.IdLog], lo: int) -> int | None:
        """The source where the merge slice starting at `lo` ends (None: the last slice).
        The bounds cut the flushes' sources into IDS_MERGE_SLICES slices of about the
        same number of sources, computed once per merge."""
        if self._merge_bounds is None or self._merge_bounds[0] != upto:
            sources = np.unique(np.concatenate([x for lg in flushes for x in (lg.key_src, lg.late_src)]))
            step = max(1, -(-len(sources) // IDS_MERGE_SLICES))
            self._merge_bounds = (upto, sources[step::step])
        bounds = self._merge_bounds[1]
        k = int(np.searchsorted(bounds, np.uint64(lo), side="right"))
        return int(bounds[k]) if k < len(bounds) else None

    def _take_snapshot(self, txn: Any) -> None:
        """Flush the id index and snapshot the accounts (see storage.py).

        The id state is written in this transaction; the account snapshot is written
        to a file after the commit, off the batch path.
        """
        self._flush_ids(txn)
        jseq, accounts, pending, journeys = self._export_snapshot()
        self._snapshot = (jseq, self._last_hash, accounts, pending, journeys)

    def _export_snapshot(self) -> tuple:
        """Snapshot the accounts, holds and journeys as of the ids flush just prepared:
        (journal_seq, accounts, pending, journeys). Only the holds are copied now; the
        accounts and journeys are copied on write (`Engine.snapshot_begin`), and the
        checkpoint thread completes them (`_write_checkpoint_job`) while the next
        batches run. The buffers are reused: the previous file job has finished by now
        (see `_snapshot_due`)."""
        n = self._engine.account_count()
        if self._snap_buf is None or len(self._snap_buf) < n:
            self._snap_buf = np.empty(n + n // 4 + 1024, dtype=ACCOUNT_DTYPE)
        # (fresh arrays where a buffer is too small; rows in the store's order, which
        # loading takes; the journeys' unused legs are cleared by the checkpoint thread)
        accounts, pending, journeys = self._engine.snapshot_begin(self._snap_buf, self._jny_buf, self._pen_buf)
        self._snap_seq = self._ids_upto
        return self._ids_upto, accounts, pending, journeys

    @_locked
    def reserve_journeys(self) -> None:
        """Make room for every account's fare state now and fault its memory in.

        The per-card fare state (journeys) grows at once to the number of accounts on
        the first tap past its room, and its memory (336 bytes a card) is then faulted
        in beside the batches; the first batches of taps pay for both (at a million
        cards, a few batches of 50-250 ms), and the hold map of metro entries rehashes
        as it fills. Call this before a peak, e.g. after opening or after opening many
        cards, to pay for it here instead (room for the holds of one card in four).
        Memory only: nothing is written, and results never depend on it.
        """
        self._check_usable()
        self._engine.reserve_journeys(self._engine.account_count())
        self._journeys_prefaulted = self._engine.journey_capacity()
        self._engine.prefault_journeys()

    @_locked
    def checkpoint(self) -> None:
        """Take a checkpoint now and wait until it is durable.

        Checkpoints are otherwise taken every `checkpoint_ops` decided ops, with the
        account snapshot written in the background.
        """
        self._check_usable()
        if self.readonly:
            raise LedgerReadOnlyError("a readonly ledger cannot write checkpoints")
        try:
            self._finish_checkpoint_file()
            self._snapshot = None
            self._recorded_ckpt = None
            with self._env.begin(write=True) as txn:
                self._catch_up(txn)
                if self._engine.journal_seq != self._ckpt_seq:
                    self._take_snapshot(txn)
            self._committed()
            self._finish_checkpoint_file()
        except lmdb.Error as e:
            self._reload_after_failure()
            raise StorageError(f"checkpoint not written: {e}") from e
        except BaseException:
            self._reload_after_failure()
            raise

    def _finish_checkpoint_file(self) -> None:
        """Wait for a checkpoint file being written and name it in LMDB."""
        if self._file_job is None:
            return
        self._recorded_ckpt = None
        with self._env.begin(write=True) as txn:
            self._record_checkpoint_file(txn, wait=True)
        self._adopt_recorded_checkpoint()

    @_locked
    def backup(self, path: str | os.PathLike[str]) -> None:
        """Write a consistent copy of the ledger to directory `path` (new or empty).

        Works while writers run (here or in other processes): the copy is the ledger
        as of one committed batch, LMDB compacted, with the checkpoint file that
        snapshot names. Open it with cardledger.open(path).
        """
        self._check_usable()
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        if os.listdir(path):
            raise ValueError(f"backup directory {path!r} is not empty: give a new or empty directory")
        state = self._dbs[b"state"]
        for attempt in range(LOAD_RETRIES_MAX):
            with self._begin_read() as txn:
                desc = storage.decode_checkpoint_desc(txn.get(b"checkpoint", db=state))
                src = None
                if desc is not None:
                    try:
                        src = builtins_open(os.path.join(self.path, storage.checkpoint_file_name(desc.journal_seq)), "rb")
                    except FileNotFoundError:
                        continue  # replaced meanwhile: a fresh snapshot names the new one
                try:
                    self._env.copy(path, compact=True, txn=txn)
                    if src is not None:
                        dst = os.path.join(path, storage.checkpoint_file_name(desc.journal_seq))
                        with builtins_open(dst, "wb") as out:
                            shutil.copyfileobj(src, out, 1 << 20)
                            out.flush()
                            os.fsync(out.fileno())
                finally:
                    if src is not None:
                        src.close()
            dfd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            return
        raise StorageError("backup: the checkpoint file kept changing; try again")

    # ------------------------------------------------------------------ queries

    def _refresh(self) -> None:
        """A reader catches up with what writers committed since its last look."""
        if not self.readonly:
            return
        try:
            with self._begin_read() as txn:
                self._catch_up(txn)
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)
            with self._begin_read() as txn:
                self._catch_up(txn)

    @_locked
    def _account_row(self, account_id: int) -> tuple:
        self._check_usable()
        self._refresh()
        row = self._engine.get_account(int(account_id))
        if row is None:
            raise AccountNotFoundError(f"account {account_id} does not exist: open it with an OPEN op first")
        return row

    def balance(self, account_id: int) -> int:
        """Available balance in fen: for a card both purses; 0 for a closed account."""
        row = self._account_row(account_id)
        return int(row[ACCOUNT_DTYPE.names.index("cash_fen")] + row[ACCOUNT_DTYPE.names.index("subsidy_fen")])

    def account(self, account_id: int) -> AccountInfo:
        """Full state of one account (kind, purses, flags, cap, totals)."""
        r = dict(zip(ACCOUNT_DTYPE.names, self._account_row(account_id)))
        flags = AccountFlags(r["flags"])
        return AccountInfo(
            id=r["id"],
            kind=AccountKind(r["kind"]),
            balance_fen=r["cash_fen"] + r["subsidy_fen"],
            cash_fen=r["cash_fen"],
            subsidy_fen=r["subsidy_fen"],
            cap_fen=r["cap_fen"],
            category=r["category"],
            frozen=bool(flags & AccountFlags.FROZEN),
            closed=bool(flags & AccountFlags.CLOSED),
            cash_first=bool(flags & AccountFlags.CASH_FIRST),
            debits_posted=r["debits_posted"],
            credits_posted=r["credits_posted"],
            debits_pending=r["debits_pending"],
            credits_pending=r["credits_pending"],
            last_journal_seq=r["last_journal_seq"],
        )

    @_locked
    def accounts(self) -> np.ndarray:
        """Every account's state (ACCOUNT_DTYPE), in the order they were opened."""
        self._check_usable()
        self._refresh()
        return self._engine.export_checkpoint()[0]

    @_locked
    def statement(self, account_id: int, start_us: int | None = None, end_us: int | None = None) -> np.ndarray:
        """Journal records (JOURNAL_DTYPE) that moved money of, or acted on, one account.

        Only successful ops appear. With start_us / end_us, only records whose event
        time is in [start_us, end_us). Ordered by event time, then journal_seq.
        """
        row = self._account_row(account_id)
        account_id = int(account_id)
        jseq = int(row[ACCOUNT_DTYPE.names.index("last_journal_seq")])
        out = []
        with self._begin_read() as txn:
            fetch = _RecordFetcher(txn, self._dbs[b"journal"], _DecodedBatches())
            while jseq:
                rec = fetch(jseq)
                t = int(rec["time_us"])
                if (start_us is None or t >= start_us) and (end_us is None or t < end_us):
                    out.append(rec)
                if int(rec["debit_id"]) == account_id:
                    jseq = int(rec["debit_prev_seq"])
                elif int(rec["credit_id"]) == account_id:
                    jseq = int(rec["credit_prev_seq"])
                else:
                    raise CorruptionError(f"statement chain of account {account_id} breaks at journal_seq {jseq}")
        recs = np.array(out, dtype=JOURNAL_DTYPE)
        return recs[np.lexsort((recs["journal_seq"], recs["time_us"]))] if len(recs) else recs

    @_locked
    def journal(self, start_seq: int = 1, end_seq: int | None = None) -> np.ndarray:
        """Journal records with start_seq <= journal_seq < end_seq (JOURNAL_DTYPE)."""
        self._check_usable()
        parts = []
        with self._begin_read() as txn:
            for batch in self._iter_batches(txn, max(start_seq, 1) - 1, None):
                if end_seq is not None and batch.first_seq >= end_seq:
                    break
                seqs = batch.records["journal_seq"]
                keep = seqs >= start_seq
                if end_seq is not None:
                    keep &= seqs < end_seq
                parts.append(batch.records[keep])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=JOURNAL_DTYPE)

    @_locked
    def verify(self) -> VerifyReport:
        """Check the whole ledger and report every problem found.

        Walks the journal from the first batch (hash chain, record checksums),
        replays it into a fresh engine and compares with the live state, and checks
        the invariants: the sum of all balances is zero, pending debits equal
        pending credits, each balance equals its posted totals, caps and
        no-overdraft hold, closed accounts are empty.
        """
        self._check_usable()
        self._refresh()
        self._refresh_fares()
        report = VerifyReport()
        fresh = self._engine_class(self.default_cap_fen)
        fresh.set_fare_versions(fare_store.tap_tables(self._fare_versions))
        prev = storage.GENESIS_HASH
        state = self._dbs[b"state"]
        with self._begin_read() as txn:
            desc, ckpt_arrays, ids_upto, ids_sources = None, None, 0, None
            try:
                desc = storage.decode_checkpoint_desc(txn.get(b"checkpoint", db=state))
                if desc is not None:
                    ckpt_arrays = storage.read_checkpoint_file(self.path, desc)
                ids_upto, ids_sources = storage.decode_ids_state(lambda k: txn.get(k, db=state))
            except (CorruptionError, OSError) as e:
                report.problems.append(f"checkpoint: {e}")
            try:
                _checked_merge(storage.decode_id_merge(txn.get(storage.IDMERGE_KEY, db=state)),
                               storage.read_id_log(txn, state))
            except CorruptionError as e:
                report.problems.append(str(e))
            try:
                for batch in self._iter_batches(txn, 0, prev):
                    report.batches += 1
                    report.records += len(batch.records)
                    try:
                        fresh.replay(batch.records)
                    except ValueError as e:
                        report.problems.append(f"replay: {e}")
                        break
                    if fresh.recent_count >= self.checkpoint_ops:
                        fresh.take_decisions()  # bound memory; decisions are not compared
                    if desc is not None and ckpt_arrays is not None and batch.last_seq == desc.journal_seq:
                        acc, _, pen = fresh.export_checkpoint()
                        jny = fresh.export_journeys()
                        # A checkpoint holds the holds and journeys in the core's store
                        # order (loading takes any): compare them in the exports' order.
                        ck_acc, ck_pen, ck_jny = ckpt_arrays
                        ck_pen = ck_pen[np.lexsort((ck_pen["seq"], ck_pen["source"]))]
                        ck_jny = ck_jny[np.argsort(ck_jny["account_id"], kind="stable")]
                        if (
                            acc.tobytes() != ck_acc.tobytes()
                            or pen.tobytes() != ck_pen.tobytes()
                            or jny.tobytes() != ck_jny.tobytes()
                        ):
                            report.problems.append(f"checkpoint at {desc.journal_seq} differs from the journal's replay")
                    if ids_sources is not None and batch.last_seq == ids_upto:
                        src = fresh.export_checkpoint()[1]
                        if not np.array_equal(src[["source", "last_seq"]], ids_sources[["source", "last_seq"]]):
                            report.problems.append(f"id state at {ids_upto} differs from the journal's replay")
            except CorruptionError as e:
                report.problems.append(str(e))
        live = self._engine.export_checkpoint()
        if not report.problems:
            replayed = fresh.export_checkpoint()
            if live[0].tobytes() != replayed[0].tobytes():
                report.problems.append("account state differs from the replay of the journal")
            if live[2].tobytes() != replayed[2].tobytes():
                report.problems.append("pending holds differ from the replay of the journal")
            if not np.array_equal(live[1][["source", "last_seq"]], replayed[1][["source", "last_seq"]]):
                report.problems.append("per-source idempotency state differs from the replay of the journal")
            if self._engine.export_journeys().tobytes() != fresh.export_journeys().tobytes():
                report.problems.append("cards' fare state differs from the replay of the journal")
        report.problems.extend(_invariant_problems(live[0], live[2]))
        report.accounts = len(live[0])
        return report


class _CheckpointFileGone(CorruptionError):
    """The named checkpoint file is missing (replaced meanwhile, or lost)."""


class _EnvRegistry:
    """One LMDB environment per ledger directory per process, shared by its Ledgers.

    LMDB forbids opening one environment twice in a process (closing either copy
    would drop the other's locks), so a reader and a writer in one process share it.
    """

    def __init__(self) -> None:
        self._envs: dict[str, list] = {}  # realpath -> [env, readonly, refcount]

    def acquire(self, path: str, readonly: bool, durability: str) -> Any:
        key = os.path.realpath(path)
        entry = self._envs.get(key)
        if entry is not None and entry[0] is not None and entry[3] == os.getpid():
            if entry[4] != durability and not readonly:
                raise StorageError(
                    f"ledger {path!r} is already open in this process with durability={entry[4]!r}: "
                    "one process uses one durability mode per ledger"
                )
            if entry[1] and not readonly:
                raise StorageError(
                    f"ledger {path!r} is already open readonly in this process: close those readers "
                    "before opening it for writing, or open the writer first"
                )
            entry[2] += 1
            return entry[0]
        if entry is not None:
            # Inherited through fork(): the parent's handle is unusable here. Closing it
            # in the child releases only what the child owns (LMDB checks the pid).
            del self._envs[key]
            try:
                entry[0].close()
            except lmdb.Error:  # pragma: no cover
                pass
        env = lmdb.open(
            path,
            map_size=MAP_SIZE_INITIAL_BYTES,
            max_dbs=len(storage.DB_NAMES),
            max_readers=MAX_READERS,
            readonly=readonly,
            sync=True,
            # "full": data pages, then the meta page, each fsynced: power loss keeps every
            # acknowledged batch. "nometasync": one fsync a commit; see DURABILITY_MODES.
            metasync=durability == "full",
            lock=True,
            readahead=False,
            max_spare_txns=0,
        )
        # Reader slots left behind by dead processes would pin old pages forever.
        env.reader_check()
        self._envs[key] = [env, readonly, 1, os.getpid(), durability]
        return env

    def release(self, path: str) -> None:
        key = os.path.realpath(path)
        entry = self._envs.get(key)
        if entry is None or entry[3] != os.getpid():
            return
        entry[2] -= 1
        if entry[2] <= 0:
            del self._envs[key]
            entry[0].close()


_ENVS = _EnvRegistry()


def _warm_buffer(buf: np.ndarray | None, n: int, dtype: Any) -> np.ndarray:
    """`buf` if it holds `n` records, else a new buffer of `n` with every page touched."""
    if buf is not None and len(buf) >= n:
        return buf
    buf = np.empty(n, dtype=dtype)
    buf.view(np.uint8)[:: PAGE_BYTES] = 0
    return buf


class _StagedOnStaleState(LedgerError):
    """A staged batch was computed on state another writer changed meanwhile."""


class _DecodedBatches:
    """Journal batches recently stored by this ledger or read for id lookups, checked
    but still encoded.

    Stored batches never change (the journal is append-only), so an entry stays valid;
    the cache only bounds memory (DECODED_BATCHES_MAX encoded batches, ~200 KB each at
    8,192 ops). A record is decoded alone from its batch's bytes. Every batch this
    ledger commits goes in as it was written (resent ops point at recent batches: they
    need neither an LMDB read nor a checksum); the commit thread adds them while a
    submitter looks up, hence the lock.
    """

    def __init__(self) -> None:
        self._by_last: dict[int, storage.CheckedBody] = {}  # insertion order = age
        self._lasts: list[int] = []  # the same batches' last journal_seqs, sorted
        self._lock = threading.Lock()

    def find(self, jseq: int) -> storage.CheckedBody | None:
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

    def add(self, b: storage.CheckedBody) -> None:
        """Cache a decoded batch, dropping the least recently used beyond the limit."""
        with self._lock:
            if self._by_last.pop(b.last_seq, None) is None:
                bisect.insort(self._lasts, b.last_seq)
            self._by_last[b.last_seq] = b  # the most recently used
            while len(self._by_last) > DECODED_BATCHES_MAX:
                oldest = next(iter(self._by_last))
                del self._by_last[oldest]
                del self._lasts[bisect.bisect_left(self._lasts, oldest)]

    def add_stored(self, staged: StagedBatch) -> None:
        """Cache a batch this ledger just committed, from the bytes it wrote."""
        if staged.journal is not None and staged.packed is not None:
            seqs = staged.journal["journal_seq"]
            self.add(storage.CheckedBody(int(seqs[0]), int(seqs[-1]), staged.packed, staged.marks))


def _find_in_flushes(staged: list[StagedBatch], q_src: np.ndarray, q_seq: np.ndarray) -> np.ndarray:
    """journal_seq of each id (q_src[i], q_seq[i]) in an id flush still in flight, 0
    where none holds it. A flush's decisions are sorted by (source, seq)."""
    out = np.zeros(len(q_src), dtype=np.uint64)
    for item in staged:
        if item.flush is None or not len(item.flush[0]):
            continue
        if item.flush_keys is None:  # contiguous columns, made once per flush
            decisions = item.flush[0]
            item.flush_keys = tuple(np.ascontiguousarray(decisions[f]) for f in ("source", "seq", "journal_seq"))
        storage.find_ids_exact(*item.flush_keys, q_src, q_seq, out)
    return out


def _staged_record(journals: list[np.ndarray], jseq: int) -> np.void | None:
    """The record `jseq` from the journal of a batch still in flight, or None."""
    for j in journals:
        first = int(j["journal_seq"][0])
        if first <= jseq < first + len(j):
            return j[jseq - first]
    return None


class _RecordFetcher:
    """Reads single journal records by journal_seq, through a cache of decoded batches."""

    def __init__(self, txn: Any, db: Any, cache: _DecodedBatches) -> None:
        self._cur = txn.cursor(db=db)
        self._cache = cache

    def __call__(self, jseq: int) -> np.void:
        return self._batch(jseq).record(jseq)

    def many(self, jseqs: np.ndarray) -> np.ndarray:
        """The records of these journal_seqs (sorted), decoded in one call.

        Resent ops point at records spread over many stored batches, one or two in
        each: the batches are found here, the records decoded together."""
        seqs = jseqs.tolist()
        which = np.empty(len(seqs), dtype=np.int64)
        found: list[storage.CheckedBody] = []
        k = 0
        while k < len(seqs):
            b = self._batch(seqs[k])
            hi = bisect.bisect_right(seqs, b.last_seq, k)
            which[k:hi] = len(found)
            found.append(b)
            k = hi
        try:
            return storage.unpack_records_of_batches(
                [b.body for b in found], [b.marked() for b in found],
                np.array([b.last_seq - b.first_seq + 1 for b in found], dtype=np.int64),
                np.array([b.first_seq for b in found], dtype=np.uint64), which, jseqs, storage.RECORD_MARK_STRIDE,
            )
        except ValueError as e:
            raise CorruptionError(f"a journal batch holding records {seqs[0]}..{seqs[-1]}: {e}") from None

    def _batch(self, jseq: int) -> storage.CheckedBody:
        """The stored batch holding jseq: cached, or read and checked."""
        b = self._cache.find(jseq)
        if b is None:
            if not self._cur.set_range(storage.KEY.pack(jseq)):
                raise CorruptionError(f"journal record {jseq} is missing")
            b = storage.check_batch(self._cur.key(), self._cur.value())
            if not (b.first_seq <= jseq <= b.last_seq):
                raise CorruptionError(f"journal record {jseq} is missing")
            self._cache.add(b)
        return b


def _checked_merge(merging: tuple[int, int] | None, logs: list[storage.IdLog]) -> tuple[int, int] | None:
    """A stored id log merge state, checked against the stored id log."""
    if merging is not None and not any(lg.ids_upto <= merging[0] for lg in logs):
        raise CorruptionError(f"the id log merge up to {merging[0]} has no flush in the id log")
    return merging


def _check_batch(ops: Any) -> np.ndarray:
    if not isinstance(ops, np.ndarray):
        raise SchemaError(f"ops must be a numpy array of dtype cardledger.OP_DTYPE, got {type(ops).__name__}: build it with cardledger.new_ops(n)")
    if ops.dtype != OP_DTYPE:
        raise SchemaError(f"ops has dtype {ops.dtype}, expected cardledger.OP_DTYPE: build it with cardledger.new_ops(n)")
    if ops.ndim != 1:
        raise SchemaError(f"ops must be one-dimensional, got shape {ops.shape}")
    if not ops.flags.c_contiguous:
        raise SchemaError("ops must be C-contiguous (a slice with a step is not): pass np.ascontiguousarray(ops)")
    if len(ops) > BATCH_OPS_MAX:
        raise SchemaError(f"batch of {len(ops)} ops exceeds BATCH_OPS_MAX={BATCH_OPS_MAX}: split it")
    return ops


def _invariant_problems(accounts: np.ndarray, pending: np.ndarray) -> list[str]:
    """The ledger's invariants over the account and hold arrays."""
    p: list[str] = []
    if len(accounts) == 0:
        return p
    cp = accounts["credits_posted"].astype(object)
    dp = accounts["debits_posted"].astype(object)
    if sum(cp) != sum(dp):
        p.append(f"double entry broken: credits posted {sum(cp)} != debits posted {sum(dp)}")
    if int(accounts["credits_pending"].astype(object).sum()) != int(accounts["debits_pending"].astype(object).sum()):
        p.append("pending credits != pending debits")
    if int(pending["amount_fen"].astype(object).sum()) != int(accounts["debits_pending"].astype(object).sum()):
        p.append("outstanding holds do not add up to pending debits")
    avail = accounts["cash_fen"].astype(object) + accounts["subsidy_fen"].astype(object)
    expect = cp - dp - accounts["debits_pending"].astype(object)
    for i in np.flatnonzero(avail != expect)[:10]:
        p.append(f"account {accounts[i]['id']}: balance {avail[i]} != posted credits - debits - held {expect[i]}")
    kind = accounts["kind"]
    not_clearing = kind != AccountKind.CLEARING
    # A card's cash purse may be negative: taps may allow it (fares.toml's
    # negative_balance) and a metro exit charges even above the hold.
    neg = not_clearing & (
        ((accounts["cash_fen"] < 0) & (kind != AccountKind.CARD)) | (accounts["subsidy_fen"] < 0)
    )
    for i in np.flatnonzero(neg)[:10]:
        p.append(f"account {accounts[i]['id']}: negative balance on a no-overdraft account")
    cards = kind == AccountKind.CARD
    for i in np.flatnonzero(cards & (accounts["cash_fen"] > accounts["cap_fen"]))[:10]:
        p.append(f"card {accounts[i]['id']}: cash purse {accounts[i]['cash_fen']} above its cap {accounts[i]['cap_fen']}")
    for i in np.flatnonzero(~cards & (accounts["subsidy_fen"] != 0))[:10]:
        p.append(f"account {accounts[i]['id']}: a subsidy purse on a non-card account")
    closed = (accounts["flags"] & AccountFlags.CLOSED) != 0
    for i in np.flatnonzero(closed & (avail != 0))[:10]:
        p.append(f"closed account {accounts[i]['id']} still holds {avail[i]} fen")
    return p
