"""Misuse of the API raises typed exceptions, writes nothing, and says what to do.

docs/semantics.md: SchemaError (a TypeError) for a batch that is not a
1-D C-contiguous array of OP_DTYPE or is longer than BATCH_OPS_MAX; LedgerClosedError
after close(); LedgerReadOnlyError for apply on a readonly ledger; AccountNotFoundError
(a KeyError) for a query of an unknown account.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import cardledger
from cardledger import AccountKind, OpKind, Result
from helpers import Ops, codes

CLEARING, CARD = 1, 10


def _topups(n: int, source: int = 7) -> np.ndarray:
    """n valid TOPUPs of 1 fen from clearing 1 to card 10, ids (source, 1..n)."""
    ops = cardledger.new_ops(n)
    ops["source"] = source
    ops["seq"] = np.arange(1, n + 1)
    ops["kind"] = OpKind.TOPUP
    ops["account_id"] = CARD
    ops["counterparty_id"] = CLEARING
    ops["amount_fen"] = 1
    ops["time_us"] = 1_767_225_600_000_000
    return ops


def _assert_nothing_written(led, journal_seq_before: int, source: int = 7) -> None:
    """No journal record, no money, and the batch's first id is still new."""
    assert led.journal_seq == journal_seq_before
    assert led.balance(CARD) == 0
    r = led.apply(_topups(1, source))
    assert codes(r) == ["OK"]  # not EXISTS / ID_ALREADY_FAILED: (source, 1) was never decided


# --------------------------------------------------------------------------- SchemaError


def test_schema_error_is_a_type_error():
    assert issubclass(cardledger.SchemaError, TypeError)
    assert issubclass(cardledger.SchemaError, cardledger.LedgerError)


@pytest.mark.parametrize(
    "make_batch",
    [
        pytest.param(lambda: _topups(3).tolist(), id="list-of-tuples"),
        pytest.param(lambda: [dict(source=7, seq=1, kind=int(OpKind.TOPUP))], id="list-of-dicts"),
        pytest.param(lambda: None, id="None"),
    ],
)
def test_not_an_array(world, make_batch):
    before = world.journal_seq
    with pytest.raises(cardledger.SchemaError, match="new_ops") as ei:
        world.apply(make_batch())
    assert isinstance(ei.value, TypeError)
    _assert_nothing_written(world, before)


@pytest.mark.parametrize(
    "make_batch",
    [
        pytest.param(lambda: np.zeros(3, dtype=np.int64), id="int64"),
        pytest.param(lambda: np.zeros(3, dtype=cardledger.RESULT_DTYPE), id="result-dtype"),
        pytest.param(lambda: _topups(3).astype(cardledger.OP_DTYPE.newbyteorder(">")), id="big-endian"),
        pytest.param(
            lambda: _topups(3)[list(reversed(cardledger.OP_DTYPE.names))], id="fields-reordered-view"
        ),
    ],
)
def test_wrong_dtype(world, make_batch):
    before = world.journal_seq
    with pytest.raises(cardledger.SchemaError, match="OP_DTYPE"):
        world.apply(make_batch())
    _assert_nothing_written(world, before)


def test_two_dimensional_array(world):
    before = world.journal_seq
    with pytest.raises(cardledger.SchemaError, match="one-dimensional"):
        world.apply(_topups(4).reshape(2, 2))
    _assert_nothing_written(world, before)


def test_zero_dimensional_array(world):
    before = world.journal_seq
    with pytest.raises(cardledger.SchemaError):
        world.apply(_topups(1).reshape(()))
    _assert_nothing_written(world, before)


def test_non_contiguous_slice(world):
    ops = _topups(6)
    before = world.journal_seq
    with pytest.raises(cardledger.SchemaError, match="ascontiguousarray"):
        world.apply(ops[::2])
    assert world.journal_seq == before
    assert world.balance(CARD) == 0
    # the fix the message names works: ids (7, 1), (7, 3), (7, 5)
    r = world.apply(np.ascontiguousarray(ops[::2]))
    assert codes(r) == ["OK", "OK", "OK"]
    assert world.balance(CARD) == 3


def test_batch_longer_than_the_maximum(world):
    n = cardledger.BATCH_OPS_MAX + 1
    ops = _topups(n)  # all valid: if any were applied, money would move
    before = world.journal_seq
    t = time.perf_counter()
    with pytest.raises(cardledger.SchemaError, match="split") as ei:
        world.apply(ops)
    elapsed = time.perf_counter() - t
    assert str(cardledger.BATCH_OPS_MAX) in str(ei.value)
    # refused up front: no per-op work (applying ~10^6 ops takes far longer)
    assert elapsed < 1.0
    _assert_nothing_written(world, before)


def test_ledger_usable_after_schema_error(world):
    with pytest.raises(cardledger.SchemaError):
        world.apply([1, 2, 3])
    r = world.apply(_topups(2))
    assert codes(r) == ["OK", "OK"]
    assert world.verify().ok


# --------------------------------------------------------------------------- empty batch


