// Runs the real program (index.ts) through the real Pulumi engine (the CLI that scripts/engine.sh
// builds), with stand-ins for the providers whose binaries cannot be built or reach nothing here:
// remote.Command (commandShim.ts), @pulumi/digitalocean and @pulumi/cloudflare (digitaloceanShim.ts,
// cloudflareShim.ts: droplets are testbed guests, records go to the testbed DNS). The Node language host cannot be built either, so the program runs *inline* through
// the Automation API: this process hosts the program and the CLI drives it.
//
//   PATH=$PWD/node_modules/.bin:$PATH
//   ts-node --transpile-only testbed/deploy/deploy.ts up       --stack NAME --config FILE.json [--events OUT.json] [--dns-hook CMD]
//   ts-node --transpile-only testbed/deploy/deploy.ts preview  --stack NAME [--config FILE.json] [--expect-no-changes] [--forbid-replace] [--events OUT.json]
//   ts-node --transpile-only testbed/deploy/deploy.ts outputs  --stack NAME [--show-secrets]
//   ts-node --transpile-only testbed/deploy/deploy.ts destroy  --stack NAME
//   ts-node --transpile-only testbed/deploy/deploy.ts export   --stack NAME [--show-secrets]
//   ts-node --transpile-only testbed/deploy/deploy.ts forget   --stack NAME   (pulumi stack rm --force)
//
// FILE.json: { "config": { "domain": "phillymesh.test", ... }, "secrets": { "postgresPassword": "...", ... } }
// (keys without the "phillymesh-chat:" prefix). It is the stack's whole configuration: keys set
// earlier and missing from the file are removed. Lists are set as lists (the engine checks
// `type: array`), numbers and booleans as their text.
//
// --dns-hook CMD (up only): the stand-in for Cloudflare with `dns: none`. As soon as the program's
// `dnsRecords` output is known, `bash -c CMD` gets it as JSON on stdin (e.g. testbed/dns-load.sh -
// NAME), and no provisioning step starts before it has succeeded (certificates need the records).
// --events OUT.json: when each resource's step started and ended, as seen in the engine's events.
//
// Environment: PHILLYMESH_TESTBED_STATE (default /var/tmp/phillymesh-testbed/state: the file
// backend in backend/, PULUMI_HOME in home/, and per stack a workspace work/<stack>/ holding a copy
// of Pulumi.yaml and Pulumi.<stack>.yaml with the encrypted config), PULUMI_CONFIG_PASSPHRASE
// (default a fixed testbed passphrase), PULUMI_ENGINE_DIR (default: `scripts/engine.sh --partial`).
//
// The engine's progress goes to stdout; timings and summaries to stderr; `outputs` and `export`
// print JSON on stdout, secrets as "[secret]" / ciphertext unless --show-secrets. Any secret value
// of the config file that shows up in the engine's output is replaced by [secret:KEY] and makes the
// command exit 3.
import * as childProcess from "child_process";
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";
import { EngineEvent, LocalWorkspace, OpMap, ProjectSettings, PulumiCommand, Stack } from "@pulumi/pulumi/automation";
import { installCloudShims } from "./cloudShims";
import { installCommandShim, setCommandGate } from "./commandShim";

const REPO = path.resolve(__dirname, "..", "..");
const PROJECT = "phillymesh-chat";
const STATE_DIR = path.resolve(process.env.PHILLYMESH_TESTBED_STATE || "/var/tmp/phillymesh-testbed/state");
const PASSPHRASE = process.env.PULUMI_CONFIG_PASSPHRASE || "phillymesh-testbed-passphrase (not a secret)";

const USAGE = `usage: deploy.ts up --stack NAME --config FILE.json [--events OUT.json] [--dns-hook CMD]
       deploy.ts preview --stack NAME [--config FILE.json] [--expect-no-changes] [--forbid-replace] [--events OUT.json]
       (up and preview also take --program DIR: run the program of another checkout, e.g. the last landed one)
       deploy.ts outputs --stack NAME [--show-secrets]
       deploy.ts destroy --stack NAME
       deploy.ts export --stack NAME [--show-secrets]
       deploy.ts forget --stack NAME`;

