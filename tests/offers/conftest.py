"""Fixtures of the purchase tests: a world of cards, merchants and the union's fund, and
a catalog builder (docs/purchases.md)."""

from __future__ import annotations

import datetime as dt

import pytest

from cardledger import AccountKind, OfferCatalog, OpKind
from helpers import Ops, codes

#: 2026-12-07 00:00 Asia/Shanghai (a Monday), µs since the epoch
MON = int(dt.datetime(2026, 12, 7, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()) * 1_000_000
HOUR = 3_600_000_000
DAY = 24 * HOUR
CLEARING, MERCHANT, MERCHANT2, UNION, CARD, CARD2 = 1, 5001, 5002, 9100, 10, 11
#: every card starts with this much in its cash purse and the union fund with UNION_FUND
CARD_CASH, UNION_FUND = 100_000, 1_000_000


def catalog(*offers: dict, merchants=None, **top) -> OfferCatalog:
    """A catalog of `offers` (dicts of offer keys) with merchants 5001 (group retail) and
    5002 (group food)."""
    return OfferCatalog.from_dict({
        "merchant": merchants if merchants is not None else [
            {"id": MERCHANT, "name": "百货", "group": "retail"},
            {"id": MERCHANT2, "name": "饭店", "group": "food"},
        ],
        "offer": list(offers),
        **top,
    })


@pytest.fixture
def shop(led):
    """A ledger with clearing 1, merchants 5001 and 5002, the union fund 9100 (SUBSIDY,
    funded 1,000,000) and cards 10 and 11 (100,000 each in the cash purse)."""
    b = Ops(source=999)
    b.add(OpKind.OPEN, CLEARING, account_kind=AccountKind.CLEARING)
    for m in (MERCHANT, MERCHANT2):
        b.add(OpKind.OPEN, m, account_kind=AccountKind.MERCHANT)
    b.add(OpKind.OPEN, UNION, account_kind=AccountKind.SUBSIDY)
    b.add(OpKind.TRANSFER, CLEARING, UNION, UNION_FUND)
    for c in (CARD, CARD2):
        b.add(OpKind.OPEN, c, account_kind=AccountKind.CARD)
        b.add(OpKind.TOPUP, c, CLEARING, CARD_CASH)
    r = led.apply(b.take())
    assert (r["code"] == 0).all(), codes(r)
    return led


class Shop:
    """Purchases and refunds, one op each, ids (7, 1), (7, 2)…"""

    def __init__(self, led) -> None:
        self.led = led
        self.b = Ops(source=7)

    def buy(self, gross, at_us=MON + 12 * HOUR, card=CARD, merchant=MERCHANT, **fields):
        """A PURCHASE; returns (result, its id's seq)."""
        seq = self.b.seq
        r = self.led.apply(self.b.add(OpKind.PURCHASE, card, merchant, gross, time_us=at_us, **fields).take())
        return r[0], seq

    def refund(self, seq, part, at_us=MON + 13 * HOUR, source=7):
        """A REFUND of `part` of purchase (source, seq)."""
        r = self.led.apply(self.b.add(OpKind.REFUND, 0, 0, part, ref_source=source, ref_seq=seq, time_us=at_us).take())
        return r[0]

    def balance(self, account_id) -> int:
        a = self.led.account(account_id)
        return a.cash_fen + a.subsidy_fen


@pytest.fixture
def till(shop):
    """A `Shop` on the `shop` ledger."""
    return Shop(shop)
