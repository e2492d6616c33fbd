"""Group commit for gateways: single ops from many threads and asyncio tasks, one
durable batch per commit.

A `Committer` owns a Ledger and one thread that feeds it. Callers `submit` single
ops (or a linked chain as one unit) and get a future; the thread takes everything
queued (at most `batch_ops_max` ops) as one batch and hands it to `Ledger.submit` —
one LMDB transaction, one durable commit, made in the ledger's store thread — and
when that commit is durable every caller's future resolves with that caller's own
result. Meanwhile this thread already gathers and runs the next batch (the ledger
pipelines them, see `pipeline.py`). While one commit is in flight the next batch
gathers by itself, so under load
batches grow with the arrival rate and each op waits about one to two commits; an
optional `linger_us` waits a little longer for company before a commit when the
previous batch held more than one submission (fewer fsyncs under moderate load, at
the price of latency).

The queue is bounded (`queue_ops_max`): `submit` blocks when it is full
(backpressure), or raises `QueueFullError` after `timeout`. An event loop's ops count
toward the same bound, whether gathered on the loop or waiting for the committer
thread; when it is reached, `apply_async` still returns its future at once, and the op
waits for room in a worker thread, off the loop. (Thread submitters do not see what a
loop has gathered: with both at once, at most twice the bound waits.) `close()` stops
taking ops, commits everything already accepted, and only then returns.

Submissions from an event loop (`apply_async`) take a shorter way: they gather on
the loop itself, and a callback that runs once the loop iteration that queued them is
over hands them to the ledger from the loop's own thread (`Ledger.submit_nowait`, which
never waits: a batch the ledger cannot take at once goes to the committer thread
instead). Woken for them, the committer thread must first win the GIL from the busy
loop, so it gathered only once the loop went idle, and each wave of submissions, its
batch and its commit ran one after another; this way is faster in alternating runs
(docs/performance-log.md, 2026-11-27, group commit).

Why the hot path looks the way it does: with the GIL, every Python step of a
submission, of the store thread and of the event loop shares one core. A submission
is therefore a tuple appended under a plain lock, the committer thread is woken only when
it sleeps, and an event loop's futures of one batch are resolved by a single callback.
"""

from __future__ import annotations

import asyncio
import functools
from asyncio import get_running_loop
import threading
import time
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import wait as futures_wait
from typing import Any

import numpy as np

from ..errors import LedgerClosedError, LedgerError, SchemaError
from ..ledger import Ledger
from ..schema import BATCH_OPS_MAX, OP_DTYPE, OpFlags

#: Default most ops per commit.
COMMIT_OPS_MAX_DEFAULT = 8_192
#: Default wait for more ops before a commit, in µs: none. The commit in flight is
#: what gathers the next batch; see the module docstring.
LINGER_US_DEFAULT = 0
#: Default most ops waiting to be committed.
QUEUE_OPS_MAX_DEFAULT = 65_536
#: Most batches one event loop's submissions have in flight at once; more wait on the
#: loop for one of them to commit (and then go out together).
LOOP_BATCHES_IN_FLIGHT_MAX = 2
#: How often an event loop's submission waiting for room looks again at what the loop
#: has gathered (which shrinks without notifying it), in seconds.
LOOP_ROOM_POLL_S = 0.005

_OP_SIZE = OP_DTYPE.itemsize
_FLAGS_OFFSET = OP_DTYPE.fields["flags"][1]
_LINKED = int(OpFlags.LINKED)
assert _LINKED < 256, "the LINKED bit must sit in the low byte of flags"

# A queued submission is a tuple (records: bytes, n_ops: int, future, loop): `loop` is
# the event loop owning an asyncio future, or None for a concurrent Future. A single op
# (n_ops 1, submitted alone) is resolved with one record; a chain with an array.
_REC, _N, _FUT, _LOOP = range(4)


class QueueFullError(LedgerError, TimeoutError):
    """The committer's queue stayed full for the whole timeout: the ledger is saturated."""


def _resolve_in_loop(futures: list, results: Any, error: BaseException | None) -> None:
    """Runs in an event loop: resolve that loop's futures of one batch at once.
    `results[i]` is future i's value (a record or an array)."""
    if error is not None:
        for fut in futures:
            if not fut.cancelled():
                fut.set_exception(error)
        return
    for fut, value in zip(futures, results):
        if not fut.cancelled():
            fut.set_result(value)


