"""`recover`: build a new ledger from the intact prefix of a damaged one's journal.

The journal is the ledger's truth; everything else (checkpoints, the id index, the
id state) is derived from it. So salvage copies the journal batches, byte for byte,
from the first one up to the last whose hash chain holds and which replays, into a
new ledger, and lets that ledger rebuild the rest by replaying them (as a writer
catches up with batches another process committed). The fare versions and the
ledger's settings are copied too. What is lost is exactly the journal range after
the intact prefix: ops decided there are unknown to the new ledger, and terminals
re-send them (exactly-once makes a re-send safe: see docs/operations.md).

A data file cut short (the pages past its end are gone) is salvaged from a copy
padded with zeros to the size its meta page names: LMDB then reads zeroed pages
where the lost ones were and reports them as damage instead of killing the process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import lmdb

from .engine import select
from .errors import CorruptionError, LedgerError, StorageError
from .ledger import Ledger
from .schema import CHECKPOINT_OPS_DEFAULT
from .store.datafile import check_data_file
from .store.env import LMDB_CORRUPTION_ERRORS, Store
from .store.fares import FareVersions
from .store.journal import BATCH_HEADER, BATCH_HEADER_SIZE
from .store.keys import KEY, META_MAX_TAP_TIME_KEY
from .verify import verify

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
    padded_bytes: int = 0  # zeros added to a copy of a data file cut short

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
                "padded_bytes": self.padded_bytes, "problems": list(self.problems)}


def recover(source: str | os.PathLike[str], dest: str | os.PathLike[str], *, engine: str | None = None) -> RecoverReport:
    """Build a new ledger in `dest` (a new or empty directory) from the intact prefix
    of the journal of the ledger in `source`, which is only read.

    Returns a RecoverReport naming the journal range recovered and the range lost.
    The new ledger is checkpointed and verified before this returns. Raises
    FileNotFoundError / NotADirectoryError / NotALedgerError when `source` is not a
    ledger, ValueError when `dest` is not new or empty, and CorruptionError when
    nothing can be salvaged (LMDB's meta pages are gone).
    """
    source, dest = os.fspath(source), os.fspath(dest)
    if not os.path.isdir(source) or not os.path.exists(os.path.join(source, "data.mdb")):
        raise FileNotFoundError(f"no ledger at {source!r}: it has no data.mdb")
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise ValueError(f"recover: {dest!r} is not a new or empty directory")
    if os.path.realpath(source) == os.path.realpath(dest):
        raise ValueError("recover writes a new ledger: give a destination other than the source")
    report = RecoverReport()
    facts = check_data_file(source, allow_short=True)
    assert facts is not None
    padded_dir = None
    read_from = source
    if facts.file_bytes < facts.needed_bytes:
        # The source is never written: its data file is padded in a copy.
        padded_dir = tempfile.mkdtemp(prefix=".cardledger-recover-", dir=os.path.dirname(os.path.abspath(dest)))
        shutil.copyfile(os.path.join(source, "data.mdb"), os.path.join(padded_dir, "data.mdb"))
        os.truncate(os.path.join(padded_dir, "data.mdb"), facts.needed_bytes)
        report.padded_bytes = facts.needed_bytes - facts.file_bytes
        report.problems.append(
            f"data.mdb is {facts.file_bytes:,} bytes, {report.padded_bytes:,} short of its last page: "
            "salvaged from a copy padded with zeros")
        read_from = padded_dir
    implementation = select.resolve(engine)
    try:
        store = Store(read_from, True, "full", select.codec_for(implementation))
        try:
            _salvage(store, dest, implementation, report)
        except LMDB_CORRUPTION_ERRORS as e:
            raise CorruptionError(f"recover: {source!r} cannot be read: {type(e).__name__}: {e}") from e
        except lmdb.Error as e:
            raise StorageError(f"recover: {type(e).__name__}: {e}") from e
        finally:
            store.close()
    finally:
        if padded_dir is not None:
            shutil.rmtree(padded_dir, ignore_errors=True)
    return report


def _salvage(store: Store, dest: str, implementation: str, report: RecoverReport) -> None:
    """Inspect `store`, then copy its intact journal prefix into a new ledger at `dest`."""
    try:
        default_cap_fen = store.init_meta(0)
    except CorruptionError as e:
        raise CorruptionError(f"recover: the ledger's settings cannot be read ({e}): nothing to salvage") from e
    with store.begin_read() as txn:
        fares = FareVersions(store.fares_db, store.meta_db)
        fresh = select.engine_class(implementation)(default_cap_fen)
        fare_items: list[tuple[bytes, bytes]] = []
        try:
            fares.load(txn)
            fresh.set_fare_versions(fares.tap_tables())
            fare_items = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=store.fares_db)]
        except (LedgerError, ValueError, *LMDB_CORRUPTION_ERRORS) as e:
            report.problems.append(f"fare versions cannot be read ({type(e).__name__}: {e}): none are recovered, "
                                   "so the journal is recovered up to its first tap")
        max_tap_time = txn.get(META_MAX_TAP_TIME_KEY, db=store.meta_db)
        inspected = verify(store, txn, fresh, None, CHECKPOINT_OPS_DEFAULT)
        report.problems.extend(inspected.problems)
        report.source_head = inspected.journal_head
        upto = inspected.intact_seq
        os.makedirs(dest, exist_ok=True)
        led = Ledger(dest, create=True, default_cap_fen=default_cap_fen, engine=implementation)
        try:
            new = led._store
            assert new is not None
            with new.begin_write() as out:
                for key, value in fare_items:
                    out.put(key, value, db=new.fares_db)
                if max_tap_time is not None and fare_items:
                    out.put(META_MAX_TAP_TIME_KEY, bytes(max_tap_time), db=new.meta_db)
            _copy_journal(store, txn, led, upto, report)
            led.checkpoint()
            check = led.verify()
            if not check.ok or led.journal_seq != upto:
                raise CorruptionError(f"recover: the new ledger at {dest!r} does not verify: {check.problems[:3]}")
        finally:
            led.close()


def _copy_journal(store: Store, txn: Any, led: Ledger, upto: int, report: RecoverReport) -> None:
    """Copy the journal batches through journal_seq `upto`, verbatim, into `led`'s
    journal, checkpointing every RECOVER_CHUNK_RECORDS records."""
    new = led._store
    assert new is not None
    cur = txn.cursor(db=store.journal_db)
    if upto == 0 or not cur.first():
        return
    pending: list[tuple[bytes, bytes]] = []
    records = 0
    for key, value in cur:
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
