// The benchmark: memory, latency and deploy times of the program's tuned defaults against Synapse's
// and PostgreSQL's stock settings, on the local testbed (1 GiB guests). Prints figures and a table
// of targets; it is not a pass/fail test (exit 0 whenever it could measure).
//
//   export PATH=$PWD/node_modules/.bin:$PATH
//   node bench/run.ts [--phases tuned,noop,bump,defaults] [--tuned-config '{"cacheFactor":"0.25"}'] [--workload FILE]
//
// See bench/README.md for what is measured and how.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fetch } from "undici";
import { appendHistory, historyEntry } from "./lib/history.ts";
import { adminBatch, agent, call, type AdminHandle } from "./lib/matrix.ts";
import { Sampler, type Sample } from "./lib/sampler.ts";
import {
    B,
    BENCH_STATE,
    REPO,
    boot,
    deploy,
    deployUp,
    destroy,
    hostUp,
    isRunning,
    machineId,
    mustRun,
    run,
    say,
    secretsFor,
    setLogFile,
    stackConfig,
    T0,
    writeStackConfig,
    type Server,
} from "./lib/testbed.ts";
import { PageServer, percentile, runWorkload, type Homeserver, type Workload, type WorkloadResult } from "./lib/workload.ts";

const HERE = import.meta.dirname;
const RESULTS = path.join(HERE, "results");
const HISTORY = path.join(RESULTS, "history.json");
const VENV = path.join(BENCH_STATE, "venv");

const FROM_VERSION = process.env.BENCH_SYNAPSE_FROM || "1.162.0";
const TO_VERSION = process.env.BENCH_SYNAPSE_TO || "1.163.2";

const TUNED: Server = { name: "bench1", ip: "10.250.0.50", user: "root" };
const DEFAULTS: Server = { name: "bench2", ip: "10.250.0.51", user: "root" };
const PARTNER: Server = { name: "bench3", ip: "10.250.0.52", user: "root" };

/**
 * "defaults": Synapse's and PostgreSQL's stock settings, through the program's own config keys
 * (Synapse: presence on, caches.global_factor 0.5, cp_max 10, glibc malloc; PostgreSQL:
 * shared_buffers 128MB, max_connections 100, work_mem 4MB, replication/parallel workers/JIT as
 * shipped; nginx: worker_processes auto = 2 here).
 */
const DEFAULTS_CONFIG = {
    presence: true,
    cacheFactor: "0.5",
    databasePoolMax: 10,
    synapseJemalloc: false,
    postgresSharedBuffersMb: 128,
    postgresMaxConnections: 100,
    postgresWorkMemMb: 4,
    postgresLowMemory: false,
    nginxWorkerProcesses: 2,
};

const TARGETS = { steadyMB: 450, peakMB: 600, ratio: 0.6, coldDeploySeconds: 300, noopUpSeconds: 30, bumpDowntimeSeconds: 30 };

// --- arguments -----------------------------------------------------------------------------------

function parseArgs() {
    const argv = process.argv.slice(2);
    const a = { phases: ["tuned", "noop", "bump", "defaults"], tunedConfig: {} as Record<string, unknown>, workload: path.join(HERE, "workload.json"), name: "latest" };
    for (let i = 0; i < argv.length; i++) {
        const v = () => argv[++i] ?? (() => { throw new Error(`${argv[i - 1]} needs a value`); })();
        switch (argv[i]) {
            case "--phases": a.phases = v().split(",").filter(Boolean); break;
            case "--tuned-config": a.tunedConfig = JSON.parse(v()) as Record<string, unknown>; break;
            case "--workload": a.workload = path.resolve(v()); break;
            case "--name": a.name = v(); break;
            default:
                process.stderr.write(`unknown argument ${argv[i]}\nusage: node bench/run.ts [--phases tuned,noop,bump,defaults] [--tuned-config JSON] [--workload FILE] [--name NAME]\n`);
                process.exit(64);
        }
    }
    for (const p of a.phases) if (!["tuned", "noop", "bump", "defaults"].includes(p)) throw new Error(`unknown phase ${p}`);
    return a;
}

// --- helpers -------------------------------------------------------------------------------------

const round1 = (v: number | null | undefined) => (v === null || v === undefined ? null : Math.round(v * 10) / 10);
const median = (v: number[]) => percentile(v, 50);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function homeserver(s: Server): Homeserver {
    const secrets = secretsFor(s.name);
    return {
        server: s,
        domain: `${s.name}.test`,
        base: `https://matrix.${s.name}.test`,
        admin: { ip: s.ip, user: "admin", password: secrets.adminPassword, token: cachedToken(s.name) },
    };
}

