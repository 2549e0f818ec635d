#!/usr/bin/env bash
# ansible-test needs the collection under .../ansible_collections/<ns>/<name>/ and lints
# what it finds there, so the working tree (tracked and new files, minus ignored ones)
# is copied to .build/<venv>/ansible_collections/labops/itsm first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-.venv}"
cd "$ROOT"
PYVER="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
DEST="$ROOT/.build/$(basename "$VENV")/ansible_collections/labops/itsm"
rm -rf "$DEST"; mkdir -p "$DEST"
git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --ignore-missing-args --files-from=- ./ "$DEST/"
cd "$DEST"
# ansible-test reads the file list from git when a repository is present; give it one.
git init -q . && git add -A >/dev/null && git -c user.email=ci@local -c user.name=ci commit -qm sanity >/dev/null
export PATH="$ROOT/$VENV/bin:$PATH"
echo "[sanity] ansible-test sanity --python $PYVER ($("$ROOT/$VENV/bin/ansible" --version | head -1))"
exec "$ROOT/$VENV/bin/ansible-test" sanity --venv --python "$PYVER" --color no
