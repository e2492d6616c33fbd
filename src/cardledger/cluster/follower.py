"""A follower: reads the journal stream in order and applies each batch into its
own ledger (`Ledger.append_replicated`: the replay that opening does, checking the
hash chain and every record's figures), so its state equals the leader's after the
same batch.
"""

from __future__ import annotations

import asyncio
import time

from ..ledger import Ledger
from ..store.journal import BATCH_HEADER, batch_range
from .stream import KIND_BATCH, JournalStream, StreamMessage

#: Most stream messages read ahead at once (requests in flight together).
READ_AHEAD_MAX = 16
#: How often the stream's last sequence is asked for (the lag in the status).
STATE_READ_INTERVAL_S = 0.25


class Follower:
    """Applies the stream to one ledger. Runs on the node's NATS event loop; the
    ledger's work runs in the loop's default executor (it blocks)."""

    def __init__(self, stream: JournalStream, ledger: Ledger) -> None:
        self.stream = stream
        self.ledger = ledger
        self.next_seq: int | None = None  # stream sequence to read next; None: to be found
        self.stream_last_seq = 0  # the stream's last sequence, as last seen
        self.journal_seq = 0  # the ledger's, after the last apply
        self.lag_s = 0.0  # how long the last applied batch took from its leader's encoding to here
        self._state_read_at = 0.0
        self._parts: list[bytes] = []  # the parts read so far of a batch published in parts

    def reposition(self) -> None:
        """Find the read position again from the ledger's journal (after it wrote itself)."""
        self.next_seq = None
        self._parts = []

    async def poll(self) -> int:
        """Read what the stream holds past the position and apply it; return how many
        messages were read (0: caught up)."""
        loop = asyncio.get_running_loop()
        if self.next_seq is None:
            self.journal_seq = await loop.run_in_executor(None, lambda: self.ledger.journal_seq)
            self.next_seq = await self.stream.start_after(self.journal_seq)
        now = time.monotonic()
        if now - self._state_read_at >= STATE_READ_INTERVAL_S:
            self._state_read_at = now
            _, self.stream_last_seq = await self.stream.state()
        # The next message first: when caught up (the usual case) that is one request.
        head = await self.stream.get(self.next_seq)
        if head is None:
            self.stream_last_seq = max(self.stream_last_seq, self.next_seq - 1)
            return 0
        ahead = await asyncio.gather(*(self.stream.get(head.seq + i) for i in range(1, READ_AHEAD_MAX)))
        messages = [head]
        for msg in ahead:
            if msg is None:
                break
            if msg.seq > messages[-1].seq:  # (a gap returns the same later message twice)
                messages.append(msg)
        self.stream_last_seq = max(self.stream_last_seq, messages[-1].seq)
        await self._apply(messages)
        return len(messages)

    async def catch_up_to(self, last_seq: int, timeout_s: float) -> None:
        """Apply everything through stream sequence `last_seq` (TimeoutError after
        `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while self.next_seq is None or self.next_seq <= last_seq:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read the stream up to {last_seq} in {timeout_s} s")
            if await self.poll() == 0:
                await asyncio.sleep(0.005)

    async def _apply(self, messages: list[StreamMessage]) -> None:
        # Marks carry no batch; parts are joined into their batch, and parts that do
        # not make a whole batch (a leader that lost the lease between two parts) are
        # dropped; a batch the ledger already has (it wrote it as the leader) is
        # skipped; the ledger checks that the rest follow its journal.
        values: list[bytes] = []
        have = self.journal_seq
        for msg in messages:
            if msg.kind != KIND_BATCH:
                self._parts = []
                continue
            if msg.part == 1:
                self._parts = [msg.data]
            elif self._parts and msg.part == len(self._parts) + 1:
                self._parts.append(msg.data)
            else:
                self._parts = []  # a part whose batch began before what was read: abandoned
                continue
            if msg.part < msg.parts:
                continue
            value = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            self._parts = []
            last = batch_range(value)[1]
            if last > have:
                values.append(value)
                have = last
        if values:
            newest_us = BATCH_HEADER.unpack_from(values[-1])[6]
            loop = asyncio.get_running_loop()
            self.journal_seq = await loop.run_in_executor(None, self.ledger.append_replicated, values)
            self.lag_s = max(0.0, time.time() - newest_us / 1e6)
        self.next_seq = messages[-1].seq + 1
