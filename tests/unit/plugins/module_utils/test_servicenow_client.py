"""The ServiceNow Table API client (``_servicenow``) against the ServiceNow simulator over real HTTP.

Auth modes, the OAuth token shared on disk between clients (and processes), renewal on expiry and on a 401,
the retry policy (429 Retry-After, 5xx 1/2/4 s), lost POST replies, the empty-key refusal, paging and error
messages without secrets. Request counts come from the simulator's own request log.
"""
import os
import stat
import threading
import time

import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _servicenow as sn
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

OAUTH = {"client_id": "labops", "client_secret": "client-secret", "username": "itsm.bot", "password": "bot-pw"}
SECRETS = ("client-secret", "bot-pw", "key-123", "admin-pw")


@pytest.fixture(scope="module")
def server():
    sim = start_in_thread("servicenow", {})
    yield sim
    sim.stop()


@pytest.fixture
def sim(server):
    server.reset()
    return server


class Clock:
    """The client's clock, moved together with the simulator's."""

    def __init__(self, sim):
        self.sim = sim
        self.offset = 0.0

    def __call__(self):
        return time.time() + self.offset

    def advance(self, seconds, *, instance=True):
        self.offset += seconds
        if instance:
            self.sim.advance_clock(seconds)


def make(sim, tmp_path, sleeps=None, clock=None, **params):
    """A client with recorded (not slept) retry delays and its token cache under ``tmp_path``."""
    params.setdefault("token_cache", str(tmp_path / "tokens"))
    recorded = sleeps if sleeps is not None else []
    http = HttpClient("servicenow", sim.url, sleep=recorded.append)
    client = sn.client_from_params(dict(params, instance=sim.url), http=http)
    if clock is not None:
        client.clock = clock
    return client


def ops(sim):
    return [(entry["operation"], entry["status"]) for entry in sim.requests()]


def assert_no_secret(text):
    for secret in SECRETS:
        assert secret not in text


# --------------------------------------------------------------------------- connection options


@pytest.mark.parametrize("given, url", [
    ("acme", "https://acme.service-now.com"), ("https://acme.service-now.com/", "https://acme.service-now.com"),
    ("acme.example.org", "https://acme.example.org"), ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
])
def test_instance_url(given, url):
    assert sn.instance_url(given) == url


def test_instance_url_refuses_garbage():
    with pytest.raises(ValidationError, match="instance is required"):
        sn.instance_url(" ")
    with pytest.raises(ValidationError, match="must be a URL or an instance name"):
        sn.instance_url("acme/path")


def test_no_credentials_and_half_oauth_are_refused(tmp_path):
    with pytest.raises(ValidationError, match="no credentials"):
        sn.client_from_params({"instance": "acme"})
    with pytest.raises(ValidationError, match="needs both client_id and client_secret"):
        sn.client_from_params({"instance": "acme", "client_id": "labops"})
    with pytest.raises(ValidationError, match="password grant needs username and password"):
        sn.client_from_params({"instance": "acme", "client_id": "labops", "client_secret": "s", "username": "u"})
    with pytest.raises(ValidationError, match="one of password or password_file is required"):
        sn.client_from_params({"instance": "acme", "username": "u"})


def test_password_file(tmp_path, sim):
    secret = tmp_path / "pw"
    secret.write_text("bot-pw\n")
    secret.chmod(0o600)
    registered = []
    client = sn.client_from_params({"instance": sim.url, "username": "itsm.bot", "password_file": str(secret)},
                                   register_secret=registered.append)
    assert registered == ["bot-pw"] and client.auth == "basic"
    assert client.list("sys_user_group", "name=Storage", fields="name") == [{"name": "Storage"}]
    with pytest.raises(ValidationError, match="servicenow: password_file .* does not exist"):
        sn.client_from_params({"instance": sim.url, "username": "u", "password_file": str(tmp_path / "absent")})


# --------------------------------------------------------------------------- auth modes


