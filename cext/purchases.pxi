# PURCHASE and REFUND (twin of engine/spec/purchases.py; docs/purchases.md): the same
# decision over the compiled offer tables, the same order of checks, the same state
# (each slot's use, the cards' counters per offer, the purchases refunded so far),
# changed through the undo log so a failed chain rolls it back. A REFUND reads its
# purchase from the purchase's journal record: in the decisions window, or found by
# the ledger before the batch (State.batch_bought); a replayed REFUND reads its own.

cdef extern from *:
    """
    /* schema.NOT_COUNTED: a purchase's day and month when its card's counters did not count it */
    #define CL_NOT_COUNTED (-((int64_t)1 << 62))
    /* floor(a * b / c) for a, b >= 0, c > 0, exactly: the product may pass 64 bits
       (then 128-bit arithmetic; else one 64-bit division). */
    static inline int64_t cl_mul_div(int64_t a, int64_t b, int64_t c) {
        uint64_t p;
        if (__builtin_expect(!__builtin_mul_overflow((uint64_t)a, (uint64_t)b, &p), 1))
            return (int64_t)(p / (uint64_t)c);
        return (int64_t)(((unsigned __int128)(uint64_t)a * (unsigned __int128)(uint64_t)b) / (unsigned __int128)(uint64_t)c);
    }
    /* floor(a * bp / 10000) for a, bp >= 0, exactly: cl_mul_div by basis points, the
       divisor a constant the compiler turns into a multiply (an amount times at most
       10000 bp fits 64 bits unsigned: schema.AMOUNT_MAX_FEN * 10000 < 2^64). */
    static inline int64_t cl_mul_bp(int64_t a, int64_t bp) {
        uint64_t p;
        if (__builtin_expect(!__builtin_mul_overflow((uint64_t)a, (uint64_t)bp, &p), 1))
            return (int64_t)(p / 10000u);
        return (int64_t)(((unsigned __int128)(uint64_t)a * (unsigned __int128)(uint64_t)bp) / 10000u);
    }
    /* An offer's discount before the card's and budget's limits (spec offer_discount):
       percent off plus amount_off * times, cut to cap (if set) and to the gross; exact
       (128 bits when the sum would pass 64). */
    static inline int64_t cl_offer_discount(int64_t gross, int64_t pct, int64_t amount_off, int64_t times,
                                            int64_t cap) {
        int64_t off, d;
        if (__builtin_expect(__builtin_mul_overflow(amount_off, times, &off)
                             || __builtin_add_overflow(cl_mul_bp(gross, pct), off, &d), 0)) {
            __int128 w = (__int128)cl_mul_bp(gross, pct) + (__int128)amount_off * (__int128)times;
            if (cap && w > cap) w = cap;
            if (w > gross) w = gross;
            return (int64_t)w;
        }
        if (cap && d > cap) d = cap;
        if (d > gross) d = gross;
        return d;
    }
    """
    int64_t CL_NOT_COUNTED
    int64_t cl_mul_div(int64_t a, int64_t b, int64_t c) noexcept nogil
    int64_t cl_mul_bp(int64_t a, int64_t bp) noexcept nogil
    int64_t cl_offer_discount(int64_t gross, int64_t pct, int64_t amount_off, int64_t times, int64_t cap) noexcept nogil

cdef enum:
    BP_WHOLE_C = 10000
    MINUTE_US_C = 60000000
    NO_OFFER_C = -1
    # offer_decide gathers the candidates in force in chunks of this many, in a pool (on
    # the stack) with room for as many more that offer_pick lets join
    DECIDE_CHUNK_C = 32
    DECIDE_POOL_C = 64

# A slot past this in a loaded state is refused, not allocated for: offers get slots in
# the order their ids first appear, and no ledger installs 2^31 distinct ids. (A Python
# int: a C enum could not hold it.)
OFFER_SLOTS_MAX = 1 << 31


# What a purchase would do: the version and offer row, its slot, D, U, the local day and month.
cdef struct Decision:
    int32_t v
    int64_t i
    OfferRow* w     # the row decided by (in the cache: op_purchase reads it, not rows[i])
    int64_t slot
    int64_t d
    int64_t u
    int64_t day
    int64_t month


cdef int offers_init_state(Offers* o) noexcept nogil:
    """Fresh empty maps after offers_free_state (the versions are kept)."""
    o.cmap = <Slot2*>calloc(MAP_SLOTS_INITIAL, sizeof(Slot2))
    o.bmap = <Slot2*>calloc(MAP_SLOTS_INITIAL, sizeof(Slot2))
    if o.cmap == NULL or o.bmap == NULL:
        return -1
    o.cmap_mask = MAP_SLOTS_INITIAL - 1
    o.bmap_mask = MAP_SLOTS_INITIAL - 1
    return 0



cdef int offers_init(Offers* o) noexcept nogil:
    memset(o, 0, sizeof(Offers))
    return offers_init_state(o)


cdef void offers_free_state(Offers* o) noexcept nogil:
    """Free the state (not the versions)."""
    free(o.slots)
    free(o.cards)
    free(o.cmap)
    free(o.buys)
    free(o.bmap)
    o.slots = NULL
    o.cap_budget = 0
    o.cards = NULL
    o.n_cards = o.cap_cards = 0
    o.cmap = NULL
    o.cmap_used = 0
    o.buys = NULL
    o.n_buys = o.cap_buys = 0
    o.bmap = NULL
    o.bmap_used = 0


cdef int offers_budget_room(Offers* o, int64_t n) noexcept nogil:
    """Room for slots 0..n-1 in slots (new slots at 0)."""
    cdef SlotUse* q
    if n <= o.cap_budget:
        return 0
    q = <SlotUse*>realloc(o.slots, n * sizeof(SlotUse))
    if q == NULL:
        return -1
    memset(q + o.cap_budget, 0, (n - o.cap_budget) * sizeof(SlotUse))
    o.slots = q
    o.cap_budget = n
    return 0


# ---------------------------------------------------------------- local time

cdef inline int64_t floormod64(int64_t a, int64_t b) noexcept nogil:
    return a - floordiv64(a, b) * b


cdef inline void offer_local_time(OfferVer* t, int64_t time_us, int64_t* day, int64_t* minute,
                                  int64_t* weekday, int64_t* month) noexcept nogil:
    """Local day number, minute of the day, ISO weekday and month at time_us (spec local_time)."""
    cdef int64_t lo = 0, hi = t.n_tz, mid, off = 0
    cdef int64_t day_us = <int64_t>S_PER_DAY_C * <int64_t>US_PER_S_C
    cdef int64_t local_us
    # the last transition at or before time_us (the first one if none is)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if t.tz_from_us[mid] <= time_us:
            lo = mid
        else:
            hi = mid
    if t.n_tz:
        off = t.tz_offset_s[lo]
    local_us = time_us + off * <int64_t>US_PER_S_C
    day[0] = floordiv64(local_us, day_us)
    minute[0] = (local_us - day[0] * day_us) // MINUTE_US_C
    weekday[0] = floormod64(day[0] + 3, 7) + 1
    month[0] = tap_month_of_day(day[0])


