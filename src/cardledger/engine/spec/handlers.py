"""The op handlers of the reference engine, one per op kind (twin of `cext/handlers.pxi`).

Each `op_<kind>(eng, op, jseq)` checks one op against the engine's state and, if it
may proceed, changes that state; it returns (Result code, effect) where the effect is
(amount moved, balance after, debit account id, credit account id, subsidy part) or
None. A handler that fails changes nothing. Changes go through the engine's undo log
(`eng._touch`, `eng._new_account`, `eng._pending_add/_pending_del`), so a failed chain
member rolls its chain back. The helpers carry the core's names (`check_pair`,
`check_move`, `draw_purses`, `move`, `release`, ...) so the two read side by side.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from ...schema import (
    ACCOUNT_DTYPE,
    ACCOUNT_KINDS,
    AMOUNT_MAX_FEN,
    CAP_MAX_FEN,
    CLOSE_DAY_SOURCE,
    NONE,
    INT64_MAX,
    OP_FIELDS_USED,
    UNUSED_FIELD_RESULTS,
    AccountFlags,
    AccountKind,
    OpFlags,
    OpKind,
    Result,
)

if TYPE_CHECKING:  # (the engine calls these handlers: it is their caller, not their import)
    from .batch import Engine

INT64_MIN = -INT64_MAX - 1
ACCOUNT_FIELDS = ACCOUNT_DTYPE.names

# How a debit draws a card's purses.
DRAW_ORDER = 0  # the card's configured order (subsidy first unless CASH_FIRST)
DRAW_CASH = 1  # the cash purse only
DRAW_SUBSIDY = 2  # the subsidy purse only


class Account:
    """One account's state; field names as in ACCOUNT_DTYPE."""

    __slots__ = ACCOUNT_FIELDS

    def __init__(self, **fields: int) -> None:
        for name in ACCOUNT_FIELDS:
            setattr(self, name, int(fields.get(name, 0)))

    def copy(self) -> "Account":
        """Return an independent copy (used by the chain undo log)."""
        return Account(**{n: getattr(self, n) for n in ACCOUNT_FIELDS})

    def available(self) -> int:
        """Available balance: both purses of a card; the balance of other kinds."""
        return self.cash_fen + self.subsidy_fen

    def as_tuple(self) -> tuple:
        """The record as a tuple in ACCOUNT_DTYPE field order."""
        return tuple(getattr(self, n) for n in ACCOUNT_FIELDS)



def check_fields(op: dict) -> int:
    """A new op's record is strict: time_us > 0 and every field its kind does not use
    (schema.OP_FIELDS_USED) zero. Returns the first refusal, in the order of
    schema.UNUSED_FIELD_RESULTS, or OK. The kind is known to be valid.

    Only new ops are checked: a journal written before these rules may hold records
    decided OK that break them, and replay must still reproduce those."""
    if op["time_us"] <= 0:
        return Result.TIME_MUST_BE_POSITIVE
    used = OP_FIELDS_USED[OpKind(op["kind"])]
    # Only a card has a rider category. An unknown account_kind is left to the OPEN
    # handler's INVALID_ACCOUNT_KIND, which says more.
    opens_other_than_card = (op["kind"] == OpKind.OPEN and op["account_kind"] in ACCOUNT_KINDS
                             and op["account_kind"] != AccountKind.CARD)
    for field, code in UNUSED_FIELD_RESULTS:
        if op[field] != 0 and (field not in used or (field == "category" and opens_other_than_card)):
            return code
    return Result.OK


def amount_ok(amount: int) -> bool:
    return 0 < amount <= AMOUNT_MAX_FEN

def check_pair(eng: Engine, op: dict, want_account, want_counterparty):
    """Common checks of a two-account op. Returns (code, account, counterparty)."""
    aid, cid = op["account_id"], op["counterparty_id"]
    if aid == 0 or cid == 0:
        return Result.INVALID_ACCOUNT_ID, None, None
    if aid == cid:
        return Result.ACCOUNTS_MUST_BE_DIFFERENT, None, None
    a = eng.accounts.get(aid)
    if a is None:
        return Result.ACCOUNT_NOT_FOUND, None, None
    c = eng.accounts.get(cid)
    if c is None:
        return Result.COUNTERPARTY_NOT_FOUND, None, None
    if not want_account(a.kind):
        return Result.WRONG_ACCOUNT_KIND, None, None
    if not want_counterparty(c.kind):
        return Result.WRONG_COUNTERPARTY_KIND, None, None
    if (a.flags | c.flags) & AccountFlags.CLOSED:
        return Result.ACCOUNT_CLOSED, None, None
    return Result.OK, a, c

