#!/bin/bash
# do-host.sh: the host-side half of the DigitalOcean stand-in (testbed/deploy/digitalocean/).
# The stand-in's dynamic providers keep the "account" (what exists, who is attached to whom) in
# $B/cloud/do-account.json and call this script for what must happen on the machine: guests, loop
# devices, addresses, nftables. It never reads the account itself, except `wipe` and `status`.
#
#   do-host.sh droplet-boot GUEST IP MEM KEYS_FILE [IPV6]   boot.sh --no-data-dir --authorized-keys
#   do-host.sh droplet-destroy GUEST                        destroy.sh (clean poweroff), then --wipe-data
#   do-host.sh droplet-mem GUEST MEM                        new memory cap of a running guest (resize)
#   do-host.sh droplet-ipv6 GUEST IPV6                      add the IPv6 address (ipv6 turned on)
#   do-host.sh volume-create IMG SIZE_GIB [FSTYPE [LABEL]]  sparse image; FSTYPE: mkfs it (DO pre-format)
#   do-host.sh volume-resize IMG SIZE_GIB                   grow the image (and an attached loop device)
#   do-host.sh volume-delete IMG
#   do-host.sh volume-attach GUEST VOLNAME IMG AUTOMOUNT    loop device -> /dev/sdX in the guest, with
#                                                           /dev/disk/by-id/scsi-0DO_Volume_VOLNAME;
#                                                           AUTOMOUNT=1: DO's first-attach auto-mount.
#                                                           Prints "LOOP DEV" (e.g. "/dev/loop3 sda").
#   do-host.sh volume-detach GUEST VOLNAME LOOP DEV         refuses (exit 3) while mounted in the guest
#   do-host.sh ip-assign GUEST IP / ip-unassign GUEST IP    reserved IP on the guest's host0 (/32)
#   do-host.sh firewall-apply                               nft script on stdin (empty: remove the table)
#   do-host.sh account-key NAME PUBKEY_FILE                 ensure a key is in the account (as added in the
#                                                           control panel); prints its fingerprint, for doSshKey
#   do-host.sh status                                       what the account holds, and what runs
#   do-host.sh wipe                                         remove every stand-in guest, volume, rule
#                                                           and the account (testbed.sh down --wipe-data)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TB=$(dirname "$HERE")
# shellcheck source=../lib.sh source-path=SCRIPTDIR
. "$TB/lib.sh"

CLOUD=$B/cloud
FW_TABLE=phillymesh_do_fw

die() { echo "do-host.sh: $*" >&2; exit 1; }

guest_ok() {
    [[ $1 =~ ^[a-z][a-z0-9-]{0,11}$ ]] || die "bad guest name '$1'"
}

# guest_init_pid GUEST: the guest's PID 1 as seen from the host (child of its systemd-nspawn).
guest_init_pid() {
    local sup nsp
    sup=$(cat "$B/run-$1/supervise.pid" 2>/dev/null) || return 0
    proc_running "$sup" || return 0
    nsp=$(pgrep -P "$sup" -x systemd-nspawn 2>/dev/null | head -1) || return 0
    [ -n "$nsp" ] || return 0
    pgrep -P "$nsp" 2>/dev/null | head -1 || true
}

need_init_pid() {
    local pid
    pid=$(guest_init_pid "$1")
    [ -n "$pid" ] || die "droplet guest $1 is not running"
    echo "$pid"
}

# Every process of the guest (all its cgroups), for the mount check.
guest_pids() {
    local cg=/sys/fs/cgroup/systemd/testbed-$1
    [ -d "$cg" ] || return 0
    find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true
}

ensure_nft() {
    command -v nft >/dev/null 2>&1 && return 0
    echo "installing nftables (the firewall stand-in)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables > "$LOG/apt-nftables.log" 2>&1 \
        || { tail -5 "$LOG/apt-nftables.log" >&2; die "could not install nftables"; }
}

