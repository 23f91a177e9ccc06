// Shared helpers for the drills (see README.md here): the drill guest, subprocesses with time
// limits, ssh, the Synapse admin API over ssh, and a small Matrix client on plain `fetch`.
//
// Everything the drills touch is their own: guest drill1 at 10.250.0.40 (domain drill1.test),
// stack drill1, $B/stacks/drill1.json, $B/secrets/drill1.json, the DNS record set drill1, and
// $B/drills/ for logs and copies. Names resolve through the testbed DNS (10.250.0.1) and TLS
// trusts the testbed's ACME roots, both only inside this process: nothing on the host changes.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import type { LookupAddress, LookupOptions } from "node:dns";
import { Resolver } from "node:dns/promises";
import { existsSync, mkdirSync, readFileSync, writeFileSync, appendFileSync } from "node:fs";
import { isIP } from "node:net";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, fetch as undiciFetch } from "undici";

// ---- where things are ----
export const REPO = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
export const B = process.env.TESTBED_DIR ?? "/var/tmp/phillymesh-testbed";
// DRILL_GUEST=NAME:IP runs the drills on another guest (two runs side by side need two guests).
const [guestName, guestIp] = (process.env.DRILL_GUEST ?? "drill1:10.250.0.40").split(":");
// The server the helpers below act on. `let`: useServer() points them at another server (a stack of
// the testbed, e.g. phillymesh at its reserved IP); importers see the change (live bindings).
export let NAME = guestName;
export let IP = guestIp;
export let SSH_USER = "root";
export let DOMAIN = `${NAME}.test`;
export let HS = `https://matrix.${DOMAIN}`;
export let FED = `https://${DOMAIN}:8448`;
/** The guest's run directory name ($B/run-GUEST), for guestRunning(); "" when there is none to check. */
export let GUEST = NAME;
export let E2E_FILE = NAME === "drill1" ? `${B}/e2e-drills.json` : `${B}/e2e-drills-${NAME}.json`;
export let WORK = NAME === "drill1" ? `${B}/drills` : `${B}/drills-${NAME}`;
export let LOGS = `${WORK}/logs`;
/** The stack config testbed.sh writes for drill1 (the "same stack config" of every re-deploy). */
export let STACK_FILE = `${B}/stacks/${NAME}.json`;
/** The secrets testbed.sh made for drill1 (0600). */
export let SECRETS_FILE = `${B}/secrets/${NAME}.json`;
/** When a drill leaves the stack at other config (drill 8's version bump), the file it used. */
export let CURRENT_CONFIG = `${WORK}/${NAME}.current.json`;

/** A server of the testbed, as the helpers need it (stack, files and domain follow from the name). */
export interface ServerTarget {
    /** Stack name; the domain is <name>.test unless given. */
    name: string;
    /** Where ssh reaches it (a droplet's reserved IP). */
    ip: string;
    sshUser?: string;
    domain?: string;
    /** Its testbed guest ($B/run-<guest>); default the name, "" for none to check. */
    guest?: string;
    /** Where logs and copies go; default $B/drills-<name>. */
    work?: string;
}

/** Which server the helpers act on now. */
export function currentServer(): Required<ServerTarget> {
    return { name: NAME, ip: IP, sshUser: SSH_USER, domain: DOMAIN, guest: GUEST, work: WORK };
}

/**
 * Points every helper (ssh, deploy.ts --stack, the Matrix client, the admin API, secrets) at another
 * server; returns the previous one, to switch back. Admin sessions are kept per server.
 */
export function useServer(s: ServerTarget): Required<ServerTarget> {
    const before = currentServer();
    NAME = s.name;
    IP = s.ip;
    SSH_USER = s.sshUser ?? "root";
    DOMAIN = s.domain ?? `${s.name}.test`;
    HS = `https://matrix.${DOMAIN}`;
    FED = `https://${DOMAIN}:8448`;
    GUEST = s.guest ?? s.name;
    WORK = s.work ?? `${B}/drills-${s.name}`;
    LOGS = `${WORK}/logs`;
    E2E_FILE = `${B}/e2e-drills-${s.name}.json`;
    STACK_FILE = `${B}/stacks/${s.name}.json`;
    SECRETS_FILE = `${B}/secrets/${s.name}.json`;
    CURRENT_CONFIG = `${WORK}/${s.name}.current.json`;
    mkdirSync(LOGS, { recursive: true, mode: 0o700 });
    return before;
}

