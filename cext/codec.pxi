# The journal's on-disk record encoding, in C: the same format as
# cardledger/codec.py (see its docstring for the predictors), byte for byte.

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


cdef int64_t pack_records_marked(const uint64_t* w, int64_t n, unsigned char* out, int64_t* offs,
                                 uint64_t* prev_times, int64_t base) noexcept nogil:
    """pack_records, also noting (when offs is not NULL) where each record starts
    (base + its offset in out) and its time predictor's state (the previous record's
    time_us, 0 for the first), so that `unpack_record_from` decodes it alone."""
    cdef int64_t r
    cdef int i
    cdef uint64_t t[J_WORDS]
    cdef uint64_t bitmap, bits, jseq
    cdef uint64_t prev_time = 0
    cdef uint64_t prev_jseq = w[W_JSEQ] - 1 if n > 0 else 0
    cdef unsigned char* p = out
    for r in range(n):
        if offs != NULL:
            offs[r] = base + (p - out)
            prev_times[r] = prev_time
        for i in range(J_WORDS):
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
        w += J_WORDS
    return p - out


cdef int64_t unpack_records(const unsigned char* buf, int64_t size, int64_t n, uint64_t first_seq,
                            uint64_t* w) noexcept nogil:
    """Decode n records into w; return 0, or -1 if the bytes are malformed."""
    cdef int64_t r, pos = 0
    cdef int i
    cdef uint64_t t[J_WORDS]
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
        prev_time = w[W_TIME]
        prev_jseq = jseq
        w += J_WORDS
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
                                uint64_t prev_time, uint64_t prev_jseq, uint64_t* w) noexcept nogil:
    """From a mark (pos and the predictors' state), skip `count` records and decode the next."""
    cdef int64_t r
    cdef int i
    cdef uint64_t t[J_WORDS]
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
# before the first). Format and predictor: cardledger/codec.py (`pack_words`).

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
