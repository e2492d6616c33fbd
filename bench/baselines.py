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

Both are written the way a competent engineer would with plain Python and the stdlib
sqlite3 / py-lmdb: prepared statements reused, plain Python ints (numpy columns
converted once per batch), the journal written with one bulk call per batch. But each
op still reads its accounts from the database and checks them there or in Python (no
in-batch balance cache), claims its id in the database, and sees the effects of the
ops before it in the same batch.
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

#: Page cache per connection, in KiB (negative: KiB, as SQLite's PRAGMA cache_size takes
#: it). SQLite's default is 2 MiB, far smaller than the accounts and id tables; any
#: throughput-minded deployment raises it. It changes no durability: the WAL is still
#: fsynced at every COMMIT.
SQLITE_CACHE_KIB = 256 * 1024

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
_SQL_ADD_BALANCE = "UPDATE accounts SET balance_fen = balance_fen + ? WHERE id = ?"
_SQL_INSERT_ACCOUNT = "INSERT INTO accounts (id, kind, cap_fen, balance_fen) VALUES (?, ?, ?, ?)"
_SQL_INSERT_JOURNAL = "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _sql_debit(kind_check: str = "TRUE") -> str:
    """UPDATE taking ?1 fen from account ?2 iff every check of `_decide_move` on a debit holds.

    The checks: `kind_check`, then funds (only a CLEARING account may go negative),
    then no overflow below -INT64_MAX.
    """
    return (
        "UPDATE accounts SET balance_fen = balance_fen - ?1 WHERE id = ?2"
        f" AND {kind_check} AND (kind = {_CLEARING} OR balance_fen >= ?1)"
        f" AND balance_fen >= ?1 - {INT64_MAX}"
    )


def _sql_credit(kind_check: str = "TRUE") -> str:
    """UPDATE adding ?1 fen to account ?2 iff every check of `_decide_move` on a credit holds.

    The checks: `kind_check`, then a card's cap, then no overflow above INT64_MAX.
    """
    return (
        "UPDATE accounts SET balance_fen = balance_fen + ?1 WHERE id = ?2"
        f" AND {kind_check} AND (kind <> {_CARD} OR balance_fen + ?1 <= cap_fen)"
        f" AND balance_fen <= {INT64_MAX} - ?1"
    )


#: Per move kind: (UPDATE of account_id, UPDATE of counterparty_id, sign of the change to
#: account_id). Both UPDATEs take (amount, id). Both changing a row <=> `_decide_move`
#: says OK, so an op that succeeds needs no SELECT to decide, only one to read
#: account_id's new balance.
_SQL_MOVES = {
    _TOPUP: (_sql_credit(f"kind = {_CARD}"), _sql_debit(f"kind = {_CLEARING}"), 1),
    _SPEND: (_sql_debit(f"kind = {_CARD}"), _sql_credit(f"kind <> {_CARD}"), -1),
    _TRANSFER: (_sql_debit(), _sql_credit(), -1),
}


def _s64(value: int) -> int:
    """Map a u64 to the signed int64 SQLite stores (ids above 2**63 wrap negative)."""
    return value - _U64_WRAP if value >= _I64_SIGN else value


def _signed_ids(column: np.ndarray) -> list[int]:
    """Return a u64 column as the signed int64 values SQLite stores (ids >= 2**63 wrap negative)."""
    return column.astype(np.int64).tolist()


