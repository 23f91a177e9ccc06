// Years on a small droplet: drill 21. On the deployed server, the nightly database housekeeping
// (phillymesh-chat-db-housekeeping) run through its unit as its timer runs it: state churn piled up
// in a room is compressed by synapse_auto_compressor (fewer state_groups_state rows, the room's
// state unchanged) and reported to the journal; the hot tables' indexes are rebuilt online (any size,
// for the drill), a failed rebuild's leftover dropped; Synapse's own retention jobs drop remote media past
// remoteMediaRetention and old URL-preview files; and a compressor that fails (its virtualenv
// broken) fails its unit with an error in the journal while Synapse answers, a backup passes and an
// `up` passes (and puts the compressor back). Registered by drills.test.ts.
import assert from "node:assert/strict";
import * as L from "./lib.ts";
import type { DrillSet } from "./harness.ts";
import { mustConverge, upAndWait, writeConfig } from "./converge.ts";

const UNIT = "phillymesh-chat-db-housekeeping.service";
const MEDIA = "/mnt/matrix_data/synapse/media";
const VENV = "/opt/synapse-auto-compressor/current";
const STATE = "/var/lib/phillymesh-chat-housekeeping";
/** State events sent to the churn room: each is a new state group; Synapse writes the room's whole state again every 100. */
const CHURN_EVENTS = 300;

/** One SQL statement as postgres on the server; its rows, tab-separated. */
async function sql(query: string): Promise<string> {
    return (await L.tsshOk("runuser -u postgres -- psql -X -q -A -t -F '\t' -v ON_ERROR_STOP=1 -d synapse", { input: query })).trim();
}
const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** Runs the unit as its timer does; its Result, the journal of this run (all, and error priority), the report. */
async function runUnit(): Promise<{ result: string; log: string; errors: string; report: any }> {
    const since = (await L.tsshOk("date '+%Y-%m-%d %H:%M:%S'")).trim();
    await L.tssh(`systemctl start ${UNIT}`, { timeoutMs: 10 * 60_000 });
    const journal = (priority: string) => L.tsshOk(`journalctl -u ${UNIT} --since '${since}' ${priority} -o cat --no-pager`);
    const report = await L.tssh(`cat ${STATE}/report.json`);
    return {
        result: (await L.tsshOk(`systemctl show -p Result --value ${UNIT}`)).trim(),
        log: (await journal("")).trim(),
        errors: (await journal("-p err")).trim(),
        report: report.code === 0 ? JSON.parse(report.out) : undefined,
    };
}

