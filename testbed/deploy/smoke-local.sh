#!/bin/bash
# smoke-local.sh: proves deploy.ts (the real program through the real engine, with the remote.Command
# stand-in) WITHOUT the testbed guests: against a throwaway sshd on 127.0.0.1:${SMOKE_PORT:-2222}
# whose ForceCommand only counts the stdin it is sent and answers "ok". No provisioning script runs:
# nothing is installed on this machine. Needs root and /usr/sbin/sshd (apt-get install
# openssh-server; its service is not needed). Fresh state every run, so the first `up` is cold.
#
# Checks: the cold `up` creates every step, each after the steps it depends on (from the state's
# dependencies and the engine's event times); a re-run preview has no changes; a synapseVersion bump
# changes exactly the synapse step, and `up` of it runs that step alone; the engine refuses a
# `secret: true` key given in plaintext and hands the program Pulumi.yaml's defaults; no secret
# value of the config file appears in the export or in anything printed, and secrets are ciphertext
# in the export; `outputs` and `destroy` work. Everything printed is kept in $W/output.log.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PORT=${SMOKE_PORT:-2222}
W=$(mktemp -d /tmp/phillymesh-deploy-smoke.XXXXXX)
export PHILLYMESH_TESTBED_STATE=$W/state
export PATH="$REPO/node_modules/.bin:$PATH"
STACK=smoke
LOG=$W/output.log
failures=0

say() { printf 'smoke: %s\n' "$*" | tee -a "$LOG"; }
pass() { say "PASS: $*"; }
fail() { say "FAIL: $*"; failures=$((failures + 1)); }
# deploy ARGS...: deploy.ts, everything it prints (stdout and stderr) shown and kept in $LOG; its status.
deploy() {
    (cd "$REPO" && ts-node --transpile-only testbed/deploy/deploy.ts "$@") 2>&1 | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
}
# deploy_json OUT ARGS...: the same for export/outputs, whose JSON goes to OUT (and into $LOG too).
deploy_json() {
    local out=$1 rc=0
    shift
    (cd "$REPO" && ts-node --transpile-only testbed/deploy/deploy.ts "$@") >"$out" 2>"$W/stderr.tmp" || rc=$?
    tee -a "$LOG" <"$W/stderr.tmp" >&2
    cat "$out" >>"$LOG"
    return "$rc"
}

[ -x /usr/sbin/sshd ] || { echo "smoke: needs /usr/sbin/sshd: apt-get install openssh-server" >&2; exit 2; }
say "work dir $W"

# --- 1. the throwaway sshd --------------------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C smoke-host -f "$W/host_key"
ssh-keygen -q -t ed25519 -N '' -C smoke-client -f "$W/client_key"
cp "$W/client_key.pub" "$W/authorized_keys"
cat >"$W/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $W/host_key
PidFile $W/sshd.pid
AuthorizedKeysFile $W/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
# Drain stdin, log what came, answer ok: the program's scripts never run on this machine.
ForceCommand n=\$(wc -c); printf '%s %s %s\\n' "\$(date +%s.%N)" "\$n" "\$SSH_ORIGINAL_COMMAND" >>$W/received.log; echo "ok: \$n bytes of stdin"
EOF
mkdir -p /run/sshd # privilege separation directory (sshd refuses to start without it)
/usr/sbin/sshd -f "$W/sshd_config" -D -e 2>>"$W/sshd.log" &
SSHD=$!
trap 'kill "$SSHD" 2>/dev/null || true; wait "$SSHD" 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
say "sshd pid $SSHD on 127.0.0.1:$PORT (ForceCommand: count stdin, print ok)"

