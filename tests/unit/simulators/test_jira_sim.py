"""The Jira simulator (Cloud v3/v2 and Data Center v2) against contracts/jira.md, over real HTTP (no mocks)."""
from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from simulators.harness import InThreadSimulator, SimulatorError, start_in_thread, start_simulator
from simulators.jira_adf import AdfError, validate
from simulators.jira_jql import JqlError, parse

BOT = ("bot@example.com", "jira-api-token")
ADMIN = ("admin@example.com", "admin-token")
DC_BOT = ("itsm.bot", "bot-pw")


def doc(*texts: str) -> dict[str, Any]:
    return {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": t}]} for t in texts]}


class Jira:
    """A tiny Jira REST client: Basic auth by default, or any headers (Bearer PAT)."""

    def __init__(self, sim: Any, auth: tuple[str, str] | None = BOT, headers: dict[str, str] | None = None, api: str = "3") -> None:
        self.sim = sim
        self.auth = auth
        self.headers = headers or {}
        self.api = api

    def raw(self, method: str, path: str, body: Any = None, params: Any = None, *, raw_body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        url = urllib.parse.urlsplit(self.sim.url)
        target = path if path.startswith("/rest/") else f"/rest/api/{self.api}{path}"
        if params:
            target += "?" + (params if isinstance(params, str) else urllib.parse.urlencode(params))
        data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Accept": "application/json"}
        if data is not None:
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

    def call(self, method: str, path: str, body: Any = None, params: Any = None, status: int = 200, **kw: Any) -> Any:
        got, _headers, payload = self.raw(method, path, body, params, **kw)
        assert got == status, (got, payload)
        return json.loads(payload) if payload else None

    def error(self, method: str, path: str, body: Any = None, params: Any = None, status: int = 400) -> dict[str, Any]:
        data = self.call(method, path, body, params, status=status)
        assert set(data) == {"errorMessages", "errors"}, data
        return data

    def create(self, summary: str = "HostDown pve-node-03", **fields: Any) -> dict[str, Any]:
        body = {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": summary}
        body.update(fields)
        return self.call("POST", "/issue", {"fields": body}, status=201)

    def get(self, key: str, **params: Any) -> dict[str, Any]:
        return self.call("GET", f"/issue/{key}", params=params or None)

    def search(self, jql: str, **body: Any) -> dict[str, Any]:
        return self.call("POST", "/search/jql", dict(body, jql=jql))

    def keys(self, jql: str, **body: Any) -> list[str]:
        return [i["key"] for i in self.search(jql, fields=["summary"], **body)["issues"]]

    def transition(self, key: str, tid: str, status: int = 204, **body: Any) -> Any:
        return self.call("POST", f"/issue/{key}/transitions", dict(body, transition={"id": tid}), status=status)


@pytest.fixture(scope="module")
def sim() -> Iterator[InThreadSimulator]:
    server = start_in_thread("jira", {"max_results_cap": 100})
    yield server
    server.stop()


@pytest.fixture()
def jira(sim: InThreadSimulator) -> Jira:
    sim.reset()
    return Jira(sim)


@pytest.fixture()
def dc(sim: InThreadSimulator) -> Jira:
    sim.reset()
    sim.set_config(mode="datacenter")
    return Jira(sim, auth=DC_BOT, api="2")


# ---------------------------------------------------------------- authentication, paths, reference data


def test_cloud_basic_auth_with_api_token_and_plain_text_401(jira: Jira, sim: InThreadSimulator) -> None:
    me = jira.call("GET", "/myself")
    assert me["accountId"] == "5b10a2844c20165700ede21g" and me["displayName"] == "Alert Bot" and "name" not in me
    assert jira.raw("GET", "/myself")[1]["x-aaccountid"] == "5b10a2844c20165700ede21g"
    assert Jira(sim, auth=("BOT@example.com", "jira-api-token")).raw("GET", "/myself")[0] == 200  # the email is case-insensitive
    for auth in [None, ("bot@example.com", "bot-pw"), ("bot@example.com", "wrong"), ("itsm.bot", "bot-pw")]:
        status, headers, payload = Jira(sim, auth=auth).raw("GET", "/myself")
        assert status == 401 and headers["content-type"].startswith("text/plain")
        assert payload == b"Client must be authenticated to access this resource."
    status, _h, _p = Jira(sim, auth=None, headers={"Authorization": "Bearer jira-pat-123"}).raw("GET", "/myself")
    assert status == 401  # no personal access tokens on Cloud


def test_server_info_anonymous_and_deployment_type(jira: Jira, sim: InThreadSimulator) -> None:
    info = Jira(sim, auth=None).call("GET", "/rest/api/2/serverInfo")
    assert info["deploymentType"] == "Cloud"
    sim.set_config(mode="datacenter")
    assert Jira(sim, auth=None).call("GET", "/rest/api/2/serverInfo")["deploymentType"] == "DataCenter"
    sim.set_config(dc_deployment_type="Server")  # an older server install answers "Server"
    assert Jira(sim, auth=None).call("GET", "/rest/api/latest/serverInfo")["deploymentType"] == "Server"


def test_reference_data_endpoints(jira: Jira) -> None:
    assert [(p["id"], p["name"]) for p in jira.call("GET", "/priority")] == [
        ("1", "Highest"), ("2", "High"), ("3", "Medium"), ("4", "Low"), ("5", "Lowest")]
    assert [r["name"] for r in jira.call("GET", "/resolution")] == ["Done", "Won't Do", "Duplicate", "Cannot Reproduce"]
    fields = {f["id"]: f for f in jira.call("GET", "/field")}
    assert fields["customfield_10050"]["custom"] and fields["customfield_10050"]["name"] == "Affected host"
    assert fields["customfield_10052"]["schema"]["type"] == "option" and not fields["summary"]["custom"]
    project = jira.call("GET", "/project/OPS")
    assert project["id"] == "10000" and [t["name"] for t in project["issueTypes"]] == ["Incident", "Problem", "Change", "Task"]
    assert [c["name"] for c in project["components"]] == ["Virtualisation", "Storage", "Network", "Platform"]
    assert jira.error("GET", "/project/NOPE", status=404)["errorMessages"] == ["No project could be found with key 'NOPE'."]
    assert {t["name"] for t in jira.call("GET", "/issueLinkType")["issueLinkTypes"]} >= {"Blocks", "Relates", "Duplicate"}


def test_unknown_resource_is_404_and_wrong_method_405(jira: Jira) -> None:
    status, _h, payload = jira.raw("GET", "/nothing/here")
    assert status == 404 and json.loads(payload)["status-code"] == 404
    assert jira.raw("PATCH", "/issue/OPS-1")[0] == 405


# ---------------------------------------------------------------- create / get / edit / delete and field rules


def test_create_get_round_trip_v3(jira: Jira) -> None:
    created = jira.create(description=doc("Node unreachable."), priority={"name": "High"}, labels=["alertmanager", "am-3f9c"],
                          components=[{"name": "Virtualisation"}], customfield_10050="pve-node-03",
                          customfield_10052={"value": "prod"})
    assert created["key"] == "OPS-1" and created["id"].isdigit() and created["self"].endswith(f"/rest/api/3/issue/{created['id']}")
    assert jira.create("second")["key"] == "OPS-2"
    issue = jira.get("OPS-1")
    fields = issue["fields"]
    assert issue["id"] == created["id"]
    assert fields["summary"] == "HostDown pve-node-03" and fields["description"] == doc("Node unreachable.")
    assert fields["status"]["name"] == "To Do" and fields["status"]["statusCategory"]["key"] == "new"
    assert fields["resolution"] is None and fields["resolutiondate"] is None
    assert fields["priority"] == {"self": fields["priority"]["self"], "iconUrl": fields["priority"]["iconUrl"], "name": "High", "id": "2"}
    assert fields["labels"] == ["alertmanager", "am-3f9c"]
    assert [c["name"] for c in fields["components"]] == ["Virtualisation"]
    assert fields["customfield_10050"] == "pve-node-03" and fields["customfield_10052"]["value"] == "prod"
    assert fields["reporter"]["accountId"] == "5b10a2844c20165700ede21g"
    assert fields["comment"] == {"comments": [], "self": fields["comment"]["self"], "maxResults": 0, "total": 0, "startAt": 0}
    assert len(fields["created"]) == len("2026-05-04T10:15:30.000+0000") and fields["created"].endswith("+0000")
    # by id, lower-case key, a field selection
    assert jira.get(created["id"])["key"] == "OPS-1" and jira.get("ops-1")["key"] == "OPS-1"
    assert set(jira.get("OPS-1", fields="summary,status")["fields"]) == {"summary", "status"}
    assert jira.get("OPS-2")["fields"]["priority"]["name"] == "Medium"  # the default priority


def test_v2_path_on_cloud_speaks_strings(jira: Jira, sim: InThreadSimulator) -> None:
    v2 = Jira(sim, api="2")
    v2.call("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "s",
                                          "description": "h3. Alert\nNode down"}}, status=201)
    assert v2.get("OPS-1")["fields"]["description"] == "h3. Alert\nNode down"
    v3 = jira.get("OPS-1")["fields"]["description"]
    validate(v3)
    assert v3["content"][0]["content"][0] == {"type": "text", "text": "h3. Alert"}
    jira.create("adf", description=doc("para one", "para two"))
    assert v2.get("OPS-2")["fields"]["description"] == "para one\n\npara two"
    err = v2.error("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "s",
                                                 "description": doc("x")}})
    assert err["errors"] == {"description": "Operation value must be a string"}


