"""ServiceNowPlatform (``_servicenow_ims``) beyond the SOP contract suite: HTTP calls per operation, the native
fields and u_ fields it writes, routing, overrides, the registry entry, and the closed-incident ACL of a default
instance. What is stored is read from the simulator's state, not through the adapter."""
import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _platforms as platforms
from ansible_collections.labops.itsm.plugins.module_utils import _priority as prio
from ansible_collections.labops.itsm.plugins.module_utils import _servicenow as sn
from ansible_collections.labops.itsm.plugins.module_utils._errors import PermissionDenied, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._servicenow_ims import ServiceNowPlatform, merge_field_map, merge_state_map
from simulators.harness import start_in_thread
from tests.unit.contract.adapters import SN_SIM_CONFIG, SN_TEAM_GROUPS

KEY = "0123456789abcdef01234567"
INCIDENT = {"entity": "incident", "status": "open", "title": "HostDown: pve01", "reporter": "eda", "detection_source": "automated_alert",
            "affected_service": "pve01", "category": "performance", "severity": "high", "severity_level": "S2", "priority": "high",
            "assigned_team": "service_desk", "opened_at": "2026-05-01T10:00:00Z", "correlation_key": KEY}
NOTE = {"subject": "Monitoring event", "body": "HostDown on pve01", "visible": False}


@pytest.fixture(scope="module")
def server():
    sim = start_in_thread("servicenow", SN_SIM_CONFIG)
    yield sim
    sim.stop()


@pytest.fixture
def sim(server):
    server.reset()
    return server


def platform(sim, tmp_path, **options):
    client = sn.client_from_params({"instance": sim.url, "client_id": "labops", "client_secret": "client-secret",
                                    "username": "itsm.bot", "password": "bot-pw", "token_cache": str(tmp_path / "tokens")})
    return ServiceNowPlatform(client, caller="monitoring", team_groups=SN_TEAM_GROUPS, **options)


def calls(sim):
    return [entry["operation"] for entry in sim.requests()]


def row_of(sim, number, table="incident"):
    return next(row for row in sim.state()["tables"][table] if row["number"] == number)


def names(sim, table):
    key = "user_name" if table == "sys_user" else "name"
    return {row["sys_id"]: row[key] for row in sim.state()["tables"][table]}


def test_create_is_one_post_once_the_references_are_known(sim, tmp_path):
    adapter = platform(sim, tmp_path)
    first = adapter.create("incident", INCIDENT, NOTE)
    # token, then one lookup each for the group, the caller and the CI, then the POST (no read-back GET)
    assert calls(sim) == ["POST oauth_token", "GET sys_user_group", "GET sys_user", "GET cmdb_ci", "POST incident"]
    assert (first["id"], first["status"], first["severity_level"], first["priority"], first["correlation_key"]) == \
        ("INC0010001", "open", "S2", "high", KEY)
    sim.clear_requests()
    second = adapter.create("incident", dict(INCIDENT, correlation_key="1" * 24), NOTE)
    assert calls(sim) == ["POST incident"] and second["id"] == "INC0010002"
    row = row_of(sim, "INC0010001")
    assert (row["state"], row["impact"], row["urgency"], row["priority"]) == ("1", "1", "2", "2")
    assert (row["correlation_id"], row["contact_type"], row["severity"], row["category"]) == (KEY, "event", "1", "performance")
    assert (row["u_reporter"], row["u_affected_service"], row["u_ims_status"], row["opened_at"]) == ("eda", "pve01", "open", "2026-05-01 10:00:00")
    assert names(sim, "sys_user_group")[row["assignment_group"]] == "Service Desk"
    assert names(sim, "sys_user")[row["caller_id"]] == "monitoring"
    assert names(sim, "cmdb_ci")[row["cmdb_ci"]] == "pve01"
    [journal] = [entry for entry in sim.state()["tables"]["sys_journal_field"] if entry["element_id"] == row["sys_id"]]
    assert (journal["element"], journal["value"]) == ("work_notes", "Monitoring event\n\nHostDown on pve01")


def test_find_by_correlation_key_is_one_get(sim, tmp_path):
    adapter = platform(sim, tmp_path)
    created = adapter.create("incident", INCIDENT, NOTE)
    urls = []
    adapter.client.http.session.hooks["response"].append(lambda response, *args, **kwargs: urls.append(response.url))
    sim.clear_requests()
    found = adapter.find_by_correlation_key(KEY)
    assert found["id"] == created["id"] and calls(sim) == ["GET incident"]
    assert "sysparm_query=correlation_id%3D" + KEY + "%5EORDERBYDESCsys_created_on%5EORDERBYDESCnumber" in urls[0]
    assert "sysparm_limit=1" in urls[0]
    assert adapter.find_by_correlation_key("f" * 24) is None
    with pytest.raises(ValidationError):
        adapter.find_by_correlation_key("")


