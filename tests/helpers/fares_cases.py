"""A corpus of GTFS Fares v2 cases with known totals, as data.

Each case is a small feed (``files``: file name -> CSV text) and journeys priced on
it. A journey is a list of legs ``(route_id, from_stop_id, to_stop_id, departure,
arrival)`` (ISO 8601 datetimes with an offset), an optional rider category and fare
medium, and either ``expected_amount`` (int, minor units of the case's currency)
or ``expected_error = "unknown"`` (no fare leg rule matches some leg).

Where the cases come from (``source`` on each case, and comments):

* the GTFS reference, google/transit ``gtfs/spec/en/reference.md`` (fare sections);
* the worked examples on gtfs.org, MobilityData/gtfs.org
  ``docs/en/documentation/schedule/examples/fares-v2.md`` and
  ``docs/en/documentation/schedule/examples/fares/*.md`` (Translink, ORCA, SEPTA);
* MOTIS' fare tests, motis-project/nigiri ``test/loader/gtfs/fares_test.cc``;
* OpenTripPlanner's Fares v2 tests, opentripplanner/OpenTripPlanner
  ``application/src/ext-test/java/org/opentripplanner/ext/fares/service/gtfs/v2/*.java``.

No code was copied: each case re-expresses a published feed or test as a feed
fragment and journeys. Where the source states a total ("a trip departing at 7:30 AM
pays 5.00 USD") that total is the expected value. Where the source states the
products chosen but no total (OTP returns per-leg offers, MOTIS prints products)
the total is derived from them by the adopted spec's cost processing, and the
journey says so in ``note``.

A journey with ``conflict`` keeps the value its source publishes although the
semantics this package pins (see ``cardledger.engine.spec.fares``) give another; the
test marks it xfail with the reason. ``note`` records an assumption or a fix to
the published data.
"""

from __future__ import annotations

import textwrap

GTFS_REF = "google/transit gtfs/spec/en/reference.md"
GTFSORG = "MobilityData/gtfs.org docs/en/documentation/schedule/examples/"
NIGIRI = "motis-project/nigiri test/loader/gtfs/fares_test.cc"
OTP = (
    "opentripplanner/OpenTripPlanner "
    "application/src/ext-test/java/org/opentripplanner/ext/fares/service/gtfs/v2/"
)


# --------------------------------------------------------------------------- helpers


def _t(text: str) -> str:
    """A CSV file's text from an indented block."""
    return textwrap.dedent(text).strip() + "\n"


def _at(day: str, offset: str):
    """``_at("2024-03-12", "-04:00")("08:30")`` -> ``"2024-03-12T08:30:00-04:00"``."""

    def f(hms: str) -> str:
        if hms.count(":") == 1:
            hms += ":00"
        return f"{day}T{hms}{offset}"

    return f


def _agency(tz: str) -> str:
    return _t(
        f"""
        agency_id,agency_name,agency_url,agency_timezone
        ag,Test Agency,https://example.org,{tz}
        """
    )


def _stops(*specs) -> str:
    """Stops: ``"ID"``, or ``("ID", {"location_type": "1", "parent_station": ..,
    "stop_timezone": .., "stop_name": ..})``."""
    lines = ["stop_id,stop_name,stop_lat,stop_lon,location_type,parent_station,stop_timezone"]
    for i, spec in enumerate(specs):
        sid, extra = (spec, {}) if isinstance(spec, str) else spec
        lat = f"{40 + i / 100:.4f}"
        lines.append(
            ",".join(
                [
                    sid,
                    extra.get("stop_name", sid),
                    lat,
                    "-73.9000",
                    extra.get("location_type", ""),
                    extra.get("parent_station", ""),
                    extra.get("stop_timezone", ""),
                ]
            )
        )
    return "\n".join(lines) + "\n"


def _network_files(tz: str, routes: dict[str, str | None], stops: tuple) -> dict[str, str]:
    """agency.txt, routes.txt, stops.txt and, if some route has a network,
    networks.txt + route_networks.txt. ``routes``: route_id -> network_id or None."""
    files = {
        "agency.txt": _agency(tz),
        "routes.txt": "route_id,agency_id,route_short_name,route_type\n"
        + "".join(f"{r},ag,{r},3\n" for r in routes),
        "stops.txt": _stops(*stops),
    }
    nets = sorted({n for n in routes.values() if n})
    if nets:
        files["networks.txt"] = "network_id,network_name\n" + "".join(f"{n},{n}\n" for n in nets)
        files["route_networks.txt"] = "network_id,route_id\n" + "".join(
            f"{n},{r}\n" for r, n in routes.items() if n
        )
    return files


def J(name, legs, amount=None, *, error=None, rider=None, media=None, note=None, conflict=None):
    """One journey."""
    j = {
        "name": name,
        "legs": [tuple(leg) for leg in legs],
        "rider_category_id": rider,
        "fare_media_id": media,
    }
    if error is not None:
        j["expected_error"] = error
    else:
        j["expected_amount"] = amount
    if note:
        j["note"] = note
    if conflict:
        j["conflict"] = conflict
    return j


CASES: list[dict] = []


def case(name, source, currency, files, journeys, note=None):
    c = {"name": name, "source": source, "currency": currency, "files": files, "journeys": journeys}
    if note:
        c["note"] = note
    CASES.append(c)


# ---------------------------------------------------------- gtfs.org: MTA Maryland
# Source: MobilityData/gtfs.org docs/en/documentation/schedule/examples/fares-v2.md
# ("Define a transit fare", "Create rules for single leg journeys", "Create rules for
# transfers"): one-way 2.00, day pass 4.60, 31-day 77.00, 7-day 22.00 all on one leg
# group; unlimited free transfers within 90 minutes (dep->dep, A+AB, count -1).
# Published: "you can see the $2.00 USD core_local_oneway_fare appear in trip planners".

_mta = _at("2024-03-12", "-04:00")
case(
    "gtfsorg_mta_maryland_transfers",
    GTFSORG + "fares-v2.md (Maryland Transit Administration)",
    "USD",
    {
        **_network_files(
            "America/New_York",
            {"bus_1": "core", "lightrail": "core", "subway": "core"},
            ("s1", "s2", "s3", "s4", "s5"),
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            core_local_oneway_fare,One Way Full Fare,2.00,USD
            core_local_1_day_fare,1-Day Pass - Core Service,4.60,USD
            core_local_31_day_fare,31-Day Pass - Core Service,77.00,USD
            core_local_7_day_fare,7-Day Pass - Core Service,22.00,USD
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id
            core_local_one_way_trip,core,core_local_oneway_fare
            core_local_one_way_trip,core,core_local_1_day_fare
            core_local_one_way_trip,core,core_local_31_day_fare
            core_local_one_way_trip,core,core_local_7_day_fare
            """
        ),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,duration_limit,duration_limit_type,fare_transfer_type,transfer_count
            core_local_one_way_trip,core_local_one_way_trip,5400,1,0,-1
            """
        ),
    },
    [
        J("single_leg_cheapest_product", [("bus_1", "s1", "s2", _mta("08:00"), _mta("08:20"))], 200),
        J(
            "three_legs_within_90_min",
            [
                ("bus_1", "s1", "s2", _mta("08:00"), _mta("08:20")),
                ("lightrail", "s2", "s3", _mta("08:30"), _mta("08:50")),
                ("subway", "s3", "s4", _mta("09:15"), _mta("09:40")),
            ],
            200,
        ),
        J(
            "third_leg_departs_at_the_limit",
            [
                ("bus_1", "s1", "s2", _mta("08:00"), _mta("08:20")),
                ("lightrail", "s2", "s3", _mta("08:40"), _mta("09:00")),
                ("subway", "s3", "s4", _mta("09:30:00"), _mta("09:50")),
            ],
            200,
            note="dep->dep exactly 5400 s: at the limit is within it",
        ),
        J(
            "third_leg_departs_one_second_late",
            [
                ("bus_1", "s1", "s2", _mta("08:00"), _mta("08:20")),
                ("lightrail", "s2", "s3", _mta("08:40"), _mta("09:00")),
                ("subway", "s3", "s4", _mta("09:30:01"), _mta("09:50")),
            ],
            400,
        ),
        J(
            "four_legs_second_window_from_third_leg",
            [
                ("bus_1", "s1", "s2", _mta("08:00"), _mta("08:20")),
                ("lightrail", "s2", "s3", _mta("08:30"), _mta("08:50")),
                ("subway", "s3", "s4", _mta("09:40"), _mta("09:55")),
                ("bus_1", "s4", "s5", _mta("10:00"), _mta("10:20")),
            ],
            400,
            note="leg 3 is past 90 min of leg 1 and starts a new sub-journey; leg 4 transfers from it",
        ),
    ],
)


# ------------------------------------------------------------------ gtfs.org: BART
# Source: MobilityData/gtfs.org .../fares-v2.md "Describe service locations in the same
# fare zone": ASHB->GLEN 4.75, ASHB->OAKL 9.45. The published second rule reads
# from_area_id "ASKB" (a typo: no such area); it is ASHB here.

case(
    "gtfsorg_bart_areas",
    GTFSORG + "fares-v2.md (BART)",
    "USD",
    {
        **_network_files(
            "America/Los_Angeles",
            {"bart": None},
            (
                ("ASHB", {"stop_name": "Ashby"}),
                ("GLEN", {"stop_name": "Glen Park"}),
                ("OAKL", {"stop_name": "Oakland Airport"}),
            ),
        ),
        "areas.txt": _t(
            """
            area_id,area_name
            ASHB,
            GLEN,
            OAKL,
            """
        ),
        "stop_areas.txt": _t(
            """
            area_id,stop_id
            ASHB,ASHB
            GLEN,GLEN
            OAKL,OAKL
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,from_area_id,to_area_id,fare_product_id
            BA,ASHB,GLEN,BA:matrix:ASHB-GLEN
            BA,ASHB,OAKL,BA:matrix:ASHB-OAKL
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            BA:matrix:ASHB-GLEN,generated,4.75,USD
            BA:matrix:ASHB-OAKL,generated,9.45,USD
            """
        ),
    },
    [
        J(
            "ashby_to_glen_park",
            [("bart", "ASHB", "GLEN", "2024-03-12T08:00:00-07:00", "2024-03-12T08:25:00-07:00")],
            475,
        ),
        J(
            "ashby_to_oakland",
            [("bart", "ASHB", "OAKL", "2024-03-12T08:00:00-07:00", "2024-03-12T08:40:00-07:00")],
            945,
            note="published rule has from_area_id ASKB (typo), fixed to ASHB",
        ),
        J(
            "reverse_direction_has_no_rule",
            [("bart", "GLEN", "ASHB", "2024-03-12T08:00:00-07:00", "2024-03-12T08:25:00-07:00")],
            error="unknown",
            note="rules are directional: no rule from GLEN, and no empty from_area_id rule",
        ),
    ],
)


# -------------------------------------------------------------- gtfs.org: SF Muni
# Source: .../fares-v2.md "Define price differences based on fare media": Muni single
# local fare 3.00 cash, 2.50 Clipper. The leg rule (one rule, all fields empty) is the
# minimal rule of gtfs.org getting-started/features/fares.md.

_muni = ("J", "s1", "s2", "2024-03-12T08:00:00-07:00", "2024-03-12T08:20:00-07:00")
case(
    "gtfsorg_muni_fare_media",
    GTFSORG + "fares-v2.md (SF Muni fare media)",
    "USD",
    {
        **_network_files("America/Los_Angeles", {"J": None}, ("s1", "s2")),
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            clipper,Clipper,2
            munimobile,SFMTA MuniMobile,4
            cash,Cash,0
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency,fare_media_id
            SF:local:single,Muni single local fare,3,USD,cash
            SF:local:single,Muni single local fare,2.5,USD,clipper
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,fare_product_id
            muni,SF:local:single
            """
        ),
    },
    [
        J("cash", [_muni], 300, media="cash"),
        J("clipper", [_muni], 250, media="clipper"),
        J("no_medium_cheapest", [_muni], 250, note="no medium given: the cheapest medium"),
        J("medium_without_product_row", [_muni], error="unknown", media="munimobile"),
    ],
)


# ------------------------------------------------------- gtfs.org: Clean Air Express
# Source: .../fares-v2.md "Describe a contactless fare media option": single-ride 6 USD
# with tap_to_ride, 7 USD with an empty fare_media_id ("fare media unknown"; the page
# calls it the cash option). The cash medium row in fare_media.txt is added here.

_cae = ("cae", "s1", "s2", "2024-03-12T08:00:00-07:00", "2024-03-12T09:00:00-07:00")
case(
    "gtfsorg_clean_air_express_media",
    GTFSORG + "fares-v2.md (Clean Air Express)",
    "USD",
    {
        **_network_files("America/Los_Angeles", {"cae": None}, ("s1", "s2")),
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            tap_to_ride,Tap to Ride,3
            cash,Cash,0
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,fare_media_id,amount,currency
            single-ride,Single Ride,tap_to_ride,6,USD
            single-ride,Single Ride,,7,USD
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,fare_product_id
            single,single-ride
            """
        ),
    },
    [
        J("tap_to_ride", [_cae], 600, media="tap_to_ride"),
        J("no_medium_cheapest", [_cae], 600),
        J(
            "other_medium_uses_empty_medium_row",
            [_cae],
            700,
            media="cash",
            note="a row with an empty fare_media_id serves any medium",
        ),
    ],
)


