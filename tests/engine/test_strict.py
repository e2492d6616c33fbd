"""Strict op records, read against docs/semantics.md ("Fields each kind uses").

A new op must carry a positive `time_us` and leave every field its kind does not use
at zero; each refusal has its own result code, decided and journaled like any failure.
Replay is exempt: a journal written before these rules may hold ops decided OK that
break them, and such a ledger still opens and verifies, on either engine.

The `world` fixture (conftest.py) gives: clearing 1, merchant 2, program 3, operator 4,
cards 10 and 11. The `ops` builder issues ids (1, 1), (1, 2)… at time_us = T0 + seq.
"""

from __future__ import annotations

import numpy as np
import pytest

import cardledger
from cardledger import AccountKind, OpFlags, OpKind, Result
from cardledger.engine.spec import batch as reference
from cardledger.engine.spec import handlers as reference_handlers
from cardledger.schema import OP_DTYPE, OP_FIELDS_COMMON, OP_FIELDS_USED, UNUSED_FIELD_RESULTS
from helpers import Ops, codes

T0 = 1_767_225_600_000_000  # the builder's time base (2026-01-01 UTC), µs
CLEARING, MERCHANT, PROGRAM, OPERATOR, CARD, CARD2 = 1, 2, 3, 4, 10, 11
FIELD_CODE = dict(UNUSED_FIELD_RESULTS)


def one(led, b: Ops, kind, account_id=0, counterparty_id=0, amount_fen=0, **fields):
    """Apply a single op and return its result record."""
    r = led.apply(b.add(kind, account_id, counterparty_id, amount_fen, **fields).take())
    assert len(r) == 1
    return r[0]


def name(rec) -> str:
    return Result(int(rec["code"])).name


# --------------------------------------------------------------------------- the table


def test_the_core_mirrors_the_table_of_fields_each_kind_uses():
    """cext/handlers.pxi FIELDS_USED is schema.OP_FIELDS_USED, bit i = OP_DTYPE field i."""
    core = pytest.importorskip("cardledger._core")
    bit = {f: 1 << i for i, f in enumerate(OP_DTYPE.names)}
    want = [0] * (max(OpKind) + 1)
    for kind, used in OP_FIELDS_USED.items():
        want[kind] = sum(bit[f] for f in used)
    assert core.op_fields_used() == want


def test_every_field_is_read_by_every_kind_by_some_kinds_or_checked_zero():
    """No field escapes the checks: each is common, or has its must-be-zero code, or is
    amount_fen (INVALID_AMOUNT where a kind takes none)."""
    checked = [f for f, _ in UNUSED_FIELD_RESULTS]
    assert sorted(set(OP_FIELDS_COMMON) | set(checked) | {"amount_fen"}) == sorted(OP_DTYPE.names)
    assert checked == [f for f in OP_DTYPE.names if f in checked]  # checked in record order
    assert set(OP_FIELDS_USED) == set(OpKind)


def test_the_new_codes_follow_the_last_code_before_them():
    """The strict codes are 32..42, after TAP_TIME_IN_FUTURE (31), in check order."""
    assert Result.TIME_MUST_BE_POSITIVE == 32
    codes_in_order = list(dict.fromkeys(code for _, code in UNUSED_FIELD_RESULTS))
    assert [int(c) for c in codes_in_order] == list(range(33, 43))


# --------------------------------------------------------------------------- refusals

UNUSED = [
    (kind, field)
    for kind in OpKind
    for field, _ in UNUSED_FIELD_RESULTS
    if field not in OP_FIELDS_USED[kind]
]


@pytest.mark.parametrize("kind, field", UNUSED, ids=[f"{k.name}-{f}" for k, f in UNUSED])
def test_a_field_the_kind_does_not_use_is_refused_with_its_own_code(world, ops, kind, field):
    """Set alone on an otherwise empty op of the kind, an unused field decides the op:
    its code, journaled (a resend is ID_ALREADY_FAILED), nothing changed."""
    before = world.accounts().tobytes()
    rec = one(world, ops, kind, **{field: 1})
    assert name(rec) == FIELD_CODE[field].name
    assert rec["journal_seq"] > 0 and rec["amount_fen"] == 0
    assert world.accounts().tobytes() == before
    resend = world.apply(Ops(start_seq=ops.seq - 1).add(kind, **{field: 1}).take())
    assert codes(resend) == ["ID_ALREADY_FAILED"]


@pytest.mark.parametrize("time_us", [0, -1, -T0])
@pytest.mark.parametrize("kind", list(OpKind))
def test_a_time_at_or_before_the_epoch_is_refused_for_every_kind(world, ops, kind, time_us):
    """time_us must be positive, whatever the kind."""
    assert name(one(world, ops, kind, time_us=time_us)) == "TIME_MUST_BE_POSITIVE"


