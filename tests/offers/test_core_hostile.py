"""The core trusts no caller with its memory: offer tables or an offer state that could
make its loops read or write out of bounds are refused with ValueError, and a loaded
purchase that names accounts the ledger lacks is not found (never a crash)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cardledger import AccountKind, OfferCatalog, Result, build_ops
from cardledger.offers.tables import compile_offers
from cardledger.schema import CARD_OFFER_DTYPE, OFFER_BUDGET_DTYPE, PURCHASE_DTYPE

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


def purchase(**fields) -> np.ndarray:
    """A purchase (7, 1) of 1,000 by card 10 at merchant 5001, no offer, with `fields` changed."""
    p = np.zeros(1, PURCHASE_DTYPE)
    p[0] = (7, 1, 10, 5001, 0, 1_000, 0, 1_000, 0, 0, 0, -1, 0, 0)
    for name, value in fields.items():
        p[0][name] = value
    return p


def load(e, p) -> None:
    e.load_offer_state(np.zeros(0, OFFER_BUDGET_DTYPE), np.zeros(0, CARD_OFFER_DTYPE), p)


@pytest.mark.parametrize("fields", [
    {"slot": -5000}, {"slot": 1 << 40}, {"gross_fen": 0}, {"refunded_fen": 1_001}, {"refunded_fen": -1},
    {"card_id": 0}, {"merchant_id": 0},
], ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_an_offer_state_with_impossible_purchases_is_refused(fields):
    with pytest.raises(ValueError, match="load_offer_state"):
        load(engine_with_accounts(), purchase(**fields))


@pytest.mark.parametrize("fields", [{"card_id": 77}, {"merchant_id": 78}, {"union_id": 79, "union_fen": 5}])
def test_a_refund_of_a_loaded_purchase_naming_a_missing_account_is_not_found(fields):
    e = engine_with_accounts()
    load(e, purchase(**fields))
    r, _ = e.apply(build_ops([{"kind": "REFUND", "ref_source": 7, "ref_seq": 1, "amount_fen": 1}],
                             source=9, seq=10, time_us=T_US))
    assert r["code"][0] == Result.PURCHASE_NOT_FOUND