function cachedToken(name: string): string | undefined {
    try {
        return (JSON.parse(fs.readFileSync(path.join(BENCH_STATE, "tokens.json"), "utf8")) as Record<string, string>)[name];
    } catch {
        return undefined;
    }
}
function saveToken(name: string, h: AdminHandle): void {
    const file = path.join(BENCH_STATE, "tokens.json");
    let all: Record<string, string> = {};
    try {
        all = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, string>;
    } catch {
        /* first time */
    }
    if (h.token) all[name] = h.token;
    fs.writeFileSync(file, JSON.stringify(all, null, 2) + "\n", { mode: 0o600 });
}

async function configFor(s: Server, version: string, extra: Record<string, unknown>, tag?: string): Promise<string> {
    const peers = s === PARTNER ? [TUNED.name, DEFAULTS.name] : [PARTNER.name];
    return writeStackConfig(s, stackConfig(s, version, peers, extra, await machineId(s)), tag);
}

/** Lines of the host's kernel log about an OOM kill in the guest's memory cgroup. */
async function dmesgOom(name: string): Promise<string[]> {
    const r = await run("dmesg", [], { prefix: "dmesg" });
    return r.stdout.split("\n").filter((l) => /oom|out of memory/i.test(l) && l.includes(`testbed-${name}`));
}

/** A server that is up, deployed and federating with the partner (bench3 can read its profile). */
async function waitFederating(partner: Homeserver, target: Homeserver, timeoutMs = 180_000): Promise<number> {
    const t0 = performance.now();
    let last = "";
    while (performance.now() - t0 < timeoutMs) {
        try {
            // The partner's admin asks for a profile on the new server: a federation query.
            const [[st, body]] = await adminBatch(partner.admin, [["GET", `/_matrix/client/v3/profile/${encodeURIComponent(`@admin:${target.domain}`)}`]]);
            if (st === 200) return (performance.now() - t0) / 1000;
            last = `${st} ${JSON.stringify(body)}`;
        } catch (e) {
            last = String(e);
        }
        await sleep(1000);
    }
    throw new Error(`${partner.domain} cannot reach ${target.domain} over federation: ${last}`);
}

/** A hash of the program's files: a no-op up is only a no-op when the program did not change since the deploy. */
function programHash(): string {
    const files: string[] = [];
    const walk = (d: string) => {
        for (const e of fs.readdirSync(path.join(REPO, d), { withFileTypes: true })) {
            const rel = path.join(d, e.name);
            if (e.isDirectory()) walk(rel);
            else files.push(rel);
        }
    };
    for (const d of ["components", "files"]) walk(d);
    files.push("index.ts", "Pulumi.yaml");
    const h = crypto.createHash("sha256");
    for (const f of files.sort()) h.update(f + "\0" + fs.readFileSync(path.join(REPO, f)) + "\0");
    return h.digest("hex").slice(0, 16);
}
let deployedProgram = "";

/** The commit checked out, and whether the program's files differ from it: recorded in the history. */
async function gitHead(): Promise<{ head: string | null; programChangedFromHead: boolean | null }> {
    try {
        const h = await run("git", ["rev-parse", "--short", "HEAD"], { prefix: "git" });
        const st = await run("git", ["status", "--porcelain", "--", "index.ts", "Pulumi.yaml", "components", "files"], { prefix: "git" });
        return { head: h.code === 0 ? h.stdout.trim() : null, programChangedFromHead: st.code === 0 ? st.stdout.trim() !== "" : null };
    } catch {
        return { head: null, programChangedFromHead: null }; // no git here
    }
}

// --- phases --------------------------------------------------------------------------------------