@pytest.mark.parametrize(("fields", "errors"), [
    ({"summary": ""}, {"summary": "You must specify a summary of the issue."}),
    ({"summary": "x" * 256}, {"summary": "Summary must be less than 255 characters."}),
    ({"summary": "two\nlines"}, {"summary": "The summary is invalid because it contains newline characters."}),
    ({"description": "plain text"}, {"description": "Operation value must be an Atlassian Document (see the Atlassian Document Format)"}),
    ({"labels": ["a b"]}, {"labels": "The label 'a b' contains spaces which is invalid."}),
    ({"labels": ["x" * 256]}, {"labels": f"The label '{'x' * 256}' exceeds the maximum length for a single label of 255 characters."}),
    ({"priority": {"name": "Urgent"}}, {"priority": "The priority selected is invalid."}),
    ({"components": ["Storage"]}, {"components": "expected Object containing a 'name' or 'id' property"}),
    ({"components": [{"name": "Core"}]}, {"components": "Component name 'Core' is not valid"}),
    ({"customfield_10099": "x"}, {"customfield_10099": "Field 'customfield_10099' cannot be set. It is not on the appropriate screen, or unknown."}),
    ({"resolution": {"name": "Done"}}, {"resolution": "Field 'resolution' cannot be set. It is not on the appropriate screen, or unknown."}),
    ({"customfield_10052": {"value": "dev"}}, {"customfield_10052": "Option value 'dev' is not valid"}),
    ({"customfield_10050": {"value": "x"}}, {"customfield_10050": "Operation value must be a string"}),
    ({"assignee": {"name": "itsm.bot"}}, {"assignee": "The query parameter 'username' or 'name' is not supported in Jira Cloud. "
                                                      "Use 'accountId' to identify the user."}),
])
def test_create_field_rules(jira: Jira, fields: dict[str, Any], errors: dict[str, str]) -> None:
    body = {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "ok"}
    body.update(fields)
    assert jira.error("POST", "/issue", {"fields": body}) == {"errorMessages": [], "errors": errors}
    assert jira.sim.state()["issues"] == {}


def test_create_project_and_issuetype_rules(jira: Jira) -> None:
    err = jira.error("POST", "/issue", {"fields": {"summary": "x", "issuetype": {"name": "Incident"}}})
    assert err["errors"]["project"] == "valid project is required"
    err = jira.error("POST", "/issue", {"fields": {"project": {"key": "NOPE"}, "summary": "x", "issuetype": {"name": "Incident"}}})
    assert err["errors"]["project"] == "Specify a valid project ID or key"
    err = jira.error("POST", "/issue", {"fields": {"project": "OPS", "summary": "x", "issuetype": {"name": "Incident"}}})
    assert err["errors"] == {"project": "Specify a valid project ID or key"}  # an object, not a string
    err = jira.error("POST", "/issue", {"fields": {"project": {"id": "10000"}, "summary": "x", "issuetype": {"name": "Epic"}}})
    assert err["errors"] == {"issuetype": "The issue type selected is invalid."}
    err = jira.error("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}}})
    assert err["errors"] == {"summary": "You must specify a summary of the issue."}


def test_errors_from_several_fields_come_together(jira: Jira) -> None:
    err = jira.error("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "x",
                                                   "labels": ["a b"], "priority": {"name": "P1"}, "foo": 1}})
    assert set(err["errors"]) == {"labels", "priority", "foo"}


def test_labels_are_deduplicated_and_case_preserved(jira: Jira) -> None:
    jira.create(labels=["b", "Am-1", "b"])
    assert jira.get("OPS-1")["fields"]["labels"] == ["Am-1", "b"]
    assert jira.keys('labels = "am-1"') == ["OPS-1"]


def test_summary_of_255_characters_is_accepted(jira: Jira) -> None:
    jira.create("x" * 255)
    assert len(jira.get("OPS-1")["fields"]["summary"]) == 255


