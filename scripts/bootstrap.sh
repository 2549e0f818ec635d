#!/usr/bin/env bash
# Bootstrap everything `make demo` and `make test` need on a fresh Debian 12 machine:
# system packages (AlertManager, Java 17 for ansible-rulebook, PostgreSQL for ledger tests),
# a pinned virtualenv, the collection on a local collections path, and the offline
# get-pip stand-in that `ansible-test sanity --venv` looks for.
# Idempotent: every step is skipped when its result is already in place.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LABOPS_VENV:-$ROOT/.venv}"
PYTHON="${LABOPS_PYTHON:-python3.11}"
LOCK="${LABOPS_LOCK:-$ROOT/requirements-lock.txt}"
COLLECTIONS="$VENV/collections"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

need_apt=()
apt_missing() { ! dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

java_major() {
  command -v java >/dev/null 2>&1 || { echo 0; return; }
  java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}'
}

install_system_packages() {
  apt_missing prometheus-alertmanager && need_apt+=(prometheus-alertmanager)
  [ "$(java_major)" -ge 17 ] 2>/dev/null || need_apt+=(openjdk-17-jre-headless)
  if [ "${LABOPS_WITH_POSTGRES:-0}" = 1 ]; then
    apt_missing postgresql && need_apt+=(postgresql)
  fi
  command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
  if [ "${LABOPS_WITH_TEST_TOOLS:-0}" = 1 ]; then
    command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
    # tests/unit/plugins/module_utils/test_metrics.py serves the metrics textfile through a real node_exporter
    apt_missing prometheus-node-exporter && need_apt+=(prometheus-node-exporter)
  fi
  if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the package scripts from starting services we start ourselves.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
}

# A pyenv shim exists for every installed version but only runs the active ones, so a
# candidate counts only when it actually starts.
find_python() {
  local want="${PYTHON#python}" candidate
  for candidate in "$(command -v "$PYTHON" 2>/dev/null)" \
      "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want"*/bin/python"$want" \
      /usr/bin/python"$want" /usr/local/bin/python"$want"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import venv' >/dev/null 2>&1 && { echo "$candidate"; return 0; }
  done
  return 1
}

make_venv() {
  local stamp="$VENV/.lock.sha256" want
  want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/ansible-playbook" ]; then
    return
  fi
  local py; py="$(find_python)" || { log "no working $PYTHON found"; exit 1; }
  log "creating virtualenv $VENV with $py"
  [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade 'pip==25.3'
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$LOCK"
  echo "$want" > "$stamp"
}

link_collection() {
  mkdir -p "$COLLECTIONS/ansible_collections/labops"
  local link="$COLLECTIONS/ansible_collections/labops/itsm"
  if [ "$(readlink "$link" 2>/dev/null)" != "$ROOT" ]; then
    rm -rf "$link"; ln -s "$ROOT" "$link"
  fi
}

# ansible-test sanity --venv downloads get-pip.py from a host we cannot reach; it looks in
# its cache first. This stand-in installs the bundled pip (ensurepip) and then the
# requested packages from PyPI with the system CA bundle.
write_get_pip_standin() {
  local cache="$HOME/.ansible/test/cache"
  mkdir -p "$cache"
  local version
  version="$("$VENV/bin/python" - <<'PY'
import importlib, re
try:
    from ansible_test._internal import python_requirements as pr
    src = open(pr.__file__).read()
    m = re.search(r"pip='([^']+)'", src)
    print(m.group(1) if m else "")
except Exception:
    print("")
PY
)"
  local target
  for target in "$cache"/get_pip_*.py ${version:+"$cache/get_pip_${version//./_}.py"}; do
    [ "$target" = "$cache/get_pip_*.py" ] && continue
    install -m 0644 "$ROOT/scripts/get_pip_standin.py" "$target"
  done
}

if [ "${1:-}" = "--find-python" ]; then find_python; exit; fi
install_system_packages
make_venv
link_collection
write_get_pip_standin
log "ready: venv=$VENV collections=$COLLECTIONS"
