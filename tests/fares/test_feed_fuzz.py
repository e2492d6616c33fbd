"""A fare feed with random damage (bytes flipped, lines cut, cells blanked, in any of its
files, fares.toml included) loads, or fails with a FeedError / ConfigError whose every
problem names its file and line; never another exception. fares.toml also gets damage
that knows TOML (values swapped or replaced, TOML tokens, bytes that are not UTF-8):
each problem names the file, and its line (a syntax error always) or its key. (Issue
24's "fuzzing the edges", for fare files; `-m soak` runs many more cases.)"""

from __future__ import annotations

import os
import random
import shutil

import pytest
from helpers import HYPOTHESIS_EXAMPLES
from helpers.filedamage import damage_some

from cardledger.fares import FareSystem
from cardledger.fares.config import load_config
from cardledger.fares.errors import ConfigError, FeedError

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


CONFIG_BYTES = open(os.path.join(HARBIN, "fares.toml"), "rb").read()
#: Damaged fares.toml files per run of the default suite, and under `-m soak`.
CONFIG_CASES = max(100, HYPOTHESIS_EXAMPLES * 8)
SOAK_CONFIG_CASES = 20_000


def check_config_case(seed: int) -> None:
    """Damage fares.toml with `seed` (TOML-aware damage: values swapped or replaced, TOML
    tokens, bytes that are not UTF-8, as well as flips and cuts) and load it: it loads, or
    every problem names fares.toml, and a syntax error its line."""
    data, notes = damage_some(CONFIG_BYTES, random.Random(seed))
    try:
        load_config(data)
    except FeedError as e:
        assert e.problems, (seed, notes)
        for p in e.problems:
            said = (seed, notes, str(p))
            assert p.file == "fares.toml" and str(p).startswith(f"fares.toml:{p.line}: "), said
            if p.message.startswith(("not valid TOML", "not valid UTF-8")) and "nested too deep" not in p.message:
                assert p.line >= 1, said
            assert p.line >= 1 or p.column is not None or "nested too deep" in p.message, said


def test_a_damaged_fares_toml_loads_or_names_the_file_and_each_problem_s_line_or_key():
    for seed in range(CONFIG_CASES):
        check_config_case(seed)


@pytest.mark.soak
def test_many_damaged_fares_toml_files_load_or_name_the_file_and_each_problem_s_line_or_key():
    for seed in range(CONFIG_CASES, CONFIG_CASES + SOAK_CONFIG_CASES):
        check_config_case(seed)


@pytest.mark.parametrize("seed", range(6))
def test_a_feed_with_a_damaged_fares_toml_loads_or_names_the_file_and_line(tmp_path, seed):
    """The whole feed loaded with only its fares.toml damaged: the config's problems and
    the checks of the config against the feed name their file."""
    path = str(tmp_path / "feed")
    shutil.copytree(HARBIN, path, ignore=shutil.ignore_patterns("__init__.py", "__pycache__", "*.md", "*.json"))
    data, notes = damage_some(CONFIG_BYTES, random.Random(1000 + seed))
    open(os.path.join(path, "fares.toml"), "wb").write(data)
    try:
        FareSystem.from_gtfs(path)
    except FeedError as e:
        for problem in e.problems:
            assert problem.file and str(problem).startswith(f"{problem.file}:{problem.line}:"), (notes, str(problem))


@pytest.mark.parametrize(
    "data, line",
    [
        (b"journey_break_s = " + b"[" * 5000 + b"]" * 5000 + b"\n", 0),  # nested too deep for the parser
        (b"fare_media_id = \"x\"\njourney_break_s = " + b"9" * 5000 + b"\n", 2),  # too long for int()
        (b"fare_media_id = \"x\"\njourney_break_s = 1\n[operators]\nbus = ", 4),  # ends mid-value
        (b"fare_media_id = \"x\"\n\xff\n", 2),
    ],
)
def test_fares_toml_that_breaks_the_toml_reader_is_a_config_error_naming_the_line(data, line):
    with pytest.raises(ConfigError) as e:
        load_config(data)
    [problem] = e.value.problems
    assert (problem.file, problem.line) == ("fares.toml", line), str(problem)
