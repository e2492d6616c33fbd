"""The specification of fare charging by TAP ops, through the public Ledger API.

Each test checks one rule of `cardledger.engine.spec.taps` (its module docstring is
the rule book). Expected amounts are worked out by hand from the fare tables
(the Harbin system's README, or the synthetic feed of tests/taps_feed.py) and the
rules; the comments show the arithmetic. No test asks the engine's own evaluator
for an expected value.

Times are local Harbin time (Asia/Shanghai, UTC+8 all year), 2026-03-10 (a
Tuesday) unless a test says otherwise; amounts are in fen.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pytest

import cardledger
from helpers import taps_feed
from cardledger import AccountKind, OpFlags, OpKind, Result, new_ops
from cardledger.fares import FareDiscount, FareSystem
from cardledger.schema import SETTLE_SOURCE, TapType

TZ = dt.timezone(dt.timedelta(hours=8))
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
US = 1_000_000
HOUR_US = 3600 * US
DAY = dt.date(2026, 3, 10)

ADMIN, GATE = 1, 2  # op sources: the card office, the validators
CLEARING = 1
BUS_OP, METRO_OP, FERRY_OP, COACH_OP, TAXI_OP = 9001, 9002, 9003, 9004, 9005
HARBIN_OPERATORS = (BUS_OP, METRO_OP, FERRY_OP, COACH_OP, TAXI_OP)
ADULT, STUDENT, SENIOR_60, SENIOR_65 = 0, 1, 2, 3

BOARD, ENTRY, EXIT, SWEEP = TapType.BOARD, TapType.ENTRY, TapType.EXIT, TapType.SWEEP
NONE, TRANSFER, CATEGORY, CAP, TIER = (
    FareDiscount.NONE, FareDiscount.TRANSFER, FareDiscount.CATEGORY, FareDiscount.CAP, FareDiscount.TIER,
)  # fmt: skip


def T(h: int, m: int = 0, s: int = 0, day: dt.date = DAY) -> int:
    """µs since the epoch of local (UTC+8) time h:m:s on `day` (minutes may run past 59)."""
    local = dt.datetime(day.year, day.month, day.day, tzinfo=TZ) + dt.timedelta(hours=h, minutes=m, seconds=s)
    return (local - EPOCH) // dt.timedelta(microseconds=1)


@functools.cache
def harbin_system() -> FareSystem:
    """The packaged Harbin system, loaded once (its indexes are the ledger's)."""
    return FareSystem.harbin()


class Rig:
    """A ledger plus the fare system whose indexes its taps use."""

    def __init__(self, led, fs: FareSystem) -> None:
        self.led = led
        self.fs = fs
        self.admin_seq = 0
        self.gate_seq = 0

    # -- the card office ----------------------------------------------------

    def admin(self, *rows: dict) -> np.ndarray:
        ops = new_ops(len(rows))
        for i, row in enumerate(rows):
            self.admin_seq += 1
            ops[i]["source"] = ADMIN
            ops[i]["seq"] = self.admin_seq
            ops[i]["time_us"] = self.admin_seq
            for k, v in row.items():
                ops[i][k] = int(v)
        r = self.led.apply(ops)
        assert (r["code"] == Result.OK).all(), [Result(int(c)).name for c in r["code"]]
        return r

    def open(self, account_id: int, kind: AccountKind, category: int = 0) -> None:
        self.admin(dict(kind=OpKind.OPEN, account_id=account_id, account_kind=kind, category=category))

    def open_all(self, *accounts: tuple[int, AccountKind]) -> None:
        """Open several accounts in one batch."""
        self.admin(*(dict(kind=OpKind.OPEN, account_id=a, account_kind=k) for a, k in accounts))

    def card(self, card_id: int, fen: int = 0, category: int = ADULT) -> int:
        """Open a card with `fen` on it (one batch)."""
        rows = [dict(kind=OpKind.OPEN, account_id=card_id, account_kind=AccountKind.CARD, category=category)]
        if fen:
            rows.append(dict(kind=OpKind.TOPUP, account_id=card_id, counterparty_id=CLEARING, amount_fen=fen))
        self.admin(*rows)
        return card_id

    def topup(self, card_id: int, fen: int) -> None:
        self.admin(dict(kind=OpKind.TOPUP, account_id=card_id, counterparty_id=CLEARING, amount_fen=fen))

    def freeze(self, card_id: int) -> None:
        self.admin(dict(kind=OpKind.FREEZE, account_id=card_id))

    def close(self, card_id: int) -> None:
        self.admin(dict(kind=OpKind.CLOSE, account_id=card_id, counterparty_id=CLEARING))

    # -- the validators -------------------------------------------------------

    def op(self, card, time_us, tap, route=0, stop=0, amount=0, **fields) -> np.ndarray:
        """One TAP op with the next id of source GATE (route/stop: GTFS ids or raw indexes)."""
        self.gate_seq += 1
        ops = new_ops(1)
        row = dict(
            source=GATE, seq=self.gate_seq, kind=OpKind.TAP, account_id=card, time_us=time_us, tap=tap,
            route=self.fs.route_index(route) if isinstance(route, str) else route,
            stop=self.fs.stop_index(stop) if isinstance(stop, str) else stop,
            amount_fen=amount, **fields,
        )  # fmt: skip
        for k, v in row.items():
            ops[0][k] = int(v)
        return ops

    def tap(self, card, time_us, tap, route=0, stop=0, amount=0, **fields) -> np.void:
        """Apply one TAP op; its result record."""
        return self.led.apply(self.op(card, time_us, tap, route, stop, amount, **fields))[0]

    def bal(self, account_id: int) -> int:
        return self.led.balance(account_id)

    def held(self, card_id: int) -> int:
        return self.led.account(card_id).debits_pending


def charged(r, amount: int, balance: int | None = None, discounts: int = NONE) -> None:
    """Assert a tap succeeded, charged `amount`, left `balance`, with `discounts`."""
    got = (Result(int(r["code"])).name, int(r["amount_fen"]), FareDiscount(int(r["discounts"])))
    assert got == ("OK", amount, FareDiscount(discounts)), got
    if balance is not None:
        assert int(r["balance_fen"]) == balance


def refused(r, code: Result) -> None:
    assert Result(int(r["code"])).name == code.name
    assert int(r["amount_fen"]) == 0


def harbin_rig(led, operators=HARBIN_OPERATORS, install: bool = True) -> Rig:
    rig = Rig(led, harbin_system())
    if install:
        # the same system the first tap batch would install; installing the cached
        # object explicitly only saves reloading the feed in every test
        led.install_fares(harbin_system(), 0)
    rig.open_all((CLEARING, AccountKind.CLEARING), *((op, AccountKind.OPERATOR) for op in operators))
    return rig


@pytest.fixture
def hb(led) -> Rig:
    """A ledger with the Harbin system, clearing account 1 and operators 9001-9005."""
    return harbin_rig(led)


def synthetic_rig(led, tmp_path, effective_from_us: int = 0, **feed_options) -> Rig:
    fs = FareSystem.from_gtfs(taps_feed.write_feed(tmp_path / "feed", **feed_options))
    led.install_fares(fs, effective_from_us)
    rig = Rig(led, fs)
    rig.open_all(
        (CLEARING, AccountKind.CLEARING),
        (taps_feed.BUS_OPERATOR, AccountKind.OPERATOR),
        (taps_feed.METRO_OPERATOR, AccountKind.OPERATOR),
    )
    return rig


DAY_CAP = '[[caps]]\nperiod = "day"\namount = "5.00"\n'


@pytest.fixture
def syn(led, tmp_path) -> Rig:
    """A ledger with the synthetic system of tests/taps_feed.py (defaults), operators 8001/8002."""
    return synthetic_rig(led, tmp_path)


# =========================================================================== Harbin: fares


def test_first_tap_batch_installs_the_packaged_harbin_system(led):
    """Without an installed system the first batch with a TAP installs Harbin from time 0."""
    rig = harbin_rig(led, install=False)
    with pytest.raises(LookupError):
        led.fare_system()
    card = rig.card(100, 1000)
    charged(rig.tap(card, T(8), BOARD, "bus_1", "bs_0001"), 100, balance=900)  # ordinary bus: 1 yuan
    assert led.fare_system().digest == harbin_system().digest
    assert led.fare_system(0).digest == harbin_system().digest
    assert led.verify().ok


def test_faulting_in_the_journey_store_changes_nothing(hb):
    """Once the journey store grows, a thread faults its new pages in; that touches no
    journey, and taps go on exactly as before."""
    cards = [hb.card(100 + i, 1000) for i in range(5)]
    for card in cards[:3]:
        charged(hb.tap(card, T(8), BOARD, "bus_1", "bs_0001"), 100, balance=900)
    engine = hb.led._engine
    assert hb.led._journeys_prefaulted == engine.journey_capacity()  # asked for, once it grew
    before = engine.export_journeys().tobytes()
    engine.prefault_journeys()  # again, in this thread: harmless
    assert engine.export_journeys().tobytes() == before
    for card in cards[3:]:
        charged(hb.tap(card, T(8), BOARD, "bus_1", "bs_0001"), 100, balance=900)
    assert hb.led.verify().ok


def test_reserving_the_journeys_before_the_first_tap_changes_nothing(hb):
    """Ledger.reserve_journeys makes room for every account's fare state up front (the
    first tap past the room would); taps then charge as ever, and it can be repeated."""
    cards = [hb.card(100 + i, 1000) for i in range(5)]
    engine = hb.led._engine
    hb.led.reserve_journeys()
    if cardledger.IMPLEMENTATION == "cython":
        assert engine.journey_capacity() >= engine.account_count()
    assert len(engine.export_journeys()) == 0  # room only: no card has fare state yet
    for card in cards:
        charged(hb.tap(card, T(8), BOARD, "bus_1", "bs_0001"), 100, balance=900)
    more = [hb.card(200 + i, 1000) for i in range(300)]  # past the room reserved above (256)
    hb.led.reserve_journeys()
    if cardledger.IMPLEMENTATION == "cython":
        assert engine.journey_capacity() >= engine.account_count()  # grown though not full
    charged(hb.tap(cards[0], T(8, 30), BOARD, "bus_1", "bs_0001"), 100, balance=800)
    charged(hb.tap(more[-1], T(8, 30), BOARD, "bus_1", "bs_0001"), 100, balance=900)
    assert hb.led.verify().ok


def test_bus_board_charges_the_ordinary_route_fare_to_the_bus_operator(hb):
    """BOARD on an ordinary bus route charges 1 yuan, card -> operator 9001."""
    card = hb.card(100, 1000)
    charged(hb.tap(card, T(8), BOARD, "bus_1", "bs_0001"), 100, balance=900)
    assert hb.bal(card) == 900
    assert hb.bal(BUS_OP) == 100
    assert hb.led.account(BUS_OP).credits_posted == 100


def test_air_conditioned_bus_route_14_costs_two_yuan(hb):
    """Route 14 is on the bus_ac network: 2 yuan."""
    card = hb.card(100, 1000)
    charged(hb.tap(card, T(8), BOARD, "bus_14", "bs_0002"), 200, balance=800)
    assert hb.bal(BUS_OP) == 200


def test_each_bus_boarding_is_charged_in_full_without_transfer_rules(hb):
    """Harbin has no transfer rules: a second bus within the journey break pays again."""
    card = hb.card(100, 1000)
    charged(hb.tap(card, T(8), BOARD, "bus_1", "bs_0001"), 100)
    charged(hb.tap(card, T(8, 20), BOARD, "bus_14", "bs_0007"), 200, balance=700)  # 1000 - 100 - 200


def test_ferry_board_charges_two_yuan_to_the_ferry_operator(hb):
    """The river ferry: 2 yuan for any rider, paid to operator 9003."""
    card = hb.card(100, 1000)
    charged(hb.tap(card, T(8), BOARD, "ferry_songhua", "ferry_flood_monument_pier"), 200, balance=800)
    assert hb.bal(FERRY_OP) == 200


def test_metered_taxi_charges_the_amount_the_terminal_sends(hb):
    """A taxi (metered network) BOARD charges amount_fen to operator 9005."""
    card = hb.card(100, 5000)
    charged(hb.tap(card, T(8), BOARD, "taxi", "taxi_anywhere", amount=2350), 2350, balance=2650)
    assert hb.bal(TAXI_OP) == 2350


def test_metro_entry_holds_the_maximum_fare(hb):
    """ENTRY holds max_fare (800): available balance drops by 800, nothing is posted."""
    card = hb.card(100, 5000)
    charged(hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station"), 0, balance=4200)
    assert hb.bal(card) == 4200
    assert hb.held(card) == 800
    acct = hb.led.account(METRO_OP)
    assert (acct.balance_fen, acct.credits_pending) == (0, 800)


# The README's boundary pairs: fare = scale(distance) (≤6 km 2 ¥, ≤10 km 3, ≤14 km 4,
# ≤21 km 5, ≤28 km 6, then +1 ¥ per further 10 km or part).
METRO_PAIRS = [
    ("metro_1", "m1_harbin_east_station", "metro_1", "m1_museum", 200),  # 6.00 km
    ("metro_1", "m1_taipingqiao", "metro_1", "m1_railway_bureau", 300),  # 6.01 km
    ("metro_1", "m1_harbin_east_station", "metro_1", "m1_heilongjiang_university", 300),  # 10.00
    ("metro_1", "m1_taipingqiao", "metro_1", "m1_xuefu_road", 400),  # 10.01
    ("metro_1", "m1_harbin_east_station", "metro_1", "m1_yida_second_hospital", 400),  # 14.00
    ("metro_1", "m1_taipingqiao", "metro_1", "m1_harbin_south_station", 500),  # 14.01
    ("metro_1", "m1_harbin_east_station", "metro_1", "m1_wapenyao", 500),  # 21.00
    ("metro_1", "m1_taipingqiao", "metro_1", "m1_xiangjiang_road", 600),  # 21.01
    ("metro_1", "m1_harbin_east_station", "metro_1", "m1_diantan_road", 600),  # 28.00
    ("metro_1", "m1_taipingqiao", "metro_1", "m1_xinjiang_street", 700),  # 28.01
    ("metro_2", "m2_jiangbei_university_town", "metro_1", "m1_xinjiang_street", 700),  # 38.00
    ("metro_2", "m2_qixiangtai", "metro_1", "m1_xinjiang_street", 800),  # 38.01, via 博物馆
]


@pytest.mark.parametrize("in_route,in_stop,out_route,out_stop,fare", METRO_PAIRS)
def test_metro_exit_charges_the_distance_fare_and_releases_the_rest(hb, in_route, in_stop, out_route, out_stop, fare):
    """EXIT charges the fare of the entry→exit distance (peak, adult) and releases 800 - fare."""
    card = hb.card(100, 5000)
    charged(hb.tap(card, T(8), ENTRY, in_route, in_stop), 0, balance=4200)
    charged(hb.tap(card, T(8, 40), EXIT, out_route, out_stop), fare, balance=5000 - fare)
    assert hb.held(card) == 0
    acct = hb.led.account(METRO_OP)
    assert (acct.balance_fen, acct.credits_pending) == (fare, 0)


@pytest.mark.parametrize("exit_route,exit_stop", [("metro_1", "m1_museum"), ("metro_2", "m2_museum")])
def test_leaving_at_the_entry_station_costs_the_same_station_charge(hb, exit_route, exit_stop):
    """Entry and exit at one station (any of its platforms) costs same_station_charge (200)."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_museum")
    charged(hb.tap(card, T(8, 10), EXIT, exit_route, exit_stop), 200, balance=4800)


def test_student_pays_half_the_metro_fare(hb):
    """Category 1 (student): 6.01 km at peak is 300 for an adult, 150 for a student (CATEGORY)."""
    card = hb.card(100, 5000, category=STUDENT)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_taipingqiao")
    charged(hb.tap(card, T(8, 20), EXIT, "metro_1", "m1_railway_bureau"), 150, balance=4850, discounts=CATEGORY)


def test_student_pays_the_full_bus_fare(hb):
    """Bus products have one price for every rider: no category discount."""
    card = hb.card(100, 5000, category=STUDENT)
    charged(hb.tap(card, T(8), BOARD, "bus_14", "bs_0001"), 200, balance=4800)


def test_senior_65_rides_free_when_entering_at_nine(hb):
    """Category 3 (65+) is free off-peak; 09:00:00 is off-peak (start included)."""
    card = hb.card(100, 5000, category=SENIOR_65)
    charged(hb.tap(card, T(9), ENTRY, "metro_1", "m1_harbin_east_station"), 0, balance=4200)
    charged(hb.tap(card, T(9, 30), EXIT, "metro_1", "m1_museum"), 0, balance=5000, discounts=CATEGORY)
    assert hb.held(card) == 0
    assert hb.bal(METRO_OP) == 0


def test_senior_65_pays_full_fare_entering_at_08_59_59(hb):
    """Off-peak is judged by the entry tap: entering one second before 09:00 is peak (200)."""
    card = hb.card(100, 5000, category=SENIOR_65)
    hb.tap(card, T(8, 59, 59), ENTRY, "metro_1", "m1_harbin_east_station")
    charged(hb.tap(card, T(9, 30), EXIT, "metro_1", "m1_museum"), 200, balance=4800)


@pytest.mark.parametrize(
    "entry,fare,discounts",
    [
        (T(10), 100, CATEGORY),  # off-peak 09-16: half of 200
        (T(16), 200, NONE),  # 16:00 ends the first off-peak window (end excluded): peak
        (T(18, 59, 59), 200, NONE),  # peak
        (T(19), 100, CATEGORY),  # 19:00-24:00 is off-peak again
    ],
)
def test_senior_60_pays_half_off_peak_only(hb, entry, fare, discounts):
    """Category 2 (60-64): half fare off-peak, full fare at peak (6.00 km pair, 2 ¥)."""
    card = hb.card(100, 5000, category=SENIOR_60)
    hb.tap(card, entry, ENTRY, "metro_1", "m1_harbin_east_station")
    charged(hb.tap(card, entry + 20 * 60 * US, EXIT, "metro_1", "m1_museum"), fare, 5000 - fare, discounts)


def test_a_coach_is_tapped_on_and_off_and_a_board_tap_is_refused(hb):
    """Harbin coaches are gated (fares by origin and destination): BOARD is INVALID_TAP and
    moves nothing; ENTRY holds the longest coach fare (45 yuan), EXIT at Acheng charges the
    Harbin–Acheng fare, 10 yuan, to the coach operator and releases the rest."""
    card = hb.card(100, 5000)
    refused(hb.tap(card, T(8), BOARD, "coach_harbin_acheng", "coach_harbin"), Result.INVALID_TAP)
    assert hb.bal(card) == 5000
    charged(hb.tap(card, T(8), ENTRY, "coach_harbin_acheng", "coach_harbin"), 0, balance=500)
    charged(hb.tap(card, T(9), EXIT, "coach_harbin_acheng", "coach_acheng"), 1000, balance=4000)
    assert hb.bal(COACH_OP) == 1000


def test_a_card_category_the_config_does_not_map_rides_as_the_default_rider(hb):
    """Category code 7 is not in [rider_categories]: the adult fare (6.01 km, 300), no discount."""
    card = hb.card(100, 5000, category=7)
    hb.tap(card, T(10), ENTRY, "metro_1", "m1_taipingqiao")
    charged(hb.tap(card, T(10, 20), EXIT, "metro_1", "m1_railway_bureau"), 300, balance=4700)


def test_a_second_entry_holds_only_what_the_card_has_left(hb):
    """1000 on the card: ENTRY holds 800; a second ENTRY posts 800 from that hold for the first
    journey and can then hold only the remaining 200; a 200 exit uses it all."""
    card = hb.card(100, 1000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_taipingqiao")
    charged(hb.tap(card, T(9), ENTRY, "metro_1", "m1_harbin_east_station"), 800, balance=0)
    assert hb.held(card) == 200
    charged(hb.tap(card, T(9, 20), EXIT, "metro_1", "m1_museum"), 200, balance=0)
    assert (hb.held(card), hb.bal(METRO_OP)) == (0, 1000)


def test_a_second_entry_that_leaves_nothing_to_hold_is_refused_and_keeps_the_first(hb):
    """800 on the card, all held by the first entry: the second ENTRY (800 incomplete charge, then
    nothing left to hold) is INSUFFICIENT_FUNDS, and the first entry is still open."""
    card = hb.card(100, 800)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    refused(hb.tap(card, T(9), ENTRY, "metro_1", "m1_taipingqiao"), Result.INSUFFICIENT_FUNDS)
    assert (hb.bal(card), hb.held(card), hb.bal(METRO_OP)) == (0, 800, 0)
    charged(hb.tap(card, T(9, 10), EXIT, "metro_1", "m1_museum"), 200, balance=600)  # from 哈东站


def test_an_exit_dated_before_its_entry_is_invalid(hb):
    """EXIT earlier than the open entry: INVALID_TAP; the entry stays open (exit at entry time: 200)."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    refused(hb.tap(card, T(8) - 1, EXIT, "metro_1", "m1_museum"), Result.INVALID_TAP)
    assert hb.held(card) == 800
    charged(hb.tap(card, T(8), EXIT, "metro_1", "m1_museum"), 200, balance=4800)


def test_an_exit_without_entry_is_charged_even_on_an_empty_card(hb):
    """Rule 7 takes the incomplete charge with no funds check (the rider is already out): -800,
    and the card is denylisted."""
    card = hb.card(100, 0)
    charged(hb.tap(card, T(8), EXIT, "metro_1", "m1_museum"), 800, balance=-800)
    assert hb.led.denylist().tolist() == [card]
    assert hb.led.verify().ok


@pytest.mark.parametrize(
    ("category", "when", "fare", "discounts"),
    [(STUDENT, (10, 0), 100, CATEGORY), (SENIOR_65, (10, 0), 0, CATEGORY), (SENIOR_65, (8, 0), 200, NONE)],
)
def test_leaving_at_the_entry_station_costs_the_minimum_fare_with_concessions(hb, category, when, fare, discounts):
    """Harbin rates entering and leaving at one station by the feed's rule for that pair: the
    minimum fare of 200, half for a student, free for a 65+ rider entering off-peak (10:00)
    but 200 at 08:00."""
    card = hb.card(100, 5000, category=category)
    hb.tap(card, T(*when), ENTRY, "metro_1", "m1_museum")
    charged(hb.tap(card, T(when[0], 10), EXIT, "metro_1", "m1_museum"), fare, balance=5000 - fare, discounts=discounts)


def test_a_taxi_fare_the_card_cannot_pay_is_refused(hb):
    """Metered amount above the balance: INSUFFICIENT_FUNDS; above AMOUNT_MAX_FEN: INVALID_AMOUNT."""
    card = hb.card(100, 2000)
    refused(hb.tap(card, T(8), BOARD, "taxi", "taxi_anywhere", amount=2001), Result.INSUFFICIENT_FUNDS)
    refused(hb.tap(card, T(8), BOARD, "taxi", "taxi_anywhere", amount=10**18 + 1), Result.INVALID_AMOUNT)
    charged(hb.tap(card, T(8, 1), BOARD, "taxi", "taxi_anywhere", amount=2000), 2000, balance=0)


# =========================================================================== exactly once


def test_a_replayed_tap_batch_moves_money_once(hb):
    """The same batch applied twice: the second time every tap is EXISTS with its original figures."""
    card = hb.card(100, 5000, category=STUDENT)
    ops = np.concatenate(
        [
            hb.op(card, T(8), BOARD, "bus_1", "bs_0001"),  # 100
            hb.op(card, T(8, 30), ENTRY, "metro_1", "m1_taipingqiao"),  # holds 800
            hb.op(card, T(8, 50), EXIT, "metro_1", "m1_railway_bureau"),  # student 300 / 2 = 150
        ]
    )
    first = hb.led.apply(ops)
    assert [Result(int(c)).name for c in first["code"]] == ["OK"] * 3
    assert first["amount_fen"].tolist() == [100, 0, 150]
    assert first["discounts"].tolist() == [0, 0, int(CATEGORY)]
    again = hb.led.apply(ops)
    assert [Result(int(c)).name for c in again["code"]] == ["EXISTS"] * 3
    assert again["amount_fen"].tolist() == [100, 0, 150]
    assert again["discounts"].tolist() == [0, 0, int(CATEGORY)]
    assert again["balance_fen"].tolist() == first["balance_fen"].tolist() == [4900, 4100, 4750]
    assert hb.bal(card) == 4750
    assert (hb.bal(BUS_OP), hb.bal(METRO_OP), hb.held(card)) == (100, 150, 0)
    assert hb.led.verify().ok


def test_a_tap_id_reused_with_a_changed_field_is_refused(hb):
    """Same (source, seq), different stop: EXISTS_WITH_DIFFERENT_FIELDS, nothing moves."""
    card = hb.card(100, 5000)
    ops = hb.op(card, T(8), BOARD, "bus_1", "bs_0001")
    charged(hb.led.apply(ops)[0], 100)
    ops[0]["stop"] = hb.fs.stop_index("bs_0002")
    refused(hb.led.apply(ops)[0], Result.EXISTS_WITH_DIFFERENT_FIELDS)
    ops[0]["stop"] = hb.fs.stop_index("bs_0001")
    ops[0]["time_us"] += 1
    refused(hb.led.apply(ops)[0], Result.EXISTS_WITH_DIFFERENT_FIELDS)
    assert hb.bal(card) == 4900


def test_a_refused_tap_id_stays_refused(hb):
    """A tap refused for lack of money is decided: retrying its id after a top-up is ID_ALREADY_FAILED."""
    card = hb.card(100, 50)
    ops = hb.op(card, T(8), BOARD, "bus_1", "bs_0001")
    refused(hb.led.apply(ops)[0], Result.INSUFFICIENT_FUNDS)
    hb.topup(card, 1000)
    refused(hb.led.apply(ops)[0], Result.ID_ALREADY_FAILED)
    assert hb.bal(card) == 1050


def test_a_tap_batch_replayed_after_reopen_is_exists_with_its_original_figures(ledger_path):
    """checkpoint_ops=2: the first decisions are flushed to the id index; after a reopen the
    replayed batch is found there and answered EXISTS with amount and discounts."""
    with cardledger.open(ledger_path, checkpoint_ops=2, create=True) as led:
        rig = harbin_rig(led)
        card = rig.card(100, 5000, category=STUDENT)
        ops = np.concatenate(
            [
                rig.op(card, T(8), ENTRY, "metro_1", "m1_taipingqiao"),
                rig.op(card, T(8, 20), EXIT, "metro_1", "m1_railway_bureau"),  # 300 / 2 = 150
                rig.op(card, T(9), BOARD, "bus_14", "bs_0001"),  # 200
            ]
        )
        first = led.apply(ops)
        assert first["amount_fen"].tolist() == [0, 150, 200]
        for _ in range(3):  # more decisions, so the batch's ids leave the in-memory window
            rig.tap(card, T(10 + _), BOARD, "bus_1", "bs_0001")
    with cardledger.open(ledger_path, checkpoint_ops=2, create=True) as led:
        again = led.apply(ops)
        assert [Result(int(c)).name for c in again["code"]] == ["EXISTS"] * 3
        assert again["amount_fen"].tolist() == [0, 150, 200]
        assert again["discounts"].tolist() == first["discounts"].tolist()
        assert first["discounts"].tolist()[:2] == [0, int(CATEGORY)]
        assert led.balance(card) == 5000 - 150 - 200 - 3 * 100
        assert led.verify().ok


# =========================================================================== incomplete journeys


def test_sweep_after_the_timeout_charges_the_incomplete_charge(hb):
    """An entry older than 4 h is settled by SWEEP: 800 posted from the 800 hold, nothing more."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    charged(hb.tap(card, T(12) + 1, SWEEP), 800, balance=4200)
    assert hb.held(card) == 0
    assert hb.bal(METRO_OP) == 800
    assert hb.led.account(METRO_OP).credits_pending == 0
    # the entry is gone: a later exit has no entry and is an incomplete journey of its own
    charged(hb.tap(card, T(12, 30), EXIT, "metro_1", "m1_museum"), 800, balance=3400)


@pytest.mark.parametrize("when", [T(8, 30), T(12)])
def test_sweep_before_the_timeout_does_nothing(hb, when):
    """SWEEP of an entry not older than 4 h (12:00:00 exactly is not older): OK, amount 0."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    charged(hb.tap(card, when, SWEEP), 0, balance=4200)
    assert hb.held(card) == 800
    # the entry is still open: the exit at 12:00 is a normal 6.00 km ride
    charged(hb.tap(card, T(12), EXIT, "metro_1", "m1_museum"), 200, balance=4800)


def test_sweep_of_a_card_without_an_open_entry_does_nothing(hb):
    """SWEEP with no open entry: OK, amount 0, balance unchanged."""
    card = hb.card(100, 5000)
    charged(hb.tap(card, T(8), SWEEP), 0, balance=5000)


def test_overdue_entries_lists_timed_out_entries_for_the_sweeps_built_from_it(hb):
    """`overdue_entries` lists a card from just past the 4 h timeout on (frozen cards
    left out), and the SWEEPs built from the list charge the metro operator."""
    card, other, frozen = hb.card(100, 5000), hb.card(101, 5000), hb.card(102, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    hb.tap(other, T(9), ENTRY, "metro_1", "m1_harbin_east_station")
    hb.tap(frozen, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    hb.freeze(frozen)
    assert hb.led.overdue_entries(T(12)).tolist() == []  # exactly 4 h is not older
    assert hb.led.overdue_entries(T(12) + 1).tolist() == [card]  # the frozen card is left out
    assert hb.led.overdue_entries(T(13) + 1).tolist() == [card, other]
    sweeps = cardledger.new_ops(2)
    sweeps["source"], sweeps["seq"], sweeps["kind"] = 77, [1, 2], OpKind.TAP
    sweeps["account_id"], sweeps["time_us"], sweeps["tap"] = hb.led.overdue_entries(T(16)), T(16), SWEEP
    results = hb.led.apply(sweeps)
    assert results["code"].tolist() == [Result.OK, Result.OK] and results["amount_fen"].tolist() == [800, 800]
    assert hb.bal(METRO_OP) == 1600 and hb.held(card) == 0 and hb.held(other) == 0
    assert hb.led.overdue_entries(T(16)).tolist() == []
    assert hb.led.verify().ok


def settlements(led, card: int):
    """The records the ledger wrote on its own (source SETTLE_SOURCE) for `card`."""
    j = led.journal()
    return j[(j["source"] == SETTLE_SOURCE) & (j["account_id"] == card)]


def test_a_bus_board_after_the_timeout_first_settles_the_entry_to_the_metro(hb):
    """Rule 9: the card's next BOARD after the 4 h timeout first charges the incomplete
    journey (800, the hold) to the metro operator, in a SWEEP record of its own, then
    charges its own fare (100) to the bus operator. The tap's result is its own fare;
    its balance is after both: 5000 - 800 - 100."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    r = hb.tap(card, T(16), BOARD, "bus_1", "bs_0001")
    charged(r, 100, balance=4100)
    assert hb.held(card) == 0 and hb.bal(METRO_OP) == 800 and hb.bal(BUS_OP) == 100
    assert hb.led.overdue_entries(T(16)).tolist() == []
    rec = settlements(hb.led, card)
    assert len(rec) == 1
    assert (int(rec[0]["kind"]), int(rec[0]["tap"]), int(rec[0]["seq"])) == (OpKind.TAP, SWEEP, 1)
    assert int(rec[0]["time_us"]) == T(16) and int(rec[0]["result_amount_fen"]) == 800
    assert (int(rec[0]["debit_id"]), int(rec[0]["credit_id"])) == (card, METRO_OP)
    assert int(rec[0]["journal_seq"]) + 1 == int(r["journal_seq"])  # just before the tap's own
    # the metro operator's statement names the settlement, the bus operator's the BOARD
    assert hb.led.statement(METRO_OP)["source"].tolist()[-1] == SETTLE_SOURCE
    last = hb.led.statement(BUS_OP)[-1]
    assert (int(last["source"]), int(last["seq"])) == (GATE, hb.gate_seq)
    assert hb.led.verify().ok


def test_a_bus_board_before_the_timeout_leaves_the_entry_open(hb):
    """An entry not yet timed out (4 h exactly is not older) stays open across a BOARD:
    the rider may still be inside the metro system's journey; nothing is settled."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    charged(hb.tap(card, T(12), BOARD, "bus_1", "bs_0001"), 100, balance=4100)
    assert hb.held(card) == 800 and hb.bal(METRO_OP) == 0
    assert len(settlements(hb.led, card)) == 0


def test_another_operators_gate_after_the_timeout_settles_the_entry_then_enters(hb):
    """Rule 9 at a gate of another network: the coach ENTRY first settles the overdue
    metro entry (800 to the metro), then holds the coach's maximum fare (4500) on the
    coach operator; the later coach EXIT charges the coach fare only."""
    card = hb.card(100, 6000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    charged(hb.tap(card, T(12) + 1, ENTRY, "coach_harbin_acheng", "coach_harbin"), 0, balance=6000 - 800 - 4500)
    assert hb.bal(METRO_OP) == 800 and hb.held(card) == 4500
    charged(hb.tap(card, T(13), EXIT, "coach_harbin_acheng", "coach_acheng"), 1000, balance=6000 - 800 - 1000)
    assert hb.bal(COACH_OP) == 1000
    assert len(settlements(hb.led, card)) == 1
    assert hb.led.verify().ok


def test_another_operators_gate_before_the_timeout_still_refuses_the_card(hb):
    """While the metro entry is open and not timed out, the coach gate refuses the card
    (INVALID_TAP) and nothing is settled."""
    card = hb.card(100, 6000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    refused(hb.tap(card, T(9), ENTRY, "coach_harbin_acheng", "coach_harbin"), Result.INVALID_TAP)
    assert hb.held(card) == 800 and len(settlements(hb.led, card)) == 0


def test_a_settlement_stands_when_the_tap_after_it_fails(hb):
    """The settlement is done first and stands: a BOARD the card can no longer pay after
    the incomplete charge is refused (INSUFFICIENT_FUNDS), the metro keeps its 800."""
    card = hb.card(100, 800)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    refused(hb.tap(card, T(16), BOARD, "bus_1", "bs_0001"), Result.INSUFFICIENT_FUNDS)
    assert hb.bal(card) == 0 and hb.bal(METRO_OP) == 800 and hb.held(card) == 0
    assert len(settlements(hb.led, card)) == 1
    assert hb.led.verify().ok


def test_a_resent_board_that_settled_is_exists_and_settles_nothing_more(hb):
    """Exactly once: the BOARD resent is EXISTS with its figures, and no second settlement."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    ops = hb.op(card, T(16), BOARD, "bus_1", "bs_0001")
    first = hb.led.apply(ops)[0]
    again = hb.led.apply(ops)[0]
    assert Result(int(again["code"])) == Result.EXISTS
    assert (int(again["amount_fen"]), int(again["balance_fen"])) == (100, int(first["balance_fen"]))
    assert hb.bal(card) == 4100 and len(settlements(hb.led, card)) == 1


def test_settlements_number_their_ids_one_after_another_and_survive_reopen(ledger_path):
    """Settlement ids are (SETTLE_SOURCE, 1), (SETTLE_SOURCE, 2), … across batches and a
    reopen (the journal replays them), and an op may not use that source (INVALID_ID)."""
    with cardledger.open(ledger_path, create=True) as led:
        rig = harbin_rig(led)
        a, b = rig.card(100, 5000), rig.card(101, 5000)
        for card in (a, b):
            rig.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
        rig.tap(a, T(16), BOARD, "bus_1", "bs_0001")
        gate_seq = rig.gate_seq
    with cardledger.open(ledger_path, create=True) as led:
        rig = Rig(led, harbin_system())
        rig.admin_seq, rig.gate_seq = 100, gate_seq
        rig.tap(b, T(17), BOARD, "bus_1", "bs_0001")
        j = led.journal()
        assert j[j["source"] == SETTLE_SOURCE]["seq"].tolist() == [1, 2]
        ops = rig.op(a, T(18), BOARD, "bus_1", "bs_0001")
        ops["source"] = SETTLE_SOURCE
        refused(led.apply(ops)[0], Result.INVALID_ID)
        assert led.verify().ok


def test_overdue_entries_of_a_ledger_without_fares_or_entries_is_empty(led):
    """No fare system installed, or no open entry: nothing to sweep. time_us must be an int."""
    assert led.overdue_entries(T(8)).tolist() == []
    with pytest.raises(TypeError):
        led.overdue_entries(1.5)


def test_sweep_with_a_route_or_stop_is_an_invalid_tap(hb):
    """A SWEEP names no route and no stop: either one is INVALID_TAP."""
    card = hb.card(100, 5000)
    refused(hb.tap(card, T(8), SWEEP, "metro_1", 0), Result.INVALID_TAP)
    refused(hb.tap(card, T(8), SWEEP, 0, "m1_museum"), Result.INVALID_TAP)


def test_a_second_entry_settles_the_first_as_incomplete(hb):
    """ENTRY with an open entry: the first is charged 800 (its hold), then a new 800 hold."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    charged(hb.tap(card, T(9), ENTRY, "metro_1", "m1_taipingqiao"), 800, balance=3400)  # 5000 - 800 - 800
    assert hb.held(card) == 800
    assert hb.bal(METRO_OP) == 800
    # the exit prices the second entry: 太平桥 → 铁路局 6.01 km = 300
    charged(hb.tap(card, T(9, 20), EXIT, "metro_1", "m1_railway_bureau"), 300, balance=3900)
    assert (hb.held(card), hb.bal(METRO_OP)) == (0, 1100)


def test_exit_without_an_entry_charges_the_incomplete_charge(hb):
    """EXIT with no open entry takes the incomplete charge (800) for the operator."""
    card = hb.card(100, 5000)
    charged(hb.tap(card, T(8), EXIT, "metro_1", "m1_museum"), 800, balance=4200)
    assert hb.bal(METRO_OP) == 800


def test_exit_after_the_timeout_charges_the_incomplete_charge_only(hb):
    """Exit 4 h + 1 s after entry: 800 (the incomplete charge), not the 200 distance fare."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    charged(hb.tap(card, T(12, 0, 1), EXIT, "metro_1", "m1_museum"), 800, balance=4200)
    assert hb.held(card) == 0


def test_metro_entry_holds_what_the_card_has_when_below_the_maximum_fare(hb):
    """A card with 300 can enter: the hold is 300; a 200 exit leaves 100."""
    card = hb.card(100, 300)
    charged(hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station"), 0, balance=0)
    assert hb.held(card) == 300
    charged(hb.tap(card, T(8, 20), EXIT, "metro_1", "m1_museum"), 200, balance=100)


def test_an_exit_fare_above_the_hold_is_debited_anyway(hb):
    """Hold 300, 38.01 km ride 800: the 500 beyond the hold is debited (balance -500), card denylisted."""
    card = hb.card(100, 300)
    hb.tap(card, T(8), ENTRY, "metro_2", "m2_qixiangtai")
    charged(hb.tap(card, T(9), EXIT, "metro_1", "m1_xinjiang_street"), 800, balance=-500)
    assert hb.bal(METRO_OP) == 800
    assert card in hb.led.denylist().tolist()
    assert hb.led.verify().ok


def test_metro_entry_with_an_empty_card_is_refused(hb):
    """Nothing can be held (0 balance, no allowance): ENTRY is INSUFFICIENT_FUNDS."""
    card = hb.card(100, 0)
    refused(hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station"), Result.INSUFFICIENT_FUNDS)
    assert hb.held(card) == 0


# =========================================================================== refusals


def test_a_frozen_card_is_refused(hb):
    """Every tap of a frozen card is ACCOUNT_FROZEN; nothing moves."""
    card = hb.card(100, 5000)
    hb.freeze(card)
    refused(hb.tap(card, T(8), BOARD, "bus_1", "bs_0001"), Result.ACCOUNT_FROZEN)
    refused(hb.tap(card, T(8), ENTRY, "metro_1", "m1_museum"), Result.ACCOUNT_FROZEN)
    assert hb.bal(card) == 5000


def test_a_closed_card_is_refused(hb):
    """A closed card's tap is ACCOUNT_CLOSED; nothing moves."""
    card = hb.card(100, 5000)
    hb.close(card)
    refused(hb.tap(card, T(8), BOARD, "bus_1", "bs_0001"), Result.ACCOUNT_CLOSED)
    assert hb.bal(BUS_OP) == 0


def test_a_bus_fare_the_card_cannot_pay_is_refused_and_nothing_changes(hb):
    """99 fen on the card, 100 fen fare: INSUFFICIENT_FUNDS; then 100 fen is enough."""
    card = hb.card(100, 99)
    refused(hb.tap(card, T(8), BOARD, "bus_1", "bs_0001"), Result.INSUFFICIENT_FUNDS)
    assert (hb.bal(card), hb.bal(BUS_OP)) == (99, 0)
    hb.topup(card, 1)
    charged(hb.tap(card, T(8, 1), BOARD, "bus_1", "bs_0001"), 100, balance=0)


def test_unknown_card_and_non_card_accounts_are_refused(hb):
    """Unknown card ACCOUNT_NOT_FOUND, an operator tapping WRONG_ACCOUNT_KIND, id 0 INVALID_ACCOUNT_ID."""
    refused(hb.tap(12345, T(8), BOARD, "bus_1", "bs_0001"), Result.ACCOUNT_NOT_FOUND)
    refused(hb.tap(METRO_OP, T(8), BOARD, "bus_1", "bs_0001"), Result.WRONG_ACCOUNT_KIND)
    refused(hb.tap(0, T(8), BOARD, "bus_1", "bs_0001"), Result.INVALID_ACCOUNT_ID)


@pytest.mark.parametrize(
    "tap,route,stop",
    [
        (BOARD, "metro_1", "m1_museum"),  # the metro is gated: ENTRY/EXIT only
        (ENTRY, "bus_1", "bs_0001"),  # a bus takes BOARD only
        (EXIT, "bus_1", "bs_0001"),
        (ENTRY, "taxi", "taxi_anywhere"),
        (0, "bus_1", "bs_0001"),  # not a TapType
        (5, "bus_1", "bs_0001"),
    ],
)
def test_a_tap_the_network_does_not_take_is_invalid(hb, tap, route, stop):
    """The tap type must be one the route's network takes (and a TapType at all): else INVALID_TAP."""
    card = hb.card(100, 5000)
    refused(hb.tap(card, T(8), tap, route, stop), Result.INVALID_TAP)
    assert (hb.bal(card), hb.held(card)) == (5000, 0)


@pytest.mark.parametrize(
    "field, code",
    [
        ("counterparty_id", Result.COUNTERPARTY_MUST_BE_ZERO),
        ("limit_fen", Result.LIMIT_MUST_BE_ZERO),
        ("ref_source", Result.REF_MUST_BE_ZERO),
        ("ref_seq", Result.REF_MUST_BE_ZERO),
        ("account_kind", Result.ACCOUNT_KIND_MUST_BE_ZERO),
        ("category", Result.CATEGORY_MUST_BE_ZERO),
        ("pad16", Result.RESERVED_MUST_BE_ZERO),
        ("pad32", Result.RESERVED_MUST_BE_ZERO),
    ],
)
def test_a_tap_with_a_field_it_does_not_use_is_refused_by_that_field(hb, field, code):
    """Every field a TAP does not use must be zero: each one set has its own code
    (docs/semantics.md, "Fields each kind uses"), as for every other op kind."""
    card = hb.card(100, 5000)
    refused(hb.tap(card, T(8), BOARD, "bus_1", "bs_0001", **{field: 1}), code)
    assert hb.bal(card) == 5000


def test_a_tap_at_or_before_the_epoch_is_refused(hb):
    """A TAP's time_us must be positive, as every op's: 0 and below are TIME_MUST_BE_POSITIVE
    (not INVALID_TAP, which is for a time past TAP_TIME_US_MAX)."""
    card = hb.card(100, 5000)
    refused(hb.tap(card, 0, SWEEP, 0, 0), Result.TIME_MUST_BE_POSITIVE)
    refused(hb.tap(card, -1, BOARD, "bus_1", "bs_0001"), Result.TIME_MUST_BE_POSITIVE)
    assert hb.bal(card) == 5000


def test_unknown_route_and_stop_indexes_are_refused(hb):
    """Indexes beyond the system's routes / stops: UNKNOWN_ROUTE / UNKNOWN_STOP."""
    card = hb.card(100, 5000)
    refused(hb.tap(card, T(8), BOARD, 1_000_000, "bs_0001"), Result.UNKNOWN_ROUTE)
    refused(hb.tap(card, T(8), BOARD, "bus_1", 1_000_000), Result.UNKNOWN_STOP)
    refused(hb.tap(card, T(8), ENTRY, "metro_1", 4_000_000_000), Result.UNKNOWN_STOP)
    assert hb.bal(card) == 5000


def test_a_linked_tap_is_invalid_flags(hb):
    """Taps are never part of a chain: LINKED is INVALID_FLAGS, and the op it linked to fails with it."""
    card = hb.card(100, 5000)
    ops = np.concatenate(
        [
            hb.op(card, T(8), BOARD, "bus_1", "bs_0001", flags=OpFlags.LINKED),
            hb.op(card, T(8, 1), BOARD, "bus_1", "bs_0001"),
        ]
    )
    r = hb.led.apply(ops)
    assert [Result(int(c)).name for c in r["code"]] == ["INVALID_FLAGS", "LINKED_FAILED"]
    assert hb.bal(card) == 5000


def test_taxi_without_an_amount_and_bus_with_one_are_invalid_amount(hb):
    """amount_fen is given exactly on metered networks: else INVALID_AMOUNT (also when negative)."""
    card = hb.card(100, 5000)
    refused(hb.tap(card, T(8), BOARD, "taxi", "taxi_anywhere"), Result.INVALID_AMOUNT)
    refused(hb.tap(card, T(8), BOARD, "bus_1", "bs_0001", amount=100), Result.INVALID_AMOUNT)
    refused(hb.tap(card, T(8), ENTRY, "metro_1", "m1_museum", amount=800), Result.INVALID_AMOUNT)
    refused(hb.tap(card, T(8), BOARD, "taxi", "taxi_anywhere", amount=-5), Result.INVALID_AMOUNT)
    assert hb.bal(card) == 5000


def test_a_missing_operator_account_is_operator_not_found(led):
    """No account 9003 (ferry), or 9001 opened as a MERCHANT: OPERATOR_NOT_FOUND."""
    rig = harbin_rig(led, operators=(METRO_OP,))
    rig.open(BUS_OP, AccountKind.MERCHANT)
    card = rig.card(100, 5000)
    refused(rig.tap(card, T(8), BOARD, "ferry_songhua", "ferry_flood_monument_pier"), Result.OPERATOR_NOT_FOUND)
    refused(rig.tap(card, T(8), BOARD, "bus_1", "bs_0001"), Result.OPERATOR_NOT_FOUND)
    assert (rig.bal(card), rig.bal(BUS_OP)) == (5000, 0)


def test_a_tap_before_every_installed_version_is_no_fare_system(led, tmp_path):
    """The only version is in force from T(8): a tap at T(8) - 1 µs finds none; one at T(8) does."""
    rig = synthetic_rig(led, tmp_path, effective_from_us=T(8))
    card = rig.card(100, 5000)
    refused(rig.tap(card, T(8) - 1, BOARD, "bus_a", "b1"), Result.NO_FARE_SYSTEM)
    charged(rig.tap(card, T(8), BOARD, "bus_a", "b1"), taps_feed.BUS, balance=4800)


# =========================================================================== denylist


def test_denylist_lists_frozen_closed_and_cards_at_or_below_zero(hb):
    """Harbin allows no negative balance: a card at 0 or below is listed, one with money is not."""
    frozen = hb.card(101, 5000)
    hb.freeze(frozen)
    closed = hb.card(102, 5000)
    hb.close(closed)
    empty = hb.card(103)
    spent = hb.card(104, 100)
    charged(hb.tap(spent, T(8), BOARD, "bus_1", "bs_0001"), 100, balance=0)
    rich = hb.card(105, 1)
    debtor = hb.card(106, 300)
    hb.tap(debtor, T(8), ENTRY, "metro_2", "m2_qixiangtai")
    charged(hb.tap(debtor, T(9), EXIT, "metro_1", "m1_xinjiang_street"), 800, balance=-500)
    deny = hb.led.denylist()
    assert deny.tolist() == [frozen, closed, empty, spent, debtor]
    assert rich not in deny.tolist() and CLEARING not in deny.tolist()


def test_bus_to_metro_transfer_charges_the_incremental_fare(syn):
    """Bus 200, then metro A→C (500) within the transfer window: journey 200 + (500 - 100) = 600,
    the exit charges 600 - 200 = 400 (TRANSFER) and releases 100 of the 500 hold."""
    card = syn.card(100, 5000)
    charged(syn.tap(card, T(10), BOARD, "bus_a", "b1"), 200, balance=4800)
    charged(syn.tap(card, T(10, 10), ENTRY, "metro_x", "ma"), 0, balance=4300)
    charged(syn.tap(card, T(10, 30), EXIT, "metro_x", "mc"), 400, balance=4400, discounts=TRANSFER)
    assert (syn.held(card), syn.bal(taps_feed.BUS_OPERATOR), syn.bal(taps_feed.METRO_OPERATOR)) == (0, 200, 400)


def test_a_full_fare_leg_after_a_transfer_reports_no_discount(syn):
    """RESULT_DTYPE.discounts says why *this tap's* fare is below the plain fare. Bus 200, metro
    400 (TRANSFER), then another bus in the same journey: 200, the plain fare, so no bits."""
    card = syn.card(100, 5000)
    syn.tap(card, T(10), BOARD, "bus_a", "b1")
    syn.tap(card, T(10, 10), ENTRY, "metro_x", "ma")
    charged(syn.tap(card, T(10, 30), EXIT, "metro_x", "mc"), 400, discounts=TRANSFER)
    charged(syn.tap(card, T(10, 40), BOARD, "bus_a", "b1"), 200, balance=4200, discounts=NONE)


def test_a_full_fare_bus_after_a_student_metro_ride_reports_no_discount(hb):
    """Student: metro 6.01 km 150 (CATEGORY), then bus 14 in the same journey: 200 for every
    rider, so the bus tap reports no discount (as it does when the bus is ridden alone)."""
    card = hb.card(100, 5000, category=STUDENT)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_taipingqiao")
    charged(hb.tap(card, T(8, 20), EXIT, "metro_1", "m1_railway_bureau"), 150, discounts=CATEGORY)
    charged(hb.tap(card, T(8, 30), BOARD, "bus_14", "bs_0001"), 200, balance=4650, discounts=NONE)


def test_metro_alone_pays_the_plain_fare(syn):
    """Metro A→C with no bus before it: 500, no discount."""
    card = syn.card(100, 5000)
    syn.tap(card, T(10), ENTRY, "metro_x", "ma")
    charged(syn.tap(card, T(10, 20), EXIT, "metro_x", "mc"), 500, balance=4500)


@pytest.mark.parametrize(
    "entry,fare,discounts",
    [
        (T(10, 30), 400, TRANSFER),  # 1800 s after the bus: same journey
        (T(10, 30, 1), 500, NONE),  # 1801 s > journey_break_s: new journey, although the
        # transfer rule's own 5400 s limit would still allow the transfer
    ],
)
def test_a_tap_after_the_journey_break_starts_a_new_journey(syn, entry, fare, discounts):
    """journey_break_s = 1800 is measured from the bus's arrival to the metro's entry."""
    card = syn.card(100, 5000)
    syn.tap(card, T(10), BOARD, "bus_a", "b1")
    syn.tap(card, entry, ENTRY, "metro_x", "ma")
    charged(syn.tap(card, entry + 10 * 60 * US, EXIT, "metro_x", "mc"), fare, 4800 - fare, discounts)


def test_a_late_tap_is_priced_alone_and_leaves_the_journey_untouched(syn):
    """Bus 10:00 (200); an offline validator uploads a bus tap of 09:00: priced alone (200, no
    transfer). The metro entered at 10:20 still continues the 10:00 journey (20 min < 30 min
    break from 10:00, not from 09:00), and the journey has charged 200, not 400: 600 - 200 = 400."""
    card = syn.card(100, 5000)
    charged(syn.tap(card, T(10), BOARD, "bus_a", "b1"), 200)
    charged(syn.tap(card, T(9), BOARD, "bus_a", "b2"), 200, balance=4600)
    syn.tap(card, T(10, 20), ENTRY, "metro_x", "ma")
    charged(syn.tap(card, T(10, 40), EXIT, "metro_x", "mc"), 400, balance=4200, discounts=TRANSFER)


def test_a_late_metro_ride_is_priced_alone(syn):
    """Bus 10:00, then a metro ride entered at 09:40 (uploaded late): its leg departs before the
    journey's last leg, so it is priced alone: 500, no transfer."""
    card = syn.card(100, 5000)
    syn.tap(card, T(10), BOARD, "bus_a", "b1")
    syn.tap(card, T(9, 40), ENTRY, "metro_x", "ma")
    charged(syn.tap(card, T(10, 5), EXIT, "metro_x", "mc"), 500, balance=4300)


def test_the_night_timeframe_is_judged_in_local_time(syn):
    """Bus boarded 22:00-24:00 local (14:00-16:00 UTC) costs 300; at 21:59:59 it costs 200."""
    card = syn.card(100, 5000)
    charged(syn.tap(card, T(21, 59, 59), BOARD, "bus_a", "b1"), 200)
    charged(syn.tap(card, T(22), BOARD, "bus_a", "b1"), 300, balance=4500)


def test_same_station_exit_without_a_configured_charge_is_rated_by_the_feed(syn):
    """No same_station_charge: A→A is the feed's same-area rule, 200."""
    card = syn.card(100, 5000)
    syn.tap(card, T(10), ENTRY, "metro_x", "mb")
    charged(syn.tap(card, T(10, 5), EXIT, "metro_x", "mb"), 200, balance=4800)


def test_a_timed_out_entry_charges_the_incomplete_charge_and_releases_the_rest(syn):
    """max_fare 500 held, incomplete_charge 400: an exit 2 h + 1 s later posts 400, releases 100."""
    card = syn.card(100, 5000)
    syn.tap(card, T(10), ENTRY, "metro_x", "ma")
    charged(syn.tap(card, T(12, 0, 1), EXIT, "metro_x", "mb"), 400, balance=4600)
    assert syn.held(card) == 0
    syn.tap(card, T(13), ENTRY, "metro_x", "ma")
    charged(syn.tap(card, T(15), SWEEP), 0, balance=4100)  # exactly 2 h: not timed out
    charged(syn.tap(card, T(15) + 1, SWEEP), 400, balance=4200)
    assert (syn.held(card), syn.bal(taps_feed.METRO_OPERATOR)) == (0, 800)


def test_a_second_entry_settles_the_first_for_the_incomplete_charge(syn):
    """Second ENTRY: the first is charged 400 (of its 500 hold), then a fresh 500 hold."""
    card = syn.card(100, 5000)
    syn.tap(card, T(10), ENTRY, "metro_x", "ma")
    charged(syn.tap(card, T(10, 30), ENTRY, "metro_x", "mb"), 400, balance=4100)  # 5000 - 400 - 500
    assert syn.held(card) == 500


def test_a_daily_cap_stops_charging_and_resets_the_next_service_day(led, tmp_path):
    """Cap 500 a service day (starting 04:00 local). Bus 200 each: 200, 200, 100 (CAP), 0 (CAP);
    03:59:59 the next morning is still the same service day (0, CAP); 04:00 starts a new one."""
    rig = synthetic_rig(led, tmp_path, day_start_s=4 * 3600, extra_toml='[[caps]]\nperiod = "day"\namount = "5.00"\n')
    card = rig.card(100, 5000)
    bus = lambda when: rig.tap(card, when, BOARD, "bus_a", "b1")  # noqa: E731
    charged(bus(T(8)), 200)
    charged(bus(T(9)), 200)
    charged(bus(T(10)), 100, discounts=CAP)
    charged(bus(T(11)), 0, balance=4500, discounts=CAP)
    nxt = DAY + dt.timedelta(days=1)
    charged(bus(T(3, 59, 59, nxt)), 0, discounts=CAP)
    charged(bus(T(4, 0, 0, nxt)), 200, balance=4300)
    assert rig.bal(taps_feed.BUS_OPERATOR) == 700


def test_a_cap_counts_metro_exits_at_their_entry_time(led, tmp_path):
    """Cap 500 a day over every network: metro A→C 500 reaches it, the bus after pays 0 (CAP)."""
    rig = synthetic_rig(led, tmp_path, extra_toml='[[caps]]\nperiod = "day"\namount = "5.00"\n')
    card = rig.card(100, 5000)
    rig.tap(card, T(8), ENTRY, "metro_x", "ma")
    charged(rig.tap(card, T(8, 20), EXIT, "metro_x", "mc"), 500, balance=4500)
    charged(rig.tap(card, T(9), BOARD, "bus_a", "b1"), 0, balance=4500, discounts=CAP)


def test_a_monthly_tier_discounts_once_the_spend_crosses_from_amount(led, tmp_path):
    """Tier: 50% off bus fares once 4.00 is spent this (local) month. Spend before each tap:
    0 → 200, 200 → 200, 400 → 100 (TIER), 500 → 100 (TIER); 21:30 on 31 March still March
    (600 → 100); 00:30 on 1 April local (16:30 UTC, 31 March) is a new month → 200."""
    tier = '[[tiers]]\nnetwork_ids = ["bus"]\nfrom_amount = "4.00"\npercent_off = 50\n'
    rig = synthetic_rig(led, tmp_path, extra_toml=tier)
    card = rig.card(100, 5000)
    bus = lambda when: rig.tap(card, when, BOARD, "bus_a", "b1")  # noqa: E731
    charged(bus(T(8)), 200)
    charged(bus(T(9)), 200)
    charged(bus(T(10)), 100, discounts=TIER)
    charged(bus(T(11)), 100, discounts=TIER)
    charged(bus(T(21, 30, 0, dt.date(2026, 3, 31))), 100, discounts=TIER)
    charged(bus(T(0, 30, 0, dt.date(2026, 4, 1))), 200, balance=4100)


def test_a_negative_balance_allowance_lets_a_card_ride_into_debt(led, tmp_path):
    """bus_fare allows 1.00 negative: a card with 100 boards a 200 bus (balance -100) and is then
    denylisted (-100 <= -allowance); the next 200 bus would need -300: INSUFFICIENT_FUNDS."""
    rig = synthetic_rig(led, tmp_path, extra_toml='[negative_balance]\nbus_fare = "1.00"\n')
    card = rig.card(100, 100)
    assert card not in led.denylist().tolist()
    charged(rig.tap(card, T(8), BOARD, "bus_a", "b1"), 200, balance=-100)
    assert led.denylist().tolist() == [card]
    refused(rig.tap(card, T(9), BOARD, "bus_a", "b1"), Result.INSUFFICIENT_FUNDS)
    assert rig.bal(card) == -100
    assert led.verify().ok


@pytest.mark.parametrize("buses,fare,discounts", [(3, 400, TRANSFER), (4, 500, NONE)])
def test_a_journey_keeps_at_most_four_legs(syn, buses, fare, discounts):
    """Buses every 20 min, then the metro: as the 4th leg it gets the transfer (400); as the 5th
    (JOURNEY_LEGS_MAX = 4) it starts a new journey and pays 500."""
    card = syn.card(100, 5000)
    for k in range(buses):
        charged(syn.tap(card, T(10, 20 * k), BOARD, "bus_a", "b1"), 200)
    entry = T(10, 20 * buses)
    syn.tap(card, entry, ENTRY, "metro_x", "ma")
    charged(syn.tap(card, entry + 15 * 60 * US, EXIT, "metro_x", "mc"), fare, 5000 - 200 * buses - fare, discounts)


def test_a_late_tap_in_the_current_period_counts_towards_the_cap(led, tmp_path):
    """Daily cap 500: 10:00 200, 11:00 200, then a 09:00 tap uploaded late: 100 (CAP); 12:00: 0."""
    rig = synthetic_rig(led, tmp_path, extra_toml=DAY_CAP)
    card = rig.card(100, 5000)
    charged(rig.tap(card, T(10), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(11), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(9), BOARD, "bus_a", "b1"), 100, discounts=CAP)
    charged(rig.tap(card, T(12), BOARD, "bus_a", "b1"), 0, balance=4500, discounts=CAP)


def test_a_tap_in_a_period_older_than_the_counter_is_neither_capped_nor_counted(led, tmp_path):
    """Daily cap 500. Day 1: 200 + 200. Day 2 08:00: 200 (the counter moves to day 2). A day-1
    tap uploaded now: 200 in full (day 1's 400 is forgotten, so no CAP) and not counted in day 2:
    day 2 09:00 pays 200 (spent 400), 10:00 pays 100 (CAP)."""
    rig = synthetic_rig(led, tmp_path, extra_toml=DAY_CAP)
    card = rig.card(100, 5000)
    d2 = DAY + dt.timedelta(days=1)
    charged(rig.tap(card, T(8), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(9), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(8, day=d2), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(10), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(9, day=d2), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(10, day=d2), BOARD, "bus_a", "b1"), 100, balance=3900, discounts=CAP)


def test_a_weekly_cap_runs_monday_to_sunday(led, tmp_path):
    """Weekly cap 500: Tue 200, Wed 200, Sun 100 (CAP); the next Monday starts a new week: 200."""
    rig = synthetic_rig(led, tmp_path, extra_toml='[[caps]]\nperiod = "week"\namount = "5.00"\n')
    card = rig.card(100, 5000)
    on = lambda d: T(8, day=dt.date(2026, 3, d))  # noqa: E731 - 2026-03-10 is a Tuesday
    charged(rig.tap(card, on(10), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, on(11), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, on(15), BOARD, "bus_a", "b1"), 100, discounts=CAP)
    charged(rig.tap(card, on(16), BOARD, "bus_a", "b1"), 200, balance=4300)


def test_a_rolling_seven_day_cap_runs_from_the_first_capped_tap(led, tmp_path):
    """Rolling 7-day cap 500 from Tue 10th: Thu 200, Mon 16th (day 7 of the window) 100 (CAP);
    Tue 17th opens a new window: 200, Wed 200, Mon 23rd 100 (CAP)."""
    rig = synthetic_rig(led, tmp_path, extra_toml='[[caps]]\nperiod = "rolling_7d"\namount = "5.00"\n')
    card = rig.card(100, 5000)
    on = lambda d: T(8, day=dt.date(2026, 3, d))  # noqa: E731
    steps = [(10, 200, NONE), (12, 200, NONE), (16, 100, CAP), (17, 200, NONE), (18, 200, NONE), (23, 100, CAP)]
    for d, fare, disc in steps:
        charged(rig.tap(card, on(d), BOARD, "bus_a", "b1"), fare, discounts=disc)
    assert rig.bal(card) == 5000 - 1000


def test_a_cap_on_one_network_ignores_the_others(led, tmp_path):
    """Daily cap 300 on the bus network only: bus 200, metro A→C 500 in full (not counted),
    bus 100 (CAP)."""
    rig = synthetic_rig(led, tmp_path, extra_toml='[[caps]]\nperiod = "day"\namount = "3.00"\nnetwork_ids = ["bus"]\n')
    card = rig.card(100, 5000)
    charged(rig.tap(card, T(8), BOARD, "bus_a", "b1"), 200)
    rig.tap(card, T(9), ENTRY, "metro_x", "ma")
    charged(rig.tap(card, T(9, 20), EXIT, "metro_x", "mc"), 500)
    charged(rig.tap(card, T(10), BOARD, "bus_a", "b1"), 100, balance=4200, discounts=CAP)


def test_a_cap_for_one_rider_category_leaves_the_others_alone(led, tmp_path):
    """Daily cap 300 for students: a student pays 200 then 100 (CAP); an adult 200 and 200."""
    cap = '[[caps]]\nperiod = "day"\namount = "3.00"\nrider_category_ids = ["student"]\n'
    rig = synthetic_rig(led, tmp_path, extra_toml=cap)
    student, adult = rig.card(100, 5000, category=STUDENT), rig.card(101, 5000)
    for card, second, disc in [(student, 100, CAP), (adult, 200, NONE)]:
        charged(rig.tap(card, T(8), BOARD, "bus_a", "b1"), 200)
        charged(rig.tap(card, T(9), BOARD, "bus_a", "b1"), second, discounts=disc)


def test_a_metro_ride_over_midnight_counts_to_the_day_of_its_entry(led, tmp_path):
    """Daily cap 500. Bus 20:00 (200); metro entered 23:50, left 00:20 next day: A→C 500 is capped
    to the 300 left of the entry day (CAP); a bus the next morning pays 200 (a fresh day)."""
    rig = synthetic_rig(led, tmp_path, extra_toml=DAY_CAP)
    card = rig.card(100, 5000)
    d2 = DAY + dt.timedelta(days=1)
    charged(rig.tap(card, T(20), BOARD, "bus_a", "b1"), 200)
    rig.tap(card, T(23, 50), ENTRY, "metro_x", "ma")
    charged(rig.tap(card, T(0, 20, day=d2), EXIT, "metro_x", "mc"), 300, discounts=CAP)
    charged(rig.tap(card, T(8, day=d2), BOARD, "bus_a", "b1"), 200, balance=4300)


def test_a_tier_stops_at_its_until_amount(led, tmp_path):
    """Tier 50% off from 4.00 until 6.00 of monthly spend: spend before each tap 0, 200 → 200;
    400, 500 → 100 (TIER); 600, 800 → 200 again."""
    tier = '[[tiers]]\nnetwork_ids = ["bus"]\nfrom_amount = "4.00"\nuntil_amount = "6.00"\npercent_off = 50\n'
    rig = synthetic_rig(led, tmp_path, extra_toml=tier)
    card = rig.card(100, 5000)
    steps = [(8, 200, NONE), (9, 200, NONE), (10, 100, TIER), (11, 100, TIER), (12, 200, NONE), (13, 200, NONE)]
    for h, fare, disc in steps:
        charged(rig.tap(card, T(h), BOARD, "bus_a", "b1"), fare, discounts=disc)


def test_a_capped_ride_costs_nothing_so_an_empty_card_may_board(led, tmp_path):
    """Daily cap 4.00: after 200 + 200 the card is empty, and the next bus charges 0 (CAP): OK."""
    rig = synthetic_rig(led, tmp_path, extra_toml='[[caps]]\nperiod = "day"\namount = "4.00"\n')
    card = rig.card(100, 400)
    charged(rig.tap(card, T(8), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(9), BOARD, "bus_a", "b1"), 200, balance=0)
    charged(rig.tap(card, T(10), BOARD, "bus_a", "b1"), 0, balance=0, discounts=CAP)


def test_a_tap_in_a_month_older_than_the_tier_counter_is_neither_discounted_nor_counted(led, tmp_path):
    """Tier 50% from 4.00 a month. March: 200, 200 (spent 400). 1 April: 200 (counter moves to
    April). A late March tap: 200 in full (March is forgotten). April goes on: 200 (spent 200 + 200
    = 400 before the next), then 100 (TIER)."""
    tier = '[[tiers]]\nnetwork_ids = ["bus"]\nfrom_amount = "4.00"\npercent_off = 50\n'
    rig = synthetic_rig(led, tmp_path, extra_toml=tier)
    card = rig.card(100, 5000)
    apr = dt.date(2026, 4, 1)
    for when, fare, disc in [
        (T(8), 200, NONE), (T(9), 200, NONE), (T(8, day=apr), 200, NONE), (T(10), 200, NONE),
        (T(9, day=apr), 200, NONE), (T(10, day=apr), 100, TIER),
    ]:  # fmt: skip
        charged(rig.tap(card, when, BOARD, "bus_a", "b1"), fare, discounts=disc)


# =========================================================================== effective dating


def test_each_tap_pays_the_version_in_force_at_its_time(led, tmp_path):
    """v1 (bus 2.00) from t0, v2 (bus 3.00) from t1: taps before t1 pay 200, after 300, and a
    late tap uploaded after v2 was installed, dated before t1, still pays v1's 200."""
    t0, t1 = T(0), T(0, day=DAY + dt.timedelta(days=1))
    rig = synthetic_rig(led, tmp_path, effective_from_us=t0)
    card = rig.card(100, 5000)
    charged(rig.tap(card, T(8), BOARD, "bus_a", "b1"), 200)
    v2 = FareSystem.from_gtfs(taps_feed.write_feed(tmp_path / "v2", bus_fare="3.00"))
    led.install_fares(v2, t1)
    assert led.fare_system(t1 - 1).digest == rig.fs.digest
    assert led.fare_system(t1).digest == led.fare_system().digest != rig.fs.digest
    charged(rig.tap(card, t1 + 8 * HOUR_US, BOARD, "bus_a", "b1"), 300)
    charged(rig.tap(card, T(9), BOARD, "bus_a", "b1"), 200, balance=4300)
    assert led.verify().ok


def test_install_fares_refuses_times_that_would_re_rate_taps(led, tmp_path):
    """effective_from_us must be after the latest tap applied and after the latest version."""
    rig = synthetic_rig(led, tmp_path, effective_from_us=T(0))
    card = rig.card(100, 5000)
    rig.tap(card, T(8), BOARD, "bus_a", "b1")
    v2 = FareSystem.from_gtfs(taps_feed.write_feed(tmp_path / "v2", bus_fare="3.00"))
    for bad in (T(7), T(8)):  # before / at the latest tap
        with pytest.raises(ValueError):
            led.install_fares(v2, bad)
    led.install_fares(v2, T(8) + 1)
    for bad in (T(8) + 1, T(8)):  # at / before the latest version
        with pytest.raises(ValueError):
            led.install_fares(v2, bad)
    charged(rig.tap(card, T(9), BOARD, "bus_a", "b1"), 300, balance=4500)


def test_a_checkpoint_taken_mid_journeys_verifies_and_reopens(hb):
    """A checkpoint holds the cards' journeys and the open metro entries in the core's
    store order, not sorted (cards here first tap in the reverse of their opening order,
    entries come from several gates): verify() and a reopen from it agree with the journal."""
    cards = [hb.card(100 + i, 5000) for i in range(6)]
    for i, c in enumerate(reversed(cards)):
        hb.tap(c, T(8, i), BOARD, "bus_1", "bs_0001")
    for i, c in enumerate(reversed(cards[:4])):  # entries still open at the checkpoint
        ops = hb.op(c, T(8, 30 + i), ENTRY, "metro_1", "m1_museum")
        ops["source"] = 50 - i  # gates with descending ids
        assert int(hb.led.apply(ops)[0]["code"]) == Result.OK
    hb.led.checkpoint()
    for c in cards[:2]:
        hb.tap(c, T(9), EXIT, "metro_1", "m1_taipingqiao")
    report = hb.led.verify()
    assert report.ok, report.problems
    before = {c: (hb.bal(c), hb.held(c)) for c in cards}
    path = hb.led.path
    hb.led.close()
    with cardledger.open(path, create=True) as again:
        assert {c: (again.balance(c), again.account(c).debits_pending) for c in cards} == before
        assert again.verify().ok


def test_a_journey_snapshot_clears_the_legs_past_its_count(hb):
    """A checkpoint copies the journey store raw on the batch path and clears the legs
    past each journey's count in the checkpoint thread: the same rows either way."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), BOARD, "bus_1", "bs_0001")
    hb.tap(card, T(8, 10), BOARD, "bus_1", "bs_0001")  # a second leg of that journey
    hb.tap(card, T(12), BOARD, "bus_1", "bs_0001")  # past the journey break: one leg again
    engine = hb.led._engine
    raw = engine.snapshot_journeys(clear_unused=False).copy()
    cleared = engine.snapshot_journeys()
    engine.clear_unused_legs(raw)
    assert raw.tobytes() == cleared.tobytes()
    row = cleared[cleared["account_id"] == card][0]
    assert int(row["n_legs"]) == 1 and not row["legs"][1:].tobytes().strip(b"\0")


def _now_us() -> int:
    return int(dt.datetime.now(dt.timezone.utc).timestamp()) * US


def test_a_tap_later_than_the_clock_allows_is_refused_and_blocks_no_fare_version(led, tmp_path):
    """A validator whose clock ran ahead: its tap is refused (TAP_TIME_IN_FUTURE), moves no
    money, is decided (a resend is ID_ALREADY_FAILED), and does not keep a new version
    from being installed before that future instant."""
    rig = synthetic_rig(led, tmp_path)
    card = rig.card(100, 5000)
    now = _now_us()
    wrong = rig.op(card, now + 2 * 24 * HOUR_US, BOARD, "bus_a", "b1")  # two days ahead
    refused(led.apply(wrong)[0], Result.TAP_TIME_IN_FUTURE)
    assert rig.bal(card) == 5000
    assert Result(int(led.apply(wrong)[0]["code"])) == Result.ID_ALREADY_FAILED
    # (The amounts depend on the hour of the day these run: only codes and sums are checked.)
    first = rig.tap(card, now + HOUR_US, BOARD, "bus_a", "b1")  # within a day: fine
    assert Result(int(first["code"])) == Result.OK
    v2 = FareSystem.from_gtfs(taps_feed.write_feed(tmp_path / "v2", bus_fare="3.00"))
    led.install_fares(v2, now + 2 * HOUR_US)  # after the last tap rated, before the refused one
    second = rig.tap(card, now + 3 * HOUR_US, BOARD, "bus_a", "b1")
    assert Result(int(second["code"])) == Result.OK
    left = 5000 - int(first["amount_fen"]) - int(second["amount_fen"])
    assert rig.bal(card) == left
    path = led.path
    led.close()
    with cardledger.open(path, create=True) as again:  # the refusal replays as decided, whatever the clock
        assert again.verify().ok
        assert again.balance(card) == left


def test_the_future_tap_limit_is_configurable(led, tmp_path):
    rig = synthetic_rig(led, tmp_path)
    card = rig.card(100, 5000)
    far = _now_us() + 10 * 24 * HOUR_US
    led.tap_time_ahead_max_us = None  # no limit: the ledger trusts the validators' clocks
    assert Result(int(rig.tap(card, far, BOARD, "bus_a", "b1")["code"])) == Result.OK
    led.tap_time_ahead_max_us = 0  # nothing after this host's clock
    refused(rig.tap(card, _now_us() + HOUR_US, BOARD, "bus_a", "b1"), Result.TAP_TIME_IN_FUTURE)
    assert led.verify().ok


def test_a_tap_rated_by_a_new_version_starts_a_new_journey(led, tmp_path):
    """Bus 10:00 under v1 (200); v2 (metro A→C 4.50) from 10:15: the metro entered 10:20 is rated
    by v2 and does not continue v1's journey: 450, no transfer."""
    rig = synthetic_rig(led, tmp_path)
    card = rig.card(100, 5000)
    charged(rig.tap(card, T(10), BOARD, "bus_a", "b1"), 200)
    led.install_fares(FareSystem.from_gtfs(taps_feed.write_feed(tmp_path / "v2", metro_ac_fare="4.50")), T(10, 15))
    rig.tap(card, T(10, 20), ENTRY, "metro_x", "ma")
    charged(rig.tap(card, T(10, 40), EXIT, "metro_x", "mc"), 450, balance=4350)


def test_an_exit_is_rated_by_the_version_in_force_at_entry(led, tmp_path):
    """Entered 10:10 under v1 (A→C 500); v2 (A→C 450) from 10:15; exit 10:30 pays v1's 500.
    The next ride, entered under v2, pays 450."""
    rig = synthetic_rig(led, tmp_path)
    card = rig.card(100, 5000)
    rig.tap(card, T(10, 10), ENTRY, "metro_x", "ma")
    led.install_fares(FareSystem.from_gtfs(taps_feed.write_feed(tmp_path / "v2", metro_ac_fare="4.50")), T(10, 15))
    charged(rig.tap(card, T(10, 30), EXIT, "metro_x", "mc"), 500, balance=4500)
    rig.tap(card, T(11), ENTRY, "metro_x", "ma")
    charged(rig.tap(card, T(11, 20), EXIT, "metro_x", "mc"), 450, balance=4050)


def test_cap_counters_belong_to_one_version(led, tmp_path):
    """Daily cap 500 in v1 and v2 (v2 from 09:30). v1: 08:00 200, 09:00 200. v2 starts fresh
    counters: 10:00 200, 11:00 200. A late v1 tap (09:10) skips the v2 counters: 200 in full and
    not counted. 12:00 under v2: 100 (CAP, v2 spent 400)."""
    rig = synthetic_rig(led, tmp_path, extra_toml=DAY_CAP)
    card = rig.card(100, 5000)
    charged(rig.tap(card, T(8), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(9), BOARD, "bus_a", "b1"), 200)
    v2 = taps_feed.write_feed(tmp_path / "v2", metro_ac_fare="4.50", extra_toml=DAY_CAP)
    led.install_fares(FareSystem.from_gtfs(v2), T(9, 30))
    charged(rig.tap(card, T(10), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(11), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(9, 10), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(card, T(12), BOARD, "bus_a", "b1"), 100, balance=3900, discounts=CAP)


# =========================================================================== persistence


@pytest.mark.parametrize("checkpoint", [True, False])
def test_an_open_entry_survives_close_and_reopen(ledger_path, checkpoint):
    """ENTRY, (checkpoint), close, reopen, EXIT: the 6.01 km fare (300) is charged and the hold released."""
    with cardledger.open(ledger_path, create=True) as led:
        rig = harbin_rig(led)
        card = rig.card(100, 5000)
        rig.tap(card, T(8), ENTRY, "metro_1", "m1_taipingqiao")
        if checkpoint:
            led.checkpoint()
        seq = rig.gate_seq
    with cardledger.open(ledger_path, create=True) as led:
        rig = Rig(led, harbin_system())
        rig.gate_seq, rig.admin_seq = seq, 100
        assert (rig.bal(card), rig.held(card)) == (4200, 800)
        charged(rig.tap(card, T(8, 30), EXIT, "metro_1", "m1_railway_bureau"), 300, balance=4700)
        assert (rig.held(card), rig.bal(METRO_OP), led.account(METRO_OP).credits_pending) == (0, 300, 0)
        assert led.verify().ok


def test_a_journey_and_the_installed_system_survive_reopen(ledger_path, tmp_path):
    """Synthetic system, bus at 10:00, reopen: the metro after it still gets the transfer (400),
    paid to the synthetic operators (the reopened ledger did not fall back to Harbin)."""
    with cardledger.open(ledger_path, create=True) as led:
        rig = synthetic_rig(led, tmp_path)
        card = rig.card(100, 5000)
        rig.tap(card, T(10), BOARD, "bus_a", "b1")
        rig.tap(card, T(10, 10), ENTRY, "metro_x", "ma")
        led.checkpoint()
        seq = rig.gate_seq
    with cardledger.open(ledger_path, create=True) as led:
        assert led.fare_system().digest == rig.fs.digest
        rig = Rig(led, led.fare_system())
        rig.gate_seq = seq
        charged(rig.tap(card, T(10, 30), EXIT, "metro_x", "mc"), 400, balance=4400, discounts=TRANSFER)
        assert (rig.bal(taps_feed.BUS_OPERATOR), rig.bal(taps_feed.METRO_OPERATOR)) == (200, 400)
        assert led.verify().ok


def test_taps_across_frequent_snapshots_and_reopens(ledger_path, tmp_path):
    """checkpoint_ops=3 (snapshots mid-run) and a reopen after every day: two cards ride the
    synthetic system for 4 days under a daily cap of 5.00. Per day, card A: bus 200, metro A→C
    after it 400 (transfer; the day's spend reaches 600 > 500, so the cap cuts it to 300, CAP);
    card B: metro A→B 300, then an entry left open that the next day's first tap (SWEEP) settles
    as incomplete (400, not counted by the cap). Expected per day: A 500; B 300 + 400."""
    cap = '[[caps]]\nperiod = "day"\namount = "5.00"\n'
    with cardledger.open(ledger_path, checkpoint_ops=3, create=True) as led:
        rig = synthetic_rig(led, tmp_path, extra_toml=cap)
        a, b = rig.card(100, 10_000), rig.card(101, 10_000)
        seqs = (rig.admin_seq, rig.gate_seq)
    days = [DAY + dt.timedelta(days=k) for k in range(4)]
    for k, day in enumerate(days):
        with cardledger.open(ledger_path, checkpoint_ops=3, create=True) as led:
            rig = Rig(led, led.fare_system())
            rig.admin_seq, rig.gate_seq = seqs
            if k:
                charged(rig.tap(b, T(7, day=day), SWEEP), 400)  # yesterday's 18:00 entry, > 2 h old
            charged(rig.tap(a, T(8, day=day), BOARD, "bus_a", "b1"), 200)
            charged(rig.tap(a, T(8, 10, day=day), ENTRY, "metro_x", "ma"), 0)
            charged(rig.tap(a, T(8, 30, day=day), EXIT, "metro_x", "mc"), 300, discounts=TRANSFER | CAP)
            charged(rig.tap(b, T(9, day=day), ENTRY, "metro_x", "ma"), 0)
            charged(rig.tap(b, T(9, 20, day=day), EXIT, "metro_x", "mb"), 300)
            charged(rig.tap(b, T(18, day=day), ENTRY, "metro_x", "mc"), 0)
            seqs = (rig.admin_seq, rig.gate_seq)
    with cardledger.open(ledger_path, checkpoint_ops=3, create=True) as led:
        # A: 4 × 500. B: 4 × 300 + 3 × 400 settled + the last entry's 500 hold.
        assert led.balance(a) == 10_000 - 4 * 500
        assert led.balance(b) == 10_000 - 4 * 300 - 3 * 400 - 500
        assert led.account(b).debits_pending == 500
        assert led.balance(taps_feed.BUS_OPERATOR) == 4 * 200
        assert led.balance(taps_feed.METRO_OPERATOR) == 4 * 300 + 4 * 300 + 3 * 400
        assert led.verify().ok


# =========================================================================== review findings


def test_a_config_passed_as_an_object_cannot_be_installed_silently(tmp_path):
    """install_fares stores a system's source files; a FareConfig passed as an object is not
    among them, so installing such a system is refused instead of storing another config."""
    import dataclasses

    from cardledger.fares import FareSystem

    harbin = FareSystem.harbin()
    cfg = dataclasses.replace(harbin.config, operators={**harbin.config.operators, "harbin_bus": 7777})
    root = tmp_path / "feed"
    root.mkdir()
    for name, raw in harbin.files.items():
        (root / name).write_bytes(raw)
    fs = FareSystem.from_gtfs(root, config=cfg)
    led = cardledger.open(tmp_path / "led", create=True)
    with pytest.raises(ValueError, match="config"):
        led.install_fares(fs, 0)
    led.close()


def test_a_writer_sees_fare_versions_another_ledger_installed(tmp_path):
    """fare_system() of a writing ledger picks up a version installed through another handle."""
    from cardledger.fares import FareSystem

    a = cardledger.open(tmp_path / "led", create=True)
    b = cardledger.open(tmp_path / "led", create=True)
    b.install_fares(FareSystem.harbin(), 100)
    assert a.fare_system(200).currency == "CNY"
    a.close()
    b.close()


def test_a_card_mid_ride_is_not_on_the_denylist(hb):
    """500 fen, metro ENTRY holds all of it: available 0, but the card is mid-ride and must
    be let out at the exit gate; after the exit (200) it still has 300."""
    card = hb.card(100, 500)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    assert card not in hb.led.denylist().tolist()
    charged(hb.tap(card, T(8, 20), EXIT, "metro_1", "m1_museum"), 200, balance=300)
    assert card not in hb.led.denylist().tolist()


def test_indexes_follow_each_ledgers_own_chain_of_versions(tmp_path):
    """Two ledgers in one process install the same second version after different first
    versions: each keeps the route indexes its own chain gives, and reopens cleanly."""
    from cardledger.fares import FareSystem

    harbin = FareSystem.harbin()
    short = tmp_path / "short"
    short.mkdir()
    for name, raw in harbin.files.items():
        if name == "routes.txt":  # Harbin without bus_1: the others shift by one
            raw = b"\n".join(line for line in raw.split(b"\n") if not line.startswith(b"bus_1,"))
        if name == "route_networks.txt":
            raw = b"\n".join(line for line in raw.split(b"\n") if not line.endswith(b",bus_1"))
        (short / name).write_bytes(raw)
    w = FareSystem.from_gtfs(short)
    a = cardledger.open(tmp_path / "a", create=True)
    b = cardledger.open(tmp_path / "b", create=True)
    for led, first in ((b, harbin), (a, w)):  # b first: its chain is compiled (and cached) first
        for start, system in ((10, first), (20, harbin), (30, harbin)):
            led.install_fares(system, start)
    assert a.fare_system(10).route_index("bus_2") == a.fare_system(40).route_index("bus_2")
    assert a.fare_system(40).route_index("bus_1") == len(w.tables.route_ids)
    assert b.fare_system(40).route_index("bus_1") == harbin.route_index("bus_1")
    a.close()
    b.close()
    again = cardledger.open(tmp_path / "a", create=True)
    assert again.fare_system(40).route_index("bus_1") == len(w.tables.route_ids)
    assert again.verify().ok
    again.close()


def test_a_top_up_during_a_metro_ride_cannot_push_the_cash_purse_over_its_cap(tmp_path):
    """Cap 1000, balance 1000: ENTRY holds 800 (available 200); a TOPUP of 800 would leave
    1500 in the purse once the exit releases most of the hold, so it is EXCEEDS_CAP; the
    ride then costs 200 and verify() finds the purse within its cap."""
    led = cardledger.open(tmp_path / "led", create=True)
    fs = FareSystem.harbin()
    ops = new_ops(5)
    ops["source"], ops["seq"] = 1, np.arange(1, 6)
    ops["kind"] = [OpKind.OPEN, OpKind.OPEN, OpKind.OPEN, OpKind.TOPUP, OpKind.TAP]
    ops["account_id"] = [1, METRO_OP, 100, 100, 100]
    ops["account_kind"][:3] = [AccountKind.CLEARING, AccountKind.OPERATOR, AccountKind.CARD]
    ops["limit_fen"][2] = 1000
    ops["counterparty_id"][3], ops["amount_fen"][3] = 1, 1000
    ops["time_us"][:4] = T(7)
    ops["time_us"][4], ops["tap"][4] = T(8), TapType.ENTRY
    ops["route"][4], ops["stop"][4] = fs.route_index("metro_1"), fs.stop_index("m1_harbin_east_station")
    assert led.apply(ops)["code"].tolist() == [0] * 5
    top = new_ops(1)
    top["source"], top["seq"], top["kind"] = 2, 1, OpKind.TOPUP
    top["account_id"], top["counterparty_id"], top["amount_fen"] = 100, 1, 800
    top["time_us"] = T(8, 10)
    assert led.apply(top)["code"][0] == Result.EXCEEDS_CAP
    out = new_ops(1)
    out["source"], out["seq"], out["kind"], out["account_id"] = 3, 1, OpKind.TAP, 100
    out["time_us"], out["tap"] = T(8, 20), TapType.EXIT
    out["route"], out["stop"] = fs.route_index("metro_1"), fs.stop_index("m1_museum")
    r = led.apply(out)
    assert (int(r["code"][0]), int(r["amount_fen"][0]), led.balance(100)) == (0, 200, 800)
    assert led.verify().ok
    led.close()


# =========================================================================== REPLACE and fare state


def test_a_replacement_card_carries_on_the_lost_cards_daily_cap(led, tmp_path):
    """Cap 500 a day. The old card pays 200 + 200, is lost and replaced; the new card's first bus
    pays 100 (CAP) and its second 0 (CAP): losing a card costs no cap progress."""
    rig = synthetic_rig(led, tmp_path, extra_toml=DAY_CAP)
    old = rig.card(100, 5000)
    charged(rig.tap(old, T(8), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(old, T(9), BOARD, "bus_a", "b1"), 200)
    rig.freeze(old)
    rig.admin(dict(kind=OpKind.REPLACE, account_id=old, counterparty_id=200))
    charged(rig.tap(200, T(10), BOARD, "bus_a", "b1"), 100, discounts=CAP)
    charged(rig.tap(200, T(11), BOARD, "bus_a", "b1"), 0, balance=4500, discounts=CAP)
    refused(rig.tap(old, T(12), BOARD, "bus_a", "b1"), Result.ACCOUNT_CLOSED)
    assert led.verify().ok


def test_a_replacement_drops_the_open_entry_whose_hold_replace_voided(hb):
    """Entry on the old card holds the max fare; REPLACE voids the hold and moves the money; the
    exit tapped with the new card is an exit without entry (the incomplete charge, 800)."""
    old = hb.card(100, 5000)
    hb.tap(old, T(8), ENTRY, "metro_1", "m1_museum")
    assert hb.held(old) > 0
    hb.admin(dict(kind=OpKind.REPLACE, account_id=old, counterparty_id=200))
    assert hb.held(200) == 0 and hb.bal(200) == 5000
    charged(hb.tap(200, T(8, 20), EXIT, "metro_1", "m1_museum"), 800, balance=4200)
    assert hb.led.verify().ok


def test_a_failed_chain_with_a_replace_leaves_the_fare_state_with_the_old_card(led, tmp_path):
    """A linked REPLACE whose chain fails moves nothing: the old card keeps its cap progress."""
    rig = synthetic_rig(led, tmp_path, extra_toml=DAY_CAP)
    old = rig.card(100, 5000)
    charged(rig.tap(old, T(8), BOARD, "bus_a", "b1"), 200)
    charged(rig.tap(old, T(9), BOARD, "bus_a", "b1"), 200)
    ops = new_ops(2)
    for i, row in enumerate([
        dict(kind=OpKind.REPLACE, account_id=old, counterparty_id=200, flags=OpFlags.LINKED),
        dict(kind=OpKind.SPEND, account_id=200, counterparty_id=CLEARING, amount_fen=10**9),  # fails
    ]):
        rig.admin_seq += 1
        ops[i]["source"], ops[i]["seq"], ops[i]["time_us"] = ADMIN, rig.admin_seq, rig.admin_seq
        for k, v in row.items():
            ops[i][k] = int(v)
    r = led.apply(ops)
    assert [Result(int(c)).name for c in r["code"]] == ["LINKED_FAILED", "INSUFFICIENT_FUNDS"]
    charged(rig.tap(old, T(10), BOARD, "bus_a", "b1"), 100, discounts=CAP)  # still the old card's cap
    refused(rig.tap(200, T(11), BOARD, "bus_a", "b1"), Result.ACCOUNT_NOT_FOUND)
    assert led.verify().ok


# =========================================================================== reversing a tap

OFFICE = 3  # op source: the operator's complaints desk


def reverse(rig: Rig, card: int, tap_id: tuple[int, int], seq: int, time_us: int | None = None) -> np.void:
    """Apply one REVERSE of the tap `tap_id` on `card` (id (OFFICE, seq)), at `time_us`
    (default: the test day's 23:00, when the office corrects the day's charges); its result."""
    ops = new_ops(1)
    ops["source"], ops["seq"], ops["kind"], ops["account_id"] = OFFICE, seq, OpKind.REVERSE, card
    ops["ref_source"], ops["ref_seq"] = tap_id[0], tap_id[1]
    ops["time_us"] = T(23) if time_us is None else time_us
    return rig.led.apply(ops)[0]


def returned(r, amount: int, balance: int | None = None) -> None:
    """Assert a REVERSE succeeded and returned `amount` (leaving `balance`)."""
    assert (Result(int(r["code"])).name, int(r["amount_fen"])) == ("OK", amount)
    if balance is not None:
        assert int(r["balance_fen"]) == balance


def test_reverse_returns_a_bus_fare_from_the_operator(hb):
    """A double tap on the bus: REVERSE of the second returns its 100 from the bus operator
    to the card; the record names the operator as debit, the card as credit."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), BOARD, "bus_1", "bs_0001")
    hb.tap(card, T(8) + US, BOARD, "bus_1", "bs_0001")
    returned(reverse(hb, card, (GATE, hb.gate_seq), 1, T(10)), 100, balance=4900)
    assert hb.bal(BUS_OP) == 100
    rec = hb.led.journal()[-1]
    assert (int(rec["kind"]), int(rec["debit_id"]), int(rec["credit_id"])) == (OpKind.REVERSE, BUS_OP, card)
    assert hb.led.verify().ok


def test_a_tap_is_reversed_once_and_a_reverse_is_exactly_once(hb):
    """The same REVERSE resent is EXISTS (nothing moves again); another REVERSE of the same
    tap is TAP_ALREADY_REVERSED."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), BOARD, "bus_1", "bs_0001")
    tap_id = (GATE, hb.gate_seq)
    returned(reverse(hb, card, tap_id, 1), 100, balance=5000)
    again = reverse(hb, card, tap_id, 1)
    assert Result(int(again["code"])) == Result.EXISTS and int(again["amount_fen"]) == 100
    refused(reverse(hb, card, tap_id, 2), Result.TAP_ALREADY_REVERSED)
    assert hb.bal(card) == 5000 and hb.bal(BUS_OP) == 0


def test_reverse_of_an_unknown_or_failed_or_other_cards_tap_is_refused(hb):
    """No such id: TAP_NOT_FOUND. A failed tap, a non-TAP op, or another card's tap:
    TAP_NOT_REVERSIBLE. A REVERSE with no tap id: INVALID_REVERSE; with a field it does
    not use, that field's code (strict input); with an amount: INVALID_AMOUNT."""
    card, other = hb.card(100, 5000), hb.card(101, 50)
    refused(reverse(hb, card, (GATE, 999), 1), Result.TAP_NOT_FOUND)
    hb.tap(other, T(8), BOARD, "bus_1", "bs_0001")  # 100 > 50: refused
    refused(reverse(hb, other, (GATE, hb.gate_seq), 2), Result.TAP_NOT_REVERSIBLE)
    refused(reverse(hb, card, (ADMIN, 1), 3), Result.TAP_NOT_REVERSIBLE)  # an OPEN
    hb.tap(card, T(8), BOARD, "bus_1", "bs_0001")
    refused(reverse(hb, other, (GATE, hb.gate_seq), 4), Result.TAP_NOT_REVERSIBLE)
    refused(reverse(hb, card, (0, 0), 5), Result.INVALID_REVERSE)
    ops = new_ops(1)
    ops["source"], ops["seq"], ops["kind"], ops["account_id"] = OFFICE, 6, OpKind.REVERSE, card
    ops["ref_source"], ops["ref_seq"], ops["route"], ops["time_us"] = GATE, hb.gate_seq, 1, T(23)
    refused(hb.led.apply(ops)[0], Result.ROUTE_MUST_BE_ZERO)
    ops["seq"], ops["route"], ops["amount_fen"] = 7, 0, 100
    refused(hb.led.apply(ops)[0], Result.INVALID_AMOUNT)


def test_a_tap_in_the_same_batch_is_not_found(hb):
    """A REVERSE finds taps decided before its batch: one of the same batch is TAP_NOT_FOUND."""
    card = hb.card(100, 5000)
    ops = np.concatenate([hb.op(card, T(8), BOARD, "bus_1", "bs_0001"), new_ops(1)])
    ops[1]["source"], ops[1]["seq"], ops[1]["kind"], ops[1]["account_id"] = OFFICE, 1, OpKind.REVERSE, card
    ops[1]["ref_source"], ops[1]["ref_seq"], ops[1]["time_us"] = GATE, hb.gate_seq, T(23)
    r = hb.led.apply(ops)
    assert [Result(int(c)).name for c in r["code"]] == ["OK", "TAP_NOT_FOUND"]


def test_reverse_of_a_metro_exit_returns_the_fare_and_keeps_the_entry_hold_rules(hb):
    """A faulty exit validator: REVERSE of the EXIT returns its 200 from the metro; the
    ENTRY itself charged nothing (its hold was posted by the exit) and reversing it
    returns 0. An ENTRY whose hold is still open is TAP_NOT_REVERSIBLE."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    entry_id = (GATE, hb.gate_seq)
    refused(reverse(hb, card, entry_id, 1), Result.TAP_NOT_REVERSIBLE)
    hb.tap(card, T(8, 30), EXIT, "metro_1", "m1_museum")
    returned(reverse(hb, card, (GATE, hb.gate_seq), 2), 200, balance=5000)
    returned(reverse(hb, card, entry_id, 3), 0, balance=5000)
    assert hb.bal(METRO_OP) == 0 and hb.held(card) == 0
    assert hb.led.verify().ok


def test_an_exits_walk_back_to_its_entry_is_read_once_however_often_it_is_named(hb, monkeypatch):
    """Reversing an EXIT reads the card's records back to the entry it closed, before
    the batch, whatever the REVERSE's fate. Once the EXIT is committed that walk is
    remembered: REVERSEs naming it again under new ids (each refused,
    TAP_ALREADY_REVERSED) read no record."""
    from cardledger import queries

    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    for _ in range(40):  # records between the entry and the exit: the walk's length
        hb.topup(card, 1)
    hb.tap(card, T(8, 30), EXIT, "metro_1", "m1_museum")
    exit_id = (GATE, hb.gate_seq)
    reads = []
    walk = queries.reverse_ref
    monkeypatch.setattr(queries, "reverse_ref", lambda rec, fetch: walk(rec, lambda j: reads.append(j) or fetch(j)))
    returned(reverse(hb, card, exit_id, 1), 200, balance=5000 + 40)
    assert len(reads) == 41  # the 40 top-ups and the entry
    for seq in range(2, 7):
        refused(reverse(hb, card, exit_id, seq), Result.TAP_ALREADY_REVERSED)
    assert len(reads) == 41 and hb.led.verify().ok


def test_reverse_returns_the_subsidy_part_to_the_subsidy_purse(hb):
    """A fare drawn from the subsidy purse goes back to it: the card's purses are as before."""
    card = hb.card(100, 1000)
    hb.open(5000, AccountKind.PROGRAM)
    hb.admin(dict(kind=OpKind.TRANSFER, account_id=CLEARING, counterparty_id=5000, amount_fen=500))
    hb.admin(dict(kind=OpKind.AID, account_id=card, counterparty_id=5000, amount_fen=50))
    before = hb.led.account(card)
    hb.tap(card, T(8), BOARD, "bus_1", "bs_0001")  # 100: 50 from the subsidy purse, 50 cash
    returned(reverse(hb, card, (GATE, hb.gate_seq), 1), 100)
    after = hb.led.account(card)
    assert (after.cash_fen, after.subsidy_fen) == (before.cash_fen, before.subsidy_fen)


def test_reverse_takes_the_tap_back_from_the_daily_cap(led, tmp_path):
    """Cap 500 a day: 200, 200, then a double tap charged 100 (CAP). Reversing the 200 at
    09:00 takes it back from the counter (300 spent): the next bus pays 200 again, and the
    one after 0 (CAP, 500 spent). Taps after the reversed one are not re-rated."""
    rig = synthetic_rig(led, tmp_path, extra_toml=DAY_CAP)
    card = rig.card(100, 5000)
    bus = lambda when: rig.tap(card, when, BOARD, "bus_a", "b1")  # noqa: E731
    charged(bus(T(8)), 200)
    charged(bus(T(9)), 200)
    nine = (GATE, rig.gate_seq)
    charged(bus(T(10)), 100, discounts=CAP)
    returned(reverse(rig, card, nine, 1), 200, balance=5000 - 300)
    charged(bus(T(11)), 200)
    charged(bus(T(12)), 0, discounts=CAP)
    assert led.verify().ok


def test_reverse_takes_a_metro_exit_back_from_the_cap_of_its_entry_day(led, tmp_path):
    """An exit counts in the cap of its entry's service day: a ride entered 23:50 and left
    00:20 the next day counted 500 on the first day, so a late bus tap of 20:00 that day
    pays 0 (CAP); once the exit is reversed, the first day's counter is back to 0 and a
    late bus tap of 21:00 pays its 200 (late taps are priced alone)."""
    rig = synthetic_rig(led, tmp_path, extra_toml=DAY_CAP)
    card = rig.card(100, 5000)
    rig.tap(card, T(23, 50), ENTRY, "metro_x", "ma")
    charged(rig.tap(card, T(24, 20), EXIT, "metro_x", "mc"), 500)
    exit_id = (GATE, rig.gate_seq)
    charged(rig.tap(card, T(20), BOARD, "bus_a", "b1"), 0, discounts=CAP)
    returned(reverse(rig, card, exit_id, 1), 500, balance=5000)
    charged(rig.tap(card, T(21), BOARD, "bus_a", "b1"), 200, balance=4800)
    assert led.verify().ok


def test_reverse_after_the_period_ended_takes_nothing_from_the_new_period(led, tmp_path):
    """A tap of yesterday reversed today returns its fare; today's cap counter is not touched."""
    rig = synthetic_rig(led, tmp_path, extra_toml=DAY_CAP)
    card = rig.card(100, 5000)
    charged(rig.tap(card, T(8), BOARD, "bus_a", "b1"), 200)
    yesterday = (GATE, rig.gate_seq)
    nxt = DAY + dt.timedelta(days=1)
    for h in (8, 9):
        charged(rig.tap(card, T(h, day=nxt), BOARD, "bus_a", "b1"), 200)
    returned(reverse(rig, card, yesterday, 1), 200)
    charged(rig.tap(card, T(10, day=nxt), BOARD, "bus_a", "b1"), 100, discounts=CAP)  # 400 spent today


def test_reverse_takes_the_tap_back_from_the_monthly_tier_counter(led, tmp_path):
    """Tier 50% off from 4.00 spent: 200, 200, then 100 (TIER). Reversing a 200 brings the
    month's spend to 300: the next bus pays 200 (no tier), then 100 (TIER) again."""
    tier = '[[tiers]]\nnetwork_ids = ["bus"]\nfrom_amount = "4.00"\npercent_off = 50\n'
    rig = synthetic_rig(led, tmp_path, extra_toml=tier)
    card = rig.card(100, 5000)
    bus = lambda when: rig.tap(card, when, BOARD, "bus_a", "b1")  # noqa: E731
    charged(bus(T(8)), 200)
    first = (GATE, rig.gate_seq)
    charged(bus(T(9)), 200)
    charged(bus(T(10)), 100, discounts=TIER)
    returned(reverse(rig, card, first, 1), 200)
    charged(bus(T(11)), 200)
    charged(bus(T(12)), 100, discounts=TIER)


def test_reverse_of_a_settlement_returns_the_incomplete_charge(hb):
    """The settlement a BOARD wrote for an overdue entry is a tap like any other: its id
    (SETTLE_SOURCE, 1) reversed returns the 800 from the metro operator."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
    hb.tap(card, T(16), BOARD, "bus_1", "bs_0001")
    returned(reverse(hb, card, (SETTLE_SOURCE, 1), 1), 800, balance=4900)
    assert hb.bal(METRO_OP) == 0


def test_reverse_replays_to_its_figures_after_reopen_and_a_checkpoint(ledger_path):
    """A REVERSE replays from its own record (no lookup): reopen and verify agree, also
    when a checkpoint came in between, and its mark keeps the tap reversed after reopen."""
    with cardledger.open(ledger_path, checkpoint_ops=8, create=True) as led:
        rig = harbin_rig(led)
        card = rig.card(100, 5000)
        rig.tap(card, T(8), BOARD, "bus_1", "bs_0001")
        tap_id = (GATE, rig.gate_seq)
        for h in range(9, 14):
            rig.tap(card, T(h), BOARD, "bus_1", "bs_0001")
        returned(reverse(rig, card, tap_id, 1), 100)
        assert led.verify().ok
    with cardledger.open(ledger_path, create=True) as led:
        rig = Rig(led, harbin_system())
        assert led.balance(card) == 5000 - 500
        refused(reverse(rig, card, tap_id, 2), Result.TAP_ALREADY_REVERSED)
        assert led.verify().ok


def test_a_reversed_taps_mark_is_no_hold(hb):
    """POST or VOID naming a reversed tap's id find no hold: PENDING_NOT_FOUND."""
    card = hb.card(100, 5000)
    hb.tap(card, T(8), BOARD, "bus_1", "bs_0001")
    tap_id = (GATE, hb.gate_seq)
    returned(reverse(hb, card, tap_id, 1), 100)
    for kind in (OpKind.POST, OpKind.VOID):
        ops = new_ops(1)
        hb.admin_seq += 1
        ops["source"], ops["seq"], ops["kind"], ops["time_us"] = ADMIN, hb.admin_seq, kind, T(23)
        ops["ref_source"], ops["ref_seq"] = tap_id
        refused(hb.led.apply(ops)[0], Result.PENDING_NOT_FOUND)


def test_a_batch_of_taps_that_all_settle_overdue_entries_journals_two_records_each(ledger_path):
    """A batch whose every tap settles an overdue entry decides twice as many records as
    it has ops (the engine makes room as it goes): all are journaled, numbered in order,
    and the ledger reopens and verifies."""
    n = 300
    with cardledger.open(ledger_path, create=True) as led:
        rig = harbin_rig(led)
        cards = [100 + i for i in range(n)]
        for i in range(0, n, 10):  # small batches, so no earlier batch made much room
            rig.admin(*(r for c in cards[i:i + 10] for r in (
                dict(kind=OpKind.OPEN, account_id=c, account_kind=AccountKind.CARD),
                dict(kind=OpKind.TOPUP, account_id=c, counterparty_id=CLEARING, amount_fen=5000))))
            led.apply(np.concatenate([rig.op(c, T(8), ENTRY, "metro_1", "m1_harbin_east_station")
                                      for c in cards[i:i + 10]]))
        boards = np.concatenate([rig.op(c, T(16), BOARD, "bus_1", "bs_0001") for c in cards])
        r = led.apply(boards)
        assert (r["code"] == Result.OK).all() and (r["amount_fen"] == 100).all()
        j = led.journal(int(r["journal_seq"][0]) - 1)
        assert len(j) == 2 * n and (np.diff(j["journal_seq"].astype(np.int64)) == 1).all()
        assert j[j["source"] == SETTLE_SOURCE]["seq"].tolist() == list(range(1, n + 1))
        assert led.balance(METRO_OP) == 800 * n and led.balance(BUS_OP) == 100 * n
        assert led.verify().ok
    with cardledger.open(ledger_path, create=True) as led:
        assert led.balance(METRO_OP) == 800 * n and led.verify().ok


def _exit_rec(jseq: int, card: int = 100, source: int = GATE) -> np.void:
    """A successful metro EXIT's journal record whose card's previous record is jseq 1."""
    from cardledger.schema import JOURNAL_DTYPE

    rec = np.zeros(1, dtype=JOURNAL_DTYPE)[0]
    rec["kind"], rec["tap"], rec["account_id"], rec["debit_id"] = OpKind.TAP, EXIT, card, card
    rec["source"], rec["seq"], rec["journal_seq"], rec["debit_prev_seq"] = source, jseq, jseq, 1
    return rec


class _Store:
    """Stored records for ReverseRefs: the entry at 1, and EXITs; counts the reads."""

    def __init__(self, head: int) -> None:
        from cardledger.schema import JOURNAL_DTYPE

        entry = np.zeros(1, dtype=JOURNAL_DTYPE)[0]
        entry["kind"], entry["tap"], entry["account_id"], entry["debit_id"] = OpKind.TAP, ENTRY, 100, 100
        entry["journal_seq"], entry["time_us"] = 1, 7
        self.records = {1: entry}
        self.head, self.reads, self.heads_asked = head, [], 0

    def __call__(self, jseq: int) -> np.void:
        self.reads.append(jseq)
        return self.records[jseq]

    def head_now(self) -> int:
        self.heads_asked += 1
        return self.head


def test_reverse_refs_keep_stored_exits_only_and_at_most_their_bound(monkeypatch):
    """ReverseRefs keeps the row of an EXIT that is the stored record at its journal_seq
    (walked once), walks every time one past the stored head (a batch in flight may
    still fail), asks the head only when about to keep a row, and keeps at most
    REVERSE_REFS_KEPT_MAX, forgetting the oldest first."""
    from cardledger import queries

    monkeypatch.setattr(queries, "REVERSE_REFS_KEPT_MAX", 3)
    store, refs = _Store(head=10), queries.ReverseRefs()
    no_staged = lambda j: None  # noqa: E731
    for jseq in (5, 6, 7, 8):
        store.records[jseq] = _exit_rec(jseq)
    assert refs.ref(_exit_rec(11), no_staged, store, store.head_now)[10] == 1  # entry_found
    refs.ref(_exit_rec(11), no_staged, store, store.head_now)
    assert store.reads == [1, 1]  # past the head: walked each time, nothing stored read
    for jseq in (5, 6, 7, 5):
        refs.ref(_exit_rec(jseq), no_staged, store, store.head_now)
    assert store.reads.count(1) == 5 and store.heads_asked == 5  # 5, 6 and 7 walked once each
    refs.ref(_exit_rec(8), no_staged, store, store.head_now)  # a fourth: 5 is forgotten
    refs.ref(_exit_rec(5), no_staged, store, store.head_now)
    assert store.reads.count(1) == 7
    other = queries.ReverseRefs()
    other.ref(store.records[1], no_staged, store, store.head_now)  # an ENTRY: no walk, not kept
    assert store.heads_asked == 7


def test_a_kept_reverse_ref_serves_only_the_very_record_it_was_walked_for():
    """Another record at a kept journal_seq (another writer's, after this process's
    batch there failed) is walked, not given the kept row; an EXIT that differs from
    the stored record at its journal_seq, or whose walk read a record of a batch in
    flight, is not kept."""
    from cardledger import queries
    from cardledger.schema import REF_OTHER, JOURNAL_DTYPE

    store, refs = _Store(head=10), queries.ReverseRefs()
    no_staged = lambda j: None  # noqa: E731
    store.records[5] = _exit_rec(5)
    refs.ref(_exit_rec(5), no_staged, store, store.head_now)
    spend = np.zeros(1, dtype=JOURNAL_DTYPE)[0]
    spend["kind"], spend["journal_seq"], spend["account_id"] = OpKind.SPEND, 5, 100
    assert refs.ref(spend, no_staged, store, store.head_now)[8] == REF_OTHER
    mine = _exit_rec(6, source=GATE + 1)  # decided here; the store holds another op at 6
    store.records[6] = _exit_rec(6)
    before = len(store.reads)
    refs.ref(mine, no_staged, store, store.head_now)
    refs.ref(mine, no_staged, store, store.head_now)
    assert store.reads[before:].count(1) == 2  # walked twice: never kept
    store.records[7] = _exit_rec(7)
    in_flight = []  # the entry, read from a batch in flight

    def staged(j):
        if j == 1:
            in_flight.append(j)
            return store.records[1]
        return None

    for _ in range(2):
        refs.ref(_exit_rec(7), staged, store, store.head_now)
    assert in_flight == [1, 1]  # walked twice: never kept


def test_reverses_of_an_exit_still_in_flight_are_decided_as_when_applied(hb):
    """Pipelined: the ENTRY, the card's other records and the EXIT are submitted and not
    waited for, then one batch of three REVERSEs naming that EXIT (the tap they name may
    still be in flight: its walk reads the batches not yet stored). The first returns
    the 200, the others are TAP_ALREADY_REVERSED; nothing is kept of an EXIT in flight,
    and the journal verifies."""
    card = hb.card(100, 5000)
    led = hb.led
    futures = [led.submit(hb.op(card, T(8), ENTRY, "metro_1", "m1_harbin_east_station"))]
    for k in range(1, 4):
        ops = new_ops(1)
        ops["source"], ops["seq"], ops["kind"], ops["account_id"] = ADMIN, 1000 + k, OpKind.TOPUP, card
        ops["counterparty_id"], ops["amount_fen"], ops["time_us"] = CLEARING, 1, T(8, 10)
        futures.append(led.submit(ops))
    futures.append(led.submit(hb.op(card, T(8, 30), EXIT, "metro_1", "m1_museum")))
    rev = new_ops(3)
    rev["source"], rev["seq"], rev["kind"], rev["account_id"] = OFFICE, [1, 2, 3], OpKind.REVERSE, card
    rev["ref_source"], rev["ref_seq"], rev["time_us"] = GATE, hb.gate_seq, T(23)
    r = led.submit(rev).result()
    assert all(int(f.result()["code"][0]) == Result.OK for f in futures)
    assert [Result(int(c)).name for c in r["code"]] == ["OK", "TAP_ALREADY_REVERSED", "TAP_ALREADY_REVERSED"]
    assert int(r["amount_fen"][0]) == 200 and hb.bal(card) == 5000 + 3
    assert led.verify().ok
