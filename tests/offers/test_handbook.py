"""The member handbook (issue 18) is rendered from the catalog, never typed: each kind of
offer is said in exact plain Chinese, amounts in yuan from integer fen, the example
catalog renders in Markdown and as a self-contained HTML page, catalog text is escaped,
the output is deterministic, and `cardledger handbook` writes the file (exit 0) or names
the file and the offer/key of a bad catalog (exit 2)."""

from __future__ import annotations

import datetime as dt
import html.parser
import json
import pathlib
import subprocess
import sys

import pytest

import cardledger
from cardledger import cli
from cardledger.offers import Offer, OfferCatalog
from cardledger.offers import handbook as hb
from cardledger.schema import AMOUNT_MAX_FEN

EXAMPLE = pathlib.Path(cardledger.offers.__file__).with_name("example.toml")


def catalog(*offers: Offer, merchants=None, **top) -> OfferCatalog:
    """A catalog of these offers over a small set of merchants (a mapping through from_dict)."""
    return OfferCatalog.from_dict({
        "merchant": merchants if merchants is not None else [
            {"id": 5001, "name": "中央大街百货", "group": "retail"},
            {"id": 6001, "name": "老道外饺子馆", "group": "catering"},
        ],
        "offer": [o.to_dict() for o in offers],
        **top,
    })


# -- amounts and rates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fen, text",
    [(2000, "20元"), (50, "0.5元"), (1250, "12.5元"), (1255, "12.55元"), (5, "0.05元"), (0, "0元"),
     (100, "1元"), (10_000, "100元"), (AMOUNT_MAX_FEN, f"{AMOUNT_MAX_FEN // 100}.{AMOUNT_MAX_FEN % 100:02d}元".replace(".00元", "元"))],
)
def test_yuan_is_written_from_fen_with_integer_arithmetic_and_no_trailing_zero(fen, text):
    assert hb.yuan(fen) == text


def test_decimal_text_never_rounds_a_large_amount():
    assert hb.decimal_text(2**62 + 1, 100) == f"{(2**62 + 1) // 100}.{(2**62 + 1) % 100:02d}".rstrip("0")
    assert hb.decimal_text(-150, 100) == "-1.5"


@pytest.mark.parametrize(
    "bp, text",
    [(500, "9.5折"), (1000, "9折"), (250, "9.75折"), (1, "9.999折"), (5000, "5折"), (9999, "0.001折"),
     (10_000, "免费")],
)
def test_a_rate_off_is_written_as_zhe(bp, text):
    assert hb.zhe(bp) == text


# -- one phrase per kind of offer -------------------------------------------------------------


@pytest.mark.parametrize(
    "keys, text",
    [
        ({"amount_off_fen": 2000, "min_gross_fen": 10_000}, "满100减20"),
        ({"amount_off_fen": 50, "min_gross_fen": 9950}, "满99.5减0.5"),
        ({"amount_off_fen": 500, "every_fen": 5000}, "每满50减5"),
        ({"amount_off_fen": 500, "every_fen": 5000, "min_gross_fen": 20_000}, "满200元起每满50减5"),
        ({"amount_off_fen": 500, "every_fen": 5000, "min_gross_fen": 5000}, "每满50减5"),
        ({"amount_off_fen": 500}, "立减5元"),
        ({"percent_off_bp": 500}, "9.5折"),
        ({"percent_off_bp": 500, "max_discount_fen": 2000}, "9.5折，每笔最多优惠20元"),
        ({"percent_off_bp": 1000, "min_gross_fen": 10_000}, "满100元享9折"),
        ({"percent_off_bp": 1000, "amount_off_fen": 500}, "9折再减5元"),
        ({"percent_off_bp": 1000, "amount_off_fen": 500, "min_gross_fen": 10_000}, "满100元享9折再减5元"),
        ({"percent_off_bp": 1000, "amount_off_fen": 500, "every_fen": 5000}, "9折再每满50减5"),
        ({"amount_off_fen": 2000, "min_gross_fen": 10_000, "max_discount_fen": 1250}, "满100减20，每笔最多优惠12.5元"),
        ({"percent_off_bp": 10_000}, "免费"),
    ],
)
def test_the_discount_phrase_of_each_kind_of_offer(keys, text):
    assert hb.discount_phrase(Offer(id="x", **keys)) == text


