"""The union's leg of a purchase and of a refund: the third account a journal record
moves money on (`union_id`, `union_fen`), seen by settlement, the day close, queries,
statements, balances as of a time and exports (docs/purchases.md, docs/reconciliation.md).

One day of the `shop` (conftest.py), worked by hand. Offer "p": 33.33 % off, half of
the discount paid by the union fund 9100.

- 10:00 card 10 buys 10,000 at merchant 5001: D = 3,333, N = 6,667, U = 1,666; the
  merchant is credited 8,333.
- 11:00 card 11 buys 3,000 at merchant 5002: D = 999, N = 2,001, U = 499; the merchant
  is credited 2,500.
- 13:00 3,000 of the first refunded: the card gets floor(6,667 × 0.3) = 2,000, the
  union floor(1,666 × 0.3) = 499; the merchant is debited 2,499.
- 14:00 6 of the second refunded: the card gets floor(2,001 × 6 / 3,000) = 4, the union
  floor(499 × 6 / 3,000) = 0: a record with no union leg; the merchant is debited 4.
"""

from __future__ import annotations

import csv

import pytest

import cardledger
from cardledger import OpKind
from cardledger.days import service_day
from conftest import CARD, CARD2, CARD_CASH, HOUR, MERCHANT, MERCHANT2, MON, UNION, UNION_FUND
from test_purchases import code, install

DAY = service_day("2026-12-07")
#: Per account: (ops, debits_fen, credits_fen) of the day, by hand (module docstring).
EXPECTED = {
    CARD: (2, 6_667, 2_000),
    CARD2: (2, 2_001, 4),
    MERCHANT: (2, 2_499, 8_333),
    MERCHANT2: (2, 4, 2_500),
    UNION: (3, 1_666 + 499, 499),
}


@pytest.fixture
def day(till):
    """The shop after the day of the module docstring: (the Shop, each account's
    available balance before the day, the records of the four ops)."""
    install(till.led, {"id": "p", "percent_off_bp": 3_333, "union_share_bp": 5_000, "union_account": UNION})
    before = {a: till.balance(a) for a in EXPECTED}
    r1, seq1 = till.buy(10_000, at_us=MON + 10 * HOUR)
    r2, seq2 = till.buy(3_000, at_us=MON + 11 * HOUR, card=CARD2, merchant=MERCHANT2)
    r3 = till.refund(seq1, 3_000, at_us=MON + 13 * HOUR)
    r4 = till.refund(seq2, 6, at_us=MON + 14 * HOUR)
    assert [code(r) for r in (r1, r2, r3, r4)] == ["OK"] * 4
    assert [int(r["amount_fen"]) for r in (r1, r2, r3, r4)] == [6_667, 2_001, 2_000, 4]
    recs = till.led.journal(int(r1["journal_seq"]), int(r4["journal_seq"]) + 1)
    return till, before, recs


def test_each_record_names_its_union_leg(day):
    """A PURCHASE names the union account and U; a REFUND part the union account and its
    u, or no union leg when u is 0. The other fields are as before: the card and the
    merchant, result_amount_fen the card's side."""
    _, _, recs = day
    assert recs["kind"].tolist() == [OpKind.PURCHASE, OpKind.PURCHASE, OpKind.REFUND, OpKind.REFUND]
    assert recs["union_id"].tolist() == [UNION, UNION, UNION, 0]
    assert recs["union_fen"].tolist() == [1_666, 499, 499, 0]
    assert recs["debit_id"].tolist() == [CARD, CARD2, MERCHANT, MERCHANT2]
    assert recs["credit_id"].tolist() == [MERCHANT, MERCHANT2, CARD, CARD2]


def test_a_days_settlement_balances_and_matches_each_accounts_balance_change(day):
    """Per account, the day's settlement posts each side its true amount (the merchant
    N + U, the union U); total debits equal total credits; each account's credits less
    debits is its balance's change over the day."""
    till, before, _ = day
    rows = {int(r["account_id"]): r for r in till.led.settle(*DAY)}
    assert set(rows) == set(EXPECTED)
    for a, (ops, debits, credits) in EXPECTED.items():
        row = rows[a]
        assert (int(row["ops"]), int(row["debits_fen"]), int(row["credits_fen"])) == (ops, debits, credits), a
        assert credits - debits == till.balance(a) - before[a], a
    table = till.led.settle(*DAY)
    assert int(table["debits_fen"].sum()) == int(table["credits_fen"].sum()) == 13_336


def test_settlement_of_all_time_is_every_accounts_posted_totals_union_included(day):
    """Over all time, the settlement is each account's debits_posted and credits_posted
    (the union's and the merchants' included), and debits equal credits."""
    till, _, _ = day
    rows = till.led.settle(None, None)
    accounts = {int(a["id"]): a for a in till.led.accounts()}
    for row in rows:
        a = accounts[int(row["account_id"])]
        assert (int(row["debits_fen"]), int(row["credits_fen"])) == (int(a["debits_posted"]), int(a["credits_posted"]))
    assert int(rows["debits_fen"].sum()) == int(rows["credits_fen"].sum())


