"""The id index: every decided op id (source, seq) -> its journal_seq, on disk.

Exactly once across restarts needs every id ever decided. The engine keeps the
recent ones in its decisions window; every `ids_flush_ops` decisions they are
flushed here. A flush is appended to the *id log* (one value in ``state``), and once
the log holds IDS_LOG_FLUSHES_MAX flushes they are merged into ``ids`` / ``ids_late``
together, a slice of sources per batch (``idmerge`` says how far): straight into the
index, a flush of a thousand terminals' runs would dirty a thousand B-tree pages
every time. Lookups search the flushes not stored yet, the id log, then the index.

`IdIndex` owns this state for one ledger, with the id-flush thread
(`cardledger-idflush`) that encodes flushes and builds merge items while a batch's
kernel runs.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from ..errors import CorruptionError
from ..schema import JOURNAL_DTYPE, SOURCE_DTYPE
from .journal import DecodedBatches, RecordFetcher, staged_record
from .keys import (
    FORMAT_VERSION,
    KEY,
    KEY2,
    STATE_IDLOG_PREFIX,
    STATE_IDMERGE_KEY,
    STATE_IDS_STATE_KEY,
    STATE_SOURCES_KEY,
)

#: id state in LMDB: version, ids_upto, source count, sources SHA-256
IDS_STATE = struct.Struct("<HxxxxxxQQ32s")
#: Most (seq, journal_seq) pairs in one value of the id index (and of an id log run).
#: A lookup decodes its run from the start, and LMDB moves a value over ~2 KB (a 4 KiB
#: page's node limit) to overflow pages of its own: 128 pairs keeps both small
#: (docs/performance-log.md). Readers take runs of any length.
ID_RUN_PAIRS_MAX = 128
#: Decisions held in memory before a flush to the id index (at most checkpoint_ops).
IDS_FLUSH_OPS_DEFAULT = 1 << 16
#: Id flushes kept in the id log (one value each, appended) before they are merged
#: into the id index in one go: merged together, the index pages they share are
#: written once instead of once per flush.
IDS_LOG_FLUSHES_MAX = 16
#: A full id log is merged into the index in about this many slices of its sources,
#: one per batch after it filled: merged in one go, it stalled one batch for a long
#: time at a million cards.
IDS_MERGE_SLICES = 64

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
        STATE_SOURCES_KEY: blob,
        STATE_IDS_STATE_KEY: IDS_STATE.pack(FORMAT_VERSION, ids_upto, len(sources), hashlib.sha256(blob).digest()),
    }


def decode_ids_state(get) -> tuple[int, np.ndarray]:
    """(ids_upto, sources) through `get(key)`; (0, empty) for a new ledger."""
    desc = get(STATE_IDS_STATE_KEY)
    if desc is None:
        return 0, np.zeros(0, dtype=SOURCE_DTYPE)
    desc = bytes(desc)
    if len(desc) != IDS_STATE.size:
        raise CorruptionError("id state descriptor has the wrong size")
    version, upto, n, digest = IDS_STATE.unpack(desc)
    blob = get(STATE_SOURCES_KEY)
    if version != FORMAT_VERSION or blob is None:
        raise CorruptionError("id state is missing or of another format")
    blob = bytes(blob)
    if len(blob) != n * SOURCE_DTYPE.itemsize or hashlib.sha256(blob).digest() != digest:
        raise CorruptionError("id state (sources array) fails its checksum")
    return upto, np.frombuffer(blob, dtype=SOURCE_DTYPE).copy()


def lookup_id(codec: Any, ids_cursor: Any, late_get: Any, source: int, seq: int) -> int | None:
    """journal_seq of a decided id up to the checkpoint, or None if never decided there."""
    key = KEY2.pack(source, seq)
    # Keys are big-endian (source, seq): the same source iff the same first 8 bytes.
    if ids_cursor.set_range(key) and ids_cursor.key()[:8] == key[:8]:
        try:
            jseq = codec.find_pair(ids_cursor.value(), seq)
        except (ValueError, CorruptionError) as e:
            raise CorruptionError(f"id index entry of source {source}: {e}") from None
        if jseq is not None:
            return int(jseq)
    v = late_get(key)
    return None if v is None else KEY.unpack(bytes(v))[0]


# ------------------------------------------------------------------ the id log

IDLOG_MAGIC = b"CLIL"
IDLOG_PREFIX = STATE_IDLOG_PREFIX
#: magic, version, ids_upto, run count, late id count, blob size, SHA-256 of the rest
IDLOG_HEADER = struct.Struct("<4sHxxQQQQ32s")


def idlog_key(ids_upto: int) -> bytes:
    """The `state` key of the id log value of the flush up to `ids_upto`."""
    return IDLOG_PREFIX + KEY.pack(ids_upto)


class IdLog:
    """One id flush not yet merged into the id index, decoded for lookups.

    Its runs are keyed by (key_src[k], key_seq[k]) = (source, highest seq), sorted;
    run k's (seq, journal_seq) pairs are blob[offsets[k]:offsets[k+1]]
    (the codec's `pack_pairs`). Its ids decided out of order are (late_src, late_seq) ->
    late_jseq, sorted. Every array is contiguous uint64 (offsets: int64).
    """

    __slots__ = ("ids_upto", "key_src", "key_seq", "offsets", "blob", "late_src", "late_seq", "late_jseq", "codec")
    #: The value's arrays, in the order it stores them after its header and before the blob.
    COLUMNS = (("key_src", np.uint64), ("key_seq", np.uint64), ("offsets", np.int64),
               ("late_src", np.uint64), ("late_seq", np.uint64), ("late_jseq", np.uint64))

    def __init__(self, codec: Any, ids_upto: int, blob: bytes, **columns: np.ndarray) -> None:
        self.codec, self.ids_upto, self.blob = codec, ids_upto, blob
        for name, dtype in self.COLUMNS:
            setattr(self, name, np.ascontiguousarray(columns[name], dtype=dtype))

    def find(self, q_src: np.ndarray, q_seq: np.ndarray, out: np.ndarray) -> None:
        """Fill out[i] (where still 0) with the journal_seq of id (q_src[i], q_seq[i]) if
        this flush decided it (q_src, q_seq: contiguous uint64)."""
        try:
            self.codec.find_ids_in_runs(self.key_src, self.key_seq, self.offsets, self.blob, q_src, q_seq, out)
        except ValueError as e:
            raise CorruptionError(f"id log at {self.ids_upto}: {e}") from None
        self.codec.find_ids_exact(self.late_src, self.late_seq, self.late_jseq, q_src, q_seq, out)


def merged_index_items(codec: Any, logs: list[IdLog], lo_source: int = 0, hi_source: int | None = None) -> tuple[list, list]:
    """The (ids items, ids_late items) of several id log flushes for the sources in
    [lo_source, hi_source) (None: to the last), each list in key order (for putmulti)."""
    try:
        items = codec.id_index_items([lg.key_src for lg in logs], [lg.key_seq for lg in logs],
                               [lg.blob for lg in logs], [lg.offsets for lg in logs], lo_source, hi_source)
        late = codec.id_index_items([lg.late_src for lg in logs], [lg.late_seq for lg in logs],
                              [lg.late_jseq for lg in logs], None, lo_source, hi_source)
    except ValueError as e:
        raise CorruptionError(f"id log: {e}") from None
    return items, late


def encode_id_log(codec: Any, decisions: np.ndarray, late: np.ndarray, ids_upto: int) -> tuple[bytes, bytes, IdLog]:
    """The id log entry of a flush (decisions sorted by (source, seq)): (key, value, IdLog)."""
    run, lt = decisions[~late], decisions[late]
    key_src, key_seq, offsets, blob = codec.pack_id_runs(run["source"], run["seq"], run["journal_seq"], ID_RUN_PAIRS_MAX)
    log = IdLog(codec, ids_upto, blob, key_src=key_src, key_seq=key_seq, offsets=offsets,
                late_src=lt["source"], late_seq=lt["seq"], late_jseq=lt["journal_seq"])
    body = b"".join([getattr(log, name).tobytes() for name, _ in IdLog.COLUMNS] + [blob])
    header = IDLOG_HEADER.pack(IDLOG_MAGIC, FORMAT_VERSION, ids_upto, len(key_src), len(lt), len(blob),
                               hashlib.sha256(body).digest())
    return idlog_key(ids_upto), header + body, log


def decode_id_log(codec: Any, key: bytes, value: Any) -> IdLog:
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
    return IdLog(codec, upto, bytes(body[start:]), **columns)


IDMERGE_KEY = STATE_IDMERGE_KEY
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


def read_id_log(codec: Any, txn: Any, state_db: Any) -> list[IdLog]:
    """Every id log entry in the `state` database, oldest first."""
    logs = []
    cur = txn.cursor(db=state_db)
    if cur.set_range(IDLOG_PREFIX):
        for key, value in cur:
            if not bytes(key).startswith(IDLOG_PREFIX):
                break
            logs.append(decode_id_log(codec, key, value))
    return logs


def checked_merge(merging: tuple[int, int] | None, logs: list[IdLog]) -> tuple[int, int] | None:
    """A stored id log merge state, checked against the stored id log."""
    if merging is not None and not any(lg.ids_upto <= merging[0] for lg in logs):
        raise CorruptionError(f"the id log merge up to {merging[0]} has no flush in the id log")
    return merging


def read_checked_merge(codec: Any, txn: Any, state_db: Any) -> tuple[int, int] | None:
    """The stored id log merge state, checked against the stored id log
    (CorruptionError if either is damaged or they disagree)."""
    return checked_merge(decode_id_merge(txn.get(IDMERGE_KEY, db=state_db)), read_id_log(codec, txn, state_db))


class IdLogState(NamedTuple):
    """The id log and its merge into the index, as one value (replaced whole, never
    changed in place, so a lookup in another thread holds one consistent state)."""

    #: Flushes stored in the id log and not yet merged out of it, oldest first.
    logs: list[IdLog]
    #: The merge in progress: (ids_upto of its last flush, first source not merged
    #: yet), or None.
    merging: tuple[int, int] | None


class IdFlush:
    """The decisions taken out of the engine's window for one flush, with the id state
    (sources) as of then; `rows` becomes their encoded LMDB items (or a Future of them
    while the id-flush thread encodes them). Until the transaction that stores it
    commits, lookups search the flush itself (`find`)."""

    __slots__ = ("decisions", "late", "ids_upto", "sources", "rows", "_keys")

    def __init__(self, decisions: np.ndarray, late: np.ndarray, ids_upto: int, sources: np.ndarray) -> None:
        self.decisions, self.late, self.ids_upto, self.sources = decisions, late, ids_upto, sources
        self.rows: Any = None
        self._keys: tuple[np.ndarray, ...] | None = None

    def encoded(self) -> tuple:
        """The encoded items (waiting for the id-flush thread if it encodes them)."""
        return self.rows.result() if isinstance(self.rows, Future) else self.rows  # type: ignore[no-any-return]

    def find(self, codec: Any, q_src: np.ndarray, q_seq: np.ndarray, out: np.ndarray) -> None:
        """Fill out[i] (where still 0) with the journal_seq of id (q_src[i], q_seq[i]) if
        this flush holds it. The decisions are sorted by (source, seq)."""
        if not len(self.decisions):
            return
        if self._keys is None:  # contiguous columns, made once per flush
            self._keys = tuple(np.ascontiguousarray(self.decisions[f]) for f in ("source", "seq", "journal_seq"))
        codec.find_ids_exact(*self._keys, q_src, q_seq, out)


class IdIndex:
    """One ledger's id index: how far it reaches (`ids_upto`), the id log and its merge,
    flushes, and the lookups of ids the engine cannot decide from memory.

    Threads: the batch path (under the ledger's lock) prepares flushes, looks ids up
    and, in `apply`, stores flushes and merge steps; while batches are in flight the
    pipeline's store thread stores them instead (every other path first waits for it).
    A write transaction's changes to the id log are staged and published once it
    commits (`publish`); lookups read the published state. The id-flush thread only
    encodes flushes and builds merge items.
    """

    def __init__(self, codec: Any, state_db: Any, ids_db: Any, ids_late_db: Any, journal_db: Any,
                 decoded: DecodedBatches) -> None:
        self.codec = codec
        self._state_db, self._ids_db, self._late_db, self._journal_db = state_db, ids_db, ids_late_db, journal_db
        self._decoded = decoded
        #: journal_seq up to which every decision is flushed (in the id log or the index).
        self.ids_upto = 0
        #: The id log as the last committed transaction left it.
        self.committed = IdLogState([], None)
        #: The id log as the transaction being committed leaves it (None: unchanged).
        self._staged: IdLogState | None = None
        self._merge_bounds: tuple[int, np.ndarray] | None = None  # (ids_upto, slice bounds)
        #: (ids_upto, lo, hi, Future of the items) of the merge step the batch being
        #: applied will take, built in the id-flush thread beside its kernel.
        self._merge_ready: tuple | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- loading

    def read(self, txn: Any) -> tuple[int, np.ndarray, IdLogState]:
        """The stored id state: (ids_upto, sources, id log state), checked."""
        ids_upto, sources = decode_ids_state(lambda k: txn.get(k, db=self._state_db))
        logs = read_id_log(self.codec, txn, self._state_db)
        if any(log.ids_upto > ids_upto for log in logs):
            raise CorruptionError(f"the id log reaches past the id state at {ids_upto}")
        merging = checked_merge(decode_id_merge(txn.get(IDMERGE_KEY, db=self._state_db)), logs)
        return ids_upto, sources, IdLogState(logs, merging)

    def adopt(self, ids_upto: int, state: IdLogState) -> None:
        """Use an id state read by `read` (the engine was loaded with its sources)."""
        self.ids_upto, self.committed, self._staged = ids_upto, state, None

    def stored_upto(self, txn: Any) -> int:
        """How far the stored id state reaches (another writer may have flushed)."""
        value = txn.get(STATE_IDS_STATE_KEY, db=self._state_db)
        return IDS_STATE.unpack(bytes(value))[1] if value is not None else 0

    def refresh_merge(self, txn: Any) -> None:
        """Take the id log and merge as stored if another writer merged slices of it."""
        merging = decode_id_merge(txn.get(IDMERGE_KEY, db=self._state_db))
        if merging != self.committed.merging:
            logs = read_id_log(self.codec, txn, self._state_db)
            self.committed = IdLogState(logs, checked_merge(merging, logs))

    # -- transactions

    def begin_transaction(self) -> None:
        """A write transaction begins: nothing staged in it yet."""
        self._staged = None

    def now(self) -> IdLogState:
        """The id log as the transaction being committed leaves it so far."""
        return self.committed if self._staged is None else self._staged

    def publish(self) -> None:
        """After a commit: lookups use the id log it left from now on."""
        if self._staged is not None:
            self.committed, self._staged = self._staged, None

    def transaction_done(self) -> None:
        """The transaction ended (committed or not): drop merge items built for it."""
        self._merge_ready = None

    # -- flushes

    def prepare_flush(self, engine: Any) -> IdFlush:
        """Take the decisions out of the engine's window, with the id state (sources) as
        of now; `encode` and `put_flush` then encode and store them (in a pipelined
        submit, in the pipeline's threads, off the batch path)."""
        decisions, late = engine.take_decisions()
        # After a reload, the decisions up to ids_upto are replayed but already indexed.
        keep = decisions["journal_seq"] > self.ids_upto
        if not keep.all():  # (a structured copy goes field by field: skip it when it can)
            decisions, late = decisions[keep], late[keep]
        jseq = int(engine.journal_seq)
        sources = engine.export_sources()  # (sorted by encode_ids_state, off the batch path)
        self.ids_upto = jseq
        return IdFlush(decisions, late, jseq, sources)

    def encode(self, flush: IdFlush) -> tuple:
        """The id log entry (key, value, IdLog) and id state items of a prepared flush."""
        log = (encode_id_log(self.codec, flush.decisions, flush.late, flush.ids_upto)
               if len(flush.decisions) else None)  # (nothing new: no entry)
        return log, encode_ids_state(flush.ids_upto, flush.sources)

    def encode_in_flush_thread(self, flush: IdFlush) -> None:
        """Start encoding a flush in the id-flush thread (while a kernel runs without
        the GIL); `flush.encoded()` waits for it."""
        flush.rows = self._in_flush_thread(self.encode, flush)

    def put_flush(self, txn: Any, rows: tuple) -> None:
        """Store an encoded flush: append it to the id log, and start merging the log
        into the id index once it holds IDS_LOG_FLUSHES_MAX flushes (`merge_step` then
        merges a slice of it with each batch). Staged until the commit (`publish`)."""
        entry, state_rows = rows
        if entry is not None:
            key, value, log = entry
            if not txn.put(key, value, db=self._state_db, overwrite=False):
                raise CorruptionError(f"id log entry {key!r} was written before")
            now = self.now()
            self._staged = IdLogState(now.logs + [log], now.merging)
            logs, merging = self._staged
            if merging is not None and sum(lg.ids_upto > merging[0] for lg in logs) >= IDS_LOG_FLUSHES_MAX:
                self.merge_step(txn, finish=True)  # the merge fell behind the flushes: finish it
                logs, merging = self.now().logs, None
            if merging is None and len(logs) >= IDS_LOG_FLUSHES_MAX:
                upto = logs[-1].ids_upto
                txn.put(IDMERGE_KEY, encode_id_merge(upto, 0), db=self._state_db)
                self._staged = IdLogState(logs, (upto, 0))
        for k, v in state_rows.items():
            txn.put(k, v, db=self._state_db)

    def flush_now(self, txn: Any, engine: Any) -> None:
        """Move the decisions held in memory into the id index (this transaction)."""
        self.put_flush(txn, self.encode(self.prepare_flush(engine)))

    # -- merging the id log into the index

    def prepare_merge_step(self) -> None:
        """Start building, in the id-flush thread, the index items of the merge step this
        transaction will take (`merge_step` uses them if its slice is this one): beside
        the kernel they cost the batch nothing. The slice is known before the kernel:
        nothing a batch does moves the merge until its merge step."""
        upto_lo = self.now().merging
        if upto_lo is None:
            return
        upto, lo = upto_lo
        flushes = [lg for lg in self.now().logs if lg.ids_upto <= upto]
        hi = self._merge_bound(upto, flushes, lo)
        self._merge_ready = (upto, lo, hi, self._in_flush_thread(merged_index_items, self.codec, flushes, lo, hi))

    def merge_step(self, txn: Any, finish: bool = False) -> None:
        """Merge the next slice of sources of the flushes being merged into the id index
        (every remaining source if `finish`); once all are merged, the flushes leave the
        id log. Lookups search the whole log until then, so an id is found whether its
        slice is merged yet or not."""
        logs, merging = self.now()
        if merging is None:
            return
        upto, lo = merging
        flushes = [lg for lg in logs if lg.ids_upto <= upto]
        hi = None if finish else self._merge_bound(upto, flushes, lo)
        ready, self._merge_ready = self._merge_ready, None
        # In key order: putmulti writes fastest so; each key is new.
        if ready is not None and ready[:3] == (upto, lo, hi):
            items, late_items = ready[3].result()  # (the same flushes: ids_upto <= upto)
        else:
            items, late_items = merged_index_items(self.codec, flushes, lo, hi)
        # putmulti: one C loop for the thousands of values. No `append`: it would skip
        # keys silently.
        for db, rows, what in ((self._ids_db, items, "id index"), (self._late_db, late_items, "late id index")):
            if rows:
                consumed, added = txn.cursor(db=db).putmulti(rows, overwrite=False)
                if added != len(rows):
                    raise CorruptionError(f"{what}: {len(rows) - added} of {len(rows)} entries were written before")
        if hi is not None:
            txn.put(IDMERGE_KEY, encode_id_merge(upto, hi), db=self._state_db)
            self._staged = IdLogState(logs, (upto, hi))
            return
        for lg in flushes:
            if not txn.delete(idlog_key(lg.ids_upto), db=self._state_db):
                raise CorruptionError(f"id log entry at {lg.ids_upto} is missing")
        txn.delete(IDMERGE_KEY, db=self._state_db)
        self._staged = IdLogState([lg for lg in logs if lg.ids_upto > upto], None)

    def _merge_bound(self, upto: int, flushes: list[IdLog], lo: int) -> int | None:
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

    # -- lookups

    def lookup(self, txn: Any, ops: np.ndarray, cand: np.ndarray, flushes: list[IdFlush],
               journals: list[np.ndarray], logs: list[IdLog]) -> tuple[np.ndarray, np.ndarray]:
        """The stored decisions (journal records) of the candidate ops (`cand`, from
        `Engine.candidates`): found in a flush not stored yet, in the id log `logs`, else
        in the index; each record read from a journal not stored yet (`journals`) or
        from the journal in `txn`. Returns (prior, has_prior) for `Engine.apply`."""
        idx = np.flatnonzero(cand)
        prior = np.zeros(len(ops), dtype=JOURNAL_DTYPE)
        has_prior = np.zeros(len(ops), dtype=bool)
        # Resent ops are mostly recent: look in the flushes not stored yet and in the
        # id log first, all at once.
        q_src = np.ascontiguousarray(ops["source"][idx])
        q_seq = np.ascontiguousarray(ops["seq"][idx])
        in_flush = np.zeros(len(q_src), dtype=np.uint64)
        for flush in flushes:
            flush.find(self.codec, q_src, q_seq, in_flush)
        for log in reversed(logs):  # newest first: a resent op is most likely a recent one
            if in_flush.all():
                break  # (an id is decided once: found, it is in no other flush)
            log.find(q_src, q_seq, in_flush)
        hit = in_flush != 0
        found_j = [in_flush[hit]]  # journal_seqs found, and the ops they answer
        found_i = [idx[hit]]
        rest = idx[~hit]
        if len(rest):
            ids_cur = txn.cursor(db=self._ids_db)
            late_get = functools.partial(txn.get, db=self._late_db)
            more_j, more_i = [], []
            for i, source, seq in zip(rest.tolist(), ops["source"][rest].tolist(), ops["seq"][rest].tolist()):
                jseq = lookup_id(self.codec, ids_cur, late_get, source, seq)
                if jseq is not None:
                    more_j.append(jseq)
                    more_i.append(i)
            found_j.append(np.array(more_j, dtype=np.uint64))
            found_i.append(np.array(more_i, dtype=np.int64))
        jseqs = np.concatenate(found_j).astype(np.uint64)
        which = np.concatenate(found_i).astype(np.int64)
        # In journal order, so each stored batch is read at most once per batch, and its
        # records decoded in one call; the fetcher also keeps recently read batches
        # (resent taps point at recent ones).
        order = np.argsort(jseqs, kind="stable")
        jseqs, which = jseqs[order], which[order]
        has_prior[which] = True
        stored = np.ones(len(jseqs), dtype=bool)
        if journals:
            for k, (jseq, i) in enumerate(zip(jseqs.tolist(), which.tolist())):
                rec = staged_record(journals, jseq)
                if rec is not None:
                    prior[i] = rec
                    stored[k] = False
        if stored.all() and len(which) == len(ops) and (which[1:] > which[:-1]).all():
            # Every op found, in op order (a list read back): the records as fetched.
            return RecordFetcher(txn, self._journal_db, self._decoded).many(jseqs), has_prior
        if stored.any():
            fetch = RecordFetcher(txn, self._journal_db, self._decoded)
            prior[which[stored]] = fetch.many(jseqs[stored])
        return prior, has_prior

    # -- the id-flush thread

    def _in_flush_thread(self, fn: Any, *args: Any) -> Future[Any]:
        """Run fn(*args) in the id-flush thread (one, so its jobs run in order)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardledger-idflush")
        return self._executor.submit(fn, *args)

    def close(self) -> None:
        """Stop the id-flush thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
