"""Nodes of a replicated ledger on three real NATS servers, in this process: followers
replay the leader's batches to the same state, a follower's gateway names the
leader, a stale leader is fenced by the stream, and a follower takes over when the
leader goes."""

from __future__ import annotations

import asyncio
import time
import time as _time

import nats

import cardledger
from cardledger import AccountKind, OpKind
from cardledger.cluster import FOLLOWER, LEADER, Node, state_hash
from cardledger.cluster.client import GatewayClient, GatewayError
from helpers import Ops, codes

LEASE_TTL_S = 1.0

#: Every op's event time (2026-01-01 UTC): a new op's time_us must be positive.
T0 = 1_767_225_600_000_000


def _node(tmp_path, nats_cluster, stream_name, name):
    return Node(str(tmp_path / name), nats_cluster.urls, stream_name, name=name, lease_ttl_s=LEASE_TTL_S).start()


def _wait(pred, timeout_s=20.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _leader_of(nodes):
    _wait(lambda: sum(n.role == LEADER for n in nodes) == 1, what="one leader")
    return next(n for n in nodes if n.role == LEADER)


def _same_state(nodes):
    """Wait until every node is at the same journal_seq; then compare state hashes."""
    _wait(lambda: len({n.ledger.journal_seq for n in nodes}) == 1, what="every node at the same journal_seq")
    hashes = {state_hash(n.ledger) for n in nodes}
    assert len(hashes) == 1, hashes
    for n in nodes:
        assert n.ledger.verify().ok


def _accounts(o: Ops, cards):
    o.add(OpKind.OPEN, 1, account_kind=AccountKind.CLEARING)
    o.add(OpKind.OPEN, 2, account_kind=AccountKind.MERCHANT)
    for c in cards:
        o.add(OpKind.OPEN, c, account_kind=AccountKind.CARD)
    return o.take()


def test_followers_replay_the_leaders_batches_to_the_same_state(tmp_path, nats_cluster, stream_name):
    """Batches submitted on the leader (pipelined) reach both followers; every node
    ends at the same journal_seq with the same state hash, and verifies."""
    nodes = [_node(tmp_path, nats_cluster, stream_name, n) for n in ("a", "b", "c")]
    try:
        leader = _leader_of(nodes)
        o = Ops(source=7)
        assert codes(leader.submit(_accounts(o, range(10, 30))).result(10)) == ["OK"] * 22
        futures = []
        for i in range(40):
            for c in range(10, 30):
                o.add(OpKind.TOPUP, c, 1, 100 + i)
                o.add(OpKind.SPEND, c, 2, 50)
            futures.append(leader.submit(o.take()))
        assert all((f.result(20)["code"] == 0).all() for f in futures)
        _same_state(nodes)
        for n in nodes:
            assert n.ledger.balance(10) == sum(100 + i - 50 for i in range(40))
        follower = next(n for n in nodes if n.role == FOLLOWER)
        status = follower.status()
        assert status["lag_messages"] == 0 and status["leader"] == leader.address
    finally:
        for n in nodes:
            n.stop()


def test_a_follower_answers_writes_with_the_leaders_address(tmp_path, nats_cluster, stream_name):
    """Through the gateway protocol: a write sent to a follower is refused with
    NotLeaderError naming the leader's gateway address (nothing applied); the client
    resends it there and gets the results; any node answers a balance query."""
    nodes = [_node(tmp_path, nats_cluster, stream_name, n) for n in ("a", "b")]
    client = GatewayClient([n.address for n in nodes])
    try:
        leader = _leader_of(nodes)
        follower = next(n for n in nodes if n is not leader)
        _wait(lambda: follower.leader_address == leader.address, what="the follower to know the leader")
        op = {"source": 3, "seq": 1, "kind": "OPEN", "account_id": 1, "account_kind": "CLEARING", "time_us": T0}
        reply = client.call(follower.address, {"req": 5, "ops": [op]})
        assert reply["req"] == 5 and reply["error"].startswith("NotLeaderError") and reply["leader"] == leader.address
        assert leader.ledger.journal_seq == 0
        results = client.write([op, {"source": 3, "seq": 2, "kind": "OPEN", "account_id": 10, "account_kind": "CARD",
                                     "time_us": T0}])
        assert [r["result"] for r in results] == ["OK", "OK"] and client.leader == leader.address
        client.write([{"source": 3, "seq": 3, "kind": "TOPUP", "account_id": 10, "counterparty_id": 1,
                       "amount_fen": 1234, "time_us": T0}])
        _wait(lambda: follower.ledger.journal_seq == 3, what="the follower to apply")
        reply = client.call(follower.address, {"req": 6, "query": "balance", "account": 10})
        assert reply["balance_fen"] == 1234 and reply["journal_seq"] == 3
        assert client.status(follower.address)["role"] == FOLLOWER
    finally:
        client.close()
        for n in nodes:
            n.stop()


def test_a_stale_leader_cannot_acknowledge_anything(tmp_path, nats_cluster, stream_name):
    """A leader that lost its lease without knowing (here: its renewals stop reaching
    NATS while it believes they succeed, as a paused process would) has its next batch
    refused by the stream's expected-last-sequence check once another node took over:
    the caller gets NotLeaderError, the op is on no node, and the stale node steps
    down and follows the new leader to the same state."""
    a = _node(tmp_path, nats_cluster, stream_name, "a")
    b = None
    try:
        assert a.wait_for(LEADER, 20)
        b = _node(tmp_path, nats_cluster, stream_name, "b")
        o = Ops(source=9)
        a.submit(_accounts(o, [10])).result(10)

        async def believes_it_renewed():
            a.lease.valid_until = _time.monotonic() + 3600
            return True

        a.lease.renew = believes_it_renewed
        a.lease.valid_until = _time.monotonic() + 3600
        assert b.wait_for(LEADER, 20)  # the lease expired in NATS; b caught up and placed its mark
        assert a.role == LEADER  # a does not know
        o.add(OpKind.TOPUP, 10, 1, 777)
        refused = a.submit(o.take())
        assert isinstance(refused.exception(10), cardledger.NotLeaderError)
        assert a.wait_for(FOLLOWER, 5)
        o.add(OpKind.TOPUP, 10, 1, 1000)
        assert codes(b.submit(o.take()).result(10)) == ["OK"]
        _same_state([a, b])
        assert a.ledger.balance(10) == b.ledger.balance(10) == 1000  # the refused 777 is nowhere
    finally:
        for n in (a, b):
            if n is not None:
                n.stop()


def test_a_follower_takes_over_and_a_restarted_node_catches_up(tmp_path, nats_cluster, stream_name):
    """The leader stops: a follower takes the lease, catches up and writes, within a
    few lease lengths. The old leader, restarted on its own directory, catches up from
    its own journal position to the same state."""
    a = _node(tmp_path, nats_cluster, stream_name, "a")
    assert a.wait_for(LEADER, 20)
    b = _node(tmp_path, nats_cluster, stream_name, "b")
    o = Ops(source=4)
    a.submit(_accounts(o, [10, 11])).result(10)
    for _ in range(5):
        o.add(OpKind.TOPUP, 10, 1, 10)
        a.submit(o.take()).result(10)
    a.stop()
    t0 = time.monotonic()
    try:
        assert b.wait_for(LEADER, 10)
        o.add(OpKind.TOPUP, 11, 1, 5)
        assert codes(b.submit(o.take()).result(10)) == ["OK"]
        assert time.monotonic() - t0 < 5 * LEASE_TTL_S + 5
        for _ in range(5):
            o.add(OpKind.SPEND, 10, 2, 3)
            b.submit(o.take()).result(10)
        a = _node(tmp_path, nats_cluster, stream_name, "a")
        _same_state([a, b])
        assert a.role == FOLLOWER and a.ledger.balance(10) == 35 and a.ledger.balance(11) == 5
    finally:
        a.stop()
        b.stop()


def test_a_node_restored_from_another_nodes_backup_catches_up(tmp_path, nats_cluster, stream_name):
    """The documented restore of a node whose disk was lost: a hot backup of a
    follower (`Ledger.backup`, as `cardledger backup` takes it) becomes the new node's
    directory; started on it, the node catches up from the backup's position to the
    leader's state."""
    a = _node(tmp_path, nats_cluster, stream_name, "a")
    assert a.wait_for(LEADER, 20)
    b = _node(tmp_path, nats_cluster, stream_name, "b")
    c = None
    try:
        o = Ops(source=5)
        a.submit(_accounts(o, [10])).result(10)
        for _ in range(3):
            o.add(OpKind.TOPUP, 10, 1, 100)
            a.submit(o.take()).result(10)
        _wait(lambda: b.ledger.journal_seq == a.ledger.journal_seq, what="b to follow")
        b.ledger.backup(str(tmp_path / "c"))
        for _ in range(3):
            o.add(OpKind.TOPUP, 10, 1, 1)
            a.submit(o.take()).result(10)
        c = _node(tmp_path, nats_cluster, stream_name, "c")
        _same_state([a, b, c])
        assert c.ledger.balance(10) == 303
    finally:
        for n in (a, b, c):
            if n is not None:
                n.stop()


def test_a_node_too_far_behind_restores_from_a_published_checkpoint(tmp_path, nats_cluster, stream_name):
    """Once the stream's retention dropped its oldest batches, a new node cannot replay
    from the start: it reports "restore needed". Started with restore=True it fetches
    the checkpoint a follower published, and follows from there to the same state."""
    a = _node(tmp_path, nats_cluster, stream_name, "a")
    assert a.wait_for(LEADER, 20)
    b = _node(tmp_path, nats_cluster, stream_name, "b")
    late = restored = None
    try:
        o = Ops(source=6)
        a.submit(_accounts(o, [10])).result(10)
        for _ in range(4):
            o.add(OpKind.TOPUP, 10, 1, 100)
            a.submit(o.take()).result(10)
        _wait(lambda: b.ledger.journal_seq == a.ledger.journal_seq, what="b to follow")
        published_seq = b.publish_checkpoint()
        assert published_seq == a.ledger.journal_seq
        for _ in range(4):
            o.add(OpKind.TOPUP, 10, 1, 1)
            a.submit(o.take()).result(10)
        asyncio.run(_purge_keeping(nats_cluster.urls, stream_name, 4))  # only the 4 batches after the checkpoint are left
        late = _node(tmp_path, nats_cluster, stream_name, "late")
        _wait(lambda: "restore needed" in late.status()["error"], what="the late node to report it")
        assert late.ledger.journal_seq == 0
        restored = Node(str(tmp_path / "restored"), nats_cluster.urls, stream_name, name="restored",
                        lease_ttl_s=LEASE_TTL_S, restore=True).start()
        assert restored.restored_seq == published_seq
        _same_state([a, b, restored])
        assert restored.ledger.balance(10) == 404
    finally:
        for n in (a, b, late, restored):
            if n is not None:
                n.stop()


async def _purge_keeping(urls, stream, keep):
    nc = await nats.connect(servers=urls)
    try:
        await nc.jetstream().purge_stream(stream, keep=keep)
    finally:
        await nc.close()


def test_a_batch_larger_than_a_message_goes_in_parts(tmp_path, nats_cluster, stream_name):
    """With messages of at most 128 bytes, every batch is published in several parts
    (each expecting the previous part's sequence); followers join them back and reach
    the leader's state, and a node restarted mid-stream finds its position among parts."""
    nodes = [Node(str(tmp_path / n), nats_cluster.urls, stream_name, name=n, lease_ttl_s=LEASE_TTL_S,
                  part_bytes=128).start() for n in ("a", "b")]
    try:
        leader = _leader_of(nodes)
        o = Ops(source=8)
        leader.submit(_accounts(o, range(10, 40))).result(10)
        for i in range(6):
            for c in range(10, 40):
                o.add(OpKind.TOPUP, c, 1, 10 + i)
            leader.submit(o.take()).result(10)
        assert leader.stream_state()["messages"] > 3 * 7  # 7 batches went in parts
        _same_state(nodes)
        follower = next(n for n in nodes if n is not leader)
        follower.stop()
        for i in range(3):
            o.add(OpKind.SPEND, 10, 2, 1)
            leader.submit(o.take()).result(10)
        again = Node(follower.path, nats_cluster.urls, stream_name, name="again", lease_ttl_s=LEASE_TTL_S,
                     part_bytes=128).start()
        nodes[nodes.index(follower)] = again
        _same_state(nodes)
        assert again.ledger.balance(10) == sum(10 + i for i in range(6)) - 3
    finally:
        for n in nodes:
            n.stop()


def test_parts_of_a_batch_a_leader_abandoned_are_dropped(tmp_path, nats_cluster, stream_name):
    """A leader that published the first parts of a batch and then lost the stream
    (here: two parts of a three-part batch appended behind its back, as such a leader
    leaves them) never acknowledged that batch; the next write of the leader is
    refused, a leader (after its mark) writes on, and every node drops the orphan parts
    and reaches the same state."""
    nodes = [_node(tmp_path, nats_cluster, stream_name, n) for n in ("a", "b")]
    try:
        leader = _leader_of(nodes)
        o = Ops(source=11)
        leader.submit(_accounts(o, [10])).result(10)
        _same_state(nodes)
        jseq = leader.ledger.journal_seq
        asyncio.run(_append_orphan_parts(nats_cluster.urls, stream_name, jseq))
        o.add(OpKind.TOPUP, 10, 1, 50)
        assert isinstance(leader.submit(o.take()).exception(10), cardledger.NotLeaderError)
        leader = _leader_of(nodes)
        o.add(OpKind.TOPUP, 10, 1, 70)
        _wait(lambda: leader.role == LEADER)
        assert codes(leader.submit(o.take()).result(10)) == ["OK"]
        _same_state(nodes)
        assert all(n.ledger.balance(10) == 70 for n in nodes)
    finally:
        for n in nodes:
            n.stop()


async def _append_orphan_parts(urls, stream, jseq):
    nc = await nats.connect(servers=urls)
    try:
        js = nc.jetstream()
        for i in (1, 2):
            await js.publish(f"{stream}.journal", b"x" * 100, headers={
                "Cl-Kind": "batch", "Cl-Journal-Seq": str(jseq), "Cl-Part": f"{i}/3", "Cl-Node": "gone"})
    finally:
        await nc.close()
