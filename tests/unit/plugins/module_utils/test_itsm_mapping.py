# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The field mapping configuration (seed 001): loading, validation with key paths, ${VAR}, templates."""

from pathlib import Path

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._itsm_mapping import BUILTIN, load_mapping, render

ALERT = {"status": "firing", "labels": {"alertname": "NodeDown", "instance": "pve-03", "severity": "critical"},
         "annotations": {"summary": "node pve-03 is down"}, "startsAt": "2026-05-01T10:00:00Z"}

MAPPING_YAML = """\
servicenow:
  defaults:
    category: software
    caller_id: monitoring
    u_api_token: "${SN_FIELD_TOKEN}"
    u_literal: "$${NOT_A_VAR}"
  severity:
    critical: {impact: 1, urgency: 1}
    S4: {impact: low, urgency: low}
  custom_fields:
    alert_source: u_alert_source
  templates:
    short_description: "[{{ alert.labels.severity | upper }}] {{ alert.labels.alertname }} {{ cmdb.name }}"
jira:
  severity:
    critical: Highest
"""


@pytest.fixture
def mapping_file(tmp_path):
    path = tmp_path / "mapping.yml"
    path.write_text(MAPPING_YAML)
    return str(path)


def test_builtin_servicenow_follows_the_seed_priority_table():
    # impact x urgency of each severity gives seed 001's priority 1..4 through the base-system lookup
    lookup = {("1", "1"): "1", ("1", "2"): "2", ("2", "1"): "2", ("2", "2"): "3", ("1", "3"): "3", ("3", "1"): "3",
              ("2", "3"): "4", ("3", "2"): "4", ("3", "3"): "5"}
    mapping = load_mapping(None, "servicenow")
    priorities = {name: lookup[(f["impact"], f["urgency"])] for name, f in
                  ((n, mapping.severity_fields(n)) for n in ("critical", "high", "medium", "low"))}
    assert priorities == {"critical": "1", "high": "2", "medium": "3", "low": "4"}
    assert mapping.source == "built-in" and mapping.defaults == {} and mapping.secrets == set()


def test_file_with_platform_sections(mapping_file):
    mapping = load_mapping(mapping_file, "servicenow", environ={"SN_FIELD_TOKEN": "t0ken-value"})
    assert mapping.defaults == {"category": "software", "caller_id": "monitoring", "u_api_token": "t0ken-value",
                                "u_literal": "${NOT_A_VAR}"}
    assert mapping.secrets == {"t0ken-value"}
    assert "t0ken-value" not in repr(mapping.describe())
    assert mapping.severity_fields("critical") == {"impact": "1", "urgency": "1"}
    assert mapping.severity_fields("low") == {"impact": "3", "urgency": "3"}  # S4 in the file
    assert mapping.severity_fields("S2") == BUILTIN["servicenow"]["severity"]["high"]  # not in the file: built-in
    assert mapping.custom_field("alert_source") == "u_alert_source"
    assert mapping.custom_field("u_other") == "u_other"
    assert render(mapping, "short_description", {"alert": ALERT, "cmdb": {"name": "pve-03"}}) == "[CRITICAL] NodeDown pve-03"
    # the description template was not replaced: the built-in one renders
    assert "node pve-03 is down" in render(mapping, "description", {"alert": ALERT})
    jira = load_mapping(mapping_file, "jira", environ={})
    assert jira.severity_fields("critical") == {"priority": "Highest"}


def test_the_file_is_never_written_back(mapping_file):
    before = Path(mapping_file).read_text()
    load_mapping(mapping_file, "servicenow", environ={"SN_FIELD_TOKEN": "x"})
    assert Path(mapping_file).read_text() == before


@pytest.mark.parametrize("data, message", [
    ({"severity": {"urgent": {"impact": 1, "urgency": 1}}}, "mapping.severity.urgent: unknown severity"),
    ({"severity": {"high": {"impact": 4, "urgency": 1}}}, "mapping.severity.high.impact: 4 is not 1, 2, 3"),
    ({"severity": {"high": {"impact": 1, "urgency": 1, "priority": 1}}}, "mapping.severity.high.priority: unknown key"),
    ({"severity": {"high": {"impact": 1}}}, "mapping.severity.high.urgency: missing"),
    ({"severity": {"high": "2"}}, "mapping.severity.high: expected {impact: 1-3, urgency: 1-3}"),
    ({"severity": {"S1": {"impact": 1, "urgency": 1}, "critical": {"impact": 1, "urgency": 1}}}, "severity critical is given twice"),
    ({"custom_fields": {"alert_source": "alert_source"}}, "mapping.custom_fields.alert_source: 'alert_source' is not a u_ or x_ field"),
    ({"templates": {"summary": "x"}}, "mapping.templates.summary: unknown template"),
    ({"templates": {"description": "{% if %}"}}, "mapping.templates.description: template syntax error"),
    ({"defaults": {"bad name": "x"}}, "mapping.defaults.bad name: not a field name"),
    ({"defaults": {"category": {"nested": 1}}}, "mapping.defaults.category: expected a string"),
    ({"fields": {}}, "mapping.fields: unknown key"),
    ({"defaults": {"u_token": "${MISSING_VAR}"}}, "mapping.defaults.u_token: environment variable MISSING_VAR is not set"),
    ({"defaults": {"u_token": "${1BAD}"}}, "mapping.defaults.u_token: ${1BAD} is not a valid environment variable reference"),
    ({"jira": {"severity": {}}}, "mapping: has a section for jira but none for servicenow"),
    ({"servicenow": {"templates": {"x": "y"}}}, "mapping.servicenow.templates.x: unknown template"),
    ([1, 2], "mapping: expected a file path or a dict"),
])
def test_validation_names_the_key(data, message):
    with pytest.raises(ValidationError) as error:
        load_mapping(data, "servicenow", environ={})
    assert message in str(error.value)


def test_unknown_platform_and_unreadable_file(tmp_path):
    with pytest.raises(ValidationError, match="unknown platform 'remedy'"):
        load_mapping(None, "remedy")
    with pytest.raises(ValidationError, match="cannot read the file"):
        load_mapping(str(tmp_path / "missing.yml"), "servicenow")
    bad = tmp_path / "bad.yml"
    bad.write_text("defaults: [unclosed\n")
    with pytest.raises(ValidationError, match="not valid YAML"):
        load_mapping(str(bad), "servicenow")


def test_templates_are_sandboxed_and_strict():
    mapping = load_mapping({"templates": {"short_description": "{{ alert.__class__.__mro__ }}",
                                          "description": "{{ alert.labels.missing_label }}"}}, "servicenow")
    with pytest.raises(ValidationError, match="mapping.templates.short_description"):
        render(mapping, "short_description", {"alert": ALERT})
    with pytest.raises(ValidationError, match="mapping.templates.description .*missing_label"):
        render(mapping, "description", {"alert": ALERT})


def test_severity_and_custom_field_errors_at_use():
    mapping = load_mapping(None, "servicenow")
    with pytest.raises(ValidationError, match="unknown severity"):
        mapping.severity_fields("urgent")
    with pytest.raises(ValidationError, match="not in the mapping's custom_fields"):
        mapping.custom_field("alert_source")


def test_builtin_templates_render_without_cmdb_or_annotations():
    mapping = load_mapping(None, "servicenow")
    assert render(mapping, "short_description", {"alert": {"labels": {"alertname": "DiskFull"}}}) == "DiskFull"
    text = render(mapping, "description", {"alert": {}, "cmdb": {}})
    assert text.endswith("Generated by labops.itsm")
