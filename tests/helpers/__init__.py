"""Helpers shared by the test suite: building op batches and reading results.

Tests import them as `from helpers import Ops, codes, open_cards`; the fixtures are in
`tests/conftest.py`. Larger helpers have modules of their own: `opgen` (random op
worlds for the differential and stateful tests), `fares_cases` (the GTFS Fares v2
cases), `taps_feed` (a small feed for the tap rules), `gateway_pki` (certificates for the
authenticated gateway, made at test time).
"""

from __future__ import annotations

import os

import numpy as np

import cardledger
from cardledger import AccountKind, OpKind

#: hypothesis examples per test: CI keeps it quick; HYPOTHESIS_EXAMPLES raises it.
HYPOTHESIS_EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "40"))


class Ops:
    """Builds op batches with fresh ids: `b.add(kind, account, counterparty, amount, ...)`."""

    def __init__(self, source: int = 1, start_seq: int = 1) -> None:
        self.source = source
        self.seq = start_seq
        self.rows: list[dict] = []

    def add(self, kind, account_id=0, counterparty_id=0, amount_fen=0, **fields) -> "Ops":
        """Add one op with the next id, at time T0 + seq unless `fields` give a time_us."""
        row = dict(
            source=self.source, seq=self.seq, kind=int(kind), account_id=account_id,
            counterparty_id=counterparty_id, amount_fen=amount_fen,
            time_us=1_767_225_600_000_000 + self.seq,
        )
        row.update(fields)
        self.seq += 1
        self.rows.append(row)
        return self

    def take(self) -> np.ndarray:
        """The batch built so far (and start a new one)."""
        ops = cardledger.build_ops(self.rows)
        self.rows = []
        return ops


def open_cards(led, cards, topup_fen: int, source: int = 50) -> None:
    """One batch: clearing account 1, merchant 2, and each card opened and topped up by
    `topup_fen` from the clearing account; every op must succeed."""
    b = Ops(source=source)
    b.add(OpKind.OPEN, 1, account_kind=AccountKind.CLEARING)
    b.add(OpKind.OPEN, 2, account_kind=AccountKind.MERCHANT)
    for c in cards:
        b.add(OpKind.OPEN, c, account_kind=AccountKind.CARD)
        b.add(OpKind.TOPUP, c, 1, topup_fen)
    r = led.apply(b.take())
    assert (r["code"] == 0).all(), codes(r)


def codes(results) -> list[str]:
    """Result codes as names, for readable assertions."""
    return [cardledger.Result(int(c)).name for c in results["code"]]
