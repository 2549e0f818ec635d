"""Shared machinery for the platform simulators.

A simulator is a :class:`SimulatorApp` subclass that maps a :class:`SimRequest` to a
:class:`SimResponse`.  This module supplies everything around that: a threaded HTTP/1.1
server, the run-time fault injection, the ``/_sim/*`` control API (never under a
platform path), a credential-free request log and the command line runner.
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTROL_PREFIX = "/_sim"
JSON_CT = "application/json; charset=UTF-8"
TEXT_CT = "text/plain; charset=UTF-8"
FAULT_KINDS = ("http_status", "latency", "drop", "auth_expiry")
# Bodies above the limit are drained up to this size so the client still reads the 413.
_DRAIN_LIMIT = 16 * 1024 * 1024
REQUEST_LOG_LIMIT = 10000
_SECRET_KEYS = ("password", "sessionid", "token", "secret", "apikey", "api_key")


class ConfigError(ValueError):
    """A simulator configuration or control request is not acceptable."""


@dataclass
class SimRequest:
    """One HTTP request as the simulator sees it (path and query still percent-encoded)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    client_ip: str


@dataclass
class SimResponse:
    """What to send back; ``content_type=None`` omits the header, ``drop`` closes the socket instead."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False


@dataclass
class Routed:
    """Result of routing: the operation name (``""`` when nothing matched), its type and the work to do."""

    operation: str
    op_type: str
    run: Callable[[], SimResponse]


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(data: Any, status: int = 200) -> SimResponse:
    return SimResponse(status, json_bytes(data), JSON_CT)


def text_response(text: str, status: int) -> SimResponse:
    return SimResponse(status, text.encode("utf-8"), TEXT_CT)


def reason(status: int) -> str:
    if status == 413:
        return "Payload Too Large"  # RFC 9110 wording, as OTOBO sends it (Python 3.11 still says "Request Entity")
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def merge_config(defaults: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Overlay ``overrides`` on ``defaults``: nested dicts merge, everything else replaces.

    Unknown top-level keys are rejected so a typo in a test's config fails loudly.
    """
    result = copy.deepcopy(dict(defaults))
    for key, value in (overrides or {}).items():
        if key not in result:
            raise ConfigError(f"unknown config key {key!r} (known: {', '.join(sorted(result))})")
        if isinstance(result[key], dict) and isinstance(value, dict):
            merged = dict(result[key])
            merged.update(copy.deepcopy(value))
            result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def mask_query(query: str) -> str:
    """Replace the values of credential-like query keys with ``***`` (for logs)."""
    if not query:
        return query
    parts = []
    for part in re.split(r"([&;])", query):
        key, sep, _value = part.partition("=")
        plain = urllib.parse.unquote_plus(key).lower()
        if sep and any(secret in plain for secret in _SECRET_KEYS):
            part = f"{key}=***"
        parts.append(part)
    return "".join(parts)


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """One injected fault; ``count=None`` keeps it active until cleared."""

    kind: str
    status: int = 503
    count: int | None = None
    operations: list[str] | None = None
    after_apply: bool = False
    retry_after: float | None = None
    seconds: float = 0.0
    body: str | None = None
    fault_id: int = 0
    hits: int = 0

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise ConfigError("a fault must be a JSON object")
        unknown = set(data) - {"kind", "status", "count", "operations", "after_apply", "retry_after", "seconds", "body"}
        if unknown:
            raise ConfigError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        kind = data.get("kind")
        if kind not in FAULT_KINDS:
            raise ConfigError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        fault = cls(kind=kind)
        fault.status = _as_int(data.get("status", 429 if data.get("retry_after") is not None else 503), "status", 100, 599)
        if data.get("count") is not None:
            fault.count = _as_int(data["count"], "count", 1, 10**9)
        fault.operations = _as_name_list(data.get("operations"))
        fault.after_apply = bool(data.get("after_apply", False))
        if data.get("retry_after") is not None:
            fault.retry_after = _as_number(data["retry_after"], "retry_after")
        fault.seconds = _as_number(data.get("seconds", 0), "seconds")
        if data.get("body") is not None:
            fault.body = str(data["body"])
        if kind == "latency" and fault.seconds <= 0:
            raise ConfigError("a latency fault needs seconds > 0")
        return fault

    def matches(self, operation: str, op_type: str) -> bool:
        return self.operations is None or operation in self.operations or op_type in self.operations

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.fault_id, "kind": self.kind, "status": self.status, "count": self.count,
            "operations": self.operations, "after_apply": self.after_apply, "retry_after": self.retry_after,
            "seconds": self.seconds, "body": self.body, "hits": self.hits,
        }

    def response(self) -> SimResponse:
        """The error an ``http_status`` fault returns (a proxy-style plain text page)."""
        resp = text_response(self.body if self.body is not None else f"{self.status} {reason(self.status)}", self.status)
        if self.retry_after is not None:
            value = self.retry_after
            resp.headers.append(("Retry-After", str(int(value)) if float(value).is_integer() else str(value)))
        return resp


