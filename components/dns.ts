// The DNS records the service needs. With dns "cloudflare" they are created in the zone; with
// "none" they are only computed, and the stack output dnsRecords lists them for creating by hand
// (the local testbed loads them into its own DNS server).
import * as pulumi from "@pulumi/pulumi";
import * as cloudflare from "@pulumi/cloudflare";

export interface DnsRecordSpec {
    readonly name: string;
    readonly type: "A" | "AAAA" | "SRV";
    /** Address for A/AAAA. */
    readonly content?: string;
    /** SRV fields. */
    readonly priority?: number;
    readonly weight?: number;
    readonly port?: number;
    readonly target?: string;
}

/**
 * The records: matrix.<domain> and chat.<domain> (and the apex when it is on this server) to the
 * server, and both federation SRV names (the current _matrix-fed and the legacy _matrix, which
 * Synapse before 1.93 reads) to matrix.<domain>:8448.
 */
export function plannedRecords(domain: string, ipv4: string, ipv6: string | undefined, apexOnServer: boolean): DnsRecordSpec[] {
    const hosts = [`matrix.${domain}`, `chat.${domain}`, ...(apexOnServer ? [domain] : [])];
    const records: DnsRecordSpec[] = hosts.map((name) => ({ name, type: "A", content: ipv4 }));
    if (ipv6) records.push(...hosts.map((name): DnsRecordSpec => ({ name, type: "AAAA", content: ipv6 })));
    for (const service of ["_matrix-fed._tcp", "_matrix._tcp"]) {
        records.push({ name: `${service}.${domain}`, type: "SRV", priority: 10, weight: 5, port: 8448, target: `matrix.${domain}` });
    }
    return records;
}

export interface ChatDnsArgs {
    readonly domain: string;
    readonly ipv4: pulumi.Input<string>;
    readonly ipv6?: pulumi.Input<string>;
    readonly apexOnServer: boolean;
    /** Cloudflare zone id; undefined: create nothing, only report. */
    readonly cloudflareZoneId?: string;
}

export class ChatDns extends pulumi.ComponentResource {
    /** The records, created or to be created by hand. */
    public readonly records: pulumi.Output<DnsRecordSpec[]>;

    constructor(name: string, args: ChatDnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:ChatDns", name, {}, opts);
        this.records = pulumi
            .all([args.ipv4, args.ipv6])
            .apply(([ipv4, ipv6]) => plannedRecords(args.domain, ipv4, ipv6, args.apexOnServer));

        if (args.cloudflareZoneId) {
            // The record set is known before the addresses are, so resources are declared here,
            // outside any apply; only their contents wait for the addresses.
            const shape = plannedRecords(args.domain, "0.0.0.0", args.ipv6 === undefined ? undefined : "::", args.apexOnServer);
            shape.forEach((spec, i) => {
                const resourceName = `${name}-${spec.type.toLowerCase()}-${spec.name.replace(/\./g, "-").replace(/_/g, "")}`;
                if (spec.type === "SRV") {
                    new cloudflare.DnsRecord(
                        resourceName,
                        {
                            zoneId: args.cloudflareZoneId!,
                            name: spec.name,
                            type: "SRV",
                            ttl: 1,
                            // Cloudflare reports priority at the top level too; without it every
                            // preview shows a diff.
                            priority: spec.priority,
                            data: { priority: spec.priority, weight: spec.weight, port: spec.port, target: spec.target },
                            proxied: false,
                        },
                        { parent: this },
                    );
                } else {
                    new cloudflare.DnsRecord(
                        resourceName,
                        {
                            zoneId: args.cloudflareZoneId!,
                            name: spec.name,
                            type: spec.type,
                            ttl: 1,
                            content: this.records.apply((r) => r[i].content!),
                            // DNS only: Cloudflare's proxy does not carry port 8448.
                            proxied: false,
                        },
                        { parent: this },
                    );
                }
            });
        }
        this.registerOutputs({ records: this.records });
    }
}
