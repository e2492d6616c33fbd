"""Baselines for `cardledger bench`: the ledger an application without our core would write.

Not product code. Each baseline keeps every account, hold, card fare state and
decided id in a database and, for every op, reads the rows the op touches,
decides it in Python with the reference engine's rules (`cardledger.reference`,
`cardledger.reference_taps`: the pure-Python fare evaluator rates every tap), and
writes the changed rows back: read-modify-write per op, one transaction and one
durable commit per batch. Because the rules are the reference's, a baseline must
end with exactly the balances of the core, which the runner checks.

- `SqliteBaseline`: sqlite3, WAL, synchronous=FULL, a 512 MiB page cache, one table per kind of row.
- `LmdbBaseline`: py-lmdb, one named database per kind of row, a sync per commit.

Both support what the scenario uses: single ops (no LINKED chains), all op kinds.
Ids: an op whose id was decided before is answered from the stored decision
(EXISTS / EXISTS_WITH_DIFFERENT_FIELDS / ID_ALREADY_FAILED), as the product does.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from typing import Any

import lmdb
import numpy as np

from ..engine.spec import batch as reference
from ..engine.spec import taps as reference_taps
from ..fares.taptables import TapTables
from ..schema import JOURNEY_DTYPE, OP_DTYPE, RESULT_DTYPE, OpKind, Result

ACCOUNT_ROW = struct.Struct("<QHHHHqqqqqqqQ")
PENDING_ROW = struct.Struct("<QQQQqqqQ")
DECISION_ROW = struct.Struct("<IIqqQ")  # code, discounts, amount, balance, journal_seq
ID_KEY = struct.Struct(">QQ")
U64_KEY = struct.Struct(">Q")
OP_NAMES = OP_DTYPE.names


class _Rows(reference.Engine):
    """The reference engine's handlers, run over the rows one op loaded."""

    def __init__(self, fare_versions: list[TapTables]) -> None:
        super().__init__()
        self.set_fare_versions(fare_versions)


