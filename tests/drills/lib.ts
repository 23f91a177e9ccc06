// Shared helpers for the drills (see README.md here): which server they act on (the drill guest,
// or another stack of the testbed), subprocesses with time limits and per-drill logs, deploy.ts,
// ssh, the Synapse admin API and a small Matrix client. The machinery is the testbed client library
// (testbed/lib); what is here is the drills' own: the current server, logs, cancelling a drill's
// children, the drill guest's lifecycle. The drills' world of data is in world.ts, the admin API in
// admin.ts (both re-exported).
//
// Everything the drills touch is their own: guest drill1 at 10.250.0.40 (domain drill1.test),
// stack drill1, $B/stacks/drill1.json, $B/secrets/drill1.json, the DNS record set drill1, and
// $B/drills/ for logs and copies. Names resolve through the testbed DNS (10.250.0.1) and TLS
// trusts the testbed's ACME roots, both only inside this process: nothing on the host changes.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { deployCommand, healthy as answers, upArgs } from "../../testbed/lib/deployClient.ts";
import { guestRunning as guestAlive, shQuote, sshTarget } from "../../testbed/lib/guest.ts";
import { TestbedHttp, testbedRoots, type HttpResult } from "../../testbed/lib/http.ts";
import * as M from "../../testbed/lib/matrix.ts";
import { B, REPO, childEnv } from "../../testbed/lib/paths.ts";
import { outcome, runProcess } from "../../testbed/lib/run.ts";
import { waitFor as waitUntil } from "../../testbed/lib/wait.ts";

export { B, REPO, shQuote };
export type { HttpResult };

// ---- where things are ----
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
    const stamp = new Date()
        .toISOString()
        .replace(/[-:]/g, "")
        .replace(/\.\d+Z$/, "Z");
    return `${LOGS}/${stamp}-${String(logSeq).padStart(2, "0")}-${label.replace(/[^a-zA-Z0-9_.-]+/g, "_")}.log`;
}

export const CHILD_ENV: NodeJS.ProcessEnv = childEnv();

/**
 * A command (testbed/lib/run.ts), in the repository by default: its output kept whole and
 * interleaved in `out`, with `label` also written to a log file of its own, with `echo` shown on
 * stderr. Killed with its process group after timeoutMs or when the current drill is cancelled.
 */
