# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real ansible-playbook runs of otobo_ticket / otobo_ticket_info against the OTOBO simulator."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

harness = pytest.importorskip("simulators.harness", reason="the OTOBO simulator harness (simulators/harness.py) is not available")

TARGET = Path(__file__).resolve().parent / "targets" / "otobo_ticket"


def correlation_key(fingerprint, starts_at):
    return hashlib.sha256(("alertmanager|%s|%s" % (fingerprint, starts_at)).encode()).hexdigest()[:24]


@pytest.fixture
def sim():
    simulator = harness.start_simulator("otobo")
    yield simulator
    simulator.stop()


def run_playbook(sim, tmp_path, playbook, **extra_vars):
    env = dict(os.environ)
    env.update(
        OTOBO_URL=sim.otobo_base,
        OTOBO_USERNAME="alertbot",
        OTOBO_PASSWORD="s3cret",
        OTOBO_VALIDATE_CERTS="false",
        LABOPS_LEDGER_PATH=str(tmp_path / "ledger.sqlite3"),
        LABOPS_ACTOR="integration-test",
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
               str(TARGET / "playbooks" / playbook), "-e", json.dumps(extra_vars)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, "ansible-playbook failed:\n%s\n%s" % (proc.stdout[-6000:], proc.stderr[-3000:])
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def ledger_actions(tmp_path):
    with sqlite3.connect(str(tmp_path / "ledger.sqlite3")) as conn:
        return [row[0] for row in conn.execute("SELECT action FROM audit_records ORDER BY seq")]


def tickets_with_key(sim, key):
    text = json.dumps(sim.state())
    return text.count("[ck:%s]" % key)


def test_lifecycle(sim, tmp_path):
    key = correlation_key("3f9c2a7b1d0e4c55", "2025-06-11T10:00:00Z")
    result = run_playbook(sim, tmp_path, "lifecycle.yml", ck=key, queue="Infrastructure")
    stats = result["stats"]["localhost"]
    assert stats["failures"] == 0
    assert ledger_actions(tmp_path) == ["create", "notify", "close"]
    with sqlite3.connect(str(tmp_path / "ledger.sqlite3")) as conn:
        dump = json.dumps(list(conn.execute("SELECT * FROM audit_records")))
    assert "s3cret" not in dump


def test_ambiguous_create_produces_exactly_one_ticket(sim, tmp_path):
    key = correlation_key("aa11bb22cc33dd44", "2025-06-11T11:00:00Z")
    sim.inject(kind="http_status", status=503, count=1, operations=["TicketCreate"], after_apply=True)
    run_playbook(sim, tmp_path, "ambiguous.yml", ck=key, queue="Storage")
    assert tickets_with_key(sim, key) == 1
    assert ledger_actions(tmp_path) == ["create"]
