"""`cardledger bench`: one workload through every engine, each in its own process; ratios and reports.

Workloads (`--mix` and `--tigerbeetle` choose the other two):

- **the city** (default): the synthetic Harbin day of `scenario.py`, its morning peak
  and its lunch hour of purchases (its offer catalog installed on every engine first);
- **the SPEND/TOPUP mix** (`--mix`, what `bench/bench_throughput.py` runs):
  `workloads.mix_scenario`, `--ops` ops in batches of `--batch` after the setup;
- **TigerBeetle's benchmark** (`--tigerbeetle ACCOUNTS`): `workloads.tigerbeetle_*`
  through the core alone, pipelined through `Ledger.submit` (the next batch runs
  while the previous one commits, each durable before its future resolves, as
  TigerBeetle pipelines its own) or with `--no-pipeline` one `Ledger.apply` at a
  time; the ops are generated before the clock starts.

A city or mix workload is generated once per parameters and written as msgpack batch
files (`scenario.write`); each engine then replays those same bytes in a child process
of its own (so each one's peak RSS is its own):

- `core`: `cardledger.open(engine="cython")`, the product, one `apply` per batch;
- `core-submit`: the same through `Ledger.submit`, keeping the pipeline full;
- `reference`: `cardledger.open(engine="python")`, the pure-Python reference engine;
- `sqlite`, `lmdb`: the baselines of `baselines.py`.

Untimed, between the setup batches and the timed ones, the ledger engines take a
checkpoint (and, when the workload taps, reserve their cards' fare state with
`Ledger.reserve_journeys`), as a ledger that ran overnight meets the morning.

The Python engines (reference and the baselines) are slow, so `--baseline-ops N` lets
them run only the first N timed ops (whole batches): the *prefix*; the core engines
run everything and note their figures at the prefix too. Every engine hands back the
digests of its results and of every account's balances at the end of the prefix (the
end, without one); the run fails unless they all agree and every engine's balances
sum to zero (double entry, holds included).

Figures per engine, for all the timed batches and for each named phase of them
(`phases`: the city's "peak" and "lunch", with the core's ratio to each engine that ran
the whole phase): setup time; ops/s of the timed batches (time inside `apply`; for
`core-submit`, the phase's wall time), taps/s, batch latency p50/p99/max (every
batch's latency in `batch_ms`, in order: where the slow ones fall says what they wait
on), peak RSS, bytes on disk per op applied; the core's speed-up over each engine on
the same ops (`core_speedup`, and `ratios` for `core-submit` too). The report is
printed, written as JSON and, with matplotlib (`pip install 'cardledger[plot]'`),
drawn as a PNG chart.
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
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import open as open_ledger
from ..fares import FareSystem
from ..commit.pipeline import SubmitWindow
from ..store.datafile import ledger_disk_bytes
from ..schema import BATCH_OPS_MAX, OpKind, Result
from . import baselines, scenario, workloads

ENGINES = ("core", "reference", "sqlite", "lmdb")
#: Engines that may be asked for besides ENGINES: the core replaying through
#: `Ledger.submit` (pipelined: each batch's kernel overlaps the previous commit).
EXTRA_ENGINES = ("core-submit",)
MIX_ENGINES = ("core", "core-submit", "sqlite", "lmdb")
#: Engines that run every timed batch, past --baseline-ops.
FULL_RUN_ENGINES = ("core", "core-submit")
LEDGER_ENGINES = ("core", "core-submit", "reference")
#: The city `cardledger bench` generates when neither --cards/--seed nor an existing
#: --scenario-dir says otherwise.
CITY_CARDS_DEFAULT = 1_000_000
CITY_CARDS_MIN = 10
CITY_SEED_DEFAULT = 20261123
MIX_CARDS_DEFAULT = 1_000_000
MIX_OPS_DEFAULT = 4_000_000
MIX_BATCH_DEFAULT = 8192
MIX_SEED_DEFAULT = 1
MIX_BASELINE_OPS_DEFAULT = 500_000
TB_TRANSFERS_DEFAULT = 10_000_000
#: Exit status of a run whose engines disagree, or whose engine failed.
EXIT_FAILED = 1
#: Exit status of a command line that asks for something inconsistent.
EXIT_USAGE = 2
#: TigerBeetle 0.17.9, single replica, io_uring, measured on this machine (transfers/s).
TB_MEASURED = {10_000: (277_000, 393_000), 1_000_000: (161_000, 178_000)}
#: Progress lines written when stderr is not a terminal (one per tenth of the run).
PROGRESS_LINES = 10


class UsageError(Exception):
    """The command line asks for something the benchmark cannot run; the message says what."""


def _progress(label: str, done: int, total: int, started: float) -> None:
    """A progress bar redrawn in place on a terminal; on anything else a plain line per tenth."""
    tty = sys.stderr.isatty()
    if not tty and done != total and done % max(1, total // PROGRESS_LINES):
        return
    rate = done / max(time.perf_counter() - started, 1e-9)
    text = f"  {label:<11} {done}/{total} batches, {rate:,.0f} batches/s"
    if tty:
        bar = "#" * int(30 * done / max(total, 1))
        sys.stderr.write(f"\r  {label:<11} [{bar:<30}] {done}/{total} batches, {rate:,.0f} batches/s")
        sys.stderr.write("\n" if done == total else "")
    else:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


def disk_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the files under `path`, an LMDB data file counted up to its last page:
    the zeros the ledger writes ahead of it are room for the next batches, not what the
    stored ops take (see `store.datafile`)."""
    return ledger_disk_bytes(path)


