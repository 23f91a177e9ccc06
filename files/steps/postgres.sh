#!/bin/bash
# Step "postgres": PostgreSQL from the distribution, its cluster kept on the data volume, tuned for a
# small server, listening on localhost only, with the synapse role and a C-collated UTF8 database.
# Variables: DATA_DIR, PG_PASSWORD (secret), PG_TUNING (the path of our settings file, copied to conf.d),
# PG_OOM_DROP_IN (the cluster units' drop-in), PG_DISK_RESERVE_MB (room on the volume kept back for the
# database: postgresDiskReserveMb).
# Files (install_files): PG_TUNING (postgres.ts: postgresTuning), PG_OOM_DROP_IN.
# Libraries: disk-reserve.sh.
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
# shellcheck source=files/lib/disk-reserve.sh
declare -F keep_room_for_database >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/disk-reserve.sh"
: "${DATA_DIR:?}" "${PG_PASSWORD:?}" "${PG_TUNING:?}" "${PG_OOM_DROP_IN:?}" "${PG_DISK_RESERVE_MB:?}"

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
PG_CONF=$PG_HOME/etc/$PG_MAJOR/main
# A new server may give postgres another uid than the one that wrote the files on the volume.
[ "$(stat -c %U "$PG_HOME/lib")" = postgres ] || chown -R postgres:postgres "$PG_HOME/lib"
[ "$(stat -c %U "$PG_CONF/postgresql.conf")" = postgres ] || chown -R postgres:postgres "$PG_HOME/etc"
# Root writes conf.d/: every directory on the way there is root's (group postgres, which reads
# them), so postgres cannot swap one for a link. Servers set up before change owner in place;
# postgresql-common takes the cluster's owner from its data directory, not from these.
for d in "$PG_HOME/etc" "$PG_HOME/etc/$PG_MAJOR" "$PG_CONF" "$PG_CONF/conf.d"; do
    refuse_symlink "$d"
    install -d -m 755 -o root -g postgres "$d"
done

# Media filling the volume leaves the database room for logins and messages (the postgres group
# exists now that the package is installed).
keep_room_for_database "$PG_HOME" "$PG_DISK_RESERVE_MB" postgres

install_files
if file_changed "$PG_OOM_DROP_IN"; then
    systemctl daemon-reload
    set_oom_score "postgresql@$PG_MAJOR-main" -500
fi
# PostgreSQL reads its copy in conf.d (the same file, owner and mode as before the typed map, so an
# upgrade changes nothing there); it is written, and PostgreSQL reloaded, only when it differs.
CHANGED=0
put_file "$PG_CONF/conf.d/50-phillymesh-chat.conf" 644 postgres:postgres "$(cat "$PG_TUNING")"
systemctl enable --quiet "postgresql@$PG_MAJOR-main"
if ! systemctl is-active --quiet "postgresql@$PG_MAJOR-main"; then
    log "starting PostgreSQL $PG_MAJOR with the tuned settings"
    systemctl restart "postgresql@$PG_MAJOR-main"
elif [ "$CHANGED" = 1 ]; then
    # Changed files are reloaded; a restart (which drops Synapse's connections) only when a changed
    # setting needs one (shared_buffers, max_connections...): not when the same settings moved file.
    systemctl reload "postgresql@$PG_MAJOR-main"
    sleep 2
    pending=$(runuser -u postgres -- psql -tAq -d postgres -c "SELECT string_agg(name, ' ') FROM pg_settings WHERE pending_restart")
    if [ -n "$pending" ]; then
        log "restarting PostgreSQL $PG_MAJOR: changed settings need it ($pending)"
        systemctl restart "postgresql@$PG_MAJOR-main"
    else
        log "reloaded PostgreSQL $PG_MAJOR (no changed setting needs a restart)"
    fi
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
