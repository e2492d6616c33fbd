# The core's in-memory state: growable record arrays and open-addressing hash tables
# (linear probing, key 0 = empty slot, backward-shift deletion), plus the undo log
# that lets a failed linked chain be rolled back.

cdef extern from "<sys/mman.h>" nogil:
    int madvise(void* addr, size_t length, int advice)
    int MADV_HUGEPAGE

cdef extern from *:
    """
    #include <sys/mman.h>
    #ifndef MADV_POPULATE_WRITE
    #define MADV_POPULATE_WRITE 23  /* Linux 5.14; older kernels refuse it (EINVAL) */
    #endif
    """
    int MADV_POPULATE_WRITE

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void** memptr, size_t alignment, size_t size)

cdef extern from *:
    """
    #if defined(__x86_64__) || defined(__i386__)
    /* An asm statement, not __builtin_prefetch: GCC 12 -O3 deleted the builtin as dead
       code where a prefetch's address is all it computes (the hash-slot prefetches of
       the batch loop vanished from the binary, and every account lookup missed). */
    #define CL_PREFETCH(p) __asm__ __volatile__("prefetcht0 %0" : : "m"(*(const char*)(p)))
    #else
    #define CL_PREFETCH(p) __builtin_prefetch((const void*)(p), 1, 3)
    #endif
    """
    void CL_PREFETCH(const void* p) noexcept nogil

# Tables this large (HUGE_MIN_BYTES) are backed by 2 MiB pages where the kernel allows
# it: lookups are random over hundreds of MB, and 4 KiB pages would add a TLB miss to
# each one. set_huge_pages turns it off.
cdef int USE_HUGE = 1


cdef void* big_calloc(size_t n, size_t item) noexcept nogil:
    cdef void* p = NULL
    cdef size_t size = n * item
    if size < HUGE_MIN_BYTES:
        return calloc(n, item)
    if posix_memalign(&p, HUGE_PAGE_BYTES, size) != 0:
        return NULL
    if USE_HUGE:
        madvise(p, size, MADV_HUGEPAGE)
    memset(p, 0, size)
    return p


cdef void* big_realloc(void* old, size_t old_size, size_t size) noexcept nogil:
    cdef void* p = NULL
    if size < HUGE_MIN_BYTES:
        return realloc(old, size)
    if posix_memalign(&p, HUGE_PAGE_BYTES, size) != 0:
        return NULL
    if USE_HUGE:
        madvise(p, size, MADV_HUGEPAGE)
    if old != NULL:
        memcpy(p, old, old_size)
        free(old)
    return p


# Every table's hash is keyed by HASH_KEY, drawn from the OS when the core is imported.
# The finalizer alone is public and invertible: a sender choosing its seqs (or an OPEN
# its account ids) could pick ids that all land in one slot, and every insert and
# lookup among them would then walk the whole run (docs/performance-log.md, "Hostile
# shapes"). Keyed, which ids collide depends on a number the sender does not know.
# Nothing stored or exported depends on it: tables are only ever read in memory.
cdef uint64_t HASH_KEY = 0


cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    # splitmix64's finalizer: ids are often sequential, so spread them over the table.
    x ^= HASH_KEY
    x ^= x >> 30
    x *= <uint64_t>0xbf58476d1ce4e5b9
    x ^= x >> 27
    x *= <uint64_t>0x94d049bb133111eb
    x ^= x >> 31
    return x


cdef inline uint64_t mix128(uint64_t a, uint64_t b) noexcept nogil:
    return mix64(a * <uint64_t>0x9e3779b97f4a7c15 ^ mix64(b))


# Drawn once, here at import, before any table exists; never changed after (a table
# hashed with one key cannot be read with another).
from os import urandom as _urandom
HASH_KEY = int.from_bytes(_urandom(8), "little")
del _urandom


# ---------------------------------------------------------------- single-key map

cdef inline int64_t map1_find(Slot* t, uint64_t mask, uint64_t key) noexcept nogil:
    cdef uint64_t i = mix64(key) & mask
    while t[i].key != 0:
        if t[i].key == key:
            return t[i].val
        i = (i + 1) & mask
    return -1


