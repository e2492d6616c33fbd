"""docs/offers.md says what the code does: its full example is the shipped example file,
its key table names every key the checker knows, its limits table gives the named
constants' values, and its sample error is what the checker prints."""

from __future__ import annotations

import pathlib
import re

import cardledger
from cardledger.offers import OfferCatalog, OfferCatalogError
from cardledger.offers import catalog as catalog_module

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "offers.md").read_text(encoding="utf-8")
EXAMPLE = pathlib.Path(cardledger.offers.__file__).with_name("example.toml")


def section(heading: str) -> str:
    """The text under a '## heading' (or '### heading') up to the next heading of its level."""
    level = heading.split(" ", 1)[0]
    start = DOC.index(heading + "\n")
    end = DOC.find("\n" + level + " ", start + len(heading))
    return DOC[start: end if end >= 0 else len(DOC)]


def test_the_docs_full_example_is_the_shipped_example_file():
    block = re.search(r"```toml\n(.*?)```", section("## A full example"), re.S)
    assert block is not None
    assert block.group(1) == EXAMPLE.read_text(encoding="utf-8")


def test_the_docs_key_tables_name_every_key_the_checker_knows():
    offer_table = section("### An offer")
    documented = set(re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)?", offer_table, re.M))
    keys = {k for pair in documented for k in pair if k}
    assert keys == set(catalog_module._OFFER_KEYS)
    top = section("### The catalog")
    for key in catalog_module._TOP_KEYS:
        assert f"`{key}`" in top or f"`[{key}]`" in top or f"`[[{key}]]`" in top, key
    for key in catalog_module._MERCHANT_KEYS:
        assert f"`{key}`" in top, key


def test_the_docs_limits_are_the_named_constants():
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", section("### Limits"), re.M))
    assert set(rows) == {
        "CATALOG_BYTES_MAX", "OFFERS_MAX", "MERCHANTS_MAX", "OFFER_ID_LEN_MAX", "NAME_LEN_MAX",
        "HOURS_RANGES_MAX", "BP_WHOLE", "CARD_CATEGORY_MAX", "DAY_COUNT_MAX", "TIME_ZONE_DEFAULT",
    }
    spelled = {"64 MiB": 64 * 1024 * 1024, "2³¹−1": 2**31 - 1, '`"Asia/Shanghai"`': "Asia/Shanghai"}
    for name, text in rows.items():
        text = text.strip()
        assert getattr(catalog_module, name) == spelled.get(text, int(text) if text.isdigit() else text), name


def test_the_docs_sample_error_is_what_the_checker_prints(tmp_path, monkeypatch):
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace('time_zone = "Asia/Shanghai"', 'time_zone = "Asia/Harbin_City"')
    text = text.replace('hours = ["11:00-14:00"]', 'hours = ["13:00-11:00"]')
    text = text.replace("percent_off_bp = 2000", "percent_off_bp = 2000.0")
    (tmp_path / "offers.toml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    try:
        OfferCatalog.from_toml("offers.toml")
    except OfferCatalogError as e:
        printed = str(e)
    sample = re.search(r"```\n(the offer catalog has .*?)```", section("## Errors: every problem at once"), re.S)
    assert sample is not None
    assert sample.group(1) == printed + "\n"
