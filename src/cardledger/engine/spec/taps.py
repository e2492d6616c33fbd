"""TAP ops in the reference engine: the executable specification of fare charging.

The core's `op_tap` (cext/taps.pxi) follows this module step by step. A TAP op
names a card (`account_id`), an instant (`time_us`, at most TAP_TIME_US_MAX, else
INVALID_TAP), a `route` and `stop` (indexes of the fare system) and a `tap`
(`TapType`); a metered network's BOARD tap also carries the fare in `amount_fen`.
Every other field must be zero and `time_us` positive: a new op is refused otherwise
before it gets here (`handlers.check_fields`, one result code per field). Those checks
are not repeated here, so that a TAP journaled before them (at time_us 0) replays.

Rules, in the order they are checked and applied:

1. The card must exist, be a CARD, not be closed (ACCOUNT_CLOSED) or frozen
   (ACCOUNT_FROZEN), nor inactive (ACCOUNT_INACTIVE). The fare-system version in force at `time_us` rates the tap
   (NO_FARE_SYSTEM if none). The route's agency's operator account is paid
   (OPERATOR_NOT_FOUND if it is missing or not an OPERATOR account).
2. BOARD (bus, ferry, coach, taxi): the leg is (route, stop → stop, time, time).
   Metered networks charge `amount_fen`. Otherwise the leg joins the card's
   journey unless (a) the journey is priced by another version, (b) the leg
   departs more than `journey_break_s` after the journey's last arrival, or (c)
   the journey already has JOURNEY_LEGS_MAX legs: then a new journey starts. The
   charge is the quote of the journey including this leg minus what the journey
   has charged so far (never below 0: no refunds).
3. A leg that departs before the journey's last leg ("late": an offline validator
   uploading old taps) is priced alone, as a one-leg journey, and leaves the
   journey untouched: nothing already posted is ever re-rated.
4. Spend tiers, then caps, reduce the charge (FareDiscount.TIER, .CAP). Their
   periods are service days in the system's timezone (`day_start_s` after local
   midnight) of the leg's departure: day, Monday–Sunday week, rolling seven days
   from the first capped tap, calendar month. A tap in a period older than the
   card's counter is neither discounted by nor counted in that counter.
   Counters belong to one fare-system version; a tap rated by a newer version
   starts fresh counters, one rated by an older version skips them.
5. A BOARD charge needs `available + allowance >= charge` (INSUFFICIENT_FUNDS),
   where allowance is the negative balance the pricing product allows.
6. ENTRY (gated network): an open entry of the card is first settled as an
   incomplete journey (its `incomplete_charge`). Then a hold of the network's
   `max_fare` is placed (less if the card cannot cover it, down to the network's
   allowance; INSUFFICIENT_FUNDS if nothing can be held). The hold's id is the
   ENTRY op's id.
7. EXIT: with no open entry, the network's incomplete charge is taken. An open
   entry older than the network's timeout is settled as incomplete and the exit
   charges nothing more. Otherwise the leg (entry route, entry stop → exit stop,
   entry time, exit time) is priced by the version in force at entry, as a BOARD
   leg is (journey, tiers, caps at the entry time); leaving at the entry station
   costs `same_station_charge` when configured. The hold is posted with the
   charge and the rest released; a charge above the hold is debited directly,
   even below the allowance: the ride has happened, and the card then appears on
   `Ledger.denylist()`.
8. SWEEP: settles the card's open entry as incomplete if it has timed out at
   `time_us`; otherwise does nothing (OK, amount 0).
9. Any other tap of a card whose open entry has timed out at `time_us` first
   settles that entry, once the tap has passed the checks of rule 1 and its route,
   stop, network and operator are valid: a BOARD, or an ENTRY or EXIT at another
   operator's gate (the entry's own gate settles it itself, rules 6 and 7). The
   settlement is a record of its own, before the tap's: a SWEEP of the card at the
   tap's `time_us`, with the id (SETTLE_SOURCE, n), n = 1, 2, … in order, paid to
   the entry's operator. Then the tap does its own work (and may still fail: the
   settlement stands). The batch loop writes that record (`Engine._settle_first`),
   and only for a tap on its own, not one ending a chain (a settlement is not undone
   with a failed chain); a replay replays the SWEEP
   record as any other, so journals written before this rule (where a BOARD left
   the entry open, and another operator's gate refused the card) replay as they
   were decided. An entry that has not timed out stays open across a BOARD, and
   another operator's gate still refuses the card (INVALID_TAP).
10. REPLACE (not a tap) hands the old card's fare state to the new card: its
   journey, transfer window, cap and tier counters carry on. REPLACE voids every
   hold of the old card, so an open entry is dropped with it: the new card's exit
   is an exit without entry (rule 7).

The result's amount is what the tap charged (posted), its balance the card's
available balance after, and `discounts` the FareDiscount bits. An entry and an
exit must be at the same operator (INVALID_TAP otherwise, until the entry times out:
rule 9).
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np

from . import handlers
from .fares import FareDiscount, FareStatus, ReferenceEvaluator
from ...schema import (
    MODE_GATED,
    NONE,
    MODE_METERED,
    PERIOD_DAY,
    PERIOD_ROLLING_7D,
    PERIOD_WEEK,
    REF_NOT_FOUND,
    REF_TAP,
    AMOUNT_MAX_FEN,
    FARE_CAPS_MAX,
    FARE_TIERS_MAX,
    INT64_MAX,
    JOURNEY_DTYPE,
    JOURNEY_LEGS_MAX,
    TAP_TIME_US_MAX,
    AccountFlags,
    AccountKind,
    Result,
    TapType,
)

if TYPE_CHECKING:
    from ...fares.taptables import TapTables
    from .batch import Engine
    from .handlers import Account

_STATUS_RESULT = {
    FareStatus.UNKNOWN_FARE: Result.FARE_NOT_FOUND,
    FareStatus.UNKNOWN_ROUTE: Result.UNKNOWN_ROUTE,
    FareStatus.UNKNOWN_STOP: Result.UNKNOWN_STOP,
}
#: What `op_tap` returns, changing nothing, when the card's overdue entry must first be
#: settled in a record of its own (rule 9): never a result, the batch loop acts on it.
SETTLE_FIRST = -1


class Journey:
    """A card's fare state (JOURNEY_DTYPE as a plain object)."""

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self.version = NONE
        self.legs: list[tuple[int, int, int, int, int]] = []
        self.charged_fen = 0
        self.last_departure_us = 0
        self.last_arrival_us = 0
        self.entry_version = NONE
        self.entry_route = 0
        self.entry_stop = 0
        self.entry_time_us = 0
        self.entry_source = 0
        self.entry_seq = 0
        self.counter_version = NONE
        self.cap_period = [NONE] * FARE_CAPS_MAX
        self.cap_spent_fen = [0] * FARE_CAPS_MAX
        self.tier_period = [NONE] * FARE_TIERS_MAX
        self.tier_spent_fen = [0] * FARE_TIERS_MAX

    def as_tuple(self) -> tuple:
        """The state as a JOURNEY_DTYPE row."""
        legs = [(r, f, t, 0, d, a) for r, f, t, d, a in self.legs]
        legs += [(0, 0, 0, 0, 0, 0)] * (JOURNEY_LEGS_MAX - len(legs))
        return (
            self.account_id, self.version, len(self.legs), self.charged_fen,
            self.last_departure_us, self.last_arrival_us, legs,
            self.entry_version, self.entry_route, self.entry_stop, self.counter_version,
            self.entry_time_us, self.entry_source, self.entry_seq,
            list(self.cap_period), list(self.cap_spent_fen),
            list(self.tier_period), list(self.tier_spent_fen),
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: Any) -> Journey:
        """Rebuild from a JOURNEY_DTYPE record."""
        j = cls(int(row["account_id"]))
        j.version = int(row["version"])
        n = int(row["n_legs"])
        j.legs = [
            (int(x["route"]), int(x["from_stop"]), int(x["to_stop"]), int(x["departure_us"]), int(x["arrival_us"]))
            for x in row["legs"][:n]
        ]
        j.charged_fen = int(row["charged_fen"])
        j.last_departure_us = int(row["last_departure_us"])
        j.last_arrival_us = int(row["last_arrival_us"])
        for name in ("entry_version", "entry_route", "entry_stop", "counter_version",
                     "entry_time_us", "entry_source", "entry_seq"):  # fmt: skip
            setattr(j, name, int(row[name]))
        j.cap_period = [int(x) for x in row["cap_period"]]
        j.cap_spent_fen = [int(x) for x in row["cap_spent_fen"]]
        j.tier_period = [int(x) for x in row["tier_period"]]
        j.tier_spent_fen = [int(x) for x in row["tier_spent_fen"]]
        return j


