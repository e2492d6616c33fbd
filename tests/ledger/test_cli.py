"""The `cardledger` command's manners: a version, `python -m cardledger`, help on every
option, bad command lines and unusable paths as one line and a documented exit code
(never a traceback), and a demo that never writes into an existing ledger."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
from helpers import Ops, open_cards

import cardledger
from cardledger import OpKind, cli


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cardledger", *args], capture_output=True, text=True, timeout=120)


def _one_line_error(proc: subprocess.CompletedProcess, code: int) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_python_dash_m_cardledger_prints_the_version_and_engine():
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"cardledger 0.1.0 ({cardledger.IMPLEMENTATION} engine)"


def test_every_option_of_every_command_has_help():
    parser_holder = {}
    real = argparse.ArgumentParser.parse_args

    def capture(self, *a, **k):  # the top parser: stop before running anything
        parser_holder["p"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    try:
        with pytest.raises(SystemExit):
            cli.main(["--version"])
    finally:
        argparse.ArgumentParser.parse_args = real  # type: ignore[method-assign]
    top = parser_holder["p"]
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"cardledger {name} {action.option_strings or action.dest}"


@pytest.mark.parametrize("args", [["demo", "--cards", "0"], ["demo", "--batch", "0"], ["demo", "--ops", "-1"],
                                  ["demo", "--cards", "many"], ["bench", "--cards", "0"], ["nonsense"]])
def test_a_bad_command_line_is_one_line_and_exit_2(args):
    line = _one_line_error(_run(*args), 2)
    assert line.startswith("cardledger")


def test_verify_tells_a_missing_path_a_file_and_an_empty_directory_apart(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    regular = tmp_path / "file"
    regular.write_text("x")
    assert "no such directory" in _one_line_error(_run("verify", str(tmp_path / "missing")), 2)
    assert "not a directory" in _one_line_error(_run("verify", str(regular)), 2)
    assert "no ledger" in _one_line_error(_run("verify", str(empty)), 2)


def test_verify_reports_a_clean_ledger_as_json_with_exit_0(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, [100, 101], 5_000)
    proc = _run("verify", "--json", ledger_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["problems"] == [] and report["accounts"] == 4


def test_verify_reports_a_damaged_journal_batch_by_its_range_with_exit_1(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, [100], 5_000)
        led.apply(Ops(source=9).add(OpKind.SPEND, 100, 2, 10).take())
    import lmdb

    env = lmdb.open(ledger_path, max_dbs=8)
    with env.begin(write=True) as txn:
        db = env.open_db(b"journal", txn=txn)
        key, value = next(iter(txn.cursor(db=db)))
        damaged = bytearray(value)
        damaged[-1] ^= 0xFF
        txn.put(key, bytes(damaged), db=db)
    env.close()
    proc = _run("verify", "--json", ledger_path)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    # open_cards wrote two batches (ops 1..4), the SPEND a third (op 5): the first is damaged.
    assert report["ok"] is False and report["intact_seq"] == 0 and report["journal_head"] == 5
    first = report["problems"][0]
    assert first.startswith("journal batch ending at journal_seq ") and first.endswith(
        "hash mismatch (the batch was altered or damaged)")
    assert "records from journal_seq 1 to journal_seq 5 follow the damage" in report["problems"][1]


def test_verify_of_a_data_file_cut_to_its_meta_pages_is_one_line_and_exit_3(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, [100], 5_000)
    os.truncate(os.path.join(ledger_path, "data.mdb"), 8_192)
    line = _one_line_error(_run("verify", ledger_path), 3)
    assert "settings cannot be read" in line and "cut short" in line


def test_verify_of_a_data_file_cut_short_reports_the_cut_with_exit_1(ledger_path):
    from cardledger.store.datafile import check_data_file

    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, range(100, 600), 5_000)
    facts = check_data_file(ledger_path)
    os.truncate(os.path.join(ledger_path, "data.mdb"), facts.needed_bytes - facts.page_bytes)
    proc = _run("verify", "--json", ledger_path)
    assert proc.returncode == 1, proc.stderr
    assert "cut short" in json.loads(proc.stdout)["problems"][0]


def test_recover_and_backup_refuse_a_destination_that_holds_anything(ledger_path, tmp_path):
    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, [100], 5_000)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("x")
    assert "not a new or empty directory" in _one_line_error(_run("recover", ledger_path, str(busy)), 2)
    assert "not a new or empty directory" in _one_line_error(_run("backup", ledger_path, str(busy)), 2)
    assert "no such directory" in _one_line_error(_run("backup", str(tmp_path / "nope"), str(tmp_path / "b")), 2)


def test_demo_keep_refuses_a_directory_that_holds_anything(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, [100], 5_000)
        before = led.journal_seq
    line = _one_line_error(_run("demo", "--cards", "3", "--ops", "10", "--keep", ledger_path), 2)
    assert "not a new or empty directory" in line
    with cardledger.open(ledger_path, create=True) as led:
        assert led.journal_seq == before  # no demo money written


def test_demo_keep_on_a_new_directory_keeps_a_ledger_that_verifies(tmp_path):
    kept = str(tmp_path / "kept")
    proc = _run("demo", "--cards", "3", "--ops", "200", "--batch", "50", "--keep", kept)
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(os.path.join(kept, "data.mdb"))
    assert _run("verify", kept).returncode == 0
