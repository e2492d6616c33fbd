"""Op batches built from Python values, checked on the way in: `build_ops`.

Filling a numpy array of OP_DTYPE field by field is the fast way to build a batch, but
numpy converts silently: a float assigned to `amount_fen` is truncated before the
ledger sees it (0.29 yuan * 100 is 28.999…, stored as 28 fen), True is stored as 1,
and an out-of-range number may wrap around. `build_ops` takes rows of plain Python
values and refuses all of that before any array exists, naming the row and the field.
It checks types and ranges only: what an op means (a time at or before the epoch, a
field its kind does not use) is the ledger's to decide, with a result code.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .errors import SchemaError
from .schema import OP_DTYPE, AccountKind, OpFlags, OpKind, TapType

#: The fields that also take an enum member's name ("TOPUP") or the member itself.
ENUM_FIELDS: dict[str, type[enum.IntEnum]] = {"kind": OpKind, "account_kind": AccountKind, "tap": TapType}
#: Fields whose enum or flag members are the only ones accepted (besides plain ints):
#: a member of another enum (AccountKind.CARD as a kind) is a mix-up, refused.
_MEMBER_TYPES: dict[str, type[enum.Enum]] = {**ENUM_FIELDS, "flags": OpFlags}


def _field_range(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


#: Each field's inclusive (lowest, highest) integer value, from OP_DTYPE.
FIELD_RANGES: dict[str, tuple[int, int]] = {
    name: _field_range(OP_DTYPE[name]) for name in OP_DTYPE.names
}


def build_ops(rows: Iterable[Mapping[str, Any]], **common: Any) -> np.ndarray:
    """Return a batch (OP_DTYPE, one record per row) built from `rows`, dicts of
    field name -> value; `common` gives fields every row shares (a row's own value
    wins). Fields left out are zero.

    Values must be ints (Python or numpy integers, enum members included) within the
    field's type: u64 ids 0..2**64-1, i64 amounts and times, u16 kinds and flags, u32
    route and stop. `kind`, `account_kind` and `tap` also take the member's name
    ("TOPUP", "CARD", "BOARD") or the member (OpKind.TOPUP); a member of another enum
    is refused, a plain int is taken as it is (an unknown kind is the ledger's to
    answer: INVALID_KIND). Floats of any kind (money is int fen), bools (True is not an amount),
    strings elsewhere, None, an unknown field or enum name, a value out of range: each
    raises SchemaError naming the row index and the field, and nothing is built.

        cardledger.build_ops([
            {"seq": 1, "kind": "OPEN", "account_id": 1001, "account_kind": "CARD"},
            {"seq": 2, "kind": "TOPUP", "account_id": 1001, "counterparty_id": 1, "amount_fen": 10_000},
        ], source=42, time_us=1_767_225_600_000_000)
    """
    if isinstance(rows, (Mapping, str, bytes)) or not isinstance(rows, Iterable):
        raise SchemaError(f"build_ops takes a list of dicts (one per op), got {type(rows).__name__}")
    rows = list(rows)
    defaults = {name: _value("keyword argument", name, v) for name, v in common.items()}
    columns: dict[str, list[int]] = {name: [0] * len(rows) for name in OP_DTYPE.names}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise SchemaError(f"build_ops: row {i} is a {type(row).__name__}, not a dict of field -> value")
        for name, v in defaults.items():
            columns[name][i] = v
        for name, v in row.items():
            columns[_known(f"row {i}", name)][i] = _value(f"row {i}", name, v)
    ops = np.zeros(len(rows), dtype=OP_DTYPE)
    for name, col in columns.items():
        ops[name] = np.array(col, dtype=OP_DTYPE[name])  # every value is in range: exact
    return ops


def _known(where: str, name: Any) -> str:
    if not isinstance(name, str) or name not in FIELD_RANGES:
        raise SchemaError(
            f"build_ops: {where}: {name!r} is not a field of cardledger.OP_DTYPE "
            f"(fields: {', '.join(OP_DTYPE.names)})"
        )
    return name


def _value(where: str, name: str, v: Any) -> int:
    """`v` as the int field `name` stores; SchemaError saying what is wrong otherwise."""
    _known(where, name)
    enum_type = ENUM_FIELDS.get(name)
    if isinstance(v, str) and enum_type is not None:
        try:
            return int(enum_type[v])
        except KeyError:
            raise SchemaError(
                f"build_ops: {where}, field {name!r}: {v!r} is not a {enum_type.__name__} "
                f"(one of {', '.join(m.name for m in enum_type)})"
            ) from None
    # bool is an int to Python and numpy alike; as a field value it is a mistake.
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        hint = " (money is int fen: no float ever touches it)" if isinstance(v, (float, np.floating)) else ""
        raise SchemaError(f"build_ops: {where}, field {name!r}: {v!r} is a {type(v).__name__}, not an int{hint}")
    member_type = _MEMBER_TYPES.get(name)
    if isinstance(v, enum.Enum) and member_type is not None and not isinstance(v, member_type):
        raise SchemaError(
            f"build_ops: {where}, field {name!r}: {v!r} is a {type(v).__name__}, not a {member_type.__name__}"
        )
    lo, hi = FIELD_RANGES[name]
    value = int(v)
    if not lo <= value <= hi:
        raise SchemaError(
            f"build_ops: {where}, field {name!r}: {value} is outside {lo}..{hi} ({OP_DTYPE[name]})"
        )
    return value