def test_a_top_up_at_time_zero_moves_no_money(world, ops):
    """The issue's case: a TOPUP otherwise fine, at time_us 0."""
    rec = one(world, ops, OpKind.TOPUP, CARD, CLEARING, 1_000, time_us=0)
    assert name(rec) == "TIME_MUST_BE_POSITIVE" and world.balance(CARD) == 0
    assert name(one(world, ops, OpKind.TOPUP, CARD, CLEARING, 1_000, time_us=1)) == "OK"
    assert world.balance(CARD) == 1_000


@pytest.mark.parametrize("field", ["pad16", "pad32"])
def test_reserved_fields_set_are_refused(world, ops, field):
    rec = one(world, ops, OpKind.TOPUP, CARD, CLEARING, 1_000, **{field: 1})
    assert name(rec) == "RESERVED_MUST_BE_ZERO" and world.balance(CARD) == 0


def test_an_account_kind_on_a_top_up_is_refused(world, ops):
    rec = one(world, ops, OpKind.TOPUP, CARD, CLEARING, 1_000, account_kind=AccountKind.CARD)
    assert name(rec) == "ACCOUNT_KIND_MUST_BE_ZERO" and world.balance(CARD) == 0


def test_post_and_void_name_their_hold_by_its_id_only(world, ops):
    """POST and VOID use ref_source/ref_seq (and POST its amount): an account id on
    either is ACCOUNT_ID_MUST_BE_ZERO; without one, the hold resolves."""
    assert name(one(world, ops, OpKind.TOPUP, CARD, CLEARING, 1_000)) == "OK"
    hold = one(world, ops, OpKind.TRANSFER, CARD, MERCHANT, 400, flags=OpFlags.PENDING)
    ref = dict(ref_source=1, ref_seq=int(ops.seq - 1))
    assert name(hold) == "OK"
    assert name(one(world, ops, OpKind.POST, CARD, 0, 100, **ref)) == "ACCOUNT_ID_MUST_BE_ZERO"
    assert name(one(world, ops, OpKind.VOID, 0, MERCHANT, **ref)) == "COUNTERPARTY_MUST_BE_ZERO"
    assert name(one(world, ops, OpKind.POST, 0, 0, 100, **ref)) == "OK"
    assert world.balance(MERCHANT) == 100 and world.balance(CARD) == 900


def test_only_an_open_of_a_card_takes_a_category(world, ops):
    """category is a card's rider category: on an OPEN of another kind it is refused
    (CATEGORY_MUST_BE_ZERO); an OPEN of an unknown kind stays INVALID_ACCOUNT_KIND."""
    assert name(one(world, ops, OpKind.OPEN, 500, account_kind=AccountKind.MERCHANT, category=2)) == (
        "CATEGORY_MUST_BE_ZERO")
    assert name(one(world, ops, OpKind.OPEN, 501, account_kind=77, category=2)) == "INVALID_ACCOUNT_KIND"
    assert name(one(world, ops, OpKind.OPEN, 502, account_kind=AccountKind.CARD, category=2)) == "OK"
    assert world.account(502).category == 2


def test_a_refused_member_fails_its_chain(world, ops):
    """A strict refusal is a failure like any other: the chain's other members are
    LINKED_FAILED and nothing of the chain stays."""
    ops.add(OpKind.TOPUP, CARD, CLEARING, 1_000, flags=OpFlags.LINKED)
    ops.add(OpKind.SPEND, CARD, MERCHANT, 100, route=3)
    r = world.apply(ops.take())
    assert codes(r) == ["LINKED_FAILED", "ROUTE_MUST_BE_ZERO"]
    assert world.balance(CARD) == 0


# --------------------------------------------------------------------------- order


def test_order_of_checks_kind_flags_amount_then_time_then_fields(world, ops):
    """kind, flags and an amount on an amountless kind keep their precedence; then the
    time; then the unused fields in record order; and all of them before any check of
    the op against the ledger's state."""
    bad = dict(time_us=0, counterparty_id=5, pad32=1)
    assert name(one(world, ops, 99, **bad)) == "INVALID_KIND"
    assert name(one(world, ops, OpKind.FREEZE, flags=OpFlags.PENDING, **bad)) == "INVALID_FLAGS"
    assert name(one(world, ops, OpKind.FREEZE, amount_fen=5, **bad)) == "INVALID_AMOUNT"
    assert name(one(world, ops, OpKind.FREEZE, **bad)) == "TIME_MUST_BE_POSITIVE"
    del bad["time_us"]
    assert name(one(world, ops, OpKind.FREEZE, **bad)) == "COUNTERPARTY_MUST_BE_ZERO"
    # on a POST: account_id before limit before account_kind before category before
    # route before stop before tap before the reserved fields
    fields = dict(account_id=1, limit_fen=1, account_kind=1, category=1, route=1, stop=1, tap=1, pad16=1)
    want = ["ACCOUNT_ID_MUST_BE_ZERO", "LIMIT_MUST_BE_ZERO", "ACCOUNT_KIND_MUST_BE_ZERO",
            "CATEGORY_MUST_BE_ZERO", "ROUTE_MUST_BE_ZERO", "STOP_MUST_BE_ZERO", "TAP_MUST_BE_ZERO",
            "RESERVED_MUST_BE_ZERO"]
    got = []
    for field in list(fields):
        got.append(name(one(world, ops, OpKind.POST, **fields)))
        del fields[field]
    assert got == want
    # on a FREEZE: limit before ref before account_kind
    assert name(one(world, ops, OpKind.FREEZE, CARD, limit_fen=1, ref_seq=1, account_kind=1)) == "LIMIT_MUST_BE_ZERO"
    assert name(one(world, ops, OpKind.FREEZE, CARD, ref_seq=1, account_kind=1)) == "REF_MUST_BE_ZERO"
    # the record before the state: an unknown account with a stray field is the field's
    assert name(one(world, ops, OpKind.SPEND, 999, 998, 5, stop=1)) == "STOP_MUST_BE_ZERO"


