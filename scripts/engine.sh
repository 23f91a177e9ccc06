#!/usr/bin/env bash
# Build (or find already built) the Pulumi engine from Go modules, since no
# machine here can download the Pulumi CLI:
#   pulumi                         github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
#   pulumi-language-nodejs         github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3
#   pulumi-resource-command        github.com/pulumi/pulumi-command/provider/cmd/pulumi-resource-command
#   pulumi-resource-pulumi-nodejs  (dynamic-provider shim script, copied from sdk/v3's nodejs/dist)
# Versions are pinned in scripts/engine/versions.env (the only place).
#
# Usage: scripts/engine.sh [--partial]
#   Prints progress on stderr and, as the LAST line of stdout, the directory
#   holding the binaries:
#     ${PULUMI_ENGINE_CACHE:-/var/tmp/phillymesh-chat/engine}/<version-tag>/bin
#   A warm run only checks a stamp file and never calls go.
#   Exits 1 (printing no directory) when a component cannot be built, e.g.
#   because the Go module proxy does not serve its module; --partial keeps
#   what could be built and still prints the directory (exit 0).
#
# Environment (all optional):
#   PULUMI_ENGINE_CACHE       cache root, outside the repo
#   PULUMI_ENGINE_GOMODCACHE  default <cache root>/go/mod (read-only files:
#                             remove with `go clean -modcache` or chmod -R u+w)
#   PULUMI_ENGINE_GOCACHE     default <cache root>/go/build
#   GO                        go binary (default: go on PATH, else /usr/local/go/bin/go)
#   GOPROXY/GOSUMDB are used as the machine has them; modules are checked
#   against the checksum database as go does.
#
# Using the engine: `. scripts/pulumi-env.sh "$(bash scripts/engine.sh)"`.
# It puts the directory first on PATH and sets PULUMI_SKIP_UPDATE_CHECK=true,
# PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true and
# PULUMI_IGNORE_AMBIENT_PLUGINS=true. Plugin lookup, from the CLI's source
# (sdk/go/common/workspace/plugins.go; `--file` install tried here): language hosts and
# pulumi-resource-pulumi-nodejs are "bundled" and found next to the pulumi
# binary; any other pulumi-resource-* on PATH is used whatever its version
# (warning "using ... from $PATH" each run, not shown by `pulumi plugin ls`)
# unless PULUMI_IGNORE_AMBIENT_PLUGINS is set, so pulumi-env.sh installs the
# provider into $PULUMI_HOME with `pulumi plugin install resource command
# 1.2.1 --file <binary>` (no download) and ignores ambient plugins.
#
# Status on this workplace's Go proxy: pulumi (v3.274.1) builds; the
# language host and the command provider modules are not served (403), so a
# full run exits 1 naming them; --partial gives the CLI alone.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC1091 # scripts/engine/versions.env
. "$here/engine/versions.env"

partial=0
case "${1:-}" in
  --partial) partial=1 ;;
  "") ;;
  *) echo "usage: $0 [--partial]" >&2; exit 64 ;;
esac

cache_root=${PULUMI_ENGINE_CACHE:-/var/tmp/phillymesh-chat/engine}
components="pulumi pulumi-language-nodejs pulumi-resource-command"

log() { printf 'engine.sh: %s\n' "$*" >&2; }

tag_for() { printf 'pulumi-%s_command-v%s' "$1" "$PULUMI_ENGINE_COMMAND_VERSION"; }

stamp_for() {
  printf 'cli=%s langhost=%s command=%s command_module=%s\n' "$1" \
    "$PULUMI_ENGINE_LANGHOST_VERSION" "$PULUMI_ENGINE_COMMAND_VERSION" \
    "$PULUMI_ENGINE_COMMAND_MODULE_VERSION"
}

