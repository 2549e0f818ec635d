"""The ServiceNow Table API simulator against contracts/servicenow.md, over real HTTP (no mocks)."""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from simulators.harness import InThreadSimulator, SimulatorError, start_in_thread, start_simulator
from simulators.servicenow_model import stable_sys_id
from simulators.servicenow_query import parse, split_terms

BOT = ("itsm.bot", "bot-pw")
ADMIN = ("admin", "admin-pw")
ENVELOPE_KEYS = {"error", "status"}
MONITORING = stable_sys_id("sys_user", "monitoring")
PLATFORM = stable_sys_id("sys_user_group", "Platform")
STORAGE = stable_sys_id("sys_user_group", "Storage")
PVE01 = stable_sys_id("cmdb_ci", "pve01")


class SN:
    """A tiny Table API client: Basic auth by default, or any headers (bearer, API key)."""

    def __init__(self, sim: Any, auth: tuple[str, str] | None = BOT, headers: dict[str, str] | None = None) -> None:
        self.sim = sim
        self.auth = auth
        self.headers = headers or {}

    def raw(self, method: str, path: str, params: Any = None, body: Any = None, *, raw_body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        url = urllib.parse.urlsplit(self.sim.url)
        target = path + ("?" + (params if isinstance(params, str) else urllib.parse.urlencode(params)) if params else "")
        data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Accept": "application/json"}
        if data is not None and raw_body is None:
            hdrs["Content-Type"] = "application/json"
        if self.auth:
            hdrs["Authorization"] = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
        hdrs.update(self.headers)
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        try:
            conn.request(method, target, body=data, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def call(self, method: str, path: str, params: Any = None, body: Any = None, status: int = 200, **kw: Any) -> Any:
        got, _headers, payload = self.raw(method, path, params, body, **kw)
        assert got == status, (got, payload)
        return json.loads(payload) if payload else None

    def list(self, table: str, **params: Any) -> list[dict[str, Any]]:
        return self.call("GET", f"/api/now/table/{table}", params)["result"]

    def create(self, table: str = "incident", params: Any = None, **values: Any) -> dict[str, Any]:
        return self.call("POST", f"/api/now/table/{table}", params, values, status=201)["result"]

    def update(self, sys_id: str, table: str = "incident", params: Any = None, **values: Any) -> dict[str, Any]:
        return self.call("PATCH", f"/api/now/table/{table}/{sys_id}", params, values)["result"]


@pytest.fixture(scope="module")
def sim() -> Iterator[InThreadSimulator]:
    server = start_in_thread("servicenow", {"users": {"viewer": {"password": "view-pw", "roles": ["snc_read_only"]}}})
    yield server
    server.stop()


@pytest.fixture()
def sn(sim: InThreadSimulator) -> SN:
    sim.reset()
    return SN(sim)


def envelope(payload: bytes) -> tuple[str, Any]:
    data = json.loads(payload)
    assert set(data) == ENVELOPE_KEYS and data["status"] == "failure" and set(data["error"]) == {"message", "detail"}, data
    return data["error"]["message"], data["error"]["detail"]


def all_strings(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and all_strings(v) for k, v in value.items())
    return isinstance(value, str)


# ---------------------------------------------------------------- paths, envelopes, authentication


@pytest.mark.parametrize("prefix", ["/api/now/table", "/api/now/v1/table", "/api/now/v2/table"])
def test_table_paths_and_version_aliases(sn: SN, prefix: str) -> None:
    created = sn.call("POST", f"{prefix}/incident", body={"short_description": "alias"}, status=201)["result"]
    assert sn.call("GET", f"{prefix}/incident/{created['sys_id']}")["result"]["number"] == "INC0010001"
    assert [r["sys_id"] for r in sn.call("GET", f"{prefix}/incident")["result"]] == [created["sys_id"]]


def test_unknown_table_and_path_are_400_envelopes(sn: SN) -> None:
    status, headers, payload = sn.raw("GET", "/api/now/table/incidnt")
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert envelope(payload) == ("Invalid table incidnt", None)
    status, _h, payload = sn.raw("POST", "/api/now/table/incidnt", body={"a": 1})
    assert status == 400 and envelope(payload)[0] == "Invalid table incidnt"
    status, _h, payload = sn.raw("GET", "/api/now/tables/incident")
    assert status == 400 and envelope(payload) == ("Requested URI does not represent any resource", None)


def test_record_404_envelope(sn: SN) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        status, _h, payload = sn.raw(method, "/api/now/table/incident/" + "0" * 32, body={"state": "2"} if method in ("PATCH", "PUT") else None)
        assert status == 404, method
        assert envelope(payload) == ("No Record found", "Record doesn't exist or ACL restricts the record retrieval")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic " + base64.b64encode(b"itsm.bot:wrong").decode()},
                                     {"Authorization": "Bearer not-a-token"}, {"x-sn-apikey": "nope"}])
def test_401_envelope(sim: InThreadSimulator, headers: dict[str, str]) -> None:
    status, _h, payload = SN(sim, auth=None, headers=headers).raw("GET", "/api/now/table/incident")
    assert status == 401
    assert envelope(payload) == ("User Not Authenticated", "Required to provide Auth information")


def test_api_key_authenticates_as_its_user(sn: SN, sim: InThreadSimulator) -> None:
    keyed = SN(sim, auth=None, headers={"x-sn-apikey": "key-123"})
    created = keyed.create(short_description="by key")
    assert created["sys_created_by"] == "itsm.bot"
    assert created["opened_by"]["value"] == stable_sys_id("sys_user", "itsm.bot")


