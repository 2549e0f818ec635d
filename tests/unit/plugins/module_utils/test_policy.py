"""The seed 002 policy tables and checks (pure: no platform, no ledger)."""
import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _policy as policy
from ansible_collections.labops.itsm.plugins.module_utils._errors import PolicyViolation
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ACTIONS


def halt(rule, func, *args):
    with pytest.raises(PolicyViolation) as info:
        func(*args)
    assert info.value.rule == rule, str(info.value)
    return info.value


def test_enums_spelled_as_seed_002():
    assert policy.INCIDENT_CATEGORIES == ("hardware", "software", "security", "performance", "other")
    assert policy.INCIDENT_STATUSES == ("open", "in_progress", "escalated", "pending_vendor", "resolved", "closed")
    assert policy.DETECTION_SOURCES == ("user_report", "monitoring_tool", "automated_alert")
    assert policy.CHANGE_APPROVALS == ("pending", "approved", "rejected")
    assert policy.RECIPIENT_GROUPS == ("end_users", "stakeholders", "executives", "IT_staff")
    assert policy.CONTACT_METHODS == ("phone", "email", "vendor_portal", "API")
    assert "AI_virtual_agent" in policy.TOOLS and "ITSM_service_desk" in policy.TOOLS and len(policy.TOOLS) == 7
    assert policy.PRIORITIES == policy.SEVERITIES == ("low", "medium", "high")
    assert "service_desk_manager" in policy.ROLES and "automation" in policy.ROLES


def test_audit_actions_are_the_ledgers():
    assert policy.AUDIT_ACTIONS == ACTIONS
    for name in policy.SOPS:
        assert set(policy.sop_info(name)["audit_actions"]) <= set(ACTIONS)


def test_catalogue_covers_the_20_sops():
    assert sorted({entry[0] for entry in policy.SOP_CATALOG.values()}) == list(range(1, 21))
    assert policy.sop_info("incident_close")["audit_actions"] == ("close",)
    assert policy.sop_info("incident_assign")["audit_actions"] == ("update", "notify")
    halt("unknown_sop", policy.sop_info, "incident_delete")


def test_every_sop_has_a_role_and_incident_manager_has_all():
    for sop in policy.SOPS:
        assert any(sop in sops for sops in policy.ROLE_SOPS.values()), sop
    assert policy.ROLE_SOPS["incident_manager"] == frozenset(policy.SOPS)
    assert set(policy.ROLE_SOPS) == set(policy.ROLES)


@pytest.mark.parametrize("sop, role", [
    ("simulation_run", "service_desk"), ("simulation_run", "L3"), ("incident_review", "L2"),
    ("change_approve", "devops"), ("incident_close", "automation"), ("incident_log", "end_user"),
    ("problem_close", "L3"), ("kb_update", "service_desk"),
])
def test_role_not_authorised(sop, role):
    exc = halt("role_not_authorised", policy.authorise, sop, role)
    assert str(exc).startswith(sop + ": role_not_authorised: ")
    assert repr(role) in str(exc) and exc.value == role and exc.sop == sop


def test_authorised_and_unknown_role():
    policy.authorise("simulation_run", "incident_manager")
    policy.authorise("incident_identify", "end_user")
    policy.authorise("change_approve", "change_mgmt")
    halt("unknown_role", policy.authorise, "incident_log", "janitor")


def test_high_priority_closure_authority():
    policy.authorise_closure("incident_close", "service_desk", "medium")
    policy.authorise_closure("incident_close", "service_desk_manager", "high")
    exc = halt("authority_required", policy.authorise_closure, "incident_close", "L1", "high")
    assert "incident_manager or service_desk_manager" in str(exc)


def test_segregation_of_duties():
    exc = halt("segregation_of_duties", policy.sod_change_approver, "change_approve", "Alice", "alice ")
    assert exc.value == "Alice"
    policy.sod_change_approver("change_approve", "bob", "alice")
    halt("segregation_of_duties", policy.sod_incident_closer, "incident_close", "alice", "alice", "high")
    policy.sod_incident_closer("incident_close", "alice", "alice", "low")
    halt("segregation_of_duties", policy.sod_problem_closer, "problem_close", "carol", "carol")
    policy.sod_problem_closer("problem_close", "carol", None)


