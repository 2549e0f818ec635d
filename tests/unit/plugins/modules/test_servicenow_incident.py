# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""servicenow_incident / servicenow_incident_info logic below the HTTP layer (the real path runs in
tests/integration/test_servicenow_incident.py): desired values, journal parsing, references and their cache, paging."""

from unittest.mock import Mock

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._errors import AuditWriteError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._itsm_mapping import load_mapping
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._servicenow import ServiceNowClient
from ansible_collections.labops.itsm.plugins.modules import servicenow_incident as sn
from ansible_collections.labops.itsm.plugins.modules import servicenow_incident_info as sn_info


def params(**given):
    values = {name: None for name in sn.argument_spec()}
    values["state"] = "present"
    values.update(given)
    return values


def current(**fields):
    row = {"sys_id": {"value": "9d385017c611228701d22104cc95c371", "display_value": "9d385017c611228701d22104cc95c371"},
           "number": {"value": "INC0010042", "display_value": "INC0010042"}}
    row.update(fields)
    return sn.Current(row)


def test_journal_entries_are_parsed_from_the_display_value():
    text = ("2026-05-01 10:42:10 - Monitoring Bot (Work notes)\nAlertManager reported resolved\n\n"
            "2026-05-01 10:00:03 - Monitoring Bot (Work notes)\nFirst line\nsecond line\n\n")
    incident = current(work_notes={"value": "", "display_value": text})
    assert incident.journal_entries("work_notes") == ["AlertManager reported resolved", "First line\nsecond line"]
    assert incident.journal_entries("comments") == []
    assert incident.record()["work_notes"] == text
    changes = sn.changes_for(None, incident, {"work_notes": "First line\nsecond line"})
    assert changes == {}
    assert sn.changes_for(None, incident, {"work_notes": "First line"}) == {"work_notes": "First line"}


@pytest.mark.parametrize("given, message", [
    ({"correlation_id": ""}, "correlation_id is empty: an empty key is never searched"),
    ({"number": "  "}, "number is empty"),
    ({"sys_id": "INC0010042"}, "sys_id must be 32 lowercase hex characters"),
    ({"state": "absent"}, "state=absent needs one of number, sys_id or correlation_id"),
])
def test_check_params_refuses(given, message):
    with pytest.raises(ValidationError, match=message):
        sn.check_params(params(**given))


def test_desired_values_from_severity_templates_and_custom_fields():
    mapping = load_mapping({"custom_fields": {"alert_source": "u_alert_source"},
                            "templates": {"short_description": "{{ alert.labels.alertname }} " + "x" * 200}}, "servicenow")
    wanted = sn.desired_values(params(severity="S2", alert={"labels": {"alertname": "DiskFull"}}, custom_fields={"alert_source": "prom",
                                      "u_flag": True}, caller="monitoring", state="on_hold", hold_reason="awaiting_vendor",
                                      work_notes="note"), mapping)
    assert wanted["impact"] == "1" and wanted["urgency"] == "2"
    assert wanted["short_description"].startswith("DiskFull x") and len(wanted["short_description"]) == sn.SHORT_DESCRIPTION_MAX
    assert wanted["u_alert_source"] == "prom" and wanted["u_flag"] == "true"
    assert wanted["caller_id"] == "monitoring" and wanted["state"] == "3" and wanted["hold_reason"] == "4"
    assert wanted["work_notes"] == "note"
    assert "description" in wanted  # rendered from the built-in template


def test_creation_values_put_defaults_under_the_options():
    mapping = load_mapping({"defaults": {"category": "hardware", "caller": "monitoring", "impact": "3"}}, "servicenow")
    values = sn.creation_values(params(), mapping, {"impact": "1", "short_description": "x", "state": "1"})
    assert values == {"category": "hardware", "caller_id": "monitoring", "impact": "1", "short_description": "x"}
    with pytest.raises(ValidationError, match="creating one needs short_description"):
        sn.creation_values(params(correlation_id="am:1"), mapping, {})


def test_state_needs_close_fields_unless_the_incident_has_them():
    with pytest.raises(ValidationError, match="state=resolved needs close_code and close_notes"):
        sn.check_state_needs(params(state="resolved"), {"state": "6"}, None)
    with pytest.raises(ValidationError, match="needs close_notes"):
        sn.check_state_needs(params(state="closed"), {"state": "7", "close_code": "Duplicate"}, current())
    sn.check_state_needs(params(state="closed"), {"state": "7"}, current(close_code="Duplicate", close_notes="dup"))
    with pytest.raises(ValidationError, match="state=on_hold needs hold_reason"):
        sn.check_state_needs(params(state="on_hold"), {"state": "3"}, current(hold_reason=""))


def test_references_cost_nothing_when_known_and_one_lookup_per_new_user(sn_sim, tmp_path):
    tables = sn_sim.state()["tables"]
    group_id = next(row["sys_id"] for row in tables["sys_user_group"] if row["name"] == "Infrastructure")
    user_id = next(row["sys_id"] for row in tables["sys_user"] if row["user_name"] == "monitoring")
    client = _client(sn_sim, token_cache=str(tmp_path / "cache"))
    refs = sn.References(client)
    incident = current(assignment_group={"value": group_id, "display_value": "Infrastructure"},
                       caller_id={"value": user_id, "display_value": "Monitoring Bot"})
    assert refs.same("assignment_group", "infrastructure", incident)  # display value, any case
    assert refs.same("assignment_group", group_id, incident)
    assert not refs.same("assignment_group", "Platform", incident)  # a group's display value is its name: no lookup
    assert refs.same("caller_id", "monitoring", incident)  # user name: looked up once ...
    assert refs.same("caller_id", "Monitoring", incident)  # ... then from the cache
    assert client.request_count == 1
    body, query = sn.body_for(refs, {"assignment_group": "Platform", "caller_id": "monitoring", "impact": "1"})
    assert body == {"assignment_group": "Platform", "caller_id": user_id, "impact": "1"}
    assert query == {"sysparm_input_display_value": "true"}
    unknown = refs.learn(sn.Current({"assignment_group": {"value": "", "display_value": ""}}))
    assert unknown and "no sys_user_group record" in unknown[0]
    # the next task (a new client) knows both from the client's cache in token_cache: no request
    again = sn.References(_client(sn_sim, token_cache=str(tmp_path / "cache")))
    assert again.same("caller_id", "monitoring", incident) and again.same("assignment_group", "Infrastructure", incident)
    assert again.client.request_count == 0


def test_a_stale_cached_reference_is_sent_again_by_name(sn_sim, tmp_path, monkeypatch):
    """A group deleted and re-created since its sys_id was cached: the create's reply shows the reference pointing nowhere;
    the client forgets the sys_id, looks the name up and sends the field once more (1 GET + 1 PATCH, only then)."""
    monkeypatch.setenv("LABOPS_METRICS_DIR", str(tmp_path / "metrics"))
    cache = str(tmp_path / "cache")
    ledger = ledger_from_params({"ledger_path": str(tmp_path / "ledger.sqlite3")})
    _client(sn_sim, token_cache=cache).remember_reference("sys_user_group", "Storage", "0" * 32)  # a group that is gone
    module = _Module(correlation_id="am:stale", short_description="stale group", assignment_group="Storage", token_cache=cache)
    client = _client(sn_sim, token_cache=cache)
    warnings = []
    client.warn = warnings.append
    sn_sim.clear_requests()
    result = sn.run(module, client, ledger)
    storage = next(row["sys_id"] for row in sn_sim.state()["tables"]["sys_user_group"] if row["name"] == "Storage")
    assert result["record"]["assignment_group"] == storage
    assert [entry["operation"] for entry in sn_sim.requests()] == ["GET incident", "POST incident", "GET sys_user_group", "PATCH incident"]
    assert len(warnings) == 1 and "stale cached sys_id" in warnings[0], warnings
    (created,) = result["audit"]
    assert created["action"] == "create" and created["fields"]["assignment_group"] == {"before": None, "after": storage}
    assert _client(sn_sim, token_cache=cache).known_reference("sys_user_group", "Storage") == storage  # learnt anew


def test_predict_prepends_journal_entries_and_keeps_the_rest():
    incident = current(state={"value": "2", "display_value": "In Progress"},
                       work_notes={"value": "", "display_value": "2026-05-01 10:00:03 - Bot (Work notes)\nold\n\n"})
    record = sn.predict(incident, {"state": "6", "work_notes": "new"})
    assert record["state"] == "6" and record["number"] == "INC0010042"
    assert record["work_notes"].startswith("new\n\n2026-05-01")


def test_info_pages_until_the_limit():
    client = Mock(spec=ServiceNowClient)
    rows = [{"sys_id": "%032x" % n} for n in range(7)]
    client.list_page.side_effect = lambda table, query, fields, limit, offset, display_value: (rows[offset:offset + limit], len(rows))
    client.record_link.side_effect = lambda table, sys_id: "link/" + sys_id
    client.request_count = 3
    module = Mock(params=dict({name: None for name in sn_info.argument_spec()}, limit=5, page_size=2, display_value="false"))
    result = sn_info.run(module, client)
    assert [r["sys_id"] for r in result["records"]] == [r["sys_id"] for r in rows[:5]]
    assert [call.kwargs["offset"] for call in client.list_page.call_args_list] == [0, 2, 4]
    assert client.list_page.call_args_list[-1].kwargs["limit"] == 1
    assert "ORDERBY" in client.list_page.call_args_list[0].args[1]
    module.params.update(limit=0, query="active=true^assignment_group=")
    with pytest.raises(ValidationError, match="never searched"):
        sn_info.run(module, client)


class _Module:
    """What the module's run() uses of AnsibleModule."""

    def __init__(self, **given):
        self.params = dict(params(**given))
        self.check_mode = False
        self.warnings = []
        self.no_log_values = set()

    def warn(self, text):
        self.warnings.append(text)


