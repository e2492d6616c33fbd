"""`recover`: build a new ledger from the intact prefix of a damaged one's journal.

The journal is the ledger's truth; everything else (checkpoints, the id index, the
id state) is derived from it. So salvage copies the journal batches, byte for byte,
from the first one up to the last whose hash chain holds and which replays, into a
new ledger, and lets that ledger rebuild the rest by replaying them (as a writer
catches up with batches another process committed). The fare versions and the
ledger's settings are copied too, and so are the source policy sets the copied
SET_POLICIES records installed. What is lost is exactly the journal range after
the intact prefix: ops decided there are unknown to the new ledger, and terminals
re-send them (exactly-once makes a re-send safe: see docs/operations.md).

The damaged ledger is read page by page without LMDB (`store/pages.py`): a page
LMDB would trust blindly (and die on) is checked first and skipped if damaged, and
a data file cut short is read up to its end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .engine import select
from .errors import CorruptionError, LedgerError
from .ledger import Ledger
from .schema import CHECKPOINT_OPS_DEFAULT
from .store.env import ENVS
from .store.journal import BATCH_HEADER, BATCH_HEADER_SIZE
from .store import offers as offer_versions
from .store.keys import KEY, META_MAX_PURCHASE_TIME_KEY, META_MAX_TAP_TIME_KEY
from .store.pages import pinned
from .store.policies import policy_key, stored_keys
from .verify import inspect_pages, ledger_settings

#: Records copied between two checkpoints of the new ledger: bounds the memory of
#: the replay (the decisions window) whatever the journal's length.
RECOVER_CHUNK_RECORDS = CHECKPOINT_OPS_DEFAULT


@dataclass
class RecoverReport:
    """What `recover` salvaged.

    The new ledger holds journal records 1..`recovered_seq`. `source_head` is the
    last journal_seq the damaged ledger holds (None: its end could not be read);
    `lost` the journal_seq range the new ledger does not have (None: nothing lost).
    `problems` is what the inspection of the damaged ledger found.
    """

    recovered_seq: int = 0
    batches: int = 0
    source_head: int | None = 0
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> tuple[int, int | None] | None:
        """(first, last) journal_seq not recovered; last None: up to an unknown end."""
        if self.source_head is not None and self.source_head <= self.recovered_seq:
            return None
        return self.recovered_seq + 1, self.source_head

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (what `cardledger recover --json` prints)."""
        lost = self.lost
        return {"recovered_seq": self.recovered_seq, "batches": self.batches, "source_head": self.source_head,
                "lost": None if lost is None else {"first": lost[0], "last": lost[1]},
                "problems": list(self.problems)}


def recover(source: str | os.PathLike[str], dest: str | os.PathLike[str], *, engine: str | None = None) -> RecoverReport:
    """Build a new ledger in `dest` (a new or empty directory) from the intact prefix
    of the journal of the ledger in `source`, which is only read.

    The source is read page by page without LMDB (`store/pages.py`), so damaged pages
    or a data file cut short are skipped and reported, never followed. Returns a
    RecoverReport naming the journal range recovered and the range lost. The new
    ledger is checkpointed and verified before this returns. Raises
    FileNotFoundError / NotALedgerError when `source` is not a ledger, ValueError
    when `dest` is not new or empty, and CorruptionError when nothing can be
    salvaged (LMDB's meta pages, or the ledger's settings, are gone).
    """
    source, dest = os.fspath(source), os.fspath(dest)
    if not os.path.isdir(source) or not os.path.exists(os.path.join(source, "data.mdb")):
        raise FileNotFoundError(f"no ledger at {source!r}: it has no data.mdb")
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise ValueError(f"recover: {dest!r} is not a new or empty directory")
    if os.path.realpath(source) == os.path.realpath(dest):
        raise ValueError("recover writes a new ledger: give a destination other than the source")
    implementation = select.resolve(engine)
    report = RecoverReport()
    # A read transaction keeps a writer (if one still runs) from reusing the pages read.
    env = ENVS.acquire(source, True, "full", check=False)
    try:
        _recover_pages(source, dest, env, implementation, report)
    finally:
        ENVS.release(source)
    return report


