"""The collection tarball holds the collection and nothing else, and it works once installed.

A copy of the tree is given the runtime state a developer's checkout really has after
`make demo` / `make test` (a `.demo/<ts>/` with a 0600 webhook token, ledger and logs, the
bootstrap's virtualenvs with the collection link back into the tree, caches, build output),
then the real ``ansible-galaxy collection build`` packs it. The tarball must not carry any of
that, every shipped Python file must import only what ships, and the tarball must install
offline and document its modules through ``ansible-doc``.
"""
from __future__ import annotations

import ast
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
NAMESPACE, NAME = "labops", "itsm"
COLLECTION_PACKAGE = f"ansible_collections.{NAMESPACE}.{NAME}"
# Top-level packages of the developer tree: present in the repository, never in the tarball.
DEVELOPER_PACKAGES = frozenset({"simulators", "scripts", "tests", "bench"})
# Copied from the checkout? No: these are large or recreated below as the runtime state under test.
NOT_COPIED = (".git", ".venv", ".venv-*", ".build", ".demo", ".pytest_cache", "tests/output", "bench/results", "collections")
TOKEN = "labops-build-test-secret-token-6b1f0c"

RUNTIME_STATE = re.compile(
    r"""(^|/)(
        \.[^/]+                  # anything hidden: .demo, .venv*, .build, .pytest_cache, .git ...
      | __pycache__ | [^/]+\.py[co]
      | [^/]+\.sqlite3(-[a-z]+)? | [^/]+\.log
      | webhook-token
      | collections | tests/output | bench/results
      | pyvenv\.cfg | site-packages
      | [^/]+\.tar\.gz
    )(/|$)""",
    re.VERBOSE,
)


def _copy_tree(destination: Path) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        relative = Path(directory).relative_to(REPO)
        skipped = set()
        for name in names:
            path = (relative / name).as_posix()
            if any(PurePosixPath(path).match(pattern) and path.count("/") == pattern.count("/") for pattern in NOT_COPIED):
                skipped.add(name)
        return skipped

    shutil.copytree(REPO, destination, symlinks=True, ignore=ignore)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _add_runtime_state(tree: Path) -> None:
    """What the checkout holds after bootstrap, `make demo` and a test run."""
    demo = tree / ".demo" / "20261203-080000"
    _write(demo / "webhook-token", TOKEN, 0o600)
    _write(demo / "ledger" / "ims_audit.sqlite3", "SQLite format 3\0")
    _write(demo / "ledger" / "ims_audit.sqlite3-wal", "")
    _write(demo / "ansible-rulebook.log", f"Authorization: Bearer {TOKEN}\n")
    _write(demo / "alertmanager" / "alertmanager.log", "level=info msg=Starting\n")
    _write(demo / "alertmanager" / "alertmanager.yml", json.dumps({"credentials_file": str(demo / "webhook-token")}))
    _write(demo / "vars.json", json.dumps({"webhook_port": 5000}))
    for venv in (".venv", ".venv-py312"):
        _write(tree / venv / "pyvenv.cfg", "home = /usr/bin\n")
        _write(tree / venv / "lib" / "python3.11" / "site-packages" / "stray.py", "import simulators\n")
        link = tree / venv / "collections" / "ansible_collections" / NAMESPACE / NAME
        link.parent.mkdir(parents=True)
        link.symlink_to(tree, target_is_directory=True)
    _write(tree / ".build" / ".venv" / "ansible_collections" / NAMESPACE / NAME / "galaxy.yml", "namespace: labops\n")
    for cache in (tree / "plugins" / "module_utils" / "__pycache__", tree / "tests" / "unit" / "__pycache__"):
        _write(cache / "_http.cpython-311.pyc", "\0")
    _write(tree / ".pytest_cache" / "v" / "cache" / "lastfailed", "{}")
    _write(tree / "plugins" / ".ruff_cache" / "CACHEDIR.TAG", "")
    _write(tree / "tests" / "output" / "junit.xml", "<testsuite/>")
    _write(tree / "bench" / "results" / "latency.json", "{}")
    _write(tree / "collections" / "ansible_collections" / "community" / "general" / "MANIFEST.json", "{}")
    _write(tree / f"{NAMESPACE}-{NAME}-0.0.1.tar.gz", "")
    _write(tree / "playbooks" / "ansible.log", "stray log\n")


