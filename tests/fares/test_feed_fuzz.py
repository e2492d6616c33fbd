"""A fare feed with random damage (bytes flipped, lines cut, cells blanked, in any of its
files, fares.toml included) loads, or fails with a FeedError / ConfigError whose every
problem names its file and line; never another exception. (Issue 24's "fuzzing the
edges", for fare files.)"""

from __future__ import annotations

import os
import random
import shutil

import pytest
from helpers import HYPOTHESIS_EXAMPLES

from cardledger.fares import FareSystem
from cardledger.fares.errors import FeedError

HARBIN = os.path.join(os.path.dirname(__import__("cardledger.fares.harbin", fromlist=["x"]).__file__))
FILES = sorted(n for n in os.listdir(HARBIN) if n.endswith((".txt", ".toml")))


def damage(path: str, rnd: random.Random) -> str:
    """Damage one file of the feed at `path` in one of several ways; say how."""
    name = rnd.choice(FILES)
    full = os.path.join(path, name)
    data = bytearray(open(full, "rb").read())
    how = rnd.choice(("flip", "cut", "blank", "drop_line", "dup_line", "garbage_line"))
    lines = data.split(b"\n")
    if how == "flip" and data:
        i = rnd.randrange(len(data))
        data[i] ^= 1 << rnd.randrange(8)
    elif how == "cut" and data:
        data = data[: rnd.randrange(len(data))]
    elif how == "blank" and len(lines) > 1:
        k = rnd.randrange(1, len(lines))
        cells = lines[k].split(b",")
        cells[rnd.randrange(len(cells))] = b""
        lines[k] = b",".join(cells)
        data = bytearray(b"\n".join(lines))
    elif how == "drop_line" and len(lines) > 1:
        del lines[rnd.randrange(len(lines))]
        data = bytearray(b"\n".join(lines))
    elif how == "dup_line" and len(lines) > 1:
        k = rnd.randrange(1, len(lines))
        lines.insert(k, lines[k])
        data = bytearray(b"\n".join(lines))
    else:
        lines.insert(rnd.randrange(len(lines) + 1), bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 30))))
        data = bytearray(b"\n".join(lines))
    open(full, "wb").write(bytes(data))
    return f"{name}: {how}"


@pytest.mark.parametrize("seed", range(max(8, HYPOTHESIS_EXAMPLES // 2)))
def test_a_damaged_feed_loads_or_names_every_problems_file_and_line(tmp_path, seed):
    rnd = random.Random(seed)
    path = str(tmp_path / "feed")
    shutil.copytree(HARBIN, path, ignore=shutil.ignore_patterns("__init__.py", "__pycache__", "*.md", "*.json"))
    what = [damage(path, rnd) for _ in range(rnd.randrange(1, 4))]
    try:
        FareSystem.from_gtfs(path)
    except FeedError as e:
        assert e.problems, what
        for problem in e.problems:
            assert problem.file and problem.line >= 0, (what, problem)
            assert str(problem).startswith(f"{problem.file}:{problem.line}:"), (what, str(problem))
    # any other exception fails the test, naming the damage through pytest's report