cdef inline void map1_put(Slot* t, uint64_t mask, uint64_t key, int64_t val) noexcept nogil:
    cdef uint64_t i = mix64(key) & mask
    while t[i].key != 0:
        i = (i + 1) & mask
    t[i].key = key
    t[i].val = val


cdef int map1_insert(Slot** tp, uint64_t* maskp, int64_t* usedp, uint64_t key, int64_t val) noexcept nogil:
    cdef uint64_t new_mask, i
    cdef Slot* old
    cdef Slot* t
    if (usedp[0] + 1) * 2 > <int64_t>(maskp[0] + 1):
        new_mask = (maskp[0] + 1) * 2 - 1
        t = <Slot*>big_calloc(new_mask + 1, sizeof(Slot))
        if t == NULL:
            return -1
        old = tp[0]
        for i in range(maskp[0] + 1):
            if old[i].key != 0:
                map1_put(t, new_mask, old[i].key, old[i].val)
        free(old)
        tp[0] = t
        maskp[0] = new_mask
    map1_put(tp[0], maskp[0], key, val)
    usedp[0] += 1
    CL_ASSERT(<uint64_t>usedp[0] * 2 <= maskp[0] + 1, "a map is at most half full, so every probe ends at an empty slot")
    CL_ASSERT(map1_find(tp[0], maskp[0], key) == val, "an inserted key is found")
    return 0


cdef void map1_delete(Slot* t, uint64_t mask, int64_t* usedp, uint64_t key) noexcept nogil:
    cdef uint64_t i = mix64(key) & mask
    cdef uint64_t j, home
    while t[i].key != key:
        if t[i].key == 0:
            return
        i = (i + 1) & mask
    # Backward-shift: move later members of the probe run into the hole.
    j = i
    while True:
        j = (j + 1) & mask
        if t[j].key == 0:
            break
        home = mix64(t[j].key) & mask
        if ((j - home) & mask) >= ((j - i) & mask):
            t[i] = t[j]
            i = j
    t[i].key = 0
    t[i].val = 0
    usedp[0] -= 1
    CL_ASSERT(usedp[0] >= 0, "a map never holds fewer than no keys")
    CL_ASSERT(map1_find(t, mask, key) == -1, "a deleted key is not found")


# ---------------------------------------------------------------- pair-key map

cdef inline int64_t map2_find(Slot2* t, uint64_t mask, uint64_t a, uint64_t b) noexcept nogil:
    cdef uint64_t i = mix128(a, b) & mask
    while t[i].k1 != 0:
        if t[i].k1 == a and t[i].k2 == b:
            return t[i].val
        i = (i + 1) & mask
    return -1


cdef inline Slot2* map2_slot(Slot2* t, uint64_t mask, uint64_t a, uint64_t b) noexcept nogil:
    cdef uint64_t i = mix128(a, b) & mask
    while t[i].k1 != 0:
        if t[i].k1 == a and t[i].k2 == b:
            return &t[i]
        i = (i + 1) & mask
    return NULL


cdef inline void map2_put(Slot2* t, uint64_t mask, uint64_t a, uint64_t b, int64_t val) noexcept nogil:
    cdef uint64_t i = mix128(a, b) & mask
    while t[i].k1 != 0:
        i = (i + 1) & mask
    t[i].k1 = a
    t[i].k2 = b
    t[i].val = val


cdef int map2_insert(Slot2** tp, uint64_t* maskp, int64_t* usedp, uint64_t a, uint64_t b, int64_t val) noexcept nogil:
    cdef uint64_t new_mask, i
    cdef Slot2* old
    cdef Slot2* t
    if (usedp[0] + 1) * 2 > <int64_t>(maskp[0] + 1):
        new_mask = (maskp[0] + 1) * 2 - 1
        t = <Slot2*>big_calloc(new_mask + 1, sizeof(Slot2))
        if t == NULL:
            return -1
        old = tp[0]
        for i in range(maskp[0] + 1):
            if old[i].k1 != 0:
                map2_put(t, new_mask, old[i].k1, old[i].k2, old[i].val)
        free(old)
        tp[0] = t
        maskp[0] = new_mask
    map2_put(tp[0], maskp[0], a, b, val)
    usedp[0] += 1
    CL_ASSERT(<uint64_t>usedp[0] * 2 <= maskp[0] + 1, "a map is at most half full, so every probe ends at an empty slot")
    CL_ASSERT(map2_find(tp[0], maskp[0], a, b) == val, "an inserted key is found")
    return 0