def _recover_pages(source: str, dest: str, env: Any, implementation: str, report: RecoverReport) -> None:
    """`recover`, from the source's pages pinned by a read transaction of `env`."""
    with pinned(source, env) as pages:
        assert pages is not None
        inspected, txn, view = inspect_pages(source, pages, implementation)
        report.problems.extend(inspected.problems)
        report.source_head = inspected.journal_head
        default_cap_fen = ledger_settings(view, txn)
        try:
            fare_items = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=view.fares_db)]
        except (LedgerError, ValueError) as e:  # pragma: no cover - the inspection reported it
            fare_items = []
            report.problems.append(f"fare versions cannot be read ({e}): none are recovered")
        try:
            # The policy sets the recovered SET_POLICIES records install (their replay needs them).
            policy_sets = [(j, raw) for j, raw in stored_keys(txn, view.state_db) if j <= inspected.intact_seq]
        except (LedgerError, ValueError) as e:  # pragma: no cover - the inspection reported it
            policy_sets = []
            report.problems.append(f"policy sets cannot be read ({e}): none are recovered")
        max_tap_time = txn.get(META_MAX_TAP_TIME_KEY, db=view.meta_db)
        try:
            offer_items = offer_versions.stored_items(txn, view.state_db)
        except (LedgerError, ValueError) as e:  # pragma: no cover - the inspection reported it
            offer_items = []
            report.problems.append(f"offer catalogs cannot be read ({e}): none are recovered")
        max_purchase_time = txn.get(META_MAX_PURCHASE_TIME_KEY, db=view.meta_db)
        led = Ledger(dest, create=True, default_cap_fen=default_cap_fen, engine=implementation)
        try:
            new = led._store
            assert new is not None
            with new.begin_write() as out:
                for key, value in fare_items:
                    out.put(key, value, db=new.fares_db)
                for j, raw in policy_sets:
                    out.put(policy_key(j), raw, db=new.state_db)
                if max_tap_time is not None and fare_items:
                    out.put(META_MAX_TAP_TIME_KEY, bytes(max_tap_time), db=new.meta_db)
                for key, value in offer_items:  # the catalogs the journal's purchases were decided by
                    out.put(key, value, db=new.state_db)
                if max_purchase_time is not None and offer_items:
                    out.put(META_MAX_PURCHASE_TIME_KEY, bytes(max_purchase_time), db=new.meta_db)
            _copy_journal(pages.items(view.journal_db), led, inspected.intact_seq, report)
            led.reindex()  # the copied batches' time index entries
            led.checkpoint()
            check = led.verify()
            if not check.ok or led.journal_seq != inspected.intact_seq:
                raise CorruptionError(f"recover: the new ledger at {dest!r} does not verify: {check.problems[:3]}")
        finally:
            led.close()


def _copy_journal(items: Any, led: Ledger, upto: int, report: RecoverReport) -> None:
    """Copy the journal batches (`items`: key, value in key order) through
    journal_seq `upto`, verbatim, into `led`'s journal, checkpointing every
    RECOVER_CHUNK_RECORDS records."""
    new = led._store
    assert new is not None
    if upto == 0:
        return
    pending: list[tuple[bytes, bytes]] = []
    records = 0
    for key, value in items:
        last = KEY.unpack(bytes(key))[0]
        if last > upto:
            break
        assert len(value) >= BATCH_HEADER_SIZE  # checked by the inspection
        pending.append((bytes(key), bytes(value)))
        records += BATCH_HEADER.unpack_from(value)[3]
        report.batches += 1
        report.recovered_seq = last
        if records >= RECOVER_CHUNK_RECORDS or last == upto:
            with new.begin_write() as out:
                for k, v in pending:
                    new.put_batch(out, k, v)
            led.checkpoint()  # the ledger replays the batches it finds, and checkpoints
            pending, records = [], 0
        if last == upto:
            break
    assert report.recovered_seq == upto, (report.recovered_seq, upto)
