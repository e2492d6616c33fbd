"""Reads of the ledger: accounts, statements, journal ranges, the lists validators
and gateways need (denylist, overdue metro entries), and what a REVERSE op names.

Each function here reads what it is given (an engine's exported arrays, a read
transaction, the fare versions) and changes nothing; `Ledger` takes its lock, brings
its state up to date and calls them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import CorruptionError
from .schema import (
    ACCOUNT_DTYPE,
    JOURNAL_DTYPE,
    REF_OTHER,
    REF_TAP,
    REVERSE_REF_DTYPE,
    AccountFlags,
    AccountKind,
    OpKind,
    Result,
    TapType,
)
from .store.journal import DecodedBatches, RecordFetcher

_CASH = ACCOUNT_DTYPE.names.index("cash_fen")
_SUBSIDY = ACCOUNT_DTYPE.names.index("subsidy_fen")
_LAST_SEQ = ACCOUNT_DTYPE.names.index("last_journal_seq")


@dataclass(frozen=True)
class AccountInfo:
    """One account's state, as `Ledger.account` reports it (amounts in fen)."""

    id: int
    kind: AccountKind
    balance_fen: int  # available: both purses of a card
    cash_fen: int
    subsidy_fen: int
    cap_fen: int
    category: int
    frozen: bool
    closed: bool
    cash_first: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    last_journal_seq: int
    inactive: bool = False  # a card issued inactive, not yet ACTIVATEd: credits only
    member_ref: int = 0  # a card: its OPEN's user_data (the member), carried over by REPLACE
    category_before: int = 0  # a card: its category before category_since_us (SET_CATEGORY)
    category_since_us: int = 0  # a card: when `category` took effect (0: since it opened)


def balance_of(row: tuple) -> int:
    """Available balance of an account record (ACCOUNT_DTYPE order): both purses."""
    return int(row[_CASH] + row[_SUBSIDY])


def account_info(row: tuple) -> AccountInfo:
    """An account record (ACCOUNT_DTYPE order) as an AccountInfo."""
    r = dict(zip(ACCOUNT_DTYPE.names, row))
    flags = AccountFlags(r["flags"])
    return AccountInfo(
        id=r["id"],
        kind=AccountKind(r["kind"]),
        balance_fen=r["cash_fen"] + r["subsidy_fen"],
        cash_fen=r["cash_fen"],
        subsidy_fen=r["subsidy_fen"],
        cap_fen=r["cap_fen"],
        category=r["category"],
        frozen=bool(flags & AccountFlags.FROZEN),
        closed=bool(flags & AccountFlags.CLOSED),
        cash_first=bool(flags & AccountFlags.CASH_FIRST),
        debits_posted=r["debits_posted"],
        credits_posted=r["credits_posted"],
        debits_pending=r["debits_pending"],
        credits_pending=r["credits_pending"],
        last_journal_seq=r["last_journal_seq"],
        inactive=bool(flags & AccountFlags.INACTIVE),
        member_ref=r["member_ref"],
        category_before=r["category_before"],
        category_since_us=r["category_since_us"],
    )


def statement(codec: Any, txn: Any, journal_db: Any, account_id: int, row: tuple, start_us: int | None,
              end_us: int | None) -> np.ndarray:
    """Journal records of one account (its record `row`), walked back along its chain
    of records from its last one: those whose event time is in [start_us, end_us),
    ordered by event time, then journal_seq."""
    jseq = int(row[_LAST_SEQ])
    out = []
    fetch = RecordFetcher(txn, journal_db, DecodedBatches(codec))
    while jseq:
        rec = fetch(jseq)
        t = int(rec["time_us"])
        if (start_us is None or t >= start_us) and (end_us is None or t < end_us):
            out.append(rec)
        if int(rec["debit_id"]) == account_id:
            jseq = int(rec["debit_prev_seq"])
        elif int(rec["credit_id"]) == account_id:
            jseq = int(rec["credit_prev_seq"])
        else:
            raise CorruptionError(f"statement chain of account {account_id} breaks at journal_seq {jseq}")
    recs = np.array(out, dtype=JOURNAL_DTYPE)
    return recs[np.lexsort((recs["journal_seq"], recs["time_us"]))] if len(recs) else recs


#: Most bytes a `Gathered` reserves at once for what it may keep: a query's room for
#: every record of the batches it reads, while they fit (pages are touched only as
#: records are kept); past it, room grows by doubling.
GATHER_RESERVE_BYTES_MAX = 1 << 32


