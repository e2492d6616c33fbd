"""The write lease: one key in a JetStream key-value bucket whose entries expire.

The bucket's TTL is the lease's length. A node takes the lease by creating the key
(refused while another node's entry lives), and keeps it by updating the key with the
revision it last wrote (refused once anyone else wrote it, or after it expired and
was taken). The holder counts its lease from the moment it *sent* a renewal (the
server's TTL starts later), and stops publishing once `LEASE_SAFE_FRACTION` of that
has passed without a confirmed renewal. The lease only decides who tries to write;
what fences a stale writer is the stream's expected-last-sequence check (see
stream.py and node.py), so a paused holder that wakes up cannot append anything.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import nats.js.api as api
import nats.js.errors as js_errors

#: Default lease length: a dead leader is replaced within about this much time.
LEASE_TTL_S_DEFAULT = 2.0
#: The holder renews this often (as a fraction of the TTL).
LEASE_RENEW_FRACTION = 0.25
#: The holder trusts its lease for this fraction of the TTL after a renewal was sent.
LEASE_SAFE_FRACTION = 0.75
LEASE_KEY = "leader"


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds the lease: its node name and its gateway address (host:port)."""

    node: str
    address: str

    def encode(self) -> bytes:
        """The key's value."""
        return json.dumps({"node": self.node, "address": self.address}).encode()

    @staticmethod
    def decode(value: bytes) -> "LeaseHolder":
        """Read a key's value back."""
        d = json.loads(value)
        return LeaseHolder(str(d["node"]), str(d["address"]))


class Lease:
    """One node's view of the lease in bucket `bucket` (created with `ttl_s`)."""

    def __init__(self, js: Any, bucket: str, me: LeaseHolder, ttl_s: float = LEASE_TTL_S_DEFAULT,
                 replicas: int = 3) -> None:
        self.js = js
        self.bucket = bucket
        self.me = me
        self.ttl_s = ttl_s
        self.replicas = replicas
        self.kv: Any = None
        self.revision: int | None = None  # ours, while we hold it
        self.valid_until = 0.0  # time.monotonic() until which we may write

    async def ensure(self) -> None:
        """Open the bucket, creating it if missing."""
        try:
            self.kv = await self.js.key_value(self.bucket)
        except (js_errors.BucketNotFoundError, js_errors.NotFoundError):
            try:
                self.kv = await self.js.create_key_value(api.KeyValueConfig(
                    bucket=self.bucket, ttl=self.ttl_s, history=1, replicas=self.replicas,
                    storage=api.StorageType.FILE))
            except js_errors.BadRequestError:
                self.kv = await self.js.key_value(self.bucket)

    @property
    def held(self) -> bool:
        """Whether this node may write now (it holds the lease and it has not run out)."""
        return self.revision is not None and time.monotonic() < self.valid_until

    async def try_take(self) -> bool:
        """Take the lease if nobody holds it; True if this node now holds it."""
        sent = time.monotonic()
        try:
            rev = await self.kv.create(LEASE_KEY, self.me.encode())
        except (js_errors.KeyWrongLastSequenceError, js_errors.KeyNotFoundError):
            # (the client re-reads a key it found taken: gone by then, it expired meanwhile)
            return False
        self.revision = int(rev)
        self.valid_until = sent + self.ttl_s * LEASE_SAFE_FRACTION
        return True

    async def renew(self) -> bool:
        """Renew the lease held; False (and the lease dropped) if another node has it."""
        if self.revision is None:
            return False
        sent = time.monotonic()
        try:
            rev = await self.kv.update(LEASE_KEY, self.me.encode(), last=self.revision)
        except (js_errors.KeyWrongLastSequenceError, js_errors.KeyNotFoundError):
            self.drop()
            return False
        self.revision = int(rev)
        self.valid_until = sent + self.ttl_s * LEASE_SAFE_FRACTION
        return True

    def drop(self) -> None:
        """Forget the lease (stepping down): this node no longer writes."""
        self.revision = None
        self.valid_until = 0.0

    async def release(self) -> None:
        """Give the lease up at once (a clean shutdown), so another node takes over
        without waiting for it to expire."""
        rev, self.revision = self.revision, None
        self.valid_until = 0.0
        if rev is not None:
            try:
                await self.kv.delete(LEASE_KEY, last=rev)
            except js_errors.Error:
                pass

    async def holder(self) -> LeaseHolder | None:
        """Who holds the lease now (None: nobody)."""
        try:
            entry = await self.kv.get(LEASE_KEY)
        except (js_errors.KeyNotFoundError, js_errors.KeyDeletedError, js_errors.NotFoundError):
            return None
        if not entry.value:
            return None
        return LeaseHolder.decode(entry.value)
