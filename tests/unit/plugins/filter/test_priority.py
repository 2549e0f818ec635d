"""The labops.itsm priority filters: thin wrappers that turn policy errors into AnsibleFilterError."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.labops.itsm.plugins.filter.priority import FilterModule

FILTERS = FilterModule().filters()


def test_filters_are_registered():
    assert set(FILTERS) == {"priority_matrix", "severity_to_priority", "sla_targets"}


def test_priority_matrix():
    assert FILTERS["priority_matrix"]("high", "medium") == "S2"
    assert FILTERS["priority_matrix"]("low", "low") == "S4"
    with pytest.raises(AnsibleFilterError, match="priority_matrix: urgency must be one of"):
        FILTERS["priority_matrix"]("very", "high")


def test_severity_to_priority():
    assert FILTERS["severity_to_priority"]("S1", "servicenow") == "1"
    assert FILTERS["severity_to_priority"]("critical", "jira", {"critical": "Blocker"}) == "Blocker"
    with pytest.raises(AnsibleFilterError, match="mapping must be a dictionary"):
        FILTERS["severity_to_priority"]("S1", "jira", ["Blocker"])
    with pytest.raises(AnsibleFilterError, match="severity_to_priority: no priority mapping for platform 'remedy'"):
        FILTERS["severity_to_priority"]("S1", "remedy")


def test_sla_targets():
    assert FILTERS["sla_targets"]("S3")["resolution_minutes"] == 24 * 60
    with pytest.raises(AnsibleFilterError, match="sla_targets: severity must be one of"):
        FILTERS["sla_targets"]("P1")
