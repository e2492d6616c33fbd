"""FareSystem.quote against the corpus of published GTFS Fares v2 cases.

Each case of `fares_cases.CASES` is written out as a feed directory, loaded with
`FareSystem.from_gtfs`, and every journey of it is quoted. Journeys whose source
publishes a value that the pinned semantics do not give (``conflict``) are xfail,
with the reason; see `fares_cases` for the sources.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from helpers.fares_cases import CASES

REQUIRED = ("agency.txt", "routes.txt", "stops.txt", "fare_products.txt", "fare_leg_rules.txt")


def _params():
    out = []
    for c in CASES:
        for j in c["journeys"]:
            marks = []
            if j.get("conflict"):
                marks.append(pytest.mark.xfail(reason="published value kept: " + j["conflict"], strict=False))
            out.append(pytest.param(c, j, id=f"{c['name']}::{j['name']}", marks=marks))
    return out


def _write_feed(case: dict, path) -> None:
    for name, text in case["files"].items():
        (path / name).write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def fare_api():
    try:
        from cardledger.fares import FareSystem, Leg, UnknownFareError
    except ImportError as e:  # pragma: no cover - the API is being written alongside
        pytest.skip(f"cardledger.fares API not available: {e}")
    return FareSystem, Leg, UnknownFareError


@pytest.fixture(scope="module")
def systems(fare_api, tmp_path_factory):
    """One loaded FareSystem per case (by name), loaded on first use."""
    FareSystem = fare_api[0]
    loaded: dict[str, object] = {}

    def get(case: dict):
        if case["name"] not in loaded:
            d = tmp_path_factory.mktemp(case["name"])
            _write_feed(case, d)
            loaded[case["name"]] = FareSystem.from_gtfs(d)
        return loaded[case["name"]]

    return get


@pytest.mark.parametrize(("case", "journey"), _params())
def test_quote(case, journey, fare_api, systems):
    _, Leg, UnknownFareError = fare_api
    fs = systems(case)
    legs = [
        Leg(
            route_id=r,
            from_stop_id=a,
            to_stop_id=b,
            departure=dt.datetime.fromisoformat(dep),
            arrival=dt.datetime.fromisoformat(arr),
        )
        for r, a, b, dep, arr in journey["legs"]
    ]
    kwargs = {
        "rider_category_id": journey["rider_category_id"],
        "fare_media_id": journey["fare_media_id"],
    }
    if journey.get("expected_error") == "unknown":
        with pytest.raises(UnknownFareError):
            fs.quote(legs, **kwargs)
        return
    q = fs.quote(legs, **kwargs)
    assert (q.amount, q.currency) == (journey["expected_amount"], case["currency"]), journey.get(
        "note", ""
    )


def test_feed_loads_from_zip(fare_api, tmp_path):
    """from_gtfs takes a .zip as well as a directory: same quote either way."""
    import zipfile

    FareSystem, Leg, _ = fare_api
    case = next(c for c in CASES if c["name"] == "gtfsorg_mta_maryland_transfers")
    z = tmp_path / "feed.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for name, text in case["files"].items():
            zf.writestr(name, text)
    j = case["journeys"][1]
    legs = [
        Leg(r, a, b, dt.datetime.fromisoformat(dep), dt.datetime.fromisoformat(arr))
        for r, a, b, dep, arr in j["legs"]
    ]
    assert FareSystem.from_gtfs(z).quote(legs).amount == j["expected_amount"]


# ----------------------------------------------------------- the corpus itself


def test_corpus_size():
    assert len(CASES) >= 10
    assert sum(len(c["journeys"]) for c in CASES) >= 30


def test_case_and_journey_names_unique():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names))
    for c in CASES:
        jn = [j["name"] for j in c["journeys"]]
        assert len(jn) == len(set(jn)), c["name"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_well_formed(case):
    assert case["source"]
    assert len(case["currency"]) == 3
    for name in REQUIRED:
        assert name in case["files"], f"{case['name']}: {name} missing"
    for name, text in case["files"].items():
        rows = list(csv.reader(io.StringIO(text)))
        assert rows and rows[0], f"{name}: no header"
        width = len(rows[0])
        for i, row in enumerate(rows[1:], 2):
            assert len(row) == width, f"{case['name']}/{name} line {i}: {row}"
    stops = {r["stop_id"] for r in csv.DictReader(io.StringIO(case["files"]["stops.txt"]))}
    routes = {r["route_id"] for r in csv.DictReader(io.StringIO(case["files"]["routes.txt"]))}
    for j in case["journeys"]:
        assert ("expected_amount" in j) != ("expected_error" in j), j["name"]
        if "expected_amount" in j:
            assert isinstance(j["expected_amount"], int)
        else:
            assert j["expected_error"] == "unknown"
        assert j["legs"], j["name"]
        prev_arr = None
        for r, a, b, dep, arr in j["legs"]:
            assert r in routes and a in stops and b in stops, (j["name"], r, a, b)
            d, e = dt.datetime.fromisoformat(dep), dt.datetime.fromisoformat(arr)
            assert d.tzinfo is not None and e.tzinfo is not None
            assert d <= e, (j["name"], dep, arr)
            if prev_arr is not None:
                assert prev_arr <= d, (j["name"], "legs overlap")
            prev_arr = e
