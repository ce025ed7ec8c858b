#!/usr/bin/env bash
# A pinned Python tool in a virtualenv of its own, for tools whose dependencies
# conflict with the Pulumi SDK's and so cannot live in .venv. The virtualenv is
# created once under the user's cache (reused by every later run and checkout).
#   scripts/tool-venv.sh PACKAGE VERSION --install-only
#   scripts/tool-venv.sh PACKAGE VERSION -- PROGRAM [ARGS...]   (PROGRAM from the venv)
set -euo pipefail

[ $# -ge 3 ] || { echo "usage: $0 PACKAGE VERSION (--install-only | -- PROGRAM [ARGS...])" >&2; exit 2; }
PACKAGE=$1 VERSION=$2
shift 2
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/gin-deploy"
VENV="$CACHE/$PACKAGE-$VERSION"
PYTHON="${PYTHON:-python3}"

install() {
  [ -f "$VENV/.installed" ] && return 0
  echo "==> installing $PACKAGE $VERSION into $VENV (once)" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$PACKAGE==$VERSION"
  touch "$VENV/.installed"
}

mkdir -p "$CACHE"
# One installer at a time (parallel test workers, two checkouts).
exec 9>"$CACHE/$PACKAGE-$VERSION.lock"
if command -v flock >/dev/null; then flock 9; fi
install
flock -u 9 2>/dev/null || true
exec 9>&-

case "$1" in
  --install-only) exit 0 ;;
  --) shift; PATH="$VENV/bin:$PATH" exec "$@" ;;
  *) echo "usage: $0 PACKAGE VERSION (--install-only | -- PROGRAM [ARGS...])" >&2; exit 2 ;;
esac