@pytest.mark.parametrize("params, mode", [
    ({"api_key": "key-123"}, "api_key"),
    ({"username": "itsm.bot", "password": "bot-pw"}, "basic"),
    (OAUTH, "oauth"),
    ({"client_id": "labops", "client_secret": "client-secret"}, "oauth"),
])
def test_auth_modes_read_as_the_integration_user(sim, tmp_path, params, mode):
    client = make(sim, tmp_path, **params)
    assert client.auth == mode
    bot = client.find_one("sys_user", sn.eq("user_name", "itsm.bot"), fields="sys_id,user_name")
    assert bot["user_name"] == "itsm.bot"
    created = client.create("incident", {"short_description": "auth " + mode})
    assert created["sys_created_by"] == "itsm.bot" and created["opened_by"] == bot["sys_id"]
    token_requests = 1 if mode == "oauth" else 0
    assert client.request_count == 2 + token_requests
    assert [op for op, _status in ops(sim)].count("POST oauth_token") == token_requests


def test_client_credentials_get_no_refresh_token_and_renew_with_a_fresh_grant(sim, tmp_path):
    clock = Clock(sim)
    client = make(sim, tmp_path, clock=clock, client_id="labops", client_secret="client-secret")
    client.list("incident", limit=1)
    cached = client.token_cache.load_entry()
    assert cached["access_token"] and "refresh_token" not in cached
    clock.advance(1800)
    client.list("incident", limit=1)
    assert ops(sim) == [("POST oauth_token", 200), ("GET incident", 200), ("POST oauth_token", 200), ("GET incident", 200)]


@pytest.mark.parametrize("params, words", [
    ({"api_key": "key-999"}, "check api_key"),
    ({"username": "itsm.bot", "password": "wrong-pw"}, "check username and password"),
])
def test_rejected_credentials_name_the_check_without_the_secret(sim, tmp_path, params, words):
    client = make(sim, tmp_path, **params)
    with pytest.raises(AuthError) as info:
        client.list("incident", limit=1)
    text = str(info.value)
    assert "HTTP 401: User Not Authenticated: Required to provide Auth information" in text and words in text
    assert "key-999" not in text and "wrong-pw" not in text
    assert info.value.details["error_message"] == "User Not Authenticated"


def test_rejected_oauth_client(sim, tmp_path):
    client = make(sim, tmp_path, client_id="labops", client_secret="not-the-secret", username="itsm.bot", password="bot-pw")
    with pytest.raises(AuthError) as info:
        client.list("incident", limit=1)
    text = str(info.value)
    assert "servicenow token (password grant) (POST /oauth_token.do): HTTP 401: server_error: access_denied" in text
    assert "not-the-secret" not in text and "bot-pw" not in text
    assert ops(sim) == [("POST oauth_token", 401)]


# --------------------------------------------------------------------------- the shared token


def test_two_clients_share_one_token(sim, tmp_path):
    first = make(sim, tmp_path, **OAUTH)
    first.list("incident", limit=1)
    second = make(sim, tmp_path, **OAUTH)
    second.list("incident", limit=1)
    second.list("problem", limit=1)
    assert (first.request_count, second.request_count) == (2, 2)
    assert [op for op, _status in ops(sim)].count("POST oauth_token") == 1
    assert sim.state()["tokens_issued"] == 1


def test_token_cache_is_private_and_keyed_by_the_account(sim, tmp_path):
    client = make(sim, tmp_path, **OAUTH)
    client.list("incident", limit=1)
    path = client.token_cache.path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert "itsm.bot" not in os.path.basename(path) and "labops" not in os.path.basename(path)
    other = make(sim, tmp_path, client_id="labops", client_secret="client-secret", username="admin", password="admin-pw")
    other.list("incident", limit=1)
    assert other.token_cache.path != path and sim.state()["tokens_issued"] == 2


