"""Core and reference engines agree, result for result, on random batches.

Driven below the storage layer, so it runs thousands of batches quickly: each engine
gets the same ops, and the ids decided before a simulated checkpoint are served as
`prior` records, as the storage layer would from its id index.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from helpers import HYPOTHESIS_EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers.opgen import OpWorld

from cardledger.engine.spec import batch as reference
from cardledger.schema import JOURNAL_DTYPE

core = pytest.importorskip("cardledger._core")


def run_both(seed: int, batches: int) -> None:
    rng = random.Random(seed)
    world = OpWorld(rng)
    engines = [reference.Engine(), core.Engine()]
    offers = world.offer_tables()
    for e in engines:
        e.set_offer_versions(offers)
    indexed: dict[tuple[int, int], np.void] = {}  # what the id index would hold
    window: dict[tuple[int, int], np.void] = {}
    for b in range(batches):
        ops = world.setup_batch() if b == 0 else world.batch(rng.randrange(1, 40), rng.choice((0.0, 0.2, 0.6)))
        outs = []
        for e in engines:
            prior = np.zeros(len(ops), JOURNAL_DTYPE)
            has = np.zeros(len(ops), bool)
            for i in np.flatnonzero(e.candidates(ops)):
                key = (int(ops[i]["source"]), int(ops[i]["seq"]))
                if key in indexed:
                    prior[i], has[i] = indexed[key], True
            outs.append(e.apply(ops, prior, has))
        (r_ref, j_ref), (r_core, j_core) = outs
        assert r_ref.tobytes() == r_core.tobytes(), f"seed {seed} batch {b}: results differ"
        assert j_ref.tobytes() == j_core.tobytes(), f"seed {seed} batch {b}: journals differ"
        for x, y in zip(engines[0].export_checkpoint(), engines[1].export_checkpoint()):
            assert x.tobytes() == y.tobytes(), f"seed {seed} batch {b}: state differs"
        for x, y in zip(engines[0].export_offer_state(), engines[1].export_offer_state()):
            assert x.tobytes() == y.tobytes(), f"seed {seed} batch {b}: offer state differs"
        window.update({(int(r["source"]), int(r["seq"])): r.copy() for r in j_ref})
        if rng.random() < 0.2:  # a checkpoint: decisions move from memory to the index
            d_ref, d_core = engines[0].take_decisions(), engines[1].take_decisions()
            assert d_ref[0].tobytes() == d_core[0].tobytes() and d_ref[1].tobytes() == d_core[1].tobytes()
            indexed.update(window)
            window = {}
    # Replaying the whole journal into fresh engines rebuilds the same state.


@settings(max_examples=HYPOTHESIS_EXAMPLES * 3, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_core_and_reference_agree_on_random_batches(seed: int) -> None:
    run_both(seed, batches=40)


def test_journal_replay_rebuilds_the_same_state() -> None:
    """Replaying an engine's journal into a fresh engine of either kind gives its state
    (its offer state too: a seed whose purchases get discounts)."""
    rng = random.Random(5)
    world = OpWorld(rng)
    live = core.Engine()
    offers = world.offer_tables()
    live.set_offer_versions(offers)
    journal = []
    for b in range(80):
        ops = world.setup_batch() if b == 0 else world.batch(rng.randrange(1, 40), 0.2)
        journal.append(live.apply(ops)[1])
    records = np.concatenate(journal)
    assert ((records["kind"] == 18) & (records["code"] == 0) & (records["discounts"] > 0)).any()  # offers applied
    for fresh in (core.Engine(), reference.Engine()):
        fresh.set_offer_versions(offers)
        fresh.replay(records)
        for x, y in zip(live.export_checkpoint(), fresh.export_checkpoint()):
            assert x.tobytes() == y.tobytes()
        for x, y in zip(live.export_offer_state(), fresh.export_offer_state()):
            assert x.tobytes() == y.tobytes()


def test_replay_refuses_a_tampered_record() -> None:
    """A journal record whose figures were altered does not replay."""
    rng = random.Random(3)
    world = OpWorld(rng)
    live = core.Engine()
    records = np.concatenate([live.apply(world.setup_batch())[1], live.apply(world.batch(30))[1]])
    ok = np.flatnonzero((records["code"] == 0) & (records["result_amount_fen"] > 0))
    records[ok[0]]["result_amount_fen"] += 1
    for fresh in (core.Engine(), reference.Engine()):
        with pytest.raises(ValueError):
            fresh.replay(records)



@pytest.mark.parametrize("field", ["union_id", "union_fen"])
@pytest.mark.parametrize("kind", [18, 19])  # PURCHASE, REFUND
@pytest.mark.parametrize("how", ["altered", "dropped"])
def test_replay_refuses_a_record_whose_union_leg_is_wrong(field: str, kind: int, how: str) -> None:
    """A PURCHASE's and a REFUND's union leg (union_id, union_fen) are decision fields
    like the others: a record whose union figure was altered or zeroed does not replay
    in either engine (so `verify` catches it)."""
    rng = random.Random(0)  # a seed whose purchases and refunds have union legs
    world = OpWorld(rng)
    live = core.Engine()
    offers = world.offer_tables()
    live.set_offer_versions(offers)
    records = np.concatenate([live.apply(world.setup_batch() if b == 0 else world.batch(rng.randrange(1, 40), 0.2))[1]
                              for b in range(80)])
    legs = np.flatnonzero((records["kind"] == kind) & (records["code"] == 0) & (records["union_fen"] > 0))
    assert len(legs), "the seed has a union leg of this kind"
    assert (records[legs]["union_id"] != 0).all()
    records[legs[0]][field] = records[legs[0]][field] + 1 if how == "altered" else 0
    for fresh in (core.Engine(), reference.Engine()):
        fresh.set_offer_versions(offers)
        with pytest.raises(ValueError):
            fresh.replay(records)
