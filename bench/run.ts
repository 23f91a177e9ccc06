// The benchmark: memory, latency and deploy times of the program's tuned defaults against Synapse's
// and PostgreSQL's stock settings, on the local testbed (1 GiB guests). Prints figures and a table
// of targets; it is not a pass/fail test (exit 0 whenever it could measure).
//
//   export PATH=$PWD/node_modules/.bin:$PATH
//   node bench/run.ts [--phases tuned,noop,bump,defaults] [--tuned-config '{"cacheFactor":"0.25"}'] [--workload FILE]
//
// See bench/README.md for what is measured and how.
//
// This file: the arguments and the order of the phases. The phases are in lib/deployPhases.ts
// (partner, cold deploy, no-op up, bump) and lib/measure.ts (sampling a server under the workload,
// lib/workload.ts); the table and plot in lib/report.ts; the headline figures in lib/history.ts.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { appendHistory, historyEntry } from "./lib/history.ts";
import { plot, ratios, table, type Results } from "./lib/report.ts";
import { DEFAULTS, DEFAULTS_CONFIG, FROM_VERSION, homeserver, PARTNER, saveToken, TO_VERSION, TUNED } from "./lib/servers.ts";
import { BENCH_STATE, REPO, hostUp, run, say, setLogFile, T0 } from "./lib/testbed.ts";
import type { Workload } from "./lib/workload.ts";

const HERE = import.meta.dirname;
const RESULTS = path.join(HERE, "results");
const HISTORY = path.join(RESULTS, "history.json");

/** Ends the Matrix client's connections once the client is loaded (see main). */
let closeClient = (): void => undefined;

// --- arguments -----------------------------------------------------------------------------------

function parseArgs() {
    const argv = process.argv.slice(2);
    const a = {
        phases: ["tuned", "noop", "bump", "defaults"],
        tunedConfig: {} as Record<string, unknown>,
        workload: path.join(HERE, "workload.json"),
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
            default:
                process.stderr.write(
                    `unknown argument ${argv[i]}\nusage: node bench/run.ts [--phases tuned,noop,bump,defaults] [--tuned-config JSON] [--workload FILE] [--name NAME]\n`,
                );
                process.exit(64);
        }
    }
    for (const p of a.phases) if (!["tuned", "noop", "bump", "defaults"].includes(p)) throw new Error(`unknown phase ${p}`);
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
            latency:
                "send-to-sync: from the start of the sender's PUT to the arrival of the /sync response holding the event, at every other syncing client in the room on the same server",
        },
        tuned: args.phases.some((p) => ["tuned", "noop", "bump"].includes(p)) ? {} : prev.tuned,
        defaults: args.phases.includes("defaults") ? undefined : prev.defaults,
    };
    const samplesOut: Record<string, unknown> = {
        tuned: args.phases.includes("tuned") ? undefined : prevSamples.tuned,
        defaults: args.phases.includes("defaults") ? undefined : prevSamples.defaults,
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
    } finally {
        pages.stop();
    }
    res.ratio = ratios(res.tuned, res.defaults);
    res.totalRunSeconds = Math.round((Date.now() - T0) / 1000);
    fs.writeFileSync(latestFile, JSON.stringify(res, null, 2) + "\n");
    fs.writeFileSync(samplesFile, JSON.stringify(samplesOut) + "\n");
    say("plotting");
    const overrides = Object.keys(tunedExtra).length
        ? ` + ${Object.entries(tunedExtra)
              .map(([k, v]) => `${k}=${String(v)}`)
              .join(", ")}`
        : "";
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
        closeClient();
        process.exit(0);
    },
    (e: unknown) => {
        say(`FAILED: ${e instanceof Error ? e.stack : String(e)}`);
        process.exit(1);
    },
);
