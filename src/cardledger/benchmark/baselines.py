"""The baselines: the ledger an application without our core would write, on sqlite3 or py-lmdb.

Not product code. They exist so that every benchmark can put a number next to the
core's for the same work, and there is one set of them (`cardledger bench`, the
scripts and the pytest benchmarks in bench/ all use these).

The rules, which make a ratio to the core mean something:

- **The same decisions.** Each op is decided by the reference engine's handlers
  (`cardledger.engine.spec.batch`, `cardledger.engine.spec.taps`: the executable
  specification, the pure-Python fare evaluator rating every tap), so a baseline
  checks what the ledger checks, in the same order, and gives the same result code,
  amount, balance and discounts for every op of every kind; the runner and the
  tests compare them op by op. Ids are decided once, as the ledger decides them: a
  repeated id answers EXISTS with the original figures, EXISTS_WITH_DIFFERENT_FIELDS
  or ID_ALREADY_FAILED, and moves nothing.
- **Read-modify-write per op.** Nothing is cached between ops: every op claims its
  id in the database, reads the rows it touches (accounts, holds, the card's fare
  state), decides, and writes back the rows it changed, so it sees every earlier op
  of its batch. The journal record holds what the ledger's does (JOURNAL_DTYPE: the
  op, its decision, the accounts' back-pointers), appended with one bulk call per
  batch; the id index maps an id to its journal record, as the ledger's does.
- **One durable commit per batch:** sqlite3 in WAL mode with synchronous=FULL, or an
  LMDB write transaction with sync=True; a batch is whole or absent.
- **Competently written:** statements prepared once, the batch's ops converted once,
  each database's natural layout (sqlite: typed columns for the journal and the id
  index; LMDB: packed structs), account rows written only when they changed.

Purchases: `install_offers(catalog, effective_from_us)` gives a baseline the offer
catalog versions a ledger would have (compiled as the ledger compiles them; kept in
memory, like the fare versions, not in the database). The offer state is rows like
the accounts: each offer's spent budget (by slot), each card's counters per offer
and every successful purchase (what its REFUNDs give back), in tables of their own,
read per op (a PURCHASE reads its candidate offers' rows and union accounts; a
REFUND its purchase and the purchase's accounts and offer rows) and written back
when changed.

Unsupported, as no benchmark needs them: LINKED chains (ValueError).

    base = SqliteBaseline(directory)        # or LmdbBaseline(directory)
    results = base.apply(ops)               # OP_DTYPE batch -> RESULT_DTYPE
    base.balance(account_id); base.balances(); base.total_fen(); base.journal(); base.close()
"""

from __future__ import annotations

import functools
import os
import sqlite3
import struct
from collections.abc import Iterable
from typing import Any

import lmdb
import numpy as np

from ..engine.spec import batch as reference
from ..engine.spec import purchases as reference_purchases
from ..engine.spec import taps as reference_taps
from ..fares import FareSystem
from ..fares.taptables import TapTables, compile_taps
from ..offers.catalog import OfferCatalog
from ..offers.tables import compile_versions
from ..schema import (
    check_batch,
    ACCOUNT_DTYPE,
    JOURNAL_DTYPE,
    JOURNEY_DTYPE,
    NO_OFFER,
    OP_DTYPE,
    RESULT_DTYPE,
    OpFlags,
    OpKind,
    Result,
)

__all__ = ["BALANCES_DTYPE", "LmdbBaseline", "SqliteBaseline", "harbin_fare_versions"]

#: What `balances()` returns, by account id: the figures the runner compares.
BALANCES_DTYPE = np.dtype([("id", "<u8"), ("cash_fen", "<i8"), ("subsidy_fen", "<i8")])

#: An account row: ACCOUNT_DTYPE's fields, packed.
ACCOUNT_ROW = struct.Struct("<QHHHHqqqqqqqQQq")
#: A hold: PENDING_DTYPE's fields, packed.
PENDING_ROW = struct.Struct("<QQQQqqqQ")
#: What the journal adds to an op's bytes: JOURNAL_DTYPE's fields after OP_DTYPE's.
DECISION_ROW = struct.Struct("<IIqqQQQqQQQqqqq")
ID_KEY = struct.Struct(">QQ")  # (source, seq), big-endian so keys sort numerically
U64_KEY = struct.Struct(">Q")
#: An offer's use (OFFER_BUDGET_DTYPE after the slot) under its slot.
BUDGET_ROW = struct.Struct("<qqq")
SLOT_KEY = struct.Struct(">q")
#: A card's counters for an offer (CARD_OFFER_DTYPE after the key) under (card, slot).
CARD_OFFER_ROW = struct.Struct("<qqqq")
CARD_OFFER_KEY = struct.Struct(">Qq")
#: A successful purchase's journal record (the op's bytes, then DECISION_ROW) under its
#: id, what its REFUNDs read; and what is left to refund of a refunded one.
REFUNDABLE_ROW = struct.Struct("<q")

