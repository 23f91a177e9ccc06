// The DigitalOcean stand-in's account and machine: the catalogue it accepts (images, regions, sizes),
// "the account" ($B/cloud/do-account.json, changed only under $B/cloud/.do.lock), the address pools,
// the API's error shape, and testbed/cloud/do-host.sh, which does the work on the machine.
//
// The pools: droplets get 10.250.0.100-129 (TESTBED_DO_DROPLET_IPS), guest do-<droplet id>, and with
// ipv6 2001:db8:250::<octet in hex> on their interface; reserved IPs 10.250.0.130-140
// (TESTBED_DO_RESERVED_IPS=FROM-TO of the last octet).
//
// Serialized into the state with the providers (the SDK's function serializer captures what they
// use, from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import { testbedScript, withDirLock } from "../shimKit";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

/** Image slugs the testbed can boot, and the template each boots. */
export const DO_IMAGES: Record<string, string> = { "debian-13-x64": "trixie", "debian-12-x64": "trixie" };
export const DO_REGIONS = ["nyc1", "nyc2", "nyc3", "sfo1", "sfo2", "sfo3", "ams2", "ams3", "sgp1", "lon1", "fra1", "tor1", "blr1", "syd1", "atl1", "ric1"];
/** Size slugs: memory (MiB, the guest's memory cap), vCPUs and disk (GB, recorded only). */
export const DO_SIZES: Record<string, { memory: number; vcpus: number; disk: number }> = {
    "s-1vcpu-512mb-10gb": { memory: 512, vcpus: 1, disk: 10 },
    "s-1vcpu-1gb": { memory: 1024, vcpus: 1, disk: 25 },
    "s-1vcpu-1gb-amd": { memory: 1024, vcpus: 1, disk: 25 },
    "s-1vcpu-1gb-intel": { memory: 1024, vcpus: 1, disk: 25 },
    "s-1vcpu-2gb": { memory: 2048, vcpus: 1, disk: 50 },
    "s-2vcpu-2gb": { memory: 2048, vcpus: 2, disk: 60 },
    "s-2vcpu-4gb": { memory: 4096, vcpus: 2, disk: 80 },
    "s-4vcpu-8gb": { memory: 8192, vcpus: 4, disk: 160 },
};
const FIRST_DROPLET_ID = 500000001;
const FIRST_KEY_ID = 41000001;

/** The error the provider reports for an API answer, in godo's shape. */
export function apiError(prefix: string, method: string, path: string, status: number, message: string): Error {
    const request = require("crypto").randomUUID();
    return new Error(`${prefix}: ${method} https://api.digitalocean.com/v2/${path}: ${status} (request "${request}") ${message}`);
}

export function stateDir(): string {
    return process.env.TESTBED_DIR || "/var/tmp/phillymesh-testbed";
}

export function cloudDir(): string {
    return require("path").join(stateDir(), "cloud");
}

function accountFile(): string {
    return require("path").join(cloudDir(), "do-account.json");
}

function emptyAccount(): any {
    return {
        nextDropletId: FIRST_DROPLET_ID,
        nextKeyId: FIRST_KEY_ID,
        sshKeys: [],
        droplets: [],
        volumes: [],
        reservedIps: [],
        firewalls: [],
        alertPolicies: [],
        uptimeChecks: [],
    };
}

export function readAccount(): any {
    const fs = require("fs");
    try {
        return { ...emptyAccount(), ...JSON.parse(fs.readFileSync(accountFile(), "utf8")) };
    } catch (e: any) {
        if (e.code === "ENOENT") return emptyAccount();
        throw e;
    }
}

function writeAccount(account: any): void {
    const fs = require("fs");
    fs.mkdirSync(cloudDir(), { recursive: true });
    const tmp = `${accountFile()}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(account, null, 2) + "\n");
    fs.renameSync(tmp, accountFile());
}

/**
 * Runs fn on the account under $B/cloud/.do.lock (a directory: mkdir is atomic; a lock whose owner
 * died is taken over) and saves what fn left in it, unless fn throws.
 */
export async function withAccount<T>(fn: (account: any) => Promise<T> | T): Promise<T> {
    const path = require("path");
    return withDirLock(path.join(cloudDir(), ".do.lock"), "the DigitalOcean stand-in's account", async () => {
        const account = readAccount();
        const result = await fn(account);
        writeAccount(account);
        return result;
    });
}

/** Runs testbed/cloud/SCRIPT ARGS... with stdin (do-host.sh, do-database.sh, spaces.sh); resolves with its stdout. */
export function cloudScript(props: any, script: string, args: string[], stdin = ""): Promise<string> {
    return testbedScript(props, "the DigitalOcean stand-in", `testbed/cloud/${script}`, args, stdin);
}

/** Runs testbed/cloud/do-host.sh OP ARGS...; resolves with its stdout, trimmed. */
export async function hostOp(props: any, args: string[], stdin?: string): Promise<string> {
    return (await cloudScript(props, "do-host.sh", args, stdin)).trim();
}

export function dropletOf(account: any, id: unknown): any {
    return account.droplets.find((d: any) => String(d.id) === String(id));
}

export function volumeOf(account: any, id: unknown): any {
    return account.volumes.find((v: any) => v.id === id);
}

/** Picks the lowest free address of 10.250.0.FROM-TO (env "FROM-TO" overrides). */
export function freeAddress(pool: string, taken: Set<string>): string | undefined {
    const m = /^(\d+)-(\d+)$/.exec(pool);
    if (!m) throw new Error(`bad address pool '${pool}' (FROM-TO, last octets)`);
    for (let o = Number(m[1]); o <= Number(m[2]); o++) {
        const ip = `10.250.0.${o}`;
        if (!taken.has(ip)) return ip;
    }
    return undefined;
}

/** Every 10.250.0.x in use: the account's droplets, reserved IPs and database clusters, and every booted guest. */
export function takenAddresses(account: any): Set<string> {
    const fs = require("fs");
    const path = require("path");
    const taken = new Set<string>([
        ...account.droplets.map((d: any) => d.ipv4),
        ...account.reservedIps.map((r: any) => r.ip),
        // database.ts's cluster guests, reserved before they boot
        ...(account.databases ?? []).map((c: any) => c.ip),
    ]);
    for (const e of fs.readdirSync(stateDir(), { withFileTypes: true })) {
        if (!e.isDirectory() || !e.name.startsWith("run-")) continue;
        try {
            taken.add(fs.readFileSync(path.join(stateDir(), e.name, "ip"), "utf8").trim());
        } catch {
            // not a guest
        }
    }
    return taken;
}

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
