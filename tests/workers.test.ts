// Synapse's worker mode (synapseWorkers, issue 14): the config checks, what the shared homeserver.yaml
// and each worker's file say, the worker unit, and the plan an operator sees when turning workers on
// and off again (the whole program under the strict mocks, tests/harness.ts).
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as yaml from "js-yaml";
import { mapSource, readConfig } from "../components/config";
import { synapseBuild } from "../components/chatService";
import { homeserverConfig, synapseUnit } from "../components/synapse";
import { redisConfig, redisFiles, workerConfig, workerFiles, workerUnit } from "../components/synapseWorkers";
import { workerLayout } from "../components/workerLayout";
import { BASE_CONFIG, ProgramRun, SECRETS, runProgram } from "./harness";

/** A stack that may run two or three workers: PostgreSQL admits 6 processes x 3 connections + 3. */
const WORKERS_ON = { ...BASE_CONFIG, synapseWorkers: "2", postgresMaxConnections: "24" };
const cfg = (c: Record<string, string>) => readConfig(mapSource(c, SECRETS));

describe("synapseWorkers: checked at preview, naming the key", () => {
    test.each([
        ["a negative count", { synapseWorkers: "-1" }, /phillymesh-chat:synapseWorkers\b.*whole number from 0 to 8/],
        ["more workers than a droplet holds", { synapseWorkers: "9" }, /phillymesh-chat:synapseWorkers\b.*whole number from 0 to 8/],
        ["a word", { synapseWorkers: "two" }, /phillymesh-chat:synapseWorkers\b/],
        [
            "a Synapse without the *_path secrets",
            { synapseWorkers: "1", postgresMaxConnections: "20", synapseVersion: "1.125.0" },
            /synapseWorkers \(1\) needs Synapse 1\.126\.0/,
        ],
        [
            "more pools than PostgreSQL admits",
            { synapseWorkers: "2" },
            /synapseWorkers \(2\) runs 5 Synapse processes .* postgresMaxConnections \(10\) must be at least 18/,
        ],
    ])("%s is refused", async (_what, overrides, message) => {
        await expect(runProgram({ ...BASE_CONFIG, ...overrides }, SECRETS, { preview: true })).rejects.toThrow(message);
    });

    test("unset, it is 0: the single process", () => {
        expect(cfg(BASE_CONFIG).synapse.workers).toBe(0);
        expect(workerLayout(0)).toEqual([]);
    });

    test("N generic workers, one federation sender, one media worker, each on its own loopback port", () => {
        expect(workerLayout(cfg(WORKERS_ON).synapse.workers)).toEqual([
            { name: "generic_worker1", kind: "generic", port: 8091 },
            { name: "generic_worker2", kind: "generic", port: 8092 },
            { name: "federation_sender1", kind: "federation_sender" },
            { name: "media_worker1", kind: "media", port: 8090 },
        ]);
    });
});

