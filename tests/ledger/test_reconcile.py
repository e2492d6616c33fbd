"""What reconciliation scripts read: the journal streamed and followed as it commits,
exports by service day or journal range (CSV, JSON lines, Parquet), and a bank's file
matched by user_data against a service day."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import Ops, open_cards

import cardledger
from cardledger import OpKind
from cardledger.days import service_day
from cardledger.exports import export, read_jsonl, select
from cardledger.matching import match

DAY = "2027-01-15"
START_US, END_US = service_day(DAY)  # Asia/Shanghai, from 00:00


def topups(led, rows, source=40):
    """TOPUPs (card, fen, user_data, time_us), one batch; every one must succeed."""
    ops = cardledger.build_ops([
        {"seq": i + 1, "kind": "TOPUP", "account_id": c, "counterparty_id": 1, "amount_fen": fen,
         "user_data": ud, "time_us": t}
        for i, (c, fen, ud, t) in enumerate(rows)], source=source)
    assert (led.apply(ops)["code"] == 0).all()


def test_a_service_day_runs_from_its_local_start_to_the_next(monkeypatch):
    start, end = service_day(DAY)
    assert end - start == 86_400_000_000
    assert service_day(DAY, day_start="04:00")[0] - start == 4 * 3_600_000_000
    assert start == 1_799_942_400_000_000  # 2027-01-14T16:00Z: midnight in Harbin
    with pytest.raises(ValueError, match="not an IANA time zone"):
        service_day(DAY, tz="Mars/Olympus")


def test_batches_stream_the_journal_from_any_position(led):
    open_cards(led, [100, 101], 1_000)  # journal_seq 1..6 in one batch
    led.apply(Ops(source=3).add(OpKind.SPEND, 100, 2, 1).take())
    led.apply(Ops(source=4).add(OpKind.SPEND, 101, 2, 1).take())
    seqs = [b["journal_seq"].tolist() for b in led.batches(3)]
    assert seqs == [[4, 5, 6], [7], [8]]  # a position inside a batch starts there
    assert [b["journal_seq"].tolist() for b in led.batches(0, 8)] == [[1, 2, 3, 4, 5, 6], [7]]


def test_follow_yields_each_batch_as_it_commits_in_another_ledger_object(led, ledger_path):
    open_cards(led, [100], 1_000)
    got = []
    with cardledger.open(ledger_path, readonly=True) as reader:
        t = threading.Thread(target=lambda: got.extend(b["journal_seq"].tolist()
                                                       for b in reader.follow(2, idle_timeout_s=1.0)))
        t.start()
        for k in range(3):
            led.apply(Ops(source=5, start_seq=k + 1).add(OpKind.SPEND, 100, 2, 1).take())
            time.sleep(0.05)
        t.join(10)
    assert got == [[3, 4], [5], [6], [7]]


def test_exports_write_every_decided_op_with_its_result(led, tmp_path):
    open_cards(led, [100], 1_000)
    ops = cardledger.build_ops([
        {"seq": 1, "kind": "TOPUP", "account_id": 100, "counterparty_id": 1, "amount_fen": 50, "user_data": 9_001,
         "time_us": START_US + 1},
        {"seq": 2, "kind": "SPEND", "account_id": 100, "counterparty_id": 2, "amount_fen": 10**9,
         "time_us": START_US + 2},
    ], source=41)
    r = led.apply(ops)
    assert cardledger.Result(int(r["code"][1])).name == "INSUFFICIENT_FUNDS"
    day = list(select(led.batches(), START_US, END_US))
    assert sum(len(b) for b in day) == 2
    n = export(iter(day), tmp_path / "day.csv", "csv")
    rows = list(csv.DictReader(open(tmp_path / "day.csv", encoding="utf-8")))
    assert n == 2 and [r["result"] for r in rows] == ["OK", "INSUFFICIENT_FUNDS"]
    assert rows[0]["user_data"] == "9001" and rows[0]["time"] == "2027-01-15T00:00:00.000001+08:00"
    export(iter(day), tmp_path / "day.jsonl", "jsonl")
    lines = read_jsonl(tmp_path / "day.jsonl")
    assert lines[1]["amount_fen"] == 10**9 and lines[1]["result"] == "INSUFFICIENT_FUNDS"
    import pyarrow.parquet as pq

    export(iter(day), tmp_path / "day.parquet", "parquet")
    table = pq.read_table(tmp_path / "day.parquet")
    assert table.column("user_data").to_pylist() == [9_001, 0]
    assert str(table.schema.field("amount_fen").type) == "int64"


def _bank_file(path, lines):
    path.write_text("user_data,account_id,amount_fen,time\n" + "".join(l + "\n" for l in lines), encoding="utf-8")
    return path


def test_a_bank_file_is_matched_by_user_data_against_a_service_day(led, tmp_path):
    open_cards(led, [100, 101], 1_000)
    topups(led, [
        (100, 500, 1, START_US + 10_000_000),      # in the file, same
        (101, 700, 2, START_US + 20_000_000),      # in the file, another amount
        (100, 300, 3, START_US + 30_000_000),      # not in the file
        (100, 999, 4, END_US + 1),                 # the next day: not matched
    ])
    iso = lambda us: (cardledger.days.iso_times(np.array([us]))[0])  # noqa: E731
    f = _bank_file(tmp_path / "bank.csv", [
        f"1,100,500,{iso(START_US + 10_000_000)}",
        f"2,101,701,{iso(START_US + 20_000_000)}",
        f"5,100,100,{iso(START_US + 40_000_000)}",  # not in the ledger
        f"1,100,500,{iso(START_US + 10_000_000)}",  # a duplicate
        "6,100,12.5,2027-01-15T08:00:00+08:00",     # a bad line
        "7,100,100,2027-01-15T08:00:00",            # no offset
    ])
    report = match(led.batches(), f, start_us=START_US, end_us=END_US).as_dict()
    assert report["matched"] == 1
    assert report["missing_in_ledger"] == [5] and report["missing_in_file"] == [3]
    assert report["mismatched"] == [{"user_data": 2, "field": "amount_fen", "file": 701, "ledger": 700}]
    assert report["duplicates_in_file"] == [1]
    assert [(b["line"], "12.5" in b["error"] or "offset" in b["error"]) for b in report["bad_lines"]] == [
        (6, True), (7, True)]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cardledger", *args], capture_output=True, text=True)


def test_the_match_and_export_commands_exit_by_what_they_found(ledger_path, tmp_path):
    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, [100], 1_000)
        topups(led, [(100, 500, 1, START_US + 10_000_000)])
    good = _bank_file(tmp_path / "good.csv", ["1,100,500,2027-01-15T00:00:10+08:00"])
    proc = _cli("match", ledger_path, "--file", str(good), "--day", DAY, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["matched"] == 1
    differ = _bank_file(tmp_path / "differ.csv", ["1,100,501,2027-01-15T00:00:10+08:00"])
    assert _cli("match", ledger_path, "--file", str(differ), "--day", DAY).returncode == 1
    proc = _cli("match", ledger_path, "--file", str(good), "--day", "2027-13-01")
    assert proc.returncode == 2 and "YYYY-MM-DD" in proc.stderr
    out = tmp_path / "out.jsonl"
    proc = _cli("export", ledger_path, "--day", DAY, "--format", "jsonl", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [r["user_data"] for r in read_jsonl(out)] == [1]
    proc = _cli("export", ledger_path, "--from-seq", "1", "--to-seq", "2", "-o", str(tmp_path / "two.csv"))
    assert proc.returncode == 0 and len((tmp_path / "two.csv").read_text().splitlines()) == 3
    assert _cli("export", ledger_path, "-o", str(out)).returncode == 2  # no selection


def test_the_example_daily_reconciliation_closes_matches_and_exports(ledger_path, tmp_path):
    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, [100], 1_000)
        topups(led, [(100, 500, 1, START_US + 10_000_000)])
    bank = _bank_file(tmp_path / "bank.csv", ["1,100,500,2027-01-15T00:00:10+08:00"])
    script = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "reconcile", "daily.py")
    run = [sys.executable, script, ledger_path, "--day", DAY, "--bank", str(bank), "--out", str(tmp_path / "out")]
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "1 matched" in proc.stdout
    assert sorted(os.listdir(tmp_path / "out")) == [f"bank-match-{DAY}.json", f"journal-{DAY}.csv", f"settlement-{DAY}.json"]
    # Run again: the day is closed already, the report is the same.
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    proc = _cli("query", ledger_path, "--day", DAY, "--kinds", "TOPUP")
    assert proc.returncode == 0 and json.loads(proc.stdout.splitlines()[0])["user_data"] == 1
    proc = _cli("balance", ledger_path, "--account", "100", "--as-of", "2027-01-15T00:00:05+08:00", "--json")
    assert json.loads(proc.stdout)["balance_fen"] == 1_000


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_text_written_by_the_core_and_through_pyarrow_is_the_plain_writers_byte_for_byte(led, tmp_path,
                                                                                            monkeypatch, fmt):
    """Three writers of CSV and JSON lines (the core's `format_rows` when the default
    engine is the core, pyarrow's kernels, one format string a line): the same bytes,
    extreme values and a time outside the day included."""
    import cardledger.exports as ex

    open_cards(led, [100, 101], 1_000)
    topups(led, [(100, 5, 2**64 - 1, START_US + 1), (101, 6, 0, END_US + 3), (100, 7, 77, 1)])
    ex.export(led.batches(), tmp_path / f"default.{fmt}", fmt)
    monkeypatch.setattr(ex.engines, "IMPLEMENTATION", ex.engines.PYTHON)
    ex.export(led.batches(), tmp_path / f"arrow.{fmt}", fmt)
    monkeypatch.setattr(ex, "_have_pyarrow", lambda: False)
    ex.export(led.batches(), tmp_path / f"plain.{fmt}", fmt)
    plain = (tmp_path / f"plain.{fmt}").read_bytes()
    assert (tmp_path / f"default.{fmt}").read_bytes() == plain
    assert (tmp_path / f"arrow.{fmt}").read_bytes() == plain


def test_a_parquet_export_spanning_several_row_groups_holds_every_record_in_order(led, tmp_path, monkeypatch):
    """Batches are gathered into row groups of PARQUET_ROW_GROUP_RECORDS: records split
    across groups come back whole and in order."""
    pq = pytest.importorskip("pyarrow.parquet")
    import cardledger.exports as ex

    open_cards(led, [100, 101, 102], 1_000)
    topups(led, [(100 + i % 3, 5 + i, i, START_US + i) for i in range(10)])
    monkeypatch.setattr(ex, "PARQUET_ROW_GROUP_RECORDS", 4)
    recs = np.concatenate(list(led.batches()))
    assert ex.export(led.batches(), tmp_path / "day.parquet", "parquet") == len(recs)
    table = pq.read_table(tmp_path / "day.parquet")
    assert pq.ParquetFile(tmp_path / "day.parquet").num_row_groups == -(-len(recs) // 4)
    for name in recs.dtype.names:
        assert table.column(name).to_numpy().tolist() == recs[name].tolist()


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Europe/Berlin", "America/New_York"])
def test_iso_times_are_the_standard_librarys_across_offset_changes(tz):
    """Shanghai kept daylight saving in 1986-91; Berlin and New York switch twice a year:
    the fast formatter must give what datetime gives, at any time."""
    import datetime as dt

    from cardledger.days import iso_times, zone

    rng = np.random.default_rng(5)
    t = rng.integers(0, 4_000_000_000_000_000, 5_000)
    z = zone(tz)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    want = [(epoch + dt.timedelta(microseconds=v)).astimezone(z).isoformat(timespec="microseconds") for v in t.tolist()]
    assert iso_times(t, tz) == want
    assert iso_times(np.zeros(0, dtype=np.int64), tz) == []