is_complete() { # $1 = cli version
  local dir c
  dir="$cache_root/$(tag_for "$1")"
  [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$(stamp_for "$1")" ] || return 1
  for c in $components; do [ -x "$dir/bin/$c" ] || return 1; done
}

# --- warm path: no go, no network -------------------------------------------
for v in $PULUMI_ENGINE_CLI_VERSIONS; do
  if is_complete "$v"; then
    log "using already built engine (pulumi $v)"
    echo "$cache_root/$(tag_for "$v")/bin"
    exit 0
  fi
done

# --- cold path ---------------------------------------------------------------
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$GO" ] || { log "no go toolchain found (set GO=...)"; exit 1; }
mkdir -p "$cache_root"
export GOMODCACHE="${PULUMI_ENGINE_GOMODCACHE:-$cache_root/go/mod}"
export GOCACHE="${PULUMI_ENGINE_GOCACHE:-$cache_root/go/build}"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
go_version=$("$GO" env GOVERSION | sed 's/^go//; s/[^0-9.].*$//')

# One build at a time per cache (the testbed and CI may share it).
exec 9>"$cache_root/.lock"
flock 9

# json_field NAME < go-json: the first string value of "NAME" (go prints one
# field per line, so no JSON parser is needed).
json_field() {
  sed -n "s/^[[:space:]]*\"$1\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" | head -n 1
}

# fetch MODULE@VERSION: download it (sums checked); prints go's JSON on
# stdout; returns 1 and logs go's exact error if it is not served.
fetch() {
  local out err
  out=$(cd "$cache_root" && "$GO" mod download -json "$1" 2>/dev/null) || true
  err=$(printf '%s\n' "$out" | json_field Error)
  if [ -n "$err" ] || [ -z "$out" ]; then
    log "NOT SERVED: $1"
    log "  go mod download: ${err:-no output}" 
    return 1
  fi
  printf '%s\n' "$out"
}

# nonlocal_replaces GO.MOD: its replace directives whose target is a module
# version (local ../ paths are dropped), as old[@v]=new@v for go mod edit.
nonlocal_replaces() {
  awk '
    /^replace[ \t]*\($/ { inblock = 1; next }
    inblock && /^\)/   { inblock = 0; next }
    /^replace[ \t]/    { sub(/^replace[ \t]+/, ""); print; next }
    inblock            { print }
  ' "$1" | sed 's,//.*$,,' | awk '
    NF == 0 { next }
    { arrow = 0; for (i = 1; i <= NF; i++) if ($i == "=>") arrow = i }
    arrow == 0 { next }
    {
      old = $1; if (arrow == 3) old = $1 "@" $2
      new = $(arrow + 1)
      if (new ~ /^(\.|\/)/) next          # local path replace
      print old "=" new "@" $(arrow + 2)
    }'
}

# build NAME OUTDIR MAIN_PKG LDFLAGS REPLACES_FROM_GOMOD REQUIRE...
# Builds MAIN_PKG in a generated wrapper module requiring REQUIRE (mod@ver
# items), with the non-local replaces of REPLACES_FROM_GOMOD (the go.mod of
# the module the upstream release is built in; replaces of dependencies are
# ignored by go, so they are copied here).
build() {
  local name=$1 outdir=$2 main=$3 ldflags=$4 repl_from=$5 src r
  shift 5
  src="$outdir/../src/$name"
  rm -rf "$src" && mkdir -p "$src"
  printf 'module phillymesh.invalid/engine/%s\n\ngo %s\n' "$name" "$go_version" >"$src/go.mod"
  for r in "$@"; do (cd "$src" && "$GO" mod edit -require="$r"); done
  while IFS= read -r r; do
    [ -n "$r" ] && (cd "$src" && "$GO" mod edit -replace="$r")
  done < <(nonlocal_replaces "$repl_from")
  log "building $name ($main)"
  (cd "$src" && "$GO" build -trimpath -ldflags "$ldflags" -o "$outdir/.$name.tmp" "$main")
  mv -f "$outdir/.$name.tmp" "$outdir/$name"
}

# --- pick the CLI version: the first one whose modules are served ----------
cli=""
for v in $PULUMI_ENGINE_CLI_VERSIONS; do
  log "checking github.com/pulumi/pulumi/{pkg,sdk}/v3@$v"
  if pkg_json=$(fetch "github.com/pulumi/pulumi/pkg/v3@$v") &&
     sdk_json=$(fetch "github.com/pulumi/pulumi/sdk/v3@$v"); then
    cli=$v
    break
  fi
done
[ -n "$cli" ] || { log "none of $PULUMI_ENGINE_CLI_VERSIONS is served"; exit 1; }
log "pulumi CLI version: $cli"

dir="$cache_root/$(tag_for "$cli")"
bin="$dir/bin"
mkdir -p "$bin"
rm -f "$dir/stamp"
failed=""
version_ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$cli"

# built NAME VERSION: is NAME already built at VERSION in this directory?
built() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]; }
mark() { printf '%s\n' "$2" >"$bin/.$1.version"; }

