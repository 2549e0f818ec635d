"""Alert storm: 1,000 alerts in 50 AlertManager groups within a minute, on this checkout beside the baseline.

    .venv/bin/python bench/storm.py [--alerts 1000] [--groups 50] [--waves 10] [--wave-interval 5]
                                    [--deadline 300] [--skip-baseline] [--baseline-ref 1d1959f]

Chain: POST /api/v2/alerts on a real AlertManager (group_by alertname + a `group` label with --groups values,
group_wait 1s, group_interval 5s) -> webhook -> ansible-rulebook -> playbooks -> OTOBO simulator
(scripts/labstack.py Stack). The alerts go out in --waves waves, --wave-interval seconds apart (10 x 5 s: all
within 45 s). Every alert has its own labels, so the expected result is one incident per alert.

Measured per target:
- incidents opened: tickets of the storm's alerts (expect --alerts; more means duplicates);
- playbook runs (total and peak concurrent): `ansible-playbook` processes below the daemon (a forked task
  worker is not counted: only processes whose parent is not an ansible-playbook), polled in /proc every 100 ms;
- alerts lost: alerts without a correct ticket when the deadline (from the first POST) passes;
- time until every ticket is correct: from the first POST until every alert has exactly one ticket whose IMS
  status is open (polled every 2 s);
- peak RSS: the sum of VmRSS over the daemon's process tree (ansible-rulebook and every descendant), sampled
  with the process count.

Targets: (1) this checkout: its rulebook, inventory and collection (.venv/collections); (2) the baseline,
"the rulebook as it was before issue 7": `git archive <ref>` materialised as a collection tree in a temp
directory, ANSIBLE_COLLECTIONS_PATH of that daemon pointed at it, its rulebooks/alertmanager_otobo.yml and
inventory, the OTOBO password from OTOBO_PASSWORD (that collection has no password_file) and the webhook token
from LABOPS_WEBHOOK_TOKEN (its rulebook reads that). --skip-baseline runs only this checkout.

Prints a table and writes the figures to bench/results/storm-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.labstack import REPO_ROOT, Stack, alert

BASELINE_REF = "1d1959f"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SUMMARY = re.compile(r"storm alert (\d{5})")


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- /proc sampling --------------------------------------------------------------------------


def _processes() -> dict[int, tuple[int, int, bytes, int]]:
    """pid -> (ppid, start time in ticks, cmdline, rss in bytes) of every process we can read."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()  # after "pid (comm) "
        table[int(entry.name)] = (int(fields[1]), int(fields[19]), cmdline, int(fields[21]) * PAGE_SIZE)
    return table


def _is_playbook(cmdline: bytes) -> bool:
    argv = cmdline.split(b"\0")
    return any(part.endswith(b"ansible-playbook") for part in argv[:2])


@dataclass
class Sampler:
    """Polls /proc every ``interval`` s: playbook runs below ``root`` and the RSS of root's process tree."""

    root: int
    interval: float = 0.1
    runs: set = field(default_factory=set)
    peak_concurrent: int = 0
    peak_rss: int = 0
    peak_processes: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, name="storm-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        table = _processes()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _start, _cmd, _rss) in table.items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = [], [self.root] if self.root in table else []
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, ()))
        running = 0
        for pid in tree:
            ppid, start, cmdline, _rss = table[pid]
            if _is_playbook(cmdline) and not (ppid in table and _is_playbook(table[ppid][2])):
                running += 1
                self.runs.add((pid, start))
        self.peak_concurrent = max(self.peak_concurrent, running)
        self.peak_rss = max(self.peak_rss, sum(table[pid][3] for pid in tree))
        self.peak_processes = max(self.peak_processes, len(tree))
        self.samples += 1


# -- one storm -------------------------------------------------------------------------------


