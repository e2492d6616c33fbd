"""Group commit for gateways: single ops from many threads and asyncio tasks, one
durable batch per commit.

A `Committer` owns a Ledger and one thread that applies it. Callers `submit` single
ops (or a linked chain as one unit) and get a future; the thread gathers what is
queued into one batch (at most `batch_ops_max` ops, waiting at most `linger_us` for
more once the first op is there, unless the previous batch held a single submission), applies it — one LMDB transaction, one durable
commit — and resolves every caller's future with that caller's own result. So each
op's latency is about one commit, while throughput stays near the batch rate.

The queue is bounded (`queue_ops_max`): `submit` blocks when it is full
(backpressure), or raises `QueueFullError` after `timeout`. `close()` stops taking
ops, commits everything already accepted, and only then returns.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from concurrent.futures import Future, InvalidStateError
from typing import Any

import numpy as np

from .errors import LedgerClosedError, LedgerError, SchemaError
from .ledger import Ledger
from .schema import BATCH_OPS_MAX, OP_DTYPE, OpFlags

#: Default most ops per commit.
COMMIT_OPS_MAX_DEFAULT = 8_192
#: Default longest wait for more ops once one is queued, in µs.
LINGER_US_DEFAULT = 200
#: Default most ops waiting to be committed.
QUEUE_OPS_MAX_DEFAULT = 65_536


class QueueFullError(LedgerError, TimeoutError):
    """The committer's queue stayed full for the whole timeout: the ledger is saturated."""


class _Unit:
    """One submission: one op, or a linked chain that must share a batch. `loop` is
    set when the future is an asyncio future of that event loop."""

    __slots__ = ("records", "future", "single", "loop")

    def __init__(self, records: bytes, future: Any, single: bool, loop: Any = None) -> None:
        self.records = records
        self.future = future
        self.single = single
        self.loop = loop


