"""The adapters the SOP contract suite runs against: one entry per TicketPlatform implementation.

Each harness starts its backend once (``start``), hands out a fresh, empty platform per test
(``new_platform``), and can tell the test what is stored (``snapshot``, ``notes``), how to lose the reply
of the next create after it was applied (``lose_next_create_reply``) and what the platform shows for an
IMS record (``check_mapping``).

The harnesses read what is stored straight from their simulator (its state, or Jira's REST API as the admin with
urllib), never through the code under test.
"""

import base64
import json
import tempfile
import urllib.error
import urllib.request

from ansible_collections.labops.itsm.plugins.module_utils import _priority as prio
from ansible_collections.labops.itsm.plugins.module_utils._jira import client_from_params as jira_client
from ansible_collections.labops.itsm.plugins.module_utils._jira_ims import DEFAULT_STATUSES as JIRA_STATUSES
from ansible_collections.labops.itsm.plugins.module_utils._jira_ims import PROPERTY as JIRA_PROPERTY
from ansible_collections.labops.itsm.plugins.module_utils._jira_ims import JiraPlatform
from ansible_collections.labops.itsm.plugins.module_utils._jira_markup import adf_to_text
from ansible_collections.labops.itsm.plugins.module_utils._otobo import client_from_params
from ansible_collections.labops.itsm.plugins.module_utils._otobo_ims import DEFAULT_STATE_MAP, FIELD_MAP, OtoboPlatform
from ansible_collections.labops.itsm.plugins.module_utils._servicenow import client_from_params as servicenow_client
from ansible_collections.labops.itsm.plugins.module_utils._servicenow_ims import CHANGE_APPROVAL, HOLD_AWAITING_VENDOR, ServiceNowPlatform
from ansible_collections.labops.itsm.plugins.module_utils._servicenow_ims import DEFAULT_STATE_MAP as SN_STATE_MAP
from simulators.harness import start_in_thread
from tests.unit.contract.fake_platform import FakePlatform

OTOBO_SIM_CONFIG = {"dynamic_fields": [{"name": name, "type": "Text"} for name in sorted(FIELD_MAP.values())]}
# the default simulator is a stock install (type Unclassified only), so the entity lives in IMSEntity alone
NO_TYPES = {"incident": "", "problem": "", "change_request": ""}


class FakeAdapter:
    name = "fake"

    def start(self):
        pass

    def stop(self):
        pass

    def new_platform(self):
        return FakePlatform(queue="service-desk")

    @staticmethod
    def snapshot(platform):
        return platform.snapshot()

    @staticmethod
    def notes(platform, ref):
        return list(platform.notes[ref])

    @staticmethod
    def lose_next_create_reply(platform):
        platform.lose_create_replies += 1

    @staticmethod
    def records_with_key(platform, key):
        return [ref for ref, record in platform.records.items() if record.get("correlation_key") == key]

    @staticmethod
    def check_mapping(record):
        pass

    @staticmethod
    def check_kb(platform, ref, kb_id, title, content):
        """No knowledge base: the planned reference is the link."""
        assert kb_id == "KB-" + ref, kb_id


class OtoboAdapter:
    """OtoboPlatform over the OTOBO simulator (real HTTP); one simulator, reset for every test."""

    name = "otobo"

    def __init__(self, config=None):
        self.config = config or OTOBO_SIM_CONFIG
        self.sim = None

    def start(self):
        self.sim = start_in_thread("otobo", self.config)

    def stop(self):
        self.sim.stop()

    def client(self, **options):
        params = dict({"url": self.sim.url, "username": "alertbot", "password": "s3cret", "path_prefix": "/otobo"}, **options)
        return client_from_params(params)

    def new_platform(self, ticket_types=None, **client_options):
        self.sim.reset()
        return OtoboPlatform(self.client(**client_options), queue="Raw", customer_user="monitoring",
                             ticket_types=NO_TYPES if ticket_types is None else ticket_types)

    def tickets(self):
        return self.sim.state()["tickets"]

    def snapshot(self, platform):
        """Every ticket: state, non-empty dynamic fields, article count."""
        return {t["TicketID"]: (t["StateID"], sorted((k, v) for k, v in t["DynamicField"].items() if v), len(t["Article"]))
                for t in self.tickets()}

    def raw_ticket(self, ticket_id):
        """TicketGet straight from the simulator (not through the code under test)."""
        url = f"{self.sim.otobo_base}/Ticket/{ticket_id}?UserLogin=alertbot&Password=s3cret&DynamicFields=1&AllArticles=1"
        with urllib.request.urlopen(url) as response:
            data = json.loads(response.read())
        return (data.get("Ticket") or [None])[0]

    def notes(self, platform, ref):
        ticket = self.raw_ticket(platform.get("incident", ref)["_ticket_id"])
        return [{"subject": a["Subject"], "body": a["Body"], "visible": bool(a["IsVisibleForCustomer"])} for a in ticket["Article"]]

    def lose_next_create_reply(self, platform):
        self.sim.inject(kind="drop", operations=["TicketCreate"], after_apply=True, count=1)

    def records_with_key(self, platform, key):
        return [t["TicketNumber"] for t in self.tickets() if t["DynamicField"].get(FIELD_MAP["correlation_key"]) == key]

    @staticmethod
    def check_kb(platform, ref, kb_id, title, content):
        """OTOBO has no knowledge base the adapter writes: the planned reference is the link."""
        assert kb_id == "KB-" + ref, kb_id

    @staticmethod
    def check_mapping(record):
        """The OTOBO state and priority the IMS record shows (default maps)."""
        assert record["platform_state"] == DEFAULT_STATE_MAP[record["entity"]][record["status"]], record
        if record.get("severity_level"):
            assert record["platform_priority"] == prio.severity_to_priority(record["severity_level"], "otobo"), record


