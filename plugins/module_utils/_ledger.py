# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hash-chained, append-only audit ledger (seed 002: immutable audit trail).

Every governed action appends one record::

    {seq, ts, action, ref_type, ref_id, actor, role, sop, platform,
     fields: {name: {before, after}}, meta: {...}, prev_hash, hash}

``hash = sha256(canonical JSON of the record without "hash")`` where canonical JSON is
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``
encoded as UTF-8.  ``prev_hash`` is the previous record's hash (genesis: 64 zeros) and
``seq`` is hashed too, so a changed, deleted or reordered record breaks the chain and
``Ledger.verify()`` names the first broken link.  A chain rewritten or cut at its end
together with the head metadata still links up; an *anchor* (``{seq, hash}`` of a record
kept outside the ledger, written next to every export) catches that, and
``expect_records`` makes a missing or emptied ledger fail instead of verifying as empty.

Backends: SQLite (default; WAL, ``BEGIN IMMEDIATE`` serialises writers across processes)
and PostgreSQL (psycopg 3; a transaction-level advisory lock serialises writers).

Internal interface (leading underscore): it may change between releases.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import hashlib
import importlib.util
import json
import os
import sqlite3
from typing import Any, Callable, Iterable, Iterator, Optional, cast

from ansible.module_utils.basic import env_fallback

from ansible_collections.labops.itsm.plugins.module_utils import _time
from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AuditWriteError,
    LabopsError,
    ValidationError,
)
from ansible_collections.labops.itsm.plugins.module_utils._redact import (
    REDACTED,
    is_secret_key,
    minimise,
    scrub_string,
)
from ansible_collections.labops.itsm.plugins.module_utils._sqlite import enable_wal
from ansible_collections.labops.itsm.plugins.module_utils._time import format_ts

# psycopg is imported only when a PostgreSQL ledger is opened: importing it costs about 0.1 s,
# which every governed module run on the default SQLite ledger would otherwise pay.
HAS_PSYCOPG = importlib.util.find_spec("psycopg") is not None
PSYCOPG_IMPORT_ERROR = None if HAS_PSYCOPG else "ModuleNotFoundError: No module named 'psycopg'"


def _psycopg() -> Any:
    import psycopg  # pylint: disable=import-outside-toplevel

    return psycopg


# Seed 002, "Audit Trails": the only permitted actions.
ACTIONS = (
    "identify",
    "create",
    "read",
    "update",
    "notify",
    "escalate",
    "resolve",
    "close",
    "review",
    "kb_update",
    "vendor_engagement",
    "simulation",
    "tool_use",
    "link",
)
HALT_WORDING = "the governed action halts"
GENESIS_HASH = "0" * 64
SCHEMA_VERSION = 1
DEFAULT_LEDGER_PATH = "~/.local/state/labops/ims_audit.sqlite3"
DEFAULT_ACTOR = "automation"
BUSY_TIMEOUT = 30.0
PG_CONNECT_TIMEOUT = 10
# Transaction-level advisory lock key that serialises PostgreSQL appenders ("labops.l").
PG_LOCK_KEY = 0x6C61626F70732E6C
MAX_META_STRING = 512
MAX_RECORD_BYTES = 8192
MAX_REF_LENGTH = 256
MAX_RECORD_KEY_LENGTH = 200
# Written into every anchor file, so a reader can tell an anchor from other JSON.
ANCHOR_FORMAT = "labops.itsm/ledger-anchor/1"
ANCHOR_SUFFIX = ".anchor.json"
# The largest search window used to find where a reordered record was originally written.
MAX_REORDER_SEARCH = 1000000

RECORD_KEYS = ("seq", "ts", "action", "ref_type", "ref_id", "actor", "role", "sop", "platform", "fields", "meta", "prev_hash", "hash")
_COLUMNS = RECORD_KEYS[:11] + ("record_key",) + RECORD_KEYS[11:]
_SELECT = "SELECT %s FROM audit_records" % ", ".join(_COLUMNS)
_INSERT = "INSERT INTO audit_records (%s) VALUES (%s)" % (", ".join(_COLUMNS), ", ".join("?" for dummy in _COLUMNS))
_SEQ_SENTINEL = "@@labops-ledger-seq@@"

LEDGER_CONNECTION_ARGSPEC = dict(
    ledger_backend=dict(type="str", choices=["sqlite", "postgresql"], default="sqlite", fallback=(env_fallback, ["LABOPS_LEDGER_BACKEND"])),
    ledger_path=dict(type="path", default=DEFAULT_LEDGER_PATH, fallback=(env_fallback, ["LABOPS_LEDGER_PATH"])),
    ledger_dsn=dict(type="str", no_log=True, fallback=(env_fallback, ["LABOPS_LEDGER_DSN"])),
)
LEDGER_ACTOR_ARGSPEC = dict(
    actor=dict(type="str", default=DEFAULT_ACTOR, fallback=(env_fallback, ["LABOPS_ACTOR"])),
    actor_role=dict(type="str", default=DEFAULT_ACTOR, fallback=(env_fallback, ["LABOPS_ACTOR_ROLE"])),
)
LEDGER_ARGSPEC = dict(LEDGER_CONNECTION_ARGSPEC, **LEDGER_ACTOR_ARGSPEC)

