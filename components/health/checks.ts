// The service as its users and other servers see it: each check asks what a client, a browser or a
// remote homeserver would ask, and gives a verdict that names what is wrong and the likely fix.
// Run at the end of every `pulumi up` (chatService.ts: the `health` output; a failure fails `up`)
// and by `npm run check -- <server name>` against any Matrix server (scripts/check.ts).
import { HttpAnswer, Probe } from "./probe";
import { verifySignature } from "./signedJson";

/** What the checks expect; for another community's server, only its name is known. */
export interface Expected {
    /** The Matrix server name (user ids are @user:<serverName>). */
    readonly serverName: string;
    /** The homeserver's client URL (https://matrix.<domain>); from .well-known when not given. */
    readonly homeserverUrl?: string;
    /** Element's URL, whose config.json must point at the homeserver; not checked when not given. */
    readonly webClientUrl?: string;
    /** Where federation must land (matrix.<domain>:8448): the SRV record's target; not checked when not given. */
    readonly federationTarget?: { readonly host: string; readonly port: number };
    /** The Synapse release that must be running; not checked when not given. */
    readonly synapseVersion?: string;
    /**
     * Whether this server serves https://<serverName>/.well-known/matrix/*: then a wrong or missing
     * answer fails; otherwise (the community's website serves it, or not) it is only a warning.
     */
    readonly wellKnownOnServer?: boolean;
    /** Certificates must stay valid at least this many days (default 14). */
    readonly minCertDays?: number;
}

export type Level = "ok" | "warn" | "fail";

export interface Verdict {
    readonly check: string;
    readonly level: Level;
    /** What was found, and for a problem the likely fix. */
    readonly detail: string;
}

const DAY_MS = 24 * 3600 * 1000;

function json(a: HttpAnswer): Record<string, unknown> | undefined {
    try {
        const v: unknown = JSON.parse(a.body);
        return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
    } catch {
        return undefined;
    }
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));
const hostPort = (t: { host: string; port: number }) => `${t.host}:${t.port}`;

/** An answer a client would accept: a trusted certificate and 200. undefined when it is; else why not. */
function refused(url: string, a: HttpAnswer): string | undefined {
    if (a.cert && !a.cert.trusted)
        return `the certificate of ${new URL(url).host} is not accepted: ${a.cert.problem} (it is for ${a.cert.names.join(", ") || "no name"})`;
    if (a.status !== 200) return `${url} answers ${a.status}`;
    return undefined;
}

/** Where a remote server sends federation traffic for serverName (Server-Server API, "Resolving server names"). */
export interface FederationRoute {
    readonly target: { host: string; port: number };
    /** The name the certificate must be valid for, and the Host header. */
    readonly certName: string;
    /** How it was found, in words. */
    readonly via: string;
}

/** What https://<serverName>/.well-known/matrix/server delegates to, as a remote server reads it; undefined for nothing usable. */
async function delegationOf(probe: Probe, serverName: string): Promise<string | undefined> {
    const url = `https://${serverName}/.well-known/matrix/server`;
    try {
        const a = await probe.get(url);
        const m = refused(url, a) ? undefined : json(a)?.["m.server"];
        return typeof m === "string" && m ? m : undefined;
    } catch {
        return undefined; // No well-known: the spec goes on with SRV.
    }
}

/**
 * The spec's resolution for a server name without an explicit port or IP literal. `delegation`:
 * the well-known's answer when the caller has already read it (checkService), else it is read here.
 */