# ---------------------------------------------------------- gtfs.org: WMATA timeframes
# Source: .../fares-v2.md "Define price differences based on time and day of trip"
# (fictional WMATA): peak 5, off-peak 3, weekend 2, late night 2; published: "a trip
# that departs at 7:30 AM would have to pay 5.00 USD (Peak fare) while another user
# departing at 11:30 AM would only have to pay a 3.00 USD fare". Times like 5:00:00
# (one-digit hour) are as published. Other journeys probe the timeframe edges
# (start inclusive, end exclusive, 24:00:00), local date and the 2022 DST change
# in America/New_York (agency timezone) with event times given in UTC.

_wd = _at("2022-07-11", "-04:00")  # Monday
case(
    "gtfsorg_wmata_timeframes",
    GTFSORG + "fares-v2.md (WMATA time-variable fares)",
    "USD",
    {
        **_network_files("America/New_York", {"RD": "1", "BUS": None}, ("A01", "A15", "B01")),
        "calendar.txt": _t(
            """
            service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date
            weekday_service,1,1,1,1,1,0,0,20220708,20221231
            saturday_service,0,0,0,0,0,1,0,20220708,20221231
            sunday_service,0,0,0,0,0,0,1,20220708,20221231
            """
        ),
        "timeframes.txt": _t(
            """
            timeframe_group_id,start_time,end_time,service_id
            weekday_peak,5:00:00,9:30:00,weekday_service
            weekday_offpeak,9:30:00,15:00:00,weekday_service
            weekday_peak,15:00:00,19:00:00,weekday_service
            weekday_offpeak,19:00:00,21:30:00,weekday_service
            weekday_late_night,21:30:00,24:00:00,weekday_service
            weekday_late_night,00:00:00,5:00:00,weekday_service
            weekend,,,saturday_service
            weekend,,,sunday_service
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            peak_fare,Peak fare,5,USD
            regular_fare,Off-peak fare,3,USD
            weekend_fare,Weekend Metrorail one-way fare,2,USD
            late_night_fare,Late Night flat fare (Mon - Fri after 9:30pm),2,USD
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            network_id,fare_product_id,from_timeframe_group_id,to_timeframe_group_id
            1,weekend_fare,weekend,
            1,late_night_fare,weekday_late_night,
            1,peak_fare,weekday_peak,
            1,regular_fare,weekday_offpeak,
            """
        ),
    },
    [
        J("published_peak_0730", [("RD", "A01", "A15", _wd("07:30"), _wd("08:00"))], 500),
        J("published_offpeak_1130", [("RD", "A01", "A15", _wd("11:30"), _wd("12:00"))], 300),
        J("peak_end_is_exclusive", [("RD", "A01", "A15", _wd("09:30:00"), _wd("10:00"))], 300),
        J("peak_last_second", [("RD", "A01", "A15", _wd("09:29:59"), _wd("10:00"))], 500),
        J("late_night_before_0500", [("RD", "A01", "A15", _wd("04:59:59"), _wd("05:30"))], 200),
        J("peak_start_is_inclusive", [("RD", "A01", "A15", _wd("05:00:00"), _wd("05:30"))], 500),
        J(
            "late_night_until_2400",
            [("RD", "A01", "A15", _wd("23:59:59"), "2022-07-12T00:30:00-04:00")],
            200,
        ),
        J(
            "saturday_weekend",
            [("RD", "A01", "A15", "2022-07-09T10:00:00-04:00", "2022-07-09T10:30:00-04:00")],
            200,
        ),
        J(
            "local_date_not_utc_date",
            [("RD", "A01", "A15", "2022-07-09T00:30:00+00:00", "2022-07-09T01:00:00+00:00")],
            300,
            note="Friday 20:30 EDT (weekday off-peak); in UTC it is already Saturday",
        ),
        J(
            "dst_friday_still_edt",
            [("RD", "A01", "A15", "2022-11-04T13:45:00+00:00", "2022-11-04T14:15:00+00:00")],
            300,
            note="09:45 EDT: off-peak (EST would make it 08:45, peak)",
        ),
        J(
            "dst_monday_est",
            [("RD", "A01", "A15", "2022-11-07T13:45:00+00:00", "2022-11-07T14:15:00+00:00")],
            500,
            note="08:45 EST after the change back on 2022-11-06: peak",
        ),
        J(
            "outside_the_calendar",
            [("RD", "A01", "A15", "2023-01-02T08:00:00-05:00", "2023-01-02T08:30:00-05:00")],
            error="unknown",
            note="no service_id covers 2023-01-02, so no timeframe matches and every rule has one",
        ),
        J(
            "route_outside_network_1",
            [("BUS", "A01", "B01", _wd("08:00"), _wd("08:30"))],
            error="unknown",
        ),
    ],
)


# ---------------------------------------------------------- gtfs.org: Metro-North
# Source: .../fares-v2.md "Define time-variable fares along with zone based fares"
# (ITO World dataset): published "a user boarding train #869 ... scheduled to depart
# from Grand Central (zone mnr_1) at 6:45 pm would have to pay ... 20.00 USD" and
# "train #883 ... scheduled to depart Grand Central at 9:04 pm ... 15.00 USD".
# The fare_media 'paper' row is added (the page uses it without listing it).

_mnr = _at("2023-06-14", "-04:00")  # Wednesday
_mnr_sat = _at("2023-06-17", "-04:00")
case(
    "gtfsorg_metro_north_time_and_zones",
    GTFSORG + "fares-v2.md (MTA Metro-North)",
    "USD",
    {
        "agency.txt": _agency("America/New_York"),
        "routes.txt": _t(
            """
            route_id,agency_id,route_short_name,route_long_name,route_type
            669,ag,,Hudson,2
            """
        ),
        "stops.txt": _t(
            """
            stop_id,stop_name,stop_lat,stop_lon
            ITO1669,Peekskill,41.285103,-73.930916
            ITO1777,Beacon,41.505814,-73.984474
            ITO1789,New Hamburg,41.58691,-73.947624
            ITO1804,Croton-Harmon,41.190002,-73.882393
            ITO1824,Cortlandt,41.246258,-73.921783
            ITO1856,Garrison,41.381126,-73.947334
            ITO1887,Harlem-125th Street,40.805256,-73.939148
            ITO1897,Cold Spring,41.415382,-73.958092
            ITO2096,Poughkeepsie,41.707058,-73.93792
            ITO2383,Grand Central,40.752823,-73.977196
            """
        ),
        "areas.txt": _t(
            """
            area_id,area_name
            mnr_1,
            mnr_HUD-5,
            mnr_HUD-6,
            mnr_HUD-7,
            mnr_HUD-8,
            mnr_HUD-9,
            """
        ),
        "stop_areas.txt": _t(
            """
            area_id,stop_id
            mnr_1,ITO1887
            mnr_1,ITO2383
            mnr_HUD-5,ITO1804
            mnr_HUD-6,ITO1669
            mnr_HUD-6,ITO1824
            mnr_HUD-7,ITO1856
            mnr_HUD-7,ITO1897
            mnr_HUD-8,ITO1777
            mnr_HUD-8,ITO1789
            mnr_HUD-9,ITO2096
            """
        ),
        "networks.txt": _t(
            """
            network_id,network_name
            mnr_hudson,MNR Hudson Line
            """
        ),
        "route_networks.txt": _t(
            """
            network_id,route_id
            mnr_hudson,669
            """
        ),
        "calendar.txt": _t(
            """
            service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date
            13,1,1,1,1,1,0,0,20230612,20231006
            3,1,1,1,1,1,0,0,20230609,20231006
            weekdays,1,1,1,1,1,0,0,20220101,20240101
            weekends,0,0,0,0,0,1,1,20220101,20240101
            anyday,1,1,1,1,1,1,1,20220101,20240101
            """
        ),
        "timeframes.txt": _t(
            """
            timeframe_group_id,start_time,end_time,service_id
            anytime,00:00:00,24:00:00,anyday
            weekdays,00:00:00,24:00:00,weekdays
            weekends,00:00:00,24:00:00,weekends
            mnr_ampeak,06:00:00,10:00:00,weekdays
            mnr_notampeak,00:00:00,06:00:00,weekdays
            mnr_notampeak,10:00:00,24:00:00,weekdays
            mnr_am2pmpeak,06:00:00,09:00:00,weekdays
            mnr_am2pmpeak,16:00:00,20:00:00,weekdays
            mnr_notam2pmpeak,00:00:00,06:00:00,weekdays
            mnr_notam2pmpeak,09:00:00,16:00:00,weekdays
            mnr_notam2pmpeak,20:00:00,24:00:00,weekdays
            """
        ),
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            paper,Paper ticket,1
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,fare_media_id,amount,currency
            mnr_1:HUD-7_adult_peak,Outbound Adult Peak Zonal Fare,paper,20.00,USD
            mnr_1:HUD-7_adult,Outbound Adult Off Peak Zonal Fare,paper,15.00,USD
            mnr_HUD-7:1_adult_peak,Inbound Adult Peak Zonal Fare,paper,20.00,USD
            mnr_HUD-7:1_adult,Inbound Adult Off Peak Zonal Fare,paper,15.00,USD
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            network_id,from_area_id,to_area_id,fare_product_id,from_timeframe_group_id,to_timeframe_group_id
            mnr_hudson,mnr_1,mnr_HUD-7,mnr_1:HUD-7_adult,mnr_notam2pmpeak,anytime
            mnr_hudson,mnr_1,mnr_HUD-7,mnr_1:HUD-7_adult,weekends,anytime
            mnr_hudson,mnr_1,mnr_HUD-7,mnr_1:HUD-7_adult_peak,mnr_am2pmpeak,anytime
            mnr_hudson,mnr_HUD-7,mnr_1,mnr_HUD-7:1_adult,weekdays,mnr_notampeak
            mnr_hudson,mnr_HUD-7,mnr_1,mnr_HUD-7:1_adult,weekends,anytime
            mnr_hudson,mnr_HUD-7,mnr_1,mnr_HUD-7:1_adult_peak,weekdays,mnr_ampeak
            """
        ),
    },
    [
        J(
            "published_train_869_peak",
            [("669", "ITO2383", "ITO1897", _mnr("18:45"), _mnr("19:56"))],
            2000,
        ),
        J(
            "published_train_883_offpeak",
            [("669", "ITO2383", "ITO1897", _mnr("21:04"), _mnr("22:12"))],
            1500,
        ),
        J(
            "outbound_at_2000_is_offpeak",
            [("669", "ITO2383", "ITO1897", _mnr("20:00:00"), _mnr("21:10"))],
            1500,
        ),
        J(
            "outbound_morning_peak",
            [("669", "ITO1887", "ITO1856", _mnr("07:00"), _mnr("08:05"))],
            2000,
        ),
        J(
            "outbound_midday_offpeak_other_stops",
            [("669", "ITO1887", "ITO1856", _mnr("12:00"), _mnr("13:05"))],
            1500,
        ),
        J(
            "outbound_saturday",
            [("669", "ITO2383", "ITO1897", _mnr_sat("18:45"), _mnr_sat("19:56"))],
            1500,
        ),
        J(
            "inbound_arrives_in_am_peak",
            [("669", "ITO1897", "ITO2383", _mnr("08:50"), _mnr("09:59:59"))],
            2000,
            note="to_timeframe_group_id: the arrival time decides",
        ),
        J(
            "inbound_arrives_at_1000",
            [("669", "ITO1897", "ITO2383", _mnr("08:51"), _mnr("10:00:00"))],
            1500,
        ),
        J(
            "zone_pair_without_rule",
            [("669", "ITO2383", "ITO1669", _mnr("12:00"), _mnr("12:55"))],
            error="unknown",
        ),
    ],
)


# ------------------------------------------------ gtfs.org: Translink route-based + media
# Source: MobilityData/gtfs.org docs/en/documentation/schedule/examples/fares/
# route-based-fares.md (bus_flat_fare 3.20 contactless, 3.20 cash, 2.60 Compass Card;
# network translink_bus; leg rule flat_fare_leg) and fare-media.md (the media).

_van = _at("2025-03-12", "-07:00")  # Wednesday, PDT
_bus = ("10232", "bus_a", "bus_b", _van("10:00"), _van("10:20"))
case(
    "gtfsorg_translink_route_based_media",
    GTFSORG + "fares/route-based-fares.md, fares/fare-media.md (Translink)",
    "CAD",
    {
        **_network_files(
            "America/Vancouver",
            {"10232": "translink_bus", "11201": "translink_bus"},
            ("bus_a", "bus_b"),
        ),
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            cash,Cash,0
            contactless,Contactless,3
            compass_card,Compass Card,2
            compass_ticket,Compass Ticket,2
            wallet,Mobile Wallet,3
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency,fare_media_id
            bus_flat_fare,Bus Flat Fare,3.20,CAD,contactless
            bus_flat_fare,Bus Flat Fare,3.20,CAD,cash
            bus_flat_fare,Bus Flat Fare,2.60,CAD,compass_card
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id
            flat_fare_leg,translink_bus,bus_flat_fare
            """
        ),
    },
    [
        J("compass_card", [_bus], 260, media="compass_card"),
        J("cash", [_bus], 320, media="cash"),
        J("contactless", [_bus], 320, media="contactless"),
        J("no_medium_cheapest", [_bus], 260),
        J("medium_without_product_row", [_bus], error="unknown", media="wallet"),
    ],
)


