"""The two Ledger hooks a cluster is built on, without NATS: `replicator` (the leader
hands each journal batch out before its commit, and a refusal un-does the batch) and
`append_replicated` (a follower applies another ledger's batches, as they are, to the
same state)."""

from __future__ import annotations

import random

import numpy as np
import pytest

import cardledger
import cardledger.fares
from cardledger import CorruptionError, OpKind
from cardledger.cluster import state_hash
from cardledger.store import env as env_module
from helpers import Ops, codes
from helpers.opgen import OpWorld


def _leader_and_follower(tmp_path):
    leader = cardledger.open(str(tmp_path / "leader"), create=True)
    follower = cardledger.open(str(tmp_path / "follower"), create=True)
    published: list[bytes] = []
    leader.replicator = lambda key, value: published.append(bytes(value))
    return leader, follower, published


def test_a_follower_applying_the_leaders_batches_reaches_the_same_state(tmp_path):
    """Random batches (every op kind, replays, chains, malformed ops) through apply and
    submit on the leader; the follower appends exactly what the replicator was handed
    and ends with the same journal, state hash and a clean verify."""
    leader, follower, published = _leader_and_follower(tmp_path)
    with leader, follower:
        world = OpWorld(random.Random(7))
        leader.apply(world.setup_batch())
        futures = []
        for i in range(30):
            batch = world.batch(64)
            if i % 2:
                futures.append(leader.submit(batch))
            else:
                leader.apply(batch)
        for f in futures:
            f.result()
        leader.journal_seq  # (waits for the pipeline)
        done = 0
        for chunk in (published[:5], published[5:6], published[6:]):
            done = follower.append_replicated(chunk)
        assert done == leader.journal_seq == follower.journal_seq
        assert follower.last_batch_hash == leader.last_batch_hash
        assert state_hash(follower) == state_hash(leader)
        assert follower.verify().ok


def test_a_refusing_replicator_leaves_the_batch_unapplied(tmp_path):
    """When the replicator raises (the stream refused the batch), apply raises it, a
    submit's future carries it, and the ledger holds nothing of those batches."""
    with cardledger.open(str(tmp_path / "l"), create=True) as led:
        o = Ops()
        o.add(OpKind.OPEN, 1, account_kind=cardledger.AccountKind.CLEARING)
        o.add(OpKind.OPEN, 10, account_kind=cardledger.AccountKind.CARD)
        led.apply(o.take())
        before = led.journal_seq

        def refuse(key, value):
            raise cardledger.NotLeaderError("refused by the test", "127.0.0.1:1")

        led.replicator = refuse
        o.add(OpKind.TOPUP, 10, 1, 500)
        with pytest.raises(cardledger.NotLeaderError):
            led.apply(o.take())
        o.add(OpKind.TOPUP, 10, 1, 700)
        fut = led.submit(o.take())
        assert isinstance(fut.exception(10), cardledger.NotLeaderError)
        assert led.journal_seq == before and led.balance(10) == 0
        led.replicator = None
        o.add(OpKind.TOPUP, 10, 1, 900)
        assert codes(led.apply(o.take())) == ["OK"]
        assert led.balance(10) == 900 and led.verify().ok


def test_a_batch_that_does_not_follow_the_journal_is_refused_whole(tmp_path):
    """A replicated batch out of order, or not chained to the follower's last hash, is
    CorruptionError and appends nothing (the batches before it in the call neither)."""
    leader, follower, published = _leader_and_follower(tmp_path)
    with leader, follower:
        o = Ops()
        o.add(OpKind.OPEN, 1, account_kind=cardledger.AccountKind.CLEARING)
        o.add(OpKind.OPEN, 10, account_kind=cardledger.AccountKind.CARD)
        leader.apply(o.take())
        for amount in (100, 200, 300):
            o.add(OpKind.TOPUP, 10, 1, amount)
            leader.apply(o.take())
        assert len(published) == 4
        with pytest.raises(CorruptionError):
            follower.append_replicated([published[0], published[2]])  # a batch skipped
        assert follower.journal_seq == 0
        damaged = bytearray(published[1])
        damaged[-1] ^= 1
        follower.append_replicated([published[0]])
        with pytest.raises(CorruptionError):
            follower.append_replicated([bytes(damaged)])
        assert follower.journal_seq == 2
        follower.append_replicated(published[1:])
        assert follower.balance(10) == 600 and state_hash(follower) == state_hash(leader)
        assert np.array_equal(follower.accounts(), leader.accounts())


