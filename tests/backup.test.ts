// The nightly backup program (files/server/sbin/phillymesh-chat-backup.sh) run by bash against a
// temporary data directory: does it keep out of the room the volume holds back for PostgreSQL
// (postgresDiskReserveMb)? It runs as root, which ext4 lets write into that reserve, so it must
// check the room left to everyone else before it writes. The commands that need a server (setpriv
// to postgres, pg_dump, psql, rsync) and the file system's free-space figure are stand-ins on PATH;
// find, du, tar and awk are the real ones. Drill 2 runs the whole backup and restore on a server.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { readFile } from "../components/templates";

let dir: string;
let dataDir: string;
let bin: string;

/** An executable stand-in at bin/NAME. */
function stub(name: string, body: string): void {
    fs.writeFileSync(path.join(bin, name), `#!/bin/bash\n${body}\n`, { mode: 0o755 });
}

/** A file of `bytes` bytes. */
function file(p: string, bytes: number): void {
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, Buffer.alloc(bytes, 1));
}

/** The backup run with `freeBytes` left to unprivileged users on the volume. */
function backup(freeBytes: number, databaseBytes = 4 << 20): { status: number | null; stderr: string; stdout: string; backups: string[] } {
    stub("setpriv", 'shift 3; exec "$@"'); // --reuid=postgres --regid=postgres --init-groups, then the command
    stub("pg_dump", 'head -c 300000 /dev/zero | tr "\\0" d');
    stub("psql", `echo ${databaseBytes}`);
    stub("rsync", 'src=${*: -2:1}; dst=${*: -1}; mkdir -p "$dst" && cp -a "$src." "$dst"');
    // stat -f -c '%a %S' DIR: blocks free to users, block size; anything else is the real stat.
    stub("stat", `if [ "$1 $2 $3" = "-f -c %a %S" ]; then echo "$(( ${freeBytes} / 4096 )) 4096"; else exec /usr/bin/stat "$@"; fi`);
    const script = path.join(dir, "backup.sh");
    fs.writeFileSync(script, readFile("server/sbin/phillymesh-chat-backup.sh"));
    const r = spawnSync("bash", [script], {
        encoding: "utf8",
        env: { PATH: `${bin}:${process.env.PATH}`, DATA_DIR: dataDir, BACKUP_KEEP: "3" },
    });
    const root = path.join(dataDir, "backups");
    return { status: r.status, stderr: r.stderr, stdout: r.stdout, backups: fs.existsSync(root) ? fs.readdirSync(root).sort() : [] };
}

beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "backup-"));
    dataDir = path.join(dir, "data");
    bin = path.join(dir, "bin");
    fs.mkdirSync(bin);
    file(path.join(dataDir, "synapse/keys/signing.key"), 100);
    fs.mkdirSync(path.join(dataDir, "synapse/secrets"), { recursive: true });
    file(path.join(dataDir, "synapse/media/local_content/aa/one"), 2 << 20);
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("the backup keeps out of the room held back for PostgreSQL (postgresDiskReserveMb)", () => {
    test("with room, the first backup is made: the dump, the keys and the media", () => {
        // The first time: the database's size (4 MiB) x 1.5 + 2 MiB of media + 1 MiB = 9 MiB needed.
        const r = backup(10 << 20);
        expect(r.stderr).toBe("");
        expect(r.status).toBe(0);
        expect(r.backups).toHaveLength(1);
        const made = path.join(dataDir, "backups", r.backups[0]);
        expect(fs.readdirSync(made).sort()).toEqual(["keys.tar", "media", "synapse.dump"]);
        expect(fs.statSync(path.join(made, "media/local_content/aa/one")).size).toBe(2 << 20);
    });

    test("without room, nothing is written and the error says how much is needed, what is left and what to do", () => {
        const r = backup(8 << 20);
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(
            /^backup NOT made: it needs about 9 MiB and .*\/backups has 8 MiB left outside the room kept back for PostgreSQL \(postgresDiskReserveMb\)\. Free space .* or raise volumeSizeGb, then: systemctl start phillymesh-chat-backup\n$/,
        );
        expect(r.backups).toEqual([]);
    });

    test("the next night counts the last dump (not the database) and only the media added since the last backup", () => {
        expect(backup(64 << 20).status).toBe(0);
        // A backup made "yesterday": the new file is newer than it, the old one is not.
        const first = path.join(dataDir, "backups", "20000101T000000Z");
        fs.renameSync(path.join(dataDir, "backups", fs.readdirSync(path.join(dataDir, "backups"))[0]), first);
        const yesterday = new Date(Date.now() - 86_400_000);
        fs.utimesSync(first, yesterday, yesterday);
        fs.utimesSync(path.join(dataDir, "synapse/media/local_content/aa/one"), yesterday, yesterday);
        file(path.join(dataDir, "synapse/media/local_content/bb/two"), 3 << 20);
        // Needed: 300,000 x 1.5 + 1 MiB + 3 MiB (the database's 400 MiB does not count now) = about 4.4 MiB.
        const tight = backup(4 << 20, 400 << 20);
        expect(tight.status).toBe(1);
        expect(tight.stderr).toContain("it needs about 4 MiB and");
        expect(backup(5 << 20, 400 << 20).status).toBe(0);
        expect(fs.readdirSync(path.join(dataDir, "backups"))).toHaveLength(2);
    });
});
