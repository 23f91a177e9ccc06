#!/bin/bash
# Building Synapse's virtualenv: used by the synapse step (a new release) and, installed on the
# server as /usr/local/lib/phillymesh-chat/venv.sh, by phillymesh-chat-synapse-refresh (the same
# release with newer dependencies). Needs lib.sh (log, die, refuse_symlink).
#
# The virtualenv sees none of Debian's Python packages (certbot brings many): pip resolves every
# dependency from the index alone, except psycopg2. That one has no wheel on the index (only sources,
# which need a compiler and libpq's headers on the server), so the virtualenv sees Debian's
# python3-psycopg2, patched by Debian's security updates, and nothing else of Debian's:
# VENV/debian-psycopg2 holds links to it and its metadata, put on the path by a .pth file, so that
# pip's resolver and Synapse's own dependency check (importlib.metadata) find it.
# pip installs wheels only (no package's build code runs), from an https index only, as the user
# synapse-build (no login, no home, in no group that reads a secret) with a clean environment: no
# step variable, secret or not, reaches it. The virtualenv is synapse-build's while it is built,
# root's before it is marked complete; the synapse user never can write it.
BUILD_USER=synapse-build
BUILD_HOME=/var/cache/synapse-build

# as_builder CMD...: CMD as the build user, in /, with PATH, HOME (its cache), LANG and only what pip
# may need from this host (a CA file, a proxy) in its environment. (setpriv, not runuser: no PAM
# session, which a sandboxed unit refuses.)
as_builder() {
    local keep=() v
    for v in SSL_CERT_FILE SSL_CERT_DIR https_proxy HTTPS_PROXY no_proxy NO_PROXY; do
        [ -z "${!v:-}" ] || keep+=("$v=${!v}")
    done
    (cd / && setpriv --reuid="$BUILD_USER" --regid="$BUILD_USER" --init-groups -- \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$BUILD_HOME" LANG=C.UTF-8 "${keep[@]}" "$@")
}

# psycopg2_links OWNER VENV: VENV/debian-psycopg2 links to Debian's psycopg2 and its metadata, as
# OWNER (builder while the venv is built, root once it is root's). Run each time: a Debian update
# that renames the metadata directory is followed; links already right are left alone.
psycopg2_links() {
    local owner=$1 dir=$2/debian-psycopg2 src=/usr/lib/python3/dist-packages run=() target link
    [ "$owner" = root ] || run=(as_builder)
    [ -d "$src/psycopg2" ] || die "Debian's python3-psycopg2 is not installed ($src/psycopg2 is missing)"
    [ -d "$dir" ] || "${run[@]}" mkdir "$dir"
    for link in "$dir"/*; do
        if [ -L "$link" ] && [ ! -e "$link" ]; then "${run[@]}" rm -f "$link"; fi
    done
    for target in "$src"/psycopg2 "$src"/psycopg2-*.egg-info "$src"/psycopg2-*.dist-info; do
        [ -e "$target" ] || continue
        link=$dir/${target##*/}
        [ "$(readlink "$link" || true)" = "$target" ] || "${run[@]}" ln -sfn "$target" "$link"
    done
}

# build_synapse_venv VENV VERSION INDEX [REQUIREMENT...]: Synapse VERSION (with the postgres and
# url-preview extras), the pinned REQUIREMENTs that run inside Synapse (mediaStorage spaces: the S3
# storage provider), and the newest dependencies their constraints allow, from INDEX, into a new VENV,
# resolved together; VENV/.requirements lists the REQUIREMENTs; marked complete once Synapse's own
# dependency check passes. Returns 1 when pip (or the venv) fails, 2 when the
# check fails (the caller says what that means; VENV is then left unmarked, nothing else touched).
# Every command is checked by hand: callers run it as `build_synapse_venv ... || rc=$?`, where bash
# ignores set -e.
build_synapse_venv() {
    local venv=$1 version=$2 index=$3 site
    local extra=("${@:4}")
    case $index in
        https://*) ;;
        *) die "pipIndexUrl $index is not https://: over plain HTTP anyone on the path could swap Synapse's code" ;;
    esac
    id "$BUILD_USER" >/dev/null 2>&1 ||
        useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$BUILD_USER" || return 1
    refuse_symlink "$BUILD_HOME"
    install -d -m 700 -o "$BUILD_USER" -g "$BUILD_USER" "$BUILD_HOME" || return 1
    rm -rf "$venv"
    install -d -m 755 -o "$BUILD_USER" -g "$BUILD_USER" "$venv" || return 1
    as_builder python3 -m venv "$venv" || return 1
    psycopg2_links "$BUILD_USER" "$venv" || return 1
    site=$(as_builder "$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))') || return 1
    as_builder tee "$site/debian-psycopg2.pth" >/dev/null <<<"$venv/debian-psycopg2" || return 1
    as_builder "$venv/bin/pip" install --isolated --quiet --disable-pip-version-check --no-input --only-binary :all: \
        --cache-dir "$BUILD_HOME/pip" --index-url "$index" "matrix-synapse[postgres,url-preview]==$version" "${extra[@]}" || return 1
    # Synapse's own dependency check (as at its start) and Debian's psycopg2, before the venv is used.
    as_builder "$venv/bin/python" -c 'import psycopg2; from synapse.util.check_dependencies import check_requirements; check_requirements()' ||
        return 2
    printf '%s\n' "${extra[@]}" | grep -v '^$' >"$venv/.requirements" || true
    chown -hR root:root "$venv" && chmod -R go-w "$venv" || return 1
    touch "$venv/.complete"
}

# venv_requirements VENV: the extra requirements VENV was built with, on one line ("" for none, also
# for a virtualenv built before they were recorded).
venv_requirements() {
    paste -sd ' ' "$1/.requirements" 2>/dev/null || true
}

# prune_venvs: keeps the virtualenvs /opt/synapse/current and /opt/synapse/previous point at; the
# older ones go.
prune_venvs() {
    local current previous old
    current=$(readlink /opt/synapse/current 2>/dev/null || true)
    previous=$(readlink /opt/synapse/previous 2>/dev/null || true)
    for old in /opt/synapse/venvs/*; do
        [ "$old" = "$current" ] || [ "$old" = "$previous" ] || { log "removing old virtualenv ${old##*/}"; rm -rf "$old"; }
    done
}

# venv_packages VENV: its distributions as name==version lines, sorted (Debian's psycopg2 included).
venv_packages() {
    as_builder "$1/bin/python" -c 'import importlib.metadata as m; print("\n".join(sorted({f"{d.name.lower().replace(chr(95), chr(45))}=={d.version}" for d in m.distributions()})))'
}
