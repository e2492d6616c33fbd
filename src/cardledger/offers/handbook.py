"""The member-facing handbook (《优惠服务手册》) rendered from an offer catalog, in Chinese.

`render(catalog, "md" | "html")` writes the whole handbook: the title, the offers that
hold at every merchant (全市通用), then the merchants by group, each group's own offers
and each merchant's. Every offer is said in plain words ("满100减20，每人每日限1次，
12月1日至12月31日"), built by the phrase functions below, so the handbook is never typed
by hand. The output is deterministic: one catalog, one text (no date of printing).

Amounts are written in yuan from integer fen, without floats: 2000 → "20", 50 → "0.5",
1250 → "12.5", 1255 → "12.55" (trailing zeros dropped). Rates are written as 折
(percent_off_bp 500 → "9.5折"). Text from the catalog (names, the title) is escaped for
the format: `html.escape` for HTML, a backslash before Markdown's marks for Markdown.
"""

from __future__ import annotations

import html
import re

from cardledger.offers.catalog import BP_WHOLE, TIME_ZONE_DEFAULT, Merchant, Offer, OfferCatalog

#: The formats `render` writes.
FORMATS = ("md", "html")
#: The title of a catalog that gives none.
TITLE_DEFAULT = "会员优惠服务手册"
#: The Chinese headings of the usual merchant groups; another group is headed by its name.
GROUP_NAMES = {"retail": "零售", "services": "服务", "catering": "餐饮", "entertainment": "文娱"}
#: The heading of the merchants without a group.
UNGROUPED = "其他特约商户"
#: The heading of the offers that hold at every merchant.
CITY_WIDE = "全市通用"
#: Fen in a yuan.
FEN_PER_YUAN = 100
#: Basis points in one 折 (a tenth of the price).
BP_PER_ZHE = 1_000

_WEEKDAYS = ("一", "二", "三", "四", "五", "六", "日")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~&])")
_WHITESPACE = re.compile(r"\s+")


def decimal_text(whole: int, scale: int) -> str:
    """`whole / scale` as decimal text without a float, trailing zeros dropped: (1250, 100)
    → "12.5", (2000, 100) → "20", (9500, 1000) → "9.5". `scale` is a power of ten."""
    sign = "-" if whole < 0 else ""
    units, rest = divmod(abs(whole), scale)
    if rest == 0:
        return f"{sign}{units}"
    digits = len(str(scale)) - 1
    return f"{sign}{units}.{rest:0{digits}d}".rstrip("0")


def yuan(fen: int) -> str:
    """An amount of fen in yuan, as the handbook writes it: 2000 → "20元", 50 → "0.5元"."""
    return decimal_text(fen, FEN_PER_YUAN) + "元"


def zhe(percent_off_bp: int) -> str:
    """A rate off as 折 (the share of the price paid, in tenths): 500 bp → "9.5折",
    1000 → "9折", 10000 → "免费"."""
    if percent_off_bp >= BP_WHOLE:
        return "免费"
    return decimal_text(BP_WHOLE - percent_off_bp, BP_PER_ZHE) + "折"


def discount_phrase(offer: Offer) -> str:
    """What an offer takes off a purchase: "满100减20", "每满50减5", "立减5元", "9.5折",
    "满100元享9折", "9折再减5元", each with ", 每笔最多优惠20元" when it has a cap."""
    amount = decimal_text(offer.amount_off_fen, FEN_PER_YUAN)
    minimum = decimal_text(offer.min_gross_fen, FEN_PER_YUAN)
    if offer.every_fen:
        off = f"每满{decimal_text(offer.every_fen, FEN_PER_YUAN)}减{amount}"
    elif offer.amount_off_fen and offer.min_gross_fen and not offer.percent_off_bp:
        off = f"满{minimum}减{amount}"
    elif offer.amount_off_fen:
        off = f"减{amount}元" if offer.percent_off_bp else f"立减{amount}元"
    else:
        off = ""
    if offer.percent_off_bp:
        rate = zhe(offer.percent_off_bp)
        off = rate + (f"再{off.removeprefix('立')}" if off else "")
        if offer.min_gross_fen:
            off = f"满{minimum}元享{off}"
    elif offer.every_fen and offer.min_gross_fen > offer.every_fen:
        off = f"满{minimum}元起{off}"
    if offer.max_discount_fen:
        off += f"，每笔最多优惠{yuan(offer.max_discount_fen)}"
    return off


