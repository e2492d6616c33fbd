"""The cache of journal batches read for id lookups: finds the batch holding a
journal_seq, and keeps the most recently used ones (a model check)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np

from cardledger.store import journal


def test_the_decoded_batches_cache_behaves_as_an_lru_of_seq_ranges(monkeypatch):
    monkeypatch.setattr(journal, "DECODED_BATCHES_MAX", 8)
    cache = journal.DecodedBatches(codec=None)
    model: list[tuple[int, int]] = []  # (first, last), least recently used first
    rng = random.Random(1)
    batches = [(1 + 10 * k, 10 + 10 * k) for k in range(40)]
    for _ in range(20_000):
        if rng.random() < 0.4:
            first, last = rng.choice(batches)
            cache.add(SimpleNamespace(first_seq=first, last_seq=last, tag=(first, last)))
            if (first, last) in model:
                model.remove((first, last))
            model.append((first, last))
            del model[:-8]
        else:
            jseq = rng.randint(1, 420)
            got = cache.find(jseq)
            want = next(((f, l) for f, l in model if f <= jseq <= l), None)
            assert (got.tag if got else None) == want
            if want:
                model.remove(want)
                model.append(want)
        assert sorted(cache._by_last) == cache._lasts


def test_the_cores_record_marks_are_those_of_its_packed_batch():
    """A batch the core packed comes with the marks `journal_record_marks` would compute
    from its bytes (a cached batch's single records are then decoded without a walk),
    for the window's first batch and for later ones."""
    import pytest

    core = pytest.importorskip("cardledger._core")
    from helpers.opgen import OpWorld

    from cardledger.store.journal import RECORD_MARK_STRIDE

    rng = random.Random(5)
    world = OpWorld(rng)
    e = core.Engine()
    decided: set[tuple[int, int]] = set()
    for b in range(30):
        ops = world.setup_batch() if b == 0 else world.batch(rng.randrange(1, 200), 0.2)
        # Without the id index behind it, the engine must not meet an id decided before
        # its window (it would decide it again): resent ids are left out.
        keep, seen = [], set()
        for key in zip(ops["source"].tolist(), ops["seq"].tolist()):
            keep.append(key not in decided and key not in seen)
            seen.add(key)
        ops = ops[np.array(keep, dtype=bool)]
        if not len(ops):
            continue
        _, journal = e.apply(ops)
        decided.update((int(s), int(q)) for s, q in zip(ops["source"], ops["seq"]))
        if not len(journal):
            continue
        packed, first = e.last_batch_packed(), int(journal["journal_seq"][0])
        marks = e.last_batch_marks(RECORD_MARK_STRIDE)
        assert marks.tobytes() == core.journal_record_marks(packed, len(journal), first, RECORD_MARK_STRIDE).tobytes()
        k = rng.randrange(len(journal))
        one = core.unpack_journal_record(packed, len(journal), first, k, marks, RECORD_MARK_STRIDE)
        assert one.tobytes() == journal[k : k + 1].tobytes()
        if b % 7 == 0:
            e.take_decisions()  # the window starts again
