// The worst days: drills 22 (out of memory), 23 (disk full) and 24 (killed mid-write), on a guest of
// their own (worst-lib.ts: `worstdays` at 10.250.0.61, its data volume a 2 GiB ext4 image on the host)
// so that a full disk is that image's, never the host's. Each drill keeps a sender running that counts
// every message the server acknowledged; afterwards every one of them must be there, and the server
// must have come back by itself. Registered by drills.test.ts (its own set: drill1 is not needed).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import * as L from "./lib.ts";
import { drillSet, type DrillSet } from "./harness.ts";
import * as W from "./worst-lib.ts";

const DATA = "/mnt/matrix_data";
/** Where the drill's "media" goes: a directory of the synapse user's in the media store. */
const FILL_DIR = `${DATA}/synapse/media/drill23-fill`;
/** postgresDiskReserveMb's default (Pulumi.yaml), for a stack that does not set it. */
const RESERVE_DEFAULT_MB = 512;
const STATUS_UNIT = "phillymesh-chat-status.service";

/** The drills' set, its guest brought up first; the helpers point at that guest during each drill. */
export function worstDays(onUse: () => void = () => {}): { set: DrillSet; cleanup: () => Promise<void> } {
    const set = drillSet("worst days", () => {
        onUse();
        return L.withServer(W.WD, W.ensureWorstDays);
    });
    const onGuest: DrillSet = { ...set, drill: (title, limit, fn) => set.drill(title, limit, (t) => L.withServer(W.WD, () => fn(t))) };
    outOfMemory(onGuest);
    diskFull(onGuest);
    killedMidWrite(onGuest);
    return { set, cleanup: () => L.withServer(W.WD, () => W.removeWorstDays()) };
}

/**
 * A world (two users, a room, messages, a file) and a room of its own for the sender (alice, not
 * rate-limited): the world's room stays small enough for checkWorld to read whole.
 */
async function seed(prefix: string): Promise<{ w: L.World; alice: L.Session; room: string }> {
    const w = await L.seedWorld(L.randomTag(prefix));
    const alice = { userId: w.users[0].userId, token: w.users[0].token };
    await W.noRateLimit(alice.userId);
    const room = await L.mxOk("POST", "/_matrix/client/v3/createRoom", { token: alice.token, body: { preset: "private_chat", name: `${w.tag} sender` } });
    return { w, alice, room: room.room_id as string };
}

async function waitForAcks(s: W.Sender, n: number, what: string): Promise<void> {
    const want = s.acked.length + n;
    await L.waitFor(`${n} more acknowledged messages (${what})`, 60_000, async () => s.acked.length >= want);
}

/** The kernel's log lines with their times (the ring buffer drops old lines: lines are found by time, not counted). */
function dmesg(): { t: number; line: string }[] {
    return execFileSync("dmesg", [], { encoding: "utf8" })
        .split("\n")
        .map((line) => ({ t: Number(/^\[\s*([\d.]+)\]/.exec(line)?.[1] ?? -1), line }));
}
const dmesgSince = (t: number) =>
    dmesg()
        .filter((l) => l.t > t)
        .map((l) => l.line);
const dmesgLast = () => Math.max(0, ...dmesg().map((l) => l.t));

