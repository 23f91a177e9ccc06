// HTTP to the testbed's servers as a client on its network sees them: names resolved by the
// testbed's DNS server only, TLS trusting the testbed's ACME roots (plus the system's), both only
// inside this process (nothing on the host changes). undici's fetch through one pooled Agent.
// Plain Node ES module (type stripping).
import type { LookupAddress, LookupOptions } from "node:dns";
import { Resolver } from "node:dns/promises";
import * as fs from "node:fs";
import { isIP } from "node:net";
import { rootCertificates } from "node:tls";
import { Agent, fetch as undiciFetch } from "undici";
import { DNS_SERVER, ROOTS, ROOTS_ALL } from "./paths.ts";

/** A resolver that asks only the testbed's DNS server. */
export function testbedResolver(opts: { server?: string; timeoutMs?: number } = {}): Resolver {
    const r = new Resolver({ timeout: opts.timeoutMs ?? 3000, tries: 2 });
    r.setServers([opts.server ?? DNS_SERVER]);
    return r;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
export type Lookup = (hostname: string, options: LookupOptions, callback: LookupCallback) => void;

/**
 * A `net.connect` lookup through `resolver` (A records only; an IP address is its own answer).
 * cacheMs > 0 keeps answers that long (the benchmark opens many connections).
 */
export function testbedLookup(resolver: Resolver, opts: { cacheMs?: number } = {}): Lookup {
    const cache = new Map<string, { addresses: string[]; until: number }>();
    const server = resolver.getServers()[0] ?? "?";
    return (hostname, options, callback) => {
        const reply = (addresses: string[], family: number) =>
            options.all
                ? callback(
                      null,
                      addresses.map((address) => ({ address, family })),
                  )
                : callback(null, addresses[0], family);
        const fam = isIP(hostname);
        if (fam) return reply([hostname], fam);
        const hit = cache.get(hostname);
        if (hit && hit.until > Date.now()) return reply(hit.addresses, 4);
        resolver.resolve4(hostname).then(
            (addresses) => {
                if (!addresses.length) return callback(Object.assign(new Error(`${hostname}: no A record at ${server}`), { code: "ENOTFOUND" }), "");
                if (opts.cacheMs) cache.set(hostname, { addresses, until: Date.now() + opts.cacheMs });
                reply(addresses, 4);
            },
            (err: NodeJS.ErrnoException) => callback(err, ""),
        );
    };
}

/** The testbed's ACME roots: roots.pem, and roots-all.pem when pebble has had other roots. */
export function testbedRoots(files: string[] = [ROOTS, ROOTS_ALL]): string[] {
    return files.filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f, "utf8"));
}

export interface AgentOptions {
    /**
     * PEM certificates to trust (default: testbedRoots() plus the system's roots); a function is
     * called for each new Agent (TestbedHttp.reset() then reads the roots again).
     */
    ca?: string[] | (() => string[]);
    resolver?: Resolver;
    /** Keep DNS answers this long (default 0: ask every time). */
    dnsCacheMs?: number;
    connectTimeoutMs?: number;
    headersTimeoutMs?: number;
    bodyTimeoutMs?: number;
    keepAliveTimeoutMs?: number;
    /** Connections per origin (default: unlimited). */
    connections?: number;
}

/** An undici Agent that reaches the testbed: its DNS, its roots. */
export function testbedAgent(opts: AgentOptions = {}): Agent {
    const lookup = testbedLookup(opts.resolver ?? testbedResolver(), { cacheMs: opts.dnsCacheMs });
    const ca = typeof opts.ca === "function" ? opts.ca() : (opts.ca ?? [...rootCertificates, ...testbedRoots()]);
    return new Agent({
        connect: { ca, lookup, timeout: opts.connectTimeoutMs ?? 5000 },
        ...(opts.headersTimeoutMs !== undefined ? { headersTimeout: opts.headersTimeoutMs } : {}),
        ...(opts.bodyTimeoutMs !== undefined ? { bodyTimeout: opts.bodyTimeoutMs } : {}),
        ...(opts.keepAliveTimeoutMs !== undefined ? { keepAliveTimeout: opts.keepAliveTimeoutMs } : {}),
        ...(opts.connections !== undefined ? { connections: opts.connections } : {}),
    });
}

/** `fetch` through `agent` (e.g. matrix-js-sdk's fetchFn). */
export function fetchThrough(agent: Agent): typeof globalThis.fetch {
    return ((input: Parameters<typeof undiciFetch>[0], init?: Parameters<typeof undiciFetch>[1]) =>
        undiciFetch(input, { ...init, dispatcher: agent })) as unknown as typeof globalThis.fetch;
}

export interface HttpResult {
    status: number;
    headers: Headers;
    body: Uint8Array;
    text: string;
    /** The body parsed as JSON, undefined when it is not JSON. */
    json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- whatever the server sent
}

export interface RequestInit {
    method?: string;
    headers?: Record<string, string>;
    body?: string | Uint8Array;
    /** The whole request, body included (default 60 s). */
    timeoutMs?: number;
}

/** One request through `agent`, redirects not followed; the body read whole. Throws on network errors only. */
export async function request(agent: Agent, url: string, init: RequestInit = {}): Promise<HttpResult> {
    const r = await undiciFetch(url, {
        method: init.method ?? "GET",
        headers: init.headers,
        body: init.body,
        dispatcher: agent,
        redirect: "manual",
        signal: AbortSignal.timeout(init.timeoutMs ?? 60_000),
    });
    const body = new Uint8Array(await r.arrayBuffer());
    const text = Buffer.from(body).toString("utf8");
    let json: unknown = undefined;
    try {
        json = JSON.parse(text);
    } catch {
        /* not JSON */
    }
    return { status: r.status, headers: r.headers as unknown as Headers, body, text, json };
}

/**
 * An Agent that can be replaced (after a guest was replaced, its pooled connections lead nowhere,
 * and pebble may have new roots): `agent` is always the current one.
 */
export class TestbedHttp {
    agent: Agent;
    readonly opts: AgentOptions;
    constructor(opts: AgentOptions = {}) {
        this.opts = opts;
        this.agent = testbedAgent(opts);
    }
    request(url: string, init: RequestInit = {}): Promise<HttpResult> {
        return request(this.agent, url, init);
    }
    /** A new Agent (the roots read again, unless `ca` was a fixed list); the old one's connections closed. */
    async reset(): Promise<void> {
        const old = this.agent;
        this.agent = testbedAgent(this.opts);
        await old.close().catch(() => undefined);
    }
    async close(): Promise<void> {
        await this.agent.close().catch(() => undefined);
    }
}
