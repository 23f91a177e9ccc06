// A small Matrix client: undici's fetch through an Agent that trusts the testbed's ACME roots and
// resolves names through the testbed's DNS server (10.250.0.1), as a client on the network would.
import * as fs from "node:fs";
import { Resolver } from "node:dns";
import type { LookupFunction } from "node:net";
import { Agent, fetch } from "undici";
import { DNS_SERVER, ROOTS, guestPython } from "./testbed.ts";

const resolver = new Resolver({ timeout: 2000, tries: 2 });
resolver.setServers([DNS_SERVER]);
const cache = new Map<string, { address: string; until: number }>();

const lookup: LookupFunction = (hostname, options, callback) => {
    const done = (err: NodeJS.ErrnoException | null, address: string) => {
        if (err) return (callback as (e: NodeJS.ErrnoException) => void)(err);
        if ((options as { all?: boolean }).all) (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address, family: 4 }]);
        else callback(null, address, 4);
    };
    const hit = cache.get(hostname);
    if (hit && hit.until > Date.now()) return done(null, hit.address);
    resolver.resolve4(hostname, (err, addresses) => {
        if (err || addresses.length === 0) return done(err ?? Object.assign(new Error(`no A record for ${hostname}`), { code: "ENOTFOUND" }), "");
        cache.set(hostname, { address: addresses[0], until: Date.now() + 30_000 });
        done(null, addresses[0]);
    });
};

export const agent = new Agent({
    connect: { ca: fs.readFileSync(ROOTS, "utf8"), lookup, timeout: 10_000 },
    keepAliveTimeout: 60_000,
    connections: 64,
});

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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One client-server API call; 429s are waited out (and counted), other errors thrown. */
export async function call<T = Record<string, unknown>>(
    base: string,
    token: string | undefined,
    method: string,
    pathAndQuery: string,
    body?: unknown,
    opts: { contentType?: string; timeoutMs?: number; raw?: boolean } = {},
): Promise<T> {
    for (let attempt = 0; ; attempt++) {
        counters.requests++;
        const headers: Record<string, string> = {};
        if (token) headers.authorization = `Bearer ${token}`;
        let payload: string | Uint8Array | undefined;
        if (body instanceof Uint8Array) {
            payload = body;
            headers["content-type"] = opts.contentType ?? "application/octet-stream";
        } else if (body !== undefined) {
            payload = JSON.stringify(body);
            headers["content-type"] = "application/json";
        }
        let res;
        try {
            res = await fetch(base + pathAndQuery, {
                method,
                headers,
                body: payload,
                dispatcher: agent,
                signal: AbortSignal.timeout(opts.timeoutMs ?? 120_000),
            });
        } catch (e) {
            counters.errors++;
            if (attempt < 3) {
                await sleep(500 * (attempt + 1));
                continue;
            }
            throw e;
        }
        const text = await res.text();
        let json: unknown;
        try {
            json = text ? JSON.parse(text) : {};
        } catch {
            json = { raw: text.slice(0, 300) };
        }
        if (res.status === 429 && attempt < 20) {
            counters.ratelimited++;
            const wait = Number((json as { retry_after_ms?: number }).retry_after_ms ?? 1000);
            await sleep(Math.min(Math.max(wait, 100), 30_000));
            continue;
        }
        if (res.status >= 500 && attempt < 3) {
            counters.errors++;
            await sleep(1000 * (attempt + 1));
            continue;
        }
        if (res.status >= 400) {
            counters.errors++;
            throw new MatrixError(res.status, json, `${method} ${pathAndQuery.split("?")[0]}`);
        }
        return json as T;
    }
}

// --- the admin API (localhost:8008 on the server only: through ssh) -----------------------------

/**
 * Runs admin API requests on the server itself (Synapse's admin API is on 127.0.0.1:8008 only), in
 * one ssh session. Logs in as the admin with the password unless a cached token still works.
 * Returns [status, body] per request, in order.
 */
const ADMIN_BATCH = String.raw`
import json, sys, time, urllib.request, urllib.error
req = json.load(sys.stdin)
BASE = "http://127.0.0.1:8008"
def call(method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(BASE + path, data=data, method=method)
    r.add_header("Content-Type", "application/json")
    if token: r.add_header("Authorization", "Bearer " + token)
    for attempt in range(30):
        try:
            with urllib.request.urlopen(r, timeout=120) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try: b = json.loads(raw or b"{}")
            except Exception: b = {"raw": raw.decode(errors="replace")[:300]}
            if e.code == 429 and attempt < 29:
                time.sleep(min(max(b.get("retry_after_ms", 1000), 100), 30000) / 1000)
                continue
            return e.code, b
token = req.get("token")
if token:
    st, _ = call("GET", "/_matrix/client/v3/account/whoami", token=token)
    if st != 200: token = None
if not token:
    st, b = call("POST", "/_matrix/client/v3/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": req["user"]}, "password": req["password"]})
    if st != 200:
        print(json.dumps({"error": "admin login failed", "status": st, "body": b})); sys.exit(1)
    token = b["access_token"]
out = [call(m, p, b, token) for (m, p, b) in req["requests"]]
print(json.dumps({"token": token, "results": out}))
`;

export interface AdminHandle {
    ip: string;
    user: string;
    password: string;
    token?: string;
}

export async function adminBatch(h: AdminHandle, requests: [string, string, unknown?][]): Promise<[number, Record<string, unknown>][]> {
    const input = JSON.stringify({ user: h.user, password: h.password, token: h.token, requests: requests.map(([m, p, b]) => [m, p, b ?? null]) });
    const out = await guestPython(h.ip, ADMIN_BATCH, input);
    const parsed = JSON.parse(out) as { token: string; results: [number, Record<string, unknown>][]; error?: string };
    if (parsed.error) throw new Error(`admin API on ${h.ip}: ${out}`);
    h.token = parsed.token;
    return parsed.results;
}