def test_update_is_one_patch_and_maps_the_lifecycle(sim, tmp_path):
    adapter = platform(sim, tmp_path)
    record = adapter.create("incident", INCIDENT, NOTE)
    sim.clear_requests()
    taken = adapter.update(record, {"status": "in_progress", "assigned_team": "L1"}, {"subject": "Ack", "body": "", "visible": True})
    assert calls(sim) == ["GET sys_user_group", "PATCH incident"]  # the L1 group once, then cached
    assert (taken["status"], taken["assigned_team"]) == ("in_progress", "L1")
    escalated = adapter.update(taken, {"status": "escalated", "assigned_team": "L2"})
    assert (escalated["status"], escalated["platform_state"]) == ("escalated", "2")
    waiting = adapter.update(escalated, {"status": "pending_vendor", "vendor": "Dell", "pending_until": "2026-05-02T10:00:00Z"})
    row = row_of(sim, record["id"])
    assert (row["state"], row["hold_reason"], row["u_vendor"], waiting["status"]) == ("3", "4", "Dell", "pending_vendor")
    assert row["follow_up"] == "2026-05-02 10:00:00"      # the IMS follow-up time, in ServiceNow's UTC date format
    resolved = adapter.update(waiting, {"status": "resolved", "resolved_by": "l2"}, {"subject": "Resolved", "body": "fixed"})
    row = row_of(sim, record["id"])
    assert (row["state"], row["close_code"], row["close_notes"], row["hold_reason"]) == ("6", "Solution provided", "Resolved\n\nfixed", "")
    assert resolved["resolved_by"] == "l2"
    sim.clear_requests()
    adapter.update(resolved, {"status": "closed", "closed_by": "sd"})
    assert calls(sim) == ["PATCH incident"] and row_of(sim, record["id"])["state"] == "7"
    comments = [e["element"] for e in sim.state()["tables"]["sys_journal_field"] if e["element_id"] == row["sys_id"]]
    assert comments == ["work_notes", "comments", "work_notes"]


def test_a_state_changed_in_servicenow_wins_over_the_kept_ims_status(sim, tmp_path):
    adapter = platform(sim, tmp_path)
    record = adapter.update(adapter.create("incident", INCIDENT, NOTE), {"status": "escalated", "assigned_team": "L2"})
    adapter.client.update("incident", record["_sys_id"], {"state": "3", "hold_reason": "1"})  # an agent put it on hold
    assert adapter.get("incident", record["id"])["status"] == "pending_vendor"
    adapter.client.update("incident", record["_sys_id"], {"state": "6", "close_code": "User error", "close_notes": "n"})
    assert adapter.get("incident", record["id"])["status"] == "resolved"
    adapter.client.update("incident", record["_sys_id"], {"state": "2"})  # reopened: the kept status agrees again
    assert adapter.get("incident", record["id"])["status"] == "escalated"
    adapter.client.update("incident", record["_sys_id"], {"state": "8"})
    assert adapter.get("incident", record["id"])["status"] == "closed"  # Canceled


def test_get_by_number_of_any_table_or_by_sys_id(sim, tmp_path):
    adapter = platform(sim, tmp_path)
    problem = adapter.create("problem", {"entity": "problem", "status": "open", "title": "flaps", "incident_links": ["INC0010009"]}, NOTE)
    assert adapter.get("incident", problem["id"])["entity"] == "problem"  # the engine reports wrong_entity
    assert adapter.get("problem", problem["_sys_id"])["incident_links"] == ["INC0010009"]
    assert adapter.get("incident", "INC0099999") is None and adapter.get("incident", "  ") is None
    row = row_of(sim, problem["id"], "problem")
    assert (row["state"], row["u_incident_links"]) == ("101", "INC0010009")


def test_problem_and_change_native_fields(sim, tmp_path):
    adapter = platform(sim, tmp_path)
    problem = adapter.create("problem", {"entity": "problem", "status": "open", "title": "fw bug"}, NOTE)
    known = adapter.update(problem, {"status": "known_error", "workaround": "pin fw", "root_cause": "fw 1.2"})
    adapter.update(known, {"status": "resolved", "resolved_by": "l3"}, {"subject": "Problem resolved", "body": "7 days"})
    row = row_of(sim, problem["id"], "problem")
    assert (row["state"], row["workaround"], row["cause_notes"], row["resolution_code"]) == ("106", "pin fw", "fw 1.2", "fix_applied")
    incident = adapter.create("incident", INCIDENT, NOTE)
    change = adapter.create("change_request", {"entity": "change_request", "status": "pending", "title": "swap", "requester": "dev"}, NOTE)
    adapter.update(change, {"status": "approved", "approver": "cab"})
    linked = adapter.update(incident, {"problem_link": problem["id"], "change_link": change["id"]})
    assert (linked["problem_link"], linked["change_link"]) == (problem["id"], change["id"])
    inc_row, chg_row = row_of(sim, incident["id"]), row_of(sim, change["id"], "change_request")
    assert (inc_row["problem_id"], inc_row["rfc"]) == (problem["_sys_id"], change["_sys_id"])
    assert (chg_row["state"], chg_row["approval"], chg_row["u_approver"]) == ("-2", "approved", "cab")
    assert names(sim, "sys_user_group")[chg_row["assignment_group"]] == "Service Desk"