def _resolve_all(pairs: list) -> None:
    """Runs in an event loop: resolve that loop's futures of one batch at once."""
    for fut, value, is_error in pairs:
        if fut.cancelled():
            continue
        if is_error:
            fut.set_exception(value)
        else:
            fut.set_result(value)


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
        self._queue: collections.deque[_Unit] = collections.deque()
        self._queued_ops = 0
        self._cond = threading.Condition()
        self._closing = False
        self._last_batch_units = 0
        self._error: BaseException | None = None
        #: Batches committed and ops applied so far (for monitoring).
        self.batches = 0
        self.ops = 0
        self._thread = threading.Thread(target=self._run, name="cardledger-committer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ submitting

    def submit(self, op: Any, timeout: float | None = None) -> Future:
        """Queue one op (an OP_DTYPE record or 1-element array); return a Future of its
        RESULT_DTYPE record, resolved once the batch holding it is durable.

        LINKED is refused here (a chain needs all its ops in one batch): use
        `submit_chain`. Blocks while the queue is full; QueueFullError after `timeout`.
        An accepted op is committed even if its future is cancelled: cancelling only
        stops waiting (resubmit the same id to learn its outcome: EXISTS or
        ID_ALREADY_FAILED).
        """
        return self._enqueue(_Unit(_single_record(op), Future(), True), 1, timeout)

    def submit_chain(self, ops: np.ndarray, timeout: float | None = None) -> Future:
        """Queue ops that must be committed in one batch (e.g. a LINKED chain); return a
        Future of their results (a RESULT_DTYPE array)."""
        rec = _as_records(ops)
        if not 1 <= len(rec) <= self.batch_ops_max:
            raise SchemaError(f"a chain must have 1..{self.batch_ops_max} ops, got {len(rec)}")
        return self._enqueue(_Unit(rec.tobytes(), Future(), False), len(rec), timeout)

    def apply(self, op: Any, timeout: float | None = None) -> np.void:
        """Submit one op and wait for its durable result."""
        return self.submit(op, timeout).result()

    async def apply_async(self, op: Any) -> np.void:
        """Submit one op from asyncio and await its durable result (never blocks the loop:
        a full queue makes the task wait in a worker thread)."""
        loop = asyncio.get_running_loop()
        unit = _Unit(_single_record(op), loop.create_future(), True, loop)
        try:
            self._enqueue(unit, 1, 0)
        except QueueFullError:
            await loop.run_in_executor(None, self._enqueue, unit, 1, None)
        return await unit.future

    def _enqueue(self, unit: _Unit, n: int, timeout: float | None) -> Future:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closing:
                    raise LedgerClosedError("the committer is closed: open a new one")
                if self._error is not None:
                    raise LedgerError(f"the committer stopped after an error: {self._error}") from self._error
                if self._queued_ops + n <= self.queue_ops_max:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise QueueFullError(f"committer queue full ({self.queue_ops_max} ops waiting) for {timeout} s")
                self._cond.wait(left)
            self._queue.append(unit)
            self._queued_ops += n
            self._cond.notify_all()
        return unit.future

    # ------------------------------------------------------------------ the commit thread

    def _take_batch(self) -> list[_Unit] | None:
        """Wait for work; return the units of the next batch (None: closed and drained)."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None
            if (self._queued_ops < self.batch_ops_max and self.linger_s > 0 and not self._closing
                    and self._last_batch_units > 1):
                # A little patience fills the batch under moderate load; a lone caller
                # (the last batch held one submission) is not kept waiting for company.
                self._cond.wait(self.linger_s)
            units: list[_Unit] = []
            n = 0
            while self._queue:
                size = len(self._queue[0].records) // OP_DTYPE.itemsize
                if units and n + size > self.batch_ops_max:
                    break
                units.append(self._queue.popleft())
                n += size
            self._queued_ops -= n
            self._last_batch_units = len(units)
            self._cond.notify_all()  # room for blocked submitters
            return units

    def _run(self) -> None:
        while True:
            units = self._take_batch()
            if units is None:
                return
            ops = np.frombuffer(b"".join(u.records for u in units), dtype=OP_DTYPE).copy()
            try:
                results = self.ledger.apply(ops)
            except BaseException as e:  # the batch is not applied: every caller learns why
                self._settle(units, None, e)
                if not isinstance(e, LedgerError) or isinstance(e, LedgerClosedError):
                    with self._cond:
                        self._error = e
                        self._fail_queued(e)
                    return
                continue
            self.batches += 1
            self.ops += len(ops)
            self._settle(units, results, None)

    @staticmethod
    def _settle(units: list[_Unit], results: np.ndarray | None, error: BaseException | None) -> None:
        """Resolve every unit's future; asyncio futures with one callback per loop."""
        by_loop: dict[Any, list] = {}
        i = 0
        for u in units:
            k = len(u.records) // OP_DTYPE.itemsize
            if error is not None:
                value, is_error = error, True
            else:
                assert results is not None
                value, is_error = (results[i].copy() if u.single else results[i : i + k].copy()), False
            i += k
            if u.loop is not None:
                by_loop.setdefault(u.loop, []).append((u.future, value, is_error))
                continue
            try:
                if is_error:
                    u.future.set_exception(value)
                else:
                    u.future.set_result(value)
            except InvalidStateError:  # the caller cancelled its future: nobody is waiting
                pass
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, pairs)
            except RuntimeError:  # that event loop is closed: nobody is waiting
                pass

    def _fail_queued(self, e: BaseException) -> None:
        units = list(self._queue)
        self._queue.clear()
        self._queued_ops = 0
        self._cond.notify_all()
        self._settle(units, None, e)

    # ------------------------------------------------------------------ lifecycle

    def close(self, timeout: float | None = None) -> None:
        """Stop taking ops, commit every op already accepted, and stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the committer did not drain its queue in time")

    def __enter__(self) -> "Committer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _single_record(op: Any) -> bytes:
    """The 80 bytes of one op that may be submitted alone (no LINKED)."""
    if isinstance(op, np.void) and op.dtype == OP_DTYPE:
        flags = int(op["flags"])
        raw = op.tobytes()
    else:
        rec = _as_records(op)
        if len(rec) != 1:
            raise SchemaError(f"submit takes one op, got {len(rec)}: use submit_chain for a linked chain")
        flags = int(rec["flags"][0])
        raw = rec.tobytes()
    if flags & OpFlags.LINKED:
        raise SchemaError("a single op may not carry LINKED: submit a linked chain with submit_chain")
    return raw


def _as_records(op: Any) -> np.ndarray:
    if isinstance(op, np.void) and op.dtype == OP_DTYPE:
        return np.array([op], dtype=OP_DTYPE)
    if isinstance(op, np.ndarray) and op.dtype == OP_DTYPE:
        return np.ascontiguousarray(op.reshape(-1))
    raise SchemaError("ops must be records of cardledger.OP_DTYPE: build them with cardledger.new_ops(n)")
