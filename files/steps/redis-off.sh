#!/bin/bash
# Teardown of step "redis": synapseWorkers went back to 0 (the step left the program) or the stack
# is destroyed. Runs after the synapse step has put the single-process homeserver.yaml back. Stops
# Redis and removes everything the step made: its configuration, the drop-ins, Synapse's Redis client,
# the worker-mode secrets and the redis-server package it installed. No data.
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"

STATE=/var/lib/phillymesh-chat
# Only a Redis worker mode installed (redis.sh refuses to take over another one).
if [ -e "$STATE/redis-installed-by-workers" ]; then
    systemctl disable --quiet --now redis-server 2>/dev/null || true
fi
rm -f /etc/systemd/system/redis-server.service.d/phillymesh-chat.conf \
    /etc/systemd/system/matrix-synapse.service.d/phillymesh-chat-workers.conf \
    /etc/phillymesh-chat/redis.conf /etc/phillymesh-chat/redis-auth.conf \
    /etc/matrix-synapse/workers/replication_secret /etc/matrix-synapse/workers/redis_password
rmdir /etc/systemd/system/redis-server.service.d /etc/systemd/system/matrix-synapse.service.d 2>/dev/null || true
rmdir /etc/matrix-synapse/workers 2>/dev/null || true
rm -rf /opt/synapse/redis-lib
systemctl daemon-reload
if [ -e "$STATE/redis-installed-by-workers" ]; then
    log "removing redis-server (this program installed it for the workers)"
    apt_get purge -y redis-server >/dev/null
    rm -f "$STATE/redis-installed-by-workers"
fi
log "Redis stopped and its configuration removed; Synapse runs as one process"
