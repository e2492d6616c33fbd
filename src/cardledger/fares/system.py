"""`FareSystem`: a loaded fare feed with its transit-card config, ready to quote.

A FareSystem is immutable once built. `quote()` prices one journey given with GTFS
ids and aware datetimes; `quote_many()` prices batches of journeys given as index
arrays. Both run the evaluator the ledger's taps use: the Cython core's, unless
the pure-Python reference engine is selected (CARDLEDGER_PURE=1), whose evaluator
(`cardledger.engine.spec.fares`) is the specification of the core's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import importlib.resources
import io
import json
import os
import pathlib
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine.select import CYTHON, IMPLEMENTATION, evaluator_for
from ..engine.spec.fares import FareDiscount, FareStatus, ReferenceEvaluator
from ..schema import US_PER_S
from .config import FareConfig, check_config_against_feed, load_config
from .errors import ConfigError, FeedError, Problem, UnknownFareError
from .gtfs import load_feed
from .model import Feed
from .tables import GTFS_RULES, GTFS_RULES_LEGACY, FareTables, compile_feed
from .timezones import TIMEZONES_FILE, Transitions, decode_timezones, encode_timezones

#: The config file that sits beside a feed's .txt files.
CONFIG_FILE = "fares.toml"
#: One leg of a journey, in a fare system's indexes (`FareSystem.quote_many`).
LEG_DTYPE = np.dtype(
    [
        ("route", "<i4"),
        ("from_stop", "<i4"),
        ("to_stop", "<i4"),
        ("reserved", "<i4"),
        ("departure_us", "<i8"),
        ("arrival_us", "<i8"),
    ]
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
#: Leg times quote_many accepts: ±2^60 µs (±36,000 years) keeps every span in int64.
TIME_US_LIMIT = 1 << 60


@dataclasses.dataclass(frozen=True)
class Leg:
    """One ride: a route boarded at one stop and left at another.

    `departure` and `arrival` must be timezone-aware datetimes (the fare events'
    instants); timeframes are evaluated in the stops' local time.
    """

    route_id: str
    from_stop_id: str
    to_stop_id: str
    departure: dt.datetime
    arrival: dt.datetime


@dataclasses.dataclass(frozen=True)
class Quote:
    """A journey's total fare, in minor units of `currency` (fen for CNY)."""

    amount: int
    currency: str
    discounts: FareDiscount = FareDiscount.NONE


def _datetime_us(value: dt.datetime, what: str) -> int:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {value.isoformat()})")
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


