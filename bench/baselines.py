"""Baseline ledgers for comparison: what a team without our core would write.

These are NOT product code. They exist so that `bench_throughput.py` and
`test_bench_apply.py` can put a number next to the core's: the same ops, the same
durability (a durable commit per batch), stored the straightforward way.

Both ledgers have the same face as the core for the part they support:

    led = SqliteLedger(directory)        # or NaiveLmdbLedger(directory)
    results = led.apply(ops)             # ops: OP_DTYPE array -> RESULT_DTYPE array
    led.balance(account_id)              # -> int fen
    led.close()

Supported op kinds and their rules (a deliberately small subset of the product):

- OPEN: creates `account_id` with `account_kind`; a card's cash cap is `limit_fen`, or
  DEFAULT_CASH_CAP_FEN when 0. An existing id gets ACCOUNT_EXISTS.
- TOPUP: CLEARING `counterparty_id` -> CARD `account_id`. The clearing account may go
  negative; the card may not exceed its cap (EXCEEDS_CAP).
- SPEND: CARD `account_id` -> non-card `counterparty_id`; INSUFFICIENT_FUNDS when the
  card holds less than the amount.
- TRANSFER: `account_id` -> `counterparty_id`; only a CLEARING account may go negative,
  and a card credited may not exceed its cap.
- Every other kind gets INVALID_KIND; any op flag gets INVALID_FLAGS (no LINKED chains,
  no two-phase transfers, no subsidy purse: a card has one cash balance).

Checks run in the reference engine's order (amount, ids, existence, kinds, funds, cap,
overflow) so that both report the same code for the same bad op, as far as this subset
goes. Idempotency is what a reasonable application does: a table keyed by (source, seq),
written in the same transaction as the money movement. Every decided id (succeeded or
failed) is recorded and journaled; a repeated id gets EXISTS, moves no money, is not
journaled, and reports the account's current balance.

Each op does its own read-modify-write of the account records (no in-batch cache),
which is what makes these baselines cheap to write and slow to run.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from _schema import (
    AMOUNT_MAX_FEN,
    BATCH_OPS_MAX,
    CAP_MAX_FEN,
    DEFAULT_CASH_CAP_FEN,
    INT64_MAX,
    OP_DTYPE,
    RESULT_DTYPE,
    AccountKind,
    OpKind,
    Result,
)

__all__ = ["SqliteLedger", "NaiveLmdbLedger"]

# Plain ints for the hot loop: comparing against an IntEnum member is slower.
_OPEN = int(OpKind.OPEN)
_TOPUP = int(OpKind.TOPUP)
_SPEND = int(OpKind.SPEND)
_TRANSFER = int(OpKind.TRANSFER)
_MOVES = frozenset((_TOPUP, _SPEND, _TRANSFER))

_CARD = int(AccountKind.CARD)
_CLEARING = int(AccountKind.CLEARING)
_ACCOUNT_KINDS = frozenset(int(k) for k in AccountKind)

_OK = int(Result.OK)
_EXISTS = int(Result.EXISTS)
_INVALID_KIND = int(Result.INVALID_KIND)
_INVALID_FLAGS = int(Result.INVALID_FLAGS)
_INVALID_AMOUNT = int(Result.INVALID_AMOUNT)
_INVALID_ACCOUNT_ID = int(Result.INVALID_ACCOUNT_ID)
_INVALID_ACCOUNT_KIND = int(Result.INVALID_ACCOUNT_KIND)
_ACCOUNT_NOT_FOUND = int(Result.ACCOUNT_NOT_FOUND)
_COUNTERPARTY_NOT_FOUND = int(Result.COUNTERPARTY_NOT_FOUND)
_ACCOUNT_EXISTS = int(Result.ACCOUNT_EXISTS)
_ACCOUNTS_MUST_BE_DIFFERENT = int(Result.ACCOUNTS_MUST_BE_DIFFERENT)
_WRONG_ACCOUNT_KIND = int(Result.WRONG_ACCOUNT_KIND)
_WRONG_COUNTERPARTY_KIND = int(Result.WRONG_COUNTERPARTY_KIND)
_INSUFFICIENT_FUNDS = int(Result.INSUFFICIENT_FUNDS)
_EXCEEDS_CAP = int(Result.EXCEEDS_CAP)
_OVERFLOW = int(Result.OVERFLOW)

#: Op fields the baselines read, in the order the hot loop unpacks them.
_OP_FIELDS = (
    "source",
    "seq",
    "kind",
    "flags",
    "account_id",
    "counterparty_id",
    "amount_fen",
    "limit_fen",
    "account_kind",
    "time_us",
)

#: An account as both baselines hold it: (kind, cap_fen, balance_fen).
Account = tuple[int, int, int]

_U64_WRAP = 1 << 64
_I64_SIGN = 1 << 63


def _check_batch(ops: np.ndarray) -> None:
    """Raise TypeError / ValueError when `ops` is not a 1-D OP_DTYPE batch we accept."""
    if not isinstance(ops, np.ndarray) or ops.dtype != OP_DTYPE:
        raise TypeError(
            f"apply: ops must be a numpy array of dtype OP_DTYPE, "
            f"got {type(ops).__name__} of {getattr(ops, 'dtype', None)}"
        )
    if ops.ndim != 1:
        raise ValueError(f"apply: ops must be 1-D, got shape {ops.shape}")
    if len(ops) > BATCH_OPS_MAX:
        raise ValueError(
            f"apply: batch of {len(ops)} ops exceeds BATCH_OPS_MAX={BATCH_OPS_MAX}; split it"
        )


def _columns(ops: np.ndarray) -> list[list[Any]]:
    """Return the op fields as Python lists (one numpy->Python conversion per field)."""
    return [ops[name].tolist() for name in _OP_FIELDS]


def _results(codes: list[int], amounts: list[int], balances: list[int], jseqs: list[int]) -> np.ndarray:
    """Pack per-op result lists into a RESULT_DTYPE array."""
    results = np.zeros(len(codes), dtype=RESULT_DTYPE)
    results["code"] = codes
    results["amount_fen"] = amounts
    results["balance_fen"] = balances
    results["journal_seq"] = jseqs
    return results


def _decide_open(account_id: int, account_kind: int, limit_fen: int, existing: Account | None) -> tuple[int, Account | None]:
    """Decide an OPEN: return (code, the new account record or None on failure)."""
    if account_id == 0:
        return _INVALID_ACCOUNT_ID, None
    if account_kind not in _ACCOUNT_KINDS:
        return _INVALID_ACCOUNT_KIND, None
    if limit_fen < 0 or limit_fen > CAP_MAX_FEN or (account_kind != _CARD and limit_fen != 0):
        return _INVALID_AMOUNT, None
    if existing is not None:
        return _ACCOUNT_EXISTS, None
    cap_fen = (limit_fen or DEFAULT_CASH_CAP_FEN) if account_kind == _CARD else 0
    return _OK, (account_kind, cap_fen, 0)


def _decide_move(kind: int, amount_fen: int, debit: Account, credit: Account) -> int:
    """Decide a money movement between two existing accounts; return its result code.

    `debit` is the account money leaves, `credit` the one it enters. For TOPUP the
    debit is the counterparty (clearing) and the credit is `account_id` (the card).
    """
    debit_kind, _, debit_balance = debit
    credit_kind, credit_cap, credit_balance = credit
    if kind == _TOPUP:
        if credit_kind != _CARD:
            return _WRONG_ACCOUNT_KIND
        if debit_kind != _CLEARING:
            return _WRONG_COUNTERPARTY_KIND
    elif kind == _SPEND:
        if debit_kind != _CARD:
            return _WRONG_ACCOUNT_KIND
        if credit_kind == _CARD:
            return _WRONG_COUNTERPARTY_KIND
    if debit_kind != _CLEARING and debit_balance < amount_fen:
        return _INSUFFICIENT_FUNDS
    if credit_kind == _CARD and credit_balance + amount_fen > credit_cap:
        return _EXCEEDS_CAP
    if credit_balance + amount_fen > INT64_MAX or debit_balance - amount_fen < -INT64_MAX:
        return _OVERFLOW
    return _OK


def _precheck(kind: int, flags: int, account_id: int, counterparty_id: int, amount_fen: int) -> int:
    """Checks that need no stored state; return OK or the failure code."""
    if kind != _OPEN and kind not in _MOVES:
        return _INVALID_KIND
    if flags != 0:
        return _INVALID_FLAGS
    if kind == _OPEN:
        return _OK
    if amount_fen <= 0 or amount_fen > AMOUNT_MAX_FEN:
        return _INVALID_AMOUNT
    if account_id == 0 or counterparty_id == 0:
        return _INVALID_ACCOUNT_ID
    if account_id == counterparty_id:
        return _ACCOUNTS_MUST_BE_DIFFERENT
    return _OK


# ---------------------------------------------------------------------------
# SQLite
# ---------------------------------------------------------------------------

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id          INTEGER PRIMARY KEY,
    kind        INTEGER NOT NULL,
    cap_fen     INTEGER NOT NULL,
    balance_fen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS op_ids (
    source      INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    journal_seq INTEGER NOT NULL,
    PRIMARY KEY (source, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    seq               INTEGER PRIMARY KEY,
    source            INTEGER NOT NULL,
    op_seq            INTEGER NOT NULL,
    kind              INTEGER NOT NULL,
    account_id        INTEGER NOT NULL,
    counterparty_id   INTEGER NOT NULL,
    amount_fen        INTEGER NOT NULL,
    time_us           INTEGER NOT NULL,
    code              INTEGER NOT NULL,
    result_amount_fen INTEGER NOT NULL,
    balance_fen       INTEGER NOT NULL
);
"""