# ---------------------------------------------------------------- the decision

cdef inline bint offer_in_force(OfferVer* t, OfferRow* w, int64_t day, int64_t minute, int64_t weekday,
                                int64_t cat) noexcept nogil:
    cdef int64_t h, found
    if not (w.from_day <= day <= w.to_day):
        return False
    if not ((w.dow_mask >> (weekday - 1)) & 1):
        return False
    found = 0
    for h in range(w.hour_lo, w.hour_hi):
        if t.hour_start[h] <= minute < t.hour_end[h]:
            found = 1
            break
    if not found:
        return False
    if not w.cat_all:
        found = 0
        for h in range(w.cat_lo, w.cat_hi):
            if t.cats[h] == cat:
                found = 1
                break
        if not found:
            return False
    return True


cdef inline CardOffer* card_offer_find(Offers* o, uint64_t card_id, int64_t slot) noexcept nogil:
    cdef int64_t k = map2_find(o.cmap, o.cmap_mask, card_id, <uint64_t>slot)
    return NULL if k < 0 else &o.cards[k]


cdef inline int offer_at(Offers* o, int64_t time_us) noexcept nogil:
    """Index of the version in force at time_us (-1: none)."""
    cdef int k = o.n_vers - 1
    while k >= 0 and o.vers[k].start_us > time_us:
        k -= 1
    return k


cdef inline int64_t offer_bound(Offers* o, OfferRow* w, int64_t gross) noexcept nogil:
    """An offer's discount on `gross` before the card's limits: spec offer_discount cut
    to what is left of its budget. What it gives a card is at most this, and exactly
    this for an offer that limits no card."""
    cdef int64_t d, times
    if gross < w.min_gross_fen:
        return 0
    times = gross // w.every_fen if w.every_fen else 1
    d = cl_offer_discount(gross, w.percent_off_bp, w.amount_off_fen, times, w.max_discount_fen)
    if w.budget_fen and w.budget_fen - o.slots[w.slot].used_fen < d:
        d = w.budget_fen - o.slots[w.slot].used_fen
    return d


cdef void offer_consider(State* st, OfferRow* w, const Account* card, int64_t d,
                         int64_t day, int64_t month, Decision* best) noexcept nogil:
    """One candidate of spec decide's loop, in force, `d` its offer_bound: cut it to the
    card's limits and replace `best` if it gives more, or as much and is listed first."""
    cdef Offers* o = st.offers
    cdef int64_t used, limit
    cdef CardOffer* c
    cdef Account* union_acct
    cdef int64_t i = w.row
    cdef int64_t u
    if w.day_count or w.month_discount_fen:
        # the card's counters are read (a hash probe, a cache miss) only for an offer that limits cards
        c = card_offer_find(o, card.id, w.slot)
        limit = w.day_count
        # The counters hold the card's latest day and month with this offer: a purchase dated
        # before them (a late upload, or after a purchase dated ahead) cannot be counted in
        # its own day or month, so a limited offer gives it nothing (spec decide).
        if limit and c != NULL and (c.day > day or (c.day == day and c.day_count >= limit)):
            return
        limit = w.month_discount_fen
        if limit:
            if c != NULL and c.month > month:
                used = limit
            else:
                used = c.month_discount_fen if c != NULL and c.month == month else 0
            if limit - used < d:
                d = limit - used
    if d <= 0 or d < best.d or (d == best.d and i > best.i):
        return  # nothing to give, less than best, or as much as an offer listed before it
    u = cl_mul_bp(d, w.union_share_bp)
    if u:
        union_acct = account_get(st, w.union_account)
        if (union_acct == NULL or union_acct.kind != A_SUBSIDY or (union_acct.flags & (AF_CLOSED | AF_FROZEN))
                or union_acct.cash_fen < u):
            return
    best.i = i
    best.w = w
    best.slot = w.slot
    best.d = d
    best.u = u


cdef inline int64_t percent_bound(PercentOffer* q, int64_t gross) noexcept nogil:
    """What an offer with a percent off only can give on `gross` at most (its
    offer_bound, before its minimum, cap and budget)."""
    cdef int64_t d = cl_mul_bp(gross, q.percent_off_bp)
    return gross if d > gross else d


cdef void offer_pick(State* st, OfferVer* t, const Account* card, int64_t gross, OfferRow** cand,
                     int64_t* bound, int n, int64_t* p, int64_t day, int64_t minute, int64_t weekday,
                     int64_t month, int64_t cat, Decision* best) noexcept nogil:
    """Decide among n gathered candidates in force (cand: rows; bound: each one's
    offer_bound, > 0), every merchant's percent-only offers from t.pct_offers[p:] on, and
    `best`. Spec decide takes the largest D, the first listed among equals, of the
    candidates whose union account can pay; D is at most the bound. So the candidates
    are cut exactly (the card's counters, the union account) from the largest bound
    down, only while a bound could still win; the percent-only offers, whose bounds
    fall along t.pct_offers, join the gathered ones only once theirs could be the
    largest. Up to DECIDE_POOL_C - n may join; any more are cut at once."""
    cdef int j, k
    cdef int64_t top, s, i, d
    cdef OfferRow* w
    while True:
        k = -1
        top = 0
        for j in range(n):  # the largest bound left, the first listed among equals
            if bound[j] > top or (bound[j] == top and top > 0 and cand[j].row < cand[k].row):
                top = bound[j]
                k = j
        if p[0] < t.n_pct:
            s = percent_bound(&t.pct_offers[p[0]], gross)
            if s <= 0 or s < best.d:
                p[0] = t.n_pct  # no percent-only offer left can give more than best
            elif s >= top:  # the next one could be the largest: its true bound
                i = t.pct_offers[p[0]].row
                p[0] += 1
                w = &t.rows[i]
                if offer_in_force(t, w, day, minute, weekday, cat):
                    d = offer_bound(st.offers, w, gross)
                    if d > 0 and n < DECIDE_POOL_C:
                        cand[n] = w
                        bound[n] = d
                        n += 1
                    elif d > 0:
                        offer_consider(st, w, card, d, day, month, best)
                continue
        # Every candidate left is bounded by top (those not joined yet: below it). A bound
        # equal to best's, listed after it, cannot win: nor can the others left with that
        # bound, listed after this one.
        if k < 0 or top < best.d or (top == best.d and cand[k].row > best.i):
            return
        bound[k] = 0
        offer_consider(st, cand[k], card, top, day, month, best)


