#!/usr/bin/env bash
# pytest exits 5 when a selection holds no tests; for a layer that is still empty
# that is not a failure, so it is reported and turned into success.
set -uo pipefail
py="$1"; shift
"$py" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "[pytest] no tests collected in: $*" >&2
  exit 0
fi
exit "$rc"
