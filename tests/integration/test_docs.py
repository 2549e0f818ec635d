"""Every plugin's documentation renders through the real ansible-doc."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DOC = str(Path(sys.executable).parent / "ansible-doc")


def plugins(kind: str, directory: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((REPO / directory).glob("*.py")):
        if not path.name.startswith("_"):
            found.append((kind, f"labops.itsm.{path.stem}"))
    return found


def filter_names() -> list[tuple[str, str]]:
    return [("filter", f"labops.itsm.{path.stem}") for path in sorted((REPO / "plugins" / "filter").glob("*.yml"))]


@pytest.mark.parametrize(("kind", "name"), plugins("module", "plugins/modules") + filter_names())
def test_ansible_doc_renders(kind: str, name: str):
    result = subprocess.run([ANSIBLE_DOC, "-t", kind, name], capture_output=True, text=True, env=os.environ, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "[WARNING]" not in result.stderr, result.stderr
    assert name.split(".")[-1] in result.stdout
    assert "EXAMPLES" in result.stdout


def test_collection_lists_its_modules():
    result = subprocess.run([ANSIBLE_DOC, "-t", "module", "-l", "labops.itsm"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    for _kind, name in plugins("module", "plugins/modules"):
        assert name in result.stdout
