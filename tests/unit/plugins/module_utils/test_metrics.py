"""Ticket-creation metrics (node_exporter textfile) and JSON log lines: _metrics and its governed-write hooks.

The textfile is read back with prometheus_client's own parser (the format node_exporter's textfile collector
accepts); concurrency uses real processes; the governed-write cases drive the OTOBO simulator over HTTP.
"""
import datetime
import fcntl
import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.labops.itsm.plugins.module_utils import _metrics as metrics
from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError
from tests.unit.contract.adapters import OtoboAdapter
from tests.unit.contract.sop_env import Env

EVENT = {"event_id": "ev-metrics", "service": "pve-node3", "source": "automated_alert", "alert_type": "HostDown", "severity": "critical",
         "correlation_key": "0a1b2c3d4e5f60718293a4b5"}


@pytest.fixture
def paths(tmp_path, monkeypatch):
    directory = tmp_path / "metrics"
    log = tmp_path / "logs" / "itsm.jsonl"
    monkeypatch.setenv("LABOPS_METRICS_DIR", str(directory))
    monkeypatch.setenv("LABOPS_LOG_FILE", str(log))
    monkeypatch.delenv("LABOPS_JOB_ID", raising=False)
    return directory / "labops_itsm.prom", log


def families(prom):
    """{family name: {(sample name, sorted label items): value}} as prometheus_client parses the file."""
    parsed = {}
    for family in text_string_to_metric_families(prom.read_text()):
        parsed[family.name] = (family.type, family.documentation,
                               {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples})
    return parsed


def value(parsed, family, sample, **labels):
    return parsed[family][2][(sample, tuple(sorted(labels.items())))]


def log_lines(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


# -- the textfile ---------------------------------------------------------------------------------


@pytest.fixture
def strict_umask():
    old = os.umask(0o077)
    yield
    os.umask(old)


def test_the_textfile_is_valid_exposition_format_with_help_type_and_every_series(paths, strict_umask):
    prom = paths[0]
    assert metrics.record_ticket_creation("servicenow", "success", 0.42, ticket_id="INC0010001") is None
    assert metrics.record_ticket_creation("servicenow", "success", 1.7, ticket_id="INC0010002") is None
    assert metrics.record_ticket_creation("servicenow", "failure", 31.0) is None
    assert metrics.record_dry_run("otobo") is None
    assert metrics.record_ticket_creation("otobo", "success", 0.2, dry_run=True) is None  # a dry run: no creation counted

    parsed = families(prom)
    assert set(parsed) == {"itsm_ticket_creation", "itsm_ticket_creation_duration_seconds", "itsm_dry_run"}
    assert [parsed[name][0] for name in ("itsm_ticket_creation", "itsm_ticket_creation_duration_seconds", "itsm_dry_run")] == \
        ["counter", "histogram", "counter"]
    assert all(parsed[name][1] for name in parsed), "every family has a HELP text"
    total = "itsm_ticket_creation_total"
    assert value(parsed, "itsm_ticket_creation", total, platform="servicenow", status="success") == 2
    assert value(parsed, "itsm_ticket_creation", total, platform="servicenow", status="failure") == 1
    # a platform's series exist from its first event on, so rate() and absent-series alerts work at once
    assert value(parsed, "itsm_ticket_creation", total, platform="otobo", status="success") == 0
    assert value(parsed, "itsm_ticket_creation", total, platform="otobo", status="failure") == 0
    assert value(parsed, "itsm_dry_run", "itsm_dry_run_total", platform="otobo") == 2
    assert value(parsed, "itsm_dry_run", "itsm_dry_run_total", platform="servicenow") == 0
    hist = "itsm_ticket_creation_duration_seconds"
    assert value(parsed, hist, hist + "_count", platform="servicenow") == 3
    assert value(parsed, hist, hist + "_sum", platform="servicenow") == pytest.approx(0.42 + 1.7 + 31.0)
    assert value(parsed, hist, hist + "_count", platform="otobo") == 0
    text = prom.read_text()
    assert text.index("# HELP itsm_ticket_creation_total ") < text.index("# TYPE itsm_ticket_creation_total counter") < \
        text.index("itsm_ticket_creation_total{")
    assert oct(prom.stat().st_mode & 0o777) == oct(0o644)  # node_exporter runs as another user
    assert sorted(os.listdir(prom.parent)) == ["labops_itsm.prom", "labops_itsm.prom.lock"]  # no temp file left behind


def test_histogram_buckets_are_cumulative_and_inclusive(paths):
    prom = paths[0]
    durations = [0.01, 0.05, 0.0500001, 0.3, 0.5, 0.99, 2.5, 4.0, 12.0, 59.9, 119.0, 600.0]
    for duration in durations:
        assert metrics.record_ticket_creation("jira", "success", duration) is None
    buckets = {dict(labels)["le"]: count for (name, labels), count in families(prom)["itsm_ticket_creation_duration_seconds"][2].items()
               if name.endswith("_bucket")}
    assert buckets == {"0.05": 2, "0.1": 3, "0.25": 3, "0.5": 5, "1.0": 6, "2.5": 7, "5.0": 8, "10.0": 8, "30.0": 9,
                       "60.0": 10, "120.0": 11, "+Inf": 12}
    parsed = families(prom)["itsm_ticket_creation_duration_seconds"][2]
    assert parsed[("itsm_ticket_creation_duration_seconds_count", (("platform", "jira"),))] == len(durations)
    assert parsed[("itsm_ticket_creation_duration_seconds_sum", (("platform", "jira"),))] == pytest.approx(sum(durations))


NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


@pytest.mark.skipif(NODE_EXPORTER is None, reason="node_exporter is not installed (Debian: prometheus-node-exporter)")
def test_node_exporter_textfile_collector_serves_the_file(paths):
    """The collector the file is written for reads it without a scrape error and serves every series."""
    prom = paths[0]
    assert metrics.record_ticket_creation("otobo", "success", 0.31) is None
    assert metrics.record_dry_run("servicenow") is None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
                                 "--collector.textfile", f"--collector.textfile.directory={prom.parent}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, text = time.monotonic() + 15, ""
        while time.monotonic() < deadline and "node_textfile_scrape_error" not in text:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    text = response.read().decode()
            except OSError:
                time.sleep(0.1)
    finally:
        exporter.terminate()
        exporter.wait(10)
    served = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}
    assert served[("node_textfile_scrape_error", ())] == 0
    assert served[("itsm_ticket_creation_total", (("platform", "otobo"), ("status", "success")))] == 1
    assert served[("itsm_dry_run_total", (("platform", "servicenow"),))] == 1
    assert served[("itsm_ticket_creation_duration_seconds_bucket", (("le", "0.5"), ("platform", "otobo")))] == 1


