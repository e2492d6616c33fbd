"""Pipelined commits: one batch's durable commit overlaps the next batch's kernel.

`Ledger.submit(ops)` runs a batch through the engine at once, in the caller's thread
and in call order, then hands its journal records to the ledger's two pipeline
threads. The encoder packs and hashes them (while batches are in flight, the hash
chain is its own); the store thread stores them in a write transaction of its own and
resolves the batch's future once the commit is durable. While it commits (page
writes and two fsyncs, without the GIL) the encoder prepares the next batch and the
caller already runs the one after: on two cores the kernel, the encoding and the
disk overlap instead of taking turns.

What keeps this exactly as safe as `Ledger.apply`:

- Batches commit in submission order, one write transaction each, whole or absent;
  a future resolves only after its batch is durable.
- The engine runs ahead of the disk by at most PIPELINE_BATCHES_MAX batches. Each
  staged batch records what it was computed on (the journal head, the id-state mark,
  the number of fare versions); the store thread checks them inside its
  transaction, so a batch another process committed meanwhile is a conflict, never
  a fork of the history.
- An id index flush due after a batch is prepared with it (the decisions leave the
  engine's window) and stored in the same transaction. Until that commit is done the
  flushed ids are not readable from LMDB: a later batch that must look ids up finds
  them in the in-flight batches' flushes, and their records in the in-flight
  batches' journals (`in_flight_items`, taken before its read transaction begins,
  so nothing falls between the two). A snapshot is copied after its batch
  the same way; the store thread starts writing its file once that batch is
  stored, and names a finished file in a later batch's transaction.
- A commit that fails (a conflict, a full map, a full disk) commits nothing, and
  every batch staged after it was computed on state that never became durable. The
  pipeline stops committing and sets those batches aside; the ledger then reloads
  its engine from disk and re-applies them synchronously, in order, resolving each
  future with the re-applied results (or the error). See `Ledger._settle`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

#: Most batches handed over and not yet durable: about one per stage (encoding,
#: committing) plus one waiting, while the caller runs the next. More only adds
#: latency.
PIPELINE_BATCHES_MAX = 3


class StagedBatch:
    """A batch whose kernel ran: its results, its journal records, and what it was
    computed on (checked again inside the transaction that stores it)."""

    __slots__ = ("ops", "results", "journal", "packed", "marks", "tap_time_us", "purchase_time_us", "flush", "snapshot", "expected_seq",
                 "ids_upto", "fare_count", "future", "error", "order", "key", "value", "hash")

    def __init__(self, ops: Any, results: Any, journal: Any, packed: bytes | None, tap_time_us: int) -> None:
        self.ops = ops  # kept to re-apply the batch if an earlier commit fails
        self.results = results
        self.journal = journal  # None: the batch decided no op anew, nothing to store
        self.packed = packed  # the journal records as the journal stores them (the engine packed them)
        self.marks: Any = None  # where its records start (`journal_record_marks`), if the engine noted it
        self.tap_time_us = tap_time_us  # latest time of a tap that rated a fare, or -1
        self.purchase_time_us = -1  # latest time of a PURCHASE decided, or -1
        self.flush: Any = None  # an id flush (store.ids.IdFlush) prepared after this batch, stored with it
        self.snapshot: tuple | None = None  # a snapshot taken after it, written once it is stored
        self.expected_seq = 0
        self.ids_upto = 0
        self.fare_count: Any = 0  # (fare versions, offer versions) the batch was decided with
        self.future: Future | None = None
        self.error: BaseException | None = None
        self.order = 0  # position in submission order
        # Filled by the encoder: the journal batch's key, value and hash (and the flush's rows).
        self.key: bytes | None = None
        self.value: bytes | None = None
        self.hash: bytes | None = None


class CommitPipeline:
    """The threads that store one Ledger's staged batches: the encode thread, then the
    store thread (`cardledger-encode`, `cardledger-store`).

    Each stage takes batches in submission order; the encode thread's work (packing and
    hashing the journal, encoding an id flush) runs while the store thread waits on the
    disk for the batch before. A batch's future resolves after the store thread stored it.
    """

    def __init__(self, prepare: Callable[[StagedBatch], None], commit: Callable[[StagedBatch], None],
                 on_failure: Callable[[], None]) -> None:
        self._stages = (prepare, commit)  # each raises on failure
        self._names = ("cardledger-encode", "cardledger-store")
        self._on_failure = on_failure  # called (in a stage's thread) after a failure
        self._cond = threading.Condition(threading.Lock())
        self._queues: tuple[deque[StagedBatch], ...] = (deque(), deque())
        self._in_flight = 0  # pushed and neither resolved nor set aside
        self._live: dict[int, StagedBatch] = {}  # those batches, by submission order
        self._pushed = 0
        self._failed: list[StagedBatch] = []  # set aside for re-applying
        self._fail_order: int | None = None  # the first failed batch: every later one is set aside
        self._stopping = False
        self._threads: list[threading.Thread] = []

    @property
    def broken(self) -> bool:
        """True while batches are set aside after a failure."""
        return bool(self._failed)

    def owns_current_thread(self) -> bool:
        """True when called from one of this pipeline's threads (a future's callback)."""
        return threading.current_thread() in self._threads

    @property
    def idle(self) -> bool:
        """True when no batch is in flight (a hint: no lock taken)."""
        return self._in_flight == 0

    @property
    def has_room(self) -> bool:
        """Whether `push` would return at once (fewer than PIPELINE_BATCHES_MAX in
        flight). Only the pusher adds batches, so room it sees stays."""
        return self._in_flight < PIPELINE_BATCHES_MAX

    def push(self, item: StagedBatch) -> None:
        """Queue a staged batch; blocks while PIPELINE_BATCHES_MAX are in flight."""
        with self._cond:
            while self._in_flight >= PIPELINE_BATCHES_MAX:
                self._cond.wait()
            item.order = self._pushed
            self._pushed += 1
            self._in_flight += 1
            self._live[item.order] = item
            self._queues[0].append(item)
            if not self._threads:
                for i, name in enumerate(self._names):
                    t = threading.Thread(target=self._run, args=(i,), name=name, daemon=True)
                    t.start()
                    self._threads.append(t)
            self._cond.notify_all()

    def in_flight_items(self) -> list[StagedBatch]:
        """The batches handed over and not yet stored (nor set aside), oldest first.
        Anything stored before this call is visible to a transaction begun after it."""
        with self._cond:
            return list(self._live.values())

    def drain(self) -> list[StagedBatch]:
        """Wait until no batch is in flight; return the batches set aside after a
        failure (in submission order) and forget them."""
        with self._cond:
            while self._in_flight:
                self._cond.wait()
            failed, self._failed, self._fail_order = self._failed, [], None
        failed.sort(key=lambda item: item.order)
        return failed

    def stop(self) -> None:
        """End the threads once nothing is in flight (call `drain` first)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            threads = list(self._threads)
        for t in threads:
            if t is not threading.current_thread():
                t.join()

    def _run(self, stage: int) -> None:
        queue, work = self._queues[stage], self._stages[stage]
        last = stage == len(self._stages) - 1
        while True:
            with self._cond:
                while not queue and not self._stopping:
                    self._cond.wait()
                if not queue:
                    return
                item = queue.popleft()
                if self._fail_order is not None and item.order > self._fail_order:
                    # Computed on top of a batch that never became durable.
                    self._set_aside(item)
                    continue
            try:
                work(item)
            except BaseException as e:  # the ledger re-applies it: nothing is lost
                item.error = e
                with self._cond:
                    if self._fail_order is None or item.order < self._fail_order:
                        self._fail_order = item.order
                    self._set_aside(item)
                self._on_failure()
                continue
            if last:
                with self._cond:
                    self._in_flight -= 1
                    del self._live[item.order]
                    self._cond.notify_all()
                # Stored: resolve it (its done-callbacks run here, in this thread).
                assert item.future is not None
                item.future.set_result(item.results)
            else:
                with self._cond:
                    self._queues[stage + 1].append(item)
                    self._cond.notify_all()

    def _set_aside(self, item: StagedBatch) -> None:
        """With the lock held: a batch leaves the pipeline unstored, for re-applying."""
        self._failed.append(item)
        self._in_flight -= 1
        del self._live[item.order]
        self._cond.notify_all()


