"""The on-disk schema: every LMDB database and every key the ledger writes.

A ledger is a directory: one LMDB environment (`data.mdb`, `lock.mdb`) with the
named databases below, plus the current checkpoint file (`checkpoint-<seq>.cl`).
Only `store/` reads or writes them; `docs/storage.md` describes the format.

- ``meta``: the format version (``format``) and the default cash cap
  (``default_cap_fen``), written once at creation; ``max_tap_time_us``, the latest
  tap time ever applied (fare versions must start after it).
- ``journal``: one value per committed batch, keyed by the batch's last journal_seq
  (8 bytes, big-endian, so keys grow and every put is an append). A value is a
  128-byte header (magic, version, record count, first/last journal_seq, commit time,
  previous batch's hash, this batch's hash) followed by the records, encoded by the
  codec (`engine/spec/codec.py`, twin of `cext/codec.pxi`). The hash is SHA-256 over
  the previous hash, the header fields and the encoded records (`journal.py`).
- ``state``: ``checkpoint`` names the checkpoint file (accounts, pending holds and
  cards' fare state) and its SHA-256 (`checkpoints.py`); ``ids_state`` + ``sources``:
  the per-source array and how far the id index reaches; the *id log* (keys
  ``idlog`` + journal_seq) and ``idmerge`` (`ids.py`).
- ``state`` also holds the source policy sets, one key ``policy`` + journal_seq of
  the SET_POLICIES record that installed it (`policies.py`).
- ``ids``: decided op ids, one value per (source, run): key source+hi_seq
  (big-endian), value the sorted (seq, journal_seq) pairs of the ids that source
  decided in order, delta-varint encoded (`codec.pack_pairs`). Terminals issue
  increasing seqs, so a flush writes about one value per active source, not one per op.
- ``ids_late``: ids decided out of order (seq at or below the source's seq at the
  previous flush), one key source+seq each; rare by construction.
- ``fares``: the installed fare-system versions, keyed by effective_from_us
  (`fares.py`).
- ``state`` also holds the installed offer-catalog versions: keys ``offers`` +
  effective_from_us (`offers.py`); ``meta`` the latest purchase time
  (``max_purchase_time_us``).

Nothing in `store/` knows op semantics: the engines decide, the store keeps.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

#: The ledger format this library reads and writes.
FORMAT_VERSION = 4
#: Every named LMDB database of a ledger.
DB_NAMES = (b"meta", b"journal", b"state", b"ids", b"ids_late", b"fares")

#: An 8-byte big-endian key (journal_seq, effective_from_us, ...): keys sort as numbers.
KEY = struct.Struct(">Q")
#: A (source, seq) key, big-endian.
KEY2 = struct.Struct(">QQ")

# -- meta
META_FORMAT_KEY = b"format"
META_DEFAULT_CAP_KEY = b"default_cap_fen"
#: The latest tap time_us ever applied (signed, little-endian).
META_MAX_TAP_TIME_KEY = b"max_tap_time_us"
#: SHA-256 of the format marker and the default cap, written with them at creation:
#: LMDB keeps no checksum, and a damaged cap would change every replay quietly.
#: (Ledgers created before it have none; verify then has nothing to compare.)
META_SETTINGS_SHA_KEY = b"settings_sha256"
#: The latest PURCHASE time_us ever decided (signed, little-endian): offer catalog
#: versions must start after it.
META_MAX_PURCHASE_TIME_KEY = b"max_purchase_time_us"

# -- state
STATE_CHECKPOINT_KEY = b"checkpoint"
STATE_IDS_STATE_KEY = b"ids_state"
STATE_SOURCES_KEY = b"sources"
#: Prefix of the id log's keys (+ the flush's ids_upto, big-endian).
STATE_IDLOG_PREFIX = b"idlog"
#: The merge of the id log into the index in progress (absent: none).
STATE_IDMERGE_KEY = b"idmerge"
#: Prefix of the installed offer-catalog versions' keys (+ effective_from_us, big-endian).
STATE_OFFERS_PREFIX = b"offers"
#: Prefix of the installed source policy sets' keys (+ the journal_seq of the
#: SET_POLICIES record that installed the set, big-endian); the value is the set's
#: canonical bytes (`policies.encode_set`), whose digest the record carries.
STATE_POLICY_PREFIX = b"policy"



def prefixed(txn: Any, db: Any, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of `db` whose key starts with `prefix`, in key order."""
    cur = txn.cursor(db=db)
    if cur.set_range(prefix):
        for key, value in cur:
            if not bytes(key).startswith(prefix):
                return
            yield bytes(key), bytes(value)


def prefixed_keys(txn: Any, db: Any, prefix: bytes) -> Iterator[bytes]:
    """Every key of `db` that starts with `prefix`, in key order (values are not read)."""
    cur = txn.cursor(db=db)
    if cur.set_range(prefix):
        for key in cur.iternext(keys=True, values=False):
            if not bytes(key).startswith(prefix):
                return
            yield bytes(key)
