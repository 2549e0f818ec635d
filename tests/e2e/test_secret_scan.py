"""Secret scan (issue 7 item 6): nothing the daemon and its playbook runs leave on disk holds a secret.

The real stack (OTOBO and ServiceNow simulators, real AlertManager, real ansible-rulebook with our rulebook) handles
two OTOBO alerts, a ServiceNow alert and a resolve and is stopped; then every file it left behind is searched for
the webhook token and the OTOBO and ServiceNow passwords, raw, base64 (standard and URL-safe, at every byte alignment) and URL-encoded:

- the work directory: logs, rulebook vars, ledger, spool, OTOBO session cache, AlertManager's data directory;
- the daemon's TMPDIR, pointed into the work directory: ansible-rulebook's ansible-runner private data dirs
  (``tempfile.mkdtemp(prefix="eda")``, with ``artifacts/<id>/command`` and ``env/``) and Ansible's local and
  remote temp dirs (the ``~/.ansible/tmp`` of a default setup).

A second stack is killed with SIGKILL while a playbook runs, so the private data dir of that run is never
removed, and scanned the same way.  The files that hold a secret on purpose (the 0600 webhook token and OTOBO
password files the stack writes for AlertManager and the daemon) are the only exceptions.
"""
from __future__ import annotations

import base64
import os
import shutil
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from scripts.labstack import AGENT_PASSWORD, SN_PASSWORD, Stack, alert, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

if not Path("/usr/bin/prometheus-alertmanager").exists() and not shutil.which("prometheus-alertmanager"):
    pytest.skip("prometheus-alertmanager is not installed (make test installs it)", allow_module_level=True)

