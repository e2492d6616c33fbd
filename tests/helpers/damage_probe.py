"""Run as a script: probe damaged copies of a ledger, one JSON line each.

`python damage_probe.py DIR...` opens each DIR (readonly), inspects it, and dumps its
LMDB databases' contents to a digest, printing {"dir", "open", "inspect",
"problems", "digest"} per DIR. It runs in a process of its own so that a crash
(SIGBUS, SIGSEGV) fails the test that started it instead of killing pytest; the test
reads the lines and checks that damage is always reported.
"""

from __future__ import annotations

import hashlib
import json
import sys

import lmdb

import cardledger
from cardledger.store.datafile import check_data_file
from cardledger.store.pages import PageFile
from cardledger.store.keys import DB_NAMES


def outcome(fn) -> tuple[str, object]:
    """("ok", value) or ("typed", "ExcName: message"); an untyped exception is
    ("UNTYPED", ...), which the test refuses."""
    try:
        return "ok", fn()
    except (cardledger.LedgerError, OSError) as e:
        return "typed", f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - reported, and refused by the test
        return "UNTYPED", f"{type(e).__name__}: {e}"


def digest(path: str) -> str | None:
    """SHA-256 over every key and value of the ledger's databases; None if LMDB
    cannot read them all."""
    h = hashlib.sha256()
    try:
        # Raw LMDB on a file cut short is a SIGBUS, on a damaged page an abort().
        # (No writer runs here: the pages need no pinning.)
        with PageFile(path, check_data_file(path)) as pages:
            if pages.check(DB_NAMES):
                return None
    except cardledger.CorruptionError:
        return None
    try:
        env = lmdb.open(path, readonly=True, lock=False, max_dbs=len(DB_NAMES))
        try:
            with env.begin() as txn:
                for name in DB_NAMES:
                    db = env.open_db(name, txn=txn, create=False)
                    for k, v in txn.cursor(db=db):
                        h.update(len(k).to_bytes(4, "little") + bytes(k) + len(v).to_bytes(4, "little") + bytes(v))
        finally:
            env.close()
    except lmdb.Error:
        return None
    return h.hexdigest()


def probe(path: str) -> dict:
    """One damaged copy's outcome."""

    def opened() -> int:
        with cardledger.open(path, readonly=True) as led:
            return int(led.journal_seq)

    open_kind, open_value = outcome(opened)
    inspect_kind, report = outcome(lambda: cardledger.inspect(path))
    return {
        "dir": path,
        "open": open_kind, "open_detail": str(open_value),
        "inspect": inspect_kind,
        "problems": report.problems if inspect_kind == "ok" else [str(report)],
        "digest": digest(path),
    }


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(json.dumps(probe(d)), flush=True)
