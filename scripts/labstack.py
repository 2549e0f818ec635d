"""Start and stop the real processes of the alert-to-ticket chain.

Used by ``make demo``, the end-to-end test and the latency benchmark, so all three run
the same thing an operator runs: the OTOBO simulator, a real AlertManager (Debian's
``prometheus-alertmanager``) and a real ``ansible-rulebook`` with our rulebook.
Every process is started in its own process group and killed as a group on stop.

Secrets never reach the daemon's environment or its rulebook variables (ansible-rulebook hands both to every
playbook run, and ansible-runner writes them into ``artifacts/<id>/command`` and ``env/``): the webhook token
and the OTOBO password are written to 0600 files in the work directory; the rulebook gets the token file's
path (``webhook_token_file``), the playbooks the password file's (``OTOBO_PASSWORD_FILE``).
"""
from __future__ import annotations

import copy
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
# The ServiceNow simulator's integration user (its default config: role itil).
SN_USER = "itsm.bot"
SN_PASSWORD = "bot-pw"
# Secrets the daemon must not inherit from the caller's environment (the stack passes files instead).
# The Jira simulator's integration account (a user of its default config): Cloud, Basic email + API token; Data Center,
# a personal access token. Each stack gives it a fresh token (Stack.jira_secret), so a leak is not mistaken for a name.
JIRA_USER = "bot@example.com"
# The lab's Jira answers searches like Jira Cloud does: a just-created or just-edited issue stays invisible to
# /search/jql for a while (how duplicate tickets happen); the adapter must not depend on it.
JIRA_SEARCH_LAG = 3.0
SECRET_ENV = ("LABOPS_WEBHOOK_TOKEN", "OTOBO_PASSWORD", "SN_PASSWORD", "SN_CLIENT_SECRET", "SN_API_KEY", "JIRA_API_TOKEN",
              "JIRA_PASSWORD", "JIRA_PAT")
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


