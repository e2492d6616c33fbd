"""The LMDB data file: kept ahead of its pages, and how much of it is the ledger's.

A commit that grows the data file also commits the growth to the filesystem's
journal in its fdatasync; into blocks the file already has, it does not. So while a
batch's kernel runs, `DataFileExtender` appends zeros (written, not a hole) once the
file runs less than `ahead_bytes` past LMDB's last page (as far as the file is long,
up to DATA_FILE_AHEAD_BYTES), in a thread of its own (`cardledger-extend`). The file is then larger than its pages by up to the sum of
the two constants; `lmdb_used_bytes` counts the pages.
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import lmdb

from ..errors import CorruptionError, StorageError
from .keys import DB_NAMES

#: The data file is kept at least this far ahead of its last page.
DATA_FILE_AHEAD_BYTES = 32 << 20
#: It is extended this much at a time.
DATA_FILE_EXTEND_BYTES = 4 << 20

#: Zeros are written in pieces of this size when the data file is extended ahead.
ZERO_PIECE_BYTES = 1 << 20


def ahead_bytes(used_bytes: int) -> int:
    """How far ahead of its `used_bytes` of pages a data file is kept: as far as it is
    long, up to DATA_FILE_AHEAD_BYTES. A small ledger (a test's, a new one) is not
    given 32 MiB of zeros it would never reach; a large one, whose commits write the
    most, gets the whole distance."""
    return min(DATA_FILE_AHEAD_BYTES, max(used_bytes, ZERO_PIECE_BYTES))


def zero_extend(fd: int, extra_bytes: int, limit_bytes: int) -> int:
    """Append `extra_bytes` of zeros (written, not a hole) to the file open as `fd`,
    never past `limit_bytes`, and fdatasync it; return the file's new size.

    For the LMDB data file, ahead of its last page: LMDB then overwrites blocks the
    file already has, and a commit's fdatasync need not also commit the file's growth
    (its size and new blocks) to the filesystem journal. Call it only while the
    ledger holds LMDB's write lock and writes no page (during a batch's kernel):
    it writes past the end of what LMDB has written."""
    size = os.fstat(fd).st_size
    end = min(size + extra_bytes, limit_bytes)
    if end <= size:
        return size
    zeros = memoryview(bytes(ZERO_PIECE_BYTES))
    at = size
    while at < end:
        at += os.pwrite(fd, zeros[: min(ZERO_PIECE_BYTES, end - at)], at)
    os.fdatasync(fd)
    return end


def ledger_disk_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the files under `path` (a closed ledger's folder, or any folder), an
    LMDB data file counted up to its last page (`lmdb_used_bytes`): the zeros written
    ahead of it are room for the next batches, not what the stored ops take."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                size = os.path.getsize(full)
                if name == "data.mdb":
                    size = min(size, lmdb_used_bytes(root))
            except (OSError, lmdb.Error):
                continue
            total += size
    return total


def lmdb_used_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the LMDB data file in `path` that hold pages (its last page's end):
    the file itself may run further, in zeros written ahead (`zero_extend`)."""
    env = lmdb.open(os.fspath(path), max_dbs=len(DB_NAMES), readonly=True, lock=False)
    try:
        return env_used_bytes(env)
    finally:
        env.close()


def env_used_bytes(env: Any) -> int:
    """Bytes of an open LMDB environment's data file up to its last committed page."""
    return (env.info()["last_pgno"] + 1) * env.stat()["psize"]


class DataFileExtender:
    """Keeps one ledger's data file ahead of its pages (see the module docstring).

    Only the batch path calls it, under the ledger's lock, in `apply`: the extension
    runs while the batch's kernel does, and is joined before the transaction writes a
    page. Best effort: a failure (a full disk) turns it off for this ledger."""

    def __init__(self, path: str, readonly: bool) -> None:
        self.path = path
        self.off = readonly  # (set for good by a failed extension)
        self._fd: int | None = None
        self._extension: Future[int] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def extend_beside_kernel(self, env: Any) -> None:
        """If the data file runs less than DATA_FILE_AHEAD_BYTES past LMDB's last page,
        start appending DATA_FILE_EXTEND_BYTES of zeros to it in the extend thread (its
        fdatasync waits on the disk, not the CPU). The caller's write transaction holds
        LMDB's write lock and writes no page before `join`."""
        if self.off:
            return
        try:
            if self._fd is None:
                self._fd = os.open(os.path.join(self.path, "data.mdb"), os.O_WRONLY | os.O_CLOEXEC)
            # (the file's own size: another Ledger of this process may have extended it)
            used = env_used_bytes(env)
            ahead = ahead_bytes(used)
            if os.fstat(self._fd).st_size - used >= ahead:
                return
        except OSError:
            self.off = True
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardledger-extend")
        limit = env.info()["map_size"]
        self._extension = self._executor.submit(zero_extend, self._fd, min(DATA_FILE_EXTEND_BYTES, ahead), limit)

    def join(self) -> None:
        """Wait for the extension started beside the kernel, if any."""
        extension, self._extension = self._extension, None
        if extension is None:
            return
        try:
            extension.result()
        except OSError:
            self.off = True

    def close(self) -> None:
        """Stop the extend thread and close the file."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# -- the data file's own account of its size, read before LMDB maps it

#: LMDB's magic number, at the start of each meta page's body.
LMDB_MAGIC = 0xBEEFC0DE
#: The data format of LMDB 0.9 (py-lmdb's bundled library).
LMDB_DATA_VERSION = 1
#: A meta page: the page header (pgno u64, pad u16, flags u16, lower u16, upper u16),
#: then magic, version, address, map size, the two database records (FREE_DBI, whose
#: first field holds the page size, and MAIN_DBI; 48 bytes each), last page, txnid.
LMDB_META = struct.Struct("<QHHHHIIQQ48s48sQQ")
#: P_META, the page flag of a meta page.
LMDB_P_META = 0x08
#: Page sizes LMDB can write.
LMDB_PAGE_SIZES = frozenset(1 << k for k in range(9, 17))
#: LMDB keeps two meta pages, at pages 0 and 1, and commits alternate between them.
LMDB_META_PAGES = 2


@dataclass(frozen=True)
class DataFileFacts:
    """What an LMDB data file's newest meta page says about it."""

    page_bytes: int
    last_pgno: int  # the last page in use
    txnid: int  # the last committed write transaction
    file_bytes: int
    metas: tuple[tuple[int, int], ...] = ()  # (last page, txnid) of meta pages 0 and 1

    def of_txnid(self, txnid: int) -> "DataFileFacts | None":
        """The facts of the meta page of transaction `txnid` (None: neither is)."""
        for last_pgno, t in self.metas:
            if t == txnid:
                return DataFileFacts(self.page_bytes, last_pgno, t, self.file_bytes, self.metas)
        return None

    @property
    def needed_bytes(self) -> int:
        """Bytes the file must hold for every page in use to be readable."""
        return (self.last_pgno + 1) * self.page_bytes