def test_concurrent_first_runs_fetch_one_token(sim, tmp_path):
    clients = [make(sim, tmp_path, **OAUTH) for _count in range(4)]
    errors = []

    def run(client):
        try:
            client.list("incident", limit=1)
        except LabopsError as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sim.state()["tokens_issued"] == 1


def test_expired_token_is_renewed_with_the_refresh_grant(sim, tmp_path):
    clock = Clock(sim)
    client = make(sim, tmp_path, clock=clock, **OAUTH)
    client.list("incident", limit=1)
    refresh = client.token_cache.load_entry()["refresh_token"]
    clock.advance(1800)  # past the 1799 s lifetime on both sides: renewed before the call, no 401
    client.list("incident", limit=1)
    assert ops(sim) == [("POST oauth_token", 200), ("GET incident", 200), ("POST oauth_token", 200), ("GET incident", 200)]
    renewed = client.token_cache.load_entry()
    assert renewed["refresh_token"] == refresh and sim.state()["tokens_issued"] == 2


def test_token_refused_by_the_instance_is_forgotten_and_renewed_once(sim, tmp_path):
    clock = Clock(sim)
    client = make(sim, tmp_path, clock=clock, **OAUTH)
    client.list("incident", limit=1)
    old = client.token_cache.load_entry()["access_token"]
    sim.advance_clock(1800)  # only the instance: the client still believes its token valid
    client.list("incident", limit=1)
    assert ops(sim)[2:] == [("GET incident", 401), ("POST oauth_token", 200), ("GET incident", 200)]
    assert client.token_cache.load_entry()["access_token"] != old


def test_lost_refresh_token_falls_back_to_the_password_grant(sim, tmp_path):
    client = make(sim, tmp_path, **OAUTH)
    client.list("incident", limit=1)
    sim.reset()  # every token and refresh token of the instance is gone
    assert client.list("incident", limit=1) == []
    assert ops(sim) == [("GET incident", 401), ("POST oauth_token", 401), ("POST oauth_token", 200), ("GET incident", 200)]


def test_an_account_locked_after_its_token_was_issued_fails_after_one_re_authentication(sim, tmp_path):
    client = make(sim, tmp_path, **OAUTH)
    client.list("incident", limit=1)
    admin = make(sim, tmp_path, username="admin", password="admin-pw")
    bot = admin.find_one("sys_user", sn.eq("user_name", "itsm.bot"), fields="sys_id")
    admin.update("sys_user", bot["sys_id"], {"active": False})
    sim.clear_requests()
    with pytest.raises(AuthError) as info:
        client.list("incident", limit=1)
    assert ops(sim) == [("GET incident", 401), ("POST oauth_token", 401), ("POST oauth_token", 401)]
    assert "check client_id, client_secret, username and password" in str(info.value)
    assert_no_secret(str(info.value))


# --------------------------------------------------------------------------- retry policy


def test_429_waits_retry_after(sim, tmp_path):
    sleeps = []
    client = make(sim, tmp_path, sleeps, api_key="key-123")
    sim.inject(kind="http_status", status=429, retry_after=7, count=2, operations=["GET incident"])
    assert client.list("incident", limit=1) == []
    assert sleeps == [7.0, 7.0] and client.request_count == 3
    sleeps.clear()
    sim.inject(kind="http_status", status=429, retry_after=1, count=4, operations=["GET incident"])
    with pytest.raises(CommunicationError, match="HTTP 429: .*rate limited, retries exhausted"):
        client.list("incident", limit=1)
    assert sleeps == [1.0, 1.0, 1.0]


def test_rate_limit_rule_of_the_instance(sim, tmp_path):
    """The instance's own 429 (envelope, X-RateLimit-*, Retry-After up to the window reset); waiting lets it pass."""
    sim.control("POST", "config", {"rate_limit": {"limit": 2, "window": 20}})
    sleeps = []

    def wait(seconds):
        sleeps.append(seconds)
        sim.advance_clock(seconds)

    http = HttpClient("servicenow", sim.url, sleep=wait)
    client = sn.client_from_params({"instance": sim.url, "api_key": "key-123"}, http=http)
    for _count in range(3):
        client.list("incident", limit=1)
    assert len(sleeps) == 1 and 1 <= sleeps[0] <= 20
    assert [status for _op, status in ops(sim)] == [200, 200, 429, 200]


