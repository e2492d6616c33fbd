"""Settlement: per account, the ops of a time range and what they posted. Over all
time it equals every account's posted totals, whatever ops ran (holds count when
posted, never when placed or voided); over a day, only that day's event times."""

from __future__ import annotations

import random

from helpers import HYPOTHESIS_EXAMPLES, Ops, open_cards
from helpers.opgen import OpWorld
from hypothesis import example, given, settings
from hypothesis import strategies as st

import cardledger
from cardledger import OpKind
from cardledger.days import service_day


@settings(max_examples=max(5, HYPOTHESIS_EXAMPLES // 4), deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_settlement_of_all_time_is_every_accounts_posted_totals(tmp_path_factory, seed):
    rng = random.Random(seed)
    world = OpWorld(rng)
    path = str(tmp_path_factory.mktemp("settle") / "ledger")
    with cardledger.open(path, create=True) as led:
        led.apply(world.setup_batch())
        for _ in range(15):
            led.apply(world.batch(rng.randrange(1, 30), rng.choice((0.0, 0.2))))
        rows = led.settle(None, None)
        accounts = led.accounts()
    by_id = {int(a["id"]): a for a in accounts}
    for row in rows:
        a = by_id[int(row["account_id"])]
        assert (int(row["debits_fen"]), int(row["credits_fen"])) == (int(a["debits_posted"]), int(a["credits_posted"]))
        assert int(row["account_kind"]) == int(a["kind"])
    untouched = set(by_id) - {int(r["account_id"]) for r in rows}
    assert all(by_id[i]["debits_posted"] == by_id[i]["credits_posted"] == 0 for i in untouched)


@settings(max_examples=max(5, HYPOTHESIS_EXAMPLES // 4), deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
@example(seed=5)  # purchases with union legs and a refund of one
def test_with_offers_every_range_settles_to_equal_debits_and_credits(tmp_path_factory, seed):
    """With random offer catalogs in force (union shares, refunds in parts), the
    settlement of any time range posts as much on debit sides as on credit sides (a
    purchase's union leg included), and that of all time is every account's posted
    totals."""
    from helpers.opgen import OFFERS_V2_US, T0_US, random_catalog

    rng = random.Random(seed)
    world = OpWorld(rng)
    path = str(tmp_path_factory.mktemp("settle") / "ledger")
    with cardledger.open(path, create=True) as led:
        led.install_offers(random_catalog(rng), T0_US)
        led.install_offers(random_catalog(rng), OFFERS_V2_US)
        led.apply(world.setup_batch())
        for _ in range(15):
            led.apply(world.batch(rng.randrange(1, 30), rng.choice((0.0, 0.2))))
        ranges = [(None, None)] + [tuple(sorted(rng.randrange(T0_US, T0_US + 10**9) for _ in range(2)))
                                   for _ in range(5)]
        for start, end in ranges:
            rows = led.settle(start, end)
            assert int(rows["debits_fen"].sum()) == int(rows["credits_fen"].sum()), (start, end)
        rows = led.settle(None, None)
        accounts = {int(a["id"]): a for a in led.accounts()}
    for row in rows:
        a = accounts[int(row["account_id"])]
        assert (int(row["debits_fen"]), int(row["credits_fen"])) == (int(a["debits_posted"]), int(a["credits_posted"]))


def test_a_days_settlement_counts_that_days_event_times_only(led):
    start, end = service_day("2027-01-15")
    open_cards(led, [100], 1)  # (in 2026: outside the day)
    b = Ops(source=9)
    for t, fen in ((start - 1, 100), (start, 200), (end - 1, 300), (end, 400)):
        b.add(OpKind.TOPUP, 100, 1, fen, time_us=t)
    assert (led.apply(b.take())["code"] == 0).all()
    rows = {int(r["account_id"]): r for r in led.settle(start, end)}
    assert int(rows[100]["credits_fen"]) == 500 and int(rows[100]["ops"]) == 2
    assert int(rows[1]["debits_fen"]) == 500


def test_the_settle_command_prints_a_days_accounts(ledger_path):
    import json
    import subprocess
    import sys

    start, _ = service_day("2027-01-15")
    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, [100], 1)
        led.apply(Ops(source=9).add(OpKind.TOPUP, 100, 1, 700, time_us=start + 5).take())
    proc = subprocess.run([sys.executable, "-m", "cardledger", "settle", ledger_path, "--day", "2027-01-15", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["start_us"] == start
    assert {a["account_id"]: (a["account_kind"], a["credits_fen"], a["debits_fen"]) for a in out["accounts"]} == {
        1: ("CLEARING", 0, 700), 100: ("CARD", 700, 0)}


# ---------------------------------------------------------------- closing a day


def _day_ops(led, start, fens, source):
    b = Ops(source=source)
    for k, fen in enumerate(fens):
        b.add(OpKind.TOPUP, 100, 1, fen, time_us=start + 1_000 * (k + 1))
    assert (led.apply(b.take())["code"] == 0).all()


def test_a_closed_day_reports_exactly_what_was_closed_and_late_items_apart(led):
    d1 = service_day("2027-01-15")
    d2 = service_day("2027-01-16")
    open_cards(led, [100], 1)
    _day_ops(led, d1[0], [100, 200], 30)
    closed = led.close_day(*d1)
    assert closed["closed"] and closed["late"] == []
    assert {a["account_id"]: a["credits_fen"] for a in closed["accounts"]} == {100: 300, 1: 0}
    # A validator's late upload for the closed day, then the next day's ops.
    _day_ops(led, d1[0] + 10_000, [7], 31)
    _day_ops(led, d2[0], [50], 32)
    again = led.day_report(*d1)
    assert again["accounts"] == closed["accounts"]  # what was closed, exactly
    assert {a["account_id"]: a["credits_fen"] for a in again["late"]} == {100: 7, 1: 0}
    live = led.settle(*d1)
    assert dict(zip(live["account_id"].tolist(), live["credits_fen"].tolist())) == {1: 0, 100: 307}  # the live figure
    second = led.close_day(*d2)
    assert [(x["start_us"], {a["account_id"]: a["credits_fen"] for a in x["accounts"]}) for x in second["late"]] == [
        (d1[0], {100: 7, 1: 0})]  # reported by the next close, once
    third_day = service_day("2027-01-17")
    assert led.close_day(*third_day)["late"] == []  # not again
    assert led.close_day(*d1)["already_closed"]
    assert led.verify().ok


def test_a_close_is_journaled_and_refused_when_forged(led):
    from cardledger.schema import CLOSE_DAY_SOURCE

    d1 = service_day("2027-01-15")
    open_cards(led, [100], 1)
    forged = Ops(source=5).add(OpKind.CLOSE_DAY, 0, 0, 0, time_us=d1[0], limit_fen=d1[1]).take()
    assert cardledger.Result(int(led.apply(forged)["code"][0])).name == "INVALID_DAY_CLOSE"
    led.close_day(*d1)
    recs = led.query(kinds=[OpKind.CLOSE_DAY])
    assert len(recs) == 1 and int(recs[0]["source"]) == CLOSE_DAY_SOURCE and int(recs[0]["seq"]) == d1[0] // 1_000_000
