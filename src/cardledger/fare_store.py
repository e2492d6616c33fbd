"""Fare-system versions as the ledger stores them in LMDB.

Each installed version is one entry of the `fares` database: the key is its
`effective_from_us` (big-endian, so versions come out oldest first), the value
the system's source files as one zip (`FareSystem.to_bytes()`). Replaying the
journal needs exactly the versions that rated the taps, so versions are only ever
appended, each starting after every tap already applied (`Ledger.install_fares`
enforces it), and are never changed or removed.

Compiling a system takes a fraction of a second; systems are cached per process
by content digest, so reopening and catching up do not recompile.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from typing import Any

from .fares.system import FareSystem
from .fares.taptables import TapTables, compile_taps

#: Key of a version: its effective_from_us.
VERSION_KEY = struct.Struct(">Q")
#: meta key holding the latest tap time_us ever applied (signed, little-endian).
MAX_TAP_TIME_KEY = b"max_tap_time_us"
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
