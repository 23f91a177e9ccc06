// Issue 14's table: the community phase's figures (lib/community.ts) per mode, and the target.
// Type-only imports: run.ts loads this before the Matrix client may be loaded (see main()).
import type { CommunityResult, ModeResult } from "./community.ts";

function modeRow(m: ModeResult | null, name: string, error: string | undefined): string {
    if (!m) return `| ${name} | failed: ${(error ?? "not run").split("\n")[0].slice(0, 120)} | | | | |`;
    const ramp = m.steps.map((s) => `${s.targetRate}/s: p95 ${s.p95Ms ?? "-"} ms, load ${s.hostLoad1m ?? "-"}${s.sustained ? "" : " ✗"}`).join("; ");
    return `| ${name} (synapseWorkers ${m.synapseWorkers}) | **${m.sustainedRate}/s** | ${m.idleMB ?? "-"} MB | ${m.peakMB ?? "-"} MB | ${m.oomKills} | ${ramp} |`;
}

/** Per step: where a send's time went (Synapse's access log), and who used the CPU. */
function timeRows(m: ModeResult | null, name: string): string[] {
    if (!m) return [];
    return m.steps.map((s) => {
        const cores = `synapse ${s.cpuCores?.synapse ?? "-"}, postgres ${s.cpuCores?.postgres ?? "-"}, load generator ${s.loadGeneratorCores ?? "-"}`;
        if (!s.requests) return `| ${name} | ${s.targetRate}/s | not recorded (a run before lib/requestLog.ts) | | | ${cores} |`;
        if ("error" in s.requests) return `| ${name} | ${s.targetRate}/s | ${s.requests.error.slice(0, 100)} | | | ${cores} |`;
        const e = s.requests.send;
        const y = s.requests.sync;
        return `| ${name} | ${s.targetRate}/s | ${e.wallP50Ms} / ${e.wallP95Ms} ms | ${e.meanWallMs} = ${e.meanCpuMs} + ${e.meanDbWaitMs} + ${e.meanDbTxnMs} + **${e.meanOtherWaitMs}** | ${y.requests} syncs, ${y.meanCpuMs} ms CPU each | ${cores} |`;
    });
}

/** The table, or "" when the phase has no results. */
export function communityTable(r: unknown): string {
    const c = r as CommunityResult | undefined;
    if (!c || typeof c !== "object" || !("workload" in c)) return "";
    const w = c.workload;
    const verdict =
        c.ratio === null
            ? "not measurable (a mode failed or sustained no step)"
            : `${c.ratio}x (target ≥ ${c.target.ratio}x): ${c.ratio >= c.target.ratio ? "MET" : "NOT MET"}`;
    const recorded = [c.single, c.workers].some((m) => m?.steps.some((s) => s.requests));
    return [
        `${w.users} users, ${w.syncingClients} syncing clients, ${w.rooms} rooms, steps of ${w.stepSeconds} s; sustained = every send on time and without error, every delivery seen, send-to-sync p95 ≤ ${w.p95TargetMs} ms. Guest ${c.guest}.`,
        "",
        "| mode | sustained rate | idle | peak | OOM kills | the ramp (✗ = not sustained) |",
        "|---|---|---|---|---|---|",
        modeRow(c.single, "one process", c.errors.single),
        modeRow(c.workers, "workers", c.errors.workers),
        "",
        `Workers against one process: ${verdict}.`,
        ...(recorded ? timeSection(c) : []),
    ].join("\n");
}

function timeSection(c: CommunityResult): string[] {
    return [
        "",
        "Where a send's time went (Synapse's access log: wall = CPU + database pool wait + transactions + other wait, means in ms) and the CPU in cores per step:",
        "",
        "| mode | rate | send wall p50 / p95 | mean wall = CPU + pool wait + transactions + **other wait** | /sync | CPU (cores) |",
        "|---|---|---|---|---|---|",
        ...timeRows(c.single, "one process"),
        ...timeRows(c.workers, "workers"),
    ];
}
