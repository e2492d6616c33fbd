"""Offer-catalog versions as the ledger stores them in LMDB (twin of `fares.py`).

Each installed version is one entry of the ``state`` database under the key
``offers`` + its `effective_from_us` (big-endian, so versions come out oldest first);
the value is the catalog as `OfferCatalog.to_bytes()` gives it (its recorded time-zone
offsets included, so a purchase replays as decided whatever the host's tz database
says later). Replaying the journal needs exactly the versions that decided the
purchases, so versions are only ever appended, each starting after every PURCHASE
already applied (`OfferVersions.install` enforces it, against the ``meta`` key
``max_purchase_time_us``), and are never changed or removed.
"""

from __future__ import annotations

import struct
from typing import Any

from ..offers.catalog import OfferCatalog
from ..offers.tables import OfferTables, compile_versions
from .keys import KEY, META_MAX_PURCHASE_TIME_KEY, STATE_OFFERS_PREFIX, prefixed, prefixed_keys

MAX_PURCHASE_TIME = struct.Struct("<q")
NO_PURCHASE_TIME = -(1 << 63)


def version_key(effective_from_us: int) -> bytes:
    """The state-database key of the version in force from `effective_from_us`."""
    return STATE_OFFERS_PREFIX + KEY.pack(effective_from_us)


def stored_items(txn: Any, state_db: Any) -> list[tuple[bytes, bytes]]:
    """Every stored version's (key, value), oldest first (recover copies them)."""
    return list(prefixed(txn, state_db, STATE_OFFERS_PREFIX))


def read_max_purchase_time(txn: Any, meta_db: Any) -> int:
    """Latest PURCHASE time_us applied so far (NO_PURCHASE_TIME if none)."""
    v = txn.get(META_MAX_PURCHASE_TIME_KEY, db=meta_db)
    return NO_PURCHASE_TIME if v is None else MAX_PURCHASE_TIME.unpack(bytes(v))[0]


class OfferVersions:
    """One ledger's installed offer-catalog versions, oldest first, compiled.

    Only the batch path (under the ledger's lock) changes them; the lists are
    replaced whole, never changed in place."""

    def __init__(self, state_db: Any, meta_db: Any) -> None:
        self._db, self._meta = state_db, meta_db
        #: (effective_from_us, OfferCatalog), oldest first.
        self.versions: list[tuple[int, OfferCatalog]] = []
        #: the engines' view: one OfferTables per version
        self.tables: list[OfferTables] = []
        #: the offer id of each slot (budgets are kept by slot)
        self.slot_ids: list[str] = []
        self._raw: list[bytes] = []

    def __len__(self) -> int:
        return len(self.versions)

    def load(self, txn: Any) -> None:
        """Load and compile every stored version (unchanged versions are kept)."""
        items = stored_items(txn, self._db)
        raw = [v for _, v in items]
        if raw == self._raw:
            return
        self.versions = [(KEY.unpack(k[len(STATE_OFFERS_PREFIX):])[0], OfferCatalog.from_bytes(v)) for k, v in items]
        self.tables, self.slot_ids = compile_versions(self.versions)
        self._raw = raw

    def changed(self, txn: Any) -> bool:
        """Whether the stored versions are not those loaded (they are only appended)."""
        return self.stored_count(txn) != len(self.versions)

    def stored_count(self, txn: Any) -> int:
        """How many versions are stored (their keys only are read)."""
        return sum(1 for _ in prefixed_keys(txn, self._db, STATE_OFFERS_PREFIX))

    def at(self, time_us: int | None) -> OfferCatalog | None:
        """The version in force at `time_us` (None: the latest), or None if none is."""
        chosen = None
        for start, catalog in self.versions:
            if time_us is None or start <= time_us:
                chosen = catalog
        return chosen

    def install(self, txn: Any, catalog: OfferCatalog, effective_from_us: int) -> None:
        """Append a version in force from `effective_from_us`: after every installed
        version and every PURCHASE applied (no decided purchase is ever re-decided).
        ValueError otherwise."""
        if self.versions and effective_from_us <= self.versions[-1][0]:
            raise ValueError(
                f"effective_from_us {effective_from_us} is not after the latest installed offer catalog "
                f"({self.versions[-1][0]}): versions are only appended"
            )
        latest = read_max_purchase_time(txn, self._meta)
        if effective_from_us <= latest:
            raise ValueError(
                f"effective_from_us {effective_from_us} is not after the latest purchase applied "
                f"({latest}): installing it would re-decide purchases already made"
            )
        if not txn.put(version_key(effective_from_us), catalog.to_bytes(), db=self._db, overwrite=False):
            raise ValueError(f"an offer catalog is already installed effective from {effective_from_us}")
        self.load(txn)

    def note_purchase_time(self, txn: Any, latest_us: int) -> None:
        """Remember the latest time of a PURCHASE decided (`install` checks it)."""
        if latest_us > read_max_purchase_time(txn, self._meta):
            txn.put(META_MAX_PURCHASE_TIME_KEY, MAX_PURCHASE_TIME.pack(latest_us), db=self._meta)