/** fn() with the helpers pointed at server s; the previous server afterwards, whatever happens. */
export async function withServer<T>(s: ServerTarget, fn: () => Promise<T>): Promise<T> {
    const before = useServer(s);
    try {
        return await fn();
    } finally {
        useServer(before);
    }
}
/** A port on the host where nothing listens: the package index that does not answer (drill 8). */
export const DEAD_INDEX = "https://pypi.test:3999/simple/";

mkdirSync(LOGS, { recursive: true, mode: 0o700 });

const T0 = Date.now();
/** Progress on stderr (the test runner passes it through as it happens). */
export function note(msg: string): void {
    process.stderr.write(`[drills +${Math.round((Date.now() - T0) / 1000)}s] ${msg}\n`);
}

// ---- subprocesses: every one bounded, killed with its whole process group on timeout/abort ----
export interface RunResult {
    code: number | null;
    signal: NodeJS.Signals | null;
    /** stdout and stderr, interleaved as they came. */
    out: string;
    ms: number;
    log?: string;
}

/** The signal of the drill now running (set by drill()); aborting it kills running children. */
export const current: { signal?: AbortSignal } = {};

let logSeq = 0;
/** Every log file of a `deploy.ts up` written by this process (drill 7 reads them all). */
export const deployLogs: string[] = [];

export function logPath(label: string): string {
    logSeq++;
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
    return `${LOGS}/${stamp}-${String(logSeq).padStart(2, "0")}-${label.replace(/[^a-zA-Z0-9_.-]+/g, "_")}.log`;
}

export const CHILD_ENV: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${REPO}/node_modules/.bin:${process.env.PATH ?? "/usr/bin:/bin"}`,
    TESTBED_DIR: B,
};

export function run(cmd: string, args: string[], opts: {
    timeoutMs: number; input?: string; env?: NodeJS.ProcessEnv; cwd?: string; label?: string; echo?: boolean;
}): Promise<RunResult> {
    const t0 = Date.now();
    const log = opts.label ? logPath(opts.label) : undefined;
    if (log) writeFileSync(log, `$ ${cmd} ${args.join(" ")}\n`, { mode: 0o600 });
    return new Promise((resolve, reject) => {
        const child = spawn(cmd, args, {
            cwd: opts.cwd ?? REPO, env: opts.env ?? CHILD_ENV, detached: true, stdio: ["pipe", "pipe", "pipe"],
        });
        let out = "";
        let killed = false;
        const kill = (why: string) => {
            if (killed || child.pid === undefined) return;
            killed = true;
            out += `\n[drills] ${why}: killing process group ${child.pid}\n`;
            try { process.kill(-child.pid, "SIGTERM"); } catch { /* gone */ }
            setTimeout(() => { try { process.kill(-child.pid!, "SIGKILL"); } catch { /* gone */ } }, 10_000).unref();
        };
        const timer = setTimeout(() => kill(`timeout after ${opts.timeoutMs} ms`), opts.timeoutMs);
        const onAbort = () => kill("drill cancelled");
        current.signal?.addEventListener("abort", onAbort, { once: true });
        const take = (d: Buffer) => {
            const s = d.toString();
            out += s;
            if (log) appendFileSync(log, s);
            if (opts.echo) process.stderr.write(s.replace(/^(?=.)/gm, "    "));
        };
        child.stdout.on("data", take);
        child.stderr.on("data", take);
        child.on("error", (e) => { clearTimeout(timer); reject(e); });
        child.on("close", (code, signal) => {
            clearTimeout(timer);
            current.signal?.removeEventListener("abort", onAbort);
            if (log) appendFileSync(log, `\n[drills] exit ${code ?? signal} after ${Date.now() - t0} ms\n`);
            resolve({ code, signal, out, ms: Date.now() - t0, log });
        });
        child.stdin.on("error", () => { /* the child may not read stdin */ });
        child.stdin.end(opts.input ?? "");
    });
}

export function tail(s: string, lines = 30): string {
    return s.trimEnd().split("\n").slice(-lines).join("\n");
}

/** run(), failing unless it exits 0. */
export async function runOk(cmd: string, args: string[], opts: Parameters<typeof run>[2]): Promise<RunResult> {
    const r = await run(cmd, args, opts);
    if (r.code !== 0) {
        throw new Error(`${cmd} ${args.join(" ")}: exit ${r.code ?? r.signal}${r.log ? ` (log ${r.log})` : ""}\n${tail(r.out)}`);
    }
    return r;
}

export function shQuote(s: string): string {
    return `'${s.replaceAll("'", `'\\''`)}'`;
}

