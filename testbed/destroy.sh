#!/bin/bash
# destroy.sh NAME [--wipe-data]: power the guest off and remove it (overlay, netns, cgroups).
# Its data disk $B/data-NAME/ stays, as a DigitalOcean Volume outlives its droplet, unless
# --wipe-data is given. Safe to run on a half-booted or already destroyed guest.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

[ $# -ge 1 ] || { echo "usage: $0 NAME [--wipe-data]" >&2; exit 2; }
NAME=$1
[[ $NAME =~ ^[a-z][a-z0-9-]{0,11}$ ]] || { echo "bad NAME '$NAME'" >&2; exit 2; }
wipe=0
[ "${2:-}" != --wipe-data ] || wipe=1
W=$B/run-$NAME

sup=$(cat "$W/supervise.pid" 2>/dev/null || true)
if [ -n "$sup" ] && proc_running "$sup" && grep -q supervise.sh "/proc/$sup/cmdline" 2>/dev/null; then
    nsp=$(pgrep -P "$sup" -x systemd-nspawn || true)
    if [ -n "$nsp" ]; then
        # Ask the guest's systemd to power off (a clean stop of PostgreSQL and friends); the
        # supervisor then sees an exit code other than 133 and ends.
        guest_init=$(pgrep -P "$nsp" | head -1 || true)
        if [ -z "$guest_init" ] || ! nsenter -t "$guest_init" -a systemctl poweroff 2>/dev/null; then
            kill -TERM "$nsp" 2>/dev/null || true
        fi
        if ! wait_for 30 proc_gone "$sup"; then
            echo "$NAME did not power off in 30 s: killing nspawn" >&2
            kill -KILL "$nsp" 2>/dev/null || true
            wait_for 5 proc_gone "$sup" || kill -KILL "$sup" 2>/dev/null || true
        fi
    else
        kill -TERM "$sup" 2>/dev/null || true
    fi
fi
if mountpoint -q "$W/merged" 2>/dev/null; then
    umount "$W/merged" 2>/dev/null || umount -l "$W/merged"
fi
# Remove the cgroups deepest first (the guest's systemd made subgroups in them).
if [ -f "$W/cgroups" ]; then
    while read -r c; do
        if [ -d "$c" ]; then
            find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
        fi
    done < "$W/cgroups"
fi
ip link del "vh-$NAME" 2>/dev/null || true
ip netns del "$NAME" 2>/dev/null || true
rm -rf "$W"
if [ "$wipe" = 1 ]; then
    rm -rf "$B/data-$NAME"
    echo "$NAME destroyed, data disk wiped"
else
    echo "$NAME destroyed (data disk $B/data-$NAME kept)"
fi
