// What the aging, big-room and 512 MiB phases read on a server, over ssh as root: the database's
// size and its state-group tables, the media store's directories, the compressor unit (run to its
// end), and the guest memory cgroup's OOM counters (on the host).
import * as fs from "node:fs";
import * as path from "node:path";
import { round1 } from "./figures.ts";
import { memoryCgroup, tssh } from "./testbed.ts";

/**
 * The unit that runs synapse_auto_compressor in bounded chunks: the name issue 12's plan gave it, or
 * the one the housekeeping branch installs (compressor, then the database report), the first found.
 */
/** The program's nightly housekeeping unit (components/housekeeping.ts HOUSEKEEPING_UNIT). */
const HOUSEKEEPING_UNIT = "phillymesh-chat-db-housekeeping";
export const COMPRESSOR_UNITS = ["phillymesh-chat-compress-state", HOUSEKEEPING_UNIT];
export let COMPRESSOR_UNIT = COMPRESSOR_UNITS[0];

export interface DbFigures {
    databaseBytes: number;
    stateGroupsStateRows: number;
    stateGroupsStateBytes: number; // table + indexes + toast
    stateGroups: number;
    events: number;
    /** rows and total size of event_push_actions (a member's unread notifications, until read or a day old) */
    pushActionsRows: number;
    pushActionsBytes: number;
}

/** psql as postgres on the synapse database; each statement its own -c (its own transaction). */
const psql = (...sql: string[]) => `runuser -u postgres -- psql -d synapse -AtX -v ON_ERROR_STOP=1 ${sql.map((q) => `-c ${JSON.stringify(q)}`).join(" ")}`;

/** pg_database_size, the rows and total size of state_groups_state, state groups, events, push actions. */
export async function dbFigures(ip: string): Promise<DbFigures> {
    const sql =
        "select pg_database_size('synapse'), (select count(*) from state_groups_state), pg_total_relation_size('state_groups_state'), " +
        "(select count(*) from state_groups), (select count(*) from events), (select count(*) from event_push_actions), pg_total_relation_size('event_push_actions')";
    const r = await tssh(ip, psql(sql));
    const v = r.stdout.trim().split("|").map(Number);
    if (r.code !== 0 || v.length !== 7 || v.some((x) => !Number.isFinite(x)))
        throw new Error(`database figures on ${ip}: exit ${r.code} ${r.stdout} ${r.stderr}`);
    return {
        databaseBytes: v[0],
        stateGroupsStateRows: v[1],
        stateGroupsStateBytes: v[2],
        stateGroups: v[3],
        events: v[4],
        pushActionsRows: v[5],
        pushActionsBytes: v[6],
    };
}

/**
 * VACUUM FULL of the state tables: what gives the space the compressor freed back to the file
 * system (a plain VACUUM only lets PostgreSQL reuse it). Takes an exclusive lock for its duration.
 */
export async function vacuumFullStateTables(ip: string): Promise<number> {
    const t0 = performance.now();
    const r = await tssh(ip, psql("vacuum full state_groups_state", "vacuum full state_group_edges", "vacuum full state_groups"), undefined, 1_800_000);
    if (r.code !== 0) throw new Error(`vacuum full on ${ip}: ${r.stderr}`);
    return (performance.now() - t0) / 1000;
}

/** The housekeeping unit's report of its index rebuild (report.json "indexes"), one entry per hot table. */
export interface IndexRebuildEntry {
    table: string;
    rebuilt: boolean;
    indexBytes?: number;
    indexBytesAfter?: number;
    tableBytes?: number;
    seconds?: number;
    skipped?: string;
    error?: string;
}

const REBUILD_ONLY = `/run/systemd/system/${HOUSEKEEPING_UNIT}.service.d/bench-rebuild-only.conf`;

/**
 * The program's own index rebuild (indexRebuild) on the server as it is: its nightly unit run once,
 * with the compressor held off by a runtime drop-in (removed at once), so that what the rebuild gives
 * back is measured apart from the compressor. Its seconds and the unit's report of each table; a
 * string when not measured (a program without the rebuild, or the unit failed).
 */
