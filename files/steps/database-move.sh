#!/bin/bash
# Step "database-move" (database: managed, components/managedDatabase.ts): the managed PostgreSQL made
# ready for Synapse, and the server's local database moved into it once, before Synapse's step
# switches its configuration to the cluster.
#   1. The database `synapse` in the cluster: UTF8, C collation and ctype from template0 (Synapse
#      refuses any other), created by the cluster's admin, with the synapse user allowed to create
#      its tables in it (PostgreSQL 15 and newer give a non-owner nothing in schema public).
#   2. The move, only when the cluster holds no Synapse data yet and the local database does: Synapse
#      stopped, pg_dump of the local database streamed into psql on the cluster as one transaction
#      (nothing written to the volume, which may be the full disk the move is for), over TLS verified
#      against the cluster's CA and its host name, the row counts of the key tables compared. Equal: a marker table records the move and Synapse stays stopped until its step
#      starts it on the cluster. Different (or any failure): what was restored is dropped, Synapse is
#      started again on the local database, and the step fails loudly.
#   3. A re-run with the marker present does nothing: no second dump. A fresh server (no local data)
#      gets the marker at once; Synapse creates its tables in the cluster.
# The local database is never changed or dropped: the operator removes it (README).
# Variables: MANAGED_HOST, MANAGED_PORT, MANAGED_CA, MANAGED_SERVICE_FILE,
# MANAGED_ADMIN_USER, MANAGED_ADMIN_PASSWORD (secret), MANAGED_ADMIN_DB.
# Files (install_files): MANAGED_CA, MANAGED_SERVICE_FILE, and the synapse user's passfile it names.
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
: "${MANAGED_HOST:?}" "${MANAGED_PORT:?}" "${MANAGED_CA:?}" "${MANAGED_SERVICE_FILE:?}"
: "${MANAGED_ADMIN_USER:?}" "${MANAGED_ADMIN_PASSWORD:?}" "${MANAGED_ADMIN_DB:?}"

# The key tables whose row counts must agree after the restore (those Synapse has: older schemas lack some).
KEY_TABLES=(users profiles devices access_tokens rooms room_memberships current_state_events events
    event_json state_groups state_groups_state event_edges receipts_linearized local_media_repository
    e2e_device_keys_json e2e_room_keys)
MARKER=phillymesh_chat_database_move

# pg_dump and psql come with the local PostgreSQL; the client package if they do not.
command -v pg_dump >/dev/null || apt_install postgresql-client
install_files
grep -q -- '-----BEGIN CERTIFICATE-----' "$MANAGED_CA" || die "the cluster's CA ($MANAGED_CA) is not a PEM certificate"

# The admin's password only in a 0600 file of this run, never on argv or in the environment.
work=$(mktemp -d)
cleanup_later "$work"
printf '%s:%s:*:%s:%s\n' "$MANAGED_HOST" "$MANAGED_PORT" "$MANAGED_ADMIN_USER" \
    "$(printf '%s' "$MANAGED_ADMIN_PASSWORD" | sed 's/\\/\\\\/g; s/:/\\:/g')" >"$work/admin.pgpass"
chmod 600 "$work/admin.pgpass"
unset MANAGED_ADMIN_PASSWORD

# Every connection to the cluster: TLS, its certificate checked against the cluster's CA and its name.
admin_psql() {
    PGPASSFILE=$work/admin.pgpass PGSSLMODE=verify-full PGSSLROOTCERT=$MANAGED_CA \
        psql -X -q -tA -v ON_ERROR_STOP=1 -h "$MANAGED_HOST" -p "$MANAGED_PORT" -U "$MANAGED_ADMIN_USER" "$@"
}
# As synapse, through the service file (the same host, CA and verify-full; the synapse user's passfile).
managed_psql() { PGSERVICEFILE=$MANAGED_SERVICE_FILE psql -X -q -tA -v ON_ERROR_STOP=1 "service=synapse" "$@"; }
local_psql() { runuser -u postgres -- psql -X -q -tA -v ON_ERROR_STOP=1 -d synapse "$@"; }

admin_psql -d "$MANAGED_ADMIN_DB" -c 'SELECT 1' >/dev/null ||
    die "cannot reach the managed database at $MANAGED_HOST:$MANAGED_PORT over verified TLS (is the droplet in its firewall? is the CA the cluster's?)"

