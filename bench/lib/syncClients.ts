// The workload's syncing clients: users 0.. long-poll /sync (timeout 30 s, lazy-loaded members) for
// the whole run, plus the partner's first user over federation. Every message carries its number
// ("bench.id"): each arrival is timed against the start of its send (send-to-sync latency).
import { sleep } from "./figures.ts";
import { call } from "./matrix.ts";
import type { Client } from "./usersAndRooms.ts";

type SyncResponse = {
    next_batch: string;
    rooms?: { join?: Record<string, { timeline?: { events?: { sender: string; content?: Record<string, unknown> }[] } }> };
};

export class SyncClients {
    /** message number -> the start of its send (performance.now()) */
    readonly sentAt = new Map<number, number>();
    /** message number -> deliveries still to be seen by the other syncing clients */
    readonly expect = new Map<number, number>();
    /** send-to-sync latencies (ms), sender and receiver on the same server */
    readonly local: number[] = [];
    /** send-to-sync latencies (ms) across servers (this server <-> the partner) */
    readonly federated: number[] = [];
    /** completed /sync requests */
    requests = 0;
    private stopped = false;
    private loops: Promise<void>[] = [];
    private readonly observers: { c: Client; remote: boolean }[];
    private readonly domain: string;
    private readonly errors: string[];

    /** observers: the clients that sync, `remote` when on the partner; domain: this server's. */
    constructor(observers: { c: Client; remote: boolean }[], domain: string, errors: string[]) {
        this.observers = observers;
        this.domain = domain;
        this.errors = errors;
    }

    /** Starts every client's long-poll loop, and waits (at most 60 s) for their initial syncs. */
    async start(): Promise<void> {
        const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 20 }, state: { lazy_load_members: true } } }));
        this.loops = this.observers.map(async ({ c, remote }) => {
            let since: string | undefined;
            while (!this.stopped) {
                try {
                    const q = `/_matrix/client/v3/sync?filter=${filter}&timeout=${since ? 30000 : 0}${since ? `&since=${encodeURIComponent(since)}` : ""}`;
                    const s = await call<SyncResponse>(c.base, c.token, "GET", q, undefined, { timeoutMs: 90_000 });
                    const now = performance.now();
                    this.requests++;
                    const first = since === undefined;
                    since = s.next_batch;
                    if (first) continue;
                    for (const room of Object.values(s.rooms?.join ?? {})) {
                        for (const ev of room.timeline?.events ?? []) {
                            const id = ev.content?.["bench.id"];
                            if (typeof id !== "number" || !this.sentAt.has(id)) continue;
                            const senderRemote = !ev.sender.endsWith(":" + this.domain);
                            const crosses = senderRemote !== remote;
                            (crosses ? this.federated : this.local).push(now - this.sentAt.get(id)!);
                            this.expect.set(id, (this.expect.get(id) ?? 1) - 1);
                        }
                    }
                } catch (e) {
                    if (!this.stopped) {
                        this.errors.push(`sync ${c.userId}: ${String(e)}`);
                        await sleep(1000);
                    }
                }
            }
        });
        // Let every observer finish its initial sync before the first message.
        const tSync = Date.now();
        while (this.requests < this.observers.length && Date.now() - tSync < 60_000) await sleep(100);
    }

    /** Deliveries not seen yet. */
    outstanding(): number {
        return [...this.expect.values()].reduce((a, n) => a + Math.max(0, n), 0);
    }

    /** Ends the loops after their current request; resolves when they have all ended. */
    stop(): Promise<unknown> {
        this.stopped = true;
        return Promise.all(this.loops);
    }
}
