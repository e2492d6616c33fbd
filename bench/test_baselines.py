"""Semantics of the two baseline ledgers (bench/baselines.py) on small hand-made batches.

Run explicitly, like everything in bench/ (see conftest.py):

    pytest bench/test_baselines.py

What is checked, for both SqliteLedger and NaiveLmdbLedger: a repeated op id, within one
batch or across batches, returns EXISTS, moves nothing and is not journaled; a refused
op (insufficient funds, cap, wrong counterparty, overflow) moves nothing; ops see the
effects of earlier ops in the same batch; the ledger reopens with its state.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _schema import AMOUNT_MAX_FEN, INT64_MAX, OP_DTYPE, AccountKind, OpKind, Result  # noqa: E402
from baselines import NaiveLmdbLedger, SqliteLedger  # noqa: E402

CLEARING, MERCHANT, CARD, CARD2, BIG_CARD = 1, 2, 100, 101, 102
#: An id above 2**63: SQLite stores it wrapped to a negative int64.
HIGH_CARD = 2**64 - 7
CAP = 10_000
SOURCE = 7

LEDGERS: dict[str, Any] = {"sqlite": SqliteLedger, "lmdb": NaiveLmdbLedger}


def batch(*ops: tuple[Any, ...]) -> np.ndarray:
    """Build a batch from (seq, kind, account_id, counterparty_id, amount, [account_kind, limit]) tuples."""
    out = np.zeros(len(ops), dtype=OP_DTYPE)
    for i, (seq, kind, aid, cid, amount, *open_fields) in enumerate(ops):
        out[i]["source"] = SOURCE
        out[i]["seq"] = seq
        out[i]["kind"] = kind
        out[i]["account_id"] = aid
        out[i]["counterparty_id"] = cid
        out[i]["amount_fen"] = amount
        out[i]["time_us"] = 1_000 + seq
        if open_fields:
            out[i]["account_kind"], out[i]["limit_fen"] = open_fields
    return out


def codes(results: np.ndarray) -> list[str]:
    """Return the result codes as names."""
    return [Result(int(c)).name for c in results["code"]]


@pytest.fixture(params=sorted(LEDGERS))
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh ledger with a clearing account, a merchant and cards, CARD holding 5,000."""
    led = LEDGERS[request.param](tmp_path / request.param)
    results = led.apply(
        batch(
            (1, OpKind.OPEN, CLEARING, 0, 0, AccountKind.CLEARING, 0),
            (2, OpKind.OPEN, MERCHANT, 0, 0, AccountKind.MERCHANT, 0),
            (3, OpKind.OPEN, CARD, 0, 0, AccountKind.CARD, CAP),
            (4, OpKind.OPEN, CARD2, 0, 0, AccountKind.CARD, CAP),
            (5, OpKind.OPEN, BIG_CARD, 0, 0, AccountKind.CARD, AMOUNT_MAX_FEN),
            (6, OpKind.OPEN, HIGH_CARD, 0, 0, AccountKind.CARD, CAP),
            (7, OpKind.TOPUP, CARD, CLEARING, 5_000),
        )
    )
    assert codes(results) == ["OK"] * 7
    yield led
    led.close()


def balances(led: Any, *ids: int) -> list[int]:
    """Return the balances of `ids`."""
    return [led.balance(i) for i in ids]


def test_duplicate_id_within_one_batch(ledger: Any) -> None:
    results = ledger.apply(
        batch(
            (10, OpKind.SPEND, CARD, MERCHANT, 1_000),
            (10, OpKind.SPEND, CARD, MERCHANT, 1_000),  # same id: EXISTS, moves nothing
            (10, OpKind.TOPUP, CARD, CLEARING, 3_000),  # same id, other fields: still EXISTS
        )
    )
    assert codes(results) == ["OK", "EXISTS", "EXISTS"]
    assert results["amount_fen"].tolist() == [1_000, 0, 0]
    assert results["balance_fen"].tolist() == [4_000, 4_000, 4_000]
    assert results["journal_seq"][0] > 0 and results["journal_seq"][1:].tolist() == [0, 0]
    assert balances(ledger, CARD, MERCHANT, CLEARING) == [4_000, 1_000, -5_000]
    assert ledger.total_fen() == 0


def test_duplicate_id_across_batches(ledger: Any) -> None:
    first = ledger.apply(batch((20, OpKind.SPEND, CARD, MERCHANT, 700)))
    assert codes(first) == ["OK"]
    again = ledger.apply(
        batch((20, OpKind.SPEND, CARD, MERCHANT, 700), (21, OpKind.SPEND, CARD, MERCHANT, 300))
    )
    assert codes(again) == ["EXISTS", "OK"]
    assert again["amount_fen"].tolist() == [0, 300]
    # EXISTS reports the account's balance when it is looked at (before op 21 ran).
    assert again["balance_fen"].tolist() == [4_300, 4_000]
    assert again["journal_seq"][1] == first["journal_seq"][0] + 1  # the replay took no journal slot
    assert balances(ledger, CARD, MERCHANT) == [4_000, 1_000]


def test_duplicate_of_a_failed_op_is_exists(ledger: Any) -> None:
    failed = ledger.apply(batch((30, OpKind.SPEND, CARD, MERCHANT, 9_000)))
    assert codes(failed) == ["INSUFFICIENT_FUNDS"]
    ledger.apply(batch((31, OpKind.TOPUP, CARD, CLEARING, 5_000)))  # now it would succeed
    replay = ledger.apply(batch((30, OpKind.SPEND, CARD, MERCHANT, 9_000)))
    assert codes(replay) == ["EXISTS"]
    assert balances(ledger, CARD, MERCHANT) == [10_000, 0]


