"""OtoboClient.get_tickets against the OTOBO simulator: chunked TicketGet, AccessDenied fallback, laziness."""

from __future__ import annotations

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._otobo import client_from_params
from ansible_collections.labops.itsm.plugins.module_utils._otobo_ims import OtoboPlatform
from simulators.harness import start_in_thread

AGENTS = [
    {"login": "root@localhost", "password": "root", "id": 1, "first_name": "Admin", "last_name": "OTOBO", "email": "root@localhost"},
    {"login": "alertbot", "password": "s3cret", "id": 3, "first_name": "Alert", "last_name": "Bot", "email": "alertbot@corp.test",
     "deny_create_queues": [], "deny_rw_queues": [], "deny_ro_queues": ["Storage"]},
    {"login": "creator", "password": "s3cret", "id": 4, "first_name": "Cre", "last_name": "Ator", "email": "creator@corp.test"},
]


@pytest.fixture(scope="module")
def sim():
    server = start_in_thread("otobo", {"agents": AGENTS})
    yield server
    server.stop()


def client_for(sim, login="alertbot"):
    return client_from_params({"url": sim.url, "username": login, "password": "s3cret", "path_prefix": "/otobo"})


def make_tickets(sim, queues):
    creator = client_for(sim, "creator")
    return [creator.create_ticket({"title": f"batch {index}", "queue": queue, "state": "new", "priority": "3 normal",
                                   "customer_user": "monitoring"},
                                  {"subject": "s", "body": "b", "content_type": "text/plain; charset=utf8",
                                   "communication_channel": "Internal", "sender_type": "system"})["ticket_id"] for index, queue in enumerate(queues)]


def counts(sim):
    return dict(sim.state()["requests"])


def test_reads_in_chunks_in_order(sim):
    ids = make_tickets(sim, ["Raw"] * 30)
    client = client_for(sim)
    before = counts(sim).get("TicketGet", 0)
    tickets = list(client.get_tickets(ids, chunk=25))
    assert [t["ticket_id"] for t in tickets] == ids
    assert all(t["dynamic_fields"] is not None for t in tickets)
    assert counts(sim)["TicketGet"] - before == 2  # 25 + 5, not 30 calls


def test_one_unreadable_ticket_falls_back_to_single_reads(sim):
    ids = make_tickets(sim, ["Raw", "Storage", "Raw"])  # alertbot may not read Storage
    client = client_for(sim)
    before = counts(sim).get("TicketGet", 0)
    tickets = list(client.get_tickets(ids, chunk=25))
    assert [t["ticket_id"] for t in tickets] == [ids[0], ids[2]]
    assert counts(sim)["TicketGet"] - before == 1 + 3  # the refused list, then one by one


def test_stops_reading_when_the_caller_stops(sim):
    ids = make_tickets(sim, ["Raw"] * 12)
    client = client_for(sim)
    before = counts(sim).get("TicketGet", 0)
    reader = client.get_tickets(ids, chunk=5)
    first = next(reader)
    reader.close()
    assert first["ticket_id"] == ids[0]
    assert counts(sim)["TicketGet"] - before == 1


def test_platform_search_reads_results_in_chunks(sim):
    make_tickets(sim, ["Platform"] * 40)
    platform = OtoboPlatform(client_for(sim), queue="Platform", customer_user="monitoring",
                             ticket_types={"incident": "", "problem": "", "change_request": ""})
    before = dict(counts(sim))
    found = platform.search("incident", limit=500)
    after = counts(sim)
    # Tickets without IMS fields are no incidents; what matters is how they were read.
    assert found == []
    assert after["TicketSearch"] - before.get("TicketSearch", 0) == 1
    assert after["TicketGet"] - before.get("TicketGet", 0) == 2  # 40 tickets in chunks of 25
