# TAP ops: fare charging. A step-by-step twin of engine/spec/taps.py (the
# executable specification: its docstring states the rules, in the order they are
# checked). Everything here runs without the GIL over the installed versions'
# arrays (TapVer) and the cards' journeys (Journey, JOURNEY_DTYPE records).
#
# A tap works on a candidate copy of the card's journey (a local struct): on
# failure nothing is written back, on success the copy replaces the record.

cdef extern from *:
    """
    /* Exact comparisons of int64 sums that may overflow int64 (the reference
       computes them on Python ints). */
    static inline int cl_diff_gt(long long a, long long b, long long c) {
        return (__int128)a - (__int128)b > (__int128)c;
    }
    /* a + b < c */
    static inline int cl_sum_lt(long long a, long long b, long long c) {
        return (__int128)a + (__int128)b < (__int128)c;
    }
    /* min(cap, a + b - c + d), and whether it is > 0 */
    static inline long long cl_hold(long long cap, long long a, long long b, long long c,
                                    long long d, int* positive) {
        __int128 s = (__int128)a + b - c + d;
        if (s > (__int128)cap) s = cap;
        *positive = s > 0;
        return *positive ? (long long)s : 0;
    }
    /* Python's fare * pct // 100 */
    static inline long long cl_pct_floor(long long fare, long long pct) {
        __int128 p = (__int128)fare * pct;
        __int128 q = p / 100;
        if ((p % 100 != 0) && (p < 0)) q -= 1;
        return (long long)q;
    }
    """
    bint cl_diff_gt(int64_t a, int64_t b, int64_t c) noexcept nogil
    bint cl_sum_lt(int64_t a, int64_t b, int64_t c) noexcept nogil
    int64_t cl_hold(int64_t cap, int64_t a, int64_t b, int64_t c, int64_t d, int* positive) noexcept nogil
    int64_t cl_pct_floor(int64_t fare, int64_t pct) noexcept nogil


# ---------------------------------------------------------------- journey table

cdef int taps_init(Taps* tp) noexcept nogil:
    memset(tp, 0, sizeof(Taps))
    tp.jmap = <Slot*>calloc(MAP_SLOTS_INITIAL, sizeof(Slot))
    tp.jmap_mask = MAP_SLOTS_INITIAL - 1
    return 0 if tp.jmap != NULL else -1


cdef void taps_free_journeys(Taps* tp) noexcept nogil:
    free(tp.journeys)
    free(tp.jmap)
    tp.journeys = NULL
    tp.jmap = NULL
    tp.n_journeys = 0
    tp.cap_journeys = 0
    tp.jmap_mask = 0
    tp.jmap_used = 0


cdef void journey_init(Journey* j, uint64_t account_id) noexcept nogil:
    """A card's fare state before its first tap (spec: taps.Journey())."""
    cdef int k
    memset(j, 0, sizeof(Journey))
    j.account_id = account_id
    j.version = FARE_NONE
    j.entry_version = FARE_NONE
    j.counter_version = FARE_NONE
    for k in range(FARE_CAPS_MAX_C):
        j.cap_period[k] = FARE_NONE
    for k in range(FARE_TIERS_MAX_C):
        j.tier_period[k] = FARE_NONE


cdef inline int64_t journey_find(Taps* tp, uint64_t account_id) noexcept nogil:
    if account_id == 0:
        return -1
    return map1_find(tp.jmap, tp.jmap_mask, account_id)


cdef int journey_reserve(Taps* tp, int64_t expect) noexcept nogil:
    """Room for one more journey, so that storing it after a tap cannot fail.

    When the store must grow, it grows at once to `expect` journeys (the caller passes
    the number of accounts, a bound on the cards): growing by doubling through a
    city's cards copies the store and rehashes its map at every power of two, and
    each of those lands on one batch as a stall.
    """
    cdef int64_t need = tp.n_journeys + 1
    if need > tp.cap_journeys and expect > need:
        need = expect
    if need > tp.cap_journeys:
        cow_copy_all(tp.cow)  # the store may move: a snapshot being taken must not read it after
    if grow(<void**>&tp.journeys, &tp.cap_journeys, need, sizeof(Journey)) != 0:
        return -1
    if (tp.jmap_used + 1) * 2 > <int64_t>(tp.jmap_mask + 1):
        # the growth map1_insert would do, done before any state changes, and at once
        # to twice the store's capacity: rehashing a million keys at every power of
        # two would stall the batches as the store's growth did
        return journey_map_reserve(tp)
    CL_ASSERT(tp.n_journeys < tp.cap_journeys, "a reserved journey has its room")
    CL_ASSERT(<uint64_t>(tp.jmap_used + 1) * 2 <= tp.jmap_mask + 1, "a reserved journey's key fits the map without growing it")
    return 0