def check_data_file(path: str, allow_short: bool = False) -> DataFileFacts | None:
    """Check a ledger directory's `data.mdb` against its own meta pages before LMDB
    maps it; None if there is no data file yet (a new ledger).

    LMDB maps the file and reads pages through the map: a page past the end of a
    truncated file is not an error it can report but a SIGBUS that kills the process.
    So a file shorter than its newest meta page's last page, shorter than the two
    meta pages, or without LMDB's meta pages at all (a foreign or zeroed file) is a
    CorruptionError naming the file and what is wrong, raised before LMDB opens it.
    `allow_short`: return the facts of a file cut short instead (for salvage).
    """
    name = os.path.join(path, "data.mdb")
    try:
        fd = os.open(name, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"cannot read {name}: {e}") from e
    try:
        # The meta pages first, the size after: a writer writes a transaction's pages
        # before its meta page, so the file holds every page of the meta read.
        head = os.pread(fd, LMDB_META.size, 0)
        size = os.fstat(fd).st_size if len(head) < LMDB_META.size else None
        if size == 0:
            raise CorruptionError(
                f"{name} is empty: the ledger's data file was truncated (or its creation never finished); "
                "restore it from a backup"
            )
        if len(head) < LMDB_META.size:
            raise CorruptionError(f"{name} is {size} bytes: too short for an LMDB meta page (truncated?)")
        page_bytes = _meta_page_bytes(name, head)
        metas = [_read_meta(name, os.pread(fd, LMDB_META.size, k * page_bytes), k, page_bytes)
                 for k in range(LMDB_META_PAGES)]
        size = os.fstat(fd).st_size
        if size < LMDB_META_PAGES * page_bytes:
            raise CorruptionError(
                f"{name} is {size:,} bytes: shorter than LMDB's two meta pages of {page_bytes:,} bytes (truncated)"
            )
    finally:
        os.close(fd)
    last_pgno, txnid = max(metas, key=lambda m: m[1])
    facts = DataFileFacts(page_bytes, last_pgno, txnid, size, tuple(metas))
    if size < facts.needed_bytes and not allow_short:
        raise CorruptionError(
            f"{name} is {size:,} bytes but its last committed transaction ({txnid}) uses pages up to "
            f"{last_pgno:,}, {facts.needed_bytes:,} bytes: the file was truncated; restore it from a backup, or "
            "salvage the intact journal with `cardledger recover`"
        )
    return facts


def _meta_page_bytes(name: str, head: bytes) -> int:
    """The page size recorded in meta page 0 (CorruptionError if it is not one)."""
    fields = LMDB_META.unpack(head)
    magic, free_db = fields[5], fields[9]
    if magic != LMDB_MAGIC:
        raise CorruptionError(f"{name} is not an LMDB data file (no LMDB magic number in its first page)")
    page_bytes = struct.unpack_from("<I", free_db)[0]
    if page_bytes not in LMDB_PAGE_SIZES:
        raise CorruptionError(f"{name}: meta page 0 records a page size of {page_bytes}, which LMDB never writes")
    return page_bytes


def _read_meta(name: str, raw: bytes, pgno: int, page_bytes: int) -> tuple[int, int]:
    """(last page in use, txnid) of meta page `pgno`; CorruptionError if it is damaged."""
    if len(raw) < LMDB_META.size:
        raise CorruptionError(f"{name}: meta page {pgno} is cut short (truncated)")
    stored_pgno, _, flags, _, _, magic, version, _, _, free_db, _, last_pgno, txnid = LMDB_META.unpack(raw)
    if magic != LMDB_MAGIC or not flags & LMDB_P_META or stored_pgno != pgno:
        raise CorruptionError(f"{name}: meta page {pgno} is damaged (not an LMDB meta page)")
    if version != LMDB_DATA_VERSION:
        raise CorruptionError(f"{name}: LMDB data format {version}, this library's LMDB reads {LMDB_DATA_VERSION}")
    if struct.unpack_from("<I", free_db)[0] != page_bytes:
        raise CorruptionError(f"{name}: meta page {pgno} disagrees with meta page 0 on the page size")
    if last_pgno < LMDB_META_PAGES - 1 or last_pgno >= 1 << 48:
        raise CorruptionError(f"{name}: meta page {pgno} records last page {last_pgno}, which cannot be")
    return last_pgno, txnid
