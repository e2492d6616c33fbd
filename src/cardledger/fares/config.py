"""The fare config fares.toml: what the GTFS feed does not say about a card system.

The config is a TOML file named `fares.toml` beside the feed: in the feed directory, or
at the root of the feed zip (or of its one top-level folder); `load_config_beside`
finds it there. Every money value is a decimal *string* in the feed's currency (the
currency of fare_products.txt), converted exactly to integer minor units (fen for
CNY); a TOML float or integer is refused for money, so money never touches float.

    fare_media_id = "harbin_card"      # optional: the fare_media_id taps are rated with
    journey_break_s = 5400             # optional, default 5400 (1..86400): a tap more than
                                       #   this many seconds after the card's previous tap
                                       #   starts a new journey
    day_start_s = 0                    # optional, default 0 (0..86399): the service day
                                       #   starts this many seconds after local midnight
    metered_network_ids = ["taxi"]     # optional: networks whose fare is the amount the
                                       #   terminal sends

    [rider_categories]                 # required (may be empty): ledger card category code
    0 = "adult"                        #   (0..65535, written as a TOML key) -> the feed's
    1 = "student"                      #   rider_category_id

    [operators]                        # required (may be empty): agency_id -> operator
    harbin_metro = 9002                #   account id (an integer 1..2**63-1)

    [negative_balance]                 # optional: fare_product_id -> the negative balance
    bus_1 = "1.00"                     #   the product allows (decimal string >= 0)

    [[caps]]                           # optional, repeated: fare caps
    period = "day"                     # "day" | "week" (Monday-Sunday) | "rolling_7d" | "month"
    amount = "12.00"                   # > 0
    rider_category_ids = ["adult"]     # optional, missing = every category
    network_ids = ["bus", "metro"]     # optional, missing = every network

    [[tiers]]                          # optional, repeated: monthly spend tiers (Beijing style)
    network_ids = ["metro"]            # required
    rider_category_ids = ["adult"]     # optional, missing = every category
    from_amount = "100.00"             # spend this month in these networks (>= 0) at or
                                       #   above which...
    percent_off = 20                   # ...later fares get this discount (1..100)
    until_amount = "400.00"            # optional (> from_amount): at or above this spend,
                                       #   this tier no longer applies

    [[entry_exit]]                     # optional, repeated: networks with metro-style entry
    network_id = "metro"               #   and exit taps (one entry per network)
    max_fare = "9.00"                  # held on entry (> 0)
    incomplete_timeout_s = 14400       # an entry with no exit within this many seconds is
                                       #   an incomplete journey (1..604800)
    incomplete_charge = "9.00"         # charged for an incomplete journey (0..max_fare)
    same_station_charge = "2.00"       # optional (0..max_fare): entering and leaving at one
                                       #   station costs this; missing = rated by the feed

Lists of ids must be non-empty (leave the key out to mean "every") and hold no
duplicates. A network may not be both metered and entry_exit. Unknown keys are problems.

`load_config` checks the file on its own and raises one `ConfigError` listing every
problem: file "fares.toml", line 0 (line N only for TOML syntax errors), and the key
path in `column`, e.g. "caps[2].amount" (array indexes count from 0).
`check_config_against_feed` then checks the references into a loaded feed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef, import-not-found]

from cardledger.fares.errors import ConfigError, FeedError, Problem
from cardledger.fares.gtfs import amount_to_minor, currency_exponent, read_feed_file
from cardledger.fares.model import Feed

CONFIG_FILE = "fares.toml"
#: A fares.toml larger than this is refused.
CONFIG_BYTES_MAX = 1024 * 1024
JOURNEY_BREAK_S_DEFAULT = 5400
JOURNEY_BREAK_S_MAX = 86_400
DAY_START_S_MAX = 86_399
CARD_CATEGORY_MAX = 65_535
OPERATOR_ACCOUNT_MAX = 2**63 - 1
INCOMPLETE_TIMEOUT_S_MAX = 7 * 86_400
CAP_PERIODS = ("day", "week", "rolling_7d", "month")

_TOP_KEYS = frozenset(
    {
        "fare_media_id", "journey_break_s", "day_start_s", "metered_network_ids",
        "rider_categories", "operators", "negative_balance", "caps", "tiers", "entry_exit",
    }
)
_CAP_KEYS = frozenset({"period", "amount", "rider_category_ids", "network_ids"})
_TIER_KEYS = frozenset(
    {"network_ids", "rider_category_ids", "from_amount", "percent_off", "until_amount"}
)
_ENTRY_EXIT_KEYS = frozenset(
    {"network_id", "max_fare", "incomplete_timeout_s", "incomplete_charge", "same_station_charge"}
)
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_CATEGORY_CODE_RE = re.compile(r"0|[1-9][0-9]{0,4}")
_TOML_LINE_RE = re.compile(r"at line (\d+)")


@dataclasses.dataclass(frozen=True)
class Cap:
    """A fare cap: at most `amount_minor` per `period` for the categories and networks named.

    `None` for `rider_category_ids` or `network_ids` means every one.
    """

    period: str
    amount_minor: int
    rider_category_ids: tuple[str, ...] | None
    network_ids: tuple[str, ...] | None


@dataclasses.dataclass(frozen=True)
class Tier:
    """A monthly spend tier: after `from_minor` spent this month in `network_ids`, fares get
    `percent_off` off, until `until_minor` spent (None: no upper end)."""

    network_ids: tuple[str, ...]
    from_minor: int
    percent_off: int
    rider_category_ids: tuple[str, ...] | None
    until_minor: int | None


@dataclasses.dataclass(frozen=True)
class EntryExit:
    """A network rated on entry and exit taps, holding `max_fare_minor` between them."""

    network_id: str
    max_fare_minor: int
    incomplete_timeout_s: int
    incomplete_charge_minor: int
    same_station_charge_minor: int | None


@dataclasses.dataclass(frozen=True)
class FareConfig:
    """The checked contents of fares.toml; money in minor units of the feed's currency."""

    fare_media_id: str | None
    journey_break_s: int
    day_start_s: int
    metered_network_ids: tuple[str, ...]
    rider_categories: dict[int, str]
    operators: dict[str, int]
    negative_balance_minor: dict[str, int]
    caps: tuple[Cap, ...]
    tiers: tuple[Tier, ...]
    entry_exit: tuple[EntryExit, ...]

    @classmethod
    def default(cls) -> FareConfig:
        """The config of a bare feed used only for quoting: defaults, no categories, no operators."""
        return cls(
            fare_media_id=None,
            journey_break_s=JOURNEY_BREAK_S_DEFAULT,
            day_start_s=0,
            metered_network_ids=(),
            rider_categories={},
            operators={},
            negative_balance_minor={},
            caps=(),
            tiers=(),
            entry_exit=(),
        )


