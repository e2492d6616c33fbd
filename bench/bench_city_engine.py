#!/usr/bin/env python
"""The city scenario through the core's engine alone: no LMDB, no journal, no checkpoints.

    python bench/bench_city_engine.py SCENARIO_DIR

SCENARIO_DIR is what `cardledger bench --scenario-dir DIR` wrote. Applies the setup
batches, then times the peak batches through `Engine.apply` (the decisions window is
emptied every 2^16 decisions, as the ledger's id index flush does; that time is left
out). Prints the engine's peak ops/s: the ceiling for `Ledger.apply` on this workload.
"""

from __future__ import annotations

import sys
import time

from cardledger.benchmark import scenario
from cardledger.engine_select import engine_class
from cardledger.fare_store import tap_tables
from cardledger.fares import FareSystem

#: Decisions held before the window is emptied (the ledger's IDS_FLUSH_OPS_DEFAULT).
WINDOW_OPS = 1 << 16


def main() -> int:
    manifest, batches = scenario.read(sys.argv[1])
    engine = engine_class("cython")(500_000)
    engine.set_fare_versions(tap_tables([(0, FareSystem.harbin())]))
    ops_done, spent, flush = 0, 0.0, 0.0
    for i, ops in enumerate(batches):
        t = time.perf_counter()
        engine.apply(ops)
        if i >= manifest["setup_batches"]:
            spent += time.perf_counter() - t
            ops_done += len(ops)
        if engine.recent_count >= WINDOW_OPS:
            t = time.perf_counter()
            engine.take_decisions()
            if i >= manifest["setup_batches"]:
                flush += time.perf_counter() - t
    print(f"engine alone: {ops_done / spent:,.0f} peak ops/s over {ops_done:,} ops "
          f"(window emptied {flush:.2f} s, not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