def test_acl_read_only_role_and_itil_delete_are_403(sn: SN, sim: InThreadSimulator) -> None:
    viewer = SN(sim, auth=("viewer", "view-pw"))
    assert len(viewer.list("sys_user_group")) == 5
    status, _h, payload = viewer.raw("POST", "/api/now/table/incident", body={"short_description": "x"})
    assert status == 403 and envelope(payload) == ("Operation Failed", "ACL Exception Insert Failed due to security constraints")
    record = sn.create(short_description="mine")
    status, _h, payload = viewer.raw("PATCH", f"/api/now/table/incident/{record['sys_id']}", body={"urgency": "1"})
    assert status == 403 and envelope(payload)[1] == "ACL Exception Update Failed due to security constraints"
    status, _h, payload = sn.raw("DELETE", f"/api/now/table/incident/{record['sys_id']}")
    assert status == 403 and envelope(payload)[1] == "ACL Exception Delete Failed due to security constraints"
    status, _h, payload = sn.raw("POST", "/api/now/table/sys_user_group", body={"name": "Rogue"})
    assert status == 403
    # a per-user deny: this bot may not create problems, other itil users may
    sim.set_config(users={"itsm.bot": {"password": "bot-pw", "roles": ["itil"], "deny": {"problem": ["create"]}}})
    status, _h, payload = sn.raw("POST", "/api/now/table/problem", body={"short_description": "p"})
    assert status == 403 and envelope(payload)[1] == "ACL Exception Insert Failed due to security constraints"
    assert sn.create(short_description="incidents still work")["number"]
    # an ACL can be changed at run time: itil loses read on cmdb_ci
    sim.set_config(acls={"itil": {"incident": ["read", "create", "write"]}})
    status, _h, payload = sn.raw("GET", "/api/now/table/cmdb_ci")
    assert status == 403 and envelope(payload)[1] == "ACL Exception Read Failed due to security constraints"
    status, _h, payload = sn.raw("GET", f"/api/now/table/cmdb_ci/{PVE01}")
    assert status == 404


# ---------------------------------------------------------------- records: shapes, strings, writes


