"""Op arrays with arbitrary values in every field: both engines decide them alike,
result for result and record for record, no money is created or lost, every invariant
holds, and replaying the journal rebuilds the same state. Values are drawn to hit the
edges (0, 1, -1, the types' limits) and the accounts and ids that exist, as well as
anything at all, with an offer catalog installed (PURCHASE and REFUND find discounts,
limits and the union's fund) and, in half the examples, a set of source policies in force.
(Issue 24's "fuzzing the edges", for the engines.)"""

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
from cardledger.offers import OfferCatalog
from cardledger.offers.tables import compile_versions
from cardledger.policies import PolicyVersion, SourcePolicy, check_set, encode_set
from cardledger.schema import OP_DTYPE, POLICY_SOURCE, AccountKind, OpFlags, OpKind
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


@functools.cache
def offer_versions() -> list:
    """A catalog for merchant 2, half paid by the union's fund 5, and a city-wide offer
    with limits and a small budget, compiled for the engines."""
    catalog = OfferCatalog.from_dict({
        "merchant": [{"id": 2, "name": "m"}],
        "offer": [
            {"id": "m2", "merchants": [2], "amount_off_fen": 500, "min_gross_fen": 1_000, "every_fen": 1_000,
             "max_discount_fen": 5_000, "union_share_bp": 5_000, "union_account": 5, "per_card_day_count": 2},
            {"id": "all", "percent_off_bp": 1_500, "per_card_month_discount_fen": 3_000, "budget_fen": 20_000},
        ],
    })
    return compile_versions([(T0, catalog)])[0]


#: The set of source policies half the examples run under: sources 1-2 may do anything,
#: source 3 only buy and refund at merchant 2 up to 100 yuan; source 4 nothing.
POLICIES = (SourcePolicy(1, 2, list(OpKind)),
            SourcePolicy(3, 3, [OpKind.PURCHASE, OpKind.REFUND], counterparties=[2], amount_max_fen=10_000))


def install_policies_all(engines: list, jseq: int) -> np.ndarray:
    """Store POLICIES in the engines for the SET_POLICIES record at jseq, as the ledger
    does, and return that record's op (applying it puts the set in force)."""
    version = PolicyVersion(jseq, encode_set(check_set(POLICIES)))
    for engine in engines:
        engine.set_policy_versions([version])
    op = np.zeros(1, dtype=OP_DTYPE)
    op["source"], op["seq"], op["kind"] = POLICY_SOURCE, jseq, OpKind.SET_POLICIES
    op["time_us"], op["user_data"] = T0, version.digest
    return op


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
@given(st.lists(st.lists(op_rows, min_size=1, max_size=12), min_size=1, max_size=4), st.booleans())
def test_arbitrary_ops_are_decided_alike_and_never_break_the_ledger(batches, policed):
    engines = [reference.Engine(), core.Engine()]
    for e in engines:  # taps are rated by the packaged Harbin system (operators 9001-9005 are missing: some fail so)
        e.set_fare_versions(harbin_versions())
        e.set_offer_versions(offer_versions())
    journals = []
    setup = [setup_ops()]
    if policed:
        setup.append(install_policies_all(engines, len(setup[0]) + 1))
    for ops in setup + [np.array([tuple(r[n] for n in OP_DTYPE.names) for r in b], dtype=OP_DTYPE)
                        for b in batches]:
        (r_ref, j_ref), (r_core, j_core) = (e.apply(ops.copy()) for e in engines)
        if len(ops) == 1 and ops["kind"][0] == OpKind.SET_POLICIES and ops["source"][0] == POLICY_SOURCE:
            assert r_ref["code"][0] == 0, "the policy set is in force"
        assert r_ref.tobytes() == r_core.tobytes(), "results differ"
        assert j_ref.tobytes() == j_core.tobytes(), "journal records differ"
        journals.append(j_ref)
    states = [e.export_checkpoint() for e in engines]
    for x, y in zip(*states):
        assert x.tobytes() == y.tobytes(), "the engines' states differ"
    offer_states = [e.export_offer_state() for e in engines]
    for x, y in zip(*offer_states):
        assert x.tobytes() == y.tobytes(), "the engines' offer states differ"
    accounts, _, pending = states[0]
    assert invariant_problems(accounts, pending) == []
    # Replaying the journal into fresh engines rebuilds the same state, in both.
    for make in (reference.Engine, core.Engine):
        fresh = make()
        fresh.set_fare_versions(harbin_versions())
        fresh.set_offer_versions(offer_versions())
        if policed:
            fresh.set_policy_versions([PolicyVersion(len(journals[0]) + 1, encode_set(check_set(POLICIES)))])
        for j in journals:
            if len(j):
                fresh.replay(j)
        for x, y in zip(fresh.export_checkpoint(), states[0]):
            assert x.tobytes() == y.tobytes(), "a replay does not rebuild the state"
        for x, y in zip(fresh.export_offer_state(), offer_states[0]):
            assert x.tobytes() == y.tobytes(), "a replay does not rebuild the offer state"
        assert fresh.policy_in_force() == engines[0].policy_in_force()
