// The DNS records the service needs. With dns "cloudflare" they are created in the zone (preflight.ts
// first checks that the zone holds no record of the same name that this stack did not make); with "none"
// they are only computed, and the stack output dnsRecords lists them for creating by hand (the local
// testbed loads them into its own DNS server).
import * as pulumi from "@pulumi/pulumi";
import * as cloudflare from "@pulumi/cloudflare";
import { Hostnames, PORTS } from "./layout";

export interface DnsRecordSpec {
    readonly name: string;
    readonly type: "A" | "AAAA" | "SRV" | "CAA";
    /** Address for A/AAAA. */
    readonly content?: string;
    /** SRV fields. */
    readonly priority?: number;
    readonly weight?: number;
    readonly port?: number;
    readonly target?: string;
    /** CAA fields. */
    readonly flags?: number;
    readonly tag?: "issue" | "iodef";
    readonly value?: string;
}

/** Who may issue certificates for the domain (a CAA record) and where a CA reports a refused request. */
export interface Caa {
    /** The CA's identifying domain, e.g. letsencrypt.org; "" for no CAA records. */
    readonly issuer: string;
    readonly email: string;
}

/**
 * The records: matrix.<domain> and chat.<domain> (and the apex when it is on this server) to the
 * server; both federation SRV names (the current _matrix-fed and the legacy _matrix, which Synapse
 * before 1.93 reads) to matrix.<domain>:8448; CAA at the apex naming the one CA that may issue.
 */
export function plannedRecords(names: Hostnames, ipv4: string, ipv6: string | undefined, apexOnServer: boolean, caa: Caa): DnsRecordSpec[] {
    const hosts = [names.matrix, names.chat, ...(apexOnServer ? [names.server] : [])];
    const records: DnsRecordSpec[] = hosts.map((name) => ({ name, type: "A", content: ipv4 }));
    if (ipv6) records.push(...hosts.map((name): DnsRecordSpec => ({ name, type: "AAAA", content: ipv6 })));
    for (const service of ["_matrix-fed._tcp", "_matrix._tcp"]) {
        records.push({ name: `${service}.${names.server}`, type: "SRV", priority: 10, weight: 5, port: PORTS.federation, target: names.matrix });
    }
    if (caa.issuer) {
        records.push({ name: names.server, type: "CAA", flags: 0, tag: "issue", value: caa.issuer });
        records.push({ name: names.server, type: "CAA", flags: 0, tag: "iodef", value: `mailto:${caa.email}` });
    }
    return records;
}

/**
 * The record set without its addresses: what the stack will publish, known before any server exists
 * (so records can be declared, and looked up in the zone, at preview).
 */
export function recordShape(names: Hostnames, withIpv6: boolean, apexOnServer: boolean, caa: Caa): DnsRecordSpec[] {
    return plannedRecords(names, "0.0.0.0", withIpv6 ? "::" : undefined, apexOnServer, caa);
}

/** The component's type token (the zone check spells out its URN for `pulumi import --parent`). */
export const CHAT_DNS_TYPE = "phillymesh-chat:index:ChatDns";

/** The comment on every record this stack makes: how the zone check tells its own records apart. */
export function ownerComment(stack: string): string {
    return `managed by phillymesh-chat (pulumi stack ${stack})`;
}

/** A record found in the zone (the fields of cloudflare.getDnsRecords' results that matter here). */
export interface ZoneRecord {
    readonly id: string;
    readonly name: string;
    readonly type: string;
    readonly content?: string;
    readonly comment?: string | null;
    readonly data?: { flags?: unknown; tag?: string; value?: string; target?: string; port?: unknown; priority?: unknown; weight?: unknown } | null;
}

/** Whether a record in the zone is the one `spec` describes (same name, type and content). */
function sameRecord(r: ZoneRecord, spec: DnsRecordSpec): boolean {
    if (r.name !== spec.name || r.type !== spec.type) return false;
    const d = r.data ?? {};
    switch (spec.type) {
        case "A":
        case "AAAA":
            return r.content === spec.content;
        case "SRV":
            return d.target === spec.target && Number(d.port) === spec.port && Number(d.priority) === spec.priority && Number(d.weight) === spec.weight;
        case "CAA":
            return d.tag === spec.tag && d.value === spec.value && Number(d.flags ?? 0) === spec.flags;
    }
}

/**
 * Records already in the zone that this stack would collide with. Cloudflare v6 has no overwrite: an
 * A/AAAA beside an old one makes traffic round-robin to the old server, a second SRV splits federation,
 * a CNAME on the name is refused (81053), an identical record is refused (81058). A CAA for another
 * CA is no collision (CAA records add up). The stack's own records are no collision: they carry its
 * comment, or (made before the comment existed) match what it published last time (`published`).
 */
