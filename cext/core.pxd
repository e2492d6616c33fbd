# Every struct, enum and constant of the core, in one place: `_core.pyx` cimports them
# all, and the .pxi files it includes hold only code. Nothing here generates code or
# needs a module at run time: structs, enums and C constants only.
#
# Record structs (Op ... Pending, Journey, FareLeg) match the numpy dtypes of
# cardledger/schema.py byte for byte (tests/engine/test_schema.py checks the sizes); result,
# kind and flag codes match the enums there. Limits mirror the named Python constants.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int32_t, int64_t


# ================================================================ debug tripwires

cdef extern from "debug.h" nogil:
    # 1 when the core was compiled with CARDLEDGER_DEBUG (setup.py), else 0.
    const int CL_DEBUG
    # Abort with `msg`, the condition and where it failed when `cond` is false; in a
    # release build nothing at all: neither argument is evaluated. Call sites in the
    # hot code pass plain comparisons or debug_* calls (debug.pxi), never `and`/`or`
    # or conditional expressions, which Cython would compute before the macro.
    void CL_ASSERT(bint cond, const char* msg) noexcept
    # Evaluate `expr` (a debug_* bookkeeping call) only in a debug build.
    void CL_DEBUG_DO(int expr) noexcept


# ================================================================ typed constants

cdef extern from *:
    """
    #define CL_AMOUNT_MAX_FEN 1000000000000000LL
    #define CL_NO_PRICE (-(1LL << 62))
    #define CL_UNLIMITED_RANK (1LL << 40)
    #define CL_SETTLE_SOURCE 0xFFFFFFFFFFFFFFFFULL
    #define CL_CLOSE_DAY_SOURCE 0xFFFFFFFFFFFFFFFEULL
    #define CL_POLICY_SOURCE 0xFFFFFFFFFFFFFFFDULL
    """
    # schema.SETTLE_SOURCE: the source of the records the ledger writes on its own.
    const uint64_t SETTLE_SOURCE_C "CL_SETTLE_SOURCE"
    const uint64_t CLOSE_DAY_SOURCE_C "CL_CLOSE_DAY_SOURCE"
    const uint64_t POLICY_SOURCE_C "CL_POLICY_SOURCE"
    # schema.AMOUNT_MAX_FEN: the largest amount one op may carry.
    const int64_t AMOUNT_MAX_FEN "CL_AMOUNT_MAX_FEN"
    const int64_t INT64_MAX_ "INT64_MAX"
    const int64_t INT64_MIN_ "INT64_MIN"
    # fares.tables.NO_PRICE: a (product, category, medium) without a price.
    const int64_t NO_PRICE_C "CL_NO_PRICE"
    # spec fares.UNLIMITED_RANK: how a transfer rule of unlimited count ranks.
    const int64_t UNLIMITED_RANK_C "CL_UNLIMITED_RANK"


# ================================================================ codes (schema.py)

cdef enum:                     # OpKind
    K_OPEN = 1
    K_TOPUP = 2
    K_AID = 3
    K_SPEND = 4
    K_WITHDRAW = 5
    K_TRANSFER = 6
    K_POST = 7
    K_VOID = 8
    K_FREEZE = 9
    K_UNFREEZE = 10
    K_REPLACE = 11
    K_CLOSE = 12
    K_TAP = 13
    K_REVERSE = 14
    K_ACTIVATE = 15
    K_SET_CATEGORY = 16
    K_CLOSE_DAY = 17
    K_PURCHASE = 18            # purchases.pxi
    K_REFUND = 19
    K_SET_POLICIES = 20
    K_MAX = 20

cdef enum:                     # AccountKind
    A_CARD = 1
    A_CLEARING = 2
    A_PROGRAM = 3
    A_OPERATOR = 4
    A_MERCHANT = 5
    A_SUBSIDY = 6
    A_MAX = 6

cdef enum:                     # OpFlags
    F_LINKED = 1
    F_PENDING = 2
    F_SUBSIDY_PURSE = 4
    F_CASH_FIRST = 8
    F_INACTIVE = 16

cdef enum:                     # AccountFlags
    AF_FROZEN = 1
    AF_CLOSED = 2
    AF_CASH_FIRST = 4
    AF_INACTIVE = 8

