// The Matrix client-server API on plain fetch (http.ts), as a client on the testbed network uses
// it: requests that wait out Synapse's rate limits, password login, registration through
// user-interactive auth (registration tokens), and Synapse's admin API, which listens only on the
// server's localhost:8008 and is reached with curl over ssh. Plain Node ES module (type stripping).
import { setTimeout as sleep } from "node:timers/promises";
import { shQuote, ssh } from "./guest.ts";
import type { HttpResult, TestbedHttp } from "./http.ts";

export type MxResult = HttpResult;

/** How a request treats Synapse's 429 (and, for the benchmark, 5xx answers and network errors). */
export interface RetryPolicy {
    /** 429s waited out, at most (default 3); then the 429 is returned. */
    rateLimitRetries?: number;
    /** A 429 asking for a longer wait is returned at once (default 20 s). */
    maxWaitMs?: number;
    /** The wait is at most this (default: what Synapse asks). */
    capWaitMs?: number;
    /** Added to each wait (default 500 ms). */
    padMs?: number;
    /** 5xx answers retried this many times, 1 s, 2 s, ... apart (default 0). */
    serverErrorRetries?: number;
    /** Network errors retried this many times, 0.5 s, 1 s, ... apart (default 0; then thrown). */
    networkErrorRetries?: number;
    /** Told of every attempt, every 429 and 5xx waited out, every network error. */
    onEvent?: (e: "attempt" | "rate-limited" | "server-error" | "network-error", detail: { waitMs?: number; error?: unknown }) => void;
}

export interface MxOptions extends RetryPolicy {
    /** Access token (Authorization: Bearer). */
    token?: string;
    /** A JSON body. */
    body?: unknown;
    /** A raw body (media upload), sent as contentType. */
    raw?: Uint8Array;
    contentType?: string;
    timeoutMs?: number;
}

/**
 * One client-server API request to `base` (https://matrix.DOMAIN), returned whatever its status.
 * Synapse answers 429 with retry_after_ms; the request is repeated after that wait (see RetryPolicy).
 */
export async function mx(http: TestbedHttp, base: string, method: string, path: string, opts: MxOptions = {}): Promise<MxResult> {
    const headers: Record<string, string> = {};
    if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
    let body: string | Uint8Array | undefined;
    if (opts.raw) {
        body = opts.raw;
        headers["Content-Type"] = opts.contentType ?? "application/octet-stream";
    } else if (opts.body !== undefined) {
        body = JSON.stringify(opts.body);
        headers["Content-Type"] = "application/json";
    }
    let limited = 0;
    let failed = 0;
    let netErrors = 0;
    for (;;) {
        opts.onEvent?.("attempt", {});
        let r: MxResult;
        try {
            r = await http.request(`${base}${path}`, { method, headers, body, timeoutMs: opts.timeoutMs });
        } catch (error) {
            opts.onEvent?.("network-error", { error });
            if (netErrors >= (opts.networkErrorRetries ?? 0)) throw error;
            await sleep(500 * ++netErrors);
            continue;
        }
        if (r.status === 429) {
            const asked = Number(r.json?.retry_after_ms ?? 1000);
            const waitMs = Math.min(Math.max(asked, 100), opts.capWaitMs ?? Infinity);
            if (limited < (opts.rateLimitRetries ?? 3) && asked <= (opts.maxWaitMs ?? 20_000)) {
                limited++;
                opts.onEvent?.("rate-limited", { waitMs });
                await sleep(waitMs + (opts.padMs ?? 500));
                continue;
            }
        }
        if (r.status >= 500 && failed < (opts.serverErrorRetries ?? 0)) {
            opts.onEvent?.("server-error", {});
            await sleep(1000 * ++failed);
            continue;
        }
        return r;
    }
}

/** mx(), then the JSON body; an Error with the status and the start of the body unless 2xx. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the API's JSON
export async function mxOk(http: TestbedHttp, base: string, method: string, path: string, opts: MxOptions = {}): Promise<any> {
    const r = await mx(http, base, method, path, opts);
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status}: ${r.text.slice(0, 500)}`);
    return r.json;
}

export interface MxSession {
    userId: string;
    token: string;
    deviceId: string;
}

/** Password login (a new device each time). Logins are rate-limited hardest (rc_login). */
export async function login(
    http: TestbedHttp,
    base: string,
    user: string,
    password: string,
    opts: { deviceName?: string } & RetryPolicy = {},
): Promise<MxSession> {
    const { deviceName, ...policy } = opts;
    const j = await mxOk(http, base, "POST", "/_matrix/client/v3/login", {
        ...policy,
        body: { type: "m.login.password", identifier: { type: "m.id.user", user }, password, initial_device_display_name: deviceName ?? "phillymesh testbed" },
    });
    return { userId: j.user_id as string, token: j.access_token as string, deviceId: j.device_id as string };
}