class _Baseline:
    """Shared per-op logic; subclasses provide the row store."""

    def __init__(self, fare_versions: list[TapTables]) -> None:
        self._rows = _Rows(fare_versions)
        self._versions = fare_versions
        self.journal_seq = 0

    # -- row store (subclasses) ------------------------------------------------
    def _get(self, table: str, key: bytes) -> bytes | None:
        raise NotImplementedError

    def _put(self, table: str, key: bytes, value: bytes) -> None:
        raise NotImplementedError

    def _delete(self, table: str, key: bytes) -> None:
        raise NotImplementedError

    def _holds_of(self, account_id: int) -> list[bytes]:
        raise NotImplementedError

    # -- one op -----------------------------------------------------------------
    def _load_account(self, aid: int) -> None:
        if aid and aid not in self._rows.accounts:
            raw = self._get("accounts", U64_KEY.pack(aid))
            if raw is not None:
                self._rows.accounts[aid] = reference.Account(**dict(zip(reference.ACCOUNT_FIELDS, ACCOUNT_ROW.unpack(raw))))

    def _load_hold(self, key: tuple[int, int]) -> None:
        raw = self._get("pending", ID_KEY.pack(*key))
        if raw is not None:
            row = list(PENDING_ROW.unpack(raw))
            self._rows.pending[key] = row
            self._load_account(row[2])
            self._load_account(row[3])

    def _decide(self, op: dict, raw_op: bytes) -> tuple[int, int, int, int]:
        """(code, amount, balance, discounts) of one new op; writes its rows."""
        r = self._rows
        r.accounts, r.pending, r.journeys = {}, {}, {}
        aid, cid, kind = op["account_id"], op["counterparty_id"], op["kind"]
        self._load_account(aid)
        self._load_account(cid)
        if kind in (OpKind.POST, OpKind.VOID):
            self._load_hold((op["ref_source"], op["ref_seq"]))
        if kind in (OpKind.REPLACE, OpKind.CLOSE):
            for k in self._holds_of(aid):
                self._load_hold(ID_KEY.unpack(k))
        if kind == OpKind.TAP:
            raw = self._get("journeys", U64_KEY.pack(aid))
            if raw is not None:
                j = reference_taps.Journey.from_row(np.frombuffer(raw, dtype=JOURNEY_DTYPE)[0])
                r.journeys[aid] = j
                if j.entry_version >= 0:
                    self._load_hold((j.entry_source, j.entry_seq))
                    self._load_account(int(self._versions[j.entry_version].route_operator[j.entry_route]))
            v = r.fares.at(op["time_us"])
            if v >= 0 and op["route"] < len(self._versions[v].route_operator):
                self._load_account(int(self._versions[v].route_operator[op["route"]]))
        before_pending = set(r.pending)
        jseq = self.journal_seq + 1
        code, effect = r._execute(op, jseq)
        self.journal_seq = jseq
        if code == Result.OK:
            for a in r.accounts.values():
                self._put("accounts", U64_KEY.pack(a.id), ACCOUNT_ROW.pack(*a.as_tuple()))
            for key in before_pending - set(r.pending):
                self._delete("pending", ID_KEY.pack(*key))
            for key in set(r.pending) - before_pending:
                self._put("pending", ID_KEY.pack(*key), PENDING_ROW.pack(*r.pending[key]))
            if aid in r.journeys:
                self._put("journeys", U64_KEY.pack(aid), reference_taps.export_journeys({aid: r.journeys[aid]}).tobytes())
            amount, balance = effect[0], effect[1]
            discounts = effect[5] if len(effect) > 5 else 0
        else:
            a = r.accounts.get(aid)
            amount, balance, discounts = 0, 0 if a is None else a.available(), 0
        self._put("journal", U64_KEY.pack(jseq), raw_op + DECISION_ROW.pack(code, discounts, amount, balance, jseq))
        self._put("ids", ID_KEY.pack(op["source"], op["seq"]), raw_op + DECISION_ROW.pack(code, discounts, amount, balance, jseq))
        return code, amount, balance, discounts

    def _apply_rows(self, ops: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ops), dtype=RESULT_DTYPE)
        rows = ops.tolist()
        raws = [ops[i : i + 1].tobytes() for i in range(len(ops))]
        n_op = OP_DTYPE.itemsize
        for i, row in enumerate(rows):
            op = dict(zip(OP_NAMES, row))
            if op["source"] == 0:
                out[i] = (Result.INVALID_ID, 0, 0, 0, 0)
                continue
            if op["flags"] & 1:
                raise ValueError("baselines do not support LINKED chains")
            prior = self._get("ids", ID_KEY.pack(op["source"], op["seq"]))
            if prior is not None:
                code, discounts, amount, balance, jseq = DECISION_ROW.unpack(prior[n_op:])
                if code != Result.OK:
                    out[i] = (Result.ID_ALREADY_FAILED, 0, 0, 0, jseq)
                elif prior[:n_op] != raws[i]:
                    out[i] = (Result.EXISTS_WITH_DIFFERENT_FIELDS, 0, 0, 0, jseq)
                else:
                    out[i] = (Result.EXISTS, discounts, amount, balance, jseq)
                continue
            code, amount, balance, discounts = self._decide(op, raws[i])
            out[i] = (code, discounts, amount, balance, self.journal_seq)
        return out

    def balances(self) -> np.ndarray:
        """(id, cash_fen, subsidy_fen) of every account, by id."""
        raise NotImplementedError


#: The sqlite baseline's page cache, KiB.
SQLITE_CACHE_KIB = 512 * 1024


