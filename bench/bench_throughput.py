#!/usr/bin/env python
"""Durable throughput of the core against the two baselines, on the same ops, in one run.

    python bench/bench_throughput.py --cards 1000000 --ops 4000000 --batch 8192 \\
        [--engines core,core-submit,sqlite,lmdb] [--baseline-ops 500000] [--json report.json]

Each engine gets a fresh temporary directory, the same setup (OPEN of every account
plus one initial TOPUP per card, not timed) and then the same "SPEND/TOPUP mix" batches
(see workload.py), each applied with one `apply` call that returns only after its
commit is durable. ops/s = ops applied / time spent inside `apply`.

`core-submit` is the core driven through `Ledger.submit` instead: the same batches in
the same order, each durable before its future resolves, with up to
PIPELINE_BATCHES_MAX in flight so a batch's kernel overlaps the previous commit. Its
ops/s = ops / wall time of the phase; a batch's latency runs from `submit` until its
future resolved.

The baselines are Python loops and slow, so they run only the first --baseline-ops ops
(rounded up to whole batches): the "prefix". The core runs the prefix, stops the clock
while its balances are sampled, then runs the rest. The ratios compare the core and a
baseline on the prefix (same ops, same starting state); the core's full-run rate is
reported beside them. Correctness checks, on the prefix: every engine reports the same
result-code counts and money moved, and the same balances for a sample of accounts
(--check-all: every account, plus the double-entry total of zero).

Exit status: 0 all good; 1 a check failed; 3 an engine asked for could not be opened.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from anywhere

import workload  # noqa: E402
from _schema import RESULT_DTYPE, SCHEMA_ORIGIN, Result  # noqa: E402
from baselines import NaiveLmdbLedger, SqliteLedger  # noqa: E402

ENGINES = ("core", "core-submit", "sqlite", "lmdb")
#: Engines driven through Ledger.submit (pipelined) rather than apply.
PIPELINED = ("core-submit",)
BASELINES = ("sqlite", "lmdb")
EXIT_OK, EXIT_CHECK_FAILED, EXIT_ENGINE_UNAVAILABLE = 0, 1, 3
_CODE_COUNT = max(int(r) for r in Result) + 1
#: Mismatching accounts listed in the report (the count is always given).
_MISMATCHES_SHOWN = 10


class EngineUnavailable(Exception):
    """An engine asked for cannot be opened; the message says what to do."""


@dataclass
class Phase:
    """What one engine did over a run of batches: time, batch latencies, outcomes."""

    ops: int = 0
    apply_ns: int = 0
    batch_ns: list[int] = field(default_factory=list)
    codes: np.ndarray = field(default_factory=lambda: np.zeros(_CODE_COUNT, dtype=np.int64))
    moved_fen: int = 0

    def add(self, n_ops: int, elapsed_ns: int, results: np.ndarray) -> None:
        """Account for one applied batch of `n_ops` ops that took `elapsed_ns`."""
        self.ops += n_ops
        self.apply_ns += elapsed_ns
        self.batch_ns.append(elapsed_ns)
        self.codes += np.bincount(results["code"], minlength=_CODE_COUNT)[:_CODE_COUNT]
        self.moved_fen += int(results["amount_fen"].sum())

    def merged(self, other: Phase) -> Phase:
        """Return this phase followed by `other`, as one."""
        return Phase(
            ops=self.ops + other.ops,
            apply_ns=self.apply_ns + other.apply_ns,
            batch_ns=self.batch_ns + other.batch_ns,
            codes=self.codes + other.codes,
            moved_fen=self.moved_fen + other.moved_fen,
        )

    def summary(self) -> dict[str, Any]:
        """Return the phase as JSON-ready figures (rates in ops/s, latencies in ms)."""
        seconds = self.apply_ns / 1e9
        lat_ms = np.array(self.batch_ns, dtype=np.float64) / 1e6
        return {
            "ops": self.ops,
            "batches": len(self.batch_ns),
            "seconds": round(seconds, 6),
            "ops_per_s": round(self.ops / seconds, 1) if seconds > 0 else None,
            "batch_ms_p50": round(float(np.percentile(lat_ms, 50)), 3) if len(lat_ms) else None,
            "batch_ms_p99": round(float(np.percentile(lat_ms, 99)), 3) if len(lat_ms) else None,
            "batch_ms_max": round(float(lat_ms.max()), 3) if len(lat_ms) else None,
            "result_codes": {Result(i).name: int(c) for i, c in enumerate(self.codes) if c},
            "moved_fen": self.moved_fen,
        }


@dataclass
class EngineRun:
    """Everything measured for one engine."""

    name: str
    info: dict[str, Any]
    setup_seconds: float = 0.0
    prefix: Phase = field(default_factory=Phase)
    rest: Phase | None = None  # only the core runs past the prefix
    prefix_balances: dict[int, int] | None = None  # None: the engine has no balance()
    total_fen: int | None = None  # sum of all balances, when computed
    disk_bytes: int = 0


# ---------------------------------------------------------------------------
# Opening engines
# ---------------------------------------------------------------------------


def open_core(path: str) -> tuple[Any, dict[str, Any]]:
    """Open the core ledger in `path`; raise EngineUnavailable with a fix if we cannot."""
    try:
        import cardledger
    except Exception as exc:  # ImportError, or any error raised while the package imports
        raise EngineUnavailable(
            f"core: cannot import cardledger ({type(exc).__name__}: {exc}). Build and install "
            "it (pip install -e . from the repository root), or leave it out: --engines sqlite,lmdb"
        ) from exc
    opener = getattr(cardledger, "open", None)
    if opener is None:
        raise EngineUnavailable(f"core: {cardledger.__file__} has no open(); the API is not there yet")
    implementation = str(getattr(cardledger, "IMPLEMENTATION", "unknown"))
    ledger = opener(path)
    return ledger, {
        "module": cardledger.__file__,
        "implementation": implementation,
        "durability": "cardledger.open() defaults",
    }


def open_engine(name: str, path: str) -> tuple[Any, dict[str, Any]]:
    """Open engine `name` (one of ENGINES) in directory `path`; return (ledger, info)."""
    if name in ("core", "core-submit"):
        return open_core(path)
    if name == "sqlite":
        info: dict[str, Any] = {"sqlite": sqlite3.sqlite_version, "durability": "WAL, synchronous=FULL, cache_size 256 MiB"}
        return SqliteLedger(path), info
    if name == "lmdb":
        info = {"lmdb": ".".join(map(str, lmdb.version())), "durability": "sync=True, metasync=True"}
        return NaiveLmdbLedger(path), info
    raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")


def balance_reader(ledger: Any) -> Callable[[int], int] | None:
    """Return a function account_id -> balance fen for `ledger`, or None if it has none."""
    balance = getattr(ledger, "balance", None)
    if balance is None:
        return None
    return lambda account_id: int(balance(account_id))


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def apply_checked(ledger: Any, batch: np.ndarray) -> tuple[int, np.ndarray]:
    """Apply one batch; return (elapsed ns inside apply, results). Validates the results."""
    start = time.perf_counter_ns()
    results = ledger.apply(batch)
    elapsed = time.perf_counter_ns() - start
    results = np.asarray(results)
    if results.dtype != RESULT_DTYPE or results.shape != batch.shape:
        raise RuntimeError(
            f"apply returned {results.dtype} {results.shape}, expected RESULT_DTYPE {batch.shape}"
        )
    return elapsed, results


def run_phase_pipelined(ledger: Any, batches: Sequence[np.ndarray], label: str) -> Phase:
    """Submit `batches` in order, keeping the pipeline full; return the
    phase's figures (time: the phase's wall clock; latency: submit to resolution)."""
    from cardledger.commit.pipeline import SubmitWindow

    phase = Phase()
    report_every = max(1, len(batches) // 10)

    def finished(n_ops: int, results: Any, seconds: float) -> None:
        results = np.asarray(results)
        if results.dtype != RESULT_DTYPE or results.shape != (n_ops,):
            raise RuntimeError(f"submit resolved to {results.dtype} {results.shape}, expected RESULT_DTYPE ({n_ops},)")
        phase.add(n_ops, int(seconds * 1e9), results)

    window = SubmitWindow(ledger, finished)
    start = time.perf_counter_ns()
    for i, batch in enumerate(batches, 1):
        window.submit(batch, len(batch))
        if i % report_every == 0 or i == len(batches):
            rate = phase.ops / ((time.perf_counter_ns() - start) / 1e9)
            log(f"  {label}: {i}/{len(batches)} batches submitted, {phase.ops:,} ops durable, {rate:,.0f} ops/s")
    window.drain()
    phase.apply_ns = time.perf_counter_ns() - start
    return phase


def run_phase(ledger: Any, batches: Sequence[np.ndarray], label: str, pipelined: bool = False) -> Phase:
    """Apply `batches` in order, timing each apply call; return the phase's figures."""
    if pipelined:
        return run_phase_pipelined(ledger, batches, label)
    phase = Phase()
    report_every = max(1, len(batches) // 10)
    for i, batch in enumerate(batches, 1):
        elapsed, results = apply_checked(ledger, batch)
        phase.add(len(batch), elapsed, results)
        if i % report_every == 0 or i == len(batches):
            rate = phase.ops / (phase.apply_ns / 1e9) if phase.apply_ns else 0.0
            log(f"  {label}: {i}/{len(batches)} batches, {phase.ops:,} ops, {rate:,.0f} ops/s")
    return phase


def run_setup(ledger: Any, batches: Sequence[np.ndarray], label: str) -> float:
    """Apply the setup batches (not part of the measurement); return wall seconds."""
    start = time.perf_counter()
    for batch in batches:
        _, results = apply_checked(ledger, batch)
        bad = results["code"] != Result.OK
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise RuntimeError(
                f"{label}: setup op {batch[i]} failed with {Result(int(results['code'][i])).name}"
            )
    seconds = time.perf_counter() - start
    log(f"  {label}: setup {sum(len(b) for b in batches):,} ops in {seconds:.1f} s")
    return seconds


def read_balances(reader: Callable[[int], int], account_ids: Sequence[int]) -> dict[int, int]:
    """Return {account_id: balance fen} for `account_ids`."""
    return {aid: reader(aid) for aid in account_ids}


def disk_usage_bytes(path: str) -> int:
    """Return the bytes actually allocated under `path` (sparse files count what they use;
    an LMDB data file at most up to its last page: the ledger writes zeros ahead of it)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            used = os.stat(os.path.join(root, name)).st_blocks * 512
            if name == "data.mdb":
                used = min(used, lmdb_pages_bytes(root))
            total += used
    return total


def lmdb_pages_bytes(path: str) -> int:
    """Bytes of the LMDB data file in `path` up to its last page (`cardledger.store.datafile.
    lmdb_used_bytes`, which this script cannot import when it runs the baselines alone)."""
    env = lmdb.open(path, max_dbs=16, readonly=True, lock=False)
    try:
        return (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    finally:
        env.close()


def run_engine(
    name: str,
    setup: Sequence[np.ndarray],
    prefix: Sequence[np.ndarray],
    rest: Sequence[np.ndarray],
    sample_ids: Sequence[int],
    all_ids: Sequence[int] | None,
    tmp_base: str | None,
) -> EngineRun:
    """Run one engine in a fresh temporary directory; the baselines stop after the prefix."""
    with tempfile.TemporaryDirectory(prefix=f"cardledger-bench-{name}-", dir=tmp_base) as path:
        ledger, info = open_engine(name, path)
        run = EngineRun(name=name, info=info)
        try:
            log(f"{name}: {info}")
            run.setup_seconds = run_setup(ledger, setup, name)
            run.prefix = run_phase(ledger, prefix, f"{name} prefix", name in PIPELINED)
            reader = balance_reader(ledger)
            if reader is not None:
                run.prefix_balances = read_balances(reader, all_ids if all_ids is not None else sample_ids)
                if all_ids is not None:
                    run.total_fen = sum(run.prefix_balances.values())
            else:
                log(f"  {name}: no balance() method: balance checks skipped for it")
            if name not in BASELINES and rest:
                run.rest = run_phase(ledger, rest, f"{name} rest", name in PIPELINED)
        finally:
            close = getattr(ledger, "close", None)
            if close is not None:
                close()
        run.disk_bytes = disk_usage_bytes(path)
    return run


# ---------------------------------------------------------------------------
# Checks and report
# ---------------------------------------------------------------------------


def compare_runs(runs: Sequence[EngineRun], sample_ids: Sequence[int]) -> dict[str, Any]:
    """Compare every engine with the first one on the prefix; return the checks' verdicts."""
    checks: dict[str, Any] = {"reference_engine": runs[0].name if runs else None, "failures": []}
    if not runs:
        return checks
    ref = runs[0]
    for run in runs[1:]:
        if not np.array_equal(run.prefix.codes, ref.prefix.codes):
            checks["failures"].append(
                f"{run.name} result codes {run.prefix.summary()['result_codes']} != "
                f"{ref.name} {ref.prefix.summary()['result_codes']}"
            )
        if run.prefix.moved_fen != ref.prefix.moved_fen:
            checks["failures"].append(
                f"{run.name} moved {run.prefix.moved_fen} fen != {ref.name} {ref.prefix.moved_fen}"
            )
    with_balances = [r for r in runs if r.prefix_balances is not None]
    checks["balances_compared"] = [r.name for r in with_balances]
    if with_balances:
        base = with_balances[0]
        assert base.prefix_balances is not None
        ids = list(base.prefix_balances)
        checks["accounts_compared"] = len(ids)
        checks["sample_sum_fen"] = {
            r.name: sum((r.prefix_balances or {})[aid] for aid in sample_ids) for r in with_balances
        }
        for run in with_balances[1:]:
            assert run.prefix_balances is not None
            differ = [aid for aid in ids if run.prefix_balances[aid] != base.prefix_balances[aid]]
            if differ:
                shown = {
                    aid: (base.prefix_balances[aid], run.prefix_balances[aid])
                    for aid in differ[:_MISMATCHES_SHOWN]
                }
                checks["failures"].append(
                    f"{len(differ)} balances differ between {base.name} and {run.name}, "
                    f"e.g. {{id: ({base.name}, {run.name})}} {shown}"
                )
        sums = set(checks["sample_sum_fen"].values())
        if len(sums) > 1:
            checks["failures"].append(f"sample sums differ: {checks['sample_sum_fen']}")
    totals = {r.name: r.total_fen for r in runs if r.total_fen is not None}
    if totals:
        checks["total_fen"] = totals
        for name, total in totals.items():
            if total != 0:
                checks["failures"].append(f"{name}: balances sum to {total} fen, not 0 (double entry)")
    checks["ok"] = not checks["failures"]
    return checks


def git_revision() -> str | None:
    """Return the repository's HEAD commit (with '+dirty' if modified), or None."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Return what the figures depend on: versions, machine, where the schema came from."""
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "lmdb": lmdb.__version__,
        "lmdb_library": ".".join(map(str, lmdb.version())),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "schema": SCHEMA_ORIGIN,
        "git": git_revision(),
    }


