// How the checks see the network: DNS answers, HTTPS answers and the certificate each connection
// met. One interface, so that the verdicts can be tested on recorded answers and the same checks run
// from `pulumi up`, from `npm run check` and on the testbed (its own DNS server and CA).
import * as dns from "dns";
import * as https from "https";
import { isIP } from "net";
import * as tls from "tls";
import { sshStatusReader, sshUnitStates, type StatusSsh } from "./serverStatus";

export interface SrvAnswer {
    readonly target: string;
    readonly port: number;
    readonly priority: number;
    readonly weight: number;
}

/** The certificate a TLS connection met, and whether it is trusted for the name asked. */
export interface CertSeen {
    /** The chain leads to a trusted root and the certificate is valid for the name (SNI) asked. */
    readonly trusted: boolean;
    /** Why not, when not (e.g. "Hostname/IP does not match certificate's altnames: ..."). */
    readonly problem?: string;
    /** The names it is for (its DNS subjectAltNames). */
    readonly names: string[];
    /** When it expires. */
    readonly validTo: Date;
}

export interface HttpAnswer {
    readonly status: number;
    readonly headers: Record<string, string | string[] | undefined>;
    readonly body: string;
    readonly cert?: CertSeen;
}

export interface Probe {
    /** SRV answers for the name; [] when there is no such record (NXDOMAIN, NODATA). */
    srv(name: string): Promise<SrvAnswer[]>;
    /**
     * GET url; `connectTo` sends the request to another host:port than the URL's (federation: the
     * resolved target) while TLS still asks for the URL's host name and Host carries it.
     * Rejects when no HTTP answer came (DNS, TCP, TLS); a certificate that is not trusted is not an
     * error here: the answer carries it (cert.trusted false).
     */
    get(url: string, connectTo?: { host: string; port: number }): Promise<HttpAnswer>;
    /** A file on the server, read over SSH (undefined: it does not exist); absent: not read. */
    readServerFile?(ssh: StatusSsh, file: string): Promise<string | undefined>;
    /** What systemd says of each unit on the server (`systemctl is-active`), in order; absent: not asked. */
    unitStates?(ssh: StatusSsh, units: readonly string[]): Promise<string[]>;
}

export interface NetworkProbeOptions {
    /** DNS servers to ask instead of the system's resolver (e.g. ["1.1.1.1"], or the testbed's). */
    readonly dnsServers?: readonly string[];
    /** PEM certificates trusted in addition to Node's roots (a private CA, the testbed's). */
    readonly extraRoots?: readonly string[];
    readonly timeoutMs?: number;
}

function certSeen(socket: tls.TLSSocket, servername: string): CertSeen | undefined {
    const peer = socket.getPeerCertificate();
    if (!peer || !peer.valid_to) return undefined;
    const names = (peer.subjectaltname ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.startsWith("DNS:"))
        .map((s) => s.slice(4));
    const identity = tls.checkServerIdentity(servername, peer);
    const chain = socket.authorized ? undefined : String(socket.authorizationError ?? "not trusted");
    const problem = chain ?? identity?.message;
    return { trusted: !problem, problem, names, validTo: new Date(peer.valid_to) };
}

/** The real network, through the system's or the given DNS servers. */
export function networkProbe(opts: NetworkProbeOptions = {}): Probe {
    const timeout = opts.timeoutMs ?? 10_000;
    const resolver = new dns.promises.Resolver({ timeout: 3000, tries: 2 });
    if (opts.dnsServers?.length) resolver.setServers([...opts.dnsServers]);
    const ca = opts.extraRoots?.length ? [...tls.rootCertificates, ...opts.extraRoots] : undefined;
    const lookup: https.RequestOptions["lookup"] = (hostname, options, callback) => {
        const family = isIP(hostname);
        const cb = callback as (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;
        const answer = (addresses: string[], fam: number) =>
            options.all
                ? cb(
                      null,
                      addresses.map((address) => ({ address, family: fam })),
                  )
                : cb(null, addresses[0], fam);
        if (family) return answer([hostname], family);
        resolver.resolve4(hostname).then(
            (a) => (a.length ? answer(a, 4) : cb(Object.assign(new Error(`${hostname}: no A record`), { code: "ENOTFOUND" }), "")),
            (e: NodeJS.ErrnoException) => cb(e, ""),
        );
    };
    return {
        readServerFile: (ssh, file) => sshStatusReader(ssh)(file),
        unitStates: (ssh, units) => sshUnitStates(ssh)(units),
        async srv(name) {
            try {
                return (await resolver.resolveSrv(name)).map((r) => ({ target: r.name, port: r.port, priority: r.priority, weight: r.weight }));
            } catch (e) {
                const code = (e as NodeJS.ErrnoException).code;
                if (code === "ENOTFOUND" || code === "ENODATA") return [];
                throw e;
            }
        },
        get(url, connectTo) {
            const u = new URL(url);
            return new Promise((resolve, reject) => {
                const req = https.request(
                    {
                        host: connectTo?.host ?? u.hostname,
                        port: connectTo?.port ?? (u.port || 443),
                        path: u.pathname + u.search,
                        method: "GET",
                        headers: { Host: u.host, Accept: "application/json", "User-Agent": "phillymesh-chat-check" },
                        servername: u.hostname,
                        ca,
                        lookup,
                        // Trust is judged below, from what the connection met, so that the verdict can
                        // say what the certificate is for; nothing is sent but this GET.
                        rejectUnauthorized: false,
                        timeout,
                        agent: false,
                    },
                    (res) => {
                        const cert = certSeen(res.socket as tls.TLSSocket, u.hostname);
                        let body = "";
                        res.setEncoding("utf8");
                        res.on("data", (d: string) => {
                            if (body.length < 1_000_000) body += d;
                        });
                        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, cert }));
                        res.on("error", reject);
                    },
                );
                req.on("timeout", () =>
                    req.destroy(new Error(`no answer from ${connectTo ? `${connectTo.host}:${connectTo.port}` : u.host} within ${timeout} ms`)),
                );
                req.on("error", reject);
                req.end();
            });
        },
    };
}
