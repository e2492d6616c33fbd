"""Aid disbursement speed: a list of N lines paid, then the same list run again (all
already paid), on a fresh ledger (`cardledger.disburse`).

    python bench/bench_aid.py [--lines 1000000] [--engine cython|python]

Prints the seconds of each run and the lines a second. The first run includes reading
which attempts are free (none decided yet) and the AIDs' batches; the second reads
every card's decision and sends nothing.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np

import cardledger
from cardledger import AccountKind, OpKind

CARD_BASE = 10_000_000
PROGRAM = 3


def main() -> None:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--engine", default="cython")
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="cardledger-aid-")
    try:
        with cardledger.open(f"{work}/ledger", create=True, engine=a.engine) as led:
            setup = cardledger.new_ops(3)
            setup["source"], setup["seq"], setup["time_us"] = 1, [1, 2, 3], 1_767_225_600_000_000
            setup["kind"] = [OpKind.OPEN, OpKind.OPEN, OpKind.TRANSFER]
            setup["account_id"] = [1, PROGRAM, 1]
            setup["account_kind"] = [AccountKind.CLEARING, AccountKind.PROGRAM, 0]
            setup["counterparty_id"] = [0, 0, PROGRAM]
            setup["amount_fen"] = [0, 0, 50_000 * a.lines]
            assert (led.apply(setup)["code"] == 0).all()
            cards = np.arange(CARD_BASE, CARD_BASE + a.lines, dtype=np.uint64)
            for lo in range(0, a.lines, 1 << 20):
                part = cards[lo : lo + (1 << 20)]
                ops = cardledger.new_ops(len(part))
                ops["source"], ops["seq"] = 2, np.arange(lo + 1, lo + 1 + len(part))
                ops["kind"], ops["account_id"], ops["account_kind"] = OpKind.OPEN, part, AccountKind.CARD
                ops["time_us"] = 1_767_225_600_000_000
                led.apply(ops)
            lines = np.column_stack([cards.astype(np.int64), np.full(a.lines, 50_000, dtype=np.int64)])
            for name in ("first run", "re-run"):
                t = time.perf_counter()
                report = cardledger.disburse(led, PROGRAM, "bench cycle", lines)
                dt = time.perf_counter() - t
                s = report.summary
                print(f"{name}: {a.lines:,} lines in {dt:.2f} s ({a.lines / dt:,.0f} lines/s); "
                      f"paid {s['paid']:,}, already paid {s['already_paid']:,}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
