// What the program renders for the worst days (drills 22-24 prove it on a server): who the kernel
// kills first when memory runs out, that what it kills comes back by itself, that PostgreSQL keeps
// room on a volume media has filled, and that PostgreSQL never trades durability for speed.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { mapSource, readConfig } from "../components/config";
import { BASE_FILES } from "../components/hostBase";
import { POSTGRES_OOM_DROP_IN, postgresTuning, postgresUnitDropIn } from "../components/postgres";
import { synapseUnit } from "../components/synapse";
import { readFile } from "../components/templates";
import { BASE_CONFIG, runProgram, SECRETS } from "./harness";

/** The [Service] settings of a unit or drop-in, as systemd reads them (comments skipped; later lines win). */
function serviceSettings(unit: string): Record<string, string> {
    const out: Record<string, string> = {};
    let section = "";
    for (const raw of unit.split("\n")) {
        const line = raw.trim();
        if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
        const head = /^\[(.+)\]$/.exec(line);
        if (head) section = head[1];
        else if (section === "Service") {
            const i = line.indexOf("=");
            out[line.slice(0, i)] = line.slice(i + 1);
        }
    }
    return out;
}

/** postgresql.conf settings (name = value, quotes dropped). */
function pgSettings(conf: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const line of conf.split("\n")) {
        const m = /^\s*([a-z_]+)\s*=\s*'?([^'#]*?)'?\s*(#.*)?$/.exec(line);
        if (m) out[m[1]] = m[2];
    }
    return out;
}

describe("out of memory: the kernel kills Synapse first, and it comes back", () => {
    const synapse = serviceSettings(synapseUnit("/mnt/matrix_data", { jemalloc: true }));
    const postgres = serviceSettings(postgresUnitDropIn());
    const ssh = BASE_FILES.find((f) => f.path === "/etc/systemd/system/ssh.service.d/50-phillymesh-chat.conf");

    test("Synapse is the first choice (a raised score, always allowed) and systemd restarts it after a kill", () => {
        expect(Number(synapse.OOMScoreAdjust)).toBeGreaterThan(0);
        // on-failure covers a SIGKILL and systemd's oom-kill result; "always" would also undo an admin's stop.
        expect(synapse.Restart).toBe("on-failure");
        expect(synapse.MemoryMax).toBeDefined();
    });

    test("PostgreSQL and sshd are spared: lower scores than Synapse, sshd the lowest", () => {
        expect(ssh).toBeDefined();
        const sshScore = Number(serviceSettings(ssh!.content as string).OOMScoreAdjust);
        const pgScore = Number(postgres.OOMScoreAdjust);
        expect(pgScore).toBeLessThan(0);
        expect(sshScore).toBeLessThan(pgScore);
        expect(pgScore).toBeLessThan(Number(synapse.OOMScoreAdjust));
    });

    test("PostgreSQL's cluster unit: a killed backend leaves it running, a killed or failed postmaster is started again", () => {
        expect(POSTGRES_OOM_DROP_IN).toBe("/etc/systemd/system/postgresql@.service.d/50-phillymesh-chat.conf");
        expect(postgres.OOMPolicy).toBe("continue");
        expect(postgres.Restart).toBe("on-failure");
        // Restarts slower than systemd's start limit (5 in 10 s): it keeps trying until the disk has room.
        expect(Number(/^(\d+)s$/.exec(postgres.RestartSec)?.[1])).toBeGreaterThanOrEqual(3);
    });
});

describe("killed mid-write: PostgreSQL keeps what it acknowledged", () => {
    test.each([true, false])("fsync, synchronous_commit and full_page_writes are never turned off (lowMemory %s)", (lowMemory) => {
        const s = pgSettings(postgresTuning({ maxConnections: 40, sharedBuffersMb: 128, workMemMb: 4, lowMemory }));
        expect(s.max_connections).toBe("40");
        for (const name of ["fsync", "synchronous_commit", "full_page_writes"]) expect([undefined, "on"]).toContain(s[name]);
        expect(s.wal_sync_method).toBeUndefined();
    });
});

