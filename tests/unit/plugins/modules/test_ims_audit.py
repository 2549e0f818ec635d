# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ims_audit / ims_audit_info: run() against a real SQLite ledger, argspec through main()."""


import hashlib
import json
import os
import sqlite3

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.modules import ims_audit, ims_audit_info


class FakeModule:
    """The only things run() may touch: params, check_mode, _diff."""

    def __init__(self, params, check_mode=False, diff=False):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff


def params_for(path, **overrides):
    params = dict(state="present", action="review", ref_type="incident", ref_id="2025061110000421", fields=None, meta=None,
                  sop="post_incident_review", platform="otobo", record_key=None, fail_on_broken=True, dest=None,
                  anchor=None, anchor_file=None, expect_records=False,
                  ledger_backend="sqlite", ledger_path=str(path), ledger_dsn=None, actor="jdoe", actor_role="incident_manager")
    params.update(overrides)
    return params


@pytest.fixture
def path(tmp_path):
    return tmp_path / "ledger" / "ims_audit.sqlite3"


def run(params, check_mode=False, diff=False):
    with ledger_from_params(params) as ledger:
        return ims_audit.run(FakeModule(params, check_mode, diff), ledger)


def stored(path):
    with ledger_from_params(dict(ledger_path=str(path))) as ledger:
        return ledger.query()


def test_present_appends_and_always_changes(path):
    params = params_for(path, fields={"priority": {"before": "medium", "after": "high"}}, meta={"pir": "https://wiki/x"})
    first = run(params, diff=True)
    second = run(params)
    assert first["changed"] and second["changed"]
    record = first["record"]
    assert (record["seq"], record["action"], record["actor"], record["role"], record["sop"], record["platform"]) == (
        1, "review", "jdoe", "incident_manager", "post_incident_review", "otobo")
    assert record["fields"] == {"priority": {"before": "medium", "after": "high"}}
    assert first["diff"] == {"before": {}, "after": record}
    assert "diff" not in second
    assert stored(path) == [record, second["record"]]


def test_check_mode_reports_the_record_and_writes_nothing(path):
    predicted = run(params_for(path), check_mode=True)
    assert predicted["changed"] and predicted["record"]["seq"] == 1
    assert not path.parent.exists()
    real = run(params_for(path))
    assert dict(real["record"], ts=None, hash=None) == dict(predicted["record"], ts=None, hash=None)
    assert run(params_for(path), check_mode=True)["record"]["prev_hash"] == real["record"]["hash"]
    assert len(stored(path)) == 1


def test_record_key_makes_present_idempotent(path):
    params = params_for(path, record_key="pir-2025061110000421")
    first = run(params)
    assert run(params, check_mode=True) == dict(changed=False, record=first["record"])
    second = run(params, diff=True)
    assert second["changed"] is False and second["record"] == first["record"]
    assert second["diff"] == {"before": first["record"], "after": first["record"]}
    assert len(stored(path)) == 1


def test_secrets_are_not_returned(path):
    result = run(params_for(path, meta={"session_id": "S3SS10N", "url": "https://a:PASSWORD@h/"}))
    assert "S3SS10N" not in json.dumps(result) and "PASSWORD" not in json.dumps(result)


def test_verify_intact_and_empty(path):
    empty = run(params_for(path, state="verify"))
    assert empty == dict(changed=False, verification=dict(ok=True, count=0, first_broken=None, head_seq=0, head_hash="0" * 64, exists=False,
                                                          anchor=None), first_broken=None)
    assert not path.parent.exists()
    run(params_for(path))
    run(params_for(path))
    result = run(params_for(path, state="verify"))
    assert result["verification"]["ok"] and result["verification"]["count"] == 2 and result["first_broken"] is None


def _tamper(path):
    run(params_for(path))
    run(params_for(path))
    conn = sqlite3.connect(str(path))
    with conn:
        conn.execute("UPDATE audit_records SET ref_id = 'other' WHERE seq = 2")
    conn.close()


