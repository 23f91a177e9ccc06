// The aging workload (bench/aging.json): a compressed "year of chat" against one homeserver with
// the federated partner. A seeded plan of operations — messages (local and from the partner's users
// over federation), display-name changes (one m.room.member event in every room of the user),
// topic changes, power-level edits, leaves and re-joins, local uploads and the partner's media that
// this server then fetches (its remote-media cache), and members reading their rooms (a read receipt
// at the room's newest message, as a client sends one when its user opens the room: Synapse then
// deletes that member's push actions up to it, event_push_actions.py _handle_new_receipts_for_notifs_txn)
// — run as fast as the server takes them from
// `sendConcurrency` requests in flight through nginx, in four quarters with a pause after each.
//
// Conflicting operations are kept apart by keyed locks: a user's leave/re-join and name change (the
// "lurkers", who never send messages, take the churn), a room's power-level read-modify-write.
import { call } from "./matrix.ts";
import { makePng } from "./media.ts";
import { say } from "./testbed.ts";
import type { Client } from "./usersAndRooms.ts";
import type { Homeserver } from "./workload.ts";
import { rng } from "./workloadPlan.ts";

export interface AgingWorkload {
    seed: number;
    /** planned events (messages, state events, media messages) at scale 1; at least 100,000 */
    events: number;
    users: number;
    /** users 0..activeUsers-1 send messages; the rest (lurkers) take the membership churn */
    activeUsers: number;
    rooms: number;
    roomsPerUser: number;
    federatedRooms: number;
    federatedUsers: number;
    /** share of operations of each kind (the rest are local messages) */
    mix: { fedMessage: number; displayName: number; fedDisplayName: number; topic: number; powerLevels: number; leaveRejoin: number };
    /**
     * read receipts per planned event (not events themselves): a member (active or lurker) reads a
     * room up to its newest message. A year's users read their rooms; without receipts every message
     * stays a push action for every member until Synapse deletes rotated ones a day later, which a
     * year compressed into hours never reaches. 0 or absent: none (the runs before 2026-12-01).
     */
    readsPerEvent?: number;
    /** uploads per 10,000 events: local (kept by retention) and the partner's (fetched here: remote media) */
    mediaPer10k: { local: number; remote: number };
    mediaBytes: [number, number];
    messageChars: [number, number];
    sendConcurrency: number;
    syncingClients: number;
    /** after each quarter: nothing sent for pauseSeconds; steady memory = median over the last steadyWindowSeconds */
    pauseSeconds: number;
    steadyWindowSeconds: number;
}

export type Op =
    | { k: "msg"; room: number; user: number }
    | { k: "fedmsg"; room: number; fed: number }
    | { k: "name"; user: number }
    | { k: "fedname"; fed: number }
    | { k: "topic"; room: number }
    | { k: "power"; room: number; user: number }
    | { k: "churn"; room: number; user: number }
    | { k: "media"; room: number; user: number; n: number }
    | { k: "remote"; room: number; fed: number; n: number }
    | { k: "read"; room: number; user: number };

export interface AgingPlan {
    members: number[][]; // room -> local users (first = creator)
    roomsOf: number[][]; // user -> rooms
    ops: Op[];
    eventsOf: (op: Op) => number;
    plannedEvents: number;
}

