"""The ops, one behaviour per test, read against docs/semantics.md.

Figures are worked out by hand in each test; the comments show the arithmetic.
The `world` fixture (conftest.py) gives: clearing 1 (balance -1,000,000 after funding
the program), merchant 2, program 3 (budget 1,000,000), operator 4, cards 10 and 11
(default cap 500,000, both purses empty). The `ops` builder issues ids (1, 1), (1, 2)…
with time_us = T0 + seq.
"""

from __future__ import annotations

import numpy as np
import pytest

import cardledger
from cardledger import AccountKind, OpFlags, OpKind, Result
from helpers import Ops, codes

T0 = 1_767_225_600_000_000  # the builder's time base (2026-01-01 UTC), µs
INT64_MAX = (1 << 63) - 1

CLEARING, MERCHANT, PROGRAM, OPERATOR, CARD, CARD2 = 1, 2, 3, 4, 10, 11
WORLD_CLEARING = -1_000_000  # clearing 1 after funding the program with 1,000,000
WORLD_PROGRAM = 1_000_000

LINKED = int(OpFlags.LINKED)
PENDING = int(OpFlags.PENDING)
SUBSIDY_PURSE = int(OpFlags.SUBSIDY_PURSE)
CASH_FIRST = int(OpFlags.CASH_FIRST)


# --------------------------------------------------------------------------- helpers


def one(led, b: Ops, kind, account_id=0, counterparty_id=0, amount_fen=0, **fields):
    """Apply a single op and return its result record."""
    r = led.apply(b.add(kind, account_id, counterparty_id, amount_fen, **fields).take())
    assert len(r) == 1
    return r[0]


def name(rec) -> str:
    return Result(int(rec["code"])).name


def ok(r):
    assert (r["code"] == Result.OK).all(), codes(r)
    return r


def purses(led, account_id) -> tuple[int, int]:
    """(cash purse, subsidy purse) of a card."""
    a = led.account(account_id)
    return a.cash_fen, a.subsidy_fen


def fund(led, b: Ops, card, cash=0, subsidy=0):
    """Top up `cash` from clearing 1 and give `subsidy` from program 3."""
    if cash:
        assert name(one(led, b, OpKind.TOPUP, card, CLEARING, cash)) == "OK"
    if subsidy:
        assert name(one(led, b, OpKind.AID, card, PROGRAM, subsidy)) == "OK"


def open_card(led, b: Ops, card_id, **fields):
    rec = one(led, b, OpKind.OPEN, card_id, account_kind=AccountKind.CARD, **fields)
    assert name(rec) == "OK", name(rec)


def state(led) -> bytes:
    """Every account's full state, for "nothing changed" comparisons."""
    return led.accounts().tobytes()


# --------------------------------------------------------------------------- OPEN


@pytest.mark.parametrize("kind", list(AccountKind))
def test_open_each_account_kind(led, ops, kind):
    rec = one(led, ops, OpKind.OPEN, 100, account_kind=kind)
    assert name(rec) == "OK"
    assert rec["amount_fen"] == 0 and rec["balance_fen"] == 0 and rec["journal_seq"] == 1
    a = led.account(100)
    assert a.kind == kind
    assert (a.balance_fen, a.cash_fen, a.subsidy_fen) == (0, 0, 0)
    assert (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending) == (0, 0, 0, 0)
    assert not a.frozen and not a.closed and not a.cash_first
    # only a card has a cash-purse cap; the default is 5,000 yuan = 500,000 fen
    assert a.cap_fen == (500_000 if kind == AccountKind.CARD else 0)


def test_open_card_default_cap_is_500000_fen(led, ops):
    open_card(led, ops, 10)
    assert led.account(10).cap_fen == 500_000 == cardledger.DEFAULT_CASH_CAP_FEN


def test_open_card_with_its_own_limit(world, ops):
    open_card(world, ops, 20, limit_fen=200_000)
    assert world.account(20).cap_fen == 200_000
    # the per-card cap is what TOPUP enforces: 200,000 fits, 1 more does not
    assert name(one(world, ops, OpKind.TOPUP, 20, CLEARING, 200_000)) == "OK"
    assert name(one(world, ops, OpKind.TOPUP, 20, CLEARING, 1)) == "EXCEEDS_CAP"


def test_open_id_taken_is_account_exists(world, ops):
    before = state(world)
    rec = one(world, ops, OpKind.OPEN, CARD, account_kind=AccountKind.MERCHANT)
    assert name(rec) == "ACCOUNT_EXISTS"
    assert world.account(CARD).kind == AccountKind.CARD
    assert state(world) == before


@pytest.mark.parametrize("bad_kind", [0, 7, 99])
def test_open_invalid_account_kind(led, ops, bad_kind):
    assert name(one(led, ops, OpKind.OPEN, 100, account_kind=bad_kind)) == "INVALID_ACCOUNT_KIND"
    with pytest.raises(cardledger.AccountNotFoundError):
        led.account(100)


def test_open_negative_limit_is_refused(led, ops):
    # docs/semantics.md leaves the code open; the engines answer INVALID_AMOUNT (a bad figure)
    rec = one(led, ops, OpKind.OPEN, 100, account_kind=AccountKind.CARD, limit_fen=-1)
    assert name(rec) == "INVALID_AMOUNT"
    with pytest.raises(cardledger.AccountNotFoundError):
        led.account(100)


def test_open_limit_on_non_card_is_refused(led, ops):
    rec = one(led, ops, OpKind.OPEN, 100, account_kind=AccountKind.MERCHANT, limit_fen=1_000)
    assert name(rec) == "INVALID_AMOUNT"
    with pytest.raises(cardledger.AccountNotFoundError):
        led.account(100)


def test_open_cash_first_only_on_cards(led, ops):
    open_card(led, ops, 100, flags=CASH_FIRST)
    assert led.account(100).cash_first
    rec = one(led, ops, OpKind.OPEN, 101, account_kind=AccountKind.MERCHANT, flags=CASH_FIRST)
    assert name(rec) == "INVALID_FLAGS"
    with pytest.raises(cardledger.AccountNotFoundError):
        led.account(101)


def test_open_keeps_the_rider_category(led, ops):
    open_card(led, ops, 100, category=3)
    assert led.account(100).category == 3


def test_open_with_an_amount_is_invalid_amount(led, ops):
    assert name(one(led, ops, OpKind.OPEN, 100, 0, 5, account_kind=AccountKind.CARD)) == "INVALID_AMOUNT"


def test_open_account_id_zero(led, ops):
    assert name(one(led, ops, OpKind.OPEN, 0, account_kind=AccountKind.CARD)) == "INVALID_ACCOUNT_ID"


# --------------------------------------------------------------------------- TOPUP


def test_topup_fills_the_cash_purse(world, ops):
    rec = one(world, ops, OpKind.TOPUP, CARD, CLEARING, 10_000)
    assert name(rec) == "OK"
    assert rec["amount_fen"] == 10_000 and rec["balance_fen"] == 10_000
    assert purses(world, CARD) == (10_000, 0)
    # the clearing account goes (further) negative: -1,000,000 - 10,000
    assert world.balance(CLEARING) == -1_010_000


def test_topup_exactly_to_the_cap_is_ok(world, ops):
    fund(world, ops, CARD, cash=300_000)
    rec = one(world, ops, OpKind.TOPUP, CARD, CLEARING, 200_000)  # 300,000 + 200,000 = 500,000 = cap
    assert name(rec) == "OK" and rec["balance_fen"] == 500_000


def test_topup_one_fen_over_the_cap(world, ops):
    fund(world, ops, CARD, cash=500_000)  # at the cap
    before = state(world)
    rec = one(world, ops, OpKind.TOPUP, CARD, CLEARING, 1)  # 500,000 + 1 > 500,000
    assert name(rec) == "EXCEEDS_CAP"
    assert rec["amount_fen"] == 0 and rec["balance_fen"] == 500_000
    assert state(world) == before


def test_topup_single_op_over_the_cap(world, ops):
    assert name(one(world, ops, OpKind.TOPUP, CARD, CLEARING, 500_001)) == "EXCEEDS_CAP"
    assert purses(world, CARD) == (0, 0)


def test_topup_cap_counts_only_the_cash_purse(world, ops):
    fund(world, ops, CARD, cash=400_000, subsidy=300_000)
    # cash 400,000 + 100,000 = 500,000 <= cap; the subsidy purse does not count
    assert name(one(world, ops, OpKind.TOPUP, CARD, CLEARING, 100_000)) == "OK"
    assert purses(world, CARD) == (500_000, 300_000)


def test_topup_clearing_can_go_negative_from_zero(world, ops):
    assert name(one(world, ops, OpKind.OPEN, 5, account_kind=AccountKind.CLEARING)) == "OK"
    assert name(one(world, ops, OpKind.TOPUP, CARD, 5, 7_500)) == "OK"
    assert world.balance(5) == -7_500  # 0 - 7,500


