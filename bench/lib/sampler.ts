// Memory sampling, once a second, from two sides:
//  - inside the guest (one long ssh session running a small Python loop): RSS and PSS of every
//    process from /proc/PID/smaps_rollup, grouped as synapse / postgres / nginx / other (the sampler
//    itself and its ssh session are left out), plus Synapse's main pid (a change = a restart);
//  - on the host: the guest's v1 memory cgroup (memory.stat rss/cache/shmem/swap, usage, failcnt,
//    oom_control's oom_kill counter).
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO, memoryCgroup } from "./testbed.ts";

const GUEST_SAMPLER = String.raw`
import json, os, sys, time
me = os.getpid()
# Leave out the sampler and its ssh session (sshd's per-connection processes).
skip = {me}
p = os.getppid()
while p > 1:
    try:
        cmd = open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
        if not cmd.startswith("sshd") or "listener" in cmd or cmd.startswith("/usr/sbin/sshd"): break
        skip.add(p)
        p = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        break
def kb(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"): rss = int(line.split()[1])
                elif line.startswith("Pss:"): pss = int(line.split()[1])
    except OSError:
        return None
    return rss, pss
TCK = os.sysconf("SC_CLK_TCK")
deadline = time.time() + float(sys.argv[1])
nxt = time.time()
while time.time() < deadline:
    groups = {k: [0, 0, 0, 0.0] for k in ("synapse", "postgres", "nginx", "other")}
    syn_pid = None
    for d in os.listdir("/proc"):
        if not d.isdigit(): continue
        pid = int(d)
        if pid in skip: continue
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        m = kb(pid)
        if m is None: continue
        try:
            st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            cpu = (int(st[11]) + int(st[12])) / TCK
        except (OSError, ValueError, IndexError):
            cpu = 0.0
        if "synapse.app.homeserver" in cmd:
            g = "synapse"; syn_pid = pid
        elif comm == "postgres" or cmd.startswith("postgres:") or "/postgresql/" in cmd.split(" ")[0]:
            g = "postgres"
        elif comm == "nginx":
            g = "nginx"
        else:
            g = "other"
        groups[g][0] += m[0]; groups[g][1] += m[1]; groups[g][2] += 1; groups[g][3] += cpu
    try:
        sys.stdout.write(json.dumps({"t": time.time(), "g": groups, "synapsePid": syn_pid}) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        break
    nxt += 1.0
    time.sleep(max(0.0, nxt - time.time()))
`;

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
    private proc?: ChildProcess;
    t0 = 0; // epoch seconds of the start; sample times are relative to it
    private pending = "";
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
        const b64 = Buffer.from(GUEST_SAMPLER, "utf8").toString("base64");
        // "bench-sampler" in the command line lets the sampler leave its own sshd session out.
        // The guest's argv: [-c, maxSeconds, "bench-sampler", program]; the loop ends by itself
        // after maxSeconds, or at its first write after the ssh session is gone.
        const remote = `python3 -c 'import base64,sys; exec(base64.b64decode(sys.argv[3]))' ${maxSeconds} bench-sampler ${b64}`;
        this.proc = spawn("bash", [path.join(REPO, "testbed", "tssh"), `root@${this.ip}`, remote], { stdio: ["pipe", "pipe", "pipe"] });
        return new Promise((resolve, reject) => {
            let first = true;
            this.proc!.stdout!.on("data", (c: Buffer) => {
                const lines = (this.pending + c.toString("utf8")).split("\n");
                this.pending = lines.pop() ?? "";
                for (const l of lines) {
                    if (!l.trim()) continue;
                    this.add(JSON.parse(l) as { t: number; g: Record<string, [number, number, number, number]>; synapsePid: number | null });
                    if (first) {
                        first = false;
                        resolve();
                    }
                }
            });
            this.proc!.stderr!.on("data", (c: Buffer) => process.stderr.write(`[sampler ${this.name}] ${c.toString()}`));
            this.proc!.on("close", (code) => {
                if (first) reject(new Error(`sampler on ${this.name} exited ${code} before its first sample`));
            });
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
        this.proc?.stdin?.end();
        this.proc?.kill("SIGTERM");
    }
}
