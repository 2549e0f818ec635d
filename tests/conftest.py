"""Test-wide setup: make the collection importable and visible to ansible subprocesses.

The bootstrap links this checkout at ``<venv>/collections/ansible_collections/labops/itsm``;
tests import ``ansible_collections.labops.itsm...`` through that path, and every
``ansible-playbook`` / ``ansible-rulebook`` subprocess finds ``labops.itsm`` through
``ANSIBLE_COLLECTIONS_PATH``.
"""
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COLLECTIONS_PATH = Path(sys.prefix) / "collections"

if str(COLLECTIONS_PATH) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_PATH))
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS_PATH)
os.environ.setdefault("ANSIBLE_NOCOLOR", "1")
os.environ.setdefault("ANSIBLE_LOCALHOST_WARNING", "0")
os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_WARNING", "0")
# OTOBO SessionIDs are cached between module runs; tests keep theirs out of the home directory, and each test
# gets its own cache (a simulator on a reused port would otherwise meet another test's stale session).
_SESSION_CACHE = tempfile.mkdtemp(prefix="labops-test-sessions-")
atexit.register(shutil.rmtree, _SESSION_CACHE, True)
os.environ["LABOPS_OTOBO_SESSION_CACHE"] = os.path.join(_SESSION_CACHE, "otobo")
# ServiceNow OAuth tokens and the ticket-creation metrics (node_exporter textfile) stay out of the home directory too.
os.environ["LABOPS_SERVICENOW_TOKEN_CACHE"] = os.path.join(_SESSION_CACHE, "servicenow")
os.environ["LABOPS_METRICS_DIR"] = os.path.join(_SESSION_CACHE, "metrics")
# Subprocesses must use this venv's tools even when PATH does not include it.
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    return VENV_BIN


@pytest.fixture(autouse=True)
def _own_otobo_session_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LABOPS_OTOBO_SESSION_CACHE", str(tmp_path_factory.mktemp("otobo-sessions")))
