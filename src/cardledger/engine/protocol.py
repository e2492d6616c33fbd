"""The Engine protocol: what the ledger asks of an engine, and nothing about storage.

An engine is the in-memory ledger state machine: accounts, holds, per-source
idempotency state, the decisions window and the cards' fare state. It applies a batch
of ops (OP_DTYPE) to that state and returns results and the journal records to
persist; it never reads or writes LMDB. Two classes implement it with the same
semantics, result for result: `engine.spec.batch.Engine` (pure Python, the
executable specification) and `cardledger._core.Engine` (Cython, `cext/`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Engine(Protocol):
    """The face every engine shows the ledger (see the module docstring)."""

    #: "cython" or "python".
    implementation: str
    #: The cash purse cap of cards opened with limit_fen=0.
    default_cap_fen: int

    @property
    def journal_seq(self) -> int:
        """journal_seq of the last decided op."""

    @property
    def recent_count(self) -> int:
        """Decisions held in the in-memory window since the last `take_decisions`."""

    # -- state in and out (checkpoints)
    def load_checkpoint(self, accounts: np.ndarray, sources: np.ndarray, pending: np.ndarray,
                        journal_seq: int) -> None:
        """Replace the whole state by a checkpoint's arrays."""

    def load_journeys(self, journeys: np.ndarray) -> None:
        """Replace every card's fare state (JOURNEY_DTYPE)."""

    def export_checkpoint(self, accounts_out: np.ndarray | None = None,
                          sort: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(accounts in creation order, sources, pending holds)."""

    def export_sources(self) -> np.ndarray:
        """The per-source idempotency state (SOURCE_DTYPE), in any order."""

    def export_journeys(self) -> np.ndarray:
        """Every card's fare state (JOURNEY_DTYPE, by account id)."""

    def snapshot_begin(self, accounts_buf: np.ndarray | None = None, journeys_buf: np.ndarray | None = None,
                       pending_buf: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Begin a checkpoint's snapshot: (accounts, pending, journeys), possibly copied on write."""

    def snapshot_complete(self) -> None:
        """Finish copying a snapshot begun by `snapshot_begin` (in the checkpoint thread)."""

    def snapshot_pending(self) -> bool:
        """Whether a snapshot is still being copied on write."""

    def clear_unused_legs(self, journeys: np.ndarray) -> None:
        """Zero, in place, the legs past each row's n_legs."""

    # -- the decisions window (the id index is fed from it)
    def take_decisions(self) -> tuple[np.ndarray, np.ndarray]:
        """Hand over and forget the decisions since the last call: (decisions, late)."""

    def candidates(self, ops: np.ndarray) -> np.ndarray:
        """Mask of ops whose id may have been decided before the in-memory window."""

    def recent_decisions(self, ops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The decisions held in the window of these ops' ids: (records, found mask)."""

    # -- batches
    def apply(self, ops: np.ndarray, prior: np.ndarray | None = None,
              has_prior: np.ndarray | None = None, refs: np.ndarray | None = None,
              bought: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Apply a batch: (results RESULT_DTYPE, journal JOURNAL_DTYPE of the newly decided ops);
        `refs` (REVERSE_REF_DTYPE, one per op) says what the taps REVERSE ops name are,
        `bought` (JOURNAL_DTYPE, one per op) the records of the purchases REFUND ops name,
        decided before the batch (journal_seq 0: none)."""

    def decided_records(self, sources: np.ndarray, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(journal records, found mask) of the ids decided in the in-memory window."""

    def replay(self, journal: np.ndarray) -> None:
        """Re-apply journal records as decided; ValueError if they do not reproduce.
        Checks that only new ops get (a positive time, unused fields zero; the tap
        horizon) are not applied: records decided before them replay as they were."""

    def last_batch_packed(self) -> bytes:
        """The last applied batch's journal records, packed as the journal stores them."""

    def last_batch_marks(self, stride: int) -> np.ndarray | None:
        """Where every stride-th record of `last_batch_packed` starts (None: not kept)."""

    # -- fares
    def set_fare_versions(self, versions: list) -> None:
        """Install the fare versions (TapTables, oldest first) taps are rated by."""

    def set_policy_versions(self, versions: list) -> None:
        """Install the source policy sets (`policies.PolicyVersion`, oldest first)."""
        ...

    def policy_in_force(self) -> int:
        """journal_seq of the SET_POLICIES record whose set is in force (0: none)."""
        ...

    def set_tap_horizon(self, horizon_us: int) -> None:
        """Refuse TAPs later than horizon_us from the next apply on."""

    # -- offers (docs/purchases.md)
    def set_offer_versions(self, versions: list) -> None:
        """Install the offer-catalog versions (OfferTables, oldest first) purchases are decided by."""

    def export_offer_state(self, sort: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slot use, card counters, refunded purchases): OFFER_BUDGET_DTYPE, CARD_OFFER_DTYPE, REFUNDED_DTYPE."""

    def load_offer_state(self, budgets: np.ndarray, cards: np.ndarray, refunded: np.ndarray) -> None:
        """Replace the offer state (as `export_offer_state` gives)."""

    def reserve_card_offers(self, n: int) -> None:
        """Make room for n cards' counters per offer now (memory only)."""

    def quote_purchase(self, card_id: int, merchant_id: int, gross_fen: int, time_us: int) -> tuple[int, int, int, int]:
        """(net, discount, union share, offer slot or NO_OFFER) a PURCHASE would decide now."""

    def journey_capacity(self) -> int:
        """Cards' fare state slots reserved (0 where the engine keeps no store)."""

    def reserve_journeys(self, n: int) -> None:
        """Make room for n cards' fare state now."""

    def prefault_journeys(self) -> None:
        """Fault the fare state store's memory in."""

    # -- queries
    def get_account(self, account_id: int) -> tuple | None:
        """One account's record (ACCOUNT_DTYPE order), or None."""

    def account_count(self) -> int:
        """Accounts ever opened, closed ones included."""
