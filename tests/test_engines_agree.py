"""Core and reference engines agree, result for result, on random batches.

Driven below the storage layer, so it runs thousands of batches quickly: each engine
gets the same ops, and the ids decided before a simulated checkpoint are served as
`prior` records, as the storage layer would from its id index.
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from conftest import HYPOTHESIS_EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from opgen import OpWorld

from cardledger import reference
from cardledger.schema import JOURNAL_DTYPE

core = pytest.importorskip("cardledger._core")


def run_both(seed: int, batches: int) -> None:
    rng = random.Random(seed)
    world = OpWorld(rng)
    engines = [reference.Engine(), core.Engine()]
    indexed: dict[tuple[int, int], np.void] = {}  # what the id index would hold
    window: dict[tuple[int, int], np.void] = {}
    detached = None  # the reference's decisions the core detached and sorts beside the next batch
    for b in range(batches):
        ops = world.setup_batch() if b == 0 else world.batch(rng.randrange(1, 40), rng.choice((0.0, 0.2, 0.6)))
        sorter = None
        if detached is not None:
            got: list = []
            sorter = threading.Thread(target=lambda: got.append(engines[1].sort_detached()))
            sorter.start()
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
        window.update({(int(r["source"]), int(r["seq"])): r.copy() for r in j_ref})
        if sorter is not None:
            sorter.join()
            assert got, "sort_detached failed"
            d_core = got[0]
            assert detached[0].tobytes() == d_core[0].tobytes() and detached[1].tobytes() == d_core[1].tobytes()
            detached = None
        if rng.random() < 0.2:  # a checkpoint: decisions move from memory to the index
            d_ref = engines[0].take_decisions()
            if rng.random() < 0.5:
                d_core = engines[1].take_decisions()
                assert d_ref[0].tobytes() == d_core[0].tobytes() and d_ref[1].tobytes() == d_core[1].tobytes()
            else:  # detached now, sorted in a thread while the next batch runs
                assert engines[1].detach_decisions() == len(d_ref[0])
                detached = d_ref
            indexed.update(window)
            window = {}
    # Replaying the whole journal into fresh engines rebuilds the same state.


@settings(max_examples=HYPOTHESIS_EXAMPLES * 3, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_core_and_reference_agree_on_random_batches(seed: int) -> None:
    run_both(seed, batches=40)


def test_journal_replay_rebuilds_the_same_state() -> None:
    """Replaying an engine's journal into a fresh engine of either kind gives its state."""
    rng = random.Random(7)
    world = OpWorld(rng)
    live = core.Engine()
    journal = []
    for b in range(80):
        ops = world.setup_batch() if b == 0 else world.batch(rng.randrange(1, 40), 0.2)
        journal.append(live.apply(ops)[1])
    records = np.concatenate(journal)
    for fresh in (core.Engine(), reference.Engine()):
        fresh.replay(records)
        for x, y in zip(live.export_checkpoint(), fresh.export_checkpoint()):
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


def test_detached_decisions_sort_beside_large_batches() -> None:
    """The core sorts detached decisions in another thread while batches large enough
    to run without the GIL fill a new window: the sort gives what take_decisions gives
    an engine that ran the same batches, and the new window is whole."""
    import cardledger
    from cardledger import AccountKind, OpKind

    def batches(rng):
        setup = cardledger.new_ops(3)
        setup["source"], setup["seq"], setup["kind"] = 1, [1, 2, 3], OpKind.OPEN
        setup["account_id"], setup["account_kind"] = [1, 2, 3], [AccountKind.CLEARING, AccountKind.MERCHANT, AccountKind.CARD]
        yield setup
        for b in range(4):
            ops = cardledger.new_ops(8192)
            ops["source"] = 100 + rng.integers(0, 500, 8192)
            ops["seq"] = 1 + b * 100_000 + np.arange(8192)  # (sources interleave, seqs rise)
            ops["kind"], ops["account_id"], ops["counterparty_id"], ops["amount_fen"] = OpKind.TOPUP, 3, 1, 1
            yield ops

    rng = np.random.default_rng(5)
    live, twin = core.Engine(), core.Engine()
    all_batches = list(batches(rng))
    for e in (live, twin):
        e.apply(all_batches[0])
        e.apply(all_batches[1])
    want = twin.take_decisions()
    live.detach_decisions()
    got: list = []
    sorter = threading.Thread(target=lambda: got.append(live.sort_detached()))
    sorter.start()
    for ops in all_batches[2:]:
        assert (live.apply(ops)[0]["code"] == 0).all()
        twin.apply(ops)
    sorter.join()
    assert got[0][0].tobytes() == want[0].tobytes() and got[0][1].tobytes() == want[1].tobytes()
    a, b = live.take_decisions(), twin.take_decisions()
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes() and len(a[0]) == 3 * 8192
