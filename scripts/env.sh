# shellcheck shell=bash
# Source this to drive the project's own Pulumi toolchain by hand:
#   source scripts/env.sh && pulumi preview --stack dev
# It puts .tools/bin first on PATH, uses a local file backend in .pulumi-state/
# unless PULUMI_BACKEND_URL is already set, and a passphrase for the local
# secrets provider kept in .pulumi-passphrase (generated once, mode 0600, never
# committed) unless PULUMI_CONFIG_PASSPHRASE(_FILE) is already set.
_gd_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export PATH="$_gd_root/.tools/bin:$PATH"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_HOME="${PULUMI_HOME:-$_gd_root/.tools/pulumi-home}"
if [ -z "${PULUMI_BACKEND_URL:-}" ]; then
  mkdir -p "$_gd_root/.pulumi-state"
  export PULUMI_BACKEND_URL="file://$_gd_root/.pulumi-state"
fi
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  if [ ! -s "$_gd_root/.pulumi-passphrase" ]; then
    (umask 077 && openssl rand -base64 32 > "$_gd_root/.pulumi-passphrase")
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE="$_gd_root/.pulumi-passphrase"
fi
unset _gd_root
