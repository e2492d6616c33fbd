"""Loading a GTFS fare feed and its fares.toml: what loads, and every problem reported at once."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile

import pytest

from cardledger.errors import LedgerError
from cardledger.fares.config import (
    Cap,
    EntryExit,
    FareConfig,
    Tier,
    check_config_against_feed,
    load_config,
    load_config_beside,
)
from cardledger.fares.errors import ConfigError, FeedError, Problem, UnknownFareError
from cardledger.fares.gtfs import amount_to_minor, load_feed

# -- helpers ---------------------------------------------------------------------------

MINIMAL = {
    "agency.txt": [
        {"agency_id": "metro", "agency_name": "Harbin Metro", "agency_timezone": "Asia/Harbin"}
    ],
    "routes.txt": [{"route_id": "L1", "agency_id": "metro", "route_type": "1", "network_id": "metro"}],
    "stops.txt": [{"stop_id": "A", "stop_name": "Alpha"}, {"stop_id": "B", "stop_name": "Beta"}],
    "fare_products.txt": [{"fare_product_id": "f2", "amount": "2.00", "currency": "CNY"}],
    "fare_leg_rules.txt": [{"network_id": "metro", "fare_product_id": "f2"}],
}


def csv_text(rows: list[dict]) -> str:
    """A CSV file of `rows`; the header is the union of their keys in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def feed(**changes) -> dict[str, list[dict] | str]:
    """MINIMAL with files replaced (`name_txt=rows` or raw text) or removed (`name_txt=None`)."""
    files: dict = {name: list(rows) for name, rows in MINIMAL.items()}
    for key, value in changes.items():
        name = key[: -len("_txt")] + ".txt" if key.endswith("_txt") else key
        if value is None:
            files.pop(name, None)
        else:
            files[name] = value
    return files


def write_dir(root, files) -> str:
    """Write `files` (name -> rows or text or bytes) into directory `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = csv_text(content) if isinstance(content, list) else content
        path = root / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
    return str(root)


def write_zip(path, files, folder: str = "") -> str:
    """Write `files` into the zip at `path`, optionally under one top-level `folder`."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            data = csv_text(content) if isinstance(content, list) else content
            archive.writestr(folder + name, data)
    return str(path)


def problems_of(tmp_path, files) -> list[Problem]:
    """Load `files` as a feed, expect FeedError, and return its problems."""
    with pytest.raises(FeedError) as info:
        load_feed(write_dir(tmp_path / "feed", files))
    return info.value.problems


def has(problems: list[Problem], file: str, line: int, column: str | None, text: str) -> bool:
    """Whether some problem has this file, line, column and a message containing `text`."""
    return any(
        p.file == file and p.line == line and p.column == column and text in p.message
        for p in problems
    )


def assert_problem(problems, file, line, column, text):
    """Assert `has(...)`, showing every problem when it fails."""
    assert has(problems, file, line, column, text), "\n".join(map(str, problems))


# -- feeds that load ---------------------------------------------------------------------


def test_minimal_feed_loads_from_a_directory(tmp_path):
    """Five required files, no trips or stop_times: a valid feed; money in fen."""
    loaded = load_feed(write_dir(tmp_path / "feed", feed()))
    assert loaded.agencies["metro"].agency_timezone == "Asia/Harbin"
    assert loaded.routes["L1"].network_id == "metro"
    assert loaded.route_networks == {"L1": "metro"}
    assert list(loaded.stops) == ["A", "B"]
    assert loaded.fare_products[0].amount_minor == 200
    assert loaded.fare_products[0].currency == "CNY"
    assert loaded.fare_leg_rules[0].network_id == "metro"
    assert loaded.has_rule_priority is False
    assert loaded.fare_media == {} and loaded.timeframes == [] and loaded.networks == {}


def test_minimal_feed_loads_from_a_zip(tmp_path):
    """The same feed as a .zip with the files at its root."""
    loaded = load_feed(write_zip(tmp_path / "feed.zip", feed()))
    assert loaded.fare_products[0].amount_minor == 200


def test_zip_with_one_top_level_folder_loads(tmp_path):
    """A zip whose files sit in one folder (as `zip -r feed.zip feed/` makes) loads."""
    loaded = load_feed(write_zip(tmp_path / "feed.zip", feed(), folder="harbin/"))
    assert set(loaded.routes) == {"L1"}


def test_missing_path_and_non_zip_are_feed_errors(tmp_path):
    """A path that is neither a directory nor a zip raises FeedError (also a ValueError)."""
    with pytest.raises(FeedError):
        load_feed(tmp_path / "nowhere")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError):
        load_feed(junk)


FULL = dict(
    agency_txt=[{"agency_id": "bus", "agency_name": "Bus", "agency_timezone": "Asia/Harbin"},
                {"agency_id": "metro", "agency_name": "Metro", "agency_timezone": "Asia/Harbin"}],
    routes_txt=[{"route_id": "L1", "agency_id": "metro", "route_type": "1", "route_short_name": "1"},
                {"route_id": "B7", "agency_id": "bus", "route_type": "3"}],
    stops_txt=[{"stop_id": "S", "location_type": "1", "stop_timezone": "Asia/Shanghai"},
               {"stop_id": "A", "parent_station": "S"},
               {"stop_id": "E", "location_type": "2", "parent_station": "S"},
               {"stop_id": "B"}],
    networks_txt=[{"network_id": "metro", "network_name": "Metro"}, {"network_id": "bus"}],
    route_networks_txt=[{"network_id": "metro", "route_id": "L1"}, {"network_id": "bus", "route_id": "B7"}],
    areas_txt=[{"area_id": "zone1", "area_name": "Zone 1"}, {"area_id": "zone2"}],
    stop_areas_txt=[{"area_id": "zone1", "stop_id": "A"}, {"area_id": "zone2", "stop_id": "B"}],
    fare_media_txt=[{"fare_media_id": "card", "fare_media_name": "Union card", "fare_media_type": "2"}],
    rider_categories_txt=[
        {"rider_category_id": "adult", "rider_category_name": "Adult", "is_default_fare_category": "1"},
        {"rider_category_id": "student", "rider_category_name": "Student", "is_default_fare_category": ""},
    ],
    calendar_txt=[{"service_id": "wk", "monday": "1", "tuesday": "1", "wednesday": "1", "thursday": "1",
                   "friday": "1", "saturday": "0", "sunday": "0",
                   "start_date": "20240101", "end_date": "20241231"}],
    calendar_dates_txt=[{"service_id": "hol", "date": "20240501", "exception_type": "1"}],
    timeframes_txt=[
        {"timeframe_group_id": "peak", "start_time": "07:00:00", "end_time": "09:00:00", "service_id": "wk"},
        {"timeframe_group_id": "peak", "start_time": "17:00:00", "end_time": "24:00:00", "service_id": "wk"},
        {"timeframe_group_id": "allday", "service_id": "hol"},
    ],
    fare_products_txt=[
        {"fare_product_id": "m2", "fare_product_name": "Metro", "rider_category_id": "adult",
         "fare_media_id": "card", "amount": "2.00", "currency": "CNY"},
        {"fare_product_id": "m2", "rider_category_id": "student", "fare_media_id": "card",
         "amount": "1.00", "currency": "CNY"},
        {"fare_product_id": "bus1", "amount": "1", "currency": "CNY"},
        {"fare_product_id": "xfer", "amount": "-1.00", "currency": "CNY"},
    ],
    fare_leg_rules_txt=[
        {"leg_group_id": "g_metro", "network_id": "metro", "from_area_id": "zone1", "to_area_id": "zone2",
         "from_timeframe_group_id": "peak", "fare_product_id": "m2", "rule_priority": "1"},
        {"leg_group_id": "g_bus", "network_id": "bus", "fare_product_id": "bus1", "rule_priority": ""},
    ],
    fare_leg_join_rules_txt=[{"from_network_id": "metro", "to_network_id": "metro",
                              "from_stop_id": "A", "to_stop_id": "B"}],
    fare_transfer_rules_txt=[
        {"from_leg_group_id": "g_bus", "to_leg_group_id": "g_metro", "duration_limit": "5400",
         "duration_limit_type": "0", "fare_transfer_type": "0", "fare_product_id": "xfer"},
        {"from_leg_group_id": "g_bus", "to_leg_group_id": "g_bus", "transfer_count": "-1",
         "fare_transfer_type": "2"},
    ],
)


