#!/bin/bash
# Step "postgres": PostgreSQL from the distribution, its cluster kept on the data volume, tuned for a
# small server, listening on localhost only, with the synapse role and a C-collated UTF8 database.
# Variables: DATA_DIR, PG_PASSWORD (secret), PG_SHARED_BUFFERS_MB, PG_WORK_MEM_MB, PG_MAX_CONNECTIONS,
# PG_LOW_MEMORY (true/false).
# shellcheck source=files/scripts/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${DATA_DIR:?}" "${PG_PASSWORD:?}" "${PG_SHARED_BUFFERS_MB:?}" "${PG_WORK_MEM_MB:?}" "${PG_MAX_CONNECTIONS:?}" "${PG_LOW_MEMORY:?}"

# The cluster (configuration and data) lives on the volume; Debian's paths point there. On a new
# server with an old volume the package finds the existing cluster and starts it: nothing is lost.
PG_HOME=$DATA_DIR/postgresql
install -d -m 755 "$PG_HOME"
for pair in etc:/etc/postgresql lib:/var/lib/postgresql; do
    sub=${pair%%:*}
    sys=${pair#*:}
    install -d -m 755 "$PG_HOME/$sub"
    if [ -L "$sys" ]; then
        continue
    fi
    if [ -d "$sys" ] && [ -n "$(ls -A "$sys")" ]; then
        # PostgreSQL was installed before the volume layout: move its files over once.
        [ -z "$(ls -A "$PG_HOME/$sub")" ] || die "$sys and $PG_HOME/$sub both hold data; refusing to choose"
        log "moving $sys onto the data volume"
        systemctl stop postgresql 2>/dev/null || true
        cp -a "$sys/." "$PG_HOME/$sub/"
        mv "$sys" "$sys.moved-to-volume"
    fi
    rm -rf "$sys"
    ln -s "$PG_HOME/$sub" "$sys"
done

apt_install postgresql
PG_MAJOR=$(pg_lsclusters --no-header | awk '$2 == "main" {print $1; exit}')
[ -n "$PG_MAJOR" ] || die "no PostgreSQL cluster 'main' after installing postgresql"
[ "$PG_MAJOR" -ge 14 ] || die "PostgreSQL $PG_MAJOR is too old: Synapse needs 14 or newer"
# A new server may give postgres another uid than the one that wrote the files on the volume.
for d in "$PG_HOME/lib" "$PG_HOME/etc"; do
    [ "$(stat -c %U "$d")" = postgres ] || chown -R postgres:postgres "$d"
done

low_memory=
if [ "$PG_LOW_MEMORY" = true ]; then
    # No replication, no parallel query workers, no JIT (LLVM in a backend costs tens of MB): on one
    # vCPU and 1 GB they only cost memory. wal_level minimal is what having no replicas allows.
    low_memory='
wal_level = minimal
max_wal_senders = 0
max_logical_replication_workers = 0
max_parallel_workers_per_gather = 0
max_parallel_maintenance_workers = 0
jit = off
autovacuum_max_workers = 2'
fi
CHANGED=0
put_file "/etc/postgresql/$PG_MAJOR/main/conf.d/50-phillymesh-chat.conf" 644 postgres:postgres "# Managed by phillymesh-chat: sized for a 1 GB server that also runs Synapse.
listen_addresses = 'localhost'
max_connections = $PG_MAX_CONNECTIONS
shared_buffers = ${PG_SHARED_BUFFERS_MB}MB
work_mem = ${PG_WORK_MEM_MB}MB
maintenance_work_mem = 32MB
effective_cache_size = 256MB
wal_buffers = 4MB
max_wal_size = 512MB
min_wal_size = 64MB
checkpoint_completion_target = 0.9
random_page_cost = 1.1
password_encryption = scram-sha-256$low_memory"
systemctl enable --quiet "postgresql@$PG_MAJOR-main"
if [ "$CHANGED" = 1 ] || ! systemctl is-active --quiet "postgresql@$PG_MAJOR-main"; then
    log "restarting PostgreSQL $PG_MAJOR with the tuned settings"
    systemctl restart "postgresql@$PG_MAJOR-main"
fi
for _ in $(seq 30); do pg_isready -q -h localhost && break; sleep 1; done
pg_isready -q -h localhost || die "PostgreSQL does not answer on localhost"

# The password travels in the environment of psql only (never argv, never a file).
runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q -d postgres <<'SQL'
\getenv pw PG_PASSWORD
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'synapse') AS create_role \gset
\if :create_role
CREATE ROLE synapse LOGIN;
\endif
ALTER ROLE synapse WITH LOGIN PASSWORD :'pw';
SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'synapse') AS create_db \gset
\if :create_db
CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER synapse;
\endif
SQL
collation=$(runuser -u postgres -- psql -tAq -d postgres -c "SELECT datcollate || '/' || datctype FROM pg_database WHERE datname = 'synapse'")
[ "$collation" = "C/C" ] || die "database synapse has collation $collation; Synapse needs C/C (recreate it or restore a dump into a C database)"
log "PostgreSQL $PG_MAJOR ready: database synapse (UTF8, C), role synapse, localhost only"
