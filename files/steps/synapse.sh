#!/bin/bash
# Step "synapse": the Synapse homeserver at exactly SYNAPSE_VERSION, from the package index into its
# own virtualenv, with our configuration, secrets in 0600 files and the signing key on the data
# volume. A new version is installed beside the running one, so the service is down only for the
# restart; the previous virtualenv is kept for a rollback.
# Variables: DOMAIN, DATA_DIR, SYNAPSE_VERSION, PIP_INDEX_URL; the ADOPT_* ones of adopt.sh;
# SYNAPSE_REQUIREMENTS (optional: pinned packages installed into the virtualenv with Synapse,
# space-separated; mediaStorage spaces: the S3 storage provider).
# Files (install_files): homeserver.yaml, log.yaml, conf.d/secrets.yaml (only with reCAPTCHA), the
# unit, and the secrets under DATA_DIR/synapse/secrets (synapse.ts: synapseFiles).
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
# shellcheck source=files/lib/adopt.sh
declare -F adopt_run >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/adopt.sh"
: "${DOMAIN:?}" "${DATA_DIR:?}" "${SYNAPSE_VERSION:?}" "${PIP_INDEX_URL:?}" "${ADVISORY_AUDIT:?}"

apt_install python3 python3-venv python3-psycopg2 libjemalloc2 libpq5 curl
id synapse >/dev/null 2>&1 || useradd --system --home-dir "$DATA_DIR/synapse" --shell /usr/sbin/nologin synapse
# Adopting an old server: wrong paths or an old Synapse still running fail here, before any download.
adopt_precheck

SYN=$DATA_DIR/synapse
# Root writes the secrets and the adoption record below $SYN, so $SYN and secrets/ are root's
# (group synapse, which reads them); media/ and keys/ are synapse's, written by Synapse itself.
# Servers set up before this layout change owner in place. Nothing here follows a symlink.
refuse_symlink "$SYN" "$SYN/media" "$SYN/keys" "$SYN/secrets"
# A new server may give synapse another uid than the one that wrote the files on the volume.
if [ -d "$SYN/media" ] && [ "$(stat -c %U "$SYN/media")" != synapse ]; then
    log "taking back ownership of $SYN for this server's synapse user"
    chown -R synapse:synapse "$SYN"
fi
install -d -m 750 -o root -g synapse "$SYN"
refuse_symlink "$SYN/media" "$SYN/keys" "$SYN/secrets"
install -d -m 750 -o synapse -g synapse "$SYN/media" "$SYN/keys"
install -d -m 750 -o root -g synapse "$SYN/secrets"
refuse_symlink /var/log/matrix-synapse
install -d -m 750 -o synapse -g synapse /var/log/matrix-synapse
# Root's, even where an older installation gave it to its own user: root writes the config there.
refuse_symlink /etc/matrix-synapse
install -d -m 755 -o root -g root /etc/matrix-synapse
install -d -m 755 /opt/synapse/venvs

# The new release is installed first, beside the running one: if that fails (the package index
# is down, say), nothing the running Synapse reads has been touched.
# The exact release, in a virtualenv of its own (venv.sh: wheels only, as synapse-build, root's
# once complete). A virtualenv refreshed on this server since (phillymesh-chat-synapse-refresh: the
# same release, newer dependencies) is the one kept running.
VENV=/opt/synapse/venvs/$SYNAPSE_VERSION
refreshed=$(readlink /opt/synapse/current 2>/dev/null || true)
case ${refreshed##*/} in
    "$SYNAPSE_VERSION"+*) [ ! -f "$refreshed/.complete" ] || VENV=$refreshed ;;
esac
# Packages that run inside Synapse (the S3 storage provider) are part of its virtualenv: one built
# without them (or with others) is replaced by a new one beside it, as a refresh would be.
read -r -a REQUIREMENTS <<<"${SYNAPSE_REQUIREMENTS:-}"
if [ -f "$VENV/.complete" ] && [ "$(venv_requirements "$VENV")" != "${REQUIREMENTS[*]}" ]; then
    log "the virtualenv ${VENV##*/} holds '$(venv_requirements "$VENV")', not '${REQUIREMENTS[*]}': building a new one beside it"
    VENV=/opt/synapse/venvs/$SYNAPSE_VERSION+$(date -u +%Y%m%dT%H%M%SZ)
