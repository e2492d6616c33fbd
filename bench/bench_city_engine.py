#!/usr/bin/env python
"""The city scenario through the core's engine alone: no LMDB, no journal, no checkpoints.

    python bench/bench_city_engine.py SCENARIO_DIR [--setup-only]

SCENARIO_DIR is what `cardledger bench --scenario-dir DIR` wrote. Applies the setup
batches, reserves the cards' fare state (as the runner does before the peak), then times
the timed batches (the morning peak and the lunch hour) through `Engine.apply` (the decisions window is emptied every 2^16
decisions, as the ledger's id index flush does; that time is left out). Prints the
engine's peak ops/s and the peak batches' p50/p99: the ceiling for `Ledger.apply` on
this workload.

`--setup-only` stops after the setup. With it, the engine's instructions for the peak
can be counted, which unlike its time does not drift with this machine's load (valgrind,
a small city: `cardledger bench --cards 100000 --scenario-dir D` writes one):

    valgrind --tool=callgrind --collect-atstart=no \\
        --toggle-collect='__pyx_pw_10cardledger_5_core_6Engine_*apply' \\
        python bench/bench_city_engine.py D [--setup-only]

The peak's count is the "Collected" figure without `--setup-only` minus the one with it.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import cardledger
from cardledger.benchmark import baselines, scenario
from cardledger.offers.tables import compile_versions

#: Decisions held before the window is emptied (the ledger's IDS_FLUSH_OPS_DEFAULT).
WINDOW_OPS = 1 << 16


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario_dir")
    p.add_argument("--setup-only", action="store_true", help="stop after the setup (and the reservation)")
    a = p.parse_args()
    if cardledger.IMPLEMENTATION != "cython":
        print("bench_city_engine: the Cython core is not built (pip install -e . with a C compiler)", file=sys.stderr)
        return 2
    manifest, batches = scenario.read(a.scenario_dir)
    setup = manifest["setup_batches"]
    engine = cardledger.Engine(500_000)
    engine.set_fare_versions(list(baselines.harbin_fare_versions()))
    offers = scenario.read_offers(a.scenario_dir, manifest)
    if offers is not None:  # the lunch hour's catalog, compiled as a ledger compiles it
        engine.set_offer_versions(compile_versions([(offers[1], offers[0])])[0])
    ops_done, flush = 0, 0.0
    batch_s: list[float] = []
    for i, ops in enumerate(batches):
        if i == setup:
            if a.setup_only:
                return 0
            engine.reserve_journeys(engine.account_count())
            engine.prefault_journeys()
        t = time.perf_counter()
        engine.apply(ops)
        if i >= setup:
            batch_s.append(time.perf_counter() - t)
            ops_done += len(ops)
        if engine.recent_count >= WINDOW_OPS:
            t = time.perf_counter()
            engine.take_decisions()
            if i >= setup:
                flush += time.perf_counter() - t
    ms = np.array(batch_s) * 1e3
    print(f"engine alone: {ops_done / ms.sum() * 1e3:,.0f} peak ops/s over {ops_done:,} ops, batch p50 "
          f"{np.percentile(ms, 50):.1f} ms p99 {np.percentile(ms, 99):.1f} ms (window emptied {flush:.2f} s, "
          f"not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
