#!/bin/bash
# Step "synapse": the Synapse homeserver at exactly SYNAPSE_VERSION, from the package index into its
# own virtualenv, with our configuration, secrets in 0600 files and the signing key on the data
# volume. A new version is installed beside the running one, so the service is down only for the
# restart; the previous virtualenv is kept for a rollback.
# Variables: DOMAIN, DATA_DIR, SYNAPSE_VERSION, PIP_INDEX_URL, HOMESERVER_YAML, LOG_CONFIG_YAML,
# SYNAPSE_UNIT, EXTRA_CONFIG_YAML (may be empty; holds the reCAPTCHA key), and secrets PG_PASSWORD,
# REGISTRATION_SHARED_SECRET, MACAROON_SECRET_KEY, FORM_SECRET; the ADOPT_* ones of adopt.sh.
# shellcheck source=files/scripts/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=files/scripts/adopt.sh
declare -F adopt_run >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/adopt.sh"
: "${DOMAIN:?}" "${DATA_DIR:?}" "${SYNAPSE_VERSION:?}" "${PIP_INDEX_URL:?}" "${HOMESERVER_YAML:?}" "${LOG_CONFIG_YAML:?}" "${SYNAPSE_UNIT:?}"
: "${PG_PASSWORD:?}" "${REGISTRATION_SHARED_SECRET:?}" "${MACAROON_SECRET_KEY:?}" "${FORM_SECRET:?}"
EXTRA_CONFIG_YAML=${EXTRA_CONFIG_YAML:-}

apt_install python3 python3-venv python3-psycopg2 libjemalloc2 libpq5 curl
id synapse >/dev/null 2>&1 || useradd --system --home-dir "$DATA_DIR/synapse" --shell /usr/sbin/nologin synapse
# Adopting an old server: wrong paths or an old Synapse still running fail here, before any download.
adopt_precheck

SYN=$DATA_DIR/synapse
# A new server may give synapse another uid than the one that wrote the files on the volume.
if [ -d "$SYN" ] && [ "$(stat -c %U "$SYN")" != synapse ]; then
    log "taking back ownership of $SYN for this server's synapse user"
    chown -R synapse:synapse "$SYN"
fi
install -d -m 750 -o synapse -g synapse "$SYN" "$SYN/media" "$SYN/keys" "$SYN/secrets"
install -d -m 750 -o synapse -g synapse /var/log/matrix-synapse
install -d -m 755 /etc/matrix-synapse /opt/synapse/venvs

# The new release is installed first, beside the running one: if that fails (the package index
# is down, say), nothing the running Synapse reads has been touched.
# The exact release, in a virtualenv of its own that sees none of Debian's Python packages (certbot
# brings many): pip resolves every dependency from the index alone. psycopg2 is built from source
# there, which needs libpq's headers and a compiler.
VENV=/opt/synapse/venvs/$SYNAPSE_VERSION
if [ ! -f "$VENV/.complete" ]; then
    apt_install build-essential python3-dev libpq-dev
    log "installing Synapse $SYNAPSE_VERSION from $PIP_INDEX_URL"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    pip_args=(--quiet --disable-pip-version-check --no-input --index-url "$PIP_INDEX_URL")
    case $PIP_INDEX_URL in
        http://*)
            host=${PIP_INDEX_URL#http://}
            pip_args+=(--trusted-host "${host%%[:/]*}")
            ;;
    esac
    "$VENV/bin/pip" install "${pip_args[@]}" "matrix-synapse[postgres,url-preview]==$SYNAPSE_VERSION" ||
        die "pip could not install Synapse $SYNAPSE_VERSION from $PIP_INDEX_URL (its error is above); the running Synapse was not touched, run pulumi up again when the index answers"
    touch "$VENV/.complete"
fi
if grep -qx 'include-system-site-packages = true' "$VENV/pyvenv.cfg"; then
    # Built by an earlier version of this program; rebuilding it now would stop Synapse for the
    # whole install. The next synapseVersion bump builds an isolated one beside it.
    log "note: the virtualenv of $SYNAPSE_VERSION still sees Debian's Python packages; the next synapseVersion bump replaces it with an isolated one"
fi
installed=$("$VENV/bin/python" -c 'import synapse; print(synapse.__version__)')
[ "$installed" = "$SYNAPSE_VERSION" ] || die "the virtualenv holds Synapse $installed, not $SYNAPSE_VERSION"

# Secrets: each in its own file, readable by synapse only, referenced by the *_path options.
CHANGED=0
put_file "$SYN/secrets/registration_shared_secret" 600 synapse:synapse "$REGISTRATION_SHARED_SECRET"
put_file "$SYN/secrets/macaroon_secret_key" 600 synapse:synapse "$MACAROON_SECRET_KEY"
put_file "$SYN/secrets/form_secret" 600 synapse:synapse "$FORM_SECRET"
# libpq's password file: ':' and '\' in the password are escaped as its format requires.
pg_escaped=$(printf '%s' "$PG_PASSWORD" | sed -e 's/\\/\\\\/g' -e 's/:/\\:/g')
put_file "$SYN/secrets/pgpass" 600 synapse:synapse "127.0.0.1:5432:synapse:synapse:$pg_escaped"
# An existing machine's own homeserver.yaml (an old installation being adopted) is kept beside ours.
if [ -f /etc/matrix-synapse/homeserver.yaml ] && [ ! -e /etc/matrix-synapse/.managed-by-phillymesh-chat ]; then
    cp -a /etc/matrix-synapse/homeserver.yaml /etc/matrix-synapse/homeserver.yaml.before-phillymesh-chat
    log "kept the homeserver.yaml found here as homeserver.yaml.before-phillymesh-chat"
fi
put_file /etc/matrix-synapse/homeserver.yaml 640 root:synapse "$HOMESERVER_YAML"
touch /etc/matrix-synapse/.managed-by-phillymesh-chat
put_file /etc/matrix-synapse/log.yaml 644 root:root "$LOG_CONFIG_YAML"
install -d -m 750 -o root -g synapse /etc/matrix-synapse/conf.d
# Synapse reads every file in conf.d: one left by an older installation on this machine (Debian's
# package puts server_name.yaml there) would override settings, so it is moved aside, not deleted.
for f in /etc/matrix-synapse/conf.d/*; do
    if [ ! -e "$f" ] || [ "$f" = /etc/matrix-synapse/conf.d/secrets.yaml ]; then continue; fi
    install -d -m 750 /etc/matrix-synapse/conf.d.before-phillymesh-chat
    mv "$f" /etc/matrix-synapse/conf.d.before-phillymesh-chat/
    log "moved ${f##*/} out of conf.d (to /etc/matrix-synapse/conf.d.before-phillymesh-chat/): Synapse would read it"
    CHANGED=1
