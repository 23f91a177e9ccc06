// A stand-in for `@pulumi/command`'s `remote.Command`, used ONLY by testbed/deploy/deploy.ts.
//
// Why it exists: on this workplace the real provider binary (pulumi-resource-command, Go module
// github.com/pulumi/pulumi-command/provider) cannot be built — the Go proxy does not serve it, see
// scripts/engine.sh — and no release binary can be downloaded. Everything else in a deployment is
// real: the Pulumi CLI/engine, the state backend, config and secrets handling, the program
// (index.ts, components/) and the scripts it sends. This file replaces one provider with a Pulumi
// *dynamic* provider (run by pulumi-resource-pulumi-nodejs, which ships with the CLI) that does what
// the real remote.Command does with the inputs this program uses, over the system `ssh` client.
//
// What it mirrors (pulumi-command v1.x, provider/pkg/provider/remote + common/inputs.go):
//   - inputs connection{host, port=22, user=root, privateKey, dialErrorLimit=10, perDialTimeout=15},
//     create, update, delete, stdin, triggers, logging, addPreviousOutputInEnv; outputs are the inputs
//     plus stdout and stderr (trailing newline trimmed);
//   - `connection` is a secret output; additionalSecretOutputs from the program are honoured;
//   - diff: any changed input means update (runs `update`, else `create`); a changed `triggers`
//     means REPLACE (triggers is replaceOnChanges), i.e. `create` runs for the new resource and
//     then `delete` (if set) for the old one;
//   - create runs `create`, delete runs `delete` if set; stdin is piped when non-empty;
//   - dial retries: a failed connection (TCP or authentication) is retried dialErrorLimit times
//     (-1: forever) with the engine's retry schedule (100 ms, x1.5, at most 5 s); the command itself
//     is never retried;
//   - a non-zero exit fails the resource with "Process exited with status N: running <cmd>" and the
//     tail of the combined output;
//   - logging: the remote output is streamed line by line (prefixed with the resource name) as the
//     real provider logs it; "none"/"stdout"/"stderr" select what is streamed.
// What it does NOT cover: password / privateKeyPassword / agentSocketPath / proxy connections,
// `environment` (rejected with an error), addPreviousOutputInEnv=true (PULUMI_COMMAND_STDOUT/STDERR
// are not set), customTimeouts and cancellation, `pulumi refresh`/import semantics, the other
// resources of @pulumi/command (local.Command, remote.CopyToRemote ...).
// Differences a user can see: the resource type is pulumi-nodejs:dynamic/remote:Command (its state
// cannot be adopted by the real provider); it has one extra input, `__step` (the resource name,
// to label streamed lines; never diffed); the streamed lines are diagnostics of the stack rather
// than of the resource; and the dynamic provider is configured with the whole stack config (secrets
// stay ciphertext in the state), so a config edit also shows its default provider as "update".
import * as pulumi from "@pulumi/pulumi";
import { installModule } from "./shimKit";

/** The inputs of remote.Command this stand-in understands (the program's subset of the real ones). */
export interface ConnectionArgs {
    host: pulumi.Input<string>;
    port?: pulumi.Input<number>;
    user?: pulumi.Input<string>;
    privateKey?: pulumi.Input<string>;
    dialErrorLimit?: pulumi.Input<number>;
    perDialTimeout?: pulumi.Input<number>;
}

export interface CommandArgs {
    connection: pulumi.Input<ConnectionArgs>;
    create?: pulumi.Input<string>;
    update?: pulumi.Input<string>;
    delete?: pulumi.Input<string>;
    stdin?: pulumi.Input<string>;
    triggers?: pulumi.Input<unknown[]>;
    environment?: pulumi.Input<Record<string, pulumi.Input<string>>>;
    addPreviousOutputInEnv?: pulumi.Input<boolean>;
    logging?: pulumi.Input<"stdout" | "stderr" | "stdoutAndStderr" | "none">;
}

/** The input keys the diff compares (everything the real provider takes as input). */
const INPUT_KEYS = ["connection", "create", "update", "delete", "stdin", "triggers", "environment", "addPreviousOutputInEnv", "logging"];

// ---------------------------------------------------------------------------------------------
// The provider. Pulumi serializes these functions (and what they capture) into the state and runs
// them in the pulumi-resource-pulumi-nodejs process, so they capture no secret and require what
// they need themselves.

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

