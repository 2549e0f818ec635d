# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The intake spool: every alert event the AlertManager source accepted, until it is handled.

A 2xx to AlertManager means "this will be handled". The source writes a notification's events here
(one transaction, all or nothing) before it answers; a dispatcher in the source hands due entries to
playbook runs in batches; the run records each entry's outcome; failed entries come back after a
back-off until ``retry_for`` has passed and then stay as dead letters until an operator replays them.

One row per (correlation key, status): an alert episode fires once and resolves once, whatever
AlertManager re-sends. A repeat of a queued, running or handled entry is *absorbed* (counted, nothing
dispatched); a repeat of a dead letter *revives* it. Entry states::

    queued --claim--> running --complete--> done
                         |--fail/release/run_timeout--> failed --settle--> queued (back-off) | dead
    dead --replay / a repeat--> queued

Backends: SQLite (default; WAL, ``BEGIN IMMEDIATE``) and PostgreSQL (psycopg 3), like the audit ledger.
One dispatcher per spool (``Spool.lock_dispatcher``); any number of playbook runs record outcomes.

Internal interface (leading underscore): it may change between releases.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import hashlib
import json
import os
import sqlite3
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

from ansible.module_utils.basic import env_fallback

from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError
from ansible_collections.labops.itsm.plugins.module_utils._sqlite import enable_wal

DEFAULT_SPOOL_PATH = "~/.local/state/labops/intake_spool.sqlite3"
SPOOL_ARGSPEC = dict(
    spool_backend=dict(type="str", choices=["sqlite", "postgresql"], default="sqlite", fallback=(env_fallback, ["LABOPS_SPOOL_BACKEND"])),
    spool_path=dict(type="path", default=DEFAULT_SPOOL_PATH, fallback=(env_fallback, ["LABOPS_SPOOL_PATH"])),
    spool_dsn=dict(type="str", no_log=True, fallback=(env_fallback, ["LABOPS_SPOOL_DSN"])),
)
STATES = ("queued", "running", "done", "failed", "dead")
ORIGINS = ("alertmanager", "reconciliation", "replay", "manual")
STATUSES = ("firing", "resolved")
BUSY_TIMEOUT = 30.0
PG_CONNECT_TIMEOUT = 10
# Session-level advisory lock that keeps a second dispatcher off one PostgreSQL spool ("labops.s").
PG_DISPATCHER_LOCK = 0x6C61626F70732E73
MAX_ERROR = 2000
SCHEMA_VERSION = 1

_COLUMNS = ("id", "event_uuid", "correlation_key", "status", "event", "origin", "state", "attempts", "repeats",
            "accepted_at", "next_attempt", "updated_at", "handled_at", "batch", "run_deadline", "last_error", "result")
_SELECT = "SELECT %s FROM intake_entries" % ", ".join(_COLUMNS)
_TABLE = (
    "CREATE TABLE IF NOT EXISTS intake_entries ("
    " id {id}, event_uuid TEXT NOT NULL, correlation_key TEXT NOT NULL, status TEXT NOT NULL,"
    " event TEXT NOT NULL, origin TEXT NOT NULL, state TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, repeats INTEGER NOT NULL DEFAULT 0,"
    " accepted_at DOUBLE PRECISION NOT NULL, next_attempt DOUBLE PRECISION NOT NULL,"
    " updated_at DOUBLE PRECISION NOT NULL, handled_at DOUBLE PRECISION, batch TEXT,"
    " run_deadline DOUBLE PRECISION, last_error TEXT, result TEXT)"
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS intake_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS intake_entries_episode ON intake_entries (correlation_key, status)",
    "CREATE INDEX IF NOT EXISTS intake_entries_due ON intake_entries (state, next_attempt)",
    "CREATE INDEX IF NOT EXISTS intake_entries_batch ON intake_entries (batch)",
)


class SpoolError(LabopsError):
    """The spool cannot be read or written (the source answers 503; a run fails)."""


