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
//   - the record's inputs, diff and outputs: dnsRecord.ts; the plan-time validators and the API's
//     checks at apply time: records.ts; the zone registry, the API's errors and serving a zone from
//     the testbed DNS: zones.ts (each cites its sources);
//   - getDnsRecords (list_data_source.go): zone_id required; name filter exact/contains/startswith/
//     endswith (case-insensitive), type, content.exact; results with id, name, type, content, data,
//     comment, ttl, proxied, priority, ...
// What it does NOT cover: record types the testbed DNS cannot serve (A, AAAA, CNAME, SRV, CAA, TXT and MX
// are served; the rest are refused as "not in the testbed stand-in"), proxying itself (proxied: true on
// A/AAAA/CNAME is recorded but the testbed DNS answers with the origin address), settings, tags
// semantics, private_routing, plan-dependent limits (comment length, TTL 30 for Enterprise), refresh
// and import, and every other resource of the provider (referencing one throws). Visible differences:
// the type is pulumi-nodejs:dynamic/cloudflare:DnsRecord; the resource has an extra input `__repo`.
//
// This module holds what runs in the program's process (the DnsRecord class the program constructs,
// getDnsRecords) and the swap of the package in the module cache.
import * as pulumi from "@pulumi/pulumi";
import { installModule, strictModule } from "../shimKit";
import { dnsRecordProvider } from "./dnsRecord";
import { dnsRecordFailures, duplicateError, fqdnIn, normalizeRecord } from "./records";
import { cfError, cfReadJson, dnsLoadSet } from "./zones";

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
        for (const k of ["content", "data", "priority", "proxied", "proxiable", "comment", "createdOn", "modifiedOn", "tags", "settings", "meta"])
            if (!(k in inputs)) inputs[k] = undefined;
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
        throw cfError("GET", `zones/${zoneId}/dns_records`, 404, [
            { code: 7003, message: `Could not route to /zones/${zoneId}/dns_records, perhaps your object identifier is invalid?` },
            { code: 7000, message: "No route for that URI" },
        ]);
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
            const tests = [
                ...(text(args?.name, r.name) ?? []),
                ...(text(args?.content, r.content) ?? []),
                ...(args?.type ? [r.type === args.type.toUpperCase()] : []),
            ];
            return tests.length === 0 || (any ? tests.some(Boolean) : tests.every(Boolean));
        })
        .slice(0, args?.maxItems ?? 1000)
        .map((r) => ({
            id: r.id,
            name: r.name,
            type: r.type,
            content: r.content,
            data: r.data,
            priority: r.priority,
            comment: r.comment ?? null,
            ttl: r.ttl,
            proxied: r.proxied,
            proxiable: r.proxiable,
            tags: r.tags ?? [],
            settings: {},
            meta: "{}",
            createdOn: r.createdOn,
            modifiedOn: r.modifiedOn,
        }));
    return { zoneId, name: args?.name, type: args?.type, match: any ? "any" : "all", direction: "asc", maxItems: args?.maxItems, results };
}

export function getDnsRecordsOutput(args?: GetDnsRecordsArgs): pulumi.Output<GetDnsRecordsResult> {
    return pulumi.output(getDnsRecords(args));
}

/** A module object whose unknown members throw instead of being undefined. */
export const cloudflareModule = strictModule("@pulumi/cloudflare", "testbed/deploy/cloudflare/index.ts", {
    DnsRecord,
    getDnsRecords,
    getDnsRecordsOutput,
    types: { input: {}, output: {}, enums: {} },
});

/** Makes `require("@pulumi/cloudflare")`, resolved from `repo`, return the stand-in. */
export function installCloudflareShim(repo: string): string {
    cfRepoRoot = repo;
    return installModule("@pulumi/cloudflare", repo, cloudflareModule);
}

/** For tests. */
export { dnsRecordProvider, dnsRecordFailures, normalizeRecord, duplicateError, fqdnIn, dnsLoadSet };
