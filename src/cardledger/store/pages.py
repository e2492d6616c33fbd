"""LMDB's pages, read and checked without LMDB: so damage is a report, not an abort.

LMDB trusts its pages. A flipped bit in a page header can send it to a page that
is not there (SIGBUS) or trip one of its own assertions (abort()): the process dies
with no message. `PageFile` walks the B-trees of a data file read-only, from the
newest meta page down, and checks every branch and leaf page and the head of every
overflow run before LMDB is let near them: the page number each page records, its
kind, its bounds, every node's place and size, key order, every child's page
number, and the page and entry counts each database records. What it finds is a
list of problems naming the database and page.

`items` reads a database's keys and values straight from the pages, skipping a
subtree it cannot trust: `recover` salvages a journal that LMDB itself could not
walk. The layout read here is LMDB 0.9's on a 64-bit host (py-lmdb's bundled
library), the one `datafile.check_data_file` checks the meta pages of.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptionError, StorageError
from .datafile import DataFileFacts, check_data_file

#: Page header: pgno, pad, flags, lower, upper (an overflow page: its page count
#: where lower and upper are).
PAGE_HEADER = struct.Struct("<QHHHH")
OVERFLOW_HEADER = struct.Struct("<QHHI")
PAGE_HEADER_BYTES = PAGE_HEADER.size
#: A node: lo, hi, flags, key size; then the key, then the data (a leaf's) .
NODE = struct.Struct("<HHHH")
NODE_BYTES = NODE.size
#: A database record (MDB_db): pad, flags, depth, branch/leaf/overflow pages, entries, root.
DB_RECORD = struct.Struct("<IHHQQQQQ")
#: Where the meta page keeps its two database records (FREE_DBI, MAIN_DBI).
META_DBS_AT = PAGE_HEADER_BYTES + 4 + 4 + 8 + 8
P_BRANCH, P_LEAF, P_OVERFLOW = 0x01, 0x02, 0x04
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
P_INVALID = (1 << 64) - 1
#: B-tree depth LMDB never exceeds (CURSOR_STACK).
DEPTH_MAX = 32
#: Problems named one by one before the rest are only counted.
PAGE_PROBLEMS_MAX = 20


#: MDB_INTEGERKEY: keys are native (little-endian) integers, ordered as numbers
#: (LMDB's free-page database: its keys are txnids).
MDB_INTEGERKEY = 0x08


@dataclass
class DbRecord:
    """A database's record: its root page, depth and counts."""

    name: str
    flags: int
    depth: int
    branch_pages: int
    leaf_pages: int
    overflow_pages: int
    entries: int
    root: int


class PagesMoved(Exception):
    """The meta page a walk was to start from was overwritten by a newer commit."""