cdef int map2_reserve(Slot2** tp, uint64_t* maskp, int64_t n) noexcept nogil:
    """Grow the map now to hold n keys at most half full (no rehash until then)."""
    cdef uint64_t slots = maskp[0] + 1, new_mask, i
    cdef Slot2* old
    cdef Slot2* t
    if <int64_t>slots >= 2 * n:
        return 0
    while <int64_t>slots < 2 * n:
        slots *= 2
    new_mask = slots - 1
    t = <Slot2*>big_calloc(slots, sizeof(Slot2))
    if t == NULL:
        return -1
    old = tp[0]
    for i in range(maskp[0] + 1):
        if old[i].k1 != 0:
            map2_put(t, new_mask, old[i].k1, old[i].k2, old[i].val)
    free(old)
    tp[0] = t
    maskp[0] = new_mask
    return 0


cdef void map2_delete(Slot2* t, uint64_t mask, int64_t* usedp, uint64_t a, uint64_t b) noexcept nogil:
    cdef uint64_t i = mix128(a, b) & mask
    cdef uint64_t j, home
    while not (t[i].k1 == a and t[i].k2 == b):
        if t[i].k1 == 0:
            return
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if t[j].k1 == 0:
            break
        home = mix128(t[j].k1, t[j].k2) & mask
        if ((j - home) & mask) >= ((j - i) & mask):
            t[i] = t[j]
            i = j
    t[i].k1 = 0
    t[i].k2 = 0
    t[i].val = 0
    usedp[0] -= 1
    CL_ASSERT(usedp[0] >= 0, "a map never holds fewer than no keys")
    CL_ASSERT(map2_find(t, mask, a, b) == -1, "a deleted key is not found")


cdef int64_t longest_run(const char* t, uint64_t mask, size_t item) noexcept nogil:
    """The longest run of occupied slots of an open-addressing table (a slot is taken
    when its first word is not 0: Slot, Slot2 and the recent map alike), wrapping
    around: the most slots a lookup of a missing key walks. Reads the whole table."""
    cdef uint64_t i, k, empty = 0
    cdef int64_t run = 0, best = 0
    if t == NULL:
        return 0
    while empty <= mask and (<const uint64_t*>(t + empty * item))[0] != 0:
        empty += 1
    if empty > mask:
        return <int64_t>mask + 1  # (never: a table is at most half full)
    for k in range(1, mask + 2):
        i = (empty + k) & mask
        if (<const uint64_t*>(t + i * item))[0] != 0:
            run += 1
            if run > best:
                best = run
        else:
            run = 0
    return best


# ---------------------------------------------------------------- growable arrays

cdef int grow(void** p, int64_t* capp, int64_t need, size_t item) noexcept nogil:
    """Make room for `need` items in the array at p[0] (capacity capp[0])."""
    cdef int64_t cap = capp[0]
    cdef void* q
    if need <= cap:
        return 0
    if cap < ARRAY_INITIAL:
        cap = ARRAY_INITIAL
    while cap < need:
        cap *= 2
    q = big_realloc(p[0], capp[0] * item, cap * item)
    if q == NULL:
        return -1
    p[0] = q
    capp[0] = cap
    CL_ASSERT(capp[0] >= need, "a grown array has room for what was asked")
    CL_ASSERT(capp[0] >= ARRAY_INITIAL, "a grown array has at least its initial room")
    return 0


# ---------------------------------------------------------------- copy-on-write snapshots