export async function resolveFederation(
    probe: Probe,
    serverName: string,
    delegation: Promise<string | undefined> = delegationOf(probe, serverName),
): Promise<FederationRoute> {
    const delegated = await delegation;
    const name = delegated ?? serverName;
    const explicit = /^(.+):(\d+)$/.exec(name);
    if (explicit) return { target: { host: explicit[1], port: Number(explicit[2]) }, certName: explicit[1], via: `.well-known/matrix/server (${name})` };
    for (const srv of [`_matrix-fed._tcp.${name}`, `_matrix._tcp.${name}`]) {
        const answers = (await probe.srv(srv)).sort((x, y) => x.priority - y.priority || y.weight - x.weight);
        if (answers.length) {
            const a = answers[0];
            return {
                target: { host: a.target.replace(/\.$/, ""), port: a.port },
                certName: name,
                via: `${delegated ? `.well-known/matrix/server (${name}), then ` : ""}SRV ${srv}`,
            };
        }
    }
    return {
        target: { host: name, port: 8448 },
        certName: name,
        via: delegated ? `.well-known/matrix/server (${name})` : "no SRV record or well-known: port 8448",
    };
}

async function wellKnown(probe: Probe, e: Expected, kind: "client" | "server", expected: string | undefined): Promise<Verdict & { found?: string }> {
    const url = `https://${e.serverName}/.well-known/matrix/${kind}`;
    const level: Level = e.wellKnownOnServer ? "fail" : "warn";
    const where = e.wellKnownOnServer ? "this server's nginx (apexOnServer)" : `the website at https://${e.serverName}`;
    const field = kind === "client" ? "m.homeserver.base_url" : "m.server";
    const output = kind === "client" ? "wellKnownMatrixClient" : "wellKnownMatrixServer";
    const check = `well-known ${kind}`;
    let a: HttpAnswer;
    try {
        a = await probe.get(url);
    } catch (err) {
        return { check, level, detail: `${url}: ${errorText(err)}; ${where} should serve the stack output ${output}` };
    }
    const why = refused(url, a);
    if (why) return { check, level, detail: `${why}; ${where} should serve the stack output ${output}` };
    const body = json(a);
    const found = kind === "client" ? (body?.["m.homeserver"] as Record<string, unknown> | undefined)?.base_url : body?.["m.server"];
    if (typeof found !== "string") return { check, level, detail: `${url} has no ${field}; serve the stack output ${output} there` };
    if (expected !== undefined && found.replace(/\/$/, "") !== expected) {
        return { check, level: "fail", detail: `${url} says ${field} ${found}, expected ${expected}: serve the stack output ${output} there`, found };
    }
    if (kind === "client" && a.headers["access-control-allow-origin"] !== "*") {
        return { check, level: "warn", detail: `${url} lacks Access-Control-Allow-Origin: *, so web clients on other origins cannot read it`, found };
    }
    return { check, level: "ok", detail: `${url}: ${field} ${found}`, found };
}