# ---------------------------------------------------- gtfs.org: Translink rider categories
# Source: .../fares/rider-categories.md: adult (default) 3.20, concession 2.15, both
# contactless.

case(
    "gtfsorg_translink_rider_categories",
    GTFSORG + "fares/rider-categories.md (Translink)",
    "CAD",
    {
        **_network_files("America/Vancouver", {"10232": "translink_bus"}, ("bus_a", "bus_b")),
        "rider_categories.txt": _t(
            """
            rider_category_id,rider_category_name,is_default_fare_category,eligibility_url
            adult,Adult,1,
            concession,Concession,,https://www.translink.ca/transit-fares/pricing-and-fare-zones#fare-pricing
            """
        ),
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            contactless,Contactless,3
            cash,Cash,0
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency,fare_media_id,rider_category_id
            bus_flat_fare,Bus Flat Fare,3.20,CAD,contactless,adult
            bus_flat_fare,Bus Flat Fare,2.15,CAD,contactless,concession
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id
            flat_fare_leg,translink_bus,bus_flat_fare
            """
        ),
    },
    [
        J("no_category_is_default_adult", [_bus], 320),
        J("adult", [_bus], 320, rider="adult"),
        J("concession", [_bus], 215, rider="concession"),
        J("concession_contactless", [_bus], 215, rider="concession", media="contactless"),
        J(
            "concession_cash_has_no_row",
            [_bus],
            error="unknown",
            rider="concession",
            media="cash",
        ),
    ],
)


# ------------------------------------- gtfs.org: Translink zones, time, rule_priority, transfers
# Sources: .../fares/zone-based-fares.md (areas ZN1-3 and sea_island, Sea Island stops
# in both ZN2 and sea_island, products), .../fares/time-based-fares.md (timeframes;
# the second, rule_priority-simplified fare_leg_rules.txt "full file"), and
# .../fares/fare-transfers.md (transfer products and rules, 5400 s dep->dep, A+AB).
# Published statements used as expected values: 1-zone 3.20, 2-zone 4.65, 3-zone 6.35;
# "for Sea Island to Zone 1, the cost is ... 9.65"; "Journeys that end in Sea Island
# charge the same amount as journeys ending in ZN2"; "Journeys that take place
# entirely within Sea Island are free"; evenings/weekends "All SkyTrain and Seabus
# fares become a one zone fare (CAD 3.20). Travel from Sea Island during the evening
# and weekends costs CAD 8.20"; bus-to-bus transfers within 90 min free; AddFare =
# the fare difference. Fixes to the published data: "1,45" -> 1.45; the transfer
# table's duplicated header "from_leg_group_id" -> to_leg_group_id; transfer_count -1
# only where from == to (the spec forbids it otherwise); ZN1_ZN3 costs 3_zone_fare
# (time-based page; the zone page says 2_zone_fare, contradicting "3-zone fare ...
# ZN1 to ZN3"); the elided row ZN1_ZN2 -> ZN1_ZN1 (free, "transfers within the same
# fare zone number ... are also free") is added.

_sat = _at("2025-03-15", "-07:00")  # Saturday
case(
    "gtfsorg_translink_zones_time_transfers",
    GTFSORG
    + "fares/zone-based-fares.md, fares/time-based-fares.md, fares/fare-transfers.md (Translink)",
    "CAD",
    {
        **_network_files(
            "America/Vancouver",
            {
                "10232": "translink_bus",
                "11201": "translink_bus",
                "13686": "skytrain_seabus",  # Canada Line
                "30052": "skytrain_seabus",  # SeaBus
                "expo": "skytrain_seabus",
            },
            (
                "bus_a",
                "bus_b",
                ("8039", {"stop_name": "Waterfront Station"}),
                ("comm_bway", {"stop_name": "Commercial-Broadway Station"}),
                ("8066", {"stop_name": "Edmonds Station"}),
                ("lonsdale", {"stop_name": "Lonsdale Quay"}),
                ("lake_city", {"stop_name": "Lake City Way Station"}),
                ("surrey", {"stop_name": "Surrey Central Station"}),
                ("99901", {"stop_name": "YVR-Airport Station"}),
                ("99902", {"stop_name": "Sea Island Centre Station"}),
                ("99903", {"stop_name": "Templeton Station"}),
            ),
        ),
        "areas.txt": _t(
            """
            area_id,area_name
            ZN1,Zone 1 - Vancouver
            ZN2,"Zone 2 - Burnaby, Richmond and North Vancouver"
            ZN3,Zone 3 - Surrey and Coquitlam
            sea_island,Sea Island
            """
        ),
        "stop_areas.txt": _t(
            """
            stop_id,area_id
            8039,ZN1
            comm_bway,ZN1
            8066,ZN2
            lonsdale,ZN2
            lake_city,ZN2
            surrey,ZN3
            99901,ZN2
            99902,ZN2
            99903,ZN2
            99901,sea_island
            99902,sea_island
            99903,sea_island
            """
        ),
        "calendar.txt": _t(
            """
            service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date
            weekday_service,1,1,1,1,1,0,0,20250101,20251231
            weekend_service,0,0,0,0,0,1,1,20250101,20251231
            """
        ),
        "timeframes.txt": _t(
            """
            timeframe_group_id,start_time,end_time,service_id
            weekday_daytime,03:00:00,18:30:00,weekday_service
            weekday_evening,18:30:00,24:00:00,weekday_service
            weekday_evening,00:00:00,03:00:00,weekday_service
            weekend,,,weekend_service
            """
        ),
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            contactless,Contactless,3
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency,fare_media_id
            bus_flat_fare,Bus Flat Fare,3.20,CAD,contactless
            1_zone_fare,1-Zone Fare,3.20,CAD,contactless
            2_zone_fare,2-Zone Fare,4.65,CAD,contactless
            3_zone_fare,3-Zone Fare,6.35,CAD,contactless
            sea_island_1_zone_fare,Sea Island travel + 1-zone Fare,8.20,CAD,contactless
            sea_island_2_zone_fare,Sea Island travel + 2-zone fare,9.65,CAD,contactless
            sea_island_sea_island_fare,Free fare inside Sea Island,0,CAD,contactless
            1_zone_to_2_zone_upgrade,1 zone to 2 zones upgrade,1.45,CAD,contactless
            2_zone_to_3_zone_upgrade,2 zones to 3 zones upgrade,1.70,CAD,contactless
            1_zone_to_3_zone_upgrade,1 zone to 3 zones upgrade,3.15,CAD,contactless
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id,from_area_id,to_area_id,from_timeframe_group_id,to_timeframe_group_id,rule_priority
            flat_fare_leg,translink_bus,bus_flat_fare,,,,,
            ZN1_ZN1,skytrain_seabus,1_zone_fare,ZN1,ZN1,,,
            ZN2_ZN2,skytrain_seabus,1_zone_fare,ZN2,ZN2,,,
            ZN3_ZN3,skytrain_seabus,1_zone_fare,ZN3,ZN3,,,
            ZN1_ZN2,skytrain_seabus,2_zone_fare,ZN1,ZN2,,,
            ZN2_ZN3,skytrain_seabus,2_zone_fare,ZN2,ZN3,,,
            ZN1_ZN2,skytrain_seabus,2_zone_fare,ZN2,ZN1,,,
            ZN2_ZN3,skytrain_seabus,2_zone_fare,ZN3,ZN2,,,
            ZN1_ZN3,skytrain_seabus,3_zone_fare,ZN1,ZN3,,,
            ZN1_ZN3,skytrain_seabus,3_zone_fare,ZN3,ZN1,,,
            sea_island_ZN1,skytrain_seabus,sea_island_2_zone_fare,sea_island,ZN1,,,1
            sea_island_ZN2,skytrain_seabus,sea_island_1_zone_fare,sea_island,ZN2,,,1
            sea_island_ZN3,skytrain_seabus,sea_island_2_zone_fare,sea_island,ZN3,,,1
            sea_island_sea_island,skytrain_seabus,sea_island_sea_island_fare,sea_island,sea_island,,,3
            flat_fare_leg,skytrain_seabus,1_zone_fare,,,weekday_evening,,1
            flat_fare_leg,skytrain_seabus,1_zone_fare,,,weekend,,1
            flat_fare_sea_island_leg,skytrain_seabus,sea_island_1_zone_fare,sea_island,,weekday_evening,,2
            flat_fare_sea_island_leg,skytrain_seabus,sea_island_1_zone_fare,sea_island,,weekend,,2
            """
        ),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id
            flat_fare_leg,flat_fare_leg,-1,5400,1,0,
            ZN1_ZN1,flat_fare_leg,,5400,1,0,
            flat_fare_leg,ZN1_ZN1,,5400,1,0,
            ZN1_ZN2,flat_fare_leg,,5400,1,0,
            flat_fare_leg,ZN1_ZN2,,5400,1,0,1_zone_to_2_zone_upgrade
            ZN2_ZN2,flat_fare_leg,,5400,1,0,
            flat_fare_leg,ZN2_ZN2,,5400,1,0,
            ZN1_ZN1,ZN1_ZN2,,5400,1,0,1_zone_to_2_zone_upgrade
            ZN1_ZN1,ZN1_ZN3,,5400,1,0,1_zone_to_3_zone_upgrade
            ZN1_ZN2,ZN2_ZN2,,5400,1,0,
            ZN1_ZN2,ZN1_ZN2,-1,5400,1,0,
            ZN1_ZN2,ZN2_ZN3,,5400,1,0,2_zone_to_3_zone_upgrade
            ZN1_ZN2,ZN1_ZN1,,5400,1,0,
            """
        ),
    },
    [
        J("bus_flat_fare", [_bus], 320),
        J("zn1_zn1_daytime", [("expo", "8039", "comm_bway", _van("10:00"), _van("10:10"))], 320),
        J("zn1_zn2_daytime", [("expo", "8039", "8066", _van("10:00"), _van("10:25"))], 465),
        J("zn1_zn3_daytime", [("expo", "8039", "surrey", _van("10:00"), _van("10:40"))], 635),
        J(
            "zn1_zn3_daytime_last_second",
            [("expo", "8039", "surrey", _van("18:29:59"), _van("19:10"))],
            635,
        ),
        J(
            "zn1_zn3_evening_first_second",
            [("expo", "8039", "surrey", _van("18:30:00"), _van("19:10"))],
            320,
            note="weekday_evening flat_fare_leg (priority 1) beats ZN1_ZN3 (priority 0)",
        ),
        J(
            "zn1_zn3_weekday_after_midnight",
            [("expo", "8039", "surrey", _van("02:30"), _van("03:10"))],
            320,
        ),
        J(
            "zn1_zn3_weekday_0300_is_daytime",
            [("expo", "8039", "surrey", _van("03:00:00"), _van("03:40"))],
            635,
        ),
        J(
            "zn1_zn3_weekend",
            [("expo", "8039", "surrey", _sat("10:00"), _sat("10:40"))],
            320,
        ),
        J(
            "sea_island_to_zn1_daytime",
            [("13686", "99901", "8039", _van("10:00"), _van("10:26"))],
            965,
            note="published: 2-zone fare + 5 CAD = 9.65; priority 1 beats ZN2->ZN1",
        ),
        J(
            "sea_island_to_zn2_daytime",
            [("13686", "99901", "8066", _van("10:00"), _van("10:30"))],
            820,
        ),
        J(
            "within_sea_island_daytime",
            [("13686", "99901", "99903", _van("10:00"), _van("10:05"))],
            0,
        ),
        J(
            "within_sea_island_evening",
            [("13686", "99901", "99903", _van("20:00"), _van("20:05"))],
            0,
            note="priority 3 beats the evening Sea Island rule (priority 2)",
        ),
        J(
            "sea_island_to_zn1_evening",
            [("13686", "99901", "8039", _van("20:00"), _van("20:26"))],
            820,
        ),
        J(
            "sea_island_to_zn1_weekend",
            [("13686", "99901", "8039", _sat("10:00"), _sat("10:26"))],
            820,
        ),
        J(
            "zn2_to_sea_island_like_zn2",
            [("13686", "8066", "99901", _van("10:00"), _van("10:30"))],
            320,
        ),
        J(
            "zn1_to_sea_island_like_zn2",
            [("13686", "8039", "99901", _van("10:00"), _van("10:26"))],
            465,
        ),
        # transfers
        J(
            "bus_then_skytrain_2_zones_addfare",
            [_bus, ("expo", "8039", "8066", _van("10:30"), _van("10:55"))],
            465,
            note="3.20 + AddFare 1.45",
        ),
        J(
            "bus_bus_within_90_min",
            [_bus, ("11201", "bus_b", "bus_a", _van("11:29"), _van("11:50"))],
            320,
        ),
        J(
            "bus_bus_at_90_min",
            [_bus, ("11201", "bus_b", "bus_a", _van("11:30:00"), _van("11:50"))],
            320,
        ),
        J(
            "bus_bus_past_90_min",
            [_bus, ("11201", "bus_b", "bus_a", _van("11:30:01"), _van("11:50"))],
            640,
        ),
        J(
            "zn1_then_zn1_zn3_addfare",
            [
                ("expo", "8039", "comm_bway", _van("10:00"), _van("10:10")),
                ("expo", "comm_bway", "surrey", _van("10:15"), _van("10:45")),
            ],
            635,
            note="3.20 + AddFare 3.15",
        ),
        J(
            "published_three_legs_consecutive",
            [
                ("30052", "lonsdale", "8039", _van("10:00"), _van("10:15")),
                ("expo", "8039", "comm_bway", _van("10:25"), _van("10:40")),
                ("expo", "comm_bway", "lake_city", _van("10:50"), _van("11:20")),
            ],
            610,
            note=(
                "fare-transfers.md's 80-minute journey priced with consecutive transfers only "
                "(the adopted spec): 4.65 + 0 + 1.45 = 6.10. The page prints 4.65 + 0 + 1.65 = "
                "6.30, contradicting its own 1.45 product, and its 'correct' 4.65 needs the "
                "non-adopted nonconsecutive_transfers_allowed"
            ),
        ),
        J(
            "zn2_zn1_then_bus_free",
            [
                ("expo", "8066", "8039", _van("10:00"), _van("10:25")),
                ("10232", "bus_a", "bus_b", _van("10:35"), _van("10:50")),
            ],
            465,
        ),
        J(
            "evening_skytrain_then_bus_free",
            [
                ("expo", "8039", "8066", _van("19:00"), _van("19:25")),
                ("10232", "bus_a", "bus_b", _van("19:30"), _van("19:50")),
            ],
            320,
            note="evening SkyTrain legs are flat_fare_leg; flat -> flat is free",
        ),
    ],
)


# --------------------------------------------------------- gtfs.org: ORCA (consecutive)
# Source: .../fares/complex-cases.md "Nonconsecutive transfers" (ORCA): KCM 2.75,
# Link 3.00, Community Transit 2.50, ST Express 3.25; inter-agency A+AB transfers
# within 3600 s (dep->dep) costing the fare difference. The adopted spec has only
# consecutive transfers; the page prints those totals as the "first combination":
# Example 1 KCM -> CT -> Link = 2.75 + 0 + 0.50 = 3.25, Example 2 KCM -> Link -> CT ->
# ST Express = 2.75 + 0.25 + 0 + 0.75 = 3.75 (its lower totals need the experimental
# nonconsecutive_transfers_allowed). ST Express transfer rows are implied by the page
# ("the relevant leg, fare product, transfers ... are introduced") and written here.

_sea = _at("2024-05-15", "-07:00")
case(
    "gtfsorg_orca_consecutive_transfers",
    GTFSORG + "fares/complex-cases.md (ORCA, Puget Sound)",
    "USD",
    {
        **_network_files(
            "America/Los_Angeles",
            {
                "kcm_7": "king_county_metro_routes",
                "link_1": "1_line_2_line",
                "ct_201": "community_transit_routes",
                "st_545": "st_express_routes",
            },
            ("s1", "s2", "s3", "s4", "s5"),
        ),
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            orca_card,ORCA,2
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency,fare_media_id
            kcm_adult_fare,King County Metro (KCM) adult fare,2.75,USD,orca_card
            light_rail_adult_fare,Light rail adult fare,3.00,USD,orca_card
            community_adult_fare,Community Transit adult fare,2.50,USD,orca_card
            st_express_adult_fare,ST Express adult fare,3.25,USD,orca_card
            kcm_to_light_rail,Transfer from KCM to Light Rail,0.25,USD,orca_card
            light_rail_to_kcm,Transfer from Light Rail to KCM,0,USD,orca_card
            community_to_light_rail,Transfer from Community Transit to Light Rail,0.50,USD,orca_card
            light_rail_to_community,Transfer from Light Rail to Community Transit,0,USD,orca_card
            kcm_to_community,Transfer from KCM to Community Transit,0,USD,orca_card
            community_to_kcm,Transfer from Community Transit to KCM,0.25,USD,orca_card
            sound_express_to_kcm,,0,USD,orca_card
            kcm_to_sound_express,,0.5,USD,orca_card
            sound_express_to_light_rail,,0,USD,orca_card
            light_rail_to_sound_express,,0.25,USD,orca_card
            sound_express_to_community,,0,USD,orca_card
            community_to_sound_express,,0.75,USD,orca_card
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,fare_product_id,network_id
            kcm_leg,kcm_adult_fare,king_county_metro_routes
            light_rail_leg,light_rail_adult_fare,1_line_2_line
            community_leg,community_adult_fare,community_transit_routes
            st_express_leg,st_express_adult_fare,st_express_routes
            """
        ),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id
            kcm_leg,light_rail_leg,3600,1,0,kcm_to_light_rail
            light_rail_leg,kcm_leg,3600,1,0,light_rail_to_kcm
            community_leg,light_rail_leg,3600,1,0,community_to_light_rail
            light_rail_leg,community_leg,3600,1,0,light_rail_to_community
            kcm_leg,community_leg,3600,1,0,kcm_to_community
            community_leg,kcm_leg,3600,1,0,community_to_kcm
            st_express_leg,kcm_leg,3600,1,0,sound_express_to_kcm
            kcm_leg,st_express_leg,3600,1,0,kcm_to_sound_express
            st_express_leg,light_rail_leg,3600,1,0,sound_express_to_light_rail
            light_rail_leg,st_express_leg,3600,1,0,light_rail_to_sound_express
            st_express_leg,community_leg,3600,1,0,sound_express_to_community
            community_leg,st_express_leg,3600,1,0,community_to_sound_express
            """
        ),
    },
    [
        J("kcm_single", [("kcm_7", "s1", "s2", _sea("08:00"), _sea("08:20"))], 275),
        J(
            "kcm_to_link",
            [
                ("kcm_7", "s1", "s2", _sea("08:00"), _sea("08:20")),
                ("link_1", "s2", "s3", _sea("08:25"), _sea("08:45")),
            ],
            300,
        ),
        J(
            "link_to_kcm",
            [
                ("link_1", "s2", "s3", _sea("08:00"), _sea("08:20")),
                ("kcm_7", "s3", "s4", _sea("08:25"), _sea("08:45")),
            ],
            300,
        ),
        J(
            "published_example_1_consecutive",
            [
                ("kcm_7", "s1", "s2", _sea("08:00"), _sea("08:20")),
                ("ct_201", "s2", "s3", _sea("08:25"), _sea("08:45")),
                ("link_1", "s3", "s4", _sea("08:50"), _sea("09:10")),
            ],
            325,
            note="page: 3.25 leg by leg; 3.00 only with non-adopted nonconsecutive transfers",
        ),
        J(
            "published_example_2_consecutive",
            [
                ("kcm_7", "s1", "s2", _sea("08:00"), _sea("08:10")),
                ("link_1", "s2", "s3", _sea("08:15"), _sea("08:25")),
                ("ct_201", "s3", "s4", _sea("08:30"), _sea("08:40")),
                ("st_545", "s4", "s5", _sea("08:45"), _sea("09:10")),
            ],
            375,
            note="page's first combination; 3.25 only with non-adopted nonconsecutive transfers",
        ),
        J(
            "kcm_to_link_at_the_hour",
            [
                ("kcm_7", "s1", "s2", _sea("08:00"), _sea("08:20")),
                ("link_1", "s2", "s3", _sea("09:00:00"), _sea("09:20")),
            ],
            300,
        ),
        J(
            "kcm_to_link_past_the_hour",
            [
                ("kcm_7", "s1", "s2", _sea("08:00"), _sea("08:20")),
                ("link_1", "s2", "s3", _sea("09:00:01"), _sea("09:20")),
            ],
            575,
        ),
    ],
)


# ------------------------------------------------------- gtfs.org: SEPTA join rules
# Source: .../fares/complex-cases.md "Joining fare legs" (SEPTA): free interchange
# between metro legs at City Hall (32141) / 15th St (32175) and at Drexel Station at
# 30th St (32176 -> 21532), as fare_leg_join_rules with stops. Product from the same
# page's "Fare media transfer mechanism" (bus_metro_key_contactless 2.00 on SEPTA Key
# and contactless). The page's network ids metro / metro_bus are unified to metro.

_phl = _at("2024-03-12", "-04:00")
case(
    "gtfsorg_septa_join_rules_with_stops",
    GTFSORG + "fares/complex-cases.md (SEPTA)",
    "USD",
    {
        **_network_files(
            "America/New_York",
            {"BSL": "metro", "MFL": "metro", "T": "metro"},
            (
                "bsl_a",
                ("32141", {"stop_name": "City Hall - BSL"}),
                ("32175", {"stop_name": "15th St - MFL"}),
                ("32176", {"stop_name": "Drexel Station at 30th St"}),
                ("21532", {"stop_name": "Drexel Station at 30th St"}),
                "mfl_b",
                "trolley_z",
                "bsl_other",
                "mfl_other",
            ),
        ),
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            septa_key,SEPTA Key,2
            contactless,cEMV,3
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency,fare_media_id
            bus_metro_key_contactless,Bus or Metro,2.00,USD,septa_key
            bus_metro_key_contactless,Bus or Metro,2.00,USD,contactless
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id
            metro_bus_leg,metro,bus_metro_key_contactless
            """
        ),
        "fare_leg_join_rules.txt": _t(
            """
            from_network_id,to_network_id,from_stop_id,to_stop_id
            metro,metro,32141,32175
            metro,metro,32175,32141
            metro,metro,32176,21532
            """
        ),
    },
    [
        J(
            "bsl_to_mfl_at_city_hall",
            [
                ("BSL", "bsl_a", "32141", _phl("08:00"), _phl("08:10")),
                ("MFL", "32175", "mfl_b", _phl("08:15"), _phl("08:30")),
            ],
            200,
        ),
        J(
            "mfl_to_bsl_at_city_hall",
            [
                ("MFL", "mfl_b", "32175", _phl("08:00"), _phl("08:10")),
                ("BSL", "32141", "bsl_a", _phl("08:15"), _phl("08:30")),
            ],
            200,
        ),
        J(
            "interchange_not_listed",
            [
                ("BSL", "bsl_a", "bsl_other", _phl("08:00"), _phl("08:10")),
                ("MFL", "mfl_other", "mfl_b", _phl("08:15"), _phl("08:30")),
            ],
            400,
        ),
        J(
            "three_legs_all_joined",
            [
                ("BSL", "bsl_a", "32141", _phl("08:00"), _phl("08:10")),
                ("MFL", "32175", "32176", _phl("08:15"), _phl("08:25")),
                ("T", "21532", "trolley_z", _phl("08:30"), _phl("08:45")),
            ],
            200,
        ),
        J(
            "drexel_pair_is_one_way",
            [
                ("T", "trolley_z", "21532", _phl("08:00"), _phl("08:15")),
                ("MFL", "32176", "32175", _phl("08:20"), _phl("08:30")),
            ],
            400,
            note="only 32176 -> 21532 is listed",
        ),
        J(
            "joined_on_septa_key",
            [
                ("BSL", "bsl_a", "32141", _phl("08:00"), _phl("08:10")),
                ("MFL", "32175", "mfl_b", _phl("08:15"), _phl("08:30")),
            ],
            200,
            media="septa_key",
        ),
    ],
)


