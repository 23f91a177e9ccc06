// The benchmark: memory, latency and deploy times of the program's tuned defaults against Synapse's
// and PostgreSQL's stock settings, on the local testbed (1 GiB guests). Prints figures and a table
// of targets; it is not a pass/fail test (exit 0 whenever it could measure).
//
//   export PATH=$PWD/node_modules/.bin:$PATH
//   node bench/run.ts [--phases tuned,noop,bump,defaults] [--tuned-config '{"cacheFactor":"0.25"}'] [--workload FILE]
//   node bench/run.ts --phases aging,bigroom,small512 [--scale 0.05] [--aging-scale 0.25]   (issue 12's phases; see the README)
//   node bench/run.ts --phases aging512   (the aging workload alone on the 512 MiB guest)
//
// See bench/README.md for what is measured and how.
//
// This file: the arguments and the order of the phases. The phases are in lib/deployPhases.ts
// (partner, cold deploy, no-op up, bump) and lib/measure.ts (sampling a server under the workload,
// lib/workload.ts); the table and plot in lib/report.ts; the headline figures in lib/history.ts.
// Issue 12's phases: lib/aging.ts, lib/bigroom.ts, lib/small512.ts, their table lib/issue12Report.ts.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { appendHistory, historyEntry } from "./lib/history.ts";
import { plot, ratios, table, type Results } from "./lib/report.ts";
import { DEFAULTS, DEFAULTS_CONFIG, FROM_VERSION, homeserver, PARTNER, saveToken, TO_VERSION, TUNED } from "./lib/servers.ts";
import { BENCH_STATE, REPO, hostUp, isRunning, run, say, setLogFile, T0 } from "./lib/testbed.ts";
import type { ServerResult } from "./lib/measure.ts";
import type { PageServer } from "./lib/urlPreviews.ts";
import type { AgingWorkload } from "./lib/agingWorkload.ts";
import type { BigRoomWorkload } from "./lib/bigroom.ts";
import type { CommunityWorkload } from "./lib/community.ts";
import { communityTable } from "./lib/communityReport.ts";
import { issue12Headline, issue12Table } from "./lib/issue12Report.ts";
import type { Homeserver, Workload } from "./lib/workload.ts";

const HERE = import.meta.dirname;
const RESULTS = path.join(HERE, "results");
const HISTORY = path.join(RESULTS, "history.json");

/** Issue 12's phases that failed (their error is in the results; the run then exits 1). */
const phaseFailures: string[] = [];

/** Runs one of issue 12's phases; a failure is recorded in the results, and the others still run. */
async function guarded(name: string, res: Results, f: () => Promise<void>): Promise<void> {
    try {
        await f();
    } catch (e) {
        const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
        say(`${name} FAILED: ${msg}`);
        phaseFailures.push(name);
        res[name] = { error: msg.slice(0, 2000) };
    }
}

/** Ends the Matrix client's connections once the client is loaded (see main). */
let closeClient = (): void => undefined;

// --- arguments -----------------------------------------------------------------------------------

/** The phases --phases may name; without it, the first four (issue 12's run only when asked for). */
const ALL_PHASES = ["tuned", "noop", "bump", "defaults", "aging", "bigroom", "small512", "aging512", "community"];

/** The standard workload at a scale (--scale): fewer messages, media and previews, a shorter idle. */
function scaledWorkload(w: Workload, scale: number): Workload & { scale?: number } {
    if (scale >= 1) return w;
    const idle = Math.max(40, Math.round(w.idleSeconds * scale));
    return {
        ...w,
        scale,
        messages: Math.round(w.messages * scale),
        mediaUploads: Math.max(2, Math.round(w.mediaUploads * scale)),
        urlPreviews: Math.max(1, Math.round(w.urlPreviews * scale)),
        idleSeconds: idle,
        steadyWindowSeconds: Math.min(w.steadyWindowSeconds, idle - 10),
    };
}

