#!/bin/bash
# Step "synapse-workers" (worker mode, synapseWorkers > 0; runs after the synapse step): each worker's
# configuration and its instance of matrix-synapse-worker@.service, enabled (so it starts with the
# main process), (re)started when its files changed, and checked healthy. Workers no longer declared
# (synapseWorkers lowered) are stopped and their files removed.
# Variables: WORKERS (worker names), WORKER_PORTS (each one's HTTP port, "-" for none), in the same
# order; SYNAPSE_VERSION (so that the step runs again after a bump, which restarts the workers with
# the main process, and waits for them). Files (install_files): the unit template, each worker's configuration and logging
# (synapseWorkers.ts: workerFiles), and the daily status check's drop-in naming them. Library:
# workers.sh (the worker removal this step and its teardown share). Undone by synapse-workers-off.sh.
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
# shellcheck source=files/lib/workers.sh
declare -F remove_worker >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/workers.sh"
: "${WORKERS:?}" "${WORKER_PORTS:?}" "${SYNAPSE_VERSION:?}"

UNIT=/etc/systemd/system/matrix-synapse-worker@.service
read -r -a names <<<"$WORKERS"
read -r -a ports <<<"$WORKER_PORTS"
[ "${#names[@]}" = "${#ports[@]}" ] || die "WORKERS and WORKER_PORTS differ in length"
[ -d "$WORKERS_DIR" ] || die "$WORKERS_DIR is missing: the redis step makes it"
systemctl is-active --quiet matrix-synapse || die "the main Synapse process is not running (journalctl -u matrix-synapse)"

install_files

# Workers this configuration no longer has: stopped, disabled, their files gone.
for name in $(configured_workers); do
    file_declared "$WORKERS_DIR/$name.yaml" || remove_worker "$name" "no longer configured"
done
systemctl daemon-reload

for i in "${!names[@]}"; do
    name=${names[i]}
    unit="matrix-synapse-worker@$name.service"
    systemctl enable --quiet "$unit"
    # A worker the main process's restart is starting again (PartOf) is left to finish.
    state=$(systemctl is-active "$unit" || true)
    if file_changed "$UNIT" "$WORKERS_DIR/$name.yaml" "$WORKERS_DIR/$name.log.yaml" || ! [[ $state =~ ^(active|activating|reloading)$ ]]; then
        log "starting $name"
        systemctl restart "$unit"
    fi
done

# Each worker answers its own /health (the federation sender, which listens nowhere, is running).
for i in "${!names[@]}"; do
    name=${names[i]}
    port=${ports[i]}
    if [ "$port" = - ]; then
        systemctl is-active --quiet "matrix-synapse-worker@$name.service" || {
            journalctl -u "matrix-synapse-worker@$name.service" -n 30 --no-pager >&2 || true
            die "worker $name is not running"
        }
    elif ! wait_http "http://127.0.0.1:$port/health" 180; then
        journalctl -u "matrix-synapse-worker@$name.service" -n 30 --no-pager >&2 || true
        die "worker $name did not become healthy on 127.0.0.1:$port"
    fi
done
log "workers healthy on Synapse $SYNAPSE_VERSION: ${names[*]}"