# ------------------------------------------------------------------ MOTIS: simple_fares
# Source: motis-project/nigiri test/loader/gtfs/fares_test.cc, TEST(fares,
# simple_fares): kBasicTimetable + kBasicFares + kFareTimetable1. Lines 1, 2 (pink)
# and 3 (blue) are joined (join rules pink->pink and pink->blue without stops) into
# one effective leg A->D (area 1 -> area 2, "full" products); the airport leg D->E is
# priced 10.00 and the core->air A+AB transfer adds the 6.00 extension. MOTIS prints
# the products; the totals follow by A+AB: off-peak 3.50 + 6.00, peak 7.00 + 6.00,
# from C 2.50 (blue, priority 1) + 6.00. The published transfer rule has
# transfer_count 1 on a from != to rule, which the spec forbids; it is left empty here.
# Times are the test's (UTC 00:00 on 2022-03-30 is 02:00 CEST, off-peak).

_ber = _at("2022-03-30", "+02:00")  # Wednesday
_nig_stops = ("A", "B", "C", "D", "E")
_nigiri_basic = {
    "agency.txt": _t(
        """
        agency_id,agency_name,agency_url,agency_timezone
        DB,Deutsche Bahn,https://deutschebahn.com,Europe/Berlin
        """
    ),
    "stops.txt": _t(
        """
        stop_id,stop_name,stop_desc,stop_lat,stop_lon,stop_url,location_type,parent_station
        A,A,,0.0,1.0,,,
        B,B,,0.02,1.03,,,
        C,C,,0.04,1.05,,,
        D,D,,0.06,1.07,,,
        E,E,,0.08,1.09,,,
        """
    ),
    "routes.txt": _t(
        """
        route_id,agency_id,route_short_name,route_long_name,route_desc,route_type
        line1,DB,Line 1,,,3
        line2,DB,Line 2,,,3
        line3,DB,Line 3,,,3
        air,DB,Line 4,,,3
        """
    ),
    "calendar.txt": _t(
        """
        service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date
        weekday,1,1,1,1,1,0,0,20220101,20221231
        weekend,0,0,0,0,0,1,1,20220101,20221231
        everyday,1,1,1,1,1,1,1,20220101,20221231
        """
    ),
}


