// The nightly database housekeeping and PostgreSQL's autovacuum (issue 12), as an operator would
// notice them: the config keys and what a bad value says at preview, the unit as systemd reads it
// (low priority, bounded, nothing depending on it), the program run with a stand-in psql and
// compressor (a failed or crashed compressor is an error in the journal and a failed unit, with the
// report still made), and the PostgreSQL settings that reach the server. With database managed: the
// unit that reaches the cluster (and the local one unchanged), the compressor skipped and said so, the
// warning at preview, the step's variables (tests/databaseMove.test.ts runs the program against a TLS
// "cluster").
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { mapSource, readConfig } from "../components/config";
import { compressorWarning, HOT_TABLES, housekeepingFiles, housekeepingUnit, managedUnitLines, tableSettingsSql } from "../components/housekeeping";
import { MANAGED_DB_CA_PATH, MANAGED_DB_PGPASS, MANAGED_DB_SERVICE_FILE } from "../components/managedDatabase";
import { postgresTuning } from "../components/postgres";
import { readFile } from "../components/templates";
import { BASE_CONFIG, DEFAULT_HOUSEKEEPING, ProgramRun, Recorded, runProgram, SECRETS } from "./harness";

const config = (overrides: Record<string, string> = {}) => readConfig(mapSource({ ...BASE_CONFIG, ...overrides }, SECRETS));
const problems = (overrides: Record<string, string>) => {
    try {
        config(overrides);
        return "";
    } catch (e) {
        return String(e);
    }
};

/** A unit file's settings, by key, in order (systemd's format: Key=value, repeated keys add up). */
function unitSettings(text: string): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const line of text.split("\n")) {
        const m = /^([A-Za-z]+)=(.*)$/.exec(line);
        if (m) (out[m[1]] ??= []).push(m[2]);
    }
    return out;
}

describe("config", () => {
    test("defaults: the compressor on, 0.1.2, 100 chunks of 500 state groups, 256 MB, the index rebuild on (harness: DEFAULT_HOUSEKEEPING)", () => {
        expect(config().housekeeping).toEqual(DEFAULT_HOUSEKEEPING);
    });

    test.each([
        [
            "stateCompressorVersion",
            "0.1.4",
            /stateCompressorVersion must be a release with a working wheel such as 0\.1\.2: 0\.1\.4 cannot be used, its wheel on PyPI is an empty stub/,
        ],
        ["stateCompressorVersion", "0.1.2; reboot", /stateCompressorVersion must be an exact release/],
        ["stateCompressorChunkSize", "0", /stateCompressorChunkSize must be a whole number from 10 to 100000 \(got "0"\)/],
        ["stateCompressorChunks", "many", /stateCompressorChunks must be a whole number from 1 to 100000/],
        ["stateCompressorMemoryMb", "16", /stateCompressorMemoryMb must be a whole number from 64 to 65536/],
        ["stateCompressor", "yes", /stateCompressor must be true or false/],
    ])("%s %j fails the preview naming the key", (key, value, expected) => {
        expect(problems({ [key]: value })).toMatch(expected);
    });
});