class SubmitWindow:
    """Feeds a ledger's pipeline from one caller: `submit` batches in order, and each
    batch's results come back in order to `done(tag, results, latency_s)` once it is
    durable (latency: from `submit` to the future's resolution). Keeps the pipeline
    full without letting more than one batch wait for it; `drain` waits for the rest.
    """

    def __init__(self, ledger: Any, done: Callable[[Any, Any, float], None]) -> None:
        self._ledger = ledger
        self._done = done
        self._in_flight: deque[tuple[Any, float, Future, list[float]]] = deque()

    def submit(self, ops: Any, tag: Any = None) -> None:
        """Submit one batch; first hand back every earlier batch already durable."""
        resolved_at: list[float] = []
        submitted_at = time.perf_counter()
        future = self._ledger.submit(ops)
        # Runs in the ledger's store thread: it only notes the time.
        future.add_done_callback(lambda _f: resolved_at.append(time.perf_counter()))
        self._in_flight.append((tag, submitted_at, future, resolved_at))
        while self._in_flight and (len(self._in_flight) > PIPELINE_BATCHES_MAX or self._in_flight[0][2].done()):
            self._finish_oldest()

    def drain(self) -> None:
        """Wait for every batch submitted and hand back their results."""
        while self._in_flight:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        tag, submitted_at, future, resolved_at = self._in_flight.popleft()
        results = future.result()
        self._done(tag, results, resolved_at[0] - submitted_at)
