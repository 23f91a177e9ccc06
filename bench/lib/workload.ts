// The standard workload (bench/workload.json) against one homeserver, with a federated partner:
// users (a few through registration tokens, the rest through the admin API), rooms, joins (local and
// over federation), then messages at a fixed rate from a few concurrent senders while separate
// clients long-poll /sync and time when each message reaches them; media uploads (images are
// thumbnailed by Synapse) and URL previews interleaved; then an idle period with the clients still
// syncing. Deterministic: a seeded generator picks rooms, senders and texts.
import * as http from "node:http";
import * as zlib from "node:zlib";
import { adminBatch, call, counters, MatrixError, type AdminHandle } from "./matrix.ts";
import { say, type Server } from "./testbed.ts";
import type { Sampler } from "./sampler.ts";

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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** mulberry32: a small seeded PRNG, so every server gets the same workload. */
function rng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

const WORDS = (
    "mesh node antenna rooftop link router firmware channel meeting tonight install ladder cable " +
    "signal strength latency packet gateway backbone volunteer neighbour survey sector omni dish " +
    "power battery solar weather storm fixed broken works thanks great question anyone help map " +
    "street corner building access permission landlord the a to of and is in it for on with at"
).split(" ");

export function percentile(values: number[], p: number): number | null {
    if (values.length === 0) return null;
    const s = [...values].sort((a, b) => a - b);
    const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
    return s[i];
}