def test_create_returns_201_full_record_all_strings(sn: SN) -> None:
    status, headers, payload = sn.raw("POST", "/api/now/table/incident",
                                      body={"short_description": "Disk full", "impact": 1, "urgency": 2, "u_alert_source": "prometheus",
                                            "assignment_group": PLATFORM, "cmdb_ci": PVE01, "active": False, "priority": 5, "number": None,
                                            "no_such_field": "ignored", "sys_created_by": "mallory"})
    assert status == 201 and headers["content-type"].startswith("application/json")
    record = json.loads(payload)["result"]
    assert all_strings(record)
    assert re.fullmatch(r"[0-9a-f]{32}", record["sys_id"]) and record["number"] == "INC0010001"
    assert (record["state"], record["impact"], record["urgency"], record["priority"], record["active"]) == ("1", "1", "2", "2", "true")
    assert record["u_alert_source"] == "prometheus" and "no_such_field" not in record
    assert record["sys_created_by"] == "itsm.bot" and record["sys_mod_count"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", record["sys_created_on"])
    assert record["assignment_group"] == {"link": f"{sn.sim.url}/api/now/table/sys_user_group/{PLATFORM}", "value": PLATFORM}
    assert record["caller_id"] == "" and record["work_notes"] == ""
    second = sn.create(short_description="next")
    assert second["number"] == "INC0010002"
    assert sn.create("problem", short_description="p")["number"] == "PRB0040001"
    assert sn.create("change_request", short_description="c")["number"] == "CHG0030001"
    assert sn.create("kb_knowledge", short_description="kb")["number"] == "KB0010001"


def test_unknown_u_field_ignored_when_not_configured(sn: SN, sim: InThreadSimulator) -> None:
    sim.set_config(custom_fields={"incident": ["u_alert_source"]})
    record = sn.create(short_description="x", u_alert_source="am", u_other="dropped")
    assert record["u_alert_source"] == "am" and "u_other" not in record


def test_patch_put_delete_and_system_fields(sn: SN, sim: InThreadSimulator) -> None:
    record = sn.create(short_description="first")
    sim.advance_clock(5)
    patched = sn.update(record["sys_id"], short_description="second", bogus="x")
    assert patched["short_description"] == "second" and patched["sys_mod_count"] == "1"
    assert patched["sys_updated_on"] > record["sys_updated_on"] and patched["sys_created_on"] == record["sys_created_on"]
    admin = SN(sim, auth=ADMIN)
    put = admin.call("PUT", f"/api/now/table/incident/{record['sys_id']}", body={"urgency": "1"})["result"]
    assert put["short_description"] == "second" and put["urgency"] == "1" and put["priority"] == "3"
    assert (put["sys_mod_count"], put["sys_updated_by"]) == ("2", "admin")
    # nothing to change: no update, sys_mod_count stays
    again = admin.call("PATCH", f"/api/now/table/incident/{record['sys_id']}", body={"urgency": "1", "short_description": "second"})["result"]
    assert again["sys_mod_count"] == "2"
    status, headers, payload = admin.raw("DELETE", f"/api/now/table/incident/{record['sys_id']}")
    assert (status, payload) == (204, b"") and "content-type" not in headers
    assert sn.raw("GET", f"/api/now/table/incident/{record['sys_id']}")[0] == 404


def test_one_record_per_write_and_bad_bodies(sn: SN) -> None:
    result = sn.call("POST", "/api/now/table/incident", body=[{"short_description": "one"}, {"short_description": "two"}], status=201)
    assert result["result"]["short_description"] == "one"
    assert len(sn.list("incident")) == 1
    status, _h, payload = sn.raw("POST", "/api/now/table/incident", raw_body=b"{nope", headers={"Content-Type": "application/json"})
    assert status == 400 and envelope(payload) == ("Exception while reading request", "The payload is not valid JSON.")
    status, _h, _p = sn.raw("POST", "/api/now/table/incident", raw_body=b"short_description=x", headers={"Content-Type": "text/plain"})
    assert status == 415
    status, _h, payload = sn.raw("POST", f"/api/now/table/incident/{'a' * 32}", body={})
    assert status == 405


def test_reference_shapes_per_display_mode(sn: SN) -> None:
    record = sn.create(short_description="refs", caller_id=MONITORING, state="2")
    path = f"/api/now/table/incident/{record['sys_id']}"
    link = f"{sn.sim.url}/api/now/table/sys_user/{MONITORING}"
    fields = "caller_id,state,assigned_to,opened_at"

    def get(**params: str) -> dict[str, Any]:
        return sn.call("GET", path, dict(sysparm_fields=fields, **params))["result"]
    assert get() == {"caller_id": {"link": link, "value": MONITORING}, "state": "2", "assigned_to": "", "opened_at": record["opened_at"]}
    assert get(sysparm_exclude_reference_link="true")["caller_id"] == MONITORING
    shown = get(sysparm_display_value="true")
    assert shown["caller_id"] == {"display_value": "Monitoring Bot", "link": link} and shown["state"] == "In Progress"
    assert shown["assigned_to"] == ""
    assert get(sysparm_display_value="true", sysparm_exclude_reference_link="true")["caller_id"] == "Monitoring Bot"
    both = get(sysparm_display_value="all")
    assert both["caller_id"] == {"display_value": "Monitoring Bot", "value": MONITORING, "link": link}
    assert both["state"] == {"display_value": "In Progress", "value": "2"}
    assert both["assigned_to"] == {"display_value": "", "value": ""}
    assert get(sysparm_display_value="all", sysparm_exclude_reference_link="true")["caller_id"] == {"display_value": "Monitoring Bot", "value": MONITORING}
    walked = sn.call("GET", path, {"sysparm_fields": "number,caller_id.user_name,caller_id.email,nope"})["result"]
    assert walked == {"number": record["number"], "caller_id.user_name": "monitoring", "caller_id.email": "monitoring@example.com"}


def test_input_display_value_resolves_names_and_labels(sn: SN) -> None:
    params = {"sysparm_input_display_value": "true"}
    record = sn.create(params=params, short_description="names", caller_id="monitoring", assignment_group="Storage", cmdb_ci="pve01",
                       state="In Progress", impact="1 - High", assigned_to="itsm.bot@example.com")
    assert record["caller_id"]["value"] == MONITORING and record["assignment_group"]["value"] == STORAGE
    assert record["cmdb_ci"]["value"] == PVE01 and record["state"] == "2" and record["impact"] == "1"
    assert record["assigned_to"]["value"] == stable_sys_id("sys_user", "itsm.bot")
    # without the flag a name is not a reference: it is stored as given and displays as nothing
    raw = sn.create(short_description="raw", assignment_group="Storage")
    assert raw["assignment_group"]["value"] == "Storage"
    shown = sn.call("GET", f"/api/now/table/incident/{raw['sys_id']}", {"sysparm_display_value": "true", "sysparm_fields": "assignment_group"})
    assert shown["result"]["assignment_group"]["display_value"] == ""


# ---------------------------------------------------------------- query grammar and pagination


ROW_SPECS = [
    dict(short_description="Disk full on pve01", impact="1", urgency="1", assignment_group=PLATFORM, correlation_id="am:1", category="hardware"),
    dict(short_description="CPU high pve02", impact="2", urgency="2", assignment_group=STORAGE, correlation_id="am:2"),
    dict(short_description="Backup failed", impact="3", urgency="3", correlation_id=""),
    dict(short_description="disk latency ^ spikes", impact="2", urgency="3", assignment_group=PLATFORM, caller_id=MONITORING),
    dict(short_description="Network down", impact="1", urgency="3", category="network"),
]


@pytest.fixture(scope="module")
def qsim() -> Iterator[tuple[SN, dict[str, str]]]:
    """A second simulator holding five incidents (created once over HTTP, a minute apart) for the read-only query tests."""
    server = start_in_thread("servicenow")
    client = SN(server)
    numbers = {}
    for spec in ROW_SPECS:
        numbers[spec["short_description"]] = client.create(**spec)["number"]
        server.advance_clock(60)
    yield client, numbers
    server.stop()


QUERIES = [
    ("impact=1", {"Disk full on pve01", "Network down"}),
    ("impact!=1", {"CPU high pve02", "Backup failed", "disk latency ^ spikes"}),
    ("impact=1^urgency=1", {"Disk full on pve01"}),
    ("impact=1^ORurgency=2", {"Disk full on pve01", "Network down", "CPU high pve02"}),
    ("impact=3^NQimpact=1^urgency=3", {"Backup failed", "Network down"}),
    ("priorityIN1,2,3", {"Disk full on pve01", "CPU high pve02", "Network down"}),
    ("priorityNOT IN1,2,3", {"Backup failed", "disk latency ^ spikes"}),
    ("short_descriptionLIKEdisk", {"Disk full on pve01", "disk latency ^ spikes"}),
    ("short_descriptionNOT LIKEdisk", {"CPU high pve02", "Backup failed", "Network down"}),
    ("short_descriptionSTARTSWITHcpu", {"CPU high pve02"}),
    ("short_descriptionENDSWITHdown", {"Network down"}),
    ("correlation_idISEMPTY", {"Backup failed", "disk latency ^ spikes", "Network down"}),
    ("correlation_idISNOTEMPTY", {"Disk full on pve01", "CPU high pve02"}),
    ("priority<3", {"Disk full on pve01"}),
    ("priority<=3", {"Disk full on pve01", "CPU high pve02", "Network down"}),
    ("priority>4", {"Backup failed"}),
    ("priority>=4", {"Backup failed", "disk latency ^ spikes"}),
    ("assignment_group=Platform", {"Disk full on pve01", "disk latency ^ spikes"}),
    (f"assignment_group={STORAGE}", {"CPU high pve02"}),
    ("assignment_group.name=Storage", {"CPU high pve02"}),
    ("caller_id.user_name=monitoring", {"disk latency ^ spikes"}),
    ("short_descriptionLIKE^^ spikes", {"disk latency ^ spikes"}),
    ("no_such_field=1^impact=2", {"CPU high pve02", "disk latency ^ spikes"}),
    ("active=true^category=network", {"Network down"}),
    ("active=1^impact=3", {"Backup failed"}),
    ("sys_created_by=javascript:gs.getUserName()^impact=3", {"Backup failed"}),
    ("sys_created_on<javascript:gs.dateGenerate('2000-01-01','00:00:00')", set()),
    ("sys_created_on>javascript:gs.dateGenerate('2000-01-01','00:00:00')^impact=3", {"Backup failed"}),
    ("opened_by=javascript:gs.getUserID()^impact=1", {"Disk full on pve01", "Network down"}),
    ("priorityBETWEEN2@4", {"CPU high pve02", "disk latency ^ spikes", "Network down"}),
    ("impactANYTHING^urgency=1", {"Disk full on pve01"}),
    ("stateSAMEASimpact^impact=2", {"CPU high pve02", "disk latency ^ spikes"}),  # an operator not modelled: the term is dropped
    ("", {"Disk full on pve01", "CPU high pve02", "Backup failed", "disk latency ^ spikes", "Network down"}),
]


@pytest.mark.parametrize("query,expected", QUERIES, ids=[q or "empty" for q, _e in QUERIES])
def test_query_grammar(qsim: tuple[SN, dict[str, str]], query: str, expected: set[str]) -> None:
    sn = qsim[0]
    result = sn.list("incident", sysparm_query=query, sysparm_fields="short_description")
    assert {r["short_description"] for r in result} == expected


def test_ordering_and_plain_filters(qsim: tuple[SN, dict[str, str]]) -> None:
    sn, rows = qsim
    ordered = sn.list("incident", sysparm_query="ORDERBYpriority^ORDERBYDESCnumber", sysparm_fields="number,priority")
    assert [r["priority"] for r in ordered] == ["1", "3", "3", "4", "5"]
    assert [r["number"] for r in ordered][1:3] == [rows["Network down"], rows["CPU high pve02"]]  # ties: number, descending
    newest = sn.list("incident", sysparm_query="ORDERBYDESCsys_created_on", sysparm_fields="short_description")
    assert newest[0]["short_description"] == "Network down" and newest[-1]["short_description"] == "Disk full on pve01"
    by_number = sn.list("incident", number=rows["Backup failed"])
    assert [r["short_description"] for r in by_number] == ["Backup failed"]
    assert len(sn.list("incident", correlation_id="")) == 3  # an empty key matches every empty field
    assert len(sn.list("incident", sysparm_query="impact=1", urgency="3")) == 1


def test_invalid_query_can_return_no_rows(qsim: tuple[SN, dict[str, str]]) -> None:
    sn = qsim[0]
    sn.sim.set_config(invalid_query_returns_no_rows=True)
    try:
        assert sn.list("incident", sysparm_query="no_such_field=1^impact=2") == []
        assert len(sn.list("incident", sysparm_query="impact=2")) == 2
    finally:
        sn.sim.set_config(invalid_query_returns_no_rows=False)


def test_pagination_headers(qsim: tuple[SN, dict[str, str]]) -> None:
    sn, rows = qsim
    params = {"sysparm_query": "active=true^ORDERBYnumber", "sysparm_limit": "2", "sysparm_offset": "2", "sysparm_fields": "number"}
    status, headers, payload = sn.raw("GET", "/api/now/table/incident", params)
    assert status == 200 and headers["x-total-count"] == "5"
    assert [r["number"] for r in json.loads(payload)["result"]] == sorted(rows.values())[2:4]
    links = {rel: url for url, rel in re.findall(r'<([^>]+)>;rel="(\w+)"', headers["link"])}
    assert set(links) == {"first", "prev", "next", "last"}
    offsets = {rel: urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["sysparm_offset"][0] for rel, url in links.items()}
    assert offsets == {"first": "0", "prev": "0", "next": "4", "last": "4"}
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(links["next"]).query)
    assert query["sysparm_query"] == ["active=true^ORDERBYnumber"] and query["sysparm_limit"] == ["2"]
    assert links["next"].startswith(f"{sn.sim.url}/api/now/table/incident?")
    _s, first_headers, _p = sn.raw("GET", "/api/now/table/incident", dict(params, sysparm_offset="0"))
    assert 'rel="prev"' not in first_headers["link"] and 'rel="next"' in first_headers["link"]
    _s, last_headers, payload = sn.raw("GET", "/api/now/table/incident", dict(params, sysparm_offset="4"))
    assert 'rel="next"' not in last_headers["link"] and len(json.loads(payload)["result"]) == 1
    _s, bare, _p = sn.raw("GET", "/api/now/table/incident", dict(params, sysparm_no_count="true", sysparm_suppress_pagination_header="true"))
    assert "x-total-count" not in bare and "link" not in bare
    status, headers, payload = sn.raw("GET", "/api/now/table/incident", {"sysparm_query": "impact=9"})
    assert (status, headers["x-total-count"], json.loads(payload)) == (200, "0", {"result": []})