def test_verify_fails_on_a_broken_chain(path):
    _tamper(path)
    with pytest.raises(LabopsError) as err:
        run(params_for(path, state="verify"))
    kwargs = err.value.fail_kwargs()
    assert "broken at seq 2 (content_changed)" in kwargs["msg"]
    assert kwargs["first_broken"]["seq"] == 2 and kwargs["verification"]["ok"] is False


def test_verify_can_just_report(path):
    _tamper(path)
    result = run(params_for(path, state="verify", fail_on_broken=False))
    assert result["changed"] is False and result["first_broken"]["reason"] == "content_changed"


def exported(dest, count, changed, last):
    return dict(changed=changed, dest=str(dest), count=count, anchor=dict(seq=last["seq"], hash=last["hash"]),
                anchor_file=str(dest) + ".anchor.json", first_broken=None)


def test_exported_changes_only_when_content_differs(path, tmp_path):
    dest = tmp_path / "export.jsonl"
    first = run(params_for(path))["record"]
    export = params_for(path, state="exported", dest=str(dest))
    assert run(export, check_mode=True) == exported(dest, 1, True, first)
    assert not dest.exists()
    assert run(export) == exported(dest, 1, True, first)
    assert run(export) == exported(dest, 1, False, first)
    assert oct(os.stat(str(dest)).st_mode & 0o777) == "0o600"
    second = run(params_for(path))["record"]
    assert run(export, check_mode=True)["changed"] is True
    assert len(dest.read_text().splitlines()) == 1
    assert run(export) == exported(dest, 2, True, second)
    assert sorted(os.listdir(str(tmp_path))) == ["export.jsonl", "export.jsonl.anchor.json", "ledger"]


def test_exported_into_a_missing_directory(path, tmp_path):
    with pytest.raises(LabopsError, match="does not exist"):
        run(params_for(path, state="exported", dest=str(tmp_path / "nope" / "x.jsonl")))


# --------------------------------------------------------------------------- main(): argspec


def call_main(module, args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_main_minimal_present(path, capsys):
    result = call_main(ims_audit, dict(action="notify", ref_type="incident", ref_id="1", ledger_path=str(path)), capsys)
    assert result["changed"] is True and result["record"]["actor"] == "automation" and result["record"]["role"] == "automation"


def test_main_env_fallbacks(path, capsys, monkeypatch):
    monkeypatch.setenv("LABOPS_LEDGER_PATH", str(path))
    monkeypatch.setenv("LABOPS_ACTOR", "eda")
    monkeypatch.setenv("LABOPS_ACTOR_ROLE", "service_desk")
    result = call_main(ims_audit, dict(action="notify", ref_type="incident", ref_id="1"), capsys)
    assert (result["record"]["actor"], result["record"]["role"]) == ("eda", "service_desk")
    assert stored(path)[0]["hash"] == result["record"]["hash"]


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(ref_type="incident", ref_id="1"), "state is present but all of the following are missing: action"),
        (dict(action="delete", ref_type="incident", ref_id="1"), "value of action must be one of"),
        (dict(state="exported"), "dest"),
        (dict(action="read", ref_type="incident", ref_id="1", ledger_backend="postgresql"), "ledger_dsn"),
        (dict(action="read", ref_type="incident", ref_id="1", bogus=1), "Unsupported parameters"),
    ],
)
def test_main_rejects_bad_arguments(path, capsys, args, message):
    result = call_main(ims_audit, dict(args, ledger_path=str(path)), capsys)
    assert result["failed"] and message in result["msg"]


def test_main_dsn_is_no_log(capsys):
    dsn = "host=127.0.0.1 port=1 user=u password=TopS3cret dbname=d connect_timeout=2"
    result = call_main(ims_audit, dict(action="read", ref_type="incident", ref_id="1", ledger_backend="postgresql", ledger_dsn=dsn), capsys)
    assert result["failed"] and result["error_class"] == "AuditWriteError"
    assert "TopS3cret" not in json.dumps(result)


