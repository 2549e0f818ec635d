"""The Jira REST client (``_jira``) against the Jira simulator over real HTTP, in Cloud (v3, ADF) and Data Center (v2) mode.

Auth modes, deployment detection (cached on disk), the error envelope (JSON and plain text, 401/403/404/400/410),
the retry policy of the shared HttpClient (429 Retry-After, 5xx 1/2/4 s), lost create replies, nextPageToken and
startAt paging, reconcileIssues under search lag, the transition cache, the creation index and its lock, and error
messages without secrets. Request counts come from the simulator's own request log.
"""
import json
import multiprocessing
import os
import stat
import time
import urllib.request

import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _jira as jira
from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AmbiguousWriteError,
    AuthError,
    CommunicationError,
    LabopsError,
    NotFoundError,
    PermissionDenied,
    UnexpectedResponseError,
    ValidationError,
)
from ansible_collections.labops.itsm.plugins.module_utils._http import HttpClient
from simulators.harness import start_in_thread

CLOUD = {"username": "bot@example.com", "password": "jira-api-token"}
DC_BASIC = {"username": "itsm.bot", "password": "bot-pw"}
DC_PAT = {"token": "jira-pat-123"}
SECRETS = ("jira-api-token", "bot-pw", "jira-pat-123", "wrong-token-Xy")


@pytest.fixture(scope="module")
def server():
    sim = start_in_thread("jira", {})
    yield sim
    sim.stop()


@pytest.fixture
def sim(server):
    server.reset()
    return server


@pytest.fixture
def dc(server):
    server.reset()
    server.set_config(mode="datacenter")
    return server


def make(sim, tmp_path, sleeps=None, deployment="auto", **params):
    """A client with recorded (not slept) retry delays and its cache under ``tmp_path``."""
    if not params:
        params = dict(CLOUD)
    params.setdefault("cache_dir", str(tmp_path / "cache"))
    recorded = sleeps if sleeps is not None else []
    http = HttpClient("jira", sim.url, sleep=recorded.append)
    return jira.client_from_params(dict(params, url=sim.url, deployment=deployment), http=http)


def ops(sim):
    return [entry["operation"] for entry in sim.requests()]


def assert_no_secret(text):
    for secret in SECRETS:
        assert secret not in text


def issue_fields(client, summary="Disk full", labels=("alertmanager",), project="OPS"):
    return {"project": {"key": project}, "issuetype": {"name": "Incident"}, "summary": summary,
            "description": client.rich_text("Node **pve-03** is down.\n\nSince 10:15."), "labels": list(labels)}


# -------------------------------------------------------------------------------------------- deployment and auth


@pytest.mark.parametrize("url, cloud", [("https://acme.atlassian.net", True), ("https://api.atlassian.com/ex/jira/1234", True),
                                        ("https://jira.example.org", None), ("https://acme.atlassian.net.evil.org", None)])
def test_cloud_hosts_are_known_without_a_request(url, cloud):
    assert (jira.CLOUD_HOST_RE.match(url) is not None) == bool(cloud)


def test_auto_detection_asks_server_info_once_and_caches_it(sim, tmp_path):
    client = make(sim, tmp_path)
    assert (client.cloud, client.api) == (True, 3)
    assert ops(sim) == ["GET serverInfo"]
    sim.clear_requests()
    again = make(sim, tmp_path)
    assert (again.cloud, again.api, ops(sim)) == (True, 3, [])
    cache_dir = tmp_path / "cache"
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    explicit = make(sim, tmp_path / "other", deployment="cloud")
    assert explicit.api == 3 and ops(sim) == []


@pytest.mark.parametrize("deployment_type", ["DataCenter", "Server"])
def test_auto_detection_on_data_center(dc, tmp_path, deployment_type):
    dc.set_config(dc_deployment_type=deployment_type)
    client = make(dc, tmp_path, **DC_BASIC)
    assert (client.cloud, client.api) == (False, 2)
    assert client.myself()["name"] == "itsm.bot"
    assert ops(dc) == ["GET serverInfo", "GET myself"]


@pytest.mark.parametrize("mode, params, who", [("cloud", CLOUD, ("accountId", "5b10a2844c20165700ede21g")),
                                               ("datacenter", DC_BASIC, ("name", "itsm.bot")),
                                               ("datacenter", DC_PAT, ("name", "itsm.bot"))])
