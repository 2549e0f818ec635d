"""Ingest benchmark: labops.itsm.alertmanager versus the rule engine's own ceiling.

Two runs of real ansible-rulebook with identical rules (bench/eda/ingest_*.yml): one rule
matches every alert (action ``none``), a ``debug`` rule marks the first alert and a ``shutdown``
rule the last one.

* ceiling: bench/eda/generator.py puts prebuilt events on the queue as fast as the engine takes
  them. The events are produced by the real source code from the very payloads of the second run,
  so both runs hand the engine the same events.
* source: labops.itsm.alertmanager with token auth and full validation, fed over HTTP by a local
  load generator (aiohttp, several keep-alive connections, AlertManager-shaped notifications).
  503 answers are retried like AlertManager would.

Throughput = events from the first to the last marker / time between the two action banners
ansible-rulebook prints (same clock, same definition in both runs). The Drools session statistics
(``rulesTriggered``) prove every alert matched a rule.

Usage: .venv/bin/python bench/ingest.py [--alerts 20000] [--batch 100] [--connections 4] [--repeat 3]

``--validation-only`` skips the rulebook runs and times just the source's per-request work in this
process (strict body decoding + validation + event building, ``decode_body`` + ``build_events``) on
the same payloads, written the way AlertManager writes them (Go escapes ``&`` as ``\\u0026``); the
best of ``--repeat`` rounds. It is far less noisy than the end-to-end runs on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import re
import runpy
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
BENCH_EDA = ROOT / "bench" / "eda"
SOURCE_FILE = ROOT / "extensions" / "eda" / "plugins" / "event_source" / "alertmanager.py"
RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-token-0123456789abcdef"
BANNER = re.compile(r"^\*\* (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+) \[(debug|ruleset)\]")
STATS = re.compile(r"rulesTriggered=(\d+), eventsProcessed=(\d+), eventsMatched=(\d+)")
RUN_TIMEOUT = 600.0


# --------------------------------------------------------------------------- payloads


def alert(index: int, mark: str, shape: str, starts_at: str) -> dict[str, Any]:
    """One AlertManager alert; ``contract`` mirrors the size of the contract's sample alerts."""
    labels = {"alertname": "BenchGuestDown", "cluster": "bench", "instance": f"node{index % 500:03d}.bench.example.net:9221", "bench_mark": mark}
    annotations = {"summary": f"guest {index} is down"}
    if shape == "contract":
        labels.update(
            {"id": f"qemu/{index}", "job": "pve-exporter", "name": f"guest-{index:06d}", "node": f"pve{index % 7:02d}"}
            | {"service_id": "svc-bench", "severity": "critical", "team": "platform"}
        )
        annotations.update(
            {
                "description": f"Guest guest-{index:06d} (qemu/{index}) is not running although onboot=1.",
                "runbook_url": "https://runbooks.example.net/proxmox/guest-down",
            }
        )
    return {
        "status": "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.bench.example.net:9090/graph?g0.expr=pve_up%7Bid%3D~%22qemu%2F.%2B%22%7D%20%3D%3D%200\u0026g0.tab=1",
        "fingerprint": hashlib.blake2b(json.dumps(labels, sort_keys=True).encode(), digest_size=8).hexdigest(),
    }


def notification(alerts: list[dict[str, Any]], number: int) -> dict[str, Any]:
    """A version 4 webhook body around ``alerts`` (AlertManager 0.34 shape)."""
    group_labels = {"alertname": "BenchGuestDown", "cluster": "bench"}
    return {
        "receiver": "eda-itsm",
        "status": "firing",
        "alerts": alerts,
        "notification_reason": "new alerts added",
        "groupLabels": group_labels,
        "commonLabels": dict(group_labels, job="pve-exporter"),
        "commonAnnotations": {"runbook_url": "https://runbooks.example.net/proxmox/guest-down"},
        "routeLabels": {},
        "externalURL": "http://alertmanager.bench.example.net:9093",
        "version": "4",
        "groupKey": f'{{}}/{{team="platform"}}:{{alertname="BenchGuestDown", cluster="bench", shard="{number}"}}',
        "truncatedAlerts": 0,
    }


