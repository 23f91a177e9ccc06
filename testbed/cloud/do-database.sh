#!/bin/bash
# do-database.sh: the host-side half of the DigitalOcean stand-in's managed PostgreSQL
# (testbed/deploy/digitalocean/database.ts). A cluster is a testbed guest of its own (do-db<N>, from
# the trixie template: PostgreSQL 17, as new as the droplet's) running PostgreSQL with TLS only, a CA
# and a server certificate for the cluster's host name (served by the testbed DNS), the admin user
# doadmin (CREATEDB, CREATEROLE, not a superuser) and the database defaultdb, on port 25060.
#
#   do-database.sh cluster-boot GUEST IP HOST MEM VERSION   boot, install, certificates, doadmin; the
#                                                            admin's password on stdin; prints the CA dir
#   do-database.sh cluster-sql GUEST                        SQL on stdin, as postgres (the API's own
#                                                            superuser access: users are made this way)
#   do-database.sh cluster-hba GUEST                        the trusted sources on stdin (one CIDR a line;
#                                                            none: every address), pg_hba.conf rewritten
#   do-database.sh cluster-destroy GUEST                    the guest, its certificates, its DNS record
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TB=$(dirname "$HERE")
# shellcheck source=../lib.sh source-path=SCRIPTDIR
. "$TB/lib.sh"

PORT=25060
die() { echo "do-database.sh: $*" >&2; exit 1; }
guest_ok() { [[ $1 =~ ^do-db[0-9]{1,7}$ ]] || die "bad cluster guest name '$1'"; }
certs() { echo "$B/cloud/db/$1"; }
gssh() { local ip; ip=$(cat "$B/run-$1/ip") || die "cluster guest $1 is not running"; shift; "$TB/tssh" "root@$ip" "$@"; }

cluster_boot() {
    local guest=$1 ip=$2 host=$3 mem=$4 version=$5 dir pw
    guest_ok "$guest"
    [[ $host =~ ^[a-z0-9.-]+$ ]] || die "bad host name '$host'"
    [[ $version =~ ^[0-9]{2}$ ]] || die "bad version '$version'"
    pw=$(cat)
    dir=$(certs "$guest")
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 700 "$dir"
    # A CA of this cluster (what getDatabaseCa returns) and a server certificate naming the host.
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$guest testbed database CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$host" >"$dir/ext.cnf"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 825 \
        -extfile "$dir/ext.cnf" -out "$dir/server.crt" >/dev/null 2>&1
    # The testbed's key is root's (the drills look inside the cluster as DigitalOcean's staff would).
    bash "$TB/boot.sh" --no-data-dir --authorized-keys "$B/id_ed25519.pub" "$guest" "$ip" "$mem" >&2
    printf '[{"name":"%s","type":"A","content":"%s"}]\n' "$host" "$ip" | bash "$TB/dns-load.sh" - "$guest" >&2
    gssh "$guest" "{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } >/var/log/testbed-postgresql-install.log 2>&1 || { tail -20 /var/log/testbed-postgresql-install.log; exit 1; }" >&2
    local have
    have=$(gssh "$guest" "ls /usr/lib/postgresql" | sort -n | tail -1)
    [ "$have" = "$version" ] || die "the testbed's cluster guest has PostgreSQL $have, not $version"
    gssh "$guest" "install -o postgres -g postgres -m 600 /dev/stdin /etc/postgresql/$version/main/do-server.key" <"$dir/server.key"
    gssh "$guest" "install -o postgres -g postgres -m 644 /dev/stdin /etc/postgresql/$version/main/do-server.crt" <"$dir/server.crt"
    gssh "$guest" "cat > /etc/postgresql/$version/main/conf.d/digitalocean.conf" <<EOF
# The testbed's stand-in for a DigitalOcean managed cluster: TLS only (pg_hba.conf), port $PORT.
listen_addresses = '*'
port = $PORT
ssl = on
ssl_cert_file = '/etc/postgresql/$version/main/do-server.crt'
ssl_key_file = '/etc/postgresql/$version/main/do-server.key'
password_encryption = scram-sha-256
max_connections = 25
EOF
    printf '' | write_hba "$guest" "$version" norestart
    gssh "$guest" "systemctl restart postgresql@$version-main && systemctl enable -q postgresql@$version-main" >&2
    local pwq=${pw//\'/\'\'}
    # doadmin: DigitalOcean's administrative user, not a superuser. The SQL (with the password as a
    # quoted literal) on stdin, never on a command line.
    gssh "$guest" "runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p $PORT -f -" <<SQL
CREATE ROLE doadmin LOGIN CREATEDB CREATEROLE REPLICATION BYPASSRLS PASSWORD '$pwq';
CREATE DATABASE defaultdb OWNER doadmin;
SQL
    echo "$dir"
}

# write_hba GUEST VERSION [norestart]: TLS with a password from the trusted sources on stdin only
# (none: from everywhere, as a cluster without trusted sources accepts); postgres by peer for the API.
write_hba() {
    local guest=$1 version=$2 cidr srcs=()
    while read -r cidr; do
        [ -n "$cidr" ] || continue
        [[ $cidr =~ ^[0-9a-fA-F:.]+/[0-9]{1,3}$ ]] || die "bad source '$cidr'"
        srcs+=("$cidr")
    done
    [ "${#srcs[@]}" -gt 0 ] || srcs=(0.0.0.0/0 ::/0)
    {
        echo "# The testbed's stand-in for the cluster's trusted sources (DatabaseFirewall), TLS only."
        echo "local all postgres peer"
        for cidr in "${srcs[@]}"; do echo "hostssl all all $cidr scram-sha-256"; done
    } | gssh "$guest" "cat > /etc/postgresql/$version/main/pg_hba.conf"
    [ "${3:-}" = norestart ] || gssh "$guest" "runuser -u postgres -- psql -X -q -p $PORT -c 'SELECT pg_reload_conf()' >/dev/null"
}

cluster_sql() {
    guest_ok "$1"
    gssh "$1" "runuser -u postgres -- psql -X -q -tA -v ON_ERROR_STOP=1 -p $PORT -f -"
}

cluster_hba() {
    guest_ok "$1"
    local version sources
    # Read before any ssh, which would take the rest of stdin.
    sources=$(cat)
    version=$(gssh "$1" "ls /usr/lib/postgresql" </dev/null | sort -n | tail -1)
    write_hba "$1" "$version" <<<"$sources"
}

cluster_destroy() {
    guest_ok "$1"
    if [ -d "$B/run-$1" ]; then bash "$TB/destroy.sh" "$1" --wipe-data >&2; fi
    bash "$TB/dns-load.sh" --remove "$1" >&2 || true
    rm -rf "$(certs "$1")"
}

op=${1:-}
shift || true
case $op in
    cluster-boot) cluster_boot "$@" ;;
    cluster-sql) cluster_sql "$@" ;;
    cluster-hba) cluster_hba "$@" ;;
    cluster-destroy) cluster_destroy "$@" ;;
    *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
