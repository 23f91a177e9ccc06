#!/bin/bash
# The "run it without a cloud account" path: two community servers (phillymesh.test, nycmesh.test)
# on this machine, deployed by this program through the real Pulumi engine, federating with each
# other. Needs root on Debian 12.
#
#   npm run testbed -- up       build what is missing, boot both servers, `pulumi up` both stacks
#   npm run testbed -- status   what runs, and the URLs
#   npm run testbed -- down     stop the servers and host services (data disks kept; --wipe-data removes them)
#   npm run testbed -- preview  `pulumi preview --expect-no-changes` of every stack (a re-run changes nothing)
#   npm run testbed -- bump KEY=VALUE [NAME]   edit a stack's config (e.g. synapseVersion=1.163.2), preview, up
#
# Versions can be overridden for one run: SYNAPSE_VERSION=1.163.2 ELEMENT_VERSION=1.11.999 ... up
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
B=${TESTBED_DIR:-/var/tmp/phillymesh-testbed}
export TESTBED_DIR=$B
# name:address:ssh-user:hosting of each server (the name makes the domain, <name>.test). The first is
# the path Philly Mesh runs: hosting digitalocean + dns cloudflare, on the testbed's stand-ins for
# both clouds (testbed/deploy/*Shim.ts; the droplet's address comes from the stack, so "-"). The
# other is a server its operator already has (hosting existing + dns none), logged in to as a sudo
# user like most existing servers.
read -r -a SERVERS <<<"${TESTBED_SERVERS:-phillymesh:-:root:digitalocean nycmesh:10.250.0.11:debian:existing}"
E2E_FILE=${TESTBED_E2E_FILE:-$B/e2e.json}
SYNAPSE_VERSION=${SYNAPSE_VERSION:-1.162.0}
ELEMENT_VERSION=${ELEMENT_VERSION:-1.11.998}
export PATH="$REPO/node_modules/.bin:$PATH"

