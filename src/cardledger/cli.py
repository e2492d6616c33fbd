"""The `cardledger` command (also `python -m cardledger`): `bench` (the city
scenario), `demo`, `verify`, `backup`, `recover`, `disburse`, `aid-report`, `settle`, `query`,
`balance`, `policies` (docs/policies.md), `match`, `export`, `follow`, `node` (a replicated
ledger's node: docs/cluster.md) and `handbook` (the member handbook from an offer catalog:
docs/offers.md).

Exit codes: 0 done (verify: clean; recover: nothing lost); 1 verify found problems,
recover lost a journal range, or the demo's ledger did not verify; 2 a bad command
line, or a path that is not a ledger; 3 a ledger that cannot be read (or salvaged),
or a storage error. Errors are one line on stderr, never a traceback.

`cardledger bench` replays the synthetic Harbin morning peak (or, with `--mix`, the
SPEND/TOPUP mix) through the core, the reference engine and two baselines, each in its
own process (see `cardledger.benchmark.runner`).

`cardledger demo` opens a ledger in a temporary LMDB directory, walks through the
card's life (accounts, top-ups, spends, an aid disbursement, a two-phase hold, a lost
card frozen and replaced, replays of acknowledged batches, a restart) and then drives
a SPEND/TOPUP load through `Ledger.apply`, reporting throughput and verifying the
ledger at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, NoReturn

import numpy as np

from . import BATCH_OPS_MAX, IMPLEMENTATION, AccountKind, OpFlags, OpKind, Result, new_ops
from . import open as open_ledger
from .errors import AccountNotFoundError, CorruptionError, NotALedgerError, StorageError
from .recover import recover
from .verify import inspect

CLEARING_BANK = 1
MERCHANT = 2
OPERATOR_METRO = 3
PROGRAM_AID = 4
CARD_BASE = 100_000_000
T0_US = 1_767_225_600_000_000  # 2026-01-01 00:00 UTC
#: The demo refers to its first three cards by position (a spender, a lost card, the load's).
DEMO_CARDS_MIN = 3
#: Exit codes (see the module docstring).
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_UNREADABLE = 0, 1, 2, 3


class _Ids:
    """Issues (source, seq) ids per source, as terminals do."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}

    def fill(self, ops: np.ndarray, source: int) -> np.ndarray:
        start = self.next.get(source, 1)
        ops["source"] = source
        ops["seq"] = np.arange(start, start + len(ops), dtype=np.uint64)
        self.next[source] = start + len(ops)
        return ops


def _batch(ids: _Ids, source: int, kind, account, counterparty=0, amount=0, time_us=T0_US, **fields) -> np.ndarray:
    n = max(np.size(account), np.size(amount), 1)
    ops = new_ops(n)
    ops["kind"] = kind
    ops["account_id"] = account
    ops["counterparty_id"] = counterparty
    ops["amount_fen"] = amount
    ops["time_us"] = time_us
    for k, v in fields.items():
        ops[k] = v
    return ids.fill(ops, source)


def _say(results: np.ndarray) -> str:
    codes, counts = np.unique(results["code"], return_counts=True)
    return ", ".join(f"{Result(int(c)).name}×{n}" for c, n in zip(codes, counts))


