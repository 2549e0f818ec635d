"""The lab stack's OTOBO is configured the way the README tells an admin to set up a real one."""
from __future__ import annotations

import re
from pathlib import Path

from ansible_collections.labops.itsm.plugins.module_utils._otobo_ims import DEFAULT_TICKET_TYPES, FIELD_MAP
from scripts.labstack import IMS_DYNAMIC_FIELDS, ITSM_TICKET_TYPES, Stack, itsm_sim_config

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_otobo_setup() -> str:
    text = README.read_text()
    return text[text.index("### OTOBO"):text.index("### Variables and secrets")]


def test_sim_config_holds_the_ims_mapping():
    config = itsm_sim_config()
    names = [item["name"] for item in config["dynamic_fields"]]
    assert sorted(IMS_DYNAMIC_FIELDS) == sorted(FIELD_MAP.values())
    assert set(FIELD_MAP.values()) | {"AlertFingerprint"} == set(names)
    assert all(item["type"] == "Text" for item in config["dynamic_fields"])
    assert sorted(config["ticket_types"]) == sorted(DEFAULT_TICKET_TYPES.values()) == sorted(ITSM_TICKET_TYPES)
    assert Stack(Path("/nonexistent")).sim_config == config


def test_readme_lists_what_the_sim_config_creates():
    setup = readme_otobo_setup()
    listed = set(re.findall(r"`((?:IMS|Alert)[A-Za-z]+)`", setup))
    assert listed == set(IMS_DYNAMIC_FIELDS) | {"AlertFingerprint"}
    for ticket_type in ITSM_TICKET_TYPES:
        assert f"`{ticket_type}`" in setup