def test_auth_modes(sim, tmp_path, mode, params, who):
    sim.set_config(mode=mode)
    client = make(sim, tmp_path, deployment=mode, **params)
    assert client.myself()[who[0]] == who[1]
    assert client.auth == ("bearer" if "token" in params else "basic")


def test_secret_files(sim, tmp_path):
    token_file = tmp_path / "pat"
    token_file.write_text("jira-pat-123\n")
    token_file.chmod(0o600)
    sim.set_config(mode="datacenter")
    registered = []
    http = HttpClient("jira", sim.url)
    client = jira.client_from_params({"url": sim.url, "token_file": str(token_file), "deployment": "datacenter",
                                      "cache_dir": str(tmp_path)}, http=http, register_secret=registered.append)
    assert client.myself()["name"] == "itsm.bot" and registered == ["jira-pat-123"]
    with pytest.raises(ValidationError, match="token and token_file are mutually exclusive"):
        jira.client_from_params({"url": sim.url, "token": "x", "token_file": str(token_file)})
    with pytest.raises(ValidationError, match="password_file .*nope does not exist"):
        jira.client_from_params({"url": sim.url, "username": "u", "password_file": str(tmp_path / "nope")})


def test_missing_credentials_are_refused_without_a_request(sim, tmp_path):
    with pytest.raises(ValidationError, match="no credentials"):
        make(sim, tmp_path, deployment="cloud", cache_dir=str(tmp_path))
    with pytest.raises(ValidationError, match="password .* is required with username"):
        make(sim, tmp_path, deployment="cloud", username="bot@example.com")
    assert ops(sim) == []