cdef int journey_map_reserve(Taps* tp) noexcept nogil:
    """Grow the journey map to twice the store's capacity (at most half full once the
    store is), if it is smaller."""
    cdef uint64_t slots = tp.jmap_mask + 1, i
    cdef Slot* t
    if <int64_t>slots >= 2 * tp.cap_journeys:
        return 0
    while <int64_t>slots < 2 * tp.cap_journeys:
        slots *= 2
    t = <Slot*>big_calloc(slots, sizeof(Slot))
    if t == NULL:
        return -1
    for i in range(tp.jmap_mask + 1):
        if tp.jmap[i].key != 0:
            map1_put(t, slots - 1, tp.jmap[i].key, tp.jmap[i].val)
    free(tp.jmap)
    tp.jmap = t
    tp.jmap_mask = slots - 1
    CL_ASSERT(<int64_t>(tp.jmap_mask + 1) >= 2 * tp.cap_journeys, "the journey map holds the whole store at most half full")
    CL_ASSERT(tp.jmap_used <= tp.n_journeys, "the journey map indexes no more keys than there are journeys")
    return 0


cdef void journey_move(State* st, uint64_t old_id, uint64_t new_id) noexcept nogil:
    """REPLACE: the new card carries on the old card's fare state, its open entry
    dropped (spec: taps.py rule 9)."""
    cdef Taps* tp = st.taps
    cdef int64_t idx = journey_find(tp, old_id)
    cdef Journey* j
    if idx < 0:
        return
    cow_before_write(tp.cow, idx)
    undo_push(st, U_JOURNEY_MOVE, idx)
    if st.undo_on and st.oom == 0:
        st.undo[st.n_undo - 1].journey = tp.journeys[idx]
    # One key out, one in: the map never grows here.
    map1_delete(tp.jmap, tp.jmap_mask, &tp.jmap_used, old_id)
    if map1_insert(&tp.jmap, &tp.jmap_mask, &tp.jmap_used, new_id, idx) != 0:
        st.oom = 1
        return
    CL_ASSERT(journey_find(tp, old_id) == -1, "a replaced card's journey is no longer under its id")
    CL_ASSERT(journey_find(tp, new_id) == idx, "the new card's journey is the old card's")
    j = &tp.journeys[idx]
    j.account_id = new_id
    j.entry_version = FARE_NONE
    j.entry_route = 0
    j.entry_stop = 0
    j.entry_time_us = 0
    j.entry_source = 0
    j.entry_seq = 0


cdef int journey_store(Taps* tp, int64_t idx, Journey* j) noexcept nogil:
    """Write a card's journey back (idx: its slot, -1: a new one; reserved already)."""
    if idx >= 0:
        cow_before_write(tp.cow, idx)
        tp.journeys[idx] = j[0]
        return 0
    if map1_insert(&tp.jmap, &tp.jmap_mask, &tp.jmap_used, j.account_id, tp.n_journeys) != 0:
        return -1
    tp.journeys[tp.n_journeys] = j[0]
    tp.n_journeys += 1
    CL_ASSERT(tp.n_journeys <= tp.cap_journeys, "a stored journey was reserved room for")
    CL_ASSERT(tp.n_journeys == tp.jmap_used, "every journey is indexed once")
    return 0


# ---------------------------------------------------------------- version helpers

cdef inline int32_t tap_version_at(Taps* tp, int64_t time_us) noexcept nogil:
    """Index of the version in force at time_us (-1: none): the last whose start <= it."""
    cdef int32_t k = FARE_NONE, i
    for i in range(tp.n_vers):
        if tp.vers[i].effective_from_us <= time_us:
            k = i
    return k


cdef inline int32_t tap_rider_category(TapVer* tv, uint16_t code) noexcept nogil:
    if code < tv.n_codes:
        return tv.rider_category_of_code[code]
    return tv.ft.n_cat


cdef inline bint tap_mask(const uint8_t* m, int32_t width, int32_t row, int32_t i) noexcept nogil:
    """m[row][i]; a leg of no network (i < 0) matches no cap or tier."""
    if i < 0 or i >= width:
        return False
    return m[<int64_t>row * width + i] != 0


cdef int64_t tap_local_day(TapVer* tv, int64_t time_us) noexcept nogil:
    """Service day of an instant in the system's timezone 0 (ReferenceEvaluator.local_day)."""
    cdef const FareTab* t = tv.ft
    cdef int32_t lo = t.tz_ptr[0], hi = t.tz_ptr[1], mid
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if t.tz_from_us[mid] <= time_us:
            lo = mid
        else:
            hi = mid
    return floordiv64(floordiv64(time_us, US_PER_S_C) + t.tz_offset_s[lo] - tv.day_start_s, S_PER_DAY_C)


