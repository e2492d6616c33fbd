"""The ledger's vocabulary: record layouts (numpy dtypes), enums and named limits.

Everything that both engines (the Cython core and the pure-Python reference), the
storage layer and the documentation must agree on lives here, once. The Cython core
declares C structs with the same field order; `tests/engine/test_schema.py` checks that the
two layouts match byte for byte.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from .errors import SchemaError

# ---------------------------------------------------------------------------
# Enums
# ---------------------------------------------------------------------------


class OpKind(enum.IntEnum):
    """What an op record asks the ledger to do (field `kind` of OP_DTYPE)."""

    OPEN = 1
    TOPUP = 2
    AID = 3
    SPEND = 4
    WITHDRAW = 5
    TRANSFER = 6
    POST = 7
    VOID = 8
    FREEZE = 9
    UNFREEZE = 10
    REPLACE = 11
    CLOSE = 12
    TAP = 13
    REVERSE = 14  # an operator returns a tap's charge (the tap named by ref_source, ref_seq)
    ACTIVATE = 15  # an inactive card (OPEN with OpFlags.INACTIVE) is handed over: debits and taps allowed
    SET_CATEGORY = 16  # a card's rider category changes from the op's time_us on
    CLOSE_DAY = 17  # the settlement of a service day, closed in the journal (Ledger.close_day)
    PURCHASE = 18  # a card pays a MERCHANT a gross; the offer in force discounts it (docs/purchases.md)
    REFUND = 19  # a part of a PURCHASE's gross returned (the purchase named by ref_source, ref_seq)
    SET_POLICIES = 20  # a set of source policies installed (Ledger.install_policies; docs/policies.md)


class TapType(enum.IntEnum):
    """What a TAP op records (field `tap`): see docs/fares.md."""

    BOARD = 1  # boarding a pay-as-you-board vehicle (bus, ferry, coach, taxi)
    ENTRY = 2  # entering a gated network (metro): holds the maximum fare
    EXIT = 3  # leaving it: charges the fare, releases the rest of the hold
    SWEEP = 4  # charge the card's open entry if it has timed out (no route/stop)


class AccountKind(enum.IntEnum):
    """The role of an account (field `account_kind` of an OPEN op)."""

    CARD = 1
    CLEARING = 2
    PROGRAM = 3
    OPERATOR = 4
    MERCHANT = 5
    SUBSIDY = 6


class OpFlags(enum.IntFlag):
    """Bits of the `flags` field of an op.

    LINKED: this op and the next one form a chain that succeeds or fails as a whole.
    PENDING: a TRANSFER that only places a hold (two-phase); resolved by POST or VOID.
    SUBSIDY_PURSE: WITHDRAW draws the card's subsidy purse (default: the cash purse);
        a TRANSFER to a card credits its subsidy purse (default: the cash purse).
    CASH_FIRST: on OPEN of a card, debits draw the cash purse before the subsidy purse
        (default: subsidy purse first).
    INACTIVE: on OPEN of a card, issue it inactive: it takes credits (aid may arrive
        before the card is handed over) and refuses every debit and tap with
        ACCOUNT_INACTIVE until an ACTIVATE.
    """

    NONE = 0
    LINKED = 1
    PENDING = 2
    SUBSIDY_PURSE = 4
    CASH_FIRST = 8
    INACTIVE = 16


class AccountFlags(enum.IntFlag):
    """Bits of the `flags` field of an account record."""

    NONE = 0
    FROZEN = 1
    CLOSED = 2
    CASH_FIRST = 4
    INACTIVE = 8  # issued, not handed over yet: credits only (OpFlags.INACTIVE, ACTIVATE)


class Result(enum.IntEnum):
    """Per-op result codes: operating errors inside a batch are data, not exceptions."""

    OK = 0
    EXISTS = 1
    EXISTS_WITH_DIFFERENT_FIELDS = 2
    ID_ALREADY_FAILED = 3
    INVALID_ID = 4
    INVALID_KIND = 5
    INVALID_FLAGS = 6
    INVALID_AMOUNT = 7
    INVALID_ACCOUNT_ID = 8
    INVALID_ACCOUNT_KIND = 9
    ACCOUNT_NOT_FOUND = 10
    COUNTERPARTY_NOT_FOUND = 11
    ACCOUNT_EXISTS = 12
    ACCOUNTS_MUST_BE_DIFFERENT = 13
    WRONG_ACCOUNT_KIND = 14
    WRONG_COUNTERPARTY_KIND = 15
    ACCOUNT_CLOSED = 16
    ACCOUNT_FROZEN = 17
    INSUFFICIENT_FUNDS = 18
    EXCEEDS_CAP = 19
    OVERFLOW = 20
    PENDING_NOT_FOUND = 21
    EXCEEDS_PENDING = 22
    LINKED_FAILED = 23
    LINKED_CHAIN_OPEN = 24
    INVALID_TAP = 25  # tap type unknown, or not the kind this network takes
    NO_FARE_SYSTEM = 26  # no fare system is in force at the tap's time_us
    UNKNOWN_ROUTE = 27
    UNKNOWN_STOP = 28
    FARE_NOT_FOUND = 29  # no fare leg rule prices this journey
    OPERATOR_NOT_FOUND = 30  # the route's operator account is missing or not OPERATOR
    TAP_TIME_IN_FUTURE = 31  # time_us is later than the ledger's clock allows (a validator's clock is wrong)
    # A new op's record is strict (OP_FIELDS_USED): time_us > 0, and every field its
    # kind does not use is zero; one code per field, checked in this order.
    TIME_MUST_BE_POSITIVE = 32
    ACCOUNT_ID_MUST_BE_ZERO = 33  # POST / VOID name their hold by ref_source, ref_seq
    COUNTERPARTY_MUST_BE_ZERO = 34
    LIMIT_MUST_BE_ZERO = 35
    REF_MUST_BE_ZERO = 36  # ref_source or ref_seq
    ACCOUNT_KIND_MUST_BE_ZERO = 37
    CATEGORY_MUST_BE_ZERO = 38  # also an OPEN of an account that is not a CARD
    ROUTE_MUST_BE_ZERO = 39
    STOP_MUST_BE_ZERO = 40
    TAP_MUST_BE_ZERO = 41
    RESERVED_MUST_BE_ZERO = 42  # pad16 or pad32
    ACCOUNT_INACTIVE = 43  # a debit or tap of a card issued inactive and not yet ACTIVATEd
    CATEGORY_CHANGED_LATER = 44  # SET_CATEGORY at or before the time of the card's last change
    INVALID_DAY_CLOSE = 45  # CLOSE_DAY: not from CLOSE_DAY_SOURCE, an empty day, a position past the journal
    EXCEEDS_REFUNDABLE = 46  # REFUND: more than the purchase's gross not refunded yet
    PURCHASE_NOT_FOUND = 47  # REFUND: no successful PURCHASE decided with that id
    INVALID_REVERSE = 48  # a REVERSE that names no tap id
    TAP_NOT_FOUND = 49  # REVERSE: no tap decided with that id (in an earlier batch)
    TAP_NOT_REVERSIBLE = 50  # REVERSE: the id is not a successful TAP of this card, or an entry still open
    TAP_ALREADY_REVERSED = 51  # REVERSE: the tap was reversed before
    SOURCE_NOT_ALLOWED = 52  # no source policy in force allows this op from its source (docs/policies.md)
    # 53-56 are reserved (issue 18)
    POLICY_SET_UNKNOWN = 57  # SET_POLICIES: no policy set stored for this record (only install_policies writes one)


# ---------------------------------------------------------------------------
# Limits (TigerBeetle style: every limit is a named constant)
# ---------------------------------------------------------------------------

#: A registered prepaid card (PBoC 2012 No. 12) may hold at most 5,000 yuan.
DEFAULT_CASH_CAP_FEN = 500_000
#: Largest amount one op may carry: 10 trillion yuan. Keeps every total far from
#: int64 overflow for any realistic history and rejects garbage early.
AMOUNT_MAX_FEN = 1_000_000_000_000_000
#: Largest cash-purse cap an OPEN may ask for.
CAP_MAX_FEN = AMOUNT_MAX_FEN
#: Largest batch `Ledger.apply` accepts (an aid disbursement of 100,000 lines fits).
BATCH_OPS_MAX = 1 << 20
#: Decided ops kept in memory between checkpoints; a checkpoint is taken once this
#: many ops have been decided since the last one. It bounds the journal tail that
#: opening replays and the memory of the decisions window (about 40 bytes an op in
#: the core), and sets how often the account snapshot (80 bytes a card) is written.
CHECKPOINT_OPS_DEFAULT = 1 << 20
INT64_MAX = (1 << 63) - 1
#: Legs a card's current journey keeps for transfer pricing; a tap beyond them
#: starts a new journey.
JOURNEY_LEGS_MAX = 4
#: Latest time_us a TAP may carry (about the year 6536): keeps every calendar
#: computation of caps and tiers in range.
TAP_TIME_US_MAX = 1 << 57
#: An engine's tap horizon when no TAP is refused for its time (int64's largest value).
TAP_HORIZON_NONE = INT64_MAX
#: The source of the journal records the ledger writes on its own: the settlement of a
#: card's overdue metro entry at the card's next tap (a SWEEP record, seqs 1, 2, …).
#: An op may not use it (INVALID_ID, like source 0).
SETTLE_SOURCE = (1 << 64) - 1
#: The source of CLOSE_DAY ops (`Ledger.close_day`); a day's seq is its start in whole
#: seconds since the epoch, so a day is closed once.
CLOSE_DAY_SOURCE = (1 << 64) - 2
#: The source of SET_POLICIES ops (`Ledger.install_policies`); an install's seq is its
#: own journal_seq. Neither it nor CLOSE_DAY_SOURCE needs a policy for its own kind.
POLICY_SOURCE = (1 << 64) - 3
#: Most source policies one installed set may hold.
POLICIES_MAX = 1 << 20
#: Most account ids one policy may list (as `accounts` or as `counterparties`).
POLICY_ACCOUNTS_MAX = 1 << 20
#: Caps and spend tiers one fare system may configure (per-card counters are
#: fixed-size slots).
FARE_CAPS_MAX = 4
FARE_TIERS_MAX = 4

assert AMOUNT_MAX_FEN < INT64_MAX // 1024
assert DEFAULT_CASH_CAP_FEN <= CAP_MAX_FEN

# ---------------------------------------------------------------------------
# Record layouts
# ---------------------------------------------------------------------------

#: One operation. Unused fields must be zero (OP_FIELDS_USED says which a kind uses;
#: a new op with another one set is refused) and time_us positive.
OP_DTYPE = np.dtype(
    [
        ("source", "<u8"),  # who issued the op: terminal, POS, bank channel, office
        ("seq", "<u8"),  # increasing per source; (source, seq) is the op id
        ("account_id", "<u8"),
        ("counterparty_id", "<u8"),
        ("amount_fen", "<i8"),
        ("time_us", "<i8"),  # event time, µs since the Unix epoch, UTC
        ("limit_fen", "<i8"),  # OPEN of a card: cash-purse cap, 0 = ledger default
        ("ref_source", "<u8"),  # POST / VOID: the pending TRANSFER's id
        ("ref_seq", "<u8"),
        ("kind", "<u2"),
        ("flags", "<u2"),
        ("account_kind", "<u2"),  # OPEN: an AccountKind
        ("category", "<u2"),  # OPEN of a card: rider category (0 = adult)
        ("route", "<u4"),  # TAP: route index in the fare system (FareSystem.route_index)
        ("stop", "<u4"),  # TAP: stop index (FareSystem.stop_index)
        ("tap", "<u2"),  # TAP: a TapType
        ("pad16", "<u2"),  # must be zero
        ("pad32", "<u4"),  # must be zero
        # The caller's own reference, any op: the bank's transaction number, a POS
        # receipt, an aid line, a member number on OPEN. Journaled, part of the id's
        # same-fields comparison, returned by every query; the ledger never reads it.
        ("user_data", "<u8"),
    ]
)

#: One result per op, in the order of the ops.
RESULT_DTYPE = np.dtype(
    [
        ("code", "<u4"),
        ("discounts", "<u4"),  # TAP: FareDiscount bits (why the fare is below the plain fare)
        ("amount_fen", "<i8"),  # money the op moved (0 when it failed)
        ("balance_fen", "<i8"),  # account_id's available balance after the op
        ("journal_seq", "<u8"),  # where the op's decision is journaled (0: nowhere)
    ]
)

#: One journal record: the op, its result, and what it did to whom. Every op whose
#: id is decided (succeeded or failed) gets one; replays (EXISTS…) do not.
JOURNAL_DTYPE = np.dtype(
    OP_DTYPE.descr
    + [
        ("code", "<u4"),
        ("discounts", "<u4"),
        ("result_amount_fen", "<i8"),
        ("balance_fen", "<i8"),
        ("journal_seq", "<u8"),
        # The accounts the op moved money out of / into (or acted on: OPEN,
        # FREEZE… name their account as debit). 0 when the op failed.
        ("debit_id", "<u8"),
        ("credit_id", "<u8"),
        # Part of result_amount_fen drawn from / credited to a card's subsidy purse.
        ("subsidy_fen", "<i8"),
        # Previous journal record of the same account (0: none): statements walk
        # these back-pointers instead of maintaining a per-op index.
        ("debit_prev_seq", "<u8"),
        ("credit_prev_seq", "<u8"),
        # A third account the op moved money on (0: none), and the fen moved on it: a
        # PURCHASE's union account (the offer's `union_account`), debited its share U
        # (the merchant, credit_id, is credited result_amount_fen + U); a REFUND's,
        # credited this part's share u (the merchant, debit_id, is debited
        # result_amount_fen + u). Appended after the first records were written:
        # records without them decode with both 0 (docs/storage.md).
        ("union_id", "<u8"),
        ("union_fen", "<i8"),
        # What a PURCHASE or REFUND did to its offer (appended later still: older
        # records decode them as 0). offer_fen: a PURCHASE's discount D; a REFUND's
        # floor share of it given back to the offer's budget and the card's month
        # counter. offer_day: the purchase's local day plus one when its card's counters
        # counted it (0: they did not); a REFUND carries its purchase's.
        # refundable_fen: a REFUND: the purchase's gross left to refund after it. A
        # REFUND's record so says all it did, and replay reads nothing else.
        ("offer_fen", "<i8"),
        ("offer_day", "<i8"),
        ("refundable_fen", "<i8"),
    ]
)

#: An account's state, as checkpointed.
ACCOUNT_DTYPE = np.dtype(
    [
        ("id", "<u8"),
        ("kind", "<u2"),
        ("flags", "<u2"),
        ("category", "<u2"),  # a card's rider category since category_since_us
        ("category_before", "<u2"),  # ...and before it (SET_CATEGORY: late taps keep it)
        ("cap_fen", "<i8"),  # cash-purse cap (cards only)
        ("cash_fen", "<i8"),  # available balance; for a card its cash purse
        ("subsidy_fen", "<i8"),  # a card's subsidy purse (0 for other kinds)
        ("debits_posted", "<i8"),
        ("credits_posted", "<i8"),
        ("debits_pending", "<i8"),
        ("credits_pending", "<i8"),
        ("last_journal_seq", "<u8"),  # head of this account's statement chain
        # Added after format 4's first ledgers: appended, so their checkpoint files
        # (words packed behind a bitmap) read with these at zero.
        ("member_ref", "<u8"),  # a card: its OPEN's user_data, carried over by REPLACE (0: none)
        ("category_since_us", "<i8"),  # a card: when `category` took effect (0: since it opened)
    ]
)

#: One leg of a card's journey (same layout as fares.LEG_DTYPE).
JOURNEY_LEG_DTYPE = np.dtype(
    [
        ("route", "<i4"),
        ("from_stop", "<i4"),
        ("to_stop", "<i4"),
        ("reserved", "<i4"),
        ("departure_us", "<i8"),
        ("arrival_us", "<i8"),
    ]
)

#: A card's fare state: the journey being priced, an open metro entry, and the
#: counters of caps and spend tiers. Checkpointed beside the accounts.
JOURNEY_DTYPE = np.dtype(
    [
        ("account_id", "<u8"),
        ("version", "<i4"),  # fare system version the journey is priced by (-1: none)
        ("n_legs", "<i4"),
        ("charged_fen", "<i8"),  # what the journey's quotes have charged so far
        ("last_departure_us", "<i8"),
        ("last_arrival_us", "<i8"),
        ("legs", JOURNEY_LEG_DTYPE, (JOURNEY_LEGS_MAX,)),
        ("entry_version", "<i4"),  # -1: no open entry
        ("entry_route", "<i4"),
        ("entry_stop", "<i4"),
        ("counter_version", "<i4"),  # version the counters belong to (-1: none)
        ("entry_time_us", "<i8"),
        ("entry_source", "<u8"),  # the ENTRY op's id = its hold's id
        ("entry_seq", "<u8"),
        ("cap_period", "<i8", (FARE_CAPS_MAX,)),
        ("cap_spent_fen", "<i8", (FARE_CAPS_MAX,)),
        ("tier_period", "<i8", (FARE_TIERS_MAX,)),
        ("tier_spent_fen", "<i8", (FARE_TIERS_MAX,)),
    ]
)

#: Per-source idempotency state.
SOURCE_DTYPE = np.dtype(
    [
        ("source", "<u8"),
        ("last_seq", "<u8"),  # highest seq decided so far
        ("checkpoint_seq", "<u8"),  # last_seq as of the last checkpoint
    ]
)

#: An outstanding two-phase hold.
PENDING_DTYPE = np.dtype(
    [
        ("source", "<u8"),  # id of the PENDING TRANSFER that placed it
        ("seq", "<u8"),
        ("debit_id", "<u8"),
        ("credit_id", "<u8"),
        ("amount_fen", "<i8"),
        ("subsidy_fen", "<i8"),  # part of amount_fen taken from the subsidy purse
        ("credit_subsidy", "<i8"),  # 1: credits the card's subsidy purse when posted
        ("journal_seq", "<u8"),
    ]
)

# -- the compiled fare tables' vocabulary, shared by `fares/` (which compiles them) and
#    the engines (which rate taps with them)

#: "No value" in an index column (an empty GTFS field, a leg without a group…).
NONE = -1
#: Price of a product row that the rider may not use (no eligible row).
NO_PRICE = -(1 << 62)
US_PER_S = 1_000_000
S_PER_DAY = 86_400
#: network_mode values
MODE_JOURNEY = 0  # priced by the feed's rules, one BOARD tap per leg
MODE_METERED = 1  # the terminal sends the fare (taxi)
MODE_GATED = 2  # ENTRY and EXIT taps; the maximum fare is held in between
#: cap_period values
PERIOD_DAY = 0
PERIOD_WEEK = 1  # Monday to Sunday
PERIOD_ROLLING_7D = 2  # seven service days from the first capped tap
PERIOD_MONTH = 3

#: What the ledger found about the tap a REVERSE op names (one row per op of a batch,
#: `Engine.apply(..., refs=)`): read from the journal before the batch runs.
REVERSE_REF_DTYPE = np.dtype(
    [
        ("account_id", "<u8"),  # the tap's card
        ("operator_id", "<u8"),  # the account it paid (its record's credit_id)
        ("amount_fen", "<i8"),  # what it charged
        ("subsidy_fen", "<i8"),  # the part drawn from the card's subsidy purse
        ("time_us", "<i8"),  # the tap's time
        ("entry_time_us", "<i8"),  # an EXIT's open entry: its time
        ("route", "<u4"),  # the tap's route index
        ("entry_route", "<u4"),  # an EXIT's open entry: its route index
        ("status", "<u2"),  # REF_* below
        ("tap", "<u2"),  # the tap's TapType
        ("entry_found", "<u2"),  # 1: the EXIT had an open entry (entry_* are set)
        ("pad16", "<u2"),
    ]
)
#: REVERSE_REF_DTYPE.status values
REF_NOT_FOUND = 0  # no decision with that id before the batch
REF_TAP = 1  # a successful TAP
REF_OTHER = 2  # a decision that is not a successful TAP

# -- offers (docs/purchases.md): the engines' state beside the accounts, checkpointed

#: Offers in force: "no offer" in an offer slot (a purchase no offer applied to).
NO_OFFER = -1
#: A purchase's `day` and `month` when its offer limits no card (or it got none): its
#: card's counters did not count it, so its refunds give nothing back to them.
NOT_COUNTED = -(1 << 62)
#: Spent budget of each offer, by its slot: offers are numbered by id across every
#: installed catalog version, in the order they first appear, so a later version with
#: the same offer id continues its budget.
OFFER_BUDGET_DTYPE = np.dtype(
    [
        ("slot", "<i8"),
        ("used_fen", "<i8"),  # discount given, net of refunds (what its budget has spent)
        ("union_fen", "<i8"),  # the union's share of it, net of refunds
        ("purchases", "<i8"),  # purchases that got it, less those refunded in full
    ]
)
#: A card's use of an offer: the local day and month of its last counted purchase, the
#: purchases counted that day and the discount counted that month.
CARD_OFFER_DTYPE = np.dtype(
    [
        ("account_id", "<u8"),
        ("slot", "<i8"),
        ("day", "<i8"),  # local day number (days since 1970-01-01 in the catalog's zone)
        ("day_count", "<i8"),
        ("month", "<i8"),  # local year * 12 + month - 1
        ("month_discount_fen", "<i8"),
    ]
)
#: A purchase refunded in part or in full: the gross left to refund. Only refunded
#: purchases are kept; a REFUND finds its purchase's record in the journal (the
#: engine's window of recent decisions, or the ledger's id index before the batch).
REFUNDED_DTYPE = np.dtype(
    [
        ("source", "<u8"),  # the purchase's id
        ("seq", "<u8"),
        ("refundable_fen", "<i8"),  # G - R: its gross not refunded yet
    ]
)

#: Decisions since the last checkpoint, handed to storage to index at checkpoint.
DECISION_DTYPE = np.dtype([("source", "<u8"), ("seq", "<u8"), ("journal_seq", "<u8")])

ACCOUNT_KINDS = frozenset(int(k) for k in AccountKind)
OP_KINDS = frozenset(int(k) for k in OpKind)

#: Which op flags each kind accepts; any other bit is INVALID_FLAGS.
ALLOWED_FLAGS = {
    OpKind.OPEN: OpFlags.LINKED | OpFlags.CASH_FIRST | OpFlags.INACTIVE,
    OpKind.TOPUP: OpFlags.LINKED,
    OpKind.AID: OpFlags.LINKED,
    OpKind.SPEND: OpFlags.LINKED,
    OpKind.WITHDRAW: OpFlags.LINKED | OpFlags.SUBSIDY_PURSE,
    OpKind.TRANSFER: OpFlags.LINKED | OpFlags.PENDING | OpFlags.SUBSIDY_PURSE,
    OpKind.POST: OpFlags.LINKED,
    OpKind.VOID: OpFlags.LINKED,
    OpKind.FREEZE: OpFlags.LINKED,
    OpKind.UNFREEZE: OpFlags.LINKED,
    OpKind.REPLACE: OpFlags.LINKED,
    OpKind.CLOSE: OpFlags.LINKED,
    # a tap moves money and journey state at once; it is never part of a chain
    OpKind.TAP: OpFlags.NONE,
    OpKind.REVERSE: OpFlags.NONE,  # nor is its reversal
    OpKind.ACTIVATE: OpFlags.LINKED,
    OpKind.SET_CATEGORY: OpFlags.LINKED,
    OpKind.CLOSE_DAY: OpFlags.NONE,
    # a purchase's counters and budget roll back with its chain
    OpKind.PURCHASE: OpFlags.LINKED,
    OpKind.REFUND: OpFlags.LINKED,
    OpKind.SET_POLICIES: OpFlags.NONE,
}

#: The fields every op kind reads: its id, its kind, its flags and its event time.
OP_FIELDS_COMMON = ("source", "seq", "kind", "flags", "time_us", "user_data")

#: The other fields each op kind reads (docs/semantics.md, "Fields each kind uses").
#: A new op must leave every field outside OP_FIELDS_COMMON and its kind's set at zero;
#: the engines refuse it otherwise, with the code UNUSED_FIELD_RESULTS gives the field
#: (an amount on a kind that takes none: INVALID_AMOUNT, as it always was). The core
#: mirrors this table as bitmasks (`FIELDS_USED` in cext/handlers.pxi).
OP_FIELDS_USED: dict[OpKind, frozenset[str]] = {
    # category is a card's rider category: an OPEN of another kind leaves it at zero
    OpKind.OPEN: frozenset({"account_id", "account_kind", "category", "limit_fen"}),
    OpKind.TOPUP: frozenset({"account_id", "counterparty_id", "amount_fen"}),
    OpKind.AID: frozenset({"account_id", "counterparty_id", "amount_fen"}),
    OpKind.SPEND: frozenset({"account_id", "counterparty_id", "amount_fen"}),
    OpKind.WITHDRAW: frozenset({"account_id", "counterparty_id", "amount_fen"}),
    OpKind.TRANSFER: frozenset({"account_id", "counterparty_id", "amount_fen"}),
    # a hold is named by its id; its accounts are the hold's own
    OpKind.POST: frozenset({"amount_fen", "ref_source", "ref_seq"}),
    OpKind.VOID: frozenset({"ref_source", "ref_seq"}),
    OpKind.FREEZE: frozenset({"account_id"}),
    OpKind.UNFREEZE: frozenset({"account_id"}),
    OpKind.REPLACE: frozenset({"account_id", "counterparty_id"}),
    OpKind.CLOSE: frozenset({"account_id", "counterparty_id"}),
    # a metered BOARD carries its fare in amount_fen; a SWEEP names no route or stop
    # (INVALID_TAP) and no amount (INVALID_AMOUNT): the tap rules check those
    OpKind.TAP: frozenset({"account_id", "amount_fen", "route", "stop", "tap"}),
    # the card, and the tap reversed by its id
    OpKind.REVERSE: frozenset({"account_id", "ref_source", "ref_seq"}),
    OpKind.ACTIVATE: frozenset({"account_id"}),
    OpKind.SET_CATEGORY: frozenset({"account_id", "category"}),
    # the day [time_us, limit_fen), the journal position it covers (ref_seq), its posted
    # total (amount_fen) and its settlement's digest (user_data)
    OpKind.CLOSE_DAY: frozenset({"amount_fen", "limit_fen", "ref_seq"}),
    # the card, the merchant and the gross
    OpKind.PURCHASE: frozenset({"account_id", "counterparty_id", "amount_fen"}),
    # the part of the gross refunded and the purchase's id: its accounts are the purchase's
    OpKind.REFUND: frozenset({"amount_fen", "ref_source", "ref_seq"}),
    # the set is stored beside the journal, keyed by the record's journal_seq; the
    # record carries its digest (user_data) and when it was installed (time_us)
    OpKind.SET_POLICIES: frozenset(),
}

#: Each field a kind may leave unused, with the code a new op gets for setting it, in
#: the order the engines check them (OP_DTYPE order). amount_fen is not here: the
#: engines check it earlier, with INVALID_AMOUNT, on every op (replays too).
UNUSED_FIELD_RESULTS: tuple[tuple[str, Result], ...] = (
    ("account_id", Result.ACCOUNT_ID_MUST_BE_ZERO),
    ("counterparty_id", Result.COUNTERPARTY_MUST_BE_ZERO),
    ("limit_fen", Result.LIMIT_MUST_BE_ZERO),
    ("ref_source", Result.REF_MUST_BE_ZERO),
    ("ref_seq", Result.REF_MUST_BE_ZERO),
    ("account_kind", Result.ACCOUNT_KIND_MUST_BE_ZERO),
    ("category", Result.CATEGORY_MUST_BE_ZERO),
    ("route", Result.ROUTE_MUST_BE_ZERO),
    ("stop", Result.STOP_MUST_BE_ZERO),
    ("tap", Result.TAP_MUST_BE_ZERO),
    ("pad16", Result.RESERVED_MUST_BE_ZERO),
    ("pad32", Result.RESERVED_MUST_BE_ZERO),
)

# Every field of an op is read by every kind, by some kinds, or by none (the pads).
assert set(OP_FIELDS_COMMON) | {f for f, _ in UNUSED_FIELD_RESULTS} | {"amount_fen"} == set(OP_DTYPE.names)
assert all(not (used & set(OP_FIELDS_COMMON)) for used in OP_FIELDS_USED.values())
assert set(OP_FIELDS_USED) == set(OpKind)


def new_ops(n: int) -> np.ndarray:
    """Return a zeroed batch of `n` op records (dtype OP_DTYPE), ready to fill in."""
    if n < 0:
        raise ValueError(f"new_ops: n must be >= 0, got {n}")
    return np.zeros(n, dtype=OP_DTYPE)


def check_batch(ops: Any) -> np.ndarray:
    """`ops`, once it is a batch the ledger takes: a 1-D C-contiguous array of OP_DTYPE of
    at most BATCH_OPS_MAX ops; SchemaError (saying what to do) otherwise."""
    if not isinstance(ops, np.ndarray):
        raise SchemaError(f"ops must be a numpy array of dtype cardledger.OP_DTYPE, got {type(ops).__name__}: build it with cardledger.new_ops(n)")
    if ops.dtype != OP_DTYPE:
        raise SchemaError(f"ops has dtype {ops.dtype}, expected cardledger.OP_DTYPE: build it with cardledger.new_ops(n)")
    if ops.ndim != 1:
        raise SchemaError(f"ops must be one-dimensional, got shape {ops.shape}")
    if not ops.flags.c_contiguous:
        raise SchemaError("ops must be C-contiguous (a slice with a step is not): pass np.ascontiguousarray(ops)")
    if len(ops) > BATCH_OPS_MAX:
        raise SchemaError(f"batch of {len(ops)} ops exceeds BATCH_OPS_MAX={BATCH_OPS_MAX}: split it")
    return ops