// ---- the guest, the testbed scripts and deploy.ts ----
const TSSH = `${REPO}/testbed/tssh`;

/** A command on drill1 as root over ssh. */
export function tssh(command: string, opts: { input?: string; timeoutMs?: number; label?: string } = {}): Promise<RunResult> {
    return run(TSSH, [`${SSH_USER}@${IP}`, command], { timeoutMs: opts.timeoutMs ?? 60_000, input: opts.input, label: opts.label });
}

export async function tsshOk(command: string, opts: { input?: string; timeoutMs?: number; label?: string } = {}): Promise<string> {
    const r = await tssh(command, opts);
    if (r.code !== 0) throw new Error(`ssh ${IP} ${JSON.stringify(command.slice(0, 200))}: exit ${r.code ?? r.signal}\n${tail(r.out)}`);
    return r.out;
}

export function guestRunning(): boolean {
    return GUEST === "" || existsSync(`${B}/run-${GUEST}/supervise.pid`);
}

export async function destroyGuest(wipe: boolean): Promise<RunResult> {
    note(`destroy.sh ${NAME}${wipe ? " --wipe-data" : " (data disk kept)"}`);
    return runOk("bash", [`${REPO}/testbed/destroy.sh`, NAME, ...(wipe ? ["--wipe-data"] : [])],
        { timeoutMs: 90_000, label: `destroy${wipe ? "-wipe" : ""}` });
}

export async function bootGuest(): Promise<RunResult> {
    note(`boot.sh ${NAME} ${IP}`);
    return runOk("bash", [`${REPO}/testbed/boot.sh`, NAME, IP], { timeoutMs: 150_000, label: "boot" });
}

export type DeployOp = "up" | "preview" | "outputs" | "export" | "destroy" | "forget";

/** testbed/deploy/deploy.ts OP --stack drill1 ARGS (exit code returned, not thrown); opts.stack: another stack. */
export async function deploy(op: DeployOp, args: string[], opts: { label: string; timeoutMs?: number; stack?: string }): Promise<RunResult> {
    const stack = opts.stack ?? NAME;
    note(`deploy.ts ${op} --stack ${stack} ${args.join(" ")}`);
    const r = await run("ts-node", ["--transpile-only", "testbed/deploy/deploy.ts", op, "--stack", stack, ...args],
        { timeoutMs: opts.timeoutMs ?? 15 * 60_000, label: opts.label });
    if (op === "up" && r.log) deployLogs.push(r.log);
    note(`deploy.ts ${op}: exit ${r.code ?? r.signal} in ${(r.ms / 1000).toFixed(1)} s${r.log ? ` (${r.log})` : ""}`);
    return r;
}

/** `deploy.ts up` of drill1 with a config file, DNS records loaded as testbed.sh does. */
export function deployUp(configFile: string, label: string, extra: string[] = []): Promise<RunResult> {
    return deploy("up", ["--config", configFile, "--dns-hook", `bash ${REPO}/testbed/dns-load.sh - ${NAME}`, ...extra], { label });
}

/** The stack's config now: drill 8's bumped copy once it has converged, else testbed.sh's file. */
export function currentConfigFile(): string {
    return existsSync(CURRENT_CONFIG) ? CURRENT_CONFIG : STACK_FILE;
}

/** `deploy.ts destroy`: forgets the stack's state (the program sets no delete commands). */
export async function forgetState(): Promise<void> {
    const r = await deploy("destroy", [], { label: "forget-state", timeoutMs: 180_000 });
    if (r.code !== 0) throw new Error(`deploy.ts destroy --stack ${NAME}: exit ${r.code}\n${tail(r.out)}`);
}