cdef enum:                     # Result
    R_OK = 0
    R_EXISTS = 1
    R_EXISTS_WITH_DIFFERENT_FIELDS = 2
    R_ID_ALREADY_FAILED = 3
    R_INVALID_ID = 4
    R_INVALID_KIND = 5
    R_INVALID_FLAGS = 6
    R_INVALID_AMOUNT = 7
    R_INVALID_ACCOUNT_ID = 8
    R_INVALID_ACCOUNT_KIND = 9
    R_ACCOUNT_NOT_FOUND = 10
    R_COUNTERPARTY_NOT_FOUND = 11
    R_ACCOUNT_EXISTS = 12
    R_ACCOUNTS_MUST_BE_DIFFERENT = 13
    R_WRONG_ACCOUNT_KIND = 14
    R_WRONG_COUNTERPARTY_KIND = 15
    R_ACCOUNT_CLOSED = 16
    R_ACCOUNT_FROZEN = 17
    R_INSUFFICIENT_FUNDS = 18
    R_EXCEEDS_CAP = 19
    R_OVERFLOW = 20
    R_PENDING_NOT_FOUND = 21
    R_EXCEEDS_PENDING = 22
    R_LINKED_FAILED = 23
    R_LINKED_CHAIN_OPEN = 24
    R_INVALID_TAP = 25
    R_NO_FARE_SYSTEM = 26
    R_UNKNOWN_ROUTE = 27
    R_UNKNOWN_STOP = 28
    R_FARE_NOT_FOUND = 29
    R_OPERATOR_NOT_FOUND = 30
    R_TAP_TIME_IN_FUTURE = 31
    R_TIME_MUST_BE_POSITIVE = 32
    R_ACCOUNT_ID_MUST_BE_ZERO = 33
    R_COUNTERPARTY_MUST_BE_ZERO = 34
    R_LIMIT_MUST_BE_ZERO = 35
    R_REF_MUST_BE_ZERO = 36
    R_ACCOUNT_KIND_MUST_BE_ZERO = 37
    R_CATEGORY_MUST_BE_ZERO = 38
    R_ROUTE_MUST_BE_ZERO = 39
    R_STOP_MUST_BE_ZERO = 40
    R_TAP_MUST_BE_ZERO = 41
    R_RESERVED_MUST_BE_ZERO = 42
    R_ACCOUNT_INACTIVE = 43
    R_CATEGORY_CHANGED_LATER = 44
    R_INVALID_DAY_CLOSE = 45
    R_EXCEEDS_REFUNDABLE = 46
    R_PURCHASE_NOT_FOUND = 47
    R_INVALID_REVERSE = 48
    R_TAP_NOT_FOUND = 49
    R_TAP_NOT_REVERSIBLE = 50
    R_TAP_ALREADY_REVERSED = 51
    R_SOURCE_NOT_ALLOWED = 52
    R_POLICY_SET_UNKNOWN = 57
    R_MAX = 57
    # not a result: op_tap asks the batch loop to settle an overdue entry first
    # (spec taps.SETTLE_FIRST, taps.py rule 9)
    R_SETTLE_FIRST_C = 1000

cdef enum:                     # the op fields a kind may use (schema.OP_FIELDS_USED)
    # Bit i stands for field i of OP_DTYPE, so that a test can compare the core's
    # table (`_core.op_fields_used`) with the schema's without a list of names here.
    OPF_ACCOUNT_ID = 1 << 2
    OPF_COUNTERPARTY_ID = 1 << 3
    OPF_AMOUNT = 1 << 4
    OPF_LIMIT = 1 << 6
    OPF_REF_SOURCE = 1 << 7
    OPF_REF_SEQ = 1 << 8
    OPF_ACCOUNT_KIND = 1 << 11
    OPF_CATEGORY = 1 << 12
    OPF_ROUTE = 1 << 13
    OPF_STOP = 1 << 14
    OPF_TAP = 1 << 15

cdef enum:                     # TapType
    TAP_BOARD = 1
    TAP_ENTRY = 2
    TAP_EXIT = 3
    TAP_SWEEP = 4


# ================================================================ records (schema.py)

cdef enum:
    JOURNEY_LEGS_MAX_C = 4     # schema.JOURNEY_LEGS_MAX
    FARE_CAPS_MAX_C = 4        # schema.FARE_CAPS_MAX
    FARE_TIERS_MAX_C = 4       # schema.FARE_TIERS_MAX

cdef struct Op:
    uint64_t source
    uint64_t seq
    uint64_t account_id
    uint64_t counterparty_id
    int64_t amount_fen
    int64_t time_us
    int64_t limit_fen
    uint64_t ref_source
    uint64_t ref_seq
    uint16_t kind
    uint16_t flags
    uint16_t account_kind
    uint16_t category
    uint32_t route
    uint32_t stop
    uint16_t tap
    uint16_t pad16
    uint32_t pad32
    uint64_t user_data

cdef struct Result:
    uint32_t code
    uint32_t discounts
    int64_t amount_fen
    int64_t balance_fen
    uint64_t journal_seq

cdef struct Journal:
    Op op
    uint32_t code
    uint32_t discounts
    int64_t result_amount_fen
    int64_t balance_fen
    uint64_t journal_seq
    uint64_t debit_id
    uint64_t credit_id
    int64_t subsidy_fen
    uint64_t debit_prev_seq
    uint64_t credit_prev_seq
    uint64_t union_id  # a PURCHASE's / REFUND's union account (0: none)
    int64_t union_fen  # ...debited (PURCHASE) / credited (REFUND) this much
    int64_t offer_fen  # a PURCHASE's discount; a REFUND's share of it given back
    int64_t offer_day  # the purchase's counted local day + 1 (0: not counted)
    int64_t refundable_fen  # a REFUND: the purchase's gross left to refund after it