@pytest.mark.parametrize(
    "account, counterparty, expected",
    [
        (MERCHANT, CLEARING, "WRONG_ACCOUNT_KIND"),  # only a card is topped up
        (CARD, PROGRAM, "WRONG_COUNTERPARTY_KIND"),  # paid from clearing only
        (CARD, CARD2, "WRONG_COUNTERPARTY_KIND"),
        (CARD, MERCHANT, "WRONG_COUNTERPARTY_KIND"),
        (999, CLEARING, "ACCOUNT_NOT_FOUND"),
        (CARD, 999, "COUNTERPARTY_NOT_FOUND"),
        (CARD, CARD, "ACCOUNTS_MUST_BE_DIFFERENT"),
        (0, CLEARING, "INVALID_ACCOUNT_ID"),
        (CARD, 0, "INVALID_ACCOUNT_ID"),
    ],
)
def test_topup_wrong_accounts(world, ops, account, counterparty, expected):
    before = state(world)
    rec = one(world, ops, OpKind.TOPUP, account, counterparty, 1_000)
    assert name(rec) == expected
    assert rec["amount_fen"] == 0
    assert state(world) == before


# --------------------------------------------------------------------------- AID


def test_aid_fills_the_subsidy_purse(world, ops):
    rec = one(world, ops, OpKind.AID, CARD, PROGRAM, 5_000)
    assert name(rec) == "OK" and rec["amount_fen"] == 5_000 and rec["balance_fen"] == 5_000
    assert purses(world, CARD) == (0, 5_000)
    assert world.balance(PROGRAM) == 995_000  # 1,000,000 - 5,000


def test_aid_is_not_capped(world, ops):
    fund(world, ops, CARD, cash=500_000)  # cash purse at its cap
    rec = one(world, ops, OpKind.AID, CARD, PROGRAM, 500_000)  # 5,000 yuan of aid
    assert name(rec) == "OK"
    assert purses(world, CARD) == (500_000, 500_000)
    assert world.balance(CARD) == 1_000_000  # 500,000 + 500,000, above the cash cap


def test_aid_program_cannot_overdraw(world, ops):
    before = state(world)
    rec = one(world, ops, OpKind.AID, CARD, PROGRAM, 1_000_001)  # budget is 1,000,000
    assert name(rec) == "INSUFFICIENT_FUNDS" and rec["amount_fen"] == 0
    assert state(world) == before
    # the whole budget, to the fen, is fine: 1,000,000 - 1,000,000 = 0
    assert name(one(world, ops, OpKind.AID, CARD, PROGRAM, 1_000_000)) == "OK"
    assert world.balance(PROGRAM) == 0
    assert name(one(world, ops, OpKind.AID, CARD2, PROGRAM, 1)) == "INSUFFICIENT_FUNDS"


def test_aid_only_from_a_program(world, ops):
    assert name(one(world, ops, OpKind.AID, CARD, CLEARING, 100)) == "WRONG_COUNTERPARTY_KIND"
    assert name(one(world, ops, OpKind.AID, MERCHANT, PROGRAM, 100)) == "WRONG_ACCOUNT_KIND"


# --------------------------------------------------------------------------- SPEND


def test_spend_draws_subsidy_first_then_cash(world, ops):
    fund(world, ops, CARD, cash=10_000, subsidy=3_000)
    rec = one(world, ops, OpKind.SPEND, CARD, MERCHANT, 4_500)
    assert name(rec) == "OK" and rec["amount_fen"] == 4_500
    # subsidy 3,000 - 3,000 = 0; cash 10,000 - (4,500 - 3,000) = 8,500
    assert purses(world, CARD) == (8_500, 0)
    assert rec["balance_fen"] == 8_500
    assert world.balance(MERCHANT) == 4_500


def test_spend_within_the_subsidy_purse_leaves_cash_alone(world, ops):
    fund(world, ops, CARD, cash=10_000, subsidy=3_000)
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 2_000)) == "OK"
    assert purses(world, CARD) == (10_000, 1_000)  # subsidy 3,000 - 2,000


def test_spend_cash_first_card(world, ops):
    open_card(world, ops, 12, flags=CASH_FIRST)
    fund(world, ops, 12, cash=10_000, subsidy=3_000)
    assert name(one(world, ops, OpKind.SPEND, 12, MERCHANT, 11_000)) == "OK"
    # cash 10,000 - 10,000 = 0; subsidy 3,000 - (11,000 - 10,000) = 2,000
    assert purses(world, 12) == (0, 2_000)


def test_spend_insufficient_funds(world, ops):
    fund(world, ops, CARD, cash=1_000, subsidy=500)
    before = state(world)
    rec = one(world, ops, OpKind.SPEND, CARD, MERCHANT, 1_501)  # 1,000 + 500 = 1,500 < 1,501
    assert name(rec) == "INSUFFICIENT_FUNDS"
    assert rec["amount_fen"] == 0 and rec["balance_fen"] == 1_500
    assert state(world) == before
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 1_500)) == "OK"
    assert purses(world, CARD) == (0, 0)


def test_spend_to_a_card_is_refused(world, ops):
    fund(world, ops, CARD, cash=1_000)
    assert name(one(world, ops, OpKind.SPEND, CARD, CARD2, 100)) == "WRONG_COUNTERPARTY_KIND"
    assert purses(world, CARD) == (1_000, 0)


@pytest.mark.parametrize("counterparty", [CLEARING, PROGRAM, OPERATOR])
def test_spend_to_any_non_card(world, ops, counterparty):
    fund(world, ops, CARD, cash=1_000)
    before = world.balance(counterparty)
    assert name(one(world, ops, OpKind.SPEND, CARD, counterparty, 100)) == "OK"
    assert world.balance(counterparty) == before + 100


def test_spend_only_from_a_card(world, ops):
    assert name(one(world, ops, OpKind.SPEND, PROGRAM, MERCHANT, 100)) == "WRONG_ACCOUNT_KIND"


# --------------------------------------------------------------------------- WITHDRAW


def test_withdraw_draws_the_cash_purse_only(world, ops):
    fund(world, ops, CARD, cash=3_000, subsidy=10_000)
    # 13,000 in total, but only the 3,000 in the cash purse can be redeemed
    rec = one(world, ops, OpKind.WITHDRAW, CARD, CLEARING, 3_001)
    assert name(rec) == "INSUFFICIENT_FUNDS"
    rec = one(world, ops, OpKind.WITHDRAW, CARD, CLEARING, 3_000)
    assert name(rec) == "OK" and rec["balance_fen"] == 10_000
    assert purses(world, CARD) == (0, 10_000)
    # clearing was -1,000,000 - 3,000 (top-up); the withdrawal brings it back to -1,000,000
    assert world.balance(CLEARING) == -1_000_000


def test_withdraw_subsidy_purse_flag(world, ops):
    fund(world, ops, CARD, cash=3_000, subsidy=10_000)
    rec = one(world, ops, OpKind.WITHDRAW, CARD, CLEARING, 4_000, flags=SUBSIDY_PURSE)
    assert name(rec) == "OK"
    assert purses(world, CARD) == (3_000, 6_000)  # subsidy 10,000 - 4,000
    rec = one(world, ops, OpKind.WITHDRAW, CARD, CLEARING, 6_001, flags=SUBSIDY_PURSE)
    assert name(rec) == "INSUFFICIENT_FUNDS"  # cash does not top the subsidy purse up


def test_withdraw_subsidy_purse_on_non_card_is_invalid_flags(world, ops):
    fund(world, ops, CARD, cash=5_000)
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 5_000)) == "OK"
    rec = one(world, ops, OpKind.WITHDRAW, MERCHANT, CLEARING, 1_000, flags=SUBSIDY_PURSE)
    assert name(rec) == "INVALID_FLAGS"
    assert world.balance(MERCHANT) == 5_000


def test_withdraw_merchant_settlement(world, ops):
    fund(world, ops, CARD, cash=5_000)
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 5_000)) == "OK"
    assert name(one(world, ops, OpKind.WITHDRAW, MERCHANT, CLEARING, 4_000)) == "OK"
    assert world.balance(MERCHANT) == 1_000  # 5,000 - 4,000


def test_withdraw_counterparty_must_be_clearing(world, ops):
    fund(world, ops, CARD, cash=5_000)
    assert name(one(world, ops, OpKind.WITHDRAW, CARD, MERCHANT, 100)) == "WRONG_COUNTERPARTY_KIND"
    assert name(one(world, ops, OpKind.WITHDRAW, CARD, PROGRAM, 100)) == "WRONG_COUNTERPARTY_KIND"
    assert purses(world, CARD) == (5_000, 0)


def test_withdraw_from_clearing_is_wrong_account_kind(world, ops):
    assert name(one(world, ops, OpKind.OPEN, 5, account_kind=AccountKind.CLEARING)) == "OK"
    assert name(one(world, ops, OpKind.WITHDRAW, 5, CLEARING, 100)) == "WRONG_ACCOUNT_KIND"


# --------------------------------------------------------------------------- TRANSFER