/** testbed.sh up with only drill1 (boots it when it is not running, deploys, writes e2e-drills.json). */
export async function testbedUp(label = "testbed-up"): Promise<RunResult> {
    // name:address:ssh-user:hosting (testbed.sh boots the guest only for hosting "existing").
    const servers = `${NAME}:${IP}:${SSH_USER}:existing`;
    note(`testbed.sh up (TESTBED_SERVERS=${servers})`);
    const r = await run("bash", [`${REPO}/testbed/testbed.sh`, "up"], {
        timeoutMs: 25 * 60_000, label,
        env: { ...CHILD_ENV, TESTBED_SERVERS: servers, TESTBED_E2E_FILE: E2E_FILE },
    });
    if (r.log) deployLogs.push(r.log);
    note(`testbed.sh up: exit ${r.code} in ${(r.ms / 1000).toFixed(1)} s`);
    if (r.code !== 0) throw new Error(`testbed.sh up failed (log ${r.log}):\n${tail(r.out)}`);
    return r;
}

// ---- HTTP to the testbed: its DNS, its ACME roots ----
function pemFiles(): string[] {
    return [`${B}/pebble/roots.pem`, `${B}/pebble/roots-all.pem`].filter((f) => existsSync(f)).map((f) => readFileSync(f, "utf8"));
}

const resolver = new Resolver({ timeout: 3000, tries: 2 });
resolver.setServers(["10.250.0.1"]);

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
function testbedLookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
    const reply = (addresses: string[], family: number) =>
        options.all ? callback(null, addresses.map((address) => ({ address, family }))) : callback(null, addresses[0], family);
    const fam = isIP(hostname);
    if (fam) return reply([hostname], fam);
    resolver.resolve4(hostname).then(
        (a) => a.length ? reply(a, 4) : callback(Object.assign(new Error(`${hostname}: no A record`), { code: "ENOTFOUND" }), ""),
        (err: NodeJS.ErrnoException) => callback(err, ""),
    );
}

let agent = newAgent();
function newAgent(): Agent {
    return new Agent({
        connect: { ca: pemFiles(), lookup: testbedLookup, timeout: 5000 },
        headersTimeout: 60_000, bodyTimeout: 60_000,
        // A replaced guest is a new server: never reuse a connection across drills' reboots.
        keepAliveTimeout: 1000,
    });
}
/** Drop pooled connections (after a guest was replaced) and re-read the roots. */
export async function resetHttp(): Promise<void> {
    const old = agent;
    agent = newAgent();
    await old.close().catch(() => undefined);
}
export async function closeHttp(): Promise<void> {
    await agent.close().catch(() => undefined);
}

export interface HttpResult { status: number; headers: Headers; body: Uint8Array; text: string; json: any }

export async function http(url: string, init: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array; timeoutMs?: number } = {}): Promise<HttpResult> {
    const r = await undiciFetch(url, {
        method: init.method ?? "GET", headers: init.headers, body: init.body, dispatcher: agent, redirect: "manual",
        signal: AbortSignal.timeout(init.timeoutMs ?? 60_000),
    });
    const body = new Uint8Array(await r.arrayBuffer());
    const text = Buffer.from(body).toString("utf8");
    let json: any = undefined;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: r.status, headers: r.headers as unknown as Headers, body, text, json };
}

/** Polls until fn() is true or the time is up. */
export async function waitFor(what: string, limitMs: number, fn: () => Promise<boolean>): Promise<void> {
    const end = Date.now() + limitMs;
    let last = "";
    while (Date.now() < end) {
        try { if (await fn()) return; } catch (e) { last = String(e); }
        await sleep(1000);
    }
    throw new Error(`${what}: not within ${limitMs / 1000} s${last ? ` (last error: ${last})` : ""}`);
}

/** Synapse answers the client API and the federation key endpoint through nginx. */
export async function healthy(): Promise<boolean> {
    if (!guestRunning()) return false;
    try {
        const v = await http(`${HS}/_matrix/client/versions`, { timeoutMs: 10_000 });
        const k = await http(`${FED}/_matrix/key/v2/server`, { timeoutMs: 10_000 });
        return v.status === 200 && k.status === 200;
    } catch {
        return false;
    }
}

/**
 * drill1 deployed and answering; if not, from nothing: the guest and its data disk wiped, the
 * stack's state forgotten (else `up` would find nothing to do on the blank guest), testbed.sh up.
 */
export async function ensureUp(): Promise<void> {
    if (await healthy() && existsSync(SECRETS_FILE) && existsSync(STACK_FILE)) return;
    note(`${NAME} is not deployed and answering: bringing it up from nothing`);
    if (guestRunning() || existsSync(`${B}/run-${NAME}`)) await destroyGuest(true);
    else await run("bash", [`${REPO}/testbed/destroy.sh`, NAME, "--wipe-data"], { timeoutMs: 60_000 });
    await forgetState();
    await run("rm", ["-f", CURRENT_CONFIG], { timeoutMs: 10_000 });
    await testbedUp();
    await resetHttp();
    await waitFor(`${NAME} answering`, 60_000, healthy);
}