@pytest.mark.parametrize("implementation", ["python", "cython"])
def test_both_sums_give_the_same_rows(day, implementation):
    """The core's AccountTotals and the reference one give the same rows with union legs."""
    if implementation == "cython":
        pytest.importorskip("cardledger._core")
    till, _, _ = day
    from cardledger import settlement

    rows = settlement.settle(till.led.batches(), till.led.accounts(), *DAY, implementation)
    assert rows.tobytes() == till.led.settle(*DAY).tobytes()


def test_query_statement_and_balance_as_of_show_the_union_accounts_legs(day):
    """The union account's query and statement hold its legs (its OPEN and funding
    TRANSFER, both purchases, the refund part with a u); its balance as of a time counts them, and so
    does a merchant's."""
    till, _, recs = day
    led = till.led
    legs = recs[recs["union_id"] == UNION]["journal_seq"].tolist()
    assert led.query(*DAY, account_id=UNION)["journal_seq"].tolist() == legs
    stmt = led.statement(UNION)
    assert stmt["kind"].tolist() == [OpKind.OPEN, OpKind.TRANSFER, OpKind.PURCHASE, OpKind.PURCHASE, OpKind.REFUND]
    assert stmt["journal_seq"].tolist()[2:] == legs
    assert led.statement(UNION, *DAY).tobytes() == led.query(*DAY, account_id=UNION).tobytes()
    assert led.balance(UNION, MON + 12 * HOUR) == UNION_FUND - 1_666 - 499
    assert led.balance(UNION, MON + 24 * HOUR) == led.balance(UNION) == UNION_FUND - 1_666 - 499 + 499
    assert led.balance(MERCHANT, MON + 12 * HOUR) == 8_333
    assert led.balance(MERCHANT) == 8_333 - 2_499
    assert led.balance(CARD, MON + 12 * HOUR) == CARD_CASH - 6_667
    # a merchant's statement is its chain, as before: its OPEN, its purchase and refund
    assert led.statement(MERCHANT)["journal_seq"].tolist()[1:] == recs["journal_seq"][[0, 2]].tolist()


def test_a_closed_day_with_union_legs_reproduces_after_reopen_and_verifies(day, ledger_path):
    """Closing the day records the settlement with the union legs (its total the day's
    debits, 13,336); the report reproduces it after a reopen and verify holds."""
    till, _, _ = day
    report = till.led.close_day(*DAY)
    assert {a["account_id"]: (a["ops"], a["debits_fen"], a["credits_fen"]) for a in report["accounts"]} == EXPECTED
    till.led.close()
    with cardledger.open(ledger_path) as again:
        assert again.day_report(*DAY)["accounts"] == report["accounts"]
        assert again.verify().ok


def test_exports_carry_the_union_columns_and_the_writers_agree(day, tmp_path, monkeypatch):
    """CSV, JSON lines and Parquet exports have the union_id and union_fen columns; the
    core's, pyarrow's and the plain writers' text are the same bytes."""
    import json

    import pyarrow.parquet as pq

    import cardledger.exports as ex

    till, _, _ = day
    ex.export(ex.select(till.led.batches(), *DAY), tmp_path / "day.csv", "csv")
    rows = list(csv.DictReader(open(tmp_path / "day.csv", encoding="utf-8")))
    assert [(r["union_id"], r["union_fen"]) for r in rows] == [(str(UNION), "1666"), (str(UNION), "499"),
                                                               (str(UNION), "499"), ("0", "0")]
    ex.export(ex.select(till.led.batches(), *DAY), tmp_path / "day.parquet", "parquet")
    assert pq.read_table(tmp_path / "day.parquet").column("union_fen").to_pylist() == [1_666, 499, 499, 0]
    for fmt in ("csv", "jsonl"):
        ex.export(till.led.batches(), tmp_path / f"default.{fmt}", fmt)
        with monkeypatch.context() as m:
            m.setattr(ex.engines, "IMPLEMENTATION", ex.engines.PYTHON)
            ex.export(till.led.batches(), tmp_path / f"arrow.{fmt}", fmt)
            m.setattr(ex, "_have_pyarrow", lambda: False)
            ex.export(till.led.batches(), tmp_path / f"plain.{fmt}", fmt)
        plain = (tmp_path / f"plain.{fmt}").read_bytes()
        assert (tmp_path / f"default.{fmt}").read_bytes() == plain == (tmp_path / f"arrow.{fmt}").read_bytes()
    last = json.loads((tmp_path / "plain.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert (last["union_id"], last["union_fen"]) == (0, 0)
    assert ex.COLUMNS[-7:] == ("union_id", "union_fen", "offer_fen", "offer_day", "refundable_fen", "time", "result")
