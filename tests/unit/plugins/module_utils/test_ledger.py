# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hash-chained audit ledger on real SQLite files and a real throwaway PostgreSQL server."""


import datetime
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _ledger
from ansible_collections.labops.itsm.plugins.module_utils._errors import AuditWriteError, LabopsError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._ledger import (
    ACTIONS,
    GENESIS_HASH,
    LEDGER_ARGSPEC,
    MAX_RECORD_BYTES,
    Ledger,
    PostgresBackend,
    SqliteBackend,
    ledger_from_params,
)
from ansible_collections.labops.itsm.tests.pg import postgresql_dsn, postgresql_server  # noqa: F401 pylint: disable=unused-import

try:
    import psycopg
except ImportError:
    psycopg = None

SEED_002_ACTIONS = {"identify", "create", "read", "update", "notify", "escalate", "resolve", "close", "review", "kb_update",
                    "vendor_engagement", "simulation", "tool_use", "link"}
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


# --------------------------------------------------------------------------- fixtures


class Target:
    """A ledger plus raw SQL access to its storage, for tampering."""

    def __init__(self, kind, location):
        self.kind = kind
        self.location = location
        if kind == "sqlite":
            self.params = dict(ledger_backend="sqlite", ledger_path=location)
        else:
            self.params = dict(ledger_backend="postgresql", ledger_dsn=location)

    def ledger(self, **extra):
        return ledger_from_params(dict(self.params, **extra))

    def sql(self, statement, params=()):
        """Run statements as an attacker with direct database access would."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.location)
            try:
                with conn:
                    rows = conn.execute(statement, params).fetchall() if statement.lstrip().upper().startswith("SELECT") else conn.execute(statement, params)
                    return rows if isinstance(rows, list) else None
            finally:
                conn.close()
        with psycopg.connect(self.location, autocommit=True) as conn:
            cursor = conn.execute(statement.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else None


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return Target("sqlite", str(tmp_path / "state" / "ims_audit.sqlite3"))
    return Target("postgresql", request.getfixturevalue("postgresql_dsn"))


@pytest.fixture
def sqlite_target(tmp_path):
    return Target("sqlite", str(tmp_path / "state" / "ims_audit.sqlite3"))


def fill(ledger, count, ref_type="incident"):
    return [ledger.append("update", ref_type, "T%d" % i, "automation", role="service_desk", sop="incident_categorization",
                          platform="otobo", fields={"category": {"before": None, "after": "software-%d" % i}}, meta={"n": i})
            for i in range(1, count + 1)]


def independent_hash(record):
    """The documented formula, written out without the module's helpers."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- options and records


def test_argspec_options_and_env_fallbacks():
    assert set(LEDGER_ARGSPEC) == {"ledger_backend", "ledger_path", "ledger_dsn", "actor", "actor_role"}
    assert LEDGER_ARGSPEC["ledger_backend"]["choices"] == ["sqlite", "postgresql"]
    assert LEDGER_ARGSPEC["ledger_dsn"]["no_log"] is True
    envs = {name: spec["fallback"][1][0] for name, spec in LEDGER_ARGSPEC.items()}
    assert envs == {"ledger_backend": "LABOPS_LEDGER_BACKEND", "ledger_path": "LABOPS_LEDGER_PATH", "ledger_dsn": "LABOPS_LEDGER_DSN",
                    "actor": "LABOPS_ACTOR", "actor_role": "LABOPS_ACTOR_ROLE"}


def test_actions_are_exactly_seed_002():
    assert set(ACTIONS) == SEED_002_ACTIONS


def test_record_shape_and_hash_chain(target):
    with target.ledger() as ledger:
        first = ledger.append("create", "incident", "2025061110000421", "alice", role="service_desk", sop="monitoring_intake",
                              platform="otobo", fields={"state": {"before": None, "after": "open"}}, meta={"source": "alertmanager"})
        second = ledger.append("notify", "incident", "2025061110000421", "alice")
    assert list(first) == ["seq", "ts", "action", "ref_type", "ref_id", "actor", "role", "sop", "platform", "fields", "meta", "prev_hash", "hash"]
    assert first["seq"] == 1 and second["seq"] == 2
    assert first["prev_hash"] == GENESIS_HASH == "0" * 64
    assert second["prev_hash"] == first["hash"]
    assert TS_RE.match(first["ts"]) and first["ts"] <= second["ts"]
    assert first["hash"] == independent_hash(first) and second["hash"] == independent_hash(second)
    assert first["fields"] == {"state": {"before": None, "after": "open"}}
    assert (first["actor"], first["role"], first["sop"], first["platform"]) == ("alice", "service_desk", "monitoring_intake", "otobo")
    assert second["fields"] == {} and second["meta"] == {} and second["role"] == "automation"
    with target.ledger() as ledger:
        assert ledger.query() == [first, second]