export function secrets(): Record<string, string> {
    return JSON.parse(readFileSync(SECRETS_FILE, "utf8")) as Record<string, string>;
}

export function readJson<T = any>(file: string): T {
    return JSON.parse(readFileSync(file, "utf8")) as T;
}

// ---- the Matrix client-server API ----
export interface MxResult { status: number; json: any; text: string; body: Uint8Array; headers: Headers }

/**
 * One client-server API request. Synapse's rate limits answer 429 with retry_after_ms: the request
 * is repeated after that wait when it is at most maxWaitMs (default 20 s). Logins are limited
 * hardest (rc_login: a burst of 5 per client address, then one per ~5.5 min), so the drills log in
 * only where logging in is what they prove.
 */
export async function mx(method: string, path: string, opts: { token?: string; body?: unknown; raw?: Uint8Array; contentType?: string; base?: string; maxWaitMs?: number } = {}): Promise<MxResult> {
    const headers: Record<string, string> = {};
    if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
    let body: string | Uint8Array | undefined;
    if (opts.raw) { body = opts.raw; headers["Content-Type"] = opts.contentType ?? "application/octet-stream"; }
    else if (opts.body !== undefined) { body = JSON.stringify(opts.body); headers["Content-Type"] = "application/json"; }
    for (let attempt = 0; ; attempt++) {
        const r = await http(`${opts.base ?? HS}${path}`, { method, headers, body });
        const wait = Number(r.json?.retry_after_ms ?? 0);
        if (r.status === 429 && attempt < 3 && wait <= (opts.maxWaitMs ?? 20_000)) {
            note(`rate limited on ${method} ${path.split("?")[0]}: waiting ${Math.ceil(wait / 1000)} s as Synapse asks`);
            await sleep(wait + 500);
            continue;
        }
        return { status: r.status, json: r.json, text: r.text, body: r.body, headers: r.headers };
    }
}

