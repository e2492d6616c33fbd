"""The benchmark harness: workloads deterministic, engines agreeing, reports well-formed.

These check correctness only (a small city, a small mix); speed is measured by
`cardledger bench`. The baselines' semantics: test_benchmark_baselines.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cardledger
from cardledger import IMPLEMENTATION, OpKind, Result, TapType
from cardledger.benchmark import baselines, runner, scenario, workloads

CARDS = 400


@pytest.fixture(scope="module")
def city() -> scenario.Scenario:
    return scenario.generate(CARDS, seed=5)


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not(city):
    """generate() is a pure function of (cards, seed)."""
    again = scenario.generate(CARDS, seed=5)
    assert [b.tobytes() for b in city.batches] == [b.tobytes() for b in again.batches]
    other = scenario.generate(CARDS, seed=6)
    assert [b.tobytes() for b in city.batches] != [b.tobytes() for b in other.batches]


def test_written_batches_read_back_byte_for_byte(city, tmp_path):
    """write() then read() returns the same batches; a damaged file is refused."""
    manifest = scenario.write(tmp_path, city)
    assert manifest["ops"] == city.ops
    _, batches = scenario.read(tmp_path)
    assert [b.tobytes() for b in batches] == [b.tobytes() for b in city.batches]
    f = tmp_path / manifest["files"][0]["name"]
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        list(scenario.read(tmp_path)[1])


def test_the_scenario_has_what_the_city_needs(city):
    """Taps of every kind, late uploads (out-of-order seqs), resent duplicates, aid, top-ups, lost cards."""
    peak = np.concatenate(city.batches[city.setup_batches :])
    taps = peak[peak["kind"] == OpKind.TAP]
    assert set(np.unique(taps["tap"]).tolist()) == {TapType.BOARD, TapType.ENTRY, TapType.EXIT}
    assert (taps["amount_fen"] > 0).any()  # metered taxi rides
    ids = taps[["source", "seq"]]
    assert len(np.unique(ids)) == len(taps) - city.counts["duplicate_taps"]
    assert city.counts["late_taps"] > 0
    assert (peak["kind"] == OpKind.AID).sum() == city.counts["aid_lines"] == CARDS // 10
    assert (peak["kind"] == OpKind.REPLACE).sum() == city.counts["lost_cards"] >= 1
    times = peak["time_us"]
    assert (times[:-1] > times[1:]).any()  # late uploads arrive after later events


def test_the_lunch_hour_has_purchases_refunds_and_offers_that_run_out(city, tmp_path):
    """The city's lunch hour (its own phase, after the peak): PURCHASEs by about 30% of
    cards at the merchants, from 11:30 to 13:30, a few partial REFUNDs of them, and an
    offer catalog stored with the scenario whose capped campaign's budget runs out."""
    assert [name for name, _ in city.phases] == ["peak", "lunch"]
    assert city.setup_batches + sum(n for _, n in city.phases) == len(city.batches)
    lunch = np.concatenate(city.batches[len(city.batches) - city.phases[-1][1] :])
    buys = lunch[lunch["kind"] == OpKind.PURCHASE]
    refunds = lunch[lunch["kind"] == OpKind.REFUND]
    assert len(buys) == city.counts["purchases"] and len(refunds) == city.counts["refunds"] > 0
    assert 0.3 * CARDS <= len(buys) <= 0.6 * CARDS and len(np.unique(buys["account_id"])) == int(0.3 * CARDS)
    assert ((buys["time_us"] >= scenario.LUNCH_START_US) & (buys["time_us"] < scenario.LUNCH_END_US)).all()
    assert ((buys["amount_fen"] >= 500) & (buys["amount_fen"] <= 15_000)).all()
    bought = {(s, q): g for s, q, g in buys[["source", "seq", "amount_fen"]].tolist()}
    for s, q, part in refunds[["ref_source", "ref_seq", "amount_fen"]].tolist():
        assert 0 < part < bought[(s, q)]  # partial refunds of purchases of the scenario
    manifest = scenario.write(tmp_path, city)
    assert manifest["format"] == scenario.SCENARIO_FORMAT and manifest["phases"] == [list(p) for p in city.phases]
    catalog, start = scenario.read_offers(tmp_path, manifest)
    assert catalog.to_bytes() == city.offers and start == scenario.OFFERS_FROM_US <= scenario.SETUP_US
    assert any(o.hours == ((11 * 60, 14 * 60),) for o in catalog.offers)
    led = cardledger.open(tmp_path / "ledger", create=True)
    led.install_offers(catalog, start)
    codes = []
    for ops in city.batches:
        r = led.apply(ops)
        codes += r["code"][(ops["kind"] == OpKind.PURCHASE) | (ops["kind"] == OpKind.REFUND)].tolist()
    assert codes.count(Result.OK) > len(buys) // 2
    report = led.offer_report()
    # the capped campaign ran out: what is left is less than one full discount (满100减15)
    assert report["city-100-15"].purchases > 0 and report["city-100-15"].budget_left_fen < 1_500
    assert report["lunch-catering"].purchases > 0 and report["city-weekday"].union_fen > 0


