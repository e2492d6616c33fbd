# One handler per op kind, twin of engine/spec/handlers.py: the same handlers, in the
# same order of checks; keep them in step. Each checks everything before it changes
# anything, so a failed op leaves the state untouched; each fills `ef` (the journal's
# view of what it did) and returns a result code.

cdef inline int64_t available(Account* a) noexcept nogil:
    return a.cash_fen + a.subsidy_fen


cdef inline bint amount_ok(int64_t amount) noexcept nogil:
    return 0 < amount <= AMOUNT_MAX_FEN


cdef inline int64_t purse_available(Account* a, int draw) noexcept nogil:
    if a.kind != A_CARD or draw == DRAW_CASH:
        return a.cash_fen
    if draw == DRAW_SUBSIDY:
        return a.subsidy_fen
    return a.cash_fen + a.subsidy_fen


cdef inline int check_pair(State* st, Op* op, int want_a, int want_c,
                           Account** ap, Account** cp) noexcept nogil:
    cdef Account* a
    cdef Account* c
    if op.account_id == 0 or op.counterparty_id == 0:
        return R_INVALID_ACCOUNT_ID
    if op.account_id == op.counterparty_id:
        return R_ACCOUNTS_MUST_BE_DIFFERENT
    a = account_get(st, op.account_id)
    if a == NULL:
        return R_ACCOUNT_NOT_FOUND
    c = account_get(st, op.counterparty_id)
    if c == NULL:
        return R_COUNTERPARTY_NOT_FOUND
    if not ((1 << a.kind) & want_a):
        return R_WRONG_ACCOUNT_KIND
    if not ((1 << c.kind) & want_c):
        return R_WRONG_COUNTERPARTY_KIND
    if (a.flags | c.flags) & AF_CLOSED:
        return R_ACCOUNT_CLOSED
    CL_ASSERT(a != c, "an op's account and counterparty are two accounts")
    CL_ASSERT(a.id == op.account_id, "an account is found under its own id")
    ap[0] = a
    cp[0] = c
    return R_OK


cdef inline int check_move(Account* d, Account* c, int64_t amount, int draw,
                           bint to_subsidy, bint pending) noexcept nogil:
    cdef int64_t d_total, c_total
    CL_ASSERT(amount > 0, "a move carries a positive amount")
    CL_ASSERT(d != c, "a move is between two accounts")
    if d.flags & AF_FROZEN:
        return R_ACCOUNT_FROZEN
    if d.flags & AF_INACTIVE:
        return R_ACCOUNT_INACTIVE
    if d.kind != A_CLEARING and purse_available(d, draw) < amount:
        return R_INSUFFICIENT_FUNDS
    if c.kind == A_CARD and not to_subsidy:
        # holds the card placed (debits_pending) come back to its purses if released,
        # so they count against the cap as incoming holds do
        if c.cash_fen + c.debits_pending + c.credits_pending + amount > c.cap_fen:
            return R_EXCEEDS_CAP
    d_total = d.debits_pending if pending else d.debits_posted
    c_total = c.credits_pending if pending else c.credits_posted
    if d_total > INT64_MAX_ - amount or c_total > INT64_MAX_ - amount:
        return R_OVERFLOW
    if d.kind == A_CLEARING and d.cash_fen < INT64_MIN_ + amount:
        return R_OVERFLOW
    if c.cash_fen + c.subsidy_fen > INT64_MAX_ - amount:
        return R_OVERFLOW
    return R_OK


cdef inline int64_t draw_purses(Account* d, int64_t amount, int draw) noexcept nogil:
    """Take amount out of d's purses; return the part taken from the subsidy purse."""
    cdef int64_t from_cash, from_subsidy
    if d.kind != A_CARD or draw == DRAW_CASH:
        d.cash_fen -= amount
        return 0
    if draw == DRAW_SUBSIDY:
        d.subsidy_fen -= amount
        return amount
    # A tap may take a card's cash purse below zero (its allowance, or an exit
    # charge above the hold); the subsidy purse never goes below zero. For purses
    # that are not negative this is min(purse, amount) as before.
    cdef int64_t cash_pos = d.cash_fen if d.cash_fen > 0 else 0
    cdef int64_t sub_pos = d.subsidy_fen if d.subsidy_fen > 0 else 0
    if d.flags & AF_CASH_FIRST:
        from_cash = cash_pos if cash_pos < amount else amount
        from_subsidy = amount - from_cash
        if sub_pos < from_subsidy:
            from_subsidy = sub_pos
        from_cash = amount - from_subsidy
    else:
        from_subsidy = sub_pos if sub_pos < amount else amount
        from_cash = amount - from_subsidy
    CL_ASSERT(from_subsidy >= 0, "a debit takes nothing back into a subsidy purse")
    CL_ASSERT(from_subsidy <= sub_pos, "a debit takes no more from the subsidy purse than it holds")
    d.subsidy_fen -= from_subsidy
    d.cash_fen -= from_cash
    return from_subsidy