cdef struct Account:
    uint64_t id
    uint16_t kind
    uint16_t flags
    uint16_t category
    uint16_t category_before
    int64_t cap_fen
    int64_t cash_fen
    int64_t subsidy_fen
    int64_t debits_posted
    int64_t credits_posted
    int64_t debits_pending
    int64_t credits_pending
    uint64_t last_journal_seq
    uint64_t member_ref
    int64_t category_since_us

cdef struct Source:
    uint64_t source
    uint64_t last_seq
    uint64_t checkpoint_seq

cdef struct Pending:
    uint64_t source
    uint64_t seq
    uint64_t debit_id
    uint64_t credit_id
    int64_t amount_fen
    int64_t subsidy_fen
    int64_t credit_subsidy
    uint64_t journal_seq

cdef struct ReverseRef:        # REVERSE_REF_DTYPE
    uint64_t account_id
    uint64_t operator_id
    int64_t amount_fen
    int64_t subsidy_fen
    int64_t time_us
    int64_t entry_time_us
    uint32_t route
    uint32_t entry_route
    uint16_t status
    uint16_t tap
    uint16_t entry_found
    uint16_t pad16

cdef enum:                     # REVERSE_REF_DTYPE.status
    REF_NOT_FOUND_C = 0
    REF_TAP_C = 1
    REF_OTHER_C = 2

cdef struct FareLeg:           # JOURNEY_LEG_DTYPE (fares LEG_DTYPE)
    int32_t route
    int32_t from_stop
    int32_t to_stop
    int32_t reserved
    int64_t departure_us
    int64_t arrival_us

# A card's fare state: JOURNEY_DTYPE byte for byte.
cdef struct Journey:
    uint64_t account_id
    int32_t version             # -1: none
    int32_t n_legs
    int64_t charged_fen
    int64_t last_departure_us
    int64_t last_arrival_us
    FareLeg legs[JOURNEY_LEGS_MAX_C]
    int32_t entry_version       # -1: no open entry
    int32_t entry_route
    int32_t entry_stop
    int32_t counter_version     # -1: none
    int64_t entry_time_us
    uint64_t entry_source
    uint64_t entry_seq
    int64_t cap_period[FARE_CAPS_MAX_C]
    int64_t cap_spent_fen[FARE_CAPS_MAX_C]
    int64_t tier_period[FARE_TIERS_MAX_C]
    int64_t tier_spent_fen[FARE_TIERS_MAX_C]


# ================================================================ handlers (handlers.pxi)

# The effect of a successful op, as the journal records it.
cdef struct Effect:
    int64_t amount_fen
    int64_t balance_fen
    uint64_t debit_id
    uint64_t credit_id
    int64_t subsidy_fen
    Account* debit  # the accounts themselves (valid until the next account is created)
    Account* credit
    uint32_t discounts  # TAP: FareDiscount bits (0 for every other kind)
    uint64_t union_id  # PURCHASE / REFUND: the union account's leg (0: none)
    int64_t union_fen
    int64_t offer_fen  # PURCHASE / REFUND: the record's offer words (JOURNAL_DTYPE)
    int64_t offer_day
    int64_t refundable_fen

# How a debit draws a card's purses.
cdef enum:
    DRAW_ORDER = 0
    DRAW_CASH = 1
    DRAW_SUBSIDY = 2

# Kind predicates for pair checks: a bitmask of accepted AccountKinds.
cdef enum:
    KM_ANY = 0x7E
    KM_CARD = 1 << A_CARD
    KM_CLEARING = 1 << A_CLEARING
    KM_PROGRAM = 1 << A_PROGRAM
    KM_NOT_CARD = 0x7E & ~(1 << A_CARD)
    KM_NOT_CLEARING = 0x7E & ~(1 << A_CLEARING)


# ================================================================ fare evaluator (fares.pxi)

cdef enum:
    FARE_NONE = -1
    FARE_LEGS_MAX = 64           # legs one quote may have (spec fares.QUOTE_LEGS_MAX)
    LEG_OPTIONS_MAX_C = 8        # spec fares.LEG_OPTIONS_MAX
    QUOTE_COMBINATIONS_MAX_C = 4096  # spec fares.QUOTE_COMBINATIONS_MAX
    US_PER_S_C = 1000000
    S_PER_DAY_C = 86400

cdef enum:                     # spec fares.FareStatus
    FS_OK = 0
    FS_UNKNOWN_FARE = 1
    FS_UNKNOWN_ROUTE = 2
    FS_UNKNOWN_STOP = 3
    FS_NO_LEGS = 4
    FS_TOO_MANY_LEGS = 5