def _nigiri_products() -> str:
    rows = ["fare_product_id,fare_product_name,fare_media_id,amount,currency,rider_category_id"]
    prices = {  # (time, line) -> (paper, app, day, week) for adult, then reduced
        ("offpeak", "pink"): ((3.00, 2.50, 4.00, 10.00), (2.00, 1.50, 2.50, 6.00)),
        ("offpeak", "blue"): ((3.00, 2.50, 4.00, 10.00), (2.00, 1.50, 2.50, 6.00)),
        ("offpeak", "full"): ((4.00, 3.50, 5.00, 12.00), (3.00, 2.50, 3.50, 8.00)),
        ("peak", "pink"): ((6.00, 5.00, 8.00, 20.00), (4.00, 3.50, 5.00, 12.00)),
        ("peak", "blue"): ((6.00, 5.00, 8.00, 20.00), (4.00, 3.50, 5.00, 12.00)),
        ("peak", "full"): ((8.00, 7.00, 10.00, 24.00), (6.00, 5.50, 7.00, 16.00)),
    }
    for (tf, line), (adult, reduced) in prices.items():
        for prefix, cat, amounts in (("", "adult", adult), ("reduced-", "reduced", reduced)):
            for kind, media, amount in zip(
                ("oneway-paper-card", "oneway-app", "day-app", "week-app"),
                ("paper-card", "app", "app", "app"),
                amounts,
            ):
                rows.append(f"{prefix}{tf}-{line}-{kind},{line} {kind},{media},{amount:.2f},EUR,{cat}")
    rows.append("airport-card,Airport Card,paper-card,10.00,EUR,adult")
    rows.append("peak-full-airport-ext,Full Airport Extension Card,paper-card,6.00,EUR,adult")
    return "\n".join(rows) + "\n"


def _nigiri_leg_rules() -> str:
    rows = [
        "leg_group_id,network_id,from_area_id,to_area_id,from_timeframe_group_id,"
        "fare_product_id,rule_priority"
    ]
    for prefix in ("", "reduced-"):
        for line, fa, ta, prio in (("pink", 1, 1, "1"), ("blue", 2, 2, "1"), ("full", 1, 2, "")):
            for tf in ("offpeak", "peak"):
                for kind in ("oneway-paper-card", "oneway-app", "day-app", "week-app"):
                    rows.append(f"core,,{fa},{ta},{tf},{prefix}{tf}-{line}-{kind},{prio}")
    rows.append("air,air,2,3,,airport-card,")
    return "\n".join(rows) + "\n"


_nig_a_e = [
    ("line1", "A", "B", _ber("02:00"), _ber("02:30")),
    ("line2", "B", "C", _ber("02:35"), _ber("03:00")),
    ("line3", "C", "D", _ber("03:05"), _ber("04:00")),
    ("air", "D", "E", _ber("04:05"), _ber("04:30")),
]
_nig_peak = [
    ("line1", "A", "B", _ber("08:00"), _ber("08:30")),
    ("line2", "B", "C", _ber("08:35"), _ber("09:00")),
    ("line3", "C", "D", _ber("09:05"), _ber("10:00")),
    ("air", "D", "E", _ber("10:05"), _ber("10:30")),
]
case(
    "nigiri_simple_fares_join_and_transfer",
    NIGIRI + " TEST(fares, simple_fares)",
    "EUR",
    {
        **_nigiri_basic,
        "timeframes.txt": _t(
            """
            timeframe_group_id,start_time,end_time,service_id
            offpeak,00:00:00,05:00:00,weekday
            peak,5:00:00,9:30:00,weekday
            offpeak,9:30:00,15:00:00,weekday
            peak,15:00:00,19:00:00,weekday
            offpeak,19:00:00,24:00:00,weekday
            offpeak,,,weekend
            """
        ),
        "rider_categories.txt": _t(
            """
            rider_category_id,rider_category_name,is_default_fare_category,eligibility_url
            adult,Adult,1,
            reduced,Students and seniors,0,
            """
        ),
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            paper-card,Paper Card,1
            app,App,4
            """
        ),
        "fare_products.txt": _nigiri_products(),
        "areas.txt": _t(
            """
            area_id,area_name
            1,Area 1
            2,Area 2
            3,Area Air
            """
        ),
        "stop_areas.txt": _t(
            """
            area_id,stop_id
            1,A
            1,B
            1,C
            2,C
            2,D
            3,E
            """
        ),
        "networks.txt": _t(
            """
            network_id,network_name
            blue,Blue Network
            pink,Pink Network
            air,Airport Shuttle
            """
        ),
        "route_networks.txt": _t(
            """
            network_id,route_id
            pink,line1
            pink,line2
            blue,line3
            air,air
            """
        ),
        "fare_leg_join_rules.txt": _t(
            """
            from_network_id,to_network_id,from_stop_id,to_stop_id
            pink,pink,,
            pink,blue,,
            """
        ),
        "fare_leg_rules.txt": _nigiri_leg_rules(),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id
            core,air,,10800,1,0,peak-full-airport-ext
            """
        ),
    },
    [
        J(
            "offpeak_a_to_e",
            _nig_a_e,
            950,
            note="MOTIS: joined A->D 'Full App' 3.50 (cheapest adult) + A+AB 6.00",
        ),
        J("peak_a_to_e", _nig_peak, 1300, note="MOTIS: 'Peak Full App' 7.00 + 6.00"),
        J(
            "offpeak_c_to_e",
            [
                ("line3", "C", "D", _ber("02:05"), _ber("03:00")),
                ("air", "D", "E", _ber("03:05"), _ber("03:30")),
            ],
            850,
            note="MOTIS: 'Blue App' (priority 1) 2.50 + 6.00",
        ),
        J(
            "offpeak_paper_card",
            _nig_a_e,
            1000,
            media="paper-card",
            note="Full Paper Card 4.00 + 6.00",
        ),
        J(
            "offpeak_app_has_no_airport_product",
            _nig_a_e,
            error="unknown",
            media="app",
            note="airport-card exists on paper-card only",
        ),
        J(
            "offpeak_reduced_has_no_airport_product",
            _nig_a_e,
            error="unknown",
            rider="reduced",
            note="airport-card is adult-only",
        ),
        J(
            "offpeak_reduced_a_to_d_joined",
            _nig_a_e[:3],
            250,
            rider="reduced",
            note="MOTIS lists 'Full App' 2.50 for students and seniors",
        ),
        J(
            "offpeak_pink_pink_join_only",
            _nig_a_e[:2],
            250,
            note="A->C: area 1 -> area 1 (C is in 1 and 2): pink (priority 1) App 2.50",
        ),
        J(
            "airport_leg_at_transfer_limit",
            _nig_a_e[:3] + [("air", "D", "E", _ber("05:00:00"), _ber("05:25"))],
            950,
            note="dep->dep 10800 s exactly",
        ),
        J(
            "airport_leg_past_transfer_limit",
            _nig_a_e[:3] + [("air", "D", "E", _ber("05:00:01"), _ber("05:25"))],
            1350,
            note="no transfer: 3.50 + 10.00",
        ),
    ],
)


# --------------------------------------------------- MOTIS: network_id in routes.txt
# Source: NIGIRI TEST(fares, network_id_in_routes_txt): networks only via
# routes.network_id; "Each leg gets exactly the product of its own network": Red Line
# 2.40, bus 1.70, no transfer rules.