def test_refused_ops_move_nothing(ledger: Any) -> None:
    results = ledger.apply(
        batch(
            (40, OpKind.SPEND, CARD, MERCHANT, 5_001),  # more than the card holds
            (41, OpKind.TOPUP, CARD, CLEARING, 5_001),  # past the cap
            (42, OpKind.SPEND, CARD, CARD2, 100),  # card debit would pass; counterparty is a card
            (43, OpKind.TOPUP, CARD, MERCHANT, 100),  # card credit would pass; debit not clearing
            (44, OpKind.TRANSFER, CARD, MERCHANT + 999, 100),  # no such counterparty
            (45, OpKind.TRANSFER, CARD + 999, MERCHANT, 100),  # no such account
            (46, OpKind.SPEND, CARD, MERCHANT, 0),  # invalid amount
        )
    )
    assert codes(results) == [
        "INSUFFICIENT_FUNDS",
        "EXCEEDS_CAP",
        "WRONG_COUNTERPARTY_KIND",
        "WRONG_COUNTERPARTY_KIND",
        "COUNTERPARTY_NOT_FOUND",
        "ACCOUNT_NOT_FOUND",
        "INVALID_AMOUNT",
    ]
    assert results["amount_fen"].tolist() == [0] * 7
    assert results["balance_fen"].tolist() == [5_000] * 5 + [0, 5_000]
    assert (results["journal_seq"] > 0).all()  # refusals are decided and journaled
    assert balances(ledger, CARD, CARD2, MERCHANT, CLEARING) == [5_000, 0, 0, -5_000]


def test_ops_see_earlier_ops_of_the_batch(ledger: Any) -> None:
    results = ledger.apply(
        batch(
            (50, OpKind.SPEND, CARD, MERCHANT, 4_000),
            (51, OpKind.SPEND, CARD, MERCHANT, 1_500),  # only 1,000 left
            (52, OpKind.TOPUP, CARD, CLEARING, 9_000),  # 1,000 + 9,000 = cap: allowed
            (53, OpKind.TOPUP, CARD, CLEARING, 1),  # one past the cap
            (54, OpKind.TRANSFER, CARD, CARD2, 10_000),
            (55, OpKind.OPEN, 103, 0, 0, AccountKind.CARD, 0),
            (56, OpKind.TOPUP, 103, CLEARING, 50),  # the card opened just above
            (57, OpKind.TOPUP, HIGH_CARD, CLEARING, 77),
        )
    )
    assert codes(results) == ["OK", "INSUFFICIENT_FUNDS", "OK", "EXCEEDS_CAP", "OK", "OK", "OK", "OK"]
    assert results["balance_fen"].tolist() == [1_000, 1_000, 10_000, 10_000, 0, 0, 50, 77]
    assert balances(ledger, CARD, CARD2, 103, HIGH_CARD, MERCHANT) == [0, 10_000, 50, 77, 4_000]
    assert ledger.total_fen() == 0


def test_overflow_moves_nothing(ledger: Any) -> None:
    # The clearing account may go negative, down to -INT64_MAX; the merchant up to INT64_MAX.
    n_ok = INT64_MAX // AMOUNT_MAX_FEN  # the clearing account starts at -5,000: it fits too
    ops = [(100 + i, OpKind.TRANSFER, CLEARING, MERCHANT, AMOUNT_MAX_FEN) for i in range(n_ok + 1)]
    assert 5_000 + n_ok * AMOUNT_MAX_FEN + AMOUNT_MAX_FEN > INT64_MAX
    ops += [
        # The card's credit passes, the clearing account's debit overflows: nothing moves.
        (60, OpKind.TOPUP, BIG_CARD, CLEARING, AMOUNT_MAX_FEN),
        (61, OpKind.TRANSFER, CLEARING, BIG_CARD, AMOUNT_MAX_FEN),  # clearing debit overflows
        (62, OpKind.SPEND, CARD, MERCHANT, 5_000),  # the merchant still has room for this
    ]
    results = ledger.apply(batch(*ops))
    assert codes(results) == ["OK"] * n_ok + ["OVERFLOW"] * 3 + ["OK"]
    assert results["balance_fen"].tolist()[-3:] == [0, -5_000 - n_ok * AMOUNT_MAX_FEN, 0]
    assert balances(ledger, MERCHANT, BIG_CARD, CARD) == [n_ok * AMOUNT_MAX_FEN + 5_000, 0, 0]
    assert ledger.total_fen() == 0


def test_state_survives_reopen(ledger: Any, tmp_path: Path) -> None:
    first = ledger.apply(batch((70, OpKind.SPEND, CARD, MERCHANT, 123)))
    cls = type(ledger)
    path = next(p for p in tmp_path.iterdir() if p.is_dir())
    ledger.close()
    reopened = cls(path)
    try:
        results = reopened.apply(
            batch((70, OpKind.SPEND, CARD, MERCHANT, 123), (71, OpKind.SPEND, CARD, MERCHANT, 1))
        )
        assert codes(results) == ["EXISTS", "OK"]
        assert results["journal_seq"][1] == first["journal_seq"][0] + 1
        assert balances(reopened, CARD) == [5_000 - 124]
    finally:
        reopened.close()
