#!/usr/bin/env python
"""What TLS costs the example gateway: the load generator against a TLS gateway and a
plain-TCP one, in alternating runs in the same minutes (loopback only).

    python examples/gateway/tls_cost.py --rounds 5 -- --clients 16 --ops 20000

Makes a CA, a server certificate and a load generator certificate in a temporary
directory (certs.py), starts `server.py` twice, each on a ledger of its own: once over
TLS with that clients file, once with --plain. Then, for each round, runs `loadgen.py`
against one and then the other (which goes first alternates between rounds), with the
loadgen arguments given after `--`. Prints every run, then the medians per transport, the
TLS/plain ratios of those medians, and the median of each round's own TLS/plain ratio,
for ops/s and latency p50/p99, as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import certs  # noqa: E402

LOADGEN_SOURCES = (1 << 32, (1 << 48) - 1)


def start_server(ledger: str, extra: list[str]) -> tuple[subprocess.Popen, int]:
    """server.py on 127.0.0.1 and a free port; returns the process and its port."""
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py"), "--ledger", ledger, "--port", "0", *extra],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, int(line.split()[2].rsplit(":", 1)[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("loadgen_args", nargs="*", help="arguments for loadgen.py (after --)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="gateway-tls-cost-") as tmp:
        ca = certs.make_ca()
        ca.write(tmp, "ca")
        certs.make_server(ca).write(tmp, "server")
        client = certs.make_client(ca, "loadgen")
        client.write(tmp, "loadgen")
        with open(os.path.join(tmp, "clients.toml"), "w") as f:
            f.write(certs.mapping_toml([("loadgen", client.fingerprint, *LOADGEN_SOURCES)]))
        j = lambda name: os.path.join(tmp, name)  # noqa: E731
        servers = {
            "tls": start_server(j("ledger-tls"), ["--cert", j("server.pem"), "--key", j("server.key"),
                                                  "--ca", j("ca.pem"), "--clients", j("clients.toml")]),
            "plain": start_server(j("ledger-plain"), ["--plain"]),
        }
        client_args = {"tls": ["--ca", j("ca.pem"), "--cert", j("loadgen.pem"), "--key", j("loadgen.key")],
                       "plain": ["--plain"]}
        runs: dict[str, list[dict]] = {"tls": [], "plain": []}
        try:
            for r in range(a.rounds):
                for mode in (("tls", "plain") if r % 2 == 0 else ("plain", "tls")):
                    out = subprocess.run(
                        [sys.executable, os.path.join(HERE, "loadgen.py"), "--port", str(servers[mode][1]),
                         "--sources", f"{LOADGEN_SOURCES[0]}:{LOADGEN_SOURCES[1]}", *client_args[mode],
                         *a.loadgen_args], check=True, capture_output=True, text=True).stdout
                    report = json.loads(out)
                    runs[mode].append(report)
                    print(json.dumps({"round": r, "transport": mode, "ops_per_s": round(report["ops_per_s"]),
                                      "latency_ms_p50": round(report["latency_ms_p50"], 3),
                                      "latency_ms_p99": round(report["latency_ms_p99"], 3)}), flush=True)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(30)
    med = {mode: {key: statistics.median(run[key] for run in rs)
                  for key in ("ops_per_s", "latency_ms_p50", "latency_ms_p99")} for mode, rs in runs.items()}
    print(json.dumps({
        "loadgen_args": a.loadgen_args, "rounds": a.rounds, "loop": runs["tls"][0]["loop"],
        "median": {mode: {k: round(v, 3) for k, v in m.items()} for mode, m in med.items()},
        "tls_over_plain": {k: round(med["tls"][k] / med["plain"][k], 3) for k in med["tls"]},
        # Each round's TLS run against its own plain run, the median of those ratios:
        # less exposed to the machine's drift between rounds than the ratio of medians.
        "tls_over_plain_pairs_median": {
            k: round(statistics.median(t[k] / p[k] for t, p in zip(runs["tls"], runs["plain"])), 3)
            for k in med["tls"]},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
