// The report: tuned ÷ defaults ratios, the table of figures and targets (MET / NOT MET) printed and
// written to results/table.md, and the memory plot (bench/plot.py, matplotlib from a venv).
import * as fs from "node:fs";
import * as path from "node:path";
import { BENCH_STATE, mustRun, run, say } from "./testbed.ts";

const BENCH = path.join(import.meta.dirname, "..");
const VENV = path.join(BENCH_STATE, "venv");

/** The targets the table checks (bench/README.md "What is measured"). */
const TARGETS = { steadyMB: 450, peakMB: 600, ratio: 0.6, coldDeploySeconds: 300, noopUpSeconds: 30, bumpDowntimeSeconds: 30 };

/** latest.json: the run's figures, `tuned` (bench1) and `defaults` (bench2) and their `ratio`. */
export type Results = Record<string, unknown> & { tuned?: Record<string, unknown>; defaults?: Record<string, unknown>; ratio?: Record<string, unknown> };

/** tuned ÷ defaults for steady, peak, latencies and each process group (undefined without both). */
export function ratios(t: Record<string, unknown> | undefined, d: Record<string, unknown> | undefined) {
    if (!t || !d) return undefined;
    const r = (a: unknown, b: unknown) => (typeof a === "number" && typeof b === "number" && b > 0 ? Math.round((a / b) * 1000) / 1000 : null);
    const pp = (x: Record<string, unknown>, g: string, k: string) => ((x.perProcess as Record<string, Record<string, unknown>>)?.[g] ?? {})[k];
    return {
        steadyMB: r(t.steadyMB, d.steadyMB),
        peakMB: r(t.peakMB, d.peakMB),
        p50LatencyMs: r(t.p50LatencyMs, d.p50LatencyMs),
        p95LatencyMs: r(t.p95LatencyMs, d.p95LatencyMs),
        synapseSteadyPss: r(pp(t, "synapse", "steadyPssMB"), pp(d, "synapse", "steadyPssMB")),
        postgresSteadyPss: r(pp(t, "postgres", "steadyPssMB"), pp(d, "postgres", "steadyPssMB")),
        nginxSteadyPss: r(pp(t, "nginx", "steadyPssMB"), pp(d, "nginx", "steadyPssMB")),
    };
}

