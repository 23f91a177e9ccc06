#!/bin/bash
# Teardown of step "synapse-workers": synapseWorkers went back to 0 (the step left the program) or the
# stack is destroyed. By then the synapse step has put the single-process homeserver.yaml back and
# the sites step routes everything to it again. Stops and disables every worker, removes their
# configuration, the unit template, the status check's worker drop-in and nginx's worker routing. No data.
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
# shellcheck source=files/lib/workers.sh
declare -F remove_worker >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/workers.sh"

for name in $(configured_workers); do remove_worker "$name" "worker mode off"; done
rm -f /etc/systemd/system/matrix-synapse-worker@.service /etc/systemd/system/phillymesh-chat-status.service.d/phillymesh-chat-workers.conf
rmdir /etc/systemd/system/phillymesh-chat-status.service.d 2>/dev/null || true
rmdir /etc/systemd/system/matrix-synapse.service.wants 2>/dev/null || true
systemctl daemon-reload
systemctl reset-failed 'matrix-synapse-worker@*' 2>/dev/null || true

if [ -e /etc/nginx/conf.d/phillymesh-chat-workers.conf ]; then
    rm -f /etc/nginx/conf.d/phillymesh-chat-workers.conf
    if nginx -t 2>/dev/null; then
        systemctl reload nginx
    else
        # Only when the whole stack is being destroyed: the sites that used the routing go with it.
        log "note: nginx still refers to the workers' routing; not reloaded"
    fi
fi
rmdir "$WORKERS_DIR" 2>/dev/null || true
log "workers stopped and removed"