def _key_path(prefix: str, key: str) -> str:
    shown = key if _BARE_KEY_RE.fullmatch(key) else '"' + key.replace('"', '\\"') + '"'
    return f"{prefix}.{shown}" if prefix else shown


class _Checker:
    """Typed getters over a TOML table that record a Problem (key path in `column`) per fault."""

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.problems: list[Problem] = []

    def add(self, path: str | None, message: str) -> None:
        self.problems.append(Problem(CONFIG_FILE, 0, path, message))

    def table(self, parent: Mapping[str, Any], key: str, path: str, required: bool) -> dict | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(path, f"required table [{key}] is missing (it may be empty)")
            return None
        if not isinstance(value, dict):
            self.add(path, f"must be a table [{key}]")
            return None
        return value

    def array_of_tables(self, parent: Mapping[str, Any], key: str) -> list[tuple[str, dict]]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.add(key, f"must be an array of tables, written [[{key}]]")
            return []
        return [(f"{key}[{index}]", item) for index, item in enumerate(value)]

    def unknown_keys(self, table: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                self.add(_key_path(prefix, key), f"unknown key {key!r}")

    def string(self, table: Mapping[str, Any], key: str, path: str, required: bool = False) -> str | None:
        value = table.get(key)
        if value is None:
            if required:
                self.add(path, "required key is missing")
            return None
        if not isinstance(value, str) or not value:
            self.add(path, "must be a non-empty string")
            return None
        return value

    def integer(
        self, table: Mapping[str, Any], key: str, path: str, lo: int, hi: int,
        default: int | None = None,
    ) -> int | None:
        value = table.get(key)
        if value is None:
            if default is None:
                self.add(path, "required key is missing")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"must be an integer {lo}..{hi}")
            return None
        if not lo <= value <= hi:
            self.add(path, f"{value} is out of range (expected {lo}..{hi})")
            return None
        return value

    def money(
        self, table: Mapping[str, Any], key: str, path: str, required: bool,
        lo_minor: int | None = None, hi_minor: int | None = None, bounds: str = "",
    ) -> int | None:
        """A decimal string in minor units, within [lo_minor, hi_minor] (`bounds` names them)."""
        value = table.get(key)
        if value is None:
            if required:
                self.add(path, "required key is missing")
            return None
        if not isinstance(value, str):
            self.add(
                path,
                f"money must be a decimal string like \"12.00\" (quote it), not a TOML "
                f"{type(value).__name__}",
            )
            return None
        try:
            minor = amount_to_minor(value, self.currency)
        except ValueError as exc:
            self.add(path, str(exc))
            return None
        if (lo_minor is not None and minor < lo_minor) or (hi_minor is not None and minor > hi_minor):
            self.add(path, f"{value!r} is out of range (expected {bounds})")
            return None
        return minor

    def ids(
        self, table: Mapping[str, Any], key: str, path: str, required: bool = False
    ) -> tuple[str, ...] | None:
        value = table.get(key)
        if value is None:
            if required:
                self.add(path, "required key is missing")
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.add(path, "must be a list of non-empty strings")
            return None
        if not value:
            self.add(path, "must not be empty (leave the key out to mean every one)")
            return None
        duplicates = sorted({v for v in value if value.count(v) > 1})
        if duplicates:
            self.add(path, f"duplicate ids {', '.join(map(repr, duplicates))}")
            return None
        return tuple(value)


