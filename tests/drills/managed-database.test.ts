// Drill 25, the move to managed PostgreSQL (`database: managed`, issue 14) through the real engine:
// a DigitalOcean-hosted stack of its own (`mdb`, domain mdb.test, region nyc1 so that its volume's
// name does not meet phillymesh's in nyc3) deployed with the local database, a world seeded, then
// `database: managed` set by a config edit and `up`: the cluster is a guest of the stand-in
// (testbed/deploy/digitalocean/database.ts) running PostgreSQL 17 with TLS.
//   DRILLS_MANAGED_DB=1 node --test tests/drills/managed-database.test.ts
// OPT-IN for a developer's run (it boots two guests of its own; without the variable it is reported
// skipped); .ci/run sets it. It leaves nothing behind unless DRILLS_KEEP=1. See README.md.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import * as L from "./lib.ts";
import * as D from "./droplet-lib.ts";
import { drillSet } from "./harness.ts";

const STACK = "mdb";
const STACK_FILE = `${L.B}/stacks/${STACK}.json`;
const SECRETS_FILE = `${L.B}/secrets/${STACK}.json`;
const enabled = process.env.DRILLS_MANAGED_DB === "1";
const TITLE =
    "25 database managed: the local database moves into the cluster; users, rooms, messages, media and the signing key stay; Synapse on the cluster over TLS; local refuses synapse; a second up dumps nothing; the firewall admits only the droplet; the nightly housekeeping reports on the cluster";

let deployed = false;
/** The testbed key was added to the account by this drill (and is taken out again at the end). */
let addedKey = false;
const { drill, check, printSummary } = drillSet("managed database drill", async () => {
    if (deployed) return;
    // The stack from nothing, with the local database: the testbed's own config writer, the zone of
    // the Cloudflare stand-in, the testbed key already in the account (doSshKey).
    await L.runOk("bash", [`${L.REPO}/testbed/host.sh`, "up"], { timeoutMs: 20 * 60_000, label: "host-up" });
    const zone = await D.cfZone(["ensure", `${STACK}.test`]);
    // stackConfig.ts prints the config (testbed.sh redirects it into the stack file).
    const write =
        'node "$1/testbed/lib/stackConfig.ts" write --name "$2" --hosting digitalocean --synapse 1.162.0 --element 1.11.998 --zone "$3" > "$4.tmp" && mv "$4.tmp" "$4"';
    await L.runOk("bash", ["-c", write, "-", L.REPO, STACK, zone, STACK_FILE], { timeoutMs: 60_000, label: "stack-config" });
    const hadKey = (fp: string) => (D.account().sshKeys ?? []).some((k: { fingerprint: string }) => k.fingerprint === fp);
    const pubFp = (
        await L.runOk("bash", ["-c", "ssh-keygen -l -E md5 -f \"$1\" | awk '{print $2}' | sed s/^MD5://", "-", `${L.B}/id_ed25519.pub`], { timeoutMs: 30_000 })
    ).out.trim();
    const keyBefore = hadKey(pubFp);
    const fp = (await L.runOk("bash", [`${L.REPO}/testbed/cloud/do-host.sh`, "account-key", "testbed", `${L.B}/id_ed25519.pub`], { timeoutMs: 60_000 })).out
        .trim()
        .split("\n")
        .pop()!;
    addedKey = !keyBefore && hadKey(fp);
    const sf = D.readStack(STACK_FILE);
    delete sf.config.sshPublicKey;
    sf.config.doSshKey = fp;
    sf.config.doRegion = "nyc1";
    D.writeStack(sf, STACK_FILE);
    const up = await D.upWith(STACK_FILE, "mdb-up-local", STACK);
    if (up.code !== 0) throw new Error(`up of ${STACK} with database local failed (log ${up.log}):\n${L.tail(up.out, 40)}`);
    const out = await D.stackOutputs(STACK);
    const d = await D.stackDroplet(STACK);
    L.useServer({ name: STACK, ip: String(out.serverIp), guest: d.guest });
    await L.resetHttp();
    await L.waitFor(`${STACK} answering`, 120_000, L.healthy);
    deployed = true;
});

