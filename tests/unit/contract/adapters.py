"""The adapters the SOP contract suite runs against: one entry per TicketPlatform implementation.

Each harness starts its backend once (``start``), hands out a fresh, empty platform per test
(``new_platform``), and can tell the test what is stored (``snapshot``, ``notes``), how to lose the reply
of the next create after it was applied (``lose_next_create_reply``) and what the platform shows for an
IMS record (``check_mapping``). ServiceNow and Jira join by adding a harness to ``ADAPTERS``.
"""

import json
import urllib.request

from ansible_collections.labops.itsm.plugins.module_utils import _priority as prio
from ansible_collections.labops.itsm.plugins.module_utils._otobo import client_from_params
from ansible_collections.labops.itsm.plugins.module_utils._otobo_ims import DEFAULT_STATE_MAP, FIELD_MAP, OtoboPlatform
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
    def check_mapping(record):
        """The OTOBO state and priority the IMS record shows (default maps)."""
        assert record["platform_state"] == DEFAULT_STATE_MAP[record["entity"]][record["status"]], record
        if record.get("severity_level"):
            assert record["platform_priority"] == prio.severity_to_priority(record["severity_level"], "otobo"), record


ADAPTERS = {"fake": FakeAdapter, "otobo": OtoboAdapter}
