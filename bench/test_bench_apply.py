"""Micro benchmarks of `apply` (pytest-benchmark): durable SPEND batches on 100k cards.

Run explicitly, never part of the default suite (see conftest.py):

    pytest bench/test_bench_apply.py --benchmark-columns=median,ops,rounds

Each test opens a fresh ledger in tmp_path, opens CARDS cards and gives each an initial
top-up (not timed), then times `apply` on fresh SPEND batches (card -> merchant, unique
ids, so no replay short-cuts): batches of 1, 64 and 8192 ops for the core, 8192 for the
two baselines. `extra_info.ops_per_s` is batch size / median round time.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload  # noqa: E402
from _schema import Result  # noqa: E402
from baselines import NaiveLmdbLedger, SqliteLedger  # noqa: E402

CARDS = 100_000
SEED = 11
WARMUP_ROUNDS = 2
#: Timed rounds per (engine, batch size): enough for a stable median, short enough to
#: keep the slow Python baselines to a few seconds.
ROUNDS = {("core", 1): 1000, ("core", 64): 300, ("core", 8192): 30, ("sqlite", 8192): 8, ("lmdb", 8192): 8}
#: SPEND batches must mostly succeed, or we would be timing refusals.
OK_FRACTION_MIN = 0.9


def _open(engine: str, path: Path) -> tuple[Any, str]:
    """Open `engine` in `path`; return (ledger, implementation). Skips if the core is missing."""
    if engine == "sqlite":
        return SqliteLedger(path), "sqlite baseline"
    if engine == "lmdb":
        return NaiveLmdbLedger(path), "lmdb baseline"
    cardledger = pytest.importorskip("cardledger", reason="cardledger does not import; build it first")
    if not hasattr(cardledger, "open"):
        pytest.skip("cardledger.open() does not exist yet")
    implementation = str(getattr(cardledger, "IMPLEMENTATION", "unknown"))
    if implementation != "cython":
        warnings.warn(f"'core' is cardledger.IMPLEMENTATION={implementation!r}, not the Cython core")
    return cardledger.open(str(path)), implementation


@pytest.fixture(scope="module")
def setup_batches() -> list[np.ndarray]:
    """OPEN + initial TOPUP batches for CARDS cards, shared by every test."""
    return workload.make_setup(CARDS, SEED)


CASES = sorted(ROUNDS, key=lambda case: (case[0] != "core", case[1]))


@pytest.mark.parametrize(("engine", "batch_ops"), CASES, ids=[f"{e}-{b}" for e, b in CASES])
def test_apply_spend(
    benchmark: Any, engine: str, batch_ops: int, tmp_path: Path, setup_batches: list[np.ndarray]
) -> None:
    """Time one durable `apply` of a SPEND batch of `batch_ops` ops on `engine`."""
    ledger, implementation = _open(engine, tmp_path / engine)
    try:
        for batch in setup_batches:
            assert (ledger.apply(batch)["code"] == Result.OK).all()
        rounds = ROUNDS[(engine, batch_ops)]
        n_ops = (rounds + WARMUP_ROUNDS) * batch_ops
        batches: Iterator[np.ndarray] = iter(
            list(workload.make_mix(CARDS, n_ops, batch_ops, SEED, spend_percent=100))
        )

        def next_batch() -> tuple[tuple[np.ndarray], dict[str, Any]]:
            return (next(batches),), {}

        results = benchmark.pedantic(
            ledger.apply, setup=next_batch, rounds=rounds, warmup_rounds=WARMUP_ROUNDS, iterations=1
        )
    finally:
        close = getattr(ledger, "close", None)
        if close is not None:
            close()

    assert len(results) == batch_ops
    ok_fraction = float(np.mean(results["code"] == Result.OK))
    assert ok_fraction >= OK_FRACTION_MIN, f"only {ok_fraction:.0%} of the last batch succeeded"
    benchmark.extra_info.update(
        engine=engine, implementation=implementation, cards=CARDS, ops_per_round=batch_ops
    )
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median > 0:
        benchmark.extra_info["ops_per_s"] = round(batch_ops / stats.stats.median, 1)