def test_sys_choice_lists_close_codes(sn: SN, sim: InThreadSimulator) -> None:
    result = sn.list("sys_choice", sysparm_query="name=incident^element=close_code^inactive=false", sysparm_fields="value,label")
    assert [r["value"] for r in result][:2] == ["Duplicate", "Known error"] and len(result) == 10
    assert all(r["value"] == r["label"] for r in result)
    sim.set_config(close_codes=["Solved (Permanently)", "Solved (Work Around)"])  # an older release's list
    result = sn.list("sys_choice", sysparm_query="name=incident^element=close_code", sysparm_fields="value")
    assert [r["value"] for r in result] == ["Solved (Permanently)", "Solved (Work Around)"]
    with pytest.raises(SimulatorError, match="rate_limit"):
        sim.set_config(rate_limit={"limit": 5, "window": 0})


# ---------------------------------------------------------------- business rules


@pytest.mark.parametrize("impact,urgency,priority", [
    ("1", "1", "1"), ("1", "2", "2"), ("1", "3", "3"), ("2", "1", "2"), ("2", "2", "3"), ("2", "3", "4"), ("3", "1", "3"), ("3", "2", "4"), ("3", "3", "5")])
def test_priority_lookup_overwrites_client_priority(sn: SN, impact: str, urgency: str, priority: str) -> None:
    record = sn.create(short_description="p", impact=impact, urgency=urgency, priority="1")
    assert record["priority"] == priority
    flipped = sn.update(record["sys_id"], impact=urgency, urgency=impact, priority="5")
    assert flipped["priority"] == priority