/** The compressor's settings in the unit's environment for chunkSize 250, chunks 40 (both modes). */
const COMPRESSOR_ENV = [
    "COMPRESSOR=on",
    "COMPRESSOR_PYTHON=/opt/synapse-auto-compressor/current/bin/python",
    "COMPRESSOR_CHUNK_SIZE=250",
    "COMPRESSOR_CHUNKS=40",
    "COMPRESSOR_LEVELS=100,50,25",
    "COMPRESSOR_TIMEOUT_SECONDS=3300",
    // The hot tables (HOT_TABLES), the same list that gets its own autovacuum settings.
    "INDEX_REBUILD=on",
    "INDEX_REBUILD_TABLES=state_groups_state,event_push_actions,device_inbox",
    "INDEX_REBUILD_DATA_DIR=/mnt/matrix_data",
];
describe("the unit", () => {
    const h = { compressor: true, compressorVersion: "0.1.2", chunkSize: 250, chunks: 40, memoryMaxMb: 192, indexRebuild: true };
    const unit = unitSettings(housekeepingUnit("/mnt/matrix_data", h));

    test("nothing depends on it and it depends on nothing: a failed run cannot take Synapse, a deploy or a backup with it", () => {
        for (const key of ["Requires", "BindsTo", "PartOf", "Requisite", "WantedBy", "RequiredBy"]) expect(unit[key]).toBeUndefined();
        // A backup started during a run waits for it; a run that finds a backup going skips itself.
        expect(unit.Before).toEqual(["phillymesh-chat-backup.service"]);
        expect(unit.ExecCondition).toEqual([
            `+/bin/sh -c 'case "$$(systemctl is-active phillymesh-chat-backup.service)" in activating|deactivating) echo "skipped: the backup is running"; exit 1 ;; esac'`,
        ]);
    });

    test("low priority and bounded: nice 19, idle CPU and I/O, MemoryMax from stateCompressorMemoryMb, an hour at most, killed first", () => {
        expect(unit).toMatchObject({
            Nice: ["19"],
            CPUSchedulingPolicy: ["idle"],
            IOSchedulingClass: ["idle"],
            MemoryMax: ["192M"],
            MemoryHigh: ["172M"],
            MemorySwapMax: ["0"],
            TimeoutStartSec: ["3600"],
            OOMScoreAdjust: ["900"],
        });
    });

    test("runs as synapse with no network (PostgreSQL's Unix socket, peer authentication: no password), with the settings as checked numbers", () => {
        expect(unit).toMatchObject({ User: ["synapse"], PrivateNetwork: ["true"], RestrictAddressFamilies: ["AF_UNIX"] });
        expect(unit.Environment).toEqual([...COMPRESSOR_ENV, '"HOUSEKEEPING_DB=host=/var/run/postgresql port=5432 user=synapse dbname=synapse"']);
        expect(unit.InaccessiblePaths?.[0]).toContain("-/mnt/matrix_data/synapse ");
        expect(housekeepingUnit("/mnt/matrix_data", { ...h, compressor: false })).toContain("Environment=COMPRESSOR=off\n");
        expect(housekeepingUnit("/mnt/matrix_data", { ...h, indexRebuild: false })).toContain("Environment=INDEX_REBUILD=off\n");
    });

    test("its timer: nightly before the backup (04:15), not caught up at boot", () => {
        const timer = unitSettings(readFile("server/systemd/db-housekeeping.timer"));
        expect(timer).toMatchObject({ OnCalendar: ["*-*-* 02:30:00"], RandomizedDelaySec: ["30m"], WantedBy: ["timers.target"] });
        expect(timer.Persistent).toBeUndefined();
        expect(housekeepingFiles("/mnt/matrix_data", h).map((f) => [f.path, f.mode])).toEqual([
            ["/usr/local/sbin/phillymesh-chat-db-housekeeping", "0755"],
            ["/etc/systemd/system/phillymesh-chat-db-housekeeping.service", "0644"],
            ["/etc/systemd/system/phillymesh-chat-db-housekeeping.timer", "0644"],
        ]);
    });
});