_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ("CREATE TABLE IF NOT EXISTS audit_records ("
     " seq INTEGER NOT NULL UNIQUE, ts TEXT NOT NULL, action TEXT NOT NULL, ref_type TEXT NOT NULL,"
     " ref_id TEXT NOT NULL, actor TEXT NOT NULL, role TEXT, sop TEXT, platform TEXT,"
     " fields TEXT NOT NULL, meta TEXT NOT NULL, record_key TEXT UNIQUE,"
     " prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"),
)
_PG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ("CREATE TABLE IF NOT EXISTS audit_records ("
     " seq BIGINT NOT NULL UNIQUE, ts TEXT NOT NULL, action TEXT NOT NULL, ref_type TEXT NOT NULL,"
     " ref_id TEXT NOT NULL, actor TEXT NOT NULL, role TEXT, sop TEXT, platform TEXT,"
     " fields TEXT NOT NULL, meta TEXT NOT NULL, record_key TEXT UNIQUE,"
     " prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"),
)
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS audit_records_ref ON audit_records (ref_type, ref_id)",
    "CREATE INDEX IF NOT EXISTS audit_records_actor ON audit_records (actor)",
    "CREATE INDEX IF NOT EXISTS audit_records_action ON audit_records (action)",
    "CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts)",
)
_META_SEED = "INSERT INTO audit_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"


# --------------------------------------------------------------------------- records


def canonical_json(value: Any) -> str:
    """The one serialisation that is hashed and exported."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(record: dict) -> str:
    """sha256 over the canonical JSON of ``record`` without its ``hash`` key."""
    body = dict(record)  # a copy and one pop: verify calls this for every record
    body.pop("hash", None)
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def utc_now() -> str:
    """UTC ISO-8601 timestamp with microseconds, e.g. ``2025-01-31T12:00:00.000001Z``."""
    return format_ts(_time.utc_now())


def normalise_ts(value: Any, name: str = "timestamp") -> Optional[str]:
    """Accept an ISO-8601 string or datetime (naive means UTC) and return the ledger form."""
    moment = _time.parse_time(value, name)
    return None if moment is None else format_ts(moment)


def _require_text(name: str, value: Any, limit: int = MAX_REF_LENGTH) -> str:
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int)):
        raise ValidationError("audit %s must be a non-empty string, got %r" % (name, value))
    text = scrub_string(str(value).strip())
    if not text:
        raise ValidationError("audit %s must be a non-empty string" % name)
    if len(text) > limit:
        raise ValidationError("audit %s is longer than %d characters" % (name, limit))
    return text


def _optional_text(name: str, value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    return _require_text(name, value)


def validate_action(action: Any) -> str:
    """Return ``action`` when it is one of seed 002's audit actions, else raise ValidationError."""
    if action not in ACTIONS:
        raise ValidationError(
            "invalid audit action %r: expected one of %s" % (action, ", ".join(ACTIONS)),
            value=str(action),
        )
    return action


def normalise_fields(fields: Any, max_string: int = MAX_META_STRING) -> dict:
    """``{name: {before, after}}`` with secrets masked and strings capped."""
    if fields is None:
        return {}
    if not isinstance(fields, dict):
        raise ValidationError("audit fields must be a mapping of field name to {before, after}")
    result = {}
    for name, delta in fields.items():
        if not isinstance(delta, dict) or not set(delta) <= {"before", "after"}:
            raise ValidationError("audit field %r must be a mapping with only 'before' and/or 'after'" % (name,))
        if is_secret_key(str(name)):
            result[str(name)] = {"before": REDACTED, "after": REDACTED}
            continue
        result[str(name)] = {
            "before": minimise(delta.get("before"), max_string=max_string),
            "after": minimise(delta.get("after"), max_string=max_string),
        }
    return result