/** Runs one command on the host as the real provider does; resolves with trimmed stdout/stderr. */
async function runRemote(props: any, command: string): Promise<{ stdout: string; stderr: string }> {
    const cp = require("child_process");
    const fs = require("fs");
    const os = require("os");
    const path = require("path");
    const label = String(props.__step ?? "command");
    const c = props.connection ?? {};
    if (props.environment && Object.keys(props.environment).length > 0) {
        throw new Error(`${label}: 'environment' is not supported by the testbed's remote.Command stand-in`);
    }
    if (!c.host) throw new Error(`${label}: connection.host is empty`);
    if (!c.privateKey) throw new Error(`${label}: the stand-in needs connection.privateKey (password, agent and proxy are not supported)`);
    const port = String(c.port ?? 22);
    const user = String(c.user ?? "root");
    const dialLimit = Number(c.dialErrorLimit ?? 10);
    const perDial = Number(c.perDialTimeout ?? 15);
    const logging = String(props.logging ?? "stdoutAndStderr");

    // The key in a 0600 file of a 0700 directory that is removed however the step ends; the
    // directory also holds the control socket of the one connection the step uses.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmc-ssh-"));
    const key = path.join(dir, "id");
    const sock = path.join(dir, "cm");
    fs.writeFileSync(key, c.privateKey.endsWith("\n") ? c.privateKey : c.privateKey + "\n", { mode: 0o600 });
    const common = [
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        `ControlPath=${sock}`,
        "-p",
        port,
        "-l",
        user,
    ];
    const spawnSsh = (args: string[], stdin?: string) =>
        new Promise<{ code: number; out: string; err: string }>((resolve) => {
            const p = cp.spawn("ssh", [...common, ...args], { stdio: ["pipe", "pipe", "pipe"] });
            let out = "";
            let err = "";
            p.stdout.on("data", (d: Buffer) => (out += d.toString()));
            p.stderr.on("data", (d: Buffer) => (err += d.toString()));
            p.on("error", (e: Error) => resolve({ code: 255, out, err: err + String(e) }));
            p.on("close", (code: number | null) => resolve({ code: code ?? 255, out, err }));
            if (stdin) p.stdin.write(stdin);
            p.stdin.end();
        });
    try {
        // 1. Dial: one master connection (authenticated, then backgrounded by -f), retried like
        //    the real provider's ssh.Dial.
        let delay = 100;
        for (let dial = 1; ; dial++) {
            const r = await spawnSsh([
                "-i",
                key,
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                `ConnectTimeout=${perDial > 0 ? perDial : 3600}`,
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPersist=600",
                "-o",
                "ServerAliveInterval=15",
                "-f",
                "-N",
                String(c.host),
            ]);
            if (r.code === 0) break;
            if (dialLimit !== -1 && dial > dialLimit) {
                throw new Error(`${label}: after ${dial - 1} failed attempts: dial ${user}@${c.host}:${port}: ${r.err.trim()}`);
            }
            process.stderr.write(`[${label}] Dial ${dial}/${dialLimit === -1 ? "inf" : dialLimit} failed: retrying (${r.err.trim().split("\n").pop()})\n`);
            await new Promise((res) => setTimeout(res, delay));
            delay = Math.min(delay * 1.5, 5000);
        }

        // 2. The session: the command with stdin, output streamed line by line and kept.
        const result = await new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; both: string }>((resolve) => {
            const p = cp.spawn("ssh", [...common, "-o", "ControlMaster=no", String(c.host), "--", command], { stdio: ["pipe", "pipe", "pipe"] });
            let stdout = "";
            let stderr = "";
            let both = "";
            const partial: Record<string, string> = { stdout: "", stderr: "" };
            const stream = (which: "stdout" | "stderr", chunk: string, flush = false) => {
                if (logging === "none" || (logging !== "stdoutAndStderr" && logging !== which)) return;
                const lines = (partial[which] + chunk).split("\n");
                partial[which] = flush ? "" : (lines.pop() ?? "");
                for (const line of lines) if (line.trim() !== "") process.stderr.write(`[${label}] ${line}\n`);
            };
            p.stdout.on("data", (d: Buffer) => {
                stdout += d.toString();
                both += d.toString();
                stream("stdout", d.toString());
            });
            p.stderr.on("data", (d: Buffer) => {
                stderr += d.toString();
                both += d.toString();
                stream("stderr", d.toString());
            });
            p.on("close", (code: number | null, signal: string | null) => {
                stream("stdout", "", true);
                stream("stderr", "", true);
                resolve({ code, signal, stdout, stderr, both });
            });
            p.stdin.on("error", () => undefined); // the command may exit without reading stdin
            if (props.stdin) p.stdin.write(props.stdin);
            p.stdin.end();
        });
        if (result.code !== 0) {
            const tail = result.both.trimEnd().split("\n").slice(-40).join("\n");
            const why = result.code === null ? `Process killed by ${result.signal}` : `Process exited with status ${result.code}`;
            throw new Error(`${why}: running ${JSON.stringify(command)}:\n${tail}`);
        }
        return { stdout: result.stdout.replace(/\n$/, ""), stderr: result.stderr.replace(/\n$/, "") };
    } finally {
        await spawnSsh(["-O", "exit", String(c.host)]);
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

/** The inputs as outputs (the real provider's outputs are its inputs plus stdout/stderr). */
function inputsAsOutputs(props: any): Record<string, unknown> {
    // __step too: a delete runs with the outputs, and its streamed lines should carry the name.
    const outs: Record<string, unknown> = { __step: props.__step };
    for (const k of INPUT_KEYS) if (props[k] !== undefined) outs[k] = props[k];
    return outs;
}

/** Order-independent JSON, so a re-ordered object is not a change. */
function canonical(v: unknown): string {
    if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
    if (v && typeof v === "object") {
        return `{${Object.keys(v as object)
            .filter((k) => (v as any)[k] !== undefined)
            .sort()
            .map((k) => `${JSON.stringify(k)}:${canonical((v as any)[k])}`)
            .join(",")}}`;
    }
    return JSON.stringify(v ?? null);
}

/** The provider (exported for direct tests of the stand-in). */
export const provider: pulumi.dynamic.ResourceProvider = {
    async diff(_id: string, olds: any, news: any): Promise<pulumi.dynamic.DiffResult> {
        const changed = INPUT_KEYS.filter((k) => canonical(olds[k]) !== canonical(news[k]));
        return { changes: changed.length > 0, replaces: changed.includes("triggers") ? ["triggers"] : [] };
    },
    async create(inputs: any): Promise<pulumi.dynamic.CreateResult> {
        const run = inputs.create ? await runRemote(inputs, inputs.create) : { stdout: "", stderr: "" };
        const id = `${inputs.__step ?? "command"}-${require("crypto").randomBytes(4).toString("hex")}`;
        return { id, outs: { ...inputsAsOutputs(inputs), ...run } };
    },
    async update(_id: string, olds: any, news: any): Promise<pulumi.dynamic.UpdateResult> {
        const cmd = news.update ?? news.create;
        const run = cmd ? await runRemote(news, cmd) : { stdout: olds.stdout ?? "", stderr: olds.stderr ?? "" };
        return { outs: { ...inputsAsOutputs(news), ...run } };
    },
    async delete(_id: string, props: any): Promise<void> {
        if (props.delete) await runRemote(props, props.delete);
    },
};

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

// ---------------------------------------------------------------------------------------------

/** While set, every Command's `create` input waits for this promise (deploy.ts --dns-hook). */
let gate: Promise<unknown> | undefined;

/**
 * Makes the Commands constructed from now on wait for `p` before they are registered (and so before
 * they run); undefined stops that. Used by deploy.ts to load DNS records before any step runs.
 */
export function setCommandGate(p: Promise<unknown> | undefined): void {
    gate = p;
}

export class Command extends pulumi.dynamic.Resource {
    declare public readonly connection: pulumi.Output<ConnectionArgs>;
    declare public readonly create: pulumi.Output<string | undefined>;
    declare public readonly update: pulumi.Output<string | undefined>;
    declare public readonly delete: pulumi.Output<string | undefined>;
    declare public readonly stdin: pulumi.Output<string | undefined>;
    declare public readonly triggers: pulumi.Output<unknown[] | undefined>;
    declare public readonly stdout: pulumi.Output<string>;
    declare public readonly stderr: pulumi.Output<string>;

    constructor(name: string, args: CommandArgs, opts?: pulumi.CustomResourceOptions) {
        if (gate && args.create !== undefined) {
            // Same value: only the moment it is known (and so the moment the step may run) changes.
            const g = gate;
            args = { ...args, create: pulumi.output(args.create).apply(async (v) => (await g, v)) };
        }
        super(
            provider,
            name,
            // __step only labels the streamed output; the diff never looks at it.
            { __step: name, ...args, stdout: undefined, stderr: undefined },
            // The real provider's schema marks `connection` secret.
            { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "connection"] },
            "remote",
            "Command",
        );
    }
}

/** What `require("@pulumi/command")` returns while the stand-in is installed. */
export const commandModule = {
    remote: { Command },
    types: { input: {}, output: {} },
};

/**
 * Makes `require("@pulumi/command")`, resolved from `fromDir` (the program's directory), return the
 * stand-in. Call before the program's modules are loaded.
 */
export function installCommandShim(fromDir: string): string {
    return installModule("@pulumi/command", fromDir, commandModule);
}