def _galaxy_version(tree: Path) -> str:
    match = re.search(r"^version:\s*(\S+)", (tree / "galaxy.yml").read_text(), re.MULTILINE)
    assert match, "galaxy.yml has no version"
    return match.group(1)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("build")
    tree = base / "checkout"
    _copy_tree(tree)
    _add_runtime_state(tree)
    out = base / "dist"
    out.mkdir()
    result = subprocess.run(
        [str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(tree)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tarball = out / f"{NAMESPACE}-{NAME}-{_galaxy_version(tree)}.tar.gz"
    assert tarball.is_file(), result.stdout
    with tarfile.open(tarball) as archive:
        members = {member.name.rstrip("/"): member for member in archive.getmembers()}
        contents = {name: archive.extractfile(member).read() for name, member in members.items() if member.isfile()}
    return {"tarball": tarball, "members": members, "contents": contents, "base": base, "stderr": result.stderr}


def test_tarball_holds_no_runtime_state(built: dict):
    leaked = sorted(name for name in built["members"] if RUNTIME_STATE.search(name))
    assert not leaked, f"runtime state, virtualenvs or caches in the tarball: {leaked}"
    holding_token = sorted(name for name, data in built["contents"].items() if TOKEN.encode() in data)
    assert not holding_token, f"the demo's webhook token is in {holding_token}"


def test_tarball_holds_no_developer_tree(built: dict):
    top_level = {name.split("/")[0] for name in built["members"]}
    assert not top_level & DEVELOPER_PACKAGES, sorted(top_level & DEVELOPER_PACKAGES)
    assert not top_level & {"Makefile", "pyproject.toml", "README.md"}, sorted(top_level)
    assert not [name for name in top_level if name.startswith("requirements-")], sorted(top_level)


def test_tarball_holds_the_collection(built: dict):
    expected = {
        "MANIFEST.json", "FILES.json", "LICENSE", "CHANGELOG.rst", "meta/runtime.yml", "meta/extensions.yml",
        "plugins/modules/ims_sop.py", "plugins/modules/otobo_ticket.py", "plugins/module_utils/_http.py",
        "extensions/eda/plugins/event_source/alertmanager.py", "rulebooks/alertmanager_itsm.yml",
        "playbooks/incident_open.yml", "playbooks/incident_resolve.yml", "playbooks/alert_batch.yml", "plugins/modules/alert_intake.py",
        "docs/docsite/extra-docs.yml",
    }
    assert expected <= set(built["members"]), sorted(expected - set(built["members"]))
    assert "[WARNING]" not in built["stderr"], built["stderr"]


def test_manifest_readme_is_for_an_installed_collection(built: dict):
    info = json.loads(built["contents"]["MANIFEST.json"])["collection_info"]
    readme = info["readme"]
    assert readme in built["contents"], f"galaxy.yml readme {readme!r} is not in the tarball"
    text = built["contents"][readme].decode()
    assert "make demo" not in text and "make test" not in text, "the shipped README points at repository-only commands"
    assert "ansible-galaxy collection install" in text
    placeholders = {key: value for key, value in info.items() if isinstance(value, str) and "example.invalid" in value}
    assert not placeholders, f"placeholder URLs in galaxy.yml: {placeholders}"


def test_shipped_markdown_links_resolve(built: dict):
    """A relative link in a shipped Markdown file points at a shipped file or directory."""
    dangling = []
    for name, data in sorted(built["contents"].items()):
        if not name.endswith(".md"):
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", data.decode()):
            if re.match(r"[a-z]+:|#", target):
                continue
            path = posixpath.normpath(posixpath.join(posixpath.dirname(name), target.split("#", 1)[0]))
            if path not in built["members"]:
                dangling.append(f"{name}: {target}")
    assert not dangling, "links to files the tarball lacks:\n" + "\n".join(dangling)


def test_extension_dirs_exist(built: dict):
    text = built["contents"]["meta/extensions.yml"].decode()
    for ext_dir in re.findall(r"ext_dir:\s*(\S+)", text):
        assert f"extensions/{ext_dir}" in built["members"], f"meta/extensions.yml names a missing {ext_dir}"


def _module_name(path: str) -> str:
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([COLLECTION_PACKAGE, *parts])


def _imports(path: str, source: bytes) -> list[str]:
    """Every module a file imports, absolute; `from X import y` yields X and X.y (y may be a submodule)."""
    package = _module_name(path) if path.endswith("__init__.py") else _module_name(path).rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(module)
            found.extend(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def _dangling(module: str, shipped: set[str], shipped_dirs: set[str]) -> bool:
    top = module.split(".")[0]
    if top in DEVELOPER_PACKAGES:
        return True
    if not module.startswith(COLLECTION_PACKAGE + "."):
        return False
    relative = module[len(COLLECTION_PACKAGE) + 1:].replace(".", "/")
    if f"{relative}.py" in shipped or f"{relative}/__init__.py" in shipped or relative in shipped_dirs:
        return False
    # `from package.module import name`: the name is an attribute of a shipped module.
    parent = relative.rsplit("/", 1)[0] if "/" in relative else ""
    return not (parent and f"{parent}.py" in shipped)


def test_shipped_python_imports_only_what_ships(built: dict):
    shipped = set(built["contents"])
    shipped_dirs = {name for name, member in built["members"].items() if member.isdir()}
    python_files = sorted(name for name in shipped if name.endswith(".py"))
    assert python_files
    dangling = []
    for path in python_files:
        for module in _imports(path, built["contents"][path]):
            if _dangling(module, shipped, shipped_dirs):
                dangling.append(f"{path}: {module}")
    assert not dangling, "shipped files import modules the tarball lacks:\n" + "\n".join(sorted(set(dangling)))


def test_import_check_catches_a_dangling_import():
    """The check above can fail: a developer-tree import and a missing collection module are dangling."""
    shipped = {"plugins/module_utils/_http.py"}
    assert _dangling("simulators.harness", shipped, set())
    assert _dangling(f"{COLLECTION_PACKAGE}.tests.pg", shipped, set())
    assert _dangling(f"{COLLECTION_PACKAGE}.plugins.module_utils._gone", shipped, {"plugins", "plugins/module_utils"})
    assert not _dangling(f"{COLLECTION_PACKAGE}.plugins.module_utils._http", shipped, set())
    assert not _dangling(f"{COLLECTION_PACKAGE}.plugins.module_utils._http.HttpClient", shipped, set())
    assert _imports("plugins/modules/x.py", b"from ..module_utils import _http\n") == [
        f"{COLLECTION_PACKAGE}.plugins.module_utils", f"{COLLECTION_PACKAGE}.plugins.module_utils._http"]


def _installed_env(target: Path) -> dict:
    # Only the temporary collections path: the checkout's own link must not answer for the tarball.
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(target), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
                ANSIBLE_GALAXY_SERVER="http://127.0.0.1:9/", ANSIBLE_NOCOLOR="1")


@pytest.fixture(scope="module")
def installed(built: dict) -> tuple[Path, dict]:
    target = built["base"] / "installed"
    env = _installed_env(target)
    install = subprocess.run(
        [str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--offline", str(built["tarball"]), "-p", str(target)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    collection = target / "ansible_collections" / NAMESPACE / NAME
    assert (collection / "plugins" / "modules" / "ims_sop.py").is_file()
    assert not (collection / ".demo").exists()
    return collection, env


def test_installed_tarball_documents_its_modules(installed: tuple[Path, dict]):
    collection, env = installed
    doc = subprocess.run([str(VENV_BIN / "ansible-doc"), f"{NAMESPACE}.{NAME}.ims_sop"],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert doc.returncode == 0, doc.stderr
    assert "[WARNING]" not in doc.stderr, doc.stderr
    assert str(collection) in doc.stdout, f"ansible-doc did not read the installed copy:\n{doc.stdout[:500]}"
    assert "EXAMPLES" in doc.stdout

    listing = subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", "module", "-l", f"{NAMESPACE}.{NAME}"],
                             capture_output=True, text=True, env=env, timeout=120, check=False)
    assert listing.returncode == 0, listing.stderr
    for module in sorted((REPO / "plugins" / "modules").glob("*.py")):
        assert f"{NAMESPACE}.{NAME}.{module.stem}" in listing.stdout


RULEBOOK_LOOKUP = """
import json, sys
from ansible_rulebook import collection
name = sys.argv[1]
print(json.dumps({
    "source": collection.find_source(name, "alertmanager"),
    "rulebook": collection.has_rulebook(name, "alertmanager_itsm"),
    "playbook": collection.find_playbook(name, "incident_open"),
}))
"""


def test_installed_tarball_serves_ansible_rulebook(installed: tuple[Path, dict]):
    """ansible-rulebook resolves the event source, the rulebook and the playbooks from the installed copy."""
    pytest.importorskip("ansible_rulebook", reason="ansible-rulebook is not installed in this venv")
    collection, env = installed
    result = subprocess.run([sys.executable, "-c", RULEBOOK_LOOKUP, f"{NAMESPACE}.{NAME}"],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["source"] == str(collection / "extensions" / "eda" / "plugins" / "event_source" / "alertmanager.py")
    assert found["rulebook"] is True
    assert found["playbook"] == str(collection / "playbooks" / "incident_open.yml")