cdef enum:                     # spec fares.FareDiscount bits
    FD_TRANSFER = 1
    FD_CATEGORY = 2
    FD_CAP = 4
    FD_TIER = 8

cdef struct EffLeg:
    int32_t network
    int32_t from_stop
    int32_t to_stop
    int64_t dep_us
    int64_t arr_us

cdef struct LegOption:          # one way the leg rules may price an effective leg
    int64_t amount
    int32_t order               # the rule's file order (ties after the amount)
    int32_t group
    int32_t product

# One FareTables (cardledger.fares.tables) as raw pointers into arrays its
# FareEvaluator keeps alive.
cdef struct FareTab:
    int32_t n_routes, n_stops, n_areas, n_cat, n_med, n_rules, n_tr, n_jr
    bint has_priority
    # No transfer rules, no join rules, no negative price: a journey's quote is then
    # the sum of its legs' own quotes (see `FareEvaluator.additive`).
    bint additive
    int32_t* route_network
    uint8_t* route_known
    int32_t* stop_station
    uint8_t* stop_known
    int32_t* stop_tz
    int32_t* stop_area_ptr
    int32_t* stop_area
    int32_t* tz_ptr
    int64_t* tz_from_us
    int64_t* tz_offset_s
    int64_t svc_day0
    int64_t svc_ndays
    uint8_t* svc_bits
    int32_t* tf_ptr
    int32_t* tf_start_s
    int32_t* tf_end_s
    int32_t* tf_service
    int64_t* price
    # The leg rules sorted by (key, to area, file order): lr2_keys[i] =
    # lr_keys[r] * (n_areas + 2) + lr_to_area[r] + 1 of rule r = lr2_rule[i] (the
    # FareTables arrays); the lr_* arrays below are indexed by rule.
    int64_t* lr2_keys
    int32_t* lr2_rule
    # lr2 rows of key k (network and from area, as in lr_keys): lr_key_ptr[k] up to
    # lr_key_ptr[k + 1], for k < n_keys (larger keys have no rule).
    int32_t n_keys
    int32_t* lr_key_ptr
    int32_t* lr_from_tf
    int32_t* lr_to_tf
    int32_t* lr_group
    int32_t* lr_product
    int32_t* lr_priority
    int32_t* lr_nspec
    int32_t* lr_order
    uint8_t* network_listed
    uint8_t* from_area_listed
    uint8_t* to_area_listed
    int32_t* tr_from_group
    int32_t* tr_to_group
    int32_t* tr_count
    int64_t* tr_duration_s
    int32_t* tr_duration_type
    int32_t* tr_type
    int32_t* tr_product
    uint8_t* from_group_listed
    uint8_t* to_group_listed
    int32_t* jr_from_network
    int32_t* jr_to_network
    int32_t* jr_from_stop
    int32_t* jr_to_stop
    uint8_t* stop_from_empty    # an empty from_area_id matches the stop
    uint8_t* stop_to_empty      # an empty to_area_id matches the stop


# ================================================================ taps (taps.pxi)

# fares.taptables network_mode values
cdef enum:
    MODE_JOURNEY_C = 0
    MODE_METERED_C = 1
    MODE_GATED_C = 2

# fares.taptables cap_period values
cdef enum:
    PERIOD_DAY_C = 0
    PERIOD_WEEK_C = 1
    PERIOD_ROLLING_7D_C = 2
    PERIOD_MONTH_C = 3

cdef enum:
    # reserve_journeys makes room for one open hold (a metro entry) per this many
    # cards: the million-card city peaks at about one card in eight.
    HOLDS_RESERVED_CARDS_PER_HOLD = 4

# One installed fare-system version: fares.taptables.TapTables as raw pointers into
# arrays the Engine keeps alive (its `_fare_keep` list).
cdef struct TapVer:
    int64_t effective_from_us
    FareTab* ft                 # the version's FareEvaluator tables
    int32_t n_codes
    int32_t* rider_category_of_code
    int32_t fare_media
    int64_t journey_break_us
    int64_t day_start_s
    uint64_t* route_operator
    uint8_t* network_mode
    int64_t* gate_max_fare_fen
    int64_t* gate_timeout_us
    int64_t* gate_incomplete_fen
    int64_t* gate_same_station_fen
    int64_t* network_allowance_fen
    int64_t* product_allowance_fen
    int32_t n_caps
    int32_t* cap_period
    int64_t* cap_amount_fen
    uint8_t* cap_category       # [n_caps, cap_category_w]
    uint8_t* cap_network        # [n_caps, cap_network_w]
    int32_t cap_category_w
    int32_t cap_network_w
    int32_t n_tiers
    int64_t* tier_from_fen
    int64_t* tier_until_fen
    int32_t* tier_percent_off
    uint8_t* tier_category      # [n_tiers, tier_category_w]
    uint8_t* tier_network       # [n_tiers, tier_network_w]
    int32_t tier_category_w
    int32_t tier_network_w


