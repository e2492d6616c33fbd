"""Source policies in the engines: both decide alike, and a replay rebuilds the set in force.

Driven below the storage layer, as test_engines_agree is: each engine is given the
policy sets (`set_policy_versions`) and the SET_POLICIES records that install them,
between random batches of the op world.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from helpers import HYPOTHESIS_EXAMPLES
from helpers.opgen import OpWorld
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers.policygen import random_policies

from cardledger.engine.spec import batch as reference
from cardledger.policies import PolicyVersion, check_set, encode_set
from cardledger.schema import OP_FIELDS_USED, POLICY_SOURCE, OpKind, Result, new_ops

core = pytest.importorskip("cardledger._core")


def install_op(jseq: int, version: PolicyVersion) -> np.ndarray:
    """The SET_POLICIES op install_policies writes for a set stored at jseq."""
    op = new_ops(1)
    op["source"], op["seq"], op["kind"] = POLICY_SOURCE, jseq, OpKind.SET_POLICIES
    op["time_us"], op["user_data"] = 1_700_000_000_000_000, version.digest
    return op


def test_core_and_reference_agree_with_policy_sets_installed_between_batches() -> None:
    """Random batches with random sets installed now and then: same results, same
    journals, same state; and a fresh engine given the sets replays the journal to the
    same set in force."""
    denied = sum(run_with_policies(seed, batches=30) for seed in range(8))
    assert denied > 50  # the sets did refuse ops (and the rest were decided as without them)


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_engines_agree_on_random_policy_sets(seed: int) -> None:
    """As above, for hypothesis' seeds."""
    run_with_policies(seed, batches=20)


def run_with_policies(seed: int, batches: int) -> int:
    """Run both engines; return how many ops the sets refused."""
    rng = random.Random(seed)
    world = OpWorld(rng)
    engines = [reference.Engine(), core.Engine()]
    versions: list[PolicyVersion] = []
    journal = []
    denied = 0
    for b in range(batches):
        if b and rng.random() < 0.3:
            jseq = engines[0].journal_seq + 1
            versions.append(PolicyVersion(jseq, encode_set(check_set(random_policies(rng)))))
            for e in engines:
                e.set_policy_versions(versions)
            ops = install_op(jseq, versions[-1])
        else:
            ops = world.setup_batch() if b == 0 else world.batch(rng.randrange(1, 40), rng.choice((0.0, 0.2)))
        (r_ref, j_ref), (r_core, j_core) = [e.apply(ops) for e in engines]
        assert r_ref.tobytes() == r_core.tobytes(), f"seed {seed} batch {b}: results differ"
        assert j_ref.tobytes() == j_core.tobytes(), f"seed {seed} batch {b}: journals differ"
        assert engines[0].policy_in_force() == engines[1].policy_in_force()
        for x, y in zip(engines[0].export_checkpoint(), engines[1].export_checkpoint()):
            assert x.tobytes() == y.tobytes(), f"seed {seed} batch {b}: state differs"
        denied += int((r_ref["code"] == Result.SOURCE_NOT_ALLOWED).sum())
        journal.append(j_ref.copy())
    for make in (reference.Engine, core.Engine):
        fresh = make()
        fresh.set_policy_versions(versions)
        for j in journal:
            fresh.replay(j)
        assert fresh.policy_in_force() == engines[0].policy_in_force()
        assert fresh.export_checkpoint()[0].tobytes() == engines[0].export_checkpoint()[0].tobytes()
    return denied


@pytest.mark.parametrize("make", [reference.Engine, core.Engine], ids=["python", "cython"])
def test_a_set_policies_op_without_its_stored_set_is_refused(make) -> None:
    """A SET_POLICIES op whose set was not stored for its journal_seq (any op a gateway
    sends of that kind), or with another digest, fails with POLICY_SET_UNKNOWN."""
    e = make()
    v = PolicyVersion(1, encode_set(check_set([])))
    op = install_op(1, v)
    op["user_data"] ^= 1
    e.set_policy_versions([v])
    assert e.apply(op)[0]["code"][0] == Result.POLICY_SET_UNKNOWN
    assert e.policy_in_force() == 0
    other = install_op(2, v)
    other["source"] = 7
    assert e.apply(other)[0]["code"][0] == Result.POLICY_SET_UNKNOWN


