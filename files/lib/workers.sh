#!/bin/bash
# Library of the "synapse-workers" step and of its teardown (synapse-workers-off.sh), and of nothing
# else: lib.sh is sent with every step, so a change there would run every step again on upgrade.
# Needs lib.sh (log).
WORKERS_DIR=/etc/matrix-synapse/workers

# remove_worker NAME WHY: stops and disables matrix-synapse-worker@NAME and removes its configuration
# and logging files. Nothing else of it exists on the server (its logs stay, as the main process's do).
remove_worker() {
    local name=$1 why=$2
    log "removing worker $name ($why)"
    systemctl disable --quiet --now "matrix-synapse-worker@$name.service" 2>/dev/null || true
    rm -f "$WORKERS_DIR/$name.yaml" "$WORKERS_DIR/$name.log.yaml"
}

# configured_workers: the names of the workers whose configuration is on the server, one a line.
configured_workers() {
    local f name
    for f in "$WORKERS_DIR"/*.yaml; do
        [ -e "$f" ] || continue
        case $f in *.log.yaml) continue ;; esac
        name=${f##*/}
        printf '%s\n' "${name%.yaml}"
    done
}
