"""PURCHASE and REFUND, one rule of docs/purchases.md per test, figures worked by hand.

The `shop` fixture (conftest.py): merchants 5001 (retail) and 5002 (food), the union
fund 9100 (SUBSIDY, 1,000,000), cards 10 and 11 with 100,000 fen each in the cash
purse; MON is Monday 2026-12-07 00:00 in Asia/Shanghai.
"""

from __future__ import annotations

import pytest

import cardledger
from cardledger import AccountKind, OpFlags, OpKind, Result, SourcePolicy
from conftest import CARD, CARD2, CARD_CASH, DAY, HOUR, MERCHANT, MERCHANT2, MON, UNION, UNION_FUND, Shop, catalog
from helpers import Ops, codes

NOON = MON + 12 * HOUR


def code(r) -> str:
    return Result(int(r["code"])).name


def install(led, *offers, at_us=0, **top):
    led.install_offers(catalog(*offers, **top), at_us)


# --------------------------------------------------------------------------- discounts


def test_no_catalog_charges_the_gross(till):
    """Without any catalog a purchase is a plain payment of the gross, refundable."""
    r, seq = till.buy(5_000)
    assert code(r) == "OK" and r["amount_fen"] == 5_000
    assert till.balance(CARD) == CARD_CASH - 5_000 and till.balance(MERCHANT) == 5_000
    r = till.refund(seq, 5_000)
    assert code(r) == "OK" and r["amount_fen"] == 5_000 and till.balance(MERCHANT) == 0


def test_man_jian_needs_the_gross_to_reach_min_gross(till):
    """满100减20: 20 yuan off a gross of at least 100 yuan, nothing below it."""
    install(till.led, {"id": "m", "merchants": [MERCHANT], "amount_off_fen": 2_000, "min_gross_fen": 10_000})
    r, _ = till.buy(9_999)
    assert r["amount_fen"] == 9_999
    r, _ = till.buy(10_000)
    assert r["amount_fen"] == 8_000 and r["discounts"] > 0  # the offer is named in the record


def test_mei_man_jian_takes_the_amount_off_per_full_every(till):
    """每满100减10: a gross of 350 yuan gets 3 × 10 yuan off."""
    install(till.led, {"id": "e", "amount_off_fen": 1_000, "every_fen": 10_000})
    r, _ = till.buy(35_000)
    assert r["amount_fen"] == 32_000


def test_percent_off_is_floored_and_cut_to_max_discount(till):
    """12.5% of 999 fen is 124.875: 124 off; with max_discount_fen 100 only 100 off."""
    install(till.led, {"id": "p", "percent_off_bp": 1_250})
    r, _ = till.buy(999)
    assert r["amount_fen"] == 999 - 124
    till.led.install_offers(catalog({"id": "p", "percent_off_bp": 1_250, "max_discount_fen": 100}), NOON + HOUR)
    r, _ = till.buy(999, at_us=NOON + 2 * HOUR)
    assert r["amount_fen"] == 899


def test_discount_never_exceeds_the_gross(till):
    """50 yuan off a 30-yuan purchase (no min): the purchase is free, D = gross."""
    install(till.led, {"id": "big", "amount_off_fen": 5_000})
    r, _ = till.buy(3_000)
    assert code(r) == "OK" and r["amount_fen"] == 0 and till.balance(MERCHANT) == 0


def test_largest_discount_wins_and_a_tie_goes_to_the_first_listed(till):
    """Offers of 10%, 15 yuan and 15 yuan on 100 yuan: the first 15-yuan offer wins."""
    install(till.led, {"id": "ten", "percent_off_bp": 1_000}, {"id": "a", "amount_off_fen": 1_500},
            {"id": "b", "amount_off_fen": 1_500})
    assert till.led.quote_purchase(CARD, MERCHANT, 10_000, NOON).offer_id == "a"
    r, _ = till.buy(10_000)
    assert r["amount_fen"] == 8_500
    assert till.led.offer_report()["a"].purchases == 1 and till.led.offer_report()["b"].purchases == 0


def test_merchant_groups_and_merchants_choose_the_candidates(till):
    """An offer for group food applies at 5002 only; one for every merchant applies at both."""
    install(till.led, {"id": "food", "merchant_groups": ["food"], "amount_off_fen": 500},
            {"id": "all", "amount_off_fen": 100})
    assert till.led.quote_purchase(CARD, MERCHANT2, 1_000, NOON).offer_id == "food"
    assert till.led.quote_purchase(CARD, MERCHANT, 1_000, NOON).offer_id == "all"


