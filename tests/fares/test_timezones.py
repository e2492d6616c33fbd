"""A fare system keeps the UTC offsets it was compiled with (fares/timezones.py).

Timeframes match in local time, so a tap's fare depends on its zone's offset; a ledger
replays its taps on open and must rate them as it did when it charged them, whatever
the host's tz database says by then.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pytest

from cardledger.fares import FareSystem, Leg
from cardledger.fares.errors import FeedError
from cardledger.fares.timezones import (
    INSTANT_MIN_US,
    TIMEZONES_FILE,
    decode_timezones,
    encode_timezones,
    tz_transitions,
)

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
PEAK_FEN, BASE_FEN = 500, 300


def feed_files(zone: str) -> dict[str, str]:
    """One metro line; 5 yuan from 07:00 to 09:00 local time, else 3 yuan."""
    return {
        "agency.txt": f"agency_id,agency_name,agency_url,agency_timezone\nm,Metro,https://metro.example/,{zone}\n",
        "routes.txt": "route_id,agency_id,route_type,network_id\nL1,m,1,metro\n",
        "stops.txt": "stop_id,stop_name\nA,Alpha\nB,Beta\n",
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


def write(root, files: dict[str, str | bytes]) -> str:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(root)


def fare_at(system: FareSystem, when: dt.datetime) -> int:
    """The fare of one A→B ride departing at `when`."""
    leg = Leg(route_id="L1", from_stop_id="A", to_stop_id="B", departure=when,
              arrival=when + dt.timedelta(minutes=20))
    return system.quote([leg]).amount


def with_recorded(data: bytes, timezones_file: bytes) -> bytes:
    """A stored system's bytes with its recorded offsets replaced."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, timezones_file if name == TIMEZONES_FILE else src.read(name))
    return out.getvalue()


def test_a_system_records_the_offsets_it_was_compiled_with(tmp_path):
    system = FareSystem.from_gtfs(write(tmp_path / "feed", feed_files("Asia/Shanghai")))
    recorded = decode_timezones(system.files[TIMEZONES_FILE])
    assert recorded == {"Asia/Shanghai": tz_transitions("Asia/Shanghai")}
    assert fare_at(system, dt.datetime(2026, 11, 27, 7, 30, tzinfo=SHANGHAI)) == PEAK_FEN
    assert fare_at(system, dt.datetime(2026, 11, 27, 6, 59, tzinfo=SHANGHAI)) == BASE_FEN


def test_a_stored_system_is_rated_with_its_recorded_offsets_not_the_hosts(tmp_path):
    """As if the tz database changed after the system was stored: Shanghai recorded at
    UTC+9 puts 06:30 (UTC+8) at 07:30 local, in the peak."""
    stored = FareSystem.from_gtfs(write(tmp_path / "feed", feed_files("Asia/Shanghai"))).to_bytes()
    six_thirty = dt.datetime(2026, 11, 27, 6, 30, tzinfo=SHANGHAI)
    assert fare_at(FareSystem.from_bytes(stored), six_thirty) == BASE_FEN
    plus_nine = encode_timezones({"Asia/Shanghai": ((INSTANT_MIN_US,), (9 * 3600,))})
    assert fare_at(FareSystem.from_bytes(with_recorded(stored, plus_nine)), six_thirty) == PEAK_FEN


def test_a_stored_system_round_trips_byte_for_byte(tmp_path):
    for system in (FareSystem.harbin(), FareSystem.from_gtfs(write(tmp_path / "f", feed_files("Asia/Shanghai")))):
        data = system.to_bytes()
        again = FareSystem.from_bytes(data)
        assert again.to_bytes() == data
        assert again.digest == system.digest


def test_recorded_zones_need_no_host_tz_database(tmp_path):
    """A zone the host does not know loads when its offsets come with the feed."""
    files = feed_files("Mars/Olympus_Mons")
    with pytest.raises(FeedError, match="unknown timezone 'Mars/Olympus_Mons'"):
        FareSystem.from_gtfs(write(tmp_path / "plain", files))
    files[TIMEZONES_FILE] = encode_timezones({"Mars/Olympus_Mons": ((INSTANT_MIN_US,), (8 * 3600,))}).decode()
    system = FareSystem.from_gtfs(write(tmp_path / "recorded", files))
    assert fare_at(system, dt.datetime(2026, 11, 27, 8, 0, tzinfo=SHANGHAI)) == PEAK_FEN
    assert fare_at(system, dt.datetime(2026, 11, 27, 9, 0, tzinfo=SHANGHAI)) == BASE_FEN


def test_a_recorded_file_missing_a_zone_is_completed_from_the_host(tmp_path):
    files = feed_files("Asia/Shanghai")
    files[TIMEZONES_FILE] = encode_timezones({"Europe/Paris": tz_transitions("Europe/Paris")}).decode()
    system = FareSystem.from_gtfs(write(tmp_path / "feed", files))
    recorded = decode_timezones(system.files[TIMEZONES_FILE])
    assert recorded["Asia/Shanghai"] == tz_transitions("Asia/Shanghai")


def test_harbin_ships_its_offsets():
    recorded = decode_timezones(FareSystem.harbin().files[TIMEZONES_FILE])
    assert list(recorded) == ["Asia/Shanghai"]
    froms, offsets = recorded["Asia/Shanghai"]
    assert offsets[-1] == 8 * 3600  # UTC+8 since China's last daylight saving time (1991)
    assert froms[-1] < int(dt.datetime(1992, 1, 1, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000


@pytest.mark.parametrize(
    "raw, text",
    [
        (b"not json", "not JSON"),
        (b"[]", '"format": 1'),
        (json.dumps({"format": 2, "zones": {}}).encode(), '"format": 1'),
        (json.dumps({"format": 1, "zones": {"Z": [[INSTANT_MIN_US], [0, 3600]]}}).encode(), "one length"),
        (json.dumps({"format": 1, "zones": {"Z": [[0], [0]]}}).encode(), "must start at"),
        (json.dumps({"format": 1, "zones": {"Z": [[INSTANT_MIN_US, 5, 5], [0, 1, 2]]}}).encode(), "increase"),
        (json.dumps({"format": 1, "zones": {"Z": [[INSTANT_MIN_US], [1.5]]}}).encode(), "integer"),
        (json.dumps({"format": 1, "zones": {"Z": [[INSTANT_MIN_US], [20 * 3600]]}}).encode(), "beyond"),
        (json.dumps({"format": 1, "zones": {"Z": "x"}}).encode(), "expected"),
    ],
)
def test_a_malformed_timezones_file_is_a_feed_error(tmp_path, raw, text):
    files: dict[str, str | bytes] = dict(feed_files("Asia/Shanghai"))
    files[TIMEZONES_FILE] = raw
    with pytest.raises(FeedError, match=text) as e:
        FareSystem.from_gtfs(write(tmp_path / "feed", files))
    assert e.value.problems[0].file == TIMEZONES_FILE