@dataclass
class Result:
    target: str
    alerts: int
    groups: int
    posted_in_s: float = 0.0
    incidents_opened: int = 0
    duplicates: int = 0
    lost: int = 0
    all_correct_after_s: float | None = None
    playbook_runs: int = 0
    peak_concurrent_runs: int = 0
    peak_rss_mib: float = 0.0
    peak_processes: int = 0
    notes: list = field(default_factory=list)


def storm_alerts(count: int, groups: int, started: str) -> list[dict]:
    return [alert("StormGuestDown", {"group": f"g{index % groups:03d}", "seq": f"{index:05d}", "node": "pve03",
                                     "name": "intranet-web-01", "severity": "warning", "team": "platform"},
                  f"storm alert {index:05d}", started)
            for index in range(count)]


def ticket_view(stack: Stack) -> tuple[dict[int, int], dict[int, int]]:
    """(tickets per alert index, correct tickets per alert index); correct = IMS status open."""
    per_alert: dict[int, int] = {}
    correct: dict[int, int] = {}
    for ticket in stack.tickets():
        found = SUMMARY.search(str(ticket.get("Title", "")))
        if not found:
            continue
        index = int(found.group(1))
        per_alert[index] = per_alert.get(index, 0) + 1
        if (ticket.get("DynamicField") or {}).get("IMSStatus") == "open":
            correct[index] = correct.get(index, 0) + 1
    return per_alert, correct


def run_storm(target: str, stack: Stack, args: argparse.Namespace) -> Result:
    result = Result(target=target, alerts=args.alerts, groups=args.groups)
    with stack:
        sampler = Sampler(stack.rulebook_proc.proc.pid).start()
        try:
            alerts = storm_alerts(args.alerts, args.groups, iso(datetime.now(UTC) - timedelta(minutes=1)))
            waves = [alerts[index::args.waves] for index in range(args.waves)]
            first_post = time.monotonic()
            for number, wave in enumerate(waves):
                due = first_post + number * args.wave_interval
                time.sleep(max(0.0, due - time.monotonic()))
                stack.alertmanager.post_alerts(wave)
            result.posted_in_s = round(time.monotonic() - first_post, 1)
            print(f"[{target}] {args.alerts} alerts posted in {result.posted_in_s} s; waiting for tickets "
                  f"(deadline {args.deadline:.0f} s) ...", flush=True)
            deadline = first_post + args.deadline
            last_report = 0.0
            per_alert, correct = {}, {}
            while True:
                try:
                    per_alert, correct = ticket_view(stack)
                except OSError as exc:  # the simulator is busy; try again
                    result.notes.append(f"ticket poll failed: {exc}")
                done = sum(1 for index in range(args.alerts) if correct.get(index) == 1 and per_alert.get(index) == 1)
                now = time.monotonic()
                if done == args.alerts:
                    result.all_correct_after_s = round(now - first_post, 1)
                    break
                if now >= deadline:
                    break
                if now - last_report >= 15:
                    print(f"[{target}] t+{now - first_post:5.0f} s: {len(per_alert)} alerts with a ticket, {done} correct, "
                          f"{len(sampler.runs)} playbook runs", flush=True)
                    last_report = now
                time.sleep(2)
            result.incidents_opened = sum(per_alert.values())
            result.duplicates = sum(count - 1 for count in per_alert.values() if count > 1)
            result.lost = sum(1 for index in range(args.alerts) if not correct.get(index))
        finally:
            sampler.stop()
        result.playbook_runs = len(sampler.runs)
        result.peak_concurrent_runs = sampler.peak_concurrent
        result.peak_rss_mib = round(sampler.peak_rss / 2**20, 1)
        result.peak_processes = sampler.peak_processes
        log = stack.rulebook_proc.log_path
        result.notes.append(f"daemon log: {log}")
    return result


def current_stack(workdir: Path, args: argparse.Namespace) -> Stack:
    return Stack(workdir, group_wait="1s", group_interval="5s", repeat_interval="1h", group_by=("alertname", "group"),
                 rulebook_ready_timeout=args.rulebook_timeout)