def test_categories_limit_an_offer_to_cards_of_those_categories(till):
    """An offer for category 2 does not apply to card 10 (category 0)."""
    install(till.led, {"id": "c2", "categories": [2], "amount_off_fen": 500})
    assert till.led.quote_purchase(CARD, MERCHANT, 1_000, NOON).offer_id is None
    b = Ops(source=3)
    assert code(till.led.apply(b.add(OpKind.SET_CATEGORY, CARD, category=2, time_us=MON).take())[0]) == "OK"
    assert till.led.quote_purchase(CARD, MERCHANT, 1_000, NOON).offer_id == "c2"


# --------------------------------------------------------------------------- local time


def test_hours_are_local_with_an_exclusive_end(till):
    """hours 11:00-14:00 Beijing time: 13:59 is in, 14:00 and 10:59 are out."""
    install(till.led, {"id": "lunch", "hours": ["11:00-14:00"], "amount_off_fen": 100})
    q = till.led.quote_purchase
    assert q(CARD, MERCHANT, 1_000, MON + 13 * HOUR + 59 * 60_000_000).offer_id == "lunch"
    assert q(CARD, MERCHANT, 1_000, MON + 14 * HOUR).offer_id is None
    assert q(CARD, MERCHANT, 1_000, MON + 11 * HOUR - 60_000_000).offer_id is None


def test_days_of_week_are_iso_and_local(till):
    """days_of_week [7]: Sunday 2026-12-06 in Beijing (Saturday 16:00 UTC onwards) only."""
    install(till.led, {"id": "sun", "days_of_week": [7], "amount_off_fen": 100})
    q = till.led.quote_purchase
    assert q(CARD, MERCHANT, 1_000, MON - 1).offer_id == "sun"  # Sunday 23:59:59 local
    assert q(CARD, MERCHANT, 1_000, MON).offer_id is None  # Monday 00:00 local
    assert q(CARD, MERCHANT, 1_000, MON - DAY).offer_id == "sun"  # Sunday 00:00 local


def test_valid_dates_are_local_and_inclusive(till):
    """valid_from = valid_to = 2026-12-07: the whole local day, not a second more."""
    install(till.led, {"id": "d", "valid_from": "2026-12-07", "valid_to": "2026-12-07", "amount_off_fen": 100})
    q = till.led.quote_purchase
    assert q(CARD, MERCHANT, 1_000, MON).offer_id == "d"
    assert q(CARD, MERCHANT, 1_000, MON + DAY - 1).offer_id == "d"
    assert q(CARD, MERCHANT, 1_000, MON - 1).offer_id is None
    assert q(CARD, MERCHANT, 1_000, MON + DAY).offer_id is None


# --------------------------------------------------------------------------- limits


def test_per_card_day_count_limits_purchases_per_local_day(till):
    """每人每日限1次: the second purchase that day pays the gross; the next day it applies again."""
    install(till.led, {"id": "once", "amount_off_fen": 100, "per_card_day_count": 1})
    assert till.buy(1_000)[0]["amount_fen"] == 900
    assert till.buy(1_000)[0]["amount_fen"] == 1_000
    assert till.buy(1_000, card=CARD2)[0]["amount_fen"] == 900  # another card
    assert till.buy(1_000, at_us=NOON + DAY)[0]["amount_fen"] == 900


def test_per_card_month_discount_cuts_the_discount(till):
    """A month limit of 250 fen with 100 off each: 100, 100, then 50, then nothing."""
    install(till.led, {"id": "m", "amount_off_fen": 100, "per_card_month_discount_fen": 250})
    assert [till.buy(1_000)[0]["amount_fen"] for _ in range(4)] == [900, 900, 950, 1_000]
    assert till.buy(1_000, at_us=MON + 30 * DAY)[0]["amount_fen"] == 900  # January


def test_a_purchase_dated_before_the_cards_counters_gets_nothing_from_a_limited_offer(till):
    """The counters hold the card's latest day and month with an offer: a purchase dated
    ahead (a wrong clock) does not lift the limits for today, and late uploads of an
    earlier day or month get no discount from a day- or month-limited offer (they cannot
    be counted in their own day or month); a card that never had the offer is unaffected."""
    install(till.led, {"id": "d", "amount_off_fen": 1_000, "per_card_day_count": 1,
                       "per_card_month_discount_fen": 1_000})
    assert till.buy(100, at_us=MON + 365 * DAY)[0]["amount_fen"] == 0  # next year: 100 fen off 100
    assert [till.buy(5_000, at_us=NOON + k)[0]["amount_fen"] for k in range(3)] == [5_000] * 3
    assert till.buy(5_000, card=CARD2)[0]["amount_fen"] == 4_000
    assert till.led.offer_report()["d"].discount_fen == 1_100