cdef inline int64_t move(State* st, Account* d, Account* c, int64_t amount, int draw,
                         bint to_subsidy) noexcept nogil:
    cdef int64_t sub
    CL_ASSERT(amount > 0, "a move carries a positive amount")
    touch(st, d)
    touch(st, c)
    sub = draw_purses(d, amount, draw)
    CL_ASSERT(sub >= 0, "the subsidy part of a debit is not negative")
    CL_ASSERT(sub <= amount, "the subsidy part of a debit is at most the debit")
    d.debits_posted += amount
    c.credits_posted += amount
    if to_subsidy:
        c.subsidy_fen += amount
    else:
        c.cash_fen += amount
    if d.kind == A_CARD:
        return sub
    return amount if to_subsidy else 0


cdef inline void set_effect(Effect* ef, int64_t amount, int64_t balance, Account* debit,
                            Account* credit, int64_t subsidy) noexcept nogil:
    """Record what the op did; `debit`/`credit` (NULL: none) are kept so that the
    journal step need not look the accounts up again."""
    ef.amount_fen = amount
    ef.balance_fen = balance
    ef.debit = debit
    ef.credit = credit
    ef.debit_id = debit.id if debit != NULL else 0
    ef.credit_id = credit.id if credit != NULL else 0
    ef.subsidy_fen = subsidy
    ef.discounts = 0
    ef.union_id = 0
    ef.union_fen = 0
    ef.offer_fen = 0
    ef.offer_day = 0
    ef.refundable_fen = 0


cdef int64_t release(State* st, Pending* p, int64_t posted) noexcept nogil:
    """Resolve hold p, posting `posted` fen and returning the rest to the debit side.

    Returns the part of the posted amount drawn from the debit card's subsidy purse.
    """
    cdef Account* d = account_get(st, p.debit_id)
    cdef Account* c = account_get(st, p.credit_id)
    cdef int64_t amount = p.amount_fen
    cdef int64_t held_sub = p.subsidy_fen
    cdef int64_t held_cash = amount - held_sub
    cdef int64_t post_cash, post_sub
    CL_ASSERT(d != NULL, "a hold's debit account exists")
    CL_ASSERT(c != NULL, "a hold's credit account exists")
    CL_ASSERT(posted >= 0, "a hold posts no negative amount")
    CL_ASSERT(posted <= amount, "a hold posts at most what it holds")
    CL_ASSERT(held_sub >= 0, "the subsidy part of a hold is not negative")
    CL_ASSERT(held_sub <= amount, "the subsidy part of a hold is at most the hold")
    CL_ASSERT(d.debits_pending >= amount, "the debit side's debits_pending includes the hold")
    CL_ASSERT(c.credits_pending >= amount, "the credit side's credits_pending includes the hold")
    touch(st, d)
    touch(st, c)
    if d.kind == A_CARD and (d.flags & AF_CASH_FIRST):
        post_cash = held_cash if held_cash < posted else posted
        post_sub = posted - post_cash
    else:
        post_sub = held_sub if held_sub < posted else posted
        post_cash = posted - post_sub
    d.subsidy_fen += held_sub - post_sub
    d.cash_fen += held_cash - post_cash
    d.debits_pending -= amount
    d.debits_posted += posted
    c.credits_pending -= amount
    c.credits_posted += posted
    if p.credit_subsidy:
        c.subsidy_fen += posted
    else:
        c.cash_fen += posted
    CL_ASSERT(post_sub >= 0, "the subsidy part of a posted hold is not negative")
    CL_ASSERT(post_sub <= held_sub, "a hold posts no more from the subsidy purse than it held from it")
    return post_sub


