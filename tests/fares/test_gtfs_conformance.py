"""GTFS conformance, rule by rule: stops.txt time zones and areas, as the reference reads.

Each test names the rule of the GTFS Schedule reference it checks (google/transit
`gtfs/spec/en/reference.md`) and checks it through `FareSystem.quote`, which both
evaluators answer (the core, and the pure one under CARDLEDGER_PURE=1).
"""

from __future__ import annotations

import datetime as dt

import pytest

from cardledger.fares import FareSystem, Leg
from cardledger.fares.errors import UnknownFareError

UTC = dt.timezone.utc
PEAK_FEN, BASE_FEN = 500, 300


def write(root, files: dict[str, str]) -> str:
    """Write a feed directory (file name -> CSV text)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return str(root)


def timeframe_feed(stops_txt: str) -> dict[str, str]:
    """One metro line, agency zone Asia/Shanghai: 5 yuan departing 07:00-09:00 local time
    (at the departure stop), else 3 yuan; `stops_txt` is the stops file."""
    return {
        "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\nm,Metro,https://m.example/,Asia/Shanghai\n",
        "routes.txt": "route_id,agency_id,route_type,network_id\nL1,m,1,metro\n",
        "stops.txt": stops_txt,
        "calendar.txt": (
            "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
            "all,1,1,1,1,1,1,1,20200101,20351231\n"
        ),
        "timeframes.txt": "timeframe_group_id,start_time,end_time,service_id\npeak,07:00:00,09:00:00,all\n",
        "fare_products.txt": "fare_product_id,amount,currency\npeak_fare,5.00,CNY\nbase_fare,3.00,CNY\n",
        "fare_leg_rules.txt": (
            "network_id,fare_product_id,from_timeframe_group_id,rule_priority\n"
            "metro,peak_fare,peak,1\nmetro,base_fare,,0\n"
        ),
    }


# 22:30 UTC is 07:30 in Tokyo (peak), 06:30 in Shanghai (not), 17:30 or 18:30 in New York.
AT = dt.datetime(2026, 3, 2, 22, 30, tzinfo=UTC)

ZONED_STOPS = (
    "stop_id,stop_name,location_type,parent_station,stop_timezone\n"
    "S,Station,1,,Asia/Tokyo\n"  # a station with its own zone
    "P,Platform,0,S,America/New_York\n"  # a platform that names another zone
    "PB,Boarding area,4,P,America/New_York\n"  # a boarding area of that platform
    "Q,Platform without zone,0,S,\n"
    "T,Station without zone,1,,\n"
    "TP,Platform of T,0,T,Asia/Tokyo\n"
    "X,Lone stop,0,,\n"
    "Y,Lone stop with a zone,0,,Asia/Tokyo\n"
    "Z,End,0,,\n"
)


@pytest.fixture(scope="module")
def zoned(tmp_path_factory) -> FareSystem:
    return FareSystem.from_gtfs(write(tmp_path_factory.mktemp("zoned"), timeframe_feed(ZONED_STOPS)))


def fare_from(system: FareSystem, stop: str, when: dt.datetime = AT) -> int:
    leg = Leg("L1", stop, "Z", when, when + dt.timedelta(minutes=20))
    return system.quote([leg]).amount


def test_a_child_takes_its_parent_stations_zone_not_its_own(zoned):
    """stops.stop_timezone: 'If the location has a parent station, it inherits the parent
    station's timezone instead of applying its own': P names New York, its station
    Tokyo, and 07:30 Tokyo time is peak."""
    assert fare_from(zoned, "S") == PEAK_FEN
    assert fare_from(zoned, "P") == PEAK_FEN


def test_a_boarding_area_reaches_the_station_zone_through_its_platform(zoned):
    """A boarding area's parent is a platform, whose parent is the station: the station's
    zone applies (two levels up), not the one the boarding area or platform names."""
    assert fare_from(zoned, "PB") == PEAK_FEN


def test_a_child_with_an_empty_zone_still_takes_its_stations(zoned):
    """A platform without stop_timezone under a station with one: the station's zone."""
    assert fare_from(zoned, "Q") == PEAK_FEN


def test_a_station_without_a_zone_gives_its_children_the_agency_zone(zoned):
    """'Stations and parentless stops with empty stop_timezone inherit the timezone
    specified by agency.agency_timezone', and their children inherit that in turn:
    TP names Tokyo but its station T has none, so Shanghai (06:30, off-peak) applies."""
    assert fare_from(zoned, "T") == BASE_FEN
    assert fare_from(zoned, "TP") == BASE_FEN


