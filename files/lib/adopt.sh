#!/bin/bash
# Library of the "synapse" step: adopting an existing Synapse server (the runbook's own situation:
# a homeserver that has run for years, maybe still on SQLite). It brings the old server's signing
# key, its database (SQLite, ported with synapse_port_db, or a PostgreSQL dump) and its media store
# into this server's data volume, once, before Synapse first starts on it.
#
# Variables (paths on the server; empty when not adopting): ADOPT_SIGNING_KEY,
# ADOPT_SQLITE_DATABASE, ADOPT_POSTGRES_DUMP, ADOPT_MEDIA_STORE. Also DOMAIN, DATA_DIR.
#
# Nothing is ever deleted: the old files are only read (SQLite is ported from a copy), a database
# or signing key already here is renamed aside, and a finished adoption is recorded in
# $DATA_DIR/synapse/adopted so it never runs twice (a re-run, a bump, a replaced droplet).
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ADOPT_SIGNING_KEY=${ADOPT_SIGNING_KEY:-}
ADOPT_SQLITE_DATABASE=${ADOPT_SQLITE_DATABASE:-}
ADOPT_POSTGRES_DUMP=${ADOPT_POSTGRES_DUMP:-}
ADOPT_MEDIA_STORE=${ADOPT_MEDIA_STORE:-}
ADOPTED_MARKER=$DATA_DIR/synapse/adopted
ADOPT_WORK=$DATA_DIR/adopt-work

adopt_wanted() {
    [ -n "$ADOPT_SIGNING_KEY$ADOPT_SQLITE_DATABASE$ADOPT_POSTGRES_DUMP$ADOPT_MEDIA_STORE" ] && [ ! -e "$ADOPTED_MARKER" ]
}

# psql as postgres on the synapse database (or another, with -d after it); quiet, stops at errors.
adopt_psql() { runuser -u postgres -- psql -X -q -tA -v ON_ERROR_STOP=1 "$@"; }