interface Args {
    op: "up" | "preview" | "outputs" | "destroy" | "export" | "forget";
    stack: string;
    config?: string;
    events?: string;
    dnsHook?: string;
    expectNoChanges: boolean;
    forbidReplace: boolean;
    program?: string;
    showSecrets: boolean;
}

class UsageError extends Error {}

function parseArgs(argv: string[]): Args {
    const [op, ...rest] = argv;
    if (!["up", "preview", "outputs", "destroy", "export", "forget"].includes(op)) throw new UsageError(`unknown operation '${op ?? ""}'`);
    const a: Args = { op: op as Args["op"], stack: "", expectNoChanges: false, forbidReplace: false, showSecrets: false };
    for (let i = 0; i < rest.length; i++) {
        const value = () => {
            const v = rest[++i];
            if (v === undefined) throw new UsageError(`${rest[i - 1]} needs a value`);
            return v;
        };
        switch (rest[i]) {
            case "--stack": a.stack = value(); break;
            case "--config": a.config = path.resolve(value()); break;
            case "--events": a.events = path.resolve(value()); break;
            case "--dns-hook": a.dnsHook = value(); break;
            case "--expect-no-changes": a.expectNoChanges = true; break;
            case "--forbid-replace": a.forbidReplace = true; break;
            case "--program": a.program = path.resolve(value()); break;
            case "--show-secrets": a.showSecrets = true; break;
            default: throw new UsageError(`unknown argument '${rest[i]}'`);
        }
    }
    if (!/^[A-Za-z0-9_.-]+$/.test(a.stack)) throw new UsageError("--stack NAME is required (letters, digits, _ . -)");
    if (a.op === "up" && !a.config) throw new UsageError("up needs --config FILE.json");
    if (a.config && !["up", "preview"].includes(a.op)) throw new UsageError("--config is for up and preview");
    if (a.dnsHook && a.op !== "up") throw new UsageError("--dns-hook is for up");
    if (a.program && !["up", "preview"].includes(a.op)) throw new UsageError("--program is for up and preview");
    if (a.program && !fs.existsSync(path.join(a.program, "index.ts"))) throw new UsageError(`--program ${a.program}: no index.ts there`);
    return a;
}

function log(msg: string): void {
    process.stderr.write(`deploy.ts: ${msg}\n`);
}

/** Seconds since `t0`, for the timing lines. */
function since(t0: number): string {
    return `${((Date.now() - t0) / 1000).toFixed(1)}s`;
}

// --- the engine and its environment ----------------------------------------------------------

export function engineDir(): string {
    if (process.env.PULUMI_ENGINE_DIR) return process.env.PULUMI_ENGINE_DIR;
    const r = childProcess.spawnSync("bash", [path.join(REPO, "scripts", "engine.sh"), "--partial"], { encoding: "utf8" });
    const dir = r.stdout.trim().split("\n").pop() ?? "";
    if (r.status !== 0 || !fs.existsSync(path.join(dir, "pulumi"))) {
        throw new Error(`scripts/engine.sh --partial found no pulumi CLI (exit ${r.status}):\n${r.stderr}`);
    }
    return dir;
}

/**
 * The environment for the CLI: what scripts/pulumi-env.sh exports (PATH with the engine first,
 * PULUMI_SKIP_UPDATE_CHECK, PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION, PULUMI_IGNORE_AMBIENT_PLUGINS),
 * plus the backend, passphrase and PULUMI_HOME under the state directory. Node 24 from
 * node_modules/.bin comes first on PATH and NODE_PATH points at the repo's node_modules, because
 * the dynamic provider (pulumi-resource-pulumi-nodejs) runs `node` from the workspace directory.
 */
