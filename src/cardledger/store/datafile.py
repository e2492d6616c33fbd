"""The LMDB data file: kept ahead of its pages, and how much of it is the ledger's.

A commit that grows the data file also commits the growth to the filesystem's
journal in its fdatasync; into blocks the file already has, it does not. So while a
batch's kernel runs, `DataFileExtender` appends zeros (written, not a hole) once the
file runs less than DATA_FILE_AHEAD_BYTES past LMDB's last page, in a thread of its
own (`cardledger-extend`). The file is then larger than its pages by up to the sum of
the two constants; `lmdb_used_bytes` counts the pages.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import lmdb

from .keys import DB_NAMES

#: The data file is kept at least this far ahead of its last page.
DATA_FILE_AHEAD_BYTES = 32 << 20
#: It is extended this much at a time.
DATA_FILE_EXTEND_BYTES = 4 << 20

#: Zeros are written in pieces of this size when the data file is extended ahead.
ZERO_PIECE_BYTES = 1 << 20


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
            if os.fstat(self._fd).st_size - env_used_bytes(env) >= DATA_FILE_AHEAD_BYTES:
                return
        except OSError:
            self.off = True
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardledger-extend")
        limit = env.info()["map_size"]
        self._extension = self._executor.submit(zero_extend, self._fd, DATA_FILE_EXTEND_BYTES, limit)

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