@pytest.mark.parametrize(
    "keys, text",
    [
        ({}, ""),
        ({"per_card_day_count": 1}, "每人每日限1次"),
        ({"per_card_month_discount_fen": 5000}, "每人每月最多优惠50元"),
        ({"per_card_day_count": 2, "per_card_month_discount_fen": 550}, "每人每日限2次，每人每月最多优惠5.5元"),
    ],
)
def test_the_limits_phrase(keys, text):
    assert hb.limits_phrase(Offer(id="x", amount_off_fen=1, **keys)) == text


@pytest.mark.parametrize(
    "start, end, text",
    [
        (dt.date(2026, 12, 1), dt.date(2026, 12, 31), "12月1日至12月31日"),
        (dt.date(2026, 12, 15), dt.date(2027, 1, 15), "2026年12月15日至2027年1月15日"),
        (dt.date(2026, 12, 12), dt.date(2026, 12, 12), "仅12月12日"),
        (dt.date(2026, 12, 1), None, "12月1日起"),
        (None, dt.date(2026, 12, 31), "截至12月31日"),
        (None, None, ""),
    ],
)
def test_the_dates_phrase(start, end, text):
    assert hb.dates_phrase(Offer(id="x", amount_off_fen=1, valid_from=start, valid_to=end)) == text


@pytest.mark.parametrize(
    "days, text",
    [
        ((1, 2, 3, 4, 5), "周一至周五"),
        ((6, 7), "周六、周日"),
        ((1, 3, 5), "周一、周三、周五"),
        ((1, 2, 3, 5, 6), "周一至周三、周五、周六"),
        ((7,), "周日"),
        ((1, 2, 3, 4, 5, 6, 7), ""),
        (None, ""),
    ],
)
def test_the_days_of_week_phrase(days, text):
    assert hb.days_phrase(days) == text


def test_the_hours_phrase_and_the_when_phrase():
    assert hb.hours_phrase(((660, 840),)) == "11:00-14:00"
    assert hb.hours_phrase(((390, 540), (1260, 1440))) == "06:30-09:00、21:00-24:00"
    assert hb.hours_phrase(None) == ""
    lunch = Offer(id="x", amount_off_fen=1, days_of_week=(1, 2, 3, 4, 5), hours=((660, 840),))
    assert hb.when_phrase(lunch) == "周一至周五 11:00-14:00"
    dated = Offer(id="x", amount_off_fen=1, valid_from=dt.date(2026, 12, 1), valid_to=dt.date(2026, 12, 31),
                  days_of_week=(6, 7))
    assert hb.when_phrase(dated) == "12月1日至12月31日，周六、周日"
    assert hb.when_phrase(Offer(id="x", amount_off_fen=1, hours=((1260, 1440),))) == "21:00-24:00"


def test_the_categories_phrase_uses_the_catalogs_names_and_a_code_otherwise():
    cat = catalog(Offer(id="x", amount_off_fen=1), categories={"4": "退休职工", "5": "劳动模范"})
    assert hb.categories_phrase(Offer(id="x", amount_off_fen=1, categories=(4, 5)), cat) == "限退休职工、劳动模范"
    bare = catalog(Offer(id="x", amount_off_fen=1))
    assert hb.categories_phrase(Offer(id="x", amount_off_fen=1, categories=(7,)), bare) == "限类别7"
    assert hb.categories_phrase(Offer(id="x", amount_off_fen=1), bare) == ""


def test_the_offer_phrase_reads_as_the_issue_says():
    offer = Offer(id="dec", amount_off_fen=2000, min_gross_fen=10_000, per_card_day_count=1,
                  valid_from=dt.date(2026, 12, 1), valid_to=dt.date(2026, 12, 31))
    assert hb.offer_phrase(offer, catalog(offer)) == "满100减20，每人每日限1次，12月1日至12月31日"
    funded = Offer(id="f", percent_off_bp=500, max_discount_fen=2000, categories=(4,), budget_fen=10**6,
                   days_of_week=(1, 2, 3, 4, 5), hours=((660, 840),), union_share_bp=5000, union_account=9100)
    cat = catalog(funded, categories={"4": "退休职工"})
    assert hb.offer_phrase(funded, cat) == (
        "9.5折，每笔最多优惠20元，限退休职工，周一至周五 11:00-14:00，优惠总额有限，用完即止")