def test_edit_fields_update_and_conflicts(jira: Jira) -> None:
    jira.create(labels=["flapping"])
    before = jira.get("OPS-1")["fields"]["updated"]
    time.sleep(0.002)
    edit = {"fields": {"summary": "[FIRING:3] HostDown", "priority": {"name": "Highest"}},
            "update": {"labels": [{"add": "reopened"}, {"remove": "flapping"}]}}
    assert jira.call("PUT", "/issue/OPS-1", edit, status=204) is None
    fields = jira.get("OPS-1")["fields"]
    assert fields["summary"] == "[FIRING:3] HostDown" and fields["priority"]["name"] == "Highest" and fields["labels"] == ["reopened"]
    assert fields["updated"] > before and fields["status"]["name"] == "To Do"
    err = jira.error("PUT", "/issue/OPS-1", {"fields": {"labels": ["a"]}, "update": {"labels": [{"add": "b"}]}})
    assert list(err["errors"]) == ["labels"]
    assert jira.error("PUT", "/issue/OPS-1", {"fields": {"status": {"name": "Done"}}})["errors"]["status"].startswith("Field 'status' cannot be set")
    assert jira.error("PUT", "/issue/OPS-1", {"fields": {"customfield_10099": "x"}})["errors"] == {
        "customfield_10099": "Field 'customfield_10099' cannot be set. It is not on the appropriate screen, or unknown."}
    returned = jira.call("PUT", "/issue/OPS-1", {"fields": {"summary": "again"}}, params={"returnIssue": "true"})
    assert returned["fields"]["summary"] == "again"
    assert jira.error("PUT", "/issue/OPS-9", {"fields": {"summary": "x"}}, status=404)["errorMessages"] == [
        "Issue does not exist or you do not have permission to see it."]


def test_edit_that_changes_nothing_keeps_updated(jira: Jira) -> None:
    jira.create(labels=["a"])
    before = jira.get("OPS-1")["fields"]["updated"]
    time.sleep(0.002)
    jira.call("PUT", "/issue/OPS-1", {"fields": {"labels": ["a"]}}, status=204)
    assert jira.get("OPS-1")["fields"]["updated"] == before


def test_delete_issue(jira: Jira) -> None:
    jira.create()
    assert jira.call("DELETE", "/issue/OPS-1", status=204) is None
    assert jira.error("GET", "/issue/OPS-1", status=404)["errorMessages"] == ["Issue does not exist or you do not have permission to see it."]
    assert jira.create()["key"] == "OPS-2"  # keys are never reused


def test_non_json_bodies(jira: Jira) -> None:
    status, _h, _p = jira.raw("POST", "/issue", raw_body=b"summary=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403
    status, _h, payload = jira.raw("POST", "/issue", raw_body=b"{not json", headers={"Content-Type": "application/json"})
    assert status == 400 and json.loads(payload)["errorMessages"]


# ---------------------------------------------------------------- ADF validation (§6)


@pytest.mark.parametrize("bad", [
    {"type": "doc", "content": []},
    {"type": "doc", "version": 2, "content": []},
    {"version": 1, "type": "paragraph", "content": []},
    {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}]},
    {"type": "doc", "version": 1, "content": [{"type": "text", "text": "inline at top level"}]},
    {"type": "doc", "version": 1, "content": [{"type": "heading", "attrs": {"level": 7}, "content": []}]},
    {"type": "doc", "version": 1, "content": [{"type": "heading", "content": [{"type": "text", "text": "x"}]}]},
    {"type": "doc", "version": 1, "content": [{"type": "bulletList", "content": [{"type": "paragraph", "content": []}]}]},
    {"type": "doc", "version": 1, "content": [{"type": "bulletList", "content": []}]},
    {"type": "doc", "version": 1, "content": [{"type": "codeBlock", "content": [{"type": "text", "text": "x", "marks": [{"type": "strong"}]}]}]},
    {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "x", "marks": [{"type": "link"}]}]}]},
    {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "x", "marks": [{"type": "blink"}]}]}]},
    {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [
        {"type": "text", "text": "x", "marks": [{"type": "code"}, {"type": "strong"}]}]}]},
    {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "x"}], "text": "stray"}]},
    {"type": "doc", "version": 1, "content": [{"type": "table", "content": []}]},
])
def test_malformed_adf_is_rejected(jira: Jira, bad: dict[str, Any]) -> None:
    with pytest.raises(AdfError):
        validate(bad)
    err = jira.error("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "x",
                                                   "description": bad}})
    assert list(err["errors"]) == ["description"]
    jira.create("ok")
    err = jira.error("POST", "/issue/OPS-1/comment", {"body": bad})
    assert err["errors"] == {"comment": "Comment body is not valid!"}