_mbta_files = {
    "agency.txt": _t(
        """
        agency_id,agency_name,agency_url,agency_timezone
        MBTA,MBTA,https://mbta.com,America/New_York
        """
    ),
    "stops.txt": _t(
        """
        stop_id,stop_name,stop_desc,stop_lat,stop_lon,stop_url,location_type,parent_station
        A,A,,0.0,1.0,,,
        B,B,,0.02,1.03,,,
        C,C,,0.04,1.05,,,
        """
    ),
    "routes.txt": _t(
        """
        route_id,agency_id,route_short_name,route_long_name,route_desc,route_type,network_id
        Red,MBTA,Red,Red Line,,1,rapid_transit
        1,MBTA,1,Bus 1,,3,local_bus
        """
    ),
}
_bos = _at("2022-03-30", "-04:00")
_red_bus = [
    ("Red", "A", "B", _bos("10:00"), _bos("10:30")),
    ("1", "B", "C", _bos("10:35"), _bos("11:00")),
]
case(
    "nigiri_network_id_in_routes_txt",
    NIGIRI + " TEST(fares, network_id_in_routes_txt)",
    "USD",
    {
        **_mbta_files,
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            cash,Cash,0
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,fare_media_id,amount,currency
            prod_rapid_transit,Rapid Transit Ticket,cash,2.40,USD
            prod_local_bus,Local Bus Ticket,cash,1.70,USD
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id
            leg_rapid_transit,rapid_transit,prod_rapid_transit
            leg_local_bus,local_bus,prod_local_bus
            """
        ),
    },
    [
        J("red_then_bus", _red_bus, 410),
        J("bus_only", _red_bus[1:], 170),
    ],
)


# ---------------------------------------------- MOTIS: transfer only for card products
# Source: NIGIRI TEST(fares, transfer_thins_out_uncovered_products): cash and card
# products on separate leg groups; a free (A+AB, no product) transfer only card ->
# card. MOTIS chooses the card products with the transfer (2.90 + 0) over the cheaper
# per-leg cash products (2.40 + 1.70 = 4.10).

case(
    "nigiri_transfer_only_for_card",
    NIGIRI + " TEST(fares, transfer_thins_out_uncovered_products)",
    "USD",
    {
        **_mbta_files,
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            cash,Cash,0
            card,CharlieCard,2
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,fare_media_id,amount,currency
            prod_rapid_transit_cash,Subway Cash,cash,2.40,USD
            prod_rapid_transit_card,Subway Card,card,2.90,USD
            prod_local_bus_cash,Bus Cash,cash,1.70,USD
            prod_local_bus_card,Bus Card,card,1.90,USD
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id
            leg_rapid_transit_cash,rapid_transit,prod_rapid_transit_cash
            leg_rapid_transit_card,rapid_transit,prod_rapid_transit_card
            leg_local_bus_cash,local_bus,prod_local_bus_cash
            leg_local_bus_card,local_bus,prod_local_bus_card
            """
        ),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id
            leg_rapid_transit_card,leg_local_bus_card,,7200,1,0,
            """
        ),
    },
    [
        J(
            "no_medium_card_with_transfer",
            _red_bus,
            290,
            note="MOTIS' main fare: Subway Card 2.90 + free transfer to Bus Card; each leg's "
            "cheapest rule alone (cash: 2.40, 1.70) would be 4.10: the journey search finds 2.90",
        ),
        J("card", _red_bus, 290, media="card"),
        J("cash", _red_bus, 410, media="cash"),
    ],
)


# ----------------------------------------------------------- MOTIS: Naolib (Nantes)
# Source: NIGIRI TEST(fares, cheapest_transfer_or_separate_legs), "Modeled after Naolib
# (Nantes), see motis issue 911: free legs on weekends (rule priority) must not be
# replaced by a transfer with a paid product. On weekdays, the cheapest applicable
# transfer product (1h, not 24h) is used and legs outside of its duration limit are
# charged separately." Transfers are type 2 (AB) with duration_limit_type 0.

_nao = _at("2022-03-30", "+02:00")  # Wednesday
_nao_sat = _at("2022-04-02", "+02:00")  # Saturday


def _nao_legs(at):
    return [
        ("line1", "A", "B", at("12:00"), at("12:30")),
        ("line2", "B", "C", at("12:35"), at("13:00")),
        ("line3", "C", "D", at("13:05"), at("14:00")),
    ]


case(
    "nigiri_naolib_cheapest_transfer",
    NIGIRI + " TEST(fares, cheapest_transfer_or_separate_legs)",
    "EUR",
    {
        **_nigiri_basic,
        "networks.txt": _t(
            """
            network_id,network_name
            1,Naolib
            """
        ),
        "route_networks.txt": _t(
            """
            network_id,route_id
            1,line1
            1,line2
            1,line3
            1,air
            """
        ),
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            ticket,Ticket,1
            none,No ticket needed,0
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency,fare_media_id
            1h,1h,1.80,EUR,ticket
            24h,24h,6.50,EUR,ticket
            gratuit,Gratuit,0.00,EUR,none
            """
        ),
        "timeframes.txt": _t(
            """
            timeframe_group_id,start_time,end_time,service_id
            weekend-free,0:00:00,24:00:00,weekend
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,from_timeframe_group_id,to_timeframe_group_id,fare_product_id,rule_priority
            general_network,1,,,1h,
            general_network,1,,,24h,
            general_network,1,weekend-free,weekend-free,gratuit,1
            """
        ),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id
            general_network,general_network,-1,86400,0,2,24h
            general_network,general_network,-1,3600,0,2,1h
            """
        ),
    },
    [
        J("saturday_single_leg_free", _nao_legs(_nao_sat)[:1], 0),
        J(
            "wednesday_two_legs_1h_ticket",
            _nao_legs(_nao)[:2],
            180,
            note=(
                "dep(leg 1) -> arr(leg 2) is exactly 3600 s: both rules apply, the cheaper "
                "transfer product (1h) is chosen; AB replaces A: 1.80"
            ),
        ),
        J(
            "saturday_three_free_legs",
            _nao_legs(_nao_sat),
            0,
            note="MOTIS: three free legs, no transfer product",
            conflict=(
                "pinned semantics apply a matching transfer rule even when the legs are "
                "cheaper separately: the free legs are in general_network, so the 1h rule "
                "(then the 24h rule for leg 3, S + BC) applies, giving 8.30"
            ),
        ),
        J(
            "wednesday_three_legs",
            _nao_legs(_nao),
            360,
            note="MOTIS: 1h transfer ticket for legs 1-2 (1.80), leg 3 separately 1.80",
            conflict=(
                "pinned semantics: legs 1-2 by the 1h rule (1.80); for leg 3 the 1h limit "
                "is past but the 24h rule matches the same (from, to) run, type 2 from a "
                "leg reached by a transfer: S + BC = 1.80 + 6.50 = 8.30"
            ),
        ),
    ],
)


# ------------------------------------------------------- OTP: transfer_count
# Sources: OTP TransferCountTest.java (transfer_count 1: legs 1-2 use the transfer,
# leg 3 needs a new fare) and TransferCountWithTimeLimitTest.java (transfer_count 1
# with a 2 h dep->arr limit). OTP returns per-leg offers; totals are derived with
# explicit prices (leg 5.00 EUR) and fare_transfer_type 0. Networks n2..n4 extend the
# same shape to the spec's "minimum transfer_count >= current count" and -1.

_ams = _at("2024-03-12", "+01:00")


def _chain(route, times):
    stops = ["x0", "x1", "x2", "x3", "x4", "x5"]
    return [
        (route, stops[i], stops[i + 1], _ams(dep), _ams(arr)) for i, (dep, arr) in enumerate(times)
    ]


_five = [("10:00", "10:10"), ("10:20", "10:30"), ("10:30", "10:40"), ("10:45", "10:50"), ("10:55", "11:00")]
case(
    "otp_transfer_count",
    OTP + "TransferCountTest.java, TransferCountWithTimeLimitTest.java",
    "EUR",
    {
        **_network_files(
            "Europe/Amsterdam",
            {"r1": "n1", "r2": "n2", "r3": "n3", "r4": "n4", "r5": "n5"},
            ("x0", "x1", "x2", "x3", "x4", "x5"),
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            leg,Single,5.00,EUR
            t1,Transfer 1,1.00,EUR
            t2,Transfer 2,2.00,EUR
            t_half,Transfer,0.50,EUR
            t_060,Transfer,0.60,EUR
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id
            g1,n1,leg
            g2,n2,leg
            g3,n3,leg
            g4,n4,leg
            g5,n5,leg
            """
        ),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id
            g1,g1,1,,,0,t1
            g2,g2,1,,,0,t1
            g2,g2,2,,,0,t2
            g3,g3,-1,,,0,t_half
            g4,g4,1,,,0,
            g4,g4,-1,,,0,t_060
            g5,g5,1,7200,0,0,
            """
        ),
    },
    [
        J("count1_two_legs", _chain("r1", _five[:2]), 600),
        J(
            "count1_three_legs",
            _chain("r1", _five[:3]),
            1100,
            note="OTP: leg 3 is offered only a new fare",
        ),
        J("count1_four_legs", _chain("r1", _five[:4]), 1200, note="legs 3-4 form a new sub-journey"),
        J("count1_and_2_three_legs", _chain("r2", _five[:3]), 800, note="5 + 1 (count 1) + 2 (count 2)"),
        J("count1_and_2_four_legs", _chain("r2", _five[:4]), 1300, note="count 3 matches no rule"),
        J("count1_and_2_five_legs", _chain("r2", _five), 1400),
        J("unlimited_four_legs", _chain("r3", _five[:4]), 650),
        J(
            "count1_then_unlimited",
            _chain("r4", _five[:4]),
            620,
            note="-1 means no limit, so it is the largest count: 5 + 0 + 0.60 + 0.60",
        ),
        J(
            "count1_with_time_limit_three_legs",
            _chain("r5", [("10:00", "10:10"), ("10:20", "10:30"), ("10:40", "10:50")]),
            1000,
            note="OTP TransferCountWithTimeLimitTest.twoTransfers",
        ),
        J(
            "count1_with_time_limit_four_legs",
            _chain(
                "r5", [("10:00", "10:10"), ("10:20", "10:30"), ("10:40", "10:50"), ("10:50", "10:55")]
            ),
            1000,
            note="OTP TransferCountWithTimeLimitTest.threeTransfers: legs 3-4 share a fare",
        ),
    ],
)


# ------------------------------------------------------- OTP: duration_limit_type 0..3
# Sources: OTP DepartureToArrivalTimeLimitTest.java (type 0, 10 min, unlimited count,
# transfer product 1.00), DepartureToDepartureTimeLimitTest.java (type 1) and
# FreeTransferTimeLimitTest.java (type 1, three legs). Types 2 and 3 and the
# at-limit / one-second-past journeys extend them. Leg 5.00 EUR, A+AB with a 1.00
# transfer product; OTP lists the transfer offer where the limit holds.

case(
    "otp_duration_limit_types",
    OTP
    + "DepartureToArrivalTimeLimitTest.java, DepartureToDepartureTimeLimitTest.java, "
    "FreeTransferTimeLimitTest.java",
    "EUR",
    {
        **_network_files(
            "Europe/Amsterdam",
            {"d0": "n0", "d1": "n1", "d2": "n2", "d3": "n3"},
            ("x0", "x1", "x2", "x3", "x4", "x5"),
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            leg,Single,5.00,EUR
            transfer_1,Transfer,1.00,EUR
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id
            g0,n0,leg
            g1,n1,leg
            g2,n2,leg
            g3,n3,leg
            """
        ),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id
            g0,g0,-1,600,0,0,transfer_1
            g1,g1,-1,600,1,0,transfer_1
            g2,g2,-1,600,2,0,transfer_1
            g3,g3,-1,600,3,0,transfer_1
            """
        ),
    },
    [
        # type 0: departure of the first leg -> arrival of the current leg
        J("dep_arr_below", _chain("d0", [("10:00", "10:03"), ("10:03", "10:06")]), 600),
        J("dep_arr_above", _chain("d0", [("10:00", "10:11"), ("10:12", "10:22")]), 1000),
        J(
            "dep_arr_three_legs",
            _chain("d0", [("10:00", "10:03"), ("10:03", "10:06"), ("10:09", "10:15")]),
            1100,
        ),
        J(
            "dep_arr_four_legs",
            _chain(
                "d0", [("10:00", "10:03"), ("10:03", "10:06"), ("10:09", "10:15"), ("10:15", "10:17")]
            ),
            1200,
            note="leg 4 transfers from leg 3, which started a new sub-journey",
        ),
        J("dep_arr_at_limit", _chain("d0", [("10:00", "10:04"), ("10:05", "10:10:00")]), 600),
        J("dep_arr_past_limit", _chain("d0", [("10:00", "10:04"), ("10:05", "10:10:01")]), 1000),
        # type 1: departure -> departure
        J("dep_dep_below", _chain("d1", [("10:00", "10:08"), ("10:09", "10:15")]), 600),
        J("dep_dep_above", _chain("d1", [("10:00", "10:04"), ("10:11", "10:15")]), 1000),
        J("dep_dep_at_limit", _chain("d1", [("10:00", "10:04"), ("10:10:00", "10:30")]), 600),
        J("dep_dep_past_limit", _chain("d1", [("10:00", "10:04"), ("10:10:01", "10:30")]), 1000),
        J(
            "dep_dep_three_legs_from_first",
            _chain("d1", [("10:00", "10:03"), ("10:04", "10:08"), ("10:12", "10:22")]),
            1100,
            note="leg 3 departs 12 min after leg 1 (FreeTransferTimeLimitTest's itinerary)",
        ),
        # type 2: arrival -> departure
        J(
            "arr_dep_at_limit_long_first_leg",
            _chain("d2", [("10:00", "10:30"), ("10:40:00", "10:50")]),
            600,
            note="dep->dep would be 40 min",
        ),
        J("arr_dep_past_limit", _chain("d2", [("10:00", "10:30"), ("10:40:01", "10:50")]), 1000),
        J(
            "arr_dep_three_legs_at_limit",
            _chain("d2", [("10:00", "10:05"), ("10:10", "10:12"), ("10:15:00", "10:20")]),
            700,
        ),
        J(
            "arr_dep_three_legs_measured_from_first",
            _chain("d2", [("10:00", "10:05"), ("10:10", "10:12"), ("10:15:01", "10:20")]),
            1100,
            note="601 s after leg 1's arrival (only 181 s after leg 2's): new sub-journey",
        ),
        # type 3: arrival -> arrival
        J("arr_arr_at_limit", _chain("d3", [("10:00", "10:05"), ("10:06", "10:15:00")]), 600),
        J("arr_arr_past_limit", _chain("d3", [("10:00", "10:05"), ("10:06", "10:15:01")]), 1000),
    ],
)


# --------------------------------------------------- spec: fare_transfer_type 0/1/2
# Source: GTFS reference, fare_transfer_rules.txt fare_transfer_type and its 3-leg
# table (A > B then B > C: type 0 A + AB, S + BC; type 1 A + AB + B, S + BC + C;
# type 2 AB, S + BC), "May be negative to represent transfer discounts"
# (fare_products.amount), and the one-directional from/to leg groups.

_par = _at("2024-03-12", "+01:00")


def _seq(*routes):
    out = []
    for i, r in enumerate(routes):
        out.append((r, f"x{i}", f"x{i + 1}", _par(f"10:{i * 10:02d}"), _par(f"10:{i * 10 + 5:02d}")))
    return out


case(
    "spec_transfer_types",
    GTFS_REF + " fare_transfer_rules.txt (fare_transfer_type), fare_products.txt (amount)",
    "EUR",
    {
        **_network_files(
            "Europe/Paris",
            {"bus": "bus", "metro": "metro", "express": "express", "day": "day"},
            ("x0", "x1", "x2", "x3", "x4"),
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            bus_fare,Bus,2.00,EUR
            metro_fare,Metro,3.00,EUR
            express_fare,Express,4.00,EUR
            day_leg,Day line,3.00,EUR
            up_1,Bus to metro upgrade,1.00,EUR
            surcharge,Express surcharge,0.50,EUR
            combo,Bus + express,5.00,EUR
            combo_expensive,Express + bus,7.00,EUR
            discount,Metro transfer discount,-1.00,EUR
            daypass,Day pass,4.00,EUR
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id
            g_bus,bus,bus_fare
            g_metro,metro,metro_fare
            g_express,express,express_fare
            g_day,day,day_leg
            """
        ),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,transfer_count,fare_transfer_type,fare_product_id
            g_bus,g_metro,,0,up_1
            g_metro,g_express,,1,surcharge
            g_bus,g_express,,2,combo
            g_express,g_bus,,2,combo_expensive
            g_metro,g_metro,-1,1,discount
            g_day,g_day,-1,2,daypass
            """
        ),
    },
    [
        J("type0_bus_metro", _seq("bus", "metro"), 300, note="A + AB"),
        J("no_rule_metro_bus", _seq("metro", "bus"), 500, note="rules are one-directional"),
        J("type1_metro_express", _seq("metro", "express"), 750, note="A + AB + B"),
        J("type2_bus_express", _seq("bus", "express"), 500, note="AB"),
        J(
            "type2_more_expensive_than_separate",
            _seq("express", "bus"),
            700,
            note="AB = 7.00 although 4.00 + 2.00 = 6.00: the rule still applies",
        ),
        J("type0_then_type1", _seq("bus", "metro", "express"), 750, note="2 + 1, then S + 0.50 + 4"),
        J(
            "type2_then_type2",
            _seq("bus", "express", "bus"),
            1200,
            note="AB = 5, then S + BC = 5 + 7 (the from-leg was reached by a transfer)",
        ),
        J(
            "type1_then_type2",
            _seq("metro", "express", "bus"),
            1450,
            note="3 + 0.50 + 4 = 7.50, then S + BC = 7.50 + 7",
        ),
        J("negative_discount_two_legs", _seq("metro", "metro"), 500, note="3 - 1 + 3"),
        J("negative_discount_three_legs", _seq("metro", "metro", "metro"), 700),
        J("type2_chain_two_legs", _seq("day", "day"), 400),
        J("type2_chain_three_legs", _seq("day", "day", "day"), 800, note="AB, then S + BC"),
    ],
)


# ---------------------------------------------- spec: empty leg groups in transfer rules
# Source: GTFS reference, fare_transfer_rules.txt steps 3-4 ("An empty entry in
# from_leg_group_id corresponds to all leg groups ... excluding the ones listed under
# from_leg_group_id") and fare_leg_rules.leg_group_id (a rule without a leg group
# takes part in no transfer).

case(
    "spec_transfer_empty_leg_groups",
    GTFS_REF + " fare_transfer_rules.txt (empty from/to_leg_group_id)",
    "EUR",
    {
        **_network_files(
            "Europe/Paris",
            {"ra": "a", "rb": "b", "rc": "c", "rd": "d"},
            ("x0", "x1", "x2", "x3"),
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            single,Single,2.00,EUR
            half,Transfer,0.50,EUR
            one,Transfer,1.00,EUR
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id
            g_a,a,single
            g_b,b,single
            g_c,c,single
            ,d,single
            """
        ),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,fare_transfer_type,fare_product_id
            g_a,g_b,0,half
            ,g_b,0,
            g_a,,0,one
            """
        ),
    },
    [
        J("exact_a_to_b", _seq("ra", "rb"), 250),
        J("empty_from_covers_c", _seq("rc", "rb"), 200),
        J("empty_to_covers_c", _seq("ra", "rc"), 300),
        J("c_to_c_matches_nothing", _seq("rc", "rc"), 400),
        J("leg_without_group_takes_no_transfer", _seq("rd", "rb"), 400),
        J("b_to_a_matches_nothing", _seq("rb", "ra"), 400, note="empty from covers g_b but only to g_b"),
    ],
)


# -------------------------------------------- OTP: mixed network/area rules, no priority
# Source: OTP SameGroupIdPriorityTest.java, case "mixed area and network without
# priority leads to zero results" (a network-A rule and an area a1->a1 rule: a leg on
# network A from a1 to a1 matches neither under the empty-field semantics), with the
# spec's empty-entry semantics (GTFS reference fare_leg_rules.txt step 3) for the
# other journeys.

case(
    "otp_mixed_network_area_without_priority",
    OTP + "SameGroupIdPriorityTest.java",
    "EUR",
    {
        **_network_files(
            "Europe/Paris",
            {"rA": "A", "rB": "B", "rN": None},
            ("st1", "st2", "st3", "st4"),
        ),
        "areas.txt": "area_id,area_name\na1,\n",
        "stop_areas.txt": "area_id,stop_id\na1,st1\na1,st2\n",
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            A,A,5.00,EUR
            B,B,4.00,EUR
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,from_area_id,to_area_id,fare_product_id
            group,A,,,A
            group,,a1,a1,B
            """
        ),
    },
    [
        J(
            "network_a_in_a1_matches_neither",
            [("rA", "st1", "st2", _par("10:00"), _par("10:10"))],
            error="unknown",
            note="OTP: zero results",
        ),
        J("network_b_in_a1", [("rB", "st1", "st2", _par("10:00"), _par("10:10"))], 400),
        J("network_a_outside_areas", [("rA", "st3", "st4", _par("10:00"), _par("10:10"))], 500),
        J("no_network_in_a1", [("rN", "st1", "st2", _par("10:00"), _par("10:10"))], 400),
        J(
            "network_b_outside_areas",
            [("rB", "st3", "st4", _par("10:00"), _par("10:10"))],
            error="unknown",
        ),
    ],
)