cdef void void_holds_of(State* st, uint64_t account_id) noexcept nogil:
    """Release every hold that involves the account (before CLOSE / REPLACE).

    A card's holds come from its hold list (holdidx.pxi); another account's (an
    operator's, a merchant's: holds are most of the table's there) from a walk of the
    whole table. Either way they are released from the largest table index down: the
    order the walk from the table's end finds them in, so the table ends in the same
    order (pending_del swap-removes: it moves only the last hold, from past every index
    still to release)."""
    cdef int64_t k, n, i
    cdef Pending p
    cdef Account* a = account_get(st, account_id)
    CL_ASSERT(a != NULL, "the account whose holds are voided exists")
    if a.debits_pending == 0 and a.credits_pending == 0:
        return
    if a.kind != A_CARD:
        void_holds_walk(st, account_id)
        return
    n = holds_of(st, account_id)
    if n < 0:
        st.oom = 1
        return
    CL_ASSERT(n == debug_holds_of_count(st, account_id), "an account's hold list holds every hold of the account")
    for k in range(n):
        i = st.hscratch[k]
        CL_ASSERT(i < st.n_pending, "a hold to release is still in the table")
        p = st.pending[i]
        release(st, &p, 0)
        pending_del(st, &st.pending[i])
    CL_ASSERT(debug_holds_of_count(st, account_id) == 0, "no hold of the account is left")
    # An account's pending totals are the sums of its holds, so releasing them all
    # leaves nothing pending.
    CL_ASSERT(a.debits_pending == 0, "debits_pending is the sum of the holds an account placed")
    CL_ASSERT(a.credits_pending == 0, "credits_pending is the sum of the holds placed for an account")


cdef void void_holds_walk(State* st, uint64_t account_id) noexcept nogil:
    """void_holds_of for an account of no hold list: walk every hold."""
    cdef int64_t i = st.n_pending - 1
    cdef Pending p
    cdef Account* a = account_get(st, account_id)
    while i >= 0:
        # pending_del swap-removes, so walk from the end: index i stays valid.
        if i < st.n_pending and (st.pending[i].debit_id == account_id or st.pending[i].credit_id == account_id):
            p = st.pending[i]
            release(st, &p, 0)
            pending_del(st, &st.pending[i])
        i -= 1
    CL_ASSERT(a.debits_pending == 0, "debits_pending is the sum of the holds an account placed")
    CL_ASSERT(a.credits_pending == 0, "credits_pending is the sum of the holds placed for an account")


# ---------------------------------------------------------------- handlers

