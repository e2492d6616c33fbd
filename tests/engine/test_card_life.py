"""A card's life from issue to use: OPEN with OpFlags.INACTIVE issues a card that takes
credits (aid may come before the card is handed over) and refuses every debit and tap
with ACCOUNT_INACTIVE until OpKind.ACTIVATE. Both engines run these (the suite runs
once per engine)."""

from __future__ import annotations

import pytest
from helpers import Ops, codes

from cardledger import AccountKind, OpFlags, OpKind, Result, TapType


@pytest.fixture
def issued(led):
    """Clearing 1, merchant 2, program 3 (budget 100,000), card 10 issued inactive."""
    b = Ops(source=900)
    b.add(OpKind.OPEN, 1, account_kind=AccountKind.CLEARING)
    b.add(OpKind.OPEN, 2, account_kind=AccountKind.MERCHANT)
    b.add(OpKind.OPEN, 3, account_kind=AccountKind.PROGRAM)
    b.add(OpKind.TRANSFER, 1, 3, 100_000)
    b.add(OpKind.OPEN, 10, account_kind=AccountKind.CARD, flags=OpFlags.INACTIVE)
    r = led.apply(b.take())
    assert (r["code"] == 0).all(), codes(r)
    return led


def test_an_inactive_card_takes_top_ups_and_aid(issued):
    r = issued.apply(Ops(source=1).add(OpKind.TOPUP, 10, 1, 5_000).add(OpKind.AID, 10, 3, 700).take())
    assert codes(r) == ["OK", "OK"]
    info = issued.account(10)
    assert info.inactive and info.cash_fen == 5_000 and info.subsidy_fen == 700


def test_an_inactive_card_refuses_every_debit(issued):
    issued.apply(Ops(source=1).add(OpKind.TOPUP, 10, 1, 5_000).take())
    b = Ops(source=2)
    b.add(OpKind.SPEND, 10, 2, 100)
    b.add(OpKind.WITHDRAW, 10, 1, 100)
    b.add(OpKind.TRANSFER, 10, 2, 100)
    b.add(OpKind.TRANSFER, 10, 2, 100, flags=OpFlags.PENDING)
    assert codes(issued.apply(b.take())) == ["ACCOUNT_INACTIVE"] * 4
    assert issued.balance(10) == 5_000


def test_an_inactive_card_refuses_a_tap(issued):
    issued.apply(Ops(source=1).add(OpKind.TOPUP, 10, 1, 5_000).take())
    # (The packaged Harbin fare system installs itself on the first tap.)
    r = issued.apply(Ops(source=3).add(OpKind.TAP, 10, route=0, stop=0, tap=TapType.BOARD).take())
    assert codes(r) == ["ACCOUNT_INACTIVE"]
    assert issued.balance(10) == 5_000


def test_activate_hands_the_card_over(issued):
    issued.apply(Ops(source=1).add(OpKind.TOPUP, 10, 1, 5_000).take())
    r = issued.apply(Ops(source=4).add(OpKind.ACTIVATE, 10).add(OpKind.SPEND, 10, 2, 100).take())
    assert codes(r) == ["OK", "OK"]
    assert not issued.account(10).inactive and issued.balance(10) == 4_900


def test_activating_an_active_card_succeeds_and_changes_nothing(issued):
    issued.apply(Ops(source=4).add(OpKind.ACTIVATE, 10).take())
    r = issued.apply(Ops(source=5).add(OpKind.ACTIVATE, 10).take())
    assert codes(r) == ["OK"] and not issued.account(10).inactive


def test_activate_names_one_existing_open_card(issued):
    b = Ops(source=6)
    b.add(OpKind.ACTIVATE, 0)
    b.add(OpKind.ACTIVATE, 77)
    b.add(OpKind.ACTIVATE, 2)
    b.add(OpKind.ACTIVATE, 10, counterparty_id=1)
    assert codes(issued.apply(b.take())) == [
        "INVALID_ACCOUNT_ID", "ACCOUNT_NOT_FOUND", "WRONG_ACCOUNT_KIND", "COUNTERPARTY_MUST_BE_ZERO"]
    issued.apply(Ops(source=7).add(OpKind.CLOSE, 10, 1).take())
    assert codes(issued.apply(Ops(source=8).add(OpKind.ACTIVATE, 10).take())) == ["ACCOUNT_CLOSED"]