# ---------------------------------------------------------------------------------------
# One engine, in a child process
# ---------------------------------------------------------------------------------------


def _open_engine(name: str, path: str, offers: tuple[Any, int] | None = None) -> Any:
    """A new ledger or baseline at `path`, with the workload's offer catalog (catalog,
    effective_from_us) installed when it has one."""
    if name in LEDGER_ENGINES:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)  # (the work directory)
        led = open_ledger(path, engine="python" if name == "reference" else "cython", create=True)
        # The first tap would install this same default; doing it here keeps loading
        # the fare system out of the timed replay, as the baselines get it compiled.
        led.install_fares(FareSystem.harbin(), 0)
    else:
        led = (baselines.SqliteBaseline if name == "sqlite" else baselines.LmdbBaseline)(path)
    if offers is not None:
        led.install_offers(*offers)
    return led


def _balances(led: Any) -> tuple[np.ndarray, int]:
    """(id, cash_fen, subsidy_fen) of every account by id, and the double-entry total."""
    if isinstance(led, (baselines.SqliteBaseline, baselines.LmdbBaseline)):
        return led.balances(), led.total_fen()
    acc = np.sort(led.accounts(), order="id")
    bal = np.empty(len(acc), dtype=baselines.BALANCES_DTYPE)
    for name in ("id", "cash_fen", "subsidy_fen"):
        bal[name] = acc[name]
    total = int(sum(acc[n].astype(object).sum() for n in ("cash_fen", "subsidy_fen", "debits_pending")))
    return bal, total


class _Phase:
    """The timed batches of one engine: what they did and how long it took."""

    def __init__(self) -> None:
        self.ops = 0
        self.taps = 0
        self.purchases = 0
        self.seconds = 0.0
        self.batch_s: list[float] = []

    def add(self, ops: np.ndarray, seconds: float) -> None:
        self.ops += len(ops)
        self.taps += int((ops["kind"] == OpKind.TAP).sum())
        self.purchases += int(((ops["kind"] == OpKind.PURCHASE) | (ops["kind"] == OpKind.REFUND)).sum())
        self.batch_s.append(seconds)

    def phase_figures(self) -> dict[str, Any]:
        """The figures of one named phase of the timed batches."""
        f = self.figures()
        return {"ops": self.ops, "taps": self.taps, "purchases_refunds": self.purchases, "seconds": self.seconds,
                "ops_per_s": f["ops_per_s"], "batch_p50_ms": f["batch_p50_ms"], "batch_p99_ms": f["batch_p99_ms"]}

    def figures(self) -> dict[str, Any]:
        lat = np.array(self.batch_s) if self.batch_s else np.zeros(1)
        return {
            "peak_ops": self.ops,
            "peak_taps": self.taps,
            "peak_s": self.seconds,
            "ops_per_s": self.ops / self.seconds if self.seconds else 0.0,
            "taps_per_s": self.taps / self.seconds if self.seconds else 0.0,
            "batch_p50_ms": float(np.percentile(lat, 50) * 1e3),
            "batch_p99_ms": float(np.percentile(lat, 99) * 1e3),
            "batch_max_ms": float(lat.max() * 1e3),
        }


