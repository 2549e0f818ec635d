"""The platform registry (``_platforms``) and ims_sop's platform surface: validation, env fallbacks, secret masking."""
import io
import json
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.labops.itsm.plugins.module_utils import _platforms as platforms
from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._otobo import OTOBO_CONNECTION_ARGSPEC
from ansible_collections.labops.itsm.plugins.module_utils._otobo_ims import DEFAULT_QUEUE, FIELD_MAP, OtoboPlatform
from ansible_collections.labops.itsm.plugins.module_utils._platform import TicketPlatform
from ansible_collections.labops.itsm.plugins.modules import ims_sop
from ansible_collections.labops.itsm.plugins.plugin_utils._controller_module import run_main_in_process
from simulators.harness import start_in_thread

SECRET = "pw-Zq81-not-in-results"
OTOBO = {"url": "http://otobo.test", "username": "alertbot", "password": "s3cret"}


def test_registry_names_and_options():
    assert platforms.platform_names() == ["jira", "otobo", "servicenow"]
    entry = platforms.REGISTRY["otobo"]
    assert entry.name == "otobo"
    assert set(OTOBO_CONNECTION_ARGSPEC) < set(entry.option_spec)
    mapping = {"customer_user", "state_map", "ticket_types", "priority_map", "dynamic_field_map"}
    assert platforms.option_names("otobo") == frozenset(OTOBO_CONNECTION_ARGSPEC) | mapping
    assert entry.option_spec["password"]["no_log"] is True
    # aliases are accepted option names too (ServiceNow's host, Jira's email / api_token / pat)
    assert {"instance", "host"} < platforms.option_names("servicenow")
    assert {"username", "email", "password", "api_token", "api_token_file", "token", "pat", "url", "server"} < platforms.option_names("jira")
    with pytest.raises(ValidationError, match="platform 'youtrack' is not supported; choose one of jira, otobo, servicenow"):
        platforms.option_names("youtrack")


def test_build_platform_returns_the_configured_adapter():
    warnings = []
    platform = platforms.build_platform("otobo", dict(OTOBO, customer_user="monitoring", ticket_types={"incident": ""}),
                                        queue="Infrastructure", warn=warnings.append)
    assert isinstance(platform, OtoboPlatform) and isinstance(platform, TicketPlatform)
    assert (platform.name, platform.queue, platform.customer_user, platform.ticket_types["incident"]) == \
        ("otobo", "Infrastructure", "monitoring", "")
    assert platform.client.warn == warnings.append
    assert platforms.build_platform("otobo", OTOBO).queue == DEFAULT_QUEUE


def test_unknown_options_are_named_with_the_allowed_ones():
    with pytest.raises(ValidationError) as info:
        platforms.build_platform("otobo", dict(OTOBO, queue="Raw", colour="red"))
    message = str(info.value)
    assert "unknown option(s) colour, queue" in message and "allowed: ca_path, correlation_field, customer_user" in message


