"""Generate the Harbin fare system: a GTFS Fares v2 feed plus its fares.toml.

Writes src/cardledger/fares/harbin/*.txt and fares.toml (or the directory given as
the first argument). The output is a pure function of the tables in this file, so
re-running it produces identical bytes; the test suite checks that.

What is official, secondary or illustrative is documented in
src/cardledger/fares/harbin/README.md. In short: the fare scale and the
concessions come from secondary sources; station distances, the coach table, which
bus routes are air-conditioned (other than 14 and 120), bus stops and account ids
are illustrative.

The feed is fares-only: it has no trips, stop_times or stop coordinates, because
the fare rules need none of them.
"""

from __future__ import annotations

import csv
import io
import itertools
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT_DIR_DEFAULT = ROOT / "src" / "cardledger" / "fares" / "harbin"

CURRENCY = "CNY"
TIMEZONE = "Asia/Shanghai"
SERVICE_ID = "every_day"
OFFPEAK = "offpeak"
FARE_MEDIA_ID = "harbin_card"

# --- agencies and networks --------------------------------------------------------

AGENCIES = [
    # (agency_id, agency_name, agency_url); the metro's URL is its published site,
    # the others are the municipal government's portal (no operator site sourced).
    ("harbin_bus", "哈尔滨公交 Harbin Bus", "https://www.harbin.gov.cn/"),
    ("harbin_metro", "哈尔滨地铁 Harbin Metro", "http://www.harbin-metro.com/"),
    ("harbin_ferry", "松花江轮渡 Songhua River Ferry", "https://www.harbin.gov.cn/"),
    ("harbin_coach", "哈尔滨公路客运 Harbin Coach", "https://www.harbin.gov.cn/"),
    ("harbin_taxi", "哈尔滨出租汽车 Harbin Taxi", "https://www.harbin.gov.cn/"),
]

NETWORKS = [
    ("bus_ordinary", "普通公交 Ordinary bus"),
    ("bus_ac", "空调/新能源公交 Air-conditioned and new-energy bus"),
    ("metro", "地铁 Metro"),
    ("ferry", "轮渡 Ferry"),
    ("coach", "公路客运 Coach"),
    ("taxi", "出租汽车 Taxi"),
]

# --- fares (fen) ------------------------------------------------------------------

BUS_ORDINARY_FEN = 100
BUS_AC_FEN = 200
FERRY_FEN = 200
METRO_MIN_FEN = 200
#: Metro scale: (distance up to and including, metres) -> fare in fen.
METRO_SCALE = [(6_000, 200), (10_000, 300), (14_000, 400), (21_000, 500), (28_000, 600)]
#: Beyond the last step: +1 yuan per further 10 km or part of it.
METRO_STEP_M = 10_000
METRO_STEP_FEN = 100


def metro_fare_fen(distance_m: int) -> int:
    """The metro fare for a network distance in whole metres."""
    if distance_m < 0:
        raise ValueError(f"negative distance {distance_m}")
    for limit_m, fen in METRO_SCALE:
        if distance_m <= limit_m:
            return fen
    last_m, last_fen = METRO_SCALE[-1]
    steps = -(-(distance_m - last_m) // METRO_STEP_M)  # ceiling division
    return last_fen + steps * METRO_STEP_FEN


# --- bus routes -------------------------------------------------------------------

#: Route numbers (illustrative selection of Harbin-style numbers).
BUS_ROUTE_NUMBERS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
    21, 23, 26, 29, 31, 33, 37, 38, 43, 47, 51, 53, 55, 57, 61, 64, 66, 68, 70, 74,
    77, 79, 81, 84, 86, 88, 92, 95, 101, 104, 107, 109, 111, 115, 118, 120, 201, 206, 213, 343,
]
#: Routes sourced as 2 yuan (air-conditioned / new-energy since 2018).
BUS_AC_SOURCED = {14, 120}
BUS_STOP_COUNT = 240


def bus_route_is_ac(number: int) -> bool:
    """Sourced for 14 and 120; for the others an illustrative alternation by list position."""
    if number in BUS_AC_SOURCED:
        return True
    return BUS_ROUTE_NUMBERS.index(number) % 2 == 1


