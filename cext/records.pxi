# Record layouts and codes of the core. Field order and widths match the numpy dtypes
# in cardledger/schema.py byte for byte (checked by tests/test_schema.py); codes match
# the enums there.

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

cdef struct Account:
    uint64_t id
    uint16_t kind
    uint16_t flags
    uint16_t category
    uint16_t reserved
    int64_t cap_fen
    int64_t cash_fen
    int64_t subsidy_fen
    int64_t debits_posted
    int64_t credits_posted
    int64_t debits_pending
    int64_t credits_pending
    uint64_t last_journal_seq

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

cdef enum:
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
    K_MAX = 13

cdef enum:
    A_CARD = 1
    A_CLEARING = 2
    A_PROGRAM = 3
    A_OPERATOR = 4
    A_MERCHANT = 5
    A_SUBSIDY = 6
    A_MAX = 6

cdef enum:
    F_LINKED = 1
    F_PENDING = 2
    F_SUBSIDY_PURSE = 4
    F_CASH_FIRST = 8

cdef enum:
    AF_FROZEN = 1
    AF_CLOSED = 2
    AF_CASH_FIRST = 4

cdef enum:
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
    R_MAX = 31

# How a debit draws a card's purses.
cdef enum:
    DRAW_ORDER = 0
    DRAW_CASH = 1
    DRAW_SUBSIDY = 2

cdef int64_t AMOUNT_MAX_FEN = 1000000000000000
cdef int64_t INT64_MAX_ = 0x7FFFFFFFFFFFFFFF
cdef int64_t INT64_MIN_ = -0x7FFFFFFFFFFFFFFF - 1

# Allowed op flags per kind (index = kind); mirrors schema.ALLOWED_FLAGS.
cdef uint16_t ALLOWED_FLAGS[14]
ALLOWED_FLAGS[:] = [0, F_LINKED | F_CASH_FIRST, F_LINKED, F_LINKED, F_LINKED,
                    F_LINKED | F_SUBSIDY_PURSE, F_LINKED | F_PENDING | F_SUBSIDY_PURSE,
                    F_LINKED, F_LINKED, F_LINKED, F_LINKED, F_LINKED, F_LINKED, 0]


# ---------------------------------------------------------------- fare state (taps)

DEF JOURNEY_LEGS_MAX_C = 4      # schema.JOURNEY_LEGS_MAX
DEF FARE_CAPS_MAX_C = 4         # schema.FARE_CAPS_MAX
DEF FARE_TIERS_MAX_C = 4        # schema.FARE_TIERS_MAX

# A card's fare state: JOURNEY_DTYPE byte for byte (legs are FareLeg = JOURNEY_LEG_DTYPE).
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
