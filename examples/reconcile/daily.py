#!/usr/bin/env python
"""A day's reconciliation, as the union's finance office runs it each morning.

    python examples/reconcile/daily.py LEDGER --day 2027-01-15 --bank icbc.csv --out DIR

1. settles the service day and closes it in the journal (`Ledger.close_day`), and
   prints the late items of earlier closed days that arrived since the last close;
2. matches the bank's file of top-ups (`user_data,account_id,amount_fen,time`) against
   the day's TOPUPs (`cardledger.matching.match`);
3. exports the day's journal records as CSV for the archive (`cardledger.exports`).

Exits 0 when the bank and the ledger agree, 1 when they differ (the report says how).
The same steps as commands: `cardledger settle --close`, `cardledger match`,
`cardledger export` (docs/reconciliation.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import cardledger
from cardledger.days import service_day
from cardledger.exports import export, select
from cardledger.matching import match


def main(argv: list[str] | None = None) -> int:
    """Run the day's reconciliation; return the exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ledger")
    p.add_argument("--day", required=True, help="YYYY-MM-DD")
    p.add_argument("--bank", required=True, help="the bank's CSV file of the day's top-ups")
    p.add_argument("--out", required=True, help="a directory for the day's reports")
    p.add_argument("--day-start", default="00:00")
    a = p.parse_args(argv)
    start_us, end_us = service_day(a.day, day_start=a.day_start)
    os.makedirs(a.out, exist_ok=True)
    with cardledger.open(a.ledger) as led:
        closed = led.close_day(start_us, end_us)
        with open(os.path.join(a.out, f"settlement-{a.day}.json"), "w", encoding="utf-8") as f:
            json.dump({"day": a.day, **closed}, f, indent=1)
        for late in closed["late"]:
            print(f"late items for the day from {late['start_us']}: {late['accounts']}")
        report = match(led.batches_meeting(start_us, end_us), a.bank, start_us=start_us, end_us=end_us)
        with open(os.path.join(a.out, f"bank-match-{a.day}.json"), "w", encoding="utf-8") as f:
            json.dump(report.as_dict(), f, indent=1)
        n = export(select(led.batches_meeting(start_us, end_us), start_us, end_us),
                   os.path.join(a.out, f"journal-{a.day}.csv"), "csv")
    posted = sum(x["debits_fen"] for x in closed["accounts"])
    print(f"{a.day}: closed ({posted} fen posted by {len(closed['accounts'])} accounts); {n} journal records "
          f"exported; bank: {report.matched} matched, {len(report.missing_in_ledger)} missing in the ledger, "
          f"{len(report.missing_in_file)} missing in the file, {len(report.mismatched)} mismatched")
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
