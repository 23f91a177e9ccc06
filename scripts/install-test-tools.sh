#!/bin/bash
# Installs the system tools the unit tests drive for real: shellcheck (every script), nginx (`nginx -t`
# on the rendered sites) and openssl (throwaway certificates). Debian/Ubuntu, as root or with sudo.
# With --e2e also what the end-to-end checks and the drills drive: Chromium and NSS's certutil (to
# trust the testbed's CA in a throwaway browser profile), testssl.sh (drill 4).
set -euo pipefail
need=()
if [ "${1:-}" = --e2e ]; then
    [ -x /usr/bin/chromium ] || need+=(chromium)
    command -v certutil >/dev/null || need+=(libnss3-tools)
    [ -x /usr/bin/testssl ] || need+=(testssl.sh)
fi
command -v shellcheck >/dev/null || need+=(shellcheck)
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v openssl >/dev/null || need+=(openssl)
[ "${#need[@]}" = 0 ] && { echo "test tools present"; exit 0; }
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The tests only run `nginx -t`; a service started by the package is not wanted.
$SUDO systemctl disable --now nginx >/dev/null 2>&1 || { [ -f /run/nginx.pid ] && $SUDO nginx -s stop; } || true
