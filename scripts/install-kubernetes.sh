#!/usr/bin/env bash
# Installs the Kubernetes pieces gin-deploy's tests run (a real control plane whose nodes and
# pods kwok fakes) and the Pulumi Kubernetes provider:
#   .tools/kubernetes/bin/kube-apiserver, kube-controller-manager,
#                         kube-scheduler, kubectl          (KUBERNETES_VERSION)
#   .tools/kubernetes/bin/etcd                             (ETCD_VERSION)
#   .tools/kubernetes/bin/kwok, .tools/kubernetes/kwok-stages/ (KWOK_VERSION)
#   .tools/bin/pulumi-resource-kubernetes                  (PULUMI_KUBERNETES_PROVIDER_*)
#
# Versions come from tools/versions.env only. No package registry reachable here ships the
# official binaries (see tools/README.md), so each piece is built from the Go module proxy at
# the lowest CPU priority: 76 minutes (35 of CPU time) on 2 busy cores the first time.
# Outputs are cached per piece under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/gin-deploy/tools/<piece>-v<version>_<os>-<arch>_<hash>/bin
# (the hash covers the pins, this recipe and the template modules in tools/) and symlinked
# into .tools, so a later run, also from a fresh clone, only checks versions and relinks.
#
# Usage: scripts/install-kubernetes.sh [--force | --print-cache-dirs]
#   --force             rebuild every piece
#   --print-cache-dirs  print each piece's cache directory and exit (no network, no build)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSIONS_FILE="$ROOT/tools/versions.env"
RECIPE=1 # bump when the recipe below changes, to invalidate old caches

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'install-kubernetes: error: %s\n' "$*" >&2; exit 1; }

FORCE=0
PRINT=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --print-cache-dirs) PRINT=1 ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

# ---------------------------------------------------------------- versions
[ -f "$VERSIONS_FILE" ] || die "missing $VERSIONS_FILE"
pin() { # KEY REGEX -> the value of KEY in tools/versions.env, checked against REGEX
  local value
  value="$(grep -E "^$1=" "$VERSIONS_FILE" | tail -n 1 | cut -d= -f2- | tr -d '\r')"
  [[ "$value" =~ $2 ]] || die "$1 missing or malformed in tools/versions.env (got '${value}')"
  printf '%s\n' "$value"
}
SEMVER='^[0-9]+\.[0-9]+\.[0-9]+$'
KV="$(pin KUBERNETES_VERSION "$SEMVER")"
EV="$(pin ETCD_VERSION "$SEMVER")"
WV="$(pin KWOK_VERSION "$SEMVER")"
PV="$(pin PULUMI_KUBERNETES_PROVIDER_VERSION "$SEMVER")"
PMV="$(pin PULUMI_KUBERNETES_PROVIDER_MODULE '^v[0-9]+\.[0-9]+\.[0-9]+-[0-9.]*[0-9]{14}-[0-9a-f]{12}$')"
KMINOR="$(cut -d. -f2 <<<"$KV")"
KPATCH="$(cut -d. -f3 <<<"$KV")"

# ---------------------------------------------------------------- platform, cache
case "$(uname -s)" in
  Linux) OS=linux ;;
  Darwin) OS=darwin ;;
  *) die "unsupported OS $(uname -s)" ;;
esac
case "$(uname -m)" in
  x86_64|amd64) ARCH=amd64 ;;
  aarch64|arm64) ARCH=arm64 ;;
  *) die "unsupported CPU $(uname -m)" ;;
esac
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/gin-deploy/tools"
sha() { if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi | cut -c1-10; }

# cache_dir PIECE VERSION TEMPLATE-DIR PIN-KEY... -> the piece's cache directory
cache_dir() {
  local piece="$1" version="$2" template="$3"; shift 3
  local hash key
  hash="$(
    {
      echo "recipe=$RECIPE"
      for key in "$@"; do grep -E "^$key=" "$VERSIONS_FILE" | tr -d '\r'; done
      cat "$ROOT/tools/$template/"*
    } | sha
  )"
  printf '%s/%s-v%s_%s-%s_%s\n' "$CACHE_ROOT" "$piece" "$version" "$OS" "$ARCH" "$hash"
}
KUBE_CACHE="$(cache_dir kubernetes "$KV" kubernetes KUBERNETES_VERSION)"
ETCD_CACHE="$(cache_dir etcd "$EV" etcd ETCD_VERSION)"
KWOK_CACHE="$(cache_dir kwok "$WV" kwok KWOK_VERSION)"
PROVIDER_CACHE="$(cache_dir pulumi-kubernetes "$PV" kubernetes-provider \
  PULUMI_KUBERNETES_PROVIDER_VERSION PULUMI_KUBERNETES_PROVIDER_MODULE)"

