"""The correlation_key filter and the alertmanager event source compute the same key."""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.labops.itsm.plugins.filter.correlation_key import FilterModule, correlation_key

source = importlib.import_module("ansible_collections.labops.itsm.extensions.eda.plugins.event_source.alertmanager")

FIXTURES = Path(__file__).resolve().parents[2] / "extensions" / "fixtures"


def test_known_value() -> None:
    expected = hashlib.sha256(b"alertmanager|9582172f3995a11a|2026-05-04T07:15:02.118Z").hexdigest()[:24]
    assert correlation_key("9582172f3995a11a", "2026-05-04T07:15:02.118Z") == expected
    assert len(expected) == 24 and expected == expected.lower()


@pytest.mark.parametrize("name", ["firing", "resolved", "am025"])
def test_filter_agrees_with_event_source(name: str) -> None:
    payload = json.loads((FIXTURES / f"webhook_{name}.json").read_text(encoding="utf-8"))
    events = source.build_events(payload, source.parse_config({}))
    assert events
    for event in events:
        alert = event["alert"]
        assert correlation_key(alert["fingerprint"], alert["startsAt"]) == event["correlation_key"]
        assert source.correlation_key(alert["fingerprint"], source.canonical_timestamp(alert["startsAt"])) == event["correlation_key"]


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("2026-05-04T07:15:02Z", "2026-05-04T07:15:02Z"),
        ("2026-05-04T07:15:02.000Z", "2026-05-04T07:15:02Z"),
        ("2026-05-04T07:15:02.120Z", "2026-05-04T07:15:02.12Z"),
        ("2026-05-04T07:15:02.12Z", "2026-05-04T07:15:02.12Z"),
        ("2026-05-04T07:15:20Z", "2026-05-04T07:15:20Z"),
        ("2026-05-04T07:15:02.118000000+00:00", "2026-05-04T07:15:02.118Z"),
        ("2026-05-04T09:15:02.118+02:00", "2026-05-04T07:15:02.118Z"),
        ("2026-05-04T00:45:02-06:30", "2026-05-04T07:15:02Z"),
        ("2026-05-05T01:15:02.5+18:00", "2026-05-04T07:15:02.5Z"),
    ],
)
def test_spellings_of_one_instant_share_a_key(spelling: str, canonical: str) -> None:
    """AlertManager writes 07:15:02Z in webhooks and 07:15:02.000Z in /api/v2/alerts: one episode, one key."""
    assert source.canonical_timestamp(spelling) == canonical
    expected = hashlib.sha256(f"alertmanager|9582172f3995a11a|{canonical}".encode()).hexdigest()[:24]
    assert correlation_key("9582172f3995a11a", spelling) == expected


def test_new_episode_gets_new_key() -> None:
    assert correlation_key("9582172f3995a11a", "2026-05-04T07:15:02.118Z") != correlation_key("9582172f3995a11a", "2026-05-04T09:00:00Z")


def test_registered_under_its_name() -> None:
    assert FilterModule().filters()["correlation_key"] is correlation_key


@pytest.mark.parametrize(
    ("fingerprint", "starts_at"),
    [
        (None, "2026-05-04T07:15:02Z"),
        ("9582172F3995A11A", "2026-05-04T07:15:02Z"),
        ("short", "2026-05-04T07:15:02Z"),
        ("9582172f3995a11a", ""),
        ("9582172f3995a11a", None),
        ("9582172f3995a11a", "yesterday"),
        ("9582172f3995a11a", "2026-05-04 07:15:02Z"),
    ],
)
def test_bad_input_raises(fingerprint: object, starts_at: object) -> None:
    with pytest.raises(AnsibleFilterError):
        correlation_key(fingerprint, starts_at)


def test_through_ansible_templar() -> None:
    """The filter resolves by FQCN in a real ansible-core template (its own process, as playbooks run it)."""
    import json  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    from pathlib import Path  # pylint: disable=import-outside-toplevel

    ansible = Path(sys.executable).parent / "ansible"
    expression = "{{ '9582172f3995a11a' | labops.itsm.correlation_key('2026-05-04T07:15:02.118Z') }}"
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(ansible), "localhost", "-i", "localhost,", "-c", "local", "-m", "ansible.builtin.debug",
                           "-a", json.dumps({"msg": expression})], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert correlation_key("9582172f3995a11a", "2026-05-04T07:15:02.118Z") in proc.stdout
