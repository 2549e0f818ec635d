# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""otobo_ticket at run()/ensure_* level: Mock(spec=OtoboClient), a module stand-in, a recording ledger."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
from unittest.mock import Mock

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AmbiguousWriteError,
    AuditWriteError,
    NotFoundError,
    ValidationError,
)
from ansible_collections.labops.itsm.plugins.module_utils._otobo import OtoboClient
from ansible_collections.labops.itsm.plugins.modules import otobo_ticket

KEY = "3f9c2a7b1d0e4c55aa00bb11"
TITLE = "Disk full nas1 [ck:%s]" % KEY


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.params = base_params(**params)
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)

    def deprecate(self, *args, **kwargs):
        pass


def base_params(**overrides):
    params = dict((name, None) for name in otobo_ticket.argument_spec())
    params.update(state="present", url="http://otobo", username="alertbot", password="s3cret", actor="eda", actor_role="automation")
    params.update(overrides)
    if params.get("article"):
        article = dict(content_type="text/plain; charset=utf8", communication_channel="Internal", sender_type="system",
                       is_visible_for_customer=False, dedupe=True)
        article.update(params["article"])
        params["article"] = article
    return params


class RecordingLedger:
    def __init__(self, fail_preflight=False, fail_append=False):
        self.fail_preflight = fail_preflight
        self.fail_append = fail_append
        self.preflights = 0
        self.records = []

    def preflight(self):
        self.preflights += 1
        if self.fail_preflight:
            raise AuditWriteError("ledger /x not writable")

    def append(self, action, ref_type, ref_id, actor, **kwargs):
        if self.fail_append:
            raise AuditWriteError("disk full")
        record = dict(action=action, ref_type=ref_type, ref_id=ref_id, actor=actor, **kwargs)
        self.records.append(record)
        return record


def ticket(**overrides):
    record = dict(ticket_id=42, ticket_number="2025061110000421", title=TITLE, state="new", state_type="new",
                  priority="3 normal", queue="Storage", type="Unclassified", owner="alertbot", responsible="root@localhost",
                  lock="unlock", customer_user="monitoring", customer_id="monitoring-co", created="2025-06-11 10:00:01",
                  changed="2025-06-11 10:00:01", dynamic_fields={"LabopsCorrelationKey": None},
                  articles=[dict(article_id=97, subject="Disk full nas1", body="usage 97%")])
    record.update(overrides)
    return record


def make_client(found=None, after=None):
    client = Mock(spec=OtoboClient)
    client.find_by_correlation_key.return_value = found
    client.get_ticket.return_value = after if after is not None else found
    client.update_ticket.return_value = {"ticket_id": 42, "ticket_number": "2025061110000421", "article_id": None}
    client.ticket_url.side_effect = lambda tid: "http://otobo/otobo/index.pl?Action=AgentTicketZoom;TicketID=%s" % tid
    return client


CREATE = dict(correlation_key=KEY, title="Disk full nas1", queue="Storage", priority="3 normal", customer_user="monitoring",
              article=dict(subject="Disk full nas1", body="usage 97%"))


def with_params(**overrides):
    params = dict(CREATE)
    params.update(overrides)
    return params


EXPECTED_PAYLOAD = {
    "Ticket": {"Title": TITLE, "Queue": "Storage", "Priority": "3 normal", "CustomerUser": "monitoring", "State": "new"},
    "Article": {"Subject": "Disk full nas1", "Body": "usage 97%", "ContentType": "text/plain; charset=utf8",
                "CommunicationChannel": "Internal", "SenderType": "system", "IsVisibleForCustomer": 0},
}


def test_create_check_mode_predicts_payload_and_writes_nothing():
    module = FakeModule(check_mode=True, **CREATE)
    client, ledger = make_client(), RecordingLedger()
    result = otobo_ticket.run(module, client, ledger)
    assert result["changed"] is True and result["created"] is True and result["found"] is False
    assert result["payload"] == EXPECTED_PAYLOAD
    assert result["ticket"]["title"] == TITLE and result["ticket"]["state_type"] == "new"
    assert result["ticket_id"] is None and result["ticket_url"] is None
    assert result["audit"] == [] and ledger.preflights == 0
    client.create_ticket.assert_not_called()
    client.update_ticket.assert_not_called()
    assert result["diff"]["before"] == {} and result["diff"]["after"]["title"] == TITLE