/** The stand-in's cluster of this stack, as the account records it. */
function cluster(): { id: string; guest: string; ip: string; host: string; trustedSources: string[] } {
    const c = (D.account().databases ?? []).find((x: { name: string }) => x.name === "chat-synapse-db");
    if (!c) throw new Error("no cluster chat-synapse-db in the stand-in's account");
    return c;
}
/** psql on the cluster guest as its postgres (DigitalOcean's side of the cluster). */
async function onCluster(sql: string): Promise<string> {
    const r = await L.runOk(
        "bash",
        [`${L.REPO}/testbed/tssh`, `root@${cluster().ip}`, "runuser -u postgres -- psql -X -q -tA -v ON_ERROR_STOP=1 -p 25060 -d synapse -f -"],
        {
            timeoutMs: 60_000,
            input: sql,
        },
    );
    return r.out.trim();
}

if (enabled) {
    before(() => {
        assert.equal(process.getuid?.(), 0, "the drills boot guests and need root");
        mkdirSync(`${L.B}/drills-${STACK}`, { recursive: true, mode: 0o700 });
        // The helpers' logs and copies go to $B/drills-mdb/ from the start (the server is located by the drill).
        L.useServer({ name: STACK, ip: "", guest: "" });
    });
    after(async () => {
        if (process.env.DRILLS_KEEP !== "1" && existsSync(STACK_FILE)) {
            // The synapse user owns the moved tables, and a user that owns objects cannot be deleted
            // (DigitalOcean refuses, and so does the stand-in): the drill's database goes first.
            try {
                // Synapse first: with its database dropped under it, its stop waits out systemd's 90 s
                // (seen in the first run, in the destroy's data-release).
                if (deployed) await L.tssh("systemctl stop matrix-synapse", { timeoutMs: 120_000 });
                const drop = "runuser -u postgres -- psql -X -q -p 25060 -d postgres -c 'DROP DATABASE IF EXISTS synapse WITH (FORCE)'";
                await L.run("bash", [`${L.REPO}/testbed/tssh`, `root@${cluster().ip}`, drop], { timeoutMs: 60_000 });
            } catch (e) {
                L.note(`dropping the cluster's database: ${String(e)}`);
            }
            // The cluster and the volume are protected: unprotected first, then everything goes.
            await D.unprotectAll(STACK).catch((e: unknown) => L.note(`unprotect: ${String(e)}`));
            const r = await L.deploy("destroy", [], { label: "mdb-destroy", stack: STACK, timeoutMs: 10 * 60_000 });
            if (r.code === 0) {
                await L.deploy("forget", [], { label: "mdb-forget", stack: STACK, timeoutMs: 120_000 });
                rmSync(STACK_FILE, { force: true });
                rmSync(SECRETS_FILE, { force: true });
            } else L.note(`destroy of ${STACK} failed (exit ${r.code}); left for inspection`);
            if (addedKey) {
                // testbed.sh up adds this key itself (sshPublicKey): the account must not hold it already.
                const script =
                    'f=$1/cloud/do-account.json; until mkdir "$1/cloud/.do.lock" 2>/dev/null; do sleep 0.1; done; ' +
                    'trap \'rm -rf "$1/cloud/.do.lock"\' EXIT; jq --arg k "$(cut -d" " -f2 "$1/id_ed25519.pub")" ' +
                    '\'.sshKeys |= map(select(.publicKey | contains($k) | not))\' "$f" > "$f.tmp" && mv "$f.tmp" "$f"';
                await L.run("bash", ["-c", script, "-", L.B], { timeoutMs: 60_000 });
            }
        }
        await L.closeHttp();
        printSummary();
    });

    drill(TITLE, 40, async (t) => {
        const w = await L.seedWorld(L.randomTag("d25"));
        const keys = await L.verifyKeys();
        const dropletIp = (await L.tsshOk("ip -4 -o addr show host0 | awk '{print $4}' | cut -d/ -f1 | head -1")).trim();
        L.note(`seeded ${w.users.length} users, room ${w.roomId}, ${w.messages.length} messages; keys ${Object.keys(keys).join(",")}; droplet ${dropletIp}`);

        const managed = D.configCopy("mdb.managed", (c) => void (c.database = "managed"), D.readStack(STACK_FILE));
        const { r: pr, plan } = await D.previewPlan(managed, "d25-preview", STACK);
        await check(t, "25a preview: creates the cluster, its user and firewall; nothing replaced or deleted", () => {
            assert.equal(pr.code, 0, `preview failed:\n${L.tail(pr.out, 40)}`);
            const kinds = [...plan].filter(([, p]) => p.kind !== "same").map(([n, p]) => `${p.kind} ${n} (${p.type})`);
            t.diagnostic(kinds.join(", "));
            for (const ty of ["DatabaseCluster", "DatabaseUser", "DatabaseFirewall"])
                assert.ok(
                    [...plan.values()].some((p) => p.type === ty && p.kind === "create"),
                    `no create of a ${ty}`,
                );
            assert.deepEqual(
                kinds.filter((k) => /^(replace|delete)/.test(k)),
                [],
            );
        });

        const up = await D.upWith(managed, "d25-up-managed", STACK);
        if (up.code === 0) D.writeStack(D.readStack(managed), STACK_FILE);
        const upOk = await check(t, "25b up with database managed succeeds, and its move copied the database", () => {
            assert.equal(up.code, 0, `up failed (log ${up.log}):\n${L.tail(up.out, 60)}`);
            assert.match(up.out, /copying the local database/);
            assert.match(up.out, /moved: users \d+/);
        });
        if (!upOk) throw new Error("the move failed; see 25b");
        await L.resetHttp();
        await L.waitFor(`${STACK} answering on the cluster`, 180_000, L.healthy);

        await check(t, "25c every user, the room, its messages in order and the file are there (fresh logins); the signing key is the same", async () => {
            assert.deepEqual(await L.checkWorld(w, { login: true }), []);
            assert.deepEqual(await L.verifyKeys(), keys);
        });
        await check(t, "25d Synapse's connections are on the cluster, from the droplet, all over TLS; the rows are there", async () => {
            const rows = await onCluster(
                `SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl), count(DISTINCT a.client_addr) FILTER (WHERE a.client_addr <> '${dropletIp}'::inet)
                     FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'synapse' AND a.datname = 'synapse';`,
            );
            t.diagnostic(`synapse's connections (tls|plain|other sources): ${rows}`);
            const [tls, plain, others] = rows.split("|").map(Number);
            assert.ok(tls > 0, "no TLS connection of synapse on the cluster");
            assert.equal(plain, 0);
            assert.equal(others, 0);
            const users = await onCluster(`SELECT count(*) FROM users WHERE name LIKE '@${w.tag}-%';`);
            assert.equal(users, String(w.users.length));
        });
        await check(t, "25e the local database is kept and refuses synapse", async () => {
            const priv = await L.tsshOk(`runuser -u postgres -- psql -X -tA -d postgres -c "SELECT has_database_privilege('synapse', 'synapse', 'CONNECT')"`);
            assert.equal(priv.trim(), "f");
            const pw = L.secrets().postgresPassword;
            const r = await L.tssh(`PGPASSWORD="$(cat)" psql -X -h 127.0.0.1 -U synapse -d synapse -c 'SELECT 1' 2>&1`, { input: pw });
            t.diagnostic(r.out.trim().split("\n")[0] ?? "");
            assert.notEqual(r.code, 0, "synapse connected to the local database");
            assert.match(r.out, /permission denied for database|not have CONNECT privilege/);
        });
        const again = await D.upWith(STACK_FILE, "d25-up-again", STACK);
        await check(t, "25f a second up succeeds and dumps nothing: one move recorded", async () => {
            assert.equal(again.code, 0, `second up failed (log ${again.log}):\n${L.tail(again.out, 40)}`);
            assert.doesNotMatch(again.out, /copying the local database/);
            assert.equal(await onCluster("SELECT count(*) FROM phillymesh_chat_database_move;"), "1");
        });
        await check(t, "25g the cluster's firewall admits the droplet alone: a connection from the host (10.250.0.1) is refused", async () => {
            const c = cluster();
            assert.deepEqual(c.trustedSources, [`${dropletIp}/32`]);
            const r = await L.run("psql", [`host=${c.ip} port=25060 dbname=synapse user=synapse sslmode=require connect_timeout=10`, "-X", "-c", "SELECT 1"], {
                timeoutMs: 30_000,
                env: { ...L.CHILD_ENV, PGPASSWORD: randomBytes(8).toString("hex") },
            });
            t.diagnostic(r.out.trim().split("\n")[0] ?? "");
            assert.notEqual(r.code, 0);
            assert.match(r.out, /no pg_hba\.conf entry for host "10\.250\.0\.1"/);
        });
        await check(
            t,
            "25h the nightly housekeeping works on the cluster: its step tuned the cluster's tables; its unit succeeds, reports the cluster's database (its address and size), skips the compressor saying why, logs nothing at error priority",
            async () => {
                // The step of the managed up (25b) ran in managed mode: its table settings went to the cluster (set -e: a refusal fails the up).
                assert.match(
                    up.out,
                    /nightly database housekeeping of the managed cluster: report, index rebuilds of the busiest tables once doubled \(the state compressor is not run against the cluster/,
                );
                const unit = "phillymesh-chat-db-housekeeping.service";
                const since = (await L.tsshOk("date '+%Y-%m-%d %H:%M:%S'")).trim();
                const started = Date.now();
                const start = await L.tssh(`systemctl start ${unit}`, { timeoutMs: 10 * 60_000 });
                const seconds = ((Date.now() - started) / 1000).toFixed(1);
                const result = (await L.tsshOk(`systemctl show -p Result --value ${unit}`)).trim();
                const journal = (priority: string) => L.tsshOk(`journalctl -q -u ${unit} --since '${since}' ${priority} -o cat --no-pager`);
                const log = (await journal("")).trim();
                const errors = (await journal("-p err")).trim();
                t.diagnostic(`systemctl start: exit ${start.code} in ${seconds} s, Result ${result}`);
                for (const line of log.split("\n").slice(0, 4)) t.diagnostic(line);
                assert.equal(start.code, 0, `systemctl start ${unit}: ${start.out}\n${log}`);
                assert.equal(result, "success", log);
                assert.equal(errors, "", `error-priority lines:\n${errors}`);
                const c = cluster();
                const m = /^database synapse on the managed cluster \(([^)]*)\): ([\d.]+) MB$/m.exec(log);
                assert.ok(m, `no report of the cluster's database in:\n${log}`);
                assert.equal(m[1], `${c.ip}:25060`, "the report's database is not the cluster's");
                const clusterMb = Number(await onCluster("SELECT pg_database_size('synapse');")) / 1048576;
                t.diagnostic(`reported ${m[2]} MB; the cluster says ${clusterMb.toFixed(1)} MB`);
                // Synapse writes on between the two readings: within 2 MB.
                assert.ok(Math.abs(Number(m[2]) - clusterMb) < 2, `reported ${m[2]} MB, the cluster holds ${clusterMb.toFixed(1)} MB`);
                assert.match(
                    log,
                    /^state compression skipped: the database is the managed cluster, and synapse_auto_compressor connects to it without verifying its TLS certificate/m,
                );
                assert.match(log, /^ {2}table \S+: [\d.]+ MB, \d+ rows/m);
                const report = JSON.parse(await L.tsshOk("cat /var/lib/phillymesh-chat-housekeeping/report.json"));
                assert.equal(report.database, "managed");
                assert.equal(report.ok, true);
                assert.match(String(report.compression?.skipped), /^state compression skipped/);
            },
        );
    });
} else {
    void test(TITLE, { skip: "opt-in: DRILLS_MANAGED_DB=1 (it boots two guests of its own; .ci/run sets it)" }, () => undefined);
}