def test_only_a_card_can_be_issued_inactive(led):
    r = led.apply(Ops(source=1).add(OpKind.OPEN, 5, account_kind=AccountKind.MERCHANT, flags=OpFlags.INACTIVE).take())
    assert codes(r) == ["INVALID_FLAGS"]


def test_an_inactive_card_can_be_closed_or_replaced_by_the_office(issued):
    issued.apply(Ops(source=1).add(OpKind.TOPUP, 10, 1, 5_000).take())
    r = issued.apply(Ops(source=9).add(OpKind.REPLACE, 10, 11).take())
    assert codes(r) == ["OK"]
    # The replacement is handed over at the window: it is active.
    assert not issued.account(11).inactive and issued.balance(11) == 5_000


def test_an_inactive_card_survives_reopen_and_a_checkpoint(issued, ledger_path):
    import cardledger

    issued.checkpoint()
    issued.close()
    with cardledger.open(ledger_path) as led:
        assert led.account(10).inactive
        assert codes(led.apply(Ops(source=2).add(OpKind.SPEND, 10, 2, 1).take())) == [Result.ACCOUNT_INACTIVE.name]
        assert led.verify().ok


# ---------------------------------------------------------------- rider category


def test_set_category_changes_a_cards_category_from_its_time_on(issued):
    r = issued.apply(Ops(source=20).add(OpKind.SET_CATEGORY, 10, category=1).take())
    assert codes(r) == ["OK"]
    info = issued.account(10)
    assert (info.category, info.category_before) == (1, 0) and info.category_since_us > 0


def test_set_category_refuses_a_change_older_than_the_last_one(issued):
    later = Ops(source=21).add(OpKind.SET_CATEGORY, 10, category=2).take()
    later["time_us"] += 10_000
    issued.apply(later)
    earlier = Ops(source=22).add(OpKind.SET_CATEGORY, 10, category=3).take()
    assert codes(issued.apply(earlier)) == ["CATEGORY_CHANGED_LATER"]
    assert issued.account(10).category == 2


def test_set_category_names_one_existing_open_card(issued):
    b = Ops(source=23)
    b.add(OpKind.SET_CATEGORY, 77, category=1)
    b.add(OpKind.SET_CATEGORY, 2, category=1)
    b.add(OpKind.SET_CATEGORY, 10, 1, category=1)
    assert codes(issued.apply(b.take())) == ["ACCOUNT_NOT_FOUND", "WRONG_ACCOUNT_KIND", "COUNTERPARTY_MUST_BE_ZERO"]


def test_replace_carries_the_category_and_its_history_over(issued):
    issued.apply(Ops(source=24).add(OpKind.SET_CATEGORY, 10, category=1).take())
    issued.apply(Ops(source=25).add(OpKind.REPLACE, 10, 11).take())
    old, new = issued.account(10), issued.account(11)
    assert (new.category, new.category_before, new.category_since_us) == (1, 0, old.category_since_us)


# ---------------------------------------------------------------- members


def test_a_cards_member_is_its_opens_user_data_and_replace_carries_it_over(led):
    b = Ops(source=30)
    b.add(OpKind.OPEN, 1, account_kind=AccountKind.CLEARING, user_data=555)  # not a card: no member
    b.add(OpKind.OPEN, 20, account_kind=AccountKind.CARD, user_data=9_001)
    b.add(OpKind.OPEN, 21, account_kind=AccountKind.CARD, user_data=9_002)
    b.add(OpKind.OPEN, 22, account_kind=AccountKind.CARD, user_data=9_001)
    assert (led.apply(b.take())["code"] == 0).all()
    r = led.apply(Ops(source=31).add(OpKind.REPLACE, 20, 23, user_data=4).take())
    assert codes(r) == ["OK"]
    assert led.cards_of_member(9_001) == [20, 22, 23]  # the replaced card too, oldest first
    assert led.cards_of_member(9_002) == [21] and led.cards_of_member(555) == []
    assert led.account(23).member_ref == 9_001


def test_cards_of_member_refuses_member_zero(led):
    with pytest.raises(ValueError):
        led.cards_of_member(0)