def purse_available(a: Account, draw: int) -> int:
    if a.kind != AccountKind.CARD:
        return a.cash_fen
    if draw == DRAW_CASH:
        return a.cash_fen
    if draw == DRAW_SUBSIDY:
        return a.subsidy_fen
    return a.cash_fen + a.subsidy_fen

def check_move(eng: Engine, d: Account, c: Account, amount: int, draw: int, to_subsidy: bool, pending: bool) -> int:
    """Checks for moving `amount` from d to c, in the documented order."""
    if d.flags & AccountFlags.FROZEN:
        return Result.ACCOUNT_FROZEN
    if d.flags & AccountFlags.INACTIVE:
        return Result.ACCOUNT_INACTIVE
    if d.kind != AccountKind.CLEARING and purse_available(d, draw) < amount:
        return Result.INSUFFICIENT_FUNDS
    if c.kind == AccountKind.CARD and not to_subsidy:
        # Holds the card placed come back to its purses if released (a metro exit
        # releases most of its entry hold): they count against the cap too.
        if c.cash_fen + c.debits_pending + c.credits_pending + amount > c.cap_fen:
            return Result.EXCEEDS_CAP
    d_total = d.debits_pending if pending else d.debits_posted
    c_total = c.credits_pending if pending else c.credits_posted
    if d_total > INT64_MAX - amount or c_total > INT64_MAX - amount:
        return Result.OVERFLOW
    if d.kind == AccountKind.CLEARING and d.cash_fen < INT64_MIN + amount:
        return Result.OVERFLOW
    if c.cash_fen + c.subsidy_fen > INT64_MAX - amount:
        return Result.OVERFLOW
    return Result.OK

def draw_purses(eng: Engine, d: Account, amount: int, draw: int) -> int:
    """Take `amount` out of d's purses; return the part taken from the subsidy purse."""
    if d.kind != AccountKind.CARD or draw == DRAW_CASH:
        d.cash_fen -= amount
        return 0
    if draw == DRAW_SUBSIDY:
        d.subsidy_fen -= amount
        return amount
    # A tap may take a card's cash purse below zero (its allowance, or an exit
    # charge above the hold); the subsidy purse never goes below zero.
    if d.flags & AccountFlags.CASH_FIRST:
        from_cash = min(max(d.cash_fen, 0), amount)
        from_subsidy = min(max(d.subsidy_fen, 0), amount - from_cash)
        from_cash = amount - from_subsidy
    else:
        from_subsidy = min(max(d.subsidy_fen, 0), amount)
        from_cash = amount - from_subsidy
    d.subsidy_fen -= from_subsidy
    d.cash_fen -= from_cash
    return from_subsidy

def move(eng: Engine, d: Account, c: Account, amount: int, draw: int, to_subsidy: bool) -> int:
    eng._touch(d)
    eng._touch(c)
    sub = draw_purses(eng, d, amount, draw)
    d.debits_posted += amount
    c.credits_posted += amount
    if to_subsidy:
        c.subsidy_fen += amount
    else:
        c.cash_fen += amount
    if d.kind == AccountKind.CARD:
        return sub
    return amount if to_subsidy else 0

def void_holds_of(eng: Engine, a: Account) -> None:
    """Release every hold that involves account `a` (before CLOSE / REPLACE)."""
    if a.debits_pending == 0 and a.credits_pending == 0:
        return
    for key in sorted(eng.pending):
        p = eng.pending[key]
        if p[2] == a.id or p[3] == a.id:
            release(eng, p, 0)
            eng._pending_del(key)

def release(eng: Engine, p: list[int], posted: int) -> int:
    """Resolve hold `p`, posting `posted` fen of it and returning the rest.

    Returns the part of the posted amount drawn from the debit card's subsidy purse.
    """
    d, c = eng.accounts[p[2]], eng.accounts[p[3]]
    amount, held_sub = p[4], p[5]
    held_cash = amount - held_sub
    eng._touch(d)
    eng._touch(c)
    if d.kind == AccountKind.CARD and d.flags & AccountFlags.CASH_FIRST:
        post_cash = min(held_cash, posted)
        post_sub = posted - post_cash
    else:
        post_sub = min(held_sub, posted)
        post_cash = posted - post_sub
    d.subsidy_fen += held_sub - post_sub
    d.cash_fen += held_cash - post_cash
    d.debits_pending -= amount
    d.debits_posted += posted
    c.credits_pending -= amount
    c.credits_posted += posted
    if p[6]:
        c.subsidy_fen += posted
    else:
        c.cash_fen += posted
    return post_sub

