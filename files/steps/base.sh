#!/bin/bash
# Step "base": a fresh server made ready for the rest. Waits for cloud-init, turns on unattended
# security upgrades, closes SSH password login, mounts the data volume and adds the swap file.
# Files (install_files): unattended-upgrades' settings, the SSH server's, needrestart's, and sshd's OOM priority.
# Variables: SSHD_DROP_IN and JOURNALD_DROP_IN (sshd's and journald's settings files), FIREWALL_RULES and FIREWALL_UNIT
# (the host firewall's rules and unit, declared when hostFirewall is on), DATA_DIR, DATA_DEVICE (empty: DATA_DIR is a plain directory), VOLUME_SIZE_GB (the
# volume's size in stack config: a new value re-runs this step, which grows the filesystem), SWAP_MB.
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
: "${DATA_DIR:?}" "${SWAP_MB:?}"
DATA_DEVICE=${DATA_DEVICE:-}

# A new droplet's first minutes belong to cloud-init (it runs apt itself): wait for it.
if command -v cloud-init >/dev/null 2>&1; then
    log "waiting for cloud-init to finish"
    cloud-init status --wait >/dev/null || log "cloud-init reported an error; continuing"
fi

# (apt-listchanges, which earlier versions installed, mails changelogs to no one and runs a 70 MB
# Python job on a fresh server; needrestart restarts what upgraded libraries leave running.)
apt_install ca-certificates curl gnupg unattended-upgrades needrestart

# Security updates every day, without asking; SSH keys only (hostBase.ts declares both files).
install_files
# (Before 2026-12 the drop-in was 50-phillymesh-chat.conf, read after cloud-init's: it goes.)
if [ -e /etc/ssh/sshd_config.d/50-phillymesh-chat.conf ]; then
    rm -f /etc/ssh/sshd_config.d/50-phillymesh-chat.conf
    CHANGED_FILES+=("$SSHD_DROP_IN")
fi
if file_changed "$SSHD_DROP_IN"; then
    sshd -t || die "sshd refuses its configuration with $SSHD_DROP_IN (sshd -t above); ssh was not reloaded"
    systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || true
fi
# The journal's cap takes effect when journald restarts (a second; nothing is lost).
if file_changed "$JOURNALD_DROP_IN"; then
    systemctl restart systemd-journald
fi
if file_changed /etc/systemd/system/ssh.service.d/50-phillymesh-chat.conf; then
    systemctl daemon-reload
    set_oom_score ssh.service -900
fi

# The server's own firewall (hostFirewall): loaded now and at every boot. This ssh connection is an
# established one, so it survives the load even when it came from outside sshAllowedCidrs.
if file_declared "$FIREWALL_RULES"; then
    apt_install nftables
    if file_changed "$FIREWALL_RULES" "/etc/systemd/system/$FIREWALL_UNIT" || ! systemctl is-active --quiet "$FIREWALL_UNIT"; then
        systemctl daemon-reload
        systemctl enable --quiet "$FIREWALL_UNIT"
        systemctl restart "$FIREWALL_UNIT" || die "the firewall rules did not load: $(journalctl -u "$FIREWALL_UNIT" -n 5 -o cat --no-pager)"
        log "firewall: only ssh, 80, 443 and 8448 reachable ($FIREWALL_RULES)"
    fi
elif [ -e "/etc/systemd/system/$FIREWALL_UNIT" ]; then
    systemctl disable --now --quiet "$FIREWALL_UNIT" || true
    rm -f "/etc/systemd/system/$FIREWALL_UNIT" "$FIREWALL_RULES"
    systemctl daemon-reload
    log "firewall: removed (hostFirewall is false)"
fi