export const TOKEN_STAGE = "m.login.registration_token";
export const DUMMY_STAGE = "m.login.dummy";

/**
 * Registration through user-interactive auth: the first request gets the flows and a session; then
 * each stage of a flow is completed (the registration token with `regToken`, m.login.dummy).
 * Returns the last response: 200 with an access token, or the refusal (a 401 with an errcode, or
 * the challenge itself when a stage needs a token and none was given).
 */
export async function register(
    http: TestbedHttp,
    base: string,
    username: string,
    password: string,
    regToken?: string,
    opts: { deviceName?: string } = {},
): Promise<MxResult> {
    const first = { username, password, initial_device_display_name: opts.deviceName ?? "phillymesh testbed" };
    let r = await mx(http, base, "POST", "/_matrix/client/v3/register", { body: first });
    for (let i = 0; i < 4 && r.status === 401 && r.json?.session; i++) {
        if (i > 0 && r.json.errcode) return r; // a stage was refused
        const done: string[] = r.json.completed ?? [];
        const flows: { stages: string[] }[] = r.json.flows ?? [];
        const flow = flows.find((f) => done.every((s) => f.stages.includes(s)));
        const next = flow?.stages.find((s) => !done.includes(s));
        let auth: Record<string, unknown>;
        if (next === TOKEN_STAGE) {
            if (regToken === undefined) return r;
            auth = { type: next, token: regToken, session: r.json.session };
        } else if (next === DUMMY_STAGE) auth = { type: next, session: r.json.session };
        else return r;
        r = await mx(http, base, "POST", "/_matrix/client/v3/register", { body: { ...first, auth } });
    }
    return r;
}

// --- Synapse's admin API: localhost:8008 on the server, curl over ssh ---------------------------

export interface AdminResult {
    status: number;
    json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- the API's JSON
    text: string;
}

/** An admin API call bound to a server and an admin session (see adminApi). */
export type AdminCall = (method: string, path: string, body?: unknown) => Promise<AdminResult>;

/**
 * One admin API request on the server `target` (user@address) reaches by ssh, with the admin's
 * access token. The token goes in on stdin (curl -H @-), so it never shows in a process list.
 * Resolves whatever the HTTP status; throws when ssh or curl fail.
 */
export async function adminApi(
    target: string,
    accessToken: string,
    method: string,
    path: string,
    body?: unknown,
    opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<AdminResult> {
    const data = body === undefined ? "" : ` -H 'Content-Type: application/json' --data-binary ${shQuote(JSON.stringify(body))}`;
    const command = `curl -sS --max-time 15 -X ${method} -H @-${data} -w '\\n%{http_code}' ${shQuote(`http://localhost:8008${path}`)}`;
    const r = await ssh(target, command, { input: `Authorization: Bearer ${accessToken}\n`, env: opts.env, timeoutMs: opts.timeoutMs ?? 60_000 });
    if (r.code !== 0) throw new Error(`admin API ${method} ${path} on ${target}: ssh/curl exited ${r.code}: ${r.stderr.trim().slice(-1000)}`);
    const nl = r.stdout.lastIndexOf("\n");
    const text = r.stdout.slice(0, nl);
    let json: unknown;
    try {
        json = JSON.parse(text);
    } catch {
        /* not JSON */
    }
    return { status: Number(r.stdout.slice(nl + 1).trim()), json, text };
}

/**
 * A new registration token (`uses` registrations; with expiresInMs, expiring then). Throws unless
 * Synapse made one with exactly that many uses.
 */
export async function createRegistrationToken(admin: AdminCall, uses: number, opts: { expiresInMs?: number } = {}): Promise<string> {
    const body = { uses_allowed: uses, ...(opts.expiresInMs !== undefined ? { expiry_time: Date.now() + opts.expiresInMs } : {}) };
    const r = await admin("POST", "/_synapse/admin/v1/registration_tokens/new", body);
    if (r.status !== 200 || typeof r.json?.token !== "string" || !r.json.token || r.json.uses_allowed !== uses) {
        throw new Error(`registration_tokens/new: HTTP ${r.status}: ${r.text}`);
    }
    return r.json.token as string;
}
