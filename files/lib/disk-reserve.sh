#!/bin/bash
# Room kept back for the database on the data volume (postgresDiskReserveMb), used by the postgres
# step. A full volume is nearly always media (Synapse, as its own user); PostgreSQL shares the volume
# and, with no page left, answers a login or a send with an error (a new device, a new event: rows
# it cannot add). ext4 keeps a reserve of blocks that only its owner may use: root always, plus one
# group. Given to the postgres group, PostgreSQL keeps working on a volume Synapse has filled, and
# Synapse's uploads fail with an error. Root still writes there too (ext4's own rule).
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# is_block_device PATH (a function of its own so that the tests can stand in for a device).
is_block_device() { [ -b "$1" ]; }

# keep_resgid_in_fstab TARGET GID: the fstab line that mounts TARGET (base.sh writes it for the data
# volume) carries resgid=GID among its options; any other resgid= there goes. No line for TARGET (a
# server the operator mounts some other way): it says so and changes nothing.
keep_resgid_in_fstab() {
    local target=$1 gid=$2 fstab=${FSTAB:-/etc/fstab} tmp
    if ! awk -v t="$target" '$1 !~ /^#/ && $2 == t { found = 1 } END { exit !found }' "$fstab" 2>/dev/null; then
        log "disk reserve: $target has no line in $fstab: resgid=$gid is not kept across a reboot there"
        return 0
    fi
    tmp=$(mktemp)
    cleanup_later "$tmp"
    awk -v t="$target" -v g="$gid" 'BEGIN { OFS = "\t" }
        $1 !~ /^#/ && $2 == t {
            n = split($4, o, ","); opts = ""
            for (i = 1; i <= n; i++) if (o[i] !~ /^resgid=/) opts = opts (opts == "" ? "" : ",") o[i]
            want = opts (opts == "" ? "" : ",") "resgid=" g
            if (want != $4) $4 = want
        }
        { print }' "$fstab" >"$tmp"
    cmp -s "$tmp" "$fstab" && return 0
    cat "$tmp" >"$fstab"
    systemctl daemon-reload
    log "disk reserve: $fstab mounts $target with resgid=$gid from now on (every boot, whatever the kernel)"
}

# keep_room_for_database DIR MIB GROUP: DIR's file system keeps MIB MiB back for GROUP, when it is an
# ext4 volume of its own (not the root file system, nor a directory of another file system bound
# here). Otherwise it says why and changes nothing. Never fails the step: a reserve it cannot set
# leaves the server as it was.
keep_room_for_database() {
    local dir=$1 mib=$2 group=$3 gid src fstype target fsroot bsize total free want have sb_gid mount_gid dev
    if [ "$mib" = 0 ]; then
        log "disk reserve: postgresDiskReserveMb is 0; the data volume's reserve is left as it is"
        return 0
    fi
    gid=$(getent group "$group" | cut -d: -f3)
    [ -n "$gid" ] || die "disk reserve: no group $group"
    # -r: raw output, spaces in a path escaped, one mount per line; the innermost mount holding DIR.
    read -r src fstype target fsroot < <(findmnt -n -r -o SOURCE,FSTYPE,TARGET,FSROOT --target "$dir" | tail -n 1) || true
    src=${src%%[*}
    if [ "$fstype" != ext4 ]; then
        log "disk reserve: $dir is on ${fstype:-an unknown file system}, not ext4: no room kept back for PostgreSQL (media filling the disk stops the database too)"
        return 0
    fi
    if [ "$target" = / ] || [ "$(stat -c %d "$target")" = "$(stat -c %d /)" ]; then
        log "disk reserve: $dir is on the root file system, not a volume of its own: its reserve is left to root"
        return 0
    fi
    if [ "$fsroot" != / ]; then
        log "disk reserve: $target is a directory ($fsroot) of a file system mounted elsewhere, not a volume of its own: its reserve is left as it is"
        return 0
    fi
    read -r bsize total free < <(stat -f -c '%S %b %f' "$target")
    want=$((mib * 1048576 / bsize))

    # The count and the group in the superblock (kept across mounts), when the device is reachable.
    if is_block_device "$src" && command -v tune2fs >/dev/null 2>&1; then
        have=$(dumpe2fs -h "$src" 2>/dev/null | awk -F: '/^Reserved block count/ {gsub(/ /, "", $2); print $2}')
        sb_gid=$(dumpe2fs -h "$src" 2>/dev/null | awk -F: '/^Reserved blocks gid/ {split($2, a, " "); print a[1]}')
        if [ -n "$have" ] && [ "$want" -gt "$have" ] && [ $((free - want)) -lt "$want" ]; then
            # Raising it on a nearly full volume would take what Synapse's media still has, at once.
            log "disk reserve: WARNING $target has only $((free * bsize / 1048576)) MiB free: the reserve stays at $((have * bsize / 1048576)) MiB rather than $mib MiB (free space or raise volumeSizeGb, then pulumi up)"
            want=$have
        fi
        if [ "$have" != "$want" ] || [ "$sb_gid" != "$gid" ]; then
            if tune2fs -r "$want" -g "$gid" "$src" >/dev/null 2>&1; then
                log "disk reserve: $((want * bsize / 1048576)) MiB of $target ($src, $((total * bsize / 1048576)) MiB) kept back for PostgreSQL (group $group)"
            else
                log "disk reserve: WARNING tune2fs could not set the reserve on $src; it stays at $((${have:-0} * bsize / 1048576)) MiB"
            fi
        fi
    else
        log "disk reserve: the device of $target ($src) cannot be reached here: its reserve stays as it is ($(((free - $(stat -f -c %a "$target")) * bsize / 1048576)) MiB held back now)"
    fi

    # The group on the mount itself, at once: a mount reads the superblock's group only when it is
    # made (and Linux 6.18 reads the wrong field then: the reserve stayed root's until a remount).
    # And in the mount's fstab line, so that every later boot mounts it so, whatever the kernel.
    keep_resgid_in_fstab "$target" "$gid"
    mount_gid=$(findmnt -n -r -o OPTIONS --mountpoint "$target" | tr ',' '\n' | sed -n 's/^resgid=//p')
    if [ "${mount_gid:-0}" != "$gid" ]; then
        dev=$(findmnt -n -r -o SOURCE --mountpoint "$target")
        if mount -o "remount,resgid=$gid" "$target" 2>/dev/null; then
            log "disk reserve: the reserve of $target ($dev) is usable by PostgreSQL now (resgid $gid)"
        else
            log "disk reserve: WARNING could not remount $target with resgid=$gid: the reserve is PostgreSQL's from its next mount"
        fi
    fi
}
