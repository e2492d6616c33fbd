"""Aid cycles: pay a list of cards from a program, each card at most once per cycle.

A disbursement is a program (a PROGRAM account: its balance is the budget), a cycle
name ("2027 春节送温暖") and a list of lines (card, amount). Its ops are AIDs whose
ids are derived, never issued: the source from the program and the cycle
(`cycle_source`), the seq from the card and an attempt number (`aid_seq`: the
attempt in the top AID_ATTEMPT_BITS bits, the card below). So a card's payment in a
cycle has one id per attempt, whoever runs the list and however often:

- a run first asks the ledger (`Ledger.lookup`) what became of each card's attempts:
  one that succeeded means the card is paid (the same amount: already paid; another:
  a conflict, not paid); one that failed is decided forever, so the next attempt is
  tried; the first attempt never decided is the one sent;
- two runs at once send the same ids: the ledger decides each once, the other run
  reads the decision (exactly-once, not a lock, keeps a card from being paid twice).

A frozen card is not paid (aid waits for its replacement): it is refused here before
any op is sent, since AID itself credits a frozen account. `atomic=True` sends the
list as one LINKED chain: all paid or none.

The CSV format of a list and of the report is in docs/aid.md.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .schema import AMOUNT_MAX_FEN, BATCH_OPS_MAX, AccountFlags, AccountKind, OpFlags, OpKind, Result, new_ops

#: Low bits of an aid op's seq that number the attempts at one card in one cycle.
AID_ATTEMPT_BITS = 8
#: Attempts at one card in one cycle (a card whose payment failed this often is refused).
AID_ATTEMPTS_MAX = 1 << AID_ATTEMPT_BITS
#: Largest card id an aid list may name (the seq keeps AID_ATTEMPT_BITS for attempts).
AID_CARD_ID_MAX = (1 << (64 - AID_ATTEMPT_BITS)) - 1
#: Aid sources have the top bit set: terminals, POS and bank channels use sources
#: below 2^63, so derived aid ids never meet theirs.
AID_SOURCE_BIT = 1 << 63
#: The CSV header of a list (member_ref and note are optional columns).
AID_LIST_COLUMNS = ("card_id", "amount_fen", "member_ref", "note")

#: A line's outcome.
PAID, ALREADY_PAID, CONFLICT, DUPLICATE, FAILED, BAD_LINE = (
    "paid", "already_paid", "conflict", "duplicate", "failed", "bad_line")


#: Where an aid op's seq keeps its attempt number.
AID_ATTEMPT_SHIFT = 64 - AID_ATTEMPT_BITS


def aid_seq(card_id: Any, attempt: Any) -> Any:
    """The seq of attempt `attempt` at card `card_id` (ints or uint64 arrays).

    The attempt sits above the card, so a list's first attempts are the cards' own
    ids: a list of neighbouring cards gives a source dense seqs, which the engines
    track cheaply, where seqs spaced by attempts would leave a gap after every op."""
    if isinstance(card_id, np.ndarray):
        return (np.asarray(attempt, dtype=np.uint64) << np.uint64(AID_ATTEMPT_SHIFT)) | card_id.astype(np.uint64)
    return (int(attempt) << AID_ATTEMPT_SHIFT) | int(card_id)


def cycle_source(program_id: int, cycle: str) -> int:
    """The source of a program's cycle: its aid ops' ids are (this, card and attempt)."""
    if not cycle or cycle != cycle.strip():
        raise ValueError(f"a cycle needs a name without leading or trailing blanks, got {cycle!r}")
    digest = hashlib.sha256(b"cardledger aid cycle\0" + int(program_id).to_bytes(8, "big") + cycle.encode()).digest()
    return AID_SOURCE_BIT | int.from_bytes(digest[:8], "big") & (AID_SOURCE_BIT - 1)


@dataclass
class AidLine:
    """One line of a list and what became of it (`DisbursementReport.lines`)."""

    line_no: int  # 1-based: a CSV's line number (the header is line 1), else the position
    card_id: int
    amount_fen: int
    member_ref: str = ""
    note: str = ""
    outcome: str = ""
    result: str = ""  # the Result name of a failed or conflicting line
    ledger_amount_fen: int | None = None  # a conflict: what the card was paid in this cycle
    journal_seq: int = 0  # the journal record that paid (or refused) the card
    message: str = ""  # a bad line: what is wrong with it


#: Outcome codes of the report's arrays, in the order of OUTCOMES.
OUTCOMES = ("", PAID, ALREADY_PAID, CONFLICT, DUPLICATE, FAILED, BAD_LINE)
_TODO, _PAID, _ALREADY, _CONFLICT, _DUP, _FAILED, _BAD = range(len(OUTCOMES))


class AidList:
    """A list's lines as arrays (one entry a line), with their outcomes as a run fills them."""

    def __init__(self, line_no: np.ndarray, card: np.ndarray, amount: np.ndarray,
                 member_ref: list[str] | None = None, note: list[str] | None = None) -> None:
        n = len(card)
        self.line_no = np.asarray(line_no, dtype=np.int64)
        self.card = np.asarray(card, dtype=np.uint64)
        self.amount = np.asarray(amount, dtype=np.int64)
        self.member_ref = member_ref
        self.note = note
        self.outcome = np.zeros(n, dtype=np.int8)
        self.result = np.zeros(n, dtype=np.uint32)
        self.ledger_amount = np.zeros(n, dtype=np.int64)
        self.journal_seq = np.zeros(n, dtype=np.uint64)
        self.messages: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.card)

    def mark(self, idx: Any, outcome: int, result: int = 0, message: str | None = None) -> None:
        """Record the outcome of lines `idx` (an index array or mask)."""
        self.outcome[idx] = outcome
        if result:
            self.result[idx] = result
        if message is not None:
            for i in np.arange(len(self))[idx].tolist():
                self.messages[i] = message

    def line(self, i: int) -> AidLine:
        """Line i as an AidLine."""
        outcome = int(self.outcome[i])
        return AidLine(
            int(self.line_no[i]), int(self.card[i]), int(self.amount[i]),
            self.member_ref[i] if self.member_ref else "", self.note[i] if self.note else "",
            OUTCOMES[outcome], Result(int(self.result[i])).name if self.result[i] else "",
            int(self.ledger_amount[i]) if outcome == _CONFLICT else None, int(self.journal_seq[i]),
            self.messages.get(i, ""))