OP_NAMES: tuple[str, ...] = tuple(OP_DTYPE.names or ())
OP_BYTES = OP_DTYPE.itemsize
#: Tables of packed rows by key, in both baselines.
ROW_TABLES = ("accounts", "pending", "journeys", "offer_budgets", "card_offers", "purchases", "refunds")

#: Page cache of the sqlite baseline, KiB. sqlite's default is 2 MiB; anyone running a
#: city's ledger on it would give it room, as the core keeps its accounts in memory.
#: It changes no durability: the WAL is still synced at every COMMIT.
SQLITE_CACHE_KIB = 512 * 1024
#: Address space of the LMDB baseline; the file is sparse, so this costs nothing on disk.
LMDB_MAP_SIZE_BYTES = 64 << 30

_OK = int(Result.OK)
_LINKED = int(OpFlags.LINKED)
_POST_VOID = frozenset((int(OpKind.POST), int(OpKind.VOID)))
_REPLACE_CLOSE = frozenset((int(OpKind.REPLACE), int(OpKind.CLOSE)))
_TAP = int(OpKind.TAP)
_PURCHASE = int(OpKind.PURCHASE)
_REFUND = int(OpKind.REFUND)
_NO_OFFER = int(NO_OFFER)
_NEW = object.__new__

if ACCOUNT_ROW.size != ACCOUNT_DTYPE.itemsize or ACCOUNT_DTYPE.names != (
    "id", "kind", "flags", "category", "category_before", "cap_fen", "cash_fen", "subsidy_fen",
    "debits_posted", "credits_posted", "debits_pending", "credits_pending", "last_journal_seq",
    "member_ref", "category_since_us",
):  # fmt: skip
    raise ImportError("ACCOUNT_DTYPE changed: update ACCOUNT_ROW and _account() in benchmark/baselines.py")
if OP_BYTES + DECISION_ROW.size != JOURNAL_DTYPE.itemsize:
    raise ImportError("JOURNAL_DTYPE changed: update DECISION_ROW in benchmark/baselines.py")


def _signed(dtype: np.dtype) -> np.dtype:
    """`dtype` with every u64 field as i64: sqlite's integers are signed, and a view
    through this dtype maps ids at or above 2**63 to negative numbers and back."""
    names = list(dtype.names or ())
    formats = [np.dtype("<i8") if dtype[n] == np.dtype("<u8") else dtype[n] for n in names]
    offsets = [dtype.fields[n][1] for n in names]  # type: ignore[index]
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": dtype.itemsize})


#: The ops and journal records as the sqlite baseline stores them, column for column.
_SQL_OP_DTYPE = _signed(OP_DTYPE)
_SQL_JOURNAL_DTYPE = _signed(JOURNAL_DTYPE)
_JOURNAL_COLUMNS: tuple[str, ...] = tuple(JOURNAL_DTYPE.names or ())
#: Positions, in a decision (JOURNAL_DTYPE's fields after the op's), of the u64 fields.
_DECISION_U64 = tuple(i for i, name in enumerate(_JOURNAL_COLUMNS[len(OP_NAMES) :])
                      if JOURNAL_DTYPE[name] == np.dtype("<u8"))  # fmt: skip
_U64_WRAP = 1 << 64
_I64_SIGN = 1 << 63


@functools.cache
def harbin_fare_versions() -> tuple[TapTables, ...]:
    """The packaged Harbin fare system, compiled: what a new ledger rates taps by."""
    return (compile_taps(FareSystem.harbin(), 0),)


def _account(row: tuple) -> Any:
    """An unpacked ACCOUNT_ROW as the reference engine's Account (its field order)."""
    a: Any = _NEW(reference.Account)
    (a.id, a.kind, a.flags, a.category, a.category_before, a.cap_fen, a.cash_fen, a.subsidy_fen,
     a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending, a.last_journal_seq,
     a.member_ref, a.category_since_us) = row  # fmt: skip
    return a


def _account_bytes(a: Any) -> bytes:
    return ACCOUNT_ROW.pack(
        a.id, a.kind, a.flags, a.category, a.category_before, a.cap_fen, a.cash_fen, a.subsidy_fen,
        a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending, a.last_journal_seq,
        a.member_ref, a.category_since_us,
    )  # fmt: skip


