// Shared helpers for the end-to-end checks against a running testbed (see README.md here): what is
// e2e's own (the servers of e2e.json, matrix-js-sdk clients) on top of the testbed client library
// (testbed/lib: DNS + CA agent, ssh, the admin API, registration tokens, waiting).
// Run:  node --test --test-concurrency=1 --test-force-exit 'tests/e2e/*.test.ts'   (see README.md)
//
// Everything about the servers comes from e2e.json ($E2E_CONFIG, else $TESTBED_DIR/e2e.json, else
// /var/tmp/phillymesh-testbed/e2e.json). Names resolve through the testbed's DNS server and TLS
// trusts its ACME roots, both only inside this process: nothing on the host is changed.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { rootCertificates } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient, MatrixError, type MatrixClient } from "matrix-js-sdk";
import { logger as sdkRootLogger, type Logger } from "matrix-js-sdk/lib/logger.js";
import { loadE2eConfig, type E2eConfig, type Server } from "../../testbed/lib/e2eConfig.ts";
import { sshOk } from "../../testbed/lib/guest.ts";
import { fetchThrough, testbedAgent, testbedResolver } from "../../testbed/lib/http.ts";
import { adminApi as adminRequest, createRegistrationToken as newToken } from "../../testbed/lib/matrix.ts";
import { waitFor } from "../../testbed/lib/wait.ts";

export { shQuote } from "../../testbed/lib/guest.ts";
export { waitFor };
export type { Server };
export type Testbed = E2eConfig;

export const CONFIG_PATH = process.env.E2E_CONFIG ?? join(process.env.TESTBED_DIR ?? "/var/tmp/phillymesh-testbed", "e2e.json");

export const testbed: Testbed = loadE2eConfig(CONFIG_PATH);
export const rootsPem: string = readFileSync(testbed.roots, "utf8");

/** Bounded everywhere: no network wait in these tests can outlast these. */
export const TIMEOUTS = { dnsMs: 3_000, connectMs: 5_000, httpMs: 20_000, sshMs: 20_000 } as const;

// ---- names: the testbed DNS server only ----
export const resolver = testbedResolver({ server: testbed.dnsServer, timeoutMs: TIMEOUTS.dnsMs });

// ---- HTTP: undici with the testbed roots (plus the system CAs) and the testbed DNS ----
export const agent = testbedAgent({
    ca: [...rootCertificates, rootsPem],
    resolver,
    connectTimeoutMs: TIMEOUTS.connectMs,
    headersTimeoutMs: TIMEOUTS.httpMs,
    bodyTimeoutMs: TIMEOUTS.httpMs,
});

/** `fetch` that reaches the testbed; also what every MatrixClient here uses as `fetchFn`. */
export const testbedFetch = fetchThrough(agent);

/** Close the pooled connections so the test process can exit. */
export async function closeTestbed(): Promise<void> {
    await agent.close();
}

// ---- ssh (testbed/tssh: the test key, no host-key bookkeeping) ----
const sshEnv = { TESTBED_DIR: process.env.TESTBED_DIR ?? dirname(CONFIG_PATH) };

/** Runs `command` on the server as its ssh user; rejects on a non-zero exit or after timeoutMs. */
export function ssh(server: Server, command: string, opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    return sshOk(server.ssh, command, { input: opts.input ?? "", timeoutMs: opts.timeoutMs ?? TIMEOUTS.sshMs, env: sshEnv });
}

/**
 * Synapse's admin API, which listens only on the server's localhost:8008: curl over ssh. The access
 * token goes through stdin (curl -H @-), so it never shows in a process list.
 */
export async function adminApi<T = Record<string, unknown>>(
    server: Server,
    accessToken: string,
    method: "GET" | "POST" | "PUT" | "DELETE",
    path: string,
    body?: unknown,
): Promise<T> {
    const r = await adminRequest(server.ssh, accessToken, method, path, body, { env: sshEnv, timeoutMs: TIMEOUTS.sshMs });
    if (!(r.status >= 200 && r.status < 300)) throw new Error(`admin API ${method} ${path} on ${server.name}: HTTP ${r.status}: ${r.text}`);
    if (r.json === undefined) throw new Error(`admin API ${method} ${path} on ${server.name}: not JSON: ${r.text.slice(0, 300)}`);
    return r.json as T;
}