def test_full_feed_loads_every_table(tmp_path):
    """Every optional file loads into its typed rows; route networks come from route_networks.txt."""
    loaded = load_feed(write_dir(tmp_path / "feed", feed(**FULL)))
    assert loaded.routes["L1"].network_id == "metro" and loaded.routes["B7"].network_id == "bus"
    assert loaded.route_networks == {"L1": "metro", "B7": "bus"}
    assert loaded.stops["S"].location_type == 1 and loaded.stops["A"].parent_station == "S"
    assert loaded.stops["S"].stop_timezone == "Asia/Shanghai"
    assert [(sa.area_id, sa.stop_id) for sa in loaded.stop_areas] == [("zone1", "A"), ("zone2", "B")]
    assert loaded.fare_media["card"].fare_media_type == 2
    assert loaded.rider_categories["adult"].is_default_fare_category is True
    assert loaded.rider_categories["student"].is_default_fare_category is False
    assert loaded.calendar["wk"].weekdays == (True,) * 5 + (False, False)
    assert loaded.calendar["wk"].start_date == dt.date(2024, 1, 1)
    assert loaded.calendar_dates[0].date == dt.date(2024, 5, 1)
    assert [(t.start_s, t.end_s) for t in loaded.timeframes] == [(25200, 32400), (61200, 86400), (0, 86400)]
    assert [p.amount_minor for p in loaded.fare_products] == [200, 100, 100, -100]
    assert loaded.has_rule_priority is True
    assert [r.rule_priority for r in loaded.fare_leg_rules] == [1, None]
    assert loaded.fare_leg_join_rules[0].from_stop_id == "A"
    first, second = loaded.fare_transfer_rules
    assert (first.duration_limit, first.duration_limit_type, first.transfer_count) == (5400, 0, None)
    assert (second.transfer_count, second.fare_transfer_type) == (-1, 2)


def test_bom_quoted_fields_and_whitespace(tmp_path):
    """A UTF-8 BOM, RFC 4180 quoting (commas, quotes, newlines) and padded cells read right,
    and line numbers stay physical after a quoted newline."""
    stops = '\ufeffstop_id , stop_name\n A ,"Station, ""Central""\nHall"\nB,\n'
    bad_rules = "fare_product_id,network_id\nf2,metro\n,metro\n"
    files = feed(stops_txt=stops.encode("utf-8"))
    loaded = load_feed(write_dir(tmp_path / "ok", files))
    assert loaded.stops["A"].stop_name == 'Station, "Central"\nHall'
    assert loaded.stops["B"].stop_name is None
    stops_then_bad = '\ufeffstop_id,stop_name\nA,"two\nlines"\n,nameless\n'
    problems = problems_of(tmp_path, feed(stops_txt=stops_then_bad, fare_leg_rules_txt=bad_rules))
    assert_problem(problems, "stops.txt", 4, "stop_id", "required field is empty")
    assert_problem(problems, "fare_leg_rules.txt", 3, "fare_product_id", "required field is empty")


def test_unknown_files_columns_and_fares_v1_are_ignored(tmp_path):
    """trips.txt, fare_attributes.txt, fare_rules.txt and unknown columns do not matter."""
    files = feed(
        trips_txt="garbage\x00,,,\n",
        fare_attributes_txt="fare_id,price\nx,not-money\n",
        fare_rules_txt="fare_id,route_id\nx,nowhere\n",
        stops_txt=[{"stop_id": "A", "zone_id": "z", "my_column": "whatever"}],
    )
    loaded = load_feed(write_dir(tmp_path / "feed", files))
    assert list(loaded.stops) == ["A"]


def test_empty_draft_columns_are_fine(tmp_path):
    """Unsupported draft columns that are present but empty are not problems."""
    files = feed(fare_products_txt=[{"fare_product_id": "f2", "amount": "2.00", "currency": "CNY",
                                     "duration_amount": "", "fare_media_behavior": ""}])
    assert load_feed(write_dir(tmp_path / "feed", files)).fare_products[0].amount_minor == 200


# -- money -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("2.00", "CNY", 200), ("2", "CNY", 200), ("0.1", "CNY", 10), ("2.000", "CNY", 200),
        ("0", "CNY", 0), ("-1.50", "CNY", -150), ("0.29", "USD", 29), ("1.15", "EUR", 115),
        ("1000", "JPY", 1000), ("1.000", "JPY", 1), ("1.234", "KWD", 1234),
        ("10000000000000.00", "CNY", 10**15), ("-10000000000000.00", "CNY", -(10**15)),
    ],
)
def test_money_converts_exactly_to_minor_units(amount, currency, minor):
    """Decimal strings convert exactly (no float rounding, e.g. 0.29 and 1.15 and 2**63-1)."""
    assert amount_to_minor(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("2.001", "CNY", "more decimals than CNY allows"), ("1.5", "JPY", "more decimals"),
        ("1.2345", "KWD", "more decimals"), ("1e2", "CNY", "not a decimal"), ("abc", "CNY", "not a decimal"),
        ("1,00", "CNY", "not a decimal"), (".5", "CNY", "not a decimal"), ("NaN", "CNY", "not a decimal"),
        ("2.00", "XYZ", "unknown currency"), ("2.00", "cny", "upper case"),
        ("10000000000000.01", "CNY", "too large"), ("92233720368547758.08", "CNY", "too large"),
    ],
)
def test_money_refuses_over_precision_and_malformed(amount, currency, text):
    """Over-precise, malformed, out-of-range amounts and unknown currencies raise ValueError."""
    with pytest.raises(ValueError, match=text):
        amount_to_minor(amount, currency)


