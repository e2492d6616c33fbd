# The Engine, twin of engine/spec/batch.py: the batch loop (idempotency first, then
# linked chains, then the handlers), the journal replay that rebuilds state on open,
# and the Engine class, the core's Python face (state import and export, decisions,
# snapshots, fare versions).

cdef inline bint is_replay_code(uint32_t code) noexcept nogil:
    return code == R_EXISTS or code == R_EXISTS_WITH_DIFFERENT_FIELDS or \
        code == R_ID_ALREADY_FAILED or code == R_INVALID_ID


cdef Journal* decide(State* st, Op* op, int code, Effect* ef, uint64_t jseq) noexcept nogil:
    """Record op's decision: a journal record in the tail, the recent map, the source."""
    cdef Source* s = source_find(st, op.source)
    cdef Journal* rec
    cdef Account* a
    CL_ASSERT(jseq == st.journal_seq + 1, "journal_seqs are decided in order, one after another")
    CL_ASSERT(st.n_tail < st.cap_tail, "a decision's record has room in the tail (window_reserve)")
    st.journal_seq = jseq
    if s == NULL:
        if st.n_sources >= 0x7FFFFFFF:  # the window notes a decision's source in 32 bits
            st.oom = 1
            return NULL
        if grow(<void**>&st.sources, &st.cap_sources, st.n_sources + 1, sizeof(Source)) != 0:
            st.oom = 1
            return NULL
        if map1_insert(&st.smap, &st.smap_mask, &st.smap_used, op.source, st.n_sources) != 0:
            st.oom = 1
            return NULL
        if gaps_source_added(st, st.n_sources, op.seq) != 0:
            st.oom = 1
            return NULL
        s = &st.sources[st.n_sources]
        s.source = op.source
        s.last_seq = op.seq
        s.checkpoint_seq = 0
        st.n_sources += 1
    else:
        if gaps_on_decide(st, s - st.sources, s.last_seq, op.seq) != 0:
            st.oom = 1
            return NULL
        if op.seq > s.last_seq:
            s.last_seq = op.seq
    if st.n_dec == 0:
        st.wfirst_jseq = jseq
    rec = &st.tail[st.n_tail]
    rec.op = op[0]
    rec.code = code
    rec.discounts = 0
    rec.journal_seq = jseq
    rec.debit_prev_seq = 0
    rec.credit_prev_seq = 0
    if code == R_OK:
        rec.discounts = ef.discounts
        rec.result_amount_fen = ef.amount_fen
        rec.balance_fen = ef.balance_fen
        rec.debit_id = ef.debit_id
        rec.credit_id = ef.credit_id
        rec.subsidy_fen = ef.subsidy_fen
        rec.union_id = ef.union_id
        rec.union_fen = ef.union_fen
        rec.offer_fen = ef.offer_fen
        rec.offer_day = ef.offer_day
        rec.refundable_fen = ef.refundable_fen
        CL_ASSERT(op.kind == K_PURCHASE or op.kind == K_REFUND
                  or (ef.offer_fen == 0 and ef.offer_day == 0 and ef.refundable_fen == 0),
                  "only a PURCHASE or a REFUND has offer words")
        CL_ASSERT(ef.union_fen >= 0 and (ef.union_fen == 0) == (ef.union_id == 0),
                  "a record's union leg names its account exactly when it moves fen, never negative")
        CL_ASSERT(ef.union_id == 0 or op.kind == K_PURCHASE or op.kind == K_REFUND,
                  "only a PURCHASE or a REFUND has a union leg")
        if ef.debit != NULL:
            a = ef.debit
            rec.debit_prev_seq = a.last_journal_seq
            a.last_journal_seq = jseq
        if ef.credit != NULL:
            a = ef.credit
            rec.credit_prev_seq = a.last_journal_seq
            a.last_journal_seq = jseq
    else:
        rec.result_amount_fen = 0
        rec.balance_fen = 0
        rec.debit_id = 0
        rec.credit_id = 0
        rec.subsidy_fen = 0
        rec.union_id = 0
        rec.union_fen = 0
        rec.offer_fen = 0
        rec.offer_day = 0
        rec.refundable_fen = 0
    if recent_insert(st, op.source, op.seq, st.n_dec) != 0:
        st.oom = 1
        return NULL
    st.wsrc[st.n_dec] = <int32_t>(s - st.sources)
    st.wseq[st.n_dec] = op.seq
    st.n_tail += 1
    st.n_dec += 1
    CL_ASSERT(s.last_seq >= op.seq, "a source's last_seq is at least every seq it decided")
    CL_ASSERT(debug_window_ok(st), "the decisions window agrees with the journal")
    return rec


cdef inline void replay_result(Op* op, Journal* orig, Result* r) noexcept nogil:
    r.journal_seq = orig.journal_seq
    r.discounts = 0
    r.amount_fen = 0
    r.balance_fen = 0
    if orig.code != R_OK:
        r.code = R_ID_ALREADY_FAILED
    elif memcmp(&orig.op, op, sizeof(Op)) != 0:
        r.code = R_EXISTS_WITH_DIFFERENT_FIELDS
    else:
        r.code = R_EXISTS
        r.amount_fen = orig.result_amount_fen
        r.balance_fen = orig.balance_fen
        r.discounts = orig.discounts


cdef inline int64_t balance_or_zero(State* st, uint64_t account_id) noexcept nogil:
    cdef Account* a = account_get(st, account_id)
    return 0 if a == NULL else available(a)


cdef inline void prefetch_slots(State* st, Op* op) noexcept nogil:
    CL_PREFETCH(&st.amap[mix64(op.account_id) & st.amap_mask])
    CL_PREFETCH(&st.amap[mix64(op.counterparty_id) & st.amap_mask])
    CL_PREFETCH(&st.smap[mix64(op.source) & st.smap_mask])  # its id's source (prefetch_source)
    if op.kind == K_TAP:
        CL_PREFETCH(&st.taps.jmap[mix64(op.account_id) & st.taps.jmap_mask])


cdef inline void prefetch_journey(State* st, uint64_t card_id) noexcept nogil:
    """A tap reads and rewrites its card's journey: every cache line of it (legs, caps
    and tiers make about six)."""
    cdef int64_t i = journey_find(st.taps, card_id)
    cdef char* p
    cdef size_t off
    if i >= 0:
        p = <char*>&st.taps.journeys[i]
        off = 0
        while off < sizeof(Journey):
            CL_PREFETCH(p + off)
            off += 64


cdef inline void prefetch_source(State* st, uint64_t source) noexcept nogil:
    """The source record an op's id is checked against (its map slot was fetched
    2 * PREFETCH_DISTANCE ahead): ledgers fed by many terminals miss on it otherwise."""
    cdef int64_t i = map1_find(st.smap, st.smap_mask, source) if source != 0 else -1
    if i >= 0:
        CL_PREFETCH(&st.sources[i])


cdef inline void prefetch_account(State* st, uint64_t id) noexcept nogil:
    cdef int64_t i = account_find(st, id)
    cdef char* p
    if i >= 0:
        p = <char*>&st.accounts[i]
        CL_PREFETCH(p)
        CL_PREFETCH(p + 64)