# The IMS teams as ServiceNow assignment groups (the intake team service_desk is the routed queue, "Service Desk").
SN_TEAM_GROUPS = {"L1": "L1 Support", "L2": "L2 Support", "L3": "L3 Engineering", "incident_manager": "Incident Management",
                  "change_mgmt": "Change Management", "facilities": "Facilities", "devops": "DevOps"}
# closed_read_only off: the IMS records the PIR and the KB link on closed incidents, so the integration account
# needs write access to them (on a real instance: an ACL for its role); test_servicenow_platform shows the default.
SN_SIM_CONFIG = {"closed_read_only": False,
                 "seed_rows": {"sys_user_group": [{"name": name} for name in sorted(SN_TEAM_GROUPS.values())]}}
SN_CREDENTIALS = {"client_id": "labops", "client_secret": "client-secret", "username": "itsm.bot", "password": "bot-pw"}
SN_TASK_TABLES = ("incident", "problem", "change_request")


class ServiceNowAdapter:
    """ServiceNowPlatform over the ServiceNow simulator (real HTTP, OAuth); one simulator, reset for every test."""

    name = "servicenow"

    def __init__(self, config=None):
        self.config = config or SN_SIM_CONFIG
        self.sim = None
        self.cache = None

    def start(self):
        self.sim = start_in_thread("servicenow", self.config)
        self.cache = tempfile.TemporaryDirectory(prefix="sn-tokens-")

    def stop(self):
        self.sim.stop()
        self.cache.cleanup()

    def client(self, **options):
        params = dict(SN_CREDENTIALS, instance=self.sim.url, token_cache=self.cache.name, **options)
        return servicenow_client(params)

    def new_platform(self, **options):
        self.sim.reset()
        return ServiceNowPlatform(self.client(), queue="Service Desk", caller="monitoring", team_groups=SN_TEAM_GROUPS, **options)

    def tables(self):
        return self.sim.state()["tables"]

    def row(self, number):
        tables = self.tables()
        return next(dict(row, _table=table) for table in SN_TASK_TABLES for row in tables.get(table, []) if row.get("number") == number)

    def snapshot(self, platform):
        """Every task record (all fields) and every journal entry."""
        tables = self.tables()
        return {table: sorted((sorted(row.items()) for row in tables.get(table, [])), key=str)
                for table in SN_TASK_TABLES + ("sys_journal_field",)}

    def notes(self, platform, ref):
        sys_id = self.row(ref)["sys_id"]
        return [{"subject": entry["value"].split("\n", 1)[0], "body": entry["value"], "visible": entry["element"] == "comments"}
                for entry in self.tables().get("sys_journal_field", []) if entry["element_id"] == sys_id]

    def lose_next_create_reply(self, platform):
        self.sim.inject(kind="drop", operations=["POST incident"], after_apply=True, count=1)

    def records_with_key(self, platform, key):
        return [row["number"] for row in self.tables().get("incident", []) if row.get("correlation_id") == key]

    def check_kb(self, platform, ref, kb_id, title, content):
        """One kb_knowledge article per source record, named by its number, with the title and content."""
        source = self.row(ref)["sys_id"]
        articles = [row for row in self.tables().get("kb_knowledge", []) if row.get("source") == source]
        assert [row["number"] for row in articles] == [kb_id], (kb_id, articles)
        if title is not None:
            assert articles[0]["short_description"] == title, articles[0]
        assert articles[0]["text"] == content, articles[0]

    def check_mapping(self, record):
        """The native state, priority, hold reason, close fields, approval and group the IMS record shows."""
        row = self.row(record["id"])
        entity = record["entity"]
        assert row["_table"] == entity, (row["_table"], record)
        assert row["state"] == SN_STATE_MAP[entity][record["status"]], (row["state"], record)
        assert row["u_ims_status"] == record["status"], row
        if record.get("severity_level"):
            pair = prio.servicenow_impact_urgency(record["severity_level"])
            assert (row["impact"], row["urgency"]) == (pair["impact"], pair["urgency"]), row
            assert row["priority"] == prio.severity_to_priority(record["severity_level"], "servicenow"), row
        if entity == "incident":
            assert row["hold_reason"] == (HOLD_AWAITING_VENDOR if record["status"] == "pending_vendor" else ""), row
            if record["status"] in ("resolved", "closed"):
                assert row["close_code"] and row["close_notes"], row
        if entity == "change_request":
            assert row["approval"] == CHANGE_APPROVAL[record["status"]], row
        if record.get("assigned_team"):
            groups = {group["sys_id"]: group["name"] for group in self.tables()["sys_user_group"]}
            expected = "Service Desk" if record["assigned_team"] == "service_desk" else SN_TEAM_GROUPS[record["assigned_team"]]
            assert groups[row["assignment_group"]] == expected, (row, record)


