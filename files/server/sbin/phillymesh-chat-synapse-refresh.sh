#!/bin/bash
# Installed as /usr/local/sbin/phillymesh-chat-synapse-refresh, run weekly by its timer (and by hand).
# Synapse's Python dependencies (Pillow decoding media from any server, cryptography with its own
# OpenSSL, Twisted...) get their security releases the way Debian's packages do, without waiting for
# the next synapseVersion bump: the running release is built again in a new virtualenv beside the
# running one, with the newest dependencies Synapse's own constraints allow (the synapse step's
# builder, venv.sh: wheels only, as synapse-build). When that changes nothing, it is thrown away.
# Otherwise the changed packages are logged, Synapse restarts on the new virtualenv, and goes back to
# the old one if it does not come back healthy. The step keeps a refreshed virtualenv of its release.
set -euo pipefail
STEP_NAME=synapse-refresh
# shellcheck source=files/lib/lib.sh
. /usr/local/lib/phillymesh-chat/lib.sh
# shellcheck source=files/lib/venv.sh
. /usr/local/lib/phillymesh-chat/venv.sh
# shellcheck source=/dev/null
. /etc/phillymesh-chat/synapse-refresh.env
: "${PIP_INDEX_URL:?}"

running=$(readlink /opt/synapse/current) || die "no running Synapse (/opt/synapse/current); run pulumi up first"
version=$("$running/bin/python" -c 'import synapse; print(synapse.__version__)')
new=/opt/synapse/venvs/$version+$(date -u +%Y%m%dT%H%M%SZ)
switched=0
drop_new() { [ "$switched" = 1 ] || rm -rf "$new"; }
trap 'drop_new; on_exit' EXIT

log "building Synapse $version again with the newest dependencies it allows, from $PIP_INDEX_URL"
rc=0
build_synapse_venv "$new" "$version" "$PIP_INDEX_URL" || rc=$?
[ "$rc" = 0 ] || die "the new virtualenv could not be built (exit $rc, above); Synapse keeps running on ${running##*/}"

changes=$(join -j 1 -t ' ' -a 2 -e '(new)' -o '1.2,2.1,2.2' \
    <(venv_packages "$running" | sed 's/==/ /' | sort) <(venv_packages "$new" | sed 's/==/ /' | sort) |
    awk '$1 != $3 { printf "%s %s -> %s, ", $2, $1, $3 }')
if [ -z "$changes" ]; then
    log "Synapse $version's dependencies are the newest its constraints allow; nothing to do"
    exit 0
fi
log "newer releases: ${changes%, }"

switch_symlink "$running" /opt/synapse/previous
switch_symlink "$new" /opt/synapse/current
switched=1
log "restarting Synapse $version on ${new##*/}"
systemctl restart matrix-synapse
if ! wait_http http://127.0.0.1:8008/health 180; then
    log "Synapse did not come back healthy on ${new##*/}: back to ${running##*/}"
    switch_symlink "$running" /opt/synapse/current
    switched=0
    systemctl restart matrix-synapse
    wait_http http://127.0.0.1:8008/health 180 || die "Synapse does not answer on ${running##*/} either: journalctl -u matrix-synapse"
    die "kept ${running##*/}; the refreshed virtualenv was removed"
fi
log "Synapse $version healthy on ${new##*/} (the previous virtualenv, ${running##*/}, is kept for a rollback)"
# The running and the previous virtualenv stay; older ones go (as the step does).
prune_venvs