class RetryPolicy:
    """How long and how often a failed entry is tried again before it becomes a dead letter."""

    def __init__(self, initial_delay: float = 10.0, max_delay: float = 300.0, retry_for: float = 3600.0, run_timeout: float = 900.0) -> None:
        if initial_delay <= 0 or max_delay < initial_delay or retry_for < 0 or run_timeout <= 0:
            raise ValueError("retry policy: need 0 < initial_delay <= max_delay, retry_for >= 0, run_timeout > 0")
        self.initial_delay = float(initial_delay)
        self.max_delay = float(max_delay)
        self.retry_for = float(retry_for)
        self.run_timeout = float(run_timeout)

    def delay(self, attempts: int) -> float:
        """Back-off before attempt ``attempts + 1`` (doubling from initial_delay, capped at max_delay)."""
        exponent = max(0, min(attempts - 1, 30))
        return float(min(self.max_delay, self.initial_delay * (2 ** exponent)))


class Entry:
    """One accepted alert event and what became of it."""

    __slots__ = _COLUMNS

    def __init__(self, row: Sequence[Any]) -> None:
        values = dict(zip(_COLUMNS, row))
        self.id = int(values["id"])
        self.event_uuid = str(values["event_uuid"])
        self.correlation_key = str(values["correlation_key"])
        self.status = str(values["status"])
        self.event = json.loads(values["event"])  # type: dict
        self.origin = str(values["origin"])
        self.state = str(values["state"])
        self.attempts = int(values["attempts"])
        self.repeats = int(values["repeats"])
        self.accepted_at = float(values["accepted_at"])
        self.next_attempt = float(values["next_attempt"])
        self.updated_at = float(values["updated_at"])
        self.handled_at = float(values["handled_at"]) if values["handled_at"] is not None else None  # type: Optional[float]
        self.batch = values["batch"]  # type: Optional[str]
        self.run_deadline = float(values["run_deadline"]) if values["run_deadline"] is not None else None  # type: Optional[float]
        self.last_error = values["last_error"]  # type: Optional[str]
        self.result = json.loads(values["result"]) if values["result"] else None  # type: Optional[dict]

    def as_dict(self, with_event: bool = True) -> dict:
        data = {name: getattr(self, name) for name in _COLUMNS if with_event or name != "event"}
        alert = self.event.get("alert") or {}
        data["alertname"] = (alert.get("labels") or {}).get("alertname")
        return data


def _now() -> float:
    return time.time()


def _short(text: Any) -> str:
    value = " ".join(str(text).split())
    return value if len(value) <= MAX_ERROR else value[:MAX_ERROR - 3] + "..."


