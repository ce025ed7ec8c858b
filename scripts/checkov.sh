#!/usr/bin/env bash
# checkov, pinned, in its own virtualenv (scripts/tool-venv.sh), e.g.
#   scripts/checkov.sh --skip-download --framework kubernetes -d rendered/ -o json
# `scripts/checkov.sh --install-only` just makes sure it is installed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION=3.3.30
if [ "${1:-}" = "--install-only" ]; then exec "$here/tool-venv.sh" checkov "$VERSION" --install-only; fi
# No telemetry or platform calls: scan locally only.
export BC_SKIP_MAPPING=TRUE CHECKOV_NO_OUTPUT_COLOR=1 ANSI_COLORS_DISABLED=1
exec "$here/tool-venv.sh" checkov "$VERSION" -- checkov "$@"
