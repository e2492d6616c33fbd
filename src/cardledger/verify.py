"""`Ledger.verify` and `inspect`: walk the whole journal, replay it, and compare with
what is stored.

Checks the hash chain and every record's encoding, replays the journal into a fresh
engine and compares it with the checkpoint file, the id state and the live state, and
checks the ledger's invariants (double entry, holds, purses, caps, closed accounts).
Reports every problem it finds instead of stopping at the first.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

import lmdb
import numpy as np

from . import settlement
from .errors import CorruptionError, LedgerError, NotALedgerError, StorageError
from .schema import CHECKPOINT_OPS_DEFAULT, AccountFlags, AccountKind, OpKind, Result
from .store.checkpoints import checkpoint_file_name, decode_stored_desc, read_checkpoint_file
from .store.env import ENVS, LMDB_CORRUPTION_ERRORS, Store, checked_settings
from .store.ids import IdLog, decode_ids_state, read_checked_merge, read_id_log
from .store.journal import GENESIS_HASH, decode_batch
from .store.keys import (
    DB_NAMES,
    KEY,
    KEY2,
    META_DEFAULT_CAP_KEY,
    META_FORMAT_KEY,
    META_MAX_TAP_TIME_KEY,
    META_SETTINGS_SHA_KEY,
)
from .store.pages import PageFile, PageTxn, pinned
from .store.policies import stored_keys as stored_policy_sets
from .policies import PolicyError, PolicyVersion


@dataclass
class VerifyReport:
    """What a verify found; `ok` is true when `problems` is empty.

    Each problem is one line naming where it is: a journal batch (by its journal_seq
    range), the checkpoint (by its journal_seq), the id state, an account's
    invariant. `intact_seq` is the last journal_seq through which the journal's hash
    chain holds and replays; `journal_head` the last journal_seq stored (None when
    the journal's end cannot be read). When they differ, the records between them
    are lost to verification: `cardledger recover` salvages the intact prefix.
    """

    problems: list[str] = field(default_factory=list)
    batches: int = 0
    records: int = 0
    accounts: int = 0
    intact_seq: int = 0
    journal_head: int | None = 0
    latest_tap_us: int = -(1 << 63)  # the latest time_us of a tap the journal applied
    closes: list = field(default_factory=list, repr=False)  # the closed days met (settlement.DayClose)
    policy_installs: list = field(default_factory=list, repr=False)  # journal_seqs of SET_POLICIES records OK

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (what `cardledger verify --json` prints)."""
        return {"ok": self.ok, "batches": self.batches, "records": self.records, "accounts": self.accounts,
                "intact_seq": self.intact_seq, "journal_head": self.journal_head, "problems": list(self.problems)}


def verify(store: Any, txn: Any, fresh: Any, live: Any, checkpoint_ops: int,
           renew: Callable[[], Any] | None = None) -> VerifyReport:
    """Verify the ledger in `store` as of read transaction `txn`: replay its journal
    into `fresh` (a new engine with the fare versions installed) and compare with the
    stored checkpoint and id state and, unless `live` is None (a ledger inspected
    without being opened: `inspect`), with `live` (the ledger's engine, up to date).

    Never stops at the first problem: a damaged batch ends the replay (what follows
    it cannot be checked) but the rest of the journal is still walked to find its end,
    and the checkpoint, the id state and the invariants are still checked. LMDB
    fails every later read of a transaction in which it met a damaged page: `renew`,
    if given, returns a new read transaction to go on with after one does."""
    report = VerifyReport()
    codec, state = store.codec, store.state_db

    def part(what: str, read: Callable[[Any], Any], default: Any = None) -> Any:
        """read(txn), with damage recorded as a problem of `what` (and the result `default`)."""
        nonlocal txn
        try:
            return read(txn)
        except CorruptionError as e:
            report.problems.append(f"{what}: {e}")
        except LMDB_CORRUPTION_ERRORS as e:
            report.problems.append(f"{what}: LMDB cannot read it: {type(e).__name__}: {e}")
            if renew is not None:
                txn = renew()
        return default

    desc = part("checkpoint", lambda t: decode_stored_desc(t, state))
    ckpt_arrays = None
    if desc is not None:
        try:
            ckpt_arrays = read_checkpoint_file(codec, store.path, desc, with_offers=True)
        except FileNotFoundError:
            report.problems.append(f"checkpoint at {desc.journal_seq}: its file "
                                   f"{checkpoint_file_name(desc.journal_seq)} is missing")
        except (CorruptionError, OSError, ValueError) as e:
            report.problems.append(f"checkpoint at {desc.journal_seq}: {e}")
    ids_upto, ids_sources = part("id state", lambda t: decode_ids_state(lambda k: t.get(k, db=state)), (0, None))
    part("id log", lambda t: read_checked_merge(codec, t, state))
    audit = part("id index", lambda t: _IdAudit(codec, t, store, ids_upto))
    policy_sets = _policy_sets(report, part("policy sets", lambda t: stored_policy_sets(t, state), []))
    fresh.set_policy_versions(policy_sets)
    intact = _walk_journal(report, store, txn, fresh, checkpoint_ops, desc, ckpt_arrays, ids_upto, ids_sources,
                           audit)
    if audit is not None:
        report.problems.extend(audit.summary())
    replayed = fresh.export_checkpoint()
    if live is None:
        exported = replayed
    else:
        exported = live.export_checkpoint()
        if intact and not report.problems:
            if exported[0].tobytes() != replayed[0].tobytes():
                report.problems.append("account state differs from the replay of the journal")
            if exported[2].tobytes() != replayed[2].tobytes():
                report.problems.append("pending holds differ from the replay of the journal")
            if not np.array_equal(exported[1][["source", "last_seq"]], replayed[1][["source", "last_seq"]]):
                report.problems.append("per-source idempotency state differs from the replay of the journal")
            if live.export_journeys().tobytes() != fresh.export_journeys().tobytes():
                report.problems.append("cards' fare state differs from the replay of the journal")
            if not _same_offer_state(_offer_state(live), _offer_state(fresh)):
                report.problems.append("offer state (offer use, card counters, refunded purchases) differs from the replay of the journal")
    stored_tap_us = part("settings", lambda t: t.get(META_MAX_TAP_TIME_KEY, db=store.meta_db))
    if stored_tap_us is not None and report.latest_tap_us > -(1 << 63):
        if len(stored_tap_us) != 8 or struct.unpack("<q", bytes(stored_tap_us))[0] < report.latest_tap_us:
            report.problems.append(
                f"settings: the latest tap time recorded is damaged or earlier than the journal's latest tap "
                f"({report.latest_tap_us} µs): a fare version could be installed under taps already rated")
    if desc is not None and desc.journal_seq > report.intact_seq:
        report.problems.append(f"checkpoint at {desc.journal_seq} lies past the intact journal (which ends at "
                               f"{report.intact_seq}): it could not be compared with a replay")
    installed = set(report.policy_installs)
    for v in policy_sets:
        if v.journal_seq <= report.intact_seq and v.journal_seq not in installed:
            report.problems.append(f"policy set at journal_seq {v.journal_seq}: stored, but the journal has no "
                                   "SET_POLICIES record installing it there")
    if live is not None and intact and not report.problems and live.policy_in_force() != fresh.policy_in_force():
        report.problems.append(f"the policy set in force (installed at {live.policy_in_force()}) differs from the "
                               f"replay of the journal's (at {fresh.policy_in_force()})")
    if report.closes:
        report.problems.extend(settlement.close_problems(report.closes, _journal(store, txn, report.intact_seq),
                                                         exported[0]))
    refunded = _offer_state(fresh if live is None else live)[2]
    report.problems.extend(invariant_problems(exported[0], exported[2], len(refunded) > 0))
    report.accounts = len(exported[0])
    return report


def _policy_sets(report: VerifyReport, stored: list) -> list:
    """The stored policy sets that decode (a SET_POLICIES record of one that does not
    then fails to replay); each one that does not is a problem."""
    out = []
    for journal_seq, raw in stored:
        try:
            out.append(PolicyVersion(journal_seq, raw))
        except PolicyError as e:
            report.problems.append(f"policy set at journal_seq {journal_seq}: {e}")
    return out


def _journal(store: Any, txn: Any, upto: int) -> Any:
    """The journal's records through `upto`, batch by batch (already checked by the walk)."""
    for key, value in txn.cursor(db=store.journal_db):
        batch = decode_batch(store.codec, key, value)
        if batch.first_seq > upto:
            return
        yield batch.records


def _walk_journal(report: VerifyReport, store: Any, txn: Any, fresh: Any, checkpoint_ops: int, desc: Any,
                  ckpt_arrays: tuple | None, ids_upto: int, ids_sources: np.ndarray | None,
                  audit: "_IdAudit | None") -> bool:
    """Walk the journal from its first batch, replaying into `fresh` while the hash
    chain holds; record the problems and the intact prefix in `report`. Returns
    whether the whole journal is intact."""
    codec = store.codec
    prev_hash, expected_first = GENESIS_HASH, 1
    broken_at: int | None = None  # journal_seq the damage starts at
    last_key_seq = 0
    cur = txn.cursor(db=store.journal_db)
    try:
        for key, value in cur:
            key_seq = KEY.unpack(bytes(key))[0] if len(key) == KEY.size else None
            if key_seq is None:
                report.problems.append(f"journal: a key of {len(key)} bytes ({bytes(key).hex()}) is not a journal_seq")
                broken_at = expected_first if broken_at is None else broken_at
                continue
            last_key_seq = key_seq
            if broken_at is not None:
                continue  # past the damage: only the journal's end is wanted
            try:
                batch = decode_batch(codec, key, value, prev_hash)
                if batch.first_seq != expected_first:
                    raise CorruptionError(f"journal batch {batch.first_seq}..{batch.last_seq} does not follow "
                                          f"journal_seq {expected_first - 1} (records are missing)")
            except CorruptionError as e:
                report.problems.append(str(e))
                broken_at = expected_first
                continue
            try:
                fresh.replay(batch.records)
            except ValueError as e:
                report.problems.append(f"journal batch {batch.first_seq}..{batch.last_seq} does not replay: {e}")
                broken_at = expected_first
                continue
            report.batches += 1
            report.records += len(batch.records)
            report.intact_seq = batch.last_seq
            report.closes.extend(settlement.closes_in(batch.records))
            installs = (batch.records["kind"] == OpKind.SET_POLICIES) & (batch.records["code"] == Result.OK)
            if installs.any():
                report.policy_installs.extend(int(j) for j in batch.records["journal_seq"][installs])
            taps = batch.records[(batch.records["kind"] == OpKind.TAP) & (batch.records["code"] == Result.OK)]
            if len(taps):
                report.latest_tap_us = max(report.latest_tap_us, int(taps["time_us"].max()))
            if audit is not None:
                audit.check(batch.records)
            prev_hash, expected_first = batch.hash, batch.last_seq + 1
            if fresh.recent_count >= checkpoint_ops:
                fresh.take_decisions()  # bound memory; decisions are not compared
            if desc is not None and ckpt_arrays is not None and batch.last_seq == desc.journal_seq:
                _compare_checkpoint(report, fresh, ckpt_arrays, desc.journal_seq)
            if ids_sources is not None and batch.last_seq == ids_upto:
                src = fresh.export_checkpoint()[1]
                if not np.array_equal(src[["source", "last_seq"]], ids_sources[["source", "last_seq"]]):
                    report.problems.append(f"id state at {ids_upto} differs from the journal's replay")
    except LMDB_CORRUPTION_ERRORS as e:
        report.problems.append(f"journal: LMDB cannot read past journal_seq {last_key_seq}: {type(e).__name__}: {e}")
        broken_at = expected_first if broken_at is None else broken_at
        report.journal_head = None
    if report.journal_head is not None:
        report.journal_head = last_key_seq
    if broken_at is not None:
        end = "its unreadable end" if report.journal_head is None else f"journal_seq {report.journal_head}"
        report.problems.append(
            f"journal: records from journal_seq {broken_at} to {end} follow the damage and could not be "
            f"verified; the journal is intact through journal_seq {report.intact_seq} "
            "(`cardledger recover` salvages it)")
        return False
    return True


#: Ids named one by one in a report; the rest are counted.
ID_PROBLEMS_NAMED_MAX = 10


class _IdAudit:
    """Checks that every decided op up to the id state's reach is found, by its id,
    at its own journal record through the id log and the id index: what a resent op
    relies on. The index has no checksum of its own (LMDB keeps none), so this is
    how damage to it is found.

    The whole index is held in memory (about 3 bytes a decided op) while verifying.
    """

    def __init__(self, codec: Any, txn: Any, store: Any, ids_upto: int) -> None:
        self.ids_upto = ids_upto
        self.logs = read_id_log(codec, txn, store.state_db)
        key_src, key_seq, offsets, values = [], [], [0], []
        prev = None
        for key, value in txn.cursor(db=store.ids_db):
            if len(key) != KEY2.size:
                raise CorruptionError(f"an entry's key is {len(key)} bytes, not a (source, seq)")
            src, seq = KEY2.unpack(bytes(key))
            if prev is not None and (src, seq) <= prev:
                raise CorruptionError(f"entries out of order at source {src}, seq {seq}")
            prev = (src, seq)
            key_src.append(src)
            key_seq.append(seq)
            values.append(bytes(value))
            offsets.append(offsets[-1] + len(value))
        late = [(KEY2.unpack(bytes(k)), bytes(v)) for k, v in txn.cursor(db=store.ids_late_db)]
        if any(len(v) != KEY.size for _, v in late):
            raise CorruptionError("an out-of-order id's entry is not a journal_seq")
        self.index = IdLog(codec, ids_upto, b"".join(values), key_src=np.array(key_src, dtype=np.uint64),
                           key_seq=np.array(key_seq, dtype=np.uint64), offsets=np.array(offsets, dtype=np.int64),
                           late_src=np.array([k[0] for k, _ in late], dtype=np.uint64),
                           late_seq=np.array([k[1] for k, _ in late], dtype=np.uint64),
                           late_jseq=np.array([KEY.unpack(v)[0] for _, v in late], dtype=np.uint64))
        self.wrong: list[str] = []
        self.wrong_count = 0

    def check(self, records: np.ndarray) -> None:
        """Look up the ids of one batch's records (those up to ids_upto)."""
        recs = records[records["journal_seq"] <= self.ids_upto]
        if not len(recs):
            return
        q_src = np.ascontiguousarray(recs["source"], dtype=np.uint64)
        q_seq = np.ascontiguousarray(recs["seq"], dtype=np.uint64)
        found = np.zeros(len(recs), dtype=np.uint64)
        try:
            for log in self.logs:
                log.find(q_src, q_seq, found)
            self.index.find(q_src, q_seq, found)
        except CorruptionError as e:
            self.wrong_count += len(recs)
            if len(self.wrong) < ID_PROBLEMS_NAMED_MAX:
                self.wrong.append(f"id index: {e}")
            return
        for i in np.flatnonzero(found != recs["journal_seq"]).tolist():
            self.wrong_count += 1
            if len(self.wrong) < ID_PROBLEMS_NAMED_MAX:
                got = int(found[i])
                self.wrong.append(
                    f"id index: op ({int(q_src[i])}, {int(q_seq[i])}) decided at journal_seq "
                    f"{int(recs['journal_seq'][i])} is " + ("missing" if got == 0 else f"found at {got}"))

    def summary(self) -> list[str]:
        """The problems found, the ones beyond ID_PROBLEMS_NAMED_MAX counted."""
        more = self.wrong_count - len(self.wrong)
        return self.wrong + ([f"id index: {more} more ops are not found at their own record"] if more > 0 else [])


def _compare_checkpoint(report: VerifyReport, fresh: Any, ckpt_arrays: tuple, journal_seq: int) -> None:
    """Compare the replay, as of the checkpoint's journal_seq, with the checkpoint file."""
    acc, _, pen = fresh.export_checkpoint()
    jny = fresh.export_journeys()
    # A checkpoint holds the holds and journeys in the core's store order (loading
    # takes any): compare them in the exports' order.
    ck_acc, ck_pen, ck_jny, ck_offers = ckpt_arrays
    ck_pen = ck_pen[np.lexsort((ck_pen["seq"], ck_pen["source"]))]
    ck_jny = ck_jny[np.argsort(ck_jny["account_id"], kind="stable")]
    if acc.tobytes() != ck_acc.tobytes() or pen.tobytes() != ck_pen.tobytes() or jny.tobytes() != ck_jny.tobytes():
        report.problems.append(f"checkpoint at {journal_seq} differs from the journal's replay")
    elif not _same_offer_state(ck_offers, _offer_state(fresh)):
        report.problems.append(f"checkpoint at {journal_seq}: its offer state differs from the journal's replay")


def _offer_state(engine: Any) -> tuple:
    """An engine's offer state (budgets, card counters, purchases), or none."""
    return engine.export_offer_state(sort=False)


def _same_offer_state(a: tuple, b: tuple) -> bool:
    """Whether two offer states are equal (each table compared in its key order)."""
    keys = (("slot",), ("account_id", "slot"), ("source", "seq"))
    for x, y, key in zip(a, b, keys):
        if len(x) != len(y):
            return False
        x = x[np.lexsort(tuple(x[k] for k in reversed(key)))]
        y = y[np.lexsort(tuple(y[k] for k in reversed(key)))]
        if x.tobytes() != y.tobytes():
            return False
    return True


def invariant_problems(accounts: np.ndarray, pending: np.ndarray, refunds: bool = False) -> list[str]:
    """The ledger's invariants over the account and hold arrays: a list of what breaks.
    `refunds`: the ledger has refunded purchases, and the cash cap never refuses a refund
    (docs/purchases.md), so a card's cash purse above its cap is no longer a problem."""
    p: list[str] = []
    if len(accounts) == 0:
        return p
    cp = accounts["credits_posted"].astype(object)
    dp = accounts["debits_posted"].astype(object)
    if sum(cp) != sum(dp):
        p.append(f"double entry broken: credits posted {sum(cp)} != debits posted {sum(dp)}")
    if int(accounts["credits_pending"].astype(object).sum()) != int(accounts["debits_pending"].astype(object).sum()):
        p.append("pending credits != pending debits")
    if int(pending["amount_fen"].astype(object).sum()) != int(accounts["debits_pending"].astype(object).sum()):
        p.append("outstanding holds do not add up to pending debits")
    avail = accounts["cash_fen"].astype(object) + accounts["subsidy_fen"].astype(object)
    expect = cp - dp - accounts["debits_pending"].astype(object)
    for i in np.flatnonzero(avail != expect)[:10]:
        p.append(f"account {accounts[i]['id']}: balance {avail[i]} != posted credits - debits - held {expect[i]}")
    kind = accounts["kind"]
    not_clearing = kind != AccountKind.CLEARING
    # A card's cash purse may be negative: taps may allow it (fares.toml's
    # negative_balance) and a metro exit charges even above the hold.
    neg = not_clearing & (
        ((accounts["cash_fen"] < 0) & (kind != AccountKind.CARD)) | (accounts["subsidy_fen"] < 0)
    )
    for i in np.flatnonzero(neg)[:10]:
        p.append(f"account {accounts[i]['id']}: negative balance on a no-overdraft account")
    cards = kind == AccountKind.CARD
    above_cap = cards & (accounts["cash_fen"] > accounts["cap_fen"]) if not refunds else np.zeros(len(accounts), bool)
    for i in np.flatnonzero(above_cap)[:10]:
        p.append(f"card {accounts[i]['id']}: cash purse {accounts[i]['cash_fen']} above its cap {accounts[i]['cap_fen']}")
    for i in np.flatnonzero(~cards & (accounts["subsidy_fen"] != 0))[:10]:
        p.append(f"account {accounts[i]['id']}: a subsidy purse on a non-card account")
    closed = (accounts["flags"] & AccountFlags.CLOSED) != 0
    for i in np.flatnonzero(closed & (avail != 0))[:10]:
        p.append(f"closed account {accounts[i]['id']} still holds {avail[i]} fen")
    return p


def inspect(path: str | os.PathLike[str], *, engine: str | None = None) -> VerifyReport:
    """Verify the ledger in directory `path` without opening it as a Ledger.

    For an operator with a ledger that may be damaged: it reads the files only,
    repairs nothing, and reports every problem it finds (which batch, which
    checkpoint, which invariant, which page) where `cardledger.open` would stop at
    the first. It checks what `Ledger.verify` checks except the comparison with a
    running ledger's memory. A data file with damaged pages, or cut short, is read
    page by page without LMDB (`store/pages.py`), so damage is reported instead of
    aborting the process. Raises FileNotFoundError / NotADirectoryError when `path`
    is not a ledger directory, NotALedgerError for an LMDB environment that is not
    a ledger, and CorruptionError (or StorageError) when the files cannot be read
    at all (LMDB's meta pages are damaged).
    """
    from .engine import select  # (select imports the engines: only this entry needs them)

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such directory: {path!r}")
    if not os.path.isdir(path):
        raise NotADirectoryError(f"{path!r} is not a directory")
    if not os.path.exists(os.path.join(path, "data.mdb")):
        raise FileNotFoundError(f"no ledger at {path!r}: it has no data.mdb")
    implementation = select.resolve(engine)
    # The pages are checked first, read while a read transaction keeps a writer from
    # reusing them; a damaged or cut-short file is then inspected page by page.
    env = ENVS.acquire(path, True, "full", check=False)
    try:
        with pinned(path, env) as pages:
            assert pages is not None
            if pages.check(DB_NAMES):
                return inspect_pages(path, pages, implementation)[0]
    finally:
        ENVS.release(path)
    store = Store(path, True, "full", select.codec_for(implementation))
    try:
        try:
            with contextlib.ExitStack() as txns:
                txn = txns.enter_context(store.begin_read())
                return _inspect_in(store, txn, implementation, renew=lambda: txns.enter_context(store.begin_read()))
        except LMDB_CORRUPTION_ERRORS as e:
            raise CorruptionError(f"ledger at {path!r} is damaged: {type(e).__name__}: {e}") from e
        except lmdb.Error as e:
            raise StorageError(f"cannot read ledger at {path!r}: {type(e).__name__}: {e}") from e
    finally:
        store.close()


@dataclass
class PageStore:
    """The face of a `Store` that `verify` reads, over a `PageTxn` (databases named
    by their names): a damaged ledger read without LMDB."""

    path: str
    codec: Any
    meta_db: bytes = b"meta"
    journal_db: bytes = b"journal"
    state_db: bytes = b"state"
    ids_db: bytes = b"ids"
    ids_late_db: bytes = b"ids_late"
    fares_db: bytes = b"fares"


def inspect_pages(path: str, pages: PageFile, implementation: str) -> tuple[VerifyReport, PageTxn, PageStore]:
    """`inspect` of a data file read page by page (`pages`, already checked): the
    report (page problems first), and the transaction and store it read through."""
    from .engine import select

    store = PageStore(path, select.codec_for(implementation))
    txn = PageTxn(pages)
    try:
        report = _inspect_in(store, txn, implementation, renew=None)
    except CorruptionError as e:  # (NotALedgerError too: its meta pages may be the damaged ones)
        if not pages.check(DB_NAMES):
            raise
        raise CorruptionError(f"ledger at {path!r}: its settings cannot be read ({e}); the data file has damaged "
                              f"pages: {'; '.join(pages.check(DB_NAMES)[:3])}") from e
    report.problems[:0] = pages.check(DB_NAMES)
    return report, txn, store


def ledger_settings(store: Any, txn: Any) -> int:
    """The default cap of the ledger read through `txn`, after its format marker is
    checked (NotALedgerError / CorruptionError)."""
    version = txn.get(META_FORMAT_KEY, db=store.meta_db)
    if version is None:
        raise NotALedgerError(f"{store.path!r} is an LMDB environment but not a cardledger ledger")
    return checked_settings(store.path, version, txn.get(META_DEFAULT_CAP_KEY, db=store.meta_db),
                            txn.get(META_SETTINGS_SHA_KEY, db=store.meta_db))


def _inspect_in(store: Any, txn: Any, implementation: str, renew: Callable[[], Any] | None) -> VerifyReport:
    """Verify through `txn` (an LMDB read transaction or a `PageTxn`) with a fresh engine."""
    from .engine import select
    from .store.fares import FareVersions
    from .store.offers import OfferVersions

    default_cap_fen = ledger_settings(store, txn)
    fresh = select.engine_class(implementation)(default_cap_fen)
    fares = FareVersions(store.fares_db, store.meta_db)
    fare_problem = None
    try:
        fares.load(txn)
        fresh.set_fare_versions(fares.tap_tables())
    except (LedgerError, ValueError, *LMDB_CORRUPTION_ERRORS) as e:
        fare_problem = f"fare versions: cannot be read ({type(e).__name__}: {e}); taps cannot be replayed"
    offers = OfferVersions(store.state_db, store.meta_db)
    try:
        offers.load(txn)
        if len(offers):
            fresh.set_offer_versions(offers.tables)
    except (LedgerError, ValueError, AttributeError, *LMDB_CORRUPTION_ERRORS) as e:
        fare_problem = f"offer catalogs: cannot be read ({type(e).__name__}: {e}); purchases cannot be replayed"
    report = verify(store, txn, fresh, None, CHECKPOINT_OPS_DEFAULT, renew=renew)
    if fare_problem is not None:
        report.problems.insert(0, fare_problem)
    return report