def run_child(engine: str, scenario_dir: str, work_dir: str, prefix_batches: int | None = None) -> dict:
    """Replay the scenario through one engine (in this process); return its figures.

    With `prefix_batches`, an engine not in FULL_RUN_ENGINES stops after that many timed
    batches, and every engine hands back its digests as they stood there.
    """
    manifest, files = scenario.read_files(scenario_dir)
    path = os.path.join(work_dir, engine)
    shutil.rmtree(path, ignore_errors=True)
    led = _open_engine(engine, path, scenario.read_offers(scenario_dir, manifest))
    is_ledger = engine in LEDGER_ENGINES
    setup_n = manifest["setup_batches"]
    timed_n = manifest["batches"] - setup_n
    compare_at = timed_n if prefix_batches is None else min(prefix_batches, timed_n)
    stop_at = timed_n if engine in FULL_RUN_ENGINES else compare_at
    total = setup_n + stop_at
    # A CRC of every result, chained: the check that engines agree needs no more, and
    # it runs between core-submit's batches, on the clock (SHA-256 took a tenth of it).
    results_crc = 0
    codes = np.zeros(64, dtype=np.int64)
    applied_ops = 0
    phase = _Phase()
    # The timed batches' named phases (the city: the morning peak, the lunch hour), by batch index.
    phase_of: list[str] = []
    for name, n in manifest.get("phases") or [["timed", timed_n]]:
        phase_of += [name] * n
    phases = {name: _Phase() for name in dict.fromkeys(phase_of)}
    phase_clock = [0.0]  # core-submit: the phase seconds already given to earlier phases
    compared: dict[str, Any] = {}
    started = time.perf_counter()
    submit_t0: float | None = None  # core-submit: when the first timed batch was submitted

    def done(i: int, ops: np.ndarray, r: np.ndarray, seconds: float) -> None:
        nonlocal applied_ops, results_crc
        applied_ops += len(ops)
        if i >= setup_n:
            phase.add(ops, seconds)
            phases[phase_of[i - setup_n]].add(ops, seconds)
        if i < setup_n + compare_at:
            results_crc = zlib.crc32(np.ascontiguousarray(r).data, results_crc)  # every field, journal_seq too
        codes[:] += np.bincount(r["code"], minlength=64)
        _progress(engine, i + 1, total, started)

    def submitted(tag: tuple[int, np.ndarray], r: np.ndarray, seconds: float) -> None:
        done(tag[0], tag[1], r, seconds)

    window = SubmitWindow(led, submitted) if engine == "core-submit" else None

    def settle() -> None:
        """Every batch handed over is applied and accounted for; the phase's clock is up to date."""
        if window is not None and submit_t0 is not None:
            window.drain()
            phase.seconds = time.perf_counter() - submit_t0

    def compare_point() -> None:
        settle()
        bal, total_fen = _balances(led)
        compared.update(phase.figures(), results_crc32=results_crc,
                        balances_sha256=hashlib.sha256(bal.tobytes()).hexdigest(), total_fen=total_fen)  # fmt: skip

    def batches() -> Iterator[tuple[int, np.ndarray]]:
        """The batches in order; the clock stops while a file loads (the pipeline drained first)."""
        nonlocal submit_t0
        i = 0
        while True:
            paused = time.perf_counter()
            settle()
            loaded = next(files, None)
            if submit_t0 is not None:
                submit_t0 += time.perf_counter() - paused
            if loaded is None:
                return
            for ops in loaded:
                yield i, ops
                i += 1

    def close_phase(i: int) -> None:
        """core-submit: give the phase that ends before batch i its share of the wall time."""
        if window is None or submit_t0 is None or i <= setup_n:
            return
        settle()
        phases[phase_of[i - 1 - setup_n]].seconds += phase.seconds - phase_clock[0]
        phase_clock[0] = phase.seconds

    setup_s = 0.0
    for i, ops in batches():
        if setup_n < i < setup_n + stop_at and phase_of[i - setup_n] != phase_of[i - 1 - setup_n]:
            close_phase(i)  # (the drain is the ending phase's time)
        if i == setup_n:
            if is_ledger:
                # A ledger meets the peak checkpointed (the night's opens and top-ups are
                # not still waiting in memory to be flushed by the first peak batches),
                # with room for its cards' fare state (as yesterday's taps would have left).
                led.checkpoint()
                if manifest["counts"].get("taps"):
                    led.reserve_journeys()
                if manifest["counts"].get("purchases"):
                    led.reserve_offer_counters()  # and for its cards' offer counters
            setup_s = time.perf_counter() - started
        if i == setup_n + compare_at:
            paused = time.perf_counter()
            compare_point()
            if submit_t0 is not None:  # the comparison is not the engine's time
                submit_t0 += time.perf_counter() - paused
        if i == setup_n + stop_at:
            break
        if window is not None and i >= setup_n:
            if submit_t0 is None:
                submit_t0 = time.perf_counter()
            window.submit(ops, (i, ops))
            continue
        t0 = time.perf_counter()
        r = led.apply(ops)
        seconds = time.perf_counter() - t0
        if i >= setup_n:
            phase.seconds += seconds
            phases[phase_of[i - setup_n]].seconds += seconds
        done(i, ops, r, seconds)
    close_phase(setup_n + stop_at)
    settle()
    if not compared:
        compare_point()
    if is_ledger:
        led.checkpoint()
    led.close()
    size = disk_bytes(path)
    return {
        "engine": engine,
        "setup_s": setup_s,
        **phase.figures(),
        # Every timed batch's latency, in order: where the slow ones fall says what they wait on.
        "batch_ms": [round(x * 1e3, 3) for x in phase.batch_s],
        "prefix_only": stop_at < timed_n,
        # Each named phase's figures (the city: "peak" and "lunch"), over the batches this engine ran.
        "phases": {name: p.phase_figures() for name, p in phases.items() if p.ops},
        "compared": compared,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "disk_bytes": size,
        "disk_bytes_per_op": size / max(applied_ops, 1),
        "results_crc32": compared["results_crc32"],
        "balances_sha256": compared["balances_sha256"],
        "total_fen": compared["total_fen"],
        "codes": {Result(c).name: int(n) for c, n in enumerate(codes) if n},
    }