# release_foreign_mounts DEVICE UUID DATA_DIR: DigitalOcean's image mounts a pre-formatted volume
# by itself at /mnt/<volume name> (chat-data appears at /mnt/chat_data) and writes that to
# /etc/fstab. One mount only: every other mount of the device, and its fstab line, goes.
release_foreign_mounts() {
    local device=$1 uuid=$2 keep=$3 real target src mnt rest
    real=$(readlink -f "$device")
    while read -r target; do
        if [ -z "$target" ] || [ "$target" = "$keep" ]; then continue; fi
        log "unmounting the volume's second mount point $target (made by the image; the data lives at $keep)"
        umount "$target"
        rmdir "$target" 2>/dev/null || true
    done < <(findmnt -rn -S "$real" -o TARGET || true)
    local tmp
    tmp=$(mktemp)
    cleanup_later "$tmp"
    while IFS= read -r line; do
        read -r src mnt rest <<<"$line" || true
        if [ -n "${src:-}" ] && [ "${src:0:1}" != "#" ] && [ "${mnt:-}" != "$keep" ] &&
            { [ "$src" = "UUID=$uuid" ] || [ "$(readlink -f "$src" 2>/dev/null)" = "$real" ]; }; then
            log "removing the fstab line for $mnt (${rest%% *} mount of the data volume)"
            continue
        fi
        printf '%s\n' "$line"
    done </etc/fstab >"$tmp"
    if ! cmp -s "$tmp" /etc/fstab; then
        cat "$tmp" >/etc/fstab
        systemctl daemon-reload
    fi
    # DigitalOcean's image may write the mount as a unit (/etc/systemd/system/mnt-<name>.mount)
    # rather than an fstab line: disable and remove it, or the second mount returns at the next boot.
    local unit what
    for unit in /etc/systemd/system/*.mount; do
        [ -f "$unit" ] || continue
        what=$(sed -n 's/^What=//p' "$unit" | head -n 1)
        { [ "$(readlink -f "$what" 2>/dev/null)" = "$real" ] || [ "$what" = "/dev/disk/by-uuid/$uuid" ] || [ "$what" = "UUID=$uuid" ]; } || continue
        [ "$(sed -n 's/^Where=//p' "$unit" | head -n 1)" != "$keep" ] || continue
        log "removing the mount unit ${unit##*/} (the image's own mount of the data volume)"
        systemctl disable --now "${unit##*/}" 2>/dev/null || true
        rm -f "$unit"
        systemctl daemon-reload
    done
}

# grow_filesystem DEVICE MOUNTPOINT: after volumeSizeGb grew, DigitalOcean has resized the block
# device but never the filesystem; ext4 grows online, with Synapse and PostgreSQL running.
grow_filesystem() {
    local device=$1 mnt=$2 real dev_bytes fs_bytes block_count block_size
    real=$(readlink -f "$device")
    # A SCSI disk learns its new size on a rescan (a no-op when it already knows).
    [ ! -w "/sys/class/block/${real##*/}/device/rescan" ] || echo 1 >"/sys/class/block/${real##*/}/device/rescan" 2>/dev/null || true
    dev_bytes=$(blockdev --getsize64 "$real")
    block_count=$(dumpe2fs -h "$real" 2>/dev/null | awk -F: '/^Block count/ {gsub(/ /, "", $2); print $2}')
    block_size=$(dumpe2fs -h "$real" 2>/dev/null | awk -F: '/^Block size/ {gsub(/ /, "", $2); print $2}')
    fs_bytes=$((block_count * block_size))
    # Grow when at least 1 MiB is unused (ext4 rounds to its block groups).
    [ "$dev_bytes" -gt $((fs_bytes + 1048576)) ] || return 0
    log "growing the filesystem on $mnt from $((fs_bytes / 1048576)) MiB to $((dev_bytes / 1048576)) MiB (online)"
    local out
    if out=$(resize2fs "$real" 2>&1); then
        return 0
    fi
    # Online growth needs CAP_SYS_RESOURCE, which some hosts withhold from root (containers): then
    # stop what uses the volume for the few seconds an offline resize takes.
    # (resize2fs's own error is its "resize2fs: ..." line, not its last one.)
    log "online resize refused ($(printf '%s\n' "$out" | grep -m 1 '^resize2fs:' || printf '%s' "$out" | tail -n 1)); growing offline: Synapse and PostgreSQL stop briefly"
    local stopped=() unit
    for unit in postgresql matrix-synapse nginx; do
        if systemctl is-active --quiet "$unit"; then stopped+=("$unit"); fi
    done
    # (postgresql.service returns before the cluster's own unit has stopped: stop that by name too.)
    systemctl stop matrix-synapse nginx postgresql 'postgresql@*' 2>/dev/null || true
    for _ in $(seq 30); do umount "$mnt" 2>/dev/null && break; sleep 1; done
    ! mountpoint -q "$mnt" || die "$mnt is still in use; cannot grow it offline"
    e2fsck -f -p "$real" >/dev/null || die "e2fsck $real found problems; not resizing"
    resize2fs "$real" >/dev/null 2>&1 || die "resize2fs $real failed offline too"
    mount "$mnt"
    [ "${#stopped[@]}" = 0 ] || systemctl start "${stopped[@]}" || die "could not start ${stopped[*]} again after the resize"
}

