"""The core decides every PURCHASE as the reference engine does, on catalogs built for
the core's shortcuts (docs/purchases.md, "How the core decides").

The core does not cut every candidate to the card's limits: it cuts from the largest
discount bound down and stops when no bound left can beat the best so far. These tests
aim at what that could get wrong: an offer listed first with the same bound as a later
one but cut by a card limit, equal discounts, union accounts that cannot pay, spent
budgets, and more candidates than the core gathers at a time.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import CLEARING, HOUR, MERCHANT, MON, UNION, catalog
from helpers import HYPOTHESIS_EXAMPLES, Ops, codes
from hypothesis import given, settings
from hypothesis import strategies as st

from cardledger import AccountKind, OpKind
from cardledger.engine.spec import batch as reference
from cardledger.offers.catalog import OfferCatalog
from cardledger.offers.tables import compile_versions
from cardledger.schema import JOURNAL_DTYPE, OP_DTYPE

core = pytest.importorskip("cardledger._core")

NOON = MON + 12 * HOUR
DAY = 24 * HOUR
#: the world of the random catalogs: merchants 4 (group a) and 5 (group b); union
#: funds that can pay anything (6), almost nothing (7) or are frozen (8); cards 10-14
MERCHANTS, RICH, POOR, FROZEN, CARDS = (4, 5), 6, 7, 8, tuple(range(10, 15))
#: grosses on which offers of 5%, 10%, 20% and 50-200 fen off often give the same discount
GROSSES = (500, 1_000, 1_000, 2_000, 2_500, 5_000)


def tie_catalog(r: random.Random, n: int) -> OfferCatalog:
    """n offers whose discounts collide: few terms, card limits that cut an offer to
    below a later one's, small budgets, union shares paid by a fund that cannot."""
    offers = []
    for k in range(n):
        o: dict = {"id": f"o{k}"}
        where = r.random()
        if where < 0.4:
            o["merchants"] = [r.choice(MERCHANTS)]
        elif where < 0.55:
            o["merchant_groups"] = [r.choice(("a", "b"))]
        o["percent_off_bp"] = r.choice((0, 500, 1_000, 2_000))
        if o["percent_off_bp"] == 0 or r.random() < 0.2:
            o["amount_off_fen"] = r.choice((50, 100, 200))
            if r.random() < 0.2:
                o["every_fen"] = 1_000
        if r.random() < 0.2:
            o["min_gross_fen"] = r.choice((1_000, 2_000))
        if r.random() < 0.2:
            o["max_discount_fen"] = r.choice((100, 200))
        if r.random() < 0.1:
            o["categories"] = [r.choice((0, 1))]
        if r.random() < 0.1:
            o["hours"] = ["11:00-12:00"]
        o["per_card_day_count"] = r.choice((0, 0, 1, 2))
        o["per_card_month_discount_fen"] = r.choice((0, 0, 100, 250))
        o["budget_fen"] = r.choice((0, 0, 0, 300, 1_000))
        if r.random() < 0.5:
            o["union_share_bp"] = r.choice((5_000, 10_000))
            o["union_account"] = r.choice((RICH, POOR, POOR, FROZEN, CARDS[0], 77))
        offers.append(o)
    return OfferCatalog.from_dict({
        "merchant": [{"id": 4, "name": "A", "group": "a"}, {"id": 5, "name": "B", "group": "b"}],
        "offer": offers,
    })


def _ops(rows: list[dict], source: int, first_seq: int) -> np.ndarray:
    ops = np.zeros(len(rows), dtype=OP_DTYPE)
    for i, row in enumerate(rows):
        ops[i]["source"], ops[i]["seq"] = source, first_seq + i
        for k, v in row.items():
            ops[i][k] = v
    return ops


