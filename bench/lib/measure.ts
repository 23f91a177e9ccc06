// One server's measurement: the guest sampled every second through a 10 s baseline, the workload
// and the idle period, then the figures: steady and peak PSS per process group, the memory cgroup,
// OOM kills and Synapse restarts, send-to-sync latency, CPU time and the host's load.
import * as os from "node:os";
import { median, round1, sleep } from "./figures.ts";
import { Sampler, type Sample } from "./sampler.ts";
import { saveToken } from "./servers.ts";
import { run, say } from "./testbed.ts";
import type { PageServer } from "./urlPreviews.ts";
import { runWorkload, type Homeserver, type Workload, type WorkloadResult } from "./workload.ts";

/** Lines of the host's kernel log about an OOM kill in the guest's memory cgroup. */
async function dmesgOom(name: string): Promise<string[]> {
    const r = await run("dmesg", [], { prefix: "dmesg" });
    return r.stdout.split("\n").filter((l) => /oom|out of memory/i.test(l) && l.includes(`testbed-${name}`));
}

/** One server's figures (`tuned` / `defaults` in latest.json; bench/README.md defines each). */
export interface ServerResult {
    steadyMB: number | null;
    peakMB: number;
    oomKills: number;
    p50LatencyMs: number | null;
    p95LatencyMs: number | null;
    perProcess: Record<string, Record<string, number | null>>;
    cgroup: Record<string, number | null>;
    swap: string;
    synapseRestarts: number;
    config: Record<string, unknown>;
    loadAverageAtStart: number[];
    messagePhaseCpuSeconds: Record<string, number | null>;
    hostLoad1mDuringMessages: { mean: number | null; max: number | null };
    workload: WorkloadResult;
}

/** Samples the guest while the workload runs, and reduces the samples to the server's figures. */
export async function measure(
    target: Homeserver,
    partner: Homeserver,
    w: Workload,
    pages: PageServer,
    config: Record<string, unknown>,
): Promise<{ result: ServerResult; samples: Sample[] }> {
    const name = target.server.name;
    const sampler = new Sampler(name, target.server.ip);
    const oomBefore = await dmesgOom(name);
    pages.hits = 0;
    const loadAverageAtStart = os.loadavg().map((v) => Math.round(v * 100) / 100);
    sampler.phase = "baseline";
    await sampler.start(3600);
    say(`${name}: sampling; 10 s baseline`);
    await sleep(10_000);
    let wr: WorkloadResult;
    try {
        wr = await runWorkload(w, target, partner, sampler, pages);
    } finally {
        sampler.stop();
        saveToken(name, target.admin);
        saveToken(partner.server.name, partner.admin);
    }
    const samples = sampler.samples;
    const oomAfter = await dmesgOom(name);
    const idle = wr.phases.find((p) => p.name === "idle")!;
    const steadyFrom = idle.endT - w.steadyWindowSeconds;
    const steady = samples.filter((s) => s.phase === "idle" && s.t >= steadyFrom && s.t <= idle.endT);
    const group = (g: "synapse" | "postgres" | "nginx" | "other") => ({
        steadyPssMB: round1(median(steady.map((s) => s.mb[g]))),
        peakPssMB: round1(Math.max(...samples.map((s) => s.mb[g]))),
        steadyRssMB: round1(median(steady.map((s) => s.rssMb[g]))),
        peakRssMB: round1(Math.max(...samples.map((s) => s.rssMb[g]))),
        ...(g === "postgres" || g === "nginx" ? { processes: median(steady.map((s) => s.counts[g])) } : {}),
    });
    const cg = samples.map((s) => s.cgroup).filter((c): c is NonNullable<Sample["cgroup"]> => !!c);
    const cgSteady = steady.map((s) => s.cgroup).filter((c): c is NonNullable<Sample["cgroup"]> => !!c);
    const pids = samples.map((s) => s.synapsePid);
    let restarts = 0;
    for (let i = 1; i < pids.length; i++) if (pids[i] !== null && pids[i - 1] !== null && pids[i] !== pids[i - 1]) restarts++;
    restarts += pids.filter((p, i) => p === null && (i === 0 || pids[i - 1] !== null)).length;
    // CPU time the server spent on the message phase (Synapse, PostgreSQL's processes summed), and the
    // host's load meanwhile (the two cores are shared with every other guest on the testbed).
    const msgPhase = samples.filter((s) => s.phase === "messages");
    const cpu = (g: "synapse" | "postgres" | "nginx") =>
        msgPhase.length > 1 && msgPhase[0].cpuSeconds ? round1(msgPhase[msgPhase.length - 1].cpuSeconds[g] - msgPhase[0].cpuSeconds[g]) : null;
    const loads = msgPhase.map((s) => s.hostLoad1m).filter((v) => typeof v === "number");
    const oomKills = (cg.length ? cg[cg.length - 1].oomKill - cg[0].oomKill : 0) + Math.max(0, oomAfter.length - oomBefore.length);
    const result: ServerResult = {
        steadyMB: round1(median(steady.map((s) => s.mb.total))),
        peakMB: round1(Math.max(...samples.map((s) => s.mb.total)))!,
        oomKills,
        p50LatencyMs: wr.latency.local.p50,
        p95LatencyMs: wr.latency.local.p95,
        perProcess: { synapse: group("synapse"), postgres: group("postgres"), nginx: group("nginx"), other: group("other") },
        cgroup: {
            steadyRssMB: round1(median(cgSteady.map((c) => c.rssMb))),
            steadyShmemMB: round1(median(cgSteady.map((c) => c.shmemMb))),
            steadyCacheMB: round1(median(cgSteady.map((c) => c.cacheMb))),
            peakRssMB: round1(Math.max(...cg.map((c) => c.rssMb))),
            peakRssPlusShmemMB: round1(Math.max(...cg.map((c) => c.rssMb + c.shmemMb))),
            peakUsageMB: round1(Math.max(...cg.map((c) => c.usageMb))),
            failcntDelta: cg.length ? cg[cg.length - 1].failcnt - cg[0].failcnt : null,
            oomKillDelta: cg.length ? cg[cg.length - 1].oomKill - cg[0].oomKill : null,
            swapMB: round1(Math.max(0, ...cg.map((c) => c.swapMb))),
        },
        swap: "not measurable here (swapon is not permitted in the container guests; the host has no swap)",
        synapseRestarts: restarts,
        config,
        loadAverageAtStart,
        messagePhaseCpuSeconds: { synapse: cpu("synapse"), postgres: cpu("postgres"), nginx: cpu("nginx") },
        hostLoad1mDuringMessages: {
            mean: loads.length ? round1(loads.reduce((a, b) => a + b, 0) / loads.length) : null,
            max: loads.length ? round1(Math.max(...loads)) : null,
        },
        workload: wr,
    };
    say(`${name}: steady ${result.steadyMB} MB, peak ${result.peakMB} MB, p50 ${result.p50LatencyMs} ms, p95 ${result.p95LatencyMs} ms, OOM kills ${oomKills}`);
    return { result, samples };
}