def _parse(document: dict[str, Any], currency: str) -> FareConfig:
    check = _Checker(currency)
    check.unknown_keys(document, _TOP_KEYS, "")
    fare_media_id = check.string(document, "fare_media_id", "fare_media_id")
    journey_break_s = check.integer(
        document, "journey_break_s", "journey_break_s", 1, JOURNEY_BREAK_S_MAX,
        JOURNEY_BREAK_S_DEFAULT,
    )
    day_start_s = check.integer(document, "day_start_s", "day_start_s", 0, DAY_START_S_MAX, 0)
    metered = check.ids(document, "metered_network_ids", "metered_network_ids") or ()

    rider_categories: dict[int, str] = {}
    table = check.table(document, "rider_categories", "rider_categories", required=True)
    for code, category_id in (table or {}).items():
        path = _key_path("rider_categories", code)
        if not _CATEGORY_CODE_RE.fullmatch(code) or int(code) > CARD_CATEGORY_MAX:
            check.add(path, f"card category code {code!r} must be an integer 0..{CARD_CATEGORY_MAX}")
        elif not isinstance(category_id, str) or not category_id:
            check.add(path, "must be a rider_category_id (a non-empty string)")
        else:
            rider_categories[int(code)] = category_id

    operators: dict[str, int] = {}
    table = check.table(document, "operators", "operators", required=True)
    for agency_id in table or {}:
        path = _key_path("operators", agency_id)
        account = check.integer(table, agency_id, path, 1, OPERATOR_ACCOUNT_MAX)  # type: ignore[arg-type]
        if account is not None:
            operators[agency_id] = account

    negative_balance: dict[str, int] = {}
    table = check.table(document, "negative_balance", "negative_balance", required=False)
    for product_id in table or {}:
        path = _key_path("negative_balance", product_id)
        minor = check.money(table, product_id, path, True, 0, None, ">= 0")  # type: ignore[arg-type]
        if minor is not None:
            negative_balance[product_id] = minor

    caps: list[Cap] = []
    for prefix, item in check.array_of_tables(document, "caps"):
        check.unknown_keys(item, _CAP_KEYS, prefix)
        period = item.get("period")
        if period not in CAP_PERIODS:
            check.add(
                f"{prefix}.period",
                "required key is missing" if period is None
                else f"{period!r} is not one of {', '.join(map(repr, CAP_PERIODS))}",
            )
        amount = check.money(item, "amount", f"{prefix}.amount", True, 1, None, "> 0")
        categories = check.ids(item, "rider_category_ids", f"{prefix}.rider_category_ids")
        networks = check.ids(item, "network_ids", f"{prefix}.network_ids")
        if period in CAP_PERIODS and amount is not None:
            caps.append(Cap(period, amount, categories, networks))

    tiers: list[Tier] = []
    for prefix, item in check.array_of_tables(document, "tiers"):
        check.unknown_keys(item, _TIER_KEYS, prefix)
        networks = check.ids(item, "network_ids", f"{prefix}.network_ids", required=True)
        categories = check.ids(item, "rider_category_ids", f"{prefix}.rider_category_ids")
        from_minor = check.money(item, "from_amount", f"{prefix}.from_amount", True, 0, None, ">= 0")
        percent_off = check.integer(item, "percent_off", f"{prefix}.percent_off", 1, 100)
        until_minor = None
        if from_minor is not None:
            until_minor = check.money(
                item, "until_amount", f"{prefix}.until_amount", False, from_minor + 1, None,
                "> from_amount",
            )
        if networks is not None and from_minor is not None and percent_off is not None:
            tiers.append(Tier(networks, from_minor, percent_off, categories, until_minor))

    entry_exit: list[EntryExit] = []
    entry_exit_networks: dict[str, str] = {}
    for prefix, item in check.array_of_tables(document, "entry_exit"):
        check.unknown_keys(item, _ENTRY_EXIT_KEYS, prefix)
        network_id = check.string(item, "network_id", f"{prefix}.network_id", required=True)
        if network_id is not None:
            if network_id in entry_exit_networks:
                check.add(
                    f"{prefix}.network_id",
                    f"network {network_id!r} already has an entry_exit ({entry_exit_networks[network_id]})",
                )
            elif network_id in metered:
                check.add(
                    f"{prefix}.network_id",
                    f"network {network_id!r} is also in metered_network_ids; it can be only one",
                )
            entry_exit_networks.setdefault(network_id, prefix)
        max_fare = check.money(item, "max_fare", f"{prefix}.max_fare", True, 1, None, "> 0")
        timeout_s = check.integer(
            item, "incomplete_timeout_s", f"{prefix}.incomplete_timeout_s", 1,
            INCOMPLETE_TIMEOUT_S_MAX,
        )
        hi, bounds = (None, ">= 0") if max_fare is None else (max_fare, "0..max_fare")
        incomplete = check.money(
            item, "incomplete_charge", f"{prefix}.incomplete_charge", True, 0, hi, bounds
        )
        same_station = check.money(
            item, "same_station_charge", f"{prefix}.same_station_charge", False, 0, hi, bounds
        )
        if None not in (network_id, max_fare, timeout_s, incomplete):
            entry_exit.append(
                EntryExit(network_id, max_fare, timeout_s, incomplete, same_station)  # type: ignore[arg-type]
            )

    if check.problems:
        raise ConfigError(check.problems)
    return FareConfig(
        fare_media_id=fare_media_id,
        journey_break_s=journey_break_s,  # type: ignore[arg-type]
        day_start_s=day_start_s,  # type: ignore[arg-type]
        metered_network_ids=metered,
        rider_categories=rider_categories,
        operators=operators,
        negative_balance_minor=negative_balance,
        caps=tuple(caps),
        tiers=tuple(tiers),
        entry_exit=tuple(entry_exit),
    )