def test_label_values_are_escaped_and_read_back(paths):
    prom = paths[0]
    odd = 'we"ird\\plat\nform'
    for dummy in range(2):
        assert metrics.record_ticket_creation(odd, "success", 0.1) is None
    parsed = families(prom)
    assert value(parsed, "itsm_ticket_creation", "itsm_ticket_creation_total", platform=odd, status="success") == 2


def _worker(barrier, platform, events):
    barrier.wait()
    warnings = []
    for index in range(events):
        if index % 4 == 0:
            warnings.append(metrics.record_dry_run(platform))
        elif index % 4 == 1:
            warnings.append(metrics.record_ticket_creation(platform, "failure", 0.07))
        else:
            warnings.append(metrics.record_ticket_creation(platform, "success", 0.7, ticket_id=index))
    raise SystemExit(1 if any(warnings) else 0)


def test_concurrent_processes_never_lose_an_increment(paths):
    prom, log = paths
    processes, events = 6, 40
    context = multiprocessing.get_context("spawn")  # not fork: the test process runs simulator threads
    barrier = context.Barrier(processes)
    workers = [context.Process(target=_worker, args=(barrier, ("otobo", "servicenow")[number % 2], events)) for number in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * processes
    parsed = families(prom)
    per_platform = processes // 2 * events // 4
    for platform in ("otobo", "servicenow"):
        assert value(parsed, "itsm_dry_run", "itsm_dry_run_total", platform=platform) == per_platform
        assert value(parsed, "itsm_ticket_creation", "itsm_ticket_creation_total", platform=platform, status="failure") == per_platform
        assert value(parsed, "itsm_ticket_creation", "itsm_ticket_creation_total", platform=platform, status="success") == 2 * per_platform
        hist = "itsm_ticket_creation_duration_seconds"
        assert value(parsed, hist, hist + "_count", platform=platform) == 3 * per_platform
        assert value(parsed, hist, hist + "_bucket", platform=platform, le="0.1") == per_platform
        assert value(parsed, hist, hist + "_sum", platform=platform) == pytest.approx(per_platform * 0.07 + 2 * per_platform * 0.7)
    lines = log_lines(log)  # O_APPEND single writes: every line whole
    assert len(lines) == processes * events


def test_a_file_from_another_version_keeps_its_counters_and_resets_a_foreign_histogram(paths):
    prom = paths[0]
    prom.parent.mkdir(parents=True)
    prom.write_text(
        "# HELP itsm_ticket_creation_total old text\n# TYPE itsm_ticket_creation_total counter\n"
        'itsm_ticket_creation_total{platform="otobo",status="success"} 41\n'
        'itsm_ticket_creation_total{platform="otobo",status="failure"} 3\n'
        "# TYPE itsm_ticket_creation_duration_seconds histogram\n"
        'itsm_ticket_creation_duration_seconds_bucket{platform="otobo",le="0.3"} 40\n'
        'itsm_ticket_creation_duration_seconds_bucket{platform="otobo",le="+Inf"} 44\n'
        'itsm_ticket_creation_duration_seconds_sum{platform="otobo"} 9.5\n'
        'itsm_ticket_creation_duration_seconds_count{platform="otobo"} 44\n'
        "some_other_metric 1\n")
    warning = metrics.record_ticket_creation("otobo", "success", 0.2)
    assert warning is not None and "1 line(s) that are not labops metrics" in warning
    parsed = families(prom)
    assert value(parsed, "itsm_ticket_creation", "itsm_ticket_creation_total", platform="otobo", status="success") == 42
    assert value(parsed, "itsm_ticket_creation", "itsm_ticket_creation_total", platform="otobo", status="failure") == 3
    hist = "itsm_ticket_creation_duration_seconds"
    assert value(parsed, hist, hist + "_count", platform="otobo") == 1  # buckets that no longer exist: restarted
    assert value(parsed, hist, hist + "_bucket", platform="otobo", le="0.25") == 1
    assert ("itsm_ticket_creation_duration_seconds_bucket", (("le", "0.3"), ("platform", "otobo"))) not in parsed[hist][2]
    assert "some_other_metric" not in prom.read_text()


def test_an_empty_metrics_dir_turns_the_file_off(tmp_path, monkeypatch):
    monkeypatch.setenv("LABOPS_METRICS_DIR", "")
    monkeypatch.delenv("LABOPS_LOG_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert metrics.metrics_path() is None
    assert metrics.record_ticket_creation("otobo", "success", 0.1) is None
    assert list(tmp_path.iterdir()) == []
    monkeypatch.delenv("LABOPS_METRICS_DIR")
    assert metrics.metrics_path() == str(tmp_path / ".local/state/labops/metrics/labops_itsm.prom")


# -- the JSON log ---------------------------------------------------------------------------------


def test_log_lines_carry_the_seed_fields_and_no_secret(paths, monkeypatch):
    log = paths[1]
    monkeypatch.setenv("LABOPS_JOB_ID", "abc123")
    assert metrics.record_ticket_creation("servicenow", "success", 0.45, ticket_id="INC0012345", correlation_key="0a1b2c3d4e5f6071",
                                          password="hunter2", client_secret="cs-9876") is None
    assert metrics.record_ticket_creation(
        "servicenow", "failure", 2.0, job_id="job-7", error_class="AuthError",
        error="POST https://bot:pw-in-url@acme.service-now.com/oauth_token.do Authorization: Bearer abcdefgh12345678 refresh_token=rt-42") is None
    assert metrics.record_dry_run("otobo", correlation_key="ffee", message="would open an incident") is None
    first, failed, dry = log_lines(log)
    for line in (first, failed, dry):
        assert list(line)[:9] == ["timestamp", "level", "message", "platform", "ticket_id", "dry_run", "duration_ms", "status", "job_id"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["timestamp"])
        moment = datetime.datetime.strptime(line["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
        assert abs((datetime.datetime.now(datetime.UTC) - moment).total_seconds()) < 60
    assert {k: first[k] for k in ("level", "message", "platform", "ticket_id", "dry_run", "duration_ms", "status", "job_id",
                                  "correlation_key")} == {
        "level": "INFO", "message": "Ticket created successfully", "platform": "servicenow", "ticket_id": "INC0012345",
        "dry_run": False, "duration_ms": 450, "status": "success", "job_id": "abc123", "correlation_key": "0a1b2c3d4e5f6071"}
    assert (failed["level"], failed["status"], failed["job_id"], failed["error_class"], failed["ticket_id"]) == \
        ("ERROR", "failure", "job-7", "AuthError", None)
    assert (dry["dry_run"], dry["status"], dry["duration_ms"], dry["message"], dry["platform"]) == \
        (True, "dry_run", None, "would open an incident", "otobo")
    raw = log.read_text()
    for secret in ("hunter2", "cs-9876", "pw-in-url", "abcdefgh12345678", "rt-42"):
        assert secret not in raw
    assert first["password"] == first["client_secret"] == "********"


def test_without_a_log_file_nothing_is_logged(paths, monkeypatch):
    prom, log = paths
    monkeypatch.delenv("LABOPS_LOG_FILE")
    assert metrics.record_ticket_creation("otobo", "success", 0.1) is None
    assert prom.exists() and not log.parent.exists()


# -- failures never raise -------------------------------------------------------------------------


def _record_unprivileged(conn):
    if os.geteuid() == 0:  # root writes into any directory: drop to nobody, for whom 0555 is read-only
        os.setgid(65534)
        os.setuid(65534)
    conn.send(metrics.record_ticket_creation("otobo", "success", 0.1))


def test_a_read_only_directory_is_a_warning(monkeypatch):
    directory = tempfile.mkdtemp(prefix="labops-metrics-ro-")  # under /tmp: reachable by nobody, unlike pytest's tmp_path
    try:
        os.chmod(directory, 0o555)
        monkeypatch.setenv("LABOPS_METRICS_DIR", directory)
        monkeypatch.setenv("LABOPS_LOG_FILE", os.path.join(directory, "itsm.jsonl"))
        context = multiprocessing.get_context("spawn")  # not fork: the test process runs simulator threads
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_record_unprivileged, args=(sender,))
        child.start()
        warning = receiver.recv() if receiver.poll(30) else "no answer"
        child.join(30)
        assert child.exitcode == 0
        assert "metrics: could not update" in warning and "Permission denied" in warning, warning
        assert "log: could not append" in warning, warning
        assert os.listdir(directory) == []
    finally:
        os.chmod(directory, 0o755)
        shutil.rmtree(directory)


@pytest.mark.parametrize("layout", ["dir-is-a-file", "prom-is-a-directory", "log-is-a-directory"])
def test_unwritable_targets_are_warnings(tmp_path, monkeypatch, layout):
    blocker = tmp_path / "blocker"
    metrics_dir, log = tmp_path / "metrics", tmp_path / "itsm.jsonl"
    if layout == "dir-is-a-file":
        blocker.write_text("not a directory")
        metrics_dir = blocker / "metrics"
    elif layout == "prom-is-a-directory":
        (metrics_dir / "labops_itsm.prom").mkdir(parents=True)
    else:
        log.mkdir()
    monkeypatch.setenv("LABOPS_METRICS_DIR", str(metrics_dir))
    monkeypatch.setenv("LABOPS_LOG_FILE", str(log))
    warning = metrics.record_ticket_creation("otobo", "success", 0.1)
    assert warning and "the ticket write is unaffected" in warning
    expected = "log: could not append to " + str(log) if layout == "log-is-a-directory" else "metrics: could not update "
    assert expected in warning
    assert not [name for name in os.listdir(metrics_dir) if name.endswith(".tmp")] if metrics_dir.is_dir() else True


def test_a_lock_held_too_long_is_a_warning(paths, monkeypatch):
    prom = paths[0]
    assert metrics.record_ticket_creation("otobo", "success", 0.1) is None
    monkeypatch.setattr(metrics, "LOCK_TIMEOUT", 0.1)
    holder = os.open(str(prom) + ".lock", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        warning = metrics.record_ticket_creation("otobo", "success", 0.1)
    finally:
        os.close(holder)
    assert "held the lock" in warning
    assert value(families(prom), "itsm_ticket_creation", "itsm_ticket_creation_total", platform="otobo", status="success") == 1
    assert metrics.record_ticket_creation("otobo", "success", 0.1) is None  # released: counting again


def test_bad_arguments_are_warnings_not_exceptions(paths):
    prom = paths[0]
    assert "not one of success/failure" in metrics.record_ticket_creation("otobo", "ok", 0.1)
    assert "not recorded" in metrics.record_ticket_creation("otobo", "success", "fast")
    assert not prom.exists()


# -- the governed create (ims_sop, alert_intake, otobo_ticket) ------------------------------------


@pytest.fixture(scope="module")
def otobo():
    harness = OtoboAdapter()
    harness.start()
    yield harness
    harness.stop()


@pytest.fixture
def env(otobo, tmp_path):
    return Env(otobo, tmp_path)


def intake(env, check_mode=False):
    return env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high", check_mode=check_mode)


def test_a_governed_create_counts_its_dry_run_then_its_success(env, paths):
    prom, log = paths
    tickets = len(env.adapter.tickets())
    predicted = intake(env, check_mode=True)
    assert predicted["changed"] and len(env.adapter.tickets()) == tickets
    parsed = families(prom)
    assert value(parsed, "itsm_dry_run", "itsm_dry_run_total", platform="otobo") == 1
    assert value(parsed, "itsm_ticket_creation", "itsm_ticket_creation_total", platform="otobo", status="success") == 0

    env.adapter.sim.inject(kind="latency", seconds=0.3, operations=["TicketCreate"], count=1)
    created = intake(env)
    again = intake(env)  # the dedupe finds the incident: no creation, nothing counted
    assert again["duplicate_of"] == created["record"]["id"]
    parsed = families(prom)
    assert value(parsed, "itsm_ticket_creation", "itsm_ticket_creation_total", platform="otobo", status="success") == 1
    hist = "itsm_ticket_creation_duration_seconds"
    assert value(parsed, hist, hist + "_count", platform="otobo") == 1
    assert value(parsed, hist, hist + "_bucket", platform="otobo", le="0.25") == 0  # the 0.3 s the create took is measured
    assert value(parsed, hist, hist + "_sum", platform="otobo") >= 0.3
    dry, success = log_lines(log)
    assert (dry["dry_run"], dry["sop"], dry["correlation_key"], dry["entity"]) == (True, "monitoring_intake", EVENT["correlation_key"], "incident")
    assert (success["ticket_id"], success["sop"], success["actor"], success["correlation_key"], success["status"]) == \
        (created["record"]["id"], "monitoring_intake", "eda", EVENT["correlation_key"], "success")
    assert success["duration_ms"] >= 0 and env.warnings == []


def test_a_failed_governed_create_counts_a_failure(env, paths):
    prom, log = paths
    env.adapter.sim.inject(kind="http_status", status=400, operations=["TicketCreate"], count=1)
    with pytest.raises(LabopsError) as info:
        intake(env)
    parsed = families(prom)
    assert value(parsed, "itsm_ticket_creation", "itsm_ticket_creation_total", platform="otobo", status="failure") == 1
    assert value(parsed, "itsm_ticket_creation", "itsm_ticket_creation_total", platform="otobo", status="success") == 0
    assert value(parsed, "itsm_ticket_creation_duration_seconds", "itsm_ticket_creation_duration_seconds_count", platform="otobo") == 1
    assert env.adapter.records_with_key(env.platform, EVENT["correlation_key"]) == []
    (failed,) = log_lines(log)
    assert (failed["level"], failed["status"], failed["error_class"]) == ("ERROR", "failure", type(info.value).__name__)
    assert "s3cret" not in log.read_text()


def test_a_metrics_failure_never_fails_the_ticket_write(env, tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LABOPS_METRICS_DIR", str(blocker / "metrics"))
    monkeypatch.setenv("LABOPS_LOG_FILE", str(blocker / "itsm.jsonl"))
    created = intake(env)
    assert created["changed"] and [str(n) for n in env.adapter.records_with_key(env.platform, EVENT["correlation_key"])] == [created["record"]["id"]]
    assert [r["action"] for r in env.ledger.query()] == ["create"]
    assert len(env.warnings) == 1
    assert "metrics: could not update" in env.warnings[0] and "log: could not append" in env.warnings[0]
