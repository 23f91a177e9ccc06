// Issue 14's table: the community phase's figures (lib/community.ts) per mode, and the target.
// Type-only imports: run.ts loads this before the Matrix client may be loaded (see main()).
import type { CommunityResult, ModeResult } from "./community.ts";

function modeRow(m: ModeResult | null, name: string, error: string | undefined): string {
    if (!m) return `| ${name} | failed: ${(error ?? "not run").split("\n")[0].slice(0, 120)} | | | | |`;
    const ramp = m.steps.map((s) => `${s.targetRate}/s: p95 ${s.p95Ms ?? "-"} ms, load ${s.hostLoad1m ?? "-"}${s.sustained ? "" : " ✗"}`).join("; ");
    return `| ${name} (synapseWorkers ${m.synapseWorkers}) | **${m.sustainedRate}/s** | ${m.idleMB ?? "-"} MB | ${m.peakMB ?? "-"} MB | ${m.oomKills} | ${ramp} |`;
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
    return [
        `${w.users} users, ${w.syncingClients} syncing clients, ${w.rooms} rooms, steps of ${w.stepSeconds} s; sustained = every send on time and without error, every delivery seen, send-to-sync p95 ≤ ${w.p95TargetMs} ms. Guest ${c.guest}.`,
        "",
        "| mode | sustained rate | idle | peak | OOM kills | the ramp (✗ = not sustained) |",
        "|---|---|---|---|---|---|",
        modeRow(c.single, "one process", c.errors.single),
        modeRow(c.workers, "workers", c.errors.workers),
        "",
        `Workers against one process: ${verdict}.`,
    ].join("\n");
}