def test_5xx_is_retried_after_1_2_4_seconds_then_fails(sim, tmp_path):
    sleeps = []
    client = make(sim, tmp_path, sleeps, api_key="key-123")
    sim.inject(kind="http_status", status=502, count=3, operations=["GET incident"])
    assert client.list("incident", limit=1) == []
    assert sleeps == [1.0, 2.0, 4.0]
    sleeps.clear()
    sim.inject(kind="http_status", status=500, count=4, operations=["GET incident"])
    with pytest.raises(UnexpectedResponseError, match=r"servicenow list incident \(GET /api/now/table/incident\): HTTP 500"):
        client.list("incident", limit=1)
    assert sleeps == [1.0, 2.0, 4.0]


def test_lost_post_reply_is_ambiguous_and_not_re_sent(sim, tmp_path):
    client = make(sim, tmp_path, api_key="key-123")
    sim.inject(kind="drop", operations=["POST incident"], after_apply=True, count=1)
    with pytest.raises(AmbiguousWriteError, match="may or may not have been applied"):
        client.create("incident", {"short_description": "lost", "correlation_id": "k1"})
    assert [op for op, _status in ops(sim)].count("POST incident") == 1
    assert [row["number"] for row in sim.state()["tables"]["incident"] if row["correlation_id"] == "k1"] == ["INC0010001"]
    sim.inject(kind="http_status", status=503, count=1, operations=["POST incident"])
    with pytest.raises(AmbiguousWriteError, match="HTTP 503"):
        client.create("incident", {"short_description": "503"})
    assert [op for op, _status in ops(sim)].count("POST incident") == 2


def test_patch_with_a_journal_entry_is_not_re_sent_but_a_field_patch_is(sim, tmp_path):
    sleeps = []
    client = make(sim, tmp_path, sleeps, api_key="key-123")
    sys_id = client.create("incident", {"short_description": "p"})["sys_id"]
    sim.inject(kind="http_status", status=503, count=1, operations=["PATCH incident"])
    assert client.update("incident", sys_id, {"urgency": "2"})["priority"] == "4"
    assert sleeps == [1.0]
    sim.inject(kind="http_status", status=503, count=1, operations=["PATCH incident"])
    with pytest.raises(AmbiguousWriteError):
        client.update("incident", sys_id, {"work_notes": "once"})
    assert sim.state()["tables"].get("sys_journal_field", []) == []
    assert [op for op, _status in ops(sim)].count("PATCH incident") == 3  # 503 + retry, then the journal PATCH once


# --------------------------------------------------------------------------- queries


@pytest.mark.parametrize("query", ["correlation_id=", "correlation_id=  ", "active=true^correlation_id=", "correlation_id=^active=true",
                                   "number=INC1^ORcorrelation_id=", ""])
def test_find_one_refuses_an_empty_key_without_a_request(sim, tmp_path, query):
    client = make(sim, tmp_path, api_key="key-123")
    with pytest.raises(ValidationError, match="an empty key is never searched"):
        client.find_one("incident", query)
    assert client.request_count == 0


def test_find_one_and_eq(sim, tmp_path):
    client = make(sim, tmp_path, api_key="key-123")
    with pytest.raises(ValidationError, match="correlation_id is empty: an empty key is never searched"):
        sn.eq("correlation_id", " ")
    created = client.create("incident", {"short_description": "a^b", "correlation_id": "am:1"})
    assert client.find_one("incident", sn.eq("short_description", "a^b"))["sys_id"] == created["sys_id"]
    assert client.find_one("incident", "correlation_idISEMPTY") is None
    assert client.find_one("incident", sn.eq("correlation_id", "am:2")) is None
    assert client.request_count == 4


