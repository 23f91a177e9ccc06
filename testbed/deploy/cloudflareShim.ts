// A stand-in for `@pulumi/cloudflare` (v6, which bridges terraform-provider-cloudflare v5), used ONLY
// by the testbed (testbed/deploy/deploy.ts, testbed/deploy/cloudSelftest.ts). `require("@pulumi/cloudflare")`
// returns DnsRecord as a Pulumi *dynamic* resource run by the real engine, and getDnsRecords as a plain
// function; the program is unchanged. "The account": $B/cloud/cf-zones.json maps zone id -> zone name
// (seeded by testbed/cloud/cf-zone.sh), $B/cloud/cf-records.json holds each zone's records. Every change
// is served at once by the testbed DNS (dnsmasq on 10.250.0.1): the zone's records become the set
// cf-<zone name> of testbed/dns-load.sh.
//
// What it mirrors (github.com/cloudflare/terraform-provider-cloudflare, internal/services/dns_record/
// schema.go and custom.go, v5.x; and the API's answers):
//   - inputs zone_id, name, type, ttl (required), content, data, priority, proxied (default false),
//     comment, tags; zone_id and type are RequiresReplace (schema.go), everything else updates in
//     place (PUT); `content` is Optional+Computed: left out of the config (SRV, CAA) it keeps the value
//     the API computed, as a framework provider does;
//   - plan-time validators (schema.go): type one of the 21 types (case-insensitive); content
//     ConflictsWith data; priority and data.priority/weight/port 0-65535; data.flags a number or string;
//   - the API, at apply time: the zone must exist (7003 "Could not route to /zones/<id>/dns_records,
//     perhaps your object identifier is invalid?"); the name is made fully qualified as the API does
//     ("@" is the apex; a name not ending in the zone gets the zone appended); an identical record
//     (same name, type and content/data): 81058 "An identical record already exists."; a CNAME where
//     an A/AAAA/CNAME of that name exists: 81053 "An A, AAAA, or CNAME record with that host already
//     exists."; an A/AAAA where a CNAME exists: 81054 "A CNAME record with that host already exists."
//     (developers.cloudflare.com/dns/manage-dns-records/troubleshooting/records-with-same-name);
//     proxied on a type other than A/AAAA/CNAME: 9004 "This record type cannot be proxied.";
//     malformed content or data: 1004 "DNS Validation Error" (error_chain text ours): A needs an IPv4
//     address, AAAA an IPv6 one, SRV needs `data` {priority, weight, port, target} (v5's shape; an SRV
//     with `content` only is refused) and a _service._proto name, CAA needs data {flags, tag, value};
//     ttl 1 (automatic) or 60-86400. Errors read as the v5 provider prints them:
//     failed to make http request: POST "https://api.cloudflare.com/client/v4/zones/<zone>/dns_records":
//     400 Bad Request {"success":false,"errors":[{"code":81058,...}],...}.
//   - outputs as the API returns them: id (32 hex), the FQDN as name (the state keeps the configured
//     name, as custom.go's FQDN normalisation does), content (for SRV "weight port target", for CAA
//     `flags tag "value"`), proxiable, created_on, modified_on, comment, tags, settings, meta.
//   - getDnsRecords (list_data_source.go): zone_id required; name filter exact/contains/startswith/
//     endswith (case-insensitive), type, content.exact; results with id, name, type, content, data,
//     comment, ttl, proxied, priority, ...
// What it does NOT cover: record types the testbed DNS cannot serve (A, AAAA, CNAME, SRV, CAA, TXT and MX
// are served; the rest are refused as "not in the testbed stand-in"), proxying itself (proxied: true on
// A/AAAA/CNAME is recorded but the testbed DNS answers with the origin address), settings, tags
// semantics, private_routing, plan-dependent limits (comment length, TTL 30 for Enterprise), refresh
// and import, and every other resource of the provider (referencing one throws). Visible differences:
// the type is pulumi-nodejs:dynamic/cloudflare:DnsRecord; the resource has an extra input `__repo`.
import * as pulumi from "@pulumi/pulumi";
import { canon, installModule, isUnknown, plain, strictModule, withDirLock } from "./shimKit";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

// ---------------------------------------------------------------------------------------------
// Serialized with the provider: plain functions and constants only.