JIRA_CREDENTIALS = {"cloud": {"username": "bot@example.com", "password": "jira-api-token"},
                    "datacenter": {"token": "jira-pat-123"}}
JIRA_ADMIN = {"cloud": ("admin@example.com", "admin-token"), "datacenter": ("admin", "admin-pw")}


class JiraAdapter:
    """JiraPlatform over the Jira simulator (real HTTP) in Cloud (v3, ADF) or Data Center (v2, wiki, PAT) mode;
    one simulator, reset for every test; every platform gets its own cache directory (creation index)."""

    name = "jira"
    mode = "cloud"

    def __init__(self, config=None):
        self.config = dict(config or {}, mode=self.mode)
        self.sim = None
        self.cache = None
        self.platforms = 0

    def start(self):
        self.sim = start_in_thread("jira", self.config)
        self.cache = tempfile.TemporaryDirectory(prefix="jira-cache-")

    def stop(self):
        self.sim.stop()
        self.cache.cleanup()

    def client(self, **options):
        self.platforms += 1
        params = dict(JIRA_CREDENTIALS[self.mode], url=self.sim.url, cache_dir=f"{self.cache.name}/{self.platforms}", **options)
        return jira_client(params)

    def new_platform(self, **options):
        self.sim.reset()
        return JiraPlatform(self.client(), project="OPS", **options)

    def raw(self, path):
        """GET ``/rest/api/2/<path>`` as the admin (not through the code under test); None on 404."""
        user, secret = JIRA_ADMIN[self.mode]
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        request = urllib.request.Request(f"{self.sim.url}/rest/api/2/{path}", headers={"Authorization": "Basic " + token})
        try:
            with urllib.request.urlopen(request) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def keys(self):
        issues = self.sim.state()["issues"]
        return sorted((issue.get("key") or ref for ref, issue in issues.items()), key=lambda k: int(k.rsplit("-", 1)[1]))

    def issue(self, key):
        return self.raw(f"issue/{key}?fields=*all&properties={JIRA_PROPERTY}")

    def snapshot(self, platform):
        """Every issue as the simulator keeps it (fields, property, comments, links)."""
        return json.dumps(self.sim.state()["issues"], sort_keys=True)

    def notes(self, platform, ref):
        """The description (the first note), then every comment; Jira comments are all visible."""
        issue = self.issue(ref)
        texts = [issue["fields"].get("description")] + [c["body"] for c in self.raw(f"issue/{ref}/comment")["comments"]]
        result = []
        for text in texts:
            if text:
                plain = adf_to_text(text) if isinstance(text, dict) else str(text)
                result.append({"subject": plain.split("\n", 1)[0], "body": plain, "visible": True})
        return result

    def lose_next_create_reply(self, platform):
        self.sim.inject(kind="drop", operations=["POST issue"], after_apply=True, count=1)

    def records_with_key(self, platform, key):
        return [k for k in self.keys() if platform.label(key) in self.issue(k)["fields"]["labels"]]

    @staticmethod
    def check_kb(platform, ref, kb_id, title, content):
        """No knowledge base on plain Jira: the planned reference is the link."""
        assert kb_id == "KB-" + ref, kb_id

    def check_mapping(self, record):
        """The workflow status, priority, labels, issue type and property the IMS record shows."""
        issue = self.issue(record["id"])
        fields, entity = issue["fields"], record["entity"]
        assert fields["status"]["name"] == JIRA_STATUSES[entity][record["status"]], (fields["status"], record)
        assert fields["issuetype"]["name"] == {"incident": "Incident", "problem": "Problem", "change_request": "Change"}[entity]
        kept = issue["properties"][JIRA_PROPERTY]
        assert (kept["entity"], kept["status"]) == (entity, record["status"]), kept
        if record.get("severity_level"):
            assert fields["priority"]["name"] == prio.severity_to_priority(record["severity_level"], "jira"), (fields["priority"], record)
        if record.get("correlation_key"):
            assert "labops-" + record["correlation_key"] in fields["labels"], fields["labels"]
        assert "alertmanager" in fields["labels"]
        done = fields["status"]["statusCategory"]["key"] == "done"
        assert bool(fields.get("resolution")) == done and bool(fields.get("resolutiondate")) == done, fields


class JiraDataCenterAdapter(JiraAdapter):
    mode = "datacenter"


ADAPTERS = {"fake": FakeAdapter, "otobo": OtoboAdapter, "servicenow": ServiceNowAdapter, "jira-cloud": JiraAdapter,
            "jira-datacenter": JiraDataCenterAdapter}