def test_late_uploads_of_an_earlier_day_do_not_exceed_the_day_limit(till):
    """Monday's and Tuesday's purchases got the 1-a-day offer; three more of Monday's,
    uploaded after Tuesday's, pay the gross."""
    install(till.led, {"id": "once", "amount_off_fen": 100, "per_card_day_count": 1})
    assert till.buy(1_000, at_us=NOON)[0]["amount_fen"] == 900
    assert till.buy(1_000, at_us=NOON + DAY)[0]["amount_fen"] == 900
    assert [till.buy(1_000, at_us=NOON + k)[0]["amount_fen"] for k in range(1, 4)] == [1_000] * 3


def test_refunding_a_purchase_its_offer_did_not_count_leaves_the_counters_alone(till):
    """A purchase under a version of offer x without card limits is not counted; after x
    gains a 1-a-day limit and is used today, refunding the earlier purchase frees nothing."""
    install(till.led, {"id": "x", "amount_off_fen": 1_000})
    _, first = till.buy(5_000, at_us=MON + 11 * HOUR)
    install(till.led, {"id": "x", "amount_off_fen": 1_000, "per_card_day_count": 1,
                       "per_card_month_discount_fen": 1_000}, at_us=NOON)
    assert till.buy(5_000, at_us=NOON)[0]["amount_fen"] == 4_000
    assert code(till.refund(first, 5_000, at_us=NOON + 5 * 60_000_000)) == "OK"
    assert till.buy(5_000, at_us=NOON + 10 * 60_000_000)[0]["amount_fen"] == 5_000
    assert till.led.verify().ok


def test_budget_is_cut_then_exhausted(till):
    """A budget of 250 fen: 100, 100, 50, then the offer has nothing left to give."""
    install(till.led, {"id": "b", "amount_off_fen": 100, "budget_fen": 250})
    assert [till.buy(1_000, card=c)[0]["amount_fen"] for c in (CARD, CARD2, CARD, CARD2)] == [900, 900, 950, 1_000]
    assert till.led.offer_report()["b"].budget_left_fen == 0


def test_exhausted_offer_leaves_room_to_the_next_best(till):
    """Once the bigger offer's budget is spent, the smaller one applies."""
    install(till.led, {"id": "big", "amount_off_fen": 500, "budget_fen": 500}, {"id": "small", "amount_off_fen": 100})
    assert till.buy(1_000)[0]["amount_fen"] == 500
    assert till.led.quote_purchase(CARD, MERCHANT, 1_000, NOON).offer_id == "small"


# --------------------------------------------------------------------------- funding


def test_union_pays_its_share_and_the_merchant_the_rest(till):
    """D = 2,000 with union_share_bp 3,333: U = floor(2,000 × 3,333 / 10,000) = 666.
    The card pays N = 8,000; the merchant gets N + U = 8,666; the union fund pays 666."""
    install(till.led, {"id": "u", "amount_off_fen": 2_000, "union_share_bp": 3_333, "union_account": UNION})
    q = till.led.quote_purchase(CARD, MERCHANT, 10_000, NOON)
    assert (q.net_fen, q.discount_fen, q.union_fen, q.offer_id) == (8_000, 2_000, 666, "u")
    r, _ = till.buy(10_000)
    assert code(r) == "OK" and r["amount_fen"] == 8_000 and r["balance_fen"] == CARD_CASH - 8_000
    assert till.balance(MERCHANT) == 8_666 and till.balance(UNION) == UNION_FUND - 666
    f = till.led.offer_report()["u"]
    assert (f.discount_fen, f.union_fen, f.purchases, f.budget_left_fen) == (2_000, 666, 1, None)


def test_union_account_short_makes_the_offer_no_candidate(till):
    """A union fund with less than U: that offer is skipped, the next one applies."""
    b = Ops(source=4)
    till.led.apply(b.add(OpKind.OPEN, 9200, account_kind=AccountKind.SUBSIDY).take())
    install(till.led, {"id": "poor", "amount_off_fen": 2_000, "union_share_bp": 10_000, "union_account": 9200},
            {"id": "plain", "amount_off_fen": 100})
    r, _ = till.buy(10_000)
    assert r["amount_fen"] == 9_900 and till.balance(9200) == 0


