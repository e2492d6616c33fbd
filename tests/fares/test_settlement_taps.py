"""Settlement with taps: a metro ENTRY holds and its EXIT posts, an overdue entry is
settled by the next tap, a REVERSE posts the fare back. Over all time the settlement
still equals every account's posted totals."""

from __future__ import annotations

from test_taps import BOARD, ENTRY, EXIT, GATE, T, hb, reverse  # noqa: F401 - hb is a fixture


def test_taps_settle_to_the_posted_totals(hb):
    card = hb.card(100, 5000)
    other = hb.card(101, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_taipingqiao")
    hb.tap(card, T(8, 20), EXIT, "metro_1", "m1_railway_bureau")
    hb.tap(card, T(9), BOARD, "bus_1", "bs_0001")
    reverse(hb, card, (GATE, hb.gate_seq), 1)
    hb.tap(other, T(10), ENTRY, "metro_1", "m1_taipingqiao")  # never exits: overdue
    hb.tap(other, T(20), BOARD, "bus_1", "bs_0001")  # settles the entry first
    hb.tap(card, T(21), ENTRY, "metro_1", "m1_taipingqiao")  # a hold still open: posts nothing
    rows = {int(r["account_id"]): r for r in hb.led.settle(None, None)}
    for a in hb.led.accounts():
        if int(a["id"]) in rows:
            r = rows[int(a["id"])]
            assert (int(r["debits_fen"]), int(r["credits_fen"])) == (int(a["debits_posted"]), int(a["credits_posted"]))
        else:
            assert a["debits_posted"] == a["credits_posted"] == 0
    assert hb.led.account(100).debits_pending > 0  # the open entry's hold is not in the settlement
