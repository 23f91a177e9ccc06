#!/bin/bash
# Step "base": a fresh server made ready for the rest. Waits for cloud-init, turns on unattended
# security upgrades, closes SSH password login, mounts the data volume and adds the swap file.
# Variables: DATA_DIR, DATA_DEVICE (empty: DATA_DIR is a plain directory), SWAP_MB.
# shellcheck source=files/scripts/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${DATA_DIR:?}" "${SWAP_MB:?}"
DATA_DEVICE=${DATA_DEVICE:-}

# A new droplet's first minutes belong to cloud-init (it runs apt itself): wait for it.
if command -v cloud-init >/dev/null 2>&1; then
    log "waiting for cloud-init to finish"
    cloud-init status --wait >/dev/null || log "cloud-init reported an error; continuing"
fi

apt_install ca-certificates curl gnupg unattended-upgrades apt-listchanges

# Security updates every day, without asking (Debian's unattended-upgrades defaults: security only).
put_file /etc/apt/apt.conf.d/20auto-upgrades 644 root:root 'APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";'

# Keys only: a homeserver on the open internet is probed for passwords from its first hour.
CHANGED=0
put_file /etc/ssh/sshd_config.d/50-phillymesh-chat.conf 644 root:root '# Managed by phillymesh-chat.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password'
if [ "$CHANGED" = 1 ]; then
    sshd -t && { systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || true; }
fi

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
    install -d "$DATA_DIR"
    if ! grep -q "UUID=$uuid" /etc/fstab; then
        printf 'UUID=%s %s ext4 defaults,nofail,discard,noatime 0 2\n' "$uuid" "$DATA_DIR" >>/etc/fstab
        systemctl daemon-reload
    fi
    mountpoint -q "$DATA_DIR" || mount "$DATA_DIR"
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
