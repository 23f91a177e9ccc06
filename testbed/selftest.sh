#!/bin/bash
# selftest.sh: prove the testbed works end to end, with timings. Boots two throwaway guests
# (st-philly 10.250.0.20, st-nyc 10.250.0.21, domains st-philly.test / st-nyc.test, so it never
# touches the phillymesh/nycmesh guests, their data disks or their DNS records), and checks from
# inside them: apt through the proxy, pip install of Synapse through the PyPI proxy, DNS (A, SRV,
# NXDOMAIN), certbot against pebble with HTTP-01, TLS between the guests with pebble's certs,
# download + gpgv of the Element stand-in, the data disk surviving destroy/boot, reboot (exit 133).
# Destroys its guests and removes its DNS sets at the end; stops the host services too, unless they
# were already running before (or KEEP_HOST=1).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

SYNAPSE_OLD=${SYNAPSE_OLD:-1.162.0}
SYNAPSE_NEW=${SYNAPSE_NEW:-1.163.2}
ELEMENT=${ELEMENT:-1.11.999}
GUESTS=("st-philly 10.250.0.20" "st-nyc 10.250.0.21")
T0=$SECONDS
lap() { printf '[%4ss] %s\n' "$((SECONDS - T0))" "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
on() { "$HERE/tssh" "root@$1" "${@:2}"; }

host_was_up=0
pid_alive dnsmasq dnsmasq && host_was_up=1

cleanup() {
    local g
    for g in "${GUESTS[@]}"; do
        "$HERE/destroy.sh" "${g% *}" --wipe-data >/dev/null 2>&1 || true
    done
    for g in "${GUESTS[@]}"; do
        rm -f "$B/dns/selftest-${g% *}.json"
    done
    if pid_alive dnsmasq dnsmasq; then
        "$HERE/dns-load.sh" --reload >/dev/null || true
    fi
    if [ "$host_was_up" = 0 ] && [ "${KEEP_HOST:-0}" != 1 ]; then
        "$HERE/host.sh" down >/dev/null
    fi
    lap "cleaned up"
}
trap cleanup EXIT

"$HERE/host.sh" up >/dev/null
lap "host.sh up"
"$HERE/template.sh"
lap "template"
for g in "${GUESTS[@]}"; do
    read -r name ip <<< "$g"
    "$HERE/destroy.sh" "$name" --wipe-data >/dev/null   # a leftover from an interrupted run
    "$HERE/boot.sh" "$name" "$ip"
    lap "booted $name"
    # The records the program would output for this domain: apex, matrix, chat, both SRV names.
    jq -n --arg d "$name.test" --arg ip "$ip" '[
        {name: $d, type: "A", content: $ip},
        {name: ("matrix." + $d), type: "A", content: $ip},
        {name: ("chat." + $d), type: "CNAME", content: ("matrix." + $d)},
        {name: ("_matrix-fed._tcp." + $d), type: "SRV", priority: 10, weight: 5, port: 8448, target: ("matrix." + $d)},
        {name: ("_matrix._tcp." + $d), type: "SRV", priority: 10, weight: 5, port: 8448, target: ("matrix." + $d)}]' \
        | "$HERE/dns-load.sh" - "selftest-$name"
done
read -r A IPA <<< "${GUESTS[0]}"
read -r Z IPZ <<< "${GUESTS[1]}"

# Both guests at once: apt through the proxy, then Synapse from the PyPI proxy into a venv.
provision() {
    on "$1" bash -s <<EOF
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql nginx certbot python3-venv python3-psycopg2 libjemalloc2 dnsutils gpg > /tmp/apt.log
python3 -m venv --system-site-packages /opt/synapse
/opt/synapse/bin/pip install -q --disable-pip-version-check $3 "matrix-synapse[postgres]==$2"
/opt/synapse/bin/python -c 'import synapse, psycopg2; print("synapse", synapse.__version__, "psycopg2", psycopg2.__version__)'
EOF
}
# Both guests through the TLS index (as pypi.org: no flags). The plain-http one is only for the host
# itself (the drills' cut forwarder): the program refuses an http:// pipIndexUrl.
INDEX="--index-url https://pypi.test:$PYPI_TLS_PORT/simple/"
provision "$IPA" "$SYNAPSE_NEW" "$INDEX" > "$LOG/selftest-$A.log" 2>&1 &
pa=$!
provision "$IPZ" "$SYNAPSE_OLD" "$INDEX" > "$LOG/selftest-$Z.log" 2>&1 &
pz=$!
wait "$pa" || { cat "$LOG/selftest-$A.log"; fail "provisioning $A"; }
wait "$pz" || { cat "$LOG/selftest-$Z.log"; fail "provisioning $Z"; }
grep -q "synapse $SYNAPSE_NEW" "$LOG/selftest-$A.log" || fail "Synapse $SYNAPSE_NEW on $A"
lap "apt (postgresql nginx certbot ...) + pip matrix-synapse on both: $(tail -1 "$LOG/selftest-$A.log")"
on "$IPZ" "/opt/synapse/bin/pip install -q $INDEX 'matrix-synapse[postgres]==$SYNAPSE_NEW'"
lap "pip upgrade $SYNAPSE_OLD -> $SYNAPSE_NEW on $Z"

