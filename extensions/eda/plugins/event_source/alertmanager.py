"""labops.itsm.alertmanager: AlertManager webhook receiver for Event-Driven Ansible."""

from __future__ import annotations

DOCUMENTATION = r"""
---
short_description: Receive Prometheus AlertManager webhook notifications, one event per alert.
description:
  - An HTTP(S) endpoint for AlertManager's C(webhook_config) receiver (payload version 4).
  - Every request is authenticated (bearer token or HTTP basic), size-limited, time-limited and
    validated before any event is queued. Each alert of the notification becomes one event carrying
    the alert, its group, a correlation key and a deterministic C(meta.uuid).
  - A notification is accepted whole or not at all. The answer is 200 only after all its events are
    in the source's bounded, in-order hand-over buffer to the rulebook; when the buffer has no room
    for all of them within O(queue_timeout), or during shutdown, the answer is 503 with nothing
    queued, so AlertManager retries. Input that can never be valid answers 4xx so AlertManager
    does not retry it.
  - C(GET <path>/health) answers 200 with counters (no authentication, no secrets).
  - No request header, cookie or credential is ever copied into an event.
  - An invalid configuration raises at start-up; ansible-rulebook then stops with exit code 1.
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
  max_pending_events:
    description:
      - Capacity of the hand-over buffer between accepted notifications and the rulebook queue.
      - A notification is admitted only when all its events fit; must be at least O(max_alerts).
    type: int
    default: 5000
  queue_timeout:
    description:
      - Seconds one request may wait for room in the hand-over buffer for all its events (O(delivery=event)),
        or for the intake spool's write lock (O(delivery=batch), SQLite).
      - When it runs out the request answers 503, nothing of it is queued, and AlertManager retries.
        Keep it below the receiver's C(webhook_config.timeout).
    type: float
    default: 10.0
  header_timeout:
    description:
      - Seconds a connection may take to deliver the complete request line and headers, counted
        from the connection's start or from the first byte of a further request on a kept-alive
        connection. Also bounds the TLS handshake. On expiry the connection is closed (after a 408
        answer when part of a request had arrived).
    type: float
    default: 10.0
  body_timeout:
    description:
      - Seconds the whole request body may take to arrive once the headers are in; then 408 and the
        connection is closed.
    type: float
    default: 30.0
  hosts_from_label:
    description:
      - Alert label whose value (without C(:port)) becomes C(meta.hosts), the C(--limit) of
        C(run_playbook). Unset by default, so no host limit is ever derived from labels.
        Only with O(delivery=event).
    type: str
  token_file:
    description:
      - File holding the bearer token (one trailing newline is ignored). Keeps the token out of
        ansible-rulebook's environment, which it hands to every playbook run (ansible-runner writes it into its artifacts).
      - Mutually exclusive with O(token).
    type: path
  basic_auth_password_file:
    description: File holding the HTTP basic password; mutually exclusive with O(basic_auth_password).
    type: path
  delivery:
    description:
      - V(batch) (default) is the durable intake. A notification is answered 2xx only after its events are
        committed to the intake spool, all or nothing; a dispatcher hands due spool entries to the rulebook
        as C(intake_batch) events (one per batch, entry ids only), at most O(max_concurrent_runs) at a time;
        the run records each entry's outcome in the spool; failed entries come back after a back-off until
        O(retry_for) has passed and then stay as dead letters (C(labops.itsm.intake_spool) lists and replays
        them). A repeat of an alert episode already queued or handled (same correlation key and status) is
        absorbed before it costs a run. Entries a stopped daemon left unhandled are dispatched again on start.
      - V(event) puts one event per alert on the rulebook queue from an in-memory buffer; nothing is persisted
        and a daemon restart loses what was not handled. For rulebooks that match single alerts and need no
        incident bookkeeping.
    type: str
    choices: [batch, event]
    default: batch
  spool_backend:
    description: Intake spool backend (O(delivery=batch)); the same backends as the audit ledger.
    type: str
    choices: [sqlite, postgresql]
    default: sqlite
    env:
      - name: LABOPS_SPOOL_BACKEND
  spool_path:
    description: SQLite file of the intake spool.
    type: path
    default: ~/.local/state/labops/intake_spool.sqlite3
    env:
      - name: LABOPS_SPOOL_PATH
  spool_dsn:
    description:
      - PostgreSQL connection string of the intake spool. The playbook runs read it from
        C(LABOPS_SPOOL_DSN); keep passwords in a C(PGPASSFILE), not in the DSN.
    type: str
    env:
      - name: LABOPS_SPOOL_DSN
  max_concurrent_runs:
    description:
      - Most playbook runs (batches) in flight at once. Each run is an C(ansible-playbook) process of about
        0.8 s CPU before any work; the default (or 0) fits the machine, its CPU count but at most 4.
    type: int
  max_batch_events:
    description: Most spool entries in one batch (one playbook run, one module call).
    type: int
    default: 200
  retry_initial_delay:
    description: Seconds before the first retry of an entry whose run failed; doubles per failed run.
    type: float
    default: 10
  retry_max_delay:
    description: Longest back-off between two runs of one entry, in seconds.
    type: float
    default: 300
  retry_for:
    description:
      - Seconds after acceptance during which a failing entry is retried; then it becomes a dead letter.
    type: float
    default: 3600
  run_timeout:
    description:
      - Seconds a dispatched batch may take to record its outcomes; entries still without one then count as
        a failed run (a run lost by the rule engine, a hung playbook).
    type: float
    default: 900
  shutdown_grace:
    description:
      - On SIGTERM the source answers 503 at once, dispatches nothing new and waits up to this many seconds
        for the runs in flight before it lets ansible-rulebook stop; whatever is not done stays in the spool.
    type: float
    default: 30
  spool_retention:
    description: Seconds a handled entry is kept to absorb repeats (AlertManager repeats a firing alert every C(repeat_interval)).
    type: float
    default: 604800
  reconcile_interval:
    description:
      - Seconds between C(intake_reconcile) events (the rulebook runs C(labops.itsm.alert_reconcile) on them);
        0 turns them off. Needs O(alertmanager_url).
    type: float
    default: 0
  alertmanager_url:
    description:
      - AlertManager's base URL, passed to reconciliation runs in the C(intake_reconcile) event. An empty
        string means unset.
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
import collections
import concurrent.futures
import datetime
import functools
import hashlib
import hmac
import importlib
import ipaddress
import json
import logging
import math
import os
import re
import signal
import ssl
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestPayloadError

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
# [0-9], never \d: \d also matches Arabic-Indic, fullwidth and other Unicode digits.
_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})")
_UTC_ZONES = frozenset(("Z", "+00:00", "-00:00"))
_HOST_PORT = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<name>[^:]+)):\d+")
# A JSON escape of a UTF-16 surrogate (\uD800-\uDFFF); a cheap pre-check before the exact one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_OPTIONAL_DICTS = (("groupLabels", "labels"), ("commonLabels", "common_labels"), ("commonAnnotations", "common_annotations"))
_IGNORED_ARGS = frozenset(("eda_feedback_queue",))
_IDENTITY_ENCODINGS = frozenset(("", "identity"))
_MAX_TRUNCATED = (1 << 63) - 1
_SHUTDOWN_GRACE = 2.0
_CONFIG_PREFIX = "labops.itsm.alertmanager: invalid source configuration: "


class ConfigError(ValueError):
    """A source configuration that cannot work; raised from main() so ansible-rulebook exits non-zero."""

    def __init__(self, reason: str) -> None:
        super().__init__(_CONFIG_PREFIX + reason)


class PayloadError(ValueError):
    """A request that can never be accepted (answered 4xx, never retried)."""

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
    max_pending_events: int = 5000
    queue_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    hosts_from_label: str | None = None
    delivery: str = "batch"
    spool_backend: str = "sqlite"
    spool_path: str = "~/.local/state/labops/intake_spool.sqlite3"
    spool_dsn: str | None = field(default=None, repr=False)
    max_concurrent_runs: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    max_batch_events: int = 200
    retry_initial_delay: float = 10.0
    retry_max_delay: float = 300.0
    retry_for: float = 3600.0
    run_timeout: float = 900.0
    shutdown_grace: float = 30.0
    spool_retention: float = 604800.0
    reconcile_interval: float = 0.0
    alertmanager_url: str | None = None

    @property
    def health_path(self) -> str:
        """The health endpoint: the webhook path plus ``/health``."""
        return self.path.rstrip("/") + "/health"

    @property
    def authenticated(self) -> bool:
        """True when any credential is configured."""
        return self.token is not None or self.basic_auth_user is not None


def _check_undefined(args: dict[str, Any]) -> None:
    """ansible-rulebook passes a Jinja ``StrictUndefined`` for a variable it does not know (a forgotten --env-vars)."""
    for name, value in args.items():
        if type(value).__name__.endswith("Undefined"):
            variable = getattr(value, "_undefined_name", None) or "?"
            raise ConfigError(
                f"option '{name}' uses the undefined rulebook variable '{variable}' "
                "(pass it with --env-vars or --vars)"
            )


def _option_str(args: dict[str, Any], name: str) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, str) and not value:
        raise ConfigError(f"option '{name}' is empty (an empty environment variable or vars entry?)")
    if not isinstance(value, str):
        raise ConfigError(f"option '{name}' must be a non-empty string")
    return value


def _option_int(args: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = args.get(name, default)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"option '{name}' must be an integer between {low} and {high}")
    return value


def _option_float(args: dict[str, Any], name: str, default: float) -> float:
    number = _seconds_value(args.get(name, default))
    if not 0 < number <= 3600:
        raise ConfigError(f"option '{name}' must be a number of seconds in (0, 3600]")
    return number


def _seconds_value(value: Any) -> float:
    """The number in ``value`` (a number or a numeric string), or -1.0 for anything else (booleans, NaN, text)."""
    try:
        number = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        return -1.0
    return -1.0 if math.isnan(number) else number


def _option_seconds(args: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    number = _seconds_value(args.get(name, default))
    if not low <= number <= high:
        raise ConfigError(f"option '{name}' must be a number of seconds in [{low:g}, {high:g}]")
    return number


def _secret_file(args: dict[str, Any], name: str, value_option: str) -> str | None:
    """The secret held in the file named by option ``name`` (one trailing newline dropped), or None."""
    path = _option_str(args, name)
    if path is None:
        return None
    if args.get(value_option) is not None:
        raise ConfigError(f"options '{value_option}' and '{name}' are mutually exclusive")
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as handle:
            secret = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"option '{name}': cannot read {path} ({type(exc).__name__})") from None
    secret = secret.removesuffix("\n")
    if not secret or "\n" in secret:
        raise ConfigError(f"option '{name}': {path} must hold the secret on one line")
    return secret


def _option_bool(args: dict[str, Any], name: str) -> bool:
    value = args.get(name, False)
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    if not isinstance(value, bool):
        raise ConfigError(f"option '{name}' must be a boolean")
    return value


def _option_choice(args: dict[str, Any], name: str, choices: tuple[str, ...], fallback: str | None = None) -> str:
    value = args.get(name)
    if value is None:
        value = fallback or choices[0]
    if value not in choices:
        raise ConfigError(f"option '{name}' must be one of {', '.join(choices)}")
    return str(value)


_FILE_OPTIONS = frozenset(("token_file", "basic_auth_password_file"))


def _check_unknown(args: dict[str, Any]) -> None:
    known = {item.name for item in fields(Config)} | _FILE_OPTIONS
    unknown = sorted(str(key) for key in args if key not in known and key not in _IGNORED_ARGS)
    if "feedback" in unknown:
        raise ConfigError("option 'feedback' is not supported by this source")
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(unknown)}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_consistency(config: Config) -> None:
    if not config.path.startswith("/") or "{" in config.path or "}" in config.path:
        raise ConfigError("option 'path' must start with '/' and contain no '{' or '}'")
    if (config.basic_auth_user is None) != (config.basic_auth_password is None):
        raise ConfigError("options 'basic_auth_user' and 'basic_auth_password' go together")
    if config.basic_auth_user is not None and ":" in config.basic_auth_user:
        raise ConfigError("option 'basic_auth_user' must not contain ':'")
    if (config.keyfile or config.cafile) and not config.certfile:
        raise ConfigError("options 'keyfile' and 'cafile' need 'certfile'")
    if config.retry_max_delay < config.retry_initial_delay:
        raise ConfigError("option 'retry_max_delay' must be at least 'retry_initial_delay'")
    if config.delivery == "batch" and config.spool_backend == "postgresql" and not config.spool_dsn:
        raise ConfigError("spool_backend postgresql needs 'spool_dsn' (or LABOPS_SPOOL_DSN)")
    if config.reconcile_interval and not config.alertmanager_url:
        raise ConfigError("option 'reconcile_interval' needs 'alertmanager_url'")
    if config.max_pending_events < config.max_alerts:
        raise ConfigError("option 'max_pending_events' must be at least 'max_alerts' (a notification is accepted whole)")
    if not config.authenticated and not config.allow_unauthenticated and not _is_loopback(config.host):
        raise ConfigError(
            "refusing to listen on a non-loopback address without 'token' or basic auth "
            "(set 'allow_unauthenticated: true' to override)"
        )


def parse_config(args: dict[str, Any]) -> Config:
    """Turn rulebook arguments into a Config; raise ConfigError (a ValueError) with a plain message."""
    if not isinstance(args, dict):
        raise ConfigError("arguments must be a mapping")
    _check_unknown(args)
    _check_undefined(args)
    config = Config(
        host=_option_str(args, "host") or Config.host,
        port=_option_int(args, "port", Config.port, 0, 65535),
        path=_option_str(args, "path") or Config.path,
        token=_secret_file(args, "token_file", "token") or _option_str(args, "token"),
        basic_auth_user=_option_str(args, "basic_auth_user"),
        basic_auth_password=_secret_file(args, "basic_auth_password_file", "basic_auth_password") or _option_str(args, "basic_auth_password"),
        allow_unauthenticated=_option_bool(args, "allow_unauthenticated"),
        certfile=_option_str(args, "certfile"),
        keyfile=_option_str(args, "keyfile"),
        cafile=_option_str(args, "cafile"),
        max_body_bytes=_option_int(args, "max_body_bytes", Config.max_body_bytes, 1024, 1 << 30),
        max_alerts=_option_int(args, "max_alerts", Config.max_alerts, 1, 1000000),
        max_pending_events=_option_int(args, "max_pending_events", Config.max_pending_events, 1, 10000000),
        queue_timeout=_option_float(args, "queue_timeout", Config.queue_timeout),
        header_timeout=_option_float(args, "header_timeout", Config.header_timeout),
        body_timeout=_option_float(args, "body_timeout", Config.body_timeout),
        hosts_from_label=_option_str(args, "hosts_from_label"),
        delivery=_option_choice(args, "delivery", ("batch", "event")),
        spool_backend=_option_choice(args, "spool_backend", ("sqlite", "postgresql"), os.environ.get("LABOPS_SPOOL_BACKEND")),
        spool_path=_option_str(args, "spool_path") or os.environ.get("LABOPS_SPOOL_PATH") or Config.spool_path,
        spool_dsn=_option_str(args, "spool_dsn") or os.environ.get("LABOPS_SPOOL_DSN") or None,
        max_concurrent_runs=_option_int(args, "max_concurrent_runs", 0, 0, 64) or min(4, os.cpu_count() or 1),
        max_batch_events=_option_int(args, "max_batch_events", Config.max_batch_events, 1, 100000),
        retry_initial_delay=_option_seconds(args, "retry_initial_delay", Config.retry_initial_delay, 0.01, 86400),
        retry_max_delay=_option_seconds(args, "retry_max_delay", Config.retry_max_delay, 0.01, 86400),
        retry_for=_option_seconds(args, "retry_for", Config.retry_for, 0, 30 * 86400),
        run_timeout=_option_seconds(args, "run_timeout", Config.run_timeout, 1, 86400),
        shutdown_grace=_option_seconds(args, "shutdown_grace", Config.shutdown_grace, 0, 3600),
        spool_retention=_option_seconds(args, "spool_retention", Config.spool_retention, 60, 365 * 86400),
        reconcile_interval=_option_seconds(args, "reconcile_interval", Config.reconcile_interval, 0, 86400),
        # Empty means unset here: a rulebook passes "{{ alertmanager_url | default('') }}".
        alertmanager_url=_option_str(args, "alertmanager_url") if args.get("alertmanager_url") != "" else None,
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
        raise ConfigError(f"cannot load TLS material ({exc.__class__.__name__}: {exc})") from None
    return context


# --------------------------------------------------------------------------- keys


def canonical_timestamp(value: str) -> str:
    """RFC 3339 ``value`` as AlertManager's webhook writes it: UTC, ``Z``, fraction without trailing zeros.

    The same instant is written ``...:25Z`` in a webhook and ``...:25.000Z`` by the v2 API (Go's
    RFC3339Nano against strfmt's fixed milliseconds); keys derived from it must not depend on which
    one a caller saw. The filter plugin ``labops.itsm.correlation_key`` applies the same rule.
    Raises ValueError for anything that is not an RFC 3339 date and time of years 1-9999 (UTC):
    ASCII digits only, a real calendar date, hours 00-23, seconds 00-59, offsets up to 23:59.
    """
    match = _TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        raise ValueError(f"not a calendar date and time: {value!r}") from None
    if zone == "Z" and not (fraction and fraction[-1] == "0"):
        return value  # already canonical: the webhook's own form, the common case
    fraction = (fraction or "").rstrip("0").rstrip(".")
    if zone in _UTC_ZONES:
        return value[:19] + fraction + "Z"
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(f"not a UTC offset: {value!r}")
    offset = datetime.timedelta(hours=hours, minutes=minutes)
    try:
        moment = moment - offset if zone[0] == "+" else moment + offset
    except OverflowError:
        raise ValueError(f"outside the years 1-9999 in UTC: {value!r}") from None
    return moment.isoformat() + fraction + "Z"


# Alerts of one group repeat the same endsAt and often the same startsAt: validate each text once.
_canonical_cached = functools.lru_cache(maxsize=4096)(canonical_timestamp)


def correlation_key(fingerprint: str, starts_at: str) -> str:
    """One key per alert episode: sha256("alertmanager|<fingerprint>|<canonical startsAt>") hex, 24 chars."""
    digest = hashlib.sha256((CORRELATION_PREFIX + fingerprint + "|" + starts_at).encode("utf-8"))
    return digest.hexdigest()[:CORRELATION_KEY_LENGTH]


def event_uuid(group_key: str, fingerprint: str, status: str, starts_at: str) -> str:
    """Deterministic meta.uuid (RFC 4122 version 5) so persistence mode drops replayed notifications.

    Same value as ``str(uuid.uuid5(EVENT_UUID_NAMESPACE, name))``, without building UUID objects.
    """
    name = f"{group_key}|{fingerprint}|{status}|{starts_at}".encode()
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


# --------------------------------------------------------------------------- payload validation


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def decode_body(body: bytes) -> Any:
    """Strict JSON: UTF-8 only (no BOM, no UTF-16/32, no encoded surrogates), no NaN/Infinity, no lone surrogates."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("body: not UTF-8") from None
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise PayloadError("body: not valid JSON") from None
    if _SURROGATE_ESCAPE.search(text) is not None and _has_lone_surrogate(payload):
        raise PayloadError("body: lone UTF-16 surrogate escape (not Unicode text)")
    return payload


def _has_lone_surrogate(payload: Any) -> bool:
    """True when any key or string holds a surrogate code point (json joins valid pairs)."""
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item) is not None:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _status(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in ALERT_STATUSES:
        raise PayloadError(f"{where}: expected firing or resolved")
    return value


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


def _timestamp(source: dict[str, Any], key: str, where: str) -> tuple[str, str]:
    """The timestamp as received and its canonical form; PayloadError unless a real RFC 3339 instant."""
    value = source.get(key)
    if not isinstance(value, str):
        raise PayloadError(f"{where}.{key}: expected an RFC 3339 timestamp")
    try:
        return value, _canonical_cached(value)
    except ValueError as exc:
        detail = str(exc).split(":", 1)[0]  # never echo the (attacker-sized) value into logs and answers
        raise PayloadError(f"{where}.{key}: expected an RFC 3339 timestamp ({detail})") from None


def _group_of(payload: Any) -> dict[str, Any]:
    """Validate the notification envelope and return the event's ``group`` part."""
    if not isinstance(payload, dict):
        raise PayloadError("body: expected a JSON object")
    if payload.get("version") != "4":
        raise PayloadError('version: expected "4"')
    key = payload.get("groupKey")
    if not isinstance(key, str) or not key:
        raise PayloadError("groupKey: expected a non-empty string")
    status = _status(payload.get("status", "firing"), "status")
    truncated = payload.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or not 0 <= truncated <= _MAX_TRUNCATED:
        raise PayloadError("truncatedAlerts: expected a non-negative integer")
    group: dict[str, Any] = {
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


def _alert_of(raw: Any, index: int) -> tuple[dict[str, Any], str]:
    """Validate one alert; return the event's ``alert`` part (unknown keys dropped) and its canonical startsAt."""
    where = f"alerts[{index}]"
    if not isinstance(raw, dict):
        raise PayloadError(f"{where}: expected an object")
    status = _status(raw.get("status"), f"{where}.status")
    fingerprint = raw.get("fingerprint")
    if not isinstance(fingerprint, str) or _FINGERPRINT.fullmatch(fingerprint) is None:
        raise PayloadError(f"{where}.fingerprint: expected 16 lowercase hex characters")
    labels = _string_map(raw.get("labels"), f"{where}.labels")
    if not labels.get("alertname"):
        raise PayloadError(f"{where}.labels.alertname: required")
    starts_at, canonical_start = _timestamp(raw, "startsAt", where)
    ends_at = None if raw.get("endsAt") is None else _timestamp(raw, "endsAt", where)[0]
    alert = {
        "status": status,
        "fingerprint": fingerprint,
        "startsAt": starts_at,
        "endsAt": ends_at,
        "labels": labels,
        "annotations": _string_map(raw.get("annotations", {}), f"{where}.annotations"),
        "generatorURL": _optional_str(raw, "generatorURL", where) or "",
    }
    return alert, canonical_start


def _alerts_of(payload: dict[str, Any], max_alerts: int) -> list[tuple[dict[str, Any], str]]:
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
    for alert, starts_at in alerts:
        fingerprint = alert["fingerprint"]
        meta: dict[str, Any] = {"uuid": event_uuid(key, fingerprint, alert["status"], starts_at), "endpoint": config.path}
        if label is not None and alert["labels"].get(label):
            meta["hosts"] = [host_of(alert["labels"][label])]
        events.append({"alert": alert, "group": dict(group), "correlation_key": correlation_key(fingerprint, starts_at), "meta": meta})
    return events


# --------------------------------------------------------------------------- durable intake


def load_spool_module() -> Any:
    """The collection's intake spool (plugins/module_utils/_spool.py), the one the playbook runs write to.

    ansible-rulebook runs this file from the collections path (``.../ansible_collections/labops/itsm/
    extensions/eda/plugins/event_source/``) without Ansible's collection loader, so the collections root is put
    on ``sys.path`` when ``ansible_collections`` is not importable already.
    """
    name = "ansible_collections.labops.itsm.plugins.module_utils._spool"
    try:
        return importlib.import_module(name)
    except ImportError:
        pass
    parents = Path(os.path.abspath(__file__)).parents
    if len(parents) > 7 and parents[6].name == "ansible_collections" and str(parents[7]) not in sys.path:
        sys.path.append(str(parents[7]))
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"delivery 'batch' cannot load the intake spool ({exc})") from None
    raise ConfigError("delivery 'batch' needs this source to run from the labops.itsm collection (plugins/module_utils/_spool.py)")


class SpoolDispatcher:
    """Persists accepted events and hands due spool entries to the rule engine in batches.

    All spool calls run on one worker thread (one connection, never the event loop). A batch is in flight
    from its ``intake_batch`` event until none of its entries is ``running`` any more (the run recorded every
    outcome, or ``run_timeout`` passed); at most ``max_concurrent_runs`` are in flight.
    """

    def __init__(self, queue: Any, config: Config) -> None:
        module = load_spool_module()
        self._queue = queue
        self._config = config
        # A notification waits at most queue_timeout for the spool's write lock, then answers 503 (AlertManager retries).
        self._spool = module.open_spool(config.spool_backend, config.spool_path, config.spool_dsn, busy_timeout=config.queue_timeout)
        self._policy = module.RetryPolicy(config.retry_initial_delay, config.retry_max_delay, config.retry_for, config.run_timeout)
        self._error = module.SpoolError
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="labops-spool")
        self._inflight: dict[str, float] = {}
        self._wake = asyncio.Event()
        self.dispatching = True
        self.counters = {"batches": 0, "dispatched_entries": 0, "absorbed_repeats": 0, "recovered": 0, "spool_errors": 0}
        self.spool_stats: dict[str, Any] = {}

    @property
    def inflight(self) -> int:
        """Batches dispatched whose run has not recorded every outcome yet."""
        return len(self._inflight)

    @property
    def spool_error(self) -> type[Exception]:
        """The spool's error class (a failed read or write)."""
        return self._error

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(function, *args))

    async def open(self) -> None:
        """Take the spool (one dispatcher per spool) and queue what a previous daemon left running."""
        try:
            await self._call(self._spool.lock_dispatcher)
            recovered = await self._call(self._spool.recover)
            self.spool_stats = await self._call(self._spool.stats)
        except self._error as exc:
            raise ConfigError(str(exc)) from None
        self.counters["recovered"] = recovered
        waiting = self.spool_stats["entries"]
        LOGGER.info("alertmanager source: intake spool %s: %d queued (%d interrupted runs recovered), %d failed, %d dead letters",
                    self._spool.describe(), waiting["queued"], recovered, waiting["failed"], waiting["dead"])
        if waiting["dead"]:
            LOGGER.warning("alertmanager source: %d dead letters wait in the intake spool (labops.itsm.intake_spool lists and replays them)", waiting["dead"])

    async def accept(self, events: list[dict[str, Any]]) -> dict[str, int]:
        """Commit ``events`` to the spool (all or nothing); raises the spool's error when it cannot."""
        counts = await self._call(self._spool.accept, events)
        self.counters["absorbed_repeats"] += counts["absorbed"]
        if counts["new"] or counts["revived"]:
            self._wake.set()
        return counts

    async def run(self) -> None:
        """Dispatch forever; spool errors are logged and retried (nothing accepted is lost while they last)."""
        last_settle = last_stats = last_purge = 0.0
        next_reconcile = time.monotonic() + self._config.reconcile_interval
        while True:
            timeout = 1.0
            try:
                now = time.monotonic()
                finished = await self._reap()
                if finished or now - last_settle >= 1.0:
                    await self._call(self._spool.settle, self._policy)
                    last_settle = now
                if now - last_stats >= 5.0:
                    # Runs of a previous daemon that died since without recording outcomes: queue their entries again.
                    await self._call(self._spool.recover, None, tuple(self._inflight))
                    self.spool_stats = await self._call(self._spool.stats)
                    last_stats = now
                if now - last_purge >= 3600.0:
                    await self._call(self._spool.purge, self._config.spool_retention)
                    last_purge = now
                await self._dispatch()
                if self._config.reconcile_interval and now >= next_reconcile and self.dispatching:
                    await self._queue.put({"intake_reconcile": {"alertmanager_url": self._config.alertmanager_url, "spool": self._spool.location()}})
                    next_reconcile = now + self._config.reconcile_interval
                timeout = 0.1 if self._inflight else await self._idle_timeout()
            except self._error as exc:
                self.counters["spool_errors"] += 1
                LOGGER.error("alertmanager source: %s; retrying in 5 s", exc)
                timeout = 5.0
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _reap(self) -> int:
        finished = 0
        for batch_id in list(self._inflight):
            if await self._call(self._spool.running_of, batch_id) == 0:
                del self._inflight[batch_id]
                finished += 1
        return finished

    async def _dispatch(self) -> None:
        config = self._config
        while self.dispatching and len(self._inflight) < config.max_concurrent_runs:
            claimed = await self._call(self._spool.claim, config.max_batch_events, self._policy)
            if claimed is None:
                return
            batch_id, entries = claimed
            statuses = collections.Counter(entry.status for entry in entries)
            event = {"intake_batch": {"id": batch_id, "count": len(entries), "entries": [entry.id for entry in entries],
                                      "firing": statuses.get("firing", 0), "resolved": statuses.get("resolved", 0),
                                      "retries": sum(1 for entry in entries if entry.attempts), "spool": self._spool.location()},
                     "meta": {"uuid": str(uuid.uuid5(EVENT_UUID_NAMESPACE, batch_id))}}
            self._inflight[batch_id] = time.monotonic()
            self.counters["batches"] += 1
            self.counters["dispatched_entries"] += len(entries)
            await self._queue.put(event)

    async def _idle_timeout(self) -> float:
        waiting, next_due = await self._call(self._spool.pending_waiting)
        if not waiting or next_due is None:
            return 1.0  # entries replayed or reconciled by other processes show up within a second
        return max(0.05, min(1.0, next_due - time.time()))

    async def drain(self, grace: float) -> int:
        """Stop dispatching; wait up to ``grace`` seconds for the runs in flight. Returns the batches still running."""
        self.dispatching = False
        deadline = time.monotonic() + grace
        while self._inflight and time.monotonic() < deadline:
            try:
                await self._reap()
            except self._error:
                break
            await asyncio.sleep(0.2)
        return len(self._inflight)

    def close(self) -> None:
        """Close the spool connection and release the dispatcher lock."""
        self._executor.submit(self._spool.close).result(timeout=10)
        self._executor.shutdown(wait=True)