@pytest.mark.parametrize("after_apply, posts, warning", [
    (True, 1, "the create reply was lost, but incident INC"),
    (False, 2, "the create reply was lost and no incident with correlation key am:lost exists; sent the create once more"),
])
def test_a_lost_create_reply_never_makes_a_duplicate(tmp_path, monkeypatch, after_apply, posts, warning):
    from ansible_collections.labops.itsm.plugins.module_utils._servicenow import client_from_params
    from simulators.harness import start_in_thread

    monkeypatch.setenv("LABOPS_METRICS_DIR", str(tmp_path / "metrics"))
    with start_in_thread("servicenow") as sim:
        sim.inject(kind="http_status", status=503, count=1, operations=["POST incident"], after_apply=after_apply)
        client = client_from_params({"instance": sim.url, "username": "itsm.bot", "password": "bot-pw", "token_cache": ""})
        module = _Module(correlation_id="am:lost", short_description="lost reply", impact="2")
        result = sn.run(module, client, ledger_from_params({"ledger_path": str(tmp_path / "ledger.sqlite3")}))
        incidents = [row for row in sim.state()["tables"]["incident"] if row["correlation_id"] == "am:lost"]
        operations = [entry["operation"] for entry in sim.requests()]
    assert len(incidents) == 1 and result["number"] == incidents[0]["number"] and result["created"] is True
    assert operations.count("POST incident") == posts
    assert operations.count("GET incident") == 2  # the lookup before, the one after the lost reply
    assert len(module.warnings) == 1 and warning in module.warnings[0]


