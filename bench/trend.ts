// Where an aging run's memory stops growing: the samples taken while events were sent (phases q1-q4),
// cut into equal slices in time order, and each slice's median PSS (total, Synapse, PostgreSQL).
// The aging target compares the first quarter with the last; a fresh server's caches fill during
// the first, so this shows whether, and from when, the growth levels off.
//   node bench/trend.ts [SAMPLES_FILE] [--phase aging] [--slices 16]
// SAMPLES_FILE: a run's samples (default bench/results/aging-full-samples.json, the full-size run).
import * as fs from "node:fs";
import * as path from "node:path";
import { memoryTrend } from "./lib/trend.ts";
import type { Sample } from "./lib/sampler.ts";

const args = process.argv.slice(2);
let file = path.join(import.meta.dirname, "results", "aging-full-samples.json");
let phase = "aging";
let slices = 16;
for (let i = 0; i < args.length; i++) {
    if (args[i] === "--phase") phase = args[++i];
    else if (args[i] === "--slices") slices = Number(args[++i]);
    else if (args[i].startsWith("--")) throw new Error(`unknown option ${args[i]}\nusage: node bench/trend.ts [SAMPLES_FILE] [--phase aging] [--slices 16]`);
    else file = args[i];
}
if (!Number.isInteger(slices) || slices < 2) throw new Error("--slices: a whole number, at least 2");
const all = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, Sample[]>;
if (!all[phase]) throw new Error(`${file} has no samples of the phase ${phase} (it has: ${Object.keys(all).join(", ")})`);
const t = memoryTrend(all[phase], slices);
console.log(`${file}, phase ${phase}: ${t.samples} samples while sending, in ${slices} slices (median PSS, MB)`);
console.log("| slice | quarter | from (s) | total | Synapse | PostgreSQL |");
console.log("|---|---|---|---|---|---|");
for (const r of t.rows) console.log(`| ${r.slice} | ${r.quarter} | ${r.fromSeconds} | ${r.totalMB} | ${r.synapseMB} | ${r.postgresMB} |`);
console.log(
    `levels off from slice ${t.levelFrom ?? "-"} (each later slice within ${t.tolerancePercent} % of it)` +
        (t.levelFrom ? `: ${t.levelFromMB} -> ${t.lastMB} MB over the last ${t.levelShare} % of the run` : ": not within this run"),
);