# --------------------------------------------------------------------------- HTTP


@dataclass
class Stats:
    """Counters reported by the health endpoint."""

    accepted_requests: int = 0
    accepted_events: int = 0
    dropped_events: int = 0
    rejected: dict[int, int] = field(default_factory=dict)

    def reject(self, status: int) -> None:
        """Count one rejected request by status code."""
        self.rejected[status] = self.rejected.get(status, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "accepted_requests": self.accepted_requests,
            "accepted_events": self.accepted_events,
            "dropped_events": self.dropped_events,
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
            # aiohttp hands non-UTF-8 header bytes over as lone surrogates; surrogateescape gives the bytes back.
            return hmac.compare_digest(value.strip().encode("utf-8", "surrogateescape"), self._token)
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


_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class HeaderDeadline(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol and closes connections whose request headers stall.

    aiohttp has no header read timeout (a half-sent request line or header block would hold the
    connection until its keep-alive timer). The deadline starts when the connection opens and again
    at the first byte of a further request on a kept-alive connection; the request handler stops it
    once aiohttp has parsed the headers. Idle kept-alive connections stay aiohttp's business.
    """

    def __init__(self, inner: asyncio.Protocol, timeout: float, on_expiry: Callable[[bool], None], registry: dict[Any, HeaderDeadline]) -> None:
        self._inner = inner
        self._timeout = timeout
        self._on_expiry = on_expiry
        self._registry = registry
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_request = False
        self._received = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._registry[transport] = self
        self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._in_request:
            self._received = True
            if self._timer is None:
                self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._registry.pop(self._transport, None)
        self._inner.connection_lost(exc)

    def request_started(self) -> None:
        """The headers are in: the handler runs now (the body has its own timeout)."""
        self._disarm()
        self._in_request = True
        self._received = False

    def request_finished(self) -> None:
        """The response is out; the next request's deadline starts with its first byte."""
        self._in_request = False

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        transport = self._transport
        if self._in_request or transport is None or transport.is_closing():
            return
        if self._received:
            transport.write(_TIMEOUT_RESPONSE)
        self._on_expiry(self._received)
        transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through :class:`HeaderDeadline`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, ssl_context: ssl.SSLContext | None,
                 protocol_wrapper: Callable[[asyncio.Protocol], asyncio.Protocol], handshake_timeout: float) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._wrap = protocol_wrapper
        self._handshake_timeout = handshake_timeout

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        factory = self._runner.server
        assert factory is not None
        tls: dict[str, Any] = {"ssl": self._ssl_context, "ssl_handshake_timeout": self._handshake_timeout} if self._ssl_context else {}
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: self._wrap(factory()), self._host, self._port, reuse_address=True, **tls)


