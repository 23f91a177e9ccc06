#!/bin/bash
# host.sh up|down|status: the services every test guest relies on, all on bridge brtest 10.250.0.1.
#   apt proxy   http://10.250.0.1:3142         apt-cacher-ng, cache in $B/acng
#   PyPI        http://10.250.0.1:3141/simple/ proxpi (caching proxy of pypi.org), cache in $B/pypi;
#               https://pypi.test:3143/simple/ the same over TLS (cert from the testbed CA)
#               https://pypi.test:3143/pypi/NAME/VERSION/json  PyPI's JSON API stand-in: the
#               advisories planted in $B/pypi/advisories.json (the drills'), none otherwise
#   DNS         10.250.0.1:53                  dnsmasq, only the records in $B/dns/*.json
#   ACME        https://acme.test:14000/dir    pebble (validates against our DNS); roots in
#                                              $B/pebble/roots.pem, management :15000
#   Element     http://10.250.0.1:8090/        signed Element Web stand-ins, key
#                                              $B/element/release-key.asc
# Idempotent: `up` starts only what is not running and reuses every cache. Needs root.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

PROXPI_VERSION=1.3.1
ELEMENT_VERSIONS=(1.11.999 1.11.998)
# nftables and arping: the DigitalOcean stand-in's firewall and its reserved IPs (testbed/cloud/do-host.sh).
PACKAGES=(debootstrap systemd-container apt-cacher-ng pebble dnsmasq-base openssh-client gnupg nftables iputils-arping
          python3-venv curl jq dnsutils openssl iproute2 ca-certificates util-linux)

ensure_packages() {
    local need=() p
    for p in "${PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    [ ${#need[@]} -gt 0 ] || return 0
    echo "installing ${need[*]}"
    # apt-cacher-ng's postinst would start a system-wide instance on *:3142 and take our port.
    # Without a policy-rc.d (containers usually have one), forbid service starts for this install.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local rc=0
    { apt-get update -qq && apt-get install -y -q "${need[@]}"; } > "$LOG/apt-install.log" 2>&1 || rc=$?
    [ "$made_policy" = 0 ] || rm -f "$policy"
    [ "$rc" = 0 ] || { tail "$LOG/apt-install.log"; exit 1; }
}

