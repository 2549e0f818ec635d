# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ims_audit through real ansible-playbook runs: the lifecycle target and 8 parallel writers."""


import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params

HERE = Path(__file__).resolve().parent
TARGET = HERE / "targets" / "ims_audit"
WORKERS = 8
APPENDS_PER_WORKER = 6

WRITER_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Append one record per item
      labops.itsm.ims_audit:
        action: tool_use
        ref_type: incident
        ref_id: "W{{ worker }}-{{ item }}"
        actor: "worker-{{ worker }}"
        meta:
          item: "{{ item }}"
      loop: "{{ range(%d) | list }}"
""" % APPENDS_PER_WORKER

VERIFY_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - labops.itsm.ims_audit:
        state: verify
      register: verified
    - labops.itsm.ims_audit_info: {}
      register: everything
    - ansible.builtin.copy:
        content: "{{ {'verification': verified.verification, 'count': everything.records | length} | to_json }}"
        dest: "{{ result_file }}"
"""


def playbook_env(ledger_path):
    env = dict(os.environ)
    env.update(LABOPS_LEDGER_PATH=str(ledger_path), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    return env


def ansible_playbook():
    return str(Path(sys.executable).parent / "ansible-playbook")


def test_lifecycle_target(tmp_path):
    playbook = tmp_path / "target.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: %s\n" % TARGET)
    result = subprocess.run([ansible_playbook(), "-i", "localhost,", "-c", "local", str(playbook), "-e", "output_dir=%s" % tmp_path],
                            env=playbook_env(tmp_path / "unused.sqlite3"), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "failed=0" in result.stdout
    assert (tmp_path / "ims_audit.jsonl").exists()


def test_eight_parallel_playbooks_lose_nothing(tmp_path):
    ledger_path = tmp_path / "shared" / "ims_audit.sqlite3"
    playbook = tmp_path / "writer.yml"
    playbook.write_text(WRITER_PLAYBOOK)
    env = playbook_env(ledger_path)
    runs = [
        subprocess.Popen([ansible_playbook(), "-i", "localhost,", "-c", "local", str(playbook), "-e", "worker=%d" % worker],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for worker in range(WORKERS)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * WORKERS, "\n".join(output[-2000:] for output in outputs)

    verify = tmp_path / "verify.yml"
    verify.write_text(VERIFY_PLAYBOOK)
    result_file = tmp_path / "result.json"
    done = subprocess.run([ansible_playbook(), "-i", "localhost,", "-c", "local", str(verify), "-e", "result_file=%s" % result_file],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    summary = json.loads(result_file.read_text())
    total = WORKERS * APPENDS_PER_WORKER
    assert summary["verification"]["ok"] is True and summary["verification"]["count"] == total and summary["count"] == total

    with ledger_from_params(dict(ledger_path=str(ledger_path))) as ledger:
        records = ledger.query()
    assert [record["seq"] for record in records] == list(range(1, total + 1))
    assert {record["ref_id"] for record in records} == {"W%d-%d" % (w, i) for w in range(WORKERS) for i in range(APPENDS_PER_WORKER)}
    writers_interleaved = len({record["actor"] for record in records[:total // 2]})
    assert writers_interleaved >= 2  # the runs really overlapped


EXPORT_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Five records
      labops.itsm.ims_audit:
        action: review
        ref_type: incident
        ref_id: "R{{ item }}"
      loop: "{{ range(5) | list }}"
    - name: Export, writing the anchor beside the export
      labops.itsm.ims_audit:
        state: exported
        dest: "{{ export_file }}"
      register: result
    - ansible.builtin.copy:
        content: "{{ result | to_json }}"
        dest: "{{ result_file }}"
"""

ANCHORED_VERIFY_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Verify against the anchor of the last export
      labops.itsm.ims_audit:
        state: verify
        anchor_file: "{{ export_file }}.anchor.json"
      register: result
      ignore_errors: true
    - ansible.builtin.copy:
        content: "{{ result | to_json }}"
        dest: "{{ result_file }}"
    - ansible.builtin.fail:
        msg: verification failed
      when: result is failed
"""


def run_playbook(tmp_path, text, env, **extra_vars):
    """Run ``text``; returns the process and the registered ``result`` of its ims_audit task."""
    number = len(list(tmp_path.glob("play-*.yml")))
    playbook, result_file = tmp_path / ("play-%d.yml" % number), tmp_path / ("result-%d.json" % number)
    playbook.write_text(text)
    command = [ansible_playbook(), "-i", "localhost,", "-c", "local", str(playbook), "-e", "result_file=%s" % result_file]
    for name, value in extra_vars.items():
        command += ["-e", "%s=%s" % (name, value)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    return run, json.loads(result_file.read_text()) if result_file.exists() else None


def test_anchor_of_an_export_catches_a_cut_tail(tmp_path):
    """Records deleted at the end with the head row rewritten verify on their own; the export's anchor catches them."""
    ledger_path = tmp_path / "ledger" / "ims_audit.sqlite3"
    export_file = tmp_path / "ims_audit.jsonl"
    env = playbook_env(ledger_path)
    exported, result = run_playbook(tmp_path, EXPORT_PLAYBOOK, env, export_file=export_file)
    assert exported.returncode == 0, exported.stdout[-4000:] + exported.stderr[-2000:]
    assert result["anchor"]["seq"] == 5 and result["count"] == 5
    intact, result = run_playbook(tmp_path, ANCHORED_VERIFY_PLAYBOOK, env, export_file=export_file)
    assert intact.returncode == 0 and result["verification"]["anchor"] == dict(seq=5, hash=result["verification"]["head_hash"], ok=True)

    conn = sqlite3.connect(str(ledger_path))
    with conn:
        conn.execute("DELETE FROM audit_records WHERE seq > 3")
        seq, digest = conn.execute("SELECT seq, hash FROM audit_records WHERE seq = 3").fetchone()
        conn.execute("UPDATE audit_meta SET value = ? WHERE key = 'head'", (json.dumps({"seq": seq, "hash": digest}),))
    conn.close()
    with ledger_from_params(dict(ledger_path=str(ledger_path))) as ledger:
        assert ledger.verify()["ok"] is True  # without the anchor the cut is invisible

    cut, result = run_playbook(tmp_path, ANCHORED_VERIFY_PLAYBOOK, env, export_file=export_file)
    assert cut.returncode == 2, cut.stdout[-4000:]
    assert result["failed"] and (result["first_broken"]["seq"], result["first_broken"]["reason"]) == (4, "anchor_missing")
    assert result["verification"]["anchor"]["ok"] is False and "the anchor is seq 5 but the ledger ends at seq 3" in result["msg"]
