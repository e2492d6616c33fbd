"""A full LMDB map grows and the batch is retried: nothing is lost, nothing applied twice."""

from __future__ import annotations

import numpy as np

import cardledger
from cardledger.store import env as env_module
from cardledger import AccountKind, OpKind

#: Small enough that the batches below fill it several times over.
SMALL_MAP_BYTES = 256 * 1024
CARDS = 2_000


def _batches() -> list[np.ndarray]:
    setup = cardledger.new_ops(2 + 2 * CARDS)
    setup["source"], setup["seq"] = 1, np.arange(1, len(setup) + 1)
    setup["kind"][0], setup["account_id"][0], setup["account_kind"][0] = OpKind.OPEN, 1, AccountKind.CLEARING
    setup["kind"][1], setup["account_id"][1], setup["account_kind"][1] = OpKind.OPEN, 2, AccountKind.MERCHANT
    cards = 10_000 + np.arange(CARDS)
    setup["kind"][2 : 2 + CARDS], setup["account_id"][2 : 2 + CARDS] = OpKind.OPEN, cards
    setup["account_kind"][2 : 2 + CARDS] = AccountKind.CARD
    setup["kind"][2 + CARDS :], setup["account_id"][2 + CARDS :] = OpKind.TOPUP, cards
    setup["counterparty_id"][2 + CARDS :], setup["amount_fen"][2 + CARDS :] = 1, 100_000
    batches = [setup]
    rng = np.random.default_rng(7)
    for b in range(12):
        ops = cardledger.new_ops(4_096)
        ops["source"], ops["seq"], ops["kind"] = 2, 1 + b * 4_096 + np.arange(4_096), OpKind.SPEND
        ops["account_id"], ops["counterparty_id"] = 10_000 + rng.integers(0, CARDS, 4_096), 2
        ops["amount_fen"] = rng.integers(1, 50, 4_096)
        batches.append(ops)
    return batches


def test_a_full_map_grows_and_every_batch_applies_once(tmp_path, monkeypatch):
    batches = _batches()
    with cardledger.open(str(tmp_path / "roomy"), create=True) as roomy:
        want = [roomy.apply(b) for b in batches]
        want_accounts = roomy.accounts()

    monkeypatch.setattr(env_module, "MAP_SIZE_INITIAL_BYTES", SMALL_MAP_BYTES)
    path = str(tmp_path / "cramped")
    with cardledger.open(path, checkpoint_ops=8_192, create=True) as led:
        got = [led.apply(b) for b in batches]
        grown_to = led._store.env.info()["map_size"]
        assert led.verify().ok
    assert grown_to > SMALL_MAP_BYTES  # the map did fill and grow
    for g, w in zip(got, want):
        assert g.tobytes() == w.tobytes()  # same results as with room to spare
    with cardledger.open(path, create=True) as again:  # reopens (LMDB keeps the grown size) with the same state
        assert again.accounts().tobytes() == want_accounts.tobytes()
        assert again.verify().ok