async function ensurePartner(): Promise<Homeserver> {
    const t0 = performance.now();
    if (!isRunning(PARTNER.name)) {
        // Leftovers of a guest that is gone (the host rebooted): clear them, keep its data disk.
        if (fs.existsSync(`${B}/run-${PARTNER.name}`)) await destroy(PARTNER, false);
        await boot(PARTNER);
    }
    const r = await deployUp(PARTNER, await configFor(PARTNER, FROM_VERSION, {}));
    say(`${PARTNER.name}: deployed (${JSON.stringify(r.changes)}) in ${((performance.now() - t0) / 1000).toFixed(0)}s`);
    if (!(await answersTls(`https://matrix.${PARTNER.name}.test`))) {
        // Its certificate is from an earlier ACME CA (pebble makes a new one each start, e.g. after
        // the host rebooted): the partner's clients would all fail. Start it over, from an empty disk.
        say(`${PARTNER.name}: not answering with a certificate of today's test CA; deploying it again from nothing`);
        await destroy(PARTNER, true);
        await deploy("destroy", PARTNER.name);
        await boot(PARTNER);
        const again = await deployUp(PARTNER, await configFor(PARTNER, FROM_VERSION, {}));
        say(`${PARTNER.name}: deployed (${JSON.stringify(again.changes)})`);
        if (!(await answersTls(`https://matrix.${PARTNER.name}.test`))) throw new Error(`${PARTNER.name} does not answer at https://matrix.${PARTNER.name}.test`);
    }
    return homeserver(PARTNER);
}

/** The homeserver answers the client API over TLS that this run trusts. */
async function answersTls(base: string): Promise<boolean> {
    try {
        const r = await fetch(`${base}/_matrix/client/versions`, { dispatcher: agent, signal: AbortSignal.timeout(15_000) });
        return r.ok;
    } catch (e) {
        say(`${base}: ${String((e as Error).cause ?? e)}`);
        return false;
    }
}

interface ColdDeploy {
    coldDeploySeconds: number;
    breakdown: { destroySeconds: number; forgetStateSeconds: number; bootSeconds: number; upSeconds: number; federationSeconds: number };
    changes: Record<string, number>;
}

/** Empty host → federating homeserver: destroy (data wiped), forget the stack, boot, deploy.ts up. */
async function coldDeploy(s: Server, extra: Record<string, unknown>, partner: Homeserver): Promise<ColdDeploy> {
    let t = performance.now();
    const lap = () => {
        const now = performance.now();
        const d = (now - t) / 1000;
        t = now;
        return Math.round(d * 10) / 10;
    };
    await destroy(s, true);
    const destroySeconds = lap();
    await deploy("destroy", s.name);
    const forgetStateSeconds = lap();
    say(`${s.name}: cold deploy (boot + deploy.ts up + first federation request)`);
    const tCold = performance.now();
    await boot(s);
    const bootSeconds = lap();
    if (s === TUNED) deployedProgram = programHash();
    const up = await deployUp(s, await configFor(s, FROM_VERSION, extra));
    const upSeconds = lap();
    const h = homeserver(s);
    const federationSeconds = round1(await waitFederating(partner, h))!;
    saveToken(partner.server.name, partner.admin);
    const coldDeploySeconds = round1((performance.now() - tCold) / 1000)!;
    say(`${s.name}: cold deploy ${coldDeploySeconds}s (boot ${bootSeconds}s, up ${upSeconds}s, federation ${federationSeconds}s)`);
    return { coldDeploySeconds, breakdown: { destroySeconds, forgetStateSeconds, bootSeconds, upSeconds, federationSeconds }, changes: up.changes };
}

interface ServerResult {
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

async function measure(target: Homeserver, partner: Homeserver, w: Workload, pages: PageServer, config: Record<string, unknown>): Promise<{ result: ServerResult; samples: Sample[] }> {
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
        hostLoad1mDuringMessages: { mean: loads.length ? round1(loads.reduce((a, b) => a + b, 0) / loads.length) : null, max: loads.length ? round1(Math.max(...loads)) : null },
        workload: wr,
    };
    say(`${name}: steady ${result.steadyMB} MB, peak ${result.peakMB} MB, p50 ${result.p50LatencyMs} ms, p95 ${result.p95LatencyMs} ms, OOM kills ${oomKills}`);
    return { result, samples };
}

async function noopUp(s: Server, extra: Record<string, unknown>) {
    const cfg = await configFor(s, FROM_VERSION, extra);
    say(`${s.name}: no-op deploy.ts up`);
    const up = await deployUp(s, cfg);
    const pv = await deploy("preview", s.name, ["--expect-no-changes"]);
    const res = {
        noopUpSeconds: round1(up.seconds)!,
        noopChanges: up.changed,
        noopUpSummary: up.changes,
        previewSeconds: round1(pv.seconds),
        previewExpectNoChangesExit: pv.code,
        previewSummary: pv.changes,
        // false: the program's files changed (someone edited the work tree) between the cold deploy and this up.
        programUnchangedSinceDeploy: deployedProgram === "" ? null : deployedProgram === programHash(),
    };
    say(`${s.name}: no-op up ${res.noopUpSeconds}s, ${res.noopChanges} changes; preview --expect-no-changes exit ${pv.code} in ${res.previewSeconds}s`);
    return res;
}

