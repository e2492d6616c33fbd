"""The offer catalog (issue 18) is checked as a whole: every key has its type and range,
every reference resolves, every problem is listed at once naming the file, the offer (by
id) and the key (and the line, read from a file), and nothing is half-loaded. A catalog
survives to_bytes/from_bytes with its recorded time zone offsets, and to_dict/from_dict."""

from __future__ import annotations

import copy
import datetime as dt
import json
import pathlib

import pytest

import cardledger
from cardledger.offers import Merchant, Offer, OfferCatalog, OfferCatalogError
from cardledger.offers.catalog import (
    BP_WHOLE,
    CARD_CATEGORY_MAX,
    DAY_COUNT_MAX,
    HOURS_RANGES_MAX,
    NAME_LEN_MAX,
    OFFER_ID_LEN_MAX,
    TIME_ZONE_DEFAULT,
)
from cardledger.schema import AMOUNT_MAX_FEN

EXAMPLE = pathlib.Path(cardledger.offers.__file__).with_name("example.toml")

#: Every integer key of an offer, with its allowed range.
INTEGER_KEYS = {
    "percent_off_bp": (0, BP_WHOLE),
    "amount_off_fen": (0, AMOUNT_MAX_FEN),
    "min_gross_fen": (0, AMOUNT_MAX_FEN),
    "every_fen": (0, AMOUNT_MAX_FEN),
    "max_discount_fen": (0, AMOUNT_MAX_FEN),
    "per_card_day_count": (0, DAY_COUNT_MAX),
    "per_card_month_discount_fen": (0, AMOUNT_MAX_FEN),
    "budget_fen": (0, AMOUNT_MAX_FEN),
    "union_share_bp": (0, BP_WHOLE),
    "union_account": (0, 2**63 - 1),
}


def doc(*offers: dict, **top) -> dict:
    """A catalog mapping: two retail merchants and a catering one, and these offers
    (each a default 1-yuan-off offer "o0", "o1"… unless its keys say otherwise)."""
    out = {
        "merchant": [
            {"id": 5001, "name": "中央大街百货", "group": "retail"},
            {"id": 5002, "name": "秋林食品", "group": "retail"},
            {"id": 6001, "name": "老道外饺子馆", "group": "catering"},
        ],
        "offer": [{"id": f"o{i}", "amount_off_fen": 100, **o} for i, o in enumerate(offers or ({},))],
    }
    out.update(top)
    return out


def problems(mapping: dict) -> list:
    """The problems `from_dict` finds in `mapping` (it must find some)."""
    with pytest.raises(OfferCatalogError) as e:
        OfferCatalog.from_dict(mapping)
    assert e.value.problems
    return e.value.problems


def only_problem(mapping: dict):
    """The one problem `from_dict` finds in `mapping`."""
    found = problems(mapping)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def write(tmp_path, text: str | bytes, name: str = "offers.toml") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# -- what a good catalog reads as -------------------------------------------------------------


def test_the_shipped_example_catalog_loads_with_every_group_and_its_category_names():
    cat = OfferCatalog.from_toml(EXAMPLE)
    assert cat.title == "哈尔滨市总工会会员优惠服务手册"
    assert cat.time_zone == TIME_ZONE_DEFAULT
    assert cat.groups() == ("retail", "services", "catering", "entertainment")
    assert cat.category_name(2) == "60至64岁会员" and cat.category_name(1) is None
    kinds = {o.id: o for o in cat.offers}
    assert kinds["dec-retail"].min_gross_fen == 10_000 and kinds["dec-retail"].per_card_day_count == 1
    assert kinds["books-every-50"].every_fen == 5_000
    assert kinds["member-month-2027"].every_merchant and kinds["member-month-2027"].union_account == 9100
    assert kinds["lunch-weekdays"].hours == ((660, 840),) and kinds["lunch-weekdays"].days_of_week == (1, 2, 3, 4, 5)
    assert kinds["seniors-services"].categories == (2, 3)
    assert kinds["cinema-late"].hours == ((1260, 1440),)


