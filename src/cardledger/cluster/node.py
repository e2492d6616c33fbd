"""A cluster node: one ledger, a follower of the journal stream, a candidate for the
write lease, and the leader's write path.

The write path of the lease holder (the leader): the kernel runs as on a single
machine (`Ledger.submit` through the Committer); the ledger's store thread then hands
the encoded journal batch to `Node._replicate` (the ledger's `replicator` hook) inside
the batch's write transaction; that publishes it to the stream expecting the stream's
last sequence to be the one this node last wrote, waits for the stream's
acknowledgement (a quorum of replicas stored it), and only then lets the transaction
commit and the callers' futures resolve. A refused publish (another node wrote)
means this node lost the lease without knowing: the batch fails with NotLeaderError
(certainly not applied), the node steps down and follows. A publish whose outcome is
unknown (time-out, broken connection) fails with ReplicationError and the node steps
down too; the stream says later whether the batch is in.

Threads: `cardledger-nats` runs the NATS client's event loop (lease, follower,
publishing); `cardledger-gateway` runs the gateway's (`gateway.py`). They are apart
so that the store thread, which waits on the NATS loop for an acknowledgement, never
waits on a loop that waits on the ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from concurrent.futures import Future
from typing import Any

import nats

from .. import ledger as ledger_module
from ..commit.committer import Committer
from ..errors import NotLeaderError, ReplicationError
from ..ledger import Ledger
from ..store.journal import batch_hashes, batch_range
from .follower import Follower
from .gateway import NodeGateway
from . import restore
from .lease import LEASE_RENEW_FRACTION, LEASE_TTL_S_DEFAULT, Lease, LeaseHolder
from .stream import HEADER_ROOM_BYTES, KIND_MARK, PUBLISH_TIMEOUT_S, BehindStream, JournalStream, PublishRefused

LEADER = "leader"
FOLLOWER = "follower"
#: A follower with nothing to read polls the stream this often.
POLL_IDLE_S = 0.005
#: How long a node waits for JetStream to answer when it starts.
CONNECT_TIMEOUT_S = 30.0
#: How long fetching or publishing a checkpoint may take.
RESTORE_TIMEOUT_S = 600.0
#: How many times a new lease holder tries to catch up and place its mark.
TAKEOVER_ATTEMPTS_MAX = 5
#: How long a new lease holder may take to catch up before it gives the lease back.
TAKEOVER_CATCH_UP_S = 30.0


def state_hash(led: Ledger) -> str:
    """A digest of a ledger's state: the head of its hash chain and every account's
    record. Two replicas at the same journal_seq have the same one."""
    h = hashlib.sha256(led.last_batch_hash)
    h.update(led.accounts().tobytes())
    return h.hexdigest()


class Node:
    """One node of a replicated ledger (see docs/cluster.md).

    `path`: its own ledger directory (created if missing); `nats_urls`: the NATS
    servers; `stream`: the stream's name (the lease bucket is `<stream>-lease`);
    `listen`: the gateway's (host, port) (port 0: any free one, see `address`).
    `stream_max_bytes`: the stream's retention if this node creates it (-1: keep
    everything; bounded, a node far behind restores instead: see `restore`).
    `restore`: if `path` holds no ledger, start from the latest checkpoint a node
    published (`publish_checkpoint`, `restore.py`). `start()` serves; `stop()`
    releases the lease and closes the ledger.
    """

    def __init__(self, path: str | os.PathLike[str], nats_urls: list[str], stream: str,
                 listen: tuple[str, int] = ("127.0.0.1", 0), *, name: str | None = None,
                 lease_ttl_s: float = LEASE_TTL_S_DEFAULT, replicas: int = 3, engine: str | None = None,
                 checkpoint_ops: int | None = None, restore: bool = False, part_bytes: int | None = None,
                 stream_max_bytes: int = -1) -> None:
        self.path = os.fspath(path)
        self.nats_urls = list(nats_urls)
        self.stream_name = stream
        self.listen = listen
        self.name = name or f"{os.uname().nodename}-{os.getpid()}"
        self.lease_ttl_s = float(lease_ttl_s)
        self.replicas = replicas
        self._open_args: dict[str, Any] = {"engine": engine}
        if checkpoint_ops is not None:
            self._open_args["checkpoint_ops"] = checkpoint_ops
        self.stream_max_bytes = stream_max_bytes  # the stream's retention when this node creates it (-1: none)
        self.part_bytes = part_bytes  # most bytes of a batch in one message; None: the server's max_payload
        self.restore_if_empty = restore  # start from the latest published checkpoint if `path` holds no ledger
        self.restored_seq: int | None = None  # the journal_seq restored from, if it was
        self._js: Any = None
        self.role = FOLLOWER
        self.leader_address = ""  # the lease holder's gateway address, as last seen
        self.address = ""  # this node's gateway address, once serving
        self.error = ""  # the last error of the roles loop (for status)
        self.nats_error = ""  # the NATS client's last error (for status)
        self.ledger: Ledger | None = None
        self.committer: Any = None
        self.stream: JournalStream | None = None
        self.lease: Lease | None = None
        self.follower: Follower | None = None
        self._nc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nats_thread: threading.Thread | None = None
        self._gateway: Any = None
        self._stopping = False
        #: (stream sequence, journal_seq, batch hash) of the stream's last message as
        #: this leader knows it: its next publish expects exactly this.
        self._head: tuple[int, int, bytes] = (0, 0, bytes(32))
        self._roles_task: Future | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout_s: float = 60.0) -> "Node":
        """Open the ledger, connect to NATS, start following and serving; return once
        the gateway listens."""
        loop = self._loop = asyncio.new_event_loop()
        self._nats_thread = threading.Thread(target=loop.run_forever, name="cardledger-nats", daemon=True)
        self._nats_thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(), loop).result(timeout_s)
        if self.restore_if_empty and not os.path.exists(os.path.join(self.path, "data.mdb")):
            self._restore()
        self.ledger = ledger_module.open(self.path, create=True, durability="nometasync", **self._open_args)
        self.ledger.replicator = self._replicate
        self.committer = Committer(self.ledger)
        assert self.stream is not None
        self.follower = Follower(self.stream, self.ledger)
        self._gateway = NodeGateway(self)
        self.address = self._gateway.start(self.listen)
        self.lease.me = LeaseHolder(self.name, self.address)  # type: ignore[union-attr]
        self._roles_task = asyncio.run_coroutine_threadsafe(self._roles(), loop)
        return self

    async def _connect(self) -> None:
        self._nc = await nats.connect(
            servers=self.nats_urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1, connect_timeout=2,
            allow_reconnect=True, name=self.name, error_cb=self._nats_error,
        )
        js = self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        part_bytes = self.part_bytes or max(1024, self._nc.max_payload - HEADER_ROOM_BYTES)
        self.stream = JournalStream(js, self.stream_name, replicas=self.replicas, max_bytes=self.stream_max_bytes,
                                    part_bytes=part_bytes)
        self.lease = Lease(js, f"{self.stream_name}-lease", LeaseHolder(self.name, ""), self.lease_ttl_s,
                           self.replicas)
        # A cluster just started has no JetStream meta leader for a moment: retry.
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            try:
                await self.stream.ensure()
                await self.lease.ensure()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def _restore(self) -> None:
        """Unpack the latest checkpoint a node published into this node's directory."""
        assert self._loop is not None
        with restore.temporary_dir(self.path) as work:
            archive = os.path.join(work, "latest.tar")
            seq = asyncio.run_coroutine_threadsafe(restore.fetch(self._js, self.stream_name, archive),
                                                   self._loop).result(RESTORE_TIMEOUT_S)
            if seq is None:
                raise FileNotFoundError(f"restore: no node published a checkpoint of stream {self.stream_name!r}")
            restore.unpack_backup(archive, self.path)
        self.restored_seq = seq

    def publish_checkpoint(self) -> int:
        """Publish a hot backup of this node's ledger for other nodes to restore from
        (`restore.py`); return its journal_seq. Blocks (any thread but the NATS loop's);
        best called on a follower, off the write path."""
        assert self.ledger is not None and self._loop is not None
        with restore.temporary_dir(self.path) as work:
            archive, seq = restore.pack_backup(self.ledger, work)
            asyncio.run_coroutine_threadsafe(
                restore.publish(self._js, self.stream_name, archive, seq, self.replicas), self._loop
            ).result(RESTORE_TIMEOUT_S)
        return seq

    async def _nats_error(self, e: Exception) -> None:
        """The NATS client's errors (a server gone, a reconnect): noted in the status;
        the client reconnects by itself."""
        self.nats_error = f"{type(e).__name__}: {e}"

    def stop(self) -> None:
        """Stop serving: refuse new writes, commit what was accepted, give the lease
        back, close the ledger. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        if self._gateway is not None:
            self._gateway.stop()
        if self.committer is not None:
            try:
                self.committer.close()
            except Exception:
                pass
        loop = self._loop
        if loop is not None:
            if self._roles_task is not None:
                try:
                    self._roles_task.result(5)
                except Exception:
                    pass
            was_leader = self.role == LEADER
            self.role = FOLLOWER

            async def shut() -> None:
                """Give the lease back and close the NATS connection (in its loop)."""
                if was_leader and self.lease is not None:
                    await self.lease.release()
                if self._nc is not None:
                    await self._nc.close()

            try:
                asyncio.run_coroutine_threadsafe(shut(), loop).result(5)
            except Exception:
                pass
            loop.call_soon_threadsafe(loop.stop)
            if self._nats_thread is not None:
                self._nats_thread.join(5)
        if self.ledger is not None:
            self.ledger.close()

    def __enter__(self) -> "Node":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        """Role, leader, positions and lag, as plain data (the gateway's status query)."""
        f = self.follower
        led = self.ledger
        jseq = led.journal_seq if led is not None else 0
        stream_last = f.stream_last_seq if f is not None else 0
        applied = (f.next_seq - 1) if f is not None and f.next_seq is not None else 0
        if self.role == LEADER:
            applied = stream_last = self._head[0]
        return {"node": self.name, "role": self.role, "leader": self.leader_address, "address": self.address,
                "journal_seq": jseq, "stream_seq": applied, "stream_last_seq": stream_last,
                "lag_messages": max(0, stream_last - applied), "lag_s": 0.0 if self.role == LEADER or f is None else f.lag_s,
                "error": self.error, "nats_error": self.nats_error}

    def stream_state(self) -> dict[str, int]:
        """The stream's message count and bytes, asked of its leader (blocks)."""
        assert self._loop is not None and self._js is not None
        info = asyncio.run_coroutine_threadsafe(self._js.stream_info(self.stream_name), self._loop).result(10)
        return {"messages": int(info.state.messages), "bytes": int(info.state.bytes)}

    def wait_for(self, role: str, timeout_s: float) -> bool:
        """Wait until this node has `role`; False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.role == role:
                return True
            time.sleep(0.02)
        return self.role == role

    # ---------------------------------------------------------------- roles

    async def _roles(self) -> None:
        """Follow the stream and try for the lease; while leader, renew it."""
        assert self.lease is not None and self.follower is not None
        interval = self.lease_ttl_s * LEASE_RENEW_FRACTION
        last_try = 0.0
        while not self._stopping:
            try:
                if self.role == LEADER:
                    await asyncio.sleep(interval)
                    if self.role != LEADER or self._stopping:
                        continue
                    try:
                        ok = await asyncio.wait_for(self.lease.renew(), interval * 2)
                    except Exception:
                        ok = self.lease.held
                    if not ok or not self.lease.held:
                        self._step_down("the write lease was lost")
                    continue
                read = await self.follower.poll()
                now = time.monotonic()
                if now - last_try >= interval:
                    last_try = now
                    if await self.lease.try_take():
                        await self._take_over()
                    else:
                        holder = await self.lease.holder()
                        self.leader_address = holder.address if holder is not None else ""
                if read == 0:
                    await asyncio.sleep(POLL_IDLE_S)
                self.error = ""
            except BehindStream as e:
                self.error = f"restore needed: {e}"
                await asyncio.sleep(1.0)
            except Exception as e:  # NATS unavailable, a server restarting: try again
                self.error = f"{type(e).__name__}: {e}"
                await asyncio.sleep(0.1)

    async def _take_over(self) -> None:
        """With the lease just taken: catch up to the stream's last message, place this
        leader's mark after it, and start writing. Gives the lease back on failure."""
        assert self.stream is not None and self.lease is not None and self.follower is not None
        loop = asyncio.get_running_loop()
        led = self.ledger
        assert led is not None
        for _ in range(TAKEOVER_ATTEMPTS_MAX):
            _, last = await self.stream.state()
            await self.follower.catch_up_to(last, TAKEOVER_CATCH_UP_S)
            jseq, head_hash = await loop.run_in_executor(None, lambda: (led.journal_seq, led.last_batch_hash))
            try:
                mark = await self.stream.publish(b"", KIND_MARK, jseq, last, self.name)
            except PublishRefused:
                continue  # a former leader's batch got in: read it too
            if not self.lease.held:
                break
            self._head = (mark, jseq, head_hash)
            self.leader_address = self.address
            self.role = LEADER
            return
        await self.lease.release()

    def _step_down(self, why: str) -> None:
        """Stop writing (any thread): the roles loop follows the stream again."""
        if self.role == LEADER:
            self.error = f"stepped down: {why}"
        self.role = FOLLOWER
        self.leader_address = ""
        if self.lease is not None:
            self.lease.drop()
        if self.follower is not None:
            self.follower.reposition()

    # ---------------------------------------------------------------- the write path

    def _replicate(self, key: bytes, value: bytes) -> None:
        """The ledger's replicator: publish one journal batch and wait for the stream's
        acknowledgement (see the module docstring). Runs in the thread that stores
        the batch, inside its write transaction."""
        if threading.current_thread() is self._nats_thread:
            raise RuntimeError("the NATS loop must not write to the ledger")
        lease = self.lease
        if self.role != LEADER or lease is None or not lease.held:
            if self.role == LEADER:
                self._step_down("the write lease ran out")
            raise NotLeaderError(f"node {self.name} does not hold the write lease", self.leader_address)
        first, last = batch_range(value)
        prev_hash, this_hash = batch_hashes(value)
        head_seq, head_jseq, head_hash = self._head
        if first != head_jseq + 1 or prev_hash != head_hash:
            # The stream acknowledged a batch this ledger did not commit (a failed local
            # commit): what the ledger computes now is not what the stream holds.
            self._step_down("the ledger is behind the stream")
            raise ReplicationError(
                f"node {self.name}: its ledger is behind the stream (journal_seq {first - 1}, stream at "
                f"{head_jseq}); it steps down and catches up: resend the ops"
            )
        assert self.stream is not None and self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(
            self.stream.publish_batch(value, first - 1, head_seq, self.name), self._loop)
        parts = -(-len(value) // self.stream.part_bytes)
        try:
            seq = fut.result((PUBLISH_TIMEOUT_S + 1.0) * max(1, parts))
        except PublishRefused:
            self._step_down("another node wrote to the stream")
            raise NotLeaderError(f"node {self.name} lost the write lease: the stream refused its batch", "") from None
        except BaseException as e:
            fut.cancel()
            self._step_down(f"a publish failed: {type(e).__name__}")
            raise ReplicationError(
                f"node {self.name}: publishing a batch failed ({type(e).__name__}: {e}); whether it is in the "
                "stream is unknown: resend the ops with the same ids"
            ) from e
        self._head = (seq, last, this_hash)

    def submit(self, ops: Any) -> "Future[Any]":
        """Submit a batch on this node (the leader): `Ledger.submit`, replicated."""
        if self.role != LEADER:
            raise NotLeaderError(f"node {self.name} is not the leader", self.leader_address)
        assert self.ledger is not None
        return self.ledger.submit(ops)