function outOfMemory({ drill, check }: DrillSet): void {
    drill(
        "22 out of memory: the kernel must kill; it kills Synapse (oom_score_adj 500), never PostgreSQL or sshd; systemd restarts Synapse by itself and no acknowledged message is lost",
        8,
        async (t) => {
            const pg = await W.postgresUnit();
            // The scores PostgreSQL's and sshd's processes really run at ("-500/-900" where the host
            // lets root lower them; "0/0" in the testbed's containers, without CAP_SYS_RESOURCE).
            let applied = "";
            await check(
                t,
                "22a the units say who goes first: Synapse +500 (applied) and restarted on failure; PostgreSQL -500 and sshd -900, both started",
                async () => {
                    const show = async (unit: string, props: string[]) =>
                        Object.fromEntries(
                            (await L.tsshOk(`systemctl show ${props.map((p) => `-p ${p}`).join(" ")} ${unit}`))
                                .trim()
                                .split("\n")
                                .map((l) => l.split("=", 2) as [string, string]),
                        );
                    const syn = await show("matrix-synapse.service", ["OOMScoreAdjust", "Restart", "MainPID"]);
                    assert.deepEqual([syn.OOMScoreAdjust, syn.Restart], ["500", "on-failure"]);
                    assert.equal((await L.tsshOk(`cat /proc/${syn.MainPID}/oom_score_adj`)).trim(), "500");
                    const pgu = await show(pg, ["OOMScoreAdjust", "Restart", "OOMPolicy", "ActiveState", "ExecMainStatus", "MainPID"]);
                    const ssh = await show("ssh.service", ["OOMScoreAdjust", "ActiveState", "ExecMainStatus", "MainPID"]);
                    // A score root may not lower (no CAP_SYS_RESOURCE, as in the testbed's containers) is
                    // ignored by systemd 257 (not status 214, EXIT_OOM_ADJUST): the units run either way.
                    applied = `${(await L.tsshOk(`cat /proc/${pgu.MainPID}/oom_score_adj /proc/${ssh.MainPID}/oom_score_adj`)).trim().replace("\n", "/")}`;
                    L.note(`22a PostgreSQL ${JSON.stringify(pgu)}; sshd ${JSON.stringify(ssh)}; applied scores (PostgreSQL/sshd): ${applied}`);
                    assert.deepEqual([pgu.OOMScoreAdjust, pgu.Restart, pgu.OOMPolicy, pgu.ActiveState], ["-500", "on-failure", "continue", "active"]);
                    assert.deepEqual([ssh.OOMScoreAdjust, ssh.ActiveState], ["-900", "active"]);
                    assert.notEqual(pgu.ExecMainStatus, "214");
                },
            );

            const { w, alice, room } = await seed("oom");
            const sender = W.startSender(alice, room, `${w.tag} during`);
            const before = await W.mainPids();
            const synapseHostPid = W.hostPid(before.synapse);
            const synapseUid = (await L.tsshOk("id -u synapse")).trim();
            const restartsBefore = (await L.tsshOk("systemctl show -p NRestarts --value matrix-synapse")).trim();
            const kills0 = W.oomKills();
            const dmesg0 = dmesgLast();
            let fill = "";
            const t0 = Date.now();
            try {
                await waitForAcks(sender, 20, "before the pressure");
                // The filler is sent on stdin: /dev/shm filled until Synapse's main process changes.
                const r = await L.tssh("bash -s 2000", {
                    input: readFileSync(`${L.REPO}/tests/drills/memory-fill.sh`, "utf8"),
                    timeoutMs: 240_000,
                    label: "drill22-fill",
                });
                fill = r.out.trim();
                L.note(`22 filler (${((Date.now() - t0) / 1000).toFixed(0)} s): ${fill}`);
            } finally {
                await L.tssh("rm -f /dev/shm/drill22-fill");
            }

            await check(
                t,
                "22b the kernel killed Synapse's process first, and nothing else where PostgreSQL's and sshd's scores apply: the guest cgroup's oom_kill count and the kernel log agree; PostgreSQL and sshd kept their pids",
                async () => {
                    const kills = W.oomKills() - kills0;
                    const lines = dmesgSince(dmesg0);
                    const mine = lines.filter((l) => l.includes("oom-kill:") && l.includes(`task_memcg=`) && l.includes(`/testbed-${L.NAME},`));
                    const killed = lines.filter((l) => /Killed process \d+/.test(l));
                    t.diagnostic(`${fill} | oom_kill +${kills} | ${killed.join(" | ")}`);
                    L.note(`22b ${killed.join(" | ")}`);
                    assert.match(fill, /^killed after \d+ MiB/m, fill);
                    assert.ok(kills >= 1, `memory.oom_control oom_kill did not grow (${fill})`);
                    assert.ok(mine.length >= kills, `the kernel log has ${mine.length} oom-kill lines for ${L.NAME}, the cgroup counts ${kills}`);
                    const synapse = new RegExp(`task=python[0-9.]*,pid=\\d+,uid=${synapseUid}$`);
                    // What the program decides: Synapse (+500) is the kernel's first choice, everywhere.
                    assert.match(mine[0] ?? "", synapse, `the kernel's first kill was not Synapse's: ${mine[0]}`);
                    assert.ok(
                        mine.some((l) => l.includes(`pid=${synapseHostPid},`)),
                        `Synapse's process (host pid ${synapseHostPid}) is not among the killed: ${mine.join(" | ")}`,
                    );
                    const others = mine.filter((l) => !synapse.test(l));
                    const after = await W.mainPids();
                    if (applied === "-500/-900") {
                        assert.deepEqual(others, [], `the kernel killed something else: ${others.join(" | ")}`);
                        assert.equal(after.postgres, before.postgres, "PostgreSQL's main process changed");
                        assert.equal(after.ssh, before.ssh, "sshd's main process changed");
                    } else if (others.length > 0 || after.postgres !== before.postgres || after.ssh !== before.ssh) {
                        // Here PostgreSQL and sshd run at ${applied}, not -500/-900 (root may not lower a
                        // score without CAP_SYS_RESOURCE; 15d is skipped for the same reason): a second
                        // kill, made before the first victim's memory was reclaimed, may then take one of
                        // theirs. That is this host's doing, not the program's; 22d still requires that
                        // nothing acknowledged is lost.
                        const said = `not the program's: PostgreSQL/sshd run at ${applied} on this host, not -500/-900; after Synapse the kernel also killed ${others.map((l) => /task=([^,]+),pid=(\d+)/.exec(l)?.slice(1).join(" ") ?? l).join(", ") || "nothing"}; main pids PostgreSQL ${before.postgres} -> ${after.postgres}, sshd ${before.ssh} -> ${after.ssh}`;
                        t.diagnostic(said);
                        L.note(`22b ${said}`);
                    }
                },
            );

            await check(t, "22c systemd restarted Synapse by itself (NRestarts grew, a new main process) and the server answers again", async () => {
                await L.waitFor("Synapse answering after the OOM kill", 120_000, L.healthy);
                L.note(`22c answering ${((Date.now() - t0) / 1000).toFixed(0)} s after the pressure began`);
                const restarts = (await L.tsshOk("systemctl show -p NRestarts --value matrix-synapse")).trim();
                assert.ok(Number(restarts) > Number(restartsBefore), `NRestarts ${restartsBefore} -> ${restarts}`);
                const log = await L.tsshOk(
                    `journalctl -u matrix-synapse --since '-10 min' -o cat --no-pager | grep -E 'status=9/KILL|oom-kill|OOM killer' | tail -n 3`,
                );
                t.diagnostic(log.trim().replace(/\n/g, " | "));
                assert.match(log, /status=9\/KILL|oom-kill|OOM killer/);
                assert.notEqual((await W.mainPids()).synapse, before.synapse);
            });

            await check(t, "22d every message acknowledged before and during the pressure is there; the world is intact", async () => {
                await waitForAcks(sender, 5, "after the restart");
                await sender.stop();
                L.note(`22d sender: ${W.senderReport(sender)}`);
                const lost = await W.lostMessages(alice, room, sender.acked);
                assert.deepEqual(lost, [], `${lost.length} of ${sender.acked.length} acknowledged messages are gone`);
                assert.deepEqual(await L.checkWorld(w), []);
            });
            await sender.stop();
        },
    );
}

