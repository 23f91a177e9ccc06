// The testbed, driven from the benchmark: guests (boot/destroy), stacks (config files, deploy.ts),
// and commands on a guest over ssh, on the testbed client library (testbed/lib). What is the
// benchmark's own: its log file and progress lines, and its stacks' configs, secrets and tokens,
// which live in BENCH_STATE (nothing here edits the testbed's own files).
import * as fs from "node:fs";
import * as path from "node:path";
import { deploy as deployOp, pulumiEngineDir, upArgs, type DeployOp, type DeployResult } from "../../testbed/lib/deployClient.ts";
import { ensureSecrets, guestRunning, machineId as guestMachineId, ssh, sshTarget, type Secrets } from "../../testbed/lib/guest.ts";
import { B, DNS_SERVER, REPO, ROOTS } from "../../testbed/lib/paths.ts";
import { runFailure, runProcess, type RunResult } from "../../testbed/lib/run.ts";
import { elementFingerprint, stackConfig as testbedStackConfig, writeStackFile } from "../../testbed/lib/stackConfig.ts";

export type { DeployResult, RunResult };
export { B, DNS_SERVER, REPO, ROOTS };

export const BENCH_STATE = process.env.BENCH_STATE || "/var/tmp/phillymesh-bench";

export interface Server {
    name: string; // guest name; the domain is <name>.test
    ip: string;
    user: string; // ssh user deploy.ts uses
    memory?: string; // boot.sh's MEM (default 1G)
}

let logStream: fs.WriteStream | undefined;
/** Everything the child processes print goes to this log (and, with echo, to stderr as well). */
export function setLogFile(file: string): void {
    logStream = fs.createWriteStream(file, { flags: "a" });
}
export function logLine(line: string): void {
    logStream?.write(line.endsWith("\n") ? line : line + "\n");
}

export const T0 = Date.now();
export function say(msg: string): void {
    const line = `[bench +${Math.round((Date.now() - T0) / 1000)}s] ${msg}`;
    process.stderr.write(line + "\n");
    logLine(line);
}

/** Each line of a child's output into the log (and, with echo, to stderr), with a prefix. */
function logLines(prefix: string, echo = false): (line: string) => void {
    return (line) => {
        if (!line) return;
        logLine(`[${prefix}] ${line}`);
        if (echo) process.stderr.write(`  [${prefix}] ${line}\n`);
    };
}

/**
 * Runs a command (testbed/lib/run.ts): its output is kept, and logged line by line with a prefix.
 * Never throws on a non-zero exit, a signal or a timeout (see `code`, `signal`, `timedOut`); a child
 * that exits without reading its `input` is no error either. Throws only when the command cannot be
 * started (not found, not executable, no such cwd). `timeoutMs` kills the command's process group.
 */
export function run(
    cmd: string,
    args: string[],
    opts: { input?: string; env?: Record<string, string>; cwd?: string; prefix?: string; echo?: boolean; timeoutMs?: number } = {},
): Promise<RunResult> {
    return runProcess(cmd, args, {
        input: opts.input,
        cwd: opts.cwd ?? REPO,
        env: { ...process.env, ...(opts.env ?? {}) },
        timeoutMs: opts.timeoutMs,
        onLine: logLines(opts.prefix ?? path.basename(cmd), opts.echo),
    });
}

/** run(), then an error naming the command, how it ended and its last 30 lines unless it exited 0. */
export async function mustRun(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
    const r = await run(cmd, args, opts);
    if (r.code !== 0) throw runFailure(r, 30);
    return r;
}

// --- guests ------------------------------------------------------------------------------------

export function isRunning(name: string): boolean {
    return guestRunning(name);
}

export async function hostUp(): Promise<void> {
    await mustRun("bash", ["testbed/host.sh", "up"], { prefix: "host.sh" });
    await mustRun("bash", ["testbed/template.sh"], { prefix: "template.sh" });
}