def load_config(path_or_bytes: str | os.PathLike[str] | bytes, currency: str = "CNY") -> FareConfig:
    """Load and check fares.toml from a path or from its bytes; money in `currency` minor units.

    Raises ConfigError listing every problem of the file (see the module docstring for
    the format); ValueError if `currency` is not an ISO 4217 code this package knows.
    References into the feed are checked by `check_config_against_feed`, not here.
    """
    currency_exponent(currency)
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
    else:
        try:
            with open(path_or_bytes, "rb") as file:
                data = file.read(CONFIG_BYTES_MAX + 1)
        except OSError as exc:
            raise ConfigError(
                [Problem(CONFIG_FILE, 0, None, f"cannot read {os.fspath(path_or_bytes)!r} ({exc})")]
            ) from None
    if len(data) > CONFIG_BYTES_MAX:
        raise ConfigError([Problem(CONFIG_FILE, 0, None, f"larger than {CONFIG_BYTES_MAX} bytes")])
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([Problem(CONFIG_FILE, line, None, f"not valid UTF-8 ({exc.reason})")]) from None
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE_RE.search(str(exc))
        # ("... (at end of document)": the last line)
        line = int(match.group(1)) if match else len(data.splitlines()) or 1
        raise ConfigError([Problem(CONFIG_FILE, line, None, f"not valid TOML ({exc})")]) from None
    except RecursionError:
        raise ConfigError([Problem(CONFIG_FILE, 0, None, "not valid TOML (arrays or tables nested too deep)")]) from None
    except ValueError as exc:  # an integer literal too long for Python to read
        found = re.search(rb"[0-9_]{4000,}", data)
        line = data.count(b"\n", 0, found.start()) + 1 if found else 0
        raise ConfigError([Problem(CONFIG_FILE, line, None, f"not valid TOML ({exc})")]) from None
    return _parse(document, currency)


