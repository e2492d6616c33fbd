"""Replay a written scenario through whichever cardledger is installed, for comparing
two versions of the code in alternating runs.

    python bench/replay.py DIR [--submit]

DIR is a scenario directory the harness wrote (`cardledger bench --scenario-dir DIR`
for the city, `cardledger bench --mix --scenario-dir DIR` for the SPEND/TOPUP mix).
Only the public API is used (`cardledger.open`, `install_fares`, `install_offers`
when the scenario has an offer catalog, `apply`, `submit`,
`checkpoint`, `reserve_journeys`, `accounts`), and the files are read with msgpack
directly, so the same script runs against an older checkout's venv: run it with the
old worktree's python and with this one's, old, new, new, old..., in the same minutes.

Every batch is read before the clock starts; the setup batches are applied, then a
checkpoint and `reserve_journeys`, untimed; then the rest is timed, through `apply`
one batch at a time, or with --submit through `submit` (pipelined). It prints one JSON
line: ops/s, batch p50/p99 (apply), and digests of the result codes and the final
balances, which must be equal between the versions compared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

import msgpack
import numpy as np

import cardledger
from cardledger.fares import FareSystem


def read_batches(directory: str) -> tuple[dict, list[np.ndarray]]:
    """(manifest, every batch) of a scenario directory."""
    with open(os.path.join(directory, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest.get("op_itemsize") != cardledger.OP_DTYPE.itemsize:
        raise SystemExit(f"{directory}: written for another op layout; write it again")
    batches = []
    for entry in manifest["files"]:
        with open(os.path.join(directory, entry["name"]), "rb") as f:
            for raw in msgpack.unpackb(f.read(), raw=False):
                batches.append(np.frombuffer(raw, dtype=cardledger.OP_DTYPE).copy())
    return manifest, batches


def main(argv: list[str] | None = None) -> int:
    """Replay DIR once and print its figures as one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory", help="a scenario directory written by `cardledger bench --scenario-dir`")
    p.add_argument("--submit", action="store_true", help="time Ledger.submit (pipelined) instead of apply")
    args = p.parse_args(argv)
    manifest, batches = read_batches(args.directory)
    setup_n = int(manifest["setup_batches"])
    work = tempfile.mkdtemp(prefix="cardledger-replay-")
    try:
        led = cardledger.open(os.path.join(work, "ledger"), create=True)
        led.install_fares(FareSystem.harbin(), 0)  # (a city's taps need it; the mix ignores it)
        offers = manifest.get("offers")
        if offers is not None:  # the city's lunch hour: its offer catalog (scenario format 2)
            with open(os.path.join(args.directory, offers["name"]), "rb") as f:
                led.install_offers(cardledger.OfferCatalog.from_bytes(f.read()), offers["effective_from_us"])
        codes = hashlib.sha256()
        for ops in batches[:setup_n]:
            codes.update(led.apply(ops)["code"].tobytes())
        led.checkpoint()
        led.reserve_journeys()
        peak = batches[setup_n:]
        latencies: list[float] = []
        started = time.perf_counter()
        if args.submit:
            futures = [led.submit(ops) for ops in peak]
            for future in futures:
                codes.update(future.result()["code"].tobytes())
        else:
            for ops in peak:
                t0 = time.perf_counter()
                codes.update(led.apply(ops)["code"].tobytes())
                latencies.append(time.perf_counter() - t0)
        seconds = time.perf_counter() - started
        accounts = np.sort(led.accounts(), order="id")
        balances = hashlib.sha256(np.ascontiguousarray(accounts[["id", "cash_fen", "subsidy_fen"]]).tobytes())
        led.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lat = np.array(latencies) if latencies else np.zeros(1)
    n_ops = sum(len(b) for b in peak)
    print(json.dumps({
        "mode": "submit" if args.submit else "apply",
        "ops": n_ops,
        "ops_per_s": round(n_ops / seconds),
        "batch_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2),
        "batch_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 2),
        "codes_sha256": codes.hexdigest()[:16],
        "balances_sha256": balances.hexdigest()[:16],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