const CF_TYPES = ["A", "AAAA", "CNAME", "MX", "NS", "OPENPGPKEY", "PTR", "TXT", "CAA", "CERT", "DNSKEY", "DS", "HTTPS", "LOC", "NAPTR", "SMIMEA", "SRV", "SSHFP", "SVCB", "TLSA", "URI"];
/** What the testbed DNS (dnsmasq, testbed/dns-load.sh) can serve. */
const CF_SERVED = ["A", "AAAA", "CNAME", "SRV", "CAA", "TXT", "MX"];

/** An API error as terraform-provider-cloudflare v5 (cloudflare-go v6) reports it. */
function cfError(method: string, path: string, status: number, errors: { code: number; message: string; error_chain?: { code: number; message: string }[] }[]): Error {
    const text = status === 400 ? "Bad Request" : status === 404 ? "Not Found" : String(status);
    const body = JSON.stringify({ success: false, errors, messages: [], result: null });
    return new Error(`failed to make http request: ${method} "https://api.cloudflare.com/client/v4/${path}": ${status} ${text} ${body}`);
}

function cfValidation(method: string, path: string, message: string): Error {
    return cfError(method, path, 400, [{ code: 1004, message: "DNS Validation Error", error_chain: [{ code: 9000, message }] }]);
}

function cfStateDir(): string {
    return process.env.TESTBED_DIR || "/var/tmp/phillymesh-testbed";
}

function cfPath(file: string): string {
    return require("path").join(cfStateDir(), "cloud", file);
}