class AlertmanagerReceiver:
    """The aiohttp application: authenticates, validates and admits alert events, then hands them to the queue.

    Admission is all-or-nothing per notification: a request's events enter the bounded ``pending``
    buffer together, in request order, or not at all (503 after ``queue_timeout``). One pump task
    moves pending events to the rulebook queue in order, one ``await queue.put`` at a time.
    """

    def __init__(self, queue: Any, config: Config, dispatcher: SpoolDispatcher | None = None) -> None:
        self._queue = queue
        self._config = config
        self._dispatcher = dispatcher
        self._auth = Authenticator(config)
        self._accepting = True
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._admissions: collections.deque[tuple[list[dict[str, Any]], asyncio.Future]] = collections.deque()
        self._work = asyncio.Event()
        self._pump_task: asyncio.Task | None = None
        self._deadlines: dict[Any, HeaderDeadline] = {}
        self._runner: web.AppRunner | None = None
        self.stats = Stats()

    @property
    def pending_events(self) -> int:
        """Accepted events not yet handed to the rulebook queue."""
        return len(self._pending)

    @property
    def pump(self) -> asyncio.Task | None:
        """The task handing events to the rulebook queue (ends only with an unexpected error)."""
        return self._pump_task

    def stop_accepting(self) -> None:
        """Answer 503 from now on (shutdown); requests waiting for buffer room are released with 503."""
        self._accepting = False
        while self._admissions:
            _events, admitted = self._admissions.popleft()
            if not admitted.done():
                admitted.set_result(False)

    def application(self) -> web.Application:
        """Routes: POST path, GET path/health; everything else 404/405 with a JSON body."""
        app = web.Application(client_max_size=self._config.max_body_bytes, middlewares=[self._track_request])
        router = app.router
        router.add_post(self._config.path, self._receive)
        router.add_route("*", self._config.path, self._method_not_allowed)
        router.add_get(self._config.health_path, self._health)
        router.add_route("*", self._config.health_path, self._method_not_allowed)
        router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def start(self) -> None:
        """Bind and start serving; ConfigError when the address cannot be used."""
        config = self._config
        context = ssl_context(config)
        self._runner = web.AppRunner(self.application(), access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE)
        await self._runner.setup()
        site = GuardedSite(self._runner, config.host, config.port, ssl_context=context, protocol_wrapper=self._guard, handshake_timeout=config.header_timeout)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc})") from None
        except BaseException:
            await self._runner.cleanup()
            raise
        if self._dispatcher is not None:
            self._pump_task = asyncio.create_task(self._dispatcher.run(), name="labops.itsm.alertmanager dispatcher")
        else:
            self._pump_task = asyncio.create_task(self._pump(), name="labops.itsm.alertmanager pump")
        scheme = "https" if config.certfile else "http"
        LOGGER.info("alertmanager source listening on %s://%s:%s%s", scheme, config.host, config.port, config.path)
        if not self._auth.enabled:
            LOGGER.warning("alertmanager source runs WITHOUT authentication")

    async def stop(self) -> None:
        """Answer 503 from now on, release waiting requests, stop the pump, close the server."""
        self.stop_accepting()
        if self._pump_task is not None:
            self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
            self._pump_task = None
        if self._pending:
            LOGGER.warning("alertmanager source stopped with %d accepted events not handed to the rule engine", len(self._pending))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ----------------------------------------------------------------- connections

    def _guard(self, inner: asyncio.Protocol) -> asyncio.Protocol:
        return HeaderDeadline(inner, self._config.header_timeout, self._header_timeout_expired, self._deadlines)

    def _header_timeout_expired(self, partial_request: bool) -> None:
        if partial_request:
            self.stats.reject(408)
            LOGGER.warning("alertmanager source: request headers not complete within header_timeout=%gs; connection closed", self._config.header_timeout)

    @web.middleware
    async def _track_request(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        deadline = self._deadlines.get(request.transport)
        if deadline is not None:
            deadline.request_started()
        try:
            return await handler(request)
        finally:
            if deadline is not None:
                deadline.request_finished()

    # ----------------------------------------------------------------- requests

    def _reject(self, request: web.Request, status: int, reason: str) -> web.Response:
        self.stats.reject(status)
        LOGGER.warning("alertmanager source: %s %s from %s rejected with %d: %s", request.method, request.path, request.remote, status, reason)
        return web.json_response({"status": "rejected", "reason": reason}, status=status)

    @staticmethod
    async def _send_and_close(request: web.Request, response: web.Response) -> None:
        """Send ``response`` now and close the connection without reading (lingering on) the rest of the body."""
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()

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
            response = self._reject(request, exc.status, exc.reason)
            if exc.status in (408, 415):
                # 408: the client is too slow to wait for; 415: aiohttp would fail decoding the rest.
                await self._send_and_close(request, response)
            return response
        if self._dispatcher is not None:
            return await self._persist(request, events)
        if not await self._admit(events):
            reason = "shutting down" if not self._accepting else f"no room for {len(events)} events within queue_timeout={self._config.queue_timeout:g}s"
            return self._reject(request, 503, reason)
        self.stats.accepted_requests += 1
        self.stats.accepted_events += len(events)
        return web.json_response({"status": "accepted", "accepted": len(events)})

    async def _persist(self, request: web.Request, events: list[dict[str, Any]]) -> web.Response:
        """Durable intake: 200 only once the spool committed every event of the notification."""
        dispatcher = self._dispatcher
        assert dispatcher is not None  # only called in batch delivery
        try:
            counts = await dispatcher.accept(events)
        except dispatcher.spool_error as exc:
            LOGGER.error("alertmanager source: %s", exc)
            return self._reject(request, 503, "the intake spool cannot store the notification now")
        if not self._accepting:
            # Committed while shutting down: it is safe in the spool; AlertManager may still get 200.
            LOGGER.info("alertmanager source: a notification was committed during shutdown; it is handled after the restart")
        self.stats.accepted_requests += 1
        self.stats.accepted_events += len(events)
        return web.json_response({"status": "accepted", "accepted": len(events), "new": counts["new"],
                                  "absorbed": counts["absorbed"], "revived": counts["revived"]})

    async def _events_of(self, request: web.Request) -> list[dict[str, Any]]:
        config = self._config
        limit = config.max_body_bytes
        encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
        if encoding not in _IDENTITY_ENCODINGS:
            raise PayloadError("Content-Encoding: only identity bodies are accepted", status=415)
        if request.content_length is not None and request.content_length > limit:
            raise PayloadError(f"body larger than max_body_bytes={limit}", status=413)
        try:
            async with asyncio.timeout(config.body_timeout):
                body = await request.read()
        except TimeoutError:
            raise PayloadError(f"body not received within body_timeout={config.body_timeout:g}s", status=408) from None
        except web.HTTPRequestEntityTooLarge:
            raise PayloadError(f"body larger than max_body_bytes={limit}", status=413) from None
        except RequestPayloadError:
            raise PayloadError("body: malformed transfer or content encoding") from None
        return build_events(decode_body(body), config)

    async def _admit(self, events: list[dict[str, Any]]) -> bool:
        """True once all ``events`` are in the pending buffer; False (nothing queued) on timeout or shutdown."""
        loop = asyncio.get_running_loop()
        admitted = loop.create_future()
        self._admissions.append((events, admitted))
        self._grant()
        if not admitted.done():
            expiry = loop.call_later(self._config.queue_timeout, self._expire, admitted)
            admitted.add_done_callback(lambda _future: expiry.cancel())
        return await admitted

    def _grant(self) -> None:
        """Admit waiting notifications in arrival order while the buffer has room for the next one whole."""
        pending = self._pending
        room = self._config.max_pending_events
        admissions = self._admissions
        while admissions:
            events, admitted = admissions[0]
            if admitted.done():
                admissions.popleft()
                continue
            if not self._accepting:
                return
            if len(pending) + len(events) > room:
                return
            admissions.popleft()
            pending.extend(events)
            admitted.set_result(True)
            self._work.set()

    def _expire(self, admitted: asyncio.Future) -> None:
        if not admitted.done():
            admitted.set_result(False)
            self._grant()  # a stalled head of the line no longer blocks smaller notifications behind it

    async def _pump(self) -> None:
        pending = self._pending
        put = self._queue.put
        while True:
            if not pending:
                self._work.clear()
                await self._work.wait()
                continue
            event = pending[0]
            try:
                await put(event)
            except Exception:  # an event filter of the rulebook failed on this event
                self.stats.dropped_events += 1
                LOGGER.exception("alertmanager source: the rulebook queue refused event %s; dropped", event["meta"]["uuid"])
            pending.popleft()
            if self._admissions:
                self._grant()

    async def _health(self, _request: web.Request) -> web.Response:
        body = {"status": "ok" if self._accepting else "stopping", "pending_events": len(self._pending), **self.stats.as_dict()}
        if self._dispatcher is not None:
            body["delivery"] = "batch"
            body["inflight_runs"] = self._dispatcher.inflight
            body["dispatch"] = dict(self._dispatcher.counters)
            body["spool"] = self._dispatcher.spool_stats
        return web.json_response(body, status=200 if self._accepting else 503)

    async def _method_not_allowed(self, request: web.Request) -> web.Response:
        allowed = "GET, HEAD" if request.path == self._config.health_path else "POST"
        response = self._reject(request, 405, "method not allowed")
        response.headers[hdrs.ALLOW] = allowed
        return response

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._reject(request, 404, "not found")


async def main(queue: asyncio.Queue, args: dict[str, Any]) -> None:
    """Entry point called by ansible-rulebook; runs until cancelled.

    A bad configuration raises ConfigError: ansible-rulebook 1.3 logs it, shuts the rulesets down
    and exits with status 1 ("One of the source plugins failed").
    """
    config = parse_config(args)
    dispatcher = SpoolDispatcher(queue, config) if config.delivery == "batch" else None
    if dispatcher is not None:
        await dispatcher.open()
    receiver = AlertmanagerReceiver(queue, config, dispatcher)
    terminate: GracefulTermination | None = None
    try:
        await receiver.start()
        terminate = GracefulTermination(receiver, dispatcher, config.shutdown_grace)
        terminate.install()
        pump = receiver.pump
        if pump is None:  # start() sets it
            raise RuntimeError("labops.itsm.alertmanager: the receiver did not start its event hand-over")
        await pump
        raise RuntimeError("labops.itsm.alertmanager: event hand-over stopped")
    except asyncio.CancelledError:
        LOGGER.info("alertmanager source cancelled, closing the listener")
        raise
    finally:
        if terminate is not None:
            terminate.uninstall()
        await receiver.stop()
        if dispatcher is not None:
            dispatcher.close()


class GracefulTermination:
    """SIGTERM: answer 503 at once, let the runs in flight finish (``shutdown_grace``), then hand the signal on.

    ansible-rulebook's own SIGTERM handler stops everything at once; this one runs first and re-raises the
    signal to it once the source is quiet. What is not handled stays in the spool for the next start.
    """

    def __init__(self, receiver: AlertmanagerReceiver, dispatcher: SpoolDispatcher | None, grace: float) -> None:
        self._receiver = receiver
        self._dispatcher = dispatcher
        self._grace = grace
        self._previous: Any = None
        self._task: asyncio.Task | None = None

    def install(self) -> None:
        """Take SIGTERM over on the running loop (only possible in the main thread)."""
        try:
            self._previous = signal.getsignal(signal.SIGTERM)
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._on_signal)
        except (RuntimeError, ValueError, NotImplementedError):
            LOGGER.debug("alertmanager source: SIGTERM stays with the host process (not the main thread)")
            self._previous = None

    def uninstall(self) -> None:
        """Give SIGTERM back (the source stops for another reason, e.g. a test cancels it)."""
        if self._previous is None or self._task is not None:
            return
        try:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._previous)
        except (RuntimeError, ValueError):
            pass
        self._previous = None

    def _on_signal(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._terminate(), name="labops.itsm.alertmanager SIGTERM")

    async def _terminate(self) -> None:
        LOGGER.info("alertmanager source: SIGTERM, answering 503 from now on")
        self._receiver.stop_accepting()
        if self._dispatcher is not None:
            left = await self._dispatcher.drain(self._grace)
            stats = self._dispatcher.spool_stats.get("entries", {})
            LOGGER.info("alertmanager source: stopping with %d runs unfinished; the intake spool keeps every unhandled entry "
                        "(%d queued at the last count) for the next start", left, stats.get("queued", 0))
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signal.SIGTERM)
        previous = self._previous if self._previous is not None else signal.SIG_DFL
        signal.signal(signal.SIGTERM, previous)
        signal.raise_signal(signal.SIGTERM)


if __name__ == "__main__":

    class MockQueue(asyncio.Queue):
        """Prints events instead of handing them to a rule engine."""

        async def put(self, item: Any) -> None:
            print(json.dumps(item, indent=2, sort_keys=True), flush=True)

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(MockQueue(), {"port": 5000}))
