# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Ticket-creation metrics (a node_exporter textfile) and JSON log lines (seed 001).

Modules are short-lived processes, so the counters live in one Prometheus text file that every
module process updates: ``$LABOPS_METRICS_DIR/labops_itsm.prom`` (default
``~/.local/state/labops/metrics``; an empty ``LABOPS_METRICS_DIR`` turns the file off). An update
is a read-modify-write under an exclusive ``flock`` on the sibling ``labops_itsm.prom.lock`` and
ends with an atomic rename, so node_exporter's textfile collector never reads a half-written file
and concurrent processes never lose an increment. The file holds::

    itsm_ticket_creation_total{platform,status}          counter, status success|failure
    itsm_ticket_creation_duration_seconds{platform}      histogram (_bucket{le}, _sum, _count)
    itsm_dry_run_total{platform}                          counter (check-mode runs that would create)

With ``LABOPS_LOG_FILE`` set, each recorded event also appends one JSON line to that file
(``timestamp``, ``level``, ``message``, ``platform``, ``ticket_id``, ``dry_run``, ``duration_ms``,
``status``, ``job_id`` and the caller's fields such as ``correlation_key``), passed through
``_redact.minimise`` first.

Nothing here raises into the caller: a failure comes back as a warning text (``None`` when all
went well) that the caller may hand to ``module.warn``; a ticket write never fails because of its
metrics. Internal interface (leading underscore): it may change between releases.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import math
import os
import re
import time
from typing import Any, Dict, List, Optional, Tuple

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

from ansible_collections.labops.itsm.plugins.module_utils._redact import minimise

METRICS_DIR_ENV = "LABOPS_METRICS_DIR"
LOG_FILE_ENV = "LABOPS_LOG_FILE"
JOB_ID_ENV = "LABOPS_JOB_ID"
DEFAULT_METRICS_DIR = "~/.local/state/labops/metrics"
METRICS_FILE = "labops_itsm.prom"
LOCK_TIMEOUT = 2.0  # seconds to wait for another process's update (each holds the lock for well under 1 ms)

CREATION_TOTAL = "itsm_ticket_creation_total"
CREATION_DURATION = "itsm_ticket_creation_duration_seconds"
DRY_RUN_TOTAL = "itsm_dry_run_total"
STATUSES = ("success", "failure")
# API calls: tens of milliseconds on a quiet instance, seconds under retries (1/2/4 s back-off), up to the timeouts.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

HELP = (
    (CREATION_TOTAL, "counter", "Ticket creations attempted by the labops.itsm modules, by platform and outcome (success or failure)."),
    (CREATION_DURATION, "histogram", "Wall time of a ticket creation (create request, read-back, audit), by platform."),
    (DRY_RUN_TOTAL, "counter", "Check-mode (dry-run) runs that would have created a ticket, by platform."),
)

# series text (``name{labels}``, exactly as written) -> value, in file order
Samples = Dict[str, float]

_BUCKET = CREATION_DURATION + "_bucket"
_SUM = CREATION_DURATION + "_sum"
_COUNT = CREATION_DURATION + "_count"
_KNOWN = frozenset((CREATION_TOTAL, DRY_RUN_TOTAL, _BUCKET, _SUM, _COUNT))
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
_SERIES_RE = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:' + _LABEL + '(?:,' + _LABEL + r')*)?\})?')
_PLATFORM_RE = re.compile(r'[{,]platform="((?:[^"\\]|\\.)*)"')
_UNESCAPE_RE = re.compile(r'\\(.)')


# -- public interface ---------------------------------------------------------------------------


def record_ticket_creation(platform: str, status: str, duration_seconds: Optional[float], *, dry_run: bool = False,
                           ticket_id: Any = None, message: str = "", **fields: Any) -> Optional[str]:
    """Count one ticket creation (``status`` success or failure) and observe its duration; log it.

    ``dry_run=True`` records a check-mode run that would have created the ticket instead
    (``itsm_dry_run_total``; the creation counter and histogram are left alone). Extra ``fields``
    (``job_id``, ``correlation_key``, ``sop``, ``error``, ...) go to the JSON log line only.
    Returns None, or a warning text when the metrics file or the log could not be written.
    """
    try:
        platform = str(platform or "unknown")
        if not dry_run and status not in STATUSES:
            return "metrics: status {0!r} is not one of {1}; not recorded".format(status, "/".join(STATUSES))
        duration = _seconds(duration_seconds)
        warnings = [_update_file(platform, "dry_run" if dry_run else status, duration)]
        if not message:
            message = _default_message(status, dry_run)
        level = fields.pop("level", None) or ("ERROR" if status == "failure" and not dry_run else "INFO")
        warnings.append(_log(level, message, platform, ticket_id, dry_run, duration, status, fields))
    except Exception as exc:  # noqa: BLE001 pylint: disable=broad-except  # metrics never fail the ticket write
        return f"metrics: not recorded: {_describe(exc)}"
    return "; ".join(text for text in warnings if text) or None