def test_fare_product_money_problems_have_file_line_column(tmp_path):
    """Bad amounts and currencies in fare_products.txt are reported per row and column."""
    products = [
        {"fare_product_id": "f2", "amount": "2.00", "currency": "CNY"},
        {"fare_product_id": "a", "amount": "2.001", "currency": "CNY"},
        {"fare_product_id": "b", "amount": "two", "currency": "CNY"},
        {"fare_product_id": "c", "amount": "2.00", "currency": "XXQ"},
        {"fare_product_id": "d", "amount": "2.00", "currency": "USD"},
    ]
    problems = problems_of(tmp_path, feed(fare_products_txt=products))
    assert_problem(problems, "fare_products.txt", 3, "amount", "more decimals than CNY allows")
    assert_problem(problems, "fare_products.txt", 4, "amount", "not a decimal")
    assert_problem(problems, "fare_products.txt", 5, "currency", "unknown currency 'XXQ'")
    assert_problem(problems, "fare_products.txt", 6, "currency", "unsupported: currency 'USD' differs")
    assert len(problems) == 4


# -- problems, class by class -------------------------------------------------------------


def test_missing_required_files_are_reported_at_line_0(tmp_path):
    """Each missing required file is one problem at line 0 with no column."""
    problems = problems_of(tmp_path, feed(stops_txt=None, fare_leg_rules_txt=None))
    assert_problem(problems, "stops.txt", 0, None, "required file is missing")
    assert_problem(problems, "fare_leg_rules.txt", 0, None, "required file is missing")
    assert len(problems) == 2


def test_missing_required_columns_are_reported_at_line_1(tmp_path):
    """A required column absent from the header is one problem at line 1, not one per row."""
    files = feed(
        fare_products_txt=[{"fare_product_id": "f2", "amount": "2.00"}],
        fare_media_txt=[{"fare_media_id": "card"}, {"fare_media_id": "qr"}],
    )
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "fare_products.txt", 1, "currency", "required column is missing")
    assert_problem(problems, "fare_media.txt", 1, "fare_media_type", "required column is missing")
    assert len(problems) == 2


def test_malformed_csv_files_are_reported(tmp_path):
    """Bad UTF-8, an empty file, a wrong field count and a duplicate header column."""
    files = feed(
        networks_txt=b"network_id\nm\xffx\n",
        areas_txt="",
        stop_areas_txt="area_id,stop_id,area_id\n",
        calendar_dates_txt="service_id,date,exception_type\nsvc,20240101,1,extra\n",
    )
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "networks.txt", 2, None, "not valid UTF-8")
    assert_problem(problems, "areas.txt", 1, None, "file is empty")
    assert_problem(problems, "stop_areas.txt", 1, "area_id", "duplicate column")
    assert_problem(problems, "calendar_dates.txt", 2, None, "row has 4 fields, the header has 3")


def test_required_fields_must_be_non_empty(tmp_path):
    """An empty required cell is reported at its row and column."""
    files = feed(
        agency_txt=[{"agency_id": "metro", "agency_name": "", "agency_timezone": "Asia/Harbin"}],
        routes_txt=[{"route_id": "L1", "agency_id": "metro", "route_type": "", "network_id": "metro"}],
    )
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "agency.txt", 2, "agency_name", "required field is empty")
    assert_problem(problems, "routes.txt", 2, "route_type", "required field is empty")


@pytest.mark.parametrize(
    ("key", "row", "column"),
    [
        ("stops_txt", {"stop_id": "X", "location_type": "5"}, "location_type"),
        ("fare_media_txt", {"fare_media_id": "m", "fare_media_type": "7"}, "fare_media_type"),
        ("rider_categories_txt", {"rider_category_id": "r", "rider_category_name": "R",
                                  "is_default_fare_category": "2"}, "is_default_fare_category"),
        ("fare_transfer_rules_txt", {"from_leg_group_id": "", "transfer_count": "1",
                                     "fare_transfer_type": "3"}, "fare_transfer_type"),
        ("fare_transfer_rules_txt", {"transfer_count": "1", "duration_limit": "60",
                                     "duration_limit_type": "4", "fare_transfer_type": "0"},
         "duration_limit_type"),
        ("calendar_dates_txt", {"service_id": "s", "date": "20240101", "exception_type": "3"},
         "exception_type"),
        ("calendar_txt", {"service_id": "s", "monday": "2", "tuesday": "0", "wednesday": "0",
                          "thursday": "0", "friday": "0", "saturday": "0", "sunday": "0",
                          "start_date": "20240101", "end_date": "20240102"}, "monday"),
        ("routes_txt", {"route_id": "L1", "agency_id": "metro", "route_type": "9",
                        "network_id": "metro"}, "route_type"),
        ("stops_txt", {"stop_id": "X", "location_type": "one"}, "location_type"),
    ],
)
def test_enum_values_out_of_range(tmp_path, key, row, column):
    """An enum value outside its range (or not an integer) is reported at row 2, its column."""
    file = key[: -len("_txt")] + ".txt"
    problems = problems_of(tmp_path, feed(**{key: [row]}))
    assert_problem(problems, file, 2, column, "")
    assert len([p for p in problems if p.file == file]) == 1, problems


def test_integer_bounds(tmp_path):
    """transfer_count is -1 or >= 1; duration_limit > 0; rule_priority >= 0."""
    files = feed(
        fare_leg_rules_txt=[{"leg_group_id": "g", "network_id": "metro", "fare_product_id": "f2",
                             "rule_priority": "-1"}],
        fare_transfer_rules_txt=[
            {"from_leg_group_id": "g", "to_leg_group_id": "g", "transfer_count": "0",
             "fare_transfer_type": "0"},
            {"from_leg_group_id": "g", "to_leg_group_id": "g", "transfer_count": "2",
             "duration_limit": "0", "duration_limit_type": "1", "fare_transfer_type": "0"},
            {"from_leg_group_id": "g", "to_leg_group_id": "g", "transfer_count": "1.5",
             "fare_transfer_type": "0"},
        ],
    )
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "fare_leg_rules.txt", 2, "rule_priority", "out of range")
    assert_problem(problems, "fare_transfer_rules.txt", 2, "transfer_count", "-1 or >= 1")
    assert_problem(problems, "fare_transfer_rules.txt", 3, "duration_limit", "out of range")
    assert_problem(problems, "fare_transfer_rules.txt", 4, "transfer_count", "not an integer")


def test_timeframe_times(tmp_path):
    """Bad HH:MM:SS, past 24:00:00, start >= end, only one of start/end, overlapping intervals."""
    def tf(start, end, group="g", service="wk"):
        return {"timeframe_group_id": group, "start_time": start, "end_time": end, "service_id": service}

    files = feed(
        calendar_txt=FULL["calendar_txt"],
        timeframes_txt=[
            tf("7:00", "09:00:00"),        # 2: bad format
            tf("10:00:00", "24:00:01"),    # 3: past 24:00:00
            tf("12:00:00", "11:00:00"),    # 4: start >= end
            tf("13:00:00", ""),            # 5: only one given
            tf("06:00:00", "08:00:00"),    # 6: fine
            tf("07:30:00", "09:00:00"),    # 7: overlaps line 6
            tf("07:30:00", "09:00:00", service="other"),  # 8: unknown service, no overlap
            tf("06:00:00", "24:00:00", group="h"),        # 9: other group: fine
            tf("08:00:00", "10:00:00", group="h2"),       # 10: fine
            tf("09:59:59", "10:00:00", group="h2"),       # 11: overlaps line 10 (end exclusive)
        ],
    )
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "timeframes.txt", 2, "start_time", "not a time HH:MM:SS")
    assert_problem(problems, "timeframes.txt", 3, "end_time", "not a time HH:MM:SS")
    assert_problem(problems, "timeframes.txt", 4, "end_time", "must be after start_time")
    assert_problem(problems, "timeframes.txt", 5, "end_time", "both be given or both be empty")
    assert_problem(problems, "timeframes.txt", 7, "start_time", "overlaps the interval at line 6")
    assert_problem(problems, "timeframes.txt", 8, "service_id", "unknown service_id 'other'")
    assert_problem(problems, "timeframes.txt", 11, "start_time", "overlaps the interval at line 10")
    assert len(problems) == 7, "\n".join(map(str, problems))