def test_info_filters(path, capsys):
    for ref_id, action in (("1", "create"), ("1", "update"), ("2", "create")):
        run(params_for(path, ref_id=ref_id, action=action))
    result = call_main(ims_audit_info, dict(ref_id="1", ledger_path=str(path)), capsys)
    assert [r["action"] for r in result["records"]] == ["create", "update"] and result["changed"] is False
    result = call_main(ims_audit_info, dict(action="create", limit=1, actor="jdoe", ledger_path=str(path)), capsys)
    assert [(r["seq"], r["ref_id"]) for r in result["records"]] == [(3, "2")]
    result = call_main(ims_audit_info, dict(since="2999-01-01T00:00:00Z", ledger_path=str(path)), capsys)
    assert result["records"] == []


def test_info_on_a_missing_ledger_creates_nothing(path, capsys):
    assert call_main(ims_audit_info, dict(ledger_path=str(path)), capsys)["records"] == []
    assert not path.parent.exists()


@pytest.mark.parametrize("args, message", [(dict(limit=0), "positive"), (dict(until="soon"), "ISO-8601"), (dict(action="x"), "must be one of")])
def test_info_rejects_bad_filters(path, capsys, args, message):
    result = call_main(ims_audit_info, dict(args, ledger_path=str(path)), capsys)
    assert result["failed"] and message in result["msg"]


# --------------------------------------------------------------------------- anchors


def _cut_tail_and_rewrite_head(path, keep):
    """Delete every record after ``keep`` and make the head row match, as an attacker with write access would."""
    conn = sqlite3.connect(str(path))
    with conn:
        conn.execute("DELETE FROM audit_records WHERE seq > ?", (keep,))
        seq, digest = conn.execute("SELECT seq, hash FROM audit_records WHERE seq = ?", (keep,)).fetchone()
        conn.execute("UPDATE audit_meta SET value = ? WHERE key = 'head'", (json.dumps({"seq": seq, "hash": digest}),))
    conn.close()


def test_exported_writes_the_anchor_beside_the_export(path, tmp_path):
    dest = tmp_path / "export.jsonl"
    records = [run(params_for(path))["record"] for dummy in range(3)]
    result = run(params_for(path, state="exported", dest=str(dest)))
    anchor_file = tmp_path / "export.jsonl.anchor.json"
    assert result["anchor"] == dict(seq=3, hash=records[-1]["hash"]) and result["anchor_file"] == str(anchor_file)
    document = json.loads(anchor_file.read_text())
    assert document == dict(format="labops.itsm/ledger-anchor/1", seq=3, hash=records[-1]["hash"], count=3, ledger="sqlite %s" % path,
                            export=str(dest), export_sha256=hashlib.sha256(dest.read_bytes()).hexdigest())
    assert oct(os.stat(str(anchor_file)).st_mode & 0o777) == "0o600"
    anchor_file.unlink()
    assert run(params_for(path, state="exported", dest=str(dest))) == dict(result, changed=True)  # only the anchor was rewritten
    assert run(params_for(path, state="exported", dest=str(dest)))["changed"] is False


def test_verify_against_the_anchor_of_the_last_export(path, tmp_path):
    dest = tmp_path / "export.jsonl"
    for dummy in range(4):
        run(params_for(path))
    anchor = run(params_for(path, state="exported", dest=str(dest)))["anchor"]
    anchor_file = str(dest) + ".anchor.json"
    result = run(params_for(path, state="verify", anchor_file=anchor_file))
    assert result["verification"]["anchor"] == dict(anchor, ok=True) and result["first_broken"] is None
    assert run(params_for(path, state="verify", anchor_file=str(dest)))["verification"]["anchor"]["ok"] is True  # the export itself
    _cut_tail_and_rewrite_head(path, 2)
    assert run(params_for(path, state="verify"))["verification"]["ok"] is True
    with pytest.raises(LabopsError) as err:
        run(params_for(path, state="verify", anchor_file=anchor_file))
    kwargs = err.value.fail_kwargs()
    assert "broken at seq 3 (anchor_missing)" in kwargs["msg"] and "the anchor is seq 4 but the ledger ends at seq 2" in kwargs["msg"]
    assert kwargs["verification"]["anchor"] == dict(anchor, ok=False)


