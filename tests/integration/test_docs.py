"""Every plugin's documentation renders through the real ansible-doc, and the antsibull-docs docsite
(docs/docsite/: the guides as RST generated from docs/*.md, plus every plugin page) lints clean."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


# --- the antsibull-docs collection docsite (docs/docsite/) ---------------------------------

DOCSITE = REPO / "docs" / "docsite"
ANTSIBULL_DOCS = Path(sys.executable).parent / "antsibull-docs"


def test_docsite_rst_matches_the_markdown_guides():
    pytest.importorskip("markdown_it", reason="markdown-it-py (the Markdown parser md2rst uses) is not installed in this venv")
    result = subprocess.run([sys.executable, str(DOCSITE / "md2rst.py"), "--check"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"docs/docsite/rst is stale, run `make docs-rst`:\n{result.stdout}{result.stderr}"


def test_extra_docs_index_lists_every_page():
    listed = re.findall(r"^\s+- (\S+)\s*$", (DOCSITE / "extra-docs.yml").read_text(), re.MULTILINE)
    pages = sorted(path.relative_to(DOCSITE / "rst").with_suffix("").as_posix() for path in (DOCSITE / "rst").rglob("*.rst"))
    assert sorted(listed) == pages
    assert {"event_source", "alert_path", "lifecycle", "audit_ledger"} <= set(pages)


def test_docsite_documents_every_event_source_option():
    """antsibull-docs has no EDA plugin pages: the event source guide carries its reference."""
    schema = json.loads((REPO / "extensions" / "eda" / "plugins" / "event_source" / "schemas" / "alertmanager.json").read_text())
    page = (DOCSITE / "rst" / "event_source.rst").read_text()
    missing = [name for name in schema["properties"] if f"``{name}``" not in page]
    assert not missing, f"options of the alertmanager event source missing from its docsite page: {missing}"
    documented = option_defaults(page)
    for name, spec in schema["properties"].items():
        if "default" in spec:
            assert documented.get(name) == spec["default"], f"{name}: the page says {documented.get(name)!r}, the schema {spec['default']!r}"


def option_defaults(page: str) -> dict:
    """name -> default from the first list-table (option | default | meaning) of a page."""
    table = page.split(".. list-table::", 1)[1].split("\n\n")[1] + "\n"
    defaults = {}
    for row in re.findall(r"^   \* - (.*)\n     - (.*)\n", table, re.MULTILINE):
        value = re.fullmatch(r"``(.*)``", row[1])
        for name in re.findall(r"``(\w+)``", row[0]):
            defaults[name] = yaml.safe_load(value.group(1)) if value else None
    return defaults


def test_md2rst_escapes_what_rst_would_misread():
    """The generator's inline rules: markup glued to words, trailing underscores, code with spaces."""
    pytest.importorskip("markdown_it", reason="markdown-it-py (the Markdown parser md2rst uses) is not installed in this venv")
    sys.path.insert(0, str(DOCSITE))
    try:
        import md2rst  # pylint: disable=import-outside-toplevel,import-error
    finally:
        sys.path.remove(str(DOCSITE))
    text = md2rst.Converter("sop/x", {"sop/x", "lifecycle"}).convert(
        "# T\n\nthe `ck`s of ` [ck:<key>]`, word_ and *a*b, [`policy`](../lifecycle.md#roles), [repo](../README.md)\n")
    assert "the ``ck``\\ s of ``[ck:<key>]``, word\\_ and *a*\\ b, " in text
    assert ":ref:`policy <ansible_collections.labops.itsm.docsite.lifecycle>`, repo" in text
    with pytest.raises(ValueError, match="unsupported"):
        md2rst.Converter("x", set()).convert("<div>raw html</div>\n")


def test_collection_docs_lint():
    """antsibull-docs lints the extra docs and renders every plugin page (schema, markup, references, rstcheck)."""
    if not ANTSIBULL_DOCS.exists():
        pytest.skip(f"antsibull-docs is not installed in {ANTSIBULL_DOCS.parent} (the lock files pin it; pip install antsibull-docs==2.28.0)")
    result = subprocess.run(
        [str(ANTSIBULL_DOCS), "lint-collection-docs", "--plugin-docs", "--check-extra-docs-refs", "--validate-collection-refs", "self", str(REPO)],
        capture_output=True, text=True, env=os.environ, timeout=600, check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_collection_readme_otobo_setup_matches_the_readme():
    """The shipped README repeats the repository README's OTOBO setup (tests/e2e/test_lab_config.py checks that one)."""
    readme = (REPO / "README.md").read_text()
    repo_setup = readme[readme.index("### OTOBO\n"):readme.index("Firing alerts become IMS incidents")]
    shipped = (REPO / "COLLECTION_README.md").read_text()
    shipped_setup = shipped[shipped.index("## OTOBO setup\n"):shipped.index("## Use\n")]
    assert set(re.findall(r"`([^`]+)`", shipped_setup)) == set(re.findall(r"`([^`]+)`", repo_setup))
