# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""otobo_ticket at run()/ensure_* level against the OTOBO simulator (real HTTP) and a real ledger.

Only the module object is a stand-in (params, check mode, warnings); lost replies are the simulator's
fault injection (``drop``, before or ``after_apply``), so the governed write is tested as OTOBO behaves.
"""


import copy

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AmbiguousWriteError,
    AuditWriteError,
    NotFoundError,
    ValidationError,
)
from ansible_collections.labops.itsm.plugins.module_utils._governed import creation_record_key
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._otobo import client_from_params
from ansible_collections.labops.itsm.plugins.modules import otobo_ticket
from simulators.harness import start_in_thread
from tests.unit.contract.sop_env import FailingLedger

KEY = "3f9c2a7b1d0e4c55aa00bb11"
TITLE = "Disk full nas1 [ck:%s]" % KEY
SIM_CONFIG = {"dynamic_fields": [{"name": "LabopsCorrelationKey", "type": "Text"}]}


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
    params = {name: None for name in otobo_ticket.argument_spec()}
    params.update(state="present", url="http://otobo", username="alertbot", password="s3cret", actor="eda", actor_role="automation")
    params.update(overrides)
    if params.get("article"):
        article = dict(content_type="text/plain; charset=utf8", communication_channel="Internal", sender_type="system",
                       is_visible_for_customer=False, dedupe=True)
        article.update(params["article"])
        params["article"] = article
    return params


CREATE = dict(correlation_key=KEY, title="Disk full nas1", queue="Storage", priority="3 normal", customer_user="monitoring",
              article=dict(subject="Disk full nas1", body="usage 97%"))

EXPECTED_PAYLOAD = {
    "Ticket": {"Title": TITLE, "Queue": "Storage", "Priority": "3 normal", "CustomerUser": "monitoring", "State": "new"},
    "Article": {"Subject": "Disk full nas1", "Body": "usage 97%", "ContentType": "text/plain; charset=utf8",
                "CommunicationChannel": "Internal", "SenderType": "system", "IsVisibleForCustomer": 0},
}


def with_params(**overrides):
    params = dict(CREATE)
    params.update(overrides)
    return params


@pytest.fixture(scope="module")
def sim():
    server = start_in_thread("otobo", SIM_CONFIG)
    yield server
    server.stop()


class Env:
    def __init__(self, sim, path):
        sim.reset()
        self.sim = sim
        self.client = client_from_params({"url": sim.url, "username": "alertbot", "password": "s3cret", "path_prefix": "/otobo"})
        self.ledger = ledger_from_params({"ledger_path": str(path / "audit.sqlite3")})

    def run(self, module, ledger=None):
        return otobo_ticket.run(module, self.client, ledger or self.ledger)

    def tickets(self, key=KEY):
        """The simulated tickets carrying ``key`` in the title (read from the simulator's state)."""
        return [t for t in self.sim.state()["tickets"] if "[ck:%s]" % key in t["Title"]]

    def only_ticket(self):
        [ticket] = self.tickets()
        return ticket

    def audit(self, action=None):
        return self.ledger.query(action=action)


@pytest.fixture
def env(sim, tmp_path):
    return Env(sim, tmp_path)


def create(env, **overrides):
    return env.run(FakeModule(**with_params(**overrides)))


# -- create ----------------------------------------------------------------------------------


def test_create_check_mode_predicts_payload_and_writes_nothing(env):
    result = env.run(FakeModule(check_mode=True, **CREATE))
    assert result["changed"] is True and result["created"] is True and result["found"] is False
    assert result["payload"] == EXPECTED_PAYLOAD
    assert result["ticket"]["title"] == TITLE and result["ticket"]["state_type"] == "new"
    assert result["ticket_id"] is None and result["ticket_url"] is None
    assert result["audit"] == [] and env.tickets() == [] and env.audit() == []
    assert result["diff"]["before"] == {} and result["diff"]["after"]["title"] == TITLE


def test_create_real_run_writes_and_audits(env):
    result = create(env)
    ticket = env.only_ticket()
    assert result["changed"] and result["created"] and result["ticket_id"] == ticket["TicketID"]
    assert result["ticket_url"].endswith("TicketID=%s" % ticket["TicketID"])
    assert (ticket["Title"], ticket["Queue"], ticket["Priority"], ticket["State"], ticket["CustomerUserID"]) == \
        (TITLE, "Storage", "3 normal", "new", "monitoring")
    assert [a["Subject"] for a in ticket["Article"]] == ["Disk full nas1"]
    [record] = env.audit()
    assert (record["action"], record["ref_type"], record["ref_id"], record["platform"]) == ("create", "incident", ticket["TicketNumber"], "otobo")
    assert record["fields"]["title"] == {"before": None, "after": TITLE}
    assert record["meta"]["record_key"] == creation_record_key("otobo", "incident", ticket["TicketNumber"])
    assert record["meta"]["ticket_id"] == ticket["TicketID"] and record["meta"]["correlation_key"] == KEY
    assert "s3cret" not in repr(env.audit())
    assert result["audit"] == [record]


def test_create_stores_key_in_correlation_field(env):
    create(env, correlation_field="LabopsCorrelationKey")
    assert env.only_ticket()["DynamicField"]["LabopsCorrelationKey"] == KEY


def test_existing_unchanged_is_not_changed(env):
    first = create(env)
    again = create(env)
    assert (again["changed"], again["found"], again["created"], again["audit"]) == (False, True, False, [])
    assert again["ticket_id"] == first["ticket_id"] and len(env.tickets()) == 1


def test_create_missing_options_named(env):
    with pytest.raises(ValidationError, match="queue, priority"):
        env.run(FakeModule(correlation_key=KEY, title="t", customer_user="monitoring", article=dict(subject="s", body="b")))


def test_bad_correlation_key(env):
    with pytest.raises(ValidationError):
        env.run(FakeModule(**with_params(correlation_key="NOT-HEX")))


# -- update ----------------------------------------------------------------------------------


def test_update_only_fields_the_user_set(env):
    create(env)
    result = env.run(FakeModule(correlation_key=KEY, priority="4 high"))
    assert result["changed"] and env.only_ticket()["Priority"] == "4 high"
    assert result["payload"] == {"Ticket": {"Priority": "4 high"}}
    [update] = env.audit("update")
    assert update["fields"] == {"priority": {"before": "3 normal", "after": "4 high"}}


def test_update_check_mode_predicts(env):
    create(env)
    result = env.run(FakeModule(check_mode=True, correlation_key=KEY, priority="4 high"))
    assert result["changed"] and result["ticket"]["priority"] == "4 high"
    assert env.only_ticket()["Priority"] == "3 normal" and env.audit("update") == []


def test_article_deduped_and_added(env):
    create(env)
    same = env.run(FakeModule(correlation_key=KEY, article=dict(subject="Disk full nas1", body="usage 97%")))
    assert same["changed"] is False
    other = env.run(FakeModule(correlation_key=KEY, article=dict(subject="Still full", body="usage 99%")))
    assert other["changed"] and [a["Subject"] for a in env.only_ticket()["Article"]] == ["Disk full nas1", "Still full"]
    [notify] = env.audit("notify")
    assert notify["meta"]["subject"] == "Still full" and notify["meta"]["article_id"]


def test_article_without_dedupe_always_added(env):
    create(env)
    for _count in range(2):
        env.run(FakeModule(correlation_key=KEY, article=dict(subject="Disk full nas1", body="usage 97%", dedupe=False)))
    assert len(env.only_ticket()["Article"]) == 3


def test_marker_added_to_existing_ticket_found_by_id(env):
    created = env.client.create_ticket({"title": "Disk full nas1", "queue": "Storage", "priority": "3 normal", "customer_user": "monitoring",
                                        "state": "new"},
                                       {"subject": "s", "body": "b", "content_type": "text/plain; charset=utf8",
                                        "communication_channel": "Internal", "sender_type": "system"})
    result = env.run(FakeModule(ticket_id=created["ticket_id"], correlation_key=KEY))
    assert result["changed"] and result["payload"] == {"Ticket": {"Title": TITLE}}
    assert env.only_ticket()["TicketID"] == created["ticket_id"]
    assert env.audit("create") == []  # found by id, not by its key: no creation back-fill


def test_state_names_compared_case_insensitively(env):
    create(env)
    assert env.run(FakeModule(correlation_key=KEY, ticket_state="NEW"))["changed"] is False


# -- close -----------------------------------------------------------------------------------


def test_close_with_article_audits_notify_then_close(env):
    create(env)
    result = env.run(FakeModule(state="closed", correlation_key=KEY, article=dict(subject="RESOLVED", body="usage 40%")))
    assert result["changed"] and env.only_ticket()["State"] == "closed successful"
    assert [r["action"] for r in env.audit()] == ["create", "notify", "close"]
    assert env.audit("close")[0]["fields"] == {"state": {"before": "new", "after": "closed successful"}}


def test_close_already_closed_is_unchanged(env):
    create(env)
    env.run(FakeModule(state="closed", correlation_key=KEY))
    again = env.run(FakeModule(state="closed", correlation_key=KEY))
    assert (again["changed"], again["audit"]) == (False, [])


def test_close_missing_ticket_warns(env):
    module = FakeModule(state="closed", correlation_key=KEY)
    result = env.run(module)
    assert result["changed"] is False and result["found"] is False and "nothing to close" in module.warnings[0]


def test_close_rejects_open_state(env):
    with pytest.raises(ValidationError, match="not a closed state"):
        env.run(FakeModule(state="closed", correlation_key=KEY, ticket_state="open"))


def test_closed_needs_identity(env):
    with pytest.raises(ValidationError, match="needs one of"):
        env.run(FakeModule(state="closed"))


def test_ticket_id_not_found_fails(env):
    with pytest.raises(NotFoundError):
        env.run(FakeModule(ticket_id=99999, title="t"))


# -- audit failures --------------------------------------------------------------------------


def test_ledger_preflight_failure_halts_before_write(env, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(AuditWriteError):
        env.run(FakeModule(**CREATE), ledger_from_params({"ledger_path": str(blocker / "audit.sqlite3")}))
    assert env.tickets() == []


def test_ledger_append_failure_after_write_says_unaudited(env):
    with pytest.raises(AuditWriteError, match=r"otobo ticket \d+ \(id \d+\): the create was applied on OTOBO but is UNAUDITED"):
        env.run(FakeModule(**CREATE), FailingLedger(env.ledger, failures=1))
    assert len(env.tickets()) == 1 and env.audit() == []


def test_missing_create_record_is_back_filled_by_the_next_run(env):
    """The run that created the ticket failed before its audit: the next run writes the create record, once."""
    with pytest.raises(AuditWriteError):
        env.run(FakeModule(**CREATE), FailingLedger(env.ledger, failures=1))
    number = env.only_ticket()["TicketNumber"]
    checked = env.run(FakeModule(check_mode=True, **CREATE))
    assert checked["changed"] is True and env.audit() == []
    retry = env.run(FakeModule(**CREATE))
    assert (retry["changed"], retry["found"], retry["created"]) == (True, True, False)
    [record] = retry["audit"]
    assert (record["action"], record["ref_id"], record["meta"]["backfilled"]) == ("create", number, True)
    assert record["meta"]["record_key"] == creation_record_key("otobo", "incident", number)
    third = env.run(FakeModule(**CREATE))
    assert (third["changed"], third["audit"]) == (False, [])
    assert len(env.tickets()) == 1 and len(env.audit("create")) == 1


def test_create_record_of_the_legacy_key_is_not_back_filled_again(env):
    """A ledger written before the governed write (record_key otobo:create:<ticket id>) already audits the creation."""
    with pytest.raises(AuditWriteError):
        env.run(FakeModule(**CREATE), FailingLedger(env.ledger, failures=1))
    ticket = env.only_ticket()
    env.ledger.append("create", "incident", ticket["TicketNumber"], "eda", platform="otobo", record_key="otobo:create:%s" % ticket["TicketID"])
    assert env.run(FakeModule(**CREATE))["changed"] is False and len(env.audit("create")) == 1


# -- lost replies (the simulator drops the reply) ----------------------------------------------


def test_lost_create_reply_after_apply_is_not_resent(env):
    env.sim.inject(kind="drop", operations=["TicketCreate"], after_apply=True, count=1)
    module = FakeModule(**CREATE)
    result = env.run(module)
    ticket = env.only_ticket()
    assert (result["changed"], result["created"], result["ticket_id"]) == (True, True, ticket["TicketID"])
    assert [(r["action"], r["ref_id"]) for r in env.audit()] == [("create", ticket["TicketNumber"])]
    assert "exists; using it" in module.warnings[0]
    again = env.run(FakeModule(**CREATE))
    assert (again["changed"], again["audit"]) == (False, []) and len(env.tickets()) == 1 and len(env.audit("create")) == 1


def test_lost_create_before_apply_is_resent_once(env):
    env.sim.inject(kind="drop", operations=["TicketCreate"], count=1)
    module = FakeModule(**CREATE)
    result = env.run(module)
    assert result["created"] and len(env.tickets()) == 1 and len(env.audit("create")) == 1
    assert "sent the create once more" in module.warnings[0]


def test_lost_create_twice_fails(env):
    env.sim.inject(kind="drop", operations=["TicketCreate"], count=2)
    with pytest.raises(AmbiguousWriteError):
        env.run(FakeModule(**CREATE))
    assert env.tickets() == [] and env.audit() == []


def test_lost_create_without_key_is_not_resent(env):
    env.sim.inject(kind="drop", operations=["TicketCreate"], after_apply=True, count=1)
    with pytest.raises(AmbiguousWriteError, match="without a correlation key .* not re-sent"):
        env.run(FakeModule(**with_params(correlation_key=None)))
    assert len([t for t in env.sim.state()["tickets"] if t["Title"] == "Disk full nas1"]) == 1


def test_lost_update_reply_after_apply_is_not_resent(env):
    create(env)
    env.sim.inject(kind="drop", operations=["TicketUpdate"], after_apply=True, count=1)
    module = FakeModule(correlation_key=KEY, article=dict(subject="Update", body="b"))
    result = env.run(module)
    assert result["changed"] is True and "change is in place" in module.warnings[0]
    assert [a["Subject"] for a in env.only_ticket()["Article"]] == ["Disk full nas1", "Update"]


def test_lost_update_before_apply_resends_what_is_missing(env):
    create(env)
    env.sim.inject(kind="drop", operations=["TicketUpdate"], count=1)
    module = FakeModule(correlation_key=KEY, priority="4 high", article=dict(subject="Update", body="b"))
    env.run(module)
    ticket = env.only_ticket()
    assert ticket["Priority"] == "4 high" and [a["Subject"] for a in ticket["Article"]] == ["Disk full nas1", "Update"]
    assert "re-sent what was not applied" in module.warnings[0]


# -- pure helpers and main() -----------------------------------------------------------------


def test_predict_does_not_mutate_current():
    current = dict(ticket_id=42, ticket_number="2025061110000421", title=TITLE, state="new", state_type="new", priority="3 normal",
                   dynamic_fields={}, articles=[dict(article_id=97, subject="Disk full nas1", body="usage 97%")])
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
                                ledger_path="/nonexistent/dir/ledger.db", timeout=1)), pytest.raises(SystemExit):
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
    with patch_module_args(dict(url="http://h", username="u", password="p", ticket_id=1, ticket_number="2")), pytest.raises(SystemExit):
        otobo_ticket.main()
    assert "mutually exclusive" in results["msg"]
