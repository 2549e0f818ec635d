"""labops.itsm.alertmanager: AlertManager webhook receiver for Event-Driven Ansible."""

from __future__ import annotations

DOCUMENTATION = r"""
---
short_description: Receive Prometheus AlertManager webhook notifications, one event per alert.
description:
  - An HTTP(S) endpoint for AlertManager's C(webhook_config) receiver (payload version 4).
  - Every request is authenticated (bearer token or HTTP basic), size-limited and validated
    before any event is queued. Each alert of the notification becomes one event carrying the
    alert, its group, a correlation key and a deterministic C(meta.uuid).
  - The answer is 200 only after every event of the request is on the rulebook queue;
    overload and shutdown answer 503 so AlertManager retries, input that can never be valid
    answers 4xx so AlertManager does not retry it.
  - C(GET <path>/health) answers 200 with counters (no authentication, no secrets).
  - No request header, cookie or credential is ever copied into an event.
requirements:
  - Python >= 3.11 (as ansible-core 2.19)
  - aiohttp (already a dependency of ansible-rulebook)
options:
  host:
    description: Address to listen on. Use C(0.0.0.0) or C(::) only together with TLS and credentials.
    type: str
    default: 127.0.0.1
  port:
    description: TCP port to listen on.
    type: int
    default: 5000
  path:
    description: URL path of the webhook. The health endpoint is this path plus C(/health).
    type: str
    default: /alertmanager
  token:
    description: Bearer token expected in C(Authorization). Compared in constant time.
    type: str
  basic_auth_user:
    description: HTTP basic user name; requires O(basic_auth_password).
    type: str
  basic_auth_password:
    description: HTTP basic password; requires O(basic_auth_user).
    type: str
  allow_unauthenticated:
    description:
      - Allow running without O(token) and basic auth on a non-loopback O(host).
      - Without credentials the source refuses to start on a non-loopback address unless this is true.
    type: bool
    default: false
  certfile:
    description: PEM certificate (chain) for HTTPS; enables TLS.
    type: str
  keyfile:
    description: PEM private key for O(certfile) when it is not inside the certificate file.
    type: str
  cafile:
    description: PEM CA bundle; when set, clients must present a certificate signed by it (mTLS).
    type: str
  max_body_bytes:
    description: Largest accepted request body; larger bodies answer 413.
    type: int
    default: 1048576
  max_alerts:
    description: Largest number of alerts accepted in one notification; more answer 413.
    type: int
    default: 1000
  queue_timeout:
    description:
      - Seconds one request may wait, in total, for room on the rulebook queue for all its events.
      - When it runs out the request answers 503 and AlertManager retries. Keep it below the
        receiver's C(webhook_config.timeout).
    type: float
    default: 10.0
  hosts_from_label:
    description:
      - Alert label whose value (without C(:port)) becomes C(meta.hosts), the C(--limit) of
        C(run_playbook). Unset by default, so no host limit is ever derived from labels.
    type: str
"""

EXAMPLES = r"""
- name: AlertManager to ITSM
  hosts: localhost
  sources:
    - name: alertmanager
      labops.itsm.alertmanager:
        host: 0.0.0.0
        port: 5443
        token: "{{ am_webhook_token }}"
        certfile: /etc/eda/tls/server.pem
        keyfile: /etc/eda/tls/server.key
  rules:
    - name: open or update an incident
      condition: event.alert.status == "firing"
      action:
        run_playbook:
          name: labops.itsm.incident_open
"""

import asyncio
import base64
import binascii
import datetime
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import ssl
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from aiohttp import hdrs, web

LOGGER = logging.getLogger("labops.itsm.alertmanager")

# meta.uuid = uuid5(EVENT_UUID_NAMESPACE, "groupKey|fingerprint|status|startsAt").
# The namespace is uuid5(NAMESPACE_URL, "urn:labops.itsm:eda:alertmanager"); never change it,
# persisted deduplication relies on it.
EVENT_UUID_NAMESPACE = uuid.UUID("6270bfbe-3bb0-527b-9499-8037c14236b9")
_NAMESPACE_BYTES = EVENT_UUID_NAMESPACE.bytes
CORRELATION_PREFIX = "alertmanager|"
CORRELATION_KEY_LENGTH = 24
ALERT_STATUSES = frozenset(("firing", "resolved"))
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
_HOST_PORT = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<name>[^:]+)):\d+")
_OPTIONAL_DICTS = (("groupLabels", "labels"), ("commonLabels", "common_labels"), ("commonAnnotations", "common_annotations"))
_IGNORED_ARGS = frozenset(("eda_feedback_queue",))
_SHUTDOWN_GRACE = 2.0


