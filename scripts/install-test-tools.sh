#!/bin/bash
# Installs the system tools the unit tests and the lint drive for real: shellcheck (every script),
# nginx (`nginx -t` on the rendered sites), nftables (`nft` on the host firewall), systemd-analyze (the units' sandboxes), openssl (throwaway certificates), PostgreSQL (the database move), actionlint (the
# GitHub workflows; built from Go modules) and Renovate (its extraction on renovate.json; from npm). Debian/Ubuntu, as root or with sudo.
# With --e2e also what the end-to-end checks and the drills drive: Chromium and NSS's certutil (to
# trust the testbed's CA in a throwaway browser profile), testssl.sh (drill 4).
#
# actionlint: version ACTIONLINT_VERSION, installed as /usr/local/bin/actionlint (on PATH; `npm run
# lint` calls it by name). It needs Go to build: `go` on PATH, else /usr/local/go/bin/go, or
# GO=/path/to/go; without Go it is skipped with a warning (the unit tests do not need it).
#
# Renovate: version RENOVATE_VERSION, installed by npm into its own prefix RENOVATE_PREFIX (not a
# devDependency: it is ~440 MB that every `npm ci` would pay for); tests/renovate.test.ts runs its
# extraction on renovate.json. It needs Node >= 24.11: the `node` of node_modules/.bin (the `node`
# devDependency) when present, else the one on PATH. Its packages' install scripts are not run (npm
# 11's default; re2's native build is not needed, Renovate falls back to JavaScript's RegExp).
set -euo pipefail
ACTIONLINT_VERSION=v1.7.12
ACTIONLINT=/usr/local/bin/actionlint
RENOVATE_VERSION=44.121.2
RENOVATE_PREFIX=/usr/local/lib/renovate-$RENOVATE_VERSION
RENOVATE=$RENOVATE_PREFIX/node_modules/.bin/renovate
# The project's Node (a devDependency) first: Renovate needs a newer one than most systems have.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ ! -x "$ROOT/node_modules/.bin/node" ] || PATH=$ROOT/node_modules/.bin:$PATH
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

need=()
if [ "${1:-}" = --e2e ]; then
    [ -x /usr/bin/chromium ] || need+=(chromium)
    command -v certutil >/dev/null || need+=(libnss3-tools)
    [ -x /usr/bin/testssl ] || need+=(testssl.sh)
fi
command -v shellcheck >/dev/null || need+=(shellcheck)
[ -x /usr/sbin/nginx ] || need+=(nginx)
[ -x /usr/sbin/nft ] || need+=(nftables)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v openssl >/dev/null || need+=(openssl)
# PostgreSQL's server binaries: tests/databaseMove.test.ts runs the database-move step between two
# throwaway servers of its own (loopback and sockets only).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)

actionlint_ok() { [ -x "$ACTIONLINT" ] && [ "$("$ACTIONLINT" -version 2>/dev/null | head -n 1)" = "$ACTIONLINT_VERSION" ]; }
renovate_ok() { [ -x "$RENOVATE" ] && [ "$("$RENOVATE" --version 2>/dev/null)" = "$RENOVATE_VERSION" ]; }

if [ "${#need[@]}" = 0 ] && actionlint_ok && renovate_ok; then
    echo "test tools present"
    exit 0
fi

if [ "${#need[@]}" != 0 ]; then
    echo "installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The tests only run `nginx -t`; a service started by the package is not wanted.
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || { [ -f /run/nginx.pid ] && $SUDO nginx -s stop; } || true
fi

if ! renovate_ok; then
    command -v npm >/dev/null || { echo "install-test-tools: no npm: run npm ci first (Renovate $RENOVATE_VERSION not installed)" >&2; exit 1; }
    echo "installing renovate $RENOVATE_VERSION into $RENOVATE_PREFIX (npm, about 2 minutes)"
    $SUDO rm -rf "$RENOVATE_PREFIX.tmp"
    $SUDO mkdir -p "$RENOVATE_PREFIX.tmp"
    # Into a temporary prefix, renamed when complete: an interrupted install is never taken as done.
    if ! $SUDO env "PATH=$PATH" npm install --prefix "$RENOVATE_PREFIX.tmp" --omit=dev --no-audit --no-fund --loglevel=error \
        "renovate@$RENOVATE_VERSION" >/dev/null; then
        echo "install-test-tools: installing renovate $RENOVATE_VERSION failed" >&2
        exit 1
    fi
    $SUDO rm -rf "$RENOVATE_PREFIX"
    $SUDO mv "$RENOVATE_PREFIX.tmp" "$RENOVATE_PREFIX"
    for old in "${RENOVATE_PREFIX%-*}"-*; do
        [ "$old" = "$RENOVATE_PREFIX" ] || $SUDO rm -rf "$old"
    done
    renovate_ok || { echo "install-test-tools: $RENOVATE does not report version $RENOVATE_VERSION" >&2; exit 1; }
fi

if ! actionlint_ok; then
    go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
    if [ ! -x "$go" ]; then
        # The unit tests do not need it; `npm run lint` does, and fails without it.
        echo "install-test-tools: no Go found (set GO=/path/to/go): actionlint $ACTIONLINT_VERSION not installed, npm run lint needs it" >&2
        exit 0
    fi
    echo "installing actionlint $ACTIONLINT_VERSION (go install)"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    if ! GOBIN="$build" "$go" install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >"$build/log" 2>&1; then
        cat "$build/log" >&2
        echo "install-test-tools: building actionlint $ACTIONLINT_VERSION failed" >&2
        exit 1
    fi
    $SUDO install -m 0755 "$build/actionlint" "$ACTIONLINT"
fi