def test_rejected_credentials_plain_text_401_without_the_secret(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud", username="bot@example.com", password="wrong-token-Xy")
    with pytest.raises(AuthError) as info:
        client.myself()
    message = str(info.value)
    assert "HTTP 401" in message and "myself (GET /rest/api/3/myself)" in message and "api_token" in message
    assert info.value.details["server_text"] == "Client must be authenticated to access this resource."  # a plain-text body
    assert info.value.details["status"] == 401
    assert_no_secret(message + repr(info.value.details))
    sim.set_config(mode="datacenter")
    pat = make(sim, tmp_path, deployment="datacenter", token="wrong-token-Xy")
    with pytest.raises(AuthError, match="personal access token") as info:
        pat.get_issue("OPS-1")
    assert_no_secret(str(info.value))
    assert "You are not authenticated" in info.value.details["server_text"]  # Data Center: the JSON envelope


def test_auth_is_sent_pre_emptively_so_anonymous_read_is_no_trap(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud")
    key = client.create_issue(issue_fields(client))["key"]
    sim.set_config(anonymous_read=True)
    request = urllib.request.Request(f"{sim.url}/rest/api/3/search/jql", data=json.dumps({"jql": "project = OPS"}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:  # without credentials: 200 and nothing in it
        assert json.loads(response.read())["issues"] == []
    assert [issue["key"] for issue in client.search("project = OPS")] == [key]


def test_data_center_captcha_lock_out_is_named(dc, tmp_path):
    dc.set_config(captcha_after=2)
    for _attempt in range(2):
        with pytest.raises(AuthError):
            make(dc, tmp_path, deployment="datacenter", username="itsm.bot", password="wrong-token-Xy").myself()
    with pytest.raises(PermissionDenied, match="CAPTCHA") as info:
        make(dc, tmp_path, deployment="datacenter", **DC_BASIC).myself()
    assert_no_secret(str(info.value))
    assert make(dc, tmp_path, deployment="datacenter", **DC_PAT).myself()["name"] == "itsm.bot"  # a PAT still works


# -------------------------------------------------------------------------------------------- errors


def test_error_envelope_maps_to_error_classes(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud")
    assert client.get_issue("OPS-999") is None
    with pytest.raises(NotFoundError, match="Issue does not exist"):
        client.transitions("OPS-999")
    with pytest.raises(ValidationError) as info:
        client.create_issue(dict(issue_fields(client), labels=["has space"]))
    assert "labels" in info.value.details["errors"] and "HTTP 400" in str(info.value)
    created = client.create_issue(issue_fields(client))
    with pytest.raises(ValidationError, match="customfield_10099") as info:
        client.edit_issue(created["key"], fields={"customfield_10099": "x"})
    assert "cannot be set" in info.value.details["errors"]["customfield_10099"]
    with pytest.raises(ValidationError, match="description"):
        client.edit_issue(created["key"], fields={"description": "a plain string on v3"})
    with pytest.raises(ValidationError, match="in both fields and update"):
        client.edit_issue(created["key"], fields={"labels": ["a"]}, update={"labels": [{"add": "b"}]})
    with pytest.raises(ValidationError, match="not an issue key"):
        client.get_issue("../myself")


def test_legacy_search_on_cloud_is_410_naming_the_migration(sim, tmp_path):
    client = make(sim, tmp_path, deployment="datacenter", **CLOUD)  # a v2 client pointed at Cloud
    with pytest.raises(ValidationError) as info:
        client.search("project = OPS")
    assert info.value.details["status"] == 410 and "/rest/api/3/search/jql" in str(info.value)
    assert "deployment: cloud" in str(info.value)


def test_bad_jql_is_a_validation_error(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud")
    with pytest.raises(ValidationError, match="HTTP 400"):
        client.search("project === OPS")
    with pytest.raises(ValidationError, match="empty JQL"):
        client.search("  ")
    assert jira.jql_string('a "b" \\c') == '"a \\"b\\" \\\\c"'
    with pytest.raises(ValidationError):
        jira.jql_string("")


# -------------------------------------------------------------------------------------------- retries


def test_429_waits_retry_after_then_succeeds(sim, tmp_path):
    sleeps = []
    client = make(sim, tmp_path, sleeps=sleeps, deployment="cloud")
    sim.inject(kind="http_status", status=429, retry_after=7, count=1, operations=["GET myself"])
    assert client.myself()["accountId"]
    assert sleeps == [7.0] and ops(sim) == ["GET myself", "GET myself"]


def test_5xx_is_retried_after_1_2_4_seconds_then_fails(sim, tmp_path):
    sleeps = []
    client = make(sim, tmp_path, sleeps=sleeps, deployment="cloud")
    sim.inject(kind="http_status", status=503, count=10, operations=["POST search"])
    with pytest.raises(CommunicationError) as info:
        client.search("project = OPS")
    assert sleeps == [1.0, 2.0, 4.0] and ops(sim).count("POST search") == 4
    assert "HTTP 503" in str(info.value)


def test_lost_create_reply_is_ambiguous_and_not_re_sent(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud")
    sim.inject(kind="drop", operations=["POST issue"], after_apply=True, count=1)
    with pytest.raises(AmbiguousWriteError):
        client.create_issue(issue_fields(client))
    assert ops(sim).count("POST issue") == 1 and len(sim.state()["issues"]) == 1


def test_slow_replies_time_out_reads_retried_writes_ambiguous(sim, tmp_path):
    sleeps = []
    http = HttpClient("jira", sim.url, timeout=0.3, sleep=sleeps.append)
    client = jira.client_from_params(dict(CLOUD, url=sim.url, deployment="cloud", cache_dir=str(tmp_path)), http=http)
    sim.inject(kind="latency", seconds=1.0, count=1, operations=["GET myself"])
    assert client.myself()["accountId"] and sleeps == [1.0]  # the read was sent again after 1 s
    sim.inject(kind="latency", seconds=1.0, count=1, operations=["POST comment"])
    key = client.create_issue(issue_fields(client))["key"]
    with pytest.raises(AmbiguousWriteError, match="no answer within the timeout"):
        client.add_comment(key, "slow")
    time.sleep(1.2)  # the simulator logs a request when it has answered it
    assert (ops(sim).count("GET myself"), ops(sim).count("POST comment")) == (2, 1)
    assert len(client.comments(key)) == 1  # the comment landed: the caller must look before sending it again


def test_edit_conflict_is_sent_once_more(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud")
    key = client.create_issue(issue_fields(client))["key"]
    sim.clear_requests()
    sim.inject(kind="http_status", status=409, count=1, operations=["PUT issue"])
    client.edit_issue(key, fields={"summary": "Disk really full"})
    assert ops(sim) == ["PUT issue", "PUT issue"]
    assert client.get_issue(key, fields=["summary"])["fields"]["summary"] == "Disk really full"


# -------------------------------------------------------------------------------------------- search and paging


def test_next_page_token_paging_and_limit(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud")
    keys = [client.create_issue(issue_fields(client, summary=f"issue {n}"))["key"] for n in range(7)]
    sim.clear_requests()
    found = client.search("project = OPS ORDER BY created DESC", fields=["summary"], page_size=3)
    assert [issue["key"] for issue in found] == keys[::-1]
    assert ops(sim) == ["POST search"] * 3
    bodies = [entry["body"] for entry in sim.requests()]
    assert "nextPageToken" not in bodies[0] and bodies[1]["nextPageToken"] and bodies[2]["nextPageToken"] != bodies[1]["nextPageToken"]
    assert {entry["path"] for entry in sim.requests()} == {"/rest/api/3/search/jql"} and bodies[0]["maxResults"] == 3
    sim.clear_requests()
    assert len(client.search("project = OPS ORDER BY created DESC", page_size=3, limit=5)) == 5
    assert ops(sim) == ["POST search"] * 2


def test_start_at_paging_on_data_center(dc, tmp_path):
    client = make(dc, tmp_path, deployment="datacenter", **DC_BASIC)
    keys = [client.create_issue(issue_fields(client, summary=f"issue {n}"))["key"] for n in range(5)]
    assert isinstance(client.create_issue(issue_fields(client, summary="wiki"))["id"], str)
    dc.clear_requests()
    found = client.search("project = OPS ORDER BY created ASC", fields=["summary"], page_size=2)
    assert [issue["key"] for issue in found][:5] == keys and len(found) == 6
    assert ops(dc) == ["POST search"] * 3
    assert [entry["body"]["startAt"] for entry in dc.requests()] == [0, 2, 4]
    assert {entry["path"] for entry in dc.requests()} == {"/rest/api/2/search"}


def test_reconcile_issues_make_a_fresh_create_visible_under_search_lag(sim, tmp_path):
    sim.set_config(search_lag=30)
    client = make(sim, tmp_path, deployment="cloud")
    created = client.create_issue(issue_fields(client, labels=["labops-0123abcd"]))
    jql = 'labels = "labops-0123abcd" ORDER BY created DESC'
    assert client.search(jql, limit=1) == []  # the lag: this is how duplicates happen
    found = client.search(jql, limit=1, fields=["summary"], reconcile=[created["id"]])
    assert [issue["key"] for issue in found] == [created["key"]]
    assert client.get_issue(created["key"]) is not None  # a GET by key is always consistent


# -------------------------------------------------------------------------------------------- transitions and comments


def test_transition_found_by_target_and_cached(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud")
    first = client.create_issue(issue_fields(client))["key"]
    second = client.create_issue(issue_fields(client))["key"]
    sim.clear_requests()
    cache_key = ("OPS", "Incident", "to do")
    done = client.find_transition(first, to_status="done", cache_key=cache_key)
    assert done["id"] == "31" and "resolution" in (done.get("fields") or {})
    assert client.find_transition(second, to_status="Done", cache_key=cache_key)["id"] == "31"
    assert ops(sim) == ["GET transitions"]
    client.transition(first, done["id"], fields={"resolution": {"name": "Won't Do"}})
    issue = client.get_issue(first, fields=["status", "resolution", "resolutiondate"])["fields"]
    assert (issue["status"]["name"], issue["resolution"]["name"]) == ("Done", "Won't Do") and issue["resolutiondate"]
    assert client.find_transition(first, name="reopen")["id"] == "41"


def test_missing_transition_names_issue_status_and_offer(sim, tmp_path):
    sim.set_config(workflow={"statuses": {"To Do": "new", "In Progress": "indeterminate", "Done": "done"}, "initial": "To Do",
                             "transitions": [{"id": "21", "name": "Start", "from": ["To Do"], "to": "In Progress"},
                                             {"id": "31", "name": "Finish", "from": ["In Progress"], "to": "Done",
                                              "screen": ["resolution"]}]})
    client = make(sim, tmp_path, deployment="cloud")
    key = client.create_issue(issue_fields(client))["key"]
    with pytest.raises(ValidationError) as info:
        client.find_transition(key, to_status="Done")
    message = str(info.value)
    assert key in message and "'To Do'" in message and "Start (21) -> In Progress" in message and "'Done'" in message
    with pytest.raises(ValidationError, match="is not valid|not valid for this issue"):
        client.transition(key, "31")


def test_comments_rich_text_and_paging(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud")
    key = client.create_issue(issue_fields(client))["key"]
    stored = client.add_comment(key, "Still **firing**")
    assert stored["body"]["type"] == "doc"
    for number in range(3):
        client.add_comment(key, f"repeat {number}")
    assert len(client.comments(key)) == 4
    sim.set_config(mode="datacenter")
    v2 = make(sim, tmp_path / "dc", deployment="datacenter", **DC_BASIC)
    assert isinstance(v2.add_comment(key, "Still **firing**")["body"], str)


def test_per_issue_comment_limit_is_named(sim, tmp_path):
    sim.set_config(max_comments=1)
    client = make(sim, tmp_path, deployment="cloud")
    key = client.create_issue(issue_fields(client))["key"]
    client.add_comment(key, "first")
    with pytest.raises(UnexpectedResponseError, match="HTTP 413.*per-issue limit") as info:
        client.add_comment(key, "second")
    assert info.value.details["status"] == 413 and ops(sim).count("POST comment") == 2


def test_links_delete_and_browse_url(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud")
    a = client.create_issue(issue_fields(client))["key"]
    b = client.create_issue(dict(issue_fields(client), issuetype={"name": "Problem"}))["key"]
    client.link_issues("Relates", b, a)
    links = client.get_issue(a, fields=["issuelinks"])["fields"]["issuelinks"]
    assert len(links) == 1
    assert client.browse_url(a) == f"{sim.url}/browse/{a}"
    assert client.delete_issue(a) is True and client.delete_issue(a) is False
    assert client.get_issue(a) is None


def test_request_count_counts_every_attempt(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud")
    sim.inject(kind="http_status", status=500, count=1, operations=["GET myself"])
    client.myself()
    assert client.request_count == 2 == len(sim.requests())


# -------------------------------------------------------------------------------------------- creation index and lock


def test_creation_index_remembers_per_label_on_disk(tmp_path):
    now = [1000.0]
    index = jira.CreationIndex(str(tmp_path / "c"), "https://jira.example", clock=lambda: now[0], ttl=60)
    index.remember("labops-aa", "10001")
    index.remember("labops-aa", "10002")
    index.remember("labops-bb", "10003")
    index.remember("labops-aa", "not-an-id")
    other = jira.CreationIndex(str(tmp_path / "c"), "https://jira.example", clock=lambda: now[0], ttl=60)
    assert other.ids("labops-aa") == ["10001", "10002"] and other.ids("labops-bb") == ["10003"]
    assert jira.CreationIndex(str(tmp_path / "c"), "https://other.example").ids("labops-aa") == []
    now[0] += 61
    assert other.ids("labops-aa") == []
    for number in range(60):
        index.remember("labops-cc", str(20000 + number))
    assert len(index.ids("labops-cc")) == jira.MAX_RECONCILE and index.ids("labops-cc")[-1] == "20059"
    lock = index.lock_path("labops-aa")
    assert lock.startswith(str(tmp_path / "c" / "locks")) and len(os.path.basename(lock)) == 32 + len(".lock")
    assert jira.CreationIndex(None, "https://x").ids("a") == []


def _hold(directory, label, ready, release):
    index = jira.CreationIndex(directory, "https://jira.example")
    with index.lock(label):
        ready.set()
        release.wait(10)


def test_creation_lock_excludes_another_process(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path), "labops-aa", ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        blocked = jira.CreationIndex(str(tmp_path), "https://jira.example", lock_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(CommunicationError, match="held the creation lock"), blocked.lock("labops-aa"):
            pass
        assert time.monotonic() - started >= 0.3
        with blocked.lock("labops-bb"):  # another label is free
            pass
    finally:
        release.set()
        holder.join(20)
    with blocked.lock("labops-aa"):
        pass


def test_server_text_is_scrubbed_of_registered_secrets(sim, tmp_path):
    client = make(sim, tmp_path, deployment="cloud")
    client.register_secret("s3cr3t-value")
    with pytest.raises(LabopsError) as info:
        client.create_issue(dict(issue_fields(client), labels=["s3cr3t-value x"]))  # Jira echoes the label in its message
    text = str(info.value) + repr(info.value.details)
    assert "s3cr3t-value" not in text and "'******** x' contains spaces" in text
