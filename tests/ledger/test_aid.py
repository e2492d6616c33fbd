"""Aid cycles (`cardledger.disburse`): each card paid at most once per cycle, forever;
failed lines paid by a later run once their cause is fixed; duplicates, conflicts,
frozen and unknown cards reported; all or nothing with atomic=True; the report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import Ops, codes

import cardledger
from cardledger import AccountKind, OpKind
from cardledger.aid import aid_report, aid_seq, cycle_source, disburse

PROGRAM = 3
CYCLE = "2027 春节送温暖"


@pytest.fixture
def office(led):
    """A ledger with a clearing account, a program with a budget of 10,000 fen, and cards 10..19."""
    b = Ops(source=999)
    b.add(OpKind.OPEN, 1, account_kind=AccountKind.CLEARING)
    b.add(OpKind.OPEN, PROGRAM, account_kind=AccountKind.PROGRAM)
    for c in range(10, 20):
        b.add(OpKind.OPEN, c, account_kind=AccountKind.CARD)
    b.add(OpKind.TRANSFER, 1, PROGRAM, 10_000)
    r = led.apply(b.take())
    assert (r["code"] == 0).all(), codes(r)
    return led


def test_a_list_pays_each_card_and_credits_its_subsidy_purse(office):
    report = disburse(office, PROGRAM, CYCLE, [(10, 500), (11, 700)])
    assert report.summary["paid"] == 2 and report.summary["paid_fen"] == 1_200
    assert office.account(10).subsidy_fen == 500 and office.account(11).subsidy_fen == 700
    assert report.summary["program_balance_before_fen"] == 10_000
    assert report.summary["program_balance_after_fen"] == 8_800 == office.balance(PROGRAM)


def test_running_a_list_again_pays_nobody_twice(office):
    disburse(office, PROGRAM, CYCLE, [(10, 500), (11, 700)])
    again = disburse(office, PROGRAM, CYCLE, [(10, 500), (11, 700)])
    assert again.summary["paid"] == 0 and again.summary["already_paid"] == 2
    assert office.balance(PROGRAM) == 8_800


def test_a_corrected_amount_is_a_conflict_not_a_second_payment(office):
    disburse(office, PROGRAM, CYCLE, [(10, 500)])
    report = disburse(office, PROGRAM, CYCLE, [(10, 900)])
    (line,) = report.lines
    assert line.outcome == "conflict" and line.ledger_amount_fen == 500
    assert report.summary["conflicts"] == 1 and office.account(10).subsidy_fen == 500


def test_another_cycle_of_the_same_program_pays_the_card_again(office):
    disburse(office, PROGRAM, CYCLE, [(10, 500)])
    report = disburse(office, PROGRAM, "2027 金秋助学", [(10, 500)])
    assert report.summary["paid"] == 1 and office.account(10).subsidy_fen == 1_000


def test_a_card_listed_twice_is_paid_once_and_the_duplicate_reported(office):
    report = disburse(office, PROGRAM, CYCLE, [(10, 500), (11, 100), (10, 500)])
    assert [ln.outcome for ln in report.lines] == ["paid", "paid", "duplicate"]
    assert "line 1" in report.lines[2].message
    assert office.account(10).subsidy_fen == 500


def test_a_budget_that_runs_out_fails_the_rest_and_a_later_run_pays_them(office):
    report = disburse(office, PROGRAM, CYCLE, [(10, 6_000), (11, 6_000), (12, 1_000)])
    assert [ln.outcome for ln in report.lines] == ["paid", "failed", "paid"]
    assert report.summary["failed"] == {"INSUFFICIENT_FUNDS": 1}
    office.apply(Ops(source=998).add(OpKind.TRANSFER, 1, PROGRAM, 10_000).take())
    again = disburse(office, PROGRAM, CYCLE, [(10, 6_000), (11, 6_000), (12, 1_000)])
    assert [ln.outcome for ln in again.lines] == ["already_paid", "paid", "already_paid"]
    # The failed attempt is decided forever: the card was paid by its second attempt.
    seq = again.lines[1].journal_seq
    assert office.journal(seq, seq + 1)["seq"][0] == aid_seq(11, 1) == (1 << 56) | 11
    assert office.account(11).subsidy_fen == 6_000


def test_unknown_closed_and_frozen_cards_fail_with_their_reason_and_the_rest_go_on(office):
    r = office.apply(Ops(source=997).add(OpKind.FREEZE, 12).add(OpKind.CLOSE, 13, 1).take())
    assert (r["code"] == 0).all(), codes(r)
    report = disburse(office, PROGRAM, CYCLE, [(10, 100), (12, 100), (13, 100), (77, 100)])
    assert [(ln.outcome, ln.result) for ln in report.lines] == [
        ("paid", ""), ("failed", "ACCOUNT_FROZEN"), ("failed", "ACCOUNT_CLOSED"), ("failed", "ACCOUNT_NOT_FOUND")]
    assert office.account(12).subsidy_fen == 0  # a frozen card waits for its replacement


def test_atomic_pays_every_line_or_none(office):
    report = disburse(office, PROGRAM, CYCLE, [(10, 6_000), (11, 6_000)], atomic=True)
    assert report.summary["paid"] == 0 and office.balance(PROGRAM) == 10_000
    assert sorted(report.summary["failed"]) == ["INSUFFICIENT_FUNDS", "LINKED_FAILED"]
    ok = disburse(office, PROGRAM, CYCLE, [(10, 4_000), (11, 6_000)], atomic=True)
    assert ok.summary["paid"] == 2 and office.balance(PROGRAM) == 0


def test_atomic_with_a_frozen_card_sends_nothing(office):
    office.apply(Ops(source=997).add(OpKind.FREEZE, 12).take())
    report = disburse(office, PROGRAM, CYCLE, [(10, 100), (12, 100)], atomic=True)
    assert [ln.result for ln in report.lines] == ["LINKED_FAILED", "ACCOUNT_FROZEN"]
    assert office.balance(PROGRAM) == 10_000 and office.journal_seq == 14  # only the FREEZE


def test_a_csv_list_reports_bad_lines_by_number_and_pays_the_rest(office, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("card_id,amount_fen,member_ref,note\n10,500,M-1,winter\n11,5.5,M-2,\n\n12,-3,,\nx,1,,\n"
                    "13,200,M-4,ok\n", encoding="utf-8")
    report = disburse(office, PROGRAM, CYCLE, str(path))
    assert [(ln.line_no, ln.outcome) for ln in report.lines] == [
        (2, "paid"), (3, "bad_line"), (5, "bad_line"), (6, "bad_line"), (7, "paid")]
    assert "5.5" in report.lines[1].message and report.lines[0].member_ref == "M-1"
    out = tmp_path / "report.csv"
    report.write_csv(out)
    assert out.read_text(encoding="utf-8").splitlines()[1].startswith("2,10,500,M-1,winter,paid,")


def test_a_list_without_its_header_is_refused(office, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("10,500\n")
    with pytest.raises(ValueError, match="line 1 must be the header"):
        disburse(office, PROGRAM, CYCLE, str(path))


def test_floats_are_bad_lines_never_truncated(office):
    report = disburse(office, PROGRAM, CYCLE, [(10, 500.0), (11, True)])
    assert [ln.outcome for ln in report.lines] == ["bad_line", "bad_line"]


def test_a_cycles_totals_come_from_the_journal(office):
    disburse(office, PROGRAM, CYCLE, [(10, 6_000), (11, 6_000), (12, 1_000)])
    totals = aid_report(office, PROGRAM, CYCLE).as_dict()
    assert totals["paid"] == 2 and totals["paid_fen"] == 7_000 and totals["cards_paid"] == 2
    assert totals["failed"] == {"INSUFFICIENT_FUNDS": 1}


def test_aid_ids_are_derived_from_program_cycle_card_and_attempt(office):
    source = cycle_source(PROGRAM, CYCLE)
    assert source >> 63 == 1  # apart from terminals' sources
    assert source == cycle_source(PROGRAM, CYCLE) != cycle_source(PROGRAM + 1, CYCLE)
    report = disburse(office, PROGRAM, CYCLE, [(10, 500)])
    rec = office.journal(report.lines[0].journal_seq, report.lines[0].journal_seq + 1)[0]
    assert (int(rec["source"]), int(rec["seq"])) == (source, aid_seq(10, 0)) == (source, 10)


def test_the_disburse_command_prints_the_summary_and_writes_the_report(ledger_path, tmp_path):
    with cardledger.open(ledger_path, create=True) as led:
        b = Ops(source=999)
        b.add(OpKind.OPEN, 1, account_kind=AccountKind.CLEARING).add(OpKind.OPEN, PROGRAM, account_kind=AccountKind.PROGRAM)
        b.add(OpKind.OPEN, 10, account_kind=AccountKind.CARD).add(OpKind.TRANSFER, 1, PROGRAM, 1_000)
        led.apply(b.take())
    lst = tmp_path / "list.csv"
    lst.write_text("card_id,amount_fen\n10,300\n10,300\n")
    out = tmp_path / "out.csv"
    run = [sys.executable, "-m", "cardledger", "disburse", ledger_path, "--program", str(PROGRAM), "--cycle", CYCLE,
           "--file", str(lst), "--report", str(out), "--json"]
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["paid"] == 1 and summary["duplicates"] == 1 and summary["program_balance_after_fen"] == 700
    assert len(out.read_text().splitlines()) == 3
    proc = subprocess.run([sys.executable, "-m", "cardledger", "aid-report", ledger_path, "--program", str(PROGRAM),
                           "--cycle", CYCLE, "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["paid_fen"] == 300