def export_journeys(journeys: dict[int, Journey]) -> np.ndarray:
    """Every card's fare state, by account id (JOURNEY_DTYPE)."""
    return np.array([journeys[k].as_tuple() for k in sorted(journeys)], dtype=JOURNEY_DTYPE)


def load_journeys(rows: np.ndarray) -> dict[int, Journey]:
    """Inverse of `export_journeys`."""
    return {int(r["account_id"]): Journey.from_row(r) for r in rows}


class FareVersions:
    """The installed fare-system versions, oldest first, with their evaluators."""

    def __init__(self, versions: list[TapTables]) -> None:
        self.versions = versions
        self.evaluators = [ReferenceEvaluator(v.fares) for v in versions]
        self.starts = [v.effective_from_us for v in versions]

    def at(self, time_us: int) -> int:
        """Index of the version in force at `time_us` (-1: none)."""
        k = NONE
        for i, s in enumerate(self.starts):
            if s <= time_us:
                k = i
        return k


def month_of_day(day: int) -> int:
    """Calendar month number (year * 12 + month - 1) of a day number since 1970-01-01."""
    d = dt.date(1970, 1, 1) + dt.timedelta(days=day)
    return d.year * 12 + d.month - 1


def _discount(eng: Engine, j: Journey, v: int, when_us: int, net: int, cat: int, fare: int, flags: int) -> tuple[int, int]:
    """Tiers then caps (rule 4); updates `j`'s counters (a candidate copy)."""
    fv: FareVersions = eng.fares
    tt = fv.versions[v]
    n_caps, n_tiers = len(tt.cap_period), len(tt.tier_percent_off)
    if (n_caps == 0 and n_tiers == 0) or fare == 0:
        return fare, flags
    if j.counter_version > v:
        return fare, flags  # rated by an older version than the counters: skip them
    if j.counter_version != v:
        j.counter_version = v
        j.cap_period = [NONE] * FARE_CAPS_MAX
        j.cap_spent_fen = [0] * FARE_CAPS_MAX
        j.tier_period = [NONE] * FARE_TIERS_MAX
        j.tier_spent_fen = [0] * FARE_TIERS_MAX
    day = fv.evaluators[v].local_day(0, when_us, tt.day_start_s)
    month = month_of_day(day)
    tiers_used = []
    pct = 0
    for k in range(n_tiers):
        if net < 0 or not (tt.tier_network[k][net] and tt.tier_category[k][cat]):
            continue
        p = j.tier_period[k]
        if p > month:
            continue
        spent = j.tier_spent_fen[k] if p == month else 0
        tiers_used.append(k)
        if tt.tier_from_fen[k] <= spent < tt.tier_until_fen[k]:
            pct = max(pct, int(tt.tier_percent_off[k]))
    if pct:
        fare -= fare * pct // 100
        flags |= FareDiscount.TIER
    caps_used = []
    for k in range(n_caps):
        if net < 0 or not (tt.cap_network[k][net] and tt.cap_category[k][cat]):
            continue
        kind = int(tt.cap_period[k])
        p = j.cap_period[k]
        if kind == PERIOD_ROLLING_7D:
            if p != NONE and day < p:
                continue
            fresh = p == NONE or day >= p + 7
            key = day if fresh else p
        else:
            key = day if kind == PERIOD_DAY else (day + 3) // 7 if kind == PERIOD_WEEK else month
            if p > key:
                continue
            fresh = p != key
        spent = 0 if fresh else j.cap_spent_fen[k]
        caps_used.append((k, key, spent))
        remaining = max(0, int(tt.cap_amount_fen[k]) - spent)
        if fare > remaining:
            fare = remaining
            flags |= FareDiscount.CAP
    for k in tiers_used:
        if j.tier_period[k] != month:
            j.tier_period[k] = month
            j.tier_spent_fen[k] = 0
        j.tier_spent_fen[k] += fare
    for k, key, spent in caps_used:
        j.cap_period[k] = key
        j.cap_spent_fen[k] = spent + fare
    return fare, flags


