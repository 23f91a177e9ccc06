// The whole stack configuration of a testbed server, in the shape testbed/deploy/deploy.ts takes
// ({ config, secrets }), built in one place: testbed.sh writes $B/stacks/NAME.json with the CLI
// below, the benchmark builds its stacks' configs with stackConfig() and adds its tuning keys.
//
//   node testbed/lib/stackConfig.ts write --name N --hosting digitalocean|existing [--ip IP --user U
//        --server-id ID] --synapse V --element V [--zone CLOUDFLARE_ZONE_ID] [--peer DOMAIN ...]
//     prints the config (secrets made once in $B/secrets/N.json; what an operator changed on a
//     droplet stack kept from $B/stacks/N.json; the Element fingerprint and the deploy key from $B)
//   node testbed/lib/stackConfig.ts set FILE KEY=VALUE     one config key of a stack file (a string)
//
// Plain Node ES module (type stripping).
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ensureSecrets, type Secrets } from "./guest.ts";
import { B, SSH_KEY, secretsFile, stackFile } from "./paths.ts";

export type Hosting = "digitalocean" | "existing";

export interface StackInput {
    /** The stack's name; the domain is NAME.test. */
    name: string;
    hosting: Hosting;
    /** hosting existing: the guest's address, the ssh user, its machine-id (left out when undefined). */
    ip?: string;
    user?: string;
    serverId?: string;
    /** hosting digitalocean: the deploy key's public half and the stand-in zone's id. */
    sshPublicKey?: string;
    cloudflareZoneId?: string;
    /** hosting digitalocean: the stack's config now, whose dropletImage and volumeSizeGb are kept. */
    previous?: Record<string, unknown>;
    synapseVersion: string;
    elementVersion: string;
    /** $B/element/fingerprint's content. */
    elementSigningKeyFingerprint: string;
    /** The other servers' domains (their rooms in this one's room directory). */
    peers: string[];
    secrets: Secrets;
}

export interface StackConfig {
    config: Record<string, unknown>;
    secrets: Secrets;
}

export function stackConfig(s: StackInput): StackConfig {
    const domain = `${s.name}.test`;
    let where: Record<string, unknown>;
    if (s.hosting === "digitalocean") {
        // What an operator changed on a running stack (the drills replace the droplet and grow the
        // volume) is kept: volumes never shrink, and another image would replace the droplet again.
        const kept = s.previous ?? {};
        where = {
            hosting: "digitalocean",
            doRegion: "nyc3",
            dropletSize: "s-1vcpu-1gb",
            dropletImage: kept.dropletImage ?? "debian-13-x64",
            volumeSizeGb: kept.volumeSizeGb ?? 10,
            // The testbed has no IPv6 on its bridge.
            ipv6: false,
            sshPublicKey: (s.sshPublicKey ?? "").trim(),
            sshAllowedCidrs: ["10.250.0.0/24"],
            dns: "cloudflare",
            cloudflareZoneId: s.cloudflareZoneId ?? "",
        };
    } else {
        where = {
            hosting: "existing",
            sshHost: s.ip,
            sshUser: s.user,
            // A freshly booted guest is a new machine: its machine-id tells the program so.
            ...(s.serverId !== undefined ? { serverId: s.serverId } : {}),
            dns: "none",
        };
    }
    return {
        config: {
            domain,
            adminEmail: `admin@${domain}`,
            ...where,
            acmeServer: "https://acme.test:14000/dir",
            acmeChallenge: "http",
            apexOnServer: true,
            pipIndexUrl: "https://pypi.test:3143/simple/",
            // The PyPI JSON API's stand-in (testbed/pypi-proxy.py): the advisories the drills plant.
            advisoryFeedUrl: "https://pypi.test:3143/pypi",
            synapseVersion: s.synapseVersion,
            elementVersion: s.elementVersion,
            elementDownloadUrl: "http://10.250.0.1:8090/v{version}/element-v{version}.tar.gz",
            elementSigningKeyUrl: "http://10.250.0.1:8090/element-release-key.asc",
            elementSigningKeyFingerprint: s.elementSigningKeyFingerprint,
            elementBrand: `${s.name} chat`,
            // The servers federate over the testbed's private addresses, and nothing outside
            // answers: matrix.org cannot serve as key server here.
            federationIpAllowlist: ["10.250.0.0/24"],
            trustedKeyServers: [],
            roomDirectoryServers: [domain, ...s.peers],
        },
        secrets: s.secrets,
    };
}

