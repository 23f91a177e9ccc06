#!/bin/bash
# Step "redis" (worker mode, synapseWorkers > 0; runs before the synapse step): Debian's redis-server
# with this program's configuration (loopback only, a password, nothing on disk), Synapse's Redis
# client libraries (its `redis` extra) beside the virtualenvs, and the two secrets of worker mode
# (the replication secret and Redis's password), made here once and never sent anywhere.
# Variables: DATA_DIR, PIP_INDEX_URL. Files (install_files): the Redis config and the drop-ins of
# redis-server and matrix-synapse (synapseWorkers.ts: redisFiles). Undone by redis-off.sh.
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
# shellcheck source=files/lib/venv.sh
declare -F as_builder >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/venv.sh"
: "${DATA_DIR:?}" "${PIP_INDEX_URL:?}"

WORKERS_DIR=/etc/matrix-synapse/workers
REDIS_LIB=/opt/synapse/redis-lib
STATE=/var/lib/phillymesh-chat
# Synapse's own `redis` extra (its pyproject.toml: txredisapi>=1.4.7, hiredis>=0.3), the client kept
# to the 1.4 series Synapse's lock file pins (1.4.11): with txredisapi 1.6.0 Synapse 1.162 dies at
# start ("'super' object has no attribute 'startedConnecting'", found on the testbed).
REDIS_REQUIREMENTS=("txredisapi>=1.4.7,<1.5" "hiredis>=0.3")

# Redis comes with worker mode and goes with it (redis-off.sh removes the package it installed). A
# redis-server this program did not install may serve something else on this machine: it is not
# taken over.
install -d -m 755 "$STATE"
redis_status=$(dpkg-query -W -f='${Status}' redis-server 2>/dev/null || true)
if [ "$redis_status" != "install ok installed" ]; then
    touch "$STATE/redis-installed-by-workers"
elif [ ! -e "$STATE/redis-installed-by-workers" ]; then
    die "redis-server is already installed on this machine and may serve something else: worker mode would take over its configuration. Remove it (apt-get purge redis-server) or set synapseWorkers to 0"
fi
apt_install redis-server python3 python3-venv
# On a new server this step runs before the synapse step, which makes the same user the same way.
id synapse >/dev/null 2>&1 || useradd --system --home-dir "$DATA_DIR/synapse" --shell /usr/sbin/nologin synapse
refuse_symlink /etc/matrix-synapse "$WORKERS_DIR"
install -d -m 755 -o root -g root /etc/matrix-synapse
install -d -m 750 -o root -g synapse "$WORKERS_DIR"

install_files

# new_secret FILE GROUP: 48 random characters, readable by root and GROUP only; kept once made.
new_secret() {
    local file=$1 group=$2 tmp
    refuse_symlink "$file"
    [ ! -s "$file" ] || return 0
    tmp=$(mktemp "$file.XXXXXX")
    head -c 36 /dev/urandom | base64 | tr -d '\n' >"$tmp"
    chown "root:$group" "$tmp"
    chmod 640 "$tmp"
    mv -f -T "$tmp" "$file"
    log "made $file"
}
new_secret "$WORKERS_DIR/replication_secret" synapse
new_secret "$WORKERS_DIR/redis_password" synapse
# Redis reads its password from its own copy (group redis); base64 holds no space or quote.
password=$(cat "$WORKERS_DIR/redis_password")
put_file /etc/phillymesh-chat/redis-auth.conf 0640 root:redis "requirepass $password"

# Synapse's Redis client, for the python3 the virtualenvs use, built as the virtualenvs are (venv.sh:
# wheels only, https index only, as synapse-build), without dependencies: its one, Twisted, is in
# every Synapse virtualenv. A Synapse bump or the weekly rebuild of the virtualenv keeps it.
stamp="${REDIS_REQUIREMENTS[*]} python$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$(cat "$REDIS_LIB/.complete" 2>/dev/null || true)" != "$stamp" ]; then
    log "installing Synapse's Redis client (${REDIS_REQUIREMENTS[*]}) from $PIP_INDEX_URL"
    id "$BUILD_USER" >/dev/null 2>&1 ||
        useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$BUILD_USER"
    refuse_symlink "$BUILD_HOME" /opt/synapse "$REDIS_LIB"
    install -d -m 700 -o "$BUILD_USER" -g "$BUILD_USER" "$BUILD_HOME"
    install -d -m 755 /opt/synapse
    work=$(mktemp -d /opt/synapse/.redis-lib.XXXXXX)
    cleanup_later "$work"
    chown "$BUILD_USER:$BUILD_USER" "$work"
    chmod 755 "$work"
    as_builder python3 -m venv "$work/pip"
    as_builder "$work/pip/bin/pip" install --isolated --quiet --disable-pip-version-check --no-input --only-binary :all: --no-deps \
        --cache-dir "$BUILD_HOME/pip" --index-url "$PIP_INDEX_URL" --target "$work/lib" "${REDIS_REQUIREMENTS[@]}" ||
        die "pip could not install Synapse's Redis client from $PIP_INDEX_URL (its error is above); nothing running was touched"
    as_builder env PYTHONPATH="$work/lib" python3 -c 'import hiredis' || die "the Redis client's C parser (hiredis) does not load with this python3"
    chown -hR root:root "$work/lib"
    chmod -R go-w "$work/lib"
    printf '%s\n' "$stamp" >"$work/lib/.complete"
    rm -rf "$REDIS_LIB.old"
    [ ! -e "$REDIS_LIB" ] || mv -T "$REDIS_LIB" "$REDIS_LIB.old"
    mv -T "$work/lib" "$REDIS_LIB"
    rm -rf "$REDIS_LIB.old"
fi

systemctl daemon-reload
systemctl enable --quiet redis-server
if file_changed /etc/phillymesh-chat/redis.conf /etc/phillymesh-chat/redis-auth.conf \
    /etc/systemd/system/redis-server.service.d/phillymesh-chat.conf || ! systemctl is-active --quiet redis-server; then
    log "restarting Redis with this program's configuration"
    systemctl restart redis-server
fi
for _ in $(seq 30); do
    [ "$(REDISCLI_AUTH=$password redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" != PONG ] || break
    sleep 1
done
[ "$(REDISCLI_AUTH=$password redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] ||
    die "Redis does not answer on 127.0.0.1:6379 with its password (journalctl -u redis-server)"
[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>&1)" != PONG ] || die "Redis answers without its password"
log "Redis ready on the loopback addresses (no persistence)"
