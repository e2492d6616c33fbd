"""Ledgers written before OP_DTYPE gained user_data and ACCOUNT_DTYPE gained
member_ref, category_before and category_since_us open, verify and go on as they were.

`data/ledger-before-user-data` was written by the library as it was before those
fields (commit 0a19b23): three cards, spends, a card frozen and replaced, a
checkpoint at journal_seq 40 and one batch after it, then `Ledger.backup`. Its
journal records decode with user_data 0 (the codec encodes that word last), and its
checkpoint file's account rows with the new fields 0 (they were appended)."""

from __future__ import annotations

import os
import shutil

from helpers import Ops, codes

import cardledger
from cardledger import OpKind

KEPT = os.path.join(os.path.dirname(__file__), "data", "ledger-before-user-data")


def _copy(tmp_path) -> str:
    path = str(tmp_path / "ledger")
    shutil.copytree(KEPT, path)
    return path


def test_a_ledger_written_before_user_data_opens_with_its_balances_and_verifies(tmp_path):
    path = _copy(tmp_path)
    assert cardledger.inspect(path).ok
    with cardledger.open(path) as led:
        assert led.journal_seq == 41
        assert [led.balance(a) for a in (100, 101, 103, 1, 2)] == [4765, 4755, 4822, -15077, 735]
        assert led.verify().ok
        assert (led.journal(1, 42)["user_data"] == 0).all()
        card = led.account(103)
        assert (card.member_ref, card.category_before, card.category_since_us) == (0, 0, 0)


def test_a_ledger_written_before_user_data_goes_on_taking_ops(tmp_path):
    path = _copy(tmp_path)
    with cardledger.open(path) as led:
        # An old op resent is still recognised, field for field (user_data 0 then and now).
        assert codes(led.apply(Ops(source=7).add(OpKind.TOPUP, 103, 1, 77).take())) == ["EXISTS"]
        r = led.apply(Ops(source=8).add(OpKind.TOPUP, 103, 1, 5, user_data=9).take())
        assert codes(r) == ["OK"]
        led.checkpoint()
    with cardledger.open(path) as led:
        assert led.balance(103) == 4_827 and led.verify().ok
