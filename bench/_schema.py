"""The ledger's schema (dtypes, enums, limits) for the bench scripts.

The baselines and the workload need only `cardledger.schema`, which is plain Python.
Importing it normally runs `cardledger/__init__.py` too, which needs the whole package
(and picks the core); so when that import fails, for instance in a source tree whose
package does not import yet, this loads `src/cardledger/schema.py` by path instead and
says so in SCHEMA_ORIGIN. The baselines can then run even when the core cannot.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SCHEMA_PATH = Path(__file__).resolve().parent.parent / "src" / "cardledger" / "schema.py"

try:
    from cardledger import schema
except ImportError as exc:  # the package is not importable: use the source file
    _spec = importlib.util.spec_from_file_location("_cardledger_schema", _SCHEMA_PATH)
    if _spec is None or _spec.loader is None or not _SCHEMA_PATH.is_file():
        raise ImportError(
            f"cannot import cardledger.schema ({exc}) and {_SCHEMA_PATH} is missing: "
            "install the package (pip install -e .) or run from the repository"
        ) from exc
    schema = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = schema
    _spec.loader.exec_module(schema)
    SCHEMA_ORIGIN = f"{_SCHEMA_PATH} (loaded by path: import cardledger failed: {exc})"
else:
    SCHEMA_ORIGIN = str(schema.__file__)

AMOUNT_MAX_FEN: int = schema.AMOUNT_MAX_FEN
BATCH_OPS_MAX: int = schema.BATCH_OPS_MAX
CAP_MAX_FEN: int = schema.CAP_MAX_FEN
DEFAULT_CASH_CAP_FEN: int = schema.DEFAULT_CASH_CAP_FEN
INT64_MAX: int = schema.INT64_MAX
OP_DTYPE = schema.OP_DTYPE
RESULT_DTYPE = schema.RESULT_DTYPE
AccountKind = schema.AccountKind
OpKind = schema.OpKind
Result = schema.Result
new_ops = schema.new_ops

__all__ = [
    "AMOUNT_MAX_FEN",
    "BATCH_OPS_MAX",
    "CAP_MAX_FEN",
    "DEFAULT_CASH_CAP_FEN",
    "INT64_MAX",
    "OP_DTYPE",
    "RESULT_DTYPE",
    "SCHEMA_ORIGIN",
    "AccountKind",
    "OpKind",
    "Result",
    "new_ops",
    "schema",
]