def test_create_real_run_writes_and_audits():
    module = FakeModule(**CREATE)
    client, ledger = make_client(), RecordingLedger()
    client.create_ticket.return_value = {"ticket_id": 42, "ticket_number": "2025061110000421", "article_id": 97}
    client.get_ticket.return_value = ticket()
    result = otobo_ticket.run(module, client, ledger)
    assert result["changed"] and result["created"] and result["ticket_id"] == 42
    assert result["ticket_url"].endswith("TicketID=42")
    client.create_ticket.assert_called_once_with(
        {"title": TITLE, "queue": "Storage", "priority": "3 normal", "customer_user": "monitoring", "state": "new"},
        {"subject": "Disk full nas1", "body": "usage 97%", "content_type": "text/plain; charset=utf8",
         "communication_channel": "Internal", "sender_type": "system", "is_visible_for_customer": False},
        {})
    assert ledger.preflights == 1
    assert [r["action"] for r in ledger.records] == ["create"]
    record = ledger.records[0]
    assert record["ref_type"] == "incident" and record["ref_id"] == "2025061110000421" and record["platform"] == "otobo"
    assert record["fields"]["title"] == {"before": None, "after": TITLE}
    assert record["record_key"] == "otobo:create:42"
    assert "s3cret" not in repr(ledger.records)
    assert result["audit"] == ledger.records


def test_create_stores_key_in_correlation_field():
    module = FakeModule(check_mode=True, correlation_field="LabopsCorrelationKey", **CREATE)
    result = otobo_ticket.run(module, make_client(), RecordingLedger())
    assert result["payload"]["DynamicField"] == [{"Name": "LabopsCorrelationKey", "Value": KEY}]


def test_existing_unchanged_is_not_changed():
    module = FakeModule(**CREATE)
    client, ledger = make_client(found=ticket()), RecordingLedger()
    result = otobo_ticket.run(module, client, ledger)
    assert result["changed"] is False and result["found"] is True and result["created"] is False
    assert result["payload"] is None and result["audit"] == [] and ledger.preflights == 0
    client.update_ticket.assert_not_called()
    client.create_ticket.assert_not_called()
    assert result["diff"]["before"] == result["diff"]["after"]


def test_update_only_fields_the_user_set():
    module = FakeModule(correlation_key=KEY, priority="5 very high")
    client, ledger = make_client(found=ticket(), after=ticket(priority="5 very high")), RecordingLedger()
    result = otobo_ticket.run(module, client, ledger)
    assert result["changed"] is True
    client.update_ticket.assert_called_once_with(42, {"priority": "5 very high"}, None, {})
    assert result["payload"] == {"Ticket": {"Priority": "5 very high"}}
    assert [r["action"] for r in ledger.records] == ["update"]
    assert ledger.records[0]["fields"] == {"priority": {"before": "3 normal", "after": "5 very high"}}
    assert result["diff"]["before"]["priority"] == "3 normal" and result["diff"]["after"]["priority"] == "5 very high"


def test_update_check_mode_predicts():
    module = FakeModule(check_mode=True, correlation_key=KEY, priority="5 very high", dynamic_fields={"IMSSeverity": "S1"})
    client, ledger = make_client(found=ticket()), RecordingLedger()
    result = otobo_ticket.run(module, client, ledger)
    assert result["changed"] and result["ticket"]["priority"] == "5 very high"
    assert result["ticket"]["dynamic_fields"]["IMSSeverity"] == "S1"
    assert result["payload"] == {"Ticket": {"Priority": "5 very high"}, "DynamicField": [{"Name": "IMSSeverity", "Value": "S1"}]}
    client.update_ticket.assert_not_called()
    assert ledger.records == []


def test_article_deduped_and_added():
    client, ledger = make_client(found=ticket()), RecordingLedger()
    same = FakeModule(correlation_key=KEY, article=dict(subject="Disk full nas1", body="usage 97%"))
    assert otobo_ticket.run(same, client, ledger)["changed"] is False
    new = FakeModule(correlation_key=KEY, article=dict(subject="Update", body="migration started"))
    client.update_ticket.return_value = {"ticket_id": 42, "ticket_number": "2025061110000421", "article_id": 98}
    result = otobo_ticket.run(new, client, ledger)
    assert result["changed"] is True
    assert [r["action"] for r in ledger.records] == ["notify"]
    assert ledger.records[0]["meta"]["article_id"] == 98


