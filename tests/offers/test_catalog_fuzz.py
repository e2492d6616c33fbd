"""An offer catalog with random damage (bits flipped, the file cut, lines dropped or
duplicated, values swapped or replaced, garbage, TOML tokens, bytes that are not UTF-8)
loads, or fails with an OfferCatalogError whose every problem names the file, and its
line (a TOML syntax error always) or its key; never another exception. The same holds
for a damaged mapping given to from_dict and damaged bytes given to from_bytes. (Issue
24's "fuzzing the edges", for offer files.)

Bounded and seeded in the default suite; `-m soak` runs many more cases."""

from __future__ import annotations

import copy
import datetime as dt
import json
import pathlib
import random

import pytest
from helpers import HYPOTHESIS_EXAMPLES
from helpers.filedamage import damage_some

import cardledger
from cardledger.offers import OfferCatalog, OfferCatalogError

EXAMPLE = pathlib.Path(cardledger.offers.__file__).with_name("example.toml")
EXAMPLE_BYTES = EXAMPLE.read_bytes()
#: Damaged files per run of the default suite, and under `-m soak`.
CASES = max(100, HYPOTHESIS_EXAMPLES * 8)
SOAK_CASES = 20_000


def check_file_case(path: pathlib.Path, seed: int) -> bool:
    """Damage the example catalog with `seed` into `path` and read it: True if it loaded;
    otherwise every problem must name the file, and the line or the key."""
    data, notes = damage_some(EXAMPLE_BYTES, random.Random(seed))
    path.write_bytes(data)
    try:
        OfferCatalog.from_toml(path)
    except OfferCatalogError as e:
        assert e.problems, (seed, notes)
        for p in e.problems:
            said = (seed, notes, str(p))
            assert p.file == str(path), said
            assert str(p).startswith(f"{path}:{p.line}: "), said
            if p.message.startswith(("not valid TOML", "not UTF-8")) and "nested too deep" not in p.message:
                assert p.line >= 1, said
            assert p.line >= 1 or p.column is not None or "nested too deep" in p.message, said
        return False
    # any other exception fails the test, and pytest's report names the seed and the damage
    return True


def test_a_damaged_catalog_file_loads_or_names_the_file_and_each_problem_s_line_or_key(tmp_path):
    loaded = sum(check_file_case(tmp_path / "offers.toml", seed) for seed in range(CASES))
    assert loaded < CASES  # (the damage does damage: most cases must fail)


@pytest.mark.soak
def test_many_damaged_catalog_files_load_or_name_the_file_and_each_problem_s_line_or_key(tmp_path):
    for seed in range(CASES, CASES + SOAK_CASES):
        check_file_case(tmp_path / "offers.toml", seed)


#: Values of every type a mapping may hold where another value was.
VALUES = (0, -1, 1, 2**63, -(2**63) - 1, 10**30, 1.5, float("nan"), True, False, None, "", "x", "24:00-24:00",
          "2026-02-30", "Asia/Shanghai", "America", [], [1], ["a"], [[1]], [None], [{}], {}, {"id": 1}, (1, 2),
          dt.date(2026, 12, 1), dt.datetime(2026, 12, 1, 8), dt.time(8), b"bytes", object())


def damage_mapping(mapping: dict, rnd: random.Random) -> str:
    """Replace one value anywhere in `mapping` (a nested copy) by a random one, or add or
    drop a key; say where."""
    path: list = []
    node: object = mapping
    while True:
        if isinstance(node, dict) and node:
            key = rnd.choice(sorted(node, key=str))
        elif isinstance(node, list) and node:
            key = rnd.randrange(len(node))
        else:
            break
        if rnd.random() < 0.4 or not isinstance(node[key], (dict, list)):  # type: ignore[index]
            how = rnd.random()
            if how < 0.1 and isinstance(node, dict):
                del node[key]
                return f"{path + [key]} dropped"
            if how < 0.2 and isinstance(node, dict):
                node[rnd.choice(("extra", "id", "hours", "group", 7))] = rnd.choice(VALUES)
                return f"{path} a key added"
            node[key] = rnd.choice(VALUES)  # type: ignore[index]
            return f"{path + [key]} = {node[key]!r}"  # type: ignore[index]
        path.append(key)
        node = node[key]  # type: ignore[index]
    return "nothing"


def test_a_damaged_mapping_loads_or_raises_a_catalog_error_naming_the_key():
    base = OfferCatalog.from_toml(EXAMPLE).to_dict()
    for seed in range(CASES):
        rnd = random.Random(seed)
        mapping = copy.deepcopy(base)
        notes = [damage_mapping(mapping, rnd) for _ in range(rnd.randrange(1, 4))]
        try:
            OfferCatalog.from_dict(mapping, file="mapping")
        except OfferCatalogError as e:
            assert all(p.file == "mapping" and p.column for p in e.problems), (seed, notes, str(e))


def test_damaged_stored_bytes_are_refused_with_a_catalog_error():
    good = OfferCatalog.from_toml(EXAMPLE).to_bytes()
    assert json.loads(good)  # (the damage below is to canonical JSON)
    for seed in range(CASES):
        rnd = random.Random(seed)
        raw, notes = damage_some(good, rnd)
        try:
            OfferCatalog.from_bytes(raw)
        except OfferCatalogError as e:
            assert all(p.file == "<stored catalog>" for p in e.problems), (seed, notes, str(e))
