// The 512 MiB phase: a guest booted with a 512 MiB memory cgroup (testbed/boot.sh NAME IP 512M),
// deployed cold by the program with `memoryPreset: 512mb` (the stacks use hosting "existing", so the
// preset is set explicitly), then the standard workload and the aging workload against it. Figures:
// OOM kills (the cgroup's memory.oom_control oom_kill counter and the kernel log), Synapse restarts,
// steady/peak memory, send-to-sync p95 against the 1 GiB figure of the same run. The phase aging512
// runs the aging workload alone (no standard workload, so no p95 ratio).
import * as fs from "node:fs";
import * as path from "node:path";
import { agingPhase, type AgingResult } from "./aging.ts";
import type { AgingWorkload } from "./agingWorkload.ts";
import { coldDeploy } from "./deployPhases.ts";
import { round1 } from "./figures.ts";
import { measure, type ServerResult } from "./measure.ts";
import type { Sample } from "./sampler.ts";
import { homeserver } from "./servers.ts";
import { oomCounters } from "./serverProbe.ts";
import { destroy, REPO, say, type Server } from "./testbed.ts";
import type { PageServer } from "./urlPreviews.ts";
import type { Homeserver, Workload } from "./workload.ts";

/** The 512 MiB guest (a free testbed address; not one of the 1 GiB guests). */
export const SMALL: Server = { name: "bench512", ip: "10.250.0.54", user: "root", memory: "512M" };

/** Whether the program (Pulumi.yaml) declares the memoryPreset key yet. */
export function programHasMemoryPreset(): boolean {
    return /^ {2}memoryPreset:/m.test(fs.readFileSync(path.join(REPO, "Pulumi.yaml"), "utf8"));
}

export interface Small512Result {
    guest: string;
    memoryCapMB: number | null;
    config: Record<string, unknown>;
    presetNote: string;
    coldDeploySeconds: number;
    standard: (Omit<ServerResult, "workload"> & { messagesSent: number }) | null;
    standardError?: string;
    /** true when the standard workload was not asked for (the phase aging512) */
    standardNotRun?: boolean;
    aging: AgingResult | null;
    agingError?: string;
    oomKillsTotal: number;
    reference1GiB: { p95LatencyMs: number | null; source: string };
    p95Ratio: number | null;
}

/**
 * Boots the 512 MiB guest from nothing, deploys it, runs the standard then the aging workload, and
 * destroys it again (with its data). reference: the 1 GiB server's standard-workload figures from
 * this same run (the caller measures them when the tuned phase was not run). w null: the aging
 * workload alone.
 */
export async function small512Phase(
    partner: Homeserver,
    w: Workload | null,
    aging: (AgingWorkload & { scale: number }) | null,
    pages: PageServer,
    extra: Record<string, unknown>,
    reference: { result: ServerResult | undefined; source: string },
): Promise<{ result: Small512Result; samples: { standard?: Sample[]; aging?: Sample[] } }> {
    const hasPreset = programHasMemoryPreset();
    const config = { ...extra, ...(hasPreset ? { memoryPreset: "512mb" } : {}) };
    const presetNote = hasPreset
        ? "memoryPreset: 512mb set in the stack config"
        : "memoryPreset is not declared by this program yet (not merged): the 512 MiB guest ran the program's defaults";
    say(`${SMALL.name}: 512 MiB guest, cold deploy (${presetNote})`);
    const cold = await coldDeploy(SMALL, config, partner);
    const h = homeserver(SMALL);
    const oom0 = oomCounters(SMALL.name).oomKill;
    const samples: { standard?: Sample[]; aging?: Sample[] } = {};
    let standard: Small512Result["standard"] = null;
    let standardError: string | undefined;
    if (w)
        try {
            const m = await measure(h, partner, w, pages, { ...config, note: presetNote });
            const { workload, ...rest } = m.result;
            standard = { ...rest, messagesSent: workload.messagesSent };
            samples.standard = m.samples;
        } catch (e) {
            standardError = String(e instanceof Error ? e.message : e);
            say(`${SMALL.name}: standard workload failed: ${standardError}`);
        }
    let agingResult: AgingResult | null = null;
    let agingError: string | undefined;
    if (aging) {
        try {
            const a = await agingPhase(h, partner, aging);
            agingResult = a.result;
            samples.aging = a.samples;
        } catch (e) {
            agingError = String(e instanceof Error ? e.message : e);
            say(`${SMALL.name}: aging workload failed: ${agingError}`);
        }
    }
    const counters = oomCounters(SMALL.name);
    const ref = reference.result?.p95LatencyMs ?? null;
    const p95 = standard?.p95LatencyMs ?? null;
    const result: Small512Result = {
        guest: `${SMALL.name} ${SMALL.ip}, boot.sh ${SMALL.memory}`,
        memoryCapMB: counters.limitMB,
        config,
        presetNote,
        coldDeploySeconds: cold.coldDeploySeconds,
        standard,
        standardError,
        ...(w ? {} : { standardNotRun: true }),
        aging: agingResult,
        agingError,
        oomKillsTotal: counters.oomKill - oom0,
        reference1GiB: { p95LatencyMs: ref, source: reference.source },
        p95Ratio: ref && p95 ? round1((p95 / ref) * 100)! / 100 : null,
    };
    say(
        `${SMALL.name}: OOM kills ${result.oomKillsTotal}; standard p95 ${String(p95)} ms against ${String(ref)} ms at 1 GiB (ratio ${String(result.p95Ratio)}); steady ${String(standard?.steadyMB)} MB, peak ${String(standard?.peakMB)} MB`,
    );
    await destroy(SMALL, true).catch((e: unknown) => say(`${SMALL.name}: destroy failed: ${String(e)}`));
    return { result, samples };
}