def test_types_and_required_options_are_validated(monkeypatch):
    for name in ("OTOBO_URL", "OTOBO_USERNAME", "OTOBO_PASSWORD", "OTOBO_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="missing required arguments: url; one of the following is required: password, password_file"):
        platforms.validate_options("otobo", {"username": "u"})
    with pytest.raises(ValidationError, match="timeout"):
        platforms.validate_options("otobo", dict(OTOBO, timeout="soon"))
    with pytest.raises(ValidationError, match="must be a mapping"):
        platforms.validate_options("otobo", "url=http://x")


def test_password_file_is_read_masked_and_exclusive(monkeypatch, tmp_path):
    for name in ("OTOBO_PASSWORD", "OTOBO_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    secret_file = tmp_path / "otobo-password"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    options = {"url": "http://otobo.test", "username": "alertbot", "password_file": str(secret_file)}
    assert platforms.secret_values("otobo", options) == {SECRET}
    platform = platforms.build_platform("otobo", options)
    assert platform.client._password == SECRET  # pylint: disable=protected-access
    with pytest.raises(ValidationError, match="parameters are mutually exclusive: password[|]password_file"):
        platforms.validate_options("otobo", dict(options, password="other"))
    monkeypatch.setenv("OTOBO_PASSWORD", "from-env")  # the env fallback counts as set
    with pytest.raises(ValidationError, match="mutually exclusive"):
        platforms.build_platform("otobo", options)
    monkeypatch.delenv("OTOBO_PASSWORD")
    monkeypatch.setenv("OTOBO_PASSWORD_FILE", str(secret_file))
    assert platforms.secret_values("otobo", {"url": "http://otobo.test", "username": "alertbot"}) == {SECRET}
    missing = dict(options, password_file=str(tmp_path / "nope"))
    assert platforms.secret_values("otobo", missing) == set()
    with pytest.raises(ValidationError, match="password_file .*nope does not exist"):
        platforms.build_platform("otobo", missing)


def test_env_fallbacks_apply_and_their_secrets_are_reported(monkeypatch):
    monkeypatch.setenv("OTOBO_URL", "http://from-env.test")
    monkeypatch.setenv("OTOBO_USERNAME", "envbot")
    monkeypatch.setenv("OTOBO_PASSWORD", SECRET)
    options = platforms.validate_options("otobo", {"customer_user": "monitoring"})
    assert (options["url"], options["username"], options["password"], options["timeout"]) == ("http://from-env.test", "envbot", SECRET, 30)
    assert platforms.secret_values("otobo", {"customer_user": "monitoring"}) == {SECRET}
    assert platforms.secret_values("otobo", dict(OTOBO, password="given")) == {"given"}


# -- ims_sop: argument surface and masking through both module runners -------------------------


def test_ims_sop_argument_surface():
    spec = ims_sop.argument_spec()
    assert spec["platform"] == dict(type="str", default="otobo", choices=["jira", "otobo", "servicenow"])
    assert spec["platform_options"] == dict(type="dict", default={})
    assert spec["queue"] == dict(type="str")
    flat = set(OTOBO_CONNECTION_ARGSPEC) | {"customer_user", "state_map", "ticket_types", "priority_map", "dynamic_field_map"}
    assert not flat & set(spec), "the flat OTOBO options left ims_sop"


@pytest.fixture(scope="module")
def sim():
    config = {"dynamic_fields": [{"name": name, "type": "Text"} for name in sorted(FIELD_MAP.values())],
              "agents": [{"login": "alertbot", "password": SECRET, "id": 3}]}
    server = start_in_thread("otobo", config)
    yield server
    server.stop()


def identify_args(sim, tmp_path, **overrides):
    args = dict(sop="incident_identify", platform_options={"url": sim.url, "path_prefix": "/otobo", "username": "alertbot", "password": SECRET,
                                                           "customer_user": "monitoring", "ticket_types": {"incident": ""}},
                queue="Raw", title="db down, agent password " + SECRET, reporter="jdoe", detection_source="user_report",
                affected_service="postgres", description="refused", actor="sd-anna", actor_role="service_desk",
                ledger_path=str(tmp_path / "audit.sqlite3"))
    args.update(overrides)
    return args


def test_platform_secrets_are_masked_by_ansible_module(sim, tmp_path, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with patch_module_args(identify_args(sim, tmp_path)), pytest.raises(SystemExit):
        ims_sop.main()
    monkeypatch.undo()
    result = json.loads(out.getvalue())
    assert result.get("failed") is not True, result
    assert result["changed"] is True and result["record"]["id"]
    assert SECRET not in out.getvalue()
    assert result["record"]["title"] == "db down, agent password ********"
    if "invocation" in result:  # ansible-core 2.19 echoes the arguments; 2.21 leaves them to the controller
        assert result["invocation"]["module_args"]["platform_options"]["password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_platform_secrets_are_masked_in_process(sim, tmp_path):
    result = run_main_in_process("ims_sop", identify_args(sim, tmp_path), check_mode=False, diff=False)
    assert result.get("failed") is not True, result
    assert SECRET not in json.dumps(result)
    assert result["record"]["title"] == "db down, agent password ********"


def test_bad_platform_options_fail_without_echoing_secrets(sim, tmp_path):
    args = identify_args(sim, tmp_path)
    args["platform_options"] = dict(args["platform_options"], colour=SECRET)
    result = run_main_in_process("ims_sop", args, check_mode=False, diff=False)
    assert result["failed"] is True and result["error_class"] == "ValidationError"
    assert "unknown option(s) colour" in result["msg"] and SECRET not in json.dumps(result)


# -- ims_sop on ServiceNow: secrets masked, one OAuth token for several module runs -------------------------

SN_SECRET = "cs-Hq42-not-in-results"
SN_PASSWORD = "pw-Tr55-not-in-results"


@pytest.fixture(scope="module")
def sn_sim():
    config = {"users": {"itsm.bot": {"password": SN_PASSWORD, "roles": ["itil"]}, "admin": {"password": "admin-pw", "roles": ["admin"]}},
              "oauth_clients": {"labops": {"secret": SN_SECRET, "user": "itsm.bot"}}}
    server = start_in_thread("servicenow", config)
    yield server
    server.stop()


def test_ims_sop_on_servicenow_masks_secrets_and_reuses_one_token(sn_sim, tmp_path):
    password_file = tmp_path / "sn-password"
    password_file.write_text(SN_PASSWORD + "\n")
    password_file.chmod(0o600)
    event = {"event_id": "ev-sn-1", "service": "pve03", "source": "automated_alert", "alert_type": "HostDown", "severity": "critical",
             "summary": "token " + SN_SECRET}
    args = dict(sop="monitoring_intake", platform="servicenow", queue="Infrastructure",
                platform_options={"instance": sn_sim.url, "client_id": "labops", "client_secret": SN_SECRET, "username": "itsm.bot",
                                  "password_file": str(password_file), "token_cache": str(tmp_path / "tokens"), "caller": "monitoring"},
                event=event, impact="high", actor="eda", actor_role="automation", ledger_path=str(tmp_path / "audit.sqlite3"))
    sn_sim.reset()
    first = run_main_in_process("ims_sop", args, check_mode=False, diff=False)
    assert first.get("failed") is not True, first
    again = run_main_in_process("ims_sop", args, check_mode=False, diff=False)
    assert (first["changed"], first["record"]["id"], first["record"]["severity_level"]) == (True, "INC0010001", "S1")
    assert (again["changed"], again["duplicate_of"]) == (False, "INC0010001")
    for result in (first, again):
        assert SN_SECRET not in json.dumps(result) and SN_PASSWORD not in json.dumps(result)
    operations = [entry["operation"] for entry in sn_sim.requests()]
    assert operations.count("POST oauth_token") == 1  # the second module run reused the cached token
    assert operations.count("POST incident") == 1
    incident = sn_sim.state()["tables"]["incident"][0]
    groups = {row["sys_id"]: row["name"] for row in sn_sim.state()["tables"]["sys_user_group"]}
    assert (groups[incident["assignment_group"]], incident["priority"]) == ("Infrastructure", "1")


# -- ims_sop on Jira: secrets masked (also one read from a file), find-else-create under the creation lock -------------------------

JIRA_TOKEN = "jt-Pw93-not-in-results"


@pytest.fixture(scope="module")
def jira_sim():
    config = {"users": {"bot@example.com": {"api_token": JIRA_TOKEN, "account_id": "5b10a2844c20165700ede21g", "display_name": "Alert Bot",
                                            "name": "itsm.bot", "password": "bot-pw", "pat": "jira-pat-123"}}}
    server = start_in_thread("jira", config)
    yield server
    server.stop()


def test_ims_sop_on_jira_masks_secrets_and_creates_once(jira_sim, tmp_path):
    token_file = tmp_path / "jira-token"
    token_file.write_text(JIRA_TOKEN + "\n")
    token_file.chmod(0o600)
    options = {"url": jira_sim.url, "username": "bot@example.com", "api_token_file": str(token_file), "cache_dir": str(tmp_path / "cache")}
    assert platforms.secret_values("jira", options) == {JIRA_TOKEN}
    event = {"event_id": "ev-j-1", "service": "pve03", "source": "automated_alert", "alert_type": "HostDown", "severity": "critical",
             "summary": "token " + JIRA_TOKEN, "correlation_key": "feedfacefeedfacefeedface"}
    args = dict(sop="monitoring_intake", platform="jira", queue="OPS/Virtualisation", platform_options=options, event=event, impact="high",
                actor="eda", actor_role="automation", ledger_path=str(tmp_path / "audit.sqlite3"))
    jira_sim.reset()
    first = run_main_in_process("ims_sop", args, check_mode=False, diff=False)
    assert first.get("failed") is not True, first
    again = run_main_in_process("ims_sop", args, check_mode=False, diff=False)
    assert (first["changed"], first["record"]["id"], first["record"]["severity_level"]) == (True, "OPS-1", "S1")
    assert (again["changed"], again["duplicate_of"]) == (False, "OPS-1")
    for result in (first, again):
        assert JIRA_TOKEN not in json.dumps(result)
    operations = [entry["operation"] for entry in jira_sim.requests()]
    assert operations.count("POST issue") == 1 and operations.count("GET serverInfo") == 1  # the deployment is cached on disk
    [issue] = jira_sim.state()["issues"].values()
    assert (issue["key"], issue["components"], issue["priority"]) == ("OPS-1", ["Virtualisation"], "Highest")