def _values(taken: list[tuple], results: np.ndarray) -> list:
    """Each submission's share of its batch's results: a record, or a chain's array."""
    values = []
    i = 0
    for item in taken:
        n = item[_N]
        if n == 1:
            values.append(results[i])
            i += 1
        else:
            values.append(results[i : i - n])
            i -= n
    return values


def _take(queue: list[tuple], ops_max: int, queued_ops: int) -> tuple[list[tuple], int]:
    """Remove from the front of `queue` (holding `queued_ops` ops) the submissions of
    one batch (at most `ops_max` ops, at least one submission, never part of a
    chain); (taken, ops)."""
    if queued_ops <= ops_max:  # the usual case: everything fits, no walk over it
        taken = queue[:]
        queue.clear()
        return taken, queued_ops
    n = k = 0
    while k < len(queue):
        size = abs(queue[k][_N])
        if k and n + size > ops_max:
            break
        n += size
        k += 1
    taken = queue[:k]
    del queue[:k]
    return taken, n


class _LoopBatcher:
    """One event loop's submissions, gathered on that loop (see the module docstring).

    `flush` runs as a loop callback after the iteration that queued them and hands them
    to the ledger a batch at a time, with at most LOOP_BATCHES_IN_FLIGHT_MAX batches in
    flight; a commit landing flushes what gathered meanwhile. Everything here runs in
    the loop's thread, except `Committer._drain` when the loop is not running.
    """

    __slots__ = ("committer", "loop", "items", "n_ops", "scheduled", "in_flight")

    def __init__(self, committer: Committer, loop: asyncio.AbstractEventLoop) -> None:
        self.committer = committer
        self.loop = loop
        self.items: list[tuple] = []
        self.n_ops = 0
        self.scheduled = False  # a flush is queued on the loop
        self.in_flight = 0  # batches handed to the ledger and not yet landed here

    def add(self, item: tuple, n: int) -> None:
        self.items.append(item)
        self.n_ops += n
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self, force: bool = False) -> None:
        """Hand the gathered submissions to the ledger; `force` ignores the in-flight
        bound (closing: `Committer.close` then waits for `_outstanding`)."""
        self.scheduled = False
        c = self.committer
        while self.items and (force or self.in_flight < LOOP_BATCHES_IN_FLIGHT_MAX):
            taken, n = _take(self.items, c.batch_ops_max, self.n_ops)
            self.n_ops -= n
            ops = np.frombuffer(b"".join([t[_REC] for t in taken]), dtype=OP_DTYPE)
            try:
                future = c.ledger.submit_nowait(ops)
            except BaseException as e:  # misuse (the ledger closed): nothing was applied
                c._fail(taken, e)
                continue
            if future is None:  # the ledger would make the loop wait: its thread does
                c._hand_to_thread(taken, n)
                continue
            self.in_flight += 1
            c._track(future)
            future.add_done_callback(functools.partial(self._committed, taken, n))

    def fail_gathered(self, error: BaseException) -> None:
        """The committer stopped: what gathered here never reached the ledger."""
        items, self.items, self.n_ops = self.items, [], 0
        self.committer._settle(items, None, error)

    def _committed(self, taken: list[tuple], n_ops: int, future: Future) -> None:
        """In the ledger's store thread: the batch's futures resolve on their loop."""
        try:
            self.loop.call_soon_threadsafe(self._landed, taken, n_ops, future)
        except RuntimeError:  # that event loop is closed: nobody is waiting
            self.committer._untrack(future)

    def _landed(self, taken: list[tuple], n_ops: int, future: Future) -> None:
        self.in_flight -= 1
        c = self.committer
        c._untrack(future)
        error = future.exception()
        if error is not None:
            c._fail(taken, error)
        else:
            c._count(n_ops)
            results = future.result()
            if n_ops == len(taken) and all(item[_N] == 1 for item in taken):
                # single ops only: one record each, in order (a chain of one op has
                # _N == -1 and gets an array)
                for item, value in zip(taken, results):
                    fut = item[_FUT]
                    if not fut.cancelled():
                        fut.set_result(value)
            else:
                _resolve_in_loop([t[_FUT] for t in taken], _values(taken, results), None)
        if self.items and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)