def test_a_parentless_stop_uses_its_own_zone_or_the_agencys(zoned):
    """A stop with no parent applies its own stop_timezone; without one, the agency's."""
    assert fare_from(zoned, "Y") == PEAK_FEN
    assert fare_from(zoned, "X") == BASE_FEN
    # and the agency's zone is really applied: 23:30 UTC is 07:30 in Shanghai
    assert fare_from(zoned, "X", AT.replace(day=3, hour=23)) == PEAK_FEN


# -- stop_areas.txt ------------------------------------------------------------------

AREA_STOPS = (
    "stop_id,stop_name,location_type,parent_station\n"
    "P,In A and B,0,\n"  # A is listed in from_area_id, B in no rule
    "P2,In A only,0,\n"
    "Q,In Z and C,0,\n"  # Z is listed in to_area_id, C in no rule
    "Q2,In Z only,0,\n"
    "W,In no area,0,\n"
    "S,Station in A,1,\n"
    "SP,Platform of S,0,S\n"
    "SB,Boarding area of SP,4,SP\n"
    "SQ,Platform of S in its own area C,0,S\n"
)


def area_feed(priority: bool = False) -> dict[str, str]:
    """Two rules: A -> Z 5 yuan, and (empty -> empty) 3 yuan."""
    prio_col = ",rule_priority" if priority else ""
    return {
        "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\nm,Metro,https://m.example/,Asia/Shanghai\n",
        "routes.txt": "route_id,agency_id,route_type,network_id\nL1,m,1,metro\n",
        "stops.txt": AREA_STOPS,
        "areas.txt": "area_id\nA\nB\nC\nZ\n",
        "stop_areas.txt": "area_id,stop_id\nA,P\nB,P\nA,P2\nZ,Q\nC,Q\nZ,Q2\nA,S\nC,SQ\n",
        "fare_products.txt": "fare_product_id,amount,currency\nzoned,5.00,CNY\nflat,3.00,CNY\n",
        "fare_leg_rules.txt": (
            f"from_area_id,to_area_id,fare_product_id{prio_col}\n"
            f"A,Z,zoned{',1' if priority else ''}\n"
            f",,flat{',0' if priority else ''}\n"
        ),
    }


@pytest.fixture(scope="module")
def areas(tmp_path_factory) -> FareSystem:
    return FareSystem.from_gtfs(write(tmp_path_factory.mktemp("areas"), area_feed()))


def ride(system: FareSystem, a: str, b: str) -> int:
    leg = Leg("L1", a, b, AT, AT + dt.timedelta(minutes=20))
    return system.quote([leg]).amount


def test_each_area_of_a_stop_can_match_a_rule(areas):
    """stop_areas.txt puts a stop in several areas: P is in A (and B), Q in Z (and C), and
    the rule A -> Z matches P -> Q; it is the most specific match, so it wins."""
    assert ride(areas, "P", "Q") == 500
    assert ride(areas, "P2", "Q2") == 500


def test_an_empty_from_area_matches_a_stop_through_its_unlisted_area(areas):
    """fare_leg_rules.from_area_id empty (no rule_priority): it matches every area not
    listed in any rule's from_area_id. P's area B is such an area, so the empty rule
    prices P -> W, although P's other area A is listed."""
    assert ride(areas, "P", "W") == 300


def test_an_empty_to_area_matches_a_stop_through_its_unlisted_area(areas):
    """The same for to_area_id: Q is in Z (listed) and C (not listed): W -> Q is priced by
    the empty rule through C."""
    assert ride(areas, "W", "Q") == 300


def test_an_empty_area_does_not_match_a_stop_whose_areas_are_all_listed(areas):
    """P2 is only in A, listed in from_area_id: the empty from_area_id does not stand for
    it, and no rule prices P2 -> W. Likewise W -> Q2 (Q2 only in the listed Z)."""
    with pytest.raises(UnknownFareError):
        ride(areas, "P2", "W")
    with pytest.raises(UnknownFareError):
        ride(areas, "W", "Q2")


def test_a_stop_in_no_area_matches_only_the_empty_field(areas):
    """A stop that stop_areas.txt never names is in no area: only empty fields match it."""
    assert ride(areas, "W", "W") == 300


def test_with_rule_priority_an_empty_area_matches_anything(tmp_path):
    """With a rule_priority column an empty field 'does not matter': P2 -> W is priced by
    the empty rule, and P -> Q by the higher priority A -> Z."""
    fs = FareSystem.from_gtfs(write(tmp_path / "prio", area_feed(priority=True)))
    assert ride(fs, "P2", "W") == 300
    assert ride(fs, "P", "Q") == 500