def test_an_offer_reads_every_key_as_written():
    offer = {
        "id": "full", "name": "十二月购物季", "merchants": [5002, 5001], "merchant_groups": ["catering"],
        "categories": [3, 0], "percent_off_bp": 500, "amount_off_fen": 2000, "min_gross_fen": 10_000,
        "every_fen": 5000, "max_discount_fen": 3000, "valid_from": dt.date(2026, 12, 1),
        "valid_to": "2026-12-31", "days_of_week": [7, 6], "hours": ["17:00-19:00", "11:00-14:00"],
        "per_card_day_count": 1, "per_card_month_discount_fen": 5000, "budget_fen": 10**8,
        "union_share_bp": 5000, "union_account": 9100,
    }
    got = OfferCatalog.from_dict(doc(offer)).offers[0]
    assert got == Offer(
        id="full", name="十二月购物季", merchants=(5001, 5002), merchant_groups=("catering",), categories=(3, 0),
        percent_off_bp=500, amount_off_fen=2000, min_gross_fen=10_000, every_fen=5000, max_discount_fen=3000,
        valid_from=dt.date(2026, 12, 1), valid_to=dt.date(2026, 12, 31), days_of_week=(6, 7),
        hours=((660, 840), (1020, 1140)), per_card_day_count=1, per_card_month_discount_fen=5000,
        budget_fen=10**8, union_share_bp=5000, union_account=9100,
    )


def test_an_offer_with_only_an_id_and_a_discount_takes_every_default():
    got = OfferCatalog.from_dict(doc({"id": "plain", "amount_off_fen": 100})).offers[0]
    assert got == Offer(id="plain", amount_off_fen=100)
    assert got.every_merchant and got.categories is None and got.days_of_week is None and got.hours is None


def test_a_catalog_without_a_time_zone_is_in_asia_shanghai_and_a_named_zone_is_kept():
    assert OfferCatalog.from_dict(doc()).time_zone == "Asia/Shanghai"
    assert OfferCatalog.from_dict(doc()).offset_s_at(1_767_225_600_000_000) == 8 * 3600
    tokyo = OfferCatalog.from_dict(doc(time_zone="Asia/Tokyo"))
    assert tokyo.time_zone == "Asia/Tokyo" and tokyo.offset_s_at(1_767_225_600_000_000) == 9 * 3600


def test_merchants_of_an_offer_are_its_own_and_its_groups_sorted_and_none_means_every_merchant():
    cat = OfferCatalog.from_dict(doc({"merchants": [6001]}, {"merchant_groups": ["retail"]},
                                     {"merchants": [6001], "merchant_groups": ["retail"]}, {}))
    assert [cat.merchants_of(o) for o in cat.offers] == [(6001,), (5001, 5002), (5001, 5002, 6001), None]
    assert cat.merchant(5002) == Merchant(5002, "秋林食品", "retail")
    with pytest.raises(KeyError):
        cat.merchant(7)


def test_groups_are_listed_in_the_order_merchants_first_name_them():
    mapping = doc()
    mapping["merchant"].insert(0, {"id": 7001, "name": "影城", "group": "entertainment"})
    mapping["merchant"].append({"id": 7002, "name": "无类商户"})
    assert OfferCatalog.from_dict(mapping).groups() == ("entertainment", "retail", "catering")


# -- types and ranges -----------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(INTEGER_KEYS))
@pytest.mark.parametrize("value", [100.0, True, "100", None])
def test_an_integer_key_refuses_floats_bools_and_text(key, value):
    p = only_problem(doc({"percent_off_bp": 100, "amount_off_fen": 100, key: value}))
    assert p.column == f'offer[0] "o0".{key}' and "must be an integer" in p.message


@pytest.mark.parametrize("key", sorted(INTEGER_KEYS))
def test_an_integer_key_refuses_a_value_outside_its_range_and_takes_its_ends(key):
    lo, hi = INTEGER_KEYS[key]
    base = {"percent_off_bp": 100, "amount_off_fen": 100, "every_fen": 0, "union_account": 9100}
    for bad in (lo - 1, hi + 1):
        p = only_problem(doc({**base, key: bad}))
        assert p.column == f'offer[0] "o0".{key}' and "out of range" in p.message, str(p)
    OfferCatalog.from_dict(doc({**base, key: hi}))


