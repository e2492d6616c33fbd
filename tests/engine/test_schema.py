"""The record layouts and the public API surface."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import cardledger
from cardledger import schema


def test_core_structs_match_the_numpy_dtypes():
    core = pytest.importorskip("cardledger._core")
    sizes = core.record_sizes()
    for name in ("OP", "RESULT", "JOURNAL", "ACCOUNT", "SOURCE", "PENDING", "JOURNEY", "REVERSE_REF", "CARD_OFFER",
                 "REFUNDED"):
        assert sizes[name] == getattr(schema, f"{name}_DTYPE").itemsize, name


def test_pinned_public_names_exist():
    for name in ("open", "new_ops", "build_ops", "OP_DTYPE", "RESULT_DTYPE", "IMPLEMENTATION", "OpKind", "AccountKind",
                 "OpFlags", "SchemaError", "Result"):
        assert hasattr(cardledger, name), name
    assert cardledger.Result.OK == 0
    assert {k.name for k in cardledger.OpKind} >= {
        "OPEN", "TOPUP", "AID", "SPEND", "WITHDRAW", "TRANSFER", "POST", "VOID", "FREEZE", "UNFREEZE", "REPLACE", "CLOSE"}
    assert {k.name for k in cardledger.AccountKind} == {"CARD", "CLEARING", "PROGRAM", "OPERATOR", "MERCHANT", "SUBSIDY"}
    for f in ("source", "seq", "kind", "flags", "account_id", "counterparty_id", "amount_fen", "time_us",
              "account_kind", "limit_fen", "ref_source", "ref_seq"):
        assert f in cardledger.OP_DTYPE.names
    assert cardledger.RESULT_DTYPE.names[:1] == ("code",)
    for f in ("amount_fen", "balance_fen", "journal_seq"):
        assert f in cardledger.RESULT_DTYPE.names


def test_implementation_follows_the_environment():
    expected = "python" if os.environ.get("CARDLEDGER_PURE", "") not in ("", "0") else "cython"
    assert cardledger.IMPLEMENTATION == expected


def test_new_ops_is_zeroed_and_typed():
    ops = cardledger.new_ops(3)
    assert ops.dtype == cardledger.OP_DTYPE and len(ops) == 3 and not ops.view("u1").any()


def test_every_public_function_has_a_docstring():
    import inspect

    for name in cardledger.__all__:
        obj = getattr(cardledger, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, name
    for name, member in inspect.getmembers(cardledger.Ledger):
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
            assert member.__doc__, f"Ledger.{name}"


def test_type_stubs_check_with_mypy(tmp_path):
    pytest.importorskip("mypy")
    usage = tmp_path / "usage.py"
    usage.write_text(
        "import cardledger\n"
        "from cardledger._core import Engine\n"
        "ops = cardledger.new_ops(2)\n"
        "built = cardledger.build_ops([{'kind': 'OPEN', 'account_id': 1}], source=1, time_us=1)\n"
        "with cardledger.open('x') as led:\n"
        "    r = led.apply(ops)\n"
        "    b: int = led.balance(1)\n"
        "    ok: bool = led.verify().ok\n"
        "e = Engine(500_000)\n"
        "res, journal = e.apply(ops)\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-incremental", str(usage)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
