#!/bin/bash
# Step "housekeeping": the nightly database housekeeping (housekeeping.ts): its program, unit and
# timer, per-table autovacuum settings for Synapse's busiest tables, and, with COMPRESSOR=on,
# synapse_auto_compressor COMPRESSOR_VERSION in a virtualenv of its own (wheels only, from an https
# index, built as synapse-build by venv.sh, root's once complete). It runs after the synapse step, so
# nothing here can stop Synapse; the compressor itself is never started here, only its timer.
# DATABASE=managed (issue 14): the table settings go to the cluster (as synapse, through libpq's
# service file MANAGED_SERVICE_FILE, after the move step), and the compressor is not installed: it
# would connect to the cluster without verifying its certificate (housekeeping.ts), so the unit skips it.
# Variables: DATA_DIR, COMPRESSOR (on|off), COMPRESSOR_VERSION, PIP_INDEX_URL, TABLE_SETTINGS (SQL),
# DATABASE (local|managed), MANAGED_SERVICE_FILE (with managed), INDEX_REBUILD (on|off: what the
# unit does, for the last line only).
# Files (install_files): the program, the service and the timer (housekeeping.ts: housekeepingFiles).
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
# shellcheck source=files/lib/venv.sh
declare -F as_builder >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/venv.sh"
: "${DATA_DIR:?}" "${COMPRESSOR:?}" "${COMPRESSOR_VERSION:?}" "${PIP_INDEX_URL:?}" "${TABLE_SETTINGS:?}" "${DATABASE:?}" "${INDEX_REBUILD:?}"
[ "$DATABASE" = local ] || : "${MANAGED_SERVICE_FILE:?}"

ROOT=/opt/synapse-auto-compressor
VENV=$ROOT/venvs/$COMPRESSOR_VERSION

# compressor_works VENV: the release's module imports and has the function the program calls (a
# wheel like 0.1.4's, an empty stub, fails here rather than at night).
compressor_works() {
    as_builder "$1/bin/python" -I -c 'import synapse_auto_compressor as c; assert callable(c.compress_state_events_table)' 2>/dev/null
}

# build_compressor_venv VENV VERSION INDEX: the compressor's wheel alone (it has no dependencies) in a
# new VENV, checked, root's, marked complete. Returns non-zero on any failure (VENV left unmarked).
build_compressor_venv() {
    local venv=$1 version=$2 index=$3
    id "$BUILD_USER" >/dev/null 2>&1 ||
        useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$BUILD_USER" || return 1
    refuse_symlink "$BUILD_HOME" "$ROOT" "$ROOT/venvs"
    install -d -m 700 -o "$BUILD_USER" -g "$BUILD_USER" "$BUILD_HOME" || return 1
    install -d -m 755 -o root -g root "$ROOT" "$ROOT/venvs" || return 1
    rm -rf "$venv"
    install -d -m 755 -o "$BUILD_USER" -g "$BUILD_USER" "$venv" || return 1
    as_builder python3 -m venv "$venv" || return 1
    as_builder "$venv/bin/pip" install --isolated --quiet --disable-pip-version-check --no-input --only-binary :all: --no-deps \
        --cache-dir "$BUILD_HOME/pip" --index-url "$index" "synapse-auto-compressor==$version" || return 1
    compressor_works "$venv" || return 2
    chown -hR root:root "$venv" && chmod -R go-w "$venv" || return 1
    touch "$venv/.complete"
}

apt_install python3 python3-venv postgresql-client
install_files
systemctl daemon-reload

if [ "$COMPRESSOR" = on ] && [ "$DATABASE" = local ]; then
    case $PIP_INDEX_URL in
        https://*) ;;
        *) die "pipIndexUrl $PIP_INDEX_URL is not https://: over plain HTTP anyone on the path could swap the compressor's code" ;;
    esac
    # A virtualenv found broken (a file lost, a Python upgrade under it) is built again.
    if [ -f "$VENV/.complete" ] && ! compressor_works "$VENV"; then
        log "the virtualenv of synapse-auto-compressor $COMPRESSOR_VERSION does not import: building it again"
        rm -f "$VENV/.complete"
    fi
    if [ ! -f "$VENV/.complete" ]; then
        log "installing synapse-auto-compressor $COMPRESSOR_VERSION from $PIP_INDEX_URL (wheel only, as $BUILD_USER)"
        rc=0
        build_compressor_venv "$VENV" "$COMPRESSOR_VERSION" "$PIP_INDEX_URL" || rc=$?
        [ "$rc" != 2 ] || die "synapse-auto-compressor $COMPRESSOR_VERSION installs but does not work (no compress_state_events_table): choose another stateCompressorVersion; Synapse was not touched"
        [ "$rc" = 0 ] || die "pip could not install synapse-auto-compressor $COMPRESSOR_VERSION from $PIP_INDEX_URL (its error is above); Synapse was not touched, run pulumi up again when the index answers, or set stateCompressor false"
    fi
    switch_symlink "$VENV" "$ROOT/current"
    for old in "$ROOT"/venvs/*; do
        [ "$old" = "$VENV" ] || { log "removing the compressor's old virtualenv ${old##*/}"; rm -rf "$old"; }
    done
else
    # Off, or not run (database managed): the compressor goes; its tables in the database stay (a
    # later run picks up from them).
    if [ -e "$ROOT" ]; then
        rm -rf "$ROOT"
        if [ "$COMPRESSOR" = on ]; then
            log "database is managed: removed synapse-auto-compressor, which is not run against the cluster"
        else
            log "stateCompressor is off: removed synapse-auto-compressor"
        fi
    fi
fi

# Per-table autovacuum settings for Synapse's busiest tables (housekeeping.ts: HOT_TABLES); a table
# Synapse has not made is skipped. Locally as postgres, which may alter tables it does not own; on
# the cluster as synapse, which owns them there (the move restores them as synapse, and a fresh
# Synapse creates them as synapse), over TLS verified against the cluster's CA (the service file).
if [ "$DATABASE" = managed ]; then
    PGSERVICEFILE=$MANAGED_SERVICE_FILE psql -X -q -v ON_ERROR_STOP=1 "service=synapse" <<<"$TABLE_SETTINGS"
else
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d synapse <<<"$TABLE_SETTINGS"
fi

systemctl enable --quiet --now phillymesh-chat-db-housekeeping.timer
# What the nightly run does, in one line.
what=report
[ "$INDEX_REBUILD" = off ] || what="$what, index rebuilds of the busiest tables once doubled"
if [ "$COMPRESSOR" = off ]; then
    what="$what (stateCompressor is off)"
elif [ "$DATABASE" = managed ]; then
    what="$what (the state compressor is not run against the cluster: it does not verify the cluster's TLS certificate)"
else
    what="$what and state compression (synapse-auto-compressor $COMPRESSOR_VERSION)"
fi
where=
[ "$DATABASE" = local ] || where=" of the managed cluster"
log "nightly database housekeeping$where: $what; journalctl -u phillymesh-chat-db-housekeeping"
