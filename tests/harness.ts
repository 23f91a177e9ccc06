// Runs the whole program (index.ts) under strict Pulumi mocks and records every resource with its
// inputs and options, so tests can assert what a user would notice: ports, records, order, secrets.
import { AsyncLocalStorage } from "async_hooks";
import type * as PulumiModule from "@pulumi/pulumi";

export interface Recorded {
    readonly type: string;
    readonly name: string;
    /** Inputs as the provider receives them (secrets unwrapped). */
    readonly inputs: Record<string, any>;
    /** Which inputs were secret Outputs when declared. */
    readonly secretInputs: Set<string>;
    readonly protect: boolean;
    readonly ignoreChanges: string[];
    /** Names of the resources this one explicitly waits for. */
    readonly dependsOn: string[];
    readonly parent?: string;
}

export interface ProgramRun {
    readonly resources: Recorded[];
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
    sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAtestkeymaterialSECRET1\n-----END OPENSSH PRIVATE KEY-----",
    postgresPassword: "pg-SECRET-pass'with\"quotes$(touch /tmp/pwned)",
    adminPassword: "admin-SECRET-password-42",
    registrationSharedSecret: "regsecret-SECRET-0123456789abcdef0123456789",
    macaroonSecretKey: "macaroon-SECRET-0123456789abcdef0123456789ab",
    formSecret: "formsecret-SECRET-0123456789abcdef012345678",
    cloudflareDnsToken: "cfDnsToken_SECRET_0123456789abcdefABCDEF",
};

const PROJECT = "phillymesh-chat";

function configMap(config: Record<string, string>, secrets: Record<string, string>) {
    const all: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...config, ...secrets })) all[`${PROJECT}:${k}`] = v;
    return { all, secretKeys: Object.keys(secrets).map((k) => `${PROJECT}:${k}`) };
}

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
        default:
            return inputs;
    }
}

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

async function settle(pulumi: typeof PulumiModule, value: unknown): Promise<{ value: any; secret: boolean }> {
    const out = pulumi.output(value as any);
    const [v, secret] = await Promise.all([
        new Promise((resolve) => out.apply((x: unknown) => resolve(x))),
        pulumi.isSecret(out),
    ]);
    return { value: v, secret };
}

/**
 * Runs index.ts with the given config. `preview` runs it as `pulumi preview` does (unknown
 * provider outputs). Rejects with the program's error when it fails, after recording what (if
 * anything) was registered, in `registeredBeforeFailure`.
 */
export async function runProgram(
    config: Record<string, string> = BASE_CONFIG,
    secrets: Record<string, string> = SECRETS,
    opts: { preview?: boolean } = {},
): Promise<ProgramRun> {
    const declared: { type: string; name: string; props: Record<string, unknown>; opts: PulumiModule.ResourceOptions; resource: PulumiModule.Resource }[] = [];
    const provided = new Map<string, any>();
    let program: Promise<Record<string, unknown>>;
    let indexExports: Record<string, unknown> = {};
    let programError: unknown;

    // A fresh runtime for every run: the SDK keeps its state (stack resource, settings) in globals.
    // (Its async-local store follows awaits, so a new run also needs a new AsyncLocalStorage.)
    (global as any).globalStore = undefined;
    (global as any).asyncLocalStorage = new AsyncLocalStorage();
    (globalThis as any).stackResource = undefined;
    const pulumi: typeof PulumiModule = require("@pulumi/pulumi");
    {
        void pulumi.runtime.setMocks(
            {
                newResource: (args) => {
                    provided.set(args.name, unwrapSecrets(args.inputs));
                    return { id: args.inputs.name ? `${args.name}-id` : `${args.name}-id`, state: mockState(args.type, args.name, args.inputs) };
                },
                // Strict: the program makes no provider function calls; any call is a bug.
                call: (args) => {
                    throw new Error(`unexpected provider call ${args.token}`);
                },
            },
            PROJECT,
            "test",
            opts.preview ?? false,
        );
        const { all, secretKeys } = configMap(config, secrets);
        pulumi.runtime.setAllConfig(all, secretKeys);
        // The transformation needs a root stack resource, which only runInPulumiStack makes.
        program = pulumi.runtime.runInPulumiStack(async () => {
            pulumi.runtime.registerStackTransformation((args) => {
                declared.push({ type: args.type, name: args.name, props: args.props, opts: args.opts, resource: args.resource });
                return undefined;
            });
            // index.ts runs at import: load a fresh copy for every run (the SDK's state is global,
            // so this copy shares the mocks set above).
            // A program that throws must fail the run (the stack's own promise would never settle).
            try {
                jest.isolateModules(() => {
                    indexExports = require("../index");
                });
            } catch (e) {
                programError = e;
                return {};
            }
            return indexExports;
        }).then(() => {
            if (programError !== undefined) throw programError;
            return indexExports;
        });
    }
    lastRegistered = declared;
    const exportsOfIndex = await program.finally(() => {
        lastRegistered = declared;
    });

    const outputs: Record<string, any> = {};
    for (const [k, v] of Object.entries(exportsOfIndex)) outputs[k] = (await settle(pulumi, v)).value;
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
            ignoreChanges: d.opts.ignoreChanges ?? [],
            dependsOn,
            parent: d.opts.parent ? nameOf.get(d.opts.parent) : undefined,
        });
    }
    return {
        resources,
        outputs,
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
