"""The baselines do the ledger's work: the same results, journal records and balances, op by op.

Hand-made batches that reach every rule a benchmark leans on (ids decided once,
refusals, purses, caps, holds, lifecycle), applied to a ledger and to both baselines.
Speed is never asserted here; `cardledger bench` measures it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cardledger
from cardledger import AMOUNT_MAX_FEN, OP_DTYPE, AccountKind, OpFlags, OpKind, Result, SchemaError
from cardledger.benchmark import baselines, workloads

CLEARING, MERCHANT, PROGRAM, CARD, CARD2, NEW_CARD = 1, 2, 3, 100, 101, 102
#: An id above 2**63 (it must survive every key encoding).
HIGH_CARD = 2**64 - 7
CAP_FEN = 10_000
SOURCE = 7
T0_US = 1_767_225_600_000_000


def batch(*ops: tuple[Any, ...], **common: int) -> np.ndarray:
    """(seq, kind, account_id, counterparty_id, amount_fen, {field: value}) tuples as an OP_DTYPE batch."""
    out = np.zeros(len(ops), dtype=OP_DTYPE)
    for i, (seq, kind, aid, cid, amount, *extra) in enumerate(ops):
        out[i]["source"] = SOURCE
        out[i]["seq"] = seq
        out[i]["kind"] = kind
        out[i]["account_id"] = aid
        out[i]["counterparty_id"] = cid
        out[i]["amount_fen"] = amount
        out[i]["time_us"] = T0_US + seq
        for name, value in {**common, **(extra[0] if extra else {})}.items():
            out[i][name] = value
    return out


SETUP = batch(
    (1, OpKind.OPEN, CLEARING, 0, 0, {"account_kind": AccountKind.CLEARING}),
    (2, OpKind.OPEN, MERCHANT, 0, 0, {"account_kind": AccountKind.MERCHANT}),
    (3, OpKind.OPEN, PROGRAM, 0, 0, {"account_kind": AccountKind.PROGRAM}),
    (4, OpKind.OPEN, CARD, 0, 0, {"account_kind": AccountKind.CARD, "limit_fen": CAP_FEN}),
    (5, OpKind.OPEN, CARD2, 0, 0, {"account_kind": AccountKind.CARD, "limit_fen": CAP_FEN}),
    (6, OpKind.OPEN, HIGH_CARD, 0, 0, {"account_kind": AccountKind.CARD}),
    (7, OpKind.TOPUP, CARD, CLEARING, 5_000),
    (8, OpKind.TRANSFER, CLEARING, PROGRAM, 1_000_000),
)


class Trio:
    """A ledger and both baselines, fed the same batches; `apply` checks they agree."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ledger = cardledger.open(root / "ledger", create=True)
        self.bases = {"sqlite": baselines.SqliteBaseline(root / "sqlite"), "lmdb": baselines.LmdbBaseline(root / "lmdb")}

    def apply(self, ops: np.ndarray) -> np.ndarray:
        """Apply `ops` everywhere; every baseline's results must equal the ledger's, field by field."""
        want = self.ledger.apply(ops)
        for name, base in self.bases.items():
            got = base.apply(ops)
            assert got.tolist() == want.tolist(), name
        return want

    def check_state(self) -> None:
        """Balances, journal records and the double-entry total agree with the ledger."""
        acc = np.sort(self.ledger.accounts(), order="id")
        journal = self.ledger.journal()
        for name, base in self.bases.items():
            bal = base.balances()
            assert bal["id"].tolist() == acc["id"].tolist(), name
            assert bal["cash_fen"].tolist() == acc["cash_fen"].tolist(), name
            assert bal["subsidy_fen"].tolist() == acc["subsidy_fen"].tolist(), name
            assert base.journal().tobytes() == journal.tobytes(), name
            assert base.total_fen() == 0, name

    def reopen(self) -> None:
        """Close and reopen the baselines (the ledger stays open)."""
        for name, base in list(self.bases.items()):
            base.close()
            self.bases[name] = type(base)(self.root / name)

    def close(self) -> None:
        self.ledger.close()
        for base in self.bases.values():
            base.close()


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[Trio]:
    t = Trio(tmp_path)
    assert (t.apply(SETUP)["code"] == Result.OK).all()
    yield t
    t.close()


