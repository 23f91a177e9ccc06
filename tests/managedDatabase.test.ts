// Managed PostgreSQL (database: managed, issue 14), the whole program under the strict mocks
// (tests/harness.ts): the cluster, protected; the firewall that admits this droplet alone; Synapse
// over TLS verified against the cluster's CA; its pool sized for the cluster's connection limit; the
// password kept secret; the bad configurations refused at preview naming the key; and the default
// (local) rendering exactly what it rendered before.
import { spawnSync } from "child_process";
import * as yaml from "js-yaml";
import { mapSource, readConfig } from "../components/config";
import { managedConnectionLimit } from "../components/config/database";
import { MANAGED_DB_CA_PATH, MANAGED_DB_PGPASS, MANAGED_DB_SERVICE_FILE } from "../components/managedDatabase";
import { readFile } from "../components/templates";
import { BASE_CONFIG, MANAGED_CA, MANAGED_CLUSTER, MANAGED_USER_PASSWORD, ProgramRun, Recorded, SECRETS, runProgram } from "./harness";

const MANAGED = { ...BASE_CONFIG, database: "managed" };
const cfg = (c: Record<string, string>) => readConfig(mapSource(c, SECRETS));

/** The files a step installs, read back by bash from its stdin exactly as the server reads them. */
function installedFiles(step: Recorded): Map<string, { mode: string; owner: string; content: string }> {
    const stdin: string = step.inputs.stdin;
    const header = stdin.slice(0, stdin.indexOf(readFile("lib/lib.sh")));
    const r = spawnSync("bash", ["-c", `${header}\nprintf '%s\\0' "\${INSTALL_FILES[@]}"`], { encoding: "utf8" });
    const words = r.stdout.split("\0").slice(0, -1);
    const files = new Map<string, { mode: string; owner: string; content: string }>();
    for (let i = 0; i < words.length; i += 4) files.set(words[i], { mode: words[i + 1], owner: words[i + 2], content: words[i + 3] });
    return files;
}

/** A step's variables, read back by bash. */
function stepVariable(step: Recorded, name: string): string {
    const stdin: string = step.inputs.stdin;
    const header = stdin.slice(0, stdin.indexOf(readFile("lib/lib.sh")));
    return spawnSync("bash", ["-c", `${header}\nprintf %s "$${name}"`], { encoding: "utf8" }).stdout;
}

const databaseArgs = (run: ProgramRun) => {
    const hs = yaml.load(installedFiles(run.byName("chat-synapse-run")).get("/etc/matrix-synapse/homeserver.yaml")!.content) as any;
    return hs.database.args;
};