def _rate_leg(eng: Engine, j: Journey, v: int, leg: tuple[int, int, int, int, int], cat: int) -> tuple[int, int, int, int]:
    """(code, fare, flags, product) of a journey leg (rules 2 and 3); updates `j`."""
    fv: FareVersions = eng.fares
    tt = fv.versions[v]
    ev = fv.evaluators[v]
    dep = leg[3]
    if j.legs and dep < j.last_departure_us:
        status, total, _, product, flags = ev.quote_detail([leg], cat, tt.fare_media)
        if status != FareStatus.OK:
            return _STATUS_RESULT.get(status, Result.FARE_NOT_FOUND), 0, 0, NONE
        return Result.OK, max(0, total), int(flags), product
    if (
        j.version != v
        or not j.legs
        or dep - j.last_arrival_us > tt.journey_break_us
        or len(j.legs) >= JOURNEY_LEGS_MAX
    ):
        j.version = v
        j.legs = []
        j.charged_fen = 0
    legs = j.legs + [leg]
    status, total, _, product, flags = ev.quote_detail(legs, cat, tt.fare_media)
    if status != FareStatus.OK:
        return _STATUS_RESULT.get(status, Result.FARE_NOT_FOUND), 0, 0, NONE
    fare = max(0, total - j.charged_fen)
    j.legs = legs
    j.charged_fen += fare
    j.last_departure_us = dep
    j.last_arrival_us = leg[4]
    return Result.OK, fare, int(flags), product


