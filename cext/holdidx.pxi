# The holds of each account: CLOSE and REPLACE release every hold of the account
# (void_holds_of, handlers.pxi), and without an index that walks every hold in the
# ledger, a cost a sender can repeat at will with a LINKED chain that fails
# (docs/performance-log.md, "Hostile shapes"). Here each account's holds are a doubly
# linked list, so finding them costs what the account holds.
#
# Every hold i of `st.pending` has two nodes in `st.hlink`: node 2*i, its debit side,
# in the list of pending[i].debit_id, and node 2*i + 1, its credit side, in the list of
# pending[i].credit_id. `st.hmap` maps an account id to the head node of its list; an
# account with no hold is not in it, and neither is id 0 (a reversed tap's mark, a hold
# of no account, is in no list). The lists follow the table's every change: a hold
# added (pending_add, a rolled back removal), removed (pending_remove_raw: the swap
# moves the last hold's nodes into the hole), the table loaded (state_load). Nothing
# here is stored, exported or snapshot: readers never look holds up by account.

from libc.stdlib cimport qsort


cdef inline Slot* map1_slot(Slot* t, uint64_t mask, uint64_t key) noexcept nogil:
    """The slot holding key (NULL if none), to change its value in place."""
    cdef uint64_t i = mix64(key) & mask
    while t[i].key != 0:
        if t[i].key == key:
            return &t[i]
        i = (i + 1) & mask
    return NULL


cdef int map1_reserve(Slot** tp, uint64_t* maskp, int64_t n) noexcept nogil:
    """Grow the map now to hold n keys at most half full (no rehash until then)."""
    cdef uint64_t slots = maskp[0] + 1, new_mask, i
    cdef Slot* old
    cdef Slot* t
    if <int64_t>slots >= 2 * n:
        return 0
    while <int64_t>slots < 2 * n:
        slots *= 2
    new_mask = slots - 1
    t = <Slot*>big_calloc(slots, sizeof(Slot))
    if t == NULL:
        return -1
    old = tp[0]
    for i in range(maskp[0] + 1):
        if old[i].key != 0:
            map1_put(t, new_mask, old[i].key, old[i].val)
    free(old)
    tp[0] = t
    maskp[0] = new_mask
    return 0


cdef int holdidx_reserve(State* st, int64_t n_holds) noexcept nogil:
    """Room for the nodes of n_holds holds, and for the two accounts of one more hold
    in the map, so that linking it cannot fail."""
    if grow(<void**>&st.hlink, &st.cap_hlink, 2 * n_holds, sizeof(HoldLink)) != 0:
        return -1
    if (st.hmap_used + 2) * 2 > <int64_t>(st.hmap_mask + 1):
        return map1_reserve(&st.hmap, &st.hmap_mask, 2 * (st.hmap_used + 2))
    return 0


cdef inline void holdidx_link(State* st, int64_t node, uint64_t account_id) noexcept nogil:
    """Put the node at the head of the account's list (room reserved: cannot fail)."""
    cdef Slot* h
    if account_id == 0:
        return
    h = map1_slot(st.hmap, st.hmap_mask, account_id)
    st.hlink[node].prev = -1
    if h == NULL:
        st.hlink[node].next = -1
        CL_ASSERT((st.hmap_used + 1) * 2 <= <int64_t>(st.hmap_mask + 1), "a linked hold's account fits the map without growing it")
        map1_put(st.hmap, st.hmap_mask, account_id, node)
        st.hmap_used += 1
    else:
        st.hlink[node].next = h.val
        st.hlink[h.val].prev = node
        h.val = node


cdef inline void holdidx_unlink(State* st, int64_t node, uint64_t account_id) noexcept nogil:
    """Take the node out of the account's list (the account leaves the map with its last)."""
    cdef int64_t p, n
    cdef Slot* h
    if account_id == 0:
        return
    p = st.hlink[node].prev
    n = st.hlink[node].next
    if p >= 0:
        st.hlink[p].next = n
    else:
        h = map1_slot(st.hmap, st.hmap_mask, account_id)
        CL_ASSERT(h != NULL, "an account with a node is in the hold lists' map")
        CL_ASSERT(h.val == node, "a node without a previous one heads its account's list")
        if n >= 0:
            h.val = n
        else:
            map1_delete(st.hmap, st.hmap_mask, &st.hmap_used, account_id)
    if n >= 0:
        st.hlink[n].prev = p


cdef inline void holdidx_move(State* st, int64_t src, int64_t dst, uint64_t account_id) noexcept nogil:
    """Node src becomes node dst, in the same place of the account's list."""
    cdef Slot* h
    if account_id == 0:
        return
    st.hlink[dst] = st.hlink[src]
    if st.hlink[dst].prev >= 0:
        st.hlink[st.hlink[dst].prev].next = dst
    else:
        h = map1_slot(st.hmap, st.hmap_mask, account_id)
        CL_ASSERT(h != NULL, "an account with a node is in the hold lists' map")
        CL_ASSERT(h.val == src, "a node without a previous one heads its account's list")
        h.val = dst
    if st.hlink[dst].next >= 0:
        st.hlink[st.hlink[dst].next].prev = dst


