#!/usr/bin/env python
"""The replicated ledger's speed: SPEND/TOPUP through a leader whose every batch goes
to a three-replica JetStream stream, beside the single-machine ledger in the same run.

    python bench/bench_cluster.py --cards 1000000 --ops 2000000 --batch 8192

Three `nats-server` processes (`sync_interval: always`, loopback) and the ledger share
this machine. Phases, each printed as one JSON line:

1. single: the mix through `Ledger.submit` on a ledger of its own (durability "full");
2. replicated: the same ops through an in-process leader (`Node.submit`, pipelined);
   a follower in its own process (`cardledger node`) replays the stream, and its lag
   (`lag_s`: from the leader encoding a batch to the follower applying it) is sampled
   every 0.2 s;
3. failover: three `cardledger node` processes on a small ledger with the default
   lease; a client writes continuously through the gateway; the leader is SIGKILLed
   `--failovers` times; the time from the kill to the first write acknowledged by the
   new leader is reported.

Speed is printed, never asserted (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque

import cardledger
from cardledger.benchmark.workloads import mix_batches, mix_setup
from cardledger.cluster import LEADER, Node, state_hash
from cardledger.cluster.client import GatewayClient, GatewayError
from cardledger.cluster.localnats import LocalNatsCluster, free_ports

IN_FLIGHT = 3


def _drive(submit, batches) -> float:
    """Submit every batch keeping IN_FLIGHT futures open; return the seconds taken."""
    t0 = time.perf_counter()
    futures: deque = deque()
    for b in batches:
        futures.append(submit(b))
        while len(futures) > IN_FLIGHT:
            futures.popleft().result()
    while futures:
        futures.popleft().result()
    return time.perf_counter() - t0


def single(work: str, setup, load, n_ops: int) -> dict:
    with cardledger.open(os.path.join(work, "single"), create=True) as led:
        _drive(led.submit, setup)
        seconds = _drive(led.submit, load)
    return {"phase": "single", "ops": n_ops, "seconds": round(seconds, 3), "ops_per_s": round(n_ops / seconds)}


def _node_proc(work: str, name: str, urls: list[str], stream: str, port: int, extra: list[str] = ()) -> subprocess.Popen:
    log = open(os.path.join(work, f"{name}.log"), "ab")
    return subprocess.Popen([sys.executable, "-m", "cardledger", "node", os.path.join(work, name), "--nats",
                             ",".join(urls), "--stream", stream, "--listen", f"127.0.0.1:{port}", "--name", name,
                             *extra], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def replicated(work: str, urls: list[str], setup, load, n_ops: int) -> dict:
    leader = Node(os.path.join(work, "leader"), urls, "BENCH", name="leader").start()
    if not leader.wait_for(LEADER, 60):
        raise SystemExit("the in-process node did not take the lease")
    port = free_ports(1)[0]
    follower = _node_proc(work, "follower", urls, "BENCH", port)
    client = GatewayClient([f"127.0.0.1:{port}"], timeout_s=10)
    lags: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            try:
                lags.append(client.status(f"127.0.0.1:{port}")["lag_s"])
            except OSError:
                pass

    try:
        _drive(leader.submit, setup)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        seconds = _drive(leader.submit, load)
        head = leader.ledger.journal_seq
        t_end = time.perf_counter()
        while client.status(f"127.0.0.1:{port}")["journal_seq"] < head:
            time.sleep(0.05)
        catch_up_s = time.perf_counter() - t_end
        stop.set()
        sampler.join()
        stream = leader.stream_state()
    finally:
        client.close()
        follower.send_signal(signal.SIGTERM)
        follower.wait(60)
        leader_hash = state_hash(leader.ledger)
        leader.stop()
    with cardledger.open(os.path.join(work, "follower")) as f:
        same = state_hash(f) == leader_hash
    lags.sort()
    return {"phase": "replicated", "ops": n_ops, "seconds": round(seconds, 3), "ops_per_s": round(n_ops / seconds),
            "follower_lag_s_p50": round(lags[len(lags) // 2], 3) if lags else None,
            "follower_lag_s_max": round(lags[-1], 3) if lags else None,
            "follower_catch_up_after_load_s": round(catch_up_s, 3), "follower_same_state": same,
            "stream_messages": stream["messages"], "stream_bytes_per_message": stream["bytes"] // max(1, stream["messages"])}


def failover(work: str, urls: list[str], kills: int) -> dict:
    ports = free_ports(3)
    addresses = [f"127.0.0.1:{p}" for p in ports]
    procs = [_node_proc(work, f"f{i}", urls, "FAILOVER", ports[i]) for i in range(3)]
    client = GatewayClient(addresses, timeout_s=10)
    seq = 0
    times: list[float] = []

    def write() -> bool:
        nonlocal seq
        seq += 1
        try:
            client.write([{"source": 9, "seq": seq, "kind": "OPEN", "account_id": seq, "account_kind": "CARD",
                           "time_us": 1_767_225_600_000_000 + seq}])
            return True
        except (GatewayError, OSError):
            return False

    try:
        deadline = time.monotonic() + 60
        while not write():
            if time.monotonic() > deadline:
                raise SystemExit("no leader in 60 s")
            time.sleep(0.05)
        for _ in range(kills):
            i = addresses.index(client.leader)
            procs[i].send_signal(signal.SIGKILL)
            procs[i].wait()
            t0 = time.perf_counter()
            while not write():
                time.sleep(0.01)
            times.append(time.perf_counter() - t0)
            procs[i] = _node_proc(work, f"f{i}", urls, "FAILOVER", ports[i])
            time.sleep(3)  # the restarted node catches up
    finally:
        client.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
    return {"phase": "failover", "kills": kills, "lease_ttl_s": 2.0, "kill_to_first_ack_s": [round(t, 2) for t in times],
            "max_s": round(max(times), 2) if times else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", type=int, default=1_000_000)
    p.add_argument("--ops", type=int, default=2_000_000)
    p.add_argument("--batch", type=int, default=8_192)
    p.add_argument("--failovers", type=int, default=3)
    p.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    a = p.parse_args()
    work = a.dir or tempfile.mkdtemp(prefix="bench-cluster-")
    os.makedirs(work, exist_ok=True)
    setup = mix_setup(a.cards, seed=1, batch_size=a.batch)
    load = list(mix_batches(a.cards, a.ops, a.batch, seed=1))
    print(json.dumps({"cards": a.cards, "ops": a.ops, "batch": a.batch, "engine": cardledger.IMPLEMENTATION}), flush=True)
    print(json.dumps(single(work, setup, load, a.ops)), flush=True)
    with LocalNatsCluster(os.path.join(work, "nats")) as nats_cluster:
        nats_cluster.wait_jetstream()
        print(json.dumps(replicated(work, nats_cluster.urls, setup, load, a.ops)), flush=True)
        if a.failovers:
            print(json.dumps(failover(work, nats_cluster.urls, a.failovers)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