@pytest.mark.parametrize(
    "key, value, where",
    [
        ("categories", [-1], "categories[0]"),
        ("categories", [CARD_CATEGORY_MAX + 1], "categories[0]"),
        ("categories", [1.0], "categories[0]"),
        ("categories", [1, 1], "categories[1]"),
        ("categories", [], "categories"),
        ("categories", 1, "categories"),
        ("days_of_week", [0], "days_of_week[0]"),
        ("days_of_week", [8], "days_of_week[0]"),
        ("days_of_week", [True], "days_of_week[0]"),
        ("days_of_week", [1, 2, 1], "days_of_week[2]"),
        ("days_of_week", [], "days_of_week"),
        ("merchants", [0], "merchants[0]"),
        ("merchants", [5001, 5001], "merchants[1]"),
        ("merchants", ["5001"], "merchants[0]"),
        ("merchant_groups", [], "merchant_groups"),
        ("merchant_groups", "retail", "merchant_groups"),
        ("merchant_groups", ["retail", "retail"], "merchant_groups[1]"),
        ("merchant_groups", [1], "merchant_groups[0]"),
        ("id", "", "id"),
        ("id", "x" * (OFFER_ID_LEN_MAX + 1), "id"),
        ("id", 7, "id"),
        ("name", "x" * (NAME_LEN_MAX + 1), "name"),
        ("name", "两行\n名字", "name"),
        ("name", ["十二月"], "name"),
    ],
)
def test_a_list_or_text_key_refuses_a_bad_value_naming_the_item(key, value, where):
    p = only_problem(doc({key: value}))
    assert p.column.endswith(f".{where}") and p.column.startswith("offer[0]"), str(p)


def test_an_offer_id_may_be_64_characters_and_a_name_200():
    OfferCatalog.from_dict(doc({"id": "x" * OFFER_ID_LEN_MAX, "name": "名" * NAME_LEN_MAX}))


def test_an_unknown_key_is_refused_at_the_top_in_a_merchant_and_in_an_offer():
    mapping = doc({"amount_of_fen": 5}, titel="手册")
    mapping["merchant"][0]["gruop"] = "retail"
    wheres = {p.column for p in problems(mapping)}
    assert wheres == {"titel", "merchant[0].gruop", 'offer[0] "o0".amount_of_fen'}


def test_merchant_and_offer_lists_must_be_arrays_of_tables():
    wheres = {p.column for p in problems({"merchant": {"id": 1}, "offer": {"id": "x"}})}
    assert wheres == {"merchant", "offer"}
    wheres = {p.column for p in problems({"merchant": [7], "offer": ["x"]})}
    assert wheres == {"merchant[0]", "offer[0]"}
    with pytest.raises(OfferCatalogError):
        OfferCatalog.from_dict(["not", "a", "table"])  # type: ignore[arg-type]


# -- merchants -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "merchant, where",
    [
        ({"name": "无号商户"}, "merchant[3].id"),
        ({"id": 0, "name": "零号"}, "merchant[3].id"),
        ({"id": 7.0, "name": "浮点"}, "merchant[3].id"),
        ({"id": 7}, "merchant[3].name"),
        ({"id": 7, "name": ""}, "merchant[3].name"),
        ({"id": 7, "name": "x" * (NAME_LEN_MAX + 1)}, "merchant[3].name"),
        ({"id": 7, "name": "商户", "group": 3}, "merchant[3].group"),
        ({"id": 5001, "name": "重号"}, "merchant[3].id"),
    ],
)
def test_a_merchant_needs_a_unique_positive_id_and_a_name(merchant, where):
    mapping = doc()
    mapping["merchant"].append(merchant)
    assert only_problem(mapping).column == where


def test_an_offer_naming_a_merchant_not_in_the_catalog_or_an_unknown_group_is_refused():
    found = problems(doc({"merchants": [5001, 9999], "merchant_groups": ["retail", "零售"]}))
    assert [(p.column, p.message) for p in found] == [
        ('offer[0] "o0".merchants[1]', "merchant 9999 is not in the catalog's [[merchant]] tables"),
        ('offer[0] "o0".merchant_groups[1]', "'零售' is not the group of any [[merchant]]"),
    ]


