"""PURCHASE and REFUND in the reference engine (docs/purchases.md).

A PURCHASE's discount is decided by the offer catalog version in force at its
`time_us` (compiled `OfferTables`, `offers/tables.py`), against the engine's offer
state: each offer's use (by slot: discount given, union share, purchases, net of
refunds; the discount given is what its budget has spent), each card's counters per
offer (local day count, local month discount), and what is left to refund of each
purchase refunded so far. All of it changes through the engine's undo log, so a chain
that fails rolls it back, and all of it is checkpointed beside the accounts.

A purchase is not kept: its journal record says what it took (the gross, the net and
its subsidy part, the union's leg, the offer's slot, the discount, the local day the
card's counters counted it in), and a REFUND reads that record (`purchase_of`), found
in the engine's window of recent decisions or by the ledger before the batch. A
REFUND's own record says what it moved, so a replay reads nothing else.

Integer arithmetic only; every product that could pass 64 bits is computed as the
core computes it (`mul_div`, exact floor of a * b / c).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

import numpy as np

from ...schema import (
    AMOUNT_MAX_FEN,
    JOURNAL_DTYPE,
    TAP_TIME_US_MAX,
    CARD_OFFER_DTYPE,
    INT64_MAX,
    NO_OFFER,
    NOT_COUNTED,
    OFFER_BUDGET_DTYPE,
    REFUNDED_DTYPE,
    S_PER_DAY,
    US_PER_S,
    AccountFlags,
    AccountKind,
    OpKind,
    Result,
)
from .handlers import DRAW_ORDER, Account, amount_ok, category_at, check_pair, draw_purses
from .taps import month_of_day

if TYPE_CHECKING:
    from ...offers.tables import OfferTables
    from .batch import Engine

BP_WHOLE = 10_000
MINUTE_US = 60 * US_PER_S

# An offer slot's use (a list): discount given, union share, purchases (net of refunds)
S_USED, S_UNION, S_PURCHASES = range(3)
# A card's counters per offer (a list): day, day_count, month, month_discount_fen
C_DAY, C_COUNT, C_MONTH, C_MDISC = range(4)


class OfferState:
    """The offer versions installed (compiled) and the state purchases built."""

    def __init__(self) -> None:
        self.versions: list[OfferTables] = []
        self.starts: list[int] = []
        self.slots: dict[int, list[int]] = {}  # slot -> [used_fen, union_fen, purchases]
        self.card_offer: dict[tuple[int, int], list[int]] = {}  # (card id, slot) -> counters
        self.refunded: dict[tuple[int, int], int] = {}  # purchase id -> gross left to refund

    def used(self, slot: int) -> int:
        """The discount offer `slot` has given, net of refunds (its budget spent)."""
        s = self.slots.get(slot)
        return s[S_USED] if s is not None else 0

    def at(self, time_us: int) -> int:
        """Index of the version in force at `time_us` (-1: none)."""
        return bisect.bisect_right(self.starts, time_us) - 1


def set_versions(eng: Engine, tables: list) -> None:
    """Install the compiled catalog versions (oldest first)."""
    st = eng.offers
    st.versions = list(tables)
    st.starts = [t.start_us for t in tables]


def mul_div(a: int, b: int, c: int) -> int:
    """floor(a * b / c) for a, b >= 0 and c > 0, exactly (the core uses 128 bits)."""
    return a * b // c


# ------------------------------------------------------------------ local time


def local_time(t: OfferTables, time_us: int) -> tuple[int, int, int, int]:
    """(local day number, minute of the local day, ISO weekday 1..7, local month) at
    `time_us` in the catalog's zone (its recorded offsets)."""
    froms = t.tz_from_us
    k = int(np.searchsorted(froms, time_us, side="right")) - 1
    off = int(t.tz_offset_s[max(k, 0)]) if len(froms) else 0
    local_us = time_us + off * US_PER_S
    day_us = S_PER_DAY * US_PER_S
    day = local_us // day_us
    minute = (local_us - day * day_us) // MINUTE_US
    weekday = (day + 3) % 7 + 1  # 1970-01-01 was a Thursday
    return day, minute, weekday, month_of_day(day)


# ------------------------------------------------------------------ the decision


def _candidates(t: OfferTables, merchant_id: int) -> list[int]:
    """The merchant's offers and every merchant's, in catalog order."""
    own: list[int] = []
    ids = t.merchant_ids
    k = int(np.searchsorted(ids, np.uint64(merchant_id)))
    if k < len(ids) and int(ids[k]) == merchant_id:
        own = t.merchant_offers[int(t.merchant_off[k]) : int(t.merchant_off[k + 1])].tolist()
    every = t.all_offers.tolist()
    return sorted(own + every) if own and every else (own or every)


