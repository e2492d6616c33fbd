"""A small synthetic fare system for the TAP specification tests (tests/test_taps.py).

`write_feed(directory, ...)` writes a GTFS Fares v2 feed and its fares.toml into
`directory` and returns the directory; load it with
`cardledger.fares.FareSystem.from_gtfs(directory)`. Everything is in Asia/Shanghai
(UTC+8, no daylight saving time), currency CNY, amounts in fen below.

Agencies and the operator accounts they pay (fares.toml [operators]):
    city_bus   -> BUS_OPERATOR   (8001)   route bus_a (network bus), stops b1, b2
    city_metro -> METRO_OPERATOR (8002)   route metro_x (network metro, gated)
                                          stations ma, mb, mc (areas area_a/b/c)

Fares (fare_leg_rules.txt has a rule_priority column, so empty fields mean "any"):
    bus                 `bus_fare` (default "2.00" = 200), any stop, any time
    bus from 22:00-24:00 local (timeframe group `night`, priority 1)   300
    metro a<->b, b<->c  300        metro a<->c  `metro_ac_fare` ("5.00")   same area 200
Leg groups: bus rules are `bus`, metro rules are `metro`.

Transfer (fare_transfer_rules.txt): bus -> metro within 5400 s departure to
departure, fare_transfer_type 1 (S += AB + B) with product xfer_bus_metro = -1.00:
the metro leg after a bus leg costs 100 less.

fares.toml: fare_media_id card, journey_break_s (default 1800), day_start_s
(default 0), rider categories 0 adult / 1 student, metro entry_exit with max_fare
5.00, incomplete_charge 4.00, incomplete_timeout_s 7200, no same_station_charge
(a same-station exit is rated by the feed: 200). Optional caps, tiers and
negative_balance sections are appended verbatim from the arguments.
"""

from __future__ import annotations

import os
import textwrap

BUS_OPERATOR = 8001
METRO_OPERATOR = 8002

#: fares by hand (fen) of the default feed, for the tests' comments and asserts
BUS = 200
BUS_NIGHT = 300
METRO_SAME = 200
METRO_AB = 300
METRO_AC = 500
TRANSFER_OFF = 100
MAX_FARE = 500
INCOMPLETE = 400
TIMEOUT_S = 7200


def _t(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def feed_files(
    *,
    bus_fare: str = "2.00",
    metro_ac_fare: str = "5.00",
    journey_break_s: int = 1800,
    day_start_s: int = 0,
    extra_toml: str = "",
) -> dict[str, str]:
    """The feed's files (name -> text)."""
    metro_rules = []
    prices = {("a", "a"): "metro_2", ("b", "b"): "metro_2", ("c", "c"): "metro_2",
              ("a", "b"): "metro_3", ("b", "c"): "metro_3", ("a", "c"): "metro_5"}  # fmt: skip
    for (x, y), product in prices.items():
        metro_rules.append(f"metro,metro,area_{x},area_{y},,,{product},0")
        if x != y:
            metro_rules.append(f"metro,metro,area_{y},area_{x},,,{product},0")
    files = {
        "agency.txt": _t(
            """
            agency_id,agency_name,agency_url,agency_timezone
            city_bus,City Bus,https://example.org/bus,Asia/Shanghai
            city_metro,City Metro,https://example.org/metro,Asia/Shanghai
            """
        ),
        "routes.txt": _t(
            """
            route_id,agency_id,route_short_name,route_type
            bus_a,city_bus,A,3
            metro_x,city_metro,X,1
            """
        ),
        "stops.txt": _t(
            """
            stop_id,stop_name,location_type,parent_station
            b1,Bus stop 1,0,
            b2,Bus stop 2,0,
            ma,Metro A,0,
            mb,Metro B,0,
            mc,Metro C,0,
            """
        ),
        "networks.txt": _t(
            """
            network_id,network_name
            bus,Bus
            metro,Metro
            """
        ),
        "route_networks.txt": _t(
            """
            network_id,route_id
            bus,bus_a
            metro,metro_x
            """
        ),
        "areas.txt": _t(
            """
            area_id,area_name
            area_a,A
            area_b,B
            area_c,C
            """
        ),
        "stop_areas.txt": _t(
            """
            area_id,stop_id
            area_a,ma
            area_b,mb
            area_c,mc
            """
        ),
        "rider_categories.txt": _t(
            """
            rider_category_id,rider_category_name,is_default_fare_category
            adult,Adult,1
            student,Student,0
            """
        ),
        "fare_media.txt": _t(
            """
            fare_media_id,fare_media_name,fare_media_type
            card,Transit card,2
            """
        ),
        "calendar.txt": _t(
            """
            service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date
            every_day,1,1,1,1,1,1,1,20200101,20351231
            """
        ),
        "timeframes.txt": _t(
            """
            timeframe_group_id,start_time,end_time,service_id
            night,22:00:00,24:00:00,every_day
            """
        ),
        "fare_products.txt": _t(
            f"""
            fare_product_id,fare_product_name,rider_category_id,fare_media_id,amount,currency
            bus_fare,Bus,,,{bus_fare},CNY
            bus_night,Night bus,,,3.00,CNY
            metro_2,Metro 2,,,2.00,CNY
            metro_3,Metro 3,,,3.00,CNY
            metro_5,Metro 5,,,{metro_ac_fare},CNY
            xfer_bus_metro,Bus to metro transfer,,,-1.00,CNY
            """
        ),
        "fare_leg_rules.txt": _t(
            """
            leg_group_id,network_id,from_area_id,to_area_id,from_timeframe_group_id,to_timeframe_group_id,fare_product_id,rule_priority
            bus,bus,,,,,bus_fare,0
            bus,bus,,,night,,bus_night,1
            """
        )
        + "\n".join(metro_rules)
        + "\n",
        "fare_transfer_rules.txt": _t(
            """
            from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id
            bus,metro,,5400,1,1,xfer_bus_metro
            """
        ),
        "fares.toml": _t(
            f"""
            fare_media_id = "card"
            journey_break_s = {journey_break_s}
            day_start_s = {day_start_s}

            [rider_categories]
            0 = "adult"
            1 = "student"

            [operators]
            city_bus = {BUS_OPERATOR}
            city_metro = {METRO_OPERATOR}

            [[entry_exit]]
            network_id = "metro"
            max_fare = "5.00"
            incomplete_timeout_s = {TIMEOUT_S}
            incomplete_charge = "4.00"
            """
        )
        + textwrap.dedent(extra_toml),
    }
    return files


def write_feed(directory: str | os.PathLike[str], **options) -> str:
    """Write the feed (see `feed_files` for the options) into `directory`; return its path."""
    path = os.fspath(directory)
    os.makedirs(path, exist_ok=True)
    for name, text in feed_files(**options).items():
        with open(os.path.join(path, name), "w", encoding="utf-8") as f:
            f.write(text)
    return path
