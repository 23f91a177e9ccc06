// A TCP forwarder that can be cut: the "package proxy goes away mid-install" of drill 8.
//
// It listens on the host side of the testbed bridge (10.250.0.1, a free port) and forwards every
// connection to the real PyPI proxy there. Toward the guest it speaks TLS with the PyPI proxy's own
// certificate for pypi.test (testbed/host.sh, from the testbed CA the guests trust), so a guest's
// pip reaches it as `https://pypi.test:PORT/simple/`, as any index (pipIndexUrl is https only);
// toward the proxy, on the host itself, plain HTTP (10.250.0.1:3141). It counts the bytes each way
// and, because it sees the decrypted traffic, notes the request lines the guest sends, so the bytes
// toward the guest can be put down to the file being fetched. `cut()` resets every open connection and stops listening: the download in flight breaks
// and every later connection is refused, as when the proxy's host drops off the network.
// `cutWhen` decides when, after each chunk toward the guest; the state at the cut is kept in
// `cutAt` (how many requests and bytes went through, and the file being fetched then), so a drill
// can prove the cut came mid-install and not before anything was fetched.
import { readFileSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { B } from "../../testbed/lib/paths.ts";

/** The testbed's plain-HTTP PyPI proxy (testbed/host.sh, testbed/pypi-proxy.py). */
export const PYPI_PROXY = { host: "10.250.0.1", port: 3141 };
/** The name and certificate the guests know the PyPI proxy by (testbed/host.sh: ensure_pypi). */
export const PYPI_TLS = { name: "pypi.test", cert: `${B}/pypi/tls/cert.pem`, key: `${B}/pypi/tls/key.pem` };

export interface ProxiedRequest {
    conn: number;
    method: string;
    path: string;
    /** Bytes toward the guest on this connection since this request was sent (headers included). */
    bytes: number;
}

export interface CutState {
    /** Connections accepted. */
    connections: number;
    bytesToGuest: number;
    bytesFromGuest: number;
    /** Every request line seen, in order. */
    requests: ProxiedRequest[];
}

export interface CutAt extends CutState {
    reason: string;
    /** The request whose answer was flowing when the cut came (undefined for a cut by hand between requests). */
    during?: ProxiedRequest;
    /** Connections open at the cut (they were reset). */
    open: number;
    time: Date;
}

export interface CutProxyOptions {
    /** Where to listen (default 10.250.0.1) and on which port (default: a free one). */
    host?: string;
    port?: number;
    target?: { host: string; port: number };
    /** Checked after each chunk forwarded toward the guest; true cuts. `req` is that chunk's request. */
    cutWhen?: (s: CutState, req: ProxiedRequest | undefined) => string | false;
    /** The name in the index URL and the certificate and key served for it (default PYPI_TLS). */
    tls?: { name: string; cert: string; key: string };
}

interface Conn {
    id: number;
    /** The guest's TCP connection (reset at a cut) and the TLS session on it (the plain bytes). */
    raw: Socket;
    guest: Socket;
    upstream: Socket;
    current?: ProxiedRequest;
    carry: string;
}

const REQUEST_LINE = /(GET|HEAD|POST|PUT|OPTIONS) (\S+) HTTP\/1\.[01]\r\n/g;

export class CutProxy {
    readonly host: string;
    port = 0;
    readonly state: CutState = { connections: 0, bytesToGuest: 0, bytesFromGuest: 0, requests: [] };
    cutAt?: CutAt;
    private readonly server: Server;
    private readonly conns = new Set<Conn>();
    private readonly opts: CutProxyOptions;
    private readonly tls: { name: string; cert: Buffer; key: Buffer };
    private closed?: Promise<void>;
    private cutListeners: ((c: CutAt) => void)[] = [];

    private constructor(opts: CutProxyOptions) {
        this.opts = opts;
        this.host = opts.host ?? "10.250.0.1";
        const t = opts.tls ?? PYPI_TLS;
        this.tls = { name: t.name, cert: readFileSync(t.cert), key: readFileSync(t.key) };
        this.server = createServer((guest) => this.accept(guest));
    }

    /** A forwarder listening (resolves once it is). */
    static async start(opts: CutProxyOptions = {}): Promise<CutProxy> {
        const p = new CutProxy(opts);
        await new Promise<void>((resolve, reject) => {
            p.server.once("error", reject);
            p.server.listen({ host: p.host, port: opts.port ?? 0, exclusive: true }, () => {
                p.server.off("error", reject);
                resolve();
            });
        });
        const addr = p.server.address();
        if (addr === null || typeof addr === "string") throw new Error("cutproxy: no port");
        p.port = addr.port;
        return p;
    }

    /** The index URL for pip on a guest. */
    get indexUrl(): string {
        return `https://${this.tls.name}:${this.port}/simple/`;
    }

    /** Resolves at the cut (never, if there is none). */
    whenCut(): Promise<CutAt> {
        return this.cutAt ? Promise.resolve(this.cutAt) : new Promise((resolve) => this.cutListeners.push(resolve));
    }

    private accept(raw: Socket): void {
        if (this.cutAt) {
            raw.resetAndDestroy();
            return;
        }
        const target = this.opts.target ?? PYPI_PROXY;
        const guest = new TLSSocket(raw, { isServer: true, cert: this.tls.cert, key: this.tls.key });
        const c: Conn = { id: ++this.state.connections, raw, guest, upstream: connect(target), carry: "" };
        this.conns.add(c);
        const { upstream } = c;
        raw.setNoDelay(true);
        upstream.setNoDelay(true);
        guest.on("data", (d: Buffer) => {
            this.state.bytesFromGuest += d.length;
            this.noteRequests(c, d);
            if (!upstream.write(d)) guest.pause();
        });
        upstream.on("drain", () => guest.resume());
        upstream.on("data", (d: Buffer) => {
            if (this.cutAt) return;
            this.state.bytesToGuest += d.length;
            if (c.current) c.current.bytes += d.length;
            if (!guest.write(d)) upstream.pause();
            const why = this.opts.cutWhen?.(this.state, c.current);
            if (why) this.cut(why, c.current);
        });
        guest.on("drain", () => upstream.resume());
        const done = () => {
            this.conns.delete(c);
            if (!guest.destroyed) guest.destroy();
            if (!raw.destroyed) raw.destroy();
            if (!upstream.destroyed) upstream.destroy();
        };
        raw.on("error", done);
        guest.on("error", done);
        upstream.on("error", done);
        guest.on("end", () => upstream.end());
        upstream.on("end", () => guest.end());
        guest.on("close", done);
        upstream.on("close", done);
    }

    /** Request lines in what the guest sent (a GET has no body; a line split over two chunks is caught by the carry). */
    private noteRequests(c: Conn, d: Buffer): void {
        const text = c.carry + d.toString("latin1");
        let end = 0;
        for (const m of text.matchAll(REQUEST_LINE)) {
            c.current = { conn: c.id, method: m[1], path: m[2], bytes: 0 };
            this.state.requests.push(c.current);
            end = m.index + m[0].length;
        }
        c.carry = text.slice(Math.max(end, text.length - 512));
    }

    /** Resets every open connection and stops listening: later connections are refused. */
    cut(reason = "cut by hand", during?: ProxiedRequest): CutAt {
        if (this.cutAt) return this.cutAt;
        this.cutAt = {
            reason,
            during: during ? { ...during } : undefined,
            open: this.conns.size,
            time: new Date(),
            connections: this.state.connections,
            bytesToGuest: this.state.bytesToGuest,
            bytesFromGuest: this.state.bytesFromGuest,
            requests: this.state.requests.map((r) => ({ ...r })),
        };
        this.closed = new Promise((resolve) => this.server.close(() => resolve()));
        for (const c of this.conns) {
            // A reset, not a clean close: pip sees the connection break in the middle of the body.
            c.raw.resetAndDestroy();
            c.guest.destroy();
            c.upstream.destroy();
        }
        this.conns.clear();
        for (const l of this.cutListeners) l(this.cutAt);
        this.cutListeners = [];
        return this.cutAt;
    }

    /** Stops listening and ends open connections (no cut recorded). */
    async close(): Promise<void> {
        if (!this.closed) this.closed = new Promise((resolve) => this.server.close(() => resolve()));
        for (const c of this.conns) {
            c.guest.destroy();
            c.raw.destroy();
            c.upstream.destroy();
        }
        this.conns.clear();
        await this.closed;
    }

    /** One line for a log: requests, bytes, and what was in flight at the cut. */
    summary(): string {
        const s = this.cutAt ?? this.state;
        const mb = (n: number) => `${(n / 1048576).toFixed(2)} MiB`;
        let line = `${s.connections} connections, ${s.requests.length} requests, ${mb(s.bytesToGuest)} toward the guest, ${s.bytesFromGuest} bytes from it`;
        if (this.cutAt) {
            const d = this.cutAt.during;
            line =
                `cut (${this.cutAt.reason}) after ${line}; ${this.cutAt.open} connections reset` +
                (d ? `; in flight: ${d.method} ${d.path} after ${mb(d.bytes)}` : "");
        }
        return line;
    }
}