def test_transfer_between_any_kinds(world, ops):
    assert name(one(world, ops, OpKind.OPEN, 6, account_kind=AccountKind.SUBSIDY)) == "OK"
    # program -> subsidy account -> operator -> merchant -> clearing
    assert name(one(world, ops, OpKind.TRANSFER, PROGRAM, 6, 70_000)) == "OK"
    assert name(one(world, ops, OpKind.TRANSFER, 6, OPERATOR, 30_000)) == "OK"
    assert name(one(world, ops, OpKind.TRANSFER, OPERATOR, MERCHANT, 10_000)) == "OK"
    assert name(one(world, ops, OpKind.TRANSFER, MERCHANT, CLEARING, 4_000)) == "OK"
    assert world.balance(PROGRAM) == 930_000  # 1,000,000 - 70,000
    assert world.balance(6) == 40_000  # 70,000 - 30,000
    assert world.balance(OPERATOR) == 20_000  # 30,000 - 10,000
    assert world.balance(MERCHANT) == 6_000  # 10,000 - 4,000
    assert world.balance(CLEARING) == -996_000  # -1,000,000 + 4,000


def test_transfer_non_clearing_cannot_go_negative(world, ops):
    rec = one(world, ops, OpKind.TRANSFER, MERCHANT, OPERATOR, 1)
    assert name(rec) == "INSUFFICIENT_FUNDS"
    assert world.balance(MERCHANT) == 0


def test_transfer_to_a_card_lands_in_cash_purse_under_the_cap(world, ops):
    assert name(one(world, ops, OpKind.TRANSFER, PROGRAM, CARD, 400_000)) == "OK"
    assert purses(world, CARD) == (400_000, 0)
    # 400,000 + 100,001 > 500,000
    assert name(one(world, ops, OpKind.TRANSFER, PROGRAM, CARD, 100_001)) == "EXCEEDS_CAP"


def test_transfer_subsidy_purse_flag_credits_the_subsidy_purse_uncapped(world, ops):
    rec = one(world, ops, OpKind.TRANSFER, PROGRAM, CARD, 600_000, flags=SUBSIDY_PURSE)
    assert name(rec) == "OK"
    assert purses(world, CARD) == (0, 600_000)  # 600,000 > cap, but not the cash purse


def test_transfer_from_a_card_draws_subsidy_first(world, ops):
    fund(world, ops, CARD, cash=2_000, subsidy=1_500)
    assert name(one(world, ops, OpKind.TRANSFER, CARD, CARD2, 2_500)) == "OK"
    # card 10: subsidy 1,500 - 1,500 = 0, cash 2,000 - 1,000 = 1,000; card 11 cash +2,500
    assert purses(world, CARD) == (1_000, 0)
    assert purses(world, CARD2) == (2_500, 0)


# --------------------------------------------------------------------------- holds


def _hold(world, ops, amount=4_000, debit=CARD, credit=MERCHANT, **fields):
    """Place a PENDING TRANSFER; return (its id, its result)."""
    b = ops.add(OpKind.TRANSFER, debit, credit, amount, flags=PENDING, **fields)
    hold_id = (b.rows[-1]["source"], b.rows[-1]["seq"])
    rec = world.apply(b.take())[0]
    return hold_id, rec


def test_pending_hold_reduces_available_balance(world, ops):
    fund(world, ops, CARD, cash=5_000, subsidy=3_000)
    _, rec = _hold(world, ops, 4_000)
    assert name(rec) == "OK" and rec["amount_fen"] == 4_000
    # 8,000 - 4,000 held = 4,000 available; the hold drew subsidy 3,000 then cash 1,000
    assert rec["balance_fen"] == 4_000
    card = world.account(CARD)
    assert (card.cash_fen, card.subsidy_fen) == (4_000, 0)
    assert card.debits_pending == 4_000 and card.debits_posted == 0
    m = world.account(MERCHANT)
    assert m.credits_pending == 4_000 and m.credits_posted == 0
    assert m.balance_fen == 0  # pending credits are not available
    # the held money cannot be spent twice: 4,000 available, 4,001 asked
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 4_001)) == "INSUFFICIENT_FUNDS"


def test_post_zero_posts_the_full_hold(world, ops):
    fund(world, ops, CARD, cash=5_000, subsidy=3_000)
    (src, seq), _ = _hold(world, ops, 4_000)
    rec = one(world, ops, OpKind.POST, 0, 0, 0, ref_source=src, ref_seq=seq)
    assert name(rec) == "OK" and rec["amount_fen"] == 4_000
    assert rec["balance_fen"] == 4_000  # the debited card's: 8,000 - 4,000
    card, m = world.account(CARD), world.account(MERCHANT)
    assert (card.cash_fen, card.subsidy_fen) == (4_000, 0)
    assert (card.debits_pending, card.debits_posted) == (0, 4_000)
    assert (m.credits_pending, m.credits_posted, m.balance_fen) == (0, 4_000, 4_000)


def test_partial_post_returns_the_rest_in_draw_order(world, ops):
    fund(world, ops, CARD, cash=5_000, subsidy=3_000)
    (src, seq), _ = _hold(world, ops, 4_000)  # held: subsidy 3,000 + cash 1,000
    rec = one(world, ops, OpKind.POST, 0, 0, 2_500, ref_source=src, ref_seq=seq)
    assert name(rec) == "OK" and rec["amount_fen"] == 2_500
    # posted 2,500 out of the held subsidy first: subsidy 3,000 -> 500 returned, cash 1,000 returned
    # card: cash 4,000 + 1,000 = 5,000; subsidy 0 + 500 = 500; 8,000 - 2,500 = 5,500
    assert purses(world, CARD) == (5_000, 500)
    assert rec["balance_fen"] == 5_500
    card, m = world.account(CARD), world.account(MERCHANT)
    assert (card.debits_pending, card.debits_posted) == (0, 2_500)
    assert (m.credits_pending, m.credits_posted, m.balance_fen) == (0, 2_500, 2_500)


def test_partial_post_cash_first_card(world, ops):
    open_card(world, ops, 12, flags=CASH_FIRST)
    fund(world, ops, 12, cash=5_000, subsidy=3_000)
    (src, seq), _ = _hold(world, ops, 6_000, debit=12)  # held: cash 5,000 + subsidy 1,000
    assert purses(world, 12) == (0, 2_000)
    rec = one(world, ops, OpKind.POST, 0, 0, 5_500, ref_source=src, ref_seq=seq)
    assert name(rec) == "OK"
    # posted 5,500: cash 5,000 then subsidy 500; returned: subsidy 1,000 - 500 = 500
    # card: cash 0, subsidy 2,000 + 500 = 2,500 (= 8,000 - 5,500)
    assert purses(world, 12) == (0, 2_500)


def test_post_more_than_held_is_exceeds_pending(world, ops):
    fund(world, ops, CARD, cash=5_000, subsidy=3_000)
    (src, seq), _ = _hold(world, ops, 4_000)
    before = state(world)
    rec = one(world, ops, OpKind.POST, 0, 0, 4_001, ref_source=src, ref_seq=seq)
    assert name(rec) == "EXCEEDS_PENDING" and rec["amount_fen"] == 0
    assert state(world) == before  # the hold is still there
    assert name(one(world, ops, OpKind.POST, 0, 0, 4_000, ref_source=src, ref_seq=seq)) == "OK"


def test_a_hold_resolves_once(world, ops):
    fund(world, ops, CARD, cash=5_000)
    (src, seq), _ = _hold(world, ops, 4_000)
    assert name(one(world, ops, OpKind.POST, 0, 0, 0, ref_source=src, ref_seq=seq)) == "OK"
    before = state(world)
    assert name(one(world, ops, OpKind.POST, 0, 0, 0, ref_source=src, ref_seq=seq)) == "PENDING_NOT_FOUND"
    assert name(one(world, ops, OpKind.VOID, 0, 0, 0, ref_source=src, ref_seq=seq)) == "PENDING_NOT_FOUND"
    assert state(world) == before
    assert world.balance(CARD) == 1_000 and world.balance(MERCHANT) == 4_000


def test_void_releases_the_hold(world, ops):
    fund(world, ops, CARD, cash=5_000, subsidy=3_000)
    (src, seq), _ = _hold(world, ops, 4_000)
    rec = one(world, ops, OpKind.VOID, 0, 0, 0, ref_source=src, ref_seq=seq)
    assert name(rec) == "OK"
    assert rec["amount_fen"] == 4_000  # the amount released
    assert rec["balance_fen"] == 8_000  # the debited card's, back to 5,000 + 3,000
    card, m = world.account(CARD), world.account(MERCHANT)
    assert (card.cash_fen, card.subsidy_fen) == (5_000, 3_000)  # each purse got its part back
    assert (card.debits_pending, card.debits_posted) == (0, 0)
    assert (m.credits_pending, m.credits_posted, m.balance_fen) == (0, 0, 0)
    assert name(one(world, ops, OpKind.VOID, 0, 0, 0, ref_source=src, ref_seq=seq)) == "PENDING_NOT_FOUND"
    assert name(one(world, ops, OpKind.POST, 0, 0, 0, ref_source=src, ref_seq=seq)) == "PENDING_NOT_FOUND"


def test_post_of_an_unknown_hold(world, ops):
    assert name(one(world, ops, OpKind.POST, 0, 0, 0, ref_source=7, ref_seq=7)) == "PENDING_NOT_FOUND"
    assert name(one(world, ops, OpKind.VOID, 0, 0, 0, ref_source=7, ref_seq=7)) == "PENDING_NOT_FOUND"


