# The codecs, twin of engine/spec/codec.py: the journal's on-disk record encoding
# (see codec.py's docstring for the predictors), the id index runs and the word
# tables of checkpoints, byte for byte the same formats.

cdef inline int dword(int k) noexcept nogil:
    """The JOURNAL_DTYPE word of the encoding's word k (user_data is encoded after
    credit_prev_seq; union_id and union_fen, the record's last words, stay last)."""
    if k < OP_USER_DATA_WORD or k > W_USER_DATA:
        return k
    if k == W_USER_DATA:
        return OP_USER_DATA_WORD
    return k + 1


cdef inline uint64_t zigzag(uint64_t u) noexcept nogil:
    cdef int64_t s = <int64_t>u
    return (<uint64_t>s << 1) ^ <uint64_t>(s >> 63)


cdef inline uint64_t unzigzag(uint64_t z) noexcept nogil:
    return (z >> 1) ^ (<uint64_t>0 - (z & 1))


cdef inline uint64_t back(uint64_t jseq, uint64_t x) noexcept nogil:
    """The back-pointer predictor (0 and jseq + 1 swapped); its own inverse."""
    cdef uint64_t nxt = jseq + 1
    if x == 0:
        return 0
    if x == nxt:
        return nxt
    return nxt - x


cdef extern from *:
    """
    static inline int cl_ctz64(unsigned long long v) { return __builtin_ctzll(v); }
    """
    int cl_ctz64(unsigned long long v) noexcept nogil


cdef inline unsigned char* put_varint(unsigned char* p, uint64_t v) noexcept nogil:
    while v >= 0x80:
        p[0] = <unsigned char>((v & 0x7F) | 0x80)
        p += 1
        v >>= 7
    p[0] = <unsigned char>v
    return p + 1


cdef inline int64_t get_varint(const unsigned char* buf, int64_t pos, int64_t end, uint64_t* out) noexcept nogil:
    """Read one varint at pos; return the next position, or -1 if malformed."""
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef unsigned char b
    while True:
        if pos >= end or shift > 63:
            return -1
        b = buf[pos]
        pos += 1
        v |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            out[0] = v
            return pos
        shift += 7


cdef int64_t pack_records(const uint64_t* w, int64_t n, unsigned char* out) noexcept nogil:
    """Encode n records (J_WORDS words each) into out (room for n * RECORD_BYTES_MAX); return bytes."""
    return pack_records_marked(w, n, out, NULL, NULL, 0)


cdef int64_t pack_records_marked(const uint64_t* wd, int64_t n, unsigned char* out, int64_t* offs,
                                 uint64_t* prev_times, int64_t base) noexcept nogil:
    """pack_records, also noting (when offs is not NULL) where each record starts
    (base + its offset in out) and its time predictor's state (the previous record's
    time_us, 0 for the first), so that `unpack_record_from` decodes it alone."""
    cdef int64_t r
    cdef int i
    cdef uint64_t t[J_WORDS]
    cdef uint64_t w[J_WORDS]  # the record in the encoding's word order
    cdef uint64_t bitmap, bits, jseq
    cdef uint64_t prev_time = 0
    cdef uint64_t prev_jseq = wd[dword(W_JSEQ)] - 1 if n > 0 else 0
    cdef unsigned char* p = out
    for r in range(n):
        if offs != NULL:
            offs[r] = base + (p - out)
            prev_times[r] = prev_time
        for i in range(J_WORDS):
            w[i] = wd[dword(i)]
            t[i] = w[i]
        jseq = w[W_JSEQ]
        t[W_JSEQ] = jseq - (prev_jseq + 1)
        t[W_TIME] = zigzag(w[W_TIME] - prev_time)
        t[W_RESULT_AMOUNT] = w[W_RESULT_AMOUNT] ^ w[W_AMOUNT]
        t[W_DEBIT] = w[W_DEBIT] ^ w[2]
        t[W_CREDIT] = w[W_CREDIT] ^ w[3]
        t[W_DPREV] = back(jseq, w[W_DPREV])
        t[W_CPREV] = back(jseq, w[W_CPREV])
        t[W_AMOUNT] = zigzag(w[W_AMOUNT])
        t[W_LIMIT] = zigzag(w[W_LIMIT])
        t[W_BALANCE] = zigzag(w[W_BALANCE])
        t[W_SUBSIDY] = zigzag(w[W_SUBSIDY])
        # Branch-free bitmap, then a walk of its set bits: which words are zero
        # changes record to record, and each mispredicted branch costs.
        bitmap = 0
        for i in range(J_WORDS):
            bitmap |= (<uint64_t>(t[i] != 0)) << i
        p = put_varint(p, bitmap)
        bits = bitmap
        while bits:
            p = put_varint(p, t[cl_ctz64(bits)])
            bits &= bits - 1
        prev_time = w[W_TIME]
        prev_jseq = jseq
        wd += J_WORDS
    CL_ASSERT(p - out <= n * RECORD_BYTES_MAX, "a packed record takes at most RECORD_BYTES_MAX bytes")
    CL_ASSERT(p - out >= n, "a packed record takes at least its bitmap")
    return p - out