def test_a_replayed_id_is_answered_before_the_strict_checks(world, ops):
    """An id decided before is answered from its decision, whatever its fields now."""
    assert name(one(world, ops, OpKind.TOPUP, CARD, CLEARING, 700)) == "OK"
    again = world.apply(Ops(start_seq=ops.seq - 1).add(OpKind.TOPUP, CARD, CLEARING, 700, time_us=0).take())
    assert codes(again) == ["EXISTS_WITH_DIFFERENT_FIELDS"]


# --------------------------------------------------------------------------- old journals


def _old_style_batch() -> np.ndarray:
    """Ops an engine older than the strict checks decided OK: a TOPUP at time 0, a
    FREEZE naming a counterparty, an OPEN of a merchant with a category and a pad set,
    a POST naming its card, a SPEND at a negative time."""
    b = Ops(source=77)
    b.add(OpKind.OPEN, 1, account_kind=AccountKind.CLEARING, time_us=0)
    b.add(OpKind.OPEN, 2, account_kind=AccountKind.MERCHANT, category=3, pad32=9)
    b.add(OpKind.OPEN, 10, account_kind=AccountKind.CARD)
    b.add(OpKind.TOPUP, 10, 1, 5_000, time_us=0)
    b.add(OpKind.TRANSFER, 10, 2, 1_000, flags=OpFlags.PENDING)
    b.add(OpKind.POST, 10, 2, 400, ref_source=77, ref_seq=5)
    b.add(OpKind.SPEND, 10, 2, 300, time_us=-5)
    b.add(OpKind.FREEZE, 10, 1)
    return b.take()


def _decided_by_the_old_rules(monkeypatch, ops: np.ndarray):
    """The journal the pure engine writes for `ops` with the strict checks switched off,
    as the engine before them did."""
    monkeypatch.setattr(reference_handlers, "check_fields", lambda op: Result.OK)
    e = reference.Engine()
    results, journal = e.apply(ops)
    monkeypatch.undo()
    assert (results["code"] == Result.OK).all(), codes(results)
    return e, journal


def test_an_old_journal_replays_on_both_engines(monkeypatch):
    """Engine.replay re-executes OK records as decided: the strict checks are not
    applied, and both engines rebuild the state the old engine had."""
    old, journal = _decided_by_the_old_rules(monkeypatch, _old_style_batch())
    core = pytest.importorskip("cardledger._core")
    for fresh in (reference.Engine(), core.Engine()):
        fresh.replay(journal)
        for x, y in zip(old.export_checkpoint(), fresh.export_checkpoint()):
            assert x.tobytes() == y.tobytes(), type(fresh)


@pytest.mark.parametrize("engine", ["cython", "python"])
def test_a_ledger_written_before_the_strict_checks_opens_and_verifies(tmp_path, monkeypatch, engine):
    """A ledger whose journal holds OK records that the strict checks would refuse
    (written here by the pure engine with the checks off) opens, replays and verifies
    on either engine, keeps its balances, and answers a resend of those ops EXISTS."""
    if engine == "cython":
        pytest.importorskip("cardledger._core")
    path = str(tmp_path / "old")
    old = _old_style_batch()
    monkeypatch.setattr(reference_handlers, "check_fields", lambda op: Result.OK)
    with cardledger.open(path, engine="python", create=True) as led:
        assert (led.apply(old)["code"] == Result.OK).all()
    monkeypatch.undo()
    with cardledger.open(path, engine=engine, create=True) as led:  # opening replays the journal
        assert led.verify().ok
        assert (led.balance(10), led.balance(2)) == (5_000 - 400 - 300, 400 + 300)
        assert (led.apply(old)["code"] == Result.EXISTS).all()
        fresh = Ops(source=78).add(OpKind.TOPUP, 10, 1, 5, time_us=0).take()
        assert codes(led.apply(fresh)) == ["TIME_MUST_BE_POSITIVE"]  # new ops are strict
    with cardledger.open(path, engine=engine, create=True) as led:
        assert led.verify().ok