def test_insufficient_funds_moves_nothing(till):
    """A card that cannot pay N: INSUFFICIENT_FUNDS; balances, budget and counters unchanged."""
    install(till.led, {"id": "b", "amount_off_fen": 100, "budget_fen": 1_000, "per_card_day_count": 1,
                       "union_share_bp": 5_000, "union_account": UNION})
    r, _ = till.buy(CARD_CASH + 101)
    assert code(r) == "INSUFFICIENT_FUNDS"
    assert till.balance(CARD) == CARD_CASH and till.balance(UNION) == UNION_FUND and till.balance(MERCHANT) == 0
    assert till.led.offer_report()["b"].budget_left_fen == 1_000
    assert till.buy(1_000)[0]["amount_fen"] == 900  # the day count is untouched too


@pytest.mark.parametrize("kind, expected", [(OpKind.FREEZE, "ACCOUNT_FROZEN")])
def test_frozen_card_cannot_purchase(till, kind, expected):
    """A frozen card is refused as SPEND refuses it."""
    till.led.apply(Ops(source=4).add(kind, CARD, time_us=MON).take())
    assert code(till.buy(100)[0]) == expected


def test_purchase_needs_a_merchant(till):
    """The counterparty must be a MERCHANT account."""
    assert code(till.buy(100, merchant=UNION)[0]) == "WRONG_COUNTERPARTY_KIND"


# --------------------------------------------------------------------------- refunds


def test_refund_in_parts_floors_each_share_and_the_last_part_is_exact(till):
    """G = 10,000, D = 3,333 (33.33%), N = 6,667 from the cash purse, U = floor(3,333/2) = 1,666.
    Refund 3,000 then 7,000: the card gets floor(6,667 × 3,000/10,000) = 2,000, then the
    rest 4,667; the union floor(1,666 × 0.3) = 499, then 1,167."""
    install(till.led, {"id": "p", "percent_off_bp": 3_333, "union_share_bp": 5_000, "union_account": UNION,
                       "budget_fen": 10_000})
    r, seq = till.buy(10_000)
    assert r["amount_fen"] == 6_667 and till.balance(UNION) == UNION_FUND - 1_666
    r1 = till.refund(seq, 3_000)
    assert code(r1) == "OK" and r1["amount_fen"] == 2_000
    assert till.balance(UNION) == UNION_FUND - 1_666 + 499
    assert till.led.offer_report()["p"].budget_left_fen == 10_000 - 3_333 + 999  # floor(3,333 × 0.3)
    r2 = till.refund(seq, 7_000)
    assert r2["amount_fen"] == 4_667
    assert till.balance(CARD) == CARD_CASH and till.balance(UNION) == UNION_FUND and till.balance(MERCHANT) == 0
    f = till.led.offer_report()["p"]
    assert (f.discount_fen, f.union_fen, f.purchases, f.budget_left_fen) == (0, 0, 0, 10_000)


def test_refund_returns_each_purse_its_own_share(till):
    """A card with 300 in its subsidy purse pays N = 1,000: S = 300, C = 700. Half refunded:
    subsidy gets 150, cash 350."""
    b = Ops(source=4)
    b.add(OpKind.OPEN, 3, account_kind=AccountKind.PROGRAM).add(OpKind.TRANSFER, 1, 3, 300)
    b.add(OpKind.AID, CARD, 3, 300)
    assert codes(till.led.apply(b.take())) == ["OK"] * 3
    r, seq = till.buy(1_000)
    assert r["amount_fen"] == 1_000
    a = till.led.account(CARD)
    assert (a.cash_fen, a.subsidy_fen) == (CARD_CASH - 700, 0)
    r = till.refund(seq, 500)
    a = till.led.account(CARD)
    assert r["amount_fen"] == 500 and (a.cash_fen, a.subsidy_fen) == (CARD_CASH - 350, 150)


def test_refund_returns_the_day_count_with_the_last_part_only(till):
    """每人每日限1次: after a partial refund the offer is still used today; after the last part it is free again."""
    install(till.led, {"id": "once", "amount_off_fen": 100, "per_card_day_count": 1})
    _, seq = till.buy(1_000)
    till.refund(seq, 500)
    assert till.led.quote_purchase(CARD, MERCHANT, 1_000, NOON + HOUR).offer_id is None
    till.refund(seq, 500)
    assert till.led.quote_purchase(CARD, MERCHANT, 1_000, NOON + HOUR).offer_id == "once"