class FareSystem:
    """A fare system: GTFS Fares v2 feed + transit-card config, compiled to tables."""

    def __init__(
        self,
        feed: Feed,
        config: FareConfig | None = None,
        *,
        files: dict[str, bytes] | None = None,
        previous: FareSystem | None = None,
        timezones: dict[str, Transitions] | None = None,
        gtfs_rules: int | None = None,
    ) -> None:
        """Build from a validated `Feed` (use `from_gtfs`/`harbin` normally).

        `files` are the source files (kept so a ledger can persist the system
        byte for byte); `previous` keeps its route and stop indexes stable;
        `timezones` are UTC offsets recorded with the system (`timezones.py`). The
        offsets the system is compiled with are added to `files` as TIMEZONES_FILE
        when it does not hold them all, so a ledger rates its journal the same after
        the host's tz database changes. `gtfs_rules`: how stops.txt and stop_areas.txt
        are read (`tables.GTFS_RULES`, the default, is recorded in `files` as
        RULES_FILE; a system a ledger stored without that file is rebuilt with
        `tables.GTFS_RULES_LEGACY`, as it was rated then).
        """
        self.feed = feed
        # A feed without fares.toml can quote; its taps find no operator to pay
        # (OPERATOR_NOT_FOUND) until a config names one.
        self.config = config if config is not None else FareConfig.default()
        problems = check_config_against_feed(self.config, feed) if config is not None else []
        if problems:
            raise ConfigError(problems)
        self.files = dict(files or {})
        self.gtfs_rules = GTFS_RULES if gtfs_rules is None else gtfs_rules
        self.tables: FareTables = compile_feed(
            feed, self.config, previous.tables if previous is not None else None, timezones, self.gtfs_rules
        )
        if self.gtfs_rules == GTFS_RULES and RULES_FILE not in self.files:
            self.files[RULES_FILE] = encode_rules(GTFS_RULES)
        if timezones is None or not set(self.tables.tz_names) <= set(timezones):
            self.files[TIMEZONES_FILE] = encode_timezones(self._compiled_timezones())
        self._route_ix = {r: i for i, r in enumerate(self.tables.route_ids) if r in feed.routes}
        self._stop_ix = {s: i for i, s in enumerate(self.tables.stop_ids) if s in feed.stops}
        self._cat_ix = {c: i for i, c in enumerate(self.tables.rider_category_ids)}
        self._med_ix = {m: i for i, m in enumerate(self.tables.fare_media_ids)}
        self._reference = ReferenceEvaluator(self.tables)
        self._core: Any = None
        if IMPLEMENTATION == CYTHON:
            self._core = evaluator_for(CYTHON)(self.tables)

    def _compiled_timezones(self) -> dict[str, Transitions]:
        """The UTC offsets of every zone the compiled tables use, by zone name."""
        t = self.tables
        ptr = t.tz_ptr.tolist()
        froms, offs = t.tz_from_us.tolist(), t.tz_offset_s.tolist()
        return {name: (tuple(froms[ptr[z] : ptr[z + 1]]), tuple(offs[ptr[z] : ptr[z + 1]]))
                for z, name in enumerate(t.tz_names)}

    # -- construction -------------------------------------------------------

    @classmethod
    def from_gtfs(
        cls,
        path: str | os.PathLike[str],
        config: FareConfig | str | os.PathLike[str] | None = None,
        *,
        previous: FareSystem | None = None,
        gtfs_rules: int | None = None,
    ) -> FareSystem:
        """Load a feed from a directory or .zip; its `fares.toml` (if any) is the config.

        An explicit `config` (a FareConfig or a path to a TOML file) overrides the
        feed's own. Raises `FeedError` listing every problem found. `gtfs_rules`: as
        for the constructor; by default the feed's RULES_FILE, else the current rules.
        """
        p = pathlib.Path(path)
        files = _read_files(p)
        if gtfs_rules is None and RULES_FILE in files:
            gtfs_rules = decode_rules(files[RULES_FILE])
        timezones = decode_timezones(files[TIMEZONES_FILE]) if TIMEZONES_FILE in files else None
        feed = load_feed(p, known_timezones=timezones or ())
        cfg: FareConfig | None
        currency = _feed_currency(feed)
        if isinstance(config, FareConfig):
            cfg = config
        elif config is not None:
            raw = pathlib.Path(config).read_bytes()
            files[CONFIG_FILE] = raw
            cfg = load_config(raw, currency=currency)
        elif CONFIG_FILE in files:
            cfg = load_config(files[CONFIG_FILE], currency=currency)
        else:
            cfg = None
        return cls(feed, cfg, files=files, previous=previous, timezones=timezones, gtfs_rules=gtfs_rules)

    @classmethod
    def from_bytes(cls, data: bytes, *, previous: FareSystem | None = None) -> FareSystem:
        """Rebuild a system from `to_bytes()` output (a zip of its source files).

        One stored without RULES_FILE was stored before the current GTFS rules: it is
        rebuilt with the legacy ones, so that it rates as it did."""
        tmp = io.BytesIO(data)
        with zipfile.ZipFile(tmp) as z:
            files = {n: z.read(n) for n in z.namelist()}
        import tempfile

        rules = None if RULES_FILE in files else GTFS_RULES_LEGACY
        with tempfile.TemporaryDirectory(prefix="cardledger-fares-") as d:
            for name, raw in files.items():
                (pathlib.Path(d) / name).write_bytes(raw)
            return cls.from_gtfs(d, previous=previous, gtfs_rules=rules)

    @classmethod
    def harbin(cls) -> FareSystem:
        """The Harbin fare system shipped with the package (see its README).

        Loaded once per process: a FareSystem never changes after it is built.
        """
        return _harbin()

    def to_bytes(self) -> bytes:
        """The system's source files as one deterministic zip (for persistence)."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name in sorted(self.files):
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                z.writestr(info, self.files[name], zipfile.ZIP_DEFLATED)
        return buf.getvalue()

    @property
    def digest(self) -> str:
        """SHA-256 of `to_bytes()`: names one fare system version."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    # -- indexes ------------------------------------------------------------

    @property
    def currency(self) -> str:
        """ISO 4217 code of every amount this system produces."""
        return self.tables.currency

    def route_index(self, route_id: str) -> int:
        """The index a TAP op or LEG_DTYPE uses for a route (KeyError if unknown)."""
        try:
            return self._route_ix[route_id]
        except KeyError:
            raise KeyError(f"unknown route_id {route_id!r}") from None

    def stop_index(self, stop_id: str) -> int:
        """The index a TAP op or LEG_DTYPE uses for a stop (KeyError if unknown)."""
        try:
            return self._stop_ix[stop_id]
        except KeyError:
            raise KeyError(f"unknown stop_id {stop_id!r}") from None

    def rider_category_index(self, rider_category_id: str | None) -> int:
        """Index of a rider category; None is the default rider (index n_categories)."""
        if rider_category_id is None:
            return self.tables.n_categories
        try:
            return self._cat_ix[rider_category_id]
        except KeyError:
            raise KeyError(f"unknown rider_category_id {rider_category_id!r}") from None

    def fare_media_index(self, fare_media_id: str | None) -> int:
        """Index of a fare medium; None is 'no medium given' (index n_media)."""
        if fare_media_id is None:
            return self.tables.n_media
        try:
            return self._med_ix[fare_media_id]
        except KeyError:
            raise KeyError(f"unknown fare_media_id {fare_media_id!r}") from None

    # -- quoting ------------------------------------------------------------

    def quote(
        self,
        legs: Sequence[Leg],
        rider_category_id: str | None = None,
        fare_media_id: str | None = None,
    ) -> Quote:
        """Price one journey (GTFS Fares v2; see `cardledger.engine.spec.fares`).

        Raises `UnknownFareError` if some leg matches no fare leg rule, KeyError
        for an id the feed does not have, ValueError for naive datetimes.
        """
        if not legs:
            raise ValueError("quote: a journey needs at least one leg")
        arr = np.zeros(len(legs), dtype=LEG_DTYPE)
        for i, leg in enumerate(legs):
            dep = _datetime_us(leg.departure, f"legs[{i}].departure")
            arv = _datetime_us(leg.arrival, f"legs[{i}].arrival")
            if arv < dep:
                raise ValueError(f"legs[{i}]: arrival {leg.arrival} is before departure")
            arr[i] = (
                self.route_index(leg.route_id),
                self.stop_index(leg.from_stop_id),
                self.stop_index(leg.to_stop_id),
                0,
                dep,
                arv,
            )
        cat = self.rider_category_index(rider_category_id)
        med = self.fare_media_index(fare_media_id)
        status, amount, flags = self.quote_many(arr, np.array([0, len(legs)], dtype=np.int64), cat, med)
        if status[0] == FareStatus.UNKNOWN_FARE:
            raise UnknownFareError("no fare leg rule matches some leg of this journey")
        if status[0] != FareStatus.OK:
            raise ValueError(f"journey cannot be priced: {FareStatus(int(status[0])).name}")
        return Quote(int(amount[0]), self.currency, FareDiscount(int(flags[0])))

    def quote_many(
        self, legs: np.ndarray, journey_ptr: np.ndarray, rider_category: int, fare_media: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Price many journeys at once: journey j is `legs[journey_ptr[j]:journey_ptr[j+1]]`.

        `legs` is a LEG_DTYPE array (indexes from `route_index`/`stop_index`, times
        in µs since the epoch); `rider_category`/`fare_media` are indexes from
        `rider_category_index`/`fare_media_index`. Returns (status, amount, discounts)
        arrays, one entry per journey; status is a `FareStatus` code.
        """
        if legs.dtype != LEG_DTYPE:
            raise TypeError(f"legs must have dtype LEG_DTYPE, got {legs.dtype}")
        legs = np.ascontiguousarray(legs)
        ptr = np.ascontiguousarray(journey_ptr, dtype=np.int64)
        if ptr.ndim != 1 or len(ptr) < 1 or ptr[0] != 0 or ptr[-1] != len(legs):
            raise ValueError("journey_ptr must start at 0 and end at len(legs)")
        if np.any(np.diff(ptr) < 0):
            raise ValueError("journey_ptr must not decrease")
        if not 0 <= rider_category <= self.tables.n_categories:
            raise ValueError(f"rider_category index {rider_category} out of range")
        if not 0 <= fare_media <= self.tables.n_media:
            raise ValueError(f"fare_media index {fare_media} out of range")
        for col in ("departure_us", "arrival_us"):
            if len(legs) and (legs[col].min() < -TIME_US_LIMIT or legs[col].max() > TIME_US_LIMIT):
                raise ValueError(f"legs[{col!r}] must be within ±{TIME_US_LIMIT} µs of the epoch")
        n = len(ptr) - 1
        if self._core is not None:
            return self._core.quote_many(legs, ptr, rider_category, fare_media)  # type: ignore[no-any-return]
        status = np.zeros(n, dtype=np.uint8)
        amount = np.zeros(n, dtype=np.int64)
        flags = np.zeros(n, dtype=np.uint8)
        rows = _leg_rows(legs)
        for j in range(n):
            s, a, f = self._reference.quote(rows[ptr[j] : ptr[j + 1]], rider_category, fare_media)
            status[j], amount[j], flags[j] = s, a, f
        return status, amount, flags

    def quote_reference(
        self, legs: np.ndarray, rider_category: int, fare_media: int
    ) -> tuple[int, int, int]:
        """One journey (LEG_DTYPE array) through the reference evaluator, for tests."""
        s, a, f = self._reference.quote(_leg_rows(legs), rider_category, fare_media)
        return int(s), int(a), int(f)


def _leg_rows(legs: np.ndarray) -> list:
    """LEG_DTYPE records as the reference evaluator's (route, from, to, dep, arr) tuples."""
    return legs[["route", "from_stop", "to_stop", "departure_us", "arrival_us"]].tolist()


@functools.lru_cache(maxsize=1)
def _harbin() -> FareSystem:
    root = importlib.resources.files("cardledger.fares") / "harbin"
    with importlib.resources.as_file(root) as p:
        return FareSystem.from_gtfs(p)


def _read_files(p: pathlib.Path) -> dict[str, bytes]:
    """The feed's files by base name (a zip's single top-level folder is looked through)."""
    out: dict[str, bytes] = {}
    if p.is_dir():
        for f in sorted(p.iterdir()):
            if f.is_file() and (f.suffix == ".txt" or f.name in (CONFIG_FILE, TIMEZONES_FILE, RULES_FILE)):
                out[f.name] = f.read_bytes()
        return out
    with zipfile.ZipFile(p) as z:
        for name in z.namelist():
            base = name.rsplit("/", 1)[-1]
            if base.endswith(".txt") or base in (CONFIG_FILE, TIMEZONES_FILE, RULES_FILE):
                out[base] = z.read(name)
    return out


#: Beside the feed's files: which GTFS rules the system was compiled with
#: (`tables.GTFS_RULES`), recorded so that a stored system keeps rating as it did.
RULES_FILE = "cardledger-gtfs-rules.json"


def encode_rules(rules: int) -> bytes:
    """RULES_FILE's content for `rules`."""
    return json.dumps({"gtfs_rules": rules}).encode() + b"\n"


def decode_rules(raw: bytes) -> int:
    """The rules RULES_FILE records (FeedError if it is not one we know)."""
    try:
        rules = json.loads(raw)["gtfs_rules"]
    except (ValueError, KeyError, TypeError):
        rules = None
    if rules not in (GTFS_RULES, GTFS_RULES_LEGACY):
        raise FeedError([Problem(RULES_FILE, 0, None, f"unknown gtfs_rules in {raw[:60]!r}")])
    return int(rules)


def _feed_currency(feed: Feed) -> str:
    for p in feed.fare_products:
        return p.currency
    return "CNY"


__all__ = ["LEG_DTYPE", "FareSystem", "Leg", "Quote", "US_PER_S"]
