# The debug build's checks of what one op did (CARDLEDGER_DEBUG=1; debug.h). The
# batch loop and the replay bracket every op with debug_op_begin and debug_op_check;
# `touch` and `account_new` note each account the op is about to change, as it was.
# Everything here is reached only through CL_DEBUG_DO or CL_ASSERT, so a release build
# never calls it and compiles it out. The checks cost O(accounts the op touched).


cdef int64_t debug_held_by(State* st, uint64_t account_id) noexcept nogil:
    """The sum of the holds the account placed (walks every hold: op_close's check)."""
    cdef int64_t i, held = 0
    for i in range(st.n_pending):
        if st.pending[i].debit_id == account_id:
            held += st.pending[i].amount_fen
    return held


cdef int debug_op_begin(State* st) noexcept nogil:
    """Forget the accounts the last op touched: a new op begins."""
    st.dbg.n_touched = 0
    st.dbg.overflow = 0
    return 0


cdef int debug_note_account(State* st, int64_t i, bint created) noexcept nogil:
    """Note account i as the op found it, before the op first changes it; an account
    the op creates was nothing (zeros but its id) before."""
    cdef DebugOp* d = &st.dbg
    cdef int k
    CL_ASSERT(0 <= i < st.n_accounts, "a touched account is one of the state's accounts")
    for k in range(d.n_touched):
        if d.idx[k] == i:
            return 0
    if d.n_touched >= DEBUG_TOUCHED_MAX:
        d.overflow = 1
        return 0
    k = d.n_touched
    d.idx[k] = i
    if created:
        memset(&d.before[k], 0, sizeof(Account))
        d.before[k].id = st.accounts[i].id
    else:
        d.before[k] = st.accounts[i]
    d.n_touched += 1
    return 0


cdef bint debug_account_ok(const Account* a) noexcept nogil:
    """What holds of every account after every op (each checked on its own, so that
    a failure names the one that broke)."""
    # Purses + outgoing holds == posted credits - posted debits: the money an account
    # has is what was posted to it, less what it posted or holds for others. Compared
    # modulo 2**64, where nothing can overflow.
    CL_ASSERT(<uint64_t>a.cash_fen + <uint64_t>a.subsidy_fen + <uint64_t>a.debits_pending
              == <uint64_t>a.credits_posted - <uint64_t>a.debits_posted,
              "an account's purses plus the holds it placed equal its posted credits less its posted debits")
    CL_ASSERT(a.debits_pending >= 0, "pending totals are never negative")
    CL_ASSERT(a.credits_pending >= 0, "pending totals are never negative")
    CL_ASSERT(a.subsidy_fen >= 0, "a subsidy purse is never negative")
    CL_ASSERT(a.kind == A_CARD or a.subsidy_fen == 0, "only a card has a subsidy purse")
    CL_ASSERT(a.kind >= 1, "an account's kind is an AccountKind")
    CL_ASSERT(a.kind <= A_MAX, "an account's kind is an AccountKind")
    CL_ASSERT(a.flags & ~(AF_FROZEN | AF_CLOSED | AF_CASH_FIRST | AF_INACTIVE) == 0, "an account's flags are AccountFlags")
    if a.flags & AF_CLOSED:
        CL_ASSERT(a.cash_fen == 0, "a closed account holds no money")
        CL_ASSERT(a.subsidy_fen == 0, "a closed account holds no money")
        CL_ASSERT(a.debits_pending == 0, "a closed account holds no holds")
        CL_ASSERT(a.credits_pending == 0, "a closed account holds no holds")
    return True


cdef bint debug_posted_ok(const Op* op, const Account* a, const Account* b) noexcept nogil:
    """Posted totals are each side's sum of what was posted: never negative, never
    lowered by an op (b: the account before the op)."""
    # KNOWN ISSUE, exempted here only: REPLACE of a card in debt (a tap may take a cash
    # purse below zero) opens the new card with the debt as a negative credits_posted
    # and takes it off the old card's debits_posted, in the spec as in the core
    # (tests/fares/test_taps_agree.py replaces such cards). The money still adds up (the
    # identity and the sums of debug_op_check hold); the posted totals are no longer
    # each side's sum. So REPLACE may lower a posted total, and a card's posted totals
    # may be negative for good (its debits_posted too, once the new card is replaced
    # in debt in turn). Remove both exemptions once REPLACE posts the debt as a debit
    # of the new card.
    CL_ASSERT(a.kind == A_CARD or a.debits_posted >= 0, "posted totals are never negative")
    CL_ASSERT(a.kind == A_CARD or a.credits_posted >= 0, "posted totals are never negative")
    if op.kind == K_REPLACE:
        return True
    CL_ASSERT(a.debits_posted >= b.debits_posted, "no op lowers a posted total")
    CL_ASSERT(a.credits_posted >= b.credits_posted, "no op lowers a posted total")
    return True