# ================================================================ state (state.pxi)

# Open-addressing hash table slots (key 0 = empty).
cdef struct Slot:
    uint64_t key
    int64_t val

cdef struct Slot2:
    uint64_t k1
    uint64_t k2
    int64_t val
    int64_t pad

# One side of one hold in its account's list of holds (holdidx.pxi): node 2*i is hold
# i's debit side, in the list of pending[i].debit_id; node 2*i + 1 its credit side.
cdef struct HoldLink:
    int64_t next                # the next node of the account's list, -1 at its end
    int64_t prev                # the previous node; at the head -3 - the account's index; -2: in no list

# Initial table sizes (powers of two); tables double when half full.
cdef enum:
    MAP_SLOTS_INITIAL = 1024
    ARRAY_INITIAL = 256

# Tables this large are backed by 2 MiB pages where the kernel allows it.
cdef enum:
    HUGE_PAGE_BYTES = 2 * 1024 * 1024
    HUGE_MIN_BYTES = 4 * 1024 * 1024

# Offers and purchases (see purchases.pxi; spec engine/spec/purchases.py). One offer of
# a version, its columns gathered in one row (a candidate's terms in three cache lines,
# not one line per column).
cdef struct OfferRow:
    int64_t slot
    int64_t percent_off_bp
    int64_t amount_off_fen
    int64_t min_gross_fen
    int64_t every_fen
    int64_t max_discount_fen
    int64_t from_day
    int64_t to_day
    int64_t day_count
    int64_t month_discount_fen
    int64_t budget_fen
    int64_t union_share_bp
    uint64_t union_account
    int32_t row                 # its index in its version's rows
    int16_t dow_mask
    int16_t cat_all
    int32_t hour_lo             # its hour ranges: hour_start/hour_end[hour_lo:hour_hi]
    int32_t hour_hi
    int32_t cat_lo              # its categories: cats[cat_lo:cat_hi]
    int32_t cat_hi

# A merchant's own offers in a version: merchant_offers[lo:hi] (an open-addressing
# table over the merchant ids, built at install; lo = -1: an empty slot), and the
# slots of the first MERCHANT_LIMITED_C of them that limit cards (whose counters a
# purchase there reads: fetched ahead from here, without waiting for the rows).
cdef enum:
    MERCHANT_LIMITED_C = 3

cdef struct MerchantSlot:
    uint64_t id
    int32_t lo
    int32_t hi
    int32_t n_limited
    int32_t limited[MERCHANT_LIMITED_C]

# An offer with a percent off only: its row and percent_off_bp.
cdef struct PercentOffer:
    int64_t row
    int64_t percent_off_bp

# One installed offer-catalog version, compiled (offers/tables.py OfferTables): its rows,
# and raw pointers into the numpy arrays the Engine keeps alive.
cdef struct OfferVer:
    int64_t start_us
    int64_t n
    OfferRow* rows
    MerchantSlot* mslots        # merchant id -> its own offers (mslots_mask + 1 slots)
    OfferRow* mrows             # rows[merchant_offers[k]] at k: each merchant's offers' rows together
    uint64_t mslots_mask
    # every merchant's offers split at install: those with a percent off only (no amount
    # off), by percent_off_bp falling then row (whose discount bound falls along it),
    # and the others, in catalog order
    PercentOffer* pct_offers
    int64_t n_pct
    int64_t* rest_offers
    int64_t n_rest
    int64_t* slot
    int64_t* percent_off_bp
    int64_t* amount_off_fen
    int64_t* min_gross_fen
    int64_t* every_fen
    int64_t* max_discount_fen
    int64_t* from_day
    int64_t* to_day
    int64_t* dow_mask
    int64_t* day_count
    int64_t* month_discount_fen
    int64_t* budget_fen
    int64_t* union_share_bp
    uint64_t* union_account
    int64_t* hour_off
    int64_t* hour_start
    int64_t* hour_end
    int64_t* cat_off
    int64_t* cat_all
    int64_t* cats
    uint64_t* merchant_ids
    int64_t n_merchants
    int64_t* merchant_off
    int64_t* merchant_offers
    int64_t* all_offers
    int64_t n_all
    int64_t* tz_from_us
    int64_t* tz_offset_s
    int64_t n_tz

cdef struct CardOffer:          # CARD_OFFER_DTYPE
    uint64_t account_id
    int64_t slot
    int64_t day
    int64_t day_count
    int64_t month
    int64_t month_discount_fen

cdef struct Refunded:           # REFUNDED_DTYPE
    uint64_t source
    uint64_t seq
    int64_t refundable_fen

cdef struct SlotUse:            # OFFER_BUDGET_DTYPE (without its slot)
    int64_t used_fen
    int64_t union_fen
    int64_t purchases