/** The operations, in order, until `events` events are planned (scale already applied). */
export function agingPlan(w: AgingWorkload, events: number): AgingPlan {
    const r = rng(w.seed);
    const members: number[][] = Array.from({ length: w.rooms }, () => []);
    const roomsOf: number[][] = Array.from({ length: w.users }, () => []);
    for (let i = 0; i < w.users; i++)
        for (let j = 0; j < w.roomsPerUser; j++) {
            const room = (i * 7 + j * 3) % w.rooms;
            if (members[room].includes(i)) continue;
            members[room].push(i);
            roomsOf[i].push(room);
        }
    // Every room has an active member first (its creator: topics and power levels).
    members.forEach((m, k) => {
        m.sort((a, b) => a - b);
        if (m[0] >= w.activeUsers) {
            const u = k % w.activeUsers;
            m.unshift(u);
            roomsOf[u].push(k);
        }
    });
    const weights = members.map((_, k) => 1 / Math.pow(k + 1, 0.5));
    const wsum = weights.reduce((a, b) => a + b, 0);
    const pickRoom = () => {
        let x = r() * wsum;
        for (let k = 0; k < weights.length; k++) if ((x -= weights[k]) <= 0) return k;
        return weights.length - 1;
    };
    const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)];
    const fedJoined = Math.min(w.federatedRooms, w.rooms);
    const eventsOf = (op: Op): number =>
        op.k === "name" ? roomsOf[op.user].length : op.k === "fedname" ? fedJoined : op.k === "churn" ? 2 : op.k === "read" ? 0 : 1;
    const ops: Op[] = [];
    let planned = 0;
    let media = 0;
    let remote = 0;
    let reads = 0;
    const readsPerEvent = w.readsPerEvent ?? 0;
    const m = w.mix;
    while (planned < events) {
        const x = r();
        let op: Op;
        const room = pickRoom();
        const lurkersIn = members[room].filter((u) => u >= w.activeUsers);
        const activeIn = members[room].filter((u) => u < w.activeUsers);
        let c = 0;
        if (x < (c += m.fedMessage) && fedJoined > 0) op = { k: "fedmsg", room: Math.floor(r() * fedJoined), fed: Math.floor(r() * w.federatedUsers) };
        else if (x < (c += m.displayName)) op = { k: "name", user: Math.floor(r() * w.users) };
        else if (x < (c += m.fedDisplayName) && fedJoined > 0) op = { k: "fedname", fed: Math.floor(r() * w.federatedUsers) };
        else if (x < (c += m.topic)) op = { k: "topic", room };
        else if (x < (c += m.powerLevels) && lurkersIn.length) op = { k: "power", room, user: pick(lurkersIn) };
        else if (x < (c += m.leaveRejoin) && lurkersIn.length) op = { k: "churn", room, user: pick(lurkersIn) };
        else op = { k: "msg", room, user: pick(activeIn) };
        ops.push(op);
        planned += eventsOf(op);
        // Media at their rate per 10,000 planned events.
        while (media < (planned * w.mediaPer10k.local) / 10_000) {
            const mr = pickRoom();
            ops.push({ k: "media", room: mr, user: pick(members[mr].filter((u) => u < w.activeUsers)), n: media++ });
            planned++;
        }
        while (fedJoined > 0 && remote < (planned * w.mediaPer10k.remote) / 10_000) {
            ops.push({ k: "remote", room: Math.floor(r() * fedJoined), fed: Math.floor(r() * w.federatedUsers), n: remote++ });
            planned++;
        }
        // Reads at their rate per planned event, in the rooms as busy as they are (pickRoom).
        while (reads < planned * readsPerEvent) {
            const rr = pickRoom();
            ops.push({ k: "read", room: rr, user: pick(members[rr]) });
            reads++;
        }
    }
    return { members, roomsOf, ops, eventsOf, plannedEvents: planned };
}

/** Serializes tasks with the same key (a lurker's membership, a room's power levels). */
class KeyedLock {
    private readonly tails = new Map<string, Promise<unknown>>();
    async with<T>(key: string, f: () => Promise<T>): Promise<T> {
        const before = this.tails.get(key) ?? Promise.resolve();
        const p = before.then(f, f);
        const tail = p.catch(() => undefined);
        this.tails.set(key, tail);
        try {
            return await p;
        } finally {
            if (this.tails.get(key) === tail) this.tails.delete(key);
        }
    }
}

export interface OpStats {
    ops: number;
    events: number;
    errors: number;
    byKind: Record<string, number>;
    remoteFetched: number;
    sendRttMs: number[];
}