cdef int op_open(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    cdef Account* a
    if op.account_id == 0:
        return R_INVALID_ACCOUNT_ID
    if op.account_kind < 1 or op.account_kind > A_MAX:
        return R_INVALID_ACCOUNT_KIND
    if op.limit_fen < 0 or op.limit_fen > AMOUNT_MAX_FEN or (op.account_kind != A_CARD and op.limit_fen != 0):
        return R_INVALID_AMOUNT
    if op.account_kind != A_CARD and (op.flags & (F_CASH_FIRST | F_INACTIVE)):
        return R_INVALID_FLAGS
    if account_find(st, op.account_id) >= 0:
        return R_ACCOUNT_EXISTS
    a = account_new(st, op.account_id)
    if a == NULL:
        return R_OVERFLOW
    a.kind = op.account_kind
    a.flags = AF_CASH_FIRST if (op.flags & F_CASH_FIRST) else 0
    if op.flags & F_INACTIVE:
        a.flags |= AF_INACTIVE
    if op.account_kind == A_CARD:
        a.category = op.category
        a.cap_fen = op.limit_fen if op.limit_fen != 0 else st.default_cap_fen
        a.member_ref = op.user_data
    CL_ASSERT(a.id == op.account_id, "an opened account has the op's id")
    CL_ASSERT(a.cash_fen == 0, "an account opens empty")
    CL_ASSERT(a.cap_fen >= 0, "a card's cap is not negative")
    set_effect(ef, 0, 0, a, NULL, 0)
    return R_OK


cdef inline int simple_move(State* st, Op* op, Effect* ef, int want_a, int want_c,
                            bint debit_is_account, int draw, bint to_subsidy) noexcept nogil:
    cdef Account* a = NULL
    cdef Account* c = NULL
    cdef Account* d
    cdef Account* cr
    cdef int code
    cdef int64_t sub
    cdef int64_t amount = op.amount_fen
    if not amount_ok(amount):
        return R_INVALID_AMOUNT
    code = check_pair(st, op, want_a, want_c, &a, &c)
    if code != R_OK:
        return code
    if debit_is_account:
        d = a
        cr = c
    else:
        d = c
        cr = a
    code = check_move(d, cr, amount, draw, to_subsidy, False)
    if code != R_OK:
        return code
    sub = move(st, d, cr, amount, draw, to_subsidy)
    # (a credit to the subsidy purse leaves the cash purse as it was: a REFUND, which
    # the cap never refuses, may have left it above the cap)
    CL_ASSERT(to_subsidy or debug_within_cap(cr), "a credit to a card's cash purse leaves it within its cap")
    CL_ASSERT(d.subsidy_fen >= 0, "a debit leaves a subsidy purse at zero or above")
    set_effect(ef, amount, available(a), d, cr, sub)
    return R_OK


cdef int op_topup(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    return simple_move(st, op, ef, KM_CARD, KM_CLEARING, False, DRAW_ORDER, False)


cdef int op_aid(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    return simple_move(st, op, ef, KM_CARD, KM_PROGRAM, False, DRAW_ORDER, True)


cdef int op_spend(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    return simple_move(st, op, ef, KM_CARD, KM_NOT_CARD, True, DRAW_ORDER, False)


cdef int op_withdraw(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    cdef bint sub_purse = (op.flags & F_SUBSIDY_PURSE) != 0
    cdef Account* a
    if sub_purse:
        a = account_get(st, op.account_id)
        if a != NULL and a.kind != A_CARD:
            return R_INVALID_FLAGS
    return simple_move(st, op, ef, KM_NOT_CLEARING, KM_CLEARING, True,
                       DRAW_SUBSIDY if sub_purse else DRAW_CASH, False)


cdef int op_transfer(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    cdef Account* a = NULL
    cdef Account* c = NULL
    cdef int code
    cdef int64_t sub
    cdef int64_t amount = op.amount_fen
    cdef bint pending = (op.flags & F_PENDING) != 0
    cdef bint ts
    cdef Pending p
    cdef int64_t ai, ci
    if pending and (op.flags & F_SUBSIDY_PURSE):
        # A hold credits a cash purse only, so a card's incoming holds (its
        # credits_pending) all count against its cash cap.
        return R_INVALID_FLAGS
    if not amount_ok(amount):
        return R_INVALID_AMOUNT
    code = check_pair(st, op, KM_ANY, KM_ANY, &a, &c)
    if code != R_OK:
        return code
    ts = (op.flags & F_SUBSIDY_PURSE) != 0 and c.kind == A_CARD
    code = check_move(a, c, amount, DRAW_ORDER, ts, pending)
    if code != R_OK:
        return code
    if not pending:
        sub = move(st, a, c, amount, DRAW_ORDER, ts)
        set_effect(ef, amount, available(a), a, c, sub)
        return R_OK
    touch(st, a)
    touch(st, c)
    sub = draw_purses(a, amount, DRAW_ORDER)
    a.debits_pending += amount
    c.credits_pending += amount
    set_effect(ef, amount, available(a), a, c, sub)
    p.source = op.source
    p.seq = op.seq
    p.debit_id = a.id
    p.credit_id = c.id
    p.amount_fen = amount
    p.subsidy_fen = sub
    p.credit_subsidy = 1 if ts else 0
    p.journal_seq = jseq
    CL_ASSERT(sub >= 0, "the subsidy part of a hold is not negative")
    CL_ASSERT(sub <= amount, "the subsidy part of a hold is at most the hold")
    pending_add(st, &p)
    return R_OK


cdef int op_post(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    cdef Pending* pp
    cdef Pending p
    cdef Account* d
    cdef Account* c
    cdef int64_t posted, sub
    if op.amount_fen < 0 or op.amount_fen > AMOUNT_MAX_FEN:
        return R_INVALID_AMOUNT
    pp = pending_find(st, op.ref_source, op.ref_seq)
    if pp == NULL or pp.debit_id == 0:  # (a reversed tap's mark is no hold)
        return R_PENDING_NOT_FOUND
    p = pp[0]
    posted = op.amount_fen if op.amount_fen != 0 else p.amount_fen
    if posted > p.amount_fen:
        return R_EXCEEDS_PENDING
    d = account_get(st, p.debit_id)
    c = account_get(st, p.credit_id)
    CL_ASSERT(d != NULL, "a hold's debit account exists")
    CL_ASSERT(c != NULL, "a hold's credit account exists")
    if d.debits_posted > INT64_MAX_ - posted or c.credits_posted > INT64_MAX_ - posted:
        return R_OVERFLOW
    sub = release(st, &p, posted)
    pending_del(st, pending_find(st, p.source, p.seq))
    CL_ASSERT(pending_find(st, p.source, p.seq) == NULL, "a posted hold is gone")
    set_effect(ef, posted, available(d), d, c, sub)
    return R_OK


cdef int op_void(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    cdef Pending* pp = pending_find(st, op.ref_source, op.ref_seq)
    cdef Pending p
    cdef Account* d
    if pp == NULL or pp.debit_id == 0:  # (a reversed tap's mark is no hold)
        return R_PENDING_NOT_FOUND
    p = pp[0]
    d = account_get(st, p.debit_id)
    CL_ASSERT(d != NULL, "a hold's debit account exists")
    release(st, &p, 0)
    pending_del(st, pending_find(st, p.source, p.seq))
    CL_ASSERT(pending_find(st, p.source, p.seq) == NULL, "a voided hold is gone")
    set_effect(ef, p.amount_fen, available(d), d, account_get(st, p.credit_id), p.subsidy_fen)
    return R_OK


cdef inline int lifecycle_target(State* st, Op* op, Account** ap) noexcept nogil:
    cdef Account* a
    if op.account_id == 0:
        return R_INVALID_ACCOUNT_ID
    a = account_get(st, op.account_id)
    if a == NULL:
        return R_ACCOUNT_NOT_FOUND
    if a.flags & AF_CLOSED:
        return R_ACCOUNT_CLOSED
    ap[0] = a
    return R_OK


cdef int op_freeze(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    cdef Account* a = NULL
    cdef int code = lifecycle_target(st, op, &a)
    if code != R_OK:
        return code
    touch(st, a)
    a.flags |= AF_FROZEN
    CL_ASSERT(a.flags & AF_FROZEN, "a frozen account is frozen")
    CL_ASSERT(not (a.flags & AF_CLOSED), "a closed account is never frozen")
    set_effect(ef, 0, available(a), a, NULL, 0)
    return R_OK


cdef int op_activate(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    """A card issued inactive is handed over; activating an active card changes nothing."""
    cdef Account* a = NULL
    cdef int code = lifecycle_target(st, op, &a)
    if code != R_OK:
        return code
    if a.kind != A_CARD:
        return R_WRONG_ACCOUNT_KIND
    touch(st, a)
    a.flags &= ~AF_INACTIVE
    CL_ASSERT(not (a.flags & AF_INACTIVE), "an activated card is active")
    set_effect(ef, 0, available(a), a, NULL, 0)
    return R_OK


cdef int op_set_category(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    """A card's rider category changes from the op's event time on (the one before is
    kept for late taps: category_at)."""
    cdef Account* a = NULL
    cdef int code = lifecycle_target(st, op, &a)
    if code != R_OK:
        return code
    if a.kind != A_CARD:
        return R_WRONG_ACCOUNT_KIND
    if op.time_us <= a.category_since_us:
        return R_CATEGORY_CHANGED_LATER
    touch(st, a)
    a.category_before = a.category
    a.category = op.category
    a.category_since_us = op.time_us
    CL_ASSERT(a.category_since_us > 0, "a category change has a time")
    set_effect(ef, 0, available(a), a, NULL, 0)
    return R_OK


cdef int op_close_day(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    """A service day closed: a record in the journal, no money moved (spec: op_close_day)."""
    if (op.source != CLOSE_DAY_SOURCE_C or op.limit_fen <= op.time_us or op.ref_seq >= jseq
            or op.amount_fen < 0):
        return R_INVALID_DAY_CLOSE
    set_effect(ef, op.amount_fen, 0, NULL, NULL, 0)
    return R_OK


cdef inline uint16_t category_at(const Account* a, int64_t time_us) noexcept nogil:
    """The card's rider category at `time_us` (SET_CATEGORY keeps the one before)."""
    return a.category if time_us >= a.category_since_us else a.category_before


cdef int op_unfreeze(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    cdef Account* a = NULL
    cdef int code = lifecycle_target(st, op, &a)
    if code != R_OK:
        return code
    touch(st, a)
    a.flags &= ~AF_FROZEN
    CL_ASSERT(not (a.flags & AF_FROZEN), "an unfrozen account is not frozen")
    CL_ASSERT(not (a.flags & AF_CLOSED), "a closed account is never unfrozen")
    set_effect(ef, 0, available(a), a, NULL, 0)
    return R_OK


cdef int op_replace(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    cdef Account* old
    cdef Account* new
    cdef int64_t old_i, cash, sub
    if op.account_id == 0 or op.counterparty_id == 0:
        return R_INVALID_ACCOUNT_ID
    if op.account_id == op.counterparty_id:
        return R_ACCOUNTS_MUST_BE_DIFFERENT
    old_i = account_find(st, op.account_id)
    if old_i < 0:
        return R_ACCOUNT_NOT_FOUND
    if account_find(st, op.counterparty_id) >= 0:
        return R_ACCOUNT_EXISTS
    old = &st.accounts[old_i]
    if old.kind != A_CARD:
        return R_WRONG_ACCOUNT_KIND
    if old.flags & AF_CLOSED:
        return R_ACCOUNT_CLOSED
    void_holds_of(st, op.account_id)
    cow_before_write(st.cow, old_i)
    touch(st, &st.accounts[old_i])
    new = account_new(st, op.counterparty_id)  # may move the accounts array
    if new == NULL:
        return R_OVERFLOW
    old = &st.accounts[old_i]
    cash = old.cash_fen
    sub = old.subsidy_fen
    new.kind = A_CARD
    new.flags = old.flags & AF_CASH_FIRST
    new.category = old.category
    new.category_before = old.category_before
    new.category_since_us = old.category_since_us
    new.member_ref = old.member_ref
    new.cap_fen = old.cap_fen
    new.cash_fen = cash
    new.subsidy_fen = sub
    new.credits_posted = cash + sub
    old.debits_posted += cash + sub
    old.cash_fen = 0
    old.subsidy_fen = 0
    old.flags |= AF_CLOSED
    CL_ASSERT(old.debits_pending == 0, "a replaced card keeps no hold")
    CL_ASSERT(new.cap_fen == old.cap_fen, "a new card keeps the old card's cap")
    journey_move(st, op.account_id, op.counterparty_id)
    set_effect(ef, cash + sub, 0, old, new, sub)
    return R_OK


cdef int op_close(State* st, Op* op, Effect* ef, uint64_t jseq) noexcept nogil:
    cdef Account* a
    cdef Account* c
    cdef int64_t held, total, cash, sub
    if op.account_id == 0 or op.counterparty_id == 0:
        return R_INVALID_ACCOUNT_ID
    if op.account_id == op.counterparty_id:
        return R_ACCOUNTS_MUST_BE_DIFFERENT
    a = account_get(st, op.account_id)
    if a == NULL:
        return R_ACCOUNT_NOT_FOUND
    c = account_get(st, op.counterparty_id)
    if c == NULL:
        return R_COUNTERPARTY_NOT_FOUND
    if a.kind == A_CLEARING:
        return R_WRONG_ACCOUNT_KIND
    if c.kind != A_CLEARING:
        return R_WRONG_COUNTERPARTY_KIND
    if (a.flags | c.flags) & AF_CLOSED:
        return R_ACCOUNT_CLOSED
    # The spec sums the account's holds; debits_pending is that sum (an invariant the
    # debug build checks here), so the release build does not walk every hold twice.
    held = a.debits_pending
    CL_ASSERT(held == debug_held_by(st, a.id), "debits_pending is the sum of the holds an account placed")
    total = a.cash_fen + a.subsidy_fen + held
    if total < 0:
        return R_INSUFFICIENT_FUNDS  # a card in debt (taps) is topped up first
    if c.credits_posted > INT64_MAX_ - total or c.cash_fen > INT64_MAX_ - total:
        return R_OVERFLOW
    void_holds_of(st, op.account_id)
    touch(st, a)
    touch(st, c)
    cash = a.cash_fen
    sub = a.subsidy_fen
    a.debits_posted += cash + sub
    a.cash_fen = 0
    a.subsidy_fen = 0
    a.flags |= AF_CLOSED
    c.credits_posted += cash + sub
    c.cash_fen += cash + sub
    CL_ASSERT(cash + sub == total, "a closing account refunds all it had, its released holds included")
    CL_ASSERT(a.debits_pending == 0, "a closed account keeps no hold")
    set_effect(ef, cash + sub, 0, a, c, sub)
    return R_OK


# The kinds an op may have (bit k: OpKind k): OPEN (1) to SET_POLICIES (20).
cdef enum:
    KINDS_VALID = (1 << (K_SET_POLICIES + 1)) - 2

# Allowed op flags per kind (index = kind); mirrors schema.ALLOWED_FLAGS.
cdef uint16_t ALLOWED_FLAGS[K_MAX + 1]
ALLOWED_FLAGS[:] = [0, F_LINKED | F_CASH_FIRST | F_INACTIVE, F_LINKED, F_LINKED, F_LINKED,
                    F_LINKED | F_SUBSIDY_PURSE, F_LINKED | F_PENDING | F_SUBSIDY_PURSE,
                    F_LINKED, F_LINKED, F_LINKED, F_LINKED, F_LINKED, F_LINKED, 0, 0, F_LINKED, F_LINKED, 0,
                    F_LINKED, F_LINKED, 0]


# The fields each kind uses besides schema.OP_FIELDS_COMMON (index = kind); mirrors
# schema.OP_FIELDS_USED (tests/engine/test_strict.py checks they agree).
cdef uint32_t FIELDS_USED[K_MAX + 1]
FIELDS_USED[:] = [
    0,
    OPF_ACCOUNT_ID | OPF_ACCOUNT_KIND | OPF_CATEGORY | OPF_LIMIT,        # OPEN
    OPF_ACCOUNT_ID | OPF_COUNTERPARTY_ID | OPF_AMOUNT,                   # TOPUP
    OPF_ACCOUNT_ID | OPF_COUNTERPARTY_ID | OPF_AMOUNT,                   # AID
    OPF_ACCOUNT_ID | OPF_COUNTERPARTY_ID | OPF_AMOUNT,                   # SPEND
    OPF_ACCOUNT_ID | OPF_COUNTERPARTY_ID | OPF_AMOUNT,                   # WITHDRAW
    OPF_ACCOUNT_ID | OPF_COUNTERPARTY_ID | OPF_AMOUNT,                   # TRANSFER
    OPF_AMOUNT | OPF_REF_SOURCE | OPF_REF_SEQ,                           # POST
    OPF_REF_SOURCE | OPF_REF_SEQ,                                        # VOID
    OPF_ACCOUNT_ID,                                                      # FREEZE
    OPF_ACCOUNT_ID,                                                      # UNFREEZE
    OPF_ACCOUNT_ID | OPF_COUNTERPARTY_ID,                                # REPLACE
    OPF_ACCOUNT_ID | OPF_COUNTERPARTY_ID,                                # CLOSE
    OPF_ACCOUNT_ID | OPF_AMOUNT | OPF_ROUTE | OPF_STOP | OPF_TAP,        # TAP
    OPF_ACCOUNT_ID | OPF_REF_SOURCE | OPF_REF_SEQ,                       # REVERSE
    OPF_ACCOUNT_ID,                                                      # ACTIVATE
    OPF_ACCOUNT_ID | OPF_CATEGORY,                                       # SET_CATEGORY
    OPF_AMOUNT | OPF_LIMIT | OPF_REF_SEQ,                                # CLOSE_DAY
    OPF_ACCOUNT_ID | OPF_COUNTERPARTY_ID | OPF_AMOUNT,                   # PURCHASE
    OPF_AMOUNT | OPF_REF_SOURCE | OPF_REF_SEQ,                           # REFUND
    0,                                                                   # SET_POLICIES
]


cdef int check_fields(const Op* op) noexcept nogil:
    """A new op's record is strict: time_us > 0 and every field its kind does not use
    zero; the first refusal in schema.UNUSED_FIELD_RESULTS order, or R_OK. The kind is
    valid. Replays skip this: older journals may hold OK records that break it."""
    cdef uint32_t used = FIELDS_USED[op.kind]
    CL_ASSERT(op.kind >= 1, "check_fields is given a valid kind")
    CL_ASSERT(op.kind <= K_MAX, "check_fields is given a valid kind")
    if op.time_us <= 0:
        return R_TIME_MUST_BE_POSITIVE
    if op.account_id != 0 and not (used & OPF_ACCOUNT_ID):
        return R_ACCOUNT_ID_MUST_BE_ZERO
    if op.counterparty_id != 0 and not (used & OPF_COUNTERPARTY_ID):
        return R_COUNTERPARTY_MUST_BE_ZERO
    if op.limit_fen != 0 and not (used & OPF_LIMIT):
        return R_LIMIT_MUST_BE_ZERO
    if op.ref_source != 0 and not (used & OPF_REF_SOURCE):
        return R_REF_MUST_BE_ZERO
    if op.ref_seq != 0 and not (used & OPF_REF_SEQ):
        return R_REF_MUST_BE_ZERO
    if op.account_kind != 0 and not (used & OPF_ACCOUNT_KIND):
        return R_ACCOUNT_KIND_MUST_BE_ZERO
    if op.category != 0 and not (used & OPF_CATEGORY):
        return R_CATEGORY_MUST_BE_ZERO
    # Only a card has a rider category; an unknown account_kind is left to the OPEN
    # handler's INVALID_ACCOUNT_KIND, which says more.
    if (op.kind == K_OPEN and op.category != 0 and op.account_kind >= 1
            and op.account_kind <= A_MAX and op.account_kind != A_CARD):
        return R_CATEGORY_MUST_BE_ZERO
    if op.route != 0 and not (used & OPF_ROUTE):
        return R_ROUTE_MUST_BE_ZERO
    if op.stop != 0 and not (used & OPF_STOP):
        return R_STOP_MUST_BE_ZERO
    if op.tap != 0 and not (used & OPF_TAP):
        return R_TAP_MUST_BE_ZERO
    if op.pad16 != 0 or op.pad32 != 0:
        return R_RESERVED_MUST_BE_ZERO
    return R_OK


cdef int execute(State* st, Op* op, Effect* ef, uint64_t jseq, bint strict) noexcept nogil:
    """Validate the op's kind, flags and amount shape; when `strict` (a new op, not a
    replay), its time and unused fields (check_fields); then run its handler."""
    cdef int kind = op.kind
    cdef int code
    if kind > K_MAX or not (KINDS_VALID >> kind) & 1:
        return R_INVALID_KIND
    if op.flags & ~ALLOWED_FLAGS[kind]:
        return R_INVALID_FLAGS
    if op.amount_fen != 0 and not (FIELDS_USED[kind] & OPF_AMOUNT):
        return R_INVALID_AMOUNT
    if strict:
        code = check_fields(op)
        if code != R_OK:
            return code
        if st.policy != NULL and not policy_allows(st.policy, op):
            return R_SOURCE_NOT_ALLOWED
    if kind == K_SPEND:
        return op_spend(st, op, ef, jseq)
    if kind == K_TOPUP:
        return op_topup(st, op, ef, jseq)
    if kind == K_AID:
        return op_aid(st, op, ef, jseq)
    if kind == K_TRANSFER:
        return op_transfer(st, op, ef, jseq)
    if kind == K_POST:
        return op_post(st, op, ef, jseq)
    if kind == K_VOID:
        return op_void(st, op, ef, jseq)
    if kind == K_WITHDRAW:
        return op_withdraw(st, op, ef, jseq)
    if kind == K_OPEN:
        return op_open(st, op, ef, jseq)
    if kind == K_FREEZE:
        return op_freeze(st, op, ef, jseq)
    if kind == K_UNFREEZE:
        return op_unfreeze(st, op, ef, jseq)
    if kind == K_REPLACE:
        return op_replace(st, op, ef, jseq)
    if kind == K_TAP:
        return op_tap(st, op, ef, jseq)
    if kind == K_REVERSE:
        return op_reverse(st, op, ef, jseq)
    if kind == K_ACTIVATE:
        return op_activate(st, op, ef, jseq)
    if kind == K_SET_CATEGORY:
        return op_set_category(st, op, ef, jseq)
    if kind == K_CLOSE_DAY:
        return op_close_day(st, op, ef, jseq)
    if kind == K_PURCHASE:
        return op_purchase(st, op, ef, jseq)  # purchases.pxi
    if kind == K_REFUND:
        return op_refund(st, op, ef, jseq)
    if kind == K_SET_POLICIES:
        return op_set_policies(st, op, ef, jseq)
    CL_ASSERT(kind == K_CLOSE, "execute dispatches every kind")
    return op_close(st, op, ef, jseq)