class Gathered:
    """The records a query keeps from each batch it reads, copied once into one growing
    array (no array per batch, no concatenation at the end), and whether they came in
    event-time order. A query returning millions of records from a day's batches
    copies each kept record once."""

    _WORDS = JOURNAL_DTYPE.itemsize // 8

    def __init__(self, at_most: int) -> None:
        """`at_most`: how many records the batches to be read hold."""
        room = min(max(at_most, 1), GATHER_RESERVE_BYTES_MAX // JOURNAL_DTYPE.itemsize)
        try:
            self._rows = np.empty((room, self._WORDS), dtype=np.uint64)
        except MemoryError:  # a system that refuses to reserve what it may not give
            self._rows = np.empty((min(room, 1 << 16), self._WORDS), dtype=np.uint64)
        self._n = 0
        self._last_time: int | None = None
        self.in_time_order = True

    def add(self, recs: np.ndarray, keep: np.ndarray) -> None:
        """Keep the records recs[keep] (`recs`: one batch, JOURNAL_DTYPE, contiguous)."""
        count = int(np.count_nonzero(keep))
        if not count:
            return
        if self._n + count > len(self._rows):
            self._rows.resize((max(2 * len(self._rows), self._n + count), self._WORDS), refcheck=False)
        words = np.ascontiguousarray(recs).view(np.uint64).reshape(len(recs), self._WORDS)
        part = self._rows[self._n : self._n + count]
        np.compress(keep, words, axis=0, out=part)
        t = part.reshape(-1).view(JOURNAL_DTYPE)["time_us"]
        if self.in_time_order and ((self._last_time is not None and int(t[0]) < self._last_time)
                                   or (len(t) > 1 and not (t[1:] >= t[:-1]).all())):
            self.in_time_order = False
        self._last_time = int(t[-1])
        self._n += count

    def records(self) -> np.ndarray:
        """What was kept (JOURNAL_DTYPE), ordered by (time_us, journal_seq) when the
        batches were given in journal order; the Gathered is spent."""
        rows, self._rows = self._rows, np.empty((0, self._WORDS), dtype=np.uint64)
        rows.resize((self._n, self._WORDS), refcheck=False)  # shrinks in place
        recs = rows.reshape(-1).view(JOURNAL_DTYPE)
        if not self.in_time_order:
            # Journal order: a stable sort by event time orders by (time_us, journal_seq).
            recs = recs[np.argsort(recs["time_us"], kind="stable")]
        return recs


def journal_range(batches: Any, start_seq: int, end_seq: int | None) -> np.ndarray:
    """The records with start_seq <= journal_seq < end_seq from `batches` (checked
    journal batches from start_seq's on, in order)."""
    parts = []
    for batch in batches:
        if end_seq is not None and batch.first_seq >= end_seq:
            break
        seqs = batch.records["journal_seq"]
        keep = seqs >= start_seq
        if end_seq is not None:
            keep &= seqs < end_seq
        parts.append(batch.records[keep])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=JOURNAL_DTYPE)


def denylist(accounts: np.ndarray, tap_tables: list) -> np.ndarray:
    """Card ids validators must refuse, sorted: frozen, closed, or unable to pay (see
    `Ledger.denylist`); `tap_tables`: the installed fare versions' tables."""
    cards = accounts[accounts["kind"] == AccountKind.CARD]
    allowance = 0
    if tap_tables:
        tt = tap_tables[-1]
        if len(tt.product_allowance_fen):
            allowance = int(tt.product_allowance_fen.max())
    avail = cards["cash_fen"] + cards["subsidy_fen"] + cards["debits_pending"]
    blocked = ((cards["flags"] & (AccountFlags.FROZEN | AccountFlags.CLOSED)) != 0) | (avail <= -allowance)
    return np.sort(cards["id"][blocked])


def overdue_entries(engine: Any, tap_tables: list, time_us: int) -> np.ndarray:
    """Card ids whose open metro entry has timed out at `time_us`, sorted, frozen and
    closed cards left out (see `Ledger.overdue_entries`); the engine's state is exported
    only as far as the answer needs it."""
    none = np.zeros(0, dtype=np.uint64)
    if not tap_tables:
        return none
    journeys = engine.export_journeys()
    journeys = journeys[journeys["entry_version"] >= 0]
    if not len(journeys):
        return none
    accounts = engine.export_checkpoint()[0]
    blocked = accounts["id"][(accounts["flags"] & (AccountFlags.FROZEN | AccountFlags.CLOSED)) != 0]
    journeys = journeys[~np.isin(journeys["account_id"], blocked)]
    overdue = np.zeros(len(journeys), dtype=bool)
    for version in np.unique(journeys["entry_version"]).tolist():
        tt = tap_tables[version]
        rows = np.flatnonzero(journeys["entry_version"] == version)
        net = tt.fares.route_network[journeys["entry_route"][rows]]
        gated = net >= 0  # (an entry is always on a gated network's route)
        rows, net = rows[gated], net[gated]
        # As the engines compare (time - entry > timeout), in Python ints: no overflow.
        ages = [time_us - int(t) for t in journeys["entry_time_us"][rows].tolist()]
        limits = tt.gate_timeout_us[net].tolist()
        overdue[rows] = [age > limit for age, limit in zip(ages, limits)]
    return np.sort(journeys["account_id"][overdue].astype(np.uint64))