def bus_stop_id(index: int) -> str:
    return f"bs_{index + 1:04d}"


def bus_route_stops(position: int) -> list[int]:
    """An illustrative stop list (indexes into the bus stops) for the route at `position`.

    GTFS has no route-to-stop table without trips, so these lists are not written;
    they only make sure that every bus stop is served. Route p serves 12 + p % 17
    stops, starting at stop 4p, stepping by a stride coprime with BUS_STOP_COUNT.
    """
    strides = [1, 7, 11, 13, 17, 19, 23]
    stride = strides[position % len(strides)]
    count = 12 + position % 17
    start = (4 * position) % BUS_STOP_COUNT
    return [(start + k * stride) % BUS_STOP_COUNT for k in range(count)]


# --- metro ------------------------------------------------------------------------
# (slug, name, cumulative metres along the line). Distances are illustrative,
# chosen so that the boundary pairs in METRO_BOUNDARY_PAIRS exist. Names: see the
# README (some are uncertain, marked there).

METRO_LINES: dict[int, list[tuple[str, str, int]]] = {
    1: [
        ("harbin_east_station", "哈东站", 0),
        ("taipingqiao", "太平桥", 1_200),
        ("huashu_street", "桦树街", 2_300),
        ("engineering_university", "工程大学", 3_350),
        ("yanchang", "烟厂", 4_400),
        ("yida_first_hospital", "医大一院", 5_200),
        ("museum", "博物馆", 6_000),
        ("railway_bureau", "铁路局", 7_210),
        ("jiaotong_college", "交通学院", 8_300),
        ("xidaqiao", "西大桥", 9_100),
        ("heilongjiang_university", "黑龙江大学", 10_000),
        ("xuefu_road", "学府路", 11_210),
        ("ligong_university", "理工大学", 12_300),
        ("xuefu_4th_street", "学府四道街", 13_100),
        ("yida_second_hospital", "医大二院", 14_000),
        ("harbin_south_station", "哈南站", 15_210),
        ("hanan_industrial_city", "哈南工业新城", 17_100),
        ("youxie_street", "友协大街", 19_000),
        ("wapenyao", "瓦盆窑", 21_000),
        ("xiangjiang_road", "湘江路", 22_210),
        ("hanjiang_road", "汉江路", 24_100),
        ("zhujiang_road", "珠江路", 26_000),
        ("diantan_road", "电碳路", 28_000),
        ("xinjiang_street", "新疆大街", 29_210),
    ],
    2: [
        ("jiangbei_university_town", "江北大学城", 0),
        ("harbin_normal_university", "哈师大", 1_400),
        ("xueyuan_road", "学院路", 2_900),
        ("songbei_business_center", "松北商务中心", 4_500),
        ("grand_theatre", "大剧院", 6_300),
        ("city_government", "市政府", 8_000),
        ("sun_island", "太阳岛", 9_900),
        ("central_street", "中央大街", 11_800),
        ("shangzhi_street", "尚志大街", 13_200),
        ("museum", "博物馆", 14_790),
        ("provincial_government", "省政府", 16_100),
        ("guogeli_street", "果戈里大街", 17_500),
        ("culture_park", "文化公园", 19_000),
        ("hongqi_street", "红旗大街", 20_600),
        ("majia_street", "马家街", 22_200),
        ("hada", "哈达", 23_800),
        ("huanghe_road", "黄河路", 25_400),
        ("changjiang_road", "长江路", 27_300),
        ("qixiangtai", "气象台", 29_590),
    ],
    3: [
        ("harbin_west_station", "哈尔滨西站", 0),
        ("haxi_street", "哈西大街", 1_300),
        ("chengxiang_road", "城乡路", 2_600),
        ("yida_second_hospital", "医大二院", 4_000),
        ("baojian_road", "保健路", 5_400),
        ("sport_university", "体育学院", 6_800),
        ("convention_center", "会展中心", 8_200),
        ("xianfeng_road", "先锋路", 9_600),
        ("dayoufang", "大有坊", 11_000),
        ("sandadongli_road", "三大动力路", 12_400),
        ("heping_road", "和平路", 13_800),
        ("dongzhi_road", "东直路", 15_200),
        ("huagong_road", "化工路", 16_600),
        ("nanzhi_road", "南直路", 17_900),
        ("taipingqiao", "太平桥", 19_000),
        ("jingyu_park", "靖宇公园", 20_100),
        ("mosque", "清真寺", 21_100),
        ("chinese_baroque_quarter", "中华巴洛克街区", 22_000),
    ],
}

