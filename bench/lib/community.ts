// Issue 14's "community" phase: one Synapse process against Synapse's worker mode on the same guest
// size, under a growing community's traffic: many users, many clients long-polling /sync, and a
// message rate that rises step by step. For each mode: the highest rate the server sustains (every
// message sent on time, every delivery seen, send-to-sync p95 at or below the target), and memory.
//
// Both modes run on the same guest (benchcomm, cold-deployed for each, so each starts from an empty
// database) with the same config but `synapseWorkers`. The load generator runs on the same 2-core
// host as the guest: its own CPU time is recorded beside the figures (see bench/README.md).
import { percentile, round1, sleep } from "./figures.ts";
import { adminBatch, call } from "./matrix.ts";
import { Sampler, type Sample } from "./sampler.ts";
import { coldDeploy } from "./deployPhases.ts";
import { oomCounters } from "./serverProbe.ts";
import { homeserver, saveToken } from "./servers.ts";
import { SyncClients } from "./syncClients.ts";
import { destroy, say, type Server } from "./testbed.ts";
import type { Client } from "./usersAndRooms.ts";
import { breakdown, describeSend, readRequestLines, type EndpointTime } from "./requestLog.ts";
import { rng } from "./workloadPlan.ts";
import type { Homeserver } from "./workload.ts";

/** The community guest: 2 GiB, a free testbed address (not one of the other bench guests). */
export const COMMUNITY: Server = { name: "benchcomm", ip: "10.250.0.56", user: "root", memory: "2G" };

/** bench/community.json. */
export interface CommunityWorkload {
    seed: number;
    users: number;
    rooms: number;
    roomsPerUser: number;
    syncingClients: number;
    sendConcurrency: number;
    messageChars: [number, number];
    /** messages per second, one step each, in rising order */
    rates: number[];
    stepSeconds: number;
    /** after each step, how long deliveries may still arrive before they count as missed */
    drainSeconds: number;
    p95TargetMs: number;
    /** synapseWorkers of the worker mode */
    workers: number;
    /** config both modes get (e.g. the connection limit worker mode needs) */
    config: Record<string, unknown>;
    /** which modes to run (default both, in this order); one alone for a re-run of that mode */
    modes?: ("single" | "workers")[];
}

/** One step of the ramp. */
export interface StepResult {
    targetRate: number;
    sent: number;
    sendErrors: number;
    achievedRate: number;
    p50Ms: number | null;
    p95Ms: number | null;
    deliveries: number;
    missed: number;
    sustained: boolean;
    /** total PSS over the step (every process in the guest but the sampler), and Synapse's processes */
    peakMB: number | null;
    synapsePeakMB: number | null;
    /** the load generator's own CPU seconds over the step (it shares the host's two cores) */
    loadGeneratorCpuSeconds: number;
    /** the host's 1-minute load average over the step (mean): anything else running skews the figures */
    hostLoad1m: number | null;
    /** the same, per second of the step and its drain, in cores */
    loadGeneratorCores?: number;
    /** the guest's CPU over the step (sampler), in cores: every Synapse process, PostgreSQL */
    cpuCores: { synapse: number | null; postgres: number | null };
    /** where the time of a send and of a sync went, from Synapse's access logs (lib/requestLog.ts) */
    requests: { send: EndpointTime; sync: EndpointTime } | { error: string };
}

export interface ModeResult {
    mode: string;
    synapseWorkers: number;
    config: Record<string, unknown>;
    coldDeploySeconds: number;
    setupSeconds: number;
    steps: StepResult[];
    /** the highest rate of an unbroken run of sustained steps from the first, 0 when the first failed */
    sustainedRate: number;
    idleMB: number | null;
    peakMB: number | null;
    oomKills: number;
    errors: string[];
}

export interface CommunityResult {
    guest: string;
    workload: CommunityWorkload;
    single: ModeResult | null;
    workers: ModeResult | null;
    /** workers' sustained rate over the single process's */
    ratio: number | null;
    target: { ratio: number; p95Ms: number };
    errors: Record<string, string>;
}

/** The workload at a scale: fewer users, syncing clients and rooms, shorter steps. */
export function scaledCommunity(w: CommunityWorkload, scale: number): CommunityWorkload & { scale: number } {
    if (scale >= 1) return { ...w, scale };
    return {
        ...w,
        scale,
        users: Math.max(40, Math.round(w.users * scale)),
        syncingClients: Math.max(10, Math.round(w.syncingClients * scale)),
        rooms: Math.max(4, Math.round(w.rooms * scale)),
        stepSeconds: Math.max(15, Math.round(w.stepSeconds * scale)),
    };
}

