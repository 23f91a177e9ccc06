#!/bin/bash
# boot.sh [--no-data-dir] [--authorized-keys FILE] NAME IP [MEM]: start a throwaway "droplet" NAME
# at IP (10.250.0.2-254), systemd as PID 1, and wait until ssh answers and boot has finished. MEM
# caps its memory (bytes or 1G/768M; default 1G, the s-1vcpu-1gb droplet).
#
# The guest is an overlay over the template (its changes are thrown away by destroy.sh), in its own
# network namespace on bridge brtest (no default route: only the host's services are reachable),
# under its own memory cgroup. $B/data-NAME/ is bind-mounted at /mnt/matrix_data: the stand-in for
# the DigitalOcean Volume, it survives destroy.sh (unless --wipe-data), so destroying and booting
# NAME again is "the droplet was replaced, the volume kept".
#
# Options (the defaults are the behaviour above):
#   --no-data-dir          no $B/data-NAME and no /mnt/matrix_data bind mount: the guest's volume,
#                          if any, is attached later as a block device (the DigitalOcean stand-in,
#                          testbed/cloud/do-host.sh volume-attach); the guest also gets
#                          CAP_SYS_RESOURCE, which an online resize2fs of that device needs.
#   --authorized-keys FILE root's authorized_keys is exactly FILE (what a droplet created with those
#                          SSH keys gets) and the template's `debian` user holds no key. Readiness is
#                          then checked from outside (systemd state through nsenter, sshd's banner
#                          on port 22), since the test key may not be among FILE's keys.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

DATA_DIR=1
KEYS_FILE=
while [ $# -gt 0 ]; do
    case $1 in
        --no-data-dir) DATA_DIR=0; shift ;;
        --authorized-keys)
            if [ $# -lt 2 ] || [ ! -f "$2" ]; then echo "--authorized-keys needs a readable FILE" >&2; exit 2; fi
            KEYS_FILE=$2
            shift 2
            ;;
        --) shift; break ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 [--no-data-dir] [--authorized-keys FILE] NAME IP [MEM]" >&2
    exit 2
fi
NAME=$1
IP=$2
MEM=$(numfmt --from=iec "${3:-1G}")
T=$B/tpl-trixie
W=$B/run-$NAME
DATA=$B/data-$NAME

# The host side of the veth is "vh-NAME", and interface names stop at 15 characters.
[[ $NAME =~ ^[a-z][a-z0-9-]{0,11}$ ]] || { echo "NAME: 1-12 of a-z 0-9 -, starting with a letter" >&2; exit 2; }
if ! [[ $IP =~ ^10\.250\.0\.([0-9]{1,3})$ ]] || [ "${BASH_REMATCH[1]}" -lt 2 ] || [ "${BASH_REMATCH[1]}" -gt 254 ]; then
    echo "IP: 10.250.0.2 to 10.250.0.254 (10.250.0.1 is the host)" >&2
    exit 2
fi
[ -f "$T/.testbed-template" ] || { echo "no template: run testbed/template.sh" >&2; exit 1; }
# dnsmasq restarts (for a moment) whenever DNS records change, which the Cloudflare stand-in does
# while the DigitalOcean one boots a droplet: look at it while no record load is under way (under
# dns-load.sh's lock), or a restart in flight reads as "not up" (CI failed so once).
mkdir -p "$B/dns"
dns_up() { (flock -w 60 9 && pid_alive dnsmasq dnsmasq) 9>"$B/dns/.lock"; }
dns_up || { echo "host services are not up: run testbed/host.sh up" >&2; exit 1; }

ssh_ready() {
    local state
    if [ -n "$KEYS_FILE" ]; then
        external_ready
        return
    fi
    state=$(TSSH_CONNECT_TIMEOUT=2 timeout 10 "$HERE/tssh" "root@$IP" 'systemctl is-system-running --wait' 2>/dev/null) || true
    [ "$state" = running ] || [ "$state" = degraded ]
}

