"""Matching a counterparty's file against the ledger, by `user_data`.

The bank that runs top-ups (or an operator, or the office) sends its file of a
service day; every line names the op by the reference both sides carry. The file is
CSV with the header `user_data,account_id,amount_fen,time`: `user_data` the
reference (a whole number), `account_id` the card, `amount_fen` whole fen, `time`
ISO 8601 with an offset (`2027-01-15T08:03:11+08:00`). It is matched against the
ledger's successful ops of the given kinds (default TOPUP) whose event time falls in
the day, as the ledger holds them now:

- matched: the same user_data on both sides, every field equal;
- missing in the ledger / missing in the file: a user_data on one side only;
- mismatched: the same user_data, a field differing (which field, both values);
- duplicated in the file: a user_data on several lines (the first is matched).

A bad line is reported with its line number and stops nothing else.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .days import to_us
from .schema import JOURNAL_DTYPE, OpKind, Result

#: The header of a file to match.
MATCH_COLUMNS = ("user_data", "account_id", "amount_fen", "time")
#: The fields compared, in the order a mismatch reports them.
COMPARED = ("account_id", "amount_fen", "time_us")


@dataclass
class MatchReport:
    """What a match found (`as_dict` is what `cardledger match --json` prints)."""

    matched: int = 0
    missing_in_ledger: list[int] = field(default_factory=list)
    missing_in_file: list[int] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    duplicates_in_file: list[int] = field(default_factory=list)
    bad_lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when both sides agree line for line and no line is bad."""
        return not (self.missing_in_ledger or self.missing_in_file or self.mismatched or self.duplicates_in_file
                    or self.bad_lines)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data."""
        return {"matched": self.matched, "missing_in_ledger": self.missing_in_ledger,
                "missing_in_file": self.missing_in_file, "mismatched": self.mismatched,
                "duplicates_in_file": self.duplicates_in_file, "bad_lines": self.bad_lines}


def read_file(path: str | os.PathLike[str]) -> tuple[dict[int, dict[str, int]], list[int], list[dict[str, Any]]]:
    """Read a file to match: ({user_data: {field: value}}, duplicated user_data, bad
    lines as {"line", "error"}). A file without the header is a ValueError."""
    rows: dict[int, dict[str, int]] = {}
    dups: list[int] = []
    bad: list[dict[str, Any]] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != MATCH_COLUMNS:
            raise ValueError(f"{path}: line 1 must be the header {','.join(MATCH_COLUMNS)}, got {header}")
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            line = reader.line_num
            try:
                if len(row) != len(MATCH_COLUMNS):
                    raise ValueError(f"{len(row)} fields, expected {len(MATCH_COLUMNS)}")
                ref, account, amount = (_whole(row[i].strip(), MATCH_COLUMNS[i]) for i in range(3))
                if not 0 < ref < 1 << 64:
                    raise ValueError(f"user_data {ref} is out of range (1..2**64-1)")
                when = _time(row[3].strip())
            except ValueError as e:
                bad.append({"line": line, "error": str(e)})
                continue
            if ref in rows:
                if ref not in dups:
                    dups.append(ref)
                continue
            rows[ref] = {"account_id": account, "amount_fen": amount, "time_us": when}
    return rows, dups, bad


def match(records: Iterator[np.ndarray], path: str | os.PathLike[str], kinds: tuple[OpKind, ...] = (OpKind.TOPUP,),
          start_us: int | None = None, end_us: int | None = None) -> MatchReport:
    """Match the file at `path` against the successful ops of `kinds` among
    `records` (arrays of journal records) whose event time is in [start_us, end_us)."""
    want, dups, bad = read_file(path)
    report = MatchReport(duplicates_in_file=sorted(dups), bad_lines=bad)
    kind_codes = np.array([int(k) for k in kinds], dtype=np.uint16)
    seen: set[int] = set()
    for recs in records:
        keep = (recs["code"] == Result.OK) & np.isin(recs["kind"], kind_codes) & (recs["user_data"] != 0)
        if start_us is not None:
            keep &= recs["time_us"] >= start_us
        if end_us is not None:
            keep &= recs["time_us"] < end_us
        for rec in recs[keep].tolist() if keep.any() else ():
            ref = rec[_UD]
            got = {"account_id": rec[_ACC], "amount_fen": rec[_AMT], "time_us": rec[_TIME]}
            if ref in seen:
                continue  # (the ledger's ids are unique; a user_data need not be)
            seen.add(ref)
            line = want.get(ref)
            if line is None:
                report.missing_in_file.append(ref)
                continue
            diff = [name for name in COMPARED if line[name] != got[name]]
            if diff:
                for name in diff:
                    report.mismatched.append({"user_data": ref, "field": name, "file": line[name], "ledger": got[name]})
            else:
                report.matched += 1
    report.missing_in_ledger = sorted(set(want) - seen)
    report.missing_in_file.sort()
    return report


#: Positions of the compared fields in a journal record's tuple.
_UD, _ACC, _AMT, _TIME = (JOURNAL_DTYPE.names.index(n) for n in ("user_data", "account_id", "amount_fen", "time_us"))


def _whole(text: str, what: str) -> int:
    if not text.lstrip("-").isdigit():
        raise ValueError(f"{what} {text!r} is not a whole number")
    return int(text)


def _time(text: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no offset (e.g. +08:00)")
    return to_us(moment)
