// testbed/deploy/deploy.ts from another program (the drills, the benchmark): its ops run through
// run.ts with the repository's tools on PATH, the plan summary it prints read back, and a stack's
// server waited for until it answers. Plain Node ES module (type stripping).
import * as path from "node:path";
import type { TestbedHttp } from "./http.ts";
import { REPO, childEnv } from "./paths.ts";
import { mustRunProcess, runProcess, type RunOptions, type RunResult } from "./run.ts";
import { waitFor } from "./wait.ts";

export type DeployOp = "up" | "preview" | "outputs" | "export" | "destroy" | "forget";

/** The driver, relative to the repository (run with ts-node --transpile-only, as testbed.sh does). */
export const DEPLOY_SCRIPT = "testbed/deploy/deploy.ts";

export interface DeployOptions extends Pick<RunOptions, "onLine" | "signal" | "killGraceMs"> {
    /** Default 15 minutes. */
    timeoutMs?: number;
    /** Extra environment (PATH, TESTBED_DIR come from paths.ts's childEnv). */
    env?: NodeJS.ProcessEnv;
    /** PULUMI_ENGINE_DIR for the driver (default: what the environment has, else the driver finds it). */
    engineDir?: string;
}

export interface DeployResult extends RunResult {
    /** The engine's resourceChanges / changeSummary as the driver prints it ({} when it printed none). */
    changes: Record<string, number>;
    /** Resources whose op is not "same". */
    changed: number;
}

/** The command line of `deploy.ts OP --stack STACK ARGS...` (run in REPO with childEnv()'s PATH). */
export function deployCommand(op: DeployOp, stack: string, args: string[] = []): [string, string[]] {
    return ["ts-node", ["--transpile-only", DEPLOY_SCRIPT, op, "--stack", stack, ...args]];
}

/** `deploy.ts OP --stack STACK ARGS...`; resolves whatever its exit (see `code`). */
export async function deploy(op: DeployOp, stack: string, args: string[] = [], opts: DeployOptions = {}): Promise<DeployResult> {
    const env = childEnv({ ...(opts.engineDir ? { PULUMI_ENGINE_DIR: opts.engineDir } : {}), ...opts.env });
    const [cmd, argv] = deployCommand(op, stack, args);
    const r = await runProcess(cmd, argv, {
        cwd: REPO,
        env,
        timeoutMs: opts.timeoutMs ?? 15 * 60_000,
        killGraceMs: opts.killGraceMs,
        onLine: opts.onLine,
        signal: opts.signal,
    });
    const changes = planChanges(r.stderr);
    const changed = Object.entries(changes)
        .filter(([o]) => o !== "same")
        .reduce((a, [, n]) => a + n, 0);
    return { ...r, changes, changed };
}

/** The changes in the driver's "up: ... ; changes {...}" / "preview: ...; changes {...}" line. */
export function planChanges(stderr: string): Record<string, number> {
    const m = /deploy\.ts: (?:up: \S+ in [\d.]+s|preview: [\d.]+s); changes (\{.*\})/.exec(stderr);
    return m ? (JSON.parse(m[1]) as Record<string, number>) : {};
}

/**
 * The arguments of an `up` with a config file; with dnsHook (a stack with dns none), the program's
 * DNS records go into the testbed DNS server as record set STACK, as testbed.sh does.
 */
export function upArgs(stack: string, configFile: string, opts: { dnsHook?: boolean } = {}): string[] {
    const hook = opts.dnsHook ? ["--dns-hook", `bash ${path.join(REPO, "testbed", "dns-load.sh")} - ${stack}`] : [];
    return ["--config", configFile, ...hook];
}

/** The stack's outputs (deploy.ts outputs), secrets shown as "[secret]". */
export async function stackOutputs(stack: string, opts: DeployOptions = {}): Promise<Record<string, unknown>> {
    const r = await deploy("outputs", stack, [], { timeoutMs: 180_000, ...opts });
    if (r.code !== 0) throw new Error(`deploy.ts outputs --stack ${stack}: exit ${r.code}:\n${r.tail.join("\n")}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
}

let engine: Promise<string> | undefined;
/** scripts/engine.sh --partial's answer, asked once per process (the driver would ask every run). */
export function pulumiEngineDir(): Promise<string> {
    engine ??= mustRunProcess("bash", [path.join(REPO, "scripts", "engine.sh"), "--partial"], { cwd: REPO, env: childEnv() }).then(
        (r) => r.stdout.trim().split("\n").pop() ?? "",
        (e: unknown) => {
            engine = undefined; // asked again next time
            throw e;
        },
    );
    return engine;
}

/** The server of DOMAIN answers: the client API through nginx and the federation key endpoint on :8448. */
export async function healthy(http: TestbedHttp, domain: string): Promise<boolean> {
    try {
        const v = await http.request(`https://matrix.${domain}/_matrix/client/versions`, { timeoutMs: 10_000 });
        const k = await http.request(`https://${domain}:8448/_matrix/key/v2/server`, { timeoutMs: 10_000 });
        return v.status === 200 && k.status === 200;
    } catch {
        return false;
    }
}

/** Waits until healthy(); an Error naming the server after timeoutMs (default 60 s). */
export async function waitHealthy(http: TestbedHttp, domain: string, timeoutMs = 60_000): Promise<void> {
    await waitFor(`${domain} answering`, () => healthy(http, domain), { timeoutMs, intervalMs: 1000 });
}