def record_dry_run(platform: str, **fields: Any) -> Optional[str]:
    """Count one check-mode run that would have created a ticket on ``platform``; log it (``dry_run: true``).

    ``fields`` as for ``record_ticket_creation`` (``ticket_id``, ``message``, ``correlation_key``, ...).
    """
    ticket_id = fields.pop("ticket_id", None)
    message = fields.pop("message", "") or ""
    duration = fields.pop("duration_seconds", None)
    status = fields.pop("status", "success")
    return record_ticket_creation(platform, status, duration, dry_run=True, ticket_id=ticket_id, message=message, **fields)


def metrics_path(environ: Optional[Any] = None) -> Optional[str]:
    """The textfile the modules write (None: turned off by an empty ``LABOPS_METRICS_DIR``)."""
    env = os.environ if environ is None else environ
    directory = env.get(METRICS_DIR_ENV)
    if directory is None:
        directory = DEFAULT_METRICS_DIR
    if not directory.strip():
        return None
    return os.path.join(os.path.abspath(os.path.expanduser(directory)), METRICS_FILE)


# -- the textfile ---------------------------------------------------------------------------------


def _update_file(platform: str, outcome: str, duration: Optional[float]) -> Optional[str]:
    path = metrics_path()
    if path is None:
        return None
    try:
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        with _locked(path + ".lock"):
            samples, dropped = _read(path)
            _apply(samples, platform, outcome, duration)
            _write_atomically(path, render(samples))
    except (OSError, ValueError) as exc:
        return f"metrics: could not update {path}: {_describe(exc)}; the ticket write is unaffected"
    if dropped:
        return f"metrics: {path} had {dropped} line(s) that are not labops metrics; they were dropped"
    return None


class _locked:
    """Exclusive flock on ``path`` (polled, at most LOCK_TIMEOUT seconds)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        # read-only is enough for flock, and works on a lock file another user of a shared directory created
        self.fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            self._acquire()
        except BaseException:
            os.close(self.fd)
            raise

    def _acquire(self) -> None:
        if fcntl is None:  # pragma: no cover - not on POSIX
            return
        deadline = time.monotonic() + LOCK_TIMEOUT
        pause = 0.001
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OSError(f"another process held the lock {self.path} for more than {LOCK_TIMEOUT:g} s") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.02)

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)  # closing releases the flock


def _read(path: str) -> Tuple[Samples, int]:
    """The samples of the current file (empty when it does not exist) and how many lines were not ours."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}, 0
    return parse(text)


def parse(text: str) -> Tuple[Samples, int]:
    """Parse a file written by ``render``: (samples, number of dropped lines).

    Only the three labops metrics are kept; a platform's histogram that lacks one of the ``BUCKETS``
    (written by another version) is dropped whole, which Prometheus sees as a counter reset.
    """
    samples = {}  # type: Samples
    dropped = 0
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] == "#":
            continue
        series, space, value_text = line.rpartition(" ")
        try:
            value = float(value_text) if space else -1.0
        except ValueError:
            value = -1.0
        if not value >= 0 or series.partition("{")[0] not in _KNOWN or _SERIES_RE.fullmatch(series) is None:
            dropped += 1  # also NaN and negative values: a counter never goes there
            continue
        samples[series] = value
    return _drop_foreign_histograms(samples), dropped


def _drop_foreign_histograms(samples: Samples) -> Samples:
    platforms = [_platform_of(series) for series in samples if series.startswith(_COUNT + "{")]
    histograms = {}  # type: Dict[str, List[str]]
    for platform in platforms:
        histograms[platform] = _bucket_series(platform) + [_series(_SUM, platform), _series(_COUNT, platform)]
    ours = set()  # type: set
    for kept in histograms.values():
        if all(series in samples for series in kept):
            ours.update(kept)
    if all(series in ours for series in samples if series.startswith(CREATION_DURATION)):
        return samples
    return {series: value for series, value in samples.items() if not series.startswith(CREATION_DURATION) or series in ours}