cdef int64_t unpack_records(const unsigned char* buf, int64_t size, int64_t n, uint64_t first_seq,
                            uint64_t* wd) noexcept nogil:
    """Decode n records into wd; return 0, or -1 if the bytes are malformed."""
    cdef int64_t r, pos = 0
    cdef int i
    cdef uint64_t t[J_WORDS]
    cdef uint64_t w[J_WORDS]  # the record in the encoding's word order
    cdef uint64_t bitmap, jseq
    cdef uint64_t prev_time = 0
    cdef uint64_t prev_jseq = first_seq - 1
    for r in range(n):
        pos = get_varint(buf, pos, size, &bitmap)
        if pos < 0 or (bitmap >> J_WORDS) != 0:
            return -1
        for i in range(J_WORDS):
            t[i] = 0
            if (bitmap >> i) & 1:
                pos = get_varint(buf, pos, size, &t[i])
                if pos < 0 or t[i] == 0:
                    return -1
        for i in range(J_WORDS):
            w[i] = t[i]
        w[W_AMOUNT] = unzigzag(t[W_AMOUNT])
        w[W_LIMIT] = unzigzag(t[W_LIMIT])
        w[W_BALANCE] = unzigzag(t[W_BALANCE])
        w[W_SUBSIDY] = unzigzag(t[W_SUBSIDY])
        jseq = t[W_JSEQ] + prev_jseq + 1
        w[W_JSEQ] = jseq
        w[W_TIME] = unzigzag(t[W_TIME]) + prev_time
        w[W_RESULT_AMOUNT] = t[W_RESULT_AMOUNT] ^ w[W_AMOUNT]
        w[W_DEBIT] = t[W_DEBIT] ^ w[2]
        w[W_CREDIT] = t[W_CREDIT] ^ w[3]
        w[W_DPREV] = back(jseq, t[W_DPREV])
        w[W_CPREV] = back(jseq, t[W_CPREV])
        for i in range(J_WORDS):
            wd[dword(i)] = w[i]
        prev_time = w[W_TIME]
        prev_jseq = jseq
        wd += J_WORDS
    if pos != size:
        return -1
    return 0