class PageFile:
    """A data file's pages, mapped read-only, with the walk that checks them.

    The walk reads the tree of the meta page whose txnid is `facts.txnid`. While a
    writer may run, hold an LMDB read transaction of that txnid open meanwhile
    (`pinned`): LMDB then reuses none of that tree's pages."""

    def __init__(self, path: str, facts: DataFileFacts | None = None) -> None:
        self.path = path
        facts = facts or check_data_file(path, allow_short=True)
        if facts is None:
            raise FileNotFoundError(f"no data.mdb in {path!r}")
        self.facts = facts
        self.psize = facts.page_bytes
        # Pages past the end of a file cut short are missing, never mapped: touching
        # the map past the file's end is a SIGBUS.
        self.pages = min(facts.last_pgno + 1, facts.file_bytes // facts.page_bytes)
        self.problems: list[str] = []
        self._problem_count = 0
        self._checked: list[str] | None = None
        if self.pages < facts.last_pgno + 1:
            self._problem(f"pages {self.pages:,} to {facts.last_pgno:,} lie past the end of the file (cut short)")
        with open(os.path.join(path, "data.mdb"), "rb") as f:
            self._map = mmap.mmap(f.fileno(), self.pages * self.psize, access=mmap.ACCESS_READ)
        meta_pgno = self._newest_meta()
        at = meta_pgno * self.psize + META_DBS_AT
        self.free = self._db_record("(free pages)", self._map[at : at + DB_RECORD.size])
        self.main = self._db_record("(main)", self._map[at + DB_RECORD.size : at + 2 * DB_RECORD.size])

    def close(self) -> None:
        """Unmap the file."""
        self._map.close()

    def __enter__(self) -> "PageFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the walk

    def check(self, names: tuple[bytes, ...]) -> list[str]:
        """Walk the free-page tree, the main tree and the named databases `names`;
        return the problems found (also kept in `problems`). Walked once: later
        calls return the first walk's findings."""
        if self._checked is not None:
            return self._checked
        self._check_db(self.free)
        named = {}
        for key, value in self._walk(self.main, want_values=True):
            if len(value) == DB_RECORD.size:
                named[key] = value
        for name in names:
            if name in named:
                self._check_db(self._db_record(name.decode(), named[name]))
        more = self._problem_count - len(self.problems)
        self._checked = self.problems + ([f"data.mdb: {more} more damaged pages or nodes"] if more > 0 else [])
        return self._checked

    def databases(self) -> dict[bytes, DbRecord]:
        """The named databases the main tree lists."""
        return {k: self._db_record(k.decode(errors="replace"), v)
                for k, v in self._walk(self.main, want_values=True) if len(v) == DB_RECORD.size}

    def items(self, name: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The keys and values of named database `name`, in key order, read from the
        pages; a damaged subtree is skipped (and recorded in `problems`)."""
        db = self.databases().get(name)
        if db is not None:
            yield from self._walk(db, want_values=True)

    def _check_db(self, db: DbRecord) -> None:
        counts = {"branch": 0, "leaf": 0, "overflow": 0, "entries": 0, "depth": set()}
        for _ in self._walk(db, want_values=False, counts=counts):
            pass
        if counts.get("damaged"):
            return  # the counts of a damaged tree say nothing more
        got = (counts["branch"], counts["leaf"], counts["overflow"], counts["entries"])
        want = (db.branch_pages, db.leaf_pages, db.overflow_pages, db.entries)
        if db.root != P_INVALID and got != want:
            self._problem(f"database {db.name}: its record counts {want} (branch, leaf, overflow pages, "
                          f"entries) but its pages hold {got}")
        if len(counts["depth"]) > 1 or (counts["depth"] and counts["depth"] != {db.depth}):
            self._problem(f"database {db.name}: leaves at depths {sorted(counts['depth'])}, its record says {db.depth}")

    def _walk(self, db: DbRecord, want_values: bool, counts: dict | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every leaf node of `db` in order (values only if wanted)."""
        if db.root == P_INVALID:
            return
        stack: list[tuple[int, int]] = [(db.root, 1)]
        seen: set[int] = set()
        while stack:
            pgno, depth = stack.pop()
            where = f"database {db.name}, page {pgno}"
            if not 2 <= pgno < self.pages or pgno in seen or depth > DEPTH_MAX:
                self._damaged(counts, f"{where}: a page number out of range or reached twice")
                continue
            seen.add(pgno)
            off = pgno * self.psize
            stored, _, flags, lower, upper = PAGE_HEADER.unpack_from(self._map, off)
            kind = flags & (P_BRANCH | P_LEAF | P_OVERFLOW | 0x08 | 0x20 | 0x40)
            if stored != pgno or kind not in (P_BRANCH, P_LEAF):
                self._damaged(counts, f"{where}: not a branch or leaf page (records page {stored}, flags {flags:#x})")
                continue
            n = (lower - PAGE_HEADER_BYTES) >> 1
            if lower < PAGE_HEADER_BYTES or lower & 1 or upper < lower or upper > self.psize or n == 0:
                self._damaged(counts, f"{where}: bad bounds (lower {lower}, upper {upper})")
                continue
            ptrs = struct.unpack_from(f"<{n}H", self._map, off + PAGE_HEADER_BYTES)
            nodes = []
            ok = True
            prev_key = None
            for i, ptr in enumerate(ptrs):
                if ptr < upper or ptr & 1 or ptr + NODE_BYTES > self.psize:
                    ok = False
                    break
                lo, hi, nflags, ksize = NODE.unpack_from(self._map, off + ptr)
                key_at = off + ptr + NODE_BYTES
                if kind == P_BRANCH:
                    end = ptr + NODE_BYTES + ksize
                    child = lo | hi << 16 | nflags << 32
                    nodes.append((child, None))
                else:
                    dsize = lo | hi << 16
                    if nflags & ~(F_BIGDATA | F_SUBDATA) or nflags & F_DUPDATA:
                        ok = False
                        break
                    end = ptr + NODE_BYTES + ksize + (8 if nflags & F_BIGDATA else dsize)
                    nodes.append((nflags, dsize))
                if end > self.psize:
                    ok = False
                    break
                key = bytes(self._map[key_at : key_at + ksize])
                order = int.from_bytes(key, "little") if db.flags & MDB_INTEGERKEY else key
                if (kind == P_LEAF or i > 0) and prev_key is not None and order <= prev_key:
                    ok = False
                    break
                if kind == P_LEAF or i > 0:
                    prev_key = order
                nodes[-1] = (*nodes[-1], key, key_at)
            if not ok:
                self._damaged(counts, f"{where}: a node out of bounds, out of order or of an unknown kind")
                continue
            if counts is not None:
                counts["branch" if kind == P_BRANCH else "leaf"] += 1
            if kind == P_BRANCH:
                # Children in reverse, so the stack pops them in key order.
                stack.extend((child, depth + 1) for child, _, _, _ in reversed(nodes))
                continue
            if counts is not None:
                counts["depth"].add(depth)
                counts["entries"] += len(nodes)
            for nflags, dsize, key, key_at in nodes:
                value = b""
                if nflags & F_BIGDATA:
                    value = self._overflow(db, key_at + len(key), dsize, counts, want_values)
                    if value is None:
                        continue
                elif want_values:
                    value = bytes(self._map[key_at + len(key) : key_at + len(key) + dsize])
                yield key, value

    def _overflow(self, db: DbRecord, at: int, dsize: int, counts: dict | None, want: bool) -> bytes | None:
        """The value an F_BIGDATA node points to (b"" if not wanted); None if damaged."""
        (pgno,) = struct.unpack_from("<Q", self._map, at)
        npages = (PAGE_HEADER_BYTES + dsize + self.psize - 1) // self.psize
        where = f"database {db.name}, overflow page {pgno}"
        if not 2 <= pgno or pgno + npages > self.pages:
            self._damaged(counts, f"{where}: out of range")
            return None
        stored, _, flags, count = OVERFLOW_HEADER.unpack_from(self._map, pgno * self.psize)
        if stored != pgno or not flags & P_OVERFLOW or count != npages:
            self._damaged(counts, f"{where}: not the overflow run its node names")
            return None
        if counts is not None:
            counts["overflow"] += npages
        if not want:
            return b""
        start = pgno * self.psize + PAGE_HEADER_BYTES
        return bytes(self._map[start : start + dsize])

    # -- the meta pages and records

    def _newest_meta(self) -> int:
        """The meta page of txnid facts.txnid (PagesMoved if a commit overwrote it)."""
        txnids = [struct.unpack_from("<Q", self._map, k * self.psize + 144)[0] for k in (0, 1)]
        if self.facts.txnid not in txnids:
            self._map.close()
            raise PagesMoved(self.facts.txnid)
        return txnids.index(self.facts.txnid)

    def _db_record(self, name: str, raw: bytes) -> DbRecord:
        _, flags, depth, branch, leaf, overflow, entries, root = DB_RECORD.unpack(raw)
        return DbRecord(name, flags, depth, branch, leaf, overflow, entries, root)

    def _damaged(self, counts: dict | None, message: str) -> None:
        if counts is not None:
            counts["damaged"] = True
        self._problem(message)

    def _problem(self, message: str) -> None:
        self._problem_count += 1
        if len(self.problems) < PAGE_PROBLEMS_MAX:
            self.problems.append(f"data.mdb: {message}")


class PageTxn:
    """A read transaction's face over a `PageFile`, for code written against py-lmdb
    (`verify`, `FareVersions`): databases are named by their bytes names; `get`,
    `cursor` (iteration, `set_range`, `first`, `last`, `key`, `value`) and `stat`.
    Small databases are read whole on first use; the journal is streamed when
    iterated from its start."""

    STREAMED = (b"journal",)

    def __init__(self, pages: PageFile) -> None:
        self.pages = pages
        self._dbs: dict[bytes, list[tuple[bytes, bytes]]] = {}

    def _items(self, db: bytes) -> list[tuple[bytes, bytes]]:
        if db not in self._dbs:
            self._dbs[db] = list(self.pages.items(db))
        return self._dbs[db]

    def get(self, key: bytes, db: bytes) -> bytes | None:
        """The value of `key` in `db`, or None."""
        for k, v in self._items(db):
            if k == key:
                return v
        return None

    def cursor(self, db: bytes) -> "PageCursor":
        """A cursor over `db`."""
        return PageCursor(self, db)

    def stat(self, db: bytes) -> dict:
        """{"entries": n} of `db`."""
        return {"entries": len(self._items(db))}


class PageCursor:
    """The part of a py-lmdb cursor `PageTxn` users need."""

    def __init__(self, txn: PageTxn, db: bytes) -> None:
        self._txn, self._db = txn, db
        self._items: list[tuple[bytes, bytes]] | None = None
        self._at = 0

    def _all(self) -> list[tuple[bytes, bytes]]:
        if self._items is None:
            self._items = self._txn._items(self._db)
        return self._items

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        if self._items is None and self._at == 0 and self._db in PageTxn.STREAMED:
            yield from self._txn.pages.items(self._db)
            return
        items = self._all()
        while self._at < len(items):
            yield items[self._at]
            self._at += 1

    def set_range(self, key: bytes) -> bool:
        """Move to the first key at or after `key`."""
        items = self._all()
        self._at = next((i for i, (k, _) in enumerate(items) if k >= key), len(items))
        return self._at < len(items)

    def first(self) -> bool:
        """Move to the first key."""
        self._at = 0
        return bool(self._all())

    def last(self) -> bool:
        """Move to the last key."""
        self._at = len(self._all()) - 1
        return self._at >= 0

    def key(self) -> bytes:
        """The current key."""
        return self._all()[self._at][0]

    def value(self) -> bytes:
        """The current value."""
        return self._all()[self._at][1]


#: Tries at pinning the newest tree while a writer commits meanwhile.
PIN_RETRIES_MAX = 100


@contextlib.contextmanager
def pinned(path: str, env: Any) -> Iterator[PageFile | None]:
    """A PageFile of the newest committed tree of `path`, held safe from a concurrent
    writer by a read transaction of `env` (open on `path`) for as long as the block
    runs; None if there is no data file.

    LMDB's open and a read transaction's begin read only the meta pages, so they are
    safe on a damaged file; the transaction pins its txnid's tree, and the walk
    starts from the meta page of that same txnid (tried again if commits since
    overwrote it)."""
    for _ in range(PIN_RETRIES_MAX):
        with env.begin() as txn:
            # A writer publishes a commit's txnid to readers just after writing its
            # meta page: read the meta page of the txnid this transaction holds.
            newest = check_data_file(path, allow_short=True)
            if newest is None:
                yield None
                return
            facts = newest.of_txnid(txn.id())
            if facts is None:
                continue  # two commits since the transaction began overwrote its meta page
            try:
                pages = PageFile(path, facts)
            except PagesMoved:
                continue
            try:
                yield pages
            finally:
                pages.close()
            return
    raise StorageError(f"{path!r}: a writer committed through {PIN_RETRIES_MAX} tries at reading its pages; try again")


def check_pages(path: str, names: tuple[bytes, ...], env: Any) -> None:
    """Raise CorruptionError naming the damage if the data file's B-trees (free pages,
    main, and the named databases `names`) are not sound; nothing if they are, or if
    there is no data file yet. `env` is LMDB's environment of `path`, opened (which
    reads the meta pages only) but not yet used."""
    with pinned(path, env) as pages:
        problems = pages.check(names) if pages is not None else []
    if problems:
        raise CorruptionError(
            f"{os.path.join(path, 'data.mdb')} has damaged pages: " + "; ".join(problems[:3])
            + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
            + ": `cardledger verify` reports them all; `cardledger recover` salvages the intact journal")
