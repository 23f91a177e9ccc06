// The aging phase: the aging workload (agingWorkload.ts) against one homeserver with the memory
// sampled throughout, then on the same events: the state compressor (its unit, when the deployed
// program has it) and the media retention (Synapse's purge of the remote-media cache, what
// media_retention's remote-media job does). Figures: steady memory after each quarter, events/s,
// database size and state_groups_state rows without and with the compressor, media store bytes
// before and after retention.
import * as fs from "node:fs";
import * as path from "node:path";
import { median, percentile, round1, sleep } from "./figures.ts";
import { adminBatch, call } from "./matrix.ts";
import { AgingRunner, agingPlan, type AgingWorkload, type OpStats } from "./agingWorkload.ts";
import { Sampler, type Sample } from "./sampler.ts";
import { saveToken } from "./servers.ts";
import { memoryTrend, type MemoryTrend } from "./trend.ts";
import { dbFigures, MB, measureCompressor, mediaFigures, oomCounters, type CompressorFigures, type DbFigures } from "./serverProbe.ts";
import { SyncClients } from "./syncClients.ts";
import { BENCH_STATE, say } from "./testbed.ts";
import type { Client } from "./usersAndRooms.ts";
import type { Homeserver } from "./workload.ts";

/** Where the quarters measured so far are kept while the phase runs (AGING_PROGRESS). */
export const AGING_PROGRESS = path.join(BENCH_STATE, "aging-progress.json");

function writeProgress(p: { stats: OpStats } & Record<string, unknown>): void {
    const { sendRttMs, ...stats } = p.stats;
    fs.writeFileSync(
        AGING_PROGRESS,
        JSON.stringify({ writtenAt: new Date().toISOString(), ...p, stats: { ...stats, sends: sendRttMs.length } }, null, 2) + "\n",
    );
}

/** The workload with the scale applied: events, users, pauses (never below what the figures need). */
export function scaledAging(w: AgingWorkload, scale: number): AgingWorkload & { scale: number } {
    if (scale >= 1) return { ...w, scale: 1 };
    const pause = Math.max(30, Math.round(w.pauseSeconds * scale));
    return {
        ...w,
        scale,
        events: Math.round(w.events * scale),
        users: Math.max(20, Math.round(w.users * Math.sqrt(scale))),
        activeUsers: Math.max(12, Math.round(w.activeUsers * Math.sqrt(scale))),
        pauseSeconds: pause,
        steadyWindowSeconds: Math.min(w.steadyWindowSeconds, pause - 10),
    };
}

