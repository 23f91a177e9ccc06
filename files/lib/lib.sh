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

# Root never follows a path a service user can change (issue 15): every directory on the way to a
# file root writes is root's and writable by root alone (a sticky directory such as /tmp is fine:
# no one else can rename what root put there), and a symlink on the way is root's own (as the links
# /etc/postgresql and /etc/letsencrypt onto the data volume are), its target checked the same way.
# root_path_check DIR — dies naming the first part of DIR that fails. (TRUSTED_UID is root's uid;
# only the tests, which run as themselves, set another.)
TRUSTED_UID=${TRUSTED_UID:-0}
root_path_check() {
    local dir=$1 resolved
    root_path_parts "$dir"
    resolved=$(readlink -m -- "$dir")
    [ "$resolved" = "$dir" ] || root_path_parts "$resolved"
}
root_path_parts() {
    local path=$1 part="" rest info uid mode kind
    rest=${path#/}
    while :; do
        part=$part/${rest%%/*}
        [ "$part" != / ] || part=""
        if [ -e "$part" ] || [ -L "$part" ]; then
            info=$(stat -c '%u %a %F' -- "${part:-/}")
            read -r uid mode kind <<<"$info"
            [ "$uid" = 0 ] || [ "$uid" = "$TRUSTED_UID" ] || die "refusing to write below ${part:-/}: it belongs to uid $uid, not root"
            case $kind in
                "symbolic link") ;;
                directory)
                    # Group or others may write, and the sticky bit does not protect entries: refused.
                    if (((8#$mode & 8#022) != 0 && (8#$mode & 8#1000) == 0)); then
                        die "refusing to write below ${part:-/}: mode $mode lets others than root change it"
                    fi
                    ;;
                *) die "refusing to write below ${part:-/}: it is a $kind, not a directory" ;;
            esac
        fi
        [ "$rest" != "${rest#*/}" ] || break
        rest=${rest#*/}
    done
}

# refuse_symlink PATH... — dies if one of them is a symlink (root would act on what it points to).
refuse_symlink() {
    local p
    for p in "$@"; do
        [ ! -L "$p" ] || die "refusing to use $p: it is a symlink (to $(readlink -- "$p"))"
    done
}

# set_oom_score UNIT SCORE: the unit's running processes get SCORE in the kernel's OOM choice now (its
# OOMScoreAdjust= drop-in covers every later start). Lowering a score needs CAP_SYS_RESOURCE, which
# root in a container may lack (systemd then ignores OOMScoreAdjust= too): say so, not fail.
set_oom_score() {
    local unit=$1 score=$2 cg pid
    cg=$(systemctl show -p ControlGroup --value "$unit" 2>/dev/null) || return 0
    [ -n "$cg" ] && [ -r "/sys/fs/cgroup$cg/cgroup.procs" ] || return 0
    while read -r pid; do
        if ! echo "$score" >"/proc/$pid/oom_score_adj" 2>/dev/null; then
            log "note: $unit keeps its OOM score ($(cat "/proc/$pid/oom_score_adj" 2>/dev/null)): this host does not let root lower it"
            return 0
        fi
    done <"/sys/fs/cgroup$cg/cgroup.procs"
}

CHANGED=0
CHANGED_FILES=()
# put_file DEST MODE OWNER:GROUP CONTENT — writes atomically (a temp file in the same directory,
# renamed), only when content, mode or owner differ; sets CHANGED=1 and records DEST for
# file_changed. Refuses a symlinked DEST and any directory on the way a service user could change;
# missing directories are made root's.
put_file() {
    local dest=$1 mode=${2#0} owner=$3 content dir tmp
    case $dest in /*) ;; *) die "put_file: $dest is not an absolute path" ;; esac
    dir=$(dirname -- "$dest")
    refuse_symlink "$dest"
    [ ! -e "$dest" ] || [ -f "$dest" ] || die "refusing to write $dest: it exists and is not a regular file"
    root_path_check "$dir"
    # Compare as the shell reads files back: without trailing newlines (the file gets exactly one).
    content=$(printf '%s' "$4")
    if [ -f "$dest" ] && [ "$(cat -- "$dest")" = "$content" ] &&
        [ "$(stat -c '%a %U:%G' -- "$dest")" = "$mode $owner" ]; then
        return 0
    fi
    if [ ! -d "$dir" ]; then
        (umask 022 && mkdir -p -- "$dir")
        root_path_check "$dir"
    fi
    tmp=$(mktemp "$dir/.tmp.XXXXXX")
    printf '%s\n' "$content" >"$tmp"
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    mv -f -T -- "$tmp" "$dest"
    # shellcheck disable=SC2034 # read by the step scripts
    CHANGED=1
    CHANGED_FILES+=("$dest")
    log "wrote $dest"
}

# The files a step declares (RemoteStep's `files`): templates.ts sends them as INSTALL_FILES, a flat
# array of quoted words, four per file: path, mode, owner, content.
declare -p INSTALL_FILES >/dev/null 2>&1 || INSTALL_FILES=()
# install_files — installs every declared file with put_file. The step calls it where it wants them.
install_files() {
    local i
    for ((i = 0; i < ${#INSTALL_FILES[@]}; i += 4)); do
        put_file "${INSTALL_FILES[i]}" "${INSTALL_FILES[i + 1]}" "${INSTALL_FILES[i + 2]}" "${INSTALL_FILES[i + 3]}"
    done
}
# file_declared PATH — true when the step declares PATH (an optional file, such as the apex site).
file_declared() {
    local i
    for ((i = 0; i < ${#INSTALL_FILES[@]}; i += 4)); do
        [ "${INSTALL_FILES[i]}" != "$1" ] || return 0
    done
    return 1
}
# file_changed PATH... — true when put_file/install_files wrote one of them in this run.
file_changed() {
    local p c
    for p in "$@"; do
        for c in "${CHANGED_FILES[@]}"; do
            [ "$c" != "$p" ] || return 0
        done
    done
    return 1
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
