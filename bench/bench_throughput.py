#!/usr/bin/env python
"""The SPEND/TOPUP mix through the core and the baselines: `cardledger bench --mix`.

    python bench/bench_throughput.py --cards 1000000 --ops 4000000 --batch 8192 \\
        [--engines core,core-submit,sqlite,lmdb] [--baseline-ops 500000] [--json report.json]

A name kept for the command above; the harness is `cardledger.benchmark` (the
workload in `workloads.py`, the baselines in `baselines.py`, the runner in
`runner.py`), and `--help` lists its options.
"""

from __future__ import annotations

import sys

from cardledger.benchmark import runner

if __name__ == "__main__":
    sys.exit(runner.main(["--mix", *sys.argv[1:]]))
