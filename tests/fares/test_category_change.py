"""A card's rider category changed by SET_CATEGORY rates taps from the change's event
time on; a tap uploaded late, with an event time before the change, keeps the
category the card had then (docs/semantics.md, SET_CATEGORY)."""

from __future__ import annotations

from test_taps import ADMIN, CATEGORY, ENTRY, EXIT, STUDENT, T, charged, hb  # noqa: F401 - hb is a fixture

from cardledger import OpKind, new_ops


def set_category(rig, card: int, category: int, time_us: int) -> None:
    ops = new_ops(1)
    rig.admin_seq += 1
    ops[0]["source"], ops[0]["seq"], ops[0]["time_us"] = ADMIN, rig.admin_seq, time_us
    ops[0]["kind"], ops[0]["account_id"], ops[0]["category"] = OpKind.SET_CATEGORY, card, category
    assert rig.led.apply(ops)["code"][0] == 0


def test_a_student_from_ten_pays_the_adult_fare_before_and_half_after(hb):
    card = hb.card(100, 5000)
    set_category(hb, card, STUDENT, T(10))
    hb.tap(card, T(10, 5), ENTRY, "metro_1", "m1_taipingqiao")
    charged(hb.tap(card, T(10, 25), EXIT, "metro_1", "m1_railway_bureau"), 150, discounts=CATEGORY)
    # A validator's late upload of a ride at 08:00, before the change: the adult fare.
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_taipingqiao")
    charged(hb.tap(card, T(8, 20), EXIT, "metro_1", "m1_railway_bureau"), 300)