cdef inline void holdidx_add(State* st, int64_t i) noexcept nogil:
    """Link hold i (just written to the table; holdidx_reserve done)."""
    holdidx_link(st, 2 * i, st.pending[i].debit_id)
    holdidx_link(st, 2 * i + 1, st.pending[i].credit_id)


cdef inline void holdidx_remove(State* st, int64_t i) noexcept nogil:
    """Unlink hold i (still in the table)."""
    holdidx_unlink(st, 2 * i, st.pending[i].debit_id)
    holdidx_unlink(st, 2 * i + 1, st.pending[i].credit_id)


cdef inline void holdidx_moved(State* st, int64_t src, int64_t dst) noexcept nogil:
    """Hold src (still in the table at src) is moving to slot dst: move its nodes."""
    holdidx_move(st, 2 * src, 2 * dst, st.pending[src].debit_id)
    holdidx_move(st, 2 * src + 1, 2 * dst + 1, st.pending[src].credit_id)


cdef int holdidx_rebuild(State* st) noexcept nogil:
    """Index every hold of the table anew (the table was loaded whole)."""
    cdef int64_t i
    memset(st.hmap, 0, (st.hmap_mask + 1) * sizeof(Slot))
    st.hmap_used = 0
    if grow(<void**>&st.hlink, &st.cap_hlink, 2 * st.n_pending, sizeof(HoldLink)) != 0:
        return -1
    for i in range(st.n_pending):
        if holdidx_reserve(st, i + 1) != 0:
            return -1
        holdidx_add(st, i)
    return 0


cdef int cmp_desc_i64(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const int64_t*>a)[0]
    cdef int64_t y = (<const int64_t*>b)[0]
    return (x < y) - (x > y)


cdef int64_t holds_of(State* st, uint64_t account_id) noexcept nogil:
    """The table indexes of the account's holds into st.hscratch, each once, largest
    first; their number, or -1 if there is no room."""
    cdef int64_t node, n = 0, k, m
    cdef Slot* h = map1_slot(st.hmap, st.hmap_mask, account_id) if account_id != 0 else NULL
    if h == NULL:
        return 0
    node = h.val
    while node >= 0:
        if n >= st.cap_hscratch:
            if grow(<void**>&st.hscratch, &st.cap_hscratch, n + 1, sizeof(int64_t)) != 0:
                return -1
        st.hscratch[n] = node >> 1
        n += 1
        node = st.hlink[node].next
    qsort(st.hscratch, n, sizeof(int64_t), cmp_desc_i64)
    # A hold of the account on both sides has both its nodes in the list: keep it once.
    m = 0
    for k in range(n):
        if m == 0 or st.hscratch[m - 1] != st.hscratch[k]:
            st.hscratch[m] = st.hscratch[k]
            m += 1
    return m


cdef int64_t debug_holds_of_count(State* st, uint64_t account_id) noexcept nogil:
    """The number of holds that involve the account, by walking every hold."""
    cdef int64_t i, n = 0
    for i in range(st.n_pending):
        if st.pending[i].debit_id == account_id or st.pending[i].credit_id == account_id:
            n += 1
    return n


cdef bint debug_holdidx_ok(State* st) noexcept nogil:
    """Every side of every hold of an account is in its account's list once, and the
    lists hold nothing else (walks every hold and every list)."""
    cdef int64_t i, node, prev, seen = 0, sides = 0
    cdef uint64_t s, owner
    for i in range(st.n_pending):
        if st.pending[i].debit_id != 0:
            sides += 1
        if st.pending[i].credit_id != 0:
            sides += 1
    CL_ASSERT(st.cap_hlink >= 2 * st.n_pending, "every hold has room for its two nodes")
    for s in range(st.hmap_mask + 1):
        if st.hmap[s].key == 0:
            continue
        node = st.hmap[s].val
        prev = -1
        CL_ASSERT(node >= 0, "an account in the hold lists' map has a hold")
        while node >= 0:
            CL_ASSERT(node < 2 * st.n_pending, "a listed node is a side of a hold in the table")
            CL_ASSERT(st.hlink[node].prev == prev, "a listed node's previous one links to it")
            owner = st.pending[node >> 1].credit_id if node & 1 else st.pending[node >> 1].debit_id
            CL_ASSERT(owner == st.hmap[s].key, "a listed node is a side of a hold of the list's account")
            seen += 1
            CL_ASSERT(seen <= sides, "the lists hold no node twice (and no cycle)")
            prev = node
            node = st.hlink[node].next
    CL_ASSERT(seen == sides, "every side of a hold with an account is in its account's list")
    return True