def demo(cards: int, load_ops: int, batch: int, keep: str | None) -> int:
    """Run the demo; return the process exit code."""
    path = keep or tempfile.mkdtemp(prefix="cardledger-demo-")
    print(f"cardledger demo — engine: {IMPLEMENTATION}; ledger: {path}")
    ids = _Ids()
    rng = np.random.default_rng(2026)
    card_ids = np.arange(CARD_BASE, CARD_BASE + cards, dtype=np.uint64)
    try:
        with open_ledger(path, create=True) as led:
            sys_accounts = _batch(
                ids, 1, OpKind.OPEN, [CLEARING_BANK, MERCHANT, OPERATOR_METRO, PROGRAM_AID],
                account_kind=[AccountKind.CLEARING, AccountKind.MERCHANT, AccountKind.OPERATOR, AccountKind.PROGRAM],
            )
            print("open system accounts:", _say(led.apply(sys_accounts)))
            t = time.perf_counter()
            for lo in range(0, cards, 65_536):
                part = card_ids[lo : lo + 65_536]
                led.apply(_batch(ids, 2, OpKind.OPEN, part, account_kind=AccountKind.CARD))
            print(f"open {cards:,} cards: {time.perf_counter() - t:.2f} s")
            budget = _batch(ids, 3, OpKind.TRANSFER, CLEARING_BANK, PROGRAM_AID, 600_000_000)
            print("fund the aid program with 6,000,000 yuan:", _say(led.apply(budget)))
            for lo in range(0, cards, 65_536):
                part = card_ids[lo : lo + 65_536]
                topups = _batch(ids, 4, OpKind.TOPUP, part, CLEARING_BANK, rng.integers(1, 20, len(part)) * 1_000)
                led.apply(topups)
            print(f"top up every card: total {-led.balance(CLEARING_BANK) / 100:,.2f} yuan from the bank channel")
            aid_cards = rng.choice(card_ids, min(10_000, cards), replace=False)
            aid = _batch(ids, 5, OpKind.AID, aid_cards, PROGRAM_AID, 50_000)
            print(f"aid disbursement, {len(aid):,} lines of 500 yuan:", _say(led.apply(aid)))
            print(f"  program budget left: {led.balance(PROGRAM_AID) / 100:,.2f} yuan")
            c = int(aid_cards[0])
            before = led.account(c)
            hold = _batch(ids, 6, OpKind.TRANSFER, c, OPERATOR_METRO, 600, flags=OpFlags.PENDING)
            post = _batch(ids, 6, OpKind.POST, 0, amount=300, ref_source=6, ref_seq=int(hold["seq"][0]))
            r = led.apply(np.concatenate([hold, post]))
            print(f"metro entry holds 6 yuan, exit posts 3 yuan: {_say(r)}; card {c}: "
                  f"{before.balance_fen} -> {led.balance(c)} fen (subsidy purse drawn first: "
                  f"{before.subsidy_fen} -> {led.account(c).subsidy_fen})")
            lost, new = int(card_ids[1]), CARD_BASE + cards + 1
            r = led.apply(np.concatenate([
                _batch(ids, 7, OpKind.FREEZE, lost),
                _batch(ids, 7, OpKind.SPEND, lost, MERCHANT, 100),
                _batch(ids, 7, OpKind.REPLACE, lost, new),
            ]))
            print(f"lost card frozen, a spend refused, replaced: {[Result(int(x)).name for x in r['code']]}; "
                  f"new card balance {led.balance(new)} fen")
            r = led.apply(aid)
            print("the aid batch resent by a gateway that lost its acknowledgement:", _say(r))
        with open_ledger(path) as led:
            r = led.apply(aid[:3])
            print(f"after a restart, three aid lines resent once more: {_say(r)}; "
                  f"program budget still {led.balance(PROGRAM_AID) / 100:,.2f} yuan")
            print(f"load: {load_ops:,} SPEND/TOPUP ops in batches of {batch:,}, durable commit per batch")
            batches = []
            for lo in range(0, load_ops, batch):
                n = min(batch, load_ops - lo)
                accts = rng.choice(card_ids[2:], n)
                is_spend = rng.random(n) < 0.7
                ops = _batch(ids, 8, OpKind.SPEND, accts, MERCHANT, rng.integers(100, 2_000, n),
                             time_us=T0_US + 7 * 3_600_000_000)
                ops["kind"][~is_spend] = OpKind.TOPUP
                ops["counterparty_id"][~is_spend] = CLEARING_BANK
                batches.append(ops)
            lat = []
            t = time.perf_counter()
            totals = np.zeros(64, dtype=np.int64)
            for ops in batches:
                t1 = time.perf_counter()
                r = led.apply(ops)
                lat.append(time.perf_counter() - t1)
                totals += np.bincount(r["code"], minlength=64)
            dt = time.perf_counter() - t
            print(f"  {load_ops / dt:,.0f} ops/s; batch latency p50 {np.percentile(lat, 50) * 1e3:.1f} ms, "
                  f"p99 {np.percentile(lat, 99) * 1e3:.1f} ms; "
                  + ", ".join(f"{Result(i).name}×{n}" for i, n in enumerate(totals) if n))
            t = time.perf_counter()
            report = led.verify()
            print(f"verify: {'ok' if report.ok else 'FAILED'} ({report.batches} batches, {report.records:,} "
                  f"journal records, {report.accounts:,} accounts, {time.perf_counter() - t:.1f} s)")
            for p in report.problems:
                print("  problem:", p)
            return 0 if report.ok else 1
    finally:
        if keep is None:
            shutil.rmtree(path, ignore_errors=True)


def _one_line_errors(command: str) -> Any:
    """A command's ledger errors as one line on stderr and its exit code: not a ledger
    or bad input 2, a ledger that cannot be read (damaged, a storage error) 3."""

    def wrap(fn: Any) -> Any:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> int:
            try:
                return int(fn(*args, **kwargs))
            except NotALedgerError as e:
                return _fail(f"{command}: {e}", EXIT_USAGE)
            except CorruptionError as e:
                return _fail(f"{command}: unreadable: {e}", EXIT_UNREADABLE)
            except (ValueError, AccountNotFoundError) as e:
                return _fail(f"{command}: {e}", EXIT_USAGE)
            except (StorageError, OSError) as e:
                return _fail(f"{command}: {e}", EXIT_UNREADABLE)

        return run

    return wrap