# --------------------------------------------------- OTP: rule_priority resolves
# Source: OTP SameGroupIdPriorityTest.java cases "adding a priority leads to some
# results" and "conflicting results resolved by priority", and the spec's
# rule_priority ("the highest value ... will be selected"; with the column present an
# empty field does not affect matching). Amounts make the priority winner the dearer
# rule, so priority, not price, decides; equal priorities fall back to the cheapest.

case(
    "otp_rule_priority",
    OTP + "SameGroupIdPriorityTest.java; " + GTFS_REF + " fare_leg_rules.rule_priority",
    "EUR",
    {
        **_network_files(
            "Europe/Paris",
            {"rA": "A", "rB": "B"},
            ("st1", "st2", "st3", "st4", "st5", "st6"),
        ),
        "areas.txt": "area_id,area_name\na1,\na2,\n",
        "stop_areas.txt": "area_id,stop_id\na1,st1\na1,st2\na2,st5\na1,st6\na2,st6\n",
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            p300,,3.00,EUR
            p350,,3.50,EUR
            p400,,4.00,EUR
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,from_area_id,to_area_id,fare_product_id,rule_priority
            g1,A,,,p300,
            g2,,a1,a1,p400,2
            g3,A,a2,,p350,2
            """
        ),
    },
    [
        J(
            "priority_beats_cheaper",
            [("rA", "st1", "st2", _par("10:00"), _par("10:10"))],
            400,
        ),
        J("priority_a2", [("rA", "st5", "st1", _par("10:00"), _par("10:10"))], 350),
        J(
            "equal_priority_cheapest",
            [("rA", "st6", "st1", _par("10:00"), _par("10:10"))],
            350,
            note="st6 is in a1 and a2: g2 and g3 both have priority 2",
        ),
        J("empty_network_is_wildcard", [("rB", "st1", "st2", _par("10:00"), _par("10:10"))], 400),
        J("only_priority_0_rule", [("rA", "st3", "st4", _par("10:00"), _par("10:10"))], 300),
        J(
            "nothing_matches",
            [("rB", "st3", "st4", _par("10:00"), _par("10:10"))],
            error="unknown",
        ),
    ],
)


# ---------------------------------------------- OTP: empty network excludes listed ones
# Source: OTP GtfsFaresV2ServiceTest.java: rules single 1.00 and day pass 5.00 with no
# network, express pass 50.00 (network express), local pass 20.00 (network local).
# OTP offers single/day pass on a leg without network, only the express pass on an
# express leg, and separate local + express passes for a local then express
# itinerary ("there is no product covering both").

case(
    "otp_network_exclusion",
    OTP + "GtfsFaresV2ServiceTest.java",
    "EUR",
    {
        **_network_files(
            "Europe/Paris",
            {"plain": None, "express_r": "express", "local_r": "local", "other_r": "other"},
            ("x0", "x1", "x2"),
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            single,Single one-way ticket,1.00,EUR
            day_pass,Day Pass,5.00,EUR
            express_pass,Express Pass,50.00,EUR
            local_pass,Local Pass,20.00,EUR
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,fare_product_id
            leg-group1,,single
            leg-group1,,day_pass
            leg-group1,express,express_pass
            leg-group1,local,local_pass
            """
        ),
    },
    [
        J("no_network_single", [("plain", "x0", "x1", _par("10:00"), _par("10:50"))], 100),
        J("express_only_express_pass", [("express_r", "x0", "x1", _par("10:00"), _par("10:50"))], 5000),
        J(
            "local_then_express_separate",
            [
                ("local_r", "x0", "x1", _par("10:00"), _par("10:50")),
                ("express_r", "x1", "x2", _par("11:00"), _par("11:40")),
            ],
            7000,
        ),
        J(
            "unlisted_network_uses_empty_rules",
            [("other_r", "x0", "x1", _par("10:00"), _par("10:50"))],
            100,
        ),
    ],
)


# -------------------------------------------- spec: exact match and area exclusion
# Source: GTFS reference fare_leg_rules.txt steps 2-3 (an exact match is processed;
# only without one are empty entries checked, each standing for the values not listed
# in its column; an empty timeframe does not affect matching).

_lyo = _at("2024-03-12", "+01:00")  # Tuesday
case(
    "spec_exact_match_and_exclusion",
    GTFS_REF + " fare_leg_rules.txt (steps 2-3)",
    "EUR",
    {
        **_network_files(
            "Europe/Paris",
            {"rA": "A", "rB": "B", "rT": "T"},
            ("s_a1", "s_a2", "s_a3", "t1", "t2"),
        ),
        "areas.txt": "area_id,area_name\na1,\na2,\na3,\n",
        "stop_areas.txt": "area_id,stop_id\na1,s_a1\na2,s_a2\na3,s_a3\n",
        "calendar.txt": _t(
            """
            service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date
            wk,1,1,1,1,1,0,0,20240101,20241231
            """
        ),
        "timeframes.txt": _t(
            """
            timeframe_group_id,start_time,end_time,service_id
            peak,07:00:00,09:00:00,wk
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            p100,,1.00,EUR
            p200,,2.00,EUR
            p300,,3.00,EUR
            p500,,5.00,EUR
            p600,,6.00,EUR
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,from_area_id,to_area_id,from_timeframe_group_id,fare_product_id
            X,A,a1,,,p200
            Y,A,a1,a2,,p600
            Z,,,,,p100
            T_default,T,,,,p300
            T_peak,T,,,peak,p500
            """
        ),
    },
    [
        J(
            "exact_to_area_not_empty_rule",
            [("rA", "s_a1", "s_a2", _lyo("10:00"), _lyo("10:10"))],
            600,
            note="X's empty to_area excludes a2 (listed by Y)",
        ),
        J("empty_to_area_unlisted", [("rA", "s_a1", "s_a3", _lyo("10:00"), _lyo("10:10"))], 200),
        J("all_empty_rule", [("rB", "s_a3", "s_a3", _lyo("10:00"), _lyo("10:10"))], 100),
        J(
            "empty_from_excludes_listed_area",
            [("rB", "s_a1", "s_a3", _lyo("10:00"), _lyo("10:10"))],
            error="unknown",
        ),
        J(
            "empty_network_excludes_listed_network",
            [("rA", "s_a3", "s_a2", _lyo("10:00"), _lyo("10:10"))],
            error="unknown",
        ),
        J(
            "timeframe_rule_is_the_exact_match",
            [("rT", "t1", "t2", _lyo("08:00"), _lyo("08:10"))],
            500,
            note="both T rules match; the one with the timeframe is the more specific",
        ),
        J("outside_timeframe_default", [("rT", "t1", "t2", _lyo("12:00"), _lyo("12:10"))], 300),
    ],
)


# ------------------------------------------------------- spec: areas of parent stations
# Source: GTFS reference stop_areas.txt stop_id: "If a station ... is defined in this
# field, it is assumed that all of its platforms ... are part of the same area. This
# behavior can be overridden by assigning platforms to other areas."