# A purchase as a REFUND needs it, read from its journal record (purchase_of).
cdef struct Purchase:
    uint64_t card_id
    uint64_t merchant_id
    uint64_t union_id
    int64_t gross_fen
    int64_t subsidy_fen
    int64_t cash_fen
    int64_t discount_fen
    int64_t union_fen
    int64_t slot
    int64_t day
    int64_t month

# The offer state, owned by the Engine (like Taps): the versions, each slot's use,
# the cards' counters per offer, the purchases refunded so far.
cdef struct Offers:
    OfferVer* vers
    int32_t n_vers
    SlotUse* slots              # by slot
    int64_t cap_budget
    CardOffer* cards
    int64_t n_cards
    int64_t cap_cards
    Slot2* cmap                 # (card id, slot) -> index into cards
    uint64_t cmap_mask
    int64_t cmap_used
    Refunded* buys
    int64_t n_buys
    int64_t cap_buys
    Slot2* bmap                 # purchase id -> index into buys
    uint64_t bmap_mask
    int64_t bmap_used

cdef enum:
    U_BUDGET = 6       # an offer slot's use before a chain member changed it
    U_CARD_OFFER_ADD = 7   # a card's counters a chain member created (the last row)
    U_CARD_OFFER = 8   # a card's counters before a chain member changed them
    U_PURCHASE_ADD = 9 # a purchase a chain member refunded first (the last row)
    U_PURCHASE = 10    # a refunded purchase's progress before a chain member changed it

cdef enum:
    U_ACCOUNT = 1      # an account's state before a chain member changed it
    U_NEW_ACCOUNT = 2  # an account a chain member created (always the last one)
    U_PENDING_ADD = 3  # a hold a chain member placed
    U_PENDING_DEL = 4  # a hold a chain member resolved
    U_JOURNEY_MOVE = 5 # a card's fare state a REPLACE handed to the new card

cdef struct Undo:
    int kind
    int64_t idx
    Account account
    Pending pending
    Journey journey             # U_JOURNEY_MOVE: the journey as it was, old card id included
    CardOffer card_offer        # U_CARD_OFFER: the counters as they were
    Refunded refunded           # U_PURCHASE: the refunded purchase as it was
    SlotUse slot_use            # U_BUDGET: the slot's use as it was

# A copy-on-write snapshot row's state (see CowTable).
cdef enum:
    COW_PENDING = 0
    COW_COPYING = 1
    COW_DONE = 2

# A snapshot of one table (the accounts, or the journeys) taken copy-on-write: the
# batch thread only marks the moment; a copier thread (the checkpoint writer) copies
# the rows into the snapshot buffer beside the next batches, and a batch that is about
# to change a row not copied yet copies that row first (`cow_before_write`), so that
# copying a million cards' rows never lands on one batch. Each row's state moves
# COW_PENDING -> COW_COPYING (whoever claims it copies it) -> COW_DONE, by atomic
# operations: the copier and the batch loop run at once.
cdef struct CowTable:
    int active                  # a snapshot of this table is being taken
    int copiers                 # copier threads inside cow_copy_all
    unsigned char* state        # per row of the snapshot: COW_PENDING/COPYING/DONE
    int64_t cap_state
    int64_t n                   # rows in the snapshot
    char* src                   # the table as the snapshot began: never moved while active
    char* dst                   # the snapshot buffer
    size_t item                 # bytes a row

# Fare state for TAP ops (see taps.pxi). Owned by the Engine, not by State: a
# checkpoint load replaces the ledger state but keeps the journeys and the installed
# fare versions, as the reference engine does.
cdef struct Taps:
    Journey* journeys           # one per card that has tapped, in first-tap order
    int64_t n_journeys
    int64_t cap_journeys
    CowTable* cow               # the Engine's copy-on-write snapshot of the journeys
    Slot* jmap                  # card id -> index into journeys
    uint64_t jmap_mask
    int64_t jmap_used
    TapVer* vers                # installed fare-system versions, oldest first
    int32_t n_vers

cdef enum:
    # Distinct accounts one op may change and still have its money checked in a
    # debug build (a CLOSE releasing holds at many operators may touch more: that
    # op's sums are then not checked).
    DEBUG_TOUCHED_MAX = 16

# What the op being executed changed, for the debug build's checks after it
# (debug.pxi): the accounts it touched, as they were before. Unused in a release build.
cdef struct DebugOp:
    int n_touched
    bint overflow               # more than DEBUG_TOUCHED_MAX accounts touched
    int64_t idx[DEBUG_TOUCHED_MAX]  # indexes into State.accounts
    Account before[DEBUG_TOUCHED_MAX]

