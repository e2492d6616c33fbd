"""A bounded, Jepsen-style soak of the replicated ledger: three `cardledger node`
processes on three real NATS servers; clients submit top-ups, transfers and spends
continuously while a driver injects one fault at a time, in turn:

- SIGKILL the leader node (then start it again on its own directory);
- SIGKILL one NATS server (quorum kept; then start it again on its store);
- SIGSTOP the leader past its lease, then SIGCONT it (a stale leader).

At the end every node must hold every acknowledged op exactly once, with the result
the client was given; no op refused with NotLeaderError may be anywhere; every
node has the same state hash; money is conserved (verify: the balances sum to zero,
each equals its postings) and every node verifies.

The short soak (3 faults, one of each) runs by default; `-m soak` runs 100 faults.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

import cardledger
from cardledger.cluster import state_hash
from cardledger.cluster.client import GatewayClient, GatewayError
from cardledger.cluster.localnats import LocalNatsCluster, free_ports

LEASE_TTL_S = 1.0
NODES = 3
CARDS = list(range(100, 120))
CLIENTS = 3
#: How long the cluster may take to acknowledge writes again after a fault.
RECOVERY_TIMEOUT_S = 30.0
STREAM = "SOAK"
EXISTS, ID_ALREADY_FAILED = int(cardledger.Result.EXISTS), int(cardledger.Result.ID_ALREADY_FAILED)


class NodeProcs:
    """The three `cardledger node` processes, on fixed gateway ports (so a restarted
    node keeps its address)."""

    def __init__(self, base: str, urls: list[str]) -> None:
        self.base = base
        self.urls = urls
        self.ports = free_ports(NODES)
        self.procs: list[subprocess.Popen | None] = [None] * NODES

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def start(self, i: int) -> None:
        log = open(os.path.join(self.base, f"node{i}.log"), "ab")
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "cardledger", "node", os.path.join(self.base, f"node{i}"),
             "--nats", ",".join(self.urls), "--stream", STREAM, "--listen", self.addresses[i],
             "--name", f"node{i}", "--lease-ttl", str(LEASE_TTL_S)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def signal(self, i: int, sig: int) -> None:
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait()
            self.procs[i] = None

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class History:
    """What the clients were told, per op id (source, seq)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: dict[tuple[int, int], int] = {}  # id -> result code given
        self.refused: set[tuple[int, int]] = set()  # NotLeaderError: certainly not applied
        self.unknown: set[tuple[int, int]] = set()  # no answer, or outcome unknown
        self.acked_at: list[float] = []
        self.faults: list[str] = []  # the faults injected, in order
        self.failover_s: list[float] = []  # leader killed -> first write acknowledged after


def _client(addresses, source: int, history: History, stop: threading.Event, rng: random.Random) -> None:
    client = GatewayClient(addresses, timeout_s=8.0)
    seq = 0
    try:
        while not stop.is_set():
            a, b = rng.sample(CARDS, 2)
            ops = []
            for kind, account, other, amount in (("TOPUP", a, 1, rng.randint(100, 5000)),
                                                 ("TRANSFER", a, b, rng.randint(1, 3000)),
                                                 ("SPEND", b, 2, rng.randint(1, 2000))):
                seq += 1
                ops.append({"source": source, "seq": seq, "kind": kind, "account_id": account,
                            "counterparty_id": other, "amount_fen": amount,
                            "time_us": 1_767_225_600_000_000 + seq})
            ids = [(source, op["seq"]) for op in ops]
            try:
                results = client.write(ops)
            except GatewayError as e:
                with history.lock:
                    (history.refused if e.not_leader else history.unknown).update(ids)
                time.sleep(0.05)
                continue
            except OSError:
                with history.lock:
                    history.unknown.update(ids)
                time.sleep(0.05)
                continue
            with history.lock:
                for op_id, r in zip(ids, results):
                    history.acked[op_id] = r["code"]
                history.acked_at.append(time.monotonic())
    finally:
        client.close()


def _leader(nodes: NodeProcs, client: GatewayClient) -> int | None:
    """The index of the node that says it leads (None: none does)."""
    for i, address in enumerate(nodes.addresses):
        if nodes.procs[i] is None:
            continue
        try:
            if client.status(address)["role"] == "leader":
                return i
        except OSError:
            continue
    return None