def test_two_offers_with_one_id_are_refused_naming_the_second():
    p = only_problem(doc({"id": "same"}, {"id": "other"}, {"id": "same"}))
    assert p.column == 'offer[2] "same".id' and "earlier offer" in p.message


def test_an_id_is_taken_even_by_an_earlier_offer_with_problems_of_its_own():
    wheres = [p.column for p in problems(doc({"id": "same", "amount_off_fen": 1.5}, {"id": "same"}))]
    assert wheres == ['offer[0] "same".amount_off_fen', 'offer[1] "same".id']


# -- the discount ----------------------------------------------------------------------------


def test_an_offer_must_give_a_discount():
    assert "gives no discount" in only_problem({"offer": [{"id": "none"}]}).message
    p = only_problem({"offer": [{"id": "zero", "percent_off_bp": 0, "amount_off_fen": 0}]})
    assert p.column == 'offer[0] "zero"' and "both 0" in p.message


def test_every_fen_needs_amount_off_fen():
    p = only_problem(doc({"amount_off_fen": 0, "percent_off_bp": 500, "every_fen": 5000}))
    assert p.column == 'offer[0] "o0".every_fen' and "amount_off_fen" in p.message


def test_a_union_share_needs_a_union_account_that_is_not_a_merchant():
    p = only_problem(doc({"union_share_bp": 5000}))
    assert p.column == 'offer[0] "o0".union_account' and "required" in p.message
    p = only_problem(doc({"union_share_bp": 5000, "union_account": 5001}))
    assert p.column == 'offer[0] "o0".union_account' and "merchant" in p.message
    OfferCatalog.from_dict(doc({"union_share_bp": BP_WHOLE, "union_account": 9100}))


# -- dates and hours -------------------------------------------------------------------------


def test_dates_may_be_toml_dates_or_text_and_mean_the_same():
    a = OfferCatalog.from_dict(doc({"valid_from": dt.date(2026, 12, 1), "valid_to": dt.date(2026, 12, 31)}))
    b = OfferCatalog.from_dict(doc({"valid_from": "2026-12-01", "valid_to": "2026-12-31"}))
    assert a == b and a.offers[0].valid_to == dt.date(2026, 12, 31)


def test_dates_in_a_toml_file_may_be_bare_dates_or_strings(tmp_path):
    text = ('[[offer]]\nid = "a"\namount_off_fen = 1\nvalid_from = 2026-12-01\nvalid_to = "2026-12-31"\n')
    offer = OfferCatalog.from_toml(write(tmp_path, text)).offers[0]
    assert (offer.valid_from, offer.valid_to) == (dt.date(2026, 12, 1), dt.date(2026, 12, 31))


@pytest.mark.parametrize(
    "value",
    ["2026-13-01", "2026-02-30", "2026/12/01", "20261201", "2026-12-1", " 2026-12-01", 20261201,
     dt.datetime(2026, 12, 1, 8, 0), dt.time(8, 0)],
)
def test_a_date_that_is_not_a_local_date_is_refused(value):
    assert only_problem(doc({"valid_from": value})).column == 'offer[0] "o0".valid_from'


def test_valid_to_before_valid_from_is_refused_and_one_day_is_allowed():
    p = only_problem(doc({"valid_from": "2026-12-31", "valid_to": "2026-12-01"}))
    assert p.column == 'offer[0] "o0".valid_to' and "before valid_from" in p.message
    OfferCatalog.from_dict(doc({"valid_from": "2026-12-12", "valid_to": "2026-12-12"}))


@pytest.mark.parametrize(
    "hours, expected",
    [
        (["00:00-24:00"], ((0, 1440),)),
        (["21:00-24:00"], ((1260, 1440),)),
        (["11:00-12:00", "12:00-13:00"], ((660, 720), (720, 780))),  # adjacent: end exclusive
        (["17:00-19:00", "06:30-09:00"], ((390, 540), (1020, 1140))),  # kept sorted
    ],
)
def test_hours_are_local_ranges_with_an_exclusive_end_and_24_00_ends_the_day(hours, expected):
    assert OfferCatalog.from_dict(doc({"hours": hours})).offers[0].hours == expected


