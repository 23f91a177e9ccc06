// The standard workload (bench/workload.json) against one homeserver, with a federated partner:
// users (a few through registration tokens, the rest through the admin API), rooms, joins (local and
// over federation), then messages at a fixed rate from a few concurrent senders while separate
// clients long-poll /sync and time when each message reaches them; media uploads (images are
// thumbnailed by Synapse) and URL previews interleaved; then an idle period with the clients still
// syncing. Deterministic: a seeded generator picks rooms, senders and texts.
//
// This file: the workload's shape, its result, and the order of its phases. The parts: the plan
// (workloadPlan.ts), users and rooms (usersAndRooms.ts), syncing clients (syncClients.ts), the
// messages (messages.ts), media (media.ts) and link previews (urlPreviews.ts).
import { percentile, sleep } from "./figures.ts";
import { counters, type AdminHandle } from "./matrix.ts";
import { MediaUploads } from "./media.ts";
import { sendMessages } from "./messages.ts";
import type { Sampler } from "./sampler.ts";
import { SyncClients } from "./syncClients.ts";
import { say, type Server } from "./testbed.ts";
import { UrlPreviews, type PageServer } from "./urlPreviews.ts";
import { partnerUsersLeave, setUpUsersAndRooms } from "./usersAndRooms.ts";
import { makePlan } from "./workloadPlan.ts";

export interface Workload {
    seed: number;
    users: number;
    tokenRegisteredUsers: number;
    rooms: number;
    roomsPerUser: number;
    messages: number;
    messageChars: [number, number];
    targetMessagesPerSecond: number;
    sendConcurrency: number;
    syncingClients: number;
    mediaUploads: number;
    mediaImageShare: number;
    mediaBytes: [number, number];
    urlPreviews: number;
    federatedRooms: number;
    federatedUsers: number;
    federatedMessageShare: number;
    idleSeconds: number;
    steadyWindowSeconds: number;
}

export interface Homeserver {
    server: Server;
    domain: string;
    base: string; // https://matrix.<domain>
    admin: AdminHandle;
}

export interface WorkloadResult {
    startedEpoch: number;
    phases: { name: string; startT: number; endT: number }[];
    setupSeconds: number;
    messagePhaseSeconds: number;
    messagesSent: number;
    achievedMessagesPerSecond: number;
    latency: {
        local: { n: number; p50: number | null; p95: number | null; p99: number | null; max: number | null };
        federated: { n: number; p50: number | null; p95: number | null; max: number | null };
        missedObservations: number;
        sendRequest: { p50: number | null; p95: number | null };
    };
    media: { uploads: number; images: number; bytes: number; thumbnailsFetched: number; uploadP50Ms: number | null; errors: string[] };
    urlPreviews: { requested: number; outcomes: Record<string, number>; pageServerHits: number; example?: string };
    requests: { total: number; ratelimited429: number; errors: number };
    syncRequests: number;
    errors: string[];
}

/** Runs the workload against target (with the partner's users), marking its phases in the sampler. */
export async function runWorkload(w: Workload, target: Homeserver, partner: Homeserver, sampler: Sampler, pages: PageServer): Promise<WorkloadResult> {
    const plan = makePlan(w);
    const errors: string[] = [];
    const phases: WorkloadResult["phases"] = [];
    const tOf = () => Math.round((Date.now() / 1000 - sampler.t0) * 10) / 10;
    const startPhase = (name: string) => {
        if (phases.length) phases[phases.length - 1].endT = tOf();
        phases.push({ name, startT: tOf(), endT: tOf() });
        sampler.phase = name;
        say(`${target.server.name}: phase ${name}`);
    };
    const startedEpoch = Date.now() / 1000;
    const c0 = { ...counters };
    const setupT0 = performance.now();
    startPhase("setup");
    // Users (a few register as a person would, the rest through the admin API), rooms, joins.
    const people = await setUpUsersAndRooms(w, plan, target, partner, errors);
    const setupSeconds = (performance.now() - setupT0) / 1000;

    // Syncing clients: long-poll /sync; every message carrying "bench.id" is timed against its send.
    const { clients, fedClients } = people;
    const observers = [...plan.syncers.map((i) => ({ c: clients[i], remote: false })), ...(fedClients[0] ? [{ c: fedClients[0], remote: true }] : [])];
    const sync = new SyncClients(observers, target.domain, errors);
    await sync.start();

    // Messages at a fixed rate, media and previews interleaved.
    startPhase("messages");
    const media = new MediaUploads(w);
    const previews = new UrlPreviews(w, pages);
    const { sent, sendRtt, seconds: messagePhaseSeconds } = await sendMessages(w, plan, people, sync, media, previews, errors, target.server.name);
    // Wait (at most 60 s) for the syncing clients to see the last messages.
    const tDrain = Date.now();
    while (sync.outstanding() > 0 && Date.now() - tDrain < 60_000) await sleep(250);
    const missedObservations = sync.outstanding();
    previews.result.pageServerHits = pages.hits;
    say(
        `${target.server.name}: ${sent} messages in ${messagePhaseSeconds.toFixed(0)}s (${(sent / messagePhaseSeconds).toFixed(1)}/s); drained in ${((Date.now() - tDrain) / 1000).toFixed(1)}s, ${missedObservations} observations missing`,
    );

    // Idle: nothing is sent, the clients keep long-polling (as open Element tabs do).
    startPhase("idle");
    await sleep(w.idleSeconds * 1000);
    const syncEnded = sync.stop();
    phases[phases.length - 1].endT = tOf();
    sampler.phase = "cleanup";

    await partnerUsersLeave(w, people);
    await Promise.race([syncEnded, sleep(35_000)]);

    const round = (v: number | null) => (v === null ? null : Math.round(v));
    const { local, federated } = sync;
    return {
        startedEpoch,
        phases,
        setupSeconds: Math.round(setupSeconds * 10) / 10,
        messagePhaseSeconds: Math.round(messagePhaseSeconds * 10) / 10,
        messagesSent: sent,
        achievedMessagesPerSecond: Math.round((sent / messagePhaseSeconds) * 10) / 10,
        latency: {
            local: {
                n: local.length,
                p50: round(percentile(local, 50)),
                p95: round(percentile(local, 95)),
                p99: round(percentile(local, 99)),
                max: round(percentile(local, 100)),
            },
            federated: {
                n: federated.length,
                p50: round(percentile(federated, 50)),
                p95: round(percentile(federated, 95)),
                max: round(percentile(federated, 100)),
            },
            missedObservations,
            sendRequest: { p50: round(percentile(sendRtt, 50)), p95: round(percentile(sendRtt, 95)) },
        },
        media: media.summary(),
        urlPreviews: previews.result,
        requests: { total: counters.requests - c0.requests, ratelimited429: counters.ratelimited - c0.ratelimited, errors: counters.errors - c0.errors },
        syncRequests: sync.requests,
        errors: errors.slice(0, 50),
    };
}
