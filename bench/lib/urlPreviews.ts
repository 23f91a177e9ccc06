// The workload's link previews: a page served by the benchmark on the host, a message with a link
// to it, then `GET /_matrix/client/v1/media/preview_url` as Element does. The program blocks
// private ranges for previews, so on the testbed every one is refused (bench/README.md).
import * as http from "node:http";
import { call, MatrixError } from "./matrix.ts";
import type { Client } from "./usersAndRooms.ts";
import type { Workload, WorkloadResult } from "./workload.ts";

/** The page Synapse is asked to preview; counts its requests. */
export class PageServer {
    hits = 0;
    private srv?: http.Server;
    readonly host: string;
    readonly port: number;
    constructor(host: string, port: number) {
        this.host = host;
        this.port = port;
    }
    start(): Promise<void> {
        this.srv = http.createServer((req, res) => {
            this.hits++;
            res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
            res.end(
                `<!doctype html><html><head><title>Mesh install guide ${req.url}</title>` +
                    `<meta property="og:title" content="Mesh install guide"><meta property="og:description" content="How to mount a rooftop node.">` +
                    `</head><body><h1>Mesh install guide</h1><p>${"Lorem ipsum ".repeat(200)}</p></body></html>`,
            );
        });
        return new Promise((resolve, reject) => {
            this.srv!.once("error", reject);
            this.srv!.listen(this.port, this.host, () => resolve());
        });
    }
    url(i: number): string {
        return `http://${this.host}:${this.port}/guide-${i}.html`;
    }
    stop(): void {
        this.srv?.close();
    }
}

export class UrlPreviews {
    readonly result: WorkloadResult["urlPreviews"] = { requested: 0, outcomes: {}, pageServerHits: 0 };
    private readonly w: Workload;
    private readonly pages: PageServer;

    constructor(w: Workload, pages: PageServer) {
        this.w = w;
        this.pages = pages;
    }

    /** Preview k: c posts a link to the room and asks for its preview; the outcome is counted. */
    async send(k: number, c: Client, roomId: string): Promise<void> {
        const url = this.pages.url(k);
        this.result.requested++;
        try {
            await call(c.base, c.token, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b${this.w.seed}-link-${k}`, {
                msgtype: "m.text",
                body: `install guide: ${url}`,
            });
            // What Element does for a link in a message: ask the homeserver for a preview.
            const p = await call<Record<string, unknown>>(
                c.base,
                c.token,
                "GET",
                `/_matrix/client/v1/media/preview_url?url=${encodeURIComponent(url)}`,
                undefined,
                { timeoutMs: 30_000 },
            );
            this.result.outcomes["200"] = (this.result.outcomes["200"] ?? 0) + 1;
            this.result.example ??= JSON.stringify(p).slice(0, 300);
        } catch (e) {
            const key = e instanceof MatrixError ? `${e.status} ${e.errcode}` : "network error";
            this.result.outcomes[key] = (this.result.outcomes[key] ?? 0) + 1;
            this.result.example ??= String(e).slice(0, 300);
        }
    }
}