def _event_fields(event: Any) -> Tuple[str, str, str, str]:
    """(event_uuid, correlation_key, status, canonical JSON) of a source event; ValueError when it is not one."""
    if not isinstance(event, dict):
        raise ValueError("a spool event must be a dict")  # noqa: TRY004  # one error type for every malformed event
    key = event.get("correlation_key")
    alert = event.get("alert")
    status = alert.get("status") if isinstance(alert, dict) else None
    if not isinstance(key, str) or not key or status not in STATUSES:
        raise ValueError("a spool event needs correlation_key and alert.status firing|resolved")
    meta = event.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    event_uuid = meta.get("uuid") or str(uuid.uuid5(uuid.NAMESPACE_URL, "labops.itsm:" + key + "|" + status))
    return str(event_uuid), key, status, json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Spool:
    """The intake spool on one backend (see the module docstring)."""

    name = "spool"

    def __init__(self) -> None:
        self._conn: Any = None
        self._lock_handle: Any = None
        self._run_locks = {}  # type: Dict[str, Any]

    # ------------------------------------------------------------------ backend hooks
    def describe(self) -> str:
        raise NotImplementedError

    def location(self) -> dict:
        """What a playbook run needs to open this spool (never a secret)."""
        raise NotImplementedError

    def _connect(self) -> Any:
        raise NotImplementedError

    def _write(self) -> Any:
        raise NotImplementedError

    def _is_db_error(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def sql(self, text: str) -> str:
        return text

    def lock_dispatcher(self) -> None:
        """Refuse a second dispatcher on this spool (SpoolError)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ plumbing
    def _execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self.sql(text), tuple(params))

    @contextlib.contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        try:
            if self._conn is None:
                self._conn = self._connect()
                try:
                    with self._write():
                        self._create_schema()
                except BaseException:
                    # Never keep a connection whose schema was refused (the next call would skip the check).
                    self._drop_connection()
                    raise
            yield
        except SpoolError:
            raise
        except (OSError, sqlite3.Error) as exc:
            self._drop_connection()
            raise SpoolError("intake spool %s failed (%s %s): %s" % (operation, self.name, self.describe(), _short(exc))) from None
        except Exception as exc:  # pylint: disable=broad-except
            if not self._is_db_error(exc):
                raise
            self._drop_connection()
            raise SpoolError("intake spool %s failed (%s %s): %s" % (operation, self.name, self.describe(), _short(exc))) from None

    @contextlib.contextmanager
    def _txn(self, operation: str) -> Iterator[None]:
        with self._guard(operation), self._write():
            yield

    def _create_schema(self) -> None:
        self._execute(_TABLE.format(id=self._id_column))
        for statement in _SCHEMA:
            self._execute(statement)
        self._execute("INSERT INTO intake_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", ("schema_version", str(SCHEMA_VERSION)))
        version = self._execute("SELECT value FROM intake_meta WHERE key = 'schema_version'").fetchone()[0]
        if str(version) != str(SCHEMA_VERSION):
            raise SpoolError("intake spool %s has schema version %s, this collection reads version %d" % (self.describe(), version, SCHEMA_VERSION))

    _id_column = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def _rows(self, where: str, params: Sequence[Any] = (), tail: str = "") -> List[Entry]:
        return [Entry(row) for row in self._execute(_SELECT + " WHERE " + where + " " + tail, params).fetchall()]

    def ensure_ready(self) -> None:
        with self._guard("open"):
            pass

    # ------------------------------------------------------------------ intake (the source)
    def accept(self, events: Sequence[dict], origin: str = "alertmanager", force: bool = False, now: Optional[float] = None) -> Dict[str, int]:
        """Persist ``events`` in one transaction (all or nothing); counts of new, absorbed and revived entries."""
        if origin not in ORIGINS:
            raise ValueError("unknown origin %r" % origin)
        prepared = [_event_fields(event) for event in events]
        now = _now() if now is None else now
        counts = {"new": 0, "absorbed": 0, "revived": 0}
        with self._txn("accept"):
            for event_uuid, key, status, payload in prepared:
                row = self._execute("SELECT id, state FROM intake_entries WHERE correlation_key = ? AND status = ?", (key, status)).fetchone()
                if row is None:
                    self._execute(
                        "INSERT INTO intake_entries (event_uuid, correlation_key, status, event, origin, state, attempts, repeats,"
                        " accepted_at, next_attempt, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', 0, 0, ?, ?, ?)",
                        (event_uuid, key, status, payload, origin, now, now, now))
                    counts["new"] += 1
                elif row[1] == "dead" or (force and row[1] == "done"):
                    self._execute(
                        "UPDATE intake_entries SET state = 'queued', attempts = 0, repeats = repeats + 1, origin = ?, event = ?,"
                        " accepted_at = ?, next_attempt = ?, updated_at = ?, batch = NULL, run_deadline = NULL WHERE id = ?",
                        (origin, payload, now, now, now, row[0]))
                    counts["revived"] += 1
                else:
                    self._execute("UPDATE intake_entries SET repeats = repeats + 1, updated_at = ? WHERE id = ?", (now, row[0]))
                    counts["absorbed"] += 1
        return counts

    def claim(self, limit: int, policy: RetryPolicy, now: Optional[float] = None) -> Optional[Tuple[str, List[Entry]]]:
        """Mark up to ``limit`` due entries running under a new batch id: oldest first, one per alert episode, never
        an episode that has an entry running or failed (its resolve waits for its open)."""
        now = _now() if now is None else now
        with self._txn("claim"):
            rows = self._rows(
                "state = 'queued' AND correlation_key NOT IN"
                " (SELECT correlation_key FROM intake_entries WHERE state IN ('running', 'failed'))", (), "ORDER BY id")
            chosen = []  # type: List[Entry]
            keys = set()
            for entry in rows:
                if entry.correlation_key in keys:
                    continue
                # The oldest entry of an episode goes first: a resolve never overtakes its open, even one
                # that waits for a later attempt.
                keys.add(entry.correlation_key)
                if entry.next_attempt <= now:
                    chosen.append(entry)
                    if len(chosen) >= limit:
                        break
            if not chosen:
                return None
            batch_id = "b-" + uuid.uuid4().hex
            deadline = now + policy.run_timeout
            for entry in chosen:
                self._execute("UPDATE intake_entries SET state = 'running', batch = ?, run_deadline = ?, updated_at = ? WHERE id = ?",
                              (batch_id, deadline, now, entry.id))
                entry.state, entry.batch, entry.run_deadline = "running", batch_id, deadline
        return batch_id, chosen

    def pending_waiting(self, now: Optional[float] = None) -> Tuple[int, Optional[float]]:
        """(queued entries, the earliest next_attempt among them) for the dispatcher's sleep."""
        with self._guard("read"):
            row = self._execute("SELECT count(*), min(next_attempt) FROM intake_entries WHERE state = 'queued'").fetchone()
        return int(row[0]), (float(row[1]) if row[1] is not None else None)

    def running_of(self, batch_id: str) -> int:
        with self._guard("read"):
            return int(self._execute("SELECT count(*) FROM intake_entries WHERE batch = ? AND state = 'running'", (batch_id,)).fetchone()[0])

    def settle(self, policy: RetryPolicy, now: Optional[float] = None) -> Dict[str, int]:
        """Apply the retry policy: failed entries (and running ones past their run deadline) go back to queued with a
        back-off, or become dead letters once ``retry_for`` has passed since acceptance."""
        now = _now() if now is None else now
        counts = {"requeued": 0, "dead": 0, "timed_out": 0}
        with self._guard("read"):
            # Read first: the dispatcher calls this every second, and a write transaction would contend with runs.
            due = self._execute("SELECT count(*) FROM intake_entries WHERE state = 'failed' OR (state = 'running' AND run_deadline < ?)",
                                (now,)).fetchone()[0]
        if not due:
            return counts
        with self._txn("settle"):
            for entry in self._rows("state = 'running' AND run_deadline < ?", (now,)):
                self._execute("UPDATE intake_entries SET state = 'failed', last_error = ?, updated_at = ? WHERE id = ?",
                              ("no outcome within run_timeout=%gs (the run was lost or hangs)" % policy.run_timeout, now, entry.id))
                counts["timed_out"] += 1
            for entry in self._rows("state = 'failed'"):
                attempts = entry.attempts + 1
                if now - entry.accepted_at >= policy.retry_for:
                    self._execute("UPDATE intake_entries SET state = 'dead', attempts = ?, batch = NULL, run_deadline = NULL, updated_at = ?"
                                  " WHERE id = ?", (attempts, now, entry.id))
                    counts["dead"] += 1
                else:
                    self._execute("UPDATE intake_entries SET state = 'queued', attempts = ?, next_attempt = ?, batch = NULL, run_deadline = NULL,"
                                  " updated_at = ? WHERE id = ?", (attempts, now + policy.delay(attempts), now, entry.id))
                    counts["requeued"] += 1
        return counts

    def recover(self, now: Optional[float] = None, exclude: Sequence[str] = ()) -> int:
        """At start: queue again (now, not an attempt) the entries of runs a previous daemon left behind.

        A run whose ``ansible-playbook`` outlived the killed daemon still holds its run lock (``hold_run``): its entries
        stay running (it records their outcomes; ``run_timeout`` catches a hung one), so a replay never races it.
        The dispatcher calls this again every few seconds with its own batches in ``exclude``, so the entries of
        such an orphan run come back as soon as it dies without recording them.
        """
        now = _now() if now is None else now
        with self._guard("read"):
            batches = [row[0] for row in self._execute("SELECT DISTINCT batch FROM intake_entries WHERE state = 'running'").fetchall()]
        recovered = 0
        for batch_id in batches:
            if batch_id is None or batch_id in exclude or not self._try_run_lock(batch_id):
                continue  # a live orphan run: leave its entries to it
            try:
                with self._txn("recover"):
                    cursor = self._execute(
                        "UPDATE intake_entries SET state = 'queued', batch = NULL, run_deadline = NULL, next_attempt = ?, updated_at = ?,"
                        " last_error = COALESCE(last_error, 'interrupted: the intake daemon stopped during its run')"
                        " WHERE state = 'running' AND batch = ?", (now, now, batch_id))
                    recovered += int(cursor.rowcount or 0)
            finally:
                self._drop_run_lock(batch_id, remove=True)
        return recovered

    def hold_run(self, batch_id: str, timeout: float = 60.0) -> None:
        """Take the batch's run lock for the life of this spool object (a playbook run handling the batch).

        Taken before the run reads its entries; ``recover`` takes it too before it queues a batch's entries again,
        so a run either sees its entries owned and keeps them, or sees them gone.
        """
        deadline = time.monotonic() + timeout
        while not self._try_run_lock(batch_id):
            if time.monotonic() > deadline:
                raise SpoolError("intake spool %s: the run lock of batch %s is held by another process" % (self.describe(), batch_id))
            time.sleep(0.1)

    def _try_run_lock(self, batch_id: str) -> bool:
        raise NotImplementedError

    def _drop_run_lock(self, batch_id: str, remove: bool = False) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ handling (a playbook run)
    def entries_of(self, batch_id: str) -> List[Entry]:
        """The entries the batch still owns (running under it), in acceptance order."""
        with self._guard("read"):
            return self._rows("batch = ? AND state = 'running'", (batch_id,), "ORDER BY id")

    def get(self, entry_ids: Sequence[int]) -> List[Entry]:
        ids = [int(value) for value in entry_ids]
        if not ids:
            return []
        with self._guard("read"):
            return self._rows("id IN (%s)" % ", ".join("?" for dummy in ids), ids, "ORDER BY id")

    def complete(self, entry_id: int, batch_id: str, result: dict, now: Optional[float] = None) -> bool:
        """running -> done when the batch still owns the entry; False when it does not (recovered, timed out)."""
        now = _now() if now is None else now
        with self._txn("complete"):
            cursor = self._execute(
                "UPDATE intake_entries SET state = 'done', handled_at = ?, updated_at = ?, result = ?, run_deadline = NULL"
                " WHERE id = ? AND batch = ? AND state = 'running'",
                (now, now, json.dumps(result, sort_keys=True, default=str), int(entry_id), batch_id))
            return bool(cursor.rowcount)

    def fail(self, entry_id: int, batch_id: str, error: Any, now: Optional[float] = None) -> bool:
        now = _now() if now is None else now
        with self._txn("fail"):
            cursor = self._execute(
                "UPDATE intake_entries SET state = 'failed', last_error = ?, updated_at = ? WHERE id = ? AND batch = ? AND state = 'running'",
                (_short(error), now, int(entry_id), batch_id))
            return bool(cursor.rowcount)

    def release(self, batch_id: str, error: Any, now: Optional[float] = None) -> int:
        """Every entry the batch still owns -> failed (the run ends without an outcome for them)."""
        now = _now() if now is None else now
        with self._txn("release"):
            cursor = self._execute(
                "UPDATE intake_entries SET state = 'failed', last_error = ?, updated_at = ? WHERE batch = ? AND state = 'running'",
                (_short(error), now, batch_id))
            return int(cursor.rowcount or 0)

    # ------------------------------------------------------------------ operator
    def list(self, states: Optional[Sequence[str]] = None, limit: int = 100, correlation_key: Optional[str] = None) -> List[Entry]:
        where, params = [], []  # type: List[str], List[Any]
        if states:
            unknown = [state for state in states if state not in STATES]
            if unknown:
                raise ValueError("unknown spool state(s): %s" % ", ".join(unknown))
            where.append("state IN (%s)" % ", ".join("?" for dummy in states))
            params.extend(states)
        if correlation_key:
            where.append("correlation_key = ?")
            params.append(correlation_key)
        with self._guard("read"):
            return self._rows(" AND ".join(where) or "1 = 1", params, "ORDER BY id LIMIT %d" % int(limit))

    def replay(self, ids: Optional[Sequence[int]] = None, states: Sequence[str] = ("dead",), now: Optional[float] = None) -> List[int]:
        """Queue entries again (attempts reset, due now); default: every dead letter. Returns the ids queued."""
        now = _now() if now is None else now
        allowed = [state for state in states if state in ("dead", "failed", "done")]
        if not allowed:
            raise ValueError("replay takes dead, failed or done entries")
        with self._txn("replay"):
            where = "state IN (%s)" % ", ".join("?" for dummy in allowed)
            params = list(allowed)  # type: List[Any]
            if ids is not None:
                if not ids:
                    return []
                where += " AND id IN (%s)" % ", ".join("?" for dummy in ids)
                params.extend(int(value) for value in ids)
            chosen = [int(row[0]) for row in self._execute("SELECT id FROM intake_entries WHERE " + where, params).fetchall()]
            for entry_id in chosen:
                # accepted_at restarts the retry period (settle measures retry_for from it), as a revived dead letter's does.
                self._execute("UPDATE intake_entries SET state = 'queued', attempts = 0, next_attempt = ?, accepted_at = ?, batch = NULL,"
                              " run_deadline = NULL, updated_at = ? WHERE id = ?", (now, now, now, entry_id))
        return chosen

    def purge(self, older_than: float, now: Optional[float] = None) -> int:
        """Forget handled entries handled more than ``older_than`` seconds ago (a later repeat is handled again, idempotently)."""
        now = _now() if now is None else now
        with self._txn("purge"):
            cursor = self._execute("DELETE FROM intake_entries WHERE state = 'done' AND handled_at < ?", (now - older_than,))
            return int(cursor.rowcount or 0)

    def stats(self, now: Optional[float] = None) -> Dict[str, Any]:
        now = _now() if now is None else now
        with self._guard("read"):
            counts = dict.fromkeys(STATES, 0)
            for state, count in self._execute("SELECT state, count(*) FROM intake_entries GROUP BY state").fetchall():
                counts[state] = int(count)
            oldest = self._execute("SELECT min(accepted_at) FROM intake_entries WHERE state IN ('queued', 'running', 'failed')").fetchone()[0]
            repeats = self._execute("SELECT COALESCE(sum(repeats), 0) FROM intake_entries").fetchone()[0]
        return {"entries": counts, "absorbed_repeats": int(repeats), "oldest_unhandled_age": round(now - float(oldest), 3) if oldest is not None else None}

    def _drop_connection(self) -> None:
        """Close the working connection (the next operation reconnects); a held dispatcher lock stays held."""
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        for batch_id in list(self._run_locks):
            self._drop_run_lock(batch_id, remove=True)
        self._drop_connection()
        if self._lock_handle is not None:
            with contextlib.suppress(Exception):
                self._lock_handle.close()
            self._lock_handle = None

    def __enter__(self) -> "Spool":  # noqa: PYI034 (typing.Self needs Python 3.11; module_utils run on 3.8)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SqliteSpool(Spool):
    """One SQLite file: WAL, BEGIN IMMEDIATE, 0700 directory, 0600 file."""

    name = "sqlite"

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        super().__init__()
        self.path = os.path.abspath(os.path.expanduser(path))
        self.busy_timeout = busy_timeout

    def describe(self) -> str:
        return self.path

    def location(self) -> dict:
        return {"backend": "sqlite", "path": self.path}

    def _is_db_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error)

    def _connect(self) -> Any:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            try:
                os.makedirs(directory, 0o700)
            except FileExistsError:
                if not os.path.isdir(directory):
                    raise
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            pass
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = %d" % int(self.busy_timeout * 1000))
        enable_wal(conn, self.busy_timeout)
        # FULL: an accepted notification survives a power cut, not only a process crash.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._conn is not None and self._conn.in_transaction:
                self._conn.rollback()
            raise
        self._conn.execute("COMMIT")

    def lock_dispatcher(self) -> None:
        self.ensure_ready()
        if fcntl is None:
            return
        handle = open(self.path + ".lock", "a")  # noqa: SIM115  # pylint: disable=consider-using-with  # held for the daemon's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise SpoolError("intake spool %s is already dispatched by another running daemon (lock %s.lock)" % (self.path, self.path)) from None
        self._lock_handle = handle

    def _run_lock_path(self, batch_id: str) -> str:
        safe = "".join(char for char in batch_id if char.isalnum() or char in "-_")[:80]
        return os.path.join(self.path + ".runs", safe + ".lock")

    def _try_run_lock(self, batch_id: str) -> bool:
        if fcntl is None:
            return True
        path = self._run_lock_path(batch_id)
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115  # pylint: disable=consider-using-with  # held for the run
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._run_locks[batch_id] = handle
        return True

    def _drop_run_lock(self, batch_id: str, remove: bool = False) -> None:
        handle = self._run_locks.pop(batch_id, None)
        if handle is None:
            return
        if remove:
            # Removed while still locked: whoever opens the path later gets a fresh, free lock (the run is over).
            with contextlib.suppress(OSError):
                os.unlink(self._run_lock_path(batch_id))
        with contextlib.suppress(Exception):
            handle.close()


