"""The LMDB environment of a ledger directory, and the `Store` that opens it.

`Store` is the one owner of the environment and its named databases (`keys.py`):
it opens them, checks the format marker, hands out transactions and grows the map.
What lives in each database is read and written by the module named for it
(`journal.py`, `ids.py`, `checkpoints.py`, `fares.py`).
"""

from __future__ import annotations

import builtins
import hashlib
import os
import shutil
from typing import Any, Iterator

import lmdb

from ..errors import CorruptionError, NotALedgerError, StorageError
from .checkpoints import checkpoint_file_name, decode_stored_desc
from .datafile import check_data_file
from .pages import check_pages
from .journal import Batch, iter_batches, journal_head
from .keys import DB_NAMES, FORMAT_VERSION, KEY, META_DEFAULT_CAP_KEY, META_FORMAT_KEY, META_SETTINGS_SHA_KEY

#: Initial LMDB map size. It is address space, not disk: the file grows as needed,
#: and a full map is grown and the batch retried transparently.
MAP_SIZE_INITIAL_BYTES = 1 << 34
#: Reader slots shared by all processes (lock.mdb is sparse, slots are cheap).
MAX_READERS = 1024
#: How often a read that meets a checkpoint file replaced meanwhile is retried.
LOAD_RETRIES_MAX = 5
#: What each durability mode guarantees. Modes that could corrupt the ledger on
#: power loss (LMDB without sync, or with write-map and async flushes) are refused.
DURABILITY_MODES = {
    "full": "every acknowledged batch survives a process crash and power loss (LMDB sync + metasync)",
    "nometasync": (
        "every acknowledged batch survives a process crash; after power loss or an OS crash the "
        "last acknowledged batch(es) may be missing, never half-present, and the ledger is never "
        "corrupted (LMDB sync without metasync: one fsync per commit instead of two)"
    ),
}
#: LMDB's own findings in a damaged data file.
LMDB_CORRUPTION_ERRORS = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.BadTxnError, lmdb.BadValsizeError,
                          lmdb.InvalidError, lmdb.VersionMismatchError)


def settings_digest(format_value: bytes, cap_value: bytes) -> bytes:
    """The checksum stored beside a ledger's format marker and default cap."""
    return hashlib.sha256(b"cardledger settings\0" + format_value + cap_value).digest()


def checked_settings(path: str, version: Any, cap: Any, digest: Any) -> int:
    """The default cap of the ledger at `path`, from its stored format marker, default
    cap and settings digest (None where missing), once they are checked
    (CorruptionError naming what is wrong)."""
    if len(version) != KEY.size:
        raise CorruptionError(f"ledger at {path!r}: its format marker is damaged")
    if KEY.unpack(bytes(version))[0] != FORMAT_VERSION:
        raise CorruptionError(f"ledger format {KEY.unpack(bytes(version))[0]}, this library reads {FORMAT_VERSION}")
    if cap is None or len(cap) != KEY.size:
        raise CorruptionError(f"ledger at {path!r}: its default cap is missing or damaged")
    if digest is not None and bytes(digest) != settings_digest(bytes(version), bytes(cap)):
        raise CorruptionError(f"ledger at {path!r}: its settings (format, default cap) fail their checksum")
    return int(KEY.unpack(bytes(cap))[0])