export function conflictingRecords(
    planned: readonly DnsRecordSpec[],
    existing: readonly ZoneRecord[],
    owner: string,
    published: readonly DnsRecordSpec[] = [],
): ZoneRecord[] {
    const ours = (r: ZoneRecord) => r.comment === owner || published.some((p) => sameRecord(r, p));
    return existing.filter((r) => {
        if (ours(r)) return false;
        const same = planned.filter((p) => p.name === r.name);
        if (same.length === 0) return false;
        if (r.type === "CNAME") return true;
        return same.some((p) => (p.type === "CAA" ? r.type === "CAA" && r.data?.tag === p.tag && r.data?.value === p.value : p.type === r.type));
    });
}

/** The error a user sees for each record in the way, with both ways out. */
export function conflictMessage(
    conflicts: readonly ZoneRecord[],
    zoneId: string,
    owner: string,
    resourceNameOf: (r: ZoneRecord) => string | undefined,
    parentUrn: string,
): string {
    const lines = conflicts.map((r) => {
        const shown = r.type === "CAA" && r.data ? `${String(r.data.flags ?? 0)} ${r.data.tag} "${r.data.value}"` : (r.content ?? "");
        const api = `https://api.cloudflare.com/client/v4/zones/${zoneId}/dns_records/${r.id}`;
        const resource = resourceNameOf(r);
        const takeOver = resource
            ? `\n      or keep it and let this stack manage it in place: mark it as this stack's ` +
              `(curl -X PATCH -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" -H 'Content-Type: application/json' --data '{"comment":"${owner}"}' ${api}), then ` +
              `pulumi import --generate-code=false --protect=false --parent 'chatDns=${parentUrn}' cloudflare:index/dnsRecord:DnsRecord ${resource} '${zoneId}/${r.id}'`
            : "";
        return (
            `  - ${r.type} ${r.name} ${shown} (record id ${r.id})\n` +
            `      delete it: Cloudflare dashboard > DNS > Records, or curl -X DELETE -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" ${api}` +
            takeOver
        );
    });
    return (
        `The Cloudflare zone ${zoneId} already holds ${conflicts.length} record${conflicts.length === 1 ? "" : "s"} that this stack would add beside ` +
        `(clients and servers would be sent to the old address half the time, or Cloudflare refuses the duplicate); nothing was changed:\n${lines.join("\n")}`
    );
}

export interface ChatDnsArgs {
    readonly names: Hostnames;
    readonly ipv4: pulumi.Input<string>;
    readonly ipv6?: pulumi.Input<string>;
    readonly apexOnServer: boolean;
    readonly caa: Caa;
    /** Cloudflare zone id; undefined: create nothing, only report. */
    readonly cloudflareZoneId?: string;
}

/** The Pulumi resource name of a planned record (stable: existing stacks keep their records). */
export function recordResourceName(name: string, spec: Pick<DnsRecordSpec, "type" | "name" | "tag">): string {
    const base = `${name}-${spec.type.toLowerCase()}-${spec.name.replace(/\./g, "-").replace(/_/g, "")}`;
    return spec.type === "CAA" ? `${base}-${spec.tag}` : base;
}

export class ChatDns extends pulumi.ComponentResource {
    /** The records, created or to be created by hand. */
    public readonly records: pulumi.Output<DnsRecordSpec[]>;

    constructor(name: string, args: ChatDnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super(CHAT_DNS_TYPE, name, {}, opts);
        this.records = pulumi.all([args.ipv4, args.ipv6]).apply(([ipv4, ipv6]) => plannedRecords(args.names, ipv4, ipv6, args.apexOnServer, args.caa));

        const zoneId = args.cloudflareZoneId;
        if (zoneId) {
            // The record set is known before the addresses are, so resources are declared here,
            // outside any apply; only their contents wait for the addresses.
            const shape = recordShape(args.names, args.ipv6 !== undefined, args.apexOnServer, args.caa);
            const owner = ownerComment(pulumi.getStack());
            shape.forEach((spec, i) => {
                const common = { zoneId, name: spec.name, ttl: 1, proxied: false, comment: owner };
                let inputs: cloudflare.DnsRecordArgs;
                if (spec.type === "SRV") {
                    // Cloudflare reports priority at the top level too; without it every preview shows a diff.
                    inputs = {
                        ...common,
                        type: "SRV",
                        priority: spec.priority,
                        data: { priority: spec.priority, weight: spec.weight, port: spec.port, target: spec.target },
                    };
                } else if (spec.type === "CAA") {
                    inputs = { ...common, type: "CAA", data: { flags: spec.flags, tag: spec.tag, value: spec.value } };
                } else {
                    // DNS only (proxied false): Cloudflare's proxy does not carry port 8448.
                    inputs = { ...common, type: spec.type, content: this.records.apply((r) => r[i].content!) };
                }
                new cloudflare.DnsRecord(recordResourceName(name, spec), inputs, { parent: this });
            });
        }
        this.registerOutputs({ records: this.records });
    }
}