fi
case $PIP_INDEX_URL in
    https://*) ;;
    *) die "pipIndexUrl $PIP_INDEX_URL is not https://: over plain HTTP anyone on the path could swap Synapse's code" ;;
esac
if [ ! -f "$VENV/.complete" ]; then
    log "installing Synapse $SYNAPSE_VERSION from $PIP_INDEX_URL (wheels only, as $BUILD_USER)"
    rc=0
    build_synapse_venv "$VENV" "$SYNAPSE_VERSION" "$PIP_INDEX_URL" "${REQUIREMENTS[@]}" || rc=$?
    [ "$rc" != 1 ] || die "pip could not install Synapse $SYNAPSE_VERSION from $PIP_INDEX_URL, wheels only (its error is above); the running Synapse was not touched, run pulumi up again when the index answers"
    [ "$rc" = 0 ] || die "the new virtualenv of Synapse $SYNAPSE_VERSION fails Synapse's dependency check (above); the running Synapse was not touched"
elif [ -d "$VENV/debian-psycopg2" ]; then
    psycopg2_links root "$VENV"
fi
if grep -qx 'include-system-site-packages = true' "$VENV/pyvenv.cfg"; then
    # Built by an earlier version of this program; rebuilding it now would stop Synapse for the
    # whole install. The next synapseVersion bump builds an isolated one beside it.
    log "note: the virtualenv of $SYNAPSE_VERSION still sees Debian's Python packages; the next synapseVersion bump replaces it with an isolated one"
fi
installed=$("$VENV/bin/python" -c 'import synapse; print(synapse.__version__)')
[ "$installed" = "$SYNAPSE_VERSION" ] || die "the virtualenv holds Synapse $installed, not $SYNAPSE_VERSION"

# An existing machine's own homeserver.yaml (an old installation being adopted) is kept beside ours.
if [ -f /etc/matrix-synapse/homeserver.yaml ] && [ ! -e /etc/matrix-synapse/.managed-by-phillymesh-chat ]; then
    cp -a /etc/matrix-synapse/homeserver.yaml /etc/matrix-synapse/homeserver.yaml.before-phillymesh-chat
    log "kept the homeserver.yaml found here as homeserver.yaml.before-phillymesh-chat"
fi
CHANGED=0
refuse_symlink /etc/matrix-synapse/conf.d
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
# Only now, with the new release built: a failed pip install above touched nothing Synapse reads.
install_files
touch /etc/matrix-synapse/.managed-by-phillymesh-chat
if ! file_declared /etc/matrix-synapse/conf.d/secrets.yaml && [ -e /etc/matrix-synapse/conf.d/secrets.yaml ]; then
    rm -f /etc/matrix-synapse/conf.d/secrets.yaml
    CHANGED=1
fi
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
# As synapse, whose file it is: root never follows what synapse could have put there.
refuse_symlink "$SYN/keys/signing.key"
runuser -u synapse -- chmod 600 "$SYN/keys/signing.key"

running_venv=$(readlink /opt/synapse/current 2>/dev/null || true)
if [ -n "$running_venv" ] && [ "$running_venv" != "$VENV" ]; then
    # The release being replaced is kept for a rollback (set synapseVersion back).
    switch_symlink "$running_venv" /opt/synapse/previous
fi
switch_symlink "$VENV" /opt/synapse/current
systemctl daemon-reload
systemctl enable --quiet matrix-synapse
# Synapse's dependencies get their security releases weekly (phillymesh-chat-synapse-refresh), and
# within a day of an advisory against one of them (phillymesh-chat-advisory-audit, unless
# advisoryFeedUrl is empty).
systemctl enable --quiet --now phillymesh-chat-synapse-refresh.timer
if [ "$ADVISORY_AUDIT" = on ]; then
    systemctl enable --quiet --now phillymesh-chat-advisory-audit.timer
else
    systemctl disable --quiet --now phillymesh-chat-advisory-audit.timer
fi
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
prune_venvs