class EnvRegistry:
    """One LMDB environment per ledger directory per process, shared by its Ledgers.

    LMDB forbids opening one environment twice in a process (closing either copy
    would drop the other's locks), so a reader and a writer in one process share it.
    """

    def __init__(self) -> None:
        self._envs: dict[str, list] = {}  # realpath -> [env, readonly, refcount, pid, durability]

    def acquire(self, path: str, readonly: bool, durability: str, check: bool = True) -> Any:
        """The environment of `path`, opened if this process has not yet.

        Opening checks the data file first: its size against its meta pages, and
        (`check`) every page of its B-trees (`pages.py`), since LMDB dies on damage
        instead of reporting it. check=False is for readers of damaged files that
        check the pages themselves (`inspect`, `recover`): only the meta pages are
        read, which LMDB's open itself does."""
        key = os.path.realpath(path)
        entry = self._envs.get(key)
        if entry is not None and entry[0] is not None and entry[3] == os.getpid():
            if entry[4] != durability and not readonly:
                raise StorageError(
                    f"ledger {path!r} is already open in this process with durability={entry[4]!r}: "
                    "one process uses one durability mode per ledger"
                )
            if entry[1] and not readonly:
                raise StorageError(
                    f"ledger {path!r} is already open readonly in this process: close those readers "
                    "before opening it for writing, or open the writer first"
                )
            entry[2] += 1
            return entry[0]
        if entry is not None:
            # Inherited through fork(): the parent's handle is unusable here. Closing it
            # in the child releases only what the child owns (LMDB checks the pid).
            del self._envs[key]
            try:
                entry[0].close()
            except lmdb.Error:  # pragma: no cover
                pass
        # LMDB trusts its pages: a data file cut short is a SIGBUS on the first page
        # read past its end, a damaged page header can trip an assertion (abort()).
        # The file's size is checked before LMDB maps it, its B-trees before any
        # transaction uses them (`pages.py`).
        check_data_file(path, allow_short=not check)
        env = lmdb.open(
            path,
            map_size=MAP_SIZE_INITIAL_BYTES,
            max_dbs=len(DB_NAMES),
            max_readers=MAX_READERS,
            readonly=readonly,
            sync=True,
            # "full": data pages, then the meta page, each fsynced: power loss keeps every
            # acknowledged batch. "nometasync": one fsync a commit; see DURABILITY_MODES.
            metasync=durability == "full",
            lock=True,
            readahead=False,
            max_spare_txns=0,
        )
        # Reader slots left behind by dead processes would pin old pages forever.
        env.reader_check()
        if check:
            try:
                check_pages(path, DB_NAMES, env)
            except BaseException:
                env.close()
                raise
        self._envs[key] = [env, readonly, 1, os.getpid(), durability]
        return env

    def release(self, path: str) -> None:
        """Drop one user of `path`'s environment; the last one closes it."""
        key = os.path.realpath(path)
        entry = self._envs.get(key)
        if entry is None or entry[3] != os.getpid():
            return
        entry[2] -= 1
        if entry[2] <= 0:
            del self._envs[key]
            entry[0].close()


ENVS = EnvRegistry()