# The data volume: everything that must outlive the server lives below DATA_DIR.
if [ -n "$DATA_DEVICE" ]; then
    log "waiting for the data volume $DATA_DEVICE"
    for _ in $(seq 120); do [ -b "$DATA_DEVICE" ] && break; sleep 1; done
    [ -b "$DATA_DEVICE" ] || die "the data volume $DATA_DEVICE never appeared"
    if ! blkid "$DATA_DEVICE" >/dev/null 2>&1; then
        # DigitalOcean formats new volumes; an empty device means a volume created by hand.
        log "formatting the new, empty data volume"
        mkfs.ext4 -q -L matrix_data "$DATA_DEVICE"
    fi
    uuid=$(blkid -s UUID -o value "$DATA_DEVICE")
    release_foreign_mounts "$DATA_DEVICE" "$uuid" "$DATA_DIR"
    install -d "$DATA_DIR"
    if ! grep -q "UUID=$uuid" /etc/fstab; then
        printf 'UUID=%s %s ext4 defaults,nofail,discard,noatime 0 2\n' "$uuid" "$DATA_DIR" >>/etc/fstab
        systemctl daemon-reload
    fi
    mountpoint -q "$DATA_DIR" || mount "$DATA_DIR"
    grow_filesystem "$DATA_DEVICE" "$DATA_DIR"
    log "data volume mounted at $DATA_DIR ($(df -h --output=size "$DATA_DIR" | tail -1 | tr -d ' '))"
else
    install -d "$DATA_DIR"
    log "data directory $DATA_DIR (no separate volume on this host)"
fi
chmod 755 "$DATA_DIR"

# Swap: the 2017 server survived its 1 GB only with it.
if [ "$SWAP_MB" -gt 0 ]; then
    if in_container; then
        log "swap: skipped, this host is a container (swapon is not permitted there)"
    elif swapon --show=NAME --noheadings | grep -qx /swapfile; then
        log "swap: /swapfile already on"
    else
        log "swap: creating a ${SWAP_MB} MB /swapfile"
        [ -f /swapfile ] || { fallocate -l "${SWAP_MB}M" /swapfile || dd if=/dev/zero of=/swapfile bs=1M count="$SWAP_MB" status=none; }
        chmod 600 /swapfile
        mkswap /swapfile >/dev/null
        swapon /swapfile
        grep -q '^/swapfile ' /etc/fstab || echo '/swapfile none swap sw 0 0' >>/etc/fstab
    fi
    if ! in_container; then
        # Prefer dropping cache to swapping Synapse out.
        put_file /etc/sysctl.d/60-phillymesh-chat.conf 644 root:root 'vm.swappiness = 10'
        sysctl -q -p /etc/sysctl.d/60-phillymesh-chat.conf
    fi
fi
log "base ready"
