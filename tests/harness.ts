// Runs the whole program (readConfig, preflight and buildChat, what index.ts runs) under strict
// Pulumi mocks and records every resource with its inputs and options, so tests can assert what a
// user would notice: ports, records, order, secrets, and the look-ups made in the mocked clouds.
import { AsyncLocalStorage } from "async_hooks";
import type * as PulumiModule from "@pulumi/pulumi";
import { mapSource, readConfig, type HousekeepingSettings } from "../components/config";
import { buildChat } from "../components/chatService";
import { preflight } from "../components/preflight";
import type { Probe } from "../components/health/probe";

export interface Recorded {
    readonly type: string;
    readonly name: string;
    /** Inputs as the provider receives them (secrets unwrapped). */
    readonly inputs: Record<string, any>;
    /** Which inputs were secret Outputs when declared. */
    readonly secretInputs: Set<string>;
    readonly protect: boolean;
    readonly deleteBeforeReplace: boolean;
    /** Whether a delete only drops it from the stack (the cloud resource is kept). */
    readonly retainOnDelete: boolean;
    readonly ignoreChanges: string[];
    /** Names of the resources this one explicitly waits for. */
    readonly dependsOn: string[];
    readonly parent?: string;
}

export interface ProgramRun {
    readonly resources: Recorded[];
    /** The provider look-ups the program made. */
    readonly calls: { token: string; inputs: any }[];
    readonly outputs: Record<string, any>;
    byName(name: string): Recorded;
    ofType(type: string): Recorded[];
}

/** A complete, valid configuration for a DigitalOcean + Cloudflare stack. */
export const BASE_CONFIG: Record<string, string> = {
    domain: "phillymesh.net",
    adminEmail: "hello@phillymesh.net",
    sshPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK8mV4x7o3kR0yQnE1v0P7bM5yqH0t7bV3d2g1YwXyZa ops@phillymesh.net",
    cloudflareZoneId: "0123456789abcdef0123456789abcdef",
    synapseVersion: "1.163.2",
    elementVersion: "1.12.5",
};

/** Secret values used by the tests; each must never appear in a plain (non-secret) input. */
export const SECRETS: Record<string, string> = {
    // A throwaway ed25519 key made for these tests (no passphrase), used nowhere else.
    sshPrivateKey:
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACCKPSqsVLZ05+6xV4DyXOtBc/8qL7oE1EurLknIqCKuxgAAAIgYrTW+GK01\nvgAAAAtzc2gtZWQyNTUxOQAAACCKPSqsVLZ05+6xV4DyXOtBc/8qL7oE1EurLknIqCKuxg\nAAAEAJRqhhlqZwHviB87e0JSwtd9cD/7wbf+26L/njzS2vBIo9KqxUtnTn7rFXgPJc60Fz\n/yovugTUS6suScioIq7GAAAABHRlc3QB\n-----END OPENSSH PRIVATE KEY-----\n",
    postgresPassword: "pg-SECRET-pass'with\"quotes$(touch /tmp/pwned)",
    adminPassword: "admin-SECRET-password-42",
    registrationSharedSecret: "regsecret-SECRET-0123456789abcdef0123456789",
    macaroonSecretKey: "macaroon-SECRET-0123456789abcdef0123456789ab",
    formSecret: "formsecret-SECRET-0123456789abcdef012345678",
    cloudflareDnsToken: "cfDnsToken_SECRET_0123456789abcdefABCDEF",
};

/** The same kind of key with a passphrase: @pulumi/command cannot use it, so preview must refuse it. */
export const ENCRYPTED_SSH_KEY =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABCfQApNUw\ngyMZyI05CXNLlnAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIKkjyALH4x64C5+I\nEXJfPIZWi5h53gXWwlViXSjLUQxdAAAAkCPjt7yFto+khGs9BNbpInc4Rz6UeJnzYy4+zL\nhlr7u/m1Zq1Nhub422c815BE30kBRCOlHEv197dajH5E1dZFPoPeAzLKReCk+Vnmz3uqMe\n3LE69CEBnCxGoma8EJGMagzH1tu1gqDTjI1Wl9onSjGDzE0nI6Rnl6GnMpVPD54nvSk0Ww\nko9JYPWSAqZVAshg==\n-----END OPENSSH PRIVATE KEY-----\n";

const PROJECT = "phillymesh-chat";

