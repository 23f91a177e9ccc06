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

# stack_config NAME HOSTING IP USER SERVER_ID: the whole stack configuration, in the shape deploy.ts
# takes (keeping, from the stack's current file, what an operator changed since: see below). HOSTING digitalocean: the droplet, volume, reserved IP, firewall and the Cloudflare zone
# of the stand-ins (IP, USER and SERVER_ID unused); existing: the guest at IP.
stack_config() {
    local name=$1 hosting=$2 ip=$3 user=$4 server_id=$5 others=() cloud=()
    local s
    for s in "${SERVERS[@]}"; do [ "${s%%:*}" = "$name" ] || others+=("${s%%:*}.test"); done
    # The quick start's way: a deploy key whose public half the stack adds to the (stand-in)
    # account. (A key already in the account goes by doSshKey instead: drill 14.)
    [ "$hosting" != digitalocean ] || cloud=("$(cat "$SSH_KEY.pub")" "$(bash "$HERE/cloud/cf-zone.sh" ensure "$name.test")")
    python3 - "$name" "$hosting" "$ip" "$user" "$server_id" "$B/stacks/$name.json" "$(secrets_for "$name")" "$(cat "$B/element/fingerprint")" \
        "$SYNAPSE_VERSION" "$ELEMENT_VERSION" "${cloud[0]:-}" "${cloud[1]:-}" "${others[@]}" <<'PY'
import json, sys
name, hosting, ip, user, server_id, previous, secrets_file, fingerprint, synapse, element, public_key, zone, *others = sys.argv[1:]
domain = f"{name}.test"
if hosting == "digitalocean":
    # What an operator changed on a running stack (the drills replace the droplet and grow the
    # volume) is kept: volumes never shrink, and another image would replace the droplet again.
    try:
        kept = json.load(open(previous))["config"]
    except (OSError, ValueError, KeyError):
        kept = {}
    where = {
        "hosting": "digitalocean",
        "doRegion": "nyc3",
        "dropletSize": "s-1vcpu-1gb",
        "dropletImage": kept.get("dropletImage", "debian-13-x64"),
        "volumeSizeGb": kept.get("volumeSizeGb", 10),
        # The testbed has no IPv6 on its bridge.
        "ipv6": False,
        "sshPublicKey": public_key.strip(),
        "sshAllowedCidrs": ["10.250.0.0/24"],
        "dns": "cloudflare",
        "cloudflareZoneId": zone,
    }
else:
    where = {
        "hosting": "existing",
        "sshHost": ip,
        "sshUser": user,
        # A freshly booted guest is a new machine: its machine-id tells the program so.
        "serverId": server_id,
        "dns": "none",
    }
print(json.dumps({
    "config": {
        "domain": domain,
        "adminEmail": f"admin@{domain}",
        **where,
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
        deploy up --stack "$name" --config "$B/stacks/$name.json" "${hook[@]}" "$@" 2>&1 | sed -u "s/^/[$name] /" &
        pids+=($!)
    done
    local failed=0 p
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    return "$failed"
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
    (umask 077 && python3 - "$B" "${outputs[@]}" >"$E2E_FILE" <<'PY'
import json, sys
b, *rest = sys.argv[1:]
servers = []
for i in range(0, len(rest), 2):
    name, user = rest[i:i + 2]
    out = json.load(open(f"{b}/stacks/{name}.outputs.json"))
    # The address the stack reports: the guest's for an existing server, the reserved IP for a droplet.
    ip = out["serverIp"]
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
