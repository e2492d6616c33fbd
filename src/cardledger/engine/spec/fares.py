"""The reference fare evaluator: GTFS Fares v2 over `FareTables`, in plain Python.

This is the executable specification of the core's evaluator (`cext/fares.pxi`);
the test suite checks the two against each other on random journeys. A journey is
a list of legs `(route, from_stop, to_stop, departure_us, arrival_us)` in the
tables' indexes. Evaluating it takes four steps, as the spec describes:

1. **Effective legs.** Consecutive legs that a fare_leg_join_rule joins become one
   leg: the first leg's departure stop and time, the last leg's arrival stop and
   time. Its network is the legs' common network (none if they differ).
2. **Leg rules.** Candidate rules are found by (network, from_area); then to_area
   and the two timeframes are checked. Without a rule_priority column an empty
   field matches only values no rule lists in that column (a stop in several
   areas matches it when any of its areas is unlisted; each listed area matches
   its own rules), and among several
   matches the most specific (most non-empty fields) win; with it, an empty field
   matches anything and the highest priority wins. A rule whose product has no row
   for this rider and medium is skipped. When several rules of the winning rank
   remain, each is an *option* for the leg (at most LEG_OPTIONS_MAX, one per
   distinct amount and leg group, cheapest first).
3. **Transfers** between consecutive effective legs, by their leg groups (a leg
   whose rule has no leg_group_id takes part in none): an exact (from, to) match,
   else an empty from/to stands for every group not listed in that column. The
   count of a run of consecutive transfers matched by the same (from, to) picks the
   rule with the smallest transfer_count at least that count (-1: unlimited);
   duration limits are measured from the run's first leg, at most the limit. Ties:
   cheapest transfer product, then file order. A matching rule is applied even
   when pricing the legs separately would be cheaper.
4. **Cost.** type 0: S += AB; type 1: S += AB + B; type 2: AB replaces the fare of
   the from-leg when that leg began the sub-journey (S = S - A + AB), otherwise
   S += AB. No matching transfer: S += B.
5. **The lowest fare for the rider.** Steps 3–4 run for every combination of the
   legs' options (up to QUOTE_COMBINATIONS_MAX; beyond, each leg takes its
   cheapest option) and the lowest total wins; ties go to the combination that is
   first in option order. So where the spec leaves a choice (several products
   match a leg; no medium given, e.g. cash or card products on different leg
   groups) the rider pays the cheapest journey, deterministically.

Product prices for a rider: a named category uses that category's rows and rows
with an empty category; no category uses the product's default category (or the
rows with an empty category). A named medium uses its rows and rows with an empty
medium; no medium takes the cheapest row of any medium.
"""

from __future__ import annotations

import bisect
import enum
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...schema import NO_PRICE, NONE, S_PER_DAY, US_PER_S

if TYPE_CHECKING:  # (compiled by `fares/`, which sits above the engines)
    from ...fares.tables import FareTables


class FareStatus(enum.IntEnum):
    """Outcome of evaluating a journey."""

    OK = 0
    UNKNOWN_FARE = 1  # some effective leg matched no leg rule
    UNKNOWN_ROUTE = 2
    UNKNOWN_STOP = 3
    NO_LEGS = 4
    TOO_MANY_LEGS = 5  # more than QUOTE_LEGS_MAX legs


#: Legs one journey may have (the core evaluates journeys in fixed stack arrays).
QUOTE_LEGS_MAX = 64
#: How an unlimited transfer_count (-1) ranks: after every finite count.
UNLIMITED_RANK = 1 << 40
#: Ways one effective leg may be priced that the journey search considers.
LEG_OPTIONS_MAX = 8
#: Combinations of leg options the search tries; beyond, each leg takes its cheapest.
QUOTE_COMBINATIONS_MAX = 4096


class FareDiscount(enum.IntFlag):
    """Why a fare is below the plain fare: reported per quote and per TAP result."""

    NONE = 0
    TRANSFER = 1  # a fare transfer rule priced the journey
    CATEGORY = 2  # the rider's category pays less than the default rider
    CAP = 4  # a daily/weekly/monthly cap limited the charge (taps only)
    TIER = 8  # a monthly spend tier discounted the charge (taps only)


Leg = tuple[int, int, int, int, int]  # route, from_stop, to_stop, departure_us, arrival_us


