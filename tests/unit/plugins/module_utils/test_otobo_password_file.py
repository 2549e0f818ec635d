"""OTOBO's ``password_file`` (E(OTOBO_PASSWORD_FILE)): read on the controller, masked, never echoed on errors."""
import io
import json
import os
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._otobo import client_from_params, connection_password, read_secret_file
from ansible_collections.labops.itsm.plugins.modules import otobo_ticket_info
from simulators.harness import start_in_thread

SECRET = "pw-file-9Kq2-never-echoed"


def secret_file(tmp_path, content, mode=0o600, name="otobo-password"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("content, expected", [
    (SECRET, SECRET), (SECRET + "\n", SECRET), (SECRET + "\r\n", SECRET),
    (SECRET + "\n\n", SECRET + "\n"),  # one newline only: the rest is the password
    (" " + SECRET + " \n", " " + SECRET + " "),
])
def test_one_trailing_newline_is_stripped(tmp_path, content, expected):
    warnings = []
    assert read_secret_file(secret_file(tmp_path, content), "password_file", warnings.append) == expected
    assert warnings == []


def test_world_readable_file_is_used_with_a_warning(tmp_path):
    warnings = []
    path = secret_file(tmp_path, SECRET, mode=0o644)
    assert read_secret_file(path, "password_file", warnings.append) == SECRET
    assert warnings == [f"otobo: password_file {path} is readable by every user (mode 0644); restrict it with chmod 0600"]


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"), ("directory", "is not a regular file"), ("empty", "is empty"),
    ("newline only", "is empty"), ("binary", "is not UTF-8 text"),
])
def test_unusable_files_fail_with_the_path_and_without_the_content(tmp_path, case, message):
    path = {"missing": lambda: str(tmp_path / "absent"),
            "directory": lambda: str(tmp_path),
            "empty": lambda: secret_file(tmp_path, ""),
            "newline only": lambda: secret_file(tmp_path, "\n"),
            "binary": lambda: secret_file(tmp_path, b"\xff\xfe" + SECRET.encode())}[case]()
    with pytest.raises(ValidationError) as info:
        read_secret_file(path, "password_file")
    assert str(info.value) == f"otobo: password_file {path} {message}"
    assert SECRET not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_names_the_reason(tmp_path):
    path = secret_file(tmp_path, SECRET, mode=0o000)
    with pytest.raises(ValidationError, match=f"otobo: password_file {path} cannot be read: Permission denied"):
        read_secret_file(path, "password_file")


def test_password_or_password_file(tmp_path):
    path = secret_file(tmp_path, SECRET + "\n")
    assert connection_password({"password": "given"}) == "given"
    assert connection_password({"password_file": path}) == SECRET
    with pytest.raises(ValidationError, match="password and password_file are mutually exclusive"):
        connection_password({"password": "given", "password_file": path})
    with pytest.raises(ValidationError, match="one of password or password_file is required .*OTOBO_PASSWORD_FILE"):
        connection_password({"password": None, "password_file": None})


def test_client_registers_the_file_secret(tmp_path):
    registered = []
    client = client_from_params({"url": "http://otobo.test", "username": "alertbot", "password_file": secret_file(tmp_path, SECRET)},
                                register_secret=registered.append)
    assert registered == [SECRET]
    assert client._password == SECRET  # pylint: disable=protected-access
    assert SECRET in client.http._secrets  # pylint: disable=protected-access


@pytest.fixture(scope="module")
def sim():
    server = start_in_thread("otobo", {"agents": [{"login": "alertbot", "password": SECRET, "id": 3}]})
    yield server
    server.stop()


def run_info(monkeypatch, args):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with patch_module_args(args), pytest.raises(SystemExit):
        otobo_ticket_info.main()
    monkeypatch.undo()
    return out.getvalue(), json.loads(out.getvalue())


def test_module_reads_the_file_and_never_echoes_it(sim, tmp_path, monkeypatch):
    for name in ("OTOBO_PASSWORD", "OTOBO_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTOBO_PASSWORD_FILE", secret_file(tmp_path, SECRET + "\n"))
    args = {"url": sim.url, "username": "alertbot", "session_cache": "", "title": "contains " + SECRET}
    raw, result = run_info(monkeypatch, args)
    assert result.get("failed") is not True, result
    assert SECRET not in raw
    # a wrong password from the file: the platform's refusal, without the password
    monkeypatch.setenv("OTOBO_PASSWORD_FILE", secret_file(tmp_path, "wrong-" + SECRET, name="wrong"))
    raw, result = run_info(monkeypatch, dict(args, title="anything"))
    assert result["failed"] is True and SECRET not in raw


def test_module_refuses_both_and_neither(sim, tmp_path, monkeypatch):
    for name in ("OTOBO_PASSWORD", "OTOBO_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    path = secret_file(tmp_path, SECRET)
    raw, result = run_info(monkeypatch, {"url": sim.url, "username": "alertbot", "password": SECRET, "password_file": path})
    assert result["failed"] is True and "mutually exclusive: password|password_file" in result["msg"] and SECRET not in raw
    raw, result = run_info(monkeypatch, {"url": sim.url, "username": "alertbot"})
    assert result["failed"] is True and "one of the following is required: password, password_file" in result["msg"]
    raw, result = run_info(monkeypatch, {"url": sim.url, "username": "alertbot", "password_file": str(tmp_path / "absent")})
    assert result["failed"] is True and result["msg"] == f"otobo: password_file {tmp_path / 'absent'} does not exist"