@pytest.mark.parametrize("action", ["delete", "CREATE", "", None, "approve"])
def test_unknown_action_is_rejected_naming_the_value(sqlite_target, action):
    with sqlite_target.ledger() as ledger:
        with pytest.raises(ValidationError) as err:
            ledger.append(action, "incident", "1", "bob")
        assert repr(action) in str(err.value) and "kb_update" in str(err.value)
        assert ledger.query() == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ref_type="", ref_id="1"), "ref_type"),
        (dict(ref_type="incident", ref_id=None), "ref_id"),
        (dict(ref_type="incident", ref_id="x" * 300), "longer than 256"),
        (dict(ref_type="incident", ref_id="1", fields={"state": "closed"}), "before"),
        (dict(ref_type="incident", ref_id="1", fields={"state": {"old": 1}}), "before"),
        (dict(ref_type="incident", ref_id="1", fields=["state"]), "mapping"),
        (dict(ref_type="incident", ref_id="1", meta="raw log"), "meta must be a mapping"),
    ],
)
def test_invalid_entries_are_rejected(sqlite_target, kwargs, message):
    with sqlite_target.ledger() as ledger, pytest.raises(ValidationError, match=message):
        ledger.append("update", actor="bob", **kwargs)


def test_actor_and_role_default_to_the_params(sqlite_target):
    with sqlite_target.ledger(actor="eda-rulebook", actor_role="service_desk") as ledger:
        record = ledger.append("identify", "incident", "7")
    assert (record["actor"], record["role"]) == ("eda-rulebook", "service_desk")


def test_record_key_makes_append_idempotent(target):
    with target.ledger() as ledger:
        written, record = ledger.append_once("review", "incident", "9", "im", record_key="pir-9")
        again, same = ledger.append_once("review", "incident", "9", "im", record_key="pir-9", meta={"other": 1})
        assert (written, again) == (True, False)
        assert same == record and record["meta"] == {"record_key": "pir-9"}
        assert ledger.append("review", "incident", "9", "im", record_key="pir-9") == record
        assert ledger.find("pir-9") == record and ledger.find("nope") is None
        assert len(ledger.query()) == 1


# --------------------------------------------------------------------------- redaction and minimisation


SECRETS = ("hunter2-XYZZY", "AKIA-XYZZY-KEY", "eyJ-XYZZY-bearer", "pw-XYZZY-url", "sess-XYZZY-id", "dsn-XYZZY-pass")


def append_secrets(ledger):
    return ledger.append(
        "update", "incident", "42", "automation",
        fields={"password": {"before": "old-" + SECRETS[0], "after": SECRETS[0]},
                "note": {"before": None, "after": "called with Authorization: Bearer " + SECRETS[2]}},
        meta={"api_key": SECRETS[1], "request": {"url": "https://svc:%s@otobo.example.com/api" % SECRETS[3],
                                                 "headers": {"X-OTOBO-SessionID": SECRETS[4]}},
              "dsn": "host=db password=%s dbname=x" % SECRETS[5], "list": [{"Token": SECRETS[2]}]},
    )


def test_secrets_never_reach_the_sqlite_file_or_export(sqlite_target, tmp_path):
    with sqlite_target.ledger() as ledger:
        record = append_secrets(ledger)
        export = tmp_path / "export.jsonl"
        assert ledger.export_jsonl(str(export)) == 1
    assert record["fields"]["password"] == {"before": "********", "after": "********"}
    assert record["meta"]["api_key"] == "********"
    directory = os.path.dirname(sqlite_target.location)
    raw = b"".join(Path(directory, name).read_bytes() for name in os.listdir(directory))
    raw += export.read_bytes()
    assert b"XYZZY" not in raw
    assert b"otobo.example.com" in raw  # the record itself was written


def test_secrets_never_reach_postgresql(postgresql_dsn):  # noqa: F811 pylint: disable=redefined-outer-name
    pg = Target("postgresql", postgresql_dsn)
    with pg.ledger() as ledger:
        append_secrets(ledger)
        buffer = io.StringIO()
        ledger.export_jsonl(buffer)
    dump = json.dumps(pg.sql("SELECT * FROM audit_records")) + json.dumps(pg.sql("SELECT * FROM audit_meta")) + buffer.getvalue()
    assert "XYZZY" not in dump and "otobo.example.com" in dump


def test_meta_strings_are_truncated(sqlite_target):
    with sqlite_target.ledger() as ledger:
        record = ledger.append("tool_use", "incident", "1", meta={"output": "L" * 4000})
    assert record["meta"]["output"].startswith("L" * 512) and "truncated 3488 chars" in record["meta"]["output"]


def test_record_is_capped_at_8_kib(sqlite_target):
    meta = {"line_%02d" % i: "x" * 500 for i in range(40)}
    fields = {"f%02d" % i: {"before": "b" * 400, "after": "a" * 400} for i in range(4)}
    with sqlite_target.ledger() as ledger:
        record = ledger.append("tool_use", "incident", "1", fields=fields, meta=meta, record_key="rk-1")
        assert len(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()) <= MAX_RECORD_BYTES
        assert record["meta"]["_omitted"].startswith("meta exceeded") and record["meta"]["record_key"] == "rk-1"
        assert record["meta"]["_keys"][:2] == ["line_00", "line_01"]
        assert record["fields"]["f00"]["after"].startswith("a" * 128) and "truncated" in record["fields"]["f00"]["after"]
        huge_fields = {"field_%03d" % i: {"before": "b" * 100, "after": "a" * 100} for i in range(60)}
        with pytest.raises(ValidationError, match="exceeds 8192 bytes"):
            ledger.append("update", "incident", "1", fields=huge_fields)
        assert ledger.verify()["ok"]


