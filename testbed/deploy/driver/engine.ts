// deploy.ts's engine and its environment: where the repository, the state and the Pulumi CLI are, the
// environment the CLI runs in, the project settings, and the log lines on stderr.
//
// Environment: PHILLYMESH_TESTBED_STATE (default /var/tmp/phillymesh-testbed/state: the file
// backend in backend/, PULUMI_HOME in home/, and per stack a workspace work/<stack>/ holding a copy
// of Pulumi.yaml and Pulumi.<stack>.yaml with the encrypted config), PULUMI_CONFIG_PASSPHRASE
// (default a fixed testbed passphrase), PULUMI_ENGINE_DIR (default: `scripts/engine.sh --partial`).
import * as childProcess from "child_process";
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";
import { ProjectSettings } from "@pulumi/pulumi/automation";

export const REPO = path.resolve(__dirname, "..", "..", "..");
export const PROJECT = "phillymesh-chat";
export const STATE_DIR = path.resolve(process.env.PHILLYMESH_TESTBED_STATE || "/var/tmp/phillymesh-testbed/state");
const PASSPHRASE = process.env.PULUMI_CONFIG_PASSPHRASE || "phillymesh-testbed-passphrase (not a secret)";

export function log(msg: string): void {
    process.stderr.write(`deploy.ts: ${msg}\n`);
}

/** Seconds since `t0`, for the timing lines. */
export function since(t0: number): string {
    return `${((Date.now() - t0) / 1000).toFixed(1)}s`;
}

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
export function projectSettings(): ProjectSettings {
    const project = yaml.load(fs.readFileSync(path.join(REPO, "Pulumi.yaml"), "utf8")) as Record<string, unknown>;
    if (project.name !== PROJECT) throw new Error(`Pulumi.yaml names project '${String(project.name)}', expected ${PROJECT}`);
    return project as unknown as ProjectSettings;
}