@pytest.mark.parametrize("current, target", [
    (None, "open"), ("open", "in_progress"), ("open", "escalated"), ("in_progress", "pending_vendor"),
    ("escalated", "resolved"), ("pending_vendor", "resolved"), ("resolved", "closed"), ("resolved", "in_progress"),
])
def test_incident_transitions_allowed(current, target):
    policy.check_transition("sop", "incident", current, target)


@pytest.mark.parametrize("current, target", [
    ("open", "resolved"), ("open", "closed"), ("in_progress", "closed"), ("closed", "in_progress"), ("closed", "open"),
    ("pending_vendor", "escalated"), (None, "in_progress"),
])
def test_incident_transitions_refused(current, target):
    exc = halt("invalid_transition", policy.check_transition, "sop", "incident", current, target)
    assert repr(target) in str(exc)


def test_problem_and_change_flows():
    policy.check_transition("p", "problem", "open", "under_investigation")
    policy.check_transition("p", "problem", "known_error", "resolved")
    policy.check_transition("p", "problem", "resolved", "under_investigation")
    halt("invalid_transition", policy.check_transition, "p", "problem", "open", "resolved")
    halt("invalid_transition", policy.check_transition, "p", "problem", "closed", "open")
    policy.check_transition("c", "change_request", "pending", "rejected")
    halt("invalid_transition", policy.check_transition, "c", "change_request", "rejected", "approved")
    halt("invalid_value", policy.check_transition, "c", "change_request", "pending", "maybe")


def test_prior_state():
    policy.check_prior_state("incident_close", "incident", "resolved")
    exc = halt("wrong_state", policy.check_prior_state, "incident_close", "incident", "in_progress")
    assert str(exc) == "incident_close: wrong_state: incident status must be resolved (got 'in_progress')"
    halt("wrong_state", policy.check_prior_state, "kb_update", "incident", "resolved")


def test_escalation_path():
    policy.check_escalation_path("e", "L1", "L2")
    policy.check_escalation_path("e", None, "L3")
    policy.check_escalation_path("e", "L3", "incident_manager")
    halt("invalid_escalation_path", policy.check_escalation_path, "e", "L2", "L2")
    halt("invalid_escalation_path", policy.check_escalation_path, "e", "L3", "L2")
    halt("invalid_value", policy.check_escalation_path, "e", "L1", "L1")
    halt("missing_input", policy.check_escalation_path, "e", "L1", None)


def test_automatic_escalation_triggers():
    policy.check_automatic_escalation("e", "high", False)
    policy.check_automatic_escalation("e", "low", True)
    halt("automatic_escalation_not_triggered", policy.check_automatic_escalation, "e", "medium", False)


def test_change_must_be_approved_by_someone_else():
    policy.check_change_approved("c", {"id": "1", "status": "approved", "requester": "a", "approver": "b"})
    halt("change_not_approved", policy.check_change_approved, "c", {"id": "1", "status": "pending"})
    halt("segregation_of_duties", policy.check_change_approved, "c", {"id": "1", "status": "approved", "requester": "a", "approver": "a"})


def test_inputs():
    halt("missing_input", policy.require, "s", "title", "  ")
    halt("missing_input", policy.require, "s", "actions", [])
    assert policy.require("s", "title", "x") == "x"
    exc = halt("invalid_value", policy.check_choice, "incident_categorize", "category", "network", policy.INCIDENT_CATEGORIES)
    assert str(exc) == ("incident_categorize: invalid_value: category must be one of hardware, software, security, performance, other "
                        "(got 'network')")
    halt("invalid_value", policy.check_choice, "s", "recipients", "it_staff", policy.RECIPIENT_GROUPS)
    assert policy.check_choice("s", "x", None, ("a",)) is None
    halt("missing_input", policy.check_choice, "s", "x", None, ("a",), True)
    halt("fix_not_applied", policy.check_true, "s", "fix_not_applied", "fix_applied", "yes")


def test_pir_and_closure_completion():
    assert policy.pir_required("high") and not policy.pir_required("medium")
    assert not policy.closure_complete({"status": "closed", "pir": "required"})
    assert policy.closure_complete({"status": "closed", "pir": "done"})
    assert policy.closure_complete({"status": "closed", "pir": None})
    assert not policy.closure_complete({"status": "resolved"})


def test_exists_and_entity():
    halt("not_found", policy.check_exists, "s", "incident", "42", None)
    halt("wrong_entity", policy.check_exists, "s", "incident", "42", {"entity": "problem"})
