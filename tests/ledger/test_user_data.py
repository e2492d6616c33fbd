"""user_data: the caller's own reference on every op (a bank's transaction number, a
POS receipt, an aid line, a member number on OPEN). The ledger never reads it: it is
journaled, takes part in the same-id comparison, and comes back in every record read."""

from __future__ import annotations

from helpers import Ops, codes, open_cards

import cardledger
from cardledger import OpKind, Result


def test_user_data_is_journaled_and_comes_back_in_the_statement(led):
    open_cards(led, [100], 5_000)
    r = led.apply(Ops(source=7).add(OpKind.SPEND, 100, 2, 300, user_data=2**64 - 1).take())
    assert codes(r) == ["OK"]
    seq = int(r["journal_seq"][0])
    statement = led.statement(100)
    (rec,) = statement[statement["journal_seq"] == seq]
    assert int(rec["user_data"]) == 2**64 - 1 and int(rec["amount_fen"]) == 300
    assert int(led.journal(seq, seq + 1)["user_data"][0]) == 2**64 - 1


def test_a_resend_with_another_user_data_is_exists_with_different_fields(led):
    open_cards(led, [100], 5_000)
    first = Ops(source=7).add(OpKind.SPEND, 100, 2, 300, user_data=41).take()
    led.apply(first)
    again = first.copy()
    assert codes(led.apply(again)) == ["EXISTS"]
    again["user_data"] = 42
    assert codes(led.apply(again)) == ["EXISTS_WITH_DIFFERENT_FIELDS"]
    assert led.balance(100) == 4_700


def test_user_data_survives_reopen_and_verify(ledger_path):
    with cardledger.open(ledger_path, create=True, checkpoint_ops=3) as led:
        open_cards(led, [100, 101], 5_000)
        led.apply(Ops(source=7).add(OpKind.TOPUP, 101, 1, 10, user_data=6_222_021_234_567_890).take())
    with cardledger.open(ledger_path) as led:
        statement = led.statement(101)
        assert statement["user_data"].tolist().count(6_222_021_234_567_890) == 1
        assert led.verify().ok
        # The decision is found by id after the reopen, its user_data compared too.
        resend = Ops(source=7).add(OpKind.TOPUP, 101, 1, 10, user_data=1).take()
        assert led.apply(resend)["code"][0] == Result.EXISTS_WITH_DIFFERENT_FIELDS


def test_build_ops_takes_user_data_and_refuses_it_out_of_range():
    import pytest

    ops = cardledger.build_ops([{"seq": 1, "kind": "TOPUP", "user_data": 2**64 - 1}], source=1, time_us=1)
    assert int(ops["user_data"][0]) == 2**64 - 1
    with pytest.raises(cardledger.SchemaError, match="user_data"):
        cardledger.build_ops([{"seq": 1, "kind": "TOPUP", "user_data": -1}], source=1, time_us=1)
