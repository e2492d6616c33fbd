# The fare evaluator: GTFS Fares v2 over the integer tables of
# `cardledger.fares.tables`. A line-by-line twin of engine/spec/fares.py (the
# executable spec; read its docstring for the semantics). Pure C, no GIL.

cdef inline int64_t floordiv64(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a / b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline void fare_local(const FareTab* t, int32_t stop, int64_t time_us,
                            int64_t* day, int64_t* tod) noexcept nogil:
    cdef int32_t z = t.stop_tz[stop]
    cdef int32_t lo = t.tz_ptr[z], hi = t.tz_ptr[z + 1], mid
    # last entry with from_us <= time_us (the first entry is -inf)
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if t.tz_from_us[mid] <= time_us:
            lo = mid
        else:
            hi = mid
    cdef int64_t local_s = floordiv64(time_us, US_PER_S_C) + t.tz_offset_s[lo]
    day[0] = floordiv64(local_s, S_PER_DAY_C)
    tod[0] = local_s - day[0] * S_PER_DAY_C


cdef inline bint fare_in_timeframe(const FareTab* t, int32_t group, int32_t stop,
                                   int64_t time_us) noexcept nogil:
    cdef int64_t day, tod, d
    fare_local(t, stop, time_us, &day, &tod)
    d = day - t.svc_day0
    cdef int32_t k
    for k in range(t.tf_ptr[group], t.tf_ptr[group + 1]):
        if t.tf_start_s[k] <= tod < t.tf_end_s[k]:
            if 0 <= d < t.svc_ndays and t.svc_bits[t.tf_service[k] * t.svc_ndays + d]:
                return True
    return False


cdef inline int64_t fare_price(const FareTab* t, int32_t product, int32_t cat, int32_t med) noexcept nogil:
    return t.price[(<int64_t>product * (t.n_cat + 1) + cat) * (t.n_med + 1) + med]


cdef inline int32_t lower_bound64(const int64_t* a, int32_t n, int64_t key) noexcept nogil:
    cdef int32_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline void fare_option_add(LegOption* out, int32_t* n, int64_t amount, int32_t order,
                                 int32_t group, int32_t product) noexcept nogil:
    """Keep out[:n] = the LEG_OPTIONS_MAX smallest (amount, order) of the candidates
    seen, one per (amount, group) (the smallest order of each)."""
    cdef int32_t i, k = n[0]
    for i in range(n[0]):
        if out[i].amount == amount and out[i].group == group:
            if out[i].order < order:
                return
            k = i  # replace it: remove, then insert in order
            break
    if k < n[0]:
        for i in range(k, n[0] - 1):
            out[i] = out[i + 1]
        n[0] -= 1
    i = n[0]
    while i > 0 and (out[i - 1].amount > amount or (out[i - 1].amount == amount and out[i - 1].order > order)):
        if i < LEG_OPTIONS_MAX_C:
            out[i] = out[i - 1]
        i -= 1
    if i >= LEG_OPTIONS_MAX_C:
        return
    out[i].amount = amount
    out[i].order = order
    out[i].group = group
    out[i].product = product
    if n[0] < LEG_OPTIONS_MAX_C:
        n[0] += 1
    CL_ASSERT(n[0] <= LEG_OPTIONS_MAX_C, "a leg keeps at most LEG_OPTIONS_MAX options")
    CL_ASSERT(i < n[0], "the option added is among those kept")


cdef int32_t fare_leg_options(const FareTab* t, const EffLeg* e, int32_t cat, int32_t med,
                              LegOption* out) noexcept nogil:
    """The ways the leg rules may price an effective leg (spec: fares.leg_options):
    written to out, cheapest first then file order; returns how many (0: none)."""
    cdef bint prio = t.has_priority
    cdef int32_t nets[2]
    cdef int32_t n_nets = 0
    if prio:
        nets[0] = e.network
        n_nets = 1
        if e.network != FARE_NONE:
            nets[1] = FARE_NONE
            n_nets = 2
    else:
        nets[0] = e.network if (e.network != FARE_NONE and t.network_listed[e.network]) else FARE_NONE
        n_nets = 1
    cdef int32_t fa0 = t.stop_area_ptr[e.from_stop], fa1 = t.stop_area_ptr[e.from_stop + 1]
    cdef int32_t ta0 = t.stop_area_ptr[e.to_stop], ta1 = t.stop_area_ptr[e.to_stop + 1]
    # A stop in several areas: each may match a rule, and without rule_priority the
    # empty field (every area no rule lists) matches when some area of the stop is
    # unlisted, or the stop is in none.
    # (decided when the feed was compiled: stop_from_empty / stop_to_empty).
    cdef bint to_empty_ok = prio or t.stop_to_empty[e.to_stop] != 0
    cdef bint from_empty_ok = prio or t.stop_from_empty[e.from_stop] != 0
    cdef int32_t k, a, ni, r, q, lo, hi, ta, ftf, ttf, j
    cdef bint found = False, ok
    cdef int64_t best_r0 = 0, amt, r0
    cdef int32_t n_out = 0
    cdef int64_t key, key2
    cdef int32_t k_lo, k_hi
    cdef int64_t a1 = t.n_areas + 1, a2 = t.n_areas + 2
    for ni in range(n_nets):
        # from areas: the stop's areas (listed ones only, without priority), then
        # the empty field (with priority always; without, if some area is unlisted)
        for k in range(fa0, fa1 + 1):
            if k < fa1:
                a = t.stop_area[k]
                if not prio and not t.from_area_listed[a]:
                    continue
            else:
                if not from_empty_ok:
                    continue
                a = FARE_NONE
            key = (nets[ni] + 1) * a1 + (a + 1)
            if key >= t.n_keys:
                continue  # no rule has this (network, from area)
            k_lo = t.lr_key_ptr[key]
            k_hi = t.lr_key_ptr[key + 1]
            if k_lo == k_hi:
                continue
            key2 = key * a2
            # to areas: the stop's areas, then the empty field (with priority always;
            # without, if some area of the stop is unlisted). Each is a range of
            # the rules sorted by (key, to area): no walk over the other stations'.
            for j in range(ta0, ta1 + 1):
                if j < ta1:
                    ta = t.stop_area[j]
                else:
                    if not to_empty_ok:
                        continue
                    ta = FARE_NONE
                lo = k_lo + lower_bound64(t.lr2_keys + k_lo, k_hi - k_lo, key2 + ta + 1)
                hi = k_lo + lower_bound64(t.lr2_keys + k_lo, k_hi - k_lo, key2 + ta + 2)
                for q in range(lo, hi):
                    r = t.lr2_rule[q]
                    ftf = t.lr_from_tf[r]
                    if ftf != FARE_NONE and not fare_in_timeframe(t, ftf, e.from_stop, e.dep_us):
                        continue
                    ttf = t.lr_to_tf[r]
                    if ttf != FARE_NONE and not fare_in_timeframe(t, ttf, e.to_stop, e.arr_us):
                        continue
                    amt = fare_price(t, t.lr_product[r], cat, med)
                    if amt == NO_PRICE_C:
                        continue
                    r0 = -(<int64_t>(t.lr_priority[r] if prio else t.lr_nspec[r]))
                    if found and r0 > best_r0:
                        continue
                    if not found or r0 < best_r0:
                        found = True
                        best_r0 = r0
                        n_out = 0
                    fare_option_add(out, &n_out, amt, t.lr_order[r], t.lr_group[r], t.lr_product[r])
    return n_out


cdef bint fare_joins(const FareTab* t, const FareLeg* prev, const FareLeg* nxt) noexcept nogil:
    cdef int32_t pn = t.route_network[prev.route], nn = t.route_network[nxt.route]
    cdef int32_t k, fs, ts
    for k in range(t.n_jr):
        if t.jr_from_network[k] != pn or t.jr_to_network[k] != nn:
            continue
        fs = t.jr_from_stop[k]
        if fs != FARE_NONE:
            ts = t.jr_to_stop[k]
            if prev.to_stop != fs and t.stop_station[prev.to_stop] != fs:
                continue
            if nxt.from_stop != ts and t.stop_station[nxt.from_stop] != ts:
                continue
            return True
        if t.stop_station[prev.to_stop] == t.stop_station[nxt.from_stop]:
            return True
    return False


cdef void fare_price_journey(const FareTab* t, const EffLeg* eff, int32_t ne,
                             const int64_t* amounts, const int32_t* groups, int32_t cat,
                             int32_t med, int64_t* out_total, uint8_t* out_flags,
                             uint8_t* out_last_flags) noexcept nogil:
    """(total, TRANSFER bit, TRANSFER bit of the last leg) of effective legs priced by one
    choice of options, transfers applied (spec: fares.price_journey)."""
    cdef int64_t total = amounts[0]
    cdef uint8_t flags = 0, last_flags = 0
    cdef bint have_run = False, reached = False, chosen
    cdef int32_t run_from = 0, run_to = 0, run_count = 0, run_start = 0
    cdef int32_t g0, g1, pf, pt, count, start, x, ttype = 0, i
    cdef int32_t dtype
    cdef int64_t tcount, best_tcount = 0, best_x = 0
    cdef int64_t span, dur, cost, best_cost = 0
    for i in range(1, ne):
        g0 = groups[i - 1]
        g1 = groups[i]
        chosen = False
        last_flags = 0
        if g0 != FARE_NONE and g1 != FARE_NONE:
            pf = g0 if t.from_group_listed[g0] else FARE_NONE
            pt = g1 if t.to_group_listed[g1] else FARE_NONE
            if reached and have_run and run_from == pf and run_to == pt:
                count = run_count + 1
                start = run_start
            else:
                count = 1
                start = i - 1
            for x in range(t.n_tr):
                if t.tr_from_group[x] != pf or t.tr_to_group[x] != pt:
                    continue
                tcount = t.tr_count[x]
                if tcount != -1 and tcount < count:
                    continue
                dur = t.tr_duration_s[x]
                if dur >= 0:
                    dtype = t.tr_duration_type[x]
                    if dtype == 0:
                        span = eff[i].arr_us - eff[start].dep_us
                    elif dtype == 1:
                        span = eff[i].dep_us - eff[start].dep_us
                    elif dtype == 2:
                        span = eff[i].dep_us - eff[start].arr_us
                    else:
                        span = eff[i].arr_us - eff[start].arr_us
                    if span > dur * US_PER_S_C:
                        continue
                cost = 0
                if t.tr_product[x] != FARE_NONE:
                    cost = fare_price(t, t.tr_product[x], cat, med)
                    if cost == NO_PRICE_C:
                        continue
                if tcount == -1:
                    tcount = UNLIMITED_RANK_C
                if (not chosen or tcount < best_tcount or (tcount == best_tcount and (
                        cost < best_cost or (cost == best_cost and x < best_x)))):
                    chosen = True
                    best_tcount = tcount
                    best_cost = cost
                    best_x = x
                    ttype = t.tr_type[x]
            if chosen:
                have_run = True
                run_from = pf
                run_to = pt
                run_count = count
                run_start = start
        if not chosen:
            total += amounts[i]
            reached = False
            have_run = False
            continue
        flags |= FD_TRANSFER
        last_flags = FD_TRANSFER
        if ttype == 0:
            total += best_cost
        elif ttype == 1:
            total += best_cost + amounts[i]
        elif not reached:
            total += best_cost - amounts[i - 1]
        else:
            total += best_cost
        reached = True
    out_total[0] = total
    out_flags[0] = flags
    out_last_flags[0] = last_flags


cdef int fare_quote(const FareTab* t, const FareLeg* legs, int32_t n, int32_t cat,
                    int32_t med, int64_t* out_amount, uint8_t* out_flags,
                    int32_t* out_last_product, uint8_t* out_last_flags) noexcept nogil:
    """Total fare of one journey (spec: fares.quote_detail); returns a FareStatus code.

    Also gives the product that priced the last effective leg and that leg's own
    discounts (TRANSFER if a transfer priced the way into it, CATEGORY if its fare is
    below the default rider's)."""
    cdef EffLeg eff[FARE_LEGS_MAX]
    cdef LegOption opts[FARE_LEGS_MAX][LEG_OPTIONS_MAX_C]
    cdef int32_t nopt[FARE_LEGS_MAX]
    cdef int32_t idx[FARE_LEGS_MAX]
    cdef int32_t best_idx[FARE_LEGS_MAX]
    cdef int64_t amounts[FARE_LEGS_MAX]
    cdef int32_t groups[FARE_LEGS_MAX]
    cdef int32_t i, s, ne = 0, net, k
    cdef int64_t combos, total = 0, best_total = 0, base
    cdef uint8_t fl = 0, lfl = 0, best_fl = 0, best_lfl = 0
    cdef bint have_best = False
    out_amount[0] = 0
    out_flags[0] = 0
    out_last_product[0] = FARE_NONE
    out_last_flags[0] = 0
    if n <= 0:
        return FS_NO_LEGS
    if n > FARE_LEGS_MAX:
        return FS_TOO_MANY_LEGS
    for i in range(n):
        if legs[i].route < 0 or legs[i].route >= t.n_routes or not t.route_known[legs[i].route]:
            return FS_UNKNOWN_ROUTE
        s = legs[i].from_stop
        if s < 0 or s >= t.n_stops or not t.stop_known[s]:
            return FS_UNKNOWN_STOP
        s = legs[i].to_stop
        if s < 0 or s >= t.n_stops or not t.stop_known[s]:
            return FS_UNKNOWN_STOP
    for i in range(n):
        net = t.route_network[legs[i].route]
        if i > 0 and fare_joins(t, &legs[i - 1], &legs[i]):
            if eff[ne - 1].network != net:
                eff[ne - 1].network = FARE_NONE
            eff[ne - 1].to_stop = legs[i].to_stop
            eff[ne - 1].arr_us = legs[i].arrival_us
        else:
            eff[ne].network = net
            eff[ne].from_stop = legs[i].from_stop
            eff[ne].to_stop = legs[i].to_stop
            eff[ne].dep_us = legs[i].departure_us
            eff[ne].arr_us = legs[i].arrival_us
            ne += 1
    CL_ASSERT(ne >= 1, "a journey has at least one effective leg")
    CL_ASSERT(ne <= n, "joining legs never makes more of them")
    for i in range(ne):
        nopt[i] = fare_leg_options(t, &eff[i], cat, med, &opts[i][0])
        if nopt[i] == 0:
            return FS_UNKNOWN_FARE
    combos = 1
    for i in range(ne):
        combos *= nopt[i]
        if combos > QUOTE_COMBINATIONS_MAX_C:
            break
    if combos > QUOTE_COMBINATIONS_MAX_C:
        for i in range(ne):
            nopt[i] = 1  # each leg takes its cheapest option
    for i in range(ne):
        idx[i] = 0
    while True:
        # every combination, the first leg's option varying slowest (itertools.product)
        for i in range(ne):
            amounts[i] = opts[i][idx[i]].amount
            groups[i] = opts[i][idx[i]].group
        fare_price_journey(t, eff, ne, amounts, groups, cat, med, &total, &fl, &lfl)
        if not have_best or total < best_total:
            have_best = True
            best_total = total
            best_fl = fl
            best_lfl = lfl
            for i in range(ne):
                best_idx[i] = idx[i]
        k = ne - 1
        while k >= 0:
            idx[k] += 1
            if idx[k] < nopt[k]:
                break
            idx[k] = 0
            k -= 1
        if k < 0:
            break
    for i in range(ne):
        base = fare_price(t, opts[i][best_idx[i]].product, t.n_cat, med)
        if cat != t.n_cat and base != NO_PRICE_C and opts[i][best_idx[i]].amount < base:
            best_fl |= FD_CATEGORY
            if i == ne - 1:
                best_lfl |= FD_CATEGORY
    out_amount[0] = best_total
    out_flags[0] = best_fl
    out_last_product[0] = opts[ne - 1][best_idx[ne - 1]].product
    out_last_flags[0] = best_lfl
    return FS_OK


cdef void* _arr_ptr(object holder, object arr, object dtype):
    cdef cnp.ndarray a = np.ascontiguousarray(arr, dtype=dtype)
    holder.append(a)
    return cnp.PyArray_DATA(a)


cdef class FareEvaluator:
    """The core's evaluator over one `FareTables` (spec: engine/spec/fares.py)."""

    cdef FareTab t
    cdef list _keep

    def __cinit__(self, tables):
        self._keep = []
        k = self._keep
        i32, i64, u8 = np.int32, np.int64, np.uint8
        memset(&self.t, 0, sizeof(FareTab))
        self.t.n_routes = len(tables.route_ids)
        self.t.n_stops = len(tables.stop_ids)
        self.t.n_areas = len(tables.area_ids)
        self.t.n_cat = tables.n_categories
        self.t.n_med = tables.n_media
        self.t.n_rules = len(tables.lr_keys)
        self.t.n_tr = len(tables.tr_type)
        self.t.n_jr = len(tables.jr_from_network)
        self.t.has_priority = bool(tables.has_rule_priority)
        self.t.route_network = <int32_t*>_arr_ptr(k, tables.route_network, i32)
        self.t.route_known = <uint8_t*>_arr_ptr(k, tables.route_known, u8)
        self.t.stop_station = <int32_t*>_arr_ptr(k, tables.stop_station, i32)
        self.t.stop_known = <uint8_t*>_arr_ptr(k, tables.stop_known, u8)
        self.t.stop_tz = <int32_t*>_arr_ptr(k, tables.stop_tz, i32)
        self.t.stop_area_ptr = <int32_t*>_arr_ptr(k, tables.stop_area_ptr, i32)
        self.t.stop_area = <int32_t*>_arr_ptr(k, tables.stop_area, i32)
        self.t.stop_from_empty = <uint8_t*>_arr_ptr(k, tables.stop_from_empty, u8)
        self.t.stop_to_empty = <uint8_t*>_arr_ptr(k, tables.stop_to_empty, u8)
        self.t.tz_ptr = <int32_t*>_arr_ptr(k, tables.tz_ptr, i32)
        self.t.tz_from_us = <int64_t*>_arr_ptr(k, tables.tz_from_us, i64)
        self.t.tz_offset_s = <int64_t*>_arr_ptr(k, tables.tz_offset_s, i64)
        self.t.svc_day0 = tables.svc_day0
        self.t.svc_ndays = tables.svc_bits.shape[1] if tables.svc_bits.ndim == 2 else 0
        self.t.svc_bits = <uint8_t*>_arr_ptr(k, tables.svc_bits, u8)
        self.t.tf_ptr = <int32_t*>_arr_ptr(k, tables.tf_ptr, i32)
        self.t.tf_start_s = <int32_t*>_arr_ptr(k, tables.tf_start_s, i32)
        self.t.tf_end_s = <int32_t*>_arr_ptr(k, tables.tf_end_s, i32)
        self.t.tf_service = <int32_t*>_arr_ptr(k, tables.tf_service, i32)
        self.t.price = <int64_t*>_arr_ptr(k, tables.price, i64)
        keys2 = (np.asarray(tables.lr_keys, dtype=i64) * (self.t.n_areas + 2)
                 + np.asarray(tables.lr_to_area, dtype=i64) + 1)
        by_to = np.argsort(keys2, kind="stable")  # file order within a (key, to area)
        self.t.lr2_keys = <int64_t*>_arr_ptr(k, keys2[by_to], i64)
        self.t.lr2_rule = <int32_t*>_arr_ptr(k, by_to, i32)
        lr_keys = np.asarray(tables.lr_keys, dtype=i64)
        self.t.n_keys = int(lr_keys.max()) + 1 if len(lr_keys) else 0
        self.t.lr_key_ptr = <int32_t*>_arr_ptr(
            k, np.searchsorted(lr_keys, np.arange(self.t.n_keys + 1, dtype=i64)), i32)
        self.t.lr_from_tf = <int32_t*>_arr_ptr(k, tables.lr_from_tf, i32)
        self.t.lr_to_tf = <int32_t*>_arr_ptr(k, tables.lr_to_tf, i32)
        self.t.lr_group = <int32_t*>_arr_ptr(k, tables.lr_group, i32)
        self.t.lr_product = <int32_t*>_arr_ptr(k, tables.lr_product, i32)
        self.t.lr_priority = <int32_t*>_arr_ptr(k, tables.lr_priority, i32)
        self.t.lr_nspec = <int32_t*>_arr_ptr(k, tables.lr_nspec, i32)
        self.t.lr_order = <int32_t*>_arr_ptr(k, tables.lr_order, i32)
        self.t.network_listed = <uint8_t*>_arr_ptr(k, tables.network_listed, u8)
        self.t.from_area_listed = <uint8_t*>_arr_ptr(k, tables.from_area_listed, u8)
        self.t.to_area_listed = <uint8_t*>_arr_ptr(k, tables.to_area_listed, u8)
        self.t.tr_from_group = <int32_t*>_arr_ptr(k, tables.tr_from_group, i32)
        self.t.tr_to_group = <int32_t*>_arr_ptr(k, tables.tr_to_group, i32)
        self.t.tr_count = <int32_t*>_arr_ptr(k, tables.tr_count, i32)
        self.t.tr_duration_s = <int64_t*>_arr_ptr(k, tables.tr_duration_s, i64)
        self.t.tr_duration_type = <int32_t*>_arr_ptr(k, tables.tr_duration_type, i32)
        self.t.tr_type = <int32_t*>_arr_ptr(k, tables.tr_type, i32)
        self.t.tr_product = <int32_t*>_arr_ptr(k, tables.tr_product, i32)
        self.t.from_group_listed = <uint8_t*>_arr_ptr(k, tables.from_group_listed, u8)
        self.t.to_group_listed = <uint8_t*>_arr_ptr(k, tables.to_group_listed, u8)
        self.t.jr_from_network = <int32_t*>_arr_ptr(k, tables.jr_from_network, i32)
        self.t.jr_to_network = <int32_t*>_arr_ptr(k, tables.jr_to_network, i32)
        self.t.jr_from_stop = <int32_t*>_arr_ptr(k, tables.jr_from_stop, i32)
        self.t.jr_to_stop = <int32_t*>_arr_ptr(k, tables.jr_to_stop, i32)
        price = np.asarray(tables.price, dtype=i64)
        self.t.additive = (self.t.n_tr == 0 and self.t.n_jr == 0
                           and not bool(((price < 0) & (price != NO_PRICE_C)).any()))

    @property
    def additive(self):
        """True when a journey's quote is the sum of its legs' quotes, each priced
        alone: no transfer rules (nothing prices a leg by the one before), no join
        rules (legs stay apart), no negative price (a journey's total never falls).
        Then the leg options of each leg are chosen independently, the cheapest
        first in file order as in a whole-journey quote, and a tap's incremental fare
        is the quote of its own leg (`tap_rate_leg` takes that shortcut)."""
        return bool(self.t.additive)

    def quote_many(self, legs, journey_ptr, int rider_category, int fare_media):
        """(status, amount, discounts) per journey; see FareSystem.quote_many."""
        cdef cnp.ndarray lg = legs
        cdef cnp.ndarray ptr = np.ascontiguousarray(journey_ptr, dtype=np.int64)
        cdef int64_t n = len(ptr) - 1
        cdef cnp.ndarray status = np.zeros(n, dtype=np.uint8)
        cdef cnp.ndarray amount = np.zeros(n, dtype=np.int64)
        cdef cnp.ndarray flags = np.zeros(n, dtype=np.uint8)
        cdef const FareLeg* lp = <const FareLeg*>cnp.PyArray_DATA(lg)
        cdef const int64_t* pp = <const int64_t*>cnp.PyArray_DATA(ptr)
        cdef uint8_t* sp = <uint8_t*>cnp.PyArray_DATA(status)
        cdef int64_t* ap = <int64_t*>cnp.PyArray_DATA(amount)
        cdef uint8_t* fp = <uint8_t*>cnp.PyArray_DATA(flags)
        cdef int64_t j
        cdef int32_t last_product
        cdef uint8_t last_flags
        with nogil:
            for j in range(n):
                sp[j] = <uint8_t>fare_quote(&self.t, lp + pp[j], <int32_t>(pp[j + 1] - pp[j]),
                                            rider_category, fare_media, &ap[j], &fp[j],
                                            &last_product, &last_flags)
        return status, amount, flags