cdef int64_t tap_month_of_day(int64_t z) noexcept nogil:
    """year * 12 + month - 1 of a day number since 1970-01-01 (Hinnant's civil_from_days)."""
    cdef int64_t era, doe, yoe, y, doy, mp, m
    z += 719468
    era = floordiv64(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return y * 12 + m - 1


cdef inline int tap_status_result(int status) noexcept nogil:
    if status == FS_UNKNOWN_ROUTE:
        return R_UNKNOWN_ROUTE
    if status == FS_UNKNOWN_STOP:
        return R_UNKNOWN_STOP
    return R_FARE_NOT_FOUND


# ---------------------------------------------------------------- rules

cdef int64_t tap_discount(Taps* tp, Journey* j, int32_t v, int64_t when_us, int32_t net,
                          int32_t cat, int64_t fare, uint32_t* flags) noexcept nogil:
    """Tiers then caps (rule 4); updates j's counters (a candidate copy)."""
    cdef TapVer* tv = &tp.vers[v]
    cdef int32_t k, kind, n_tu = 0, n_cu = 0
    cdef int32_t tiers_used[FARE_TIERS_MAX_C]
    cdef int32_t caps_used[FARE_CAPS_MAX_C]
    cdef int64_t caps_key[FARE_CAPS_MAX_C]
    cdef int64_t caps_spent[FARE_CAPS_MAX_C]
    cdef int64_t day, month, p, spent, key, remaining, pct = 0
    cdef bint fresh
    CL_ASSERT(fare >= 0, "a fare to discount is not negative")
    if (tv.n_caps == 0 and tv.n_tiers == 0) or fare == 0:
        return fare
    if j.counter_version > v:
        return fare  # rated by an older version than the counters: skip them
    if j.counter_version != v:
        j.counter_version = v
        for k in range(FARE_CAPS_MAX_C):
            j.cap_period[k] = FARE_NONE
            j.cap_spent_fen[k] = 0
        for k in range(FARE_TIERS_MAX_C):
            j.tier_period[k] = FARE_NONE
            j.tier_spent_fen[k] = 0
    day = tap_local_day(tv, when_us)
    month = tap_month_of_day(day)
    for k in range(tv.n_tiers):
        if not (tap_mask(tv.tier_network, tv.tier_network_w, k, net)
                and tap_mask(tv.tier_category, tv.tier_category_w, k, cat)):
            continue
        p = j.tier_period[k]
        if p > month:
            continue
        spent = j.tier_spent_fen[k] if p == month else 0
        tiers_used[n_tu] = k
        n_tu += 1
        if tv.tier_from_fen[k] <= spent < tv.tier_until_fen[k]:
            if tv.tier_percent_off[k] > pct:
                pct = tv.tier_percent_off[k]
    CL_ASSERT(pct <= 100, "a spend tier takes at most 100% off")
    if pct:
        fare -= cl_pct_floor(fare, pct)
        flags[0] |= FD_TIER
    for k in range(tv.n_caps):
        if not (tap_mask(tv.cap_network, tv.cap_network_w, k, net)
                and tap_mask(tv.cap_category, tv.cap_category_w, k, cat)):
            continue
        kind = tv.cap_period[k]
        p = j.cap_period[k]
        if kind == PERIOD_ROLLING_7D_C:
            if p != FARE_NONE and day < p:
                continue
            fresh = p == FARE_NONE or day - 7 >= p
            key = day if fresh else p
        else:
            if kind == PERIOD_DAY_C:
                key = day
            elif kind == PERIOD_WEEK_C:
                key = floordiv64(day + 3, 7)
            else:
                key = month
            if p > key:
                continue
            fresh = p != key
        spent = 0 if fresh else j.cap_spent_fen[k]
        caps_used[n_cu] = k
        caps_key[n_cu] = key
        caps_spent[n_cu] = spent
        n_cu += 1
        if cl_diff_gt(tv.cap_amount_fen[k], spent, 0):
            remaining = tv.cap_amount_fen[k] - spent
        else:
            remaining = 0
        if fare > remaining:
            fare = remaining
            flags[0] |= FD_CAP
    for p in range(n_tu):
        k = tiers_used[p]
        if j.tier_period[k] != month:
            j.tier_period[k] = month
            j.tier_spent_fen[k] = 0
        j.tier_spent_fen[k] += fare
    for p in range(n_cu):
        k = caps_used[p]
        j.cap_period[k] = caps_key[p]
        j.cap_spent_fen[k] = caps_spent[p] + fare
    CL_ASSERT(fare >= 0, "tiers and caps never make a fare negative")
    CL_ASSERT(n_tu <= FARE_TIERS_MAX_C, "a fare counts in at most FARE_TIERS_MAX tiers")
    return fare


cdef int tap_rate_leg(Taps* tp, Journey* j, int32_t v, FareLeg* leg, int32_t cat,
                      int64_t* fare, uint32_t* flags, int32_t* product) noexcept nogil:
    """Code, fare, flags and product of a journey leg (rules 2 and 3); updates j."""
    cdef TapVer* tv = &tp.vers[v]
    cdef FareLeg legs[JOURNEY_LEGS_MAX_C + 1]
    cdef int64_t dep = leg.departure_us, total = 0, f
    cdef uint8_t fl = 0, last_fl = 0  # a tap reports its own leg's discounts (last_fl)
    cdef int32_t prod = FARE_NONE, n, i
    cdef int status
    fare[0] = 0
    flags[0] = 0
    product[0] = FARE_NONE
    if j.n_legs > 0 and dep < j.last_departure_us:
        # late: priced alone, the journey untouched
        status = fare_quote(tv.ft, leg, 1, cat, tv.fare_media, &total, &fl, &prod, &last_fl)
        if status != FS_OK:
            return tap_status_result(status)
        fare[0] = total if total > 0 else 0  # never a refund, as for journey legs
        flags[0] = last_fl
        product[0] = prod
        return R_OK
    if (j.version != v or j.n_legs == 0 or cl_diff_gt(dep, j.last_arrival_us, tv.journey_break_us)
            or j.n_legs >= JOURNEY_LEGS_MAX_C):
        j.version = v
        j.n_legs = 0
        j.charged_fen = 0
    n = j.n_legs
    if tv.ft.additive:
        # The journey's quote with this leg is its quote so far plus this leg's own,
        # and the journey was charged exactly its quote so far (every increment was
        # a leg's own quote, never negative, since its first leg under version v):
        # the increment is this leg's quote. Same figures as the whole quote below,
        # without re-pricing up to JOURNEY_LEGS_MAX legs on every tap.
        status = fare_quote(tv.ft, leg, 1, cat, tv.fare_media, &total, &fl, &prod, &last_fl)
        if status != FS_OK:
            return tap_status_result(status)
        f = total
    else:
        for i in range(n):
            legs[i] = j.legs[i]
        legs[n] = leg[0]
        status = fare_quote(tv.ft, legs, n + 1, cat, tv.fare_media, &total, &fl, &prod, &last_fl)
        if status != FS_OK:
            return tap_status_result(status)
        f = total - j.charged_fen
        if f < 0:
            f = 0
    CL_ASSERT(f >= 0, "a journey leg is never charged a refund")
    CL_ASSERT(n < JOURNEY_LEGS_MAX_C, "a journey has at most JOURNEY_LEGS_MAX legs")
    j.legs[n] = leg[0]
    j.n_legs = n + 1
    j.charged_fen += f
    j.last_departure_us = dep
    j.last_arrival_us = leg.arrival_us
    fare[0] = f
    flags[0] = last_fl
    product[0] = prod
    return R_OK


cdef int64_t tap_settle_entry(State* st, Journey* j, Account* card, Account* opr,
                              int64_t charge) noexcept nogil:
    """Post an open entry's hold with `charge` (any excess debited directly).

    Returns the part taken from the subsidy purse. Clears the entry.
    """
    cdef Pending* pp = pending_find(st, j.entry_source, j.entry_seq)
    cdef Pending p
    cdef int64_t sub = 0, extra = charge, posted
    CL_ASSERT(charge >= 0, "an entry is settled with a charge, never a refund")
    if pp != NULL and pp.debit_id == card.id and pp.credit_id == opr.id:
        p = pp[0]
        posted = charge if charge < p.amount_fen else p.amount_fen
        sub += release(st, &p, posted)
        pending_del(st, pending_find(st, p.source, p.seq))
        extra = charge - posted
    if extra:
        sub += move(st, card, opr, extra, DRAW_ORDER, False)
    j.entry_version = FARE_NONE
    j.entry_route = 0
    j.entry_stop = 0
    j.entry_time_us = 0
    j.entry_source = 0
    j.entry_seq = 0
    CL_ASSERT(sub >= 0, "the subsidy part of a charge is not negative")
    CL_ASSERT(sub <= charge, "the subsidy part of a charge is at most the charge")
    return sub


cdef inline int tap_operator(State* st, uint64_t account_id, Account** out) noexcept nogil:
    cdef Account* a = account_get(st, account_id) if account_id else NULL
    if a == NULL or a.kind != A_OPERATOR:
        return R_OPERATOR_NOT_FOUND
    if a.flags & AF_CLOSED:
        return R_ACCOUNT_CLOSED
    out[0] = a
    return R_OK


cdef inline int tap_entry_gate(Taps* tp, Journey* j, TapVer** ett, int32_t* enet) noexcept nogil:
    """(version tables, network) of the card's open entry.

    The guard only matters for fare state that no tap could have produced (loaded
    journeys naming a version or route that is not installed), where the reference
    raises IndexError: the core refuses the tap instead of reading out of bounds.
    """
    cdef TapVer* tv
    if j.entry_version < 0 or j.entry_version >= tp.n_vers:
        return R_NO_FARE_SYSTEM
    tv = &tp.vers[j.entry_version]
    if j.entry_route < 0 or j.entry_route >= tv.ft.n_routes:
        return R_NO_FARE_SYSTEM
    enet[0] = tv.ft.route_network[j.entry_route]
    if enet[0] < 0:
        return R_NO_FARE_SYSTEM
    ett[0] = tv
    return R_OK


cdef int tap_settle_due(Taps* tp, Journey* j, int64_t now) noexcept nogil:
    """BOARD: R_SETTLE_FIRST_C when the card's open entry has timed out (rule 9)."""
    cdef TapVer* ett = NULL
    cdef int32_t enet = 0
    cdef int code = tap_entry_gate(tp, j, &ett, &enet)
    if code != R_OK:
        return code
    if cl_diff_gt(now, j.entry_time_us, ett.gate_timeout_us[enet]):
        return R_SETTLE_FIRST_C
    return R_OK


cdef inline int tap_ok(Effect* ef, int64_t amount, Account* card, Account* opr,
                       int64_t sub, uint32_t flags) noexcept nogil:
    set_effect(ef, amount, available(card), card, opr, sub)
    ef.discounts = flags
    return R_OK


# ---------------------------------------------------------------- the handler

cdef int op_tap(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    """Execute one TAP op (spec: taps.op_tap, check for check)."""
    cdef Taps* tp = st.taps
    cdef uint16_t tap = op.tap
    cdef int64_t amount = op.amount_fen
    cdef uint64_t aid = op.account_id
    cdef Account* card
    cdef Account* opr = NULL
    cdef int64_t now = op.time_us
    cdef int32_t v, net, mode, cat, ecat, enet = 0, product = FARE_NONE
    cdef int64_t jidx, charge, fare, sub, hold, held_back, allowance, hold_sub
    cdef uint32_t flags = 0
    cdef int code, positive
    cdef Journey j
    cdef TapVer* tv
    cdef TapVer* ett = NULL
    cdef const FareTab* t
    cdef FareLeg leg
    cdef Pending* pp
    cdef Pending p
    cdef int64_t route, stop
    if tap < TAP_BOARD or tap > TAP_SWEEP:
        return R_INVALID_TAP
    if op.time_us < 0 or op.time_us > ((<int64_t>1) << 57):  # schema.TAP_TIME_US_MAX
        return R_INVALID_TAP
    if op.time_us > st.tap_horizon_us:
        return R_TAP_TIME_IN_FUTURE
    if amount < 0 or amount > AMOUNT_MAX_FEN:
        return R_INVALID_AMOUNT
    if aid == 0:
        return R_INVALID_ACCOUNT_ID
    card = account_get(st, aid)
    if card == NULL:
        return R_ACCOUNT_NOT_FOUND
    if card.kind != A_CARD:
        return R_WRONG_ACCOUNT_KIND
    if card.flags & AF_CLOSED:
        return R_ACCOUNT_CLOSED
    if card.flags & AF_FROZEN:
        return R_ACCOUNT_FROZEN
    if card.flags & AF_INACTIVE:
        return R_ACCOUNT_INACTIVE
    v = tap_version_at(tp, now)
    if v == FARE_NONE:
        return R_NO_FARE_SYSTEM
    jidx = journey_find(tp, aid)
    if jidx >= 0:
        j = tp.journeys[jidx]
    else:
        if journey_reserve(tp, st.n_accounts) != 0:
            st.oom = 1
            return R_OVERFLOW
        journey_init(&j, aid)

    if tap == TAP_SWEEP:
        if op.route or op.stop:
            return R_INVALID_TAP
        if amount:
            return R_INVALID_AMOUNT
        if j.entry_version == FARE_NONE:
            return tap_ok(ef, 0, card, NULL, 0, 0)
        code = tap_entry_gate(tp, &j, &ett, &enet)
        if code != R_OK:
            return code
        if not cl_diff_gt(now, j.entry_time_us, ett.gate_timeout_us[enet]):
            return tap_ok(ef, 0, card, NULL, 0, 0)
        code = tap_operator(st, ett.route_operator[j.entry_route], &opr)
        if code != R_OK:
            return code
        charge = ett.gate_incomplete_fen[enet]
        sub = tap_settle_entry(st, &j, card, opr, charge)
        journey_store(tp, jidx, &j)
        return tap_ok(ef, charge, card, opr, sub, 0)

    tv = &tp.vers[v]
    t = tv.ft
    route = op.route
    stop = op.stop
    if route >= t.n_routes or not t.route_known[route]:
        return R_UNKNOWN_ROUTE
    if stop >= t.n_stops or not t.stop_known[stop]:
        return R_UNKNOWN_STOP
    net = t.route_network[route]
    mode = tv.network_mode[net] if net >= 0 else MODE_JOURNEY_C
    if (mode == MODE_GATED_C) != (tap == TAP_ENTRY or tap == TAP_EXIT):
        return R_INVALID_TAP
    if (mode == MODE_METERED_C) != (amount > 0):
        return R_INVALID_AMOUNT
    code = tap_operator(st, tv.route_operator[route], &opr)
    if code != R_OK:
        return code
    cat = tap_rider_category(tv, category_at(card, now))

    if tap == TAP_BOARD:
        if j.entry_version != FARE_NONE and st.settle_on:
            code = tap_settle_due(tp, &j, now)
            if code != R_OK:
                return code  # (R_SETTLE_FIRST_C: rule 9, the batch settles the entry, then taps again)
        leg.route = <int32_t>route
        leg.from_stop = <int32_t>stop
        leg.to_stop = <int32_t>stop
        leg.reserved = 0
        leg.departure_us = now
        leg.arrival_us = now
        if mode == MODE_METERED_C:
            fare = amount
            flags = 0
            product = FARE_NONE
        else:
            code = tap_rate_leg(tp, &j, v, &leg, cat, &fare, &flags, &product)
            if code != R_OK:
                return code
        fare = tap_discount(tp, &j, v, now, net, cat, fare, &flags)
        if product != FARE_NONE:
            allowance = tv.product_allowance_fen[product]
        else:
            allowance = tv.network_allowance_fen[net]
        if cl_sum_lt(available(card), allowance, fare):
            return R_INSUFFICIENT_FUNDS
        sub = move(st, card, opr, fare, DRAW_ORDER, False) if fare else 0
        CL_ASSERT(not cl_sum_lt(available(card), allowance, 0), "a BOARD tap leaves a card no further below zero than its allowance")
        CL_ASSERT(card.subsidy_fen >= 0, "a tap never takes a subsidy purse below zero")
        journey_store(tp, jidx, &j)
        return tap_ok(ef, fare, card, opr, sub, flags)

    if j.entry_version != FARE_NONE:
        code = tap_entry_gate(tp, &j, &ett, &enet)
        if code != R_OK:
            return code
        if ett.route_operator[j.entry_route] != opr.id:
            if st.settle_on and cl_diff_gt(now, j.entry_time_us, ett.gate_timeout_us[enet]):
                return R_SETTLE_FIRST_C  # rule 9: the batch settles the entry, then taps again
            return R_INVALID_TAP

    if tap == TAP_ENTRY:
        charge = 0
        held_back = 0
        if j.entry_version != FARE_NONE:
            charge = ett.gate_incomplete_fen[enet]
            pp = pending_find(st, j.entry_source, j.entry_seq)
            if pp != NULL and pp.debit_id == aid and pp.credit_id == opr.id:
                held_back = pp.amount_fen
        hold = cl_hold(tv.gate_max_fare_fen[net], available(card), held_back, charge,
                       tv.network_allowance_fen[net], &positive)
        if not positive:
            return R_INSUFFICIENT_FUNDS
        CL_ASSERT(hold > 0, "an entry holds a positive amount")
        CL_ASSERT(hold <= tv.gate_max_fare_fen[net], "an entry holds at most the network's maximum fare")
        sub = tap_settle_entry(st, &j, card, opr, charge) if j.entry_version != FARE_NONE else 0
        touch(st, card)
        touch(st, opr)
        hold_sub = draw_purses(card, hold, DRAW_ORDER)
        card.debits_pending += hold
        opr.credits_pending += hold
        p.source = op.source
        p.seq = op.seq
        p.debit_id = aid
        p.credit_id = opr.id
        p.amount_fen = hold
        p.subsidy_fen = hold_sub
        p.credit_subsidy = 0
        p.journal_seq = jseq
        pending_add(st, &p)
        j.entry_version = v
        j.entry_route = <int32_t>route
        j.entry_stop = <int32_t>stop
        j.entry_time_us = now
        j.entry_source = op.source
        j.entry_seq = op.seq
        CL_ASSERT(pending_find(st, op.source, op.seq) != NULL, "an entry's hold is keyed by the entry's id")
        CL_ASSERT(card.debits_pending >= hold, "a card's debits_pending includes its entry's hold")
        journey_store(tp, jidx, &j)
        return tap_ok(ef, charge, card, opr, sub, 0)

    # EXIT
    flags = 0
    if j.entry_version == FARE_NONE:
        charge = tv.gate_incomplete_fen[net]
    else:
        if now < j.entry_time_us:
            return R_INVALID_TAP
        if cl_diff_gt(now, j.entry_time_us, ett.gate_timeout_us[enet]):
            charge = ett.gate_incomplete_fen[enet]
        elif (ett.gate_same_station_fen[enet] >= 0 and stop < ett.ft.n_stops
              and j.entry_stop >= 0 and j.entry_stop < ett.ft.n_stops
              and ett.ft.stop_station[j.entry_stop] == ett.ft.stop_station[stop]):
            charge = ett.gate_same_station_fen[enet]
            ecat = tap_rider_category(ett, category_at(card, j.entry_time_us))
            charge = tap_discount(tp, &j, j.entry_version, j.entry_time_us, enet, ecat, charge, &flags)
        else:
            leg.route = j.entry_route
            leg.from_stop = j.entry_stop
            leg.to_stop = <int32_t>stop
            leg.reserved = 0
            leg.departure_us = j.entry_time_us
            leg.arrival_us = now
            ecat = tap_rider_category(ett, category_at(card, j.entry_time_us))
            code = tap_rate_leg(tp, &j, j.entry_version, &leg, ecat, &charge, &flags, &product)
            if code != R_OK:
                return code
            charge = tap_discount(tp, &j, j.entry_version, j.entry_time_us, enet, ecat, charge, &flags)
    sub = tap_settle_entry(st, &j, card, opr, charge)
    CL_ASSERT(j.entry_version == FARE_NONE, "an exit leaves no open entry")
    CL_ASSERT(card.subsidy_fen >= 0, "a tap never takes a subsidy purse below zero")
    journey_store(tp, jidx, &j)
    return tap_ok(ef, charge, card, opr, sub, flags)


# ---------------------------------------------------------------- REVERSE

cdef enum:
    REVERSED_TIER_SHIFT_C = 8  # spec taps.REVERSED_TIER_SHIFT


cdef uint32_t reversal_mask(Taps* tp, Journey* j, ReverseRef* ref, Account* card) noexcept nogil:
    """The counters of j still holding what the tap `ref` added (spec: _reversal_mask)."""
    cdef int64_t when, day, month, key, p
    cdef uint32_t route, mask = 0
    cdef int32_t v, net, cat, k, kind
    cdef TapVer* tv
    cdef bint held
    if ref.tap == TAP_BOARD:
        when = ref.time_us
        route = ref.route
    elif ref.tap == TAP_EXIT and ref.entry_found:
        when = ref.entry_time_us
        route = ref.entry_route
    else:
        return 0  # an ENTRY's or SWEEP's charge is an incomplete charge: never counted
    v = tap_version_at(tp, when)
    if v == FARE_NONE or j == NULL or j.counter_version != v:
        return 0
    tv = &tp.vers[v]
    if route >= <uint32_t>tv.ft.n_routes:
        return 0
    net = tv.ft.route_network[route]
    if net < 0:
        return 0
    if ref.tap == TAP_EXIT and cl_diff_gt(ref.time_us, when, tv.gate_timeout_us[net]):
        return 0  # the exit was charged as incomplete: no counter saw it
    cat = tap_rider_category(tv, card.category)
    day = tap_local_day(tv, when)
    month = tap_month_of_day(day)
    for k in range(tv.n_tiers):
        if (tap_mask(tv.tier_network, tv.tier_network_w, k, net)
                and tap_mask(tv.tier_category, tv.tier_category_w, k, cat)
                and j.tier_period[k] == month):
            mask |= (<uint32_t>1) << (REVERSED_TIER_SHIFT_C + k)
    for k in range(tv.n_caps):
        if not (tap_mask(tv.cap_network, tv.cap_network_w, k, net)
                and tap_mask(tv.cap_category, tv.cap_category_w, k, cat)):
            continue
        p = j.cap_period[k]
        kind = tv.cap_period[k]
        if kind == PERIOD_ROLLING_7D_C:
            held = p != FARE_NONE and p <= day and day - 7 < p
        else:
            if kind == PERIOD_DAY_C:
                key = day
            elif kind == PERIOD_WEEK_C:
                key = floordiv64(day + 3, 7)
            else:
                key = month
            held = p == key
        if held:
            mask |= (<uint32_t>1) << k
    CL_ASSERT(mask < ((<uint32_t>1) << (REVERSED_TIER_SHIFT_C + FARE_TIERS_MAX_C)), "a reversal mask names only counters")
    return mask


cdef void take_back(Journey* j, uint32_t mask, int64_t amount) noexcept nogil:
    """Take amount back from the counters of mask, never below zero (spec: _take_back)."""
    cdef int32_t k
    for k in range(FARE_CAPS_MAX_C):
        if (mask >> k) & 1:
            j.cap_spent_fen[k] = j.cap_spent_fen[k] - amount if j.cap_spent_fen[k] > amount else 0
    for k in range(FARE_TIERS_MAX_C):
        if (mask >> (REVERSED_TIER_SHIFT_C + k)) & 1:
            j.tier_spent_fen[k] = j.tier_spent_fen[k] - amount if j.tier_spent_fen[k] > amount else 0


cdef int op_reverse(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    """Execute one REVERSE op (spec: taps.op_reverse, check for check)."""
    cdef Taps* tp = st.taps
    cdef Account* card
    cdef Account* opr = NULL
    cdef ReverseRef* ref
    cdef Pending* pp
    cdef Pending mark
    cdef uint64_t aid = op.account_id, opr_id
    cdef int64_t amount, sub, cash, jidx
    cdef uint32_t mask = 0
    cdef Journey* jp = NULL
    if (op.counterparty_id or op.limit_fen or op.account_kind or op.category or op.route
            or op.stop or op.tap or op.pad16 or op.pad32 or op.ref_source == 0):
        return R_INVALID_REVERSE
    if op.time_us < 0 or op.time_us > ((<int64_t>1) << 57):  # schema.TAP_TIME_US_MAX
        return R_INVALID_REVERSE
    if aid == 0:
        return R_INVALID_ACCOUNT_ID
    card = account_get(st, aid)
    if card == NULL:
        return R_ACCOUNT_NOT_FOUND
    if card.kind != A_CARD:
        return R_WRONG_ACCOUNT_KIND
    if card.flags & AF_CLOSED:
        return R_ACCOUNT_CLOSED
    jidx = journey_find(tp, aid)
    if jidx >= 0:
        jp = &tp.journeys[jidx]
    if not st.reverse_replay_on:
        # the batch's refs row of this op (apply_batch keeps the batch's first op)
        ref = &st.batch_refs[op - st.batch_ops] if st.batch_refs != NULL else NULL
        if ref == NULL or ref.status == REF_NOT_FOUND_C:
            return R_TAP_NOT_FOUND
        pp = pending_find(st, op.ref_source, op.ref_seq)
        if pp != NULL and pp.debit_id == 0:
            return R_TAP_ALREADY_REVERSED
        if ref.status != REF_TAP_C or ref.account_id != aid or pp != NULL:
            return R_TAP_NOT_REVERSIBLE  # (pp: an entry whose hold is still open)
        opr_id = ref.operator_id
        amount = ref.amount_fen
        sub = ref.subsidy_fen
        if amount:
            mask = reversal_mask(tp, jp, ref, card)
    else:
        opr_id = st.reverse_replay_operator
        amount = st.reverse_replay_amount
        sub = st.reverse_replay_subsidy
        mask = st.reverse_replay_mask
    if amount:
        opr = account_get(st, opr_id)
        if opr == NULL or opr.kind != A_OPERATOR:
            return R_OPERATOR_NOT_FOUND
        if opr.flags & AF_CLOSED:
            return R_ACCOUNT_CLOSED
        if opr.flags & AF_FROZEN:
            return R_ACCOUNT_FROZEN
        if opr.cash_fen < amount:
            return R_INSUFFICIENT_FUNDS
        cash = amount - sub
        if cash and cl_sum_lt(card.cap_fen - card.debits_pending - card.credits_pending, 0, card.cash_fen + cash):
            return R_EXCEEDS_CAP
        if opr.debits_posted > INT64_MAX_ - amount or card.credits_posted > INT64_MAX_ - amount:
            return R_OVERFLOW
        if cl_diff_gt(card.cash_fen + card.subsidy_fen, INT64_MAX_ - amount, 0):
            return R_OVERFLOW
        touch(st, opr)
        touch(st, card)
        opr.cash_fen -= amount
        opr.debits_posted += amount
        card.credits_posted += amount
        card.subsidy_fen += sub
        card.cash_fen += cash
    if mask and jp != NULL:
        cow_before_write(tp.cow, jidx)
        take_back(&tp.journeys[jidx], mask, amount)
    # The tap's id stays in the holds table as a hold of nothing: its reversed mark.
    memset(&mark, 0, sizeof(Pending))
    mark.source = op.ref_source
    mark.seq = op.ref_seq
    mark.journal_seq = jseq
    pending_add(st, &mark)
    CL_ASSERT(pending_find(st, op.ref_source, op.ref_seq) != NULL, "a reversed tap is marked")
    CL_ASSERT(card.subsidy_fen >= 0, "a reversal never takes a subsidy purse below zero")
    set_effect(ef, amount, available(card), opr, card, sub)
    ef.discounts = mask
    return R_OK