/** Runs the operations with `sendConcurrency` in flight; errors are recorded and counted, not thrown. */
export class AgingRunner {
    readonly stats: OpStats = { ops: 0, events: 0, errors: 0, byKind: {}, remoteFetched: 0, sendRttMs: [] };
    private readonly lock = new KeyedLock();
    private readonly r: () => number;
    private nextId = 0;
    /** room -> the newest message this runner saw acknowledged there (what a read receipt points at) */
    private readonly newest = new Map<number, string>();
    private readonly w: AgingWorkload;
    private readonly plan: AgingPlan;
    private readonly target: Homeserver;
    private readonly clients: Client[];
    private readonly fedClients: Client[];
    private readonly roomIds: string[];
    private readonly errors: string[];
    /** called before a message is sent, with its number (the syncing clients time it) */
    onMessage: (id: number, room: number, fed: boolean) => void = () => undefined;
    onSent: (id: number, ok: boolean) => void = () => undefined;

    constructor(w: AgingWorkload, plan: AgingPlan, target: Homeserver, clients: Client[], fedClients: Client[], roomIds: string[], errors: string[]) {
        this.w = w;
        this.plan = plan;
        this.target = target;
        this.clients = clients;
        this.fedClients = fedClients;
        this.roomIds = roomIds;
        this.errors = errors;
        this.r = rng(w.seed + 7);
    }

    private body(): string {
        const [lo, hi] = this.w.messageChars;
        const len = lo + Math.floor(this.r() * (hi - lo));
        return "aging ".repeat(Math.ceil(len / 6)).slice(0, len);
    }

    private async send(c: Client, room: number, content: Record<string, unknown>, fed: boolean): Promise<void> {
        const id = this.nextId++;
        this.onMessage(id, room, fed);
        const t = performance.now();
        try {
            const r = await call<{ event_id?: string }>(
                c.base,
                c.token,
                "PUT",
                `/_matrix/client/v3/rooms/${encodeURIComponent(this.roomIds[room])}/send/m.room.message/a${this.w.seed}-${id}`,
                { ...content, "bench.id": id },
            );
            if (r.event_id) this.newest.set(room, r.event_id);
            this.stats.sendRttMs.push(performance.now() - t);
            this.onSent(id, true);
        } catch (e) {
            this.onSent(id, false);
            throw e;
        }
    }

    private async state(c: Client, room: number, type: string, key: string, content: unknown): Promise<void> {
        await call(
            c.base,
            c.token,
            "PUT",
            `/_matrix/client/v3/rooms/${encodeURIComponent(this.roomIds[room])}/state/${type}/${encodeURIComponent(key)}`,
            content,
        );
    }

    private async one(op: Op): Promise<void> {
        const rid = (k: number) => encodeURIComponent(this.roomIds[k]);
        const local = (u: number) => this.clients[u];
        switch (op.k) {
            case "msg":
                return this.send(local(op.user), op.room, { msgtype: "m.text", body: this.body() }, false);
            case "fedmsg":
                return this.send(this.fedClients[op.fed], op.room, { msgtype: "m.text", body: this.body() }, true);
            case "name":
                return this.lock
                    .with(`u${op.user}`, () =>
                        call(
                            local(op.user).base,
                            local(op.user).token,
                            "PUT",
                            `/_matrix/client/v3/profile/${encodeURIComponent(local(op.user).userId)}/displayname`,
                            {
                                displayname: `Aging user ${op.user} v${this.nextId++}`,
                            },
                        ),
                    )
                    .then(() => undefined);
            case "fedname": {
                const f = this.fedClients[op.fed];
                await call(f.base, f.token, "PUT", `/_matrix/client/v3/profile/${encodeURIComponent(f.userId)}/displayname`, {
                    displayname: `Partner ${op.fed} v${this.nextId++}`,
                });
                return;
            }
            case "topic": {
                const c = local(this.plan.members[op.room][0]);
                return this.state(c, op.room, "m.room.topic", "", { topic: `Topic ${this.nextId++} of room ${op.room}` });
            }
            case "power": {
                const c = local(this.plan.members[op.room][0]);
                return this.lock.with(`pl${op.room}`, async () => {
                    const pl = await call<{ users?: Record<string, number> }>(
                        c.base,
                        c.token,
                        "GET",
                        `/_matrix/client/v3/rooms/${rid(op.room)}/state/m.room.power_levels/`,
                    );
                    const users = { ...(pl.users ?? {}) };
                    const who = local(op.user).userId;
                    if (users[who]) delete users[who];
                    else users[who] = 50;
                    await this.state(c, op.room, "m.room.power_levels", "", { ...pl, users });
                });
            }
            case "churn": {
                const c = local(op.user);
                return this.lock.with(`u${op.user}`, async () => {
                    await call(c.base, c.token, "POST", `/_matrix/client/v3/rooms/${rid(op.room)}/leave`, {});
                    await call(c.base, c.token, "POST", `/_matrix/client/v3/join/${rid(op.room)}`, {});
                });
            }
            case "media":
                return this.upload(local(op.user), op.room, op.n, false);
            case "remote":
                return this.upload(this.fedClients[op.fed], op.room, op.n, true);
            case "read": {
                const ev = this.newest.get(op.room);
                if (!ev) return; // nothing sent in the room yet: nothing to read
                const c = local(op.user);
                // A lurker's read waits for its leave/re-join (a non-member's receipt is refused).
                return this.lock
                    .with(`u${op.user}`, () =>
                        call(c.base, c.token, "POST", `/_matrix/client/v3/rooms/${rid(op.room)}/receipt/m.read/${encodeURIComponent(ev)}`, {}),
                    )
                    .then(() => undefined);
            }
        }
    }

