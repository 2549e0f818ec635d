# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OtoboClient against the simulator for what a live OTOBO 11.0 did (issue 6): the 191-character
title, the ticket-type switch, wrong-case queues, create-only rights and the session table."""


import os

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._errors import AmbiguousWriteError, AuthError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._otobo import (
    TITLE_MAX_LENGTH,
    client_from_params,
    marker,
    title_with_marker,
)
from simulators.harness import start_in_thread

KEY = "3f9c2a7b1d0e4c55aa00bb11"
ARTICLE = {"subject": "Disk full", "body": "97%", "content_type": "text/plain; charset=utf8"}


def ticket(**overrides):
    values = {"title": "Disk full", "queue": "Raw", "priority": "3 normal", "state": "new", "customer_user": "monitoring"}
    values.update(overrides)
    return values


def make_client(sim, **params):
    base = {"url": sim.url, "username": "alertbot", "password": "s3cret"}
    base.update(params)
    return client_from_params(base)


@pytest.fixture()
def sim():
    server = start_in_thread("otobo", {
        "agents": [{"login": "alertbot", "password": "s3cret", "id": 3, "create_only_queues": ["Storage"]}],
    })
    yield server
    server.stop()


# -- B1: titles and the correlation marker -----------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 150, 161, 162, 191, 300, 1000])
def test_title_with_marker_keeps_the_marker_within_191_characters(length):
    title = "T" * length or "x"
    result = title_with_marker(title, KEY)
    assert len(result) <= TITLE_MAX_LENGTH
    assert result.endswith(marker(KEY))
    # Stable: the stored form maps to itself, so comparisons with what OTOBO returns never differ.
    assert title_with_marker(result, KEY) == result
    if len(title) + len(marker(KEY)) <= TITLE_MAX_LENGTH:
        assert result == title + marker(KEY)
    else:
        assert result == title[:TITLE_MAX_LENGTH - len(marker(KEY)) - 1] + "\u2026" + marker(KEY)


def test_title_without_key_is_fitted_too():
    assert len(title_with_marker("y" * 400, None)) == TITLE_MAX_LENGTH
    assert title_with_marker("  short  ", None) == "short"


def test_long_title_round_trips_and_is_found_by_key(sim):
    client = make_client(sim)
    wanted = title_with_marker("[FIRING] " + "very long alert summary " * 12, KEY)
    created = client.create_ticket(ticket(title=wanted), ARTICLE)
    stored = client.get_ticket(created["ticket_id"])
    assert stored["title"] == wanted  # nothing was cut by the server
    found = client.find_by_correlation_key(KEY)
    assert found is not None and found["ticket_id"] == created["ticket_id"]


# -- B3: Ticket::Type ------------------------------------------------------------------------------------


def test_missing_ticket_type_says_what_to_set():
    with start_in_thread("otobo", {"ticket_types": ["Incident"], "ticket_type_required": True}) as sim:
        client = make_client(sim)
        with pytest.raises(ValidationError) as caught:
            client.create_ticket(ticket(), ARTICLE)
        message = str(caught.value)
        assert "TicketCreate.MissingParameter" in message and "required by sysconfig option" in message
        assert "ticket type" in message and "ticket_types in" in message and "platform_options" in message
        assert client.create_ticket(ticket(type="Incident"), ARTICLE)["ticket_id"]


def test_unknown_ticket_type_says_how_to_fix(sim):
    with pytest.raises(ValidationError) as caught:
        make_client(sim).create_ticket(ticket(type="Incident"), ARTICLE)
    assert "does not exist in OTOBO" in str(caught.value) and "ticket_types in platform_options" in str(caught.value)


# -- C3: a definite refusal is never ambiguous ---------------------------------------------------------------


def test_wrong_case_queue_is_a_definite_refusal_sent_once(sim):
    client = make_client(sim)
    before = len(sim.state()["tickets"])
    sim.clear_requests()
    with pytest.raises(ValidationError) as caught:
        client.create_ticket(ticket(queue="raw"), ARTICLE)
    assert not isinstance(caught.value, AmbiguousWriteError)
    assert "wrong case" in str(caught.value) and "nothing was written" in str(caught.value)
    assert [entry["operation"] for entry in sim.requests() if entry["operation"] != "SessionCreate"] == ["TicketCreate"]
    assert len(sim.state()["tickets"]) == before


# -- B2: create-only rights, as the simulator models them ------------------------------------------------


def test_create_only_queue_creates_a_ticket_the_client_cannot_read(sim):
    client = make_client(sim)
    created = client.create_ticket(ticket(queue="Storage", title=title_with_marker("blind", KEY)), ARTICLE)
    assert created["ticket_id"]
    assert client.get_ticket(created["ticket_id"]) is None
    assert client.find_by_correlation_key(KEY) is None
    assert any(t["TicketID"] == created["ticket_id"] for t in sim.state()["tickets"])


# -- B4: the session table stays bounded -------------------------------------------------------------------


def test_many_runs_share_one_cached_session(sim, tmp_path):
    cache = str(tmp_path / "sessions")
    for run in range(40):
        client = make_client(sim, session_cache=cache)  # a module run builds a fresh client
        if run == 0:
            ticket_id = client.create_ticket(ticket(title=title_with_marker("steady", KEY)), ARTICLE)["ticket_id"]
        found = client.find_by_correlation_key(KEY)
        client.update_ticket(found["ticket_id"], article=dict(ARTICLE, subject="repeat %d" % run))
    state = sim.state()
    assert (state["sessions"], state["sessions_created"]) == (1, 1)
    assert len(client.get_ticket(ticket_id, articles=True)["articles"]) == 41
    assert oct(os.stat(cache).st_mode & 0o777) == "0o700"
    assert [oct(os.stat(os.path.join(cache, name)).st_mode & 0o777) for name in os.listdir(cache)] == ["0o600"]


def test_cached_session_rejected_by_the_server_is_replaced_once(sim, tmp_path):
    cache = str(tmp_path / "sessions")
    make_client(sim, session_cache=cache).search_ticket_ids(Title="*nothing*")
    sim.reset()  # the server forgets every session (as after its idle timeout)
    sim.clear_requests()
    assert make_client(sim, session_cache=cache).search_ticket_ids(Title="*nothing*") == []
    assert [entry["operation"] for entry in sim.requests()] == ["TicketSearch", "SessionCreate", "TicketSearch"]
    assert make_client(sim, session_cache=cache).search_ticket_ids(Title="*nothing*") == []


def test_wrong_password_never_rides_on_a_cached_session(sim, tmp_path):
    cache = str(tmp_path / "sessions")
    make_client(sim, session_cache=cache).search_ticket_ids(Title="*nothing*")
    with pytest.raises(AuthError):
        make_client(sim, session_cache=cache, password="wrong").search_ticket_ids(Title="*nothing*")


def test_a_cache_open_to_others_is_ignored(sim, tmp_path):
    cache = tmp_path / "sessions"
    make_client(sim, session_cache=str(cache)).search_ticket_ids(Title="*nothing*")
    os.chmod(str(cache), 0o755)
    make_client(sim, session_cache=str(cache)).search_ticket_ids(Title="*nothing*")
    assert sim.state()["sessions_created"] == 2


def test_without_cache_each_client_opens_its_own_session(sim):
    for _run in range(5):
        client = make_client(sim, session_cache="")
        client.search_ticket_ids(Title="*nothing*")
        client.search_ticket_ids(Title="*still nothing*")
    assert sim.state()["sessions_created"] == 5


def test_without_session_no_session_is_opened(sim):
    make_client(sim, use_session=False).search_ticket_ids(Title="*nothing*")
    assert sim.state()["sessions_created"] == 0
