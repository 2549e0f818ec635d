"""Start and stop the real processes of the alert-to-ticket chain.

Used by ``make demo``, the end-to-end test and the latency benchmark, so all three run
the same thing an operator runs: the OTOBO simulator, a real AlertManager (Debian's
``prometheus-alertmanager``) and a real ``ansible-rulebook`` with our rulebook.
Every process is started in its own process group and killed as a group on stop.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

# IMS_DYNAMIC_FIELDS and ITSM_TICKET_TYPES are re-exported for callers of the lab stack
from simulators.otobo_lab import IMS_DYNAMIC_FIELDS, lab_overrides  # noqa: F401 pylint: disable=unused-import
from simulators.otobo_lab import LAB_TICKET_TYPES as ITSM_TICKET_TYPES  # noqa: F401 pylint: disable=unused-import

REPO_ROOT = Path(__file__).resolve().parent.parent
# The bootstrap links this checkout into <venv>/collections; that makes
# ansible_collections.labops.itsm importable for reading the ledger.
COLLECTIONS_PATH = Path(sys.prefix) / "collections"
if str(COLLECTIONS_PATH) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_PATH))
ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
AGENT_USER = "alertbot"
AGENT_PASSWORD = "s3cret"
# How long ansible-rulebook may take to open its event source (it loads ansible-core and the
# collection first, which is slow on a loaded machine); the demo's --rulebook-timeout sets it too.
RULEBOOK_TIMEOUT_ENV = "LABOPS_RULEBOOK_READY_TIMEOUT"
DEFAULT_RULEBOOK_READY_TIMEOUT = 90.0


class StackStartError(RuntimeError):
    """A process of the stack did not come up: the message says which log to read and what to change."""


def rulebook_ready_timeout() -> float:
    """Seconds to wait for ansible-rulebook: $LABOPS_RULEBOOK_READY_TIMEOUT or 90."""
    raw = os.environ.get(RULEBOOK_TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_RULEBOOK_READY_TIMEOUT
    except ValueError:
        raise StackStartError(f"{RULEBOOK_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    return value if value > 0 else DEFAULT_RULEBOOK_READY_TIMEOUT


def itsm_sim_config() -> dict:
    """The simulator's lab profile (``python -m simulators.otobo --lab``): a stock OTOBO plus what the README's
    OTOBO setup adds (ticket types, IMS and alert dynamic fields).  The simulator's own default stays stock."""
    return lab_overrides()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(method: str, url: str, body: Any = None, headers: dict | None = None, timeout: float = 5.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _decode(response.read())
    except urllib.error.HTTPError as err:
        return err.code, _decode(err.read())


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except (OSError, urllib.error.URLError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _spawn(argv: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, cwd=cwd, start_new_session=True)


def _stop(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class AlertManager:
    """A real AlertManager with one webhook receiver pointing at our event source."""

    workdir: Path
    webhook_url: str
    token_file: Path
    group_wait: str = "1s"
    group_interval: str = "2s"
    repeat_interval: str = "1h"
    group_by: tuple = ("alertname", "cluster")
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict:
        return {
            "route": {
                "receiver": "labops-itsm",
                "group_by": list(self.group_by),
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [{
                "name": "labops-itsm",
                "webhook_configs": [{
                    "url": self.webhook_url,
                    "send_resolved": True,
                    "max_alerts": 0,
                    "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(self.token_file)}},
                }],
            }],
        }

    def start(self) -> AlertManager:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "alertmanager.yml"
        config_path.write_text(json.dumps(self.config(), indent=2))  # JSON is valid YAML
        argv = [ALERTMANAGER_BIN, f"--config.file={config_path}", f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=", "--log.level=info"]
        self.proc = _spawn(argv, self.workdir / "alertmanager.log")
        try:
            wait_until(lambda: self._alive() and http_json("GET", f"{self.url}/-/ready")[0] == 200, 30, what="AlertManager ready")
        except TimeoutError:
            raise StackStartError(f"AlertManager was not ready within 30 s; read {self.workdir / 'alertmanager.log'}") from None
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise StackStartError(f"AlertManager exited ({self.proc.returncode}); see {self.workdir / 'alertmanager.log'}")
        return True

    def post_alerts(self, alerts: list[dict]) -> None:
        status, body = http_json("POST", f"{self.url}/api/v2/alerts", alerts)
        if status != 200:
            raise RuntimeError(f"AlertManager rejected alerts: {status} {body}")

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class Rulebook:
    """A real ansible-rulebook running one of our rulebooks."""

    workdir: Path
    rulebook: Path
    inventory: Path
    env: dict
    variables: dict
    venv_bin: Path = Path(sys.executable).parent
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "ansible-rulebook.log"

    def start(self, ready_url: str, ready_timeout: float | None = None) -> Rulebook:
        self.workdir.mkdir(parents=True, exist_ok=True)
        vars_path = self.workdir / "rulebook-vars.yml"
        vars_path.write_text(json.dumps(self.variables))
        env = {**os.environ, **self.env}
        env["PATH"] = f"{self.venv_bin}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(Path(sys.prefix) / "collections"))
        env_var_names = ",".join(sorted(name for name in self.env if name.startswith("LABOPS_WEBHOOK")))
        argv = [str(self.venv_bin / "ansible-rulebook"), "--rulebook", str(self.rulebook), "-i", str(self.inventory),
                "--vars", str(vars_path), "-v"]
        if env_var_names:
            argv += ["--env-vars", env_var_names]
        self.proc = _spawn(argv, self.log_path, env=env, cwd=self.workdir)
        timeout = rulebook_ready_timeout() if ready_timeout is None else ready_timeout
        try:
            wait_until(lambda: self._alive() and http_json("GET", ready_url, timeout=2)[0] == 200, timeout,
                       interval=0.5, what="ansible-rulebook event source ready")
        except TimeoutError:
            raise StackStartError(
                f"ansible-rulebook did not open its event source ({ready_url}) within {timeout:.0f} s. Read its log: "
                f"{self.log_path}. On a loaded machine give it longer: {RULEBOOK_TIMEOUT_ENV}=300 "
                f"(make demo / scripts/demo.py: --rulebook-timeout 300).") from None
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise StackStartError(f"ansible-rulebook exited ({self.proc.returncode}); its log is {self.log_path}, last lines:\n{tail}")
        return True

    def stop(self) -> None:
        _stop(self.proc, grace=10)


@dataclass
class Stack:
    """OTOBO simulator + ansible-rulebook (our rulebook) + AlertManager, wired together."""

    workdir: Path
    rulebook: Path = REPO_ROOT / "rulebooks" / "alertmanager_otobo.yml"
    inventory: Path = REPO_ROOT / "inventory"
    group_wait: str = "1s"
    group_interval: str = "2s"
    repeat_interval: str = "1h"
    # Default: `python -m simulators.otobo --lab` (these keys are the lab profile; extend them to add more).
    # None = the simulator's stock default (no IMS dynamic fields, no ticket types: the alert path fails).
    sim_config: dict | None = field(default_factory=itsm_sim_config)
    rulebook_ready_timeout: float | None = None  # None: $LABOPS_RULEBOOK_READY_TIMEOUT or 90 s
    extra_env: dict = field(default_factory=dict)
    sim: Any = None
    alertmanager: AlertManager | None = None
    rulebook_proc: Rulebook | None = None
    webhook_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def ledger_path(self) -> Path:
        return self.workdir / "ledger" / "ims_audit.sqlite3"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/alertmanager"

    def start(self) -> Stack:
        from simulators.harness import start_simulator  # the simulators package lives at the repo root

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sim = start_simulator("otobo", config=self.sim_config or {}, lab=self.sim_config is not None)
        token_file = self.workdir / "webhook-token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        env = {
            "LABOPS_WEBHOOK_TOKEN": self.token,
            "OTOBO_URL": self.sim.url,
            "OTOBO_USERNAME": AGENT_USER,
            "OTOBO_PASSWORD": AGENT_PASSWORD,
            "LABOPS_LEDGER_PATH": str(self.ledger_path),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            **self.extra_env,
        }
        self.rulebook_proc = Rulebook(self.workdir, self.rulebook, self.inventory, env,
                                      {"webhook_host": "127.0.0.1", "webhook_port": self.webhook_port, "webhook_path": "/alertmanager"})
        self.rulebook_proc.start(ready_url=f"{self.webhook_url}/health", ready_timeout=self.rulebook_ready_timeout)
        # Assigned before start() so that stop() also reaps a process that failed to become ready.
        self.alertmanager = AlertManager(self.workdir / "alertmanager", self.webhook_url, token_file,
                                         group_wait=self.group_wait, group_interval=self.group_interval,
                                         repeat_interval=self.repeat_interval)
        self.alertmanager.start()
        return self

    def stop(self) -> None:
        for stopper in (self.alertmanager, self.rulebook_proc, self.sim):
            if stopper is not None:
                try:
                    stopper.stop()
                except Exception as exc:  # noqa: BLE001 keep stopping the others  # pylint: disable=broad-except
                    print(f"warning: stop failed: {exc}", file=sys.stderr)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def tickets(self) -> list[dict]:
        """Tickets as the simulator holds them (its control API), without the welcome ticket."""
        state = self.sim.state()
        return [t for t in state["tickets"] if str(t.get("TicketNumber")) != "2015071510123456"]


def alert(alertname: str, labels: dict, summary: str, starts_at: str, ends_at: str | None = None, **annotations) -> dict:
    """An alert for AlertManager's POST /api/v2/alerts."""
    body = {"labels": {"alertname": alertname, **labels}, "annotations": {"summary": summary, **annotations},
            "startsAt": starts_at, "generatorURL": f"http://prometheus.lab.invalid:9090/graph?g0.expr={alertname}"}
    if ends_at:
        body["endsAt"] = ends_at
    return body
