// The drills: "nothing lost, no one in", proved on the local testbed with the real program.
//   node --test --test-concurrency=1 tests/drills/          (all; package.json "main" is this file)
//   node --test --test-name-pattern='^3 ' tests/drills/     (one; it brings drill1 up if needed)
// DRILLS_KEEP=1 leaves the guest and the stack for a look afterwards. See README.md.
import { after, before, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { connect as tlsConnect } from "node:tls";
import * as L from "./lib.ts";
import { CutProxy, PYPI_PROXY } from "./cutproxy.ts";

// ---- the drill wrapper: bounded, timed, PASS/FAIL printed, cancellable subprocesses ----
interface Result { title: string; ok: boolean; ms: number; error?: string }
const results: Result[] = [];
const titles: string[] = [];
/** The checks (subtests) of the drill now running that failed. */
let failedChecks: string[] = [];

function drill(title: string, limitMinutes: number, fn: (t: TestContext) => Promise<void>): void {
    titles.push(title);
    // node:test collects the test; its promise settles with the run and is reported by the runner.
    void test(title, { timeout: limitMinutes * 60_000 }, async (t) => {
        L.current.signal = t.signal;
        const t0 = Date.now();
        L.note(`START ${title}`);
        try {
            failedChecks = [];
            await L.ensureUp();
            await fn(t);
            if (failedChecks.length) throw new Error(`${failedChecks.length} check(s) failed: ${failedChecks.join("; ")}`);
            results.push({ title, ok: true, ms: Date.now() - t0 });
            L.note(`PASS  ${title} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
        } catch (e) {
            results.push({ title, ok: false, ms: Date.now() - t0, error: String(e) });
            L.note(`FAIL  ${title} (${((Date.now() - t0) / 1000).toFixed(0)} s): ${String(e).split("\n")[0]}`);
            throw e;
        } finally {
            L.current.signal = undefined;
        }
    });
}

/** A subtest whose failure is recorded but lets the drill go on (the parent test fails with it). */
async function check(t: TestContext, title: string, fn: () => Promise<void> | void): Promise<boolean> {
    let ok = true;
    await t.test(title, async () => {
        try { await fn(); } catch (e) { ok = false; failedChecks.push(title.split(" ")[0]); L.note(`  FAIL ${title}: ${String(e).split("\n").slice(0, 6).join(" | ")}`); throw e; }
    });
    if (ok) L.note(`  ok   ${title}`);
    return ok;
}

before(() => {
    assert.equal(process.getuid?.(), 0, "the drills boot guests and need root");
    mkdirSync(L.WORK, { recursive: true, mode: 0o700 });
});

after(async () => {
    await L.closeHttp();
    process.stderr.write("\n==== drills ====\n");
    for (const title of titles) {
        const r = results.find((x) => x.title === title);
        process.stderr.write(r ? `${r.ok ? "PASS" : "FAIL"}  ${(r.ms / 1000).toFixed(0).padStart(5)} s  ${title}\n`
            : `----      -    ${title} (not run, filtered out or cancelled)\n`);
    }
    if (process.env.DRILLS_KEEP === "1") {
        process.stderr.write(`DRILLS_KEEP=1: ${L.NAME} and stack ${L.NAME} are left running\n`);
        return;
    }
    await cleanup();
});

async function cleanup(): Promise<void> {
    L.note(`cleanup: ${L.NAME} destroyed with --wipe-data, stack state forgotten, DNS set and files removed`);
    const quiet = { timeoutMs: 120_000 };
    await removeScanNetns();
    if (L.guestRunning() || existsSync(`${L.B}/run-${L.NAME}`)) await L.destroyGuest(true);
    else rmSync(`${L.B}/data-${L.NAME}`, { recursive: true, force: true });
    if (existsSync(L.STACK_FILE)) await L.deploy("destroy", [], { label: "cleanup-forget-state", timeoutMs: 180_000 });
    await L.run("bash", [`${L.REPO}/testbed/dns-load.sh`, "--remove", L.NAME], quiet);
    for (const f of [L.STACK_FILE, `${L.B}/stacks/${L.NAME}.outputs.json`, L.SECRETS_FILE, L.E2E_FILE, L.CURRENT_CONFIG,
        `${L.WORK}/${L.NAME}.bad.json`, `${L.WORK}/${L.NAME}.bumped.json`, `${L.WORK}/${L.NAME}.bad2.json`, `${L.WORK}/${L.NAME}.bumped2.json`,
        `${L.WORK}/backup-copy`, `${L.WORK}/${L.NAME}.adopt.json`, `${L.WORK}/${L.NAME}.adopt-dump.json`, `${L.WORK}/pg-export`, `${L.WORK}/askpass.sh`, `${L.WORK}/roots.pem`]) {
        rmSync(f, { recursive: true, force: true });
    }
}

// ---- 1 ----
drill("1 replaced server keeps everything: users log in, room and messages there, media identical, signing key unchanged", 30, async (t) => {
    const w = await L.seedWorld(L.randomTag("d1"));
    const keys = await L.verifyKeys();
    const certBefore = await peerCertFingerprint(L.IP, 443, `matrix.${L.DOMAIN}`);
    L.note(`seeded ${w.users.length} users, room ${w.roomId}, ${w.messages.length} messages, ${w.media.size} bytes of media; key ${Object.keys(keys).join(",")}`);
    assert.deepEqual(await L.checkWorld(w), [], "the world reads back before the replacement");

    await L.destroyGuest(false);
    await L.bootGuest();
    await L.resetHttp();
    // What the operator of an existing server does after replacing the machine (README, serverId):
    // tell the program it is a new machine. (On DigitalOcean the new droplet id does this by itself.)
    const machineId = (await L.tsshOk("cat /etc/machine-id")).trim();
    const stack = L.readJson<{ config: Record<string, unknown> }>(L.currentConfigFile());
    assert.notEqual(stack.config.serverId, machineId, "the booted guest should be a new machine");
    stack.config.serverId = machineId;
    const replacedConfig = L.currentConfigFile();
    writeFileSync(replacedConfig, JSON.stringify(stack, null, 2), { mode: 0o600 });
    const r = await L.deployUp(replacedConfig, "d1-up-after-replace");
    const changes = /changes (\{.*\})/.exec(r.out)?.[1] ?? "?";
    let answers = false;
    if (r.code === 0) {
        try { await L.waitFor("Synapse on the replaced guest", 20_000, L.healthy); answers = true; } catch { /* see below */ }
    }
    const sameConfigWorked = await check(t, "1a re-deploy with serverId = the new machine-id provisions the replaced server (every step runs again)", () => {
        assert.ok(answers, `deploy.ts up exited ${r.code} with changes ${changes}, and the new guest does not serve ${L.HS}`);
        assert.match(changes, /"update":8\b/, `expected all 8 steps to run again, got ${changes}`);
    });
    if (!sameConfigWorked) {
        // What an operator must do today: make the engine forget the steps, then run them all again.
        L.note("workaround: forget the stack's state and run every step again on the replaced guest");
        await L.forgetState();
        const r2 = await L.deployUp(L.currentConfigFile(), "d1-up-after-forget");
        assert.equal(r2.code, 0, `deploy.ts up after forgetting the state failed:\n${L.tail(r2.out)}`);
        await L.waitFor("Synapse on the replaced guest", 60_000, L.healthy);
    }
    L.forgetAdmin();
    await check(t, "1b the kept data disk brings back users, room, messages, media bytes and the signing key", async () => {
        assert.deepEqual(await L.checkWorld(w, { login: true }), []);
        await L.adminLogin();
        assert.deepEqual(await L.verifyKeys(), keys, "the signing key changed");
        const certAfter = await peerCertFingerprint(L.IP, 443, `matrix.${L.DOMAIN}`);
        assert.equal(certAfter, certBefore, "the certificate changed (it lives on the data disk and should be kept)");
    });
});

// ---- 2 ----
drill("2 backup and restore: a backup restored on a fresh server brings back users, messages, media and the signing key", 30, async (t) => {
    const w = await L.seedWorld(L.randomTag("d2"));
    const keys = await L.verifyKeys();
    const out = await L.tsshOk("phillymesh-chat-backup", { timeoutMs: 300_000, label: "d2-backup" });
    const m = /backup (\S+): /.exec(out);
    assert.ok(m, `phillymesh-chat-backup printed no backup directory:\n${out}`);
    const dir = m[1];
    const stamp = dir.split("/").pop()!;
    L.note(`backup ${dir}: ${out.trim().split("\n").pop()}`);
    const alice: L.Session = { userId: w.users[0].userId, token: w.users[0].token };
    const later = [`${w.tag} after the backup 1`, `${w.tag} after the backup 2`];
    for (const body of later) await L.sendText(alice, w.roomId, body);

    // A safe copy off the data disk (which is about to be wiped), as an off-site copy would be.
    const onDisk = `${L.B}/data-${L.NAME}/backups/${stamp}`;
    const copy = `${L.WORK}/backup-copy/${stamp}`;
    rmSync(`${L.WORK}/backup-copy`, { recursive: true, force: true });
    mkdirSync(`${L.WORK}/backup-copy`, { recursive: true, mode: 0o700 });
    await L.runOk("cp", ["-a", onDisk, copy], { timeoutMs: 120_000 });
    for (const f of ["synapse.dump", "keys.tar", "media"]) assert.ok(existsSync(`${copy}/${f}`), `the backup lacks ${f}`);

    // A fresh server: new guest, empty data disk, every step run again.
    await L.destroyGuest(true);
    await L.forgetState();
    await L.bootGuest();
    await L.resetHttp();
    const r = await L.deployUp(L.currentConfigFile(), "d2-up-fresh-server");
    assert.equal(r.code, 0, `deploy.ts up on the fresh server failed:\n${L.tail(r.out)}`);
    await L.waitFor("Synapse on the fresh server", 60_000, L.healthy);
    await check(t, "2a the fresh server starts empty (the old users are unknown, another signing key)", async () => {
        await assert.rejects(L.login(w.users[0].name, w.users[0].password), /403|M_FORBIDDEN/);
        assert.notDeepEqual(await L.verifyKeys(), keys);
    });

    await L.runOk("cp", ["-a", copy, onDisk], { timeoutMs: 120_000 });
    const restore = await L.tssh(`phillymesh-chat-restore ${L.shQuote(dir)}`, { timeoutMs: 600_000, label: "d2-restore" });
    L.note(`restore: exit ${restore.code}: ${restore.out.trim().split("\n").pop()}`);
    const restoredAsIs = await check(t, "2b phillymesh-chat-restore <backup dir> succeeds on a backup made by phillymesh-chat-backup", () => {
        assert.equal(restore.code, 0, `phillymesh-chat-restore exited ${restore.code}:\n${L.tail(restore.out, 8)}`);
    });
    if (!restoredAsIs) {
        // What the failed restore left behind, then the operator's workaround: the same backup in a
        // directory the postgres user can read (the backups directory is root-only, 0700).
        const state = await L.tssh("systemctl is-active matrix-synapse; runuser -u postgres -- psql -tAq -d postgres " +
            "-c \"SELECT datname FROM pg_database WHERE datname LIKE 'synapse%' ORDER BY 1\"; " +
            "runuser -u postgres -- psql -tAq -d synapse -c \"SELECT count(*) FROM pg_tables WHERE schemaname = 'public'\"");
        t.diagnostic(`after the failed restore: synapse ${state.out.trim().replace(/\n/g, ", ")} (service state, databases, tables in 'synapse')`);
        const readable = `/var/tmp/drill-restore-${stamp}`;
        L.note(`workaround: restore from ${readable} (root:postgres, 0750/0640)`);
        await L.tsshOk(`rm -rf ${readable} && cp -a ${L.shQuote(dir)} ${readable} && chgrp -R postgres ${readable} && ` +
            `chmod 750 ${readable} && chmod 640 ${readable}/synapse.dump ${readable}/keys.tar`);
        const again = await L.tssh(`phillymesh-chat-restore ${readable}`, { timeoutMs: 600_000, label: "d2-restore-workaround" });
        await L.tssh(`rm -rf ${readable}`);
        assert.equal(again.code, 0, `the restore failed even from a readable copy:\n${L.tail(again.out, 8)}`);
    }
    await L.waitFor("Synapse after the restore", 120_000, L.healthy);
    L.forgetAdmin();
    await check(t, "2c after the restore the old users log in and read the old messages; media identical; signing key back", async () => {
        assert.deepEqual(await L.checkWorld(w, { mustBeAbsent: later, login: true }), []);
        await L.adminLogin();
        assert.deepEqual(await L.verifyKeys(), keys, "the signing key is not the backed-up one");
    });
});

// ---- 3 ----
const SCAN_NS = "drillscan";
const SCAN_IP = "10.250.0.49";

async function removeScanNetns(): Promise<void> {
    await L.run("ip", ["netns", "del", SCAN_NS], { timeoutMs: 10_000 });
    await L.run("ip", ["link", "del", `vh-${SCAN_NS}`], { timeoutMs: 10_000 });
}

drill("3 ports: from another host only 22, 80, 443 and 8448 answer; PostgreSQL and Synapse on loopback only; no SSH password login", 10, async (t) => {
    const taken = readdirSync(L.B).filter((d) => d.startsWith("run-")).map((d) => {
        try { return readFileSync(`${L.B}/${d}/ip`, "utf8").trim(); } catch { return ""; }
    });
    assert.ok(!taken.includes(SCAN_IP), `${SCAN_IP} is taken by a guest`);
    await removeScanNetns();
    try {
        for (const args of [["netns", "add", SCAN_NS], ["link", "add", `vh-${SCAN_NS}`, "type", "veth", "peer", "name", "eth0", "netns", SCAN_NS],
            ["link", "set", `vh-${SCAN_NS}`, "master", "brtest", "up"], ["-n", SCAN_NS, "link", "set", "lo", "up"],
            ["-n", SCAN_NS, "addr", "add", `${SCAN_IP}/24`, "dev", "eth0"], ["-n", SCAN_NS, "link", "set", "eth0", "up"]]) {
            await L.runOk("ip", args, { timeoutMs: 10_000 });
        }
        const scan = await L.runOk("ip", ["netns", "exec", SCAN_NS, process.execPath, `${L.REPO}/tests/drills/portscan.ts`, L.IP, "1", "10000", "400", "2000"],
            { timeoutMs: 180_000, label: "d3-portscan" });
        const s = JSON.parse(scan.out.trim().split("\n").pop()!);
        L.note(`scan of ${L.IP} from ${SCAN_IP}: open ${JSON.stringify(s.open)}, filtered ${s.filtered.length}, closed ${s.closed}, errors ${JSON.stringify(s.errors)} in ${s.ms} ms`);
        await check(t, "3a a TCP scan of ports 1-10000 from 10.250.0.49 finds exactly 22, 80, 443, 8448 open", () => {
            assert.deepEqual(s.open, [22, 80, 443, 8448]);
            assert.deepEqual(s.filtered, [], "ports that neither answered nor refused");
            assert.deepEqual(s.errors, {});
            assert.equal(s.closed, 10000 - 4);
        });
    } finally {
        await removeScanNetns();
    }

    const ss = await L.tsshOk("ss -Hltn");
    const listeners = ss.trim().split("\n").map((line) => {
        const local = line.trim().split(/\s+/)[3];
        const i = local.lastIndexOf(":");
        return { addr: local.slice(0, i), port: Number(local.slice(i + 1)) };
    });
    t.diagnostic(`listeners: ${listeners.map((l) => `${l.addr}:${l.port}`).join(" ")}`);
    const loopback = (a: string) => a === "127.0.0.1" || a === "[::1]" || /^127\./.test(a);
    await check(t, "3b on the server 5432 and 8008 listen on 127.0.0.1/::1 only; nothing else but 22/80/443/8448 beyond loopback", () => {
        for (const port of [5432, 8008]) {
            const on = listeners.filter((l) => l.port === port);
            assert.ok(on.length > 0, `nothing listens on ${port}`);
            assert.deepEqual(on.filter((l) => !loopback(l.addr)), [], `${port} is bound beyond loopback`);
        }
        assert.deepEqual(listeners.filter((l) => !loopback(l.addr) && ![22, 80, 443, 8448].includes(l.port)), []);
    });
    await check(t, "3c the admin API is not served publicly (443 and 8448)", async () => {
        for (const base of [L.HS, L.FED]) {
            const r = await L.http(`${base}/_synapse/admin/v1/server_version`);
            assert.notEqual(r.status, 200, `${base}/_synapse/admin answers: ${r.text.slice(0, 200)}`);
            assert.ok(!/server_version/.test(r.text), `${base}/_synapse/admin serves the admin API`);
        }
    });
    await check(t, "3d sshd: password and keyboard-interactive login off (sshd -T, the program's drop-in)", async () => {
        const effective = await L.tsshOk("sshd -T");
        assert.match(effective, /^passwordauthentication no$/m);
        assert.match(effective, /^kbdinteractiveauthentication no$/m);
        assert.match(effective, /^permitrootlogin (without-password|prohibit-password)$/m);
        const dropIn = await L.tsshOk("cat /etc/ssh/sshd_config.d/50-phillymesh-chat.conf");
        assert.match(dropIn, /^PasswordAuthentication no$/m);
    });
    await check(t, "3e an ssh login with a password is refused (the server offers publickey only)", async () => {
        const askpass = `${L.WORK}/askpass.sh`;
        writeFileSync(askpass, "#!/bin/sh\necho not-the-password-drill\n", { mode: 0o700 });
        for (const user of ["root", "debian"]) {
            const r = await L.run("ssh", ["-F", "/dev/null", "-v", "-o", "PreferredAuthentications=password,keyboard-interactive",
                "-o", "PubkeyAuthentication=no", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=5", `${user}@${L.IP}`, "true"],
            { timeoutMs: 30_000, env: { ...L.CHILD_ENV, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: "drills:0" } });
            assert.notEqual(r.code, 0, `ssh ${user}@${L.IP} with a password got in`);
            const methods = /Authentications that can continue: (\S+)/.exec(r.out)?.[1];
            assert.ok(methods, `no authentication methods seen for ${user}:\n${L.tail(r.out, 10)}`);
            assert.deepEqual(methods.split(","), ["publickey"], `${user}: the server offers ${methods}`);
            assert.match(r.out, /Permission denied \(publickey\)/);
        }
    });
});

// ---- 4 ----
async function peerCertFingerprint(host: string, port: number, servername: string): Promise<string> {
    const ca = [`${L.B}/pebble/roots.pem`, `${L.B}/pebble/roots-all.pem`].filter(existsSync).map((f) => readFileSync(f, "utf8"));
    return new Promise((resolve, reject) => {
        const s = tlsConnect({ host, port, servername, ca, timeout: 10_000 }, () => {
            const fp = s.getPeerCertificate().fingerprint256;
            s.end();
            resolve(fp);
        });
        s.on("error", reject);
        s.on("timeout", () => { s.destroy(); reject(new Error(`TLS ${host}:${port} timed out`)); });
    });
}

interface Probe { ok: boolean; protocol?: string; cipher?: string; out: string }

async function sClient(port: number, servername: string, args: string[]): Promise<Probe> {
    const roots = `${L.WORK}/roots.pem`;
    const r = await L.run("openssl", ["s_client", "-connect", `${L.IP}:${port}`, "-servername", servername, "-CAfile", roots, ...args],
        { timeoutMs: 20_000 });
    const cipher = /Cipher is (\S+)/.exec(r.out)?.[1];
    const protocol = /New, (TLSv[\d.]+|SSLv\d), Cipher is/.exec(r.out)?.[1] ?? /^\s*Protocol\s*:\s*(\S+)/m.exec(r.out)?.[1];
    return { ok: r.code === 0 && !!cipher && cipher !== "(NONE)", protocol, cipher, out: r.out };
}

/** The host's openssl TLS 1.2-and-older ciphers for a cipher string (empty when it cannot offer any). */
async function localCiphers(spec: string): Promise<{ name: string; kx: string; mac: string }[]> {
    const r = await L.run("openssl", ["ciphers", "-v", spec], { timeoutMs: 10_000 });
    if (r.code !== 0) return [];
    return r.out.trim().split("\n").map((l) => l.trim().split(/\s+/)).filter((f) => f[1] !== "TLSv1.3").map((f) => ({
        name: f[0], kx: f.find((x) => x.startsWith("Kx="))?.slice(3) ?? "", mac: f.find((x) => x.startsWith("Mac="))?.slice(4) ?? "",
    }));
}

drill("4 TLS: 1.0 and 1.1 refused, 1.2 and 1.3 accepted, only ECDHE + AEAD ciphers, HSTS max-age=63072000", 20, async (t) => {
    writeFileSync(`${L.WORK}/roots.pem`, [`${L.B}/pebble/roots.pem`, `${L.B}/pebble/roots-all.pem`].filter(existsSync)
        .map((f) => readFileSync(f, "utf8")).join("\n"), { mode: 0o600 });
    const targets: [number, string][] = [[443, `matrix.${L.DOMAIN}`], [443, `chat.${L.DOMAIN}`], [443, L.DOMAIN], [8448, L.DOMAIN]];
    const all = await localCiphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0");
    const weak: [string, string[]][] = [
        ["non-ECDHE key exchange", all.filter((c) => c.kx !== "ECDH").map((c) => c.name)],
        ["CBC and other non-AEAD", all.filter((c) => c.mac !== "AEAD").map((c) => c.name)],
        ["3DES", all.filter((c) => /DES-CBC3|3DES/.test(c.name)).map((c) => c.name)],
        ["RC4", all.filter((c) => /RC4/.test(c.name)).map((c) => c.name)],
        ["NULL / anonymous", all.filter((c) => /NULL|ADH|AECDH/.test(c.name)).map((c) => c.name)],
    ];
    for (const [cls, names] of weak) {
        t.diagnostic(names.length === 0 ? `this host's openssl cannot offer ${cls} ciphers; testssl.sh covers them` : `${cls}: ${names.length} ciphers offered per probe`);
    }
    const problems: string[] = [];
    const seen: string[] = [];
    for (const [port, sni] of targets) {
        for (const v of ["-tls1", "-tls1_1"]) {
            const p = await sClient(port, sni, [v, "-cipher", "DEFAULT@SECLEVEL=0"]);
            if (p.ok) problems.push(`${sni}:${port} accepts ${v} (${p.cipher})`);
            else if (!/alert protocol version|unsupported protocol|wrong version/i.test(p.out)) problems.push(`${sni}:${port} ${v}: refused, but not with a protocol_version alert: ${L.tail(p.out, 3)}`);
        }
        for (const v of ["-tls1_2", "-tls1_3"]) {
            const p = await sClient(port, sni, [v]);
            seen.push(`${sni}:${port} ${v} -> ${p.protocol ?? "?"} ${p.cipher ?? "?"}`);
            if (!p.ok || !/Verify return code: 0 \(ok\)/.test(p.out)) problems.push(`${sni}:${port} ${v} not accepted/verified: ${L.tail(p.out, 4)}`);
        }
        for (const [cls, names] of weak) {
            if (names.length === 0) continue;
            const p = await sClient(port, sni, ["-tls1_2", "-cipher", `${names.join(":")}:@SECLEVEL=0`]);
            if (p.ok) problems.push(`${sni}:${port} accepts ${cls}: ${p.cipher}`);
            // A refusal must come from the server (a handshake_failure alert), not from a client that could not offer them.
            else if (!/alert handshake failure/.test(p.out)) problems.push(`${sni}:${port} ${cls}: no server refusal seen: ${L.tail(p.out, 3)}`);
        }
        const tickets = await sClient(port, sni, ["-tls1_2"]);
        if (/TLS session ticket:/.test(tickets.out)) problems.push(`${sni}:${port} issues TLS 1.2 session tickets (ssl_session_tickets off)`);
    }
    for (const line of seen) t.diagnostic(line);
    await check(t, "4a openssl s_client probes of 443 (matrix., chat., apex) and 8448", () => assert.deepEqual(problems, []));

    await check(t, "4b HSTS max-age=63072000 on every HTTPS answer (matrix., chat., apex, 8448)", async () => {
        for (const url of [`${L.HS}/_matrix/client/versions`, `https://chat.${L.DOMAIN}/`, `https://${L.DOMAIN}/.well-known/matrix/client`,
            `${L.FED}/_matrix/key/v2/server`, `${L.HS}/no-such-page`]) {
            const r = await L.http(url);
            assert.equal(r.headers.get("strict-transport-security"), "max-age=63072000", `${url} (HTTP ${r.status})`);
        }
    });

    if (!existsSync("/usr/bin/testssl")) {
        L.note("testssl.sh is not installed: apt-get install testssl.sh");
        await L.run("apt-get", ["install", "-y", "-q", "-o", "DPkg::Lock::Timeout=120", "testssl.sh"], { timeoutMs: 300_000, label: "apt-install-testssl" });
    }
    if (!existsSync("/usr/bin/testssl")) {
        t.diagnostic("testssl.sh could not be installed: only the openssl probes ran");
        return;
    }
    await check(t, "4c testssl.sh: no SSLv2/3, TLS 1.0/1.1; TLS 1.2/1.3 offered; no NULL/aNULL/EXPORT/LOW/3DES/CBC; HSTS 730 days", async () => {
        const bad: string[] = [];
        for (const [port, host] of [[443, `matrix.${L.DOMAIN}`], [443, `chat.${L.DOMAIN}`], [8448, L.DOMAIN]] as [number, string][]) {
            const json = `${L.WORK}/testssl-${host}-${port}.json`;
            rmSync(json, { force: true });
            await L.run("testssl", ["--quiet", "--color", "0", "--warnings", "off", "--add-ca", `${L.WORK}/roots.pem`, "--ip", L.IP, "--nodns", "none",
                "-p", "-s", "-f", "-h", "--jsonfile", json, `https://${host}:${port}/`], { timeoutMs: 300_000, label: `d4-testssl-${host}-${port}` });
            assert.ok(existsSync(json), `testssl.sh wrote no ${json}`);
            const findings = new Map((L.readJson<{ id: string; severity: string; finding: string }[]>(json)).map((f) => [f.id, f]));
            const want = (id: string, re: RegExp) => {
                const f = findings.get(id);
                if (!f || !re.test(f.finding)) bad.push(`${host}:${port} ${id}: ${f ? f.finding : "missing"}`);
            };
            for (const id of ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]) want(id, /^not offered/);
            want("TLS1_2", /^offered/);
            want("TLS1_3", /^offered/);
            for (const id of ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"]) want(id, /^not offered/);
            want("cipherlist_STRONG", /^offered/);
            want("HSTS_time", /63072000/);
            const notable = [...findings.values()].filter((f) => ["MEDIUM", "HIGH", "CRITICAL"].includes(f.severity));
            t.diagnostic(`testssl ${host}:${port} MEDIUM+ findings: ${notable.map((f) => `${f.id}=${f.finding}`).join("; ") || "none"}`);
        }
        assert.deepEqual(bad, []);
    });
});

// ---- 5 ----
drill("5 URL previews: private, loopback, link-local and IPv6-loopback targets are refused (also 10.250.0.0/24, despite the federation allowlist)", 10, async (t) => {
    const regToken = await L.newRegistrationToken(1);
    const name = L.randomTag("d5");
    const reg = await L.register(name, `pw-${L.randomTag("")}-x`, regToken);
    assert.equal(reg.status, 200, reg.text);
    const s: L.Session = { userId: reg.json.user_id, token: reg.json.access_token };
    const hostLog = `${L.B}/log/element-http.log`;
    const logBefore = existsSync(hostLog) ? statSync(hostLog).size : 0;
    const hsYaml = await L.tsshOk("cat /etc/matrix-synapse/homeserver.yaml");
    t.diagnostic(`homeserver.yaml: ip_range_whitelist ${/ip_range_whitelist:\n((?:\s+- .*\n)+)/.exec(hsYaml)?.[1]?.replace(/\s+/g, " ") ?? "none"}; ` +
        `url_preview_ip_range_whitelist ${/url_preview_ip_range_whitelist/.test(hsYaml) ? "set" : "not set"}`);

    const targets = [
        "http://10.250.0.1:8090/", // the testbed host (its Element server answers): private, and inside federationIpAllowlist
        "http://127.0.0.1:8008/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://0.0.0.0:8008/",
        "http://localhost:8008/",
        `http://${L.DOMAIN}/`, // a name that resolves to the server's own private address
        "http://2130706433:8008/", // 127.0.0.1 as one decimal number
    ];
    const seen: string[] = [];
    const previewed: string[] = [];
    for (const url of targets) {
        for (const path of ["/_matrix/media/v3/preview_url", "/_matrix/client/v1/media/preview_url"]) {
            const r = await L.mx("GET", `${path}?url=${encodeURIComponent(url)}`, { token: s.token });
            seen.push(`${url} ${path.includes("v3") ? "v3" : "v1"}: ${r.status} ${r.json?.error ?? r.text.slice(0, 80)}`);
            if (r.status === 200) previewed.push(`${url} via ${path}: ${r.text.slice(0, 200)}`);
        }
    }
    for (const line of seen) t.diagnostic(line);
    await check(t, "5a no preview is made for any of them (each request is an error)", () => assert.deepEqual(previewed, []));
    await check(t, "5b 10.250.0.1 (in federationIpAllowlist) is refused by the preview blocklist itself: 'IP address blocked', no request reached it", () => {
        for (const line of seen.filter((l) => l.startsWith("http://10.250.0.1:8090/"))) assert.match(line, /: 403 IP address blocked$/);
        const log = existsSync(hostLog) ? readFileSync(hostLog).subarray(logBefore).toString() : "";
        const hits = log.split("\n").filter((l) => l.startsWith(`${L.IP} `) && /"GET \/ /.test(l));
        assert.deepEqual(hits, [], "the server fetched the preview target");
    });
    await check(t, "5c loopback, link-local, 0.0.0.0 and names resolving to private addresses are blocked, not merely unreachable", async () => {
        for (const u of ["http://127.0.0.1:8008/", "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0:8008/"]) {
            for (const line of seen.filter((l) => l.startsWith(`${u} `))) assert.match(line, /: 403 IP address blocked$/);
        }
        const log = await L.tsshOk(`grep -F 'from DNS resolution to' /var/log/matrix-synapse/homeserver.log | tail -n 50`);
        assert.match(log, new RegExp(`Blocked ${L.IP.replaceAll(".", "\\.")} from DNS resolution to ${L.DOMAIN.replaceAll(".", "\\.")}`));
        assert.match(log, /Blocked 127\.0\.0\.1 from DNS resolution to localhost/);
    });
});

// ---- 6 ----
drill("6 registration: refused without a token or with a bad one; an admin-made token works; uses_allowed 1 admits exactly one", 10, async (t) => {
    const tag = L.randomTag("d6");
    const pw = `pw-${L.randomTag("")}-drill`;
    const exists = async (name: string) => (await L.adminApi("GET", `/_synapse/admin/v2/users/${encodeURIComponent(`@${name}:${L.DOMAIN}`)}`)).status === 200;

    await check(t, "6a without a token: 401, every flow needs m.login.registration_token, dummy auth does not get in, no account", async () => {
        const r = await L.register(`${tag}-none`, pw);
        assert.equal(r.status, 401, r.text);
        assert.equal(r.json.access_token, undefined);
        const flows: { stages: string[] }[] = r.json.flows;
        assert.ok(flows.length > 0 && flows.every((f) => f.stages.includes("m.login.registration_token")), JSON.stringify(flows));
        const dummy = await L.mx("POST", "/_matrix/client/v3/register", {
            body: { username: `${tag}-none`, password: pw, auth: { type: "m.login.dummy", session: r.json.session } },
        });
        assert.notEqual(dummy.status, 200, dummy.text);
        assert.equal(dummy.json?.access_token, undefined);
        assert.equal(await exists(`${tag}-none`), false);
    });
    await check(t, "6b a made-up token is refused and reported invalid", async () => {
        const r = await L.register(`${tag}-bogus`, pw, "drill-not-a-token");
        assert.notEqual(r.status, 200, r.text);
        assert.equal(r.json?.access_token, undefined);
        const v = await L.mxOk("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=drill-not-a-token");
        assert.equal(v.valid, false);
        assert.equal(await exists(`${tag}-bogus`), false);
    });
    const token = await L.newRegistrationToken(1);
    await check(t, "6c an admin-API token with uses_allowed 1 registers one account, which can log in", async () => {
        const r = await L.register(`${tag}-first`, pw, token);
        assert.equal(r.status, 200, r.text);
        assert.match(r.json.access_token, /./);
        assert.equal((await L.login(`${tag}-first`, pw)).userId, `@${tag}-first:${L.DOMAIN}`);
    });
    await check(t, "6d the same token then admits no one: second registration refused, token reported used up", async () => {
        const r = await L.register(`${tag}-second`, pw, token);
        assert.notEqual(r.status, 200, r.text);
        assert.equal(r.json?.access_token, undefined);
        assert.equal(await exists(`${tag}-second`), false);
        const v = await L.mxOk("GET", `/_matrix/client/v1/register/m.login.registration_token/validity?token=${encodeURIComponent(token)}`);
        assert.equal(v.valid, false);
        const info = await L.adminApi("GET", `/_synapse/admin/v1/registration_tokens/${encodeURIComponent(token)}`);
        assert.equal(info.status, 200, info.text);
        assert.equal(info.json.uses_allowed, 1);
        assert.equal(info.json.completed, 1);
        assert.equal(info.json.pending, 0);
    });
    // Observation (allowGuestAccess defaults to true): guests get an account without any token.
    const guest = await L.mx("POST", "/_matrix/client/v3/register?kind=guest", { body: {} });
    t.diagnostic(`guest registration (allowGuestAccess): HTTP ${guest.status} ${guest.json?.user_id ?? guest.text.slice(0, 120)}`);
    if (guest.status === 200) {
        await check(t, "6e a guest (allowGuestAccess) cannot create a room or upload media", async () => {
            const room = await L.mx("POST", "/_matrix/client/v3/createRoom", { token: guest.json.access_token, body: { preset: "private_chat" } });
            assert.equal(room.status, 403, room.text);
            const up = await L.mx("POST", "/_matrix/media/v3/upload?filename=g.bin", { token: guest.json.access_token, raw: new Uint8Array(16) });
            assert.notEqual(up.status, 200, `a guest uploaded media: ${up.text}`);
        });
    }
});

// ---- 8 ----
drill("8 a step that fails half way: the package proxy cut mid-install of a Synapse bump fails naming the synapse step and pip's error, the old Synapse keeps serving; the same up converges once the proxy is back", 30, async (t) => {
    const base = L.readJson(L.currentConfigFile());
    const from: string = base.config.synapseVersion;
    const to = process.env.DRILL_SYNAPSE_BUMP ?? "1.163.2";
    assert.notEqual(from, to, `the stack already runs ${to}: set DRILL_SYNAPSE_BUMP to another version`);
    assert.equal(await L.synapseVersion(), from);
    const w = await L.seedWorld(L.randomTag("d8"));
    const mainPid = async () => (await L.tsshOk("systemctl show -p MainPID --value matrix-synapse")).trim();
    const pidBefore = await mainPid();
    // pip's own cache on the server may already hold the new release (an earlier run of this drill):
    // emptied, so that the new release's files really come through the proxy that is cut.
    await L.tsshOk("rm -rf /root/.cache/pip");

    // The PyPI proxy, through a forwarder that is cut when the install is well under way: pip has
    // fetched the new release's own wheel (matrix_synapse-<to>-*.whl, ~8.7 MiB) and CUT_FROM bytes
    // in all, and is CUT_INTO bytes into the next file it downloads (a dependency: the whole install
    // fetches ~110 files, ~39 MiB, with pip's cache emptied).
    const CUT_FROM = 16 * 1048576;
    const CUT_INTO = 512 * 1024;
    const release = new RegExp(`/matrix_synapse-${to.replaceAll(".", "\\.")}[-.][^/]*\\.(whl|tar\\.gz)$`);
    const isFile = (path: string) => /\.(whl|tar\.gz|zip)$/.test(path);
    const proxy = await CutProxy.start({
        cutWhen: (s, req) => req && isFile(req.path) && req.bytes >= CUT_INTO && s.bytesToGuest - req.bytes >= CUT_FROM &&
            s.requests.some((q) => release.test(q.path)) ? `${CUT_INTO} bytes into ${req.path.split("/").pop()}, ${s.requests.length} requests in` : false,
    });
    L.note(`cut proxy on ${proxy.indexUrl} (to the PyPI proxy ${PYPI_PROXY.host}:${PYPI_PROXY.port})`);
    proxy.whenCut().then((c) => L.note(`proxy cut: ${c.reason}`), () => undefined);
    const badFile = `${L.WORK}/${L.NAME}.bad.json`;
    writeFileSync(badFile, JSON.stringify({ ...base, config: { ...base.config, synapseVersion: to, pipIndexUrl: proxy.indexUrl } }, null, 2), { mode: 0o600 });
    const events = `${L.LOGS}/d8-cut.events.json`;
    let r: L.RunResult;
    try {
        r = await L.deployUp(badFile, "d8-up-proxy-cut", ["--events", events]);
    } finally {
        await proxy.close();
    }
    const cut = proxy.cutAt;
    t.diagnostic(`proxy: ${proxy.summary()}`);
    L.note(`proxy: ${proxy.summary()}`);
    type StepEvent = { urn: string; type: string; ops: string[]; failed?: boolean; start?: number };
    const steps = existsSync(events) ? L.readJson<StepEvent[]>(events).filter((s) => s.type.endsWith("Command") && s.ops.some((o) => o !== "same")) : [];
    const stepName = (s: StepEvent) => s.urn.split("::").pop()!;
    const ran = steps.map((s) => `${stepName(s)}${s.failed ? " FAILED" : ""}`);
    const synStart = steps.find((s) => stepName(s) === "chat-synapse-run")?.start ?? Infinity;
    t.diagnostic(`cut up: exit ${r.code}; steps run: ${ran.join(", ") || "none"}`);
    const pipError = L.tail(r.out, 400).split("\n").filter((l) => /ERROR|Error|rror:/.test(l)).slice(-4).join(" | ");
    t.diagnostic(`pip: ${pipError}`);
    await check(t, "8a the proxy is cut mid-install (the new release's wheel and 16 MiB fetched, a dependency part way); deploy.ts up exits non-zero, naming the synapse step and pip's error; no later step runs", () => {
        assert.ok(cut, `the proxy was never cut: ${proxy.summary()}`);
        // Mid-install, not before: the release's wheel and CUT_FROM bytes had come through, and a
        // file was partly through when the connection was reset.
        assert.ok(cut.requests.length >= 10, `only ${cut.requests.length} requests before the cut`);
        assert.ok(cut.requests.some((q) => release.test(q.path) && q.bytes > CUT_INTO), `the release's wheel was not fetched before the cut: ${proxy.summary()}`);
        assert.ok(isFile(cut.during?.path ?? "") && (cut.during?.bytes ?? 0) >= CUT_INTO, proxy.summary());
        assert.ok(cut.bytesToGuest >= CUT_FROM + CUT_INTO && cut.open >= 1, proxy.summary());
        assert.notEqual(r.code, 0);
        assert.match(r.out, /chat-synapse-run/);
        assert.match(r.out, /\[synapse\] FAILED \(exit \d+\)/);
        assert.match(r.out, /pip could not install Synapse \S+ from \S+ \(its error is above\); the running Synapse was not touched/);
        // pip's own words: the broken download, or the refused connection of its retry.
        assert.match(r.out, /Connection reset by peer|ConnectionResetError|IncompleteRead|Connection broken|Connection refused|Max retries exceeded/);
        assert.match(r.out, new RegExp(`10\\.250\\.0\\.1.{0,40}${proxy.port}|matrix_synapse-${to.replaceAll(".", "\\.")}`));
        // Steps before it may run when their own inputs changed; none after it, and no other failure.
        assert.deepEqual(ran.filter((x) => x.endsWith(" FAILED")), ["chat-synapse-run FAILED"]);
        assert.deepEqual(steps.filter((s) => stepName(s) !== "chat-synapse-run" && (s.start ?? 0) >= synStart).map(stepName), []);
    });
    await check(t, `8b the running Synapse was not restarted and still answers ${from}, /opt/synapse/current untouched, the half-made ${to} venv not marked complete, users still log in`, async () => {
        assert.equal(await L.synapseVersion(), from);
        assert.equal(await mainPid(), pidBefore, "Synapse's main process changed: it was stopped or restarted by the failed run");
        const cur = (await L.tsshOk("readlink /opt/synapse/current; ls /opt/synapse/venvs; test -f /opt/synapse/venvs/" + to + "/.complete && echo complete || echo incomplete")).trim().split("\n");
        t.diagnostic(`after the cut: current -> ${cur[0]}; venvs: ${cur.slice(1, -1).join(" ")}; ${to}: ${cur.at(-1)}`);
        assert.equal(cur[0], `/opt/synapse/venvs/${from}`);
        assert.equal(cur.at(-1), "incomplete");
        assert.deepEqual(await L.checkWorld(w), []);
    });

    // The proxy is back (a fresh forwarder on the same port) and the operator runs the same `up` again.
    const back = await CutProxy.start({ port: proxy.port });
    let r2: L.RunResult;
    try {
        r2 = await L.deployUp(badFile, "d8-up-proxy-back");
    } finally {
        await back.close();
    }
    t.diagnostic(`proxy back: ${back.summary()}`);
    const goodFile = `${L.WORK}/${L.NAME}.bumped.json`;
    writeFileSync(goodFile, JSON.stringify({ ...base, config: { ...base.config, synapseVersion: to } }, null, 2), { mode: 0o600 });
    // What later drills deploy with: the bumped release from the testbed's own index (the forwarder
    // is gone after this drill; only pipIndexUrl differs, so their next `up` re-runs the step once).
    if (r2.code === 0) writeFileSync(L.CURRENT_CONFIG, readFileSync(goodFile), { mode: 0o600 });
    await check(t, `8c the same up with the proxy back converges: the cut file fetched in full, ${to} answering, ${from} kept for a rollback, a preview then shows no changes`, async () => {
        assert.equal(r2.code, 0, L.tail(r2.out));
        // The file that was cut now came through the forwarder in full. (The files completed before
        // the cut, the release's wheel among them, may come from pip's own cache instead: it keeps
        // whole responses only.)
        assert.ok(back.state.requests.length > 0, "nothing came through the forwarder");
        if (cut?.during) {
            const again = back.state.requests.find((q) => q.path === cut.during!.path);
            assert.ok(again && again.bytes > cut.during.bytes, `${cut.during.path} did not come through again in full: ${back.summary()}`);
        }
        await L.waitFor(`Synapse ${to}`, 60_000, async () => (await L.synapseVersion()) === to);
        const v = (await L.tsshOk(`readlink /opt/synapse/current; ls /opt/synapse/venvs; test -f /opt/synapse/venvs/${to}/.complete && echo complete`)).trim().split("\n");
        assert.equal(v[0], `/opt/synapse/venvs/${to}`);
        assert.equal(v.at(-1), "complete");
        assert.deepEqual(v.slice(1, -1).sort(), [from, to].sort());
        assert.deepEqual(await L.checkWorld(w, { login: true }), []);
        const p = await L.deploy("preview", ["--config", badFile, "--expect-no-changes"], { label: "d8-preview-after" });
        assert.equal(p.code, 0, L.tail(p.out));
    });
    if (r2.code !== 0) return;

    // The same failure once more, now from a dead index (nothing fetched at all) with a setting
    // riding along (maxUploadSizeMb 50 -> 49); then the operator drops the bump and keeps the
    // setting: does the setting reach the running Synapse?
    const mb = 49;
    const withSetting = { ...base.config, synapseVersion: to, maxUploadSizeMb: String(mb) };
    const bad2File = `${L.WORK}/${L.NAME}.bad2.json`;
    writeFileSync(bad2File, JSON.stringify({ ...base, config: { ...withSetting, synapseVersion: "1.999.0", pipIndexUrl: L.DEAD_INDEX } }, null, 2), { mode: 0o600 });
    const r3 = await L.deployUp(bad2File, "d8-up-dead-index-with-setting");
    assert.notEqual(r3.code, 0, "the second bump from the dead index did not fail");
    const good2File = `${L.WORK}/${L.NAME}.bumped2.json`;
    writeFileSync(good2File, JSON.stringify({ ...base, config: withSetting }, null, 2), { mode: 0o600 });
    const r4 = await L.deployUp(good2File, "d8-up-setting-only");
    if (r4.code === 0) writeFileSync(L.CURRENT_CONFIG, readFileSync(good2File), { mode: 0o600 });
    await check(t, `8d a setting changed together with a failed bump reaches the running Synapse once the step succeeds (max upload ${mb} MB)`, async () => {
        assert.equal(r4.code, 0, L.tail(r4.out));
        const admin = await L.adminLogin();
        const cfg = await L.mxOk("GET", "/_matrix/client/v1/media/config", { token: admin.token });
        const file = (await L.tsshOk("grep '^max_upload_size' /etc/matrix-synapse/homeserver.yaml")).trim();
        assert.equal(cfg["m.upload.size"], mb * 1024 * 1024,
            `homeserver.yaml says "${file}" but the running Synapse still enforces ${cfg["m.upload.size"]} bytes: ` +
            "the failed run wrote the file, the next run saw no change and did not restart Synapse");
    });
    await check(t, `8e the previous release (${from}) is still kept for a rollback after a later run of the synapse step`, async () => {
        const venvs = (await L.tsshOk("ls /opt/synapse/venvs")).trim().split("\n");
        assert.ok(venvs.includes(from), `/opt/synapse/venvs holds only ${venvs.join(", ")}`);
    });
    await check(t, "8f the bump from a dead index (nothing fetched at all) failed naming the synapse step, pip's \"No matching distribution\" and the dead index", () => {
        assert.match(r3.out, /chat-synapse-run/);
        assert.match(r3.out, /\[synapse\] FAILED \(exit \d+\)/);
        assert.match(r3.out, /No matching distribution found for matrix-synapse|Could not find a version that satisfies/);
        assert.match(r3.out, /pypi\.test.*3999|3999.*pypi\.test|Connection refused/);
    });
});

// ---- 9 ----
drill("9 adopting an old server on SQLite: synapse_port_db carries users, room, messages, media and the signing key over; the old files are untouched; it happens once", 35, async (t) => {
    const base = L.readJson<{ config: Record<string, unknown> }>(L.currentConfigFile());
    const oldVersion = process.env.DRILL_OLD_SYNAPSE ?? "1.162.0";
    // A machine that runs only the old server: the guest and its data disk from nothing.
    await L.destroyGuest(true);
    await L.forgetState();
    await L.bootGuest();
    await L.resetHttp();
    L.forgetAdmin();
    const oldServer = await L.tsshOk(
        `bash -s -- ${L.shQuote(oldVersion)} ${L.shQuote(String(base.config.pipIndexUrl))} ${L.shQuote(L.DOMAIN)}`,
        { input: readFileSync(`${L.REPO}/tests/drills/old-synapse.sh`, "utf8"), timeoutMs: 900_000, label: "d9-old-server" },
    );
    const [keyPath, dbPath, mediaPath] = oldServer.trim().split("\n").slice(-3);
    const OLD = `http://${L.IP}:8008`;
    L.note(`old server: Synapse ${oldVersion} on SQLite (${dbPath}), key ${keyPath}, media ${mediaPath}`);

    // Its world: two users (made as its admin would, with register_new_matrix_user), a private room,
    // messages from both, a file; filled over its own HTTP port.
    const tag = L.randomTag("d9");
    const users: L.User[] = [];
    for (const who of ["alice", "bob"]) {
        const name = `${tag}-${who}`;
        const password = randomBytes(12).toString("base64url");
        await L.tsshOk(`/opt/old-synapse/bin/register_new_matrix_user -c /etc/matrix-synapse/homeserver.yaml --no-admin -u ${L.shQuote(name)} -p ${L.shQuote(password)} http://127.0.0.1:8008`);
        const j = await L.mxOk("POST", "/_matrix/client/v3/login", { base: OLD, body: { type: "m.login.password", identifier: { type: "m.id.user", user: name }, password } });
        users.push({ name, password, userId: j.user_id, token: j.access_token });
    }
    const [a, b] = users.map((u) => ({ userId: u.userId, token: u.token }));
    const roomName = `${tag} old room`;
    const roomId = (await L.mxOk("POST", "/_matrix/client/v3/createRoom", { base: OLD, token: a.token, body: { preset: "private_chat", name: roomName, invite: [b.userId] } })).room_id as string;
    await L.mxOk("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, { base: OLD, token: b.token, body: {} });
    const messages: string[] = [];
    for (let i = 1; i <= 6; i++) {
        const s = i % 2 ? a : b;
        const body = `${tag} old message ${i} from ${s.userId}`;
        await L.mxOk("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${tag}-${i}`, { base: OLD, token: s.token, body: { msgtype: "m.text", body } });
        messages.push(body);
    }
    const bytes = new Uint8Array(randomBytes(200 * 1024));
    const mxc = (await L.mxOk("POST", `/_matrix/media/v3/upload?filename=${tag}.bin`, { base: OLD, token: a.token, raw: bytes })).content_uri as string;
    await L.mxOk("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${tag}-file`, {
        base: OLD, token: a.token, body: { msgtype: "m.file", body: `${tag}.bin`, url: mxc, info: { size: bytes.length } },
    });
    messages.push(`${tag}.bin`);
    const w: L.World = { tag, users, roomId, roomName, messages, media: { mxc, sha256: L.sha256(bytes), size: bytes.length } };
    const oldKeys = (await L.http(`${OLD}/_matrix/key/v2/server`)).json.verify_keys as Record<string, { key: string }>;
    L.note(`old world: ${users.length} users, room ${roomId}, ${messages.length} messages, ${bytes.length} bytes of media; key ${Object.keys(oldKeys).join(",")}`);

    const machineId = (await L.tsshOk("cat /etc/machine-id")).trim();
    const adopting = { ...base, config: { ...base.config, serverId: machineId, adoptSigningKey: keyPath, adoptSqliteDatabase: dbPath, adoptMediaStore: mediaPath } };
    const adoptFile = `${L.WORK}/${L.NAME}.adopt.json`;
    writeFileSync(adoptFile, JSON.stringify(adopting, null, 2), { mode: 0o600 });

    const r1 = await L.deployUp(adoptFile, "d9-up-old-running");
    await check(t, "9a with the old Synapse still running, up fails in the synapse step saying so, and the old server is unharmed", async () => {
        assert.notEqual(r1.code, 0, "deploy.ts up succeeded although the old Synapse holds port 8008");
        assert.match(r1.out, /chat-synapse-run/);
        assert.match(r1.out, /listens on port 8008; stop the old Synapse first/);
        assert.doesNotMatch(r1.out, /installing Synapse/, "the check should come before any download");
        const j = await L.mxOk("GET", "/_matrix/client/v3/joined_rooms", { base: OLD, token: a.token });
        assert.ok((j.joined_rooms as string[]).includes(roomId), "the old server lost its room");
    });

    await L.tsshOk("systemctl stop old-synapse");
    // What the old server left, to compare after the adoption (it only reads them).
    const oldSums = await L.tsshOk(`sha256sum ${L.shQuote(dbPath)} ${L.shQuote(keyPath)}`);
    const r2 = await L.deployUp(adoptFile, "d9-up-adopt");
    let answers = false;
    if (r2.code === 0) {
        try { await L.waitFor("the adopted server", 60_000, L.healthy); answers = true; } catch { /* reported below */ }
    }
    await check(t, "9b up adopts: background updates finished on a copy, synapse_port_db, media copied, the server answers", () => {
        assert.ok(r2.code === 0 && answers, `deploy.ts up exited ${r2.code}; answering: ${answers}\n${L.tail(r2.out, 40)}`);
        for (const line of [/adopting: the old SQLite database has 2 users/, /finishing its background updates/, /porting the SQLite database to PostgreSQL/, /adopting: the port done: \d+ events, 2 users/, /adopting: copying the media store/, /adopting: finished in \d+ s/]) {
            assert.match(r2.out, line);
        }
    });
    await check(t, "9c the old users log in with their old passwords and see the room, every message in order and the same media bytes; the signing key is the old one", async () => {
        assert.deepEqual(await L.checkWorld(w, { login: true }), []);
        assert.deepEqual(await L.verifyKeys(), oldKeys, "the published signing key is not the old server's");
        await L.adminLogin();
    });
    await check(t, "9d the old files are untouched; the old config is kept aside; conf.d holds only the program's; adopted is recorded", async () => {
        assert.equal(await L.tsshOk(`sha256sum ${L.shQuote(dbPath)} ${L.shQuote(keyPath)}`), oldSums);
        const out = await L.tsshOk("head -n 1 /mnt/matrix_data/synapse/adopted; ls /etc/matrix-synapse/conf.d/ | tr '\\n' ' '; echo; ls /etc/matrix-synapse/conf.d.before-phillymesh-chat/; ls /etc/matrix-synapse/homeserver.yaml.before-phillymesh-chat");
        t.diagnostic(out.trim().replace(/\n/g, "; "));
        assert.match(out, /^adopted \S+ in \d+ s$/m);
        assert.match(out, /^server_name\.yaml$/m);
        assert.match(out, /homeserver\.yaml\.before-phillymesh-chat/);
        assert.doesNotMatch(out.split("\n")[1], /server_name/);
    });

    // Life goes on: a message on the new server, then a run that re-runs the synapse step with the
    // adopt* settings still set (a setting change). Nothing may be ported over it again.
    const after = `${tag} written after the adoption`;
    await L.sendText({ userId: a.userId, token: a.token }, roomId, after);
    const later = { ...adopting, config: { ...adopting.config, maxUploadSizeMb: "45" } };
    writeFileSync(adoptFile, JSON.stringify(later, null, 2), { mode: 0o600 });
    const r3 = await L.deployUp(adoptFile, "d9-up-again");
    await check(t, "9e a later run with the adopt settings still set leaves the data alone: the message written since is there, the old access tokens still work", async () => {
        assert.equal(r3.code, 0, L.tail(r3.out));
        assert.match(r3.out, /this server adopted its data before/);
        assert.doesNotMatch(r3.out, /porting the SQLite database/);
        await L.waitFor("Synapse after the re-run", 60_000, L.healthy);
        assert.deepEqual(await L.checkWorld({ ...w, messages: [...w.messages, after] }), []);
    });
    // The stack's config from now on (drill 7 and later runs use it).
    writeFileSync(L.CURRENT_CONFIG, JSON.stringify(later, null, 2), { mode: 0o600 });
});

// ---- 10 ----
drill("10 adopting an old server from a PostgreSQL dump onto a new machine: up names the missing file, then restores the dump (another owner role), key and media", 30, async (t) => {
    const base = L.readJson<{ config: Record<string, unknown> }>(L.currentConfigFile());
    const w = await L.seedWorld(L.randomTag("d10"));
    const keys = await L.verifyKeys();
    // The old server's admin makes a plain pg_dump (its role was called synapse_user), and keeps the
    // signing key and the media store: here they are taken from the running server and kept on the host.
    const exportDir = "/mnt/matrix_data/export";
    await L.tsshOk(`systemctl stop matrix-synapse && rm -rf ${exportDir} && install -d -m 700 ${exportDir} && ` +
        `runuser -u postgres -- pg_dump synapse | sed -e 's/OWNER TO synapse;/OWNER TO synapse_user;/' >${exportDir}/synapse.sql && ` +
        `cp /mnt/matrix_data/synapse/keys/signing.key ${exportDir}/old.signing.key && cp -a /mnt/matrix_data/synapse/media ${exportDir}/media_store && ` +
        `grep -c 'OWNER TO synapse_user' ${exportDir}/synapse.sql`, { timeoutMs: 300_000, label: "d10-export" });
    const kept = `${L.WORK}/pg-export`;
    rmSync(kept, { recursive: true, force: true });
    await L.runOk("cp", ["-a", `${L.B}/data-${L.NAME}/export`, kept], { timeoutMs: 120_000 });

    // A new machine with an empty volume.
    await L.destroyGuest(true);
    await L.forgetState();
    await L.bootGuest();
    await L.resetHttp();
    L.forgetAdmin();
    const { adoptSqliteDatabase: _s, adoptPostgresDump: _p, adoptSigningKey: _k, adoptMediaStore: _m, ...plain } = base.config;
    void [_s, _p, _k, _m];
    const machineId = (await L.tsshOk("cat /etc/machine-id")).trim();
    const cfg = {
        ...base,
        config: {
            ...plain, serverId: machineId,
            adoptSigningKey: "/mnt/matrix_data/adopt/old.signing.key",
            adoptPostgresDump: "/mnt/matrix_data/adopt/synapse.sql",
            adoptMediaStore: "/mnt/matrix_data/adopt/media_store",
        },
    };
    const file = `${L.WORK}/${L.NAME}.adopt-dump.json`;
    writeFileSync(file, JSON.stringify(cfg, null, 2), { mode: 0o600 });

    const r1 = await L.deployUp(file, "d10-up-files-missing");
    await check(t, "10a before the old files are on the new machine, up fails in the synapse step naming the key and the path", () => {
        assert.notEqual(r1.code, 0);
        assert.match(r1.out, /chat-synapse-run/);
        assert.match(r1.out, /adoptSigningKey: \/mnt\/matrix_data\/adopt\/old\.signing\.key is not a file on this server \(copy it there first/);
    });

    // The operator copies them onto the volume (scp in the README; here the data disk is at hand).
    await L.runOk("cp", ["-a", kept, `${L.B}/data-${L.NAME}/adopt`], { timeoutMs: 120_000 });
    const r2 = await L.deployUp(file, "d10-up-adopt");
    let answers = false;
    if (r2.code === 0) {
        try { await L.waitFor("the adopted server", 60_000, L.healthy); answers = true; } catch { /* reported below */ }
    }
    await check(t, "10b the next up restores the dump and converges", () => {
        assert.ok(r2.code === 0 && answers, `deploy.ts up exited ${r2.code}; answering: ${answers}\n${L.tail(r2.out, 40)}`);
        assert.match(r2.out, /adopting: restoring the PostgreSQL dump/);
        assert.match(r2.out, /adopting: the restore done: \d+ events, \d+ users/);
    });
    await check(t, "10c the users log in and read every message in order, media identical, the signing key is the old one, every table belongs to synapse", async () => {
        assert.deepEqual(await L.checkWorld(w, { login: true }), []);
        assert.deepEqual(await L.verifyKeys(), keys);
        await L.adminLogin();
        const foreign = await L.tsshOk("runuser -u postgres -- psql -tAq -d synapse -c \"SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> 'synapse'\"");
        assert.equal(foreign.trim(), "0");
    });
    rmSync(kept, { recursive: true, force: true });
    writeFileSync(L.CURRENT_CONFIG, JSON.stringify(cfg, null, 2), { mode: 0o600 });
});

// ---- 7 ----
drill("7 secrets never in plain text: not in the stack export, the deploy logs, the state files or on the server outside 0600 files", 10, async (t) => {
    const sec = L.secrets();
    const needles: [string, string][] = [];
    for (const [k, v] of Object.entries(sec)) {
        if (typeof v !== "string" || v.length < 8) continue;
        needles.push([v, k], [JSON.stringify(v).slice(1, -1), k], [Buffer.from(v).toString("base64"), `${k} (base64)`]);
        // Each line of a multi-line value (the ssh key) except the armour and the first base64 line,
        // which is the same in every unencrypted OpenSSH key ("openssh-key-v1", cipher none, ...).
        const lines = v.split("\n").filter((line) => line.length >= 16 && !/^-----(BEGIN|END) /.test(line));
        for (const line of lines.length > 1 ? lines.slice(1) : []) needles.push([line, `${k} (a line)`]);
    }
    const leaks = (text: string) => [...new Set(needles.filter(([n]) => text.includes(n)).map(([, k]) => k))];

    if (L.deployLogs.length === 0) {
        // Run alone: make one `up` (no changes) to have a log to check.
        const r = await L.deployUp(L.currentConfigFile(), "d7-up-noop");
        assert.equal(r.code, 0, L.tail(r.out));
    }
    await check(t, "7a deploy.ts export (no --show-secrets) holds ciphertext only", async () => {
        const r = await L.deploy("export", [], { label: "d7-export" });
        assert.equal(r.code, 0, L.tail(r.out));
        assert.deepEqual(leaks(r.out), []);
        const secure = (r.out.match(/"ciphertext"/g) ?? []).length;
        t.diagnostic(`export: ${secure} ciphertext values`);
        assert.ok(secure > 10, "the export has (almost) no encrypted values: is this the right stack?");
    });
    await check(t, `7b no captured deploy.ts up output holds a secret (${L.deployLogs.length} logs)`, () => {
        const found: string[] = [];
        for (const f of L.deployLogs) {
            let text = readFileSync(f, "utf8");
            // testbed.sh's own status block prints the admin login on purpose; deploy.ts's lines are "[drill1] ...".
            if (/testbed-up/.test(f)) text = text.split("\n").filter((l) => l.startsWith(`[${L.NAME}] `)).join("\n");
            const l = leaks(text);
            if (l.length) found.push(`${f}: ${l.join(", ")}`);
            if (/SECRET LEAK/.test(text)) found.push(`${f}: deploy.ts reported a SECRET LEAK`);
        }
        assert.deepEqual(found, []);
    });
    await check(t, "7c the stack's state files (Pulumi.drill1.yaml, the backend checkpoint) hold ciphertext only", () => {
        const files = [`${L.B}/state/work/${L.NAME}/Pulumi.${L.NAME}.yaml`, `${L.B}/state/backend/.pulumi/stacks/phillymesh-chat/${L.NAME}.json`];
        for (const f of files) {
            assert.ok(existsSync(f), `${f} missing`);
            assert.deepEqual(leaks(readFileSync(f, "utf8")), [], f);
        }
    });
    await check(t, "7d on the server: homeserver.yaml and everything under /etc, /var/log, /root, /home, /tmp, /var/tmp, /var/www and the journal hold none", async () => {
        // grep -f takes one pattern a line: multi-line values (the ssh key) are covered by their lines.
        const patterns = [...new Set(needles.map(([n]) => n).filter((n) => !n.includes("\n") && n.length >= 8))].join("\n") + "\n";
        const out = await L.tsshOk(`umask 077; f=$(mktemp -p /run); cat >"$f"; ` +
            `echo "homeserver.yaml: $(grep -cFf "$f" /etc/matrix-synapse/homeserver.yaml)"; ` +
            `echo "files: $(grep -rlIFf "$f" /etc /var/log /root /home /tmp /var/tmp /var/www 2>/dev/null | tr '\\n' ' ')"; ` +
            `echo "journal: $(journalctl --no-pager -o cat 2>/dev/null | grep -cFf "$f")"; rm -f "$f"`,
        { input: patterns, timeoutMs: 180_000 });
        t.diagnostic(out.trim().replace(/\n/g, "; "));
        assert.match(out, /^homeserver\.yaml: 0$/m);
        assert.match(out, /^files: $/m);
        assert.match(out, /^journal: 0$/m);
    });
    await check(t, "7e secret files are 0600 (server: secrets, signing key, backup.env, TLS key, backups; host: stack and secrets files)", async () => {
        const out = await L.tsshOk(`cd /mnt/matrix_data && stat -L -c '%a %U %n' synapse/secrets/* synapse/keys/signing.key /etc/phillymesh-chat/backup.env ` +
            `/etc/letsencrypt/live/matrix-chat/privkey.pem backups/*/keys.tar backups/*/synapse.dump; stat -c '%a %U %n' backups backups/*/`);
        t.diagnostic(out.trim().replace(/\n/g, "; "));
        const bad = out.trim().split("\n").filter((l) => {
            const [mode, , name] = l.split(" ");
            return name.endsWith("/") || name === "backups" ? mode !== "700" : mode !== "600";
        });
        for (const f of [L.SECRETS_FILE, L.STACK_FILE, L.E2E_FILE, L.CURRENT_CONFIG].filter(existsSync)) {
            const mode = (statSync(f).mode & 0o777).toString(8);
            if (mode !== "600") bad.push(`host ${f}: ${mode}`);
        }
        assert.deepEqual(bad, []);
    });
});
