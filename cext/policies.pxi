# Source policies (twin of engine/spec/policies.py; docs/policies.md): who may do what.
#
# Each installed set is compiled (`cardledger.policies.compile_tables`) to one 64-byte
# PolicyRow a policy, sorted by first_source: the policy covering an op's source is
# found through a bucket index over first_source and a bisection within the bucket; its
# kinds are a bitmask; an account / counterparty list of one or two ids is held in the
# row itself, a longer one is a sorted array searched by bisection. `execute` asks
# `policy_allows` after the strict field checks of a new op, only while a set is in
# force (State.policy != NULL); apply_chain then prefetches the bucket, the row and the
# listed ids of the ops ahead (policy_prefetch), as it does their accounts.


cdef inline bint sorted_contains(const uint64_t* ids, int64_t lo, int64_t hi, uint64_t x) noexcept nogil:
    """Whether x is among the sorted ids[lo:hi] (bisection)."""
    cdef int64_t end = hi
    cdef int64_t mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if ids[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and ids[lo] == x


cdef inline const PolicyRow* policy_row(const PolicySet* ps, int64_t i) noexcept nogil:
    """The set's i-th policy (rows of 1 << row_shift bytes)."""
    return <const PolicyRow*>(<const char*>ps.rows + (i << ps.row_shift))


cdef inline const uint64_t* policy_slots(const PolicyRow* p) noexcept nogil:
    """The id slots after a row's header (core.pxd PolicyRow)."""
    return <const uint64_t*>(p + 1)


# The newest set, where its sources span at most this many ids, keeps each one's
# covering row in a table (PolicySet.direct, 4 bytes a source): one read instead of a
# bucket search. (A Python int: the policies' first and last sources are u64.)
POLICY_DIRECT_SPAN_MAX = 1 << 22


cdef inline const PolicyRow* policy_covering(const PolicySet* ps, uint64_t source) noexcept nogil:
    """The policy whose range covers `source` (spec: Policies._covering), or NULL: the
    last whose first_source <= source, found in the bucket the source falls in."""
    cdef uint64_t b
    cdef int64_t lo, hi, mid
    cdef const PolicyRow* p
    if ps.direct != NULL:
        if source - ps.dbase >= ps.dspan:  # (below dbase too: the difference wraps)
            return NULL
        lo = ps.direct[source - ps.dbase]
        return NULL if lo < 0 else policy_row(ps, lo)
    if source < ps.base:
        return NULL
    b = (source - ps.base) >> ps.shift
    if b >= <uint64_t>ps.n_buckets:
        b = ps.n_buckets - 1
    lo = ps.buckets[b]
    hi = ps.buckets[b + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if policy_row(ps, mid).first <= source:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0:
        return NULL
    p = policy_row(ps, lo - 1)
    return NULL if source > p.last else p


cdef inline bint id_allowed(uint8_t n, const uint64_t* slots, const uint64_t* listed, uint64_t x) noexcept nogil:
    """Whether x is on a policy's account or counterparty list (not POLICY_ANY): one
    of the n ids held in the row's `slots`, else (POLICY_LISTED) one of the sorted
    listed[slots[0]:slots[1]]."""
    cdef int i
    if n == POLICY_LISTED:
        return sorted_contains(listed, <int64_t>slots[0], <int64_t>slots[1], x)
    for i in range(n):
        if slots[i] == x:
            return True
    return False


cdef inline bint policy_allows(const PolicySet* ps, const Op* op) noexcept nogil:
    """Whether the set in force allows this new op (spec: policies.allows): the policy
    whose range covers its source allows its kind, its amount, and (for kinds that read
    them) its account_id and counterparty_id. The ledger's own ops (CLOSE_DAY from
    CLOSE_DAY_SOURCE, SET_POLICIES from POLICY_SOURCE) need no policy."""
    cdef uint64_t source = op.source
    cdef const PolicyRow* p
    cdef const uint64_t* slots
    cdef uint32_t used
    if source >= POLICY_SOURCE_C:
        if (op.kind == K_SET_POLICIES and source == POLICY_SOURCE_C) or (
                op.kind == K_CLOSE_DAY and source == CLOSE_DAY_SOURCE_C):
            return True
    p = policy_covering(ps, source)
    if p == NULL or not (p.kinds >> op.kind) & 1 or op.amount_fen > p.amount_max:
        return False
    if p.acc_n == POLICY_ANY and p.cp_n == POLICY_ANY:
        return True
    used = FIELDS_USED[op.kind]
    slots = policy_slots(p)
    if p.acc_n != POLICY_ANY and (used & OPF_ACCOUNT_ID):
        if not id_allowed(p.acc_n, slots, ps.acc_ids, op.account_id):
            return False
    if p.cp_n != POLICY_ANY and (used & OPF_COUNTERPARTY_ID):
        if not id_allowed(p.cp_n, slots + p.cp_off, ps.cp_ids, op.counterparty_id):
            return False
    return True


cdef bint policy_allows_parties(const PolicySet* ps, uint64_t source, uint64_t account_id,
                                 uint64_t counterparty_id) noexcept nogil:
    """Whether the policy covering `source` lets it touch these accounts: a REFUND names
    its purchase, not accounts, so its card (account_id) and merchant (counterparty_id)
    are checked here once the purchase is found (spec: policies.allows_parties). Its
    kind and amount were checked with the op (policy_allows)."""
    cdef const PolicyRow* p = policy_covering(ps, source)
    cdef const uint64_t* slots
    if p == NULL:
        return False
    slots = policy_slots(p)
    if p.acc_n != POLICY_ANY and not id_allowed(p.acc_n, slots, ps.acc_ids, account_id):
        return False
    if p.cp_n != POLICY_ANY and not id_allowed(p.cp_n, slots + p.cp_off, ps.cp_ids, counterparty_id):
        return False
    return True


cdef inline void prefetch_listed(uint8_t n, const uint64_t* slots, const uint64_t* listed) noexcept nogil:
    """The first and last cache line of a POLICY_LISTED list (a bisection over a few
    ids reads no other)."""
    if n == POLICY_LISTED and slots[1] > slots[0]:
        CL_PREFETCH(&listed[slots[0]])
        CL_PREFETCH(&listed[slots[1] - 1])


cdef inline void policy_prefetch(const PolicySet* ps, Op* ops, int64_t k, int64_t n) noexcept nogil:
    """Prefetch what the policy check of the ops ahead reads (apply_chain, only while a
    set is in force), each step once the one before it is cached, as prefetch_ahead
    does for their accounts: the bucket of the op 2 * PREFETCH_DISTANCE ahead; the rows
    that bucket can name (each row holds its short lists) for the op PREFETCH_DISTANCE
    ahead; and, only in a set with lists too long for a row, the listed ids of the
    policy covering the op HOLD_PREFETCH_DISTANCE ahead."""
    cdef uint64_t s, b
    cdef int64_t lo, hi
    cdef const char* r
    cdef const PolicyRow* p
    cdef size_t last_byte = (<size_t>1 << ps.row_shift) - 1
    if ps.direct != NULL:
        # Its row's index straight from the source 2 * PREFETCH_DISTANCE ahead; the row
        # itself PREFETCH_DISTANCE ahead, its index cached by then.
        if k + 2 * PREFETCH_DISTANCE < n:
            s = ops[k + 2 * PREFETCH_DISTANCE].source - ps.dbase
            if s < ps.dspan:
                CL_PREFETCH(&ps.direct[s])
        if k + PREFETCH_DISTANCE < n:
            s = ops[k + PREFETCH_DISTANCE].source - ps.dbase
            if s < ps.dspan and ps.direct[s] >= 0:
                r = <const char*>policy_row(ps, ps.direct[s])
                CL_PREFETCH(r)
                CL_PREFETCH(r + last_byte)
    elif k + 2 * PREFETCH_DISTANCE < n:
        s = ops[k + 2 * PREFETCH_DISTANCE].source
        if s >= ps.base:
            b = (s - ps.base) >> ps.shift
            if b >= <uint64_t>ps.n_buckets:
                b = ps.n_buckets - 1
            CL_PREFETCH(&ps.buckets[b])
    if ps.direct == NULL and k + PREFETCH_DISTANCE < n:
        s = ops[k + PREFETCH_DISTANCE].source
        if s >= ps.base:
            b = (s - ps.base) >> ps.shift
            if b >= <uint64_t>ps.n_buckets:
                b = ps.n_buckets - 1
            lo = ps.buckets[b]
            hi = ps.buckets[b + 1]
            # The covering row is rows[lo - 1] or one of the bucket's, usually its only one.
            if lo > 0:
                r = <const char*>policy_row(ps, lo - 1)
                CL_PREFETCH(r)
                CL_PREFETCH(r + last_byte)
            if hi > lo:
                r = <const char*>policy_row(ps, hi - 1)
                CL_PREFETCH(r)
                CL_PREFETCH(r + last_byte)
    if ps.listed and k + HOLD_PREFETCH_DISTANCE < n:
        p = policy_covering(ps, ops[k + HOLD_PREFETCH_DISTANCE].source)
        if p != NULL:
            prefetch_listed(p.acc_n, policy_slots(p), ps.acc_ids)
            prefetch_listed(p.cp_n, policy_slots(p) + p.cp_off, ps.cp_ids)


cdef PolicySet* policies_choose(Policies* pol, uint64_t journal_seq) noexcept nogil:
    """The set in force at journal_seq: the last installed at or before it (NULL when
    none is, or when that one lifts enforcement)."""
    cdef int64_t i
    cdef PolicySet* chosen = NULL
    for i in range(pol.n_sets):
        if pol.sets[i].journal_seq <= journal_seq:
            chosen = &pol.sets[i] if pol.sets[i].enforce else NULL
    return chosen


cdef int op_set_policies(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    """A set of source policies installed (spec: op_set_policies): the set stored for
    this very record (its journal_seq, its digest in user_data) is in force from the
    next op on; no money moves. Without one: POLICY_SET_UNKNOWN."""
    cdef Policies* pol = st.pol
    cdef int64_t i
    if op.source != POLICY_SOURCE_C or op.seq != jseq:
        return R_POLICY_SET_UNKNOWN
    for i in range(pol.n_sets):
        if pol.sets[i].journal_seq == jseq and pol.sets[i].digest == op.user_data:
            st.policy = &pol.sets[i] if pol.sets[i].enforce else NULL
            memset(ef, 0, sizeof(Effect))
            CL_ASSERT(ef.amount_fen == 0, "installing a policy set moves no money")
            return R_OK
    return R_POLICY_SET_UNKNOWN


cdef object _policy_array(list keep, object arr, object dtype):
    """A C-contiguous copy of `arr` as `dtype`, kept alive in `keep`."""
    a = np.ascontiguousarray(arr, dtype=dtype)
    if len(a) == 0:
        a = np.zeros(1, dtype=dtype)  # (a valid pointer, never read)
    keep.append(a)
    return a


#: PolicyRow (a row's header) as numpy sees it (core.pxd); a row is this and its id slots.
POLICY_HEADER_FIELDS = [("first", "<u8"), ("last", "<u8"), ("amount_max", "<i8"), ("kinds", "<u4"),
                        ("acc_n", "u1"), ("cp_n", "u1"), ("cp_off", "u1"), ("pad", "u1")]
if (sizeof(PolicyRow) != np.dtype(POLICY_HEADER_FIELDS).itemsize
        or sizeof(PolicyRow) + 8 * POLICY_NARROW_SLOTS != 64 or sizeof(PolicyRow) + 8 * POLICY_WIDE_SLOTS != 128):
    raise ImportError("cardledger core: PolicyRow and POLICY_HEADER_FIELDS differ: rebuild the core")


cdef tuple _slot_layout(object la, object lc, int cap):
    """Which lists a row of `cap` id slots holds itself: (acc_inline, cp_inline) masks,
    from each policy's list lengths (-1: any). Both when their ids fit together; else
    the account list with the counterparty list's bounds (2 slots), else the other way
    round; a list not held is POLICY_LISTED (its bounds, 2 slots: they always fit)."""
    a_in = np.maximum(la, 0)
    c_in = np.maximum(lc, 0)
    a_ref = np.where(la >= 0, 2, 0)
    c_ref = np.where(lc >= 0, 2, 0)
    both = a_in + c_in <= cap
    acc = both | (a_in + c_ref <= cap)
    cp = both | (~acc & (a_ref + c_in <= cap))
    return acc & (la >= 0), cp & (lc >= 0)


cdef tuple _policy_rows(list keep, object t):
    """The set's policies as rows (core.pxd PolicyRow: a header and its id slots) in a
    64-byte aligned buffer kept alive in `keep`, each on its own cache line: one line
    a row, or two when that holds more lists in the rows (lists of 5 to 12 ids). The
    tables were checked (_check_tables). Returns (rows, row_shift, whether some list
    is POLICY_LISTED)."""
    n = len(t.first)
    acc_lo = np.asarray(t.acc_lo, dtype=np.int64)
    cp_lo = np.asarray(t.cp_lo, dtype=np.int64)
    la = np.where(acc_lo >= 0, np.asarray(t.acc_hi, dtype=np.int64) - acc_lo, -1)
    lc = np.where(cp_lo >= 0, np.asarray(t.cp_hi, dtype=np.int64) - cp_lo, -1)
    narrow = _slot_layout(la, lc, POLICY_NARROW_SLOTS)
    wide = _slot_layout(la, lc, POLICY_WIDE_SLOTS)
    n_listed = [int(((la >= 0) & ~m[0]).sum() + ((lc >= 0) & ~m[1]).sum()) for m in (narrow, wide)]
    cap, shift, (acc_in, cp_in) = ((POLICY_WIDE_SLOTS, 7, wide) if n_listed[1] < n_listed[0]
                                   else (POLICY_NARROW_SLOTS, 6, narrow))
    stride = 1 << shift
    dtype = np.dtype(POLICY_HEADER_FIELDS + [("slots", "<u8", (cap,))])
    buf = np.zeros((n + 1) * stride + 64, dtype=np.uint8)
    off = (-buf.ctypes.data) % 64
    rows = buf[off : off + max(n, 1) * stride].view(dtype)
    for name in ("first", "last", "amount_max", "kinds"):
        rows[name][:n] = getattr(t, name)
    acc_ids = np.asarray(t.acc_ids, dtype=np.uint64)
    cp_ids = np.asarray(t.cp_ids, dtype=np.uint64)
    slots = np.zeros((n, cap), dtype=np.uint64)
    at = np.arange(n)
    acc_listed = (la >= 0) & ~acc_in
    cp_listed = (lc >= 0) & ~cp_in
    cp_off = np.where(acc_in, la, np.where(acc_listed, 2, 0))
    if n and int((cp_off + np.where(cp_in, lc, np.where(cp_listed, 2, 0))).max()) > cap:
        raise ValueError("policy tables: a row's lists overflow its slots")  # (_slot_layout never does)
    slots[acc_listed, 0] = acc_lo[acc_listed].astype(np.uint64)
    slots[acc_listed, 1] = np.asarray(t.acc_hi, dtype=np.int64)[acc_listed].astype(np.uint64)
    slots[at[cp_listed], cp_off[cp_listed]] = cp_lo[cp_listed].astype(np.uint64)
    slots[at[cp_listed], cp_off[cp_listed] + 1] = np.asarray(t.cp_hi, dtype=np.int64)[cp_listed].astype(np.uint64)
    for j in range(cap):
        m = acc_in & (la > j)
        slots[m, j] = acc_ids[acc_lo[m] + j]
        m = cp_in & (lc > j)
        slots[at[m], cp_off[m] + j] = cp_ids[cp_lo[m] + j]
    rows["slots"][:n] = slots
    rows["acc_n"][:n] = np.where(la < 0, POLICY_ANY, np.where(acc_in, la, POLICY_LISTED))
    rows["cp_n"][:n] = np.where(lc < 0, POLICY_ANY, np.where(cp_in, lc, POLICY_LISTED))
    rows["cp_off"][:n] = cp_off
    keep.append(buf)
    return rows, shift, n_listed[0 if shift == 6 else 1] > 0


cdef void _check_tables(object t, int64_t n) except *:
    """Refuse tables the bisections could read out of bounds with: every array of n
    rows, ranges sorted and disjoint, each id slice inside its array and sorted."""
    for name in ("last", "kinds", "amount_max", "acc_lo", "acc_hi", "cp_lo", "cp_hi"):
        if len(getattr(t, name)) != n:
            raise ValueError(f"policy tables: {name} has {len(getattr(t, name))} rows, not {n}")
    first = np.asarray(t.first, dtype=np.uint64)
    last = np.asarray(t.last, dtype=np.uint64)
    if n and (bool((first > last).any()) or bool((first[1:] <= last[:-1]).any())):
        raise ValueError("policy tables: source ranges must be sorted and disjoint")
    buckets = np.asarray(t.buckets, dtype=np.int64)
    if (len(buckets) < 2 or not 0 <= t.shift < 64 or bool((buckets[1:] < buckets[:-1]).any())
            or buckets[0] < 0 or buckets[-1] > n or (n and buckets[-1] != n)):
        raise ValueError("policy tables: the bucket index is not one of these ranges")
    if n:
        idx = np.arange(len(buckets) - 1, dtype=np.uint64)
        bounds = [int(t.base) + (int(i) << int(t.shift)) for i in idx.tolist()]
        if np.searchsorted(np.array(first.tolist(), dtype=object), np.array(bounds, dtype=object),
                           side="left").tolist() != buckets[:-1].tolist():
            raise ValueError("policy tables: the bucket index is not one of these ranges")
    for lo_name, hi_name, ids_name in (("acc_lo", "acc_hi", "acc_ids"), ("cp_lo", "cp_hi", "cp_ids")):
        lo = np.asarray(getattr(t, lo_name), dtype=np.int64)
        hi = np.asarray(getattr(t, hi_name), dtype=np.int64)
        ids = np.asarray(getattr(t, ids_name), dtype=np.uint64)
        some = lo >= 0
        if bool((hi[some] < lo[some]).any()) or bool((hi[some] > len(ids)).any()):
            raise ValueError(f"policy tables: a {lo_name}:{hi_name} slice lies outside {ids_name}")
        for a, b in zip(lo[some].tolist(), hi[some].tolist()):
            if b - a > 1 and bool((ids[a + 1 : b] <= ids[a : b - 1]).any()):
                raise ValueError(f"policy tables: {ids_name} of a policy are not sorted")


cdef list policies_load(State* st, Policies* pol, object versions, uint64_t journal_seq):
    """Install the sets (objects with journal_seq, digest, enforce and `tables`, oldest
    first) into `pol`, with the one in force at journal_seq chosen (st.policy); returns
    what the raw pointers point into (the caller keeps it alive)."""
    versions = list(versions)
    cdef Py_ssize_t i, n = len(versions)
    cdef list keep = []
    cdef PolicySet* sets = <PolicySet*>calloc(n if n > 0 else 1, sizeof(PolicySet))
    cdef PolicySet* ps
    cdef cnp.ndarray a
    if sets == NULL:
        raise MemoryError("cardledger core: cannot allocate the policy sets")
    u64, i64, u32 = np.uint64, np.int64, np.uint32
    try:
        for i in range(n):
            v = versions[i]
            t = v.tables
            ps = &sets[i]
            ps.journal_seq = v.journal_seq
            ps.digest = v.digest
            ps.enforce = 1 if v.enforce else 0
            ps.n = len(t.first)
            _check_tables(t, ps.n)
            a, ps.row_shift, ps.listed = _policy_rows(keep, t)
            ps.rows = <PolicyRow*>cnp.PyArray_DATA(a)
            a = _policy_array(keep, t.acc_ids, u64); ps.acc_ids = <uint64_t*>cnp.PyArray_DATA(a)
            a = _policy_array(keep, t.cp_ids, u64); ps.cp_ids = <uint64_t*>cnp.PyArray_DATA(a)
            a = _policy_array(keep, t.buckets, np.int32); ps.buckets = <int32_t*>cnp.PyArray_DATA(a)
            ps.base = t.base
            ps.shift = t.shift
            ps.n_buckets = len(t.buckets) - 1
            # The newest set only: the one new ops are checked against (the older ones
            # serve replays, and a table for each set ever installed would add up).
            if ps.n and i == n - 1:
                first, last = np.asarray(t.first, np.uint64), np.asarray(t.last, np.uint64)
                span = int(last[-1]) - int(first[0]) + 1  # (sorted, disjoint: the last ends last)
                if span <= POLICY_DIRECT_SPAN_MAX:
                    direct = np.full(span, -1, np.int32)
                    for k in range(ps.n):
                        direct[int(first[k]) - int(first[0]) : int(last[k]) - int(first[0]) + 1] = k
                    keep.append(direct)
                    ps.direct = <int32_t*>cnp.PyArray_DATA(direct)
                    ps.dbase = int(first[0])
                    ps.dspan = span
            if i and ps.journal_seq <= sets[i - 1].journal_seq:
                raise ValueError("policy sets must be given oldest first, one per journal_seq")
    except BaseException:
        free(sets)
        raise
    free(pol.sets)
    pol.sets = sets
    pol.n_sets = n
    st.policy = policies_choose(pol, journal_seq)
    return keep
