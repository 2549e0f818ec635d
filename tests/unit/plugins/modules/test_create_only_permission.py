"""Issue 6 B2 on the OTOBO simulator: an agent with ``create`` but not ``ro`` on a queue.

OTOBO 11 lets such an agent create tickets, while every search answers ``{}`` (indistinguishable from "none")
and TicketGet is denied. Left alone, each run would open another ticket, silently. The governed write reads the
new ticket back the way the next run will look for it and, when it cannot, audits the creation and fails with an
error that names the missing permission; a second run then does not open a second ticket silently either.
"""


import pytest

from ansible_collections.labops.itsm.plugins.module_utils._errors import PermissionDenied
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._otobo import client_from_params
from ansible_collections.labops.itsm.plugins.module_utils._otobo_ims import FIELD_MAP, OtoboPlatform
from ansible_collections.labops.itsm.plugins.module_utils._sop import run_sop
from ansible_collections.labops.itsm.plugins.modules import otobo_ticket
from simulators.harness import start_in_thread
from tests.unit.plugins.modules.test_otobo_ticket import FakeModule, with_params

KEY = "3f9c2a7b1d0e4c55aa00bb11"
AGENTS = [
    {"login": "root@localhost", "password": "root", "id": 1, "first_name": "Admin", "last_name": "OTOBO"},
    {"login": "alertbot", "password": "s3cret", "id": 3, "first_name": "Alert", "last_name": "Bot", "create_only_queues": ["Storage"]},
]
CONFIG = {"agents": AGENTS, "dynamic_fields": [{"name": name, "type": "Text"} for name in sorted(FIELD_MAP.values())]}
EVENT = {"event_id": "ev-create-only", "service": "nas1", "source": "automated_alert", "alert_type": "DiskFull",
         "severity": "critical", "correlation_key": KEY}


@pytest.fixture(scope="module")
def sim():
    server = start_in_thread("otobo", CONFIG)
    yield server
    server.stop()


@pytest.fixture
def ledger(sim, tmp_path):
    sim.reset()
    return ledger_from_params({"ledger_path": str(tmp_path / "audit.sqlite3")})


def client(sim):
    return client_from_params({"url": sim.url, "username": "alertbot", "password": "s3cret", "path_prefix": "/otobo"})


def tickets_in_storage(sim):
    return [t for t in sim.state()["tickets"] if t["Queue"] == "Storage"]


def test_monitoring_intake_names_the_missing_read_permission(sim, ledger):
    platform = OtoboPlatform(client(sim), queue="Storage", customer_user="monitoring",
                             ticket_types={"incident": "", "problem": "", "change_request": ""})
    with pytest.raises(PermissionDenied) as caught:
        run_sop("monitoring_intake", {"event": EVENT}, actor="automation", role="automation", platform=platform, ledger=ledger)
    message = str(caught.value)
    assert "Storage" in message and "ro" in message and "alertbot" in message, message
    assert len(tickets_in_storage(sim)) == 1
    assert [record["action"] for record in ledger.query()] == ["create"]  # the ticket exists, so its creation is audited


def test_otobo_ticket_names_the_missing_read_permission(sim, ledger):
    module = FakeModule(**with_params(queue="Storage"))
    with pytest.raises(PermissionDenied) as caught:
        otobo_ticket.run(module, client(sim), ledger)
    assert "Storage" in str(caught.value) and "ro" in str(caught.value)
    assert len(tickets_in_storage(sim)) == 1
    assert [record["action"] for record in ledger.query()] == ["create"]