export async function mxOk(method: string, path: string, opts: Parameters<typeof mx>[2] = {}): Promise<any> {
    const r = await mx(method, path, opts);
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status}: ${r.text.slice(0, 500)}`);
    return r.json;
}

export interface Session { userId: string; token: string }

export async function login(user: string, password: string): Promise<Session> {
    const j = await mxOk("POST", "/_matrix/client/v3/login", {
        body: { type: "m.login.password", identifier: { type: "m.id.user", user }, password, initial_device_display_name: "drills" },
        maxWaitMs: 400_000,
    });
    return { userId: j.user_id as string, token: j.access_token as string };
}

/**
 * Registration through user-interactive auth: the first request gets the flows and a session; then
 * each stage of a flow is completed, the registration token with `regToken`. Returns the last
 * response (200 with an access token, or the refusal).
 */
export async function register(username: string, password: string, regToken?: string): Promise<MxResult> {
    const base = { username, password, initial_device_display_name: "drills" };
    let r = await mx("POST", "/_matrix/client/v3/register", { body: base });
    for (let i = 0; i < 4 && r.status === 401 && r.json?.session; i++) {
        if (i > 0 && r.json.errcode) return r; // a stage was refused
        const done: string[] = r.json.completed ?? [];
        const flows: { stages: string[] }[] = r.json.flows ?? [];
        const flow = flows.find((f) => done.every((s) => f.stages.includes(s)));
        const next = flow?.stages.find((s) => !done.includes(s));
        let auth: Record<string, unknown>;
        if (next === "m.login.registration_token") {
            if (regToken === undefined) return r;
            auth = { type: next, token: regToken, session: r.json.session };
        } else if (next === "m.login.dummy") auth = { type: next, session: r.json.session };
        else return r;
        r = await mx("POST", "/_matrix/client/v3/register", { body: { ...base, auth } });
    }
    return r;
}

// ---- the admin API (only on the server's localhost:8008): curl over ssh ----
/** The admin's session on each server (by name), made once: logins are rate-limited. */
const adminSessions = new Map<string, Session>();
export async function adminLogin(): Promise<Session> {
    let s = adminSessions.get(NAME);
    if (!s) {
        s = await login("admin", secrets().adminPassword);
        adminSessions.set(NAME, s);
    }
    return s;
}
export function forgetAdmin(): void { adminSessions.delete(NAME); }

/** The access token goes in on stdin (curl -H @-), never in a process list. */
export async function adminApi(method: string, path: string, body?: unknown, retried = false): Promise<{ status: number; json: any; text: string }> {
    const s = await adminLogin();
    const data = body === undefined ? "" : ` -H 'Content-Type: application/json' --data-binary ${shQuote(JSON.stringify(body))}`;
    const out = await tsshOk(`curl -sS --max-time 15 -X ${method} -H @-${data} -w '\\n%{http_code}' ${shQuote(`http://localhost:8008${path}`)}`,
        { input: `Authorization: Bearer ${s.token}\n` });
    const nl = out.lastIndexOf("\n");
    const text = out.slice(0, nl);
    let json: any;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    const status = Number(out.slice(nl + 1).trim());
    if (status === 401 && json?.errcode === "M_UNKNOWN_TOKEN" && !retried) {
        // The database was replaced under us (a fresh server, a restore): log in again.
        forgetAdmin();
        return adminApi(method, path, body, true);
    }
    return { status, json, text };
}

export async function newRegistrationToken(usesAllowed: number): Promise<string> {
    const r = await adminApi("POST", "/_synapse/admin/v1/registration_tokens/new", { uses_allowed: usesAllowed });
    if (r.status !== 200 || typeof r.json?.token !== "string") throw new Error(`registration_tokens/new: HTTP ${r.status}: ${r.text}`);
    return r.json.token as string;
}

// ---- a small world of data to lose or keep ----
export interface User { name: string; password: string; userId: string; /** from the registration */ token: string }
export interface World {
    tag: string;
    users: User[];
    roomId: string;
    roomName: string;
    /** Message bodies, in the order sent. */
    messages: string[];
    media: { mxc: string; sha256: string; size: number };
}

export function sha256(b: Uint8Array): string {
    return createHash("sha256").update(b).digest("hex");
}

let txn = 0;
export async function send(s: Session, roomId: string, content: Record<string, unknown>): Promise<string> {
    const id = `drill-${process.pid}-${Date.now()}-${++txn}`;
    const j = await mxOk("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${id}`, { token: s.token, body: content });
    return j.event_id as string;
}

export async function sendText(s: Session, roomId: string, body: string): Promise<string> {
    return send(s, roomId, { msgtype: "m.text", body });
}

