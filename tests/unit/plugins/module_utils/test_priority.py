"""Seed 004 matrix, S-levels, SLA targets and deadlines; seed 001 platform maps."""
import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _priority as prio
from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError

# seed 004 section 3.2, row by row
MATRIX = [
    ("high", "high", "S1"), ("high", "medium", "S2"), ("high", "low", "S3"),
    ("medium", "high", "S2"), ("medium", "medium", "S3"), ("medium", "low", "S4"),
    ("low", "high", "S3"), ("low", "medium", "S4"), ("low", "low", "S4"),
]


@pytest.mark.parametrize("urgency, impact, level", MATRIX)
def test_matrix_matches_seed_004(urgency, impact, level):
    assert prio.priority_matrix(urgency, impact) == level
    assert prio.priority_matrix(urgency.upper(), " " + impact) == level


@pytest.mark.parametrize("urgency, impact", [("urgent", "high"), ("high", None), (1, "low")])
def test_matrix_rejects_unknown_ratings(urgency, impact):
    with pytest.raises(ValidationError, match="must be one of high, medium, low"):
        prio.priority_matrix(urgency, impact)


@pytest.mark.parametrize("level, response, resolution", [("S1", 15, 240), ("S2", 30, 480), ("S3", 240, 1440), ("S4", 1440, 4320)])
def test_sla_targets_seed_004(level, response, resolution):
    targets = prio.sla_targets(level)
    assert (targets["response_minutes"], targets["resolution_minutes"]) == (response, resolution)
    assert targets["severity"] == level


def test_sla_targets_text_and_names():
    assert prio.sla_targets("critical") == {"severity": "S1", "name": "critical", "ims_priority": "high", "response_minutes": 15,
                                            "resolution_minutes": 240, "response": "15min", "resolution": "4h"}
    assert prio.sla_targets("s4")["response"] == "24h"


@pytest.mark.parametrize("value", ["S5", "", None, "urgent", 1])
def test_unknown_severity(value):
    with pytest.raises(ValidationError, match="severity must be one of S1, S2, S3, S4"):
        prio.normalise_level(value)


def test_level_and_ims_priority_mapping():
    assert [prio.level_to_ims_priority(level) for level in prio.LEVELS] == ["high", "high", "medium", "low"]
    assert [prio.ims_priority_to_level(p) for p in ("high", "medium", "low")] == ["S2", "S3", "S4"]
    with pytest.raises(ValidationError):
        prio.ims_priority_to_level("critical")


@pytest.mark.parametrize("platform, expected", [
    ("servicenow", ["1", "2", "3", "4"]),
    ("jira", ["Highest", "High", "Medium", "Low"]),
    ("otobo", ["5 very high", "4 high", "3 normal", "2 low"]),
])
def test_platform_maps_seed_001(platform, expected):
    assert [prio.severity_to_priority(level, platform) for level in prio.LEVELS] == expected
    assert [prio.severity_to_priority(name, platform) for name in ("critical", "high", "medium", "low")] == expected


def test_platform_map_overrides_and_reverse_lookup():
    assert prio.severity_to_priority("S1", "jira", {"critical": "Blocker"}) == "Blocker"
    assert prio.severity_to_priority("S2", "jira", {"critical": "Blocker"}) == "High"
    assert prio.severity_to_priority("S3", "ServiceNow", {"S3": 5}) == "5"
    assert prio.priority_to_severity("4 high", "otobo") == "S2"
    assert prio.priority_to_severity("1 very low", "otobo") is None


def test_unknown_platform_needs_complete_mapping():
    with pytest.raises(ValidationError, match="missing: critical, high, medium, low"):
        prio.severity_to_priority("S1", "remedy")
    full = {"S1": "P1", "S2": "P2", "S3": "P3", "S4": "P4"}
    assert prio.severity_to_priority("S4", "remedy", full) == "P4"


def test_deadlines():
    assert prio.sla_deadlines("S1", "2025-06-11T10:00:00Z") == {"response_due": "2025-06-11T10:15:00Z", "resolution_due": "2025-06-11T14:00:00Z"}
    # OTOBO's own timestamp format (UTC) is accepted
    assert prio.sla_deadlines("S4", "2025-06-11 10:00:00")["resolution_due"] == "2025-06-14T10:00:00Z"
    with pytest.raises(ValidationError, match="is not an ISO-8601 timestamp"):
        prio.sla_deadlines("S1", "yesterday")
    with pytest.raises(ValidationError, match="opened_at is required"):
        prio.sla_deadlines("S1", None)


def test_breach_computation():
    opened = "2025-06-11T10:00:00Z"
    pending = prio.sla_status("S2", opened, now="2025-06-11T10:20:00Z")
    assert pending["response"] == {"status": "pending", "breached": False, "minutes_left": 10.0, "due": "2025-06-11T10:30:00Z"}
    assert pending["breached"] is False
    late = prio.sla_status("S2", opened, now="2025-06-11T10:31:00Z")
    assert late["response"]["status"] == "breached" and late["response"]["minutes_left"] == -1.0 and late["breached"]
    met = prio.sla_status("S2", opened, responded_at="2025-06-11T10:29:00Z", resolved_at="2025-06-11T18:00:00Z",
                          now="2025-06-12T00:00:00Z")
    assert (met["response"]["status"], met["resolution"]["status"], met["breached"]) == ("met", "met", False)
    missed = prio.sla_status("S1", opened, responded_at="2025-06-11T10:16:00+00:00", resolved_at="2025-06-11T13:00:00Z")
    assert (missed["response"]["status"], missed["resolution"]["status"], missed["breached"]) == ("breached", "met", True)