cdef bint offer_decide_agrees(State* st, OfferVer* t, const Account* card, int64_t a, int64_t a_end,
                              int64_t gross, int64_t day, int64_t minute, int64_t weekday, int64_t month,
                              int64_t cat, Decision* best) noexcept nogil:
    """Debug check of offer_decide's pruning: every candidate cut exactly, in catalog
    order (spec decide's loop), decides the same offer, D and U."""
    cdef Decision full
    cdef int64_t b = 0, ia, d
    full.i = -1
    full.slot = NO_OFFER_C
    full.d = 0
    full.u = 0
    while a < a_end or b < t.n_all:
        if b >= t.n_all or (a < a_end and t.merchant_offers[a] < t.all_offers[b]):
            ia = t.merchant_offers[a]
            a += 1
        else:
            ia = t.all_offers[b]
            b += 1
        if offer_in_force(t, &t.rows[ia], day, minute, weekday, cat):
            d = offer_bound(st.offers, &t.rows[ia], gross)
            offer_consider(st, &t.rows[ia], card, d, day, month, &full)
    return full.i == best.i and full.slot == best.slot and full.d == best.d and full.u == best.u


cdef void offer_decide(State* st, const Account* card, uint64_t merchant_id, int64_t gross, int64_t time_us,
                       Decision* best) noexcept nogil:
    """What a PURCHASE would do now (spec decide): the best candidate, or no offer."""
    cdef Offers* o = st.offers
    cdef OfferVer* t
    cdef OfferRow* w
    cdef int64_t day, minute, weekday, month, cat, d
    cdef int64_t a, a0, a_end, b, p = 0
    cdef OfferRow* cand[DECIDE_POOL_C]
    cdef int64_t bound[DECIDE_POOL_C]
    cdef int n = 0
    best.v = -1
    best.i = -1
    best.w = NULL
    best.slot = NO_OFFER_C
    best.d = 0
    best.u = 0
    best.day = 0
    best.month = 0
    best.v = offer_at(o, time_us)
    if best.v < 0 or time_us > ((<int64_t>1) << 57):  # schema.TAP_TIME_US_MAX: no local calendar past it
        best.v = -1
        return
    t = &o.vers[best.v]
    offer_local_time(t, time_us, &day, &minute, &weekday, &month)
    best.day = day
    best.month = month
    cat = category_at(card, time_us)
    # the merchant's own offers and every merchant's but the percent-only ones: those in
    # force that could give something, gathered with their bounds, a chunk at a time
    a0 = merchant_offer_range(t, merchant_id, &a_end)
    a = a0
    b = 0
    while a < a_end or b < t.n_rest:
        if a < a_end:
            w = &t.mrows[a]
            a += 1
        else:
            w = &t.rows[t.rest_offers[b]]
            b += 1
        if not offer_in_force(t, w, day, minute, weekday, cat):
            continue
        d = offer_bound(o, w, gross)
        if d <= 0:
            continue
        cand[n] = w
        bound[n] = d
        n += 1
        if n == DECIDE_CHUNK_C:
            offer_pick(st, t, card, gross, cand, bound, n, &p, day, minute, weekday, month, cat, best)
            n = 0
    offer_pick(st, t, card, gross, cand, bound, n, &p, day, minute, weekday, month, cat, best)
    CL_ASSERT(offer_decide_agrees(st, t, card, a0, a_end, gross, day, minute, weekday, month, cat, best),
              "the pruned decision is the full scan's")


cdef inline MerchantSlot* merchant_slot(OfferVer* t, uint64_t merchant_id) noexcept nogil:
    """The merchant's slot in the version's merchant table (an empty one, lo < 0, if it
    has no offers of its own)."""
    cdef uint64_t h = mix64(merchant_id) & t.mslots_mask
    cdef MerchantSlot* s = &t.mslots[h]
    while s.lo >= 0 and s.id != merchant_id:
        h = (h + 1) & t.mslots_mask
        s = &t.mslots[h]
    return s


cdef inline int64_t merchant_offer_range(OfferVer* t, uint64_t merchant_id, int64_t* end) noexcept nogil:
    """The merchant's own offers: merchant_offers[start:end] (its hash slot; empty if none)."""
    cdef MerchantSlot* s = merchant_slot(t, merchant_id)
    if s.lo < 0:
        end[0] = 0
        return 0
    end[0] = s.hi
    return s.lo


cdef inline void purchase_prefetch_rows(State* st, Op* op) noexcept nogil:
    """Fetch ahead (2 × PREFETCH_DISTANCE) the merchant's slot in the version's
    merchant table (purchase_prefetch reads it)."""
    cdef Offers* o = st.offers
    cdef int v = offer_at(o, op.time_us)
    cdef OfferVer* t
    if v < 0:
        return
    t = &o.vers[v]
    CL_PREFETCH(&t.mslots[mix64(op.counterparty_id) & t.mslots_mask])


cdef inline void purchase_prefetch(State* st, Op* op) noexcept nogil:
    """Fetch ahead (PREFETCH_DISTANCE) what a PURCHASE will read: the rows of the
    merchant's own offers and the card's counters' map slots of those that limit cards
    (the merchant's slot names them)."""
    cdef Offers* o = st.offers
    cdef int v = offer_at(o, op.time_us)
    cdef OfferVer* t
    cdef MerchantSlot* s
    cdef char* p
    cdef char* end
    cdef int32_t j
    if v >= 0:
        t = &o.vers[v]
        s = merchant_slot(t, op.counterparty_id)
        if s.lo >= 0 and s.lo < s.hi:
            p = <char*>&t.mrows[s.lo]
            end = <char*>&t.mrows[s.hi]
            while p < end:
                CL_PREFETCH(p)
                p += 64
            CL_PREFETCH(end - 1)
            for j in range(s.n_limited):
                CL_PREFETCH(&o.cmap[mix128(op.account_id, <uint64_t>s.limited[j]) & o.cmap_mask])


cdef inline void purchase_prefetch_state(State* st, Op* op) noexcept nogil:
    """Fetch ahead (HOLD_PREFETCH_DISTANCE) what a PURCHASE will write, now that the
    merchant's rows and the counters' map slots are in the cache (purchase_prefetch):
    the use of each of the merchant's offers (one of them wins) and the card's counters
    of its limited offers."""
    cdef Offers* o = st.offers
    cdef int v = offer_at(o, op.time_us)
    cdef OfferVer* t
    cdef MerchantSlot* s
    cdef int64_t r, k
    cdef int32_t j
    if v < 0:
        return
    t = &o.vers[v]
    s = merchant_slot(t, op.counterparty_id)
    if s.lo < 0:
        return
    for r in range(s.lo, s.hi):
        if 0 <= t.mrows[r].slot < o.cap_budget:
            CL_PREFETCH(&o.slots[t.mrows[r].slot])
    for j in range(s.n_limited):
        k = map2_find(o.cmap, o.cmap_mask, op.account_id, <uint64_t>s.limited[j])
        if k >= 0:
            CL_PREFETCH(&o.cards[k])