# -- handlers: each returns (code, (amount, balance, debit_id, credit_id, subsidy))

def op_open(eng: Engine, op: dict, jseq: int):
    aid = op["account_id"]
    if aid == 0:
        return Result.INVALID_ACCOUNT_ID, None
    kind = op["account_kind"]
    if kind not in ACCOUNT_KINDS:
        return Result.INVALID_ACCOUNT_KIND, None
    limit = op["limit_fen"]
    if limit < 0 or limit > CAP_MAX_FEN or (kind != AccountKind.CARD and limit != 0):
        return Result.INVALID_AMOUNT, None
    if kind != AccountKind.CARD and op["flags"] & (OpFlags.CASH_FIRST | OpFlags.INACTIVE):
        return Result.INVALID_FLAGS, None
    if aid in eng.accounts:
        return Result.ACCOUNT_EXISTS, None
    flags = AccountFlags.CASH_FIRST if op["flags"] & OpFlags.CASH_FIRST else 0
    if op["flags"] & OpFlags.INACTIVE:
        flags |= AccountFlags.INACTIVE
    a = Account(
        id=aid,
        kind=kind,
        flags=int(flags),
        category=op["category"] if kind == AccountKind.CARD else 0,
        cap_fen=(limit or eng.default_cap_fen) if kind == AccountKind.CARD else 0,
        member_ref=op["user_data"] if kind == AccountKind.CARD else 0,
    )
    eng._new_account(a)
    return Result.OK, (0, 0, aid, 0, 0)

def simple_move(eng: Engine, op, want_a, want_c, debit_is_account, draw, to_subsidy):
    amount = op["amount_fen"]
    if not amount_ok(amount):
        return Result.INVALID_AMOUNT, None
    code, a, c = check_pair(eng, op, want_a, want_c)
    if code:
        return code, None
    d, cr = (a, c) if debit_is_account else (c, a)
    code = check_move(eng, d, cr, amount, draw, to_subsidy, False)
    if code:
        return code, None
    sub = move(eng, d, cr, amount, draw, to_subsidy)
    return Result.OK, (amount, a.available(), d.id, cr.id, sub)

def op_topup(eng: Engine, op, jseq):
    return simple_move(
        eng,
        op, _is(AccountKind.CARD), _is(AccountKind.CLEARING), False, DRAW_ORDER, False
    )

def op_aid(eng: Engine, op, jseq):
    return simple_move(
        eng,
        op, _is(AccountKind.CARD), _is(AccountKind.PROGRAM), False, DRAW_ORDER, True
    )

def op_spend(eng: Engine, op, jseq):
    return simple_move(
        eng,
        op, _is(AccountKind.CARD), _is_not(AccountKind.CARD), True, DRAW_ORDER, False
    )

def op_withdraw(eng: Engine, op, jseq):
    sub_purse = bool(op["flags"] & OpFlags.SUBSIDY_PURSE)
    if sub_purse:
        a = eng.accounts.get(op["account_id"])
        if a is not None and a.kind != AccountKind.CARD:
            return Result.INVALID_FLAGS, None
    return simple_move(
        eng,
        op,
        _is_not(AccountKind.CLEARING),
        _is(AccountKind.CLEARING),
        True,
        DRAW_SUBSIDY if sub_purse else DRAW_CASH,
        False,
    )

def op_transfer(eng: Engine, op, jseq):
    to_subsidy = bool(op["flags"] & OpFlags.SUBSIDY_PURSE)
    if not op["flags"] & OpFlags.PENDING:
        amount = op["amount_fen"]
        if not amount_ok(amount):
            return Result.INVALID_AMOUNT, None
        code, a, c = check_pair(eng, op, _any, _any)
        if code:
            return code, None
        ts = to_subsidy and c.kind == AccountKind.CARD
        code = check_move(eng, a, c, amount, DRAW_ORDER, ts, False)
        if code:
            return code, None
        sub = move(eng, a, c, amount, DRAW_ORDER, ts)
        return Result.OK, (amount, a.available(), a.id, c.id, sub)
    if to_subsidy:
        # A hold credits a cash purse only, so a card's incoming holds (its
        # credits_pending) all count against its cash cap.
        return Result.INVALID_FLAGS, None
    amount = op["amount_fen"]
    if not amount_ok(amount):
        return Result.INVALID_AMOUNT, None
    code, a, c = check_pair(eng, op, _any, _any)
    if code:
        return code, None
    ts = False
    code = check_move(eng, a, c, amount, DRAW_ORDER, ts, True)
    if code:
        return code, None
    eng._touch(a)
    eng._touch(c)
    sub = draw_purses(eng, a, amount, DRAW_ORDER)
    a.debits_pending += amount
    c.credits_pending += amount
    key = (op["source"], op["seq"])
    eng._pending_add(key, [key[0], key[1], a.id, c.id, amount, sub, int(ts), jseq])
    return Result.OK, (amount, a.available(), a.id, c.id, sub)

