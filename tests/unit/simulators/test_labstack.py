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