def test_list_all_pages_by_offset(sim, tmp_path):
    client = make(sim, tmp_path, api_key="key-123")
    created = [client.create("incident", {"short_description": f"page {n}"})["sys_id"] for n in range(7)]
    sim.clear_requests()
    rows = client.list_all("incident", "short_descriptionSTARTSWITHpage", fields="sys_id", page_size=3)
    assert sorted(row["sys_id"] for row in rows) == sorted(created)
    assert [entry["operation"] for entry in sim.requests()] == ["GET incident"] * 3
    assert client.list_all("incident", "short_descriptionSTARTSWITHnothing", page_size=3) == []


def test_reads_strings_references_and_display_values(sim, tmp_path):
    client = make(sim, tmp_path, api_key="key-123")
    group = client.resolve_reference("sys_user_group", "Storage")
    created = client.create("incident", {"short_description": "x", "impact": 1, "urgency": 2, "assignment_group": group})
    assert (created["priority"], created["assignment_group"]) == ("2", group)
    shown = client.get("incident", created["sys_id"], fields="state,assignment_group", display_value="all")
    assert shown == {"state": {"display_value": "New", "value": "1"},
                     "assignment_group": {"display_value": "Storage", "value": group}}
    assert client.get("incident", "0" * 32) is None


def test_resolve_reference_by_name_and_cache(sim, tmp_path):
    client = make(sim, tmp_path, api_key="key-123")
    by_name = client.resolve_reference("sys_user", "monitoring")
    assert client.resolve_reference("sys_user", "monitoring@example.com") == by_name
    assert client.resolve_reference("sys_user", by_name) == by_name
    count = client.request_count
    assert client.resolve_reference("sys_user", "monitoring") == by_name and client.request_count == count
    with pytest.raises(NotFoundError, match="no cmdb_ci record named 'pve99'"):
        client.resolve_reference("cmdb_ci", "pve99")


def test_record_link(sim, tmp_path):
    client = make(sim, tmp_path, api_key="key-123")
    assert client.record_link("incident", "a" * 32) == f"{sim.url}/nav_to.do?uri=incident.do?sys_id={'a' * 32}"


# --------------------------------------------------------------------------- error envelope


def test_error_envelope_becomes_the_error_class_with_message_and_detail(sim, tmp_path):
    client = make(sim, tmp_path, **OAUTH)
    with pytest.raises(ValidationError, match=r"servicenow list incidnt \(GET /api/now/table/incidnt\): HTTP 400: Invalid table incidnt"):
        client.list("incidnt")
    with pytest.raises(NotFoundError) as missing:
        client.update("incident", "0" * 32, {"state": "2"})
    assert "HTTP 404: No Record found: Record doesn't exist or ACL restricts the record retrieval" in str(missing.value)
    sys_id = client.create("incident", {"short_description": "policy"})["sys_id"]
    with pytest.raises(PermissionDenied) as policy:
        client.update("incident", sys_id, {"state": "6"})
    text = str(policy.value)
    assert "HTTP 403: Operation Failed: Data Policy Exception: The following fields are mandatory: Resolution code, Resolution notes" in text
    assert "same write" in text and policy.value.details["error_detail"].startswith("Data Policy Exception")
    with pytest.raises(PermissionDenied, match="ACL Exception Delete Failed due to security constraints"):
        client.delete("incident", sys_id)
    for error in (missing.value, policy.value):
        assert_no_secret(str(error) + str(error.details))
        token = client.token_cache.load_entry()
        assert token["access_token"] not in str(error) and token["refresh_token"] not in str(error)


def test_delete_answers_whether_it_deleted(sim, tmp_path):
    admin = make(sim, tmp_path, username="admin", password="admin-pw")
    sys_id = admin.create("incident", {"short_description": "gone"})["sys_id"]
    assert admin.delete("incident", sys_id) is True
    assert admin.delete("incident", sys_id) is False
    with pytest.raises(ValidationError, match="sys_id must be 32 lowercase hex"):
        admin.delete("incident", "INC0010001")
    with pytest.raises(ValidationError, match="invalid table name"):
        admin.list("incident; drop")


