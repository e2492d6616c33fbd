"""The rows of a GTFS fare feed, typed: what the loader produces and the compiler reads.

One dataclass per GTFS file this package understands. Identifiers stay the feed's
strings here; `compile.py` turns them into dense integer indexes for the core.
Optional GTFS fields that are empty in the feed are `None` (never ""). Money is an
`int` in the currency's minor units (fen for CNY); times of day are `int` seconds
since local midnight; dates are `datetime.date`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt


@dataclasses.dataclass(frozen=True)
class Agency:
    """agency.txt: one operator; its timezone is the feed's default timezone."""

    agency_id: str
    agency_name: str
    agency_timezone: str


@dataclasses.dataclass(frozen=True)
class Route:
    """routes.txt: a route and the network it belongs to (routes.network_id or route_networks.txt)."""

    route_id: str
    agency_id: str
    route_type: int
    route_short_name: str | None = None
    network_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Stop:
    """stops.txt: a stop, platform or station (location_type 0/1; others are kept but unused)."""

    stop_id: str
    stop_name: str | None = None
    location_type: int = 0
    parent_station: str | None = None
    stop_timezone: str | None = None


@dataclasses.dataclass(frozen=True)
class FareMedia:
    """fare_media.txt."""

    fare_media_id: str
    fare_media_name: str | None
    fare_media_type: int


@dataclasses.dataclass(frozen=True)
class RiderCategory:
    """rider_categories.txt."""

    rider_category_id: str
    rider_category_name: str
    is_default_fare_category: bool = False
    eligibility_url: str | None = None


@dataclasses.dataclass(frozen=True)
class FareProduct:
    """fare_products.txt: one row; (fare_product_id, rider_category_id, fare_media_id) is the key."""

    fare_product_id: str
    amount_minor: int
    currency: str
    fare_product_name: str | None = None
    rider_category_id: str | None = None
    fare_media_id: str | None = None


@dataclasses.dataclass(frozen=True)
class FareLegRule:
    """fare_leg_rules.txt: one row. rule_priority is None when the cell is empty (treated as 0)."""

    fare_product_id: str
    leg_group_id: str | None = None
    network_id: str | None = None
    from_area_id: str | None = None
    to_area_id: str | None = None
    from_timeframe_group_id: str | None = None
    to_timeframe_group_id: str | None = None
    rule_priority: int | None = None


@dataclasses.dataclass(frozen=True)
class FareLegJoinRule:
    """fare_leg_join_rules.txt."""

    from_network_id: str
    to_network_id: str
    from_stop_id: str | None = None
    to_stop_id: str | None = None


@dataclasses.dataclass(frozen=True)
class FareTransferRule:
    """fare_transfer_rules.txt. duration_limit is in seconds."""

    fare_transfer_type: int
    from_leg_group_id: str | None = None
    to_leg_group_id: str | None = None
    transfer_count: int | None = None
    duration_limit: int | None = None
    duration_limit_type: int | None = None
    fare_product_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Timeframe:
    """timeframes.txt: [start_s, end_s) seconds of the local day (empty start = 0, empty end = 86400)."""

    timeframe_group_id: str
    start_s: int
    end_s: int
    service_id: str


@dataclasses.dataclass(frozen=True)
class Calendar:
    """calendar.txt: weekdays[0] is Monday."""

    service_id: str
    weekdays: tuple[bool, bool, bool, bool, bool, bool, bool]
    start_date: dt.date
    end_date: dt.date


@dataclasses.dataclass(frozen=True)
class CalendarDate:
    """calendar_dates.txt: exception_type 1 adds the date, 2 removes it."""

    service_id: str
    date: dt.date
    exception_type: int


@dataclasses.dataclass(frozen=True)
class Network:
    """networks.txt."""

    network_id: str
    network_name: str | None = None


@dataclasses.dataclass(frozen=True)
class Area:
    """areas.txt."""

    area_id: str
    area_name: str | None = None


@dataclasses.dataclass(frozen=True)
class StopArea:
    """stop_areas.txt."""

    area_id: str
    stop_id: str


@dataclasses.dataclass
class Feed:
    """Everything a fare system needs from one GTFS feed, validated.

    Dict-valued tables are keyed by their GTFS primary key and keep file order.
    `has_rule_priority` records whether fare_leg_rules.txt has a rule_priority
    column at all: the spec's matching semantics for empty fields depend on it.
    `route_networks` maps route_id to network_id from whichever of routes.network_id
    or route_networks.txt the feed uses.
    """

    agencies: dict[str, Agency]
    routes: dict[str, Route]
    stops: dict[str, Stop]
    fare_media: dict[str, FareMedia]
    rider_categories: dict[str, RiderCategory]
    fare_products: list[FareProduct]
    fare_leg_rules: list[FareLegRule]
    has_rule_priority: bool
    fare_leg_join_rules: list[FareLegJoinRule]
    fare_transfer_rules: list[FareTransferRule]
    timeframes: list[Timeframe]
    calendar: dict[str, Calendar]
    calendar_dates: list[CalendarDate]
    networks: dict[str, Network]
    route_networks: dict[str, str]
    areas: dict[str, Area]
    stop_areas: list[StopArea]
