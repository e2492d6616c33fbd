"""Checkpoints a node publishes to NATS, and restoring a node from one.

The stream's retention may be bounded: a node whose journal ends before the oldest
batch the stream still holds cannot catch up by replay (`stream.BehindStream`). So a
node (a follower, off the write path) publishes a hot backup of its ledger
(`Ledger.backup`: the ledger as of one committed batch, LMDB compacted, with the
checkpoint file it names) as one object, `latest`, in the JetStream object store
`<stream>-checkpoints` (replicated like the stream). A node started with
`restore=True` (`cardledger node --restore`) on a directory without a ledger fetches
it, unpacks it there, and then follows the stream from the backup's position, as any
restarted node does. The backup is a tar archive of the backup directory; the object's
description holds its journal_seq.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from typing import Any

import nats.js.api as api
import nats.js.errors as js_errors

from ..ledger import Ledger

OBJECT_NAME = "latest"


def bucket_name(stream: str) -> str:
    """The object store bucket holding a stream's published checkpoints."""
    return f"{stream}-checkpoints"


def pack_backup(led: Ledger, work_dir: str) -> tuple[str, int]:
    """Back `led` up into `work_dir` and archive it; return (archive path, journal_seq
    of the backup)."""
    backup_dir = os.path.join(work_dir, "backup")
    led.backup(backup_dir)
    with Ledger(backup_dir, readonly=True) as copy:
        journal_seq = copy.journal_seq
    archive = os.path.join(work_dir, "backup.tar")
    with tarfile.open(archive, "w") as tar:
        for name in sorted(os.listdir(backup_dir)):
            if name != "lock.mdb":
                tar.add(os.path.join(backup_dir, name), arcname=name)
    return archive, journal_seq


def unpack_backup(archive: str, path: str) -> None:
    """Unpack a published backup into directory `path` (new or empty): plain files
    only, no paths that leave it."""
    os.makedirs(path, exist_ok=True)
    if os.listdir(path):
        raise ValueError(f"restore: {path!r} is not empty: restore into a new or empty directory")
    with tarfile.open(archive, "r") as tar:
        for member in tar.getmembers():
            if not member.isfile() or os.path.basename(member.name) != member.name:
                raise ValueError(f"restore: the published checkpoint holds an unexpected entry {member.name!r}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(path, filter="data")
        else:  # pragma: no cover - Pythons before the filters; the entries were checked above
            tar.extractall(path)


async def publish(js: Any, stream: str, archive: str, journal_seq: int, replicas: int) -> None:
    """Store an archived backup as the stream's latest published checkpoint."""
    bucket = bucket_name(stream)
    try:
        store = await js.object_store(bucket)
    except js_errors.NotFoundError:
        store = await js.create_object_store(bucket, config=api.ObjectStoreConfig(
            bucket=bucket, replicas=replicas, storage=api.StorageType.FILE))
    with open(archive, "rb") as f:
        await store.put(OBJECT_NAME, f, meta=api.ObjectMeta(name=OBJECT_NAME, description=str(journal_seq)))


async def fetch(js: Any, stream: str, archive: str) -> int | None:
    """Write the stream's latest published checkpoint to file `archive`; return its
    journal_seq (None: none was published)."""
    try:
        store = await js.object_store(bucket_name(stream))
        with open(archive, "wb") as f:
            result = await store.get(OBJECT_NAME, writeinto=f)
    except js_errors.NotFoundError:
        return None
    return int(result.info.description or 0)


def temporary_dir(near: str) -> tempfile.TemporaryDirectory:
    """A temporary directory beside `near` (the same filesystem: the backup is large)."""
    parent = os.path.dirname(os.path.abspath(near)) or "."
    return tempfile.TemporaryDirectory(prefix=".cardledger-restore-", dir=parent)
