// Small numeric helpers shared by the workload and the report: percentiles, medians, rounding.

/** The p-th percentile (nearest rank) of the values, or null when there are none. */
export function percentile(values: number[], p: number): number | null {
    if (values.length === 0) return null;
    const s = [...values].sort((a, b) => a - b);
    const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
    return s[i];
}

export const median = (v: number[]) => percentile(v, 50);

/** Rounded to one decimal; null and undefined stay null. */
export const round1 = (v: number | null | undefined) => (v === null || v === undefined ? null : Math.round(v * 10) / 10);

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