cdef struct State:
    Taps* taps
    Offers* offers
    # A TAP whose time_us is later than this is refused (Engine.set_tap_horizon).
    int64_t tap_horizon_us
    # A tap may settle the card's overdue entry first (taps.py rule 9): set by the
    # batch loop for a tap outside a chain, never during a replay.
    int settle_on
    # REVERSE: what the ledger found about the taps a batch's REVERSE ops name (one row
    # per op of `batch_ops`; NULL: none), or what the REVERSE's own record says it did
    # (replay: reverse_replay_on, operator, amount, subsidy, counters).
    Op* batch_ops
    ReverseRef* batch_refs
    int reverse_replay_on
    uint64_t reverse_replay_operator
    int64_t reverse_replay_amount
    int64_t reverse_replay_subsidy
    uint32_t reverse_replay_mask
    # REFUND: the records of the purchases a batch's REFUND ops name, found before the
    # batch (one row per op of `batch_ops`, journal_seq 0: none; NULL: none), or the
    # REFUND's own record, which says all it did (replay).
    Journal* batch_bought
    Journal* refund_replay
    int64_t default_cap_fen
    uint64_t journal_seq
    int oom
    CowTable* cow               # the Engine's copy-on-write snapshot of the accounts
    Account* accounts
    int64_t n_accounts
    int64_t cap_accounts
    Slot* amap
    uint64_t amap_mask
    int64_t amap_used
    Source* sources
    int64_t n_sources
    int64_t cap_sources
    Slot* smap
    uint64_t smap_mask
    int64_t smap_used
    Pending* pending
    int64_t n_pending
    int64_t cap_pending
    Slot2* pmap
    uint64_t pmap_mask
    int64_t pmap_used
    # The holds of each card (holdidx.pxi), so CLOSE and REPLACE release a card's
    # holds without walking every hold: hhead[k] the head node of account k's list
    # (-1: none; set for the first n_hhead accounts); hlink 2 nodes per hold of
    # `pending`, in step with it; hscratch void_holds_of's room.
    int64_t* hhead
    int64_t n_hhead
    int64_t cap_hhead
    HoldLink* hlink
    int64_t cap_hlink
    int64_t* hscratch
    int64_t cap_hscratch
    # The decisions window (see window.pxi): this batch's records in `tail`; the
    # window's older records packed in `wbytes`, batch by batch as the journal stores
    # them, record i at offset `woff[i]` with its time predictor `wptime[i]`.
    Journal* tail
    int64_t n_tail
    int64_t cap_tail
    unsigned char* wbytes
    int64_t wbytes_used
    int64_t cap_wbytes
    int64_t wlast_batch_off  # where the last batch's packed records start in wbytes
    int64_t wlast_batch_base  # the last batch's first decision index
    int64_t* woff
    int64_t cap_woff
    uint64_t* wptime
    int64_t cap_wptime
    int32_t* wsrc  # each decision's source (index into sources) and seq, for take_decisions
    int64_t cap_wsrc
    uint64_t* wseq
    int64_t cap_wseq
    uint64_t* whash
    int64_t cap_whash
    int64_t n_dec
    int64_t batch_base
    uint64_t wfirst_jseq
    uint64_t* rmap  # recent decisions: fingerprint << 32 | (decision index + 1)
    uint64_t rmap_mask
    int64_t rmap_used
    Undo* undo
    int64_t n_undo
    int64_t cap_undo
    int undo_on
    # Known gaps (see gaps.pxi): the seqs a source skipped, still undecided, so a late
    # op is known new without a lookup. Seqs of source i from gap_floor[i] up to its
    # last_seq are decided unless they are in gmap; below gap_floor[i], unknown.
    uint64_t* gap_floor
    int64_t cap_gap_floor
    Slot2* gmap  # (source, seq) -> 0
    uint64_t gmap_mask
    int64_t gmap_used
    int64_t gap_budget          # skipped seqs this batch (or replay) may still record
    DebugOp dbg                 # debug builds: what the op being executed touched
    Policies* pol               # the source policies (policies.pxi): the Engine's, kept across loads
    PolicySet* policy           # the set in force, one of pol's (NULL: none, or enforcement lifted)


# ================================================================ source policies (policies.pxi)

cdef struct PolicyRow:
    # One policy of a compiled set (policies.pxi, _policy_rows), at the start of its own
    # 64-byte line, or of two lines where the set's lists need them
    # (PolicySet.row_shift): this header, then the row's id slots (policy_slots):
    # POLICY_NARROW_SLOTS in one line, POLICY_WIDE_SLOTS in two. kinds a bitmask (bit k:
    # OpKind k); amount_max INT64_MAX when none. The account list: acc_n ids held in the
    # slots from 0 on, or POLICY_ANY (any account), or POLICY_LISTED (its sorted ids are
    # acc_ids[slots[0]:slots[1]]). The counterparty list likewise from slot cp_off on.
    uint64_t first
    uint64_t last
    int64_t amount_max
    uint32_t kinds
    uint8_t acc_n
    uint8_t cp_n
    uint8_t cp_off
    uint8_t pad

