// What keeps an ageing homeserver lean on a small disk (issue 12), besides Synapse's own retention
// settings (synapse.ts) and the autovacuum settings (postgres.ts): per-table autovacuum on Synapse's
// busiest tables, and the nightly database housekeeping unit (phillymesh-chat-db-housekeeping): a report of the database's size and
// largest tables to the journal, those busiest tables' indexes rebuilt online once doubled, and
// synapse_auto_compressor in bounded chunks at low priority.
//
// The report rides on the compressor's nightly unit rather than on the daily status check: the
// status check runs as a throwaway user with no database role (peer authentication needs the
// synapse user), in the evening rather than at night, and a report is no pass/fail check; the
// compressor's unit already runs nightly as synapse, and a report before and after its run is the
// proof that it works. With stateCompressor off the unit runs the report alone.
//
// With `database: managed` (issue 14) Synapse's tables are in the cluster and the local copy refuses
// the synapse role, so the unit reports on the cluster (libpq's service file, the synapse user's
// password as a systemd credential) and the step tunes the cluster's tables. The compressor is not
// run there: synapse_auto_compressor (rust-synapse-compress-state, src/database.rs,
// connect_to_database) connects with `builder.set_verify(SslVerifyMode::NONE)`, i.e. TLS that checks
// no certificate, so it would hand the synapse user's password to whoever answers for the cluster's
// address; it also echoes its connection string into its errors. It is skipped, and said so.
import * as pulumi from "@pulumi/pulumi";
import type { DatabaseSettings, HousekeepingSettings } from "./config";
import { Target } from "./host";
import { PORTS } from "./layout";
import { MANAGED_DB_CA_PATH, MANAGED_DB_PGPASS, MANAGED_DB_SERVICE_FILE } from "./managedDatabase";
import { RemoteStep, ServerFile } from "./remoteStep";
import { readFile, renderTemplate } from "./templates";

export const HOUSEKEEPING_UNIT = "phillymesh-chat-db-housekeeping";
/** Where the compressor's current virtualenv is (the step switches the link to a new release). */
export const COMPRESSOR_VENV = "/opt/synapse-auto-compressor/current";
/** The compressor's level sizes: upstream's default (its README, and Synapse's old built-in compressor). */
export const COMPRESSOR_LEVELS = "100,50,25";
/** One night's run ends within this (the unit's TimeoutStartSec), before the backup at 04:15. */
export const HOUSEKEEPING_TIMEOUT_SECONDS = 3600;

/**
 * Synapse's tables that shed rows all the time, vacuumed sooner still than postgres.ts's autovacuumSettings (2 % dead rows): the space
 * they free is what the next writes reuse, instead of growing the files. Vacuum does not give back their
 * indexes' emptied pages, though: with indexRebuild the nightly unit rebuilds them once doubled.
 *   state_groups_state   the compressor deletes and rewrites rows in bulk every night;
 *   event_push_actions   Synapse deletes notification rows as it rotates them into summaries;
 *   device_inbox         to-device messages (encryption keys) are deleted once delivered.
 */
export const HOT_TABLES: readonly string[] = ["state_groups_state", "event_push_actions", "device_inbox"];
export const HOT_TABLE_SETTINGS = { autovacuum_vacuum_scale_factor: 0.02, autovacuum_analyze_scale_factor: 0.01 } as const;

/** The SQL that sets HOT_TABLE_SETTINGS on each hot table Synapse has made (run as postgres locally, as synapse, their owner, on the cluster). */
export function tableSettingsSql(): string {
    const options = Object.entries(HOT_TABLE_SETTINGS)
        .map(([k, v]) => `${k} = ${v}`)
        .join(", ");
    const lines = HOT_TABLES.map((t) => `    IF to_regclass('public.${t}') IS NOT NULL THEN ALTER TABLE public.${t} SET (${options}); END IF;`);
    return ["DO $$", "BEGIN", ...lines, "END", "$$;"].join("\n");
}

/** Where the housekeeping finds Synapse's database: the local PostgreSQL (the default) or the cluster. */
export type HousekeepingDatabase = DatabaseSettings["kind"];

