"""OtoboPlatform specifics of the SOP engine against the OTOBO simulator (real HTTP, real ledger in tmp).

Every SOP's happy path and halts run against every adapter in tests/unit/contract/test_sop_contract.py;
here is what only OTOBO has: pending states with their PendingTime, the POST search route with a
correlation field, ticket types, and a lost TicketCreate reply whose lookup fails as well.
"""
import pytest

from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._otobo_ims import (
    DEFAULT_PENDING_MINUTES,
    DEFAULT_TICKET_TYPES,
    OtoboPlatform,
    missing_read_permission_hint,
    pending_minutes,
)
from ansible_collections.labops.itsm.plugins.module_utils._priority import parse_time
from ansible_collections.labops.itsm.plugins.module_utils._sop import DEFAULT_STABILITY_HOURS
from tests.unit.contract.adapters import NO_TYPES, OTOBO_SIM_CONFIG, OtoboAdapter
from tests.unit.contract.sop_env import Env, new_change, new_incident

EVENT = {"event_id": "ev-retry", "service": "pve-node7", "source": "automated_alert", "alert_type": "HostDown", "severity": "critical",
         "correlation_key": "abcdef0123456789abcdef01"}


@pytest.fixture(scope="module")
def adapter():
    harness = OtoboAdapter()
    harness.start()
    yield harness
    harness.stop()


@pytest.fixture
def env(adapter, tmp_path):
    return Env(adapter, tmp_path)


def raw(env, ref):
    return env.adapter.raw_ticket(env.get("incident", ref)["_ticket_id"])


def test_resolved_incident_waits_in_pending_auto_close_for_the_stability_window(env):
    ref = new_incident(env, "resolved")
    ticket = raw(env, ref)
    assert (ticket["State"], ticket["StateType"]) == ("pending auto close+", "pending auto")
    assert abs(ticket["UntilTime"] - DEFAULT_STABILITY_HOURS * 3600) < 180
    assert env.get("incident", ref)["status"] == "resolved"
    closed = env.run("incident_close", role="service_desk", actor="sd", incident_id=ref, closure_notes="ok")
    assert closed["record"]["platform_state"] == "closed successful" and raw(env, ref)["StateType"] == "closed"


def test_vendor_engage_sets_the_pending_reminder_time(env):
    ref = new_incident(env, "in_progress")
    env.run("vendor_engage", role="L2", actor="l2", incident_id=ref, vendor="Dell", contact_method="vendor_portal",
            vendor_context="replace controller", pending_hours=4)
    ticket = raw(env, ref)
    assert ticket["State"] == "pending reminder" and abs(ticket["UntilTime"] - 4 * 3600) < 180


def test_pending_minutes():
    now = parse_time("2025-06-11T10:00:00Z")
    assert pending_minutes("2025-06-11T14:00:00Z", now) == 240
    assert pending_minutes("2025-06-11T10:00:20Z", now) == 1
    assert pending_minutes("2025-06-11T09:00:00Z", now) == 1  # already due: as soon as OTOBO allows
    assert pending_minutes(None, now) == DEFAULT_PENDING_MINUTES


def test_change_rejected_is_closed_unsuccessful(env):
    cid = new_change(env, approved=False)
    result = env.run("change_approve", role="change_mgmt", actor="cab", change_id=cid, decision="rejected", justification="risk")
    assert result["record"]["platform_state"] == "closed unsuccessful"


def test_lost_create_reply_and_failed_lookup_then_the_retry_back_fills_the_creation(env):
    """TicketCreate applied, its reply dropped, and the lookup fails too: the run fails without an audit record.
    The rulebook's retry finds the incident and writes the missing create record (back-filled): one ticket, one record."""
    sim, create = env.adapter.sim, env.platform.create

    def create_then_searches_fail(*args):
        # after the dedupe lookup: the create's reply is lost and OTOBO's search is down for a while
        sim.inject(kind="drop", operations=["TicketCreate"], after_apply=True, count=1)
        sim.inject(kind="http_status", status=500, operations=["TicketSearch"], count=20)
        return create(*args)

    env.platform.create = create_then_searches_fail
    with pytest.raises(LabopsError):
        env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    sim.clear_faults()
    env.platform.create = create
    [number] = env.adapter.records_with_key(env.platform, EVENT["correlation_key"])
    assert env.ledger.query() == []
    retry = env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    assert (retry["changed"], retry["duplicate_of"]) == (True, str(number))
    assert [(r["action"], r["ref_id"], r["meta"]["backfilled"]) for r in retry["audit"]] == [("create", str(number), True)]
    again = env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    assert (again["changed"], again["audit"]) == (False, [])
    assert env.adapter.records_with_key(env.platform, EVENT["correlation_key"]) == [number]
    assert [r["action"] for r in env.ledger.query(ref_id=str(number))] == ["create"]