class _Rows(reference.Engine):
    """The reference engine's handlers, run each time over only the rows one op loaded."""

    def __init__(self, fare_versions: Iterable[TapTables]) -> None:
        super().__init__()
        self.set_fare_versions(list(fare_versions))


class _Baseline:
    """The per-op logic both baselines share; a subclass is the row store."""

    def __init__(self, fare_versions: Iterable[TapTables] | None) -> None:
        self._rows = _Rows(harbin_fare_versions() if fare_versions is None else fare_versions)
        self._versions = self._rows.fares.versions
        self._offer_catalogs: list[tuple[int, OfferCatalog]] = []
        self.journal_seq = self._last_journal_seq()

    def install_offers(self, catalog: OfferCatalog, effective_from_us: int) -> None:
        """Install an offer catalog in force from `effective_from_us`, as
        `Ledger.install_offers` does (versions only appended; kept in memory)."""
        if self._offer_catalogs and effective_from_us <= self._offer_catalogs[-1][0]:
            raise ValueError("install_offers: effective_from_us must be later than the installed versions'")
        self._offer_catalogs.append((int(effective_from_us), catalog))
        tables, _ = compile_versions(self._offer_catalogs)
        self._rows.set_offer_versions(tables)

    # -- the store (subclasses) --------------------------------------------------------
    def _get(self, table: str, key: bytes) -> bytes | None:
        """The packed row under `key` in one of ROW_TABLES, or None."""
        raise NotImplementedError

    def _put(self, table: str, key: bytes, value: bytes) -> None:
        raise NotImplementedError

    def _delete(self, table: str, key: bytes) -> None:
        raise NotImplementedError

    def _holds_of(self, account_id: int) -> list[bytes]:
        raise NotImplementedError

    def _put_hold(self, key: bytes, row: list[int]) -> None:
        raise NotImplementedError

    def _delete_hold(self, key: bytes, row: list[int]) -> None:
        raise NotImplementedError

    def _begin_batch(self, ops: np.ndarray) -> None:
        """Convert the batch's ids and op fields once into what the store keeps."""
        raise NotImplementedError

    def _claim(self, i: int, jseq: int) -> bool:
        """Index op i's id as journal record `jseq` unless it is there already; True if indexed."""
        raise NotImplementedError

    def _claimed(self, i: int) -> int:
        """The journal record op i's id was decided in."""
        raise NotImplementedError

    def _record(self, i: int, decision: tuple[int, ...]) -> Any:
        """Op i's journal record, as the store keeps it."""
        raise NotImplementedError

    def _recorded(self, i: int, record: Any) -> tuple[bool, int, int, int, int]:
        """(op i has the recorded op's fields, code, discounts, amount, balance) of a record."""
        raise NotImplementedError

    def _journal_record(self, jseq: int) -> Any:
        raise NotImplementedError

    def _append_journal(self, first_jseq: int, records: list[Any]) -> None:
        raise NotImplementedError

    def _last_journal_seq(self) -> int:
        raise NotImplementedError

    def _account_rows(self) -> Iterable[bytes]:
        raise NotImplementedError

    # -- loading one op's rows ----------------------------------------------------
    def _load_account(self, aid: int, loaded: dict[int, bytes]) -> None:
        if aid and aid not in loaded:
            raw = self._get("accounts", U64_KEY.pack(aid))
            if raw is not None:
                loaded[aid] = raw
                self._rows.accounts[aid] = _account(ACCOUNT_ROW.unpack(raw))

    def _load_hold(self, key: tuple[int, int], loaded: dict[int, bytes]) -> None:
        raw = self._get("pending", ID_KEY.pack(*key))
        if raw is not None:
            row = list(PENDING_ROW.unpack(raw))
            self._rows.pending[key] = row
            self._load_account(row[2], loaded)
            self._load_account(row[3], loaded)

    def _load_journey(self, card_id: int) -> None:
        raw = self._get("journeys", U64_KEY.pack(card_id))
        if raw is not None:
            row = np.frombuffer(raw, dtype=JOURNEY_DTYPE)[0]
            self._rows.journeys[card_id] = reference_taps.Journey.from_row(row)

    def _load_budget(self, slot: int, offers: dict[tuple[str, Any], bytes]) -> None:
        st = self._rows.offers
        if slot not in st.slots:
            raw = self._get("offer_budgets", SLOT_KEY.pack(slot))
            if raw is not None:
                offers["offer_budgets", slot] = raw
                st.slots[slot] = list(BUDGET_ROW.unpack(raw))

    def _load_card_offer(self, key: tuple[int, int], offers: dict[tuple[str, Any], bytes]) -> None:
        st = self._rows.offers
        if key not in st.card_offer:
            raw = self._get("card_offers", CARD_OFFER_KEY.pack(*key))
            if raw is not None:
                offers["card_offers", key] = raw
                st.card_offer[key] = list(CARD_OFFER_ROW.unpack(raw))

    def _load_purchase_rows(self, op: dict, loaded: dict[int, bytes], offers: dict[tuple[str, Any], bytes]) -> None:
        """A PURCHASE's candidate offers' rows (budgets, the card's counters) and union
        accounts; a REFUND's purchase, its accounts and its offer's rows."""
        st = self._rows.offers
        if op["kind"] == _PURCHASE:
            v = st.at(op["time_us"])
            if v < 0:
                return
            t = st.versions[v]
            for i in reference_purchases._candidates(t, op["counterparty_id"]):
                slot = int(t.slot[i])
                if int(t.budget_fen[i]):
                    self._load_budget(slot, offers)
                if int(t.day_count[i]) or int(t.month_discount_fen[i]):
                    self._load_card_offer((op["account_id"], slot), offers)
                if int(t.union_share_bp[i]):
                    self._load_account(int(t.union_account[i]), loaded)
            return
        key = (op["ref_source"], op["ref_seq"])
        raw = self._get("purchases", ID_KEY.pack(*key))
        if raw is None:
            return
        rec = tuple(np.frombuffer(raw[:OP_BYTES], dtype=OP_DTYPE)[0].tolist()) + DECISION_ROW.unpack(raw[OP_BYTES:])
        self._rows.bought_ref = rec
        p = reference_purchases.purchase_of(rec)
        if p is None:
            return
        left = self._get("refunds", ID_KEY.pack(*key))
        if left is not None:
            offers["refunds", key] = left
            st.refunded[key] = REFUNDABLE_ROW.unpack(left)[0]
        for aid in (p["card"], p["merchant"], p["union"]):
            self._load_account(aid, loaded)
        slot = p["slot"]
        if slot != _NO_OFFER:
            self._load_budget(slot, offers)
            self._load_card_offer((p["card"], slot), offers)

    def _store_offer_rows(self, offers: dict[tuple[str, Any], bytes]) -> None:
        """Write back the offer rows the op changed or made."""
        st = self._rows.offers
        for slot, use in st.slots.items():
            raw = BUDGET_ROW.pack(*use)
            if offers.get(("offer_budgets", slot)) != raw:
                self._put("offer_budgets", SLOT_KEY.pack(slot), raw)
        for key, c in st.card_offer.items():
            raw = CARD_OFFER_ROW.pack(*c)
            if offers.get(("card_offers", key)) != raw:
                self._put("card_offers", CARD_OFFER_KEY.pack(*key), raw)
        for key, left in st.refunded.items():
            raw = REFUNDABLE_ROW.pack(left)
            if offers.get(("refunds", key)) != raw:
                self._put("refunds", ID_KEY.pack(*key), raw)

    def _load(self, op: dict, loaded: dict[int, bytes]) -> None:
        """Read every row `op` may touch into the engine: what the handlers will look at."""
        r = self._rows
        aid, kind = op["account_id"], op["kind"]
        self._load_account(aid, loaded)
        self._load_account(op["counterparty_id"], loaded)
        if kind in _POST_VOID:
            self._load_hold((op["ref_source"], op["ref_seq"]), loaded)
        elif kind in _REPLACE_CLOSE:
            for k in self._holds_of(aid):
                self._load_hold(ID_KEY.unpack(k), loaded)
            self._load_journey(aid)  # REPLACE moves the card's fare state to the new card
        elif kind == _TAP:
            self._load_journey(aid)
            j = r.journeys.get(aid)
            if j is not None and j.entry_version >= 0:
                self._load_hold((j.entry_source, j.entry_seq), loaded)
                self._load_account(int(self._versions[j.entry_version].route_operator[j.entry_route]), loaded)
            v = r.fares.at(op["time_us"])
            if v >= 0 and op["route"] < len(self._versions[v].route_operator):
                self._load_account(int(self._versions[v].route_operator[op["route"]]), loaded)

    # -- one new op -----------------------------------------------------------------
    def _decide(self, op: dict, jseq: int) -> tuple[int, ...]:
        """Decide a new op as journal record `jseq` and write the rows it changed; return
        the decision (JOURNAL_DTYPE's fields after the op's)."""
        r = self._rows
        r.accounts, r.pending, r.journeys = {}, {}, {}
        loaded: dict[int, bytes] = {}
        self._load(op, loaded)
        purchase = op["kind"] == _PURCHASE or op["kind"] == _REFUND
        offers: dict[tuple[str, Any], bytes] = {}
        if purchase:
            st = r.offers
            st.slots, st.card_offer, st.refunded = {}, {}, {}
            r.bought_ref = None
            self._load_purchase_rows(op, loaded, offers)
        holds_before = dict(r.pending)
        journeys_before = set(r.journeys)
        code, effect = r._execute(op, jseq)
        if code != _OK:  # a refused op changed nothing; it reports its account's balance
            a = r.accounts.get(op["account_id"])
            return (code, 0, 0, 0 if a is None else a.available(), jseq, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        amount, balance, debit_id, credit_id, subsidy = effect[:5]
        discounts = effect[5] if len(effect) > 5 else 0
        union_id, union_fen = effect[6:8] if len(effect) > 7 else (0, 0)
        offer_words = tuple(effect[8:11]) if len(effect) > 10 else (0, 0, 0)
        # The accounts' back-pointers to their previous record, as the ledger's journal keeps them.
        debit_prev = credit_prev = 0
        if debit_id:
            d: Any = r.accounts[debit_id]
            debit_prev, d.last_journal_seq = d.last_journal_seq, jseq
        if credit_id:
            c: Any = r.accounts[credit_id]
            credit_prev, c.last_journal_seq = c.last_journal_seq, jseq
        for account_id, account in r.accounts.items():
            raw = _account_bytes(account)
            if loaded.get(account_id) != raw:
                self._put("accounts", U64_KEY.pack(account_id), raw)
        for key, row in holds_before.items():
            if key not in r.pending:
                self._delete_hold(ID_KEY.pack(*key), row)
        for key, row in r.pending.items():
            if key not in holds_before:
                self._put_hold(ID_KEY.pack(*key), row)
        if purchase:
            self._store_offer_rows(offers)
        for card_id in journeys_before - set(r.journeys):
            self._delete("journeys", U64_KEY.pack(card_id))
        for card_id, j in r.journeys.items():
            self._put("journeys", U64_KEY.pack(card_id), reference_taps.export_journeys({card_id: j}).tobytes())
        decision = (code, discounts, amount, balance, jseq, debit_id, credit_id, subsidy, debit_prev, credit_prev,
                    union_id, union_fen) + offer_words
        if op["kind"] == _PURCHASE:  # its record, for its REFUNDs
            op_bytes = np.array([tuple(op[n] for n in OP_NAMES)], dtype=OP_DTYPE).tobytes()
            self._put("purchases", ID_KEY.pack(op["source"], op["seq"]), op_bytes + DECISION_ROW.pack(*decision))
        return decision

    def _apply_rows(self, ops: np.ndarray) -> np.ndarray:
        """Decide every op of the batch inside the caller's transaction; return the results."""
        results: list[tuple[int, int, int, int, int]] = []
        journal: list[Any] = []  # the batch's records, stored with one bulk call at its end
        first_jseq = self.journal_seq + 1
        self._begin_batch(ops)
        for i, row in enumerate(ops.tolist()):
            if row[0] == 0:  # source 0 is no id
                results.append((int(Result.INVALID_ID), 0, 0, 0, 0))
                continue
            op = dict(zip(OP_NAMES, row))
            if op["flags"] & _LINKED:
                raise ValueError("the baselines do not support LINKED chains")
            jseq = self.journal_seq + 1
            if not self._claim(i, jseq):
                prior = self._claimed(i)
                record = journal[prior - first_jseq] if prior >= first_jseq else self._journal_record(prior)
                same_fields, code, discounts, amount, balance = self._recorded(i, record)
                if code != _OK:
                    results.append((int(Result.ID_ALREADY_FAILED), 0, 0, 0, prior))
                elif not same_fields:
                    results.append((int(Result.EXISTS_WITH_DIFFERENT_FIELDS), 0, 0, 0, prior))
                else:
                    results.append((int(Result.EXISTS), discounts, amount, balance, prior))
                continue
            decision = self._decide(op, jseq)
            self.journal_seq = jseq
            journal.append(self._record(i, decision))
            results.append((decision[0], decision[1], decision[2], decision[3], jseq))
        if journal:
            self._append_journal(first_jseq, journal)
        return np.array(results, dtype=RESULT_DTYPE)

    # -- reading --------------------------------------------------------------------
    def balance(self, account_id: int) -> int:
        """Available balance (fen: both purses of a card) of `account_id`; KeyError if it does not exist."""
        raw = self._read_account(account_id)
        if raw is None:
            raise KeyError(f"balance: no account {account_id}")
        row = ACCOUNT_ROW.unpack(raw)
        return int(row[6] + row[7])

    def balances(self) -> np.ndarray:
        """(id, cash_fen, subsidy_fen) of every account, by id (BALANCES_DTYPE)."""
        rows = [ACCOUNT_ROW.unpack(v) for v in self._account_rows()]
        return np.array([(r[0], r[6], r[7]) for r in rows], dtype=BALANCES_DTYPE)

    def total_fen(self) -> int:
        """Sum over every account of both purses and the holds it placed: 0 when double entry holds."""
        return sum(r[6] + r[7] + r[10] for r in map(ACCOUNT_ROW.unpack, self._account_rows()))

    def journal(self) -> np.ndarray:
        """Every journal record, in order (JOURNAL_DTYPE: the ledger's records for the same ops)."""
        raise NotImplementedError

    def _read_account(self, account_id: int) -> bytes | None:
        raise NotImplementedError

    def __enter__(self) -> _Baseline:
        """The baseline; closed when the `with` block ends."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the baseline."""
        self.close()

    def close(self) -> None:
        """Close the database; closing twice does nothing."""
        raise NotImplementedError


class SqliteBaseline(_Baseline):
    """sqlite3, WAL, synchronous=FULL, one transaction per batch.

    The journal and the id index are tables of typed columns (JOURNAL_DTYPE's fields;
    (source, seq) -> journal_seq), as one would lay them out in sqlite; accounts, holds
    and fare states are packed rows by key, read and written whole.
    """

    def __init__(self, path: str | os.PathLike[str], fare_versions: Iterable[TapTables] | None = None) -> None:
        """Open (creating if needed) the baseline in directory `path`; taps rated by `fare_versions`
        (default: the packaged Harbin fares, as a new ledger)."""
        os.makedirs(path, exist_ok=True)
        self.path = os.fspath(path)
        self.db: sqlite3.Connection | None = sqlite3.connect(
            os.path.join(path, "ledger.sqlite"), isolation_level=None  # BEGIN / COMMIT are ours
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        for t in ROW_TABLES:
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {t} (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
        self.db.execute("CREATE TABLE IF NOT EXISTS holds_by_account (a BLOB, k BLOB, PRIMARY KEY (a, k)) WITHOUT ROWID")
        self.db.execute("CREATE TABLE IF NOT EXISTS ids (source INTEGER, seq INTEGER, journal_seq INTEGER NOT NULL, "
                        "PRIMARY KEY (source, seq)) WITHOUT ROWID")  # fmt: skip
        columns = ", ".join(f"{c} INTEGER PRIMARY KEY" if c == "journal_seq" else f"{c} INTEGER NOT NULL"
                            for c in _JOURNAL_COLUMNS)  # fmt: skip
        self.db.execute(f"CREATE TABLE IF NOT EXISTS journal ({columns})")
        self._insert_journal = f"INSERT INTO journal VALUES ({', '.join('?' * len(_JOURNAL_COLUMNS))})"
        self._sel = {t: f"SELECT v FROM {t} WHERE k = ?" for t in ROW_TABLES}
        self._ins = {t: f"INSERT OR REPLACE INTO {t} (k, v) VALUES (?, ?)" for t in ROW_TABLES}
        self._del = {t: f"DELETE FROM {t} WHERE k = ?" for t in ROW_TABLES}
        self._ops: list[tuple[int, ...]] = []
        super().__init__(fare_versions)

    def _get(self, table: str, key: bytes) -> bytes | None:
        row = self.db.execute(self._sel[table], (key,)).fetchone()  # type: ignore[union-attr]
        return None if row is None else row[0]

    def _put(self, table: str, key: bytes, value: bytes) -> None:
        self.db.execute(self._ins[table], (key, value))  # type: ignore[union-attr]

    def _delete(self, table: str, key: bytes) -> None:
        self.db.execute(self._del[table], (key,))  # type: ignore[union-attr]

    def _put_hold(self, key: bytes, row: list[int]) -> None:
        self._put("pending", key, PENDING_ROW.pack(*row))
        for a in (row[2], row[3]):
            self.db.execute("INSERT OR REPLACE INTO holds_by_account VALUES (?, ?)", (U64_KEY.pack(a), key))  # type: ignore[union-attr]

    def _delete_hold(self, key: bytes, row: list[int]) -> None:
        self._delete("pending", key)
        for a in (row[2], row[3]):  # by the whole primary key: `WHERE k = ?` alone would scan
            self.db.execute("DELETE FROM holds_by_account WHERE a = ? AND k = ?", (U64_KEY.pack(a), key))  # type: ignore[union-attr]

    def _holds_of(self, account_id: int) -> list[bytes]:
        rows = self.db.execute("SELECT k FROM holds_by_account WHERE a = ?", (U64_KEY.pack(account_id),))  # type: ignore[union-attr]
        return [r[0] for r in rows]

    def _begin_batch(self, ops: np.ndarray) -> None:
        self._ops = ops.view(_SQL_OP_DTYPE).tolist()

    def _claim(self, i: int, jseq: int) -> bool:
        op = self._ops[i]
        cur = self.db.execute("INSERT OR IGNORE INTO ids VALUES (?, ?, ?)", (op[0], op[1], jseq))  # type: ignore[union-attr]
        return cur.rowcount == 1

    def _claimed(self, i: int) -> int:
        op = self._ops[i]
        row = self.db.execute("SELECT journal_seq FROM ids WHERE source = ? AND seq = ?", op[:2]).fetchone()  # type: ignore[union-attr]
        return int(row[0])

    def _record(self, i: int, decision: tuple[int, ...]) -> tuple[int, ...]:
        d = list(decision)
        for k in _DECISION_U64:
            if d[k] >= _I64_SIGN:
                d[k] -= _U64_WRAP
        return (*self._ops[i], *d)

    def _recorded(self, i: int, record: tuple[int, ...]) -> tuple[bool, int, int, int, int]:
        n = len(OP_NAMES)
        return (record[:n] == self._ops[i], *record[n : n + 4])  # type: ignore[return-value]

    def _journal_record(self, jseq: int) -> tuple[int, ...]:
        return self.db.execute("SELECT * FROM journal WHERE journal_seq = ?", (jseq,)).fetchone()  # type: ignore[union-attr, no-any-return]

    def _append_journal(self, first_jseq: int, records: list[Any]) -> None:
        self.db.executemany(self._insert_journal, records)  # type: ignore[union-attr]

    def _last_journal_seq(self) -> int:
        row = self._live().execute("SELECT MAX(journal_seq) FROM journal").fetchone()
        return int(row[0] or 0)

    def _read_account(self, account_id: int) -> bytes | None:
        self._live()
        return self._get("accounts", U64_KEY.pack(account_id))

    def _account_rows(self) -> Iterable[bytes]:
        return [v for (v,) in self._live().execute("SELECT v FROM accounts ORDER BY k")]

    def journal(self) -> np.ndarray:
        """Every journal record, in order (JOURNAL_DTYPE: the ledger's records for the same ops)."""
        rows = self._live().execute("SELECT * FROM journal ORDER BY journal_seq").fetchall()
        return np.array(rows, dtype=_SQL_JOURNAL_DTYPE).view(JOURNAL_DTYPE)

    def apply(self, ops: np.ndarray) -> np.ndarray:
        """Apply a batch in one durable transaction; one RESULT_DTYPE record per op."""
        check_batch(ops)
        if len(ops) == 0:
            return np.zeros(0, dtype=RESULT_DTYPE)
        db = self._live()
        start_seq = self.journal_seq
        db.execute("BEGIN IMMEDIATE")
        try:
            out = self._apply_rows(ops)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self.journal_seq = start_seq
            raise
        return out

    def _live(self) -> sqlite3.Connection:
        if self.db is None:
            raise RuntimeError("SqliteBaseline is closed")
        return self.db

    def close(self) -> None:
        """Close the database; closing twice does nothing."""
        if self.db is not None:
            self.db.close()
            self.db = None


class LmdbBaseline(_Baseline):
    """py-lmdb, one write transaction and sync per batch; one named database per kind of
    row, the journal records as JOURNAL_DTYPE bytes under their journal_seq."""

    def __init__(self, path: str | os.PathLike[str], fare_versions: Iterable[TapTables] | None = None) -> None:
        """Open (creating if needed) the baseline in directory `path`; taps rated by `fare_versions`
        (default: the packaged Harbin fares, as a new ledger)."""
        os.makedirs(path, exist_ok=True)
        self.path = os.fspath(path)
        self.env: Any = lmdb.open(self.path, map_size=LMDB_MAP_SIZE_BYTES, max_dbs=16, sync=True, metasync=True)
        self.dbs = {t: self.env.open_db(t.encode()) for t in (*ROW_TABLES, "ids", "journal")}
        self.dbs["holds_by_account"] = self.env.open_db(b"holds_by_account", dupsort=True)
        self.txn: Any = None
        self._raw = b""
        self._id_keys: list[bytes] = []
        super().__init__(fare_versions)

    def _get(self, table: str, key: bytes) -> bytes | None:
        return self.txn.get(key, db=self.dbs[table])  # type: ignore[no-any-return]

    def _put(self, table: str, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self.dbs[table])

    def _delete(self, table: str, key: bytes) -> None:
        self.txn.delete(key, db=self.dbs[table])

    def _put_hold(self, key: bytes, row: list[int]) -> None:
        self._put("pending", key, PENDING_ROW.pack(*row))
        for a in (row[2], row[3]):
            self.txn.put(U64_KEY.pack(a), key, db=self.dbs["holds_by_account"])

    def _delete_hold(self, key: bytes, row: list[int]) -> None:
        self._delete("pending", key)
        for a in (row[2], row[3]):
            self.txn.delete(U64_KEY.pack(a), key, db=self.dbs["holds_by_account"])

    def _holds_of(self, account_id: int) -> list[bytes]:
        cur = self.txn.cursor(db=self.dbs["holds_by_account"])
        if not cur.set_key(U64_KEY.pack(account_id)):
            return []
        return [bytes(v) for v in cur.iternext_dup()]

    def _begin_batch(self, ops: np.ndarray) -> None:
        self._raw = ops.tobytes()
        keys = np.empty(len(ops), dtype=[("source", ">u8"), ("seq", ">u8")])  # what ID_KEY packs, in one go
        keys["source"] = ops["source"]
        keys["seq"] = ops["seq"]
        self._id_keys = keys.view("V16").tolist()

    def _claim(self, i: int, jseq: int) -> bool:
        return bool(self.txn.put(self._id_keys[i], U64_KEY.pack(jseq), overwrite=False, db=self.dbs["ids"]))

    def _claimed(self, i: int) -> int:
        return int(U64_KEY.unpack(self.txn.get(self._id_keys[i], db=self.dbs["ids"]))[0])

    def _record(self, i: int, decision: tuple[int, ...]) -> bytes:
        return self._raw[i * OP_BYTES : (i + 1) * OP_BYTES] + DECISION_ROW.pack(*decision)

    def _recorded(self, i: int, record: bytes) -> tuple[bool, int, int, int, int]:
        code, discounts, amount, balance = DECISION_ROW.unpack_from(record, OP_BYTES)[:4]
        return record[:OP_BYTES] == self._raw[i * OP_BYTES : (i + 1) * OP_BYTES], code, discounts, amount, balance

    def _journal_record(self, jseq: int) -> bytes:
        return self.txn.get(U64_KEY.pack(jseq), db=self.dbs["journal"])  # type: ignore[no-any-return]

    def _append_journal(self, first_jseq: int, records: list[Any]) -> None:
        items = [(U64_KEY.pack(first_jseq + k), rec) for k, rec in enumerate(records)]
        _, added = self.txn.cursor(db=self.dbs["journal"]).putmulti(items, append=True)
        if added != len(items):  # putmulti(append=True) skips out-of-order keys silently
            raise RuntimeError(f"journal append stored {added} of {len(items)} records: journal out of order")

    def _last_journal_seq(self) -> int:
        with self._live().begin() as txn:
            cur = txn.cursor(db=self.dbs["journal"])
            return U64_KEY.unpack(cur.key())[0] if cur.last() else 0

    def _read_account(self, account_id: int) -> bytes | None:
        with self._live().begin() as txn:
            return txn.get(U64_KEY.pack(account_id), db=self.dbs["accounts"])  # type: ignore[no-any-return]

    def _account_rows(self) -> Iterable[bytes]:
        return self._values("accounts")

    def journal(self) -> np.ndarray:
        """Every journal record, in order (JOURNAL_DTYPE: the ledger's records for the same ops)."""
        return np.frombuffer(b"".join(self._values("journal")), dtype=JOURNAL_DTYPE).copy()

    def _values(self, table: str) -> list[bytes]:
        with self._live().begin() as txn:
            return [bytes(v) for v in txn.cursor(db=self.dbs[table]).iternext(keys=False, values=True)]

    def apply(self, ops: np.ndarray) -> np.ndarray:
        """Apply a batch in one durable write transaction; one RESULT_DTYPE record per op."""
        check_batch(ops)
        if len(ops) == 0:
            return np.zeros(0, dtype=RESULT_DTYPE)
        start_seq = self.journal_seq
        # Commits on a clean exit from the block, aborts on an exception.
        with self._live().begin(write=True) as txn:
            self.txn = txn
            try:
                return self._apply_rows(ops)
            except BaseException:
                self.journal_seq = start_seq
                raise
            finally:
                self.txn = None

    def _live(self) -> Any:
        if self.env is None:
            raise RuntimeError("LmdbBaseline is closed")
        return self.env

    def close(self) -> None:
        """Close the environment; closing twice does nothing."""
        if self.env is not None:
            self.env.close()
            self.env = None