cdef extern from *:
    """
    static inline unsigned char cl_load_acquire_u8(const unsigned char* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void cl_store_release_u8(unsigned char* p, unsigned char v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline int cl_claim_u8(unsigned char* p, unsigned char from, unsigned char to) {
        return __atomic_compare_exchange_n(p, &from, to, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    static inline int cl_load_int(const int* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void cl_store_int(int* p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void cl_add_int(int* p, int v) { __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL); }
    #if defined(__x86_64__) || defined(__i386__)
    static inline void cl_cpu_relax(void) { __builtin_ia32_pause(); }
    #else
    static inline void cl_cpu_relax(void) { }
    #endif
    """
    unsigned char cl_load_acquire_u8(const unsigned char* p) noexcept nogil
    void cl_store_release_u8(unsigned char* p, unsigned char v) noexcept nogil
    int cl_claim_u8(unsigned char* p, unsigned char frm, unsigned char to) noexcept nogil
    int cl_load_int(const int* p) noexcept nogil
    void cl_store_int(int* p, int v) noexcept nogil
    void cl_add_int(int* p, int v) noexcept nogil
    void cl_cpu_relax() noexcept nogil

cdef void cow_copy_row(CowTable* c, int64_t i) noexcept nogil:
    """Make sure row i is in the snapshot: copy it if nobody has claimed it, else
    wait for whoever did (a row is 80 or 336 bytes: the wait is short)."""
    cdef unsigned char* s = &c.state[i]
    CL_ASSERT(i < c.n, "a snapshot row copied is one of the snapshot's")
    if cl_claim_u8(s, COW_PENDING, COW_COPYING):
        memcpy(c.dst + <size_t>i * c.item, c.src + <size_t>i * c.item, c.item)
        cl_store_release_u8(s, COW_DONE)
        return
    while cl_load_acquire_u8(s) != COW_DONE:
        cl_cpu_relax()
    CL_ASSERT(cl_load_acquire_u8(s) == COW_DONE, "a row, once copied, stays copied")


cdef inline void cow_before_write(CowTable* c, int64_t i) noexcept nogil:
    """Call before changing row i of the table `c` snapshots: the snapshot keeps the
    row as it was when the snapshot began."""
    if c != NULL and cl_load_int(&c.active) and i < c.n and cl_load_acquire_u8(&c.state[i]) != COW_DONE:
        cow_copy_row(c, i)


cdef void cow_copy_all(CowTable* c) noexcept nogil:
    """Copy every row not copied yet, then end the snapshot. Safe from any thread and
    from several at once (the copier, and the batch thread before it moves the table)."""
    cdef int64_t i
    if c == NULL or not cl_load_int(&c.active):
        return
    cl_add_int(&c.copiers, 1)
    for i in range(c.n):
        if cl_load_acquire_u8(&c.state[i]) != COW_DONE:
            cow_copy_row(c, i)
    cl_store_int(&c.active, 0)
    cl_add_int(&c.copiers, -1)


cdef int cow_begin(CowTable* c, void* src, int64_t n, void* dst, size_t item) noexcept nogil:
    """Begin a snapshot of the n rows at src into dst (room for n rows); -1 if out of
    memory. A snapshot still being taken is finished first."""
    cdef unsigned char* q
    cow_copy_all(c)
    while cl_load_int(&c.copiers) != 0:  # a copier of the last snapshot still leaving
        cl_cpu_relax()
    if n > c.cap_state:
        q = <unsigned char*>realloc(c.state, n)
        if q == NULL:
            return -1
        c.state = q
        c.cap_state = n
    if n:
        memset(c.state, COW_PENDING, n)
    c.src = <char*>src
    c.dst = <char*>dst
    c.n = n
    c.item = item
    cl_store_int(&c.active, 1 if n else 0)
    return 0


cdef void cow_free(CowTable* c) noexcept nogil:
    free(c.state)
    memset(c, 0, sizeof(CowTable))