@pytest.mark.parametrize("make_batch", [lambda: cardledger.new_ops(0), lambda: np.zeros(0, dtype=cardledger.OP_DTYPE)])
def test_empty_batch_returns_empty_results(world, make_batch):
    before = world.journal_seq
    r = world.apply(make_batch())
    assert isinstance(r, np.ndarray)
    assert r.dtype == cardledger.RESULT_DTYPE and len(r) == 0
    assert world.journal_seq == before


def test_new_ops_rejects_negative_size():
    with pytest.raises(ValueError):
        cardledger.new_ops(-1)


# --------------------------------------------------------------------------- closed ledger


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda led: led.apply(_topups(1)), id="apply"),
        pytest.param(lambda led: led.balance(CARD), id="balance"),
        pytest.param(lambda led: led.account(CARD), id="account"),
        pytest.param(lambda led: led.accounts(), id="accounts"),
        pytest.param(lambda led: led.statement(CARD), id="statement"),
        pytest.param(lambda led: led.journal(), id="journal"),
        pytest.param(lambda led: led.journal_seq, id="journal_seq"),
        pytest.param(lambda led: led.verify(), id="verify"),
        pytest.param(lambda led: led.checkpoint(), id="checkpoint"),
    ],
)
def test_closed_ledger_raises(world, call):
    world.close()
    with pytest.raises(cardledger.LedgerClosedError, match="cardledger.open") as ei:
        call(world)
    assert isinstance(ei.value, ValueError)


def test_close_is_idempotent_and_nothing_was_written(world, ledger_path):
    before = world.journal_seq
    world.close()
    world.close()
    with pytest.raises(cardledger.LedgerClosedError):
        world.apply(_topups(1))
    with cardledger.open(ledger_path, create=True) as led:
        _assert_nothing_written(led, before)


def test_context_manager_closes(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        pass
    with pytest.raises(cardledger.LedgerClosedError):
        led.balance(1)


# --------------------------------------------------------------------------- unknown account


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda led: led.balance(12345), id="balance"),
        pytest.param(lambda led: led.account(12345), id="account"),
        pytest.param(lambda led: led.statement(12345), id="statement"),
    ],
)
def test_unknown_account(world, call):
    with pytest.raises(cardledger.AccountNotFoundError) as ei:
        call(world)
    assert isinstance(ei.value, KeyError)
    msg = str(ei.value)
    assert "12345" in msg and "OPEN" in msg  # names the account and what to do
    assert not msg.startswith("'")  # a readable message, not a KeyError repr


def test_unknown_account_on_an_empty_ledger(led):
    with pytest.raises(KeyError):
        led.balance(1)


def test_account_of_a_failed_open_is_unknown(world):
    b = Ops(source=5)
    r = world.apply(b.add(OpKind.OPEN, 30, account_kind=99).take())
    assert codes(r) == ["INVALID_ACCOUNT_KIND"]
    with pytest.raises(cardledger.AccountNotFoundError):
        world.balance(30)


# --------------------------------------------------------------------------- readonly


def test_readonly_ledger_refuses_apply(world, ledger_path):
    before = world.journal_seq
    world.close()
    ro = cardledger.open(ledger_path, readonly=True)
    try:
        assert ro.balance(3) == 1_000_000  # queries work
        assert ro.journal_seq == before
        with pytest.raises(cardledger.LedgerReadOnlyError, match="readonly=False") as ei:
            ro.apply(_topups(1))
        assert isinstance(ei.value, PermissionError)
        with pytest.raises(cardledger.LedgerReadOnlyError):
            ro.checkpoint()
        assert ro.journal_seq == before
    finally:
        ro.close()
    with cardledger.open(ledger_path, create=True) as led:
        _assert_nothing_written(led, before)


def test_readonly_refuses_a_malformed_batch_as_readonly_first(world, ledger_path):
    # misuse of either kind raises; nothing is written either way
    world.close()
    with cardledger.open(ledger_path, readonly=True) as ro:
        with pytest.raises((cardledger.LedgerReadOnlyError, cardledger.SchemaError)):
            ro.apply([1])


def test_readonly_on_a_missing_directory(tmp_path):
    path = tmp_path / "nothing-here"
    with pytest.raises(FileNotFoundError, match="readonly=False"):
        cardledger.open(path, readonly=True)
    assert not path.exists()  # a reader creates nothing


def test_readonly_on_an_empty_directory(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    with pytest.raises(FileNotFoundError, match="readonly=False"):
        cardledger.open(path, readonly=True)
    assert os.listdir(path) == []


def test_readonly_sees_a_ledger_created_by_a_writer(ledger_path):
    with cardledger.open(ledger_path, create=True) as led:
        b = Ops(source=5)
        r = led.apply(b.add(OpKind.OPEN, 1, account_kind=AccountKind.CLEARING).take())
        assert r[0]["code"] == Result.OK
    with cardledger.open(ledger_path, readonly=True) as ro:
        assert ro.account(1).kind == AccountKind.CLEARING
        assert ro.verify().ok


def test_a_read_only_array_is_accepted(world):
    ops = _topups(2)
    ops.flags.writeable = False  # apply only reads the batch
    assert codes(world.apply(ops)) == ["OK", "OK"]