# -- the whole handbook ----------------------------------------------------------------------


def test_the_example_catalog_renders_as_markdown_with_each_section_and_offer():
    text = hb.render(OfferCatalog.from_toml(EXAMPLE), "md")
    lines = text.splitlines()
    assert lines[0] == "# 哈尔滨市总工会会员优惠服务手册"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## 全市通用", "## 零售", "## 服务", "## 餐饮", "## 文娱", "## 其他特约商户"]
    for line in [
        "- **会员优惠服务月**：9折，每笔最多优惠30元，每人每月最多优惠100元，5月1日至5月31日，优惠总额有限，用完即止",
        "- **十二月购物季**：满100减20，每人每日限1次，12月1日至12月31日，优惠总额有限，用完即止",
        "- 每满50减5，每人每月最多优惠50元",
        "- 9.5折，每笔最多优惠20元",
        "- **敬老服务**：8折，每笔最多优惠50元，限60至64岁会员、65岁及以上会员",
        "- **工作日午餐**：满30减5，周一至周五 11:00-14:00",
        "- 满10元享9折，每笔最多优惠5元，06:30-09:00、11:00-13:30、17:00-19:00",
        "- 满30减10，每人每日限2次，周六、周日",
        "- 立减5元，21:00-24:00",
        "### 工人文化宫服务部",
    ]:
        assert line in lines, line
    # the book shop's own offer sits under the book shop, in the retail section
    assert lines.index("### 松花江书城") < lines.index("- 每满50减5，每人每月最多优惠50元") < lines.index("## 服务")
    assert text.endswith("\n") and not text.endswith("\n\n")


class _Tags(html.parser.HTMLParser):
    """Collects start tags, checks each closes, and keeps the text."""

    VOID = {"meta", "br", "link", "img"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.starts: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.starts.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (tag, self.open)
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Tags:
    tags = _Tags()
    tags.feed(page)
    tags.close()
    assert not tags.open, tags.open
    return tags


def test_the_example_catalog_renders_as_a_self_contained_utf8_html_page():
    cat = OfferCatalog.from_toml(EXAMPLE)
    page = hb.render(cat, "html")
    assert page.startswith("<!DOCTYPE html>\n")
    tags = parse(page)
    assert ("meta", {"charset": "utf-8"}) in tags.starts
    assert ("html", {"lang": "zh-CN"}) in tags.starts
    # nothing is fetched from elsewhere: no script, link, image or outside address
    assert not [t for t, attrs in tags.starts if t in ("script", "link", "img", "iframe") or "src" in attrs]
    assert "http" not in page
    text = "".join(tags.text)
    for merchant in cat.merchants:
        assert merchant.name in text
    assert "满100减20，每人每日限1次，12月1日至12月31日，优惠总额有限，用完即止" in text
    assert [t for t, _ in tags.starts].count("h2") == 6


def test_rendering_is_deterministic():
    cat = OfferCatalog.from_toml(EXAMPLE)
    for fmt in hb.FORMATS:
        assert hb.render(cat, fmt) == hb.render(OfferCatalog.from_bytes(cat.to_bytes()), fmt)


def test_catalog_text_with_markup_is_escaped_in_both_formats():
    nasty = '<b>A&B "商店"</b> *星* [链接](x)'
    cat = catalog(Offer(id="x", amount_off_fen=100, merchants=(5001,), name="<i>活动</i>"),
                  merchants=[{"id": 5001, "name": nasty, "group": "<g>"}], title="手册 & <script>")
    page = hb.render(cat, "html")
    assert "<b>" not in page and "<script>" not in page and "<i>" not in page and "<g>" not in page
    assert "&lt;b&gt;A&amp;B &quot;商店&quot;&lt;/b&gt; *星* [链接](x)" in page
    assert "<title>手册 &amp; &lt;script&gt;</title>" in page
    assert nasty in "".join(parse(page).text)
    md = hb.render(cat, "md")
    assert "### \\<b\\>A\\&B \"商店\"\\</b\\> \\*星\\* \\[链接\\]\\(x\\)" in md.splitlines()
    assert "# 手册 \\& \\<script\\>" in md.splitlines()
    assert "## \\<g\\>" in md.splitlines()
    assert "- **\\<i\\>活动\\</i\\>**：立减1元" in md.splitlines()


def test_a_group_not_among_the_usual_four_is_headed_by_its_name_and_no_city_wide_section_without_such_offers():
    cat = catalog(Offer(id="x", amount_off_fen=100, merchant_groups=("洗浴",)),
                  merchants=[{"id": 1, "name": "北方浴池", "group": "洗浴"}, {"id": 2, "name": "无类商户"}])
    lines = hb.render(cat, "md").splitlines()
    assert [line for line in lines if line.startswith("## ")] == ["## 洗浴", "## 其他特约商户"]
    assert lines[lines.index("### 无类商户") + 2] == "暂无会员优惠。"
    assert hb.group_heading("catering") == "餐饮" and hb.group_heading("") == "其他特约商户"


def test_a_catalog_outside_shanghai_says_its_time_zone():
    text = hb.render(catalog(Offer(id="x", amount_off_fen=1), time_zone="Asia/Tokyo"), "md")
    assert "文中日期和时间均为当地时间（Asia/Tokyo），时段含开始时刻、不含结束时刻。" in text
    assert "北京时间" in hb.render(catalog(Offer(id="x", amount_off_fen=1)), "md")


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="pdf"):
        hb.render(catalog(Offer(id="x", amount_off_fen=1)), "pdf")


