// What the program renders for the worst days (drills 22-24 prove it on a server): who the kernel
// kills first when memory runs out, that what it kills comes back by itself, and that PostgreSQL
// never trades durability for speed.
import { BASE_FILES } from "../components/hostBase";
import { POSTGRES_OOM_DROP_IN, postgresTuning, postgresUnitDropIn } from "../components/postgres";
import { synapseUnit } from "../components/synapse";

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