@pytest.mark.parametrize("make", [reference.Engine, core.Engine], ids=["python", "cython"])
def test_a_checkpoint_loaded_takes_the_set_installed_at_or_before_it(make) -> None:
    """After load_checkpoint at journal_seq N, the set in force is the last installed at
    or before N: a set stored for a later record waits for its record's replay."""
    e = make()
    v1 = PolicyVersion(3, encode_set(check_set([])))
    v2 = PolicyVersion(9, encode_set(check_set(None)))
    e.set_policy_versions([v1, v2])
    exported = e.export_checkpoint()
    e.load_checkpoint(exported[0], exported[1], exported[2], 5)
    assert e.policy_in_force() == 3
    e.load_checkpoint(exported[0], exported[1], exported[2], 2)
    assert e.policy_in_force() == 0
    e.load_checkpoint(exported[0], exported[1], exported[2], 9)
    assert e.policy_in_force() == 0  # the set at 9 lifts enforcement


def test_the_core_refuses_policy_tables_it_could_read_out_of_bounds_with() -> None:
    """Tables whose ranges overlap or whose id slices lie outside their arrays are a
    ValueError at set_policy_versions, never a read past an array."""
    import dataclasses

    from cardledger import SourcePolicy

    v = PolicyVersion(1, encode_set(check_set([SourcePolicy(1, 5, [OpKind.TOPUP], accounts=[7, 9]),
                                               SourcePolicy(6, 9, [OpKind.SPEND])])))
    t = v.tables
    bad = [
        dataclasses.replace(t, acc_hi=np.array([5, -1], dtype=np.int64)),
        dataclasses.replace(t, first=np.array([1, 5], dtype=np.uint64)),
        dataclasses.replace(t, acc_ids=np.array([9, 7], dtype=np.uint64)),
        dataclasses.replace(t, kinds=t.kinds[:1]),
    ]
    for tables in bad:
        broken = PolicyVersion(1, v.data)
        broken.__dict__["tables"] = tables
        with pytest.raises(ValueError, match="policy tables"):
            core.Engine().set_policy_versions([broken])


@settings(max_examples=HYPOTHESIS_EXAMPLES * 2, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300))
def test_the_core_finds_the_policy_covering_a_source_as_the_reference_does(seed: int, n: int) -> None:
    """Sets of up to 300 ranges anywhere in the u64 sources (wide, single, adjacent,
    clustered), asked about sources at and beside every range's ends and at random:
    the core's bucket index and bisection refuse exactly what the reference refuses."""
    from cardledger import SourcePolicy

    r = random.Random(seed)
    top = (1 << 64) - 4
    spread = top if r.random() < 0.5 else 5000  # anywhere, or clustered
    cuts = sorted({r.randrange(1, spread) for _ in range(2 * n)} | {1})
    policies = [SourcePolicy(cuts[i], cuts[i + 1] - (r.random() < 0.5 and cuts[i + 1] > cuts[i]),
                             [OpKind.TOPUP] if r.random() < 0.8 else [OpKind.SPEND])
                for i in range(0, len(cuts) - 1, 2)]
    v = PolicyVersion(1, encode_set(check_set(policies)))
    probes = [1, 2, top, top - 1] + [r.randrange(1, top) for _ in range(200)]
    for p in policies:
        probes += [p.first_source - 1, p.first_source, p.last_source, p.last_source + 1]
    probes = [x for x in probes if 0 < x < top]
    engines = [reference.Engine(), core.Engine()]
    seen: dict[int, int] = {}
    ops = new_ops(len(probes))
    for i, x in enumerate(probes):
        seen[x] = seen.get(x, 0) + 1
        ops[i]["source"], ops[i]["seq"] = x, seen[x]
    ops["kind"], ops["account_id"], ops["counterparty_id"] = OpKind.TOPUP, 77, 78
    ops["amount_fen"], ops["time_us"] = 5, 1_700_000_000_000_000
    out = []
    for e in engines:
        e.set_policy_versions([v])
        assert e.apply(install_op(1, v))[0]["code"][0] == Result.OK
        out.append(e.apply(ops)[0]["code"])
    assert out[0].tolist() == out[1].tolist()
    allowed = out[0] != Result.SOURCE_NOT_ALLOWED
    want = [any(p.first_source <= x <= p.last_source and OpKind.TOPUP in p.kinds for p in policies) for x in probes]
    assert allowed.tolist() == want


