#!/bin/bash
# The end-to-end checks against a server in worker mode (issue 14): a guest of its own with 2 GiB
# ("workers", 10.250.0.77, hosting existing, synapseWorkers 2), deployed from nothing by this program
# through the real engine, then
#   - tests/e2e (client, Element stand-in, federation with nycmesh.test, up's health, the bump) with
#     the worker server as server 0 and the testbed's nycmesh as server 1: E2E_CONFIG names their
#     e2e file, TESTBED_SERVERS the pair for the preview and the bump (testbed.sh);
#   - tests/drills/workers.ts (WORKERS_PROOF=on) after the bump: each process serving its share, seen
#     in its own log, and the daily status check's worker-mode checks (a worker stopped and started);
#   - synapseWorkers back to 0 and WORKERS_PROOF=off: no worker unit, Redis, routing or drop-in left,
#     the main process serving everything, the rooms of worker mode intact;
# and the guest, its stack, DNS records and files removed again (--keep leaves them up).
#
#   flock -o /var/tmp/phillymesh-testbed.lock bash testbed/workers-e2e.sh [--keep]
#
# Needs the testbed up (testbed.sh up: nycmesh.test deployed, host services running). Settings:
# WORKERS_GUEST (workers), WORKERS_IP (10.250.0.77), WORKERS_MEM (2G), WORKERS_COUNT (2).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=testbed/lib.sh
. "$HERE/lib.sh"
export TESTBED_DIR=$B
export PATH="$REPO/node_modules/.bin:$PATH"
NAME=${WORKERS_GUEST:-workers}
IP=${WORKERS_IP:-10.250.0.77}
MEM=${WORKERS_MEM:-2G}
COUNT=${WORKERS_COUNT:-2}
PEER=nycmesh:10.250.0.11:debian:existing
E2E=$B/e2e-$NAME.json
STACK=$B/stacks/$NAME.json
keep=0
[ "${1:-}" != --keep ] || keep=1

T0=$(date +%s)
say() { printf '[workers-e2e +%ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
deploy() { (cd "$REPO" && ts-node --transpile-only testbed/deploy/deploy.ts "$@"); }
running() { [ -f "$B/run-$1/supervise.pid" ] && proc_running "$(cat "$B/run-$1/supervise.pid")"; }

if ! [ -s "$B/stacks/nycmesh.outputs.json" ] || ! running nycmesh; then
    say "nycmesh.test is not up: run testbed/testbed.sh up first"
    exit 1
fi
PULUMI_ENGINE_DIR=$(bash "$REPO/scripts/engine.sh" --partial 2>"$B/log/engine.log" | tail -n 1) ||
    { cat "$B/log/engine.log" >&2; exit 1; }
export PULUMI_ENGINE_DIR

# shellcheck disable=SC2317 # run by the trap
cleanup() {
    [ "$keep" = 0 ] || { say "kept: guest $NAME ($IP), stack $NAME, $E2E"; return; }
    say "removing guest $NAME, its stack, records and files"
    bash "$HERE/destroy.sh" "$NAME" --wipe-data >/dev/null 2>&1 || true
    # The guest is gone: forget the state rather than run the steps' teardowns against nothing.
    deploy forget --stack "$NAME" >/dev/null 2>&1 || true
    bash "$HERE/dns-load.sh" --remove "$NAME" >/dev/null 2>&1 || true
    rm -f "$STACK" "$B/stacks/$NAME".* "$B/secrets/$NAME.json" "$E2E"
}
trap cleanup EXIT

say "guest $NAME at $IP, memory $MEM"
if ! running "$NAME"; then
    [ ! -d "$B/run-$NAME" ] || bash "$HERE/destroy.sh" "$NAME" >/dev/null
    bash "$HERE/boot.sh" "$NAME" "$IP" "$MEM" | tail -n 1
fi
server_id=$(bash "$HERE/tssh" "root@$IP" cat /etc/machine-id)
(umask 077 && node "$HERE/lib/stackConfig.ts" write --name "$NAME" --hosting existing --ip "$IP" --user root \
    --server-id "$server_id" --synapse "${SYNAPSE_VERSION:-1.162.0}" --element "${ELEMENT_VERSION:-1.11.998}" \
    --peer nycmesh.test >"$STACK.new")
mv -f "$STACK.new" "$STACK"
node "$HERE/lib/stackConfig.ts" set "$STACK" "synapseWorkers=$COUNT"
# Every process's pool (main, COUNT generic workers, the federation sender, the media worker; 3
# connections each by default) and 3 more: the config check refuses less.
node "$HERE/lib/stackConfig.ts" set "$STACK" "postgresMaxConnections=$((3 * (COUNT + 3) + 3))"

say "pulumi up of $NAME (synapseWorkers $COUNT)"
deploy up --stack "$NAME" --config "$STACK" --dns-hook "bash $HERE/dns-load.sh - $NAME" 2>&1 |
    sed -u "s/^/[$NAME] /" >"$B/log/up-$NAME.log" ||
    { tail -n 40 "$B/log/up-$NAME.log" >&2; say "pulumi up of $NAME FAILED (log $B/log/up-$NAME.log)"; exit 1; }
say "deployed"
deploy outputs --stack "$NAME" >"$B/stacks/$NAME.outputs.json"
(umask 077 && node "$HERE/lib/e2eConfig.ts" write "$NAME" root nycmesh debian >"$E2E")

# The peer at this checkout's program too: the e2e preview expects no change on either stack.
say "nycmesh.test at this checkout's program"
deploy up --stack nycmesh --config "$B/stacks/nycmesh.json" 2>&1 | sed -u "s/^/[nycmesh] /" >"$B/log/up-nycmesh-for-$NAME.log" ||
    { tail -n 40 "$B/log/up-nycmesh-for-$NAME.log" >&2; say "pulumi up of nycmesh FAILED"; exit 1; }

say "end-to-end checks against $NAME.test (and nycmesh.test)"
status=0
(cd "$REPO" && E2E_CONFIG=$E2E TESTBED_SERVERS="$NAME:$IP:root:existing $PEER" TESTBED_E2E_FILE=$E2E \
    node --test --test-concurrency=1 --test-force-exit tests/e2e/*.test.ts) || status=1

say "each process serving its share (tests/drills/workers.ts, after the bump)"
(cd "$REPO" && WORKERS_STACK=$NAME WORKERS_PROOF=on node --test tests/drills/workers.ts) || status=1

say "back to one process (synapseWorkers 0): nothing of worker mode left, nothing lost"
node "$HERE/lib/stackConfig.ts" set "$STACK" synapseWorkers=0
if deploy up --stack "$NAME" --config "$STACK" 2>&1 | sed -u "s/^/[$NAME] /" >"$B/log/off-$NAME.log"; then
    (cd "$REPO" && WORKERS_STACK=$NAME WORKERS_PROOF=off node --test tests/drills/workers.ts) || status=1
else
    tail -n 40 "$B/log/off-$NAME.log" >&2
    say "pulumi up of $NAME with synapseWorkers 0 FAILED (log $B/log/off-$NAME.log)"
    status=1
fi

say "done in $(($(date +%s) - T0)) s: $([ "$status" = 0 ] && echo PASS || echo FAIL)"
exit "$status"