# --- 2. the config files ------------------------------------------------------------------------
# write_config OUT SYNAPSE_VERSION
write_config() {
    node - "$W/client_key" "$1" "$2" "$REPO/Pulumi.yaml" <<'JS'
const fs = require("fs");
const yaml = require(require.resolve("js-yaml", { paths: [process.argv[5].replace(/Pulumi\.yaml$/, "")] }));
const [keyFile, out, synapseVersion, projectFile] = process.argv.slice(2);
const seed = out.endsWith("-2.json") ? fs.readFileSync(out.replace(/-2\.json$/, ".json"), "utf8") : null;
const r = (prefix, n) => `${prefix}-${require("crypto").randomBytes(n).toString("hex")}`;
const secrets = seed ? JSON.parse(seed).secrets : {
    sshPrivateKey: fs.readFileSync(keyFile, "utf8"),
    postgresPassword: r("SMOKEpg", 8),
    adminPassword: r("SMOKEadmin", 8),
    registrationSharedSecret: r("SMOKEreg", 16),
    macaroonSecretKey: r("SMOKEmac", 16),
    formSecret: r("SMOKEform", 16),
};
// Workaround for a bug in Pulumi.yaml (see README): a key declared `secret: true` WITH a default is
// rejected by the engine unless the stack sets it encrypted. Set each such key to an encrypted "".
const declared = yaml.load(fs.readFileSync(projectFile, "utf8")).config;
for (const [k, d] of Object.entries(declared)) {
    if (d.secret && d.default !== undefined && !(k in secrets)) {
        secrets[k] = d.default;
        if (!seed) console.error(`smoke: workaround: ${k} (secret: true with a default) set to an encrypted ${JSON.stringify(d.default)}`);
    }
}
fs.writeFileSync(out, JSON.stringify({
    config: {
        domain: "phillymesh.test", adminEmail: "admin@phillymesh.test",
        hosting: "existing", sshHost: "127.0.0.1", sshPort: Number(process.env.SMOKE_PORT || 2222), sshUser: "root",
        dns: "none", acmeChallenge: "http", apexOnServer: true,
        synapseVersion, elementVersion: "1.12.5",
        federationIpAllowlist: ["10.250.0.0/24"],
    },
    secrets,
}, null, 2), { mode: 0o600 });
JS
}
write_config "$W/config.json" 1.163.2 2>&1 | tee -a "$LOG"
write_config "$W/config-2.json" 1.164.0
say "config: $W/config.json; config-2.json bumps synapseVersion 1.163.2 -> 1.164.0"

