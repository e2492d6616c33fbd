"""The core trusts no caller with its memory: offer tables or an offer state that could
make its loops read or write out of bounds are refused with ValueError, and a
purchase record handed to a REFUND that names accounts the ledger lacks, or figures no
purchase has, is not found (never a crash)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cardledger import AccountKind, OfferCatalog, OpKind, Result, build_ops
from cardledger.offers.tables import compile_offers
from cardledger.schema import CARD_OFFER_DTYPE, JOURNAL_DTYPE, OFFER_BUDGET_DTYPE, REFUNDED_DTYPE

core = pytest.importorskip("cardledger._core")

T_US = 10**15


def tables():
    """One offer at merchant 5001, compiled."""
    catalog = OfferCatalog.from_dict({"merchant": [{"id": 5001, "name": "a"}],
                                      "offer": [{"id": "a", "merchants": [5001], "amount_off_fen": 1}]})
    return compile_offers(catalog, 0, {})


@pytest.mark.parametrize("damage", [
    {"merchant_offers": np.array([10**7], "<i8")},
    {"all_offers": np.array([-1], "<i8")},
    {"slot": np.array([-10**6], "<i8")},
    {"merchant_off": np.array([0, 5], "<i8")},
    {"hour_off": np.array([0, 3], "<i8")},
    {"cat_off": np.array([1, 0], "<i8")},
    {"tz_from_us": np.zeros(0, "<i8"), "tz_offset_s": np.zeros(0, "<i8")},
    {"union_share_bp": np.array([10_001], "<i8")},
    {"budget_fen": np.zeros(3, "<i8")},
], ids=lambda d: ",".join(d))
def test_offer_tables_that_point_out_of_bounds_are_refused(damage):
    with pytest.raises(ValueError, match="offer tables"):
        core.Engine().set_offer_versions([dataclasses.replace(tables(), **damage)])


def engine_with_accounts():
    e = core.Engine()
    e.set_offer_versions([tables()])
    r, _ = e.apply(build_ops([
        {"seq": 1, "kind": "OPEN", "account_id": 10, "account_kind": int(AccountKind.CARD)},
        {"seq": 2, "kind": "OPEN", "account_id": 5001, "account_kind": int(AccountKind.MERCHANT)},
    ], source=9, time_us=T_US))
    assert (r["code"] == 0).all()
    return e


def purchase_record(**fields) -> np.ndarray:
    """The journal record of a purchase (7, 1) of 1,000 by card 10 at merchant 5001, no
    offer, as the ledger would hand it to a REFUND, with `fields` changed."""
    rec = np.zeros(1, JOURNAL_DTYPE)
    rec[0]["source"], rec[0]["seq"], rec[0]["kind"] = 7, 1, OpKind.PURCHASE
    rec[0]["account_id"], rec[0]["counterparty_id"], rec[0]["amount_fen"] = 10, 5001, 1_000
    rec[0]["result_amount_fen"], rec[0]["journal_seq"], rec[0]["time_us"] = 1_000, 5, T_US
    for name, value in fields.items():
        rec[0][name] = value
    return rec


def refund(e, rec: np.ndarray, amount_fen: int = 1):
    """Apply a REFUND of purchase (7, 1), the ledger having found `rec` for it."""
    ops = build_ops([{"kind": "REFUND", "ref_source": 7, "ref_seq": 1, "amount_fen": amount_fen}],
                    source=9, seq=10, time_us=T_US)
    r, _ = e.apply(ops, None, None, None, rec)
    return r["code"][0]


@pytest.mark.parametrize("table,fields", [
    ("budgets", {"slot": -5000}), ("budgets", {"slot": 1 << 40}),
    ("refunded", {"source": 0}), ("refunded", {"refundable_fen": -1}),
], ids=lambda x: x if isinstance(x, str) else ",".join(f"{k}={v}" for k, v in x.items()))
def test_an_offer_state_that_is_not_possible_is_refused(table, fields):
    budgets, cards = np.zeros(1, OFFER_BUDGET_DTYPE), np.zeros(0, CARD_OFFER_DTYPE)
    refunded = np.zeros(1, REFUNDED_DTYPE)
    refunded[0] = (7, 1, 10)
    target = budgets if table == "budgets" else refunded
    for name, value in fields.items():
        target[0][name] = value
    with pytest.raises(ValueError, match="load_offer_state"):
        engine_with_accounts().load_offer_state(budgets, cards, refunded)


def test_a_refund_of_a_purchase_record_handed_in_is_decided_by_it():
    assert refund(engine_with_accounts(), purchase_record()) == Result.INSUFFICIENT_FUNDS  # the merchant has nothing


@pytest.mark.parametrize("fields", [
    {"account_id": 77}, {"counterparty_id": 78}, {"union_id": 79, "union_fen": 5, "result_amount_fen": 990},
    {"discounts": 1 << 30}, {"discounts": 2}, {"amount_fen": 0}, {"result_amount_fen": 1_001},
    {"subsidy_fen": -1}, {"union_id": 5001}, {"code": Result.INSUFFICIENT_FUNDS}, {"kind": OpKind.SPEND},
    {"offer_day": -3}, {"seq": 2}, {"journal_seq": 0},
], ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_a_refund_of_a_purchase_record_naming_what_no_purchase_could_is_not_found(fields):
    """A record that is no successful purchase, names a missing account or an offer slot
    past the tables, or has figures no purchase has: PURCHASE_NOT_FOUND, never a crash."""
    assert refund(engine_with_accounts(), purchase_record(**fields)) == Result.PURCHASE_NOT_FOUND


def test_a_replayed_refund_record_naming_a_missing_account_fails_the_replay():
    e = engine_with_accounts()
    rec = np.zeros(1, JOURNAL_DTYPE)
    rec[0]["source"], rec[0]["seq"], rec[0]["kind"], rec[0]["time_us"] = 9, 11, OpKind.REFUND, T_US
    rec[0]["ref_source"], rec[0]["ref_seq"], rec[0]["amount_fen"] = 7, 1, 1
    rec[0]["journal_seq"], rec[0]["debit_id"], rec[0]["credit_id"], rec[0]["result_amount_fen"] = 3, 5001, 77, 1
    with pytest.raises(ValueError):
        e.replay(rec)