def baseline_stack(workdir: Path, args: argparse.Namespace) -> Stack:
    """The daemon of ``args.baseline_ref``: its collection (git archive), rulebook and inventory."""
    tree = workdir.parent / "baseline-collection"
    collection = tree / "ansible_collections" / "labops" / "itsm"
    if not collection.exists():
        collection.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", args.baseline_ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(collection)], input=archive, check=True)
    return Stack(workdir, rulebook=collection / "rulebooks" / "alertmanager_otobo.yml", inventory=collection / "inventory",
                 group_wait="1s", group_interval="5s", repeat_interval="1h", group_by=("alertname", "group"),
                 rulebook_ready_timeout=args.rulebook_timeout, password_in_env=True,
                 extra_env={"ANSIBLE_COLLECTIONS_PATH": str(tree)})


def table(results: list[Result]) -> str:
    rows = [
        ("alerts / groups", lambda r: f"{r.alerts} / {r.groups}"),
        ("posted within (s)", lambda r: f"{r.posted_in_s}"),
        ("incidents opened", lambda r: f"{r.incidents_opened}"),
        ("duplicate tickets", lambda r: f"{r.duplicates}"),
        ("alerts lost at deadline", lambda r: f"{r.lost}"),
        ("all tickets correct after (s)", lambda r: "never" if r.all_correct_after_s is None else f"{r.all_correct_after_s}"),
        ("playbook runs", lambda r: f"{r.playbook_runs}"),
        ("peak concurrent runs", lambda r: f"{r.peak_concurrent_runs}"),
        ("peak RSS, daemon + children (MiB)", lambda r: f"{r.peak_rss_mib}"),
        ("peak processes in the tree", lambda r: f"{r.peak_processes}"),
    ]
    header = [""] + [r.target for r in results]
    body = [[name] + [render(r) for r in results] for name, render in rows]
    widths = [max(len(line[column]) for line in [header] + body) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in [header] + body]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=1000, help="alerts in the storm (default 1000)")
    parser.add_argument("--groups", type=int, default=50, help="AlertManager groups (values of the group label, default 50)")
    parser.add_argument("--waves", type=int, default=10, help="POSTs to AlertManager (default 10)")
    parser.add_argument("--wave-interval", type=float, default=5.0, help="seconds between the waves (default 5)")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds from the first POST until what is missing counts as lost (default 300)")
    parser.add_argument("--skip-baseline", action="store_true", help="only this checkout")
    parser.add_argument("--skip-current", action="store_true", help="only the baseline")
    parser.add_argument("--baseline-ref", default=BASELINE_REF, help=f"git ref of the baseline (default {BASELINE_REF}, before issue 7)")
    parser.add_argument("--rulebook-timeout", type=float, default=None, metavar="SECONDS", help="how long ansible-rulebook may take to start")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the work directories here (default: a temp dir, removed)")
    args = parser.parse_args()
    if args.alerts < 1 or args.groups < 1 or args.waves < 1 or args.alerts >= 100000:
        parser.error("--alerts (1..99999), --groups and --waves must be positive")

    with tempfile.TemporaryDirectory(prefix="labops-storm-") as scratch:
        base = args.workdir or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        targets = []
        if not args.skip_current:
            targets.append(("current", current_stack))
        if not args.skip_baseline:
            targets.append((f"baseline {args.baseline_ref}", baseline_stack))
        results = []
        for name, factory in targets:
            workdir = base / name.split()[0]
            print(f"== {name}: {args.alerts} alerts in {args.groups} groups, work directory {workdir}", flush=True)
            results.append(run_storm(name, factory(workdir, args), args))
        print()
        print(table(results))
        out_dir = REPO_ROOT / "bench" / "results"
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"storm-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": [asdict(r) for r in results]}, indent=2))
        print(f"\nfigures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