/** The room's state as the client API serves it, as sorted "type|state_key" strings. */
async function roomState(token: string, roomId: string): Promise<string[]> {
    const state = (await L.mxOk("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state`, { token })) as {
        type: string;
        state_key: string;
        content: unknown;
    }[];
    return state.map((e) => `${e.type}|${e.state_key}|${JSON.stringify(e.content)}`).sort();
}

export function housekeepingDrill({ drill, check }: DrillSet): void {
    drill(
        "21 housekeeping: state churn is compressed by the nightly unit and reported; the hot tables' indexes are rebuilt online; old remote media and URL previews are dropped by Synapse's own jobs; a failing compressor fails only its unit, while Synapse answers, a backup and an up pass",
        10,
        async (t) => {
            const admin = await L.adminLogin();
            let roomId = "";
            await check(
                t,
                `21a ${CHURN_EVENTS} state changes in a room, then the unit: fewer state_groups_state rows, the room's state unchanged, the report and the compressor's result in the journal`,
                async () => {
                    assert.equal((await L.tsshOk("systemctl is-enabled phillymesh-chat-db-housekeeping.timer")).trim(), "enabled");
                    // The churn as a busy room makes it, fast: the admin's rate limit lifted for the drill.
                    await L.adminApi("POST", `/_synapse/admin/v1/users/${encodeURIComponent(admin.userId)}/override_ratelimit`, {
                        messages_per_second: 0,
                        burst_count: 0,
                    });
                    const room = await L.mxOk("POST", "/_matrix/client/v3/createRoom", {
                        token: admin.token,
                        body: { preset: "private_chat", name: "drill 21 churn" },
                    });
                    roomId = room.room_id as string;
                    for (let i = 0; i < CHURN_EVENTS; i++) {
                        // New keys make the room's state grow (Synapse's full snapshots grow with it); topics overwrite one key.
                        const [type, key, content] =
                            i % 3 === 2 ? ["m.room.topic", "", { topic: `churn ${i}` }] : ["org.phillymesh.drill.churn", `k${i}`, { n: i }];
                        await L.mxOk("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/${type}/${key}`, {
                            token: admin.token,
                            body: content,
                        });
                    }
                    const stateBefore = await roomState(admin.token, roomId);
                    const rowsBefore = Number(await sql(`SELECT count(*) FROM state_groups_state WHERE room_id = ${lit(roomId)}`));
                    const allBefore = Number(await sql("SELECT count(*) FROM state_groups_state"));
                    const r = await runUnit();
                    t.diagnostic(r.log.split("\n").join(" | "));
                    assert.equal(r.result, "success", r.log);
                    assert.equal(r.errors, "", "errors logged by a good run");
                    const rowsAfter = Number(await sql(`SELECT count(*) FROM state_groups_state WHERE room_id = ${lit(roomId)}`));
                    const allAfter = Number(await sql("SELECT count(*) FROM state_groups_state"));
                    L.note(`21a state_groups_state rows of the churn room: ${rowsBefore} -> ${rowsAfter}; whole table: ${allBefore} -> ${allAfter}`);
                    assert.ok(rowsAfter < rowsBefore * 0.8, `the churn room's rows went from ${rowsBefore} to ${rowsAfter} only`);
                    assert.ok(allAfter < allBefore, `the table went from ${allBefore} to ${allAfter} rows`);
                    // The compressor recorded the room as done, and Synapse still serves the same state.
                    assert.equal(await sql(`SELECT count(*) FROM state_compressor_progress WHERE room_id = ${lit(roomId)}`), "1");
                    assert.deepEqual(await roomState(admin.token, roomId), stateBefore);
                    // The report, before and after, and the compressor's own summary line.
                    assert.match(r.log, /^database synapse: [\d.]+ MB$/m);
                    assert.match(r.log, /^ {2}table state_groups_state: [\d.]+ MB, \d+ rows, \d+ dead, last vacuum /m);
                    assert.match(r.log, /Finished running compressor\. Saved \d+ rows/);
                    assert.match(r.log, /^state compression finished in \d+ s$/m);
                    assert.equal(r.report?.ok, true, JSON.stringify(r.report));
                    assert.ok(r.report.after.scannedUpTo > 0, JSON.stringify(r.report.after));
                    // PostgreSQL's autovacuum as postgres.ts sets it, and the hot tables' own settings.
                    assert.equal(
                        await sql("SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name LIKE 'autovacuum_%scale_factor'"),
                        "autovacuum_analyze_scale_factor=0.02 autovacuum_vacuum_insert_scale_factor=0.05 autovacuum_vacuum_scale_factor=0.05",
                    );
                    assert.equal(
                        await sql("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'state_groups_state'"),
                        "autovacuum_vacuum_scale_factor=0.02,autovacuum_analyze_scale_factor=0.01",
                    );
                    const limits = await L.tsshOk(`systemctl show -p MemoryMax -p Nice -p IOSchedulingClass -p User ${UNIT}`);
                    assert.match(limits, /^MemoryMax=268435456$/m);
                    assert.match(limits, /^Nice=19$/m);
                    assert.match(limits, /^User=synapse$/m);
                },
            );

            await check(
                t,
                "21e the hot tables' indexes rebuilt online by the unit (any size, for the drill): new files, all valid, a failed rebuild's leftover dropped, Synapse serving throughout; the next run leaves them alone",
                async () => {
                    // The drill's tables are far under the 32 MB a rebuild waits for: a runtime drop-in
                    // (removed afterwards) lowers that to 0, and the sizes after the last rebuild are forgotten.
                    const dropIn = `/run/systemd/system/${UNIT}.d/drill21-rebuild.conf`;
                    const indexFiles = () =>
                        sql(
                            "SELECT c.relname || ':' || c.relfilenode || ':' || i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid " +
                                "WHERE i.indrelid IN ('state_groups_state'::regclass, 'event_push_actions'::regclass, 'device_inbox'::regclass) ORDER BY 1",
                        ).then((s) => s.split("\n"));
                    try {
                        await L.tsshOk(
                            `mkdir -p ${dropIn.replace(/\/[^/]+$/, "")} && printf '[Service]\\nEnvironment=INDEX_REBUILD_MIN_MB=0\\n' > ${dropIn} && systemctl daemon-reload && rm -f ${STATE}/index-baselines.json`,
                        );
                        // What a rebuild interrupted on an earlier night leaves: an invalid index named *_ccnew.
                        await sql("CREATE INDEX event_push_actions_drill_ccnew ON event_push_actions (room_id)");
                        await sql("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'event_push_actions_drill_ccnew'::regclass");
                        const before = await indexFiles();
                        assert.ok(
                            before.some((f) => f.startsWith("event_push_actions_drill_ccnew:") && f.endsWith(":false")),
                            before.join(" "),
                        );
                        const r = await runUnit();
                        t.diagnostic(r.log.split("\n").join(" | "));
                        assert.equal(r.result, "success", r.log);
                        assert.equal(r.errors, "", "errors logged by a good run");
                        assert.match(r.log, /^dropped event_push_actions_drill_ccnew, an invalid index left by a rebuild that did not finish$/m);
                        for (const table of ["state_groups_state", "event_push_actions", "device_inbox"]) {
                            assert.match(r.log, new RegExp(`^indexes of ${table} rebuilt: [\\d.]+ MB -> [\\d.]+ MB in \\d+ s \\(table [\\d.]+ MB\\)$`, "m"));
                        }
                        // Rebuilt: every index of the three tables has a new file, under its own name, and is valid; the leftover is gone.
                        const after = await indexFiles();
                        const names = (files: string[]) => files.map((f) => f.split(":")[0]);
                        assert.deepEqual(
                            names(after),
                            names(before).filter((n) => n !== "event_push_actions_drill_ccnew"),
                        );
                        for (const f of after) {
                            assert.ok(f.endsWith(":true"), `${f} is not valid`);
                            assert.ok(!before.includes(f), `${f} was not rebuilt`);
                        }
                        L.note(
                            `21e rebuilt ${after.length} indexes of the hot tables: ${r.log
                                .split("\n")
                                .filter((l) => l.startsWith("indexes of"))
                                .join("; ")}`,
                        );
                        assert.deepEqual(
                            r.report.indexes.map((e: { table: string; rebuilt: boolean }) => [e.table, e.rebuilt]),
                            [
                                ["state_groups_state", true],
                                ["event_push_actions", true],
                                ["device_inbox", true],
                            ],
                        );
                        // Synapse writes to the tables as before.
                        const sent = await L.mxOk("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/drill21e-${Date.now()}`, {
                            token: admin.token,
                            body: { msgtype: "m.text", body: "after the rebuild" },
                        });
                        assert.match(String(sent.event_id), /^\$/);
                        // The next night: nothing has grown, so nothing is rebuilt (the same files).
                        const again = await runUnit();
                        assert.equal(again.result, "success", again.log);
                        assert.match(
                            again.log,
                            /^indexes of event_push_actions: [\d.]+ MB \(table [\d.]+ MB, [\d.]+ MB after the last rebuild\), no rebuild needed$/m,
                        );
                        assert.deepEqual(await indexFiles(), after);
                    } finally {
                        await L.tssh(
                            `rm -f ${dropIn}; systemctl daemon-reload; runuser -u postgres -- psql -X -q -d synapse -c 'DROP INDEX IF EXISTS event_push_actions_drill_ccnew'`,
                        );
                    }
                },
            );

            await check(
                t,
                "21b retention: remote media past remoteMediaRetention (90d) is dropped, newer kept; URL-preview files older than 2 days go by Synapse's own 10-second job",
                async () => {
                    const now = Date.now();
                    const old = now - 100 * 86_400_000;
                    const origin = "faraway.test";
                    const plant = async (mediaId: string, lastAccess: number) => {
                        const dir = `${MEDIA}/remote_content/${origin}/${mediaId.slice(0, 2)}/${mediaId.slice(2, 4)}`;
                        await L.tsshOk(
                            `install -d -o synapse -g synapse ${MEDIA}/remote_content/${origin} && runuser -u synapse -- sh -c 'mkdir -p ${dir} && echo drill > ${dir}/${mediaId.slice(4)}'`,
                        );
                        await sql(
                            "INSERT INTO remote_media_cache (media_origin, media_id, media_type, media_length, created_ts, upload_name, filesystem_id, last_access_ts) " +
                                `VALUES (${lit(origin)}, ${lit(mediaId)}, 'text/plain', 6, ${lastAccess}, 'drill.txt', ${lit(mediaId)}, ${lastAccess})`,
                        );
                        return `${dir}/${mediaId.slice(4)}`;
                    };
                    const oldFile = await plant("drilloldmedia21", old);
                    const newFile = await plant("drillnewmedia21", now);
                    // Synapse applies media_retention hourly (its first run an hour after it starts):
                    // the drill calls the same purge of remote media with the same threshold.
                    assert.match(await L.tsshOk("cat /etc/matrix-synapse/homeserver.yaml"), /^media_retention:\n {2}remote_media_lifetime: 90d$/m);
                    const purge = await L.adminApi("POST", `/_synapse/admin/v1/purge_media_cache?before_ts=${now - 90 * 86_400_000}`);
                    assert.equal(purge.status, 200, JSON.stringify(purge.json));
                    const left = await sql(`SELECT media_id FROM remote_media_cache WHERE media_origin = ${lit(origin)} ORDER BY 1`);
                    assert.equal(left, "drillnewmedia21");
                    assert.equal((await L.tssh(`test -e ${oldFile}`)).code, 1, "the old file is still there");
                    assert.equal((await L.tssh(`test -e ${newFile}`)).code, 0, "the recent file is gone");
                    await sql(`DELETE FROM remote_media_cache WHERE media_origin = ${lit(origin)}`);
                    await L.tsshOk(`rm -rf ${MEDIA}/remote_content/${origin}`);

                    // A URL preview's image, 3 days old, as Synapse stores it (media id <date>_<random>,
                    // file url_cache/<date>/<random>).
                    const day = new Date(now - 3 * 86_400_000).toISOString().slice(0, 10);
                    const id = `${day}_drillpreview21`;
                    const file = `${MEDIA}/url_cache/${day}/drillpreview21`;
                    await L.tsshOk(`runuser -u synapse -- sh -c 'mkdir -p ${MEDIA}/url_cache/${day} && echo preview > ${file}'`);
                    await sql(
                        "INSERT INTO local_media_repository (media_id, media_type, media_length, created_ts, upload_name, user_id, url_cache) " +
                            `VALUES (${lit(id)}, 'image/png', 8, ${now - 3 * 86_400_000}, 'preview.png', NULL, 'https://example.test/')`,
                    );
                    await L.waitFor("Synapse's URL-preview expiry", 60_000, async () => (await L.tssh(`test -e ${file}`)).code === 1);
                    assert.equal(await sql(`SELECT count(*) FROM local_media_repository WHERE media_id = ${lit(id)}`), "0");
                },
            );

            await check(
                t,
                "21d never beside a backup: a backup started during a run waits for its end; a run started during a backup skips itself, saying so",
                async () => {
                    // Each made to last a few seconds (a runtime drop-in, removed afterwards): on the
                    // drill's small database both would otherwise be over before the other starts.
                    const slow = (unit: string) => `/run/systemd/system/${unit}.d/drill21-slow.conf`;
                    const slowDown = (unit: string) =>
                        L.tsshOk(
                            `mkdir -p /run/systemd/system/${unit}.d && printf '[Service]\\nExecStartPre=/bin/sleep 6\\n' > ${slow(unit)} && systemctl daemon-reload`,
                        );
                    const backup = "phillymesh-chat-backup.service";
                    const stamp = async (unit: string, p: string) => Number((await L.tsshOk(`systemctl show -p ${p} --value ${unit}`)).trim());
                    try {
                        await slowDown(UNIT);
                        await L.tsshOk(`systemctl start --no-block ${UNIT} && sleep 1 && systemctl start ${backup}`, { timeoutMs: 5 * 60_000 });
                        const ended = await stamp(UNIT, "ExecMainExitTimestampMonotonic");
                        const started = await stamp(backup, "ExecMainStartTimestampMonotonic");
                        assert.ok(started >= ended, `the backup started at ${started}, before the housekeeping ended at ${ended}`);
                        await L.tsshOk(`rm -f ${slow(UNIT)} && systemctl daemon-reload`);

                        await slowDown(backup);
                        const since = (await L.tsshOk("date '+%Y-%m-%d %H:%M:%S'")).trim();
                        await L.tsshOk(`systemctl start --no-block ${backup} && sleep 2 && systemctl start ${UNIT}`, { timeoutMs: 2 * 60_000 });
                        const log = await L.tsshOk(`journalctl -u ${UNIT} --since '${since}' -o cat --no-pager`);
                        assert.match(log, /^skipped: the backup is running$/m);
                        assert.doesNotMatch(log, /^database synapse/m, "the housekeeping ran beside the backup");
                        // Skipped by its condition: not a failure (systemctl --failed does not list it).
                        assert.equal((await L.tsshOk(`systemctl show -p Result --value ${UNIT}`)).trim(), "exec-condition");
                        assert.doesNotMatch(await L.tsshOk("systemctl --failed --plain --no-legend"), /phillymesh-chat-db-housekeeping/);
                    } finally {
                        await L.tssh(`rm -f ${slow(UNIT)} ${slow(backup)}; systemctl daemon-reload`);
                        // A oneshot unit is "activating" while it runs.
                        await L.waitFor("the backup's end", 120_000, async () =>
                            ["inactive", "failed"].includes((await L.tsshOk(`systemctl show -p ActiveState --value ${backup}`)).trim()),
                        );
                    }
                    assert.equal((await L.tsshOk(`systemctl show -p Result --value ${backup}`)).trim(), "success");
                },
            );

            await check(
                t,
                "21c the compressor's virtualenv broken: its unit fails with the error in the journal (err), Synapse answers, a backup passes, an up passes and builds it again; the next run is green",
                async () => {
                    const so = (await L.tsshOk(`ls ${VENV}/lib/python3*/site-packages/synapse_auto_compressor*.so`)).trim();
                    const base = L.readJson(L.currentConfigFile());
                    const file = writeConfig(`${L.WORK}/${L.NAME}.housekeeping.json`, { ...base, config: { ...base.config, stateCompressorChunks: "50" } });
                    await L.tsshOk(`mv ${so} ${so}.broken`);
                    try {
                        const r = await runUnit();
                        t.diagnostic(r.errors.split("\n").join(" | "));
                        assert.equal(r.result, "exit-code", r.log);
                        assert.match(r.errors, /^compressor: ModuleNotFoundError: No module named 'synapse_auto_compressor'$/m);
                        assert.match(r.errors, /^state compression failed: it failed with exit code 2 .*Synapse is not affected/m);
                        assert.match(r.log, /^database synapse: [\d.]+ MB$/m, "the report is made all the same");
                        assert.match(await L.tsshOk("systemctl --failed --plain --no-legend"), new RegExp(`^${UNIT} `, "m"));
                        assert.ok(await L.healthy(), "Synapse does not answer");
                        assert.equal((await L.tsshOk("systemctl is-active matrix-synapse")).trim(), "active");
                        await L.tsshOk("systemctl start phillymesh-chat-backup.service", { timeoutMs: 5 * 60_000 });
                        assert.equal((await L.tsshOk("systemctl show -p Result --value phillymesh-chat-backup.service")).trim(), "success");
                        // An up with a compressor setting changed runs the housekeeping step, which finds
                        // the virtualenv broken and builds it again.
                        const up = await upAndWait(file, "drill21-broken-compressor", { what: "Synapse (drill 21)" });
                        assert.equal(up.code, 0, L.tail(up.out));
                        assert.ok(up.answers, up.waitError);
                        assert.match(up.out, /does not import: building it again/);
                        const again = await runUnit();
                        assert.equal(again.result, "success", again.log);
                        assert.match(await L.tsshOk(`systemctl show -p Environment ${UNIT}`), /COMPRESSOR_CHUNKS=50/);
                        assert.doesNotMatch(await L.tsshOk("systemctl --failed --plain --no-legend"), /phillymesh-chat-db-housekeeping/);
                    } finally {
                        // Put back by hand when the drill stopped before the up built it again.
                        await L.tssh(`test ! -e ${so}.broken || { mv ${so}.broken ${so}; systemctl reset-failed ${UNIT}; }`);
                        // Back to the stack's own config for the drills after this one.
                        await mustConverge(L.currentConfigFile(), "drill21-restore-config", "Synapse after drill 21");
                    }
                },
            );
        },
    );
}