class ReferenceEvaluator:
    """Evaluates journeys over one `FareTables` (see the module docstring)."""

    def __init__(self, t: FareTables) -> None:
        self.t = t
        tl = lambda a: a.tolist()  # noqa: E731 - plain lists are faster to index
        self.route_network = tl(t.route_network)
        self.route_known = tl(t.route_known)
        self.stop_known = tl(t.stop_known)
        self.stop_station = tl(t.stop_station)
        self.stop_tz = tl(t.stop_tz)
        ptr, vals = tl(t.stop_area_ptr), tl(t.stop_area)
        self.stop_areas = [vals[ptr[i] : ptr[i + 1]] for i in range(len(ptr) - 1)]
        self.stop_from_empty = tl(t.stop_from_empty)
        self.stop_to_empty = tl(t.stop_to_empty)
        tzp = tl(t.tz_ptr)
        fr, off = tl(t.tz_from_us), tl(t.tz_offset_s)
        self.tz = [(fr[tzp[z] : tzp[z + 1]], off[tzp[z] : tzp[z + 1]]) for z in range(len(tzp) - 1)]
        self.svc_bits = t.svc_bits.tolist()
        tfp = tl(t.tf_ptr)
        st, en, sv = tl(t.tf_start_s), tl(t.tf_end_s), tl(t.tf_service)
        self.tf = [
            list(zip(st[tfp[g] : tfp[g + 1]], en[tfp[g] : tfp[g + 1]], sv[tfp[g] : tfp[g + 1]]))
            for g in range(len(tfp) - 1)
        ]
        self.price = t.price.tolist()
        self.n_areas = len(t.area_ids)
        self.lr_keys = tl(t.lr_keys)
        self.lr = list(
            zip(
                tl(t.lr_to_area),
                tl(t.lr_from_tf),
                tl(t.lr_to_tf),
                tl(t.lr_group),
                tl(t.lr_product),
                tl(t.lr_priority),
                tl(t.lr_nspec),
                tl(t.lr_order),
            )
        )
        self.network_listed = tl(t.network_listed)
        self.from_area_listed = tl(t.from_area_listed)
        self.to_area_listed = tl(t.to_area_listed)
        self.tr = list(
            zip(
                tl(t.tr_from_group),
                tl(t.tr_to_group),
                tl(t.tr_count),
                tl(t.tr_duration_s),
                tl(t.tr_duration_type),
                tl(t.tr_type),
                tl(t.tr_product),
            )
        )
        self.from_group_listed = tl(t.from_group_listed)
        self.to_group_listed = tl(t.to_group_listed)
        self.jr = list(
            zip(tl(t.jr_from_network), tl(t.jr_to_network), tl(t.jr_from_stop), tl(t.jr_to_stop))
        )

    # -- time ---------------------------------------------------------------

    def local_day_and_time(self, stop: int, time_us: int) -> tuple[int, int]:
        """(local day number since 1970-01-01, seconds since local midnight) at a stop."""
        froms, offs = self.tz[self.stop_tz[stop]]
        k = bisect.bisect_right(froms, time_us) - 1
        local_s = time_us // US_PER_S + offs[k]
        day = local_s // S_PER_DAY
        return day, local_s - day * S_PER_DAY

    def in_timeframe(self, group: int, stop: int, time_us: int) -> bool:
        """Whether an event at `stop` and `time_us` falls in a timeframe group."""
        day, tod = self.local_day_and_time(stop, time_us)
        d = day - self.t.svc_day0
        for start, end, svc in self.tf[group]:
            if start <= tod < end:
                row = self.svc_bits[svc]
                if 0 <= d < len(row) and row[d]:
                    return True
        return False

    # -- legs ---------------------------------------------------------------

    def leg_options(
        self, net: int, fs: int, ts: int, dep_us: int, arr_us: int, cat: int, med: int
    ) -> list[tuple[int, int, int]]:
        """The ways the leg rules may price an effective leg: [(amount, leg group, product)].

        Only rules of the winning rank (highest priority, or most specific without a
        rule_priority column) whose product the rider may use; cheapest first, then
        file order; at most LEG_OPTIONS_MAX, one per (amount, group).
        """
        t = self.t
        prio = t.has_rule_priority
        if prio:
            nets = [net, NONE] if net != NONE else [NONE]
        else:
            nets = [net] if net != NONE and self.network_listed[net] else [NONE]
        # A stop may be in several areas, and each may match a rule. Without
        # rule_priority, an empty area field stands for every area no rule lists in
        # that column: it matches when some area of the stop is unlisted (or the stop
        # is in none), whatever its other areas match.
        # (`stop_from_empty` / `stop_to_empty`, decided when the feed was compiled).
        from_areas = self.stop_areas[fs]
        if prio:
            fas = from_areas + [NONE]
        else:
            fas = [a for a in from_areas if self.from_area_listed[a]]
            if self.stop_from_empty[fs]:
                fas.append(NONE)
        to_areas = self.stop_areas[ts]
        to_empty_ok = self.stop_to_empty[ts]
        found: list[tuple[int, int, int, int, int]] = []  # (rank, amount, order, group, product)
        a1 = self.n_areas + 1
        for n in nets:
            for fa in fas:
                key = (n + 1) * a1 + (fa + 1)
                lo = bisect.bisect_left(self.lr_keys, key)
                hi = bisect.bisect_right(self.lr_keys, key, lo)
                for r in range(lo, hi):
                    ta, ftf, ttf, grp, prod, priority, nspec, order = self.lr[r]
                    if ta == NONE:
                        if not to_empty_ok:
                            continue
                    elif ta not in to_areas:
                        continue
                    if ftf != NONE and not self.in_timeframe(ftf, fs, dep_us):
                        continue
                    if ttf != NONE and not self.in_timeframe(ttf, ts, arr_us):
                        continue
                    amount = self.price[prod][cat][med]
                    if amount == NO_PRICE:
                        continue
                    found.append((-(priority if prio else nspec), amount, order, grp, prod))
        if not found:
            return []
        best_rank = min(f[0] for f in found)
        out: list[tuple[int, int, int]] = []
        seen: set[tuple[int, int]] = set()
        for _, amount, _, grp, prod in sorted(f for f in found if f[0] == best_rank):
            if (amount, grp) not in seen and len(out) < LEG_OPTIONS_MAX:
                seen.add((amount, grp))
                out.append((amount, grp, prod))
        return out

    def joins(self, prev: Leg, nxt: Leg) -> bool:
        """Whether a join rule merges two consecutive legs into one effective leg."""
        pn = self.route_network[prev[0]]
        nn = self.route_network[nxt[0]]
        for fn, tn, fstop, tstop in self.jr:
            if fn != pn or tn != nn:
                continue
            if fstop != NONE:
                if prev[2] != fstop and self.stop_station[prev[2]] != fstop:
                    continue
                if nxt[1] != tstop and self.stop_station[nxt[1]] != tstop:
                    continue
                return True
            if self.stop_station[prev[2]] == self.stop_station[nxt[1]]:
                return True
        return False

    def effective_legs(self, legs: Sequence[Leg]) -> list[tuple[int, int, int, int, int]]:
        """(network, from_stop, to_stop, departure_us, arrival_us) per effective leg."""
        out: list[tuple[int, int, int, int, int]] = []
        prev: Leg | None = None
        for leg in legs:
            net = self.route_network[leg[0]]
            if prev is not None and self.joins(prev, leg):
                n0, fs, _, dep, _ = out[-1]
                out[-1] = (n0 if n0 == net else NONE, fs, leg[2], dep, leg[4])
            else:
                out.append((net, leg[1], leg[2], leg[3], leg[4]))
            prev = leg
        return out

    # -- journeys -------------------------------------------------------------

    def quote(self, legs: Sequence[Leg], cat: int, med: int) -> tuple[FareStatus, int, FareDiscount]:
        """Total fare of a journey for a rider: (status, amount, discounts)."""
        status, total, flags, _, _ = self.quote_detail(legs, cat, med)
        return status, total, flags

    def quote_detail(
        self, legs: Sequence[Leg], cat: int, med: int
    ) -> tuple[FareStatus, int, FareDiscount, int, FareDiscount]:
        """`quote` plus, for the last effective leg: its product (-1 if none) and its
        own discounts (TRANSFER if a transfer rule priced the way into it, CATEGORY if
        its fare is below the default rider's): what a tap on that leg reports."""
        t = self.t
        none = FareDiscount.NONE
        if not legs:
            return FareStatus.NO_LEGS, 0, none, NONE, none
        if len(legs) > QUOTE_LEGS_MAX:
            return FareStatus.TOO_MANY_LEGS, 0, none, NONE, none
        n_routes, n_stops = len(self.route_network), len(self.stop_station)
        for leg in legs:
            if not (0 <= leg[0] < n_routes and self.route_known[leg[0]]):
                return FareStatus.UNKNOWN_ROUTE, 0, none, NONE, none
            for s in (leg[1], leg[2]):
                if not (0 <= s < n_stops and self.stop_known[s]):
                    return FareStatus.UNKNOWN_STOP, 0, none, NONE, none
        eff = self.effective_legs(legs)
        options: list[list[tuple[int, int, int]]] = []
        for net, fs, ts, dep, arr in eff:
            opts = self.leg_options(net, fs, ts, dep, arr, cat, med)
            if not opts:
                return FareStatus.UNKNOWN_FARE, 0, none, NONE, none
            options.append(opts)
        combos = 1
        for opts in options:
            combos *= len(opts)
        if combos > QUOTE_COMBINATIONS_MAX:
            options = [opts[:1] for opts in options]
        best: tuple[int, int, int, list[tuple[int, int, int]]] | None = None
        for choice in itertools.product(*options):
            total, flags, last_flags = self.price_journey(eff, choice, cat, med)
            if best is None or total < best[0]:
                best = (total, flags, last_flags, list(choice))
        assert best is not None
        total, flags, last_flags, choice = best
        n_cat = t.n_categories
        for i, (amount, _, prod) in enumerate(choice):
            base = self.price[prod][n_cat][med]
            if cat != n_cat and base != NO_PRICE and amount < base:
                flags |= FareDiscount.CATEGORY
                if i == len(choice) - 1:
                    last_flags |= FareDiscount.CATEGORY
        return FareStatus.OK, total, FareDiscount(flags), choice[-1][2], FareDiscount(last_flags)

    def price_journey(
        self,
        eff: list[tuple[int, int, int, int, int]],
        choice: Sequence[tuple[int, int, int]],
        cat: int,
        med: int,
    ) -> tuple[int, int, int]:
        """(total, TRANSFER bit, TRANSFER bit of the last leg) of effective legs priced
        by `choice`, transfers applied."""
        amounts = [c[0] for c in choice]
        groups = [c[1] for c in choice]
        flags = 0
        total = amounts[0]
        run_pair: tuple[int, int] | None = None  # (from, to) fields of the current run
        run_count = 0
        run_start = 0
        reached_by_transfer = False  # was leg i-1 reached by a transfer?
        last_flags = 0
        for i in range(1, len(eff)):
            g0, g1 = groups[i - 1], groups[i]
            chosen = None
            last_flags = 0
            if g0 != NONE and g1 != NONE:
                pair = (
                    g0 if self.from_group_listed[g0] else NONE,
                    g1 if self.to_group_listed[g1] else NONE,
                )
                if reached_by_transfer and run_pair == pair:
                    count, start = run_count + 1, run_start
                else:
                    count, start = 1, i - 1
                best_rank = None
                for x, (fg, tg, tcount, dur, dtype, ttype, prod) in enumerate(self.tr):
                    if fg != pair[0] or tg != pair[1]:
                        continue
                    if tcount != -1 and tcount < count:
                        continue
                    if dur >= 0:
                        if dtype == 0:
                            span = eff[i][4] - eff[start][3]
                        elif dtype == 1:
                            span = eff[i][3] - eff[start][3]
                        elif dtype == 2:
                            span = eff[i][3] - eff[start][4]
                        else:
                            span = eff[i][4] - eff[start][4]
                        if span > dur * US_PER_S:
                            continue
                    cost = 0
                    if prod != NONE:
                        cost = self.price[prod][cat][med]
                        if cost == NO_PRICE:
                            continue
                    rank = (tcount if tcount != -1 else UNLIMITED_RANK, cost, x)
                    if best_rank is None or rank < best_rank:
                        best_rank = rank
                        chosen = (ttype, cost)
                if chosen is not None:
                    run_pair, run_count, run_start = pair, count, start
            if chosen is None:
                total += amounts[i]
                reached_by_transfer = False
                run_pair = None
                continue
            ttype, cost = chosen
            flags |= FareDiscount.TRANSFER
            last_flags = FareDiscount.TRANSFER
            if ttype == 0:
                total += cost
            elif ttype == 1:
                total += cost + amounts[i]
            elif not reached_by_transfer:
                total += cost - amounts[i - 1]
            else:
                total += cost
            reached_by_transfer = True
        return total, flags, last_flags

    def local_day(self, tz: int, time_us: int, day_start_s: int) -> int:
        """The service day (days since 1970-01-01) of an instant in timezone `tz`.

        A service day starts `day_start_s` seconds after local midnight.
        """
        froms, offs = self.tz[tz]
        k = bisect.bisect_right(froms, time_us) - 1
        return (time_us // US_PER_S + offs[k] - day_start_s) // S_PER_DAY
