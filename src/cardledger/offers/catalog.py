"""The offer catalog: merchant discounts as data (a TOML file, or a mapping of its shape).

A catalog names the union's partner merchants and the member discounts they give. It is
installed in a ledger with `Ledger.install_offers(catalog, effective_from_us)`, like a
fare system: the catalog in force at a PURCHASE's `time_us` decides its discount
(docs/offers.md has the format with a full example, and the rounding rules).

    title = "哈尔滨市总工会会员优惠服务手册"   # optional: the handbook's title
    time_zone = "Asia/Shanghai"              # optional (this default): local dates and hours

    [categories]                             # optional: names of card categories, for the handbook
    0 = "普通会员"                            #   (when given, every offer's categories must be named here)
    4 = "退休职工"

    [[merchant]]                             # repeated: every merchant an offer names
    id = 5001                                #   its MERCHANT account id (1..2**63-1)
    name = "中央大街百货"                     #   shown in the handbook
    group = "retail"                         #   optional: a group offers may name

    [[offer]]                                # repeated: the order breaks ties (first wins)
    id = "dec-retail"                        #   unique, 1..64 characters
    name = "十二月购物季"                     #   optional: shown in the handbook
    merchant_groups = ["retail"]             #   and/or merchants = [5001, ...]; neither: every merchant
    categories = [0]                         #   optional: the card categories it is for
    amount_off_fen = 2000                    #   and/or percent_off_bp (1..10000)
    min_gross_fen = 10000                    #   满100减20
    every_fen = 0                            #   每满X减Y: amount off once per full every_fen
    max_discount_fen = 0                     #   per purchase (0: none)
    valid_from = 2026-12-01                  #   local dates, inclusive (TOML dates or "YYYY-MM-DD")
    valid_to = 2026-12-31
    days_of_week = [6, 7]                    #   ISO 1 (Monday)..7; omitted: every day
    hours = ["11:00-14:00"]                  #   local, end exclusive ("24:00" ends the day)
    per_card_day_count = 1                   #   0: unlimited
    per_card_month_discount_fen = 0          #   0: unlimited
    budget_fen = 100000000                   #   0: unlimited
    union_share_bp = 5000                    #   of the discount, paid by union_account
    union_account = 9100                     #   a SUBSIDY account (required when union_share_bp > 0)

Every amount is an integer number of fen (never a float); every problem found is
collected and raised as one `OfferCatalogError` naming the file, the offer (by id) and
the key, so a catalog author fixes everything in one round. Nothing is half-loaded. A
catalog read from a file also names each problem's line where it can find it (a TOML
syntax error always; a key's line when the file writes its tables as [[offer]] headers).

A catalog records the UTC offsets of its time zone when it is built (as fare systems
do, fares/timezones.py): a catalog read back from a ledger decides every purchase as it
did when installed, whatever the host's tz database says later.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef, import-not-found]

from cardledger.fares.errors import FeedError, Problem
from cardledger.fares.timezones import Transitions, decode_timezones, encode_timezones, tz_transitions
from cardledger.schema import AMOUNT_MAX_FEN, INT64_MAX

#: A catalog file larger than this is refused.
CATALOG_BYTES_MAX = 64 * 1024 * 1024
#: Offers in one catalog at most.
OFFERS_MAX = 1 << 17
#: Merchants in one catalog at most.
MERCHANTS_MAX = 1 << 20
#: An offer id's length in characters.
OFFER_ID_LEN_MAX = 64
#: A merchant's name or group's length in characters.
NAME_LEN_MAX = 200
#: Hour ranges in one offer at most.
HOURS_RANGES_MAX = 24
#: Basis points in a whole: 10000 bp = 100%.
BP_WHOLE = 10_000
#: The largest card category.
CARD_CATEGORY_MAX = 65_535
#: The largest per-card day count.
DAY_COUNT_MAX = (1 << 31) - 1
#: Minutes in a day: the end of the last hour range.
MINUTES_PER_DAY = 1440
#: The time zone of a catalog that names none: the service day's.
TIME_ZONE_DEFAULT = "Asia/Shanghai"
#: The format of `OfferCatalog.to_bytes`.
CATALOG_FORMAT = 1

_TOP_KEYS = frozenset({"title", "time_zone", "categories", "merchant", "offer"})
_MERCHANT_KEYS = frozenset({"id", "name", "group"})
_OFFER_KEYS = frozenset(
    {
        "id", "merchants", "merchant_groups", "categories", "percent_off_bp", "amount_off_fen",
        "min_gross_fen", "every_fen", "max_discount_fen", "valid_from", "valid_to", "days_of_week",
        "hours", "per_card_day_count", "per_card_month_discount_fen", "budget_fen", "union_share_bp",
        "union_account", "name",
    }
)
_HOURS_RE = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TOML_LINE_RE = re.compile(r"at line (\d+)")
_CATEGORY_CODE_RE = re.compile(r"0|[1-9][0-9]{0,4}")
#: Python refuses to read an integer literal longer than this (sys.int_info).
_LONG_DIGITS_RE = re.compile(r"[0-9_]{4000,}")


class OfferCatalogError(FeedError):
    """The offer catalog has problems; `.problems` lists every one, and nothing was loaded."""

    what = "the offer catalog"


@dataclasses.dataclass(frozen=True)
class Merchant:
    """A partner merchant: its MERCHANT account id, its name, its group ("" for none)."""

    id: int
    name: str
    group: str = ""


@dataclasses.dataclass(frozen=True)
class Offer:
    """One member discount, as the catalog states it (docs/offers.md).

    `merchants` and `merchant_groups` are as written (both empty: every merchant);
    `categories`, `days_of_week` and `hours` are None when omitted (every one). `hours`
    holds (start, end) minutes after local midnight, end exclusive. Zero means "none" for
    `every_fen`, `max_discount_fen` and every limit. `name` is the handbook's ("" for none).
    """

    id: str
    merchants: tuple[int, ...] = ()
    merchant_groups: tuple[str, ...] = ()
    categories: tuple[int, ...] | None = None
    percent_off_bp: int = 0
    amount_off_fen: int = 0
    min_gross_fen: int = 0
    every_fen: int = 0
    max_discount_fen: int = 0
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    days_of_week: tuple[int, ...] | None = None
    hours: tuple[tuple[int, int], ...] | None = None
    per_card_day_count: int = 0
    per_card_month_discount_fen: int = 0
    budget_fen: int = 0
    union_share_bp: int = 0
    union_account: int = 0
    name: str = ""

    @property
    def every_merchant(self) -> bool:
        """Whether the offer covers every merchant (it names no merchant and no group)."""
        return not self.merchants and not self.merchant_groups

    def to_dict(self) -> dict[str, Any]:
        """The offer as the catalog's mapping holds it (keys left at their default omitted)."""
        out: dict[str, Any] = {"id": self.id}
        for field in dataclasses.fields(self):
            name = field.name
            value = getattr(self, name)
            if name == "id" or value == field.default:
                continue
            if name in ("valid_from", "valid_to"):
                out[name] = value.isoformat()
            elif name == "hours":
                out[name] = [_format_hours(start, end) for start, end in value]
            elif isinstance(value, tuple):
                out[name] = list(value)
            else:
                out[name] = value
        return out