# --------------------------------------------------------------------------- SQLite storage details


def test_sqlite_file_layout(sqlite_target):
    with sqlite_target.ledger() as ledger:
        ledger.preflight()
        ledger.append("read", "incident", "1")
    directory = os.path.dirname(sqlite_target.location)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sqlite_target.location).st_mode) == 0o600
    assert sqlite_target.sql("SELECT value FROM audit_meta WHERE key = 'schema_version'") == [("1",)]
    conn = sqlite3.connect(sqlite_target.location)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO audit_records SELECT * FROM audit_records WHERE seq = 1")
    finally:
        conn.close()


def test_reads_and_check_mode_create_nothing(tmp_path):
    path = tmp_path / "absent" / "ledger.sqlite3"
    with ledger_from_params(dict(ledger_path=str(path))) as ledger:
        assert ledger.query() == []
        assert ledger.verify() == dict(ok=True, count=0, first_broken=None, head_seq=0, head_hash=GENESIS_HASH, exists=False, anchor=None)
        assert ledger.find("k") is None
        written, record = ledger.preview("create", "incident", "1", record_key="k")
        assert written and record["seq"] == 1 and record["prev_hash"] == GENESIS_HASH
        assert ledger.export_jsonl(io.StringIO()) == 0
    assert not path.parent.exists()


def test_preview_predicts_the_next_record(target):
    with target.ledger() as ledger:
        head = fill(ledger, 3)[-1]
        written, predicted = ledger.preview("close", "incident", "T3", fields={"state": {"before": "resolved", "after": "closed"}})
        assert written and predicted["seq"] == 4 and predicted["prev_hash"] == head["hash"]
        actual = ledger.append("close", "incident", "T3", fields={"state": {"before": "resolved", "after": "closed"}})
        assert dict(predicted, ts=None, hash=None) == dict(actual, ts=None, hash=None)
        assert len(ledger.query()) == 4


def test_newer_schema_version_is_refused(sqlite_target):
    with sqlite_target.ledger() as ledger:
        ledger.append("read", "incident", "1")
    sqlite_target.sql("UPDATE audit_meta SET value = '99' WHERE key = 'schema_version'")
    with sqlite_target.ledger() as ledger, pytest.raises(AuditWriteError, match="schema version 99"):
        ledger.append("read", "incident", "2")


def test_parent_path_is_a_regular_file(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with ledger_from_params(dict(ledger_path=str(blocker / "sub" / "ledger.sqlite3"))) as ledger, pytest.raises(AuditWriteError) as err:
        ledger.preflight()
    assert "not a directory" in str(err.value).lower() and "halts" in str(err.value)
    assert err.value.fail_kwargs()["backend"] == "sqlite"


def test_path_is_a_directory(tmp_path):
    with ledger_from_params(dict(ledger_path=str(tmp_path))) as ledger, pytest.raises(AuditWriteError, match="is a directory"):
        ledger.append("read", "incident", "1")


def test_not_a_database(tmp_path):
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with ledger_from_params(dict(ledger_path=str(path))) as ledger:
        with pytest.raises(AuditWriteError, match="not a database"):
            ledger.preflight()
        with pytest.raises(LabopsError, match="could not|failed"):
            ledger.query()


@pytest.fixture
def immutable(tmp_path):
    """chattr +i: even root cannot write the file (skips where the filesystem has no such attribute)."""
    path = tmp_path / "ledger.sqlite3"
    with ledger_from_params(dict(ledger_path=str(path))) as ledger:
        ledger.append("read", "incident", "1")
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip("chattr +i is not supported here: %s" % result.stderr.strip())
    yield path
    subprocess.run(["chattr", "-i", str(path)], check=True)


def test_immutable_ledger_fails_preflight_and_append(immutable):
    with ledger_from_params(dict(ledger_path=str(immutable))) as ledger:
        with pytest.raises(AuditWriteError, match="readonly|read-only|not permitted|unable to open"):
            ledger.preflight()
        with pytest.raises(AuditWriteError):
            ledger.append("read", "incident", "2")
        assert [r["seq"] for r in ledger.query()] == [1]


NON_ROOT_SCRIPT = r"""
import sys
sys.path[:0] = [sys.argv[1], sys.argv[3]]
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._errors import AuditWriteError
ledger = ledger_from_params({"ledger_path": sys.argv[2]})
try:
    ledger.preflight()
except AuditWriteError as exc:
    print("AuditWriteError: %s" % exc)
else:
    print("WROTE")
"""


def _interpreter_for_nobody(nobody):
    version = "python%d.%d" % sys.version_info[:2]
    for candidate in (sys.executable, shutil.which(version) or "", "/usr/bin/" + version):
        try:
            probe = subprocess.run([candidate, "-c", "import sqlite3"], user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[],
                                   cwd="/", capture_output=True, check=False)
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    pytest.skip("no %s that the 'nobody' account can execute" % version)


@pytest.mark.parametrize("layout", ["read-only file", "read-only directory"])
def test_unwritable_for_a_non_root_user(tmp_path, layout):
    """Real permissions: the check runs as 'nobody' (as root, only chattr/mount tricks would stop a write)."""
    import pwd  # pylint: disable=import-outside-toplevel

    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    nobody = pwd.getpwnam("nobody")
    os.chmod(str(tmp_path), 0o755)
    ledger_dir = tmp_path / "ledger"
    with ledger_from_params(dict(ledger_path=str(ledger_dir / "l.sqlite3"))) as ledger:
        ledger.append("read", "incident", "1")
    os.chown(str(ledger_dir), nobody.pw_uid, nobody.pw_gid)
    if layout == "read-only file":
        for name in os.listdir(str(ledger_dir)):
            os.chown(str(ledger_dir / name), nobody.pw_uid, nobody.pw_gid)
        os.chmod(str(ledger_dir / "l.sqlite3"), 0o444)
        target_path = ledger_dir / "l.sqlite3"
    else:
        os.chmod(str(ledger_dir), 0o555)
        target_path = ledger_dir / "new" / "l.sqlite3"
    collections = os.path.join(sys.prefix, "collections")
    site_packages = os.path.dirname(os.path.dirname(os.path.abspath(pytest.__file__)))
    # The venv's interpreter may live under /root (pyenv), which nobody cannot execute: use a
    # world-readable interpreter of the same minor version with the venv's (pure Python) packages.
    python = _interpreter_for_nobody(nobody)
    result = subprocess.run([python, "-c", NON_ROOT_SCRIPT, collections, str(target_path), site_packages], capture_output=True, text=True,
                            user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], cwd="/", check=False, timeout=60)
    assert result.stdout.startswith("AuditWriteError"), result.stdout + result.stderr
    assert "readonly" in result.stdout or "Permission denied" in result.stdout