def _not_a_ledger(command: str, path: str) -> int | None:
    """Exit 2 with a message if `path` is not a ledger directory; None if it may be."""
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "data.mdb")):
        return None
    what = "no such directory" if not os.path.exists(path) else (
        "not a directory" if not os.path.isdir(path) else "no ledger in it (no data.mdb)")
    return _fail(f"{command}: {path}: {what}", EXIT_USAGE)


@_one_line_errors("verify")
def verify(path: str, as_json: bool = False) -> int:
    """Inspect the ledger at `path` read-only (`cardledger.inspect`: a damaged ledger
    is reported, not refused); print the report (as JSON with `as_json`) and return
    the process exit code."""
    bad = _not_a_ledger("verify", path)
    if bad is not None:
        return bad
    report = inspect(path)
    if as_json:
        print(json.dumps({"path": path, **report.as_dict()}))
    else:
        print(f"{path}: {'ok' if report.ok else 'FAILED'} ({report.batches} batches, {report.records} records "
              f"verified; journal head {'unreadable' if report.journal_head is None else report.journal_head})")
        for p in report.problems:
            print("  problem:", p)
    return EXIT_OK if report.ok else EXIT_PROBLEMS


@_one_line_errors("recover")
def recover_command(source: str, dest: str, as_json: bool = False) -> int:
    """Salvage the intact journal prefix of the ledger at `source` into a new ledger
    at `dest` (`cardledger.recover`); print what was recovered and what was lost.
    Exit 0 when nothing was lost, 1 when a journal range was lost."""
    bad = _not_a_ledger("recover", source)
    if bad is not None:
        return bad
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        return _fail(f"recover: {dest}: not a new or empty directory; recover never writes into an existing one",
                     EXIT_USAGE)
    report = recover(source, dest)
    lost = report.lost
    if as_json:
        print(json.dumps({"source": source, "dest": dest, **report.as_dict()}))
    else:
        print(f"{dest}: a new ledger with journal records 1..{report.recovered_seq} "
              f"({report.batches} batches) from {source}")
        if lost is None:
            print("  nothing lost")
        else:
            end = "the journal's unreadable end" if lost[1] is None else str(lost[1])
            print(f"  LOST: journal records {lost[0]}..{end}; terminals re-send their ops "
                  "(see docs/operations.md, 'Salvage')")
        for p in report.problems:
            print("  found:", p)
    return EXIT_OK if lost is None else EXIT_PROBLEMS


@_one_line_errors("backup")
def backup_command(source: str, dest: str) -> int:
    """Write a hot, consistent copy of the ledger at `source` to `dest` (new or empty),
    as `Ledger.backup` does; writers may keep running."""
    bad = _not_a_ledger("backup", source)
    if bad is not None:
        return bad
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        return _fail(f"backup: {dest}: not a new or empty directory", EXIT_USAGE)
    with open_ledger(source, readonly=True) as led:
        led.backup(dest)
        seq = led.journal_seq
    print(f"{dest}: a copy of {source} as of journal_seq {seq} or later; check it with: cardledger verify {dest}")
    return EXIT_OK


@_one_line_errors("disburse")
def disburse_command(path: str, program: int, cycle: str, list_file: str, atomic: bool, report_out: str | None,
                     as_json: bool) -> int:
    """Pay an aid list (`cardledger.aid.disburse`); print the summary. Exit 0 when
    every line is paid or was paid before, 1 when a line failed, conflicts or is bad,
    2 on a bad command line, list header, program or path."""
    from .aid import disburse

    bad = _not_a_ledger("disburse", path)
    if bad is not None:
        return bad
    if not os.path.isfile(list_file):
        return _fail(f"disburse: --file {list_file}: no such file", EXIT_USAGE)
    with open_ledger(path) as led:
        report = disburse(led, program, cycle, list_file, atomic=atomic)
    if report_out:
        report.write_csv(report_out)
    summary = report.summary
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(f"{cycle}: paid {summary['paid']} cards {summary['paid_fen']} fen; already paid "
              f"{summary['already_paid']}; conflicts {summary['conflicts']}; duplicates {summary['duplicates']}; "
              f"bad lines {summary['bad_lines']}; failed {summary['failed'] or 0}; program balance "
              f"{summary['program_balance_before_fen']} -> {summary['program_balance_after_fen']} fen")
    return EXIT_PROBLEMS if report.troubled else EXIT_OK


