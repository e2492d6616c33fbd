# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Cython core: the ledger state machine over C arrays.

Same semantics as `cardledger.reference.Engine` (the executable specification),
built for speed: one pass over a batch of op records, no Python object per op, no
storage call inside the loop. State lives in malloc'd arrays and open-addressing
hash tables; every op kind has its own handler (`op_*`), dispatched by `execute`.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from core cimport *
from libc.stdlib cimport malloc, realloc, free, calloc
from libc.string cimport memset, memcpy, memcmp
from cpython.bytes cimport PyBytes_FromStringAndSize

import numpy as np
cimport numpy as cnp

from cardledger.schema import (
    ACCOUNT_DTYPE, SOURCE_DTYPE, PENDING_DTYPE, JOURNAL_DTYPE, RESULT_DTYPE,
    OP_DTYPE, DECISION_DTYPE, DEFAULT_CASH_CAP_FEN, JOURNEY_DTYPE, JOURNEY_LEGS_MAX,
    FARE_CAPS_MAX, FARE_TIERS_MAX,
)

cnp.import_array()

include "fares.pxi"
include "state.pxi"
include "codec.pxi"
include "window.pxi"
include "gaps.pxi"
include "handlers.pxi"
include "taps.pxi"
include "batch.pxi"

cdef void clear_legs_past_n(Journey* o, Py_ssize_t n) noexcept nogil:
    """Legs past a journey's n_legs read as zeros, as in export_journeys."""
    cdef Py_ssize_t i
    cdef int32_t k
    for i in range(n):
        k = o[i].n_legs if o[i].n_legs > 0 else 0
        if k < JOURNEY_LEGS_MAX_C:
            memset(&o[i].legs[k], 0, (JOURNEY_LEGS_MAX_C - k) * sizeof(FareLeg))


cdef void sort_late_decisions(uint64_t* d, unsigned char* lt, int64_t n) noexcept nogil:
    """Sort rows (source, seq, journal_seq) + late flag by (source, seq) in place, rows
    already grouped by source in order: an insertion sort, linear but for the late
    decisions (each moves back within its source's group). A full sort of every flush
    (np.lexsort of 65,536 rows) cost ~8 ms of the batch that flushed."""
    cdef int64_t i, j
    cdef uint64_t s0, s1, s2
    cdef unsigned char f
    for i in range(1, n):
        if d[3 * i] != d[3 * (i - 1)] or d[3 * i + 1] >= d[3 * (i - 1) + 1]:
            continue
        s0, s1, s2, f = d[3 * i], d[3 * i + 1], d[3 * i + 2], lt[i]
        j = i
        while j > 0 and d[3 * (j - 1)] == s0 and d[3 * (j - 1) + 1] > s1:
            d[3 * j] = d[3 * (j - 1)]
            d[3 * j + 1] = d[3 * (j - 1) + 1]
            d[3 * j + 2] = d[3 * (j - 1) + 2]
            lt[j] = lt[j - 1]
            j -= 1
        d[3 * j], d[3 * j + 1], d[3 * j + 2], lt[j] = s0, s1, s2, f


cdef object _prefix_or_new(object buf, Py_ssize_t n, object dtype):
    """The first n rows of `buf` when it is a writable contiguous array of `dtype` that
    holds n rows (a buffer reused across checkpoints costs no page faults), else a new
    array of n rows."""
    if (buf is not None and len(buf) >= n and buf.dtype == dtype and buf.flags.c_contiguous
            and buf.flags.writeable):
        return buf[:n]
    return np.empty(n, dtype=dtype)


cdef object _copied_rows(object buf, const void* rows, Py_ssize_t n, size_t item, object dtype):
    """n rows of `item` bytes at `rows`, copied into `_prefix_or_new(buf, n, dtype)`."""
    out = _prefix_or_new(buf, n, dtype)
    if n:
        memcpy(cnp.PyArray_DATA(out), rows, n * item)
    return out


