// The drill wrapper both drill files use: each drill is one node:test test with a time limit, its
// checks are subtests, its subprocesses die with it, and the file ends with a PASS/FAIL table.
import { test, type TestContext } from "node:test";
import * as L from "./lib.ts";

interface Result {
    title: string;
    ok: boolean;
    ms: number;
    skipped: string[];
}

export interface DrillSet {
    /** Registers a drill: `ensure` runs first (the server deployed and answering), then fn. */
    drill(title: string, limitMinutes: number, fn: (t: TestContext) => Promise<void>): void;
    /**
     * A check (subtest): a failure is recorded and the drill goes on (and fails at its end).
     * skip(why) reports it SKIPPED with the reason, never passed.
     */
    check(t: TestContext, title: string, fn: (skip: (why: string) => void) => Promise<void> | void): Promise<boolean>;
    /** Whether a drill of this file failed so far. */
    anyFailed(): boolean;
    /** The PASS/FAIL table with wall times, on stderr. */
    printSummary(): void;
}

/** The drills of one file, under a heading, each preceded by `ensure`. */
export function drillSet(heading: string, ensure: () => Promise<void>): DrillSet {
    const results: Result[] = [];
    const titles: string[] = [];
    // The checks of the drill now running that failed or were skipped.
    let failedChecks: string[] = [];
    let skippedChecks: string[] = [];

    function drill(title: string, limitMinutes: number, fn: (t: TestContext) => Promise<void>): void {
        titles.push(title);
        // node:test collects the test; its promise settles with the run and is reported by the runner.
        void test(title, { timeout: limitMinutes * 60_000 }, async (t) => {
            L.current.signal = t.signal;
            const t0 = Date.now();
            const secs = () => ((Date.now() - t0) / 1000).toFixed(0);
            L.note(`START ${title}`);
            failedChecks = [];
            skippedChecks = [];
            try {
                await ensure();
                await fn(t);
                if (failedChecks.length) throw new Error(`${failedChecks.length} check(s) failed: ${failedChecks.join("; ")}`);
                results.push({ title, ok: true, ms: Date.now() - t0, skipped: skippedChecks });
                L.note(`PASS  ${title} (${secs()} s)${skippedChecks.length ? `; SKIPPED: ${skippedChecks.join("; ")}` : ""}`);
            } catch (e) {
                results.push({ title, ok: false, ms: Date.now() - t0, skipped: skippedChecks });
                L.note(`FAIL  ${title} (${secs()} s): ${String(e).split("\n")[0]}`);
                throw e;
            } finally {
                L.current.signal = undefined;
            }
        });
    }

    async function check(t: TestContext, title: string, fn: (skip: (why: string) => void) => Promise<void> | void): Promise<boolean> {
        let ok = true;
        let skipped: string | undefined;
        await t.test(title, async (st) => {
            try {
                await fn((why) => {
                    skipped = why;
                    st.skip(why);
                });
            } catch (e) {
                ok = false;
                failedChecks.push(title.split(" ")[0]);
                L.note(`  FAIL ${title}: ${String(e).split("\n").slice(0, 8).join(" | ")}`);
                throw e;
            }
        });
        if (skipped !== undefined) {
            skippedChecks.push(`${title.split(" ")[0]} (${skipped})`);
            L.note(`  SKIP ${title}: ${skipped}`);
        } else if (ok) L.note(`  ok   ${title}`);
        return ok;
    }

    function printSummary(): void {
        process.stderr.write(`\n==== ${heading} ====\n`);
        for (const title of titles) {
            const r = results.find((x) => x.title === title);
            process.stderr.write(
                r
                    ? `${r.ok ? "PASS" : "FAIL"}  ${(r.ms / 1000).toFixed(0).padStart(5)} s  ${title}\n`
                    : `----      -    ${title} (not run, filtered out or cancelled)\n`,
            );
            for (const s of r?.skipped ?? []) process.stderr.write(`                SKIPPED ${s}\n`);
        }
    }

    return { drill, check, anyFailed: () => results.some((r) => !r.ok), printSummary };
}
