"""Pipelined commits: one batch's durable commit overlaps the next batch's kernel.

`Ledger.submit(ops)` runs a batch through the engine at once, in the caller's thread
and in call order, then hands its journal records to the ledger's commit thread.
That thread encodes them (while batches are in flight, the hash chain is its own),
stores them in a write transaction of its own and resolves the batch's future once
the commit is durable. While it commits (page writes and two fsyncs, without the
GIL) the caller already runs the next batch: on two cores the kernel and the commit
overlap instead of taking turns.

What keeps this exactly as safe as `Ledger.apply`:

- Batches commit in submission order, one write transaction each, whole or absent;
  a future resolves only after its batch is durable.
- The engine runs ahead of the disk by at most PIPELINE_BATCHES_MAX batches. Each
  staged batch records what it was computed on (the journal head, the id-state mark,
  the number of fare versions); the commit thread checks them inside its
  transaction, so a batch another process committed meanwhile is a conflict, never
  a fork of the history.
- An id index flush due after a batch is prepared with it (the decisions leave the
  engine's window) and stored in the same transaction. Until that commit is done the
  flushed ids are neither in memory nor readable, so a batch that must look ids up
  in the index first waits for the pipeline. A snapshot is copied after its batch
  the same way; the commit thread starts writing its file once that batch is
  stored, and names a finished file in a later batch's transaction.
- A commit that fails (a conflict, a full map, a full disk) commits nothing, and
  every batch staged after it was computed on state that never became durable. The
  pipeline stops committing and sets those batches aside; the ledger then reloads
  its engine from disk and re-applies them synchronously, in order, resolving each
  future with the re-applied results (or the error). See `Ledger._settle`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

#: Most batches handed to the commit thread and not yet durable: one committing and
#: one waiting, while the caller runs the next. More only lengthens the waits at
#: the batches that must drain the pipeline (snapshots).
PIPELINE_BATCHES_MAX = 2


class StagedBatch:
    """A batch whose kernel ran: its results, its journal records, and what it was
    computed on (checked again inside the transaction that stores it)."""

    __slots__ = ("ops", "results", "journal", "tap_time_us", "flush", "snapshot", "expected_seq", "ids_upto",
                 "fare_count", "future", "error")

    def __init__(self, ops: Any, results: Any, journal: Any, tap_time_us: int) -> None:
        self.ops = ops  # kept to re-apply the batch if an earlier commit fails
        self.results = results
        self.journal = journal  # None: the batch decided no op anew, nothing to store
        self.tap_time_us = tap_time_us  # latest time of a tap that rated a fare, or -1
        self.flush: tuple | None = None  # an id flush prepared after this batch, stored with it
        self.snapshot: tuple | None = None  # a snapshot taken after it, written once it is stored
        self.expected_seq = 0
        self.ids_upto = 0
        self.fare_count = 0
        self.future: Future | None = None
        self.error: BaseException | None = None


class CommitPipeline:
    """The commit thread of one Ledger and its queue of staged batches."""

    def __init__(self, commit: Callable[[StagedBatch], None], on_failure: Callable[[], None]) -> None:
        self._commit = commit  # stores one batch in its own write txn; raises on failure
        self._on_failure = on_failure  # called (in the commit thread) after a failed commit
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[StagedBatch] = deque()
        self._failed: list[StagedBatch] = []  # set aside, in order, for re-applying
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def broken(self) -> bool:
        """True while batches are set aside after a failed commit."""
        return bool(self._failed)

    @property
    def idle(self) -> bool:
        """True when nothing is queued or being committed (a hint: no lock taken)."""
        return not self._queue and not self._busy

    def push(self, item: StagedBatch) -> None:
        """Queue a staged batch; blocks while PIPELINE_BATCHES_MAX are in flight."""
        with self._cond:
            while len(self._queue) + self._busy >= PIPELINE_BATCHES_MAX:
                self._cond.wait()
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cardledger-commit", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def drain(self) -> list[StagedBatch]:
        """Wait until nothing is queued or being committed; return the batches set
        aside after a failed commit (in submission order) and forget them."""
        with self._cond:
            while self._queue or self._busy:
                self._cond.wait()
            failed, self._failed = self._failed, []
        return failed

    def stop(self) -> None:
        """Commit what is queued, then end the commit thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                item = self._queue.popleft()
                self._busy = True
                if self._failed:
                    # Computed on top of a batch that never became durable.
                    self._failed.append(item)
                    self._busy = False
                    self._cond.notify_all()
                    continue
            try:
                self._commit(item)
            except BaseException as e:  # the ledger re-applies it: nothing is lost
                item.error = e
                with self._cond:
                    self._failed.append(item)
                    self._busy = False
                    self._cond.notify_all()
                self._on_failure()
                continue
            assert item.future is not None
            item.future.set_result(item.results)
            with self._cond:
                self._busy = False
                self._cond.notify_all()