def test_postgresql_down_is_an_audit_write_error_without_the_password():
    if psycopg is None:
        pytest.skip("psycopg is not installed")
    import socket  # pylint: disable=import-outside-toplevel

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dsn = "host=127.0.0.1 port=%d user=audit password=Sup3rS3cret dbname=audit connect_timeout=3" % port
    with ledger_from_params(dict(ledger_backend="postgresql", ledger_dsn=dsn)) as ledger:
        with pytest.raises(AuditWriteError) as err:
            ledger.preflight()
        with pytest.raises(AuditWriteError):
            ledger.append("create", "incident", "1")
        with pytest.raises(LabopsError):
            ledger.verify()
    text = json.dumps(err.value.fail_kwargs())
    assert "Sup3rS3cret" not in text
    assert "127.0.0.1:%d/audit" % port in text and "halts" in text


def test_postgresql_needs_a_dsn():
    with pytest.raises(ValidationError, match="ledger_dsn"):
        ledger_from_params(dict(ledger_backend="postgresql"))


def test_postgresql_without_psycopg(monkeypatch):
    monkeypatch.setattr(_ledger, "HAS_PSYCOPG", False)
    with pytest.raises(AuditWriteError, match="psycopg"):
        PostgresBackend("host=x")


# --------------------------------------------------------------------------- query