function cfReadJson(file: string): any {
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
async function withZones<T>(fn: (zones: Record<string, string>, records: Record<string, any[]>) => Promise<T> | T): Promise<T> {
    return withDirLock(cfPath(".cf.lock"), "the Cloudflare stand-in's zones", async () => {
        const records = cfReadJson("cf-records.json");
        const result = await fn(cfReadJson("cf-zones.json"), records);
        cfWriteJson("cf-records.json", records);
        return result;
    });
}

/** The name as the API stores it: "@" is the apex, a name outside the zone gets the zone appended. */
function fqdnIn(name: string, zone: string): string {
    const n = String(name).trim().replace(/\.$/, "").toLowerCase();
    if (n === "@" || n === zone) return zone;
    return n.endsWith(`.${zone}`) ? n : `${n}.${zone}`;
}

function isIpv4(s: unknown): boolean {
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(String(s ?? ""));
    return !!m && m.slice(1).every((o) => Number(o) <= 255 && String(Number(o)) === o);
}

function isIpv6(s: unknown): boolean {
    return require("net").isIPv6(String(s ?? ""));
}

function isHostname(s: unknown): boolean {
    return /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i.test(String(s ?? ""));
}

function num(v: unknown): number | undefined {
    if (typeof v === "number") return v;
    if (typeof v === "string" && /^\d+$/.test(v)) return Number(v);
    return undefined;
}

/** Plan-time failures (schema.go's validators). */
function dnsRecordFailures(news: any): { property: string; reason: string }[] {
    const failures: { property: string; reason: string }[] = [];
    const known = (v: unknown) => v !== undefined && v !== null && !isUnknown(v);
    for (const k of ["zoneId", "name", "type", "ttl"]) if (news[k] === undefined || news[k] === null || news[k] === "") failures.push({ property: k, reason: `Missing required argument: The argument "${k}" is required` });
    if (known(news.type) && !CF_TYPES.includes(String(news.type).toUpperCase())) failures.push({ property: "type", reason: `Attribute type value must be one of: ${CF_TYPES.map((t) => `"${t}"`).join(", ")}, got: "${news.type}"` });
    if (news.content !== undefined && news.content !== null && news.data !== undefined && news.data !== null) {
        failures.push({ property: "content", reason: 'Invalid Attribute Combination: Attribute "data" cannot be specified when "content" is specified' });
    }
    const range = (v: unknown, prop: string, lo: number, hi: number) => {
        if (!known(v)) return;
        if (typeof v !== "number" || v < lo || v > hi) failures.push({ property: prop, reason: `Attribute ${prop} value must be between ${lo} and ${hi}, got: ${JSON.stringify(v)}` });
    };
    range(news.priority, "priority", 0, 65535);
    range(news.ttl, "ttl", -Infinity, Infinity);
    if (news.data && typeof news.data === "object" && !isUnknown(news.data)) {
        for (const k of ["priority", "weight", "port"]) range(news.data[k], `data.${k}`, 0, 65535);
        if (known(news.data.flags) && !["number", "string"].includes(typeof news.data.flags)) failures.push({ property: "data.flags", reason: "data.flags must be a number or a string" });
    }
    if (news.proxied !== undefined && typeof news.proxied !== "boolean" && !isUnknown(news.proxied)) failures.push({ property: "proxied", reason: "proxied must be a boolean" });
    return failures;
}

/**
 * What the API does with a record before storing it: checks content/data per type and returns the
 * record as stored (FQDN name, computed content), or throws the API's error.
 */
function normalizeRecord(inputs: any, zone: string, method: string, path: string): any {
    const type = String(inputs.type).toUpperCase();
    const name = fqdnIn(inputs.name, zone);
    const bad = (msg: string) => cfValidation(method, path, msg);
    if (!CF_SERVED.includes(type)) throw new Error(`DNS record type ${type} is not in the testbed stand-in (the testbed DNS serves ${CF_SERVED.join(", ")})`);
    const ttl = Number(inputs.ttl);
    if (!(ttl === 1 || (ttl >= 60 && ttl <= 86400))) throw bad("TTL must be between 60 and 86400 seconds, or 1 for Automatic.");
    const proxied = inputs.proxied ?? false;
    if (proxied && !["A", "AAAA", "CNAME"].includes(type)) throw cfError(method, path, 400, [{ code: 9004, message: "This record type cannot be proxied." }]);
    let content: string;
    let data: any;
    let priority: number | undefined = inputs.priority;
    switch (type) {
        case "A":
            if (!isIpv4(inputs.content)) throw bad(`Content for A record must be a valid IPv4 address, got ${JSON.stringify(inputs.content ?? null)}.`);
            content = String(inputs.content);
            break;
        case "AAAA":
            if (!isIpv6(inputs.content)) throw bad(`Content for AAAA record must be a valid IPv6 address, got ${JSON.stringify(inputs.content ?? null)}.`);
            content = String(inputs.content).toLowerCase();
            break;
        case "CNAME":
        case "MX":
            if (!isHostname(inputs.content)) throw bad(`Content for ${type} record must be a hostname, got ${JSON.stringify(inputs.content ?? null)}.`);
            content = String(inputs.content).replace(/\.$/, "").toLowerCase();
            if (type === "MX" && priority === undefined) throw bad("MX records need a priority.");
            break;
        case "TXT":
            if (typeof inputs.content !== "string") throw bad("Content for TXT record is required.");
            content = inputs.content;
            break;
        case "SRV": {
            const d = inputs.data;
            if (!d || typeof d !== "object") throw bad("SRV records need data {priority, weight, port, target}; content alone is not accepted.");
            const p = num(d.priority), w = num(d.weight), port = num(d.port);
            if (p === undefined || w === undefined || port === undefined || !isHostname(d.target)) throw bad("SRV data needs priority, weight, port (0-65535) and a target hostname.");
            if (!/^_[a-z0-9-]+\._(tcp|udp|tls|sctp)\./i.test(name)) throw bad(`SRV record name must be _service._proto.name, got ${name}.`);
            data = { priority: p, weight: w, port, target: String(d.target).replace(/\.$/, "").toLowerCase() };
            content = `${w} ${port} ${data.target}`;
            priority = p;
            break;
        }
        case "CAA": {
            const d = inputs.data;
            if (!d || typeof d !== "object") throw bad("CAA records need data {flags, tag, value}.");
            const flags = num(d.flags);
            if (flags === undefined || flags > 255 || !/^[A-Za-z0-9]{1,15}$/.test(String(d.tag ?? "")) || typeof d.value !== "string") throw bad("CAA data needs flags (0-255), a tag and a value.");
            data = { flags, tag: String(d.tag), value: d.value };
            content = `${flags} ${data.tag} "${data.value}"`;
            break;
        }
        default:
            throw new Error(`unreachable: ${type}`);
    }
    return { name, type, content, data, priority, ttl, proxied, proxiable: ["A", "AAAA", "CNAME"].includes(type), comment: inputs.comment ?? null, tags: inputs.tags ?? [] };
}

/** The API's duplicate rules, checked against the other records of the zone. */
function duplicateError(record: any, others: any[], method: string, path: string): Error | undefined {
    const same = others.filter((r) => r.name === record.name);
    if (same.some((r) => r.type === record.type && canon(r.data ?? r.content) === canon(record.data ?? record.content))) {
        return cfError(method, path, 400, [{ code: 81058, message: "An identical record already exists." }]);
    }
    if (record.type === "CNAME" && same.some((r) => ["A", "AAAA", "CNAME"].includes(r.type))) {
        return cfError(method, path, 400, [{ code: 81053, message: "An A, AAAA, or CNAME record with that host already exists." }]);
    }
    if (["A", "AAAA"].includes(record.type) && same.some((r) => r.type === "CNAME")) {
        return cfError(method, path, 400, [{ code: 81054, message: "A CNAME record with that host already exists." }]);
    }
    return undefined;
}

/** A zone's records in the shape testbed/dns-load.sh reads. */
function dnsLoadSet(records: any[]): any[] {
    return records.map((r) => {
        if (r.type === "SRV" || r.type === "CAA") return { name: r.name, type: r.type, data: r.data };
        if (r.type === "MX") return { name: r.name, type: r.type, content: r.content, priority: r.priority };
        return { name: r.name, type: r.type, content: r.content };
    });
}

/** Serves a zone's records from the testbed DNS (set cf-<zone>); TESTBED_CF_DNS=off skips it (unit tests). */
function serveZone(props: any, zone: string, records: any[]): Promise<void> {
    if (process.env.TESTBED_CF_DNS === "off") return Promise.resolve();
    const cp = require("child_process");
    const path = require("path");
    const repo = process.env.TESTBED_REPO || props?.__repo;
    if (!repo) return Promise.reject(new Error("the Cloudflare stand-in does not know the repository (set TESTBED_REPO)"));
    const script = path.join(repo, "testbed", "dns-load.sh");
    const args = records.length > 0 ? [script, "-", `cf-${zone}`] : [script, "--remove", `cf-${zone}`];
    return new Promise((resolve, reject) => {
        const p = cp.spawn("bash", args, { stdio: ["pipe", "ignore", "pipe"] });
        let err = "";
        p.stderr.on("data", (d: Buffer) => (err += d.toString()));
        p.on("error", reject);
        p.on("close", (code: number | null) => (code === 0 ? resolve() : reject(new Error(`the testbed DNS refused zone ${zone}: ${err.trim()} (dns-load.sh exit ${code})`))));
        p.stdin.on("error", () => undefined);
        p.stdin.end(JSON.stringify(dnsLoadSet(records)));
    });
}

/** The outputs of a stored record. */
function recordOutputs(inputs: any, r: any): any {
    return {
        ...inputs,
        content: r.content, data: r.data ?? inputs.data, priority: r.priority ?? inputs.priority, proxied: r.proxied, proxiable: r.proxiable,
        ttl: r.ttl, comment: r.comment ?? undefined, tags: r.tags ?? [], settings: {}, meta: "{}", createdOn: r.createdOn, modifiedOn: r.modifiedOn,
        fqdn: r.name,
    };
}

const dnsRecordProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        return { inputs: news, failures: dnsRecordFailures(news) };
    },
    async diff(_id: string, olds: any, news: any) {
        const replaces: string[] = [];
        let changes = false;
        const keys = ["zoneId", "type", "name", "ttl", "content", "data", "priority", "proxied", "comment", "tags"];
        for (const k of keys) {
            let o = olds[k];
            let n = news[k];
            if (k === "content" && (n === undefined || n === null)) continue; // Optional+Computed
            if (k === "proxied") {
                o = o ?? false;
                n = n ?? false;
            }
            if (k === "type") {
                o = String(o ?? "").toUpperCase();
                n = String(n ?? "").toUpperCase();
            }
            if (k === "tags" && (n === undefined || n === null)) continue; // Optional+Computed
            if (canon(o) === canon(n)) continue;
            changes = true;
            if (k === "zoneId" || k === "type") replaces.push(k);
        }
        return { changes, replaces };
    },
    async create(inputs: any) {
        const path = `zones/${inputs.zoneId}/dns_records`;
        const id = require("crypto").randomBytes(16).toString("hex");
        const stored = await withZones(async (zones, records) => {
            const zone = zones[inputs.zoneId];
            if (!zone) throw cfError("POST", path, 404, [{ code: 7003, message: `Could not route to /zones/${inputs.zoneId}/dns_records, perhaps your object identifier is invalid?` }, { code: 7000, message: "No route for that URI" }]);
            const r = normalizeRecord(inputs, zone, "POST", path);
            const list = records[inputs.zoneId] ?? [];
            const dup = duplicateError(r, list, "POST", path);
            if (dup) throw dup;
            const now = new Date().toISOString();
            const rec = { id, zoneId: inputs.zoneId, zoneName: zone, ...r, createdOn: now, modifiedOn: now };
            const next = [...list, rec];
            await serveZone(inputs, zone, next);
            records[inputs.zoneId] = next;
            return rec;
        });
        return { id, outs: plain(recordOutputs(inputs, stored)) };
    },
    async update(id: string, olds: any, news: any) {
        const path = `zones/${news.zoneId}/dns_records/${id}`;
        const stored = await withZones(async (zones, records) => {
            const zone = zones[news.zoneId];
            const list = records[news.zoneId] ?? [];
            const old = list.find((r: any) => r.id === id);
            if (!zone || !old) throw cfError("PUT", path, 404, [{ code: 81044, message: "Record does not exist." }]);
            // A computed content (SRV/CAA) left out of the config is not an input to the PUT.
            const r = normalizeRecord({ ...news, content: news.content ?? (["SRV", "CAA"].includes(String(news.type).toUpperCase()) ? undefined : olds.content) }, zone, "PUT", path);
            const dup = duplicateError(r, list.filter((x: any) => x.id !== id), "PUT", path);
            if (dup) throw dup;
            const rec = { ...old, ...r, modifiedOn: new Date().toISOString() };
            const next = list.map((x: any) => (x.id === id ? rec : x));
            await serveZone(news, zone, next);
            records[news.zoneId] = next;
            return rec;
        });
        return { outs: plain(recordOutputs(news, stored)) };
    },
    async delete(id: string, props: any) {
        await withZones(async (zones, records) => {
            const zone = zones[props.zoneId];
            const list = records[props.zoneId] ?? [];
            if (!zone || !list.some((r: any) => r.id === id)) {
                throw cfError("DELETE", `zones/${props.zoneId}/dns_records/${id}`, 404, [{ code: 81044, message: "Record does not exist." }]);
            }
            const next = list.filter((r: any) => r.id !== id);
            await serveZone(props, zone, next);
            records[props.zoneId] = next;
        });
    },
};

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

