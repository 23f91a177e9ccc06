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
 * Autovacuum for Synapse on a small disk (PostgreSQL 17 docs, 24.1.6 "The Autovacuum Daemon" and
 * 19.10 "Automatic Vacuuming"). A table is vacuumed once its dead rows pass
 * autovacuum_vacuum_threshold (50) + autovacuum_vacuum_scale_factor x its rows; the default factor
 * 0.2 lets Synapse's big tables carry a fifth of dead rows before their space is reused, which a
 * 10 GB volume feels. 0.05 keeps that to a twentieth. Synapse's largest tables (events, event_json,
 * state_groups_state) are append-mostly: the insert trigger (PostgreSQL 13+, default factor 0.2)
 * at 0.05 keeps their visibility maps current (index-only scans) and freezes them in small steps
 * rather than in one long anti-wraparound vacuum. Statistics follow at 0.02 so the planner sees
 * rooms that grew overnight. All reloadable (sighup): no restart. The busiest tables get their own
 * (housekeeping.ts: HOT_TABLES), once Synapse has made them.
 */
export function autovacuumSettings(): string[] {
    return [
        "# Autovacuum for Synapse's write pattern on a small disk (postgres.ts: autovacuumSettings).",
        "autovacuum = on",
        "autovacuum_vacuum_scale_factor = 0.05",
        "autovacuum_vacuum_insert_scale_factor = 0.05",
        "autovacuum_analyze_scale_factor = 0.02",
    ];
}

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
export function postgresTuning(s: Omit<PostgresSettings, "password" | "diskReserveMb">): string {
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
        ...autovacuumSettings(),
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
                libraries: ["disk-reserve.sh"],
                handlesSecrets: true,
                env: {
                    DATA_DIR: args.dataDir,
                    PG_PASSWORD: s.password,
                    PG_TUNING: POSTGRES_TUNING_PATH,
                    PG_OOM_DROP_IN: POSTGRES_OOM_DROP_IN,
                    // Room on the data volume kept back for the database (files/lib/disk-reserve.sh).
                    PG_DISK_RESERVE_MB: String(s.diskReserveMb),
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