def _settle_entry(eng: Engine, j: Journey, card: Account, operator: Account, charge: int) -> int:
    """Post an open entry's hold with `charge` (any excess debited directly).

    Returns the part taken from the subsidy purse. Clears the entry.
    """
    key = (j.entry_source, j.entry_seq)
    p = eng.pending.get(key)
    sub = 0
    extra = charge
    if p is not None and p[2] == card.id and p[3] == operator.id:
        posted = min(charge, p[4])
        sub += handlers.release(eng, p, posted)
        eng._pending_del(key)
        extra = charge - posted
    if extra:
        sub += handlers.move(eng, card, operator, extra, 0, False)
    j.entry_version = NONE
    j.entry_route = j.entry_stop = 0
    j.entry_time_us = 0
    j.entry_source = j.entry_seq = 0
    return sub


def _operator(eng: Engine, account_id: int) -> tuple[int, Account | None]:
    a = eng.accounts.get(account_id) if account_id else None
    if a is None or a.kind != AccountKind.OPERATOR:
        return Result.OPERATOR_NOT_FOUND, None
    if a.flags & AccountFlags.CLOSED:
        return Result.ACCOUNT_CLOSED, None
    return Result.OK, a


def _entry_gate(eng: Engine, j: Journey) -> tuple[TapTables, int]:
    """(version tables, network) of the card's open entry."""
    tt = eng.fares.versions[j.entry_version]
    return tt, int(tt.fares.route_network[j.entry_route])