def test_unfindable_hint_names_the_queue_and_the_ro_permission(env):
    hint = env.platform.unfindable_hint(None)
    assert hint == missing_read_permission_hint("Raw", "alertbot")
    assert "'ro'" in hint and "'Raw'" in hint and "'alertbot'" in hint


def test_monitoring_intake_dedupes_through_the_post_search_route(tmp_path):
    """With a POST search route and a correlation field, intake fills that field and finds the incident by it;
    an incident whose field is empty (opened before the field was configured) is still found by its title marker."""
    config = dict(OTOBO_SIM_CONFIG, post_search_route=True,
                  dynamic_fields=OTOBO_SIM_CONFIG["dynamic_fields"] + [{"name": "LabopsCorrelationKey", "type": "Text"}])
    adapter = OtoboAdapter(config)
    adapter.start()
    try:
        plain = Env(adapter, tmp_path)
        older = plain.run("monitoring_intake", role="automation", actor="eda", impact="high",
                          event={"event_id": "ev-old", "service": "pve-node2", "source": "automated_alert", "alert_type": "HostDown",
                                 "severity": "critical", "correlation_key": "0123456789abcdef0123abcd"})
        client = adapter.client(search_route={"method": "POST", "path": "/TicketSearch"}, correlation_field="LabopsCorrelationKey")
        routed = Env(adapter, tmp_path, platform=OtoboPlatform(client, queue="Raw", customer_user="monitoring", ticket_types=NO_TYPES))
        event = {"event_id": "ev-r1", "service": "pve-node1", "source": "automated_alert", "alert_type": "HostDown", "severity": "critical",
                 "correlation_key": "fedcba9876543210fedcba98"}
        first = routed.run("monitoring_intake", role="automation", actor="eda", event=event, impact="high")
        ticket = next(t for t in adapter.tickets() if str(t["TicketNumber"]) == first["record"]["id"])
        assert ticket["DynamicField"]["LabopsCorrelationKey"] == "fedcba9876543210fedcba98"
        again = routed.run("monitoring_intake", role="automation", actor="eda", event=event, impact="high")
        assert (again["changed"], again["duplicate_of"]) == (False, first["record"]["id"])
        old_again = routed.run("monitoring_intake", role="automation", actor="eda", impact="high",
                               event={"event_id": "ev-old-2", "service": "pve-node2", "source": "automated_alert",
                                      "alert_type": "HostDown", "severity": "critical", "correlation_key": "0123456789abcdef0123abcd"})
        assert (old_again["changed"], old_again["duplicate_of"]) == (False, older["record"]["id"])
    finally:
        adapter.stop()


ITSM_TYPES = {"incident": "Incident", "problem": "Problem", "change_request": "RfC"}


@pytest.fixture(scope="module")
def typed_sim():
    adapter = OtoboAdapter(dict(OTOBO_SIM_CONFIG, ticket_types=["Incident", "Problem", "RfC"]))
    adapter.start()
    yield adapter
    adapter.stop()


def typed_platform(adapter, ticket_types=None, reset=True):
    ticket_types = DEFAULT_TICKET_TYPES if ticket_types is None else ticket_types
    if reset:
        adapter.sim.reset()
    return OtoboPlatform(adapter.client(), queue="Raw", customer_user="monitoring", ticket_types=ticket_types)


@pytest.fixture
def typed_env(typed_sim, tmp_path):
    return Env(typed_sim, tmp_path, platform=typed_platform(typed_sim))  # the adapter's default types Incident, Problem, RfC


def otobo_type(env, entity, ref):
    """(Type, TypeID) as OTOBO stores it, read straight from the simulator."""
    ticket = env.adapter.raw_ticket(env.get(entity, ref)["_ticket_id"])
    return ticket["Type"], ticket["TypeID"]


