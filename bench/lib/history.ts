// bench/results/history.json: the headline figures of every run, one entry per run, oldest first.
// run.ts appends an entry after each run; the full results of a run (latest.json or NAME.json,
// samples, plot, table) are replaced by the next one and stay in git history.
import * as fs from "node:fs";

type Rec = Record<string, unknown>;

export interface MemoryFigures {
    /** Not measured in this run: the figures of an earlier run (latest.json), as the ratio used them. */
    carriedOver?: true;
    /** When this server's workload started. */
    measuredAt: string | null;
    steadyMB: number | null;
    peakMB: number | null;
    synapseSteadyPssMB: number | null;
    postgresSteadyPssMB: number | null;
    p50LatencyMs: number | null;
    p95LatencyMs: number | null;
    oomKills: number | null;
    synapseRestarts: number | null;
    messagesSent: number | null;
    /** Deliveries seen across servers (bench1/bench2 <-> bench3); 0 means federation did not work. */
    federatedDeliveries: number | null;
}

export interface HistoryEntry {
    /** The run's start (results' generatedAt). */
    startedAt: string | null;
    /** "latest", or the --name of a variant run. */
    name: string | null;
    phasesRun: string[];
    /** The commit checked out when the run started (`git rev-parse --short HEAD`). */
    head?: string | null;
    /** The program's files (index.ts, Pulumi.yaml, components/, files/) differed from `head`. */
    programChangedFromHead?: boolean | null;
    /** Entries written before run.ts kept this file: the commit that recorded the run's results. */
    recordedIn?: string;
    /** Config keys added to bench1's stack (--tuned-config). */
    tunedOverrides: Rec;
    tuned?: MemoryFigures;
    defaults?: MemoryFigures;
    ratio: { steadyMB: number | null; peakMB: number | null } | null;
    /** bench1's deploy figures, when this run measured them. */
    deploy?: {
        coldDeploySeconds: number | null;
        noopUpSeconds?: number | null;
        noopChanges?: number | null;
        previewExpectNoChangesExit?: number | null;
        programUnchangedSinceDeploy?: boolean | null;
        bumpDowntimeSeconds?: number | null;
        versionAfter?: string | null;
    };
    /** Where the full results were written (or, for old runs, how to get them from git). */
    files: string[];
    note?: string;
    /** --scale, when the run was scaled down (issue 12's phases). */
    scale?: number;
    /** The aging, big-room and 512 MiB phases' headline figures (lib/issue12Report.ts). */
    issue12?: Record<string, unknown>;
}

const num = (v: unknown): number | null => (typeof v === "number" ? v : null);
const get = (o: unknown, ...keys: string[]): unknown => keys.reduce<unknown>((x, k) => (x !== null && typeof x === "object" ? (x as Rec)[k] : undefined), o);

function memory(side: unknown, measured: boolean): MemoryFigures | undefined {
    if (side === null || typeof side !== "object" || get(side, "steadyMB") === undefined) return undefined;
    const epoch = num(get(side, "workload", "startedEpoch"));
    return {
        ...(measured ? {} : { carriedOver: true as const }),
        measuredAt: epoch === null ? null : new Date(epoch * 1000).toISOString(),
        steadyMB: num(get(side, "steadyMB")),
        peakMB: num(get(side, "peakMB")),
        synapseSteadyPssMB: num(get(side, "perProcess", "synapse", "steadyPssMB")),
        postgresSteadyPssMB: num(get(side, "perProcess", "postgres", "steadyPssMB")),
        p50LatencyMs: num(get(side, "p50LatencyMs")),
        p95LatencyMs: num(get(side, "p95LatencyMs")),
        oomKills: num(get(side, "oomKills")),
        synapseRestarts: num(get(side, "synapseRestarts")),
        messagesSent: num(get(side, "workload", "messagesSent")),
        federatedDeliveries: num(get(side, "workload", "latency", "federated", "n")),
    };
}

/** The headline figures of one run's results (the object run.ts writes as latest.json / NAME.json). */
export function historyEntry(
    res: Rec,
    extra: Partial<Pick<HistoryEntry, "head" | "programChangedFromHead" | "recordedIn" | "files" | "note">> = {},
): HistoryEntry {
    const phases = Array.isArray(res.phasesRun) ? (res.phasesRun as string[]) : [];
    const ran = (p: string) => phases.includes(p);
    const tuned = res.tuned as Rec | undefined;
    const overrides: Rec = { ...((tuned?.config as Rec | undefined) ?? {}) };
    delete overrides.note;
    const t = (k: string) => get(tuned, k);
    const deployMeasured = ran("tuned") || ran("noop") || ran("bump");
    const entry: HistoryEntry = {
        startedAt: typeof res.generatedAt === "string" ? res.generatedAt : null,
        name: typeof res.name === "string" ? res.name : null,
        phasesRun: phases,
        ...("head" in extra ? { head: extra.head } : {}),
        ...("programChangedFromHead" in extra ? { programChangedFromHead: extra.programChangedFromHead } : {}),
        ...(extra.recordedIn ? { recordedIn: extra.recordedIn } : {}),
        tunedOverrides: overrides,
        tuned: memory(tuned, ran("tuned")),
        defaults: memory(res.defaults, ran("defaults")),
        ratio: res.ratio ? { steadyMB: num(get(res.ratio, "steadyMB")), peakMB: num(get(res.ratio, "peakMB")) } : null,
        ...(deployMeasured
            ? {
                  deploy: {
                      coldDeploySeconds: num(t("coldDeploySeconds")),
                      ...(ran("noop")
                          ? {
                                noopUpSeconds: num(t("noopUpSeconds")),
                                noopChanges: num(t("noopChanges")),
                                previewExpectNoChangesExit: num(t("previewExpectNoChangesExit")),
                                programUnchangedSinceDeploy:
                                    typeof t("programUnchangedSinceDeploy") === "boolean" ? (t("programUnchangedSinceDeploy") as boolean) : null,
                            }
                          : {}),
                      ...(ran("bump")
                          ? {
                                bumpDowntimeSeconds: num(t("bumpDowntimeSeconds")),
                                versionAfter: typeof t("versionAfter") === "string" ? (t("versionAfter") as string) : null,
                            }
                          : {}),
                  },
              }
            : {}),
        files: extra.files ?? [],
        ...(extra.note ? { note: extra.note } : {}),
    };
    return entry;
}

/** Adds an entry at the end of the history file (made when missing). */
export function appendHistory(file: string, entry: HistoryEntry): void {
    let list: HistoryEntry[] = [];
    if (fs.existsSync(file)) {
        const parsed: unknown = JSON.parse(fs.readFileSync(file, "utf8"));
        if (!Array.isArray(parsed)) throw new Error(`${file}: not a JSON list`);
        list = parsed as HistoryEntry[];
    }
    list.push(entry);
    fs.writeFileSync(file, JSON.stringify(list, null, 2) + "\n");
}
