# Source policies (twin of engine/spec/policies.py; docs/policies.md): who may do what.
#
# Each installed set is compiled (`cardledger.policies.compile_tables`) to one 64-byte
# PolicyRow a policy, sorted by first_source: the policy covering an op's source is
# found through a bucket index over first_source and a bisection within the bucket; its
# kinds are a bitmask, and its account / counterparty lists are sorted arrays searched
# by bisection. `execute` asks `policy_allows` after the strict field checks of a new
# op, only while a set is in force (State.policy != NULL).


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


cdef inline const PolicyRow* policy_covering(const PolicySet* ps, uint64_t source) noexcept nogil:
    """The policy whose range covers `source` (spec: Policies._covering), or NULL: the
    last whose first_source <= source, found in the bucket the source falls in."""
    cdef uint64_t b
    cdef int64_t lo, hi, mid
    if source < ps.base:
        return NULL
    b = (source - ps.base) >> ps.shift
    if b >= <uint64_t>ps.n_buckets:
        b = ps.n_buckets - 1
    lo = ps.buckets[b]
    hi = ps.buckets[b + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if ps.rows[mid].first <= source:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0 or source > ps.rows[lo - 1].last:
        return NULL
    return &ps.rows[lo - 1]


cdef inline bint policy_allows(const PolicySet* ps, const Op* op) noexcept nogil:
    """Whether the set in force allows this new op (spec: policies.allows): the policy
    whose range covers its source allows its kind, its amount, and (for kinds that read
    them) its account_id and counterparty_id. The ledger's own ops (CLOSE_DAY from
    CLOSE_DAY_SOURCE, SET_POLICIES from POLICY_SOURCE) need no policy."""
    cdef uint64_t source = op.source
    cdef const PolicyRow* p
    cdef uint32_t used
    if source >= POLICY_SOURCE_C:
        if (op.kind == K_SET_POLICIES and source == POLICY_SOURCE_C) or (
                op.kind == K_CLOSE_DAY and source == CLOSE_DAY_SOURCE_C):
            return True
    p = policy_covering(ps, source)
    if p == NULL or not (p.kinds >> op.kind) & 1 or op.amount_fen > p.amount_max:
        return False
    used = FIELDS_USED[op.kind]
    if p.acc_lo >= 0 and (used & OPF_ACCOUNT_ID):
        if not sorted_contains(ps.acc_ids, p.acc_lo, p.acc_hi, op.account_id):
            return False
    if p.cp_lo >= 0 and (used & OPF_COUNTERPARTY_ID):
        if not sorted_contains(ps.cp_ids, p.cp_lo, p.cp_hi, op.counterparty_id):
            return False
    return True


cdef bint policy_allows_parties(const PolicySet* ps, uint64_t source, uint64_t account_id,
                                 uint64_t counterparty_id) noexcept nogil:
    """Whether the policy covering `source` lets it touch these accounts: a REFUND names
    its purchase, not accounts, so its card (account_id) and merchant (counterparty_id)
    are checked here once the purchase is found (spec: policies.allows_parties). Its
    kind and amount were checked with the op (policy_allows)."""
    cdef const PolicyRow* p = policy_covering(ps, source)
    if p == NULL:
        return False
    if p.acc_lo >= 0 and not sorted_contains(ps.acc_ids, p.acc_lo, p.acc_hi, account_id):
        return False
    if p.cp_lo >= 0 and not sorted_contains(ps.cp_ids, p.cp_lo, p.cp_hi, counterparty_id):
        return False
    return True


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


#: PolicyRow as numpy sees it (core.pxd): one 64-byte line a policy.
POLICY_ROW_DTYPE = np.dtype([("first", "<u8"), ("last", "<u8"), ("amount_max", "<i8"), ("acc_lo", "<i8"),
                             ("acc_hi", "<i8"), ("cp_lo", "<i8"), ("cp_hi", "<i8"), ("kinds", "<u4"),
                             ("pad", "<u4")])
if sizeof(PolicyRow) != POLICY_ROW_DTYPE.itemsize:  # (core.pxd and the dtype above must agree)
    raise ImportError("cardledger core: PolicyRow and POLICY_ROW_DTYPE differ: rebuild the core")


cdef object _policy_rows(list keep, object t):
    """The set's policies as PolicyRow records in a 64-byte aligned buffer (each one
    cache line), kept alive in `keep`."""
    n = len(t.first)
    buf = np.zeros((n + 1) * 64 + 64, dtype=np.uint8)
    off = (-buf.ctypes.data) % 64
    rows = buf[off : off + max(n, 1) * 64].view(POLICY_ROW_DTYPE)
    for name in ("first", "last", "amount_max", "acc_lo", "acc_hi", "cp_lo", "cp_hi", "kinds"):
        rows[name][:n] = getattr(t, name)
    keep.append(buf)
    return rows


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
            a = _policy_rows(keep, t); ps.rows = <PolicyRow*>cnp.PyArray_DATA(a)
            a = _policy_array(keep, t.acc_ids, u64); ps.acc_ids = <uint64_t*>cnp.PyArray_DATA(a)
            a = _policy_array(keep, t.cp_ids, u64); ps.cp_ids = <uint64_t*>cnp.PyArray_DATA(a)
            a = _policy_array(keep, t.buckets, np.int32); ps.buckets = <int32_t*>cnp.PyArray_DATA(a)
            ps.base = t.base
            ps.shift = t.shift
            ps.n_buckets = len(t.buckets) - 1
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