def test_article_without_dedupe_always_added():
    module = FakeModule(correlation_key=KEY, article=dict(subject="Disk full nas1", body="usage 97%", dedupe=False))
    client = make_client(found=ticket())
    client.update_ticket.return_value = {"ticket_id": 42, "ticket_number": "x", "article_id": 98}
    assert otobo_ticket.run(module, client, RecordingLedger())["changed"] is True


def test_close_with_article_audits_notify_then_close():
    module = FakeModule(state="closed", correlation_key=KEY, article=dict(subject="RESOLVED", body="ok"))
    closed = ticket(state="closed successful", state_type="closed")
    client, ledger = make_client(found=ticket(), after=closed), RecordingLedger()
    client.get_ticket.return_value = closed
    client.update_ticket.return_value = {"ticket_id": 42, "ticket_number": "2025061110000421", "article_id": 99}
    result = otobo_ticket.run(module, client, ledger)
    assert result["changed"] and result["ticket"]["state_type"] == "closed"
    args = client.update_ticket.call_args[0]
    assert args[1] == {"state": "closed successful"} and args[2]["subject"] == "RESOLVED"
    assert [r["action"] for r in ledger.records] == ["notify", "close"]
    assert ledger.records[1]["fields"] == {"state": {"before": "new", "after": "closed successful"}}


def test_close_already_closed_is_unchanged():
    module = FakeModule(state="closed", correlation_key=KEY)
    client = make_client(found=ticket(state="closed unsuccessful", state_type="closed"))
    result = otobo_ticket.run(module, client, RecordingLedger())
    assert result["changed"] is False
    client.update_ticket.assert_not_called()


def test_close_missing_ticket_warns():
    module = FakeModule(state="closed", correlation_key=KEY)
    result = otobo_ticket.run(module, make_client(), RecordingLedger())
    assert result["changed"] is False and result["found"] is False and result["ticket"] is None
    assert "nothing to close" in module.warnings[0]


def test_close_rejects_open_state():
    module = FakeModule(state="closed", correlation_key=KEY, ticket_state="open")
    with pytest.raises(ValidationError, match="not a closed state"):
        otobo_ticket.run(module, make_client(), RecordingLedger())


def test_closed_needs_identity():
    with pytest.raises(ValidationError, match="needs one of"):
        otobo_ticket.run(FakeModule(state="closed"), make_client(), RecordingLedger())


def test_create_missing_options_named():
    module = FakeModule(correlation_key=KEY, title="x")
    with pytest.raises(ValidationError, match="queue, priority, customer_user, article"):
        otobo_ticket.run(module, make_client(), RecordingLedger())


def test_bad_correlation_key():
    with pytest.raises(ValidationError):
        otobo_ticket.run(FakeModule(**with_params(correlation_key="NOT HEX")), make_client(), RecordingLedger())


def test_ticket_id_not_found_fails():
    client = make_client()
    client.get_ticket.return_value = None
    with pytest.raises(NotFoundError, match="ticket 7 does not exist"):
        otobo_ticket.run(FakeModule(ticket_id=7, priority="3 normal"), client, RecordingLedger())


def test_ledger_preflight_failure_halts_before_write():
    client, ledger = make_client(), RecordingLedger(fail_preflight=True)
    with pytest.raises(AuditWriteError):
        otobo_ticket.run(FakeModule(**CREATE), client, ledger)
    client.create_ticket.assert_not_called()


def test_ledger_append_failure_after_write_says_unaudited():
    client, ledger = make_client(), RecordingLedger(fail_append=True)
    client.create_ticket.return_value = {"ticket_id": 42, "ticket_number": "2025061110000421", "article_id": 97}
    client.get_ticket.return_value = ticket()
    with pytest.raises(AuditWriteError, match="2025061110000421.*applied on OTOBO but is UNAUDITED"):
        otobo_ticket.run(FakeModule(**CREATE), client, ledger)
    client.create_ticket.assert_called_once()


def test_ambiguous_create_found_by_key_is_not_resent():
    client, ledger = make_client(), RecordingLedger()
    client.create_ticket.side_effect = AmbiguousWriteError("otobo TicketCreate (POST /Ticket): HTTP 503: busy")
    client.find_by_correlation_key.side_effect = [None, ticket()]
    client.get_ticket.return_value = ticket()
    module = FakeModule(**CREATE)
    result = otobo_ticket.run(module, client, ledger)
    assert client.create_ticket.call_count == 1
    assert result["created"] is True and result["ticket_id"] == 42
    assert [r["action"] for r in ledger.records] == ["create"]
    assert "exists; using it" in module.warnings[0]