class PayloadError(ValueError):
    """A request body that can never be accepted (answered 4xx, never retried)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Config:
    """Validated source options."""

    host: str = "127.0.0.1"
    port: int = 5000
    path: str = "/alertmanager"
    token: str | None = field(default=None, repr=False)
    basic_auth_user: str | None = None
    basic_auth_password: str | None = field(default=None, repr=False)
    allow_unauthenticated: bool = False
    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None
    max_body_bytes: int = 1048576
    max_alerts: int = 1000
    queue_timeout: float = 10.0
    hosts_from_label: str | None = None

    @property
    def health_path(self) -> str:
        """The health endpoint: the webhook path plus ``/health``."""
        return self.path.rstrip("/") + "/health"

    @property
    def authenticated(self) -> bool:
        """True when any credential is configured."""
        return self.token is not None or self.basic_auth_user is not None


def _option_str(args: dict[str, Any], name: str) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"alertmanager: option '{name}' must be a non-empty string")
    return value


def _option_int(args: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = args.get(name, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"alertmanager: option '{name}' must be an integer between {low} and {high}")
    return value


def _option_float(args: dict[str, Any], name: str, default: float) -> float:
    value = args.get(name, default)
    try:
        number = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        number = -1.0
    if not 0 < number <= 3600:
        raise ValueError(f"alertmanager: option '{name}' must be a number of seconds in (0, 3600]")
    return number


def _option_bool(args: dict[str, Any], name: str) -> bool:
    value = args.get(name, False)
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    if not isinstance(value, bool):
        raise ValueError(f"alertmanager: option '{name}' must be a boolean")
    return value


def _check_unknown(args: dict[str, Any]) -> None:
    known = {item.name for item in fields(Config)}
    unknown = sorted(str(key) for key in args if key not in known and key not in _IGNORED_ARGS)
    if "feedback" in unknown:
        raise ValueError("alertmanager: option 'feedback' is not supported by this source")
    if unknown:
        raise ValueError(f"alertmanager: unknown option(s): {', '.join(unknown)}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_consistency(config: Config) -> None:
    if not config.path.startswith("/") or "{" in config.path or "}" in config.path:
        raise ValueError("alertmanager: option 'path' must start with '/' and contain no '{' or '}'")
    if (config.basic_auth_user is None) != (config.basic_auth_password is None):
        raise ValueError("alertmanager: options 'basic_auth_user' and 'basic_auth_password' go together")
    if config.basic_auth_user is not None and ":" in config.basic_auth_user:
        raise ValueError("alertmanager: option 'basic_auth_user' must not contain ':'")
    if (config.keyfile or config.cafile) and not config.certfile:
        raise ValueError("alertmanager: options 'keyfile' and 'cafile' need 'certfile'")
    if not config.authenticated and not config.allow_unauthenticated and not _is_loopback(config.host):
        raise ValueError(
            "alertmanager: refusing to listen on a non-loopback address without 'token' or basic auth "
            "(set 'allow_unauthenticated: true' to override)"
        )


def parse_config(args: dict[str, Any]) -> Config:
    """Turn rulebook arguments into a Config; raise ValueError with a plain message on bad input."""
    if not isinstance(args, dict):
        raise ValueError("alertmanager: arguments must be a mapping")
    _check_unknown(args)
    config = Config(
        host=_option_str(args, "host") or Config.host,
        port=_option_int(args, "port", Config.port, 0, 65535),
        path=_option_str(args, "path") or Config.path,
        token=_option_str(args, "token"),
        basic_auth_user=_option_str(args, "basic_auth_user"),
        basic_auth_password=_option_str(args, "basic_auth_password"),
        allow_unauthenticated=_option_bool(args, "allow_unauthenticated"),
        certfile=_option_str(args, "certfile"),
        keyfile=_option_str(args, "keyfile"),
        cafile=_option_str(args, "cafile"),
        max_body_bytes=_option_int(args, "max_body_bytes", Config.max_body_bytes, 1024, 1 << 30),
        max_alerts=_option_int(args, "max_alerts", Config.max_alerts, 1, 1000000),
        queue_timeout=_option_float(args, "queue_timeout", Config.queue_timeout),
        hosts_from_label=_option_str(args, "hosts_from_label"),
    )
    _check_consistency(config)
    return config


def ssl_context(config: Config) -> ssl.SSLContext | None:
    """Server TLS context (client certificates required when cafile is set), or None for HTTP."""
    if not config.certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.certfile, config.keyfile)
        if config.cafile:
            context.load_verify_locations(cafile=config.cafile)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"alertmanager: cannot load TLS material ({exc.__class__.__name__}: {exc})") from None
    return context


def canonical_timestamp(value: str) -> str:
    """RFC 3339 ``value`` as AlertManager's webhook writes it: UTC, ``Z``, fraction without trailing zeros.

    The same instant is written ``...:25Z`` in a webhook and ``...:25.000Z`` by the v2 API (Go's
    RFC3339Nano against strfmt's fixed milliseconds); keys derived from it must not depend on which
    one a caller saw. The filter plugin ``labops.itsm.correlation_key`` applies the same rule.
    """
    if value[-1] == "Z" and (value[-2] != "0" or "." not in value):
        return value  # already canonical: the webhook's own form, the common case
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    seconds, fraction, zone = match.groups()
    fraction = (fraction or "").rstrip("0").rstrip(".")
    if zone not in ("Z", "+00:00", "-00:00"):
        sign = 1 if zone[0] == "+" else -1
        offset = datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * sign
        seconds = (datetime.datetime.strptime(seconds, "%Y-%m-%dT%H:%M:%S") - offset).strftime("%Y-%m-%dT%H:%M:%S")
    return seconds + fraction + "Z"


def correlation_key(fingerprint: str, starts_at: str) -> str:
    """One key per alert episode: sha256("alertmanager|<fingerprint>|<canonical startsAt>") hex, 24 chars."""
    digest = hashlib.sha256((CORRELATION_PREFIX + fingerprint + "|" + starts_at).encode("utf-8"))
    return digest.hexdigest()[:CORRELATION_KEY_LENGTH]


def event_uuid(group_key: str, fingerprint: str, status: str, starts_at: str) -> str:
    """Deterministic meta.uuid (RFC 4122 version 5) so persistence mode drops replayed notifications.

    Same value as ``str(uuid.uuid5(EVENT_UUID_NAMESPACE, name))``, without building UUID objects.
    """
    name = f"{group_key}|{fingerprint}|{status}|{starts_at}".encode("utf-8")
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def host_of(value: str) -> str:
    """Strip a ``:port`` suffix (``node:9100`` -> ``node``, ``[::1]:9100`` -> ``::1``)."""
    match = _HOST_PORT.fullmatch(value)
    if match is None:
        return value
    return match.group("v6") or match.group("name")


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: expected an object")
    for item in value.values():
        if not isinstance(item, str):
            raise PayloadError(f"{where}: values must be strings")
    return value


def _optional_str(source: dict[str, Any], key: str, where: str) -> str | None:
    value = source.get(key)
    if value is not None and not isinstance(value, str):
        raise PayloadError(f"{where}.{key}: expected a string")
    return value


def _timestamp(source: dict[str, Any], key: str, where: str) -> str:
    value = source.get(key)
    if not isinstance(value, str) or _TIMESTAMP.fullmatch(value) is None:
        raise PayloadError(f"{where}.{key}: expected an RFC 3339 timestamp")
    return value


def _group_of(payload: Any) -> dict[str, Any]:
    """Validate the notification envelope and return the event's ``group`` part."""
    if not isinstance(payload, dict):
        raise PayloadError("body: expected a JSON object")
    if payload.get("version") != "4":
        raise PayloadError('version: expected "4"')
    key = payload.get("groupKey")
    if not isinstance(key, str) or not key:
        raise PayloadError("groupKey: expected a non-empty string")
    status = payload.get("status", "firing")
    if status not in ALERT_STATUSES:
        raise PayloadError("status: expected firing or resolved")
    truncated = payload.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int):
        raise PayloadError("truncatedAlerts: expected an integer")
    group = {
        "key": key,
        "key_hash": hashlib.sha256(key.encode("utf-8")).hexdigest(),
        "status": status,
        "receiver": _optional_str(payload, "receiver", "body") or "",
        "notification_reason": _optional_str(payload, "notification_reason", "body"),
        "external_url": _optional_str(payload, "externalURL", "body") or "",
        "truncated_alerts": truncated,
    }
    for source_key, target in _OPTIONAL_DICTS:
        group[target] = _string_map(payload.get(source_key, {}), source_key)
    return group