function diskFull({ drill, check }: DrillSet): void {
    drill(
        "23 disk full: with the data volume filled by Synapse's media reads, logins and sends work (the database's reserve), uploads fail with an error; once freed everything works by itself, nothing acknowledged is lost, and the status check said the disk was full",
        8,
        async (t) => {
            const { w, alice, room } = await seed("full");
            const sender = W.startSender(alice, room, `${w.tag} during`, 250);
            const since = (await L.tsshOk("date '+%Y-%m-%d %H:%M:%S'")).trim();
            const before = await W.mainPids();
            // The stack's postgresDiskReserveMb, or its default (Pulumi.yaml).
            const reserveMb = Number(L.readJson<{ config: Record<string, string> }>(L.STACK_FILE).config.postgresDiskReserveMb ?? RESERVE_DEFAULT_MB);
            let fullAt = 0;
            const answers: string[] = [];
            try {
                await waitForAcks(sender, 10, "before the disk fills");
                await check(
                    t,
                    "23a Synapse's media fills the data volume to the last block it may use; the reserve (postgres group) is still there and PostgreSQL may write to it",
                    async () => {
                        // What really fills a disk: media, written by the synapse user. fallocate takes all but
                        // 64 MiB of what df says is available, dd the rest until ENOSPC. The reserve is ext4's
                        // reserved blocks, set by the postgres step: the synapse user cannot touch them. Every
                        // line of what it saw is labelled (a tool's error line cannot shift the others).
                        const r = await L.tsshOk(
                            `install -d -o synapse -g synapse -m 700 ${FILL_DIR}; ` +
                                `avail=$(df --output=avail -B1 ${DATA} | tail -n 1); ` +
                                // (fallocate of all of it fails for want of room for its own extent tree.)
                                `[ "$avail" -le 67108864 ] || runuser -u synapse -- fallocate -l "$((avail - 67108864))" ${FILL_DIR}/fill-1 2>/dev/null || true; ` +
                                `runuser -u synapse -- dd if=/dev/zero of=${FILL_DIR}/fill-2 bs=4k status=none 2>/dev/null || true; sync; ` +
                                `echo "df=$(df --output=size,used,avail -B1 ${DATA} | tail -n 1)"; echo "statf=$(stat -f -c '%f %a %S' ${DATA})"; ` +
                                `echo "mount=$(findmnt -n -r -o SOURCE,OPTIONS --mountpoint ${DATA})"; echo "gid=$(getent group postgres | cut -d: -f3)"; ` +
                                `echo "sb=$(dumpe2fs -h "$(findmnt -n -r -o SOURCE --mountpoint ${DATA})" 2>/dev/null | grep -E '^Reserved (block count|blocks gid)' | tr -s ' ' | paste -sd ';')"; ` +
                                `echo "synapse=$(runuser -u synapse -- dd if=/dev/zero of=${FILL_DIR}/fill-3 bs=4k count=1 conv=fsync status=none 2>&1 | head -n 1)"; ` +
                                `echo "postgres=$(runuser -u postgres -- dd if=/dev/zero of=${DATA}/postgresql/lib/drill23-probe bs=1M count=4 conv=fsync status=none 2>&1 && echo wrote 4 MiB)"; ` +
                                `rm -f ${DATA}/postgresql/lib/drill23-probe`,
                            { timeoutMs: 180_000, label: "drill23-fill" },
                        );
                        fullAt = Date.now();
                        const saw = new Map(
                            r
                                .split("\n")
                                .filter((l) => /^[a-z]+=/.test(l))
                                .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1).trim()]),
                        );
                        const [df, statf, mount, pgGid, sb, synapseProbe, postgresProbe] = ["df", "statf", "mount", "gid", "sb", "synapse", "postgres"].map(
                            (k) => saw.get(k) ?? "",
                        );
                        const [freeBlocks, availBlocks, bsize] = statf.split(/\s+/).map(Number);
                        const held = ((freeBlocks - availBlocks) * bsize) / 1048576;
                        L.note(
                            `23a ${DATA}: size used avail ${df} | free ${((freeBlocks * bsize) / 1048576).toFixed(0)} MiB, ${held.toFixed(0)} MiB of them held back | ` +
                                `mount ${mount} | postgres gid ${pgGid} | superblock ${sb} | one more 4 KiB as synapse: ${synapseProbe || "written"} | 4 MiB as postgres: ${postgresProbe}`,
                        );
                        assert.equal(Number(df.split(/\s+/)[2]), 0, `df still shows room for users: ${df}`);
                        assert.match(synapseProbe, /No space left on device/);
                        assert.match(mount, new RegExp(`(^|,)resgid=${pgGid}(,|$)`), `the mount's reserve is not the postgres group's: ${mount}`);
                        assert.match(sb, new RegExp(`Reserved block count: ${(reserveMb * 1048576) / bsize};Reserved blocks gid: ${pgGid} `), sb);
                        // The reserve is still (nearly) whole: what is held back is the reserve, less the
                        // blocks PostgreSQL took meanwhile (and ext4's own small reserve on top).
                        assert.ok(held >= reserveMb * 0.9, `only ${held.toFixed(0)} MiB held back, the reserve is ${reserveMb} MiB`);
                        assert.equal(postgresProbe, "wrote 4 MiB");
                    },
                );
                await sleep(5000);

                await check(t, "23b while it is full, reads work for signed-in users: the room's messages, the file, /sync", async () => {
                    const bob = { userId: w.users[1].userId, token: w.users[1].token };
                    const seen = await L.roomMessages(bob, w.roomId);
                    assert.deepEqual(
                        w.messages.filter((m) => !seen.includes(m)),
                        [],
                    );
                    assert.equal(L.sha256(await L.downloadMedia(bob, w.media.mxc)), w.media.sha256);
                    const sync = await L.mx("GET", "/_matrix/client/v3/sync?timeout=0", { token: bob.token });
                    assert.equal(sync.status, 200, sync.text.slice(0, 300));
                });

                await check(t, "23c while it is full, a password login works (its new device and token have room: the reserve)", async () => {
                    // A login adds a device and an access token: rows PostgreSQL must find pages for.
                    const t1 = Date.now();
                    const r = await L.mx("POST", "/_matrix/client/v3/login", {
                        body: { type: "m.login.password", identifier: { type: "m.id.user", user: w.users[1].name }, password: w.users[1].password },
                    });
                    const ms = Date.now() - t1;
                    L.note(`23c login on the full disk: HTTP ${r.status} ${r.text.slice(0, 120)} (${ms} ms)`);
                    assert.equal(r.status, 200, `login on a full disk: HTTP ${r.status} ${r.text.slice(0, 200)}`);
                    // The new session works: it reads the room.
                    const seen = await L.roomMessages({ userId: w.users[1].userId, token: r.json.access_token }, w.roomId);
                    assert.ok(seen.includes(w.messages[0]), "the new session does not see the room's messages");
                });

                await check(
                    t,
                    "23d while it is full, messages are still acknowledged (the database has room), uploads end at once with an error; Synapse and PostgreSQL keep running",
                    async () => {
                        await waitForAcks(sender, 5, "while the disk is full");
                        for (let i = 0; i < 5; i++) {
                            const t1 = Date.now();
                            const up = await L.mx("POST", "/_matrix/media/v3/upload?filename=full.bin", {
                                token: alice.token,
                                raw: new Uint8Array(randomBytes(1024 * 1024)),
                            });
                            const ms = Date.now() - t1;
                            answers.push(`upload: ${up.status} ${up.json?.errcode ?? ""} ${up.json?.error ?? up.text.slice(0, 100)} (${ms} ms)`);
                            assert.ok(up.status >= 400, `an upload onto a full disk was accepted: ${up.text.slice(0, 200)}`);
                            assert.ok(ms < 10_000, `an upload's error took ${ms} ms`);
                        }
                        const failedDuring = sender.failed.filter((f) => f.at >= fullAt);
                        const ackedDuring = sender.acked.filter((a) => a.at >= fullAt).length;
                        answers.push(`sender while full: ${ackedDuring} acknowledged, ${failedDuring.length} refused`);
                        for (const f of failedDuring.slice(0, 3)) answers.push(`send: ${f.status} ${f.what}`);
                        L.note(`23d ${answers.join(" | ")}`);
                        assert.deepEqual(
                            failedDuring.map((f) => `${f.status} ${f.what}`),
                            [],
                            "sends failed while the disk was full, though the database has its reserve",
                        );
                        const now = await W.mainPids();
                        assert.equal(now.synapse, before.synapse, "Synapse's main process changed while the disk was full");
                        assert.notEqual(now.postgres, "0", "PostgreSQL is not running");
                    },
                );

                await check(t, "23e the daily status check fails and names the full data volume", async () => {
                    await L.tssh(`systemctl start ${STATUS_UNIT}`, { timeoutMs: 120_000 });
                    const detail = await L.tsshOk(`journalctl -u ${STATUS_UNIT} --since '${since}' -p err -o cat --no-pager`);
                    t.diagnostic(detail.trim().replace(/\n/g, " | "));
                    assert.equal((await L.tsshOk(`systemctl show -p Result --value ${STATUS_UNIT}`)).trim(), "exit-code");
                    assert.match(detail, new RegExp(`^disk: .*${DATA} is 100% full`, "m"));
                });
            } finally {
                await L.tssh(`rm -rf ${FILL_DIR}`);
            }
            const freedAt = Date.now();

            await check(t, "23f once freed, with no manual step, uploads work again and messages are still acknowledged", async () => {
                await waitForAcks(sender, 5, "after the disk was freed");
                const up = await L.mx("POST", "/_matrix/media/v3/upload?filename=after.bin", {
                    token: alice.token,
                    raw: new Uint8Array(randomBytes(64 * 1024)),
                });
                assert.equal(up.status, 200, up.text.slice(0, 300));
                L.note(`23f an upload and 5 more messages acknowledged ${((Date.now() - freedAt) / 1000).toFixed(1)} s after the space was freed`);
                const st = await L.tsshOk(`systemctl show -p NRestarts -p ActiveState --value ${await W.postgresUnit()} matrix-synapse.service`);
                t.diagnostic(`PostgreSQL and Synapse: ${st.trim().replace(/\n/g, " ")}`);
            });

            await check(
                t,
                "23g nothing acknowledged is lost, PostgreSQL's indexes and tables check clean (amcheck), and the status check is green again",
                async () => {
                    await sender.stop();
                    L.note(`23g sender: ${W.senderReport(sender)}`);
                    const lost = await W.lostMessages(alice, room, sender.acked);
                    assert.deepEqual(lost, [], `${lost.length} of ${sender.acked.length} acknowledged messages are gone`);
                    assert.deepEqual(await L.checkWorld(w), []);
                    // amcheck in a transaction that is rolled back: the extension is not left behind.
                    const sql = [
                        "BEGIN;",
                        "CREATE EXTENSION IF NOT EXISTS amcheck;",
                        "SELECT count(bt_index_check(c.oid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND c.relpersistence <> 't' AND i.indisvalid;",
                        "SELECT count(*) FROM pg_class c, verify_heapam(c.oid) WHERE c.relkind = 'r' AND c.relpersistence <> 't';",
                        "ROLLBACK;",
                    ].join("\n");
                    const out = await L.tsshOk("runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -tAq -d synapse", { input: sql, timeoutMs: 180_000 });
                    const [indexes, corrupt] = out.trim().split("\n");
                    L.note(`23g amcheck: ${indexes} btree indexes checked, ${corrupt} heap problems`);
                    assert.equal(corrupt, "0", out);
                    await L.tssh(`systemctl start ${STATUS_UNIT}`, { timeoutMs: 120_000 });
                    assert.equal((await L.tsshOk(`systemctl show -p Result --value ${STATUS_UNIT}`)).trim(), "success");
                    const said = await L.tsshOk(`journalctl --since '${since}' --no-pager -o cat | grep -c 'No space left on device' || true`);
                    L.note(`23g the journal says 'No space left on device' ${said.trim()} times since the drill began`);
                },
            );
            await sender.stop();
        },
    );
}

