// The daily status check's verdicts, from real files: the check program rendered with a temporary
// directory's paths (as statusCheckFiles renders it with the server's) and run by bash, against a
// throwaway certificate from openssl, backup directories with chosen times, this machine's disks and
// a stand-in of Synapse's /health on the loopback. Drill 19 runs the same program through its unit
// on a real server.
import { execFile } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as net from "net";
import type { AddressInfo } from "net";
import * as os from "os";
import * as path from "path";
import { STATUS_CHECKS, STATUS_FILE, statusCheckFiles, statusScript } from "../components/statusCheck";
import { statusWorkersDropIn } from "../components/synapseWorkers";
import { workerLayout } from "../components/workerLayout";
import { throwawayCert } from "./throwawayCert";

interface Status {
    checkedAt: string;
    ok: boolean;
    checks: { name: string; ok: boolean; detail: string }[];
}

let dir: string;
let synapse: http.Server;
let synapsePort: number;
let closedPort: number;
/** A stand-in for Redis with its password set: every command without AUTH answers NOAUTH. */
let redis: net.Server;
let redisPort: number;

/** A self-signed certificate valid for `days` more days, at dir/NAME. */
function certificate(name: string, days: number): string {
    const file = path.join(dir, name);
    throwawayCert(file, path.join(dir, `${name}.key`), "matrix.phillymesh.test", days);
    return file;
}

/** A backup directory named for its start, its time set `hoursAgo`. */
function backup(backups: string, name: string, hoursAgo: number): void {
    fs.mkdirSync(path.join(backups, name), { recursive: true });
    const t = new Date(Date.now() - hoursAgo * 3600_000);
    fs.utimesSync(path.join(backups, name), t, t);
}

interface Case {
    cert?: string;
    backups?: (dir: string) => void;
    port?: number;
    diskAlertPercent?: number;
    recorded?: boolean;
    /** Worker mode: STATUS_WORKERS and STATUS_REDIS_PORT as the workers' drop-in sets them, and each unit's control group: running (processes in it), empty (none left), gone (no group: stopped). */
    workers?: { list: string; redisPort: number; units: Record<string, string> };
}

/** Renders the check for one case and runs it (asynchronously: the stand-in Synapse answers meanwhile). */
async function runCheck(c: Case): Promise<{ code: number; stdout: string; stderr: string; status?: Status }> {
    const run = fs.mkdtempSync(path.join(dir, "run-"));
    const backups = path.join(run, "backups");
    fs.mkdirSync(backups);
    c.backups?.(backups);
    const state = path.join(run, "state");
    fs.mkdirSync(state);
    const script = path.join(run, "phillymesh-chat-status");
    fs.writeFileSync(
        script,
        statusScript({
            certificateFile: c.cert ?? path.join(dir, "good.pem"),
            dataDir: run,
            backupDir: backups,
            synapsePort: c.port ?? synapsePort,
            diskAlertPercent: c.diskAlertPercent ?? 99,
            cgroupRoot: path.join(run, "cgroup"),
        }),
    );
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, LC_ALL: "C" };
    if (c.recorded !== false) env.STATE_DIRECTORY = state;
    if (c.workers) {
        // systemd's control groups as the check reads them: a running unit's cgroup.events says "populated 1".
        for (const [unit, state] of Object.entries(c.workers.units)) {
            if (state === "gone") continue;
            const slice = unit.includes("@") ? `system-${unit.split("@")[0].replace(/-/g, "\\x2d")}.slice` : "";
            const group = path.join(run, "cgroup", "system.slice", slice, unit);
            fs.mkdirSync(group, { recursive: true });
            fs.writeFileSync(path.join(group, "cgroup.events"), `populated ${state === "running" ? 1 : 0}\nfrozen 0\n`);
        }
        env.STATUS_WORKERS = c.workers.list;
        env.STATUS_REDIS_PORT = String(c.workers.redisPort);
    }
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile("bash", [script], { env, encoding: "utf8" }, (err, stdout, stderr) =>
            resolve({ code: err ? Number((err as NodeJS.ErrnoException & { code?: number }).code) : 0, stdout, stderr }),
        ),
    );
    const file = path.join(state, "status.json");
    return { ...r, status: fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as Status) : undefined };
}