@_one_line_errors("aid-report")
def aid_report_command(path: str, program: int, cycle: str, as_json: bool) -> int:
    """Print a cycle's totals from the journal (`cardledger.aid.aid_report`)."""
    from .aid import aid_report

    bad = _not_a_ledger("aid-report", path)
    if bad is not None:
        return bad
    with open_ledger(path, readonly=True) as led:
        totals = aid_report(led, program, cycle).as_dict()
    if as_json:
        print(json.dumps(totals, ensure_ascii=False))
    else:
        print(f"{cycle} (program {program}): paid {totals['paid']} ops to {totals['cards_paid']} cards, "
              f"{totals['paid_fen']} fen; failed attempts {totals['failed'] or 0}")
    return EXIT_OK


def _day_range(args: Any) -> tuple[int, int]:
    """[start_us, end_us) of --day (with --tz, --day-start)."""
    from .days import service_day

    return service_day(args.day, args.tz, args.day_start)


def _progress(label: str) -> Any:
    """A progress line redrawn on a terminal; None in a pipe (nothing printed)."""
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(n: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.2:
            last[0] = now
            print(f"\r{label}: {n:,} records", end="", file=sys.stderr, flush=True)

    return show


@_one_line_errors("export")
def export_command(args: Any) -> int:
    """Export journal records (`cardledger.exports`): by --day, --from/--to (event
    time) or --from-seq/--to-seq (journal range)."""
    from .days import to_us
    from .exports import export, select

    bad = _not_a_ledger("export", args.path)
    if bad is not None:
        return bad
    chosen = [x for x in (args.day, args.start, args.from_seq) if x is not None]
    if len(chosen) != 1:
        return _fail("export: give exactly one of --day, --from/--to, --from-seq/--to-seq", EXIT_USAGE)
    start_us = end_us = None
    after, end_seq = 0, None
    if args.day is not None:
        start_us, end_us = _day_range(args)
    elif args.start is not None:
        if args.end is None:
            return _fail("export: --from needs --to", EXIT_USAGE)
        start_us, end_us = (to_us(dt.datetime.fromisoformat(x)) for x in (args.start, args.end))
    else:
        after, end_seq = args.from_seq - 1, (args.to_seq + 1 if args.to_seq is not None else None)
    with open_ledger(args.path, readonly=True) as led:
        source = led.batches(after, end_seq) if start_us is None else led.batches_meeting(start_us, end_us)
        n = export(select(source, start_us, end_us), args.output, args.format, tz=args.tz,
                   progress=_progress(f"export {args.output}"))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"{args.output}: {n:,} journal records ({args.format})")
    return EXIT_OK


@_one_line_errors("match")
def match_command(args: Any) -> int:
    """Match a counterparty's file against the ledger (`cardledger.matching`)."""
    from .matching import match

    bad = _not_a_ledger("match", args.path)
    if bad is not None:
        return bad
    if not os.path.isfile(args.file):
        return _fail(f"match: --file {args.file}: no such file", EXIT_USAGE)
    try:
        kinds = tuple(OpKind[k.strip().upper()] for k in args.kinds.split(",") if k.strip())
    except KeyError as e:
        return _fail(f"match: --kinds: {e.args[0]} is not an op kind", EXIT_USAGE)
    start_us, end_us = _day_range(args)
    with open_ledger(args.path, readonly=True) as led:
        report = match(led.batches_meeting(start_us, end_us), args.file, kinds, start_us, end_us)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        d = report.as_dict()
        print(f"matched {d['matched']}; missing in the ledger {len(d['missing_in_ledger'])}; missing in the file "
              f"{len(d['missing_in_file'])}; mismatched {len(d['mismatched'])}; duplicated in the file "
              f"{len(d['duplicates_in_file'])}; bad lines {len(d['bad_lines'])}")
        for b in d["bad_lines"]:
            print(f"  {args.file}:{b['line']}: {b['error']}")
    return EXIT_OK if report.clean else EXIT_PROBLEMS


@_one_line_errors("settle")
def settle_command(args: Any) -> int:
    """Print a service day's report (`Ledger.day_report`): what was closed if it was,
    else the live settlement; with --close, close it first (`Ledger.close_day`)."""
    bad = _not_a_ledger("settle", args.path)
    if bad is not None:
        return bad
    start_us, end_us = _day_range(args)
    with open_ledger(args.path, readonly=not args.close) as led:
        out = led.close_day(start_us, end_us) if args.close else led.day_report(start_us, end_us)
    out = {"day": args.day, **out}
    if args.json:
        print(json.dumps(out))
    else:
        state = "closed" if out.get("closed") else "open (live figures)"
        accounts = out["accounts"]
        print(f"{args.day} ({args.tz}, from {args.day_start}), {state}: {len(accounts)} accounts, "
              f"posted {sum(a['debits_fen'] for a in accounts)} fen")
        for a in accounts:
            print(f"  {a['account_id']:>20} {a['account_kind']:<9} ops {a['ops']:>8} "
                  f"debits {a['debits_fen']:>14} credits {a['credits_fen']:>14}")
        late = out["late"]
        if late:
            print(f"  late items: {late}")
    return EXIT_OK