@pytest.mark.parametrize(
    "hours, where, says",
    [
        (["9:00-10:00"], "hours[0]", "HH:MM-HH:MM"),
        (["11:00~14:00"], "hours[0]", "HH:MM-HH:MM"),
        (["11:00 - 14:00"], "hours[0]", "HH:MM-HH:MM"),
        ([1100], "hours[0]", "HH:MM-HH:MM"),
        (["24:00-24:00"], "hours[0]", "not a time of day"),
        (["10:60-11:00"], "hours[0]", "not a time of day"),
        (["23:00-24:01"], "hours[0]", "not a time of day"),
        (["23:00-25:00"], "hours[0]", "not a time of day"),
        (["23:00-01:00"], "hours[0]", "split a range across midnight"),
        (["12:00-12:00"], "hours[0]", "ends before it starts"),
        (["11:00-14:00", "13:00-15:00"], "hours[1]", "overlaps"),
        (["11:00-14:00", "11:30-12:00"], "hours[1]", "overlaps"),
        ([], "hours", "list of 1.."),
        ("11:00-14:00", "hours", "list of 1.."),
        ([f"{h:02d}:00-{h:02d}:30" for h in range(HOURS_RANGES_MAX + 1)], "hours", "list of 1.."),
    ],
)
def test_hours_badly_written_overlapping_or_across_midnight_are_refused(hours, where, says):
    p = only_problem(doc({"hours": hours}))
    assert p.column == f'offer[0] "o0".{where}' and says in p.message, str(p)


def test_as_many_hour_ranges_as_the_limit_are_allowed():
    hours = [f"{h:02d}:00-{h:02d}:30" for h in range(HOURS_RANGES_MAX)]
    assert len(OfferCatalog.from_dict(doc({"hours": hours})).offers[0].hours) == HOURS_RANGES_MAX


# -- the catalog's own keys --------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Asia/Harbin_City", "", "America", "../etc/passwd", "/etc/localtime", 8])
def test_a_time_zone_that_is_not_an_iana_zone_is_refused(zone):
    p = only_problem(doc(time_zone=zone))
    assert p.column == "time_zone", str(p)


def test_the_title_must_be_text():
    assert only_problem(doc(title=["手册"])).column == "title"


def test_the_categories_table_names_card_categories_and_offers_may_name_only_those():
    cat = OfferCatalog.from_dict(doc({"categories": [4]}, categories={"0": "普通会员", "4": "退休职工"}))
    assert cat.categories == ((0, "普通会员"), (4, "退休职工")) and cat.category_name(4) == "退休职工"
    p = only_problem(doc({"categories": [5]}, categories={"4": "退休职工"}))
    assert p.column == 'offer[0] "o0".categories[0]' and "[categories]" in p.message
    # without the table, any category may be named
    OfferCatalog.from_dict(doc({"categories": [5]}))


@pytest.mark.parametrize(
    "table, where",
    [
        ({"x": "某类"}, "categories.x"),
        ({"-1": "某类"}, "categories.-1"),
        ({"04": "某类"}, "categories.04"),
        ({str(CARD_CATEGORY_MAX + 1): "某类"}, f"categories.{CARD_CATEGORY_MAX + 1}"),
        ({"4": ""}, "categories.4"),
        ({"4": 4}, "categories.4"),
        ({"4": "退休\t职工"}, "categories.4"),
        ({"4": "退休职工", 4: "又一个"}, "categories.4"),
        (["退休职工"], "categories"),
    ],
)
def test_a_bad_categories_entry_is_refused(table, where):
    assert only_problem(doc(categories=table)).column == where


def test_category_codes_may_be_numbers_in_a_mapping_built_in_python():
    cat = OfferCatalog.from_dict(doc(categories={4: "退休职工", CARD_CATEGORY_MAX: "最后一类"}))
    assert cat.categories == ((4, "退休职工"), (CARD_CATEGORY_MAX, "最后一类"))


# -- every problem at once -----------------------------------------------------------------------