/** Every check, in the order a newcomer's client and a remote server would meet them. */
export async function checkService(probe: Probe, e: Expected, now = new Date()): Promise<Verdict[]> {
    const out: Verdict[] = [];
    const minDays = e.minCertDays ?? 14;
    const certs: { where: string; validTo: Date }[] = [];
    const expectedHs = e.homeserverUrl?.replace(/\/$/, "");

    const { found: discoveredHs, ...client } = await wellKnown(probe, e, "client", expectedHs);
    out.push(client);
    // Read once: its answer is also where federation is delegated (resolveFederation below).
    const server = await wellKnown(probe, e, "server", e.federationTarget ? hostPort(e.federationTarget) : undefined);
    out.push({ check: server.check, level: server.level, detail: server.detail });

    // The client API, where clients are told it is (for another server: where its well-known says).
    const hs = expectedHs ?? discoveredHs?.replace(/\/$/, "") ?? `https://${e.serverName}`;
    const versionsUrl = `${hs}/_matrix/client/versions`;
    try {
        const a = await probe.get(versionsUrl);
        if (a.cert) certs.push({ where: new URL(hs).host, validTo: a.cert.validTo });
        const why = refused(versionsUrl, a);
        const versions = json(a)?.versions;
        out.push(
            why
                ? { check: "client API", level: "fail", detail: `${why}: clients cannot reach the homeserver` }
                : Array.isArray(versions)
                  ? { check: "client API", level: "ok", detail: `${versionsUrl}: ${versions.length} spec versions` }
                  : { check: "client API", level: "fail", detail: `${versionsUrl} is not a Matrix client API (no "versions"): nginx routes it elsewhere?` },
        );
    } catch (err) {
        out.push({ check: "client API", level: "fail", detail: `${versionsUrl}: ${errorText(err)}` });
    }

    // Element, pointing at this homeserver.
    if (e.webClientUrl) {
        const url = `${e.webClientUrl.replace(/\/$/, "")}/config.json`;
        try {
            const a = await probe.get(url);
            const why = refused(url, a);
            const server = (json(a)?.default_server_config as Record<string, Record<string, unknown>> | undefined)?.["m.homeserver"];
            out.push(
                why
                    ? { check: "Element", level: "fail", detail: why }
                    : server?.base_url !== expectedHs || server?.server_name !== e.serverName
                      ? {
                            check: "Element",
                            level: "fail",
                            detail: `${url} points at ${String(server?.base_url)} (${String(server?.server_name)}), expected ${expectedHs} (${e.serverName}): run pulumi up again to rewrite it`,
                        }
                      : { check: "Element", level: "ok", detail: `${url}: homeserver ${expectedHs}` },
            );
        } catch (err) {
            out.push({ check: "Element", level: "fail", detail: `${url}: ${errorText(err)}` });
        }
    }

    // The SRV record the program publishes: what a remote server falls back on when the
    // well-known cannot be read (and all it has when the apex is elsewhere and serves none).
    if (e.federationTarget) {
        const t = e.federationTarget;
        const name = `_matrix-fed._tcp.${e.serverName}`;
        try {
            const found = (await probe.srv(name)).map((a) => ({ host: a.target.replace(/\.$/, ""), port: a.port }));
            out.push(
                found.length === 0
                    ? { check: "SRV record", level: "fail", detail: `there is no SRV record ${name}: create it (the stack output dnsRecords lists it)` }
                    : found.some((f) => f.host !== t.host || f.port !== t.port)
                      ? {
                            check: "SRV record",
                            level: "fail",
                            detail: `the SRV record ${name} points at ${found.map(hostPort).join(", ")}, expected ${hostPort(t)}: fix the record (the stack output dnsRecords lists it)`,
                        }
                      : { check: "SRV record", level: "ok", detail: `${name} -> ${hostPort(t)}` },
            );
        } catch (err) {
            out.push({ check: "SRV record", level: "fail", detail: `${name}: ${errorText(err)}` });
        }
    }

    // Federation, resolved as a remote server does it.
    let route: FederationRoute | undefined;
    try {
        route = await resolveFederation(probe, e.serverName, Promise.resolve(server.found || undefined));
        const wrong = e.federationTarget && (route.target.host !== e.federationTarget.host || route.target.port !== e.federationTarget.port);
        out.push(
            wrong
                ? {
                      check: "federation route",
                      level: "fail",
                      detail: `${route.via} points at ${hostPort(route.target)}, expected ${hostPort(e.federationTarget!)}: fix the record (the stack output dnsRecords lists it)`,
                  }
                : { check: "federation route", level: "ok", detail: `${route.via} -> ${hostPort(route.target)}` },
        );
    } catch (err) {
        out.push({ check: "federation route", level: "fail", detail: `resolving ${e.serverName}: ${errorText(err)}` });
    }
    if (route) {
        const r = route;
        const keyUrl = `https://${r.certName}/_matrix/key/v2/server`;
        try {
            const a = await probe.get(keyUrl, r.target);
            if (a.cert) certs.push({ where: hostPort(r.target), validTo: a.cert.validTo });
            if (!a.cert) {
                out.push({ check: "federation TLS", level: "fail", detail: `${hostPort(r.target)} showed no TLS certificate` });
            } else if (!a.cert.trusted) {
                out.push({
                    check: "federation TLS",
                    level: "fail",
                    detail: `the certificate on ${hostPort(r.target)} is for ${a.cert.names.join(", ") || "no name"}, not accepted for ${r.certName}: ${a.cert.problem}; other servers refuse to federate`,
                });
            } else {
                out.push({ check: "federation TLS", level: "ok", detail: `${hostPort(r.target)} has a trusted certificate for ${r.certName}` });
            }
            out.push(serverKeys(a, keyUrl, e.serverName, now));
        } catch (err) {
            out.push({ check: "federation TLS", level: "fail", detail: `${hostPort(r.target)}: ${errorText(err)}: other servers cannot reach this one` });
        }
        if (e.synapseVersion) {
            const url = `https://${r.certName}/_matrix/federation/v1/version`;
            try {
                const a = await probe.get(url, r.target);
                const server = json(a)?.server as Record<string, unknown> | undefined;
                out.push(
                    a.status === 200 && server?.version === e.synapseVersion
                        ? { check: "Synapse version", level: "ok", detail: `${String(server.name)} ${e.synapseVersion}` }
                        : !server
                          ? { check: "Synapse version", level: "fail", detail: `${url} answers ${a.status}, without a server version` }
                          : {
                                check: "Synapse version",
                                level: "fail",
                                detail: `the server runs ${String(server?.name)} ${String(server?.version)} (HTTP ${a.status}), expected ${e.synapseVersion}: the synapse step did not restart it? (journalctl -u matrix-synapse)`,
                            },
                );
            } catch (err) {
                out.push({ check: "Synapse version", level: "fail", detail: `${url}: ${errorText(err)}` });
            }
        }
    }

    // The certificates met on the way.
    if (certs.length) {
        const soonest = certs.reduce((x, y) => (y.validTo < x.validTo ? y : x));
        const days = Math.floor((soonest.validTo.getTime() - now.getTime()) / DAY_MS);
        out.push(
            days >= minDays
                ? {
                      check: "certificate expiry",
                      level: "ok",
                      detail: `${soonest.where}'s certificate is valid until ${soonest.validTo.toISOString().slice(0, 10)}`,
                  }
                : {
                      check: "certificate expiry",
                      level: "fail",
                      detail: `${soonest.where}'s certificate expires ${soonest.validTo.toISOString().slice(0, 10)} (${days} days): renewal is failing, see journalctl -u certbot on the server`,
                  },
        );
    }
    return out;
}