def test_verify_against_an_anchor_option(path):
    records = [run(params_for(path))["record"] for dummy in range(2)]
    assert run(params_for(path, state="verify", anchor=dict(seq=1, hash=records[0]["hash"])))["first_broken"] is None
    with pytest.raises(LabopsError, match=r"broken at seq 1 \(anchor_mismatch\)"):
        run(params_for(path, state="verify", anchor=dict(seq=1, hash=records[1]["hash"])))
    result = run(params_for(path, state="verify", anchor=dict(seq=7, hash=records[1]["hash"]), fail_on_broken=False))
    assert result["first_broken"]["reason"] == "anchor_missing" and result["verification"]["ok"] is False


def test_verify_expect_records_on_a_missing_ledger(path):
    with pytest.raises(LabopsError, match=r"broken at seq 1 \(missing\): the ledger does not exist"):
        run(params_for(path, state="verify", expect_records=True))
    assert not path.parent.exists()


def test_verify_with_a_missing_anchor_file_fails(path, tmp_path):
    run(params_for(path))
    with pytest.raises(LabopsError, match="anchor file .*nope.json cannot be read"):
        run(params_for(path, state="verify", anchor_file=str(tmp_path / "nope.json")))


def test_exported_keeps_the_anchor_of_a_cut_ledger(path, tmp_path):
    dest = tmp_path / "export.jsonl"
    anchor_file = tmp_path / "export.jsonl.anchor.json"
    for dummy in range(4):
        run(params_for(path))
    run(params_for(path, state="exported", dest=str(dest)))
    export_before, anchor_before = dest.read_text(), anchor_file.read_text()
    _cut_tail_and_rewrite_head(path, 2)
    run(params_for(path))  # new records 3 and 4: the chain links up again and is as long as before
    run(params_for(path))
    with pytest.raises(LabopsError, match=r"broken \(nothing was exported\) at seq 4 \(anchor_mismatch\)"):
        run(params_for(path, state="exported", dest=str(dest)))
    assert (dest.read_text(), anchor_file.read_text()) == (export_before, anchor_before)
    forensic = run(params_for(path, state="exported", dest=str(dest), fail_on_broken=False))
    assert forensic["changed"] and forensic["anchor"] is None and forensic["first_broken"]["reason"] == "anchor_mismatch"
    assert len(dest.read_text().splitlines()) == 4 and anchor_file.read_text() == anchor_before


def test_exported_refuses_a_broken_chain(path, tmp_path):
    _tamper(path)
    dest = tmp_path / "export.jsonl"
    with pytest.raises(LabopsError, match=r"content_changed"):
        run(params_for(path, state="exported", dest=str(dest)))
    assert not dest.exists() and not os.path.exists(str(dest) + ".anchor.json")


def test_exported_anchor_file_option(path, tmp_path):
    run(params_for(path))
    (tmp_path / "anchors").mkdir()
    anchor_file = tmp_path / "anchors" / "ims.anchor"
    result = run(params_for(path, state="exported", dest=str(tmp_path / "e.jsonl"), anchor_file=str(anchor_file)))
    assert result["anchor_file"] == str(anchor_file) and json.loads(anchor_file.read_text())["seq"] == 1
    assert sorted(os.listdir(str(tmp_path))) == ["anchors", "e.jsonl", "ledger"]


def test_main_anchor_arguments(path, capsys):
    result = call_main(ims_audit, dict(state="verify", anchor=dict(seq=1, hash="a" * 64), anchor_file="/x", ledger_path=str(path)), capsys)
    assert result["failed"] and "mutually exclusive" in result["msg"]
    result = call_main(ims_audit, dict(state="verify", anchor=dict(seq=1), ledger_path=str(path)), capsys)
    assert result["failed"] and "hash" in result["msg"]
    result = call_main(ims_audit, dict(state="verify", anchor=dict(seq=1, hash="xyz"), ledger_path=str(path)), capsys)
    assert result["failed"] and "64 lowercase hexadecimal" in result["msg"]
    result = call_main(ims_audit, dict(state="verify", expect_records=True, ledger_path=str(path)), capsys)
    assert result["failed"] and result["first_broken"]["reason"] == "missing" and not path.parent.exists()