def test_adjacent_timeframes_do_not_overlap(tmp_path):
    """[07:00, 09:00) and [09:00, 24:00) touch but do not overlap."""
    files = feed(calendar_txt=FULL["calendar_txt"], timeframes_txt=[
        {"timeframe_group_id": "g", "start_time": "07:00:00", "end_time": "09:00:00", "service_id": "wk"},
        {"timeframe_group_id": "g", "start_time": "09:00:00", "end_time": "24:00:00", "service_id": "wk"},
    ])
    assert len(load_feed(write_dir(tmp_path / "feed", files)).timeframes) == 2


def test_dates_and_timezones(tmp_path):
    """Dates must be real YYYYMMDD; end_date >= start_date; timezones must be IANA names;
    all agencies share one timezone."""
    files = feed(
        agency_txt=[{"agency_id": "metro", "agency_name": "M", "agency_timezone": "Asia/Harbin"},
                    {"agency_id": "bus", "agency_name": "B", "agency_timezone": "Mars/Olympus"},
                    {"agency_id": "tram", "agency_name": "T", "agency_timezone": "Asia/Tokyo"}],
        stops_txt=[{"stop_id": "A", "stop_timezone": "Not/AZone"}],
        calendar_txt=[{"service_id": "s", "monday": "1", "tuesday": "0", "wednesday": "0",
                       "thursday": "0", "friday": "0", "saturday": "0", "sunday": "0",
                       "start_date": "20240230", "end_date": "2024-12-31"},
                      {"service_id": "t", "monday": "1", "tuesday": "0", "wednesday": "0",
                       "thursday": "0", "friday": "0", "saturday": "0", "sunday": "0",
                       "start_date": "20240301", "end_date": "20240201"}],
    )
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "agency.txt", 3, "agency_timezone", "unknown timezone 'Mars/Olympus'")
    assert_problem(problems, "agency.txt", 4, "agency_timezone", "all agencies must share one timezone")
    assert_problem(problems, "stops.txt", 2, "stop_timezone", "unknown timezone")
    assert_problem(problems, "calendar.txt", 2, "start_date", "not a date YYYYMMDD")
    assert_problem(problems, "calendar.txt", 2, "end_date", "not a date YYYYMMDD")
    assert_problem(problems, "calendar.txt", 3, "end_date", "before start_date")


@pytest.mark.parametrize(
    ("key", "rows", "line", "column", "text"),
    [
        ("agency_txt", [MINIMAL["agency.txt"][0]] * 2, 3, "agency_id", "duplicate agency_id 'metro'"),
        ("routes_txt", [MINIMAL["routes.txt"][0]] * 2, 3, "route_id", "duplicate route_id 'L1'"),
        ("stops_txt", [{"stop_id": "A"}, {"stop_id": "A"}], 3, "stop_id", "(first at line 2)"),
        ("fare_media_txt", [{"fare_media_id": "c", "fare_media_type": "1"}] * 2, 3, "fare_media_id",
         "duplicate"),
        ("rider_categories_txt", [{"rider_category_id": "r", "rider_category_name": "R"}] * 2, 3,
         "rider_category_id", "duplicate"),
        ("fare_products_txt", [MINIMAL["fare_products.txt"][0]] * 2, 3, None,
         "duplicate key (fare_product_id, rider_category_id, fare_media_id) = ('f2', '', '')"),
        ("fare_leg_rules_txt", [MINIMAL["fare_leg_rules.txt"][0]] * 2, 3, None, "duplicate key"),
        ("fare_leg_join_rules_txt", [{"from_network_id": "metro", "to_network_id": "metro"}] * 2, 3,
         None, "duplicate key"),
        ("fare_transfer_rules_txt", [{"transfer_count": "1", "fare_transfer_type": "0"}] * 2, 3,
         None, "duplicate key"),
        ("areas_txt", [{"area_id": "z"}] * 2, 3, "area_id", "duplicate"),
        ("stop_areas_txt", [{"area_id": "z", "stop_id": "A"}] * 2, 3, None,
         "duplicate row ('z', 'A')"),
        ("calendar_txt", [FULL["calendar_txt"][0]] * 2, 3, "service_id", "duplicate service_id 'wk'"),
        ("calendar_dates_txt", [FULL["calendar_dates_txt"][0]] * 2, 3, None,
         "duplicate (service_id, date) ('hol', '20240501')"),
    ],
)
def test_duplicate_primary_keys(tmp_path, key, rows, line, column, text):
    """A second row with the same primary key is reported at its line, naming the first."""
    file = key[: -len("_txt")] + ".txt"
    extra = {"areas_txt": [{"area_id": "z"}]} if key == "stop_areas_txt" else {}
    problems = problems_of(tmp_path, feed(**{key: rows}, **extra))
    assert_problem(problems, file, line, column, text)


def test_duplicate_networks_and_route_networks(tmp_path):
    """Duplicate network_id in networks.txt and duplicate rows in route_networks.txt."""
    routes = [{"route_id": "L1", "agency_id": "metro", "route_type": "1"}]
    files = feed(
        routes_txt=routes,
        networks_txt=[{"network_id": "metro"}, {"network_id": "metro"}],
        route_networks_txt=[{"network_id": "metro", "route_id": "L1"}] * 2,
    )
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "networks.txt", 3, "network_id", "duplicate network_id 'metro'")
    assert_problem(problems, "route_networks.txt", 3, "route_id", "duplicate route_id 'L1'")


def test_route_in_two_networks(tmp_path):
    """route_networks.txt may put a route in one network only."""
    files = feed(
        routes_txt=[{"route_id": "L1", "agency_id": "metro", "route_type": "1"}],
        networks_txt=[{"network_id": "metro"}, {"network_id": "bus"}],
        route_networks_txt=[{"network_id": "metro", "route_id": "L1"},
                            {"network_id": "bus", "route_id": "L1"}],
    )
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "route_networks.txt", 3, "route_id", "is in two networks: 'metro' (line 2)")


def test_networks_files_forbidden_with_routes_network_id(tmp_path):
    """networks.txt and route_networks.txt are forbidden when routes.txt has network_id."""
    files = feed(networks_txt=[{"network_id": "metro"}],
                 route_networks_txt=[{"network_id": "metro", "route_id": "L1"}])
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "networks.txt", 0, None, "forbidden when routes.txt has a network_id")
    assert_problem(problems, "route_networks.txt", 0, None, "forbidden")
    assert len(problems) == 2