cdef inline void prefetch_hold_head(State* st, uint64_t card_id) noexcept nogil:
    """The head of the card's hold list (holdidx.pxi), which a metro entry or exit
    rewrites (the card's account slot was fetched 2 * PREFETCH_DISTANCE ahead)."""
    cdef int64_t i = account_find(st, card_id)
    if 0 <= i < st.n_hhead:
        CL_PREFETCH(&st.hhead[i])


cdef inline void prefetch_hold(State* st, uint64_t card_id) noexcept nogil:
    """A tap that ends a metro journey finds its entry's hold: the journey (prefetched
    PREFETCH_DISTANCE ahead) names it, so its hash slot can be fetched now."""
    cdef int64_t i = journey_find(st.taps, card_id)
    cdef Journey* j
    if i >= 0:
        j = &st.taps.journeys[i]
        if j.entry_source != 0:
            CL_PREFETCH(&st.pmap[mix128(j.entry_source, j.entry_seq) & st.pmap_mask])


cdef inline void prefetch_hold_record(State* st, uint64_t card_id) noexcept nogil:
    """The hold a metro exit settles (its slot was fetched HOLD_PREFETCH_DISTANCE ahead),
    and the slot of the store's last hold, which removing it moves into its place."""
    cdef int64_t i = journey_find(st.taps, card_id)
    cdef Journey* j
    cdef int64_t h
    cdef Pending* last
    if i < 0:
        return
    j = &st.taps.journeys[i]
    if j.entry_source == 0:
        return
    h = map2_find(st.pmap, st.pmap_mask, j.entry_source, j.entry_seq)
    if h < 0:
        return
    CL_PREFETCH(&st.pending[h])
    CL_PREFETCH(<char*>&st.pending[h] + sizeof(Pending) - 1)
    CL_PREFETCH(&st.hlink[2 * h])  # its nodes in the card's hold list (holdidx.pxi)
    last = &st.pending[st.n_pending - 1]
    CL_PREFETCH(&st.pmap[mix128(last.source, last.seq) & st.pmap_mask])
    CL_PREFETCH(&st.hlink[2 * (st.n_pending - 1)])


cdef inline Op* op_at(Op* first, int64_t k, size_t stride) noexcept nogil:
    return <Op*>(<char*>first + k * stride)


cdef inline void prefetch_ahead(State* st, Op* first, int64_t k, int64_t n, size_t stride) noexcept nogil:
    """Prefetch for the op PREFETCH_DISTANCE ahead; `stride` steps over ops or journal records."""
    cdef Op* op
    if k + 2 * PREFETCH_DISTANCE < n:
        op = op_at(first, k + 2 * PREFETCH_DISTANCE, stride)
        prefetch_slots(st, op)
        if op.kind == K_PURCHASE:
            purchase_prefetch_rows(st, op)  # purchases.pxi
    if k + PREFETCH_DISTANCE < n:
        op = op_at(first, k + PREFETCH_DISTANCE, stride)
        prefetch_account(st, op.account_id)
        prefetch_account(st, op.counterparty_id)
        prefetch_source(st, op.source)
        if op.kind == K_TAP:
            prefetch_journey(st, op.account_id)
            prefetch_hold_head(st, op.account_id)
            # A metro entry adds a hold keyed by its own id.
            CL_PREFETCH(&st.pmap[mix128(op.source, op.seq) & st.pmap_mask])
        elif op.kind == K_PURCHASE:
            purchase_prefetch(st, op)  # purchases.pxi
        elif op.flags & F_PENDING:
            prefetch_hold_head(st, op.account_id)  # a hold, listed under a card
        CL_PREFETCH(&st.rmap[mix128(op.source, op.seq) & st.rmap_mask])
    if k + HOLD_PREFETCH_DISTANCE < n:
        op = op_at(first, k + HOLD_PREFETCH_DISTANCE, stride)
        if op.kind == K_TAP:
            prefetch_hold(st, op.account_id)
        elif op.kind == K_PURCHASE:
            purchase_prefetch_state(st, op)  # purchases.pxi
    if k + HOLD_RECORD_PREFETCH_DISTANCE < n:
        op = op_at(first, k + HOLD_RECORD_PREFETCH_DISTANCE, stride)
        if op.kind == K_TAP:
            prefetch_hold_record(st, op.account_id)


cdef uint64_t settle_first(State* st, Op* op, int64_t ops_left) noexcept nogil:
    """Settle the overdue entry of the card `op` taps (spec: Engine._settle_first,
    taps.py rule 9): a SWEEP of the card at the tap's time, id (SETTLE_SOURCE, next
    seq), decided and journaled before the tap. Returns the journal_seq the tap then
    takes (0: out of memory). Writes nothing if the SWEEP cannot settle.

    The window was reserved for one record per op: this record is one more, so room is
    made now for it and the batch's `ops_left` ops still to decide (this tap's too)."""
    cdef Op sweep
    cdef Effect ef
    cdef Source* s = source_find(st, SETTLE_SOURCE_C)
    cdef uint64_t jseq = st.journal_seq + 1
    cdef int code
    if window_reserve_more(st, st.n_tail + 1 + ops_left) != 0:
        return 0
    memset(&sweep, 0, sizeof(Op))
    sweep.source = SETTLE_SOURCE_C
    sweep.seq = (s.last_seq if s != NULL else 0) + 1
    sweep.account_id = op.account_id
    sweep.time_us = op.time_us
    sweep.kind = K_TAP
    sweep.tap = TAP_SWEEP
    CL_ASSERT(st.settle_on == 0, "a settlement's SWEEP settles nothing first itself")
    code = execute(st, &sweep, &ef, jseq, True)
    if code == R_OK and ef.amount_fen != 0:
        if decide(st, &sweep, code, &ef, jseq) == NULL:
            return 0
    CL_ASSERT(st.journal_seq + 1 >= jseq, "the tap takes the journal_seq after the settlement's")
    return st.journal_seq + 1


cdef int settle_then_execute(State* st, Op* op, Effect* ef, uint64_t* jseq, int64_t ops_left) noexcept nogil:
    """The tap asked for its card's overdue entry to be settled first: settle it, then
    execute the tap again (no longer asking), at the journal_seq after the settlement."""
    cdef int code
    st.settle_on = 0
    jseq[0] = settle_first(st, op, ops_left)
    if jseq[0] == 0:
        st.oom = 1
        return R_OVERFLOW
    CL_DEBUG_DO(debug_op_begin(st))
    code = execute(st, op, ef, jseq[0], True)
    st.settle_on = 1
    return code


