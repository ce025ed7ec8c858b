#!/usr/bin/env bash
# Installs everything gin-deploy needs on a fresh Debian/Ubuntu machine, idempotently:
#   - Debian packages: nginx, supervisor, openssh-server, certbot, pebble, load and TLS
#     test tools (apt-get; needs root or sudo);
#   - a Go toolchain >= GO_MIN (the machine's, or one from the Go module proxy);
#   - the Python virtualenv .venv with the project and its test extras;
#   - the Go modules of app/;
#   - the Pulumi CLI, language host and command provider (scripts/install-pulumi.sh);
#   - the tests' Kubernetes control plane, kwok and the Pulumi Kubernetes provider
#     (scripts/install-kubernetes.sh: built from the Go module proxy, about an hour the first time).
# A second run does no work beyond checks.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GO_MIN=1.26.8               # app/go.mod and the Pulumi CLI build (pkg/v3 3.276 needs 1.26.6) need at least this
GO_FALLBACK=1.26.8          # fetched from the Go module proxy when go is missing or too old
ACTIONLINT_VERSION=v1.7.12  # lints .github/workflows in the test run
APT_PACKAGES=(
  nginx-light supervisor openssh-server openssh-client certbot pebble wrk hey testssl.sh
  systemd curl openssl ca-certificates git python3 python3-venv iproute2 unzip shellcheck
)
# The command each package provides, to skip apt when all are present.
APT_PROBES=(nginx supervisord sshd certbot pebble wrk hey testssl systemd-analyze curl
            openssl git python3 unzip shellcheck)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) to run: $*"; fi
}

apt_packages() {
  local missing=()
  for probe in "${APT_PROBES[@]}"; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$probe" >/dev/null || missing+=("$probe")
  done
  python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get; install them by hand"
  log "installing Debian packages (missing: ${missing[*]})"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${APT_PACKAGES[@]}" >/dev/null
}

go_ok() {
  command -v go >/dev/null || return 1
  local v; v="$(go env GOVERSION 2>/dev/null | sed 's/^go//')"
  [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$GO_MIN" "$v" | sort -V | head -1)" = "$GO_MIN" ]
}

go_toolchain() {
  go_ok && return 0
  local arch; case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;;
    *) die "unsupported CPU $(uname -m)" ;; esac
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/gin-deploy/go-$GO_FALLBACK"
  if [ ! -x "$dir/bin/go" ]; then
    log "fetching Go $GO_FALLBACK from the Go module proxy (golang.org/toolchain)"
    local proxy="${GOPROXY:-https://proxy.golang.org}"; proxy="${proxy%%,*}"
    local zip; zip="$(mktemp)"
    curl -fsSL --retry 3 -o "$zip" \
      "$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_FALLBACK.linux-$arch.zip"
    local tmp; tmp="$(mktemp -d)"
    unzip -q "$zip" -d "$tmp"
    mkdir -p "$(dirname "$dir")" && rm -rf "$dir"
    mv "$tmp/golang.org/toolchain@v0.0.1-go$GO_FALLBACK.linux-$arch" "$dir"
    rm -rf "$zip" "$tmp"
  fi
  mkdir -p "$ROOT/.tools/bin"
  ln -sf "$dir/bin/go" "$dir/bin/gofmt" "$ROOT/.tools/bin/"
}

python_env() {
  local stamp=.venv/.installed
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return 0; fi
  log "creating the Python virtualenv .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
}

go_tools() {
  if [ ! -x "$ROOT/.tools/bin/actionlint" ] || \
     [ "$("$ROOT/.tools/bin/actionlint" -version | head -1)" != "$ACTIONLINT_VERSION" ]; then
    log "building actionlint $ACTIONLINT_VERSION from the Go module proxy"
    mkdir -p "$ROOT/.tools/bin"
    GOBIN="$ROOT/.tools/bin" CGO_ENABLED=0 go install \
      "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  fi
}

main() {
  apt_packages
  export PATH="$ROOT/.tools/bin:$PATH"
  go_toolchain
  python_env
  log "downloading the Go modules of app/"
  (cd app && go mod download)
  go_tools
  # Scanners that conflict with the Pulumi SDK's dependencies get venvs of their own.
  "$ROOT/scripts/checkov.sh" --install-only
  "$ROOT/scripts/sslyze.sh" --install-only
  "$ROOT/scripts/install-pulumi.sh"
  "$ROOT/scripts/install-kubernetes.sh"
  log "set-up complete"
}

main "$@"