def find_pending(eng: Engine, op):
    """The hold POST/VOID names; None if none (a reversed tap's mark is no hold)."""
    p = eng.pending.get((op["ref_source"], op["ref_seq"]))
    return None if p is None or p[2] == 0 else p

def op_post(eng: Engine, op, jseq):
    amount = op["amount_fen"]
    if amount < 0 or amount > AMOUNT_MAX_FEN:
        return Result.INVALID_AMOUNT, None
    p = find_pending(eng, op)
    if p is None:
        return Result.PENDING_NOT_FOUND, None
    posted = amount or p[4]
    if posted > p[4]:
        return Result.EXCEEDS_PENDING, None
    d, c = eng.accounts[p[2]], eng.accounts[p[3]]
    if d.debits_posted > INT64_MAX - posted or c.credits_posted > INT64_MAX - posted:
        return Result.OVERFLOW, None
    sub = release(eng, p, posted)
    eng._pending_del((p[0], p[1]))
    return Result.OK, (posted, d.available(), d.id, c.id, sub)

def op_void(eng: Engine, op, jseq):
    p = find_pending(eng, op)
    if p is None:
        return Result.PENDING_NOT_FOUND, None
    d, c = eng.accounts[p[2]], eng.accounts[p[3]]
    release(eng, p, 0)
    eng._pending_del((p[0], p[1]))
    return Result.OK, (p[4], d.available(), d.id, c.id, p[5])

def lifecycle_target(eng: Engine, op):
    aid = op["account_id"]
    if aid == 0:
        return Result.INVALID_ACCOUNT_ID, None
    a = eng.accounts.get(aid)
    if a is None:
        return Result.ACCOUNT_NOT_FOUND, None
    if a.flags & AccountFlags.CLOSED:
        return Result.ACCOUNT_CLOSED, None
    return Result.OK, a

def op_freeze(eng: Engine, op, jseq):
    code, a = lifecycle_target(eng, op)
    if code:
        return code, None
    eng._touch(a)
    a.flags |= AccountFlags.FROZEN
    return Result.OK, (0, a.available(), a.id, 0, 0)

def op_activate(eng: Engine, op, jseq):
    """A card issued inactive is handed over: debits and taps are allowed from now on.
    Activating an active card changes nothing and succeeds."""
    code, a = lifecycle_target(eng, op)
    if code:
        return code, None
    if a.kind != AccountKind.CARD:
        return Result.WRONG_ACCOUNT_KIND, None
    eng._touch(a)
    a.flags &= ~AccountFlags.INACTIVE
    return Result.OK, (0, a.available(), a.id, 0, 0)

def op_set_category(eng: Engine, op, jseq):
    """A card's rider category changes from the op's event time on; taps before it
    (a late upload) keep the category it had then. One change is remembered: a tap
    older than the change before the last is rated with the category before the last."""
    code, a = lifecycle_target(eng, op)
    if code:
        return code, None
    if a.kind != AccountKind.CARD:
        return Result.WRONG_ACCOUNT_KIND, None
    if op["time_us"] <= a.category_since_us:
        return Result.CATEGORY_CHANGED_LATER, None
    eng._touch(a)
    a.category_before = a.category
    a.category = op["category"]
    a.category_since_us = op["time_us"]
    return Result.OK, (0, a.available(), a.id, 0, 0)


def op_close_day(eng: Engine, op, jseq):
    """A service day closed: a record in the journal, no money moved. Its day is
    [time_us, limit_fen), it covers the journal through ref_seq, and amount_fen is what
    the day posted (see `Ledger.close_day`)."""
    if (op["source"] != CLOSE_DAY_SOURCE or op["limit_fen"] <= op["time_us"] or op["ref_seq"] >= jseq
            or op["amount_fen"] < 0):
        return Result.INVALID_DAY_CLOSE, None
    return Result.OK, (op["amount_fen"], 0, 0, 0, 0)


def category_at(a: Account, time_us: int) -> int:
    """The card's rider category at `time_us` (SET_CATEGORY keeps the one before)."""
    return a.category if time_us >= a.category_since_us else a.category_before