def normalise_meta(meta: Any, max_string: int = MAX_META_STRING) -> dict:
    """Minimal meta: redacted, strings capped, lists/depth bounded."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValidationError("audit meta must be a mapping")
    return minimise(meta, max_string=max_string)


def _size_of(entry: dict) -> int:
    probe = dict(entry, seq=10 ** 15, ts=utc_now(), prev_hash=GENESIS_HASH, hash=GENESIS_HASH)
    return len(canonical_json(probe).encode("utf-8"))


def _fit_record(entry: dict, raw_fields: Any, raw_meta: Any, record_key: Optional[str]) -> dict:
    """Enforce MAX_RECORD_BYTES: shrink strings, then drop meta detail, then refuse."""
    if _size_of(entry) <= MAX_RECORD_BYTES:
        return entry
    entry = dict(entry, fields=normalise_fields(raw_fields, 128), meta=normalise_meta(raw_meta, 128))
    _keep_record_key(entry, record_key)
    if _size_of(entry) <= MAX_RECORD_BYTES:
        return entry
    keys = sorted(str(key) for key in (raw_meta or {}))[:20]
    entry = dict(entry, meta={"_omitted": "meta exceeded the %d byte record limit" % MAX_RECORD_BYTES, "_keys": keys})
    _keep_record_key(entry, record_key)
    if _size_of(entry) <= MAX_RECORD_BYTES:
        return entry
    raise ValidationError("audit record exceeds %d bytes even after minimisation; record fewer or shorter fields" % MAX_RECORD_BYTES)


def _keep_record_key(entry: dict, record_key: Optional[str]) -> None:
    if record_key is not None:
        entry["meta"] = dict(entry["meta"], record_key=record_key)


def prepare_entry(action: Any, ref_type: Any, ref_id: Any, actor: Any, role: Any = None, sop: Any = None,
                  platform: Any = None, fields: Any = None, meta: Any = None, record_key: Any = None) -> dict:
    """Validate, redact and minimise the caller-supplied part of a record."""
    if record_key is not None:
        record_key = _require_text("record_key", record_key, MAX_RECORD_KEY_LENGTH)
    entry = {
        "action": validate_action(action),
        "ref_type": _require_text("ref_type", ref_type),
        "ref_id": _require_text("ref_id", ref_id),
        "actor": _require_text("actor", actor),
        "role": _optional_text("role", role),
        "sop": _optional_text("sop", sop),
        "platform": _optional_text("platform", platform),
        "fields": normalise_fields(fields),
        "meta": normalise_meta(meta),
    }
    _keep_record_key(entry, record_key)
    return _fit_record(entry, fields, meta, record_key)


def seal(entry: dict, seq: int, prev_hash: str, ts: str) -> dict:
    """Complete ``entry`` into a chained record (in RECORD_KEYS order)."""
    values = dict(entry, seq=seq, ts=ts, prev_hash=prev_hash)
    record = {key: values.get(key) for key in RECORD_KEYS[:-1]}
    record["hash"] = record_hash(record)
    return record


def _row_to_record(row: Any) -> tuple:
    """A database row to ``(record, record_key column)``."""
    values = dict(zip(_COLUMNS, row))
    for name in ("fields", "meta"):
        try:
            values[name] = json.loads(values[name])
        except (TypeError, ValueError):
            pass  # tampered text: kept as is, verify() reports the hash mismatch
    record_key = values.pop("record_key")
    return {key: values[key] for key in RECORD_KEYS}, record_key


def _record_row(record: dict) -> tuple:
    values = dict(record, fields=canonical_json(record["fields"]), meta=canonical_json(record["meta"]))
    values["record_key"] = record["meta"].get("record_key")
    return tuple(values[column] for column in _COLUMNS)


# --------------------------------------------------------------------------- verification


def _broken(seq: int, reason: str, message: str, **extra: Any) -> dict:
    result = dict(seq=seq, reason=reason, message=message)
    result.update(extra)
    return result


def _original_seq(record: dict, limit: int) -> Optional[int]:
    """The seq a record was written with, when its stored hash matches another seq."""
    body = {key: value for key, value in record.items() if key != "hash"}
    body["seq"] = _SEQ_SENTINEL
    parts = canonical_json(body).split('"%s"' % _SEQ_SENTINEL)
    if len(parts) != 2 or not isinstance(record.get("seq"), int):
        return None
    prefix, suffix = parts[0].encode("utf-8"), parts[1].encode("utf-8")
    for distance in range(1, min(limit, MAX_REORDER_SEARCH) + 1):
        for candidate in (record["seq"] - distance, record["seq"] + distance):
            if candidate >= 1 and hashlib.sha256(prefix + str(candidate).encode("ascii") + suffix).hexdigest() == record["hash"]:
                return candidate
    return None


def check_link(record: dict, record_key: Any, expected_seq: int, prev_hash: str, search_limit: int) -> Optional[dict]:
    """None when ``record`` correctly continues the chain, else a ``first_broken`` dict."""
    seq = record["seq"]
    if seq != expected_seq:
        return _broken(expected_seq, "deleted", "record(s) deleted: seq %s to %s missing (next stored record is seq %s)" % (expected_seq, seq - 1, seq),
                       found_seq=seq)
    if record_hash(record) != record["hash"]:
        original = _original_seq(record, search_limit)
        if original is not None:
            return _broken(seq, "reordered", "records reordered: the record stored at seq %d was written as seq %d" % (seq, original),
                           original_seq=original)
        return _broken(seq, "content_changed", "record content changed: the hash of seq %d does not match its content" % seq)
    if record["prev_hash"] != prev_hash and seq == 1:
        return _broken(seq, "broken_link", "broken link: prev_hash of seq 1 is not the genesis value (64 zeros): the first "
                       "record(s) were deleted and the rest renumbered and re-hashed")
    if record["prev_hash"] != prev_hash:
        return _broken(seq, "broken_link", "broken link: prev_hash of seq %d does not match the hash of seq %d "
                       "(the preceding record was replaced or re-hashed, or records were deleted and renumbered)" % (seq, seq - 1))
    meta_key = record["meta"].get("record_key") if isinstance(record["meta"], dict) else None
    if record_key != meta_key:
        return _broken(seq, "content_changed", "record content changed: the record_key index column of seq %d differs from the record" % seq)
    return None


def check_head(last_seq: int, last_hash: str, head: tuple) -> Optional[dict]:
    """Compare the last stored record with the chain head kept in audit_meta."""
    head_seq, head_hash = head
    if head_seq > last_seq:
        return _broken(last_seq + 1, "deleted", "record(s) deleted: seq %d to %d missing at the end of the chain (chain head is seq %d)"
                       % (last_seq + 1, head_seq, head_seq), found_seq=None)
    if head_seq < last_seq:
        return _broken(head_seq + 1, "head_mismatch", "records after the chain head were added outside the ledger: the head is seq %d, "
                       "the last record seq %d" % (head_seq, last_seq))
    if head_hash != last_hash:
        return _broken(last_seq, "head_mismatch", "the last record (seq %d) was replaced: its hash differs from the chain head" % last_seq)
    return None


# --------------------------------------------------------------------------- anchors


def normalise_anchor(anchor: Any, source: str = "anchor") -> Optional[dict]:
    """``{seq, hash}`` from a mapping (None stays None); ValidationError naming ``source`` otherwise."""
    if anchor is None:
        return None
    if not isinstance(anchor, dict) or "seq" not in anchor or "hash" not in anchor:
        raise ValidationError("%s must be a mapping with seq and hash, got %r" % (source, anchor))
    seq, digest = anchor["seq"], anchor["hash"]
    if isinstance(seq, str) and seq.isdigit():
        seq = int(seq)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValidationError("%s seq must be a non-negative integer, got %r" % (source, seq))
    if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise ValidationError("%s hash must be 64 lowercase hexadecimal characters, got %r" % (source, digest))
    if seq == 0 and digest != GENESIS_HASH:
        raise ValidationError("%s seq 0 (an empty ledger) must have the genesis hash (64 zeros)" % source)
    return {"seq": seq, "hash": digest}


def _last_line(path: str, block: int = 8192) -> bytes:
    """The last non-empty line of a file, read from its end (exports can be large)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        tail = b""
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            tail = handle.read(end - start) + tail
            end = start
            stripped = tail.rstrip()
            if b"\n" in stripped or (start == 0 and stripped):
                return stripped.rsplit(b"\n", 1)[-1].strip()
        return b""


