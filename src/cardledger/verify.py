"""`Ledger.verify`: walk the whole journal, replay it, and compare with what is stored.

Checks the hash chain and every record's encoding, replays the journal into a fresh
engine and compares it with the checkpoint file, the id state and the live state, and
checks the ledger's invariants (double entry, holds, purses, caps, closed accounts).
Reports every problem it finds instead of stopping at the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import CorruptionError
from .schema import AccountFlags, AccountKind
from .store.checkpoints import decode_stored_desc, read_checkpoint_file
from .store.ids import decode_ids_state, read_checked_merge
from .store.journal import GENESIS_HASH


@dataclass
class VerifyReport:
    """What `Ledger.verify` found; `ok` is true when `problems` is empty."""

    problems: list[str] = field(default_factory=list)
    batches: int = 0
    records: int = 0
    accounts: int = 0

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def verify(store: Any, txn: Any, fresh: Any, live: Any, checkpoint_ops: int) -> VerifyReport:
    """Verify the ledger in `store` as of read transaction `txn`: replay its journal
    into `fresh` (a new engine with the fare versions installed) and compare with the
    stored checkpoint and id state and with `live` (the ledger's engine, up to date)."""
    report = VerifyReport()
    codec, state = store.codec, store.state_db
    desc, ckpt_arrays, ids_upto, ids_sources = None, None, 0, None
    try:
        desc = decode_stored_desc(txn, state)
        if desc is not None:
            ckpt_arrays = read_checkpoint_file(codec, store.path, desc)
        ids_upto, ids_sources = decode_ids_state(lambda k: txn.get(k, db=state))
    except (CorruptionError, OSError) as e:
        report.problems.append(f"checkpoint: {e}")
    try:
        read_checked_merge(codec, txn, state)
    except CorruptionError as e:
        report.problems.append(str(e))
    try:
        for batch in store.iter_batches(txn, 0, GENESIS_HASH):
            report.batches += 1
            report.records += len(batch.records)
            try:
                fresh.replay(batch.records)
            except ValueError as e:
                report.problems.append(f"replay: {e}")
                break
            if fresh.recent_count >= checkpoint_ops:
                fresh.take_decisions()  # bound memory; decisions are not compared
            if desc is not None and ckpt_arrays is not None and batch.last_seq == desc.journal_seq:
                _compare_checkpoint(report, fresh, ckpt_arrays, desc.journal_seq)
            if ids_sources is not None and batch.last_seq == ids_upto:
                src = fresh.export_checkpoint()[1]
                if not np.array_equal(src[["source", "last_seq"]], ids_sources[["source", "last_seq"]]):
                    report.problems.append(f"id state at {ids_upto} differs from the journal's replay")
    except CorruptionError as e:
        report.problems.append(str(e))
    exported = live.export_checkpoint()
    if not report.problems:
        replayed = fresh.export_checkpoint()
        if exported[0].tobytes() != replayed[0].tobytes():
            report.problems.append("account state differs from the replay of the journal")
        if exported[2].tobytes() != replayed[2].tobytes():
            report.problems.append("pending holds differ from the replay of the journal")
        if not np.array_equal(exported[1][["source", "last_seq"]], replayed[1][["source", "last_seq"]]):
            report.problems.append("per-source idempotency state differs from the replay of the journal")
        if live.export_journeys().tobytes() != fresh.export_journeys().tobytes():
            report.problems.append("cards' fare state differs from the replay of the journal")
    report.problems.extend(invariant_problems(exported[0], exported[2]))
    report.accounts = len(exported[0])
    return report


def _compare_checkpoint(report: VerifyReport, fresh: Any, ckpt_arrays: tuple, journal_seq: int) -> None:
    """Compare the replay, as of the checkpoint's journal_seq, with the checkpoint file."""
    acc, _, pen = fresh.export_checkpoint()
    jny = fresh.export_journeys()
    # A checkpoint holds the holds and journeys in the core's store order (loading
    # takes any): compare them in the exports' order.
    ck_acc, ck_pen, ck_jny = ckpt_arrays
    ck_pen = ck_pen[np.lexsort((ck_pen["seq"], ck_pen["source"]))]
    ck_jny = ck_jny[np.argsort(ck_jny["account_id"], kind="stable")]
    if acc.tobytes() != ck_acc.tobytes() or pen.tobytes() != ck_pen.tobytes() or jny.tobytes() != ck_jny.tobytes():
        report.problems.append(f"checkpoint at {journal_seq} differs from the journal's replay")


def invariant_problems(accounts: np.ndarray, pending: np.ndarray) -> list[str]:
    """The ledger's invariants over the account and hold arrays: a list of what breaks."""
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
    for i in np.flatnonzero(cards & (accounts["cash_fen"] > accounts["cap_fen"]))[:10]:
        p.append(f"card {accounts[i]['id']}: cash purse {accounts[i]['cash_fen']} above its cap {accounts[i]['cap_fen']}")
    for i in np.flatnonzero(~cards & (accounts["subsidy_fen"] != 0))[:10]:
        p.append(f"account {accounts[i]['id']}: a subsidy purse on a non-card account")
    closed = (accounts["flags"] & AccountFlags.CLOSED) != 0
    for i in np.flatnonzero(closed & (avail != 0))[:10]:
        p.append(f"closed account {accounts[i]['id']} still holds {avail[i]} fen")
    return p