def test_leg_rule_in_two_leg_groups(tmp_path):
    """The same leg rule (all fields but leg_group_id) cannot be in two leg groups."""
    files = feed(fare_leg_rules_txt=[
        {"leg_group_id": "a", "network_id": "metro", "fare_product_id": "f2"},
        {"leg_group_id": "b", "network_id": "metro", "fare_product_id": "f2"},
    ])
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "fare_leg_rules.txt", 3, "leg_group_id", "already in leg group 'a' (line 2)")


@pytest.mark.parametrize(
    ("changes", "file", "line", "column", "text"),
    [
        ({"routes_txt": [{"route_id": "L1", "agency_id": "nope", "route_type": "1"}]},
         "routes.txt", 2, "agency_id", "unknown agency_id 'nope'"),
        ({"stops_txt": [{"stop_id": "A", "parent_station": "Z"}]},
         "stops.txt", 2, "parent_station", "unknown parent_station 'Z'"),
        ({"fare_products_txt": [{"fare_product_id": "f2", "amount": "2", "currency": "CNY",
                                 "rider_category_id": "kid"}]},
         "fare_products.txt", 2, "rider_category_id", "unknown rider_category_id 'kid'"),
        ({"fare_products_txt": [{"fare_product_id": "f2", "amount": "2", "currency": "CNY",
                                 "fare_media_id": "paper"}]},
         "fare_products.txt", 2, "fare_media_id", "unknown fare_media_id 'paper'"),
        ({"fare_leg_rules_txt": [{"network_id": "tram", "fare_product_id": "f2"}]},
         "fare_leg_rules.txt", 2, "network_id", "unknown network_id 'tram'"),
        ({"fare_leg_rules_txt": [{"from_area_id": "z9", "fare_product_id": "f2"}]},
         "fare_leg_rules.txt", 2, "from_area_id", "unknown from_area_id 'z9' (not in areas.txt)"),
        ({"fare_leg_rules_txt": [{"to_area_id": "z9", "fare_product_id": "f2"}]},
         "fare_leg_rules.txt", 2, "to_area_id", "unknown to_area_id 'z9'"),
        ({"fare_leg_rules_txt": [{"from_timeframe_group_id": "tf", "fare_product_id": "f2"}]},
         "fare_leg_rules.txt", 2, "from_timeframe_group_id", "unknown from_timeframe_group_id 'tf'"),
        ({"fare_leg_rules_txt": [{"to_timeframe_group_id": "tf", "fare_product_id": "f2"}]},
         "fare_leg_rules.txt", 2, "to_timeframe_group_id", "unknown to_timeframe_group_id"),
        ({"fare_leg_rules_txt": [{"fare_product_id": "x"}]},
         "fare_leg_rules.txt", 2, "fare_product_id", "unknown fare_product_id 'x'"),
        ({"fare_leg_join_rules_txt": [{"from_network_id": "metro", "to_network_id": "tram"}]},
         "fare_leg_join_rules.txt", 2, "to_network_id", "unknown to_network_id 'tram'"),
        ({"fare_leg_join_rules_txt": [{"from_network_id": "metro", "to_network_id": "metro",
                                       "from_stop_id": "A", "to_stop_id": "Q"}]},
         "fare_leg_join_rules.txt", 2, "to_stop_id", "unknown to_stop_id 'Q'"),
        ({"fare_transfer_rules_txt": [{"from_leg_group_id": "g1", "to_leg_group_id": "",
                                       "fare_transfer_type": "0"}]},
         "fare_transfer_rules.txt", 2, "from_leg_group_id", "unknown from_leg_group_id 'g1'"),
        ({"fare_transfer_rules_txt": [{"transfer_count": "1", "fare_transfer_type": "0",
                                       "fare_product_id": "x"}]},
         "fare_transfer_rules.txt", 2, "fare_product_id", "unknown fare_product_id 'x'"),
        ({"timeframes_txt": [{"timeframe_group_id": "g", "service_id": "nope"}]},
         "timeframes.txt", 2, "service_id", "unknown service_id 'nope'"),
        ({"areas_txt": [{"area_id": "z"}], "stop_areas_txt": [{"area_id": "y", "stop_id": "A"}]},
         "stop_areas.txt", 2, "area_id", "unknown area_id 'y'"),
        ({"areas_txt": [{"area_id": "z"}], "stop_areas_txt": [{"area_id": "z", "stop_id": "Q"}]},
         "stop_areas.txt", 2, "stop_id", "unknown stop_id 'Q'"),
        ({"routes_txt": [{"route_id": "L1", "agency_id": "metro", "route_type": "1"}],
          "networks_txt": [{"network_id": "metro"}],
          "route_networks_txt": [{"network_id": "bus", "route_id": "L1"}]},
         "route_networks.txt", 2, "network_id", "unknown network_id 'bus'"),
        ({"routes_txt": [{"route_id": "L1", "agency_id": "metro", "route_type": "1"}],
          "networks_txt": [{"network_id": "metro"}],
          "route_networks_txt": [{"network_id": "metro", "route_id": "L9"}]},
         "route_networks.txt", 2, "route_id", "unknown route_id 'L9'"),
    ],
)
def test_broken_references(tmp_path, changes, file, line, column, text):
    """Each foreign key that names nothing is reported at its row and column."""
    problems = problems_of(tmp_path, feed(**changes))
    assert_problem(problems, file, line, column, text)


def test_route_agency_may_be_empty_only_with_one_agency(tmp_path):
    """routes.agency_id may be empty with one agency (it is filled in), not with two."""
    one = feed(routes_txt=[{"route_id": "L1", "route_type": "1", "network_id": "metro"}])
    assert load_feed(write_dir(tmp_path / "one", one)).routes["L1"].agency_id == "metro"
    two = feed(
        agency_txt=FULL["agency_txt"],
        routes_txt=[{"route_id": "L1", "agency_id": "", "route_type": "1", "network_id": "metro"}],
    )
    problems = problems_of(tmp_path, two)
    assert_problem(problems, "routes.txt", 2, "agency_id", "more than one agency")


def test_agency_id_may_be_empty_only_with_one_agency(tmp_path):
    """A lone agency without agency_id loads under the id ""; two agencies need ids."""
    lone = feed(agency_txt=[{"agency_name": "M", "agency_timezone": "Asia/Harbin"}],
                routes_txt=[{"route_id": "L1", "route_type": "1", "network_id": "metro"}])
    loaded = load_feed(write_dir(tmp_path / "lone", lone))
    assert list(loaded.agencies) == [""] and loaded.routes["L1"].agency_id == ""
    two = feed(agency_txt=[{"agency_id": "", "agency_name": "M", "agency_timezone": "Asia/Harbin"},
                           {"agency_id": "b", "agency_name": "B", "agency_timezone": "Asia/Harbin"}])
    problems = problems_of(tmp_path, two)
    assert_problem(problems, "agency.txt", 2, "agency_id", "more than one agency")