def _alert_of(raw: Any, index: int) -> dict[str, Any]:
    """Validate one alert and return the event's ``alert`` part (unknown keys dropped)."""
    where = f"alerts[{index}]"
    if not isinstance(raw, dict):
        raise PayloadError(f"{where}: expected an object")
    status = raw.get("status")
    if status not in ALERT_STATUSES:
        raise PayloadError(f"{where}.status: expected firing or resolved")
    fingerprint = raw.get("fingerprint")
    if not isinstance(fingerprint, str) or _FINGERPRINT.fullmatch(fingerprint) is None:
        raise PayloadError(f"{where}.fingerprint: expected 16 lowercase hex characters")
    labels = _string_map(raw.get("labels"), f"{where}.labels")
    if not labels.get("alertname"):
        raise PayloadError(f"{where}.labels.alertname: required")
    ends_at = raw.get("endsAt")
    return {
        "status": status,
        "fingerprint": fingerprint,
        "startsAt": _timestamp(raw, "startsAt", where),
        "endsAt": None if ends_at is None else _timestamp(raw, "endsAt", where),
        "labels": labels,
        "annotations": _string_map(raw.get("annotations", {}), f"{where}.annotations"),
        "generatorURL": _optional_str(raw, "generatorURL", where) or "",
    }