@dataclass
class DisbursementReport:
    """What a disbursement did, line by line (`lines`), and its summary (`summary`)."""

    program_id: int
    cycle: str
    list: AidList
    program_balance_before_fen: int = 0
    program_balance_after_fen: int = 0

    @property
    def lines(self) -> list[AidLine]:
        """Every line of the list with its outcome, in the list's order."""
        return [self.list.line(i) for i in range(len(self.list))]

    @property
    def summary(self) -> dict[str, Any]:
        """The summary as plain data (what `cardledger disburse --json` prints)."""
        lst = self.list
        counts = np.bincount(lst.outcome, minlength=len(OUTCOMES))
        failed_codes, failed_n = np.unique(lst.result[lst.outcome == _FAILED], return_counts=True)
        return {
            "program_id": self.program_id,
            "cycle": self.cycle,
            "paid": int(counts[_PAID]),
            "paid_fen": int(lst.amount[lst.outcome == _PAID].sum()),
            "already_paid": int(counts[_ALREADY]),
            "conflicts": int(counts[_CONFLICT]),
            "duplicates": int(counts[_DUP]),
            "bad_lines": int(counts[_BAD]),
            "failed": {Result(int(c)).name: int(k) for c, k in sorted(zip(failed_codes.tolist(), failed_n.tolist()),
                                                                      key=lambda x: Result(x[0]).name)},
            "program_balance_before_fen": self.program_balance_before_fen,
            "program_balance_after_fen": self.program_balance_after_fen,
        }

    @property
    def troubled(self) -> bool:
        """Whether a line failed, conflicts or could not be read."""
        return bool(np.isin(self.list.outcome, (_FAILED, _CONFLICT, _BAD)).any())

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the per-line outcomes as CSV (columns in docs/aid.md)."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["line", "card_id", "amount_fen", "member_ref", "note", "outcome", "result",
                          "ledger_amount_fen", "journal_seq", "message"])
            for ln in self.lines:
                out.writerow([ln.line_no, ln.card_id, ln.amount_fen, ln.member_ref, ln.note, ln.outcome, ln.result,
                              "" if ln.ledger_amount_fen is None else ln.ledger_amount_fen, ln.journal_seq or "",
                              ln.message])