def _in_force(t: OfferTables, i: int, day: int, minute: int, weekday: int, cat: int) -> bool:
    if not int(t.from_day[i]) <= day <= int(t.to_day[i]):
        return False
    if not (int(t.dow_mask[i]) >> (weekday - 1)) & 1:
        return False
    lo, hi = int(t.hour_off[i]), int(t.hour_off[i + 1])
    if not any(int(t.hour_start[h]) <= minute < int(t.hour_end[h]) for h in range(lo, hi)):
        return False
    if not int(t.cat_all[i]):
        lo, hi = int(t.cat_off[i]), int(t.cat_off[i + 1])
        if cat not in t.cats[lo:hi].tolist():
            return False
    return True


def offer_discount(t: OfferTables, i: int, gross: int) -> int:
    """An offer's discount on `gross` before the card's and the budget's limits:
    percent off plus the amount off (once per full every_fen when set), zero below
    min_gross_fen, cut to max_discount_fen and to the gross."""
    if gross < int(t.min_gross_fen[i]):
        return 0
    d = mul_div(gross, int(t.percent_off_bp[i]), BP_WHOLE)
    every = int(t.every_fen[i])
    times = gross // every if every else 1
    d += int(t.amount_off_fen[i]) * times
    cap = int(t.max_discount_fen[i])
    if cap and d > cap:
        d = cap
    return min(d, gross)


def decide(eng: Engine, card: Account, merchant_id: int, gross: int, time_us: int) -> tuple:
    """What a PURCHASE would do now: (version, offer row, slot, D, U, day, month);
    (-1, -1, NO_OFFER, 0, 0, day, month) when no offer applies."""
    st = eng.offers
    v = st.at(time_us)
    if v < 0 or time_us > TAP_TIME_US_MAX:  # no local calendar past it (the year 6536)
        return (-1, -1, NO_OFFER, 0, 0, 0, 0)
    t = st.versions[v]
    day, minute, weekday, month = local_time(t, time_us)
    cat = category_at(card, time_us)
    best = (v, -1, NO_OFFER, 0, 0, day, month)
    for i in _candidates(t, merchant_id):
        if not _in_force(t, i, day, minute, weekday, cat):
            continue
        slot = int(t.slot[i])
        limit_n = int(t.day_count[i])
        c = st.card_offer.get((card.id, slot)) if limit_n or int(t.month_discount_fen[i]) else None
        # The counters hold the card's latest day and month with this offer: a purchase
        # dated before them (a late upload, or after a purchase dated ahead) cannot be
        # counted in its own day or month, so a limited offer gives it nothing.
        if limit_n and c is not None and (c[C_DAY] > day or (c[C_DAY] == day and c[C_COUNT] >= limit_n)):
            continue
        d = offer_discount(t, i, gross)
        limit_m = int(t.month_discount_fen[i])
        if limit_m:
            if c is not None and c[C_MONTH] > month:
                used = limit_m
            else:
                used = c[C_MDISC] if c is not None and c[C_MONTH] == month else 0
            d = min(d, limit_m - used)
        budget = int(t.budget_fen[i])
        if budget:
            d = min(d, budget - st.used(slot))
        if d <= best[3]:  # nothing to give, or no more than an offer listed before it
            continue
        u = mul_div(d, int(t.union_share_bp[i]), BP_WHOLE)
        if u:
            union = eng.accounts.get(int(t.union_account[i]))
            if (union is None or union.kind != AccountKind.SUBSIDY or union.flags & (AccountFlags.CLOSED | AccountFlags.FROZEN)
                    or union.cash_fen < u):
                continue
        best = (v, i, slot, d, u, day, month)
    return best


# ------------------------------------------------------------------ undo-logged changes


def _set(eng: Engine, table: dict, key: Any, value: Any) -> None:
    """table[key] = value, through the chain's undo log."""
    if eng._undo is not None:
        eng._undo.append(("offer", table, key, table.get(key)))
    table[key] = value


