"""The README's quick tour runs as written (in a temporary directory)."""

from __future__ import annotations

import os


def test_quick_tour_runs(tmp_path, capsys):
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    code = readme.split("## Quick tour", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    code = code.replace('"/tmp/ledger"', repr(str(tmp_path / "ledger")))
    namespace: dict = {}
    exec(compile(code, "README.md quick tour", "exec"), namespace)
    namespace["ro"].close()
    assert "10000" in capsys.readouterr().out


def test_fares_and_taps_tour_runs(tmp_path, capsys):
    """The README's fares example prints what its comments say."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    code = readme.split("## Fares and taps", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    code = code.replace('"/tmp/taps"', repr(str(tmp_path / "taps")))
    exec(compile(code, "README.md fares tour", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "150 CNY CATEGORY"
    assert out[1] == "[  0 300] 4700 300"