function parseArgs() {
    const argv = process.argv.slice(2);
    const a = {
        phases: ["tuned", "noop", "bump", "defaults"],
        tunedConfig: {} as Record<string, unknown>,
        workload: path.join(HERE, "workload.json"),
        agingWorkload: path.join(HERE, "aging.json"),
        bigroomWorkload: path.join(HERE, "bigroom.json"),
        communityWorkload: path.join(HERE, "community.json"),
        scale: 1,
        /** the aging workload's own scale (--aging-scale); null: --scale's */
        agingScale: null as number | null,
        name: "latest",
    };
    for (let i = 0; i < argv.length; i++) {
        const v = () =>
            argv[++i] ??
            (() => {
                throw new Error(`${argv[i - 1]} needs a value`);
            })();
        switch (argv[i]) {
            case "--phases":
                a.phases = v().split(",").filter(Boolean);
                break;
            case "--tuned-config":
                a.tunedConfig = JSON.parse(v()) as Record<string, unknown>;
                break;
            case "--workload":
                a.workload = path.resolve(v());
                break;
            case "--name":
                a.name = v();
                break;
            case "--scale":
                a.scale = Number(v());
                if (!(a.scale > 0 && a.scale <= 1)) throw new Error("--scale: a number in (0, 1]");
                break;
            case "--aging-scale":
                a.agingScale = Number(v());
                if (!(a.agingScale > 0 && a.agingScale <= 1)) throw new Error("--aging-scale: a number in (0, 1]");
                break;
            case "--aging-workload":
                a.agingWorkload = path.resolve(v());
                break;
            case "--bigroom-workload":
                a.bigroomWorkload = path.resolve(v());
                break;
            case "--community-workload":
                a.communityWorkload = path.resolve(v());
                break;
            default:
                process.stderr.write(
                    `unknown argument ${argv[i]}\nusage: node bench/run.ts [--phases ${ALL_PHASES.join(",")}] [--tuned-config JSON] [--workload FILE] [--name NAME] [--scale S] [--aging-scale S] [--aging-workload FILE] [--bigroom-workload FILE] [--community-workload FILE]\n`,
                );
                process.exit(64);
        }
    }
    for (const p of a.phases) if (!ALL_PHASES.includes(p)) throw new Error(`unknown phase ${p}`);
    return a;
}

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

// --- main ----------------------------------------------------------------------------------------

