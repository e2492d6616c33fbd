"""The journal on a JetStream stream: publishing batches with the expected-last-sequence
check, reading them back in order, finding where a ledger's journal stands in it.

A journal batch is published verbatim (header and packed records, already
hash-chained) as one message, or as several **parts** when it is larger than a
message may be (the server's `max_payload`, less room for headers): each part is
published expecting the previous part's sequence, and only a batch whose parts all
got in is a batch (the leader acknowledges nothing before its last part is stored).
A leader that lost the lease between two parts leaves the first ones behind: the next
leader's mark follows them, and readers drop parts that do not make a whole batch.
A **leader mark** is an empty message a new leader publishes once it has caught up,
so that anything a former leader still tries to publish is refused by the
expected-last-sequence check (it expects a sequence the mark took).

Every message carries `Cl-Journal-Seq`: the journal_seq the journal stands at before
it (for a batch part, before the whole batch). These only grow along the stream, so
a ledger's position is found by a binary search: the first message whose value is at
least the ledger's journal_seq.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nats.js.api as api
import nats.js.errors as js_errors


#: Room left in a message for its headers: a part holds max_payload less this.
HEADER_ROOM_BYTES = 4096
#: JetStream's error code for a publish whose expected last sequence is not the stream's.
WRONG_LAST_SEQUENCE = 10071
#: Header names.
KIND_HEADER = "Cl-Kind"
JSEQ_HEADER = "Cl-Journal-Seq"
NODE_HEADER = "Cl-Node"
PART_HEADER = "Cl-Part"  # "i/n": part i of a batch published in n parts
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
    """One message read back: its stream sequence, kind, the journal_seq before it, its
    payload, who published it, and which part of its batch it is (1 of 1: a whole batch)."""

    seq: int
    kind: str
    journal_seq: int
    data: bytes
    node: str
    part: int = 1
    parts: int = 1


class JournalStream:
    """A JetStream stream `name` holding one ledger's journal (subject `name.journal`)."""

    def __init__(self, js: Any, name: str, replicas: int = 3, max_bytes: int = -1, part_bytes: int = 1 << 20) -> None:
        self.js = js
        self.name = name
        self.subject = f"{name}.journal"
        self.replicas = replicas
        self.max_bytes = max_bytes
        #: Most bytes of a batch in one message (from the server's max_payload).
        self.part_bytes = part_bytes

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
            max_bytes=self.max_bytes, discard=api.DiscardPolicy.OLD,
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
                      timeout: float = PUBLISH_TIMEOUT_S, part: str | None = None) -> int:
        """Append one message if the stream's last sequence is `expected_last_seq`;
        return its sequence once a quorum of replicas stored it. PublishRefused: the
        last sequence was another (certainly not stored); any other exception: the
        outcome is unknown."""
        headers = {
            "Nats-Expected-Last-Sequence": str(expected_last_seq),
            KIND_HEADER: kind, JSEQ_HEADER: str(journal_seq), NODE_HEADER: node,
        }
        if part is not None:
            headers[PART_HEADER] = part
        try:
            ack = await self.js.publish(self.subject, payload, timeout=timeout, stream=self.name, headers=headers)
        except js_errors.APIError as e:
            if e.err_code == WRONG_LAST_SEQUENCE:
                raise PublishRefused(str(e)) from None
            raise
        return int(ack.seq)

    async def publish_batch(self, value: bytes, journal_seq_before: int, expected_last_seq: int, node: str) -> int:
        """Append one journal batch, in parts if it is larger than `part_bytes`; return
        the sequence of its last part. PublishRefused if any part is refused (the batch
        is then certainly not whole in the stream)."""
        n = max(1, -(-len(value) // self.part_bytes))
        seq = expected_last_seq
        for i in range(n):
            chunk = value[i * self.part_bytes:(i + 1) * self.part_bytes]
            seq = await self.publish(chunk, KIND_BATCH, journal_seq_before, seq, node,
                                     part=None if n == 1 else f"{i + 1}/{n}")
        return seq

    async def get(self, seq: int) -> StreamMessage | None:
        """The first message at or after sequence `seq`, or None if there is none yet."""
        try:
            raw = await self.js.get_msg(self.name, seq=seq, subject=self.subject, next=True, direct=True)
        except js_errors.NotFoundError:
            return None
        headers = raw.headers or {}
        part, _, parts = headers.get(PART_HEADER, "1/1").partition("/")
        return StreamMessage(int(raw.seq), headers.get(KIND_HEADER, ""), int(headers.get(JSEQ_HEADER, "0")),
                             raw.data or b"", headers.get(NODE_HEADER, ""), int(part), int(parts))

    async def start_after(self, journal_seq: int) -> int:
        """The stream sequence to read from for a ledger whose journal ends at
        `journal_seq`: the first message whose journal_seq-before is at least it (the
        batch right after the ledger's journal, or marks and abandoned parts before
        it), last + 1 if none. BehindStream if the stream no longer holds that batch."""
        first, last = await self.state()
        if last == 0 or first > last:
            return last + 1
        lo, hi = first, last + 1  # the answer is in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            msg = await self.get(mid)
            if msg is None or msg.journal_seq >= journal_seq:
                hi = mid  # (a message found is at or after mid)
            else:
                lo = msg.seq + 1
        if first > 1 and lo == first:
            # The stream was trimmed and what the ledger needs next is at its very
            # start: it must be whole there.
            msg = await self.get(lo)
            if msg is not None and (msg.journal_seq > journal_seq or msg.part > 1):
                raise BehindStream(f"the stream's oldest message follows journal_seq {msg.journal_seq}, "
                                   f"this ledger is at {journal_seq}")
        return lo