def _spawn(engine: str, scenario_dir: str, work_dir: str, prefix_batches: int | None) -> dict:
    out = os.path.join(work_dir, f"{engine}.json")
    cmd = [sys.executable, "-m", "cardledger.benchmark.runner", "--child", engine,
           "--scenario-dir", scenario_dir, "--work-dir", work_dir, "--child-out", out]  # fmt: skip
    if prefix_batches is not None:
        cmd += ["--prefix-batches", str(prefix_batches)]
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise RuntimeError(f"engine {engine} failed (exit status {done.returncode}); its error is above")
    with open(out) as f:
        return json.load(f)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------
# The parent: a workload, its engines, the report
# ---------------------------------------------------------------------------------------


def cache_dir() -> str:
    """Where generated scenarios are kept between runs: the user cache directory
    ($XDG_CACHE_HOME/cardledger, else ~/.cache/cardledger), not the system temp
    directory, so they are found again and are the user's to remove."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cardledger")


def _scenario(args: argparse.Namespace) -> tuple[str, dict]:
    """The workload's scenario directory, generated unless it is there; (directory, manifest)."""
    if args.mix:
        cards = MIX_CARDS_DEFAULT if args.cards is None else args.cards
        seed = MIX_SEED_DEFAULT if args.seed is None else args.seed
        want = {"workload": "mix", "n_cards": cards, "seed": seed, "params": {"ops": args.ops, "batch": args.batch}}
        default_dir = f"cardledger-mix-{cards}-{args.ops}-{args.batch}-{seed}"
    else:
        cards = CITY_CARDS_DEFAULT if args.cards is None else args.cards
        seed = CITY_SEED_DEFAULT if args.seed is None else args.seed
        # An existing --scenario-dir is replayed as it is unless --cards or --seed say otherwise.
        want = {"workload": "city"}
        want.update({k: v for k, v in (("n_cards", args.cards), ("seed", args.seed)) if v is not None})
        default_dir = f"cardledger-scenario-{cards}-{seed}"
    scen_dir = args.scenario_dir or os.path.join(cache_dir(), default_dir)
    if os.path.exists(os.path.join(scen_dir, "manifest.json")):
        try:
            manifest, _ = scenario.read(scen_dir)
        except ValueError as e:
            if args.scenario_dir:  # the user's directory: never removed here
                raise UsageError(str(e)) from e
            # The cache's copy was written by another version of the scenario: generate it again.
            print(f"scenario: {scen_dir} was written by another version; generating it again")
            shutil.rmtree(scen_dir)
            manifest = None
    else:
        manifest = None
    if manifest is not None:
        # A scenario directory is reused as it is: one holding another workload than the
        # one asked for is an error, never silently another city.
        for name, asked in want.items():
            if manifest[name] != asked:
                raise UsageError(f"{scen_dir} holds a scenario with {name} {manifest[name]}, not {asked}: "
                                 "use another --scenario-dir, or leave --cards/--seed out to replay it")  # fmt: skip
        print(f"scenario: {scen_dir} (reused: {manifest['workload']}, {manifest['n_cards']:,} cards, seed {manifest['seed']})")
        return scen_dir, manifest
    t0 = time.perf_counter()
    print(f"scenario: generating the {want['workload']}, {cards:,} cards, seed {seed} -> {scen_dir}")
    if args.mix:
        scen = workloads.mix_scenario(cards, args.ops, args.batch, seed)
    else:
        scen = scenario.generate(cards, seed)
    manifest = scenario.write(scen_dir, scen)
    print(f"  {manifest['ops']:,} ops in {manifest['batches']} batches, {time.perf_counter() - t0:.1f} s")
    return scen_dir, manifest


