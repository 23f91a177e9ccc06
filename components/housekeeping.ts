// What keeps an ageing homeserver lean on a small disk (issue 12), besides Synapse's own retention
// settings (synapse.ts) and the autovacuum settings (postgres.ts): per-table autovacuum on Synapse's
// busiest tables, and the nightly database housekeeping unit (phillymesh-chat-db-housekeeping): a report of the database's size and
// largest tables to the journal, and synapse_auto_compressor in bounded chunks at low priority.
//
// The report rides on the compressor's nightly unit rather than on the daily status check: the
// status check runs as a throwaway user with no database role (peer authentication needs the
// synapse user), in the evening rather than at night, and a report is no pass/fail check; the
// compressor's unit already runs nightly as synapse, and a report before and after its run is the
// proof that it works. With stateCompressor off the unit runs the report alone.
import * as pulumi from "@pulumi/pulumi";
import type { HousekeepingSettings } from "./config";
import { Target } from "./host";
import { PORTS } from "./layout";
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
 * they free is what the next writes reuse, instead of growing the files.
 *   state_groups_state   the compressor deletes and rewrites rows in bulk every night;
 *   event_push_actions   Synapse deletes notification rows as it rotates them into summaries;
 *   device_inbox         to-device messages (encryption keys) are deleted once delivered.
 */
export const HOT_TABLES: readonly string[] = ["state_groups_state", "event_push_actions", "device_inbox"];
export const HOT_TABLE_SETTINGS = { autovacuum_vacuum_scale_factor: 0.02, autovacuum_analyze_scale_factor: 0.01 } as const;

/** The SQL that sets HOT_TABLE_SETTINGS on each hot table Synapse has made (run as postgres). */
export function tableSettingsSql(): string {
    const options = Object.entries(HOT_TABLE_SETTINGS)
        .map(([k, v]) => `${k} = ${v}`)
        .join(", ");
    const lines = HOT_TABLES.map((t) => `    IF to_regclass('public.${t}') IS NOT NULL THEN ALTER TABLE public.${t} SET (${options}); END IF;`);
    return ["DO $$", "BEGIN", ...lines, "END", "$$;"].join("\n");
}

/** The unit, rendered: its settings are checked numbers (config/index.ts), never free text. */
export function housekeepingUnit(dataDir: string, h: HousekeepingSettings): string {
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
    });
}

/** The program, its service and its nightly timer. */
export function housekeepingFiles(dataDir: string, h: HousekeepingSettings): ServerFile[] {
    const root = (path: string, content: string, mode: "0644" | "0755"): ServerFile => ({ path, content, mode, owner: "root:root" });
    return [
        root(`/usr/local/sbin/${HOUSEKEEPING_UNIT}`, readFile("server/sbin/phillymesh-chat-db-housekeeping.py"), "0755"),
        root(`/etc/systemd/system/${HOUSEKEEPING_UNIT}.service`, housekeepingUnit(dataDir, h), "0644"),
        root(`/etc/systemd/system/${HOUSEKEEPING_UNIT}.timer`, readFile("server/systemd/db-housekeeping.timer"), "0644"),
    ];
}

export interface HousekeepingArgs {
    readonly target: Target;
    readonly dataDir: string;
    readonly settings: HousekeepingSettings;
    /** The index the compressor is installed from: Synapse's pipIndexUrl. */
    readonly pipIndexUrl: string;
}

/** The housekeeping step: after Synapse (its tables exist then), beside the backups. */
export class Housekeeping extends pulumi.ComponentResource {
    constructor(name: string, args: HousekeepingArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:Housekeeping", name, {}, opts);
        const h = args.settings;
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
                    PIP_INDEX_URL: args.pipIndexUrl,
                    TABLE_SETTINGS: tableSettingsSql(),
                },
                files: housekeepingFiles(args.dataDir, h),
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.registerOutputs({});
    }
}