def test_problem_priority_lookup_and_defaults(sn: SN) -> None:
    problem = sn.create("problem", short_description="p", impact="1", urgency="1")
    assert (problem["state"], problem["priority"], problem["active"]) == ("101", "1", "true")


def test_journal_fields_append_and_read_back(sn: SN, sim: InThreadSimulator) -> None:
    record = sn.create(short_description="j", work_notes="first note")
    sim.advance_clock(2)
    sn.update(record["sys_id"], work_notes="same text")
    sim.advance_clock(2)
    updated = sn.update(record["sys_id"], work_notes="same text", comments="visible")
    assert updated["work_notes"] == "" and updated["comments"] == "" and updated["sys_mod_count"] == "2"
    path = f"/api/now/table/incident/{record['sys_id']}"
    shown = sn.call("GET", path, {"sysparm_display_value": "true", "sysparm_fields": "work_notes,comments"})["result"]
    headers = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) - ITSM Bot \(Work notes\)$", shown["work_notes"], re.MULTILINE)
    assert len(headers) == 3 and headers == sorted(headers, reverse=True)
    assert shown["work_notes"].split("\n")[1::3] == ["same text", "same text", "first note"]
    assert shown["comments"].endswith(" - ITSM Bot (Additional comments)\nvisible\n\n")
    both = sn.call("GET", path, {"sysparm_display_value": "all", "sysparm_fields": "work_notes"})["result"]["work_notes"]
    assert both == {"display_value": shown["work_notes"], "value": ""}
    entries = sn.list("sys_journal_field", sysparm_query=f"element_id={record['sys_id']}^element=work_notes")
    assert sorted(e["value"] for e in entries) == ["first note", "same text", "same text"]
    assert all(e["name"] == "incident" and e["sys_created_by"] == "itsm.bot" for e in entries)
    status, _h, _p = sn.raw("POST", "/api/now/table/sys_journal_field", body={"element_id": record["sys_id"], "value": "forged"})
    assert status == 403


def test_hold_reason_needed_for_on_hold(sn: SN, sim: InThreadSimulator) -> None:
    record = sn.create(short_description="h")
    status, _h, payload = sn.raw("PATCH", f"/api/now/table/incident/{record['sys_id']}", body={"state": "3"})
    assert status == 403 and envelope(payload) == ("Operation Failed", "Data Policy Exception: The following fields are mandatory: On hold reason")
    held = sn.update(record["sys_id"], state="3", hold_reason="4")
    assert (held["state"], held["hold_reason"], held["incident_state"]) == ("3", "4", "3")
    assert sn.update(record["sys_id"], state="2")["hold_reason"] == ""
    sim.set_config(require_hold_reason=False)
    assert sn.update(record["sys_id"], state="3")["state"] == "3"