def op_unfreeze(eng: Engine, op, jseq):
    code, a = lifecycle_target(eng, op)
    if code:
        return code, None
    eng._touch(a)
    a.flags &= ~AccountFlags.FROZEN
    return Result.OK, (0, a.available(), a.id, 0, 0)

def op_replace(eng: Engine, op, jseq):
    aid, nid = op["account_id"], op["counterparty_id"]
    if aid == 0 or nid == 0:
        return Result.INVALID_ACCOUNT_ID, None
    if aid == nid:
        return Result.ACCOUNTS_MUST_BE_DIFFERENT, None
    old = eng.accounts.get(aid)
    if old is None:
        return Result.ACCOUNT_NOT_FOUND, None
    if nid in eng.accounts:
        return Result.ACCOUNT_EXISTS, None
    if old.kind != AccountKind.CARD:
        return Result.WRONG_ACCOUNT_KIND, None
    if old.flags & AccountFlags.CLOSED:
        return Result.ACCOUNT_CLOSED, None
    void_holds_of(eng, old)
    eng._touch(old)
    cash, sub = old.cash_fen, old.subsidy_fen
    new = Account(
        id=nid,
        kind=AccountKind.CARD,
        flags=old.flags & AccountFlags.CASH_FIRST,
        category=old.category,
        category_before=old.category_before,
        category_since_us=old.category_since_us,
        member_ref=old.member_ref,
        cap_fen=old.cap_fen,
        cash_fen=cash,
        subsidy_fen=sub,
        credits_posted=cash + sub,
    )
    eng._new_account(new)
    old.debits_posted += cash + sub
    old.cash_fen = old.subsidy_fen = 0
    old.flags |= AccountFlags.CLOSED
    move_journey(eng, aid, nid)
    return Result.OK, (cash + sub, 0, aid, nid, sub)


def move_journey(eng: Engine, old_id: int, new_id: int) -> None:
    """REPLACE: the new card carries on the old card's fare state (its journey,
    transfers, caps and spend tiers), so losing a card costs no cap progress. An
    open metro entry is dropped: REPLACE voided its hold, so an exit tapped with the
    new card is an exit without entry (taps.py, rules 7 and 9)."""
    j = eng.journeys.pop(old_id, None)
    if j is None:
        return
    if eng._undo is not None:
        eng._undo.append(("journey_move", old_id, new_id, copy.deepcopy(j)))
    j.account_id = new_id
    j.entry_version = NONE
    j.entry_route = j.entry_stop = 0
    j.entry_time_us = 0
    j.entry_source = j.entry_seq = 0
    eng.journeys[new_id] = j

def op_close(eng: Engine, op, jseq):
    aid, cid = op["account_id"], op["counterparty_id"]
    if aid == 0 or cid == 0:
        return Result.INVALID_ACCOUNT_ID, None
    if aid == cid:
        return Result.ACCOUNTS_MUST_BE_DIFFERENT, None
    a = eng.accounts.get(aid)
    if a is None:
        return Result.ACCOUNT_NOT_FOUND, None
    c = eng.accounts.get(cid)
    if c is None:
        return Result.COUNTERPARTY_NOT_FOUND, None
    if a.kind == AccountKind.CLEARING:
        return Result.WRONG_ACCOUNT_KIND, None
    if c.kind != AccountKind.CLEARING:
        return Result.WRONG_COUNTERPARTY_KIND, None
    if (a.flags | c.flags) & AccountFlags.CLOSED:
        return Result.ACCOUNT_CLOSED, None
    held = sum(p[4] for p in eng.pending.values() if p[2] == aid) if a.debits_pending else 0
    total = a.cash_fen + a.subsidy_fen + held
    if total < 0:
        return Result.INSUFFICIENT_FUNDS, None  # a card in debt (taps) is topped up first
    if c.credits_posted > INT64_MAX - total or c.cash_fen > INT64_MAX - total:
        return Result.OVERFLOW, None
    void_holds_of(eng, a)
    eng._touch(a)
    eng._touch(c)
    cash, sub = a.cash_fen, a.subsidy_fen
    a.debits_posted += cash + sub
    a.cash_fen = a.subsidy_fen = 0
    a.flags |= AccountFlags.CLOSED
    c.credits_posted += cash + sub
    c.cash_fen += cash + sub
    return Result.OK, (cash + sub, 0, aid, cid, sub)


def _is(kind: int):
    return lambda k: k == kind


def _is_not(kind: int):
    return lambda k: k != kind


def _any(k: int) -> bool:
    return True
