"""The one place that chooses an engine: its state machine, its codec, its fare evaluator.

Two implementations share one set of semantics: the Cython core (`cardledger._core`,
built from `cext/`) and the pure-Python specification (`engine/spec/`). A ledger runs
its engine and the codec that stores its journal, id index and checkpoints from one
side (`open(engine=...)`; both sides write identical bytes). A `FareSystem` is shared by
every ledger of the process (its compiled versions are cached), so its `quote` uses
the default implementation's evaluator (`evaluator_for(None)`); the spec engine rates
its own taps with the spec evaluator either way.

CARDLEDGER_PURE=1 forces the specification as the default (the test suite runs once
each way). If the core is not built, the specification is the default and
IMPLEMENTATION says so. The environment is read once, here.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from .spec import batch as spec_batch
from .spec import codec as spec_codec
from .spec import fares as spec_fares
from .spec import reports as spec_reports

#: Implementation names, as `open(engine=...)` and `Ledger.implementation` spell them.
CYTHON = "cython"
PYTHON = "python"

#: The codec functions the core implements in C, twins of those in `spec/codec.py`.
CODEC_FUNCTIONS = (
    "pack_journal", "unpack_journal", "unpack_journal_record", "unpack_journal_records", "journal_record_marks",
    "unpack_records_of_batches", "id_index_items",
    "pack_pairs", "find_pair", "pack_id_runs", "find_ids_in_runs", "find_ids_exact", "pack_words", "unpack_words",
)


#: Engine methods added after the first cores: a core built before them is out of date.
ENGINE_METHODS = ("set_policy_versions", "policy_in_force")


def _load_core() -> ModuleType | None:
    """The built core, or None if it is not built. A core built from older sources (a
    codec function missing) is refused: silently falling back to the Python twins would
    make every batch many times slower."""
    try:
        from .. import _core  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - only without a compiler
        return None
    missing = [name for name in CODEC_FUNCTIONS if not hasattr(_core, name)]
    missing += [f"Engine.{name}" for name in ENGINE_METHODS if not hasattr(_core.Engine, name)]
    if missing:
        raise ImportError(f"cardledger._core is out of date (it lacks {', '.join(missing)}): rebuild it with "
                          "`pip install -e .` or `python setup.py build_ext --inplace`")
    return _core


_FORCED_PURE = os.environ.get("CARDLEDGER_PURE", "") not in ("", "0")
_CORE = None if _FORCED_PURE else _load_core()

#: The default implementation: "cython", or "python" when forced or not built.
IMPLEMENTATION = CYTHON if _CORE is not None else PYTHON
#: The default Engine class.
Engine: Any = _CORE.Engine if _CORE is not None else spec_batch.Engine


def _core_or_raise() -> ModuleType:
    core = _CORE
    if core is None:
        core = _load_core()
    if core is None:
        raise ValueError("engine='cython' asked for, but the Cython core is not built: reinstall with a C compiler")
    return core


def resolve(name: str | None) -> str:
    """The implementation name for `name` ("cython", "python", or None: IMPLEMENTATION)."""
    if name is None:
        return IMPLEMENTATION
    if name not in (CYTHON, PYTHON):
        raise ValueError(f"engine must be 'cython' or 'python', got {name!r}")
    return name


def engine_class(name: str | None) -> type:
    """The Engine class for "cython" or "python"; None means the default (IMPLEMENTATION)."""
    if resolve(name) == PYTHON:
        return spec_batch.Engine
    return _core_or_raise().Engine  # type: ignore[no-any-return]


def codec_for(name: str | None) -> Any:
    """The codec (journal records, id runs, checkpoint tables) of an implementation: the
    core module itself, or `spec/codec.py`. Both write identical bytes."""
    if resolve(name) == PYTHON:
        return spec_codec
    return _core_or_raise()


def evaluator_for(name: str | None) -> Any:
    """The fare evaluator class of an implementation: it is built from a `FareTables`
    and prices journeys (`FareSystem.quote`)."""
    if resolve(name) == PYTHON:
        return spec_fares.ReferenceEvaluator
    return _core_or_raise().FareEvaluator


def reports_for(name: str | None) -> Any:
    """The reconciliation reads' helpers of an implementation (`AccountTotals`, the sums
    of a settlement): the core module itself, or `spec/reports.py`. Both give the
    same results."""
    if resolve(name) == PYTHON:
        return spec_reports
    return _core_or_raise()
