"""Load a GTFS fare feed (GTFS-Fares v2) from a directory or a zip, checked as a whole.

`load_feed(path)` reads the files below from a directory, a .zip, or a .zip whose files
sit in one top-level folder, and returns a `cardledger.fares.model.Feed`:

    agency.txt (required)        routes.txt (required)          stops.txt (required)
    fare_products.txt (required) fare_leg_rules.txt (required)  fare_media.txt
    rider_categories.txt         fare_leg_join_rules.txt        fare_transfer_rules.txt
    timeframes.txt               calendar.txt                   calendar_dates.txt
    networks.txt                 route_networks.txt             areas.txt
    stop_areas.txt

A feed of only these files (no trips.txt, no stop_times.txt) is valid. Other files and
unknown columns are ignored; so are the Fares v1 files fare_attributes.txt and
fare_rules.txt (this package rates with Fares v2 only).

CSV: UTF-8 with an optional byte order mark, a header row, fields quoted per RFC 4180.
Surrounding whitespace of every cell is stripped; an empty cell is None. Blank rows are
skipped. Line numbers are physical lines of the file (the header is line 1).

Every broken reference, bad value, duplicate key and unsupported construct (columns
of Fares drafts the spec did not adopt, mixed currencies) is collected as a
`Problem(file, line, column, message)`; if there is any, one `FeedError` lists all of
them and nothing is returned. Money is converted exactly (`amount_to_minor`, integer
arithmetic on the decimal digits, never float) to the currency's ISO 4217 minor units.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import decimal
import functools
import io
import os
import re
import zipfile
import zoneinfo
from collections.abc import Callable, Collection, Iterator

from cardledger.schema import AMOUNT_MAX_FEN
from cardledger.fares.errors import FeedError, Problem
from cardledger.fares.model import (
    Agency,
    Area,
    Calendar,
    CalendarDate,
    FareLegJoinRule,
    FareLegRule,
    FareMedia,
    FareProduct,
    FareTransferRule,
    Feed,
    Network,
    RiderCategory,
    Route,
    Stop,
    StopArea,
    Timeframe,
)

#: A feed file larger than this is refused (fare files are small; this bounds a zip bomb).
FILE_BYTES_MAX = 256 * 1024 * 1024
#: Largest integer a GTFS integer field may hold (the spec's fields fit in int32).
GTFS_INT_MAX = 2**31 - 1
#: Largest |amount| of a fare product: the ledger's per-op limit, so that the total of
#: any journey (at most QUOTE_LEGS_MAX legs and transfers) stays far inside int64.
AMOUNT_MINOR_MAX = AMOUNT_MAX_FEN
#: Seconds in a service day; timeframes are [start, end) within [0, DAY_S].
DAY_S = 86_400

#: The GTFS files read, in the order problems are reported.
FEED_FILES = (
    "agency.txt",
    "routes.txt",
    "stops.txt",
    "areas.txt",
    "stop_areas.txt",
    "networks.txt",
    "route_networks.txt",
    "fare_media.txt",
    "rider_categories.txt",
    "calendar.txt",
    "calendar_dates.txt",
    "timeframes.txt",
    "fare_products.txt",
    "fare_leg_rules.txt",
    "fare_leg_join_rules.txt",
    "fare_transfer_rules.txt",
)
REQUIRED_FILES = frozenset(
    {"agency.txt", "routes.txt", "stops.txt", "fare_products.txt", "fare_leg_rules.txt"}
)
#: Columns that must be in the header of each file when the file is present.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "agency.txt": ("agency_name", "agency_timezone"),
    "routes.txt": ("route_id", "route_type"),
    "stops.txt": ("stop_id",),
    "areas.txt": ("area_id",),
    "stop_areas.txt": ("area_id", "stop_id"),
    "networks.txt": ("network_id",),
    "route_networks.txt": ("network_id", "route_id"),
    "fare_media.txt": ("fare_media_id", "fare_media_type"),
    "rider_categories.txt": ("rider_category_id", "rider_category_name"),
    "calendar.txt": (
        "service_id", "monday", "tuesday", "wednesday", "thursday", "friday",
        "saturday", "sunday", "start_date", "end_date",
    ),
    "calendar_dates.txt": ("service_id", "date", "exception_type"),
    "timeframes.txt": ("timeframe_group_id", "service_id"),
    "fare_products.txt": ("fare_product_id", "amount", "currency"),
    "fare_leg_rules.txt": ("fare_product_id",),
    "fare_leg_join_rules.txt": ("from_network_id", "to_network_id"),
    "fare_transfer_rules.txt": ("fare_transfer_type",),
}
#: Columns of Fares drafts the spec did not adopt: a non-empty cell is a problem.
UNSUPPORTED_COLUMNS: dict[str, frozenset[str]] = {
    "fare_products.txt": frozenset(
        {
            "duration_start", "duration_amount", "duration_unit", "duration_type",
            "fare_product_behavior", "fare_media_behavior",
        }
    ),
    "fare_media.txt": frozenset({"fare_media_behavior"}),
    "fare_leg_rules.txt": frozenset({"contains_area_id"}),
    "fare_transfer_rules.txt": frozenset(
        {"filter_fare_product_id", "nonconsecutive_transfers_allowed"}
    ),
}

#: ISO 4217 minor-unit exponents. Codes not listed here are refused.
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
    **dict.fromkeys(
        """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD
        BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN
        ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES
        KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
        MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR
        SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD
        TWD TZS UAH USD USN UYU UZS VED VES WST XCD YER ZAR ZMW ZWG ZWL""".split(),
        2,
    ),
}

_AMOUNT_RE = re.compile(r"-?[0-9]{1,30}(?:\.[0-9]{1,30})?")
_INT_RE = re.compile(r"-?[0-9]{1,12}")
_TIME_RE = re.compile(r"([0-9]{1,2}):([0-9]{2}):([0-9]{2})")
_DATE_RE = re.compile(r"[0-9]{8}")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def currency_exponent(currency: str) -> int:
    """The ISO 4217 minor-unit exponent of `currency` (2 for CNY, 0 for JPY, 3 for KWD).

    Raises ValueError for a code not in `CURRENCY_EXPONENTS`.
    """
    exponent = CURRENCY_EXPONENTS.get(currency)
    if exponent is None:
        hint = " (ISO 4217 codes are upper case)" if currency.upper() in CURRENCY_EXPONENTS else ""
        raise ValueError(f"unknown currency {currency!r}{hint}")
    return exponent


def amount_to_minor(amount: str, currency: str) -> int:
    """Convert a decimal string such as "2.50" to an int of `currency`'s minor units, exactly.

    The digits are handled as integers (via `decimal.Decimal`), never as float. Trailing
    zeros past the currency's precision are fine ("2.000" CNY is 200); a non-zero digit
    past it ("2.001" CNY) raises ValueError, as do a malformed string, an unknown
    currency and an amount beyond `AMOUNT_MINOR_MAX`. Negative and zero amounts are allowed.
    """
    exponent = currency_exponent(currency)
    if not _AMOUNT_RE.fullmatch(amount):
        raise ValueError(f"amount {amount!r} is not a decimal number like '2.50'")
    sign, digits, digits_exponent = decimal.Decimal(amount).as_tuple()
    assert isinstance(digits_exponent, int)  # the regex admits no NaN or Infinity
    coefficient = int("".join(map(str, digits)))
    shift = digits_exponent + exponent
    if shift >= 0:
        minor = coefficient * 10**shift
    else:
        minor, rest = divmod(coefficient, 10**-shift)
        if rest:
            raise ValueError(
                f"amount {amount!r} has more decimals than {currency} allows ({exponent})"
            )
    if minor > AMOUNT_MINOR_MAX:
        raise ValueError(f"amount {amount!r} is too large (at most {AMOUNT_MINOR_MAX} minor units)")
    return -minor if sign else minor


@functools.lru_cache(maxsize=1024)
def _timezone_ok(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # ("America": a directory)
        return False
    return True


class _Source:
    """The files of a feed: a directory, a zip, or a zip with one top-level folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.zip: zipfile.ZipFile | None = None
        self.prefix = ""
        if os.path.isdir(self.path):
            return
        if not os.path.exists(self.path):
            raise FeedError([Problem(self.path, 0, None, "no such file or directory")])
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise FeedError(
                [Problem(self.path, 0, None, f"not a directory or a readable zip file ({exc})")]
            ) from None
        names = [
            name for name in self.zip.namelist()
            if not name.endswith("/") and not name.startswith("__MACOSX/")
        ]
        if names and all("/" in name for name in names):
            folders = {name.split("/", 1)[0] for name in names}
            if len(folders) == 1:
                self.prefix = folders.pop() + "/"

    def read(self, name: str) -> bytes | None:
        """The bytes of file `name`, or None if the feed has no such file.

        Raises ValueError (with a message for a Problem) if the file cannot be read.
        """
        if self.zip is None:
            full = os.path.join(self.path, name)
            if not os.path.isfile(full):
                return None
            try:
                size = os.path.getsize(full)
                if size > FILE_BYTES_MAX:
                    raise ValueError(f"file is larger than {FILE_BYTES_MAX} bytes")
                with open(full, "rb") as file:
                    return file.read()
            except OSError as exc:
                raise ValueError(f"cannot read the file ({exc})") from None
        try:
            info = self.zip.getinfo(self.prefix + name)
        except KeyError:
            return None
        if info.file_size > FILE_BYTES_MAX:
            raise ValueError(f"file is larger than {FILE_BYTES_MAX} bytes")
        try:
            with self.zip.open(info) as file:
                data = file.read(FILE_BYTES_MAX + 1)
        except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as exc:
            raise ValueError(f"cannot read the file from the zip ({exc})") from None
        if len(data) > FILE_BYTES_MAX:
            raise ValueError(f"file is larger than {FILE_BYTES_MAX} bytes")
        return data

    def has(self, name: str) -> bool:
        """Whether the feed has a file `name`."""
        if self.zip is None:
            return os.path.isfile(os.path.join(self.path, name))
        try:
            self.zip.getinfo(self.prefix + name)
        except KeyError:
            return False
        return True

    def close(self) -> None:
        """Close the zip, if any."""
        if self.zip is not None:
            self.zip.close()