/** A server's data volume as the disk-reserve library sees it (what findmnt, stat -f, dumpe2fs say). */
interface Volume {
    /** findmnt --target: SOURCE FSTYPE TARGET FSROOT. */
    mount: string;
    /** The device can be opened here (a container may not see it). */
    device?: boolean;
    /** stat -f: block size, blocks, free blocks, blocks available to users. */
    blocks?: [number, number, number, number];
    /** The superblock's reserved block count and gid. */
    superblock?: [number, number];
    /** The mount's options. */
    options?: string;
    /** The target is on the same device as / (stat -c %d). */
    sameAsRoot?: boolean;
    /** /etc/fstab (default: empty, no line for the volume). */
    fstab?: string;
}

/**
 * keep_room_for_database run with stand-ins for the commands it reads and changes: what it logs, and
 * every tune2fs and mount it would run (in the order run). postgres is gid 105.
 */
function reserve(v: Volume, mib = 512): { log: string; ran: string[]; fstab: string } {
    const [bsize, total, free, avail] = v.blocks ?? [4096, 2621440, 2000000, 1800000];
    const [count, gid] = v.superblock ?? [131072, 0];
    const stubs = `
        ran() { echo "$*" >>"$RAN_LOG"; }
        getent() { [ "$2" = postgres ] && echo "postgres:x:105:"; }
        findmnt() {
            case "$*" in
                *--target*) echo ${JSON.stringify(v.mount)} ;;
                *OPTIONS*) echo ${JSON.stringify(v.options ?? "rw,relatime")} ;;
                *SOURCE*) echo ${JSON.stringify(v.mount.split(" ")[0])} ;;
            esac
        }
        stat() {
            case "$*" in
                "-f -c %S %b %f "*) echo "${bsize} ${total} ${free}" ;;
                "-f -c %a "*) echo "${avail}" ;;
                "-c %d /") echo 2049 ;;
                "-c %d "*) echo ${v.sameAsRoot ? 2049 : 2050} ;;
            esac
        }
        is_block_device() { ${v.device === false ? "false" : "true"}; }
        dumpe2fs() { printf 'Reserved block count:     %s\nReserved blocks gid:      %s (group x)\n' ${count} ${gid}; }
        tune2fs() { ran tune2fs "$@"; }
        mount() { ran mount "$@"; }
        systemctl() { ran systemctl "$@"; }
    `;
    const script = [readFile("lib/lib.sh"), readFile("lib/disk-reserve.sh"), stubs, `keep_room_for_database /mnt/matrix_data/postgresql ${mib} postgres`].join(
        "\n",
    );
    // (tune2fs and mount have their output sent to /dev/null by the library: the stand-ins write to a file.)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "reserve-"));
    try {
        const ranLog = path.join(dir, "ran");
        const fstab = path.join(dir, "fstab");
        fs.writeFileSync(ranLog, "");
        fs.writeFileSync(fstab, v.fstab ?? "");
        const r = spawnSync("bash", ["--norc", "-c", script], {
            encoding: "utf8",
            env: { PATH: process.env.PATH, STEP_NAME: "postgres", RAN_LOG: ranLog, FSTAB: fstab },
        });
        expect(r.stderr).toBe("");
        expect(r.status).toBe(0);
        return { log: r.stdout, ran: fs.readFileSync(ranLog, "utf8").split("\n").filter(Boolean), fstab: fs.readFileSync(fstab, "utf8") };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

describe("disk full: PostgreSQL keeps room on a volume media has filled (postgresDiskReserveMb)", () => {
    const config = (overrides: Record<string, string> = {}) => readConfig(mapSource({ ...BASE_CONFIG, ...overrides }, SECRETS));

    test("512 MB unless set; 0 turns it off; more than half of volumeSizeGb fails at preview naming the key", () => {
        expect(config().postgres.diskReserveMb).toBe(512);
        expect(config({ postgresDiskReserveMb: "0" }).postgres.diskReserveMb).toBe(0);
        expect(config({ postgresDiskReserveMb: "5120" }).postgres.diskReserveMb).toBe(5120);
        expect(() => config({ postgresDiskReserveMb: "5121" })).toThrow(
            /phillymesh-chat:postgresDiskReserveMb is 5121 MB, more than half of the 10 GB volume \(volumeSizeGb\): at most 5120 MB/,
        );
        expect(() => config({ postgresDiskReserveMb: "-1" })).toThrow(/phillymesh-chat:postgresDiskReserveMb must be a whole number from 0 to 65536/);
        expect(() => config({ postgresDiskReserveMb: "512MB" })).toThrow(/postgresDiskReserveMb/);
    });

    test("the postgres step gets the reserve and the library, and a new value re-runs that step only", async () => {
        const inputs = async (c: Record<string, string>) =>
            new Map((await runProgram(c)).resources.filter((r) => r.type === "command:remote:Command").map((r) => [r.name, JSON.stringify(r.inputs)]));
        const before = await inputs(BASE_CONFIG);
        const after = await inputs({ ...BASE_CONFIG, postgresDiskReserveMb: "1024" });
        expect([...before.keys()].filter((k) => before.get(k) !== after.get(k))).toEqual(["chat-postgres-run"]);
        const stdin = JSON.parse(after.get("chat-postgres-run")!).stdin as string;
        expect(stdin).toContain("export PG_DISK_RESERVE_MB='1024'");
        expect(stdin).toContain(readFile("lib/disk-reserve.sh"));
        expect(stdin.indexOf(readFile("lib/disk-reserve.sh"))).toBeLessThan(stdin.indexOf(readFile("steps/postgres.sh")));
    });

    test("an ext4 volume of its own: 512 MiB of 4 KiB blocks for the postgres group, on the device and on the mount at once", () => {
        const r = reserve({ mount: "/dev/sda ext4 /mnt/matrix_data /" });
        expect(r.ran).toEqual(["tune2fs -r 131072 -g 105 /dev/sda", "mount -o remount,resgid=105 /mnt/matrix_data"]);
        expect(r.log).toContain("512 MiB of /mnt/matrix_data (/dev/sda, 10240 MiB) kept back for PostgreSQL (group postgres)");
        // 1 KiB blocks: the count follows the block size.
        expect(reserve({ mount: "/dev/vdb ext4 /srv /", blocks: [1024, 1048576, 900000, 850000] }, 100).ran[0]).toBe("tune2fs -r 102400 -g 105 /dev/vdb");
    });

    test("the volume's fstab line gets resgid, so that every boot mounts it with the reserve the postgres group's (the 6.18 kernel ignores the superblock's group)", () => {
        const line = "UUID=4f1c0a3e-0000-4000-8000-000000000001 /mnt/matrix_data ext4 defaults,nofail,discard,noatime 0 2";
        const other = "/swapfile none swap sw 0 0";
        const r = reserve({ mount: "/dev/sda ext4 /mnt/matrix_data /", fstab: `# a comment /mnt/matrix_data\n${line}\n${other}\n` });
        expect(r.fstab).toBe(
            `# a comment /mnt/matrix_data\nUUID=4f1c0a3e-0000-4000-8000-000000000001\t/mnt/matrix_data\text4\tdefaults,nofail,discard,noatime,resgid=105\t0\t2\n${other}\n`,
        );
        expect(r.ran).toEqual(["tune2fs -r 131072 -g 105 /dev/sda", "systemctl daemon-reload", "mount -o remount,resgid=105 /mnt/matrix_data"]);
        expect(r.log).toContain("mounts /mnt/matrix_data with resgid=105 from now on");
        // Run again: the line is left as it is, and nothing is reloaded.
        const again = reserve({ mount: "/dev/sda ext4 /mnt/matrix_data /", superblock: [131072, 105], options: "rw,resgid=105", fstab: r.fstab });
        expect(again.fstab).toBe(r.fstab);
        expect(again.ran).toEqual([]);
        // Another group's resgid there (the postgres group's number changed) is replaced, not kept beside it.
        const moved = reserve({ mount: "/dev/sda ext4 /mnt/matrix_data /", fstab: "UUID=x /mnt/matrix_data ext4 resgid=99,noatime 0 2\n" });
        expect(moved.fstab).toBe("UUID=x\t/mnt/matrix_data\text4\tnoatime,resgid=105\t0\t2\n");
    });

    test("no fstab line for the volume (a server mounted some other way): the file is not touched, and the step says so", () => {
        const r = reserve({ mount: "/dev/sda ext4 /mnt/matrix_data /", fstab: "UUID=y / ext4 defaults 0 1\n" });
        expect(r.fstab).toBe("UUID=y / ext4 defaults 0 1\n");
        expect(r.ran).not.toContain("systemctl daemon-reload");
        expect(r.log).toContain("/mnt/matrix_data has no line in");
    });

    test("run again with everything in place, it changes nothing", () => {
        const r = reserve({ mount: "/dev/sda ext4 /mnt/matrix_data /", superblock: [131072, 105], options: "rw,noatime,resgid=105" });
        expect(r.ran).toEqual([]);
    });

    test("a nearly full volume: the reserve is not raised (it would take Synapse's last space at once), the group still is", () => {
        const r = reserve({ mount: "/dev/sda ext4 /mnt/matrix_data /", blocks: [4096, 2621440, 200000, 190000], superblock: [1000, 0] });
        expect(r.ran).toEqual(["tune2fs -r 1000 -g 105 /dev/sda", "mount -o remount,resgid=105 /mnt/matrix_data"]);
        expect(r.log).toMatch(
            /WARNING \/mnt\/matrix_data has only 781 MiB free: the reserve stays at 3 MiB rather than 512 MiB \(free space or raise volumeSizeGb/,
        );
        // Lowering it is always allowed (it gives users room).
        expect(reserve({ mount: "/dev/sda ext4 /mnt/matrix_data /", blocks: [4096, 2621440, 200000, 0], superblock: [300000, 105] }).ran[0]).toBe(
            "tune2fs -r 131072 -g 105 /dev/sda",
        );
    });

    test.each([
        ["not ext4", { mount: "/dev/sda xfs /mnt/matrix_data /" }, "is on xfs, not ext4: no room kept back"],
        ["the root file system", { mount: "/dev/vda1 ext4 / /" }, "is on the root file system, not a volume of its own"],
        ["a second mount of the root file system", { mount: "/dev/vda1 ext4 /mnt/matrix_data /", sameAsRoot: true }, "is on the root file system"],
        [
            "a directory of another file system bound here (a container's data dir)",
            { mount: "/dev/vda[/var/tmp/data] ext4 /mnt/matrix_data /var/tmp/data" },
            "is a directory (/var/tmp/data) of a file system mounted elsewhere",
        ],
    ])("%s: nothing is changed, and the step says why", (_what, v, said) => {
        const r = reserve(v as Volume);
        expect(r.ran).toEqual([]);
        expect(r.log).toContain(said);
    });

    test("postgresDiskReserveMb 0: nothing is changed", () => {
        const r = reserve({ mount: "/dev/sda ext4 /mnt/matrix_data /" }, 0);
        expect(r.ran).toEqual([]);
        expect(r.log).toContain("postgresDiskReserveMb is 0");
    });

    test("the device out of reach (a container): the count stays, the mount's reserve still goes to the postgres group", () => {
        const r = reserve({ mount: "/dev/loop3 ext4 /mnt/matrix_data /", device: false, blocks: [4096, 524288, 100000, 74000] });
        expect(r.ran).toEqual(["mount -o remount,resgid=105 /mnt/matrix_data"]);
        expect(r.log).toContain("the device of /mnt/matrix_data (/dev/loop3) cannot be reached here: its reserve stays as it is (101 MiB held back now)");
    });
});