droplet_boot() {
    local guest=$1 ip=$2 mem=$3 keys=$4 ip6=${5:-}
    guest_ok "$guest"
    bash "$TB/boot.sh" --no-data-dir --authorized-keys "$keys" "$guest" "$ip" "$mem" >&2
    if [ -n "$ip6" ]; then
        ip -n "$guest" -6 addr add "$ip6/64" dev host0 nodad
    fi
}

droplet_destroy() {
    guest_ok "$1"
    if [ -d "$B/run-$1" ]; then
        bash "$TB/destroy.sh" "$1" --wipe-data >&2
    fi
}

droplet_mem() {
    local guest=$1 mem memcg
    mem=$(numfmt --from=iec "$2")
    guest_ok "$guest"
    memcg=$(grep '/memory' "$B/run-$guest/cgroups" 2>/dev/null | head -1) || true
    if [ -z "$memcg" ] || [ ! -d "$memcg" ]; then die "no memory cgroup for $guest"; fi
    echo "$mem" > "$memcg/memory.limit_in_bytes"
    echo "$mem" > "$B/run-$guest/mem"
}

droplet_ipv6() {
    guest_ok "$1"
    ip -n "$1" -6 addr replace "$2/64" dev host0 nodad
}

volume_create() {
    local img=$1 size=$2 fstype=${3:-} label=${4:-}
    [[ $size =~ ^[0-9]+$ ]] || die "size must be whole GiB"
    mkdir -p "$(dirname "$img")"
    [ ! -e "$img" ] || die "$img exists"
    truncate -s "${size}G" "$img"
    case $fstype in
        "") ;;
        ext4)
            # As DigitalOcean pre-formats: the whole device, no partition table.
            mkfs.ext4 -q -F ${label:+-L "$label"} "$img" || { rm -f "$img"; die "mkfs.ext4 failed"; }
            ;;
        xfs)
            command -v mkfs.xfs >/dev/null || { rm -f "$img"; die "xfs is not in the testbed stand-in (no mkfs.xfs)"; }
            mkfs.xfs -q -f ${label:+-L "$label"} "$img" || { rm -f "$img"; die "mkfs.xfs failed"; }
            ;;
        *) rm -f "$img"; die "filesystem '$fstype' not supported" ;;
    esac
}

volume_resize() {
    local img=$1 size=$2 cur loop
    [ -f "$img" ] || die "no image $img"
    cur=$(stat -c %s "$img")
    [ $((size * 1024 * 1024 * 1024)) -ge "$cur" ] || die "shrinking is not possible"
    # The disk grows; the filesystem on it does not (resize2fs is the guest's business, as on DO).
    truncate -s "${size}G" "$img"
    for loop in $(losetup -j "$img" -O NAME -n 2>/dev/null); do
        losetup -c "$loop"
    done
}

volume_delete() {
    local img=$1 loop
    for loop in $(losetup -j "$img" -O NAME -n 2>/dev/null); do
        die "$img is still on $loop"
    done
    rm -f "$img"
}