cdef int debug_op_check(State* st, const Op* op, int code) noexcept nogil:
    """The invariants every op keeps, over the accounts it touched (see the messages)."""
    cdef DebugOp* d = &st.dbg
    cdef const Account* a
    cdef const Account* b
    cdef uint64_t net = 0, debit_held = 0, credit_held = 0
    cdef bint debited
    cdef int k
    if st.oom:
        return 0  # the batch is abandoned, and its state with it
    CL_ASSERT(code == R_OK or d.n_touched == 0, "a failed op changes no account")
    if d.overflow:
        return 0
    for k in range(d.n_touched):
        a = &st.accounts[d.idx[k]]
        b = &d.before[k]
        CL_ASSERT(a.id == b.id, "a touched account stays where it was noted")
        debug_account_ok(a)
        debug_posted_ok(op, a, b)
        debited = a.debits_posted != b.debits_posted or a.debits_pending != b.debits_pending
        # A TAP may take a card's cash purse below zero (its allowance, or an exit
        # charge above the hold: spec taps.py rules 5 and 7), and a clearing account is
        # money outside the ledger; every other debit is checked for funds first.
        CL_ASSERT(not debited or op.kind == K_TAP or a.kind == A_CLEARING or a.cash_fen >= 0
                  or a.cash_fen >= b.cash_fen,
                  "outside a TAP, no debit takes a purse below zero (a clearing account's excepted)")
        # The cap never refuses a REFUND; a card a refund left above its cap may then have
        # holds released (POST, VOID) or be replaced with its money beyond the cap too:
        # what is checked is that nothing else takes money past the cap, and that a hold
        # released adds nothing to what the card had, held or not.
        CL_ASSERT(a.kind != A_CARD or a.cash_fen <= b.cash_fen or a.cash_fen <= a.cap_fen or op.kind == K_REFUND
                  or op.kind == K_REPLACE
                  or a.cash_fen + a.debits_pending + a.credits_pending <= b.cash_fen + b.debits_pending + b.credits_pending,
                  "no op but a REFUND raises a card's cash purse above its cap")
        net += (<uint64_t>a.credits_posted - <uint64_t>a.debits_posted) - (
            <uint64_t>b.credits_posted - <uint64_t>b.debits_posted)
        debit_held += <uint64_t>a.debits_pending - <uint64_t>b.debits_pending
        credit_held += <uint64_t>a.credits_pending - <uint64_t>b.credits_pending
    CL_ASSERT(net == 0, "money is conserved: the credits and debits an op posts to its accounts sum to zero")
    CL_ASSERT(debit_held == credit_held, "every hold an op places or resolves weighs as much on its debit side as on its credit side")
    return 0


cdef bint debug_window_ok(State* st) noexcept nogil:
    """The decisions window agrees with the journal: one journal_seq per decision,
    consecutive, the last one the state's; this batch's decisions all in the tail."""
    CL_ASSERT(st.n_dec == st.batch_base + st.n_tail, "every decision of this batch has its record in the tail")
    CL_ASSERT(st.n_tail <= st.cap_tail, "the tail holds no more records than it has room for")
    CL_ASSERT(st.n_dec == 0 or st.journal_seq == st.wfirst_jseq + <uint64_t>st.n_dec - 1,
              "journal_seqs are consecutive: the window's decisions hold wfirst_jseq up to journal_seq")
    return True


cdef bint debug_tables_ok(State* st) noexcept nogil:
    """Every table and its hash index agree in size, and no index is over half full."""
    CL_ASSERT(st.n_accounts == st.amap_used, "every account is indexed once")
    CL_ASSERT(st.n_sources == st.smap_used, "every source is indexed once")
    CL_ASSERT(st.n_pending == st.pmap_used, "every hold is indexed once")
    CL_ASSERT(<uint64_t>st.amap_used * 2 <= st.amap_mask + 1, "the account index is at most half full")
    CL_ASSERT(<uint64_t>st.pmap_used * 2 <= st.pmap_mask + 1, "the hold index is at most half full")
    CL_ASSERT(debug_holdidx_ok(st), "each account's hold list holds exactly its holds")  # holdidx.pxi
    return True


cdef bint debug_within_cap(const Account* a) noexcept nogil:
    """A card's cash purse is within its cap (any other account has no cap)."""
    return a.kind != A_CARD or a.cash_fen <= a.cap_fen


cdef bint debug_new_op_strict(const Op* op, int code) noexcept nogil:
    """What holds of every new op decided OK (not of a replayed one: older journals may
    break it): the strict field checks passed, whatever path the op took to OK. (The
    code is an argument so that the call site stays one plain debug_* call.)"""
    if code != R_OK:
        return True
    CL_ASSERT(op.time_us > 0, "a new op decided OK has a positive time_us")
    CL_ASSERT(op.pad16 == 0, "a new op decided OK has its reserved fields at zero")
    CL_ASSERT(op.pad32 == 0, "a new op decided OK has its reserved fields at zero")
    CL_ASSERT(check_fields(op) == R_OK, "a new op decided OK sets no field its kind does not use")
    return True