class Store:
    """One ledger directory's LMDB environment and databases, opened for one Ledger."""

    def __init__(self, path: str, readonly: bool, durability: str, codec: Any) -> None:
        self.path = path
        self.readonly = readonly
        self.codec = codec
        self.env: Any = None
        try:
            self.env = ENVS.acquire(path, readonly, durability)
            dbs = {name: self.env.open_db(name, create=not readonly) for name in DB_NAMES}
        except lmdb.Error as e:
            if self.env is not None:
                ENVS.release(path)
                self.env = None
            if readonly and isinstance(e, lmdb.NotFoundError):
                raise NotALedgerError(f"{path!r} is an LMDB environment but not a cardledger ledger "
                                      "(it lacks the ledger's databases)") from e
            if isinstance(e, LMDB_CORRUPTION_ERRORS):
                raise CorruptionError(f"ledger at {path!r} is damaged: {type(e).__name__}: {e}") from e
            raise StorageError(f"cannot open ledger at {path!r}: {e}") from e
        self.meta_db, self.journal_db, self.state_db = dbs[b"meta"], dbs[b"journal"], dbs[b"state"]
        self.ids_db, self.ids_late_db, self.fares_db = dbs[b"ids"], dbs[b"ids_late"], dbs[b"fares"]

    def close(self) -> None:
        """Release the environment (the last user in this process closes it)."""
        if self.env is not None:
            self.env = None
            ENVS.release(self.path)

    # -- transactions

    def begin_read(self) -> Any:
        """A read transaction; if every reader slot is taken, slots of dead processes are
        reclaimed and it is tried once more."""
        try:
            return self.env.begin()
        except lmdb.ReadersFullError:
            self.env.reader_check()
            try:
                return self.env.begin()
            except lmdb.ReadersFullError as e:
                raise StorageError(
                    f"all {MAX_READERS} LMDB reader slots of {self.path!r} are in use by live processes: "
                    "close idle readers"
                ) from e

    def begin_write(self) -> Any:
        """A write transaction (LMDB serialises writers across processes)."""
        return self.env.begin(write=True)

    def grow_map(self) -> None:
        """Double the map size (after MapFullError)."""
        self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def adopt_map_size(self) -> None:
        """Take the map size another process grew the map to (after MapResizedError)."""
        self.env.set_mapsize(0)

    # -- meta

    def init_meta(self, default_cap_fen: int) -> int:
        """Check the format marker (writing it and the default cap on a new ledger);
        return the ledger's default cap."""
        with self.env.begin(write=not self.readonly) as txn:
            version = txn.get(META_FORMAT_KEY, db=self.meta_db)
            if version is None:
                if self.readonly:
                    raise NotALedgerError(f"{self.path!r} is an LMDB environment but not a cardledger ledger")
                txn.put(META_FORMAT_KEY, KEY.pack(FORMAT_VERSION), db=self.meta_db)
                txn.put(META_DEFAULT_CAP_KEY, KEY.pack(int(default_cap_fen)), db=self.meta_db)
                txn.put(META_SETTINGS_SHA_KEY, settings_digest(KEY.pack(FORMAT_VERSION), KEY.pack(int(default_cap_fen))),
                        db=self.meta_db)
                version = KEY.pack(FORMAT_VERSION)
            return checked_settings(self.path, version, txn.get(META_DEFAULT_CAP_KEY, db=self.meta_db),
                                    txn.get(META_SETTINGS_SHA_KEY, db=self.meta_db))

    # -- the journal

    def journal_head(self, txn: Any) -> int:
        """The last stored journal_seq (0: empty)."""
        return journal_head(txn, self.journal_db)

    def iter_batches(self, txn: Any, after_seq: int, prev_hash: bytes | None) -> Iterator[Batch]:
        """The stored batches after `after_seq`, checked (see `journal.iter_batches`)."""
        return iter_batches(self.codec, txn, self.journal_db, after_seq, prev_hash)

    def put_batch(self, txn: Any, key: bytes, value: bytes) -> None:
        """Append an encoded journal batch."""
        if not txn.put(key, value, db=self.journal_db, append=True):
            raise CorruptionError("journal key out of order: another writer raced this one")

    # -- backup

    def backup(self, dest: str) -> None:
        """Write a consistent copy to directory `dest` (new or empty): LMDB compacted as
        of one committed batch, with the checkpoint file that snapshot names."""
        os.makedirs(dest, exist_ok=True)
        if os.listdir(dest):
            raise ValueError(f"backup directory {dest!r} is not empty: give a new or empty directory")
        for attempt in range(LOAD_RETRIES_MAX):
            with self.begin_read() as txn:
                desc = decode_stored_desc(txn, self.state_db)
                src = None
                if desc is not None:
                    try:
                        src = builtins.open(os.path.join(self.path, checkpoint_file_name(desc.journal_seq)), "rb")
                    except FileNotFoundError:
                        continue  # replaced meanwhile: a fresh snapshot names the new one
                try:
                    self.env.copy(dest, compact=True, txn=txn)
                    if src is not None:
                        out_path = os.path.join(dest, checkpoint_file_name(desc.journal_seq))  # type: ignore[union-attr]
                        with builtins.open(out_path, "wb") as out:
                            shutil.copyfileobj(src, out, 1 << 20)
                            out.flush()
                            os.fsync(out.fileno())
                finally:
                    if src is not None:
                        src.close()
            dfd = os.open(dest, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            return
        raise StorageError("backup: the checkpoint file kept changing; try again")
