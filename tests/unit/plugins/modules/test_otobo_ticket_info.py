# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""otobo_ticket_info at run() level with Mock(spec=OtoboClient) and a module stand-in."""


from unittest.mock import Mock

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._otobo import OtoboClient
from ansible_collections.labops.itsm.plugins.modules import otobo_ticket_info

KEY = "3f9c2a7b1d0e4c55aa00bb11"


class FakeModule:
    def __init__(self, **params):
        self.params = {name: None for name in otobo_ticket_info.argument_spec()}
        self.params.update(open_only=False, limit=50, articles=False, history=False)
        self.params.update(params)
        self.check_mode = True
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)


def make_client():
    client = Mock(spec=OtoboClient)
    client.get_ticket.side_effect = lambda tid, articles=False: None if tid == 404 else {"ticket_id": tid, "articles": []}
    client.get_tickets.side_effect = lambda ids, articles=False: (
        {"ticket_id": tid, "articles": []} for tid in ids if tid != 404)
    client.ticket_url.side_effect = lambda tid: "u/%s" % tid
    return client


def test_by_id():
    client = make_client()
    result = otobo_ticket_info.run(FakeModule(ticket_id=7, articles=True), client)
    assert result == {"changed": False, "tickets": [{"ticket_id": 7, "articles": [], "ticket_url": "u/7"}]}
    client.get_ticket.assert_called_once_with(7, articles=True)


def test_by_id_missing_is_empty():
    assert otobo_ticket_info.run(FakeModule(ticket_id=404), make_client())["tickets"] == []


def test_by_number():
    client = make_client()
    client.find_ticket_by_number.return_value = {"ticket_id": 9}
    assert otobo_ticket_info.run(FakeModule(ticket_number="2025"), client)["tickets"][0]["ticket_id"] == 9


def test_by_correlation_key():
    client = make_client()
    client.find_by_correlation_key.return_value = {"ticket_id": 3}
    module = FakeModule(correlation_key=KEY, open_only=True)
    assert otobo_ticket_info.run(module, client)["tickets"][0]["ticket_id"] == 3
    client.find_by_correlation_key.assert_called_once_with(KEY, open_only=True, articles=False)


def test_search_criteria_and_limit():
    client = make_client()
    client.search_ticket_ids.return_value = [5, 404, 3, 2]
    result = otobo_ticket_info.run(FakeModule(queue=["Storage"], states=["new", "open"], title="*disk*", limit=3), client)
    client.search_ticket_ids.assert_called_once_with(Limit=3, Queues=["Storage"], States=["new", "open"], Title="*disk*")
    assert [t["ticket_id"] for t in result["tickets"]] == [5, 3]


def test_history():
    client = make_client()
    client.history.return_value = [{"HistoryType": "NewTicket"}]
    result = otobo_ticket_info.run(FakeModule(ticket_id=7, history=True), client)
    assert result["tickets"][0]["history"] == [{"HistoryType": "NewTicket"}]


def test_limit_below_one_is_rejected_before_any_request():
    client = make_client()
    with pytest.raises(ValidationError, match="limit must be at least 1, got 0"):
        otobo_ticket_info.run(FakeModule(title="*disk*", limit=0), client)
    client.search_ticket_ids.assert_not_called()