def test_close_fields_mandatory_to_resolve_and_close(sn: SN, sim: InThreadSimulator) -> None:
    record = sn.create(short_description="c", state="2")
    for state in ("6", "7"):
        status, _h, payload = sn.raw("PATCH", f"/api/now/table/incident/{record['sys_id']}", body={"state": state, "close_code": "Duplicate"})
        assert status == 403
        assert envelope(payload) == ("Operation Failed", "Data Policy Exception: The following fields are mandatory: Resolution notes")
    status, _h, payload = sn.raw("POST", "/api/now/table/incident", body={"short_description": "born resolved", "state": "6"})
    assert status == 403
    assert envelope(payload)[1] == "Data Policy Exception: The following fields are mandatory: Resolution code, Resolution notes"
    assert sn.call("GET", f"/api/now/table/incident/{record['sys_id']}")["result"]["state"] == "2"  # a refused write changes nothing
    assert len(sn.list("incident")) == 1 and sn.create(short_description="next")["number"] == "INC0010002"
    sim.set_config(require_close_fields=False)
    assert sn.update(record["sys_id"], state="6")["state"] == "6"


def test_resolve_close_reopen_and_closed_is_read_only(sn: SN, sim: InThreadSimulator) -> None:
    bot_id = stable_sys_id("sys_user", "itsm.bot")
    record = sn.create(short_description="lifecycle", state="2")
    resolved = sn.update(record["sys_id"], state="6", close_code="Solution provided", close_notes="fixed", work_notes="resolved")
    assert (resolved["state"], resolved["active"], resolved["resolved_by"]["value"]) == ("6", "true", bot_id)
    assert resolved["resolved_at"] and resolved["closed_at"] == ""
    reopened = sn.update(record["sys_id"], state="2")
    assert (reopened["reopen_count"], reopened["resolved_at"], reopened["resolved_by"]) == ("1", "", "")
    sn.update(record["sys_id"], state="6")  # the close fields are still set
    closed = sn.update(record["sys_id"], state="7")
    assert (closed["state"], closed["active"], closed["closed_by"]["value"]) == ("7", "false", bot_id)
    status, _h, payload = sn.raw("PATCH", f"/api/now/table/incident/{record['sys_id']}", body={"work_notes": "late"})
    assert status == 403 and envelope(payload)[1] == "ACL Exception Update Failed due to security constraints"
    admin = SN(sim, auth=ADMIN)
    assert admin.update(record["sys_id"], description="admin may")["description"] == "admin may"
    canceled = sn.create(short_description="cancel", state="8")
    assert canceled["active"] == "false"


def test_problem_and_change_request_rules(sn: SN) -> None:
    problem = sn.create("problem", short_description="root cause", state="103")
    status, _h, payload = sn.raw("PATCH", f"/api/now/table/problem/{problem['sys_id']}", body={"state": "106"})
    assert status == 403 and envelope(payload)[1].endswith("mandatory: Resolution code")
    fixed = sn.update(problem["sys_id"], "problem", state="106", resolution_code="fix_applied", fix_notes="patched")
    assert (fixed["state"], fixed["problem_state"], fixed["active"]) == ("106", "106", "true") and fixed["resolved_at"]
    closed = sn.update(problem["sys_id"], "problem", state="107")
    assert (closed["active"], bool(closed["closed_at"])) == ("false", True)
    incident = sn.create(short_description="linked", problem_id=problem["sys_id"])
    assert incident["problem_id"]["value"] == problem["sys_id"]

    assert sn.create("problem", short_description="any state goes without the state model", state="104")["state"] == "104"

    change = sn.create("change_request", short_description="patch kernel")
    assert (change["state"], change["type"], change["approval"], change["risk"]) == ("-5", "normal", "not requested", "3")
    status, _h, payload = sn.raw("PATCH", f"/api/now/table/change_request/{change['sys_id']}", body={"state": "-4"})
    assert status == 403 and envelope(payload)[1].endswith("mandatory: Assignment group")
    sn.update(change["sys_id"], "change_request", state="-4", assignment_group=PLATFORM)
    status, _h, payload = sn.raw("PATCH", f"/api/now/table/change_request/{change['sys_id']}", body={"state": "3"})
    assert envelope(payload)[1].endswith("mandatory: Close code, Close notes")
    done = sn.update(change["sys_id"], "change_request", state="3", close_code="successful", close_notes="done")
    assert (done["active"], bool(done["closed_at"])) == ("false", True)
    shown = sn.call("GET", f"/api/now/table/change_request/{change['sys_id']}", {"sysparm_display_value": "true", "sysparm_fields": "state,type"})
    assert shown["result"] == {"state": "Closed", "type": "Normal"}


def test_problem_state_model_when_enforced(sn: SN, sim: InThreadSimulator) -> None:
    sim.set_config(problem_state_model=True)
    status, _h, payload = sn.raw("POST", "/api/now/table/problem", body={"short_description": "p", "state": "104"})
    assert status == 403 and envelope(payload)[1].startswith("Invalid state transition: (none) to Fix in Progress")
    problem = sn.create("problem", short_description="p")
    status, _h, payload = sn.raw("PATCH", f"/api/now/table/problem/{problem['sys_id']}", body={"state": "106", "resolution_code": "fix_applied"})
    assert status == 403 and envelope(payload)[1].startswith("Invalid state transition: New to Resolved")
    for state in ("102", "103", "104", "106"):
        assert sn.update(problem["sys_id"], "problem", state=state, resolution_code="fix_applied")["state"] == state
    assert sn.update(problem["sys_id"], "problem", state="107")["state"] == "107"
    assert sn.raw("PATCH", f"/api/now/table/problem/{problem['sys_id']}", body={"state": "103"})[0] == 403
    assert sn.update(problem["sys_id"], "problem", fix_notes="text fields stay writable")["fix_notes"]


