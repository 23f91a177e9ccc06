#!/bin/bash
# Run on a droplet that is about to lose its data volume (it is being replaced, or the stack is
# destroyed): stop everything that writes to the volume, then unmount it, so DigitalOcean detaches
# a clean filesystem instead of pulling the disk from under a running PostgreSQL.
# Variables: DATA_DIR. Sent as the `delete` command of the data-release resource.
set -uo pipefail
: "${DATA_DIR:?}"
say() { printf '[release +%ss] %s\n' "$SECONDS" "$*"; }
say "stopping Synapse, nginx, the timers and PostgreSQL before the data volume is detached"
for unit in matrix-synapse phillymesh-chat-backup.timer phillymesh-chat-backup certbot.timer phillymesh-chat-cert-check.timer nginx postgresql; do
    systemctl stop "$unit" 2>/dev/null || true
done
sync
# Every mount of the volume: the data directory, and any mount DigitalOcean made itself.
device=$(findmnt -n -o SOURCE --target "$DATA_DIR" 2>/dev/null || true)
if mountpoint -q "$DATA_DIR"; then
    mapfile -t targets < <(findmnt -rn -S "$device" -o TARGET)
    for t in "${targets[@]}"; do
        umount "$t" || { fuser -vm "$t" 2>&1 | head -n 20; printf '[release] ERROR: %s is still in use; not detaching a mounted volume\n' "$t" >&2; exit 1; }
        say "unmounted $t"
    done
else
    say "$DATA_DIR is not a mount point: nothing to unmount"
fi
say "the data volume is released"
