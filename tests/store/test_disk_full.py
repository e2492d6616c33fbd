"""A full disk: a clear StorageError, nothing half-written, and the ledger works again
once space returns. Runs on a small tmpfs mounted for the test (needs root)."""

from __future__ import annotations

import os
import subprocess
import uuid
import warnings

import numpy as np
import pytest

import cardledger
from cardledger import AccountKind, OpKind


@pytest.fixture
def small_fs(tmp_path):
    mnt = str(tmp_path / f"fs-{uuid.uuid4().hex[:6]}")
    os.makedirs(mnt)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", mnt])


def _batch(b: int, n: int = 500) -> np.ndarray:
    ops = cardledger.new_ops(n)
    ops["source"], ops["seq"], ops["kind"] = 5, b * n + 1 + np.arange(n), OpKind.TRANSFER
    ops["account_id"], ops["counterparty_id"], ops["amount_fen"] = 1, 2, 1
    ops["time_us"] = 1_767_225_600_000_000 + b * 1_000_003 + np.arange(n) * 7_919  # poorly compressible
    return ops


def test_disk_full_gives_storage_error_and_recovers(small_fs):
    path = os.path.join(small_fs, "ledger")
    led = cardledger.open(path, checkpoint_ops=1 << 20, create=True)
    ops = cardledger.new_ops(2)
    ops["source"], ops["seq"], ops["kind"] = 1, [1, 2], OpKind.OPEN
    ops["account_id"], ops["account_kind"] = [1, 2], [AccountKind.CLEARING, AccountKind.MERCHANT]
    ops["time_us"] = 1_767_225_600_000_000
    assert (led.apply(ops)["code"] == 0).all()
    acked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(cardledger.StorageError):
            for b in range(100_000):
                led.apply(_batch(b))
                acked = b + 1
    # Nothing of the failed batch is there; everything acknowledged is.
    assert led.balance(2) == acked * 500
    assert led.journal_seq == 2 + acked * 500
    subprocess.run(["mount", "-o", "remount,size=64m", small_fs], check=True)
    r = led.apply(_batch(acked))  # the same batch again: it was never applied
    assert (r["code"] == 0).all()
    assert led.balance(2) == (acked + 1) * 500
    assert led.verify().ok
    led.close()
    with cardledger.open(path, create=True) as again:
        assert again.balance(2) == (acked + 1) * 500
        assert again.verify().ok