# The checks that need nothing installed: run first, so a wrong path fails in seconds with the key
# named, before anything is downloaded or changed.
adopt_precheck() {
    if [ -e "$ADOPTED_MARKER" ]; then
        if [ -n "$ADOPT_SIGNING_KEY$ADOPT_SQLITE_DATABASE$ADOPT_POSTGRES_DUMP$ADOPT_MEDIA_STORE" ]; then
            log "this server adopted its data before ($(head -n 1 "$ADOPTED_MARKER")); the adopt* settings are not used again"
        fi
        return 0
    fi
    adopt_wanted || return 0
    local pair var value
    for pair in adoptSigningKey:ADOPT_SIGNING_KEY adoptSqliteDatabase:ADOPT_SQLITE_DATABASE adoptPostgresDump:ADOPT_POSTGRES_DUMP; do
        var=${pair#*:}
        value=${!var}
        [ -z "$value" ] || [ -f "$value" ] || die "${pair%%:*}: $value is not a file on this server (copy it there first, e.g. with scp, then run pulumi up again)"
    done
    [ -z "$ADOPT_MEDIA_STORE" ] || [ -d "$ADOPT_MEDIA_STORE" ] || die "adoptMediaStore: $ADOPT_MEDIA_STORE is not a directory on this server"
    if [ -n "$ADOPT_SIGNING_KEY" ]; then
        grep -Eq '^ed25519 [A-Za-z0-9_]+ [A-Za-z0-9+/=]+$' "$ADOPT_SIGNING_KEY" ||
            die "adoptSigningKey: $ADOPT_SIGNING_KEY is not a Synapse signing key (lines of 'ed25519 <id> <key>')"
    fi
    if [ -n "$ADOPT_SQLITE_DATABASE" ]; then
        local names
        # Read-only, through Python's sqlite3 (the path is an argument, never part of a command).
        names=$(python3 - "$ADOPT_SQLITE_DATABASE" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(db.execute("SELECT count(*) FROM users").fetchone()[0])
for (name,) in db.execute("SELECT name FROM users LIMIT 3"):
    print(name)
PY
        ) || die "adoptSqliteDatabase: $ADOPT_SQLITE_DATABASE is not a readable Synapse SQLite database"
        local other
        other=$(printf '%s\n' "$names" | tail -n +2 | grep -v ":$DOMAIN\$" | head -n 1 || true)
        [ -z "$other" ] || die "adoptSqliteDatabase: the old server's users are like $other, not @...:$DOMAIN; a Matrix server cannot change its name, so domain must be the old server_name"
        log "adopting: the old SQLite database has $(printf '%s\n' "$names" | head -n 1) users"
    fi
    # The old Synapse must be stopped: it would keep writing to what is being copied, and it holds
    # the port this server's Synapse is about to use.
    local holder=
    command -v ss >/dev/null || apt_install iproute2
    holder=$(ss -Hltnp 'sport = :8008' 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2 || true)
    # This program's Synapse runs from /opt/synapse/; anything else on the port is the old server.
    if [ -n "$holder" ] && ! tr '\0' ' ' <"/proc/$holder/cmdline" | grep -q '^/opt/synapse/'; then
        die "adopting: another program (pid $holder: $(tr '\0' ' ' <"/proc/$holder/cmdline" | cut -c1-120)) listens on port 8008; stop the old Synapse first, then run pulumi up again"
    fi
}

# Runs Synapse (the new release, our settings) on the SQLite copy until its background updates are
# done: synapse_port_db refuses to port a database that still has some, and upgrading an old
# server's schema adds them.
adopt_finish_background_updates() {
    local venv=$1 db=$2 override pid
    # Beside ADOPT_WORK, not in it: root writes it, and ADOPT_WORK is synapse's.
    override=$DATA_DIR/adopt-sqlite-override.yaml
    put_file "$override" 640 root:synapse "$(cat <<EOF
database:
  name: sqlite3
  args:
    database: $db
listeners:
  - port: 8009
    type: http
    bind_addresses: ["127.0.0.1"]
    resources: [{names: [client]}]
EOF
)"
    log "adopting: upgrading the SQLite copy with Synapse ${venv##*/} and finishing its background updates"
    runuser -u synapse -- "$venv/bin/python" -m synapse.app.homeserver \
        --config-path /etc/matrix-synapse/homeserver.yaml --config-path /etc/matrix-synapse/conf.d/ \
        --config-path "$override" >"$ADOPT_WORK/sqlite-synapse.log" 2>&1 &
    pid=$!
    local pending=unknown deadline=$((SECONDS + 3600))
    while [ "$SECONDS" -lt "$deadline" ]; do
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$ADOPT_WORK/sqlite-synapse.log" >&2; die "adopting: Synapse stopped while upgrading the SQLite copy (log above)"; }
        if curl -fsS -o /dev/null http://127.0.0.1:8009/health; then
            pending=$(python3 - "$db" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True, timeout=30)
print(db.execute("SELECT count(*) FROM background_updates").fetchone()[0])
PY
            ) || pending=unknown
            [ "$pending" != 0 ] || break
        fi
        sleep 3
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ "$pending" = 0 ] || die "adopting: the SQLite copy still has $pending background updates after an hour (log: $ADOPT_WORK/sqlite-synapse.log)"
}