@pytest.fixture(scope="module")
def sn_sim():
    from simulators.harness import start_in_thread

    with start_in_thread("servicenow") as sim:
        yield sim


def _client(sim, token_cache=""):
    from ansible_collections.labops.itsm.plugins.module_utils._servicenow import client_from_params

    return client_from_params({"instance": sim.url, "username": "itsm.bot", "password": "bot-pw", "token_cache": token_cache})


def test_a_ledger_failing_after_the_write_says_unaudited(sn_sim, tmp_path, monkeypatch):
    """The preflight passed, ServiceNow was changed, then the append failed: the task fails naming the incident."""
    monkeypatch.setenv("LABOPS_METRICS_DIR", str(tmp_path / "metrics"))
    ledger = ledger_from_params({"ledger_path": str(tmp_path / "ledger.sqlite3")})
    sn.run(_Module(correlation_id="am:unaudited-update", short_description="audited create", impact="2"), _client(sn_sim), ledger)

    def disk_full(*args, **kwargs):
        raise AuditWriteError("audit ledger write failed (sqlite %s): disk full; the governed action halts" % (tmp_path / "ledger.sqlite3"))

    monkeypatch.setattr(ledger, "append", disk_full)
    module = _Module(correlation_id="am:unaudited", short_description="ledger dies after the POST", impact="2")
    with pytest.raises(AuditWriteError) as failure:
        sn.run(module, _client(sn_sim), ledger)
    rows = [row for row in sn_sim.state()["tables"]["incident"] if row["correlation_id"] == "am:unaudited"]
    assert len(rows) == 1  # applied ...
    message = str(failure.value)
    assert f"servicenow incident {rows[0]['number']} (sys_id {rows[0]['sys_id']}): the create was applied on ServiceNow but is UNAUDITED" in message
    assert "disk full" in message and failure.value.details["number"] == rows[0]["number"]
    # an update is the same: applied, then UNAUDITED
    module = _Module(correlation_id="am:unaudited-update", urgency="high")
    with pytest.raises(AuditWriteError, match="the update was applied on ServiceNow but is UNAUDITED"):
        sn.run(module, _client(sn_sim), ledger)
    assert [row["urgency"] for row in sn_sim.state()["tables"]["incident"] if row["correlation_id"] == "am:unaudited-update"] == ["1"]