/**
 * The unit, rendered: its settings are checked numbers (config/index.ts), never free text. With the
 * database managed, the local unit with the lines that reach the cluster instead (managedUnitLines).
 */
export function housekeepingUnit(dataDir: string, h: HousekeepingSettings, database: HousekeepingDatabase = "local"): string {
    const local = localHousekeepingUnit(dataDir, h);
    return database === "managed" ? managedUnit(local, dataDir) : local;
}

/** A client certificate that does not exist (libpq then sends none; sslcertmode=disable needs libpq 16, Debian 12 has 15). */
export const NO_CLIENT_CERT = "/nonexistent/postgresql.crt";

/** The credential the unit gets the synapse user's passfile as (LoadCredential=). */
export const PGPASS_CREDENTIAL = "pgpass";

/**
 * What database: managed changes in the unit, line by line (every other line stays as in local mode).
 *  - the connection: libpq's service `synapse` (host, port, CA, verify-full), as the backups use it;
 *    the passfile it names is postgres's (0600), so the password comes as a credential, read by PID 1
 *    (root) and readable by this unit alone. libpq ignores a passfile that group or others may read,
 *    and systemd may grant the unit's user its credential by an ACL (which shows as group read), so
 *    the program copies it to a 0600 file in its private /tmp and names it with `passfile=`, which
 *    overrides the service file's.
 *    libpq also looks for a client certificate in the user's home (hidden here): sslcert names none.
 *  - the network: the cluster's address (a host name, resolved by DNS) over IPv4 or IPv6; still no
 *    link-local (the cloud's metadata service) or multicast.
 *  - the files: /etc/phillymesh-chat is an empty read-only directory but for the CA and the service
 *    file (the backup's passphrase and settings stay out of reach).
 */
export function managedUnitLines(dataDir: string): { from: string; to: string[] }[] {
    const hidden = `-${dataDir}/synapse -${dataDir}/backups -/etc/matrix-synapse -/etc/phillymesh-chat -/etc/ssh -/etc/letsencrypt`;
    return [
        {
            from: `Environment="HOUSEKEEPING_DB=host=/var/run/postgresql port=${PORTS.postgres} user=synapse dbname=synapse"`,
            to: [
                "# database managed (housekeeping.ts: managedUnitLines): Synapse's database is the cluster, reached through libpq's service",
                "# file (TLS verify-full against its CA) with the synapse user's passfile as a credential, not the socket described below.",
                "Environment=HOUSEKEEPING_DATABASE=managed",
                `Environment=PGSERVICEFILE=${MANAGED_DB_SERVICE_FILE}`,
                // No client certificate: libpq looks for one in the user's home unless sslcert names a file,
                // and synapse's home (its data directory) is hidden here, which libpq takes as an error
                // (EACCES, not ENOENT; found by drill 25h). The cluster takes a password, never a certificate.
                `Environment="HOUSEKEEPING_DB=service=synapse sslcert=${NO_CLIENT_CERT}"`,
                `LoadCredential=${PGPASS_CREDENTIAL}:${MANAGED_DB_PGPASS}`,
            ],
        },
        {
            from: `InaccessiblePaths=${hidden}`,
            to: [
                `InaccessiblePaths=${hidden.replace(" -/etc/phillymesh-chat", "")}`,
                "TemporaryFileSystem=/etc/phillymesh-chat:ro",
                `BindReadOnlyPaths=${MANAGED_DB_CA_PATH} ${MANAGED_DB_SERVICE_FILE}`,
            ],
        },
        {
            from: "PrivateNetwork=true",
            to: ["# database managed: the network, to the cluster by its name; no link-local (the cloud's metadata service) or multicast."],
        },
        { from: "IPAddressDeny=any", to: ["IPAddressDeny=link-local multicast"] },
        { from: "RestrictAddressFamilies=AF_UNIX", to: ["RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"] },
    ];
}

function managedUnit(local: string, dataDir: string): string {
    const lines = local.split("\n");
    for (const { from, to } of managedUnitLines(dataDir)) {
        const at = lines.indexOf(from);
        if (at < 0 || lines.indexOf(from, at + 1) >= 0) throw new Error(`internal: db-housekeeping.service has no single line ${from}`);
        lines.splice(at, 1, ...to);
    }
    return lines.join("\n");
}