def read_list(path: str | os.PathLike[str]) -> AidList:
    """Read an aid list (CSV, header `card_id,amount_fen[,member_ref][,note]`).

    Lines that cannot be read are kept as BAD_LINE with their line number and what
    is wrong. A file without the header is a ValueError."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:2]] != ["card_id", "amount_fen"]:
            raise ValueError(f"{path}: line 1 must be the header card_id,amount_fen[,member_ref][,note], got {header}")
        names = [h.strip() for h in header]
        unknown = [n for n in names if n not in AID_LIST_COLUMNS]
        if unknown:
            raise ValueError(f"{path}: line 1: unknown columns {unknown}; the columns are {list(AID_LIST_COLUMNS)}")
        ref_at = names.index("member_ref") if "member_ref" in names else None
        note_at = names.index("note") if "note" in names else None
        line_nos, cards, amounts, refs, notes = [], [], [], [], []
        for row in rows:
            if not row or all(not c.strip() for c in row):
                continue  # blank lines are not lines
            line_nos.append(rows.line_num)
            cards.append(row[0].strip())
            amounts.append(row[1].strip() if len(row) > 1 else "")
            refs.append(row[ref_at].strip() if ref_at is not None and len(row) > ref_at else "")
            notes.append(row[note_at].strip() if note_at is not None and len(row) > note_at else "")
            if len(row) > len(names):
                amounts[-1] = f"<{len(row)} fields, the header names {len(names)}>"
    return _checked(np.array(line_nos, dtype=np.int64), cards, amounts, refs, notes)


def parse_lines(lines: Any) -> AidList:
    """Lines given as an integer array of shape (n, 2) (card_id, amount_fen), or as
    tuples (card_id, amount_fen[, member_ref[, note]]), numbered by position from 1;
    a malformed one is BAD_LINE (never a float: money is whole fen)."""
    if isinstance(lines, np.ndarray):
        if lines.ndim != 2 or lines.shape[1] != 2 or lines.dtype.kind not in "iu":
            raise ValueError(f"an array of lines must be integers of shape (n, 2), got {lines.dtype} {lines.shape}")
        lst = AidList(np.arange(1, len(lines) + 1), lines[:, 0].astype(np.uint64), lines[:, 1].astype(np.int64))
        _check_ranges(lst, lines[:, 0].astype(object) if lines.dtype.kind == "i" else None)
        return lst
    cards, amounts, refs, notes = [], [], [], []
    for line in lines:
        parts = list(line)
        if not 2 <= len(parts) <= 4:
            parts = [None, f"<{len(parts)} fields, expected 2 to 4>"]
        cards.append(parts[0])
        amounts.append(parts[1])
        refs.append(str(parts[2]) if len(parts) > 2 and parts[2] is not None else "")
        notes.append(str(parts[3]) if len(parts) > 3 and parts[3] is not None else "")
    return _checked(np.arange(1, len(cards) + 1), cards, amounts, refs, notes)


def _whole(value: Any, what: str) -> int:
    """An int from a whole number or its text; ValueError for floats, bools, other text."""
    if isinstance(value, (bool, float, np.floating)) or value is None:
        raise ValueError(f"{what} {value!r} is not a whole number")
    if isinstance(value, str):
        if not value.lstrip("-").isdigit():
            raise ValueError(f"{what} {value!r} is not a whole number")
        return int(value)
    if not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} {value!r} is not a whole number")
    return int(value)


def _checked(line_nos: np.ndarray, cards: list, amounts: list, refs: list[str], notes: list[str]) -> AidList:
    """An AidList of Python values, each line checked (bad ones marked)."""
    n = len(cards)
    card_arr = np.zeros(n, dtype=np.uint64)
    amount_arr = np.zeros(n, dtype=np.int64)
    bad: dict[int, str] = {}
    for i, (c, a) in enumerate(zip(cards, amounts)):
        try:
            if isinstance(a, str) and a.startswith("<"):
                raise ValueError(a[1:-1])
            card_id, amount_fen = _whole(c, "card_id"), _whole(a, "amount_fen")
            if not 1 <= card_id <= AID_CARD_ID_MAX:
                raise ValueError(f"card_id {card_id} is out of range (1..{AID_CARD_ID_MAX})")
            if not 1 <= amount_fen <= AMOUNT_MAX_FEN:
                raise ValueError(f"amount_fen {amount_fen} is out of range (1..{AMOUNT_MAX_FEN})")
            card_arr[i], amount_arr[i] = card_id, amount_fen
        except ValueError as e:
            bad[i] = str(e)
    lst = AidList(line_nos, card_arr, amount_arr, refs, notes)
    for i, message in bad.items():
        lst.outcome[i] = _BAD
        lst.messages[i] = message
    return lst


def _check_ranges(lst: AidList, signed_cards: Any) -> None:
    """Mark the lines of an integer array whose card or amount is out of range."""
    bad_card = (lst.card < 1) | (lst.card > AID_CARD_ID_MAX)
    if signed_cards is not None:
        bad_card |= np.asarray(signed_cards < 1, dtype=bool)
    bad_amount = (lst.amount < 1) | (lst.amount > AMOUNT_MAX_FEN)
    for i in np.flatnonzero(bad_card | bad_amount).tolist():
        lst.outcome[i] = _BAD
        lst.messages[i] = (f"card_id {lst.card[i]} is out of range (1..{AID_CARD_ID_MAX})" if bad_card[i]
                           else f"amount_fen {lst.amount[i]} is out of range (1..{AMOUNT_MAX_FEN})")


def disburse(ledger: Any, program_id: int, cycle: str, lines: Any, *, atomic: bool = False,
             time_us: int | None = None) -> DisbursementReport:
    """Pay a list of lines from program `program_id` in cycle `cycle`; return the report.

    `lines`: a path to a CSV list (docs/aid.md), an integer array of shape (n, 2)
    (card_id, amount_fen), or an iterable of (card_id, amount_fen[, member_ref[,
    note]]). Each card is paid at most once per cycle, forever (module docstring); a
    card listed twice in one list is paid once and the duplicate reported; lines for
    unknown, closed or frozen cards fail with their reason and the rest go on. A
    budget that runs out fails the remaining lines with INSUFFICIENT_FUNDS.
    `atomic=True` pays every line or none (a list that does not fit one batch, or
    with bad lines, is then a ValueError). `time_us`: the payment's event time
    (default: now). Needs a writable ledger (it applies ops and reads decisions).
    """
    source = cycle_source(program_id, cycle)
    program = ledger.account(program_id)  # AccountNotFoundError if there is none
    if program.kind != AccountKind.PROGRAM:
        raise ValueError(f"account {program_id} is a {program.kind.name} account, not a PROGRAM")
    lst = read_list(lines) if isinstance(lines, (str, os.PathLike)) else parse_lines(lines)
    report = DisbursementReport(int(program_id), cycle, lst)
    if atomic and (lst.outcome == _BAD).any():
        i = int(np.flatnonzero(lst.outcome == _BAD)[0])
        raise ValueError(f"an atomic disbursement needs a clean list: line {lst.line_no[i]}: {lst.messages[i]}")
    _mark_duplicates(lst)
    todo = np.flatnonzero(lst.outcome == _TODO)
    if atomic and len(todo) > BATCH_OPS_MAX:
        raise ValueError(f"an atomic disbursement pays at most {BATCH_OPS_MAX:,} lines, this list has {len(todo):,}")
    report.program_balance_before_fen = ledger.balance(program_id)
    if time_us is None:
        time_us = time.time_ns() // 1000
    _refuse_frozen(ledger, lst, todo)
    if atomic and (lst.outcome[todo] == _FAILED).any():
        rest = todo[lst.outcome[todo] == _TODO]
        lst.mark(rest, _FAILED, Result.LINKED_FAILED, "not sent: an atomic list pays all lines or none")
        report.program_balance_after_fen = report.program_balance_before_fen
        return report
    attempt = np.zeros(len(lst), dtype=np.uint64)
    # Rounds: find each line's first undecided attempt, send those, and read again
    # what a concurrent run of the same list decided meanwhile.
    while True:
        live = todo[lst.outcome[todo] == _TODO]
        if not len(live):
            break
        send = _settle_decided(ledger, source, lst, live, attempt)
        if not len(send):
            break
        for lo in range(0, len(send), BATCH_OPS_MAX):
            part = send[lo : lo + BATCH_OPS_MAX]
            ops = _aid_ops(source, program_id, lst.card[part], attempt[part], lst.amount[part], time_us, atomic)
            results = ledger.apply(ops)
            code = results["code"]
            # A resend code means a concurrent run decided the id: the next round reads it.
            resent = np.isin(code, (Result.EXISTS, Result.EXISTS_WITH_DIFFERENT_FIELDS, Result.ID_ALREADY_FAILED))
            ok = code == Result.OK
            lst.journal_seq[part[~resent]] = results["journal_seq"][~resent]
            lst.outcome[part[ok]] = _PAID
            failed = ~ok & ~resent
            lst.outcome[part[failed]] = _FAILED
            lst.result[part[failed]] = code[failed]
    report.program_balance_after_fen = ledger.balance(program_id)
    return report


def _mark_duplicates(lst: AidList) -> None:
    """Mark every line whose card an earlier line names (the first one is paid)."""
    live = np.flatnonzero(lst.outcome == _TODO)
    _, first, inverse = np.unique(lst.card[live], return_index=True, return_inverse=True)
    dup = live[first[inverse] != np.arange(len(live))]
    first_line = lst.line_no[live[first[inverse]]]
    for k in np.flatnonzero(first[inverse] != np.arange(len(live))).tolist():
        lst.messages[int(live[k])] = f"card listed before, on line {int(first_line[k])}"
    lst.outcome[dup] = _DUP


def _refuse_frozen(ledger: Any, lst: AidList, todo: np.ndarray) -> None:
    """Fail the lines of frozen cards before anything is sent (AID credits them)."""
    if not len(todo):
        return
    accounts = ledger.accounts()
    if not len(accounts):
        return
    order = np.argsort(accounts["id"])
    ids = accounts["id"][order]
    cards = lst.card[todo]
    pos = np.clip(np.searchsorted(ids, cards), 0, len(ids) - 1)
    known = ids[pos] == cards
    flags = np.where(known, accounts["flags"][order][pos], 0)
    frozen = known & ((flags & AccountFlags.FROZEN) != 0) & ((flags & AccountFlags.CLOSED) == 0)
    lst.mark(todo[frozen], _FAILED, Result.ACCOUNT_FROZEN, "the card is frozen: aid waits for its replacement")


def _settle_decided(ledger: Any, source: int, lst: AidList, live: np.ndarray, attempt: np.ndarray) -> np.ndarray:
    """Move each line in `live` to its first attempt never decided, settling lines
    whose card a decided attempt already paid; return the lines to send."""
    pending = live
    while len(pending):
        probe = new_ops(len(pending))
        probe["source"] = source
        probe["seq"] = aid_seq(lst.card[pending], attempt[pending])
        records, decided = ledger.lookup(probe)
        paid = decided & (records["code"] == Result.OK)
        same = paid & (records["amount_fen"] == lst.amount[pending])
        lst.journal_seq[pending[paid]] = records["journal_seq"][paid]
        lst.outcome[pending[same]] = _ALREADY
        differ = pending[paid & ~same]
        lst.outcome[differ] = _CONFLICT
        lst.result[differ] = Result.EXISTS_WITH_DIFFERENT_FIELDS
        lst.ledger_amount[differ] = records["amount_fen"][paid & ~same]
        for i, amount in zip(differ.tolist(), records["amount_fen"][paid & ~same].tolist()):
            lst.messages[i] = f"paid {amount} fen in this cycle already"
        retry = decided & ~paid
        exhausted = retry & (attempt[pending] + np.uint64(1) >= np.uint64(AID_ATTEMPTS_MAX))
        lst.mark(pending[exhausted], _FAILED, message=f"{AID_ATTEMPTS_MAX} attempts at this card in this cycle failed")
        lst.result[pending[exhausted]] = records["code"][exhausted]
        attempt[pending[retry & ~exhausted]] += np.uint64(1)
        pending = pending[retry & ~exhausted]
    return live[lst.outcome[live] == _TODO]


def _aid_ops(source: int, program_id: int, cards: np.ndarray, attempts: np.ndarray, amounts: np.ndarray,
             time_us: int, atomic: bool) -> np.ndarray:
    """The AID ops of one round (a LINKED chain when atomic)."""
    ops = new_ops(len(cards))
    ops["source"] = source
    ops["seq"] = aid_seq(cards, attempts)
    ops["kind"] = OpKind.AID
    ops["account_id"] = cards
    ops["counterparty_id"] = program_id
    ops["amount_fen"] = amounts
    ops["time_us"] = time_us
    if atomic and len(ops) > 1:
        ops["flags"][:-1] = OpFlags.LINKED
    return ops


@dataclass
class CycleTotals:
    """A cycle's totals as the journal holds them (`aid_report`)."""

    program_id: int
    cycle: str
    paid: int = 0
    paid_fen: int = 0
    cards_paid: int = 0
    failed: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (what `cardledger aid-report --json` prints)."""
        return {"program_id": self.program_id, "cycle": self.cycle, "paid": self.paid, "paid_fen": self.paid_fen,
                "cards_paid": self.cards_paid, "failed": dict(sorted(self.failed.items()))}


#: Journal records read at a time by `aid_report`.
AID_REPORT_CHUNK_RECORDS = 1 << 20


def aid_report(ledger: Any, program_id: int, cycle: str) -> CycleTotals:
    """A cycle's totals: what its runs paid (ops, fen, cards) and the attempts that
    failed, by reason. Reads the whole journal in chunks (its cost is the journal's
    length, its memory one chunk)."""
    ledger.account(program_id)  # AccountNotFoundError if there is none
    source = np.uint64(cycle_source(program_id, cycle))
    totals = CycleTotals(int(program_id), cycle)
    failed: Counter = Counter()
    cards: set[int] = set()
    head = ledger.journal_seq
    for lo in range(1, head + 1, AID_REPORT_CHUNK_RECORDS):
        recs = ledger.journal(lo, min(head + 1, lo + AID_REPORT_CHUNK_RECORDS))
        mine = recs[(recs["source"] == source) & (recs["counterparty_id"] == program_id)]
        ok = mine["code"] == Result.OK
        totals.paid += int(ok.sum())
        totals.paid_fen += int(mine["amount_fen"][ok].astype(np.int64).sum())
        cards.update(mine["account_id"][ok].tolist())
        failed.update(Result(int(c)).name for c in mine["code"][~ok])
    totals.cards_paid = len(cards)
    totals.failed = dict(failed)
    return totals