ensure_bridge() {
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    [[ $(ip -o addr show dev "$BRIDGE") == *"inet $HOST_IP/24"* ]] || ip addr add "$HOST_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

ensure_ssh_key() {
    [ -f "$SSH_KEY" ] || ssh-keygen -q -t ed25519 -N '' -C phillymesh-testbed -f "$SSH_KEY"
}

# apt-cacher-ng: the guests have no route out; apt (debootstrap too) goes through this cache.
ensure_apt_proxy() {
    pid_alive acng apt-cacher-ng && return 0
    local a=$B/acng
    mkdir -p "$a/cache" "$a/log" "$a/run"
    rm -rf "$a/conf"
    cp -a /etc/apt-cacher-ng "$a/conf"
    # Its built-in mirror list does not lead to this machine's mirror: name it explicitly.
    echo "$(debian_mirror)/" > "$a/conf/backends_debian"
    chown -R apt-cacher-ng: "$a/cache" "$a/log" "$a/run"
    start_bg acng setpriv --reuid=apt-cacher-ng --regid=apt-cacher-ng --init-groups \
        /usr/sbin/apt-cacher-ng -c "$a/conf" ForeGround=1 BindAddress="127.0.0.1 $HOST_IP" Port="$APT_PORT" \
        CacheDir="$a/cache" LogDir="$a/log" SocketPath="$a/run/socket" PidFile="$a/run/pid"
    wait_for 10 curl -fsS -o /dev/null "http://$HOST_IP:$APT_PORT/acng-report.html" \
        || { tail "$LOG/acng.log"; echo "apt-cacher-ng did not start" >&2; exit 1; }
}

ensure_dns() {
    pid_alive dnsmasq dnsmasq || "$HERE/dns-load.sh" --reload
}

# The testbed's own CA (not pebble's ACME roots, which pebble invents at each start). It signs the
# HTTPS certificates of pebble's listener and the PyPI proxy; the guests trust it (install_roots).
make_testbed_ca() {
    local p=$B/pebble
    [ -s "$p/ca.pem" ] && return 0
    mkdir -p "$p"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$p/ca.key" -out "$p/ca.pem" \
        -days 3650 -subj '/CN=phillymesh testbed CA' -addext 'basicConstraints=critical,CA:TRUE' \
        -addext 'keyUsage=critical,keyCertSign,cRLSign' -addext 'subjectKeyIdentifier=hash' 2>/dev/null
}

# make_server_cert DIR NAME: DIR/cert.pem + DIR/key.pem for NAME and the host address.
make_server_cert() {
    local d=$1 name=$2 p=$B/pebble
    [ -s "$d/cert.pem" ] && return 0
    mkdir -p "$d"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/key.pem" -out "$d/srv.csr" \
        -subj "/CN=$name" 2>/dev/null
    # keyUsage is required: Python's ssl (certbot, pip) rejects a server cert without it.
    printf '%s\n' "subjectAltName=DNS:$name,IP:$HOST_IP" 'basicConstraints=critical,CA:FALSE' \
        'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' 'authorityKeyIdentifier=keyid' \
        'subjectKeyIdentifier=hash' > "$d/ext.cnf"
    openssl x509 -req -in "$d/srv.csr" -CA "$p/ca.pem" -CAkey "$p/ca.key" -CAcreateserial -out "$d/cert.pem" \
        -days 3650 -extfile "$d/ext.cnf" 2>/dev/null
}

ensure_pebble() {
    local p=$B/pebble
    make_testbed_ca
    make_server_cert "$p" acme.test
    if ! pid_alive pebble pebble; then
        cat > "$p/pebble-config.json" <<EOF
{"pebble": {"listenAddress": "$HOST_IP:$ACME_PORT", "managementListenAddress": "$HOST_IP:$ACME_MGMT_PORT",
  "certificate": "$p/cert.pem", "privateKey": "$p/key.pem", "httpPort": 80, "tlsPort": 443,
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}
EOF
        # NOSLEEP: no random 0-15 s validation delay. NONCEREJECT=0: no deliberate bad-nonce errors.
        # -dnsserver: HTTP-01 validation resolves names through our dnsmasq, i.e. the declared records.
        start_bg pebble env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
            pebble -config "$p/pebble-config.json" -dnsserver "$HOST_IP:53"
        wait_for 10 curl -fsS -o /dev/null --cacert "$p/ca.pem" "https://$HOST_IP:$ACME_PORT/dir" \
            || { tail "$LOG/pebble.log"; echo "pebble did not start" >&2; exit 1; }
    fi
    save_roots
}

# Pebble invents a new root at each start. Save the current root+intermediate for clients on the
# host (roots.pem), remember every root it ever had for the guests (roots-all.pem: certs issued
# before a restart chain to an older root), and push a changed set into running guests.
save_roots() {
    local p=$B/pebble run
    { curl -fsS --cacert "$p/ca.pem" "https://$HOST_IP:$ACME_MGMT_PORT/roots/0"
      curl -fsS --cacert "$p/ca.pem" "https://$HOST_IP:$ACME_MGMT_PORT/intermediates/0"
    } > "$p/roots.pem.tmp"
    mv "$p/roots.pem.tmp" "$p/roots.pem"
    touch "$p/roots-all.pem"
    # Every certificate block once, older ones first.
    awk '/BEGIN CERTIFICATE/ {b = ""} {b = b $0 "\n"}
         /END CERTIFICATE/ {if (!(b in seen)) printf "%s", b; seen[b] = 1}' \
        "$p/roots-all.pem" "$p/roots.pem" > "$p/roots-all.pem.tmp"
    if cmp -s "$p/roots-all.pem.tmp" "$p/roots-all.pem"; then
        rm "$p/roots-all.pem.tmp"
        return 0
    fi
    mv "$p/roots-all.pem.tmp" "$p/roots-all.pem"
    for run in "$B"/run-*/merged; do
        if mountpoint -q "$run"; then
            install_roots "$run"
            echo "pushed the new pebble roots into $(basename "$(dirname "$run")")"
        fi
    done
}

ensure_pypi() {
    local d=$B/pypi
    pid_alive pypi pypi-proxy.py && return 0
    if ! "$d/venv/bin/python" -c "import proxpi" 2>/dev/null; then
        rm -rf "$d/venv"
        "$HOST_PYTHON" -m venv "$d/venv"
        "$d/venv/bin/pip" install -q "proxpi==$PROXPI_VERSION"
    fi
    mkdir -p "$d/cache"
    make_server_cert "$d/tls" pypi.test
    # DOWNLOAD_TIMEOUT: proxpi answers a slow first download with a redirect to the upstream file,
    # which the guests cannot reach: make it wait for the file instead.
    # REQUESTS_CA_BUNDLE: requests trusts only certifi's bundle; use the system's, which carries any
    # CA the local network requires.
    # TLS as https://pypi.test:3143/simple/ (a name: pip's truststore refuses https://<IP>/), with a
    # cert from the testbed CA that the guests trust; pip then needs no --trusted-host, as pypi.org.
    start_bg pypi env PROXPI_INDEX_URL="${PYPI_UPSTREAM:-https://pypi.org/simple/}" \
        PROXPI_CACHE_DIR="$d/cache" PROXPI_DOWNLOAD_TIMEOUT=900 PROXPI_INDEX_TTL=3600 \
        REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt PYPI_ADVISORIES="$d/advisories.json" \
        "$d/venv/bin/python" "$HERE/pypi-proxy.py" "$HOST_IP" "$PYPI_PORT" \
        "$PYPI_TLS_PORT" "$d/tls/cert.pem" "$d/tls/key.pem"
    { wait_for 20 curl -fsS -o /dev/null "http://$HOST_IP:$PYPI_PORT/health" \
        && wait_for 5 curl -fsS -o /dev/null --cacert "$B/pebble/ca.pem" --resolve "pypi.test:$PYPI_TLS_PORT:$HOST_IP" \
            "https://pypi.test:$PYPI_TLS_PORT/health"; } \
        || { tail "$LOG/pypi.log"; echo "PyPI proxy did not start" >&2; exit 1; }
}

ensure_element() {
    "$HERE/element-standin.sh" "${ELEMENT_VERSIONS[@]}"
    pid_alive element-http http.server && return 0
    start_bg element-http "$HOST_PYTHON" -m http.server "$ELEMENT_PORT" --bind "$HOST_IP" --directory "$B/element/www"
    wait_for 10 curl -fsS -o /dev/null "http://$HOST_IP:$ELEMENT_PORT/element-release-key.asc" \
        || { tail "$LOG/element-http.log"; echo "Element web server did not start" >&2; exit 1; }
}

# name:pattern pairs, in start order.
SERVICES=(acng:apt-cacher-ng dnsmasq:dnsmasq pebble:pebble pypi:pypi-proxy.py element-http:http.server)

up() {
    [ "$(id -u)" = 0 ] || { echo "host.sh needs root" >&2; exit 1; }
    mkdir -p "$B" "$LOG" "$RUN"
    ensure_packages
    ensure_bridge
    ensure_ssh_key
    ensure_apt_proxy
    ensure_dns
    ensure_pebble
    ensure_pypi
    ensure_element
    status
}

down() {
    local i s
    # The Spaces stand-in, if something started it (it is never started by `up`).
    "$HERE/cloud/spaces.sh" stop
    for (( i = ${#SERVICES[@]} - 1; i >= 0; i-- )); do
        s=${SERVICES[$i]}
        stop_bg "${s%%:*}" "${s#*:}"
    done
    # The bridge goes only when no guest is plugged into it.
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        if [ -z "$(ip -o link show master "$BRIDGE")" ]; then
            ip link del "$BRIDGE"
            echo "removed bridge $BRIDGE"
        else
            echo "bridge $BRIDGE kept: guests still attached ($(ip -o link show master "$BRIDGE" | awk -F'[:@ ]+' '{printf "%s ", $2}'))"
        fi
    fi
}

status() {
    local s name where
    declare -A addr=(
        [acng]="apt proxy   http://$HOST_IP:$APT_PORT"
        [dnsmasq]="DNS         $HOST_IP:53 (records: $B/dns/*.json)"
        [pebble]="ACME        https://acme.test:$ACME_PORT/dir (roots: $B/pebble/roots.pem)"
        [pypi]="PyPI        http://$HOST_IP:$PYPI_PORT/simple/ https://pypi.test:$PYPI_TLS_PORT/simple/"
        [element-http]="Element     http://$HOST_IP:$ELEMENT_PORT/ (key: $B/element/release-key.asc)"
    )
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        echo "bridge $BRIDGE $(ip -br addr show dev "$BRIDGE" | awk '{print $2, $3}')"
    else
        echo "bridge $BRIDGE absent"
    fi
    for s in "${SERVICES[@]}"; do
        name=${s%%:*}
        where=${addr[$name]}
        if pid_alive "$name" "${s#*:}"; then
            printf '  up    %-13s pid %-7s %s\n' "$name" "$(cat "$RUN/$name.pid")" "$where"
        else
            printf '  DOWN  %-13s %-11s %s\n' "$name" "" "$where"
        fi
    done
    for s in "$B"/run-*; do
        [ -d "$s" ] || continue
        name=${s##*/run-}
        if proc_running "$(cat "$s/supervise.pid" 2>/dev/null || echo none)"; then
            echo "  guest $name at $(guest_ip "$name") (data $B/data-$name)"
        else
            echo "  guest $name: not running, leftovers in $s (testbed/destroy.sh $name)"
        fi
    done
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