async function bump(h: Homeserver, extra: Record<string, unknown>) {
    const s = h.server;
    const cfg = await configFor(s, TO_VERSION, extra, `${s.name}-bump`);
    const polls: { t: number; ok: boolean; ms: number }[] = [];
    let stop = false;
    const t0 = performance.now();
    const poller = (async () => {
        while (!stop) {
            const start = performance.now();
            let ok = false;
            try {
                const r = await fetch(`${h.base}/_matrix/client/versions`, { dispatcher: agent, signal: AbortSignal.timeout(2000) });
                ok = r.status === 200 && Array.isArray(((await r.json()) as { versions?: unknown }).versions);
            } catch {
                ok = false;
            }
            polls.push({ t: (start - t0) / 1000, ok, ms: performance.now() - start });
            const wait = 200 - (performance.now() - start);
            if (wait > 0) await sleep(wait);
        }
    })();
    say(`${s.name}: synapseVersion ${FROM_VERSION} -> ${TO_VERSION} (polling /_matrix/client/versions every 0.2 s)`);
    await sleep(2000);
    const up = await deployUp(s, cfg);
    await sleep(3000);
    stop = true;
    await poller;
    // Downtime: the longest run of failed polls, from the first failure to the next success.
    let longest = 0;
    let failedPolls = 0;
    let gapStart: number | null = null;
    const gaps: { fromS: number; toS: number }[] = [];
    for (const p of polls) {
        if (!p.ok) {
            failedPolls++;
            gapStart ??= p.t;
        } else if (gapStart !== null) {
            longest = Math.max(longest, p.t - gapStart);
            gaps.push({ fromS: round1(gapStart)!, toS: round1(p.t)! });
            gapStart = null;
        }
    }
    if (gapStart !== null) {
        longest = Math.max(longest, polls[polls.length - 1].t - gapStart);
        gaps.push({ fromS: round1(gapStart)!, toS: round1(polls[polls.length - 1].t)! });
    }
    const v = await call<{ server?: { version?: string } }>(h.base, undefined, "GET", "/_matrix/federation/v1/version").catch(() => ({}) as { server?: { version?: string } });
    const res = {
        bumpDowntimeSeconds: round1(longest)!,
        bumpUpSeconds: round1(up.seconds),
        bumpChanges: up.changed,
        bumpSummary: up.changes,
        bumpPolls: polls.length,
        bumpFailedPolls: failedPolls,
        bumpGaps: gaps,
        bumpDeployStartedAtS: 2,
        versionAfter: v.server?.version ?? null,
    };
    say(`${s.name}: bump up ${res.bumpUpSeconds}s, downtime ${res.bumpDowntimeSeconds}s (${failedPolls}/${polls.length} polls failed), now ${res.versionAfter}`);
    return res;
}

// --- report --------------------------------------------------------------------------------------

type Results = Record<string, unknown> & { tuned?: Record<string, unknown>; defaults?: Record<string, unknown>; ratio?: Record<string, unknown> };