const recent = (b: string) => backup(b, "20261130T041500Z", 3);
const verdicts = (s: Status | undefined) => Object.fromEntries((s?.checks ?? []).map((c) => [c.name, c.ok]));
const detail = (s: Status | undefined, name: string) => s?.checks.find((c) => c.name === name)?.detail ?? "";

beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "status-check-"));
    certificate("good.pem", 60);
    certificate("expiring.pem", 10);
    synapse = http.createServer((req, res) => {
        res.writeHead(req.url === "/health" ? 200 : 404);
        res.end(req.url === "/health" ? "OK" : "");
    });
    await new Promise<void>((resolve) => synapse.listen(0, "127.0.0.1", resolve));
    synapsePort = (synapse.address() as AddressInfo).port;
    redis = net.createServer((socket) => socket.on("data", () => socket.write("-NOAUTH Authentication required.\r\n")));
    await new Promise<void>((resolve) => redis.listen(0, "127.0.0.1", resolve));
    redisPort = (redis.address() as AddressInfo).port;
    // A port nothing listens on: one just closed.
    const other = http.createServer();
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    closedPort = (other.address() as AddressInfo).port;
    await new Promise((resolve) => other.close(resolve));
});

afterAll(async () => {
    await new Promise((resolve) => synapse.close(resolve));
    await new Promise((resolve) => redis.close(resolve));
    fs.rmSync(dir, { recursive: true, force: true });
});