/** The markdown table of figures, ratios, targets and their status. */
export function table(res: Results): string {
    const t = (res.tuned ?? {}) as Record<string, unknown>;
    const d = (res.defaults ?? {}) as Record<string, unknown>;
    const ratio = (res.ratio ?? {}) as Record<string, unknown>;
    const pp = (x: Record<string, unknown>, g: string, k = "steadyPssMB") => ((x.perProcess as Record<string, Record<string, unknown>>)?.[g] ?? {})[k];
    const f = (v: unknown, unit = "") => (v === undefined || v === null ? "-" : `${v}${unit}`);
    const met = (ok: boolean | null) => (ok === null ? "not measured" : ok ? "MET" : "NOT MET");
    const num = (v: unknown) => (typeof v === "number" ? v : null);
    const rows: string[][] = [
        ["measure", "tuned (bench1)", "defaults (bench2)", "tuned/defaults", "target", "status"],
        [
            "total steady (PSS, MB)",
            f(t.steadyMB),
            f(d.steadyMB),
            f(ratio.steadyMB),
            `<= ${TARGETS.steadyMB} MB`,
            met(num(t.steadyMB) === null ? null : num(t.steadyMB)! <= TARGETS.steadyMB),
        ],
        [
            "total peak (PSS, MB)",
            f(t.peakMB),
            f(d.peakMB),
            f(ratio.peakMB),
            `<= ${TARGETS.peakMB} MB`,
            met(num(t.peakMB) === null ? null : num(t.peakMB)! <= TARGETS.peakMB),
        ],
        ["OOM kills (1 GiB cap)", f(t.oomKills), f(d.oomKills), "", "0", met(num(t.oomKills) === null ? null : t.oomKills === 0 && t.synapseRestarts === 0)],
        [
            "tuned <= 0.6x defaults (steady)",
            "",
            "",
            f(ratio.steadyMB),
            `<= ${TARGETS.ratio}`,
            met(num(ratio.steadyMB) === null ? null : num(ratio.steadyMB)! <= TARGETS.ratio),
        ],
        ["  synapse steady PSS (MB)", f(pp(t, "synapse")), f(pp(d, "synapse")), f(ratio.synapseSteadyPss), "", ""],
        ["  postgres steady PSS (MB)", f(pp(t, "postgres")), f(pp(d, "postgres")), f(ratio.postgresSteadyPss), "", ""],
        ["  nginx steady PSS (MB)", f(pp(t, "nginx")), f(pp(d, "nginx")), f(ratio.nginxSteadyPss), "", ""],
        ["  other steady PSS (MB)", f(pp(t, "other")), f(pp(d, "other")), "", "", ""],
        ["  synapse peak RSS (MB)", f(pp(t, "synapse", "peakRssMB")), f(pp(d, "synapse", "peakRssMB")), "", "", ""],
        ["send-to-sync p50 (ms)", f(t.p50LatencyMs), f(d.p50LatencyMs), f(ratio.p50LatencyMs), "", "(figure)"],
        ["send-to-sync p95 (ms)", f(t.p95LatencyMs), f(d.p95LatencyMs), f(ratio.p95LatencyMs), "", "(figure)"],
        [
            "  synapse CPU s, message phase",
            f((t.messagePhaseCpuSeconds as Record<string, unknown> | undefined)?.synapse),
            f((d.messagePhaseCpuSeconds as Record<string, unknown> | undefined)?.synapse),
            "",
            "",
            "(figure)",
        ],
        [
            "  host load (1 min avg), messages",
            f((t.hostLoad1mDuringMessages as Record<string, unknown> | undefined)?.mean),
            f((d.hostLoad1mDuringMessages as Record<string, unknown> | undefined)?.mean),
            "",
            "",
            "(2 cores, shared)",
        ],
        [
            "cold deploy (s)",
            f(t.coldDeploySeconds),
            "",
            "",
            `<= ${TARGETS.coldDeploySeconds} s`,
            met(num(t.coldDeploySeconds) === null ? null : num(t.coldDeploySeconds)! <= TARGETS.coldDeploySeconds),
        ],
        [
            "no-op up (s / changes)",
            t.noopUpSeconds === undefined ? "-" : `${f(t.noopUpSeconds)} / ${f(t.noopChanges)}`,
            "",
            "",
            `0 changes, <= ${TARGETS.noopUpSeconds} s`,
            t.programUnchangedSinceDeploy === false
                ? "not measured (the program changed during the run)"
                : met(
                      num(t.noopUpSeconds) === null
                          ? null
                          : t.noopChanges === 0 && num(t.noopUpSeconds)! <= TARGETS.noopUpSeconds && t.previewExpectNoChangesExit === 0,
                  ),
        ],
        [
            "bump downtime (s)",
            f(t.bumpDowntimeSeconds),
            "",
            "",
            `<= ${TARGETS.bumpDowntimeSeconds} s`,
            met(num(t.bumpDowntimeSeconds) === null ? null : num(t.bumpDowntimeSeconds)! <= TARGETS.bumpDowntimeSeconds),
        ],
        ["swap used", "not measurable here", "not measurable here", "", "", "not measurable here"],
    ];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    const line = (r: string[]) => "| " + r.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |";
    return [line(rows[0]), "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|", ...rows.slice(1).map(line)].join("\n");
}

/** results/samples.json → the memory plot (makes the matplotlib venv on first use). */
export async function plot(samplesFile: string, out: string, tunedLabel: string): Promise<void> {
    if (!fs.existsSync(path.join(VENV, "bin", "python"))) {
        say(`making a Python venv with matplotlib in ${VENV}`);
        await mustRun("python3", ["-m", "venv", VENV]);
    }
    const probe = await run(path.join(VENV, "bin", "python"), ["-c", "import matplotlib"]);
    if (probe.code !== 0) await mustRun(path.join(VENV, "bin", "pip"), ["install", "--quiet", "matplotlib"]);
    await mustRun(path.join(VENV, "bin", "python"), [path.join(BENCH, "plot.py"), samplesFile, out, tunedLabel]);
}