# Files the stack writes with a secret on purpose (mode 0600): AlertManager's credentials_file, the daemon's password_file.
SECRET_FILES = ("webhook-token", "otobo-password", "servicenow-password", "jira-api-token")
RESOLVED_STATE = "pending auto close+"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _base64_cores(secret: bytes) -> set[bytes]:
    """The base64 characters that depend on ``secret`` alone, for each of the 3 alignments it can have in a stream."""
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret)
        first, end = -(-8 * offset // 6), 8 * (offset + len(secret)) // 6
        for core in (encoded[first:end], encoded[first:end].translate(bytes.maketrans(b"+/", b"-_"))):
            cores.add(core)
    return cores


def secret_forms(secret: str) -> dict[bytes, str]:
    """Every byte string that betrays ``secret`` -> the first form it stands for."""
    raw = secret.encode()
    forms: dict[bytes, str] = {}
    for form, how in [(raw, "raw"), (quote(secret, safe="").encode(), "url-encoded"), (quote_plus(secret).encode(), "url-encoded (+)")]:
        forms.setdefault(form, how)
    for core in sorted(_base64_cores(raw)):
        forms.setdefault(core, "base64")
    return forms


def scan(roots: list[Path], secrets: dict[str, str], exclude: set[Path]) -> tuple[list[str], int]:
    """``(hits, files scanned)``; a hit is "<path>: <secret name> (<form>)"."""
    patterns = [(form, name, how) for name, value in secrets.items() for form, how in secret_forms(value).items()]
    hits, count = [], 0
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            if path in exclude:
                continue
            count += 1
            data = path.read_bytes()
            hits += [f"{path}: {name} ({how})" for form, name, how in patterns if form in data]
    return sorted(set(hits)), count


def make_stack(workdir: Path) -> Stack:
    stack = Stack(workdir, group_wait="1s", group_interval="2s", repeat_interval="1h")
    # the stack points the daemon's TMPDIR (and Ansible's temp dirs) into the work directory: scanned with it
    assert stack.tmp_dir.is_relative_to(workdir)
    return stack


def check(stack: Stack, what: str) -> int:
    """Scan everything the stack left behind for the webhook token and the OTOBO password."""
    workdir = stack.workdir
    exclude = {workdir / name for name in SECRET_FILES}
    for path in exclude:
        if path.exists():
            assert path.stat().st_mode & 0o077 == 0, f"{path} is not private"
    secrets = {"webhook token": stack.token, "OTOBO password": AGENT_PASSWORD, "ServiceNow password": SN_PASSWORD,
               "Jira API token": stack.jira_secret}
    # the scanner finds what it looks for (the token file is the known positive)
    assert scan([workdir], {"webhook token": stack.token}, set())[0], "the scanner missed the token file"
    hits, count = scan([workdir], secrets, exclude)
    assert count > 10, f"only {count} files scanned in {workdir}"
    assert not hits, f"{what}: secrets on disk ({len(hits)}):\n" + "\n".join(hits)
    return count


def ticket_for(stack: Stack, name: str) -> dict | None:
    found = [t for t in stack.tickets() if name in t["Title"]]
    return found[0] if found and any(a["Subject"].startswith("FIRING ") for a in found[0]["Article"]) else None


def guest_alert(name: str, started: str, ends: str | None = None) -> dict:
    return alert("PveGuestDown", {"cluster": "pve-lab", "node": "pve02", "name": name, "severity": "critical", "team": "platform"},
                 f"Proxmox guest {name} is down", started, ends)


def private_data_dirs(stack: Stack) -> list[Path]:
    return sorted(stack.tmp_dir.glob("eda*"))


def test_no_secret_after_alerts_and_a_resolve(tmp_path):
    started = iso(datetime.now(UTC) - timedelta(minutes=1))
    with make_stack(tmp_path / "clean") as stack:
        switch = alert("SwitchUplinkDown", {"cluster": "campus", "instance": "core-sw-02:9116", "severity": "warning", "team": "network"},
                       "Uplink on core-sw-02 is down", started)
        gitlab = alert("GitLabDown", {"cluster": "dev", "instance": "gitlab-01:443", "severity": "warning", "team": "devtools"},
                       "GitLab on gitlab-01 answers 502", started)
        stack.alertmanager.post_alerts([guest_alert("scan-a", started), guest_alert("scan-b", started), switch, gitlab])
        wait_until(lambda: ticket_for(stack, "scan-a") and ticket_for(stack, "scan-b"), 180, what="two incidents")
        wait_until(lambda: [i for i in stack.sn_incidents() if "core-sw-02" in i.get("short_description", "")], 180,
                   what="the ServiceNow incident")
        wait_until(lambda: [i for i in stack.jira_issues() if "gitlab-01" in str(i.get("summary"))], 180,
                   what="the Jira issue")
        stack.alertmanager.post_alerts([guest_alert("scan-a", started, iso(datetime.now(UTC)))])
        wait_until(lambda: (ticket_for(stack, "scan-a") or {}).get("State") == RESOLVED_STATE, 180, what="the resolve")
    check(stack, "after a clean stop")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rindex(b")") + 2:].split()[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found[1:]


def _playbook_running(stack: Stack) -> bool:
    """An ansible-playbook below the daemon runs (ansible-runner starts it in a session of its own) and its
    run's artifacts/<id>/command is written."""
    running = False
    for pid in _descendants(stack.rulebook_proc.proc.pid):
        try:
            running = running or b"ansible-playbook" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
    return running and any(d.glob("artifacts/*/command") for d in private_data_dirs(stack))


def test_no_secret_after_sigkill_mid_run(tmp_path):
    started = iso(datetime.now(UTC) - timedelta(minutes=1))
    stack = make_stack(tmp_path / "killed")
    with stack:
        stack.alertmanager.post_alerts([guest_alert(f"kill-{n}", started) for n in range(3)])
        wait_until(lambda: _playbook_running(stack), 180, interval=0.05, what="a playbook run of the daemon")
        daemon = stack.rulebook_proc.proc
        orphans = _descendants(daemon.pid)
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=10)
        # the orphaned runs go on writing their artifacts; let them end (or end them), then scan what is left
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in orphans):
            time.sleep(0.5)
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    leftovers = private_data_dirs(stack)
    assert leftovers, "SIGKILL mid-run should leave the run's private data dir behind (the scan must see one)"
    assert any(d.glob("artifacts/*/command") for d in leftovers)
    check(stack, "after SIGKILL of the daemon mid-run")