/** Outputs that a mocked provider reports for resources of these types. */
function mockState(type: string, name: string, inputs: any): Record<string, any> {
    switch (type) {
        case "digitalocean:index/reservedIp:ReservedIp":
            return { ...inputs, ipAddress: "203.0.113.10" };
        case "digitalocean:index/droplet:Droplet":
            return { ...inputs, ipv4Address: "203.0.113.99", ipv6Address: "2001:db8::10", urn: name };
        case "digitalocean:index/sshKey:SshKey":
            return { ...inputs, fingerprint: "aa:bb:cc" };
        case "command:remote:Command":
            return { ...inputs, stdout: "", stderr: "" };
        case "digitalocean:index/databaseCluster:DatabaseCluster":
            return { ...inputs, ...MANAGED_CLUSTER };
        case "digitalocean:index/databaseUser:DatabaseUser":
            return { ...inputs, password: MANAGED_USER_PASSWORD };
        default:
            return inputs;
    }
}

/** What the mocked DigitalOcean reports for a database cluster (database managed). */
export const MANAGED_CLUSTER = {
    host: "chat-synapse-db-do-user-1-0.f.db.ondigitalocean.com",
    port: 25060,
    user: "doadmin",
    password: "doadmin-SECRET-cluster-password",
    database: "defaultdb",
};
/** The synapse user's password DigitalOcean makes; must never appear in a plain input. */
export const MANAGED_USER_PASSWORD = "synapse-SECRET-managed:pass\\word";
/** The cluster's CA, as digitalocean.getDatabaseCa answers. */
export const MANAGED_CA = "-----BEGIN CERTIFICATE-----\nMIIEQTCCAqmgAwIBAgIUtest\n-----END CERTIFICATE-----";

const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/** The mock monitor hands secrets over wrapped; providers see plain values. */
function unwrapSecrets(v: any): any {
    if (Array.isArray(v)) return v.map(unwrapSecrets);
    if (v && typeof v === "object") {
        if (v[SECRET_SIG] !== undefined && "value" in v) return unwrapSecrets(v.value);
        return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
    }
    return v;
}

/** What an output that is unknown (in a preview) settles to here. */
export const UNKNOWN = "<unknown in preview>";

/** The housekeeping settings of Pulumi.yaml's defaults (the compressor and the index rebuild on). */
export const DEFAULT_HOUSEKEEPING: HousekeepingSettings = {
    compressor: true,
    compressorVersion: "0.1.2",
    chunkSize: 500,
    chunks: 100,
    memoryMaxMb: 256,
    indexRebuild: true,
};

async function settle(pulumi: typeof PulumiModule, value: unknown): Promise<{ value: any; secret: boolean }> {
    const out = pulumi.output(value as any);
    // An unknown (the health output in a preview) never reaches an apply.
    if (!(await (out as unknown as { isKnown: Promise<boolean> }).isKnown)) return { value: UNKNOWN, secret: await pulumi.isSecret(out) };
    const [v, secret] = await Promise.all([new Promise((resolve) => out.apply((x: unknown) => resolve(x))), pulumi.isSecret(out)]);
    return { value: v, secret };
}

/** What the mocked clouds already hold: records in the Cloudflare zone, keys in the DigitalOcean account. */
export interface CloudState {
    /** The stack's outputs from its last deployment (read back by preflight through a StackReference). */
    readonly lastOutputs?: Record<string, unknown>;
    readonly zoneRecords?: { id: string; name: string; type: string; content?: string; comment?: string; data?: Record<string, unknown> }[];
    readonly accountKeys?: { id: number; name: string; fingerprint: string; publicKey: string }[];
}

/**
 * Builds the whole program (buildChat, as index.ts does) from the given config under mocks. `preview`
 * runs it as `pulumi preview` does (unknown provider outputs). Rejects with the program's error when
 * it fails, after recording what (if anything) was registered, in `lastRegistered`.
 */