def test_query_filters(target):
    with target.ledger() as ledger:
        ledger.append("create", "incident", "A", "alice")
        ledger.append("update", "incident", "A", "bob")
        ledger.append("create", "problem", "P1", "alice")
        middle = ledger.append("close", "incident", "A", "alice")
        ledger.append("notify", "incident", "B", "carol")

        def seqs(**filters):
            return [r["seq"] for r in ledger.query(**filters)]

        assert seqs() == [1, 2, 3, 4, 5]
        assert seqs(ref_type="incident", ref_id="A") == [1, 2, 4]
        assert seqs(actor="alice") == [1, 3, 4]
        assert seqs(action="create") == [1, 3]
        assert seqs(limit=2) == [4, 5]
        assert seqs(actor="alice", limit=1) == [4]
        assert seqs(since=middle["ts"]) == [4, 5]
        assert seqs(until=middle["ts"]) == [1, 2, 3]
        moment = datetime.datetime.strptime(middle["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert seqs(since=moment.replace(tzinfo=datetime.UTC).astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat()) == [4, 5]
        assert seqs(since=moment) == [4, 5]  # naive means UTC
        assert seqs(ref_id="nope") == []
        with pytest.raises(ValidationError, match="'delete'"):
            ledger.query(action="delete")
        with pytest.raises(ValidationError, match="ISO-8601"):
            ledger.query(since="yesterday")
        with pytest.raises(ValidationError, match="positive"):
            ledger.query(limit=0)


# --------------------------------------------------------------------------- verify and tampering


def test_intact_chain_verifies(target):
    with target.ledger() as ledger:
        records = fill(ledger, 6)
        result = ledger.verify()
    assert result == dict(ok=True, count=6, first_broken=None, head_seq=6, head_hash=records[-1]["hash"], exists=True, anchor=None)


def tampered(target, statements, count=6):
    with target.ledger() as ledger:
        fill(ledger, count)
    for statement in statements:
        target.sql(*statement) if isinstance(statement, tuple) else target.sql(statement)
    with target.ledger() as ledger:
        result = ledger.verify()
    assert result["ok"] is False
    return result


def test_changed_field_is_detected(target):
    fields = json.dumps({"category": {"after": "hardware", "before": None}}, sort_keys=True, separators=(",", ":"))
    result = tampered(target, [("UPDATE audit_records SET fields = ? WHERE seq = 3", (fields,))])
    broken = result["first_broken"]
    assert (broken["seq"], broken["reason"]) == (3, "content_changed")
    assert "content changed" in broken["message"] and result["count"] == 6


def test_changed_column_is_detected(target):
    broken = tampered(target, ["UPDATE audit_records SET actor = 'mallory' WHERE seq = 2"])["first_broken"]
    assert (broken["seq"], broken["reason"]) == (2, "content_changed")


def test_deleted_record_is_detected(target):
    result = tampered(target, ["DELETE FROM audit_records WHERE seq = 4"])
    broken = result["first_broken"]
    assert (broken["seq"], broken["reason"], broken["found_seq"]) == (4, "deleted", 5)
    assert "deleted" in broken["message"] and "seq 4 to 4 missing" in broken["message"] and result["count"] == 5


def test_deleted_first_record_is_detected(target):
    broken = tampered(target, ["DELETE FROM audit_records WHERE seq = 1"])["first_broken"]
    assert (broken["seq"], broken["reason"]) == (1, "deleted")


def test_deleted_tail_is_detected(target):
    broken = tampered(target, ["DELETE FROM audit_records WHERE seq >= 5"])["first_broken"]
    assert (broken["seq"], broken["reason"]) == (5, "deleted")
    assert "end of the chain" in broken["message"]


def test_swapped_seq_is_reported_as_reordered(target):
    result = tampered(target, [
        "UPDATE audit_records SET seq = -1 WHERE seq = 3",
        "UPDATE audit_records SET seq = 3 WHERE seq = 4",
        "UPDATE audit_records SET seq = 4 WHERE seq = -1",
    ])
    broken = result["first_broken"]
    assert (broken["seq"], broken["reason"], broken["original_seq"]) == (3, "reordered", 4)
    assert "reordered" in broken["message"]


def test_forged_record_with_recomputed_hash_breaks_the_next_link(target):
    with target.ledger() as ledger:
        records = fill(ledger, 5)
    forged = dict(records[2], actor="mallory")
    forged["hash"] = independent_hash(forged)
    target.sql("UPDATE audit_records SET actor = ?, hash = ? WHERE seq = 3", ("mallory", forged["hash"]))
    with target.ledger() as ledger:
        broken = ledger.verify()["first_broken"]
    assert (broken["seq"], broken["reason"]) == (4, "broken_link")
    assert "prev_hash of seq 4" in broken["message"]


def test_appended_outside_the_ledger_is_a_head_mismatch(target):
    with target.ledger() as ledger:
        records = fill(ledger, 2)
    extra = dict(records[-1], seq=3, prev_hash=records[-1]["hash"], ts=records[-1]["ts"])
    extra["hash"] = independent_hash(extra)
    target.sql("INSERT INTO audit_records (seq, ts, action, ref_type, ref_id, actor, role, sop, platform, fields, meta, record_key, prev_hash, hash) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
               (3, extra["ts"], extra["action"], extra["ref_type"], extra["ref_id"], extra["actor"], extra["role"], extra["sop"], extra["platform"],
                json.dumps(extra["fields"]), json.dumps(extra["meta"]), extra["prev_hash"], extra["hash"]))
    with target.ledger() as ledger:
        broken = ledger.verify()["first_broken"]
    assert (broken["seq"], broken["reason"]) == (3, "head_mismatch")
    assert "outside the ledger" in broken["message"]


def test_replaced_last_record_is_a_head_mismatch(target):
    with target.ledger() as ledger:
        records = fill(ledger, 3)
    forged = dict(records[-1], actor="mallory")
    forged["hash"] = independent_hash(forged)
    target.sql("UPDATE audit_records SET actor = ?, hash = ? WHERE seq = 3", ("mallory", forged["hash"]))
    with target.ledger() as ledger:
        broken = ledger.verify()["first_broken"]
    assert (broken["seq"], broken["reason"]) == (3, "head_mismatch")
    assert "replaced" in broken["message"]


def test_tampered_record_key_index_is_detected(target):
    with target.ledger() as ledger:
        ledger.append("review", "incident", "1", record_key="pir-1")
    target.sql("UPDATE audit_records SET record_key = 'other' WHERE seq = 1")
    with target.ledger() as ledger:
        broken = ledger.verify()["first_broken"]
    assert (broken["seq"], broken["reason"]) == (1, "content_changed")


def test_export_is_verifiable_without_the_collection(target, tmp_path):
    path = tmp_path / "out" / "export.jsonl"
    path.parent.mkdir()
    with target.ledger() as ledger:
        fill(ledger, 4)
        assert ledger.export_jsonl(str(path)) == 4
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600
    previous = "0" * 64
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        record = json.loads(line)
        assert line == json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert record["seq"] == number and record["prev_hash"] == previous and independent_hash(record) == record["hash"]
        previous = record["hash"]
    assert os.listdir(str(path.parent)) == ["export.jsonl"]


# --------------------------------------------------------------------------- concurrency


def _worker(params, worker, count):
    with ledger_from_params(params) as ledger:
        for number in range(count):
            ledger.append("update", "incident", "W%d-%d" % (worker, number), "worker-%d" % worker, meta={"n": number})


def test_parallel_processes_lose_nothing(target):
    if target.kind == "sqlite":
        with target.ledger() as ledger:
            ledger.preflight()  # otherwise the eight processes race to create the file, which is also fine
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(target.params, worker, 40)) for worker in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0] * 8
    with target.ledger() as ledger:
        records = ledger.query()
        result = ledger.verify()
    assert result["ok"] and result["count"] == 320
    assert [r["seq"] for r in records] == list(range(1, 321))
    assert {r["ref_id"] for r in records} == {"W%d-%d" % (w, n) for w in range(8) for n in range(40)}