volume_attach() {
    local guest=$1 vol=$2 img=$3 automount=$4 pid loop majmin dev mp unit
    guest_ok "$guest"
    [[ $vol =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "bad volume name '$vol'"
    [ -f "$img" ] || die "no image $img"
    pid=$(need_init_pid "$guest")
    loop=$(losetup --find --show "$img")
    majmin=$(printf '%d %d' "0x$(stat -c %t "$loop")" "0x$(stat -c %T "$loop")")
    # The first free /dev/sdX in the guest, as the volume appears on a droplet (sda, sdb, ...).
    # shellcheck disable=SC2016 # expanded by the guest's sh
    dev=$(nsenter -t "$pid" -m -- sh -c 'for l in a b c d e f g h i j k l m n o p; do
            [ -e /dev/sd$l ] || { echo sd$l; exit 0; }; done; exit 1') \
        || { losetup -d "$loop"; die "no free /dev/sdX in $guest"; }
    # shellcheck disable=SC2086 # majmin is "MAJOR MINOR"
    if ! nsenter -t "$pid" -m -- sh -c "mknod -m 660 /dev/$dev b $majmin && chgrp disk /dev/$dev 2>/dev/null;
            mkdir -p /dev/disk/by-id && ln -sfn ../../$dev /dev/disk/by-id/scsi-0DO_Volume_$vol"; then
        losetup -d "$loop"
        die "could not make /dev/$dev in $guest"
    fi
    if [ "$automount" = 1 ]; then
        # DigitalOcean's first-attach auto-mount of a pre-formatted volume (docs.digitalocean.com
        # products/volumes/details/naming-conventions): mount point /mnt/<name, - as _>, a systemd
        # mount unit in /etc/systemd/system, options defaults,nofail,discard,noatime.
        # TESTBED_DO_AUTOMOUNT=fstab writes an /etc/fstab line instead (what some images do), so a
        # program's clean-up of either can be tried.
        mp=/mnt/${vol//-/_}
        if [ "${TESTBED_DO_AUTOMOUNT:-unit}" = fstab ]; then
            nsenter -t "$pid" -m -- sh -c "mkdir -p '$mp' && echo '/dev/disk/by-id/scsi-0DO_Volume_$vol $mp $(blkid -o value -s TYPE "$loop") defaults,nofail,discard,noatime 0 2' >> /etc/fstab"
            nsenter -t "$pid" -a -- mount "$mp" || echo "do-host.sh: warning: the auto-mount of $vol at $mp failed" >&2
            echo "$loop $dev"
            return 0
        fi
        unit=$(nsenter -t "$pid" -a -- systemd-escape -p --suffix=mount "$mp")
        nsenter -t "$pid" -m -- sh -c "mkdir -p '$mp' && cat > '/etc/systemd/system/$unit'" <<EOF
[Unit]
Description=Mount DO Volume $vol

[Mount]
What=/dev/disk/by-id/scsi-0DO_Volume_$vol
Where=$mp
Options=defaults,nofail,discard,noatime
Type=$(blkid -o value -s TYPE "$loop")

[Install]
WantedBy=multi-user.target
EOF
        # enable, then mount directly: in a container systemd has no udev, so a start of the unit
        # would wait for a .device unit that never appears.
        nsenter -t "$pid" -a -- systemctl daemon-reload
        nsenter -t "$pid" -a -- systemctl enable "$unit" >/dev/null 2>&1
        nsenter -t "$pid" -a -- mount -o defaults,nofail,discard,noatime "/dev/disk/by-id/scsi-0DO_Volume_$vol" "$mp" \
            || echo "do-host.sh: warning: the auto-mount of $vol at $mp failed" >&2
    fi
    echo "$loop $dev"
    : "$majmin"
}

# mounted_in_guest GUEST MAJ:MIN: prints "PID MOUNTPOINT" of a mount of that device in any of the
# guest's mount namespaces.
mounted_in_guest() {
    local p mp
    for p in $(guest_pids "$1"); do
        mp=$(awk -v d="$2" '$3 == d {print $5; exit}' "/proc/$p/mountinfo" 2>/dev/null) || continue
        if [ -n "$mp" ]; then
            echo "$p $mp"
            return 0
        fi
    done
    return 1
}

volume_detach() {
    local guest=$1 vol=$2 loop=$3 dev=$4 pid majmin where
    guest_ok "$guest"
    if [ -b "$loop" ]; then
        majmin=$(printf '%d:%d' "0x$(stat -c %t "$loop")" "0x$(stat -c %T "$loop")")
        if where=$(mounted_in_guest "$guest" "$majmin"); then
            echo "refusing to detach volume $vol from droplet guest $guest: its filesystem is mounted" \
                "inside the droplet at ${where#* } (process ${where%% *}'s mount namespace). DigitalOcean" \
                "would detach it anyway, under the running system; unmount it first (the stand-in is" \
                "stricter on purpose)." >&2
            exit 3
        fi
    fi
    pid=$(guest_init_pid "$guest")
    if [ -n "$pid" ]; then
        nsenter -t "$pid" -m -- sh -c "rm -f /dev/disk/by-id/scsi-0DO_Volume_$vol /dev/$dev" || true
    fi
    if [ -b "$loop" ]; then
        losetup -d "$loop" || die "losetup -d $loop failed"
    fi
}

ip_assign() {
    local guest=$1 ip=$2
    guest_ok "$guest"
    [[ $(ip -n "$guest" -o -4 addr show dev host0) == *" $ip/32 "* ]] || ip -n "$guest" addr add "$ip/32" dev host0
    # Traffic follows at once: a gratuitous ARP from the guest, and the host forgets the old owner.
    ip neigh del "$ip" dev "$BRIDGE" 2>/dev/null || true
    if command -v arping >/dev/null; then
        ip netns exec "$guest" arping -q -U -c 1 -I host0 "$ip" || true
    fi
}

ip_unassign() {
    local guest=$1 ip=$2
    guest_ok "$guest"
    if ip netns list | awk '{print $1}' | grep -qx -- "$guest"; then
        ip -n "$guest" addr del "$ip/32" dev host0 2>/dev/null || true
    fi
    ip neigh del "$ip" dev "$BRIDGE" 2>/dev/null || true
}

firewall_apply() {
    local script
    script=$(cat)
    ensure_nft
    # Bridged frames (guest to guest) go through the ip/ip6 hooks only with these on.
    sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
    if [ -z "$script" ]; then
        nft delete table inet "$FW_TABLE" 2>/dev/null || true
        return 0
    fi
    nft -f - <<<"$script"
}

# account_key NAME FILE: add the public key in FILE to the account unless a key with its
# fingerprint is there; print the fingerprint. Takes the providers' lock ($B/cloud/.do.lock).
account_key() {
    local name=$1 file=$2 fp f=$CLOUD/do-account.json owner i
    fp=$(ssh-keygen -l -E md5 -f "$file" | awk '{print $2}') || die "not a public key: $file"
    fp=${fp#MD5:}
    mkdir -p "$CLOUD"
    for i in $(seq 600); do
        if mkdir "$CLOUD/.do.lock" 2>/dev/null; then
            echo $$ > "$CLOUD/.do.lock/pid"
            break
        fi
        owner=$(cat "$CLOUD/.do.lock/pid" 2>/dev/null || true)
        if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then rm -rf "$CLOUD/.do.lock"; fi
        sleep 0.1
        [ "$i" -lt 600 ] || die "the account is locked"
    done
    trap 'rm -rf "$CLOUD/.do.lock"' EXIT
    if [ ! -s "$f" ]; then
        echo '{"nextDropletId":500000001,"nextKeyId":41000001,"sshKeys":[],"droplets":[],"volumes":[],"reservedIps":[],"firewalls":[]}' > "$f"
    fi
    jq --arg name "$name" --arg fp "$fp" --arg key "$(tr -d '\n' < "$file")" '
        if any(.sshKeys[]; .fingerprint == $fp) then .
        else .sshKeys += [{id: (.nextKeyId // 41000001), name: $name, fingerprint: $fp, publicKey: $key}]
             | .nextKeyId = ((.nextKeyId // 41000001) + 1) end' "$f" > "$f.tmp"
    mv "$f.tmp" "$f"
    echo "$fp"
}

status() {
    local f=$CLOUD/do-account.json
    [ -f "$f" ] || { echo "no DigitalOcean stand-in account ($f)"; return 0; }
    jq -r '
      "droplets:", (.droplets[] | "  \(.id) \(.name) guest \(.guest) \(.ipv4) \(.image) \(.region) \(.size) \(.status)"),
      "volumes:", (.volumes[] | "  \(.id) \(.name) \(.size) GiB \(.region) droplets \(.dropletIds)"),
      "reserved IPs:", (.reservedIps[] | "  \(.ip) \(.region) droplet \(.dropletId // "-")"),
      "firewalls:", (.firewalls[] | "  \(.id) \(.name) droplets \(.dropletIds)"),
      "ssh keys:", (.sshKeys[] | "  \(.id) \(.name) \(.fingerprint)")' "$f"
    if command -v nft >/dev/null && nft list table inet "$FW_TABLE" >/dev/null 2>&1; then
        echo "nftables table inet $FW_TABLE present"
    fi
}

# wipe: every guest named do-*, every loop device over a stand-in volume, the firewall table, the
# Cloudflare zone sets in the testbed DNS, and $B/cloud itself.
wipe() {
    local d g img loop zone
    for d in "$B"/run-do-*; do
        [ -d "$d" ] || continue
        g=${d#"$B"/run-}
        bash "$TB/destroy.sh" "$g" --wipe-data >/dev/null 2>&1 || echo "do-host.sh: destroy.sh $g failed" >&2
    done
    for img in "$CLOUD"/volumes/*.img; do
        [ -f "$img" ] || continue
        for loop in $(losetup -j "$img" -O NAME -n 2>/dev/null); do
            losetup -d "$loop" || true
        done
    done
    if command -v nft >/dev/null; then nft delete table inet "$FW_TABLE" 2>/dev/null || true; fi
    # The managed database stand-in's host names (do-database.sh; its guests are do-db*, above).
    rm -f "$B"/dns/do-db*.json
    if [ -f "$CLOUD/cf-zones.json" ]; then
        for zone in $(jq -r '.[]' "$CLOUD/cf-zones.json"); do
            [ -f "$B/dns/cf-$zone.json" ] && rm -f "$B/dns/cf-$zone.json"
        done
        if pid_alive dnsmasq dnsmasq; then bash "$TB/dns-load.sh" --reload >/dev/null || true; fi
    fi
    rm -rf "$CLOUD"
    echo "DigitalOcean/Cloudflare stand-ins wiped"
}

[ $# -ge 1 ] || { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
op=$1
shift
case $op in
    droplet-boot) [ $# -ge 4 ] || die "usage: droplet-boot GUEST IP MEM KEYS_FILE [IPV6]"; droplet_boot "$@" ;;
    droplet-destroy) [ $# -eq 1 ] || die "usage: droplet-destroy GUEST"; droplet_destroy "$1" ;;
    droplet-mem) [ $# -eq 2 ] || die "usage: droplet-mem GUEST MEM"; droplet_mem "$@" ;;
    droplet-ipv6) [ $# -eq 2 ] || die "usage: droplet-ipv6 GUEST IPV6"; droplet_ipv6 "$@" ;;
    volume-create) [ $# -ge 2 ] || die "usage: volume-create IMG SIZE_GIB [FSTYPE [LABEL]]"; volume_create "$@" ;;
    volume-resize) [ $# -eq 2 ] || die "usage: volume-resize IMG SIZE_GIB"; volume_resize "$@" ;;
    volume-delete) [ $# -eq 1 ] || die "usage: volume-delete IMG"; volume_delete "$1" ;;
    volume-attach) [ $# -eq 4 ] || die "usage: volume-attach GUEST VOLNAME IMG AUTOMOUNT"; volume_attach "$@" ;;
    volume-detach) [ $# -eq 4 ] || die "usage: volume-detach GUEST VOLNAME LOOP DEV"; volume_detach "$@" ;;
    ip-assign) [ $# -eq 2 ] || die "usage: ip-assign GUEST IP"; ip_assign "$@" ;;
    ip-unassign) [ $# -eq 2 ] || die "usage: ip-unassign GUEST IP"; ip_unassign "$@" ;;
    firewall-apply) firewall_apply ;;
    account-key) [ $# -eq 2 ] || die "usage: account-key NAME PUBKEY_FILE"; account_key "$@" ;;
    status) status ;;
    wipe) wipe ;;
    *) die "unknown operation '$op'" ;;
esac