class PostgresSpool(Spool):
    """PostgreSQL via psycopg 3."""

    name = "postgresql"
    _id_column = "BIGSERIAL PRIMARY KEY"

    def __init__(self, dsn: str, connect_timeout: int = PG_CONNECT_TIMEOUT) -> None:
        super().__init__()
        try:
            import psycopg  # pylint: disable=import-outside-toplevel
        except ImportError:
            raise SpoolError("the postgresql spool backend needs the Python library psycopg (3.x)") from None
        self._psycopg = psycopg
        self.dsn = dsn
        self.connect_timeout = connect_timeout

    def describe(self) -> str:
        try:
            info = self._psycopg.conninfo.conninfo_to_dict(self.dsn)
        except Exception:  # noqa: BLE001 pylint: disable=broad-except  # describe, never raise
            return "<unparsable DSN>"
        return "%s:%s/%s" % (info.get("host") or info.get("hostaddr") or "localhost", info.get("port") or 5432, info.get("dbname") or "")

    def location(self) -> dict:
        return {"backend": "postgresql"}

    def _is_db_error(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.Error)

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _connect(self) -> Any:
        return self._psycopg.connect(self.dsn, connect_timeout=self.connect_timeout, autocommit=True)

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        with self._conn.transaction():
            # Writers of one spool serialise, as SQLite's BEGIN IMMEDIATE does ("labops.q").
            self._execute("SELECT pg_advisory_xact_lock(?)", (0x6C61626F70732E71,))
            yield

    def lock_dispatcher(self) -> None:
        # A session lock on a connection of its own: the working connection is dropped and reopened after a
        # database error, which must not release the lock.
        self.ensure_ready()
        try:
            conn = self._connect()
        except self._psycopg.Error as exc:
            raise SpoolError("intake spool lock failed (%s %s): %s" % (self.name, self.describe(), _short(exc))) from None
        try:
            held = conn.execute(self.sql("SELECT pg_try_advisory_lock(?)"), (PG_DISPATCHER_LOCK,)).fetchone()[0]
        except self._psycopg.Error as exc:
            conn.close()
            raise SpoolError("intake spool lock failed (%s %s): %s" % (self.name, self.describe(), _short(exc))) from None
        if not held:
            conn.close()
            raise SpoolError("intake spool %s is already dispatched by another running daemon (advisory lock)" % self.describe())
        self._lock_handle = conn

    def _try_run_lock(self, batch_id: str) -> bool:
        # Session locks on a connection of their own, like the dispatcher lock.
        try:
            conn = self._connect()
            held = conn.execute(self.sql("SELECT pg_try_advisory_lock(?)"), (_run_lock_key(batch_id),)).fetchone()[0]
        except self._psycopg.Error as exc:
            raise SpoolError("intake spool run lock failed (%s %s): %s" % (self.name, self.describe(), _short(exc))) from None
        if not held:
            conn.close()
            return False
        self._run_locks[batch_id] = conn
        return True

    def _drop_run_lock(self, batch_id: str, remove: bool = False) -> None:
        conn = self._run_locks.pop(batch_id, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _run_lock_key(batch_id: str) -> int:
    """A signed 64-bit advisory lock key of a batch id."""
    return int.from_bytes(hashlib.sha256(("labops.itsm.run|" + batch_id).encode("utf-8")).digest()[:8], "big", signed=True)


def open_spool(backend: str = "sqlite", path: Optional[str] = None, dsn: Optional[str] = None, busy_timeout: float = BUSY_TIMEOUT) -> Spool:
    """A spool on ``backend``; nothing is opened until first use. ``busy_timeout``: how long a SQLite writer waits for the lock."""
    if backend == "sqlite":
        return SqliteSpool(path or DEFAULT_SPOOL_PATH, busy_timeout)
    if backend == "postgresql":
        if not dsn:
            raise SpoolError("the postgresql intake spool needs spool_dsn (or LABOPS_SPOOL_DSN)")
        return PostgresSpool(dsn)
    raise SpoolError("unknown intake spool backend %r (sqlite or postgresql)" % backend)


def open_batch_spool(batch: Any, backend: Optional[str] = None, path: Optional[str] = None, dsn: Optional[str] = None) -> Spool:
    """The spool an ``intake_batch`` event names: its backend and path win over the given options; a DSN never
    travels in an event, it comes from the options (``LABOPS_SPOOL_DSN``)."""
    where = batch.get("spool") if isinstance(batch, dict) else None
    if not isinstance(where, dict):
        where = {}
    chosen = where.get("path") or path or DEFAULT_SPOOL_PATH
    return open_spool(where.get("backend") or backend or "sqlite", path=os.path.expanduser(str(chosen)), dsn=dsn)


def spool_from_params(params: dict) -> Spool:
    return open_spool(params.get("spool_backend") or "sqlite", params.get("spool_path"), params.get("spool_dsn"))