function localHousekeepingUnit(dataDir: string, h: HousekeepingSettings): string {
    return renderTemplate("server/systemd/db-housekeeping.service", {
        compressor: h.compressor ? "on" : "off",
        compressor_python: `${COMPRESSOR_VENV}/bin/python`,
        chunk_size: h.chunkSize,
        chunks: h.chunks,
        levels: COMPRESSOR_LEVELS,
        // The child's own limit comes first, so that its end is logged by the program, not a kill.
        child_timeout: HOUSEKEEPING_TIMEOUT_SECONDS - 300,
        timeout: HOUSEKEEPING_TIMEOUT_SECONDS,
        postgres_port: PORTS.postgres,
        memory_high: Math.floor((h.memoryMaxMb * 9) / 10),
        memory_max: h.memoryMaxMb,
        data_dir: dataDir,
        index_rebuild: h.indexRebuild ? "on" : "off",
        index_tables: HOT_TABLES.join(","),
    });
}

/** The program, its service and its nightly timer. */
export function housekeepingFiles(dataDir: string, h: HousekeepingSettings, database: HousekeepingDatabase = "local"): ServerFile[] {
    const root = (path: string, content: string, mode: "0644" | "0755"): ServerFile => ({ path, content, mode, owner: "root:root" });
    return [
        root(`/usr/local/sbin/${HOUSEKEEPING_UNIT}`, readFile("server/sbin/phillymesh-chat-db-housekeeping.py"), "0755"),
        root(`/etc/systemd/system/${HOUSEKEEPING_UNIT}.service`, housekeepingUnit(dataDir, h, database), "0644"),
        root(`/etc/systemd/system/${HOUSEKEEPING_UNIT}.timer`, readFile("server/systemd/db-housekeeping.timer"), "0644"),
    ];
}

export interface HousekeepingArgs {
    readonly target: Target;
    readonly dataDir: string;
    readonly settings: HousekeepingSettings;
    /** The index the compressor is installed from: Synapse's pipIndexUrl. */
    readonly pipIndexUrl: string;
    /** Where Synapse's database is. Default local; managed: the cluster (and no compressor). */
    readonly database?: HousekeepingDatabase;
}

/**
 * What preview says when the config asks for the compressor on a managed database, where it is not
 * run (see the top of this file). A warning, not an error: the rest of the housekeeping still runs.
 */
export function compressorWarning(database: HousekeepingDatabase, h: HousekeepingSettings): string | undefined {
    if (database !== "managed" || !h.compressor) return undefined;
    return (
        "phillymesh-chat:stateCompressor is true but phillymesh-chat:database is managed: the state compressor is not run against the cluster " +
        "(synapse_auto_compressor connects without verifying the server's TLS certificate, so it could hand the synapse user's password to an impostor). " +
        "The nightly report and the per-table autovacuum settings still run, on the cluster. Set stateCompressor to false to silence this."
    );
}

/**
 * The housekeeping step: after Synapse (its tables exist then), beside the backups. With the database
 * managed, after the move too (Synapse's step already waits for it; named here as well, since the
 * step tunes the cluster's tables).
 */
export class Housekeeping extends pulumi.ComponentResource {
    constructor(name: string, args: HousekeepingArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:Housekeeping", name, {}, opts);
        const h = args.settings;
        const database = args.database ?? "local";
        new RemoteStep(
            `${name}-housekeeping`,
            {
                target: args.target,
                script: "housekeeping.sh",
                libraries: ["venv.sh"],
                env: {
                    DATA_DIR: args.dataDir,
                    COMPRESSOR: h.compressor ? "on" : "off",
                    COMPRESSOR_VERSION: h.compressorVersion,
                    INDEX_REBUILD: h.indexRebuild ? "on" : "off",
                    PIP_INDEX_URL: args.pipIndexUrl,
                    TABLE_SETTINGS: tableSettingsSql(),
                    DATABASE: database,
                    ...(database === "managed" ? { MANAGED_SERVICE_FILE: MANAGED_DB_SERVICE_FILE } : {}),
                },
                files: housekeepingFiles(args.dataDir, h, database),
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.registerOutputs({});
    }
}