def _as_int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in [{low}, {high}]")
    return value


def _as_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{name} must be a non-negative number")
    return float(value)


def _as_name_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError("operations must be a list of operation names")
    return list(value)


class FaultSet:
    """The active faults, consumed first-match-first by matching requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            fault.fault_id = self._next_id
            self._next_id += 1
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, operation: str, op_type: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.matches(operation, op_type):
                    continue
                fault.hits += 1
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.to_json() for fault in self._faults]


# --------------------------------------------------------------------------- application base


class SimulatorApp:
    """Base class: control API, counters, fault handling.  Subclasses implement the hooks."""

    name = "base"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.lock = threading.RLock()  # the one lock guarding all simulated state
        self.faults = FaultSet()
        self.counters: dict[str, int] = {}
        # Recent requests in arrival order (operation, method, status): tests count calls per operation with it.
        self.request_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_LIMIT)
        self.clock_offset = 0.0
        self.quiet = False

    # -- hooks for subclasses
    def route(self, req: SimRequest) -> Routed:
        raise NotImplementedError

    def dump_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def reset_state(self) -> None:
        raise NotImplementedError

    def expire_sessions(self) -> None:
        """Invalidate every session/token (the ``auth_expiry`` fault)."""

    def body_limit(self) -> int:
        return 100_000_000

    def mask_path(self, path: str) -> str:
        """Hide secrets carried in path segments (e.g. a session id) in the request log."""
        return path

    def close(self) -> None:
        """Called once when the server stops: the state is persisted (``state_file``)."""
        with self.lock:
            self._dirty = True
            self._persist()

    # -- persistence: a simulator whose ``store`` has ``save(path)`` keeps its state in ``config["state_file"]``
    _dirty = False
    store: Any = None

    def _persist(self) -> None:
        """Save the store when it changed (``_dirty``) and a ``state_file`` is configured; call under the lock."""
        if self._dirty and self.config.get("state_file"):
            self.store.save(self.config["state_file"])
        self._dirty = False

    def state_controls(self) -> dict[tuple[str, str], Callable[[Any], Any]]:
        """Extra control endpoints that change the state: ``{(method, path): handler(json payload) -> JSON result}``,
        e.g. ``("POST", "/_sim/seed")``. The handler runs under the lock, the state is persisted after it, and a
        ``ConfigError`` answers 400."""
        return {}

    # -- shared behaviour
    def now(self) -> float:
        return time.time() + self.clock_offset

    def handle(self, req: SimRequest) -> SimResponse:
        if req.path == CONTROL_PREFIX or req.path.startswith(CONTROL_PREFIX + "/"):
            return self.control(req)
        routed = self.route(req)
        with self.lock:
            key = routed.operation or "<no route>"
            self.counters[key] = self.counters.get(key, 0) + 1
        resp = self._respond(routed)
        with self.lock:
            self.request_log.append({"operation": routed.operation or "<no route>", "method": req.method,
                                     "status": "DROP" if resp.drop else resp.status})
        return resp

    def _respond(self, routed: Routed) -> SimResponse:
        fault = self.faults.take(routed.operation, routed.op_type)
        if fault is None:
            return routed.run()
        if not fault.after_apply:
            early = self._fault_effect(fault)
            return early if early is not None else routed.run()
        # after_apply: the operation changes state first, then the client gets the fault (an ambiguous write).
        result = routed.run()
        effect = self._fault_effect(fault)
        return effect if effect is not None else result

    def _fault_effect(self, fault: Fault) -> SimResponse | None:
        """Apply ``fault``; return a response to send instead of the normal one, or None."""
        if fault.kind == "latency":
            time.sleep(fault.seconds)
            return None
        if fault.kind == "auth_expiry":
            with self.lock:
                self.expire_sessions()
            return None
        if fault.kind == "drop":
            return SimResponse(0, drop=True)
        return fault.response()

    # -- control API
    def control(self, req: SimRequest) -> SimResponse:
        extra = self.state_controls().get((req.method, req.path))
        if extra is not None:
            return self._state_control(extra, req)
        sub = req.path[len(CONTROL_PREFIX):] or "/"
        handler = {
            ("GET", "/health"): self._ctl_health,
            ("GET", "/state"): self._ctl_state,
            ("POST", "/reset"): self._ctl_reset,
            ("GET", "/faults"): self._ctl_faults_list,
            ("POST", "/faults"): self._ctl_faults_add,
            ("DELETE", "/faults"): self._ctl_faults_clear,
            ("POST", "/clock"): self._ctl_clock,
            ("GET", "/requests"): self._ctl_requests,
            ("DELETE", "/requests"): self._ctl_requests_clear,
        }.get((req.method, sub))
        if handler is None:
            return json_response({"error": f"no control endpoint {req.method} {CONTROL_PREFIX}{sub}"}, 404)
        try:
            return handler(req)
        except ConfigError as exc:
            return json_response({"error": str(exc)}, 400)

    def _state_control(self, handler: Callable[[Any], Any], req: SimRequest) -> SimResponse:
        try:
            payload = json.loads(req.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return json_response({"error": f"control body is not JSON: {exc}"}, 400)
        try:
            with self.lock:
                result = handler(payload)
                self._persist()
            return json_response(result)
        except ConfigError as exc:
            return json_response({"error": str(exc)}, 400)

    def _ctl_health(self, _req: SimRequest) -> SimResponse:
        return json_response({"status": "ok", "simulator": self.name, "pid": os.getpid()})

    def _ctl_state(self, _req: SimRequest) -> SimResponse:
        with self.lock:
            state = self.dump_state()
            state["requests"] = dict(sorted(self.counters.items()))
            state["clock_offset"] = self.clock_offset
        state["faults"] = self.faults.describe()
        return json_response(state)

    def _ctl_reset(self, _req: SimRequest) -> SimResponse:
        with self.lock:
            self.clock_offset = 0.0  # first: the fresh state is stamped with the real time
            self.reset_state()
            self.counters.clear()
            self.request_log.clear()
        self.faults.clear()
        return json_response({"reset": True})

    def _ctl_requests(self, _req: SimRequest) -> SimResponse:
        with self.lock:
            log = list(self.request_log)
        return json_response({"count": len(log), "requests": log})

    def _ctl_requests_clear(self, _req: SimRequest) -> SimResponse:
        """Forget the request log and the per-operation counters; tickets and sessions stay."""
        with self.lock:
            self.request_log.clear()
            self.counters.clear()
        return json_response({"count": 0, "requests": []})

    def _ctl_faults_list(self, _req: SimRequest) -> SimResponse:
        return json_response({"faults": self.faults.describe()})

    def _ctl_faults_add(self, req: SimRequest) -> SimResponse:
        payload = _control_json(req)
        items = payload if isinstance(payload, list) else [payload]
        faults = [Fault.from_json(item) for item in items]  # validate all before adding any
        added = [self.faults.add(fault).to_json() for fault in faults]
        return json_response({"added": added, "faults": self.faults.describe()})

    def _ctl_faults_clear(self, _req: SimRequest) -> SimResponse:
        self.faults.clear()
        return json_response({"faults": []})

    def _ctl_clock(self, req: SimRequest) -> SimResponse:
        payload = _control_json(req)
        if not isinstance(payload, dict) or isinstance(payload.get("advance"), bool) or not isinstance(payload.get("advance"), (int, float)):
            raise ConfigError('expected {"advance": seconds}')
        with self.lock:
            self.clock_offset += float(payload["advance"])
            return json_response({"clock_offset": self.clock_offset, "now": self.now()})


def _control_json(req: SimRequest) -> Any:
    try:
        return json.loads(req.body.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"control body is not JSON: {exc}") from exc


# --------------------------------------------------------------------------- HTTP server


class SimRequestHandler(BaseHTTPRequestHandler):
    """Turns HTTP exchanges into SimRequest/SimResponse calls on the server's app."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle's algorithm a keep-alive client (requests.Session)
    # waits for the delayed ACK, about 45 ms per request; a real server answers in well under a millisecond.
    disable_nagle_algorithm = True
    server_version = "Apache"
    sys_version = ""
    server: SimHTTPServer

    def do_GET(self) -> None:
        self._exchange()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _exchange(self) -> None:
        started = time.monotonic()
        app = self.server.app
        path, _sep, query = self.path.partition("?")
        limit = None if path.startswith(CONTROL_PREFIX) else app.body_limit()
        body, too_large = self._read_body(limit)
        if too_large:
            resp = text_response(reason(413), 413)
            self.close_connection = True
        else:
            req = SimRequest(self.command, path, query, self.headers, body, self.client_address[0])
            try:
                resp = app.handle(req)
            except Exception:  # noqa: BLE001 pylint: disable=broad-exception-caught
                # A simulator bug must show up in the log and as a 500, never kill the thread silently.
                traceback.print_exc(file=sys.stderr)
                resp = text_response("Internal Server Error", 500)
        if not app.quiet:
            # Logged before the response goes out, so a client that got its answer finds the line.
            self._log(app, path, query, resp, started)
        if resp.drop:
            self._drop()
        else:
            self._send(resp)

    def _read_body(self, limit: int | None) -> tuple[bytes, bool]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            if length <= _DRAIN_LIMIT:
                self.rfile.read(length)
            return b"", True
        return (self.rfile.read(length) if length > 0 else b""), False

    def _read_chunked(self, limit: int | None) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
            total += size
        return b"".join(chunks), limit is not None and total > limit

    def _send(self, resp: SimResponse) -> None:
        self.send_response(resp.status, reason(resp.status))
        if resp.content_type is not None:
            self.send_header("Content-Type", resp.content_type)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and resp.body:
            self.wfile.write(resp.body)

    def _drop(self) -> None:
        """Close the connection without a single response byte (what a crashed proxy does)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _log(self, app: SimulatorApp, path: str, query: str, resp: SimResponse, started: float) -> None:
        target = app.mask_path(path) + (f"?{mask_query(query)}" if query else "")
        status = "DROP" if resp.drop else str(resp.status)
        line = f"[{app.name}] {self.client_address[0]} {self.command} {target} -> {status} {(time.monotonic() - started) * 1000:.1f}ms\n"
        with _LOG_LOCK:
            sys.stderr.write(line)
            sys.stderr.flush()

    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        """Silence http.server's own access log: :meth:`_log` writes a masked one."""