def test_post_of_a_plain_transfer_is_pending_not_found(world, ops):
    b = ops.add(OpKind.TRANSFER, PROGRAM, MERCHANT, 100)
    src, seq = b.rows[-1]["source"], b.rows[-1]["seq"]
    ok(world.apply(b.take()))
    assert name(one(world, ops, OpKind.POST, 0, 0, 0, ref_source=src, ref_seq=seq)) == "PENDING_NOT_FOUND"


def test_topup_counts_incoming_holds_against_the_cap(world, ops):
    (src, seq), rec = _hold(world, ops, 300_000, debit=CLEARING, credit=CARD)
    assert name(rec) == "OK"
    assert world.account(CARD).credits_pending == 300_000
    assert world.balance(CARD) == 0  # not yet available
    # cash 0 + incoming 300,000 + 200,001 > 500,000
    assert name(one(world, ops, OpKind.TOPUP, CARD, CLEARING, 200_001)) == "EXCEEDS_CAP"
    # cash 0 + incoming 300,000 + 200,000 = 500,000
    assert name(one(world, ops, OpKind.TOPUP, CARD, CLEARING, 200_000)) == "OK"
    assert name(one(world, ops, OpKind.POST, 0, 0, 0, ref_source=src, ref_seq=seq)) == "OK"
    assert purses(world, CARD) == (500_000, 0)


def test_hold_to_a_card_counts_against_the_cap(world, ops):
    fund(world, ops, CARD, cash=450_000)
    _, rec = _hold(world, ops, 50_001, debit=CLEARING, credit=CARD)  # 450,000 + 50,001 > 500,000
    assert name(rec) == "EXCEEDS_CAP"


# --------------------------------------------------------------------------- FREEZE / UNFREEZE


def test_frozen_card_refuses_debits(world, ops):
    fund(world, ops, CARD, cash=5_000, subsidy=1_000)
    rec = one(world, ops, OpKind.FREEZE, CARD)
    assert name(rec) == "OK" and rec["balance_fen"] == 6_000
    assert world.account(CARD).frozen
    before = state(world)
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 100)) == "ACCOUNT_FROZEN"
    assert name(one(world, ops, OpKind.WITHDRAW, CARD, CLEARING, 100)) == "ACCOUNT_FROZEN"
    assert name(one(world, ops, OpKind.WITHDRAW, CARD, CLEARING, 100, flags=SUBSIDY_PURSE)) == "ACCOUNT_FROZEN"
    assert name(one(world, ops, OpKind.TRANSFER, CARD, CARD2, 100)) == "ACCOUNT_FROZEN"
    assert name(one(world, ops, OpKind.TRANSFER, CARD, MERCHANT, 100, flags=PENDING)) == "ACCOUNT_FROZEN"
    assert state(world) == before


def test_frozen_card_still_accepts_credits(world, ops):
    assert name(one(world, ops, OpKind.FREEZE, CARD)) == "OK"
    assert name(one(world, ops, OpKind.TOPUP, CARD, CLEARING, 1_000)) == "OK"
    assert name(one(world, ops, OpKind.AID, CARD, PROGRAM, 2_000)) == "OK"
    assert name(one(world, ops, OpKind.TRANSFER, PROGRAM, CARD, 300)) == "OK"
    assert purses(world, CARD) == (1_300, 2_000)  # cash 1,000 + 300; subsidy 2,000


def test_frozen_non_card_refuses_debits(world, ops):
    assert name(one(world, ops, OpKind.FREEZE, PROGRAM)) == "OK"
    assert name(one(world, ops, OpKind.AID, CARD, PROGRAM, 100)) == "ACCOUNT_FROZEN"
    assert name(one(world, ops, OpKind.TRANSFER, PROGRAM, MERCHANT, 100)) == "ACCOUNT_FROZEN"
    assert world.balance(PROGRAM) == 1_000_000


def test_unfreeze_restores_debits(world, ops):
    fund(world, ops, CARD, cash=5_000)
    assert name(one(world, ops, OpKind.FREEZE, CARD)) == "OK"
    assert name(one(world, ops, OpKind.UNFREEZE, CARD)) == "OK"
    assert not world.account(CARD).frozen
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 100)) == "OK"


def test_hold_placed_before_freeze_can_be_posted_or_voided(world, ops):
    fund(world, ops, CARD, cash=5_000)
    (s1, q1), _ = _hold(world, ops, 1_000)
    (s2, q2), _ = _hold(world, ops, 2_000)
    assert name(one(world, ops, OpKind.FREEZE, CARD)) == "OK"
    assert name(one(world, ops, OpKind.POST, 0, 0, 0, ref_source=s1, ref_seq=q1)) == "OK"
    assert name(one(world, ops, OpKind.VOID, 0, 0, 0, ref_source=s2, ref_seq=q2)) == "OK"
    assert world.balance(CARD) == 4_000  # 5,000 - 1,000 posted; 2,000 released
    assert world.balance(MERCHANT) == 1_000


# --------------------------------------------------------------------------- REPLACE


def test_replace_moves_everything_to_the_new_card(world, ops):
    open_card(world, ops, 12, limit_fen=300_000, category=2, flags=CASH_FIRST)
    fund(world, ops, 12, cash=20_000, subsidy=7_000)
    assert name(one(world, ops, OpKind.FREEZE, 12)) == "OK"  # a lost card is frozen first
    rec = one(world, ops, OpKind.REPLACE, 12, 20)
    assert name(rec) == "OK"
    assert rec["amount_fen"] == 27_000  # both purses moved: 20,000 + 7,000
    new = world.account(20)
    assert new.kind == AccountKind.CARD
    assert (new.cash_fen, new.subsidy_fen, new.balance_fen) == (20_000, 7_000, 27_000)
    assert (new.cap_fen, new.category, new.cash_first) == (300_000, 2, True)
    assert not new.frozen and not new.closed
    old = world.account(12)
    assert old.closed and old.balance_fen == 0 and (old.cash_fen, old.subsidy_fen) == (0, 0)
    assert world.balance(12) == 0
    # the new card works: CASH_FIRST spend of 21,000 = cash 20,000 + subsidy 1,000
    assert name(one(world, ops, OpKind.SPEND, 20, MERCHANT, 21_000)) == "OK"
    assert purses(world, 20) == (0, 6_000)
    assert world.verify().ok


def test_replace_voids_the_old_cards_holds(world, ops):
    fund(world, ops, CARD, cash=5_000, subsidy=3_000)
    (s1, q1), _ = _hold(world, ops, 4_000)  # a hold debiting the card
    (s2, q2), _ = _hold(world, ops, 1_000, debit=CLEARING, credit=CARD)  # a hold crediting it
    rec = one(world, ops, OpKind.REPLACE, CARD, 20)
    assert name(rec) == "OK"
    assert rec["amount_fen"] == 8_000  # 4,000 released first, then all 5,000 + 3,000 moved
    assert purses(world, 20) == (5_000, 3_000)
    assert world.account(MERCHANT).credits_pending == 0
    assert world.account(CLEARING).debits_pending == 0
    old = world.account(CARD)
    assert (old.debits_pending, old.credits_pending) == (0, 0)
    assert name(one(world, ops, OpKind.POST, 0, 0, 0, ref_source=s1, ref_seq=q1)) == "PENDING_NOT_FOUND"
    assert name(one(world, ops, OpKind.VOID, 0, 0, 0, ref_source=s2, ref_seq=q2)) == "PENDING_NOT_FOUND"
    assert world.verify().ok


def test_replace_onto_a_taken_id_is_account_exists(world, ops):
    fund(world, ops, CARD, cash=1_000)
    before = state(world)
    assert name(one(world, ops, OpKind.REPLACE, CARD, CARD2)) == "ACCOUNT_EXISTS"
    assert state(world) == before


def test_replace_of_a_non_card_is_wrong_account_kind(world, ops):
    assert name(one(world, ops, OpKind.REPLACE, MERCHANT, 20)) == "WRONG_ACCOUNT_KIND"
    with pytest.raises(cardledger.AccountNotFoundError):
        world.account(20)


def test_replace_with_an_amount_is_invalid_amount(world, ops):
    assert name(one(world, ops, OpKind.REPLACE, CARD, 20, 1)) == "INVALID_AMOUNT"


# --------------------------------------------------------------------------- CLOSE


def test_close_refunds_both_purses_to_clearing(world, ops):
    fund(world, ops, CARD, cash=7_000, subsidy=2_000)
    clearing_before = world.balance(CLEARING)  # -1,000,000 - 7,000 = -1,007,000
    assert clearing_before == -1_007_000
    rec = one(world, ops, OpKind.CLOSE, CARD, CLEARING)
    assert name(rec) == "OK"
    assert rec["amount_fen"] == 9_000 and rec["balance_fen"] == 0  # 7,000 + 2,000 refunded
    assert world.balance(CLEARING) == -998_000  # -1,007,000 + 9,000
    card = world.account(CARD)
    assert card.closed and (card.cash_fen, card.subsidy_fen, card.balance_fen) == (0, 0, 0)
    assert world.balance(CARD) == 0
    assert world.verify().ok


