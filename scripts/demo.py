"""`make demo`: the rulebook daemon against a real AlertManager, on embedded defaults.

Starts the OTOBO, ServiceNow and Jira simulators, ansible-rulebook with rulebooks/alertmanager_itsm.yml
and AlertManager; fires a node down, a guest down and a disk filling alert (OTOBO assets), a core
switch port down (a network asset, on ServiceNow) and a GitLab outage (a dev_services asset, on Jira
Cloud) through AlertManager's API; shows the tickets, incidents and issues as they appear; resolves the
guest, the switch and GitLab, then fires GitLab again: its Jira issue is reopened (6 h reopen window);
verifies the audit ledger; stops everything. Bounded by --timeout; Ctrl-C stops it cleanly.
The webhook token and the platform passwords live in 0600 files of the work directory, never in the
daemon's environment or rulebook variables (scripts/labstack.py).
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.labstack import (
    JIRA_USER,
    REPO_ROOT,
    RULEBOOK_TIMEOUT_ENV,
    SN_USER,
    Stack,
    StackStartError,
    alert,
    rulebook_ready_timeout,
)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def demo_alerts(now: datetime) -> dict[str, dict]:
    return {
        "node": alert("PveNodeDown", {"cluster": "pve-prod", "node": "pve04", "instance": "pve04.mgmt.example.net:9100",
                                      "severity": "critical", "team": "infrastructure"},
                      "Proxmox node pve04 is unreachable", iso(now - timedelta(minutes=2)),
                      description="node_exporter on pve04 has not been scraped for 2 minutes; corosync reports the node as lost.",
                      runbook_url="https://runbooks.lab.invalid/proxmox/node-down"),
        "guest": alert("PveGuestDown", {"cluster": "pve-prod", "node": "pve02", "name": "erp-db-02", "id": "qemu/104",
                                        "severity": "critical", "team": "platform"},
                       "Proxmox guest erp-db-02 is down", iso(now - timedelta(minutes=1)),
                       description="Guest erp-db-02 (qemu/104) on pve02 is not running although onboot=1.",
                       runbook_url="https://runbooks.lab.invalid/proxmox/guest-down"),
        "disk": alert("DiskFillingUp", {"cluster": "pve-prod", "instance": "ceph-osd-07:9100", "mountpoint": "/var/lib/ceph",
                                        "severity": "warning", "team": "storage"},
                      "Filesystem /var/lib/ceph on ceph-osd-07 will be full within 24 hours", iso(now - timedelta(minutes=5)),
                      description="predict_linear(node_filesystem_avail_bytes[6h], 24h) < 0; 11% free now."),
        "switch": alert("SwitchUplinkDown", {"cluster": "campus", "instance": "core-sw-01:9116", "ifName": "Ethernet1/49",
                                             "severity": "critical", "team": "network"},
                        "Uplink Ethernet1/49 on core-sw-01 is down", iso(now - timedelta(minutes=3)),
                        description="ifOperStatus{ifName=\"Ethernet1/49\"} == 2 for 3 minutes; traffic fails over to core-sw-02."),
        "gitlab": alert("GitLabDown", {"cluster": "dev", "instance": "gitlab-01:443", "severity": "critical", "team": "devtools"},
                        "GitLab on gitlab-01 answers 502", iso(now - timedelta(minutes=1)),
                        description="probe_success{instance=\"gitlab-01:443\"} == 0 for 1 minute; puma workers are restarting.",
                        runbook_url="https://runbooks.lab.invalid/gitlab/502"),
    }


def jira_table(issues: list[dict]) -> str:
    """Jira issues as the simulator holds them: key, status, resolution, priority, components, summary."""
    rows = [("Key", "Status", "Resolution", "Priority", "Components", "Summary")]
    rows += [(str(i.get("key")), str(i.get("status")), str(i.get("resolution") or "-"), str(i.get("priority") or "-"),
              ",".join(i.get("components") or []) or "-", str(i.get("summary"))) for i in issues]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5] for r in rows]
    lines.insert(1, "-" * min(140, len(lines[0]) + 40))
    return "\n".join(lines)


def jira_status(issues: list[dict], text: str) -> list[str]:
    """The status names of the issues whose summary mentions ``text``."""
    return [str(issue.get("status")) for issue in issues if text in str(issue.get("summary"))]


def firing_details(ticket: dict) -> bool:
    """SOP 16 (monitoring_intake) has created the incident and the playbook has added the FIRING details."""
    return any(str(a.get("Subject", "")).startswith("FIRING ") for a in ticket["Article"])


def sn_table(incidents: list[dict], groups: dict[str, str]) -> str:
    """ServiceNow incidents as the simulator stores them (every value a string, references as sys_ids: ``groups``
    names the assignment groups)."""
    rows = [("Number", "State", "Impact/Urgency", "Priority", "Assignment group", "Short description")]
    rows += [(i.get("number", "?"), SN_STATES.get(str(i.get("state")), str(i.get("state"))), f"{i.get('impact')}/{i.get('urgency')}",
              str(i.get("priority")), groups.get(str(i.get("assignment_group")), str(i.get("assignment_group") or "-")), str(i.get("short_description")))
             for i in incidents]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5] for r in rows]
    lines.insert(1, "-" * min(140, len(lines[0]) + 40))
    return "\n".join(lines)


SN_STATES = {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"}


def table(tickets: list[dict]) -> str:
    rows = [("Ticket", "State", "IMS status", "Priority", "Queue", "Title")]
    rows += [(str(t["TicketNumber"]), t["State"], str((t.get("DynamicField") or {}).get("IMSStatus") or "-"), t["Priority"], t["Queue"],
              t["Title"]) for t in tickets]  # whole: the [ck:...] marker ends it
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5] for r in rows]
    lines.insert(1, "-" * min(140, len(lines[0]) + 40))
    return "\n".join(lines)


class Demo:
    def __init__(self, stack: Stack, deadline: float):
        self.stack = stack
        self.deadline = deadline
        self.last_shown = ""

    def show(self, note: str = "", always: bool = False) -> tuple[list[dict], list[dict], list[dict]]:
        tickets = sorted(self.stack.tickets(), key=lambda t: str(t["TicketNumber"]))
        incidents = self.stack.sn_incidents()
        issues = self.stack.jira_issues()
        groups = {row["sys_id"]: row.get("name", "") for row in self.stack.sn_rows("sys_user_group")}
        text = (f"OTOBO tickets\n{table(tickets)}\n\nServiceNow incidents\n{sn_table(incidents, groups)}"
                f"\n\nJira issues\n{jira_table(issues)}")
        if always or text != self.last_shown:
            stamp = datetime.now().strftime("%H:%M:%S")
            print(f"\n[{stamp}] {note}\n{text}", flush=True)
            self.last_shown = text
        return tickets, incidents, issues

    def wait_for(self, predicate, note: str) -> bool:
        while time.monotonic() < self.deadline:
            tickets, incidents, issues = self.show(note)
            if predicate(tickets, incidents, issues):
                return True
            time.sleep(1)
        print(f"demo: time is up while waiting: {note}", file=sys.stderr)
        return False


def run(args: argparse.Namespace) -> int:
    workdir = REPO_ROOT / ".demo" / datetime.now().strftime("%Y%m%d-%H%M%S")
    print(f"labops.itsm demo — work directory {workdir}")
    print("starting: OTOBO, ServiceNow and Jira simulators, ansible-rulebook (rulebooks/alertmanager_itsm.yml), AlertManager ...", flush=True)
    with Stack(workdir, group_wait="2s", group_interval="5s", rulebook_ready_timeout=args.rulebook_timeout) as stack:
        deadline = time.monotonic() + args.timeout
        print(f"  OTOBO simulator   {stack.sim.otobo_base}")
        print(f"  ServiceNow sim    {stack.sn_sim.url}/api/now/table/incident (user {SN_USER}, password in {stack.sn_password_file})")
        print(f"  Jira simulator    {stack.jira_sim.url}/rest/api/3 (Cloud, {JIRA_USER}, API token in {stack.jira_token_file})")
        print(f"  event source      {stack.webhook_url} (bearer token in {stack.token_file})")
        print(f"  OTOBO password    {stack.password_file} (OTOBO_PASSWORD_FILE; no secret in the daemon's environment)")
        print(f"  intake spool      {stack.spool_path}")
        print(f"  AlertManager      {stack.alertmanager.url}")
        print(f"  audit ledger      {stack.ledger_path}")
        demo = Demo(stack, deadline)
        alerts = demo_alerts(datetime.now(UTC))
        print("\nfiring: PveNodeDown pve04, PveGuestDown erp-db-02, DiskFillingUp ceph-osd-07 (OTOBO), "
              "SwitchUplinkDown core-sw-01 (ServiceNow), GitLabDown gitlab-01 (Jira)", flush=True)
        stack.alertmanager.post_alerts(list(alerts.values()))
        ok = demo.wait_for(lambda ts, incs, iss: len(ts) >= 3 and all(firing_details(t) for t in ts)
                           and any("core-sw-01" in str(i.get("short_description")) for i in incs)
                           and bool(jira_status(iss, "gitlab-01")), "waiting for incidents")
        if ok:
            print("\nresolving: PveGuestDown erp-db-02 (the guest is back), SwitchUplinkDown core-sw-01 (the uplink is back), "
                  "GitLabDown gitlab-01 (GitLab answers again)", flush=True)
            now = iso(datetime.now(UTC))
            stack.alertmanager.post_alerts([dict(alerts[name], endsAt=now) for name in ("guest", "switch", "gitlab")])
            # IMS resolved = OTOBO "pending auto close+": OTOBO closes it after the stability window; SOP 13 closes earlier.
            # On ServiceNow: state 6 Resolved with close_code and close_notes (ServiceNow closes it after its own timer).
            # On Jira: the Done transition with resolution Done.
            ok = demo.wait_for(lambda ts, incs, iss: any("erp-db-02" in t["Title"] and t["State"] == "pending auto close+"
                                                         and (t.get("DynamicField") or {}).get("IMSStatus") == "resolved" for t in ts)
                               and any("core-sw-01" in str(i.get("short_description")) and str(i.get("state")) == "6" for i in incs)
                               and jira_status(iss, "gitlab-01") == ["Done"],
                               "waiting for the guest's, the switch's and GitLab's incidents to be resolved (SOP 11)")
        if ok:
            print("\nfiring again: GitLabDown gitlab-01 (a new episode within the 6 h reopen window: the Jira issue is reopened, "
                  "not duplicated)", flush=True)
            stack.alertmanager.post_alerts([dict(alerts["gitlab"], startsAt=iso(datetime.now(UTC)))])
            ok = demo.wait_for(lambda ts, incs, iss: jira_status(iss, "gitlab-01") not in ([], ["Done"]),
                               "waiting for GitLab's Jira issue to be reopened (SOP 16 with itsm_reopen_window)")
        demo.show("final state", always=True)
        ok = report_ledger(stack) and ok
        report_metrics(stack)
        print(f"\nlogs: {workdir}/ansible-rulebook.log, {workdir}/alertmanager/alertmanager.log")
        print("stopping AlertManager, ansible-rulebook and the simulator ...", flush=True)
    print("demo finished" + ("" if ok else " with problems (see above)"))
    return 0 if ok else 1


def report_ledger(stack: Stack) -> bool:
    from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params  # pylint: disable=import-outside-toplevel

    if not stack.ledger_path.exists():
        print("audit ledger: no records were written", file=sys.stderr)
        return False
    ledger = ledger_from_params({"ledger_backend": "sqlite", "ledger_path": str(stack.ledger_path), "ledger_dsn": None,
                                 "actor": "automation", "actor_role": "automation"})
    try:
        result = ledger.verify()
        records = ledger.query()
    finally:
        ledger.close()
    print(f"\naudit ledger: {result['count']} records, hash chain {'verified' if result['ok'] else 'BROKEN: ' + str(result['first_broken'])}")
    for record in records[-12:]:
        print(f"  #{record['seq']:<3} {record['ts'][:19]}  {record['action']:<7} {record['ref_type']} {record['ref_id']}  "
              f"by {record['actor']} ({record.get('role') or '-'}) sop {record.get('sop') or '-'}")
    return bool(result["ok"])


def report_metrics(stack: Stack) -> None:
    """The ticket-creation counters the modules wrote (node_exporter textfile, docs/metrics.md)."""
    if not stack.metrics_path.exists():
        print("metrics: no textfile was written", file=sys.stderr)
        return
    lines = [line for line in stack.metrics_path.read_text().splitlines()
             if line.startswith(("itsm_ticket_creation_total", "itsm_ticket_creation_duration_seconds_count", "itsm_dry_run_total"))]
    print(f"\nmetrics ({stack.metrics_path}):")
    for line in lines:
        print(f"  {line}")


def _raise_keyboard_interrupt(*_args) -> None:
    raise KeyboardInterrupt()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=180, help="stop after this many seconds at the latest (default 180)")
    parser.add_argument("--rulebook-timeout", type=float, default=None, metavar="SECONDS",
                        help=f"how long ansible-rulebook may take to start (default: ${RULEBOOK_TIMEOUT_ENV} or 90)")
    args = parser.parse_args()
    try:
        if args.rulebook_timeout is None:
            args.rulebook_timeout = rulebook_ready_timeout()
    except StackStartError as exc:
        parser.error(str(exc))
    # SIGTERM takes the same clean path as Ctrl-C: the Stack context manager stops every process.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return run(args)
    except StackStartError as exc:
        # Everything is stopped already (the Stack context manager); a message, no traceback.
        print(f"demo: could not start the stack: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: everything is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