/** Who is in which room: user u joins roomsPerUser distinct rooms picked by the seeded generator; the first member creates it. */
export function communityRooms(w: CommunityWorkload): number[][] {
    const r = rng(w.seed);
    const members: number[][] = Array.from({ length: w.rooms }, () => []);
    for (let u = 0; u < w.users; u++) {
        const mine = new Set<number>([u % w.rooms]); // every room gets members, round robin first
        while (mine.size < Math.min(w.roomsPerUser, w.rooms)) mine.add(Math.floor(r() * w.rooms));
        for (const k of mine) members[k].push(u);
    }
    return members;
}

/** A step is sustained when every message was sent on time without error, every delivery seen, and p95 within the target. */
export function isSustained(s: Omit<StepResult, "sustained">, p95TargetMs: number): boolean {
    return s.sendErrors === 0 && s.missed === 0 && s.achievedRate >= 0.95 * s.targetRate && s.p95Ms !== null && s.p95Ms <= p95TargetMs;
}

/** The highest rate of the unbroken run of sustained steps from the first. */
export function sustainedRate(steps: StepResult[]): number {
    let best = 0;
    for (const s of steps) {
        if (!s.sustained) break;
        best = s.targetRate;
    }
    return best;
}

interface People {
    clients: Client[];
    roomIds: string[];
    members: number[][];
}