def test_closed_account_refuses_every_op(world, ops):
    fund(world, ops, CARD, cash=1_000)
    assert name(one(world, ops, OpKind.CLOSE, CARD, CLEARING)) == "OK"
    before = state(world)
    attempts = [
        (OpKind.TOPUP, CARD, CLEARING, 100, {}),
        (OpKind.AID, CARD, PROGRAM, 100, {}),
        (OpKind.SPEND, CARD, MERCHANT, 100, {}),
        (OpKind.WITHDRAW, CARD, CLEARING, 100, {}),
        (OpKind.WITHDRAW, CARD, CLEARING, 100, {"flags": SUBSIDY_PURSE}),
        (OpKind.TRANSFER, CARD, MERCHANT, 100, {}),
        (OpKind.TRANSFER, PROGRAM, CARD, 100, {}),
        (OpKind.TRANSFER, PROGRAM, CARD, 100, {"flags": PENDING}),
        (OpKind.FREEZE, CARD, 0, 0, {}),
        (OpKind.UNFREEZE, CARD, 0, 0, {}),
        (OpKind.REPLACE, CARD, 20, 0, {}),
        (OpKind.CLOSE, CARD, CLEARING, 0, {}),
    ]
    for kind, a, c, amount, f in attempts:
        ops.add(kind, a, c, amount, **f)
    r = world.apply(ops.take())
    assert codes(r) == ["ACCOUNT_CLOSED"] * len(attempts)
    assert (r["amount_fen"] == 0).all()
    # each reports its account's balance: the closed card reads 0, program 3 still 1,000,000
    assert list(r["balance_fen"]) == [0] * 6 + [1_000_000] * 2 + [0] * 4
    assert state(world) == before
    # the id stays taken
    assert name(one(world, ops, OpKind.OPEN, CARD, account_kind=AccountKind.CARD)) == "ACCOUNT_EXISTS"


def test_account_closed_takes_precedence_over_frozen(world, ops):
    fund(world, ops, CARD, cash=1_000)
    assert name(one(world, ops, OpKind.FREEZE, CARD)) == "OK"
    assert name(one(world, ops, OpKind.CLOSE, CARD, CLEARING)) == "OK"
    assert world.account(CARD).closed
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 100)) == "ACCOUNT_CLOSED"
    assert name(one(world, ops, OpKind.WITHDRAW, CARD, CLEARING, 100)) == "ACCOUNT_CLOSED"


def test_old_card_after_replace_of_a_frozen_card_is_closed_not_frozen(world, ops):
    fund(world, ops, CARD, cash=1_000)
    assert name(one(world, ops, OpKind.FREEZE, CARD)) == "OK"
    assert name(one(world, ops, OpKind.REPLACE, CARD, 20)) == "OK"
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 100)) == "ACCOUNT_CLOSED"


def test_close_voids_holds_first(world, ops):
    fund(world, ops, CARD, cash=5_000, subsidy=3_000)
    (src, seq), _ = _hold(world, ops, 4_000)
    rec = one(world, ops, OpKind.CLOSE, CARD, CLEARING)
    assert name(rec) == "OK"
    assert rec["amount_fen"] == 8_000  # the 4,000 held came back first: 5,000 + 3,000 refunded
    assert world.account(MERCHANT).credits_pending == 0
    assert world.account(CARD).debits_pending == 0
    assert world.balance(CLEARING) == -997_000  # -1,005,000 (after the top-up) + 5,000 + 3,000
    assert name(one(world, ops, OpKind.POST, 0, 0, 0, ref_source=src, ref_seq=seq)) == "PENDING_NOT_FOUND"
    assert world.verify().ok


def test_close_of_a_merchant(world, ops):
    fund(world, ops, CARD, cash=2_000)
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 2_000)) == "OK"
    rec = one(world, ops, OpKind.CLOSE, MERCHANT, CLEARING)
    assert name(rec) == "OK" and rec["amount_fen"] == 2_000
    assert world.balance(MERCHANT) == 0 and world.account(MERCHANT).closed


def test_close_of_clearing_and_to_non_clearing(world, ops):
    assert name(one(world, ops, OpKind.CLOSE, CLEARING, MERCHANT)) == "WRONG_ACCOUNT_KIND"
    assert name(one(world, ops, OpKind.CLOSE, CARD, MERCHANT)) == "WRONG_COUNTERPARTY_KIND"


# --------------------------------------------------------------------------- linked chains


def test_linked_chain_all_succeed(world, ops):
    ops.add(OpKind.OPEN, 20, account_kind=AccountKind.CARD, flags=LINKED)
    ops.add(OpKind.TOPUP, 20, CLEARING, 10_000, flags=LINKED)
    ops.add(OpKind.SPEND, 20, MERCHANT, 3_000)
    r = world.apply(ops.take())
    assert codes(r) == ["OK", "OK", "OK"]
    assert list(r["amount_fen"]) == [0, 10_000, 3_000]
    assert list(r["balance_fen"]) == [0, 10_000, 7_000]  # 10,000 - 3,000
    assert world.balance(20) == 7_000 and world.balance(MERCHANT) == 3_000


def test_linked_chain_one_fails_nothing_moves(world, ops):
    fund(world, ops, CARD, cash=1_000)
    ops.add(OpKind.TOPUP, CARD, CLEARING, 5_000, flags=LINKED)
    ops.add(OpKind.SPEND, CARD, MERCHANT, 9_000, flags=LINKED)  # 1,000 + 5,000 = 6,000 < 9,000
    ops.add(OpKind.SPEND, CARD, MERCHANT, 1_000)
    ops.add(OpKind.SPEND, CARD, MERCHANT, 400)  # not linked to the chain: goes on
    r = world.apply(ops.take())
    assert codes(r) == ["LINKED_FAILED", "INSUFFICIENT_FUNDS", "LINKED_FAILED", "OK"]
    assert list(r["amount_fen"]) == [0, 0, 0, 400]
    # failed members report the card's balance after the chain settled: 1,000 (nothing moved)
    assert list(r["balance_fen"][:3]) == [1_000, 1_000, 1_000]
    assert r["balance_fen"][3] == 600  # 1,000 - 400
    assert (r["journal_seq"] > 0).all()  # every new id's failure is decided and journaled
    assert world.balance(CARD) == 600 and world.balance(MERCHANT) == 400
    assert world.balance(CLEARING) == -1_001_000  # only the first, separate top-up: -1,000,000 - 1,000


def test_linked_chain_failed_is_rolled_back_entirely(world, ops):
    fund(world, ops, CARD, cash=1_000)
    before = state(world)
    ops.add(OpKind.TOPUP, CARD, CLEARING, 5_000, flags=LINKED)
    ops.add(OpKind.AID, CARD, PROGRAM, 2_000, flags=LINKED)
    ops.add(OpKind.SPEND, CARD, MERCHANT, 6_000, flags=LINKED)
    ops.add(OpKind.TOPUP, CARD, CLEARING, 499_000)  # 1,000 + 5,000 + 499,000 > 500,000
    r = world.apply(ops.take())
    assert codes(r) == ["LINKED_FAILED", "LINKED_FAILED", "LINKED_FAILED", "EXCEEDS_CAP"]
    assert state(world) == before  # every account, every total unchanged


def test_linked_chain_first_member_fails(world, ops):
    ops.add(OpKind.SPEND, CARD, MERCHANT, 1, flags=LINKED)  # empty card
    ops.add(OpKind.TOPUP, CARD, CLEARING, 1_000)
    r = world.apply(ops.take())
    assert codes(r) == ["INSUFFICIENT_FUNDS", "LINKED_FAILED"]
    assert world.balance(CARD) == 0


def test_linked_chain_open_at_batch_end(world, ops):
    ops.add(OpKind.TOPUP, CARD, CLEARING, 1_000, flags=LINKED)
    ops.add(OpKind.TOPUP, CARD, CLEARING, 2_000, flags=LINKED)
    r = world.apply(ops.take())
    assert codes(r) == ["LINKED_FAILED", "LINKED_CHAIN_OPEN"]
    assert world.balance(CARD) == 0
    # a single op still flagged LINKED at the end of its batch
    ops.add(OpKind.TOPUP, CARD, CLEARING, 1_000)
    ops.add(OpKind.TOPUP, CARD, CLEARING, 2_000, flags=LINKED)
    r = world.apply(ops.take())
    assert codes(r) == ["OK", "LINKED_CHAIN_OPEN"]
    assert world.balance(CARD) == 1_000


def test_open_inside_a_failed_chain_is_undone(world, ops):
    ops.add(OpKind.OPEN, 30, account_kind=AccountKind.CARD, flags=LINKED)
    ops.add(OpKind.TOPUP, 30, CLEARING, 600_000)  # above the 500,000 cap
    ops.add(OpKind.TOPUP, 30, CLEARING, 1_000)  # separate op: the card does not exist
    r = world.apply(ops.take())
    assert codes(r) == ["LINKED_FAILED", "EXCEEDS_CAP", "ACCOUNT_NOT_FOUND"]
    assert list(r["balance_fen"]) == [0, 0, 0]
    with pytest.raises(cardledger.AccountNotFoundError):
        world.account(30)
    assert 30 not in world.accounts()["id"]
    assert world.verify().ok