def test_an_incident_whose_creation_the_ledger_lacks_is_back_filled(sn_sim, tmp_path):
    client = _client(sn_sim)
    created = client.create("incident", {"short_description": "created elsewhere", "correlation_id": "am:backfill"})
    ledger = ledger_from_params({"ledger_path": str(tmp_path / "ledger.sqlite3")})
    check = _Module(correlation_id="am:backfill")
    check.check_mode = True
    predicted = sn.run(check, _client(sn_sim), ledger)
    assert predicted["changed"] is True and predicted["audit"] == [] and ledger.query() == []  # check mode writes nothing
    first = sn.run(_Module(correlation_id="am:backfill"), _client(sn_sim), ledger)
    assert first["changed"] is True and first["requests"] == 1
    (record,) = first["audit"]
    assert (record["action"], record["ref_id"]) == ("create", created["number"])
    assert record["meta"]["backfilled"] is True and record["meta"]["record_key"] == "servicenow:create:incident:" + created["number"]
    again = sn.run(_Module(correlation_id="am:backfill"), _client(sn_sim), ledger)
    assert again["changed"] is False and again["audit"] == [] and len(ledger.query()) == 1


def test_a_create_reply_without_the_key_is_read_back_the_way_the_next_run_looks(sn_sim, tmp_path, monkeypatch):
    """The POST reply normally proves findability (it carries the correlation_id through the read ACLs): 1 GET + 1 POST.
    A reply that lacks it (a field ACL hides correlation_id) costs the governed write's read back: 1 more GET."""
    monkeypatch.setenv("LABOPS_METRICS_DIR", str(tmp_path / "metrics"))
    ledger = ledger_from_params({"ledger_path": str(tmp_path / "ledger.sqlite3")})
    client = _client(sn_sim)
    sn_sim.clear_requests()
    sn.run(_Module(correlation_id="am:proved", short_description="reply carries the key"), client, ledger)
    assert [entry["operation"] for entry in sn_sim.requests()] == ["GET incident", "POST incident"]
    client = _client(sn_sim)
    create = client.create
    monkeypatch.setattr(client, "create", lambda *args, **kwargs: {k: v for k, v in create(*args, **kwargs).items() if k != "correlation_id"})
    sn_sim.clear_requests()
    result = sn.run(_Module(correlation_id="am:hidden", short_description="reply hides the key"), client, ledger)
    assert [entry["operation"] for entry in sn_sim.requests()] == ["GET incident", "POST incident", "GET incident"]
    assert result["record"]["correlation_id"] == "am:hidden" and [r["action"] for r in result["audit"]] == ["create"]
