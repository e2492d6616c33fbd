"""Fare-system versions as the ledger stores them in LMDB.

Each installed version is one entry of the `fares` database: the key is its
`effective_from_us` (big-endian, so versions come out oldest first), the value
the system's source files as one zip (`FareSystem.to_bytes()`). Replaying the
journal needs exactly the versions that rated the taps, so versions are only ever
appended, each starting after every tap already applied (`FareVersions.install`
enforces it), and are never changed or removed.

Compiling a system takes a fraction of a second; systems are cached per process
by content digest, so reopening and catching up do not recompile.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from typing import Any

from ..fares.system import FareSystem
from ..fares.taptables import TapTables, compile_taps
from .keys import KEY, META_MAX_TAP_TIME_KEY

#: Key of a version: its effective_from_us.
VERSION_KEY = KEY
#: meta key holding the latest tap time_us ever applied (signed, little-endian).
MAX_TAP_TIME_KEY = META_MAX_TAP_TIME_KEY
MAX_TAP_TIME = struct.Struct("<q")
NO_TAP_TIME = -(1 << 63)

_cache_lock = threading.Lock()
# Digest of the chain of versions up to and including this one -> FareSystem: a
# version's route and stop indexes depend on every version before it, so only the
# whole chain names a compiled system.
_systems: dict[bytes, FareSystem] = {}


def load_versions(txn: Any, db: Any) -> list[tuple[int, FareSystem]]:
    """Every stored version, oldest first: (effective_from_us, system)."""
    out: list[tuple[int, FareSystem]] = []
    prev: FareSystem | None = None
    chain = b""
    for key, value in txn.cursor(db=db):
        raw = bytes(value)
        chain = hashlib.sha256(chain + bytes(key) + hashlib.sha256(raw).digest()).digest()
        with _cache_lock:
            system = _systems.get(chain)
        if system is None:
            system = FareSystem.from_bytes(raw, previous=prev)
            with _cache_lock:
                _systems[chain] = system
        out.append((VERSION_KEY.unpack(bytes(key))[0], system))
        prev = system
    return out


def tap_tables(versions: list[tuple[int, FareSystem]]) -> list[TapTables]:
    """The engines' view of the versions (cached on each system object)."""
    out = []
    for start, system in versions:
        cache: dict[int, TapTables] = system.__dict__.setdefault("_tap_tables", {})
        tt = cache.get(start)
        if tt is None:
            tt = cache[start] = compile_taps(system, start)
        out.append(tt)
    return out


def read_max_tap_time(txn: Any, meta_db: Any) -> int:
    """Latest tap time_us applied so far (NO_TAP_TIME if none)."""
    v = txn.get(MAX_TAP_TIME_KEY, db=meta_db)
    return NO_TAP_TIME if v is None else MAX_TAP_TIME.unpack(bytes(v))[0]


class FareVersions:
    """One ledger's installed fare versions, oldest first, as stored in ``fares``.

    Only the batch path (under the ledger's lock) changes them; the list is replaced
    whole, never changed in place."""

    def __init__(self, fares_db: Any, meta_db: Any) -> None:
        self._db, self._meta = fares_db, meta_db
        #: (effective_from_us, FareSystem), oldest first.
        self.versions: list[tuple[int, FareSystem]] = []

    def __len__(self) -> int:
        return len(self.versions)

    def load(self, txn: Any) -> None:
        """Load every stored version."""
        self.versions = load_versions(txn, self._db)

    def changed(self, txn: Any) -> bool:
        """Whether the stored versions are not those loaded (they are only appended)."""
        return bool(txn.stat(self._db)["entries"] != len(self.versions))

    def stored_count(self, txn: Any) -> int:
        """How many versions are stored."""
        return int(txn.stat(self._db)["entries"])

    def tap_tables(self) -> list[TapTables]:
        """The engines' view of the versions."""
        return tap_tables(self.versions)

    def at(self, time_us: int | None) -> FareSystem | None:
        """The version in force at `time_us` (None: the latest), or None if none is."""
        chosen = None
        for start, system in self.versions:
            if time_us is None or start <= time_us:
                chosen = system
        return chosen

    def install(self, txn: Any, system: FareSystem, effective_from_us: int) -> None:
        """Append a version in force from `effective_from_us` (after every installed
        version and every tap applied: no posted fare is ever re-rated). What is stored
        is the system's source files: the system rebuilt from them must be the one
        given, with route and stop indexes stable after the previous version's.
        ValueError if any of that does not hold."""
        if self.versions and effective_from_us <= self.versions[-1][0]:
            raise ValueError(
                f"effective_from_us {effective_from_us} is not after the latest installed version "
                f"({self.versions[-1][0]}): versions are only appended"
            )
        latest = read_max_tap_time(txn, self._meta)
        if effective_from_us <= latest:
            raise ValueError(
                f"effective_from_us {effective_from_us} is not after the latest tap applied "
                f"({latest}): installing it would re-rate posted fares"
            )
        prev = self.versions[-1][1] if self.versions else None
        # (a config passed as an object, not a file, would be lost)
        stored = FareSystem.from_bytes(system.to_bytes(), previous=prev)
        if stored.config != system.config or stored.feed != system.feed:
            raise ValueError(
                "this FareSystem's source files do not rebuild it (was its config passed "
                "as an object?): build it with FareSystem.from_gtfs(path, config=<path to fares.toml>)"
            )
        self.put(txn, stored, int(effective_from_us))

    def install_default(self, txn: Any) -> None:
        """Before the first batch with taps on a ledger without fares: Harbin from 0."""
        self.put(txn, FareSystem.harbin(), 0)

    def put(self, txn: Any, system: FareSystem, effective_from_us: int) -> None:
        """Store a version as is, then reload the stored versions."""
        if not txn.put(VERSION_KEY.pack(effective_from_us), system.to_bytes(), db=self._db, overwrite=False):
            raise ValueError(f"a fare system is already installed effective from {effective_from_us}")
        self.load(txn)

    def note_tap_time(self, txn: Any, latest_us: int) -> None:
        """Remember the latest time of a tap that rated a fare (`install` checks it)."""
        if latest_us > read_max_tap_time(txn, self._meta):
            txn.put(MAX_TAP_TIME_KEY, MAX_TAP_TIME.pack(latest_us), db=self._meta)
