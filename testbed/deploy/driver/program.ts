// deploy.ts's inline program: what index.ts runs (config, preflight, buildChat) with the providers
// replaced by the testbed's stand-ins, hosted in this process and driven by the CLI; and the
// --dns-hook that loads the program's dnsRecords into the testbed DNS before any step starts.
import * as childProcess from "child_process";
import * as fs from "fs";
import * as path from "path";
import { installCloudShims } from "../cloudShims";
import { installCommandShim, setCommandGate } from "../commandShim";
import { networkProbe, Probe } from "../../../components/health/probe";
import { log, REPO, since, STATE_DIR } from "./engine";

/**
 * The health checks' view of the testbed, as a client on its network has it: names from the
 * testbed's DNS server (10.250.0.1), certificates from its ACME server trusted (every root pebble
 * has had). The checks themselves are the program's, unchanged.
 */
function testbedProbe(): Probe {
    const pebble = path.join(process.env.TESTBED_DIR || path.dirname(STATE_DIR), "pebble");
    const roots = ["roots.pem", "roots-all.pem"].map((f) => path.join(pebble, f)).filter((f) => fs.existsSync(f));
    return networkProbe({ dnsServers: ["10.250.0.1"], extraRoots: roots.map((f) => fs.readFileSync(f, "utf8")) });
}

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
export function makeProgram(dnsHook?: string, programDir: string = REPO): () => Promise<Record<string, unknown>> {
    return async () => {
        // The stand-ins first: the program's modules bind the provider modules when they are loaded.
        installCommandShim(REPO);
        // @pulumi/digitalocean and @pulumi/cloudflare: dynamic-provider stand-ins acting on the testbed.
        installCloudShims(REPO);
        registerTsNode();
        let open: () => void = () => undefined;
        let fail: (e: unknown) => void = () => undefined;
        const gate = () => {
            if (!dnsHook) return setCommandGate(undefined);
            const p = new Promise<void>((res, rej) => ((open = res), (fail = rej)));
            // Each step that waits on it sees a failure; the gate itself is not an unhandled rejection.
            p.catch(() => undefined);
            setCommandGate(p);
        };
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
        const { loadConfig } = require(path.join(programDir, "components", "config")) as typeof import("../../../components/config");
        const { preflight } = require(path.join(programDir, "components", "preflight")) as typeof import("../../../components/preflight");
        const { buildChat } = require(path.join(programDir, "components", "chatService")) as typeof import("../../../components/chatService");
        /* eslint-enable @typescript-eslint/no-require-imports */
        const cfg = loadConfig();
        const facts = await preflight(cfg);
        gate();
        try {
            const outputs = buildChat(cfg, facts, "chat", testbedProbe());
            hook(outputs.dnsRecords);
            return { ...outputs };
        } catch (e) {
            // Steps declared before the failure wait on the gate: let them fail too, or the engine
            // would wait for them for ever.
            fail(e);
            throw e;
        } finally {
            setCommandGate(undefined);
        }
    };
}