export async function run(
    cmd: string,
    args: string[],
    opts: {
        timeoutMs: number;
        input?: string;
        env?: NodeJS.ProcessEnv;
        cwd?: string;
        label?: string;
        echo?: boolean;
    },
): Promise<RunResult> {
    const log = opts.label ? logPath(opts.label) : undefined;
    if (log) writeFileSync(log, `$ ${cmd} ${args.join(" ")}\n`, { mode: 0o600 });
    let out = "";
    const decoders = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
    const r = await runProcess(cmd, args, {
        cwd: opts.cwd ?? REPO,
        env: opts.env ?? CHILD_ENV,
        input: opts.input ?? "",
        timeoutMs: opts.timeoutMs,
        killGraceMs: 10_000,
        signal: current.signal,
        onChunk: (chunk, stream) => {
            const s = decoders[stream].write(chunk);
            out += s;
            if (log) appendFileSync(log, s);
            if (opts.echo) process.stderr.write(s.replace(/^(?=.)/gm, "    "));
        },
    });
    out += decoders.stdout.end() + decoders.stderr.end();
    if (r.timedOut || r.aborted) out += `\n[drills] ${r.aborted ? "drill cancelled" : `timeout after ${opts.timeoutMs} ms`}: ${outcome(r)}\n`;
    const ms = Math.round(r.seconds * 1000);
    if (log) appendFileSync(log, `\n[drills] exit ${r.signal ?? r.code} after ${ms} ms\n`);
    return { code: r.signal ? null : r.code, signal: r.signal, out, ms, log };
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

// ---- the guest, the testbed scripts and deploy.ts ----
const TSSH = `${REPO}/testbed/tssh`;

/** A command on the current server over ssh (as its ssh user), logged like every run(). */
export function tssh(command: string, opts: { input?: string; timeoutMs?: number; label?: string } = {}): Promise<RunResult> {
    return run(TSSH, [sshTarget(IP, SSH_USER), command], { timeoutMs: opts.timeoutMs ?? 60_000, input: opts.input, label: opts.label });
}

export async function tsshOk(command: string, opts: { input?: string; timeoutMs?: number; label?: string } = {}): Promise<string> {
    const r = await tssh(command, opts);
    if (r.code !== 0) throw new Error(`ssh ${IP} ${JSON.stringify(command.slice(0, 200))}: exit ${r.code ?? r.signal}\n${tail(r.out)}`);
    return r.out;
}

export function guestRunning(): boolean {
    return GUEST === "" || guestAlive(GUEST);
}

export async function destroyGuest(wipe: boolean): Promise<RunResult> {
    note(`destroy.sh ${NAME}${wipe ? " --wipe-data" : " (data disk kept)"}`);
    return runOk("bash", [`${REPO}/testbed/destroy.sh`, NAME, ...(wipe ? ["--wipe-data"] : [])], { timeoutMs: 90_000, label: `destroy${wipe ? "-wipe" : ""}` });
}

export async function bootGuest(): Promise<RunResult> {
    note(`boot.sh ${NAME} ${IP}`);
    return runOk("bash", [`${REPO}/testbed/boot.sh`, NAME, IP], { timeoutMs: 150_000, label: "boot" });
}

export type DeployOp = "up" | "preview" | "outputs" | "export" | "destroy" | "forget";

/** testbed/deploy/deploy.ts OP --stack NAME ARGS (exit code returned, not thrown); opts.stack: another stack. */
export async function deploy(op: DeployOp, args: string[], opts: { label: string; timeoutMs?: number; stack?: string }): Promise<RunResult> {
    const stack = opts.stack ?? NAME;
    note(`deploy.ts ${op} --stack ${stack} ${args.join(" ")}`);
    // deployClient.ts's command line, through run() for the drill's log and cancelling.
    const [cmd, argv] = deployCommand(op, stack, args);
    const r = await run(cmd, argv, { timeoutMs: opts.timeoutMs ?? 15 * 60_000, label: opts.label });
    if (op === "up" && r.log) deployLogs.push(r.log);
    note(`deploy.ts ${op}: exit ${r.code ?? r.signal} in ${(r.ms / 1000).toFixed(1)} s${r.log ? ` (${r.log})` : ""}`);
    return r;
}

/** `deploy.ts up` of the current stack with a config file, DNS records loaded as testbed.sh does. */
export function deployUp(configFile: string, label: string, extra: string[] = []): Promise<RunResult> {
    return deploy("up", [...upArgs(NAME, configFile, { dnsHook: true }), ...extra], { label });
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

/** testbed.sh up with only the current server (boots it when it is not running, deploys, writes E2E_FILE). */
export async function testbedUp(label = "testbed-up"): Promise<RunResult> {
    // name:address:ssh-user:hosting (testbed.sh boots the guest only for hosting "existing").
    const servers = `${NAME}:${IP}:${SSH_USER}:existing`;
    note(`testbed.sh up (TESTBED_SERVERS=${servers})`);
    const r = await run("bash", [`${REPO}/testbed/testbed.sh`, "up"], {
        timeoutMs: 25 * 60_000,
        label,
        env: { ...CHILD_ENV, TESTBED_SERVERS: servers, TESTBED_E2E_FILE: E2E_FILE },
    });
    if (r.log) deployLogs.push(r.log);
    note(`testbed.sh up: exit ${r.code} in ${(r.ms / 1000).toFixed(1)} s`);
    if (r.code !== 0) throw new Error(`testbed.sh up failed (log ${r.log}):\n${tail(r.out)}`);
    return r;
}

// ---- HTTP to the testbed: its DNS, its ACME roots (testbed/lib/http.ts) ----
const web = new TestbedHttp({
    ca: () => testbedRoots(),
    headersTimeoutMs: 60_000,
    bodyTimeoutMs: 60_000,
    // A replaced guest is a new server: never reuse a connection across drills' reboots.
    keepAliveTimeoutMs: 1000,
});
/** Drop pooled connections (after a guest was replaced) and re-read the roots. */
export async function resetHttp(): Promise<void> {
    await web.reset();
}
export async function closeHttp(): Promise<void> {
    await web.close();
}

export function http(
    url: string,
    init: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array; timeoutMs?: number } = {},
): Promise<HttpResult> {
    return web.request(url, init);
}

/** Polls until fn() is true (every second) or the time is up. */
export async function waitFor(what: string, limitMs: number, fn: () => Promise<boolean>): Promise<void> {
    await waitUntil(what, fn, { timeoutMs: limitMs, intervalMs: 1000 });
}

/** Synapse answers the client API and the federation key endpoint through nginx. */
export async function healthy(): Promise<boolean> {
    return guestRunning() && answers(web, DOMAIN);
}

/**
 * The current server deployed and answering; if not, from nothing: the guest and its data disk
 * wiped, the stack's state forgotten (else `up` would find nothing to do on the blank guest),
 * testbed.sh up.
 */
export async function ensureUp(): Promise<void> {
    if ((await healthy()) && existsSync(SECRETS_FILE) && existsSync(STACK_FILE)) return;
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

// ---- the Matrix client-server API (testbed/lib/matrix.ts) on the current server ----
export type MxResult = M.MxResult;

/**
 * One client-server API request. Synapse's rate limits answer 429 with retry_after_ms: the request
 * is repeated after that wait when it is at most maxWaitMs (default 20 s). Logins are limited
 * hardest (rc_login: a burst of 5 per client address, then one per ~5.5 min), so the drills log in
 * only where logging in is what they prove.
 */
export function mx(
    method: string,
    path: string,
    opts: { token?: string; body?: unknown; raw?: Uint8Array; contentType?: string; base?: string; maxWaitMs?: number } = {},
): Promise<MxResult> {
    const { base, ...rest } = opts;
    return M.mx(web, base ?? HS, method, path, { ...rest, onEvent: noteRateLimit(method, path) });
}

/** Says when a request waits out a rate limit. */
function noteRateLimit(method: string, path: string): M.RetryPolicy["onEvent"] {
    return (e, d) => {
        if (e === "rate-limited") note(`rate limited on ${method} ${path.split("?")[0]}: waiting ${Math.ceil((d.waitMs ?? 0) / 1000)} s as Synapse asks`);
    };
}

export async function mxOk(method: string, path: string, opts: Parameters<typeof mx>[2] = {}): Promise<any> {
    const r = await mx(method, path, opts);
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status}: ${r.text.slice(0, 500)}`);
    return r.json;
}

export interface Session {
    userId: string;
    token: string;
}

export async function login(user: string, password: string): Promise<Session> {
    const s = await M.login(web, HS, user, password, { deviceName: "drills", maxWaitMs: 400_000, onEvent: noteRateLimit("POST", "/_matrix/client/v3/login") });
    return { userId: s.userId, token: s.token };
}

/**
 * Registration through user-interactive auth (testbed/lib/matrix.ts register): the registration
 * token with `regToken`. Returns the last response (200 with an access token, or the refusal).
 */
export function register(username: string, password: string, regToken?: string): Promise<MxResult> {
    return M.register(web, HS, username, password, regToken, { deviceName: "drills" });
}

export * from "./admin.ts";
export * from "./world.ts";