def _world() -> np.ndarray:
    """OPEN the accounts, fund the cards and the union funds, freeze fund 8."""
    rows: list[dict] = [dict(kind=OpKind.OPEN, account_id=1, account_kind=AccountKind.CLEARING)]
    rows += [dict(kind=OpKind.OPEN, account_id=m, account_kind=AccountKind.MERCHANT) for m in MERCHANTS]
    rows += [dict(kind=OpKind.OPEN, account_id=u, account_kind=AccountKind.SUBSIDY) for u in (RICH, POOR, FROZEN)]
    rows += [dict(kind=OpKind.OPEN, account_id=c, account_kind=AccountKind.CARD, category=c % 2) for c in CARDS]
    rows += [dict(kind=OpKind.TRANSFER, account_id=1, counterparty_id=u, amount_fen=a)
             for u, a in ((RICH, 10**9), (POOR, 60), (FROZEN, 10**9))]
    rows += [dict(kind=OpKind.TOPUP, account_id=c, counterparty_id=1, amount_fen=10**7) for c in CARDS]
    rows.append(dict(kind=OpKind.FREEZE, account_id=FROZEN))
    for row in rows:
        row["time_us"] = MON - 2 * DAY
    return _ops(rows, 1, 1)


def run_both(seed: int, batches: int) -> None:
    """Random catalogs (two versions), purchases and partial refunds at the world's cards
    and merchants over a few days of two months: results, journals, offer state and
    quotes are the reference engine's."""
    r = random.Random(seed)
    engines = [reference.Engine(), core.Engine()]
    n1, n2 = r.choice((2, 6, 25, 70, 140)), r.choice((3, 25, 90))
    versions = compile_versions([(MON - DAY, tie_catalog(r, n1)), (MON + 3 * DAY, tie_catalog(r, n2))])[0]
    for e in engines:
        e.set_offer_versions(versions)
    bought: list[int] = []
    seq = 1
    for b in range(batches):
        if b == 0:
            ops = _world()
        else:
            rows = []
            for _ in range(r.randrange(1, 30)):
                day = r.choice((0, 0, 1, 2, 3, 4, 25))  # 25: the next month
                t = MON + day * DAY + r.choice((11, 12, 13)) * HOUR + r.randrange(HOUR)
                if bought and r.random() < 0.15:
                    rows.append(dict(kind=OpKind.REFUND, amount_fen=r.choice((100, 400, 1_000)),
                                     ref_source=2, ref_seq=r.choice(bought), time_us=t))
                else:
                    bought.append(seq + len(rows))
                    rows.append(dict(kind=OpKind.PURCHASE, account_id=r.choice(CARDS),
                                     counterparty_id=r.choice(MERCHANTS + (MERCHANTS[0], 99)),
                                     amount_fen=r.choice(GROSSES), time_us=t))
            ops = _ops(rows, 2, seq)
            seq += len(rows)
        outs = [e.apply(ops, np.zeros(len(ops), JOURNAL_DTYPE), np.zeros(len(ops), bool)) for e in engines]
        (r_ref, j_ref), (r_core, j_core) = outs
        assert r_ref.tobytes() == r_core.tobytes(), f"seed {seed} batch {b}: results differ"
        assert j_ref.tobytes() == j_core.tobytes(), f"seed {seed} batch {b}: journals differ"
        for x, y in zip(engines[0].export_offer_state(), engines[1].export_offer_state()):
            assert x.tobytes() == y.tobytes(), f"seed {seed} batch {b}: offer state differs"
        for _ in range(10):
            q = (r.choice(CARDS + (99,)), r.choice(MERCHANTS + (99,)), r.choice(GROSSES),
                 MON + r.choice((0, 1, 4)) * DAY + r.choice((11, 12)) * HOUR)
            assert engines[0].quote_purchase(*q) == engines[1].quote_purchase(*q), f"seed {seed}: quote {q} differs"


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_core_decides_as_the_reference_on_catalogs_full_of_ties(seed: int) -> None:
    run_both(seed, batches=12)


def test_many_seeds_of_ties_limits_and_short_union_funds() -> None:
    """A fixed sweep (the hypothesis examples above vary): 60 seeds."""
    for seed in range(60):
        run_both(seed, batches=8)