export async function runProgram(
    config: Record<string, string> = BASE_CONFIG,
    secrets: Record<string, string> = SECRETS,
    opts: { preview?: boolean; cloud?: CloudState; probe?: Probe } = {},
): Promise<ProgramRun> {
    const declared: { type: string; name: string; props: Record<string, unknown>; opts: PulumiModule.ResourceOptions; resource: PulumiModule.Resource }[] = [];
    const provided = new Map<string, any>();
    const calls: { token: string; inputs: any }[] = [];

    // A fresh runtime for every run: the SDK keeps its state (stack resource, settings) in globals,
    // and one process runs many stacks here. (Its async-local store follows awaits, so a new run
    // also needs a new AsyncLocalStorage.) This is the one place the tests reach into the SDK.
    (global as any).globalStore = undefined;
    (global as any).asyncLocalStorage = new AsyncLocalStorage();
    (globalThis as any).stackResource = undefined;
    const pulumi: typeof PulumiModule = require("@pulumi/pulumi");
    void pulumi.runtime.setMocks(
        {
            newResource: (args) => {
                if (args.type === "pulumi:pulumi:StackReference") {
                    return { id: args.name, state: { name: args.name, outputs: opts.cloud?.lastOutputs ?? {}, secretOutputNames: [] } };
                }
                provided.set(args.name, unwrapSecrets(args.inputs));
                return { id: `${args.name}-id`, state: mockState(args.type, args.name, args.inputs) };
            },
            // Strict: only the look-ups the program is known to make are answered.
            call: (args) => {
                calls.push({ token: args.token, inputs: args.inputs });
                switch (args.token) {
                    case "cloudflare:index/getDnsRecords:getDnsRecords": {
                        const name = args.inputs.name?.exact;
                        return { results: (opts.cloud?.zoneRecords ?? []).filter((r) => r.name === name) };
                    }
                    case "digitalocean:index/getSshKeys:getSshKeys":
                        return { sshKeys: opts.cloud?.accountKeys ?? [] };
                    case "digitalocean:index/getDatabaseCa:getDatabaseCa":
                        return { clusterId: args.inputs.clusterId, certificate: MANAGED_CA, id: args.inputs.clusterId };
                    default:
                        throw new Error(`unexpected provider call ${args.token}`);
                }
            },
        },
        PROJECT,
        "test",
        opts.preview ?? false,
        "organization",
    );
    // Read the config first, as index.ts does: bad config fails before anything is declared.
    const cfg = readConfig(mapSource(config, secrets));
    // The look-ups too (the mocked clouds answer them); a program that fails there declares nothing.
    const facts = await preflight(cfg);
    let outputs: Record<string, unknown> = {};
    // The transformation needs a root stack resource, which only runInPulumiStack makes.
    const program = pulumi.runtime.runInPulumiStack(async () => {
        pulumi.runtime.registerStackTransformation((args) => {
            declared.push({ type: args.type, name: args.name, props: args.props, opts: args.opts, resource: args.resource });
            return undefined;
        });
        outputs = buildChat(cfg, facts, "chat", opts.probe) as unknown as Record<string, unknown>;
        return outputs;
    });
    lastRegistered = declared;
    await program.finally(() => {
        lastRegistered = declared;
    });

    const settled: Record<string, any> = {};
    for (const [k, v] of Object.entries(outputs)) settled[k] = (await settle(pulumi, v)).value;
    // Let the mock monitor finish registering what the outputs did not wait for.
    await new Promise((r) => setTimeout(r, 50));

    const nameOf = new Map<PulumiModule.Resource, string>(declared.map((d) => [d.resource, d.name]));
    const resources: Recorded[] = [];
    for (const d of declared) {
        const secretInputs = new Set<string>();
        for (const [k, v] of Object.entries(d.props)) {
            if (v !== undefined && (await settle(pulumi, v)).secret) secretInputs.add(k);
        }
        const deps = d.opts.dependsOn === undefined ? [] : Array.isArray(d.opts.dependsOn) ? d.opts.dependsOn : [d.opts.dependsOn];
        const dependsOn: string[] = [];
        for (const dep of deps) {
            const r = (await settle(pulumi, dep)).value;
            for (const x of Array.isArray(r) ? r : [r]) if (nameOf.has(x)) dependsOn.push(nameOf.get(x)!);
        }
        resources.push({
            type: d.type,
            name: d.name,
            inputs: provided.get(d.name) ?? {},
            secretInputs,
            protect: d.opts.protect === true,
            deleteBeforeReplace: (d.opts as PulumiModule.CustomResourceOptions).deleteBeforeReplace === true,
            retainOnDelete: d.opts.retainOnDelete === true,
            ignoreChanges: d.opts.ignoreChanges ?? [],
            dependsOn,
            parent: d.opts.parent ? nameOf.get(d.opts.parent) : undefined,
        });
    }
    return {
        resources,
        outputs: settled,
        calls,
        byName(name: string) {
            const r = resources.find((x) => x.name === name);
            if (!r) throw new Error(`no resource named ${name}; have: ${resources.map((x) => x.name).join(", ")}`);
            return r;
        },
        ofType(type: string) {
            return resources.filter((x) => x.type === type);
        },
    };
}

/** What the last runProgram declared, also when the program threw. */
export let lastRegistered: { type: string; name: string }[] = [];
