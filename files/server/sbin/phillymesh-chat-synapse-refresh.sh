#!/bin/bash
# Installed as /usr/local/sbin/phillymesh-chat-synapse-refresh. Synapse's Python dependencies (Pillow
# decoding media from any server, cryptography with its own OpenSSL, Twisted...) get their security
# releases the way Debian's packages do, without waiting for the next synapseVersion bump.
#
#   phillymesh-chat-synapse-refresh               weekly (its timer) and by hand: refresh
#   phillymesh-chat-synapse-refresh --if-advised  daily (phillymesh-chat-advisory-audit.timer):
#                                                 refresh only when an advisory is published against
#                                                 a package of the running virtualenv
#
# Advisories come from the PyPI JSON API at ADVISORY_FEED_URL (advisories.py). A refresh builds the
# running release again in a new virtualenv beside the running one, with the newest dependencies
# Synapse's own constraints allow (the synapse step's builder, venv.sh: wheels only, as
# synapse-build). When that changes nothing, it is thrown away. Otherwise the changed packages are
# logged, Synapse restarts on the new virtualenv, and goes back to the old one if it does not come
# back healthy. The step keeps a refreshed virtualenv of its release.
# An advisory still in force at the end (no fixed release within Synapse's constraints, or against
# Synapse itself: a synapseVersion bump) is logged as an error and the job fails, so that it shows in
# `systemctl --failed` until it is dealt with.
set -euo pipefail
STEP_NAME=synapse-refresh
# shellcheck source=files/lib/lib.sh
. /usr/local/lib/phillymesh-chat/lib.sh
# shellcheck source=files/lib/venv.sh
. /usr/local/lib/phillymesh-chat/venv.sh
# shellcheck source=/dev/null
. /etc/phillymesh-chat/synapse-refresh.env
: "${PIP_INDEX_URL:?}"
ADVISORY_FEED_URL=${ADVISORY_FEED_URL:-}
# Pinned packages that run inside Synapse (mediaStorage spaces: the S3 storage provider), rebuilt with it.
read -r -a REQUIREMENTS <<<"${SYNAPSE_REQUIREMENTS:-}"

case ${1:-} in
    "") if_advised=0 ;;
    --if-advised) if_advised=1 ;;
    *) die "usage: phillymesh-chat-synapse-refresh [--if-advised]" ;;
esac

running=$(readlink /opt/synapse/current) || die "no running Synapse (/opt/synapse/current); run pulumi up first"
version=$("$running/bin/python" -c 'import synapse; print(synapse.__version__)')

# audit VENV: the advisories in force against VENV's packages, a tab-separated line each (NAME
# VERSION ID FIXED_IN LINK); returns 1 when the feed could not be read.
audit() {
    local rc=0
    as_builder "$1/bin/python" /usr/local/lib/phillymesh-chat/advisories.py "$ADVISORY_FEED_URL" || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || return 1
}

# unresolved LINES: says, for each advisory still in force, what would resolve it; then fails.
unresolved() {
    local name pkg_version id fixed link n=0
    while IFS=$'\t' read -r name pkg_version id fixed link; do
        n=$((n + 1))
        if [ "$name" = matrix-synapse ]; then
            log "ERROR: advisory $id against Synapse $pkg_version itself (fixed in ${fixed//,/, }; $link):" \
                "set synapseVersion to a fixed release in the stack config and run pulumi up"
        else
            log "ERROR: advisory $id against $name $pkg_version (fixed in ${fixed//,/, }; $link):" \
                "no fixed release is allowed by Synapse $version's own constraints; a newer synapseVersion may allow one"
        fi
    done <<<"$1"
    die "$n advisor$([ "$n" = 1 ] && echo y || echo ies) still in force against Synapse's virtualenv (above)"
}

found=""
if [ -z "$ADVISORY_FEED_URL" ]; then
    [ "$if_advised" = 0 ] || die "advisoryFeedUrl is empty: the advisory audit is off"
elif found=$(audit "$running"); then
    if [ -n "$found" ]; then
        while IFS=$'\t' read -r name pkg_version id fixed link; do
            log "advisory $id against $name $pkg_version, fixed in ${fixed//,/, } ($link)"
        done <<<"$found"
        # Against Synapse alone, a rebuild of the same release cannot help.
        if [ "$if_advised" = 1 ] && ! grep -qv $'^matrix-synapse\t' <<<"$found"; then
            unresolved "$found"
        fi
    elif [ "$if_advised" = 1 ]; then
        log "no published advisory against Synapse $version's virtualenv (${running##*/}); nothing to do"
        exit 0
    fi
else
    [ "$if_advised" = 0 ] || die "the advisory feed $ADVISORY_FEED_URL could not be read (above); try again later"
    log "the advisory feed $ADVISORY_FEED_URL could not be read (above); refreshing all the same"
fi

new=/opt/synapse/venvs/$version+$(date -u +%Y%m%dT%H%M%SZ)
switched=0
drop_new() { [ "$switched" = 1 ] || rm -rf "$new"; }
trap 'drop_new; on_exit' EXIT

log "building Synapse $version again with the newest dependencies it allows, from $PIP_INDEX_URL"
rc=0
build_synapse_venv "$new" "$version" "$PIP_INDEX_URL" "${REQUIREMENTS[@]}" || rc=$?
[ "$rc" = 0 ] || die "the new virtualenv could not be built (exit $rc, above); Synapse keeps running on ${running##*/}"

changes=$(join -j 1 -t ' ' -a 2 -e '(new)' -o '1.2,2.1,2.2' \
    <(venv_packages "$running" | sed 's/==/ /' | sort) <(venv_packages "$new" | sed 's/==/ /' | sort) |
    awk '$1 != $3 { printf "%s %s -> %s, ", $2, $1, $3 }')
if [ -z "$changes" ]; then
    log "Synapse $version's dependencies are the newest its constraints allow; nothing to do"
    [ -z "$found" ] || unresolved "$found"
    exit 0
fi
log "newer releases: ${changes%, }"

remaining=$found
if [ -n "$ADVISORY_FEED_URL" ]; then
    remaining=$(audit "$new") || { log "the advisory feed could not be read for the new virtualenv"; remaining=$found; }
fi

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
if [ -n "$found" ]; then
    resolved=$(comm -23 <(cut -f3 <<<"$found" | sort -u) <(cut -f3 <<<"$remaining" | sort -u) | paste -sd ' ')
    [ -z "$resolved" ] || log "no longer affected by: $resolved"
fi
[ -z "$remaining" ] || unresolved "$remaining"