# An empty synapse database: the one the postgres step made when it has no tables yet; otherwise
# whatever is there (a Synapse started here before, a half-finished earlier attempt) is renamed aside.
adopt_fresh_database() {
    local keep tables
    if [ -n "$(adopt_psql -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'synapse'")" ]; then
        tables=$(adopt_psql -d synapse -c "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        [ "$tables" != 0 ] || return 0
        keep=synapse_before_adopt_$(date -u +%Y%m%d%H%M%S)
        log "adopting: the database here has $tables tables; keeping it as $keep"
        adopt_psql -d postgres -c "ALTER DATABASE synapse RENAME TO $keep"
    fi
    adopt_psql -d postgres -c "CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER synapse"
}

# Whether the database now holds a Synapse of this server's name; $1 says what filled it.
adopt_check_database() {
    local events other
    events=$(adopt_psql -d synapse -c "SELECT count(*) FROM events" 2>/dev/null) || return 1
    other=$(adopt_psql -d synapse -c "SELECT name FROM users LIMIT 1000" | grep -v ":$DOMAIN\$" | head -n 1 || true)
    [ -z "$other" ] || die "adopting: the adopted database has users like $other, not @...:$DOMAIN; a Matrix server cannot change its name, so domain must be the old server_name"
    log "adopting: $1 done: $events events, $(adopt_psql -d synapse -c "SELECT count(*) FROM users") users"
}

# The adoption itself. Synapse must not be running on the database yet (first start) or is stopped.
adopt_run() {
    local venv=$1 syn=$DATA_DIR/synapse
    adopt_wanted || return 0
    local started=$SECONDS
    install -d -m 750 -o synapse -g synapse "$ADOPT_WORK"
    # Whatever a Synapse here has written so far is kept (see adopt_fresh_database), but it must stop.
    systemctl stop matrix-synapse 2>/dev/null || true

    if [ -n "$ADOPT_SIGNING_KEY" ]; then
        if [ -s "$syn/keys/signing.key" ] && ! cmp -s "$ADOPT_SIGNING_KEY" "$syn/keys/signing.key"; then
            mv "$syn/keys/signing.key" "$syn/keys/signing.key.before-adopt-$(date -u +%Y%m%d%H%M%S)"
        fi
        install -m 600 -o synapse -g synapse "$ADOPT_SIGNING_KEY" "$syn/keys/signing.key"
        log "adopting: the old server's signing key $(cut -d' ' -f1,2 "$syn/keys/signing.key" | head -n 1) is this server's key"
    fi

    if [ -n "$ADOPT_SQLITE_DATABASE" ]; then
        # A copy, owned by synapse: synapse_port_db upgrades the SQLite schema in place, and the
        # original stays exactly as the old server left it.
        local copy=$ADOPT_WORK/homeserver.db
        install -m 600 -o synapse -g synapse "$ADOPT_SQLITE_DATABASE" "$copy"
        adopt_finish_background_updates "$venv" "$copy"
        adopt_fresh_database
        log "adopting: porting the SQLite database to PostgreSQL (synapse_port_db)"
        # synapse_port_db reads one config file: ours with conf.d merged in (it parses the whole
        # config, so the secrets files must be there; they are, and readable by synapse).
        local merged=$ADOPT_WORK/port-config.yaml
        runuser -u synapse -- "$venv/bin/python" - /etc/matrix-synapse/homeserver.yaml /etc/matrix-synapse/conf.d "$merged" <<'PY'
import os, sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
for name in sorted(os.listdir(sys.argv[2])):
    if name.endswith(".yaml"):
        config.update(yaml.safe_load(open(os.path.join(sys.argv[2], name))) or {})
with open(os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
    yaml.safe_dump(config, f)
PY
        if ! runuser -u synapse -- "$venv/bin/synapse_port_db" --sqlite-database "$copy" --postgres-config "$merged" >"$ADOPT_WORK/port.log" 2>&1; then
            tail -n 30 "$ADOPT_WORK/port.log" >&2
            die "adoptSqliteDatabase: synapse_port_db failed (above; whole log $ADOPT_WORK/port.log); nothing was deleted, run pulumi up again to retry"
        fi
        adopt_check_database "the port" || die "adoptSqliteDatabase: after synapse_port_db the database has no events table (log $ADOPT_WORK/port.log)"
        rm -f "$copy" "$merged"
    elif [ -n "$ADOPT_POSTGRES_DUMP" ]; then
        adopt_fresh_database
        log "adopting: restoring the PostgreSQL dump"
        # Objects are made as synapse whatever role owned them on the old server; the dump's own
        # ALTER ... OWNER lines fail harmlessly, so the result is checked rather than the exit code.
        if head -c 5 "$ADOPT_POSTGRES_DUMP" | grep -q '^PGDMP'; then
            runuser -u postgres -- pg_restore --no-owner --no-acl --role=synapse -d synapse <"$ADOPT_POSTGRES_DUMP" >"$ADOPT_WORK/restore.log" 2>&1 || true
        else
            runuser -u postgres -- psql -X -q -d synapse -c 'SET ROLE synapse' -f - <"$ADOPT_POSTGRES_DUMP" >"$ADOPT_WORK/restore.log" 2>&1 || true
        fi
        adopt_check_database "the restore" || {
            tail -n 30 "$ADOPT_WORK/restore.log" >&2
            die "adoptPostgresDump: after restoring $ADOPT_POSTGRES_DUMP the database has no events table (above: the end of $ADOPT_WORK/restore.log)"
        }
    fi

    if [ -n "$ADOPT_MEDIA_STORE" ]; then
        command -v rsync >/dev/null || apt_install rsync
        log "adopting: copying the media store ($(du -sh "$ADOPT_MEDIA_STORE" | cut -f1))"
        rsync -a "$ADOPT_MEDIA_STORE/" "$syn/media/"
        chown -R synapse:synapse "$syn/media"
    fi

    {
        echo "adopted $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((SECONDS - started)) s"
        echo "signing key: ${ADOPT_SIGNING_KEY:-(none)}"
        echo "sqlite database: ${ADOPT_SQLITE_DATABASE:-(none)}"
        echo "postgres dump: ${ADOPT_POSTGRES_DUMP:-(none)}"
        echo "media store: ${ADOPT_MEDIA_STORE:-(none)}"
    } >"$ADOPTED_MARKER"
    log "adopting: finished in $((SECONDS - started)) s; recorded in $ADOPTED_MARKER"
}