def test_parallel_processes_create_a_fresh_sqlite_ledger(tmp_path):
    params = dict(ledger_backend="sqlite", ledger_path=str(tmp_path / "fresh" / "l.sqlite3"))
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(params, worker, 5)) for worker in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0] * 8
    with ledger_from_params(params) as ledger:
        assert ledger.verify()["count"] == 40 and ledger.verify()["ok"]


def test_sqlite_busy_timeout_becomes_audit_write_error(tmp_path):
    path = str(tmp_path / "l.sqlite3")
    with Ledger(SqliteBackend(path)) as ledger:
        ledger.append("read", "incident", "1")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with Ledger(SqliteBackend(path, busy_timeout=0.2)) as ledger, pytest.raises(AuditWriteError, match="locked"):
            ledger.append("read", "incident", "2")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with Ledger(SqliteBackend(path)) as ledger:
        assert ledger.append("read", "incident", "2")["seq"] == 2


# --------------------------------------------------------------------------- anchors, missing and wiped ledgers


def anchor_of(record):
    return {"seq": record["seq"], "hash": record["hash"]}


def set_head(target, seq, digest):
    """Rewrite the chain head row as an attacker who also knows the format would."""
    target.sql("UPDATE audit_meta SET value = ? WHERE key = 'head'", (json.dumps({"hash": digest, "seq": seq}),))


def verify(target, **kwargs):
    with target.ledger() as ledger:
        return ledger.verify(**kwargs)


def test_intact_chain_verifies_against_every_anchor(target):
    with target.ledger() as ledger:
        records = fill(ledger, 5)
    for record in (records[0], records[2], records[-1]):
        result = verify(target, anchor=anchor_of(record), expect_records=True)
        assert result["ok"] and result["first_broken"] is None and result["exists"] is True
        assert result["anchor"] == dict(anchor_of(record), ok=True)
    assert verify(target, anchor={"seq": 0, "hash": GENESIS_HASH})["ok"]


def test_tail_deleted_with_the_head_row_rewritten_needs_the_anchor(target):
    with target.ledger() as ledger:
        records = fill(ledger, 6)
    target.sql("DELETE FROM audit_records WHERE seq >= 5")
    set_head(target, 4, records[3]["hash"])
    assert verify(target)["ok"] is True  # the limit of a chain checked only against itself
    result = verify(target, anchor=anchor_of(records[-1]))
    broken = result["first_broken"]
    assert result["ok"] is False and (broken["seq"], broken["reason"], broken["anchor_seq"]) == (5, "anchor_missing", 6)
    assert "the anchor is seq 6 but the ledger ends at seq 4" in broken["message"]
    assert result["anchor"] == dict(anchor_of(records[-1]), ok=False)
    assert verify(target, anchor=anchor_of(records[3]))["ok"] is True  # an older anchor cannot see what came later


def test_tail_deleted_together_with_the_head_row(target):
    with target.ledger() as ledger:
        fill(ledger, 6)
    target.sql("DELETE FROM audit_records WHERE seq >= 5")
    target.sql("DELETE FROM audit_meta WHERE key = 'head'")
    result = verify(target)
    assert result["ok"] is False and (result["first_broken"]["seq"], result["first_broken"]["reason"]) == (5, "metadata_missing")
    assert result["head_seq"] is None and result["head_hash"] is None and result["count"] == 4


def test_first_record_deleted_fails_without_an_anchor(target):
    with target.ledger() as ledger:
        fill(ledger, 3)
    target.sql("DELETE FROM audit_records WHERE seq = 1")
    broken = verify(target)["first_broken"]
    assert (broken["seq"], broken["reason"], broken["found_seq"]) == (1, "deleted", 2)


def test_first_record_deleted_and_the_rest_renumbered(target):
    with target.ledger() as ledger:
        fill(ledger, 3)
    target.sql("DELETE FROM audit_records WHERE seq = 1")
    target.sql("UPDATE audit_records SET seq = seq - 1")
    with target.ledger() as ledger:
        head = ledger.query()[-1]
    set_head(target, head["seq"], head["hash"])
    broken = verify(target)["first_broken"]
    assert (broken["seq"], broken["reason"], broken["original_seq"]) == (1, "reordered", 2)


def test_first_record_deleted_and_the_next_one_rehashed_as_seq_1(target):
    """The genesis check: seq 1 must link to 64 zeros, whatever else was made consistent."""
    with target.ledger() as ledger:
        records = fill(ledger, 3)
    forged = dict(records[1], seq=1)
    forged["hash"] = independent_hash(forged)
    target.sql("DELETE FROM audit_records WHERE seq = 1")
    target.sql("UPDATE audit_records SET seq = 1, hash = ? WHERE seq = 2", (forged["hash"],))
    broken = verify(target)["first_broken"]
    assert (broken["seq"], broken["reason"]) == (1, "broken_link") and "not the genesis value" in broken["message"]