/** Users (admin API, tokens by login-as-user, rate limits lifted), the partner's users, rooms, joins. */
async function population(w: AgingWorkload, members: number[][], target: Homeserver, partner: Homeserver, errors: string[]) {
    const uid = (i: number) => `@aging${String(i).padStart(3, "0")}:${target.domain}`;
    const fuid = (i: number) => `@agingfed${i}:${partner.domain}`;
    const batch = async (h: Homeserver, ids: string[], name: (i: number) => string) => {
        const reqs: [string, string, unknown?][] = [];
        for (const [i, id] of ids.entries()) reqs.push(["PUT", `/_synapse/admin/v2/users/${encodeURIComponent(id)}`, { displayname: name(i) }]);
        for (const id of ids)
            reqs.push(["POST", `/_synapse/admin/v1/users/${encodeURIComponent(id)}/override_ratelimit`, { messages_per_second: 0, burst_count: 0 }]);
        for (const id of ids) reqs.push(["POST", `/_synapse/admin/v1/users/${encodeURIComponent(id)}/login`, {}]);
        const res = await adminBatch(h.admin, reqs);
        const bad = res.filter(([s]) => s >= 300);
        if (bad.length) throw new Error(`admin API (users on ${h.domain}): ${bad.length} failed, e.g. ${JSON.stringify(bad[0])}`);
        return ids.map((id, i): Client => ({ userId: id, token: String(res[2 * ids.length + i][1].access_token), base: h.base }));
    };
    const clients = await batch(
        target,
        Array.from({ length: w.users }, (_, i) => uid(i)),
        (i) => `Aging user ${i}`,
    );
    const fedClients = await batch(
        partner,
        Array.from({ length: w.federatedUsers }, (_, i) => fuid(i)),
        (i) => `Partner ${i}`,
    );
    const roomIds: string[] = [];
    for (let k = 0; k < w.rooms; k++) {
        const c = clients[members[k][0]];
        const r = await call<{ room_id: string }>(c.base, c.token, "POST", "/_matrix/client/v3/createRoom", {
            preset: "public_chat",
            visibility: "private",
            name: `Aging room ${k}${k < w.federatedRooms ? " (federated)" : ""}`,
        });
        roomIds.push(r.room_id);
    }
    const joins: [Client, number, string][] = [];
    members.forEach((m, k) => m.slice(1).forEach((u) => joins.push([clients[u], k, ""])));
    for (let k = 0; k < Math.min(w.federatedRooms, w.rooms); k++)
        for (const f of fedClients) joins.push([f, k, `?server_name=${encodeURIComponent(target.domain)}`]);
    let next = 0;
    await Promise.all(
        Array.from({ length: w.sendConcurrency }, async () => {
            while (next < joins.length) {
                const [c, k, q] = joins[next++];
                await call(c.base, c.token, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomIds[k])}${q}`, {}).catch((e: unknown) =>
                    errors.push(`join ${c.userId} -> ${k}: ${String(e)}`),
                );
            }
        }),
    );
    return { clients, fedClients, roomIds, joins: joins.length };
}

export interface AgingResult {
    scale: number;
    plannedEvents: number;
    eventsSent: number;
    operations: number;
    operationsByKind: Record<string, number>;
    operationErrors: number;
    setupSeconds: number;
    setupJoins: number;
    eventSeconds: number;
    eventsPerSecond: number | null;
    databaseEventsAdded: number;
    quarters: {
        steadyMB: number | null;
        synapseSteadyMB: number | null;
        postgresSteadyMB: number | null;
        seconds: number;
        events: number;
        p95LatencyMs: number | null;
        /** the database at the quarter's end (null if it could not be read) */
        database: DbFigures | null;
    }[];
    firstQuarterSteadyMB: number | null;
    lastQuarterSteadyMB: number | null;
    lastOverFirst: number | null;
    /** memory over the run in 16 slices, and from where it levels off (lib/trend.ts); absent in runs before it */
    memoryTrend?: MemoryTrend;
    peakMB: number;
    oomKills: number;
    synapseRestarts: number;
    database: CompressorFigures & { summaryMB: Record<string, number | null> };
    media: {
        before: Record<string, number> | null;
        after: Record<string, number> | null;
        purge: string;
        remoteFetched: number;
        urlPreviews: string;
    };
    errors: string[];
}

/** The aging workload against target, sampled throughout; then the compressor and the retention. */
export async function agingPhase(
    target: Homeserver,
    partner: Homeserver,
    w: AgingWorkload & { scale: number },
): Promise<{ result: AgingResult; samples: Sample[] }> {
    const name = target.server.name;
    const ip = target.server.ip;
    const plan = agingPlan(w, w.events);
    say(`${name}: aging: ${plan.ops.length} operations, ${plan.plannedEvents} planned events, ${w.rooms} rooms, ${w.users} users (scale ${w.scale})`);
    const errors: string[] = [];
    const sampler = new Sampler(name, ip);
    const oom0 = oomCounters(name).oomKill;
    sampler.phase = "baseline";
    await sampler.start(6 * 3600);
    let result: AgingResult;
    try {
        await sleep(10_000);
        sampler.phase = "setup";
        const tSetup = performance.now();
        const people = await population(w, plan.members, target, partner, errors);
        const setupSeconds = (performance.now() - tSetup) / 1000;
        say(`${name}: aging setup ${setupSeconds.toFixed(0)}s (${people.joins} joins)`);
        const db0 = await dbFigures(ip);
        const syncers = Array.from({ length: Math.min(w.syncingClients, w.activeUsers) }, (_, i) => ({ c: people.clients[i], remote: false }));
        if (people.fedClients[0]) syncers.push({ c: people.fedClients[0], remote: true });
        const sync = new SyncClients(syncers, target.domain, errors);
        await sync.start();
        const runner = new AgingRunner(w, plan, target, people.clients, people.fedClients, people.roomIds, errors);
        runner.onMessage = (id) => sync.sentAt.set(id, performance.now());

        // Four quarters of (about) equal events, each followed by a pause: steady memory at its end.
        const cuts = [0];
        let acc = 0;
        plan.ops.forEach((op, i) => {
            acc += plan.eventsOf(op);
            if (cuts.length < 4 && acc >= (plan.plannedEvents * cuts.length) / 4) cuts.push(i + 1);
        });
        cuts.push(plan.ops.length);
        const quarters: AgingResult["quarters"] = [];
        let eventSeconds = 0;
        for (let q = 0; q < 4; q++) {
            sampler.phase = `q${q + 1}`;
            const ev0 = runner.stats.events;
            const lat0 = sync.local.length;
            const s = await runner.run(cuts[q], cuts[q + 1], `quarter ${q + 1}`);
            eventSeconds += s;
            const lat = sync.local.slice(lat0);
            sampler.phase = `pause${q + 1}`;
            const pauseT0 = Date.now() / 1000 - sampler.t0;
            await sleep(w.pauseSeconds * 1000);
            const pauseEnd = Date.now() / 1000 - sampler.t0;
            const win = sampler.samples.filter((x) => x.t >= Math.max(pauseT0, pauseEnd - w.steadyWindowSeconds) && x.t <= pauseEnd);
            quarters.push({
                steadyMB: round1(median(win.map((x) => x.mb.total))),
                synapseSteadyMB: round1(median(win.map((x) => x.mb.synapse))),
                postgresSteadyMB: round1(median(win.map((x) => x.mb.postgres))),
                seconds: round1(s)!,
                events: runner.stats.events - ev0,
                p95LatencyMs: percentile(lat, 95) === null ? null : Math.round(percentile(lat, 95)!),
                database: await dbFigures(ip).catch(() => null),
            });
            const qdb = quarters[q].database;
            say(
                `${name}: aging quarter ${q + 1}: ${quarters[q].events} events in ${quarters[q].seconds}s, steady ${quarters[q].steadyMB} MB` +
                    (qdb
                        ? `, database ${MB(qdb.databaseBytes)} MB (push actions ${MB(qdb.pushActionsBytes)} MB, state_groups_state ${qdb.stateGroupsStateRows} rows)`
                        : ""),
            );
            // A run of hours can be stopped (or the session end) before its JSON is written: the
            // quarters measured so far are kept beside the benchmark's state.
            writeProgress({ scale: w.scale, plannedEvents: plan.plannedEvents, quarters, stats: runner.stats, errors: errors.slice(0, 20) });
        }
        const syncEnded = sync.stop();
        await Promise.race([syncEnded, sleep(35_000)]);

        // The compressor on the same events (serverProbe.measureCompressor: both sides compacted).
        sampler.phase = "compress";
        const c = await measureCompressor(ip, say);

        // Retention: the remote-media cache purged (what media_retention's remote job does).
        sampler.phase = "retention";
        let mediaBefore: Record<string, unknown> | null = null;
        let mediaAfter: Record<string, unknown> | null = null;
        let purge: string;
        try {
            mediaBefore = await mediaFigures(ip);
            const [[pst, pbody]] = await adminBatch(target.admin, [["POST", `/_synapse/admin/v1/purge_media_cache?before_ts=${Date.now()}`, {}]]);
            purge = `POST purge_media_cache?before_ts=now: ${pst} ${JSON.stringify(pbody)}`;
            mediaAfter = await mediaFigures(ip);
        } catch (e) {
            purge = `not measured: ${String(e instanceof Error ? e.message : e).slice(0, 500)}`;
        }
        sampler.phase = "end";
        await sleep(3000);

        const samples = sampler.samples;
        const pids = samples.map((x) => x.synapsePid);
        let restarts = 0;
        for (let i = 1; i < pids.length; i++) if (pids[i] !== null && pids[i - 1] !== null && pids[i] !== pids[i - 1]) restarts++;
        restarts += pids.filter((p, i) => p === null && i > 0 && pids[i - 1] !== null).length;
        const toMb = (m: Record<string, unknown>) =>
            Object.fromEntries(
                Object.entries(m)
                    .filter(([k]) => k !== "dir")
                    .map(([k, v]) => [k, MB(Number(v))]),
            );
        const q1 = quarters[0].steadyMB;
        const q4 = quarters[3].steadyMB;
        result = {
            scale: w.scale,
            plannedEvents: plan.plannedEvents,
            eventsSent: runner.stats.events,
            operations: runner.stats.ops,
            operationsByKind: runner.stats.byKind,
            operationErrors: runner.stats.errors,
            setupSeconds: round1(setupSeconds)!,
            setupJoins: people.joins,
            eventSeconds: round1(eventSeconds)!,
            eventsPerSecond: eventSeconds > 0 ? round1(runner.stats.events / eventSeconds) : null,
            databaseEventsAdded: c.before.events - db0.events,
            quarters,
            firstQuarterSteadyMB: q1,
            lastQuarterSteadyMB: q4,
            lastOverFirst: q1 && q4 ? Math.round((q4 / q1) * 1000) / 1000 : null,
            memoryTrend: memoryTrend(samples),
            peakMB: round1(Math.max(...samples.map((x) => x.mb.total)))!,
            oomKills: oomCounters(name).oomKill - oom0,
            synapseRestarts: restarts,
            database: {
                ...c,
                summaryMB: {
                    before: MB(c.before.databaseBytes),
                    indexesRebuilt: c.indexesRebuilt ? MB(c.indexesRebuilt.databaseBytes) : null,
                    compacted: c.compacted ? MB(c.compacted.databaseBytes) : null,
                    afterCompressor: c.afterCompressor ? MB(c.afterCompressor.databaseBytes) : null,
                    afterCompressorCompacted: c.afterCompressorCompacted ? MB(c.afterCompressorCompacted.databaseBytes) : null,
                },
            },
            media: {
                before: mediaBefore && toMb(mediaBefore),
                after: mediaAfter && toMb(mediaAfter),
                purge,
                remoteFetched: runner.stats.remoteFetched,
                urlPreviews:
                    "not exercised: the testbed has only private addresses, whose previews the program always blocks (url_cache stays empty; see README 'URL previews are refused')",
            },
            errors: errors.slice(0, 50),
        };
    } finally {
        sampler.stop();
        saveToken(name, target.admin);
        saveToken(partner.server.name, partner.admin);
    }
    const d = result.database;
    say(
        `${name}: aging: ${result.eventsSent} events at ${result.eventsPerSecond}/s; steady q1 ${result.firstQuarterSteadyMB} MB, q4 ${result.lastQuarterSteadyMB} MB; ` +
            `database ${d.summaryMB.compacted} MB -> ${d.summaryMB.afterCompressorCompacted ?? "(no compressor)"} MB; ` +
            `remote media ${result.media.before?.remote_content} -> ${result.media.after?.remote_content} MB; OOM kills ${result.oomKills}`,
    );
    return { result, samples: sampler.samples };
}