def read_anchor_file(path: str) -> dict:
    """The anchor in ``path``: an anchor file written by an export, or a JSON Lines export (its last record)."""
    path = os.path.abspath(os.path.expanduser(path))
    source = "anchor file %s" % path
    try:
        line = _last_line(path)
    except OSError as exc:
        raise ValidationError("%s cannot be read: %s" % (source, exc.strerror or exc), anchor_file=path)
    if not line:
        raise ValidationError("%s is empty: it holds no anchor" % source, anchor_file=path)
    try:
        document = json.loads(line.decode("utf-8"))
    except ValueError:
        raise ValidationError("%s is not an anchor file or a JSON Lines export (its last line is not JSON)" % source, anchor_file=path)
    return cast(dict, normalise_anchor(document, source))  # a document always gives an anchor (or raises)


def anchor_document(seq: int, digest: str, count: int, ledger: str, export: str, export_sha256: str) -> str:
    """The anchor file's text: deterministic, so an unchanged export leaves it unchanged."""
    return canonical_json({"format": ANCHOR_FORMAT, "seq": seq, "hash": digest, "count": count, "ledger": ledger,
                           "export": export, "export_sha256": export_sha256}) + "\n"


class ChainWalk:
    """Checks records fed in seq order (verify and export share it): links, chain head, anchor."""

    __slots__ = ("anchor", "anchored_hash", "broken", "count", "expected_seq", "head", "prev_hash", "search_limit")

    def __init__(self, head: Optional[tuple], search_limit: int, anchor: Optional[dict]) -> None:
        self.head = head
        self.search_limit = search_limit
        self.anchor = anchor
        self.count, self.expected_seq, self.prev_hash = 0, 1, GENESIS_HASH
        self.broken = None  # type: Optional[dict]
        # The hash stored at the anchor's seq (seq 0 is the genesis value every chain starts from).
        self.anchored_hash = GENESIS_HASH if anchor is not None and anchor["seq"] == 0 else None

    def consume(self, rows: Iterable, write: Optional[Callable[[str], Any]] = None) -> None:
        """Check ``(record, record_key)`` rows in seq order; ``write`` receives each record's export line.

        One loop over locals: this is the hot path of verify (100,000 records in a few seconds).
        """
        count, expected_seq, prev_hash, broken, anchored_hash = self.count, self.expected_seq, self.prev_hash, self.broken, self.anchored_hash
        anchor_seq = self.anchor["seq"] if self.anchor is not None else None
        for record, record_key in rows:
            if write is not None:
                write(canonical_json(record) + "\n")
            count += 1
            if broken is None:
                broken = check_link(record, record_key, expected_seq, prev_hash, self.search_limit)
            seq = record["seq"]
            if seq == anchor_seq:
                anchored_hash = record["hash"]
            expected_seq, prev_hash = seq + 1, record["hash"]
        self.count, self.expected_seq, self.prev_hash, self.broken, self.anchored_hash = count, expected_seq, prev_hash, broken, anchored_hash

    def result(self, expect_records: bool = False) -> dict:
        """``{ok, count, first_broken, head_seq, head_hash, exists, anchor}``; chain breaks are reported before anchor ones."""
        last_seq = self.expected_seq - 1
        broken = self.broken
        if broken is None:
            # check_metadata reports a missing head row, so check_head only ever sees one
            broken = check_metadata(last_seq, self.head) or check_head(last_seq, self.prev_hash, cast(tuple, self.head))
        anchor = self._anchor_result()
        if broken is None and self.count == 0 and (expect_records or not anchor.get("ok", True)):
            broken = _broken(1, "empty", "the ledger holds no records%s: it was wiped or its records deleted" % _anchor_hint(self.anchor))
        if broken is None and not anchor.get("ok", True):
            broken = check_anchor(cast(dict, self.anchor), self.anchored_hash, last_seq)  # an anchor result exists only with an anchor
        head_seq, head_hash = self.head if self.head is not None else (None, None)
        return dict(ok=broken is None, count=self.count, first_broken=broken, head_seq=head_seq, head_hash=head_hash,
                    exists=True, anchor=anchor or None)

    def _anchor_result(self) -> dict:
        if self.anchor is None:
            return {}
        return dict(self.anchor, ok=self.anchored_hash == self.anchor["hash"])


def _anchor_hint(anchor: Optional[dict]) -> str:
    return "" if anchor is None or anchor["seq"] == 0 else " (the anchor says seq %d exists)" % anchor["seq"]


def check_metadata(last_seq: int, head: Optional[tuple]) -> Optional[dict]:
    """A ledger always has its head row once it exists; a missing one means the metadata was wiped."""
    if head is not None:
        return None
    return _broken(last_seq + 1, "metadata_missing", "the ledger metadata in audit_meta (schema version, chain head) is missing or "
                   "unreadable: it was deleted or overwritten (a wiped ledger, or records deleted together with the head row)")


