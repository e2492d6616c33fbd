"""Queries that cost what they return: successful ops selected by event time, account,
kinds and user_data, ordered by (time_us, journal_seq); a balance as of a time. The
time index lets a range read only the batches that meet it."""

from __future__ import annotations

import pytest
from helpers import Ops, open_cards

import cardledger
from cardledger import OpKind
from cardledger.store import timeidx

T = 1_800_000_000_000_000
H = 3_600_000_000


def _day(led):
    """Three batches at 08:00, 09:00 and 10:00, a late upload at 08:30 in a fourth."""
    open_cards(led, [100, 101], 10_000)
    for k, (hour, fen) in enumerate(((8, 100), (9, 200), (10, 300))):
        b = Ops(source=10 + k)
        b.add(OpKind.SPEND, 100, 2, fen, time_us=T + hour * H, user_data=hour)
        b.add(OpKind.TOPUP, 101, 1, fen, time_us=T + hour * H + 1)
        led.apply(b.take())
    led.apply(Ops(source=20).add(OpKind.SPEND, 101, 2, 7, time_us=T + 8 * H + H // 2).take())


def test_a_time_range_selects_by_event_time_in_order_with_late_uploads(led):
    _day(led)
    got = led.query(T + 8 * H, T + 10 * H)
    assert got["time_us"].tolist() == [T + 8 * H, T + 8 * H + 1, T + 8 * H + H // 2, T + 9 * H, T + 9 * H + 1]
    assert (got["code"] == 0).all()


def test_filters_combine_and_limit_cuts(led):
    _day(led)
    spends = led.query(T, T + 24 * H, kinds=[OpKind.SPEND])
    assert spends["amount_fen"].tolist() == [100, 7, 200, 300]
    assert led.query(T, T + 24 * H, account_id=101, kinds=[OpKind.SPEND])["amount_fen"].tolist() == [7]
    assert led.query(user_data=9)["amount_fen"].tolist() == [200]
    assert led.query(T, T + 24 * H, limit=2)["time_us"].tolist() == [T + 8 * H, T + 8 * H + 1]
    assert led.query(account_id=100)["journal_seq"].tolist() == led.statement(100)["journal_seq"].tolist()


def test_a_range_reads_only_the_batches_that_meet_it(led):
    _day(led)
    store = led._store
    with store.begin_read() as txn:
        meeting = timeidx.batches_meeting(txn, store, T + 10 * H, T + 11 * H)
    assert len(meeting) == 1  # the 10:00 batch alone (the cards' setup is in 2026)


def test_batches_without_a_time_index_entry_are_read_and_reindex_writes_them(led):
    _day(led)
    want = led.query(T, T + 24 * H)
    with led._store.begin_write() as txn:  # as a ledger written before the index
        for last in list(timeidx.spans(txn, led._store.state_db)):
            txn.delete(timeidx.TIME_INDEX_PREFIX + timeidx.KEY.pack(last), db=led._store.state_db)
    assert led.query(T, T + 24 * H).tobytes() == want.tobytes()
    assert led.reindex() == 5 and led.reindex() == 0
    assert led.query(T, T + 24 * H).tobytes() == want.tobytes()


def test_a_balance_as_of_a_time_counts_the_records_before_it(led):
    _day(led)
    assert led.balance(100, as_of_us=T) == 10_000
    assert led.balance(100, as_of_us=T + 9 * H) == 9_900
    assert led.balance(100, as_of_us=T + 9 * H + 1) == 9_700
    assert led.balance(101, as_of_us=T + 9 * H) == 10_093  # the late 08:30 spend counts
    assert led.balance(100) == led.balance(100, as_of_us=T + 48 * H) == 9_400


def test_query_refuses_a_negative_limit(led):
    with pytest.raises(ValueError):
        led.query(limit=-1)


@pytest.mark.skipif(cardledger.IMPLEMENTATION != "cython", reason="compares the Cython core with the reference")
def test_both_engines_answer_every_query_alike_on_random_ops(tmp_path):
    """The same random batches into a ledger on each engine: every query, settlement
    and balance as of a time comes back byte for byte the same."""
    import random

    from helpers.opgen import T0_US, OpWorld

    rng = random.Random(20261207)
    world = OpWorld(rng)
    batches = [world.setup_batch()] + [world.batch(rng.randrange(1, 40), 0.2) for _ in range(25)]
    leds = [cardledger.open(str(tmp_path / e), create=True, engine=e) for e in ("cython", "python")]
    try:
        for b in batches:
            r = [led.apply(b.copy()) for led in leds]
            assert r[0].tobytes() == r[1].tobytes()
        span = 10**9
        for _ in range(40):
            lo = T0_US + rng.randrange(span)
            hi = lo + rng.randrange(span // 2)
            acct = rng.choice([None, *world.cards[:5], 1, 2])
            kinds = rng.choice([None, [OpKind.SPEND], [OpKind.TOPUP, OpKind.AID], [OpKind.TRANSFER, OpKind.POST]])
            args = dict(start_us=rng.choice([lo, None]), end_us=rng.choice([hi, None]), account_id=acct, kinds=kinds,
                        limit=rng.choice([None, 5]))
            try:
                got = [led.query(**args) for led in leds]
            except cardledger.AccountNotFoundError:
                continue
            assert got[0].tobytes() == got[1].tobytes(), args
            s = [led.settle(lo, hi) for led in leds]
            assert s[0].tobytes() == s[1].tobytes()
        for card in world.cards[:8]:
            try:
                bal = [led.balance(card, as_of_us=T0_US + span // 2) for led in leds]
            except cardledger.AccountNotFoundError:
                continue
            assert bal[0] == bal[1]
    finally:
        for led in leds:
            led.close()


def test_a_balance_as_of_a_time_for_a_merchant_agrees_with_its_records(led):
    _day(led)
    # The merchant (2) took 100 at 08:00, 7 at 08:30, 200 at 09:00 and 300 at 10:00.
    assert led.balance(2, as_of_us=T + 9 * H) == 107
    assert led.balance(2, as_of_us=T + 11 * H) == led.balance(2) == 607