def _platform_of(series: str) -> str:
    match = _PLATFORM_RE.search(series)
    return _unescape(match.group(1)) if match else ""


def _apply(samples: Samples, platform: str, outcome: str, duration: Optional[float]) -> None:
    """Add one event; a platform's series all exist (at 0) from its first event on."""
    totals = {status: _series(CREATION_TOTAL, platform, "status", status) for status in STATUSES}
    dry_runs = _series(DRY_RUN_TOTAL, platform)
    buckets = _bucket_series(platform)
    histogram = buckets + [_series(_SUM, platform), _series(_COUNT, platform)]
    for series in list(totals.values()) + [dry_runs] + histogram:
        samples.setdefault(series, 0)
    if outcome == "dry_run":
        samples[dry_runs] += 1
        return
    samples[totals[outcome]] += 1
    if duration is None:
        return
    for bound, series in zip(BUCKETS + (math.inf,), buckets):
        if duration <= bound:
            samples[series] += 1
    samples[histogram[-2]] += duration
    samples[histogram[-1]] += 1


def render(samples: Samples) -> str:
    """Prometheus text exposition format (0.0.4): HELP and TYPE, then the family's series in file order."""
    lines = []  # type: List[str]
    for family, kind, help_text in HELP:
        names = (family,) if kind != "histogram" else (_BUCKET, _SUM, _COUNT)
        rows = [f"{series} {_number(value)}" for series, value in samples.items() if series.partition("{")[0] in names]
        if rows:
            lines.append("# HELP {0} {1}".format(family, help_text.replace("\\", "\\\\").replace("\n", "\\n")))
            lines.append(f"# TYPE {family} {kind}")
            lines.extend(rows)
    return "\n".join(lines) + "\n" if lines else ""


def _write_atomically(path: str, text: str) -> None:
    """Write a sibling temp file (not ``*.prom``, so the collector never reads it) and rename it over ``path``."""
    temp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            os.fchmod(fd, 0o644)  # node_exporter runs as another user: the file must be readable whatever the umask
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _series(name: str, platform: str, label: Optional[str] = None, value: str = "") -> str:
    text = name + '{platform="' + _escape(platform) + '"'
    if label:
        text += "," + label + '="' + _escape(value) + '"'
    return text + "}"


def _bucket_series(platform: str) -> List[str]:
    return [_series(_BUCKET, platform, "le", _le(bound)) for bound in BUCKETS] + [_series(_BUCKET, platform, "le", "+Inf")]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return _UNESCAPE_RE.sub(lambda match: "\n" if match.group(1) == "n" else match.group(1), value)


def _le(bound: float) -> str:
    return repr(float(bound))


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(float(value))


def _seconds(value: Any) -> Optional[float]:
    if value is None:
        return None
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0:
        return 0.0
    return seconds


# -- the JSON log -------------------------------------------------------------------------------


def _default_message(status: str, dry_run: bool) -> str:
    if dry_run:
        return "Dry run: ticket would be created (check mode, nothing sent)"
    return "Ticket created successfully" if status == "success" else "Ticket creation failed"


def _log(level: str, message: str, platform: str, ticket_id: Any, dry_run: bool, duration: Optional[float], status: str,
         fields: Dict[str, Any]) -> Optional[str]:
    path = os.environ.get(LOG_FILE_ENV)
    if not path:
        return None
    entry = {
        "timestamp": timestamp(),
        "level": level,
        "message": message,
        "platform": platform,
        "ticket_id": None if ticket_id is None else str(ticket_id),
        "dry_run": bool(dry_run),
        "duration_ms": None if duration is None else round(duration * 1000),
        "status": "dry_run" if dry_run else status,
        "job_id": fields.pop("job_id", None) or os.environ.get(JOB_ID_ENV) or None,
    }
    entry.update((str(key), value) for key, value in fields.items() if key not in entry)
    path = os.path.abspath(os.path.expanduser(path))
    try:
        line = json.dumps(minimise(entry), sort_keys=False, separators=(",", ":"), default=str) + "\n"
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            os.write(fd, line.encode("utf-8"))  # one write of one line on an O_APPEND descriptor: lines never interleave
        finally:
            os.close(fd)
    except (OSError, ValueError, TypeError) as exc:
        return f"log: could not append to {path}: {_describe(exc)}; the ticket write is unaffected"
    return None


def timestamp(moment: Optional[datetime.datetime] = None) -> str:
    """``2025-10-27T10:30:00.123Z`` (UTC, milliseconds)."""
    moment = moment or datetime.datetime.now(datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"
