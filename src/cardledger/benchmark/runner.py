"""`cardledger bench`: replay the Harbin scenario through every engine, in one run.

The scenario (`scenario.py`) is generated once per (cards, seed) and written as
msgpack batch files; each engine then replays those same bytes in its own child
process (so each one's peak RSS is its own):

- `core`: `cardledger.open(engine="cython")`, the product;
- `reference`: `cardledger.open(engine="python")`, the pure-Python reference engine;
- `sqlite`, `lmdb`: the baselines of `baselines.py` (read-modify-write per op, fares
  rated by the pure-Python evaluator).

The ledger engines take a checkpoint and reserve their cards' fare state
(`Ledger.reserve_journeys`) between the setup and the peak (untimed), as a ledger that
ran overnight meets the morning: checkpointed, with yesterday's fare state in memory.

Each child reports: setup time, the peak phase's ops/s, batch latency p50/p99,
peak RSS, bytes on disk per op, and digests of its results and final balances.
The parent checks that every engine ends with the same balances (and the same
results), prints the ratios of every engine to the core, writes a JSON report and,
if matplotlib is installed (`pip install 'cardledger[plot]'`), a PNG chart.

`--tigerbeetle ACCOUNTS` instead runs the workload of `tigerbeetle benchmark`:
ACCOUNTS accounts, `--transfers` transfers with time-ordered ids between uniformly
drawn accounts, batches of 8,189, amounts uniform in 1..20,000 (mean ~10,000), as
raw TRANSFER ops between CLEARING accounts (which, like TigerBeetle's default
accounts, have no balance limit) through the core: pipelined through
`Ledger.submit` (the next batch runs while the previous one commits, each durable
before its future resolves, as TigerBeetle pipelines its own), or with
`--no-pipeline` one `Ledger.apply` at a time. The ops are generated before the clock
starts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from ..store import datafile as storage
from ..schema import OP_DTYPE, AccountKind, OpKind, Result
from ..commit.pipeline import SubmitWindow
from . import scenario

ENGINES = ("core", "reference", "sqlite", "lmdb")
#: Engines that may be asked for besides ENGINES: the core replaying through
#: `Ledger.submit` (pipelined: each batch's kernel overlaps the previous commit).
EXTRA_ENGINES = ("core-submit",)
TB_BATCH = 8189
#: The city `cardledger bench` generates when neither --cards/--seed nor an existing
#: --scenario-dir says otherwise.
CITY_CARDS_DEFAULT = 1_000_000
CITY_SEED_DEFAULT = 20261123
#: Exit status of a command line that asks for something inconsistent.
EXIT_USAGE = 2
#: TigerBeetle 0.17.9, single replica, io_uring, measured on this machine (transfers/s).
TB_MEASURED = {10_000: (277_000, 393_000), 1_000_000: (161_000, 178_000)}


def _progress(label: str, done: int, total: int, started: float) -> None:
    if not sys.stderr.isatty() and done not in (total,) and done % max(1, total // 10):
        return
    rate = done / max(time.perf_counter() - started, 1e-9)
    bar = "#" * int(30 * done / max(total, 1))
    sys.stderr.write(f"\r  {label:<10} [{bar:<30}] {done}/{total} batches, {rate:,.0f} batches/s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _open_engine(name: str, path: str) -> Any:
    if name in ("core", "reference", "core-submit"):
        from .. import open as open_ledger
        from ..fares.system import FareSystem

        led = open_ledger(path, engine="python" if name == "reference" else "cython")
        # The first tap would install this same default; doing it here keeps loading
        # the fare system out of the timed replay, as the baselines get it compiled.
        led.install_fares(FareSystem.harbin(), 0)
        return led
    from ..fares.system import FareSystem
    from ..fares.taptables import compile_taps
    from .baselines import LmdbBaseline, SqliteBaseline

    versions = [compile_taps(FareSystem.harbin(), 0)]
    return (SqliteBaseline if name == "sqlite" else LmdbBaseline)(path, versions)


def _balances(name: str, led: Any) -> np.ndarray:
    if name in ("core", "reference", "core-submit"):
        acc = np.sort(led.accounts(), order="id")
        return np.array(list(zip(acc["id"], acc["cash_fen"], acc["subsidy_fen"])),
                        dtype=[("id", "<u8"), ("cash_fen", "<i8"), ("subsidy_fen", "<i8")])  # fmt: skip
    return led.balances()


def run_child(engine: str, scenario_dir: str, work_dir: str) -> dict:
    """Replay the scenario through one engine (in this process); return its metrics."""
    manifest, batches = scenario.read(scenario_dir)
    path = os.path.join(work_dir, engine)
    shutil.rmtree(path, ignore_errors=True)
    led = _open_engine(engine, path)
    total = manifest["batches"]
    setup_n = manifest["setup_batches"]
    results_hash = hashlib.sha256()
    codes = np.zeros(64, dtype=np.int64)
    latencies: list[float] = []
    peak_ops = 0
    peak_taps = 0
    started = time.perf_counter()
    setup_s = 0.0
    peak_t0 = started
    def account(i: int, ops: np.ndarray, r: np.ndarray, seconds: float) -> None:
        nonlocal peak_ops, peak_taps
        if i >= setup_n:
            latencies.append(seconds)
            peak_ops += len(ops)
            peak_taps += int((ops["kind"] == OpKind.TAP).sum())
        results_hash.update(np.ascontiguousarray(r[["code", "discounts", "amount_fen", "balance_fen"]]).tobytes())
        codes[:] += np.bincount(r["code"], minlength=64)
        _progress(engine, i + 1, total, started)

    window = SubmitWindow(led, lambda tag, r, seconds: account(*tag, r, seconds))  # core-submit

    for i, ops in enumerate(batches):
        if i == setup_n:
            window.drain()
            if hasattr(led, "checkpoint"):
                # A ledger meets the peak checkpointed (the night's opens and top-ups are
                # not still waiting in memory to be flushed by the first peak batches),
                # with room for its cards' fare state (as yesterday's taps would have left).
                led.checkpoint()
                led.reserve_journeys()
            setup_s = time.perf_counter() - started
            peak_t0 = time.perf_counter()
        t0 = time.perf_counter()
        if engine == "core-submit":
            window.submit(ops, (i, ops))
            continue
        r = led.apply(ops)
        account(i, ops, r, time.perf_counter() - t0)
    window.drain()
    peak_s = time.perf_counter() - peak_t0
    bal = _balances(engine, led)
    if hasattr(led, "checkpoint"):
        led.checkpoint()
    led.close()
    disk_bytes = storage.ledger_disk_bytes(path)  # (the data file's pages, not its zeros ahead)
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {
        "engine": engine,
        "setup_s": setup_s,
        "peak_ops": peak_ops,
        "peak_s": peak_s,
        "ops_per_s": peak_ops / peak_s if peak_s else 0.0,
        "peak_taps": peak_taps,
        "taps_per_s": peak_taps / peak_s if peak_s else 0.0,
        "batch_p50_ms": float(np.percentile(lat, 50) * 1e3),
        "batch_p99_ms": float(np.percentile(lat, 99) * 1e3),
        "batch_max_ms": float(lat.max() * 1e3),
        # Every peak batch's latency, in order: where the slow ones fall says what they wait on.
        "batch_ms": [round(x * 1e3, 3) for x in latencies],
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "disk_bytes": disk_bytes,
        "disk_bytes_per_op": disk_bytes / max(manifest["ops"], 1),
        "results_sha256": results_hash.hexdigest(),
        "balances_sha256": hashlib.sha256(bal.tobytes()).hexdigest(),
        "total_fen": int(bal["cash_fen"].astype(object).sum() + bal["subsidy_fen"].astype(object).sum()),
        "codes": {Result(c).name: int(n) for c, n in enumerate(codes) if n},
    }


def _spawn(engine: str, scenario_dir: str, work_dir: str) -> dict:
    out = os.path.join(work_dir, f"{engine}.json")
    cmd = [sys.executable, "-m", "cardledger.benchmark.runner", "--child", engine,
           "--scenario-dir", scenario_dir, "--work-dir", work_dir, "--child-out", out]  # fmt: skip
    subprocess.run(cmd, check=True)
    with open(out) as f:
        return json.load(f)  # type: ignore[no-any-return]


def _chart(report: dict, png: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = report["engines"]
    names = [r["engine"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.bar(names, [r["ops_per_s"] for r in rows])
    a.set_yscale("log")
    a.set_title("peak replay, ops/s (log)")
    b.bar(names, [r["batch_p99_ms"] for r in rows], label="p99")
    b.bar(names, [r["batch_p50_ms"] for r in rows], label="p50")
    b.set_yscale("log")
    b.set_title("batch latency, ms (log)")
    b.legend()
    fig.suptitle(f"Harbin peak, {report['scenario']['n_cards']:,} cards, {report['scenario']['ops']:,} ops")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return png


def bench_city(args: argparse.Namespace) -> int:
    """The scenario through every engine (module docstring); exit code 0 if all agree."""
    cards = CITY_CARDS_DEFAULT if args.cards is None else args.cards
    seed = CITY_SEED_DEFAULT if args.seed is None else args.seed
    scen_dir = args.scenario_dir or os.path.join(tempfile.gettempdir(), f"cardledger-scenario-{cards}-{seed}")
    manifest_path = os.path.join(scen_dir, "manifest.json")
    t0 = time.perf_counter()
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        # A scenario directory is reused as it is: a --cards or --seed it does not hold
        # is an error, never silently another city than the one asked for.
        for name, asked in (("n_cards", args.cards), ("seed", args.seed)):
            if asked is not None and manifest[name] != asked:
                print(f"cardledger bench: {scen_dir} holds a scenario with {name} {manifest[name]}, not {asked}: "
                      "use another --scenario-dir, or leave --cards/--seed out to replay it", file=sys.stderr)
                return EXIT_USAGE
        print(f"scenario: {scen_dir} (reused: {manifest['n_cards']:,} cards, seed {manifest['seed']})")
    else:
        print(f"scenario: generating {cards:,} cards, seed {seed} -> {scen_dir}")
        manifest = scenario.write(scen_dir, scenario.generate(cards, seed))
        print(f"  {manifest['ops']:,} ops in {manifest['batches']} batches, {time.perf_counter() - t0:.1f} s")
    work = args.work_dir or tempfile.mkdtemp(prefix="cardledger-bench-")
    rows = []
    for engine in args.engines:
        print(f"engine {engine}:")
        rows.append(_spawn(engine, scen_dir, work))
        r = rows[-1]
        print(f"  peak {r['ops_per_s']:,.0f} ops/s, batch p50 {r['batch_p50_ms']:.1f} ms p99 {r['batch_p99_ms']:.1f} ms, "
              f"RSS {r['peak_rss_bytes'] / 2**20:,.0f} MiB, {r['disk_bytes_per_op']:.0f} B/op on disk")  # fmt: skip
    core = next((r for r in rows if r["engine"] == "core"), rows[0])
    for r in rows:
        r["core_speedup"] = core["ops_per_s"] / r["ops_per_s"] if r["ops_per_s"] else None
    balances_agree = len({r["balances_sha256"] for r in rows}) == 1
    results_agree = len({r["results_sha256"] for r in rows}) == 1
    report = {
        "scenario": {k: manifest[k] for k in ("n_cards", "seed", "ops", "batches", "setup_batches", "counts")},
        "engines": rows,
        "balances_agree": balances_agree,
        "results_agree": results_agree,
    }
    print()
    print(f"{'engine':<10} {'ops/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8} {'B/op':>6} {'core is':>9}")
    for r in rows:
        print(f"{r['engine']:<10} {r['ops_per_s']:>12,.0f} {r['batch_p50_ms']:>8.1f} {r['batch_p99_ms']:>8.1f} "
              f"{r['peak_rss_bytes'] / 2**20:>8,.0f} {r['disk_bytes_per_op']:>6.0f} {r['core_speedup']:>8.1f}×")  # fmt: skip
    print(f"balances agree across engines: {balances_agree}; results agree: {results_agree}")
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(f"report: {args.json}")
    if args.png:
        png = _chart(report, args.png)
        print(f"chart: {png}" if png else "chart: skipped (matplotlib not installed: pip install 'cardledger[plot]')")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if balances_agree and results_agree else 1


def bench_tigerbeetle(args: argparse.Namespace) -> int:
    """TigerBeetle's benchmark workload through the core (module docstring)."""
    from .. import open as open_ledger

    n_acc, n_tr = args.tigerbeetle, args.transfers
    rng = np.random.default_rng(CITY_SEED_DEFAULT if args.seed is None else args.seed)
    path = tempfile.mkdtemp(prefix="cardledger-tb-")
    try:
        led = open_ledger(path, engine="cython")
        for lo in range(0, n_acc, 65_536):
            ops = np.zeros(min(65_536, n_acc - lo), dtype=OP_DTYPE)
            ops["source"] = 1
            ops["seq"] = np.arange(lo + 1, lo + 1 + len(ops))
            ops["kind"] = OpKind.OPEN
            ops["account_id"] = np.arange(lo + 1, lo + 1 + len(ops))
            ops["account_kind"] = AccountKind.CLEARING
            led.apply(ops)
        lat: list[float] = []

        def finished(_tag: Any, r: np.ndarray, seconds: float) -> None:
            lat.append(seconds)
            if r["code"].any():
                raise RuntimeError(f"TigerBeetle workload: unexpected results {np.unique(r['code'])}")

        window = SubmitWindow(led, finished)

        # The ops are generated before the clock starts (about 1 GB for 10M): what
        # is timed is the ledger, not numpy building batches.
        total_batches = (n_tr + TB_BATCH - 1) // TB_BATCH
        workload = []
        done = 0
        for b in range(total_batches):
            n = min(TB_BATCH, n_tr - done)
            ops = np.zeros(n, dtype=OP_DTYPE)
            ops["source"] = 2
            ops["seq"] = np.arange(done + 1, done + 1 + n)  # time-ordered ids
            ops["kind"] = OpKind.TRANSFER
            debit = rng.integers(1, n_acc + 1, size=n)
            credit = rng.integers(1, n_acc, size=n)
            credit += credit >= debit  # uniform over the other accounts
            ops["account_id"] = debit
            ops["counterparty_id"] = credit
            ops["amount_fen"] = rng.integers(1, 20_001, size=n)
            ops["time_us"] = 1_700_000_000_000_000 + done + np.arange(n)
            workload.append(ops)
            done += n
        t0 = time.perf_counter()
        for b, ops in enumerate(workload):
            if args.no_pipeline:
                t1 = time.perf_counter()
                finished(None, led.apply(ops), time.perf_counter() - t1)
            else:
                # Pipelined: this batch's kernel runs while the previous one commits;
                # each is durable before its future resolves (Ledger.submit).
                window.submit(ops)
            workload[b] = None  # applied, or copied by submit
            _progress("core", b + 1, total_batches, t0)
        window.drain()
        el = time.perf_counter() - t0
        led.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    rate = n_tr / el
    tb = TB_MEASURED.get(n_acc)
    report = {
        "workload": "tigerbeetle",
        "accounts": n_acc,
        "transfers": n_tr,
        "batch": TB_BATCH,
        "through": "Ledger.apply" if args.no_pipeline else "Ledger.submit (pipelined)",
        "transfers_per_s": rate,
        "batch_p50_ms": float(np.percentile(lat, 50) * 1e3),
        "batch_p99_ms": float(np.percentile(lat, 99) * 1e3),
        "tigerbeetle_measured_per_s": tb,
        "ratio_to_tigerbeetle_best": rate / tb[1] if tb else None,
    }
    print(f"{n_tr:,} transfers among {n_acc:,} accounts: {rate:,.0f} transfers/s, batch p50 "
          f"{report['batch_p50_ms']:.1f} ms p99 {report['batch_p99_ms']:.1f} ms")  # fmt: skip
    if tb:
        print(f"TigerBeetle 0.17.9 on this machine: {tb[0]:,}–{tb[1]:,}/s; ratio to its best: {rate / tb[1]:.1f}×")
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(f"report: {args.json}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `cardledger bench`."""
    p.add_argument("--cards", type=int, default=None,
                   help=f"cards in the city (default {CITY_CARDS_DEFAULT:,}, or what --scenario-dir holds)")
    p.add_argument("--seed", type=int, default=None,
                   help=f"the scenario's seed (default {CITY_SEED_DEFAULT}, or what --scenario-dir holds)")
    p.add_argument("--engines", type=lambda s: s.split(","), default=list(ENGINES),
                   help="comma-separated subset of core,reference,sqlite,lmdb (default: all four), "
                        "or core-submit: the core through Ledger.submit, pipelined")  # fmt: skip
    p.add_argument("--scenario-dir", help="where the scenario's batch files are (generated if missing)")
    p.add_argument("--work-dir", help="where the engines' ledgers go (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the engines' ledgers")
    p.add_argument("--json", default="bench-report.json", help="JSON report path")
    p.add_argument("--png", default="bench-report.png", help="PNG chart path ('' for none)")
    p.add_argument("--tigerbeetle", type=int, metavar="ACCOUNTS", help="run TigerBeetle's workload instead")
    p.add_argument("--transfers", type=int, default=10_000_000, help="transfers in --tigerbeetle mode")
    p.add_argument("--no-pipeline", action="store_true",
                   help="--tigerbeetle: one apply at a time instead of pipelined submits")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`cardledger bench` (and the per-engine child processes)."""
    p = argparse.ArgumentParser(prog="cardledger bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run what the parsed arguments ask for."""
    if getattr(args, "child", None):
        result = run_child(args.child, args.scenario_dir, args.work_dir)
        with open(args.child_out, "w") as f:
            json.dump(result, f)
        return 0
    bad = [e for e in args.engines if e not in ENGINES + EXTRA_ENGINES]
    if bad:
        raise SystemExit(f"unknown engines {bad}; choose among {','.join(ENGINES + EXTRA_ENGINES)}")
    # Make the report's folders now: finding one missing after a run of minutes loses the run.
    for out in (args.json, getattr(args, "png", "")):
        if out and os.path.dirname(out):
            os.makedirs(os.path.dirname(out), exist_ok=True)
    if args.tigerbeetle:
        return bench_tigerbeetle(args)
    return bench_city(args)


if __name__ == "__main__":
    sys.exit(main())