# ---------------------------------------------------------------- undo-logged changes

cdef void slot_set(State* st, int64_t slot, int64_t used_fen, int64_t union_fen, int64_t purchases) noexcept nogil:
    """Store an offer slot's use: discount given, union share, purchases (net of refunds)."""
    undo_push(st, U_BUDGET, slot)
    if st.undo_on and st.oom == 0:
        st.undo[st.n_undo - 1].slot_use = st.offers.slots[slot]
    st.offers.slots[slot].used_fen = used_fen
    st.offers.slots[slot].union_fen = union_fen
    st.offers.slots[slot].purchases = purchases


cdef void card_offer_set(State* st, CardOffer* row) noexcept nogil:
    """Store a card's counters for an offer (new or changed)."""
    cdef Offers* o = st.offers
    cdef int64_t k = map2_find(o.cmap, o.cmap_mask, row.account_id, <uint64_t>row.slot)
    if k >= 0:
        undo_push(st, U_CARD_OFFER, k)
        if st.undo_on and st.oom == 0:
            st.undo[st.n_undo - 1].card_offer = o.cards[k]
        o.cards[k] = row[0]
        return
    if grow(<void**>&o.cards, &o.cap_cards, o.n_cards + 1, sizeof(CardOffer)) != 0:
        st.oom = 1
        return
    if map2_insert(&o.cmap, &o.cmap_mask, &o.cmap_used, row.account_id, <uint64_t>row.slot, o.n_cards) != 0:
        st.oom = 1
        return
    o.cards[o.n_cards] = row[0]
    o.n_cards += 1
    undo_push(st, U_CARD_OFFER_ADD, o.n_cards - 1)


cdef void refunded_set(State* st, uint64_t source, uint64_t seq, int64_t refundable_fen) noexcept nogil:
    """Store what is left to refund of purchase (source, seq) (its first refund adds it)."""
    cdef Offers* o = st.offers
    cdef int64_t k = map2_find(o.bmap, o.bmap_mask, source, seq)
    if k >= 0:
        undo_push(st, U_PURCHASE, k)
        if st.undo_on and st.oom == 0:
            st.undo[st.n_undo - 1].refunded = o.buys[k]
        o.buys[k].refundable_fen = refundable_fen
        return
    if grow(<void**>&o.buys, &o.cap_buys, o.n_buys + 1, sizeof(Refunded)) != 0:
        st.oom = 1
        return
    if map2_insert(&o.bmap, &o.bmap_mask, &o.bmap_used, source, seq, o.n_buys) != 0:
        st.oom = 1
        return
    o.buys[o.n_buys].source = source
    o.buys[o.n_buys].seq = seq
    o.buys[o.n_buys].refundable_fen = refundable_fen
    o.n_buys += 1
    undo_push(st, U_PURCHASE_ADD, o.n_buys - 1)


cdef void offers_undo(State* st, Undo* u) noexcept nogil:
    """Roll back one offer-state entry of the undo log (state.pxi's rollback)."""
    cdef Offers* o = st.offers
    if u.kind == U_BUDGET:
        o.slots[u.idx] = u.slot_use
    elif u.kind == U_CARD_OFFER:
        o.cards[u.idx] = u.card_offer
    elif u.kind == U_CARD_OFFER_ADD:
        CL_ASSERT(u.idx == o.n_cards - 1, "a card's counters added in a chain are the last row")
        map2_delete(o.cmap, o.cmap_mask, &o.cmap_used, o.cards[u.idx].account_id, <uint64_t>o.cards[u.idx].slot)
        o.n_cards -= 1
    elif u.kind == U_PURCHASE:
        o.buys[u.idx] = u.refunded
    elif u.kind == U_PURCHASE_ADD:
        CL_ASSERT(u.idx == o.n_buys - 1, "a purchase first refunded in a chain is the last row")
        map2_delete(o.bmap, o.bmap_mask, &o.bmap_used, o.buys[u.idx].source, o.buys[u.idx].seq)
        o.n_buys -= 1


# ---------------------------------------------------------------- the handlers

cdef inline void offer_counted(CardOffer* c, bint found, uint64_t card_id, int64_t slot, int64_t day,
                               int64_t month, int64_t d) noexcept nogil:
    """spec counted(): a card's counters after a purchase of `day` and `month` got d."""
    if not found:
        c.account_id = card_id
        c.slot = slot
        c.day = day
        c.day_count = 1
        c.month = month
        c.month_discount_fen = d
        return
    if day > c.day:
        c.day = day
        c.day_count = 1
    elif day == c.day:
        c.day_count += 1
    if month > c.month:
        c.month = month
        c.month_discount_fen = d
    elif month == c.month:
        c.month_discount_fen += d


