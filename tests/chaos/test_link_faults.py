"""Delay, loss and stalls on the Raft peer links through the harness's TCP
proxy (`slow-link`, `lossy-link`, `stall-link`; no sch_netem needed): a
30-second `raftcache-chaos run` with only those faults on a real three-node
cluster must pass, and must show that the proxy really carried the peer
traffic and that the faults really acted on it: the run's note counts the
relayed connections and bytes, lossy-link broke connections (more than the
six a quiet cluster opens), and slow-link made the cluster slower (fewer
acknowledged operations per second or a higher median latency than outside
the faults).

Needs what test_campaign.py needs (root, iproute2, iptables, the binaries);
missing any of them fails the test, never skips it.
"""

from __future__ import annotations

import json
import re
import statistics

from test_campaign import _run

SEED = 29


def test_slow_lossy_and_stalled_peer_links(binaries, tmp_path):
    node, chaos = binaries
    out = tmp_path / "links"
    cmd = [chaos, "run", "--bin", node, "--out", str(out), "--seed", str(SEED),
           "--time", "30", "--faults", "link", "--interval", "3", "--fault-duration", "3",
           "--workloads", "register,counter,lock"]
    proc, took = _run(cmd, 300)
    report = (f"$ {' '.join(cmd)}\n(exit {proc.returncode} after {took:.0f}s)\n"
              f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-6000:]}")
    assert proc.returncode == 0, report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "valid" and summary["findings"] == [], report
    assert summary["convergence"]["result"] == "agree", report
    assert {f["fault"] for f in summary["faults"]} == {"slow-link", "lossy-link", "stall-link"}

    relayed = [re.search(r"relayed (\d+) peer connections, (\d+) bytes", n)
               for n in summary["notes"]]
    relayed = [m for m in relayed if m]
    assert relayed, f"no note of what the proxies relayed: {summary['notes']}"
    conns, nbytes = int(relayed[0].group(1)), int(relayed[0].group(2))
    assert nbytes > 100_000, f"the proxies passed on only {nbytes} bytes"
    assert conns > 6, f"lossy-link broke no connection ({conns} relayed)"

    ops, windows = [], {}
    for line in (out / "history.jsonl").read_text().splitlines():
        item = json.loads(line)
        if "nemesis" not in item:
            ops.append(item)
        elif item["phase"] == "start":
            windows.setdefault(item["nemesis"], []).append([item["time"], None])
        elif item["phase"] == "end":
            windows[item["nemesis"]][-1][1] = item["time"]
    ok = [o for o in ops if o["outcome"] == "ok" and o.get("complete")]

    def inside(o, spans, margin=0):
        return any(a - margin <= o["complete"] <= b + margin for a, b in spans)

    every = [w for spans in windows.values() for w in spans]
    quiet = [o for o in ok if not inside(o, every, 1_000_000_000)]
    quiet_s = (summary["workload_s"] - sum((b - a) / 1e9 + 2 for a, b in every))
    slow = [o for o in ok if inside(o, windows["slow-link"])]
    slow_s = sum((b - a) / 1e9 for a, b in windows["slow-link"])
    lat = lambda os: statistics.median(o["complete"] - o["invoke"] for o in os)  # noqa: E731
    rate_quiet, rate_slow = len(quiet) / quiet_s, len(slow) / slow_s
    slower = rate_slow < 0.5 * rate_quiet or (slow and lat(slow) > 3 * lat(quiet))
    assert slower, (f"slow-link changed nothing: {rate_slow:.0f} ok/s vs {rate_quiet:.0f} "
                    f"quiet, median {lat(slow) if slow else 0} ns vs {lat(quiet)} ns")
