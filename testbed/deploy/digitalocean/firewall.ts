// The DigitalOcean stand-in's Firewall: nftables rules on the host.
//
// What it mirrors (terraform-provider-digitalocean, github.com/digitalocean/terraform-provider-digitalocean):
//   Firewall   digitalocean/firewall/resource_firewall.go + firewalls.go: nothing ForceNew (every
//              change is an update); protocol tcp|udp|icmp; port_range required for tcp/udp;
//              "At least one rule must be specified". The rules are ENFORCED from outside the guest:
//              nftables table `inet phillymesh_do_fw` on the host, stateful (conntrack), matching the
//              droplet's addresses (its own, IPv6, reserved IPs) on the host's output/input hooks and
//              on forward for bridged traffic (br_netfilter, bridge-nf-call-iptables=1). Like a
//              DigitalOcean cloud firewall it blocks (drops) whatever no rule allows, in both
//              directions; several firewalls on one droplet add up.
//
// Serialized into the state with the providers (the SDK's function serializer captures what they
// use, from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import type * as pulumi from "@pulumi/pulumi";
import { isUnknown, plain } from "../shimKit";
import { apiError, dropletOf, hostOp, withAccount } from "./account";
import { tfDiff } from "./terraform";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

/** ipv4/ipv6 CIDR or address, as the firewall API takes them. */
function isCidr(s: string): boolean {
    const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(\/(\d{1,2}))?$/.exec(s);
    if (v4) return v4.slice(1, 5).every((o) => Number(o) <= 255) && (v4[6] === undefined || Number(v4[6]) <= 32);
    const v6 = /^([0-9a-fA-F:]+)(\/(\d{1,3}))?$/.exec(s);
    return !!v6 && v6[1].includes(":") && (v6[3] === undefined || Number(v6[3]) <= 128);
}

/** "22", "8000-9000", "0"/"all" (every port); anything else is not a port range. */
export function portRange(s: unknown): { from: number; to: number } | "all" | undefined {
    const t = String(s ?? "").trim();
    if (t === "0" || t === "all") return "all";
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(t);
    if (!m) return undefined;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (from < 1 || to > 65535 || from > to) return undefined;
    return { from, to };
}

/** Plan-time checks of a firewall (CustomizeDiff and the rule schema's validators in firewalls.go). */
export function firewallFailures(news: any): { property: string; reason: string }[] {
    const failures: { property: string; reason: string }[] = [];
    const inbound = news.inboundRules ?? [];
    const outbound = news.outboundRules ?? [];
    if (!isUnknown(news.name) && !news.name) failures.push({ property: "name", reason: "name must not be empty" });
    if (inbound.length === 0 && outbound.length === 0) failures.push({ property: "inboundRules", reason: "At least one rule must be specified" });
    const check = (rules: any[], dir: "inbound" | "outbound", prop: string) => {
        const who = dir === "inbound" ? "source" : "destination";
        rules.forEach((r: any, i: number) => {
            if (isUnknown(r)) return;
            if (!["tcp", "udp", "icmp"].includes(r.protocol))
                failures.push({ property: `${prop}[${i}].protocol`, reason: `expected protocol to be one of ["tcp" "udp" "icmp"], got ${r.protocol}` });
            if (r.protocol !== "icmp" && !r.portRange)
                failures.push({ property: `${prop}[${i}].portRange`, reason: `\`port_range\` of ${dir} rules is required if protocol is \`tcp\` or \`udp\`` });
            if (r.portRange !== undefined && r.protocol !== "icmp" && portRange(r.portRange) === undefined)
                failures.push({ property: `${prop}[${i}].portRange`, reason: `invalid port range ${JSON.stringify(r.portRange)}` });
            const addrs = r[`${who}Addresses`] ?? [];
            for (const a of addrs)
                if (!isUnknown(a) && !isCidr(a)) failures.push({ property: `${prop}[${i}].${who}Addresses`, reason: `invalid address ${JSON.stringify(a)}` });
            for (const k of [`${who}DropletIds`, `${who}Tags`, `${who}LoadBalancerUids`, `${who}KubernetesIds`]) {
                if (r[k] && r[k].length > 0) failures.push({ property: `${prop}[${i}].${k}`, reason: `${k} is not in the testbed stand-in (addresses only)` });
            }
            if (addrs.length === 0)
                failures.push({ property: `${prop}[${i}].${who}Addresses`, reason: `a rule without ${who} addresses matches nothing in the testbed stand-in` });
        });
    };
    check(inbound, "inbound", "inboundRules");
    check(outbound, "outbound", "outboundRules");
    if (news.tags && news.tags.length > 0) failures.push({ property: "tags", reason: "firewall tags are not in the testbed stand-in" });
    return failures;
}