def test_stop_hierarchy_rules(tmp_path):
    """Stations have no parent; entrances need one; a platform's parent must be a station."""
    files = feed(stops_txt=[
        {"stop_id": "S", "location_type": "1", "parent_station": "T"},  # 2: station with parent
        {"stop_id": "T", "location_type": "1"},
        {"stop_id": "E", "location_type": "2"},                          # 4: entrance without parent
        {"stop_id": "P", "parent_station": "P2"},                        # 5: parent is a platform
        {"stop_id": "P2"},
    ])
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "stops.txt", 2, "parent_station", "has no parent_station")
    assert_problem(problems, "stops.txt", 4, "parent_station", "required for location_type 2")
    assert_problem(problems, "stops.txt", 5, "parent_station", "needs a parent of location_type 1")
    assert len(problems) == 3


def test_transfer_rule_conditionals(tmp_path):
    """transfer_count required iff the leg groups are equal (both empty counts as equal);
    duration_limit_type required iff duration_limit is given."""
    files = feed(
        fare_leg_rules_txt=[{"leg_group_id": "a", "network_id": "metro", "fare_product_id": "f2"},
                            {"leg_group_id": "b", "fare_product_id": "f2"}],
        fare_transfer_rules_txt=[
            {"from_leg_group_id": "a", "to_leg_group_id": "a", "fare_transfer_type": "0"},   # 2
            {"from_leg_group_id": "a", "to_leg_group_id": "b", "transfer_count": "1",
             "fare_transfer_type": "0"},                                                      # 3
            {"from_leg_group_id": "", "to_leg_group_id": "", "fare_transfer_type": "0"},     # 4
            {"from_leg_group_id": "b", "to_leg_group_id": "a", "duration_limit": "600",
             "fare_transfer_type": "0"},                                                      # 5
            {"from_leg_group_id": "b", "to_leg_group_id": "", "duration_limit_type": "1",
             "fare_transfer_type": "0"},                                                      # 6
        ],
    )
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "fare_transfer_rules.txt", 2, "transfer_count", "required when")
    assert_problem(problems, "fare_transfer_rules.txt", 3, "transfer_count", "forbidden when")
    assert_problem(problems, "fare_transfer_rules.txt", 4, "transfer_count", "required when")
    assert_problem(problems, "fare_transfer_rules.txt", 5, "duration_limit_type", "required when")
    assert_problem(problems, "fare_transfer_rules.txt", 6, "duration_limit_type", "forbidden when")
    assert len(problems) == 5


def test_join_rule_stops_both_or_neither(tmp_path):
    """fare_leg_join_rules: from_stop_id and to_stop_id come together."""
    files = feed(fare_leg_join_rules_txt=[
        {"from_network_id": "metro", "to_network_id": "metro", "from_stop_id": "A", "to_stop_id": ""}
    ])
    problems = problems_of(tmp_path, files)
    assert_problem(problems, "fare_leg_join_rules.txt", 2, "to_stop_id", "both be given or both be empty")


def test_default_rider_category_rule(tmp_path):
    """A product naming several rider categories needs exactly one default among them."""
    categories = [
        {"rider_category_id": "adult", "rider_category_name": "A", "is_default_fare_category": "0"},
        {"rider_category_id": "kid", "rider_category_name": "K", "is_default_fare_category": "0"},
        {"rider_category_id": "senior", "rider_category_name": "S", "is_default_fare_category": "1"},
    ]
    products = [
        {"fare_product_id": "f2", "rider_category_id": "adult", "amount": "2", "currency": "CNY"},
        {"fare_product_id": "f2", "rider_category_id": "kid", "amount": "1", "currency": "CNY"},
        {"fare_product_id": "ok", "rider_category_id": "senior", "amount": "0", "currency": "CNY"},
        {"fare_product_id": "ok", "rider_category_id": "kid", "amount": "1", "currency": "CNY"},
        {"fare_product_id": "one", "rider_category_id": "kid", "amount": "1", "currency": "CNY"},
    ]
    problems = problems_of(tmp_path, feed(rider_categories_txt=categories, fare_products_txt=products))
    assert_problem(problems, "fare_products.txt", 2, "rider_category_id",
                   "exactly one of them must have is_default_fare_category=1")
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("key", "row", "column"),
    [
        ("fare_transfer_rules_txt", {"transfer_count": "1", "fare_transfer_type": "0",
                                     "filter_fare_product_id": "f2"}, "filter_fare_product_id"),
        ("fare_transfer_rules_txt", {"transfer_count": "1", "fare_transfer_type": "0",
                                     "nonconsecutive_transfers_allowed": "1"},
         "nonconsecutive_transfers_allowed"),
        ("fare_products_txt", {"fare_product_id": "f2", "amount": "2", "currency": "CNY",
                               "duration_amount": "1"}, "duration_amount"),
        ("fare_products_txt", {"fare_product_id": "f2", "amount": "2", "currency": "CNY",
                               "duration_start": "0"}, "duration_start"),
        ("fare_products_txt", {"fare_product_id": "f2", "amount": "2", "currency": "CNY",
                               "duration_unit": "3"}, "duration_unit"),
        ("fare_products_txt", {"fare_product_id": "f2", "amount": "2", "currency": "CNY",
                               "duration_type": "1"}, "duration_type"),
        ("fare_products_txt", {"fare_product_id": "f2", "amount": "2", "currency": "CNY",
                               "fare_product_behavior": "1"}, "fare_product_behavior"),
        ("fare_media_txt", {"fare_media_id": "c", "fare_media_type": "2",
                            "fare_media_behavior": "1"}, "fare_media_behavior"),
        ("fare_leg_rules_txt", {"fare_product_id": "f2", "contains_area_id": "z"}, "contains_area_id"),
        ("fare_leg_rules_txt", {"fare_product_id": "f2", "from_area_set_id": "s"}, "from_area_set_id"),
        ("fare_leg_rules_txt", {"fare_product_id": "f2", "contains_area_set_id": "s"},
         "contains_area_set_id"),
    ],
)
def test_unsupported_draft_columns(tmp_path, key, row, column):
    """Non-empty cells of Fares-draft columns the spec did not adopt are reported."""
    file = key[: -len("_txt")] + ".txt"
    problems = problems_of(tmp_path, feed(**{key: [row]}))
    assert_problem(problems, file, 2, column, "unsupported")
    assert len(problems) == 1, problems


def test_many_problems_in_many_files_are_reported_at_once(tmp_path):
    """Problems in different files all come back in one FeedError, sorted by file and line."""
    files = feed(
        agency_txt=[{"agency_id": "metro", "agency_name": "M", "agency_timezone": "Nowhere/City"}],
        stops_txt=[{"stop_id": "A"}, {"stop_id": "A"}],
        fare_products_txt=[{"fare_product_id": "f2", "amount": "2.001", "currency": "CNY"}],
        fare_leg_rules_txt=[{"network_id": "tram", "fare_product_id": "f2"}],
        fare_transfer_rules_txt=[{"fare_transfer_type": "0"}],
    )
    with pytest.raises(FeedError) as info:
        load_feed(write_dir(tmp_path / "feed", files))
    error = info.value
    assert isinstance(error, LedgerError) and isinstance(error, ValueError)
    assert [(p.file, p.line, p.column) for p in error.problems] == [
        ("agency.txt", 2, "agency_timezone"),
        ("stops.txt", 3, "stop_id"),
        ("fare_products.txt", 2, "amount"),
        ("fare_leg_rules.txt", 2, "network_id"),
        ("fare_transfer_rules.txt", 2, "transfer_count"),
    ]
    text = str(error)
    assert "has 5 problems" in text
    assert "fare_leg_rules.txt:2: column network_id: unknown network_id 'tram'" in text