done
if [ -n "$EXTRA_CONFIG_YAML" ]; then
    put_file /etc/matrix-synapse/conf.d/secrets.yaml 640 root:synapse "$EXTRA_CONFIG_YAML"
else
    rm -f /etc/matrix-synapse/conf.d/secrets.yaml
fi
put_file /etc/systemd/system/matrix-synapse.service 644 root:root "$SYNAPSE_UNIT"
# A restart owed for changed files is remembered until it has happened and Synapse is healthy, so a
# run that fails after writing them does not leave the old settings running for good.
PENDING=/etc/matrix-synapse/.restart-pending
[ "$CHANGED" = 0 ] || touch "$PENDING"

# An old server's key, database and media come in before this server's Synapse first starts.
adopt_run "$VENV"

# The signing key is the server's identity in federation: made once, kept on the volume, never replaced.
if [ ! -s "$SYN/keys/signing.key" ]; then
    log "generating the server's signing key (first start)"
    runuser -u synapse -- "$VENV/bin/python" -m synapse.app.homeserver \
        --config-path /etc/matrix-synapse/homeserver.yaml --config-path /etc/matrix-synapse/conf.d/ \
        --generate-keys >/dev/null
fi
chmod 600 "$SYN/keys/signing.key"

running_venv=$(readlink /opt/synapse/current 2>/dev/null || true)
if [ -n "$running_venv" ] && [ "$running_venv" != "$VENV" ]; then
    # The release being replaced is kept for a rollback (set synapseVersion back).
    switch_symlink "$running_venv" /opt/synapse/previous
fi
switch_symlink "$VENV" /opt/synapse/current
systemctl daemon-reload
systemctl enable --quiet matrix-synapse
if [ "$running_venv" != "$VENV" ] || [ -e "$PENDING" ] || ! systemctl is-active --quiet matrix-synapse; then
    log "restarting Synapse ${running_venv:+(was ${running_venv##*/}) }as $SYNAPSE_VERSION"
    systemctl restart matrix-synapse
fi
wait_http http://127.0.0.1:8008/health 180 || {
    journalctl -u matrix-synapse -n 40 --no-pager >&2 || true
    die "Synapse did not become healthy on 127.0.0.1:8008"
}
rm -f "$PENDING"
running=$(curl -fsS http://127.0.0.1:8008/_matrix/federation/v1/version)
log "Synapse healthy: $running"

# Keep the running and the previous release; drop older ones.
previous=$(readlink /opt/synapse/previous 2>/dev/null || true)
for old in /opt/synapse/venvs/*; do
    [ "$old" = "$VENV" ] || [ "$old" = "$previous" ] || { log "removing old virtualenv ${old##*/}"; rm -rf "$old"; }
done