# ---------------------------------------------------------------- OAuth, rate limits, faults


def token(sn: SN, form: dict[str, str], status: int = 200, json_body: bool = False) -> Any:
    body = json.dumps(form).encode() if json_body else urllib.parse.urlencode(form).encode()
    ctype = "application/json" if json_body else "application/x-www-form-urlencoded"
    got, headers, payload = SN(sn.sim, auth=None).raw("POST", "/oauth_token.do", raw_body=body, headers={"Content-Type": ctype})
    assert got == status, payload
    assert headers["content-type"].startswith("application/json")
    return json.loads(payload)


CLIENT = {"client_id": "labops", "client_secret": "client-secret"}


def test_oauth_password_grant_expiry_and_refresh(sn: SN, sim: InThreadSimulator) -> None:
    issued = token(sn, dict(grant_type="password", username="itsm.bot", password="bot-pw", **CLIENT))
    assert set(issued) == {"access_token", "refresh_token", "scope", "token_type", "expires_in"}
    assert (issued["token_type"], issued["expires_in"], issued["scope"]) == ("Bearer", 1799, "useraccount")
    bearer = SN(sim, auth=None, headers={"Authorization": f"Bearer {issued['access_token']}"})
    assert bearer.create(short_description="by token")["sys_created_by"] == "itsm.bot"
    sim.advance_clock(1800)
    status, _h, payload = bearer.raw("GET", "/api/now/table/incident")
    assert status == 401 and envelope(payload) == ("User Not Authenticated", "Required to provide Auth information")
    refreshed = token(sn, dict(grant_type="refresh_token", refresh_token=issued["refresh_token"], **CLIENT))
    assert refreshed["access_token"] != issued["access_token"]
    bearer.headers["Authorization"] = f"Bearer {refreshed['access_token']}"
    assert len(bearer.list("incident")) == 1
    sim.advance_clock(8640000)
    assert token(sn, dict(grant_type="refresh_token", refresh_token=issued["refresh_token"], **CLIENT), 401) == \
        {"error": "server_error", "error_description": "access_denied"}
    assert sim.state()["tokens_issued"] == 2


def test_oauth_client_credentials_and_refusals(sn: SN) -> None:
    issued = token(sn, dict(grant_type="client_credentials", **CLIENT))
    assert "refresh_token" not in issued
    denied = {"error": "server_error", "error_description": "access_denied"}
    assert token(sn, dict(grant_type="client_credentials", client_id="labops", client_secret="wrong"), 401) == denied
    assert token(sn, dict(grant_type="password", username="itsm.bot", password="wrong", **CLIENT), 401) == denied
    assert token(sn, dict(grant_type="client_credentials", **CLIENT), 401, json_body=True) == denied
    assert token(sn, dict(grant_type="implicit", **CLIENT), 400)["error"] == "unsupported_grant_type"
    assert token(sn, dict(grant_type="refresh_token", refresh_token="unknown", **CLIENT), 401) == denied


def test_auth_expiry_fault_drops_access_tokens(sn: SN, sim: InThreadSimulator) -> None:
    issued = token(sn, dict(grant_type="password", username="itsm.bot", password="bot-pw", **CLIENT))
    bearer = SN(sim, auth=None, headers={"Authorization": f"Bearer {issued['access_token']}"})
    sim.inject(kind="auth_expiry", count=1, operations=["GET incident"])
    assert bearer.raw("GET", "/api/now/table/incident")[0] == 401
    assert token(sn, dict(grant_type="refresh_token", refresh_token=issued["refresh_token"], **CLIENT))["access_token"]


def test_rate_limit_429_with_retry_after(sn: SN, sim: InThreadSimulator) -> None:
    sim.set_config(rate_limit={"limit": 2, "window": 3600, "users": ["itsm.bot"]})
    for _attempt in range(2):
        status, headers, _p = sn.raw("GET", "/api/now/table/incident")
        assert status == 200 and headers["x-ratelimit-limit"] == "2" and "x-ratelimit-rule" in headers
    status, headers, payload = sn.raw("GET", "/api/now/table/incident")
    assert status == 429
    message, _detail = envelope(payload)
    assert "2 requests per 3600 seconds" in message
    retry = int(headers["retry-after"])
    assert 0 < retry <= 3600 and int(headers["x-ratelimit-reset"]) > 0
    assert SN(sim, auth=ADMIN).raw("GET", "/api/now/table/incident")[0] == 200  # the rule names only itsm.bot
    sim.advance_clock(retry)
    assert sn.raw("GET", "/api/now/table/incident")[0] == 200


def test_fault_injection_by_operation_name(sn: SN, sim: InThreadSimulator) -> None:
    sim.inject(kind="http_status", status=503, count=1, operations=["POST incident"])
    status, _h, _p = sn.raw("POST", "/api/now/table/incident", body={"short_description": "x"})
    assert status == 503 and sn.list("incident") == []
    sim.inject(kind="http_status", status=429, retry_after=3, count=1, operations=["GET incident"])
    status, headers, _p = sn.raw("GET", "/api/now/table/incident")
    assert (status, headers["retry-after"]) == (429, "3")
    sim.inject(kind="drop", after_apply=True, count=1, operations=["POST incident"])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        sn.raw("POST", "/api/now/table/incident", body={"short_description": "ambiguous"})
    assert [r["short_description"] for r in sn.list("incident")] == ["ambiguous"]  # applied, reply lost
    sim.inject(kind="http_status", status=500, count=1, operations=["incident"])  # a table name matches every method
    assert sn.raw("GET", "/api/now/table/incident")[0] == 500
    counts = sim.operation_counts()
    assert counts["POST incident"] == 2 and counts["GET incident"] == 4