def engine_label(run: EngineRun) -> str:
    """The engine's name in tables; flags a 'core' that is really the pure-Python reference."""
    impl = run.info.get("implementation")
    if run.name in ("core", "core-submit") and impl not in (None, "cython"):
        return f"core[{impl}]"
    return run.name


def print_report(report: dict[str, Any], runs: Sequence[EngineRun]) -> None:
    """Print the human-readable table, ratios and checks to stdout."""
    cfg = report["config"]
    print(
        f"\nSPEND/TOPUP mix: {cfg['cards']:,} cards, {cfg['ops']:,} ops, batch {cfg['batch']:,}, "
        f"seed {cfg['seed']}; durable commit per batch; setup not timed"
    )
    print(
        f"baselines ran the first {cfg['prefix_ops']:,} ops (--baseline-ops {cfg['baseline_ops']:,} "
        "rounded up to whole batches); their ops/s are over what they ran\n"
    )
    header = f"{'engine':<16}{'ops':>12}{'seconds':>10}{'ops/s':>13}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'setup s':>9}{'disk MiB':>10}"
    print(header)
    print("-" * len(header))
    for run in runs:
        rows = [(engine_label(run), run.prefix)]
        if run.rest is not None:
            rows = [
                (engine_label(run) + " all", run.prefix.merged(run.rest)),
                ("  on prefix", run.prefix),
            ]
        for i, (label, phase) in enumerate(rows):
            s = phase.summary()
            extra = f"{run.setup_seconds:>9.1f}{run.disk_bytes / 2**20:>10.1f}" if i == 0 else ""
            print(
                f"{label:<16}{s['ops']:>12,}{s['seconds']:>10.2f}{(s['ops_per_s'] or 0):>13,.0f}"
                f"{(s['batch_ms_p50'] or 0):>9.2f}{(s['batch_ms_p99'] or 0):>9.2f}{(s['batch_ms_max'] or 0):>9.2f}{extra}"
            )
    if report["ratios"]:
        print()
        for key, value in report["ratios"].items():
            print(f"{key:<40}{value:>10.1f}x")
    checks = report["checks"]
    print()
    if checks.get("balances_compared"):
        print(
            f"checked on the prefix: result codes and money moved of {', '.join(r.name for r in runs)}; "
            f"balances of {checks.get('accounts_compared', 0):,} accounts of {', '.join(checks['balances_compared'])}"
        )
        print(f"sample sums (fen): {checks.get('sample_sum_fen')}")
    if "total_fen" in checks:
        print(f"double-entry totals (fen): {checks['total_fen']}")
    for failure in checks["failures"]:
        print(f"CHECK FAILED: {failure}")
    if checks.get("ok"):
        print("checks: OK")
    for name, reason in report["unavailable"].items():
        print(f"NOT RUN: {name}: {reason}")
    for warning in report["warnings"]:
        print(f"WARNING: {warning}")