# -- the command ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", hb.FORMATS)
def test_the_handbook_command_writes_the_file_and_exits_0(tmp_path, capsys, fmt):
    out = tmp_path / f"handbook.{fmt}"
    assert cli.main(["handbook", str(EXAMPLE), "--format", fmt, "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    cat = OfferCatalog.from_toml(EXAMPLE)
    assert summary == {"catalog": str(EXAMPLE), "output": str(out), "format": fmt, "merchants": 11,
                       "offers": 9, "catalog_sha256": cat.sha256}
    assert out.read_bytes() == hb.render(cat, fmt).encode("utf-8")


def test_the_handbook_format_follows_the_output_name_unless_given(tmp_path, capsys):
    assert cli.main(["handbook", str(EXAMPLE), "-o", str(tmp_path / "h.html")]) == 0
    assert (tmp_path / "h.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert cli.main(["handbook", str(EXAMPLE), "-o", str(tmp_path / "h.txt")]) == 0
    assert (tmp_path / "h.txt").read_text(encoding="utf-8").startswith("# ")
    assert capsys.readouterr().out.splitlines()[-1] == f"{tmp_path / 'h.txt'}: the handbook of 9 offers at 11 merchants (md)"


def test_a_bad_catalog_exits_2_naming_the_file_and_the_offer_and_key_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace('hours = ["11:00-14:00"]', 'hours = ["23:00-01:00"]'),
                   encoding="utf-8")
    out = tmp_path / "h.md"
    proc = subprocess.run([sys.executable, "-m", "cardledger", "handbook", str(bad), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    line_no = bad.read_text(encoding="utf-8").splitlines().index('hours = ["23:00-01:00"]') + 1
    assert line.startswith(f'cardledger: handbook: {bad}:{line_no}: column offer[4] "lunch-weekdays".hours[0]: ')
    assert not out.exists()


def test_a_catalog_with_several_problems_lists_each_on_its_line_and_a_missing_one_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[offer]]\nid = "a"\namount_off_fen = 1.5\n\n[[offer]]\nid = "a"\namount_off_fen = 1\n',
                   encoding="utf-8")
    assert cli.main(["handbook", str(bad), "-o", str(tmp_path / "h.md")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f'cardledger: handbook: {bad}:3: column offer[0] "a".amount_off_fen: must be an integer, got float 1.5',
        f'cardledger: handbook: {bad}:6: column offer[1] "a".id: the id is used by an earlier offer',
    ]
    assert cli.main(["handbook", str(tmp_path / "none.toml"), "-o", str(tmp_path / "h.md")]) == 2
    assert f"{tmp_path / 'none.toml'}:0: cannot read it" in capsys.readouterr().err


def test_an_output_that_cannot_be_written_exits_2(tmp_path, capsys):
    assert cli.main(["handbook", str(EXAMPLE), "-o", str(tmp_path / "no" / "such" / "h.md")]) == 2
    assert capsys.readouterr().err.startswith("cardledger: handbook: -o ")
