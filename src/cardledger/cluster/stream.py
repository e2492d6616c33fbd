"""The journal on a JetStream stream: publishing batches with the expected-last-sequence
check, reading them back in order, finding where a ledger's journal stands in it.

One stream message is one journal batch, verbatim (header and packed records, already
hash-chained), or a **leader mark**: an empty message a new leader publishes once it
has caught up, so that anything a former leader still tries to publish is refused by
the expected-last-sequence check (it expects a sequence the mark took). Every message
carries the journal_seq the journal stands at after it (`Cl-Journal-Seq`): batches
and marks are in journal order, so a ledger's position in the stream is found by a
binary search on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nats.js.api as api
import nats.js.errors as js_errors

from ..store.journal import batch_range

#: Largest journal batch published (the servers' max_payload must exceed it: see
#: localnats.MAX_PAYLOAD_BYTES and docs/cluster.md).
BATCH_BYTES_MAX = 7 << 20
#: JetStream's error code for a publish whose expected last sequence is not the stream's.
WRONG_LAST_SEQUENCE = 10071
#: Header names.
KIND_HEADER = "Cl-Kind"
JSEQ_HEADER = "Cl-Journal-Seq"
NODE_HEADER = "Cl-Node"
KIND_BATCH = "batch"
KIND_MARK = "leader"
#: How long one publish waits for the stream's acknowledgement.
PUBLISH_TIMEOUT_S = 5.0


class PublishRefused(Exception):
    """The stream refused a publish: its last sequence is not the one expected (another
    node published meanwhile). The message is certainly not in the stream."""


class BehindStream(Exception):
    """The stream no longer holds the batches right after this ledger's journal (its
    retention dropped them): the node must restore from a checkpoint (docs/cluster.md)."""


@dataclass(frozen=True)
class StreamMessage:
    """One message read back: its stream sequence, kind, journal_seq after it, payload."""

    seq: int
    kind: str
    journal_seq: int
    data: bytes
    node: str


class JournalStream:
    """A JetStream stream `name` holding one ledger's journal (subject `name.journal`)."""

    def __init__(self, js: Any, name: str, replicas: int = 3, max_bytes: int = -1) -> None:
        self.js = js
        self.name = name
        self.subject = f"{name}.journal"
        self.replicas = replicas
        self.max_bytes = max_bytes

    async def ensure(self) -> None:
        """Create the stream if it does not exist (file storage, `replicas` replicas,
        direct gets allowed so any replica serves reads)."""
        try:
            await self.js.stream_info(self.name)
            return
        except js_errors.NotFoundError:
            pass
        config = api.StreamConfig(
            name=self.name, subjects=[self.subject], storage=api.StorageType.FILE, num_replicas=self.replicas,
            max_msg_size=BATCH_BYTES_MAX + 4096, max_bytes=self.max_bytes, discard=api.DiscardPolicy.OLD,
            allow_direct=True, duplicate_window=0.0,
        )
        try:
            await self.js.add_stream(config)
        except js_errors.BadRequestError:
            await self.js.stream_info(self.name)  # created by another node meanwhile

    async def state(self) -> tuple[int, int]:
        """(first, last) stream sequence held (last 0: empty), asked of the stream's leader."""
        info = await self.js.stream_info(self.name)
        return int(info.state.first_seq), int(info.state.last_seq)

    async def publish(self, payload: bytes, kind: str, journal_seq: int, expected_last_seq: int, node: str,
                      timeout: float = PUBLISH_TIMEOUT_S) -> int:
        """Append one message if the stream's last sequence is `expected_last_seq`;
        return its sequence once a quorum of replicas stored it. PublishRefused: the
        last sequence was another (certainly not stored); any other exception: the
        outcome is unknown."""
        if len(payload) > BATCH_BYTES_MAX:
            raise ValueError(f"a journal batch of {len(payload)} bytes exceeds BATCH_BYTES_MAX={BATCH_BYTES_MAX}: "
                             "submit smaller batches")
        headers = {
            "Nats-Expected-Last-Sequence": str(expected_last_seq),
            KIND_HEADER: kind, JSEQ_HEADER: str(journal_seq), NODE_HEADER: node,
        }
        try:
            ack = await self.js.publish(self.subject, payload, timeout=timeout, stream=self.name, headers=headers)
        except js_errors.APIError as e:
            if e.err_code == WRONG_LAST_SEQUENCE:
                raise PublishRefused(str(e)) from None
            raise
        return int(ack.seq)

    async def get(self, seq: int) -> StreamMessage | None:
        """The first message at or after sequence `seq`, or None if there is none yet."""
        try:
            raw = await self.js.get_msg(self.name, seq=seq, subject=self.subject, next=True, direct=True)
        except js_errors.NotFoundError:
            return None
        headers = raw.headers or {}
        return StreamMessage(int(raw.seq), headers.get(KIND_HEADER, ""), int(headers.get(JSEQ_HEADER, "0")),
                             raw.data or b"", headers.get(NODE_HEADER, ""))

    async def start_after(self, journal_seq: int) -> int:
        """The stream sequence to read from for a ledger whose journal ends at
        `journal_seq`: the first message whose journal_seq is past it (last + 1 if
        none). BehindStream if the stream no longer holds the batch right after it."""
        first, last = await self.state()
        if last == 0 or first > last:
            return last + 1
        lo, hi = first, last + 1  # the answer is in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            msg = await self.get(mid)
            if msg is None or msg.journal_seq > journal_seq:
                hi = mid  # (a message found is at or after mid)
            else:
                lo = msg.seq + 1
        if first > 1 and lo == first:
            # The stream was trimmed and the ledger's next batch is at its very start:
            # the oldest batch held must start right after the ledger's journal.
            msg = await self.get(lo)
            while msg is not None and msg.kind != KIND_BATCH:
                msg = await self.get(msg.seq + 1)
            if msg is not None:
                from_seq = batch_range(msg.data)[0]
                if from_seq != journal_seq + 1:
                    raise BehindStream(f"the stream's oldest batch starts at journal_seq {from_seq}, "
                                       f"this ledger is at {journal_seq}")
        return lo

