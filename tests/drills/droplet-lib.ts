// Helpers for droplet.test.ts: the drills of the droplet path (hosting digitalocean + dns
// cloudflare) on the testbed's own stack phillymesh (and nycmesh, for federation). See README.md.
//
// Unlike drills.test.ts these act on the stacks `testbed.sh up` made, and leave them deployed and
// converged: every deploy.ts run passes --config explicitly (a preview with a copy of the config
// changes the stack's stored config too), and each drill ends with `preview --expect-no-changes`
// against $B/stacks/phillymesh.json, which holds the config the stack is left at.
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as L from "./lib.ts";
import { drillSet } from "./harness.ts";

export const PM = "phillymesh";
export const NYC = "nycmesh";
/** The stack config testbed.sh wrote; the drills keep it equal to what the stack is deployed with. */
export const PM_FILE = `${L.B}/stacks/${PM}.json`;
export const ACCOUNT = `${L.B}/cloud/do-account.json`;
export const VOLUME_DEVICE = "/dev/disk/by-id/scsi-0DO_Volume_chat-data";

// ---- the drills of this file (harness.ts), each preceded by ensurePhilly() ----
export const { drill, check, anyFailed, printSummary } = drillSet("droplet drills", ensurePhilly);

// ---- stack files, deploy.ts, the stand-ins' accounts ----
export interface StackFile {
    config: Record<string, unknown>;
    secrets: Record<string, unknown>;
}

export function readStack(file = PM_FILE): StackFile {
    return L.readJson<StackFile>(file);
}

/** Writes a stack config (it holds the secrets: 0600); returns the path. */
export function writeStack(sf: StackFile, file: string): string {
    writeFileSync(file, JSON.stringify(sf, null, 2) + "\n", { mode: 0o600 });
    return file;
}

/** A copy of phillymesh's config (or base) with edits, in the drills' work directory. */
export function configCopy(label: string, edit: (c: Record<string, unknown>, s: Record<string, unknown>) => void, base = readStack()): string {
    const sf: StackFile = { config: { ...base.config }, secrets: { ...base.secrets } };
    edit(sf.config, sf.secrets);
    return writeStack(sf, `${L.WORK}/${label}.json`);
}

/** Sets one key of PM_FILE: the config the stack is deployed with from now on. */
export function recordInStackFile(key: string, value: unknown): void {
    const sf = readStack();
    sf.config[key] = value;
    writeStack(sf, PM_FILE);
    L.note(`${PM_FILE}: ${key} = ${JSON.stringify(value)} (the stack's config from now on)`);
}

/**
 * `pulumi state unprotect --all` of a stack, with the engine and state deploy.ts uses (deploy.ts has
 * no such operation): for removing a throwaway stack whose protected volume/reserved IP were made.
 */
export async function unprotectAll(stack: string): Promise<void> {
    const state = process.env.PHILLYMESH_TESTBED_STATE ?? "/var/tmp/phillymesh-testbed/state";
    const eng = await L.runOk("bash", ["-c", `bash ${L.shQuote(`${L.REPO}/scripts/engine.sh`)} --partial 2>/dev/null | tail -n 1`], { timeoutMs: 120_000 });
    const env = {
        ...L.CHILD_ENV,
        PULUMI_HOME: `${state}/home`,
        PULUMI_BACKEND_URL: `file://${state}/backend`,
        PULUMI_SKIP_UPDATE_CHECK: "true",
        // deploy.ts's default passphrase (the testbed's state is not secret).
        PULUMI_CONFIG_PASSPHRASE: process.env.PULUMI_CONFIG_PASSPHRASE ?? "phillymesh-testbed-passphrase (not a secret)",
    };
    await L.runOk(`${eng.out.trim()}/pulumi`, ["state", "unprotect", "--all", "--yes", "--non-interactive", "--stack", stack], {
        cwd: `${state}/work/${stack}`,
        env,
        timeoutMs: 120_000,
        label: `${stack}-unprotect`,
    });
}

/**
 * `deploy.ts outputs|export --stack STACK`: the JSON it prints on stdout, taken from a file (its
 * stderr lines would land inside a large JSON on a shared pipe).
 */
async function deployJson(op: "outputs" | "export", stack: string): Promise<any> {
    const file = `${L.WORK}/${stack}.${op}.json`;
    const r = await L.run("bash", ["-c", 'exec ts-node --transpile-only testbed/deploy/deploy.ts "$@" >"$OUT"', "-", op, "--stack", stack], {
        timeoutMs: 120_000,
        env: { ...L.CHILD_ENV, OUT: file },
        label: `${stack}-${op}`,
    });
    try {
        if (r.code !== 0) throw new Error(`exit ${r.code}`);
        return L.readJson(file);
    } catch (e) {
        throw new Error(`deploy.ts ${op} --stack ${stack}: ${String(e)}\n${L.tail(r.out)}`);
    } finally {
        rmSync(file, { force: true });
    }
}

export function stackOutputs(stack = PM): Promise<Record<string, any>> {
    return deployJson("outputs", stack);
}

export interface StateResource {
    urn: string;
    type: string;
    id?: string;
    outputs?: Record<string, any>;
    protect?: boolean;
}
export async function stackResources(stack = PM): Promise<StateResource[]> {
    return ((await deployJson("export", stack)).deployment?.resources ?? []) as StateResource[];
}