def _alerts_of(payload: dict[str, Any], max_alerts: int) -> list[dict[str, Any]]:
    raw_alerts = payload.get("alerts")
    if not isinstance(raw_alerts, list):
        raise PayloadError("alerts: expected a list")
    if len(raw_alerts) > max_alerts:
        raise PayloadError(f"alerts: {len(raw_alerts)} alerts exceed max_alerts={max_alerts}", status=413)
    return [_alert_of(raw, index) for index, raw in enumerate(raw_alerts)]


def build_events(payload: Any, config: Config) -> list[dict[str, Any]]:
    """Validate a version 4 notification and return one event per alert, or raise PayloadError."""
    group = _group_of(payload)
    alerts = _alerts_of(payload, config.max_alerts)
    key = group["key"]
    label = config.hosts_from_label
    events = []
    for alert in alerts:
        fingerprint = alert["fingerprint"]
        starts_at = canonical_timestamp(alert["startsAt"])
        meta: dict[str, Any] = {"uuid": event_uuid(key, fingerprint, alert["status"], starts_at), "endpoint": config.path}
        if label is not None and alert["labels"].get(label):
            meta["hosts"] = [host_of(alert["labels"][label])]
        events.append({"alert": alert, "group": dict(group), "correlation_key": correlation_key(fingerprint, starts_at), "meta": meta})
    return events


@dataclass
class Stats:
    """Counters reported by the health endpoint."""

    accepted_requests: int = 0
    accepted_events: int = 0
    rejected: dict[int, int] = field(default_factory=dict)

    def reject(self, status: int) -> None:
        """Count one rejected request by status code."""
        self.rejected[status] = self.rejected.get(status, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "accepted_requests": self.accepted_requests,
            "accepted_events": self.accepted_events,
            "rejected_requests": sum(self.rejected.values()),
            "rejected_by_status": {str(code): count for code, count in sorted(self.rejected.items())},
        }


class Authenticator:
    """Checks the Authorization header against the configured credentials in constant time."""

    def __init__(self, config: Config) -> None:
        self._token = config.token.encode("utf-8") if config.token else None
        self._basic = None
        if config.basic_auth_user is not None and config.basic_auth_password is not None:
            self._basic = (config.basic_auth_user.encode("utf-8"), config.basic_auth_password.encode("utf-8"))
        self.challenges = []
        if self._token is not None:
            self.challenges.append('Bearer realm="alertmanager"')
        if self._basic is not None:
            self.challenges.append('Basic realm="alertmanager", charset="UTF-8"')

    @property
    def enabled(self) -> bool:
        """True when credentials are required."""
        return bool(self.challenges)

    def check(self, header: str | None) -> bool:
        """True when the header carries valid credentials (or none are configured)."""
        if not self.challenges:
            return True
        if not header:
            return False
        scheme, _sep, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self._token is not None:
            return hmac.compare_digest(value.strip().encode("utf-8"), self._token)
        if scheme == "basic" and self._basic is not None:
            return self._check_basic(value.strip())
        return False

    def _check_basic(self, value: str) -> bool:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        user_ok = hmac.compare_digest(user, self._basic[0]) if self._basic else False
        password_ok = hmac.compare_digest(password, self._basic[1]) if self._basic else False
        return bool(sep) and user_ok and password_ok