class SqliteBaseline(_Baseline):
    """sqlite3, WAL, synchronous=FULL; one transaction per batch (module docstring)."""

    TABLES = ("accounts", "pending", "journeys", "ids", "journal")

    def __init__(self, path: str, fare_versions: list[TapTables]) -> None:
        super().__init__(fare_versions)
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(os.path.join(path, "ledger.sqlite"), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        # sqlite's default page cache is 2 MiB; anyone running a city's ledger on it
        # would give it room (the core keeps its accounts in memory too).
        self.db.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        for t in self.TABLES:
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {t} (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
        self.db.execute("CREATE TABLE IF NOT EXISTS holds_by_account (a BLOB, k BLOB, PRIMARY KEY (a, k)) WITHOUT ROWID")
        self._sel = {t: f"SELECT v FROM {t} WHERE k = ?" for t in self.TABLES}
        self._ins = {t: f"INSERT OR REPLACE INTO {t} (k, v) VALUES (?, ?)" for t in self.TABLES}
        self._del = {t: f"DELETE FROM {t} WHERE k = ?" for t in self.TABLES}

    def _get(self, table: str, key: bytes) -> bytes | None:
        row = self.db.execute(self._sel[table], (key,)).fetchone()
        return None if row is None else row[0]

    def _put(self, table: str, key: bytes, value: bytes) -> None:
        self.db.execute(self._ins[table], (key, value))
        if table == "pending":
            row = PENDING_ROW.unpack(value)
            for a in (row[2], row[3]):
                self.db.execute("INSERT OR REPLACE INTO holds_by_account VALUES (?, ?)", (U64_KEY.pack(a), key))

    def _delete(self, table: str, key: bytes) -> None:
        raw = self._get("pending", key) if table == "pending" else None
        self.db.execute(self._del[table], (key,))
        if raw is not None:
            # By the full primary key (a, k): `WHERE k = ?` alone scans the whole table,
            # which made every metro exit cost a scan of all open entries.
            row = PENDING_ROW.unpack(raw)
            for a in (row[2], row[3]):
                self.db.execute("DELETE FROM holds_by_account WHERE a = ? AND k = ?", (U64_KEY.pack(a), key))

    def _holds_of(self, account_id: int) -> list[bytes]:
        rows = self.db.execute("SELECT k FROM holds_by_account WHERE a = ?", (U64_KEY.pack(account_id),))
        return [r[0] for r in rows]

    def apply(self, ops: np.ndarray) -> np.ndarray:
        """Apply a batch in one durable transaction; one RESULT_DTYPE per op."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            out = self._apply_rows(ops)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return out

    def balances(self) -> np.ndarray:
        """(id, cash_fen, subsidy_fen) of every account, by id."""
        rows = [ACCOUNT_ROW.unpack(v) for (v,) in self.db.execute("SELECT v FROM accounts ORDER BY k")]
        return np.array([(r[0], r[6], r[7]) for r in rows], dtype=[("id", "<u8"), ("cash_fen", "<i8"), ("subsidy_fen", "<i8")])

    def close(self) -> None:
        """Close the database."""
        self.db.close()


class LmdbBaseline(_Baseline):
    """py-lmdb, one write transaction and sync per batch (module docstring)."""

    def __init__(self, path: str, fare_versions: list[TapTables]) -> None:
        super().__init__(fare_versions)
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.env = lmdb.open(path, map_size=1 << 36, max_dbs=8, sync=True, metasync=True)
        self.dbs = {t: self.env.open_db(t.encode()) for t in SqliteBaseline.TABLES}
        self.dbs["holds_by_account"] = self.env.open_db(b"holds_by_account", dupsort=True)
        self.txn: Any = None

    def _get(self, table: str, key: bytes) -> bytes | None:
        return self.txn.get(key, db=self.dbs[table])

    def _put(self, table: str, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self.dbs[table])
        if table == "pending":
            row = PENDING_ROW.unpack(value)
            for a in (row[2], row[3]):
                self.txn.put(U64_KEY.pack(a), key, db=self.dbs["holds_by_account"])

    def _delete(self, table: str, key: bytes) -> None:
        raw = self.txn.get(key, db=self.dbs["pending"]) if table == "pending" else None
        self.txn.delete(key, db=self.dbs[table])
        if raw is not None:
            row = PENDING_ROW.unpack(raw)
            for a in (row[2], row[3]):
                self.txn.delete(U64_KEY.pack(a), key, db=self.dbs["holds_by_account"])

    def _holds_of(self, account_id: int) -> list[bytes]:
        cur = self.txn.cursor(db=self.dbs["holds_by_account"])
        if not cur.set_key(U64_KEY.pack(account_id)):
            return []
        return [bytes(v) for v in cur.iternext_dup()]

    def apply(self, ops: np.ndarray) -> np.ndarray:
        """Apply a batch in one durable transaction; one RESULT_DTYPE per op."""
        with self.env.begin(write=True) as txn:
            self.txn = txn
            try:
                return self._apply_rows(ops)
            finally:
                self.txn = None

    def balances(self) -> np.ndarray:
        """(id, cash_fen, subsidy_fen) of every account, by id."""
        with self.env.begin() as txn:
            rows = [ACCOUNT_ROW.unpack(v) for _, v in txn.cursor(db=self.dbs["accounts"])]
        return np.array([(r[0], r[6], r[7]) for r in rows], dtype=[("id", "<u8"), ("cash_fen", "<i8"), ("subsidy_fen", "<i8")])

    def close(self) -> None:
        """Close the environment."""
        self.env.close()