async function main(): Promise<void> {
    const args = parseArgs();
    fs.mkdirSync(RESULTS, { recursive: true });
    fs.mkdirSync(BENCH_STATE, { recursive: true });
    const logFile = path.join(BENCH_STATE, "bench.log");
    setLogFile(logFile);
    const w = scaledWorkload(JSON.parse(fs.readFileSync(args.workload, "utf8")) as Workload, args.scale);
    const on512 = args.phases.includes("small512") || args.phases.includes("aging512");
    if (args.phases.includes("small512") && args.phases.includes("aging512")) throw new Error("--phases: small512 or aging512, not both (one 512 MiB guest)");
    const wantAging = args.phases.includes("aging") || on512;
    const agingW0 = wantAging ? (JSON.parse(fs.readFileSync(args.agingWorkload, "utf8")) as AgingWorkload) : null;
    const bigW0 = JSON.parse(fs.readFileSync(args.bigroomWorkload, "utf8")) as BigRoomWorkload;
    // Scaled, the room keeps at least 600 members: a complexity above the default limit (1.0).
    const bigW: BigRoomWorkload =
        args.scale < 1
            ? { ...bigW0, members: Math.max(600, Math.round(bigW0.members * args.scale)), history: Math.max(100, Math.round(bigW0.history * args.scale)) }
            : bigW0;
    const tunedExtra = args.tunedConfig;
    say(`phases ${args.phases.join(",")}; scale ${args.scale}; tuned config overrides ${JSON.stringify(tunedExtra)}; log ${logFile}`);
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
            latency:
                "send-to-sync: from the start of the sender's PUT to the arrival of the /sync response holding the event, at every other syncing client in the room on the same server",
        },
        tuned: args.phases.some((p) => ["tuned", "noop", "bump"].includes(p)) ? {} : prev.tuned,
        defaults: args.phases.includes("defaults") ? undefined : prev.defaults,
        // Issue 12's phases: figures of a phase not run are those of latest.json.
        aging: args.phases.includes("aging") ? undefined : prev.aging,
        bigroom: args.phases.includes("bigroom") ? undefined : prev.bigroom,
        small512: on512 ? undefined : prev.small512,
        // Issue 14's phase.
        community: args.phases.includes("community") ? undefined : prev.community,
        scale: args.scale,
    };
    const samplesOut: Record<string, unknown> = {
        tuned: args.phases.includes("tuned") ? undefined : prevSamples.tuned,
        defaults: args.phases.includes("defaults") ? undefined : prevSamples.defaults,
        aging: args.phases.includes("aging") ? undefined : prevSamples.aging,
        bigroom: args.phases.includes("bigroom") ? undefined : prevSamples.bigroom,
        small512: on512 ? undefined : prevSamples.small512,
        community: args.phases.includes("community") ? undefined : prevSamples.community,
    };
    if (!args.phases.includes("tuned") && prev.tuned) res.tuned = { ...prev.tuned };

    say("host services and template");
    await hostUp();
    // The Matrix client (lib/matrix.ts) reads the testbed's ACME roots when it is loaded, and pebble
    // makes a new root each time it starts: the modules that use the client are loaded only now that
    // hostUp() has (re)started pebble and saved its roots.
    const { bump, coldDeploy, ensurePartner, noopUp } = await import("./lib/deployPhases.ts");
    const { measure } = await import("./lib/measure.ts");
    const { PageServer } = await import("./lib/urlPreviews.ts");
    const { agent } = await import("./lib/matrix.ts");
    closeClient = () => void agent.close();
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
        const { scaledAging } = await import("./lib/aging.ts");
        const agingW = agingW0 ? scaledAging(agingW0, args.agingScale ?? args.scale) : null;
        if (agingW) res.agingWorkload = { file: path.relative(REPO, args.agingWorkload), ...agingW };
        await issue12Phases(args, res, samplesOut, partner, w, agingW, bigW, pages, tunedExtra);
        if (args.phases.includes("community"))
            await guarded("community", res, async () => {
                const { communityPhase, scaledCommunity } = await import("./lib/community.ts");
                const cw = scaledCommunity(JSON.parse(fs.readFileSync(args.communityWorkload, "utf8")) as CommunityWorkload, args.scale);
                const c = await communityPhase(partner, cw);
                res.community = c.result;
                samplesOut.community = c.samples;
            });
    } finally {
        pages.stop();
    }
    res.ratio = ratios(res.tuned, res.defaults);
    res.totalRunSeconds = Math.round((Date.now() - T0) / 1000);
    fs.writeFileSync(latestFile, JSON.stringify(res, null, 2) + "\n");
    fs.writeFileSync(samplesFile, JSON.stringify(samplesOut) + "\n");
    say("plotting");
    // The plot is the standard workload's: its samples are this run's only when tuned ran now
    // (else latest.json's, whose overrides are not this run's).
    const overrides = !args.phases.includes("tuned")
        ? " (an earlier run's samples)"
        : Object.keys(tunedExtra).length
          ? ` + ${Object.entries(tunedExtra)
                .map(([k, v]) => `${k}=${String(v)}`)
                .join(", ")}`
          : "";
    await plot(samplesFile, pngFile, `bench1, tuned${overrides}`);
    const tbl12 = issue12Table(res);
    const tbl14 = communityTable(res.community);
    const tbl =
        table(res) +
        (tbl12 ? `\n\nIssue 12 (aging, big room, 512 MiB)${args.scale < 1 ? `; this run at --scale ${args.scale}` : ""}:\n\n${tbl12}` : "") +
        (tbl14 ? `\n\nIssue 14 (the community: one process against workers)${args.scale < 1 ? `; this run at --scale ${args.scale}` : ""}:\n\n${tbl14}` : "");
    const tableFile = path.join(RESULTS, isLatest ? "table.md" : `${args.name}-table.md`);
    fs.writeFileSync(tableFile, tbl + "\n");
    // The headline figures, kept when the next run replaces these files.
    const entry = historyEntry(res, { ...git, files: [latestFile, samplesFile, pngFile, tableFile].map((f) => path.relative(REPO, f)) });
    const h12 = issue12Headline(res, args.phases);
    appendHistory(HISTORY, h12 ? { ...entry, ...(args.scale < 1 ? { scale: args.scale } : {}), issue12: h12 } : entry);
    process.stdout.write(
        `\n${tbl}\n\nresults: ${path.relative(process.cwd(), latestFile)}, plot: ${path.relative(process.cwd(), pngFile)}, history: ${path.relative(process.cwd(), HISTORY)}; total ${res.totalRunSeconds}s\n`,
    );
}

