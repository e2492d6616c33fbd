"""The public face: `cardledger.open(path)` and the `Ledger` it returns.

A Ledger couples one engine (the in-memory state machine: `engine/`) with one ledger
directory (`store/`). `apply` runs a batch through the engine inside one LMDB write
transaction and returns only after that transaction's durable commit; `submit` does
the same with the commit in the pipeline's threads (`commit/pipeline.py`). If
anything fails before the commit, the engine is reloaded from disk, so memory never
runs ahead of what is stored.

This module checks arguments, takes the lock and orchestrates; the state each part
owns lives in one object: the `Store` (the environment), the `IdIndex`, the
`CheckpointWriter`, the `DataFileExtender` and the `FareVersions`. Reads are in
`queries.py`, `verify` in `verify.py`.

Threads of a writing ledger, each named for its one job: the caller's (the batch
path, under the lock), `cardledger-encode` and `cardledger-store` (the pipeline),
`cardledger-idflush`, `cardledger-checkpoint`, `cardledger-extend`,
`cardledger-prefault` and `cardledger-repair`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import lmdb
import numpy as np

from . import closing, feed, queries, settlement
from . import policies as policies_mod
from .policies import SourcePolicy
from .store import timeidx
from .commit.pipeline import CommitPipeline, StagedBatch
from .engine import select
from .engine.protocol import Engine
from .errors import (
    AccountNotFoundError,
    CorruptionError,
    LedgerClosedError,
    LedgerError,
    LedgerReadOnlyError,
    StorageError,
)
from .fares.system import FareSystem
from .queries import AccountInfo
from .schema import (
    ACCOUNT_DTYPE,
    CHECKPOINT_OPS_DEFAULT,
    DEFAULT_CASH_CAP_FEN,
    JOURNAL_DTYPE,
    JOURNEY_DTYPE,
    OP_DTYPE,
    PENDING_DTYPE,
    RESULT_DTYPE,
    REVERSE_REF_DTYPE,
    POLICY_SOURCE,
    TAP_HORIZON_NONE,
    AccountKind,
    OpKind,
    Result,
    check_batch,
    new_ops,
)
from .store.checkpoints import (
    CheckpointFileGone,
    CheckpointWriter,
    decode_stored_desc,
    is_checkpoint_file_name,
    no_offer_state,
    read_named_checkpoint,
)
from .store.datafile import DataFileExtender
from .store.env import DURABILITY_MODES, LMDB_CORRUPTION_ERRORS, LOAD_RETRIES_MAX, Store
from .store.fares import FareVersions
from .store.offers import OfferVersions
from .offers.catalog import OfferCatalog
from .store.policies import PolicyVersions
from .store.ids import IDS_FLUSH_OPS_DEFAULT, IdFlush, IdIndex
from .store.journal import (
    GENESIS_HASH,
    RECORD_MARK_STRIDE,
    DecodedBatches,
    RecordFetcher,
    batch_range,
    decode_batch,
    encode_batch,
    staged_record,
)
from .store.keys import KEY
from .verify import VerifyReport, verify

__all__ = ["AccountInfo", "DURABILITY_MODES", "Ledger", "OfferFigures", "PurchaseQuote", "VerifyReport", "open"]


@dataclass(frozen=True)
class PurchaseQuote:
    """What a PURCHASE would decide (`Ledger.quote_purchase`): the net the card pays, the
    discount, the union account's share of it, and the offer's id (None: no offer)."""

    net_fen: int
    discount_fen: int
    union_fen: int
    offer_id: str | None


@dataclass(frozen=True)
class OfferFigures:
    """One offer's figures (`Ledger.offer_report`), net of refunds."""

    discount_fen: int  # discount given
    union_fen: int  # the union account's share of it
    purchases: int  # purchases that got it (not refunded in full)
    budget_left_fen: int | None  # None: the offer has no budget

#: OpKind.TAP as a plain int: compared once per batch on the hot path.
_TAP = int(OpKind.TAP)
_REVERSE = int(OpKind.REVERSE)
_PURCHASE = int(OpKind.PURCHASE)
_REFUND = int(OpKind.REFUND)
#: Most decided ops held in memory between checkpoints (the core indexes them in 32 bits).
CHECKPOINT_OPS_MAX = 1 << 30
#: How far past this host's clock a TAP's time_us may be (a day): later ones are refused
#: with TAP_TIME_IN_FUTURE. A validator whose clock ran ahead would otherwise rate taps by
#: a future fare version and, since a fare version must start after every tap already
#: rated, keep any new version from being installed before that future instant.
TAP_TIME_AHEAD_MAX_US_DEFAULT = 24 * 3600 * 1_000_000
#: How many times one batch is retried after growing a full map.
MAP_GROW_RETRIES_MAX = 8


def open(  # noqa: A001 - the pinned public name
    path: str | os.PathLike[str],
    *,
    readonly: bool = False,
    default_cap_fen: int = DEFAULT_CASH_CAP_FEN,
    checkpoint_ops: int = CHECKPOINT_OPS_DEFAULT,
    engine: str | None = None,
    durability: str = "full",
    create: bool = False,
) -> "Ledger":
    """Open the ledger in directory `path` and return a Ledger.

    A missing ledger is FileNotFoundError unless create=True: then directory `path`
    (whose parent must exist) is made if missing, and a new ledger is created in it
    if it holds none. Creating is explicit so that a mistyped path fails instead of
    quietly starting an empty ledger. A directory holding other files and no ledger
    is refused (ValueError), as is one holding checkpoint files without their
    data.mdb (CorruptionError: a ledger that lost its data file).
    readonly=True opens an existing ledger for queries only; it reads committed
    state while a writer runs and never waits for it. `default_cap_fen` is the cash
    purse cap of cards opened with limit_fen=0 (fixed when the ledger is created).
    `checkpoint_ops` is how many decided ops accumulate between checkpoints.
    `engine` picks the implementation ("cython" or "python"); default: IMPLEMENTATION.
    `durability` is "full" (default) or "nometasync": see DURABILITY_MODES.
    """
    return Ledger(
        path,
        readonly=readonly,
        default_cap_fen=default_cap_fen,
        checkpoint_ops=checkpoint_ops,
        engine=engine,
        durability=durability,
        create=create,
    )


