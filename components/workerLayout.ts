// Synapse's worker mode (synapseWorkers, issue 14): which processes run, where they listen, and what
// the main process's shared configuration gains. Pure data from layout.ts, used by synapse.ts (the
// shared homeserver.yaml), synapseWorkers.ts (the workers, Redis) and workerRoutes.ts (nginx).
// With synapseWorkers 0 none of this reaches the server: the single process stays as it was.
import { PORTS, SERVER_PATHS } from "./layout";

/** What a worker does: Synapse's documented layout for a growing server (docs/workers.md). */
export type WorkerKind = "generic" | "federation_sender" | "media";

export interface SynapseWorker {
    /** Its worker_name (also the systemd instance: matrix-synapse-worker@<name>). */
    readonly name: string;
    readonly kind: WorkerKind;
    /** Its HTTP listener on 127.0.0.1 (the federation sender has none). */
    readonly port?: number;
}

/** The federation sender's and the media worker's names (in homeserver.yaml too). */
export const FEDERATION_SENDER = "federation_sender1";
export const MEDIA_WORKER = "media_worker1";

/** The workers for synapseWorkers = count: none for 0; else `count` generic workers, a federation sender, a media worker. */
export function workerLayout(count: number): SynapseWorker[] {
    if (count <= 0) return [];
    const generic = Array.from({ length: count }, (_, i) => ({
        name: `generic_worker${i + 1}`,
        kind: "generic" as const,
        port: PORTS.synapseMediaWorker + i + 1,
    }));
    return [...generic, { name: FEDERATION_SENDER, kind: "federation_sender" }, { name: MEDIA_WORKER, kind: "media", port: PORTS.synapseMediaWorker }];
}

/** Where a worker's configuration, and the shared secrets, live on the server. */
export const workerPaths = {
    config: (name: string) => `${SERVER_PATHS.synapseWorkersDir}/${name}.yaml`,
    logConfig: (name: string) => `${SERVER_PATHS.synapseWorkersDir}/${name}.log.yaml`,
    /** Written once on the server by the redis step (never in the stack). */
    replicationSecret: `${SERVER_PATHS.synapseWorkersDir}/replication_secret`,
    redisPassword: `${SERVER_PATHS.synapseWorkersDir}/redis_password`,
};

/** The replication listener the main process adds (127.0.0.1 only; the host firewall shuts it out anyway). */
export const replicationListener = {
    port: PORTS.synapseReplication,
    tls: false,
    type: "http",
    bind_addresses: ["127.0.0.1"],
    resources: [{ names: ["replication"], compress: false }],
} as const;

/**
 * What the shared configuration gains in worker mode (docs/workers.md, "Shared configuration"): Redis,
 * the instance map with the main process's replication listener, the replication secret, outbound
 * federation on the federation sender, media on the media worker (which runs the media background
 * jobs). Stream writers stay on the main process.
 */
export function mainWorkerSettings(workers: readonly SynapseWorker[]): Record<string, unknown> {
    if (workers.length === 0) return {};
    return {
        redis: { enabled: true, host: "127.0.0.1", port: PORTS.redis, password_path: workerPaths.redisPassword },
        instance_map: { main: { host: "127.0.0.1", port: PORTS.synapseReplication } },
        worker_replication_secret_path: workerPaths.replicationSecret,
        federation_sender_instances: workers.filter((w) => w.kind === "federation_sender").map((w) => w.name),
        enable_media_repo: false,
        media_instance_running_background_jobs: MEDIA_WORKER,
    };
}
