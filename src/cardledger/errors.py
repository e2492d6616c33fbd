"""Typed exceptions for misuse of the API and for storage faults.

Operating errors inside a batch are result codes (`cardledger.Result`), never
exceptions. Each exception also derives from the builtin that fits, so callers can
catch either; each message says what to do.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every cardledger exception."""


class SchemaError(LedgerError, TypeError):
    """A batch of the wrong dtype, shape or memory layout; nothing was applied."""


class LedgerClosedError(LedgerError, ValueError):
    """The ledger was closed; open it again with cardledger.open(path)."""


class LedgerReadOnlyError(LedgerError, PermissionError):
    """A write was attempted on a ledger opened with readonly=True."""


class AccountNotFoundError(LedgerError, KeyError):
    """A query named an account the ledger does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "account not found"


class StorageError(LedgerError, OSError):
    """LMDB failed (disk full, I/O error…); the batch was not applied."""


class CorruptionError(LedgerError, RuntimeError):
    """Stored data failed a checksum, the hash chain or a replay check."""


class NotALedgerError(CorruptionError):
    """The directory holds an LMDB environment that is not a cardledger ledger."""


class NotLeaderError(LedgerError, ConnectionRefusedError):
    """A cluster node refused a write because it does not hold the write lease (or lost
    it before the batch reached the stream): the ops were certainly not applied. Send
    them to the leader, `leader` (its gateway address, "" while unknown)."""

    def __init__(self, message: str, leader: str = "") -> None:
        super().__init__(message)
        self.leader = leader


class ReplicationError(StorageError):
    """A cluster node could not learn whether a batch reached the stream (a publish
    timed out, the connection broke): the ops may or may not be applied. Resend them
    with the same ids to the leader: exactly-once makes that safe (a resent applied
    op answers EXISTS)."""