def test_replayed_id_cannot_join_a_new_chain(world, ops):
    first = ops.add(OpKind.TOPUP, CARD, CLEARING, 1_000).take()
    ok(world.apply(first.copy()))
    chain = ops.add(OpKind.TOPUP, CARD, CLEARING, 2_000, flags=LINKED).take()
    r = world.apply(np.concatenate([chain, first]))  # the chain's last member is a replay
    assert codes(r) == ["LINKED_FAILED", "EXISTS"]
    assert world.balance(CARD) == 1_000


def test_member_of_a_failed_chain_cannot_be_retried_with_its_id(world, ops):
    chain = ops.add(OpKind.TOPUP, CARD, CLEARING, 1_000, flags=LINKED).add(OpKind.SPEND, CARD, MERCHANT, 5_000).take()
    assert codes(world.apply(chain.copy())) == ["LINKED_FAILED", "INSUFFICIENT_FUNDS"]
    r = world.apply(chain[:1].copy())
    assert codes(r) == ["ID_ALREADY_FAILED"]
    assert world.balance(CARD) == 0


# --------------------------------------------------------------------------- idempotency


def _topup(ops, amount=1_000, card=CARD):
    return ops.add(OpKind.TOPUP, card, CLEARING, amount).take()


def test_replay_in_the_same_batch(world, ops):
    a = _topup(ops, 1_000)
    b = _topup(ops, 500)
    r = world.apply(np.concatenate([a, b, a]))
    assert codes(r) == ["OK", "OK", "EXISTS"]
    # the replay answers with the original figures, not the current balance (1,500)
    assert r[2]["amount_fen"] == 1_000 and r[2]["balance_fen"] == 1_000
    assert r[2]["journal_seq"] == r[0]["journal_seq"]
    assert world.balance(CARD) == 1_500  # 1,000 + 500, the replay moved nothing


def _check_replay(led, op, original):
    before = state(led)
    seq_before = led.journal_seq
    r = led.apply(op.copy())
    assert codes(r) == ["EXISTS"]
    assert r[0]["amount_fen"] == original["amount_fen"]
    assert r[0]["balance_fen"] == original["balance_fen"]
    assert r[0]["journal_seq"] == original["journal_seq"]
    assert state(led) == before
    assert led.journal_seq == seq_before  # a replay is not journaled


def test_replay_in_a_later_batch(world, ops):
    a = _topup(ops, 1_000)
    original = ok(world.apply(a.copy()))[0]
    ok(world.apply(_topup(ops, 500)))
    _check_replay(world, a, original)
    assert world.balance(CARD) == 1_500


def test_replay_after_reopen(world, ops, ledger_path):
    a = _topup(ops, 1_000)
    original = ok(world.apply(a.copy()))[0]
    world.close()
    with cardledger.open(ledger_path) as led:
        _check_replay(led, a, original)
        assert led.balance(CARD) == 1_000


def test_replay_after_checkpoint(world, ops, ledger_path):
    a = _topup(ops, 1_000)
    original = ok(world.apply(a.copy()))[0]
    ok(world.apply(_topup(ops, 500)))
    world.checkpoint()
    _check_replay(world, a, original)  # answered from the LMDB id index
    world.close()
    with cardledger.open(ledger_path) as led:
        _check_replay(led, a, original)
        assert led.balance(CARD) == 1_500
        assert led.verify().ok


def test_same_id_different_fields(world, ops):
    a = _topup(ops, 1_000)
    original = ok(world.apply(a.copy()))[0]
    changed = a.copy()
    changed["amount_fen"] = 2_000
    r = world.apply(changed)
    assert codes(r) == ["EXISTS_WITH_DIFFERENT_FIELDS"]
    assert r[0]["amount_fen"] == 0 and r[0]["journal_seq"] == original["journal_seq"]
    changed = a.copy()
    changed["time_us"] += 1  # any field counts
    assert codes(world.apply(changed)) == ["EXISTS_WITH_DIFFERENT_FIELDS"]
    assert world.balance(CARD) == 1_000


def test_failed_id_stays_failed(world, ops, ledger_path):
    a = _topup(ops, 600_000)  # above the cap
    first = world.apply(a.copy())[0]
    assert name(first) == "EXCEEDS_CAP" and first["journal_seq"] > 0
    fixed = a.copy()
    fixed["amount_fen"] = 6_000  # corrected, but the id has been decided
    r = world.apply(fixed)
    assert codes(r) == ["ID_ALREADY_FAILED"]
    assert r[0]["amount_fen"] == 0 and r[0]["journal_seq"] == first["journal_seq"]
    assert world.balance(CARD) == 0
    world.checkpoint()
    world.close()
    with cardledger.open(ledger_path) as led:
        assert codes(led.apply(fixed.copy())) == ["ID_ALREADY_FAILED"]
        assert codes(led.apply(a.copy())) == ["ID_ALREADY_FAILED"]
        assert led.balance(CARD) == 0


def test_out_of_order_unused_seq_is_a_new_op(world):
    b = Ops(source=5)
    ok(world.apply(b.add(OpKind.TOPUP, CARD, CLEARING, 100).take()))  # (5, 1)
    b.seq = 10
    ok(world.apply(b.add(OpKind.TOPUP, CARD, CLEARING, 200).take()))  # (5, 10): highest
    b.seq = 7
    late = b.add(OpKind.TOPUP, CARD, CLEARING, 300).take()  # (5, 7): below 10, never used
    r = world.apply(late.copy())
    assert codes(r) == ["OK"] and r[0]["balance_fen"] == 600  # 100 + 200 + 300
    assert codes(world.apply(late.copy())) == ["EXISTS"]
    assert world.balance(CARD) == 600


def test_out_of_order_unused_seq_after_checkpoint_and_reopen(world, ledger_path):
    b = Ops(source=5)
    b.seq = 10
    ten = b.add(OpKind.TOPUP, CARD, CLEARING, 200).take()
    ok(world.apply(ten.copy()))
    world.checkpoint()
    world.close()
    with cardledger.open(ledger_path) as led:
        b.seq = 3
        late = b.add(OpKind.TOPUP, CARD, CLEARING, 300).take()
        assert codes(led.apply(late.copy())) == ["OK"]
        assert codes(led.apply(late.copy())) == ["EXISTS"]
        assert codes(led.apply(ten.copy())) == ["EXISTS"]
        assert led.balance(CARD) == 500  # 200 + 300


def test_source_zero_is_invalid_id(world):
    seq_before = world.journal_seq
    b = Ops(source=0)
    r = world.apply(b.add(OpKind.TOPUP, CARD, CLEARING, 1_000).take())
    assert codes(r) == ["INVALID_ID"]
    assert r[0]["journal_seq"] == 0 and r[0]["amount_fen"] == 0
    assert world.journal_seq == seq_before  # nothing recorded
    assert world.balance(CARD) == 0


# --------------------------------------------------------------------------- double entry


def test_double_entry_after_a_mixed_scenario(world, ops):
    open_card(world, ops, 12, flags=CASH_FIRST)
    fund(world, ops, CARD, cash=50_000, subsidy=20_000)
    fund(world, ops, 12, cash=30_000, subsidy=5_000)
    ok(world.apply(
        ops.add(OpKind.SPEND, CARD, MERCHANT, 25_000)
        .add(OpKind.SPEND, 12, MERCHANT, 31_000)
        .add(OpKind.WITHDRAW, CARD, CLEARING, 10_000)
        .add(OpKind.WITHDRAW, 12, CLEARING, 1_000, flags=SUBSIDY_PURSE)
        .add(OpKind.TRANSFER, MERCHANT, OPERATOR, 500)
        .add(OpKind.WITHDRAW, MERCHANT, CLEARING, 20_000)
        .take()
    ))
    _hold(world, ops, 3_000)  # left outstanding
    (s, q), _ = _hold(world, ops, 2_000, debit=12)
    ok(world.apply(ops.add(OpKind.POST, 0, 0, 1_500, ref_source=s, ref_seq=q).take()))
    _hold(world, ops, 4_000, debit=CLEARING, credit=CARD2)  # outstanding, into a card
    ok(world.apply(ops.add(OpKind.REPLACE, CARD2, 21).add(OpKind.CLOSE, 12, CLEARING).take()))
    acc = world.accounts()
    credits = sum(int(x) for x in acc["credits_posted"])
    debits = sum(int(x) for x in acc["debits_posted"])
    assert credits == debits
    balances = sum(int(c) + int(s) for c, s in zip(acc["cash_fen"], acc["subsidy_fen"]))
    held = sum(int(x) for x in acc["debits_pending"])
    assert held == 3_000  # only the first hold is still outstanding
    assert held == sum(int(x) for x in acc["credits_pending"])
    assert balances + held == 0
    assert world.verify().ok


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("amount", [0, -1, -500, cardledger.AMOUNT_MAX_FEN + 1])
@pytest.mark.parametrize(
    "kind, account, counterparty",
    [
        (OpKind.TOPUP, CARD, CLEARING),
        (OpKind.AID, CARD, PROGRAM),
        (OpKind.SPEND, CARD, MERCHANT),
        (OpKind.WITHDRAW, CARD, CLEARING),
        (OpKind.TRANSFER, CLEARING, MERCHANT),
    ],
)
def test_invalid_amount(world, ops, kind, account, counterparty, amount):
    before = state(world)
    rec = one(world, ops, kind, account, counterparty, amount)
    assert name(rec) == "INVALID_AMOUNT" and rec["amount_fen"] == 0
    assert state(world) == before