describe("the unit with database managed: the cluster, through libpq's service file, the password as a credential", () => {
    const h = { compressor: true, compressorVersion: "0.1.2", chunkSize: 250, chunks: 40, memoryMaxMb: 192, indexRebuild: true };
    const localText = housekeepingUnit("/mnt/matrix_data", h);
    const managedText = housekeepingUnit("/mnt/matrix_data", h, "managed");
    const [local, managed] = [unitSettings(localText), unitSettings(managedText)];

    test("the connection: the service synapse from the service file the backups use; the passfile comes as the credential pgpass", () => {
        expect(managed.Environment).toEqual([
            ...COMPRESSOR_ENV,
            "HOUSEKEEPING_DATABASE=managed",
            `PGSERVICEFILE=${MANAGED_DB_SERVICE_FILE}`,
            '"HOUSEKEEPING_DB=service=synapse sslcert=/nonexistent/postgresql.crt"',
        ]);
        // Read by PID 1 (root) from postgres's 0600 file; the unit's user reads only its own copy.
        expect(managed.LoadCredential).toEqual([`pgpass:${MANAGED_DB_PGPASS}`]);
        expect(managed.User).toEqual(["synapse"]);
    });

    test("the network, to the cluster by name: no PrivateNetwork, IPv4 and IPv6 (and the Unix socket), still no link-local or multicast", () => {
        expect(managed.PrivateNetwork).toBeUndefined();
        expect(managed.RestrictAddressFamilies).toEqual(["AF_UNIX AF_INET AF_INET6"]);
        expect(managed.IPAddressDeny).toEqual(["link-local multicast"]);
        expect(managed.IPAddressAllow).toBeUndefined();
    });

    test("the files: the CA and the service file readable, the rest of /etc/phillymesh-chat (backup passphrase, settings) still hidden", () => {
        expect(managed.InaccessiblePaths).toEqual(["-/mnt/matrix_data/synapse -/mnt/matrix_data/backups -/etc/matrix-synapse -/etc/ssh -/etc/letsencrypt"]);
        expect(managed.TemporaryFileSystem).toEqual(["/etc/phillymesh-chat:ro"]);
        expect(managed.BindReadOnlyPaths).toEqual([`${MANAGED_DB_CA_PATH} ${MANAGED_DB_SERVICE_FILE}`]);
        // The passfile itself is not bound in: only the credential's copy reaches the unit.
        expect(managedText).not.toContain(`BindReadOnlyPaths=${MANAGED_DB_PGPASS}`);
    });

    test("everything else is the local unit's, line for line; the sandbox otherwise unchanged", () => {
        const changed = managedUnitLines("/mnt/matrix_data");
        const from = new Set(changed.map((c) => c.from));
        const to = new Set(changed.flatMap((c) => c.to));
        expect(managedText.split("\n").filter((l) => !to.has(l))).toEqual(localText.split("\n").filter((l) => !from.has(l)));
        for (const key of [
            "ProtectSystem",
            "PrivateUsers",
            "CapabilityBoundingSet",
            "SystemCallFilter",
            "MemoryDenyWriteExecute",
            "NoNewPrivileges",
            "ProtectProc",
        ]) {
            expect({ key, value: managed[key] }).toEqual({ key, value: local[key] });
        }
    });

    test("local mode's unit is exactly today's: the socket, no network, /etc/phillymesh-chat hidden, no credential", () => {
        expect(housekeepingUnit("/mnt/matrix_data", h, "local")).toBe(localText);
        expect(
            localText
                .split("\n")
                .filter((l) =>
                    /^(Environment="HOUSEKEEPING_DB|InaccessiblePaths|PrivateNetwork|IPAddress|RestrictAddressFamilies|LoadCredential|TemporaryFileSystem|BindReadOnlyPaths)/.test(
                        l,
                    ),
                ),
        ).toEqual([
            'Environment="HOUSEKEEPING_DB=host=/var/run/postgresql port=5432 user=synapse dbname=synapse"',
            "InaccessiblePaths=-/mnt/matrix_data/synapse -/mnt/matrix_data/backups -/etc/matrix-synapse -/etc/phillymesh-chat -/etc/ssh -/etc/letsencrypt",
            "PrivateNetwork=true",
            "IPAddressDeny=any",
            "RestrictAddressFamilies=AF_UNIX",
        ]);
        expect(localText).not.toMatch(/managed|PGSERVICEFILE/);
        // The template rendered with the local values alone (a managed line that leaked into the template would show here).
        const values: Record<string, string> = {
            compressor: "on",
            compressor_python: "/opt/synapse-auto-compressor/current/bin/python",
            chunk_size: "250",
            chunks: "40",
            levels: "100,50,25",
            child_timeout: "3300",
            timeout: "3600",
            postgres_port: "5432",
            memory_high: "172",
            memory_max: "192",
            data_dir: "/mnt/matrix_data",
            index_rebuild: "on",
            index_tables: "state_groups_state,event_push_actions,device_inbox",
        };
        expect(localText).toBe(readFile("server/systemd/db-housekeeping.service").replace(/\{\{(\w+)\}\}/g, (_, k: string) => values[k]));
    });
});