class TestWithTicketTypes:
    def test_incident_identify_to_close(self, typed_env):
        ref = new_incident(typed_env, "closed")
        assert otobo_type(typed_env, "incident", ref) == ("Incident", 2)
        result = typed_env.run("incident_review", incident_id=ref, timeline="t", factors="f", actions=["a"])
        assert result["record"]["status"] == "closed" and otobo_type(typed_env, "incident", ref) == ("Incident", 2)
        actions = [r["action"] for r in typed_env.ledger.query(ref_id=ref)]
        assert actions[0] == "identify" and "close" in actions and actions[-1] == "review"
        ticket_id = int(typed_env.get("incident", ref)["_ticket_id"])
        history = next(t["History"] for t in typed_env.adapter.tickets() if t["TicketID"] == ticket_id)
        assert [h["HistoryType"] for h in history if h["HistoryType"] == "TypeUpdate"] == []  # the type is set once, at creation

    def test_monitoring_intake_and_lookup_use_the_type(self, typed_env):
        event = {"event_id": "feedbeef00112233", "service": "pve-node9", "source": "automated_alert", "alert_type": "HostDown",
                 "severity": "critical", "occurred_at": "2025-06-11T10:00:00Z"}
        ref = typed_env.run("monitoring_intake", role="automation", actor="eda", event=event, impact="high")["record"]["id"]
        assert otobo_type(typed_env, "incident", ref) == ("Incident", 2)
        again = typed_env.run("monitoring_intake", role="automation", actor="eda", event=event, impact="high")
        assert (again["changed"], again["duplicate_of"]) == (False, ref)
        found = typed_env.run("entity_lookup", role="L2", entity_type="incident", filters={"affected_service": "pve-node9"})
        assert (found["match"], found["matches"][0]["id"]) == ("one", ref)
        none = typed_env.run("entity_lookup", role="L2", entity_type="problem", filters={"id": ref})
        assert none["match"] == "none"

    def test_problem_create_to_close(self, typed_env):
        inc = new_incident(typed_env, "in_progress")
        created = typed_env.run("problem_create", role="L3", actor="l3-erin", title="Typed firmware bug", description="d",
                                detection_source="monitoring_tool", incident_ids=[inc])
        pid = created["record"]["id"]
        assert otobo_type(typed_env, "problem", pid) == ("Problem", 3)
        dup = typed_env.run("problem_create", role="L3", title="typed FIRMWARE bug", description="d", detection_source="user_report")
        assert (dup["changed"], dup["duplicate_of"]) == (False, pid)
        typed_env.run("problem_update", role="L3", actor="l3-erin", problem_id=pid, problem_status="under_investigation")
        typed_env.run("problem_workaround", role="L3", actor="l3-erin", problem_id=pid, workaround="pin fw")
        typed_env.run("problem_resolve", role="L3", actor="l3-erin", problem_id=pid, validation_evidence="7 days clean")
        closed = typed_env.run("problem_close", problem_id=pid, stability_window_hours=0, closure_notes="stable")
        assert (closed["record"]["status"], closed["record"]["platform_state"]) == ("closed", "closed successful")
        assert otobo_type(typed_env, "problem", pid) == ("Problem", 3)
        assert otobo_type(typed_env, "incident", inc) == ("Incident", 2)
        assert [r["action"] for r in typed_env.ledger.query(ref_id=pid)] == ["create", "link", "update", "kb_update", "resolve", "close"]

    def test_change_request_approve_coordinate(self, typed_env):
        ref = new_incident(typed_env, "in_progress")
        cid = new_change(typed_env, approved=False)
        assert otobo_type(typed_env, "change_request", cid) == ("RfC", 4)
        assert typed_env.get("change_request", cid)["platform_state"] == "new"
        approved = typed_env.run("change_approve", role="change_mgmt", actor="cab-dora", change_id=cid, decision="approved", justification="ok")
        assert (approved["record"]["status"], approved["record"]["platform_state"]) == ("approved", "open")
        linked = typed_env.run("change_coordinate", role="change_mgmt", actor="cab-dora", incident_id=ref, change_id=cid, justification="fix")
        assert linked["record"]["change_link"] == cid
        assert otobo_type(typed_env, "change_request", cid) == ("RfC", 4) and otobo_type(typed_env, "incident", ref) == ("Incident", 2)
        # entities are still told apart by IMSEntity: a change number is not an incident
        typed_env.halt("wrong_entity", "change_coordinate", role="change_mgmt", incident_id=cid, change_id=cid, justification="x")

    def test_records_from_before_the_types_stay_governed(self, typed_sim, tmp_path):
        """An incident created while ticket_types was empty (type Unclassified) is still read and changed by number."""
        untyped = Env(typed_sim, tmp_path, platform=typed_platform(typed_sim, NO_TYPES))
        ref = new_incident(untyped)
        typed = Env(typed_sim, tmp_path, platform=typed_platform(typed_sim, reset=False))
        assert otobo_type(typed, "incident", ref) == ("Unclassified", 1)
        result = typed.run("incident_assign", role="service_desk", actor="sd", incident_id=ref, team="L1")
        assert result["record"]["status"] == "in_progress" and otobo_type(typed, "incident", ref) == ("Unclassified", 1)

    def test_a_type_missing_in_otobo_fails_before_the_audit(self, typed_sim, tmp_path):
        env = Env(typed_sim, tmp_path, platform=typed_platform(typed_sim, {"incident": "Incidents"}))
        before = env.snapshot()
        with pytest.raises(ValidationError, match=r"Ticket->TypeID or Ticket->Type parameter is invalid"):
            env.run("incident_identify", role="service_desk", title="t", reporter="r", detection_source="user_report",
                    affected_service="s", description="d")
        assert env.snapshot() == before and env.ledger.query() == []
