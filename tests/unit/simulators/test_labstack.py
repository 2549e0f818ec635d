"""scripts/labstack.py and scripts/demo.py: the lab profile is what the stack starts, and a slow
ansible-rulebook ends in a message naming its log and the knob to wait longer, not a traceback."""
from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts import demo, labstack


def test_stack_uses_the_lab_profile() -> None:
    from simulators.otobo_lab import lab_overrides

    assert labstack.itsm_sim_config() == lab_overrides()
    assert labstack.Stack(Path("/nonexistent")).sim_config == lab_overrides()


def _fake_rulebook(tmp_path: Path, script: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ansible-rulebook"
    fake.write_text(f"#!{sys.executable}\n{script}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def _rulebook(tmp_path: Path, bin_dir: Path) -> labstack.Rulebook:
    return labstack.Rulebook(tmp_path / "work", Path("rulebook.yml"), Path("inventory"), {}, {}, venv_bin=bin_dir)


def test_slow_rulebook_names_its_log_and_the_timeout_knob(tmp_path: Path) -> None:
    rulebook = _rulebook(tmp_path, _fake_rulebook(tmp_path, "import time\nprint('loading', flush=True)\ntime.sleep(60)"))
    try:
        with pytest.raises(labstack.StackStartError) as caught:
            rulebook.start(ready_url=f"http://127.0.0.1:{labstack.free_port()}/health", ready_timeout=1.5)
    finally:
        rulebook.stop()
    message = str(caught.value)
    assert str(rulebook.log_path) in message
    assert labstack.RULEBOOK_TIMEOUT_ENV in message and "--rulebook-timeout" in message


def test_rulebook_that_exits_names_its_log(tmp_path: Path) -> None:
    rulebook = _rulebook(tmp_path, _fake_rulebook(tmp_path, "import sys\nprint('boom', flush=True)\nsys.exit(3)"))
    with pytest.raises(labstack.StackStartError) as caught:
        rulebook.start(ready_url=f"http://127.0.0.1:{labstack.free_port()}/health", ready_timeout=20)
    assert "exited (3)" in str(caught.value) and str(rulebook.log_path) in str(caught.value) and "boom" in str(caught.value)


def test_timeout_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv(labstack.RULEBOOK_TIMEOUT_ENV, "240")
    assert labstack.rulebook_ready_timeout() == 240
    monkeypatch.delenv(labstack.RULEBOOK_TIMEOUT_ENV)
    assert labstack.rulebook_ready_timeout() == labstack.DEFAULT_RULEBOOK_READY_TIMEOUT
    monkeypatch.setenv(labstack.RULEBOOK_TIMEOUT_ENV, "soon")
    with pytest.raises(labstack.StackStartError, match="not a number"):
        labstack.rulebook_ready_timeout()


def test_demo_reports_a_start_failure_without_traceback(monkeypatch: Any, capsys: Any) -> None:
    def failing_run(args: Any) -> int:
        assert args.rulebook_timeout == 5
        raise labstack.StackStartError("ansible-rulebook did not open its event source; read /x/ansible-rulebook.log")

    monkeypatch.setattr(demo, "run", failing_run)
    monkeypatch.setattr(demo.signal, "signal", lambda *_args: None)  # keep pytest's own SIGTERM handler
    monkeypatch.setattr(sys, "argv", ["demo.py", "--rulebook-timeout", "5"])
    assert demo.main() == 2
    err = capsys.readouterr().err
    assert "could not start the stack" in err and "/x/ansible-rulebook.log" in err and "Traceback" not in err


class _Sim:
    url = "http://127.0.0.1:1"


def _stack(tmp_path: Path, **kwargs: Any) -> labstack.Stack:
    stack = labstack.Stack(tmp_path / "work", **kwargs)
    stack.sim = _Sim()
    return stack


def test_no_secret_in_the_daemons_environment_or_variables(tmp_path: Path) -> None:
    stack = _stack(tmp_path, rulebook_vars={"intake_retry_for": 60})
    env, variables = stack.daemon_env(), stack.daemon_vars()
    assert not stack.uses_token_env()  # the rulebook reads webhook_token_file
    secrets = (stack.token, labstack.AGENT_PASSWORD)
    assert not [name for name, value in {**env, **variables}.items() if any(secret in str(value) for secret in secrets)]
    assert "LABOPS_WEBHOOK_TOKEN" not in env and "OTOBO_PASSWORD" not in env
    assert env["OTOBO_PASSWORD_FILE"] == str(stack.password_file) == str(tmp_path / "work" / "otobo-password")
    assert env["LABOPS_SPOOL_PATH"] == str(stack.spool_path) == str(tmp_path / "work" / "spool" / "intake_spool.sqlite3")
    assert env["TMPDIR"] == str(stack.tmp_dir)
    assert variables["webhook_token_file"] == str(stack.token_file) and variables["intake_retry_for"] == 60
    assert variables["alertmanager_url"] == f"http://127.0.0.1:{stack.alertmanager_port}"


def test_legacy_switches_for_a_rulebook_from_before_issue_7(tmp_path: Path) -> None:
    old = tmp_path / "old.yml"
    old.write_text('token: "{{ LABOPS_WEBHOOK_TOKEN }}"\n')
    stack = _stack(tmp_path, rulebook=old, password_in_env=True)
    env = stack.daemon_env()
    assert stack.uses_token_env() and env["LABOPS_WEBHOOK_TOKEN"] == stack.token
    assert env["OTOBO_PASSWORD"] == labstack.AGENT_PASSWORD and "OTOBO_PASSWORD_FILE" not in env
    assert not _stack(tmp_path, rulebook=old, token_in_env=False).uses_token_env()


def test_secret_files_are_private(tmp_path: Path) -> None:
    path = labstack.write_secret(tmp_path / "dir" / "secret", "value")
    assert path.read_text() == "value" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rulebook_does_not_inherit_secrets(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("OTOBO_PASSWORD", "from-the-shell")
    monkeypatch.setenv("LABOPS_WEBHOOK_TOKEN", "from-the-shell")
    script = ("import json, os, sys\n"
              "print(json.dumps({k: v for k, v in os.environ.items() if 'OTOBO' in k or 'LABOPS' in k}), flush=True)\n"
              "print(sys.argv, flush=True)\nsys.exit(3)")
    rulebook = labstack.Rulebook(tmp_path / "work", Path("rulebook.yml"), Path("inventory"), {"OTOBO_PASSWORD_FILE": "/f"}, {},
                                 venv_bin=_fake_rulebook(tmp_path, script))
    with pytest.raises(labstack.StackStartError):
        rulebook.start(ready_url=f"http://127.0.0.1:{labstack.free_port()}/health", ready_timeout=20)
    log = rulebook.log_path.read_text()
    assert "from-the-shell" not in log and '"OTOBO_PASSWORD_FILE": "/f"' in log and "--env-vars" not in log