describe("the shared configuration and each worker's", () => {
    test("without workers homeserver.yaml has none of worker mode's settings", () => {
        const hs = homeserverConfig(synapseBuild(cfg(BASE_CONFIG)));
        for (const key of [
            "redis",
            "instance_map",
            "worker_replication_secret_path",
            "federation_sender_instances",
            "enable_media_repo",
            "media_instance_running_background_jobs",
        ]) {
            expect(hs).not.toHaveProperty(key);
        }
        expect(hs.listeners).toHaveLength(1);
    });

    test("with workers: replication on loopback, Redis, instance_map, federation sender, media worker, secrets by path", () => {
        const hs = yaml.load(yaml.dump(homeserverConfig(synapseBuild(cfg(WORKERS_ON))))) as Record<string, any>;
        expect(hs.listeners).toEqual([
            expect.objectContaining({ port: 8008, bind_addresses: ["127.0.0.1"] }),
            { port: 9093, tls: false, type: "http", bind_addresses: ["127.0.0.1"], resources: [{ names: ["replication"], compress: false }] },
        ]);
        expect(hs.instance_map).toEqual({ main: { host: "127.0.0.1", port: 9093 } });
        expect(hs.redis).toEqual({ enabled: true, host: "127.0.0.1", port: 6379, password_path: "/etc/matrix-synapse/workers/redis_password" });
        expect(hs.worker_replication_secret_path).toBe("/etc/matrix-synapse/workers/replication_secret");
        expect(hs.federation_sender_instances).toEqual(["federation_sender1"]);
        expect(hs.enable_media_repo).toBe(false);
        expect(hs.media_instance_running_background_jobs).toBe("media_worker1");
        // No secret in the file itself.
        expect(JSON.stringify(hs)).not.toMatch(/worker_replication_secret"|"password"/);
    });

    test("each worker's file: generic ones serve client and federation, the media worker media, the sender listens nowhere", () => {
        const c = cfg(WORKERS_ON);
        const files = workerFiles("/mnt/matrix_data", c.synapse, workerLayout(c.synapse.workers));
        const parsed = (p: string) => yaml.load(files.find((f) => f.path === p)!.content as string) as Record<string, any>;
        expect(parsed("/etc/matrix-synapse/workers/generic_worker2.yaml")).toEqual({
            worker_app: "synapse.app.generic_worker",
            worker_name: "generic_worker2",
            worker_listeners: [
                {
                    type: "http",
                    port: 8092,
                    bind_addresses: ["127.0.0.1"],
                    x_forwarded: true,
                    resources: [{ names: ["client", "federation"], compress: false }],
                },
            ],
            worker_log_config: "/etc/matrix-synapse/workers/generic_worker2.log.yaml",
        });
        expect(parsed("/etc/matrix-synapse/workers/media_worker1.yaml")).toMatchObject({
            worker_name: "media_worker1",
            enable_media_repo: true,
            worker_listeners: [expect.objectContaining({ port: 8090, bind_addresses: ["127.0.0.1"], resources: [{ names: ["media"], compress: false }] })],
        });
        expect(parsed("/etc/matrix-synapse/workers/federation_sender1.yaml")).toEqual({
            worker_app: "synapse.app.generic_worker",
            worker_name: "federation_sender1",
            worker_log_config: "/etc/matrix-synapse/workers/federation_sender1.log.yaml",
        });
        // Each worker logs to its own file, so its share of the work can be seen.
        const logFiles = workerLayout(2).map((w) => (parsed(`/etc/matrix-synapse/workers/${w.name}.log.yaml`).handlers as any).file.filename);
        expect(logFiles).toEqual([
            "/var/log/matrix-synapse/generic_worker1.log",
            "/var/log/matrix-synapse/generic_worker2.log",
            "/var/log/matrix-synapse/federation_sender1.log",
            "/var/log/matrix-synapse/media_worker1.log",
        ]);
        // Worker configs are readable by synapse, written by root only.
        for (const f of files.filter((f) => f.path.endsWith(".yaml") && !f.path.endsWith(".log.yaml")))
            expect([f.mode, f.owner]).toEqual(["0640", "root:synapse"]);
        expect(workerConfig(workerLayout(1)[0]).worker_app).toBe("synapse.app.generic_worker");
    });

    test("Redis: loopback only, protected, a password from an included file, nothing on disk", () => {
        const conf = redisConfig();
        expect(conf).toMatch(/^bind 127\.0\.0\.1 -::1$/m);
        expect(conf).toMatch(/^protected-mode yes$/m);
        expect(conf).toMatch(/^save ""$/m);
        expect(conf).toMatch(/^appendonly no$/m);
        expect(conf).toMatch(/^include \/etc\/phillymesh-chat\/redis-auth\.conf$/m);
        expect(conf).not.toMatch(/requirepass/);
        const dropIn = redisFiles().find((f) => f.path.endsWith("redis-server.service.d/phillymesh-chat.conf"))!.content as string;
        expect(dropIn).toMatch(/^ExecStart=$/m);
        expect(dropIn).toMatch(/^ExecStart=\/usr\/bin\/redis-server \/etc\/phillymesh-chat\/redis\.conf --supervised systemd --daemonize no$/m);
    });
});

describe("the worker unit", () => {
    const unit = workerUnit("/mnt/matrix_data", { jemalloc: true });
    const section = (text: string, from: RegExp) => text.slice(text.search(from)).split("\n[Install]")[0];

    test("starts and stops with the main process, after it, and restarts on failure", () => {
        expect(unit).toMatch(/^PartOf=matrix-synapse\.service$/m);
        expect(unit).toMatch(/^Requires=matrix-synapse\.service$/m);
        expect(unit).toMatch(/^After=.*\bmatrix-synapse\.service\b/m);
        expect(unit).toMatch(/^WantedBy=matrix-synapse\.service$/m);
        expect(unit).toMatch(/^Restart=on-failure$/m);
        expect(unit).toMatch(
            /^ExecStart=\/opt\/synapse\/current\/bin\/python -m synapse\.app\.generic_worker .*--config-path=\/etc\/matrix-synapse\/workers\/%i\.yaml$/m,
        );
        expect(unit).toMatch(/^Environment=PYTHONPATH=\/opt\/synapse\/redis-lib$/m);
        expect(unit).toMatch(/^Environment=LD_PRELOAD=.*libjemalloc/m);
    });

    test("its sandbox is the main process's, line for line", () => {
        const main = synapseUnit("/mnt/matrix_data", { jemalloc: true });
        expect(section(unit, /^NoNewPrivileges=/m)).toBe(section(main, /^NoNewPrivileges=/m));
    });

    test("systemd-analyze security: at most 3.0, like every other service", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "worker-unit-"));
        try {
            const file = path.join(dir, "matrix-synapse-worker@generic_worker1.service");
            fs.writeFileSync(file, unit + "\n");
            const r = spawnSync("systemd-analyze", ["security", "--offline=true", "--no-pager", file], { encoding: "utf8" });
            const score = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout)?.[1]);
            expect(score).toBeLessThanOrEqual(3.0);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});