/** Users through the admin API (no password: tokens from the admin login), rooms, joins. */
async function setUp(w: CommunityWorkload, target: Homeserver, errors: string[]): Promise<People> {
    const uid = (i: number) => `@comm${i}:${target.domain}`;
    const reqs: [string, string, unknown?][] = [];
    for (let i = 0; i < w.users; i++) reqs.push(["PUT", `/_synapse/admin/v2/users/${encodeURIComponent(uid(i))}`, { displayname: `Member ${i}` }]);
    // One load generator speaks for hundreds of people: lift the per-user message rate limit, as for a bridge.
    for (let i = 0; i < w.users; i++)
        reqs.push(["POST", `/_synapse/admin/v1/users/${encodeURIComponent(uid(i))}/override_ratelimit`, { messages_per_second: 0, burst_count: 0 }]);
    for (let i = 0; i < w.users; i++) reqs.push(["POST", `/_synapse/admin/v1/users/${encodeURIComponent(uid(i))}/login`, {}]);
    const res = await adminBatch(target.admin, reqs);
    const bad = res.filter(([s]) => s >= 300);
    if (bad.length) throw new Error(`admin API (users on ${target.domain}): ${bad.length} failed, e.g. ${JSON.stringify(bad[0])}`);
    const clients = res.slice(2 * w.users).map(([, b], i) => ({ userId: uid(i), token: String(b.access_token), base: target.base }));

    const members = communityRooms(w);
    const roomIds: string[] = [];
    for (let k = 0; k < w.rooms; k++) {
        const creator = clients[members[k][0]];
        const r = await call<{ room_id: string }>(creator.base, creator.token, "POST", "/_matrix/client/v3/createRoom", {
            preset: "public_chat",
            visibility: "private",
            name: `Community room ${k}`,
        });
        roomIds.push(r.room_id);
    }
    // Round robin over the rooms: Synapse persists one room's events in order (a queue per room) and
    // limits concurrent event creation per room, so a room-by-room order keeps every request in
    // flight waiting on the same room (the first full run: ~3 joins/s with the server mostly idle).
    const perRoom = members.map((m, k) =>
        m.slice(1).map((u) => () => call(clients[u].base, clients[u].token, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomIds[k])}`, {})),
    );
    const joins: (() => Promise<unknown>)[] = [];
    for (let i = 0; perRoom.some((q) => i < q.length); i++) for (const q of perRoom) if (i < q.length) joins.push(q[i]);
    let next = 0;
    await Promise.all(
        Array.from({ length: w.sendConcurrency }, async () => {
            while (next < joins.length) await joins[next++]().catch((e: unknown) => errors.push(`join: ${String(e)}`));
        }),
    );
    say(`${target.server.name}: ${w.users} users, ${w.rooms} rooms, ${joins.length} joins`);
    return { clients, roomIds, members };
}

/** One step: `rate` messages a second for stepSeconds (open loop), then the drain; its figures. */
async function step(
    w: CommunityWorkload,
    rate: number,
    firstId: number,
    people: People,
    syncers: Set<number>,
    sync: SyncClients,
    sampler: Sampler,
    errors: string[],
): Promise<StepResult> {
    const r = rng(w.seed + rate);
    const n = Math.round(rate * w.stepSeconds);
    const plan = Array.from({ length: n }, () => {
        const room = Math.floor(r() * w.rooms);
        const m = people.members[room];
        const sender = m[Math.floor(r() * m.length)];
        const len = w.messageChars[0] + Math.floor(r() * (w.messageChars[1] - w.messageChars[0]));
        return { room, sender, body: "community ".repeat(Math.ceil(len / 10)).slice(0, len) };
    });
    const observersIn = people.members.map((m) => m.filter((u) => syncers.has(u)).length);
    const latencyFrom = sync.local.length;
    const cpu0 = process.cpuUsage();
    const sampleFrom = sampler.samples.length;
    sampler.phase = `rate ${rate}`;
    let next = 0;
    let sent = 0;
    let sendErrors = 0;
    const stepStartMs = Date.now();
    const t0 = performance.now();
    await Promise.all(
        Array.from({ length: w.sendConcurrency }, async () => {
            for (;;) {
                const i = next++;
                if (i >= n) return;
                const wait = t0 + (i * 1000) / rate - performance.now();
                if (wait > 0) await sleep(wait);
                const { room, sender, body } = plan[i];
                const id = firstId + i;
                const c = people.clients[sender];
                sync.expect.set(id, observersIn[room] - (syncers.has(sender) ? 1 : 0));
                sync.sentAt.set(id, performance.now());
                try {
                    await call(c.base, c.token, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(people.roomIds[room])}/send/m.room.message/c${id}`, {
                        msgtype: "m.text",
                        body,
                        "bench.id": id,
                    });
                    sent++;
                } catch (e) {
                    sendErrors++;
                    sync.expect.delete(id);
                    if (errors.length < 50) errors.push(`send ${id}: ${String(e)}`);
                }
            }
        }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const tDrain = Date.now();
    const outstanding = () => {
        let o = 0;
        for (let id = firstId; id < firstId + n; id++) o += Math.max(0, sync.expect.get(id) ?? 0);
        return o;
    };
    while (outstanding() > 0 && Date.now() - tDrain < w.drainSeconds * 1000) await sleep(250);
    const missed = outstanding();
    const stepEndMs = Date.now();
    const cpu = process.cpuUsage(cpu0);
    const lat = sync.local.slice(latencyFrom);
    const samples = sampler.samples.slice(sampleFrom);
    const ms = (v: number | null) => (v === null ? null : Math.round(v));
    const s = {
        targetRate: rate,
        sent,
        sendErrors,
        achievedRate: round1(sent / seconds)!,
        p50Ms: ms(percentile(lat, 50)),
        p95Ms: ms(percentile(lat, 95)),
        deliveries: lat.length,
        missed,
        peakMB: samples.length ? round1(Math.max(...samples.map((x) => x.mb.total))) : null,
        synapsePeakMB: samples.length ? round1(Math.max(...samples.map((x) => x.mb.synapse))) : null,
        loadGeneratorCpuSeconds: round1((cpu.user + cpu.system) / 1e6)!,
        loadGeneratorCores: Math.round(((cpu.user + cpu.system) / 1e6 / ((stepEndMs - stepStartMs) / 1000)) * 100) / 100,
        hostLoad1m: samples.length ? round1(samples.reduce((a, x) => a + x.hostLoad1m, 0) / samples.length) : null,
        cpuCores: { synapse: coresOf(samples, "synapse"), postgres: coresOf(samples, "postgres") },
        requests: await requestTimes(stepStartMs, stepEndMs),
    };
    const result = { ...s, sustained: isSustained(s, w.p95TargetMs) };
    say(
        `  rate ${rate}/s: sent ${sent} (${s.achievedRate}/s, ${sendErrors} errors), p50 ${s.p50Ms} ms, p95 ${s.p95Ms} ms, missed ${missed}, peak ${s.peakMB} MB, host load ${s.hostLoad1m} -> ${result.sustained ? "sustained" : "NOT sustained"}`,
    );
    if ("send" in s.requests)
        say(
            `    ${describeSend(s.requests.send)}; CPU cores: synapse ${s.cpuCores.synapse}, postgres ${s.cpuCores.postgres}, load generator ${s.loadGeneratorCores}`,
        );
    return result;
}

/** CPU cores a process group used over the samples (their cumulative CPU seconds' slope). */
function coresOf(samples: Sample[], group: "synapse" | "postgres"): number | null {
    if (samples.length < 2) return null;
    const a = samples[0];
    const b = samples[samples.length - 1];
    return b.t > a.t ? Math.round(((b.cpuSeconds[group] - a.cpuSeconds[group]) / (b.t - a.t)) * 100) / 100 : null;
}

