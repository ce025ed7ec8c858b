#!/usr/bin/env bash
# Installs the Pulumi toolchain this project needs into <repo>/.tools/bin:
#   pulumi                         the CLI                                  (PULUMI_CLI_VERSION)
#   pulumi-language-python         the Python language host                 (PULUMI_CLI_VERSION;
#                                  gin-deploy's own reports PULUMI_LANGHOST_VERSION)
#   pulumi-language-python-exec    its exec shim (only with the official host)
#   pulumi-resource-pulumi-python  the host for Python dynamic providers     (PULUMI_CLI_VERSION)
#   pulumi-analyzer-policy-python  the old-style policy-pack shim (only when the release has it)
#   pulumi-resource-command        the `command` resource provider          (PULUMI_COMMAND_VERSION)
#
# Versions come from tools/versions.env only. Each piece comes from the first source that works
# (see tools/README.md): the official release tarball -> a build from the Go module proxy ->
# for the language host and the command provider, gin-deploy's own stand-ins (Python, run with
# the project's .venv). One line per piece says where it came from.
#
# Official binaries are cached per version key under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/gin-deploy/tools/<key>/bin
# and symlinked into .tools/bin, so later runs (also from a fresh clone) are instant; that a
# piece could not be obtained officially is cached too (see --retry).
#
# Usage: scripts/install-pulumi.sh [--force | --retry | --print-cache-dir]
#   --force  rebuild everything for this version key
#   --retry  try the official sources again for pieces that now use a stand-in
#   --print-cache-dir  print this version key's cache directory and exit (no network)
# Then:  export PATH="$PWD/.tools/bin:$PATH"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSIONS_FILE="$ROOT/tools/versions.env"
STANDIN_COMMAND="$ROOT/tools/command-provider/pulumi-resource-command"
RECIPE=2 # bump when the recipe below changes, to invalidate old caches

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'install-pulumi: warning: %s\n' "$*" >&2; }
die() { printf 'install-pulumi: error: %s\n' "$*" >&2; exit 1; }

FORCE=0
RETRY=0
PRINT=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --retry) RETRY=1 ;;
    --print-cache-dir) PRINT=1 ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p;}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

# ---------------------------------------------------------------- versions
[ -f "$VERSIONS_FILE" ] || die "missing $VERSIONS_FILE"
# The CLI and the Python SDK have pins of their own (see tools/versions.env): this script
# installs the CLI side; the SDK version only names what the stand-in language host runs on.
PULUMI_CLI_VERSION=""
PULUMI_SDK_VERSION=""
PULUMI_COMMAND_VERSION=""
while IFS='=' read -r key value; do
  case "$key" in
    PULUMI_CLI_VERSION) PULUMI_CLI_VERSION="$value" ;;
    PULUMI_SDK_VERSION) PULUMI_SDK_VERSION="$value" ;;
    PULUMI_COMMAND_VERSION) PULUMI_COMMAND_VERSION="$value" ;;
  esac
done < <(grep -E '^[A-Z_]+=' "$VERSIONS_FILE" | tr -d '\r')
for pin in PULUMI_CLI_VERSION PULUMI_SDK_VERSION PULUMI_COMMAND_VERSION; do
  [[ "${!pin}" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "$pin missing or malformed in tools/versions.env"
done
V="$PULUMI_CLI_VERSION"
SV="$PULUMI_SDK_VERSION"
CV="$PULUMI_COMMAND_VERSION"

# ---------------------------------------------------------------- platform
case "$(uname -s)" in
  Linux) OS=linux ;;
  Darwin) OS=darwin ;;
  *) die "unsupported OS $(uname -s)" ;;
esac
case "$(uname -m)" in
  x86_64|amd64) GOARCH_=amd64; REL_ARCH=x64 ;;
  aarch64|arm64) GOARCH_=arm64; REL_ARCH=arm64 ;;
  *) die "unsupported CPU $(uname -m)" ;;
esac

sha() { if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi | cut -c1-10; }
KEY_HASH="$(
  {
    echo "recipe=$RECIPE"
    # Only the pins of what is built here: a new SDK or Kubernetes pin must not rebuild the CLI
    # (and a new key never touches the directory of another, which other checkouts may use).
    grep -E '^PULUMI_(CLI|COMMAND)_VERSION=' "$VERSIONS_FILE" | tr -d '\r'
    cat "$ROOT/tools/pulumi/go.mod" "$ROOT/tools/command/go.mod"
  } | sha
)"
KEY="pulumi-v${V}_command-v${CV}_${OS}-${GOARCH_}_${KEY_HASH}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/gin-deploy/tools/$KEY"
BIN="$CACHE/bin"
BUILD="$CACHE/build"
OUT="$ROOT/.tools/bin"
if [ "$PRINT" = 1 ]; then printf '%s\n' "$CACHE"; exit 0; fi

