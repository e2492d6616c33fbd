"""cardledger: the transaction engine behind the Harbin trade-union member card.

An exactly-once, batch-first, double-entry ledger of int64 fen. The hot loop runs in
a Cython core (`cardledger._core`); a pure-Python engine (`cardledger.engine.spec`)
implements the same semantics and is used when the core is unavailable or when the
environment variable CARDLEDGER_PURE=1 forces it (the test suite runs under both).
`docs/architecture.md` says which room of the package owns what.
"""

from __future__ import annotations

from .aid import DisbursementReport, aid_report, disburse
from .commit.committer import Committer, QueueFullError
from .engine.select import IMPLEMENTATION, Engine
from .errors import (
    AccountNotFoundError,
    CorruptionError,
    LedgerClosedError,
    LedgerError,
    LedgerReadOnlyError,
    NotALedgerError,
    NotLeaderError,
    ReplicationError,
    SchemaError,
    StorageError,
)
from .ledger import AccountInfo, Ledger, VerifyReport, open
from .offers import OfferCatalog, OfferCatalogError
from .opsbuilder import build_ops
from .policies import PolicyError, PolicyFileError, SourcePolicy, load_policies
from .recover import RecoverReport, recover
from .verify import inspect
from .schema import (
    ACCOUNT_DTYPE,
    AMOUNT_MAX_FEN,
    BATCH_OPS_MAX,
    DEFAULT_CASH_CAP_FEN,
    JOURNAL_DTYPE,
    OP_DTYPE,
    RESULT_DTYPE,
    AccountFlags,
    AccountKind,
    OpFlags,
    OpKind,
    Result,
    TapType,
    new_ops,
)

__all__ = [
    "ACCOUNT_DTYPE",
    "AMOUNT_MAX_FEN",
    "BATCH_OPS_MAX",
    "DEFAULT_CASH_CAP_FEN",
    "IMPLEMENTATION",
    "JOURNAL_DTYPE",
    "OP_DTYPE",
    "RESULT_DTYPE",
    "AccountFlags",
    "AccountInfo",
    "AccountKind",
    "AccountNotFoundError",
    "Committer",
    "DisbursementReport",
    "CorruptionError",
    "Engine",
    "Ledger",
    "LedgerClosedError",
    "LedgerError",
    "LedgerReadOnlyError",
    "NotALedgerError",
    "NotLeaderError",
    "OpFlags",
    "OfferCatalog",
    "OfferCatalogError",
    "OpKind",
    "PolicyError",
    "PolicyFileError",
    "QueueFullError",
    "RecoverReport",
    "ReplicationError",
    "Result",
    "SchemaError",
    "SourcePolicy",
    "StorageError",
    "TapType",
    "VerifyReport",
    "aid_report",
    "build_ops",
    "disburse",
    "inspect",
    "load_policies",
    "new_ops",
    "open",
    "recover",
]