def check_anchor(anchor: dict, anchored_hash: Optional[str], last_seq: int) -> Optional[dict]:
    """Compare the record stored at the anchor's seq with the anchor."""
    seq = anchor["seq"]
    if anchored_hash == anchor["hash"]:
        return None
    if seq > last_seq:
        return _broken(last_seq + 1, "anchor_missing", "record(s) deleted at the end of the chain: the anchor is seq %d but the ledger "
                       "ends at seq %d" % (seq, last_seq), anchor_seq=seq)
    return _broken(seq, "anchor_mismatch", "the record at seq %d is not the anchored one: its hash differs from the anchor "
                   "(records up to seq %d were rewritten or replaced)" % (seq, seq), anchor_seq=seq)


def absent_result(anchor: Optional[dict], expect_records: bool, incomplete: bool = False) -> dict:
    """Verification of a ledger that does not exist (fine unless records are expected) or lost a table (never fine)."""
    anchor_result = None if anchor is None else dict(anchor, ok=anchor["seq"] == 0)
    broken = None
    if incomplete:
        broken = _broken(1, "missing", "the ledger is incomplete: table audit_records or audit_meta was dropped")
    elif expect_records or (anchor_result is not None and not anchor_result["ok"]):
        broken = _broken(1, "missing", "the ledger does not exist%s: it was deleted or the wrong ledger is configured" % _anchor_hint(anchor))
    return dict(ok=broken is None, count=0, first_broken=broken, head_seq=0, head_hash=GENESIS_HASH, exists=incomplete, anchor=anchor_result)


# --------------------------------------------------------------------------- backends


class _Backend:
    """Shared SQL; subclasses provide connections, transactions and placeholders."""

    name = "backend"
    schema = _SQLITE_SCHEMA

    def __init__(self) -> None:
        self._conn: Any = None
        self._ready = False

    # -- to implement
    def describe(self) -> str:
        raise NotImplementedError

    def store_exists(self) -> bool:
        raise NotImplementedError

    def _connect(self, create: bool) -> Any:
        raise NotImplementedError

    def write_txn(self) -> Any:
        raise NotImplementedError

    def read_txn(self) -> Any:
        raise NotImplementedError

    def _schema_txn(self) -> Any:
        return self.write_txn()

    def _is_db_error(self, exc: BaseException) -> bool:
        raise NotImplementedError

    # -- shared
    def sql(self, text: str) -> str:
        return text

    def execute(self, text: str, params: tuple = ()) -> Any:
        return self._conn.execute(self.sql(text), params)

    def error(self, operation: str, exc: BaseException, write: bool = True) -> LabopsError:
        message = "audit ledger %s failed (%s %s): %s" % (operation, self.name, self.describe(), scrub_string(" ".join(str(exc).split())))
        if write:
            message += "; " + HALT_WORDING + " (seed 002: halt on audit write failure)"
            return AuditWriteError(message, backend=self.name, ledger=self.describe())
        return LabopsError(message, backend=self.name, ledger=self.describe())

    @contextlib.contextmanager
    def guard(self, operation: str, write: bool = True) -> Iterator[None]:
        """Turn driver and OS errors into AuditWriteError (writes) or LabopsError (reads)."""
        try:
            yield
        except AuditWriteError as exc:
            if HALT_WORDING in str(exc):
                raise
            # Raised by our own checks (path, schema version): give it the same shape as a driver error.
            self.close()
            raise self.error(operation, exc, write) from exc
        except LabopsError:
            raise
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise self.error(operation, exc, write)
        except Exception as exc:  # pylint: disable=broad-except
            if not self._is_db_error(exc):
                raise
            self.close()
            raise self.error(operation, exc, write)

    def ensure_ready(self) -> None:
        """Connect, create the schema when missing and check its version."""
        if self._ready and self._conn is not None:
            return
        if self._conn is None:
            self._conn = self._connect(create=True)
        with self._schema_txn():
            self._refuse_wiped_metadata()
            for statement in self.schema + _INDEXES:
                self.execute(statement)
            self.execute(_META_SEED, ("schema_version", str(SCHEMA_VERSION)))
            self.execute(_META_SEED, ("head", canonical_json({"seq": 0, "hash": GENESIS_HASH})))
            self._check_version()
        self._ready = True

    def _refuse_wiped_metadata(self) -> None:
        """Halt writes to a ledger whose tables exist without their metadata rows.

        The schema and its rows are created in one transaction, so existing tables without
        schema_version/head mean deleted rows: seeding a fresh head would restart the chain
        at seq 1 on top of a wiped ledger and hide the wipe from verify.
        """
        tables = self._table_count()
        if not tables:
            return
        if tables < 2:
            missing = "a table"
        else:
            keys = {row[0] for row in self.execute("SELECT key FROM audit_meta WHERE key IN ('schema_version', 'head')").fetchall()}
            missing = ", ".join(sorted({"schema_version", "head"} - keys))
        if missing:
            raise AuditWriteError("audit ledger %s exists without its metadata (%s missing): it was wiped or tampered with; "
                                  "run ims_audit state=verify, then restore it from an export or start a new ledger deliberately"
                                  % (self.describe(), missing), backend=self.name)

    def open_for_read(self) -> bool:
        """Connect without creating anything; False when there is no (complete) ledger yet."""
        return self.open_state() == "ready"

    def open_state(self) -> str:
        """Connect without creating anything and say what is there.

        ``absent`` (no file, or no tables: nothing was ever written), ``incomplete`` (one of the two
        tables is gone), ``no_metadata`` (both tables, but no schema_version row) or ``ready``. The
        schema is created in one transaction, so only tampering leaves the middle two.
        """
        if self._conn is None:
            if not self.store_exists():
                return "absent"
            self._conn = self._connect(create=False)
        tables = self._table_count()
        if tables < 2:
            return "incomplete" if tables else "absent"
        if not self.execute("SELECT count(*) FROM audit_meta WHERE key = 'schema_version'").fetchone()[0]:
            return "no_metadata"
        self._check_version()
        return "ready"

    def _table_count(self) -> int:
        """How many of audit_meta and audit_records exist."""
        raise NotImplementedError

    def _check_version(self) -> None:
        row = self.execute("SELECT value FROM audit_meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise AuditWriteError("audit ledger %s has schema version %d; this collection supports up to %d: upgrade labops.itsm"
                                  % (self.describe(), version, SCHEMA_VERSION), backend=self.name)

    def probe_write(self) -> None:
        """A write that is rolled back: proves the ledger accepts writes right now."""
        self.execute("UPDATE audit_meta SET value = value WHERE key = 'schema_version'")

    def read_head(self) -> tuple:
        """``(seq, hash)`` of the chain head; AuditWriteError when the head row is missing or unreadable."""
        head = self.read_head_row()
        if head is None:
            raise AuditWriteError("the chain head in audit_meta of %s is missing or unreadable; run ims_audit state=verify"
                                  % self.describe(), backend=self.name)
        return head

    def read_head_row(self) -> Optional[tuple]:
        """``(seq, hash)`` of the chain head, or None when the row is missing or not a valid head."""
        row = self.execute("SELECT value FROM audit_meta WHERE key = 'head'").fetchone()
        try:
            head = json.loads(row[0])
            seq, digest = head["seq"], head["hash"]
        except (TypeError, ValueError, KeyError):
            return None
        if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(digest, str):
            return None
        return seq, digest

    def write_head(self, seq: int, digest: str) -> None:
        self.execute("UPDATE audit_meta SET value = ? WHERE key = 'head'", (canonical_json({"seq": seq, "hash": digest}),))

    def find_record_key(self, record_key: str) -> Optional[dict]:
        row = self.execute(_SELECT + " WHERE record_key = ?", (record_key,)).fetchone()
        return _row_to_record(row)[0] if row else None

    def insert(self, record: dict) -> None:
        self.execute(_INSERT, _record_row(record))

    def select(self, where: str, params: tuple, limit: Optional[int]) -> list:
        text = _SELECT + where + " ORDER BY seq DESC"
        if limit:
            text += " LIMIT %d" % int(limit)
        rows = self.execute(text, params).fetchall()
        return [_row_to_record(row)[0] for row in reversed(rows)]

    def count(self) -> int:
        return int(self.execute("SELECT count(*) FROM audit_records").fetchone()[0])

    def iter_rows(self, batch: int = 2000) -> Iterator[tuple]:
        cursor = self._conn.cursor()
        cursor.execute(self.sql(_SELECT + " ORDER BY seq"))
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                break
            for row in rows:
                yield _row_to_record(row)
        cursor.close()

    def close(self) -> None:
        conn, self._conn, self._ready = self._conn, None, False
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001,S110 pylint: disable=broad-except  # the connection is already unusable
                pass