function killedMidWrite({ drill, check }: DrillSet): void {
    drill(
        "24 killed mid-write: SIGKILL to PostgreSQL and Synapse while messages are sent; both come back by themselves and every acknowledged message is there",
        6,
        async (t) => {
            const pg = await W.postgresUnit();
            await check(t, "24a PostgreSQL runs durable: fsync, synchronous_commit and full_page_writes are on", async () => {
                const out = await L.tsshOk(
                    "runuser -u postgres -- psql -X -tAq -d postgres -c \"SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method')\"",
                );
                t.diagnostic(out.trim());
                assert.match(out, /fsync=on/);
                assert.match(out, /full_page_writes=on/);
                assert.match(out, /synchronous_commit=on/);
            });

            const { w, alice, room } = await seed("kill");
            const sender = W.startSender(alice, room, `${w.tag} during`, 20);
            const before = await W.mainPids();
            const restarts = async () =>
                (await L.tsshOk(`systemctl show -p NRestarts --value ${pg} matrix-synapse.service`))
                    .split("\n")
                    .filter((l) => l.trim() !== "")
                    .map(Number);
            const [pgRestarts0, synRestarts0] = await restarts();
            let killedAt = 0;
            try {
                await waitForAcks(sender, 30, "before the kill");
                const acksAtKill = sender.acked.length;
                assert.ok(Number(before.postgres) > 0 && Number(before.synapse) > 0, `main pids: ${JSON.stringify(before)}`);
                await L.tsshOk(`kill -KILL ${before.postgres} ${before.synapse}`);
                killedAt = Date.now();
                L.note(`24 SIGKILL to PostgreSQL's postmaster (${before.postgres}) and Synapse (${before.synapse}) after ${acksAtKill} acknowledged messages`);

                await check(t, "24b both come back by themselves (systemd restarts them, NRestarts grew) and the server answers", async () => {
                    await L.waitFor("PostgreSQL and Synapse back after SIGKILL", 150_000, async () => {
                        const p = await W.mainPids();
                        return p.postgres !== "0" && p.postgres !== before.postgres && p.synapse !== "0" && p.synapse !== before.synapse && (await L.healthy());
                    });
                    const [pgRestarts, synRestarts] = await restarts();
                    L.note(
                        `24b answering ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill; NRestarts PostgreSQL ${pgRestarts0} -> ${pgRestarts}, Synapse ${synRestarts0} -> ${synRestarts}`,
                    );
                    assert.ok(pgRestarts > pgRestarts0 && synRestarts > synRestarts0);
                });
            } finally {
                if (!(await L.healthy())) L.note(`24: PostgreSQL: ${(await L.tssh(`systemctl status --no-pager -n 5 ${pg}`)).out}`);
            }

            await check(t, "24c every message the server acknowledged before, around and after the kill is there, in the order acknowledged", async () => {
                await waitForAcks(sender, 10, "after the restart");
                await sender.stop();
                L.note(`24c sender: ${W.senderReport(sender)}`);
                const seen = await W.allMessages(alice, room);
                const lost = sender.acked.filter((a) => seen.get(a.eventId) !== a.body);
                assert.deepEqual(lost, [], `${lost.length} of ${sender.acked.length} acknowledged messages are gone`);
                const order = [...seen.keys()].reverse().filter((id) => sender.acked.some((a) => a.eventId === id));
                assert.deepEqual(
                    order,
                    sender.acked.map((a) => a.eventId),
                );
                assert.deepEqual(await L.checkWorld(w), []);
            });
            await sender.stop();
        },
    );
}