cdef inline void apply_chain(State* st, Op* ops, int64_t lo, int64_t hi, int64_t n, Journal* prior,
                      unsigned char* has_prior, Result* results) noexcept nogil:
    cdef bint linked = (hi - lo > 1) or (ops[lo].flags & F_LINKED) != 0
    cdef bint open_chain = (ops[hi - 1].flags & F_LINKED) != 0
    cdef bint failed = False
    cdef int64_t k, idx, t
    cdef int code
    cdef Op* op
    cdef Result* r
    cdef Journal* orig
    cdef Journal* rec
    cdef Effect ef
    cdef Journal tmp
    cdef Source* src
    cdef uint64_t jseq
    cdef int64_t first_new = st.n_tail
    cdef int64_t n_settled = 0  # settlement records before the (one) tap's own
    CL_ASSERT(lo < hi, "a chain has at least one op")
    CL_ASSERT(hi <= n, "a chain ends within its batch")
    st.undo_on = linked
    st.settle_on = not linked  # (a settlement is not undone with a chain: taps on their own)
    st.n_undo = 0
    for k in range(lo, hi):
        prefetch_ahead(st, ops, k, n, sizeof(Op))
        if st.policy != NULL:
            policy_prefetch(st.policy, ops, k, n)  # policies.pxi
        op = &ops[k]
        r = &results[k]
        if op.source + 1 <= 1:  # source 0 or SETTLE_SOURCE (the ledger's own)
            r.code = R_INVALID_ID
            failed = True
            continue
        orig = NULL
        src = source_find(st, op.source)
        # Terminals issue increasing seqs: an id above its source's highest decided seq
        # is new, with no lookup at all. Only the others are looked up.
        if src != NULL and op.seq <= src.last_seq:
            idx = recent_find(st, op.source, op.seq)
            if idx >= 0:
                orig = window_record(st, idx, &tmp)
            elif has_prior != NULL and has_prior[k]:
                orig = &prior[k]
        if orig != NULL:
            replay_result(op, orig, r)
            failed = True
            continue
        jseq = st.journal_seq + 1
        if failed:
            code = R_LINKED_FAILED
        elif open_chain and k == hi - 1:
            code = R_LINKED_CHAIN_OPEN
        else:
            CL_DEBUG_DO(debug_op_begin(st))
            code = execute(st, op, &ef, jseq, True)
            if code == R_SETTLE_FIRST_C:
                code = settle_then_execute(st, op, &ef, &jseq, n - k)
                if st.oom:
                    return
                n_settled = st.n_tail - first_new
            CL_DEBUG_DO(debug_op_check(st, op, code))
            CL_ASSERT(debug_new_op_strict(op, code), "a new op decided OK passed the strict field checks")
        rec = decide(st, op, code, &ef, jseq)
        if rec == NULL:
            return
        r.code = code
        r.journal_seq = jseq
        if code == R_OK:
            r.amount_fen = ef.amount_fen
            r.balance_fen = ef.balance_fen
            r.discounts = ef.discounts
        else:
            failed = True
    st.settle_on = 0
    if linked and failed:
        rollback(st)
        if st.oom:
            return
    # Settle the new members: a failed chain turns its successes into LINKED_FAILED;
    # every failed op reports its account's balance after the chain is settled.
    t = first_new + n_settled
    for k in range(lo, hi):
        r = &results[k]
        if is_replay_code(r.code):
            continue  # not a new decision: no tail record
        rec = &st.tail[t]
        t += 1
        if linked and failed and r.code == R_OK:
            r.code = R_LINKED_FAILED
            r.amount_fen = 0
            r.discounts = 0
            rec.code = R_LINKED_FAILED
            rec.discounts = 0
            rec.result_amount_fen = 0
            rec.debit_id = 0
            rec.credit_id = 0
            rec.subsidy_fen = 0
            rec.debit_prev_seq = 0
            rec.credit_prev_seq = 0
            rec.union_id = 0
            rec.union_fen = 0
            rec.offer_fen = 0
            rec.offer_day = 0
            rec.refundable_fen = 0
        if r.code != R_OK:
            r.balance_fen = balance_or_zero(st, ops[k].account_id)
            rec.balance_fen = r.balance_fen
    CL_ASSERT(t == st.n_tail, "every new decision of a chain has exactly one record in the tail")
    CL_ASSERT(debug_tables_ok(st), "after a chain the tables and their indexes agree")
    st.undo_on = 0
    st.n_undo = 0


cdef int apply_batch(State* st, Op* ops, int64_t n, Journal* prior,
                     unsigned char* has_prior, Result* results, ReverseRef* refs,
                     Journal* bought) noexcept nogil:
    cdef int64_t i = 0, j
    st.batch_ops = ops
    st.batch_refs = refs
    st.batch_bought = bought
    gaps_budget(st, n)  # gaps.pxi
    while i < n:
        # A chain runs from i to the first op without LINKED (or the batch end).
        j = i
        while j < n - 1 and (ops[j].flags & F_LINKED):
            j += 1
        apply_chain(st, ops, i, j + 1, n, prior, has_prior, results)
        if st.oom:
            st.batch_refs = NULL
            st.batch_bought = NULL
            return -1
        i = j + 1
    st.batch_refs = NULL
    st.batch_bought = NULL
    CL_ASSERT(i == n, "the chains cover the batch: every op has its result")
    CL_ASSERT(st.n_tail <= 2 * n, "a batch decides at most two records per op (a tap's settlement)")
    return 0


cdef int64_t replay_records(State* st, Journal* recs, int64_t n) noexcept nogil:
    """Re-apply decided records; -1 when all replay to their figures, else the index
    of the first that does not (-2: out of memory)."""
    cdef int64_t i
    cdef Journal* rec
    cdef Journal* got
    cdef Effect ef
    cdef int code
    st.undo_on = 0
    gaps_budget(st, n)  # gaps.pxi
    for i in range(n):
        prefetch_ahead(st, &recs[0].op, i, n, sizeof(Journal))
        rec = &recs[i]
        if rec.journal_seq != st.journal_seq + 1:
            return i
        if rec.code == R_OK:
            CL_DEBUG_DO(debug_op_begin(st))
            if rec.op.kind == K_REVERSE:  # it says what it did: nothing else is read
                st.reverse_replay_on = 1
                st.reverse_replay_operator = rec.debit_id
                st.reverse_replay_amount = rec.result_amount_fen
                st.reverse_replay_subsidy = rec.subsidy_fen
                st.reverse_replay_mask = rec.discounts
            elif rec.op.kind == K_REFUND:  # so does a REFUND's
                st.refund_replay = rec
            # As decided then: a record older than the strict field checks may break
            # them (a TOPUP at time_us 0), and it stays OK.
            code = execute(st, &rec.op, &ef, rec.journal_seq, False)
            st.reverse_replay_on = 0
            st.refund_replay = NULL
            CL_DEBUG_DO(debug_op_check(st, &rec.op, code))
            if code != R_OK:
                return -2 if st.oom else i
            got = decide(st, &rec.op, code, &ef, rec.journal_seq)
        else:
            if is_replay_code(rec.code) or rec.code > R_MAX:
                return i
            got = decide(st, &rec.op, rec.code, &ef, rec.journal_seq)
            if got != NULL:
                got.balance_fen = rec.balance_fen
        if got == NULL:
            return -2
        CL_ASSERT(st.journal_seq == rec.journal_seq, "a replayed record takes its own journal_seq")
        if memcmp(got, rec, sizeof(Journal)) != 0:
            return i
    CL_ASSERT(debug_tables_ok(st), "after a replay the tables and their indexes agree")
    return -1


# ---------------------------------------------------------------- the Engine

cdef void clear_legs_past_n(Journey* o, Py_ssize_t n) noexcept nogil:
    """Legs past a journey's n_legs read as zeros, as in export_journeys."""
    cdef Py_ssize_t i
    cdef int32_t k
    for i in range(n):
        k = o[i].n_legs if o[i].n_legs > 0 else 0
        if k < JOURNEY_LEGS_MAX_C:
            memset(&o[i].legs[k], 0, (JOURNEY_LEGS_MAX_C - k) * sizeof(FareLeg))