class SqliteBackend(_Backend):
    """One SQLite file: WAL, BEGIN IMMEDIATE, 0700 directory, 0600 file."""

    name = "sqlite"
    schema = _SQLITE_SCHEMA

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        super().__init__()
        self.path = os.path.abspath(os.path.expanduser(path))
        self.busy_timeout = busy_timeout

    def describe(self) -> str:
        return self.path

    def store_exists(self) -> bool:
        return os.path.isfile(self.path)

    def _is_db_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error)

    def _prepare_path(self) -> None:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            if os.path.exists(directory):
                raise AuditWriteError("audit ledger directory %s is not a directory" % directory, backend=self.name, ledger=self.path)
            try:
                os.makedirs(directory, 0o700)
            except FileExistsError:
                # A parallel run created it between the check and makedirs (8 playbooks
                # starting on a fresh ledger); only a non-directory is an error.
                if not os.path.isdir(directory):
                    raise
            else:
                os.chmod(directory, 0o700)
        if os.path.isdir(self.path):
            raise AuditWriteError("audit ledger path %s is a directory, expected a SQLite file" % self.path, backend=self.name, ledger=self.path)
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return
        os.chmod(self.path, 0o600)

    def _connect(self, create: bool) -> Any:
        if create:
            self._prepare_path()
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = %d" % int(self.busy_timeout * 1000))
        if create:
            enable_wal(conn, self.busy_timeout)
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _table_count(self) -> int:
        return int(self.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('audit_meta', 'audit_records')").fetchone()[0])

    @contextlib.contextmanager
    def write_txn(self) -> Iterator[None]:
        """BEGIN IMMEDIATE takes the database write lock before the chain head is read."""
        self.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        self.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            self._conn.rollback()

    @contextlib.contextmanager
    def read_txn(self) -> Iterator[None]:
        """One consistent snapshot (WAL read transaction)."""
        self.execute("BEGIN")
        try:
            yield
        finally:
            self._rollback()


class PostgresBackend(_Backend):
    """PostgreSQL via psycopg 3; appenders serialise on a transaction-level advisory lock."""

    name = "postgresql"
    schema = _PG_SCHEMA

    def __init__(self, dsn: str, connect_timeout: int = PG_CONNECT_TIMEOUT) -> None:
        super().__init__()
        if not HAS_PSYCOPG:
            raise AuditWriteError("the postgresql ledger backend needs the Python library psycopg (3.x)", backend=self.name)
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self._txn: Any = None

    def describe(self) -> str:
        try:
            info = _psycopg().conninfo.conninfo_to_dict(self.dsn)
        except Exception:  # noqa: BLE001 pylint: disable=broad-except  # any parse failure: describe, never raise
            return "<unparsable DSN>"
        return "%s:%s/%s" % (info.get("host") or info.get("hostaddr") or "localhost", info.get("port") or 5432, info.get("dbname") or "")

    def store_exists(self) -> bool:
        return True

    def _is_db_error(self, exc: BaseException) -> bool:
        return isinstance(exc, _psycopg().Error)

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _connect(self, create: bool) -> Any:
        return _psycopg().connect(self.dsn, connect_timeout=self.connect_timeout, autocommit=True)

    def _table_count(self) -> int:
        row = self.execute("SELECT (to_regclass('audit_meta') IS NOT NULL)::int + (to_regclass('audit_records') IS NOT NULL)::int").fetchone()
        return int(row[0])

    @contextlib.contextmanager
    def write_txn(self) -> Iterator[None]:
        with self._conn.transaction():
            self.execute("SELECT pg_advisory_xact_lock(?)", (PG_LOCK_KEY,))
            yield

    @contextlib.contextmanager
    def read_txn(self) -> Iterator[None]:
        with self._conn.transaction(force_rollback=True):
            self.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    def iter_rows(self, batch: int = 2000) -> Iterator[tuple]:
        with self._conn.cursor(name="labops_ledger_scan") as cursor:
            cursor.itersize = batch
            cursor.execute(_SELECT + " ORDER BY seq")
            for row in cursor:
                yield _row_to_record(row)


# --------------------------------------------------------------------------- ledger


class Ledger:
    """Append, query, verify and export the audit chain of one backend."""

    def __init__(self, backend: _Backend, actor: str = DEFAULT_ACTOR, role: Optional[str] = DEFAULT_ACTOR) -> None:
        self.backend = backend
        self.actor = actor
        self.role = role

    def __enter__(self) -> "Ledger":  # noqa: PYI034 (typing.Self needs Python 3.11; module_utils run on 3.8)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> str:
        return "%s %s" % (self.backend.name, self.backend.describe())

    def preflight(self) -> None:
        """Raise AuditWriteError unless the ledger can be written right now (call before any platform change)."""
        with self.backend.guard("preflight"):
            self.backend.ensure_ready()
            try:
                with self.backend.write_txn():
                    self.backend.probe_write()
                    raise _Rollback()
            except _Rollback:
                pass

    def prepare(self, action: Any, ref_type: Any, ref_id: Any, actor: Any = None, role: Any = None, sop: Any = None,
                platform: Any = None, fields: Any = None, meta: Any = None, record_key: Any = None) -> dict:
        """Validated, redacted, minimised entry (no seq/ts/hashes yet)."""
        return prepare_entry(action, ref_type, ref_id, actor if actor is not None else self.actor,
                             role if role is not None else self.role, sop, platform, fields, meta, record_key)

    def append(self, action: Any, ref_type: Any, ref_id: Any, actor: Any = None, *, role: Any = None, sop: Any = None,
               platform: Any = None, fields: Any = None, meta: Any = None, record_key: Any = None) -> dict:
        """Append one record and return it (the existing one when ``record_key`` was already recorded)."""
        return self.append_once(action, ref_type, ref_id, actor, role=role, sop=sop, platform=platform,
                                fields=fields, meta=meta, record_key=record_key)[1]

    def append_once(self, action: Any, ref_type: Any, ref_id: Any, actor: Any = None, *, role: Any = None, sop: Any = None,
                    platform: Any = None, fields: Any = None, meta: Any = None, record_key: Any = None) -> tuple:
        """``(written, record)``: ``written`` is False when ``record_key`` already exists."""
        entry = self.prepare(action, ref_type, ref_id, actor, role, sop, platform, fields, meta, record_key)
        with self.backend.guard("append"):
            self.backend.ensure_ready()
            with self.backend.write_txn():
                return self._append_locked(entry)

    def append_batch(self, entries: list) -> list:
        """Append many records (each a dict of ``append`` keyword arguments) in ONE transaction.

        For imports and back-fills; governed actions use ``append`` (one transaction each).
        Returns the records in order; entries whose ``record_key`` exists return the stored record.
        """
        prepared = [self.prepare(entry.get("action"), entry.get("ref_type"), entry.get("ref_id"), entry.get("actor"), entry.get("role"),
                                 entry.get("sop"), entry.get("platform"), entry.get("fields"), entry.get("meta"), entry.get("record_key"))
                    for entry in entries]
        with self.backend.guard("append"):
            self.backend.ensure_ready()
            with self.backend.write_txn():
                return [self._append_locked(entry)[1] for entry in prepared]

    def _append_locked(self, entry: dict) -> tuple:
        record_key = entry["meta"].get("record_key")
        existing = self.backend.find_record_key(record_key) if record_key is not None else None
        if existing is not None:
            return False, existing
        head_seq, head_hash = self.backend.read_head()
        record = seal(entry, head_seq + 1, head_hash, utc_now())
        self.backend.insert(record)
        self.backend.write_head(record["seq"], record["hash"])
        return True, record

    def preview(self, action: Any, ref_type: Any, ref_id: Any, actor: Any = None, *, role: Any = None, sop: Any = None,
                platform: Any = None, fields: Any = None, meta: Any = None, record_key: Any = None) -> tuple:
        """What ``append_once`` would return now, without writing or creating anything (check mode)."""
        entry = self.prepare(action, ref_type, ref_id, actor, role, sop, platform, fields, meta, record_key)
        with self.backend.guard("read", write=False):
            if not self.backend.open_for_read():
                return True, seal(entry, 1, GENESIS_HASH, utc_now())
            with self.backend.read_txn():
                existing = self.backend.find_record_key(record_key) if record_key is not None else None
                head_seq, head_hash = self.backend.read_head()
        if existing is not None:
            return False, existing
        return True, seal(entry, head_seq + 1, head_hash, utc_now())

    def find(self, record_key: str) -> Optional[dict]:
        """The record appended with ``record_key``, or None."""
        with self.backend.guard("read", write=False):
            if not self.backend.open_for_read():
                return None
            return self.backend.find_record_key(record_key)

    def query(self, *, ref_type: Any = None, ref_id: Any = None, actor: Any = None, action: Any = None,
              since: Any = None, until: Any = None, limit: Any = None, record_key: Any = None) -> list:
        """Matching records in seq order; with ``limit`` the newest ``limit`` of them. ``since`` <= ts < ``until``."""
        where, params = _query_filters(ref_type, ref_id, actor, action, since, until, record_key)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValidationError("limit must be a positive integer, got %r" % (limit,))
        with self.backend.guard("query", write=False):
            if not self.backend.open_for_read():
                return []
            return self.backend.select(where, params, limit)

    def verify(self, anchor: Any = None, expect_records: bool = False) -> dict:
        """Walk the whole chain: ``{ok, count, first_broken, head_seq, head_hash, exists, anchor}``.

        ``anchor`` (``{seq, hash}``, e.g. from ``read_anchor_file``) must still be in the chain: this
        catches a tail cut or rewritten together with the head row. ``expect_records`` (implied by an
        anchor past seq 0) fails a missing or empty ledger. Never creates anything.
        """
        anchor = normalise_anchor(anchor)
        with self.backend.guard("verify", write=False):
            state = self.backend.open_state()
            if state in ("absent", "incomplete"):
                return absent_result(anchor, expect_records, incomplete=state == "incomplete")
            with self.backend.read_txn():
                walk = self._start_walk(anchor, state)
                walk.consume(self.backend.iter_rows())
                return walk.result(expect_records)

    def _start_walk(self, anchor: Optional[dict], state: str) -> ChainWalk:
        head = self.backend.read_head_row() if state == "ready" else None
        return ChainWalk(head, max(head[0] if head else 0, self.backend.count()), anchor)

    def export_jsonl(self, path_or_file: Any) -> int:
        """Write every record as one canonical JSON line (seq order); return the count.

        A path is written atomically (temporary file, mode 0600, then rename).
        """
        return self.export_snapshot(path_or_file)["count"]

    def export_snapshot(self, path_or_file: Any, anchor: Any = None) -> dict:
        """Export like ``export_jsonl`` and verify what was exported in the same snapshot.

        Returns ``{count, seq, hash, verification}``: ``seq``/``hash`` are those of the last exported
        record (the anchor of this export, valid only when ``verification["ok"]``); ``anchor`` is
        checked as in ``verify`` (typically the previous export's anchor).
        """
        anchor = normalise_anchor(anchor)
        if hasattr(path_or_file, "write"):
            return self._export_to(path_or_file, anchor)
        path = os.path.abspath(os.path.expanduser(path_or_file))
        tmp = "%s.tmp-%d" % (path, os.getpid())
        try:
            with open(os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600), "w", encoding="utf-8") as handle:
                snapshot = self._export_to(handle, anchor)
            os.replace(tmp, path)
        except OSError as exc:
            raise LabopsError("audit ledger export to %s failed: %s" % (path, exc), dest=path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return snapshot

    def _export_to(self, handle: Any, anchor: Optional[dict]) -> dict:
        with self.backend.guard("export", write=False):
            state = self.backend.open_state()
            if state in ("absent", "incomplete"):
                return dict(count=0, seq=0, hash=GENESIS_HASH, verification=absent_result(anchor, False, incomplete=state == "incomplete"))
            with self.backend.read_txn():
                walk = self._start_walk(anchor, state)
                walk.consume(self.backend.iter_rows(), handle.write)
                verification = walk.result()
        return dict(count=walk.count, seq=walk.expected_seq - 1, hash=walk.prev_hash, verification=verification)

    def close(self) -> None:
        self.backend.close()


class _Rollback(Exception):
    """Raised inside a write transaction to roll it back on purpose (preflight)."""


def _query_filters(ref_type: Any, ref_id: Any, actor: Any, action: Any, since: Any, until: Any, record_key: Any) -> tuple:
    where, params = [], []
    for column, value in (("ref_type", ref_type), ("ref_id", ref_id), ("actor", actor), ("record_key", record_key)):
        if value is not None:
            where.append("%s = ?" % column)
            params.append(str(value))
    if action is not None:
        where.append("action = ?")
        params.append(validate_action(action))
    for operator, value, name in ((">=", since, "since"), ("<", until, "until")):
        bound = normalise_ts(value, name)
        if bound is not None:
            where.append("ts %s ?" % operator)
            params.append(bound)
    return (" WHERE " + " AND ".join(where) if where else ""), tuple(params)


def ledger_from_params(params: dict) -> Ledger:
    """Build a Ledger from module params carrying the LEDGER_ARGSPEC options."""
    backend = params.get("ledger_backend") or "sqlite"
    actor = params.get("actor") or DEFAULT_ACTOR
    role = params.get("actor_role") or DEFAULT_ACTOR
    if backend == "sqlite":
        return Ledger(SqliteBackend(params.get("ledger_path") or DEFAULT_LEDGER_PATH), actor, role)
    if backend == "postgresql":
        if not params.get("ledger_dsn"):
            raise ValidationError("ledger_backend=postgresql needs ledger_dsn (or LABOPS_LEDGER_DSN)")
        return Ledger(PostgresBackend(params["ledger_dsn"]), actor, role)
    raise ValidationError("unknown ledger_backend %r: expected sqlite or postgresql" % (backend,))