@dataclasses.dataclass(frozen=True)
class OfferCatalog:
    """A checked offer catalog: its merchants and offers, in the file's order.

    Build one with `from_toml(path)` or `from_dict(mapping)`; both check everything and
    raise `OfferCatalogError`. `transitions` are the time zone's UTC offsets, recorded
    when the catalog was first built (`to_bytes` keeps them). `categories` are the
    (code, name) pairs of the optional [categories] table, by code.
    """

    time_zone: str
    merchants: tuple[Merchant, ...]
    offers: tuple[Offer, ...]
    transitions: Transitions
    title: str = ""
    categories: tuple[tuple[int, str], ...] = ()

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> "OfferCatalog":
        """Read and check a catalog file; `OfferCatalogError` names the file, line or key."""
        name = os.fspath(path)
        try:
            size = os.path.getsize(name)
            if size > CATALOG_BYTES_MAX:
                raise _error(name, 0, None, f"the file is {size} bytes, more than CATALOG_BYTES_MAX={CATALOG_BYTES_MAX}")
            with open(name, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise _error(name, 0, None, f"cannot read it: {e.strerror or e}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise _error(name, line, None, f"not UTF-8 text: {e}") from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            found = _TOML_LINE_RE.search(str(e))
            # ("... (at end of document)": the last line)
            line = int(found.group(1)) if found else len(text.splitlines()) or 1
            raise _error(name, line, None, f"not valid TOML: {e}") from None
        except RecursionError:
            raise _error(name, 0, None, "not valid TOML: arrays or tables nested too deep") from None
        except ValueError as e:  # an integer literal too long for Python to read
            found = _LONG_DIGITS_RE.search(text)
            line = text.count("\n", 0, found.start()) + 1 if found else 0
            raise _error(name, line, None, f"not valid TOML: {e}") from None
        return _Checker(name, _Lines(text, doc).locate).catalog(doc, None)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], *, file: str = "<catalog>") -> "OfferCatalog":
        """Check a mapping of the TOML file's structure ({"time_zone": ..., "merchant": [...],
        "offer": [...]}) and build the catalog; `OfferCatalogError` lists every problem."""
        return _Checker(file).catalog(mapping, None)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "OfferCatalog":
        """A catalog from `to_bytes`, with the offsets recorded in it (never the host's)."""
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise _error("<stored catalog>", 0, None, f"not JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("format") != CATALOG_FORMAT:
            raise _error("<stored catalog>", 0, None, f'expected {{"format": {CATALOG_FORMAT}, ...}}')
        try:
            zones = decode_timezones(json.dumps(doc.get("timezones")).encode())
        except FeedError as e:
            raise OfferCatalogError(
                [Problem("<stored catalog>", 0, "timezones", p.message) for p in e.problems]) from None
        return _Checker("<stored catalog>").catalog(doc.get("catalog"), zones)

    def to_dict(self) -> dict[str, Any]:
        """The catalog as a mapping of the TOML file's structure (dates as ISO text)."""
        out: dict[str, Any] = {"time_zone": self.time_zone}
        if self.title:
            out["title"] = self.title
        if self.categories:
            out["categories"] = {str(code): name for code, name in self.categories}
        out["merchant"] = [
            {"id": m.id, "name": m.name, **({"group": m.group} if m.group else {})} for m in self.merchants
        ]
        out["offer"] = [offer.to_dict() for offer in self.offers]
        return out

    def to_bytes(self) -> bytes:
        """Canonical bytes of the catalog and its recorded offsets (what a ledger stores)."""
        doc = {
            "format": CATALOG_FORMAT,
            "catalog": self.to_dict(),
            "timezones": json.loads(encode_timezones({self.time_zone: self.transitions})),
        }
        return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of `to_bytes()`: one catalog, one digest."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def merchant(self, merchant_id: int) -> Merchant:
        """The merchant with this id; KeyError if the catalog has none."""
        found = self._merchants_by_id.get(merchant_id)
        if found is None:
            raise KeyError(f"the catalog has no merchant {merchant_id}")
        return found

    def merchants_of(self, offer: Offer) -> tuple[int, ...] | None:
        """The merchant ids an offer covers, sorted (its own and its groups'); None: every merchant."""
        if offer.every_merchant:
            return None
        ids = set(offer.merchants)
        for group in offer.merchant_groups:
            ids.update(m.id for m in self.merchants if m.group == group)
        return tuple(sorted(ids))

    def category_name(self, code: int) -> str | None:
        """The name the [categories] table gives a card category; None if it names none."""
        return dict(self.categories).get(code)

    def groups(self) -> tuple[str, ...]:
        """The merchant groups, in the order they first appear."""
        return tuple(dict.fromkeys(m.group for m in self.merchants if m.group))

    def offset_s_at(self, time_us: int) -> int:
        """The catalog zone's UTC offset in seconds at an instant (its recorded offsets)."""
        froms, offsets = self.transitions
        lo, hi = 0, len(froms)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if froms[mid] <= time_us:
                lo = mid
            else:
                hi = mid
        return offsets[lo]

    @property
    def _merchants_by_id(self) -> dict[int, Merchant]:
        cached = self.__dict__.get("_by_id")
        if cached is None:
            cached = {m.id: m for m in self.merchants}
            object.__setattr__(self, "_by_id", cached)
        return cached


def _error(file: str, line: int, column: str | None, message: str) -> OfferCatalogError:
    return OfferCatalogError([Problem(file, line, column, message)])


def _format_hours(start: int, end: int) -> str:
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


class _Checker:
    """Collects every problem of one catalog mapping, then builds it or raises."""

    def __init__(self, file: str, locate: Callable[[str | None], int] | None = None) -> None:
        self.file = file
        self.locate = locate
        self.problems: list[Problem] = []
        #: The codes the [categories] table names; None when the catalog has no such table.
        self.named_categories: set[int] | None = None

    def problem(self, where: str | None, message: str) -> None:
        line = self.locate(where) if self.locate is not None else 0
        self.problems.append(Problem(self.file, line, where, message))

    def catalog(self, doc: Any, zones: dict[str, Transitions] | None) -> OfferCatalog:
        if not isinstance(doc, Mapping):
            raise _error(self.file, 0, None, f"expected a table of catalog keys, got {type(doc).__name__}")
        for key in sorted(set(doc) - _TOP_KEYS, key=str):
            self.problem(str(key), f"unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})")
        title = self.text(doc, "title", "title", default="")
        before = len(self.problems)
        time_zone = self.text(doc, "time_zone", "time_zone", default=TIME_ZONE_DEFAULT)
        transitions: Transitions | None = None
        if len(self.problems) > before:
            pass  # (not text: said once)
        elif zones is not None:
            transitions = zones.get(time_zone)
            if transitions is None:
                self.problem("time_zone", f"no recorded offsets for {time_zone!r}")
        elif not time_zone:
            self.problem("time_zone", "must not be empty (an IANA name such as Asia/Shanghai)")
        else:
            try:
                transitions = tz_transitions(time_zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # ("America": a directory)
                self.problem("time_zone", f"unknown time zone {time_zone!r} (an IANA name such as Asia/Shanghai)")
        categories = self.category_names(doc.get("categories"))
        merchants = self.merchants(doc.get("merchant", []))
        by_id = {m.id: m for m in merchants}
        groups = {m.group for m in merchants if m.group}
        if isinstance(doc.get("categories"), Mapping):
            self.named_categories = {code for code, _ in categories}
        offers = self.offers(doc.get("offer", []), by_id, groups)
        if self.problems:
            raise OfferCatalogError(self.problems)
        assert transitions is not None
        return OfferCatalog(time_zone=time_zone, merchants=merchants, offers=offers,
                            transitions=transitions, title=title, categories=categories)

    # -- values -------------------------------------------------------------------------

    def text(self, table: Mapping[str, Any], key: str, where: str, *, default: str | None = None,
             max_len: int = NAME_LEN_MAX) -> str:
        value = table.get(key, default)
        if value is None:
            self.problem(where, "required: a string")
            return ""
        if not isinstance(value, str):
            self.problem(where, f"must be a string, got {type(value).__name__}")
            return ""
        if not value and default is None:
            self.problem(where, "must not be empty")
        if len(value) > max_len:
            self.problem(where, f"{len(value)} characters, more than {max_len}")
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
            self.problem(where, "must not hold control characters (a line break, a tab, ...)")
        return value

    def integer(self, table: Mapping[str, Any], key: str, where: str, lo: int, hi: int, default: int = 0) -> int:
        value = table.get(key, default)
        # bool is an int in Python; a float never counts money here.
        if type(value) is not int:
            self.problem(where, f"must be an integer, got {type(value).__name__} {value!r}")
            return default
        if not lo <= value <= hi:
            self.problem(where, f"{value} is out of range {lo}..{hi}")
            return default
        return value

    def int_list(self, table: Mapping[str, Any], key: str, where: str, lo: int, hi: int) -> tuple[int, ...] | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, list) or not value:
            self.problem(where, "must be a non-empty list of integers (leave the key out to mean every one)")
            return None
        out: list[int] = []
        for i, item in enumerate(value):
            if type(item) is not int or not lo <= item <= hi:
                self.problem(f"{where}[{i}]", f"must be an integer {lo}..{hi}, got {item!r}")
            elif item in out:
                self.problem(f"{where}[{i}]", f"{item} is listed twice")
            else:
                out.append(item)
        return tuple(out)

    def date(self, table: Mapping[str, Any], key: str, where: str) -> dt.date | None:
        if key not in table:
            return None
        value = table[key]
        if isinstance(value, dt.datetime) or not isinstance(value, (dt.date, str)):
            self.problem(where, f"must be a local date (2026-12-01 or \"2026-12-01\"), got {value!r}")
            return None
        if isinstance(value, dt.date):
            return value
        if not _DATE_RE.fullmatch(value):
            self.problem(where, f"must be a date YYYY-MM-DD, got {value!r}")
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError as e:
            self.problem(where, f"not a date: {e}")
            return None

    def hours(self, table: Mapping[str, Any], where: str) -> tuple[tuple[int, int], ...] | None:
        if "hours" not in table:
            return None
        value = table["hours"]
        if not isinstance(value, list) or not value or len(value) > HOURS_RANGES_MAX:
            self.problem(where, f"must be a list of 1..{HOURS_RANGES_MAX} \"HH:MM-HH:MM\" ranges")
            return None
        out: list[tuple[int, int]] = []
        for i, item in enumerate(value):
            found = _HOURS_RE.fullmatch(item) if isinstance(item, str) else None
            if found is None:
                self.problem(f"{where}[{i}]", f"must be \"HH:MM-HH:MM\", got {item!r}")
                continue
            h0, m0, h1, m1 = (int(g) for g in found.groups())
            start, end = h0 * 60 + m0, h1 * 60 + m1
            if h0 > 23 or m0 > 59 or m1 > 59 or end > MINUTES_PER_DAY:
                self.problem(f"{where}[{i}]", f"{item!r} is not a time of day (00:00..23:59, an end up to 24:00)")
            elif start >= end:
                self.problem(f"{where}[{i}]", f"{item!r} ends before it starts "
                             "(end exclusive; split a range across midnight in two)")
            elif any(start < e and s < end for s, e in out):
                self.problem(f"{where}[{i}]", f"{item!r} overlaps an earlier range")
            else:
                out.append((start, end))
        return tuple(sorted(out))

    # -- tables -------------------------------------------------------------------------

    def category_names(self, value: Any) -> tuple[tuple[int, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            self.problem("categories", 'must be a table of card category code = "name" ([categories])')
            return ()
        out: dict[int, str] = {}
        for code, name in value.items():
            where = f"categories.{code}"
            if type(code) is int:  # (a mapping built in Python may key by number)
                number = code if 0 <= code <= CARD_CATEGORY_MAX else None
            elif isinstance(code, str) and _CATEGORY_CODE_RE.fullmatch(code) and int(code) <= CARD_CATEGORY_MAX:
                number = int(code)
            else:
                number = None
            if number is None:
                self.problem(where, f"a card category code must be an integer 0..{CARD_CATEGORY_MAX}")
                continue
            text = self.text(value, code, where)
            if number in out:
                self.problem(where, f"category {number} is named twice")
            elif text:
                out[number] = text
        return tuple(sorted(out.items()))

    def merchants(self, value: Any) -> tuple[Merchant, ...]:
        if not isinstance(value, list):
            self.problem("merchant", "must be an array of tables ([[merchant]])")
            return ()
        if len(value) > MERCHANTS_MAX:
            self.problem("merchant", f"{len(value)} merchants, more than MERCHANTS_MAX={MERCHANTS_MAX}")
            return ()
        out: list[Merchant] = []
        seen: set[int] = set()
        for i, table in enumerate(value):
            where = f"merchant[{i}]"
            if not isinstance(table, Mapping):
                self.problem(where, "must be a table")
                continue
            for key in sorted(set(table) - _MERCHANT_KEYS, key=str):
                self.problem(f"{where}.{key}", f"unknown key (expected one of {', '.join(sorted(_MERCHANT_KEYS))})")
            if "id" not in table:
                self.problem(f"{where}.id", "required: the merchant's account id")
                continue
            mid = self.integer(table, "id", f"{where}.id", 1, INT64_MAX)
            name = self.text(table, "name", f"{where}.name")
            group = self.text(table, "group", f"{where}.group", default="")
            if mid in seen:
                self.problem(f"{where}.id", f"merchant {mid} is listed twice")
            elif mid:
                seen.add(mid)
                out.append(Merchant(mid, name, group))
        return tuple(out)

    def offers(self, value: Any, merchants: Mapping[int, Merchant], groups: set[str]) -> tuple[Offer, ...]:
        if not isinstance(value, list):
            self.problem("offer", "must be an array of tables ([[offer]])")
            return ()
        if len(value) > OFFERS_MAX:
            self.problem("offer", f"{len(value)} offers, more than OFFERS_MAX={OFFERS_MAX}")
            return ()
        out: list[Offer] = []
        seen: set[str] = set()
        for i, table in enumerate(value):
            offer = self.offer(i, table, merchants, groups)
            # (an id is taken by an earlier offer even if that one has problems of its own)
            oid = table.get("id") if isinstance(table, Mapping) else None
            if isinstance(oid, str) and oid:
                if oid in seen:
                    self.problem(f'offer[{i}] "{oid}".id', "the id is used by an earlier offer")
                    continue
                seen.add(oid)
            if offer is not None:
                out.append(offer)
        return tuple(out)

    def offer(self, i: int, table: Any, merchants: Mapping[int, Merchant], groups: set[str]) -> Offer | None:
        if not isinstance(table, Mapping):
            self.problem(f"offer[{i}]", "must be a table")
            return None
        offer_id = table.get("id")
        where = f'offer[{i}] "{offer_id}"' if isinstance(offer_id, str) and offer_id else f"offer[{i}]"
        before = len(self.problems)
        for key in sorted(set(table) - _OFFER_KEYS, key=str):
            self.problem(f"{where}.{key}", "unknown key (docs/offers.md lists an offer's keys)")
        oid = self.text(table, "id", f"{where}.id", max_len=OFFER_ID_LEN_MAX)
        name = self.text(table, "name", f"{where}.name", default="")
        own = self.int_list(table, "merchants", f"{where}.merchants", 1, INT64_MAX) or ()
        for j, mid in enumerate(own):
            if mid not in merchants:
                self.problem(f"{where}.merchants[{j}]", f"merchant {mid} is not in the catalog's [[merchant]] tables")
        named_groups: list[str] = []
        if "merchant_groups" in table:
            raw = table["merchant_groups"]
            if not isinstance(raw, list) or not raw:
                self.problem(f"{where}.merchant_groups", "must be a non-empty list of group names")
            else:
                for j, group in enumerate(raw):
                    if not isinstance(group, str) or group not in groups:
                        self.problem(f"{where}.merchant_groups[{j}]",
                                     f"{group!r} is not the group of any [[merchant]]")
                    elif group in named_groups:
                        self.problem(f"{where}.merchant_groups[{j}]", f"{group!r} is listed twice")
                    else:
                        named_groups.append(group)
        categories = self.int_list(table, "categories", f"{where}.categories", 0, CARD_CATEGORY_MAX)
        if categories and self.named_categories is not None:
            for j, code in enumerate(categories):
                if code not in self.named_categories:
                    self.problem(f"{where}.categories[{j}]", f"category {code} is not in the [categories] table")
        percent = self.integer(table, "percent_off_bp", f"{where}.percent_off_bp", 0, BP_WHOLE)
        amount_off = self.integer(table, "amount_off_fen", f"{where}.amount_off_fen", 0, AMOUNT_MAX_FEN)
        min_gross = self.integer(table, "min_gross_fen", f"{where}.min_gross_fen", 0, AMOUNT_MAX_FEN)
        every = self.integer(table, "every_fen", f"{where}.every_fen", 0, AMOUNT_MAX_FEN)
        max_discount = self.integer(table, "max_discount_fen", f"{where}.max_discount_fen", 0, AMOUNT_MAX_FEN)
        discount_typed = all(type(table.get(k, 0)) is int for k in ("percent_off_bp", "amount_off_fen"))
        if percent == 0 and amount_off == 0 and "percent_off_bp" not in table and "amount_off_fen" not in table:
            self.problem(where, "gives no discount: set percent_off_bp and/or amount_off_fen")
        elif percent == 0 and amount_off == 0 and discount_typed:
            self.problem(where, "gives no discount: percent_off_bp and amount_off_fen are both 0")
        if every and not amount_off:
            self.problem(f"{where}.every_fen", "needs amount_off_fen (每满X减Y: Y off per full X)")
        valid_from = self.date(table, "valid_from", f"{where}.valid_from")
        valid_to = self.date(table, "valid_to", f"{where}.valid_to")
        if valid_from and valid_to and valid_to < valid_from:
            self.problem(f"{where}.valid_to", f"{valid_to} is before valid_from {valid_from}")
        days = self.int_list(table, "days_of_week", f"{where}.days_of_week", 1, 7)
        hours = self.hours(table, f"{where}.hours")
        day_count = self.integer(table, "per_card_day_count", f"{where}.per_card_day_count", 0, DAY_COUNT_MAX)
        month_fen = self.integer(table, "per_card_month_discount_fen", f"{where}.per_card_month_discount_fen",
                                 0, AMOUNT_MAX_FEN)
        budget = self.integer(table, "budget_fen", f"{where}.budget_fen", 0, AMOUNT_MAX_FEN)
        share = self.integer(table, "union_share_bp", f"{where}.union_share_bp", 0, BP_WHOLE)
        union = self.integer(table, "union_account", f"{where}.union_account", 0, INT64_MAX)
        if share and not union:
            self.problem(f"{where}.union_account", "required when union_share_bp > 0: the union's SUBSIDY account")
        if union and union in merchants:
            self.problem(f"{where}.union_account", f"{union} is a merchant of the catalog")
        if len(self.problems) > before:
            return None
        return Offer(
            id=oid, merchants=tuple(sorted(own)), merchant_groups=tuple(named_groups), categories=categories,
            percent_off_bp=percent, amount_off_fen=amount_off, min_gross_fen=min_gross, every_fen=every,
            max_discount_fen=max_discount, valid_from=valid_from, valid_to=valid_to,
            days_of_week=tuple(sorted(days)) if days else None, hours=hours,
            per_card_day_count=day_count, per_card_month_discount_fen=month_fen, budget_fen=budget,
            union_share_bp=share, union_account=union, name=name,
        )


_TABLE_HEADER_RE = re.compile(r"[ \t]*(\[\[?)[ \t]*([A-Za-z0-9_-]+)[ \t]*\]\]?[ \t]*(?:#.*)?")
_WHERE_TABLE_RE = re.compile(r"(merchant|offer)\[(\d+)\]")
_WHERE_KEY_RE = re.compile(r"\.([A-Za-z0-9_-]+)(?:\[\d+\])?$")


class _Lines:
    """Where a catalog file's tables and keys are, to give a problem its line (0 when
    it cannot be told: the file writes its tables inline, or a header is hidden in a
    multi-line string so the headers do not match the tables read)."""

    def __init__(self, text: str, doc: Mapping[str, Any]) -> None:
        self.lines = text.split("\n")
        #: (first line, end line) of each section, keyed by ("", 0) for the top level,
        #: ("categories", 0), ("merchant", i), ("offer", i).
        self.sections: dict[tuple[str, int], tuple[int, int]] = {}
        counts: dict[str, int] = {}
        start, key = 1, ("", 0)
        for number, line in enumerate(self.lines, 1):
            found = _TABLE_HEADER_RE.fullmatch(line.rstrip("\r"))
            if found is None:
                continue
            self.sections[key] = (start, number)
            name = found.group(2)
            index = counts.get(name, 0)
            counts[name] = index + 1
            start, key = number, (name, index)
        self.sections[key] = (start, len(self.lines) + 1)
        for name in ("merchant", "offer"):
            tables = doc.get(name)
            if not isinstance(tables, list) or counts.get(name, 0) != len(tables):
                for i in range(counts.get(name, 0)):
                    self.sections.pop((name, i), None)

    def locate(self, where: str | None) -> int:
        """The line of the key a problem's `where` names, else of its table; 0 if unknown."""
        if where is None:
            return 0
        table = _WHERE_TABLE_RE.match(where)
        if table is not None:
            section = (table.group(1), int(table.group(2)))
            key_found = _WHERE_KEY_RE.search(where, table.end())
            key = key_found.group(1) if key_found else None
        elif where.startswith("categories."):
            section, key = ("categories", 0), where.split(".", 1)[1]
        else:
            key = where.split(".", 1)[0].split("[", 1)[0]
            section = (key, 0) if (key, 0) in self.sections else ("", 0)  # (a misspelt [[table]])
            if section[0]:
                key = None
        span = self.sections.get(section)
        if span is None:
            return 0
        first, end = span
        if key is not None:
            pattern = re.compile(r"[ \t]*(?:" + re.escape(key) + r'|"' + re.escape(key) + r'")[ \t]*=')
            for number in range(first, end):
                if pattern.match(self.lines[number - 1]):
                    return number
        return first if section[0] else 0