# ------------------------------------------------------------------ the cases by hand


def _install(led, *offers) -> None:
    led.install_offers(catalog(*offers), 0)


def test_the_first_listed_wins_a_tie_until_its_card_limit_cuts_it(till):
    """10% (once a day per card) and 1 yuan off on 10 yuan: the same bound; the first
    listed wins the first purchase, the second once the first's day count is used."""
    _install(till.led, {"id": "first", "percent_off_bp": 1_000, "per_card_day_count": 1},
             {"id": "second", "amount_off_fen": 100})
    assert till.led.quote_purchase(10, MERCHANT, 1_000, NOON).offer_id == "first"
    r, _ = till.buy(1_000, at_us=NOON)
    assert r["amount_fen"] == 900
    q = till.led.quote_purchase(10, MERCHANT, 1_000, NOON + HOUR)
    assert q.offer_id == "second" and q.discount_fen == 100


def test_a_month_limit_cuts_the_largest_bound_below_a_later_offer(till):
    """20% capped at 1.5 yuan a month per card, then 1 yuan off: after a purchase that
    used 1 yuan of the month's 1.5, the first gives 0.5 and the second wins."""
    _install(till.led, {"id": "big", "percent_off_bp": 2_000, "per_card_month_discount_fen": 150},
             {"id": "small", "amount_off_fen": 100})
    r, _ = till.buy(500, at_us=NOON)
    assert r["amount_fen"] == 400  # big: 20% of 5 yuan
    q = till.led.quote_purchase(10, MERCHANT, 1_000, NOON + HOUR)
    assert q.offer_id == "small" and q.discount_fen == 100


def test_an_offer_whose_union_fund_cannot_pay_gives_way_to_an_equal_later_one(till):
    """Two offers of 10%, the first listed with its union share paid by a fund holding
    0.5 yuan: on 10 yuan its 1 yuan share cannot be paid, so the later one wins; on 5
    yuan it can, and the first listed wins the tie."""
    b = Ops(source=998)
    b.add(OpKind.OPEN, 9200, account_kind=AccountKind.SUBSIDY)
    b.add(OpKind.TRANSFER, CLEARING, 9200, 50)
    r = till.led.apply(b.take())
    assert (r["code"] == 0).all(), codes(r)
    _install(till.led, {"id": "short", "percent_off_bp": 1_000, "union_share_bp": 10_000, "union_account": 9200},
             {"id": "funded", "percent_off_bp": 1_000, "union_share_bp": 10_000, "union_account": UNION})
    q = till.led.quote_purchase(10, MERCHANT, 1_000, NOON)
    assert q.offer_id == "funded" and q.union_fen == 100
    q = till.led.quote_purchase(10, MERCHANT, 500, NOON)  # a share of 0.5 yuan: it can pay
    assert q.offer_id == "short" and q.union_fen == 50


def test_a_later_offer_of_the_same_discount_does_not_win(till):
    """Equal discounts, the later one with no limits: the first listed still wins."""
    _install(till.led, {"id": "a", "amount_off_fen": 100, "per_card_month_discount_fen": 1_000},
             {"id": "b", "percent_off_bp": 1_000})
    assert till.led.quote_purchase(10, MERCHANT, 1_000, NOON).offer_id == "a"


def test_an_earlier_offer_ties_a_later_one_cut_to_its_discount_by_the_card_limit(till):
    """1 yuan off, then 20% capped at 1 yuan a month per card: on 10 yuan the second's
    bound (2 yuan) is the larger, but cut to 1 yuan it only ties the first, which wins."""
    _install(till.led, {"id": "flat", "amount_off_fen": 100},
             {"id": "capped", "percent_off_bp": 2_000, "per_card_month_discount_fen": 100})
    q = till.led.quote_purchase(10, MERCHANT, 1_000, NOON)
    assert q.offer_id == "flat" and q.discount_fen == 100