export async function runIndexRebuild(ip: string): Promise<{ seconds: number; tables: IndexRebuildEntry[] } | string> {
    const env = await tssh(ip, `systemctl show -p Environment --value ${HOUSEKEEPING_UNIT}.service`);
    if (!/\bINDEX_REBUILD=on\b/.test(env.stdout))
        return "not measured: the housekeeping unit does not rebuild indexes (indexRebuild off, or a program before it)";
    const t0 = performance.now();
    const r = await tssh(
        ip,
        `mkdir -p ${path.dirname(REBUILD_ONLY)} && printf '[Service]\\nEnvironment=COMPRESSOR=off\\n' > ${REBUILD_ONLY} && systemctl daemon-reload && ` +
            `{ systemctl start ${HOUSEKEEPING_UNIT}.service; rc=$?; rm -f ${REBUILD_ONLY}; systemctl daemon-reload; ` +
            `cat /var/lib/phillymesh-chat-housekeeping/report.json; exit $rc; }`,
        undefined,
        3_600_000,
    );
    const seconds = (performance.now() - t0) / 1000;
    if (r.code !== 0) return `not measured: the unit failed (exit ${r.code}): ${r.stderr.slice(0, 300)}`;
    const tables = (JSON.parse(r.stdout) as { indexes?: IndexRebuildEntry[] }).indexes;
    return tables ? { seconds, tables } : "not measured: the unit's report has no index figures";
}

export type MediaFigures = Record<"local_content" | "local_thumbnails" | "remote_content" | "remote_thumbnail" | "url_cache" | "url_cache_thumbnails", number>;

/** Bytes in each directory of Synapse's media store (0 for one that does not exist yet). */
export async function mediaFigures(ip: string): Promise<MediaFigures & { dir: string }> {
    const dirs = ["local_content", "local_thumbnails", "remote_content", "remote_thumbnail", "url_cache", "url_cache_thumbnails"] as const;
    const script =
        `d=$(sed -n 's/^media_store_path: *//p' /etc/matrix-synapse/homeserver.yaml | tr -d "\\"'"); echo "$d"; ` +
        `for s in ${dirs.join(" ")}; do if [ -d "$d/$s" ]; then du -sb "$d/$s" | cut -f1; else echo 0; fi; done`;
    const r = await tssh(ip, script);
    const lines = r.stdout.trim().split("\n");
    if (r.code !== 0 || lines.length !== dirs.length + 1) throw new Error(`media figures on ${ip}: exit ${r.code} ${r.stdout} ${r.stderr}`);
    const out = { dir: lines[0] } as MediaFigures & { dir: string };
    dirs.forEach((d, i) => (out[d] = Number(lines[i + 1])));
    return out;
}

export interface CompressorRun {
    unit: string;
    runs: number;
    seconds: number;
    results: string[]; // systemd's Result= of each run
    journalTail: string[];
}

/** Whether the deployed server has a compressor unit (it becomes COMPRESSOR_UNIT). */
export async function hasCompressor(ip: string): Promise<boolean> {
    for (const u of COMPRESSOR_UNITS) {
        const r = await tssh(ip, `systemctl cat ${u}.service >/dev/null 2>&1 && echo yes || echo no`);
        if (r.stdout.trim() === "yes") {
            COMPRESSOR_UNIT = u;
            return true;
        }
    }
    return false;
}

/**
 * Starts the compressor unit and waits for it (a oneshot's `systemctl start` returns when it ends),
 * again while state_groups_state shrinks or the compressor's scan moves on (its journal's "scanned
 * up to group N", as the housekeeping unit logs it), at most maxRuns times.
 */
export async function runCompressor(ip: string, maxRuns = 10): Promise<CompressorRun> {
    const t0 = performance.now();
    const results: string[] = [];
    let rows = (await dbFigures(ip)).stateGroupsStateRows;
    let scanned = -1;
    for (let i = 0; i < maxRuns; i++) {
        const since = new Date(Date.now() - 1000).toISOString().replace("T", " ").slice(0, 19);
        const r = await tssh(
            ip,
            `systemctl start ${COMPRESSOR_UNIT}.service; systemctl show -p Result --value ${COMPRESSOR_UNIT}.service; ` +
                `journalctl -u ${COMPRESSOR_UNIT}.service --since '${since}' --utc --no-pager -o cat | grep -o 'scanned up to group [0-9]*' | tail -1`,
            undefined,
            3_600_000,
        );
        const out = r.stdout.trim().split("\n");
        results.push(out[0] ?? `exit ${r.code}`);
        // Another run while it saved rows, or (it works in bounded chunks) while its scan moved on.
        const pos = Number(/scanned up to group (\d+)/.exec(out[1] ?? "")?.[1] ?? -1);
        const now = (await dbFigures(ip)).stateGroupsStateRows;
        const progressed = now < rows || (pos >= 0 && pos > scanned);
        rows = now;
        scanned = pos;
        if (!progressed) break;
    }
    const j = await tssh(ip, `journalctl -u ${COMPRESSOR_UNIT}.service -n 15 --no-pager -o cat`);
    return {
        unit: COMPRESSOR_UNIT,
        runs: results.length,
        seconds: Math.round((performance.now() - t0) / 100) / 10,
        results,
        journalTail: j.stdout.trim().split("\n"),
    };
}