// ---------------------------------------------------------------------------------------------

let cfRepoRoot = "";

type Args = Record<string, unknown>;

export class DnsRecord extends pulumi.dynamic.Resource {
    declare public readonly zoneId: pulumi.Output<string>;
    declare public readonly name: pulumi.Output<string>;
    declare public readonly type: pulumi.Output<string>;
    declare public readonly content: pulumi.Output<string>;
    declare public readonly data: pulumi.Output<Record<string, unknown> | undefined>;
    declare public readonly priority: pulumi.Output<number | undefined>;
    declare public readonly proxied: pulumi.Output<boolean>;
    declare public readonly proxiable: pulumi.Output<boolean>;
    declare public readonly ttl: pulumi.Output<number>;
    declare public readonly comment: pulumi.Output<string | undefined>;
    declare public readonly createdOn: pulumi.Output<string>;
    declare public readonly modifiedOn: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        const inputs: Args = { __repo: cfRepoRoot, ...args };
        for (const k of ["content", "data", "priority", "proxied", "proxiable", "comment", "createdOn", "modifiedOn", "tags", "settings", "meta"]) if (!(k in inputs)) inputs[k] = undefined;
        super(dnsRecordProvider, name, inputs, opts, "cloudflare", "DnsRecord");
    }
}

export interface GetDnsRecordsArgs {
    zoneId?: string;
    name?: { exact?: string; contains?: string; startswith?: string; endswith?: string };
    type?: string;
    content?: { exact?: string; contains?: string; startswith?: string; endswith?: string };
    match?: "all" | "any";
    maxItems?: number;
}