def build_notifications(count: int, batch: int, shape: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The start marker, ``count`` load alerts in notifications of ``batch``, the end marker."""
    starts_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    first = notification([alert(0, "first", shape, starts_at)], 0)
    load = [
        notification([alert(index, "none", shape, starts_at) for index in range(start, min(start + batch, count + 1))], start)
        for start in range(1, count + 1, batch)
    ]
    last = notification([alert(count + 1, "last", shape, starts_at)], count + 1)
    return first, load, last


# --------------------------------------------------------------------------- rulebook runs


@dataclass
class RunResult:
    """What one rulebook run observed."""

    name: str
    events: int
    seconds: float = 0.0
    rules_triggered: int = -1
    events_processed: int = -1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Events per second between the two markers."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


class Rulebook:
    """An ansible-rulebook subprocess whose output is scanned for banners and session stats."""

    def __init__(self, rulebook: Path, env: dict[str, str], workdir: Path, source_dir: Path | None) -> None:
        venv_bin = Path(sys.executable).parent
        env_vars = ",".join(sorted(name for name in env if name.startswith("BENCH_")))
        cmd = [str(venv_bin / "ansible-rulebook"), "--rulebook", str(rulebook), "-i", str(workdir / "inventory.yml"), "-v", "--env-vars", env_vars]
        if source_dir is not None:
            cmd += ["-S", str(source_dir)]
        (workdir / "inventory.yml").write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n", encoding="utf-8")
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
        full_env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(Path(sys.prefix) / "collections"))
        self.proc = subprocess.Popen(cmd, env=full_env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.banners: dict[str, datetime.datetime] = {}
        self.stats: tuple[int, int] = (-1, -1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        previous: re.Match[str] | None = None
        for line in self.proc.stdout:
            self.lines.append(line)
            if previous is not None and line.strip() in ("BENCH_FIRST",) and "first" not in self.banners:
                self.banners["first"] = datetime.datetime.strptime(previous.group(1), "%Y-%m-%d %H:%M:%S.%f")
            if previous is not None and "BENCH_LAST" in line and "last" not in self.banners:
                self.banners["last"] = datetime.datetime.strptime(previous.group(1), "%Y-%m-%d %H:%M:%S.%f")
            stats = STATS.search(line)
            if stats:
                self.stats = (int(stats.group(1)), int(stats.group(2)))
            previous = BANNER.match(line) or (previous if not line.strip() else None)

    def wait(self, timeout: float) -> int:
        """Wait for exit (kill after ``timeout``) and for the reader to drain the output."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reader.join(10)
        return code

    def result(self, name: str, events: int) -> RunResult:
        """Turn banners and stats into a RunResult, or fail loudly with the output tail."""
        if "first" not in self.banners or "last" not in self.banners:
            tail = "".join(self.lines[-40:])
            raise RuntimeError(f"{name}: markers not seen in ansible-rulebook output:\n{tail}")
        seconds = (self.banners["last"] - self.banners["first"]).total_seconds()
        return RunResult(name, events, seconds, self.stats[0], self.stats[1])


def run_ceiling(first: dict[str, Any], load: list[dict[str, Any]], last: dict[str, Any], workdir: Path) -> RunResult:
    """Rule engine ceiling: the generator source emits the source's own events for these payloads."""
    source = runpy.run_path(str(SOURCE_FILE))
    config = source["parse_config"]({})
    events = [event for body in [first, *load, last] for event in source["build_events"](body, config)]
    events_file = workdir / "events.jsonl"
    events_file.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
    rulebook = Rulebook(BENCH_EDA / "ingest_ceiling.yml", {"BENCH_EVENTS_FILE": str(events_file)}, workdir, BENCH_EDA)
    code = rulebook.wait(RUN_TIMEOUT)
    result = rulebook.result("ceiling: generator source", len(events) - 1)
    result.extra["exit_code"] = code
    return result


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LoadStats:
    """Client-side view of the HTTP load."""

    accepted: int = 0
    retries: int = 0
    latencies: list[float] = field(default_factory=list)


async def post(session: aiohttp.ClientSession, url: str, body: bytes, stats: LoadStats) -> None:
    """POST until 200; 503 is retried after a short pause like AlertManager does."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    while True:
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as resp:
            answer = await resp.json()
        if resp.status == 200:
            stats.latencies.append(time.perf_counter() - started)
            stats.accepted += answer["accepted"]
            return
        if resp.status != 503:
            raise RuntimeError(f"source answered {resp.status}: {answer}")
        stats.retries += 1
        await asyncio.sleep(0.05)


async def wait_health(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Poll the health endpoint until the source listens."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the alertmanager source did not come up")


async def drive(url: str, first: bytes, load: list[bytes], last: bytes, connections: int) -> tuple[LoadStats, float]:
    """Start marker, then the load over ``connections`` concurrent keep-alive connections, then end marker."""
    stats = LoadStats()
    pending = iter(load)

    async def worker(session: aiohttp.ClientSession) -> None:
        for body in pending:
            await post(session, url, body, stats)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        await post(session, url, first, stats)
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _worker in range(connections)))
        await post(session, url, last, stats)
        elapsed = time.perf_counter() - started
    return stats, elapsed


def run_source(first: dict[str, Any], load: list[dict[str, Any]], last: dict[str, Any], workdir: Path, connections: int) -> RunResult:
    """labops.itsm.alertmanager with token auth, fed over HTTP."""
    port = free_port()
    rulebook = Rulebook(BENCH_EDA / "ingest_source.yml", {"BENCH_PORT": str(port), "BENCH_TOKEN": TOKEN}, workdir, None)
    url = f"http://127.0.0.1:{port}/alertmanager"
    bodies = [json.dumps(body).encode() for body in load]
    try:
        asyncio.run(wait_health(url + "/health", rulebook.proc, 120))
        stats, elapsed = asyncio.run(drive(url, json.dumps(first).encode(), bodies, json.dumps(last).encode(), connections))
    except BaseException:
        rulebook.proc.kill()
        rulebook.wait(10)
        raise
    code = rulebook.wait(RUN_TIMEOUT)
    events = sum(len(body["alerts"]) for body in load) + 1
    result = rulebook.result(f"source: labops.itsm.alertmanager ({connections} conns, token auth)", events)
    latencies = sorted(stats.latencies)
    result.extra.update(
        {
            "exit_code": code,
            "http_accepted": stats.accepted,
            "http_retries_503": stats.retries,
            "http_alerts_per_s": round(events / elapsed, 1),
            "request_latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
            "request_latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        }
    )
    return result


# --------------------------------------------------------------------------- report


def median_run(runs: list[RunResult]) -> RunResult:
    """The run with the median rate (runs sorted by rate, middle one; lower middle for even counts)."""
    ordered = sorted(runs, key=lambda run: run.rate)
    return ordered[(len(ordered) - 1) // 2]


def healthy(run: RunResult, expected_rules: int) -> bool:
    """Every alert matched a rule and the rulebook ended through its shutdown rule."""
    return run.rules_triggered == expected_rules and run.extra.get("exit_code") == 0


def table(ceilings: list[RunResult], sources: list[RunResult], expected_rules: int) -> str:
    """The printed report: every run, then the medians and their ratio."""
    rows = [("run", "events", "seconds", "events/s", "rulesTriggered", "ok")]
    for index, run in enumerate(run for pair in zip(ceilings, sources) for run in pair):
        verdict = "yes" if healthy(run, expected_rules) else "NO"
        rows.append((f"#{index // 2 + 1} {run.name}", str(run.events), f"{run.seconds:.3f}", f"{run.rate:,.0f}", str(run.rules_triggered), verdict))
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[col]) if col == 0 else cell.rjust(widths[col]) for col, cell in enumerate(row)) for row in rows]
    rule = "-" * len(lines[0])
    lines.insert(1, rule)
    ceiling, source = median_run(ceilings), median_run(sources)
    ratio = source.rate / ceiling.rate if ceiling.rate else 0.0
    lines += [
        rule,
        f"median ceiling (engine, generator source): {ceiling.rate:,.0f} events/s",
        f"median labops.itsm.alertmanager:           {source.rate:,.0f} alerts/s accepted and matched",
        f"source / ceiling: {ratio:.3f}   (target >= 0.90; target rate >= 2,000 alerts/s)",
        "median source run, HTTP side: " + ", ".join(f"{key}={value}" for key, value in source.extra.items() if key != "exit_code"),
    ]
    return "\n".join(lines)


def validation_only(load: list[dict[str, Any]], rounds: int) -> int:
    """Time decode_body + build_events over the load notifications; print microseconds per alert."""
    source = runpy.run_path(str(SOURCE_FILE))
    config = source["parse_config"]({})
    bodies = [json.dumps(body).encode().replace(b"&", b"\\u0026") for body in load]
    alerts = sum(len(body["alerts"]) for body in load)
    timings = []
    for _round in range(max(rounds, 1)):
        started = time.perf_counter()
        for body in bodies:
            source["build_events"](source["decode_body"](body), config)
        timings.append(time.perf_counter() - started)
    best = min(timings)
    print(f"validation only: {alerts} alerts in {len(bodies)} bodies, best of {len(timings)}: {best:.3f} s = "
          f"{best / alerts * 1e6:.1f} us/alert ({alerts / best:,.0f} alerts/s)")
    return 0


def main() -> int:
    """Parse options, run both benchmarks, print the table, store JSON under bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--alerts", type=int, default=20000, help="load alerts per run (default 20000)")
    parser.add_argument("--batch", type=int, default=100, help="alerts per notification (default 100)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent HTTP connections (default 4)")
    parser.add_argument("--shape", choices=("contract", "minimal"), default="contract", help="alert size: contract sample (10 labels) or minimal (4)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved ceiling/source run pairs; medians are compared (default 3)")
    parser.add_argument("--validation-only", action="store_true", help="time only the source's decoding and validation in-process (no rulebook runs)")
    options = parser.parse_args()
    first, load, last = build_notifications(options.alerts, options.batch, options.shape)
    if options.validation_only:
        return validation_only(load, options.repeat)
    expected_rules = options.alerts + 2
    print(
        f"ingest bench: {options.alerts} alerts ({options.shape} shape) in notifications of {options.batch}, "
        f"{options.connections} connections, {os.cpu_count()} CPUs, {options.repeat} run pairs",
        flush=True,
    )
    ceilings: list[RunResult] = []
    sources: list[RunResult] = []
    for index in range(options.repeat):
        with tempfile.TemporaryDirectory(prefix="labops-ingest-") as tmp:
            ceilings.append(run_ceiling(first, load, last, Path(tmp)))
            sources.append(run_source(first, load, last, Path(tmp), options.connections))
        print(f"pair {index + 1}: ceiling {ceilings[-1].rate:,.0f} events/s, source {sources[-1].rate:,.0f} alerts/s", flush=True)
    print(table(ceilings, sources, expected_rules))
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "options": vars(options),
        "expected_rules_triggered": expected_rules,
        "ceiling": [vars(run) | {"rate": run.rate} for run in ceilings],
        "source": [vars(run) | {"rate": run.rate} for run in sources],
    }
    (RESULTS / "ingest.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0 if all(healthy(run, expected_rules) for run in ceilings + sources) else 1


if __name__ == "__main__":
    sys.exit(main())