# --- 3. cold up -----------------------------------------------------------------------------------
say "== up (cold: empty state, first run of the program) =="
if deploy up --stack "$STACK" --config "$W/config.json" --events "$W/up.events.json"; then pass "up succeeded"; else fail "up"; fi
deploy_json "$W/export-1.json" export --stack "$STACK"
node - "$W/up.events.json" "$W/export-1.json" "$W/received.log" <<'JS' 2>&1 | tee -a "$LOG" || failures=$((failures + 1))
const fs = require("fs");
const [eventsFile, exportFile, receivedFile] = process.argv.slice(2);
const events = JSON.parse(fs.readFileSync(eventsFile, "utf8"));
const resources = JSON.parse(fs.readFileSync(exportFile, "utf8")).deployment.resources;
const isCmd = (t) => t === "pulumi-nodejs:dynamic/remote:Command";
const name = (urn) => urn.split("::").pop().replace(/^chat-/, "").replace(/-run$/, "");
const steps = events.filter((e) => isCmd(e.type)).sort((a, b) => a.start - b.start);
const byUrn = Object.fromEntries(steps.map((s) => [s.urn, s]));
let bad = 0;
const expect = (ok, what) => { console.log(`smoke: ${ok ? "PASS" : "FAIL"}: ${what}`); if (!ok) bad++; };
console.log("smoke: steps in start order: " + steps.map((s) => `${name(s.urn)} ${(s.start / 1000).toFixed(2)}-${(s.end / 1000).toFixed(2)}s`).join(", "));
expect(steps.length >= 7 && steps.every((s) => s.ops.join() === "create" && s.end !== undefined), `${steps.length} steps created (7 before Backups was added, 8 with it)`);
const received = fs.readFileSync(receivedFile, "utf8").trim().split("\n");
expect(received.length === steps.length, `the sshd received ${received.length} sessions, one per step, each with stdin (${received.map((l) => l.split(" ")[1]).join(", ")} bytes)`);
expect(received.every((l) => / bash -c '/.test(l)), "each session's command is the runner (bash -c '...'; the script travels on stdin)");
// Every dependency between steps recorded in the state is respected in time.
let edges = 0;
for (const r of resources.filter((r) => isCmd(r.type))) {
    for (const d of r.dependencies ?? []) {
        if (!byUrn[d]) continue;
        edges++;
        if (!(byUrn[d].end <= byUrn[r.urn].start)) expect(false, `${name(r.urn)} started before ${name(d)} ended`);
    }
}
expect(edges > 0, `${edges} step-to-step dependencies in the state, all respected in time`);
// The program's intended order.
const at = (n) => steps.find((s) => name(s.urn) === n);
for (const [before, after] of [["base", "postgres"], ["base", "element"], ["base", "certificates"], ["postgres", "synapse"], ["synapse", "synapse-admin"], ["synapse", "sites"], ["element", "sites"], ["certificates", "sites"]]) {
    expect(at(before) && at(after) && at(before).end <= at(after).start, `${before} finished before ${after} started`);
}
process.exit(bad > 0 ? 1 : 0);
JS

# --- 4. re-run preview ---------------------------------------------------------------------------
say "== preview --expect-no-changes (nothing changed) =="
if deploy preview --stack "$STACK" --expect-no-changes; then pass "no-op preview: no changes"; else fail "no-op preview reported changes"; fi

# --- 5. the engine's config handling -------------------------------------------------------------
say "== config: secret: true enforced, Pulumi.yaml defaults applied =="
node -e '
const fs = require("fs"); const c = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
c.config.postgresPassword = c.secrets.postgresPassword; delete c.secrets.postgresPassword;
fs.writeFileSync(process.argv[2], JSON.stringify(c), { mode: 0o600 });' "$W/config.json" "$W/config-plain.json"
if deploy preview --stack smoke-plain --config "$W/config-plain.json" >"$W/plain.out" 2>&1; then
    fail "the engine accepted postgresPassword in plaintext"
elif grep -q "configuration key 'postgresPassword' must be encrypted as it's secret" "$W/plain.out"; then
    pass "the engine refuses a secret: true key stored in plaintext: $(grep -o "Stack 'smoke-plain' with configuration key 'postgresPassword'[^\"]*secret" "$W/plain.out" | head -1)"
else
    fail "plaintext secret: unexpected failure: $(tail -3 "$W/plain.out")"
fi
# (its output holds the plaintext value on purpose: it is not part of $LOG, and the stack is removed)
rm -rf "$W/plain.out" "$W/config-plain.json" "$PHILLYMESH_TESTBED_STATE/work/smoke-plain"
node - "$W/export-1.json" "$REPO/Pulumi.yaml" "$W/config.json" <<'JS' 2>&1 | tee -a "$LOG" || failures=$((failures + 1))
// The dynamic provider is configured with the config the engine hands the program: the keys the
// stack does not set must be there with Pulumi.yaml's defaults.
const fs = require("fs");
const [exportFile, projectFile, configFile] = process.argv.slice(2);
const yaml = require(require.resolve("js-yaml", { paths: [projectFile.replace(/Pulumi\.yaml$/, "")] }));
const declared = yaml.load(fs.readFileSync(projectFile, "utf8")).config;
const cfg = JSON.parse(fs.readFileSync(configFile, "utf8"));
const set = new Set([...Object.keys(cfg.config), ...Object.keys(cfg.secrets)]);
const prov = JSON.parse(fs.readFileSync(exportFile, "utf8")).deployment.resources.find((r) => r.type === "pulumi:providers:pulumi-nodejs");
const defaults = Object.entries(declared).filter(([k, d]) => d.default !== undefined && !set.has(k));
const text = (v) => (typeof v === "string" ? v : JSON.stringify(v));
const wrong = defaults.filter(([k, d]) => prov.inputs[`phillymesh-chat:${k}`] !== text(d.default));
console.log(`smoke: ${wrong.length === 0 ? "PASS" : "FAIL"}: the engine applied all ${defaults.length} Pulumi.yaml defaults the stack does not set` +
    ` (e.g. dataDir=${prov.inputs["phillymesh-chat:dataDir"]}, swapSizeMb=${prov.inputs["phillymesh-chat:swapSizeMb"]}, trustedKeyServers=${prov.inputs["phillymesh-chat:trustedKeyServers"]})` +
    (wrong.length ? `; wrong: ${wrong.map(([k]) => k).join(", ")}` : ""));
process.exit(wrong.length ? 1 : 0);
JS

# --- 6. a version bump --------------------------------------------------------------------------
say "== preview of synapseVersion 1.163.2 -> 1.164.0 =="
deploy preview --stack "$STACK" --config "$W/config-2.json" --events "$W/bump.events.json" || true
node - "$W/bump.events.json" <<'JS' 2>&1 | tee -a "$LOG" || failures=$((failures + 1))
const e = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
const changed = e.filter((s) => s.ops.some((op) => op !== "same") && !s.type.startsWith("pulumi:providers:"));
const desc = changed.map((s) => `${s.urn.split("::").pop()} (${s.ops.join("/")})`).join(", ");
const ok = changed.length === 1 && changed[0].urn.endsWith("::chat-synapse-run");
console.log(`smoke: ${ok ? "PASS" : "FAIL"}: the bump changes exactly one resource: ${desc || "none"}`);
process.exit(ok ? 0 : 1);
JS
before=$(wc -l <"$W/received.log")
say "== up of the bump =="
if deploy up --stack "$STACK" --config "$W/config-2.json"; then pass "up of the bump succeeded"; else fail "up of the bump"; fi
ran=$(($(wc -l <"$W/received.log") - before))
if [ "$ran" = 1 ]; then pass "exactly one step ran on the server for the bump"; else fail "$ran steps ran for the bump"; fi
if deploy preview --stack "$STACK" --expect-no-changes; then pass "no changes after the bump"; else fail "changes after the bump"; fi

# --- 7. secrets -----------------------------------------------------------------------------------
say "== export and secrets =="
deploy_json "$W/export.json" export --stack "$STACK"
deploy_json "$W/outputs.json" outputs --stack "$STACK"
node - "$W/config.json" "$W/export.json" "$LOG" "$PHILLYMESH_TESTBED_STATE/work/$STACK/Pulumi.$STACK.yaml" "$W/outputs.json" <<'JS' 2>&1 | tee -a "$W/secrets.log" || failures=$((failures + 1))
const fs = require("fs");
const [configFile, exportFile, logFile, stackFile, outputsFile] = process.argv.slice(2);
const secrets = JSON.parse(fs.readFileSync(configFile, "utf8")).secrets;
const texts = { export: fs.readFileSync(exportFile, "utf8"), "printed output": fs.readFileSync(logFile, "utf8"), "Pulumi.<stack>.yaml": fs.readFileSync(stackFile, "utf8") };
let bad = 0;
const expect = (ok, what) => { console.log(`smoke: ${ok ? "PASS" : "FAIL"}: ${what}`); if (!ok) bad++; };
for (const [k, v] of Object.entries(secrets)) {
    if (v.length < 8) continue; // the "" workaround values
    // The value, its JSON-escaped form, and each line of a multi-line value (the key's base64 lines).
    const needles = [v, JSON.stringify(v).slice(1, -1), ...v.split("\n").map((l) => l.trim()).filter((l) => l.length >= 16 && !l.startsWith("-----"))];
    for (const [where, text] of Object.entries(texts)) {
        const hit = needles.find((n) => text.includes(n));
        expect(!hit, `${k} not in the ${where}`);
    }
}
const d = JSON.parse(texts.export).deployment;
const SIG = "4dabf18193072939515e22adb298388d";
const count = (v) => (Array.isArray(v) ? v.reduce((n, x) => n + count(x), 0) : v && typeof v === "object" ? (v[SIG] ? (typeof v.ciphertext === "string" ? 1 : 0) : Object.values(v).reduce((n, x) => n + count(x), 0)) : 0);
const cmds = d.resources.filter((r) => r.type === "pulumi-nodejs:dynamic/remote:Command");
const enc = (v) => Boolean(v && v[SIG] && typeof v.ciphertext === "string");
expect(cmds.every((r) => enc(r.inputs.connection?.privateKey) || enc(r.inputs.connection)), "every step's input connection.privateKey is ciphertext");
expect(cmds.every((r) => enc(r.outputs.connection)), "every step's output connection is ciphertext (secret in the real provider's schema)");
const secretSteps = cmds.filter((r) => enc(r.inputs.stdin));
const mustBeSecret = ["chat-postgres-run", "chat-synapse-run", "chat-synapse-admin-run"];
expect(mustBeSecret.every((n) => secretSteps.some((r) => r.urn.endsWith(`::${n}`))) && secretSteps.every((r) => enc(r.outputs.stdin) && enc(r.outputs.stdout)),
    `stdin/stdout are ciphertext for the steps that handle secrets: ${secretSteps.map((r) => r.urn.split("::").pop()).join(", ")}`);
const prov = d.resources.find((r) => r.type === "pulumi:providers:pulumi-nodejs");
const provSecrets = Object.keys(secrets).filter((k) => prov.inputs[`phillymesh-chat:${k}`]);
expect(provSecrets.every((k) => enc(prov.inputs[`phillymesh-chat:${k}`])), `the stack config the engine hands the dynamic provider keeps its ${provSecrets.length} secrets as ciphertext`);
console.log(`smoke: ${count(d)} ciphertext values in the export`);
const outs = JSON.parse(fs.readFileSync(outputsFile, "utf8"));
expect(outs.serverName === "phillymesh.test" && outs.sshCommand === `ssh -p ${process.env.SMOKE_PORT || 2222} root@127.0.0.1`, "outputs: serverName and sshCommand as expected");
process.exit(bad > 0 ? 1 : 0);
JS
cat "$W/secrets.log" >>"$LOG"

# --- 8. destroy -----------------------------------------------------------------------------------
say "== destroy =="
before=$(wc -l <"$W/received.log")
if deploy destroy --stack "$STACK"; then pass "destroy succeeded"; else fail "destroy"; fi
if [ "$(wc -l <"$W/received.log")" = "$before" ]; then
    pass "destroy ran nothing on the server (the program has no delete commands)"
else
    fail "destroy ran commands"
fi

kill "$SSHD" 2>/dev/null || true
wait "$SSHD" 2>/dev/null || true
trap - EXIT
say "sshd stopped"
say "timings: $(grep -Eo '(up|preview|destroy|export|outputs) wall time [0-9.]+s' "$LOG" | tr '\n' ';')"
if [ "$failures" = 0 ]; then say "ALL PASSED (work dir $W)"; else say "$failures FAILED (work dir $W)"; exit 1; fi