def codes(results: np.ndarray) -> list[str]:
    return [Result(int(c)).name for c in results["code"]]


def test_an_id_is_decided_once_within_a_batch_and_across_batches(trio: Trio) -> None:
    """Replays answer EXISTS with the original figures, EXISTS_WITH_DIFFERENT_FIELDS, or
    ID_ALREADY_FAILED, move nothing and take no journal record; across a reopen too."""
    first = trio.apply(batch(
        (10, OpKind.SPEND, CARD, MERCHANT, 1_000),
        (10, OpKind.SPEND, CARD, MERCHANT, 1_000),
        (10, OpKind.TOPUP, CARD, CLEARING, 3_000),
        (11, OpKind.SPEND, CARD, MERCHANT, 9_000),  # more than the card holds
    ))  # fmt: skip
    assert codes(first) == ["OK", "EXISTS", "EXISTS_WITH_DIFFERENT_FIELDS", "INSUFFICIENT_FUNDS"]
    trio.apply(batch((12, OpKind.TOPUP, CARD, CLEARING, 5_000)))  # op 11 would now succeed
    trio.reopen()
    again = trio.apply(batch((11, OpKind.SPEND, CARD, MERCHANT, 9_000), (10, OpKind.SPEND, CARD, MERCHANT, 1_000),
                             (13, OpKind.SPEND, CARD, MERCHANT, 1)))  # fmt: skip
    assert codes(again) == ["ID_ALREADY_FAILED", "EXISTS", "OK"]
    trio.check_state()


def test_refused_ops_give_the_ledgers_codes_and_move_nothing(trio: Trio) -> None:
    results = trio.apply(batch(
        (20, OpKind.SPEND, CARD, MERCHANT, 5_001),  # more than the card holds
        (21, OpKind.TOPUP, CARD, CLEARING, 5_001),  # past the cap
        (22, OpKind.SPEND, CARD, CARD2, 100),  # a card is no merchant
        (23, OpKind.TOPUP, CARD, MERCHANT, 100),  # a top-up comes from clearing
        (24, OpKind.TRANSFER, CARD, 999, 100),
        (25, OpKind.TRANSFER, 999, MERCHANT, 100),
        (26, OpKind.SPEND, CARD, MERCHANT, 0),
        (27, OpKind.SPEND, CARD, MERCHANT, AMOUNT_MAX_FEN + 1),
        (28, OpKind.SPEND, CARD, CARD, 1),
        (29, 250, CARD, MERCHANT, 1),  # no such kind
        (30, OpKind.SPEND, CARD, MERCHANT, 1, {"flags": OpFlags.PENDING}),
        (31, OpKind.OPEN, CARD, 0, 0, {"account_kind": AccountKind.CARD}),
        (0, OpKind.SPEND, CARD, MERCHANT, 1),  # seq 0 is a valid id; source 0 is not (below)
    ))  # fmt: skip
    assert codes(results) == [
        "INSUFFICIENT_FUNDS", "EXCEEDS_CAP", "WRONG_COUNTERPARTY_KIND", "WRONG_COUNTERPARTY_KIND",
        "COUNTERPARTY_NOT_FOUND", "ACCOUNT_NOT_FOUND", "INVALID_AMOUNT", "INVALID_AMOUNT",
        "ACCOUNTS_MUST_BE_DIFFERENT", "INVALID_KIND", "INVALID_FLAGS", "ACCOUNT_EXISTS", "OK",
    ]  # fmt: skip
    no_source = batch((40, OpKind.SPEND, CARD, MERCHANT, 1))
    no_source["source"] = 0
    assert codes(trio.apply(no_source)) == ["INVALID_ID"]
    trio.check_state()