# The guest's PID 1 (systemd), seen from the host: the child of the systemd-nspawn under the
# supervisor. Empty when the guest is not running.
guest_init_pid() {
    local sup nsp
    sup=$(cat "$W/supervise.pid" 2>/dev/null) || return 0
    nsp=$(pgrep -P "$sup" -x systemd-nspawn 2>/dev/null | head -1) || return 0
    [ -n "$nsp" ] && pgrep -P "$nsp" 2>/dev/null | head -1
    return 0
}

# Readiness without logging in: boot has finished (systemctl inside the guest, through nsenter) and
# sshd on IP:22 answers with its banner.
external_ready() {
    local pid state banner
    pid=$(guest_init_pid)
    [ -n "$pid" ] || return 1
    state=$(timeout 10 nsenter -t "$pid" -a systemctl is-system-running --wait 2>/dev/null) || true
    [ "$state" = running ] || [ "$state" = degraded ] || return 1
    # shellcheck disable=SC2016 # $1 is expanded by the inner bash
    banner=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/22" && head -c 8 <&3' _ "$IP" 2>/dev/null) || true
    [ "$banner" = SSH-2.0- ]
}

if [ -d "$W" ]; then
    if [ "$(cat "$W/ip" 2>/dev/null)" = "$IP" ] && ssh_ready; then
        echo "$NAME already up at $IP"
        exit 0
    fi
    echo "$W exists but $NAME is not up at $IP: run testbed/destroy.sh $NAME first" >&2
    exit 1
fi
for other in "$B"/run-*/ip; do
    [ -f "$other" ] && [ "$(cat "$other")" = "$IP" ] && { echo "$IP is taken by $(basename "$(dirname "$other")")" >&2; exit 1; }
done

mkdir -p "$W/upper" "$W/work" "$W/merged"
if [ "$DATA_DIR" = 1 ]; then
    mkdir -p "$DATA"
    BIND_DATA="--bind=$DATA:/mnt/matrix_data"
else
    # The volume comes as a block device instead; growing its ext4 online (resize2fs, the
    # EXT4_IOC_RESIZE_FS ioctl) needs CAP_SYS_RESOURCE, which nspawn leaves out by default and a
    # droplet's root has. (Only if the host has it: a host whose bounding set lacks it, as some
    # sandboxed VMs, cannot grow a mounted ext4 at all; offline resize2fs still works.)
    BIND_DATA="--capability=CAP_SYS_RESOURCE"
fi
echo "$IP" > "$W/ip"
echo "$MEM" > "$W/mem"

# Network: netns with host0 = IP/24, its veth peer on the bridge, no default route. The guest's
# MAC follows from its IP: a guest destroyed and booted again keeps it, so the neighbour caches of
# the host and the other guests (which hold the old MAC for up to a minute) stay right.
ip netns add "$NAME"
MAC=$(printf '02:fa:0a:fa:00:%02x' "${IP##*.}")
ip link add "vh-$NAME" type veth peer name host0 address "$MAC" netns "$NAME"
ip link set "vh-$NAME" master "$BRIDGE" up
ip -n "$NAME" link set lo up
ip -n "$NAME" addr add "$IP/24" dev host0
ip -n "$NAME" link set host0 up

# Root filesystem: a writable overlay over the read-only template.
mount -t overlay overlay -o "lowerdir=$T,upperdir=$W/upper,workdir=$W/work" "$W/merged"
R=$W/merged
echo "$NAME" > "$R/etc/hostname"
# A new machine-id for every boot of a fresh overlay, as a new droplet gets: the program's serverId
# (testbed.sh reads it) then tells a replaced guest from the one before it.
tr -d '-' < /proc/sys/kernel/random/uuid > "$R/etc/machine-id"
sed -i '/^127\.0\.1\.1/d' "$R/etc/hosts"
sed -i "1a 127.0.1.1\t$NAME" "$R/etc/hosts"
# Own ssh host keys per guest (the template has none, as a cloud image before first boot).
ssh-keygen -A -f "$R" >/dev/null
# Pebble makes a new ACME root at every start: trust the ones it has now.
install_roots "$R"
if [ -n "$KEYS_FILE" ]; then
    # As a droplet created with SSH keys: root holds exactly those keys, nobody else holds any.
    install -d -m 700 "$R/root/.ssh"
    install -m 600 "$KEYS_FILE" "$R/root/.ssh/authorized_keys"
    rm -f "$R/home/debian/.ssh/authorized_keys"
