// Nothing lost when moving in: drill 9 (an old Synapse on SQLite adopted in place) and drill 10 (an
// old server's PostgreSQL dump, key and media adopted onto a new machine). Registered by
// drills.test.ts.
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import * as L from "./lib.ts";
import { newMachine, recordCurrent, upAndWait, writeConfig, type StackFile } from "./converge.ts";
import type { DrillSet } from "./harness.ts";

export function adoptionDrills({ drill, check }: DrillSet): void {
    drill(
        "9 adopting an old server on SQLite: synapse_port_db carries users, room, messages, media and the signing key over; the old files are untouched; it happens once",
        35,
        async (t) => {
            const base = L.readJson<StackFile>(L.currentConfigFile());
            const oldVersion = process.env.DRILL_OLD_SYNAPSE ?? "1.162.0";
            // A machine that runs only the old server: the guest and its data disk from nothing.
            const machineId = await newMachine({ keepData: false });
            const oldServer = await L.tsshOk(`bash -s -- ${L.shQuote(oldVersion)} ${L.shQuote(String(base.config.pipIndexUrl))} ${L.shQuote(L.DOMAIN)}`, {
                input: readFileSync(`${L.REPO}/tests/drills/old-synapse.sh`, "utf8"),
                timeoutMs: 900_000,
                label: "d9-old-server",
            });
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
                await L.tsshOk(
                    `/opt/old-synapse/bin/register_new_matrix_user -c /etc/matrix-synapse/homeserver.yaml --no-admin -u ${L.shQuote(name)} ${L.shQuote(`--password=${password}`)} http://127.0.0.1:8008`,
                );
                const j = await L.mxOk("POST", "/_matrix/client/v3/login", {
                    base: OLD,
                    body: { type: "m.login.password", identifier: { type: "m.id.user", user: name }, password },
                });
                users.push({ name, password, userId: j.user_id, token: j.access_token });
            }
            const [a, b] = users.map((u) => ({ userId: u.userId, token: u.token }));
            const roomName = `${tag} old room`;
            const roomId = (
                await L.mxOk("POST", "/_matrix/client/v3/createRoom", {
                    base: OLD,
                    token: a.token,
                    body: { preset: "private_chat", name: roomName, invite: [b.userId] },
                })
            ).room_id as string;
            await L.mxOk("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, { base: OLD, token: b.token, body: {} });
            const messages: string[] = [];
            for (let i = 1; i <= 6; i++) {
                const s = i % 2 ? a : b;
                const body = `${tag} old message ${i} from ${s.userId}`;
                await L.mxOk("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${tag}-${i}`, {
                    base: OLD,
                    token: s.token,
                    body: { msgtype: "m.text", body },
                });
                messages.push(body);
            }
            const bytes = new Uint8Array(randomBytes(200 * 1024));
            const mxc = (await L.mxOk("POST", `/_matrix/media/v3/upload?filename=${tag}.bin`, { base: OLD, token: a.token, raw: bytes })).content_uri as string;
            await L.mxOk("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${tag}-file`, {
                base: OLD,
                token: a.token,
                body: { msgtype: "m.file", body: `${tag}.bin`, url: mxc, info: { size: bytes.length } },
            });
            messages.push(`${tag}.bin`);
            const w: L.World = { tag, users, roomId, roomName, messages, media: { mxc, sha256: L.sha256(bytes), size: bytes.length } };
            const oldKeys = (await L.http(`${OLD}/_matrix/key/v2/server`)).json.verify_keys as Record<string, { key: string }>;
            L.note(
                `old world: ${users.length} users, room ${roomId}, ${messages.length} messages, ${bytes.length} bytes of media; key ${Object.keys(oldKeys).join(",")}`,
            );

            const adopting = {
                ...base,
                config: { ...base.config, serverId: machineId, adoptSigningKey: keyPath, adoptSqliteDatabase: dbPath, adoptMediaStore: mediaPath },
            };
            const adoptFile = `${L.WORK}/${L.NAME}.adopt.json`;
            writeConfig(adoptFile, adopting);

            const r1 = await L.deployUp(adoptFile, "d9-up-old-running");
            await check(t, "9a with the old Synapse still running, up fails in the synapse step saying so, and the old server is unharmed", async () => {
                assert.notEqual(r1.code, 0, "deploy.ts up succeeded although the old Synapse holds port 8008");
                assert.match(r1.out, /chat-synapse-run/);
                assert.match(r1.out, /listens on port 8008; stop the old Synapse first/);
                assert.doesNotMatch(r1.out, /installing Synapse/, "the check should come before any download");
                // From the server itself: the failed up has already put the host firewall in place, which
                // (rightly) closes the old server's port 8008 to the outside.
                const j = JSON.parse(
                    await L.tsshOk(`curl -fsS -H ${L.shQuote(`Authorization: Bearer ${a.token}`)} http://127.0.0.1:8008/_matrix/client/v3/joined_rooms`),
                ) as { joined_rooms: string[] };
                assert.ok(j.joined_rooms.includes(roomId), "the old server lost its room");
            });

            await L.tsshOk("systemctl stop old-synapse");
            // What the old server left, to compare after the adoption (it only reads them).
            const oldSums = await L.tsshOk(`sha256sum ${L.shQuote(dbPath)} ${L.shQuote(keyPath)}`);
            const r2 = await upAndWait(adoptFile, "d9-up-adopt", { what: "the adopted server" });
            await check(t, "9b up adopts: background updates finished on a copy, synapse_port_db, media copied, the server answers", () => {
                assert.ok(
                    r2.answers,
                    `deploy.ts up exited ${r2.code}; answering: ${r2.answers}${r2.waitError ? ` (${r2.waitError})` : ""}\n${L.tail(r2.out, 40)}`,
                );
                for (const line of [
                    /adopting: the old SQLite database has 2 users/,
                    /finishing its background updates/,
                    /porting the SQLite database to PostgreSQL/,
                    /adopting: the port done: \d+ events, 2 users/,
                    /adopting: copying the media store/,
                    /adopting: finished in \d+ s/,
                ]) {
                    assert.match(r2.out, line);
                }
            });
            await check(
                t,
                "9c the old users log in with their old passwords and see the room, every message in order and the same media bytes; the signing key is the old one",
                async () => {
                    assert.deepEqual(await L.checkWorld(w, { login: true }), []);
                    assert.deepEqual(await L.verifyKeys(), oldKeys, "the published signing key is not the old server's");
                    await L.adminLogin();
                },
            );
            await check(t, "9d the old files are untouched; the old config is kept aside; conf.d holds only the program's; adopted is recorded", async () => {
                assert.equal(await L.tsshOk(`sha256sum ${L.shQuote(dbPath)} ${L.shQuote(keyPath)}`), oldSums);
                const out = await L.tsshOk(
                    "head -n 1 /mnt/matrix_data/synapse/adopted; ls /etc/matrix-synapse/conf.d/ | tr '\\n' ' '; echo; ls /etc/matrix-synapse/conf.d.before-phillymesh-chat/; ls /etc/matrix-synapse/homeserver.yaml.before-phillymesh-chat",
                );
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
            writeConfig(adoptFile, later);
            const r3 = await upAndWait(adoptFile, "d9-up-again", { what: "Synapse after the re-run" });
            await check(
                t,
                "9e a later run with the adopt settings still set leaves the data alone: the message written since is there, the old access tokens still work",
                async () => {
                    assert.equal(r3.code, 0, L.tail(r3.out));
                    assert.match(r3.out, /this server adopted its data before/);
                    assert.doesNotMatch(r3.out, /porting the SQLite database/);
                    assert.ok(r3.answers, r3.waitError);
                    assert.deepEqual(await L.checkWorld({ ...w, messages: [...w.messages, after] }), []);
                },
            );
            // The stack's config from now on (drill 7 and later runs use it).
            recordCurrent(later);
        },
    );

    drill(
        "10 adopting an old server from a PostgreSQL dump onto a new machine: up names the missing file, then restores the dump (another owner role), key and media",
        30,
        async (t) => {
            const base = L.readJson<StackFile>(L.currentConfigFile());
            const w = await L.seedWorld(L.randomTag("d10"));
            const keys = await L.verifyKeys();
            // The old server's admin makes a plain pg_dump (its role was called synapse_user), and keeps the
            // signing key and the media store: here they are taken from the running server and kept on the host.
            const exportDir = "/mnt/matrix_data/export";
            await L.tsshOk(
                `systemctl stop matrix-synapse && rm -rf ${exportDir} && install -d -m 700 ${exportDir} && ` +
                    `runuser -u postgres -- pg_dump synapse | sed -e 's/OWNER TO synapse;/OWNER TO synapse_user;/' >${exportDir}/synapse.sql && ` +
                    `cp /mnt/matrix_data/synapse/keys/signing.key ${exportDir}/old.signing.key && cp -a /mnt/matrix_data/synapse/media ${exportDir}/media_store && ` +
                    `grep -c 'OWNER TO synapse_user' ${exportDir}/synapse.sql`,
                { timeoutMs: 300_000, label: "d10-export" },
            );
            const kept = `${L.WORK}/pg-export`;
            rmSync(kept, { recursive: true, force: true });
            await L.runOk("cp", ["-a", `${L.B}/data-${L.NAME}/export`, kept], { timeoutMs: 120_000 });

            // A new machine with an empty volume.
            const machineId = await newMachine({ keepData: false });
            const { adoptSqliteDatabase: _s, adoptPostgresDump: _p, adoptSigningKey: _k, adoptMediaStore: _m, ...plain } = base.config;
            void [_s, _p, _k, _m];
            const cfg = {
                ...base,
                config: {
                    ...plain,
                    serverId: machineId,
                    adoptSigningKey: "/mnt/matrix_data/adopt/old.signing.key",
                    adoptPostgresDump: "/mnt/matrix_data/adopt/synapse.sql",
                    adoptMediaStore: "/mnt/matrix_data/adopt/media_store",
                },
            };
            const file = `${L.WORK}/${L.NAME}.adopt-dump.json`;
            writeConfig(file, cfg);

            const r1 = await L.deployUp(file, "d10-up-files-missing");
            await check(t, "10a before the old files are on the new machine, up fails in the synapse step naming the key and the path", () => {
                assert.notEqual(r1.code, 0);
                assert.match(r1.out, /chat-synapse-run/);
                assert.match(r1.out, /adoptSigningKey: \/mnt\/matrix_data\/adopt\/old\.signing\.key is not a file on this server \(copy it there first/);
            });

            // The operator copies them onto the volume (scp in the README; here the data disk is at hand).
            await L.runOk("cp", ["-a", kept, `${L.B}/data-${L.NAME}/adopt`], { timeoutMs: 120_000 });
            const r2 = await upAndWait(file, "d10-up-adopt", { what: "the adopted server" });
            await check(t, "10b the next up restores the dump and converges", () => {
                assert.ok(
                    r2.answers,
                    `deploy.ts up exited ${r2.code}; answering: ${r2.answers}${r2.waitError ? ` (${r2.waitError})` : ""}\n${L.tail(r2.out, 40)}`,
                );
                assert.match(r2.out, /adopting: restoring the PostgreSQL dump/);
                assert.match(r2.out, /adopting: the restore done: \d+ events, \d+ users/);
            });
            await check(
                t,
                "10c the users log in and read every message in order, media identical, the signing key is the old one, every table belongs to synapse",
                async () => {
                    assert.deepEqual(await L.checkWorld(w, { login: true }), []);
                    assert.deepEqual(await L.verifyKeys(), keys);
                    await L.adminLogin();
                    const foreign = await L.tsshOk(
                        "runuser -u postgres -- psql -tAq -d synapse -c \"SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> 'synapse'\"",
                    );
                    assert.equal(foreign.trim(), "0");
                },
            );
            rmSync(kept, { recursive: true, force: true });
            recordCurrent(cfg);
        },
    );
}