def _prefix_batches(manifest: dict, baseline_ops: int | None) -> int | None:
    """Timed batches the slow engines run: enough for `baseline_ops` ops (None: all)."""
    if baseline_ops is None:
        return None
    timed = manifest["batches"] - manifest["setup_batches"]
    if manifest["workload"] == "mix":
        per_batch = manifest["params"]["batch"]
    else:
        per_batch = scenario.BATCH_OPS
    n = -(-baseline_ops // per_batch)
    return None if n >= timed else n


def _ratios(rows: list[dict]) -> dict[str, float]:
    """How many times faster each core engine is than every other engine, on the same ops."""
    out: dict[str, float] = {}
    for core in (r for r in rows if r["engine"] in FULL_RUN_ENGINES):
        for r in rows:
            if r is not core and r["compared"]["ops_per_s"]:
                out[f"{core['engine']}/{r['engine']}"] = core["compared"]["ops_per_s"] / r["compared"]["ops_per_s"]
    return out


def _chart(report: dict, png: str) -> str | None:
    try:
        import matplotlib  # type: ignore[import-not-found]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        return None
    rows = report["engines"]
    names = [r["engine"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.bar(names, [r["compared"]["ops_per_s"] for r in rows])
    a.set_yscale("log")
    a.set_title("ops/s on the same ops (log)")
    b.bar(names, [r["batch_p99_ms"] for r in rows], label="p99")
    b.bar(names, [r["batch_p50_ms"] for r in rows], label="p50")
    b.set_yscale("log")
    b.set_title("batch latency, ms (log)")
    b.legend()
    s = report["scenario"]
    fig.suptitle(f"{s['workload']}, {s['n_cards']:,} cards, {s['ops']:,} ops")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return png


def _phase_ratios(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per named phase, the core's speed-up over each engine that ran the whole phase."""
    core = next((r for r in rows if r["engine"] == "core"), None)
    out: dict[str, dict[str, float]] = {}
    if core is None:
        return out
    for name, c in core.get("phases", {}).items():
        out[name] = {}
        for r in rows:
            p = r.get("phases", {}).get(name)
            if r is not core and p and p["ops"] == c["ops"] and p["ops_per_s"]:
                out[name][r["engine"]] = c["ops_per_s"] / p["ops_per_s"]
    return out


def _print_phases(rows: list[dict], ratios: dict[str, dict[str, float]]) -> None:
    """ops/s of each engine in each named phase (the city: the morning peak, the lunch hour)."""
    names = list(dict.fromkeys(n for r in rows for n in r.get("phases", {})))
    if len(names) < 2:
        return
    print()
    print(f"{'phase':<8} {'engine':<14} {'ops':>11} {'ops/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'core is':>9}")
    for name in names:
        for r in rows:
            p = r.get("phases", {}).get(name)
            if not p:
                continue
            ratio = ratios.get(name, {}).get(r["engine"])
            shown = f"{ratio:>8.1f}×" if ratio else f"{'-':>9}"
            print(f"{name:<8} {r['engine']:<14} {p['ops']:>11,} {p['ops_per_s']:>12,.0f} {p['batch_p50_ms']:>8.1f} "
                  f"{p['batch_p99_ms']:>8.1f} {shown}")  # fmt: skip


def _print_table(rows: list[dict], prefix_ops: int | None) -> None:
    print()
    if prefix_ops is not None:
        print(f"engines but {' and '.join(FULL_RUN_ENGINES)} ran the first {prefix_ops:,} timed ops (the prefix); "
              "'core is' compares the core with each engine on the ops both ran")  # fmt: skip
    print(f"{'engine':<14} {'ops':>11} {'ops/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8} {'B/op':>6} {'core is':>9}")
    for r in rows:
        speedup = f"{r['core_speedup']:>8.1f}×" if r["core_speedup"] else f"{'-':>9}"
        print(f"{r['engine']:<14} {r['peak_ops']:>11,} {r['ops_per_s']:>12,.0f} {r['batch_p50_ms']:>8.1f} "
              f"{r['batch_p99_ms']:>8.1f} {r['peak_rss_bytes'] / 2**20:>8,.0f} {r['disk_bytes_per_op']:>6.0f} {speedup}")  # fmt: skip
        c = r["compared"]
        if r["engine"] in FULL_RUN_ENGINES and c["peak_ops"] != r["peak_ops"]:
            print(f"{'  on prefix':<14} {c['peak_ops']:>11,} {c['ops_per_s']:>12,.0f} {c['batch_p50_ms']:>8.1f} "
                  f"{c['batch_p99_ms']:>8.1f}")  # fmt: skip


def bench_replay(args: argparse.Namespace) -> int:
    """The city or the mix through every engine asked for (module docstring); 0 if all agree."""
    scen_dir, manifest = _scenario(args)
    prefix = _prefix_batches(manifest, args.baseline_ops)
    work = args.work_dir or tempfile.mkdtemp(prefix="cardledger-bench-")
    rows = []
    try:
        for engine in args.engines:
            print(f"engine {engine}:")
            r = _spawn(engine, scen_dir, work, prefix)
            rows.append(r)
            print(f"  {r['ops_per_s']:,.0f} ops/s, batch p50 {r['batch_p50_ms']:.1f} ms p99 {r['batch_p99_ms']:.1f} ms, "
                  f"RSS {r['peak_rss_bytes'] / 2**20:,.0f} MiB, {r['disk_bytes_per_op']:.0f} B/op on disk")  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    core = next((r for r in rows if r["engine"] == "core"), rows[0])
    for r in rows:
        ops_per_s = r["compared"]["ops_per_s"]
        r["core_speedup"] = core["compared"]["ops_per_s"] / ops_per_s if ops_per_s else None
    balances_agree = len({r["balances_sha256"] for r in rows}) == 1
    results_agree = len({r["results_crc32"] for r in rows}) == 1
    double_entry = all(r["total_fen"] == 0 for r in rows)
    prefix_ops = rows[0]["compared"]["peak_ops"] if prefix is not None else None
    report: dict[str, Any] = {
        "scenario": {k: manifest[k] for k in ("workload", "params", "n_cards", "seed", "ops", "batches",
                                              "setup_batches", "counts")},  # fmt: skip
        "prefix_batches": prefix,
        "engines": rows,
        "ratios": _ratios(rows),
        "balances_agree": balances_agree,
        "results_agree": results_agree,
        "double_entry": double_entry,
    }
    _print_table(rows, prefix_ops)
    report["phases"] = _phase_ratios(rows)
    _print_phases(rows, report["phases"])
    for name, ratio in report["ratios"].items():
        if name.startswith("core-submit/"):
            print(f"{name:<24} {ratio:>8.1f}×")
    print(f"balances agree across engines: {balances_agree}; results agree: {results_agree}; "
          f"balances sum to zero: {double_entry}")  # fmt: skip
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(f"report: {args.json}")
    if args.png:
        png = _chart(report, args.png)
        print(f"chart: {png}" if png else "chart: skipped (matplotlib not installed: pip install 'cardledger[plot]')")
    return 0 if balances_agree and results_agree and double_entry else EXIT_FAILED


def bench_tigerbeetle(args: argparse.Namespace) -> int:
    """TigerBeetle's benchmark workload through the core (module docstring)."""
    n_acc, n_tr = args.tigerbeetle, args.transfers
    seed = CITY_SEED_DEFAULT if args.seed is None else args.seed
    path = tempfile.mkdtemp(prefix="cardledger-tb-")
    try:
        led = open_ledger(path, engine="cython", create=True)
        for opens in workloads.tigerbeetle_accounts(n_acc):
            led.apply(opens)
        lat: list[float] = []

        def finished(_tag: Any, r: np.ndarray, seconds: float) -> None:
            lat.append(seconds)
            if r["code"].any():
                raise RuntimeError(f"TigerBeetle workload: unexpected results {np.unique(r['code'])}")

        window = SubmitWindow(led, finished)
        # The ops are generated before the clock starts (10M of them take a lot of memory): what
        # is timed is the ledger, not numpy building batches.
        workload: list[np.ndarray | None] = list(workloads.tigerbeetle_transfers(n_acc, n_tr, seed))
        total_batches = len(workload)
        t0 = time.perf_counter()
        for b, ops in enumerate(workload):
            assert ops is not None
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
        "batch": workloads.TB_BATCH_OPS,
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
                   help=f"cards in the city (default {CITY_CARDS_DEFAULT:,}, or what --scenario-dir holds) "
                        f"or in the mix (default {MIX_CARDS_DEFAULT:,})")  # fmt: skip
    p.add_argument("--seed", type=int, default=None,
                   help=f"the workload's seed (default: the city {CITY_SEED_DEFAULT}, the mix {MIX_SEED_DEFAULT})")
    p.add_argument("--engines", type=lambda s: [e.strip() for e in s.split(",") if e.strip()], default=None,
                   help="comma-separated, among core,core-submit,reference,sqlite,lmdb (default: the city "
                        "core,reference,sqlite,lmdb; the mix core,core-submit,sqlite,lmdb)")  # fmt: skip
    p.add_argument("--baseline-ops", type=int, default=None,
                   help="reference, sqlite and lmdb run only the first N timed ops (whole batches) and the "
                        f"ratios compare on those (default: all of the city; {MIX_BASELINE_OPS_DEFAULT:,} of the mix)")
    p.add_argument("--scenario-dir", help="where the workload's batch files are (generated if missing; default: "
                                          "a directory named for the workload in the user cache directory, "
                                          "$XDG_CACHE_HOME/cardledger or ~/.cache/cardledger)")
    p.add_argument("--work-dir", help="where the engines' ledgers go (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the engines' ledgers")
    p.add_argument("--json", default="bench-report.json", help="JSON report path")
    p.add_argument("--png", default="bench-report.png", help="PNG chart path ('' for none)")
    p.add_argument("--mix", action="store_true", help="run the SPEND/TOPUP mix instead of the city")
    p.add_argument("--ops", type=int, default=MIX_OPS_DEFAULT, help=f"--mix: timed ops (default {MIX_OPS_DEFAULT:,})")
    p.add_argument("--batch", type=int, default=MIX_BATCH_DEFAULT, help=f"--mix: ops per batch (default {MIX_BATCH_DEFAULT})")
    p.add_argument("--tigerbeetle", type=int, metavar="ACCOUNTS", help="run TigerBeetle's workload instead")
    p.add_argument("--transfers", type=int, default=TB_TRANSFERS_DEFAULT, help="transfers in --tigerbeetle mode")
    p.add_argument("--no-pipeline", action="store_true",
                   help="--tigerbeetle: one apply at a time instead of pipelined submits")  # fmt: skip


def _check_arguments(args: argparse.Namespace) -> None:
    """Raise UsageError for a command line no run can satisfy; fill in the defaults."""
    if args.mix and args.tigerbeetle is not None:
        raise UsageError("--mix and --tigerbeetle are two workloads: choose one")
    if args.tigerbeetle is not None:
        if args.tigerbeetle < 2:
            raise UsageError(f"--tigerbeetle needs at least 2 accounts, got {args.tigerbeetle}")
        if args.transfers < 1:
            raise UsageError(f"--transfers must be at least 1, got {args.transfers}")
        return
    if args.mix:
        if args.cards is not None and args.cards < 1:
            raise UsageError(f"--cards must be at least 1, got {args.cards}")
        if args.ops < 1:
            raise UsageError(f"--ops must be at least 1, got {args.ops}")
        if not 1 <= args.batch <= BATCH_OPS_MAX:
            raise UsageError(f"--batch must be in 1..{BATCH_OPS_MAX}, got {args.batch}")
    elif args.cards is not None and args.cards < CITY_CARDS_MIN:
        raise UsageError(f"--cards must be at least {CITY_CARDS_MIN} (the city needs them), got {args.cards}")
    if args.baseline_ops is None and args.mix:
        args.baseline_ops = MIX_BASELINE_OPS_DEFAULT
    if args.baseline_ops is not None and args.baseline_ops < 1:
        raise UsageError(f"--baseline-ops must be at least 1, got {args.baseline_ops}")
    if args.engines is None:
        args.engines = list(MIX_ENGINES if args.mix else ENGINES)
    bad = [e for e in args.engines if e not in ENGINES + EXTRA_ENGINES]
    if bad or not args.engines or len(set(args.engines)) != len(args.engines):
        raise UsageError(f"--engines: give distinct names among {','.join(ENGINES + EXTRA_ENGINES)}, "
                         f"got {','.join(args.engines) or 'none'}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`cardledger bench` (and the per-engine child processes)."""
    p = argparse.ArgumentParser(prog="cardledger bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    p.add_argument("--prefix-batches", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run what the parsed arguments ask for; a bad command line or a failed engine is one line on stderr."""
    if getattr(args, "child", None):
        result = run_child(args.child, args.scenario_dir, args.work_dir, args.prefix_batches)
        with open(args.child_out, "w") as f:
            json.dump(result, f)
        return 0
    try:
        _check_arguments(args)
        # Make the report's folders now: finding one missing after a run of minutes loses the run.
        for out in (args.json, args.png):
            if out and os.path.dirname(out):
                os.makedirs(os.path.dirname(out), exist_ok=True)
        if args.tigerbeetle is not None:
            return bench_tigerbeetle(args)
        return bench_replay(args)
    except UsageError as e:
        print(f"cardledger bench: {e}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as e:
        print(f"cardledger bench: {e}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
