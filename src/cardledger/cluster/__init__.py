"""The replicated ledger: the journal on a NATS JetStream stream (the system of
record), followers that replay it, and a write lease in a JetStream key-value bucket
(see docs/cluster.md). An optional extra: `pip install -e '.[cluster]'`.

Modules, one job each: `stream.py` (publishing and reading journal batches, the
expected-last-sequence fence), `lease.py` (the write lease), `follower.py` (applying
the stream to a ledger), `node.py` (a node: roles, the leader's write path),
`gateway.py` (a node's gateway protocol), `client.py` (a client that finds the
leader), `restore.py` (published checkpoints, restoring a node), `localnats.py` (three local nats-server
processes for tests, benchmarks and the docs).
"""

from __future__ import annotations

from .node import FOLLOWER, LEADER, Node, state_hash

__all__ = ["FOLLOWER", "LEADER", "Node", "state_hash"]