T0=$(date +%s)
say() { printf '[testbed +%ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
deploy() { (cd "$REPO" && ts-node --transpile-only testbed/deploy/deploy.ts "$@"); }

# stack_config NAME HOSTING IP USER SERVER_ID: the whole stack configuration, in the shape deploy.ts
# takes, built by testbed/lib/stackConfig.ts (the one place, shared with the benchmark): the stack's
# secrets made once per testbed and kept (0600) in $B/secrets/NAME.json, and what an operator changed
# on a droplet stack since kept from its current file. HOSTING digitalocean: the droplet, volume,
# reserved IP, firewall and the Cloudflare zone of the stand-ins (IP, USER and SERVER_ID unused);
# existing: the guest at IP.
stack_config() {
    local name=$1 hosting=$2 ip=$3 user=$4 server_id=$5 args=() s
    for s in "${SERVERS[@]}"; do [ "${s%%:*}" = "$name" ] || args+=(--peer "${s%%:*}.test"); done
    if [ "$hosting" = digitalocean ]; then
        # The quick start's way: a deploy key ($SSH_KEY.pub) whose public half the stack adds to the
        # (stand-in) account. (A key already in the account goes by doSshKey instead: drill 14.)
        args+=(--zone "$(bash "$HERE/cloud/cf-zone.sh" ensure "$name.test")")
    else
        args+=(--ip "$ip" --user "$user" --server-id "$server_id")
    fi
    node "$HERE/lib/stackConfig.ts" write --name "$name" --hosting "$hosting" \
        --synapse "$SYNAPSE_VERSION" --element "$ELEMENT_VERSION" "${args[@]}"
}

# shellcheck source=testbed/lib.sh
. "$HERE/lib.sh"
running() { [ -f "$B/run-$1/supervise.pid" ] && proc_running "$(cat "$B/run-$1/supervise.pid")"; }

# up_stacks [--program DIR]: `pulumi up` of every stack in parallel (with DIR: another checkout's program).
up_stacks() {
    local s name ip user hosting pids=() hook=()
    for s in "${SERVERS[@]}"; do
        IFS=: read -r name ip user hosting <<<"$s"
        hook=()
        # dns none: the program's dnsRecords output goes straight into the testbed's DNS server, as
        # an operator would create them by hand, before the certificates step needs them. (With dns
        # cloudflare the stand-in's records are served by the testbed DNS as they are created.)
        [ "$hosting" = digitalocean ] || hook=(--dns-hook "bash $HERE/dns-load.sh - $name")
        # Each stack's output also goes to a log of its own: the two run at once, so on failure the
        # failing stack's last lines are printed again at the end, where a reader (or CI's tail) sees them.
        deploy up --stack "$name" --config "$B/stacks/$name.json" "${hook[@]}" "$@" 2>&1 |
            sed -u "s/^/[$name] /" | tee "$LOG/up-$name.log" &
        pids+=($!)
    done
    local i names=("${SERVERS[@]%%:*}") failed_stacks=()
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed_stacks+=("${names[$i]}"); done
    for name in "${failed_stacks[@]}"; do
        say "pulumi up of $name failed; its last lines (all of it: $LOG/up-$name.log):"
        grep -v '@ updating' "$LOG/up-$name.log" | tail -n 40 >&2
    done
    [ "${#failed_stacks[@]}" = 0 ]
}

# upgrade_from REF: what an operator's existing stacks meet. Deploy every stack with the program
# as it was at REF (a git worktree of it), then preview the same stacks with this checkout: nothing
# may be replaced or deleted (creates and in-place updates are fine). The `up` that follows is then
# an upgrade of running servers.
upgrade_from() {
    local ref=$1 dir=$B/upgrade-from s name failed=0
    if ! git -C "$REPO" cat-file -e "$ref^{commit}" 2>/dev/null; then
        say "upgrade check SKIPPED: commit $ref is not in this clone (a shallow clone?); fetch the history to run it"
        return 0
    fi
    say "upgrade check: the stacks as the program at $ref deploys them"
    git -C "$REPO" worktree remove --force "$dir" >/dev/null 2>&1 || rm -rf "$dir"
    git -C "$REPO" worktree prune
    git -C "$REPO" worktree add --detach "$dir" "$ref" >/dev/null
    ln -sfn "$REPO/node_modules" "$dir/node_modules"
    up_stacks --program "$dir" || { say "pulumi up with the program at $ref FAILED (see above)"; exit 1; }
    say "upgrade check: preview of the same stacks with this checkout"
    for s in "${SERVERS[@]}"; do
        name=${s%%:*}
        deploy preview --stack "$name" --forbid-replace 2>&1 | sed -u "s/^/[$name] /" || failed=1
    done
    git -C "$REPO" worktree remove --force "$dir" >/dev/null 2>&1 || true
    [ "$failed" = 0 ] || { say "upgrade check FAILED: a stack deployed by $ref would see a resource replaced or deleted"; exit 1; }
    say "upgrade check passed: nothing replaced or deleted"
}

cmd_up() {
    local from=""
    if [ "${1:-}" = --upgrade-from ]; then from=${2:?--upgrade-from REF}; fi
    say "host services"
    bash "$HERE/host.sh" up >/dev/null
    say "template (cached after the first run)"
    bash "$HERE/template.sh" | tail -n 1
    say "Pulumi engine (built from Go modules; ~6 min the first time)"
    PULUMI_ENGINE_DIR=$(bash "$REPO/scripts/engine.sh" --partial 2>"$B/log/engine.log" | tail -n 1) ||
        { cat "$B/log/engine.log" >&2; exit 1; }
    [ -x "$PULUMI_ENGINE_DIR/pulumi" ] || { cat "$B/log/engine.log" >&2; say "no pulumi CLI could be built"; exit 1; }
    export PULUMI_ENGINE_DIR
    install -d "$B/stacks"
    local s name ip user hosting server_id
    for s in "${SERVERS[@]}"; do
        IFS=: read -r name ip user hosting <<<"$s"
        hosting=${hosting:-existing}
        server_id=""
        if [ "$hosting" = existing ]; then
            if ! running "$name"; then
                # A guest left half-there by an earlier session (processes gone, mounts left): clear it.
                [ ! -d "$B/run-$name" ] || bash "$HERE/destroy.sh" "$name" >/dev/null
                bash "$HERE/boot.sh" "$name" "$ip" | tail -n 1
            fi
            server_id=$(bash "$HERE/tssh" "root@$ip" cat /etc/machine-id)
        fi
        # (Written aside first: stack_config reads the file it replaces.)
        (umask 077 && stack_config "$name" "$hosting" "$ip" "$user" "$server_id" >"$B/stacks/$name.json.new")
        mv -f "$B/stacks/$name.json.new" "$B/stacks/$name.json"
    done
    [ -z "$from" ] || upgrade_from "$from"
    say "pulumi up: ${SERVERS[*]%%:*} (in parallel)"
    up_stacks || { say "pulumi up FAILED (see above)"; exit 1; }
    write_e2e
    say "done in $(($(date +%s) - T0))s"
    cmd_status
}

# e2e.json: what the end-to-end checks read (URLs, logins, addresses), from the stacks' outputs.
write_e2e() {
    local s name ip user hosting outputs=()
    for s in "${SERVERS[@]}"; do
        IFS=: read -r name ip user hosting <<<"$s"
        deploy outputs --stack "$name" >"$B/stacks/$name.outputs.json"
        outputs+=("$name" "$user")
    done
    (umask 077 && node "$HERE/lib/e2eConfig.ts" write "${outputs[@]}" >"$E2E_FILE")
}

cmd_status() {
    bash "$HERE/host.sh" status || true
    local s name ip user hosting
    for s in "${SERVERS[@]}"; do
        IFS=: read -r name ip user hosting <<<"$s"
        if [ "$hosting" = digitalocean ]; then
            echo "  $name: a droplet of the DigitalOcean stand-in (testbed/cloud/do-host.sh status)"
        elif running "$name"; then
            echo "  $name ($ip): running"
        else
            echo "  $name ($ip): not running"
        fi
    done
    # The daily status check's last results (phillymesh-chat-status, status.json) of every running
    # guest (the testbed's, the drills', the benchmark's), one line a check.
    local dir guest json
    for dir in "$B"/run-*/; do
        guest=$(basename "$dir")
        guest=${guest#run-}
        running "$guest" || continue
        if ! json=$(TSSH_CONNECT_TIMEOUT=3 timeout 15 "$HERE/tssh" "root@$(cat "$dir/ip")" \
            'cat /var/lib/phillymesh-chat/status.json 2>/dev/null || echo "{}"' 2>/dev/null); then
            echo "  $guest: status check: no answer over ssh"
        elif ! jq -e .checkedAt >/dev/null 2>&1 <<<"$json"; then
            echo "  $guest: no status file yet (run: systemctl start phillymesh-chat-status; or deployed before it existed)"
        else
            jq -r --arg g "$guest" '"  \($g): status check \(if .ok then "ok" else "FAILED" end) at \(.checkedAt)",
                (.checks[] | "    \(if .ok then "ok  " else "FAIL" end) \(.name): \(.detail)")' <<<"$json"
        fi
    done
    [ -s "$E2E_FILE" ] || return 0
    node "$HERE/lib/e2eConfig.ts" status "$E2E_FILE"
}

cmd_down() {
    local s name ip user hosting
    for s in "${SERVERS[@]}"; do
        IFS=: read -r name ip user hosting <<<"$s"
        if running "$name" || [ -d "$B/run-$name" ]; then bash "$HERE/destroy.sh" "$name" "$@"; fi
        rm -f "$B/dns/$name.json"
    done
    if [ "${1:-}" = --wipe-data ]; then
        # The DigitalOcean/Cloudflare stand-ins' droplets (do-*), volumes, reserved IPs, firewall
        # rules, zones and account go with the data ...
        bash "$HERE/cloud/do-host.sh" wipe
        # ... and then the stacks' state describes nothing: forget it (not `destroy`: the volume and
        # reserved IP are protected), and the secrets.
        for s in "${SERVERS[@]}"; do
            name=${s%%:*}
            [ -f "$B/stacks/$name.json" ] || continue
            deploy forget --stack "$name" >/dev/null 2>&1 || true
            rm -f "$B/stacks/$name".* "$B/secrets/$name.json"
        done
    fi
    # Host services serve every guest: stop them only when none is left.
    local alive="" dir
    for dir in "$B"/run-*; do
        [ -d "$dir" ] && running "${dir#"$B"/run-}" && alive+="${dir#"$B"/run-} "
    done
    if [ -n "$alive" ]; then
        say "host services kept: other guests still run ($alive)"
        bash "$HERE/dns-load.sh" --reload >/dev/null 2>&1 || true
    else
        bash "$HERE/host.sh" down
    fi
}

cmd_preview() {
    local s name failed=0
    for s in "${SERVERS[@]}"; do
        name=${s%%:*}
        deploy preview --stack "$name" --expect-no-changes 2>&1 | sed -u "s/^/[$name] /" || failed=1
    done
    return "$failed"
}

# bump KEY=VALUE [NAME]: what an operator does for a version bump, on one stack (default: the first).
cmd_bump() {
    local setting=${1:?usage: testbed.sh bump KEY=VALUE [NAME]} name=${2:-${SERVERS[0]%%:*}}
    local file=$B/stacks/$name.json
    [ -f "$file" ] || { say "no stack $name: run up first"; exit 1; }
    node "$HERE/lib/stackConfig.ts" set "$file" "$setting"
    say "$name: $setting; preview"
    deploy preview --stack "$name" --config "$file" --events "$B/stacks/$name.bump-preview.json" 2>&1 | sed -u "s/^/[$name] /"
    say "$name: up"
    deploy up --stack "$name" --config "$file" 2>&1 | sed -u "s/^/[$name] /"
    write_e2e
}

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    status) cmd_status ;;
    preview) cmd_preview ;;
    bump) shift; cmd_bump "$@" ;;
    down) shift; cmd_down "$@" ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