describe("database managed: the DigitalOcean side", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram(MANAGED, SECRETS);
    });

    test("one PostgreSQL cluster beside the droplet, one node, the default small size, protected like the volume", () => {
        const [cluster] = run.ofType("digitalocean:index/databaseCluster:DatabaseCluster");
        expect(cluster.inputs).toMatchObject({ engine: "pg", version: "17", size: "db-s-1vcpu-1gb", nodeCount: 1, region: "nyc3" });
        expect(cluster.inputs.region).toBe(run.byName("chat-droplet").inputs.region);
        expect(cluster.protect).toBe(true);
        expect(run.byName("chat-data").protect).toBe(true);
    });

    test("the database firewall admits this droplet and nothing else", () => {
        const [firewall] = run.ofType("digitalocean:index/databaseFirewall:DatabaseFirewall");
        expect(firewall.inputs.clusterId).toBe("chat-database-id");
        expect(firewall.inputs.rules).toEqual([{ type: "droplet", value: "chat-droplet-id" }]);
    });

    test("a synapse user in the cluster; the CA is looked up from the cluster", () => {
        const [user] = run.ofType("digitalocean:index/databaseUser:DatabaseUser");
        expect(user.inputs).toMatchObject({ clusterId: "chat-database-id", name: "synapse" });
        expect(run.calls.filter((c) => c.token === "digitalocean:index/getDatabaseCa:getDatabaseCa")).toEqual([
            { token: "digitalocean:index/getDatabaseCa:getDatabaseCa", inputs: { clusterId: "chat-database-id" } },
        ]);
        // No DatabaseDb: the provider cannot ask for C collation; the step creates the database.
        expect(run.ofType("digitalocean:index/databaseDb:DatabaseDb")).toEqual([]);
    });

    test("Synapse connects to the cluster over TLS verified against its CA and its host name", () => {
        expect(databaseArgs(run)).toEqual({
            user: "synapse",
            dbname: "synapse",
            host: MANAGED_CLUSTER.host,
            port: MANAGED_CLUSTER.port,
            sslmode: "verify-full",
            sslrootcert: MANAGED_DB_CA_PATH,
            passfile: "/mnt/matrix_data/synapse/secrets/pgpass",
            cp_min: 1,
            cp_max: 10,
        });
        // The CA the step installs is the cluster's, and the service file the backups read says the same.
        const files = installedFiles(run.byName("chat-database-move-run"));
        expect(files.get(MANAGED_DB_CA_PATH)).toEqual({ mode: "0644", owner: "root:root", content: MANAGED_CA });
        expect(files.get(MANAGED_DB_SERVICE_FILE)!.content).toContain("\nsslmode=verify-full\n");
        expect(files.get(MANAGED_DB_SERVICE_FILE)!.content).toContain(`\nhost=${MANAGED_CLUSTER.host}\n`);
    });

    test("the passwords (the cluster's admin's and synapse's) travel only in secret inputs, in 0600 files or on stdin", () => {
        const needles = { admin: MANAGED_CLUSTER.password, synapse: MANAGED_USER_PASSWORD };
        let carried = 0;
        for (const r of run.resources) {
            for (const [key, value] of Object.entries(r.inputs)) {
                const text = JSON.stringify(value) ?? "";
                for (const [who, pw] of Object.entries(needles)) {
                    if (text.includes(pw) || text.includes(pw.replace(/\\/g, "\\\\"))) {
                        carried++;
                        expect({ resource: r.name, input: key, who, secret: r.secretInputs.has(key) }).toEqual({
                            resource: r.name,
                            input: key,
                            who,
                            secret: true,
                        });
                    }
                }
            }
        }
        expect(carried).toBeGreaterThan(0);
        // Synapse's passfile: synapse's own 0600, libpq's escaping of ':' and '\'.
        const pgpass = installedFiles(run.byName("chat-synapse-run")).get("/mnt/matrix_data/synapse/secrets/pgpass")!;
        expect(pgpass).toEqual({
            mode: "0600",
            owner: "synapse:synapse",
            content: `${MANAGED_CLUSTER.host}:25060:synapse:synapse:synapse-SECRET-managed\\:pass\\\\word`,
        });
        expect(installedFiles(run.byName("chat-database-move-run")).get(MANAGED_DB_PGPASS)).toMatchObject({ mode: "0600", owner: "postgres:postgres" });
        // The step's output is kept secret too, and its script writes the admin's password to a 0600 file, never argv.
        expect(run.byName("chat-database-move-run").secretInputs.has("stdin")).toBe(true);
        expect(stepVariable(run.byName("chat-database-move-run"), "MANAGED_ADMIN_PASSWORD")).toBe(MANAGED_CLUSTER.password);
        expect(readFile("steps/database-move.sh")).not.toMatch(/PGPASSWORD|-W |password=/i);
    });

    test("the move runs after the local PostgreSQL and the firewall, and Synapse's step (the switch) after the move", () => {
        const move = run.byName("chat-database-move-run");
        expect(move.dependsOn).toEqual(expect.arrayContaining(["chat-postgres-run", "chat-database-firewall", "chat-database-user"]));
        expect(run.byName("chat-synapse-run").dependsOn).toContain("chat-database-move-run");
        // The local PostgreSQL stays: it keeps the old database until the operator removes it.
        expect(run.byName("chat-postgres-run")).toBeDefined();
    });

    test("the backups dump the cluster (libpq's service file), not the local database Synapse left; the local restore is not installed", () => {
        const files = installedFiles(run.byName("chat-backups-run"));
        const backup = files.get("/usr/local/sbin/phillymesh-chat-backup")!.content;
        // The settings first, then the service for pg_dump, which bash hands on to it.
        const shown = spawnSync(
            "bash",
            ["-c", `${backup.split("\n# database managed")[0]}\nexport PGSERVICEFILE=x; ${backup.match(/^export PGSERVICE.*$/m)![0]}; env`],
            {
                encoding: "utf8",
                env: { PATH: process.env.PATH },
            },
        );
        expect(backup).toMatch(
            new RegExp(
                `\\n\\[ -f "\\$CONF" \\] && \\. "\\$CONF"\\n# database managed.*\\nexport PGSERVICEFILE=${MANAGED_DB_SERVICE_FILE} PGSERVICE=synapse\\n`,
            ),
        );
        expect(shown.stdout).toContain("PGSERVICE=synapse\n");
        const sc = spawnSync("shellcheck", ["--shell=bash", "-"], { input: backup, encoding: "utf8" });
        expect(sc.stdout + sc.stderr).toBe("");
        // The settings file the restore also reads names no cluster; the restore installed refuses.
        expect(files.get("/etc/phillymesh-chat/backup.env")!.content).not.toMatch(/PGSERVICE|PGHOST/);
        const restore = files.get("/usr/local/sbin/phillymesh-chat-restore")!.content;
        expect(restore).toBe(readFile("server/sbin/phillymesh-chat-restore-managed.sh"));
        expect(spawnSync("bash", ["-c", restore]).status).toBe(1);
    });
});