export interface CompressorFigures {
    /** the database as it was, dead rows included */
    before: DbFigures;
    /**
     * the program's nightly index rebuild (runIndexRebuild: the unit, compressor held off) on the
     * aged database, and the database after it: what the rebuild gives back. Both sides of the
     * compressor's comparison come after it, so the rebuild is not counted as the compressor's.
     */
    indexRebuild: { seconds: number; tables: IndexRebuildEntry[] } | string;
    indexesRebuilt: DbFigures | null;
    /** after VACUUM FULL of the state tables: what the data needs ("without the compressor") */
    compacted: DbFigures | null;
    compressor: string | CompressorRun;
    afterCompressor: DbFigures | null;
    /** after the compressor and VACUUM FULL again ("with the compressor") */
    afterCompressorCompacted: DbFigures | null;
    databaseSmallerPercent: number | null;
    stateRowsSmallerPercent: number | null;
}

/**
 * The compressor on a server's database as it is: both sides compacted (VACUUM FULL of the state
 * tables), so that the comparison is of what the data needs, not of dead rows. A failure is
 * recorded as the figure ("not measured: ..."), never thrown, so the phase's other figures stand.
 */
export async function measureCompressor(ip: string, say: (line: string) => void): Promise<CompressorFigures> {
    const before = await dbFigures(ip);
    let indexesRebuilt: DbFigures | null = null;
    let indexRebuild: CompressorFigures["indexRebuild"] = "not measured";
    let compacted: DbFigures | null = null;
    let compressor: CompressorFigures["compressor"];
    let afterCompressor: DbFigures | null = null;
    let afterCompressorCompacted: DbFigures | null = null;
    try {
        indexRebuild = await runIndexRebuild(ip);
        indexesRebuilt = await dbFigures(ip);
        const rebuilt =
            typeof indexRebuild === "string" ? indexRebuild : indexRebuild.tables.map((e) => `${e.table} ${e.rebuilt ? "rebuilt" : "not rebuilt"}`).join(", ");
        say(
            `${ip}: the unit's index rebuild: ${rebuilt}; event_push_actions ${MB(before.pushActionsBytes)} -> ${MB(indexesRebuilt.pushActionsBytes)} MB, database ${MB(before.databaseBytes)} -> ${MB(indexesRebuilt.databaseBytes)} MB`,
        );
        await vacuumFullStateTables(ip);
        compacted = await dbFigures(ip);
        if (await hasCompressor(ip)) {
            say(`${ip}: ${COMPRESSOR_UNIT} (run until state_groups_state stops shrinking)`);
            compressor = await runCompressor(ip);
            afterCompressor = await dbFigures(ip);
            await vacuumFullStateTables(ip);
            afterCompressorCompacted = await dbFigures(ip);
        } else {
            compressor = "not measured: compressor unit absent";
        }
    } catch (e) {
        compressor = `not measured: ${String(e instanceof Error ? e.message : e).slice(0, 500)}`;
    }
    const pct = (a: number | undefined, b: number | undefined) => (a && b !== undefined ? round1((100 * (a - b)) / a) : null);
    return {
        before,
        indexRebuild,
        indexesRebuilt,
        compacted,
        compressor,
        afterCompressor,
        afterCompressorCompacted,
        databaseSmallerPercent: pct(compacted?.databaseBytes, afterCompressorCompacted?.databaseBytes),
        stateRowsSmallerPercent: pct(compacted?.stateGroupsStateRows, afterCompressorCompacted?.stateGroupsStateRows),
    };
}

/** The guest memory cgroup's OOM figures, read on the host (v1: memory.oom_control, memory.failcnt). */
export function oomCounters(name: string): { oomKill: number; underOom: number; limitMB: number } {
    const dir = memoryCgroup(name);
    const oc = fs.readFileSync(path.join(dir, "memory.oom_control"), "utf8");
    const limit = Number(fs.readFileSync(path.join(dir, "memory.limit_in_bytes"), "utf8"));
    return {
        oomKill: Number(/oom_kill (\d+)/.exec(oc)?.[1] ?? 0),
        underOom: Number(/under_oom (\d+)/.exec(oc)?.[1] ?? 0),
        limitMB: Math.round(limit / 2 ** 20),
    };
}

export const MB = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;