def test_routed_queue_is_the_assignment_group(sim, tmp_path):
    adapter = platform(sim, tmp_path)
    storage = adapter.routed("Storage")
    assert adapter.routed(None) is adapter and storage.client is adapter.client
    record = storage.create("incident", INCIDENT, NOTE)
    assert names(sim, "sys_user_group")[row_of(sim, record["id"])["assignment_group"]] == "Storage"
    assert record["assigned_team"] == "service_desk"
    assert adapter.get("incident", record["id"])["assigned_team"] == "Storage"  # seen from another queue: the group


def test_field_map_and_state_map_overrides(sim, tmp_path):
    adapter = platform(sim, tmp_path, field_map={"vendor": "u_supplier", "incident": {"reporter": "u_opened_for"}},
                       state_map={"problem": {"under_investigation": "102"}})
    record = adapter.create("incident", dict(INCIDENT, vendor="Dell"), NOTE)
    row = row_of(sim, record["id"])
    assert (row["u_supplier"], row["u_opened_for"], record["vendor"], record["reporter"]) == ("Dell", "eda", "Dell", "eda")
    problem = adapter.create("problem", {"entity": "problem", "status": "open", "title": "p"}, NOTE)
    assert adapter.update(problem, {"status": "under_investigation"})["platform_state"] == "102"
    with pytest.raises(ValidationError, match="field_map: unknown IMS key 'colour'"):
        merge_field_map({"colour": "u_colour"})
    with pytest.raises(ValidationError, match="state_map.incident: unknown IMS status new"):
        merge_state_map({"incident": {"new": "1"}})
    with pytest.raises(ValidationError, match="team_groups: each team needs its own assignment group"):
        ServiceNowPlatform(adapter.client, team_groups={"L1": "Ops", "L2": "Ops"})


def test_closed_incidents_of_a_default_instance_are_read_only(tmp_path):
    """Stock ACLs: closed incidents refuse non-admin writes; the error says why the IMS needs them."""
    with start_in_thread("servicenow", dict(SN_SIM_CONFIG, closed_read_only=True)) as sim:
        adapter = platform(sim, tmp_path)
        record = adapter.create("incident", INCIDENT, NOTE)
        record = adapter.update(record, {"status": "resolved"}, {"subject": "Resolved", "body": "fixed"})
        closed = adapter.update(record, {"status": "closed"})
        with pytest.raises(PermissionDenied) as info:
            adapter.update(closed, {"pir": "done"})
        text = str(info.value)
        assert "HTTP 403: Operation Failed: ACL Exception Update Failed due to security constraints" in text
        assert "is Closed, which ServiceNow keeps read-only for non-admin roles" in text


def test_impact_urgency_pairs_give_the_seed_priorities():
    for level, priority in (("S1", "1"), ("S2", "2"), ("S3", "3"), ("S4", "4")):
        pair = prio.servicenow_impact_urgency(level)
        assert prio.servicenow_priority(pair["impact"], pair["urgency"]) == priority == prio.severity_to_priority(level, "servicenow")
    assert prio.servicenow_impact_urgency("low", {"low": {"impact": 3, "urgency": 2}}) == {"impact": "3", "urgency": "2"}
    with pytest.raises(ValidationError, match="impact and urgency must be 1, 2 or 3"):
        prio.servicenow_impact_urgency("low", {"low": {"impact": 4, "urgency": 2}})
    with pytest.raises(ValidationError, match="give impact and urgency"):
        prio.servicenow_impact_urgency("low", {"low": "4"})