def test_references_are_kept_on_disk_for_the_next_client(sim, tmp_path):
    """One process per alert batch: the second client (same token_cache) resolves the same names with no request."""
    first = make(sim, tmp_path, api_key="key-123")
    ids = {(table, name): first.resolve_reference(table, name)
           for table, name in (("sys_user", "monitoring"), ("sys_user_group", "Storage"), ("cmdb_ci", "pve01"))}
    assert first.request_count == 3
    first.remember_reference("incident", "INC0010001", "a" * 32)  # record numbers stay in memory only
    path = first.references.store.path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    second = make(sim, tmp_path, api_key="key-123")
    assert {key: second.resolve_reference(*key) for key in ids} == ids
    assert second.resolve_reference("sys_user_group", "STORAGE") == ids[("sys_user_group", "Storage")]  # names ignore case
    assert second.request_count == 0
    assert second.known_reference("incident", "INC0010001") is None
    # keyed by instance: another instance's cache holds nothing of this one
    other = sn.ReferenceCache(str(tmp_path / "tokens"), "https://other.service-now.com")
    assert other.get("sys_user", "monitoring") is None
    # a cache file other users can read is not trusted
    os.chmod(path, 0o644)
    assert make(sim, tmp_path, api_key="key-123").known_reference("sys_user", "monitoring") is None
    # without a token_cache directory nothing is written and nothing read
    bare = make(sim, tmp_path, api_key="key-123", token_cache="")
    assert bare.references.store is None and bare.known_reference("cmdb_ci", "pve01") is None


def test_a_stale_cached_reference_is_forgotten(sim, tmp_path):
    gone = "0" * 32
    seeded = make(sim, tmp_path, api_key="key-123")
    seeded.remember_reference("cmdb_ci", "pve02", gone)  # a CI deleted since its sys_id was learnt
    seeded.remember_reference("sys_user_group", "Network", "f" * 32)
    warnings = []
    client = make(sim, tmp_path, api_key="key-123")
    client.warn = warnings.append
    # a write whose reply shows the cached reference pointing nowhere (no display value): forgotten, looked up, sent again
    sim.clear_requests()
    row = client.create("incident", {"short_description": "stale CI", "cmdb_ci": client.resolve_reference("cmdb_ci", "pve02")},
                        fields="sys_id,number", display_value="all")
    pve02 = next(ci["sys_id"] for ci in sim.state()["tables"]["cmdb_ci"] if ci["name"] == "pve02")
    assert row["cmdb_ci"] == {"value": pve02, "display_value": "pve02"}  # asked for although not in fields: it carried a cached id
    assert client.stale_references == [("cmdb_ci", "cmdb_ci", "pve02")]
    assert [op for op, dummy in ops(sim)] == ["POST incident", "GET cmdb_ci", "PATCH incident"]
    assert len(warnings) == 1 and "cmdb_ci pointed at a record that no longer exists" in warnings[0]
    assert client.known_reference("cmdb_ci", "pve02") == pve02
    # ... and a 404 on a cached sys_id
    assert client.get("sys_user_group", "f" * 32) is None
    assert client.known_reference("sys_user_group", "Network") is None and "no longer exists; forgotten" in warnings[1]
    # on disk too: the next client knows the new CI id and looks the group up again
    fresh = make(sim, tmp_path, api_key="key-123")
    assert fresh.resolve_reference("cmdb_ci", "pve02") == pve02 and fresh.request_count == 0
    assert fresh.resolve_reference("sys_user_group", "Network") != "f" * 32 and fresh.request_count == 1
    fresh.update("incident", row["sys_id"]["value"], {"cmdb_ci": pve02}, display_value="all")
    assert fresh.stale_references == []
