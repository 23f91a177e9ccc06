#!/bin/bash
# Shared helpers for the provisioning steps. The step runner sends, on stdin: the step's variables,
# this file, then the step's script, run as root with `bash`. Every helper is idempotent.
set -euo pipefail
umask 022
export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C.UTF-8

STEP_NAME=${STEP_NAME:-step}
STEP_STARTED=$(date +%s)

# Progress a person can follow in `pulumi up`: "[synapse +12s] installing 1.163.2".
log() { printf '[%s +%ss] %s\n' "$STEP_NAME" "$(($(date +%s) - STEP_STARTED))" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$STEP_NAME" "$*" >&2; exit 1; }
# Temporary paths a step registers with `cleanup_later`; removed however the step ends.
CLEANUP=()
cleanup_later() { CLEANUP+=("$@"); }
on_exit() {
    local rc=$?
    [ "${#CLEANUP[@]}" = 0 ] || rm -rf "${CLEANUP[@]}"
    [ "$rc" = 0 ] || printf '[%s] FAILED (exit %s)\n' "$STEP_NAME" "$rc" >&2
}
trap on_exit EXIT

# True inside a container (the local testbed): swap and sysctl cannot be changed there.
in_container() { systemd-detect-virt --container --quiet 2>/dev/null; }

# apt-get that waits for unattended-upgrades or cloud-init to let go of the dpkg lock.
apt_get() {
    local tries=0
    while ! apt-get -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -qq "$@"; do
        tries=$((tries + 1))
        [ "$tries" -lt 3 ] || return 1
        log "apt-get $1 failed; retrying in 10s ($tries/3)"
        sleep 10
    done
}

APT_UPDATED=${APT_UPDATED:-0}
# Installs the packages that are not installed yet (apt-get update once, only when needed).
apt_install() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    if [ "$APT_UPDATED" = 0 ]; then
        apt_get update
        APT_UPDATED=1
    fi
    log "installing ${missing[*]}"
    apt_get install -y --no-install-recommends "${missing[@]}" >/dev/null
}

CHANGED=0
# put_file DEST MODE OWNER:GROUP CONTENT — writes atomically, only when different; sets CHANGED=1.
put_file() {
    local dest=$1 mode=$2 owner=$3 content tmp
    # Compare as the shell reads files back: without trailing newlines (the file gets exactly one).
    content=$(printf '%s' "$4")
    if [ -f "$dest" ] && [ "$(cat "$dest")" = "$content" ] &&
        [ "$(stat -c '%a %U:%G' "$dest")" = "$mode $owner" ]; then
        return 0
    fi
    install -d "$(dirname "$dest")"
    tmp=$(mktemp "$(dirname "$dest")/.tmp.XXXXXX")
    printf '%s\n' "$content" >"$tmp"
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    mv -f "$tmp" "$dest"
    # shellcheck disable=SC2034 # read by the step scripts
    CHANGED=1
    log "wrote $dest"
}

# wait_http URL SECONDS — polls until URL answers 2xx.
wait_http() {
    local url=$1 limit=$2 i
    for ((i = 0; i < limit; i++)); do
        curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null && return 0
        sleep 1
    done
    return 1
}

# Points LINK at TARGET, replacing an older link in one rename (never a moment without one).
switch_symlink() {
    local target=$1 link=$2
    ln -sfn "$target" "$link.new"
    mv -T "$link.new" "$link"
}
