"""The packaged Harbin fare system, priced through the public quote API.

Expected values are written out here, independently of the generator, except in the
all-pairs test (which checks the feed against the generator's own distances and
scale) and the regeneration test (which checks the packaged files are its output).
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import importlib.util
import pathlib
import sys

import pytest

from cardledger.fares import FareSystem, Leg

ROOT = pathlib.Path(__file__).resolve().parents[2]
CST = dt.timezone(dt.timedelta(hours=8), "CST")  # Asia/Shanghai has had no DST since 1991
WEDNESDAY = dt.date(2025, 3, 12)
SUNDAY = dt.date(2025, 3, 16)


def _generator():
    path = ROOT / "tools" / "make_harbin_feed.py"
    spec = importlib.util.spec_from_file_location("make_harbin_feed", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def fs() -> FareSystem:
    return FareSystem.harbin()


def at(h: int, m: int = 0, s: int = 0, day: dt.date = WEDNESDAY) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, h, m, s, tzinfo=CST)


def fare(fs, route, a, b, entry=None, rider=None, ride=dt.timedelta(minutes=25)) -> int:
    entry = entry or at(8, 0)  # 08:00 is peak: the default-time fare
    q = fs.quote([Leg(route, a, b, entry, entry + ride)], rider_category_id=rider)
    assert q.currency == "CNY"
    return q.amount


def metro(fs, a, b, entry=None, rider=None, ride=dt.timedelta(minutes=25)) -> int:
    """A metro trip between two platform ids; the leg's route is the entry platform's line."""
    return fare(fs, f"metro_{a[1]}", a, b, entry, rider, ride)


# --- bus, ferry, coach ------------------------------------------------------------


def test_bus_ordinary_is_one_yuan(fs):
    assert fare(fs, "bus_1", "bs_0001", "bs_0007") == 100
    assert fare(fs, "bus_3", "bs_0010", "bs_0011") == 100


def test_bus_air_conditioned_is_two_yuan(fs):
    assert fare(fs, "bus_14", "bs_0052", "bs_0060") == 200
    assert fare(fs, "bus_120", "bs_0100", "bs_0120") == 200


def test_every_bus_route_is_one_or_two_yuan_by_network(fs):
    gen = _generator()
    for num in gen.BUS_ROUTE_NUMBERS:
        expected = 200 if gen.bus_route_is_ac(num) else 100
        assert fare(fs, f"bus_{num}", "bs_0001", "bs_0002") == expected, num


def test_bus_has_no_concessions(fs):
    for rider in ("student", "senior_60", "senior_65"):
        assert fare(fs, "bus_1", "bs_0001", "bs_0002", at(10), rider) == 100


def test_ferry_is_two_yuan(fs):
    assert fare(fs, "ferry_songhua", "ferry_flood_monument_pier", "ferry_sun_island_pier") == 200
    assert fare(fs, "ferry_songhua", "ferry_sun_island_pier", "ferry_flood_monument_pier", at(10), "senior_65") == 200


def test_taxi_quote_is_zero_the_tap_carries_the_metered_amount(fs):
    assert fare(fs, "taxi", "taxi_anywhere", "taxi_anywhere", at(10)) == 0
    assert fs.config.metered_network_ids == ("taxi",)


@pytest.mark.parametrize(
    ("a", "b", "fen"),
    [
        ("harbin", "acheng", 1000),
        ("harbin", "shuangcheng", 1500),
        ("harbin", "bin_county", 2200),
        ("harbin", "wuchang", 4200),
        ("acheng", "wuchang", 3300),
        ("shuangcheng", "bin_county", 3600),
        ("bin_county", "wuchang", 4500),
    ],
)
def test_coach_origin_destination_table(fs, a, b, fen):
    ride = dt.timedelta(hours=2)
    assert fare(fs, "coach_harbin_wuchang", f"coach_{a}", f"coach_{b}", ride=ride) == fen
    assert fare(fs, "coach_harbin_wuchang", f"coach_{b}", f"coach_{a}", ride=ride) == fen


# --- metro distance scale ---------------------------------------------------------

#: (from platform, to platform, network distance km, fen); distances are illustrative
#: values chosen so that each step boundary and the 10 m past it exist.
BOUNDARIES = [
    ("m1_harbin_east_station", "m1_museum", "6.00", 200),
    ("m1_taipingqiao", "m1_railway_bureau", "6.01", 300),
    ("m1_harbin_east_station", "m1_heilongjiang_university", "10.00", 300),
    ("m1_taipingqiao", "m1_xuefu_road", "10.01", 400),
    ("m1_harbin_east_station", "m1_yida_second_hospital", "14.00", 400),
    ("m1_taipingqiao", "m1_harbin_south_station", "14.01", 500),
    ("m1_harbin_east_station", "m1_wapenyao", "21.00", 500),
    ("m1_taipingqiao", "m1_xiangjiang_road", "21.01", 600),
    ("m1_harbin_east_station", "m1_diantan_road", "28.00", 600),
    ("m1_taipingqiao", "m1_xinjiang_street", "28.01", 700),
    ("m2_jiangbei_university_town", "m1_xinjiang_street", "38.00", 700),
    ("m2_qixiangtai", "m1_xinjiang_street", "38.01", 800),
]


@pytest.mark.parametrize(("a", "b", "km", "fen"), BOUNDARIES, ids=[f"{r[2]}km" for r in BOUNDARIES])
def test_metro_scale_boundaries(fs, a, b, km, fen):
    assert metro(fs, a, b) == fen
    assert metro(fs, b, a) == fen


def test_boundary_pairs_are_the_generators(fs):
    gen = _generator()
    dist = gen.metro_distances()
    for a, b, km, _ in BOUNDARIES:
        assert dist[(a.split("_", 1)[1], b.split("_", 1)[1])] == round(float(km) * 1000)


def test_metro_transfer_station_platforms_share_a_fare(fs):
    # 太平桥 has a line 1 and a line 3 platform; the area is the station's
    assert metro(fs, "m3_taipingqiao", "m1_railway_bureau") == 300
    assert metro(fs, "m1_taipingqiao", "m3_taipingqiao") == 200


def test_metro_priced_by_station_ids(fs):
    assert fare(fs, "metro_1", "ms_harbin_east_station", "ms_museum") == 200
    assert fare(fs, "metro_1", "ms_taipingqiao", "ms_railway_bureau") == 300


def test_metro_same_station_is_minimum_fare(fs):
    assert metro(fs, "m1_xinjiang_street", "m1_xinjiang_street") == 200
    assert metro(fs, "m2_museum", "m1_museum", ride=dt.timedelta(hours=2)) == 200
    assert metro(fs, "m1_museum", "m1_museum", at(10), "senior_65") == 0


def test_every_station_pair_follows_the_scale(fs):
    gen = _generator()
    dist = gen.metro_distances()
    platform = {}
    for line in sorted(gen.METRO_LINES):
        for slug, _, _ in gen.METRO_LINES[line]:
            platform.setdefault(slug, f"m{line}_{slug}")
    assert len(platform) == len(gen.metro_stations())
    for (a, b), metres in dist.items():
        assert metro(fs, platform[a], platform[b]) == gen.metro_fare_fen(metres), (a, b, metres)


def test_scale_function():
    f = _generator().metro_fare_fen
    assert [f(m) for m in (0, 6000, 6001, 10000, 10001, 14000, 21000, 21001, 28000, 28001)] == [
        200, 200, 300, 300, 400, 400, 500, 600, 600, 700]
    assert [f(m) for m in (38000, 38001, 48000, 48001, 58000)] == [700, 800, 800, 900, 900]


# --- concessions ------------------------------------------------------------------


def test_rider_category_none_pays_adult(fs):
    for a, b, _, fen in BOUNDARIES:
        assert metro(fs, a, b, at(10), None) == metro(fs, a, b, at(10), "adult") == fen


def test_student_half_fare_on_metro(fs):
    assert metro(fs, "m1_harbin_east_station", "m1_museum", rider="student") == 100
    assert metro(fs, "m1_taipingqiao", "m1_railway_bureau", rider="student") == 150
    assert metro(fs, "m2_qixiangtai", "m1_xinjiang_street", rider="student") == 400
    assert metro(fs, "m1_taipingqiao", "m1_railway_bureau", at(10), "student") == 150
    assert metro(fs, "m1_museum", "m1_museum", rider="student") == 100


def test_senior_65_free_off_peak_by_entry_time(fs):
    a, b = "m1_taipingqiao", "m1_railway_bureau"  # 3 yuan
    assert metro(fs, a, b, at(8, 59, 59), "senior_65") == 300
    assert metro(fs, a, b, at(9, 0, 0), "senior_65") == 0
    assert metro(fs, a, b, at(15, 59, 59), "senior_65") == 0
    assert metro(fs, a, b, at(16, 0, 0), "senior_65") == 300
    assert metro(fs, a, b, at(18, 59, 59), "senior_65") == 300
    assert metro(fs, a, b, at(19, 0, 0), "senior_65") == 0
    assert metro(fs, a, b, at(23, 59), "senior_65") == 0


def test_senior_60_half_off_peak_by_entry_time(fs):
    a, b = "m1_harbin_east_station", "m1_diantan_road"  # 6 yuan
    assert metro(fs, a, b, at(8, 59, 59), "senior_60") == 600
    assert metro(fs, a, b, at(9, 0, 0), "senior_60") == 300
    assert metro(fs, a, b, at(12, 30), "senior_60") == 300
    assert metro(fs, a, b, at(16, 0, 0), "senior_60") == 600
    assert metro(fs, a, b, at(19, 0, 0), "senior_60") == 300
    assert metro(fs, a, b, at(23, 59), "senior_60") == 300


def test_off_peak_is_judged_by_entry_not_exit(fs):
    a, b = "m1_harbin_east_station", "m1_diantan_road"
    # entered off-peak, left after 16:00: still off-peak
    assert metro(fs, a, b, at(15, 50), "senior_65", dt.timedelta(minutes=40)) == 0
    # entered at peak, left off-peak: peak
    assert metro(fs, a, b, at(8, 40), "senior_65", dt.timedelta(minutes=40)) == 600


def test_off_peak_every_day_and_in_local_time(fs):
    a, b = "m1_taipingqiao", "m1_railway_bureau"
    assert metro(fs, a, b, at(9, 0, day=SUNDAY), "senior_65") == 0
    assert metro(fs, a, b, at(8, 0, day=SUNDAY), "senior_65") == 300
    # 01:00 UTC is 09:00 in Harbin
    utc = dt.datetime(2025, 3, 12, 1, 0, tzinfo=dt.timezone.utc)
    assert metro(fs, a, b, utc, "senior_65") == 0
    assert metro(fs, a, b, utc - dt.timedelta(seconds=1), "senior_65") == 300


def test_adult_and_student_pay_the_same_off_peak(fs):
    a, b = "m2_jiangbei_university_town", "m1_xinjiang_street"
    assert metro(fs, a, b, at(8), "adult") == metro(fs, a, b, at(10), "adult") == 700
    assert metro(fs, a, b, at(8), "student") == metro(fs, a, b, at(10), "student") == 350


# --- the package data -------------------------------------------------------------


def test_packaged_feed_is_the_generators_output():
    gen = _generator()
    root = importlib.resources.files("cardledger.fares") / "harbin"
    built = gen.build()
    for name, data in built.items():
        assert (root / name).read_bytes() == data, f"{name} differs: re-run tools/make_harbin_feed.py"
    on_disk = {p.name for p in root.iterdir() if p.name.endswith((".txt", ".toml"))}
    assert on_disk == set(built)


def test_config_max_fare_is_the_longest_metro_fare():
    """Metro and coach are gated; each holds its longest fare; same-station exits are rated by the feed."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    gen = _generator()
    root = importlib.resources.files("cardledger.fares") / "harbin"
    cfg = tomllib.loads((root / "fares.toml").read_text("utf-8"))
    longest = gen.metro_fare_fen(max(gen.metro_distances().values()))
    metro, coach = cfg["entry_exit"]
    assert metro["network_id"] == "metro"
    assert metro["max_fare"] == metro["incomplete_charge"] == gen.yuan(longest) == "8.00"
    assert "same_station_charge" not in metro
    assert coach["network_id"] == "coach"
    assert coach["max_fare"] == gen.yuan(max(gen.COACH_FARES_YUAN.values()) * 100)
    assert cfg["metered_network_ids"] == ["taxi"]