_LOG_LOCK = threading.Lock()


class SimHTTPServer(ThreadingHTTPServer):
    """Threaded server (one thread per connection, keep-alive) bound to one app."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SimulatorApp) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, SimRequestHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def serve_in_thread(app: SimulatorApp, host: str = "127.0.0.1", port: int = 0) -> tuple[SimHTTPServer, threading.Thread]:
    """Start ``app`` on a background thread (for in-process tests); stop with ``server.shutdown()``."""
    server = SimHTTPServer((host, port), app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sim-{app.name}", daemon=True)
    thread.start()
    return server, thread


# --------------------------------------------------------------------------- command line


def write_port_file(path: str, port: int) -> None:
    """Write atomically so a watcher never reads a half-written number."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(f"{port}\n")
    os.replace(tmp, path)


def build_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--config", metavar="FILE", help="JSON file whose keys override the default config (see --print-config)")
    parser.add_argument("--port-file", metavar="FILE", help="write the bound port to FILE once the server accepts connections")
    parser.add_argument("--state-file", metavar="FILE", help="persist state in FILE (overrides the config key state_file)")
    parser.add_argument("--quiet", action="store_true", help="do not log one line per request to stderr")
    parser.add_argument("--print-config", action="store_true", help="print the default config as JSON and exit")
    return parser