describe("the daily status check (phillymesh-chat-status)", () => {
    test("a healthy server: every check ok, exit 0, the status file says so", async () => {
        const r = await runCheck({ backups: recent });
        expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
        expect(r.status?.ok).toBe(true);
        expect(r.status?.checks.map((c) => c.name)).toEqual([...STATUS_CHECKS]);
        expect(verdicts(r.status)).toEqual({ certificate: true, backup: true, disk: true, synapse: true });
        expect(Date.now() - Date.parse(r.status!.checkedAt)).toBeLessThan(60_000);
        expect(detail(r.status, "certificate")).toMatch(/valid until .* \((59|60) days\)/);
        expect(detail(r.status, "backup")).toBe("newest backup 20261130T041500Z, 3 hours old");
        expect(detail(r.status, "disk")).toMatch(/^\/\S* \d+% used.* \(the alert is at 99%\)$/);
        expect(r.stdout).toMatch(/^all 4 checks ok$/m);
    });

    test("a certificate with fewer than 14 days left fails, at error priority, naming certbot", async () => {
        const r = await runCheck({ backups: recent, cert: path.join(dir, "expiring.pem") });
        expect(r.code).toBe(1);
        expect(verdicts(r.status)).toEqual({ certificate: false, backup: true, disk: true, synapse: true });
        expect(r.stderr).toMatch(
            /^<3>certificate: TLS certificate \S+expiring\.pem expires .* \((9|10) days, fewer than 14\): renewal is failing, see 'journalctl -u certbot'$/m,
        );
        expect(r.stderr).toMatch(/^<3>1 of 4 checks failed$/m);
    });

    test("no certificate (the unit's default credential, 'missing'), or none at all, fails", async () => {
        fs.writeFileSync(path.join(dir, "missing.pem"), "missing");
        for (const cert of [path.join(dir, "missing.pem"), path.join(dir, "absent.pem")]) {
            const r = await runCheck({ backups: recent, cert });
            expect(r.code).toBe(1);
            expect(detail(r.status, "certificate")).toBe(`no readable certificate at ${cert}: see 'journalctl -u certbot'`);
        }
    });

    test("the newest backup (by name) 40 hours old fails with its age; a copy still being written does not count", async () => {
        const r = await runCheck({
            backups: (b) => {
                backup(b, "20261128T041500Z", 90);
                backup(b, "20261129T041500Z", 40);
                backup(b, "20261130T041500Z.partial", 1);
            },
        });
        expect(r.code).toBe(1);
        expect(verdicts(r.status)).toEqual({ certificate: true, backup: false, disk: true, synapse: true });
        expect(detail(r.status, "backup")).toMatch(
            /^newest backup \S+\/backups\/20261129T041500Z is 40 hours old \(the limit is 36\): the nightly backup is failing/,
        );
        expect(r.stderr).toContain("<3>backup: newest backup ");
    });

    test("35 hours is still fine; no backup at all fails", async () => {
        expect(verdicts((await runCheck({ backups: (b) => backup(b, "20261129T041500Z", 35) })).status).backup).toBe(true);
        const none = await runCheck({});
        expect(none.code).toBe(1);
        expect(detail(none.status, "backup")).toMatch(/^no backup in \S+\/backups: see 'journalctl -u phillymesh-chat-backup'$/);
    });

    test("a file system at the threshold fails, naming diskAlertPercent", async () => {
        // Any file system this test runs on is at least 1% used.
        const r = await runCheck({ backups: recent, diskAlertPercent: 1 });
        expect(r.code).toBe(1);
        expect(verdicts(r.status)).toEqual({ certificate: true, backup: true, disk: false, synapse: true });
        expect(detail(r.status, "disk")).toMatch(/^\/\S* is \d+% full.* \(the alert is at 1%, diskAlertPercent\): free space or grow the volume/);
    });

    test("Synapse not answering fails, naming its unit", async () => {
        const r = await runCheck({ backups: recent, port: closedPort });
        expect(r.code).toBe(1);
        expect(verdicts(r.status)).toEqual({ certificate: true, backup: true, disk: true, synapse: false });
        expect(detail(r.status, "synapse")).toBe(
            `Synapse does not answer http://127.0.0.1:${closedPort}/health (connection refused): see 'systemctl status matrix-synapse' and 'journalctl -u matrix-synapse'`,
        );
    });

    test("everything wrong at once: every problem is in the file and the journal, one line each", async () => {
        const r = await runCheck({ cert: path.join(dir, "expiring.pem"), port: closedPort, diskAlertPercent: 1 });
        expect(r.status?.ok).toBe(false);
        expect(verdicts(r.status)).toEqual({ certificate: false, backup: false, disk: false, synapse: false });
        expect(r.stderr.trim().split("\n")).toEqual([
            expect.stringMatching(/^<3>certificate: /),
            expect.stringMatching(/^<3>backup: /),
            expect.stringMatching(/^<3>disk: /),
            expect.stringMatching(/^<3>synapse: /),
            "<3>4 of 4 checks failed",
        ]);
    });

    test("run by hand (no STATE_DIRECTORY: not its unit) it prints the verdicts and records nothing", async () => {
        const r = await runCheck({ backups: recent, recorded: false });
        expect(r.code).toBe(0);
        expect(r.status).toBeUndefined();
        expect(r.stdout).toContain("not recorded (run by hand): systemctl start phillymesh-chat-status records it");
    });

    test("the server's copy looks at the certificate, the backups and the disks the program uses, and Synapse's port", () => {
        const files = statusCheckFiles("/mnt/matrix_data", 85);
        expect(files.map((f) => [f.path, f.mode, f.owner])).toEqual([
            ["/usr/local/sbin/phillymesh-chat-status", "0755", "root:root"],
            ["/etc/systemd/system/phillymesh-chat-status.service", "0644", "root:root"],
            ["/etc/systemd/system/phillymesh-chat-status.timer", "0644", "root:root"],
        ]);
        const script = files[0].content as string;
        expect(script).toContain("cert_name='/etc/letsencrypt/live/matrix-chat/fullchain.pem'");
        expect(script).toContain("backup_dir='/mnt/matrix_data/backups'");
        expect(script).toContain("data_dir='/mnt/matrix_data'");
        expect(script).toContain("DISK_ALERT_PERCENT='85'");
        expect(script).toContain("health_url='http://127.0.0.1:8008/health'");
        expect(script).toContain("cgroup_root='/sys/fs/cgroup'");
        const unit = files[1].content as string;
        expect(unit).toContain("LoadCredential=fullchain.pem:/etc/letsencrypt/live/matrix-chat/fullchain.pem");
        expect(unit).toMatch(/^StateDirectory=phillymesh-chat$/m);
        expect(STATUS_FILE).toBe("/var/lib/phillymesh-chat/status.json");
        expect(unit).toMatch(/^DynamicUser=true$/m);
        expect(unit).toMatch(/^IPAddressAllow=localhost$/m);
    });
});

