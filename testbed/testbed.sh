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
# name:address:ssh-user of each server (the name makes the domain, <name>.test). One logs in as
# root like a droplet, the other as a sudo user like most existing servers.
read -r -a SERVERS <<<"${TESTBED_SERVERS:-phillymesh:10.250.0.10:root nycmesh:10.250.0.11:debian}"
E2E_FILE=${TESTBED_E2E_FILE:-$B/e2e.json}
SYNAPSE_VERSION=${SYNAPSE_VERSION:-1.162.0}
ELEMENT_VERSION=${ELEMENT_VERSION:-1.11.998}
export PATH="$REPO/node_modules/.bin:$PATH"

T0=$(date +%s)
say() { printf '[testbed +%ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
deploy() { (cd "$REPO" && ts-node --transpile-only testbed/deploy/deploy.ts "$@"); }

# secrets_for NAME: the stack's secrets, made once per testbed and kept (0600) beside its state.
secrets_for() {
    local name=$1 file=$B/secrets/$1.json
    if [ ! -s "$file" ]; then
        install -d -m 700 "$B/secrets"
        (umask 077 && python3 - "$B/id_ed25519" >"$file" <<'PY'
import json, secrets, sys
print(json.dumps({
    "sshPrivateKey": open(sys.argv[1]).read(),
    "postgresPassword": secrets.token_hex(16),
    "adminPassword": secrets.token_urlsafe(12),
    "registrationSharedSecret": secrets.token_hex(32),
    "macaroonSecretKey": secrets.token_hex(32),
    "formSecret": secrets.token_hex(32),
}, indent=2))
PY
        )
        say "made secrets for $name ($file)"
    fi
    printf '%s' "$file"
}

# stack_config NAME IP USER SERVER_ID: the whole stack configuration, in the shape deploy.ts takes.
stack_config() {
    local name=$1 ip=$2 user=$3 server_id=$4 others=()
    local s
    for s in "${SERVERS[@]}"; do [ "${s%%:*}" = "$name" ] || others+=("${s%%:*}.test"); done
    python3 - "$name" "$ip" "$user" "$server_id" "$(secrets_for "$name")" "$(cat "$B/element/fingerprint")" \
        "$SYNAPSE_VERSION" "$ELEMENT_VERSION" "${others[@]}" <<'PY'
import json, sys
name, ip, user, server_id, secrets_file, fingerprint, synapse, element, *others = sys.argv[1:]
domain = f"{name}.test"
print(json.dumps({
    "config": {
        "domain": domain,
        "adminEmail": f"admin@{domain}",
        "hosting": "existing",
        "sshHost": ip,
        "sshUser": user,
        # A freshly booted guest is a new machine: its machine-id tells the program so.
        "serverId": server_id,
        "dns": "none",
        "acmeServer": "https://acme.test:14000/dir",
        "acmeChallenge": "http",
        "apexOnServer": True,
        "pipIndexUrl": "https://pypi.test:3143/simple/",
        "synapseVersion": synapse,
        "elementVersion": element,
        "elementDownloadUrl": "http://10.250.0.1:8090/v{version}/element-v{version}.tar.gz",
        "elementSigningKeyUrl": "http://10.250.0.1:8090/element-release-key.asc",
        "elementSigningKeyFingerprint": fingerprint,
        "elementBrand": f"{name} chat",
        # The two servers federate over the testbed's private addresses, and nothing outside
        # answers: matrix.org cannot serve as key server here.
        "federationIpAllowlist": ["10.250.0.0/24"],
        "trustedKeyServers": [],
        "roomDirectoryServers": [domain, *others],
    },
    "secrets": json.load(open(secrets_file)),
}, indent=2))
PY
}

# shellcheck source=testbed/lib.sh
. "$HERE/lib.sh"
running() { [ -f "$B/run-$1/supervise.pid" ] && proc_running "$(cat "$B/run-$1/supervise.pid")"; }

cmd_up() {
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
    local s name ip user pids=()
    for s in "${SERVERS[@]}"; do
        IFS=: read -r name ip user <<<"$s"
        if ! running "$name"; then
            # A guest left half-there by an earlier session (processes gone, mounts left): clear it.
            [ ! -d "$B/run-$name" ] || bash "$HERE/destroy.sh" "$name" >/dev/null
            bash "$HERE/boot.sh" "$name" "$ip" | tail -n 1
        fi
        stack_config "$name" "$ip" "$user" "$(bash "$HERE/tssh" "root@$ip" cat /etc/machine-id)" >"$B/stacks/$name.json"
        chmod 600 "$B/stacks/$name.json"
    done
    say "pulumi up: ${SERVERS[*]%%:*} (in parallel)"
    for s in "${SERVERS[@]}"; do
        IFS=: read -r name ip user <<<"$s"
        # The program's dnsRecords output goes straight into the testbed's DNS server, as the
        # Cloudflare records would in production, before the certificates step needs them.
        deploy up --stack "$name" --config "$B/stacks/$name.json" \
            --dns-hook "bash $HERE/dns-load.sh - $name" 2>&1 | sed -u "s/^/[$name] /" &
        pids+=($!)
    done
    local failed=0 p
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    [ "$failed" = 0 ] || { say "pulumi up FAILED (see above)"; exit 1; }
    write_e2e
    say "done in $(($(date +%s) - T0))s"
    cmd_status
}

# e2e.json: what the end-to-end checks read (URLs, logins, addresses), from the stacks' outputs.
write_e2e() {
    local s name ip user outputs=()
    for s in "${SERVERS[@]}"; do
        IFS=: read -r name ip user <<<"$s"
        deploy outputs --stack "$name" >"$B/stacks/$name.outputs.json"
        outputs+=("$name" "$ip" "$user")
    done
    (umask 077 && python3 - "$B" "${outputs[@]}" >"$E2E_FILE" <<'PY'
import json, sys
b, *rest = sys.argv[1:]
servers = []
for i in range(0, len(rest), 3):
    name, ip, user = rest[i:i + 3]
    out = json.load(open(f"{b}/stacks/{name}.outputs.json"))
    cfg = json.load(open(f"{b}/stacks/{name}.json"))
    servers.append({
        "name": name, "domain": out["serverName"], "ip": ip, "ssh": f"{user}@{ip}",
        "adminUser": cfg["config"].get("adminUser", "admin"), "adminPassword": cfg["secrets"]["adminPassword"],
        "homeserverUrl": out["homeserverUrl"], "webClientUrl": out["webClientUrl"],
        "synapseVersion": cfg["config"]["synapseVersion"], "elementVersion": cfg["config"]["elementVersion"],
    })
print(json.dumps({"roots": f"{b}/pebble/roots.pem", "dnsServer": "10.250.0.1", "servers": servers}, indent=2))
PY
    )
}

cmd_status() {
    bash "$HERE/host.sh" status || true
    local s name ip user
    for s in "${SERVERS[@]}"; do
        IFS=: read -r name ip user <<<"$s"
        if running "$name"; then
            echo "  $name ($ip): running"
        else
            echo "  $name ($ip): not running"
        fi
    done
    [ -s "$E2E_FILE" ] || return 0
    python3 - "$E2E_FILE" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
print("\nThe servers (names resolve through the testbed DNS at 10.250.0.1; certificates from the testbed CA in", e["roots"] + "):")
for s in e["servers"]:
    print(f"  {s['domain']}: web client {s['webClientUrl']}  homeserver {s['homeserverUrl']}")
    print(f"      admin: @{s['adminUser']}:{s['domain']}  password: {s['adminPassword']}  (ssh: testbed/tssh {s['ssh']})")
print("\nIn a browser on this machine: add to /etc/hosts")
for s in e["servers"]:
    print(f"  {s['ip']} {s['domain']} matrix.{s['domain']} chat.{s['domain']}")
print("and trust", e["roots"], "(or run the end-to-end checks: npm run test:e2e)")
PY
}

cmd_down() {
    local s name ip user
    for s in "${SERVERS[@]}"; do
        IFS=: read -r name ip user <<<"$s"
        if running "$name" || [ -d "$B/run-$name" ]; then bash "$HERE/destroy.sh" "$name" "$@"; fi
        rm -f "$B/dns/$name.json"
        if [ "${1:-}" = --wipe-data ] && [ -f "$B/stacks/$name.json" ]; then
            # With its data gone, the stack's state describes nothing: forget it, and its secrets.
            deploy destroy --stack "$name" >/dev/null 2>&1 || true
            rm -f "$B/stacks/$name".* "$B/secrets/$name.json"
        fi
    done
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
    local s name ip user failed=0
    for s in "${SERVERS[@]}"; do
        IFS=: read -r name ip user <<<"$s"
        deploy preview --stack "$name" --expect-no-changes 2>&1 | sed -u "s/^/[$name] /" || failed=1
    done
    return "$failed"
}

# bump KEY=VALUE [NAME]: what an operator does for a version bump, on one stack (default: the first).
cmd_bump() {
    local setting=${1:?usage: testbed.sh bump KEY=VALUE [NAME]} name=${2:-${SERVERS[0]%%:*}}
    local file=$B/stacks/$name.json
    [ -f "$file" ] || { say "no stack $name: run up first"; exit 1; }
    python3 - "$file" "$setting" <<'PY'
import json, sys
path, setting = sys.argv[1:]
key, _, value = setting.partition("=")
stack = json.load(open(path))
stack["config"][key] = value
json.dump(stack, open(path, "w"), indent=2)
PY
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
