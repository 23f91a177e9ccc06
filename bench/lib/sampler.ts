// Memory sampling, once a second, from two sides:
//  - inside the guest (one long ssh session running testbed/py/bench_sampler.py): RSS and PSS of
//    every process from /proc/PID/smaps_rollup, grouped as synapse / postgres / nginx / other (the
//    sampler itself and its ssh session are left out), plus Synapse's main pid (a change = a restart);
//  - on the host: the guest's v1 memory cgroup (memory.stat rss/cache/shmem/swap, usage, failcnt,
//    oom_control's oom_kill counter).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { guestPythonCommand, ssh, sshTarget } from "../../testbed/lib/guest.ts";
import { memoryCgroup } from "./testbed.ts";

export interface Sample {
    t: number; // seconds since the sampler started
    epoch: number;
    phase: string;
    mb: { synapse: number; postgres: number; nginx: number; other: number; total: number }; // PSS
    rssMb: { synapse: number; postgres: number; nginx: number; other: number; total: number };
    counts: { postgres: number; nginx: number };
    cpuSeconds: { synapse: number; postgres: number; nginx: number; other: number }; // cumulative CPU time of the live processes
    hostLoad1m: number;
    synapsePid: number | null;
    cgroup?: { rssMb: number; cacheMb: number; shmemMb: number; swapMb: number; usageMb: number; failcnt: number; oomKill: number };
}

function readCgroup(dir: string): Sample["cgroup"] {
    try {
        const stat = Object.fromEntries(
            fs
                .readFileSync(path.join(dir, "memory.stat"), "utf8")
                .trim()
                .split("\n")
                .map((l) => l.split(" "))
                .map(([k, v]) => [k, Number(v)]),
        );
        const oom = /oom_kill (\d+)/.exec(fs.readFileSync(path.join(dir, "memory.oom_control"), "utf8"));
        const MB = 1024 * 1024;
        return {
            rssMb: stat.total_rss / MB,
            cacheMb: stat.total_cache / MB,
            shmemMb: stat.total_shmem / MB,
            swapMb: (stat.total_swap ?? 0) / MB,
            usageMb: Number(fs.readFileSync(path.join(dir, "memory.usage_in_bytes"), "utf8")) / MB,
            failcnt: Number(fs.readFileSync(path.join(dir, "memory.failcnt"), "utf8")),
            oomKill: oom ? Number(oom[1]) : 0,
        };
    } catch {
        return undefined;
    }
}

export class Sampler {
    readonly samples: Sample[] = [];
    phase = "setup";
    private stopper?: AbortController;
    t0 = 0; // epoch seconds of the start; sample times are relative to it
    private readonly cgroupDir: string;

    readonly name: string;
    readonly ip: string;

    constructor(name: string, ip: string) {
        this.name = name;
        this.ip = ip;
        this.cgroupDir = memoryCgroup(name);
    }

    cgroupNow(): Sample["cgroup"] {
        return readCgroup(this.cgroupDir);
    }

    start(maxSeconds = 3600): Promise<void> {
        this.t0 = Date.now() / 1000;
        this.stopper = new AbortController();
        // One ssh session for the whole run (testbed/lib's runner: stop() aborts it, killing the
        // session's process group; the loop on the guest ends at its next write, or by itself after
        // maxSeconds).
        return new Promise((resolve, reject) => {
            let first = true;
            const run = ssh(sshTarget(this.ip), guestPythonCommand("bench_sampler.py", [String(maxSeconds), "bench-sampler"]), {
                timeoutMs: (maxSeconds + 60) * 1000,
                signal: this.stopper!.signal,
                onLine: (line, stream) => {
                    if (stream === "stderr") {
                        process.stderr.write(`[sampler ${this.name}] ${line}\n`);
                        return;
                    }
                    if (!line.trim()) return;
                    this.add(JSON.parse(line) as { t: number; g: Record<string, [number, number, number, number]>; synapsePid: number | null });
                    if (first) {
                        first = false;
                        resolve();
                    }
                },
            });
            run.then(
                (r) => {
                    if (first) reject(new Error(`sampler on ${this.name} exited ${r.code} before its first sample: ${r.tail.join("\n")}`));
                },
                (e: unknown) => {
                    if (first) reject(e instanceof Error ? e : new Error(String(e)));
                },
            );
        });
    }

    private add(raw: { t: number; g: Record<string, [number, number, number, number]>; synapsePid: number | null }): void {
        const mb = (i: 0 | 1) => {
            const v = {
                synapse: raw.g.synapse[i] / 1024,
                postgres: raw.g.postgres[i] / 1024,
                nginx: raw.g.nginx[i] / 1024,
                other: raw.g.other[i] / 1024,
                total: 0,
            };
            v.total = v.synapse + v.postgres + v.nginx + v.other;
            return v;
        };
        this.samples.push({
            t: Math.round((raw.t - this.t0) * 10) / 10,
            epoch: raw.t,
            phase: this.phase,
            mb: mb(1),
            rssMb: mb(0),
            counts: { postgres: raw.g.postgres[2], nginx: raw.g.nginx[2] },
            cpuSeconds: { synapse: raw.g.synapse[3] ?? 0, postgres: raw.g.postgres[3] ?? 0, nginx: raw.g.nginx[3] ?? 0, other: raw.g.other[3] ?? 0 },
            hostLoad1m: os.loadavg()[0],
            synapsePid: raw.synapsePid,
            cgroup: readCgroup(this.cgroupDir),
        });
    }

    stop(): void {
        this.stopper?.abort();
    }
}
