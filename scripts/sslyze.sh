#!/usr/bin/env bash
# sslyze, pinned, in its own virtualenv (scripts/tool-venv.sh): it pins its own
# cryptography and pydantic, which must not leak into .venv. E.g.
#   scripts/sslyze.sh --mozilla_config=intermediate --json_out=out.json 127.0.0.1:8443
# `scripts/sslyze.sh --install-only` just makes sure it is installed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION=6.3.1
if [ "${1:-}" = "--install-only" ]; then exec "$here/tool-venv.sh" sslyze "$VERSION" --install-only; fi
exec "$here/tool-venv.sh" sslyze "$VERSION" -- python -m sslyze "$@"
