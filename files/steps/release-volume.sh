#!/bin/bash
# Run on a droplet that is about to lose its data volume (it is being replaced, or the stack is
# destroyed): stop everything that writes to the volume, then unmount it, so DigitalOcean detaches
# a clean filesystem instead of pulling the disk from under a running PostgreSQL.
# Variables: DATA_DIR. Sent as the `delete` command of the data-release resource.
set -uo pipefail
: "${DATA_DIR:?}"
say() { printf '[release +%ss] %s\n' "$SECONDS" "$*"; }
say "stopping Synapse, nginx, the timers and PostgreSQL before the data volume is detached"
# postgresql.service is only a wrapper: `systemctl stop postgresql` returns before the cluster's own
# unit (postgresql@17-main) has stopped, so that one is stopped by name too.
for unit in matrix-synapse phillymesh-chat-backup.timer phillymesh-chat-backup certbot.timer \
    phillymesh-chat-cert-check.timer nginx postgresql 'postgresql@*'; do
    systemctl stop "$unit" 2>/dev/null || true
done
sync

# users_of MOUNTPOINT: the processes that still hold files below it (for the error message).
users_of() {
    local pid link
    for pid in /proc/[0-9]*; do
        for link in "$pid"/cwd "$pid"/root "$pid"/fd/*; do
            case $(readlink "$link" 2>/dev/null) in
                "$1" | "$1"/*) printf '  pid %s: %s\n' "${pid#/proc/}" "$(tr '\0' ' ' <"$pid/cmdline" | cut -c1-100)"; break ;;
            esac
        done
    done
}

if ! mountpoint -q "$DATA_DIR"; then
    say "$DATA_DIR is not a mount point: nothing to unmount"
    exit 0
fi
device=$(findmnt -n -o SOURCE --target "$DATA_DIR")
# Every mount of the volume: the data directory, and any mount DigitalOcean made itself.
mapfile -t targets < <(findmnt -rn -S "$device" -o TARGET)
for t in "${targets[@]}"; do
    # A service that is still shutting down holds the volume for a moment: wait up to 30 s.
    for _ in $(seq 30); do umount "$t" 2>/dev/null && break; sleep 1; done
    if mountpoint -q "$t"; then
        printf '[release] ERROR: %s is still in use; not detaching a mounted volume. Held by:\n%s\n' "$t" "$(users_of "$t")" >&2
        exit 1
    fi
    say "unmounted $t"
done
say "the data volume is released"