def counted(c: list[int] | None, day: int, month: int, d: int) -> list[int]:
    """A card's counters for an offer after a purchase of local `day` and `month` got
    discount `d` from it. Counters only move forward: a purchase of an earlier day (or
    month) than the one they hold (a late upload) leaves that day's count (or that
    month's discount) as it is."""
    if c is None:
        return [day, 1, month, d]
    c = list(c)
    if day > c[C_DAY]:
        c[C_DAY], c[C_COUNT] = day, 1
    elif day == c[C_DAY]:
        c[C_COUNT] += 1
    if month > c[C_MONTH]:
        c[C_MONTH], c[C_MDISC] = month, d
    elif month == c[C_MONTH]:
        c[C_MDISC] += d
    return c


# ------------------------------------------------------------------ the handlers


def op_purchase(eng: Engine, op: dict, jseq: int):
    """A card pays a merchant `amount_fen` (the gross) less the discount of the best
    offer in force; the union account pays its share (docs/purchases.md)."""
    gross = op["amount_fen"]
    if not amount_ok(gross):
        return Result.INVALID_AMOUNT, None
    code, card, merchant = check_pair(eng, op, lambda k: k == AccountKind.CARD, lambda k: k == AccountKind.MERCHANT)
    if code:
        return code, None
    if card.flags & AccountFlags.FROZEN:
        return Result.ACCOUNT_FROZEN, None
    if card.flags & AccountFlags.INACTIVE:
        return Result.ACCOUNT_INACTIVE, None
    v, i, slot, d, u, day, month = decide(eng, card, merchant.id, gross, op["time_us"])
    net = gross - d
    if card.available() < net:
        return Result.INSUFFICIENT_FUNDS, None
    if card.debits_posted > INT64_MAX - net:
        return Result.OVERFLOW, None
    paid = net + u
    if merchant.credits_posted > INT64_MAX - paid or merchant.cash_fen + merchant.subsidy_fen > INT64_MAX - paid:
        return Result.OVERFLOW, None
    st = eng.offers
    if slot != NO_OFFER and st.used(slot) > INT64_MAX - d:
        return Result.OVERFLOW, None
    # a card's counters count the purchases of an offer that limits cards (by day or month)
    counts = slot != NO_OFFER and (int(st.versions[v].day_count[i]) or int(st.versions[v].month_discount_fen[i]))
    c = st.card_offer.get((card.id, slot)) if counts else None
    if c is not None and c[C_MONTH] == month and c[C_MDISC] > INT64_MAX - d:
        return Result.OVERFLOW, None
    union = None
    if u:
        union = eng.accounts[int(eng.offers.versions[v].union_account[i])]
        if union.debits_posted > INT64_MAX - u:
            return Result.OVERFLOW, None
    eng._touch(card)
    eng._touch(merchant)
    sub = draw_purses(eng, card, net, DRAW_ORDER) if net else 0
    card.debits_posted += net
    merchant.credits_posted += paid
    merchant.cash_fen += paid
    if union is not None:
        eng._touch(union)
        union.cash_fen -= u
        union.debits_posted += u
    if slot != NO_OFFER:
        used, union_used, bought = st.slots.get(slot, (0, 0, 0))
        _set(eng, st.slots, slot, [used + d, union_used + u, bought + 1])
    if counts:
        _set(eng, st.card_offer, (card.id, slot), counted(st.card_offer.get((card.id, slot)), day, month, d))
    # The third leg: the union account debited U (the merchant is credited net + U).
    # The record keeps D and the day the counters counted it in (+ 1; 0: not counted):
    # what its REFUNDs read back.
    return Result.OK, (net, card.available(), card.id, merchant.id, sub, slot + 1,
                       union.id if union is not None else 0, u, d, day + 1 if counts else 0, 0)


# What a REFUND reads of its purchase (from the purchase's journal record)
_J = {name: k for k, name in enumerate(JOURNAL_DTYPE.names)}


def purchase_of(rec: tuple | None) -> dict | None:
    """A successful PURCHASE's journal record (a tuple, JOURNAL_DTYPE order), as its
    REFUNDs need it; None if it is none, or names what no purchase could (a record
    from outside)."""
    if rec is None or rec[_J["kind"]] != OpKind.PURCHASE or rec[_J["code"]] != Result.OK:
        return None
    gross, net, sub = rec[_J["amount_fen"]], rec[_J["result_amount_fen"]], rec[_J["subsidy_fen"]]
    union_id, u, offer_day = rec[_J["union_id"]], rec[_J["union_fen"]], rec[_J["offer_day"]]
    if (not amount_ok(gross) or not 0 <= sub <= net <= gross or not 0 <= u <= gross - net
            or rec[_J["account_id"]] == 0 or rec[_J["counterparty_id"]] == 0 or (u != 0) != (union_id != 0)
            or offer_day < 0):
        return None
    day, month = _counted_day(offer_day)
    return {"card": rec[_J["account_id"]], "merchant": rec[_J["counterparty_id"]], "union": union_id,
            "gross": gross, "sub": sub, "cash": net - sub, "disc": gross - net, "union_fen": u,
            "slot": rec[_J["discounts"]] - 1, "day": day, "month": month}