def test_refund_returns_the_month_discount_proportionally(till):
    """A month limit of 100: after a half refund of a 100-off purchase, 50 can be given again."""
    install(till.led, {"id": "m", "amount_off_fen": 100, "per_card_month_discount_fen": 100})
    _, seq = till.buy(1_000)
    till.refund(seq, 500)
    assert till.led.quote_purchase(CARD, MERCHANT, 1_000, NOON + HOUR).discount_fen == 50


def test_refund_beyond_the_gross_is_exceeds_refundable(till):
    """A 1,000 gross: 600 then 401 is too much; 400 is fine; then nothing more."""
    _, seq = till.buy(1_000)
    assert code(till.refund(seq, 600)) == "OK"
    assert code(till.refund(seq, 401)) == "EXCEEDS_REFUNDABLE"
    assert code(till.refund(seq, 400)) == "OK"
    assert code(till.refund(seq, 1)) == "EXCEEDS_REFUNDABLE"


def test_refund_of_an_unknown_or_non_purchase_id_is_purchase_not_found(till):
    """A refund naming no purchase (or a failed one, or a TOPUP) is PURCHASE_NOT_FOUND."""
    assert code(till.refund(12345, 1)) == "PURCHASE_NOT_FOUND"
    assert code(till.refund(1, 1, source=999)) == "PURCHASE_NOT_FOUND"  # the shop's OPEN
    r, seq = till.buy(CARD_CASH + 1)
    assert code(r) == "INSUFFICIENT_FUNDS"
    assert code(till.refund(seq, 1)) == "PURCHASE_NOT_FOUND"


def test_merchant_may_not_go_negative(till):
    """The merchant withdrew its takings: the refund is INSUFFICIENT_FUNDS and moves nothing."""
    _, seq = till.buy(1_000)
    b = Ops(source=4)
    assert code(till.led.apply(b.add(OpKind.WITHDRAW, MERCHANT, 1, 1_000).take())[0]) == "OK"
    r = till.refund(seq, 1)
    assert code(r) == "INSUFFICIENT_FUNDS" and till.balance(CARD) == CARD_CASH - 1_000


def test_cash_cap_never_refuses_a_refund(till):
    """A card topped up to its cap after the purchase still gets its refund."""
    _, seq = till.buy(1_000)
    b = Ops(source=4)
    assert code(till.led.apply(b.add(OpKind.TOPUP, CARD, 1, 500_000 - CARD_CASH + 1_000).take())[0]) == "OK"
    r = till.refund(seq, 1_000)
    assert code(r) == "OK" and till.balance(CARD) == 501_000
    assert till.led.verify().ok  # above the cap by a refund: not a problem


def test_refund_of_a_replaced_cards_purchase_is_account_closed(till):
    """REPLACE closes the old card: as a tap of it cannot be reversed, its purchase cannot
    be refunded by REFUND (docs/purchases.md)."""
    _, seq = till.buy(1_000)
    till.led.apply(Ops(source=4).add(OpKind.REPLACE, CARD, 12).take())
    assert code(till.refund(seq, 1_000)) == "ACCOUNT_CLOSED"


def test_refund_in_the_same_batch_as_its_purchase(till):
    """A purchase and its refund in one batch: the refund finds it."""
    b = Ops(source=8)
    b.add(OpKind.PURCHASE, CARD, MERCHANT, 1_000, time_us=NOON)
    b.add(OpKind.REFUND, 0, 0, 1_000, ref_source=8, ref_seq=1, time_us=NOON + 1)
    r = till.led.apply(b.take())
    assert codes(r) == ["OK", "OK"] and till.balance(CARD) == CARD_CASH


def test_replayed_ids_answer_exists_or_different_fields(till):
    """The same PURCHASE again: EXISTS with its figures; with another gross:
    EXISTS_WITH_DIFFERENT_FIELDS; nothing moves twice."""
    install(till.led, {"id": "b", "amount_off_fen": 100})
    b = Ops(source=8)
    ops = b.add(OpKind.PURCHASE, CARD, MERCHANT, 1_000, time_us=NOON).take()
    assert code(till.led.apply(ops)[0]) == "OK"
    again = till.led.apply(ops)[0]
    assert code(again) == "EXISTS" and again["amount_fen"] == 900
    ops["amount_fen"] = 2_000
    assert code(till.led.apply(ops)[0]) == "EXISTS_WITH_DIFFERENT_FIELDS"
    assert till.balance(CARD) == CARD_CASH - 900