def _wait_progress(history: History, since: float) -> None:
    """Wait until some write was acknowledged after `since`."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        with history.lock:
            if history.acked_at and history.acked_at[-1] > since:
                return
        time.sleep(0.05)
    raise AssertionError(f"no write was acknowledged within {RECOVERY_TIMEOUT_S} s of a fault")


def _setup(addresses) -> None:
    client = GatewayClient(addresses)
    t0 = 1_767_225_600_000_000  # a new op's time_us must be positive
    ops = [{"source": 1, "seq": 1, "kind": "OPEN", "account_id": 1, "account_kind": "CLEARING", "time_us": t0},
           {"source": 1, "seq": 2, "kind": "OPEN", "account_id": 2, "account_kind": "MERCHANT", "time_us": t0}]
    ops += [{"source": 1, "seq": 3 + i, "kind": "OPEN", "account_id": c, "account_kind": "CARD", "time_us": t0}
            for i, c in enumerate(CARDS)]
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while True:
        try:
            results = client.write(ops[:32]) + client.write(ops[32:]) if len(ops) > 32 else client.write(ops)
            assert all(r["result"] in ("OK", "EXISTS") for r in results)
            break
        except (GatewayError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    client.close()


def run_soak(base: str, faults: int, seed: int = 1) -> History:
    """Run the soak with `faults` faults; check everything at the end."""
    rng = random.Random(seed)
    nats_cluster = LocalNatsCluster(os.path.join(base, "nats")).start()
    nodes = NodeProcs(base, nats_cluster.urls)
    history = History()
    stop = threading.Event()
    clients: list[threading.Thread] = []
    try:
        nats_cluster.wait_jetstream()
        for i in range(NODES):
            nodes.start(i)
        _setup(nodes.addresses)
        for k in range(CLIENTS):
            t = threading.Thread(target=_client, args=(nodes.addresses, 1000 + k, history, stop,
                                                       random.Random(seed * 100 + k)), daemon=True)
            t.start()
            clients.append(t)
        _wait_progress(history, 0.0)
        probe = GatewayClient(nodes.addresses, timeout_s=2.0)
        for f in range(faults):
            kind = f % 3
            leader = _leader(nodes, probe)
            if kind != 1 and leader is None:
                _wait_progress(history, time.monotonic())
                leader = _leader(nodes, probe)
            assert kind == 1 or leader is not None, "no node leads while writes are acknowledged"
            history.faults.append(("kill leader", "kill nats", "pause leader")[kind])
            if kind == 0:
                nodes.signal(leader, signal.SIGKILL)
                t_fault = time.monotonic()
                _wait_progress(history, t_fault)  # a follower took over
                history.failover_s.append(history.acked_at[-1] - t_fault)
                nodes.start(leader)
            elif kind == 1:
                victim = rng.randrange(nats_cluster.size)
                nats_cluster.kill(victim)
                time.sleep(rng.uniform(0.2, 1.0))
                _wait_progress(history, time.monotonic())  # quorum kept: writes go on
                nats_cluster.start_server(victim)
            else:
                nodes.signal(leader, signal.SIGSTOP)
                time.sleep(LEASE_TTL_S * 2.5)  # past its lease: another node takes over
                _wait_progress(history, time.monotonic())
                nodes.signal(leader, signal.SIGCONT)
            _wait_progress(history, time.monotonic())
        stop.set()
        for t in clients:
            t.join(30)
        probe.close()
        _wait_converged(nodes)
    finally:
        stop.set()
        nodes.stop_all()
        nats_cluster.stop()
    _check(base, history)
    print(f"soak: {len(history.faults)} faults, {len(history.acked)} ops acknowledged, {len(history.refused)} "
          f"refused, {len(history.unknown)} unknown; failover max {max(history.failover_s, default=0):.2f} s")
    return history


def _wait_converged(nodes: NodeProcs) -> None:
    """Wait until every node has applied the whole stream."""
    client = GatewayClient(nodes.addresses, timeout_s=5.0)
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            try:
                seqs = {client.status(a)["journal_seq"] for a in nodes.addresses}
                leader = _leader(nodes, client)
            except OSError:
                time.sleep(0.1)
                continue
            if len(seqs) == 1 and leader is not None:
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise AssertionError("the nodes did not converge")


def _check(base: str, history: History) -> None:
    hashes = set()
    for i in range(NODES):
        with cardledger.open(os.path.join(base, f"node{i}")) as led:
            report = led.verify()
            assert report.ok, report.problems[:5]  # incl. money conserved: balances sum to zero
            assert int(led.accounts()["cash_fen"].sum() + led.accounts()["subsidy_fen"].sum()) == 0
            hashes.add(state_hash(led))
            journal = led.journal()
            ids = list(zip(journal["source"].tolist(), journal["seq"].tolist()))
            assert len(ids) == len(set(ids)), "an op id is in the journal twice"
            code_of = dict(zip(ids, journal["code"].tolist()))
            for op_id, code in history.acked.items():
                # A client resends a request a node took without answering: an op that
                # node applied then answers EXISTS (it succeeded before) or
                # ID_ALREADY_FAILED (it failed before), and the journal holds the first.
                if code == EXISTS:
                    ok = code_of.get(op_id) == 0
                elif code == ID_ALREADY_FAILED:
                    ok = code_of.get(op_id, 0) != 0
                else:
                    ok = code_of.get(op_id) == code
                assert ok, f"node{i}: acknowledged op {op_id} ({code}) is missing or differs: {code_of.get(op_id)}"
            present = history.refused & code_of.keys()
            assert not present, f"node{i}: refused ops are present: {sorted(present)[:5]}"
    assert len(hashes) == 1, "the nodes' states differ"


def test_a_short_soak_with_one_fault_of_each_kind_keeps_every_acknowledged_op(tmp_path):
    """Three faults (leader killed, a NATS server killed, the leader paused past its
    lease): every acknowledged op is present exactly once on every node, no refused
    op is anywhere, the states are equal and money is conserved."""
    history = run_soak(str(tmp_path), faults=3)
    assert history.faults == ["kill leader", "kill nats", "pause leader"]
    assert len(history.acked) > 100


@pytest.mark.soak
def test_a_soak_of_100_faults_keeps_every_acknowledged_op(tmp_path):
    """The same checks after 100 faults, one at a time, in turn."""
    history = run_soak(str(tmp_path), faults=100, seed=int(os.environ.get("SOAK_SEED", "1")))
    assert len(history.faults) == 100 and len(history.acked) > 1000
