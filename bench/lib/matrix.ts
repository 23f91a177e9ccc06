// The benchmark's Matrix client: testbed/lib/matrix.ts's requests (undici through an Agent that
// trusts the testbed's ACME roots and resolves names through the testbed's DNS server, as a client
// on the network would), with the benchmark's own retry policy and request counters, and admin API
// batches run on the server (testbed/py/admin_batch.py).
import * as fs from "node:fs";
import { guestPython, sshTarget } from "../../testbed/lib/guest.ts";
import { TestbedHttp, testbedResolver } from "../../testbed/lib/http.ts";
import { mx } from "../../testbed/lib/matrix.ts";
import { ROOTS } from "./testbed.ts";

const web = new TestbedHttp({
    ca: [fs.readFileSync(ROOTS, "utf8")],
    resolver: testbedResolver({ timeoutMs: 2000 }),
    dnsCacheMs: 30_000,
    connectTimeoutMs: 10_000,
    keepAliveTimeoutMs: 60_000,
    // Per origin. Every syncing client holds one for its 30 s long-poll: the community workload's 100
    // of them and 32 senders queued behind a limit of 64, and messages waited out whole long-polls
    // (p95 ~30 s at 1 message/s in its first full run): the client, not the server, was measured.
    connections: 512,
});
export const agent = web.agent;

export class MatrixError extends Error {
    status: number;
    errcode: string;
    body: unknown;
    constructor(status: number, body: unknown, what: string) {
        const b = body as { errcode?: string; error?: string } | undefined;
        super(`${what}: HTTP ${status} ${b?.errcode ?? ""} ${b?.error ?? JSON.stringify(body).slice(0, 300)}`);
        this.status = status;
        this.errcode = b?.errcode ?? "";
        this.body = body;
    }
}

export interface RequestCounters {
    requests: number;
    ratelimited: number;
    errors: number;
}
export const counters: RequestCounters = { requests: 0, ratelimited: 0, errors: 0 };

/**
 * One client-server API call; 429s are waited out (up to 20, each wait at most 30 s), 5xx answers
 * and network errors retried 3 times; every attempt, 429 and error counted. Other errors thrown.
 */
export async function call<T = Record<string, unknown>>(
    base: string,
    token: string | undefined,
    method: string,
    pathAndQuery: string,
    body?: unknown,
    opts: { contentType?: string; timeoutMs?: number; raw?: boolean } = {},
): Promise<T> {
    const r = await mx(web, base, method, pathAndQuery, {
        token,
        ...(body instanceof Uint8Array ? { raw: body, contentType: opts.contentType } : { body }),
        timeoutMs: opts.timeoutMs ?? 120_000,
        rateLimitRetries: 20,
        maxWaitMs: Infinity,
        capWaitMs: 30_000,
        padMs: 0,
        serverErrorRetries: 3,
        networkErrorRetries: 3,
        onEvent: (e) => {
            if (e === "attempt") counters.requests++;
            else if (e === "rate-limited") counters.ratelimited++;
            else counters.errors++;
        },
    });
    const json: unknown = r.json ?? (r.text ? { raw: r.text.slice(0, 300) } : {});
    if (r.status >= 400) {
        counters.errors++;
        throw new MatrixError(r.status, json, `${method} ${pathAndQuery.split("?")[0]}`);
    }
    return json as T;
}

// --- the admin API (localhost:8008 on the server only: through ssh) -----------------------------

export interface AdminHandle {
    ip: string;
    user: string;
    password: string;
    token?: string;
}

/**
 * Runs admin API requests on the server itself (Synapse's admin API is on 127.0.0.1:8008 only), in
 * one ssh session (testbed/py/admin_batch.py). Logs in as the admin with the password unless a
 * cached token still works. Returns [status, body] per request, in order.
 */
export async function adminBatch(h: AdminHandle, requests: [string, string, unknown?][]): Promise<[number, Record<string, unknown>][]> {
    const input = JSON.stringify({ user: h.user, password: h.password, token: h.token, requests: requests.map(([m, p, b]) => [m, p, b ?? null]) });
    const out = await guestPython(sshTarget(h.ip), "admin_batch.py", { input });
    const parsed = JSON.parse(out) as { token: string; results: [number, Record<string, unknown>][]; error?: string };
    if (parsed.error) throw new Error(`admin API on ${h.ip}: ${out}`);
    h.token = parsed.token;
    return parsed.results;
}
