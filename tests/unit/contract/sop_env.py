"""Shared by the SOP contract suite and the OTOBO adapter tests: the run environment and record builders."""
import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _policy as policy
from ansible_collections.labops.itsm.plugins.module_utils._errors import AuditWriteError, PolicyViolation
from ansible_collections.labops.itsm.plugins.module_utils._ledger import RECORD_KEYS, ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._sop import run_sop

ACTIVE = {}  # the platform name of the running test, for assert_audit


class Env:
    def __init__(self, adapter, path, platform=None):
        self.adapter = adapter
        self.platform = platform if platform is not None else adapter.new_platform()
        self.ledger = ledger_from_params({"ledger_path": str(path / "audit.sqlite3")})
        self.warnings = []

    def run(self, sop, role="incident_manager", actor="im-bob", check_mode=False, now=None, **inputs):
        return run_sop(sop, inputs, actor=actor, role=role, platform=self.platform, ledger=self.ledger, check_mode=check_mode, now=now,
                       warn=self.warnings.append)

    def halt(self, rule, sop, role="incident_manager", actor="im-bob", **inputs):
        before_audit, before_records = len(self.ledger.query()), self.snapshot()
        with pytest.raises(PolicyViolation) as info:
            self.run(sop, role=role, actor=actor, **inputs)
        assert info.value.rule == rule, str(info.value)
        assert str(info.value).startswith(sop + ": " + rule + ": ")
        assert len(self.ledger.query()) == before_audit, "a halted SOP wrote an audit record"
        assert self.snapshot() == before_records, "a halted SOP changed a record"
        return info.value

    def snapshot(self):
        return self.adapter.snapshot(self.platform)

    def notes(self, ref):
        return self.adapter.notes(self.platform, ref)

    def check_mapping(self, record):
        self.adapter.check_mapping(record)

    def get(self, entity, ref):
        return self.platform.get(entity, ref)


class FailingLedger:
    """The real ledger, except that the next ``failures`` appends fail (a full disk after the platform write)."""

    def __init__(self, real, failures=10 ** 6):
        self.real = real
        self.failures = failures

    def __getattr__(self, name):
        return getattr(self.real, name)

    def append(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise AuditWriteError("disk full")
        return self.real.append(*args, **kwargs)


def new_incident(env, status="open", priority="medium", reporter="jdoe"):
    """An incident driven through the SOPs to ``status``."""
    rec = env.run("incident_identify", role="service_desk", actor="sd-anna", title="Storage latency", reporter=reporter,
                  detection_source="user_report", affected_service="ceph", description="slow")["record"]
    ref = rec["id"]
    level = {"high": ("high", "medium"), "medium": ("medium", "medium"), "low": ("low", "low")}[priority]
    env.run("incident_prioritize", incident_id=ref, urgency=level[0], impact=level[1], justification="triage")
    steps = {
        "in_progress": [("incident_assign", dict(team="L1"))],
        "escalated": [("incident_assign", dict(team="L1")), ("incident_escalate", dict(escalate_to="L2", reason="needs L2"))],
        "pending_vendor": [("incident_assign", dict(team="L2")),
                           ("vendor_engage", dict(vendor="acme", contact_method="API", vendor_context="firmware"))],
        "resolved": [("incident_assign", dict(team="L1")),
                     ("incident_resolve", dict(resolution_summary="fixed", fix_applied=True, service_restored=True))],
        "closed": [("incident_assign", dict(team="L1")),
                   ("incident_resolve", dict(resolution_summary="fixed", fix_applied=True, service_restored=True)),
                   ("incident_close", dict(closure_notes="confirmed"))],
    }
    for sop, inputs in steps.get(status, []):
        env.run(sop, incident_id=ref, **inputs)
    record = env.get("incident", ref)
    assert record["status"] == status
    return ref


def new_change(env, approved=True, requester="dev-carl"):
    ref = env.run("change_request", role="devops", actor=requester, title="Replace disk", description="swap osd.3",
                  justification="failing disk")["record"]["id"]
    if approved:
        env.run("change_approve", role="change_mgmt", actor="cab-dora", change_id=ref, decision="approved", justification="low risk")
    return ref


def new_problem(env, status="open", title="Ceph OSD flapping"):
    ref = env.run("problem_create", role="L3", actor="l3-erin", title=title, description="osd flaps", detection_source="monitoring_tool")["record"]["id"]
    if status in ("under_investigation", "resolved", "closed"):
        env.run("problem_update", role="L3", actor="l3-erin", problem_id=ref, problem_status="under_investigation")
    if status == "known_error":
        env.run("problem_workaround", role="L3", actor="l3-erin", problem_id=ref, workaround="restart osd")
    if status in ("resolved", "closed"):
        env.run("problem_resolve", role="L3", actor="l3-erin", problem_id=ref, validation_evidence="7 days clean")
    if status == "closed":
        env.run("problem_close", problem_id=ref, stability_window_hours=0)
    return ref


def assert_audit(result, actions, ref_type, ref_id, sop, role, actor):
    assert [a["action"] for a in result["audit"]] == actions
    for record in result["audit"]:
        assert tuple(record) == RECORD_KEYS
        assert (record["ref_type"], record["ref_id"], record["sop"], record["role"], record["actor"], record["platform"]) == \
            (ref_type, ref_id, sop, role, actor, ACTIVE["platform"])
        assert record["action"] in policy.sop_info(sop)["audit_actions"] or sop == "audit_log"
        assert len(record["hash"]) == 64