describe("the program, with a stand-in psql and compressor", () => {
    let dir: string;
    beforeEach(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "housekeeping-"));
        fs.mkdirSync(path.join(dir, "bin"));
        fs.mkdirSync(path.join(dir, "state"));
        // psql answers each query of the report from canned rows.
        fs.writeFileSync(
            path.join(dir, "bin", "psql"),
            [
                "#!/bin/bash",
                "sql=${*: -1}",
                "case $sql in",
                "  *pg_database_size*) echo 52428800 ;;",
                "  *pg_total_relation_size*) printf 'state_groups_state\\t20971520\\t90000\\t1200\\tnever\\nevents\\t1048576\\t5000\\t3\\t2026-11-30 03:01\\n' ;;",
                "  *reltuples*) printf '90000\\t4000\\t1\\n' ;;",
                "  *lowest_uncompressed_group*) echo 2500 ;;",
                "  *inet_server_addr*) echo 10.110.0.7:25060 ;;",
                // The index rebuild: the sizes (indexes, table) from a file; REINDEX logs itself and
                // shrinks them (or fails when told to); the leftovers listed until dropped.
                '  *pg_indexes_size*) cat "$(dirname "$0")/../sizes" 2>/dev/null ;;',
                '  *REINDEX*) echo "$sql" >>"$(dirname "$0")/../sql.log"',
                '    [ ! -e "$(dirname "$0")/../reindex-fails" ] || { echo event_push_actions_room_id_user_id_ccnew >"$(dirname "$0")/../leftovers"; echo "ERROR:  could not extend file: No space left on device" >&2; exit 1; }',
                '    printf "20971520\\t52428800\\n" >"$(dirname "$0")/../sizes" ;;',
                '  *indisvalid*) cat "$(dirname "$0")/../leftovers" 2>/dev/null ;;',
                '  *"DROP INDEX"*) echo "$sql" >>"$(dirname "$0")/../sql.log"; rm -f "$(dirname "$0")/../leftovers" ;;',
                "esac",
                // Its connection (-d) and, for a passfile= in it, that file's mode and content as psql saw them.
                'db=; while [ $# -gt 0 ]; do [ "$1" = -d ] && db=$2; shift; done',
                'echo "$db" >>"$(dirname "$0")/../psql.log"',
                'pf=$(sed -n "s/.*passfile=\'\\([^\']*\\)\'.*/\\1/p" <<<"$db")',
                '[ -z "$pf" ] || { stat -c %a "$pf"; cat "$pf"; echo; } >>"$(dirname "$0")/../psql.log"',
                "exit 0",
            ].join("\n"),
            { mode: 0o755 },
        );
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** The program with a compressor that runs `body` (bash); its exit code and journal lines. */
    function run(body: string | undefined, env: Record<string, string> = {}) {
        const python = path.join(dir, "compressor-python");
        if (body !== undefined) fs.writeFileSync(python, `#!/bin/bash\n${body}\n`, { mode: 0o755 });
        const r = spawnSync("python3", ["-I", path.join(__dirname, "..", "files", "server", "sbin", "phillymesh-chat-db-housekeeping.py")], {
            encoding: "utf8",
            env: { PATH: `${dir}/bin:/usr/bin:/bin`, COMPRESSOR: "on", COMPRESSOR_PYTHON: python, STATE_DIRECTORY: path.join(dir, "state"), ...env },
        });
        const report = JSON.parse(fs.readFileSync(path.join(dir, "state", "report.json"), "utf8"));
        return { code: r.status, out: r.stdout, err: r.stderr, report };
    }

    test("a good run reports size, largest tables and progress at info priority, and exits 0", () => {
        const r = run("echo '<6>synapse_auto_compressor.manager: Finished running compressor. Saved 800 rows. Skipped 0/3 chunks' >&2");
        expect(r.code).toBe(0);
        expect(r.out).toMatch(/^<6>database synapse: 50\.0 MB$/m);
        expect(r.out).toMatch(/^<6> {2}table state_groups_state: 20\.0 MB, 90000 rows, 1200 dead, last vacuum never$/m);
        expect(r.out).toMatch(
            /^<6>state groups: 90000 rows in state_groups_state \(estimate\), newest group 4000, the compressor has scanned up to group 2500$/m,
        );
        expect(r.out).toMatch(/^<6>state compression finished in \d+ s$/m);
        expect(r.err).not.toMatch(/^<3>/m);
        expect(r.report).toMatchObject({ ok: true, compressor: "on", before: { databaseBytes: 52428800, scannedUpTo: 2500 }, compression: { ok: true } });
        expect(r.report.before.largestTables[0]).toEqual({ name: "state_groups_state", bytes: 20971520, rows: 90000, deadRows: 1200, lastVacuum: "never" });
    });

    test.each([
        [
            "an error of the compressor (exit 2)",
            "exit 2",
            /^<3>state compression failed: it failed with exit code 2 \(its error is above\) after \d+ s\. Synapse is not affected/m,
        ],
        ["a crash (SIGSEGV)", "kill -SEGV $$", /^<3>state compression failed: it was killed by signal 11 after/m],
        [
            "the memory limit (SIGKILL)",
            "kill -KILL $$",
            /^<3>state compression failed: it was killed by signal 9 \(most likely the memory limit, stateCompressorMemoryMb/m,
        ],
        ["a missing virtualenv", undefined, /^<3>state compression failed: its virtualenv is missing \(.*\): run pulumi up to install it again/m],
    ])("%s: an error in the journal, exit 1 (a failed unit), the report still made", (_what, body, expected) => {
        const r = run(body);
        expect(r.code).toBe(1);
        expect(r.err).toMatch(expected);
        expect(r.out).toMatch(/^<6>database synapse: 50\.0 MB$/m);
        expect(r.report).toMatchObject({ ok: false, compression: { ok: false } });
    });

    describe("database managed (the unit's environment: HOUSEKEEPING_DATABASE=managed, the service, the credential)", () => {
        const managedEnv = () => {
            fs.mkdirSync(path.join(dir, "creds"));
            fs.mkdirSync(path.join(dir, "tmp"));
            fs.writeFileSync(path.join(dir, "creds", "pgpass"), "db.example:25060:synapse:synapse:pw-SECRET", { mode: 0o440 });
            return {
                HOUSEKEEPING_DATABASE: "managed",
                HOUSEKEEPING_DB: "service=synapse",
                CREDENTIALS_DIRECTORY: path.join(dir, "creds"),
                TMPDIR: path.join(dir, "tmp"),
            };
        };

        test("the report names the cluster; the compressor is skipped at info priority, saying why; exit 0 (the unit succeeds)", () => {
            const r = run("touch started", managedEnv());
            expect(r.code).toBe(0);
            expect(r.out).toMatch(/^<6>database synapse on the managed cluster \(10\.110\.0\.7:25060\): 50\.0 MB$/m);
            expect(r.out).toMatch(
                /^<6>state compression skipped: the database is the managed cluster, and synapse_auto_compressor connects to it without verifying its TLS certificate, which could hand the synapse user's password to an impostor/m,
            );
            expect(r.out).not.toMatch(/^<6>compressing/m);
            expect(r.err).toBe("");
            expect(fs.existsSync(path.join(dir, "started"))).toBe(false);
            expect(r.report).toMatchObject({
                ok: true,
                database: "managed",
                compressor: "on",
                compression: { ok: true, skipped: expect.stringMatching(/^state compression skipped/) },
            });
            expect(r.report.after).toBeUndefined();
        });

        test("psql gets the service and a 0600 copy of the credential as passfile=; the copy is gone afterwards; the password is in no output", () => {
            const r = run(undefined, managedEnv());
            expect(r.code).toBe(0);
            const log = fs.readFileSync(path.join(dir, "psql.log"), "utf8").split("\n");
            const conninfo = log[0];
            expect(conninfo).toMatch(new RegExp(`^service=synapse passfile='${dir}/tmp/pgpass-[^'/]+'$`));
            // Every query: the same connection, the copy private (0600) and the credential's text.
            expect(log.filter((l) => l === conninfo).length).toBeGreaterThanOrEqual(4);
            expect(log.slice(1, 3)).toEqual(["600", "db.example:25060:synapse:synapse:pw-SECRET"]);
            expect(fs.readdirSync(path.join(dir, "tmp"))).toEqual([]);
            expect(r.out + r.err + JSON.stringify(r.report)).not.toContain("SECRET");
        });

        test("the cluster unreachable: an error naming the cluster and the service file; no compressor either way", () => {
            fs.writeFileSync(
                path.join(dir, "bin", "psql"),
                "#!/bin/bash\necho 'psql: error: connection to server at \"db.example\" failed: timeout' >&2\nexit 2\n",
                {
                    mode: 0o755,
                },
            );
            const r = run("touch started", { ...managedEnv(), PGSERVICEFILE: MANAGED_DB_SERVICE_FILE });
            expect(r.code).toBe(1);
            expect(r.err).toMatch(
                new RegExp(
                    `^<3>database report failed: psql: error: connection to server at "db.example" failed: timeout \\(is the cluster up, and this droplet in its firewall\\? try: PGSERVICEFILE=${MANAGED_DB_SERVICE_FILE} psql service=synapse\\)$`,
                    "m",
                ),
            );
            expect(fs.existsSync(path.join(dir, "started"))).toBe(false);
            expect(fs.readdirSync(path.join(dir, "tmp"))).toEqual([]);
        });

        test("with stateCompressor off, the line says it is off (nothing about TLS)", () => {
            const r = run(undefined, { ...managedEnv(), COMPRESSOR: "off" });
            expect(r.code).toBe(0);
            expect(r.out).toMatch(/^<6>state compression is off \(stateCompressor: false\)$/m);
            expect(r.out).not.toMatch(/skipped/);
        });
    });

    describe("the index rebuild (INDEX_REBUILD=on, the unit's hot tables)", () => {
        const MB = 1048576;
        const rebuildEnv = { INDEX_REBUILD: "on", INDEX_REBUILD_TABLES: "event_push_actions", INDEX_REBUILD_DATA_DIR: "/" };
        const sizes = (indexes: number, table: number) => fs.writeFileSync(path.join(dir, "sizes"), `${indexes}\t${table}\n`);
        const sqlLog = () => (fs.existsSync(path.join(dir, "sql.log")) ? fs.readFileSync(path.join(dir, "sql.log"), "utf8") : "");
        const baselines = () => JSON.parse(fs.readFileSync(path.join(dir, "state", "index-baselines.json"), "utf8"));

        test("never rebuilt and past 32 MB: rebuilt online before the compressor runs; the size after is kept as the next baseline", () => {
            sizes(325 * MB, 48 * MB);
            const r = run("echo compressing >>" + path.join(dir, "sql.log"), rebuildEnv);
            expect(r.code).toBe(0);
            expect(r.out).toMatch(/^<6>indexes of event_push_actions rebuilt: 325\.0 MB -> 20\.0 MB in \d+ s \(table 48\.0 MB\)$/m);
            expect(sqlLog()).toBe("REINDEX TABLE CONCURRENTLY public.event_push_actions\ncompressing\n");
            expect(baselines()).toEqual({ event_push_actions: 20 * MB });
            expect(r.report.indexes).toEqual([
                {
                    table: "event_push_actions",
                    indexBytes: 325 * MB,
                    tableBytes: 48 * MB,
                    rebuilt: true,
                    indexBytesAfter: 20 * MB,
                    seconds: expect.any(Number),
                },
            ]);
        });

        test.each([
            ["under 32 MB, never rebuilt", 31 * MB, undefined, /^<6>indexes of event_push_actions: 31\.0 MB \(table 48\.0 MB\), no rebuild needed$/m],
            [
                "under twice the size after the last rebuild",
                159 * MB,
                80 * MB,
                /^<6>indexes of event_push_actions: 159\.0 MB \(table 48\.0 MB, 80\.0 MB after the last rebuild\), no rebuild needed$/m,
            ],
        ])("%s: left alone", (_what, indexes, baseline, line) => {
            sizes(indexes, 48 * MB);
            if (baseline) fs.writeFileSync(path.join(dir, "state", "index-baselines.json"), JSON.stringify({ event_push_actions: baseline }));
            const r = run("true", rebuildEnv);
            expect(r.code).toBe(0);
            expect(r.out).toMatch(line);
            expect(sqlLog()).toBe("");
        });

        test("twice the size after the last rebuild: rebuilt again", () => {
            sizes(161 * MB, 48 * MB);
            fs.writeFileSync(path.join(dir, "state", "index-baselines.json"), JSON.stringify({ event_push_actions: 80 * MB }));
            const r = run("true", rebuildEnv);
            expect(r.code).toBe(0);
            expect(sqlLog()).toBe("REINDEX TABLE CONCURRENTLY public.event_push_actions\n");
        });

        test("less free on the data volume than twice the indexes: a warning, no rebuild, the unit still succeeds", () => {
            const huge = 2 ** 50; // a PiB: more than this machine's disk
            sizes(huge, 48 * MB);
            const r = run("true", rebuildEnv);
            expect(r.code).toBe(0);
            expect(r.err).toMatch(
                /^<4>indexes of event_push_actions: 1073741824\.0 MB, not rebuilt: a rebuild needs twice that free on \/, which has [\d.]+ MB$/m,
            );
            expect(sqlLog()).toBe("");
            expect(r.report.indexes[0]).toMatchObject({ rebuilt: false, skipped: "disk" });
        });

        test("a rebuild that fails: an error naming the table, its invalid copy dropped, the compressor still run, the unit failed", () => {
            sizes(325 * MB, 48 * MB);
            fs.writeFileSync(path.join(dir, "reindex-fails"), "");
            const r = run("echo compressing >>" + path.join(dir, "sql.log"), rebuildEnv);
            expect(r.code).toBe(1);
            expect(r.err).toMatch(
                /^<3>rebuilding the indexes of event_push_actions failed: ERROR: {2}could not extend file: No space left on device\. Synapse is not affected/m,
            );
            // The failed REINDEX leaves its invalid copy (the stand-in lists it from then on), dropped at once.
            expect(sqlLog()).toBe(
                'REINDEX TABLE CONCURRENTLY public.event_push_actions\nDROP INDEX CONCURRENTLY IF EXISTS public."event_push_actions_room_id_user_id_ccnew"\ncompressing\n',
            );
            expect(r.report).toMatchObject({ ok: false, compression: { ok: true }, indexes: [{ table: "event_push_actions", rebuilt: false }] });
        });

        test("leftovers of an earlier failed rebuild are dropped first, by name, with a warning", () => {
            sizes(10 * MB, 48 * MB);
            fs.writeFileSync(path.join(dir, "leftovers"), "event_push_actions_room_id_user_id_ccnew\n");
            const r = run("true", rebuildEnv);
            expect(r.code).toBe(0);
            expect(sqlLog()).toBe('DROP INDEX CONCURRENTLY IF EXISTS public."event_push_actions_room_id_user_id_ccnew"\n');
            expect(r.err).toBe("<4>dropped event_push_actions_room_id_user_id_ccnew, an invalid index left by a rebuild that did not finish\n");
        });

        test("indexRebuild false: said so, no query about indexes", () => {
            sizes(325 * MB, 48 * MB);
            const r = run("true", { ...rebuildEnv, INDEX_REBUILD: "off" });
            expect(r.code).toBe(0);
            expect(r.out).toMatch(/^<6>index rebuilds are off \(indexRebuild: false\)$/m);
            expect(sqlLog()).toBe("");
            expect(r.report.indexes).toBeUndefined();
        });
    });

    test("PostgreSQL down: the report fails at error priority and the compressor is not started", () => {
        fs.writeFileSync(path.join(dir, "bin", "psql"), "#!/bin/bash\necho 'psql: error: connection to server failed' >&2\nexit 2\n", { mode: 0o755 });
        const r = run("touch started");
        expect(r.code).toBe(1);
        expect(r.err).toMatch(/^<3>database report failed: psql: error: connection to server failed \(is PostgreSQL running/m);
        expect(fs.existsSync(path.join(dir, "started"))).toBe(false);
    });
});

describe("PostgreSQL housekeeping", () => {
    const tuning = Object.fromEntries(
        postgresTuning({ sharedBuffersMb: 64, workMemMb: 4, maxConnections: 30, lowMemory: true })
            .split("\n")
            .filter((l) => !l.startsWith("#"))
            .map((l) => l.split(" = ")),
    );

    test("autovacuum reclaims dead rows at 5 % instead of PostgreSQL's 20 %, append-only tables at 5 %, statistics at 2 %", () => {
        expect(tuning).toMatchObject({
            autovacuum: "on",
            autovacuum_vacuum_scale_factor: "0.05",
            autovacuum_vacuum_insert_scale_factor: "0.05",
            autovacuum_analyze_scale_factor: "0.02",
        });
    });

    test("the hot tables get 2 %, each only when Synapse has made it", () => {
        const sql = tableSettingsSql();
        expect(HOT_TABLES).toEqual(["state_groups_state", "event_push_actions", "device_inbox"]);
        for (const t of HOT_TABLES) {
            expect(sql).toContain(
                `IF to_regclass('public.${t}') IS NOT NULL THEN ALTER TABLE public.${t} SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.01); END IF;`,
            );
        }
        expect(sql).toMatch(/^DO \$\$\nBEGIN\n[\s\S]*\nEND\n\$\$;$/);
    });
});

describe("in the program", () => {
    const COMMAND = "command:remote:Command";
    const MANAGED = { ...BASE_CONFIG, database: "managed" };
    /** A step's variables and installed files, read back by bash from its stdin as the server reads them. */
    const stepShell = (step: Recorded, command: string) => {
        const stdin: string = step.inputs.stdin;
        const header = stdin.slice(0, stdin.indexOf(readFile("lib/lib.sh")));
        return spawnSync("bash", ["-c", `${header}\n${command}`], { encoding: "utf8" }).stdout;
    };
    const installedUnit = (step: Recorded) => {
        const words = stepShell(step, `printf '%s\\0' "\${INSTALL_FILES[@]}"`).split("\0");
        return words[words.indexOf("/etc/systemd/system/phillymesh-chat-db-housekeeping.service") + 3];
    };

    test("database managed: the step tunes the cluster (DATABASE, the service file) and installs the managed unit, after the move and Synapse", async () => {
        const run: ProgramRun = await runProgram(MANAGED, SECRETS);
        const step = run.byName("chat-housekeeping-run");
        expect(stepShell(step, 'printf "%s|" "$DATABASE" "$MANAGED_SERVICE_FILE" "$COMPRESSOR"')).toBe(`managed|${MANAGED_DB_SERVICE_FILE}|on|`);
        expect(installedUnit(step)).toBe(housekeepingUnit("/mnt/matrix_data", config(MANAGED).housekeeping, "managed"));
        expect(step.dependsOn).toEqual(expect.arrayContaining(["chat-synapse-run", "chat-database-move-run"]));
        // No secret in the step: the password stays in the move step's passfile.
        expect(step.secretInputs.has("stdin")).toBe(false);
    });

    test("database local: DATABASE=local, no service file, the local unit", async () => {
        const step = (await runProgram(BASE_CONFIG, SECRETS)).byName("chat-housekeeping-run");
        expect(stepShell(step, 'printf "%s|" "$DATABASE" "${MANAGED_SERVICE_FILE-unset}"')).toBe("local|unset|");
        expect(installedUnit(step)).toBe(housekeepingUnit("/mnt/matrix_data", config().housekeeping));
    });

    test("preview warns (does not fail) when stateCompressor is on with database managed, naming both keys", async () => {
        expect(compressorWarning("local", config().housekeeping)).toBeUndefined();
        expect(compressorWarning("managed", { ...config().housekeeping, compressor: false })).toBeUndefined();
        const warn = jest.spyOn(pulumi.log, "warn").mockImplementation(() => Promise.resolve());
        try {
            await runProgram(MANAGED, SECRETS, { preview: true });
            expect(warn).toHaveBeenCalledTimes(1);
            const message = String(warn.mock.calls[0][0]);
            expect(message).toMatch(
                /^phillymesh-chat:stateCompressor is true but phillymesh-chat:database is managed: the state compressor is not run against the cluster/,
            );
            expect(message).toContain("without verifying the server's TLS certificate");
            expect(message).toContain("Set stateCompressor to false");
            warn.mockClear();
            await runProgram({ ...MANAGED, stateCompressor: "false" }, SECRETS, { preview: true });
            await runProgram(BASE_CONFIG, SECRETS, { preview: true });
            expect(warn).not.toHaveBeenCalled();
        } finally {
            warn.mockRestore();
        }
    });
    const inputs = async (c: Record<string, string>) =>
        new Map((await runProgram(c)).resources.filter((r) => r.type === COMMAND).map((r) => [r.name, JSON.stringify(r.inputs)]));

    test("a compressor setting re-runs the housekeeping step only; turning it off says so to the step", async () => {
        const before = await inputs(BASE_CONFIG);
        const after = await inputs({ ...BASE_CONFIG, stateCompressorChunks: "20" });
        expect([...before.keys()].filter((k) => before.get(k) !== after.get(k))).toEqual(["chat-housekeeping-run"]);
        const off = await inputs({ ...BASE_CONFIG, stateCompressor: "false" });
        expect(JSON.parse(off.get("chat-housekeeping-run")!).stdin).toContain("export COMPRESSOR='off'");
        expect(JSON.parse(before.get("chat-housekeeping-run")!).stdin).toContain("export COMPRESSOR_VERSION='0.1.2'");
    });
});
