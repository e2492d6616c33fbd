"""engine/select.py is the one place that picks an implementation: a ledger runs one
side whole (engine, codec), and what one side writes the other reads."""

from __future__ import annotations

import pytest
from helpers import Ops, codes, open_cards

import cardledger
from cardledger import OpKind
from cardledger.engine import select
from cardledger.engine.spec import batch as spec_batch
from cardledger.engine.spec import codec as spec_codec
from cardledger.engine.spec import fares as spec_fares


def test_the_python_side_is_the_spec_whole():
    assert select.engine_class("python") is spec_batch.Engine
    assert select.codec_for("python") is spec_codec
    assert select.evaluator_for("python") is spec_fares.ReferenceEvaluator


def test_the_default_is_the_implementation_the_environment_asks_for():
    assert select.resolve(None) == cardledger.IMPLEMENTATION
    assert select.engine_class(None) is cardledger.Engine


def test_an_unknown_implementation_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'cython' or 'python'"):
        select.engine_class("rust")


def test_a_python_ledger_uses_no_c(ledger_path):
    """open(engine="python") stores its journal with the spec's codec, not the core's."""
    with cardledger.open(ledger_path, engine="python", create=True) as led:
        assert led.implementation == "python"
        assert isinstance(led._engine, spec_batch.Engine)
        assert led._codec is spec_codec and led._store.codec is spec_codec


def test_a_ledger_written_by_one_side_reopens_on_the_other(tmp_path):
    """Both sides write the same bytes: a ledger the core wrote (journal, id log, a
    checkpoint file) reopens on the spec with the same state, and the other way round."""
    pytest.importorskip("cardledger._core")
    for first, second in (("cython", "python"), ("python", "cython")):
        path = str(tmp_path / f"{first}-then-{second}")
        with cardledger.open(path, engine=first, checkpoint_ops=50, create=True) as led:
            open_cards(led, range(100, 140), 10_000)
            spends = Ops(source=7)
            for c in range(100, 140):
                spends.add(OpKind.SPEND, c, 2, 99)
            assert set(codes(led.apply(spends.take()))) == {"OK"}
            accounts = led.accounts()
        with cardledger.open(path, engine=second, create=True) as led:
            assert led.accounts().tobytes() == accounts.tobytes()
            assert led.verify().ok
            again = Ops(source=7)
            again.add(OpKind.SPEND, 100, 2, 99)  # seq 1 of source 7: decided by the first side
            assert codes(led.apply(again.take())) == ["EXISTS"]
