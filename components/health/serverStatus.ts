// The server's own view, beside the outside checks: the last results of its daily status check
// (phillymesh-chat-status: certificate, backup age, disks, Synapse; STATUS_FILE), read over SSH with
// the stack's key when `up` ends, so that the `health` output shows them too. They never fail `up`
// (an old backup or a full disk is not something `up` can fix): a problem there is a warning that
// says where to look. The system's `ssh` client reads the file (the Pulumi program has no SSH
// client of its own); like the steps' connection it does not pin the server's host key, and it
// sends nothing but the command. In worker mode it also asks systemd, over the same connection,
// whether Redis and each worker run (workerVerdicts): those do fail `up`.
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { Verdict } from "./checks";

export interface StatusSsh {
    readonly host: string;
    readonly port: number;
    readonly user: string;
    readonly privateKey: string;
    /** Read through `sudo -n` (the SSH user is not root). */
    readonly sudo: boolean;
}

/** POSIX single-quoting. */
const shq = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;

/** Reads a file on the server; undefined when it does not exist yet. Rejects when SSH fails. */
export type StatusReader = (file: string) => Promise<string | undefined>;

/** The system ssh client, with the key in a private temporary file. */
export function sshStatusReader(s: StatusSsh, timeoutMs = 30_000): StatusReader {
    return async (file) => {
        // The file's name is ours (a constant), quoted all the same.
        const read = `if [ -e ${shq(file)} ]; then cat ${shq(file)}; else echo MISSING; fi`;
        const out = await sshRun(s, s.sudo ? `sudo -n sh -c ${shq(read)}` : read, timeoutMs);
        return out.trim() === "MISSING" ? undefined : out;
    };
}

/** What systemd says of each unit on the server (`systemctl is-active`: active, failed, inactive, ...), in order. */
export type UnitStateReader = (units: readonly string[]) => Promise<string[]>;

/** The units' states over SSH: `systemctl is-active` needs no root (D-Bus answers any user of the system's). */
export function sshUnitStates(s: StatusSsh, timeoutMs = 30_000): UnitStateReader {
    return async (units) => {
        // The unit names are ours (from the worker layout), quoted all the same; is-active exits
        // non-zero when one is not active, and still prints a line for each.
        const out = await sshRun(s, `systemctl is-active -- ${units.map(shq).join(" ")}; true`, timeoutMs);
        const states = out.trim().split("\n");
        if (states.length !== units.length) throw new Error(`systemctl is-active answered ${JSON.stringify(out.trim().slice(0, 300))}`);
        return states.map((l) => l.trim());
    };
}

/** Runs one command on the server with the system ssh client; resolves with its stdout. */
async function sshRun(s: StatusSsh, remote: string, timeoutMs: number): Promise<string> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phillymesh-status-"));
    const key = path.join(dir, "key");
    fs.writeFileSync(key, s.privateKey.endsWith("\n") ? s.privateKey : `${s.privateKey}\n`, { mode: 0o600 });
    try {
        const out = await new Promise<string>((resolve, reject) => {
            const child = spawn(
                "ssh",
                [
                    ...["-i", key, "-p", String(s.port), "-F", "/dev/null"],
                    ...["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"],
                    ...["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"],
                    `${s.user}@${s.host}`,
                    remote,
                ],
                { stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs },
            );
            let stdout = "";
            let stderr = "";
            child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
            child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
            child.on("error", (e) => reject(new Error(`cannot run ssh: ${e.message}`)));
            child.on("close", (code) =>
                code === 0 ? resolve(stdout) : reject(new Error(`ssh ${s.user}@${s.host} exited ${code}: ${stderr.trim().slice(-300)}`)),
            );
        });
        return out;
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

/** The server's daily status as verdicts, read with `read`: a failed read is a warning, never a failure. */
export async function serverStatusVerdicts(read: StatusReader, file: string): Promise<Verdict[]> {
    try {
        return statusVerdicts(await read(file), file);
    } catch (e) {
        return [{ check: "server status", level: "warn", detail: `could not read ${file}: ${e instanceof Error ? e.message : String(e)}` }];
    }
}

/** The status file's verdicts: one per daily check, as warnings when not ok. */
export function statusVerdicts(text: string | undefined, file: string): Verdict[] {
    const check = "server status";
    if (text === undefined) return [{ check, level: "ok", detail: `the daily status check has not run yet (${file} appears after its first run)` }];
    let status: { checkedAt?: string; checks?: { name?: string; ok?: boolean; detail?: string }[] };
    try {
        status = JSON.parse(text) as typeof status;
    } catch {
        return [{ check, level: "warn", detail: `${file} is not JSON: see journalctl -u phillymesh-chat-status on the server` }];
    }
    if (!Array.isArray(status.checks)) return [{ check, level: "warn", detail: `${file} holds no checks` }];
    return status.checks.map((c) => ({
        check: `server ${c.name ?? "?"}`,
        level: c.ok === true ? "ok" : "warn",
        detail: `${c.detail ?? ""} (daily check of ${status.checkedAt ?? "?"}${c.ok === true ? "" : "; journalctl -u phillymesh-chat-status on the server"})`,
    }));
}

/**
 * Worker mode's processes as verdicts, from their units' live states: Redis and each worker must be
 * active. One that is not fails `up`: its share of the service (client requests, media or outgoing
 * federation) is down while the main process runs.
 * A failed read (SSH) is a warning, as for the status file.
 */
export async function workerVerdicts(read: UnitStateReader, workers: readonly string[]): Promise<Verdict[]> {
    const units = ["redis-server.service", ...workers.map((w) => `matrix-synapse-worker@${w}.service`)];
    let states: string[];
    try {
        states = await read(units);
    } catch (e) {
        return [{ check: "workers", level: "warn", detail: `could not ask systemd on the server: ${e instanceof Error ? e.message : String(e)}` }];
    }
    return units.map((unit, i) => {
        const check = i === 0 ? "Redis" : `worker ${workers[i - 1]}`;
        if (states[i] === "active") return { check, level: "ok" as const, detail: `${unit} is active` };
        const name = unit.replace(/\.service$/, "");
        const why = i === 0 ? "the workers cannot reach the main process" : "its share of the service is down";
        return {
            check,
            level: "fail" as const,
            detail: `${unit} is ${states[i]}: ${why}; on the server: systemctl status ${name}, journalctl -u ${name}, then systemctl restart ${name}`,
        };
    });
}