def write_secret(path: Path, value: str) -> Path:
    """``value`` in a file only the owner can read (created 0600, never world-readable in between)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    path.chmod(0o600)
    return path


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
        # A secret the caller's shell holds is not inherited; one the stack passes on purpose (self.env) is kept.
        env = {**{name: value for name, value in os.environ.items() if name not in SECRET_ENV}, **self.env}
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
    """OTOBO, ServiceNow and Jira simulators + ansible-rulebook (our rulebook) + AlertManager, wired together.

    The inventory routes most assets to OTOBO, the network group to ServiceNow and the dev_services group to Jira
    (docs/alert_path.md)."""

    workdir: Path
    rulebook: Path = REPO_ROOT / "rulebooks" / "alertmanager_itsm.yml"
    inventory: Path = REPO_ROOT / "inventory"
    group_wait: str = "1s"
    group_interval: str = "2s"
    repeat_interval: str = "1h"
    # Default: `python -m simulators.otobo --lab` (these keys are the lab profile; extend them to add more).
    # None = the simulator's stock default (no IMS dynamic fields, no ticket types: the alert path fails).
    sim_config: dict | None = field(default_factory=itsm_sim_config)
    rulebook_ready_timeout: float | None = None  # None: $LABOPS_RULEBOOK_READY_TIMEOUT or 90 s
    extra_env: dict = field(default_factory=dict)
    # Extra rulebook variables (intake tuning such as intake_retry_for); never a secret.
    rulebook_vars: dict = field(default_factory=dict)
    group_by: tuple = ("alertname", "cluster")
    # Legacy switches for a rulebook / collection from before issue 7 (bench/storm.py's baseline):
    # token_in_env: the rulebook reads LABOPS_WEBHOOK_TOKEN (None: decided from the rulebook's text: it does
    # unless it uses webhook_token_file); password_in_env: OTOBO_PASSWORD instead of OTOBO_PASSWORD_FILE.
    token_in_env: bool | None = None
    password_in_env: bool = False
    # Start the ServiceNow simulator (the inventory's network assets); off for a collection without ServiceNow.
    servicenow: bool = True
    # Start the Jira simulator (the inventory's dev_services assets); its config on top of the simulator's default.
    jira: bool = True
    jira_config: dict = field(default_factory=lambda: {"search_lag": JIRA_SEARCH_LAG})
    # cloud: REST v3 (ADF), email + API token; datacenter: REST v2 (wiki markup), a personal access token.
    jira_mode: str = "cloud"
    jira_secret: str = field(default_factory=lambda: "jira-" + secrets.token_urlsafe(18))
    sim: Any = None
    sn_sim: Any = None
    jira_sim: Any = None
    alertmanager: AlertManager | None = None
    rulebook_proc: Rulebook | None = None
    webhook_port: int = field(default_factory=free_port)
    alertmanager_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def ledger_path(self) -> Path:
        return self.workdir / "ledger" / "ims_audit.sqlite3"

    @property
    def spool_path(self) -> Path:
        """The intake spool (SQLite) of the daemon: LABOPS_SPOOL_PATH."""
        return self.workdir / "spool" / "intake_spool.sqlite3"

    @property
    def token_file(self) -> Path:
        """The webhook token (0600): AlertManager's credentials_file, the rulebook's webhook_token_file."""
        return self.workdir / "webhook-token"

    @property
    def password_file(self) -> Path:
        """The OTOBO agent's password (0600): OTOBO_PASSWORD_FILE of the playbooks."""
        return self.workdir / "otobo-password"

    @property
    def metrics_path(self) -> Path:
        """The node_exporter textfile the modules keep their ticket-creation metrics in."""
        return self.workdir / "metrics" / "labops_itsm.prom"

    @property
    def log_file(self) -> Path:
        """The JSON log lines of ticket creations (seed 001 shape)."""
        return self.workdir / "itsm-log.jsonl"

    @property
    def sn_password_file(self) -> Path:
        """The ServiceNow integration user's password (0600): SN_PASSWORD_FILE of the playbooks."""
        return self.workdir / "servicenow-password"

    @property
    def jira_token_file(self) -> Path:
        """The Jira account's API token (Cloud: JIRA_API_TOKEN_FILE) or personal access token (Data Center: JIRA_PAT_FILE), 0600."""
        return self.workdir / "jira-api-token"

    @property
    def tmp_dir(self) -> Path:
        """The daemon's TMPDIR: ansible-runner's private data dirs (eda*) and Ansible's local/remote temp dirs."""
        return self.workdir / "tmp"

    def uses_token_env(self) -> bool:
        if self.token_in_env is not None:
            return self.token_in_env
        return "webhook_token_file" not in Path(self.rulebook).read_text(errors="replace")

    def daemon_env(self) -> dict:
        """The environment the stack adds to ansible-rulebook's: locations and file names, no secret
        (unless a legacy switch asks for one)."""
        env = {
            "OTOBO_URL": self.sim.url,
            "OTOBO_USERNAME": AGENT_USER,
            "OTOBO_PASSWORD_FILE": str(self.password_file),
            "LABOPS_LEDGER_PATH": str(self.ledger_path),
            "LABOPS_SPOOL_PATH": str(self.spool_path),
            "LABOPS_OTOBO_SESSION_CACHE": str(self.workdir / "otobo-sessions"),
            # ticket-creation metrics (node_exporter textfile) and JSON log lines (docs/metrics.md)
            "LABOPS_METRICS_DIR": str(self.metrics_path.parent),
            "LABOPS_LOG_FILE": str(self.log_file),
            "TMPDIR": str(self.tmp_dir),
            "ANSIBLE_LOCAL_TEMP": str(self.tmp_dir / "ansible-local"),
            "ANSIBLE_REMOTE_TEMP": str(self.tmp_dir / "ansible-remote"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "0",
        }
        if self.sn_sim is not None:
            env.update({"SN_HOST": self.sn_sim.url, "SN_USERNAME": SN_USER, "SN_PASSWORD_FILE": str(self.sn_password_file),
                        "LABOPS_SERVICENOW_TOKEN_CACHE": str(self.workdir / "servicenow-tokens")})
        if self.jira_sim is not None:
            env.update({"JIRA_URL": self.jira_sim.url, "JIRA_DEPLOYMENT": self.jira_mode, "LABOPS_JIRA_CACHE": str(self.workdir / "jira-cache")})
            if self.jira_mode == "datacenter":
                env["JIRA_PAT_FILE"] = str(self.jira_token_file)
            else:
                env.update({"JIRA_USERNAME": JIRA_USER, "JIRA_API_TOKEN_FILE": str(self.jira_token_file)})
        if self.password_in_env:
            del env["OTOBO_PASSWORD_FILE"]
            env["OTOBO_PASSWORD"] = AGENT_PASSWORD
        if self.uses_token_env():
            env["LABOPS_WEBHOOK_TOKEN"] = self.token
        return {**env, **self.extra_env}

    def daemon_vars(self) -> dict:
        return {"webhook_host": "127.0.0.1", "webhook_port": self.webhook_port, "webhook_path": "/alertmanager",
                "webhook_token_file": str(self.token_file), "alertmanager_url": f"http://127.0.0.1:{self.alertmanager_port}",
                **self.rulebook_vars}

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/alertmanager"

    def start(self) -> Stack:
        from simulators.harness import start_simulator  # the simulators package lives at the repo root

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sim = start_simulator("otobo", config=self.sim_config or {}, lab=self.sim_config is not None)
        write_secret(self.token_file, self.token)
        write_secret(self.password_file, AGENT_PASSWORD + "\n")
        if self.servicenow:
            self.sn_sim = start_simulator("servicenow")
            write_secret(self.sn_password_file, SN_PASSWORD + "\n")
        if self.jira:
            self.jira_sim = start_simulator("jira", config=self.jira_sim_config())
            write_secret(self.jira_token_file, self.jira_secret + "\n")
        for directory in (self.spool_path.parent, self.tmp_dir, self.tmp_dir / "ansible-local", self.tmp_dir / "ansible-remote"):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.rulebook_proc = Rulebook(self.workdir, self.rulebook, self.inventory, self.daemon_env(), self.daemon_vars())
        self.rulebook_proc.start(ready_url=f"{self.webhook_url}/health", ready_timeout=self.rulebook_ready_timeout)
        # Assigned before start() so that stop() also reaps a process that failed to become ready.
        self.alertmanager = AlertManager(self.workdir / "alertmanager", self.webhook_url, self.token_file,
                                         group_wait=self.group_wait, group_interval=self.group_interval,
                                         repeat_interval=self.repeat_interval, group_by=tuple(self.group_by),
                                         port=self.alertmanager_port)
        self.alertmanager.start()
        return self

    def jira_sim_config(self) -> dict:
        """The Jira simulator's config: ``jira_config`` in ``jira_mode``, the integration account's API token and PAT
        set to ``jira_secret``."""
        from simulators.jira_model import DEFAULT_CONFIG  # the simulators package lives at the repo root

        users = copy.deepcopy(DEFAULT_CONFIG["users"])
        users[JIRA_USER].update(api_token=self.jira_secret, pat=self.jira_secret)
        return {"users": users, **self.jira_config, "mode": self.jira_mode}

    def stop(self) -> None:
        for stopper in (self.alertmanager, self.rulebook_proc, self.sim, self.sn_sim, self.jira_sim):
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

    def sn_rows(self, table: str) -> list[dict]:
        """The rows of a ServiceNow table as the simulator holds them (its control API), oldest first."""
        if self.sn_sim is None:
            return []
        return list(self.sn_sim.state().get("tables", {}).get(table, []))

    def sn_incidents(self) -> list[dict]:
        return self.sn_rows("incident")

    def sn_record_id(self, table: str, name: str) -> str | None:
        """The sys_id of the ``table`` row named ``name`` in the ServiceNow simulator."""
        return next((row["sys_id"] for row in self.sn_rows(table) if row.get("name") == name), None)

    def sn_journal(self, sys_id: str) -> list[str]:
        """The journal entries (work notes and comments) of a ServiceNow record, oldest first."""
        return [row["value"] for row in self.sn_rows("sys_journal_field") if row.get("element_id") == sys_id]

    def jira_issues(self) -> list[dict]:
        """The Jira simulator's issues as it stores them (its control API: key, summary, status, statusCategory, resolution,
        resolutiondate, priority, labels, components, description, comments, properties), in creation order."""
        if self.jira_sim is None:
            return []
        issues = self.jira_sim.state().get("issues", {})
        return sorted(issues.values(), key=lambda issue: int(issue["id"]))


def alert(alertname: str, labels: dict, summary: str, starts_at: str, ends_at: str | None = None, **annotations) -> dict:
    """An alert for AlertManager's POST /api/v2/alerts."""
    body = {"labels": {"alertname": alertname, **labels}, "annotations": {"summary": summary, **annotations},
            "startsAt": starts_at, "generatorURL": f"http://prometheus.lab.invalid:9090/graph?g0.expr={alertname}"}
    if ends_at:
        body["endsAt"] = ends_at
    return body