# 1. pulumi CLI (official build: main module pkg/, so pkg/go.mod's replaces)
if built pulumi "$cli"; then
  log "pulumi $cli already built"
else
  pkg_mod=$(printf '%s\n' "$pkg_json" | json_field GoMod)
  if build pulumi "$bin" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "$version_ldflags" "$pkg_mod" \
      "github.com/pulumi/pulumi/pkg/v3@$cli" "github.com/pulumi/pulumi/sdk/v3@$cli"; then
    mark pulumi "$cli"
  else
    failed="$failed pulumi"
  fi
fi

# Dynamic-provider shim that the CLI release ships next to pulumi.
sdk_dir=$(printf '%s\n' "$sdk_json" | json_field Dir)
install -m 0755 "$sdk_dir/nodejs/dist/pulumi-resource-pulumi-nodejs" "$bin/"

# 2. Node.js language host: pseudo-version of the release commit.
langhost_mod=github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3
lh_version=$PULUMI_ENGINE_LANGHOST_VERSION
if [ -z "$lh_version" ]; then
  info=$(cd "$cache_root" && { "$GO" list -m -json "github.com/pulumi/pulumi/sdk/v3@$cli" 2>/dev/null || true; })
  hash=$(printf '%s\n' "$info" | json_field Hash)
  when=$(printf '%s\n' "$info" | json_field Time)
  if [ -n "$hash" ] && [ -n "$when" ]; then
    lh_version="v3.0.0-$(printf '%s' "$when" | tr -d -- '-:TZ' | cut -c1-14)-$(printf '%s' "$hash" | cut -c1-12)"
  else
    log "NOT SERVED: $langhost_mod (no pseudo-version known)"
    log "  the proxy's .info for github.com/pulumi/pulumi/sdk/v3@$cli has no Origin (commit hash),"
    log "  so the release commit is unknown; set PULUMI_ENGINE_LANGHOST_VERSION in scripts/engine/versions.env"
  fi
fi
if [ -n "$lh_version" ] && built pulumi-language-nodejs "$lh_version"; then
  log "pulumi-language-nodejs $lh_version already built"
elif [ -n "$lh_version" ] && lh_json=$(fetch "$langhost_mod@$lh_version") &&
     build pulumi-language-nodejs "$bin" "$langhost_mod" "$version_ldflags" \
       "$(printf '%s\n' "$lh_json" | json_field GoMod)" \
       "$langhost_mod@$lh_version" "github.com/pulumi/pulumi/pkg/v3@$cli" "github.com/pulumi/pulumi/sdk/v3@$cli"; then
  mark pulumi-language-nodejs "$lh_version"
else
  failed="$failed pulumi-language-nodejs"
fi

# 3. Command provider; goreleaser stamps the tag into pkg/version.Version,
#    which the provider reports to the engine as its plugin version.
cmd_mod=github.com/pulumi/pulumi-command/provider
cmd_v=$PULUMI_ENGINE_COMMAND_MODULE_VERSION
if built pulumi-resource-command "$PULUMI_ENGINE_COMMAND_VERSION/$cmd_v"; then
  log "pulumi-resource-command $PULUMI_ENGINE_COMMAND_VERSION already built"
elif cmd_json=$(fetch "$cmd_mod@$cmd_v") &&
     build pulumi-resource-command "$bin" "$cmd_mod/cmd/pulumi-resource-command" \
       "-s -w -X $cmd_mod/pkg/version.Version=v$PULUMI_ENGINE_COMMAND_VERSION" \
       "$(printf '%s\n' "$cmd_json" | json_field GoMod)" "$cmd_mod@$cmd_v"; then
  mark pulumi-resource-command "$PULUMI_ENGINE_COMMAND_VERSION/$cmd_v"
else
  failed="$failed pulumi-resource-command"
fi

if [ -n "$failed" ]; then
  log "could not build:$failed"
  if [ "$partial" = 1 ]; then
    log "--partial: printing the directory anyway"
    echo "$bin"
    exit 0
  fi
  exit 1
fi
stamp_for "$cli" >"$dir/stamp"
log "engine ready"
echo "$bin"