def reverse_ref(rec: Any, fetch: Any) -> tuple:
    """What a REVERSE needs to know of the decision `rec` (a journal record) it names,
    as a REVERSE_REF_DTYPE row; `fetch(journal_seq)` reads any earlier record.

    For a successful EXIT, the card's records are walked back from it to the ENTRY
    whose open entry it closed, if any: the last successful ENTRY of the card before
    it with nothing that settles an entry in between (an EXIT, a SWEEP that charged,
    a REPLACE). An exit with an open entry counted in the caps and tiers at its entry
    time; an exit without one charged the incomplete charge and counted nowhere."""
    if int(rec["kind"]) != OpKind.TAP or int(rec["code"]) != Result.OK:
        return (0, 0, 0, 0, 0, 0, 0, 0, REF_OTHER, 0, 0, 0)
    card = int(rec["account_id"])
    tap = int(rec["tap"])
    entry_found, entry_time_us, entry_route = 0, 0, 0
    if tap == TapType.EXIT:
        jseq = int(rec["debit_prev_seq"]) if int(rec["debit_id"]) == card else int(rec["credit_prev_seq"])
        while jseq:
            r = fetch(jseq)
            kind = int(r["kind"])
            if kind == OpKind.REPLACE:
                break  # the card began here: its old card's entry was dropped
            if kind == OpKind.TAP:
                t = int(r["tap"])
                if t == TapType.ENTRY:
                    entry_found, entry_time_us, entry_route = 1, int(r["time_us"]), int(r["route"])
                    break
                if t == TapType.EXIT or (t == TapType.SWEEP and int(r["result_amount_fen"]) > 0):
                    break
            jseq = int(r["debit_prev_seq"]) if int(r["debit_id"]) == card else int(r["credit_prev_seq"])
    return (
        card, int(rec["credit_id"]), int(rec["result_amount_fen"]), int(rec["subsidy_fen"]),
        int(rec["time_us"]), entry_time_us, int(rec["route"]), entry_route, REF_TAP, tap, entry_found, 0,
    )


#: The EXITs whose REVERSE_REF rows `ReverseRefs` keeps (the oldest forgotten first).
REVERSE_REFS_KEPT_MAX = 4096


class ReverseRefs:
    """`reverse_ref` with the walks of committed EXITs remembered.

    An EXIT's row costs a walk back through its card's records, one read each, to the
    entry it closed: a card with thousands of records between the two made every
    REVERSE naming that EXIT (and a REVERSE refused in a failed chain can be sent again
    and again, under new ids) cost thousands of reads. What the walk finds never
    changes once the EXIT is committed: the journal is append-only and the walk reads
    only records before it. So a row is kept, by the EXIT's journal_seq, only when the
    EXIT named is, byte for byte, the record stored at that journal_seq and the walk
    read stored records only (none of a batch still in flight, which may yet fail and
    leave its journal_seqs to other ops, or be another writer's stale view); and a kept
    row is used only for that very record. The ledger also forgets every row whenever
    it rebuilds its engine."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[bytes, tuple]] = {}  # journal_seq -> (EXIT's bytes, row); oldest first

    def clear(self) -> None:
        """Forget every row (the ledger rebuilt its engine)."""
        self._kept.clear()

    def ref(self, rec: Any, staged: Any, stored: Any, head: Any) -> tuple:
        """reverse_ref(rec, ...) reading `staged(jseq)` (a record of a batch in flight,
        or None) before `stored(jseq)` (the stored record); remembered as the class
        says, `head()` being the last stored journal_seq (asked only then)."""
        jseq = int(rec["journal_seq"])
        raw = rec.tobytes()
        kept = self._kept.get(jseq)
        if kept is not None and kept[0] == raw:
            return kept[1]
        read_staged = False

        def fetch(j: int) -> Any:
            nonlocal read_staged
            r = staged(j)
            if r is None:
                return stored(j)
            read_staged = True
            return r

        row = reverse_ref(rec, fetch)
        if (row[_REF_STATUS] == REF_TAP and row[_REF_TAP] == TapType.EXIT and not read_staged
                and jseq <= head() and stored(jseq).tobytes() == raw):
            if len(self._kept) >= REVERSE_REFS_KEPT_MAX:
                del self._kept[next(iter(self._kept))]
            self._kept[jseq] = (raw, row)
        return row


_REF_STATUS = REVERSE_REF_DTYPE.names.index("status")
_REF_TAP = REVERSE_REF_DTYPE.names.index("tap")
