"""cardledger.build_ops: a batch from Python values, refused where numpy would convert.

It checks types and ranges, naming the row and the field, and builds nothing when any
value is wrong; what an op means is left to the ledger's result codes.
"""

from __future__ import annotations

import decimal
import fractions

import numpy as np
import pytest

import cardledger
from cardledger import AccountKind, OpFlags, OpKind, SchemaError, TapType, build_ops

T0 = 1_767_225_600_000_000  # 2026-01-01 UTC, µs


def test_rows_become_records_with_every_other_field_zero():
    ops = build_ops([
        {"source": 1, "seq": 1, "kind": OpKind.OPEN, "account_id": 7, "account_kind": AccountKind.CARD},
        {"source": 1, "seq": 2, "kind": OpKind.TOPUP, "account_id": 7, "counterparty_id": 1, "amount_fen": 10_000},
    ])
    assert ops.dtype == cardledger.OP_DTYPE and len(ops) == 2
    want = cardledger.new_ops(2)
    want["source"], want["seq"], want["kind"] = 1, [1, 2], [OpKind.OPEN, OpKind.TOPUP]
    want["account_id"], want["account_kind"][0] = 7, AccountKind.CARD
    want["counterparty_id"][1], want["amount_fen"][1] = 1, 10_000
    assert ops.tobytes() == want.tobytes()


def test_keyword_fields_are_shared_by_every_row_and_a_row_overrides_them():
    ops = build_ops([{"seq": 1}, {"seq": 2, "time_us": T0 + 5}], source=42, time_us=T0, kind="SPEND")
    assert ops["source"].tolist() == [42, 42] and ops["kind"].tolist() == [OpKind.SPEND] * 2
    assert ops["time_us"].tolist() == [T0, T0 + 5]


def test_enum_fields_take_names_or_members():
    ops = build_ops([{"kind": "TAP", "tap": "ENTRY"}, {"kind": OpKind.OPEN, "account_kind": "PROGRAM"},
                     {"kind": 13, "tap": TapType.EXIT}])
    assert ops["kind"].tolist() == [OpKind.TAP, OpKind.OPEN, OpKind.TAP]
    assert ops["tap"].tolist() == [TapType.ENTRY, 0, TapType.EXIT]
    assert ops["account_kind"].tolist() == [0, AccountKind.PROGRAM, 0]


def test_numpy_integers_and_the_extremes_of_each_field_are_taken():
    top = (1 << 64) - 1
    ops = build_ops([{"source": np.uint64(top), "amount_fen": np.int64(-(1 << 63)), "time_us": (1 << 63) - 1,
                      "kind": np.uint16(65_535), "route": (1 << 32) - 1, "flags": OpFlags.LINKED | OpFlags.PENDING}])
    assert int(ops["source"][0]) == top and int(ops["amount_fen"][0]) == -(1 << 63)
    assert int(ops["kind"][0]) == 65_535 and int(ops["route"][0]) == (1 << 32) - 1
    assert int(ops["flags"][0]) == 3


def test_no_rows_is_an_empty_batch():
    assert build_ops([]).dtype == cardledger.OP_DTYPE and len(build_ops([], source=1)) == 0


@pytest.mark.parametrize(
    "value",
    [12.5, 100.0, np.float64(3.0), np.float32(1.0), decimal.Decimal("1.50"), fractions.Fraction(1, 2), 1 + 0j],
    ids=["float", "whole-float", "np.float64", "np.float32", "Decimal", "Fraction", "complex"],
)
def test_a_non_integer_amount_is_refused_naming_the_row_and_field(value):
    """No float ever touches money: not even a whole one (100.0), which numpy would
    take, nor one that numpy would truncate (12.5 -> 12)."""
    with pytest.raises(SchemaError, match=r"row 1, field 'amount_fen'"):
        build_ops([{"amount_fen": 1}, {"amount_fen": value}])


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_a_bool_is_refused_even_though_python_counts_it_as_an_int(value):
    with pytest.raises(SchemaError, match=r"row 0, field 'amount_fen'.*bool"):
        build_ops([{"amount_fen": value}])


@pytest.mark.parametrize("value", [None, "5", b"5", [5]])
def test_other_types_are_refused(value):
    with pytest.raises(SchemaError, match=r"row 0, field 'amount_fen'"):
        build_ops([{"amount_fen": value}])


@pytest.mark.parametrize(
    "field, value",
    [
        ("account_id", -1),  # u64: would wrap to 2**64 - 1
        ("source", 1 << 64),
        ("amount_fen", 1 << 63),  # i64
        ("time_us", -(1 << 63) - 1),
        ("kind", 65_536),  # u16
        ("category", -1),
        ("stop", 1 << 32),  # u32
    ],
)
def test_a_value_out_of_its_fields_range_is_refused(field, value):
    with pytest.raises(SchemaError, match=rf"row 0, field '{field}': {value} is outside"):
        build_ops([{field: value}])


def test_an_unknown_field_is_refused():
    with pytest.raises(SchemaError, match=r"row 2: 'amount' is not a field of cardledger.OP_DTYPE"):
        build_ops([{}, {}, {"amount": 5}])
    with pytest.raises(SchemaError, match=r"keyword argument: 'amount'"):
        build_ops([{}], amount=5)


def test_an_unknown_enum_name_is_refused_listing_the_known_ones():
    with pytest.raises(SchemaError, match=r"row 0, field 'kind': 'TOP_UP' is not a OpKind \(one of OPEN, TOPUP"):
        build_ops([{"kind": "TOP_UP"}])
    with pytest.raises(SchemaError, match=r"field 'tap': 'card' is not a TapType"):
        build_ops([{"tap": "card"}])


def test_a_name_is_taken_only_by_the_enum_fields():
    with pytest.raises(SchemaError, match=r"field 'flags': 'LINKED' is a str"):
        build_ops([{"flags": "LINKED"}])


def test_a_member_of_another_enum_is_a_mix_up():
    with pytest.raises(SchemaError, match=r"field 'kind'.*AccountKind, not a OpKind"):
        build_ops([{"kind": AccountKind.CARD}])
    with pytest.raises(SchemaError, match=r"field 'flags'.*AccountFlags, not a OpFlags"):
        build_ops([{"flags": cardledger.AccountFlags.FROZEN}])


@pytest.mark.parametrize("rows", [{"seq": 1}, "ops", 5, None])
def test_rows_must_be_a_list_of_dicts(rows):
    with pytest.raises(SchemaError, match="list of dicts"):
        build_ops(rows)
    with pytest.raises(SchemaError, match=r"row 1 is a"):
        build_ops([{}, ("seq", 1)])


def test_schema_error_is_also_a_type_error():
    with pytest.raises(TypeError):
        build_ops([{"amount_fen": 0.5}])


def test_a_built_batch_applies(led):
    """What build_ops gives, the ledger takes."""
    ops = build_ops([
        {"seq": 1, "kind": "OPEN", "account_id": 1, "account_kind": "CLEARING"},
        {"seq": 2, "kind": "OPEN", "account_id": 100, "account_kind": "CARD", "category": 1},
        {"seq": 3, "kind": "TOPUP", "account_id": 100, "counterparty_id": 1, "amount_fen": 2_500},
    ], source=9, time_us=T0)
    assert (led.apply(ops)["code"] == cardledger.Result.OK).all()
    assert led.balance(100) == 2_500
