"""The pure-Python reference engine: the executable specification of the ledger.

It implements exactly the semantics of the Cython core (`cardledger._core.Engine`),
as plainly as possible, with dicts and small objects instead of C arrays. Tests drive
random op sequences through both and demand identical results, journals and state.

An engine owns the in-memory state (accounts, per-source idempotency state, pending
holds, decisions since the last checkpoint). It never touches storage: the `Ledger`
hands it batches and persists what it returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import codec, handlers, policies, purchases, taps
from .handlers import Account
from ...schema import (
    ACCOUNT_DTYPE,
    ALLOWED_FLAGS,
    DECISION_DTYPE,
    DEFAULT_CASH_CAP_FEN,
    JOURNAL_DTYPE,
    JOURNEY_LEGS_MAX,
    OP_DTYPE,
    OP_FIELDS_USED,
    OP_KINDS,
    PENDING_DTYPE,
    RESULT_DTYPE,
    REVERSE_REF_DTYPE,
    SETTLE_SOURCE,
    SOURCE_DTYPE,
    TAP_HORIZON_NONE,
    OpFlags,
    OpKind,
    Result,
    TapType,
)

OP_FIELDS = OP_DTYPE.names
ACCOUNT_FIELDS = ACCOUNT_DTYPE.names
JOURNAL_FIELDS = JOURNAL_DTYPE.names
_NOP = len(OP_FIELDS)
# A new record's discounts, result amount and balance, by position.
_DISCOUNTS_AT, _AMOUNT_AT, _BALANCE_AT = _NOP + 1, _NOP + 2, _NOP + 3
#: A failed record's words after its journal_seq, all zero (debit_id onwards).
_AFTER_JSEQ = len(JOURNAL_FIELDS) - (_NOP + 5)


# Kinds that carry no amount: their amount_fen must be 0 (INVALID_AMOUNT).
_NO_AMOUNT_KINDS = frozenset(k for k, used in OP_FIELDS_USED.items() if "amount_fen" not in used)


class Engine:
    """Reference implementation of the ledger state machine (see module docstring)."""

    implementation = "python"

    def __init__(self, default_cap_fen: int = DEFAULT_CASH_CAP_FEN) -> None:
        self.default_cap_fen = int(default_cap_fen)
        self._last_journal = np.zeros(0, dtype=JOURNAL_DTYPE)
        self.accounts: dict[int, Account] = {}  # insertion order = creation order
        self.sources: dict[int, list[int]] = {}  # source -> [last_seq, checkpoint_seq]
        self.pending: dict[tuple[int, int], list[int]] = {}  # id -> PENDING_DTYPE row
        self.recent: dict[tuple[int, int], int] = {}  # id -> index into self.tail
        self.tail: list[tuple] = []  # journal records decided since the last checkpoint
        self.journal_seq = 0
        self._undo: list[tuple] | None = None
        self._refs: np.ndarray | None = None
        self._bought: np.ndarray | None = None
        self.journeys: dict[int, taps.Journey] = {}  # card id -> fare state
        self.fares = taps.FareVersions([])
        self.tap_horizon_us = TAP_HORIZON_NONE  # later TAPs are refused (set_tap_horizon)
        self.settle_on = False  # a tap may settle an overdue entry first (taps.py rule 9)
        self.reverse_ref: dict | None = None  # REVERSE: the tap the ledger found (live)
        self.reverse_replay: tuple | None = None  # REVERSE: what its record says it did (replay)
        self.bought_ref: tuple | None = None  # REFUND: its purchase's record the ledger found (live)
        self.refund_replay: tuple | None = None  # REFUND: its own record, all it did (replay)
        self.offers = purchases.OfferState()  # offer versions, slot use, card counters, refunds
        self.policies = policies.Policies()  # the source policy sets (kept across load_checkpoint)

    # ------------------------------------------------------------------ source policies

    def set_policy_versions(self, versions: list) -> None:
        """Install the source policy sets (`policies.PolicyVersion`, oldest first): the
        one in force is the last installed at or before this engine's journal_seq, and a
        SET_POLICIES record switches to its own (docs/policies.md)."""
        self.policies.load(versions, self.journal_seq)

    def policy_in_force(self) -> int:
        """journal_seq of the SET_POLICIES record whose set is in force (0: none was
        ever installed, or the set in force lifts enforcement)."""
        cur = self.policies.current
        return 0 if cur is None else cur.journal_seq

    # ------------------------------------------------------------------ fares

    def set_tap_horizon(self, horizon_us: int) -> None:
        """Refuse, from the next `apply` on, every TAP whose time_us is later than
        horizon_us (TAP_TIME_IN_FUTURE); replays are not affected. Initially none is."""
        self.tap_horizon_us = int(horizon_us)

    def set_fare_versions(self, versions: list) -> None:
        """Install the fare-system versions (TapTables, oldest first) taps are rated by."""
        self.fares = taps.FareVersions(list(versions))

    def export_journeys(self) -> np.ndarray:
        """Every card's fare state (JOURNEY_DTYPE, by account id)."""
        return taps.export_journeys(self.journeys)

    def snapshot_journeys(self, buf: np.ndarray | None = None, clear_unused: bool = True) -> np.ndarray:
        """Every card's fare state for a checkpoint (the core's order may differ; `buf`
        is the core's reusable buffer and unused here; the rows are always cleared past
        their legs, whatever `clear_unused` asks)."""
        return self.export_journeys()

    def snapshot_begin(
        self, accounts_buf: np.ndarray | None = None, journeys_buf: np.ndarray | None = None,
        pending_buf: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A checkpoint's snapshot of the state as it is now: (accounts, pending,
        journeys). The core copies the accounts and journeys on write, beside later
        batches, until `snapshot_complete`; here they are copied now (the buffers are the
        core's and unused here)."""
        accounts, _, pending = self.export_checkpoint(sort=False)
        return accounts, pending, self.snapshot_journeys(clear_unused=False)

    def snapshot_complete(self) -> None:
        """Nothing to do: `snapshot_begin` copied everything."""

    def snapshot_pending(self) -> bool:
        """False: a snapshot here is complete when taken."""
        return False

    def clear_unused_legs(self, journeys: np.ndarray) -> None:
        """Zero, in place, the legs past each row's n_legs of JOURNEY_DTYPE rows."""
        stale = np.arange(JOURNEY_LEGS_MAX)[None, :] >= journeys["n_legs"][:, None]
        if stale.any():
            legs = journeys["legs"]  # a view: the assignment writes into `journeys`
            legs[stale] = np.zeros((), dtype=legs.dtype)

    def load_journeys(self, journeys: np.ndarray) -> None:
        """Replace every card's fare state (as `export_journeys` gives)."""
        self.journeys = taps.load_journeys(journeys)

    # ------------------------------------------------------------------ offers

    def set_offer_versions(self, versions: list) -> None:
        """Install the offer-catalog versions (OfferTables, oldest first) purchases are
        decided by."""
        purchases.set_versions(self, versions)

    def export_offer_state(self, sort: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The offer state: (slot use OFFER_BUDGET_DTYPE of the slots with any, card
        counters CARD_OFFER_DTYPE, refunded purchases REFUNDED_DTYPE), each sorted by its
        key (`sort` is for the core's sake)."""
        return purchases.export_state(self)

    def load_offer_state(self, budgets: np.ndarray, cards: np.ndarray, bought: np.ndarray) -> None:
        """Replace the offer state (arrays as `export_offer_state` gives)."""
        purchases.load_state(self, budgets, cards, bought)

    def reserve_card_offers(self, n: int) -> None:
        """Nothing to reserve: the reference keeps the cards' counters in a dict."""

    def quote_purchase(self, card_id: int, merchant_id: int, gross_fen: int, time_us: int) -> tuple[int, int, int, int]:
        """(net, discount, union share, offer slot or NO_OFFER) a PURCHASE would decide
        now; nothing changes."""
        return purchases.quote(self, int(card_id), int(merchant_id), int(gross_fen), int(time_us))

    # ------------------------------------------------------------------ state I/O

    def load_checkpoint(
        self, accounts: np.ndarray, sources: np.ndarray, pending: np.ndarray, journal_seq: int
    ) -> None:
        """Replace the whole state by a checkpoint (arrays as `export_checkpoint` gives)."""
        self.accounts = {}
        for row in accounts.tolist():
            a = Account(**dict(zip(ACCOUNT_FIELDS, row)))
            self.accounts[a.id] = a
        self.sources = {int(s): [int(l), int(c)] for s, l, c in sources.tolist()}
        self.pending = {(int(r[0]), int(r[1])): [int(x) for x in r] for r in pending.tolist()}
        self.recent = {}
        self.tail = []
        self.journal_seq = int(journal_seq)
        self.policies.choose(self.journal_seq)

    def export_checkpoint(
        self, accounts_out: np.ndarray | None = None, sort: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (accounts in creation order, sources by id, pending holds by id).

        `accounts_out` (a reusable buffer) and `sort` are for the core's sake: here the
        result is always sorted.
        """
        accounts = np.array([a.as_tuple() for a in self.accounts.values()], dtype=ACCOUNT_DTYPE)
        sources = np.array(
            [(s, v[0], v[1]) for s, v in sorted(self.sources.items())], dtype=SOURCE_DTYPE
        )
        pending = np.array(
            [tuple(self.pending[k]) for k in sorted(self.pending)], dtype=PENDING_DTYPE
        )
        return accounts, sources, pending

    def export_sources(self) -> np.ndarray:
        """The per-source idempotency state (SOURCE_DTYPE), in any order (by source id
        here; `store.ids.encode_ids_state` sorts what it stores)."""
        return np.array([(s, v[0], v[1]) for s, v in sorted(self.sources.items())], dtype=SOURCE_DTYPE)

    def take_decisions(self) -> tuple[np.ndarray, np.ndarray]:
        """Hand over the decisions made since the last call and forget them.

        Returns (decisions, late): `late[i]` is true where the seq was at or below its
        source's last_seq as of the previous call (an out-of-order id). Each source's
        checkpoint_seq becomes its current last_seq.
        """
        jseq_i = JOURNAL_FIELDS.index("journal_seq")
        decisions = np.array(
            sorted((r[0], r[1], r[jseq_i]) for r in self.tail), dtype=DECISION_DTYPE
        )
        late = np.array(
            [int(d["seq"]) <= self.sources[int(d["source"])][1] for d in decisions], dtype=bool
        )
        for v in self.sources.values():
            v[1] = v[0]
        self.recent = {}
        self.tail = []
        return decisions, late

    @property
    def recent_count(self) -> int:
        """Number of decisions held in memory since the last checkpoint."""
        return len(self.tail)

    # ------------------------------------------------------------------ queries

    def get_account(self, account_id: int) -> tuple | None:
        """The account's record as a tuple (ACCOUNT_DTYPE order), or None."""
        a = self.accounts.get(int(account_id))
        return None if a is None else a.as_tuple()

    def account_count(self) -> int:
        """Number of accounts ever opened (closed ones included)."""
        return len(self.accounts)

    # ------------------------------------------------------------------ batches

    def candidates(self, ops: np.ndarray) -> np.ndarray:
        """Mask of ops whose id may have been decided before the in-memory window.

        Those are the ops the storage layer must look up in its id index before
        `apply`: the source is known, the seq is not above its last decided seq, and
        the id is not among the decisions held in memory.
        """
        out = np.zeros(len(ops), dtype=bool)
        for i, (src, seq) in enumerate(zip(ops["source"].tolist(), ops["seq"].tolist())):
            s = self.sources.get(src)
            out[i] = s is not None and seq <= s[0] and (src, seq) not in self.recent
        return out

    def recent_decisions(self, ops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The decisions held in the window of these ops' ids: (records JOURNAL_DTYPE,
        found mask). Ids decided before the window are the store's to find."""
        records = np.zeros(len(ops), dtype=JOURNAL_DTYPE)
        found = np.zeros(len(ops), dtype=bool)
        for i, (src, seq) in enumerate(zip(ops["source"].tolist(), ops["seq"].tolist())):
            idx = self.recent.get((src, seq))
            if idx is not None:
                records[i] = self.tail[idx]
                found[i] = True
        return records, found

    def apply(
        self, ops: np.ndarray, prior: np.ndarray | None = None, has_prior: np.ndarray | None = None,
        refs: np.ndarray | None = None, bought: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Apply a batch; return (results RESULT_DTYPE, journal JOURNAL_DTYPE).

        `prior[i]` is the journal record of op i's id found in storage (valid where
        `has_prior[i]`). `refs[i]` (REVERSE_REF_DTYPE) is what the ledger found about
        the tap a REVERSE op i names (None: the batch has no REVERSE). `bought[i]`
        (JOURNAL_DTYPE) is the record of the purchase a REFUND op i names, decided
        before the batch (journal_seq 0: none found; None: the batch has no REFUND). The
        journal holds one record per newly decided op (two for a tap that settles an
        overdue entry).
        """
        self._refs = refs
        self._bought = bought
        n = len(ops)
        results = np.zeros(n, dtype=RESULT_DTYPE)
        res: list[list[int]] = [[0, 0, 0, 0, 0] for _ in range(n)]
        journal: list[tuple] = []
        rows = ops.tolist()
        i = 0
        while i < n:
            # A chain runs from i to the first op without LINKED (or the batch end).
            j = i
            while j < n - 1 and rows[j][OP_FIELDS.index("flags")] & OpFlags.LINKED:
                j += 1
            self._apply_chain(rows, i, j + 1, prior, has_prior, res, journal)
            i = j + 1
        for k, r in enumerate(res):
            results[k] = (r[0], r[4], r[1], r[2], r[3])
        self._last_journal = np.array(journal, dtype=JOURNAL_DTYPE)
        return results, self._last_journal

    def decided_records(self, sources: np.ndarray, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The journal records of the ids (sources[i], seqs[i]) decided in the in-memory
        window, and a mask of those found (the others were decided before it, if at all:
        the id index has them)."""
        out = np.zeros(len(sources), dtype=JOURNAL_DTYPE)
        found = np.zeros(len(sources), dtype=bool)
        for i, key in enumerate(zip(sources.tolist(), seqs.tolist())):
            idx = self.recent.get(key)
            if idx is not None:
                out[i] = self.tail[idx]
                found[i] = True
        return out, found

    def journey_capacity(self) -> int:
        """The core's journey store capacity; the reference keeps journeys in a dict: 0."""
        return 0

    def reserve_journeys(self, n: int) -> None:
        """Nothing to reserve: the reference keeps journeys in a dict."""

    def prefault_journeys(self) -> None:
        """Nothing to fault in: the reference keeps journeys in a dict."""

    def last_batch_packed(self) -> bytes:
        """The journal records of the batch `apply` just ran, packed as the journal
        stores them (the core keeps them packed already; here they are packed now)."""
        return codec.pack_journal(self._last_journal) if len(self._last_journal) else b""

    def last_batch_marks(self, stride: int) -> None:
        """None: the reference notes no record positions (a lookup walks the batch)."""
        return None

    def _apply_chain(self, rows, lo, hi, prior, has_prior, res, journal) -> None:
        flags_i = OP_FIELDS.index("flags")
        linked = hi - lo > 1 or (rows[lo][flags_i] & OpFlags.LINKED)
        open_chain = bool(rows[hi - 1][flags_i] & OpFlags.LINKED)  # last op still linked
        self._undo = [] if linked else None
        failed = False
        new_members: list[tuple[int, int]] = []  # (op index, journal index)
        for k in range(lo, hi):
            op = dict(zip(OP_FIELDS, rows[k]))
            src, seq = op["source"], op["seq"]
            if src == 0 or src == SETTLE_SOURCE:
                res[k] = [Result.INVALID_ID, 0, 0, 0, 0]
                failed = True
                continue
            original = self._find_decision(src, seq, prior, has_prior, k)
            if original is not None:
                res[k] = self._replay_result(rows[k], original)
                failed = True
                continue
            jseq = self.journal_seq + 1
            if failed:
                code = Result.LINKED_FAILED
                effect = None
            elif open_chain and k == hi - 1:
                code = Result.LINKED_CHAIN_OPEN
                effect = None
            else:
                self.settle_on = not linked
                if op["kind"] == OpKind.REVERSE and self._refs is not None:
                    self.reverse_ref = dict(zip(REVERSE_REF_DTYPE.names, self._refs[k].tolist()))
                if op["kind"] == OpKind.REFUND and self._bought is not None:
                    self.bought_ref = tuple(self._bought[k].tolist())
                code, effect = self._execute(op, jseq)
                self.settle_on = False
                self.reverse_ref = None
                self.bought_ref = None
                if code == taps.SETTLE_FIRST:
                    jseq = self._settle_first(op, journal)
                    code, effect = self._execute(op, jseq)
            rec = self._decide(op, rows[k], code, effect, jseq)
            journal.append(rec)
            new_members.append((k, len(journal) - 1))
            res[k] = (
                [code, rec[_AMOUNT_AT], rec[_BALANCE_AT], jseq, rec[_DISCOUNTS_AT]] if code == Result.OK
                else [code, 0, 0, jseq, 0]
            )
            if code != Result.OK:
                failed = True
        if linked and failed:
            self._rollback()
            for k, ji in new_members:
                if res[k][0] == Result.OK:
                    res[k][0] = Result.LINKED_FAILED
                    res[k][1] = 0
                    res[k][4] = 0  # a purchase's offer: no discounts on a failed op
                    journal[ji] = self._failed_record(journal[ji], Result.LINKED_FAILED)
        # Failed ops report the balance of their account after the chain is settled.
        for k, ji in new_members:
            if res[k][0] != Result.OK:
                bal = self._balance_or_zero(rows[k][OP_FIELDS.index("account_id")])
                res[k][2] = bal
                journal[ji] = self._with_balance(journal[ji], bal)
                self.tail[self.recent[(rows[k][0], rows[k][1])]] = journal[ji]
        self._undo = None

    # ------------------------------------------------------------------ decisions

    def _find_decision(self, src, seq, prior, has_prior, k):
        idx = self.recent.get((src, seq))
        if idx is not None:
            return self.tail[idx]
        if has_prior is not None and has_prior[k]:
            return tuple(prior[k].tolist())
        return None

    @staticmethod
    def _replay_result(row: tuple, original: tuple) -> list[int]:
        code_i = JOURNAL_FIELDS.index("code")
        jseq = original[JOURNAL_FIELDS.index("journal_seq")]
        if original[code_i] != Result.OK:
            return [Result.ID_ALREADY_FAILED, 0, 0, jseq, 0]
        if tuple(original[: len(OP_FIELDS)]) != tuple(row):
            return [Result.EXISTS_WITH_DIFFERENT_FIELDS, 0, 0, jseq, 0]
        return [
            Result.EXISTS,
            original[JOURNAL_FIELDS.index("result_amount_fen")],
            original[JOURNAL_FIELDS.index("balance_fen")],
            jseq,
            original[JOURNAL_FIELDS.index("discounts")],
        ]

    def _decide(self, op: dict, row: tuple, code: int, effect, jseq: int) -> tuple:
        """Record op's decision: a journal record, the recent map, the source state."""
        self.journal_seq = jseq
        src, seq = op["source"], op["seq"]
        s = self.sources.get(src)
        if s is None:
            self.sources[src] = [seq, 0]
        elif seq > s[0]:
            s[0] = seq
        if code == Result.OK:
            amount, balance, debit_id, credit_id, subsidy = effect[:5]
            discounts = effect[5] if len(effect) > 5 else 0
            # A PURCHASE's or REFUND's third leg: the union account and its fen, and
            # its offer words (offer_fen, offer_day, refundable_fen).
            union_id, union_fen = effect[6:8] if len(effect) > 7 else (0, 0)
            offer_words = tuple(effect[8:11]) if len(effect) > 10 else (0, 0, 0)
            dprev = cprev = 0
            if debit_id:
                a = self.accounts[debit_id]
                dprev = a.last_journal_seq
                a.last_journal_seq = jseq
            if credit_id:
                a = self.accounts[credit_id]
                cprev = a.last_journal_seq
                a.last_journal_seq = jseq
            rec = tuple(row) + (code, discounts, amount, balance, jseq, debit_id, credit_id, subsidy, dprev, cprev,
                                 union_id, union_fen) + offer_words
        else:
            rec = tuple(row) + (code, 0, 0, 0, jseq) + (0,) * _AFTER_JSEQ
        self.recent[(src, seq)] = len(self.tail)
        self.tail.append(rec)
        return rec

    def _settle_first(self, op: dict, journal: list[tuple]) -> int:
        """Settle the overdue entry of the card `op` taps (taps.py rule 9): a SWEEP of
        the card at the tap's time, with the id (SETTLE_SOURCE, next seq), decided and
        journaled before the tap. Returns the journal_seq the tap then takes. If the
        SWEEP cannot settle (the entry's operator is gone), nothing is written."""
        s = self.sources.get(SETTLE_SOURCE)
        sweep = dict.fromkeys(OP_FIELDS, 0)
        sweep.update(source=SETTLE_SOURCE, seq=(s[0] if s else 0) + 1, account_id=op["account_id"],
                     time_us=op["time_us"], kind=OpKind.TAP, tap=TapType.SWEEP)
        jseq = self.journal_seq + 1
        code, effect = self._execute(sweep, jseq)
        if code == Result.OK and effect[0]:
            journal.append(self._decide(sweep, tuple(sweep[f] for f in OP_FIELDS), code, effect, jseq))
        return self.journal_seq + 1

    @staticmethod
    def _failed_record(rec: tuple, code: int) -> tuple:
        return rec[: len(OP_FIELDS)] + (code, 0, 0, 0, rec[len(OP_FIELDS) + 4]) + (0,) * _AFTER_JSEQ

    @staticmethod
    def _with_balance(rec: tuple, balance: int) -> tuple:
        b = len(OP_FIELDS) + 3
        return rec[:b] + (balance,) + rec[b + 1 :]

    def _balance_or_zero(self, account_id: int) -> int:
        a = self.accounts.get(account_id)
        return 0 if a is None else a.available()

    # ------------------------------------------------------------------ replay

    def replay(self, journal: np.ndarray) -> None:
        """Re-apply journal records in order, as decided (used on open and by verify).

        Successful records are executed again and must reproduce their recorded
        figures; failed ones only re-register their decision. Raises ValueError if
        the journal does not replay to the same figures.
        """
        horizon, self.tap_horizon_us = self.tap_horizon_us, TAP_HORIZON_NONE  # decided before: replayed
        try:
            self._replay(journal)
        finally:
            self.tap_horizon_us = horizon

    def _replay(self, journal: np.ndarray) -> None:
        code_i = JOURNAL_FIELDS.index("code")
        nop = len(OP_FIELDS)
        for rec in journal.tolist():
            row = tuple(rec[:nop])
            op = dict(zip(OP_FIELDS, row))
            jseq = rec[nop + 4]
            if jseq != self.journal_seq + 1:
                raise ValueError(f"journal_seq {jseq} follows {self.journal_seq}")
            if rec[code_i] == Result.OK:
                self._undo = None
                if op["kind"] == OpKind.REVERSE:  # it says what it did: nothing else is read
                    self.reverse_replay = (rec[nop + 5], rec[nop + 2], rec[nop + 7], rec[nop + 1])
                elif op["kind"] == OpKind.REFUND:  # so does a REFUND's
                    self.refund_replay = tuple(rec)
                try:
                    # As decided then: a record older than the strict field checks may
                    # break them (a TOPUP at time_us 0), and it stays OK.
                    code, effect = self._execute(op, jseq, strict=False)
                finally:
                    self.reverse_replay = None
                    self.refund_replay = None
                if code != Result.OK:
                    raise ValueError(f"journal record {jseq} replays as {Result(code).name}")
                got = self._decide(op, row, code, effect, jseq)
            else:
                got = self._decide(op, row, rec[code_i], None, jseq)
                got = self._with_balance(got, rec[nop + 3])
                self.tail[-1] = got
            if tuple(got) != tuple(rec):
                raise ValueError(f"journal record {jseq} replays to different figures")

    # ------------------------------------------------------------------ execution

    def _execute(self, op: dict, jseq: int, strict: bool = True) -> tuple[int, Any]:
        """Decide one op: its shape (kind, flags, an amount where none is taken), then,
        when `strict` (a new op; not a replay), its time and unused fields
        (handlers.check_fields) and the source policy in force (policies.py), then its
        handler's checks and effect."""
        kind = op["kind"]
        if kind not in OP_KINDS:
            return Result.INVALID_KIND, None
        if op["flags"] & ~int(ALLOWED_FLAGS[OpKind(kind)]):
            return Result.INVALID_FLAGS, None
        if kind in _NO_AMOUNT_KINDS and op["amount_fen"] != 0:
            return Result.INVALID_AMOUNT, None
        if strict:
            code = handlers.check_fields(op)
            if code != Result.OK:
                return code, None
            if self.policies.current is not None and not self.policies.allows(op):
                return Result.SOURCE_NOT_ALLOWED, None
        handler = _HANDLERS[kind]
        return handler(self, op, jseq)

    # -- undo log: records account/pending state before a chain member changes it

    def _touch(self, a: Account) -> None:
        if self._undo is not None:
            self._undo.append(("acct", a, a.copy()))

    def _rollback(self) -> None:
        assert self._undo is not None
        for entry in reversed(self._undo):
            if entry[0] == "acct":
                target, saved = entry[1], entry[2]
                for n in ACCOUNT_FIELDS:
                    setattr(target, n, getattr(saved, n))
            elif entry[0] == "new_account":
                del self.accounts[entry[1]]
            elif entry[0] == "pending_add":
                del self.pending[entry[1]]
            elif entry[0] == "pending_del":
                self.pending[entry[1]] = entry[2]
            elif entry[0] == "offer":
                table, key, old = entry[1], entry[2], entry[3]
                if old is None:
                    del table[key]
                else:
                    table[key] = old
            elif entry[0] == "journey_move":
                del self.journeys[entry[2]]
                self.journeys[entry[1]] = entry[3]
        self._undo = []

    def _new_account(self, a: Account) -> None:
        self.accounts[a.id] = a
        if self._undo is not None:
            self._undo.append(("new_account", a.id))

    def _pending_add(self, key, rec) -> None:
        self.pending[key] = rec
        if self._undo is not None:
            self._undo.append(("pending_add", key))

    def _pending_del(self, key) -> None:
        rec = self.pending.pop(key)
        if self._undo is not None:
            self._undo.append(("pending_del", key, rec))

_HANDLERS = {
    OpKind.OPEN: handlers.op_open,
    OpKind.TOPUP: handlers.op_topup,
    OpKind.AID: handlers.op_aid,
    OpKind.SPEND: handlers.op_spend,
    OpKind.WITHDRAW: handlers.op_withdraw,
    OpKind.TRANSFER: handlers.op_transfer,
    OpKind.POST: handlers.op_post,
    OpKind.VOID: handlers.op_void,
    OpKind.FREEZE: handlers.op_freeze,
    OpKind.UNFREEZE: handlers.op_unfreeze,
    OpKind.REPLACE: handlers.op_replace,
    OpKind.CLOSE: handlers.op_close,
    OpKind.ACTIVATE: handlers.op_activate,
    OpKind.SET_CATEGORY: handlers.op_set_category,
    OpKind.CLOSE_DAY: handlers.op_close_day,
    OpKind.SET_POLICIES: policies.op_set_policies,
    OpKind.TAP: taps.op_tap,
    OpKind.REVERSE: taps.op_reverse,
    OpKind.PURCHASE: purchases.op_purchase,
    OpKind.REFUND: purchases.op_refund,
}