@_one_line_errors("query")
def query_command(args: Any) -> int:
    """Print the journal records a query selects (`Ledger.query`) as JSON lines."""
    from .days import iso_times, to_us
    from .schema import JOURNAL_DTYPE

    bad = _not_a_ledger("query", args.path)
    if bad is not None:
        return bad
    try:
        kinds = None if args.kinds is None else [OpKind[k.strip().upper()] for k in args.kinds.split(",") if k.strip()]
    except KeyError as e:
        return _fail(f"query: --kinds: {e.args[0]} is not an op kind", EXIT_USAGE)
    start_us = end_us = None
    if args.day is not None:
        start_us, end_us = _day_range(args)
    if args.start is not None:
        start_us = to_us(dt.datetime.fromisoformat(args.start))
    if args.end is not None:
        end_us = to_us(dt.datetime.fromisoformat(args.end))
    with open_ledger(args.path, readonly=True) as led:
        recs = led.query(start_us, end_us, args.account, kinds, args.user_data, args.limit)
    names = JOURNAL_DTYPE.names
    for rec, t in zip(recs.tolist(), iso_times(recs["time_us"], args.tz)):
        print(json.dumps({**dict(zip(names, rec)), "time": t}))
    return EXIT_OK


@_one_line_errors("policies")
def policies_command(args: Any) -> int:
    """Show the source policies in force (or, with --history, every set installed), or
    install a policy file's set (--install FILE; --uninstall lifts enforcement)."""
    from .policies import load_policies

    bad = _not_a_ledger("policies", args.path)
    if bad is not None:
        return bad
    installing = args.install is not None or args.uninstall
    if installing:
        policies = None if args.uninstall else load_policies(args.install)
        with open_ledger(args.path) as led:
            seq = led.install_policies(policies)
        what = "enforcement lifted" if policies is None else f"{len(policies)} policies installed"
        print(f"{args.path}: {what} at journal_seq {seq}")
        return EXIT_OK
    with open_ledger(args.path, readonly=True) as led:
        if args.history:
            sets = led.policy_history()
        else:
            current = led.policies()
            sets = [{"policies": current}]
    out = [{**h, "policies": None if h["policies"] is None else [p.to_dict() for p in h["policies"]]} for h in sets]
    if args.json:
        print(json.dumps(out if args.history else out[0]["policies"]))
        return EXIT_OK
    for h in out:
        if args.history:
            print(f"journal_seq {h['journal_seq']} time_us {h['time_us']} digest {h['digest']:#018x}:")
        if h["policies"] is None:
            print("  no policies enforced: every source may send any op")
            continue
        if not h["policies"]:
            print("  the empty set: no source may send any op")
        for d in h["policies"]:
            extra = "".join(f" {k}={d[k]}" for k in ("accounts", "counterparties", "amount_max_fen") if d[k] is not None)
            print(f"  sources {d['first_source']}..{d['last_source']}: {','.join(d['kinds']) or '(no kinds)'}{extra}")
    return EXIT_OK


@_one_line_errors("balance")
def balance_command(args: Any) -> int:
    """Print an account's balance, now or as of a time (`Ledger.balance`)."""
    from .days import to_us

    bad = _not_a_ledger("balance", args.path)
    if bad is not None:
        return bad
    as_of = None if args.as_of is None else to_us(dt.datetime.fromisoformat(args.as_of))
    with open_ledger(args.path, readonly=True) as led:
        fen = led.balance(args.account, as_of)
    if args.json:
        print(json.dumps({"account_id": args.account, "as_of": args.as_of, "balance_fen": fen}))
    else:
        print(f"{args.account}: {fen} fen" + (f" as of {args.as_of}" if args.as_of else ""))
    return EXIT_OK


