"""Helpers of the reconciliation reads, twins of the core's `cext/reports.pxi`.

`AccountTotals` holds the sums of a settlement (`settlement.settle`): per account id,
how many records named it and the fen they posted on its debit and credit side, added
batch by batch. This version keeps the batches' parts and sums them at the end by
sorting; the core's keeps an open-addressing table. Both give the same rows.
"""

from __future__ import annotations

import numpy as np


class AccountTotals:
    """Per account id: how many records named it, and the fen they posted on its debit
    and on its credit side, added batch by batch (`add`) and read sorted by account id
    (`rows`). A record side naming account 0 names no account. Sums wrap in 64-bit
    two's complement, as numpy's int64 sums do."""

    def __init__(self) -> None:
        self._ids: list[np.ndarray] = []
        self._debits: list[np.ndarray] = []
        self._credits: list[np.ndarray] = []

    def add(self, debit_ids: np.ndarray, credit_ids: np.ndarray, amounts: np.ndarray, keep: np.ndarray) -> None:
        """Count record i (where keep[i]) for its debit account (a debit of amounts[i])
        and for its credit account (a credit of amounts[i]), each side that names one."""
        n = len(keep)
        if len(debit_ids) != n or len(credit_ids) != n or len(amounts) != n:
            raise ValueError("AccountTotals.add: arrays differ in length")
        keep = np.asarray(keep).view(bool)
        amount = np.asarray(amounts, dtype=np.int64)[keep]
        zero = np.zeros(len(amount), dtype=np.int64)
        for side, debit, credit in ((np.asarray(debit_ids, dtype=np.uint64)[keep], amount, zero),
                                    (np.asarray(credit_ids, dtype=np.uint64)[keep], zero, amount)):
            named = side != 0
            self._ids.append(side[named])
            self._debits.append(debit[named])
            self._credits.append(credit[named])

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(account_ids, ops, debits_fen, credits_fen): one entry per account counted,
        by account id (uint64, int64, int64, int64 arrays)."""
        if not self._ids:
            empty = np.zeros(0, dtype=np.int64)
            return np.zeros(0, dtype=np.uint64), empty, empty, empty
        ids = np.concatenate(self._ids)
        # Sort by account, then add each account's run with reduceat (exact in int64).
        by = np.argsort(ids, kind="stable")
        sorted_ids = ids[by]
        if not len(sorted_ids):
            empty = np.zeros(0, dtype=np.int64)
            return sorted_ids, empty, empty, empty
        starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
        ops = np.diff(np.append(starts, len(sorted_ids))).astype(np.int64)
        debits = np.add.reduceat(np.concatenate(self._debits)[by], starts)
        credits = np.add.reduceat(np.concatenate(self._credits)[by], starts)
        return sorted_ids[starts], ops, debits, credits
