#!/usr/bin/env bash
# sslyze, pinned, in its own virtualenv: it pins its own cryptography and
# pydantic versions, which must not leak into .venv next to the Pulumi SDK. The
# virtualenv is created once under the user's cache (reused by every later run
# and every checkout), then sslyze runs with the given arguments, e.g.
#   scripts/sslyze.sh --mozilla_config=intermediate --json_out=out.json 127.0.0.1:8443
# `scripts/sslyze.sh --install-only` just makes sure it is installed.
set -euo pipefail

SSLYZE_VERSION=6.3.1
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/gin-deploy"
VENV="$CACHE/sslyze-$SSLYZE_VERSION"
PYTHON="${PYTHON:-python3}"

install() {
  [ -f "$VENV/.installed" ] && return 0
  echo "==> installing sslyze $SSLYZE_VERSION into $VENV (once)" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "sslyze==$SSLYZE_VERSION"
  touch "$VENV/.installed"
}

mkdir -p "$CACHE"
# One installer at a time (parallel test workers, two checkouts).
exec 9>"$CACHE/sslyze-$SSLYZE_VERSION.lock"
if command -v flock >/dev/null; then flock 9; fi
install
flock -u 9 2>/dev/null || true
exec 9>&-

if [ "${1:-}" = "--install-only" ]; then exit 0; fi
exec "$VENV/bin/python" -m sslyze "$@"
