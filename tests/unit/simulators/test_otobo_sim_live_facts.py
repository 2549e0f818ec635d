"""Simulator behaviour taken from a live OTOBO 11.0 (issue 6): title length, create-only rights,
the ticket-type switch, the session table, wrong-case queues, the request log and the lab profile."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from simulators.harness import REPO_ROOT, InThreadSimulator, start_in_thread, start_simulator
from tests.unit.simulators.test_otobo_sim import AGENT, Client, error, ticket_body

LONG_TITLE = "[FIRING] " + "x" * 250


@pytest.fixture()
def sim() -> Iterator[InThreadSimulator]:
    server = start_in_thread("otobo", {
        "agents": [{"login": "alertbot", "password": "s3cret", "id": 3, "create_only_queues": ["Storage"]}],
        "ticket_types": ["Incident"],
    })
    yield server
    server.stop()


def create(client: Client, **ticket: Any) -> dict[str, Any]:
    return client.call("POST", "/Ticket", body=ticket_body(**ticket))


def stored(sim: InThreadSimulator, ticket_id: Any) -> dict[str, Any]:
    return next(t for t in sim.state()["tickets"] if t["TicketID"] == int(ticket_id))


def test_titles_are_cut_at_191_characters_on_create(sim: InThreadSimulator) -> None:
    client = Client(sim)
    result = create(client, Title=LONG_TITLE)
    assert "Error" not in result
    title = stored(sim, result["TicketID"])["Title"]
    assert title == LONG_TITLE[:191] and len(title) == 191
    got = client.call("GET", f"/Ticket/{result['TicketID']}", params=AGENT)["Ticket"][0]["Title"]
    assert got == LONG_TITLE[:191]


def test_resending_an_over_long_title_rewrites_it_every_time(sim: InThreadSimulator) -> None:
    client = Client(sim)
    ticket_id = create(client, Title="short")["TicketID"]
    for _round in range(2):
        client.call("PATCH", f"/Ticket/{ticket_id}", body={**AGENT, "Ticket": {"Title": LONG_TITLE}})
    ticket = stored(sim, ticket_id)
    assert ticket["Title"] == LONG_TITLE[:191]
    # The comparison is with the uncut value, so the same update changes the ticket again.
    assert [h["HistoryType"] for h in ticket["History"]].count("TitleUpdate") == 2


def test_create_only_queue_creates_but_hides_the_ticket(sim: InThreadSimulator) -> None:
    client = Client(sim)
    result = create(client, Queue="Storage", Title="created blind")
    assert "Error" not in result and result["TicketID"]
    assert stored(sim, result["TicketID"])["Queue"] == "Storage"
    assert client.call("GET", "/Ticket", params={**AGENT, "Title": "created blind"}) == {}
    assert client.call("GET", "/Ticket", params={**AGENT, "Queues": "Storage"}) == {}
    assert error(client.call("GET", f"/Ticket/{result['TicketID']}", params=AGENT)) == (
        "TicketGet.AccessDenied", "TicketGet: User does not have access to the ticket!")
    assert error(client.call("PATCH", f"/Ticket/{result['TicketID']}", body={**AGENT, "Ticket": {"State": "open"}}))[0] == "TicketUpdate.AccessDenied"
    # Other queues are unaffected.
    other = create(client, Queue="Raw", Title="visible")
    assert client.call("GET", "/Ticket", params={**AGENT, "Title": "visible"}) == {"TicketID": [other["TicketID"]]}


def test_ticket_type_required_by_sysconfig() -> None:
    with start_in_thread("otobo", {"ticket_types": ["Incident"], "ticket_type_required": True}) as sim:
        client = Client(sim)
        assert error(create(client)) == (
            "TicketCreate.MissingParameter", "TicketCreate: Ticket->TypeID or Ticket->Type parameter is required by sysconfig option!")
        # Checked after Queue and before State, like the Perl operation.
        assert error(create(client, Queue="Nope"))[1] == "TicketCreate: Ticket->QueueID or Ticket->Queue parameter is invalid!"
        assert error(create(client, State="nope"))[0] == "TicketCreate.MissingParameter"
        assert "Error" not in create(client, Type="Incident")
        # TicketUpdate does not need a type.
        ticket_id = create(client, Type="Incident")["TicketID"]
        assert "Error" not in client.call("PATCH", f"/Ticket/{ticket_id}", body={**AGENT, "Ticket": {"State": "open"}})


def test_session_table_counts_live_and_created_sessions(sim: InThreadSimulator) -> None:
    client = Client(sim)
    for _round in range(3):
        client.session()
    state = sim.state()
    assert state["sessions"] == 3 and state["sessions_created"] == 3
    # Password logins on the operations themselves create no session.
    create(client)
    client.call("GET", "/Ticket", params=AGENT)
    assert sim.state()["sessions_created"] == 3
    # Expired sessions leave the table (OTOBO's cleanup); the created total stays.
    sim.advance_clock(7201)
    state = sim.state()
    assert state["sessions"] == 0 and state["sessions_created"] == 3


def test_request_log_lists_operations_in_order_and_can_be_cleared(sim: InThreadSimulator) -> None:
    client = Client(sim)
    sid = client.session()
    client.call("GET", "/Ticket", params={"SessionID": sid})
    client.raw("GET", "/Nope")
    log = sim.requests()
    assert [(e["operation"], e["method"], e["status"]) for e in log] == [
        ("SessionCreate", "POST", 200), ("TicketSearch", "GET", 200), ("<no route>", "GET", 500)]
    assert sim.operation_counts() == {"SessionCreate": 1, "TicketSearch": 1, "<no route>": 1}
    sim.clear_requests()
    assert sim.requests() == [] and sim.state()["requests"] == {}
    assert sim.state()["sessions"] == 1  # clearing the log keeps the state


def test_wrong_case_queue_is_refused_with_a_fault_and_writes_nothing(sim: InThreadSimulator) -> None:
    client = Client(sim)
    before = len(sim.state()["tickets"])
    status, headers, body = client.raw("POST", "/Ticket", body=ticket_body(Queue="raw"))
    assert status == 500 and headers["content-type"].startswith("text/plain")
    assert json.loads(body) == {"faultcode": "Server", "faultstring": "Ticket could not be created, please contact the system administrator"}
    assert len(sim.state()["tickets"]) == before


def test_lab_profile_is_ready_for_the_alert_path(tmp_path: Any) -> None:
    printed = subprocess.run([sys.executable, "-m", "simulators.otobo", "--lab", "--print-config"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True)
    config = json.loads(printed.stdout)
    assert config["ticket_types"] == ["Incident", "Problem", "RfC"]
    names = {field["name"] for field in config["dynamic_fields"]}
    assert {"AlertFingerprint", "IMSStatus", "IMSCorrelationKey"} <= names
    stock = json.loads(subprocess.run([sys.executable, "-m", "simulators.otobo", "--print-config"], cwd=REPO_ROOT,
                                      capture_output=True, text=True, check=True).stdout)
    assert stock["ticket_types"] == []
    # A --config file still overrides the profile; start the real command line.
    with start_simulator("otobo", {"queues": ["Infrastructure", "Platform", "Storage", "Lab"]}, lab=True) as sim:
        client = Client(sim)
        result = create(client, Type="Incident", Queue="Lab")
        assert "Error" not in result, result
        ticket = next(t for t in sim.state()["tickets"] if t["TicketID"] == int(result["TicketID"]))
        assert ticket["Type"] == "Incident"


def test_in_thread_lab_profile_matches_the_command_line() -> None:
    from simulators.otobo_lab import lab_overrides

    with start_in_thread("otobo", {"queues": ["Lab"]}, lab=True) as sim:
        assert sim.app.config["ticket_types"] == lab_overrides()["ticket_types"]
        assert sim.app.config["queues"] == ["Lab"]
        assert "Error" not in create(Client(sim), Type="Problem", Queue="Lab")
