// files/steps/database-move.sh against real PostgreSQL servers on this machine's loopback: a "local"
// one (Unix socket only, as on the server) holding a Synapse-shaped database, and a "managed" one
// that only takes TLS with a password (hostssl + scram), its certificate signed by a CA of this test
// and valid for `localhost` only, and an admin that is no superuser (CREATEDB, as DigitalOcean's
// doadmin). The step runs as the server runs it (stepScript, as root, lib.sh first); systemctl is a
// stand-in that records what the step asks of Synapse. Proven: the database is made C-collated;
// a restore that fails leaves nothing in the cluster and Synapse started again on local; a good move
// copies every row, leaves Synapse stopped for its step and records itself; a re-run dumps nothing;
// tables without the record are refused; and a CA that did not sign the server's certificate
// (verify-full) stops the step before anything is touched. Then, on the moved database, the nightly
// housekeeping as its managed unit runs it (its report over verify-full with the passfile handed over as
// a credential; no compressor) and the housekeeping step's per-table settings as synapse.
// Needs root and PostgreSQL's server binaries (scripts/install-test-tools.sh: postgresql).
import { throwawayCert } from "./throwawayCert";
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { housekeepingUnit, tableSettingsSql } from "../components/housekeeping";
import { serviceFile } from "../components/managedDatabase";
import { managedDatabaseConfig } from "../components/synapse";
import { readFile, stepScript } from "../components/templates";
import { DEFAULT_HOUSEKEEPING } from "./harness";

const PG_BIN = (() => {
    const root = "/usr/lib/postgresql";
    const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => fs.existsSync(`${root}/${v}/bin/initdb`)) : [];
    if (versions.length === 0) throw new Error("PostgreSQL's server binaries are not installed (apt-get install postgresql)");
    return `${root}/${versions.sort((a, b) => Number(b) - Number(a))[0]}/bin`;
})();
const LOCAL_PORT = 55432;
const MANAGED_PORT = 55433;
const ADMIN_PASSWORD = "doadmin-SECRET:pass\\word'$(touch /tmp/pwned)";
const SYNAPSE_PASSWORD = "synapse-SECRET:pw\\x";

let dir: string;
/** The servers' data and sockets: postgres's own directory inside the (root's) test directory. */
let pg: string;
const asPostgres = (cmd: string, args: string[], input?: string) =>
    execFileSync("runuser", ["-u", "postgres", "--", cmd, ...args], { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });
const localSql = (sql: string, db = "synapse") =>
    asPostgres("psql", ["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", pg, "-p", String(LOCAL_PORT), "-d", db, "-c", sql]).trim();
const managedSql = (sql: string, db = "synapse") =>
    asPostgres("psql", ["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", pg, "-p", String(MANAGED_PORT), "-d", db, "-c", sql]).trim();
const systemctlLog = () => (fs.existsSync(`${dir}/systemctl.log`) ? fs.readFileSync(`${dir}/systemctl.log`, "utf8") : "");

function startCluster(name: string, port: number, extra: string[]): void {
    const data = `${pg}/${name}`;
    asPostgres(`${PG_BIN}/initdb`, ["-D", data, "-A", "trust", "-U", "postgres", "--locale=C.UTF-8", "-E", "UTF8"]);
    asPostgres(`${PG_BIN}/pg_ctl`, ["-D", data, "-l", `${data}.log`, "-w", "-o", [`-p ${port}`, `-k ${pg}`, ...extra].join(" "), "start"]);
}

