// The server's own firewall: the same doors as DigitalOcean's cloud firewall (server.ts), kept by the
// server itself, so that an `existing` server, a cloud firewall set wrong, or a service someone starts
// by mistake on another port are covered too. nftables, one table of our own, loaded by a unit.
import { PORTS } from "./layout";
import type { ServerFile } from "./remoteStep";
import { renderTemplate } from "./templates";

export const FIREWALL_RULES_PATH = "/etc/phillymesh-chat/firewall.nft";
export const FIREWALL_UNIT = "phillymesh-chat-firewall.service";

export interface HostFirewallSettings {
    /** The port sshd listens on (22 on a droplet; sshPort on an existing server). */
    readonly sshPort: number;
    /** Where SSH may come from (IPv4 and IPv6 CIDRs). */
    readonly sshAllowedCidrs: readonly string[];
}

/** The nftables rules: loopback, replies, ICMP, SSH from the allowed CIDRs, web and federation; every other packet refused. */
export function firewallRules(f: HostFirewallSettings): string {
    const v4 = f.sshAllowedCidrs.filter((c) => !c.includes(":"));
    const v6 = f.sshAllowedCidrs.filter((c) => c.includes(":"));
    const ssh = [
        ...(v4.length ? [`tcp dport ${f.sshPort} ip saddr { ${v4.join(", ")} } accept`] : []),
        ...(v6.length ? [`tcp dport ${f.sshPort} ip6 saddr { ${v6.join(", ")} } accept`] : []),
    ];
    return [
        "# Managed by phillymesh-chat: the server's own firewall (hostFirewall). Loaded by phillymesh-chat-firewall.service.",
        "# The first two lines make loading it again replace the table in one transaction.",
        "table inet phillymesh_chat",
        "delete table inet phillymesh_chat",
        "table inet phillymesh_chat {",
        "    chain input {",
        "        type filter hook input priority filter; policy drop;",
        '        iif "lo" accept',
        "        ct state established,related accept",
        "        ct state invalid drop",
        // Ping, path-MTU discovery and IPv6 neighbour discovery.
        "        meta l4proto { icmp, ipv6-icmp } accept",
        ...ssh.map((l) => `        ${l}`),
        `        tcp dport { ${PORTS.http}, ${PORTS.https}, ${PORTS.federation} } accept`,
        // Refused, as a closed port is, rather than dropped: a client fails at once, not after a timeout.
        "        meta l4proto tcp reject with tcp reset",
        "        reject",
        "    }",
        "}",
    ].join("\n");
}

/** The rules and the unit that loads them at boot, before the network is up. */
export function hostFirewallFiles(f: HostFirewallSettings): ServerFile[] {
    return [
        { path: FIREWALL_RULES_PATH, content: firewallRules(f), mode: "0644", owner: "root:root" },
        {
            path: `/etc/systemd/system/${FIREWALL_UNIT}`,
            content: renderTemplate("server/systemd/firewall.service", { rules: FIREWALL_RULES_PATH }),
            mode: "0644",
            owner: "root:root",
        },
    ];
}
