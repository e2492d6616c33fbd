"""The installed source policy sets as the ledger stores them (docs/policies.md).

Each set is one entry of the `state` database: key ``policy`` + the journal_seq of
the SET_POLICIES record that installed it (big-endian, so sets come out oldest
first), value its canonical bytes (`policies.encode_set`); the record's user_data is
their digest. Sets are only appended, in the write transaction of their record, and
never changed: an audit reads who was allowed what, from which journal position.
Decoded sets are cached per process by (journal_seq, digest).
"""

from __future__ import annotations

import threading
from typing import Any

from ..policies import PolicyVersion, digest
from .keys import KEY, STATE_POLICY_PREFIX, prefixed

_cache_lock = threading.Lock()
_cache: dict[tuple[int, int], PolicyVersion] = {}


def policy_key(journal_seq: int) -> bytes:
    """The state key of the set installed by the record at journal_seq."""
    return STATE_POLICY_PREFIX + KEY.pack(journal_seq)


def _version(journal_seq: int, raw: bytes) -> PolicyVersion:
    k = (journal_seq, digest(raw))
    with _cache_lock:
        v = _cache.get(k)
    if v is None or v.data != raw:
        v = PolicyVersion(journal_seq, raw)  # PolicyError if unreadable
        with _cache_lock:
            _cache[k] = v
    return v


def stored_keys(txn: Any, db: Any) -> list[tuple[int, bytes]]:
    """(journal_seq, raw bytes) of every stored set, oldest first."""
    return [(KEY.unpack(key[len(STATE_POLICY_PREFIX):])[0], value)
            for key, value in prefixed(txn, db, STATE_POLICY_PREFIX)]


class PolicyVersions:
    """The sets stored in one ledger, as loaded (oldest first)."""

    def __init__(self, state_db: Any) -> None:
        self._db = state_db
        self.versions: list[PolicyVersion] = []

    def load(self, txn: Any) -> None:
        """Read every stored set (decoded ones come from the cache)."""
        self.versions = [_version(j, raw) for j, raw in stored_keys(txn, self._db)]

    def changed(self, txn: Any) -> bool:
        """Whether the stored sets differ from those loaded (another process installed one)."""
        cur = txn.cursor(db=self._db)
        last = None
        if cur.set_range(STATE_POLICY_PREFIX + b"\xff" * 8):
            if cur.prev() and bytes(cur.key()).startswith(STATE_POLICY_PREFIX):
                last = KEY.unpack(bytes(cur.key())[len(STATE_POLICY_PREFIX):])[0]
        elif cur.last() and bytes(cur.key()).startswith(STATE_POLICY_PREFIX):
            last = KEY.unpack(bytes(cur.key())[len(STATE_POLICY_PREFIX):])[0]
        known = self.versions[-1].journal_seq if self.versions else None
        return last != known

    def put(self, txn: Any, journal_seq: int, data: bytes) -> PolicyVersion:
        """Store a new set for the record at journal_seq (after every stored one)."""
        if self.versions and journal_seq <= self.versions[-1].journal_seq:
            raise ValueError(f"a policy set at {journal_seq} would not follow the one at {self.versions[-1].journal_seq}")
        v = _version(journal_seq, data)
        if not txn.put(policy_key(journal_seq), v.data, db=self._db, overwrite=False):
            raise ValueError(f"a policy set is already stored at journal_seq {journal_seq}")
        self.versions.append(v)
        return v
