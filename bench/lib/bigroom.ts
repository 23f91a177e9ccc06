// The big-room phase: the partner hosts a room with thousands of members and a long state history
// (bench/py/bigroom_setup.py, on the partner; kept and reused by later runs), and a user of the
// server under test joins it: first with the program's default complexity limit (the join must be
// refused with Synapse's M_RESOURCE_LIMIT_EXCEEDED and the configured text, and memory stay flat),
// then with `remoteRoomComplexityLimit: "0"` (no limit): join time, the first /sync, peak memory,
// OOM kills, whether Synapse survived. The server's config is set back to the default afterwards.
import * as fs from "node:fs";
import * as path from "node:path";
import { median, round1, sleep } from "./figures.ts";
import { adminBatch, call, MatrixError } from "./matrix.ts";
import { Sampler, type Sample } from "./sampler.ts";
import { configFor, FROM_VERSION, saveToken } from "./servers.ts";
import { measureCompressor, oomCounters, type CompressorFigures } from "./serverProbe.ts";
import { deployUp, REPO, say, tssh } from "./testbed.ts";
import type { Homeserver } from "./workload.ts";

export interface BigRoomWorkload {
    members: number;
    /** state events added after the joins (topic changes, power-level edits) */
    history: number;
    concurrency: number;
    /** users made by each method (admin API, shared-secret registration) before the faster makes the rest */
    methodSample: number;
    baselineSeconds: number;
    afterSeconds: number;
    /** at most this long for the room's full state after a partial-state join (default 900) */
    fullStateTimeoutSeconds?: number;
}

/** The text Synapse answers with when the limit refuses a join (components/synapse.ts, complexity_error). */
function complexityErrorText(): string | null {
    const src = fs.readFileSync(path.join(REPO, "components", "synapse.ts"), "utf8");
    return /complexity_error:\s*"([^"]+)"/.exec(src)?.[1] ?? null;
}

/** Runs bench/py/bigroom_setup.py on the partner (python3 as root), with the admin's token. */
async function makeBigRoom(partner: Homeserver, w: BigRoomWorkload): Promise<Record<string, unknown>> {
    await adminBatch(partner.admin, []); // a valid token in partner.admin.token
    const program = fs.readFileSync(path.join(import.meta.dirname, "..", "py", "bigroom_setup.py")).toString("base64");
    const input = JSON.stringify({
        token: partner.admin.token,
        alias: `bigroom-${w.members}`,
        members: w.members,
        history: w.history,
        concurrency: w.concurrency,
        sample: w.methodSample,
    });
    const r = await tssh(partner.server.ip, `python3 -c 'import base64,sys; exec(base64.b64decode(sys.argv[1]))' ${program}`, input, 3 * 3600_000);
    if (r.code !== 0) throw new Error(`bigroom_setup.py on ${partner.server.name}: exit ${r.code}: ${r.stdout.slice(-1000)} ${r.stderr.slice(-2000)}`);
    return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
}

/** A local user on the server under test (no rate limits), logged in. */
async function joiner(target: Homeserver, localpart: string): Promise<{ userId: string; token: string }> {
    const id = `@${localpart}:${target.domain}`;
    const res = await adminBatch(target.admin, [
        ["PUT", `/_synapse/admin/v2/users/${encodeURIComponent(id)}`, { displayname: "Big room joiner" }],
        ["POST", `/_synapse/admin/v1/users/${encodeURIComponent(id)}/override_ratelimit`, { messages_per_second: 0, burst_count: 0 }],
        ["POST", `/_synapse/admin/v1/users/${encodeURIComponent(id)}/login`, {}],
    ]);
    if (res.some(([s]) => s >= 300)) throw new Error(`joiner on ${target.domain}: ${JSON.stringify(res)}`);
    return { userId: id, token: String(res[2][1].access_token) };
}

/** One join attempt: its answer, and (set below) its times. */
interface JoinOutcome {
    joined?: boolean;
    roomId?: string;
    status?: number | null;
    errcode?: string | null;
    error?: string | null;
    joinSeconds?: number | null;
    initialSyncSeconds?: number | null;
    initialSyncError?: string;
    answersAfter?: boolean;
    fullStateSeconds?: number | null;
    localJoinedMembers?: number | null;
    localStateEvents?: number | null;
}

const mb = (s: Sample[]) => round1(median(s.map((x) => x.mb.total)));

