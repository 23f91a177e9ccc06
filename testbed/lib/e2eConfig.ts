// e2e.json: what the end-to-end checks (and the drills' copy, e2e-drills*.json) know of the running
// servers (URLs, logins, addresses), built from the stacks' outputs and config files. testbed.sh
// writes and prints it with the CLI below; tests/e2e reads it with loadE2eConfig().
//
//   node testbed/lib/e2eConfig.ts write NAME USER [NAME USER ...]   the file, on stdout, from
//        $B/stacks/NAME.outputs.json (deploy.ts outputs) and $B/stacks/NAME.json
//   node testbed/lib/e2eConfig.ts status FILE                       the servers, for a person
//
// Plain Node ES module (type stripping).
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { B, DNS_SERVER } from "./paths.ts";

export interface Server {
    name: string;
    domain: string;
    ip: string;
    /** user@address for testbed/tssh. */
    ssh: string;
    adminUser: string;
    adminPassword: string;
    homeserverUrl: string;
    webClientUrl: string;
    synapseVersion: string;
    elementVersion: string;
    /** synapseWorkers in its stack's config (0: one Synapse process); optional in older files. */
    synapseWorkers?: number;
}

export interface E2eConfig {
    /** PEM file: the ACME root + intermediate that signed the servers' certificates. */
    roots: string;
    dnsServer: string;
    servers: Server[];
}

const FIELDS: (keyof Server)[] = [
    "name",
    "domain",
    "ip",
    "ssh",
    "adminUser",
    "adminPassword",
    "homeserverUrl",
    "webClientUrl",
    "synapseVersion",
    "elementVersion",
];

/** Reads and checks an e2e.json: roots, dnsServer, at least `minServers` servers with every field. */
export function loadE2eConfig(file: string, minServers = 2): E2eConfig {
    let raw: string;
    try {
        raw = fs.readFileSync(file, "utf8");
    } catch (e) {
        throw new Error(`cannot read ${file} (is the testbed running? set E2E_CONFIG to another file): ${String(e)}`);
    }
    const tb = JSON.parse(raw) as E2eConfig;
    if (typeof tb.roots !== "string" || typeof tb.dnsServer !== "string" || !Array.isArray(tb.servers) || tb.servers.length < minServers) {
        throw new Error(`${file}: needs roots, dnsServer and at least ${minServers === 2 ? "two" : minServers} servers`);
    }
    for (const s of tb.servers) {
        const missing = FIELDS.filter((f) => typeof s[f] !== "string" || s[f] === "");
        if (missing.length) throw new Error(`${file}: server ${s.name ?? "?"} lacks ${missing.join(", ")}`);
    }
    return tb;
}

/** One server's entry from its stack's outputs and its stack file (config + secrets), both JSON files. */
/* eslint-disable @typescript-eslint/no-explicit-any -- the JSON files' shapes */
export function serverEntry(
    name: string,
    user: string,
    outputs: Record<string, any>,
    stack: { config: Record<string, any>; secrets: Record<string, string> },
): Server {
    /* eslint-enable @typescript-eslint/no-explicit-any */
    // The address the stack reports: the guest's for an existing server, the reserved IP for a droplet.
    const ip = outputs.serverIp as string;
    return {
        name,
        domain: outputs.serverName,
        ip,
        ssh: `${user}@${ip}`,
        adminUser: stack.config.adminUser ?? "admin",
        adminPassword: stack.secrets.adminPassword,
        homeserverUrl: outputs.homeserverUrl,
        webClientUrl: outputs.webClientUrl,
        synapseVersion: stack.config.synapseVersion,
        elementVersion: stack.config.elementVersion,
        synapseWorkers: Number(stack.config.synapseWorkers ?? 0),
    };
}

/** e2e.json for the servers [name, ssh user], from $B/stacks/. */
export function e2eConfig(servers: [string, string][], dir = B): E2eConfig {
    const read = (f: string) => JSON.parse(fs.readFileSync(path.join(dir, "stacks", f), "utf8"));
    return {
        roots: path.join(dir, "pebble", "roots.pem"),
        dnsServer: DNS_SERVER,
        servers: servers.map(([name, user]) => serverEntry(name, user, read(`${name}.outputs.json`), read(`${name}.json`))),
    };
}

/** What testbed.sh status prints about the servers. */
export function statusText(e: E2eConfig): string {
    const lines = [`\nThe servers (names resolve through the testbed DNS at ${e.dnsServer}; certificates from the testbed CA in ${e.roots}):`];
    for (const s of e.servers) {
        lines.push(`  ${s.domain}: web client ${s.webClientUrl}  homeserver ${s.homeserverUrl}`);
        lines.push(`      admin: @${s.adminUser}:${s.domain}  password: ${s.adminPassword}  (ssh: testbed/tssh ${s.ssh})`);
    }
    lines.push("\nIn a browser on this machine: add to /etc/hosts");
    for (const s of e.servers) lines.push(`  ${s.ip} ${s.domain} matrix.${s.domain} chat.${s.domain}`);
    lines.push(`and trust ${e.roots} (or run the end-to-end checks: npm run test:e2e)`);
    return lines.join("\n") + "\n";
}

function cli(argv: string[]): void {
    const [command, ...rest] = argv;
    if (command === "write" && rest.length >= 2 && rest.length % 2 === 0) {
        const pairs: [string, string][] = [];
        for (let i = 0; i < rest.length; i += 2) pairs.push([rest[i], rest[i + 1]]);
        process.stdout.write(JSON.stringify(e2eConfig(pairs), null, 2) + "\n");
    } else if (command === "status" && rest.length === 1) {
        process.stdout.write(statusText(JSON.parse(fs.readFileSync(rest[0], "utf8")) as E2eConfig));
    } else {
        throw new Error("usage: e2eConfig.ts write NAME USER [NAME USER ...] | status FILE");
    }
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
    try {
        cli(process.argv.slice(2));
    } catch (e) {
        process.stderr.write(`e2eConfig.ts: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exit(1);
    }
}
