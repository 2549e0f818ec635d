"""Alert-to-ticket latency through the real chain, beside the floor of a no-op playbook.

    .venv/bin/python bench/latency.py [--alerts 50] [--floor-runs 7]

Chain: POST /api/v2/alerts on a real AlertManager (group_wait 0s, one group per alert)
-> webhook -> ansible-rulebook with rulebooks/alertmanager_itsm.yml -> incident_open
playbook -> otobo_ticket -> OTOBO simulator. Latency = from the POST to AlertManager until
the ticket (with its first article) is visible in the simulator, polled every 20 ms.
Alerts are sent one at a time so each figure is a latency, not a queueing time.

Floor: wall time of `ansible-playbook` running a playbook with one no-op task on this
machine, in the same run. Target (issue 7): p50 within 1.25x the floor.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.labstack import Stack, alert

NOOP_PLAYBOOK = """\
- name: No-op floor
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Nothing
      ansible.builtin.meta: noop
"""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def noop_floor(runs: int, workdir: Path) -> list[float]:
    playbook = workdir / "noop.yml"
    playbook.write_text(NOOP_PLAYBOOK)
    binary = Path(sys.executable).parent / "ansible-playbook"
    timings = []
    for _run in range(runs):
        start = time.perf_counter()
        subprocess.run([str(binary), "-i", "localhost,", str(playbook)], check=True, stdout=subprocess.DEVNULL)
        timings.append(time.perf_counter() - start)
    return timings


def measure_chain(count: int, workdir: Path) -> list[float]:
    latencies = []
    # One AlertManager group per alert (grouped by the unique `seq` label) with no group_wait.
    stack = Stack(workdir, group_wait="0s", group_interval="10s")
    with stack:
        stack.alertmanager.group_by = ("alertname", "seq")
        stack.alertmanager.stop()
        stack.alertmanager.start()
        for seq in range(count):
            started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            body = alert("BenchGuestDown", {"seq": str(seq), "node": "pve03", "name": "intranet-web-01", "severity": "warning",
                                            "team": "platform"}, f"bench alert {seq}", started)
            t0 = time.perf_counter()
            stack.alertmanager.post_alerts([body])
            marker = f"bench alert {seq} ["
            while True:
                tickets = [t for t in stack.tickets() if marker in t["Title"] and t["Article"]]
                if tickets:
                    latencies.append(time.perf_counter() - t0)
                    break
                if time.perf_counter() - t0 > 120:
                    raise TimeoutError(f"alert {seq}: no ticket after 120 s (see {workdir}/ansible-rulebook.log)")
                time.sleep(0.02)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--floor-runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labops-bench-") as tmp:
        workdir = Path(tmp)
        floor = noop_floor(args.floor_runs, workdir)
        chain = measure_chain(args.alerts, workdir / "stack")
        floor_after = noop_floor(args.floor_runs, workdir)
    floor_all = floor + floor_after
    floor_p50 = statistics.median(floor_all)
    p50, p95 = percentile(chain, 50), percentile(chain, 95)
    print("\nalert-to-ticket latency (real AlertManager -> ansible-rulebook -> playbook -> OTOBO simulator)")
    print(f"{'measure':<40}{'p50 s':>10}{'p95 s':>10}{'min s':>10}{'max s':>10}{'n':>6}")
    print(f"{'no-op ansible-playbook (floor)':<40}{floor_p50:>10.3f}{percentile(floor_all, 95):>10.3f}"
          f"{min(floor_all):>10.3f}{max(floor_all):>10.3f}{len(floor_all):>6}")
    print(f"{'alert -> ticket':<40}{p50:>10.3f}{p95:>10.3f}{min(chain):>10.3f}{max(chain):>10.3f}{len(chain):>6}")
    ratio = p50 / floor_p50
    print(f"\np50 / floor = {ratio:.2f}x (target <= 1.25x): {'met' if ratio <= 1.25 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