/** The server's signing keys as a remote server reads them: its own name, in date, self-signed. */
function serverKeys(a: HttpAnswer, url: string, serverName: string, now: Date): Verdict {
    const check = "signing keys";
    const body = json(a);
    if (a.status !== 200 || !body) return { check, level: "fail", detail: `${url} answers ${a.status}, not a key answer: nginx routes it elsewhere?` };
    if (body.server_name !== serverName) {
        return { check, level: "fail", detail: `${url} is for server_name ${String(body.server_name)}, not ${serverName}: Synapse's server_name is wrong` };
    }
    const validUntil = Number(body.valid_until_ts);
    if (!(validUntil > now.getTime())) return { check, level: "fail", detail: `${url}: valid_until_ts ${validUntil} is in the past` };
    const keys = (body.verify_keys ?? {}) as Record<string, { key?: string }>;
    const good = Object.entries(keys).filter(([id, k]) => typeof k.key === "string" && verifySignature(body, serverName, id, k.key));
    if (!good.length) {
        return {
            check,
            level: "fail",
            detail: `${url}: no valid self-signature by any of ${Object.keys(keys).join(", ") || "no keys"}: the signing key does not match`,
        };
    }
    return { check, level: "ok", detail: `${serverName} signs with ${good.map(([id]) => id).join(", ")}` };
}

/** One line per verdict, for a person. */
export function formatVerdicts(verdicts: readonly Verdict[]): string[] {
    const mark = { ok: "ok  ", warn: "WARN", fail: "FAIL" } as const;
    return verdicts.map((v) => `${mark[v.level]} ${v.check}: ${v.detail}`);
}
