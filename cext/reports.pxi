# Helpers of the reconciliation reads (settlement), twins of `engine/spec/reports.py`.
# They hold no ledger state: a settlement adds a day's journal records to an
# AccountTotals batch by batch, then takes its rows.

from libc.stdint cimport int8_t, int16_t

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
            const uint8_t[:] keep, const uint64_t[:] union_ids=None, const int64_t[:] union_fens=None,
            const uint8_t[:] union_debited=None):
        """Count record i (where keep[i]) for its debit account (a debit of amounts[i])
        and for its credit account (a credit of amounts[i]), each side that names one.
        The arrays may be strided views of a journal batch's fields.

        With `union_ids`, `union_fens` and `union_debited`, record i also counts for
        its union account union_ids[i] (where not 0): where union_debited[i], a debit
        of union_fens[i] on it and a credit of amounts[i] + union_fens[i] on the
        credit side (a PURCHASE); elsewhere a credit of union_fens[i] on it and a
        debit of amounts[i] + union_fens[i] on the debit side (a REFUND)."""
        cdef Py_ssize_t n = keep.shape[0], i, j, lo
        cdef int64_t s
        cdef uint64_t d, c, un, ud, uc
        cdef bint with_union = union_ids is not None
        if debit_ids.shape[0] != n or credit_ids.shape[0] != n or amounts.shape[0] != n:
            raise ValueError("AccountTotals.add: arrays differ in length")
        if with_union != (union_fens is not None) or with_union != (union_debited is not None):
            raise ValueError("AccountTotals.add: union_ids, union_fens and union_debited go together")
        if with_union and (union_ids.shape[0] != n or union_fens.shape[0] != n or union_debited.shape[0] != n):
            raise ValueError("AccountTotals.add: arrays differ in length")
        lo = 0
        while lo < n:
            # Room for the next 4,096 records' three sides at under half full, then a
            # loop without Python objects.
            while (self.used + 3 * 4096) * 2 > ((<int64_t>1) << self.bits):
                self._grow()
            with nogil:
                for i in range(lo, min(lo + 4096, n)):
                    if not keep[i]:
                        continue
                    d = debit_ids[i]
                    c = credit_ids[i]
                    ud = uc = 0  # the union leg's fen added to the debit / credit side
                    if with_union:
                        un = union_ids[i]
                        if un:
                            s = self._slot(un)
                            self.ops[s] += 1
                            if union_debited[i]:
                                self.debits[s] += <uint64_t>union_fens[i]
                                uc = <uint64_t>union_fens[i]
                            else:
                                self.credits[s] += <uint64_t>union_fens[i]
                                ud = <uint64_t>union_fens[i]
                    if d:
                        s = self._slot(d)
                        self.ops[s] += 1
                        self.debits[s] += <uint64_t>amounts[i] + ud
                    if c:
                        s = self._slot(c)
                        self.ops[s] += 1
                        self.credits[s] += <uint64_t>amounts[i] + uc
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


cdef const char* _PAIRS = (b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                           b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                           b"8081828384858687888990919293949596979899")


cdef inline Py_ssize_t _put_u64(unsigned char* out, uint64_t v) noexcept nogil:
    """Write v in decimal at out; return how many bytes (two digits a step)."""
    cdef unsigned char tmp[20]
    cdef int k = 20, i
    cdef uint64_t q
    while v >= 100:
        q = v // 100
        i = <int>(v - q * 100) * 2
        k -= 2
        tmp[k] = _PAIRS[i]
        tmp[k + 1] = _PAIRS[i + 1]
        v = q
    if v >= 10:
        i = <int>v * 2
        k -= 2
        tmp[k] = _PAIRS[i]
        tmp[k + 1] = _PAIRS[i + 1]
    else:
        k -= 1
        tmp[k] = <unsigned char>(48 + v)
    memcpy(out, tmp + k, 20 - k)
    return 20 - k