def test_feed_error_message_lists_first_50_then_counts_the_rest():
    """str(FeedError) shows 50 problems and '… and N more'."""
    error = FeedError([Problem("stops.txt", line, "stop_id", "bad") for line in range(2, 62)])
    text = str(error)
    assert "stops.txt:51: column stop_id: bad" in text
    assert "stops.txt:52:" not in text
    assert text.endswith("… and 10 more")
    assert str(Problem("agency.txt", 0, None, "required file is missing")) == (
        "agency.txt:0: required file is missing"
    )


def test_error_classes():
    """ConfigError is a FeedError; UnknownFareError is a LedgerError and a LookupError."""
    assert issubclass(ConfigError, FeedError)
    assert issubclass(UnknownFareError, LedgerError) and issubclass(UnknownFareError, LookupError)


# -- fares.toml ---------------------------------------------------------------------------

CONFIG = b'''
fare_media_id = "card"
journey_break_s = 3600
day_start_s = 14400
metered_network_ids = ["taxi"]

[rider_categories]
0 = "adult"
1 = "student"

[operators]
metro = 9002
bus = 9003

[negative_balance]
bus1 = "1.00"

[[caps]]
period = "day"
amount = "12.00"

[[caps]]
period = "week"
amount = "50.5"
rider_category_ids = ["adult"]
network_ids = ["bus", "metro"]

[[tiers]]
network_ids = ["metro"]
from_amount = "100.00"
percent_off = 20
until_amount = "150"

[[tiers]]
network_ids = ["metro"]
rider_category_ids = ["adult"]
from_amount = "150.00"
percent_off = 50

[[entry_exit]]
network_id = "metro"
max_fare = "9.00"
incomplete_timeout_s = 14400
incomplete_charge = "9.00"
same_station_charge = "2.00"
'''


def test_config_happy_path(tmp_path):
    """Every key of fares.toml loads, money in minor units, from bytes and from a path."""
    config = load_config(CONFIG)
    assert config.fare_media_id == "card"
    assert (config.journey_break_s, config.day_start_s) == (3600, 14400)
    assert config.metered_network_ids == ("taxi",)
    assert config.rider_categories == {0: "adult", 1: "student"}
    assert config.operators == {"metro": 9002, "bus": 9003}
    assert config.negative_balance_minor == {"bus1": 100}
    assert config.caps == (Cap("day", 1200, None, None), Cap("week", 5050, ("adult",), ("bus", "metro")))
    assert config.tiers == (Tier(("metro",), 10000, 20, None, 15000), Tier(("metro",), 15000, 50, ("adult",), None))
    assert config.entry_exit == (EntryExit("metro", 900, 14400, 900, 200),)
    path = tmp_path / "fares.toml"
    path.write_bytes(CONFIG)
    assert load_config(path) == config
    assert load_config(str(path)) == config


def test_config_defaults_and_currency():
    """Optional keys default; money follows the currency given (JPY has no minor unit)."""
    config = load_config(b'[rider_categories]\n[operators]\n[negative_balance]\np = "5"\n', currency="JPY")
    assert config.journey_break_s == 5400 and config.day_start_s == 0
    assert config.fare_media_id is None and config.metered_network_ids == ()
    assert config.caps == () and config.tiers == () and config.entry_exit == ()
    assert config.negative_balance_minor == {"p": 5}
    default = FareConfig.default()
    assert default.rider_categories == {} and default.operators == {} and default.journey_break_s == 5400


def config_problems(text: str) -> list[Problem]:
    """Load `text` as fares.toml (with the required tables prepended if absent), expect ConfigError."""
    with pytest.raises(ConfigError) as info:
        load_config(text.encode())
    for problem in info.value.problems:
        assert problem.file == "fares.toml"
    return info.value.problems


def assert_config_problem(problems, column, text):
    """Assert some problem at line 0 has this key path and message text."""
    assert_problem(problems, "fares.toml", 0, column, text)


REQUIRED = '[rider_categories]\n0 = "adult"\n[operators]\nmetro = 1\n'


def test_config_unknown_keys_are_problems():
    """Unknown keys at the top level and inside [[caps]], [[tiers]], [[entry_exit]]."""
    problems = config_problems(
        'colour = "red"\n' + REQUIRED
        + '[[caps]]\nperiod = "day"\namount = "1"\nwhen = 1\n'
        + '[[tiers]]\nnetwork_ids = ["m"]\nfrom_amount = "0"\npercent_off = 5\nextra = 1\n'
        + '[[entry_exit]]\nnetwork_id = "m"\nmax_fare = "1"\nincomplete_timeout_s = 1\n'
        + 'incomplete_charge = "1"\nbogus = 2\n'
    )
    assert_config_problem(problems, "colour", "unknown key")
    assert_config_problem(problems, "caps[0].when", "unknown key")
    assert_config_problem(problems, "tiers[0].extra", "unknown key")
    assert_config_problem(problems, "entry_exit[0].bogus", "unknown key")
    assert len(problems) == 4


def test_config_required_tables_and_keys():
    """[rider_categories] and [operators] are required, and so are the keys of each entry."""
    problems = config_problems('[[caps]]\n[[tiers]]\n[[entry_exit]]\n')
    for column in (
        "rider_categories", "operators", "caps[0].period", "caps[0].amount", "tiers[0].network_ids",
        "tiers[0].from_amount", "tiers[0].percent_off", "entry_exit[0].network_id",
        "entry_exit[0].max_fare", "entry_exit[0].incomplete_timeout_s",
        "entry_exit[0].incomplete_charge",
    ):
        assert_config_problem(problems, column, "missing")


def test_config_money_must_be_exact_decimal_strings():
    """Money as a TOML float or int, over-precise or malformed strings are refused."""
    problems = config_problems(
        REQUIRED + '[negative_balance]\na = 1.0\nb = 1\nc = "0.001"\nd = "-1.00"\ne = "x"\n'
    )
    assert_config_problem(problems, "negative_balance.a", "not a TOML float")
    assert_config_problem(problems, "negative_balance.b", "not a TOML int")
    assert_config_problem(problems, "negative_balance.c", "more decimals than CNY allows")
    assert_config_problem(problems, "negative_balance.d", "out of range (expected >= 0)")
    assert_config_problem(problems, "negative_balance.e", "not a decimal")