def load_config_beside(feed_path: str | os.PathLike[str], currency: str = "CNY") -> FareConfig | None:
    """Load fares.toml from beside the feed at `feed_path` (its directory or zip root), or None.

    Returns None if the feed has no fares.toml; raises ConfigError if it has a bad one,
    FeedError if `feed_path` is neither a directory nor a zip.
    """
    try:
        data = read_feed_file(feed_path, CONFIG_FILE)
    except FeedError:
        raise
    except ValueError as exc:  # the file is there but cannot be read
        raise ConfigError([Problem(CONFIG_FILE, 0, None, str(exc))]) from None
    return None if data is None else load_config(data, currency)


def check_config_against_feed(config: FareConfig, feed: Feed) -> list[Problem]:
    """The config's references into `feed` that do not resolve; an empty list if all do.

    Checks fare_media_id, rider categories, operators (each must name an agency, and
    every agency that has routes needs an operator), negative_balance fare products,
    and every network id (metered, caps, tiers, entry_exit). Each problem has file
    "fares.toml", line 0 and the key path in `column`.
    """
    problems: list[Problem] = []

    def add(path: str, message: str) -> None:
        problems.append(Problem(CONFIG_FILE, 0, path, message))

    network_ids = set(feed.networks) | set(feed.route_networks.values())
    network_ids |= {route.network_id for route in feed.routes.values() if route.network_id}
    product_ids = {product.fare_product_id for product in feed.fare_products}

    def check_ids(path: str, ids: tuple[str, ...] | None, known: set[str] | dict, what: str, where: str):
        for value in ids or ():
            if value not in known:
                add(path, f"unknown {what} {value!r} (not in {where})")

    networks_where = "the feed's networks"
    categories_where = "rider_categories.txt"
    if config.fare_media_id is not None and config.fare_media_id not in feed.fare_media:
        add("fare_media_id", f"unknown fare_media_id {config.fare_media_id!r} (not in fare_media.txt)")
    check_ids("metered_network_ids", config.metered_network_ids, network_ids, "network_id", networks_where)
    for code, category_id in config.rider_categories.items():
        check_ids(
            f"rider_categories.{code}", (category_id,), feed.rider_categories,
            "rider_category_id", categories_where,
        )
    for agency_id in config.operators:
        if agency_id not in feed.agencies:
            add(_key_path("operators", agency_id), f"unknown agency_id {agency_id!r} (not in agency.txt)")
    for agency_id in dict.fromkeys(route.agency_id for route in feed.routes.values()):
        if agency_id not in config.operators:
            add(
                "operators",
                f"agency {agency_id!r} has routes but no operator account; add "
                f"{_key_path('', agency_id)} = <account id> under [operators]",
            )
    for product_id in config.negative_balance_minor:
        if product_id not in product_ids:
            add(
                _key_path("negative_balance", product_id),
                f"unknown fare_product_id {product_id!r} (not in fare_products.txt)",
            )
    for index, cap in enumerate(config.caps):
        check_ids(f"caps[{index}].network_ids", cap.network_ids, network_ids, "network_id", networks_where)
        check_ids(
            f"caps[{index}].rider_category_ids", cap.rider_category_ids, feed.rider_categories,
            "rider_category_id", categories_where,
        )
    for index, tier in enumerate(config.tiers):
        check_ids(f"tiers[{index}].network_ids", tier.network_ids, network_ids, "network_id", networks_where)
        check_ids(
            f"tiers[{index}].rider_category_ids", tier.rider_category_ids, feed.rider_categories,
            "rider_category_id", categories_where,
        )
    for index, entry in enumerate(config.entry_exit):
        check_ids(
            f"entry_exit[{index}].network_id", (entry.network_id,), network_ids, "network_id",
            networks_where,
        )
    return problems