def _counted_day(offer_day: int) -> tuple[int, int]:
    """The local day and month a record's offer_day names ((NOT_COUNTED,) * 2 for 0)."""
    if offer_day > 0:
        return offer_day - 1, month_of_day(offer_day - 1)
    return NOT_COUNTED, NOT_COUNTED


def _find_purchase(eng: Engine, op: dict) -> dict | None:
    """The purchase a REFUND names: its record in the engine's window (this batch's
    included), else the one the ledger found before the batch (`eng.bought_ref`)."""
    key = (op["ref_source"], op["ref_seq"])
    idx = eng.recent.get(key)
    if idx is not None:
        return purchase_of(tuple(eng.tail[idx]))
    rec = eng.bought_ref
    if rec is None or rec[_J["journal_seq"]] == 0 or (rec[_J["source"]], rec[_J["seq"]]) != key:
        return None
    return purchase_of(rec)


def op_refund(eng: Engine, op: dict, jseq: int):
    """Part of a purchase's gross returned: each purse, the union account, the budget
    and the month counter get back their floor share of the total refunded so far; the
    day count comes back with the last part (docs/purchases.md).

    Live, the purchase is its journal record (`_find_purchase`). A replay whose
    purchase is in the window decides again (and the record is checked against it);
    one whose purchase lies before the window takes what it moved from its own record
    (`eng.refund_replay`)."""
    part = op["amount_fen"]
    if not amount_ok(part):
        return Result.INVALID_AMOUNT, None
    st = eng.offers
    rr = eng.refund_replay
    union = None
    found = _find_purchase(eng, op)
    if rr is not None and found is not None:
        rr = None
    if rr is not None:
        left_before = st.refunded.get((op["ref_source"], op["ref_seq"]))
        if left_before is not None and left_before - part != rr[_J["refundable_fen"]]:
            return Result.EXCEEDS_REFUNDABLE, None
        p = {"card": rr[_J["credit_id"]], "merchant": rr[_J["debit_id"]], "union": rr[_J["union_id"]],
             "slot": rr[_J["discounts"]] - 1}
        offer_day = rr[_J["offer_day"]]
        p["day"], p["month"] = _counted_day(offer_day)
        amount, sub, u, d, left = (rr[_J["result_amount_fen"]], rr[_J["subsidy_fen"]], rr[_J["union_fen"]],
                                   rr[_J["offer_fen"]], rr[_J["refundable_fen"]])
        cash = amount - sub
        card, merchant = eng.accounts.get(p["card"]), eng.accounts.get(p["merchant"])
        if p["union"]:
            union = eng.accounts.get(p["union"])
        if (card is None or merchant is None or (p["union"] and union is None)
                or not 0 <= sub <= amount or u < 0 or d < 0 or left < 0
                or (p["slot"] != NO_OFFER and p["slot"] >= _slots_cap(eng))):
            return Result.PURCHASE_NOT_FOUND, None
    else:
        p = found
        if p is None:
            return Result.PURCHASE_NOT_FOUND, None
        # A REFUND names its purchase, not accounts: the source's policy must let it touch
        # the purchase's card and merchant (docs/policies.md).
        if eng.policies.current is not None and not eng.policies.allows_parties(op["source"], p["card"], p["merchant"]):
            return Result.SOURCE_NOT_ALLOWED, None
        g = p["gross"]
        left_before = st.refunded.get((op["ref_source"], op["ref_seq"]))
        r = g - left_before if left_before is not None else 0
        if part > g - r:
            return Result.EXCEEDS_REFUNDABLE, None
        card, merchant = eng.accounts.get(p["card"]), eng.accounts.get(p["merchant"])
        if p["union"]:
            union = eng.accounts.get(p["union"])
        # (a purchase's accounts always exist, unless its record came from outside)
        if card is None or merchant is None or (p["union"] and union is None) or p["slot"] >= _slots_cap(eng):
            return Result.PURCHASE_NOT_FOUND, None
        if (card.flags | merchant.flags | (union.flags if union is not None else 0)) & AccountFlags.CLOSED:
            return Result.ACCOUNT_CLOSED, None
        if merchant.flags & AccountFlags.FROZEN:
            return Result.ACCOUNT_FROZEN, None
        r2 = r + part

        def back(x: int) -> int:
            return mul_div(x, r2, g) - mul_div(x, r, g)

        sub, cash, u, d = back(p["sub"]), back(p["cash"]), back(p["union_fen"]), back(p["disc"])
        amount = sub + cash
        left = g - r2
        offer_day = p["day"] + 1 if p["day"] != NOT_COUNTED else 0
    paid = amount + u
    if merchant.cash_fen < paid:
        return Result.INSUFFICIENT_FUNDS, None
    if merchant.debits_posted > INT64_MAX - paid or card.credits_posted > INT64_MAX - amount:
        return Result.OVERFLOW, None
    if card.cash_fen + card.subsidy_fen > INT64_MAX - amount:
        return Result.OVERFLOW, None
    if union is not None and (union.credits_posted > INT64_MAX - u or union.cash_fen > INT64_MAX - u):
        return Result.OVERFLOW, None
    eng._touch(card)
    eng._touch(merchant)
    merchant.cash_fen -= paid
    merchant.debits_posted += paid
    card.subsidy_fen += sub
    card.cash_fen += cash  # the cash cap never refuses a refund
    card.credits_posted += amount
    if union is not None:
        eng._touch(union)
        union.cash_fen += u
        union.credits_posted += u
    slot = p["slot"]
    if slot != NO_OFFER:
        used, union_used, bought = st.slots.get(slot, (0, 0, 0))
        _set(eng, st.slots, slot, [used - d, union_used - u, bought - (left == 0)])
        c = st.card_offer.get((card.id, slot))
        if c is not None and (c[C_MONTH] == p["month"] or c[C_DAY] == p["day"]):
            c = list(c)
            if c[C_MONTH] == p["month"]:
                c[C_MDISC] -= d
            if left == 0 and c[C_DAY] == p["day"]:
                c[C_COUNT] -= 1
            _set(eng, st.card_offer, (card.id, slot), c)
    _set(eng, st.refunded, (op["ref_source"], op["ref_seq"]), left)
    # The third leg: the union account credited this part's u (the merchant is debited
    # amount + u). The record keeps what replay reads back: the budget's part d, the
    # purchase's counted day, and what is left to refund.
    return Result.OK, (amount, card.available(), merchant.id, card.id, sub, slot + 1,
                       union.id if union is not None and u else 0, u if union is not None else 0,
                       d, offer_day, left)