def test_purses_caps_holds_and_the_card_lifecycle(trio: Trio) -> None:
    """Aid into the subsidy purse (drawn first), holds posted and voided, a frozen card
    refused, a lost card replaced, a card closed with a hold outstanding."""
    results = trio.apply(batch(
        (50, OpKind.AID, CARD, PROGRAM, 20_000),  # the subsidy purse has no cap
        (51, OpKind.SPEND, CARD, MERCHANT, 21_000),  # subsidy first, then cash
        (52, OpKind.TOPUP, CARD, CLEARING, 5_000),
        (53, OpKind.TRANSFER, CARD, MERCHANT, 3_000, {"flags": OpFlags.PENDING}),
        (54, OpKind.TOPUP, CARD, CLEARING, 2_000),  # the hold counts against the cap
        (55, OpKind.POST, 0, 0, 1_000, {"ref_source": SOURCE, "ref_seq": 53}),
        (56, OpKind.TRANSFER, CARD, MERCHANT, 500, {"flags": OpFlags.PENDING}),
        (57, OpKind.VOID, 0, 0, 0, {"ref_source": SOURCE, "ref_seq": 56}),
        (58, OpKind.VOID, 0, 0, 0, {"ref_source": SOURCE, "ref_seq": 56}),  # already resolved
        (59, OpKind.FREEZE, CARD, 0, 0),
        (60, OpKind.SPEND, CARD, MERCHANT, 1),
        (61, OpKind.TRANSFER, CARD2, MERCHANT, 1),
        (62, OpKind.TOPUP, CARD2, CLEARING, 700),
        (63, OpKind.REPLACE, CARD, NEW_CARD, 0),
        (64, OpKind.SPEND, NEW_CARD, MERCHANT, 100),
        (65, OpKind.SPEND, CARD, MERCHANT, 1),
        (66, OpKind.TRANSFER, CARD2, MERCHANT, 200, {"flags": OpFlags.PENDING}),
        (67, OpKind.CLOSE, CARD2, CLEARING, 0),
        (68, OpKind.TOPUP, HIGH_CARD, CLEARING, 77),
    ))  # fmt: skip
    refused = {54: "EXCEEDS_CAP", 58: "PENDING_NOT_FOUND", 60: "ACCOUNT_FROZEN", 61: "INSUFFICIENT_FUNDS",
               65: "ACCOUNT_CLOSED"}  # fmt: skip
    assert codes(results) == [refused.get(seq, "OK") for seq in range(50, 69)]
    trio.reopen()
    trio.apply(batch((69, OpKind.AID, NEW_CARD, PROGRAM, 5), (70, OpKind.SPEND, HIGH_CARD, MERCHANT, 7)))
    trio.check_state()


def test_the_mix_and_a_small_city_agree_batch_by_batch(trio: Trio) -> None:
    """The benchmark's own workloads, through the same three (the runner checks digests of these)."""
    mix = [*workloads.mix_setup(50, seed=3), *workloads.mix_batches(50, 3_000, 1_000, seed=3)]
    for ops in mix:
        trio.apply(ops)
    trio.check_state()


def test_a_batch_the_ledger_refuses_is_refused_and_changes_nothing(trio: Trio) -> None:
    for base in trio.bases.values():
        before = base.journal_seq
        with pytest.raises(SchemaError):
            base.apply(np.zeros(3, dtype=np.int64))
        with pytest.raises(SchemaError):
            base.apply(np.zeros((2, 2), dtype=OP_DTYPE))
        assert len(base.apply(np.zeros(0, dtype=OP_DTYPE))) == 0
        with pytest.raises(ValueError, match="LINKED"):
            base.apply(batch((80, OpKind.SPEND, CARD, MERCHANT, 1), (81, OpKind.SPEND, CARD, MERCHANT, 1),
                             flags=OpFlags.LINKED))  # fmt: skip
        assert base.journal_seq == before
    trio.check_state()


def test_balance_reads_one_account(trio: Trio) -> None:
    for base in trio.bases.values():
        assert base.balance(CARD) == trio.ledger.balance(CARD) == 5_000
        assert base.balance(HIGH_CARD) == 0
        with pytest.raises(KeyError):
            base.balance(999)
