#!/bin/bash
# template.sh [--force]: the root filesystem of a "fresh cloud VM" running Debian trixie, at
# $B/tpl-trixie, that every guest boots from (read-only, under a per-guest overlay). Built once
# (~1 min through the apt proxy) and reused; --force rebuilds it. Needs `host.sh up` first.
#
# What it has, as a new DigitalOcean droplet would: systemd, sshd taking keys only, root and a
# NOPASSWD sudo user `debian` both holding the test key, apt sources for trixie, trixie-updates and
# trixie-security. What differs on purpose: apt goes through the host's proxy, DNS is the
# testbed's dnsmasq, acme.test is in /etc/hosts, and the testbed CAs are trusted.
#
# No cloud-init, real or fake: the program waits for cloud-init only where the command exists, and
# a stub answering "status: done" would only test the stub. ssh host keys are not in the template:
# boot.sh makes them per guest, as cloud-init does on a droplet.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

SUITE=trixie
T=$B/tpl-$SUITE
INCLUDE=systemd,systemd-sysv,dbus,openssh-server,ca-certificates,curl,sudo,iproute2,procps,less

force=0
case ${1:-} in
    --force) force=1 ;;
    "") ;;
    *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

if [ -f "$T/.testbed-template" ] && [ "$force" = 0 ]; then
    echo "template $T ready (cached; --force rebuilds)"
    exit 0
fi
if ! { pid_alive acng apt-cacher-ng && [ -s "$SSH_KEY.pub" ] && [ -s "$B/pebble/ca.pem" ]; }; then
    echo "host services are not up: run testbed/host.sh up first" >&2
    exit 1
fi
# Running guests have this tree as their overlay's lower layer: replacing it under them corrupts them.
for w in "$B"/run-*/merged; do
    if mountpoint -q "$w"; then
        echo "guest $(basename "$(dirname "$w")") is running on the template: destroy it first" >&2
        exit 1
    fi
done

MIRROR=$(debian_mirror)
SECURITY=$(debian_security_mirror)
# Build beside the final place and swap at the end: an interrupted build never looks finished.
N=$T.new
rm -rf "$N"
mkdir -p "$B"
echo "debootstrap $SUITE into $N (log $N.debootstrap.log)"
debootstrap --include="$INCLUDE" "$SUITE" "$N" "http://127.0.0.1:$APT_PORT/${MIRROR#*://}" \
    > "$N.debootstrap.log" 2>&1 || { tail "$N.debootstrap.log"; exit 1; }

# apt: the sources a trixie cloud image ships (deb822), reached through the host's proxy.
rm -f "$N/etc/apt/sources.list"
cat > "$N/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
echo "Acquire::http::Proxy \"http://$HOST_IP:$APT_PORT\";" > "$N/etc/apt/apt.conf.d/01testbed-proxy"

# Names: the testbed DNS answers the records the tests load; acme.test is also pinned here.
rm -f "$N/etc/resolv.conf"
echo "nameserver $HOST_IP" > "$N/etc/resolv.conf"
printf '%s\t%s\n' "$HOST_IP" acme.test >> "$N/etc/hosts"

# sshd: keys only, as on a droplet created with ssh keys.
cat > "$N/etc/ssh/sshd_config.d/60-testbed.conf" <<'EOF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
EOF
rm -f "$N"/etc/ssh/ssh_host_*
install -d -m 700 "$N/root/.ssh"
install -m 600 "$SSH_KEY.pub" "$N/root/.ssh/authorized_keys"

# The cloud image's sudo user.
chroot "$N" useradd -m -s /bin/bash -G sudo debian
install -d -m 700 "$N/home/debian/.ssh"
install -m 600 "$SSH_KEY.pub" "$N/home/debian/.ssh/authorized_keys"
chroot "$N" chown -R debian:debian /home/debian/.ssh
echo 'debian ALL=(ALL) NOPASSWD:ALL' > "$N/etc/sudoers.d/90-cloud-init-users"
chmod 440 "$N/etc/sudoers.d/90-cloud-init-users"

# Trust pebble's HTTPS CA and its ACME roots (boot.sh refreshes both for each guest).
install_roots "$N"

# Container details: no tty to run a getty on; a machine-id made at first boot, per guest.
chroot "$N" systemctl mask getty@tty1.service >/dev/null 2>&1
: > "$N/etc/machine-id"
mkdir -p "$N/mnt/matrix_data"
chroot "$N" apt-get clean
rm -rf "$N"/var/lib/apt/lists/*

date -u +%FT%TZ > "$N/.testbed-template"
rm -rf "$T" "$T.debootstrap.log"
mv "$N" "$T"
mv "$N.debootstrap.log" "$T.debootstrap.log"
echo "template $T ready ($(du -sh "$T" | cut -f1))"