cdef class Engine:
    """The core engine (see module docstring); the same face as the reference Engine."""

    cdef State st
    cdef Taps taps             # journeys and fare versions: kept across load_checkpoint
    cdef list _fare_keep       # what the installed versions' raw pointers point into
    cdef CowTable _cow_acc     # the snapshot being taken of the accounts (snapshot_begin)
    cdef CowTable _cow_jny     # ... and of the journeys
    cdef object _cow_keep      # the snapshot's buffers, alive while their rows are copied
    cdef public int64_t default_cap_fen

    implementation = "cython"

    def __cinit__(self, int64_t default_cap_fen=DEFAULT_CASH_CAP_FEN):
        memset(&self.st, 0, sizeof(State))
        self._fare_keep = []
        self.default_cap_fen = default_cap_fen
        self.st.default_cap_fen = default_cap_fen
        memset(&self._cow_acc, 0, sizeof(CowTable))
        memset(&self._cow_jny, 0, sizeof(CowTable))
        if state_init(&self.st) != 0 or taps_init(&self.taps) != 0:
            raise MemoryError("cardledger core: cannot allocate the initial state")
        self.st.taps = &self.taps
        self.st.cow = &self._cow_acc
        self.taps.cow = &self._cow_jny

    def __dealloc__(self):
        # (a copier thread holds a reference: none runs here)
        cow_free(&self._cow_acc)
        cow_free(&self._cow_jny)
        state_free(&self.st)
        taps_free_journeys(&self.taps)
        free(self.taps.vers)
        self.taps.vers = NULL

    # ------------------------------------------------------------------ fares

    def set_tap_horizon(self, int64_t horizon_us):
        """Refuse, from the next `apply` on, every TAP whose time_us is later than
        horizon_us (TAP_TIME_IN_FUTURE); replays are not affected. Initially none is."""
        self.st.tap_horizon_us = horizon_us

    def set_fare_versions(self, versions):
        """Install the fare-system versions (TapTables, oldest first) taps are rated by."""
        versions = list(versions)
        cdef Py_ssize_t i, n = len(versions)
        cdef list keep = []
        cdef FareEvaluator ev
        cdef TapVer* tv
        cdef TapVer* vers = <TapVer*>calloc(n if n > 0 else 1, sizeof(TapVer))
        if vers == NULL:
            raise MemoryError("cardledger core: cannot allocate the fare versions")
        i32, i64, u64, u8 = np.int32, np.int64, np.uint64, np.uint8
        try:
            for i in range(n):
                tt = versions[i]
                tv = &vers[i]
                if len(tt.cap_period) > FARE_CAPS_MAX or len(tt.tier_percent_off) > FARE_TIERS_MAX:
                    raise ValueError(f"fare version {i}: at most {FARE_CAPS_MAX} caps and {FARE_TIERS_MAX} tiers")
                ev = FareEvaluator(tt.fares)
                keep.append(ev)
                tv.ft = &ev.t
                tv.effective_from_us = tt.effective_from_us
                tv.n_codes = len(tt.rider_category_of_code)
                tv.rider_category_of_code = <int32_t*>_arr_ptr(keep, tt.rider_category_of_code, i32)
                tv.fare_media = tt.fare_media
                tv.journey_break_us = tt.journey_break_us
                tv.day_start_s = tt.day_start_s
                tv.route_operator = <uint64_t*>_arr_ptr(keep, tt.route_operator, u64)
                tv.network_mode = <uint8_t*>_arr_ptr(keep, tt.network_mode, u8)
                tv.gate_max_fare_fen = <int64_t*>_arr_ptr(keep, tt.gate_max_fare_fen, i64)
                tv.gate_timeout_us = <int64_t*>_arr_ptr(keep, tt.gate_timeout_us, i64)
                tv.gate_incomplete_fen = <int64_t*>_arr_ptr(keep, tt.gate_incomplete_fen, i64)
                tv.gate_same_station_fen = <int64_t*>_arr_ptr(keep, tt.gate_same_station_fen, i64)
                tv.network_allowance_fen = <int64_t*>_arr_ptr(keep, tt.network_allowance_fen, i64)
                tv.product_allowance_fen = <int64_t*>_arr_ptr(keep, tt.product_allowance_fen, i64)
                tv.n_caps = len(tt.cap_period)
                tv.cap_period = <int32_t*>_arr_ptr(keep, tt.cap_period, i32)
                tv.cap_amount_fen = <int64_t*>_arr_ptr(keep, tt.cap_amount_fen, i64)
                tv.cap_category = <uint8_t*>_arr_ptr(keep, tt.cap_category, u8)
                tv.cap_network = <uint8_t*>_arr_ptr(keep, tt.cap_network, u8)
                tv.cap_category_w = _mask_width(tt.cap_category)
                tv.cap_network_w = _mask_width(tt.cap_network)
                tv.n_tiers = len(tt.tier_percent_off)
                tv.tier_from_fen = <int64_t*>_arr_ptr(keep, tt.tier_from_fen, i64)
                tv.tier_until_fen = <int64_t*>_arr_ptr(keep, tt.tier_until_fen, i64)
                tv.tier_percent_off = <int32_t*>_arr_ptr(keep, tt.tier_percent_off, i32)
                tv.tier_category = <uint8_t*>_arr_ptr(keep, tt.tier_category, u8)
                tv.tier_network = <uint8_t*>_arr_ptr(keep, tt.tier_network, u8)
                tv.tier_category_w = _mask_width(tt.tier_category)
                tv.tier_network_w = _mask_width(tt.tier_network)
        except BaseException:
            free(vers)
            raise
        free(self.taps.vers)
        self.taps.vers = vers
        self.taps.n_vers = <int32_t>n
        self._fare_keep = keep

    def export_journeys(self):
        """Every card's fare state (JOURNEY_DTYPE, by account id)."""
        cdef Py_ssize_t i, k, n = self.taps.n_journeys
        out = np.empty(n, dtype=JOURNEY_DTYPE)
        cdef Journey* o = <Journey*>cnp.PyArray_DATA(out)
        if n:
            memcpy(o, self.taps.journeys, n * sizeof(Journey))
        for i in range(n):  # legs past n_legs read as zeros, as the reference exports them
            for k in range(o[i].n_legs, JOURNEY_LEGS_MAX_C):
                memset(&o[i].legs[k], 0, sizeof(FareLeg))
        return out[np.argsort(out["account_id"], kind="stable")]

    def snapshot_journeys(self, buf=None, bint clear_unused=True):
        """Every card's fare state (JOURNEY_DTYPE) for a checkpoint: `export_journeys`
        in the store's own order, without its sort (a sort of a million 336-byte rows
        stalls the batch that takes the checkpoint), written into `buf` when it holds
        enough rows. `load_journeys` takes the rows in any order.

        With clear_unused=False the legs past each row's n_legs keep what the store
        holds there, and `clear_unused_legs` must clear them before the rows are stored:
        the checkpoint thread does, off the batch that takes the snapshot (for a million
        cards the clearing is most of the snapshot's time)."""
        cdef Py_ssize_t n = self.taps.n_journeys
        out = _copied_rows(buf, self.taps.journeys, n, sizeof(Journey), JOURNEY_DTYPE)
        cdef Journey* o = <Journey*>cnp.PyArray_DATA(out)
        if clear_unused:
            clear_legs_past_n(o, n)
        return out

    def clear_unused_legs(self, journeys):
        """Zero, in place, the legs past each row's n_legs of JOURNEY_DTYPE rows (as
        `export_journeys` gives them); see `snapshot_journeys`. Touches no engine state."""
        if not (isinstance(journeys, np.ndarray) and journeys.dtype == JOURNEY_DTYPE
                and journeys.flags.c_contiguous and journeys.flags.writeable):
            raise ValueError("clear_unused_legs: a writable contiguous JOURNEY_DTYPE array is needed")
        cdef Journey* o = <Journey*>cnp.PyArray_DATA(journeys)
        cdef Py_ssize_t n = len(journeys)
        with nogil:
            clear_legs_past_n(o, n)

    cdef void _settle_snapshot(self) noexcept:
        """Finish a snapshot being taken (`snapshot_begin`) before the tables are
        replaced or moved wholesale."""
        with nogil:
            cow_copy_all(&self._cow_acc)
            cow_copy_all(&self._cow_jny)

    def snapshot_begin(self, accounts_buf=None, journeys_buf=None, pending_buf=None):
        """Begin a checkpoint's snapshot of the state as it is now: (accounts, pending,
        journeys), the rows as `export_checkpoint(sort=False)` and
        `snapshot_journeys(clear_unused=False)` give them.

        Only the holds are copied here. The accounts and journeys are copied on write:
        `snapshot_complete` (the checkpoint writer's thread) copies their rows into the
        returned arrays while later batches run, and a batch about to change a row that
        is not copied yet copies it first. The arrays hold the snapshot only once
        `snapshot_complete` has returned. They are written into `accounts_buf`,
        `journeys_buf` and `pending_buf` when those are large enough (buffers reused
        across checkpoints cost no page faults). A snapshot still being taken is
        finished first.
        """
        self._settle_snapshot()
        cdef Py_ssize_t n_acc = self.st.n_accounts, n_jny = self.taps.n_journeys
        accounts = _prefix_or_new(accounts_buf, n_acc, ACCOUNT_DTYPE)
        journeys = _prefix_or_new(journeys_buf, n_jny, JOURNEY_DTYPE)
        pending = _copied_rows(pending_buf, self.st.pending, self.st.n_pending, sizeof(Pending), PENDING_DTYPE)
        self._cow_keep = (accounts, journeys)
        if (cow_begin(&self._cow_acc, self.st.accounts, n_acc, cnp.PyArray_DATA(accounts), sizeof(Account)) != 0
                or cow_begin(&self._cow_jny, self.taps.journeys, n_jny, cnp.PyArray_DATA(journeys),
                             sizeof(Journey)) != 0):
            cow_copy_all(&self._cow_acc)
            raise MemoryError("cardledger core: cannot allocate a snapshot")
        return accounts, pending, journeys

    def snapshot_complete(self):
        """Copy the rows of the snapshot `snapshot_begin` started that no batch has
        copied yet; on return its arrays hold the snapshot. Runs without the GIL, beside
        the batches (the checkpoint writer's thread calls it); nothing to do if no
        snapshot is being taken."""
        self._settle_snapshot()

    def snapshot_pending(self):
        """Whether a snapshot begun by `snapshot_begin` is still being copied."""
        return bool(cl_load_int(&self._cow_acc.active) or cl_load_int(&self._cow_jny.active))

    def load_journeys(self, journeys):
        """Replace every card's fare state (as `export_journeys` gives)."""
        cdef cnp.ndarray a = np.ascontiguousarray(journeys, dtype=JOURNEY_DTYPE)
        cdef Py_ssize_t i, k, n = len(a)
        cdef Journey* rows = <Journey*>cnp.PyArray_DATA(a)
        cdef Journey j
        cdef int64_t idx
        cdef int32_t nl
        for i in range(n):
            if rows[i].account_id == 0:
                raise ValueError("load_journeys: account_id 0 is not a card")
        self._settle_snapshot()
        taps_free_journeys(&self.taps)
        self.taps.jmap = <Slot*>calloc(MAP_SLOTS_INITIAL, sizeof(Slot))
        if self.taps.jmap == NULL:
            raise MemoryError("cardledger core: cannot allocate the journeys")
        self.taps.jmap_mask = MAP_SLOTS_INITIAL - 1
        for i in range(n):
            j = rows[i]
            # Journey.from_row keeps row["legs"][:n_legs] (Python slice bounds)
            nl = j.n_legs
            if nl < 0:
                nl = JOURNEY_LEGS_MAX_C + nl if nl > -JOURNEY_LEGS_MAX_C else 0
            if nl > JOURNEY_LEGS_MAX_C:
                nl = JOURNEY_LEGS_MAX_C
            j.n_legs = nl
            for k in range(JOURNEY_LEGS_MAX_C):
                if k < nl:
                    j.legs[k].reserved = 0
                else:
                    memset(&j.legs[k], 0, sizeof(FareLeg))
            idx = journey_find(&self.taps, j.account_id)
            if idx < 0:
                if journey_reserve(&self.taps, n if n > self.st.n_accounts else self.st.n_accounts) != 0:
                    raise MemoryError("cardledger core: cannot allocate the journeys")
            journey_store(&self.taps, idx, &j)

    def journey_count(self):
        """Number of cards with fare state."""
        return self.taps.n_journeys

    def journey_capacity(self):
        """Journeys the store holds room for (it grows at once to the number of cards)."""
        return self.taps.cap_journeys

    def reserve_journeys(self, int64_t n):
        """Grow the journey store (and its map) to hold n journeys now, as the first
        tap past its room would, and the hold map for the metro entries of one card in
        HOLDS_RESERVED_CARDS_PER_HOLD, so that no batch pays for them. MemoryError if
        refused."""
        self._settle_snapshot()  # the store may move
        if (grow(<void**>&self.taps.journeys, &self.taps.cap_journeys, n, sizeof(Journey)) != 0
                or journey_map_reserve(&self.taps) != 0):
            raise MemoryError("cardledger core: cannot allocate the journeys")
        # Metro entries hold their maximum fare until the exit: room for a share of the
        # cards' holds at once, so the hold map does not rehash on the batch path.
        if (grow(<void**>&self.st.pending, &self.st.cap_pending, n // HOLDS_RESERVED_CARDS_PER_HOLD, sizeof(Pending)) != 0
                or map2_reserve(&self.st.pmap, &self.st.pmap_mask, n // HOLDS_RESERVED_CARDS_PER_HOLD) != 0):
            raise MemoryError("cardledger core: cannot allocate the hold map")

    def prefault_journeys(self):
        """Fault in the pages of the journey store's room not written yet (for a thread
        beside the batches: first taps otherwise fault them in the batch loop, ~10% of
        the city's loop). Only asks the kernel to back the pages (MADV_POPULATE_WRITE:
        their contents stay as they are), so racing the batch loop, or even a store
        moved meanwhile, is harmless; where the kernel refuses, nothing happens.

        The range is populated PREFAULT_STEP_BYTES at a time: one call over a million
        cards' store (~336 MB) holds the process's memory-map lock for its whole length,
        and every mmap/munmap of the batch thread meanwhile (numpy's large arrays) waited
        for it: a 660 ms batch at the start of the city's peak."""
        cdef size_t page = 1 << 21
        cdef size_t start = <size_t>(<char*>self.taps.journeys + self.taps.n_journeys * sizeof(Journey))
        cdef size_t end = <size_t>(<char*>self.taps.journeys + self.taps.cap_journeys * sizeof(Journey))
        cdef size_t step
        start = (start + page - 1) & ~(page - 1)
        end = end & ~(<size_t>4095)
        if self.taps.journeys == NULL or end <= start:
            return
        with nogil:
            while start < end:
                step = min(<size_t>PREFAULT_STEP_BYTES, end - start)
                if madvise(<void*>start, step, MADV_POPULATE_WRITE) != 0:
                    break  # refused (an old kernel) or the store moved: stop asking
                start += step

    # ------------------------------------------------------------------ state I/O

    @property
    def journal_seq(self):
        """Last journal_seq assigned."""
        return self.st.journal_seq

    @property
    def recent_count(self):
        """Number of decisions held in memory since the last checkpoint."""
        return self.st.n_dec

    def account_count(self):
        """Number of accounts ever opened (closed ones included)."""
        return self.st.n_accounts

    def load_checkpoint(self, accounts, sources, pending, journal_seq):
        """Replace the whole state by a checkpoint (arrays as `export_checkpoint` gives)."""
        cdef cnp.ndarray a = np.ascontiguousarray(accounts, dtype=ACCOUNT_DTYPE)
        cdef cnp.ndarray s = np.ascontiguousarray(sources, dtype=SOURCE_DTYPE)
        cdef cnp.ndarray p = np.ascontiguousarray(pending, dtype=PENDING_DTYPE)
        self._settle_snapshot()
        state_free(&self.st)
        memset(&self.st, 0, sizeof(State))
        self.st.taps = &self.taps  # journeys and fare versions survive, as in the reference
        self.st.cow = &self._cow_acc
        self.st.default_cap_fen = self.default_cap_fen
        if state_init(&self.st) != 0:
            raise MemoryError("cardledger core: cannot allocate the state")
        if state_load(&self.st, <Account*>cnp.PyArray_DATA(a), len(a),
                      <Source*>cnp.PyArray_DATA(s), len(s),
                      <Pending*>cnp.PyArray_DATA(p), len(p)) != 0:
            raise MemoryError("cardledger core: cannot allocate the state")
        self.st.journal_seq = journal_seq

    def export_checkpoint(self, accounts_out=None, bint sort=True):
        """Return (accounts in creation order, sources by id, pending holds by id).

        With `accounts_out` (an ACCOUNT_DTYPE array at least as long as the account
        count), the accounts are copied into its prefix, which is returned: a buffer
        reused across checkpoints costs no page faults. With sort=False the sources and
        holds come in the store's order (`load_checkpoint` takes any): sorting the holds
        of a busy metro (~170,000 keyed by validator) took ~100 ms of the batch that
        takes a checkpoint.
        """
        accounts = _copied_rows(accounts_out, self.st.accounts, self.st.n_accounts, sizeof(Account), ACCOUNT_DTYPE)
        sources = self.export_sources()
        pending = _copied_rows(None, self.st.pending, self.st.n_pending, sizeof(Pending), PENDING_DTYPE)
        if sort:
            sources = sources[np.argsort(sources["source"], kind="stable")]
            pending = pending[np.lexsort((pending["seq"], pending["source"]))]
        return accounts, sources, pending

    def export_sources(self):
        """The per-source idempotency state (SOURCE_DTYPE), in the store's order:
        `storage.encode_ids_state` sorts it by source id, beside the next kernel
        (sorting here was ~1.3 ms of each of the city's flushing batches)."""
        return _copied_rows(None, self.st.sources, self.st.n_sources, sizeof(Source), SOURCE_DTYPE)

    def take_decisions(self):
        """Hand over the decisions made since the last call and forget them.

        Returns (decisions, late) as the reference engine does: decisions sorted by
        (source, seq). Grouping is a stable counting sort by source; within a source
        the few late decisions are then moved into place (`sort_late_decisions`).
        """
        cdef Py_ssize_t i, n = self.st.n_dec, ns = self.st.n_sources
        cdef int64_t si, pos
        cdef cnp.ndarray src_ids = np.empty(ns, dtype=np.uint64)
        cdef uint64_t[::1] sid = src_ids
        for i in range(ns):
            sid[i] = self.st.sources[i].source
        cdef int64_t[::1] rank_of = np.empty(ns, dtype=np.int64)
        order = np.argsort(src_ids)  # (source ids are unique: no need for a stable sort)
        cdef int64_t[::1] ordv = order.astype(np.int64, copy=False)
        for i in range(ns):
            rank_of[ordv[i]] = i
        cdef int64_t[::1] start = np.zeros(ns + 1, dtype=np.int64)
        cdef int32_t* src_idx = self.st.wsrc
        cdef uint64_t* seqs = self.st.wseq
        for i in range(n):
            start[rank_of[src_idx[i]] + 1] += 1
        for i in range(ns):
            start[i + 1] += start[i]
        decisions = np.empty(n, dtype=DECISION_DTYPE)
        late = np.empty(n, dtype=np.bool_)
        cdef uint64_t[:, ::1] d = decisions.view(np.uint64).reshape(n, 3)
        cdef cnp.uint8_t[::1] lt = late.view(np.uint8)
        for i in range(n):
            si = src_idx[i]
            pos = start[rank_of[si]]
            start[rank_of[si]] += 1
            d[pos, 0] = self.st.sources[si].source
            d[pos, 1] = seqs[i]
            d[pos, 2] = self.st.wfirst_jseq + i
            lt[pos] = 1 if seqs[i] <= self.st.sources[si].checkpoint_seq else 0
        for i in range(ns):
            self.st.sources[i].checkpoint_seq = self.st.sources[i].last_seq
        window_clear(&self.st)
        if n > 1:
            with nogil:
                sort_late_decisions(&d[0, 0], &lt[0], n)
        return decisions, late

    # ------------------------------------------------------------------ queries

    def get_account(self, uint64_t account_id):
        """The account's record as a tuple (ACCOUNT_DTYPE order), or None."""
        cdef int64_t i = account_find(&self.st, account_id)
        if i < 0:
            return None
        out = np.empty(1, dtype=ACCOUNT_DTYPE)
        memcpy(cnp.PyArray_DATA(out), &self.st.accounts[i], sizeof(Account))
        return out[0].item()

    # ------------------------------------------------------------------ batches

    def candidates(self, ops):
        """Mask of ops whose id may have been decided before the in-memory window."""
        cdef cnp.ndarray arr = ops
        cdef Py_ssize_t i, n = len(arr)
        cdef Op* o = <Op*>cnp.PyArray_DATA(arr)
        out = np.zeros(n, dtype=np.bool_)
        cdef cnp.uint8_t[::1] m = out.view(np.uint8)
        cdef Source* s
        for i in range(n):
            s = source_find(&self.st, o[i].source)
            if (s != NULL and o[i].seq <= s.last_seq and recent_find(&self.st, o[i].source, o[i].seq) < 0
                    and not gaps_known_new(&self.st, s, o[i].seq)):
                m[i] = 1
        return out

    def apply(self, ops, prior=None, has_prior=None):
        """Apply a batch; return (results RESULT_DTYPE, journal JOURNAL_DTYPE)."""
        cdef cnp.ndarray arr = ops
        cdef Py_ssize_t n = len(arr)
        results = np.zeros(n, dtype=RESULT_DTYPE)
        cdef cnp.ndarray pr
        cdef cnp.ndarray hp
        cdef Journal* prior_p = NULL
        cdef cnp.uint8_t* has_p = NULL
        if has_prior is not None:
            pr = np.ascontiguousarray(prior, dtype=JOURNAL_DTYPE)
            hp = np.ascontiguousarray(has_prior, dtype=np.uint8)
            prior_p = <Journal*>cnp.PyArray_DATA(pr)
            has_p = <cnp.uint8_t*>cnp.PyArray_DATA(hp)
        if window_reserve(&self.st, n) != 0 or undo_reserve(&self.st, 16) != 0:
            raise MemoryError("cardledger core: cannot grow the decisions window")
        window_begin_batch(&self.st)
        cdef Op* ops_p = <Op*>cnp.PyArray_DATA(arr)
        cdef Result* res_p = <Result*>cnp.PyArray_DATA(results)
        cdef int rc
        # The batch loop touches no Python object: other threads (a gateway's event
        # loop, the checkpoint writer) run meanwhile. The Ledger serialises callers.
        # A small batch keeps the GIL: its loop is shorter than the wait to take the
        # GIL back from a busy event loop (group commit's batches are small).
        if n >= NOGIL_OPS_MIN:
            with nogil:
                rc = apply_batch(&self.st, ops_p, n, prior_p, has_p, res_p)
        else:
            rc = apply_batch(&self.st, ops_p, n, prior_p, has_p, res_p)
        if rc != 0:
            raise MemoryError("cardledger core: out of memory while applying a batch")
        cdef Py_ssize_t nj = self.st.n_tail
        journal = np.empty(nj, dtype=JOURNAL_DTYPE)
        if nj:
            memcpy(cnp.PyArray_DATA(journal), self.st.tail, nj * sizeof(Journal))
        window_end_batch(&self.st)
        return results, journal

    def last_batch_packed(self):
        """The journal records of the batch `apply` just ran, packed as the journal
        stores them (`pack_journal` of its journal array, byte for byte). Take it
        before anything else changes the window (the next apply, take_decisions)."""
        return PyBytes_FromStringAndSize(<char*>self.st.wbytes + self.st.wlast_batch_off,
                                         self.st.wbytes_used - self.st.wlast_batch_off)

    def last_batch_marks(self, int64_t stride):
        """Where every stride-th record of `last_batch_packed` starts, as
        `journal_record_marks` of those bytes gives it, from what the packer noted (a
        resent op's lookup then decodes its record without walking the batch)."""
        if stride <= 0:
            raise ValueError("last_batch_marks: stride must be positive")
        cdef int64_t base = self.st.wlast_batch_base
        cdef int64_t n = self.st.n_dec - base if self.st.n_dec > base else 0
        out = np.zeros(((n + stride - 1) // stride, 3), dtype=np.uint64)
        cdef uint64_t[:, ::1] m = out
        cdef int64_t k, idx
        for k in range(m.shape[0]):
            idx = base + k * stride
            m[k, 0] = <uint64_t>(self.st.woff[idx] - self.st.wlast_batch_off)
            m[k, 1] = self.st.wptime[idx]
            m[k, 2] = self.st.wfirst_jseq + <uint64_t>idx - 1
        return out

    def replay(self, journal):
        """Re-apply journal records in order, as decided (used on open and by verify).

        Raises ValueError if the journal does not replay to the same figures.
        """
        cdef cnp.ndarray arr = np.ascontiguousarray(journal, dtype=JOURNAL_DTYPE)
        cdef Py_ssize_t n = len(arr)
        if window_reserve(&self.st, n) != 0 or undo_reserve(&self.st, 16) != 0:
            raise MemoryError("cardledger core: cannot grow the decisions window")
        window_begin_batch(&self.st)
        # A tap decided before is replayed whatever the clock says now.
        cdef int64_t horizon = self.st.tap_horizon_us
        self.st.tap_horizon_us = INT64_MAX_
        cdef int64_t bad = replay_records(&self.st, <Journal*>cnp.PyArray_DATA(arr), n)
        self.st.tap_horizon_us = horizon
        window_end_batch(&self.st)
        if bad == -2:
            raise MemoryError("cardledger core: out of memory during replay")
        if bad >= 0:
            raise ValueError(f"journal record {arr[bad]['journal_seq']} does not replay to its recorded figures")


cdef unsigned char* _pack_scratch = NULL
cdef int64_t _pack_scratch_bytes = 0


def pack_journal(records):
    """Encode JOURNAL_DTYPE records into bytes (format: cardledger/codec.py)."""
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
    (format: cardledger/codec.py `pack_words`). Runs without the GIL."""
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
        if w[i * J_WORDS + W_JSEQ] != js[i]:
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


def set_huge_pages(bint on):
    """Whether big tables ask the kernel for 2 MiB pages (default on)."""
    global USE_HUGE
    USE_HUGE = on


def record_sizes():
    """C sizes of the record structs, for the layout check against schema dtypes."""
    return {
        "OP": sizeof(Op), "RESULT": sizeof(Result), "JOURNAL": sizeof(Journal),
        "ACCOUNT": sizeof(Account), "SOURCE": sizeof(Source), "PENDING": sizeof(Pending),
        "JOURNEY": sizeof(Journey),
    }


cdef int32_t _mask_width(object arr):
    return arr.shape[1] if arr.ndim == 2 else 0