def test_the_baselines_end_with_the_ledgers_results_and_balances(city, tmp_path):
    """Both baselines (fares rated by the pure-Python evaluator, purchases decided by the
    reference's handlers against their own offer rows) agree with the ledger, op by op,
    the lunch hour's PURCHASEs and REFUNDs (discounts, union shares, budgets) included."""
    catalog = cardledger.OfferCatalog.from_bytes(city.offers)
    led = cardledger.open(tmp_path / "ledger", create=True)
    bases = [baselines.SqliteBaseline(tmp_path / "sqlite"), baselines.LmdbBaseline(tmp_path / "lmdb")]
    for x in (led, *bases):
        x.install_offers(catalog, city.offers_from_us)
    discounted = 0
    fields = ["code", "discounts", "amount_fen", "balance_fen"]
    codes: set[int] = set()
    for ops in city.batches:
        want = led.apply(ops)
        for b in bases:
            got = b.apply(ops)
            assert np.array_equal(got[fields], want[fields])
        codes.update(np.unique(want["code"]).tolist())
        discounted += int(((ops["kind"] == OpKind.PURCHASE) & (want["code"] == Result.OK) & (want["discounts"] > 0)).sum())
    assert discounted > 0
    journal = led.journal()
    acc = np.sort(led.accounts(), order="id")
    for b in bases:
        bal = b.balances()
        assert np.array_equal(bal["id"], acc["id"])
        assert np.array_equal(bal["cash_fen"], acc["cash_fen"])
        assert np.array_equal(bal["subsidy_fen"], acc["subsidy_fen"])
        assert b.journal().tobytes() == journal.tobytes()
        b.close()
    assert led.verify().ok
    assert codes <= {Result.OK, Result.EXISTS, Result.ACCOUNT_FROZEN, Result.ACCOUNT_CLOSED, Result.INSUFFICIENT_FUNDS,
                     Result.PURCHASE_NOT_FOUND}  # fmt: skip


def test_the_runner_reports_every_engine_agreeing(tmp_path):
    """`cardledger bench` on a tiny city: a JSON report with every figure, balances agree, exit 0.

    The report goes into a folder that does not exist yet: the runner makes it before the run."""
    out = tmp_path / "reports" / "today" / "report.json"
    cmd = [sys.executable, "-m", "cardledger.cli", "bench", "--cards", "200", "--scenario-dir",
           str(tmp_path / "scen"), "--json", str(out), "--png", ""]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["balances_agree"] and report["results_agree"]
    assert [r["engine"] for r in report["engines"]] == list(runner.ENGINES)
    for r in report["engines"]:
        for key in ("ops_per_s", "taps_per_s", "batch_p50_ms", "batch_p99_ms", "peak_rss_bytes", "disk_bytes_per_op"):
            assert r[key] > 0, key
        peak_batches = report["scenario"]["batches"] - report["scenario"]["setup_batches"]
        assert len(r["batch_ms"]) == peak_batches and max(r["batch_ms"]) == round(r["batch_max_ms"], 3)
        # the morning peak and the lunch hour, each with its own figures
        assert list(r["phases"]) == ["peak", "lunch"]
        assert sum(p["ops"] for p in r["phases"].values()) == r["peak_ops"]
        assert r["phases"]["lunch"]["purchases_refunds"] > 0 and r["phases"]["lunch"]["ops_per_s"] > 0
    assert set(report["phases"]["lunch"]) == set(runner.ENGINES) - {"core"}


def test_the_core_through_submit_replays_the_city_as_through_apply(tmp_path):
    """--engines core,core-submit: the pipelined replay gives the same results and balances."""
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "cardledger.cli", "bench", "--cards", "300", "--engines", "core,core-submit",
           "--scenario-dir", str(tmp_path / "scen"), "--json", str(out), "--png", ""]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert [r["engine"] for r in report["engines"]] == ["core", "core-submit"]
    assert report["balances_agree"] and report["results_agree"]
    assert report["engines"][1]["peak_taps"] == report["engines"][0]["peak_taps"] > 0


@pytest.mark.parametrize("mode", [[], ["--no-pipeline"]])
def test_the_tigerbeetle_workload_moves_every_transfer(tmp_path, mode):
    """--tigerbeetle: raw TRANSFERs among CLEARING accounts all succeed and are counted,
    pipelined through submit or one apply at a time."""
    out = tmp_path / "tb.json"
    code = runner.main(["--tigerbeetle", "100", "--transfers", "20000", "--json", str(out), *mode])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["transfers"] == 20000 and report["transfers_per_s"] > 0
    assert report["through"] == ("Ledger.apply" if mode else "Ledger.submit (pipelined)")


