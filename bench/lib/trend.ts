// An aging run's memory over time (bench/trend.ts and the aging phase's result): the samples taken
// while events were sent (phases q1-q4), in equal slices, each slice's median PSS, and the first
// slice from which every later one stays within a tolerance of it (where the growth levels off).
import { median, round1 } from "./figures.ts";
import type { Sample } from "./sampler.ts";

export interface TrendRow {
    slice: number;
    quarter: string;
    fromSeconds: number;
    totalMB: number;
    synapseMB: number;
    postgresMB: number;
}

export interface MemoryTrend {
    samples: number;
    rows: TrendRow[];
    tolerancePercent: number;
    /** the first slice (1-based) whose median total every later slice stays within tolerance of; null: none before the last */
    levelFrom: number | null;
    levelFromMB: number | null;
    lastMB: number | null;
    /** the share of the run from levelFrom to its end, in percent */
    levelShare: number | null;
}

const SENDING = /^q[1-4]$/;

export function memoryTrend(samples: Sample[], slices = 16, tolerancePercent = 3): MemoryTrend {
    const sending = samples.filter((s) => SENDING.test(s.phase));
    const rows: TrendRow[] = [];
    for (let i = 0; i < slices; i++) {
        const part = sending.slice(Math.floor((i * sending.length) / slices), Math.floor(((i + 1) * sending.length) / slices));
        if (part.length === 0) continue;
        const med = (k: "total" | "synapse" | "postgres") => round1(median(part.map((s) => s.mb[k])))!;
        rows.push({
            slice: i + 1,
            quarter: part[0].phase,
            fromSeconds: Math.round(part[0].t),
            totalMB: med("total"),
            synapseMB: med("synapse"),
            postgresMB: med("postgres"),
        });
    }
    // The earliest slice (not the last) that no later slice exceeds by more than the tolerance, nor falls below by more.
    let levelFrom: number | null = null;
    for (let i = 0; i < rows.length - 1; i++) {
        const base = rows[i].totalMB;
        if (rows.slice(i + 1).every((r) => Math.abs(r.totalMB - base) <= (base * tolerancePercent) / 100)) {
            levelFrom = rows[i].slice;
            break;
        }
    }
    const from = rows.find((r) => r.slice === levelFrom);
    return {
        samples: sending.length,
        rows,
        tolerancePercent,
        levelFrom,
        levelFromMB: from?.totalMB ?? null,
        lastMB: rows.at(-1)?.totalMB ?? null,
        levelShare: levelFrom === null ? null : Math.round(((slices - levelFrom + 1) / slices) * 100),
    };
}