describe("the daily status check in worker mode (synapseWorkers)", () => {
    const ACTIVE = {
        "redis-server.service": "running",
        "matrix-synapse-worker@generic_worker1.service": "running",
        "matrix-synapse-worker@federation_sender1.service": "running",
        "matrix-synapse-worker@media_worker1.service": "running",
    };
    /** The workers as the drop-in names them, each HTTP one on the stand-in Synapse (or `port` for media_worker1). */
    const workers = (units: Record<string, string> = ACTIVE, mediaPort = synapsePort, redis = redisPort) => ({
        list: `generic_worker1:${synapsePort} federation_sender1:- media_worker1:${mediaPort}`,
        redisPort: redis,
        units,
    });

    test("all running: Redis and the workers checked after the four, each named; exit 0", async () => {
        const r = await runCheck({ backups: recent, workers: workers() });
        expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
        expect(r.status?.checks.map((c) => c.name)).toEqual([...STATUS_CHECKS, "redis", "workers"]);
        expect(detail(r.status, "redis")).toBe(`redis-server answers on 127.0.0.1:${redisPort}`);
        expect(detail(r.status, "workers")).toBe("generic_worker1, federation_sender1, media_worker1 running and answering");
        expect(r.stdout).toMatch(/^all 6 checks ok$/m);
    });

    test("a stopped worker (no control group) and one whose processes are gone fail the check, each named; the rest stays ok", async () => {
        const r = await runCheck({
            backups: recent,
            workers: workers({
                ...ACTIVE,
                "matrix-synapse-worker@federation_sender1.service": "gone",
                "matrix-synapse-worker@media_worker1.service": "empty",
            }),
        });
        expect(r.code).toBe(1);
        expect(verdicts(r.status)).toEqual({ certificate: true, backup: true, disk: true, synapse: true, redis: true, workers: false });
        expect(detail(r.status, "workers")).toBe(
            "federation_sender1 is not running, media_worker1 is not running: see 'systemctl status matrix-synapse-worker@<name>' and 'journalctl -u matrix-synapse-worker@<name>'",
        );
        expect(r.stderr).toMatch(/^<3>workers: federation_sender1 is not running, media_worker1 is not running: /m);
        expect(r.stderr).toMatch(/^<3>1 of 6 checks failed$/m);
    });

    test("a worker whose unit runs but that does not answer its /health fails, naming its port", async () => {
        const r = await runCheck({ backups: recent, workers: workers(ACTIVE, closedPort) });
        expect(r.code).toBe(1);
        expect(detail(r.status, "workers")).toMatch(
            new RegExp(`^media_worker1 does not answer 127\\.0\\.0\\.1:${closedPort}/health \\(connection refused\\): `),
        );
    });

    test("Redis stopped, or running but not answering, fails the redis check, naming its unit", async () => {
        const stopped = await runCheck({ backups: recent, workers: workers({ ...ACTIVE, "redis-server.service": "gone" }) });
        expect(stopped.code).toBe(1);
        expect(verdicts(stopped.status)).toMatchObject({ redis: false, workers: true });
        expect(detail(stopped.status, "redis")).toBe(
            "redis-server is not running: the workers cannot reach the main process; see 'systemctl status redis-server' and 'journalctl -u redis-server'",
        );
        const silent = await runCheck({ backups: recent, workers: workers(ACTIVE, synapsePort, closedPort) });
        expect(detail(silent.status, "redis")).toMatch(
            new RegExp(`^redis-server does not answer on 127\\.0\\.0\\.1:${closedPort} \\(.*Connection refused.*\\): see 'journalctl -u redis-server'$`),
        );
    });

    test("the drop-in the workers step installs names every worker of the layout and Redis's port, in the unit's environment", () => {
        const dropIn = statusWorkersDropIn(workerLayout(2));
        expect(dropIn.split("\n").slice(1)).toEqual([
            "[Service]",
            'Environment="STATUS_WORKERS=generic_worker1:8091 generic_worker2:8092 federation_sender1:- media_worker1:8090" STATUS_REDIS_PORT=6379',
        ]);
        // Without it (workers off) the check's unit sets neither, and the check is the four above.
        expect(statusCheckFiles("/mnt/matrix_data", 85)[1].content as string).not.toMatch(/^Environment/m);
    });
});