def categories_phrase(offer: Offer, catalog: OfferCatalog) -> str:
    """Who an offer is for: "限60至64岁会员、65岁及以上会员" (the [categories] names, else
    "类别N"); "" when it is for every card."""
    if offer.categories is None:
        return ""
    names = [catalog.category_name(code) or f"类别{code}" for code in offer.categories]
    return "限" + "、".join(names)


def limits_phrase(offer: Offer) -> str:
    """An offer's per-card limits: "每人每日限1次，每人每月最多优惠50元"; "" for none."""
    parts = []
    if offer.per_card_day_count:
        parts.append(f"每人每日限{offer.per_card_day_count}次")
    if offer.per_card_month_discount_fen:
        parts.append(f"每人每月最多优惠{yuan(offer.per_card_month_discount_fen)}")
    return "，".join(parts)


def dates_phrase(offer: Offer) -> str:
    """An offer's dates: "12月1日至12月31日" (the year is said when the two differ),
    "12月1日起", "截至12月31日", "仅12月12日"; "" when it has none."""
    start, end = offer.valid_from, offer.valid_to
    if start and end:
        if start == end:
            return f"仅{start.month}月{start.day}日"
        if start.year != end.year:
            return f"{start.year}年{start.month}月{start.day}日至{end.year}年{end.month}月{end.day}日"
        return f"{start.month}月{start.day}日至{end.month}月{end.day}日"
    if start:
        return f"{start.month}月{start.day}日起"
    if end:
        return f"截至{end.month}月{end.day}日"
    return ""


def days_phrase(days: tuple[int, ...] | None) -> str:
    """ISO days of the week as said: (1..5) → "周一至周五", (6, 7) → "周六、周日",
    (1, 3, 5) → "周一、周三、周五"; "" for every day."""
    if days is None or len(days) == 7:
        return ""
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"周{_WEEKDAYS[run[0] - 1]}至周{_WEEKDAYS[run[-1] - 1]}")
        else:
            parts.extend(f"周{_WEEKDAYS[day - 1]}" for day in run)
    return "、".join(parts)


def hours_phrase(hours: tuple[tuple[int, int], ...] | None) -> str:
    """Local hour ranges as said: "11:00-14:00、17:00-19:00" (end exclusive); "" for all day."""
    if hours is None:
        return ""
    return "、".join(f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}" for s, e in hours)


def when_phrase(offer: Offer) -> str:
    """When an offer holds: its dates, then its days and hours ("周一至周五 11:00-14:00")."""
    week = " ".join(p for p in (days_phrase(offer.days_of_week), hours_phrase(offer.hours)) if p)
    return "，".join(p for p in (dates_phrase(offer), week) if p)


def offer_phrase(offer: Offer, catalog: OfferCatalog) -> str:
    """An offer in plain words: its discount, who it is for, its per-card limits, when it
    holds, and "优惠总额有限，用完即止" when it has a budget. For example
    "满100减20，每人每日限1次，12月1日至12月31日，优惠总额有限，用完即止"."""
    parts = [discount_phrase(offer), categories_phrase(offer, catalog), limits_phrase(offer), when_phrase(offer)]
    if offer.budget_fen:
        parts.append("优惠总额有限，用完即止")
    return "，".join(p for p in parts if p)


def group_heading(group: str) -> str:
    """A group's heading: Chinese for the usual groups (retail → 零售), else the name."""
    return GROUP_NAMES.get(group, group) if group else UNGROUPED