def load_config(defaults: Mapping[str, Any], path: str | None, state_file: str | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as handle:
            overrides = json.load(handle)
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}: the config must be a JSON object")
    if state_file:
        overrides["state_file"] = state_file
    return merge_config(defaults, overrides)


def run_cli(
    factory: Callable[[Mapping[str, Any]], SimulatorApp],
    defaults: Mapping[str, Any],
    parser: argparse.ArgumentParser,
    argv: list[str] | None = None,
    profile: Callable[[argparse.Namespace], Mapping[str, Any]] | None = None,
) -> int:
    """Parse the command line, serve until SIGTERM/SIGINT, then persist and exit 0.

    ``profile(args)`` may return other defaults (a named profile such as ``--lab``); ``--config`` overrides them.
    """
    args = parser.parse_args(argv)
    if profile is not None:
        defaults = profile(args)
    if args.print_config:
        print(json.dumps(defaults, indent=2, sort_keys=True))
        return 0
    try:
        app = factory(load_config(defaults, args.config, args.state_file))
    except (ConfigError, OSError, json.JSONDecodeError) as exc:
        parser.error(str(exc))
    app.quiet = args.quiet
    server = SimHTTPServer((args.host, args.port), app)

    def _stop(_signum: int, _frame: Any) -> None:
        # shutdown() blocks until serve_forever returns, so it cannot run on the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.port_file:
        write_port_file(args.port_file, server.port)
    sys.stderr.write(f"[{app.name}] listening on http://{args.host}:{server.port} (pid {os.getpid()})\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        app.close()
    return 0