def test_amount_max_is_allowed(world, ops):
    rec = one(world, ops, OpKind.TRANSFER, CLEARING, MERCHANT, cardledger.AMOUNT_MAX_FEN)
    assert name(rec) == "OK"
    assert world.balance(MERCHANT) == 1_000_000_000_000_000


@pytest.mark.parametrize("kind", [OpKind.FREEZE, OpKind.UNFREEZE, OpKind.VOID, OpKind.CLOSE])
def test_amount_on_an_amountless_op_is_invalid_amount(world, ops, kind):
    assert name(one(world, ops, kind, CARD, CLEARING, 1)) == "INVALID_AMOUNT"


def test_negative_post_amount_is_invalid_amount(world, ops):
    fund(world, ops, CARD, cash=1_000)
    (s, q), _ = _hold(world, ops, 500)
    assert name(one(world, ops, OpKind.POST, 0, 0, -1, ref_source=s, ref_seq=q)) == "INVALID_AMOUNT"


@pytest.mark.parametrize("kind", [0, 15, 99])
def test_invalid_kind(world, ops, kind):
    before = state(world)
    rec = one(world, ops, kind, CARD, CLEARING, 1_000)
    assert name(rec) == "INVALID_KIND" and rec["journal_seq"] > 0
    assert state(world) == before


def test_order_of_checks(world, ops):
    # kind before flags and amount; flags before amount; amount before accounts
    assert name(one(world, ops, 99, 0, 0, -1, flags=PENDING)) == "INVALID_KIND"
    assert name(one(world, ops, OpKind.SPEND, 0, 0, -1, flags=PENDING)) == "INVALID_FLAGS"
    assert name(one(world, ops, OpKind.SPEND, 0, 0, -1)) == "INVALID_AMOUNT"
    assert name(one(world, ops, OpKind.SPEND, 0, 999, 1)) == "INVALID_ACCOUNT_ID"


def test_order_of_checks_after_the_ids(world, ops):
    fund(world, ops, CARD2, cash=500_000)  # card 11 at its cap; card 10 empty
    # equal ids before existence; account before counterparty; existence before kinds
    assert name(one(world, ops, OpKind.TOPUP, 999, 999, 1)) == "ACCOUNTS_MUST_BE_DIFFERENT"
    assert name(one(world, ops, OpKind.TOPUP, 998, 999, 1)) == "ACCOUNT_NOT_FOUND"
    assert name(one(world, ops, OpKind.TOPUP, MERCHANT, 999, 1)) == "COUNTERPARTY_NOT_FOUND"
    # account kind before counterparty kind
    assert name(one(world, ops, OpKind.TOPUP, MERCHANT, PROGRAM, 1)) == "WRONG_ACCOUNT_KIND"
    # funds before cap: empty card 10 -> full card 11
    assert name(one(world, ops, OpKind.TRANSFER, CARD, CARD2, 1)) == "INSUFFICIENT_FUNDS"
    # frozen before funds
    assert name(one(world, ops, OpKind.FREEZE, CARD)) == "OK"
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 1)) == "ACCOUNT_FROZEN"
    # kinds before closed
    assert name(one(world, ops, OpKind.CLOSE, CARD, CLEARING)) == "OK"
    assert name(one(world, ops, OpKind.SPEND, CARD, CARD2, 1)) == "WRONG_COUNTERPARTY_KIND"
    assert name(one(world, ops, OpKind.SPEND, CARD, MERCHANT, 1)) == "ACCOUNT_CLOSED"


@pytest.mark.parametrize(
    "kind, flag",
    [(OpKind.TOPUP, PENDING), (OpKind.AID, SUBSIDY_PURSE), (OpKind.SPEND, CASH_FIRST), (OpKind.POST, PENDING), (OpKind.TOPUP, 64)],
)
def test_flags_not_allowed_for_the_kind(world, ops, kind, flag):
    assert name(one(world, ops, kind, CARD, CLEARING, 100, flags=flag)) == "INVALID_FLAGS"


def test_overflow_of_a_merchants_credits(world):
    max_ = cardledger.AMOUNT_MAX_FEN
    b = Ops(source=77)
    ok(world.apply(
        b.add(OpKind.OPEN, 50, account_kind=AccountKind.CLEARING)
        .add(OpKind.OPEN, 52, account_kind=AccountKind.CLEARING)
        .add(OpKind.OPEN, 51, account_kind=AccountKind.MERCHANT)
        .take()
    ))
    # INT64_MAX = 9,223,372,036,854,775,807 = 9,223 x 10^15 + 372,036,854,775,807:
    # 9,223 transfers of 10^15 fit, the 9,224th would pass int64.
    fits = INT64_MAX // max_
    assert fits == 9_223
    n = fits + 2
    batch = cardledger.new_ops(n)
    batch["source"] = 77
    batch["seq"] = np.arange(100, 100 + n)
    batch["kind"] = OpKind.TRANSFER
    # alternate two clearing accounts so that only the merchant's totals can overflow
    batch["account_id"] = np.where(np.arange(n) % 2 == 0, 50, 52)
    batch["counterparty_id"] = 51
    batch["amount_fen"] = max_
    batch["time_us"] = T0
    r = world.apply(batch)
    c = r["code"]
    assert (c[:fits] == Result.OK).all()
    assert codes(r[fits:]) == ["OVERFLOW", "OVERFLOW"]
    assert (r["amount_fen"][fits:] == 0).all()
    m = world.account(51)
    assert m.credits_posted == fits * max_ == 9_223_000_000_000_000_000
    assert m.balance_fen == fits * max_
    # the clearing accounts gave 4,612 and 4,611 transfers: nothing of the failed ops
    assert world.balance(50) == -4_612 * max_ and world.balance(52) == -4_611 * max_
    assert world.verify().ok


# --------------------------------------------------------------------------- statement


def test_statement_lists_successful_ops_by_time(world, ops):
    t = T0 + 10_000_000
    batch = (
        ops.add(OpKind.TOPUP, CARD, CLEARING, 10_000)  # applied 1st, happened at t+300
        .add(OpKind.AID, CARD, PROGRAM, 2_000)  # 2nd, at t+100
        .add(OpKind.SPEND, CARD, MERCHANT, 50_000)  # fails: not in the statement
        .add(OpKind.SPEND, CARD, MERCHANT, 3_000)  # 4th, at t+200
        .add(OpKind.TOPUP, CARD2, CLEARING, 700)  # another card's
        .take()
    )
    batch["time_us"] = [t + 300, t + 100, t + 150, t + 200, t + 250]
    r = world.apply(batch)
    assert codes(r) == ["OK", "OK", "INSUFFICIENT_FUNDS", "OK", "OK"]
    st = world.statement(CARD)
    assert st.dtype == cardledger.JOURNAL_DTYPE
    # the card's OPEN (from the world fixture) comes first, then by event time
    assert [OpKind(k).name for k in st["kind"]] == ["OPEN", "AID", "SPEND", "TOPUP"]
    assert list(st["time_us"][1:]) == [t + 100, t + 200, t + 300]
    assert list(st["result_amount_fen"]) == [0, 2_000, 3_000, 10_000]
    # balances as each op left them, in the order applied: 10,000; 10,000 + 2,000; 12,000 - 3,000
    assert list(st["balance_fen"]) == [0, 12_000, 9_000, 10_000]
    assert list(st["subsidy_fen"]) == [0, 2_000, 2_000, 0]  # the spend drew the 2,000 aid first
    assert (st["code"] == Result.OK).all()
    assert sorted(st["journal_seq"][1:]) == sorted(r["journal_seq"][[0, 1, 3]])


def test_statement_time_filter(world, ops):
    t = T0 + 10_000_000
    batch = (
        ops.add(OpKind.TOPUP, CARD, CLEARING, 10_000)
        .add(OpKind.AID, CARD, PROGRAM, 2_000)
        .add(OpKind.SPEND, CARD, MERCHANT, 3_000)
        .take()
    )
    batch["time_us"] = [t + 300, t + 100, t + 200]
    ok(world.apply(batch))
    # [start, end): t+300 is excluded
    st = world.statement(CARD, start_us=t + 100, end_us=t + 300)
    assert list(st["time_us"]) == [t + 100, t + 200]
    st = world.statement(CARD, start_us=t + 200)
    assert list(st["time_us"]) == [t + 200, t + 300]
    st = world.statement(CARD, end_us=t + 100)
    assert [OpKind(k).name for k in st["kind"]] == ["OPEN"]
    assert len(world.statement(CARD, start_us=t + 301)) == 0


def test_statement_of_a_merchant_shows_the_credit_side(world, ops):
    fund(world, ops, CARD, cash=1_000)
    r = world.apply(ops.add(OpKind.SPEND, CARD, MERCHANT, 400).add(OpKind.SPEND, CARD2, MERCHANT, 1).take())
    assert codes(r) == ["OK", "INSUFFICIENT_FUNDS"]  # card 11 is empty: not in the statement
    st = world.statement(MERCHANT)
    assert [OpKind(k).name for k in st["kind"]] == ["OPEN", "SPEND"]
    assert st[1]["credit_id"] == MERCHANT and st[1]["debit_id"] == CARD
    assert st[1]["result_amount_fen"] == 400


