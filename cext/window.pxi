# The decisions window: every id decided since the last checkpoint, so that a replay
# of a recent id is answered from memory. The current batch's records sit unpacked in
# `tail` (the batch loop reads and rewrites them); at the end of each batch they are
# packed with the journal codec into `wbytes` (about 30 bytes each instead of 168),
# which keeps the window's memory small. They are packed exactly as the journal
# stores the batch, so the ledger stores those bytes (`last_batch_packed`) instead of
# packing the batch a second time. The recent map indexes the window
# by (source, seq): 8-byte slots holding a 32-bit fingerprint and the decision index;
# `whash` keeps each decision's full hash so the map can grow without decoding.

cdef int window_reserve(State* st, int64_t n) noexcept nogil:
    """Room for a batch of n more decisions."""
    if st.n_dec + n >= <int64_t>0xFFFFFFFE:  # indexes live in 32 bits of a map slot
        return -1
    if grow(<void**>&st.tail, &st.cap_tail, n, sizeof(Journal)) != 0:
        return -1
    if grow(<void**>&st.woff, &st.cap_woff, st.n_dec + n, sizeof(int64_t)) != 0:
        return -1
    if grow(<void**>&st.wptime, &st.cap_wptime, st.n_dec + n, sizeof(uint64_t)) != 0:
        return -1
    if grow(<void**>&st.wsrc, &st.cap_wsrc, st.n_dec + n, sizeof(int32_t)) != 0:
        return -1
    if grow(<void**>&st.wseq, &st.cap_wseq, st.n_dec + n, sizeof(uint64_t)) != 0:
        return -1
    if grow(<void**>&st.whash, &st.cap_whash, st.n_dec + n, sizeof(uint64_t)) != 0:
        return -1
    if grow(<void**>&st.wbytes, &st.cap_wbytes, st.wbytes_used + n * RECORD_BYTES_MAX, 1) != 0:
        return -1
    CL_ASSERT(st.cap_tail >= n, "the tail has room for the batch")
    CL_ASSERT(st.cap_woff >= st.n_dec + n, "the window has room for the batch's decisions")
    return 0


cdef int window_reserve_more(State* st, int64_t n_batch) noexcept nogil:
    """Room for this batch to hold n_batch records in all (window_reserve made room for
    one per op; a tap's settlement adds one)."""
    if st.batch_base + n_batch >= <int64_t>0xFFFFFFFE:
        return -1
    if grow(<void**>&st.tail, &st.cap_tail, n_batch, sizeof(Journal)) != 0:
        return -1
    if grow(<void**>&st.woff, &st.cap_woff, st.batch_base + n_batch, sizeof(int64_t)) != 0:
        return -1
    if grow(<void**>&st.wptime, &st.cap_wptime, st.batch_base + n_batch, sizeof(uint64_t)) != 0:
        return -1
    if grow(<void**>&st.wsrc, &st.cap_wsrc, st.batch_base + n_batch, sizeof(int32_t)) != 0:
        return -1
    if grow(<void**>&st.wseq, &st.cap_wseq, st.batch_base + n_batch, sizeof(uint64_t)) != 0:
        return -1
    if grow(<void**>&st.whash, &st.cap_whash, st.batch_base + n_batch, sizeof(uint64_t)) != 0:
        return -1
    if grow(<void**>&st.wbytes, &st.cap_wbytes, st.wbytes_used + n_batch * RECORD_BYTES_MAX, 1) != 0:
        return -1
    CL_ASSERT(st.cap_tail >= n_batch, "the tail has room for the batch's records")
    CL_ASSERT(st.cap_woff >= st.batch_base + n_batch, "the window has room for the batch's decisions")
    return 0


cdef inline void window_begin_batch(State* st) noexcept nogil:
    st.n_tail = 0
    st.batch_base = st.n_dec


cdef void window_end_batch(State* st) noexcept nogil:
    """Pack this batch's records into the window, as the journal stores the batch."""
    st.wlast_batch_off = st.wbytes_used
    st.wlast_batch_base = st.batch_base
    st.wbytes_used += pack_records_marked(<const uint64_t*>st.tail, st.n_tail, st.wbytes + st.wbytes_used,
                                          st.woff + st.batch_base, st.wptime + st.batch_base, st.wbytes_used)
    CL_ASSERT(st.wbytes_used <= st.cap_wbytes, "a packed batch fits the room window_reserve made")
    CL_ASSERT(debug_window_ok(st), "the decisions window agrees with the journal")
    st.n_tail = 0
    st.batch_base = st.n_dec