    /** An image uploaded by c and posted; for the partner's, a local user then fetches it and a thumbnail through this server. */
    private async upload(c: Client, room: number, n: number, remote: boolean): Promise<void> {
        const [lo, hi] = this.w.mediaBytes;
        const png = makePng(lo + Math.floor(this.r() * (hi - lo)), this.r);
        const up = await call<{ content_uri: string }>(c.base, c.token, "POST", `/_matrix/media/v3/upload?filename=aging-${n}.png`, png.data, {
            contentType: "image/png",
        });
        await this.send(
            c,
            room,
            {
                msgtype: "m.image",
                body: `aging-${n}.png`,
                url: up.content_uri,
                info: { size: png.data.length, mimetype: "image/png", w: png.width, h: png.height },
            },
            remote,
        );
        if (remote) {
            const viewer = this.clients[this.plan.members[room][0]];
            const mxc = up.content_uri.replace("mxc://", "");
            await call(this.target.base, viewer.token, "GET", `/_matrix/client/v1/media/download/${mxc}`, undefined, { timeoutMs: 60_000 });
            await call(this.target.base, viewer.token, "GET", `/_matrix/client/v1/media/thumbnail/${mxc}?width=320&height=240&method=scale`, undefined, {
                timeoutMs: 60_000,
            });
            this.stats.remoteFetched++;
        }
    }

    /** ops[from, to) with sendConcurrency in flight, as fast as the server takes them. */
    async run(from: number, to: number, label: string): Promise<number> {
        let next = from;
        const t0 = performance.now();
        let lastSay = t0;
        const worker = async () => {
            for (;;) {
                const i = next++;
                if (i >= to) return;
                const op = this.plan.ops[i];
                try {
                    await this.one(op);
                    this.stats.events += this.plan.eventsOf(op);
                } catch (e) {
                    this.stats.errors++;
                    if (this.errors.length < 200) this.errors.push(`${op.k} ${i}: ${String(e)}`);
                }
                this.stats.ops++;
                this.stats.byKind[op.k] = (this.stats.byKind[op.k] ?? 0) + 1;
                if (performance.now() - lastSay > 60_000) {
                    lastSay = performance.now();
                    say(
                        `${this.target.server.name}: ${label}: ${i - from}/${to - from} operations, ${this.stats.events} events so far, ${this.stats.errors} errors`,
                    );
                }
            }
        };
        await Promise.all(Array.from({ length: this.w.sendConcurrency }, worker));
        return (performance.now() - t0) / 1000;
    }
}