def test_failed_chain_rolls_back_budget_and_counters(till):
    """A linked PURCHASE whose chain fails gives its budget and day count back."""
    install(till.led, {"id": "b", "amount_off_fen": 100, "budget_fen": 100, "per_card_day_count": 1})
    b = Ops(source=8)
    b.add(OpKind.PURCHASE, CARD, MERCHANT, 1_000, time_us=NOON, flags=int(OpFlags.LINKED))
    b.add(OpKind.SPEND, CARD, MERCHANT, 10 * CARD_CASH, time_us=NOON)
    assert codes(till.led.apply(b.take())) == ["LINKED_FAILED", "INSUFFICIENT_FUNDS"]
    assert till.led.offer_report()["b"].budget_left_fen == 100
    assert till.buy(1_000)[0]["amount_fen"] == 900


# --------------------------------------------------------------------------- versions


def test_catalog_versions_apply_by_effective_time(till):
    """Version 2 from 13:00: a purchase at 12:00 gets version 1's offer, at 13:00 version 2's;
    the same offer id keeps its budget across versions."""
    till.led.install_offers(catalog({"id": "x", "amount_off_fen": 100, "budget_fen": 300}), 0)
    till.led.install_offers(catalog({"id": "x", "amount_off_fen": 200, "budget_fen": 300}), NOON + HOUR)
    assert till.buy(1_000)[0]["amount_fen"] == 900
    assert till.buy(1_000, at_us=NOON + HOUR)[0]["amount_fen"] == 800
    assert till.led.offer_report()["x"].budget_left_fen == 0


def test_a_version_must_start_after_every_purchase(till):
    """No version may start at or before a purchase already applied (replay stays the same)."""
    till.buy(1_000)
    with pytest.raises(ValueError):
        till.led.install_offers(catalog({"id": "x", "amount_off_fen": 100}), NOON)
    till.led.install_offers(catalog({"id": "x", "amount_off_fen": 100}), NOON + 1)


# --------------------------------------------------------------------------- durability


def test_state_survives_checkpoint_close_reopen_and_verify(till, ledger_path):
    """Budgets, counters and refund progress come back from the checkpoint and the
    journal's replay, and verify finds the replay equal to the live state."""
    install(till.led, {"id": "b", "amount_off_fen": 100, "budget_fen": 1_000, "per_card_day_count": 1,
                       "union_share_bp": 5_000, "union_account": UNION})
    _, seq = till.buy(1_000)
    till.refund(seq, 300)
    till.led.checkpoint()
    till.buy(1_000, card=CARD2)
    assert till.led.verify().ok
    report = till.led.offer_report()
    till.led.close()
    with cardledger.open(ledger_path) as again:
        assert again.offer_report() == report
        assert again.verify().ok
        s = Shop(again)
        s.b = Ops(source=7, start_seq=100)
        assert code(s.refund(seq, 700)) == "OK"
        assert code(s.refund(seq, 1)) == "EXCEEDS_REFUNDABLE"
        # refunded in full: today's use of the offer is given back
        assert again.quote_purchase(CARD, MERCHANT, 1_000, NOON).offer_id == "b"


def test_a_refund_finds_a_purchase_from_before_the_checkpoint_in_the_journal(till, ledger_path):
    """The engine keeps no purchase: a purchase decided before the last checkpoint (out
    of the engine's window) is read from the journal through the id index, live and
    after a reopen, and each part moves its floor shares as for a recent purchase."""
    install(till.led, {"id": "h", "percent_off_bp": 3_333, "per_card_day_count": 1, "budget_fen": 100_000,
                       "union_share_bp": 5_000, "union_account": UNION})
    r, seq = till.buy(10_000)
    assert (code(r), r["amount_fen"]) == ("OK", 6_667)
    till.led.checkpoint()  # the window is cleared: the purchase is only in the journal now
    r = till.refund(seq, 3_000)
    assert (code(r), r["amount_fen"]) == ("OK", 2_000)
    till.led.close()
    with cardledger.open(ledger_path) as again:
        s = Shop(again)
        s.b = Ops(source=7, start_seq=100)
        r = s.refund(seq, 7_000)
        assert (code(r), r["amount_fen"]) == ("OK", 4_667)
        assert code(s.refund(seq, 1)) == "EXCEEDS_REFUNDABLE"
        f = again.offer_report()["h"]
        assert (f.discount_fen, f.union_fen, f.purchases, f.budget_left_fen) == (0, 0, 0, 100_000)
        assert again.quote_purchase(CARD, MERCHANT, 1_000, NOON).offer_id == "h"  # today's use given back
        assert again.verify().ok


