// Synapse's worker mode (synapseWorkers > 0, issue 14): Redis and the workers. Two steps, declared
// only in worker mode, so a stack without workers has exactly the resources it had:
//   - `redis`, before the synapse step (the main process needs Redis once homeserver.yaml names it):
//     Debian's redis-server on the loopback addresses with a password and nothing on disk, Synapse's
//     Redis client libraries, the replication and Redis secrets (made on the server, never in the
//     stack) and the main unit's drop-in;
//   - `synapse-workers`, after the synapse step: each worker's configuration and its unit instance,
//     started and checked healthy. nginx routes to them afterwards (workerRoutes.ts).
// Each step's `teardown` undoes it when synapseWorkers goes back to 0 (the steps leave the program):
// units stopped and removed, Redis stopped and its configuration removed. No data is touched.
import * as pulumi from "@pulumi/pulumi";
import type { SynapseSettings } from "./config";
import { Target } from "./host";
import { PORTS, SERVER_PATHS } from "./layout";
import { RemoteStep, ServerFile } from "./remoteStep";
import { allocatorLines, logConfig, toYaml } from "./synapse";
import { renderTemplate } from "./templates";
import { SynapseWorker, workerPaths } from "./workerLayout";

/** Where Redis's configuration, and the drop-ins, live. */
export const REDIS_PATHS = {
    config: "/etc/phillymesh-chat/redis.conf",
    /** `requirepass`, written on the server (root:redis 0640) from the same password Synapse reads. */
    auth: "/etc/phillymesh-chat/redis-auth.conf",
    dropIn: "/etc/systemd/system/redis-server.service.d/phillymesh-chat.conf",
    synapseDropIn: "/etc/systemd/system/matrix-synapse.service.d/phillymesh-chat-workers.conf",
} as const;

export const WORKER_UNIT = "/etc/systemd/system/matrix-synapse-worker@.service";

/** The daily status check's drop-in that names Redis and the workers for it to check (statusCheck.ts). */
export const STATUS_WORKERS_DROP_IN = "/etc/systemd/system/phillymesh-chat-status.service.d/phillymesh-chat-workers.conf";

/**
 * That drop-in: the workers as "name:port" ("-" for none) and Redis's port, in the check's
 * environment. It comes and goes with the workers, so the check itself (installed by the
 * certificates step) is the same with and without them.
 */
export function statusWorkersDropIn(workers: readonly SynapseWorker[]): string {
    const list = workers.map((w) => `${w.name}:${w.port ?? "-"}`).join(" ");
    return [
        "# Managed by phillymesh-chat (synapseWorkers): the daily status check also checks Redis and each worker.",
        "[Service]",
        `Environment="STATUS_WORKERS=${list}" STATUS_REDIS_PORT=${PORTS.redis}`,
    ].join("\n");
}

/**
 * redis.conf, from an object: Synapse's replication pub/sub and its shared cache only. Loopback only
 * (and protected mode), a password, no RDB snapshots and no append-only file (nothing in it needs to
 * outlive a restart), a memory ceiling with LRU eviction for the cache.
 */
export function redisConfig(): string {
    const settings: [string, string][] = [
        ["bind", "127.0.0.1 -::1"],
        ["protected-mode", "yes"],
        ["port", String(PORTS.redis)],
        ["databases", "1"],
        ["save", '""'],
        ["appendonly", "no"],
        ["dir", "/var/lib/redis"],
        ["maxmemory", "64mb"],
        ["maxmemory-policy", "allkeys-lru"],
        ["loglevel", "notice"],
        ["logfile", '""'],
        ["include", REDIS_PATHS.auth],
    ];
    return [
        "# Managed by phillymesh-chat: Redis for Synapse's workers (synapseWorkers). Loopback only, a password",
        "# (the included file, made on the server), nothing written to disk.",
        ...settings.map(([k, v]) => `${k} ${v}`),
    ].join("\n");
}

/** One worker's configuration file (docs/systemd-with-workers/workers/*.yaml), read after homeserver.yaml and conf.d/. */
export function workerConfig(w: SynapseWorker): Record<string, unknown> {
    const listener = (names: string[]) => [
        { type: "http", port: w.port, bind_addresses: ["127.0.0.1"], x_forwarded: true, resources: [{ names, compress: false }] },
    ];
    return {
        worker_app: "synapse.app.generic_worker",
        worker_name: w.name,
        ...(w.kind === "generic" ? { worker_listeners: listener(["client", "federation"]) } : {}),
        // The shared configuration turns the media repository off for the main process; this worker has it.
        ...(w.kind === "media" ? { worker_listeners: listener(["media"]), enable_media_repo: true } : {}),
        worker_log_config: workerPaths.logConfig(w.name),
    };
}