/**
 * The nftables script enforcing every firewall of the account (empty: no firewall, no table). Each
 * firewalled droplet gets chains in_<id> (traffic to its addresses) and out_<id> (from them);
 * allowed traffic `return`s (so both ends' chains are consulted for guest-to-guest traffic), the
 * rest is dropped. Stateful: replies of allowed connections pass.
 */
export function renderFirewall(account: any): string {
    const table = "phillymesh_do_fw";
    const per = new Map<number, { inbound: any[]; outbound: any[] }>();
    for (const fw of account.firewalls ?? []) {
        for (const id of fw.dropletIds ?? []) {
            const e = per.get(Number(id)) ?? { inbound: [], outbound: [] };
            e.inbound.push(...(fw.inboundRules ?? []));
            e.outbound.push(...(fw.outboundRules ?? []));
            per.set(Number(id), e);
        }
    }
    const guests: { id: number; v4: string[]; v6: string[]; inbound: any[]; outbound: any[] }[] = [];
    for (const [id, rules] of [...per.entries()].sort((a, b) => a[0] - b[0])) {
        const d = (account.droplets ?? []).find((x: any) => Number(x.id) === id);
        if (!d) continue;
        const v4 = [d.ipv4, ...(account.reservedIps ?? []).filter((r: any) => Number(r.dropletId) === id).map((r: any) => r.ip)].filter(Boolean);
        const v6 = d.ipv6 ? [d.ipv6] : [];
        guests.push({ id, v4, v6, ...rules });
    }
    if (guests.length === 0) return "";
    const set = (xs: string[]) => `{ ${xs.join(", ")} }`;
    const ruleLines = (rules: any[], who: "saddr" | "daddr", key: string): string[] => {
        const lines: string[] = [];
        for (const r of rules) {
            const addrs: string[] = r[key] ?? [];
            const v4 = addrs.filter((a) => !a.includes(":"));
            const v6 = addrs.filter((a) => a.includes(":"));
            let l4: string;
            if (r.protocol === "icmp") l4 = "";
            else {
                const pr = portRange(r.portRange);
                l4 =
                    pr === "all" || pr === undefined
                        ? `meta l4proto ${r.protocol}`
                        : `${r.protocol} dport ${pr.from === pr.to ? pr.from : `${pr.from}-${pr.to}`}`;
            }
            if (v4.length > 0) lines.push(`${r.protocol === "icmp" ? "ip protocol icmp " : ""}ip ${who} ${set(v4)}${l4 ? ` ${l4}` : ""} return`);
            if (v6.length > 0) lines.push(`${r.protocol === "icmp" ? "meta l4proto ipv6-icmp " : ""}ip6 ${who} ${set(v6)}${l4 ? ` ${l4}` : ""} return`);
        }
        return lines;
    };
    const out: string[] = [];
    // Declare, delete, declare again: one transaction that replaces whatever was there.
    out.push(`table inet ${table} {}`, `delete table inet ${table}`, `table inet ${table} {`);
    const base = (name: string, hook: string, lines: string[]) => {
        out.push(`  chain ${name} {`, `    type filter hook ${hook} priority filter; policy accept;`, ...lines.map((l) => `    ${l}`), "  }");
    };
    const to = (g: (typeof guests)[0]) => [
        ...(g.v4.length ? [`ip daddr ${set(g.v4)} jump in_${g.id}`] : []),
        ...(g.v6.length ? [`ip6 daddr ${set(g.v6)} jump in_${g.id}`] : []),
    ];
    const from = (g: (typeof guests)[0]) => [
        ...(g.v4.length ? [`ip saddr ${set(g.v4)} jump out_${g.id}`] : []),
        ...(g.v6.length ? [`ip6 saddr ${set(g.v6)} jump out_${g.id}`] : []),
    ];
    // forward: guest to guest across the bridge (br_netfilter); output: the host to a guest; input: a guest to the host.
    base("forward_hook", "forward", [...guests.flatMap(from), ...guests.flatMap(to)]);
    base("output_hook", "output", guests.flatMap(to));
    base("input_hook", "input", guests.flatMap(from));
    for (const g of guests) {
        const plumbing = [
            "ct state established,related return",
            "ct state invalid drop",
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } return",
        ];
        out.push(`  chain in_${g.id} {`, ...[...plumbing, ...ruleLines(g.inbound, "saddr", "sourceAddresses"), "counter drop"].map((l) => `    ${l}`), "  }");
        out.push(
            `  chain out_${g.id} {`,
            ...[...plumbing, ...ruleLines(g.outbound, "daddr", "destinationAddresses"), "counter drop"].map((l) => `    ${l}`),
            "  }",
        );
    }
    out.push("}");
    return out.join("\n") + "\n";
}

