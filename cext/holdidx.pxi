# The holds of each card: CLOSE and REPLACE release every hold of the account
# (void_holds_of, handlers.pxi), and without an index that walks every hold in the
# ledger, a cost a sender can repeat at will with a LINKED chain that fails
# (docs/performance-log.md, "Hostile shapes"). Here each card's holds are a doubly
# linked list, so finding them costs what the card holds.
#
# Every hold i of `st.pending` has two nodes in `st.hlink`: node 2*i, its debit side,
# and node 2*i + 1, its credit side. A side whose account is a CARD is in that card's
# list; any other side (an operator's, a merchant's: every metro entry's credit side is
# its operator's; a reversed tap's mark, of account id 0) is in no list, its node
# marked HOLD_UNLISTED. Keeping an operator's list would touch two random nodes at each
# hold's removal, a measurable share of the metro peak, for accounts whose holds are
# most of the ledger's anyway: void_holds_of walks the whole table for those.
# `st.hhead[k]` is the head node of the list of account k (index in `st.accounts`; -1:
# none), and a head node's `prev` names the account instead of a previous node, so
# taking a hold out looks nothing up by id. The lists follow the table's every change: a hold added (pending_add, a
# rolled back removal), removed (pending_remove_raw: the swap moves the last hold's
# nodes into the hole), the table loaded (state_load). Nothing here is stored,
# exported or snapshot: readers never look holds up by account.

from libc.stdlib cimport qsort


cdef enum:
    HOLD_UNLISTED = -2          # HoldLink.prev of a side in no list (its account is no card)
    HOLD_HEAD_BASE = -3         # HoldLink.prev of the head node of account k's list: -3 - k


cdef int holdidx_reserve(State* st, int64_t n_holds) noexcept nogil:
    """Room for the nodes of n_holds holds, and a list head for every account, so that
    linking a hold cannot fail. New heads start empty."""
    cdef int64_t k
    if grow(<void**>&st.hlink, &st.cap_hlink, 2 * n_holds, sizeof(HoldLink)) != 0:
        return -1
    if st.n_hhead < st.n_accounts:
        if grow(<void**>&st.hhead, &st.cap_hhead, st.n_accounts, sizeof(int64_t)) != 0:
            return -1
        for k in range(st.n_hhead, st.n_accounts):
            st.hhead[k] = -1
        st.n_hhead = st.n_accounts
    return 0


cdef inline int64_t holdidx_listed_account(State* st, uint64_t account_id) noexcept nogil:
    """The index of the account whose list a hold's side with this id goes in (a card),
    or -1 (no account, or not a card)."""
    cdef int64_t a = account_find(st, account_id)
    if a >= 0 and st.accounts[a].kind == A_CARD:
        return a
    return -1


cdef inline void holdidx_link(State* st, int64_t node, uint64_t account_id) noexcept nogil:
    """Put the node at the head of the account's list if the account is a card, else
    mark it unlisted (holdidx_reserve done: cannot fail)."""
    cdef int64_t a = holdidx_listed_account(st, account_id)
    cdef int64_t h
    if a < 0:
        st.hlink[node].prev = HOLD_UNLISTED
        return
    CL_ASSERT(a < st.n_hhead, "a listed account has its head")
    h = st.hhead[a]
    st.hlink[node].prev = HOLD_HEAD_BASE - a
    st.hlink[node].next = h
    if h >= 0:
        st.hlink[h].prev = node
    st.hhead[a] = node


cdef inline void holdidx_unlink(State* st, int64_t node) noexcept nogil:
    """Take the node out of its account's list."""
    cdef int64_t p = st.hlink[node].prev
    cdef int64_t n
    if p == HOLD_UNLISTED:
        return
    n = st.hlink[node].next
    if p >= 0:
        st.hlink[p].next = n
    else:
        CL_ASSERT(st.hhead[HOLD_HEAD_BASE - p] == node, "a head node heads its account's list")
        st.hhead[HOLD_HEAD_BASE - p] = n
    if n >= 0:
        st.hlink[n].prev = p