/** Two users registered with an admin-made token, a private room, messages from both, a file. */
export async function seedWorld(tag: string): Promise<World> {
    const regToken = await newRegistrationToken(2);
    const users: User[] = [];
    const sessions: Session[] = [];
    for (const who of ["alice", "bob"]) {
        const name = `${tag}-${who}`;
        const password = randomBytes(12).toString("base64url");
        const r = await register(name, password, regToken);
        if (r.status !== 200) throw new Error(`registering ${name}: HTTP ${r.status}: ${r.text}`);
        users.push({ name, password, userId: r.json.user_id, token: r.json.access_token });
        sessions.push({ userId: r.json.user_id, token: r.json.access_token });
    }
    const [a, b] = sessions;
    const roomName = `${tag} drill room`;
    const room = await mxOk("POST", "/_matrix/client/v3/createRoom", {
        token: a.token, body: { preset: "private_chat", name: roomName, invite: [b.userId] },
    });
    const roomId = room.room_id as string;
    await mxOk("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, { token: b.token, body: {} });
    const messages: string[] = [];
    for (let i = 1; i <= 6; i++) {
        const s = i % 2 ? a : b;
        const body = `${tag} message ${i} from ${s.userId} ${randomBytes(4).toString("hex")}`;
        await sendText(s, roomId, body);
        messages.push(body);
    }
    const bytes = new Uint8Array(randomBytes(300 * 1024));
    const up = await mxOk("POST", `/_matrix/media/v3/upload?filename=${encodeURIComponent(`${tag}.bin`)}`, { token: a.token, raw: bytes });
    const mxc = up.content_uri as string;
    const fileBody = `${tag}.bin`;
    await send(a, roomId, { msgtype: "m.file", body: fileBody, url: mxc, info: { size: bytes.length, mimetype: "application/octet-stream" } });
    messages.push(fileBody);
    return { tag, users, roomId, roomName, messages, media: { mxc, sha256: sha256(bytes), size: bytes.length } };
}

/** The room's m.room.message bodies as a user sees them, oldest first. */
export async function roomMessages(s: Session, roomId: string): Promise<string[]> {
    const bodies: string[] = [];
    let from: string | undefined;
    for (let page = 0; page < 10; page++) {
        const q = new URLSearchParams({ dir: "b", limit: "100", ...(from ? { from } : {}) });
        const j = await mxOk("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?${q}`, { token: s.token });
        for (const ev of j.chunk ?? []) if (ev.type === "m.room.message" && typeof ev.content?.body === "string") bodies.push(ev.content.body);
        if (!j.end || (j.chunk ?? []).length === 0) break;
        from = j.end;
    }
    return bodies.reverse();
}

export async function downloadMedia(s: Session, mxc: string): Promise<Uint8Array> {
    const m = /^mxc:\/\/([^/]+)\/(.+)$/.exec(mxc);
    if (!m) throw new Error(`not an mxc URI: ${mxc}`);
    const r = await mx("GET", `/_matrix/client/v1/media/download/${m[1]}/${m[2]}`, { token: s.token });
    if (r.status !== 200) throw new Error(`download ${mxc}: HTTP ${r.status}: ${r.text.slice(0, 300)}`);
    return r.body;
}

/**
 * What the world's users can still see; the differences, empty when everything is there. With
 * login, each user logs in with the password (the proof that accounts survived); else the
 * registration's access token is used.
 */
export async function checkWorld(w: World, opts: { mustBeAbsent?: string[]; login?: boolean } = {}): Promise<string[]> {
    const problems: string[] = [];
    for (const u of w.users) {
        let s: Session = { userId: u.userId, token: u.token };
        if (opts.login) {
            try {
                s = await login(u.name, u.password);
            } catch (e) {
                problems.push(`${u.userId} cannot log in: ${String(e).slice(0, 200)}`);
                continue;
            }
        }
        const joined = await mxOk("GET", "/_matrix/client/v3/joined_rooms", { token: s.token });
        if (!(joined.joined_rooms as string[]).includes(w.roomId)) { problems.push(`${u.userId} is not in ${w.roomId}`); continue; }
        const name = await mx("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(w.roomId)}/state/m.room.name/`, { token: s.token });
        if (name.json?.name !== w.roomName) problems.push(`${u.userId}: room name ${JSON.stringify(name.json?.name)}, expected ${JSON.stringify(w.roomName)}`);
        const seen = await roomMessages(s, w.roomId);
        const missing = w.messages.filter((m) => !seen.includes(m));
        if (missing.length) problems.push(`${u.userId} misses ${missing.length} of ${w.messages.length} messages: ${JSON.stringify(missing)}`);
        const order = seen.filter((m) => w.messages.includes(m));
        if (!missing.length && JSON.stringify(order) !== JSON.stringify(w.messages)) problems.push(`${u.userId} sees the messages out of order`);
        const extra = (opts.mustBeAbsent ?? []).filter((m) => seen.includes(m));
        if (extra.length) problems.push(`${u.userId} sees messages that must be absent: ${JSON.stringify(extra)}`);
        try {
            const bytes = await downloadMedia(s, w.media.mxc);
            if (sha256(bytes) !== w.media.sha256) problems.push(`${u.userId}: ${w.media.mxc} has other bytes (${bytes.length} bytes, sha256 ${sha256(bytes)})`);
        } catch (e) {
            problems.push(`${u.userId}: ${String(e).slice(0, 300)}`);
        }
    }
    return problems;
}

/** The federation signing keys as published on :8448. */
export async function verifyKeys(): Promise<Record<string, { key: string }>> {
    const r = await http(`${FED}/_matrix/key/v2/server`);
    if (r.status !== 200) throw new Error(`${FED}/_matrix/key/v2/server: HTTP ${r.status}`);
    return r.json.verify_keys as Record<string, { key: string }>;
}

export async function synapseVersion(): Promise<string> {
    const r = await http(`${HS}/_matrix/federation/v1/version`, { timeoutMs: 10_000 });
    if (r.status !== 200) throw new Error(`federation version: HTTP ${r.status}`);
    return r.json.server.version as string;
}

export function randomTag(prefix: string): string {
    return `${prefix}${randomBytes(3).toString("hex")}`;
}
