"""The cache of journal batches read for id lookups: finds the batch holding a
journal_seq, and keeps the most recently used ones (a model check)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import cardledger.ledger as ledger_module


def test_the_decoded_batches_cache_behaves_as_an_lru_of_seq_ranges(monkeypatch):
    monkeypatch.setattr(ledger_module, "DECODED_BATCHES_MAX", 8)
    cache = ledger_module._DecodedBatches()
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