/** Issue 12's phases, in this order: aging (bench1), the big room (bench3 hosts, bench1 joins), 512 MiB (bench512: small512 or aging512). */
async function issue12Phases(
    args: ReturnType<typeof parseArgs>,
    res: Results,
    samplesOut: Record<string, unknown>,
    partner: Homeserver,
    w: Workload,
    agingW: (AgingWorkload & { scale: number }) | null,
    bigW: BigRoomWorkload,
    pages: PageServer,
    tunedExtra: Record<string, unknown>,
): Promise<void> {
    const { coldDeploy } = await import("./lib/deployPhases.ts");
    const { measure } = await import("./lib/measure.ts");
    if (args.phases.includes("aging") && agingW)
        await guarded("aging", res, async () => {
            // A fresh bench1 (empty database), so that the figures are those of these events only.
            await coldDeploy(TUNED, tunedExtra, partner);
            const { agingPhase } = await import("./lib/aging.ts");
            const a = await agingPhase(homeserver(TUNED), partner, agingW);
            res.aging = { ...a.result, config: { ...tunedExtra, note: "the program's defaults, plus these overrides" } };
            samplesOut.aging = a.samples;
        });
    if (args.phases.includes("bigroom"))
        await guarded("bigroom", res, async () => {
            // bench1 as it is when running (after aging: the aged server), else deployed fresh.
            if (!isRunning(TUNED.name)) await coldDeploy(TUNED, tunedExtra, partner);
            const { bigRoomPhase } = await import("./lib/bigroom.ts");
            const b = await bigRoomPhase(homeserver(TUNED), partner, bigW, tunedExtra);
            res.bigroom = { ...b.result, workload: bigW };
            samplesOut.bigroom = b.samples;
        });
    if (args.phases.includes("small512"))
        await guarded("small512", res, async () => {
            const { small512Phase } = await import("./lib/small512.ts");
            // The 1 GiB figure of the same run: the tuned phase's, else the same workload on a fresh bench1.
            let reference: { result: ServerResult | undefined; source: string };
            if (args.phases.includes("tuned") && res.tuned) reference = { result: res.tuned as unknown as ServerResult, source: "the tuned phase of this run" };
            else {
                await coldDeploy(TUNED, tunedExtra, partner);
                const m = await measure(homeserver(TUNED), partner, w, pages, { ...tunedExtra });
                reference = { result: m.result, source: "bench1 (1 GiB), the same workload in this run" };
                samplesOut.small512Reference = m.samples;
            }
            const s = await small512Phase(partner, w, agingW, pages, tunedExtra, reference);
            const { workload: refWorkload, ...refRest } = reference.result ?? ({ workload: undefined } as Partial<ServerResult>);
            res.small512 = { ...s.result, reference1GiBFigures: { ...refRest, messagesSent: refWorkload?.messagesSent ?? null } };
            samplesOut.small512 = s.samples;
        });
    // The aging workload alone at 512 MiB: small512's standard workload (and its 1 GiB reference)
    // takes 20 minutes that a full-size aging run at 512 MiB needs more.
    if (args.phases.includes("aging512"))
        await guarded("small512", res, async () => {
            const { small512Phase } = await import("./lib/small512.ts");
            const s = await small512Phase(partner, null, agingW, pages, tunedExtra, { result: undefined, source: "not measured (aging512)" });
            res.small512 = { ...s.result, reference1GiBFigures: null };
            samplesOut.small512 = s.samples;
        });
}

main().then(
    () => {
        closeClient();
        if (phaseFailures.length) say(`failed: ${phaseFailures.join(", ")} (their errors are in the results)`);
        process.exit(phaseFailures.length ? 1 : 0);
    },
    (e: unknown) => {
        say(`FAILED: ${e instanceof Error ? e.stack : String(e)}`);
        process.exit(1);
    },
);