if [ "$FORCE" = 1 ]; then rm -rf "$CACHE"; fi
if [ "$RETRY" = 1 ]; then rm -f "$CACHE"/unavailable.*; fi
mkdir -p "$BIN" "$BUILD" "$OUT"

# Module paths and ldflags variables (verified against the module sources).
PKG_MOD=github.com/pulumi/pulumi/pkg/v3
SDK_MOD=github.com/pulumi/pulumi/sdk/v3
LANG_MOD=github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
CMD_PROVIDER_MOD=github.com/pulumi/pulumi-command/provider
CMD_SDK_MOD=github.com/pulumi/pulumi-command/sdk
PULUMI_VERSION_VAR=github.com/pulumi/pulumi/sdk/v3/go/common/version.Version
CMD_VERSION_VAR=github.com/pulumi/pulumi-command/provider/pkg/version.Version

CLI_URLS=(
  "https://get.pulumi.com/releases/sdk/pulumi-v${V}-${OS}-${REL_ARCH}.tar.gz"
  "https://github.com/pulumi/pulumi/releases/download/v${V}/pulumi-v${V}-${OS}-${REL_ARCH}.tar.gz"
)
CMD_URLS=(
  "https://get.pulumi.com/releases/plugins/pulumi-resource-command-v${CV}-${OS}-${GOARCH_}.tar.gz"
  "https://github.com/pulumi/pulumi-command/releases/download/v${CV}/pulumi-resource-command-v${CV}-${OS}-${GOARCH_}.tar.gz"
)

# ---------------------------------------------------------------- helpers
seconds() { date +%s; }

# Where a cached piece came from (written when it was obtained).
record() { printf '%s\n' "$2" >"$CACHE/source.$1"; }
recorded() { cat "$CACHE/source.$1" 2>/dev/null || echo "unknown source"; }
# That a piece cannot be obtained officially (cleared by --retry / --force).
mark_unavailable() { printf '%s\n' "$2" >"$CACHE/unavailable.$1"; }
unavailable() { [ -f "$CACHE/unavailable.$1" ]; }

# json_field FILE PATH.TO.FIELD -> value or empty
json_field() {
  python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    d = d.get(k) if isinstance(d, dict) else None
print("" if d is None else d)' "$1" "$2"
}

# mod_download MODULE@VERSION OUTJSON -> 0 if downloaded; the JSON (with Error on failure) lands in OUTJSON
mod_download() {
  (cd "$BUILD" && go mod download -json "$1" >"$2" 2>/dev/null) || true
  [ -s "$2" ] && [ -z "$(json_field "$2" Error)" ] && [ -n "$(json_field "$2" Dir)" ]
}

proxy_warn() { # MODULE@VERSION JSON
  local why; why="$(json_field "$2" Error 2>/dev/null | tail -n 1 | sed 's/^[[:space:]]*//')"
  warn "the Go module proxy ($(go env GOPROXY)) does not serve $1 (${why:-no answer})"
}

# replaces_from GOMOD -> "old[@v]=new@v" lines for the replace directives that do not point into the repository
replaces_from() {
  go mod edit -json "$1" | python3 -c 'import json,sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]
    if not new.get("Version"):
        continue  # a local (../) replace: only meaningful inside the pulumi repository
    old = r["Old"]["Path"] + ("@" + r["Old"]["Version"] if r["Old"].get("Version") else "")
    print(old + "=" + new["Path"] + "@" + new["Version"])'
}

# add_replaces WORKDIR GOMOD... : copy non-local replaces, the first one seen for a module wins
add_replaces() {
  local dir="$1"; shift
  local seen=" " line old gomod
  for gomod in "$@"; do
    while IFS= read -r line; do
      [ -n "$line" ] || continue
      old="${line%%=*}"; old="${old%%@*}"
      case "$seen" in *" $old "*) continue ;; esac
      seen="$seen$old "
      (cd "$dir" && go mod edit -replace="$line") || return 1
    done < <(replaces_from "$gomod")
  done
}