def test_verify_after_a_busy_scenario(world, ops, ledger_path):
    fund(world, ops, CARD, cash=100_000, subsidy=50_000)
    (s, q), _ = _hold(world, ops, 30_000)
    ok(world.apply(ops.add(OpKind.POST, 0, 0, 10_000, ref_source=s, ref_seq=q).take()))
    ok(world.apply(ops.add(OpKind.FREEZE, CARD).add(OpKind.REPLACE, CARD, 20).take()))
    world.apply(ops.add(OpKind.SPEND, 20, MERCHANT, 1_000, flags=LINKED).add(OpKind.SPEND, 20, MERCHANT, 10**9).take())
    world.checkpoint()
    ok(world.apply(ops.add(OpKind.CLOSE, 20, CLEARING).take()))
    rep = world.verify()
    assert rep.ok, rep.problems
    world.close()
    with cardledger.open(ledger_path) as led:
        assert led.verify().ok
        assert led.balance(20) == 0


# --------------------------------------------------------------------------- more chains and ids


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(lambda hold: (OpKind.CLOSE, CARD, CLEARING, 0, {}), id="CLOSE"),
        pytest.param(lambda hold: (OpKind.REPLACE, CARD, 20, 0, {}), id="REPLACE"),
        pytest.param(lambda hold: (OpKind.POST, 0, 0, 1_000, dict(ref_source=hold[0], ref_seq=hold[1])), id="POST"),
        pytest.param(lambda hold: (OpKind.VOID, 0, 0, 0, dict(ref_source=hold[0], ref_seq=hold[1])), id="VOID"),
        pytest.param(lambda hold: (OpKind.FREEZE, CARD, 0, 0, {}), id="FREEZE"),
    ],
)
def test_failed_chain_restores_holds(world, ops, first):
    fund(world, ops, CARD, cash=5_000, subsidy=3_000)
    hold, _ = _hold(world, ops, 4_000)
    before = state(world)
    kind, a, c, amount, f = first(hold)
    ops.add(kind, a, c, amount, flags=LINKED, **f)
    ops.add(OpKind.SPEND, CARD2, MERCHANT, 1)  # card 11 is empty: the chain fails
    assert codes(world.apply(ops.take())) == ["LINKED_FAILED", "INSUFFICIENT_FUNDS"]
    assert state(world) == before
    with pytest.raises(cardledger.AccountNotFoundError):
        world.account(20)
    # the hold is still there, whole: post all 4,000 of it
    rec = one(world, ops, OpKind.POST, 0, 0, 0, ref_source=hold[0], ref_seq=hold[1])
    assert name(rec) == "OK" and rec["amount_fen"] == 4_000
    assert world.balance(CARD) == 4_000 and world.balance(MERCHANT) == 4_000  # 8,000 - 4,000
    assert world.verify().ok


def test_hold_placed_and_posted_in_a_failed_chain_is_undone(world, ops):
    fund(world, ops, CARD, cash=5_000)
    before = state(world)
    b = ops.add(OpKind.TRANSFER, CARD, MERCHANT, 1_000, flags=PENDING | LINKED)
    src, seq = b.rows[-1]["source"], b.rows[-1]["seq"]
    ops.add(OpKind.POST, 0, 0, 0, ref_source=src, ref_seq=seq, flags=LINKED)
    ops.add(OpKind.SPEND, CARD2, MERCHANT, 1)
    assert codes(world.apply(ops.take())) == ["LINKED_FAILED", "LINKED_FAILED", "INSUFFICIENT_FUNDS"]
    assert state(world) == before
    assert name(one(world, ops, OpKind.VOID, 0, 0, 0, ref_source=src, ref_seq=seq)) == "PENDING_NOT_FOUND"


def test_invalid_id_fails_its_chain(world, ops):
    bad = Ops(source=0).add(OpKind.TOPUP, CARD, CLEARING, 1_000, flags=LINKED).take()
    a = ops.add(OpKind.TOPUP, CARD, CLEARING, 2_000, flags=LINKED).take()
    c = ops.add(OpKind.TOPUP, CARD, CLEARING, 3_000).take()
    assert codes(world.apply(np.concatenate([a, bad, c]))) == ["LINKED_FAILED", "INVALID_ID", "LINKED_FAILED"]
    assert world.balance(CARD) == 0


def test_failed_id_replayed_in_the_same_batch(world, ops):
    a = _topup(ops, 600_000)  # above the cap
    r = world.apply(np.concatenate([a, a]))
    assert codes(r) == ["EXCEEDS_CAP", "ID_ALREADY_FAILED"]
    assert r[1]["journal_seq"] == r[0]["journal_seq"]


def test_ids_survive_automatic_checkpoints(tmp_path):
    """With a checkpoint every 3 decided ops, old ids are answered from the LMDB id index."""
    path = str(tmp_path / "ledger")
    b = Ops(source=5)
    saved = {}
    with cardledger.open(path, checkpoint_ops=3) as led:
        w = Ops(source=999)
        ok(led.apply(w.add(OpKind.OPEN, 1, account_kind=AccountKind.CLEARING)
                     .add(OpKind.OPEN, 10, account_kind=AccountKind.CARD).take()))
        for seq in [1, 2, 3, 10, 11, 12, 20, 7]:  # 7 comes late
            b.seq = seq
            saved[seq] = b.add(OpKind.TOPUP, CARD, CLEARING, seq).take()
            assert codes(led.apply(saved[seq].copy())) == ["OK"]
        b.seq = 15
        saved[15] = b.add(OpKind.TOPUP, CARD, CLEARING, 10**9).take()  # late and failed
        assert codes(led.apply(saved[15].copy())) == ["EXCEEDS_CAP"]
        for seq in range(1, 8):  # more ops from another source: more checkpoints
            ok(led.apply(Ops(6, seq).add(OpKind.TOPUP, CARD, CLEARING, 1).take()))
        # 1+2+3+10+11+12+20+7 = 66 from source 5, plus 7 x 1 from source 6
        assert led.balance(CARD) == 73
        for seq in sorted(saved):
            assert codes(led.apply(saved[seq].copy())) == ["ID_ALREADY_FAILED" if seq == 15 else "EXISTS"]
    with cardledger.open(path, checkpoint_ops=3) as led:
        for seq in sorted(saved):
            r = led.apply(saved[seq].copy())
            if seq == 15:
                assert codes(r) == ["ID_ALREADY_FAILED"]
            else:
                assert codes(r) == ["EXISTS"] and r[0]["amount_fen"] == seq
        for seq in [4, 8, 13, 16]:  # never used, all below the highest seq 20: new
            b.seq = seq
            assert codes(led.apply(b.add(OpKind.TOPUP, CARD, CLEARING, 1).take())) == ["OK"]
        changed = saved[2].copy()
        changed["amount_fen"] = 99
        assert codes(led.apply(changed)) == ["EXISTS_WITH_DIFFERENT_FIELDS"]
        assert led.balance(CARD) == 77  # 73 + 4 new ops of 1
        assert led.verify().ok


def test_statement_follows_a_replaced_card(world, ledger_path):
    ops = Ops(source=2, start_seq=100)  # event times T0+100… come after the world's OPENs
    fund(world, ops, CARD, cash=3_000)
    ok(world.apply(ops.add(OpKind.REPLACE, CARD, 20).add(OpKind.SPEND, 20, MERCHANT, 1_000).take()))
    old = world.statement(CARD)
    assert [OpKind(k).name for k in old["kind"]] == ["OPEN", "TOPUP", "REPLACE"]
    assert old[-1]["debit_id"] == CARD and old[-1]["credit_id"] == 20
    new = world.statement(20)
    assert [OpKind(k).name for k in new["kind"]] == ["REPLACE", "SPEND"]
    assert list(new["result_amount_fen"]) == [3_000, 1_000]
    assert new[-1]["balance_fen"] == 2_000  # 3,000 - 1,000
    world.close()
    with cardledger.open(ledger_path) as led:  # statements read back from LMDB
        assert led.statement(20).tobytes() == new.tobytes()


def test_a_hold_cannot_credit_a_subsidy_purse(world, ops):
    """Holds only ever credit a cash purse, so a card's incoming holds all count against its
    cap; a PENDING TRANSFER with SUBSIDY_PURSE is refused rather than silently capped."""
    rec = one(world, ops, OpKind.TRANSFER, PROGRAM, CARD, 400_000, flags=PENDING | SUBSIDY_PURSE)
    assert name(rec) == "INVALID_FLAGS"
    assert world.account(CARD).credits_pending == 0
    # an uncapped aid credit is an AID (or a posted TRANSFER with SUBSIDY_PURSE), never a hold
    assert name(one(world, ops, OpKind.TRANSFER, PROGRAM, CARD, 400_000, flags=SUBSIDY_PURSE)) == "OK"
    assert name(one(world, ops, OpKind.TOPUP, CARD, CLEARING, 500_000)) == "OK"
    assert purses(world, CARD) == (500_000, 400_000)