def test_registry_entry(tmp_path, monkeypatch):
    for name in ("SN_HOST", "SN_INSTANCE", "SN_USERNAME", "SN_PASSWORD", "SN_CLIENT_ID", "SN_CLIENT_SECRET", "SN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    entry = platforms.REGISTRY["servicenow"]
    assert set(sn.SERVICENOW_CONNECTION_ARGSPEC) < set(entry.option_spec)
    built = platforms.build_platform("servicenow", {"instance": "acme", "api_key": "k-secret-1", "team_groups": {"L1": "Ops L1"}})
    assert (built.name, built.queue, built.client.base_url) == ("servicenow", "Service Desk", "https://acme.service-now.com")
    assert built.team_groups == {"L1": "Ops L1"}
    assert platforms.build_platform("servicenow", {"instance": "acme", "api_key": "k"}, queue="Storage").queue == "Storage"
    with pytest.raises(ValidationError, match="one of the following is required: api_key, client_id, username"):
        platforms.validate_options("servicenow", {"instance": "acme"})
    with pytest.raises(ValidationError, match="unknown option\\(s\\) colour"):
        platforms.validate_options("servicenow", {"instance": "acme", "api_key": "k", "colour": "red"})
    secret = tmp_path / "pw"
    secret.write_text("file-pw-77\n")
    secret.chmod(0o600)
    options = {"instance": "acme", "username": "bot", "password_file": str(secret), "client_secret": "cs-1", "client_id": "c"}
    assert platforms.secret_values("servicenow", options) == {"file-pw-77", "cs-1"}
    monkeypatch.setenv("SN_API_KEY", "env-key-9")
    assert platforms.secret_values("servicenow", {"instance": "acme"}) == {"env-key-9"}


def test_problem_state_model_of_recent_releases_is_walked(tmp_path):
    """An instance enforcing the problem state model refuses New -> Root Cause Analysis: the adapter passes Assess."""
    with start_in_thread("servicenow", dict(SN_SIM_CONFIG, problem_state_model=True)) as sim:
        adapter = platform(sim, tmp_path)
        problem = adapter.create("problem", {"entity": "problem", "status": "open", "title": "fw bug"}, NOTE)
        sim.clear_requests()
        investigating = adapter.update(problem, {"status": "under_investigation"}, {"subject": "RCA", "body": "started"})
        assert [(e["operation"], e["status"]) for e in sim.requests()] == [("PATCH problem", 403), ("PATCH problem", 200), ("PATCH problem", 200)]
        assert (investigating["status"], investigating["platform_state"]) == ("under_investigation", "103")
        sim.clear_requests()
        known = adapter.update(investigating, {"status": "known_error", "workaround": "pin"})
        resolved = adapter.update(known, {"status": "resolved"}, {"subject": "fixed", "body": "fw 1.3"})
        closed = adapter.update(resolved, {"status": "closed"})
        assert [e["status"] for e in sim.requests()] == [200, 200, 200]  # allowed moves: one PATCH each
        assert closed["platform_state"] == "107"
        journal = [e["value"] for e in sim.state()["tables"]["sys_journal_field"] if e["element_id"] == problem["_sys_id"]]
        assert journal.count("RCA\n\nstarted") == 1  # the refused PATCH wrote nothing, the note is posted once
        other = adapter.create("problem", {"entity": "problem", "status": "open", "title": "other"}, NOTE)
        assert adapter.update(other, {"status": "known_error", "workaround": "w"})["platform_state"] == "104"


def test_the_next_batch_process_pays_no_reference_lookups(sim, tmp_path):
    """The alert path runs one process per batch: the group, caller and CI learnt by one are known to the next."""
    platform(sim, tmp_path).create("incident", INCIDENT, NOTE)
    sim.clear_requests()
    second = platform(sim, tmp_path)  # a new client, as a new process has: only token_cache is shared
    second.create("incident", dict(INCIDENT, correlation_key="2" * 24), NOTE)
    assert calls(sim) == ["POST incident"]  # token and references from token_cache


def test_monitoring_intake_requests_on_servicenow(sim, tmp_path):
    """SOP 16 through the governed write on a warm client: one correlation lookup and one POST (the POST reply carries
    the correlation_id, which proves the next lookup finds it: no checking GET); a repeat is one GET."""
    from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
    from ansible_collections.labops.itsm.plugins.module_utils._sop import run_sop

    adapter = platform(sim, tmp_path)
    ledger = ledger_from_params({"ledger_path": str(tmp_path / "audit.sqlite3")})
    adapter.create("incident", dict(INCIDENT, correlation_key="2" * 24), NOTE)   # warms the token and the reference cache
    event = {"event_id": "ev-9", "service": "pve01", "source": "automated_alert", "alert_type": "HostDown", "severity": "critical",
             "occurred_at": "2026-05-01T10:00:00Z", "correlation_key": KEY}
    sim.clear_requests()
    first = run_sop("monitoring_intake", {"event": event, "impact": "high"}, actor="eda", role="automation", platform=adapter, ledger=ledger)
    assert first["changed"] and first["record"]["correlation_key"] == KEY
    assert calls(sim) == ["GET incident", "POST incident"]
    sim.clear_requests()
    again = run_sop("monitoring_intake", {"event": event, "impact": "high"}, actor="eda", role="automation", platform=adapter, ledger=ledger)
    assert not again["changed"] and again["record"]["id"] == first["record"]["id"]
    assert calls(sim) == ["GET incident"]
    assert [r["action"] for r in ledger.query(ref_id=first["record"]["id"])] == ["create"]
    ledger.close()