cdef void sort_late_decisions(uint64_t* d, unsigned char* lt, int64_t n) noexcept nogil:
    """Sort rows (source, seq, journal_seq) + late flag by (source, seq) in place, rows
    already grouped by source in order: an insertion sort, linear but for the late
    decisions (each moves back within its source's group). A full sort of every flush
    (np.lexsort of all its rows) was a large share of the batch that flushed."""
    cdef int64_t i, j
    cdef uint64_t s0, s1, s2
    cdef unsigned char f
    for i in range(1, n):
        if d[3 * i] != d[3 * (i - 1)] or d[3 * i + 1] >= d[3 * (i - 1) + 1]:
            continue
        s0, s1, s2, f = d[3 * i], d[3 * i + 1], d[3 * i + 2], lt[i]
        j = i
        while j > 0 and d[3 * (j - 1)] == s0 and d[3 * (j - 1) + 1] > s1:
            d[3 * j] = d[3 * (j - 1)]
            d[3 * j + 1] = d[3 * (j - 1) + 1]
            d[3 * j + 2] = d[3 * (j - 1) + 2]
            lt[j] = lt[j - 1]
            j -= 1
        d[3 * j], d[3 * j + 1], d[3 * j + 2], lt[j] = s0, s1, s2, f


cdef object _prefix_or_new(object buf, Py_ssize_t n, object dtype):
    """The first n rows of `buf` when it is a writable contiguous array of `dtype` that
    holds n rows (a buffer reused across checkpoints costs no page faults), else a new
    array of n rows."""
    if (buf is not None and len(buf) >= n and buf.dtype == dtype and buf.flags.c_contiguous
            and buf.flags.writeable):
        return buf[:n]
    return np.empty(n, dtype=dtype)


cdef object _copied_rows(object buf, const void* rows, Py_ssize_t n, size_t item, object dtype):
    """n rows of `item` bytes at `rows`, copied into `_prefix_or_new(buf, n, dtype)`."""
    out = _prefix_or_new(buf, n, dtype)
    if n:
        memcpy(cnp.PyArray_DATA(out), rows, n * item)
    return out


cdef int32_t _mask_width(object arr):
    return arr.shape[1] if arr.ndim == 2 else 0