@pytest.mark.parametrize("statements", [
    ["DELETE FROM audit_records", "DELETE FROM audit_meta WHERE key = 'head'"],
    ["DELETE FROM audit_records", "DELETE FROM audit_meta"],
    ["UPDATE audit_meta SET value = 'not json' WHERE key = 'head'"],
], ids=["records-and-head", "records-and-metadata", "head-overwritten"])
def test_wiped_metadata_fails_without_an_anchor(target, statements):
    with target.ledger() as ledger:
        fill(ledger, 3)
    for statement in statements:
        target.sql(statement)
    result = verify(target)
    assert result["ok"] is False and result["first_broken"]["reason"] == "metadata_missing"
    assert "missing or unreadable" in result["first_broken"]["message"]


@pytest.mark.parametrize("statements, missing", [
    (["DELETE FROM audit_records", "DELETE FROM audit_meta WHERE key = 'head'"], "head missing"),
    (["DELETE FROM audit_records", "DELETE FROM audit_meta"], "head, schema_version missing"),
    (["DELETE FROM audit_records WHERE seq >= 2", "DELETE FROM audit_meta WHERE key = 'head'"], "head missing"),
    (["DROP TABLE audit_meta"], "a table missing"),
], ids=["wiped", "wiped-with-metadata", "tail-and-head", "dropped-meta"])
def test_writes_halt_instead_of_restarting_a_wiped_chain(target, statements, missing):
    """Without the refusal the next append would seed a fresh head and start a new chain at seq 1 that verifies."""
    with target.ledger() as ledger:
        fill(ledger, 3)
    for statement in statements:
        target.sql(statement)
    with target.ledger() as ledger, pytest.raises(AuditWriteError, match="exists without its metadata \\(%s\\).*the governed action halts" % missing):
        ledger.preflight()
    with target.ledger() as ledger, pytest.raises(AuditWriteError, match="without its metadata"):
        ledger.append("read", "incident", "after-the-wipe")
    assert verify(target)["ok"] is False


def test_unreadable_head_halts_an_append_with_an_audit_error(target):
    with target.ledger() as ledger:
        fill(ledger, 1)
    target.sql("UPDATE audit_meta SET value = '{\"seq\": \"x\"}' WHERE key = 'head'")
    with target.ledger() as ledger, pytest.raises(AuditWriteError, match="chain head in audit_meta .* is missing or unreadable"):
        ledger.append("read", "incident", "2")


def test_wiped_records_with_a_genesis_head(target):
    with target.ledger() as ledger:
        records = fill(ledger, 4)
    target.sql("DELETE FROM audit_records")
    set_head(target, 0, GENESIS_HASH)
    assert verify(target)["ok"] is True  # indistinguishable from a ledger that was created and never written
    empty = verify(target, expect_records=True)
    assert empty["ok"] is False and (empty["first_broken"]["seq"], empty["first_broken"]["reason"]) == (1, "empty")
    anchored = verify(target, anchor=anchor_of(records[-1]))
    assert anchored["first_broken"]["reason"] == "empty" and "the anchor says seq 4 exists" in anchored["first_broken"]["message"]
    assert anchored["anchor"]["ok"] is False


def test_wiped_and_rewritten_chain_fails_the_anchor(target):
    """A new chain written after a wipe links up and has a matching head; only the anchor sees it."""
    with target.ledger() as ledger:
        records = fill(ledger, 4)
    target.sql("DELETE FROM audit_records")
    set_head(target, 0, GENESIS_HASH)
    with target.ledger() as ledger:
        fill(ledger, 5, ref_type="problem")
    assert verify(target)["ok"] is True
    broken = verify(target, anchor=anchor_of(records[-1]))["first_broken"]
    assert (broken["seq"], broken["reason"], broken["anchor_seq"]) == (4, "anchor_mismatch", 4)


def test_wrong_anchor_hash(target):
    with target.ledger() as ledger:
        records = fill(ledger, 3)
    result = verify(target, anchor={"seq": 2, "hash": records[0]["hash"]})
    assert result["ok"] is False and (result["first_broken"]["seq"], result["first_broken"]["reason"]) == (2, "anchor_mismatch")


def test_anchor_beyond_the_end(target):
    with target.ledger() as ledger:
        records = fill(ledger, 3)
    broken = verify(target, anchor={"seq": 9, "hash": records[-1]["hash"]})["first_broken"]
    assert (broken["seq"], broken["reason"], broken["anchor_seq"]) == (4, "anchor_missing", 9)


def test_a_broken_link_is_reported_before_the_anchor(target):
    with target.ledger() as ledger:
        records = fill(ledger, 4)
    target.sql("UPDATE audit_records SET actor = 'mallory' WHERE seq = 2")
    result = verify(target, anchor=anchor_of(records[-1]))
    assert (result["first_broken"]["seq"], result["first_broken"]["reason"]) == (2, "content_changed")
    assert result["anchor"]["ok"] is True