cdef enum:
    # PolicyRow.acc_n / cp_n when not a count of ids held in the row
    POLICY_ANY = 255
    POLICY_LISTED = 254
    # The id slots of a one-line row and of a two-line row (after the 32-byte header).
    POLICY_NARROW_SLOTS = 4
    POLICY_WIDE_SLOTS = 12

cdef struct PolicySet:
    # One installed set: n policies sorted by first_source, ranges disjoint.
    uint64_t journal_seq        # the SET_POLICIES record that installs it
    uint64_t digest             # ... and its user_data
    int enforce                 # 0: the set lifts enforcement (install_policies(None))
    int64_t n
    PolicyRow* rows             # 64-byte aligned; row i at byte i << row_shift (policy_row)
    int row_shift               # 6: one line a row; 7: two (lists of up to 12 ids held)
    int listed                  # some list is POLICY_LISTED (then prefetched too)
    uint64_t* acc_ids
    uint64_t* cp_ids
    uint64_t base               # the bucket index over first (policies.compile_tables)
    int shift
    int64_t n_buckets
    int32_t* buckets
    # Where the set's sources span at most POLICY_DIRECT_SPAN_MAX: the covering row of
    # every source dbase + i, at direct[i] (-1: none), read with no search. NULL: none.
    int32_t* direct
    uint64_t dbase
    uint64_t dspan

cdef struct Policies:
    PolicySet* sets             # every installed set, by journal_seq
    int64_t n_sets


# ================================================================ batch loop (batch.pxi)

cdef enum:
    # Batches at least this long run their loop without the GIL. Below it, dropping
    # and retaking the GIL costs more than it frees: retaking waits for the thread
    # holding it (up to the interpreter's switch interval, 5 ms by default).
    NOGIL_OPS_MIN = 1024
    # How much of the journey store one prefault call populates (2 huge pages).
    PREFAULT_STEP_BYTES = 4 * 1024 * 1024

# How far ahead of the op being executed the loop prefetches: hash slots at 2x, the
# account records (whose slots are cached by then) at 1x. Random accounts over a
# million cards miss every cache level; overlapping those misses is most of the
# core's speed.
cdef enum:
    PREFETCH_DISTANCE = 8
    # A hold's slot is known only once the journey is cached: half the distance.
    HOLD_PREFETCH_DISTANCE = 4
    # Its record only once its slot is: half again.
    HOLD_RECORD_PREFETCH_DISTANCE = 2


# ================================================================ window (window.pxi)

cdef enum:
    # A window emptied by a flush keeps its arrays for the next decisions, up to this
    # many; beyond (after a reopen replayed a long journal tail, or a long stretch
    # without flushes) they are freed: about 100 bytes a decision.
    WINDOW_KEEP_DECISIONS_MAX = 1 << 17


# ================================================================ gaps (gaps.pxi)

cdef enum:
    # Skipped seqs recorded for one jump, at most: an offline run of a validator.
    GAP_JUMP_TRACKED_MAX = 1024
    # Undecided seqs tracked in all, at most (16 MiB of map at half load).
    GAPS_TRACKED_MAX = 1 << 18
    # Skipped seqs a batch may record, one an op (plus one jump of
    # GAP_JUMP_TRACKED_MAX): each costs a map insert into a large map, and a source
    # that skips a thousand seqs with every op would otherwise cost a thousand inserts
    # an op. A batch of 8,192 still records nine validators' thousand-op backlogs.
    GAP_BUDGET_PER_OP = 1


# ================================================================ codec (codec.pxi)

# A journal record as J_WORDS 64-bit words, and the words the codec's predictors use.
# The W_ positions are the encoding's: a record's words in JOURNAL_DTYPE order, with
# user_data (word OP_USER_DATA_WORD, added to OP_DTYPE after the format's first
# version) moved last, so that records written before it decode as they were, with
# user_data 0 (codec.pxi `dword`). union_id and union_fen, appended to JOURNAL_DTYPE
# later still, are its last words in both orders, and so are offer_fen, offer_day and
# refundable_fen after them: older records decode them as 0.
cdef enum:
    J_WORDS = 27
    OP_USER_DATA_WORD = 12
    W_USER_DATA = 21
    W_UNION = 22
    W_UNION_FEN = 23
    W_AMOUNT = 4
    W_TIME = 5
    W_LIMIT = 6
    W_RESULT_AMOUNT = 13
    W_BALANCE = 14
    W_JSEQ = 15
    W_DEBIT = 16
    W_CREDIT = 17
    W_SUBSIDY = 18
    W_DPREV = 19
    W_CPREV = 20
    RECORD_BYTES_MAX = 4 + 27 * 10

cdef enum:
    # Widest record a word table (pack_words) holds, in 64-bit words.
    TABLE_WORDS_MAX = 64
    # pack_words encodes this many records between checks of its buffer's room.
    TABLE_CHUNK_RECORDS = 4096