def read_feed_file(path: str | os.PathLike[str], name: str) -> bytes | None:
    """The bytes of file `name` beside the feed at `path` (directory or zip), or None.

    Used to find fares.toml: in the feed directory, or at the root of the zip (or of its
    one top-level folder). Raises FeedError if `path` is not a feed, ValueError if the
    file exists but cannot be read.
    """
    source = _Source(path)
    try:
        return source.read(name)
    finally:
        source.close()


@dataclasses.dataclass
class _Table:
    """One parsed CSV file: its header and its non-blank rows with their line numbers."""

    file: str
    columns: frozenset[str]
    rows: list[tuple[int, dict[str, str | None]]]


class _Row:
    """One CSV row being read: typed field getters that record problems as they go.

    `ok` turns False on any problem, and the row then yields no model object (the feed
    is not returned anyway); its raw keys still count for references and duplicates,
    so one bad cell does not cascade into unrelated reports.
    """

    __slots__ = ("loader", "table", "line", "cells", "ok")

    def __init__(self, loader: _Loader, table: _Table, line: int, cells: dict[str, str | None]):
        self.loader = loader
        self.table = table
        self.line = line
        self.cells = cells
        self.ok = True

    def problem(self, column: str | None, message: str) -> None:
        self.ok = False
        self.loader.add(self.table.file, self.line, column, message)

    def text(self, column: str, required: bool = False) -> str | None:
        value = self.cells.get(column)
        if value is None and required:
            if column in self.table.columns:
                self.problem(column, "required field is empty")
            else:
                self.ok = False  # the missing column was reported once, at line 1
        return value

    def integer(
        self,
        column: str,
        required: bool = False,
        valid: Callable[[int], bool] | None = None,
        expected: str = "",
    ) -> int | None:
        raw = self.text(column, required)
        if raw is None:
            return None
        if not _INT_RE.fullmatch(raw):
            self.problem(column, f"{raw!r} is not an integer" + (f" ({expected})" if expected else ""))
            return None
        value = int(raw)
        if abs(value) > GTFS_INT_MAX or (valid is not None and not valid(value)):
            self.problem(column, f"{raw!r} is out of range (expected {expected or 'a 32-bit integer'})")
            return None
        return value

    def enum(self, column: str, allowed: Collection[int], required: bool = False) -> int | None:
        values = ", ".join(map(str, sorted(allowed)))
        return self.integer(column, required, lambda v: v in allowed, f"one of {values}")

    def time_s(self, column: str) -> int | None:
        raw = self.text(column)
        if raw is None:
            return None
        match = _TIME_RE.fullmatch(raw)
        if match is not None:
            hours, minutes, seconds = (int(part) for part in match.groups())
            total = hours * 3600 + minutes * 60 + seconds
            if minutes < 60 and seconds < 60 and total <= DAY_S:
                return total
        self.problem(column, f"{raw!r} is not a time HH:MM:SS between 00:00:00 and 24:00:00")
        return None

    def date(self, column: str, required: bool = False) -> dt.date | None:
        raw = self.text(column, required)
        if raw is None:
            return None
        if _DATE_RE.fullmatch(raw):
            try:
                return dt.date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
            except ValueError:
                pass
        self.problem(column, f"{raw!r} is not a date YYYYMMDD")
        return None

    def timezone(self, column: str, required: bool = False) -> str | None:
        raw = self.text(column, required)
        if raw is not None and raw not in self.loader.known_timezones and not _timezone_ok(raw):
            self.problem(column, f"unknown timezone {raw!r} (use an IANA name like 'Asia/Shanghai')")
            return None
        return raw

    def ref(self, column: str, known: Collection[str] | None, where: str) -> str | None:
        """The cell, checked to name something in `known` (None: that file is unusable)."""
        value = self.cells.get(column)
        if value is not None and known is not None and value not in known:
            self.problem(column, f"unknown {column} {value!r} (not in {where})")
        return value

    def unique(self, seen: dict, key: object, column: str | None, what: str) -> bool:
        """Record `key` as seen at this line; report and return False if it was seen before."""
        first = seen.get(key)
        if first is not None:
            self.problem(column, f"duplicate {what} (first at line {first})")
            return False
        seen[key] = self.line
        return True