if [ "$PRINT" = 1 ]; then
  printf 'kubernetes %s\netcd %s\nkwok %s\npulumi-kubernetes %s\n' \
    "$KUBE_CACHE" "$ETCD_CACHE" "$KWOK_CACHE" "$PROVIDER_CACHE"
  exit 0
fi

OUT="$ROOT/.tools/kubernetes"
PLUGINS="$ROOT/.tools/bin"
mkdir -p "$OUT/bin" "$PLUGINS"
command -v go >/dev/null || die "Go is not installed (scripts/setup.sh installs it first)"

# Module paths and the variables their builds set (verified against the module sources).
KUBE_MOD=k8s.io/kubernetes
ETCD_MOD=go.etcd.io/etcd/server/v3
KWOK_MOD=sigs.k8s.io/kwok
PROVIDER_MOD=github.com/pulumi/pulumi-kubernetes/provider/v4
PROVIDER_SDK_MOD=github.com/pulumi/pulumi-kubernetes/sdk/v4
PROVIDER_VERSION_VAR=$PROVIDER_MOD/pkg/version.Version
KUBE_VERSION_PKGS=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
# The kwok stages the tests use: nodes turn Ready and keep a lease; pods run, complete, delete.
KWOK_STAGES=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml)

# ---------------------------------------------------------------- helpers
seconds() { date +%s; }

# json_field FILE FIELD -> the value of a top-level field, or empty
json_field() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]) or "")' "$1" "$2"
}

# mod_download SCRATCH MODULE@VERSION OUTJSON: download a module, die naming it if the proxy cannot
mod_download() {
  (cd "$1" && go mod download -json "$2" >"$3" 2>/dev/null) || true
  if [ ! -s "$3" ] || [ -n "$(json_field "$3" Error)" ] || [ -z "$(json_field "$3" Dir)" ]; then
    die "the Go module proxy ($(go env GOPROXY)) does not serve $2: $(json_field "$3" Error 2>/dev/null | tail -n 1)"
  fi
}

# scratch PIECE-CACHE TEMPLATE-DIR -> a fresh copy of the template module, its path printed
scratch() {
  local work="$1/build/module"
  rm -rf "$work" && mkdir -p "$work"
  cp "$ROOT/tools/$2/"* "$work/"
  printf '%s\n' "$work"
}

# go_build WORKDIR LOG LDFLAGS OUTPUT PACKAGE...: a low-priority static build, log tail on failure
# (OUTPUT is a file for one package, a directory ending in / for several)
go_build() {
  local dir="$1" logf="$2" ldflags="$3" output="$4"; shift 4
  mkdir -p "$(dirname "$output")"
  if ! (cd "$dir" && CGO_ENABLED=0 nice -n 19 go build -mod=mod -trimpath -buildvcs=false \
          -ldflags "$ldflags" -o "$output" "$@") >>"$logf" 2>&1; then
    tail -n 30 "$logf" >&2
    die "go build $* failed (full log: $logf)"
  fi
}

tidy() { # WORKDIR LOG
  (cd "$1" && nice -n 19 go mod tidy) >>"$2" 2>&1 || { tail -n 30 "$2" >&2; die "go mod tidy failed in $1 (log: $2)"; }
}

install_bin() { # SRC DEST: atomically, so a half-written binary never looks cached
  cp -f "$1" "$2.tmp" && chmod 755 "$2.tmp" && mv -f "$2.tmp" "$2"
}

record() { printf '%s\n' "$2" >"$1/source"; }
recorded() { cat "$1/source" 2>/dev/null || echo "unknown source"; }

# ---------------------------------------------------------------- checks (also on cached pieces)
kube_ok() {
  local bin="$1/bin" cmd
  for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
    [ -x "$bin/$cmd" ] && [ "$("$bin/$cmd" --version 2>/dev/null)" = "Kubernetes v$KV" ] || return 1
  done
  [ -x "$bin/kubectl" ] && "$bin/kubectl" version --client -o json 2>/dev/null \
    | grep -q "\"gitVersion\": \"v$KV\""
}
etcd_ok() { [ -x "$1/bin/etcd" ] && "$1/bin/etcd" --version 2>/dev/null | grep -qx "etcd Version: $EV"; }
kwok_ok() {
  local s
  [ -x "$1/bin/kwok" ] && "$1/bin/kwok" --version 2>/dev/null | grep -q "^kwok version v$WV " || return 1
  for s in "${KWOK_STAGES[@]}"; do [ -f "$1/kwok-stages/$(basename "$s")" ] || return 1; done
}
provider_ok() { # the module it was built from (Go build info) and the version in its schema
  local f="$1/bin/pulumi-resource-kubernetes"
  [ -x "$f" ] && go version -m "$f" 2>/dev/null | grep -qE "dep[[:space:]]+${PROVIDER_MOD}[[:space:]]+${PMV}" &&
    grep -aqF "\"displayName\":\"Kubernetes\",\"version\":\"$PV\"" "$f"
}