def test_attachments(sn: SN, sim: InThreadSimulator) -> None:
    record = sn.create(short_description="with evidence")
    content = b"node pve01 kernel log\n" * 50
    params = {"table_name": "incident", "table_sys_id": record["sys_id"], "file_name": "kern.log"}
    meta = sn.call("POST", "/api/now/attachment/file", params, raw_body=content, headers={"Content-Type": "text/plain"}, status=201)["result"]
    assert all_strings(meta) and meta["size_bytes"] == str(len(content)) and meta["content_type"] == "text/plain"
    assert meta["hash"] == hashlib.sha256(content).hexdigest() and meta["table_sys_id"] == record["sys_id"]
    status, headers, payload = sn.raw("GET", "/api/now/attachment", {"sysparm_query": f"table_sys_id={record['sys_id']}"})
    assert status == 200 and headers["x-total-count"] == "1" and json.loads(payload)["result"][0]["file_name"] == "kern.log"
    status, headers, payload = sn.raw("GET", urllib.parse.urlsplit(meta["download_link"]).path)
    assert (status, payload, headers["content-type"]) == (200, content, "text/plain")
    assert sn.call("GET", f"/api/now/attachment/{meta['sys_id']}")["result"]["file_name"] == "kern.log"
    status, _h, payload = sn.raw("POST", "/api/now/attachment/file", dict(params, table_sys_id="0" * 32), raw_body=b"x")
    assert status == 404
    status, _h, payload = sn.raw("POST", "/api/now/attachment/file", {"table_name": "incident", "file_name": "x"}, raw_body=b"x")
    assert status == 400 and envelope(payload)[0] == "Missing parameter: table_sys_id"
    assert SN(sim, auth=("viewer", "view-pw")).raw("DELETE", f"/api/now/attachment/{meta['sys_id']}")[0] == 403
    assert sn.raw("DELETE", f"/api/now/attachment/{meta['sys_id']}")[0] == 204
    assert sn.raw("GET", f"/api/now/attachment/{meta['sys_id']}/file")[0] == 404
    assert sim.operation_counts()["GET attachment"] == 4


def test_seed_and_state_control_api(sn: SN, sim: InThreadSimulator) -> None:
    rows = sim.seed("cmdb_ci", [{"name": "db-01", "support_group": STORAGE}])
    assert rows[0]["name"] == "db-01" and len(rows[0]["sys_id"]) == 32
    assert [r["name"] for r in sn.list("cmdb_ci", name="db-01")] == ["db-01"]
    state = sim.state()
    assert {r["name"] for r in state["tables"]["sys_user_group"]} == {"Infrastructure", "Platform", "Storage", "Service Desk", "Network"}
    assert {r["user_name"] for r in state["tables"]["sys_user"]} >= {"admin", "itsm.bot", "monitoring", "viewer"}
    assert len(state["tables"]["cmdb_ci"]) == 11
    sim.reset()
    assert sn.list("cmdb_ci", name="db-01") == []


def test_query_parser_units() -> None:
    assert split_terms("a=1^^2^b=3") == ["a=1^2", "b=3"]
    query = parse("a=1^ORb!=2^ORDERBYDESCc^NQdLIKEx^EQ")
    assert [[[(t.field, t.op, t.value) for t in group] for group in block] for block in query.blocks] == [
        [[("a", "=", "1"), ("b", "!=", "2")]], [[("d", "LIKE", "x")]]]
    assert query.order == [("c", True)]
    assert parse("stateNOT IN1,2").blocks[0][0][0].op == "NOT IN"


def test_fields_and_display_on_write_responses(sn: SN) -> None:
    params = {"sysparm_fields": "number,state,assignment_group", "sysparm_display_value": "true", "sysparm_exclude_reference_link": "true"}
    created = sn.create(params=params, short_description="shaped", state="2", assignment_group=PLATFORM)
    assert created == {"number": "INC0010001", "state": "In Progress", "assignment_group": "Platform"}


def test_print_config_is_the_default_config(capsys: pytest.CaptureFixture[str]) -> None:
    from simulators import servicenow  # pylint: disable=import-outside-toplevel

    assert servicenow.main(["--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["users"]["itsm.bot"]["roles"] == ["itil"] and printed["require_close_fields"] is True and printed["rate_limit"] is None


def test_subprocess_simulator_persists_state(tmp_path: Any) -> None:
    state_file = tmp_path / "sn.json"
    with start_simulator("servicenow", {"state_file": str(state_file), "token_lifetime": 60}) as proc:
        client = SN(proc)
        created = client.create(short_description="persisted", work_notes="kept")
        assert proc.health()["simulator"] == "servicenow"
    assert state_file.exists()
    with start_simulator("servicenow", {"state_file": str(state_file)}) as proc:
        client = SN(proc)
        again = client.call("GET", f"/api/now/table/incident/{created['sys_id']}", {"sysparm_display_value": "true"})["result"]
        assert again["number"] == "INC0010001" and again["work_notes"].endswith("(Work notes)\nkept\n\n")
        assert client.create(short_description="next")["number"] == "INC0010002"