describe("turning it on is a config edit", () => {
    test("it previews (the cluster's address unknown until it exists): the cluster, its user and firewall, the move step", async () => {
        const preview = await runProgram(MANAGED, SECRETS, { preview: true });
        expect(preview.resources.map((r) => r.type)).toEqual(
            expect.arrayContaining([
                "digitalocean:index/databaseCluster:DatabaseCluster",
                "digitalocean:index/databaseUser:DatabaseUser",
                "digitalocean:index/databaseFirewall:DatabaseFirewall",
            ]),
        );
        expect(preview.byName("chat-database-move-run").dependsOn).toContain("chat-database-firewall");
    });

    test("of the steps already there, only synapse (the switch), backups (the dump's source) and housekeeping (the report's and table settings' database) change; nothing is replaced", async () => {
        const before = await runProgram(BASE_CONFIG, SECRETS);
        const after = await runProgram(MANAGED, SECRETS);
        const stdins = (r: ProgramRun) => new Map(r.resources.filter((x) => x.name.endsWith("-run")).map((x) => [x.name, x.inputs.stdin as string]));
        const [a, b] = [stdins(before), stdins(after)];
        const changed = [...a.keys()].filter((n) => a.get(n) !== b.get(n)).sort();
        expect(changed).toEqual(["chat-backups-run", "chat-housekeeping-run", "chat-synapse-run"]);
        expect([...b.keys()].filter((n) => !a.has(n))).toEqual(["chat-database-move-run"]);
        // The droplet, volume and reserved IP keep every input (nothing that would replace them).
        for (const name of ["chat-droplet", "chat-data", "chat-ip"]) expect(after.byName(name).inputs).toEqual(before.byName(name).inputs);
    });
});

describe("database local (the default) renders exactly what it did before", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram(BASE_CONFIG, SECRETS);
    });

    test("no cluster, no firewall, no move step; the local database section and the backups unchanged", () => {
        expect(run.resources.filter((r) => r.type.startsWith("digitalocean:index/database"))).toEqual([]);
        expect(run.resources.find((r) => r.name === "chat-database-move-run")).toBeUndefined();
        expect(run.calls.map((c) => c.token)).not.toContain("digitalocean:index/getDatabaseCa:getDatabaseCa");
        expect(databaseArgs(run)).toEqual({
            user: "synapse",
            dbname: "synapse",
            host: "127.0.0.1",
            port: 5432,
            passfile: "/mnt/matrix_data/synapse/secrets/pgpass",
            cp_min: 1,
            cp_max: 3,
        });
        const files = installedFiles(run.byName("chat-backups-run"));
        expect(files.get("/usr/local/sbin/phillymesh-chat-backup")!.content).toBe(readFile("server/sbin/phillymesh-chat-backup.sh"));
        expect(files.get("/usr/local/sbin/phillymesh-chat-restore")!.content).toBe(readFile("server/sbin/phillymesh-chat-restore.sh"));
    });

    test("every step's stdin is the same with database local set explicitly", async () => {
        const explicit = await runProgram({ ...BASE_CONFIG, database: "local" }, SECRETS);
        const stdins = (r: ProgramRun) => Object.fromEntries(r.resources.filter((x) => x.name.endsWith("-run")).map((x) => [x.name, x.inputs.stdin]));
        expect(stdins(explicit)).toEqual(stdins(run));
    });
});