@pytest.mark.skipif(IMPLEMENTATION != "cython", reason="the script measures the Cython core's engine")
def test_the_engine_alone_script_replays_the_peak(city, tmp_path):
    """bench/bench_city_engine.py runs on a written scenario: it reports the peak's ops/s
    and batch latencies, and with --setup-only stops before the peak."""
    scenario.write(tmp_path, city)
    script = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "bench_city_engine.py")
    out = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("engine alone: ") and "peak ops/s" in out.stdout and "p99" in out.stdout
    quiet = subprocess.run([sys.executable, script, str(tmp_path), "--setup-only"], capture_output=True, text=True,
                           check=True)
    assert quiet.stdout == ""


def test_a_scenario_dir_holding_another_city_than_asked_for_is_refused(tmp_path, capsys):
    """--scenario-dir is reused as it is: a --cards or --seed it does not hold exits 2
    with a message, and runs nothing (no report written)."""
    scen = tmp_path / "scen"
    scenario.write(scen, scenario.generate(200, 7))
    out = tmp_path / "report.json"
    for asked in (["--cards", "300"], ["--seed", "8"]):
        code = runner.main([*asked, "--scenario-dir", str(scen), "--engines", "core", "--json", str(out), "--png", ""])
        assert code == 2
        assert "holds a scenario with" in capsys.readouterr().err
    assert not out.exists()


def test_the_mix_is_the_same_ops_whatever_the_batch_size():
    """mix_batches cuts one stream: another batch size gives the same ops in the same order."""
    a = np.concatenate(list(workloads.mix_batches(300, 5_000, 1_000, seed=4)))
    b = np.concatenate(list(workloads.mix_batches(300, 5_000, 777, seed=4)))
    assert a.tobytes() == b.tobytes()
    ids = a[["source", "seq"]]
    assert len(np.unique(ids)) == len(a)
    assert set(np.unique(a["kind"]).tolist()) == {OpKind.SPEND, OpKind.TOPUP}


def test_the_tigerbeetle_transfers_never_move_money_to_their_own_account():
    ops = np.concatenate(list(workloads.tigerbeetle_transfers(3, 20_000, seed=1)))
    assert len(ops) == 20_000 and (ops["account_id"] != ops["counterparty_id"]).all()
    assert set(np.unique(ops["account_id"]).tolist()) == {1, 2, 3}
    assert 1 <= ops["amount_fen"].min() and ops["amount_fen"].max() <= workloads.TB_AMOUNT_MAX_FEN


def test_the_mix_runs_the_baselines_on_a_prefix_and_compares_there(tmp_path):
    """--mix: the baselines stop after --baseline-ops (whole batches), the core runs on; every
    engine agrees at the prefix, the ratios compare the same ops, and no \\r reaches a pipe."""
    out = tmp_path / "mix.json"
    cmd = [sys.executable, "-m", "cardledger.cli", "bench", "--mix", "--cards", "500", "--ops", "6000",
           "--batch", "1000", "--baseline-ops", "2500", "--scenario-dir", str(tmp_path / "scen"),
           "--json", str(out), "--png", ""]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\r" not in done.stderr and "batches" in done.stderr
    report = json.loads(out.read_text())
    assert report["balances_agree"] and report["results_agree"] and report["double_entry"]
    rows = {r["engine"]: r for r in report["engines"]}
    assert list(rows) == list(runner.MIX_ENGINES)
    for name, r in rows.items():
        assert r["compared"]["peak_ops"] == 3000  # 2,500 rounded up to whole batches
        assert r["peak_ops"] == (6000 if name in runner.FULL_RUN_ENGINES else 3000)
        assert r["prefix_only"] == (name not in runner.FULL_RUN_ENGINES)
        assert len(r["batch_ms"]) == r["peak_ops"] // 1000 and r["disk_bytes_per_op"] > 0
    assert set(report["ratios"]) >= {"core/sqlite", "core/lmdb", "core-submit/sqlite", "core-submit/lmdb"}
    assert report["ratios"]["core/sqlite"] == pytest.approx(rows["sqlite"]["core_speedup"])