_SQL_CLAIM_ID = "INSERT OR IGNORE INTO op_ids (source, seq, journal_seq) VALUES (?, ?, ?)"
_SQL_GET_ACCOUNT = "SELECT kind, cap_fen, balance_fen FROM accounts WHERE id = ?"
_SQL_GET_BALANCE = "SELECT balance_fen FROM accounts WHERE id = ?"
_SQL_SET_BALANCE = "UPDATE accounts SET balance_fen = ? WHERE id = ?"
_SQL_INSERT_ACCOUNT = "INSERT INTO accounts (id, kind, cap_fen, balance_fen) VALUES (?, ?, ?, ?)"
_SQL_INSERT_JOURNAL = "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _s64(value: int) -> int:
    """Map a u64 to the signed int64 SQLite stores (ids above 2**63 wrap negative)."""
    return value - _U64_WRAP if value >= _I64_SIGN else value


class SqliteLedger:
    """Baseline ledger on stdlib sqlite3: WAL, synchronous=FULL, one transaction per batch.

    Per op: claim the id (INSERT OR IGNORE), SELECT each account, decide in Python,
    UPDATE each account changed. The batch's journal rows are inserted with one
    executemany before COMMIT (one row per op).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (creating if needed) the ledger stored in directory `path`."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        self._db_path = directory / "ledger.sqlite3"
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self._db_path, isolation_level=None  # we issue BEGIN / COMMIT ourselves
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SQLITE_SCHEMA)
        self._cur = self._conn.cursor()
        row = self._cur.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()
        self._next_journal_seq = int(row[0]) + 1

    def apply(self, ops: np.ndarray) -> np.ndarray:
        """Apply a batch of ops in one durable transaction; return one result per op."""
        _check_batch(ops)
        cur = self._live_cursor()
        n = len(ops)
        codes = [0] * n
        amounts = [0] * n
        balances = [0] * n
        jseqs = [0] * n
        journal_rows: list[tuple[int, ...]] = []
        jseq = self._next_journal_seq
        cur.execute("BEGIN IMMEDIATE")
        try:
            for i, (source, seq, kind, flags, aid, cid, amount, limit, akind, time_us) in enumerate(
                zip(*_columns(ops))
            ):
                a_key = _s64(aid)
                c_key = _s64(cid)
                cur.execute(_SQL_CLAIM_ID, (_s64(source), _s64(seq), jseq))
                if cur.rowcount == 0:
                    codes[i] = _EXISTS
                    row = cur.execute(_SQL_GET_BALANCE, (a_key,)).fetchone()
                    balances[i] = row[0] if row is not None else 0
                    continue

                moved = 0
                code = _precheck(kind, flags, aid, cid, amount)
                account = cur.execute(_SQL_GET_ACCOUNT, (a_key,)).fetchone()
                balance = account[2] if account is not None else 0
                if code == _OK and kind == _OPEN:
                    code, new_account = _decide_open(aid, akind, limit, account)
                    if new_account is not None:
                        cur.execute(_SQL_INSERT_ACCOUNT, (a_key, *new_account))
                elif code == _OK:
                    counterparty = cur.execute(_SQL_GET_ACCOUNT, (c_key,)).fetchone()
                    if account is None:
                        code = _ACCOUNT_NOT_FOUND
                    elif counterparty is None:
                        code = _COUNTERPARTY_NOT_FOUND
                    else:
                        # TOPUP credits account_id; SPEND and TRANSFER debit it.
                        sign = 1 if kind == _TOPUP else -1
                        if sign > 0:
                            code = _decide_move(kind, amount, counterparty, account)
                        else:
                            code = _decide_move(kind, amount, account, counterparty)
                        if code == _OK:
                            moved = amount
                            balance += sign * amount
                            cur.execute(_SQL_SET_BALANCE, (balance, a_key))
                            cur.execute(_SQL_SET_BALANCE, (counterparty[2] - sign * amount, c_key))

                codes[i] = code
                amounts[i] = moved
                balances[i] = balance
                jseqs[i] = jseq
                journal_rows.append(
                    (jseq, _s64(source), _s64(seq), kind, a_key, c_key, amount, time_us, code, moved, balance)
                )
                jseq += 1
            cur.executemany(_SQL_INSERT_JOURNAL, journal_rows)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self._next_journal_seq = jseq
        return _results(codes, amounts, balances, jseqs)

    def balance(self, account_id: int) -> int:
        """Return the balance (fen) of `account_id`; raise KeyError if it does not exist."""
        row = self._live_cursor().execute(_SQL_GET_BALANCE, (_s64(account_id),)).fetchone()
        if row is None:
            raise KeyError(f"balance: no account {account_id}")
        return int(row[0])

    def total_fen(self) -> int:
        """Return the sum of every account's balance (0 when double entry holds)."""
        row = self._live_cursor().execute("SELECT COALESCE(SUM(balance_fen), 0) FROM accounts").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database; further calls raise RuntimeError. Closing twice is a no-op."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SqliteLedger:
        """Return self; the ledger is closed when the `with` block ends."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the ledger."""
        self.close()

    def _live_cursor(self) -> sqlite3.Cursor:
        """Return the cursor, or raise RuntimeError if the ledger is closed."""
        if self._conn is None:
            raise RuntimeError("SqliteLedger is closed")
        return self._cur