def format_rows(records, list field_prefixes, bytes time_prefix, times, bytes result_prefix, list result_names,
                bytes line_end, buffer=None):
    """The text lines of journal records (JOURNAL_DTYPE) as an export writes them: for
    each record, each field's prefix then its value in decimal, `time_prefix` then its
    time (`times`: dtype S32, NUL-padded), `result_prefix` then the name of its code
    (`result_names[code]`, or the code in decimal past the list), and `line_end`.
    Returns (buffer, length): the lines are buffer[:length]; `buffer` (a uint8 array
    this returned before) is used again when it has room. Twin of
    `engine/spec/reports.py`'s format_rows."""
    cdef cnp.ndarray recs = np.ascontiguousarray(records)
    dt = recs.dtype
    names = dt.names
    if names is None or len(field_prefixes) != len(names):
        raise ValueError("format_rows: one prefix a field of the records")
    cdef Py_ssize_t n = len(recs), nf = len(names), itemsize = dt.itemsize, f, i, r
    cdef cnp.ndarray tarr = np.ascontiguousarray(times)
    if tarr.dtype != np.dtype("S32") or len(tarr) != n:
        raise ValueError("format_rows: times must be dtype S32, one a record")
    offsets = np.zeros(nf, dtype=np.int64)
    sizes = np.zeros(nf, dtype=np.int64)
    signed = np.zeros(nf, dtype=np.int64)
    for f in range(nf):
        ft, off = dt.fields[names[f]][:2]
        if ft.kind not in "iu" or ft.itemsize not in (1, 2, 4, 8):
            raise ValueError(f"format_rows: field {names[f]} is not an integer")
        offsets[f], sizes[f], signed[f] = off, ft.itemsize, ft.kind == "i"
    code_field = dt.fields["code"]
    if code_field[0] != np.dtype("<u4"):
        raise ValueError("format_rows: code must be uint32")
    cdef Py_ssize_t code_off = code_field[1]
    # Every prefix and name, one after another, with their starts and lengths.
    texts = [bytes(p) for p in field_prefixes] + [time_prefix, result_prefix, line_end] + [bytes(x) for x in result_names]
    cdef bytes blob = b"".join(texts)
    cdef cnp.ndarray starts = np.cumsum([0] + [len(t) for t in texts]).astype(np.int64)
    cdef const unsigned char* bl = <const unsigned char*>blob
    cdef const int64_t* st = <const int64_t*>cnp.PyArray_DATA(starts)
    cdef Py_ssize_t nnames = len(result_names), longest = max([len(t) for t in texts] + [1])
    cdef Py_ssize_t per_line = (nf + 4) * longest + nf * 21 + 32 + 10  # texts, numbers, time, a code
    if (isinstance(buffer, np.ndarray) and buffer.dtype == np.uint8 and buffer.ndim == 1
            and buffer.flags.c_contiguous and buffer.flags.writeable and len(buffer) >= n * per_line):
        out = buffer
    else:
        out = np.empty(max(n * per_line, 1), dtype=np.uint8)
    cdef unsigned char* o = <unsigned char*>cnp.PyArray_DATA(out)
    cdef const unsigned char* base = <const unsigned char*>cnp.PyArray_DATA(recs)
    cdef const unsigned char* tb = <const unsigned char*>cnp.PyArray_DATA(tarr)
    cdef const int64_t* offs = <const int64_t*>cnp.PyArray_DATA(offsets)
    cdef const int64_t* szs = <const int64_t*>cnp.PyArray_DATA(sizes)
    cdef const int64_t* sgn = <const int64_t*>cnp.PyArray_DATA(signed)
    cdef Py_ssize_t pos = 0, k, a, b
    cdef const unsigned char* rec
    cdef uint64_t u
    cdef int64_t v
    cdef uint32_t code
    with nogil:
        for r in range(n):
            rec = base + r * itemsize
            for f in range(nf):
                a = st[f]
                b = st[f + 1]
                memcpy(o + pos, bl + a, b - a)
                pos += b - a
                if szs[f] == 8:
                    u = (<const uint64_t*>(rec + offs[f]))[0]
                elif szs[f] == 4:
                    u = (<const uint32_t*>(rec + offs[f]))[0]
                elif szs[f] == 2:
                    u = (<const uint16_t*>(rec + offs[f]))[0]
                else:
                    u = (<const uint8_t*>(rec + offs[f]))[0]
                if sgn[f]:
                    if szs[f] == 8:
                        v = <int64_t>u
                    elif szs[f] == 4:
                        v = <int32_t>(<uint32_t>u)
                    elif szs[f] == 2:
                        v = <int16_t>(<uint16_t>u)
                    else:
                        v = <int8_t>(<uint8_t>u)
                    if v < 0:
                        o[pos] = 45  # '-'
                        pos += 1
                        u = <uint64_t>0 - <uint64_t>v
                    else:
                        u = <uint64_t>v
                pos += _put_u64(o + pos, u)
            a = st[nf]
            b = st[nf + 1]
            memcpy(o + pos, bl + a, b - a)
            pos += b - a
            for k in range(32):
                if tb[r * 32 + k] == 0:
                    break
                o[pos] = tb[r * 32 + k]
                pos += 1
            a = st[nf + 1]
            b = st[nf + 2]
            memcpy(o + pos, bl + a, b - a)
            pos += b - a
            code = (<const uint32_t*>(rec + code_off))[0]
            if code < nnames:
                a = st[nf + 3 + code]
                b = st[nf + 4 + code]
                memcpy(o + pos, bl + a, b - a)
                pos += b - a
            else:
                pos += _put_u64(o + pos, code)
            a = st[nf + 2]
            b = st[nf + 3]
            memcpy(o + pos, bl + a, b - a)
            pos += b - a
    return out, pos