class Committer:
    """Gathers single ops into one batch per durable commit (see module docstring)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        batch_ops_max: int = COMMIT_OPS_MAX_DEFAULT,
        linger_us: int = LINGER_US_DEFAULT,
        queue_ops_max: int = QUEUE_OPS_MAX_DEFAULT,
    ) -> None:
        if not 1 <= batch_ops_max <= BATCH_OPS_MAX:
            raise ValueError(f"batch_ops_max must be in 1..{BATCH_OPS_MAX}, got {batch_ops_max}")
        if queue_ops_max < batch_ops_max:
            raise ValueError("queue_ops_max must be at least batch_ops_max")
        if linger_us < 0:
            raise ValueError("linger_us must be >= 0")
        self.ledger = ledger
        self.batch_ops_max = batch_ops_max
        self.linger_s = linger_us / 1e6
        self.queue_ops_max = queue_ops_max
        self._lock = threading.Lock()
        # The committer thread sleeps by acquiring `_wakeup` (held while it is awake);
        # whoever finds it `_idle` releases it, under `_lock`, once. A bare lock is the
        # cheapest wake-up there is; a Condition costs several Python calls per notify.
        self._wakeup = threading.Lock()
        self._wakeup.acquire()
        self._room = threading.Condition(self._lock)  # blocked submitters sleep here
        self._queue: list[tuple] = []
        self._queued_ops = 0
        self._idle = False  # the committer thread sleeps on _wakeup
        self._blocked = 0  # submitters waiting on _room
        self._accepting = True  # False once closing or stopped by an error
        self._closing = False
        self._last_batch_units = 0
        self._error: BaseException | None = None
        self._batchers: dict[asyncio.AbstractEventLoop, _LoopBatcher] = {}
        self._outstanding: set[Future] = set()  # the loops' batches not yet landed
        #: Batches committed and ops applied so far (for monitoring).
        self.batches = 0
        self.ops = 0
        self._thread = threading.Thread(target=self._run, name="cardledger-committer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ submitting

    def submit(self, op: Any, timeout: float | None = None) -> Future:
        """Queue one op (an OP_DTYPE record, a 1-element array, or the bytes of one
        record, e.g. `ops[i].tobytes()`); return a Future of its
        RESULT_DTYPE record, resolved once the batch holding it is durable.

        LINKED is refused here (a chain needs all its ops in one batch): use
        `submit_chain`. Blocks while the queue is full; QueueFullError after `timeout`.
        An accepted op is committed even if its future is cancelled: cancelling only
        stops waiting (resubmit the same id to learn its outcome: EXISTS or
        ID_ALREADY_FAILED).
        """
        fut: Future = Future()
        item = (_single_record(op), 1, fut, None)
        if not self._offer(item, 1):
            self._enqueue_blocking(item, timeout)
        return fut

    def submit_chain(self, ops: np.ndarray, timeout: float | None = None) -> Future:
        """Queue ops that must be committed in one batch (e.g. a LINKED chain); return a
        Future of their results (a RESULT_DTYPE array)."""
        rec = self._chain_records(ops)
        fut: Future = Future()
        item = (rec.tobytes(), -len(rec), fut, None)
        if not self._offer(item, len(rec)):
            self._enqueue_blocking(item, timeout)
        return fut

    def apply(self, op: Any, timeout: float | None = None) -> np.void:
        """Submit one op and wait for its durable result."""
        return self.submit(op, timeout).result()

    def apply_async(self, op: Any, loop: asyncio.AbstractEventLoop | None = None) -> "asyncio.Future[np.void]":
        """Submit one op (as for `submit`) from a running event loop; return an asyncio future of its
        RESULT_DTYPE record, resolved once the batch holding it is durable
        (`result = await committer.apply_async(op)`).

        `loop`: the running loop, when the caller holds it already (a gateway's
        connection does). It saves `asyncio.get_running_loop()`, which on Python 3.11
        makes a system call (`getpid`, its fork check) on every call: a visible share
        of a gateway's loop time at one op a request. Passing a loop that is not
        the one running this call is misuse (its future would be touched from two
        threads).

        Never makes the loop wait: the loop's ops of one iteration go to the ledger from
        the loop as one batch (the loop runs its engine step, which takes no lock another
        thread holds: `Ledger.submit_nowait`), or to the committer thread when the ledger is
        busy; when the queue is full, a worker thread waits for room (backpressure) while
        the future stays pending (should the committer close first, the future fails with
        LedgerClosedError: that op was never accepted). A plain function rather than a
        coroutine, because a coroutine frame per op is a measurable share of a
        submission's cost on the loop.
        """
        # The hot path of a gateway: a handful of attribute reads, no lock (everything
        # here runs in the loop's thread; close() drains the loop from it too).
        if loop is None:
            loop = get_running_loop()
        fut = loop.create_future()
        item = (_single_record(op), 1, fut, loop)
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batcher(loop)
        # The bound counts what waits for the committer thread too (a busy ledger's
        # batches go there): read without the lock, it is exact for one loop's ops and
        # a loop's plus threads' ops stay within twice the bound.
        if self._accepting and batcher.n_ops + self._queued_ops < self.queue_ops_max:
            batcher.items.append(item)  # (batcher.add, inlined)
            batcher.n_ops += 1
            if not batcher.scheduled:
                batcher.scheduled = True
                loop.call_soon(batcher.flush)
            return fut
        return self._submit_async_slow(loop, item, 1, batcher)

    def apply_chain_async(self, ops: np.ndarray,
                          loop: asyncio.AbstractEventLoop | None = None) -> "asyncio.Future[np.ndarray]":
        """Submit ops that must share one batch (e.g. a LINKED chain) from a running
        event loop; return an asyncio future of their results (a RESULT_DTYPE array).
        `loop`: as for `apply_async`."""
        rec = self._chain_records(ops)
        if loop is None:
            loop = get_running_loop()
        item = (rec.tobytes(), -len(rec), loop.create_future(), loop)
        batcher = self._batchers.get(loop) or self._batcher(loop)
        if self._accepting and batcher.n_ops + self._queued_ops + len(rec) <= self.queue_ops_max:
            batcher.add(item, len(rec))
            return item[_FUT]
        return self._submit_async_slow(loop, item, len(rec), batcher)

    def _batcher(self, loop: asyncio.AbstractEventLoop) -> _LoopBatcher:
        """The gatherer of this (running) loop's submissions, made on first use; those of
        closed loops with nothing gathered are dropped (what a closed loop gathered is
        handed over by `close`)."""
        with self._lock:
            for old in [lp for lp, b in self._batchers.items() if lp.is_closed() and not b.items]:
                del self._batchers[old]
            batcher = self._batchers[loop] = _LoopBatcher(self, loop)
        return batcher

    def _hand_to_thread(self, taken: list[tuple], n_ops: int) -> None:
        """Queue a loop's batch for the committer thread (already accepted: the queue
        bound does not apply)."""
        with self._lock:
            self._queue.extend(taken)
            self._queued_ops += n_ops
            if self._idle:
                self._idle = False
                self._wakeup.release()

    def _track(self, future: Future) -> None:
        with self._lock:
            self._outstanding.add(future)

    def _untrack(self, future: Future) -> None:
        with self._lock:
            self._outstanding.discard(future)

    def _count(self, n_ops: int) -> None:
        with self._lock:
            self.batches += 1
            self.ops += n_ops

    def _submit_async_slow(self, loop: asyncio.AbstractEventLoop, item: tuple, n: int,
                           batcher: _LoopBatcher) -> asyncio.Future:
        """The queue is full (or the committer closed): wait for room in a worker thread.
        What the loop has gathered counts toward the bound (`batcher`)."""
        fut = item[_FUT]
        if not self._offer(item, n, batcher.n_ops):
            waiting = loop.run_in_executor(None, self._enqueue_blocking, item, None, batcher)

            def refused(w: asyncio.Future) -> None:  # queuing failed: the op was never accepted
                if not w.cancelled() and w.exception() is not None and not fut.done():
                    fut.set_exception(w.exception())  # type: ignore[arg-type]

            waiting.add_done_callback(refused)
        return fut

    def _chain_records(self, ops: np.ndarray) -> np.ndarray:
        """The ops of a chain as contiguous records; SchemaError unless 1..batch_ops_max
        ops whose last one does not carry LINKED."""
        rec = _as_records(ops)
        if not 1 <= len(rec) <= self.batch_ops_max:
            raise SchemaError(f"a chain must have 1..{self.batch_ops_max} ops, got {len(rec)}")
        if int(rec["flags"][-1]) & _LINKED:
            # In a batch of its own it would fail as LINKED_CHAIN_OPEN; gathered with other
            # callers' ops it would link to the next caller's op and fail it too.
            raise SchemaError("the last op of a chain must not carry LINKED (it ends the chain)")
        return rec

    def _offer(self, item: tuple, n: int, gathered: int = 0) -> bool:
        """Queue `item` (`n` ops) if there is room now, counting `gathered` ops waiting
        on the caller's event loop; False if the queue is full."""
        with self._lock:
            if not self._accepting:
                self._raise_closed()
            if self._queued_ops + gathered + n > self.queue_ops_max:
                return False
            self._queue.append(item)
            self._queued_ops += n
            if self._idle:
                self._idle = False
                self._wakeup.release()
        return True

    def _enqueue_blocking(self, item: tuple, timeout: float | None, batcher: _LoopBatcher | None = None) -> None:
        """Queue `item`, waiting for room (backpressure); QueueFullError after `timeout`.
        With `batcher`, what that event loop has gathered counts toward the bound; it
        shrinks without a notification (the loop hands it to the ledger itself), so it
        is read again every LOOP_ROOM_POLL_S."""
        n = abs(item[_N])
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                if not self._accepting:
                    self._raise_closed()
                gathered = batcher.n_ops if batcher is not None else 0  # (an int read: no lock needed)
                if self._queued_ops + gathered + n <= self.queue_ops_max:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if batcher is not None:
                    left = LOOP_ROOM_POLL_S if left is None else min(left, LOOP_ROOM_POLL_S)
                if left is not None and left <= 0:
                    raise QueueFullError(f"committer queue full ({self.queue_ops_max} ops waiting) for {timeout} s")
                self._blocked += 1
                try:
                    self._room.wait(left)
                finally:
                    self._blocked -= 1
            self._queue.append(item)
            self._queued_ops += n
            if self._idle:
                self._idle = False
                self._wakeup.release()

    def _raise_closed(self) -> None:
        if self._error is not None:
            raise LedgerError(f"the committer stopped after an error: {self._error}") from self._error
        raise LedgerClosedError("the committer is closed: open a new one")

    # ------------------------------------------------------------------ the committer thread

    def _take_batch(self) -> list[tuple] | None:
        """Wait for work; return the submissions of the next batch (None: closed and drained)."""
        self._lock.acquire()
        while not self._queue and not self._closing:
            self._sleep()
        if (self.linger_s > 0 and self._queue and self._queued_ops < self.batch_ops_max
                and not self._closing and self._last_batch_units > 1):
            # A little patience fills the batch under moderate load; a lone caller
            # (the last batch held one submission) is not kept waiting for company.
            self._lock.release()
            time.sleep(self.linger_s)
            self._lock.acquire()
        try:
            if not self._queue:
                return None
            taken, n = _take(self._queue, self.batch_ops_max, self._queued_ops)
            self._queued_ops -= n
            self._last_batch_units = len(taken)
            if self._blocked:
                self._room.notify_all()
            return taken
        finally:
            self._lock.release()

    def _sleep(self) -> None:
        """With `_lock` held: release it and sleep until a submission (or close) wakes
        this thread; return with `_lock` held again. Whoever wakes it has cleared
        `_idle` and released `_wakeup`, which this acquire takes back."""
        self._idle = True
        self._lock.release()
        self._wakeup.acquire()
        self._lock.acquire()

    def _run(self) -> None:
        last: Future | None = None
        while True:
            taken = self._take_batch()
            if taken is None:
                break
            ops = np.frombuffer(b"".join([t[_REC] for t in taken]), dtype=OP_DTYPE)
            try:
                # submit, not apply: this thread gathers the next batch while the
                # ledger's store thread makes this one durable.
                last = self.ledger.submit(ops)
            except BaseException as e:  # misuse (the ledger closed): nothing was applied
                self._fail(taken, e)
                if self._error is not None:
                    return
                continue
            last.add_done_callback(functools.partial(self._batch_done, taken, len(ops)))
        if last is not None:
            futures_wait([last])  # commits resolve in order: the last one resolves last

    def _batch_done(self, taken: list[tuple], n_ops: int, future: Future) -> None:
        """A batch's future resolved (in the ledger's store thread, or in this one)."""
        error = future.exception()
        if error is not None:
            self._fail(taken, error)
            return
        self._count(n_ops)
        self._settle(taken, future.result(), None)

    def _fail(self, taken: list[tuple], error: BaseException) -> None:
        """The batch is not applied: every caller learns why. An error that is not a
        ledger's operating failure (StorageError) stops the committer."""
        self._settle(taken, None, error)
        if not isinstance(error, LedgerError) or isinstance(error, LedgerClosedError):
            with self._lock:
                self._error = error
                self._accepting = False
                failed, self._queue, self._queued_ops = self._queue, [], 0
                self._room.notify_all()
                batchers = list(self._batchers.values())
            self._settle(failed, None, error)
            for b in batchers:  # what gathered on a loop never reached the ledger
                try:
                    b.loop.call_soon_threadsafe(b.fail_gathered, error)
                except RuntimeError:  # that event loop is closed: nobody is waiting
                    pass

    @staticmethod
    def _settle(taken: list[tuple], results: np.ndarray | None, error: BaseException | None) -> None:
        """Resolve every submission's future; an event loop's futures with one callback."""
        by_loop: dict[Any, tuple[list, list]] = {}
        values = _values(taken, results) if results is not None else [None] * len(taken)
        for (_records, _n, fut, loop), value in zip(taken, values):
            if loop is not None:
                pair = by_loop.get(loop)
                if pair is None:
                    pair = by_loop[loop] = ([], [])
                pair[0].append(fut)
                pair[1].append(value)
                continue
            try:
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(value)
            except InvalidStateError:  # the caller cancelled its future: nobody is waiting
                pass
        for loop, (futures, values) in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_in_loop, futures, values, error)
            except RuntimeError:  # that event loop is closed: nobody is waiting
                pass

    # ------------------------------------------------------------------ lifecycle

    def close(self, timeout: float | None = None) -> None:
        """Stop taking ops, commit every op already accepted, and stop the thread.

        Ops gathered on an event loop are handed over from that loop (from here, when
        called in that loop's thread or when the loop no longer runs)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._accepting = False
            batchers = list(self._batchers.values())
        for b in batchers:
            self._drain(b, None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._lock:
            outstanding = list(self._outstanding)
        _, not_done = futures_wait(outstanding, None if deadline is None else max(0.0, deadline - time.monotonic()))
        if not_done:
            raise TimeoutError("the committer's event-loop batches did not commit in time")
        with self._lock:
            self._closing = True
            if self._idle:
                self._idle = False
                self._wakeup.release()
            self._room.notify_all()
        self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            raise TimeoutError("the committer did not drain its queue in time")

    @staticmethod
    def _drain(batcher: _LoopBatcher, timeout: float | None) -> None:
        """Hand everything gathered on a loop to the ledger (or the committer thread)."""
        try:
            running = get_running_loop()
        except RuntimeError:
            running = None
        if running is batcher.loop or not batcher.loop.is_running():
            batcher.flush(force=True)  # this thread owns the loop, or nobody runs it
            return
        handed: Future = Future()

        def drain_in_loop() -> None:
            try:
                batcher.flush(force=True)
                handed.set_result(None)
            except BaseException as e:  # pragma: no cover - flush settles its own errors
                handed.set_exception(e)

        try:
            batcher.loop.call_soon_threadsafe(drain_in_loop)
        except RuntimeError:  # closed since: nobody runs it any more
            batcher.flush(force=True)
            return
        handed.result(timeout)

    def __enter__(self) -> "Committer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _single_record(op: Any) -> bytes:
    """The bytes of one op that may be submitted alone (no LINKED)."""
    if type(op) is np.void and op.dtype is OP_DTYPE:  # the usual case first
        raw = op.tobytes()
    elif type(op) is bytes and len(op) == _OP_SIZE:
        raw = op
    else:
        rec = _as_records(op)
        if len(rec) != 1:
            raise SchemaError(f"submit takes one op, got {len(rec)}: use submit_chain for a linked chain")
        raw = rec.tobytes()
    if raw[_FLAGS_OFFSET] & _LINKED:
        raise SchemaError("a single op may not carry LINKED: submit a linked chain with submit_chain")
    return raw


def _as_records(op: Any) -> np.ndarray:
    if isinstance(op, np.void) and op.dtype == OP_DTYPE:
        return np.array([op], dtype=OP_DTYPE)
    if isinstance(op, np.ndarray) and op.dtype == OP_DTYPE:
        return np.ascontiguousarray(op.reshape(-1))
    raise SchemaError("ops must be records of cardledger.OP_DTYPE: build them with cardledger.new_ops(n)")
