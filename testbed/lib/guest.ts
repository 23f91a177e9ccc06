// A testbed guest from the host: commands over ssh (testbed/tssh, through run.ts), Python programs
// from testbed/py/ run on it, its machine-id, whether it runs, and a stack's secrets (made once,
// 0600, in the shape the program's config takes). Plain Node ES module (type stripping).
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { B, PY, SSH_KEY, TSSH, childEnv } from "./paths.ts";
import { runFailure, runProcess, type RunOptions, type RunResult } from "./run.ts";

export interface SshOptions extends Pick<RunOptions, "input" | "onLine" | "signal" | "killGraceMs"> {
    /** Default 60 s; the ssh process (and what it started here) is killed after it. */
    timeoutMs?: number;
    /** Extra environment for tssh (e.g. another TESTBED_DIR). */
    env?: NodeJS.ProcessEnv;
}

/** "user@address" as tssh takes it (user default root). */
export const sshTarget = (ip: string, user = "root"): string => `${user}@${ip}`;

/** `command` on the guest through a shell there. Resolves whatever the exit (see RunResult.code). */
export function ssh(target: string, command: string, opts: SshOptions = {}): Promise<RunResult> {
    return runProcess(TSSH, [target, command], {
        input: opts.input,
        env: childEnv(opts.env),
        timeoutMs: opts.timeoutMs ?? 60_000,
        killGraceMs: opts.killGraceMs,
        onLine: opts.onLine,
        signal: opts.signal,
    });
}

/** ssh(), then its stdout; an Error with the command, how it ended and its last lines unless it exited 0. */
export async function sshOk(target: string, command: string, opts: SshOptions = {}): Promise<string> {
    const r = await ssh(target, command, opts);
    if (r.code !== 0) throw runFailure(r);
    return r.stdout;
}

/**
 * Runs testbed/py/FILE on the guest with python3 (as the ssh user): the program travels in argv
 * (base64), so stdin stays free for `input`; `args` follow it in sys.argv[2:]. Returns stdout.
 */
export async function guestPython(target: string, file: string, opts: { input?: string; args?: string[]; timeoutMs?: number } = {}): Promise<string> {
    const r = await ssh(target, guestPythonCommand(file, opts.args), { input: opts.input ?? "", timeoutMs: opts.timeoutMs ?? 600_000 });
    if (r.code !== 0) throw new Error(`${file} on ${target} exited ${r.code}: ${r.stderr.slice(-2000)}`);
    return r.stdout;
}

/** The command line that runs testbed/py/FILE with python3 on a guest, `args` in sys.argv[2:] (for ssh()). */
export function guestPythonCommand(file: string, args: readonly string[] = []): string {
    const program = fs.readFileSync(path.join(PY, file)).toString("base64");
    return [`python3 -c 'import base64,sys; exec(base64.b64decode(sys.argv[1]))'`, program, ...args.map(shQuote)].join(" ");
}

/** The guest's /etc/machine-id (what a stack with hosting existing gets as serverId). */
export async function machineId(target: string): Promise<string> {
    const r = await ssh(target, "cat /etc/machine-id");
    const id = r.stdout.trim();
    if (r.code !== 0 || !/^[0-9a-f]{32}$/.test(id)) throw new Error(`${target}: no machine-id (${r.code}: ${r.stderr.trim()})`);
    return id;
}

/** A guest booted by boot.sh runs: its supervisor's pid file names a live process. */
export function guestRunning(name: string): boolean {
    try {
        const pid = fs.readFileSync(path.join(B, `run-${name}`, "supervise.pid"), "utf8").trim();
        const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
        return !/^State:\s*Z/m.test(status);
    } catch {
        return false;
    }
}

export function shQuote(s: string): string {
    return `'${s.replaceAll("'", `'\\''`)}'`;
}

// --- a stack's secrets --------------------------------------------------------------------------

export type Secrets = Record<string, string>;

/** New secrets for a stack, in the config's shape; the ssh key is the testbed's. */
export function newSecrets(sshPrivateKey: string): Secrets {
    return {
        sshPrivateKey,
        postgresPassword: crypto.randomBytes(16).toString("hex"),
        adminPassword: crypto.randomBytes(12).toString("base64url"),
        registrationSharedSecret: crypto.randomBytes(32).toString("hex"),
        macaroonSecretKey: crypto.randomBytes(32).toString("hex"),
        formSecret: crypto.randomBytes(32).toString("hex"),
    };
}

/**
 * The secrets in `file`, made there first (0600, its folder 0700) when it is missing or empty.
 * `made` says whether they were made now.
 */
export function ensureSecrets(file: string, sshKeyFile = SSH_KEY): { secrets: Secrets; made: boolean } {
    let made = false;
    if (!(fs.existsSync(file) && fs.statSync(file).size > 0)) {
        fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        const tmp = `${file}.${process.pid}.new`;
        fs.writeFileSync(tmp, JSON.stringify(newSecrets(fs.readFileSync(sshKeyFile, "utf8")), null, 2) + "\n", { mode: 0o600 });
        fs.renameSync(tmp, file);
        made = true;
    }
    return { secrets: readSecrets(file), made };
}

export function readSecrets(file: string): Secrets {
    return JSON.parse(fs.readFileSync(file, "utf8")) as Secrets;
}
