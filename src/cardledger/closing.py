"""Closing a service day: its settlement recorded in the hash-chained journal.

`close(ledger, start_us, end_us)` settles the day over the journal as it stands
(journal_seq ≤ its position) and applies a CLOSE_DAY op that carries the day, that
position, the day's posted total and a digest of its settlement (`settlement.digest`).
The op's id is (CLOSE_DAY_SOURCE, the day's start in seconds): a day is closed once.
Nothing else is stored: the journal is immutable, so the day's report
(`report`) settles the same records again and checks them against the record, and
`verify` does the same for every close.

An op that arrives after the close with an event time inside a closed day is never
lost: the next close reports it as a late item of that earlier day, per account (each
late item once, by the first close after it arrived); `report` of a closed day lists
the late items known now beside the figures closed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import CorruptionError
from .schema import CLOSE_DAY_SOURCE, AccountKind, OpKind, Result, new_ops
from .settlement import DayClose, closes_in, digest, settle

US = 1_000_000


def _rows(rows: np.ndarray) -> list[dict[str, Any]]:
    return [{"account_id": int(r["account_id"]),
             "account_kind": AccountKind(int(r["account_kind"])).name if r["account_kind"] else "UNKNOWN",
             "ops": int(r["ops"]), "debits_fen": int(r["debits_fen"]), "credits_fen": int(r["credits_fen"])}
            for r in rows]


def _closes(ledger: Any) -> list[DayClose]:
    return closes_in(ledger.query(kinds=[OpKind.CLOSE_DAY]))


def _settled(ledger: Any, accounts: np.ndarray, start_us: int, end_us: int, after: int, upto: int) -> np.ndarray:
    """The settlement of [start_us, end_us) over journal records after..upto."""
    return settle(ledger.batches(after, upto + 1), accounts, start_us, end_us, ledger.implementation)


def report(ledger: Any, start_us: int, end_us: int) -> dict[str, Any]:
    """The day's report: if it was closed, exactly what was closed (checked against its
    CLOSE_DAY record) and the late items known now; else the live settlement."""
    accounts = ledger.accounts()
    head = ledger.journal_seq
    mine = [c for c in _closes(ledger) if (c.start_us, c.end_us) == (start_us, end_us)]
    if not mine:
        return {"start_us": start_us, "end_us": end_us, "closed": False,
                "accounts": _rows(ledger.settle(start_us, end_us)), "late": []}
    c = mine[0]
    rows = _settled(ledger, accounts, start_us, end_us, 0, c.position)
    if digest(rows) != c.digest or int(rows["debits_fen"].sum()) != c.total_fen:
        raise CorruptionError(f"the closed day from {start_us}: its records no longer settle to what was closed")
    late = _settled(ledger, accounts, start_us, end_us, c.position, head) if head > c.position else rows[:0]
    return {"start_us": start_us, "end_us": end_us, "closed": True, "position": c.position,
            "close_journal_seq": c.journal_seq, "accounts": _rows(rows), "late": _rows(late)}


def close(ledger: Any, start_us: int, end_us: int) -> dict[str, Any]:
    """Close the day [start_us, end_us): record its settlement in the journal. Returns
    its report, with `late`: the items of earlier closed days that arrived since the
    close before this one, per day and account. A day already closed is reported as
    it was (`already_closed`)."""
    if not 0 < start_us < end_us:
        raise ValueError(f"a day is a range of positive times, got [{start_us}, {end_us})")
    if start_us % US:
        raise ValueError("a day starts at a whole second")
    closes = _closes(ledger)
    if any(c.start_us == start_us for c in closes):
        out = report(ledger, start_us, end_us)
        out["already_closed"] = True
        return out
    accounts = ledger.accounts()
    position = ledger.journal_seq
    rows = _settled(ledger, accounts, start_us, end_us, 0, position)
    op = new_ops(1)
    op["source"], op["seq"], op["kind"] = CLOSE_DAY_SOURCE, start_us // US, OpKind.CLOSE_DAY
    op["time_us"], op["limit_fen"], op["ref_seq"] = start_us, end_us, position
    op["amount_fen"], op["user_data"] = int(rows["debits_fen"].sum()), digest(rows)
    result = ledger.apply(op)[0]
    code = Result(int(result["code"]))
    if code != Result.OK:
        if code in (Result.EXISTS, Result.EXISTS_WITH_DIFFERENT_FIELDS):  # closed meanwhile by another process
            out = report(ledger, start_us, end_us)
            out["already_closed"] = True
            return out
        raise ValueError(f"the day could not be closed: {code.name}")
    previous = max((c.position for c in closes), default=0)
    late = []
    for c in sorted(closes, key=lambda c: c.start_us):
        since = max(c.position, previous)
        if since < position:
            items = _settled(ledger, accounts, c.start_us, c.end_us, since, position)
            if len(items):
                late.append({"start_us": c.start_us, "end_us": c.end_us, "accounts": _rows(items)})
    return {"start_us": start_us, "end_us": end_us, "closed": True, "position": position,
            "close_journal_seq": int(result["journal_seq"]), "accounts": _rows(rows), "late": late}
