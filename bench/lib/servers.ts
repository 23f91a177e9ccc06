// The benchmark's three guests, the Synapse versions it deploys, the stock ("defaults") settings,
// and what the run needs to talk to each server: its stack config, its admin handle, cached tokens.
import * as fs from "node:fs";
import * as path from "node:path";
import type { AdminHandle } from "./matrix.ts";
import { BENCH_STATE, machineId, secretsFor, stackConfig, writeStackConfig, type Server } from "./testbed.ts";
import type { Homeserver } from "./workload.ts";

export const FROM_VERSION = process.env.BENCH_SYNAPSE_FROM || "1.162.0";
export const TO_VERSION = process.env.BENCH_SYNAPSE_TO || "1.163.2";

export const TUNED: Server = { name: "bench1", ip: "10.250.0.50", user: "root" };
export const DEFAULTS: Server = { name: "bench2", ip: "10.250.0.51", user: "root" };
export const PARTNER: Server = { name: "bench3", ip: "10.250.0.52", user: "root" };

/**
 * "defaults": Synapse's and PostgreSQL's stock settings, through the program's own config keys
 * (Synapse: presence on, caches.global_factor 0.5, cp_max 10, glibc malloc; PostgreSQL:
 * shared_buffers 128MB, max_connections 100, work_mem 4MB, replication/parallel workers/JIT as
 * shipped; nginx: worker_processes auto = 2 here).
 */
export const DEFAULTS_CONFIG = {
    presence: true,
    cacheFactor: "0.5",
    databasePoolMax: 10,
    synapseJemalloc: false,
    postgresSharedBuffersMb: 128,
    postgresMaxConnections: 100,
    postgresWorkMemMb: 4,
    postgresLowMemory: false,
    nginxWorkerProcesses: 2,
};

/** How the run reaches a guest's homeserver: its domain, client API base, and admin (cached token when there is one). */
export function homeserver(s: Server): Homeserver {
    const secrets = secretsFor(s.name);
    return {
        server: s,
        domain: `${s.name}.test`,
        base: `https://matrix.${s.name}.test`,
        admin: { ip: s.ip, user: "admin", password: secrets.adminPassword, token: cachedToken(s.name) },
    };
}

function cachedToken(name: string): string | undefined {
    try {
        return (JSON.parse(fs.readFileSync(path.join(BENCH_STATE, "tokens.json"), "utf8")) as Record<string, string>)[name];
    } catch {
        return undefined;
    }
}

/** Keeps a server's admin token for the next run (0600, in $BENCH_STATE). */
export function saveToken(name: string, h: AdminHandle): void {
    const file = path.join(BENCH_STATE, "tokens.json");
    let all: Record<string, string> = {};
    try {
        all = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, string>;
    } catch {
        /* first time */
    }
    if (h.token) all[name] = h.token;
    fs.writeFileSync(file, JSON.stringify(all, null, 2) + "\n", { mode: 0o600 });
}

/** Writes the guest's stack config (its federation peers, the version, the tuning keys) and returns its path. */
export async function configFor(s: Server, version: string, extra: Record<string, unknown>, tag?: string): Promise<string> {
    const peers = s === PARTNER ? [TUNED.name, DEFAULTS.name] : [PARTNER.name];
    return writeStackConfig(s, stackConfig(s, version, peers, extra, await machineId(s)), tag);
}