def _show(*values: str | None) -> str:
    return "(" + ", ".join(repr(value or "") for value in values) + ")"


def _route_type_ok(value: int) -> bool:
    return (0 <= value <= 7) or value in (11, 12) or (100 <= value <= 1799)


class _Loader:
    """Reads every file, collects every problem, and builds the Feed if there are none."""

    def __init__(self, source: _Source, known_timezones: Collection[str] = ()) -> None:
        self.source = source
        self.problems: list[Problem] = []
        # Zones whose offsets come with the feed (a stored system's recorded ones): valid
        # even where the host's tz database lacks them.
        self.known_timezones = frozenset(known_timezones)

    def add(self, file: str, line: int, column: str | None, message: str) -> None:
        self.problems.append(Problem(file, line, column, message))

    # -- reading -----------------------------------------------------------------

    def table(self, name: str) -> _Table | None:
        """The parsed file, or None if it is absent or unreadable (problems recorded)."""
        try:
            data = self.source.read(name)
        except ValueError as exc:
            self.add(name, 0, None, str(exc))
            return None
        if data is None:
            if name in REQUIRED_FILES:
                self.add(name, 0, None, "required file is missing")
            return None
        table = self._parse(name, data)
        if table is None:
            return None
        for column in REQUIRED_COLUMNS.get(name, ()):
            if column not in table.columns:
                self.add(name, 1, column, "required column is missing")
        unsupported = {
            column for column in table.columns
            if column in UNSUPPORTED_COLUMNS.get(name, ())
            or (name == "fare_leg_rules.txt" and "area_set" in column)
        }
        for line, cells in table.rows:
            for column in sorted(unsupported):
                if cells.get(column) is not None:
                    self.add(
                        name, line, column,
                        f"unsupported: {column} is from a Fares draft the GTFS spec did not "
                        "adopt; leave it empty or remove the column",
                    )
        return table

    def _parse(self, name: str, data: bytes) -> _Table | None:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            self.add(name, line, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
            return None
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header: list[str] | None = None
        rows: list[tuple[int, dict[str, str | None]]] = []
        line_end = 0
        try:
            for record in reader:
                line, line_end = line_end + 1, reader.line_num
                cells = [cell.strip() for cell in record]
                if header is None:
                    header = cells
                    if line != 1 or not any(header):
                        self.add(name, line, None, "the first line must be the header row")
                        return None
                    seen: set[str] = set()
                    for column in header:
                        if column in seen:
                            self.add(name, 1, column, "duplicate column in the header")
                        seen.add(column)
                    continue
                if not any(cells):
                    continue  # a blank row
                if len(cells) != len(header):
                    self.add(
                        name, line, None,
                        f"row has {len(cells)} fields, the header has {len(header)}",
                    )
                rows.append((line, {c: v or None for c, v in zip(header, cells) if c}))
        except csv.Error as exc:
            self.add(name, line_end + 1, None, f"malformed CSV ({exc})")
            return None
        if header is None:
            self.add(name, 1, None, "file is empty: the first line must be the header row")
            return None
        return _Table(name, frozenset(c for c in header if c), rows)

    def rows(self, table: _Table | None) -> Iterator[_Row]:
        if table is not None:
            for line, cells in table.rows:
                yield _Row(self, table, line, cells)

    # -- the files, in dependency order ------------------------------------------------

    def load(self) -> Feed:
        agencies, agency_ids = self.agencies()
        routes, route_ids, route_network_col, route_net_ids = self.routes(agency_ids)
        stops, stop_ids = self.stops()
        areas, area_ids = self.areas()
        stop_areas = self.stop_areas(area_ids, stop_ids)
        networks, network_file_ids = self.networks()
        network_ids = None if network_file_ids is None else network_file_ids | route_net_ids
        if route_network_col:
            for name in ("networks.txt", "route_networks.txt"):
                if self.source.has(name):
                    self.add(
                        name, 0, None,
                        f"{name} is forbidden when routes.txt has a network_id column; "
                        "use one or the other",
                    )
            route_networks = {r.route_id: r.network_id for r in routes.values() if r.network_id}
        else:
            route_networks = self.route_networks(network_file_ids, route_ids)
            routes = {
                route_id: dataclasses.replace(route, network_id=route_networks.get(route_id))
                for route_id, route in routes.items()
            }
        fare_media, media_ids = self.fare_media()
        rider_categories, category_ids = self.rider_categories()
        calendar, calendar_dates, service_ids = self.calendars()
        timeframes, timeframe_group_ids = self.timeframes(service_ids)
        fare_products, product_ids = self.fare_products(category_ids, media_ids, rider_categories)
        leg_rules, has_rule_priority, leg_group_ids = self.fare_leg_rules(
            network_ids, area_ids, timeframe_group_ids, product_ids
        )
        join_rules = self.fare_leg_join_rules(network_ids, stop_ids)
        transfer_rules = self.fare_transfer_rules(leg_group_ids, product_ids)
        if self.problems:
            order = {name: index for index, name in enumerate(FEED_FILES)}
            self.problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line))
            raise FeedError(self.problems)
        return Feed(
            agencies=agencies,
            routes=routes,
            stops=stops,
            fare_media=fare_media,
            rider_categories=rider_categories,
            fare_products=fare_products,
            fare_leg_rules=leg_rules,
            has_rule_priority=has_rule_priority,
            fare_leg_join_rules=join_rules,
            fare_transfer_rules=transfer_rules,
            timeframes=timeframes,
            calendar=calendar,
            calendar_dates=calendar_dates,
            networks=networks,
            route_networks=route_networks,
            areas=areas,
            stop_areas=stop_areas,
        )

    def agencies(self) -> tuple[dict[str, Agency], set[str] | None]:
        table = self.table("agency.txt")
        agencies: dict[str, Agency] = {}
        seen: dict[str, int] = {}
        first_timezone: tuple[str, int] | None = None
        for row in self.rows(table):
            agency_id = row.text("agency_id")
            if agency_id is None and len(table.rows) > 1:  # type: ignore[union-attr]
                row.problem("agency_id", "required when agency.txt has more than one agency")
            name = row.text("agency_name", required=True)
            timezone = row.timezone("agency_timezone", required=True)
            if timezone is not None:
                if first_timezone is None:
                    first_timezone = (timezone, row.line)
                elif timezone != first_timezone[0]:
                    row.problem(
                        "agency_timezone",
                        f"{timezone!r} differs from {first_timezone[0]!r} (line "
                        f"{first_timezone[1]}): all agencies must share one timezone",
                    )
            key = agency_id or ""
            if row.unique(seen, key, "agency_id", f"agency_id {key!r}") and row.ok:
                agencies[key] = Agency(key, name, timezone)  # type: ignore[arg-type]
        return agencies, (None if table is None else set(seen))

    def routes(
        self, agency_ids: set[str] | None
    ) -> tuple[dict[str, Route], set[str] | None, bool, set[str]]:
        table = self.table("routes.txt")
        has_network = table is not None and "network_id" in table.columns
        routes: dict[str, Route] = {}
        seen: dict[str, int] = {}
        network_ids: set[str] = set()
        for row in self.rows(table):
            route_id = row.text("route_id", required=True)
            agency_id = row.ref("agency_id", agency_ids, "agency.txt")
            if agency_id is None and agency_ids is not None:
                if len(agency_ids) == 1:
                    agency_id = next(iter(agency_ids))
                else:
                    row.problem("agency_id", "required when agency.txt has more than one agency")
            route_type = row.integer(
                "route_type", True, _route_type_ok, "0-7, 11, 12 or an extended type 100-1799"
            )
            network_id = row.text("network_id")
            if network_id is not None:
                network_ids.add(network_id)
            if route_id is not None and row.unique(seen, route_id, "route_id", f"route_id {route_id!r}"):
                if row.ok:
                    routes[route_id] = Route(
                        route_id, agency_id, route_type,  # type: ignore[arg-type]
                        row.text("route_short_name"), network_id,
                    )
        return routes, (None if table is None else set(seen)), has_network, network_ids

    def stops(self) -> tuple[dict[str, Stop], set[str] | None]:
        table = self.table("stops.txt")
        stops: dict[str, Stop] = {}
        seen: dict[str, int] = {}
        location_types: dict[str, int] = {}
        parsed: list[tuple[_Row, str | None, int | None, str | None]] = []
        for row in self.rows(table):
            stop_id = row.text("stop_id", required=True)
            location_type = row.enum("location_type", range(5))
            parent = row.text("parent_station")
            if stop_id is not None and row.unique(seen, stop_id, "stop_id", f"stop_id {stop_id!r}"):
                location_types[stop_id] = location_type or 0
            parsed.append((row, stop_id, location_type, parent))
        for row, stop_id, location_type, parent in parsed:
            kind = location_type or 0
            if parent is None:
                if kind in (2, 3, 4):
                    row.problem("parent_station", f"required for location_type {kind}")
            elif kind == 1:
                row.problem("parent_station", "a station (location_type 1) has no parent_station")
            elif parent not in location_types:
                row.problem("parent_station", f"unknown parent_station {parent!r} (not in stops.txt)")
            else:
                want = 0 if kind == 4 else 1
                if location_types[parent] != want:
                    row.problem(
                        "parent_station",
                        f"parent_station {parent!r} has location_type {location_types[parent]}; "
                        f"a location_type {kind} needs a parent of location_type {want}",
                    )
            timezone = row.timezone("stop_timezone")
            if row.ok and stop_id is not None and seen.get(stop_id) == row.line:
                stops[stop_id] = Stop(stop_id, row.text("stop_name"), kind, parent, timezone)
        return stops, (None if table is None else set(seen))

    def areas(self) -> tuple[dict[str, Area], set[str]]:
        areas: dict[str, Area] = {}
        seen: dict[str, int] = {}
        for row in self.rows(self.table("areas.txt")):
            area_id = row.text("area_id", required=True)
            if area_id is not None and row.unique(seen, area_id, "area_id", f"area_id {area_id!r}"):
                if row.ok:
                    areas[area_id] = Area(area_id, row.text("area_name"))
        return areas, set(seen)

    def stop_areas(self, area_ids: set[str], stop_ids: set[str] | None) -> list[StopArea]:
        stop_areas: list[StopArea] = []
        seen: dict[tuple[str | None, str | None], int] = {}
        for row in self.rows(self.table("stop_areas.txt")):
            area_id = row.text("area_id", required=True)
            stop_id = row.text("stop_id", required=True)
            row.ref("area_id", area_ids, "areas.txt")
            row.ref("stop_id", stop_ids, "stops.txt")
            row.unique(seen, (area_id, stop_id), None, f"row {_show(area_id, stop_id)}")
            if row.ok:
                stop_areas.append(StopArea(area_id, stop_id))  # type: ignore[arg-type]
        return stop_areas

    def networks(self) -> tuple[dict[str, Network], set[str] | None]:
        table = self.table("networks.txt")
        networks: dict[str, Network] = {}
        seen: dict[str, int] = {}
        for row in self.rows(table):
            network_id = row.text("network_id", required=True)
            if network_id is not None and row.unique(
                seen, network_id, "network_id", f"network_id {network_id!r}"
            ):
                if row.ok:
                    networks[network_id] = Network(network_id, row.text("network_name"))
        return networks, set(seen)

    def route_networks(
        self, network_ids: set[str] | None, route_ids: set[str] | None
    ) -> dict[str, str]:
        route_networks: dict[str, str] = {}
        seen: dict[str, tuple[int, str | None]] = {}
        for row in self.rows(self.table("route_networks.txt")):
            network_id = row.text("network_id", required=True)
            route_id = row.text("route_id", required=True)
            row.ref("network_id", network_ids, "networks.txt")
            row.ref("route_id", route_ids, "routes.txt")
            if route_id is None:
                continue
            if route_id in seen:
                first_line, first_network = seen[route_id]
                if first_network == network_id:
                    row.problem("route_id", f"duplicate route_id {route_id!r} (first at line {first_line})")
                else:
                    row.problem(
                        "route_id",
                        f"route {route_id!r} is in two networks: {first_network!r} (line "
                        f"{first_line}) and {network_id!r}",
                    )
                continue
            seen[route_id] = (row.line, network_id)
            if row.ok:
                route_networks[route_id] = network_id  # type: ignore[assignment]
        return route_networks

    def fare_media(self) -> tuple[dict[str, FareMedia], set[str]]:
        fare_media: dict[str, FareMedia] = {}
        seen: dict[str, int] = {}
        for row in self.rows(self.table("fare_media.txt")):
            media_id = row.text("fare_media_id", required=True)
            media_type = row.enum("fare_media_type", range(5), required=True)
            if media_id is not None and row.unique(
                seen, media_id, "fare_media_id", f"fare_media_id {media_id!r}"
            ):
                if row.ok:
                    fare_media[media_id] = FareMedia(
                        media_id, row.text("fare_media_name"), media_type  # type: ignore[arg-type]
                    )
        return fare_media, set(seen)

    def rider_categories(self) -> tuple[dict[str, RiderCategory], set[str]]:
        categories: dict[str, RiderCategory] = {}
        seen: dict[str, int] = {}
        for row in self.rows(self.table("rider_categories.txt")):
            category_id = row.text("rider_category_id", required=True)
            name = row.text("rider_category_name", required=True)
            is_default = row.enum("is_default_fare_category", (0, 1))
            if category_id is not None and row.unique(
                seen, category_id, "rider_category_id", f"rider_category_id {category_id!r}"
            ):
                if row.ok:
                    categories[category_id] = RiderCategory(
                        category_id, name, is_default == 1,  # type: ignore[arg-type]
                        row.text("eligibility_url"),
                    )
        return categories, set(seen)

    def calendars(self) -> tuple[dict[str, Calendar], list[CalendarDate], set[str]]:
        calendar: dict[str, Calendar] = {}
        seen: dict[str, int] = {}
        for row in self.rows(self.table("calendar.txt")):
            service_id = row.text("service_id", required=True)
            weekdays = tuple(row.enum(day, (0, 1), required=True) == 1 for day in _WEEKDAYS)
            start = row.date("start_date", required=True)
            end = row.date("end_date", required=True)
            if start is not None and end is not None and end < start:
                row.problem("end_date", "end_date is before start_date")
            if service_id is not None and row.unique(
                seen, service_id, "service_id", f"service_id {service_id!r}"
            ):
                if row.ok:
                    calendar[service_id] = Calendar(service_id, weekdays, start, end)  # type: ignore[arg-type]
        dates: list[CalendarDate] = []
        seen_dates: dict[tuple[str | None, dt.date | None], int] = {}
        service_ids = set(seen)
        for row in self.rows(self.table("calendar_dates.txt")):
            service_id = row.text("service_id", required=True)
            date = row.date("date", required=True)
            exception_type = row.enum("exception_type", (1, 2), required=True)
            if service_id is not None:
                service_ids.add(service_id)
            if date is not None:
                row.unique(
                    seen_dates, (service_id, date), None,
                    f"(service_id, date) {_show(service_id, date.strftime('%Y%m%d'))}",
                )
            if row.ok:
                dates.append(CalendarDate(service_id, date, exception_type))  # type: ignore[arg-type]
        return calendar, dates, service_ids

    def timeframes(self, service_ids: set[str]) -> tuple[list[Timeframe], set[str]]:
        timeframes: list[Timeframe] = []
        group_ids: set[str] = set()
        intervals: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
        for row in self.rows(self.table("timeframes.txt")):
            group_id = row.text("timeframe_group_id", required=True)
            service_id = row.text("service_id", required=True)
            row.ref("service_id", service_ids, "calendar.txt or calendar_dates.txt")
            start_raw, end_raw = row.text("start_time"), row.text("end_time")
            start, end = row.time_s("start_time"), row.time_s("end_time")
            if (start_raw is None) != (end_raw is None):
                missing = "start_time" if start_raw is None else "end_time"
                row.problem(missing, "start_time and end_time must both be given or both be empty")
            elif start_raw is None:
                start, end = 0, DAY_S
            elif start is not None and end is not None and start >= end:
                row.problem("end_time", "end_time must be after start_time")
            if group_id is not None:
                group_ids.add(group_id)
            if not row.ok:
                continue
            timeframes.append(Timeframe(group_id, start, end, service_id))  # type: ignore[arg-type]
            intervals.setdefault((group_id, service_id), []).append((start, end, row.line))  # type: ignore[arg-type]
        for (group_id, service_id), spans in intervals.items():
            spans.sort()
            reach_end, reach_line = -1, 0
            for start, end, line in spans:
                if start < reach_end:
                    self.add(
                        "timeframes.txt", line, "start_time",
                        f"overlaps the interval at line {reach_line} of timeframe_group_id "
                        f"{group_id!r} for service_id {service_id!r}",
                    )
                if end > reach_end:
                    reach_end, reach_line = end, line
        return timeframes, group_ids

    def fare_products(
        self,
        category_ids: set[str],
        media_ids: set[str],
        categories: dict[str, RiderCategory],
    ) -> tuple[list[FareProduct], set[str] | None]:
        table = self.table("fare_products.txt")
        products: list[FareProduct] = []
        seen: dict[tuple[str | None, ...], int] = {}
        product_ids: set[str] = set()
        first_currency: tuple[str, int] | None = None
        product_categories: dict[str, tuple[int, list[str]]] = {}
        for row in self.rows(table):
            product_id = row.text("fare_product_id", required=True)
            category_id = row.ref("rider_category_id", category_ids, "rider_categories.txt")
            media_id = row.ref("fare_media_id", media_ids, "fare_media.txt")
            amount_raw = row.text("amount", required=True)
            currency = row.text("currency", required=True)
            amount: int | None = None
            if currency is not None:
                try:
                    currency_exponent(currency)
                except ValueError as exc:
                    row.problem("currency", str(exc))
                    currency = None
            if currency is not None:
                if first_currency is None:
                    first_currency = (currency, row.line)
                elif currency != first_currency[0]:
                    row.problem(
                        "currency",
                        f"unsupported: currency {currency!r} differs from {first_currency[0]!r} "
                        f"(line {first_currency[1]}); all fare products must share one currency",
                    )
                if amount_raw is not None:
                    try:
                        amount = amount_to_minor(amount_raw, currency)
                    except ValueError as exc:
                        row.problem("amount", str(exc))
            if product_id is not None:
                product_ids.add(product_id)
                if category_id is not None:
                    entry = product_categories.setdefault(product_id, (row.line, []))
                    if category_id not in entry[1]:
                        entry[1].append(category_id)
            row.unique(
                seen, (product_id, category_id, media_id), None,
                "key (fare_product_id, rider_category_id, fare_media_id) = "
                + _show(product_id, category_id, media_id),
            )
            if row.ok:
                products.append(
                    FareProduct(
                        product_id, amount, currency, row.text("fare_product_name"),  # type: ignore[arg-type]
                        category_id, media_id,
                    )
                )
        for product_id, (line, named) in product_categories.items():
            if len(named) < 2 or any(c not in category_ids for c in named):
                continue
            defaults = [c for c in named if c in categories and categories[c].is_default_fare_category]
            if len(defaults) != 1:
                self.add(
                    "fare_products.txt", line, "rider_category_id",
                    f"fare_product_id {product_id!r} has rider categories "
                    f"{', '.join(map(repr, named))}: exactly one of them must have "
                    f"is_default_fare_category=1 in rider_categories.txt (found {len(defaults)})",
                )
        return products, (None if table is None else product_ids)

    def fare_leg_rules(
        self,
        network_ids: set[str] | None,
        area_ids: set[str],
        timeframe_group_ids: set[str],
        product_ids: set[str] | None,
    ) -> tuple[list[FareLegRule], bool, set[str]]:
        table = self.table("fare_leg_rules.txt")
        has_rule_priority = table is not None and "rule_priority" in table.columns
        rules: list[FareLegRule] = []
        seen: dict[tuple[str | None, ...], tuple[int, str | None]] = {}
        leg_group_ids: set[str] = set()
        networks_where = "networks.txt or routes.network_id"
        for row in self.rows(table):
            leg_group_id = row.text("leg_group_id")
            network_id = row.ref("network_id", network_ids, networks_where)
            from_area = row.ref("from_area_id", area_ids, "areas.txt")
            to_area = row.ref("to_area_id", area_ids, "areas.txt")
            from_tf = row.ref("from_timeframe_group_id", timeframe_group_ids, "timeframes.txt")
            to_tf = row.ref("to_timeframe_group_id", timeframe_group_ids, "timeframes.txt")
            product_id = row.text("fare_product_id", required=True)
            row.ref("fare_product_id", product_ids, "fare_products.txt")
            priority = row.integer("rule_priority", False, lambda v: v >= 0, "an integer >= 0")
            if leg_group_id is not None:
                leg_group_ids.add(leg_group_id)
            key = (network_id, from_area, to_area, from_tf, to_tf, product_id)
            if key in seen:
                first_line, first_group = seen[key]
                if first_group != leg_group_id:
                    row.problem(
                        "leg_group_id",
                        f"this rule is already in leg group {first_group or ''!r} (line "
                        f"{first_line}); a rule belongs to one leg group",
                    )
                else:
                    row.problem(
                        None,
                        "duplicate key (network_id, from_area_id, to_area_id, "
                        "from_timeframe_group_id, to_timeframe_group_id, fare_product_id) = "
                        f"{_show(*key)} (first at line {first_line})",
                    )
            else:
                seen[key] = (row.line, leg_group_id)
            if row.ok:
                rules.append(
                    FareLegRule(
                        product_id, leg_group_id, network_id, from_area, to_area,  # type: ignore[arg-type]
                        from_tf, to_tf, priority,
                    )
                )
        return rules, has_rule_priority, leg_group_ids

    def fare_leg_join_rules(
        self, network_ids: set[str] | None, stop_ids: set[str] | None
    ) -> list[FareLegJoinRule]:
        rules: list[FareLegJoinRule] = []
        seen: dict[tuple[str | None, ...], int] = {}
        networks_where = "networks.txt or routes.network_id"
        for row in self.rows(self.table("fare_leg_join_rules.txt")):
            from_network = row.text("from_network_id", required=True)
            to_network = row.text("to_network_id", required=True)
            row.ref("from_network_id", network_ids, networks_where)
            row.ref("to_network_id", network_ids, networks_where)
            from_stop = row.ref("from_stop_id", stop_ids, "stops.txt")
            to_stop = row.ref("to_stop_id", stop_ids, "stops.txt")
            if (from_stop is None) != (to_stop is None):
                missing = "from_stop_id" if from_stop is None else "to_stop_id"
                row.problem(missing, "from_stop_id and to_stop_id must both be given or both be empty")
            key = (from_network, to_network, from_stop, to_stop)
            row.unique(
                seen, key, None,
                f"key (from_network_id, to_network_id, from_stop_id, to_stop_id) = {_show(*key)}",
            )
            if row.ok:
                rules.append(FareLegJoinRule(from_network, to_network, from_stop, to_stop))  # type: ignore[arg-type]
        return rules

    def fare_transfer_rules(
        self, leg_group_ids: set[str], product_ids: set[str] | None
    ) -> list[FareTransferRule]:
        rules: list[FareTransferRule] = []
        seen: dict[tuple[object, ...], int] = {}
        for row in self.rows(self.table("fare_transfer_rules.txt")):
            from_group = row.ref("from_leg_group_id", leg_group_ids, "fare_leg_rules.leg_group_id")
            to_group = row.ref("to_leg_group_id", leg_group_ids, "fare_leg_rules.leg_group_id")
            transfer_type = row.enum("fare_transfer_type", range(3), required=True)
            count = row.integer("transfer_count", False, lambda v: v == -1 or v >= 1, "-1 or >= 1")
            limit = row.integer("duration_limit", False, lambda v: v > 0, "seconds > 0")
            limit_type = row.enum("duration_limit_type", range(4))
            product_id = row.ref("fare_product_id", product_ids, "fare_products.txt")
            count_present = row.cells.get("transfer_count") is not None
            if from_group == to_group and not count_present:
                row.problem(
                    "transfer_count",
                    "required when from_leg_group_id equals to_leg_group_id "
                    "(use -1 for unlimited transfers)",
                )
            elif from_group != to_group and count_present:
                row.problem(
                    "transfer_count",
                    "forbidden when from_leg_group_id and to_leg_group_id differ",
                )
            limit_present = row.cells.get("duration_limit") is not None
            limit_type_present = row.cells.get("duration_limit_type") is not None
            if limit_present and not limit_type_present:
                row.problem("duration_limit_type", "required when duration_limit is given")
            elif limit_type_present and not limit_present:
                row.problem("duration_limit_type", "forbidden when duration_limit is empty")
            key = (from_group, to_group, product_id, count, limit)
            row.unique(
                seen, key, None,
                "key (from_leg_group_id, to_leg_group_id, fare_product_id, transfer_count, "
                f"duration_limit) = ({from_group or ''!r}, {to_group or ''!r}, "
                f"{product_id or ''!r}, {count}, {limit})",
            )
            if row.ok:
                rules.append(
                    FareTransferRule(
                        transfer_type, from_group, to_group, count, limit, limit_type,  # type: ignore[arg-type]
                        product_id,
                    )
                )
        return rules


def load_feed(path: str | os.PathLike[str], known_timezones: Collection[str] = ()) -> Feed:
    """Load and check the GTFS fare feed at `path` (a directory, a .zip, or a .zip with one folder).

    Returns the `Feed` if it has no problem at all. Otherwise raises one `FeedError`
    whose `.problems` lists every problem found in every file (file, line, column,
    message), sorted by file and line; nothing is half-loaded. `known_timezones`: zone
    names accepted without the host's tz database (their offsets come with the feed).
    """
    source = _Source(path)
    try:
        return _Loader(source, known_timezones).load()
    finally:
        source.close()