// ---- Matrix clients ----
// The SDK chats (queues, push rules, MatrixRTC); E2E_VERBOSE=1 shows it.
const verbose = !!process.env.E2E_VERBOSE;
if (!verbose) {
    // The SDK's global logger is loglevel's; children copy its methodFactory but force level DEBUG,
    // so filter in the factory (errors still show).
    type Factory = (method: string, level: number, name: string | symbol) => (...m: unknown[]) => void;
    const root = sdkRootLogger as unknown as { methodFactory: Factory; rebuild(): void };
    const original = root.methodFactory;
    root.methodFactory = (method, level, name) => (method === "error" ? original(method, level, name) : () => undefined);
    root.rebuild();
}
const say =
    (f: (...m: unknown[]) => void) =>
    (...m: unknown[]) =>
        f("[matrix-js-sdk]", ...m);
const quietLogger: Logger = {
    trace: () => undefined,
    debug: verbose ? say(console.debug) : () => undefined,
    info: verbose ? say(console.info) : () => undefined,
    warn: verbose ? say(console.warn) : () => undefined,
    error: say(console.error),
    getChild: () => quietLogger,
};

export interface Session {
    server: Server;
    userId: string;
    accessToken: string;
    deviceId: string;
    client: MatrixClient;
}

export function makeClient(server: Server, creds?: { userId: string; accessToken: string; deviceId?: string }): MatrixClient {
    return createClient({
        baseUrl: server.homeserverUrl,
        fetchFn: testbedFetch,
        logger: quietLogger,
        // No localTimeoutMs: the SDK arms a timer per request that it never clears (the process
        // would linger); the agent's headers/body timeouts bound every request instead.
        ...(creds ?? {}),
    });
}

function session(server: Server, r: { user_id: string; access_token?: string; device_id?: string }): Session {
    if (!r.access_token || !r.device_id) throw new Error(`${server.name}: no access token/device for ${r.user_id}`);
    return {
        server,
        userId: r.user_id,
        accessToken: r.access_token,
        deviceId: r.device_id,
        client: makeClient(server, { userId: r.user_id, accessToken: r.access_token, deviceId: r.device_id }),
    };
}

/** Retries a request that Synapse rate-limited, if it asks for a wait we can afford; else says so. */
export async function retryRateLimited<T>(what: string, fn: () => Promise<T>, maxWaitMs = 20_000): Promise<T> {
    const deadline = Date.now() + maxWaitMs;
    for (;;) {
        try {
            return await fn();
        } catch (e) {
            if (!(e instanceof MatrixError) || !e.isRateLimitError()) throw e;
            const wait = e.getRetryAfterMs() ?? 5_000;
            if (Date.now() + wait > deadline) {
                throw new Error(
                    `${what}: rate-limited by Synapse, retry after ${Math.ceil(wait / 1000)} s ` +
                        `(rc_login / rc_registration defaults allow a few per address, then one every few minutes)`,
                    { cause: e },
                );
            }
            await sleep(wait + 100);
        }
    }
}

export const userId = (server: Server, localpart: string) => `@${localpart}:${server.domain}`;

/** Password login through nginx + TLS (a new device each time). */
export async function login(server: Server, user: string, password: string): Promise<Session> {
    const c = makeClient(server);
    const r = await retryRateLimited(`login ${user} on ${server.name}`, () =>
        c.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user },
            password,
            initial_device_display_name: "phillymesh e2e",
        }),
    );
    return session(server, r);
}

/**
 * The admin's session for tests that only *use* it. Synapse allows ~5 password logins per client
 * address before one every ~5 minutes (rc_login), so the token is kept in a private temp file and
 * reused while the server still accepts it (whoami); client.test.ts does the real password login.
 */
export async function adminSession(server: Server): Promise<Session> {
    const dir = join(tmpdir(), "phillymesh-e2e");
    const file = join(dir, `admin-${server.name}.json`);
    const want = userId(server, server.adminUser);
    try {
        const c = JSON.parse(readFileSync(file, "utf8")) as { homeserverUrl: string; userId: string; accessToken: string; deviceId: string };
        if (c.homeserverUrl === server.homeserverUrl && c.userId === want) {
            const client = makeClient(server, c);
            const who = await client.whoami();
            if (who.user_id === want) return { server, ...c, client };
        }
    } catch {
        // no cache, or the server no longer knows the token (e.g. a rebuilt testbed): log in
    }
    const s = await login(server, server.adminUser, server.adminPassword);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(file, JSON.stringify({ homeserverUrl: server.homeserverUrl, userId: s.userId, accessToken: s.accessToken, deviceId: s.deviceId }), {
        mode: 0o600,
    });
    return s;
}

