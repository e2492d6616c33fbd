"""The journal as a stream: its batches read in order, and followed as they commit.

`batches` reads the committed journal batch by batch, from a position, in read
transactions of a bounded length (a reader holding one transaction for a whole export
would keep a writer from reusing freed pages, and the data file would grow).
`follow` does the same and then waits for the next commit: what a data warehouse
loader or a notifier subscribes to, in any process, readonly included, resumable from
any journal_seq. Each batch's hash chain to the one before it is checked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from .store.journal import BATCH_HEADER, BATCH_HEADER_SIZE
from .store.keys import KEY

#: Batches read in one read transaction before it is renewed.
FEED_TXN_BATCHES_MAX = 256
#: How often `follow` looks for a new commit when it has caught up (seconds).
FOLLOW_POLL_S = 0.02


def batches(store: Any, after_seq: int = 0, end_seq: int | None = None,
            state: dict | None = None) -> Iterator[np.ndarray]:
    """The committed journal records after `after_seq` (and before `end_seq`), one
    array per batch, in order. `state` (a dict) carries the chain's last hash and
    position between calls: `follow` resumes with it."""
    state = state if state is not None else {}
    pos = int(state.get("seq", after_seq))
    prev_hash = state.get("hash")
    while end_seq is None or pos + 1 < end_seq:
        read = 0
        with store.begin_read() as txn:
            for batch in store.iter_batches(txn, _batch_start(store, txn, pos + 1), prev_hash):
                recs = batch.records
                if batch.first_seq <= pos:  # a batch the position falls inside
                    recs = recs[recs["journal_seq"] > pos]
                if end_seq is not None and batch.last_seq >= end_seq:
                    recs = recs[recs["journal_seq"] < end_seq]
                prev_hash, pos = batch.hash, min(batch.last_seq, end_seq - 1 if end_seq is not None else batch.last_seq)
                state["seq"], state["hash"] = pos, prev_hash
                read += 1
                if len(recs):
                    yield recs
                if (end_seq is not None and pos + 1 >= end_seq) or read >= FEED_TXN_BATCHES_MAX:
                    break
        if read < FEED_TXN_BATCHES_MAX:
            return  # the end of the journal as committed now


def _batch_start(store: Any, txn: Any, seq: int) -> int:
    """The position to read from so that the stored batch holding `seq` comes first
    (a position may fall inside a batch)."""
    cur = txn.cursor(db=store.journal_db)
    if not cur.set_range(KEY.pack(seq)):
        return seq - 1
    value = cur.value()
    if len(value) < BATCH_HEADER_SIZE:
        return seq - 1  # (the read that follows reports the damage)
    first = BATCH_HEADER.unpack_from(value)[4]
    return min(int(first), seq) - 1


def follow(store_of: Any, after_seq: int, idle_timeout_s: float | None = None,
           poll_s: float = FOLLOW_POLL_S) -> Iterator[np.ndarray]:
    """The journal records of each batch committed after `after_seq`, as it commits.

    `store_of()` returns the ledger's store (raising LedgerClosedError once it is
    closed). Runs until the caller stops iterating, or, with `idle_timeout_s`, until
    no batch has committed for that long. Raises CorruptionError if a batch does not
    chain to the one before it."""
    if after_seq < 0:
        raise ValueError(f"after_seq must be >= 0, got {after_seq}")
    state: dict = {"seq": int(after_seq)}
    idle_since = time.monotonic()
    while True:
        got = False
        for recs in batches(store_of(), state=state):
            got = True
            yield recs
        if got:
            idle_since = time.monotonic()
        elif idle_timeout_s is not None and time.monotonic() - idle_since >= idle_timeout_s:
            return
        else:
            time.sleep(poll_s)