/** The access-log breakdown of a step's window; an error is recorded, never thrown (the figure is extra). */
async function requestTimes(fromMs: number, toMs: number): Promise<StepResult["requests"]> {
    try {
        const b = breakdown(await readRequestLines(COMMUNITY.ip, fromMs), fromMs, toMs);
        return { send: b.send, sync: b.sync };
    } catch (e) {
        return { error: String(e).slice(0, 300) };
    }
}

/** The ramp against one deployed server: set up, start the syncing clients, rates in order until one is not sustained. */
export async function communityRun(
    w: CommunityWorkload,
    mode: string,
    synapseWorkers: number,
    config: Record<string, unknown>,
    coldDeploySeconds: number,
    oomKillsOf: () => number,
): Promise<{ result: ModeResult; samples: Sample[] }> {
    const target = homeserver(COMMUNITY);
    const errors: string[] = [];
    const sampler = new Sampler(COMMUNITY.name, COMMUNITY.ip);
    const oom0 = oomKillsOf();
    sampler.phase = "setup";
    await sampler.start(4 * 3600);
    const steps: StepResult[] = [];
    let setupSeconds = 0;
    let sync: SyncClients | undefined;
    try {
        const t = performance.now();
        const people = await setUp(w, target, errors);
        setupSeconds = round1((performance.now() - t) / 1000)!;
        const syncers = new Set(Array.from({ length: Math.min(w.syncingClients, w.users) }, (_, i) => i));
        sync = new SyncClients(
            [...syncers].map((i) => ({ c: people.clients[i], remote: false })),
            target.domain,
            errors,
        );
        await sync.start();
        sampler.phase = "idle";
        await sleep(20_000);
        let firstId = 0;
        for (const rate of w.rates) {
            const s = await step(w, rate, firstId, people, syncers, sync, sampler, errors);
            firstId += 1_000_000; // a step sends fewer: ids never repeat across steps
            steps.push(s);
            if (!s.sustained) break;
        }
    } finally {
        await Promise.race([sync?.stop(), sleep(35_000)]);
        sampler.stop();
        saveToken(COMMUNITY.name, target.admin);
    }
    const idle = sampler.samples.filter((s) => s.phase === "idle");
    return {
        result: {
            mode,
            synapseWorkers,
            config,
            coldDeploySeconds,
            setupSeconds,
            steps,
            sustainedRate: sustainedRate(steps),
            idleMB: idle.length
                ? round1(
                      percentile(
                          idle.map((s) => s.mb.total),
                          50,
                      ),
                  )
                : null,
            peakMB: sampler.samples.length ? round1(Math.max(...sampler.samples.map((s) => s.mb.total))) : null,
            oomKills: oomKillsOf() - oom0,
            errors: errors.slice(0, 20),
        },
        samples: sampler.samples,
    };
}

/**
 * The phase: the single process, then worker mode, each cold-deployed on the community guest with
 * the same config but synapseWorkers; the guest is destroyed (with its data) afterwards. A mode that
 * fails is recorded with its error and the other still runs.
 */
export async function communityPhase(partner: Homeserver, w: CommunityWorkload): Promise<{ result: CommunityResult; samples: Record<string, Sample[]> }> {
    const result: CommunityResult = {
        guest: `${COMMUNITY.name} (${COMMUNITY.memory})`,
        workload: w,
        single: null,
        workers: null,
        ratio: null,
        target: { ratio: 1.3, p95Ms: w.p95TargetMs },
        errors: {},
    };
    const samples: Record<string, Sample[]> = {};
    const modes = w.modes ?? ["single", "workers"];
    const all = [
        ["single", 0],
        ["workers", w.workers],
    ] as const;
    for (const [mode, n] of all.filter(([m]) => modes.includes(m))) {
        try {
            const config = { ...w.config, synapseWorkers: n };
            say(`community: ${mode} (synapseWorkers ${n}) on ${COMMUNITY.name}`);
            const cold = await coldDeploy(COMMUNITY, config, partner);
            const m = await communityRun(w, mode, n, config, cold.coldDeploySeconds, () => oomCounters(COMMUNITY.name).oomKill);
            result[mode] = m.result;
            samples[mode] = m.samples;
            say(`community: ${mode} sustains ${m.result.sustainedRate} messages/s (p95 <= ${w.p95TargetMs} ms), peak ${m.result.peakMB} MB`);
        } catch (e) {
            result.errors[mode] = e instanceof Error ? (e.stack ?? e.message).slice(0, 2000) : String(e);
            say(`community: ${mode} FAILED: ${result.errors[mode]}`);
        }
    }
    await destroy(COMMUNITY, true);
    if (result.single && result.workers && result.single.sustainedRate > 0) result.ratio = round1(result.workers.sustainedRate / result.single.sustainedRate);
    return { result, samples };
}