def op_tap(eng: Engine, op: dict, jseq: int) -> tuple[int, Any]:
    """Execute one TAP op (module docstring); (code, effect) as every handler returns."""
    tap = op["tap"]
    if tap not in (TapType.BOARD, TapType.ENTRY, TapType.EXIT, TapType.SWEEP):
        return Result.INVALID_TAP, None
    if not 0 <= op["time_us"] <= TAP_TIME_US_MAX:
        return Result.INVALID_TAP, None
    if op["time_us"] > eng.tap_horizon_us:
        return Result.TAP_TIME_IN_FUTURE, None
    amount = op["amount_fen"]
    if amount < 0 or amount > AMOUNT_MAX_FEN:
        return Result.INVALID_AMOUNT, None
    aid = op["account_id"]
    if aid == 0:
        return Result.INVALID_ACCOUNT_ID, None
    card = eng.accounts.get(aid)
    if card is None:
        return Result.ACCOUNT_NOT_FOUND, None
    if card.kind != AccountKind.CARD:
        return Result.WRONG_ACCOUNT_KIND, None
    if card.flags & AccountFlags.CLOSED:
        return Result.ACCOUNT_CLOSED, None
    if card.flags & AccountFlags.FROZEN:
        return Result.ACCOUNT_FROZEN, None
    if card.flags & AccountFlags.INACTIVE:
        return Result.ACCOUNT_INACTIVE, None
    fv: FareVersions = eng.fares
    now = op["time_us"]
    v = fv.at(now)
    if v == NONE:
        return Result.NO_FARE_SYSTEM, None
    old = eng.journeys.get(aid)
    j = copy.deepcopy(old) if old is not None else Journey(aid)

    if tap == TapType.SWEEP:
        if op["route"] or op["stop"]:
            return Result.INVALID_TAP, None
        if amount:
            return Result.INVALID_AMOUNT, None
        if j.entry_version == NONE:
            return Result.OK, (0, card.available(), aid, 0, 0)
        ett, enet = _entry_gate(eng, j)
        if now - j.entry_time_us <= ett.gate_timeout_us[enet]:
            return Result.OK, (0, card.available(), aid, 0, 0)
        code, operator = _operator(eng, int(ett.route_operator[j.entry_route]))
        if code:
            return code, None
        charge = int(ett.gate_incomplete_fen[enet])
        sub = _settle_entry(eng, j, card, operator, charge)
        eng.journeys[aid] = j
        return Result.OK, (charge, card.available(), aid, operator.id, sub)

    tt = fv.versions[v]
    t = tt.fares
    route, stop = op["route"], op["stop"]
    if route >= len(t.route_ids) or not t.route_known[route]:
        return Result.UNKNOWN_ROUTE, None
    if stop >= len(t.stop_ids) or not t.stop_known[stop]:
        return Result.UNKNOWN_STOP, None
    net = int(t.route_network[route])
    mode = int(tt.network_mode[net]) if net >= 0 else 0
    if (mode == MODE_GATED) != (tap in (TapType.ENTRY, TapType.EXIT)):
        return Result.INVALID_TAP, None
    if (mode == MODE_METERED) != (amount > 0):
        return Result.INVALID_AMOUNT, None
    code, operator = _operator(eng, int(tt.route_operator[route]))
    if code:
        return code, None
    assert operator is not None
    cat = tt.rider_category(handlers.category_at(card, now))

    if tap == TapType.BOARD:
        if j.entry_version != NONE and eng.settle_on:
            ett, enet = _entry_gate(eng, j)
            if now - j.entry_time_us > ett.gate_timeout_us[enet]:
                return SETTLE_FIRST, None  # rule 9: the batch settles the entry, then taps again
        leg = (route, stop, stop, now, now)
        if mode == MODE_METERED:
            fare, flags, product = amount, 0, NONE
        else:
            code, fare, flags, product = _rate_leg(eng, j, v, leg, cat)
            if code:
                return code, None
        fare, flags = _discount(eng, j, v, now, net, cat, fare, flags)
        allowance = int(tt.product_allowance_fen[product]) if product != NONE else int(tt.network_allowance_fen[net])
        if card.available() + allowance < fare:
            return Result.INSUFFICIENT_FUNDS, None
        sub = handlers.move(eng, card, operator, fare, 0, False) if fare else 0
        eng.journeys[aid] = j
        return Result.OK, (fare, card.available(), aid, operator.id, sub, flags)

    if j.entry_version != NONE:
        ett, enet = _entry_gate(eng, j)
        if int(ett.route_operator[j.entry_route]) != operator.id:
            if eng.settle_on and now - j.entry_time_us > ett.gate_timeout_us[enet]:
                return SETTLE_FIRST, None  # rule 9: the batch settles the entry, then taps again
            return Result.INVALID_TAP, None

    if tap == TapType.ENTRY:
        charge = 0
        held_back = 0
        if j.entry_version != NONE:
            ett, enet = _entry_gate(eng, j)
            charge = int(ett.gate_incomplete_fen[enet])
            p = eng.pending.get((j.entry_source, j.entry_seq))
            if p is not None and p[2] == aid and p[3] == operator.id:
                held_back = p[4]
        hold = min(int(tt.gate_max_fare_fen[net]), card.available() + held_back - charge + int(tt.network_allowance_fen[net]))
        if hold <= 0:
            return Result.INSUFFICIENT_FUNDS, None
        sub = _settle_entry(eng, j, card, operator, charge) if j.entry_version != NONE else 0
        eng._touch(card)
        eng._touch(operator)
        hold_sub = handlers.draw_purses(eng, card, hold, 0)
        card.debits_pending += hold
        operator.credits_pending += hold
        key = (op["source"], op["seq"])
        eng._pending_add(key, [key[0], key[1], aid, operator.id, hold, hold_sub, 0, jseq])
        j.entry_version = v
        j.entry_route = route
        j.entry_stop = stop
        j.entry_time_us = now
        j.entry_source, j.entry_seq = key
        eng.journeys[aid] = j
        return Result.OK, (charge, card.available(), aid, operator.id, sub)

    # EXIT
    flags = 0
    if j.entry_version == NONE:
        charge = int(tt.gate_incomplete_fen[net])
    else:
        ett, enet = _entry_gate(eng, j)
        ev = j.entry_version
        if now < j.entry_time_us:
            return Result.INVALID_TAP, None
        if now - j.entry_time_us > ett.gate_timeout_us[enet]:
            charge = int(ett.gate_incomplete_fen[enet])
        elif (
            ett.gate_same_station_fen[enet] >= 0
            and stop < len(ett.fares.stop_ids)
            and ett.fares.stop_station[j.entry_stop] == ett.fares.stop_station[stop]
        ):
            charge = int(ett.gate_same_station_fen[enet])
            ecat = ett.rider_category(handlers.category_at(card, j.entry_time_us))
            charge, flags = _discount(eng, j, ev, j.entry_time_us, enet, ecat, charge, 0)
        else:
            leg = (j.entry_route, j.entry_stop, stop, j.entry_time_us, now)
            ecat = ett.rider_category(handlers.category_at(card, j.entry_time_us))
            code, charge, flags, _ = _rate_leg(eng, j, ev, leg, ecat)
            if code:
                return code, None
            charge, flags = _discount(eng, j, ev, j.entry_time_us, enet, ecat, charge, flags)
    sub = _settle_entry(eng, j, card, operator, charge)
    eng.journeys[aid] = j
    return Result.OK, (charge, card.available(), aid, operator.id, sub, flags)