describe("the pool is sized for the cluster's connection limit", () => {
    test("DigitalOcean's figures: 25 connections per GiB less its own 3 (22 on the smallest node)", () => {
        expect(managedConnectionLimit("db-s-1vcpu-1gb")).toBe(22);
        expect(managedConnectionLimit("db-s-1vcpu-2gb")).toBe(47);
        expect(managedConnectionLimit("db-s-2vcpu-4gb")).toBe(97);
        expect(managedConnectionLimit("gd-2vcpu-8gb")).toBe(197);
        expect(managedConnectionLimit("db-s-1vcpu")).toBeUndefined();
    });

    test.each([
        ["one process on the smallest node: Synapse's own default, 10", {}, 10],
        ["two workers (5 processes) on 22 connections, 4 kept free: 3 each", { synapseWorkers: "2" }, 3],
        ["two workers on a 4 GiB node: 10 each", { synapseWorkers: "2", managedDatabaseSize: "db-s-2vcpu-4gb" }, 10],
        ["databasePoolMax set in the stack and fitting: kept", { databasePoolMax: "5" }, 5],
    ])("%s", async (_what, overrides, poolMax) => {
        const c = cfg({ ...MANAGED, ...overrides });
        expect(c.database).toMatchObject({ kind: "managed", poolMax });
        // Every process's pool plus the headroom fits under the limit.
        if (c.database.kind === "managed") {
            const processes = c.synapse.workers > 0 ? c.synapse.workers + 3 : 1;
            expect(processes * c.database.poolMax + 4).toBeLessThanOrEqual(c.database.connectionLimit);
        }
        if (Object.keys(overrides).length === 0) expect(databaseArgs(await runProgram(MANAGED, SECRETS)).cp_max).toBe(poolMax);
    });

    test("with database managed, the workers' pools are checked against the cluster, not the local postgresMaxConnections", () => {
        // Locally 5 processes x 3 + 3 would need postgresMaxConnections 18 (the default is 10).
        expect(() => cfg({ ...MANAGED, synapseWorkers: "2" })).not.toThrow();
        expect(() => cfg({ ...BASE_CONFIG, synapseWorkers: "2" })).toThrow(/postgresMaxConnections \(10\) must be at least 18/);
    });
});

describe("bad configurations are refused at preview, naming the key", () => {
    test.each([
        [
            "database on a server the operator brings",
            { hosting: "existing", sshHost: "203.0.113.5" },
            /phillymesh-chat:database is managed, which needs hosting digitalocean/,
        ],
        ["an unknown kind", { database: "cloud" }, /phillymesh-chat:database must be one of local, managed/],
        [
            "a PostgreSQL Synapse refuses",
            { managedDatabaseVersion: "13" },
            /phillymesh-chat:managedDatabaseVersion must be a PostgreSQL major version .*14 or newer/,
        ],
        [
            "a cluster newer than the image's pg_dump (the nightly backup)",
            { managedDatabaseVersion: "18" },
            /phillymesh-chat:managedDatabaseVersion \(18\) is newer than the PostgreSQL of dropletImage debian-13-x64 \(17\)/,
        ],
        ["a size without its memory", { managedDatabaseSize: "db-s-1vcpu" }, /phillymesh-chat:managedDatabaseSize must be a DigitalOcean database size slug/],
        [
            "eight workers on the smallest node",
            { synapseWorkers: "8" },
            /phillymesh-chat:managedDatabaseSize \(db-s-1vcpu-1gb\) admits 22 connections: too few for 11 Synapse processes/,
        ],
        [
            "a databasePoolMax the cluster cannot hold",
            { databasePoolMax: "19" },
            /phillymesh-chat:databasePoolMax \(19\) x 1 Synapse process does not fit the 22 connections/,
        ],
        [
            "adopting an old database straight into the cluster",
            { adoptSigningKey: "/srv/old/signing.key", adoptPostgresDump: "/srv/old/synapse.dump" },
            /phillymesh-chat:database is managed, but phillymesh-chat:adoptPostgresDump/,
        ],
    ])("%s", async (_what, overrides, message) => {
        const c = { ...MANAGED, ...overrides } as Record<string, string>;
        await expect(runProgram(c, SECRETS, { preview: true })).rejects.toThrow(message);
    });
});
