// Nothing lost when the machine goes: drill 1 (a replaced server keeps its data disk and everything
// on it) and drill 2 (a backup restored on a fresh server). Registered by drills.test.ts.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { connect as tlsConnect } from "node:tls";
import * as L from "./lib.ts";
import { mustConverge, newMachine, upAndWait, writeConfig, type StackFile } from "./converge.ts";
import type { DrillSet } from "./harness.ts";

/** The SHA-256 fingerprint of the certificate a TLS server presents (verified against the pebble roots). */
async function peerCertFingerprint(host: string, port: number, servername: string): Promise<string> {
    const ca = [`${L.B}/pebble/roots.pem`, `${L.B}/pebble/roots-all.pem`].filter(existsSync).map((f) => readFileSync(f, "utf8"));
    return new Promise((resolve, reject) => {
        const s = tlsConnect({ host, port, servername, ca, timeout: 10_000 }, () => {
            const fp = s.getPeerCertificate().fingerprint256;
            s.end();
            resolve(fp);
        });
        s.on("error", reject);
        s.on("timeout", () => {
            s.destroy();
            reject(new Error(`TLS ${host}:${port} timed out`));
        });
    });
}

export function replaceAndRestore({ drill, check }: DrillSet): void {
    drill("1 replaced server keeps everything: users log in, room and messages there, media identical, signing key unchanged", 30, async (t) => {
        const w = await L.seedWorld(L.randomTag("d1"));
        const keys = await L.verifyKeys();
        const certBefore = await peerCertFingerprint(L.IP, 443, `matrix.${L.DOMAIN}`);
        L.note(
            `seeded ${w.users.length} users, room ${w.roomId}, ${w.messages.length} messages, ${w.media.size} bytes of media; key ${Object.keys(keys).join(",")}`,
        );
        assert.deepEqual(await L.checkWorld(w), [], "the world reads back before the replacement");

        const machineId = await newMachine({ keepData: true });
        // What the operator of an existing server does after replacing the machine (README, serverId):
        // tell the program it is a new machine. (On DigitalOcean the new droplet id does this by itself.)
        const stack = L.readJson<StackFile>(L.currentConfigFile());
        assert.notEqual(stack.config.serverId, machineId, "the booted guest should be a new machine");
        stack.config.serverId = machineId;
        const replacedConfig = writeConfig(L.currentConfigFile(), stack);
        const r = await upAndWait(replacedConfig, "d1-up-after-replace", { what: "Synapse on the replaced guest", waitMs: 20_000 });
        const changes = /changes (\{.*\})/.exec(r.out)?.[1] ?? "?";
        const sameConfigWorked = await check(
            t,
            "1a re-deploy with serverId = the new machine-id provisions the replaced server (every step runs again)",
            () => {
                assert.ok(r.answers, `deploy.ts up exited ${r.code} with changes ${changes}, and the new guest does not serve ${L.HS}`);
                assert.match(changes, /"update":9\b/, `expected all 9 steps to run again, got ${changes}`);
            },
        );
        if (!sameConfigWorked) {
            // What an operator must do today: make the engine forget the steps, then run them all again.
            L.note("workaround: forget the stack's state and run every step again on the replaced guest");
            await L.forgetState();
            await mustConverge(L.currentConfigFile(), "d1-up-after-forget", "Synapse on the replaced guest");
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
        await newMachine({ keepData: false });
        await mustConverge(L.currentConfigFile(), "d2-up-fresh-server", "Synapse on the fresh server");
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
            const state = await L.tssh(
                "systemctl is-active matrix-synapse; runuser -u postgres -- psql -tAq -d postgres " +
                    "-c \"SELECT datname FROM pg_database WHERE datname LIKE 'synapse%' ORDER BY 1\"; " +
                    "runuser -u postgres -- psql -tAq -d synapse -c \"SELECT count(*) FROM pg_tables WHERE schemaname = 'public'\"",
            );
            t.diagnostic(`after the failed restore: synapse ${state.out.trim().replace(/\n/g, ", ")} (service state, databases, tables in 'synapse')`);
            const readable = `/var/tmp/drill-restore-${stamp}`;
            L.note(`workaround: restore from ${readable} (root:postgres, 0750/0640)`);
            await L.tsshOk(
                `rm -rf ${readable} && cp -a ${L.shQuote(dir)} ${readable} && chgrp -R postgres ${readable} && ` +
                    `chmod 750 ${readable} && chmod 640 ${readable}/synapse.dump ${readable}/keys.tar`,
            );
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
}