#: Pairs at and just past each scale boundary: (from slug, to slug, metres, fen).
#: The generator asserts that the network distance is exactly this.
METRO_BOUNDARY_PAIRS = [
    ("harbin_east_station", "museum", 6_000, 200),
    ("taipingqiao", "railway_bureau", 6_010, 300),
    ("harbin_east_station", "heilongjiang_university", 10_000, 300),
    ("taipingqiao", "xuefu_road", 10_010, 400),
    ("harbin_east_station", "yida_second_hospital", 14_000, 400),
    ("taipingqiao", "harbin_south_station", 14_010, 500),
    ("harbin_east_station", "wapenyao", 21_000, 500),
    ("taipingqiao", "xiangjiang_road", 21_010, 600),
    ("harbin_east_station", "diantan_road", 28_000, 600),
    ("taipingqiao", "xinjiang_street", 28_010, 700),
    ("jiangbei_university_town", "xinjiang_street", 38_000, 700),
    ("qixiangtai", "xinjiang_street", 38_010, 800),
]


def metro_station_id(slug: str) -> str:
    return f"ms_{slug}"


def metro_platform_id(line: int, slug: str) -> str:
    return f"m{line}_{slug}"


def metro_area_id(slug: str) -> str:
    return f"a_{slug}"


def metro_stations() -> dict[str, str]:
    """slug -> name, in first-seen order (line 1, then 2, then 3)."""
    out: dict[str, str] = {}
    for line in sorted(METRO_LINES):
        for slug, name, _ in METRO_LINES[line]:
            if slug in out and out[slug] != name:
                raise ValueError(f"station {slug} has two names")
            out.setdefault(slug, name)
    return out


def metro_distances() -> dict[tuple[str, str], int]:
    """Shortest network distance in metres between every ordered pair of stations.

    The graph's nodes are stations; consecutive stations on a line are joined by the
    difference of their cumulative distances; changing lines at an interchange
    costs nothing (one station, one node). Floyd-Warshall on ~60 nodes.
    """
    slugs = list(metro_stations())
    ix = {s: i for i, s in enumerate(slugs)}
    n = len(slugs)
    inf = 1 << 60
    d = [[0 if i == j else inf for j in range(n)] for i in range(n)]
    for line, stations in METRO_LINES.items():
        for (a, _, ka), (b, _, kb) in itertools.pairwise(stations):
            if kb <= ka:
                raise ValueError(f"line {line}: distances must increase at {b}")
            i, j = ix[a], ix[b]
            d[i][j] = d[j][i] = min(d[i][j], kb - ka)
    for k in range(n):
        dk = d[k]
        for i in range(n):
            dik = d[i][k]
            if dik == inf:
                continue
            di = d[i]
            for j in range(n):
                if dik + dk[j] < di[j]:
                    di[j] = dik + dk[j]
    out = {}
    for a in slugs:
        for b in slugs:
            if d[ix[a]][ix[b]] == inf:
                raise ValueError(f"metro graph is not connected: {a} -> {b}")
            out[(a, b)] = d[ix[a]][ix[b]]
    return out


# --- ferry, coach, taxi -----------------------------------------------------------

FERRY_PIERS = [
    ("ferry_flood_monument_pier", "防洪纪念塔码头 Flood Control Monument pier"),
    ("ferry_sun_island_pier", "太阳岛码头 Sun Island pier"),
]

