"""Op arrays with arbitrary values in every field: both engines decide them alike,
result for result and record for record, no money is created or lost, every invariant
holds, and replaying the journal rebuilds the same state. Values are drawn to hit the
edges (0, 1, -1, the types' limits) and the accounts and ids that exist, as well as
anything at all. (Issue 24's "fuzzing the edges", for the engines.)"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers import HYPOTHESIS_EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from cardledger.engine.spec import batch as reference
from cardledger.fares.system import FareSystem
from cardledger.fares.taptables import compile_taps
from cardledger.schema import OP_DTYPE, AccountKind, OpFlags, OpKind
from cardledger.verify import invariant_problems

core = pytest.importorskip("cardledger._core")

T0 = 1_767_225_600_000_000
#: Accounts every fuzzed batch finds: (id, kind).
ACCOUNTS = ((1, AccountKind.CLEARING), (2, AccountKind.MERCHANT), (3, AccountKind.PROGRAM),
            (4, AccountKind.OPERATOR), (5, AccountKind.SUBSIDY), *((i, AccountKind.CARD) for i in range(10, 16)),
    (9001, AccountKind.OPERATOR), (9002, AccountKind.OPERATOR))


def _limits(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def field_values(name: str) -> st.SearchStrategy[int]:
    """Values for one OP_DTYPE field: edges, the ids and kinds that exist, anything."""
    lo, hi = _limits(OP_DTYPE[name])
    edges = [v for v in (0, 1, 2, -1, lo, hi, hi - 1, lo + 1) if lo <= v <= hi]
    near = {
        "source": st.integers(1, 4), "seq": st.integers(1, 30),
        "account_id": st.sampled_from([a for a, _ in ACCOUNTS] + [99]),
        "counterparty_id": st.sampled_from([a for a, _ in ACCOUNTS] + [99]),
        "amount_fen": st.integers(-10, 600_000), "time_us": st.integers(T0, T0 + 10**11),
        "kind": st.integers(0, max(OpKind) + 2), "flags": st.integers(0, 2 * max(OpFlags) + 1),
        "account_kind": st.integers(0, max(AccountKind) + 1), "category": st.integers(0, 4),
        "ref_source": st.integers(1, 4), "ref_seq": st.integers(1, 30), "tap": st.integers(0, 5),
    }.get(name, st.integers(0, 3))
    return st.one_of(st.sampled_from(edges), near, st.integers(lo, hi))


op_rows = st.fixed_dictionaries({name: field_values(name) for name in OP_DTYPE.names})


@functools.cache
def harbin_versions() -> list:
    """The packaged Harbin system, compiled for the engines."""
    return [compile_taps(FareSystem.harbin(), 0)]


def setup_ops() -> np.ndarray:
    ops = np.zeros(len(ACCOUNTS) + 7, dtype=OP_DTYPE)
    for i, (aid, kind) in enumerate(ACCOUNTS):
        ops[i]["source"], ops[i]["seq"], ops[i]["kind"] = 100, i + 1, OpKind.OPEN
        ops[i]["account_id"], ops[i]["account_kind"], ops[i]["time_us"] = aid, kind, T0
    k = len(ACCOUNTS)
    for j, (debit, credit, fen) in enumerate([(1, 3, 10**9), (1, 10, 5_000), (1, 11, 400_000), (1, 12, 1),
                                              (1, 13, 50_000), (1, 14, 20), (1, 15, 499_999)]):
        kind = OpKind.TRANSFER if credit == 3 else OpKind.TOPUP
        acct, cp = (debit, credit) if kind == OpKind.TRANSFER else (credit, debit)
        ops[k + j]["source"], ops[k + j]["seq"], ops[k + j]["kind"], ops[k + j]["time_us"] = 100, k + j + 1, kind, T0
        ops[k + j]["account_id"], ops[k + j]["counterparty_id"], ops[k + j]["amount_fen"] = acct, cp, fen
    return ops


@settings(max_examples=HYPOTHESIS_EXAMPLES * 5, deadline=None)
@given(st.lists(st.lists(op_rows, min_size=1, max_size=12), min_size=1, max_size=4))
def test_arbitrary_ops_are_decided_alike_and_never_break_the_ledger(batches):
    engines = [reference.Engine(), core.Engine()]
    for e in engines:  # taps are rated by the packaged Harbin system (operators 9001-9005 are missing: some fail so)
        e.set_fare_versions(harbin_versions())
    journals = []
    for ops in [setup_ops()] + [np.array([tuple(r[n] for n in OP_DTYPE.names) for r in b], dtype=OP_DTYPE)
                                for b in batches]:
        (r_ref, j_ref), (r_core, j_core) = (e.apply(ops.copy()) for e in engines)
        assert r_ref.tobytes() == r_core.tobytes(), "results differ"
        assert j_ref.tobytes() == j_core.tobytes(), "journal records differ"
        journals.append(j_ref)
    states = [e.export_checkpoint() for e in engines]
    for x, y in zip(*states):
        assert x.tobytes() == y.tobytes(), "the engines' states differ"
    accounts, _, pending = states[0]
    assert invariant_problems(accounts, pending) == []
    # Replaying the journal into fresh engines rebuilds the same state, in both.
    for make in (reference.Engine, core.Engine):
        fresh = make()
        fresh.set_fare_versions(harbin_versions())
        for j in journals:
            if len(j):
                fresh.replay(j)
        for x, y in zip(fresh.export_checkpoint(), states[0]):
            assert x.tobytes() == y.tobytes(), "a replay does not rebuild the state"