/** A registration token from the admin API (`uses` registrations, expiring in 10 minutes). */
export async function createRegistrationToken(server: Server, adminToken: string, uses: number): Promise<string> {
    return newToken((method, path, body) => adminRequest(server.ssh, adminToken, method, path, body, { env: sshEnv, timeoutMs: TIMEOUTS.sshMs }), uses, {
        expiresInMs: 10 * 60_000,
    });
}

export interface UiaState {
    session?: string;
    flows?: { stages: string[] }[];
    completed?: string[];
    errcode?: string;
    error?: string;
}

export const TOKEN_STAGE = "m.login.registration_token";
export const DUMMY_STAGE = "m.login.dummy";

/** The 401 a /register without auth must give (the user-interactive auth challenge). */
export async function registrationChallenge(client: MatrixClient, username: string, password: string): Promise<UiaState> {
    try {
        const r = await retryRateLimited("register", () => client.registerRequest({ username, password }));
        throw new Error(`registration of ${username} succeeded with no auth at all (${r.user_id})`);
    } catch (e) {
        if (e instanceof MatrixError && e.httpStatus === 401 && e.data.session) return e.data as UiaState;
        throw e;
    }
}

/** Registers through the m.login.registration_token UIA flow (plus m.login.dummy if the flow has it). */
export async function registerWithToken(server: Server, username: string, password: string, token: string): Promise<Session> {
    const c = makeClient(server);
    let uia = await registrationChallenge(c, username, password);
    const flow = uia.flows?.find((f) => f.stages.includes(TOKEN_STAGE) && f.stages.every((s) => s === TOKEN_STAGE || s === DUMMY_STAGE));
    if (!flow) throw new Error(`${server.name}: no registration flow with only ${TOKEN_STAGE}/${DUMMY_STAGE}: ${JSON.stringify(uia.flows)}`);
    for (let i = 0; i <= flow.stages.length; i++) {
        const next = flow.stages.find((s) => !(uia.completed ?? []).includes(s));
        if (!next) break;
        const auth = next === TOKEN_STAGE ? { type: TOKEN_STAGE, token, session: uia.session } : { type: DUMMY_STAGE, session: uia.session };
        try {
            const r = await retryRateLimited(`register ${username} on ${server.name}`, () =>
                c.registerRequest({ username, password, initial_device_display_name: "phillymesh e2e", auth }),
            );
            return session(server, r);
        } catch (e) {
            if (!(e instanceof MatrixError) || e.httpStatus !== 401 || e.data.errcode) throw e;
            uia = e.data as UiaState;
        }
    }
    throw new Error(`${server.name}: registration of ${username} did not finish: ${JSON.stringify(uia)}`);
}

/** Logs sessions out (deleting their devices); errors only logged: this is cleanup. */
export async function logoutAll(sessions: (Session | undefined)[]): Promise<void> {
    await Promise.all(
        sessions.map(async (s) => {
            if (!s) return;
            s.client.stopClient();
            try {
                await s.client.logout();
            } catch (e) {
                console.warn(`logout ${s.userId}: ${String(e)}`);
            }
        }),
    );
}

/** Starts /sync for a client (short long-polls, so stopping is quick) and waits until it is live. */
export async function startSync(client: MatrixClient, timeoutMs = 20_000): Promise<void> {
    await client.startClient({ initialSyncLimit: 30, pollTimeout: 5_000, disablePresence: true, lazyLoadMembers: false });
    await waitFor("the first /sync", () => ["PREPARED", "SYNCING"].includes(client.getSyncState() ?? ""), { timeoutMs });
}

/** Bodies of the m.room.message events in the client's synced live timeline of a room, oldest first. */
export function syncedBodies(client: MatrixClient, roomId: string): string[] {
    const room = client.getRoom(roomId);
    if (!room) return [];
    return room
        .getLiveTimeline()
        .getEvents()
        .filter((e) => e.getType() === "m.room.message" && !e.isSending())
        .map((e) => String(e.getContent().body));
}

/** A fresh id per run (Matrix localparts: lower-case letters, digits). */
export const runId = `${Date.now().toString(36)}${Math.floor(Math.random() * 1296)
    .toString(36)
    .padStart(2, "0")}`;