class AlertmanagerReceiver:
    """The aiohttp application: authenticates, validates and queues alert events."""

    def __init__(self, queue: Any, config: Config) -> None:
        self._queue = queue
        self._config = config
        self._auth = Authenticator(config)
        self._accepting = True
        self._waiting: set[asyncio.Timeout] = set()
        self._runner: web.AppRunner | None = None
        self.stats = Stats()

    def application(self) -> web.Application:
        """Routes: POST path, GET path/health; everything else 404/405 with a JSON body."""
        app = web.Application(client_max_size=self._config.max_body_bytes)
        router = app.router
        router.add_post(self._config.path, self._receive)
        router.add_route("*", self._config.path, self._method_not_allowed)
        router.add_get(self._config.health_path, self._health)
        router.add_route("*", self._config.health_path, self._method_not_allowed)
        router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def start(self) -> None:
        """Bind and start serving."""
        self._runner = web.AppRunner(self.application(), access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._config.host, self._config.port, ssl_context=ssl_context(self._config))
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        scheme = "https" if self._config.certfile else "http"
        LOGGER.info("alertmanager source listening on %s://%s:%s%s", scheme, self._config.host, self._config.port, self._config.path)
        if not self._auth.enabled:
            LOGGER.warning("alertmanager source runs WITHOUT authentication")

    async def stop(self) -> None:
        """Answer 503 from now on, release waiting requests, close the server."""
        self._accepting = False
        loop = asyncio.get_running_loop()
        for waiting in list(self._waiting):
            if not waiting.expired():
                waiting.reschedule(loop.time())
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _reject(self, request: web.Request, status: int, reason: str) -> web.Response:
        self.stats.reject(status)
        LOGGER.warning("alertmanager source: %s %s from %s rejected with %d: %s", request.method, request.path, request.remote, status, reason)
        return web.json_response({"status": "rejected", "reason": reason}, status=status)

    async def _receive(self, request: web.Request) -> web.Response:
        if not self._auth.check(request.headers.get(hdrs.AUTHORIZATION)):
            response = self._reject(request, 401, "missing or invalid credentials")
            for challenge in self._auth.challenges:
                response.headers.add(hdrs.WWW_AUTHENTICATE, challenge)
            return response
        if not self._accepting:
            return self._reject(request, 503, "shutting down")
        try:
            events = await self._events_of(request)
        except PayloadError as exc:
            return self._reject(request, exc.status, exc.reason)
        try:
            await self._enqueue(events)
        except TimeoutError:
            reason = "shutting down" if not self._accepting else f"event queue full for {self._config.queue_timeout:g}s"
            return self._reject(request, 503, reason)
        self.stats.accepted_requests += 1
        self.stats.accepted_events += len(events)
        return web.json_response({"status": "accepted", "accepted": len(events)})

    async def _events_of(self, request: web.Request) -> list[dict[str, Any]]:
        limit = self._config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise PayloadError(f"body larger than max_body_bytes={limit}", status=413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise PayloadError(f"body larger than max_body_bytes={limit}", status=413) from None
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise PayloadError("body: not valid JSON") from None
        return build_events(payload, self._config)

    async def _enqueue(self, events: list[dict[str, Any]]) -> None:
        put = self._queue.put
        async with asyncio.timeout(self._config.queue_timeout) as waiting:
            self._waiting.add(waiting)
            try:
                for event in events:
                    if not self._accepting:
                        raise TimeoutError
                    await put(event)
            finally:
                self._waiting.discard(waiting)

    async def _health(self, _request: web.Request) -> web.Response:
        body = {"status": "ok" if self._accepting else "stopping", **self.stats.as_dict()}
        return web.json_response(body, status=200 if self._accepting else 503)

    async def _method_not_allowed(self, request: web.Request) -> web.Response:
        allowed = "GET, HEAD" if request.path == self._config.health_path else "POST"
        response = self._reject(request, 405, "method not allowed")
        response.headers[hdrs.ALLOW] = allowed
        return response

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._reject(request, 404, "not found")


async def main(queue: asyncio.Queue, args: dict[str, Any]) -> None:
    """Entry point called by ansible-rulebook; runs until cancelled."""
    config = parse_config(args)
    receiver = AlertmanagerReceiver(queue, config)
    await receiver.start()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        LOGGER.info("alertmanager source cancelled, closing the listener")
        raise
    finally:
        await receiver.stop()


if __name__ == "__main__":

    class MockQueue(asyncio.Queue):
        """Prints events instead of handing them to a rule engine."""

        async def put(self, item: Any) -> None:
            print(json.dumps(item, indent=2, sort_keys=True), flush=True)

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(MockQueue(), {"port": 5000}))