def _make_ledger_directory(path: str) -> None:
    """Make directory `path` for a new ledger (its parent must exist), or check that
    the existing one holds no files a ledger does not write."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(
            f"cannot create a ledger at {path!r}: its parent directory {parent!r} does not exist "
            "(a ledger directory is made, never a whole tree: create the parent first)"
        )
    try:
        os.mkdir(path)
        return
    except FileExistsError:
        if not os.path.isdir(path):
            raise NotADirectoryError(f"cannot create a ledger at {path!r}: it is a file") from None
    names = set(os.listdir(path))
    if any(is_checkpoint_file_name(n) for n in names):
        raise CorruptionError(
            f"{path!r} holds checkpoint files but no data.mdb: a ledger that lost its data file; "
            "restore it from a backup instead of creating a new one here"
        )
    if names - {"lock.mdb"}:
        raise ValueError(
            f"cannot create a ledger in {path!r}: it is not empty and holds no ledger "
            f"({', '.join(sorted(names)[:5])}{'…' if len(names) > 5 else ''}); give a new or empty directory"
        )


def _locked(method: Any) -> Any:
    """Serialise a Ledger method: the engine is not thread-safe, and the core releases
    the GIL while it applies a batch."""

    @functools.wraps(method)
    def wrapper(self: "Ledger", *args: Any, **kwargs: Any) -> Any:
        if self._pipeline is not None and self._pipeline.owns_current_thread():
            _refuse_in_pipeline_thread()
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class Ledger:
    """An open ledger. Use as a context manager, or call close()."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        default_cap_fen: int = DEFAULT_CASH_CAP_FEN,
        checkpoint_ops: int = CHECKPOINT_OPS_DEFAULT,
        engine: str | None = None,
        durability: str = "full",
        create: bool = False,
    ) -> None:
        self._lock = threading.RLock()
        if durability not in DURABILITY_MODES:
            raise ValueError(
                f"durability must be one of {sorted(DURABILITY_MODES)}, got {durability!r}; "
                "modes that can corrupt the ledger on power loss (no sync, write-map) are not offered"
            )
        self.durability = durability
        self.path = os.fspath(path)
        self._implementation = select.resolve(engine)
        self._engine_class = select.engine_class(self._implementation)
        self._codec = select.codec_for(self._implementation)
        self.readonly = readonly
        if not 1 <= checkpoint_ops <= CHECKPOINT_OPS_MAX:
            raise ValueError(f"checkpoint_ops must be in 1..{CHECKPOINT_OPS_MAX}, got {checkpoint_ops}")
        self.checkpoint_ops = int(checkpoint_ops)
        #: Decisions held in memory before they are flushed to the id index.
        self.ids_flush_ops = min(IDS_FLUSH_OPS_DEFAULT, self.checkpoint_ops)
        #: How far past this host's clock a TAP's time_us may be; None: no limit.
        self.tap_time_ahead_max_us: int | None = TAP_TIME_AHEAD_MAX_US_DEFAULT
        self._pid = os.getpid()
        self._store: Store | None = None
        self._engine: Engine | None = None
        #: Hash of the last journal batch encoded. While batches are in flight the
        #: pipeline's encode thread owns it; every other path first waits for it.
        self._last_hash = GENESIS_HASH
        self._journeys_prefaulted = 0  # journey store capacity already faulted in
        self._pipeline: CommitPipeline | None = None  # started by the first submit
        #: Set once a pipelined commit met another writer's batch: from then on every
        #: batch is applied synchronously (writers in several processes serialise).
        self._pipeline_off = False
        #: The cluster's hook (`cardledger.cluster`): called with each journal batch's
        #: (key, value) in the batch's write transaction, before its commit, in the
        #: thread that stores it; it returns once the batch is replicated, or raises
        #: and the batch is not applied (its caller gets the error). None: a ledger
        #: of its own (the default).
        self.replicator: Callable[[bytes, bytes], None] | None = None
        if readonly and create:
            raise ValueError("create=True needs readonly=False: a readonly ledger cannot be created")
        if not os.path.exists(os.path.join(self.path, "data.mdb")):
            if not create:
                raise FileNotFoundError(
                    f"no ledger at {self.path!r}: pass create=True to create one"
                    + (" (readonly=False)" if readonly else "")
                )
            _make_ledger_directory(self.path)
        store = self._store = Store(self.path, readonly, durability, self._codec)
        self._decoded = DecodedBatches(self._codec)
        self._reverse_refs = queries.ReverseRefs()  # committed EXITs' walks, for REVERSE
        self._ids = IdIndex(self._codec, store.state_db, store.ids_db, store.ids_late_db, store.journal_db,
                            self._decoded)
        self._checkpoints = CheckpointWriter(self.path, self._codec, store.state_db)
        self._datafile = DataFileExtender(self.path, readonly)
        self._fares = FareVersions(store.fares_db, store.meta_db)
        self._offers = OfferVersions(store.state_db, store.meta_db)
        self._policies = PolicyVersions(store.state_db)
        try:
            try:
                self.default_cap_fen = store.init_meta(default_cap_fen)
                self._load()
            except LMDB_CORRUPTION_ERRORS as e:
                # LMDB's own findings in a damaged data file: ours to name.
                raise CorruptionError(f"ledger at {self.path!r} is damaged: {type(e).__name__}: {e}") from e
            except lmdb.Error as e:
                raise StorageError(f"cannot open ledger at {self.path!r}: {type(e).__name__}: {e}") from e
        except BaseException:
            # A ledger that cannot be opened must not keep the environment open.
            store.close()
            self._store = None
            raise

    # ================================================================== public: lifecycle

    @_locked
    def close(self) -> None:
        """Close the ledger; further calls raise LedgerClosedError. Idempotent.

        A checkpoint file still being written is finished and recorded first.
        """
        store = self._store
        if store is not None and self._pid == os.getpid():
            try:
                if self._pipeline is not None:
                    try:
                        self._settle()  # every batch handed over is stored (or failed) first
                    finally:
                        self._pipeline.stop()
                        self._pipeline = None
                if not self.readonly:
                    self._checkpoints.finish(store.env)
            except lmdb.Error as e:
                warnings.warn(f"cardledger: checkpoint not recorded at close ({e})", RuntimeWarning)
            finally:
                self._checkpoints.close()
                self._ids.close()
                self._datafile.close()
        if store is not None:
            self._store = None
            self._engine = None
            if self._pid == os.getpid():
                store.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            if self._store is not None and self._pid == os.getpid():
                self.close()
        except Exception:
            pass

    @property
    def implementation(self) -> str:
        """Which engine runs this ledger: "cython" or "python"."""
        return self._implementation

    @property
    @_locked
    def journal_seq(self) -> int:
        """journal_seq of the last decided op."""
        self._usable()
        self._refresh()
        return int(self._engine.journal_seq)

    @property
    def checkpoint_pace_bytes_per_s(self) -> int | None:
        """Bytes a second a checkpoint file written beside the batches goes to disk at;
        None: as fast as it can (see `store.checkpoints`)."""
        return self._checkpoints.pace_bytes_per_s

    @checkpoint_pace_bytes_per_s.setter
    def checkpoint_pace_bytes_per_s(self, value: int | None) -> None:
        self._checkpoints.pace_bytes_per_s = value

    @property
    def checkpoint_error(self) -> OSError | None:
        """The last error writing a checkpoint file in the background (None: none)."""
        return self._checkpoints.error

    @checkpoint_error.setter
    def checkpoint_error(self, value: OSError | None) -> None:
        self._checkpoints.error = value

    # ================================================================== public: writes

    @_locked
    def apply(self, ops: np.ndarray) -> np.ndarray:
        """Apply a batch of ops (dtype OP_DTYPE); return one RESULT_DTYPE record per op.

        The batch is one LMDB write transaction; this returns after its durable
        commit. Operating errors are result codes; misuse raises (SchemaError for a
        malformed batch, LedgerReadOnlyError, LedgerClosedError); a storage failure
        raises StorageError and applies nothing.
        """
        self._usable()
        self._check_writable()
        ops = check_batch(ops)
        if len(ops) == 0:
            return np.zeros(0, dtype=RESULT_DTYPE)
        return self._apply_retrying(ops)

    def submit(self, ops: np.ndarray) -> Future[np.ndarray]:
        """Apply a batch like `apply`, but return at once a Future of its results.

        The batch runs through the engine now, in call order; its durable commit
        happens in the ledger's store thread while the caller goes on (for example
        with the next batch), and the future resolves only once that commit is
        durable. So `submit(a); submit(b)` applies a then b exactly as two `apply`
        calls would, with b's kernel overlapping a's commit: see `commit/pipeline.py`.
        At most PIPELINE_BATCHES_MAX batches are in flight; one more waits.

        Misuse raises here (SchemaError, LedgerReadOnlyError, LedgerClosedError); a
        storage failure is the future's exception (StorageError: the batch is not
        applied). The ops are copied, so the caller may reuse its array at once.
        Every other method of the ledger first waits for the batches in flight.
        The future's done-callbacks run in the ledger's store thread: they must not
        call the ledger (LedgerError), only hand the result on.
        """
        return self._submit(ops, wait=True)  # type: ignore[return-value]

    def submit_nowait(self, ops: np.ndarray) -> Future[np.ndarray] | None:
        """`submit`, or None at once (nothing done) where `submit` would wait: another
        thread holds the ledger, PIPELINE_BATCHES_MAX batches are in flight, the batch
        cannot be pipelined, or it would take a snapshot (a copy of every account).
        For an event loop, which must not block (the Committer)."""
        return self._submit(ops, wait=False)

    @_locked
    def install_fares(self, system: Any, effective_from_us: int) -> None:
        """Install a fare system (a `cardledger.fares.FareSystem`) in force from `effective_from_us`.

        Taps are rated by the version in force at their time_us. Versions are only
        appended: `effective_from_us` must be later than every installed version's
        and every tap already applied (so no posted fare is ever re-rated). Route
        and stop indexes stay stable: ids the previous version knew keep theirs, so
        take a TAP op's indexes from `fare_system(time_us)`, not from the object
        passed here (whose own indexes ignore earlier versions).
        Without any installed version, the first batch with a TAP installs the
        packaged Harbin system effective from 0.
        """
        store = self._usable()
        if self.readonly:
            raise LedgerReadOnlyError("a readonly ledger cannot install fare systems")
        if self.replicator is not None:
            # A fare version is stored beside the journal, not in it: a cluster's
            # followers would never see it, and would rate taps by other fares.
            raise LedgerError(
                "install_fares is not replicated: a cluster node's ledger takes only the packaged default "
                "fares (docs/cluster.md); install fare versions on every node's ledger before it joins"
            )
        if not isinstance(system, FareSystem):
            raise TypeError(f"install_fares needs a cardledger.fares.FareSystem, got {type(system).__name__}")
        if not system.files:
            raise ValueError(
                "this FareSystem has no source files to store: build it with FareSystem.from_gtfs(path)"
            )
        if not 0 <= effective_from_us < 1 << 63:
            raise ValueError(f"effective_from_us must be in [0, 2^63), got {effective_from_us}")
        with self._reloading_on_failure("fare system not installed"), store.begin_write() as txn:
            self._catch_up(txn)
            self._fares.install(txn, system, int(effective_from_us))
            self._use_fares(self._engine)

    @_locked
    def install_offers(self, catalog: Any, effective_from_us: int) -> None:
        """Install an offer catalog (a `cardledger.OfferCatalog`) in force from `effective_from_us`.

        A PURCHASE is decided by the catalog in force at its time_us (none: no discount).
        Versions are only appended: `effective_from_us` must be later than every
        installed version's and every PURCHASE already applied, so that no decided
        purchase is ever re-decided (replay stays deterministic). An offer keeps its
        budget across versions by its id (docs/purchases.md).
        """
        store = self._usable()
        if self.readonly:
            raise LedgerReadOnlyError("a readonly ledger cannot install offer catalogs")
        if self.replicator is not None:
            # Stored beside the journal, not in it, as fare versions are: a cluster's
            # followers would never see it, and would decide purchases differently.
            raise LedgerError(
                "install_offers is not replicated: install offer catalogs on every node's ledger before it joins"
            )
        if not isinstance(catalog, OfferCatalog):
            raise TypeError(f"install_offers needs a cardledger.OfferCatalog, got {type(catalog).__name__}")
        if not 0 <= effective_from_us < 1 << 63:
            raise ValueError(f"effective_from_us must be in [0, 2^63), got {effective_from_us}")
        with self._reloading_on_failure("offer catalog not installed"), store.begin_write() as txn:
            self._catch_up(txn)
            self._offers.install(txn, catalog, int(effective_from_us))
            self._use_offers(self._engine)

    @_locked
    def offer_catalog(self, time_us: int | None = None) -> Any:
        """The offer catalog in force at `time_us` (None: the latest installed), or None."""
        self._usable()
        self._refresh_offers()
        return self._offers.at(None if time_us is None else int(time_us))

    @_locked
    def quote_purchase(self, card_id: int, merchant_id: int, gross_fen: int, time_us: int) -> PurchaseQuote:
        """What a PURCHASE of `gross_fen` by `card_id` at `merchant_id` at `time_us` would
        decide now, against the ledger's current state (budgets, the card's counters, the
        union account's balance); nothing changes. An unknown card is quoted as a card
        of category 0; the card's balance is not checked (the purchase may still be
        refused)."""
        self._usable()
        self._refresh()
        self._refresh_offers()
        net, d, u, slot = self._engine.quote_purchase(int(card_id), int(merchant_id), int(gross_fen), int(time_us))
        return PurchaseQuote(net, d, u, None if slot < 0 else self._offers.slot_ids[slot])

    @_locked
    def offer_report(self) -> dict[str, OfferFigures]:
        """Per offer id (every offer of every installed catalog version): the discount
        given, the union's share of it, the purchases that got it, and the budget left
        in the latest version that has the offer (None: unlimited). Net of refunds: a
        refund takes back its floor share of the discount and of the union share, and
        a purchase refunded in full no longer counts."""
        self._usable()
        self._refresh()
        self._refresh_offers()
        ids = self._offers.slot_ids
        budget_of: dict[str, int] = {}
        for t in self._offers.tables:
            for oid, b in zip(t.ids, t.budget_fen.tolist()):
                budget_of[oid] = b
        # The engine keeps each offer's use net of refunds (the discount given is what
        # its budget has spent): no purchase is read.
        slots, _, _ = self._engine.export_offer_state(sort=False)
        use = {row[0]: row[1:] for row in slots.tolist()}
        out = {}
        for k, oid in enumerate(ids):
            given, union, count = use.get(k, (0, 0, 0))
            out[oid] = OfferFigures(given, union, count, None if not budget_of.get(oid) else budget_of[oid] - given)
        return out

    def _refresh_offers(self) -> None:
        """Pick up offer catalogs another process installed."""
        with self._store.begin_read() as txn:
            if self._offers.changed(txn):
                self._offers.load(txn)
                self._use_offers(self._engine)
    def install_policies(self, policies: Any) -> int:
        """Install a set of source policies (`cardledger.SourcePolicy`), replacing the set
        in force from the next batch on; return the journal_seq of its SET_POLICIES record.

        Once a set is installed, every new op must be allowed by the policy whose source
        range covers its source, else it fails with Result.SOURCE_NOT_ALLOWED (journaled,
        nothing moves); an empty list allows nothing at all, and None lifts enforcement
        (every op allowed, as before any install). Within one set source ranges may not
        overlap (PolicyError, a ValueError, naming both). The install is itself a journal
        record, and the set is stored beside it for audit (`policy_history`). Refused on
        a cluster node's ledger (LedgerError): see docs/policies.md.
        """
        self._usable()
        if self.readonly:
            raise LedgerReadOnlyError("a readonly ledger cannot install policies")
        if self.replicator is not None:
            # The set is stored beside the journal, not in it: a follower would replay the
            # SET_POLICIES record without its set.
            raise LedgerError(
                "install_policies is not replicated: a cluster node's ledger cannot install source policies "
                "(docs/policies.md); install them on a ledger of its own"
            )
        data = policies_mod.encode_set(policies_mod.check_set(policies))
        op = new_ops(1)
        op["source"], op["kind"] = POLICY_SOURCE, OpKind.SET_POLICIES
        op["time_us"] = time.time_ns() // 1000
        op["user_data"] = policies_mod.digest(data)

        def store_set(txn: Any) -> None:
            jseq = int(self._engine.journal_seq) + 1
            op["seq"] = jseq
            self._policies.put(txn, jseq, data)
            self._engine.set_policy_versions(self._policies.versions)

        result = self._apply_retrying(op, prepare=store_set)[0]
        if result["code"] != Result.OK:  # pragma: no cover - the set was stored for this very record
            raise CorruptionError(f"the policy set's record was refused: {Result(int(result['code'])).name}")
        return int(result["journal_seq"])

    @_locked
    def policies(self) -> list[SourcePolicy] | None:
        """The source policies in force, sorted by first_source; None when none is
        enforced (never installed, or lifted by installing None)."""
        self._usable()
        self._refresh()
        jseq = int(self._engine.policy_in_force())
        if jseq == 0:
            return None
        v = next(v for v in self._policies.versions if v.journal_seq == jseq)
        return list(v.policies)

    @_locked
    def policy_history(self) -> list[dict[str, Any]]:
        """Every policy set installed, oldest first, for audit: its SET_POLICIES
        record's `journal_seq` and `time_us` (when it was installed), its `digest` (the
        record's user_data), and `policies` (a list of SourcePolicy; None: enforcement
        lifted). Each set is in force from its journal_seq to the next one's."""
        store = self._usable()
        self._refresh()
        out = []
        with store.begin_read() as txn:
            self._policies.load(txn)
        for v in self._policies.versions:
            rec = self.journal(v.journal_seq, v.journal_seq + 1)
            out.append({"journal_seq": v.journal_seq, "time_us": int(rec["time_us"][0]) if len(rec) else None,
                        "digest": v.digest, "policies": None if v.policies is None else list(v.policies)})
        return out

    @_locked
    def checkpoint(self) -> None:
        """Take a checkpoint now and wait until it is durable.

        Checkpoints are otherwise taken every `checkpoint_ops` decided ops, with the
        account snapshot written in the background.
        """
        store = self._usable()
        if self.readonly:
            raise LedgerReadOnlyError("a readonly ledger cannot write checkpoints")
        with self._reloading_on_failure("checkpoint not written"):
            self._checkpoints.finish(store.env)
            self._begin_transaction()
            with store.begin_write() as txn:
                self._catch_up(txn)
                if self._engine.journal_seq != self._checkpoints.ckpt_seq:
                    self._take_snapshot(txn)
            self._committed()
            self._checkpoints.finish(store.env)

    @_locked
    def append_replicated(self, values: list[bytes]) -> int:
        """Append journal batches written by another ledger (a cluster's leader), as
        they are, and apply them; return the new journal_seq.

        Each value is one journal batch as the leader stored it (header and packed
        records). They must follow this ledger's journal: the first starts right
        after `journal_seq` and each chains to the previous batch's hash; the
        engine replays them and checks that every record reproduces its figures
        (CorruptionError otherwise, and nothing is appended). One write transaction
        for all of them; checkpoints and id flushes are taken as on the batch path.
        A ledger without fare versions installs the packaged default first, as the
        leader did before its first tap.
        """
        self._usable()
        self._check_writable()
        if not values:
            return int(self._engine.journal_seq)
        for attempt in range(MAP_GROW_RETRIES_MAX + 1):
            try:
                return self._append_replicated_once(values)
            except StorageError as e:
                if not isinstance(e.__cause__, lmdb.MapFullError) or attempt == MAP_GROW_RETRIES_MAX:
                    raise
                self._store.grow_map()  # (the engine was reloaded: the batches are applied again)
        raise AssertionError("unreachable")

    def _append_replicated_once(self, values: list[bytes]) -> int:
        """`append_replicated` in one write transaction (StorageError from a full map)."""
        store = self._store
        with self._reloading_on_failure("replicated batches not applied"):
            self._begin_transaction()
            try:
                with store.begin_write() as txn:
                    self._catch_up(txn)
                    if not len(self._fares):
                        self._fares.install_default(txn)
                        self._use_fares(self._engine)
                    expected_first = int(self._engine.journal_seq) + 1
                    for value in values:
                        first, last = batch_range(value)
                        if first != expected_first:
                            raise CorruptionError(
                                f"a replicated batch {first}..{last} does not follow journal_seq {expected_first - 1}"
                            )
                        store.put_batch(txn, KEY.pack(last), value)
                        expected_first = last + 1
                    self._replay_from(txn, int(self._engine.journal_seq), index=True)
                    self._ids.merge_step(txn)
                    if self._checkpoints.due(self._engine, self.checkpoint_ops):
                        self._take_snapshot(txn)
                    elif self._flush_due():
                        self._ids.flush_now(txn, self._engine)
            finally:
                self._ids.transaction_done()
            self._committed()
        return int(self._engine.journal_seq)

    @property
    @_locked
    def last_batch_hash(self) -> bytes:
        """The hash of the last journal batch (32 zero bytes before the first): the
        head of the hash chain, equal on every replica at the same journal_seq."""
        self._usable()
        self._refresh()
        return self._last_hash

    @_locked
    def backup(self, path: str | os.PathLike[str]) -> None:
        """Write a consistent copy of the ledger to directory `path` (new or empty).

        Works while writers run (here or in other processes): the copy is the ledger
        as of one committed batch, LMDB compacted, with the checkpoint file that
        snapshot names. Open it with cardledger.open(path).
        """
        self._usable().backup(os.fspath(path))

    @_locked
    def reserve_journeys(self) -> None:
        """Make room for every account's fare state now and fault its memory in.

        The per-card fare state (journeys) grows at once to the number of accounts on
        the first tap past its room, and its memory is then faulted in beside the
        batches; the first batches of taps pay for both, and the hold map of metro
        entries rehashes as it fills. Call this before a peak, e.g. after opening or
        after opening many cards, to pay for it here instead (room for the holds of
        one card in four). Memory only: nothing is written, and results never depend
        on it.
        """
        self._usable()
        engine = self._engine
        engine.reserve_journeys(engine.account_count())
        self._journeys_prefaulted = engine.journey_capacity()
        engine.prefault_journeys()

    @_locked
    def reserve_offer_counters(self, counters_per_card: int = 1) -> None:
        """Make room for the cards' counters of limited offers now and fault their
        memory in: `counters_per_card` for every account (default one).

        A card gets a counter for each offer with a `per_card_day_count` or a
        `per_card_month_discount_fen` it buys with (docs/purchases.md); the table and
        its map grow as new cards use new offers, and the batch that grows them pays
        for copying and faulting in the memory. Call this before a purchase-heavy hour
        (as `reserve_journeys` before a peak of taps) to pay for it here instead.
        Memory only: nothing is written, and results never depend on it.
        """
        self._usable()
        if counters_per_card < 1:
            raise ValueError(f"counters_per_card must be at least 1, got {counters_per_card}")
        self._engine.reserve_card_offers(self._engine.account_count() * counters_per_card)

    # ================================================================== public: reads

    def balance(self, account_id: int, as_of_us: int | None = None) -> int:
        """Available balance in fen: for a card both purses; 0 for a closed account.

        With `as_of_us`: the balance its records with event time before `as_of_us`
        posted (credits minus debits), as the ledger knows them now (a late upload
        with an earlier event time counts). Holds count when posted, as in `settle`:
        a hold still open at that time is not subtracted."""
        row = self._account_row(account_id)
        if as_of_us is None:
            return queries.balance_of(row)
        if row[ACCOUNT_DTYPE.names.index("kind")] == AccountKind.CARD:
            recs = self.statement(account_id, None, int(as_of_us))  # a card's few records, by its chain
        else:
            recs = self.query(None, int(as_of_us), account_id=account_id)  # a scan: its records are many
        return settlement.net_change_fen(recs, int(account_id))

    @_locked
    def query(self, start_us: int | None = None, end_us: int | None = None, account_id: int | None = None,
              kinds: Any = None, user_data: int | None = None, limit: int | None = None) -> np.ndarray:
        """Journal records (JOURNAL_DTYPE) of successful ops, selected by event time in
        [start_us, end_us), by account (one it moved money of or acted on: debit_id,
        credit_id, or union_id, a purchase's or refund's union account), by op kinds
        and by `user_data`, ordered by (time_us, journal_seq), at most `limit` of them.

        A time range reads only the stored batches whose event times meet it (the
        journal's time index, `store/timeidx.py`); a card without a time range walks
        its records (its statement); anything else reads the whole journal, filtering
        each stored batch as it is read."""
        store = self._usable()
        self._refresh()
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        kind_codes = None if kinds is None else np.array([int(k) for k in kinds], dtype=np.uint16)

        def keeping(recs: np.ndarray) -> np.ndarray:
            keep = recs["code"] == Result.OK
            if start_us is not None:
                keep &= recs["time_us"] >= start_us
            if end_us is not None:
                keep &= recs["time_us"] < end_us
            if account_id is not None:
                keep &= ((recs["debit_id"] == account_id) | (recs["credit_id"] == account_id)
                         | (recs["union_id"] == account_id))
            if kind_codes is not None:
                keep &= np.isin(recs["kind"], kind_codes)
            if user_data is not None:
                keep &= recs["user_data"] == np.uint64(user_data)
            return keep

        if (start_us is None and end_us is None and account_id is not None
                and self._account_row(account_id)[ACCOUNT_DTYPE.names.index("kind")] == AccountKind.CARD):
            # A card's records are few: its statement chain reads them alone. A merchant's
            # or an operator's run to millions, spread over every batch: a scan is faster.
            recs = self.statement(account_id)
            recs = recs[keeping(recs)]
        else:
            # Each batch is filtered as it is read, its matches copied once into the
            # result: memory holds the matches, not the range.
            with store.begin_read() as txn:
                ranges = timeidx.batch_ranges_meeting(txn, store, start_us, end_us)
                kept = queries.Gathered(sum(last - first + 1 for first, last in ranges))
                for _, last in ranges:
                    key = KEY.pack(last)
                    batch = decode_batch(self._codec, key, txn.get(key, db=store.journal_db)).records
                    kept.add(batch, keeping(batch))
            recs = kept.records()
        return recs if limit is None else recs[:limit]

    @_locked
    def reindex(self) -> int:
        """Write the time index entries of stored batches that lack one (batches stored
        before the index existed, or copied by `recover`); return how many."""
        store = self._usable()
        self._check_writable()
        with store.begin_write() as txn:
            todo = timeidx.missing(txn, store)
            for last in todo:
                key = KEY.pack(last)
                recs = decode_batch(self._codec, key, txn.get(key, db=store.journal_db)).records
                timeidx.put(txn, store.state_db, key, recs)
        return len(todo)

    def account(self, account_id: int) -> AccountInfo:
        """Full state of one account (kind, purses, flags, cap, totals)."""
        return queries.account_info(self._account_row(account_id))

    @_locked
    def accounts(self) -> np.ndarray:
        """Every account's state (ACCOUNT_DTYPE), in the order they were opened."""
        self._usable()
        self._refresh()
        return self._engine.export_checkpoint()[0]

    def follow(self, after_journal_seq: int = 0, *, idle_timeout_s: float | None = None) -> Iterator[np.ndarray]:
        """Yield the journal records (JOURNAL_DTYPE) of each batch committed after
        `after_journal_seq`, one array per batch, in order, as they commit.

        Works in any process, readonly included, and resumes from any position: pass
        the last journal_seq already handled. Runs until the caller stops iterating,
        or, with `idle_timeout_s`, until no batch has committed for that long. Each
        batch must chain to the one before it (CorruptionError otherwise). What a
        data warehouse loader or a notifier subscribes to (see `feed.py`)."""
        self._check_open()
        return feed.follow(self._check_open, int(after_journal_seq), idle_timeout_s)

    def batches(self, after_journal_seq: int = 0, end_journal_seq: int | None = None) -> Iterator[np.ndarray]:
        """Yield the committed journal records after `after_journal_seq` (and before
        `end_journal_seq`), one array per stored batch, in order; memory stays that
        of one batch whatever the journal's length."""
        return feed.batches(self._check_open(), int(after_journal_seq), end_journal_seq)

    def settle(self, start_us: int | None, end_us: int | None) -> np.ndarray:
        """Per account, the successful ops whose event time is in [start_us, end_us)
        (None: open), counted, and the debits and credits they posted, in fen: an
        array with fields account_id, account_kind, ops, debits_fen, credits_fen, one
        row per account touched, by account id. A hold counts when it is posted, at
        the POST's time. The live figure, as the ledger holds it now (late uploads
        included); reads the journal in stored batches (`settlement.py`)."""
        return settlement.settle(self.batches_meeting(start_us, end_us), self.accounts(), start_us, end_us,
                                 self._implementation)

    def close_day(self, start_us: int, end_us: int) -> dict[str, Any]:
        """Close the service day [start_us, end_us) (`days.service_day` gives them):
        record its settlement in the journal, so that `verify` checks it and nobody
        changes a closed day silently. Returns the day's report (`accounts`, and `late`:
        items of earlier closed days that arrived since the previous close). A day is
        closed once: closing it again reports it as closed (`already_closed`). See
        `closing.py`."""
        return closing.close(self, int(start_us), int(end_us))

    def day_report(self, start_us: int, end_us: int) -> dict[str, Any]:
        """The report of the service day [start_us, end_us): exactly what was closed,
        with the late items known now, if it was closed; else the live settlement."""
        return closing.report(self, int(start_us), int(end_us))

    def batches_meeting(self, start_us: int | None, end_us: int | None) -> Iterator[np.ndarray]:
        """Yield the journal records of each stored batch that may hold an event time in
        [start_us, end_us) (the time index's choice: filter the records yourself), in
        journal order; a batch the index does not know is yielded too."""
        store = self._check_open()
        with store.begin_read() as txn:
            lasts = timeidx.batches_meeting(txn, store, start_us, end_us)
        for lo in range(0, len(lasts), 256):
            with store.begin_read() as txn:
                for last in lasts[lo : lo + 256]:
                    key = KEY.pack(last)
                    yield decode_batch(self._codec, key, txn.get(key, db=store.journal_db)).records

    @_locked
    def cards_of_member(self, member_ref: int) -> list[int]:
        """The cards of member `member_ref` (the user_data of their OPEN, carried over
        by REPLACE to the new card), replaced and closed ones included, oldest first."""
        self._usable()
        self._refresh()
        if not 0 < int(member_ref) < 1 << 64:
            raise ValueError(f"member_ref must be in 1..2**64-1, got {member_ref}")
        accounts = self._engine.export_checkpoint()[0]
        mine = (accounts["member_ref"] == np.uint64(member_ref)) & (accounts["kind"] == int(AccountKind.CARD))
        return [int(x) for x in accounts["id"][mine]]

    @_locked
    def lookup(self, ops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the ledger decided for these ops' ids: (records, decided).

        `ops` is an OP_DTYPE array; only each op's (source, seq) is read. `records[i]`
        is the journal record (JOURNAL_DTYPE) that decided op i's id, successful or
        failed, where `decided[i]`; zeros where the id was never decided. Nothing is
        applied: a caller that must know whether an id is still free before sending it
        (an aid run choosing its next attempt, a gateway answering "what became of my
        op?") asks here. A readonly ledger does not keep the decisions it replays, so
        this is a writer's call (LedgerReadOnlyError).
        """
        store = self._usable()
        self._check_writable()
        ops = check_batch(ops)
        if len(ops):
            # Another writer process may have decided some of these ids: catch up first,
            # under the write lock as a batch would (nothing is written).
            with self._reloading_on_failure("lookup failed"):
                txn = store.begin_write()
                try:
                    self._catch_up(txn)
                finally:
                    txn.abort()
        records, decided = self._engine.recent_decisions(ops)
        if len(ops):
            prior, has_prior = self._lookup_prior(None, ops)
            if has_prior is not None:
                if not decided.any():
                    return prior, has_prior  # (no copy of a wide array)
                records[has_prior] = prior[has_prior]
                decided |= has_prior
        return records, decided

    @_locked
    def statement(self, account_id: int, start_us: int | None = None, end_us: int | None = None) -> np.ndarray:
        """Journal records (JOURNAL_DTYPE) that moved money of, or acted on, one account.

        Only successful ops appear. With start_us / end_us, only records whose event
        time is in [start_us, end_us). Ordered by event time, then journal_seq.

        An account's records are walked back along its chain (each record's
        debit_prev_seq / credit_prev_seq), except a SUBSIDY account's: it may be an
        offer's union account, whose PURCHASE and REFUND legs (union_id) are in no
        chain, so its statement is `query(start_us, end_us, account_id=...)`, a scan.
        """
        row = self._account_row(account_id)
        if row[ACCOUNT_DTYPE.names.index("kind")] == AccountKind.SUBSIDY:
            return self.query(start_us, end_us, account_id=account_id)
        store = self._store
        with store.begin_read() as txn:
            return queries.statement(self._codec, txn, store.journal_db, int(account_id), row, start_us, end_us)

    @_locked
    def journal(self, start_seq: int = 1, end_seq: int | None = None) -> np.ndarray:
        """Journal records with start_seq <= journal_seq < end_seq (JOURNAL_DTYPE)."""
        store = self._usable()
        with store.begin_read() as txn:
            return queries.journal_range(store.iter_batches(txn, max(start_seq, 1) - 1, None), start_seq, end_seq)

    @_locked
    def fare_system(self, time_us: int | None = None) -> Any:
        """The FareSystem in force at `time_us` (default: the latest installed).

        Gateways use it to turn GTFS route and stop ids into a TAP op's indexes
        (`route_index`, `stop_index`). Raises LookupError if none is in force.
        """
        self._usable()
        self._refresh()
        self._refresh_fares()
        chosen = self._fares.at(time_us)
        if chosen is None:
            raise LookupError("no fare system is in force at that time: install one with install_fares")
        return chosen

    @_locked
    def denylist(self) -> np.ndarray:
        """Card ids that validators must refuse, sorted: frozen, closed, or unable to pay.

        A card cannot pay when its balance (available plus what its open metro
        entry holds, so a card mid-ride is not refused at the exit gate) is at or
        below minus the largest negative balance any product of the latest fare
        system allows (with no allowance configured: at or below zero). Offline
        validators load this list; an online gate checks the same thing.
        """
        self._usable()
        self._refresh()
        self._refresh_fares()
        return queries.denylist(self._engine.export_checkpoint()[0], self._fares.tap_tables())

    @_locked
    def overdue_entries(self, time_us: int) -> np.ndarray:
        """Card ids whose open metro (gated) entry has timed out at `time_us`, sorted:
        the cards a SWEEP tap at that instant would charge the incomplete charge.

        An open entry is settled at the card's next ENTRY, at its next EXIT after the
        network's timeout, by a SWEEP, or, once timed out, by the card's next tap of any
        kind (in a settlement record of its own, docs/fares.md). A card that does not
        tap again stays listed, so a gateway sweeps, e.g. nightly: one SWEEP op per card
        listed, with ids of its own and this `time_us`.
        Frozen and closed cards are left out: a SWEEP of theirs would be refused (a
        REPLACE voids the old card's holds; its open entry goes with them).
        """
        self._usable()
        if type(time_us) is not int and not isinstance(time_us, np.integer):
            raise TypeError(f"time_us must be an int (µs since the epoch), got {type(time_us).__name__}")
        self._refresh()
        self._refresh_fares()
        return queries.overdue_entries(self._engine, self._fares.tap_tables(), int(time_us))

    @_locked
    def verify(self) -> VerifyReport:
        """Check the whole ledger and report every problem found.

        Walks the journal from the first batch (hash chain, record checksums),
        replays it into a fresh engine and compares with the live state, and checks
        the invariants: the sum of all balances is zero, pending debits equal
        pending credits, each balance equals its posted totals, caps and
        no-overdraft hold, closed accounts are empty.
        """
        store = self._usable()
        self._refresh()
        self._refresh_fares()
        fresh = self._engine_class(self.default_cap_fen)
        fresh.set_fare_versions(self._fares.tap_tables())
        with store.begin_read() as txn:  # (verify gives `fresh` the stored policy sets)
            if self._offers.changed(txn):
                self._offers.load(txn)
            self._use_offers(fresh)
            return verify(store, txn, fresh, self._engine, self.checkpoint_ops)

    # ================================================================== checks

    def _usable(self) -> Store:
        """The store, once the ledger is known open in this process and no batch is in
        flight (batches in flight are waited for); raises otherwise."""
        store = self._check_open()
        if self._pipeline is not None:
            self._settle()
        return store

    def _check_open(self) -> Store:
        if self._store is None:
            raise LedgerClosedError(f"ledger {self.path!r} is closed: open it again with cardledger.open(path)")
        if os.getpid() != self._pid:
            raise LedgerError(
                "this Ledger was opened in another process (before fork()); open the ledger again in this process"
            )
        return self._store

    def _check_writable(self) -> None:
        if self.readonly:
            raise LedgerReadOnlyError(f"ledger {self.path!r} was opened readonly: open it with readonly=False to apply ops")

    @_locked
    def _account_row(self, account_id: int) -> tuple:
        self._usable()
        self._refresh()
        row = self._engine.get_account(int(account_id))
        if row is None:
            raise AccountNotFoundError(f"account {account_id} does not exist: open it with an OPEN op first")
        return row

    # ================================================================== loading

    def _load(self, txn: Any = None) -> None:
        """(Re)build the engine: checkpoint file, id state, then replay of the journal.

        Without `txn`, a read transaction is used, and renewed if another process
        replaced the checkpoint file between our reading its name and opening it.
        Inside a write transaction that cannot happen: a file is complete before it is
        named, and only files older than the one named are ever deleted.
        """
        if txn is not None:
            return self._load_from(txn)
        for attempt in range(LOAD_RETRIES_MAX):
            with self._store.begin_read() as t:
                try:
                    return self._load_from(t)
                except CheckpointFileGone:
                    if attempt + 1 == LOAD_RETRIES_MAX:
                        raise
        raise AssertionError("unreachable")

    def _load_from(self, txn: Any) -> None:
        store = self._store
        self._reverse_refs.clear()  # (rows of records a failed batch decided: gone with it)
        desc = decode_stored_desc(txn, store.state_db)
        ids_upto, sources, id_log = self._ids.read(txn)
        engine = self._engine_class(self.default_cap_fen)
        if desc is None:
            accounts = np.zeros(0, dtype=ACCOUNT_DTYPE)
            pending = np.zeros(0, dtype=PENDING_DTYPE)
            journeys = np.zeros(0, dtype=JOURNEY_DTYPE)
            offer_state = no_offer_state()
            ckpt_seq, last_hash = 0, GENESIS_HASH
        else:
            accounts, pending, journeys, offer_state = read_named_checkpoint(self._codec, self.path, desc)
            ckpt_seq, last_hash = desc.journal_seq, desc.last_batch_hash
        if ckpt_seq > ids_upto:
            raise CorruptionError(f"checkpoint at {ckpt_seq} is newer than the id state at {ids_upto}")
        engine.load_checkpoint(accounts, sources, pending, ckpt_seq)
        engine.load_journeys(journeys)
        self._fares.load(txn)
        self._use_fares(engine)
        self._offers.load(txn)
        self._use_offers(engine, offer_state)
        self._policies.load(txn)
        engine.set_policy_versions(self._policies.versions)
        self._engine = engine
        self._last_hash = last_hash
        self._ids.adopt(ids_upto, id_log)
        self._checkpoints.loaded(ckpt_seq)
        self._replay_from(txn, ckpt_seq)

    def _replay_from(self, txn: Any, after_seq: int, index: bool = False) -> None:
        """Replay journal batches after `after_seq` into the engine, checking the chain.

        `index`: the batches were just put in `txn` by this ledger (a follower appending
        another's batches): also write what a batch's own writer writes beside it, its
        time index entry and the latest tap time."""
        for batch in self._store.iter_batches(txn, after_seq, self._last_hash):
            try:
                self._engine.replay(batch.records)
            except ValueError as e:
                raise CorruptionError(f"journal replay failed: {e}") from e
            self._last_hash = batch.hash
            if index:
                recs = batch.records
                timeidx.put(txn, self._store.state_db, KEY.pack(batch.last_seq), recs)
                rated = (recs["kind"] == _TAP) & (recs["code"] == Result.OK)
                if rated.any():
                    self._fares.note_tap_time(txn, int(recs["time_us"][rated].max()))
                bought = (recs["kind"] == _PURCHASE) & (recs["code"] == Result.OK)
                if bought.any():
                    self._offers.note_purchase_time(txn, int(recs["time_us"][bought].max()))
        if self.readonly and self._engine.recent_count > self.ids_flush_ops:
            # A reader never applies ops, so it has no use for the decisions window.
            self._engine.take_decisions()

    def _reload_after_failure(self) -> None:
        # The engine may hold a batch that never committed: rebuild it from disk.
        try:
            self._load()
        except lmdb.Error as e:  # pragma: no cover - disk gone entirely
            self._engine = self._engine_class(self.default_cap_fen)
            raise StorageError(f"cannot reload the ledger after a failed batch: {e}") from e

    @contextlib.contextmanager
    def _reloading_on_failure(self, what: str) -> Iterator[None]:
        """Whatever fails inside reloads the engine from disk (it may hold a change that
        never committed); an LMDB error becomes StorageError("<what>: ...")."""
        try:
            yield
        except lmdb.Error as e:
            self._reload_after_failure()
            raise StorageError(f"{what}: {e}") from e
        except BaseException:
            self._reload_after_failure()
            raise

    def _catch_up(self, txn: Any) -> None:
        """Bring the engine up to the stored journal (another process may have written)."""
        if self._fares.changed(txn):
            self._fares.load(txn)
            self._use_fares(self._engine)
        if self._offers.changed(txn):
            self._offers.load(txn)
            self._use_offers(self._engine)
        head = self._store.journal_head(txn)
        engine = self._engine
        if head == 0:
            if engine.journal_seq != 0:
                raise CorruptionError("the journal is empty but this ledger had applied ops")
            return
        if head == engine.journal_seq:
            return
        if head < engine.journal_seq:
            raise CorruptionError(f"the stored journal ends at {head}, before this ledger's {engine.journal_seq}")
        if self._policies.changed(txn):
            # Another process installed a set (always with a journal record): the replay needs it.
            self._policies.load(txn)
            engine.set_policy_versions(self._policies.versions)
        if not self.readonly:
            if self._ids.stored_upto(txn) != self._ids.ids_upto:
                # Another writer took a snapshot: its id state replaces ours.
                self._load(txn)
                return
            # Another writer may have merged slices of the id log: the log as stored.
            self._ids.refresh_merge(txn)
        self._replay_from(txn, engine.journal_seq)

    def _refresh(self) -> None:
        """A reader catches up with what writers committed since its last look."""
        if not self.readonly:
            return
        store = self._store
        try:
            with store.begin_read() as txn:
                self._catch_up(txn)
        except lmdb.MapResizedError:
            store.adopt_map_size()
            with store.begin_read() as txn:
                self._catch_up(txn)

    def _refresh_fares(self) -> None:
        """Pick up fare versions another process installed (writers refresh only on apply)."""
        with self._store.begin_read() as txn:
            if self._fares.changed(txn):
                self._fares.load(txn)
                self._use_fares(self._engine)

    def _fares_installed(self) -> bool:
        """Whether a fare system is installed (the checkpoint thread asks)."""
        return bool(len(self._fares))

    def _use_fares(self, engine: Any) -> None:
        """Give the engine the fare versions loaded."""
        engine.set_fare_versions(self._fares.tap_tables())

    def _use_offers(self, engine: Any, state: tuple | None = None) -> None:
        """Give the engine the offer-catalog versions loaded (and, on a load, the offer
        state of the checkpoint)."""
        if state is not None:
            engine.load_offer_state(*state)
        engine.set_offer_versions(self._offers.tables)

    # ================================================================== the write path: apply

    def _apply_retrying(self, ops: np.ndarray, prepare: Callable[[Any], None] | None = None) -> np.ndarray:
        """Apply one batch synchronously: grow a full map and retry; on any failure
        reload the engine from disk, so memory never runs ahead of what is stored.
        `prepare(txn)`, if given, runs in the batch's transaction before its kernel."""
        for attempt in range(MAP_GROW_RETRIES_MAX + 1):
            try:
                return self._apply_once(ops) if prepare is None else self._apply_once(ops, prepare)
            except lmdb.MapFullError:
                self._reload_after_failure()
                if attempt == MAP_GROW_RETRIES_MAX:
                    raise StorageError("LMDB map still full after growing it: is the disk full?")
                self._store.grow_map()
            except lmdb.Error as e:
                self._reload_after_failure()
                raise StorageError(f"batch not applied: {type(e).__name__}: {e}") from e
            except BaseException:
                self._reload_after_failure()
                raise
        raise AssertionError("unreachable")

    def _apply_once(self, ops: np.ndarray, prepare: Callable[[Any], None] | None = None) -> np.ndarray:
        store = self._store
        self._begin_transaction()
        try:
            with store.begin_write() as txn:
                self._catch_up(txn)
                self._checkpoints.record_finished(txn, wait=False)
                if prepare is not None:
                    prepare(txn)
                # An id flush the last batch made due is taken here, before this batch's
                # kernel, and encoded in the id-flush thread while the kernel runs
                # (without the GIL); it is stored in this transaction. Meanwhile this
                # batch finds the ids it took in the flush itself.
                early = self._ids.prepare_flush(self._engine) if self._flush_due() else None
                staged = self._run_kernel(txn, ops, flushing=early, beside_kernel=True)
                self._datafile.join()  # (before this transaction writes a page)
                self._encode_staged(staged)
                self._store_staged(txn, staged)
                if early is not None:
                    self._ids.put_flush(txn, early.encoded())
                if staged.journal is not None and self._checkpoints.due(self._engine, self.checkpoint_ops):
                    self._take_snapshot(txn)
        finally:
            self._ids.transaction_done()  # (its merge items unused when the batch wrote no journal, or failed)
            self._datafile.join()
        self._committed()
        self._decoded.add_written(staged.journal, staged.packed, staged.marks)
        return staged.results

    def _begin_transaction(self) -> None:
        """A write transaction begins on the batch path: nothing staged in it yet."""
        self._checkpoints.begin_transaction()
        self._ids.begin_transaction()

    def _committed(self) -> None:
        """After the batch path's transaction committed: publish what it staged."""
        self._ids.publish()
        self._checkpoints.committed(self._engine, expect_taps=self._fares_installed)

    def _run_kernel(self, txn: Any, ops: np.ndarray, taps: np.ndarray | None = None,
                    flushing: IdFlush | None = None, beside_kernel: bool = False) -> StagedBatch:
        """Run a batch through the engine (nothing encoded or stored yet).

        `txn` is the batch's write transaction, or None in a pipelined submit: then
        the id index is read in a read transaction of its own, and ids whose flush is
        still in flight are found in that flush (see `_lookup_prior`). `flushing`: an
        id flush taken for this transaction, searched the same way and encoded in the
        id-flush thread while the kernel runs. `beside_kernel`: also build this
        transaction's id log merge items and extend the data file while it runs.
        """
        engine = self._engine
        tap_time_us = -1
        if taps is None:
            taps = ops["kind"] == _TAP
        has_taps = bool(taps.any())
        if has_taps and not len(self._fares):
            self._fares.install_default(txn)
            self._use_fares(engine)
        if has_taps:
            ahead = self.tap_time_ahead_max_us
            engine.set_tap_horizon(TAP_HORIZON_NONE if ahead is None else time.time_ns() // 1000 + ahead)
        prior, has_prior = self._lookup_prior(txn, ops, flushing)
        # Before the flush is encoded beside the kernel: its ids are searched here too.
        refs, bought = self._named_refs(txn, ops, flushing) if self._names_refs(ops) else (None, None)
        if flushing is not None:
            # Encoded now, while the kernel runs without the GIL: started before the
            # id lookups (Python), the two threads took turns at it.
            self._ids.encode_in_flush_thread(flushing)
        if beside_kernel:
            self._ids.prepare_merge_step()
            self._datafile.extend_beside_kernel(self._store.env)
        if refs is None and bought is None:
            results, journal = engine.apply(ops, prior, has_prior)
        else:
            results, journal = engine.apply(ops, prior, has_prior, refs, bought)
        packed = marks = None
        if len(journal):
            packed = engine.last_batch_packed()
            marks = engine.last_batch_marks(RECORD_MARK_STRIDE)
        if has_taps:
            # The tap records decided, a settlement's SWEEP (written for a tap, which may
            # itself fail) included: each rated a fare no later version may re-rate.
            rated = (journal["kind"] == _TAP) & (journal["code"] == Result.OK) if len(journal) else None
            if rated is not None and rated.any():
                tap_time_us = int(journal["time_us"][rated].max())
            self._prefault_journeys_if_grown()
        staged = StagedBatch(ops, results, journal if len(journal) else None, packed, tap_time_us)
        staged.marks = marks
        if len(journal) and self._offers_seen(ops):
            bought = (journal["kind"] == _PURCHASE) & (journal["code"] == Result.OK)
            if bought.any():
                staged.purchase_time_us = int(journal["time_us"][bought].max())
        return staged

    def _lookup_prior(self, txn: Any, ops: np.ndarray,
                      flushing: IdFlush | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The stored decisions of ops whose ids the engine cannot decide from memory.

        `txn` is the batch's write transaction, or None to read in a transaction of
        its own (a pipelined submit); `flushing` holds an id flush taken for `txn` and
        not stored yet."""
        cand = self._engine.candidates(ops)
        if not cand.any():  # the usual case: every id is new or decided in memory
            return None, None
        if txn is None:
            # Batches in flight first, then the id log, the read transaction last: a
            # batch stored in between is then seen by the transaction (a batch's id
            # log is published before it leaves the batches in flight).
            staged = self._pipeline.in_flight_items() if self._pipeline is not None else []
            logs = self._ids.committed.logs
            flushes = [item.flush for item in staged if item.flush is not None]
            journals = [item.journal for item in staged if item.journal is not None]
            with self._store.begin_read() as rtxn:
                return self._ids.lookup(rtxn, ops, cand, flushes, journals, logs)
        return self._ids.lookup(txn, ops, cand, [] if flushing is None else [flushing], [],
                                self._ids.committed.logs)

    @staticmethod
    def _offers_seen(ops: np.ndarray) -> bool:
        """Whether the batch has a PURCHASE op (its latest time is then noted)."""
        return bool((ops["kind"] == _PURCHASE).any())

    @staticmethod
    def _names_refs(ops: np.ndarray) -> bool:
        """Whether the batch has a REVERSE or a REFUND op (what they name is then looked
        up first)."""
        kinds = ops["kind"]
        return bool(((kinds == _REVERSE) | (kinds == _REFUND)).any())

    def _named_refs(self, txn: Any, ops: np.ndarray,
                    flushing: IdFlush | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """What the batch's REVERSE and REFUND ops name, found before the batch: (refs,
        bought), each one row per op, or None when the batch has no op of that kind.

        refs (REVERSE_REF_DTYPE): the tap a REVERSE names, for an EXIT with the entry it
        closed (`queries.reverse_ref`). bought (JOURNAL_DTYPE): the record of the id a
        REFUND names (journal_seq 0: none); the engine checks it is a successful
        PURCHASE. Each record comes from the engine's window of recent decisions or else
        the id index; decisions of this same batch are the engine's to find (a REFUND
        does, in its window; a REVERSE does not). `txn` and `flushing`: as for
        `_lookup_prior`, whose places it searches in the same order."""
        kinds = ops["kind"]
        named = np.flatnonzero((kinds == _REVERSE) | (kinds == _REFUND))
        is_rev = kinds[named] == _REVERSE
        refs = np.zeros(len(ops), dtype=REVERSE_REF_DTYPE) if is_rev.any() else None
        bought = np.zeros(len(ops), dtype=JOURNAL_DTYPE) if not is_rev.all() else None
        q = np.zeros(len(named), dtype=OP_DTYPE)
        q["source"], q["seq"] = ops["ref_source"][named], ops["ref_seq"][named]
        recs, found = self._engine.decided_records(q["source"], q["seq"])
        if txn is None:  # a pipelined submit: batches in flight hold the newest ids
            staged = self._pipeline.in_flight_items() if self._pipeline is not None else []
            flushes = [item.flush for item in staged if item.flush is not None]
            journals = [item.journal for item in staged if item.journal is not None]
        else:
            flushes, journals = ([] if flushing is None else [flushing]), []

        def resolve(rtxn: Any) -> None:
            rest = ~found & (q["source"] != 0)
            if rest.any():
                prior, has = self._ids.lookup(rtxn, q, rest, flushes, journals, self._ids.committed.logs)
                recs[has] = prior[has]
                found[has] = True
            if bought is not None:
                take = found & ~is_rev
                bought[named[take]] = recs[take]
            if refs is None:
                return
            fetcher = RecordFetcher(rtxn, self._store.journal_db, self._decoded)
            staged = functools.partial(staged_record, journals)
            head = functools.partial(self._store.journal_head, rtxn)
            # One row a named tap, however many REVERSEs of the batch name it.
            rev = np.flatnonzero(found & is_rev)
            _, first, which = np.unique(recs["journal_seq"][rev], return_index=True, return_inverse=True)
            rows = np.array([self._reverse_refs.ref(recs[rev[k]], staged, fetcher, head) for k in first.tolist()],
                            dtype=REVERSE_REF_DTYPE)
            refs[named[rev]] = rows[which]

        if txn is None:
            with self._store.begin_read() as rtxn:
                resolve(rtxn)
        else:
            resolve(txn)
        return refs, bought

    def _prefault_journeys_if_grown(self) -> None:
        """After the journey store grew (at once, to the number of cards): fault its new
        pages in from a thread beside the batches, not one first tap at a time."""
        engine = self._engine
        capacity = engine.journey_capacity()
        if capacity > self._journeys_prefaulted:
            self._journeys_prefaulted = capacity
            threading.Thread(target=engine.prefault_journeys, name="cardledger-prefault", daemon=True).start()

    def _encode_staged(self, staged: StagedBatch) -> None:
        """Encode a staged batch: its journal batch, chained to the previous one, and
        the id flush prepared with it.

        In a pipelined submit this runs in the encode thread, which then owns the hash
        chain (`_last_hash`); every other path first waits for the pipeline."""
        journal = staged.journal
        if journal is not None:
            staged.value, staged.hash = encode_batch(self._codec, journal, self._last_hash,
                                                     time.time_ns() // 1000, body=staged.packed)
            staged.key = KEY.pack(int(journal[-1]["journal_seq"]))
            self._last_hash = staged.hash
        if staged.flush is not None:
            staged.flush.rows = self._ids.encode(staged.flush)

    def _store_staged(self, txn: Any, staged: StagedBatch) -> None:
        """Store an encoded staged batch in `txn`: the journal batch, the latest tap
        time, the id flush.

        With a `replicator` set, the journal batch is handed to it first (inside
        `txn`, before anything is put): if it raises, the transaction aborts and the
        batch is not applied (see `replicator`)."""
        if staged.value is not None and self.replicator is not None:
            self.replicator(staged.key, staged.value)
        if staged.tap_time_us >= 0:
            self._fares.note_tap_time(txn, staged.tap_time_us)
        if staged.purchase_time_us >= 0:
            self._offers.note_purchase_time(txn, staged.purchase_time_us)
        if staged.value is not None:
            self._store.put_batch(txn, staged.key, staged.value)
            timeidx.put(txn, self._store.state_db, staged.key, staged.journal)
            # Only with a journal batch: a writer in another process notices a merge step
            # by the journal head moving (`_catch_up`), as it notices a flush.
            self._ids.merge_step(txn)
        if staged.flush is not None:
            self._ids.put_flush(txn, staged.flush.encoded())

    def _flush_due(self) -> bool:
        """Whether the decisions window is due for an id flush: checked after a batch's
        kernel in a pipelined submit (the flush goes with that batch), and before the
        kernel in `apply` (the flush goes with the batch about to run)."""
        return self._engine.recent_count >= self.ids_flush_ops

    def _take_snapshot(self, txn: Any) -> None:
        """Flush the id index and snapshot the accounts (see `store/checkpoints.py`).

        The id state is written in this transaction; the account snapshot is written
        to a file after the commit, off the batch path.
        """
        self._ids.flush_now(txn, self._engine)
        self._checkpoints.take(self._checkpoints.export_snapshot(self._engine, self._ids.ids_upto), self._last_hash)

    # ================================================================== the write path: submit

    def _submit(self, ops: np.ndarray, wait: bool) -> Future[np.ndarray] | None:
        self._check_open()
        self._check_writable()
        ops = check_batch(ops)
        if self._pipeline is not None and self._pipeline.owns_current_thread():
            _refuse_in_pipeline_thread()
        if not wait:
            if not self._lock.acquire(blocking=False):
                return None
            try:
                if not self._may_submit_now(ops):
                    return None
                return self._submit(ops, wait=True)  # (the lock is re-entrant)
            finally:
                self._lock.release()
        future: Future = Future()
        future.set_running_or_notify_cancel()  # a batch handed over cannot be taken back
        if len(ops) == 0:
            future.set_result(np.zeros(0, dtype=RESULT_DTYPE))
            return future
        # Kept to re-apply the batch should an earlier commit fail. Copied as raw bytes
        # (a structured copy goes field by field) and first, so the passes below read
        # it from cache.
        ops = ops.view(np.uint8).copy().view(OP_DTYPE)
        taps = ops["kind"] == _TAP
        with self._lock:
            self._check_open()
            if self._pipeline is not None and self._pipeline.broken:
                self._settle()
            if not self._can_pipeline(taps):
                self._settle()
                return self._apply_into(future, ops)
            if self._pipeline is None:
                self._pipeline = CommitPipeline(self._encode_staged, self._commit_pipelined, self._repair_soon)
            engine = self._engine
            expected_seq, ids_upto = int(engine.journal_seq), self._ids.ids_upto
            fare_count = (len(self._fares), len(self._offers))
            try:
                staged = self._run_kernel(None, ops, taps)
            except Exception:
                # The engine may hold part of this batch: wait for the batches before
                # it to be stored, then rebuild the engine from disk.
                broke_meanwhile = self._pipeline.broken
                self._settle()
                if not broke_meanwhile:
                    self._reload_after_failure()
                    raise
                # An earlier batch's commit failed while this kernel ran: it ran on
                # state that never became durable (a lookup may even have been sent to
                # a journal record that will never exist). The failed batches were
                # re-applied by _settle; this one is applied the same way, on the
                # reloaded state, where a genuine error raises again.
                return self._apply_into(future, ops)
            except BaseException:
                self._settle()
                self._reload_after_failure()
                raise
            staged.expected_seq, staged.ids_upto, staged.fare_count = expected_seq, ids_upto, fare_count
            staged.future = future
            if staged.journal is not None and self._checkpoints.due(engine, self.checkpoint_ops):
                # The snapshot is of the engine as this batch leaves it; the store
                # thread hands it to the checkpoint writer once the batch is stored.
                staged.flush = self._ids.prepare_flush(engine)
                staged.snapshot = self._checkpoints.export_snapshot(engine, self._ids.ids_upto)
                self._checkpoints.snapshot_in_flight = True
            elif staged.journal is not None and self._flush_due():
                staged.flush = self._ids.prepare_flush(engine)
            self._pipeline.push(staged)
        return future

    def _apply_into(self, future: Future, ops: np.ndarray) -> Future:
        """Apply a submitted batch synchronously; its results (or error) resolve `future`."""
        try:
            future.set_result(self._apply_retrying(ops))
        except BaseException as e:
            future.set_exception(e)
        return future

    def _may_submit_now(self, ops: np.ndarray) -> bool:
        """With the lock held: whether `submit` of these ops would return without
        waiting for a commit or copying a snapshot."""
        if self._store is None or self._pipeline_off:
            return False
        pipeline = self._pipeline
        if pipeline is not None and (pipeline.broken or not pipeline.has_room):
            return False
        if not len(self._fares) and bool((ops["kind"] == _TAP).any()):
            return False  # the default fares go in the batch's own transaction
        return not self._checkpoints.due_before(self._engine, self.checkpoint_ops, len(ops))

    def _can_pipeline(self, taps: np.ndarray) -> bool:
        """Whether a batch (`taps`: which of its ops are TAPs) may be staged ahead of the
        disk; else it is applied synchronously."""
        if self._pipeline_off:
            return False
        return bool(len(self._fares)) or not bool(taps.any())  # else the default fares go in its txn

    def _commit_pipelined(self, staged: StagedBatch) -> None:
        """In the store thread: store one staged batch in its own write transaction.

        While batches are in flight this thread also owns the checkpoint files: it
        names a finished one in its transaction and starts writing a staged snapshot
        once the batch it was taken after is stored (every other path first waits
        for this thread)."""
        checkpoints = self._checkpoints
        checkpoints.begin_transaction()
        self._ids.begin_transaction()
        with self._store.begin_write() as txn:
            self._check_staged_base(txn, staged)
            checkpoints.record_finished(txn, wait=False)
            self._store_staged(txn, staged)
        self._decoded.add_written(staged.journal, staged.packed, staged.marks)
        self._ids.publish()
        checkpoints.adopt_recorded()
        if staged.snapshot is not None:
            checkpoints.take(staged.snapshot, staged.hash)
            checkpoints.start_file(self._engine, expect_taps=self._fares_installed)
            checkpoints.snapshot_in_flight = False

    def _check_staged_base(self, txn: Any, staged: StagedBatch) -> None:
        """Raise _StagedOnStaleState unless the stored ledger is what the staged batch
        was computed on: the same journal head, id state and fare versions."""
        head = self._store.journal_head(txn)
        ids_upto = self._ids.stored_upto(txn)
        fare_count = (self._fares.stored_count(txn), self._offers.stored_count(txn))
        if (head, ids_upto, fare_count) != (staged.expected_seq, staged.ids_upto, staged.fare_count):
            raise _StagedOnStaleState(
                f"another writer changed the ledger: journal head {head}, staged on {staged.expected_seq}"
            )

    def _repair_soon(self) -> None:
        """In the store thread, after a failed commit: have another thread re-apply the
        batches set aside. (This thread cannot take the ledger lock: a submitter may
        hold it while it waits for this thread.)"""
        threading.Thread(target=self._repair, name="cardledger-repair", daemon=True).start()

    def _repair(self) -> None:
        try:
            with self._lock:
                if self._store is not None and self._pid == os.getpid():
                    self._settle()
        except BaseException:  # pragma: no cover - every future already carries its error
            pass

    def _settle(self) -> None:
        """Wait for the batches in flight to be stored; re-apply, synchronously and in
        order, any set aside after a failed commit, resolving their futures."""
        pipeline = self._pipeline
        if pipeline is None or (pipeline.idle and not pipeline.broken):
            return
        if pipeline.owns_current_thread():
            _refuse_in_pipeline_thread()
        with self._lock:
            failed = pipeline.drain()
            if failed:
                self._reapply(failed)

    def _reapply(self, staged: list[StagedBatch]) -> None:
        """Rebuild the engine from disk and apply these staged batches again,
        synchronously and in order, resolving their futures (under the lock)."""
        if any(isinstance(item.error, _StagedOnStaleState) for item in staged):
            self._pipeline_off = True
        self._checkpoints.snapshot_in_flight = False
        try:
            self._reload_after_failure()
        except BaseException as e:
            for item in staged:
                assert item.future is not None
                item.future.set_exception(e)
            raise
        for item in staged:
            assert item.future is not None
            try:
                results = self._apply_retrying(item.ops)
            except BaseException as e:
                item.future.set_exception(e)
            else:
                item.future.set_result(results)


def _refuse_in_pipeline_thread() -> None:
    """A submit future's done-callback runs in the ledger's store thread: calling the
    ledger from there would wait for that very thread (the batches in flight)."""
    raise LedgerError(
        "a submit future's done-callback runs in the ledger's store thread and must not call the "
        "ledger: hand the result to another thread (e.g. loop.call_soon_threadsafe or a queue)"
    )


class _StagedOnStaleState(LedgerError):
    """A staged batch was computed on state another writer changed meanwhile."""