def test_config_ranges_and_types():
    """Integers in range (booleans are not integers), card codes 0..65535, operators > 0."""
    problems = config_problems(
        'journey_break_s = 0\nday_start_s = 86400\nfare_media_id = 3\n'
        'metered_network_ids = "taxi"\n'
        '[rider_categories]\n70000 = "adult"\nx = "adult"\n2 = ""\n'
        '[operators]\nmetro = 0\nbus = true\ntram = "9"\n'
    )
    assert_config_problem(problems, "journey_break_s", "out of range")
    assert_config_problem(problems, "day_start_s", "out of range (expected 0..86399)")
    assert_config_problem(problems, "fare_media_id", "non-empty string")
    assert_config_problem(problems, "metered_network_ids", "list of non-empty strings")
    assert_config_problem(problems, "rider_categories.70000", "0..65535")
    assert_config_problem(problems, "rider_categories.x", "0..65535")
    assert_config_problem(problems, "rider_categories.2", "rider_category_id")
    assert_config_problem(problems, "operators.metro", "out of range")
    assert_config_problem(problems, "operators.bus", "must be an integer")
    assert_config_problem(problems, "operators.tram", "must be an integer")


def test_config_caps_tiers_entry_exit_values():
    """Cap periods and amounts, id lists, tier bounds, entry_exit charges against max_fare."""
    problems = config_problems(
        REQUIRED
        + '[[caps]]\nperiod = "year"\namount = "0"\nnetwork_ids = []\n'
        + '[[caps]]\nperiod = "day"\namount = "1"\nrider_category_ids = ["a", "a"]\n'
        + '[[tiers]]\nnetwork_ids = ["m"]\nfrom_amount = "10"\npercent_off = 101\nuntil_amount = "10"\n'
        + '[[entry_exit]]\nnetwork_id = "m"\nmax_fare = "5"\nincomplete_timeout_s = 0\n'
        + 'incomplete_charge = "6"\nsame_station_charge = "5.01"\n'
        + '[[entry_exit]]\nnetwork_id = "m"\nmax_fare = "0"\nincomplete_timeout_s = 1\n'
        + 'incomplete_charge = "0"\n'
    )
    assert_config_problem(problems, "caps[0].period", "'year' is not one of")
    assert_config_problem(problems, "caps[0].amount", "out of range (expected > 0)")
    assert_config_problem(problems, "caps[0].network_ids", "must not be empty")
    assert_config_problem(problems, "caps[1].rider_category_ids", "duplicate ids 'a'")
    assert_config_problem(problems, "tiers[0].percent_off", "out of range (expected 1..100)")
    assert_config_problem(problems, "tiers[0].until_amount", "> from_amount")
    assert_config_problem(problems, "entry_exit[0].incomplete_timeout_s", "out of range")
    assert_config_problem(problems, "entry_exit[0].incomplete_charge", "0..max_fare")
    assert_config_problem(problems, "entry_exit[0].same_station_charge", "0..max_fare")
    assert_config_problem(problems, "entry_exit[1].network_id", "already has an entry_exit (entry_exit[0])")
    assert_config_problem(problems, "entry_exit[1].max_fare", "> 0")


def test_config_structure_problems():
    """A table where an array of tables belongs, a value where a table belongs, metered +
    entry_exit on one network."""
    problems = config_problems(
        'metered_network_ids = ["m"]\nrider_categories = 3\n[operators]\n'
        '[caps]\nperiod = "day"\n'
        '[[entry_exit]]\nnetwork_id = "m"\nmax_fare = "5"\nincomplete_timeout_s = 9\n'
        'incomplete_charge = "5"\n'
    )
    assert_config_problem(problems, "rider_categories", "must be a table")
    assert_config_problem(problems, "caps", "array of tables")
    assert_config_problem(problems, "entry_exit[0].network_id", "also in metered_network_ids")


def test_config_toml_syntax_error_has_its_line():
    """A TOML syntax error is one problem at the line tomllib names."""
    problems = config_problems('[rider_categories]\n0 = "adult"\nbroken = \n')
    assert len(problems) == 1 and problems[0].line == 3 and "not valid TOML" in problems[0].message


def test_config_unreadable_path_is_a_config_error(tmp_path):
    """A path that cannot be read raises ConfigError, not OSError."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_check_config_against_feed(tmp_path):
    """References to unknown categories, agencies, networks, products, media, and agencies
    with routes but no operator, are reported; a matching config has none."""
    loaded = load_feed(write_dir(tmp_path / "feed", feed(**FULL)))
    good = load_config(
        b'fare_media_id = "card"\n[rider_categories]\n0 = "adult"\n1 = "student"\n'
        b'[operators]\nmetro = 1\nbus = 2\n[negative_balance]\nbus1 = "1"\n'
        b'[[caps]]\nperiod = "month"\namount = "100"\nnetwork_ids = ["bus"]\nrider_category_ids = ["adult"]\n'
        b'[[entry_exit]]\nnetwork_id = "metro"\nmax_fare = "9"\nincomplete_timeout_s = 60\n'
        b'incomplete_charge = "9"\n'
    )
    assert check_config_against_feed(good, loaded) == []
    bad = load_config(
        b'fare_media_id = "paper"\nmetered_network_ids = ["taxi"]\n'
        b'[rider_categories]\n0 = "adult"\n5 = "alien"\n'
        b'[operators]\nmetro = 1\nferry = 3\n[negative_balance]\nnope = "1"\n'
        b'[[caps]]\nperiod = "day"\namount = "1"\nnetwork_ids = ["air"]\nrider_category_ids = ["kid"]\n'
        b'[[tiers]]\nnetwork_ids = ["sea"]\nfrom_amount = "1"\npercent_off = 5\n'
        b'rider_category_ids = ["elder"]\n'
        b'[[entry_exit]]\nnetwork_id = "tram"\nmax_fare = "9"\nincomplete_timeout_s = 60\n'
        b'incomplete_charge = "9"\n'
    )
    problems = check_config_against_feed(bad, loaded)
    assert_config_problem(problems, "fare_media_id", "unknown fare_media_id 'paper'")
    assert_config_problem(problems, "metered_network_ids", "unknown network_id 'taxi'")
    assert_config_problem(problems, "rider_categories.5", "unknown rider_category_id 'alien'")
    assert_config_problem(problems, "operators.ferry", "unknown agency_id 'ferry'")
    assert_config_problem(problems, "operators", "agency 'bus' has routes but no operator")
    assert_config_problem(problems, "negative_balance.nope", "unknown fare_product_id 'nope'")
    assert_config_problem(problems, "caps[0].network_ids", "unknown network_id 'air'")
    assert_config_problem(problems, "caps[0].rider_category_ids", "unknown rider_category_id 'kid'")
    assert_config_problem(problems, "tiers[0].network_ids", "unknown network_id 'sea'")
    assert_config_problem(problems, "tiers[0].rider_category_ids", "unknown rider_category_id 'elder'")
    assert_config_problem(problems, "entry_exit[0].network_id", "unknown network_id 'tram'")
    assert len(problems) == 11


def test_config_beside_the_feed(tmp_path):
    """fares.toml is found in the feed directory or at the root of the (folder in the) zip."""
    files = feed()
    files["fares.toml"] = CONFIG
    directory = write_dir(tmp_path / "feed", files)
    assert load_config_beside(directory).operators == {"metro": 9002, "bus": 9003}
    archive = write_zip(tmp_path / "feed.zip", files, folder="top/")
    assert load_config_beside(archive).caps[0].amount_minor == 1200
    assert load_config_beside(write_dir(tmp_path / "bare", feed())) is None