case(
    "spec_parent_station_areas",
    GTFS_REF + " stop_areas.txt",
    "EUR",
    {
        **_network_files(
            "Europe/Paris",
            {"r": None},
            (
                ("S1", {"location_type": "1"}),
                ("S1_a", {"parent_station": "S1"}),
                ("S1_b", {"parent_station": "S1"}),
                "T",
            ),
        ),
        "areas.txt": "area_id,area_name\nz1,\nz2,\nz3,\n",
        "stop_areas.txt": "area_id,stop_id\nz1,S1\nz2,S1_b\nz3,T\n",
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            p200,,2.00,EUR
            p300,,3.00,EUR
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,from_area_id,to_area_id,fare_product_id
            g,z1,z3,p200
            g,z2,z3,p300
            """
        ),
    },
    [
        J("platform_inherits_station_area", [("r", "S1_a", "T", _par("10:00"), _par("10:10"))], 200),
        J("platform_own_area_overrides", [("r", "S1_b", "T", _par("10:00"), _par("10:10"))], 300),
    ],
)


# ------------------------------------------------------ spec: join rules (stations)
# Source: GTFS reference fare_leg_join_rules.txt: "Unless overridden explicitly by
# from_stop_id and to_stop_id, the last station of the pre-transfer leg and the first
# station of the post-transfer leg must be the same"; from_stop_id/to_stop_id match a
# stop or a station; consecutive joined transfers make one effective leg; the first
# leg gives the departure area, the last the arrival area.

_muc = _at("2024-03-12", "+01:00")
case(
    "spec_join_rules_stations",
    GTFS_REF + " fare_leg_join_rules.txt",
    "EUR",
    {
        **_network_files(
            "Europe/Berlin",
            {"rn1": "n", "rn2": "n", "rm": "m", "rk1": "k", "rk2": "k"},
            (
                "X",
                "Y",
                ("ST", {"location_type": "1"}),
                ("P1", {"parent_station": "ST"}),
                ("P2", {"parent_station": "ST"}),
                "Q",
                ("STK", {"location_type": "1"}),
                ("STK_p", {"parent_station": "STK"}),
                ("STK2", {"location_type": "1"}),
                ("STK2_p", {"parent_station": "STK2"}),
                "KX",
                "KY",
            ),
        ),
        "areas.txt": "area_id,area_name\nzx,\nzy,\nzkx,\nzky,\n",
        "stop_areas.txt": "area_id,stop_id\nzx,X\nzy,Y\nzkx,KX\nzky,KY\n",
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            short,Short,2.00,EUR
            long,Long,3.00,EUR
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,from_area_id,to_area_id,fare_product_id,rule_priority
            long_n,n,zx,zy,long,1
            short_n,n,,,short,0
            short_m,m,,,short,0
            long_k,k,zkx,zky,long,1
            short_k,k,,,short,0
            """
        ),
        "fare_leg_join_rules.txt": _t(
            """
            from_network_id,to_network_id,from_stop_id,to_stop_id
            n,n,,
            k,k,STK,STK2
            """
        ),
    },
    [
        J(
            "same_station_joined",
            [
                ("rn1", "X", "P1", _muc("10:00"), _muc("10:10")),
                ("rn2", "P2", "Y", _muc("10:15"), _muc("10:25")),
            ],
            300,
        ),
        J(
            "same_stop_joined",
            [
                ("rn1", "X", "P1", _muc("10:00"), _muc("10:10")),
                ("rn2", "P1", "Y", _muc("10:15"), _muc("10:25")),
            ],
            300,
        ),
        J(
            "other_stop_not_joined",
            [
                ("rn1", "X", "P1", _muc("10:00"), _muc("10:10")),
                ("rn2", "Q", "Y", _muc("10:15"), _muc("10:25")),
            ],
            400,
        ),
        J(
            "other_network_not_joined",
            [
                ("rn1", "X", "P1", _muc("10:00"), _muc("10:10")),
                ("rm", "P2", "Y", _muc("10:15"), _muc("10:25")),
            ],
            400,
        ),
        J(
            "three_legs_chain_joined",
            [
                ("rn1", "X", "P1", _muc("10:00"), _muc("10:10")),
                ("rn2", "P2", "Q", _muc("10:15"), _muc("10:25")),
                ("rn1", "Q", "Y", _muc("10:30"), _muc("10:40")),
            ],
            300,
        ),
        J(
            "explicit_stations_joined",
            [
                ("rk1", "KX", "STK_p", _muc("10:00"), _muc("10:10")),
                ("rk2", "STK2_p", "KY", _muc("10:15"), _muc("10:25")),
            ],
            300,
            note="the rule names stations; the legs use their platforms",
        ),
        J(
            "explicit_stations_one_way",
            [
                ("rk1", "KY", "STK2_p", _muc("10:00"), _muc("10:10")),
                ("rk2", "STK_p", "KX", _muc("10:15"), _muc("10:25")),
            ],
            400,
        ),
    ],
)


# ------------------------------------------- spec: local time, stop_timezone, DST, midnight
# Source: GTFS reference timeframes.txt "Timeframe Local Time Semantics" (stop_timezone
# of the stop or parent station, else the agency timezone; "current day" is the local
# date of the event; start inclusive, end exclusive, 24:00:00), calendar_dates.txt
# exceptions, and fare_transfer_rules.duration_limit (elapsed seconds, across the
# America/New_York DST changes of 2024-03-10 and 2024-11-03).

_nyc = "America/New_York"
case(
    "spec_local_time_and_dst",
    GTFS_REF + " timeframes.txt (Local Time Semantics), calendar_dates.txt, duration_limit",
    "USD",
    {
        **_network_files(
            _nyc,
            {"r": "n"},
            (
                "nyc1",
                "nyc2",
                ("chi1", {"stop_timezone": "America/Chicago"}),
                ("chi2", {"stop_timezone": "America/Chicago"}),
                ("chi_st", {"location_type": "1", "stop_timezone": "America/Chicago"}),
                ("chi_p", {"parent_station": "chi_st"}),
            ),
        ),
        "calendar.txt": _t(
            """
            service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date
            weekdays,1,1,1,1,1,0,0,20240101,20241231
            weekends,0,0,0,0,0,1,1,20240101,20241231
            """
        ),
        "calendar_dates.txt": _t(
            """
            service_id,date,exception_type
            weekdays,20240704,2
            weekends,20240704,1
            """
        ),
        "timeframes.txt": _t(
            """
            timeframe_group_id,start_time,end_time,service_id
            peak,06:00:00,09:00:00,weekdays
            peak,16:00:00,19:00:00,weekdays
            night,00:00:00,05:00:00,weekdays
            night,20:00:00,24:00:00,weekdays
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency
            base,Base,3.00,USD
            peak_fare,Peak,5.00,USD
            night_fare,Night,1.50,USD
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,from_timeframe_group_id,fare_product_id,rule_priority
            g,n,,base,
            g,n,peak,peak_fare,1
            g,n,night,night_fare,1
            """
        ),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type
            g,g,-1,3600,1,0
            """
        ),
    },
    [
        J(
            "peak_edt",
            [("r", "nyc1", "nyc2", "2024-03-11T08:30:00-04:00", "2024-03-11T08:50:00-04:00")],
            500,
        ),
        J(
            "utc_input_after_dst_start",
            [("r", "nyc1", "nyc2", "2024-03-11T13:30:00+00:00", "2024-03-11T13:50:00+00:00")],
            300,
            note="09:30 EDT (EST would make it 08:30, peak)",
        ),
        J(
            "utc_input_before_dst_start",
            [("r", "nyc1", "nyc2", "2024-03-08T13:30:00+00:00", "2024-03-08T13:50:00+00:00")],
            500,
            note="08:30 EST",
        ),
        J(
            "stop_timezone",
            [("r", "chi1", "chi2", "2024-03-11T13:30:00+00:00", "2024-03-11T13:50:00+00:00")],
            500,
            note="08:30 CDT at a Chicago stop (09:30 in the agency timezone)",
        ),
        J(
            "parent_station_timezone",
            [("r", "chi_p", "chi2", "2024-03-11T13:30:00+00:00", "2024-03-11T13:50:00+00:00")],
            500,
        ),
        J(
            "end_time_exclusive",
            [("r", "nyc1", "nyc2", "2024-03-11T09:00:00-04:00", "2024-03-11T09:20:00-04:00")],
            300,
        ),
        J(
            "start_time_inclusive",
            [("r", "nyc1", "nyc2", "2024-03-11T06:00:00-04:00", "2024-03-11T06:20:00-04:00")],
            500,
        ),
        J(
            "holiday_removed_by_calendar_dates",
            [("r", "nyc1", "nyc2", "2024-07-04T08:30:00-04:00", "2024-07-04T08:50:00-04:00")],
            300,
        ),
        J(
            "day_after_holiday",
            [("r", "nyc1", "nyc2", "2024-07-05T08:30:00-04:00", "2024-07-05T08:50:00-04:00")],
            500,
        ),
        J(
            "current_day_is_local_date",
            [("r", "chi1", "chi2", "2024-03-09T00:30:00+00:00", "2024-03-09T00:50:00+00:00")],
            500,
            note="Friday 18:30 CST at a Chicago stop; the UTC date is Saturday",
        ),
        J(
            "night_until_2400",
            [("r", "nyc1", "nyc2", "2024-03-08T23:59:59-05:00", "2024-03-09T00:20:00-05:00")],
            150,
        ),
        J(
            "saturday_midnight_is_weekend",
            [("r", "nyc1", "nyc2", "2024-03-09T00:00:00-05:00", "2024-03-09T00:20:00-05:00")],
            300,
            note="the trip may belong to Friday's service; the event's local date is Saturday",
        ),
        J(
            "weekday_after_midnight_night",
            [("r", "nyc1", "nyc2", "2024-03-11T00:30:00-04:00", "2024-03-11T00:50:00-04:00")],
            150,
        ),
        J(
            "transfer_across_spring_forward",
            [
                ("r", "nyc1", "nyc2", "2024-03-10T01:30:00-05:00", "2024-03-10T01:50:00-05:00"),
                ("r", "nyc2", "nyc1", "2024-03-10T03:20:00-04:00", "2024-03-10T03:40:00-04:00"),
            ],
            300,
            note="50 min elapsed (wall clock 1 h 50 min): free transfer",
        ),
        J(
            "transfer_across_fall_back",
            [
                ("r", "nyc1", "nyc2", "2024-11-03T01:20:00-04:00", "2024-11-03T01:40:00-04:00"),
                ("r", "nyc2", "nyc1", "2024-11-03T01:10:00-05:00", "2024-11-03T01:30:00-05:00"),
            ],
            300,
            note="50 min elapsed although the wall clock goes back",
        ),
        J(
            "transfer_past_limit",
            [
                ("r", "nyc1", "nyc2", "2024-03-12T12:00:00-04:00", "2024-03-12T12:20:00-04:00"),
                ("r", "nyc2", "nyc1", "2024-03-12T13:00:01-04:00", "2024-03-12T13:20:00-04:00"),
            ],
            600,
        ),
    ],
)


# ------------------------------------------- OTP: transfer product only for a category
# Source: OTP FreeTransferWithCategoryTest.java: "The free transfer is only valid for
# the youth fare product, because it is the only one that has the 'youth' category.
# Fare product A has no category therefore doesn't qualify for the free transfer."
# Amounts as in the test (A 5 EUR, youth 4 EUR, youth transfer 0 EUR); categories
# adult (default) and youth; transfer_count -1 added (required for from == to).

_two_hour_legs = [
    ("r", "x0", "x1", _par("10:00"), _par("11:00")),
    ("r", "x1", "x2", _par("11:00"), _par("12:00")),
]
case(
    "otp_transfer_product_by_category",
    OTP + "FreeTransferWithCategoryTest.java",
    "EUR",
    {
        **_network_files("Europe/Paris", {"r": None}, ("x0", "x1", "x2")),
        "rider_categories.txt": _t(
            """
            rider_category_id,rider_category_name,is_default_fare_category
            adult,Adult,1
            youth,Youth,0
            """
        ),
        "fare_products.txt": _t(
            """
            fare_product_id,fare_product_name,amount,currency,rider_category_id
            A,Fare product A,5.00,EUR,
            youth,youth,4.00,EUR,youth
            youth-transfer,youth,0.00,EUR,youth
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,fare_product_id
            LG-A,A
            LG-A,youth
            """
        ),
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,transfer_count,fare_transfer_type,fare_product_id
            LG-A,LG-A,-1,0,youth-transfer
            """
        ),
    },
    [
        J(
            "youth_free_transfer",
            _two_hour_legs,
            400,
            rider="youth",
        ),
        J(
            "default_rider_pays_twice",
            _two_hour_legs,
            1000,
            note=(
                "OTP offers the default rider a new fare A on leg 2; assumes a transfer rule "
                "whose product has no row for the rider does not apply"
            ),
        ),
        J(
            "adult_pays_twice",
            _two_hour_legs,
            1000,
            rider="adult",
        ),
        J("youth_single", [("r", "x0", "x1", _par("10:00"), _par("11:00"))], 400, rider="youth"),
    ],
)


def journeys():
    """(case, journey) pairs, in corpus order."""
    return [(c, j) for c in CASES for j in c["journeys"]]