fi

# cgroups: this host runs no systemd, so the guest gets its own subtrees (name=systemd, the v2
# hierarchy that SYSTEMD_NSPAWN_UNIFIED_HIERARCHY gives the guest) plus a v1 memory cgroup with the
# cap, below the memory cgroup we already run in.
MEMCG=/sys/fs/cgroup/memory$(awk -F: '/:memory:/ {print $3}' /proc/self/cgroup)/testbed-$NAME
CGS=("/sys/fs/cgroup/systemd/testbed-$NAME" "/sys/fs/cgroup/unified/testbed-$NAME" "$MEMCG")
mkdir -p "${CGS[@]}"
echo "$MEM" > "$MEMCG/memory.limit_in_bytes"
printf '%s\n' "${CGS[@]}" > "$W/cgroups"

# The supervisor: like systemd-nspawn@.service, start the guest again when it asks for a reboot
# (exit code 133). setsid: it outlives this script and whatever kills the caller's process group.
cat > "$W/supervise.sh" <<EOF
#!/bin/bash
for c in ${CGS[*]}; do echo \$\$ > "\$c/cgroup.procs"; done
export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
while :; do
    systemd-nspawn -D "$R" --machine="$NAME" --boot --register=no --keep-unit \\
        --network-namespace-path="/run/netns/$NAME" --capability=CAP_NET_ADMIN \\
        $BIND_DATA \\
        --resolv-conf=off --timezone=off --link-journal=no --console=pipe < /dev/null
    rc=\$?
    echo "nspawn exited rc=\$rc at \$(date -u +%FT%TZ)"
    [ "\$rc" = 133 ] || break
done
EOF
chmod 755 "$W/supervise.sh"
setsid "$W/supervise.sh" > "$W/nspawn.log" 2>&1 < /dev/null &
echo $! > "$W/supervise.pid"

# A data dir that is the root of a block device's mount of its own (the worst days' volume image,
# tests/drills/worst-lib.ts) brings that device into the guest, at the path the guest's mount table
# names, as a server sees its volume's device: the program's steps can then tune its file system
# (the database's reserve, files/lib/disk-reserve.sh). A plain directory of the host's disk never.
expose_data_device() {
    local src pid
    [ "$DATA_DIR" = 1 ] && mountpoint -q "$DATA" || return 0
    src=$(findmnt -n -r -o SOURCE --mountpoint "$DATA")
    [ -b "$src" ] && [ "$(findmnt -n -r -o FSROOT --mountpoint "$DATA")" = / ] || return 0
    [[ $src =~ ^/dev/[a-z0-9]+$ ]] || return 0
    pid=$(guest_init_pid)
    [ -n "$pid" ] || return 1
    nsenter -t "$pid" -m -- sh -c "[ -b $src ] || mknod -m 660 $src b $(printf '%d %d' "0x$(stat -c %t "$src")" "0x$(stat -c %T "$src")")"
}

deadline=$((SECONDS + 90))
while [ "$SECONDS" -lt "$deadline" ]; do
    if ssh_ready; then
        expose_data_device || { echo "$NAME: could not make the device of its data volume ($DATA) in the guest" >&2; exit 1; }
        if [ "$DATA_DIR" = 1 ]; then
            echo "$NAME up at $IP (data disk $DATA at /mnt/matrix_data, memory cap $(numfmt --to=iec "$MEM"))"
        else
            echo "$NAME up at $IP (no data disk, memory cap $(numfmt --to=iec "$MEM"))"
        fi
        exit 0
    fi
    if proc_gone "$(cat "$W/supervise.pid")"; then
        echo "$NAME: nspawn died:" >&2
        tail -20 "$W/nspawn.log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "$NAME: no ssh after 90 s; see $W/nspawn.log (testbed/destroy.sh $NAME cleans up)" >&2
exit 1