# The nightly backup dumps the cluster with this server's pg_dump, which refuses a newer server.
client_major=$(pg_dump --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/')
cluster_major=$(admin_psql -d "$MANAGED_ADMIN_DB" -c "SELECT current_setting('server_version_num')::int / 10000")
[ "$cluster_major" -le "$client_major" ] ||
    die "the cluster runs PostgreSQL $cluster_major, newer than this server's pg_dump ($client_major), which the nightly backup uses; DigitalOcean cannot downgrade a cluster: nothing was moved (preview refuses this for the Debian images it knows)"

# 1. The database, C-collated as Synapse requires, and the synapse user's rights in it.
if [ -z "$(admin_psql -d "$MANAGED_ADMIN_DB" -c "SELECT 1 FROM pg_database WHERE datname = 'synapse'")" ]; then
    log "creating the database synapse in the cluster (UTF8, C collation)"
    admin_psql -d "$MANAGED_ADMIN_DB" -c "CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
fi
collation=$(admin_psql -d "$MANAGED_ADMIN_DB" -c "SELECT datcollate || '/' || datctype FROM pg_database WHERE datname = 'synapse'")
[ "$collation" = "C/C" ] ||
    die "the cluster's database synapse has collation $collation; Synapse needs C/C. It was not made by this program: if it holds nothing, drop it (psql as doadmin: DROP DATABASE synapse) and run pulumi up again"
admin_psql -d "$MANAGED_ADMIN_DB" -c "GRANT CONNECT, CREATE, TEMPORARY ON DATABASE synapse TO synapse"
admin_psql -d synapse -c "GRANT ALL ON SCHEMA public TO synapse"

# 2. The move.
# The record that the cluster is Synapse's database now (the note travels as a psql variable, quoted by psql).
mark() {
    managed_psql -v note="$1" -f - <<SQL
CREATE TABLE $MARKER (at timestamptz NOT NULL DEFAULT now(), note text NOT NULL);
INSERT INTO $MARKER (note) VALUES (:'note');
SQL
}
# The local database, kept as it is, stops taking Synapse's connections once the cluster is Synapse's:
# a later switch back to `database: local` must fail loudly, not run Synapse on a copy that stopped at
# the move. Done again by every run (the record's note goes into the database's comment).
close_local() {
    [ -n "$(runuser -u postgres -- psql -X -q -tA -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'synapse'")" ] || return 0
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres -v note="$1" -f - <<'SQL'
REVOKE CONNECT ON DATABASE synapse FROM PUBLIC, synapse;
SELECT format('COMMENT ON DATABASE synapse IS %L', 'phillymesh-chat: Synapse''s database is the managed cluster (' || :'note' || '); this copy is kept until you drop it') \gexec
SQL
}

moved=$(managed_psql -c "SELECT to_regclass('public.$MARKER') IS NOT NULL")
if [ "$moved" = t ]; then
    note=$(managed_psql -c "SELECT note FROM $MARKER ORDER BY at DESC LIMIT 1")
    close_local "$note"
    log "the cluster is Synapse's database already ($note): nothing to move"
    exit 0
fi
managed_tables=$(managed_psql -c "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
if [ "$managed_tables" != 0 ]; then
    # Not this program's doing (every move it makes either ends with the marker or drops what it
    # restored): someone else's data, never overwritten or dropped here.
    die "the cluster's database synapse holds $managed_tables tables but no record of a move: refusing to restore over them. Inspect it (PGSERVICEFILE=$MANAGED_SERVICE_FILE psql service=synapse); if it is a leftover, empty it as doadmin and run pulumi up again"
fi
local_has_synapse=f
if [ -n "$(runuser -u postgres -- psql -X -q -tA -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'synapse'" 2>/dev/null)" ]; then
    local_has_synapse=$(local_psql -c "SELECT to_regclass('public.events') IS NOT NULL")
fi
if [ "$local_has_synapse" != t ]; then
    log "no Synapse data in the local database: Synapse will create its tables in the cluster"
    mark "fresh: nothing to move"
    close_local "fresh: nothing to move"
    exit 0
fi

local_major=$(local_psql -c "SELECT current_setting('server_version_num')::int / 10000")
managed_major=$(managed_psql -c "SELECT current_setting('server_version_num')::int / 10000")
[ "$managed_major" -ge "$local_major" ] ||
    die "the cluster runs PostgreSQL $managed_major, older than the local $local_major: a dump does not go back a version. Set managedDatabaseVersion to $local_major or newer (a new cluster)"

counts() {
    local run=$1 t
    for t in "${KEY_TABLES[@]}"; do
        if [ "$(local_psql -c "SELECT to_regclass('public.$t') IS NOT NULL")" = t ]; then
            printf '%s %s\n' "$t" "$("$run" -c "SELECT count(*) FROM public.$t")"
        fi
    done
}

synapse_was_active=0
systemctl is-active --quiet matrix-synapse && synapse_was_active=1
restored=0
# On any failure from here: drop what was restored (the cluster held nothing before), start Synapse
# again on the local database it never left, and fail.
back_to_local() {
    if [ "$restored" = 1 ]; then
        managed_psql -c "DROP OWNED BY synapse" >/dev/null 2>&1 || printf '[%s] could not drop the restored tables: empty the cluster database before trying again\n' "$STEP_NAME" >&2
    fi
    if [ "$synapse_was_active" = 1 ]; then
        systemctl start matrix-synapse || true
    fi
    printf '[%s] the move did not happen: Synapse stays on the local database\n' "$STEP_NAME" >&2
}
# (errexit off inside: lib.sh's on_exit, which removes the admin's passfile, must run whatever happens.)
trap 'rc=$?; set +e; [ "$rc" = 0 ] || back_to_local; (exit "$rc"); on_exit' EXIT

# Nothing may write while the dump is made: Synapse and its workers (PartOf the main unit) stop.
log "stopping Synapse for the move"
systemctl stop matrix-synapse
log "copying the local database ($(local_psql -c "SELECT pg_size_pretty(pg_database_size('synapse'))")) into the cluster: one transaction over verified TLS"
restored=1
# Objects are created by (so owned by) the cluster's synapse user; a failure anywhere, pg_dump's
# included (pipefail), rolls the whole transaction back.
runuser -u postgres -- pg_dump --no-owner --no-privileges synapse |
    managed_psql --single-transaction -o /dev/null -f -

local_counts=$(counts local_psql)
managed_counts=$(counts managed_psql)
if [ "$local_counts" != "$managed_counts" ]; then
    diff <(printf '%s\n' "$local_counts") <(printf '%s\n' "$managed_counts") >&2 || true
    die "row counts differ between the local database (<) and the cluster (>)"
fi
note="moved from the local database on $(hostname) at $(date -u +%FT%TZ): $(printf '%s' "$local_counts" | tr '\n' ',' | sed 's/,$//')"
mark "$note"
# From here the cluster is Synapse's database: nothing is dropped, Synapse is not started on local.
restored=0
synapse_was_active=0
close_local "$note"
log "moved: $(printf '%s' "$local_counts" | tr '\n' ' '); Synapse starts on the cluster in its own step. The local database is kept (README: removing it)"