def _lists_probed(policies) -> tuple[np.ndarray, list[bool]]:
    """TOPUPs from each policy's first source naming every listed id, its neighbours and
    ids of no list, as account and as counterparty; and whether each is allowed."""
    ids = sorted({x for p in policies for lst in (p.accounts, p.counterparties) if lst for x in lst})
    probe_ids = sorted({1, 2} | {y for x in ids for y in (x - 1, x, x + 1) if y > 0})
    rows, want = [], []
    for p in policies:
        acc = probe_ids if p.accounts is not None else [5]
        cp = probe_ids if p.counterparties is not None else [6]
        for a in acc:
            for c in cp:
                rows.append((p.first_source, a, c))
                want.append((p.accounts is None or a in p.accounts)
                            and (p.counterparties is None or c in p.counterparties))
    ops = new_ops(len(rows))
    for i, (s, a, c) in enumerate(rows):
        ops[i]["source"], ops[i]["seq"], ops[i]["account_id"], ops[i]["counterparty_id"] = s, i + 1, a, c
    ops["kind"], ops["amount_fen"], ops["time_us"] = OpKind.TOPUP, 5, 1_700_000_000_000_000
    return ops, want


@pytest.mark.parametrize("lengths", [
    # (account list length, counterparty list length) per policy; None: any.
    [(None, None), (0, None), (1, None), (None, 1), (2, 2), (4, None), (1, 3), (None, 0), (30, None), (None, 40)],
    [(5, None), (None, 12), (8, 8), (11, 3), (12, 0), (20, 20), (6, None), (None, 7), (3, 9), (0, 0)],
], ids=["one-line rows", "two-line rows"])
@pytest.mark.parametrize("base", [0, 1 << 40], ids=["direct table", "bucket search"])
def test_lists_held_in_rows_or_listed_refuse_and_allow_alike(lengths, base) -> None:
    """The core holds a policy's short account / counterparty lists in its row (one
    cache line, or two where the set has lists of 5 to 12 ids) and searches longer ones
    by bisection (core.pxd PolicyRow): each placement, the empty list and both lists in
    one row allow exactly the ids listed, as the reference does, for every id on a list,
    beside one, or on none; whether the set's rows are found by its direct table (its
    sources span few ids) or by the bucket search (a source range ending 2**40 away)."""
    from cardledger import SourcePolicy

    r = random.Random(len(lengths))
    policies = []
    for i, (na, nc) in enumerate(lengths):
        def ids(n):
            return None if n is None else r.sample(range(100, 100 + 4 * n + 8), n)
        policies.append(SourcePolicy(10 * i + 1, 10 * i + 5, [OpKind.TOPUP], accounts=ids(na), counterparties=ids(nc)))
    if base:  # one more policy far off: the set's span is too wide for a direct table
        policies.append(SourcePolicy(base, base + 1, [OpKind.TOPUP]))
    v = PolicyVersion(1, encode_set(check_set(policies)))
    ops, want = _lists_probed(policies)
    assert {"account_id", "counterparty_id"} <= set(OP_FIELDS_USED[OpKind.TOPUP])
    out = []
    for e in (reference.Engine(), core.Engine()):
        e.set_policy_versions([v])
        assert e.apply(install_op(1, v))[0]["code"][0] == Result.OK
        out.append(e.apply(ops)[0]["code"])
    assert out[0].tolist() == out[1].tolist()
    assert (out[0] != Result.SOURCE_NOT_ALLOWED).tolist() == want
    assert 0 < sum(want) < len(want)