/** A PNG (RGB, noise over a gradient, so it does not compress much) of about `bytes` bytes. */
function makePng(bytes: number, r: () => number): { data: Uint8Array; width: number; height: number } {
    const width = Math.max(16, Math.round(Math.sqrt((bytes / 3) * (4 / 3))));
    const height = Math.max(12, Math.round((width * 3) / 4));
    const raw = Buffer.alloc((width * 3 + 1) * height);
    for (let y = 0; y < height; y++) {
        const row = y * (width * 3 + 1);
        raw[row] = 0;
        for (let x = 0; x < width; x++) {
            const o = row + 1 + x * 3;
            raw[o] = (x * 255) / width + r() * 64;
            raw[o + 1] = (y * 255) / height + r() * 64;
            raw[o + 2] = r() * 255;
        }
    }
    const chunk = (type: string, body: Buffer) => {
        const len = Buffer.alloc(4);
        len.writeUInt32BE(body.length);
        const tb = Buffer.concat([Buffer.from(type, "ascii"), body]);
        const crc = Buffer.alloc(4);
        crc.writeUInt32BE(zlib.crc32(tb) >>> 0);
        return Buffer.concat([len, tb, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(width, 0);
    ihdr.writeUInt32BE(height, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // RGB
    const png = Buffer.concat([
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        chunk("IHDR", ihdr),
        chunk("IDAT", zlib.deflateSync(raw, { level: 6 })),
        chunk("IEND", Buffer.alloc(0)),
    ]);
    return { data: new Uint8Array(png), width, height };
}

// --- the page Synapse is asked to preview -------------------------------------------------------

export class PageServer {
    hits = 0;
    private srv?: http.Server;
    readonly host: string;
    readonly port: number;
    constructor(host: string, port: number) {
        this.host = host;
        this.port = port;
    }
    start(): Promise<void> {
        this.srv = http.createServer((req, res) => {
            this.hits++;
            res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
            res.end(
                `<!doctype html><html><head><title>Mesh install guide ${req.url}</title>` +
                    `<meta property="og:title" content="Mesh install guide"><meta property="og:description" content="How to mount a rooftop node.">` +
                    `</head><body><h1>Mesh install guide</h1><p>${"Lorem ipsum ".repeat(200)}</p></body></html>`,
            );
        });
        return new Promise((resolve, reject) => {
            this.srv!.once("error", reject);
            this.srv!.listen(this.port, this.host, () => resolve());
        });
    }
    url(i: number): string {
        return `http://${this.host}:${this.port}/guide-${i}.html`;
    }
    stop(): void {
        this.srv?.close();
    }
}

// --- the plan -----------------------------------------------------------------------------------

interface Plan {
    userNames: string[]; // localparts
    fedNames: string[];
    roomMembers: number[][]; // room -> local user indexes (first = creator)
    syncers: number[]; // local user indexes that sync
    messages: { room: number; sender: number; fed: boolean; body: string }[];
    mediaAt: Map<number, number>; // message index -> media index
    previewAt: Map<number, number>; // message index -> preview index
}

function makePlan(w: Workload): Plan {
    const r = rng(w.seed);
    const userNames = Array.from({ length: w.users }, (_, i) => `benchuser${String(i).padStart(2, "0")}`);
    const fedNames = Array.from({ length: w.federatedUsers }, (_, i) => `benchfed${i}`);
    const roomMembers: number[][] = Array.from({ length: w.rooms }, () => []);
    for (let i = 0; i < w.users; i++) {
        for (let j = 0; j < w.roomsPerUser; j++) {
            const room = (i * 7 + j) % w.rooms;
            if (!roomMembers[room].includes(i)) roomMembers[room].push(i);
        }
    }
    const syncers = Array.from({ length: Math.min(w.syncingClients, w.users) }, (_, i) => i);
    roomMembers.forEach((m, k) => {
        if (!m.some((u) => syncers.includes(u))) m.push(syncers[k % syncers.length]);
        m.sort((a, b) => a - b);
    });
    const weights = roomMembers.map((_, k) => 1 / Math.pow(k + 1, 0.6));
    const wsum = weights.reduce((a, b) => a + b, 0);
    const pickRoom = (fedOnly: boolean) => {
        if (fedOnly) return Math.floor(r() * w.federatedRooms);
        let x = r() * wsum;
        for (let k = 0; k < weights.length; k++) if ((x -= weights[k]) <= 0) return k;
        return weights.length - 1;
    };
    const messages: Plan["messages"] = [];
    for (let m = 0; m < w.messages; m++) {
        const fed = w.federatedRooms > 0 && w.federatedUsers > 0 && r() < w.federatedMessageShare;
        const room = pickRoom(fed);
        const sender = fed ? Math.floor(r() * w.federatedUsers) : roomMembers[room][Math.floor(r() * roomMembers[room].length)];
        const len = w.messageChars[0] + Math.floor(r() * (w.messageChars[1] - w.messageChars[0]));
        let body = "";
        while (body.length < len) body += (body ? " " : "") + WORDS[Math.floor(r() * WORDS.length)];
        messages.push({ room, sender, fed, body });
    }
    const spread = (n: number, offset: number) => new Map(Array.from({ length: n }, (_, i) => [Math.floor(((i + offset) * w.messages) / n), i] as [number, number]));
    return { userNames, fedNames, roomMembers, syncers, messages, mediaAt: spread(w.mediaUploads, 0.25), previewAt: spread(w.urlPreviews, 0.6) };
}

// --- results ------------------------------------------------------------------------------------

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

// --- running it ---------------------------------------------------------------------------------

interface Client {
    userId: string;
    token: string;
    base: string;
}

export async function runWorkload(
    w: Workload,
    target: Homeserver,
    partner: Homeserver,
    sampler: Sampler,
    pages: PageServer,
): Promise<WorkloadResult> {
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

    // Users. A few register as a person would (registration token, through nginx); registration
    // is rate-limited per address, so the rest are made through the admin API.
    const password = "bench-" + w.seed.toString(36) + "-pw";
    const [[st, tok]] = await adminBatch(target.admin, [["POST", "/_synapse/admin/v1/registration_tokens/new", { uses_allowed: w.tokenRegisteredUsers }]]);
    if (st !== 200) throw new Error(`registration token: ${st} ${JSON.stringify(tok)}`);
    const clients: Client[] = new Array(w.users);
    for (let i = 0; i < w.tokenRegisteredUsers; i++) {
        const first = await registerProbe(target.base, plan.userNames[i], password);
        const res = await call<{ user_id: string; access_token: string }>(target.base, undefined, "POST", "/_matrix/client/v3/register", {
            username: plan.userNames[i],
            password,
            initial_device_display_name: "bench",
            auth: { type: "m.login.registration_token", token: tok.token, session: first },
        }).catch(async (e: unknown) => {
            // Some versions ask for a dummy stage after the token.
            if (e instanceof MatrixError && e.status === 401) {
                return call<{ user_id: string; access_token: string }>(target.base, undefined, "POST", "/_matrix/client/v3/register", {
                    username: plan.userNames[i],
                    password,
                    auth: { type: "m.login.dummy", session: first },
                });
            }
            throw e;
        });
        clients[i] = { userId: res.user_id, token: res.access_token, base: target.base };
    }
    const uid = (i: number) => `@${plan.userNames[i]}:${target.domain}`;
    const adminReqs: [string, string, unknown?][] = [];
    for (let i = w.tokenRegisteredUsers; i < w.users; i++) {
        // No password (it would cost a bcrypt hash each): their tokens come from the admin API.
        adminReqs.push(["PUT", `/_synapse/admin/v2/users/${encodeURIComponent(uid(i))}`, { displayname: `Bench user ${i}` }]);
    }
    for (let i = 0; i < w.users; i++) {
        // The benchmark drives 50 people's traffic from one address at a fixed rate: Synapse's
        // per-user message rate limit is lifted for its users (admin API), as for a bridge or bot.
        adminReqs.push(["POST", `/_synapse/admin/v1/users/${encodeURIComponent(uid(i))}/override_ratelimit`, { messages_per_second: 0, burst_count: 0 }]);
    }
    for (let i = w.tokenRegisteredUsers; i < w.users; i++) {
        // Password login is rate-limited per address (rc_login): tokens come from the admin API.
        adminReqs.push(["POST", `/_synapse/admin/v1/users/${encodeURIComponent(uid(i))}/login`, {}]);
    }
    const res = await adminBatch(target.admin, adminReqs);
    const bad = res.filter(([s]) => s >= 300);
    if (bad.length) throw new Error(`admin API (users on ${target.domain}): ${bad.length} failed, e.g. ${JSON.stringify(bad[0])}`);
    const logins = res.slice(res.length - (w.users - w.tokenRegisteredUsers));
    for (let i = w.tokenRegisteredUsers; i < w.users; i++) {
        clients[i] = { userId: uid(i), token: String(logins[i - w.tokenRegisteredUsers][1].access_token), base: target.base };
    }

    // The partner's users (kept between runs; made or updated idempotently).
    const fuid = (i: number) => `@${plan.fedNames[i]}:${partner.domain}`;
    const fres = await adminBatch(partner.admin, [
        ...plan.fedNames.map((_, i) => ["PUT", `/_synapse/admin/v2/users/${encodeURIComponent(fuid(i))}`, { password, displayname: `Partner user ${i}` }] as [string, string, unknown]),
        ...plan.fedNames.map((_, i) => ["POST", `/_synapse/admin/v1/users/${encodeURIComponent(fuid(i))}/override_ratelimit`, { messages_per_second: 0, burst_count: 0 }] as [string, string, unknown]),
        ...plan.fedNames.map((_, i) => ["POST", `/_synapse/admin/v1/users/${encodeURIComponent(fuid(i))}/login`, {}] as [string, string, unknown]),
    ]);
    if (fres.some(([s]) => s >= 300)) throw new Error(`admin API (users on ${partner.domain}): ${JSON.stringify(fres.find(([s]) => s >= 300))}`);
    const fedClients: Client[] = plan.fedNames.map((_, i) => ({ userId: fuid(i), token: String(fres[2 * w.federatedUsers + i][1].access_token), base: partner.base }));

    // Rooms (public join rule, not in the directory), joins.
    const roomIds: string[] = [];
    for (let k = 0; k < w.rooms; k++) {
        const creator = clients[plan.roomMembers[k][0]];
        const r = await call<{ room_id: string }>(creator.base, creator.token, "POST", "/_matrix/client/v3/createRoom", {
            preset: "public_chat",
            visibility: "private",
            name: `Bench room ${k}${k < w.federatedRooms ? " (federated)" : ""}`,
            topic: "benchmark",
        });
        roomIds.push(r.room_id);
    }
    const joins: (() => Promise<unknown>)[] = [];
    plan.roomMembers.forEach((members, k) => {
        for (const u of members.slice(1)) joins.push(() => call(clients[u].base, clients[u].token, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomIds[k])}`, {}));
    });
    await pool(joins, w.sendConcurrency, errors);
    const fedJoinT0 = performance.now();
    for (let k = 0; k < w.federatedRooms; k++) {
        for (const f of fedClients) {
            await call(f.base, f.token, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomIds[k])}?server_name=${encodeURIComponent(target.domain)}`, {}).catch((e: unknown) => {
                errors.push(`federated join ${f.userId} -> room ${k}: ${String(e)}`);
            });
        }
    }
    say(`${target.server.name}: ${w.users} users, ${w.rooms} rooms, ${joins.length} joins, federated joins in ${((performance.now() - fedJoinT0) / 1000).toFixed(1)}s`);
    const setupSeconds = (performance.now() - setupT0) / 1000;

    // Syncing clients: long-poll /sync; every message carrying "bench.id" is timed against its send.
    const sentAt = new Map<number, number>();
    const expect = new Map<number, number>();
    const local: number[] = [];
    const federated: number[] = [];
    let syncRequests = 0;
    let stopSync = false;
    const observers: { c: Client; remote: boolean }[] = [...plan.syncers.map((i) => ({ c: clients[i], remote: false })), ...(fedClients[0] ? [{ c: fedClients[0], remote: true }] : [])];
    const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 20 }, state: { lazy_load_members: true } } }));
    const syncLoops = observers.map(async ({ c, remote }) => {
        let since: string | undefined;
        while (!stopSync) {
            try {
                const q = `/_matrix/client/v3/sync?filter=${filter}&timeout=${since ? 30000 : 0}${since ? `&since=${encodeURIComponent(since)}` : ""}`;
                const s = await call<{ next_batch: string; rooms?: { join?: Record<string, { timeline?: { events?: { sender: string; content?: Record<string, unknown> }[] } }> } }>(
                    c.base,
                    c.token,
                    "GET",
                    q,
                    undefined,
                    { timeoutMs: 90_000 },
                );
                const now = performance.now();
                syncRequests++;
                const first = since === undefined;
                since = s.next_batch;
                if (first) continue;
                for (const room of Object.values(s.rooms?.join ?? {})) {
                    for (const ev of room.timeline?.events ?? []) {
                        const id = ev.content?.["bench.id"];
                        if (typeof id !== "number" || !sentAt.has(id)) continue;
                        const senderRemote = !ev.sender.endsWith(":" + target.domain);
                        const crosses = senderRemote !== remote;
                        (crosses ? federated : local).push(now - sentAt.get(id)!);
                        expect.set(id, (expect.get(id) ?? 1) - 1);
                    }
                }
            } catch (e) {
                if (!stopSync) {
                    errors.push(`sync ${c.userId}: ${String(e)}`);
                    await sleep(1000);
                }
            }
        }
    });
    // Let every observer finish its initial sync before the first message.
    const tSync = Date.now();
    while (syncRequests < observers.length && Date.now() - tSync < 60_000) await sleep(100);

    // Messages at a fixed rate, media and previews interleaved.
    startPhase("messages");
    const msgT0 = performance.now();
    const sendRtt: number[] = [];
    const mediaRes: WorkloadResult["media"] = { uploads: 0, images: 0, bytes: 0, thumbnailsFetched: 0, uploadP50Ms: null, errors: [] };
    const uploadMs: number[] = [];
    const previews: WorkloadResult["urlPreviews"] = { requested: 0, outcomes: {}, pageServerHits: 0 };
    const r = rng(w.seed + 1);
    let next = 0;
    let sent = 0;
    const senderOf = (m: Plan["messages"][number]) => (m.fed ? fedClients[m.sender] : clients[m.sender]);
    const observersIn = (room: number) => plan.roomMembers[room].filter((u) => plan.syncers.includes(u)).length + (room < w.federatedRooms && fedClients[0] ? 1 : 0);
    const worker = async () => {
        for (;;) {
            const i = next++;
            if (i >= plan.messages.length) return;
            const due = msgT0 + (i * 1000) / w.targetMessagesPerSecond;
            const wait = due - performance.now();
            if (wait > 0) await sleep(wait);
            const m = plan.messages[i];
            const c = senderOf(m);
            if (plan.mediaAt.has(i)) await sendMedia(plan.mediaAt.get(i)!, c, roomIds[m.room]);
            if (plan.previewAt.has(i)) await preview(plan.previewAt.get(i)!, c, roomIds[m.room]);
            // The sender's own observer would also see it: count only other syncing clients.
            const selfObserves = (!m.fed && plan.syncers.includes(m.sender)) || (m.fed && m.sender === 0) ? 1 : 0;
            expect.set(i, observersIn(m.room) - selfObserves);
            const t = performance.now();
            sentAt.set(i, t);
            try {
                await call(c.base, c.token, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomIds[m.room])}/send/m.room.message/b${w.seed}-${i}`, {
                    msgtype: "m.text",
                    body: m.body,
                    "bench.id": i,
                });
                sendRtt.push(performance.now() - t);
                sent++;
            } catch (e) {
                errors.push(`send ${i}: ${String(e)}`);
                expect.delete(i);
            }
            if (i > 0 && i % 1000 === 0) say(`${target.server.name}: ${i} messages (${((performance.now() - msgT0) / 1000).toFixed(0)}s)`);
        }
    };
    const sendMedia = async (k: number, c: Client, roomId: string) => {
        try {
            const size = w.mediaBytes[0] + Math.floor(r() * (w.mediaBytes[1] - w.mediaBytes[0]));
            const image = k < Math.round(w.mediaUploads * w.mediaImageShare);
            const file = image ? makePng(size, r) : { data: new Uint8Array(Buffer.from(Array.from({ length: size }, () => Math.floor(r() * 256)))), width: 0, height: 0 };
            const t = performance.now();
            const up = await call<{ content_uri: string }>(c.base, c.token, "POST", `/_matrix/media/v3/upload?filename=${image ? `photo-${k}.png` : `notes-${k}.bin`}`, file.data, {
                contentType: image ? "image/png" : "application/octet-stream",
            });
            uploadMs.push(performance.now() - t);
            mediaRes.uploads++;
            mediaRes.bytes += file.data.length;
            await call(c.base, c.token, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b${w.seed}-media-${k}`, {
                msgtype: image ? "m.image" : "m.file",
                body: image ? `photo-${k}.png` : `notes-${k}.bin`,
                url: up.content_uri,
                info: { size: file.data.length, mimetype: image ? "image/png" : "application/octet-stream", ...(image ? { w: file.width, h: file.height } : {}) },
            });
            if (image) {
                mediaRes.images++;
                // What a client does next: fetch a thumbnail (authenticated media).
                const mxc = up.content_uri.replace("mxc://", "");
                await call(c.base, c.token, "GET", `/_matrix/client/v1/media/thumbnail/${mxc}?width=320&height=240&method=scale`, undefined, { timeoutMs: 60_000 });
                mediaRes.thumbnailsFetched++;
            }
        } catch (e) {
            mediaRes.errors.push(String(e));
        }
    };
    const preview = async (k: number, c: Client, roomId: string) => {
        const url = pages.url(k);
        previews.requested++;
        try {
            await call(c.base, c.token, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b${w.seed}-link-${k}`, {
                msgtype: "m.text",
                body: `install guide: ${url}`,
            });
            // What Element does for a link in a message: ask the homeserver for a preview.
            const p = await call<Record<string, unknown>>(c.base, c.token, "GET", `/_matrix/client/v1/media/preview_url?url=${encodeURIComponent(url)}`, undefined, { timeoutMs: 30_000 });
            previews.outcomes["200"] = (previews.outcomes["200"] ?? 0) + 1;
            previews.example ??= JSON.stringify(p).slice(0, 300);
        } catch (e) {
            const key = e instanceof MatrixError ? `${e.status} ${e.errcode}` : "network error";
            previews.outcomes[key] = (previews.outcomes[key] ?? 0) + 1;
            previews.example ??= String(e).slice(0, 300);
        }
    };
    await Promise.all(Array.from({ length: w.sendConcurrency }, worker));
    const messagePhaseSeconds = (performance.now() - msgT0) / 1000;
    // Wait (at most 60 s) for the syncing clients to see the last messages.
    const tDrain = Date.now();
    const outstanding = () => [...expect.values()].reduce((a, n) => a + Math.max(0, n), 0);
    while (outstanding() > 0 && Date.now() - tDrain < 60_000) await sleep(250);
    const missedObservations = outstanding();
    previews.pageServerHits = pages.hits;
    say(`${target.server.name}: ${sent} messages in ${messagePhaseSeconds.toFixed(0)}s (${(sent / messagePhaseSeconds).toFixed(1)}/s); drained in ${((Date.now() - tDrain) / 1000).toFixed(1)}s, ${missedObservations} observations missing`);

    // Idle: nothing is sent, the clients keep long-polling (as open Element tabs do).
    startPhase("idle");
    await sleep(w.idleSeconds * 1000);
    stopSync = true;
    phases[phases.length - 1].endT = tOf();
    sampler.phase = "cleanup";

    // Leave the partner tidy: its users leave this server's rooms (the server is wiped next run).
    for (const f of fedClients) {
        for (let k = 0; k < w.federatedRooms; k++) {
            await call(f.base, f.token, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomIds[k])}/leave`, {}).catch(() => undefined);
        }
        await call(f.base, f.token, "POST", "/_matrix/client/v3/logout", {}).catch(() => undefined);
    }
    await Promise.race([Promise.all(syncLoops), sleep(35_000)]);

    const round = (v: number | null) => (v === null ? null : Math.round(v));
    return {
        startedEpoch,
        phases,
        setupSeconds: Math.round(setupSeconds * 10) / 10,
        messagePhaseSeconds: Math.round(messagePhaseSeconds * 10) / 10,
        messagesSent: sent,
        achievedMessagesPerSecond: Math.round((sent / messagePhaseSeconds) * 10) / 10,
        latency: {
            local: { n: local.length, p50: round(percentile(local, 50)), p95: round(percentile(local, 95)), p99: round(percentile(local, 99)), max: round(percentile(local, 100)) },
            federated: { n: federated.length, p50: round(percentile(federated, 50)), p95: round(percentile(federated, 95)), max: round(percentile(federated, 100)) },
            missedObservations,
            sendRequest: { p50: round(percentile(sendRtt, 50)), p95: round(percentile(sendRtt, 95)) },
        },
        media: { ...mediaRes, uploadP50Ms: round(percentile(uploadMs, 50)) },
        urlPreviews: previews,
        requests: { total: counters.requests - c0.requests, ratelimited429: counters.ratelimited - c0.ratelimited, errors: counters.errors - c0.errors },
        syncRequests,
        errors: errors.slice(0, 50),
    };
}

/** The registration's first (unauthenticated) request: returns the UIA session. */
async function registerProbe(base: string, username: string, password: string): Promise<string> {
    try {
        await call(base, undefined, "POST", "/_matrix/client/v3/register", { username, password });
    } catch (e) {
        if (e instanceof MatrixError && e.status === 401) return String((e.body as { session?: string }).session);
        throw e;
    }
    throw new Error("registration succeeded without a token: the server is not in registration: token mode");
}

async function pool(tasks: (() => Promise<unknown>)[], n: number, errors: string[]): Promise<void> {
    let i = 0;
    await Promise.all(
        Array.from({ length: n }, async () => {
            while (i < tasks.length) {
                const t = tasks[i++];
                await t().catch((e: unknown) => errors.push(String(e)));
            }
        }),
    );
}
