"""Start and control simulators from Python (pytest fixtures, ``make demo``, benchmarks).

>>> with start_simulator("otobo", {"post_search_route": True}) as sim:
...     sim.inject(kind="http_status", status=503, count=1, operations=["TicketCreate"])
...     requests.post(sim.otobo_base + "/Ticket", json=...)

:func:`start_simulator` runs ``python -m simulators.<module>`` as a subprocess (port 0, the
bound port comes back through a port file); :func:`start_in_thread` serves the same app in
this process, which is faster for unit tests.  Both return objects with one interface.
Only the standard library is used, so the harness works wherever the simulators do.
"""
from __future__ import annotations

import importlib
import json as _json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent


class SimulatorError(RuntimeError):
    """The simulator did not start, died, or a control call failed."""


class _Controlled:
    """The control-API client shared by the subprocess and in-thread variants."""

    url: str
    config: dict[str, Any]

    @property
    def otobo_base(self) -> str:
        """Full base URL of the simulated OTOBO web service."""
        name = self.config.get("webservice", "GenericTicketConnectorREST")
        prefix = self.config.get("path_prefix", "/otobo/nph-genericinterface.pl")
        return f"{self.url}{prefix}/Webservice/{name}"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def control(self, method: str, path: str, json: Any = None, timeout: float = 10.0) -> Any:
        """Call ``/_sim/<path>``; returns the decoded JSON or raises SimulatorError on HTTP errors."""
        target = f"{self.url}/_sim/{path.lstrip('/')}"
        data = None if json is None else _json.dumps(json).encode("utf-8")
        request = urllib.request.Request(target, data=data, method=method.upper(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return _json.loads(response.read().decode("utf-8") or "null")
        except urllib.error.HTTPError as exc:
            raise SimulatorError(f"{method} /_sim/{path}: HTTP {exc.code}: {exc.read().decode('utf-8', 'replace')}") from exc

    def state(self) -> dict[str, Any]:
        return self.control("GET", "state")

    def health(self) -> dict[str, Any]:
        return self.control("GET", "health")

    def inject(self, **fault: Any) -> dict[str, Any]:
        """Add one fault, e.g. ``inject(kind="drop", operations=["TicketCreate"], after_apply=True, count=1)``."""
        return self.control("POST", "faults", fault)

    def clear_faults(self) -> None:
        self.control("DELETE", "faults")

    def requests(self) -> list[dict[str, Any]]:
        """The request log since the last reset/clear: ``[{"operation", "method", "status"}, ...]``."""
        return self.control("GET", "requests")["requests"]

    def clear_requests(self) -> None:
        """Forget the request log and per-operation counters (tickets and sessions stay)."""
        self.control("DELETE", "requests")

    def operation_counts(self) -> dict[str, int]:
        """Requests per operation since the last reset/clear, from the request log."""
        counts: dict[str, int] = {}
        for entry in self.requests():
            counts[entry["operation"]] = counts.get(entry["operation"], 0) + 1
        return counts

    def reset(self) -> None:
        self.control("POST", "reset")

    def seed(self, table: str, rows: list[dict[str, Any]]) -> list[dict[str, str]]:
        """ServiceNow simulator: insert ``rows`` into ``table`` as the system (POST /_sim/seed); returns the stored rows."""
        return self.control("POST", "seed", {"table": table, "rows": rows})["result"][table]

    def set_config(self, **keys: Any) -> dict[str, Any]:
        """ServiceNow simulator: change config keys until the next reset (POST /_sim/config)."""
        return self.control("POST", "config", keys)["config"]

    def advance_clock(self, seconds: float) -> None:
        self.control("POST", "clock", {"advance": seconds})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        raise NotImplementedError


class SimulatorProcess(_Controlled):
    """A simulator running as ``python -m simulators.<module>``; its stderr goes to :attr:`log_path`."""

    def __init__(self, module: str, config: Mapping[str, Any] | None, host: str, startup_timeout: float,
                 extra_args: list[str] | None = None) -> None:
        self.module = module
        self.config = dict(config or {})
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sim-{module}-"))
        self.log_path = self.workdir / "simulator.log"
        config_path = self.workdir / "config.json"
        config_path.write_text(_json.dumps(self.config), encoding="utf-8")
        port_file = self.workdir / "port"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", f"simulators.{module}", "--host", host, "--port", "0", "--config", str(config_path), "--port-file", str(port_file)]
        cmd += list(extra_args or [])
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)  # pylint: disable=consider-using-with
        try:
            port = self._wait_for_port(port_file, startup_timeout)
            self.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
            self._wait_healthy(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_for_port(self, port_file: Path, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SimulatorError(f"simulator {self.module} exited with {self.process.returncode}:\n{self.log()}")
            if port_file.exists():
                return int(port_file.read_text(encoding="utf-8").strip())
            time.sleep(0.02)
        raise SimulatorError(f"simulator {self.module} did not start within {timeout}s:\n{self.log()}")

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.health()
                return
            except (OSError, SimulatorError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def log(self) -> str:
        """Everything the simulator wrote so far (its masked request log and any tracebacks)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (the simulator persists its state and exits), SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if os.environ.get("LABOPS_KEEP_SIM_LOGS") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)


class InThreadSimulator(_Controlled):
    """The same app served from a thread of this process (no subprocess start-up cost)."""

    def __init__(self, module: str, config: Mapping[str, Any] | None, host: str, lab: bool = False) -> None:
        from simulators import base  # pylint: disable=import-outside-toplevel

        mod = importlib.import_module(f"simulators.{module}")
        self.config = dict(config or {})
        if lab:  # the same keys `--lab` starts from; config still overrides them
            self.config = dict(importlib.import_module(f"simulators.{module}_lab").lab_overrides(), **self.config)
        self.app = mod.build_app(self.config)
        self.app.quiet = True
        self.server, self.thread = base.serve_in_thread(self.app, host)
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{self.server.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.app.close()


def start_simulator(module: str = "otobo", config: Mapping[str, Any] | None = None, host: str = "127.0.0.1",
                    startup_timeout: float = 15.0, lab: bool = False) -> SimulatorProcess:
    """Start ``python -m simulators.<module>`` on a free port and wait until it is healthy.

    ``lab=True`` passes ``--lab``: the lab profile (``simulators/otobo_lab.py``) under ``config``.
    """
    return SimulatorProcess(module, config, host, startup_timeout, ["--lab"] if lab else None)


def start_in_thread(module: str = "otobo", config: Mapping[str, Any] | None = None, host: str = "127.0.0.1",
                    lab: bool = False) -> InThreadSimulator:
    """Serve the simulator app from a background thread of the current process (``lab=True``: the lab profile)."""
    return InThreadSimulator(module, config, host, lab)
