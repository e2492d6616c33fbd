"""`cardledger node` on a bad command line: one line on stderr and exit code 2, never
a traceback (the node itself runs in the soak, tests/cluster/test_soak.py)."""

from __future__ import annotations

import subprocess
import sys


def test_a_bad_listen_address_is_one_line_and_exit_2(tmp_path):
    """--listen must be HOST:PORT."""
    r = subprocess.run([sys.executable, "-m", "cardledger", "node", str(tmp_path / "n"), "--nats",
                        "nats://127.0.0.1:1", "--stream", "S", "--listen", "nowhere"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--listen" in r.stderr and "Traceback" not in r.stderr