def test_the_progress_bar_draws_frames_only_on_a_terminal(monkeypatch, capsys):
    """On a terminal the bar is redrawn in place; anywhere else, plain lines (a tenth each)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    for done in range(1, 21):
        runner._progress("core", done, 20, 0.0)
    err = capsys.readouterr().err
    assert "\r" not in err and len(err.splitlines()) == runner.PROGRESS_LINES
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    runner._progress("core", 1, 2, 0.0)
    runner._progress("core", 2, 2, 0.0)
    err = capsys.readouterr().err
    assert err.count("\r") == 2 and err.endswith("\n")


@pytest.mark.parametrize("argv", [["--cards", "0"], ["--cards", "-5"], ["--engines", "core,nope"],
                                  ["--mix", "--ops", "0"], ["--mix", "--batch", "0"], ["--tigerbeetle", "1"],
                                  ["--baseline-ops", "0"], ["--mix", "--tigerbeetle", "10"]])  # fmt: skip
def test_a_command_line_no_run_can_satisfy_is_one_line_and_exit_2(argv, tmp_path):
    """`cardledger bench --cards 0` and the like: one line on stderr, exit status 2, no traceback."""
    done = subprocess.run([sys.executable, "-m", "cardledger.cli", "bench", *argv, "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("cardledger bench: ")


def test_a_replay_across_many_batch_files_gives_every_engine_the_same_digests(tmp_path, monkeypatch):
    """Batches spread over many files (the clock stops while each loads, the pipeline
    drained first): core, core-submit and a baseline, stopped at a prefix, still agree."""
    monkeypatch.setattr(scenario, "FILE_BATCHES", 3)
    manifest = scenario.write(tmp_path / "scen", workloads.mix_scenario(200, 12_000, 500, seed=2))
    assert len(manifest["files"]) > 4
    rows = {e: runner.run_child(e, str(tmp_path / "scen"), str(tmp_path / "work"), prefix_batches=9)
            for e in ("core", "core-submit", "sqlite")}  # fmt: skip
    assert len({r["results_crc32"] for r in rows.values()}) == 1
    assert len({r["balances_sha256"] for r in rows.values()}) == 1
    assert rows["core-submit"]["peak_ops"] == rows["core"]["peak_ops"] == 12_000
    assert rows["sqlite"]["peak_ops"] == rows["core"]["compared"]["peak_ops"] == 4_500
    assert rows["core-submit"]["peak_s"] > 0 and rows["core"]["total_fen"] == 0


def test_the_public_replay_script_gives_the_same_codes_and_balances_applied_or_submitted(tmp_path):
    """bench/replay.py (for comparing versions) replays a written scenario with the
    public API only: through apply and through submit it ends with the same result
    codes and balances."""
    from cardledger.benchmark import scenario as scenario_mod
    from cardledger.benchmark import workloads

    directory = tmp_path / "mix"
    scenario_mod.write(directory, workloads.mix_scenario(2_000, 20_000, 4_096, 3))
    script = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "replay.py")
    runs = [json.loads(subprocess.run([sys.executable, script, str(directory), *flag], check=True,
                                      capture_output=True, text=True).stdout)
            for flag in ([], ["--submit"])]
    assert runs[0]["ops"] == runs[1]["ops"] == 20_000
    assert runs[0]["codes_sha256"] == runs[1]["codes_sha256"]
    assert runs[0]["balances_sha256"] == runs[1]["balances_sha256"]


def test_generated_scenarios_are_kept_in_the_user_cache_directory_not_the_system_temp(monkeypatch, tmp_path):
    from cardledger.benchmark import runner

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runner.cache_dir() == str(tmp_path / "xdg" / "cardledger")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runner.cache_dir() == str(tmp_path / "home" / ".cache" / "cardledger")


def test_a_cached_scenario_of_an_older_format_is_generated_again_not_misread(monkeypatch, tmp_path, capsys):
    """The cache's copy of a city written by an older scenario format (no lunch hour, no
    offer catalog) is generated again; a --scenario-dir of the user's in an older format
    is refused (exit 2) and left as it is."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cached = os.path.join(runner.cache_dir(), "cardledger-scenario-200-7")
    scenario.write(cached, scenario.generate(200, 7))
    manifest_path = os.path.join(cached, "manifest.json")
    with open(manifest_path) as f:
        old = json.load(f)
    old["format"] = scenario.SCENARIO_FORMAT - 1
    with open(manifest_path, "w") as f:
        json.dump(old, f)
    out = tmp_path / "report.json"
    code = runner.main(["--cards", "200", "--seed", "7", "--engines", "core", "--json", str(out), "--png", ""])
    assert code == 0
    assert "generating it again" in capsys.readouterr().out
    manifest, _ = scenario.read(cached)
    assert manifest["format"] == scenario.SCENARIO_FORMAT and manifest["counts"]["purchases"] > 0
    with open(manifest_path, "w") as f:
        json.dump(old, f)
    code = runner.main(["--scenario-dir", cached, "--engines", "core", "--json", str(out), "--png", ""])
    assert code == 2 and "another version" in capsys.readouterr().err
    with open(manifest_path) as f:
        assert json.load(f)["format"] == scenario.SCENARIO_FORMAT - 1