# go_build WORKDIR LOG OUTPUT LDFLAGS PACKAGE -> 0 on success (the log's tail is shown on failure)
go_build() {
  local dir="$1" logf="$2" out="$3" ldflags="$4" pkg="$5"
  if ! (cd "$dir" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg") >>"$logf" 2>&1; then
    tail -n 30 "$logf" >&2
    warn "go build $pkg failed (full log: $logf)"
    return 1
  fi
  mv -f "$out.tmp" "$out"
}

have_go() { command -v go >/dev/null; }

# try_release DESTDIR URL... -> 0 if one tarball was downloaded and unpacked (short timeout per URL)
try_release() {
  local dest="$1" url; shift
  for url in "$@"; do
    curl -fsSL --connect-timeout 5 --max-time 10 -o /dev/null -r 0-0 "$url" 2>/dev/null || continue
    log "downloading $url"
    rm -rf "$dest"; mkdir -p "$dest"
    if curl -fsSL --connect-timeout 10 --max-time 900 "$url" | tar -xz -C "$dest" 2>/dev/null; then
      return 0
    fi
  done
  return 1
}

install_file() { # SRC DEST (mode 755; module-cache files are read-only)
  cp -f "$1" "$2.tmp" && chmod 755 "$2.tmp" && mv -f "$2.tmp" "$2"
}

# The official CLI tarball holds the CLI, the language host and the Python scripts; fetch it once.
REL="$BUILD/release-cli/pulumi"
RELEASE_STATE=""
release_cli() {
  if [ -z "$RELEASE_STATE" ]; then
    if try_release "$BUILD/release-cli" "${CLI_URLS[@]}" && [ -f "$REL/pulumi" ]; then
      RELEASE_STATE=ok
    else
      RELEASE_STATE=unreachable
    fi
  fi
  [ "$RELEASE_STATE" = ok ]
}

# The sdk/v3 module at vX (its python/ dir holds the exec shim and dynamic-provider scripts).
SDK_DIR=""
sdk_module() {
  [ -n "$SDK_DIR" ] && return 0
  have_go || return 1
  if ! mod_download "$SDK_MOD@v$V" "$BUILD/sdk.json"; then
    proxy_warn "$SDK_MOD@v$V" "$BUILD/sdk.json"; return 1
  fi
  SDK_DIR="$(json_field "$BUILD/sdk.json" Dir)"
}

# ---------------------------------------------------------------- Go module proxy builds
# A scratch copy of tools/pulumi requiring pkg/v3 and sdk/v3 at vX plus pkg/v3's non-local replaces.
PULUMI_WORK="$BUILD/pulumi"
PULUMI_LOG="$BUILD/pulumi.log"
PULUMI_LDFLAGS="-s -w -X $PULUMI_VERSION_VAR=v$V"
PULUMI_MODULE_READY=0
pulumi_module() {
  [ "$PULUMI_MODULE_READY" = 1 ] && return 0
  have_go || { warn "Go is not installed, so nothing can be built from the Go module proxy"; return 1; }
  mod_download "$PKG_MOD@v$V" "$BUILD/pkg.json" || { proxy_warn "$PKG_MOD@v$V" "$BUILD/pkg.json"; return 1; }
  sdk_module || return 1
  rm -rf "$PULUMI_WORK" && mkdir -p "$PULUMI_WORK" && : >"$PULUMI_LOG" || return 1
  cp "$ROOT/tools/pulumi/go.mod" "$ROOT/tools/pulumi/tools.go" "$PULUMI_WORK/" || return 1
  (cd "$PULUMI_WORK" && go mod edit -require="$PKG_MOD@v$V" -require="$SDK_MOD@v$V") || return 1
  add_replaces "$PULUMI_WORK" "$(json_field "$BUILD/pkg.json" GoMod)" || return 1
  PULUMI_MODULE_READY=1
}

cli_from_source() {
  pulumi_module || return 1
  log "building pulumi v$V from the Go module proxy ($PKG_MOD@v$V; first time only, several minutes; log: $PULUMI_LOG)"
  local t0; t0=$(seconds)
  go_build "$PULUMI_WORK" "$PULUMI_LOG" "$BIN/pulumi" "$PULUMI_LDFLAGS" "$PKG_MOD/cmd/pulumi" || return 1
  log "built pulumi in $(($(seconds) - t0))s"
}

lang_from_source() {
  pulumi_module || return 1
  # The language host is its own module: its vX tag, else the pseudo-version of the commit that
  # pkg/v3's vX tag points at (same commit, same release).
  local ver="v$V" commit t0
  if ! mod_download "$LANG_MOD@$ver" "$BUILD/lang.json"; then
    proxy_warn "$LANG_MOD@$ver" "$BUILD/lang.json"
    commit="$(json_field "$BUILD/pkg.json" Origin.Hash)"
    [ -n "$commit" ] || return 1
    if ! mod_download "$LANG_MOD@$commit" "$BUILD/lang.json"; then
      proxy_warn "$LANG_MOD@$commit (the commit of $PKG_MOD@v$V)" "$BUILD/lang.json"; return 1
    fi
  fi
  ver="$(json_field "$BUILD/lang.json" Version)"
  (cd "$PULUMI_WORK" && go mod edit -require="$LANG_MOD@$ver") || return 1
  add_replaces "$PULUMI_WORK" "$(json_field "$BUILD/lang.json" GoMod)" || return 1
  log "building pulumi-language-python from the Go module proxy ($LANG_MOD@$ver)"
  t0=$(seconds)
  go_build "$PULUMI_WORK" "$PULUMI_LOG" "$BIN/pulumi-language-python" "$PULUMI_LDFLAGS" "$LANG_MOD" || return 1
  log "built pulumi-language-python in $(($(seconds) - t0))s"
  # The host looks for the exec shim next to its own (symlink-resolved) executable.
  install_file "$SDK_DIR/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
}

command_from_release() {
  try_release "$BUILD/release-command" "${CMD_URLS[@]}" || return 1
  [ -f "$BUILD/release-command/pulumi-resource-command" ] || return 1
  install_file "$BUILD/release-command/pulumi-resource-command" "$BIN/pulumi-resource-command"
}

command_from_plugin_install() {
  [ -x "$BIN/pulumi" ] && command -v timeout >/dev/null || return 1
  local home="$BUILD/plugin-home" found
  rm -rf "$home"
  log "trying: pulumi plugin install resource command $CV"
  PULUMI_HOME="$home" PULUMI_SKIP_UPDATE_CHECK=true timeout 120 \
    "$BIN/pulumi" plugin install resource command "$CV" >"$BUILD/plugin-install.log" 2>&1 || return 1
  found="$(find "$home/plugins" -type f -name pulumi-resource-command 2>/dev/null | head -n 1)"
  [ -n "$found" ] && install_file "$found" "$BIN/pulumi-resource-command"
}

command_from_source() {
  have_go || return 1
  local work="$BUILD/command" logf="$BUILD/command.log" ver="v$CV" commit t0
  rm -rf "$work" && mkdir -p "$work" && : >"$logf" || return 1
  cp "$ROOT/tools/command/go.mod" "$ROOT/tools/command/tools.go" "$work/" || return 1
  # The provider lives in the provider/ directory of the pulumi-command repository. Use a
  # provider/vX tag if there is one; otherwise the commit the sdk/vX tag of the same release points at.
  if ! mod_download "$CMD_PROVIDER_MOD@$ver" "$BUILD/cmdprov.json"; then
    proxy_warn "$CMD_PROVIDER_MOD@$ver" "$BUILD/cmdprov.json"
    mod_download "$CMD_SDK_MOD@$ver" "$BUILD/cmdsdk.json" || { proxy_warn "$CMD_SDK_MOD@$ver" "$BUILD/cmdsdk.json"; return 1; }
    commit="$(json_field "$BUILD/cmdsdk.json" Origin.Hash)"
    [ -n "$commit" ] || return 1
    if ! mod_download "$CMD_PROVIDER_MOD@$commit" "$BUILD/cmdprov.json"; then
      proxy_warn "$CMD_PROVIDER_MOD@$commit (release $ver)" "$BUILD/cmdprov.json"; return 1
    fi
  fi
  ver="$(json_field "$BUILD/cmdprov.json" Version)"
  log "building pulumi-resource-command from the Go module proxy ($CMD_PROVIDER_MOD@$ver; a few minutes)"
  (cd "$work" && go mod edit -require="$CMD_PROVIDER_MOD@$ver") || return 1
  add_replaces "$work" "$(json_field "$BUILD/cmdprov.json" GoMod)" || return 1
  t0=$(seconds)
  go_build "$work" "$logf" "$BIN/pulumi-resource-command" \
    "-s -w -X $CMD_VERSION_VAR=$CV" "$CMD_PROVIDER_MOD/cmd/pulumi-resource-command" || return 1
  log "built pulumi-resource-command in $(($(seconds) - t0))s"
}

# ---------------------------------------------------------------- stand-ins
# A sh wrapper running a Python stand-in with a project virtualenv. It lives in the cache next to
# `pulumi` (so the engine does not warn that the python host is not the bundled one) and is
# started through the .tools/bin symlink, so "$0"/../.. is the project. The engine starts plugins
# with cwd = the project directory, so $PWD/.venv (also in a temporary copy of the project) wins.
STANDIN_TAG="gin-deploy stand-in"
write_wrapper() { # NAME DESCRIPTION PYTHON-ARGS (sh words; may use $root, the project directory)
  local name="$1" what="$2" args="$3"
  cat >"$BIN/$name.tmp" <<EOF
#!/bin/sh
# $STANDIN_TAG: $what
# Written by scripts/install-pulumi.sh because the official binary could not be obtained.
root="\$(dirname "\$0")/../.."
py="\$PWD/.venv/bin/python"
[ -x "\$py" ] || py="\$root/.venv/bin/python"
[ -x "\$py" ] || py=python3
exec "\$py" $args "\$@"
EOF
  chmod 755 "$BIN/$name.tmp"
  mv -f "$BIN/$name.tmp" "$BIN/$name"
}
is_standin() { [ -f "$BIN/$1" ] && grep -q "$STANDIN_TAG" "$BIN/$1"; }
if [ "$RETRY" = 1 ]; then
  for f in pulumi-language-python pulumi-resource-command; do
    if is_standin "$f"; then rm -f "$BIN/$f"; fi
  done
fi

loud() {
  {
    echo '!!! ---------------------------------------------------------------------------'
    local line; for line in "$@"; do echo "!!! $line"; done
    echo '!!! ---------------------------------------------------------------------------'
  } >&2
}

# ---------------------------------------------------------------- obtain
# pulumi: tarball -> Go module proxy (there is no stand-in for the CLI).
if [ -x "$BIN/pulumi" ]; then
  CLI_SRC="$(recorded cli) (cached)"
elif release_cli; then
  install_file "$REL/pulumi" "$BIN/pulumi"
  record cli "official release tarball"; CLI_SRC="official release tarball"
elif cli_from_source; then
  record cli "built from the Go module proxy ($PKG_MOD@v$V)"; CLI_SRC="$(recorded cli)"
else
  die "pulumi v$V: the release tarball is unreachable and the Go module proxy build failed (see above)"
fi

# pulumi-language-python: tarball -> Go module proxy -> tools/langhost/pulumi_language_python.py.
if unavailable lang; then
  LANG_SRC=""
elif [ -x "$BIN/pulumi-language-python" ]; then
  LANG_SRC="$(recorded lang) (cached)"
elif release_cli && [ -f "$REL/pulumi-language-python" ] && [ -f "$REL/pulumi-language-python-exec" ]; then
  install_file "$REL/pulumi-language-python" "$BIN/pulumi-language-python"
  install_file "$REL/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
  record lang "official release tarball"; LANG_SRC="official release tarball"
elif lang_from_source; then
  record lang "built from the Go module proxy ($LANG_MOD)"; LANG_SRC="$(recorded lang)"
else
  mark_unavailable lang "release tarball unreachable, $LANG_MOD not on the Go module proxy"
  LANG_SRC=""
fi

# pulumi-resource-pulumi-python: tarball -> the script in the sdk/v3 module.
DYN=pulumi-resource-pulumi-python
if [ -x "$BIN/$DYN" ]; then
  DYN_SRC="$(recorded dyn) (cached)"
elif release_cli && [ -f "$REL/$DYN" ]; then
  install_file "$REL/$DYN" "$BIN/$DYN"; record dyn "official release tarball"; DYN_SRC="$(recorded dyn)"
elif sdk_module && [ -f "$SDK_DIR/python/dist/$DYN" ]; then
  install_file "$SDK_DIR/python/dist/$DYN" "$BIN/$DYN"
  record dyn "script from the Go module proxy ($SDK_MOD@v$V python/dist)"; DYN_SRC="$(recorded dyn)"
else
  DYN_SRC=""
fi

# pulumi-analyzer-policy-python: tarball -> the sdk/v3 module (not shipped there as of v3.276.0).
# Without it Python policy packs still run: the engine starts them through the language host.
ANA=pulumi-analyzer-policy-python
if [ -x "$BIN/$ANA" ]; then
  ANA_SRC="$(recorded ana) (cached)"
elif unavailable ana; then
  ANA_SRC=""
elif release_cli && [ -f "$REL/$ANA" ]; then
  install_file "$REL/$ANA" "$BIN/$ANA"; record ana "official release tarball"; ANA_SRC="$(recorded ana)"
elif sdk_module && [ -f "$SDK_DIR/python/dist/$ANA" ]; then
  install_file "$SDK_DIR/python/dist/$ANA" "$BIN/$ANA"
  record ana "script from the Go module proxy ($SDK_MOD@v$V python/dist)"; ANA_SRC="$(recorded ana)"
else
  mark_unavailable ana "not in the release tarball (unreachable) nor in $SDK_MOD@v$V"
  ANA_SRC=""
fi

# pulumi-resource-command: tarball -> pulumi plugin install -> Go module proxy -> stand-in.
if unavailable command; then
  CMD_SRC=""
elif [ -x "$BIN/pulumi-resource-command" ]; then
  CMD_SRC="$(recorded command) (cached)"
elif command_from_release; then
  record command "official release tarball"; CMD_SRC="$(recorded command)"
elif command_from_plugin_install; then
  record command "pulumi plugin install resource command $CV"; CMD_SRC="$(recorded command)"
elif command_from_source; then
  record command "built from the Go module proxy ($CMD_PROVIDER_MOD)"; CMD_SRC="$(recorded command)"
else
  mark_unavailable command "release tarballs unreachable, $CMD_PROVIDER_MOD not on the Go module proxy"
  CMD_SRC=""
fi

# ---------------------------------------------------------------- stand-ins, report, link
[ -x "$ROOT/.venv/bin/python" ] || warn "no .venv yet: the Python stand-ins need it (run scripts/setup.sh)"

log "pulumi v$V: $CLI_SRC"

if [ -n "$LANG_SRC" ]; then
  log "pulumi-language-python v$V: $LANG_SRC"
else
  rm -f "$BIN/pulumi-language-python-exec"
  write_wrapper pulumi-language-python \
    "gin-deploy's own Python language host (tools/langhost/pulumi_language_python.py, Pulumi SDK v$SV)" \
    "\"\$root/tools/langhost/pulumi_language_python.py\""
  log "pulumi-language-python: gin-deploy's own language host, tools/langhost/pulumi_language_python.py (official host unavailable: $(cat "$CACHE/unavailable.lang"))"
fi

if [ -n "$DYN_SRC" ]; then
  log "$DYN v$V: $DYN_SRC"
else
  warn "$DYN not installed (release tarball unreachable, sdk/v3 module unavailable): Python dynamic providers will not work"
fi

if [ -n "$ANA_SRC" ]; then
  log "$ANA v$V: $ANA_SRC"
else
  log "$ANA: not shipped at v$V; Python policy packs run through pulumi-language-python (RunPlugin)"
fi

if [ -n "$CMD_SRC" ]; then
  log "pulumi-resource-command v$CV: $CMD_SRC"
elif [ -f "$STANDIN_COMMAND" ]; then
  write_wrapper pulumi-resource-command \
    "stand-in for the command provider v$CV (tools/command-provider/pulumi-resource-command)" \
    "\"\$root/tools/command-provider/pulumi-resource-command\""
  log "pulumi-resource-command: gin-deploy's STAND-IN, tools/command-provider/pulumi-resource-command"
  loud "pulumi-resource-command is gin-deploy's STAND-IN (tools/command-provider), not the official" \
       "provider v$CV: $(cat "$CACHE/unavailable.command")." \
       "Rerun scripts/install-pulumi.sh --retry once the official sources are reachable."
else
  rm -f "$BIN/pulumi-resource-command"
  warn "pulumi-resource-command: NOT INSTALLED - the official provider is unavailable ($(cat "$CACHE/unavailable.command"))"
  warn "and the stand-in tools/command-provider/pulumi-resource-command does not exist yet; rerun this script once it does"
fi

# Link into .tools/bin (only the names this script manages: setup.sh keeps go/gofmt there too).
for f in pulumi pulumi-language-python pulumi-language-python-exec "$DYN" "$ANA" pulumi-resource-command; do
  rm -f "$OUT/$f"
  if [ -x "$BIN/$f" ]; then ln -s "$BIN/$f" "$OUT/$f"; fi
done

got="$("$OUT/pulumi" version 2>/dev/null || true)"
[ "$got" = "v$V" ] || die "$OUT/pulumi version printed '$got', expected v$V"
log "ready: .tools/bin (export PATH=\"$OUT:\$PATH\")"
