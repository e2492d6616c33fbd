"""A damaged ledger directory, as an operator meets it: a data file cut short, bytes
flipped on its pages, a damaged journal batch. Each gives a typed error or a clean
open, never a crash (the probes run in a process of their own); `inspect` reports
every damage that changes what the ledger holds; `recover` salvages the intact
journal prefix into a ledger that verifies, and names the range lost."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import lmdb
import numpy as np
import pytest
from helpers import Ops, open_cards

import cardledger
from cardledger import OpKind
import cardledger.store.pages
from cardledger.store.datafile import check_data_file

PROBE = os.path.join(os.path.dirname(__file__), "..", "helpers", "damage_probe.py")
CARDS = list(range(100, 400))


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """A closed ledger with a checkpoint, id flushes and merges behind it, and a
    journal of 40 batches from three sources."""
    path = str(tmp_path_factory.mktemp("kept") / "ledger")
    rng = np.random.default_rng(7)
    with cardledger.open(path, create=True, checkpoint_ops=400) as led:
        open_cards(led, CARDS, 50_000)
        for k in range(40):
            b = Ops(source=1 + k % 3, start_seq=1 + 1_000 * (k // 3))
            for c in rng.choice(CARDS, 30).tolist():
                if rng.random() < 0.7:
                    b.add(OpKind.SPEND, c, 2, int(rng.integers(1, 900)))
                else:
                    b.add(OpKind.TOPUP, c, 1, int(rng.integers(1, 900)))
            led.apply(b.take())
        assert led.verify().ok
        head = led.journal_seq
    return path, head


def _copy(src: str, dest: str) -> str:
    """Copy a closed ledger, its data file only up to its last page (the zeros kept
    ahead of it are not the ledger's)."""
    os.makedirs(dest)
    facts = check_data_file(src)
    for name in os.listdir(src):
        if name == "data.mdb":
            with open(os.path.join(src, name), "rb") as f, open(os.path.join(dest, name), "wb") as out:
                out.write(f.read(facts.needed_bytes))
        elif name != "lock.mdb":
            shutil.copy(os.path.join(src, name), dest)
    return dest


def _probe(dirs: list[str]) -> list[dict]:
    proc = subprocess.run([sys.executable, PROBE, *dirs], capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, (
        f"the probe died with exit {proc.returncode} after {len(lines)} of {len(dirs)} copies "
        f"(next: {dirs[len(lines)] if len(lines) < len(dirs) else '-'}): {proc.stderr[-2000:]}")
    assert len(lines) == len(dirs)
    return lines


def test_a_data_file_cut_short_anywhere_is_a_corruption_error_naming_it_never_a_signal(kept, tmp_path):
    path, _ = kept
    needed = check_data_file(path).needed_bytes
    offsets = sorted({0, 1, 100, 4095, 4096, 8191, 8192, 8193, needed - 1, needed - 4096,
                      *range(12_288, needed, max(4096, needed // 24))})
    dirs = []
    for off in offsets:
        d = _copy(path, str(tmp_path / f"cut-{off}"))
        os.truncate(os.path.join(d, "data.mdb"), off)
        dirs.append(d)
    for off, line in zip(offsets, _probe(dirs)):
        assert line["open"] == "typed" and line["open_detail"].startswith("CorruptionError"), (off, line)
        assert "data.mdb" in line["open_detail"], line
        # What lies before the cut is read page by page and the cut is the first problem
        # found; a cut that took the ledger's settings leaves nothing to read (typed).
        assert line["inspect"] == "typed" or "cut short" in line["problems"][0], line
    reported = [line for line in _probe(dirs[-3:]) if line["inspect"] == "ok"]
    assert reported  # a cut late in the file still yields a report


def test_a_data_file_longer_than_its_pages_opens_and_verifies(kept, tmp_path):
    path, head = kept
    d = _copy(path, str(tmp_path / "copy"))
    (line,) = _probe([d])
    assert line["open"] == "ok" and int(line["open_detail"]) == head
    assert line["inspect"] == "ok" and line["problems"] == []


def test_flipped_bytes_on_any_page_give_a_typed_error_or_a_report_never_a_crash(kept, tmp_path):
    path, _ = kept
    facts = check_data_file(path)
    pages = facts.last_pgno + 1
    rnd = random.Random(20261207)
    chosen = sorted(rnd.sample(range(pages), min(pages, 48)))
    dirs = []
    for pgno in chosen:
        d = _copy(path, str(tmp_path / f"page-{pgno}"))
        with open(os.path.join(d, "data.mdb"), "r+b") as f:
            # One flip in the page header, one in its body.
            for at in (rnd.randrange(0, 16), rnd.randrange(16, facts.page_bytes)):
                f.seek(pgno * facts.page_bytes + at)
                byte = f.read(1)[0]
                f.seek(pgno * facts.page_bytes + at)
                f.write(bytes([byte ^ (1 << rnd.randrange(8))]))
        dirs.append(d)
    original = _probe([_copy(path, str(tmp_path / "original"))])[0]["digest"]
    assert original is not None
    damaged = 0
    for pgno, line in zip(chosen, _probe(dirs)):
        assert line["open"] != "UNTYPED" and line["inspect"] != "UNTYPED", (pgno, line)
        if line["digest"] == original:
            # Nothing the databases hold changed: the flip hit free space, a page no longer
            # in use, or what LMDB's own reads skip (the free-page tree a writer reuses
            # pages by, a header field). Clean, or page damage named as such.
            assert line["inspect"] == "ok", (pgno, line)
            assert all(p.startswith("data.mdb: ") for p in line["problems"]), (pgno, line)
        else:
            damaged += 1
            assert line["inspect"] == "typed" or line["problems"], f"page {pgno}: damage went unreported: {line}"
    assert damaged >= len(chosen) // 4  # the sample reaches pages in use, not only free ones


def _damage_batch(path: str, index: int) -> int:
    """Flip one byte in the records of the journal's `index`-th batch; return its last journal_seq."""
    env = lmdb.open(path, max_dbs=8)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(b"journal", txn=txn)
            key, value = list(txn.cursor(db=db))[index]
            value = bytearray(value)
            value[200] ^= 0x01
            txn.put(key, bytes(value), db=db)
            return int.from_bytes(key, "big")
    finally:
        env.close()


def test_inspect_names_the_damaged_batch_and_the_intact_prefix(kept, tmp_path):
    path, head = kept
    d = _copy(path, str(tmp_path / "dmg"))
    last = _damage_batch(d, 20)
    report = cardledger.inspect(d)
    assert not report.ok
    assert report.journal_head == head
    assert report.problems[0] == f"journal batch ending at journal_seq {last}: hash mismatch (the batch was altered or damaged)"
    assert any(f"intact through journal_seq {report.intact_seq}" in p for p in report.problems)
    assert report.intact_seq < last
    # The damage lies before the checkpoint, which a ledger opens from: it still opens,
    # and only a verify (or inspect) walking the whole journal finds the damage.
    with cardledger.open(d, readonly=True) as led:
        assert led.journal_seq == head
        assert led.verify().problems[0] == report.problems[0]


def test_recover_salvages_the_intact_prefix_and_names_the_lost_range(kept, tmp_path):
    path, head = kept
    d = _copy(path, str(tmp_path / "dmg"))
    _damage_batch(d, 20)
    intact = cardledger.inspect(d).intact_seq
    before = cardledger.inspect(path)
    report = cardledger.recover(d, str(tmp_path / "new"))
    assert report.recovered_seq == intact and report.lost == (intact + 1, head)
    with cardledger.open(str(tmp_path / "new")) as led:
        assert led.journal_seq == intact
        assert led.verify().ok
        # The salvaged ledger goes on: a terminal re-sends an op from the lost range and
        # it is decided once.
        b = Ops(source=77).add(OpKind.TOPUP, CARDS[0], 1, 5)
        assert led.apply(b.take())["code"][0] == 0
    assert before.ok and cardledger.inspect(str(tmp_path / "new")).ok


def test_recover_of_an_intact_ledger_loses_nothing(kept, tmp_path):
    path, head = kept
    report = cardledger.recover(path, str(tmp_path / "same"))
    assert report.lost is None and report.recovered_seq == head and report.problems == []
    with cardledger.open(str(tmp_path / "same"), readonly=True) as a, cardledger.open(path, readonly=True) as b:
        assert a.accounts().tobytes() == b.accounts().tobytes()


def test_recover_of_a_data_file_cut_short_pads_a_copy_and_leaves_the_source_alone(kept, tmp_path):
    path, head = kept
    d = _copy(path, str(tmp_path / "cut"))
    size = check_data_file(d).needed_bytes * 2 // 3
    os.truncate(os.path.join(d, "data.mdb"), size)
    report = cardledger.recover(d, str(tmp_path / "new"))
    assert "cut short" in report.problems[0] and os.path.getsize(os.path.join(d, "data.mdb")) == size
    assert report.lost is None or report.lost[0] == report.recovered_seq + 1
    assert cardledger.inspect(str(tmp_path / "new")).ok


def test_recover_refuses_a_destination_that_holds_anything(kept, tmp_path):
    path, _ = kept
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(ValueError, match="not a new or empty directory"):
        cardledger.recover(path, str(tmp_path / "busy"))


def test_a_missing_checkpoint_file_is_reported_by_name_and_refused_by_open(kept, tmp_path):
    path, head = kept
    d = _copy(path, str(tmp_path / "nockpt"))
    (name,) = [n for n in os.listdir(d) if n.startswith("checkpoint-")]
    os.remove(os.path.join(d, name))
    report = cardledger.inspect(d)
    assert report.problems == [f"checkpoint at {int(name[11:-3])}: its file {name} is missing"]
    assert report.intact_seq == head  # the journal itself is whole
    with pytest.raises(cardledger.CorruptionError, match="checkpoint"):
        cardledger.open(d, readonly=True)
    # The journal holds everything: recover rebuilds the ledger and loses nothing.
    assert cardledger.recover(d, str(tmp_path / "rebuilt")).lost is None


def test_open_refuses_a_damaged_page_with_a_corruption_error_naming_the_page(kept, tmp_path):
    path, _ = kept
    d = _copy(path, str(tmp_path / "flipped"))
    with cardledger.store.pages.PageFile(d) as pages:
        root = pages.databases()[b"journal"].root
        psize = pages.psize
    with open(os.path.join(d, "data.mdb"), "r+b") as f:
        f.seek(root * psize + 10)  # the page's flags: no longer a branch or leaf
        f.write(b"\x00")
    with pytest.raises(cardledger.CorruptionError, match=f"database journal, page {root}: not a branch or leaf"):
        cardledger.open(d)
    report = cardledger.inspect(d)
    assert report.problems[0].startswith(f"data.mdb: database journal, page {root}")


def test_the_page_walk_orders_the_free_page_tree_by_number_not_by_bytes(tmp_path):
    """LMDB keys its free-page tree by txnid, native integers: txnid 256 sorts after 255
    though its little-endian bytes sort before. A walk comparing bytes reported damage
    that was not there (once a ledger had seen 256 commits with pages held by a reader)."""
    env = lmdb.open(str(tmp_path), max_dbs=2)
    db = env.open_db(b"x")
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v" * 3000, db=db)
    reader = env.begin()  # holds every page freed from now on: one free-tree entry a commit
    for i in range(300):
        with env.begin(write=True) as txn:
            txn.put(b"k", bytes([i % 256]) * 3000, db=db)
    reader.abort()
    env.close()
    with cardledger.store.pages.PageFile(str(tmp_path)) as pages:
        assert pages.free.entries > 256
        assert pages.check((b"x",)) == []


def _put_meta(path: str, key: bytes, value: bytes) -> None:
    env = lmdb.open(path, max_dbs=8)
    try:
        with env.begin(write=True) as txn:
            txn.put(key, value, db=env.open_db(b"meta", txn=txn))
    finally:
        env.close()


def test_a_damaged_default_cap_fails_the_settings_checksum(kept, tmp_path):
    path, _ = kept
    d = _copy(path, str(tmp_path / "cap"))
    _put_meta(d, b"default_cap_fen", (500_001).to_bytes(8, "big"))
    with pytest.raises(cardledger.CorruptionError, match="settings .* fail their checksum"):
        cardledger.open(d, readonly=True)
    with pytest.raises(cardledger.CorruptionError, match="settings"):
        cardledger.inspect(d)


def test_a_latest_tap_time_below_the_journals_taps_is_reported(tmp_path):
    from cardledger import TapType

    path = str(tmp_path / "ledger")
    with cardledger.open(path, create=True) as led:
        open_cards(led, [100], 5_000)
        # The packaged Harbin system installs itself with the first tap; its operators:
        ops = Ops(source=60)
        for op in (9001, 9002, 9003, 9004, 9005):
            ops.add(OpKind.OPEN, op, account_kind=cardledger.AccountKind.OPERATOR)
        led.apply(ops.take())
        fs = cardledger.fares.FareSystem.harbin()
        tap = Ops(source=61).add(OpKind.TAP, 100, route=fs.route_index("bus_14"), stop=fs.stop_index("bs_0001"),
                                 tap=TapType.BOARD).take()
        assert led.apply(tap)["code"][0] == 0
    assert cardledger.inspect(path).ok
    _put_meta(path, b"max_tap_time_us", (0).to_bytes(8, "little"))
    assert any("latest tap time" in p for p in cardledger.inspect(path).problems)
