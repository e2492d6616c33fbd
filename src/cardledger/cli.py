"""The `cardledger` command: `bench` (the city scenario), `demo` and `verify`.

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
import shutil
import sys
import tempfile
import time

import numpy as np

from . import IMPLEMENTATION, AccountKind, OpFlags, OpKind, Result, new_ops
from . import open as open_ledger

CLEARING_BANK = 1
MERCHANT = 2
OPERATOR_METRO = 3
PROGRAM_AID = 4
CARD_BASE = 100_000_000
T0_US = 1_767_225_600_000_000  # 2026-01-01 00:00 UTC


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
        with open_ledger(path) as led:
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


def verify(path: str) -> int:
    """Verify the ledger at `path` (opened readonly); return the process exit code."""
    with open_ledger(path, readonly=True) as led:
        report = led.verify()
    print(f"{path}: {'ok' if report.ok else 'FAILED'} ({report.batches} batches, {report.records} records)")
    for p in report.problems:
        print("  problem:", p)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cardledger` command."""
    parser = argparse.ArgumentParser(prog="cardledger", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the main job on a temporary ledger")
    d.add_argument("--cards", type=int, default=200_000)
    d.add_argument("--ops", type=int, default=2_000_000, help="SPEND/TOPUP ops in the load phase")
    d.add_argument("--batch", type=int, default=8_192)
    d.add_argument("--keep", metavar="DIR", help="write the ledger to DIR and keep it")
    v = sub.add_parser("verify", help="verify a ledger directory")
    v.add_argument("path")
    from .benchmark import runner

    b = sub.add_parser("bench", help="replay the Harbin peak (or --mix, --tigerbeetle) through the core and the baselines")
    runner.add_arguments(b)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.cards, args.ops, args.batch, args.keep)
    if args.command == "bench":
        return runner.dispatch(args)
    return verify(args.path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