def test_only_refunded_purchases_are_kept_in_the_offer_state(till):
    """A purchase costs the engine's state nothing for its refunds: only a purchase
    refunded so far is kept, with the gross left to refund."""
    install(till.led, {"id": "k", "amount_off_fen": 100})
    seqs = [till.buy(1_000)[1] for _ in range(5)]
    till.refund(seqs[1], 400)
    till.refund(seqs[3], 1_000)
    _, _, refunded = till.led._engine.export_offer_state()
    assert refunded.tolist() == [(7, seqs[1], 600), (7, seqs[3], 0)]


def test_refund_records_say_what_they_moved(till):
    """A REFUND's record carries the budget's part, the purchase's counted day and the
    gross left to refund; the purchase's record its discount and counted day."""
    install(till.led, {"id": "c", "amount_off_fen": 1_000, "per_card_day_count": 2})
    _, seq = till.buy(10_000)
    till.refund(seq, 2_500)
    till.refund(seq, 7_500)
    recs = till.led.journal()
    buy, part, last = recs[recs["kind"] == OpKind.PURCHASE][-1], *recs[recs["kind"] == OpKind.REFUND][-2:]
    day = (NOON + 8 * 3_600_000_000) // 86_400_000_000  # the local (UTC+8) day of NOON
    assert (buy["offer_fen"], buy["offer_day"], buy["refundable_fen"]) == (1_000, day + 1, 0)
    assert (part["offer_fen"], part["offer_day"], part["refundable_fen"]) == (250, day + 1, 7_500)
    assert (last["offer_fen"], last["offer_day"], last["refundable_fen"]) == (750, day + 1, 0)


def test_recover_keeps_the_catalogs_and_replays_the_purchases(till, ledger_path, tmp_path):
    """`recover` copies the offer catalogs beside the journal: the new ledger replays
    every purchase to the same discounts and verifies."""
    from cardledger.recover import recover

    install(till.led, {"id": "u", "amount_off_fen": 2_000, "union_share_bp": 5_000, "union_account": UNION,
                       "budget_fen": 10_000})
    _, seq = till.buy(10_000)
    till.refund(seq, 2_500)
    report = till.led.offer_report()
    till.led.close()
    result = recover(ledger_path, str(tmp_path / "new"))
    assert not result.problems
    with cardledger.open(str(tmp_path / "new")) as new:
        assert new.offer_report() == report and new.verify().ok
        with pytest.raises(ValueError):  # the latest purchase time came along too
            new.install_offers(catalog({"id": "x", "amount_off_fen": 1}), NOON)


def test_offer_totals_that_would_pass_int64_are_overflow(till):
    """Free purchases of AMOUNT_MAX_FEN (100% off, no budget): the offer's total discount
    would pass 2^63 - 1 at the 9,224th, which is refused with OVERFLOW, as every total is."""
    install(till.led, {"id": "free", "percent_off_bp": 10_000})
    b = Ops(source=8)
    for _ in range(9_224):
        b.add(OpKind.PURCHASE, CARD, MERCHANT, cardledger.schema.AMOUNT_MAX_FEN, time_us=NOON)
    r = till.led.apply(b.take())
    assert (r["code"][:-1] == Result.OK).all() and code(r[-1]) == "OVERFLOW"


def test_no_offer_applies_past_the_calendar_limit(till):
    """Past TAP_TIME_US_MAX (the year 6536) no local calendar is computed: the gross is charged."""
    install(till.led, {"id": "all", "amount_off_fen": 100})
    r, _ = till.buy(1_000, at_us=cardledger.schema.TAP_TIME_US_MAX + 1)
    assert code(r) == "OK" and r["amount_fen"] == 1_000


def test_aid_to_a_card_left_above_its_cap_by_a_refund(till):
    """A refund may leave a card's cash purse above its cap; aid still arrives (in the
    subsidy purse), a top-up does not (EXCEEDS_CAP)."""
    _, seq = till.buy(1_000)
    b = Ops(source=4)
    b.add(OpKind.TOPUP, CARD, 1, 500_000 - CARD_CASH + 1_000)
    b.add(OpKind.OPEN, 3, account_kind=AccountKind.PROGRAM).add(OpKind.TRANSFER, 1, 3, 500)
    assert codes(till.led.apply(b.take())) == ["OK"] * 3
    assert code(till.refund(seq, 1_000)) == "OK"
    b.add(OpKind.AID, CARD, 3, 500).add(OpKind.TOPUP, CARD, 1, 1)
    assert codes(till.led.apply(b.take())) == ["OK", "EXCEEDS_CAP"]
    assert till.led.account(CARD).subsidy_fen == 500