def test_a_replicated_ledger_refuses_to_install_fares_it_cannot_replicate(tmp_path):
    """Fare versions live beside the journal, not in it: with a replicator set,
    install_fares is refused (LedgerError) instead of letting followers rate taps by
    other fares."""
    with cardledger.open(str(tmp_path / "l"), create=True) as led:
        led.replicator = lambda key, value: None
        with pytest.raises(cardledger.LedgerError, match="not replicated"):
            led.install_fares(cardledger.fares.FareSystem.harbin(), 1)


def test_taps_replicate_with_the_packaged_fares_the_leader_installed(tmp_path):
    """The leader's first tap batch installs the packaged Harbin fares in its own
    transaction; a follower appending that batch installs the same version first, so
    the replay rates the taps alike (same fares charged, same state)."""
    leader, follower, published = _leader_and_follower(tmp_path)
    fs = cardledger.fares.FareSystem.harbin()
    bus_op, card = 9001, 100
    t_us = 1_773_111_600_000_000  # 2026-03-10 11:00 in Harbin
    with leader, follower:
        o = Ops(source=1)
        o.add(OpKind.OPEN, 1, account_kind=cardledger.AccountKind.CLEARING)
        o.add(OpKind.OPEN, bus_op, account_kind=cardledger.AccountKind.OPERATOR)
        o.add(OpKind.OPEN, card, account_kind=cardledger.AccountKind.CARD)
        o.add(OpKind.TOPUP, card, 1, 1000)
        leader.apply(o.take())
        taps = Ops(source=2)
        for k in range(3):
            taps.add(OpKind.TAP, card, tap=int(cardledger.TapType.BOARD), route=fs.route_index("bus_1"),
                     stop=fs.stop_index("bs_0001"))
        ops = taps.take()
        ops["time_us"] = [t_us + k * 3 * 3600 * 1_000_000 for k in range(3)]
        results = leader.apply(ops)
        assert codes(results) == ["OK"] * 3 and int(results["amount_fen"].sum()) > 0
        follower.append_replicated(published)
        assert follower.balance(card) == leader.balance(card) == 1000 - int(results["amount_fen"].sum())
        assert state_hash(follower) == state_hash(leader) and follower.verify().ok


def test_a_follower_whose_map_fills_grows_it_and_applies_every_batch_once(tmp_path, monkeypatch):
    """A follower's LMDB map full in the middle of appending: the map grows, the
    transaction is retried, and the follower ends at the leader's state."""
    leader = cardledger.open(str(tmp_path / "leader"), create=True)
    published: list[bytes] = []
    leader.replicator = lambda key, value: published.append(bytes(value))
    with leader:
        o = Ops(source=3)
        cards = range(10_000, 12_000)
        o.add(OpKind.OPEN, 1, account_kind=cardledger.AccountKind.CLEARING)
        for c in cards:
            o.add(OpKind.OPEN, c, account_kind=cardledger.AccountKind.CARD)
            o.add(OpKind.TOPUP, c, 1, 100)
        leader.apply(o.take())
        for _ in range(6):
            for c in cards:
                o.add(OpKind.TOPUP, c, 1, 1)
            leader.apply(o.take())
        monkeypatch.setattr(env_module, "MAP_SIZE_INITIAL_BYTES", 256 * 1024)
        with cardledger.open(str(tmp_path / "cramped"), create=True, checkpoint_ops=4_096) as follower:
            for value in published:
                follower.append_replicated([value])
            assert follower._store.env.info()["map_size"] > 256 * 1024  # it did fill and grow
            assert state_hash(follower) == state_hash(leader) and follower.verify().ok