cdef int state_init(State* st) noexcept nogil:
    st.tap_horizon_us = INT64_MAX_
    st.amap = <Slot*>calloc(MAP_SLOTS_INITIAL, sizeof(Slot))
    st.amap_mask = MAP_SLOTS_INITIAL - 1
    st.smap = <Slot*>calloc(MAP_SLOTS_INITIAL, sizeof(Slot))
    st.smap_mask = MAP_SLOTS_INITIAL - 1
    st.pmap = <Slot2*>calloc(MAP_SLOTS_INITIAL, sizeof(Slot2))
    st.pmap_mask = MAP_SLOTS_INITIAL - 1
    st.rmap = <uint64_t*>calloc(MAP_SLOTS_INITIAL, sizeof(uint64_t))
    st.rmap_mask = MAP_SLOTS_INITIAL - 1
    st.gmap = <Slot2*>calloc(MAP_SLOTS_INITIAL, sizeof(Slot2))
    st.gmap_mask = MAP_SLOTS_INITIAL - 1
    if st.amap == NULL or st.smap == NULL or st.pmap == NULL or st.rmap == NULL or st.gmap == NULL:
        return -1
    return 0


cdef void state_free(State* st) noexcept nogil:
    free(st.accounts)
    free(st.amap)
    free(st.sources)
    free(st.smap)
    free(st.pending)
    free(st.pmap)
    free(st.hhead)
    free(st.hlink)
    free(st.hscratch)
    free(st.tail)
    free(st.wbytes)
    free(st.woff)
    free(st.wptime)
    free(st.wsrc)
    free(st.wseq)
    free(st.whash)
    free(st.rmap)
    free(st.undo)
    free(st.gap_floor)
    free(st.gmap)
    memset(st, 0, sizeof(State))


cdef int presize_map1(Slot** tp, uint64_t* maskp, int64_t n) noexcept nogil:
    """Size an empty map for n keys at most half full, so loading never rehashes."""
    cdef uint64_t cap = MAP_SLOTS_INITIAL
    while cap < <uint64_t>(2 * (n + 1)):
        cap *= 2
    if cap == maskp[0] + 1:
        return 0
    free(tp[0])
    tp[0] = <Slot*>big_calloc(cap, sizeof(Slot))
    if tp[0] == NULL:
        return -1
    maskp[0] = cap - 1
    return 0


cdef int state_load(State* st, Account* a, int64_t na, Source* s, int64_t ns,
                    Pending* p, int64_t np_) noexcept nogil:
    cdef int64_t i
    if presize_map1(&st.amap, &st.amap_mask, na) != 0 or presize_map1(&st.smap, &st.smap_mask, ns) != 0:
        return -1
    if grow(<void**>&st.accounts, &st.cap_accounts, na, sizeof(Account)) != 0:
        return -1
    for i in range(na):
        st.accounts[i] = a[i]
        if map1_insert(&st.amap, &st.amap_mask, &st.amap_used, a[i].id, i) != 0:
            return -1
    st.n_accounts = na
    if grow(<void**>&st.sources, &st.cap_sources, ns, sizeof(Source)) != 0:
        return -1
    if grow(<void**>&st.gap_floor, &st.cap_gap_floor, ns, sizeof(uint64_t)) != 0:
        return -1
    for i in range(ns):
        st.sources[i] = s[i]
        # A checkpoint does not hold the gaps: every seq up to last_seq is unknown.
        st.gap_floor[i] = s[i].last_seq + 1
        if map1_insert(&st.smap, &st.smap_mask, &st.smap_used, s[i].source, i) != 0:
            return -1
    st.n_sources = ns
    if grow(<void**>&st.pending, &st.cap_pending, np_, sizeof(Pending)) != 0:
        return -1
    for i in range(np_):
        st.pending[i] = p[i]
        if map2_insert(&st.pmap, &st.pmap_mask, &st.pmap_used, p[i].source, p[i].seq, i) != 0:
            return -1
    st.n_pending = np_
    if holdidx_rebuild(st) != 0:  # holdidx.pxi
        return -1
    CL_ASSERT(debug_tables_ok(st), "the loaded tables and their indexes agree")
    CL_ASSERT(st.n_dec == 0, "a loaded state has no decisions in its window")
    return 0