export interface DnsRecordResult {
    id: string;
    name: string;
    type: string;
    content: string;
    data?: Record<string, unknown>;
    priority?: number;
    comment: string | null;
    ttl: number;
    proxied: boolean;
    proxiable: boolean;
    tags: string[];
    settings: Record<string, unknown>;
    meta: string;
    createdOn: string;
    modifiedOn: string;
}

export interface GetDnsRecordsResult {
    readonly zoneId?: string;
    readonly name?: GetDnsRecordsArgs["name"];
    readonly type?: string;
    readonly match: string;
    readonly direction: string;
    readonly maxItems?: number;
    readonly results: DnsRecordResult[];
}

/** cloudflare.getDnsRecords: the zone's records from $B/cloud/cf-records.json, filtered as the API filters. */
export async function getDnsRecords(args?: GetDnsRecordsArgs): Promise<GetDnsRecordsResult> {
    const zoneId = args?.zoneId;
    if (!zoneId) throw new Error("getDnsRecords: zoneId is required");
    const zones = cfReadJson("cf-zones.json") as Record<string, string>;
    if (!zones[zoneId]) {
        throw cfError("GET", `zones/${zoneId}/dns_records`, 404, [{ code: 7003, message: `Could not route to /zones/${zoneId}/dns_records, perhaps your object identifier is invalid?` }, { code: 7000, message: "No route for that URI" }]);
    }
    const records = ((cfReadJson("cf-records.json") as Record<string, DnsRecordResult[]>)[zoneId] ?? []) as (DnsRecordResult & Record<string, unknown>)[];
    const text = (f: GetDnsRecordsArgs["name"], v: string) => {
        if (!f) return undefined;
        const s = v.toLowerCase();
        const tests: boolean[] = [];
        if (f.exact !== undefined) tests.push(s === f.exact.toLowerCase().replace(/\.$/, ""));
        if (f.contains !== undefined) tests.push(s.includes(f.contains.toLowerCase()));
        if (f.startswith !== undefined) tests.push(s.startsWith(f.startswith.toLowerCase()));
        if (f.endswith !== undefined) tests.push(s.endsWith(f.endswith.toLowerCase()));
        return tests;
    };
    const any = args?.match === "any";
    const results = records
        .filter((r) => {
            const tests = [...(text(args?.name, r.name) ?? []), ...(text(args?.content, r.content) ?? []), ...(args?.type ? [r.type === args.type.toUpperCase()] : [])];
            return tests.length === 0 || (any ? tests.some(Boolean) : tests.every(Boolean));
        })
        .slice(0, args?.maxItems ?? 1000)
        .map((r) => ({
            id: r.id, name: r.name, type: r.type, content: r.content, data: r.data, priority: r.priority, comment: r.comment ?? null, ttl: r.ttl,
            proxied: r.proxied, proxiable: r.proxiable, tags: r.tags ?? [], settings: {}, meta: "{}", createdOn: r.createdOn, modifiedOn: r.modifiedOn,
        }));
    return { zoneId, name: args?.name, type: args?.type, match: any ? "any" : "all", direction: "asc", maxItems: args?.maxItems, results };
}

export function getDnsRecordsOutput(args?: GetDnsRecordsArgs): pulumi.Output<GetDnsRecordsResult> {
    return pulumi.output(getDnsRecords(args));
}

/** A module object whose unknown members throw instead of being undefined. */
export const cloudflareModule = strictModule("@pulumi/cloudflare", "testbed/deploy/cloudflareShim.ts", { DnsRecord, getDnsRecords, getDnsRecordsOutput, types: { input: {}, output: {}, enums: {} } });

/** Makes `require("@pulumi/cloudflare")`, resolved from `repo`, return the stand-in. */
export function installCloudflareShim(repo: string): string {
    cfRepoRoot = repo;
    return installModule("@pulumi/cloudflare", repo, cloudflareModule);
}

/** For tests. */
export { dnsRecordProvider, dnsRecordFailures, normalizeRecord, duplicateError, fqdnIn, dnsLoadSet };