def test_hold_released_on_a_card_a_refund_left_above_its_cap(till):
    """A card holds 100 (a PENDING transfer), gets a refund that takes it past its cap,
    then the hold is voided: the 100 comes back though the card is above its cap."""
    _, seq = till.buy(1_000)
    b = Ops(source=4)
    b.add(OpKind.TOPUP, CARD, 1, 500_000 - CARD_CASH + 1_000)
    b.add(OpKind.TRANSFER, CARD, MERCHANT2, 100, flags=int(OpFlags.PENDING))
    assert codes(till.led.apply(b.take())) == ["OK", "OK"]
    assert code(till.refund(seq, 1_000)) == "OK"
    hold_seq = b.seq - 1
    assert code(till.led.apply(b.add(OpKind.VOID, ref_source=4, ref_seq=hold_seq).take())[0]) == "OK"
    assert till.balance(CARD) == 501_000 and till.led.verify().ok


def test_a_refund_is_allowed_only_to_a_source_whose_policy_covers_the_purchases_merchant(shop):
    """A REFUND names its purchase, not accounts: a POS whose policy lists one merchant
    as counterparty may refund that merchant's purchases and no other's
    (SOURCE_NOT_ALLOWED, nothing moves), whichever source made the purchase."""
    till = Shop(shop)  # source 7: sells at either merchant
    own, own_seq = till.buy(10_000, merchant=MERCHANT)
    other, other_seq = till.buy(10_000, merchant=MERCHANT2)
    assert own["code"] == other["code"] == Result.OK
    shop.install_policies([
        SourcePolicy(7, 7, [OpKind.PURCHASE, OpKind.REFUND]),
        SourcePolicy(20, 20, [OpKind.REFUND], counterparties=[MERCHANT]),
    ])
    pos = Ops(source=20)
    before = {a: till.balance(a) for a in (CARD, MERCHANT, MERCHANT2)}
    r = shop.apply(pos.add(OpKind.REFUND, 0, 0, 1_000, ref_source=7, ref_seq=other_seq,
                           time_us=MON + 13 * HOUR).take())
    assert r["code"][0] == Result.SOURCE_NOT_ALLOWED
    assert {a: till.balance(a) for a in (CARD, MERCHANT, MERCHANT2)} == before
    r = shop.apply(pos.add(OpKind.REFUND, 0, 0, 1_000, ref_source=7, ref_seq=own_seq,
                           time_us=MON + 13 * HOUR).take())
    assert r["code"][0] == Result.OK and r["amount_fen"][0] == 1_000
    assert till.balance(CARD) == before[CARD] + 1_000
    assert shop.verify().ok


@pytest.mark.parametrize("checkpoint_ops", [1, 2, 3, 5])
def test_a_refund_finds_its_purchase_across_every_checkpoint_and_id_flush(tmp_path, checkpoint_ops):
    """Checkpoints every few ops: each REFUND batch may be the one whose transaction
    takes an id flush, and the purchase's id may be only in that flush; it is found
    there, as `_lookup_prior` finds a resent op's (every part is OK)."""
    from conftest import CLEARING

    with cardledger.open(str(tmp_path / "l"), checkpoint_ops=checkpoint_ops, create=True) as led:
        b = Ops(source=999)
        b.add(OpKind.OPEN, CLEARING, account_kind=AccountKind.CLEARING)
        b.add(OpKind.OPEN, MERCHANT, account_kind=AccountKind.MERCHANT)
        b.add(OpKind.OPEN, CARD, account_kind=AccountKind.CARD)
        b.add(OpKind.TOPUP, CARD, CLEARING, CARD_CASH)
        assert (led.apply(b.take())["code"] == 0).all()
        s = Shop(led)
        _, seq = s.buy(1_000)
        got = [code(s.refund(seq, 1)) for _ in range(12)]
        assert got == ["OK"] * 12
        assert led.verify().ok


def test_reserving_offer_counters_changes_no_result(till):
    """reserve_offer_counters is memory only: the same purchases decide the same with
    and without it, and a reservation below one counter per card is refused."""
    install(till.led, {"id": "d", "amount_off_fen": 100, "per_card_day_count": 1})
    till.led.reserve_offer_counters(3)
    r1, _ = till.buy(1_000)
    r2, _ = till.buy(1_000)
    assert (r1["amount_fen"], r2["amount_fen"]) == (900, 1_000)  # the day's one discount, then none
    with pytest.raises(ValueError, match="counters_per_card"):
        till.led.reserve_offer_counters(0)
    assert till.led.verify().ok