cdef int undo_reserve(State* st, int64_t n) noexcept nogil:
    return grow(<void**>&st.undo, &st.cap_undo, st.n_undo + n, sizeof(Undo))


# ---------------------------------------------------------------- lookups

cdef inline int64_t account_find(State* st, uint64_t id) noexcept nogil:
    if id == 0:
        return -1
    return map1_find(st.amap, st.amap_mask, id)


cdef inline Account* account_get(State* st, uint64_t id) noexcept nogil:
    """The account (NULL if none), ready to be changed: every change of an account in
    a batch goes through this pointer (or REPLACE's index), so a snapshot being taken
    copies the row first."""
    cdef int64_t i = account_find(st, id)
    if i < 0:
        return NULL
    cow_before_write(st.cow, i)
    return &st.accounts[i]


cdef inline Source* source_find(State* st, uint64_t source) noexcept nogil:
    cdef int64_t i
    if source == 0:
        return NULL
    i = map1_find(st.smap, st.smap_mask, source)
    return NULL if i < 0 else &st.sources[i]


cdef inline Pending* pending_find(State* st, uint64_t source, uint64_t seq) noexcept nogil:
    cdef int64_t i
    if source == 0:
        return NULL
    i = map2_find(st.pmap, st.pmap_mask, source, seq)
    return NULL if i < 0 else &st.pending[i]


# ---------------------------------------------------------------- undo log

cdef inline void undo_push(State* st, int kind, int64_t idx) noexcept nogil:
    if not st.undo_on:
        return
    if st.n_undo >= st.cap_undo:
        if grow(<void**>&st.undo, &st.cap_undo, st.n_undo + 1, sizeof(Undo)) != 0:
            st.oom = 1
            return
    st.undo[st.n_undo].kind = kind
    st.undo[st.n_undo].idx = idx
    st.n_undo += 1


cdef inline void touch(State* st, Account* a) noexcept nogil:
    """Save account a's state in the undo log before a chain member changes it (and,
    in a debug build, note it for the checks after the op: every change of an
    account's money goes through here first)."""
    CL_DEBUG_DO(debug_note_account(st, a - st.accounts, False))
    if not st.undo_on:
        return
    undo_push(st, U_ACCOUNT, a - st.accounts)
    if st.oom == 0:
        st.undo[st.n_undo - 1].account = a[0]


cdef Account* account_new(State* st, uint64_t id) noexcept nogil:
    """Append a zeroed account with this id (not present) and index it."""
    cdef Account* a
    if st.n_accounts + 1 > st.cap_accounts:
        cow_copy_all(st.cow)  # the array may move: a snapshot being taken must not read it after
    if grow(<void**>&st.accounts, &st.cap_accounts, st.n_accounts + 1, sizeof(Account)) != 0:
        st.oom = 1
        return NULL
    if map1_insert(&st.amap, &st.amap_mask, &st.amap_used, id, st.n_accounts) != 0:
        st.oom = 1
        return NULL
    a = &st.accounts[st.n_accounts]
    memset(a, 0, sizeof(Account))
    a.id = id
    st.n_accounts += 1
    undo_push(st, U_NEW_ACCOUNT, st.n_accounts - 1)
    CL_DEBUG_DO(debug_note_account(st, st.n_accounts - 1, True))
    CL_ASSERT(st.n_accounts == st.amap_used, "every account is indexed once")
    CL_ASSERT(account_find(st, id) == st.n_accounts - 1, "a new account is found by its id")
    return a


cdef void pending_add(State* st, Pending* p) noexcept nogil:
    if (grow(<void**>&st.pending, &st.cap_pending, st.n_pending + 1, sizeof(Pending)) != 0
            or holdidx_reserve(st, st.n_pending + 1) != 0):
        st.oom = 1
        return
    if map2_insert(&st.pmap, &st.pmap_mask, &st.pmap_used, p.source, p.seq, st.n_pending) != 0:
        st.oom = 1
        return
    st.pending[st.n_pending] = p[0]
    st.n_pending += 1
    holdidx_add(st, st.n_pending - 1)
    CL_ASSERT(st.n_pending == st.pmap_used, "every hold is indexed once")
    CL_ASSERT(p.amount_fen > 0 or (p.amount_fen == 0 and p.debit_id == 0 and p.credit_id == 0),
              "a hold holds a positive amount (a reversed tap's mark: nothing, of no account)")
    undo_push(st, U_PENDING_ADD, 0)
    if st.undo_on and st.oom == 0:
        st.undo[st.n_undo - 1].pending = p[0]


