// The Cloudflare stand-in's account and API: $B/cloud/cf-zones.json maps zone id -> zone name (seeded
// by testbed/cloud/cf-zone.sh), $B/cloud/cf-records.json holds each zone's records, both changed only
// under $B/cloud/.cf.lock; every change is served at once by the testbed DNS (dnsmasq on 10.250.0.1)
// as the set cf-<zone name> of testbed/dns-load.sh. Errors read as terraform-provider-cloudflare v5
// prints the API's answers:
//     failed to make http request: POST "https://api.cloudflare.com/client/v4/zones/<zone>/dns_records":
//     400 Bad Request {"success":false,"errors":[{"code":81058,...}],...}.
//
// Serialized into the state with the provider (the SDK's function serializer captures what it uses,
// from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import { testbedScript, withDirLock } from "../shimKit";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

/** An API error as terraform-provider-cloudflare v5 (cloudflare-go v6) reports it. */
export function cfError(
    method: string,
    path: string,
    status: number,
    errors: { code: number; message: string; error_chain?: { code: number; message: string }[] }[],
): Error {
    const text = status === 400 ? "Bad Request" : status === 404 ? "Not Found" : String(status);
    const body = JSON.stringify({ success: false, errors, messages: [], result: null });
    return new Error(`failed to make http request: ${method} "https://api.cloudflare.com/client/v4/${path}": ${status} ${text} ${body}`);
}

export function cfValidation(method: string, path: string, message: string): Error {
    return cfError(method, path, 400, [{ code: 1004, message: "DNS Validation Error", error_chain: [{ code: 9000, message }] }]);
}

function cfStateDir(): string {
    return process.env.TESTBED_DIR || "/var/tmp/phillymesh-testbed";
}

function cfPath(file: string): string {
    return require("path").join(cfStateDir(), "cloud", file);
}

export function cfReadJson(file: string): any {
    try {
        return JSON.parse(require("fs").readFileSync(cfPath(file), "utf8"));
    } catch (e: any) {
        if (e.code === "ENOENT") return {};
        throw e;
    }
}

function cfWriteJson(file: string, value: unknown): void {
    const fs = require("fs");
    fs.mkdirSync(require("path").dirname(cfPath(file)), { recursive: true });
    const tmp = `${cfPath(file)}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(value, null, 2) + "\n");
    fs.renameSync(tmp, cfPath(file));
}

/** Runs fn with the zones and records under $B/cloud/.cf.lock (the same kind of lock as the DigitalOcean stand-in). */
export async function withZones<T>(fn: (zones: Record<string, string>, records: Record<string, any[]>) => Promise<T> | T): Promise<T> {
    return withDirLock(cfPath(".cf.lock"), "the Cloudflare stand-in's zones", async () => {
        const records = cfReadJson("cf-records.json");
        const result = await fn(cfReadJson("cf-zones.json"), records);
        cfWriteJson("cf-records.json", records);
        return result;
    });
}

/** A zone's records in the shape testbed/dns-load.sh reads. */
export function dnsLoadSet(records: any[]): any[] {
    return records.map((r) => {
        if (r.type === "SRV" || r.type === "CAA") return { name: r.name, type: r.type, data: r.data };
        if (r.type === "MX") return { name: r.name, type: r.type, content: r.content, priority: r.priority };
        return { name: r.name, type: r.type, content: r.content };
    });
}

/** Serves a zone's records from the testbed DNS (set cf-<zone>); TESTBED_CF_DNS=off skips it (unit tests). */
export async function serveZone(props: any, zone: string, records: any[]): Promise<void> {
    if (process.env.TESTBED_CF_DNS === "off") return;
    const args = records.length > 0 ? ["-", `cf-${zone}`] : ["--remove", `cf-${zone}`];
    await testbedScript(props, "the Cloudflare stand-in", "testbed/dns-load.sh", args, JSON.stringify(dnsLoadSet(records))).catch((e: Error) => {
        throw new Error(`the testbed DNS refused zone ${zone}: ${e.message}`);
    });
}

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