cdef int64_t walk_records(const unsigned char* buf, int64_t size, int64_t n, uint64_t first_seq,
                          int64_t stride, uint64_t* marks) noexcept nogil:
    """Record where every stride-th record starts: marks[3k..3k+2] = (byte position,
    previous time_us, previous journal_seq) before record k*stride. 0, or -1 if malformed."""
    cdef int64_t r, pos = 0
    cdef int i
    cdef uint64_t bitmap, v
    cdef uint64_t prev_time = 0
    cdef uint64_t prev_jseq = first_seq - 1
    for r in range(n):
        if r % stride == 0:
            marks[3 * (r // stride)] = <uint64_t>pos
            marks[3 * (r // stride) + 1] = prev_time
            marks[3 * (r // stride) + 2] = prev_jseq
        pos = get_varint(buf, pos, size, &bitmap)
        if pos < 0 or (bitmap >> J_WORDS) != 0:
            return -1
        for i in range(J_WORDS):
            if (bitmap >> i) & 1:
                pos = get_varint(buf, pos, size, &v)
                if pos < 0 or v == 0:
                    return -1
                if i == W_TIME:
                    prev_time = unzigzag(v) + prev_time
                elif i == W_JSEQ:
                    prev_jseq = prev_jseq + v
        prev_jseq += 1
    return 0 if pos == size else -1


cdef int64_t unpack_one_record(const unsigned char* buf, int64_t size, int64_t index,
                              uint64_t first_seq, uint64_t* w) noexcept nogil:
    """Decode record `index` into w (J_WORDS words), walking the ones before it; 0 or -1."""
    return unpack_record_from(buf, size, 0, index, 0, first_seq - 1, w)


cdef int64_t unpack_record_from(const unsigned char* buf, int64_t size, int64_t pos, int64_t count,
                                uint64_t prev_time, uint64_t prev_jseq, uint64_t* wd) noexcept nogil:
    """From a mark (pos and the predictors' state), skip `count` records and decode the next."""
    cdef int64_t r
    cdef int i
    cdef uint64_t t[J_WORDS]
    cdef uint64_t w[J_WORDS]  # the record in the encoding's word order
    cdef uint64_t bitmap, jseq = 0
    for r in range(count + 1):
        pos = get_varint(buf, pos, size, &bitmap)
        if pos < 0 or (bitmap >> J_WORDS) != 0:
            return -1
        for i in range(J_WORDS):
            t[i] = 0
            if (bitmap >> i) & 1:
                pos = get_varint(buf, pos, size, &t[i])
                if pos < 0 or t[i] == 0:
                    return -1
        jseq = t[W_JSEQ] + prev_jseq + 1
        prev_time = unzigzag(t[W_TIME]) + prev_time
        prev_jseq = jseq
    for i in range(J_WORDS):
        w[i] = t[i]
    w[W_AMOUNT] = unzigzag(t[W_AMOUNT])
    w[W_LIMIT] = unzigzag(t[W_LIMIT])
    w[W_BALANCE] = unzigzag(t[W_BALANCE])
    w[W_SUBSIDY] = unzigzag(t[W_SUBSIDY])
    w[W_JSEQ] = jseq
    w[W_TIME] = prev_time
    w[W_RESULT_AMOUNT] = t[W_RESULT_AMOUNT] ^ w[W_AMOUNT]
    w[W_DEBIT] = t[W_DEBIT] ^ w[2]
    w[W_CREDIT] = t[W_CREDIT] ^ w[3]
    w[W_DPREV] = back(jseq, t[W_DPREV])
    w[W_CPREV] = back(jseq, t[W_CPREV])
    for i in range(J_WORDS):
        wd[dword(i)] = w[i]
    return 0


cdef int64_t pack_pair_run(const uint64_t* seqs, const uint64_t* jseqs, int64_t n,
                           unsigned char* out) noexcept nogil:
    """Encode n sorted (seq, journal_seq) pairs (format: codec.py); return bytes written."""
    cdef int64_t i
    cdef uint64_t prev_s = 0, prev_j = 0
    cdef unsigned char* p = out
    for i in range(n):
        p = put_varint(p, seqs[i] - prev_s)
        p = put_varint(p, zigzag(jseqs[i] - prev_j))
        prev_s = seqs[i]
        prev_j = jseqs[i]
    CL_ASSERT(p - out <= n * 20, "a packed pair takes at most two varints")
    CL_ASSERT(p - out >= 2 * n, "a packed pair takes at least two bytes")
    return p - out


cdef int find_pair_in_run(const unsigned char* b, int64_t size, uint64_t seq, uint64_t* jseq) noexcept nogil:
    """1 and *jseq if seq is in the run, 0 if not, -1 if the bytes are malformed."""
    cdef int64_t pos = 0
    cdef uint64_t s = 0, j = 0, ds, dj
    while pos < size:
        pos = get_varint(b, pos, size, &ds)
        if pos < 0:
            return -1
        pos = get_varint(b, pos, size, &dj)
        if pos < 0:
            return -1
        s += ds
        j += unzigzag(dj)
        if s == seq:
            jseq[0] = j
            return 1
        if s > seq:
            return 0
    return 0


# ------------------------------------------------------------------ word tables
# Checkpoint bodies (accounts, holds, journeys): fixed-size records of up to 64
# little-endian words, mostly zeros or close to the same word of an earlier record.
# Each record: a varint bitmap of its non-zero words, then each non-zero word as the
# varint zigzag of its difference from the last non-zero value of that column (0
# before the first). Format and predictor: codec.py (`pack_words`).

cdef inline int64_t table_record_bytes_max(int nw) noexcept nogil:
    return 10 + 10 * <int64_t>nw


cdef int64_t pack_table(const uint64_t* w, int64_t n, int nw, unsigned char* out,
                        uint64_t* last) noexcept nogil:
    """Encode records [0, n) (nw words each) into out; `last` (nw words) carries each
    column's last non-zero value from one call to the next. Return bytes written."""
    cdef int64_t r
    cdef int i
    cdef uint64_t bitmap, bits
    cdef unsigned char* p = out
    for r in range(n):
        bitmap = 0
        for i in range(nw):
            bitmap |= (<uint64_t>(w[i] != 0)) << i
        p = put_varint(p, bitmap)
        bits = bitmap
        while bits:
            i = cl_ctz64(bits)
            p = put_varint(p, zigzag(w[i] - last[i]))
            last[i] = w[i]
            bits &= bits - 1
        w += nw
    CL_ASSERT(p - out <= n * table_record_bytes_max(nw), "a packed table record fits its bound")
    CL_ASSERT(p - out >= n, "a packed table record takes at least its bitmap")
    return p - out


cdef int64_t unpack_table(const unsigned char* buf, int64_t size, int64_t n, int nw,
                          uint64_t* w) noexcept nogil:
    """Decode n records of nw words into w (zeroed by the caller); 0, or -1 if the
    bytes are malformed (truncated, trailing bytes, a bit past nw, a zero word)."""
    cdef int64_t r, pos = 0
    cdef int i
    cdef uint64_t bitmap, v
    cdef uint64_t last[TABLE_WORDS_MAX]
    for i in range(nw):
        last[i] = 0
    for r in range(n):
        pos = get_varint(buf, pos, size, &bitmap)
        if pos < 0 or (nw < 64 and (bitmap >> nw) != 0):
            return -1
        for i in range(nw):
            if (bitmap >> i) & 1:
                pos = get_varint(buf, pos, size, &v)
                if pos < 0:
                    return -1
                v = last[i] + unzigzag(v)
                if v == 0:
                    return -1
                w[i] = v
                last[i] = v
        w += nw
    return 0 if pos == size else -1


# ---------------------------------------------------------------- the codecs' Python face

cdef unsigned char* _pack_scratch = NULL
cdef int64_t _pack_scratch_bytes = 0


def pack_journal(records):
    """Encode JOURNAL_DTYPE records into bytes (format: codec.py)."""
    global _pack_scratch, _pack_scratch_bytes
    cdef cnp.ndarray arr = np.ascontiguousarray(records, dtype=JOURNAL_DTYPE)
    cdef int64_t n = len(arr)
    cdef int64_t need = n * RECORD_BYTES_MAX + 1
    cdef const uint64_t* w = <const uint64_t*>cnp.PyArray_DATA(arr)
    cdef int64_t size
    cdef void* q
    # A scratch buffer reused across batches: this runs once per batch on the hot path.
    if need > _pack_scratch_bytes:
        q = realloc(_pack_scratch, need)
        if q == NULL:
            raise MemoryError("cardledger core: cannot allocate the journal encoding buffer")
        _pack_scratch = <unsigned char*>q
        _pack_scratch_bytes = need
    if n >= NOGIL_OPS_MIN:
        with nogil:
            size = pack_records(w, n, _pack_scratch)
    else:
        size = pack_records(w, n, _pack_scratch)
    return PyBytes_FromStringAndSize(<char*>_pack_scratch, size)


def unpack_journal(buf, int64_t n, uint64_t first_seq):
    """Decode `n` records whose first has journal_seq `first_seq`; ValueError if malformed."""
    cdef const unsigned char[::1] b = memoryview(buf).cast("B")
    out = np.zeros(n, dtype=JOURNAL_DTYPE)
    cdef uint64_t* w = <uint64_t*>cnp.PyArray_DATA(out)
    cdef int64_t size = b.shape[0]
    cdef int64_t rc
    cdef const unsigned char* p = &b[0] if size > 0 else NULL
    if size == 0:
        if n == 0:
            return out
        raise ValueError("journal record encoding is truncated")
    with nogil:
        rc = unpack_records(p, size, n, first_seq, w)
    if rc != 0:
        raise ValueError("journal record encoding is truncated or malformed")
    return out


def pack_words(records):
    """Encode a table of fixed-size records (whole 64-bit words, at most 64) into bytes
    (format: codec.py `pack_words`). Runs without the GIL."""
    cdef cnp.ndarray arr = np.ascontiguousarray(records)
    cdef int64_t itemsize = arr.dtype.itemsize
    if arr.ndim != 1 or itemsize % 8 != 0 or not 8 <= itemsize <= 8 * TABLE_WORDS_MAX:
        raise ValueError("pack_words: records must be 1-d, of 1 to 64 whole 64-bit words")
    cdef int nw = <int>(itemsize // 8)
    cdef int64_t n = len(arr), r = 0, k, used = 0, need
    cdef const uint64_t* w = <const uint64_t*>cnp.PyArray_DATA(arr)
    cdef uint64_t last[TABLE_WORDS_MAX]
    cdef int64_t cap = n * nw * 2 + table_record_bytes_max(nw) * TABLE_CHUNK_RECORDS
    cdef unsigned char* buf = <unsigned char*>malloc(cap)
    cdef void* q
    cdef bint failed = False
    if buf == NULL:
        raise MemoryError("pack_words: cannot allocate its buffer")
    memset(last, 0, sizeof(last))
    with nogil:
        while r < n:
            k = min(TABLE_CHUNK_RECORDS, n - r)
            need = used + k * table_record_bytes_max(nw)
            if need > cap:
                cap = max(need, cap * 2)
                q = realloc(buf, cap)
                if q == NULL:
                    failed = True
                    break
                buf = <unsigned char*>q
            used += pack_table(w + r * nw, k, nw, buf + used, last)
            r += k
    try:
        if failed:
            raise MemoryError("pack_words: cannot grow its buffer")
        return PyBytes_FromStringAndSize(<char*>buf, used)
    finally:
        free(buf)


def unpack_words(buf, int64_t n, dtype):
    """Decode `n` records of `dtype` encoded by `pack_words`; ValueError if malformed."""
    dt = np.dtype(dtype)
    if dt.itemsize % 8 != 0 or not 8 <= dt.itemsize <= 8 * TABLE_WORDS_MAX or n < 0:
        raise ValueError("unpack_words: dtype must be 1 to 64 whole 64-bit words, n >= 0")
    cdef const unsigned char[::1] b = memoryview(buf).cast("B")
    cdef int nw = <int>(dt.itemsize // 8)
    out = np.zeros(n, dtype=dt)
    cdef uint64_t* w = <uint64_t*>cnp.PyArray_DATA(out)
    cdef int64_t size = b.shape[0]
    cdef int64_t rc
    if size == 0:
        if n == 0:
            return out
        raise ValueError("word table encoding is truncated")
    with nogil:
        rc = unpack_table(&b[0], size, n, nw, w)
    if rc != 0:
        raise ValueError("word table encoding is truncated or malformed")
    return out


def journal_record_marks(buf, int64_t n, uint64_t first_seq, int64_t stride):
    """Where every stride-th record of `n` encoded records starts: a uint64 array of
    (byte position, previous time_us, previous journal_seq) rows, for
    `unpack_journal_record`. ValueError if the encoding is malformed."""
    cdef const unsigned char[::1] b = memoryview(buf).cast("B")
    if n <= 0 or stride <= 0:
        raise ValueError("journal_record_marks: n and stride must be positive")
    out = np.zeros(((n + stride - 1) // stride, 3), dtype=np.uint64)
    cdef uint64_t* m = <uint64_t*>cnp.PyArray_DATA(out)
    cdef int64_t size = b.shape[0]
    cdef int64_t rc
    if size == 0:
        raise ValueError("journal record encoding is truncated")
    with nogil:
        rc = walk_records(&b[0], size, n, first_seq, stride, m)
    if rc != 0:
        raise ValueError("journal record encoding is truncated or malformed")
    return out


def unpack_journal_record(buf, int64_t n, uint64_t first_seq, int64_t index, marks=None, int64_t stride=0):
    """Decode only record `index` of `n` encoded records; ValueError if malformed.

    Walks from the nearest mark at or before it (`journal_record_marks(..., stride)`),
    or from the first record without marks: for reading one record of a batch whose
    checksum was verified already.
    """
    cdef const unsigned char[::1] b = memoryview(buf).cast("B")
    if not 0 <= index < n:
        raise ValueError(f"record index {index} outside 0..{n - 1}")
    out = np.zeros(1, dtype=JOURNAL_DTYPE)
    cdef uint64_t* w = <uint64_t*>cnp.PyArray_DATA(out)
    cdef int64_t size = b.shape[0]
    cdef int64_t rc, k
    cdef uint64_t pos = 0, prev_time = 0, prev_jseq = first_seq - 1
    if size == 0:
        raise ValueError("journal record encoding is truncated")
    if marks is not None:
        k = index // stride
        pos, prev_time, prev_jseq = (int(x) for x in marks[k])
        index -= k * stride
        if pos >= <uint64_t>size:
            raise ValueError("journal record mark outside the encoding")
    with nogil:
        rc = unpack_record_from(&b[0], size, <int64_t>pos, index, prev_time, prev_jseq, w)
    if rc != 0:
        raise ValueError("journal record encoding is truncated or malformed")
    return out[0]


def unpack_journal_records(buf, int64_t n, uint64_t first_seq, indexes, marks, int64_t stride):
    """Decode records `indexes` (sorted or not) of `n` encoded records, each from the
    nearest mark at or before it (`journal_record_marks(..., stride)`); ValueError if
    malformed. For reading a few records of a batch whose checksum was verified."""
    cdef const unsigned char[::1] b = memoryview(buf).cast("B")
    cdef const int64_t[::1] idx = np.ascontiguousarray(indexes, dtype=np.int64)
    cdef const uint64_t[:, ::1] m = np.ascontiguousarray(marks, dtype=np.uint64)
    cdef int64_t count = idx.shape[0], size = b.shape[0], i, k, index, rc = 0
    out = np.zeros(count, dtype=JOURNAL_DTYPE)
    cdef uint64_t* w = <uint64_t*>cnp.PyArray_DATA(out)
    if count == 0:
        return out
    if size == 0 or stride <= 0 or m.shape[1] != 3:
        raise ValueError("journal record encoding is truncated, or the marks are malformed")
    with nogil:
        for i in range(count):
            index = idx[i]
            if not 0 <= index < n or index // stride >= m.shape[0]:
                rc = -2
                break
            k = index // stride
            if m[k, 0] >= <uint64_t>size:
                rc = -1
                break
            rc = unpack_record_from(&b[0], size, <int64_t>m[k, 0], index - k * stride, m[k, 1], m[k, 2],
                                    w + i * J_WORDS)
            if rc != 0:
                break
    if rc == -2:
        raise ValueError(f"a record index is outside 0..{n - 1}")
    if rc != 0:
        raise ValueError("journal record encoding is truncated or malformed")
    return out


def unpack_records_of_batches(list bodies, list marks, counts, firsts, which, journal_seqs, int64_t stride):
    """Decode record journal_seqs[i] from batch which[i] (its encoded records
    bodies[b] (bytes), counts[b] of them from journal_seq firsts[b], marked by
    `journal_record_marks(..., stride)` in marks[b]), all in one call: the records a
    batch of resent ops points at, spread over many stored batches. ValueError if an
    encoding is malformed or a record is not the one its position says."""
    cdef const int64_t[::1] cnt = np.ascontiguousarray(counts, dtype=np.int64)
    cdef const uint64_t[::1] fst = np.ascontiguousarray(firsts, dtype=np.uint64)
    cdef const int64_t[::1] wh = np.ascontiguousarray(which, dtype=np.int64)
    cdef const uint64_t[::1] js = np.ascontiguousarray(journal_seqs, dtype=np.uint64)
    cdef Py_ssize_t nb = len(bodies), count = js.shape[0], i, b
    if len(marks) != nb or cnt.shape[0] != nb or fst.shape[0] != nb or wh.shape[0] != count or stride <= 0:
        raise ValueError("unpack_records_of_batches: arguments differ in length, or stride <= 0")
    out = np.zeros(count, dtype=JOURNAL_DTYPE)
    if count == 0:
        return out
    cdef uint64_t* w = <uint64_t*>cnp.PyArray_DATA(out)
    cdef cnp.ndarray mk
    cdef const uint64_t* m
    cdef const unsigned char* p
    cdef int64_t size, index, k, rc
    for i in range(count):
        b = wh[i]
        if not 0 <= b < nb:
            raise ValueError("unpack_records_of_batches: a batch index is out of range")
        body = bodies[b]
        if not isinstance(body, bytes):
            raise ValueError("unpack_records_of_batches: bodies must be bytes")
        if marks[b] is None or not isinstance(marks[b], np.ndarray):
            raise ValueError("unpack_records_of_batches: marks must be contiguous (m, 3) uint64 arrays")
        mk = marks[b]
        if mk.dtype != np.uint64 or mk.ndim != 2 or mk.shape[1] != 3 or not mk.flags.c_contiguous:
            raise ValueError("unpack_records_of_batches: marks must be contiguous (m, 3) uint64 arrays")
        index = <int64_t>(js[i] - fst[b])
        if js[i] < fst[b] or index >= cnt[b]:
            raise ValueError(f"journal record {js[i]} is not in the batch given for it")
        k = index // stride
        if k >= mk.shape[0]:
            raise ValueError("journal record marks do not cover the batch")
        m = <const uint64_t*>cnp.PyArray_DATA(mk) + 3 * k
        p = <const unsigned char*>(<char*>body)
        size = len(<bytes>body)
        if size == 0 or m[0] >= <uint64_t>size:
            raise ValueError("journal record encoding is truncated, or the marks are malformed")
        rc = unpack_record_from(p, size, <int64_t>m[0], index - k * stride, m[1], m[2], w + i * J_WORDS)
        if rc != 0:
            raise ValueError("journal record encoding is truncated or malformed")
        if w[i * J_WORDS + dword(W_JSEQ)] != js[i]:
            raise ValueError(f"journal record {js[i]} is not where it belongs")
    return out


cdef extern from *:
    """
    static inline void cl_put_be64(unsigned char* p, unsigned long long v) {
        for (int i = 7; i >= 0; i--) { p[i] = (unsigned char)(v & 0xFF); v >>= 8; }
    }
    """
    void cl_put_be64(unsigned char* p, uint64_t v) noexcept nogil


def id_index_items(list sources, list seqs, list payloads, list offsets, uint64_t lo, hi):
    """The id index items of several id log flushes for the sources in [lo, hi) (hi
    None: to the last), merged in key order: a list of (key, value) bytes pairs, key
    the big-endian (source, seq). Flush f's rows are sources[f], seqs[f] (sorted by
    (source, seq), contiguous uint64); with `offsets` (int64, one more than rows) row
    k's value is payloads[f][offsets[f][k]:offsets[f][k+1]] (bytes), with offsets
    None, payloads[f] is a uint64 array and the value its big-endian 8 bytes (the late
    ids' journal_seqs). ValueError if the arrays disagree."""
    cdef Py_ssize_t nf = len(sources), f, k
    if len(seqs) != nf or len(payloads) != nf or (offsets is not None and len(offsets) != nf):
        raise ValueError("id_index_items: one entry per flush in every list")
    cdef bint runs = offsets is not None
    cdef int64_t* pos = <int64_t*>malloc((nf + 1) * sizeof(int64_t))
    cdef int64_t* end = <int64_t*>malloc((nf + 1) * sizeof(int64_t))
    if pos == NULL or end == NULL:
        free(pos)
        free(end)
        raise MemoryError("id_index_items")
    keep = []  # the arrays the pointers below point into
    cdef const uint64_t** src_p = <const uint64_t**>malloc((nf + 1) * sizeof(void*))
    cdef const uint64_t** seq_p = <const uint64_t**>malloc((nf + 1) * sizeof(void*))
    cdef const int64_t** off_p = <const int64_t**>malloc((nf + 1) * sizeof(void*))
    cdef const uint64_t** jseq_p = <const uint64_t**>malloc((nf + 1) * sizeof(void*))
    cdef const char** blob_p = <const char**>malloc((nf + 1) * sizeof(void*))
    cdef int64_t* blob_n = <int64_t*>malloc((nf + 1) * sizeof(int64_t))
    cdef cnp.ndarray a_src, a_seq, a_off, a_pay
    cdef int64_t n, best, o0, o1
    cdef uint64_t bs, bq
    cdef unsigned char key[16]
    cdef unsigned char val8[8]
    out = []
    try:
        if src_p == NULL or seq_p == NULL or off_p == NULL or jseq_p == NULL or blob_p == NULL or blob_n == NULL:
            raise MemoryError("id_index_items")
        for f in range(nf):
            a_src = np.ascontiguousarray(sources[f], dtype=np.uint64)
            a_seq = np.ascontiguousarray(seqs[f], dtype=np.uint64)
            n = a_src.shape[0]
            if a_seq.shape[0] != n:
                raise ValueError("id_index_items: sources and seqs differ in length")
            keep += [a_src, a_seq]
            src_p[f] = <const uint64_t*>cnp.PyArray_DATA(a_src)
            seq_p[f] = <const uint64_t*>cnp.PyArray_DATA(a_seq)
            if runs:
                a_off = np.ascontiguousarray(offsets[f], dtype=np.int64)
                if a_off.shape[0] != n + 1 or not isinstance(payloads[f], bytes):
                    raise ValueError("id_index_items: offsets need one more entry than rows, payloads bytes")
                keep += [a_off, payloads[f]]
                off_p[f] = <const int64_t*>cnp.PyArray_DATA(a_off)
                blob_p[f] = <const char*>(<bytes>payloads[f])
                blob_n[f] = len(<bytes>payloads[f])
            else:
                a_pay = np.ascontiguousarray(payloads[f], dtype=np.uint64)
                if a_pay.shape[0] != n:
                    raise ValueError("id_index_items: payloads and sources differ in length")
                keep.append(a_pay)
                jseq_p[f] = <const uint64_t*>cnp.PyArray_DATA(a_pay)
            # the rows of sources in [lo, hi): binary searches on the sorted sources
            pos[f] = int(np.searchsorted(a_src, np.uint64(lo), side="left"))
            end[f] = n if hi is None else int(np.searchsorted(a_src, np.uint64(hi), side="left"))
        while True:
            # k-way merge: the flushes are few (at most two logs' worth), so a scan
            best = -1
            for f in range(nf):
                if pos[f] < end[f] and (best < 0 or src_p[f][pos[f]] < bs or
                                        (src_p[f][pos[f]] == bs and seq_p[f][pos[f]] < bq)):
                    best = f
                    bs = src_p[f][pos[f]]
                    bq = seq_p[f][pos[f]]
            if best < 0:
                break
            k = pos[best]
            pos[best] += 1
            cl_put_be64(key, bs)
            cl_put_be64(key + 8, bq)
            if runs:
                o0 = off_p[best][k]
                o1 = off_p[best][k + 1]
                if not 0 <= o0 <= o1 <= blob_n[best]:
                    raise ValueError("id_index_items: an offset is outside its payload")
                out.append((PyBytes_FromStringAndSize(<char*>key, 16),
                            PyBytes_FromStringAndSize(blob_p[best] + o0, o1 - o0)))
            else:
                cl_put_be64(val8, jseq_p[best][k])
                out.append((PyBytes_FromStringAndSize(<char*>key, 16), PyBytes_FromStringAndSize(<char*>val8, 8)))
    finally:
        free(pos)
        free(end)
        free(src_p)
        free(seq_p)
        free(off_p)
        free(jseq_p)
        free(blob_p)
        free(blob_n)
    return out


def pack_id_runs(sources, seqs, journal_seqs, int64_t max_pairs):
    """Group decisions sorted by (source, seq) into id index values (format: codec.py).

    Returns (key_sources, key_seqs, offsets, blob): value k is blob[offsets[k]:offsets[k+1]],
    keyed by (key_sources[k], key_seqs[k]) = its source and its highest seq; a source's
    run is cut into values of at most max_pairs pairs.
    """
    cdef const uint64_t[::1] src = np.ascontiguousarray(sources, dtype=np.uint64)
    cdef const uint64_t[::1] s = np.ascontiguousarray(seqs, dtype=np.uint64)
    cdef const uint64_t[::1] j = np.ascontiguousarray(journal_seqs, dtype=np.uint64)
    cdef int64_t n = s.shape[0]
    if src.shape[0] != n or j.shape[0] != n or max_pairs < 1:
        raise ValueError("pack_id_runs: arrays differ in length, or max_pairs < 1")
    key_src = np.empty(n, dtype=np.uint64)
    key_seq = np.empty(n, dtype=np.uint64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    cdef uint64_t[::1] ks = key_src
    cdef uint64_t[::1] kq = key_seq
    cdef int64_t[::1] off = offsets
    cdef bytearray out = bytearray(max(n, 1) * 20)
    cdef unsigned char* p = <unsigned char*><char*>out
    cdef int64_t i = 0, k = 0, lo, hi, size = 0
    with nogil:
        while i < n:
            lo = i
            hi = i + 1
            while hi < n and src[hi] == src[lo] and hi - lo < max_pairs:
                hi += 1
            size += pack_pair_run(&s[lo], &j[lo], hi - lo, p + size)
            ks[k] = src[lo]
            kq[k] = s[hi - 1]
            k += 1
            off[k] = size
            i = hi
    return key_src[:k], key_seq[:k], offsets[:k + 1], bytes(memoryview(out)[:size])


def pack_pairs(seqs, journal_seqs):
    """Encode sorted (seq, journal_seq) pairs of an id index run (format: codec.py)."""
    cdef const uint64_t[::1] s = np.ascontiguousarray(seqs, dtype=np.uint64)
    cdef const uint64_t[::1] j = np.ascontiguousarray(journal_seqs, dtype=np.uint64)
    cdef int64_t n = s.shape[0]
    if j.shape[0] != n:
        raise ValueError("pack_pairs: seqs and journal_seqs differ in length")
    if n == 0:
        return b""
    cdef bytearray out = bytearray(n * 20)
    cdef unsigned char* p = <unsigned char*><char*>out
    cdef int64_t size
    with nogil:
        size = pack_pair_run(&s[0], &j[0], n, p)
    return bytes(memoryview(out)[:size])


def find_pair(buf, uint64_t seq):
    """journal_seq paired with `seq` in an encoded run, or None; ValueError if malformed."""
    cdef const unsigned char[::1] b = memoryview(buf).cast("B")
    cdef uint64_t jseq = 0
    cdef int rc
    if b.shape[0] == 0:
        return None
    rc = find_pair_in_run(&b[0], b.shape[0], seq, &jseq)
    if rc < 0:
        raise ValueError("id index run is malformed")
    return jseq if rc == 1 else None


cdef inline int64_t _first_key_at_least(const uint64_t* ks, const uint64_t* kq, int64_t n,
                                         uint64_t src, uint64_t seq) noexcept nogil:
    """The first k with (ks[k], kq[k]) >= (src, seq) in keys sorted that way, or n."""
    cdef int64_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if ks[mid] < src or (ks[mid] == src and kq[mid] < seq):
            lo = mid + 1
        else:
            hi = mid
    return lo


def find_ids_in_runs(key_src, key_seq, offsets, buf, q_src, q_seq, out):
    """Fill out[i], where it is 0, with the journal_seq of id (q_src[i], q_seq[i]) if an
    id log's runs hold it: runs keyed by (source, highest seq), sorted; run k's pairs
    are buf[offsets[k]:offsets[k+1]]. ValueError if a run is malformed."""
    cdef const uint64_t[::1] ks = np.ascontiguousarray(key_src, dtype=np.uint64)
    cdef const uint64_t[::1] kq = np.ascontiguousarray(key_seq, dtype=np.uint64)
    cdef const int64_t[::1] off = np.ascontiguousarray(offsets, dtype=np.int64)
    cdef const unsigned char[::1] b = memoryview(buf).cast("B")
    cdef const uint64_t[::1] qs = np.ascontiguousarray(q_src, dtype=np.uint64)
    cdef const uint64_t[::1] qq = np.ascontiguousarray(q_seq, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef int64_t n = qs.shape[0], nk = ks.shape[0], i, k, lo, hi, size = b.shape[0]
    cdef uint64_t jseq
    cdef int rc = 0
    if qq.shape[0] != n or o.shape[0] != n or kq.shape[0] != nk or off.shape[0] != nk + 1:
        raise ValueError("find_ids_in_runs: arrays differ in length")
    if nk == 0:
        return
    if size == 0:
        raise ValueError("id log runs are empty but keyed")
    with nogil:
        for i in range(n):
            if o[i] != 0:
                continue
            k = _first_key_at_least(&ks[0], &kq[0], nk, qs[i], qq[i])
            if k == nk or ks[k] != qs[i]:
                continue
            lo = off[k]
            hi = off[k + 1]
            if lo < 0 or hi > size or lo >= hi:
                rc = -1
                break
            rc = find_pair_in_run(&b[0] + lo, hi - lo, qq[i], &jseq)
            if rc < 0:
                break
            if rc == 1:
                o[i] = jseq
            rc = 0
    if rc < 0:
        raise ValueError("id log run is malformed or out of range")


def find_ids_exact(key_src, key_seq, values, q_src, q_seq, out):
    """Fill out[i], where it is 0, with values[k] for the k whose (key_src[k],
    key_seq[k]) equals (q_src[i], q_seq[i]), the keys sorted that way."""
    cdef const uint64_t[::1] ks = np.ascontiguousarray(key_src, dtype=np.uint64)
    cdef const uint64_t[::1] kq = np.ascontiguousarray(key_seq, dtype=np.uint64)
    cdef const uint64_t[::1] v = np.ascontiguousarray(values, dtype=np.uint64)
    cdef const uint64_t[::1] qs = np.ascontiguousarray(q_src, dtype=np.uint64)
    cdef const uint64_t[::1] qq = np.ascontiguousarray(q_seq, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef int64_t n = qs.shape[0], nk = ks.shape[0], i, k
    if qq.shape[0] != n or o.shape[0] != n or kq.shape[0] != nk or v.shape[0] != nk:
        raise ValueError("find_ids_exact: arrays differ in length")
    if nk == 0:
        return
    with nogil:
        for i in range(n):
            if o[i] != 0:
                continue
            k = _first_key_at_least(&ks[0], &kq[0], nk, qs[i], qq[i])
            if k < nk and ks[k] == qs[i] and kq[k] == qq[i]:
                o[i] = v[k]