def test_every_problem_is_listed_at_once_naming_the_offer_id_and_the_key():
    mapping = doc(
        {"id": "dec", "amount_off_fen": 20.0, "hours": ["23:00-01:00"]},
        {"id": "lunch", "days_of_week": [8], "merchant_groups": ["food"]},
        {"amount_off_fen": 5},
        time_zone="Mars/Olympus",
    )
    del mapping["offer"][2]["id"]
    with pytest.raises(OfferCatalogError) as e:
        OfferCatalog.from_dict(mapping, file="december.toml")
    wheres = [p.column for p in e.value.problems]
    assert wheres == [
        "time_zone",
        'offer[0] "dec".amount_off_fen',
        'offer[0] "dec".hours[0]',
        'offer[1] "lunch".merchant_groups[0]',
        'offer[1] "lunch".days_of_week[0]',
        "offer[2].id",
    ]
    text = str(e.value)
    assert text.startswith("the offer catalog has 6 problems; nothing was loaded")
    assert 'december.toml:0: column offer[0] "dec".amount_off_fen: must be an integer, got float 20.0' in text
    assert isinstance(e.value, ValueError) and isinstance(e.value, cardledger.OfferCatalogError)


def test_a_file_names_each_problem_s_file_and_line(tmp_path):
    text = (
        'title = "手册"\n'            # 1
        'time_zone = "Mars/Olympus"\n'  # 2
        "\n"                          # 3
        "[[merchant]]\n"              # 4
        "id = 5001\n"                 # 5
        'name = "百货"\n'              # 6
        "\n"                          # 7
        "[[offer]]\n"                 # 8
        'id = "dec"\n'                # 9
        "amount_off_fen = 20.5\n"     # 10
        "\n"                          # 11
        "[[offer]]\n"                 # 12
        'id = "lunch"\n'              # 13
        "amount_off_fen = 500\n"      # 14
        'hours = ["13:00-11:00"]\n'   # 15
        "merchants = [7]\n"           # 16
        "\n"                          # 17
        "[[offer]]  # no discount\n"  # 18
        'id = "empty"\n'              # 19
    )
    path = write(tmp_path, text)
    with pytest.raises(OfferCatalogError) as e:
        OfferCatalog.from_toml(path)
    got = [(p.file, p.line, p.column) for p in e.value.problems]
    assert got == [
        (str(path), 2, "time_zone"),
        (str(path), 10, 'offer[0] "dec".amount_off_fen'),
        (str(path), 16, 'offer[1] "lunch".merchants[0]'),
        (str(path), 15, 'offer[1] "lunch".hours[0]'),
        (str(path), 18, 'offer[2] "empty"'),
    ]
    assert f"{path}:10: column offer[0] \"dec\".amount_off_fen: must be an integer" in str(e.value)


def test_a_catalog_with_inline_tables_still_names_the_file_and_key(tmp_path):
    path = write(tmp_path, 'offer = [{id = "x", amount_off_fen = 1.5}]\n')
    p = only_problem_of_file(path)
    assert (p.file, p.column) == (str(path), 'offer[0] "x".amount_off_fen')


def only_problem_of_file(path):
    with pytest.raises(OfferCatalogError) as e:
        OfferCatalog.from_toml(path)
    assert len(e.value.problems) == 1, str(e.value)
    return e.value.problems[0]


@pytest.mark.parametrize(
    "text, line",
    [
        ('title = "手册"\n[[offer]]\nid = "a"\namount_off_fen = \n', 4),
        ('[[offer]]\nid = "a"\nid = "b"\n', 3),
        ('[[offer]]\nid = "a\namount_off_fen = 1\n', 2),
        ('[[offer]\nid = "a"\n', 1),
        ("\n\nvalid_from = 2026-13-01\n", 3),
    ],
)
def test_a_toml_syntax_error_names_the_file_and_its_line(tmp_path, text, line):
    path = write(tmp_path, text)
    p = only_problem_of_file(path)
    assert (p.file, p.line) == (str(path), line) and "not valid TOML" in p.message
    assert str(p).startswith(f"{path}:{line}: ")


def test_a_file_that_is_not_utf8_names_the_line_of_the_first_bad_byte(tmp_path):
    path = write(tmp_path, '[[merchant]]\nid = 1\nname = "'.encode() + "百货".encode("gbk") + b'"\n')
    p = only_problem_of_file(path)
    assert (p.line, "not UTF-8" in p.message) == (3, True)