def test_contract_adf_example_is_valid(jira: Jira) -> None:
    example = {"type": "doc", "version": 1, "content": [
        {"type": "heading", "attrs": {"level": 3}, "content": [{"type": "text", "text": "HostDown"}]},
        {"type": "paragraph", "content": [
            {"type": "text", "text": "Severity: "}, {"type": "text", "text": "critical", "marks": [{"type": "strong"}]},
            {"type": "hardBreak"},
            {"type": "text", "text": "Alertmanager", "marks": [{"type": "link", "attrs": {"href": "https://am.example/#/alerts"}}]}]},
        {"type": "bulletList", "content": [{"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "a"}]}]}]},
        {"type": "orderedList", "content": [{"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "b"}]}]}]},
        {"type": "rule"},
        {"type": "codeBlock", "attrs": {"language": "text"}, "content": [{"type": "text", "text": "instance=pve-node-03\njob=node"}]}]}
    jira.create(description=example)
    assert jira.get("OPS-1")["fields"]["description"] == example


def test_description_length_limit(jira: Jira) -> None:
    err = jira.error("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "x",
                                                   "description": doc("y" * 33000)}})
    assert err["errors"]["description"].startswith("The entered text is too long")


# ---------------------------------------------------------------- workflow


def test_transitions_listed_from_current_status(jira: Jira) -> None:
    jira.create()
    listed = jira.call("GET", "/issue/OPS-1/transitions")["transitions"]
    assert [(t["id"], t["name"], t["to"]["name"]) for t in listed] == [("21", "In Progress", "In Progress"), ("31", "Done", "Done")]
    assert listed[1]["to"]["statusCategory"]["key"] == "done" and listed[1]["hasScreen"] and listed[1]["isGlobal"]
    expanded = jira.call("GET", "/issue/OPS-1/transitions", params={"expand": "transitions.fields"})["transitions"]
    assert [v["name"] for v in expanded[1]["fields"]["resolution"]["allowedValues"]] == ["Done", "Won't Do", "Duplicate", "Cannot Reproduce"]
    assert expanded[0]["fields"] == {}


def test_done_sets_resolution_and_reopen_clears_it(jira: Jira) -> None:
    jira.create()
    jira.transition("OPS-1", "21")
    jira.transition("OPS-1", "31", update={"comment": [{"add": {"body": doc("Alert resolved at 11:02 UTC.")}}]})
    fields = jira.get("OPS-1")["fields"]
    assert fields["status"]["name"] == "Done" and fields["resolution"]["name"] == "Done" and fields["resolutiondate"]
    assert fields["comment"]["comments"][0]["body"] == doc("Alert resolved at 11:02 UTC.")
    assert [t["id"] for t in jira.call("GET", "/issue/OPS-1/transitions")["transitions"]] == ["11", "21", "41"]
    jira.transition("OPS-1", "41")
    fields = jira.get("OPS-1")["fields"]
    assert fields["status"]["name"] == "To Do" and fields["resolution"] is None and fields["resolutiondate"] is None
    jira.transition("OPS-1", "31", fields={"resolution": {"name": "Won't Do"}})
    assert jira.get("OPS-1")["fields"]["resolution"]["name"] == "Won't Do"


def test_transition_rejections(jira: Jira) -> None:
    jira.create()
    assert jira.transition("OPS-1", "99", status=400) == {"errorMessages": ["Transition id '99' is not valid for this issue."], "errors": {}}
    assert jira.transition("OPS-1", "41", status=400)["errorMessages"] == ["Transition id '41' is not valid for this issue."]  # Reopen from To Do
    err = jira.transition("OPS-1", "21", status=400, fields={"resolution": {"name": "Done"}})
    assert err["errors"] == {"resolution": "Field 'resolution' cannot be set. It is not on the appropriate screen, or unknown."}
    err = jira.transition("OPS-1", "31", status=400, fields={"resolution": {"name": "Fixed"}})
    assert list(err["errors"]) == ["resolution"]
    err = jira.transition("OPS-1", "31", status=400, fields={"summary": "x"})
    assert err["errors"]["summary"].startswith("Field 'summary' cannot be set")
    assert jira.get("OPS-1")["fields"]["status"]["name"] == "To Do"
    assert jira.error("POST", "/issue/OPS-1/transitions", {"fields": {}})["errorMessages"]


def test_custom_workflow_from_config(sim: InThreadSimulator, jira: Jira) -> None:
    sim.set_config(workflow={"statuses": {"Open": "new", "Triage": "indeterminate", "Closed": "done"}, "initial": "Open",
                             "transitions": [{"id": "5", "name": "Start triage", "from": ["Open"], "to": "Triage"},
                                             {"id": "6", "name": "Close", "from": ["Triage"], "to": "Closed", "screen": ["resolution"]}]})
    jira.create()
    assert [t["id"] for t in jira.call("GET", "/issue/OPS-1/transitions")["transitions"]] == ["5"]
    jira.transition("OPS-1", "6", status=400)
    jira.transition("OPS-1", "5")
    jira.transition("OPS-1", "6", fields={"resolution": {"name": "Duplicate"}})
    fields = jira.get("OPS-1")["fields"]
    assert (fields["status"]["name"], fields["resolution"]["name"]) == ("Closed", "Duplicate")
    assert jira.call("GET", "/issue/OPS-1/transitions")["transitions"] == []


# ---------------------------------------------------------------- comments


def test_comments_post_get_paged(jira: Jira) -> None:
    jira.create()
    for n in range(3):
        created = jira.call("POST", "/issue/OPS-1/comment", {"body": doc(f"Still firing ({n})")}, status=201)
        assert created["author"]["accountId"] == "5b10a2844c20165700ede21g" and created["body"] == doc(f"Still firing ({n})")
    page = jira.call("GET", "/issue/OPS-1/comment", params={"startAt": 1, "maxResults": 1})
    assert (page["startAt"], page["maxResults"], page["total"]) == (1, 1, 3)
    assert page["comments"][0]["body"] == doc("Still firing (1)")
    assert jira.get("OPS-1")["fields"]["comment"]["total"] == 3


@pytest.mark.parametrize(("body", "errors"), [
    ({"body": "string on v3"}, {"comment": "Comment body is not valid!"}),
    ({"body": {"type": "doc", "version": 1, "content": []}}, {"comment": "Comment body can not be empty!"}),
    ({"body": {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": []}]}}, {"comment": "Comment body can not be empty!"}),
    ({"body": doc("   ")}, {"comment": "Comment body can not be empty!"}),
    ({}, {"comment": "Comment body can not be empty!"}),
])
def test_comment_rejections(jira: Jira, body: dict[str, Any], errors: dict[str, str]) -> None:
    jira.create()
    assert jira.error("POST", "/issue/OPS-1/comment", body)["errors"] == errors


def test_comment_limit_413(sim: InThreadSimulator, jira: Jira) -> None:
    sim.set_config(max_comments=2)
    jira.create()
    for _n in range(2):
        jira.call("POST", "/issue/OPS-1/comment", {"body": doc("x")}, status=201)
    err = jira.error("POST", "/issue/OPS-1/comment", {"body": doc("x")}, status=413)
    assert err["errorMessages"] and jira.get("OPS-1")["fields"]["comment"]["total"] == 2


# ---------------------------------------------------------------- JQL


def _seed(sim: InThreadSimulator) -> None:
    sim.seed("issues", [
        {"project": "OPS", "summary": "open one", "labels": ["am-1", "alertmanager"], "created": "-3d", "components": ["Storage"]},
        {"project": "OPS", "summary": "in progress", "status": "In Progress", "labels": ["am-2"], "created": "-2d", "priority": "High"},
        {"project": "OPS", "summary": "done recently", "status": "Done", "resolutiondate": "-30m", "labels": ["am-1"], "created": "-1d"},
        {"project": "OPS", "summary": "won't do", "status": "Done", "resolution": "Won't Do", "resolutiondate": "-5d", "labels": ["am-1"],
         "created": "-6d", "issuetype": "Problem"},
        {"project": "NET", "summary": "net old done", "status": "Done", "resolutiondate": "-10d", "created": "-12d", "components": ["Core"]},
    ])


@pytest.mark.parametrize(("jql", "keys"), [
    ("project = OPS", ["OPS-1", "OPS-2", "OPS-3", "OPS-4"]),
    ("project in (NET, Operations)", ["OPS-1", "OPS-2", "OPS-3", "OPS-4", "NET-1"]),
    ('labels = "am-1"', ["OPS-1", "OPS-3", "OPS-4"]),
    ("labels in (am-2, alertmanager)", ["OPS-1", "OPS-2"]),
    ("labels != am-1", ["OPS-2"]),
    ("labels is EMPTY", ["NET-1"]),
    ("statusCategory != Done", ["OPS-1", "OPS-2"]),
    ("statusCategory = done AND project = OPS", ["OPS-3", "OPS-4"]),
    ('status = "In Progress"', ["OPS-2"]),
    ('status != "To Do"', ["OPS-2", "OPS-3", "OPS-4", "NET-1"]),
    ("resolution is EMPTY", ["OPS-1", "OPS-2"]),
    ("resolution is not EMPTY AND project = OPS", ["OPS-3", "OPS-4"]),
    ("resolution = Unresolved", ["OPS-1", "OPS-2"]),
    ('resolution != "Won\'t Do"', ["OPS-3", "NET-1"]),
    ('resolution not in ("Won\'t Do")', ["OPS-3", "NET-1"]),
    ('labels = am-1 AND (resolution is EMPTY OR resolution not in ("Won\'t Do"))', ["OPS-1", "OPS-3"]),
    ("resolutiondate >= -1h", ["OPS-3"]),
    ("resolutiondate >= -7d", ["OPS-3", "OPS-4"]),
    ("created >= -36h", ["OPS-3"]),
    ("created < -50h OR updated > -1m", ["OPS-1", "OPS-4", "NET-1"]),
    ("NOT labels = am-1", ["OPS-2", "NET-1"]),
    ("project = OPS AND NOT (status = Done)", ["OPS-1", "OPS-2"]),
    ("key = OPS-2", ["OPS-2"]),
    ("key in (OPS-1, NET-1)", ["OPS-1", "NET-1"]),
    ("issuetype = Problem", ["OPS-4"]),
    ("component = Storage", ["OPS-1"]),
    ("priority = High", ["OPS-2"]),
    ("summary ~ \"won't\"", ["OPS-4"]),
    ("project = OPS ORDER BY created DESC", ["OPS-3", "OPS-2", "OPS-1", "OPS-4"]),
    ("project = OPS ORDER BY created ASC", ["OPS-4", "OPS-1", "OPS-2", "OPS-3"]),
    ("labels = am-1 ORDER BY resolutiondate DESC", ["OPS-3", "OPS-4", "OPS-1"]),
    ("project = OPS ORDER BY status ASC, created DESC", ["OPS-1", "OPS-2", "OPS-3", "OPS-4"]),
])
def test_jql_subset(sim: InThreadSimulator, jira: Jira, jql: str, keys: list[str]) -> None:
    _seed(sim)
    assert jira.keys(jql) == keys


@pytest.mark.parametrize(("jql", "message"), [
    ("assignee = currentUser()", "Field 'assignee' does not exist or you do not have permission to view it."),
    ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
    ('status = "Closed"', "The value 'Closed' does not exist for the field 'status'."),
    ('resolution = "Fixed"', "The value 'Fixed' does not exist for the field 'resolution'."),
    ("key = OPS-999", "An issue with key 'OPS-999' does not exist for field 'key'."),
    ("labels ~ x", "The operator '~' is not supported by the 'labels' field."),
    ("project = OPS AND", "Error in the JQL Query: Expecting a field name but got the end of the query. (line 1, character 18)"),
    ("project = OPS labels = x", "Error in the JQL Query: Expecting either 'OR' or 'AND' but got 'labels'. (line 1, character 15)"),
    ("created >= startOfDay()", "Error in the JQL Query: the function 'startOfDay()' is not supported by this simulator."),
    ("created >= yesterday", "Date value 'yesterday' for field is invalid."),
    ("project = OPS ORDER BY labels", "Field 'labels' does not support sorting."),
])
def test_bad_jql_is_400(sim: InThreadSimulator, jira: Jira, jql: str, message: str) -> None:
    _seed(sim)
    err = jira.error("POST", "/search/jql", {"jql": jql})
    assert err["errorMessages"][0].startswith(message), err


@pytest.mark.parametrize("jql", ["project = OPS AND", "project = OPS labels = x", "created >= startOfDay()", "project == OPS",
                                 "labels in am-1", "status is Done", "project = OPS ORDER created", "(project = OPS", "project = %"])
def test_parser_rejects_syntax_outside_the_subset(jql: str) -> None:
    with pytest.raises(JqlError):
        parse(jql)


def test_unbounded_jql_is_400_on_cloud_only(sim: InThreadSimulator, jira: Jira) -> None:
    _seed(sim)
    for jql in ("", "ORDER BY created DESC"):
        assert jira.error("POST", "/search/jql", {"jql": jql})["errorMessages"] == [
            "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."]
    sim.set_config(mode="datacenter")
    assert Jira(sim, auth=DC_BOT, api="2").call("POST", "/search", {"jql": ""})["total"] == 5


# ---------------------------------------------------------------- enhanced search: fields, pagination, lag


def test_search_without_fields_returns_ids_only(sim: InThreadSimulator, jira: Jira) -> None:
    _seed(sim)
    result = jira.search("project = NET")
    assert result == {"issues": [{"id": sim.state()["issues"]["NET-1"]["id"]}], "isLast": True}
    issue = jira.search("project = NET", fields=["summary", "status"])["issues"][0]
    assert issue["key"] == "NET-1" and set(issue["fields"]) == {"summary", "status"}


def test_search_get_form(sim: InThreadSimulator, jira: Jira) -> None:
    _seed(sim)
    result = jira.call("GET", "/search/jql", params={"jql": "project = OPS ORDER BY created ASC", "fields": "summary,labels", "maxResults": 2})
    assert [i["key"] for i in result["issues"]] == ["OPS-4", "OPS-1"] and result["isLast"] is False
    params = {"jql": "project = OPS ORDER BY created ASC", "fields": "summary,labels", "maxResults": 2, "nextPageToken": result["nextPageToken"]}
    nxt = jira.call("GET", "/search/jql", params=params)
    assert [i["key"] for i in nxt["issues"]] == ["OPS-2", "OPS-3"] and nxt["isLast"] is True and "nextPageToken" not in nxt


def test_next_page_token_pagination(sim: InThreadSimulator, jira: Jira) -> None:
    sim.seed("issues", [{"project": "OPS", "summary": f"n{n}", "labels": ["bulk"]} for n in range(7)])
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        body: dict[str, Any] = {"fields": ["summary"], "maxResults": 3}
        if token:
            body["nextPageToken"] = token
        result = jira.search("labels = bulk ORDER BY key ASC", **body)
        pages += 1
        seen += [i["key"] for i in result["issues"]]
        assert "total" not in result and "startAt" not in result
        if result["isLast"]:
            assert "nextPageToken" not in result
            break
        token = result["nextPageToken"]
        assert isinstance(token, str) and not token.isdigit()
    assert pages == 3 and seen == [f"OPS-{n}" for n in range(1, 8)]
    # a token belongs to its query; a forged one is refused
    assert jira.error("POST", "/search/jql", {"jql": "labels = bulk", "nextPageToken": token or "x"})["errorMessages"]
    assert jira.error("POST", "/search/jql", {"jql": "labels = bulk", "nextPageToken": "garbage"})["errorMessages"]


def test_max_results_capped(sim: InThreadSimulator, jira: Jira) -> None:
    sim.set_config(max_results_cap=2)
    sim.seed("issues", [{"project": "OPS", "labels": ["cap"]} for _n in range(3)])
    result = jira.search("labels = cap", fields=["summary"], maxResults=50)
    assert len(result["issues"]) == 2 and not result["isLast"]


def test_search_lag_hides_new_and_edited_issues_unless_reconciled(sim: InThreadSimulator, jira: Jira) -> None:
    sim.set_config(search_lag=30)
    created = jira.create(labels=["am-lag"])
    # GET by key is always consistent; the enhanced search is not
    assert jira.get(created["key"])["fields"]["labels"] == ["am-lag"]
    assert jira.keys("labels = am-lag") == []
    assert jira.keys("labels = am-lag", reconcileIssues=[int(created["id"])]) == [created["key"]]
    assert sim.state()["issues"][created["key"]]["indexed"] is False
    sim.advance_clock(31)
    assert jira.keys("labels = am-lag") == [created["key"]]
    # an edit: the index keeps the old version for the lag
    jira.call("PUT", f"/issue/{created['key']}", {"update": {"labels": [{"add": "am-new"}]}}, status=204)
    assert jira.keys("labels = am-new") == [] and jira.keys("labels = am-lag") == [created["key"]]
    stale = jira.search("labels = am-lag", fields=["labels"])["issues"][0]
    assert stale["fields"]["labels"] == ["am-lag"]
    fresh = jira.search("labels = am-lag", fields=["labels"], reconcileIssues=[int(created["id"])])["issues"][0]
    assert fresh["fields"]["labels"] == ["am-lag", "am-new"]
    sim.advance_clock(31)
    assert jira.keys("labels = am-new") == [created["key"]]


def test_search_lag_applies_to_cloud_search_jql_only(sim: InThreadSimulator, dc: Jira) -> None:
    sim.set_config(search_lag=30)
    dc.call("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "s", "labels": ["x"]}},
            status=201)
    assert [i["key"] for i in dc.call("POST", "/search", {"jql": "labels = x"})["issues"]] == ["OPS-1"]


def test_reconcile_issues_limits(jira: Jira) -> None:
    assert jira.error("POST", "/search/jql", {"jql": "project = OPS", "reconcileIssues": list(range(1, 52))})["errorMessages"]
    assert jira.error("POST", "/search/jql", {"jql": "project = OPS", "reconcileIssues": ["OPS-1"]})["errorMessages"]


def test_legacy_search_is_gone_on_cloud(jira: Jira) -> None:
    for version in ("2", "3", "latest"):
        for method in ("GET", "POST"):
            status, _h, payload = jira.raw(method, f"/rest/api/{version}/search", {"jql": "project = OPS"} if method == "POST" else None)
            assert status == 410 and json.loads(payload)["errorMessages"][0].startswith("The requested API has been removed.")
    assert jira.raw("POST", "/rest/api/3/search/id", {"jql": "project = OPS"})[0] == 410
    assert jira.raw("POST", "/rest/api/2/search/jql", {"jql": "project = OPS"})[0] == 200


def test_approximate_count(sim: InThreadSimulator, jira: Jira) -> None:
    _seed(sim)
    assert jira.call("POST", "/search/approximate-count", {"jql": "labels = am-1"}) == {"count": 3}


def test_anonymous_read_trap(sim: InThreadSimulator, jira: Jira) -> None:
    _seed(sim)
    sim.set_config(anonymous_read=True)
    anon = Jira(sim, auth=None)
    assert anon.search("project = OPS") == {"issues": [], "isLast": True}
    assert anon.error("GET", "/issue/OPS-1", status=404)["errorMessages"]
    assert anon.raw("POST", "/issue", {"fields": {}})[0] == 401
    assert anon.raw("GET", "/myself")[0] == 401
    assert Jira(sim, auth=("bot@example.com", "bad")).raw("POST", "/search/jql", {"jql": "project = OPS"})[0] == 401


# ---------------------------------------------------------------- Data Center mode


def test_dc_auth_basic_and_bearer(sim: InThreadSimulator, dc: Jira) -> None:
    me = dc.call("GET", "/myself")
    assert me["name"] == "itsm.bot" and "accountId" not in me
    assert Jira(sim, auth=None, headers={"Authorization": "Bearer jira-pat-123"}, api="2").call("GET", "/myself")["name"] == "itsm.bot"
    assert Jira(sim, auth=None, headers={"Authorization": "Bearer admin-pat"}, api="latest").call("GET", "/myself")["name"] == "admin"
    for bad in (Jira(sim, auth=BOT, api="2"), Jira(sim, auth=None, headers={"Authorization": "Bearer nope"}, api="2"), Jira(sim, auth=None, api="2")):
        status, headers, payload = bad.raw("GET", "/myself")
        assert status == 401 and headers["content-type"].startswith("application/json")
        assert json.loads(payload)["errorMessages"] == ["You are not authenticated. Authentication required to perform this operation."]


def test_dc_has_v2_and_latest_only(sim: InThreadSimulator, dc: Jira) -> None:
    assert dc.raw("GET", "/rest/api/3/myself")[0] == 404
    assert dc.raw("POST", "/rest/api/2/search/jql", {"jql": "project = OPS"})[0] == 404
    assert dc.call("GET", "/rest/api/latest/serverInfo")["deploymentType"] == "DataCenter"


def test_dc_strings_users_and_search_paging(sim: InThreadSimulator, dc: Jira) -> None:
    created = dc.call("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "s",
                                                    "description": "h3. Alert\n*bold*", "assignee": {"name": "admin"}, "labels": ["am-9"]}},
                      status=201)
    fields = dc.get(created["key"])["fields"]
    assert fields["description"] == "h3. Alert\n*bold*" and fields["assignee"]["name"] == "admin"
    err = dc.error("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "s",
                                                 "assignee": {"accountId": "5b10ac8d82e05b22cc7d4ef5"}}})
    assert list(err["errors"]) == ["assignee"]
    comment = dc.call("POST", f"/issue/{created['key']}/comment", {"body": "wiki *markup*"}, status=201)
    assert comment["body"] == "wiki *markup*" and comment["author"]["name"] == "itsm.bot"
    assert dc.error("POST", f"/issue/{created['key']}/comment", {"body": doc("x")})["errors"] == {"comment": "Comment body is not valid!"}
    sim.seed("issues", [{"project": "OPS", "labels": ["am-9"]} for _n in range(4)])
    first = dc.call("POST", "/search", {"jql": "labels = am-9 ORDER BY key ASC", "startAt": 0, "maxResults": 2, "fields": ["summary"]})
    assert (first["startAt"], first["maxResults"], first["total"]) == (0, 2, 5)
    assert [i["key"] for i in first["issues"]] == ["OPS-1", "OPS-2"]
    last = dc.call("GET", "/search", params={"jql": "labels = am-9 ORDER BY key ASC", "startAt": 4, "maxResults": 2})
    assert [i["key"] for i in last["issues"]] == ["OPS-5"] and "summary" in last["issues"][0]["fields"]


def test_dc_rate_limit_headers(sim: InThreadSimulator, dc: Jira) -> None:
    sim.set_config(rate_limit={"limit": 1, "window": 60})
    status, headers, _p = dc.raw("GET", "/myself")
    assert status == 200 and headers["x-ratelimit-limit"] == "1" and headers["x-ratelimit-interval-seconds"] == "60"
    status, headers, _p = dc.raw("GET", "/myself")
    assert status == 429 and int(headers["retry-after"]) >= 1 and "ratelimit-reason" not in headers


# ---------------------------------------------------------------- rate limits and faults


def test_cloud_rate_limit_429(sim: InThreadSimulator, jira: Jira) -> None:
    sim.set_config(rate_limit={"limit": 2, "window": 60, "operations": ["GET myself"], "reason": "jira-per-issue-on-write"})
    assert jira.raw("GET", "/myself")[1]["x-ratelimit-remaining"] == "1"
    assert jira.raw("GET", "/myself")[0] == 200
    assert jira.raw("GET", "/serverInfo")[0] == 200  # not counted
    status, headers, _p = jira.raw("GET", "/myself")
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 60
    assert headers["ratelimit-reason"] == "jira-per-issue-on-write" and headers["x-ratelimit-reset"].endswith("Z")
    sim.advance_clock(61)
    assert jira.raw("GET", "/myself")[0] == 200


def test_fault_429_carries_jira_headers(sim: InThreadSimulator, jira: Jira) -> None:
    sim.inject(kind="http_status", status=429, retry_after=7, count=1, operations=["POST search"])
    status, headers, payload = jira.raw("POST", "/search/jql", {"jql": "project = OPS"})
    assert status == 429 and headers["retry-after"] == "7" and headers["ratelimit-reason"] == "jira-burst-based" and payload == b""
    assert jira.raw("POST", "/search/jql", {"jql": "project = OPS"})[0] == 200


def test_fault_409_on_edit_and_5xx(sim: InThreadSimulator, jira: Jira) -> None:
    jira.create()
    sim.inject(kind="http_status", status=409, count=1, operations=["PUT issue"])
    err = jira.error("PUT", "/issue/OPS-1", {"fields": {"summary": "x"}}, status=409)
    assert err["errorMessages"]
    jira.call("PUT", "/issue/OPS-1", {"fields": {"summary": "x"}}, status=204)
    sim.inject(kind="http_status", status=503, count=1, operations=["GET issue"])
    assert jira.raw("GET", "/issue/OPS-1")[0] == 503
    assert jira.get("OPS-1")["fields"]["summary"] == "x"


def test_create_succeeded_but_response_lost(sim: InThreadSimulator, jira: Jira) -> None:
    sim.inject(kind="drop", operations=["POST issue"], after_apply=True, count=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        jira.raw("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "lost",
                                               "labels": ["am-lost"]}})
    assert list(sim.state()["issues"]) == ["OPS-1"]
    assert jira.keys("labels = am-lost") == ["OPS-1"]
    assert sim.operation_counts() == {"POST issue": 1, "POST search": 1}


def test_slow_response(sim: InThreadSimulator, jira: Jira) -> None:
    sim.inject(kind="latency", seconds=0.3, count=1, operations=["GET serverInfo"])
    started = time.monotonic()
    jira.call("GET", "/serverInfo")
    assert time.monotonic() - started >= 0.3


def test_operation_names_in_request_log(sim: InThreadSimulator, jira: Jira) -> None:
    jira.create()
    jira.get("OPS-1")
    jira.call("GET", "/issue/OPS-1/transitions")
    jira.transition("OPS-1", "21")
    jira.call("POST", "/issue/OPS-1/comment", {"body": doc("c")}, status=201)
    jira.search("project = OPS")
    jira.call("PUT", "/issue/OPS-1/properties/labops.ims", {"a": 1}, status=201)
    assert sim.operation_counts() == {"POST issue": 1, "GET issue": 1, "GET transitions": 1, "POST transitions": 1, "POST comment": 1,
                                      "POST search": 1, "PUT properties": 1}


def test_request_log_records_path_query_and_body(sim: InThreadSimulator, jira: Jira) -> None:
    jira.create(labels=["am-1"])
    jira.call("POST", "/search/jql", {"jql": "labels = am-1", "reconcileIssues": [10000]})
    jira.call("GET", "/issue/OPS-1", params={"fields": "summary", "properties": "labops.ims"})
    log = sim.requests()
    assert [(e["operation"], e["path"]) for e in log] == [("POST issue", "/rest/api/3/issue"), ("POST search", "/rest/api/3/search/jql"),
                                                          ("GET issue", "/rest/api/3/issue/OPS-1")]
    assert log[0]["body"]["fields"]["labels"] == ["am-1"] and log[0]["status"] == 201
    assert log[1]["body"] == {"jql": "labels = am-1", "reconcileIssues": [10000]}
    assert log[2]["body"] is None and log[2]["query"] == "fields=summary&properties=labops.ims"
    assert all("authorization" not in json.dumps(e).lower() and "jira-api-token" not in json.dumps(e) for e in log)


# ---------------------------------------------------------------- issue properties and links


def test_issue_properties(jira: Jira) -> None:
    ims = {"status": "open", "correlation_key": "3f9c"}
    jira.create(labels=["am-p"])
    jira.call("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "with props"},
                                 "properties": [{"key": "labops.ims", "value": ims}]}, status=201)
    assert jira.get("OPS-2", properties="labops.ims,other")["properties"] == {"labops.ims": ims}
    assert "properties" not in jira.get("OPS-2")
    assert jira.call("GET", "/issue/OPS-2/properties/labops.ims") == {"key": "labops.ims", "value": ims}
    assert jira.raw("PUT", "/issue/OPS-1/properties/labops.ims", {"status": "resolved"})[0] == 201
    assert jira.raw("PUT", "/issue/OPS-1/properties/labops.ims", {"status": "closed"})[0] == 200
    assert [k["key"] for k in jira.call("GET", "/issue/OPS-1/properties")["keys"]] == ["labops.ims"]
    found = jira.search("project = OPS ORDER BY key ASC", fields=["summary"], properties=["labops.ims"])["issues"]
    assert [i.get("properties") for i in found] == [{"labops.ims": {"status": "closed"}}, {"labops.ims": ims}]
    assert jira.error("POST", "/search/jql", {"jql": "project = OPS", "properties": [f"p{n}" for n in range(6)]})["errorMessages"]
    # edit and transition bodies take properties too
    jira.call("PUT", "/issue/OPS-2", {"properties": [{"key": "labops.ims", "value": {"status": "in_progress"}}]}, status=204)
    jira.transition("OPS-2", "31", properties=[{"key": "labops.ims", "value": {"status": "resolved"}}])
    assert jira.get("OPS-2", properties="labops.ims")["properties"]["labops.ims"] == {"status": "resolved"}
    assert jira.call("DELETE", "/issue/OPS-2/properties/labops.ims", status=204) is None
    assert jira.error("GET", "/issue/OPS-2/properties/labops.ims", status=404)["errorMessages"] == [
        "The property with key 'labops.ims' does not exist."]


def test_issue_links(jira: Jira) -> None:
    jira.create("incident")
    jira.call("POST", "/issue", {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Problem"}, "summary": "problem"}}, status=201)
    assert jira.call("POST", "/issueLink", {"type": {"name": "Problem/Incident"}, "inwardIssue": {"key": "OPS-2"},
                                            "outwardIssue": {"key": "OPS-1"}}, status=201) is None
    # the same link again is not a second link
    jira.call("POST", "/issueLink", {"type": {"name": "Problem/Incident"}, "inwardIssue": {"key": "OPS-2"}, "outwardIssue": {"key": "OPS-1"}},
              status=201)
    on_problem = jira.get("OPS-2", fields="issuelinks")["fields"]["issuelinks"]
    on_incident = jira.get("OPS-1", fields="issuelinks")["fields"]["issuelinks"]
    assert len(on_problem) == 1 and on_problem[0]["type"]["outward"] == "causes" and on_problem[0]["outwardIssue"]["key"] == "OPS-1"
    assert len(on_incident) == 1 and on_incident[0]["inwardIssue"]["key"] == "OPS-2"
    link = jira.call("GET", f"/issueLink/{on_problem[0]['id']}")
    assert (link["inwardIssue"]["key"], link["outwardIssue"]["key"]) == ("OPS-2", "OPS-1")
    assert jira.error("POST", "/issueLink", {"type": {"name": "Nope"}, "inwardIssue": {"key": "OPS-2"}, "outwardIssue": {"key": "OPS-1"}},
                      status=404)["errorMessages"]
    assert jira.error("POST", "/issueLink", {"type": {"name": "Relates"}, "inwardIssue": {"key": "OPS-2"}, "outwardIssue": {"key": "OPS-9"}},
                      status=404)["errorMessages"]
    jira.call("DELETE", f"/issueLink/{link['id']}", status=204)
    assert jira.get("OPS-1", fields="issuelinks")["fields"]["issuelinks"] == []


# ---------------------------------------------------------------- control API


def test_seed_and_state(sim: InThreadSimulator, jira: Jira) -> None:
    rows = sim.seed("issues", [{"project": "OPS", "summary": "old", "status": "Done", "resolution": "Won't Do",
                                "resolutiondate": "2026-05-04T11:02:00.000+0000", "labels": ["am-x"], "created": "2026-05-01T10:00:00Z",
                                "properties": {"labops.ims": {"status": "resolved"}}, "comments": ["first"]}])
    assert rows[0]["key"] == "OPS-1" and rows[0]["resolutiondate"] == "2026-05-04T11:02:00.000+0000"
    assert rows[0]["created"] == "2026-05-01T10:00:00.000+0000" and rows[0]["statusCategory"] == "done"
    fields = jira.get("OPS-1")["fields"]
    assert fields["resolution"]["name"] == "Won't Do" and fields["comment"]["comments"][0]["body"] == doc("first")
    state = sim.state()
    assert state["mode"] == "cloud" and state["issues"]["OPS-1"]["labels"] == ["am-x"] and "users" not in state["config"]
    with pytest.raises(SimulatorError):
        sim.seed("issues", [{"project": "OPS", "status": "Closed"}])
    with pytest.raises(SimulatorError):
        sim.set_config(mode="server")
    with pytest.raises(SimulatorError):
        sim.set_config(serch_lag=1)
    sim.reset()
    assert sim.state()["issues"] == {}


def test_subprocess_cli_datacenter_config_and_state_file(tmp_path: Any) -> None:
    config = {"mode": "datacenter", "state_file": str(tmp_path / "jira.json")}
    with start_simulator("jira", config) as proc:
        client = Jira(proc, auth=None, headers={"Authorization": "Bearer jira-pat-123"}, api="2")
        created = client.call("POST", "/issue", {"fields": {"project": {"key": "NET"}, "issuetype": {"name": "Change"}, "summary": "cli"}},
                              status=201)
        assert created["key"] == "NET-1"
        assert proc.state()["issues"]["NET-1"]["summary"] == "cli"
    with start_simulator("jira", config) as proc:  # the state survives a restart; keys continue
        client = Jira(proc, auth=DC_BOT, api="2")
        assert client.get("NET-1")["fields"]["summary"] == "cli"
        assert client.call("POST", "/issue", {"fields": {"project": {"key": "NET"}, "issuetype": {"name": "Task"}, "summary": "2"}},
                           status=201)["key"] == "NET-2"


def test_dc_captcha_lockout_after_failed_logins(sim: InThreadSimulator, dc: Jira) -> None:
    sim.set_config(captcha_after=2)
    wrong = Jira(sim, auth=("itsm.bot", "wrong"), api="2")
    assert [wrong.raw("GET", "/myself")[0] for _n in range(2)] == [401, 401]
    status, headers, _p = dc.raw("GET", "/myself")  # the right password no longer helps
    assert status == 403 and headers["x-seraph-loginreason"] == "AUTHENTICATION_DENIED"
    assert headers["x-authentication-denied-reason"].startswith("CAPTCHA_CHALLENGE")
    bearer = Jira(sim, auth=None, headers={"Authorization": "Bearer jira-pat-123"}, api="2")
    status, headers, _p = bearer.raw("GET", "/myself")  # a personal access token is not subject to the CAPTCHA
    assert status == 200 and headers["x-ausername"] == "itsm.bot"