describe("turning workers on, and off again, under the mocks", () => {
    const commands = (run: ProgramRun) => new Map(run.ofType("command:remote:Command").map((r) => [r.name, r]));
    let off: ProgramRun, on: ProgramRun, offAgain: ProgramRun;
    beforeAll(async () => {
        off = await runProgram({ ...BASE_CONFIG, postgresMaxConnections: "24" }, SECRETS, { preview: true });
        on = await runProgram(WORKERS_ON, SECRETS, { preview: true });
        offAgain = await runProgram({ ...BASE_CONFIG, postgresMaxConnections: "24" }, SECRETS, { preview: true });
    }, 60000);

    test("on: two new steps, the synapse and sites steps updated, nothing else touched", () => {
        const before = commands(off);
        const after = commands(on);
        const added = [...after.keys()].filter((n) => !before.has(n));
        const removed = [...before.keys()].filter((n) => !after.has(n));
        const changed = [...after.keys()].filter((n) => before.has(n) && JSON.stringify(before.get(n)!.inputs) !== JSON.stringify(after.get(n)!.inputs));
        expect({ added, removed, changed }).toEqual({
            added: ["chat-redis-run", "chat-synapse-workers-run"],
            removed: [],
            changed: ["chat-synapse-run", "chat-sites-run"],
        });
        // Every other resource (droplet, volume, DNS, firewall...) is declared exactly as before.
        const others = (run: ProgramRun) =>
            run.resources.filter((r) => r.type !== "command:remote:Command" && !r.type.startsWith("phillymesh-chat:")).map((r) => [r.type, r.name, r.inputs]);
        expect(JSON.stringify(others(on))).toBe(JSON.stringify(others(off)));
        // An update, never a replacement: no step has triggers.
        for (const r of after.values()) expect(r.inputs.triggers ?? []).toEqual(r.name === "chat-data-release" ? expect.anything() : []);
    });

    test("in order: Redis before Synapse, the workers after it, nginx's routing after the workers", () => {
        expect(on.byName("chat-synapse-run").dependsOn).toContain("chat-redis-run");
        expect(on.byName("chat-synapse-workers-run").dependsOn).toContain("chat-synapse-run");
        expect(on.byName("chat-sites-run").dependsOn).toContain("chat-synapse-workers-run");
    });

    test("the new steps undo themselves when they leave the program (their delete), as root or through sudo", async () => {
        const existing = await runProgram(
            { ...WORKERS_ON, hosting: "existing", sshHost: "203.0.113.5", sshUser: "deploy", dns: "none", acmeChallenge: "http", apexOnServer: "true" },
            SECRETS,
            { preview: true },
        );
        expect(existing.byName("chat-redis-run").inputs.delete).toMatch(/^sudo -n bash -c '/);
        for (const name of ["chat-redis-run", "chat-synapse-workers-run"]) {
            const del: string = on.byName(name).inputs.delete;
            expect(del).toMatch(/^bash -c '/);
            expect(del).toMatch(
                name === "chat-redis-run"
                    ? /systemctl disable --quiet --now redis-server/
                    : /systemctl disable --quiet --now "matrix-synapse-worker@\$name\.service"/,
            );
        }
        // The workers' teardown removes them as the step removes a worker no longer configured (one
        // library, workers.sh, sent with those two only), and the status check's drop-in with them.
        const workersDelete: string = on.byName("chat-synapse-workers-run").inputs.delete;
        expect(workersDelete).toContain("remove_worker() {");
        expect(workersDelete).toContain("/etc/systemd/system/phillymesh-chat-status.service.d/phillymesh-chat-workers.conf");
        expect(on.byName("chat-synapse-workers-run").inputs.stdin).toContain("remove_worker() {");
        for (const r of commands(on).values())
            if (r.name !== "chat-synapse-workers-run") expect(String(r.inputs.stdin ?? "")).not.toContain("remove_worker() {");
        // No other step has a delete: leaving the single-process setup as it was.
        for (const r of commands(off).values()) expect(r.inputs.delete === undefined || r.name === "chat-data-release").toBe(true);
    });

    test("what the steps carry: routing and worker settings only when on", () => {
        expect(on.byName("chat-sites-run").inputs.stdin).toContain("'/etc/nginx/conf.d/phillymesh-chat-workers.conf'");
        expect(on.byName("chat-sites-run").inputs.stdin).toContain("proxy_pass http://$phillymesh_chat_synapse;");
        expect(off.byName("chat-sites-run").inputs.stdin).not.toContain("phillymesh-chat-workers");
        expect(off.byName("chat-sites-run").inputs.stdin).toContain("proxy_pass http://127.0.0.1:8008;");
        expect(on.byName("chat-synapse-run").inputs.stdin).toContain("federation_sender_instances");
        expect(on.byName("chat-synapse-workers-run").inputs.stdin).toContain(
            "export WORKERS='generic_worker1 generic_worker2 federation_sender1 media_worker1'",
        );
        expect(on.byName("chat-synapse-workers-run").inputs.stdin).toContain("export WORKER_PORTS='8091 8092 - 8090'");
    });

    test("off again: exactly the single-process stack, the two steps gone (their teardown runs)", () => {
        expect(JSON.stringify(offAgain.resources.map((r) => [r.type, r.name, r.inputs, r.dependsOn]))).toBe(
            JSON.stringify(off.resources.map((r) => [r.type, r.name, r.inputs, r.dependsOn])),
        );
        expect(commands(offAgain).has("chat-redis-run")).toBe(false);
        expect(commands(offAgain).has("chat-synapse-workers-run")).toBe(false);
    });

    test("a Synapse bump in worker mode updates the synapse step and the workers step (which waits for them), nothing else", async () => {
        const bumped = commands(await runProgram({ ...WORKERS_ON, synapseVersion: "1.164.0" }, SECRETS, { preview: true }));
        const two = commands(on);
        const changed = [...bumped.keys()].filter((n) => JSON.stringify(bumped.get(n)!.inputs) !== JSON.stringify(two.get(n)?.inputs));
        expect(changed.sort()).toEqual(["chat-synapse-run", "chat-synapse-workers-run"]);
    });

    test("a different worker count changes only the workers step and nginx's routing", async () => {
        const three = commands(await runProgram({ ...WORKERS_ON, synapseWorkers: "3" }, SECRETS, { preview: true }));
        const two = commands(on);
        const changed = [...three.keys()].filter((n) => JSON.stringify(three.get(n)!.inputs) !== JSON.stringify(two.get(n)?.inputs));
        expect(changed.sort()).toEqual(["chat-sites-run", "chat-synapse-workers-run"]);
    });
});