def test_toml_nested_too_deep_or_a_number_too_long_is_a_catalog_error_not_a_crash(tmp_path):
    p = only_problem_of_file(write(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n"))
    assert "nested too deep" in p.message
    p = only_problem_of_file(write(tmp_path, 'title = "t"\n\nbudget_fen = ' + "9" * 5000 + "\n"))
    assert (p.line, "not valid TOML" in p.message) == (3, True)


def test_a_missing_file_or_a_directory_is_a_catalog_error_naming_it(tmp_path):
    for path in (tmp_path / "missing.toml", tmp_path):
        p = only_problem_of_file(path)
        assert p.file == str(path) and "cannot read" in p.message


# -- bytes and mappings --------------------------------------------------------------------------


def test_to_bytes_and_from_bytes_give_back_the_same_catalog_and_digest():
    cat = OfferCatalog.from_toml(EXAMPLE)
    again = OfferCatalog.from_bytes(cat.to_bytes())
    assert again == cat and again.to_bytes() == cat.to_bytes() and again.sha256 == cat.sha256
    assert json.loads(cat.to_bytes())["format"] == 1


def test_a_catalog_read_back_uses_its_recorded_offsets_not_the_hosts():
    cat = OfferCatalog.from_dict(doc())
    stored = json.loads(cat.to_bytes())
    zone = stored["timezones"]["zones"]["Asia/Shanghai"]
    assert zone[1][-1] == 8 * 3600
    zone[1] = [9 * 3600] * len(zone[1])  # as if the tz database had moved the zone since
    again = OfferCatalog.from_bytes(json.dumps(stored).encode())
    assert again.offset_s_at(1_767_225_600_000_000) == 9 * 3600
    assert json.loads(again.to_bytes())["timezones"]["zones"]["Asia/Shanghai"][1][0] == 9 * 3600
    assert again.sha256 != cat.sha256


def test_stored_bytes_without_the_zone_or_damaged_are_a_catalog_error():
    cat = OfferCatalog.from_dict(doc())
    stored = json.loads(cat.to_bytes())
    for damaged in (
        b"not json", b"\xff\xfe", b"[]", json.dumps({**stored, "format": 2}).encode(),
        json.dumps({**stored, "timezones": {"format": 1, "zones": {}}}).encode(),
        json.dumps({**stored, "timezones": "nonsense"}).encode(),
        json.dumps({**stored, "catalog": None}).encode(),
    ):
        with pytest.raises(OfferCatalogError) as e:
            OfferCatalog.from_bytes(damaged)
        assert all(p.file == "<stored catalog>" for p in e.value.problems), damaged


def test_the_digest_changes_with_any_offer_and_only_with_the_catalog():
    a = OfferCatalog.from_dict(doc({"amount_off_fen": 100}))
    assert OfferCatalog.from_dict(doc({"amount_off_fen": 100})).sha256 == a.sha256
    assert OfferCatalog.from_dict(doc({"amount_off_fen": 101})).sha256 != a.sha256


def test_to_dict_goes_back_through_from_dict_to_the_same_catalog():
    cat = OfferCatalog.from_toml(EXAMPLE)
    mapping = cat.to_dict()
    assert OfferCatalog.from_dict(copy.deepcopy(mapping)) == cat
    assert mapping["categories"] == {"0": "普通会员", "2": "60至64岁会员", "3": "65岁及以上会员"}
    dec = next(o for o in mapping["offer"] if o["id"] == "dec-retail")
    assert dec == {
        "id": "dec-retail", "name": "十二月购物季", "merchant_groups": ["retail"], "amount_off_fen": 2000,
        "min_gross_fen": 10000, "valid_from": "2026-12-01", "valid_to": "2026-12-31", "per_card_day_count": 1,
        "budget_fen": 50000000, "union_share_bp": 5000, "union_account": 9100,
    }
    late = next(o for o in mapping["offer"] if o["id"] == "cinema-late")
    assert late["hours"] == ["21:00-24:00"]


def test_a_catalog_without_categories_or_names_keeps_its_digest_form():
    """The optional additions leave a catalog that does not use them as it was stored."""
    stored = json.loads(OfferCatalog.from_dict(doc()).to_bytes())
    assert "categories" not in stored["catalog"] and "name" not in stored["catalog"]["offer"][0]
