# The batch loop: idempotency first, then linked chains, then the handlers; and the
# journal replay that rebuilds state on open.

cdef inline bint is_replay_code(uint32_t code) noexcept nogil:
    return code == R_EXISTS or code == R_EXISTS_WITH_DIFFERENT_FIELDS or \
        code == R_ID_ALREADY_FAILED or code == R_INVALID_ID


cdef Journal* decide(State* st, Op* op, int code, Effect* ef, uint64_t jseq) noexcept nogil:
    """Record op's decision: a journal record in the tail, the recent map, the source."""
    cdef Source* s = source_find(st, op.source)
    cdef Journal* rec
    cdef Account* a
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
    if recent_insert(st, op.source, op.seq, st.n_dec) != 0:
        st.oom = 1
        return NULL
    st.wsrc[st.n_dec] = <int32_t>(s - st.sources)
    st.wseq[st.n_dec] = op.seq
    st.n_tail += 1
    st.n_dec += 1
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


cdef inline void prefetch_account(State* st, uint64_t id) noexcept nogil:
    cdef int64_t i = account_find(st, id)
    cdef char* p
    if i >= 0:
        p = <char*>&st.accounts[i]
        CL_PREFETCH(p)
        CL_PREFETCH(p + 64)


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
    last = &st.pending[st.n_pending - 1]
    CL_PREFETCH(&st.pmap[mix128(last.source, last.seq) & st.pmap_mask])


cdef inline Op* op_at(Op* first, int64_t k, size_t stride) noexcept nogil:
    return <Op*>(<char*>first + k * stride)


cdef inline void prefetch_ahead(State* st, Op* first, int64_t k, int64_t n, size_t stride) noexcept nogil:
    """Prefetch for the op PREFETCH_DISTANCE ahead; `stride` steps over ops or journal records."""
    cdef Op* op
    if k + 2 * PREFETCH_DISTANCE < n:
        prefetch_slots(st, op_at(first, k + 2 * PREFETCH_DISTANCE, stride))
    if k + PREFETCH_DISTANCE < n:
        op = op_at(first, k + PREFETCH_DISTANCE, stride)
        prefetch_account(st, op.account_id)
        prefetch_account(st, op.counterparty_id)
        if op.kind == K_TAP:
            prefetch_journey(st, op.account_id)
            # A metro entry adds a hold keyed by its own id.
            CL_PREFETCH(&st.pmap[mix128(op.source, op.seq) & st.pmap_mask])
        CL_PREFETCH(&st.rmap[mix128(op.source, op.seq) & st.rmap_mask])
    if k + HOLD_PREFETCH_DISTANCE < n:
        op = op_at(first, k + HOLD_PREFETCH_DISTANCE, stride)
        if op.kind == K_TAP:
            prefetch_hold(st, op.account_id)
    if k + HOLD_RECORD_PREFETCH_DISTANCE < n:
        op = op_at(first, k + HOLD_RECORD_PREFETCH_DISTANCE, stride)
        if op.kind == K_TAP:
            prefetch_hold_record(st, op.account_id)


cdef void apply_chain(State* st, Op* ops, int64_t lo, int64_t hi, int64_t n, Journal* prior,
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
    st.undo_on = linked
    st.n_undo = 0
    for k in range(lo, hi):
        prefetch_ahead(st, ops, k, n, sizeof(Op))
        op = &ops[k]
        r = &results[k]
        if op.source == 0:
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
            code = execute(st, op, &ef, jseq)
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
    if linked and failed:
        rollback(st)
        if st.oom:
            return
    # Settle the new members: a failed chain turns its successes into LINKED_FAILED;
    # every failed op reports its account's balance after the chain is settled.
    t = first_new
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
        if r.code != R_OK:
            r.balance_fen = balance_or_zero(st, ops[k].account_id)
            rec.balance_fen = r.balance_fen
    st.undo_on = 0
    st.n_undo = 0


cdef int apply_batch(State* st, Op* ops, int64_t n, Journal* prior,
                     unsigned char* has_prior, Result* results) noexcept nogil:
    cdef int64_t i = 0, j
    while i < n:
        # A chain runs from i to the first op without LINKED (or the batch end).
        j = i
        while j < n - 1 and (ops[j].flags & F_LINKED):
            j += 1
        apply_chain(st, ops, i, j + 1, n, prior, has_prior, results)
        if st.oom:
            return -1
        i = j + 1
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
    for i in range(n):
        prefetch_ahead(st, &recs[0].op, i, n, sizeof(Journal))
        rec = &recs[i]
        if rec.journal_seq != st.journal_seq + 1:
            return i
        if rec.code == R_OK:
            code = execute(st, &rec.op, &ef, rec.journal_seq)
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
        if memcmp(got, rec, sizeof(Journal)) != 0:
            return i
    return -1