def test_dropped_table_is_never_fine(target):
    with target.ledger() as ledger:
        fill(ledger, 2)
    target.sql("DROP TABLE audit_records")
    result = verify(target)
    assert result["ok"] is False and result["first_broken"]["reason"] == "missing" and "incomplete" in result["first_broken"]["message"]


def test_missing_sqlite_ledger_is_not_created_and_fails_when_expected(tmp_path):
    path = tmp_path / "absent" / "ledger.sqlite3"
    with ledger_from_params(dict(ledger_path=str(path))) as ledger:
        assert ledger.verify()["ok"] is True
        result = ledger.verify(expect_records=True)
        assert result["ok"] is False and result["exists"] is False
        assert (result["first_broken"]["seq"], result["first_broken"]["reason"]) == (1, "missing")
        anchored = ledger.verify(anchor={"seq": 3, "hash": "a" * 64})
        assert anchored["first_broken"]["reason"] == "missing" and anchored["anchor"]["ok"] is False
        assert ledger.verify(anchor={"seq": 0, "hash": GENESIS_HASH})["ok"] is True
    assert not path.parent.exists()


def test_deleted_sqlite_file_fails_when_expected(sqlite_target):
    with sqlite_target.ledger() as ledger:
        records = fill(ledger, 2)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(sqlite_target.location + suffix):
            os.unlink(sqlite_target.location + suffix)
    assert verify(sqlite_target)["ok"] is True
    assert verify(sqlite_target, anchor=anchor_of(records[-1]))["first_broken"]["reason"] == "missing"
    assert not os.path.exists(sqlite_target.location)


def test_postgresql_database_without_a_ledger(postgresql_dsn):  # noqa: F811 pylint: disable=redefined-outer-name
    with ledger_from_params(dict(ledger_backend="postgresql", ledger_dsn=postgresql_dsn)) as ledger:
        assert ledger.verify()["ok"] is True
        assert ledger.verify(expect_records=True)["first_broken"]["reason"] == "missing"
    with psycopg.connect(postgresql_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('audit_records')").fetchone()[0] is None


@pytest.mark.parametrize("anchor, message", [
    ({"seq": 1}, "mapping with seq and hash"),
    ("1:abc", "mapping with seq and hash"),
    ({"seq": -1, "hash": "a" * 64}, "non-negative integer"),
    ({"seq": True, "hash": "a" * 64}, "non-negative integer"),
    ({"seq": 1, "hash": "A" * 64}, "64 lowercase hexadecimal"),
    ({"seq": 1, "hash": "a" * 63}, "64 lowercase hexadecimal"),
    ({"seq": 0, "hash": "a" * 64}, "genesis hash"),
])
def test_malformed_anchor_is_rejected(sqlite_target, anchor, message):
    with sqlite_target.ledger() as ledger, pytest.raises(ValidationError, match=message):
        ledger.verify(anchor=anchor)


def test_export_snapshot_returns_its_anchor_and_checks_the_previous_one(target, tmp_path):
    with target.ledger() as ledger:
        records = fill(ledger, 3)
        snapshot = ledger.export_snapshot(str(tmp_path / "a.jsonl"))
        assert (snapshot["count"], snapshot["seq"], snapshot["hash"]) == (3, 3, records[-1]["hash"])
        assert snapshot["verification"]["ok"] is True
        assert ledger.export_snapshot(io.StringIO(), anchor=anchor_of(records[1]))["verification"]["anchor"]["ok"] is True
    target.sql("DELETE FROM audit_records WHERE seq = 3")
    set_head(target, 2, records[1]["hash"])
    with target.ledger() as ledger:
        snapshot = ledger.export_snapshot(io.StringIO(), anchor=anchor_of(records[-1]))
    assert snapshot["count"] == 2 and snapshot["verification"]["first_broken"]["reason"] == "anchor_missing"


def test_read_anchor_file_takes_an_anchor_file_or_an_export(target, tmp_path):
    with target.ledger() as ledger:
        records = fill(ledger, 3)
        ledger.export_jsonl(str(tmp_path / "export.jsonl"))
    (tmp_path / "anchor.json").write_text(_ledger.anchor_document(3, records[-1]["hash"], 3, "x", "/e", "0" * 64))
    assert _ledger.read_anchor_file(str(tmp_path / "anchor.json")) == anchor_of(records[-1])
    assert _ledger.read_anchor_file(str(tmp_path / "export.jsonl")) == anchor_of(records[-1])
    big = tmp_path / "big.jsonl"
    big.write_text("\n".join(json.dumps(dict(seq=n, hash="%064x" % n, pad="x" * 5000)) for n in range(1, 40)) + "\n\n")
    assert _ledger.read_anchor_file(str(big)) == {"seq": 39, "hash": "%064x" % 39}


@pytest.mark.parametrize("content, message", [
    (None, "cannot be read"),
    ("", "is empty"),
    ("\n \n", "is empty"),
    ("garbage\n", "last line is not JSON"),
    ('{"seq": 1}\n', "mapping with seq and hash"),
])
def test_unusable_anchor_file(tmp_path, content, message):
    path = tmp_path / "anchor.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValidationError, match=message) as err:
        _ledger.read_anchor_file(str(path))
    assert str(path) in str(err.value)
