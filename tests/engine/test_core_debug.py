"""The core's tripwires: built with CARDLEDGER_DEBUG=1, it checks its invariants after
every op and aborts the process on a broken one, naming it on stderr.

These tests run only on such a build (`cardledger._core.DEBUG_ASSERTIONS`); a release
build has no checks to trip, and they are skipped. Each workload runs in a subprocess,
since a tripped check aborts the whole process. The ledger state is broken the way a
bug in the core would break it, by loading a checkpoint whose rows disagree: a
checkpoint written by a correct core never does.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

core = pytest.importorskip("cardledger._core")

pytestmark = pytest.mark.skipif(
    not getattr(core, "DEBUG_ASSERTIONS", False),
    reason="the core was not built with CARDLEDGER_DEBUG=1 (no assertions to trip)",
)

#: A clearing account paid a card 10,000 fen, and the card placed a 2,000 fen hold at
#: a merchant; argv[1] names what to break in those rows, argv[2] the op to apply.
WORKLOAD = """
import sys

import numpy as np

from cardledger import _core
from cardledger.schema import (
    ACCOUNT_DTYPE, OP_DTYPE, PENDING_DTYPE, SOURCE_DTYPE, AccountKind, OpKind,
)

CLEARING, MERCHANT, CARD = 1, 2, 100
broken, op_kind = sys.argv[1], sys.argv[2]

accounts = np.zeros(3, dtype=ACCOUNT_DTYPE)
accounts["id"] = [CLEARING, MERCHANT, CARD]
accounts["kind"] = [AccountKind.CLEARING, AccountKind.MERCHANT, AccountKind.CARD]
accounts["cap_fen"] = [0, 0, 500_000]
accounts["cash_fen"] = [-10_000, 0, 8_000]
accounts["debits_posted"] = [10_000, 0, 0]
accounts["credits_posted"] = [0, 0, 10_000]
accounts["debits_pending"] = [0, 0, 2_000]
accounts["credits_pending"] = [0, 2_000, 0]
pending = np.zeros(1, dtype=PENDING_DTYPE)
pending[0] = (5, 1, CARD, MERCHANT, 2_000, 0, 0, 3)
sources = np.zeros(1, dtype=SOURCE_DTYPE)
sources[0] = (5, 1, 1)

if broken == "purse":
    accounts["cash_fen"][2] += 10_000  # money no transfer ever posted
elif broken == "hold":
    accounts["debits_pending"][2] = 0  # the card's hold missing from its pending total
    accounts["cash_fen"][2] += 2_000

engine = _core.Engine()
engine.load_checkpoint(accounts, sources, pending, 3)
ops = np.zeros(1, dtype=OP_DTYPE)
ops[0]["source"], ops[0]["seq"], ops[0]["time_us"] = 7, 1, 1_767_225_600_000_000
if op_kind == "spend":
    ops[0]["kind"] = OpKind.SPEND
    ops[0]["account_id"], ops[0]["counterparty_id"], ops[0]["amount_fen"] = CARD, MERCHANT, 1_500
else:
    ops[0]["kind"] = OpKind.POST
    ops[0]["ref_source"], ops[0]["ref_seq"] = 5, 1
results, _ = engine.apply(ops)
print("result", int(results[0]["code"]), int(results[0]["balance_fen"]))
"""


def run_workload(broken: str, op_kind: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WORKLOAD, broken, op_kind],
        capture_output=True, text=True, timeout=120,
    )


def assert_aborted_with(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stdout, proc.stderr)
    assert f"cardledger core: assertion failed: {message}\n" in proc.stderr, proc.stderr
    assert "    condition: " in proc.stderr and "    in __pyx_f_" in proc.stderr, proc.stderr
    assert "result" not in proc.stdout  # the op never returned


def test_money_no_transfer_posted_aborts_the_first_op_that_touches_the_account():
    """A card whose purse holds 10,000 fen more than its posted credits less debits:
    the SPEND that touches it aborts the process, naming the per-account identity."""
    proc = run_workload("purse", "spend")
    assert_aborted_with(
        proc, "an account's purses plus the holds it placed equal its posted credits less its posted debits"
    )


def test_a_hold_missing_from_its_cards_pending_total_aborts_its_post():
    """A hold the card's debits_pending does not count: posting it aborts the process
    before any money moves, naming the hold's debit side."""
    proc = run_workload("hold", "post")
    assert_aborted_with(proc, "the debit side's debits_pending includes the hold")


@pytest.mark.parametrize("op_kind", ["spend", "post"])
def test_the_same_workloads_on_consistent_rows_run_clean(op_kind):
    """The rows unbroken, the same ops succeed and nothing is written to stderr."""
    proc = run_workload("nothing", op_kind)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.split() == ["result", "0", "6500" if op_kind == "spend" else "8000"]