function ratios(t: Record<string, unknown> | undefined, d: Record<string, unknown> | undefined) {
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

function table(res: Results): string {
    const t = (res.tuned ?? {}) as Record<string, unknown>;
    const d = (res.defaults ?? {}) as Record<string, unknown>;
    const ratio = (res.ratio ?? {}) as Record<string, unknown>;
    const pp = (x: Record<string, unknown>, g: string, k = "steadyPssMB") => ((x.perProcess as Record<string, Record<string, unknown>>)?.[g] ?? {})[k];
    const f = (v: unknown, unit = "") => (v === undefined || v === null ? "-" : `${v}${unit}`);
    const met = (ok: boolean | null) => (ok === null ? "not measured" : ok ? "MET" : "NOT MET");
    const num = (v: unknown) => (typeof v === "number" ? v : null);
    const rows: string[][] = [
        ["measure", "tuned (bench1)", "defaults (bench2)", "tuned/defaults", "target", "status"],
        ["total steady (PSS, MB)", f(t.steadyMB), f(d.steadyMB), f(ratio.steadyMB), `<= ${TARGETS.steadyMB} MB`, met(num(t.steadyMB) === null ? null : num(t.steadyMB)! <= TARGETS.steadyMB)],
        ["total peak (PSS, MB)", f(t.peakMB), f(d.peakMB), f(ratio.peakMB), `<= ${TARGETS.peakMB} MB`, met(num(t.peakMB) === null ? null : num(t.peakMB)! <= TARGETS.peakMB)],
        ["OOM kills (1 GiB cap)", f(t.oomKills), f(d.oomKills), "", "0", met(num(t.oomKills) === null ? null : t.oomKills === 0 && t.synapseRestarts === 0)],
        ["tuned <= 0.6x defaults (steady)", "", "", f(ratio.steadyMB), `<= ${TARGETS.ratio}`, met(num(ratio.steadyMB) === null ? null : num(ratio.steadyMB)! <= TARGETS.ratio)],
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
        ["cold deploy (s)", f(t.coldDeploySeconds), "", "", `<= ${TARGETS.coldDeploySeconds} s`, met(num(t.coldDeploySeconds) === null ? null : num(t.coldDeploySeconds)! <= TARGETS.coldDeploySeconds)],
        [
            "no-op up (s / changes)",
            t.noopUpSeconds === undefined ? "-" : `${f(t.noopUpSeconds)} / ${f(t.noopChanges)}`,
            "",
            "",
            `0 changes, <= ${TARGETS.noopUpSeconds} s`,
            t.programUnchangedSinceDeploy === false
                ? "not measured (the program changed during the run)"
                : met(num(t.noopUpSeconds) === null ? null : t.noopChanges === 0 && num(t.noopUpSeconds)! <= TARGETS.noopUpSeconds && t.previewExpectNoChangesExit === 0),
        ],
        ["bump downtime (s)", f(t.bumpDowntimeSeconds), "", "", `<= ${TARGETS.bumpDowntimeSeconds} s`, met(num(t.bumpDowntimeSeconds) === null ? null : num(t.bumpDowntimeSeconds)! <= TARGETS.bumpDowntimeSeconds)],
        ["swap used", "not measurable here", "not measurable here", "", "", "not measurable here"],
    ];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    const line = (r: string[]) => "| " + r.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |";
    return [line(rows[0]), "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|", ...rows.slice(1).map(line)].join("\n");
}

async function plot(samplesFile: string, out: string, tunedLabel: string): Promise<void> {
    if (!fs.existsSync(path.join(VENV, "bin", "python"))) {
        say(`making a Python venv with matplotlib in ${VENV}`);
        await mustRun("python3", ["-m", "venv", VENV]);
    }
    const probe = await run(path.join(VENV, "bin", "python"), ["-c", "import matplotlib"]);
    if (probe.code !== 0) await mustRun(path.join(VENV, "bin", "pip"), ["install", "--quiet", "matplotlib"]);
    await mustRun(path.join(VENV, "bin", "python"), [path.join(HERE, "plot.py"), samplesFile, out, tunedLabel]);
}

// --- main ----------------------------------------------------------------------------------------

async function main(): Promise<void> {
    const args = parseArgs();
    fs.mkdirSync(RESULTS, { recursive: true });
    fs.mkdirSync(BENCH_STATE, { recursive: true });
    const logFile = path.join(BENCH_STATE, "bench.log");
    setLogFile(logFile);
    const w = JSON.parse(fs.readFileSync(args.workload, "utf8")) as Workload;
    const tunedExtra = args.tunedConfig;
    say(`phases ${args.phases.join(",")}; tuned config overrides ${JSON.stringify(tunedExtra)}; log ${logFile}`);
    const git = await gitHead();

    // Phases not run now are taken from the last full results (latest.json): e.g. a tuned variant
    // (--phases tuned --tuned-config ... --name NAME) is compared with the defaults measured there.
    const latest = { json: path.join(RESULTS, "latest.json"), samples: path.join(RESULTS, "samples.json") };
    const isLatest = args.name === "latest";
    const latestFile = isLatest ? latest.json : path.join(RESULTS, `${args.name}.json`);
    const samplesFile = isLatest ? latest.samples : path.join(RESULTS, `${args.name}-samples.json`);
    const pngFile = path.join(RESULTS, isLatest ? "memory.png" : `${args.name}-memory.png`);
    const prev = fs.existsSync(latest.json) ? (JSON.parse(fs.readFileSync(latest.json, "utf8")) as Results) : {};
    const prevSamples = fs.existsSync(latest.samples) ? (JSON.parse(fs.readFileSync(latest.samples, "utf8")) as Record<string, unknown>) : {};
    const res: Results = {
        generatedAt: new Date().toISOString(),
        name: args.name,
        phasesRun: args.phases,
        workload: { file: path.relative(REPO, args.workload), ...w },
        versions: { synapse: FROM_VERSION, bumpTo: TO_VERSION },
        host: { cpus: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), guestMemoryCap: "1 GiB (v1 memory cgroup)" },
        definitions: {
            steadyMB: `median of the total PSS (all processes in the guest but the sampler) over the last ${w.steadyWindowSeconds} s of the ${w.idleSeconds} s idle period after the workload`,
            peakMB: "maximum total PSS over the whole run (baseline, setup, messages, idle), 1 s samples",
            latency: "send-to-sync: from the start of the sender's PUT to the arrival of the /sync response holding the event, at every other syncing client in the room on the same server",
        },
        tuned: args.phases.some((p) => ["tuned", "noop", "bump"].includes(p)) ? {} : prev.tuned,
        defaults: args.phases.includes("defaults") ? undefined : prev.defaults,
    };
    const samplesOut: Record<string, unknown> = { tuned: args.phases.includes("tuned") ? undefined : prevSamples.tuned, defaults: args.phases.includes("defaults") ? undefined : prevSamples.defaults };
    if (!args.phases.includes("tuned") && prev.tuned) res.tuned = { ...prev.tuned };

    say("host services and template");
    await hostUp();
    const pages = new PageServer("10.250.0.1", 8097);
    await pages.start();
    try {
        say(`${PARTNER.name}: up (reused when running)`);
        const partner = await ensurePartner();
        saveToken(PARTNER.name, partner.admin);

        if (args.phases.includes("tuned")) {
            const cold = await coldDeploy(TUNED, tunedExtra, partner);
            const m = await measure(homeserver(TUNED), partner, w, pages, { ...tunedExtra, note: "the program's defaults, plus these overrides" });
            res.tuned = { ...m.result, coldDeploySeconds: cold.coldDeploySeconds, coldDeploy: cold };
            samplesOut.tuned = m.samples;
        } else if (args.phases.some((p) => p === "noop" || p === "bump")) {
            // A fresh bench1 at the "from" version, deployed from the program as it is now.
            const cold = await coldDeploy(TUNED, tunedExtra, partner);
            res.tuned = { ...(res.tuned ?? {}), coldDeploySeconds: cold.coldDeploySeconds, coldDeploy: cold };
        }
        if (args.phases.includes("noop")) res.tuned = { ...(res.tuned ?? {}), ...(await noopUp(TUNED, tunedExtra)) };
        if (args.phases.includes("bump")) res.tuned = { ...(res.tuned ?? {}), ...(await bump(homeserver(TUNED), tunedExtra)) };
        if (args.phases.includes("defaults")) {
            const fresh = await coldDeploy(DEFAULTS, DEFAULTS_CONFIG, partner);
            const m = await measure(homeserver(DEFAULTS), partner, w, pages, DEFAULTS_CONFIG);
            res.defaults = { ...m.result, freshDeploySeconds: fresh.coldDeploySeconds };
            samplesOut.defaults = m.samples;
        }
    } finally {
        pages.stop();
    }
    res.ratio = ratios(res.tuned, res.defaults);
    res.totalRunSeconds = Math.round((Date.now() - T0) / 1000);
    fs.writeFileSync(latestFile, JSON.stringify(res, null, 2) + "\n");
    fs.writeFileSync(samplesFile, JSON.stringify(samplesOut) + "\n");
    say("plotting");
    const overrides = Object.keys(tunedExtra).length ? ` + ${Object.entries(tunedExtra).map(([k, v]) => `${k}=${String(v)}`).join(", ")}` : "";
    await plot(samplesFile, pngFile, `bench1, tuned${overrides}`);
    const tbl = table(res);
    const tableFile = path.join(RESULTS, isLatest ? "table.md" : `${args.name}-table.md`);
    fs.writeFileSync(tableFile, tbl + "\n");
    // The headline figures, kept when the next run replaces these files.
    appendHistory(HISTORY, historyEntry(res, { ...git, files: [latestFile, samplesFile, pngFile, tableFile].map((f) => path.relative(REPO, f)) }));
    process.stdout.write(
        `\n${tbl}\n\nresults: ${path.relative(process.cwd(), latestFile)}, plot: ${path.relative(process.cwd(), pngFile)}, history: ${path.relative(process.cwd(), HISTORY)}; total ${res.totalRunSeconds}s\n`,
    );
}

main().then(
    () => {
        void agent.close();
        process.exit(0);
    },
    (e: unknown) => {
        say(`FAILED: ${e instanceof Error ? e.stack : String(e)}`);
        process.exit(1);
    },
);