cdef class Engine:
    """The core engine (see module docstring); the same face as the spec's Engine."""

    cdef State st
    cdef Taps taps             # journeys and fare versions: kept across load_checkpoint
    cdef list _fare_keep       # what the installed versions' raw pointers point into
    cdef Offers offers         # offer versions and state (purchases.pxi): kept across load_checkpoint
    cdef list _offer_keep      # what the offer versions' raw pointers point into
    cdef CowTable _cow_acc     # the snapshot being taken of the accounts (snapshot_begin)
    cdef CowTable _cow_jny     # ... and of the journeys
    cdef object _cow_keep      # the snapshot's buffers, alive while their rows are copied
    cdef Policies pol          # the source policy sets (policies.pxi): kept across load_checkpoint
    cdef list _policy_keep     # what their raw pointers point into
    cdef public int64_t default_cap_fen

    implementation = "cython"

    def __cinit__(self, int64_t default_cap_fen=DEFAULT_CASH_CAP_FEN):
        memset(&self.st, 0, sizeof(State))
        self._fare_keep = []
        self._offer_keep = []
        self.default_cap_fen = default_cap_fen
        self.st.default_cap_fen = default_cap_fen
        memset(&self._cow_acc, 0, sizeof(CowTable))
        memset(&self._cow_jny, 0, sizeof(CowTable))
        if state_init(&self.st) != 0 or taps_init(&self.taps) != 0 or offers_init(&self.offers) != 0:
            raise MemoryError("cardledger core: cannot allocate the initial state")
        self.st.taps = &self.taps
        self.st.offers = &self.offers
        self.st.cow = &self._cow_acc
        self.taps.cow = &self._cow_jny
        memset(&self.pol, 0, sizeof(Policies))
        self._policy_keep = []
        self.st.pol = &self.pol

    def __dealloc__(self):
        # (a copier thread holds a reference: none runs here)
        cow_free(&self._cow_acc)
        cow_free(&self._cow_jny)
        state_free(&self.st)
        taps_free_journeys(&self.taps)
        free(self.pol.sets)
        self.pol.sets = NULL
        free(self.taps.vers)
        self.taps.vers = NULL
        offers_free_state(&self.offers)
        offer_vers_free(self.offers.vers, self.offers.n_vers)
        self.offers.vers = NULL

    # ------------------------------------------------------------------ fares

    # ------------------------------------------------------------------ offers (purchases.pxi)

    def set_offer_versions(self, versions):
        """Install the offer-catalog versions (OfferTables, oldest first) purchases are
        decided by."""
        keep = []
        offers_install(&self.offers, versions, keep)
        self._offer_keep = keep

    def export_offer_state(self, bint sort=True):
        """The offer state: (slots OFFER_BUDGET_DTYPE, card counters CARD_OFFER_DTYPE,
        refunded purchases REFUNDED_DTYPE), copies; with `sort` (a checkpoint asks
        without), each table sorted by its key as the reference engine gives it."""
        return offers_export(&self.offers, sort)

    def load_offer_state(self, budgets, cards, bought):
        """Replace the offer state (arrays as `export_offer_state` gives)."""
        offers_load(&self.offers, budgets, cards, bought)

    def reserve_card_offers(self, int64_t n):
        """Make room for n cards' counters per offer (and their map) now and fault the
        memory in, so that no batch pays for growing them. MemoryError if refused."""
        cdef Offers* o = &self.offers
        if n <= o.cap_cards:
            return
        if (grow(<void**>&o.cards, &o.cap_cards, n, sizeof(CardOffer)) != 0
                or map2_reserve(&o.cmap, &o.cmap_mask, n) != 0):
            raise MemoryError("cardledger core: cannot allocate the card counters")
        with nogil:  # the rows past the used ones: faulted in here, not by the batches
            memset(o.cards + o.n_cards, 0, (o.cap_cards - o.n_cards) * sizeof(CardOffer))

    def quote_purchase(self, uint64_t card_id, uint64_t merchant_id, int64_t gross_fen, int64_t time_us):
        """(net, discount, union share, offer slot or NO_OFFER) a PURCHASE would decide
        now; nothing changes."""
        return offers_quote(&self.st, card_id, merchant_id, gross_fen, time_us)

    def set_tap_horizon(self, int64_t horizon_us):
        """Refuse, from the next `apply` on, every TAP whose time_us is later than
        horizon_us (TAP_TIME_IN_FUTURE); replays are not affected. Initially none is."""
        self.st.tap_horizon_us = horizon_us

    def set_fare_versions(self, versions):
        """Install the fare-system versions (TapTables, oldest first) taps are rated by."""
        versions = list(versions)
        cdef Py_ssize_t i, n = len(versions)
        cdef list keep = []
        cdef FareEvaluator ev
        cdef TapVer* tv
        cdef TapVer* vers = <TapVer*>calloc(n if n > 0 else 1, sizeof(TapVer))
        if vers == NULL:
            raise MemoryError("cardledger core: cannot allocate the fare versions")
        i32, i64, u64, u8 = np.int32, np.int64, np.uint64, np.uint8
        try:
            for i in range(n):
                tt = versions[i]
                tv = &vers[i]
                if len(tt.cap_period) > FARE_CAPS_MAX or len(tt.tier_percent_off) > FARE_TIERS_MAX:
                    raise ValueError(f"fare version {i}: at most {FARE_CAPS_MAX} caps and {FARE_TIERS_MAX} tiers")
                ev = FareEvaluator(tt.fares)
                keep.append(ev)
                tv.ft = &ev.t
                tv.effective_from_us = tt.effective_from_us
                tv.n_codes = len(tt.rider_category_of_code)
                tv.rider_category_of_code = <int32_t*>_arr_ptr(keep, tt.rider_category_of_code, i32)
                tv.fare_media = tt.fare_media
                tv.journey_break_us = tt.journey_break_us
                tv.day_start_s = tt.day_start_s
                tv.route_operator = <uint64_t*>_arr_ptr(keep, tt.route_operator, u64)
                tv.network_mode = <uint8_t*>_arr_ptr(keep, tt.network_mode, u8)
                tv.gate_max_fare_fen = <int64_t*>_arr_ptr(keep, tt.gate_max_fare_fen, i64)
                tv.gate_timeout_us = <int64_t*>_arr_ptr(keep, tt.gate_timeout_us, i64)
                tv.gate_incomplete_fen = <int64_t*>_arr_ptr(keep, tt.gate_incomplete_fen, i64)
                tv.gate_same_station_fen = <int64_t*>_arr_ptr(keep, tt.gate_same_station_fen, i64)
                tv.network_allowance_fen = <int64_t*>_arr_ptr(keep, tt.network_allowance_fen, i64)
                tv.product_allowance_fen = <int64_t*>_arr_ptr(keep, tt.product_allowance_fen, i64)
                tv.n_caps = len(tt.cap_period)
                tv.cap_period = <int32_t*>_arr_ptr(keep, tt.cap_period, i32)
                tv.cap_amount_fen = <int64_t*>_arr_ptr(keep, tt.cap_amount_fen, i64)
                tv.cap_category = <uint8_t*>_arr_ptr(keep, tt.cap_category, u8)
                tv.cap_network = <uint8_t*>_arr_ptr(keep, tt.cap_network, u8)
                tv.cap_category_w = _mask_width(tt.cap_category)
                tv.cap_network_w = _mask_width(tt.cap_network)
                tv.n_tiers = len(tt.tier_percent_off)
                tv.tier_from_fen = <int64_t*>_arr_ptr(keep, tt.tier_from_fen, i64)
                tv.tier_until_fen = <int64_t*>_arr_ptr(keep, tt.tier_until_fen, i64)
                tv.tier_percent_off = <int32_t*>_arr_ptr(keep, tt.tier_percent_off, i32)
                tv.tier_category = <uint8_t*>_arr_ptr(keep, tt.tier_category, u8)
                tv.tier_network = <uint8_t*>_arr_ptr(keep, tt.tier_network, u8)
                tv.tier_category_w = _mask_width(tt.tier_category)
                tv.tier_network_w = _mask_width(tt.tier_network)
        except BaseException:
            free(vers)
            raise
        free(self.taps.vers)
        self.taps.vers = vers
        self.taps.n_vers = <int32_t>n
        self._fare_keep = keep

    # ------------------------------------------------------------------ source policies

    def set_policy_versions(self, versions):
        """Install the source policy sets (`policies.PolicyVersion`, oldest first): the
        one in force is the last installed at or before this engine's journal_seq, and a
        SET_POLICIES record switches to its own (docs/policies.md)."""
        self._policy_keep = policies_load(&self.st, &self.pol, versions, self.st.journal_seq)

    def policy_in_force(self):
        """journal_seq of the SET_POLICIES record whose set is in force (0: none was
        ever installed, or the set in force lifts enforcement)."""
        return self.st.policy.journal_seq if self.st.policy != NULL else 0

    def export_journeys(self):
        """Every card's fare state (JOURNEY_DTYPE, by account id)."""
        cdef Py_ssize_t i, k, n = self.taps.n_journeys
        out = np.empty(n, dtype=JOURNEY_DTYPE)
        cdef Journey* o = <Journey*>cnp.PyArray_DATA(out)
        if n:
            memcpy(o, self.taps.journeys, n * sizeof(Journey))
        for i in range(n):  # legs past n_legs read as zeros, as the reference exports them
            for k in range(o[i].n_legs, JOURNEY_LEGS_MAX_C):
                memset(&o[i].legs[k], 0, sizeof(FareLeg))
        return out[np.argsort(out["account_id"], kind="stable")]

    def snapshot_journeys(self, buf=None, bint clear_unused=True):
        """Every card's fare state (JOURNEY_DTYPE) for a checkpoint: `export_journeys`
        in the store's own order, without its sort (a sort of a million 336-byte rows
        stalls the batch that takes the checkpoint), written into `buf` when it holds
        enough rows. `load_journeys` takes the rows in any order.

        With clear_unused=False the legs past each row's n_legs keep what the store
        holds there, and `clear_unused_legs` must clear them before the rows are stored:
        the checkpoint thread does, off the batch that takes the snapshot (for a million
        cards the clearing is most of the snapshot's time)."""
        cdef Py_ssize_t n = self.taps.n_journeys
        out = _copied_rows(buf, self.taps.journeys, n, sizeof(Journey), JOURNEY_DTYPE)
        cdef Journey* o = <Journey*>cnp.PyArray_DATA(out)
        if clear_unused:
            clear_legs_past_n(o, n)
        return out

    def clear_unused_legs(self, journeys):
        """Zero, in place, the legs past each row's n_legs of JOURNEY_DTYPE rows (as
        `export_journeys` gives them); see `snapshot_journeys`. Touches no engine state."""
        if not (isinstance(journeys, np.ndarray) and journeys.dtype == JOURNEY_DTYPE
                and journeys.flags.c_contiguous and journeys.flags.writeable):
            raise ValueError("clear_unused_legs: a writable contiguous JOURNEY_DTYPE array is needed")
        cdef Journey* o = <Journey*>cnp.PyArray_DATA(journeys)
        cdef Py_ssize_t n = len(journeys)
        with nogil:
            clear_legs_past_n(o, n)

    cdef void _settle_snapshot(self) noexcept:
        """Finish a snapshot being taken (`snapshot_begin`) before the tables are
        replaced or moved wholesale."""
        with nogil:
            cow_copy_all(&self._cow_acc)
            cow_copy_all(&self._cow_jny)

    def snapshot_begin(self, accounts_buf=None, journeys_buf=None, pending_buf=None):
        """Begin a checkpoint's snapshot of the state as it is now: (accounts, pending,
        journeys), the rows as `export_checkpoint(sort=False)` and
        `snapshot_journeys(clear_unused=False)` give them.

        Only the holds are copied here. The accounts and journeys are copied on write:
        `snapshot_complete` (the checkpoint writer's thread) copies their rows into the
        returned arrays while later batches run, and a batch about to change a row that
        is not copied yet copies it first. The arrays hold the snapshot only once
        `snapshot_complete` has returned. They are written into `accounts_buf`,
        `journeys_buf` and `pending_buf` when those are large enough (buffers reused
        across checkpoints cost no page faults). A snapshot still being taken is
        finished first.
        """
        self._settle_snapshot()
        cdef Py_ssize_t n_acc = self.st.n_accounts, n_jny = self.taps.n_journeys
        accounts = _prefix_or_new(accounts_buf, n_acc, ACCOUNT_DTYPE)
        journeys = _prefix_or_new(journeys_buf, n_jny, JOURNEY_DTYPE)
        pending = _copied_rows(pending_buf, self.st.pending, self.st.n_pending, sizeof(Pending), PENDING_DTYPE)
        self._cow_keep = (accounts, journeys)
        if (cow_begin(&self._cow_acc, self.st.accounts, n_acc, cnp.PyArray_DATA(accounts), sizeof(Account)) != 0
                or cow_begin(&self._cow_jny, self.taps.journeys, n_jny, cnp.PyArray_DATA(journeys),
                             sizeof(Journey)) != 0):
            cow_copy_all(&self._cow_acc)
            raise MemoryError("cardledger core: cannot allocate a snapshot")
        return accounts, pending, journeys

    def snapshot_complete(self):
        """Copy the rows of the snapshot `snapshot_begin` started that no batch has
        copied yet; on return its arrays hold the snapshot. Runs without the GIL, beside
        the batches (the checkpoint writer's thread calls it); nothing to do if no
        snapshot is being taken."""
        self._settle_snapshot()

    def snapshot_pending(self):
        """Whether a snapshot begun by `snapshot_begin` is still being copied."""
        return bool(cl_load_int(&self._cow_acc.active) or cl_load_int(&self._cow_jny.active))

    def load_journeys(self, journeys):
        """Replace every card's fare state (as `export_journeys` gives)."""
        cdef cnp.ndarray a = np.ascontiguousarray(journeys, dtype=JOURNEY_DTYPE)
        cdef Py_ssize_t i, k, n = len(a)
        cdef Journey* rows = <Journey*>cnp.PyArray_DATA(a)
        cdef Journey j
        cdef int64_t idx
        cdef int32_t nl
        for i in range(n):
            if rows[i].account_id == 0:
                raise ValueError("load_journeys: account_id 0 is not a card")
        self._settle_snapshot()
        taps_free_journeys(&self.taps)
        self.taps.jmap = <Slot*>calloc(MAP_SLOTS_INITIAL, sizeof(Slot))
        if self.taps.jmap == NULL:
            raise MemoryError("cardledger core: cannot allocate the journeys")
        self.taps.jmap_mask = MAP_SLOTS_INITIAL - 1
        for i in range(n):
            j = rows[i]
            # Journey.from_row keeps row["legs"][:n_legs] (Python slice bounds)
            nl = j.n_legs
            if nl < 0:
                nl = JOURNEY_LEGS_MAX_C + nl if nl > -JOURNEY_LEGS_MAX_C else 0
            if nl > JOURNEY_LEGS_MAX_C:
                nl = JOURNEY_LEGS_MAX_C
            j.n_legs = nl
            for k in range(JOURNEY_LEGS_MAX_C):
                if k < nl:
                    j.legs[k].reserved = 0
                else:
                    memset(&j.legs[k], 0, sizeof(FareLeg))
            idx = journey_find(&self.taps, j.account_id)
            if idx < 0:
                if journey_reserve(&self.taps, n if n > self.st.n_accounts else self.st.n_accounts) != 0:
                    raise MemoryError("cardledger core: cannot allocate the journeys")
            journey_store(&self.taps, idx, &j)

    def journey_count(self):
        """Number of cards with fare state."""
        return self.taps.n_journeys

    def journey_capacity(self):
        """Journeys the store holds room for (it grows at once to the number of cards)."""
        return self.taps.cap_journeys

    def reserve_journeys(self, int64_t n):
        """Grow the journey store (and its map) to hold n journeys now, as the first
        tap past its room would, and the hold map for the metro entries of one card in
        HOLDS_RESERVED_CARDS_PER_HOLD, so that no batch pays for them. MemoryError if
        refused."""
        self._settle_snapshot()  # the store may move
        if (grow(<void**>&self.taps.journeys, &self.taps.cap_journeys, n, sizeof(Journey)) != 0
                or journey_map_reserve(&self.taps) != 0):
            raise MemoryError("cardledger core: cannot allocate the journeys")
        # Metro entries hold their maximum fare until the exit: room for a share of the
        # cards' holds at once, so the hold map does not rehash on the batch path.
        if (grow(<void**>&self.st.pending, &self.st.cap_pending, n // HOLDS_RESERVED_CARDS_PER_HOLD, sizeof(Pending)) != 0
                or map2_reserve(&self.st.pmap, &self.st.pmap_mask, n // HOLDS_RESERVED_CARDS_PER_HOLD) != 0
                # and the cards' hold lists (holdidx.pxi): two nodes a hold
                or grow(<void**>&self.st.hlink, &self.st.cap_hlink, 2 * (n // HOLDS_RESERVED_CARDS_PER_HOLD), sizeof(HoldLink)) != 0):
            raise MemoryError("cardledger core: cannot allocate the hold map")

    def prefault_journeys(self):
        """Fault in the pages of the journey store's room not written yet (for a thread
        beside the batches: first taps otherwise fault them in the batch loop, a
        measurable share of the peak's loop). Only asks the kernel to back the pages (MADV_POPULATE_WRITE:
        their contents stay as they are), so racing the batch loop, or even a store
        moved meanwhile, is harmless; where the kernel refuses, nothing happens.

        The range is populated PREFAULT_STEP_BYTES at a time: one call over a city's
        store holds the process's memory-map lock for its whole length, and every
        mmap/munmap of the batch thread meanwhile (numpy's large arrays) waits for it:
        the peak's slowest batch, before it was sliced (docs/performance-log.md)."""
        cdef size_t page = 1 << 21
        cdef size_t start = <size_t>(<char*>self.taps.journeys + self.taps.n_journeys * sizeof(Journey))
        cdef size_t end = <size_t>(<char*>self.taps.journeys + self.taps.cap_journeys * sizeof(Journey))
        cdef size_t step
        start = (start + page - 1) & ~(page - 1)
        end = end & ~(<size_t>4095)
        if self.taps.journeys == NULL or end <= start:
            return
        with nogil:
            while start < end:
                step = min(<size_t>PREFAULT_STEP_BYTES, end - start)
                if madvise(<void*>start, step, MADV_POPULATE_WRITE) != 0:
                    break  # refused (an old kernel) or the store moved: stop asking
                start += step

    # ------------------------------------------------------------------ state I/O

    @property
    def journal_seq(self):
        """Last journal_seq assigned."""
        return self.st.journal_seq

    @property
    def recent_count(self):
        """Number of decisions held in memory since the last checkpoint."""
        return self.st.n_dec

    def hash_runs(self):
        """The longest run of occupied slots in each of the core's hash tables that ops
        fill, by name (accounts, sources, holds, window, gaps, journeys, card_offers,
        purchases; not the offer versions' merchant tables, built at install): the most
        slots a lookup of a missing key walks there. A check of how evenly the
        keyed hash spreads ids (tests, benches); reads every table whole. The pure
        engine has no such tables."""
        cdef State* st = &self.st
        return {
            "accounts": longest_run(<char*>st.amap, st.amap_mask, sizeof(Slot)),
            "sources": longest_run(<char*>st.smap, st.smap_mask, sizeof(Slot)),
            "holds": longest_run(<char*>st.pmap, st.pmap_mask, sizeof(Slot2)),
            "window": longest_run(<char*>st.rmap, st.rmap_mask, sizeof(uint64_t)),
            "gaps": longest_run(<char*>st.gmap, st.gmap_mask, sizeof(Slot2)),
            "journeys": longest_run(<char*>self.taps.jmap, self.taps.jmap_mask, sizeof(Slot)),
            "card_offers": longest_run(<char*>self.offers.cmap, self.offers.cmap_mask, sizeof(Slot2)),
            "purchases": longest_run(<char*>self.offers.bmap, self.offers.bmap_mask, sizeof(Slot2)),
        }

    def account_count(self):
        """Number of accounts ever opened (closed ones included)."""
        return self.st.n_accounts

    def load_checkpoint(self, accounts, sources, pending, journal_seq):
        """Replace the whole state by a checkpoint (arrays as `export_checkpoint` gives)."""
        cdef cnp.ndarray a = np.ascontiguousarray(accounts, dtype=ACCOUNT_DTYPE)
        cdef cnp.ndarray s = np.ascontiguousarray(sources, dtype=SOURCE_DTYPE)
        cdef cnp.ndarray p = np.ascontiguousarray(pending, dtype=PENDING_DTYPE)
        self._settle_snapshot()
        state_free(&self.st)
        memset(&self.st, 0, sizeof(State))
        self.st.taps = &self.taps  # journeys and fare versions survive, as in the reference
        self.st.offers = &self.offers  # and so does the offer state (load_offer_state)
        self.st.cow = &self._cow_acc
        self.st.pol = &self.pol  # and so do the policy sets
        self.st.default_cap_fen = self.default_cap_fen
        if state_init(&self.st) != 0:
            raise MemoryError("cardledger core: cannot allocate the state")
        if state_load(&self.st, <Account*>cnp.PyArray_DATA(a), len(a),
                      <Source*>cnp.PyArray_DATA(s), len(s),
                      <Pending*>cnp.PyArray_DATA(p), len(p)) != 0:
            raise MemoryError("cardledger core: cannot allocate the state")
        self.st.journal_seq = journal_seq
        self.st.policy = policies_choose(&self.pol, journal_seq)

    def export_checkpoint(self, accounts_out=None, bint sort=True):
        """Return (accounts in creation order, sources by id, pending holds by id).

        With `accounts_out` (an ACCOUNT_DTYPE array at least as long as the account
        count), the accounts are copied into its prefix, which is returned: a buffer
        reused across checkpoints costs no page faults. With sort=False the sources and
        holds come in the store's order (`load_checkpoint` takes any): sorting a busy
        metro's open holds stalled the batch that takes a checkpoint.
        """
        accounts = _copied_rows(accounts_out, self.st.accounts, self.st.n_accounts, sizeof(Account), ACCOUNT_DTYPE)
        sources = self.export_sources()
        pending = _copied_rows(None, self.st.pending, self.st.n_pending, sizeof(Pending), PENDING_DTYPE)
        if sort:
            sources = sources[np.argsort(sources["source"], kind="stable")]
            pending = pending[np.lexsort((pending["seq"], pending["source"]))]
        return accounts, sources, pending

    def export_sources(self):
        """The per-source idempotency state (SOURCE_DTYPE), in the store's order:
        `store.ids.encode_ids_state` sorts it by source id, off the batch path (sorting
        here cost every flushing batch)."""
        return _copied_rows(None, self.st.sources, self.st.n_sources, sizeof(Source), SOURCE_DTYPE)

    def take_decisions(self):
        """Hand over the decisions made since the last call and forget them.

        Returns (decisions, late) as the reference engine does: decisions sorted by
        (source, seq). Grouping is a stable counting sort by source; within a source
        the few late decisions are then moved into place (`sort_late_decisions`).
        """
        cdef Py_ssize_t i, n = self.st.n_dec, ns = self.st.n_sources
        cdef int64_t si, pos
        cdef cnp.ndarray src_ids = np.empty(ns, dtype=np.uint64)
        cdef uint64_t[::1] sid = src_ids
        for i in range(ns):
            sid[i] = self.st.sources[i].source
        cdef int64_t[::1] rank_of = np.empty(ns, dtype=np.int64)
        order = np.argsort(src_ids)  # (source ids are unique: no need for a stable sort)
        cdef int64_t[::1] ordv = order.astype(np.int64, copy=False)
        for i in range(ns):
            rank_of[ordv[i]] = i
        cdef int64_t[::1] start = np.zeros(ns + 1, dtype=np.int64)
        cdef int32_t* src_idx = self.st.wsrc
        cdef uint64_t* seqs = self.st.wseq
        for i in range(n):
            start[rank_of[src_idx[i]] + 1] += 1
        for i in range(ns):
            start[i + 1] += start[i]
        decisions = np.empty(n, dtype=DECISION_DTYPE)
        late = np.empty(n, dtype=np.bool_)
        cdef uint64_t[:, ::1] d = decisions.view(np.uint64).reshape(n, 3)
        cdef cnp.uint8_t[::1] lt = late.view(np.uint8)
        for i in range(n):
            si = src_idx[i]
            pos = start[rank_of[si]]
            start[rank_of[si]] += 1
            d[pos, 0] = self.st.sources[si].source
            d[pos, 1] = seqs[i]
            d[pos, 2] = self.st.wfirst_jseq + i
            lt[pos] = 1 if seqs[i] <= self.st.sources[si].checkpoint_seq else 0
        for i in range(ns):
            self.st.sources[i].checkpoint_seq = self.st.sources[i].last_seq
        window_clear(&self.st)
        if n > 1:
            with nogil:
                sort_late_decisions(&d[0, 0], &lt[0], n)
        return decisions, late

    # ------------------------------------------------------------------ queries

    def get_account(self, uint64_t account_id):
        """The account's record as a tuple (ACCOUNT_DTYPE order), or None."""
        cdef int64_t i = account_find(&self.st, account_id)
        if i < 0:
            return None
        out = np.empty(1, dtype=ACCOUNT_DTYPE)
        memcpy(cnp.PyArray_DATA(out), &self.st.accounts[i], sizeof(Account))
        return out[0].item()

    # ------------------------------------------------------------------ batches

    def candidates(self, ops):
        """Mask of ops whose id may have been decided before the in-memory window."""
        cdef cnp.ndarray arr = ops
        cdef Py_ssize_t i, n = len(arr)
        cdef Op* o = <Op*>cnp.PyArray_DATA(arr)
        out = np.zeros(n, dtype=np.bool_)
        cdef cnp.uint8_t[::1] m = out.view(np.uint8)
        cdef Source* s
        for i in range(n):
            s = source_find(&self.st, o[i].source)
            if (s != NULL and o[i].seq <= s.last_seq and recent_find(&self.st, o[i].source, o[i].seq) < 0
                    and not gaps_known_new(&self.st, s, o[i].seq)):
                m[i] = 1
        return out

    def recent_decisions(self, ops):
        """The decisions held in the window of these ops' ids: (records JOURNAL_DTYPE,
        found mask). Ids decided before the window are the store's to find."""
        cdef cnp.ndarray arr = ops
        cdef Py_ssize_t i, n = len(arr)
        cdef Op* o = <Op*>cnp.PyArray_DATA(arr)
        records = np.zeros(n, dtype=JOURNAL_DTYPE)
        found = np.zeros(n, dtype=np.bool_)
        cdef Journal* out = <Journal*>cnp.PyArray_DATA(records)
        cdef cnp.uint8_t[::1] m = found.view(np.uint8)
        cdef int64_t idx
        cdef Journal tmp
        cdef Journal* rec
        for i in range(n):
            idx = recent_find(&self.st, o[i].source, o[i].seq)
            if idx >= 0:
                rec = window_record(&self.st, idx, &tmp)
                if rec == NULL:
                    raise ValueError("cardledger core: a decision in the window does not decode")
                out[i] = rec[0]
                m[i] = 1
        return records, found

    def apply(self, ops, prior=None, has_prior=None, refs=None, bought=None):
        """Apply a batch; return (results RESULT_DTYPE, journal JOURNAL_DTYPE).
        `refs` (REVERSE_REF_DTYPE, one per op): the taps REVERSE ops name; `bought`
        (JOURNAL_DTYPE, one per op): the records of the purchases REFUND ops name,
        decided before the batch (journal_seq 0: none) (spec: Engine.apply)."""
        cdef cnp.ndarray arr = ops
        cdef Py_ssize_t n = len(arr)
        results = np.zeros(n, dtype=RESULT_DTYPE)
        cdef cnp.ndarray pr
        cdef cnp.ndarray hp
        cdef cnp.ndarray rf
        cdef ReverseRef* refs_p = NULL
        if refs is not None:
            rf = np.ascontiguousarray(refs, dtype=REVERSE_REF_DTYPE)
            if len(rf) != n:
                raise ValueError("refs must have one row per op")
            refs_p = <ReverseRef*>cnp.PyArray_DATA(rf)
        cdef cnp.ndarray bo
        cdef Journal* bought_p = NULL
        if bought is not None:
            bo = np.ascontiguousarray(bought, dtype=JOURNAL_DTYPE)
            if len(bo) != n:
                raise ValueError("bought must have one row per op")
            bought_p = <Journal*>cnp.PyArray_DATA(bo)
        cdef Journal* prior_p = NULL
        cdef cnp.uint8_t* has_p = NULL
        if has_prior is not None:
            pr = np.ascontiguousarray(prior, dtype=JOURNAL_DTYPE)
            hp = np.ascontiguousarray(has_prior, dtype=np.uint8)
            prior_p = <Journal*>cnp.PyArray_DATA(pr)
            has_p = <cnp.uint8_t*>cnp.PyArray_DATA(hp)
        cdef Op* ops_p = <Op*>cnp.PyArray_DATA(arr)
        if window_reserve(&self.st, n) != 0 or undo_reserve(&self.st, 16) != 0:
            raise MemoryError("cardledger core: cannot grow the decisions window")
        window_begin_batch(&self.st)
        cdef Result* res_p = <Result*>cnp.PyArray_DATA(results)
        cdef int rc
        # The batch loop touches no Python object: other threads (a gateway's event
        # loop, the checkpoint writer) run meanwhile. The Ledger serialises callers.
        # A small batch keeps the GIL: its loop is shorter than the wait to take the
        # GIL back from a busy event loop (group commit's batches are small).
        if n >= NOGIL_OPS_MIN:
            with nogil:
                rc = apply_batch(&self.st, ops_p, n, prior_p, has_p, res_p, refs_p, bought_p)
        else:
            rc = apply_batch(&self.st, ops_p, n, prior_p, has_p, res_p, refs_p, bought_p)
        if rc != 0:
            raise MemoryError("cardledger core: out of memory while applying a batch")
        cdef Py_ssize_t nj = self.st.n_tail
        journal = np.empty(nj, dtype=JOURNAL_DTYPE)
        if nj:
            memcpy(cnp.PyArray_DATA(journal), self.st.tail, nj * sizeof(Journal))
        window_end_batch(&self.st)
        return results, journal

    def decided_records(self, sources, seqs):
        """The journal records of the ids (sources[i], seqs[i]) decided in the in-memory
        window, and a mask of those found (spec: Engine.decided_records)."""
        cdef cnp.ndarray src = np.ascontiguousarray(sources, dtype=np.uint64)
        cdef cnp.ndarray sq = np.ascontiguousarray(seqs, dtype=np.uint64)
        cdef Py_ssize_t i, n = len(src)
        out = np.zeros(n, dtype=JOURNAL_DTYPE)
        found = np.zeros(n, dtype=bool)
        cdef uint64_t* s_p = <uint64_t*>cnp.PyArray_DATA(src)
        cdef uint64_t* q_p = <uint64_t*>cnp.PyArray_DATA(sq)
        cdef Journal* o = <Journal*>cnp.PyArray_DATA(out)
        cdef cnp.uint8_t* f = <cnp.uint8_t*>cnp.PyArray_DATA(found)
        cdef int64_t idx
        cdef Journal tmp
        cdef Journal* rec
        for i in range(n):
            idx = recent_find(&self.st, s_p[i], q_p[i])
            if idx >= 0:
                rec = window_record(&self.st, idx, &tmp)
                if rec != NULL:
                    o[i] = rec[0]
                    f[i] = 1
        return out, found

    def last_batch_packed(self):
        """The journal records of the batch `apply` just ran, packed as the journal
        stores them (`pack_journal` of its journal array, byte for byte). Take it
        before anything else changes the window (the next apply, take_decisions)."""
        return PyBytes_FromStringAndSize(<char*>self.st.wbytes + self.st.wlast_batch_off,
                                         self.st.wbytes_used - self.st.wlast_batch_off)

    def last_batch_marks(self, int64_t stride):
        """Where every stride-th record of `last_batch_packed` starts, as
        `journal_record_marks` of those bytes gives it, from what the packer noted (a
        resent op's lookup then decodes its record without walking the batch)."""
        if stride <= 0:
            raise ValueError("last_batch_marks: stride must be positive")
        cdef int64_t base = self.st.wlast_batch_base
        cdef int64_t n = self.st.n_dec - base if self.st.n_dec > base else 0
        out = np.zeros(((n + stride - 1) // stride, 3), dtype=np.uint64)
        cdef uint64_t[:, ::1] m = out
        cdef int64_t k, idx
        for k in range(m.shape[0]):
            idx = base + k * stride
            m[k, 0] = <uint64_t>(self.st.woff[idx] - self.st.wlast_batch_off)
            m[k, 1] = self.st.wptime[idx]
            m[k, 2] = self.st.wfirst_jseq + <uint64_t>idx - 1
        return out

    def replay(self, journal):
        """Re-apply journal records in order, as decided (used on open and by verify).

        Raises ValueError if the journal does not replay to the same figures.
        """
        cdef cnp.ndarray arr = np.ascontiguousarray(journal, dtype=JOURNAL_DTYPE)
        cdef Py_ssize_t n = len(arr)
        if window_reserve(&self.st, n) != 0 or undo_reserve(&self.st, 16) != 0:
            raise MemoryError("cardledger core: cannot grow the decisions window")
        window_begin_batch(&self.st)
        # A tap decided before is replayed whatever the clock says now, and settles
        # nothing on its own: a settlement is a record of its own, replayed as such.
        self.st.settle_on = 0
        cdef int64_t horizon = self.st.tap_horizon_us
        self.st.tap_horizon_us = INT64_MAX_
        cdef int64_t bad = replay_records(&self.st, <Journal*>cnp.PyArray_DATA(arr), n)
        self.st.tap_horizon_us = horizon
        window_end_batch(&self.st)
        if bad == -2:
            raise MemoryError("cardledger core: out of memory during replay")
        if bad >= 0:
            raise ValueError(f"journal record {arr[bad]['journal_seq']} does not replay to its recorded figures")
