"""The one decision a firing alert makes about the newest ticket with its key (jiralert's semantics), and SOP 16's use
of it for a won't-fix resolution (the SOP contract suite covers reopen / anew / repeat on every adapter)."""
import datetime

import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _refire as refire
from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._priority import format_time, parse_time
from ansible_collections.labops.itsm.plugins.module_utils._sop import run_sop
from tests.unit.contract.fake_platform import FakePlatform

NOW = parse_time("2026-05-04T12:00:00Z")


def resolved(minutes_ago, resolution=None, status="resolved"):
    return {"status": status, "resolved_at": format_time(NOW - datetime.timedelta(minutes=minutes_ago)), "resolution": resolution}


@pytest.mark.parametrize("record, window, never, action", [
    (None, 3600, (), "create"),
    ({"status": "open"}, 3600, (), "update"),
    ({"status": "pending_vendor"}, None, (), "update"),
    (resolved(10), 3600, (), "reopen"),
    (resolved(61), 3600, (), "create"),
    (resolved(10), 0, (), "create"),
    (resolved(10), None, (), "update"),  # no window: a late repeat of the episode
    (resolved(10, status="closed"), None, (), "create"),
    (resolved(10, status="closed"), 3600, (), "create"),  # closed is final
    (resolved(10, "Won't Do"), 3600, ("won't do",), "suppress"),
    (resolved(90, "Won't Do"), 3600, ("Won't Do",), "create"),
    (resolved(10, "Done"), 3600, ("Won't Do",), "reopen"),
    ({"status": "resolved", "resolved_at": None}, 3600, (), "create"),  # unknown resolution time: never reopened blindly
])
def test_refire_action(record, window, never, action):
    assert refire.refire_action(record, now=NOW, reopen_window=window, never_reopen=never) == action


@pytest.mark.parametrize("value, seconds", [(None, None), ("", None), (0, 0.0), (90, 90.0), ("90", 90.0), ("90s", 90.0),
                                            ("30m", 1800.0), ("6h", 21600.0), ("7d", 604800.0), ("1w", 604800.0), ("1.5h", 5400.0)])
def test_parse_window(value, seconds):
    assert refire.parse_window(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-5m", "5y", True, "h"])
def test_parse_window_refuses(value):
    with pytest.raises(ValidationError, match="reopen_window"):
        refire.parse_window(value)


def test_wont_fix_is_suppressed_within_the_window_and_opens_anew_after(tmp_path):
    platform = FakePlatform()
    ledger = ledger_from_params({"ledger_path": str(tmp_path / "audit.sqlite3")})
    event = {"event_id": "ev-wf", "service": "pve-node1", "source": "automated_alert", "alert_type": "HostDown", "severity": "critical",
             "correlation_key": "feedfacefeedfacefeedface"}

    def intake(now):
        return run_sop("monitoring_intake", {"event": event, "reopen_window": "1h", "never_reopen": ["Won't Do"]}, actor="eda",
                       role="automation", platform=platform, ledger=ledger, now=format_time(now))

    first = intake(NOW)["record"]
    platform.records[first["id"]].update(status="resolved", resolved_at=format_time(NOW), resolution="Won't Do")
    audits = len(ledger.query())
    suppressed = intake(NOW + datetime.timedelta(minutes=20))
    assert (suppressed["changed"], suppressed["suppressed"], suppressed["resolution"], suppressed["duplicate_of"]) == \
        (False, True, "Won't Do", first["id"])
    assert platform.records[first["id"]]["status"] == "resolved" and len(ledger.query()) == audits
    anew = intake(NOW + datetime.timedelta(hours=2))
    assert anew["changed"] and anew["record"]["id"] != first["id"] and not anew.get("suppressed")
