# Known gaps: which seqs below a source's highest are still undecided.
#
# Terminals issue increasing seqs, so an op above its source's last_seq is new. An op
# at or below it is a resend or a late upload (an offline validator's backlog), and
# before gaps were tracked each such op cost an id lookup in LMDB, which for a late
# upload finds nothing, and an offline validator's backlog is many such ops a batch. A source that
# jumps from last_seq to seq records the skipped seqs here; deciding one removes it.
# So for a seq in [gap_floor, last_seq]: in the set means new, not in it means decided
# (found in the window or by a lookup). Below gap_floor nothing is known and the
# lookup decides, as before: the set only saves lookups, never answers in their place.
#
# The set is bounded: a jump longer than GAP_JUMP_TRACKED_MAX is not tracked (the
# source's floor moves up past it), and a full set is emptied (every floor moves up
# to its source's last_seq + 1). So is its cost: a batch of n ops records at most
# GAP_BUDGET_PER_OP * n + GAP_JUMP_TRACKED_MAX skipped seqs (gaps_budget), and a jump
# past what is left is not tracked either. A checkpoint does not store the set
# (state_load).


cdef inline void gaps_budget(State* st, int64_t n_ops) noexcept nogil:
    """A batch (or a replay) of n_ops ops begins: what it may record (gaps_on_decide)."""
    st.gap_budget = GAP_BUDGET_PER_OP * n_ops + GAP_JUMP_TRACKED_MAX


cdef int gaps_source_added(State* st, int64_t si, uint64_t seq) noexcept nogil:
    """A new source whose first decided seq is `seq`: nothing below it is known."""
    if grow(<void**>&st.gap_floor, &st.cap_gap_floor, si + 1, sizeof(uint64_t)) != 0:
        return -1
    st.gap_floor[si] = seq
    return 0


cdef int gaps_reset(State* st) noexcept nogil:
    """Forget every tracked gap: the lookups decide those seqs again."""
    cdef int64_t i
    cdef Slot2* t = <Slot2*>calloc(MAP_SLOTS_INITIAL, sizeof(Slot2))
    if t == NULL:
        return -1
    free(st.gmap)
    st.gmap = t
    st.gmap_mask = MAP_SLOTS_INITIAL - 1
    st.gmap_used = 0
    for i in range(st.n_sources):
        st.gap_floor[i] = st.sources[i].last_seq + 1
    return 0


cdef int gaps_on_decide(State* st, int64_t si, uint64_t last_seq, uint64_t seq) noexcept nogil:
    """Source si (whose last_seq was `last_seq`) decided `seq`: track what it skipped,
    or strike `seq` off. -1 when out of memory."""
    cdef uint64_t gap, q
    if seq > last_seq:
        gap = seq - last_seq - 1
        if gap == 0:
            return 0
        if gap > GAP_JUMP_TRACKED_MAX or <int64_t>gap > st.gap_budget:
            st.gap_floor[si] = seq
            return 0
        st.gap_budget -= <int64_t>gap
        CL_ASSERT(st.gap_budget >= 0, "a batch records no more skipped seqs than its budget")
        if st.gmap_used + <int64_t>gap > GAPS_TRACKED_MAX:
            if gaps_reset(st) != 0:
                return -1
            st.gap_floor[si] = seq
            return 0
        q = last_seq + 1
        while q < seq:
            if map2_insert(&st.gmap, &st.gmap_mask, &st.gmap_used, st.sources[si].source, q, 0) != 0:
                return -1
            q += 1
        CL_ASSERT(st.gmap_used <= GAPS_TRACKED_MAX, "the known gaps are bounded")
        CL_ASSERT(st.gap_floor[si] <= last_seq + 1, "a tracked gap lies above its source's floor")
        return 0
    if st.gmap_used != 0 and seq >= st.gap_floor[si]:
        map2_delete(st.gmap, st.gmap_mask, &st.gmap_used, st.sources[si].source, seq)
    return 0


cdef inline bint gaps_known_new(State* st, Source* s, uint64_t seq) noexcept nogil:
    """Whether seq (at or below s.last_seq) is a tracked gap: undecided, so new."""
    return (st.gmap_used != 0 and seq >= st.gap_floor[s - st.sources]
            and map2_find(st.gmap, st.gmap_mask, s.source, seq) >= 0)
