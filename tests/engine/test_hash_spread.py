"""The core's hash tables are keyed: ids chosen to collide under the public hash
(splitmix64's finalizer, which anyone can invert) spread over the tables like any
others, so no sender can make its ops walk long runs of slots. The work a lookup does
is seen through `Engine.hash_runs` (the longest run of occupied slots of each table:
what a lookup of a missing key walks), never timed.

Unkeyed, each test's ids would all share one home slot: a run as long as the ids."""

from __future__ import annotations

import numpy as np
import pytest

import cardledger
from cardledger import AccountKind, OpFlags, OpKind
from helpers.hashkeys import colliding_keys

core = pytest.importorskip("cardledger._core")

T0 = 1_767_225_600_000_000
N = 4096
#: Far above the longest run N keys hashed at random leave in a table at most half
#: full (a few dozen slots), far below N.
RUN_MAX = 256


def _ops(n: int, kind: int, **fields) -> np.ndarray:
    ops = cardledger.new_ops(n)
    ops["kind"], ops["time_us"] = kind, T0
    for name, value in fields.items():
        ops[name] = value
    return ops


def _engine() -> core.Engine:
    e = core.Engine()
    ops = _ops(2, OpKind.OPEN, source=1, seq=[1, 2], account_id=[1, 2],
               account_kind=[AccountKind.CLEARING, AccountKind.MERCHANT])
    assert (e.apply(ops)[0]["code"] == 0).all()
    return e


def test_account_ids_chosen_to_collide_spread_over_the_account_map():
    """OPEN of cards whose ids collide unkeyed: every one opened and found, and the
    account map's longest run of occupied slots (what a lookup of a missing id walks at
    most) stays short."""
    e = _engine()
    ids = colliding_keys(N)
    res, _ = e.apply(_ops(N, OpKind.OPEN, source=3, seq=np.arange(1, N + 1), account_id=ids,
                          account_kind=AccountKind.CARD))
    assert (res["code"] == 0).all()
    assert e.account_count() == N + 2
    assert e.hash_runs()["accounts"] < RUN_MAX
    res, _ = e.apply(_ops(N, OpKind.TOPUP, source=3, seq=np.arange(N + 1, 2 * N + 1), account_id=ids,
                          counterparty_id=1, amount_fen=5))
    assert (res["code"] == 0).all() and (res["balance_fen"] == 5).all()


def test_seqs_chosen_to_collide_spread_over_the_window_and_the_hold_map():
    """Holds (PENDING TRANSFERs) from one source whose ids collide unkeyed: the window
    of recent decisions and the hold map, both keyed by the id, keep short runs; each
    hold is then found by a POST."""
    e = _engine()
    card = 100
    res, _ = e.apply(_ops(2, [OpKind.OPEN, OpKind.TOPUP], source=1, seq=[3, 4], account_id=card,
                          account_kind=[AccountKind.CARD, 0], counterparty_id=[0, 1], amount_fen=[0, 100_000]))
    assert (res["code"] == 0).all()
    source = 9_001
    seqs = np.sort(colliding_keys(N, first=source))
    res, _ = e.apply(_ops(N, OpKind.TRANSFER, source=source, seq=seqs, account_id=card, counterparty_id=2,
                          amount_fen=1, flags=OpFlags.PENDING))
    assert (res["code"] == 0).all()
    runs = e.hash_runs()
    assert runs["window"] < RUN_MAX
    assert runs["holds"] < RUN_MAX
    posts = _ops(N, OpKind.POST, source=2, seq=np.arange(1, N + 1), ref_source=source, ref_seq=seqs)
    res, _ = e.apply(posts)
    assert (res["code"] == 0).all()
    assert e.hash_runs()["holds"] == 0  # every hold posted: the map is empty
