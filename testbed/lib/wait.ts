// Waiting for something on the testbed to become true, with a message that says what, how long,
// and the last error seen. Plain Node ES module (type stripping).
import { setTimeout as sleep } from "node:timers/promises";

export interface WaitOptions {
    /** Give up after this long (default 15 s). */
    timeoutMs?: number;
    /** Between probes (default 250 ms). */
    intervalMs?: number;
}

/**
 * Calls `probe` until it returns a truthy value (which is returned); a probe that throws counts as
 * "not yet". After timeoutMs: an Error "timed out after N s waiting for WHAT; last error: ...".
 * The probe runs at least once.
 */
export async function waitFor<T>(what: string, probe: () => T | Promise<T>, opts: WaitOptions = {}): Promise<NonNullable<T>> {
    const timeoutMs = opts.timeoutMs ?? 15_000;
    const intervalMs = opts.intervalMs ?? 250;
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
        try {
            const v = await probe();
            if (v) return v as NonNullable<T>;
        } catch (e) {
            last = e;
        }
        const left = deadline - Date.now();
        if (left <= 0) {
            const seconds = Math.round(timeoutMs / 100) / 10;
            throw new Error(`timed out after ${seconds} s waiting for ${what}${last === undefined ? "" : `; last error: ${String(last)}`}`);
        }
        await sleep(Math.min(intervalMs, left));
    }
}