/** The stack's droplet as its state records it: id and testbed guest (do-<id>). */
export async function stackDroplet(stack = PM): Promise<{ id: string; guest: string }> {
    const d = (await stackResources(stack)).find((x) => x.type.endsWith(":Droplet"));
    if (!d?.id) throw new Error(`stack ${stack} has no Droplet in its state`);
    return { id: d.id, guest: String(d.outputs?.__guest ?? `do-${d.id}`) };
}

export function account(): any {
    return existsSync(ACCOUNT) ? JSON.parse(readFileSync(ACCOUNT, "utf8")) : { droplets: [], volumes: [], reservedIps: [], sshKeys: [] };
}

/** `deploy.ts preview|up --config FILE` of a stack (phillymesh unless given). */
export function previewWith(file: string, label: string, extra: string[] = [], stack = PM): Promise<L.RunResult> {
    return L.deploy("preview", ["--config", file, ...extra], { label, stack, timeoutMs: 5 * 60_000 });
}
export function upWith(file: string, label: string, stack = PM): Promise<L.RunResult> {
    return L.deploy("up", ["--config", file], { label, stack, timeoutMs: 20 * 60_000 });
}

/** What a preview would do to each custom resource (by name): replace, update, create, delete or same. */
export async function previewPlan(file: string, label: string, stack = PM): Promise<{ r: L.RunResult; plan: Map<string, { type: string; kind: string }> }> {
    const events = `${L.WORK}/${label}.events.json`;
    const r = await previewWith(file, label, ["--events", events], stack);
    const plan = new Map<string, { type: string; kind: string }>();
    if (r.code !== 0 || !existsSync(events)) return { r, plan };
    for (const s of L.readJson<{ urn: string; type: string; ops: string[] }[]>(events)) {
        // The program's components, the stack, providers and the stack reference are no cloud resources.
        if (/^(pulumi:|phillymesh-chat:)/.test(s.type)) continue;
        const kind = s.ops.some((o) => o.includes("replace")) ? "replace" : (s.ops.find((o) => o !== "same") ?? "same");
        plan.set(s.urn.split("::").pop()!, { type: s.type.split(":").pop()!, kind });
    }
    return { r, plan };
}

/** The stack converged at the config in PM_FILE: a preview with it changes nothing. */
export async function assertConverged(label: string): Promise<void> {
    const r = await previewWith(PM_FILE, label, ["--expect-no-changes"]);
    if (r.code !== 0) throw new Error(`preview --expect-no-changes with ${PM_FILE} failed (exit ${r.code}):\n${L.tail(r.out, 40)}`);
}

export async function cfZone(args: string[]): Promise<string> {
    const r = await L.runOk("bash", [`${L.REPO}/testbed/cloud/cf-zone.sh`, ...args], { timeoutMs: 60_000 });
    return r.out.trim().split("\n").pop() ?? "";
}

// ---- the servers ----
/** The nycmesh server (hosting existing; ssh as its sudo user). */
export function nycTarget(): L.ServerTarget {
    const c = readStack(`${L.B}/stacks/${NYC}.json`).config;
    return { name: NYC, ip: String(c.sshHost), sshUser: String(c.sshUser ?? "root"), guest: NYC };
}

async function locatePhilly(): Promise<L.ServerTarget> {
    const out = await stackOutputs(PM);
    const d = await stackDroplet(PM);
    return { name: PM, ip: String(out.serverIp), guest: d.guest };
}

/** Points the helpers at phillymesh's droplet as its state now says (after a replacement). */
export async function retarget(): Promise<L.ServerTarget> {
    const s = await locatePhilly();
    L.useServer(s);
    await L.resetHttp();
    return s;
}

async function bothHealthy(): Promise<boolean> {
    if (!(await L.healthy())) return false;
    return L.withServer(nycTarget(), () => L.healthy());
}

/**
 * phillymesh (and nycmesh) deployed and answering; the helpers pointed at phillymesh. When the
 * stack does not exist or does not answer: `testbed.sh up` (both stacks), as CI does.
 */
export async function ensurePhilly(): Promise<void> {
    if (L.NAME === PM && L.IP !== "" && (await bothHealthy())) return;
    if (existsSync(PM_FILE) && existsSync(`${L.B}/stacks/${NYC}.json`)) {
        const s = await locatePhilly().catch(() => undefined);
        if (s) {
            L.useServer(s);
            await L.resetHttp();
            if (await bothHealthy()) return;
        }
    }
    L.note(`${PM}/${NYC} not deployed or not answering: testbed.sh up`);
    const r = await L.run("bash", [`${L.REPO}/testbed/testbed.sh`, "up"], { timeoutMs: 30 * 60_000, label: "testbed-up" });
    if (r.code !== 0) throw new Error(`testbed.sh up failed (exit ${r.code}, log ${r.log}):\n${L.tail(r.out, 40)}`);
    await retarget();
    await L.waitFor(`${PM} and ${NYC} answering`, 120_000, bothHealthy);
}

/** Polls a room (as session s, on the server the helpers point at) until body shows up. */
export async function waitForBody(s: L.Session, roomId: string, body: string, what: string, limitMs = 120_000): Promise<void> {
    await L.waitFor(what, limitMs, async () => (await L.roomMessages(s, roomId)).includes(body));
}