def _slots_cap(eng: Engine) -> int:
    """One past the largest offer slot of the installed versions (the core's room)."""
    return max((int(t.slot.max()) + 1 for t in eng.offers.versions if len(t.slot)), default=0)


# ------------------------------------------------------------------ checkpoint


def export_state(eng: Engine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(slot use by slot (the slots with any), card counters by (card, slot), refunded
    purchases by id)."""
    st = eng.offers
    budgets = np.array(sorted((s, *v) for s, v in st.slots.items() if any(v)), dtype=OFFER_BUDGET_DTYPE)
    cards = np.array([(k[0], k[1], *v) for k, v in sorted(st.card_offer.items())], dtype=CARD_OFFER_DTYPE)
    refunded = np.array(sorted((k[0], k[1], v) for k, v in st.refunded.items()), dtype=REFUNDED_DTYPE)
    return budgets, cards, refunded


def load_state(eng: Engine, budgets: np.ndarray, cards: np.ndarray, refunded: np.ndarray) -> None:
    """Replace the offer state by a checkpoint's (as `export_state` gives)."""
    st = eng.offers
    st.slots = {int(r[0]): [int(x) for x in r[1:]] for r in budgets.tolist()}
    st.card_offer = {(int(r[0]), int(r[1])): [int(x) for x in r[2:]] for r in cards.tolist()}
    st.refunded = {(int(r[0]), int(r[1])): int(r[2]) for r in refunded.tolist()}


def quote(eng: Engine, card_id: int, merchant_id: int, gross: int, time_us: int) -> tuple[int, int, int, int]:
    """(net, discount, union share, slot) a PURCHASE would decide now; no effect. An
    unknown card is quoted as a card of category 0."""
    card = eng.accounts.get(card_id) or Account(id=card_id, kind=AccountKind.CARD)
    if not 0 < gross <= AMOUNT_MAX_FEN:
        raise ValueError(f"gross_fen must be in 1..{AMOUNT_MAX_FEN}, got {gross}")
    _, _, slot, d, u, _, _ = decide(eng, card, merchant_id, gross, time_us)
    return gross - d, d, u, slot
