"""Settlement of a time range (a service day): per account, what was posted.

For each account the successful ops whose event time falls in [start_us, end_us),
counted, and the debits and credits they posted, in fen. A record names up to three
accounts: its debit and credit sides and, for a PURCHASE or REFUND with a union share,
its union account (`union_id`, `union_fen`): a PURCHASE posts N (result_amount_fen) on
the card's debit side, N + U on the merchant's credit side and U on the union's debit
side; a REFUND posts amount + u on the merchant's debit side, amount on the card's
credit side and u on the union's credit side. So over any range the debits equal the
credits. A hold posts nothing when it
is placed (a PENDING transfer, a metro ENTRY) nor when it is voided: it counts when it
is posted, at the POST's (or the EXIT's) time. So the settlement of all time equals
every account's posted totals (`debits_posted`, `credits_posted`), which the tests
check.

Reads the journal batch by batch (`Ledger.batches`): until the journal has a time
index, its cost is the journal's length (a late upload's records may sit anywhere).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .engine import select
from .schema import OpFlags, OpKind, Result, TapType

#: One row of a settlement.
SETTLEMENT_DTYPE = np.dtype([("account_id", "<u8"), ("account_kind", "<u2"), ("ops", "<i8"),
                             ("debits_fen", "<i8"), ("credits_fen", "<i8")])


def posted_fen(recs: np.ndarray) -> np.ndarray:
    """What each (successful) journal record posted, in fen: its result amount, or 0 for
    a hold placed (a PENDING TRANSFER, a metro ENTRY) or voided (VOID)."""
    holds = (((recs["kind"] == OpKind.TRANSFER) & ((recs["flags"] & OpFlags.PENDING) != 0))
             | (recs["kind"] == OpKind.VOID)
             | ((recs["kind"] == OpKind.TAP) & (recs["tap"] == TapType.ENTRY)))
    return np.where(holds, 0, recs["result_amount_fen"]).astype(np.int64)


def union_legs(recs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each record's third leg beyond `posted_fen`'s two: (the fen it debited from its
    union account, the fen it credited to it), both 0 where it names none. A PURCHASE
    debits the union's share U (its merchant, credit_id, is credited posted + U); a
    REFUND credits this part's share u (its merchant, debit_id, is debited posted + u)."""
    union = np.where(recs["union_id"] != 0, recs["union_fen"], 0).astype(np.int64)
    debited = recs["kind"] == OpKind.PURCHASE
    return np.where(debited, union, 0), np.where(debited, 0, union)


def net_change_fen(recs: np.ndarray, account_id: int) -> int:
    """What the (successful) records `recs` changed one account's posted balance by, in
    fen: credited minus debited, over all three sides a record may name it on."""
    posted = posted_fen(recs)
    union_debit, union_credit = union_legs(recs)
    a = np.uint64(account_id)
    credited = posted + union_debit  # a PURCHASE's merchant is paid the union's share too
    debited = posted + union_credit  # a REFUND's merchant pays it back
    mine_c, mine_d, mine_u = recs["credit_id"] == a, recs["debit_id"] == a, recs["union_id"] == a
    return int(credited[mine_c].sum() - debited[mine_d].sum() + union_credit[mine_u].sum()
               - union_debit[mine_u].sum())


def settle(batches: Iterator[np.ndarray], accounts: np.ndarray, start_us: int | None = None,
           end_us: int | None = None, implementation: str | None = None) -> np.ndarray:
    """The settlement (SETTLEMENT_DTYPE, one row per account touched, by account id) of
    the records in `batches` with event time in [start_us, end_us); `accounts`
    (ACCOUNT_DTYPE) gives each account's kind. `implementation` ("cython", "python",
    None: the default) sums with that side's `AccountTotals` (same rows either way)."""
    totals = select.reports_for(implementation).AccountTotals()
    for recs in batches:
        keep = recs["code"] == Result.OK
        if start_us is not None:
            keep &= recs["time_us"] >= start_us
        if end_us is not None:
            keep &= recs["time_us"] < end_us
        if keep.any():
            union_ids = recs["union_id"]
            if union_ids.any():  # the batch has a union leg: three sides a record
                union_debited = (recs["kind"] == OpKind.PURCHASE).view(np.uint8)
                totals.add(recs["debit_id"], recs["credit_id"], posted_fen(recs), keep.view(np.uint8),
                           union_ids, recs["union_fen"], union_debited)
            else:
                totals.add(recs["debit_id"], recs["credit_id"], posted_fen(recs), keep.view(np.uint8))
    ids, ops, debits, credits = totals.rows()
    out = np.zeros(len(ids), dtype=SETTLEMENT_DTYPE)
    out["account_id"], out["ops"], out["debits_fen"], out["credits_fen"] = ids, ops, debits, credits
    if len(ids) and len(accounts):
        order = np.argsort(accounts["id"])
        pos = np.clip(np.searchsorted(accounts["id"][order], ids), 0, len(accounts) - 1)
        found = accounts["id"][order][pos] == ids
        out["account_kind"] = np.where(found, accounts["kind"][order][pos], 0)
    return out


def digest(rows: np.ndarray) -> int:
    """The 64-bit digest a CLOSE_DAY record carries (user_data) of a day's settlement:
    SHA-256 of its rows' account ids, op counts and posted totals, by account id."""
    packed = np.zeros(len(rows), dtype=[("account_id", "<u8"), ("ops", "<i8"), ("debits_fen", "<i8"),
                                        ("credits_fen", "<i8")])
    for name in packed.dtype.names:
        packed[name] = rows[name]
    return int.from_bytes(hashlib.sha256(packed.tobytes()).digest()[:8], "little")


@dataclass
class DayClose:
    """A closed service day as its CLOSE_DAY record says: [start_us, end_us), the
    journal position it covers, its posted total and digest, and the record's own
    journal_seq."""

    start_us: int
    end_us: int
    position: int
    total_fen: int
    digest: int
    journal_seq: int


def closes_in(records: np.ndarray) -> list[DayClose]:
    """The successful CLOSE_DAY records among `records`."""
    mine = records[(records["kind"] == OpKind.CLOSE_DAY) & (records["code"] == Result.OK)]
    return [DayClose(int(r["time_us"]), int(r["limit_fen"]), int(r["ref_seq"]), int(r["amount_fen"]),
                     int(r["user_data"]), int(r["journal_seq"])) for r in mine]


def close_problems(closes: list[DayClose], batches: Iterator[np.ndarray], accounts: np.ndarray) -> list[str]:
    """Each close whose day, settled again from the journal it covers, does not give
    the total and digest its record carries."""
    if not closes:
        return []
    parts: dict[int, list[np.ndarray]] = {i: [] for i in range(len(closes))}
    for recs in batches:
        for i, c in enumerate(closes):
            keep = (recs["journal_seq"] <= c.position) & (recs["time_us"] >= c.start_us) & (recs["time_us"] < c.end_us)
            if keep.any():
                parts[i].append(recs[keep])
    problems = []
    for i, c in enumerate(closes):
        rows = settle(iter(parts[i]), accounts)
        if digest(rows) != c.digest or int(rows["debits_fen"].sum()) != c.total_fen:
            problems.append(f"closed day from {c.start_us} (journal_seq {c.journal_seq}): its records through "
                            f"journal_seq {c.position} no longer settle to what was closed")
    return problems
