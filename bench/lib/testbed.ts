// The testbed, driven from the benchmark: guests (boot/destroy), stacks (config files, deploy.ts),
// and commands on a guest over ssh (testbed/tssh). Nothing here edits the testbed's own files: the
// benchmark's stack configs, secrets and tokens live in BENCH_STATE.
import * as fs from "node:fs";
import * as path from "node:path";
import * as crypto from "node:crypto";
import { runFailure, runProcess, type RunResult } from "../../testbed/lib/run.ts";

export type { RunResult };

export const REPO = path.resolve(import.meta.dirname, "..", "..");
export const B = process.env.TESTBED_DIR || "/var/tmp/phillymesh-testbed";
export const BENCH_STATE = process.env.BENCH_STATE || "/var/tmp/phillymesh-bench";
export const ROOTS = path.join(B, "pebble", "roots.pem");
export const DNS_SERVER = "10.250.0.1";

export interface Server {
    name: string; // guest name; the domain is <name>.test
    ip: string;
    user: string; // ssh user deploy.ts uses
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
    const prefix = opts.prefix ?? path.basename(cmd);
    return runProcess(cmd, args, {
        input: opts.input,
        cwd: opts.cwd ?? REPO,
        env: { ...process.env, ...(opts.env ?? {}) },
        timeoutMs: opts.timeoutMs,
        onLine: (line) => {
            if (!line) return;
            logLine(`[${prefix}] ${line}`);
            if (opts.echo) process.stderr.write(`  [${prefix}] ${line}\n`);
        },
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
    try {
        const pid = fs.readFileSync(path.join(B, `run-${name}`, "supervise.pid"), "utf8").trim();
        const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
        return !/^State:\s*Z/m.test(status);
    } catch {
        return false;
    }
}

export async function hostUp(): Promise<void> {
    await mustRun("bash", ["testbed/host.sh", "up"], { prefix: "host.sh" });
    await mustRun("bash", ["testbed/template.sh"], { prefix: "template.sh" });
}

export function boot(s: Server): Promise<RunResult> {
    return mustRun("bash", ["testbed/boot.sh", s.name, s.ip], { prefix: `boot ${s.name}` });
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

export function tssh(ip: string, command: string, input?: string, timeoutMs = 600_000): Promise<RunResult> {
    return run("bash", ["testbed/tssh", `root@${ip}`, command], { input, prefix: `ssh ${ip}`, timeoutMs });
}

/** Runs a Python program on the guest (as root); stdin is `input`. Returns stdout, throws on failure. */
export async function guestPython(ip: string, program: string, input = ""): Promise<string> {
    const b64 = Buffer.from(program, "utf8").toString("base64");
    const r = await tssh(ip, `python3 -c 'import base64,sys; exec(base64.b64decode(sys.argv[1]))' ${b64}`, input);
    if (r.code !== 0) throw new Error(`python on ${ip} exited ${r.code}: ${r.stderr.slice(-2000)}`);
    return r.stdout;
}

// --- stacks ------------------------------------------------------------------------------------

/** The stack's secrets, made once and kept (0600) in BENCH_STATE, in the shape testbed.sh makes. */
export function secretsFor(name: string): Record<string, string> {
    const dir = path.join(BENCH_STATE, "secrets");
    const file = path.join(dir, `${name}.json`);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!fs.existsSync(file)) {
        const secrets = {
            sshPrivateKey: fs.readFileSync(path.join(B, "id_ed25519"), "utf8"),
            postgresPassword: crypto.randomBytes(16).toString("hex"),
            adminPassword: crypto.randomBytes(12).toString("base64url"),
            registrationSharedSecret: crypto.randomBytes(32).toString("hex"),
            macaroonSecretKey: crypto.randomBytes(32).toString("hex"),
            formSecret: crypto.randomBytes(32).toString("hex"),
        };
        fs.writeFileSync(file, JSON.stringify(secrets, null, 2) + "\n", { mode: 0o600 });
    }
    return JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, string>;
}

/**
 * The whole stack configuration in deploy.ts's shape: what testbed.sh's stack_config writes, plus
 * `extra` (the tuning keys under test; a key not given keeps the program's default).
 */
export function stackConfig(s: Server, synapseVersion: string, peers: string[], extra: Record<string, unknown>, serverId?: string): object {
    const domain = `${s.name}.test`;
    return {
        config: {
            domain,
            adminEmail: `admin@${domain}`,
            hosting: "existing",
            sshHost: s.ip,
            sshUser: s.user,
            // As testbed.sh: a freshly booted guest is a new machine, and its machine-id says so.
            ...(serverId ? { serverId } : {}),
            dns: "none",
            acmeServer: "https://acme.test:14000/dir",
            acmeChallenge: "http",
            apexOnServer: true,
            pipIndexUrl: "https://pypi.test:3143/simple/",
            synapseVersion,
            elementVersion: process.env.ELEMENT_VERSION || "1.11.998",
            elementDownloadUrl: "http://10.250.0.1:8090/v{version}/element-v{version}.tar.gz",
            elementSigningKeyUrl: "http://10.250.0.1:8090/element-release-key.asc",
            elementSigningKeyFingerprint: fs.readFileSync(path.join(B, "element", "fingerprint"), "utf8").trim(),
            elementBrand: `${s.name} chat`,
            federationIpAllowlist: ["10.250.0.0/24"],
            trustedKeyServers: [],
            roomDirectoryServers: [domain, ...peers.map((p) => `${p}.test`)],
            ...extra,
        },
        secrets: secretsFor(s.name),
    };
}

/** The guest's /etc/machine-id (what testbed.sh passes as serverId). */
export async function machineId(s: Server): Promise<string> {
    const r = await tssh(s.ip, "cat /etc/machine-id");
    const id = r.stdout.trim();
    if (r.code !== 0 || !/^[0-9a-f]{32}$/.test(id)) throw new Error(`${s.name}: no machine-id (${r.code}: ${r.stderr.trim()})`);
    return id;
}

export function writeStackConfig(s: Server, config: object, tag = s.name): string {
    const dir = path.join(BENCH_STATE, "stacks");
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, `${tag}.json`);
    fs.writeFileSync(file, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
    return file;
}

let engineDir: string | undefined;
async function pulumiEngineDir(): Promise<string> {
    if (!engineDir) {
        const r = await mustRun("bash", ["scripts/engine.sh", "--partial"], { prefix: "engine.sh" });
        engineDir = r.stdout.trim().split("\n").pop() ?? "";
    }
    return engineDir;
}

export interface DeployResult extends RunResult {
    /** The engine's resourceChanges / changeSummary, as deploy.ts prints it. */
    changes: Record<string, number>;
    /** Resources whose op is not "same" (providers not counted), from the summary. */
    changed: number;
}

/** testbed/deploy/deploy.ts OP --stack NAME ...; as testbed.sh calls it. */
export async function deploy(op: "up" | "preview" | "destroy" | "outputs", stack: string, args: string[] = []): Promise<DeployResult> {
    const env = {
        PATH: `${path.join(REPO, "node_modules", ".bin")}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        PULUMI_ENGINE_DIR: await pulumiEngineDir(),
    };
    const r = await run("ts-node", ["--transpile-only", "testbed/deploy/deploy.ts", op, "--stack", stack, ...args], {
        env,
        prefix: `deploy ${op} ${stack}`,
    });
    const m = /deploy\.ts: (?:up: \S+ in [\d.]+s|preview: [\d.]+s); changes (\{.*\})/.exec(r.stderr);
    const changes = m ? (JSON.parse(m[1]) as Record<string, number>) : {};
    const changed = Object.entries(changes)
        .filter(([op]) => op !== "same")
        .reduce((a, [, n]) => a + n, 0);
    return { ...r, changes, changed };
}

export async function deployUp(s: Server, configFile: string): Promise<DeployResult> {
    const r = await deploy("up", s.name, ["--config", configFile, "--dns-hook", `bash ${path.join(REPO, "testbed", "dns-load.sh")} - ${s.name}`]);
    if (r.code !== 0) throw new Error(`deploy.ts up ${s.name} failed (exit ${r.code}):\n${r.stderr.split("\n").slice(-30).join("\n")}`);
    return r;
}