# ---------------------------------------------------------------------------
# LMDB
# ---------------------------------------------------------------------------

#: 64 GiB of address space; the file is sparse, so this costs nothing on disk.
LMDB_MAP_SIZE_BYTES = 64 << 30

_KEY_U64 = struct.Struct(">Q")  # big-endian so keys sort numerically
_KEY_ID = struct.Struct(">QQ")  # (source, seq)
_ACCOUNT_REC = struct.Struct("<Hqq")  # kind, cap_fen, balance_fen
_JOURNAL_REC = struct.Struct("<QQHQQqqIqq")
# source, seq, kind, account_id, counterparty_id, amount_fen, time_us,
# code, result_amount_fen, balance_fen


class NaiveLmdbLedger:
    """Baseline ledger on py-lmdb: durable (sync=True) write transaction per batch.

    Per op: put the id with overwrite=False (a refused put means EXISTS), get and
    unpack each account record, decide in Python, pack and put each account changed,
    and append one journal record. Account records are struct-packed
    (kind u16, cap_fen i64, balance_fen i64) under big-endian u64 keys.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (creating if needed) the ledger stored in directory `path`."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        self._env: lmdb.Environment | None = lmdb.open(
            str(directory),
            map_size=LMDB_MAP_SIZE_BYTES,
            max_dbs=3,
            sync=True,
            metasync=True,
        )
        self._accounts = self._env.open_db(b"accounts")
        self._ids = self._env.open_db(b"ids")
        self._journal = self._env.open_db(b"journal")
        with self._env.begin() as txn:
            cursor = txn.cursor(db=self._journal)
            last = _KEY_U64.unpack(cursor.key())[0] if cursor.last() else 0
        self._next_journal_seq = last + 1

    def apply(self, ops: np.ndarray) -> np.ndarray:
        """Apply a batch of ops in one durable write transaction; return one result per op."""
        _check_batch(ops)
        env = self._live_env()
        accounts_db, ids_db, journal_db = self._accounts, self._ids, self._journal
        pack_key, pack_id, pack_jseq = _KEY_U64.pack, _KEY_ID.pack, _KEY_U64.pack
        pack_account, unpack_account = _ACCOUNT_REC.pack, _ACCOUNT_REC.unpack
        pack_journal = _JOURNAL_REC.pack
        n = len(ops)
        codes = [0] * n
        amounts = [0] * n
        balances = [0] * n
        jseqs = [0] * n
        jseq = self._next_journal_seq
        with env.begin(write=True) as txn:  # commits on clean exit, aborts on exception
            put, get = txn.put, txn.get
            for i, (source, seq, kind, flags, aid, cid, amount, limit, akind, time_us) in enumerate(
                zip(*_columns(ops))
            ):
                a_key = pack_key(aid)
                if not put(pack_id(source, seq), pack_jseq(jseq), db=ids_db, overwrite=False):
                    codes[i] = _EXISTS
                    raw = get(a_key, db=accounts_db)
                    balances[i] = unpack_account(raw)[2] if raw is not None else 0
                    continue

                moved = 0
                code = _precheck(kind, flags, aid, cid, amount)
                raw = get(a_key, db=accounts_db)
                account = unpack_account(raw) if raw is not None else None
                balance = account[2] if account is not None else 0
                if code == _OK and kind == _OPEN:
                    code, new_account = _decide_open(aid, akind, limit, account)
                    if new_account is not None:
                        put(a_key, pack_account(*new_account), db=accounts_db)
                elif code == _OK:
                    c_key = pack_key(cid)
                    raw = get(c_key, db=accounts_db)
                    counterparty = unpack_account(raw) if raw is not None else None
                    if account is None:
                        code = _ACCOUNT_NOT_FOUND
                    elif counterparty is None:
                        code = _COUNTERPARTY_NOT_FOUND
                    else:
                        # TOPUP credits account_id; SPEND and TRANSFER debit it.
                        sign = 1 if kind == _TOPUP else -1
                        if sign > 0:
                            code = _decide_move(kind, amount, counterparty, account)
                        else:
                            code = _decide_move(kind, amount, account, counterparty)
                        if code == _OK:
                            moved = amount
                            balance += sign * amount
                            put(a_key, pack_account(account[0], account[1], balance), db=accounts_db)
                            put(
                                c_key,
                                pack_account(counterparty[0], counterparty[1], counterparty[2] - sign * amount),
                                db=accounts_db,
                            )

                codes[i] = code
                amounts[i] = moved
                balances[i] = balance
                jseqs[i] = jseq
                record = pack_journal(source, seq, kind, aid, cid, amount, time_us, code, moved, balance)
                if not put(pack_jseq(jseq), record, db=journal_db, append=True):
                    raise RuntimeError(f"journal append refused at seq {jseq}: journal out of order")
                jseq += 1
        self._next_journal_seq = jseq
        return _results(codes, amounts, balances, jseqs)

    def balance(self, account_id: int) -> int:
        """Return the balance (fen) of `account_id`; raise KeyError if it does not exist."""
        with self._live_env().begin() as txn:
            raw = txn.get(_KEY_U64.pack(account_id), db=self._accounts)
        if raw is None:
            raise KeyError(f"balance: no account {account_id}")
        return int(_ACCOUNT_REC.unpack(raw)[2])

    def total_fen(self) -> int:
        """Return the sum of every account's balance (0 when double entry holds)."""
        total = 0
        with self._live_env().begin() as txn:
            for raw in txn.cursor(db=self._accounts).iternext(keys=False, values=True):
                total += _ACCOUNT_REC.unpack(raw)[2]
        return total

    def close(self) -> None:
        """Close the environment; further calls raise RuntimeError. Closing twice is a no-op."""
        if self._env is not None:
            self._env.close()
            self._env = None

    def __enter__(self) -> NaiveLmdbLedger:
        """Return self; the ledger is closed when the `with` block ends."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the ledger."""
        self.close()

    def _live_env(self) -> lmdb.Environment:
        """Return the environment, or raise RuntimeError if the ledger is closed."""
        if self._env is None:
            raise RuntimeError("NaiveLmdbLedger is closed")
        return self._env