export function boot(s: Server): Promise<RunResult> {
    return mustRun("bash", ["testbed/boot.sh", s.name, s.ip, ...(s.memory ? [s.memory] : [])], { prefix: `boot ${s.name}` });
}

export function destroy(s: Server, wipe: boolean): Promise<RunResult> {
    return mustRun("bash", ["testbed/destroy.sh", s.name, ...(wipe ? ["--wipe-data"] : [])], { prefix: `destroy ${s.name}` });
}

/** The memory cgroup (v1) of a guest, as boot.sh recorded it. */
export function memoryCgroup(name: string): string {
    const lines = fs.readFileSync(path.join(B, `run-${name}`, "cgroups"), "utf8").split("\n");
    const memcg = lines.find((l) => l.startsWith("/sys/fs/cgroup/memory"));
    if (!memcg) throw new Error(`no memory cgroup recorded for ${name}`);
    return memcg;
}

// --- ssh ---------------------------------------------------------------------------------------

/** A command on the guest as root (testbed/tssh), logged with the prefix "ssh IP". */
export function tssh(ip: string, command: string, input?: string, timeoutMs = 600_000): Promise<RunResult> {
    return ssh(sshTarget(ip), command, { input, timeoutMs, onLine: logLines(`ssh ${ip}`) });
}

// --- stacks ------------------------------------------------------------------------------------

/** The stack's secrets, made once and kept (0600) in BENCH_STATE, in the shape testbed.sh makes. */
export function secretsFor(name: string): Secrets {
    return ensureSecrets(path.join(BENCH_STATE, "secrets", `${name}.json`)).secrets;
}

/**
 * The whole stack configuration in deploy.ts's shape: testbed/lib/stackConfig.ts's for a server
 * with hosting existing (as testbed.sh writes nycmesh's), plus `extra` (the tuning keys under test;
 * a key not given keeps the program's default).
 */
export function stackConfig(s: Server, synapseVersion: string, peers: string[], extra: Record<string, unknown>, serverId?: string): object {
    const c = testbedStackConfig({
        name: s.name,
        hosting: "existing",
        ip: s.ip,
        user: s.user,
        // As testbed.sh: a freshly booted guest is a new machine, and its machine-id says so.
        serverId,
        synapseVersion,
        elementVersion: process.env.ELEMENT_VERSION || "1.11.998",
        elementSigningKeyFingerprint: elementFingerprint(),
        peers: peers.map((p) => `${p}.test`),
        secrets: secretsFor(s.name),
    });
    return { config: { ...c.config, ...extra }, secrets: c.secrets };
}

/** The guest's /etc/machine-id (what testbed.sh passes as serverId). */
export function machineId(s: Server): Promise<string> {
    return guestMachineId(sshTarget(s.ip));
}

export function writeStackConfig(s: Server, config: object, tag = s.name): string {
    const file = path.join(BENCH_STATE, "stacks", `${tag}.json`);
    writeStackFile(file, config);
    return file;
}

/** testbed/deploy/deploy.ts OP --stack NAME ...; as testbed.sh calls it (its output in the log). */
export async function deploy(op: Extract<DeployOp, "up" | "preview" | "forget" | "outputs">, stack: string, args: string[] = []): Promise<DeployResult> {
    return deployOp(op, stack, args, {
        engineDir: await pulumiEngineDir(),
        // A bound no deploy of the benchmark comes near (a cold one takes minutes).
        timeoutMs: 60 * 60_000,
        onLine: logLines(`deploy ${op} ${stack}`),
    });
}

export async function deployUp(s: Server, configFile: string): Promise<DeployResult> {
    const r = await deploy("up", s.name, upArgs(s.name, configFile, { dnsHook: true }));
    if (r.code !== 0) throw new Error(`deploy.ts up ${s.name} failed (exit ${r.code}):\n${r.stderr.split("\n").slice(-30).join("\n")}`);
    return r;
}