@_one_line_errors("handbook")
def handbook_command(args: Any) -> int:
    """Render the member handbook of an offer catalog (`cardledger.offers.handbook`) to
    --output. A catalog with problems: each problem on a line of its own (file:line:
    column: message) and exit 2; nothing is written."""
    from .fares.errors import PROBLEMS_SHOWN_MAX
    from .offers import OfferCatalog, OfferCatalogError
    from .offers.handbook import render

    fmt = args.format or ("html" if args.output.lower().endswith((".html", ".htm")) else "md")
    try:
        catalog = OfferCatalog.from_toml(args.catalog)
    except OfferCatalogError as e:
        for problem in e.problems[:PROBLEMS_SHOWN_MAX]:
            _fail(f"handbook: {problem}", EXIT_USAGE)
        if len(e.problems) > PROBLEMS_SHOWN_MAX:
            _fail(f"handbook: {args.catalog}: … and {len(e.problems) - PROBLEMS_SHOWN_MAX} more problems", EXIT_USAGE)
        return EXIT_USAGE
    text = render(catalog, fmt)
    try:
        with open(args.output, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
    except OSError as e:
        return _fail(f"handbook: -o {args.output}: cannot write it: {e.strerror or e}", EXIT_USAGE)
    summary = {"catalog": args.catalog, "output": args.output, "format": fmt, "merchants": len(catalog.merchants),
               "offers": len(catalog.offers), "catalog_sha256": catalog.sha256}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(f"{args.output}: the handbook of {len(catalog.offers)} offers at {len(catalog.merchants)} merchants ({fmt})")
    return EXIT_OK


@_one_line_errors("follow")
def follow_command(args: Any) -> int:
    """Print each committed journal record as a JSON line, as it commits."""
    from .days import iso_times
    from .schema import JOURNAL_DTYPE

    bad = _not_a_ledger("follow", args.path)
    if bad is not None:
        return bad
    names = JOURNAL_DTYPE.names
    try:
        with open_ledger(args.path, readonly=True) as led:
            for recs in led.follow(args.after, idle_timeout_s=args.idle_timeout):
                for rec, t in zip(recs.tolist(), iso_times(recs["time_us"], args.tz)):
                    print(json.dumps({**dict(zip(names, rec)), "time": t}), flush=False)
                sys.stdout.flush()
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    """Print one line to stderr and return `code`."""
    print(f"cardledger: {message}", file=sys.stderr)
    return code


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad command line reported as one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _count(low: int, high: int | None = None) -> Any:
    """An argparse type: an int in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"at least {low:,}" if high is None else f"in {low:,}..{high:,}"
            raise argparse.ArgumentTypeError(f"{value:,} is out of range: it must be {bound}")
        return value

    return parse


def _version() -> str:
    try:
        version = importlib.metadata.version("cardledger")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        version = "unknown"
    return f"cardledger {version} ({IMPLEMENTATION} engine)"


def node_command(args: argparse.Namespace) -> int:
    """`cardledger node`: serve one node of a replicated ledger until SIGTERM or SIGINT."""
    import signal
    import threading

    try:
        from .cluster.lease import LEASE_TTL_S_DEFAULT
        from .cluster.node import FOLLOWER, Node  # (the cluster extra: loaded for this command only)
    except ImportError as e:
        return _fail(f"node: the cluster extra is not installed ({e}): pip install -e '.[cluster]'", EXIT_USAGE)
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return _fail(f"node: --listen {args.listen!r}: give HOST:PORT", EXIT_USAGE)
    urls = [u.strip() for u in args.nats.split(",") if u.strip()]
    node = Node(args.path, urls, args.stream, (host, int(port)), name=args.name,
                lease_ttl_s=args.lease_ttl or LEASE_TTL_S_DEFAULT, replicas=args.replicas, restore=args.restore,
                stream_max_bytes=args.stream_max_bytes or -1)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        node.start()
    except Exception as e:
        node.stop()
        return _fail(f"node: cannot start: {type(e).__name__}: {e}", EXIT_UNREADABLE)
    print(f"node {node.name} serving on {node.address} (stream {args.stream})", flush=True)
    every = args.publish_checkpoint_every
    published_at = time.monotonic()
    try:
        while not stop.wait(0.5):
            if every > 0 and time.monotonic() - published_at >= every and node.role == FOLLOWER:
                published_at = time.monotonic()
                try:
                    seq = node.publish_checkpoint()
                    print(f"node {node.name} published a checkpoint at journal_seq {seq}", flush=True)
                except Exception as e:  # the node goes on serving; the next period tries again
                    print(f"cardledger: node: checkpoint not published: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        node.stop()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cardledger` command."""
    parser = _Parser(prog="cardledger", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    d = sub.add_parser("demo", help="walk through a card's life, then a SPEND/TOPUP load, on a temporary ledger")
    d.add_argument("--cards", type=_count(DEMO_CARDS_MIN), default=200_000,
                   help=f"cards to open (default 200,000; at least {DEMO_CARDS_MIN})")
    d.add_argument("--ops", type=_count(0), default=2_000_000, help="SPEND/TOPUP ops in the load phase (default 2,000,000)")
    d.add_argument("--batch", type=_count(1, BATCH_OPS_MAX), default=8_192,
                   help=f"ops per batch in the load phase (default 8,192; at most {BATCH_OPS_MAX:,})")
    d.add_argument("--keep", metavar="DIR",
                   help="write the demo's ledger to DIR (new or empty) and keep it, instead of a temporary one")
    v = sub.add_parser("verify", help="inspect a ledger directory read-only and report every problem "
                                      "(exit 0 clean, 1 problems, 2 not a ledger, 3 unreadable)")
    v.add_argument("path", help="the ledger's directory")
    v.add_argument("--json", action="store_true", help="print the report as one JSON object")
    r = sub.add_parser("recover", help="build a new ledger from the intact prefix of a damaged ledger's journal "
                                       "(exit 0 nothing lost, 1 a range lost, 2 bad arguments, 3 nothing salvageable)")
    r.add_argument("path", help="the damaged ledger's directory (only read)")
    r.add_argument("dest", help="a new or empty directory for the recovered ledger")
    r.add_argument("--json", action="store_true", help="print the report as one JSON object")
    a = sub.add_parser("disburse", help="pay an aid list from a program, each card at most once per cycle "
                                        "(exit 0 all paid, 1 a line failed, 2 bad input)")
    a.add_argument("path", help="the ledger's directory")
    a.add_argument("--program", type=_count(1), required=True, help="the PROGRAM account paying")
    a.add_argument("--cycle", required=True, help='the cycle\'s name, e.g. "2027 春节送温暖"')
    a.add_argument("--file", required=True, help="the list: CSV card_id,amount_fen[,member_ref][,note] (docs/aid.md)")
    a.add_argument("--atomic", action="store_true", help="pay every line or none")
    a.add_argument("--report", metavar="OUT.csv", help="write each line's outcome here")
    a.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    ar = sub.add_parser("aid-report", help="a cycle's totals from the journal: paid and failed")
    ar.add_argument("path", help="the ledger's directory")
    ar.add_argument("--program", type=_count(1), required=True, help="the PROGRAM account")
    ar.add_argument("--cycle", required=True, help="the cycle's name")
    ar.add_argument("--json", action="store_true", help="print the totals as one JSON object")
    e = sub.add_parser("export", help="export journal records as CSV, JSON lines or Parquet")
    e.add_argument("path", help="the ledger's directory")
    e.add_argument("--day", help="a service day YYYY-MM-DD (event time; see --tz, --day-start)")
    e.add_argument("--from", dest="start", metavar="ISO", help="event time from (ISO 8601 with offset)")
    e.add_argument("--to", dest="end", metavar="ISO", help="event time to, excluded")
    e.add_argument("--from-seq", type=_count(1), help="journal_seq from")
    e.add_argument("--to-seq", type=_count(1), help="journal_seq to, included")
    e.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv", help="the file's format (csv)")
    e.add_argument("-o", "--output", required=True, help="the file to write")
    m = sub.add_parser("match", help="match a counterparty's file (user_data,account_id,amount_fen,time) "
                                     "against a service day (exit 0 agree, 1 differences, 2 bad input)")
    m.add_argument("path", help="the ledger's directory")
    m.add_argument("--file", required=True, help="the counterparty's CSV file")
    m.add_argument("--day", required=True, help="the service day YYYY-MM-DD")
    m.add_argument("--kinds", default="TOPUP", help="comma-separated op kinds to match (default TOPUP)")
    m.add_argument("--json", action="store_true", help="print the report as one JSON object")
    st = sub.add_parser("settle", help="per account, a service day's ops and what they posted")
    st.add_argument("path", help="the ledger's directory")
    st.add_argument("--day", required=True, help="the service day YYYY-MM-DD")
    st.add_argument("--close", action="store_true", help="close the day: record its settlement in the journal")
    st.add_argument("--json", action="store_true", help="print the report as one JSON object")
    q = sub.add_parser("query", help="print successful ops' journal records by time, account, kinds, user_data")
    q.add_argument("path", help="the ledger's directory")
    q.add_argument("--day", help="a service day YYYY-MM-DD")
    q.add_argument("--from", dest="start", metavar="ISO", help="event time from (ISO 8601 with offset)")
    q.add_argument("--to", dest="end", metavar="ISO", help="event time to, excluded")
    q.add_argument("--account", type=_count(1), help="an account the op moved money of or acted on")
    q.add_argument("--kinds", help="comma-separated op kinds")
    q.add_argument("--user-data", type=_count(1), help="the ops' user_data")
    q.add_argument("--limit", type=_count(0), help="at most this many records")
    po = sub.add_parser("policies", help="show the source policies in force, their history, or install a "
                                         "policy file (docs/policies.md)")
    po.add_argument("path", help="the ledger's directory")
    po_mode = po.add_mutually_exclusive_group()
    po_mode.add_argument("--install", metavar="FILE", help="install the policies of this TOML file")
    po_mode.add_argument("--uninstall", action="store_true", help="lift enforcement (install None)")
    po_mode.add_argument("--history", action="store_true", help="every set installed, oldest first")
    po.add_argument("--json", action="store_true", help="print JSON")
    bal = sub.add_parser("balance", help="an account's balance, now or --as-of a time")
    bal.add_argument("path", help="the ledger's directory")
    bal.add_argument("--account", type=_count(1), required=True, help="the account")
    bal.add_argument("--as-of", help="the balance from records before this time (ISO 8601 with offset)")
    bal.add_argument("--json", action="store_true", help="print one JSON object")
    f = sub.add_parser("follow", help="print each journal record as it commits, as JSON lines")
    f.add_argument("path", help="the ledger's directory")
    f.add_argument("--after", type=_count(0), default=0, help="the last journal_seq already handled (default 0)")
    f.add_argument("--idle-timeout", type=float, default=None, help="stop after this many seconds without a commit")
    for sp in (e, m, f, st, q):
        sp.add_argument("--tz", default="Asia/Shanghai", help="the service time zone (default Asia/Shanghai)")
        sp.add_argument("--day-start", default="00:00", help="local time a service day starts (default 00:00)")
    k = sub.add_parser("backup", help="write a hot, consistent copy of a ledger (writers may keep running)")
    k.add_argument("path", help="the ledger's directory")
    k.add_argument("dest", help="a new or empty directory for the copy")
    n = sub.add_parser("node", help="run a node of a replicated ledger (the cluster extra; see docs/cluster.md)")
    n.add_argument("path", help="this node's own ledger directory (created if missing)")
    n.add_argument("--nats", required=True, metavar="URL[,URL...]", help="the NATS servers, comma-separated")
    n.add_argument("--stream", required=True, help="the JetStream stream holding the journal (created if missing)")
    n.add_argument("--listen", required=True, metavar="HOST:PORT", help="the gateway's address (port 0: any free)")
    n.add_argument("--name", default=None, help="this node's name (default: host-pid)")
    n.add_argument("--lease-ttl", type=float, default=None, metavar="S", help="the write lease's length in seconds (default 2)")
    n.add_argument("--replicas", type=_count(1, 5), default=3, help="stream replicas when creating it (default 3)")
    n.add_argument("--stream-max-bytes", type=_count(1), default=None, metavar="N",
                   help="the stream's retention in bytes when this node creates it (default: keep everything)")
    n.add_argument("--restore", action="store_true",
                   help="if PATH holds no ledger, start from the latest checkpoint a node published")
    n.add_argument("--publish-checkpoint-every", type=float, default=0, metavar="S",
                   help="while a follower, publish a checkpoint for restores every S seconds (default: never)")
    h = sub.add_parser("handbook", help="render the member handbook (优惠服务手册) of an offer catalog "
                                        "(exit 0 written, 2 a catalog with problems or bad arguments)")
    h.add_argument("catalog", help="the offer catalog, a TOML file (docs/offers.md)")
    h.add_argument("--format", choices=("md", "html"), default=None,
                   help="Markdown or a self-contained HTML page (default: html for an -o ending in .html, else md)")
    h.add_argument("-o", "--output", required=True, help="the file to write (UTF-8)")
    h.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    from .benchmark import runner  # (the harness is large: loaded for this command only)

    b = sub.add_parser("bench", help="replay the Harbin peak (or --mix, --tigerbeetle) through the core and the baselines")
    runner.add_arguments(b)
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.keep is not None and os.path.exists(args.keep) and (
                not os.path.isdir(args.keep) or os.listdir(args.keep)):
            return _fail(f"demo: --keep {args.keep}: not a new or empty directory; the demo writes demo money, "
                         "so it never writes into an existing ledger", EXIT_USAGE)
        return demo(args.cards, args.ops, args.batch, args.keep)
    if args.command == "bench":
        return runner.dispatch(args)
    if args.command == "recover":
        return recover_command(args.path, args.dest, args.json)
    if args.command == "backup":
        return backup_command(args.path, args.dest)
    if args.command == "export":
        return export_command(args)
    if args.command == "match":
        return match_command(args)
    if args.command == "follow":
        return follow_command(args)
    if args.command == "settle":
        return settle_command(args)
    if args.command == "query":
        return query_command(args)
    if args.command == "balance":
        return balance_command(args)
    if args.command == "policies":
        return policies_command(args)
    if args.command == "disburse":
        return disburse_command(args.path, args.program, args.cycle, args.file, args.atomic, args.report, args.json)
    if args.command == "aid-report":
        return aid_report_command(args.path, args.program, args.cycle, args.json)
    if args.command == "node":
        return node_command(args)
    if args.command == "handbook":
        return handbook_command(args)
    return verify(args.path, args.json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
