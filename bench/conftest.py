"""pytest setup for bench/: the micro benchmarks run only when bench/ is asked for.

`pytest tests/` never comes here. A bare `pytest` (or `pytest .`) from the repository
root would; this conftest makes it skip collecting bench/ unless a path on the command
line is bench/ or lies inside it (`pytest bench/`, `pytest bench/test_bench_apply.py`,
or a bare `pytest` run from inside bench/).
"""

from __future__ import annotations

from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parent


def _bench_asked_for(config: pytest.Config) -> bool:
    """True when a command-line path is bench/ or something inside it."""
    invocation_dir = Path(config.invocation_params.dir)
    for arg in config.args:  # the paths pytest was given (or its cwd, when none)
        text = str(arg)
        candidate = (invocation_dir / text.split("::", 1)[0]).resolve()
        if candidate == BENCH_DIR or BENCH_DIR in candidate.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Ignore everything under bench/ unless bench/ was named on the command line."""
    if BENCH_DIR in collection_path.resolve().parents and not _bench_asked_for(config):
        return True
    return None