cdef Journal* window_record(State* st, int64_t idx, Journal* tmp) noexcept nogil:
    """Decision idx's record: in this batch's tail, or decoded from the window into tmp."""
    if idx >= st.batch_base:
        return &st.tail[idx - st.batch_base]
    if unpack_record_from(st.wbytes, st.wbytes_used, st.woff[idx], 0, st.wptime[idx],
                          st.wfirst_jseq + idx - 1, <uint64_t*>tmp) != 0:
        return NULL  # cannot happen: the window packed it
    return tmp


cdef void window_release(State* st) noexcept nogil:
    """Free the window's per-decision arrays (emptied); they grow again on demand."""
    cdef uint64_t* t = <uint64_t*>calloc(MAP_SLOTS_INITIAL, sizeof(uint64_t))
    if t == NULL:
        return  # keep the big map: still correct, only larger
    free(st.rmap)
    st.rmap = t
    st.rmap_mask = MAP_SLOTS_INITIAL - 1
    free(st.wbytes)
    free(st.woff)
    free(st.wptime)
    free(st.whash)
    free(st.wsrc)
    free(st.wseq)
    st.wbytes = NULL
    st.woff = NULL
    st.wptime = NULL
    st.whash = NULL
    st.wsrc = NULL
    st.wseq = NULL
    st.cap_wbytes = 0
    st.cap_woff = 0
    st.cap_wptime = 0
    st.cap_whash = 0
    st.cap_wsrc = 0
    st.cap_wseq = 0


cdef void window_clear(State* st) noexcept nogil:
    if st.cap_woff > WINDOW_KEEP_DECISIONS_MAX:
        window_release(st)
    else:
        memset(st.rmap, 0, (st.rmap_mask + 1) * sizeof(uint64_t))
    st.rmap_used = 0
    st.n_tail = 0
    st.n_dec = 0
    st.batch_base = 0
    st.wbytes_used = 0
    st.wlast_batch_off = 0
    st.wlast_batch_base = 0
    st.wfirst_jseq = 0


cdef inline int64_t recent_find(State* st, uint64_t source, uint64_t seq) noexcept nogil:
    """Decision index of (source, seq) in the window, or -1."""
    cdef uint64_t h = mix128(source, seq)
    cdef uint64_t fp = h >> 32
    cdef uint64_t i = h & st.rmap_mask
    cdef uint64_t slot
    cdef int64_t idx
    cdef Journal tmp
    cdef Journal* rec
    while True:
        slot = st.rmap[i]
        if slot == 0:
            return -1
        if (slot >> 32) == fp:
            idx = <int64_t>(slot & <uint64_t>0xFFFFFFFF) - 1
            if st.whash[idx] == h:
                rec = window_record(st, idx, &tmp)
                if rec != NULL and rec.op.source == source and rec.op.seq == seq:
                    return idx
        i = (i + 1) & st.rmap_mask


cdef inline void recent_put(uint64_t* t, uint64_t mask, uint64_t h, int64_t idx) noexcept nogil:
    cdef uint64_t i = h & mask
    while t[i] != 0:
        i = (i + 1) & mask
    t[i] = ((h >> 32) << 32) | <uint64_t>(idx + 1)


cdef int recent_insert(State* st, uint64_t source, uint64_t seq, int64_t idx) noexcept nogil:
    cdef uint64_t new_mask, i
    cdef uint64_t* t
    cdef int64_t j
    cdef uint64_t h = mix128(source, seq)
    st.whash[idx] = h
    if (st.rmap_used + 1) * 2 > <int64_t>(st.rmap_mask + 1):
        new_mask = (st.rmap_mask + 1) * 2 - 1
        t = <uint64_t*>big_calloc(new_mask + 1, sizeof(uint64_t))
        if t == NULL:
            return -1
        for i in range(st.rmap_mask + 1):
            if st.rmap[i] != 0:
                j = <int64_t>(st.rmap[i] & <uint64_t>0xFFFFFFFF) - 1
                recent_put(t, new_mask, st.whash[j], j)
        free(st.rmap)
        st.rmap = t
        st.rmap_mask = new_mask
    recent_put(st.rmap, st.rmap_mask, h, idx)
    st.rmap_used += 1
    CL_ASSERT(<uint64_t>st.rmap_used * 2 <= st.rmap_mask + 1, "the recent map is at most half full")
    CL_ASSERT(st.rmap_used == idx + 1, "the recent map indexes every decision of the window once")
    return 0