def test_ambiguous_create_not_found_resends_once():
    client = make_client()
    client.create_ticket.side_effect = [AmbiguousWriteError("lost"), {"ticket_id": 42, "ticket_number": "n", "article_id": 1}]
    client.get_ticket.return_value = ticket()
    module = FakeModule(**CREATE)
    otobo_ticket.run(module, client, RecordingLedger())
    assert client.create_ticket.call_count == 2
    assert "sent the create once more" in module.warnings[0]


def test_ambiguous_create_twice_fails():
    client = make_client()
    client.create_ticket.side_effect = AmbiguousWriteError("lost")
    with pytest.raises(AmbiguousWriteError):
        otobo_ticket.run(FakeModule(**CREATE), client, RecordingLedger())
    assert client.create_ticket.call_count == 2


def test_ambiguous_create_without_key_is_not_resent():
    client = make_client()
    client.create_ticket.side_effect = AmbiguousWriteError("lost")
    params = with_params(correlation_key=None)
    with pytest.raises(AmbiguousWriteError, match="does not re-send"):
        otobo_ticket.run(FakeModule(**params), client, RecordingLedger())
    assert client.create_ticket.call_count == 1


def test_ambiguous_update_already_applied_is_not_resent():
    module = FakeModule(correlation_key=KEY, article=dict(subject="Update", body="b"))
    applied = ticket(articles=ticket()["articles"] + [dict(article_id=98, subject="Update", body="b")])
    client = make_client(found=ticket(), after=applied)
    client.update_ticket.side_effect = AmbiguousWriteError("lost")
    result = otobo_ticket.run(module, client, RecordingLedger())
    assert client.update_ticket.call_count == 1 and result["changed"] is True
    assert "change is in place" in module.warnings[0]


def test_ambiguous_update_not_applied_resends_remaining():
    module = FakeModule(correlation_key=KEY, priority="4 high", article=dict(subject="Update", body="b"))
    client = make_client(found=ticket())
    client.update_ticket.side_effect = [AmbiguousWriteError("lost"), {"ticket_id": 42, "ticket_number": "n", "article_id": 98}]
    otobo_ticket.run(module, client, RecordingLedger())
    assert client.update_ticket.call_count == 2
    second = client.update_ticket.call_args_list[1][0]
    assert second[1] == {"priority": "4 high"} and second[2]["subject"] == "Update"


def test_marker_added_to_existing_ticket_found_by_id():
    module = FakeModule(ticket_id=42, correlation_key=KEY)
    client = make_client()
    client.get_ticket.return_value = ticket(title="Disk full nas1")
    result = otobo_ticket.run(module, client, RecordingLedger())
    assert result["changed"] and client.update_ticket.call_args[0][1] == {"title": TITLE}


def test_state_names_compared_case_insensitively():
    module = FakeModule(correlation_key=KEY, ticket_state="NEW")
    assert otobo_ticket.run(module, make_client(found=ticket()), RecordingLedger())["changed"] is False


def test_predict_does_not_mutate_current():
    current = ticket()
    snapshot = copy.deepcopy(current)
    otobo_ticket.predict(current, {"priority": {"before": "3 normal", "after": "1 very low"}}, {}, {"subject": "s", "body": "b"})
    assert current == snapshot


def test_argspec_via_main(monkeypatch):
    """main() with the minimal set: fails cleanly (no server) with a LabopsError, not a traceback."""
    from ansible.module_utils import basic
    from ansible.module_utils.testing import patch_module_args

    results = {}

    def fail_json(self, **kwargs):
        results.update(kwargs)
        raise SystemExit(1)

    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    with patch_module_args(dict(url="http://127.0.0.1:9", username="u", password="topsecret", correlation_key=KEY,
                                ledger_path="/nonexistent/dir/ledger.db", timeout=1)):
        with pytest.raises(SystemExit):
            otobo_ticket.main()
    assert results["error_class"] in ("CommunicationError", "AuditWriteError")
    assert "topsecret" not in repr(results)


def test_argspec_mutually_exclusive(monkeypatch):
    from ansible.module_utils import basic
    from ansible.module_utils.testing import patch_module_args

    results = {}

    def fail_json(self, **kwargs):
        results.update(kwargs)
        raise SystemExit(1)

    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    with patch_module_args(dict(url="http://h", username="u", password="p", ticket_id=1, ticket_number="2")):
        with pytest.raises(SystemExit):
            otobo_ticket.main()
    assert "mutually exclusive" in results["msg"]
