"""Real AlertManager -> real ansible-rulebook running labops.itsm.alertmanager.

AlertManager 0.25 (Debian's prometheus-alertmanager) delivers webhook notifications with a
bearer token read from a credentials_file; the test injects alerts through AlertManager's
``POST /api/v2/alerts`` and asserts, from ansible-rulebook's output, that a rule fired for every
firing and every resolved alert, that a malformed request answered 400 did not stop the
rulebook, and that the marker alert shuts it down cleanly.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.labops.itsm.plugins.filter.correlation_key import correlation_key

pytestmark = pytest.mark.integration

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
RULEBOOK = Path(__file__).parent / "rulebooks" / "alertmanager_source.yml"
TOKEN = "it-token-7f3c9a"
START_TIMEOUT = 90.0
EVENT_TIMEOUT = 45.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fingerprint(labels: dict[str, str]) -> str:
    """AlertManager's fingerprint: FNV-1a 64 over sorted label names and values, each followed by 0xff."""
    value = 0xCBF29CE484222325
    for name in sorted(labels):
        for byte in name.encode() + b"\xff" + labels[name].encode() + b"\xff":
            value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def reachable(url: str) -> bool:
    try:
        return http("GET", url)[0] == 200
    except OSError:
        return False


class Output:
    """Collects a process's merged stdout/stderr lines on a background thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self._queue.put(line.rstrip("\n"))

    def collect(self) -> list[str]:
        while not self._queue.empty():
            self.lines.append(self._queue.get_nowait())
        return self.lines

    def text(self) -> str:
        return "\n".join(self.collect())

    def matched(self) -> set[tuple[str, ...]]:
        return {tuple(line.split()[1:]) for line in self.collect() if line.startswith("MATCHED ")}


def start(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen, Output]:
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return proc, Output(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def am_config(tmp_path: Path, source_port: int) -> Path:
    token_file = tmp_path / "eda-token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    config = {
        "route": {"receiver": "eda", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [
            {
                "name": "eda",
                "webhook_configs": [
                    {
                        "url": f"http://127.0.0.1:{source_port}/alertmanager",
                        "send_resolved": True,
                        "max_alerts": 0,
                        "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}},
                    }
                ],
            }
        ],
    }
    path = tmp_path / "alertmanager.yml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@pytest.fixture(name="stack")
def fixture_stack(tmp_path: Path, venv_bin: Path) -> Iterator[dict[str, Any]]:
    if not os.access(ALERTMANAGER, os.X_OK):
        pytest.skip("prometheus-alertmanager is not installed")
    source_port, am_port = free_port(), free_port()
    env = {**os.environ, "LABOPS_IT_PORT": str(source_port), "LABOPS_IT_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    env.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n", encoding="utf-8")
    rulebook_cmd = [str(venv_bin / "ansible-rulebook"), "--rulebook", str(RULEBOOK), "-i", str(inventory), "--env-vars", "LABOPS_IT_PORT,LABOPS_IT_TOKEN"]
    am_cmd = [
        ALERTMANAGER,
        f"--config.file={am_config(tmp_path, source_port)}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address=",
    ]
    rulebook, rulebook_out = start(rulebook_cmd, env, tmp_path)
    alertmanager, am_out = start(am_cmd, env, tmp_path)
    stack = {"source": f"http://127.0.0.1:{source_port}/alertmanager", "am": f"http://127.0.0.1:{am_port}", "rulebook": rulebook, "out": rulebook_out}
    try:
        wait_for(lambda: reachable(stack["source"] + "/health") or rulebook.poll() is not None, START_TIMEOUT, "the event source")
        assert rulebook.poll() is None, rulebook_out.text()
        wait_for(lambda: reachable(stack["am"] + "/-/ready") or alertmanager.poll() is not None, START_TIMEOUT, "alertmanager")
        assert alertmanager.poll() is None, am_out.text()
        yield stack
    finally:
        stop(rulebook)
        stop(alertmanager)
        print("---- ansible-rulebook ----\n" + rulebook_out.text(), file=sys.stderr)
        print("---- alertmanager ----\n" + am_out.text(), file=sys.stderr)


def post_alerts(am_url: str, alerts: list[dict[str, Any]]) -> None:
    status, body = http("POST", am_url + "/api/v2/alerts", alerts)
    assert status == 200, body


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_alertmanager_to_rulebook(stack: dict[str, Any]) -> None:
    out: Output = stack["out"]
    rulebook: subprocess.Popen = stack["rulebook"]

    # Direct requests: malformed and unauthenticated input is refused and does not stop the rulebook.
    assert http("POST", stack["source"], raw=b"{broken", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 400
    assert http("POST", stack["source"], {"version": "4"})[0] == 401

    # Whole seconds on purpose: AlertManager then writes startsAt as "...:25Z" in the webhook and
    # "...:25.000Z" in /api/v2/alerts; the key must be the same for both spellings.
    started = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=30)).replace(microsecond=0)
    label_sets = [
        {"alertname": "LabopsItDiskFull", "itsm_test": "true", "instance": f"node{index}.it.example.org:9100", "severity": "warning"}
        for index in range(3)
    ]
    alerts = [
        {"labels": labels, "annotations": {"summary": "disk almost full"}, "startsAt": iso(started), "generatorURL": "http://prom.it/graph"}
        for labels in label_sets
    ]
    post_alerts(stack["am"], alerts)

    # AlertManager 0.25 truncates startsAt to what it stored; read it back to predict the keys.
    status, body = http("GET", stack["am"] + "/api/v2/alerts?filter=alertname%3D%22LabopsItDiskFull%22")
    assert status == 200
    stored = {item["fingerprint"]: item["startsAt"] for item in json.loads(body)}
    fingerprints = {fingerprint(labels) for labels in label_sets}
    assert set(stored) == fingerprints

    def expected(status: str) -> set[tuple[str, str, str]]:
        # The filter is how a job holding /api/v2/alerts data finds the event's key.
        keys = {fp: correlation_key(fp, stored[fp]) for fp in fingerprints}
        return {(status, fp, keys[fp]) for fp in fingerprints}

    def seen(status: str) -> set[tuple[str, str, str]]:
        return {match[:3] for match in out.matched() if match[0] == status}

    wait_for(lambda: expected("firing") <= seen("firing"), EVENT_TIMEOUT, "a rule match for every firing alert")

    # Resolve all three through AlertManager: it sends a resolved notification (send_resolved).
    ended = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    post_alerts(stack["am"], [dict(alert, endsAt=iso(ended)) for alert in alerts])
    wait_for(lambda: expected("resolved") <= seen("resolved"), EVENT_TIMEOUT, "a rule match for every resolved alert")

    # Another malformed request after real traffic: 400, and the rulebook is still running.
    invalid = {"version": "4", "groupKey": "x", "alerts": [{"status": "firing"}]}
    assert http("POST", stack["source"], invalid, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 400
    assert rulebook.poll() is None

    status, body = http("GET", stack["source"] + "/health")
    health = json.loads(body)
    assert status == 200
    assert health["accepted_events"] >= 6
    assert health["rejected_by_status"]["400"] == 2 and health["rejected_by_status"]["401"] == 1

    matches = out.matched()
    assert len({match[3] for match in matches}) == len({match[:3] for match in matches}), "meta.uuid must be unique per (status, alert episode)"
    assert {match[4] for match in matches} == {hashlib.sha256(b'{}:{alertname="LabopsItDiskFull"}').hexdigest()}

    # The marker alert triggers the shutdown rule; the rulebook exits cleanly.
    post_alerts(stack["am"], [{"labels": {"alertname": "LabopsItDone"}, "startsAt": iso(datetime.datetime.now(datetime.UTC))}])
    rulebook.wait(EVENT_TIMEOUT)
    text = out.text()
    assert rulebook.returncode == 0, text
    assert "labops integration done" in text
    assert TOKEN not in text
    assert "Authorization" not in text


# --------------------------------------------------------------------------- bad configuration

REPO_ROOT = Path(__file__).resolve().parents[2]
DAEMON_RULEBOOK = REPO_ROOT / "rulebooks" / "alertmanager_itsm.yml"
BAD_CONFIG_EXIT_TIMEOUT = 90.0  # typically ~4 s (JVM start); generous for a loaded 2-core machine


def _bad_config_run(case: str, tmp_path: Path, venv_bin: Path, port: int) -> list[str]:
    """The command line of one bad-configuration case."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n", encoding="utf-8")
    rulebook = [str(venv_bin / "ansible-rulebook"), "-i", str(inventory)]
    if case == "daemon-without-token":
        # README's daemon command with a daemon-vars.yml that forgot webhook_token_file.
        daemon_vars = tmp_path / "daemon-vars.yml"
        daemon_vars.write_text(f"webhook_host: 127.0.0.1\nwebhook_port: {port}\n", encoding="utf-8")
        return rulebook + ["--rulebook", str(DAEMON_RULEBOOK), "--vars", str(daemon_vars)]
    if case == "misspelt-option":
        return rulebook + ["--rulebook", str(RULEBOOK.parent / "bad_source_option.yml"), "--env-vars", "LABOPS_IT_PORT,LABOPS_IT_TOKEN"]
    return rulebook + ["--rulebook", str(RULEBOOK), "--env-vars", "LABOPS_IT_PORT,LABOPS_IT_TOKEN"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("daemon-without-token", "option 'token_file' uses the undefined rulebook variable 'webhook_token_file' (pass it with --env-vars or --vars)"),
        ("misspelt-option", "unknown option(s): tokn"),
        ("port-in-use", "cannot listen on 127.0.0.1:{port}"),
    ],
)
def test_bad_source_configuration_ends_the_daemon_non_zero(case: str, message: str, tmp_path: Path, venv_bin: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1] if case == "port-in-use" else free_port()
        env = {key: value for key, value in os.environ.items() if key != "LABOPS_WEBHOOK_TOKEN"}
        env.update({"LABOPS_IT_PORT": str(port), "LABOPS_IT_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"})
        env.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
        started = time.monotonic()
        proc, out = start(_bad_config_run(case, tmp_path, venv_bin, port), env, tmp_path)
        try:
            code = proc.wait(BAD_CONFIG_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop(proc)
            raise AssertionError(f"ansible-rulebook still running {BAD_CONFIG_EXIT_TIMEOUT}s after a bad source configuration:\n{out.text()}") from None
        elapsed = time.monotonic() - started
    out._thread.join(10)
    text = out.text()
    print(f"{case}: exit {code} after {elapsed:.1f}s", file=sys.stderr)
    assert code == 1, text
    assert "labops.itsm.alertmanager: invalid source configuration: " + message.format(port=port) in text, text
    assert "Terminating: One of the source plugins failed" in text, text
    if case != "port-in-use":
        with pytest.raises(OSError):  # nothing was ever left listening
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert TOKEN not in text