# ---------------------------------------------------------------- builds
build_kubernetes() {
  local dir="$1" work logf t0 ldflags="-s -w" pkg cmd replaces=() pkgs=()
  work="$(scratch "$dir" kubernetes)"; logf="$dir/build/build.log"; : >"$logf"
  mod_download "$work" "$KUBE_MOD@v$KV" "$dir/build/module.json"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
  # directories of its own repository; their published releases are v0.MINOR.PATCH.
  while IFS= read -r mod; do
    replaces+=("-replace=$mod=$mod@v0.$KMINOR.$KPATCH")
  done < <(go mod edit -json "$(json_field "$dir/build/module.json" GoMod)" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Require") or []:
    if r["Path"].startswith("k8s.io/") and r["Version"] == "v0.0.0":
        print(r["Path"])')
  [ ${#replaces[@]} -gt 0 ] || die "found no staging modules in $KUBE_MOD@v$KV's go.mod"
  (cd "$work" && go mod edit -require="$KUBE_MOD@v$KV" "${replaces[@]}")
  tidy "$work" "$logf"
  # What `kubectl version` and the API server's /version report (else v0.0.0-master).
  local built; built="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Time"])' \
    "$(json_field "$dir/build/module.json" Info)")"
  for pkg in "${KUBE_VERSION_PKGS[@]}"; do
    ldflags+=" -X $pkg.gitVersion=v$KV -X $pkg.gitMajor=1 -X $pkg.gitMinor=$KMINOR"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit= -X $pkg.buildDate=$built"
  done
  for cmd in "${KUBE_CMDS[@]}"; do pkgs+=("$KUBE_MOD/cmd/$cmd"); done
  log "building ${KUBE_CMDS[*]} v$KV from the Go module proxy ($KUBE_MOD@v$KV; first time ~20-45 min; log: $logf)"
  t0=$(seconds)
  go_build "$work" "$logf" "$ldflags" "$dir/build/out/" "${pkgs[@]}"
  for cmd in "${KUBE_CMDS[@]}"; do install_bin "$dir/build/out/$cmd" "$dir/bin/$cmd"; done
  log "built ${KUBE_CMDS[*]} in $(($(seconds) - t0))s"
  record "$dir" "built from the Go module proxy ($KUBE_MOD@v$KV, staging modules v0.$KMINOR.$KPATCH)"
}

build_etcd() {
  local dir="$1" work logf t0
  work="$(scratch "$dir" etcd)"; logf="$dir/build/build.log"; : >"$logf"
  mod_download "$work" "$ETCD_MOD@v$EV" "$dir/build/module.json"
  (cd "$work" && go mod edit -require="$ETCD_MOD@v$EV")
  tidy "$work" "$logf"
  log "building etcd v$EV from the Go module proxy ($ETCD_MOD@v$EV; first time ~5 min; log: $logf)"
  t0=$(seconds)
  go_build "$work" "$logf" "-s -w" "$dir/build/out/etcd" "$ETCD_MOD"
  install_bin "$dir/build/out/etcd" "$dir/bin/etcd"
  log "built etcd in $(($(seconds) - t0))s"
  record "$dir" "built from the Go module proxy ($ETCD_MOD@v$EV)"
}

build_kwok() {
  local dir="$1" work logf t0 src s
  work="$(scratch "$dir" kwok)"; logf="$dir/build/build.log"; : >"$logf"
  mod_download "$work" "$KWOK_MOD@v$WV" "$dir/build/module.json"
  (cd "$work" && go mod edit -require="$KWOK_MOD@v$WV")
  tidy "$work" "$logf"
  log "building kwok v$WV from the Go module proxy ($KWOK_MOD@v$WV; first time ~5 min; log: $logf)"
  t0=$(seconds)
  go_build "$work" "$logf" "-s -w" "$dir/build/out/kwok" "$KWOK_MOD/cmd/kwok"
  install_bin "$dir/build/out/kwok" "$dir/bin/kwok"
  # kwok has no built-in stages: the harness passes these, shipped in the same module.
  src="$(json_field "$dir/build/module.json" Dir)/kustomize/stage"
  rm -rf "$dir/kwok-stages" && mkdir -p "$dir/kwok-stages"
  for s in "${KWOK_STAGES[@]}"; do
    [ -f "$src/$s" ] || die "$KWOK_MOD@v$WV has no kustomize/stage/$s"
    cp "$src/$s" "$dir/kwok-stages/" && chmod 644 "$dir/kwok-stages/$(basename "$s")"
  done
  log "built kwok in $(($(seconds) - t0))s"
  record "$dir" "built from the Go module proxy ($KWOK_MOD@v$WV)"
}

build_provider() {
  local dir="$1" work logf t0 main
  work="$(scratch "$dir" kubernetes-provider)"; logf="$dir/build/build.log"; : >"$logf"
  mod_download "$work" "$PROVIDER_MOD@$PMV" "$dir/build/module.json"
  # The provider's main package embeds two files that its generate.go writes at release time;
  # build a copy of that package inside the scratch module, with the files generated.
  main="$work/cmd/pulumi-resource-kubernetes"
  mkdir -p "$main"
  cp "$(json_field "$dir/build/module.json" Dir)/cmd/pulumi-resource-kubernetes/"* "$main/"
  chmod -R u+w "$main"
  # Its go.mod replaces sdk/v4 with a directory of its repository: use the published release.
  (cd "$work" && go mod edit -require="$PROVIDER_MOD@$PMV" \
     -replace="$PROVIDER_SDK_MOD=$PROVIDER_SDK_MOD@v$PV")
  tidy "$work" "$logf"
  log "building pulumi-resource-kubernetes v$PV from the Go module proxy ($PROVIDER_MOD@$PMV; first time ~10-25 min; log: $logf)"
  t0=$(seconds)
  (cd "$main" && VERSION="$PV" CGO_ENABLED=0 nice -n 19 go run -mod=mod generate.go) >>"$logf" 2>&1 \
    || { tail -n 30 "$logf" >&2; die "generating the provider's schema failed (log: $logf)"; }
  go_build "$work" "$logf" "-s -w -X $PROVIDER_VERSION_VAR=$PV" "$dir/build/out/pulumi-resource-kubernetes" \
    ./cmd/pulumi-resource-kubernetes
  install_bin "$dir/build/out/pulumi-resource-kubernetes" "$dir/bin/pulumi-resource-kubernetes"
  log "built pulumi-resource-kubernetes in $(($(seconds) - t0))s"
  record "$dir" "built from the Go module proxy ($PROVIDER_MOD@$PMV, $PROVIDER_SDK_MOD v$PV)"
}

# obtain NAME DESCRIPTION CACHE CHECK BUILD
obtain() {
  local name="$1" what="$2" dir="$3" check="$4" build="$5"
  if [ "$FORCE" = 1 ]; then rm -rf "$dir"; fi
  if "$check" "$dir"; then
    log "$what: $(recorded "$dir") (cached)"
    return 0
  fi
  rm -rf "${dir:?}/bin" && mkdir -p "$dir/bin" "$dir/build"
  "$build" "$dir"
  rm -rf "$dir/build/out"   # the binaries were copied to bin/
  "$check" "$dir" || die "$name: the build in $dir does not report the pinned version"
  log "$what: $(recorded "$dir")"
}

# ---------------------------------------------------------------- obtain, link
obtain kubernetes "${KUBE_CMDS[*]} v$KV" "$KUBE_CACHE" kube_ok build_kubernetes
obtain etcd "etcd v$EV" "$ETCD_CACHE" etcd_ok build_etcd
obtain kwok "kwok v$WV" "$KWOK_CACHE" kwok_ok build_kwok
obtain pulumi-kubernetes "pulumi-resource-kubernetes v$PV" "$PROVIDER_CACHE" provider_ok build_provider

link() { rm -rf "$2" && ln -s "$1" "$2"; }
for cmd in "${KUBE_CMDS[@]}"; do link "$KUBE_CACHE/bin/$cmd" "$OUT/bin/$cmd"; done
link "$ETCD_CACHE/bin/etcd" "$OUT/bin/etcd"
link "$KWOK_CACHE/bin/kwok" "$OUT/bin/kwok"
link "$KWOK_CACHE/kwok-stages" "$OUT/kwok-stages"
# On PATH with the other plugins: the engine prefers a provider found on PATH to any version
# in its plugin cache (see tools/README.md).
link "$PROVIDER_CACHE/bin/pulumi-resource-kubernetes" "$PLUGINS/pulumi-resource-kubernetes"
log "ready: .tools/kubernetes/bin (control plane, kwok, kubectl), .tools/bin/pulumi-resource-kubernetes"