# ---------------------------------------------------------------- REVERSE

#: REVERSE: the fields it does not use (INVALID_REVERSE if set); amount_fen must be 0.
_REVERSE_ZERO_FIELDS = ("counterparty_id", "limit_fen", "account_kind", "category", "route", "stop", "tap",
                        "pad16", "pad32")
#: Bits of a REVERSE result's `discounts`: which counters it took the tap's charge back
#: from (cap k: bit k, tier k: bit REVERSED_TIER_SHIFT + k).
REVERSED_TIER_SHIFT = 8


def _reversal_mask(eng: Engine, j: Journey | None, ref: dict, card: Account) -> int:
    """The counters of `j` still holding what the tap `ref` added to them: those it
    counted in (its version, network, category and rating instant, as `_discount` saw
    them) whose period is still the tap's."""
    fv: FareVersions = eng.fares
    if ref["tap"] == TapType.BOARD:
        when, route = ref["time_us"], ref["route"]
    elif ref["tap"] == TapType.EXIT and ref["entry_found"]:
        when, route = ref["entry_time_us"], ref["entry_route"]
    else:
        return 0  # an ENTRY's or SWEEP's charge is an incomplete charge: never counted
    v = fv.at(when)
    if v == NONE or j is None or j.counter_version != v:
        return 0
    tt = fv.versions[v]
    if route >= len(tt.fares.route_ids):
        return 0
    net = int(tt.fares.route_network[route])
    if net < 0:
        return 0
    if ref["tap"] == TapType.EXIT and ref["time_us"] - when > tt.gate_timeout_us[net]:
        return 0  # the exit was charged as incomplete: no counter saw it
    cat = tt.rider_category(card.category)
    day = fv.evaluators[v].local_day(0, when, tt.day_start_s)
    month = month_of_day(day)
    mask = 0
    for k in range(len(tt.tier_percent_off)):
        if tt.tier_network[k][net] and tt.tier_category[k][cat] and j.tier_period[k] == month:
            mask |= 1 << (REVERSED_TIER_SHIFT + k)
    for k in range(len(tt.cap_period)):
        if not (tt.cap_network[k][net] and tt.cap_category[k][cat]):
            continue
        p = j.cap_period[k]
        kind = int(tt.cap_period[k])
        if kind == PERIOD_ROLLING_7D:
            held = p != NONE and p <= day < p + 7
        else:
            key = day if kind == PERIOD_DAY else (day + 3) // 7 if kind == PERIOD_WEEK else month_of_day(day)
            held = p == key
        if held:
            mask |= 1 << k
    return mask


