"""Shared fixtures. The suite runs once per engine: CARDLEDGER_PURE=1 selects the
pure-Python one. Shared helpers are the `helpers` package beside this file."""

from __future__ import annotations

import pytest

import cardledger
from cardledger import OpKind
from helpers import Ops, codes


@pytest.fixture
def ledger_path(tmp_path):
    """A fresh directory for a ledger."""
    return str(tmp_path / "ledger")


@pytest.fixture
def led(ledger_path):
    """An open, empty ledger, closed after the test."""
    with cardledger.open(ledger_path, create=True) as ledger:
        yield ledger


@pytest.fixture
def ops():
    """An op builder with source 1."""
    return Ops()


@pytest.fixture
def world(led):
    """A ledger with clearing 1, merchant 2, program 3 (budget 1,000,000), operator 4, cards 10, 11."""
    b = Ops(source=999)
    b.add(OpKind.OPEN, 1, account_kind=cardledger.AccountKind.CLEARING)
    b.add(OpKind.OPEN, 2, account_kind=cardledger.AccountKind.MERCHANT)
    b.add(OpKind.OPEN, 3, account_kind=cardledger.AccountKind.PROGRAM)
    b.add(OpKind.OPEN, 4, account_kind=cardledger.AccountKind.OPERATOR)
    b.add(OpKind.OPEN, 10, account_kind=cardledger.AccountKind.CARD)
    b.add(OpKind.OPEN, 11, account_kind=cardledger.AccountKind.CARD)
    b.add(OpKind.TRANSFER, 1, 3, 1_000_000)
    r = led.apply(b.take())
    assert (r["code"] == 0).all(), codes(r)
    return led