/** $B/element/fingerprint: the Element stand-in's signing key. */
export function elementFingerprint(dir = B): string {
    return fs.readFileSync(path.join(dir, "element", "fingerprint"), "utf8").trim();
}

/** The config part of a stack file, {} when it is missing or unreadable. */
export function previousConfig(file: string): Record<string, unknown> {
    try {
        const c = (JSON.parse(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> }).config;
        return c && typeof c === "object" ? c : {};
    } catch {
        return {};
    }
}

/** Writes a stack file atomically, 0600 (it holds the secrets). */
export function writeStackFile(file: string, config: StackConfig | object): void {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.new`;
    fs.writeFileSync(tmp, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
    fs.renameSync(tmp, file);
}

/** Sets config KEY to the string VALUE in a stack file (testbed.sh bump). */
export function setConfigKey(file: string, setting: string): void {
    const eq = setting.indexOf("=");
    if (eq <= 0) throw new Error(`expected KEY=VALUE, got ${JSON.stringify(setting)}`);
    const stack = JSON.parse(fs.readFileSync(file, "utf8")) as StackConfig;
    stack.config[setting.slice(0, eq)] = setting.slice(eq + 1);
    writeStackFile(file, stack);
}

function cli(argv: string[]): void {
    const [command, ...rest] = argv;
    if (command === "set" && rest.length === 2) return setConfigKey(rest[0], rest[1]);
    if (command !== "write") throw new Error("usage: stackConfig.ts write --name N --hosting H ... | set FILE KEY=VALUE");
    const { values: v } = parseArgs({
        args: rest,
        options: {
            name: { type: "string" },
            hosting: { type: "string" },
            ip: { type: "string" },
            user: { type: "string" },
            "server-id": { type: "string" },
            synapse: { type: "string" },
            element: { type: "string" },
            zone: { type: "string" },
            peer: { type: "string", multiple: true },
        },
    });
    const need = (k: "name" | "hosting" | "synapse" | "element"): string => {
        if (!v[k]) throw new Error(`stackConfig.ts write: --${k} is required`);
        return v[k];
    };
    const name = need("name");
    const hosting = need("hosting");
    if (hosting !== "digitalocean" && hosting !== "existing") throw new Error(`--hosting: digitalocean or existing, not ${hosting}`);
    const file = secretsFile(name);
    const { secrets, made } = ensureSecrets(file);
    if (made) process.stderr.write(`[stackConfig] made secrets for ${name} (${file})\n`);
    const droplet = hosting === "digitalocean";
    const config = stackConfig({
        name,
        hosting,
        ...(droplet
            ? { sshPublicKey: fs.readFileSync(`${SSH_KEY}.pub`, "utf8"), cloudflareZoneId: v.zone ?? "", previous: previousConfig(stackFile(name)) }
            : { ip: v.ip ?? "", user: v.user ?? "", serverId: v["server-id"] ?? "" }),
        synapseVersion: need("synapse"),
        elementVersion: need("element"),
        elementSigningKeyFingerprint: elementFingerprint(),
        peers: v.peer ?? [],
        secrets,
    });
    process.stdout.write(JSON.stringify(config, null, 2) + "\n");
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
    try {
        cli(process.argv.slice(2));
    } catch (e) {
        process.stderr.write(`stackConfig.ts: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exit(1);
    }
}