def ratios(runs: Sequence[EngineRun]) -> dict[str, float]:
    """Return core/baseline throughput ratios on the same prefix (and full runs vs
    prefix), for the core driven by apply and by submit."""
    by_name = {r.name: r for r in runs}
    out: dict[str, float] = {}
    for core_name in ("core", "core-submit"):
        core = by_name.get(core_name)
        if core is None:
            continue
        core_prefix = core.prefix.summary()["ops_per_s"]
        core_all = core.prefix.merged(core.rest).summary()["ops_per_s"] if core.rest else core_prefix
        for name in BASELINES:
            base = by_name.get(name)
            base_rate = base.prefix.summary()["ops_per_s"] if base else None
            if base_rate and core_prefix:
                out[f"{core_name}/{name} (same prefix ops)"] = core_prefix / base_rate
                if core.rest:
                    out[f"{core_name} all ops / {name} prefix"] = core_all / base_rate
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cards", type=int, default=1_000_000, help="number of cards (default 1,000,000)")
    p.add_argument("--ops", type=int, default=4_000_000, help="mix ops the core runs (default 4,000,000)")
    p.add_argument("--batch", type=int, default=8192, help="ops per apply call (default 8192)")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of core,core-submit,sqlite,lmdb")
    p.add_argument(
        "--baseline-ops", type=int, default=500_000, help="mix ops the baselines run (default 500,000)"
    )
    p.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    p.add_argument("--sample", type=int, default=10_000, help="cards whose balances are compared")
    p.add_argument("--check-all", action="store_true", help="compare every account and check the total is 0")
    p.add_argument("--setup-batch", type=int, default=workload.SETUP_BATCH_OPS_DEFAULT, help="ops per setup batch")
    p.add_argument("--tmpdir", default=None, help="where the temporary ledgers go (default: the system's)")
    p.add_argument("--json", metavar="PATH", default=None, help="write the full report as JSON here")
    args = p.parse_args(argv)
    names = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in names if e not in ENGINES]
    if unknown or not names or len(set(names)) != len(names):
        p.error(f"--engines: give distinct names from {', '.join(ENGINES)}, got {args.engines!r}")
    args.engines = names
    for flag in ("cards", "ops", "batch", "baseline_ops", "setup_batch"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    if args.sample < 0:
        p.error("--sample must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)

    t0 = time.perf_counter()
    setup = workload.make_setup(args.cards, args.seed, args.setup_batch)
    batches = list(workload.make_mix(args.cards, args.ops, args.batch, args.seed))
    log(f"workload: {args.ops:,} mix ops in {len(batches):,} batches built in {time.perf_counter() - t0:.1f} s")
    prefix_batches = -(-args.baseline_ops // args.batch)
    prefix, rest = batches[:prefix_batches], batches[prefix_batches:]
    prefix_ops = sum(len(b) for b in prefix)

    rng = np.random.default_rng([args.seed, 99])
    cards = workload.card_ids(args.cards)
    sampled = np.sort(rng.choice(cards, size=min(args.sample, args.cards), replace=False))
    sample_ids = [workload.CLEARING_ID, workload.MERCHANT_ID, *sampled.tolist()]
    all_ids = [workload.CLEARING_ID, workload.MERCHANT_ID, *cards.tolist()] if args.check_all else None

    runs: list[EngineRun] = []
    unavailable: dict[str, str] = {}
    warnings: list[str] = []
    for name in args.engines:
        try:
            run = run_engine(name, setup, prefix, rest, sample_ids, all_ids, args.tmpdir)
        except EngineUnavailable as exc:
            log(f"{name}: NOT RUN: {exc}")
            unavailable[name] = str(exc)
            continue
        runs.append(run)
        if name == "core" and run.info.get("implementation") != "cython":
            warnings.append(
                f"cardledger.IMPLEMENTATION is {run.info.get('implementation')!r}: 'core' measured the "
                "pure-Python reference engine, not the Cython core (build the extension)"
            )

    checks = compare_runs(runs, sample_ids)
    report: dict[str, Any] = {
        "benchmark": "bench_throughput: SPEND/TOPUP mix, durable apply per batch",
        "started_utc": started.isoformat(timespec="seconds"),
        "config": {
            "cards": args.cards,
            "ops": args.ops,
            "batch": args.batch,
            "seed": args.seed,
            "engines": args.engines,
            "baseline_ops": args.baseline_ops,
            "prefix_ops": prefix_ops,
            "setup_ops": sum(len(b) for b in setup),
            "setup_batch": args.setup_batch,
            "sample_cards": len(sample_ids) - 2,
            "check_all": args.check_all,
            "tmpdir": args.tmpdir or tempfile.gettempdir(),
        },
        "environment": environment(),
        "engines": {},
        "ratios": ratios(runs),
        "checks": checks,
        "unavailable": unavailable,
        "warnings": warnings,
    }
    for run in runs:
        entry: dict[str, Any] = {
            "label": engine_label(run),
            "info": run.info,
            "setup_seconds": round(run.setup_seconds, 3),
            "disk_bytes": run.disk_bytes,
            "prefix": run.prefix.summary(),
        }
        if run.rest is not None:
            entry["rest"] = run.rest.summary()
            entry["all"] = run.prefix.merged(run.rest).summary()
        report["engines"][run.name] = entry

    print_report(report, runs)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        log(f"report written to {args.json}")
    if not checks.get("ok", True):
        return EXIT_CHECK_FAILED
    if unavailable:
        return EXIT_ENGINE_UNAVAILABLE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