/** Runs the step as a RemoteStep does: its whole program on stdin of bash, as root. */
function runStep(caFile = `${dir}/ca.crt`): { status: number; out: string } {
    const files = [
        { path: `${dir}/etc/ca.crt`, content: fs.readFileSync(caFile, "utf8").trim(), mode: "0644", owner: "root:root" },
        {
            path: `${dir}/etc/service.conf`,
            content: serviceFile("localhost", MANAGED_PORT, { ca: `${dir}/etc/ca.crt`, passfile: `${dir}/etc/pgpass` }),
            mode: "0644",
            owner: "root:root",
        },
        { path: `${dir}/etc/pgpass`, content: `localhost:${MANAGED_PORT}:synapse:synapse:synapse-SECRET\\:pw\\\\x`, mode: "0600", owner: "postgres:postgres" },
    ] as const;
    const script = stepScript(
        "database-move.sh",
        {
            STEP_NAME: "database-move",
            MANAGED_HOST: "localhost",
            MANAGED_PORT: String(MANAGED_PORT),
            MANAGED_CA: `${dir}/etc/ca.crt`,
            MANAGED_SERVICE_FILE: `${dir}/etc/service.conf`,
            MANAGED_ADMIN_USER: "doadmin",
            MANAGED_ADMIN_PASSWORD: ADMIN_PASSWORD,
            MANAGED_ADMIN_DB: "defaultdb",
        },
        [],
        files,
    );
    // The local PostgreSQL is found where runuser's psql and pg_dump look (PGHOST/PGPORT), as on the server its socket.
    const r = spawnSync("bash", [], {
        input: script,
        encoding: "utf8",
        env: { ...process.env, PATH: `${dir}/bin:${process.env.PATH}`, PGHOST: pg, PGPORT: String(LOCAL_PORT), STANDIN_DIR: dir },
    });
    return { status: r.status ?? -1, out: r.stdout + r.stderr };
}