cdef int op_purchase(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    cdef int64_t gross = op.amount_fen, net, paid, sub = 0
    cdef Account* card = NULL
    cdef Account* merchant = NULL
    cdef Account* union_acct = NULL
    cdef Decision dec
    cdef CardOffer row
    cdef CardOffer* c
    cdef SlotUse* su
    cdef int code
    cdef bint counted
    if not amount_ok(gross):
        return R_INVALID_AMOUNT
    code = check_pair(st, op, KM_CARD, 1 << A_MERCHANT, &card, &merchant)
    if code != R_OK:
        return code
    if card.flags & AF_FROZEN:
        return R_ACCOUNT_FROZEN
    if card.flags & AF_INACTIVE:
        return R_ACCOUNT_INACTIVE
    offer_decide(st, card, merchant.id, gross, op.time_us, &dec)
    net = gross - dec.d
    if available(card) < net:
        return R_INSUFFICIENT_FUNDS
    if card.debits_posted > INT64_MAX_ - net:
        return R_OVERFLOW
    paid = net + dec.u
    if merchant.credits_posted > INT64_MAX_ - paid or merchant.cash_fen + merchant.subsidy_fen > INT64_MAX_ - paid:
        return R_OVERFLOW
    if dec.slot != NO_OFFER_C and st.offers.slots[dec.slot].used_fen > INT64_MAX_ - dec.d:
        return R_OVERFLOW
    # a card's counters count the purchases of an offer that limits cards (by day or month)
    counted = dec.slot != NO_OFFER_C and (dec.w.day_count or dec.w.month_discount_fen)
    c = NULL
    if counted:  # (decide read them already: in the cache)
        c = card_offer_find(st.offers, card.id, dec.slot)
        if c != NULL and c.month == dec.month and c.month_discount_fen > INT64_MAX_ - dec.d:
            return R_OVERFLOW
    if dec.u:
        union_acct = account_get(st, dec.w.union_account)
        CL_ASSERT(union_acct != NULL, "the union account of an offer with a union share exists")
        if union_acct.debits_posted > INT64_MAX_ - dec.u:
            return R_OVERFLOW
    CL_ASSERT(0 <= dec.d <= gross, "a discount is at most the gross")
    CL_ASSERT(0 <= dec.u <= dec.d, "the union's share is at most the discount")
    touch(st, card)
    touch(st, merchant)
    if net:
        sub = draw_purses(card, net, DRAW_ORDER)
    card.debits_posted += net
    merchant.credits_posted += paid
    merchant.cash_fen += paid
    if union_acct != NULL:
        touch(st, union_acct)
        union_acct.cash_fen -= dec.u
        union_acct.debits_posted += dec.u
    if dec.slot != NO_OFFER_C:
        su = &st.offers.slots[dec.slot]
        slot_set(st, dec.slot, su.used_fen + dec.d, su.union_fen + dec.u, su.purchases + 1)
    if counted:
        if c != NULL:
            row = c[0]
        offer_counted(&row, c != NULL, card.id, dec.slot, dec.day, dec.month, dec.d)
        card_offer_set(st, &row)
    set_effect(ef, net, available(card), card, merchant, sub)
    ef.discounts = <uint32_t>(dec.slot + 1)
    if union_acct != NULL:  # the third leg: the union account debited U
        ef.union_id = union_acct.id
        ef.union_fen = dec.u
    # what its REFUNDs read back from this record: D, and the day its counters counted
    ef.offer_fen = dec.d
    ef.offer_day = dec.day + 1 if counted else 0
    return R_OK


cdef inline bint purchase_of(const Journal* rec, Purchase* p) noexcept nogil:
    """A successful PURCHASE's journal record, as its REFUNDs need it (spec purchase_of).
    False if it is none, or names what no purchase could (a record from outside)."""
    cdef int64_t net
    if rec == NULL or rec.op.kind != K_PURCHASE or rec.code != R_OK:
        return False
    net = rec.result_amount_fen
    if (not amount_ok(rec.op.amount_fen) or not (0 <= rec.subsidy_fen <= net <= rec.op.amount_fen)
            or not (0 <= rec.union_fen <= rec.op.amount_fen - net) or rec.op.account_id == 0
            or rec.op.counterparty_id == 0 or (rec.union_fen != 0) != (rec.union_id != 0) or rec.offer_day < 0):
        return False
    p.card_id = rec.op.account_id
    p.merchant_id = rec.op.counterparty_id
    p.union_id = rec.union_id
    p.gross_fen = rec.op.amount_fen
    p.subsidy_fen = rec.subsidy_fen
    p.cash_fen = net - rec.subsidy_fen
    p.discount_fen = rec.op.amount_fen - net
    p.union_fen = rec.union_fen
    p.slot = <int64_t>rec.discounts - 1
    purchase_day(p, rec.offer_day)
    return True


cdef inline void purchase_day(Purchase* p, int64_t offer_day) noexcept nogil:
    """The local day and month a record's offer_day names (NOT_COUNTED for 0)."""
    if offer_day > 0:
        p.day = offer_day - 1
        p.month = tap_month_of_day(p.day)
    else:
        p.day = CL_NOT_COUNTED
        p.month = CL_NOT_COUNTED


cdef bint refund_finds(State* st, Op* op, Purchase* p) noexcept nogil:
    """The purchase a REFUND names: its record in the decisions window (this batch's
    included), else the one the ledger found before the batch (batch_bought)."""
    cdef Journal tmp
    cdef Journal* rec = NULL
    cdef int64_t idx = recent_find(st, op.ref_source, op.ref_seq)
    if idx >= 0:
        rec = window_record(st, idx, &tmp)
    elif st.batch_bought != NULL:
        rec = &st.batch_bought[op - st.batch_ops]
        if rec.journal_seq == 0 or rec.op.source != op.ref_source or rec.op.seq != op.ref_seq:
            rec = NULL
    return purchase_of(rec, p)


cdef int op_refund(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    cdef int64_t part = op.amount_fen, k, g, r, r2, sub, cash, u, d, amount, paid, left, offer_day
    cdef Purchase p
    cdef Account* card
    cdef Account* merchant
    cdef Account* union_acct = NULL
    cdef CardOffer* c
    cdef CardOffer row
    cdef SlotUse* su
    cdef Journal* rr = st.refund_replay
    cdef uint16_t flags
    if not amount_ok(part):
        return R_INVALID_AMOUNT
    if rr != NULL and refund_finds(st, op, &p):
        rr = NULL  # a replay whose purchase is in the window decides again, and is checked
    if rr != NULL:
        # A replay of a refund whose purchase lies before the window: its own record
        # says what it moved (spec op_refund); what is left to refund must follow.
        k = map2_find(st.offers.bmap, st.offers.bmap_mask, op.ref_source, op.ref_seq)
        if k >= 0 and st.offers.buys[k].refundable_fen - part != rr.refundable_fen:
            return R_EXCEEDS_REFUNDABLE
        p.card_id = rr.credit_id
        p.merchant_id = rr.debit_id
        p.union_id = rr.union_id
        p.slot = <int64_t>rr.discounts - 1
        offer_day = rr.offer_day
        purchase_day(&p, offer_day)
        amount = rr.result_amount_fen
        sub = rr.subsidy_fen
        cash = amount - sub
        u = rr.union_fen
        d = rr.offer_fen
        left = rr.refundable_fen
        card = account_get(st, p.card_id)
        merchant = account_get(st, p.merchant_id)
        if p.union_id:
            union_acct = account_get(st, p.union_id)
        if (card == NULL or merchant == NULL or (p.union_id and union_acct == NULL) or p.slot >= st.offers.cap_budget
                or p.slot < NO_OFFER_C or not (0 <= sub <= amount) or u < 0 or d < 0 or left < 0):
            return R_PURCHASE_NOT_FOUND
    else:
        if st.refund_replay == NULL and not refund_finds(st, op, &p):  # (a replay found it above)
            return R_PURCHASE_NOT_FOUND
        if st.policy != NULL and not policy_allows_parties(st.policy, op.source, p.card_id, p.merchant_id):
            return R_SOURCE_NOT_ALLOWED
        g = p.gross_fen
        k = map2_find(st.offers.bmap, st.offers.bmap_mask, op.ref_source, op.ref_seq)
        r = g - st.offers.buys[k].refundable_fen if k >= 0 else 0
        if part > g - r:
            return R_EXCEEDS_REFUNDABLE
        card = account_get(st, p.card_id)
        merchant = account_get(st, p.merchant_id)
        if p.union_id:
            union_acct = account_get(st, p.union_id)
        # (a purchase's accounts always exist, unless its record came from outside)
        if card == NULL or merchant == NULL or (p.union_id and union_acct == NULL) or p.slot >= st.offers.cap_budget:
            return R_PURCHASE_NOT_FOUND
        flags = card.flags | merchant.flags
        if union_acct != NULL:
            flags |= union_acct.flags
        if flags & AF_CLOSED:
            return R_ACCOUNT_CLOSED
        if merchant.flags & AF_FROZEN:
            return R_ACCOUNT_FROZEN
        r2 = r + part
        sub = cl_mul_div(p.subsidy_fen, r2, g) - cl_mul_div(p.subsidy_fen, r, g)
        cash = cl_mul_div(p.cash_fen, r2, g) - cl_mul_div(p.cash_fen, r, g)
        u = cl_mul_div(p.union_fen, r2, g) - cl_mul_div(p.union_fen, r, g)
        d = cl_mul_div(p.discount_fen, r2, g) - cl_mul_div(p.discount_fen, r, g)
        amount = sub + cash
        left = g - r2
        offer_day = p.day + 1 if p.day != CL_NOT_COUNTED else 0
    paid = amount + u
    if merchant.cash_fen < paid:
        return R_INSUFFICIENT_FUNDS
    if merchant.debits_posted > INT64_MAX_ - paid or card.credits_posted > INT64_MAX_ - amount:
        return R_OVERFLOW
    if card.cash_fen + card.subsidy_fen > INT64_MAX_ - amount:
        return R_OVERFLOW
    if union_acct != NULL and (union_acct.credits_posted > INT64_MAX_ - u or union_acct.cash_fen > INT64_MAX_ - u):
        return R_OVERFLOW
    CL_ASSERT(sub >= 0 and cash >= 0 and u >= 0 and d >= 0, "no part of a refund takes anything back")
    CL_ASSERT(left >= 0, "a refund leaves a purchase's gross refundable, never below zero")
    touch(st, card)
    touch(st, merchant)
    merchant.cash_fen -= paid
    merchant.debits_posted += paid
    card.subsidy_fen += sub
    card.cash_fen += cash  # the cash cap never refuses a refund
    card.credits_posted += amount
    if union_acct != NULL:
        touch(st, union_acct)
        union_acct.cash_fen += u
        union_acct.credits_posted += u
    if p.slot != NO_OFFER_C:
        su = &st.offers.slots[p.slot]
        slot_set(st, p.slot, su.used_fen - d, su.union_fen - u, su.purchases - (1 if left == 0 else 0))
        c = card_offer_find(st.offers, card.id, p.slot)
        if c != NULL and (c.month == p.month or c.day == p.day):
            row = c[0]
            if row.month == p.month:
                row.month_discount_fen -= d
            if left == 0 and row.day == p.day:
                row.day_count -= 1
            card_offer_set(st, &row)
    refunded_set(st, op.ref_source, op.ref_seq, left)
    set_effect(ef, amount, available(card), merchant, card, sub)
    ef.discounts = <uint32_t>(p.slot + 1)
    if union_acct != NULL and u:  # the third leg: the union account credited this part's u
        ef.union_id = union_acct.id
        ef.union_fen = u
    # what replay reads back: the budget's part, the purchase's counted day, what is left
    ef.offer_fen = d
    ef.offer_day = offer_day
    ef.refundable_fen = left
    return R_OK


# ---------------------------------------------------------------- the Engine's face (with the GIL)

cdef void offer_vers_free(OfferVer* vers, Py_ssize_t n) noexcept nogil:
    """Free installed versions (their rows; the columns are the numpy arrays kept)."""
    cdef Py_ssize_t k
    if vers == NULL:
        return
    for k in range(n):
        free(vers[k].rows)
        free(vers[k].mslots)
        free(vers[k].mrows)
        free(vers[k].pct_offers)
        free(vers[k].rest_offers)
    free(vers)


cdef void _check_offer_tables(object ot) except *:
    """Refuse compiled offer tables the loops could read out of bounds with (ValueError):
    they come from offers/tables.py, but the core trusts no caller with its memory."""
    n = len(ot.slot)
    for name in ("percent_off_bp", "amount_off_fen", "min_gross_fen", "every_fen", "max_discount_fen",
                 "from_day", "to_day", "dow_mask", "day_count", "month_discount_fen", "budget_fen",
                 "union_share_bp", "union_account", "cat_all"):
        if len(getattr(ot, name)) != n:
            raise ValueError(f"offer tables: {name} has {len(getattr(ot, name))} rows, not {n}")
    if n and int(np.min(ot.slot)) < 0:
        raise ValueError("offer tables: a negative slot")
    for off, items, what in ((ot.hour_off, ot.hour_start, "hour_off"), (ot.cat_off, ot.cats, "cat_off")):
        if len(off) != n + 1 or int(off[0]) != 0 or int(off[n]) != len(items) or (np.diff(off) < 0).any():
            raise ValueError(f"offer tables: {what} is not n + 1 rising offsets into its list")
    if len(ot.hour_end) != len(ot.hour_start):
        raise ValueError("offer tables: hour_start and hour_end differ in length")
    m = len(ot.merchant_ids)
    mo = ot.merchant_off
    if (len(mo) != m + 1 or int(mo[0]) != 0 or int(mo[m]) != len(ot.merchant_offers) or (np.diff(mo) < 0).any()
            or (m > 1 and (np.diff(ot.merchant_ids.astype(np.uint64)) == 0).any())):
        raise ValueError("offer tables: merchant_off is not m + 1 rising offsets, or merchant_ids repeat")
    for name in ("merchant_offers", "all_offers"):
        a = getattr(ot, name)
        if len(a) and (int(np.min(a)) < 0 or int(np.max(a)) >= n):
            raise ValueError(f"offer tables: {name} names an offer past the table")
    if len(ot.tz_from_us) < 1 or len(ot.tz_offset_s) != len(ot.tz_from_us):
        raise ValueError("offer tables: the zone's offsets are missing or uneven")
    if n and (int(np.min(ot.every_fen)) < 0 or int(np.min(ot.union_share_bp)) < 0
              or int(np.max(ot.union_share_bp)) > BP_WHOLE_C or int(np.min(ot.percent_off_bp)) < 0):
        raise ValueError("offer tables: every_fen, union_share_bp or percent_off_bp out of range")


cdef void offers_merchant_slots(OfferVer* t) except *:
    """Build t's merchant table (merchant_offer_range): open addressing over its
    merchant ids, at most half full."""
    cdef int64_t j, k, i
    cdef uint64_t size = 2, h
    if t.merchant_off[t.n_merchants] >= (<int64_t>1) << 31:
        raise ValueError("offer tables: 2^31 or more merchant offers")
    while size < 2 * <uint64_t>t.n_merchants:
        size <<= 1
    t.mslots = <MerchantSlot*>malloc(size * sizeof(MerchantSlot))
    if t.mslots == NULL:
        raise MemoryError("cardledger core: cannot allocate the offer merchant table")
    t.mslots_mask = size - 1
    memset(t.mslots, 0, size * sizeof(MerchantSlot))
    for h in range(size):
        t.mslots[h].lo = -1
        t.mslots[h].hi = -1
    for j in range(t.n_merchants):
        h = mix64(t.merchant_ids[j]) & t.mslots_mask
        while t.mslots[h].lo >= 0:
            h = (h + 1) & t.mslots_mask
        t.mslots[h].id = t.merchant_ids[j]
        t.mslots[h].lo = <int32_t>t.merchant_off[j]
        t.mslots[h].hi = <int32_t>t.merchant_off[j + 1]
        t.mslots[h].n_limited = 0
        for k in range(t.merchant_off[j], t.merchant_off[j + 1]):
            i = t.merchant_offers[k]
            if (t.day_count[i] or t.month_discount_fen[i]) and t.mslots[h].n_limited < MERCHANT_LIMITED_C:
                t.mslots[h].limited[t.mslots[h].n_limited] = <int32_t>t.slot[i]
                t.mslots[h].n_limited += 1


cdef void offers_split_all(OfferVer* t, object ot) except *:
    """Split t's every-merchant offers (offer_decide): those with a percent off only, by
    percent_off_bp falling then row, and the others in catalog order."""
    cdef Py_ssize_t j
    rows = np.asarray(ot.all_offers, dtype=np.int64)
    pct = np.asarray(ot.percent_off_bp, dtype=np.int64)[rows] if len(rows) else rows
    only = np.asarray(ot.amount_off_fen, dtype=np.int64)[rows] == 0 if len(rows) else rows.astype(bool)
    pr = rows[only]
    pr = pr[np.lexsort((pr, -pct[only]))] if len(pr) else pr
    rest = rows[~only]
    t.pct_offers = <PercentOffer*>malloc((len(pr) or 1) * sizeof(PercentOffer))
    t.rest_offers = <int64_t*>malloc((len(rest) or 1) * sizeof(int64_t))
    if t.pct_offers == NULL or t.rest_offers == NULL:
        raise MemoryError("cardledger core: cannot allocate the offer lists")
    for j in range(len(pr)):
        t.pct_offers[j].row = pr[j]
        t.pct_offers[j].percent_off_bp = t.percent_off_bp[pr[j]]
    for j in range(len(rest)):
        t.rest_offers[j] = rest[j]
    t.n_pct = len(pr)
    t.n_rest = len(rest)


cdef object offers_install(Offers* o, object versions, list keep):
    """Install the compiled catalog versions (OfferTables, oldest first); their arrays
    are kept alive in `keep`."""
    versions = list(versions)
    cdef Py_ssize_t k, n = len(versions)
    cdef OfferVer* vers = <OfferVer*>calloc(n if n > 0 else 1, sizeof(OfferVer))
    cdef OfferVer* t
    cdef OfferRow* w
    cdef Py_ssize_t i
    cdef int64_t max_slot = -1
    if vers == NULL:
        raise MemoryError("cardledger core: cannot allocate the offer versions")
    i64, u64 = np.int64, np.uint64
    try:
        for k in range(n):
            ot = versions[k]
            _check_offer_tables(ot)
            t = &vers[k]
            t.start_us = ot.start_us
            t.n = len(ot.slot)
            t.slot = <int64_t*>_arr_ptr(keep, ot.slot, i64)
            t.percent_off_bp = <int64_t*>_arr_ptr(keep, ot.percent_off_bp, i64)
            t.amount_off_fen = <int64_t*>_arr_ptr(keep, ot.amount_off_fen, i64)
            t.min_gross_fen = <int64_t*>_arr_ptr(keep, ot.min_gross_fen, i64)
            t.every_fen = <int64_t*>_arr_ptr(keep, ot.every_fen, i64)
            t.max_discount_fen = <int64_t*>_arr_ptr(keep, ot.max_discount_fen, i64)
            t.from_day = <int64_t*>_arr_ptr(keep, ot.from_day, i64)
            t.to_day = <int64_t*>_arr_ptr(keep, ot.to_day, i64)
            t.dow_mask = <int64_t*>_arr_ptr(keep, ot.dow_mask, i64)
            t.day_count = <int64_t*>_arr_ptr(keep, ot.day_count, i64)
            t.month_discount_fen = <int64_t*>_arr_ptr(keep, ot.month_discount_fen, i64)
            t.budget_fen = <int64_t*>_arr_ptr(keep, ot.budget_fen, i64)
            t.union_share_bp = <int64_t*>_arr_ptr(keep, ot.union_share_bp, i64)
            t.union_account = <uint64_t*>_arr_ptr(keep, ot.union_account, u64)
            t.hour_off = <int64_t*>_arr_ptr(keep, ot.hour_off, i64)
            t.hour_start = <int64_t*>_arr_ptr(keep, ot.hour_start, i64)
            t.hour_end = <int64_t*>_arr_ptr(keep, ot.hour_end, i64)
            t.cat_off = <int64_t*>_arr_ptr(keep, ot.cat_off, i64)
            t.cat_all = <int64_t*>_arr_ptr(keep, ot.cat_all, i64)
            t.cats = <int64_t*>_arr_ptr(keep, ot.cats, i64)
            t.merchant_ids = <uint64_t*>_arr_ptr(keep, ot.merchant_ids, u64)
            t.n_merchants = len(ot.merchant_ids)
            t.merchant_off = <int64_t*>_arr_ptr(keep, ot.merchant_off, i64)
            t.merchant_offers = <int64_t*>_arr_ptr(keep, ot.merchant_offers, i64)
            t.all_offers = <int64_t*>_arr_ptr(keep, ot.all_offers, i64)
            t.n_all = len(ot.all_offers)
            t.tz_from_us = <int64_t*>_arr_ptr(keep, ot.tz_from_us, i64)
            t.tz_offset_s = <int64_t*>_arr_ptr(keep, ot.tz_offset_s, i64)
            t.n_tz = len(ot.tz_from_us)
            t.rows = <OfferRow*>calloc(t.n if t.n > 0 else 1, sizeof(OfferRow))
            if t.rows == NULL:
                raise MemoryError("cardledger core: cannot allocate the offer rows")
            if t.n >= (<int64_t>1) << 31:
                raise ValueError("offer tables: 2^31 or more offers")
            for i in range(t.n):
                w = &t.rows[i]
                w.slot = t.slot[i]
                w.percent_off_bp = t.percent_off_bp[i]
                w.amount_off_fen = t.amount_off_fen[i]
                w.min_gross_fen = t.min_gross_fen[i]
                w.every_fen = t.every_fen[i]
                w.max_discount_fen = t.max_discount_fen[i]
                w.from_day = t.from_day[i]
                w.to_day = t.to_day[i]
                w.day_count = t.day_count[i]
                w.month_discount_fen = t.month_discount_fen[i]
                w.budget_fen = t.budget_fen[i]
                w.union_share_bp = t.union_share_bp[i]
                w.union_account = t.union_account[i]
                w.row = <int32_t>i
                w.dow_mask = <int32_t>(t.dow_mask[i] & 0x7F)  # (weekdays 1-7: bits 0-6)
                w.cat_all = 1 if t.cat_all[i] != 0 else 0
                w.hour_lo = <int32_t>t.hour_off[i]
                w.hour_hi = <int32_t>t.hour_off[i + 1]
                w.cat_lo = <int32_t>t.cat_off[i]
                w.cat_hi = <int32_t>t.cat_off[i + 1]
            offers_merchant_slots(t)
            t.mrows = <OfferRow*>malloc((len(ot.merchant_offers) or 1) * sizeof(OfferRow))
            if t.mrows == NULL:
                raise MemoryError("cardledger core: cannot allocate the offer rows")
            for i in range(len(ot.merchant_offers)):
                t.mrows[i] = t.rows[t.merchant_offers[i]]
            offers_split_all(t, ot)
            if t.n:
                max_slot = max(max_slot, int(np.max(ot.slot)))
        if offers_budget_room(o, max_slot + 1) != 0:
            raise MemoryError("cardledger core: cannot allocate the offer budgets")
    except BaseException:
        offer_vers_free(vers, n)
        raise
    offer_vers_free(o.vers, o.n_vers)
    o.vers = vers
    o.n_vers = <int32_t>n


cdef object offers_export(Offers* o, bint sort):
    """(slots OFFER_BUDGET_DTYPE of the slots with any use, card counters
    CARD_OFFER_DTYPE, refunded purchases REFUNDED_DTYPE), copies; with `sort`, each by
    its key."""
    cdef Py_ssize_t k, n = 0
    for k in range(o.cap_budget):
        if o.slots[k].used_fen != 0 or o.slots[k].union_fen != 0 or o.slots[k].purchases != 0:
            n += 1
    budgets = np.zeros(n, dtype=OFFER_BUDGET_DTYPE)
    n = 0
    for k in range(o.cap_budget):
        if o.slots[k].used_fen != 0 or o.slots[k].union_fen != 0 or o.slots[k].purchases != 0:
            budgets[n] = (k, o.slots[k].used_fen, o.slots[k].union_fen, o.slots[k].purchases)
            n += 1
    cards = np.empty(o.n_cards, dtype=CARD_OFFER_DTYPE)
    if o.n_cards:
        memcpy(cnp.PyArray_DATA(cards), o.cards, o.n_cards * sizeof(CardOffer))
    buys = np.empty(o.n_buys, dtype=REFUNDED_DTYPE)
    if o.n_buys:
        memcpy(cnp.PyArray_DATA(buys), o.buys, o.n_buys * sizeof(Refunded))
    if sort:
        cards = cards[np.lexsort((cards["slot"], cards["account_id"]))]
        buys = buys[np.lexsort((buys["seq"], buys["source"]))]
    return budgets, cards, buys


cdef object offers_load(Offers* o, object budgets, object cards, object buys):
    """Replace the offer state (arrays as `offers_export` gives)."""
    cdef cnp.ndarray b = np.ascontiguousarray(budgets, dtype=OFFER_BUDGET_DTYPE)
    cdef cnp.ndarray c = np.ascontiguousarray(cards, dtype=CARD_OFFER_DTYPE)
    cdef cnp.ndarray p = np.ascontiguousarray(buys, dtype=REFUNDED_DTYPE)
    cdef Py_ssize_t k
    cdef CardOffer* cr = <CardOffer*>cnp.PyArray_DATA(c)
    cdef Refunded* pr = <Refunded*>cnp.PyArray_DATA(p)
    if len(b) and (int(b["slot"].min()) < 0 or int(b["slot"].max()) >= OFFER_SLOTS_MAX):
        raise ValueError("load_offer_state: an offer slot out of range")
    if (len(c) and (c["account_id"] == 0).any()) or (len(p) and (p["source"] == 0).any()):
        raise ValueError("load_offer_state: a row keyed by 0")
    if len(p) and (p["refundable_fen"] < 0).any():
        raise ValueError("load_offer_state: a refunded purchase with less than nothing left to refund")
    cdef int64_t cap = o.cap_budget  # the installed versions' slots keep their room
    offers_free_state(o)
    if offers_init_state(o) != 0:
        raise MemoryError("cardledger core: cannot allocate the offer state")
    if offers_budget_room(o, max(cap, (int(b["slot"].max()) + 1) if len(b) else 0)) != 0:
        raise MemoryError("cardledger core: cannot allocate the offer budgets")
    for slot, used, union, bought in b.tolist():
        o.slots[slot].used_fen = used
        o.slots[slot].union_fen = union
        o.slots[slot].purchases = bought
    if grow(<void**>&o.cards, &o.cap_cards, len(c), sizeof(CardOffer)) != 0 or \
            grow(<void**>&o.buys, &o.cap_buys, len(p), sizeof(Refunded)) != 0:
        raise MemoryError("cardledger core: cannot allocate the offer state")
    for k in range(len(c)):
        o.cards[k] = cr[k]
        if map2_insert(&o.cmap, &o.cmap_mask, &o.cmap_used, cr[k].account_id, <uint64_t>cr[k].slot, k) != 0:
            raise MemoryError("cardledger core: cannot allocate the offer state")
    o.n_cards = len(c)
    for k in range(len(p)):
        o.buys[k] = pr[k]
        if map2_insert(&o.bmap, &o.bmap_mask, &o.bmap_used, pr[k].source, pr[k].seq, k) != 0:
            raise MemoryError("cardledger core: cannot allocate the offer state")
    o.n_buys = len(p)


cdef object offers_quote(State* st, uint64_t card_id, uint64_t merchant_id, int64_t gross, int64_t time_us):
    """(net, discount, union share, slot or NO_OFFER) a PURCHASE would decide now."""
    cdef Account tmp
    cdef int64_t i = account_find(st, card_id)
    cdef Decision dec
    if not amount_ok(gross):
        raise ValueError(f"gross_fen must be in 1..{AMOUNT_MAX_FEN}, got {gross}")
    if i >= 0:
        tmp = st.accounts[i]
    else:
        memset(&tmp, 0, sizeof(Account))
        tmp.id = card_id
        tmp.kind = A_CARD
    offer_decide(st, &tmp, merchant_id, gross, time_us, &dec)
    return gross - dec.d, dec.d, dec.u, dec.slot
