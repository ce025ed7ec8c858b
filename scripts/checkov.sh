#!/usr/bin/env bash
# checkov, pinned, in its own virtualenv: its dependencies conflict with the
# Pulumi SDK's, so it cannot live in .venv. The virtualenv is created once under
# the user's cache (reused by every later run and every checkout), then checkov
# runs with the given arguments, e.g.
#   scripts/checkov.sh --skip-download --framework kubernetes -d rendered/ -o json
# `scripts/checkov.sh --install-only` just makes sure it is installed.
set -euo pipefail

CHECKOV_VERSION=3.3.30
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/gin-deploy"
VENV="$CACHE/checkov-$CHECKOV_VERSION"
PYTHON="${PYTHON:-python3}"

install() {
  [ -f "$VENV/.installed" ] && return 0
  echo "==> installing checkov $CHECKOV_VERSION into $VENV (once)" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  touch "$VENV/.installed"
}

mkdir -p "$CACHE"
# One installer at a time (parallel test workers, two checkouts).
exec 9>"$CACHE/checkov-$CHECKOV_VERSION.lock"
if command -v flock >/dev/null; then flock 9; fi
install
flock -u 9 2>/dev/null || true
exec 9>&-

if [ "${1:-}" = "--install-only" ]; then exit 0; fi
# No telemetry or platform calls: scan locally only.
export BC_SKIP_MAPPING=TRUE CHECKOV_NO_OUTPUT_COLOR=1 ANSI_COLORS_DISABLED=1
exec "$VENV/bin/checkov" "$@"
