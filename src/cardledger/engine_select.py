"""Chooses the engine implementation: the Cython core, or the pure-Python reference.

CARDLEDGER_PURE=1 forces the reference engine (the test suite runs once each way).
If the core is not built, the reference is used and IMPLEMENTATION says so.
"""

from __future__ import annotations

import os

from . import reference

if os.environ.get("CARDLEDGER_PURE", "") not in ("", "0"):
    Engine = reference.Engine
    IMPLEMENTATION = "python"
else:
    try:
        from ._core import Engine  # type: ignore[no-redef]

        IMPLEMENTATION = "cython"
    except ImportError:  # pragma: no cover - only without a compiler
        Engine = reference.Engine
        IMPLEMENTATION = "python"


def engine_class(name: str | None) -> type:
    """The Engine class for "cython" or "python"; None means the default (IMPLEMENTATION)."""
    if name is None:
        return Engine
    if name == "python":
        return reference.Engine
    if name == "cython":
        try:
            from ._core import Engine as CoreEngine
        except ImportError as e:
            raise ValueError("engine='cython' asked for, but the Cython core is not built: reinstall with a C compiler") from e
        return CoreEngine
    raise ValueError(f"engine must be 'cython' or 'python', got {name!r}")