def _take_back(j: Journey, mask: int, amount: int) -> None:
    """Take `amount` back from the counters of `mask` (never below zero)."""
    for k in range(FARE_CAPS_MAX):
        if mask >> k & 1:
            j.cap_spent_fen[k] = max(0, j.cap_spent_fen[k] - amount)
    for k in range(FARE_TIERS_MAX):
        if mask >> (REVERSED_TIER_SHIFT + k) & 1:
            j.tier_spent_fen[k] = max(0, j.tier_spent_fen[k] - amount)


def op_reverse(eng: Engine, op: dict, jseq: int) -> tuple[int, Any]:
    """Execute one REVERSE op: return a tap's charge to the card from the operator it
    paid, and take it back from the card's cap and tier counters still in the tap's
    periods; a tap is reversed once (docs/fares.md, Reversing a tap).

    Live, the tap is what the ledger found in the journal (`eng.reverse_ref`); in a
    replay, the REVERSE's own record says what it did (`eng.reverse_replay`: operator,
    amount, subsidy part, counters), so a replay reads nothing else."""
    if any(op[f] for f in _REVERSE_ZERO_FIELDS) or op["ref_source"] == 0:
        return Result.INVALID_REVERSE, None
    if not 0 <= op["time_us"] <= TAP_TIME_US_MAX:
        return Result.INVALID_REVERSE, None
    aid = op["account_id"]
    if aid == 0:
        return Result.INVALID_ACCOUNT_ID, None
    card = eng.accounts.get(aid)
    if card is None:
        return Result.ACCOUNT_NOT_FOUND, None
    if card.kind != AccountKind.CARD:
        return Result.WRONG_ACCOUNT_KIND, None
    if card.flags & AccountFlags.CLOSED:
        return Result.ACCOUNT_CLOSED, None
    key = (op["ref_source"], op["ref_seq"])
    old = eng.journeys.get(aid)
    replay = eng.reverse_replay
    if replay is None:
        ref = eng.reverse_ref
        if ref is None or ref["status"] == REF_NOT_FOUND:
            return Result.TAP_NOT_FOUND, None
        p = eng.pending.get(key)
        if p is not None and p[2] == 0:
            return Result.TAP_ALREADY_REVERSED, None
        if ref["status"] != REF_TAP or ref["account_id"] != aid or p is not None:
            return Result.TAP_NOT_REVERSIBLE, None  # (p: an entry whose hold is still open)
        opr_id, amount, sub = ref["operator_id"], ref["amount_fen"], ref["subsidy_fen"]
        mask = _reversal_mask(eng, old, ref, card) if amount else 0
    else:
        opr_id, amount, sub, mask = replay
    opr = None
    if amount:
        opr = eng.accounts.get(opr_id)
        if opr is None or opr.kind != AccountKind.OPERATOR:
            return Result.OPERATOR_NOT_FOUND, None
        if opr.flags & AccountFlags.CLOSED:
            return Result.ACCOUNT_CLOSED, None
        if opr.flags & AccountFlags.FROZEN:
            return Result.ACCOUNT_FROZEN, None
        if opr.cash_fen < amount:
            return Result.INSUFFICIENT_FUNDS, None
        cash = amount - sub
        if cash and card.cash_fen + card.debits_pending + card.credits_pending + cash > card.cap_fen:
            return Result.EXCEEDS_CAP, None
        if opr.debits_posted > INT64_MAX - amount or card.credits_posted > INT64_MAX - amount:
            return Result.OVERFLOW, None
        if card.cash_fen + card.subsidy_fen > INT64_MAX - amount:
            return Result.OVERFLOW, None
        eng._touch(opr)
        eng._touch(card)
        opr.cash_fen -= amount
        opr.debits_posted += amount
        card.credits_posted += amount
        card.subsidy_fen += sub
        card.cash_fen += cash
    if mask and old is not None:
        j = copy.deepcopy(old)
        _take_back(j, mask, amount)
        eng.journeys[aid] = j
    # The tap's id stays in the holds table as a hold of nothing (no accounts, no
    # amount): the mark that it is reversed, checkpointed with the holds.
    eng._pending_add(key, [key[0], key[1], 0, 0, 0, 0, 0, jseq])
    return Result.OK, (amount, card.available(), opr.id if opr is not None else 0, aid, sub, mask)