def test_a_platform_is_in_its_stations_area_unless_it_has_its_own(areas):
    """stop_areas.stop_id: a station named there puts all its platforms in the area;
    a platform assigned areas of its own has those instead. SP is in A through S, so
    SP -> Q2 is A -> Z; SQ is in C only (not A), so SQ -> W is the empty rule's and
    nothing prices SQ -> Q2 (Q2 is only in the listed Z)."""
    assert ride(areas, "SP", "Q2") == 500
    assert ride(areas, "SQ", "W") == 300
    with pytest.raises(UnknownFareError):
        ride(areas, "SQ", "Q2")


def test_a_boarding_area_is_in_its_platforms_areas(areas):
    """A boarding area reaches its station's areas through its platform: SB -> Q2 is
    A -> Z, as from its platform SP."""
    assert ride(areas, "SB", "Q2") == 500


# -- systems stored before these rules ------------------------------------------------


def stored_before(system: FareSystem) -> bytes:
    """The bytes a ledger stored for `system` before the rules were recorded: its
    files without RULES_FILE."""
    import io
    import zipfile

    from cardledger.fares.system import RULES_FILE

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(system.to_bytes())) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            if name != RULES_FILE:
                dst.writestr(name, src.read(name))
    return out.getvalue()


def test_a_new_system_records_its_gtfs_rules_and_keeps_them_when_stored(zoned):
    """A system built now records the rules it was compiled with; rebuilt from its
    stored bytes it rates the same."""
    from cardledger.fares.system import RULES_FILE
    from cardledger.fares.tables import GTFS_RULES

    assert RULES_FILE in zoned.files and zoned.gtfs_rules == GTFS_RULES
    again = FareSystem.from_bytes(zoned.to_bytes())
    assert again.gtfs_rules == GTFS_RULES and fare_from(again, "P") == PEAK_FEN


def test_a_system_stored_before_the_rules_rates_as_it_did(zoned, areas):
    """A ledger's stored system without the rules file was rated with the earlier
    reading (a child's own stop_timezone first; an empty area field matching only a
    stop none of whose areas is listed): rebuilt from those bytes it keeps rating so,
    so its journal replays to the same fares."""
    from cardledger.fares.tables import GTFS_RULES_LEGACY

    old = FareSystem.from_bytes(stored_before(zoned))
    assert old.gtfs_rules == GTFS_RULES_LEGACY
    assert fare_from(old, "P") == BASE_FEN  # its own New York zone: 17:30, off-peak
    old_areas = FareSystem.from_bytes(stored_before(areas))
    with pytest.raises(UnknownFareError):
        ride(old_areas, "P", "W")


def test_harbin_reads_the_same_under_both_rules():
    """The packaged Harbin feed has no child with a zone of its own and no stop in
    several areas: ledgers that stored it before rate it exactly as now."""
    import numpy as np

    from cardledger.fares.tables import GTFS_RULES_LEGACY, compile_feed

    fs = FareSystem.harbin()
    old = compile_feed(fs.feed, fs.config, None, None, GTFS_RULES_LEGACY)
    for name in ("stop_station", "stop_tz", "stop_area_ptr", "stop_area", "stop_from_empty", "stop_to_empty"):
        assert np.array_equal(getattr(old, name), getattr(fs.tables, name)), name


def test_a_boarding_area_belongs_to_its_platforms_station(tmp_path):
    """stops.parent_station: a boarding area's parent is a platform, whose parent is the
    station; the boarding area is at that station. A join rule without stops joins
    legs that transfer at the same station: arriving at a platform and leaving from a
    boarding area of another platform of that station is one effective leg (one fare),
    at another station two."""
    files = timeframe_feed(
        "stop_id,stop_name,location_type,parent_station\n"
        "S,Station,1,\nP1,Platform 1,0,S\nP2,Platform 2,0,S\nB2,Boarding area of P2,4,P2\n"
        "Q,Elsewhere,0,\nZ,End,0,\n"
    )
    files["fare_leg_join_rules.txt"] = "from_network_id,to_network_id\nmetro,metro\n"
    fs = FareSystem.from_gtfs(write(tmp_path / "feed", files))
    leg = lambda a, b, m: Leg("L1", a, b, AT + dt.timedelta(minutes=m), AT + dt.timedelta(minutes=m + 10))  # noqa: E731
    assert fs.quote([leg("Z", "P1", 0), leg("B2", "Z", 20)]).amount == BASE_FEN  # (06:30 in Shanghai)
    assert fs.quote([leg("Z", "Q", 0), leg("B2", "Z", 20)]).amount == 2 * BASE_FEN
