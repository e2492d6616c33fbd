"""The journal's time index: each stored batch's earliest and latest event time.

A query by event time (one operator's day among 10^8 records) must not decode the
whole journal. Ops mostly arrive in event-time order, so each batch's records span a
short time; a batch of late uploads spans a longer one. Each batch's (earliest,
latest) event time is kept in the `state` database under `tidx` + its key, written in
the transaction that stores the batch (one small value a batch), and a query decodes
only the batches whose span meets its range. Batches stored before the index existed
have no entry: a query reads those whole (correct, and slower), and `Ledger.reindex`
writes their entries.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from .keys import KEY, prefixed

#: Prefix of a batch's entry in the `state` database (+ the batch's key).
TIME_INDEX_PREFIX = b"tidx"
#: An entry: the batch's earliest and latest event time_us.
TIME_SPAN = struct.Struct("<qq")


def span_of(records: np.ndarray) -> bytes:
    """The entry of a batch holding `records`."""
    t = records["time_us"]
    return TIME_SPAN.pack(int(t.min()), int(t.max()))


def put(txn: Any, state_db: Any, batch_key: bytes, records: np.ndarray) -> None:
    """Write the entry of the batch stored under `batch_key`."""
    txn.put(TIME_INDEX_PREFIX + batch_key, span_of(records), db=state_db)


def spans(txn: Any, state_db: Any) -> dict[int, tuple[int, int]]:
    """Every entry: batch's last journal_seq -> (earliest, latest) event time."""
    out: dict[int, tuple[int, int]] = {}
    for key, value in prefixed(txn, state_db, TIME_INDEX_PREFIX):
        if len(key) == len(TIME_INDEX_PREFIX) + KEY.size and len(value) == TIME_SPAN.size:
            out[KEY.unpack(key[len(TIME_INDEX_PREFIX):])[0]] = TIME_SPAN.unpack(value)
    return out


def batches_meeting(txn: Any, store: Any, start_us: int | None, end_us: int | None) -> list[int]:
    """The last journal_seqs of the stored batches that may hold a record with event
    time in [start_us, end_us): those whose span meets it, and those without an entry."""
    return [last for _, last in batch_ranges_meeting(txn, store, start_us, end_us)]


def batch_ranges_meeting(txn: Any, store: Any, start_us: int | None, end_us: int | None) -> list[tuple[int, int]]:
    """`batches_meeting` as (first, last) journal_seq of each batch (first: the one after
    the previous stored batch's last; for the first batch stored, 1)."""
    known = spans(txn, store.state_db)
    lo = -(1 << 63) if start_us is None else start_us
    hi = (1 << 63) - 1 if end_us is None else end_us
    out = []
    prev = 0
    cur = txn.cursor(db=store.journal_db)
    for key in cur.iternext(keys=True, values=False):
        last = KEY.unpack(bytes(key))[0]
        span = known.get(last)
        if span is None or (span[1] >= lo and span[0] < hi):
            out.append((prev + 1, last))
        prev = last
    return out


def missing(txn: Any, store: Any) -> list[int]:
    """The last journal_seqs of the stored batches without an entry."""
    known = spans(txn, store.state_db)
    cur = txn.cursor(db=store.journal_db)
    return [KEY.unpack(bytes(k))[0] for k in cur.iternext(keys=True, values=False)
            if KEY.unpack(bytes(k))[0] not in known]
