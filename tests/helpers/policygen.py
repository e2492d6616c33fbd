"""Random sets of source policies over the op world's sources (helpers.opgen)."""

from __future__ import annotations

import random

import cardledger

from .opgen import ACCOUNT_POOL


def random_policies(r: random.Random) -> list[cardledger.SourcePolicy] | None:
    """A set over the world's sources 1..3 (some left uncovered), each policy allowing a
    random share of the kinds, sometimes only some accounts or counterparties, sometimes
    a largest amount; now and then None or the empty set."""
    x = r.random()
    if x < 0.1:
        return None
    if x < 0.15:
        return []
    kinds = list(cardledger.OpKind)
    pool = ACCOUNT_POOL + (1000, 1001)
    out = []
    for source in (1, 2, 3):
        if r.random() < 0.15:
            continue  # uncovered: SOURCE_NOT_ALLOWED
        out.append(cardledger.SourcePolicy(
            source, source, [k for k in kinds if r.random() < 0.75],
            accounts=None if r.random() < 0.6 else r.sample(pool, r.randrange(len(pool))),
            counterparties=None if r.random() < 0.6 else r.sample(pool, r.randrange(len(pool))),
            amount_max_fen=None if r.random() < 0.6 else r.choice((0, 500, 50_000)),
        ))
    return out
