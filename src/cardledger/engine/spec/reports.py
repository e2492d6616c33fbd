"""Helpers of the reconciliation reads, twins of the core's `cext/reports.pxi`.

`AccountTotals` holds the sums of a settlement (`settlement.settle`): per account id,
how many records named it and the fen they posted on its debit and credit side, added
batch by batch; a record with a union leg (a PURCHASE's or REFUND's union account)
names three accounts. This version keeps the batches' parts and sums them at the end by
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

    def add(self, debit_ids: np.ndarray, credit_ids: np.ndarray, amounts: np.ndarray, keep: np.ndarray,
            union_ids: np.ndarray | None = None, union_fens: np.ndarray | None = None,
            union_debited: np.ndarray | None = None) -> None:
        """Count record i (where keep[i]) for its debit account (a debit of amounts[i])
        and for its credit account (a credit of amounts[i]), each side that names one.

        With `union_ids`, `union_fens` and `union_debited` (uint8), record i also
        counts for its union account union_ids[i] (where not 0): where
        union_debited[i], a debit of union_fens[i] on it and a credit of amounts[i] +
        union_fens[i] on the credit side (a PURCHASE: the merchant is paid the net and
        the union's share); elsewhere a credit of union_fens[i] on it and a debit of
        amounts[i] + union_fens[i] on the debit side (a REFUND)."""
        n = len(keep)
        if len(debit_ids) != n or len(credit_ids) != n or len(amounts) != n:
            raise ValueError("AccountTotals.add: arrays differ in length")
        unions = (union_ids, union_fens, union_debited)
        if any(x is None for x in unions) and not all(x is None for x in unions):
            raise ValueError("AccountTotals.add: union_ids, union_fens and union_debited go together")
        if any(x is not None and len(x) != n for x in unions):
            raise ValueError("AccountTotals.add: arrays differ in length")
        keep = np.asarray(keep).view(bool)
        amount = np.asarray(amounts, dtype=np.int64)[keep]
        zero = np.zeros(len(amount), dtype=np.int64)
        debit_amount = credit_amount = amount
        sides = []
        if union_ids is not None:
            uid = np.asarray(union_ids, dtype=np.uint64)[keep]
            ufen = np.where(uid != 0, np.asarray(union_fens, dtype=np.int64)[keep], 0)
            debited = np.asarray(union_debited).view(bool)[keep]
            credit_amount = amount + np.where(debited, ufen, 0)
            debit_amount = amount + np.where(debited, 0, ufen)
            sides.append((uid, np.where(debited, ufen, 0), np.where(debited, 0, ufen)))
        sides = [(np.asarray(debit_ids, dtype=np.uint64)[keep], debit_amount, zero),
                 (np.asarray(credit_ids, dtype=np.uint64)[keep], zero, credit_amount)] + sides
        for side, debit, credit in sides:
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


def format_rows(records: np.ndarray, field_prefixes: list, time_prefix: bytes, times: np.ndarray,
                result_prefix: bytes, result_names: list, line_end: bytes,
                buffer: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """The text lines of journal records (JOURNAL_DTYPE) as an export writes them: for
    each record, each field's prefix then its value in decimal, `time_prefix` then its
    time (`times`: dtype S32, NUL-padded), `result_prefix` then the name of its code
    (`result_names[code]`, or the code in decimal past the list), and `line_end`.
    Returns (buffer, length): the lines are buffer[:length] (`buffer`, for the core's
    reuse of its buffer, is not used here)."""
    names = records.dtype.names
    if names is None or len(field_prefixes) != len(names):
        raise ValueError("format_rows: one prefix a field of the records")
    if np.asarray(times).dtype != np.dtype("S32") or len(times) != len(records):
        raise ValueError("format_rows: times must be dtype S32, one a record")
    code_at = names.index("code")
    lines = []
    for row, t in zip(records.tolist(), np.asarray(times).tolist()):
        code = row[code_at]
        name = bytes(result_names[code]) if code < len(result_names) else str(code).encode()
        lines.append(b"".join(bytes(p) + str(v).encode() for p, v in zip(field_prefixes, row))
                     + time_prefix + t + result_prefix + name + line_end)
    text = b"".join(lines)
    return np.frombuffer(text, dtype=np.uint8) if text else np.zeros(1, dtype=np.uint8), len(text)