COACH_STATIONS = [
    ("harbin", "哈尔滨公路客运站 Harbin coach station"),
    ("shuangcheng", "双城客运站 Shuangcheng coach station"),
    ("acheng", "阿城客运站 Acheng coach station"),
    ("bin_county", "宾县客运站 Bin County coach station"),
    ("wuchang", "五常客运站 Wuchang coach station"),
]
#: Illustrative origin-destination fares in yuan, the same both ways.
COACH_FARES_YUAN = {
    ("harbin", "acheng"): 10,
    ("harbin", "shuangcheng"): 15,
    ("harbin", "bin_county"): 22,
    ("harbin", "wuchang"): 42,
    ("acheng", "shuangcheng"): 21,
    ("acheng", "bin_county"): 19,
    ("acheng", "wuchang"): 33,
    ("shuangcheng", "bin_county"): 36,
    ("shuangcheng", "wuchang"): 39,
    ("bin_county", "wuchang"): 45,
}
COACH_ROUTES = [
    ("coach_harbin_acheng", "哈尔滨—阿城"),
    ("coach_harbin_shuangcheng", "哈尔滨—双城"),
    ("coach_harbin_bin_county", "哈尔滨—宾县"),
    ("coach_harbin_wuchang", "哈尔滨—五常"),
    ("coach_acheng_wuchang", "阿城—五常"),
]

TAXI_ROUTE_TYPE = 1500  # extended route type "Taxi Service"

# --- config -----------------------------------------------------------------------

OPERATOR_ACCOUNTS = {  # illustrative account ids
    "harbin_bus": 9001,
    "harbin_metro": 9002,
    "harbin_ferry": 9003,
    "harbin_coach": 9004,
    "harbin_taxi": 9005,
}
RIDER_CATEGORIES = [
    # (id, name, is default); the position is the card's category code in fares.toml
    ("adult", "普通 Adult", True),
    ("student", "学生 Student", False),
    ("senior_60", "老年优待 Senior 60-64", False),
    ("senior_65", "敬老 Senior 65+", False),
]
JOURNEY_BREAK_S = 5_400
INCOMPLETE_TIMEOUT_S = 14_400


# --- writing ----------------------------------------------------------------------


def yuan(fen: int) -> str:
    """Fen as a decimal yuan string with two places."""
    if fen < 0:
        raise ValueError(f"negative amount {fen}")
    return f"{fen // 100}.{fen % 100:02d}"


def half(fen: int) -> int:
    if fen % 2:
        raise ValueError(f"half of {fen} fen is not whole")
    return fen // 2