/** The unit template every worker runs from: matrix-synapse-worker@<name>.service. */
export function workerUnit(dataDir: string, s: Pick<SynapseSettings, "jemalloc">): string {
    return renderTemplate("server/systemd/matrix-synapse-worker@.service", {
        workers_dir: SERVER_PATHS.synapseWorkersDir,
        data_dir: dataDir,
        allocator: allocatorLines(s),
        redis_lib: SERVER_PATHS.synapseRedisLib,
        venv: SERVER_PATHS.synapseCurrent,
        config_dir: SERVER_PATHS.synapseConfigDir,
    });
}

const root = (path: string, content: string): ServerFile => ({ path, content, mode: "0644", owner: "root:root" });

/** What the redis step installs (its secrets it makes on the server). */
export function redisFiles(): ServerFile[] {
    return [
        root(REDIS_PATHS.config, redisConfig()),
        root(REDIS_PATHS.dropIn, renderTemplate("server/systemd/redis-server.conf", { redis_conf: REDIS_PATHS.config })),
        root(REDIS_PATHS.synapseDropIn, renderTemplate("server/systemd/synapse-workers.conf", { redis_lib: SERVER_PATHS.synapseRedisLib })),
    ];
}

/** What the synapse-workers step installs: the unit template, and each worker's configuration and logging. */
export function workerFiles(dataDir: string, s: Pick<SynapseSettings, "jemalloc" | "logBackupCount">, workers: readonly SynapseWorker[]): ServerFile[] {
    return [
        root(WORKER_UNIT, workerUnit(dataDir, s)),
        ...workers.flatMap((w): ServerFile[] => [
            { path: workerPaths.config(w.name), content: toYaml(workerConfig(w)), mode: "0640", owner: "root:synapse" },
            root(workerPaths.logConfig(w.name), toYaml(logConfig(s, `${w.name}.log`))),
        ]),
        root(STATUS_WORKERS_DROP_IN, statusWorkersDropIn(workers)),
    ];
}

export interface WorkerRedisArgs {
    readonly target: Target;
    readonly dataDir: string;
    /** Where Synapse's Redis client libraries come from (pipIndexUrl). */
    readonly pipIndexUrl: string;
}

/** Redis and what the main process needs to use it; ready before the synapse step. */
export class WorkerRedis extends pulumi.ComponentResource {
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: WorkerRedisArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:WorkerRedis", name, {}, opts);
        const step = new RemoteStep(
            `${name}-redis`,
            {
                target: args.target,
                script: "redis.sh",
                libraries: ["venv.sh"],
                env: { DATA_DIR: args.dataDir, PIP_INDEX_URL: args.pipIndexUrl },
                files: redisFiles(),
                teardown: { script: "redis-off.sh", env: {} },
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.ready = step.command;
        this.registerOutputs({});
    }
}

export interface SynapseWorkersArgs {
    readonly target: Target;
    readonly dataDir: string;
    readonly synapse: Pick<SynapseSettings, "jemalloc" | "logBackupCount" | "version">;
    readonly workers: readonly SynapseWorker[];
}

/** The workers: configuration, units, started and healthy. After the synapse step. */
export class SynapseWorkers extends pulumi.ComponentResource {
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: SynapseWorkersArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:SynapseWorkers", name, {}, opts);
        const step = new RemoteStep(
            `${name}-synapse-workers`,
            {
                target: args.target,
                script: "synapse-workers.sh",
                // The worker removal both the step and its teardown do (not in lib.sh, sent with every step).
                libraries: ["workers.sh"],
                env: {
                    // A Synapse bump restarts the workers with the main process (PartOf): the step runs
                    // again after it and waits until each worker answers on the new release.
                    SYNAPSE_VERSION: args.synapse.version,
                    WORKERS: args.workers.map((w) => w.name).join(" "),
                    // Where each worker answers /health ("-" for the federation sender, which has no listener).
                    WORKER_PORTS: args.workers.map((w) => (w.port === undefined ? "-" : String(w.port))).join(" "),
                },
                files: workerFiles(args.dataDir, args.synapse, args.workers),
                teardown: { script: "synapse-workers-off.sh", env: {}, libraries: ["workers.sh"] },
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.ready = step.command;
        this.registerOutputs({});
    }
}