# DNS as the guests see it.
[ "$(on "$IPA" "dig +short SRV _matrix-fed._tcp.$Z.test")" = "10 5 8448 matrix.$Z.test." ] || fail "SRV from $A"
[ "$(on "$IPA" "getent hosts chat.$Z.test | cut -d' ' -f1")" = "$IPZ" ] || fail "CNAME chat.$Z.test"
[[ $(on "$IPA" "dig _matrix._tcp.nothere.test SRV") == *"status: NXDOMAIN"* ]] || fail "NXDOMAIN for unknown names"
lap "DNS: A, CNAME, SRV, NXDOMAIN from inside $A"

# certbot (HTTP-01 on nginx's webroot; pebble resolves the names through our DNS).
for g in "${GUESTS[@]}"; do
    read -r name ip <<< "$g"
    on "$ip" "certbot certonly -n -q --agree-tos -m admin@$name.test --server https://acme.test:$ACME_PORT/dir \
        --webroot -w /var/www/html -d $name.test -d matrix.$name.test" || fail "certbot on $name"
    on "$ip" bash -s <<EOF
cat > /etc/nginx/sites-enabled/federation <<N
server { listen 8448 ssl; server_name $name.test matrix.$name.test;
    ssl_certificate /etc/letsencrypt/live/$name.test/fullchain.pem;
    ssl_certificate_key /etc/letsencrypt/live/$name.test/privkey.pem;
    location / { return 200 "$name federation port\n"; } }
N
nginx -t -q && systemctl reload nginx
EOF
done
lap "certbot certonly for apex + matrix on both"
# TLS between the guests, verified with the guest's system trust store (as Synapse does).
for _ in $(seq 20); do
    [[ $(on "$IPA" "curl -fsS https://$Z.test:8448/" 2>/dev/null) == *"$Z federation port"* ]] && break
    sleep 0.2
done
on "$IPA" "curl -fsS https://$Z.test:8448/ && curl -fsS https://matrix.$Z.test:8448/" >/dev/null || fail "TLS $A -> $Z"
curl -fsS --cacert "$B/pebble/roots.pem" --resolve "$A.test:8448:$IPA" "https://$A.test:8448/" >/dev/null || fail "TLS host -> $A"
lap "TLS guest->guest and host->guest with pebble certs"

# Element stand-in: download, verify with the pinned key, unpack.
on "$IPA" bash -s <<EOF || fail "Element download/verify"
set -euo pipefail
cd "\$(mktemp -d)"
U=http://$HOST_IP:$ELEMENT_PORT
curl -fsSO "\$U/v$ELEMENT/element-v$ELEMENT.tar.gz"
curl -fsSO "\$U/v$ELEMENT/element-v$ELEMENT.tar.gz.asc"
# (2>/dev/null: gpg warns about insecure memory, as mlock is not allowed in the container)
curl -fsS "\$U/element-release-key.asc" | gpg --batch --dearmor 2>/dev/null > key.gpg
status=\$(gpgv --status-fd 1 --keyring ./key.gpg element-v$ELEMENT.tar.gz.asc element-v$ELEMENT.tar.gz 2>/dev/null)
[[ \$status == *"VALIDSIG $(cat "$B/element/fingerprint")"* ]]
tar xzf element-v$ELEMENT.tar.gz
[ "\$(cat element-v$ELEMENT/version)" = "$ELEMENT" ]
EOF
lap "Element v$ELEMENT: gpgv VALIDSIG with the pinned fingerprint"

# Reboot from inside (nspawn exits 133, the supervisor starts it again).
on "$IPA" "echo volume-data > /mnt/matrix_data/marker; systemctl reboot" || true
sleep 2
wait_for 60 on "$IPA" "systemctl is-system-running --wait" || fail "reboot of $A"
on "$IPA" "systemctl is-active -q postgresql nginx" || fail "services after reboot"
lap "reboot of $A"

# "Droplet replaced, volume kept": the data disk survives destroy + boot, the root fs does not.
"$HERE/destroy.sh" "$A" >/dev/null
lap "destroyed $A"
"$HERE/boot.sh" "$A" "$IPA" >/dev/null
lap "booted $A again"
[ "$(on "$IPA" "cat /mnt/matrix_data/marker")" = volume-data ] || fail "data disk lost"
on "$IPA" "! command -v psql >/dev/null" || fail "root fs survived destroy"
lap "destroy + boot $A: data disk kept, root fs fresh"

# What the memory cap sees. The cgroup's usage counts page cache too (reclaimable); processes are
# anon (rss) plus shared memory (PostgreSQL's shared buffers).
M=$(sed -n 3p "$B/run-$Z/cgroups")
mb() { awk -v k="total_$1" '$1 == k {print int($2 / 1048576)}' "$M/memory.stat"; }
echo "memory of $Z (cap $(numfmt --to=iec "$(cat "$M/memory.limit_in_bytes")")): anon $(mb rss) MB, shmem $(mb shmem) MB, page cache $(mb cache) MB"
echo "PASS"