cdef void pending_remove_raw(State* st, uint64_t source, uint64_t seq) noexcept nogil:
    """Remove a hold from the table (swap-remove; its array order is not meaningful)."""
    cdef int64_t i = map2_find(st.pmap, st.pmap_mask, source, seq)
    cdef int64_t last = st.n_pending - 1
    cdef Slot2* moved
    if i < 0:
        return
    map2_delete(st.pmap, st.pmap_mask, &st.pmap_used, source, seq)
    holdidx_remove(st, i)
    if i != last:
        holdidx_moved(st, last, i)
        st.pending[i] = st.pending[last]
        moved = map2_slot(st.pmap, st.pmap_mask, st.pending[i].source, st.pending[i].seq)
        moved.val = i
    st.n_pending -= 1
    CL_ASSERT(st.n_pending == st.pmap_used, "every hold is indexed once")
    CL_ASSERT(map2_find(st.pmap, st.pmap_mask, source, seq) == -1, "a removed hold is not found")


cdef void pending_del(State* st, Pending* p) noexcept nogil:
    cdef Pending saved = p[0]
    undo_push(st, U_PENDING_DEL, 0)
    if st.undo_on and st.oom == 0:
        st.undo[st.n_undo - 1].pending = saved
    pending_remove_raw(st, saved.source, saved.seq)


cdef void rollback(State* st) noexcept nogil:
    """Undo every change logged since the chain began, newest first."""
    cdef int64_t k
    cdef Undo* u
    cdef Account* a
    k = st.n_undo - 1
    while k >= 0:
        u = &st.undo[k]
        if u.kind == U_ACCOUNT:
            cow_before_write(st.cow, u.idx)
            st.accounts[u.idx] = u.account
        elif u.kind == U_NEW_ACCOUNT:
            a = &st.accounts[u.idx]
            map1_delete(st.amap, st.amap_mask, &st.amap_used, a.id)
            st.n_accounts -= 1
        elif u.kind == U_PENDING_ADD:
            pending_remove_raw(st, u.pending.source, u.pending.seq)
        elif u.kind == U_PENDING_DEL:
            if (grow(<void**>&st.pending, &st.cap_pending, st.n_pending + 1, sizeof(Pending)) != 0
                    or holdidx_reserve(st, st.n_pending + 1) != 0):
                st.oom = 1
                return
            if map2_insert(&st.pmap, &st.pmap_mask, &st.pmap_used, u.pending.source, u.pending.seq, st.n_pending) != 0:
                st.oom = 1
                return
            st.pending[st.n_pending] = u.pending
            st.n_pending += 1
            holdidx_add(st, st.n_pending - 1)
        elif u.kind == U_JOURNEY_MOVE:
            # One key out, one in: the map never grows here.
            map1_delete(st.taps.jmap, st.taps.jmap_mask, &st.taps.jmap_used, st.taps.journeys[u.idx].account_id)
            if map1_insert(&st.taps.jmap, &st.taps.jmap_mask, &st.taps.jmap_used, u.journey.account_id, u.idx) != 0:
                st.oom = 1
                return
            cow_before_write(st.taps.cow, u.idx)
            st.taps.journeys[u.idx] = u.journey
        elif u.kind >= U_BUDGET:
            offers_undo(st, u)  # purchases.pxi
        k -= 1
    st.n_undo = 0
    CL_ASSERT(debug_tables_ok(st), "a rolled back chain leaves the tables and their indexes agreeing")
    CL_ASSERT(st.taps.n_journeys == st.taps.jmap_used, "every journey is indexed once")