cdef inline void holdidx_move(State* st, int64_t src, int64_t dst) noexcept nogil:
    """Node src becomes node dst, in the same place of its account's list."""
    cdef int64_t p
    st.hlink[dst] = st.hlink[src]
    p = st.hlink[dst].prev
    if p == HOLD_UNLISTED:
        return
    if p >= 0:
        st.hlink[p].next = dst
    else:
        CL_ASSERT(st.hhead[HOLD_HEAD_BASE - p] == src, "a head node heads its account's list")
        st.hhead[HOLD_HEAD_BASE - p] = dst
    if st.hlink[dst].next >= 0:
        st.hlink[st.hlink[dst].next].prev = dst


cdef inline void holdidx_add(State* st, int64_t i) noexcept nogil:
    """Link hold i (just written to the table; holdidx_reserve done)."""
    holdidx_link(st, 2 * i, st.pending[i].debit_id)
    holdidx_link(st, 2 * i + 1, st.pending[i].credit_id)


cdef inline void holdidx_remove(State* st, int64_t i) noexcept nogil:
    """Unlink hold i (still in the table)."""
    holdidx_unlink(st, 2 * i)
    holdidx_unlink(st, 2 * i + 1)


cdef inline void holdidx_moved(State* st, int64_t src, int64_t dst) noexcept nogil:
    """Hold src is moving to slot dst: move its nodes."""
    holdidx_move(st, 2 * src, 2 * dst)
    holdidx_move(st, 2 * src + 1, 2 * dst + 1)


cdef int holdidx_rebuild(State* st) noexcept nogil:
    """Index every hold of the table anew (the tables were loaded whole)."""
    cdef int64_t i
    st.n_hhead = 0
    if holdidx_reserve(st, st.n_pending) != 0:
        return -1
    for i in range(st.n_pending):
        holdidx_add(st, i)
    return 0


cdef int cmp_desc_i64(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const int64_t*>a)[0]
    cdef int64_t y = (<const int64_t*>b)[0]
    return (x < y) - (x > y)


cdef int64_t holds_of(State* st, uint64_t account_id) noexcept nogil:
    """The table indexes of a card's holds into st.hscratch, each once, largest
    first; their number, or -1 if there is no room."""
    cdef int64_t node, n = 0, k, m
    cdef int64_t a = account_find(st, account_id)
    if a < 0 or a >= st.n_hhead:
        return 0
    node = st.hhead[a]
    while node >= 0:
        if n >= st.cap_hscratch:
            if grow(<void**>&st.hscratch, &st.cap_hscratch, n + 1, sizeof(int64_t)) != 0:
                return -1
        st.hscratch[n] = node >> 1
        n += 1
        node = st.hlink[node].next
    qsort(st.hscratch, n, sizeof(int64_t), cmp_desc_i64)
    # A hold of the card on both sides has both its nodes in the list: keep it once.
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
    """Every side of every hold of a card is in the card's list once, and the lists
    hold nothing else (walks every hold and every list)."""
    cdef int64_t i, a, node, prev, seen = 0, sides = 0
    cdef uint64_t owner
    for i in range(2 * st.n_pending):
        owner = st.pending[i >> 1].credit_id if i & 1 else st.pending[i >> 1].debit_id
        if holdidx_listed_account(st, owner) >= 0:
            sides += 1
        else:
            CL_ASSERT(st.hlink[i].prev == HOLD_UNLISTED, "a side of no card is in no list")
    CL_ASSERT(st.cap_hlink >= 2 * st.n_pending, "every hold has room for its two nodes")
    for a in range(st.n_hhead):
        node = st.hhead[a]
        CL_ASSERT(a < st.n_accounts or node == -1, "no list heads a rolled back account's index")
        prev = HOLD_HEAD_BASE - a
        while node >= 0:
            CL_ASSERT(node < 2 * st.n_pending, "a listed node is a side of a hold in the table")
            CL_ASSERT(st.hlink[node].prev == prev, "a listed node's previous one links to it")
            owner = st.pending[node >> 1].credit_id if node & 1 else st.pending[node >> 1].debit_id
            CL_ASSERT(owner == st.accounts[a].id, "a listed node is a side of a hold of the list's card")
            seen += 1
            CL_ASSERT(seen <= sides, "the lists hold no node twice (and no cycle)")
            prev = node
            node = st.hlink[node].next
    CL_ASSERT(seen == sides, "every side of a card's hold is in the card's list")
    return True