/** Re-renders and applies every firewall (call with the account as it now is). */
export async function applyFirewalls(props: any, account: any): Promise<void> {
    await hostOp(props, ["firewall-apply"], renderFirewall(account));
}

export const firewallProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        return { inputs: news, failures: firewallFailures(news) };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, {
            forceNew: [],
            update: ["name", "dropletIds", "inboundRules", "outboundRules", "tags"],
            sets: ["dropletIds", "inboundRules", "outboundRules", "tags"],
        });
    },
    async create(inputs: any) {
        const id = require("crypto").randomUUID();
        await withAccount(async (a) => {
            for (const d of inputs.dropletIds ?? []) {
                if (!dropletOf(a, d)) throw apiError("Error creating firewall", "POST", "firewalls", 422, `droplet ${d} not found`);
            }
            a.firewalls.push({
                id,
                name: inputs.name,
                dropletIds: inputs.dropletIds ?? [],
                inboundRules: inputs.inboundRules ?? [],
                outboundRules: inputs.outboundRules ?? [],
            });
            await applyFirewalls(inputs, a);
        });
        return { id, outs: plain({ ...inputs, status: "succeeded", createdAt: new Date().toISOString(), pendingChanges: [] }) };
    },
    async update(id: string, olds: any, news: any) {
        await withAccount(async (a) => {
            const fw = a.firewalls.find((f: any) => f.id === id);
            if (!fw) throw apiError("Error updating firewall", "PUT", `firewalls/${id}`, 404, "The resource you were accessing could not be found.");
            for (const d of news.dropletIds ?? []) {
                if (!dropletOf(a, d)) throw apiError("Error updating firewall", "PUT", `firewalls/${id}`, 422, `droplet ${d} not found`);
            }
            Object.assign(fw, {
                name: news.name,
                dropletIds: news.dropletIds ?? [],
                inboundRules: news.inboundRules ?? [],
                outboundRules: news.outboundRules ?? [],
            });
            await applyFirewalls(news, a);
        });
        return { outs: plain({ ...olds, ...news }) };
    },
    async delete(id: string, props: any) {
        await withAccount(async (a) => {
            a.firewalls = a.firewalls.filter((f: any) => f.id !== id);
            await applyFirewalls(props, a);
        });
    },
};

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
