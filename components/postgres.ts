// PostgreSQL for Synapse: the distribution's server, cluster on the data volume, localhost only.
import * as pulumi from "@pulumi/pulumi";
import type { PostgresSettings } from "./config";
import { Target } from "./host";
import { RemoteStep } from "./remoteStep";

/** Our settings, outside the cluster's own directories; the step copies them to conf.d/50-phillymesh-chat.conf. */
export const POSTGRES_TUNING_PATH = "/etc/phillymesh-chat/postgresql.conf";
/** The cluster units' drop-in (postgresql@<version>-main.service): its OOM priority and its restarts. */
export const POSTGRES_OOM_DROP_IN = "/etc/systemd/system/postgresql@.service.d/50-phillymesh-chat.conf";

/**
 * The cluster unit's drop-in. Debian's unit restarts nothing: a postmaster killed (SIGKILL, the
 * kernel's OOM killer) or stopped by a failed start on a full disk stayed down until an admin came
 * (drills 23 and 24 found it so). And systemd's default OOMPolicy=stop would stop the whole cluster
 * when the kernel kills one backend, where PostgreSQL resets its backends and carries on by itself.
 */
export function postgresUnitDropIn(): string {
    return [
        "# Managed by phillymesh-chat.",
        "[Service]",
        "# When memory runs out, the kernel kills Synapse (it restarts) before the database.",
        "OOMScoreAdjust=-500",
        "# A killed backend: the postmaster recovers by itself; systemd leaves the cluster running.",
        "OOMPolicy=continue",
        "# The postmaster itself killed, or a start that failed (the disk full): try again until it runs.",
        "Restart=on-failure",
        "RestartSec=5s",
    ].join("\n");
}

/** The settings file: sized for a 1 GB server that also runs Synapse. */
export function postgresTuning(s: Omit<PostgresSettings, "password">): string {
    const lines = [
        "# Managed by phillymesh-chat: sized for a 1 GB server that also runs Synapse.",
        "listen_addresses = 'localhost'",
        `max_connections = ${s.maxConnections}`,
        `shared_buffers = ${s.sharedBuffersMb}MB`,
        `work_mem = ${s.workMemMb}MB`,
        "maintenance_work_mem = 32MB",
        "effective_cache_size = 256MB",
        "wal_buffers = 4MB",
        "max_wal_size = 512MB",
        "min_wal_size = 64MB",
        "checkpoint_completion_target = 0.9",
        "random_page_cost = 1.1",
        "password_encryption = scram-sha-256",
    ];
    if (s.lowMemory) {
        // No replication, no parallel query workers, no JIT (LLVM in a backend costs tens of MB): on
        // one vCPU and 1 GB they only cost memory. wal_level minimal is what having no replicas allows.
        lines.push(
            "wal_level = minimal",
            "max_wal_senders = 0",
            "max_logical_replication_workers = 0",
            "max_parallel_workers_per_gather = 0",
            "max_parallel_maintenance_workers = 0",
            "jit = off",
            "autovacuum_max_workers = 2",
        );
    }
    return lines.join("\n");
}

export interface PostgresArgs {
    readonly target: Target;
    readonly dataDir: string;
    readonly settings: PostgresSettings;
}

export class Postgres extends pulumi.ComponentResource {
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: PostgresArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:Postgres", name, {}, opts);
        const s = args.settings;
        const step = new RemoteStep(
            `${name}-postgres`,
            {
                target: args.target,
                script: "postgres.sh",
                handlesSecrets: true,
                env: {
                    DATA_DIR: args.dataDir,
                    PG_PASSWORD: s.password,
                    PG_TUNING: POSTGRES_TUNING_PATH,
                    PG_OOM_DROP_IN: POSTGRES_OOM_DROP_IN,
                },
                files: [
                    { path: POSTGRES_TUNING_PATH, content: postgresTuning(s), mode: "0644", owner: "root:root" },
                    // Who the kernel kills first, and PostgreSQL back by itself after a kill or a full disk.
                    { path: POSTGRES_OOM_DROP_IN, content: postgresUnitDropIn(), mode: "0644", owner: "root:root" },
                ],
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.ready = step.command;
        this.registerOutputs({});
    }
}