class SqliteLedger:
    """Baseline ledger on stdlib sqlite3: WAL, synchronous=FULL, one transaction per batch.

    Per op: claim the id (INSERT OR IGNORE; rowcount 0 means EXISTS), then for a money
    movement two conditional UPDATEs that carry the balance / cap / kind checks in their
    WHERE clauses, and a SELECT of the new balance. When an UPDATE changes no row, the
    other side is undone and one SELECT of each account decides which code applies (in
    `_decide_move`). OPEN and refused ops SELECT the account. The batch's journal rows
    are inserted with one executemany before COMMIT (one row per decided op).
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
        self._conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        self._conn.executescript(_SQLITE_SCHEMA)
        self._cur = self._conn.cursor()
        row = self._cur.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()
        self._next_journal_seq = int(row[0]) + 1

    def apply(self, ops: np.ndarray) -> np.ndarray:
        """Apply a batch of ops in one durable transaction; return one result per op."""
        _check_batch(ops)
        cur = self._live_cursor()
        execute = cur.execute
        n = len(ops)
        codes = [0] * n
        amounts = [0] * n
        balances = [0] * n
        jseqs = [0] * n
        journal_rows: list[tuple[int, ...]] = []
        jseq = self._next_journal_seq
        columns = (
            _signed_ids(ops["source"]),
            _signed_ids(ops["seq"]),
            *(ops[name].tolist() for name in ("kind", "flags")),
            _signed_ids(ops["account_id"]),
            _signed_ids(ops["counterparty_id"]),
            *(ops[name].tolist() for name in ("amount_fen", "limit_fen", "account_kind", "time_us")),
        )
        execute("BEGIN IMMEDIATE")
        try:
            for i, (source, seq, kind, flags, aid, cid, amount, limit, akind, time_us) in enumerate(
                zip(*columns)
            ):
                if execute(_SQL_CLAIM_ID, (source, seq, jseq)).rowcount == 0:
                    codes[i] = _EXISTS
                    balances[i] = self._balance_or_zero(aid)
                    continue

                moved = 0
                code = _precheck(kind, flags, aid, cid, amount)
                if code == _OK and kind != _OPEN:
                    sql_account, sql_counterparty, sign = _SQL_MOVES[kind]
                    account_changed = execute(sql_account, (amount, aid)).rowcount == 1
                    if account_changed and execute(sql_counterparty, (amount, cid)).rowcount == 1:
                        moved = amount
                        balance = execute(_SQL_GET_BALANCE, (aid,)).fetchone()[0]
                    else:
                        if account_changed:  # the counterparty refused: undo account_id's side
                            execute(_SQL_ADD_BALANCE, (-sign * amount, aid))
                        code, balance = self._refused_move(kind, amount, aid, cid)
                else:
                    account = execute(_SQL_GET_ACCOUNT, (aid,)).fetchone()
                    balance = account[2] if account is not None else 0
                    if code == _OK:  # an OPEN
                        code, new_account = _decide_open(aid, akind, limit, account)
                        if new_account is not None:
                            execute(_SQL_INSERT_ACCOUNT, (aid, *new_account))

                codes[i] = code
                amounts[i] = moved
                balances[i] = balance
                jseqs[i] = jseq
                journal_rows.append(
                    (jseq, source, seq, kind, aid, cid, amount, time_us, code, moved, balance)
                )
                jseq += 1
            cur.executemany(_SQL_INSERT_JOURNAL, journal_rows)
            execute("COMMIT")
        except BaseException:
            execute("ROLLBACK")
            raise
        self._next_journal_seq = jseq
        return _results(codes, amounts, balances, jseqs)

    def _refused_move(self, kind: int, amount: int, aid: int, cid: int) -> tuple[int, int]:
        """Return (code, account_id's balance) for a move whose conditional UPDATEs refused it.

        Reads both accounts and decides in `_decide_move`, which gives the code of the
        first check that fails, in the reference engine's order.
        """
        account = self._cur.execute(_SQL_GET_ACCOUNT, (aid,)).fetchone()
        counterparty = self._cur.execute(_SQL_GET_ACCOUNT, (cid,)).fetchone()
        if account is None:
            return _ACCOUNT_NOT_FOUND, 0
        if counterparty is None:
            code = _COUNTERPARTY_NOT_FOUND
        elif kind == _TOPUP:  # TOPUP credits account_id; SPEND and TRANSFER debit it
            code = _decide_move(kind, amount, counterparty, account)
        else:
            code = _decide_move(kind, amount, account, counterparty)
        if code == _OK:
            raise RuntimeError(
                f"SqliteLedger: the conditional UPDATEs refused a move that _decide_move allows: "
                f"{kind=} {amount=} {account=} {counterparty=}"
            )
        return code, account[2]

    def _balance_or_zero(self, account_key: int) -> int:
        """Return the stored balance of `account_key` (signed id), or 0 if it does not exist."""
        row = self._cur.execute(_SQL_GET_BALANCE, (account_key,)).fetchone()
        return row[0] if row is not None else 0

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


def _u64_keys(column: np.ndarray) -> list[bytes]:
    """Return a u64 column as 8-byte big-endian keys (what `_KEY_U64.pack` gives), in one go."""
    return column.astype(">u8").view("V8").tolist()


def _id_keys(ops: np.ndarray) -> list[bytes]:
    """Return the ops' (source, seq) ids as 16-byte keys (what `_KEY_ID.pack` gives), in one go."""
    keys = np.empty(len(ops), dtype=[("source", ">u8"), ("seq", ">u8")])
    keys["source"] = ops["source"]
    keys["seq"] = ops["seq"]
    return keys.view("V16").tolist()


class NaiveLmdbLedger:
    """Baseline ledger on py-lmdb: durable (sync=True) write transaction per batch.

    Per op: put the id with overwrite=False (a refused put means EXISTS), get and
    unpack each account record, decide in Python, pack and put each account changed.
    The batch's journal records (one per decided op) are appended with one putmulti
    before the commit. Account records are struct-packed (kind u16, cap_fen i64,
    balance_fen i64) under big-endian u64 keys; the batch's keys are packed with numpy
    up front.
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
        pack_jseq = _KEY_U64.pack
        pack_account, unpack_account = _ACCOUNT_REC.pack, _ACCOUNT_REC.unpack
        pack_journal = _JOURNAL_REC.pack
        n = len(ops)
        codes = [0] * n
        amounts = [0] * n
        balances = [0] * n
        jseqs = [0] * n
        journal_items: list[tuple[bytes, bytes]] = []
        jseq = self._next_journal_seq
        keys = (_id_keys(ops), _u64_keys(ops["account_id"]), _u64_keys(ops["counterparty_id"]))
        # The transaction's default table is `accounts`: get / put below read and write it.
        # It commits on a clean exit from the block and aborts on an exception.
        with env.begin(write=True, db=self._accounts) as txn:
            get, put = txn.get, txn.put
            claim_id = txn.cursor(db=self._ids).put
            for i, (
                source, seq, kind, flags, aid, cid, amount, limit, akind, time_us, id_key, a_key, c_key
            ) in enumerate(zip(*_columns(ops), *keys)):
                jseq_key = pack_jseq(jseq)
                if not claim_id(id_key, jseq_key, overwrite=False):
                    codes[i] = _EXISTS
                    raw = get(a_key)
                    balances[i] = unpack_account(raw)[2] if raw is not None else 0
                    continue

                moved = 0
                code = _precheck(kind, flags, aid, cid, amount)
                raw = get(a_key)
                account = unpack_account(raw) if raw is not None else None
                balance = account[2] if account is not None else 0
                if code == _OK and kind == _OPEN:
                    code, new_account = _decide_open(aid, akind, limit, account)
                    if new_account is not None:
                        put(a_key, pack_account(*new_account))
                elif code == _OK:
                    raw = get(c_key)
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
                            put(a_key, pack_account(account[0], account[1], balance))
                            counterparty_balance = counterparty[2] - sign * amount
                            put(c_key, pack_account(counterparty[0], counterparty[1], counterparty_balance))

                codes[i] = code
                amounts[i] = moved
                balances[i] = balance
                jseqs[i] = jseq
                record = pack_journal(source, seq, kind, aid, cid, amount, time_us, code, moved, balance)
                journal_items.append((jseq_key, record))
                jseq += 1
            if journal_items:
                _, added = txn.cursor(db=self._journal).putmulti(journal_items, append=True)
                if added != len(journal_items):
                    raise RuntimeError(
                        f"journal append refused {len(journal_items) - added} of {len(journal_items)} "
                        f"records from seq {self._next_journal_seq}: journal out of order"
                    )
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