export function cliEnv(engine: string): Record<string, string> {
    const base: Record<string, string> = {
        PULUMI_HOME: path.join(STATE_DIR, "home"),
        PULUMI_BACKEND_URL: `file://${path.join(STATE_DIR, "backend")}`,
        PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
        PATH: `${path.join(REPO, "node_modules", ".bin")}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        NODE_PATH: path.join(REPO, "node_modules"),
        // Where the cloud stand-ins' providers find testbed/cloud/do-host.sh and dns-load.sh.
        TESTBED_REPO: REPO,
    };
    fs.mkdirSync(base.PULUMI_HOME, { recursive: true });
    fs.mkdirSync(path.join(STATE_DIR, "backend"), { recursive: true });
    const r = childProcess.spawnSync("bash", ["-c", '. "$0" "$1" >&2 && env -0', path.join(REPO, "scripts", "pulumi-env.sh"), engine], {
        encoding: "utf8",
        env: { ...process.env, ...base },
    });
    if (r.status !== 0) throw new Error(`scripts/pulumi-env.sh failed:\n${r.stderr}`);
    const env: Record<string, string> = { ...base };
    for (const entry of r.stdout.split("\0")) {
        const eq = entry.indexOf("=");
        if (eq <= 0) continue;
        const [k, v] = [entry.slice(0, eq), entry.slice(eq + 1)];
        if (process.env[k] !== v && !["SHLVL", "_", "PWD", "OLDPWD"].includes(k)) env[k] = v;
    }
    return env;
}

/** Pulumi.yaml as it is, `config:` block included (ProjectSettings' type has no room for it, the file writer has). */
function projectSettings(): ProjectSettings {
    const project = yaml.load(fs.readFileSync(path.join(REPO, "Pulumi.yaml"), "utf8")) as Record<string, unknown>;
    if (project.name !== PROJECT) throw new Error(`Pulumi.yaml names project '${String(project.name)}', expected ${PROJECT}`);
    return project as unknown as ProjectSettings;
}

// --- the program -------------------------------------------------------------------------------

/** ts-node in transpile-only mode (a type-checking instance, e.g. from the ts-node CLI, is swapped out). */
export function registerTsNode(): void {
    type Service = { enabled(v?: boolean): boolean; options: { transpileOnly?: boolean } };
    const key = Symbol.for("ts-node.register.instance");
    const current = (process as unknown as Record<symbol, Service | undefined>)[key];
    if (current?.options.transpileOnly && current.enabled()) return;
    current?.enabled(false);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    (require("ts-node") as { register(o: object): Service }).register({ transpileOnly: true, project: path.join(REPO, "tsconfig.json") });
}

/** Runs the --dns-hook command with the records on stdin; its output goes to stderr. */
function runDnsHook(hook: string, records: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
        const t0 = Date.now();
        const p = childProcess.spawn("bash", ["-c", hook], { stdio: ["pipe", "inherit", "inherit"] });
        p.on("error", reject);
        p.on("close", (code) => {
            if (code === 0) {
                log(`dns hook: ${Array.isArray(records) ? records.length : "?"} records loaded in ${since(t0)}`);
                resolve();
            } else reject(new Error(`--dns-hook '${hook}' exited with status ${code}`));
        });
        // A hook that exits without reading its input must fail as itself, not as an EPIPE.
        p.stdin.on("error", () => undefined);
        p.stdin.end(JSON.stringify(records));
    });
}

/**
 * The inline program: what index.ts runs (config, preflight, buildChat), with @pulumi/command,
 * @pulumi/digitalocean and @pulumi/cloudflare replaced by the stand-ins; its outputs become the stack
 * outputs. With a DNS hook, every step waits for the hook (see commandShim's gate).
 */
function makeProgram(dnsHook?: string, programDir: string = REPO): () => Promise<Record<string, unknown>> {
    return async () => {
        // The stand-ins first: the program's modules bind the provider modules when they are loaded.
        installCommandShim(REPO);
        // @pulumi/digitalocean and @pulumi/cloudflare: dynamic-provider stand-ins acting on the testbed.
        installCloudShims(REPO);
        registerTsNode();
        let open: () => void = () => undefined;
        let fail: (e: unknown) => void = () => undefined;
        const gate = () => setCommandGate(dnsHook ? new Promise<void>((res, rej) => ((open = res), (fail = rej))) : undefined);
        const hook = (records: { apply(f: (v: unknown) => Promise<void>): unknown } | undefined) => {
            if (!dnsHook) return;
            if (!records?.apply) throw new Error("--dns-hook: the program exports no dnsRecords output");
            records.apply(async (v) => {
                try {
                    await runDnsHook(dnsHook, v);
                    open();
                } catch (e) {
                    fail(e);
                    throw e;
                }
            });
        };
        /* eslint-disable @typescript-eslint/no-require-imports */
        if (!fs.existsSync(path.join(programDir, "components", "chatService.ts"))) {
            // A checkout from before buildChat (the upgrade check's "last landed" program): it
            // declared everything when index.ts was loaded, and its exports are the outputs.
            gate();
            try {
                const mod = require(path.join(programDir, "index.ts")) as Record<string, unknown>;
                hook(mod.dnsRecords as Parameters<typeof hook>[0]);
                return Object.fromEntries(Object.entries(mod).filter(([k]) => k !== "__esModule"));
            } finally {
                setCommandGate(undefined);
            }
        }
        const { loadConfig } = require(path.join(programDir, "components", "config")) as typeof import("../../components/config");
        const { preflight } = require(path.join(programDir, "components", "preflight")) as typeof import("../../components/preflight");
        const { buildChat } = require(path.join(programDir, "components", "chatService")) as typeof import("../../components/chatService");
        /* eslint-enable @typescript-eslint/no-require-imports */
        const cfg = loadConfig();
        const facts = await preflight(cfg);
        gate();
        try {
            const outputs = buildChat(cfg, facts);
            hook(outputs.dnsRecords);
            return { ...outputs };
        } finally {
            setCommandGate(undefined);
        }
    };
}

// --- config ------------------------------------------------------------------------------------

interface ConfigFile {
    config: Record<string, unknown>;
    secrets: Record<string, unknown>;
}

function readConfigFile(file: string): ConfigFile {
    const parsed = JSON.parse(fs.readFileSync(file, "utf8")) as Partial<ConfigFile>;
    const obj = (v: unknown, what: string) => {
        if (v === undefined) return {};
        if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error(`${file}: "${what}" must be an object`);
        return v as Record<string, unknown>;
    };
    const out = { config: obj(parsed.config, "config"), secrets: obj(parsed.secrets, "secrets") };
    for (const k of [...Object.keys(out.config), ...Object.keys(out.secrets)]) {
        if (k.includes(":")) throw new Error(`${file}: write key '${k}' without a namespace (it is ${PROJECT}:<key>)`);
        if (k in out.config && k in out.secrets) throw new Error(`${file}: '${k}' is in both config and secrets`);
    }
    return out;
}

const asText = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));

/**
 * Makes the stack's configuration exactly the file's. Strings, numbers and booleans are set with
 * setAllConfig (secrets with secret: true); lists and maps with setAllConfigJson as object values,
 * since the engine checks declared `type: array` keys against the stored value's type.
 */
async function applyConfig(stack: Stack, file: ConfigFile): Promise<void> {
    type Wanted = { value: string; secret: boolean; object: boolean };
    const wanted: Record<string, Wanted> = {};
    const add = (values: Record<string, unknown>, secret: boolean) => {
        for (const [k, v] of Object.entries(values)) wanted[`${PROJECT}:${k}`] = { value: asText(v), secret, object: v !== null && typeof v === "object" };
    };
    add(file.config, false);
    add(file.secrets, true);
    // What Pulumi.<stack>.yaml holds (getAllConfig also lists the Pulumi.yaml defaults).
    const onStack = new Set(Object.keys((await stack.workspace.stackSettings(stack.name).catch(() => undefined))?.config ?? {}));
    const current = await stack.getAllConfig();
    const stale = [...onStack].filter((k) => !(k in wanted));
    if (stale.length > 0) await stack.removeAllConfig(stale);
    const changed = Object.entries(wanted).filter(
        // (getAllConfig does not say whether a stored value is an object: objects are always set.)
        ([k, w]) => w.object || !onStack.has(k) || current[k]?.value !== w.value || Boolean(current[k]?.secret) !== w.secret,
    );
    const scalars = changed.filter(([, w]) => !w.object);
    const objects = changed.filter(([, w]) => w.object);
    if (scalars.length > 0) await stack.setAllConfig(Object.fromEntries(scalars.map(([k, w]) => [k, { value: w.value, secret: w.secret }])));
    if (objects.length > 0) {
        await stack.setAllConfigJson(
            JSON.stringify(Object.fromEntries(objects.map(([k, w]) => [k, { value: w.value, objectValue: JSON.parse(w.value), secret: w.secret }]))),
        );
    }
    log(`config: ${Object.keys(wanted).length} keys (${changed.length} set, ${stale.length} removed)`);
}

// --- output: streaming, secret guard, per-resource timings -------------------------------------

/** Streams the engine's output line by line, replacing any secret value of the config file. */
class Guard {
    private pending = "";
    readonly leaks = new Set<string>();
    private readonly needles: [string, string][] = [];

    constructor(file?: ConfigFile) {
        for (const [k, v] of Object.entries(file?.secrets ?? {})) {
            const text = asText(v);
            // The whole value, its JSON form, and every long line of a multi-line value (a key).
            const parts = [text, JSON.stringify(text).slice(1, -1), ...text.split("\n").map((l) => l.trim())];
            for (const p of parts) if (p.length >= 8 && !/^-----(BEGIN|END) /.test(p)) this.needles.push([p, k]);
        }
        this.needles.sort((a, b) => b[0].length - a[0].length);
    }

    scrub(text: string): string {
        for (const [needle, key] of this.needles) {
            if (text.includes(needle)) {
                this.leaks.add(key);
                text = text.split(needle).join(`[secret:${key}]`);
            }
        }
        return text;
    }

    readonly write = (chunk: string): void => {
        const lines = (this.pending + chunk).split("\n");
        this.pending = lines.pop() ?? "";
        if (lines.length > 0) process.stdout.write(this.scrub(lines.join("\n") + "\n"));
    };

    flush(): void {
        if (this.pending) process.stdout.write(this.scrub(this.pending) + "\n");
        this.pending = "";
    }
}

/**
 * Operations that change nothing: "same", and "read" (the program reads its own stack's last outputs
 * through a StackReference, components/preflight.ts; as `pulumi preview --expect-no-changes` does,
 * a read is not a change).
 */
const NOT_A_CHANGE = new Set(["same", "read"]);

interface StepTiming {
    urn: string;
    type: string;
    ops: string[];
    start: number;
    end?: number;
    failed?: boolean;
}

/** Records, from engine events, when each resource's step started and finished (ms since t0). */
class Timeline {
    readonly steps = new Map<string, StepTiming>();
    constructor(private readonly t0: number) {}

    readonly onEvent = (e: EngineEvent): void => {
        const now = Date.now() - this.t0;
        const meta = e.resourcePreEvent?.metadata ?? e.resOutputsEvent?.metadata ?? e.resOpFailedEvent?.metadata;
        if (!meta) return;
        const s = this.steps.get(meta.urn) ?? { urn: meta.urn, type: meta.type, ops: [], start: now };
        if (e.resourcePreEvent && !s.ops.includes(meta.op)) s.ops.push(meta.op);
        if (e.resOutputsEvent) s.end = now;
        if (e.resOpFailedEvent) s.failed = true;
        this.steps.set(meta.urn, s);
    };

    /**
     * The resources whose step is not "same". The dynamic provider's own default provider is left out:
     * it is handed the whole stack config, so any config edit shows it as "update" (reconfigured),
     * which the engine does not count as a resource change either.
     */
    changed(): StepTiming[] {
        return [...this.steps.values()].filter((s) => s.ops.some((op) => !NOT_A_CHANGE.has(op)) && !s.type.startsWith("pulumi:providers:"));
    }

    /** The changed resources with their step times; the program's components are only counted. */
    print(title: string): void {
        const changed = this.changed().filter((s) => !s.type.startsWith("pulumi:pulumi:Stack"));
        const components = changed.filter((s) => s.type.startsWith(`${PROJECT}:`));
        const rows = changed.filter((s) => !components.includes(s));
        if (changed.length === 0) return;
        log(`${title}${components.length > 0 ? ` (and ${components.length} of the program's components)` : ""}`);
        for (const s of rows.sort((a, b) => a.start - b.start)) {
            const name = s.urn.split("::").pop();
            const when = s.end === undefined ? `at ${(s.start / 1000).toFixed(1)}s` : `${(s.start / 1000).toFixed(1)}s -> ${(s.end / 1000).toFixed(1)}s`;
            log(`  ${s.ops.join("/").padEnd(12)} ${String(name).padEnd(26)} ${s.type.split(":").pop()} ${when}${s.failed ? " FAILED" : ""}`);
        }
    }

    save(file: string | undefined): void {
        if (file) fs.writeFileSync(file, JSON.stringify([...this.steps.values()], null, 2) + "\n");
    }
}

function summary(changes: OpMap | Record<string, number> | undefined): string {
    return JSON.stringify(changes ?? {});
}

/** The guard of this run, also used on the error path. */
let activeGuard: Guard | undefined;

// --- main --------------------------------------------------------------------------------------

async function main(): Promise<number> {
    const args = parseArgs(process.argv.slice(2));
    const tStart = Date.now();
    const file = args.config ? readConfigFile(args.config) : undefined;
    const guard = (activeGuard = new Guard(file));
    const engine = engineDir();
    const env = cliEnv(engine);
    // One workspace per stack, so two stacks can be deployed at once from the same state directory.
    const workDir = path.join(STATE_DIR, "work", args.stack);
    fs.mkdirSync(workDir, { recursive: true });
    const pulumiCommand = await PulumiCommand.get({ root: path.dirname(engine), skipVersionCheck: true });
    const stack = await LocalWorkspace.createOrSelectStack(
        { stackName: args.stack, projectName: PROJECT, program: makeProgram(args.dnsHook, args.program) },
        { workDir, envVars: env, pulumiCommand, projectSettings: projectSettings() },
    );
    log(`stack ${args.stack} (engine ${engine}, state ${STATE_DIR}) ready in ${since(tStart)}`);

    if (file) await applyConfig(stack, file);
    const t0 = Date.now();
    const timeline = new Timeline(t0);
    const streams = { onOutput: guard.write, onError: guard.write, onEvent: timeline.onEvent, color: "never" as const };
    let code = 0;

    switch (args.op) {
        case "up": {
            try {
                const r = await stack.up(streams);
                guard.flush();
                timeline.print("changed:");
                log(`up: ${r.summary.result} in ${since(t0)}; changes ${summary(r.summary.resourceChanges)}`);
            } catch (e) {
                guard.flush();
                timeline.print(`up FAILED after ${since(t0)}; steps so far:`);
                throw e;
            } finally {
                guard.flush();
                timeline.save(args.events);
            }
            break;
        }
        case "preview": {
            try {
                const r = await stack.preview(streams);
                guard.flush();
                timeline.print("would change:");
                const changed = Object.entries(r.changeSummary).filter(([op, n]) => !NOT_A_CHANGE.has(op) && n > 0);
                log(`preview: ${since(t0)}; changes ${summary(r.changeSummary)}`);
                if (args.forbidReplace) {
                    // An existing stack must not notice a new version of the program: nothing replaced,
                    // nothing deleted (creates and in-place updates are fine).
                    const bad = timeline.changed().filter((s) => s.ops.some((op) => /replace|delete|discard/i.test(op)));
                    for (const s of bad) log(`would ${s.ops.join("/")}: ${s.urn}`);
                    if (bad.length > 0) {
                        log(`FAILED: ${bad.length} resource(s) would be replaced or deleted`);
                        code = 1;
                    } else log("no resource would be replaced or deleted");
                }
                if (args.expectNoChanges && changed.length > 0) {
                    log(`expected no changes, found: ${changed.map(([op, n]) => `${n} ${op}`).join(", ")}`);
                    code = 1;
                }
            } finally {
                guard.flush();
                timeline.save(args.events);
            }
            break;
        }
        case "outputs": {
            const outs = await stack.outputs();
            log(`outputs: ${since(t0)}`);
            printOutputs(outs, args.showSecrets);
            break;
        }
        case "destroy": {
            log("note: destroy runs the steps' delete commands and deletes the stack's cloud resources (with the DigitalOcean stand-in: its guests and, unless protected, volumes); with hosting existing it changes nothing on the server");
            const r = await stack.destroy(streams);
            guard.flush();
            log(`destroy: ${r.summary.result} in ${since(t0)}; changes ${summary(r.summary.resourceChanges)}`);
            break;
        }
        case "forget": {
            // The stack's state and config go, whatever it holds (`pulumi stack rm --force`): for
            // testbed.sh down --wipe-data, after the guests, volumes and zones it describes are gone.
            await stack.workspace.removeStack(stack.name, { force: true });
            fs.rmSync(workDir, { recursive: true, force: true });
            log(`forget: stack ${args.stack} removed in ${since(t0)}`);
            break;
        }
        case "export": {
            // Not stack.exportStack(): the Automation API always exports with --show-secrets.
            const argv = ["stack", "export", "--stack", args.stack, "--non-interactive", ...(args.showSecrets ? ["--show-secrets"] : [])];
            const r = childProcess.spawnSync(pulumiCommand.command, argv, { cwd: workDir, env: { ...process.env, ...env }, encoding: "utf8", maxBuffer: 1 << 30 });
            if (r.status !== 0) throw new Error(`pulumi stack export failed (exit ${r.status}):\n${r.stderr}`);
            log(`export: ${since(t0)}`);
            process.stdout.write(r.stdout.endsWith("\n") ? r.stdout : r.stdout + "\n");
            break;
        }
    }
    if (guard.leaks.size > 0) {
        log(`SECRET LEAK: the engine output contained the value of ${[...guard.leaks].join(", ")} (replaced above)`);
        code = 3;
    }
    log(`${args.op} wall time ${process.uptime().toFixed(1)}s (whole process; ${since(tStart)} after ts-node had loaded deploy.ts)`);
    return code;
}

/** The stack outputs as JSON on stdout; secret ones as "[secret]" unless showSecrets. */
function printOutputs(outs: Record<string, { value: unknown; secret: boolean }>, showSecrets: boolean): void {
    const shown = Object.fromEntries(Object.entries(outs).map(([k, o]) => [k, o.secret && !showSecrets ? "[secret]" : o.value]));
    process.stdout.write(JSON.stringify(shown, null, 2) + "\n");
}

/**
 * process.exit() once stdout has taken everything written to it: on a pipe, process.exit() cuts off
 * what is still queued (`deploy.ts export | wc -c` gave 131072 of 1164134 bytes).
 */
function exitAfterOutput(code: number): void {
    process.stdout.write("", () => process.exit(code));
}

// (Only when run as a script: cloudSelftest.ts imports the helpers above.)
if (require.main === module) main().then(
    (code) => exitAfterOutput(code),
    (e: unknown) => {
        if (e instanceof UsageError) {
            log(e.message);
            process.stderr.write(USAGE + "\n");
            process.exit(64);
        }
        // A CommandError carries the CLI's whole output, already streamed above: repeat its error lines.
        activeGuard?.flush();
        const message = e instanceof Error ? e.message : String(e);
        const isCommandError = message.startsWith("code: ") && message.includes("\n stderr: ");
        const errors = [...new Set(message.split("\n").filter((l) => /^\s*error: /.test(l)).map((l) => l.trim()))];
        const raw = isCommandError ? (errors.length > 0 ? errors.slice(0, 10).join("\n") : "(see the output above)") : message;
        log(`FAILED: ${activeGuard ? activeGuard.scrub(raw) : raw}`);
        process.exit(activeGuard && activeGuard.leaks.size > 0 ? 3 : 2);
    },
);
