# Helpers of the reconciliation reads (settlement), twins of `engine/spec/reports.py`.
# They hold no ledger state: a settlement adds a day's journal records to an
# AccountTotals batch by batch, then takes its rows.

cdef inline uint64_t _totals_slot(uint64_t key, int bits) noexcept nogil:
    return (key * <uint64_t>0x9E3779B97F4A7C15) >> (64 - bits)


cdef class AccountTotals:
    """Per account id: how many records named it, and the fen they posted on its debit
    and on its credit side, added batch by batch (`add`) and read sorted by account id
    (`rows`). An open-addressing table keyed by account id (0: an empty slot; a record
    side naming account 0 names no account). Sums wrap in 64-bit two's complement, as
    numpy's int64 sums do. Twin of `engine/spec/reports.py`'s AccountTotals."""

    cdef object _keys, _ops, _debits, _credits  # numpy arrays owning the table
    cdef uint64_t* keys
    cdef int64_t* ops
    cdef uint64_t* debits
    cdef uint64_t* credits
    cdef int bits
    cdef int64_t used

    def __cinit__(self):
        self._alloc(16)

    cdef void _alloc(self, int bits):
        cdef int64_t cap = (<int64_t>1) << bits
        self._keys = np.zeros(cap, dtype=np.uint64)
        self._ops = np.zeros(cap, dtype=np.int64)
        self._debits = np.zeros(cap, dtype=np.uint64)
        self._credits = np.zeros(cap, dtype=np.uint64)
        self.keys = <uint64_t*>cnp.PyArray_DATA(self._keys)
        self.ops = <int64_t*>cnp.PyArray_DATA(self._ops)
        self.debits = <uint64_t*>cnp.PyArray_DATA(self._debits)
        self.credits = <uint64_t*>cnp.PyArray_DATA(self._credits)
        self.bits = bits
        self.used = 0

    cdef void _grow(self):
        cdef object keys = self._keys, ops = self._ops, debits = self._debits, credits = self._credits
        cdef uint64_t* k = <uint64_t*>cnp.PyArray_DATA(keys)
        cdef int64_t* o = <int64_t*>cnp.PyArray_DATA(ops)
        cdef uint64_t* d = <uint64_t*>cnp.PyArray_DATA(debits)
        cdef uint64_t* c = <uint64_t*>cnp.PyArray_DATA(credits)
        cdef int64_t n = len(keys), i, s
        self._alloc(self.bits + 1)
        cdef uint64_t mask = ((<uint64_t>1) << self.bits) - 1
        for i in range(n):
            if k[i]:
                s = <int64_t>_totals_slot(k[i], self.bits)
                while self.keys[s]:
                    s = <int64_t>((<uint64_t>s + 1) & mask)
                self.keys[s], self.ops[s], self.debits[s], self.credits[s] = k[i], o[i], d[i], c[i]
                self.used += 1

    cdef inline int64_t _slot(self, uint64_t key) noexcept nogil:
        cdef uint64_t mask = ((<uint64_t>1) << self.bits) - 1
        cdef int64_t s = <int64_t>_totals_slot(key, self.bits)
        while self.keys[s] != key:
            if self.keys[s] == 0:
                self.keys[s] = key
                self.used += 1
                return s
            s = <int64_t>((<uint64_t>s + 1) & mask)
        return s

    def add(self, const uint64_t[:] debit_ids, const uint64_t[:] credit_ids, const int64_t[:] amounts,
            const uint8_t[:] keep):
        """Count record i (where keep[i]) for its debit account (a debit of amounts[i])
        and for its credit account (a credit of amounts[i]), each side that names one.
        The arrays may be strided views of a journal batch's fields."""
        cdef Py_ssize_t n = keep.shape[0], i, j, lo
        cdef int64_t s
        cdef uint64_t d, c
        if debit_ids.shape[0] != n or credit_ids.shape[0] != n or amounts.shape[0] != n:
            raise ValueError("AccountTotals.add: arrays differ in length")
        lo = 0
        while lo < n:
            # Room for the next 4,096 records' two sides at under half full, then a
            # loop without Python objects.
            while (self.used + 2 * 4096) * 2 > ((<int64_t>1) << self.bits):
                self._grow()
            with nogil:
                for i in range(lo, min(lo + 4096, n)):
                    if not keep[i]:
                        continue
                    d = debit_ids[i]
                    c = credit_ids[i]
                    if d:
                        s = self._slot(d)
                        self.ops[s] += 1
                        self.debits[s] += <uint64_t>amounts[i]
                    if c:
                        s = self._slot(c)
                        self.ops[s] += 1
                        self.credits[s] += <uint64_t>amounts[i]
            lo += 4096

    def rows(self):
        """(account_ids, ops, debits_fen, credits_fen): one entry per account counted,
        by account id (uint64, int64, int64, int64 arrays)."""
        used = np.flatnonzero(self._keys)
        ids = self._keys[used]
        order = np.argsort(ids, kind="stable")
        used = used[order]
        return (ids[order], self._ops[used], self._debits[used].view(np.int64),
                self._credits[used].view(np.int64))