def render(catalog: OfferCatalog, fmt: str = "md") -> str:
    """The member-facing handbook of `catalog` as Markdown ("md") or a self-contained
    UTF-8 HTML page ("html"); ValueError for another format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown handbook format {fmt!r} (expected one of {', '.join(FORMATS)})")
    sections = _sections(catalog)
    return _markdown(catalog, sections) if fmt == "md" else _html(catalog, sections)


# -- the structure, shared by both formats -----------------------------------------------

_Line = tuple[str, str]  # (the offer's name, or "", its phrase)
_Section = tuple[str, list[_Line], list[tuple[Merchant, list[_Line]]]]


def _line(offer: Offer, catalog: OfferCatalog) -> _Line:
    return _clean(offer.name), offer_phrase(offer, catalog)


def _clean(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _sections(catalog: OfferCatalog) -> list[_Section]:
    """(heading, offers for all of it, [(merchant, its own offers)]) in the handbook's order:
    the city-wide offers, then each group as the catalog first names it, then the
    merchants without a group."""
    out: list[_Section] = []
    city = [_line(o, catalog) for o in catalog.offers if o.every_merchant]
    if city:
        out.append((CITY_WIDE, city, []))
    groups: list[str] = list(catalog.groups())
    if any(not m.group for m in catalog.merchants):
        groups.append("")
    for group in groups:
        shared = [_line(o, catalog) for o in catalog.offers if group and group in o.merchant_groups]
        merchants = []
        for merchant in catalog.merchants:
            if merchant.group != group:
                continue
            own = [_line(o, catalog) for o in catalog.offers
                   if merchant.id in o.merchants and not (group and group in o.merchant_groups)]
            merchants.append((merchant, own))
        out.append((group_heading(group), shared, merchants))
    return out


def _intro(catalog: OfferCatalog) -> list[str]:
    zone = "北京时间" if catalog.time_zone == TIME_ZONE_DEFAULT else f"当地时间（{catalog.time_zone}）"
    return [
        "凭工会会员卡在下列特约商户消费，即可享受会员优惠。",
        "每笔消费享受一项优惠：几项优惠同时适用时，取优惠金额最多的一项。",
        f"文中日期和时间均为{zone}，时段含开始时刻、不含结束时刻。",
    ]


def _no_own_offer(shared: list[_Line], sections: list[_Section]) -> str:
    """What a merchant without offers of its own is told to look at."""
    if shared:
        return "适用本类通用优惠。"
    if sections and sections[0][0] == CITY_WIDE:
        return "适用全市通用优惠。"
    return "暂无会员优惠。"


# -- Markdown ----------------------------------------------------------------------------

def _md(text: str) -> str:
    """Catalog text made inert in Markdown: one line, each mark behind a backslash."""
    return _MD_SPECIAL.sub(r"\\\1", _clean(text))


def _md_offer(line: _Line) -> str:
    name, phrase = line
    return f"- **{_md(name)}**：{phrase}" if name else f"- {phrase}"


def _markdown(catalog: OfferCatalog, sections: list[_Section]) -> str:
    out = [f"# {_md(catalog.title or TITLE_DEFAULT)}", ""]
    for paragraph in _intro(catalog):
        out += [paragraph, ""]
    for heading, shared, merchants in sections:
        out += [f"## {_md(heading)}", ""]
        if heading == CITY_WIDE:
            out += ["以下优惠在全部特约商户适用：", ""]
        elif shared:
            out += ["本类商户通用：", ""]
        if shared:
            out += [_md_offer(line) for line in shared] + [""]
        for merchant, own in merchants:
            out.append(f"### {_md(merchant.name)}")
            out.append("")
            if own:
                out += [_md_offer(line) for line in own]
            else:
                out.append(_no_own_offer(shared, sections))
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# -- HTML --------------------------------------------------------------------------------

_STYLE = (
    "body{font-family:'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei',sans-serif;"
    "max-width:46em;margin:2em auto;padding:0 1em;line-height:1.7;color:#222}"
    "h1{border-bottom:2px solid #b22;padding-bottom:.3em}"
    "h2{color:#b22;margin-top:1.6em}h3{margin:1em 0 .3em}"
    "ul{margin:.3em 0;padding-left:1.4em}.note{color:#555}"
)


def _h(text: str) -> str:
    return html.escape(_clean(text), quote=True)


def _html_offers(lines: list[_Line]) -> list[str]:
    items = [f"<li><strong>{_h(name)}</strong>：{_h(phrase)}</li>" if name else f"<li>{_h(phrase)}</li>"
             for name, phrase in lines]
    return ["<ul>", *items, "</ul>"]


def _html(catalog: OfferCatalog, sections: list[_Section]) -> str:
    title = _h(catalog.title or TITLE_DEFAULT)
    out = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{title}</h1>",
        *(f'<p class="note">{_h(p)}</p>' for p in _intro(catalog)),
    ]
    for heading, shared, merchants in sections:
        out += ["<section>", f"<h2>{_h(heading)}</h2>"]
        if heading == CITY_WIDE:
            out.append("<p>以下优惠在全部特约商户适用：</p>")
        elif shared:
            out.append("<p>本类商户通用：</p>")
        if shared:
            out += _html_offers(shared)
        for merchant, own in merchants:
            out.append(f"<h3>{_h(merchant.name)}</h3>")
            if own:
                out += _html_offers(own)
            else:
                out.append(f'<p class="note">{_no_own_offer(shared, sections)}</p>')
        out.append("</section>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
