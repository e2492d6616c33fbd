"""Settlement of a time range (a service day): per account, what was posted.

For each account the successful ops whose event time falls in [start_us, end_us),
counted, and the debits and credits they posted, in fen. A hold posts nothing when it
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


def settle(batches: Iterator[np.ndarray], accounts: np.ndarray, start_us: int | None = None,
           end_us: int | None = None) -> np.ndarray:
    """The settlement (SETTLEMENT_DTYPE, one row per account touched, by account id) of
    the records in `batches` with event time in [start_us, end_us); `accounts`
    (ACCOUNT_DTYPE) gives each account's kind."""
    ids: list[np.ndarray] = []
    debit: list[np.ndarray] = []
    credit: list[np.ndarray] = []
    for recs in batches:
        keep = recs["code"] == Result.OK
        if start_us is not None:
            keep &= recs["time_us"] >= start_us
        if end_us is not None:
            keep &= recs["time_us"] < end_us
        if not keep.any():
            continue
        r = recs[keep]
        amount = posted_fen(r)
        for side, other in ((r["debit_id"], (amount, 0)), (r["credit_id"], (0, amount))):
            named = side != 0
            ids.append(side[named])
            debit.append(np.broadcast_to(np.asarray(other[0], dtype=np.int64), len(r))[named])
            credit.append(np.broadcast_to(np.asarray(other[1], dtype=np.int64), len(r))[named])
    if not ids:
        return np.zeros(0, dtype=SETTLEMENT_DTYPE)
    all_ids = np.concatenate(ids)
    if not len(all_ids):
        return np.zeros(0, dtype=SETTLEMENT_DTYPE)
    # Sums by account, exact in int64 (no float touches money): sort by account, then
    # add each account's run with reduceat.
    by = np.argsort(all_ids, kind="stable")
    sorted_ids = all_ids[by]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    uniq = sorted_ids[starts]
    out = np.zeros(len(uniq), dtype=SETTLEMENT_DTYPE)
    out["account_id"] = uniq
    out["ops"] = np.diff(np.append(starts, len(sorted_ids)))
    out["debits_fen"] = np.add.reduceat(np.concatenate(debit)[by], starts)
    out["credits_fen"] = np.add.reduceat(np.concatenate(credit)[by], starts)
    order = np.argsort(accounts["id"])
    pos = np.clip(np.searchsorted(accounts["id"][order], uniq), 0, max(len(accounts) - 1, 0))
    if len(accounts):
        found = accounts["id"][order][pos] == uniq
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