beforeAll(() => {
    if (process.getuid?.() !== 0) throw new Error("this test runs the step as the server does: as root");
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbmove-"));
    fs.chmodSync(dir, 0o755);
    pg = `${dir}/pg`;
    fs.mkdirSync(pg, { mode: 0o755 });
    execFileSync("chown", ["postgres:postgres", pg]);
    // The CA, and the "cluster's" certificate for localhost signed by it; a second CA that signed nothing here.
    const ssl = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
    for (const ca of ["ca", "other-ca"]) throwawayCert(path.join(dir, `${ca}.crt`), path.join(dir, `${ca}.key`), ca, 2);
    ssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]);
    fs.writeFileSync(`${dir}/san.ext`, "subjectAltName=DNS:localhost\n");
    ssl([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    for (const f of ["server.key", "server.crt"]) fs.copyFileSync(`${dir}/${f}`, `${pg}/${f}`);
    execFileSync("chown", ["postgres:postgres", `${pg}/server.key`, `${pg}/server.crt`]);
    fs.chmodSync(`${pg}/server.key`, 0o600);

    // systemctl's stand-in: Synapse "runs" while the file exists; every call is logged.
    fs.mkdirSync(`${dir}/bin`);
    fs.writeFileSync(
        `${dir}/bin/systemctl`,
        [
            "#!/bin/bash",
            'echo "$*" >>"$STANDIN_DIR/systemctl.log"',
            'case "$1" in',
            '  is-active) [ -e "$STANDIN_DIR/synapse.running" ] ;;',
            '  stop) rm -f "$STANDIN_DIR/synapse.running" ;;',
            '  start) touch "$STANDIN_DIR/synapse.running" ;;',
            "esac",
        ].join("\n"),
        { mode: 0o755 },
    );

    startCluster("local", LOCAL_PORT, ["-c listen_addresses=''"]);
    startCluster("managed", MANAGED_PORT, [
        "-c listen_addresses=127.0.0.1",
        "-c ssl=on",
        `-c ssl_cert_file=${pg}/server.crt`,
        `-c ssl_key_file=${pg}/server.key`,
    ]);
    // The "cluster" admits TLS with a password only (no plain TCP); the socket is this test's own door.
    fs.writeFileSync(`${pg}/managed/pg_hba.conf`, "local all postgres trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n");
    asPostgres(`${PG_BIN}/pg_ctl`, ["-D", `${pg}/managed`, "reload"]);
    managedSql(`CREATE ROLE doadmin LOGIN CREATEDB CREATEROLE PASSWORD '${ADMIN_PASSWORD.replace(/'/g, "''")}'`, "postgres");
    managedSql("CREATE DATABASE defaultdb OWNER doadmin", "postgres");
    managedSql(`CREATE ROLE synapse LOGIN PASSWORD '${SYNAPSE_PASSWORD}'`, "postgres");

    // The local database as the postgres step makes it, with Synapse-shaped tables and rows in them.
    localSql("CREATE ROLE synapse LOGIN", "postgres");
    localSql("CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER synapse", "postgres");
    const tables = [
        "SET ROLE synapse",
        "CREATE TABLE users (name text PRIMARY KEY, password_hash text, creation_ts bigint)",
        "CREATE TABLE rooms (room_id text PRIMARY KEY, is_public boolean, creator text)",
        "CREATE TABLE events (stream_ordering bigserial PRIMARY KEY, event_id text UNIQUE, room_id text, type text, sender text)",
        "CREATE TABLE event_json (event_id text PRIMARY KEY, room_id text, json text)",
        "CREATE TABLE state_groups (id bigint PRIMARY KEY, room_id text, event_id text)",
        "CREATE TABLE server_signature_keys (server_name text, key_id text, verify_key bytea)",
        "INSERT INTO users SELECT '@user' || i || ':phillymesh.net', 'hash' || i, i FROM generate_series(1, 300) i",
        "INSERT INTO rooms SELECT '!room' || i || ':phillymesh.net', i % 2 = 0, '@user1:phillymesh.net' FROM generate_series(1, 40) i",
        "INSERT INTO events (event_id, room_id, type, sender) SELECT '$ev' || i, '!room' || (i % 40 + 1) || ':phillymesh.net', 'm.room.message', '@user' || (i % 300 + 1) || ':phillymesh.net' FROM generate_series(1, 5000) i",
        "INSERT INTO event_json SELECT event_id, room_id, '{\"body\": \"message ' || stream_ordering || ' é ü 🚀\"}' FROM events",
        "INSERT INTO state_groups SELECT i, '!room' || (i % 40 + 1) || ':phillymesh.net', '$ev' || i FROM generate_series(1, 700) i",
    ];
    asPostgres("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg, "-p", String(LOCAL_PORT), "-d", "synapse"], tables.join(";\n") + ";\n");
}, 120_000);

afterAll(() => {
    if (!dir) return;
    for (const c of ["local", "managed"]) {
        if (fs.existsSync(`${pg}/${c}/postmaster.pid`))
            spawnSync("runuser", ["-u", "postgres", "--", `${PG_BIN}/pg_ctl`, "-D", `${pg}/${c}`, "-m", "immediate", "stop"]);
    }
    fs.rmSync(dir, { recursive: true, force: true });
});

describe("database-move.sh on real PostgreSQL servers", () => {
    test("a CA that did not sign the cluster's certificate: refused (verify-full) before anything is touched", () => {
        fs.writeFileSync(`${dir}/synapse.running`, "");
        const r = runStep(`${dir}/other-ca.crt`);
        expect(r.status).not.toBe(0);
        expect(r.out).toMatch(/cannot reach the managed database at localhost:55433 over verified TLS/);
        expect(managedSql("SELECT count(*) FROM pg_database WHERE datname = 'synapse'", "postgres")).toBe("0");
        expect(systemctlLog()).toBe("");
        expect(r.out).not.toContain("SECRET");
    });

    test("a restore that fails: nothing stays in the cluster, Synapse runs again on local, the step fails", () => {
        // An object the cluster's synapse user may not create (an untrusted extension), as a stand-in
        // for anything that breaks a restore half-way.
        localSql("CREATE EXTENSION pageinspect", "synapse");
        const r = runStep();
        localSql("DROP EXTENSION pageinspect", "synapse");
        expect(r.status).not.toBe(0);
        expect(r.out).toContain("the move did not happen: Synapse stays on the local database");
        // lib.sh's exit handler ran after the step's own (it removes the admin's passfile).
        expect(r.out).toMatch(/the move did not happen[^]*\[database-move\] FAILED \(exit [1-9]\d*\)/);
        // The database was made as Synapse needs it, and holds nothing from the failed restore.
        expect(
            managedSql("SELECT datcollate || '/' || datctype || '/' || pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'synapse'", "postgres"),
        ).toBe("C/C/UTF8");
        expect(managedSql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")).toBe("0");
        expect(systemctlLog().split("\n")).toEqual(expect.arrayContaining(["stop matrix-synapse", "start matrix-synapse"]));
        expect(fs.existsSync(`${dir}/synapse.running`)).toBe(true);
        expect(r.out).not.toContain("SECRET");
    }, 60_000);

    test("the move: every row in the cluster, the counts compared, Synapse left stopped for its step, the move recorded", () => {
        fs.writeFileSync(`${dir}/systemctl.log`, "");
        const r = runStep();
        expect({ status: r.status, out: r.out }).toEqual({
            status: 0,
            out: expect.stringContaining("moved: users 300 rooms 40 events 5000 event_json 5000 state_groups 700"),
        });
        for (const table of ["users", "rooms", "events", "event_json", "state_groups"]) {
            expect({ table, rows: managedSql(`SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM ${table} t`) }).toEqual({
                table,
                rows: localSql(`SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM ${table} t`),
            });
        }
        // The restored tables are synapse's own, so Synapse can alter them in later schema updates.
        expect(managedSql("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")).toBe("synapse");
        expect(managedSql("SELECT note FROM phillymesh_chat_database_move")).toMatch(/^moved from the local database on .*: users 300,rooms 40,events 5000/);
        // The sequence came along: the next event gets the next number, not a duplicate.
        expect(managedSql("SELECT nextval('events_stream_ordering_seq')")).toBe("5001");
        expect(systemctlLog()).toContain("stop matrix-synapse");
        expect(systemctlLog()).not.toContain("start matrix-synapse");
        expect(fs.existsSync(`${dir}/synapse.running`)).toBe(false);
        // The local database is kept as it was, but no longer takes Synapse's connections (a switch
        // back to local fails instead of running on a copy that stopped at the move).
        expect(localSql("SELECT count(*) FROM events")).toBe("5000");
        expect(localSql("SELECT has_database_privilege('synapse', 'synapse', 'CONNECT')")).toBe("f");
        expect(localSql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'synapse'")).toMatch(
            /^phillymesh-chat: Synapse's database is the managed cluster \(moved from the local database .*\); this copy is kept until you drop it$/,
        );
        expect(r.out).not.toContain("SECRET");
    }, 60_000);

    test("a re-run dumps nothing and leaves Synapse alone", () => {
        fs.writeFileSync(`${dir}/systemctl.log`, "");
        managedSql("SET ROLE synapse; INSERT INTO users VALUES ('@new:phillymesh.net', 'h', 1)");
        const r = runStep();
        expect(r.status).toBe(0);
        expect(r.out).toMatch(/the cluster is Synapse's database already \(moved from the local database .*\): nothing to move/);
        expect(systemctlLog()).toBe("");
        expect(managedSql("SELECT count(*) FROM users")).toBe("301");
    }, 60_000);

    test("Synapse's database section, as psycopg2 hands it to libpq, reaches the moved database over verify-full (and not with another CA)", () => {
        // psycopg2.connect(**args) (Synapse passes `args` but cp_*) makes a libpq conninfo of them.
        const conninfo = (ca: string) => {
            const args = (managedDatabaseConfig("/unused", { host: "localhost", port: MANAGED_PORT, poolMax: 10 }) as { args: Record<string, unknown> }).args;
            const libpq = { ...args, sslrootcert: ca, passfile: `${dir}/etc/pgpass` } as Record<string, unknown>;
            delete libpq.cp_min;
            delete libpq.cp_max;
            return Object.entries(libpq)
                .map(([k, v]) => `${k}=${String(v)}`)
                .join(" ");
        };
        const query = (ca: string) =>
            spawnSync(
                "runuser",
                [
                    "-u",
                    "postgres",
                    "--",
                    "psql",
                    "-X",
                    "-tA",
                    conninfo(ca),
                    "-c",
                    "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                ],
                { encoding: "utf8" },
            );
        expect(conninfo(`${dir}/etc/ca.crt`)).toContain("sslmode=verify-full");
        expect(query(`${dir}/etc/ca.crt`).stdout.trim()).toBe("synapse true");
        const other = query(`${dir}/other-ca.crt`);
        expect(other.status).not.toBe(0);
        expect(other.stderr).toMatch(/certificate verify failed/);
    });

    test("the nightly housekeeping on the moved database: its report over verify-full, the passfile a credential even when group-readable, indexes rebuilt online as synapse, the compressor skipped", () => {
        const hk = `${dir}/housekeeping`;
        for (const d of ["", "/creds", "/tmp", "/state"]) fs.mkdirSync(`${hk}${d}`, { mode: 0o700 });
        // The service file as the server has it, but its passfile somewhere that does not exist: the
        // password can only come from the credential, through the program's passfile= (which wins).
        fs.writeFileSync(`${hk}/service.conf`, serviceFile("localhost", MANAGED_PORT, { ca: `${dir}/etc/ca.crt`, passfile: `${hk}/no-such-passfile` }));
        // The credential as systemd may leave it: read-only, and group-readable as a granted ACL shows (libpq ignores such a passfile).
        fs.copyFileSync(`${dir}/etc/pgpass`, `${hk}/creds/pgpass`);
        fs.chmodSync(`${hk}/creds/pgpass`, 0o440);
        fs.writeFileSync(`${hk}/compressor`, `#!/bin/bash\ntouch ${hk}/compressor-started\n`, { mode: 0o755 });
        execFileSync("chown", ["-R", "postgres:postgres", hk]);
        // The unit's own settings for the database (its Environment= lines), but the service file of this test.
        const unitEnv = housekeepingUnit("/mnt/matrix_data", DEFAULT_HOUSEKEEPING, "managed")
            .split("\n")
            .filter((l) => /^Environment="?(HOUSEKEEPING_|PGSERVICEFILE)/.test(l))
            .map((l) => l.replace(/^Environment=/, "").replace(/^"(.*)"$/, "$1"));
        expect(unitEnv.map((e) => e.split("=")[0])).toEqual(["HOUSEKEEPING_DATABASE", "PGSERVICEFILE", "HOUSEKEEPING_DB"]);
        const env = [
            ...unitEnv.filter((e) => !e.startsWith("PGSERVICEFILE=")),
            `PGSERVICEFILE=${hk}/service.conf`,
            `CREDENTIALS_DIRECTORY=${hk}/creds`,
            `TMPDIR=${hk}/tmp`,
            `STATE_DIRECTORY=${hk}/state`,
            "COMPRESSOR=on",
            `COMPRESSOR_PYTHON=${hk}/compressor`,
            // The rebuild on the cluster, as its owner synapse: events stands in for a hot table (the
            // moved schema has none), any size rebuilt; a table Synapse has not made is passed over.
            "INDEX_REBUILD=on",
            "INDEX_REBUILD_TABLES=events,no_such_table",
            "INDEX_REBUILD_MIN_MB=0",
            `PATH=${process.env.PATH}`,
        ];
        // A failed rebuild's leftover, as REINDEX CONCURRENTLY leaves it: an invalid index named *_ccnew.
        managedSql("CREATE INDEX events_sender_ccnew ON events (sender)");
        managedSql("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'events_sender_ccnew'::regclass", "synapse");
        const files = () =>
            managedSql(
                "SELECT string_agg(relname || ':' || relfilenode, ',' ORDER BY relname) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid WHERE i.indrelid = 'events'::regclass",
            );
        const filesBefore = files();
        const program = path.join(__dirname, "..", "files", "server", "sbin", "phillymesh-chat-db-housekeeping.py");
        // As in the unit, the user's home is there but unreadable (InaccessiblePaths hides synapse's home,
        // its data directory): libpq, over TLS, looks for a client certificate there and must not fail.
        // (Found by drill 25h: without sslcert in the unit's connection string this fails with "could not open certificate file".)
        const home = execFileSync("getent", ["passwd", "postgres"], { encoding: "utf8" }).split(":")[5];
        const hideHome = 'mount -t tmpfs -o mode=000 tmpfs "$0" && exec "$@"';
        const r = spawnSync("unshare", ["-m", "sh", "-c", hideHome, home, "runuser", "-u", "postgres", "--", "env", "-i", ...env, "python3", "-I", program], {
            encoding: "utf8",
        });
        // The one line at warning priority: the leftover dropped.
        expect({ status: r.status, stderr: r.stderr }).toEqual({
            status: 0,
            stderr: "<4>dropped events_sender_ccnew, an invalid index left by a rebuild that did not finish\n",
        });
        const mb = (Number(managedSql("SELECT pg_database_size('synapse')")) / 1048576).toFixed(1);
        expect(r.stdout).toMatch(
            new RegExp(`^<6>database synapse on the managed cluster \\(127\\.0\\.0\\.1:${MANAGED_PORT}\\): ${mb.replace(".", "\\.")} MB$`, "m"),
        );
        expect(r.stdout).toMatch(/^<6> {2}table events: [\d.]+ MB, \d+ rows/m);
        expect(r.stdout).toMatch(
            /^<6>state compression skipped: the database is the managed cluster, and synapse_auto_compressor connects to it without verifying/m,
        );
        expect(fs.existsSync(`${hk}/compressor-started`)).toBe(false);
        // The leftover dropped (a warning), then both of events' indexes rebuilt: new files, the same names, all valid.
        expect(r.stdout).toMatch(/^<6>indexes of events rebuilt: [\d.]+ MB -> [\d.]+ MB in \d+ s \(table [\d.]+ MB\)$/m);
        const filesAfter = files();
        const names = (list: string) => list.split(",").map((f) => f.split(":")[0]);
        expect(names(filesBefore)).toEqual(["events_event_id_key", "events_pkey", "events_sender_ccnew"]);
        expect(names(filesAfter)).toEqual(["events_event_id_key", "events_pkey"]);
        for (const f of filesAfter.split(",")) expect(filesBefore.split(",")).not.toContain(f);
        expect(managedSql("SELECT count(*) FROM pg_index WHERE indrelid = 'events'::regclass AND NOT indisvalid")).toBe("0");
        expect(managedSql("SELECT count(*) FROM events")).toBe("5000");
        const report = JSON.parse(fs.readFileSync(`${hk}/state/report.json`, "utf8"));
        expect(report.indexes).toEqual([
            expect.objectContaining({ table: "events", rebuilt: true, indexBytesAfter: expect.any(Number) }),
            { table: "no_such_table", rebuilt: false },
        ]);
        expect(report).toMatchObject({
            ok: true,
            database: "managed",
            compressor: "on",
            compression: { ok: true, skipped: expect.stringMatching(/^state compression skipped/) },
        });
        // The copy of the passfile is gone with the run; the password reached no output.
        expect(fs.readdirSync(`${hk}/tmp`)).toEqual([]);
        expect(r.stdout).not.toContain("SECRET");
        // Without the copy, libpq would have ignored the group-readable credential.
        const direct = spawnSync(
            "runuser",
            [
                "-u",
                "postgres",
                "--",
                "env",
                `PGSERVICEFILE=${hk}/service.conf`,
                "psql",
                "-X",
                "-w",
                "-tA",
                `service=synapse passfile=${hk}/creds/pgpass`,
                "-c",
                "SELECT 1",
            ],
            { encoding: "utf8" },
        );
        expect(direct.status).not.toBe(0);
        expect(direct.stderr).toMatch(/has group or world access/);
    });

    test("the housekeeping step's per-table autovacuum settings, as the step sends them in managed mode: as synapse through the service file", () => {
        managedSql("SET ROLE synapse; CREATE TABLE state_groups_state (state_group bigint, room_id text, type text, state_key text, event_id text)");
        // The step's command (files/steps/housekeeping.sh, DATABASE=managed), as root.
        const r = spawnSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "service=synapse"], {
            input: tableSettingsSql(),
            encoding: "utf8",
            env: { ...process.env, PGSERVICEFILE: `${dir}/etc/service.conf` },
        });
        expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: "" });
        expect(managedSql("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'state_groups_state'")).toBe(
            "autovacuum_vacuum_scale_factor=0.02,autovacuum_analyze_scale_factor=0.01",
        );
        expect(readFile("steps/housekeeping.sh")).toContain(
            'PGSERVICEFILE=$MANAGED_SERVICE_FILE psql -X -q -v ON_ERROR_STOP=1 "service=synapse" <<<"$TABLE_SETTINGS"',
        );
        managedSql("DROP TABLE state_groups_state");
    });

    test("tables in the cluster without the record of a move: refused, nothing dropped", () => {
        managedSql("ALTER TABLE phillymesh_chat_database_move RENAME TO someone_elses");
        fs.writeFileSync(`${dir}/systemctl.log`, "");
        const r = runStep();
        expect(r.status).not.toBe(0);
        expect(r.out).toMatch(/holds 7 tables but no record of a move: refusing to restore over them/);
        expect(managedSql("SELECT count(*) FROM users")).toBe("301");
        expect(systemctlLog()).toBe("");
        managedSql("ALTER TABLE someone_elses RENAME TO phillymesh_chat_database_move");
    }, 60_000);
});