def csv_bytes(header: list[str], rows: list[list[object]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        if len(r) != len(header):
            raise ValueError(f"row {r} does not fit {header}")
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue().encode("utf-8")


def build() -> dict[str, bytes]:
    """Every output file's name and bytes."""
    files: dict[str, list] = {}

    files["agency.txt"] = [
        ["agency_id", "agency_name", "agency_url", "agency_timezone", "agency_lang"],
        [[a, n, u, TIMEZONE, "zh"] for a, n, u in AGENCIES],
    ]
    files["networks.txt"] = [["network_id", "network_name"], [list(n) for n in NETWORKS]]

    # routes and their networks
    routes: list[list[object]] = []
    route_networks: list[list[object]] = []
    for num in BUS_ROUTE_NUMBERS:
        rid = f"bus_{num}"
        net = "bus_ac" if bus_route_is_ac(num) else "bus_ordinary"
        routes.append([rid, "harbin_bus", str(num), None, 3])
        route_networks.append([net, rid])
    for line in sorted(METRO_LINES):
        first, last = METRO_LINES[line][0][1], METRO_LINES[line][-1][1]
        routes.append([f"metro_{line}", "harbin_metro", str(line), f"{first}—{last}", 1])
        route_networks.append(["metro", f"metro_{line}"])
    routes.append(["ferry_songhua", "harbin_ferry", "轮渡", "松花江轮渡 Songhua River ferry", 4])
    route_networks.append(["ferry", "ferry_songhua"])
    for rid, long_name in COACH_ROUTES:
        routes.append([rid, "harbin_coach", None, long_name, 3])
        route_networks.append(["coach", rid])
    routes.append(["taxi", "harbin_taxi", "出租车", "出租汽车 Taxi", TAXI_ROUTE_TYPE])
    route_networks.append(["taxi", "taxi"])
    files["routes.txt"] = [
        ["route_id", "agency_id", "route_short_name", "route_long_name", "route_type"],
        routes,
    ]
    files["route_networks.txt"] = [["network_id", "route_id"], route_networks]

    # stops
    stops: list[list[object]] = []
    for i in range(BUS_STOP_COUNT):
        stops.append([bus_stop_id(i), f"公交站 Bus stop {i + 1:03d}", 0, None])
    stations = metro_stations()
    lines_of: dict[str, list[int]] = {s: [] for s in stations}
    for line in sorted(METRO_LINES):
        for slug, _, _ in METRO_LINES[line]:
            lines_of[slug].append(line)
    for slug, name in stations.items():
        stops.append([metro_station_id(slug), name, 1, None])
        for line in lines_of[slug]:
            stops.append([metro_platform_id(line, slug), f"{name} {line}号线", 0, metro_station_id(slug)])
    for sid, name in FERRY_PIERS:
        stops.append([sid, name, 0, None])
    for slug, name in COACH_STATIONS:
        stops.append([f"coach_{slug}", name, 0, None])
    stops.append(["taxi_anywhere", "出租车 Taxi (anywhere)", 0, None])
    files["stops.txt"] = [["stop_id", "stop_name", "location_type", "parent_station"], stops]

    # areas: one per metro station, one per coach station
    areas = [[metro_area_id(s), n] for s, n in stations.items()]
    stop_areas = [[metro_area_id(s), metro_station_id(s)] for s in stations]
    for slug, name in COACH_STATIONS:
        areas.append([f"a_coach_{slug}", name])
        stop_areas.append([f"a_coach_{slug}", f"coach_{slug}"])
    files["areas.txt"] = [["area_id", "area_name"], areas]
    files["stop_areas.txt"] = [["area_id", "stop_id"], stop_areas]

    # calendar and timeframes
    files["calendar.txt"] = [
        ["service_id", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
         "sunday", "start_date", "end_date"],
        [[SERVICE_ID, 1, 1, 1, 1, 1, 1, 1, "20200101", "20351231"]],
    ]
    files["timeframes.txt"] = [
        ["timeframe_group_id", "start_time", "end_time", "service_id"],
        [
            [OFFPEAK, "09:00:00", "16:00:00", SERVICE_ID],
            [OFFPEAK, "19:00:00", "24:00:00", SERVICE_ID],
        ],
    ]

    files["rider_categories.txt"] = [
        ["rider_category_id", "rider_category_name", "is_default_fare_category", "eligibility_url"],
        [[c, n, 1 if d else 0, None] for c, n, d in RIDER_CATEGORIES],
    ]
    files["fare_media.txt"] = [
        ["fare_media_id", "fare_media_name", "fare_media_type"],
        [[FARE_MEDIA_ID, "哈尔滨城市通卡 Harbin transit card", 2]],
    ]

    # metro fares
    dist = metro_distances()
    for a, b, metres, fen in METRO_BOUNDARY_PAIRS:
        if dist[(a, b)] != metres or dist[(b, a)] != metres:
            raise ValueError(f"boundary pair {a}->{b}: distance {dist[(a, b)]} m, expected {metres}")
        if metro_fare_fen(metres) != fen:
            raise ValueError(f"boundary pair {a}->{b}: fare {metro_fare_fen(metres)}, expected {fen}")
    metro_levels = sorted({metro_fare_fen(m) for m in dist.values()})
    max_metro_fen = metro_levels[-1]

    products: list[list[object]] = []
    P = ["fare_product_id", "fare_product_name", "rider_category_id", "fare_media_id", "amount", "currency"]

    def product(pid: str, name: str, rows: list[tuple[str | None, int]]) -> None:
        for cat, fen in rows:
            products.append([pid, name, cat, None, yuan(fen), CURRENCY])

    product("bus_1", "普通公交 Ordinary bus 1 yuan", [(None, BUS_ORDINARY_FEN)])
    product("bus_2", "空调/新能源公交 AC bus 2 yuan", [(None, BUS_AC_FEN)])
    for fen in range(METRO_MIN_FEN, max_metro_fen + 1, 100):
        y = fen // 100
        # peak (or any time): students half; seniors pay the adult fare
        product(f"metro_{y}", f"地铁 Metro {y} yuan",
                [("adult", fen), ("student", half(fen)), ("senior_60", fen), ("senior_65", fen)])
    for fen in range(METRO_MIN_FEN, max_metro_fen + 1, 100):
        y = fen // 100
        product(f"metro_offpeak_{y}", f"地铁平峰 Metro off-peak {y} yuan",
                [("adult", fen), ("student", half(fen)), ("senior_60", half(fen)), ("senior_65", 0)])
    product("ferry_2", "轮渡 Ferry 2 yuan", [(None, FERRY_FEN)])
    for y in sorted(set(COACH_FARES_YUAN.values())):
        product(f"coach_{y}", f"公路客运 Coach {y} yuan", [(None, y * 100)])
    product("taxi_metered", "出租车计价 Taxi (metered amount from the terminal)", [(None, 0)])
    files["fare_products.txt"] = [P, products]

    # leg rules
    L = ["leg_group_id", "network_id", "from_area_id", "to_area_id",
         "from_timeframe_group_id", "to_timeframe_group_id", "fare_product_id", "rule_priority"]
    rules: list[list[object]] = [
        ["bus", "bus_ordinary", None, None, None, None, "bus_1", 0],
        ["bus", "bus_ac", None, None, None, None, "bus_2", 0],
        ["ferry", "ferry", None, None, None, None, "ferry_2", 0],
        ["taxi", "taxi", None, None, None, None, "taxi_metered", 0],
    ]
    coach_slugs = [slug for slug, _ in COACH_STATIONS]
    for orig, dest in itertools.product(coach_slugs, repeat=2):
        if orig == dest:
            continue
        key = (orig, dest) if (orig, dest) in COACH_FARES_YUAN else (dest, orig)
        y = COACH_FARES_YUAN[key]
        rules.append(["coach", "coach", f"a_coach_{orig}", f"a_coach_{dest}", None, None, f"coach_{y}", 0])
    # same station in and out: the minimum fare (distance 0 falls in the first step)
    for timeframe, prefix, priority in ((None, "metro_", 0), (OFFPEAK, "metro_offpeak_", 1)):
        for a in stations:
            for b in stations:
                y = metro_fare_fen(dist[(a, b)]) // 100
                rules.append(["metro", "metro", metro_area_id(a), metro_area_id(b),
                              timeframe, None, f"{prefix}{y}", priority])
    files["fare_leg_rules.txt"] = [L, rules]

    out = {name: csv_bytes(h, rows) for name, (h, rows) in files.items()}
    max_coach_fen = max(COACH_FARES_YUAN.values()) * 100
    out["fares.toml"] = fares_toml(max_metro_fen, max_coach_fen).encode("utf-8")
    _check(out)
    return out


#: A coach ride longer than this without a tap-off is an incomplete journey.
COACH_INCOMPLETE_TIMEOUT_S = 6 * 3600


def fares_toml(max_metro_fen: int, max_coach_fen: int) -> str:
    cats = "\n".join(f'{i} = "{c}"' for i, (c, _, _) in enumerate(RIDER_CATEGORIES))
    ops = "\n".join(f"{a} = {n}" for a, n in OPERATOR_ACCOUNTS.items())
    return f"""\
# Harbin fare system configuration (generated by tools/make_harbin_feed.py; see README.md).
fare_media_id = "{FARE_MEDIA_ID}"
journey_break_s = {JOURNEY_BREAK_S}
day_start_s = 0
metered_network_ids = ["taxi"]

[rider_categories]
{cats}

# illustrative ledger account ids of the operators
[operators]
{ops}

# Entering and leaving at one metro station is priced by the feed's rule for that
# pair (the minimum fare, with each rider category's concession), so no flat
# same_station_charge is configured.
[[entry_exit]]
network_id = "metro"
max_fare = "{yuan(max_metro_fen)}"
incomplete_timeout_s = {INCOMPLETE_TIMEOUT_S}
incomplete_charge = "{yuan(max_metro_fen)}"

# Coaches are priced origin to destination: the card taps on boarding (ENTRY, the
# longest coach fare is held) and on alighting (EXIT). Illustrative, like the table.
[[entry_exit]]
network_id = "coach"
max_fare = "{yuan(max_coach_fen)}"
incomplete_timeout_s = {COACH_INCOMPLETE_TIMEOUT_S}
incomplete_charge = "{yuan(max_coach_fen)}"
"""


def _check(out: dict[str, bytes]) -> None:
    """Every foreign id resolves and every primary key is unique."""

    def rows(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(out[name].decode("utf-8"))))

    def ids(name: str, col: str) -> set[str]:
        vals = [r[col] for r in rows(name)]
        if len(vals) != len(set(vals)):
            raise ValueError(f"{name}: duplicate {col}")
        return set(vals)

    def refs(name: str, col: str, targets: set[str], optional: bool = True) -> None:
        for r in rows(name):
            v = r[col]
            if v == "" and optional:
                continue
            if v not in targets:
                raise ValueError(f"{name}: {col}={v!r} does not resolve")

    agencies = ids("agency.txt", "agency_id")
    networks = ids("networks.txt", "network_id")
    routes = ids("routes.txt", "route_id")
    stops = ids("stops.txt", "stop_id")
    areas = ids("areas.txt", "area_id")
    cats = ids("rider_categories.txt", "rider_category_id")
    media = ids("fare_media.txt", "fare_media_id")
    tfgs = {r["timeframe_group_id"] for r in rows("timeframes.txt")}
    services = ids("calendar.txt", "service_id")
    products = {r["fare_product_id"] for r in rows("fare_products.txt")}

    refs("routes.txt", "agency_id", agencies, optional=False)
    refs("route_networks.txt", "network_id", networks, optional=False)
    refs("route_networks.txt", "route_id", routes, optional=False)
    if ids("route_networks.txt", "route_id") != routes:
        raise ValueError("every route needs exactly one network")
    refs("stops.txt", "parent_station", {r["stop_id"] for r in rows("stops.txt") if r["location_type"] == "1"})
    refs("stop_areas.txt", "area_id", areas, optional=False)
    refs("stop_areas.txt", "stop_id", stops, optional=False)
    refs("timeframes.txt", "service_id", services, optional=False)
    refs("fare_products.txt", "rider_category_id", cats)
    refs("fare_products.txt", "fare_media_id", media)
    for col, target in (("network_id", networks), ("from_area_id", areas), ("to_area_id", areas),
                        ("from_timeframe_group_id", tfgs), ("to_timeframe_group_id", tfgs)):
        refs("fare_leg_rules.txt", col, target)
    refs("fare_leg_rules.txt", "fare_product_id", products, optional=False)

    keys = [(r["fare_product_id"], r["rider_category_id"], r["fare_media_id"]) for r in rows("fare_products.txt")]
    if len(keys) != len(set(keys)):
        raise ValueError("fare_products.txt: duplicate (product, category, medium)")
    lk = [tuple(r[c] for c in ("network_id", "from_area_id", "to_area_id", "from_timeframe_group_id",
                               "to_timeframe_group_id", "fare_product_id")) for r in rows("fare_leg_rules.txt")]
    if len(lk) != len(set(lk)):
        raise ValueError("fare_leg_rules.txt: duplicate primary key")
    # one rule per (network, from, to, timeframe): no ties for the evaluator to break
    mk = [k[:5] for k in lk]
    if len(mk) != len(set(mk)):
        raise ValueError("fare_leg_rules.txt: two rules match the same legs at one priority")
    served = {s for p in range(len(BUS_ROUTE_NUMBERS)) for s in bus_route_stops(p)}
    if served != set(range(BUS_STOP_COUNT)):
        raise ValueError(f"bus stops served by no route: {sorted(set(range(BUS_STOP_COUNT)) - served)}")


def write(out_dir: pathlib.Path) -> list[pathlib.Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in sorted(build().items()):
        path = out_dir / name
        path.write_bytes(data)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    out_dir = pathlib.Path(argv[1]) if len(argv) > 1 else OUT_DIR_DEFAULT
    for p in write(out_dir):
        print(f"{p.stat().st_size:>9} {p}")
    stations = metro_stations()
    dist = metro_distances()
    print(f"metro stations: {len(stations)}, longest pair: {max(dist.values())} m "
          f"({yuan(metro_fare_fen(max(dist.values())))} yuan)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