/** Memory around one join attempt: baseline, the attempt, then afterSeconds of sampling. */
async function attempt(target: Homeserver, alias: string, w: BigRoomWorkload, localpart: string, sync: boolean, members = 0) {
    const name = target.server.name;
    const user = await joiner(target, localpart);
    const sampler = new Sampler(name, target.server.ip);
    const oom0 = oomCounters(name).oomKill;
    sampler.phase = "baseline";
    await sampler.start(3 * 3600);
    const out: JoinOutcome = {};
    try {
        await sleep(w.baselineSeconds * 1000);
        sampler.phase = "join";
        const t0 = performance.now();
        try {
            const r = await call<{ room_id: string }>(
                target.base,
                user.token,
                "POST",
                `/_matrix/client/v3/join/${encodeURIComponent(alias)}`,
                {},
                { timeoutMs: 3 * 3600_000 },
            );
            out.joined = true;
            out.roomId = r.room_id;
        } catch (e) {
            out.joined = false;
            out.status = e instanceof MatrixError ? e.status : null;
            out.errcode = e instanceof MatrixError ? e.errcode : null;
            out.error = e instanceof MatrixError ? ((e.body as { error?: string }).error ?? null) : String(e);
        }
        out.joinSeconds = round1((performance.now() - t0) / 1000);
        if (out.joined && sync) {
            // What Element does next: an initial sync (lazy-loaded members).
            sampler.phase = "sync";
            const ts = performance.now();
            const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 20 }, state: { lazy_load_members: true } } }));
            try {
                await call(target.base, user.token, "GET", `/_matrix/client/v3/sync?filter=${filter}&timeout=0`, undefined, { timeoutMs: 3600_000 });
                out.initialSyncSeconds = round1((performance.now() - ts) / 1000);
            } catch (e) {
                out.initialSyncError = String(e);
            }
        }
        if (out.joined && out.roomId) {
            // Synapse joins remote rooms with partial state ("faster joins"): the join answers at
            // once and the room's full state arrives in the background. Its end: the server sees
            // every member (admin API room details), polled every 2 s, at most fullStateTimeoutSeconds.
            sampler.phase = "resync";
            const tf = performance.now();
            const q = `/_synapse/admin/v1/rooms/${encodeURIComponent(out.roomId)}`;
            out.fullStateSeconds = null;
            while ((performance.now() - tf) / 1000 < (w.fullStateTimeoutSeconds ?? 900)) {
                const [[st, d]] = await adminBatch(target.admin, [["GET", q]]).catch(() => [[0, {}]] as [number, Record<string, unknown>][]);
                if (st === 200) {
                    out.localJoinedMembers = Number(d.joined_members);
                    out.localStateEvents = Number(d.state_events);
                    if (out.localJoinedMembers >= members) {
                        out.fullStateSeconds = round1((performance.now() - t0) / 1000);
                        break;
                    }
                }
                await sleep(2000);
            }
        }
        sampler.phase = "after";
        await sleep(w.afterSeconds * 1000);
        // Does the server still answer?
        out.answersAfter = await call(target.base, undefined, "GET", "/_matrix/client/versions").then(
            () => true,
            () => false,
        );
        if (out.joined)
            await call(target.base, user.token, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(String(out.roomId))}/leave`, {}).catch(() => undefined);
    } finally {
        sampler.stop();
        saveToken(name, target.admin);
    }
    const s = sampler.samples;
    const base = s.filter((x) => x.phase === "baseline");
    const after = s.filter((x) => x.phase === "after");
    const pids = s.map((x) => x.synapsePid);
    let restarts = 0;
    for (let i = 1; i < pids.length; i++) if (pids[i] !== null && pids[i - 1] !== null && pids[i] !== pids[i - 1]) restarts++;
    restarts += pids.filter((p, i) => p === null && i > 0 && pids[i - 1] !== null).length;
    const baseVals = base.map((x) => x.mb.total);
    const memory = {
        baselineMB: mb(base),
        baselineRangeMB: baseVals.length ? round1(Math.max(...baseVals) - Math.min(...baseVals)) : null,
        afterMB: mb(after),
        peakMB: round1(Math.max(...s.map((x) => x.mb.total))),
        synapsePeakRssMB: round1(Math.max(...s.map((x) => x.rssMb.synapse))),
        cgroupPeakRssPlusShmemMB: round1(Math.max(0, ...s.map((x) => (x.cgroup ? x.cgroup.rssMb + x.cgroup.shmemMb : 0)))),
    };
    const growth = memory.peakMB !== null && memory.baselineMB !== null ? round1(memory.peakMB - memory.baselineMB) : null;
    return { ...out, ...memory, peakGrowthMB: growth, oomKills: oomCounters(name).oomKill - oom0, synapseRestarts: restarts, samples: s };
}

export interface BigRoomResult {
    room: Record<string, unknown>;
    expectedError: string | null;
    limitOn: Record<string, unknown>;
    limitOff: Record<string, unknown>;
    restoredDefault: boolean;
    /**
     * The state compressor on the partner's database, which holds the big room: the state-heavy
     * server the aging workload's (a community's rooms, state a few per cent of the database) is not.
     */
    partnerCompressor?: CompressorFigures;
}

/**
 * The big room on the partner, then the two joins from target (its stack config set through
 * configFor + deployUp: extra is the run's own overrides for that server).
 */
export async function bigRoomPhase(
    target: Homeserver,
    partner: Homeserver,
    w: BigRoomWorkload,
    extra: Record<string, unknown>,
): Promise<{ result: BigRoomResult; samples: Record<string, Sample[]> }> {
    say(`${partner.server.name}: the big room (${w.members} members, ${w.history} state events of history; reused when there)`);
    const room = await makeBigRoom(partner, w);
    say(
        `${partner.server.name}: big room ${String(room.alias)}: ${String(room.joinedMembers)} members, ${String(room.stateEvents)} state events, complexity ${String(room.complexity)} (${String(room.seconds)}s, ${JSON.stringify(room.methods)})`,
    );
    // The setup's thousands of joins went through the room's per-room join limiter on the partner
    // (rc_joins_per_room, 1 join/s: admin joins are not refused but still counted), which then
    // answers other servers' make_join with 429 until it drains, about a second per join. It is
    // in memory: restarting the partner's Synapse clears it (what a long-lived room would be).
    say(`${partner.server.name}: restarting Synapse (clears the per-room join limiter the setup filled)`);
    await tssh(partner.server.ip, "systemctl restart matrix-synapse");
    for (let i = 0; i < 120; i++) {
        if (
            await call(partner.base, undefined, "GET", "/_matrix/client/versions").then(
                () => true,
                () => false,
            )
        )
            break;
        await sleep(1000);
    }
    const alias = String(room.alias);
    const expectedError = complexityErrorText();
    const stamp = Date.now().toString(36);

    // 1. The program's default limit.
    const withDefault = { ...extra };
    delete withDefault.remoteRoomComplexityLimit;
    say(`${target.server.name}: deploy with the default complexity limit`);
    await deployUp(target.server, await configFor(target.server, FROM_VERSION, withDefault));
    const on = await attempt(target, alias, w, `bigon${stamp}`, false);
    const noise = Math.max(5, Number(on.baselineRangeMB ?? 0));
    const limitOn = {
        ...on,
        samples: undefined,
        refusedWithResourceLimit: on.joined === false && on.errcode === "M_RESOURCE_LIMIT_EXCEEDED",
        messageIsTheConfiguredText: expectedError !== null && typeof on.error === "string" && on.error.includes(expectedError),
        noiseMB: round1(noise),
        flat: typeof on.peakGrowthMB === "number" ? on.peakGrowthMB <= noise : null,
    };
    say(
        `${target.server.name}: limit on: joined ${String(on.joined)}, ${String(on.errcode)} "${String(on.error)}", memory ${String(on.baselineMB)} -> peak ${String(on.peakMB)} MB`,
    );

    // 2. No limit.
    say(`${target.server.name}: deploy with remoteRoomComplexityLimit "0" (no limit)`);
    await deployUp(target.server, await configFor(target.server, FROM_VERSION, { ...withDefault, remoteRoomComplexityLimit: "0" }));
    const off = await attempt(target, alias, w, `bigoff${stamp}`, true, Number(room.joinedMembers ?? 0));
    const limitOff = {
        ...off,
        samples: undefined,
        survived: off.joined === true && off.oomKills === 0 && off.synapseRestarts === 0 && off.answersAfter === true,
    };
    say(
        `${target.server.name}: limit off: joined ${String(off.joined)} in ${String(off.joinSeconds)}s, full state after ${String(off.fullStateSeconds)}s (${String(off.localJoinedMembers)} members seen), sync ${String(off.initialSyncSeconds)}s, peak ${String(off.peakMB)} MB (baseline ${String(off.baselineMB)}), OOM kills ${String(off.oomKills)}, restarts ${String(off.synapseRestarts)}`,
    );

    // Back to the default.
    let restoredDefault = false;
    try {
        await deployUp(target.server, await configFor(target.server, FROM_VERSION, withDefault));
        restoredDefault = true;
    } catch (e) {
        say(`${target.server.name}: restoring the default config failed: ${String(e)}`);
    }
    // Last, so that it disturbs none of the timings above: the compressor where state is heavy.
    say(`${partner.server.name}: the state compressor on the big room's server`);
    const partnerCompressor = await measureCompressor(partner.server.ip, say);
    say(
        `${partner.server.name}: state_groups_state ${String(partnerCompressor.compacted?.stateGroupsStateRows)} -> ${String(partnerCompressor.afterCompressorCompacted?.stateGroupsStateRows)} rows, database -${String(partnerCompressor.databaseSmallerPercent)} %`,
    );
    return {
        result: { room, expectedError, limitOn, limitOff, restoredDefault, partnerCompressor },
        samples: { limitOn: on.samples, limitOff: off.samples },
    };
}
