// nginx in worker mode: every endpoint Synapse's docs/workers.md lists (tests/fixtures, verbatim)
// reaches the process the docs say, asked of the real nginx running the rendered map; the whole
// rendered configuration passes `nginx -t`.
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { mapSource, readConfig } from "../components/config";
import { webSettings } from "../components/chatService";
import { nginxFiles } from "../components/webServer";
import { workerLayout } from "../components/workerLayout";
import { Upstream, WORKER_ROUTES, upstreamName, workerRouting } from "../components/workerRoutes";
import { BASE_CONFIG, SECRETS } from "./harness";
import { NGINX, nginxSyntaxCheck } from "./nginxCheck";

const nginx = NGINX;
const WORKERS_ON = { ...BASE_CONFIG, synapseWorkers: "2", postgresMaxConnections: "24" };

/** The docs' lists: [section | sentence above, entry]. */
const documented: [string, string][] = (() => {
    let section = "";
    const out: [string, string][] = [];
    for (const line of fs.readFileSync(path.join(__dirname, "fixtures", "synapse-worker-endpoints.txt"), "utf8").split("\n")) {
        if (line.startsWith("## ")) section = line.slice(3);
        else if (line && !line.startsWith("#")) out.push([section, line]);
    }
    return out;
})();

/** A request path the documented pattern matches (first alternative of each group, a value for each wildcard). */
function sample(pattern: string): string {
    let p = pattern.replace(/^\^/, "");
    p = p.replace("(/.*/restart)?", "").replace("(/|$)", "");
    p = p.replace(/\(([^()|]+)(\|[^()]*)?\)/g, "$1");
    p = p
        .replace(/\.\*/g, "!abc:example.org")
        .replace(/\[\^\/\]\+/g, "x")
        .replace(/\$$/, "");
    return p.startsWith("/") ? p : `/${p}`;
}

type Expectation = { method: string; upstream: Upstream | "not exposed" }[];

/** What the docs ask for each list, on this server (the main process writes every stream; no SSO). */
function expected(section: string, entry: string): Expectation {
    const deviceLists = WORKER_ROUTES.filter((r) => r.upstream === "main").some((r) => r.pattern === entry);
    if (section.includes("Admin API") || (entry.startsWith("^/_synapse/admin/") && !section.includes("Sync")))
        return [{ method: "GET", upstream: "not exposed" }];
    if (deviceLists) return [{ method: "POST", upstream: "main" }];
    if (section.startsWith("`synapse.app.media_repository`")) return [{ method: "GET", upstream: "media" }];
    if (/Sync requests/.test(section)) return [{ method: "GET", upstream: "sync" }];
    if (/Inbound federation transaction/.test(section)) return [{ method: "PUT", upstream: "federation_inbound" }];
    if (/for the room are in flight/.test(section)) return [{ method: "GET", upstream: "room" }];
    if (/Push rules|Account data|Presence requests/.test(section)) {
        return [
            { method: "GET", upstream: "generic" },
            { method: "PUT", upstream: "main" },
        ];
    }
    if (/SSO|OpenID|SAML|CAS/.test(section)) return [{ method: "GET", upstream: "main" }];
    if (/^The `(typing|to_device|receipts)` stream/.test(section)) return [{ method: "PUT", upstream: "main" }];
    if (/^The `(account_data|presence|push_rules)` stream/.test(section)) return [{ method: "PUT", upstream: "main" }];
    if (/^The `device_lists` stream/.test(section)) return [{ method: "POST", upstream: "main" }];
    return [{ method: "POST", upstream: "generic" }];
}

async function freePort(): Promise<number> {
    return new Promise((resolve) => {
        const s = net.createServer().listen(0, "127.0.0.1", () => {
            const port = (s.address() as net.AddressInfo).port;
            s.close(() => resolve(port));
        });
    });
}

function ask(port: number, method: string, p: string): Promise<string> {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, method, path: p }, (res) => {
            let body = "";
            res.on("data", (d) => (body += d));
            res.on("end", () => resolve(body));
        });
        req.on("error", reject);
        req.end();
    });
}

describe("worker routing, asked of the real nginx", () => {
    let dir: string;
    let port: number;
    let proc: ChildProcess;

    beforeAll(async () => {
        expect(nginx).toBeDefined();
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "nginx-routes-"));
        port = await freePort();
        fs.writeFileSync(path.join(dir, "workers.conf"), workerRouting(workerLayout(2)));
        // The rendered map and upstreams, and a server that answers with the upstream it picked.
        fs.writeFileSync(
            path.join(dir, "nginx.conf"),
            [
                "daemon off;",
                "master_process off;",
                `pid ${dir}/nginx.pid;`,
                `error_log ${dir}/error.log;`,
                "events {}",
                "http {",
                "  access_log off;",
                ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `  ${t}_temp_path ${dir}/${t};`),
                `  include ${dir}/workers.conf;`,
                `  server { listen 127.0.0.1:${port}; location / { return 200 "$phillymesh_chat_synapse"; } }`,
                "}",
            ].join("\n"),
        );
        proc = spawn(nginx!, ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", path.join(dir, "error.log")], { stdio: "ignore" });
        for (let i = 0; i < 100; i++) {
            if (
                await ask(port, "GET", "/").then(
                    () => true,
                    () => false,
                )
            )
                return;
            await new Promise((r) => setTimeout(r, 50));
        }
        throw new Error(`nginx did not start: ${fs.readFileSync(path.join(dir, "error.log"), "utf8")}`);
    });

    afterAll(() => {
        proc?.kill();
        fs.rmSync(dir, { recursive: true, force: true });
    });

    test("the fixture is the docs' whole set of lists", () => {
        expect(documented.length).toBe(114);
        expect(new Set(documented.map(([s]) => s.split(" | ")[0])).size).toBeGreaterThan(10);
    });

    test("every routed pattern is one of the docs' entries, verbatim", () => {
        const entries = new Set(documented.map(([, e]) => (e.startsWith("^") ? e : `^${e}`)));
        for (const r of WORKER_ROUTES) expect([r.pattern, entries.has(r.pattern)]).toEqual([r.pattern, true]);
    });

    test("every documented endpoint reaches the process the docs name", async () => {
        const wrong: string[] = [];
        for (const [section, entry] of documented) {
            for (const { method, upstream } of expected(section, entry)) {
                const p = sample(entry.startsWith("^") ? entry : `^${entry}`);
                const got = await ask(port, method, p);
                // Not exposed: the homeserver site 404s the admin API before routing; routing leaves it to main.
                const want = upstream === "not exposed" ? upstreamName("main") : upstreamName(upstream);
                if (got !== want) wrong.push(`${method} ${p} (${entry}, ${section}): ${got}, expected ${want}`);
            }
        }
        expect(wrong).toEqual([]);
    });

    test("what no list names stays on the main process", async () => {
        for (const p of [
            "/_matrix/key/v2/server",
            "/_matrix/client/v3/rooms/!r:x/typing/@u:x",
            "/_matrix/client/v3/sendToDevice/m.x/1",
            "/_matrix/client/v3/rooms/!r:x/receipt/m.read/$e",
        ]) {
            expect([p, await ask(port, "PUT", p)]).toEqual([p, upstreamName("main")]);
        }
    });
});

test("nginx -t accepts the whole rendered configuration in worker mode", () => {
    const cfg = readConfig(mapSource({ ...WORKERS_ON, dns: "none", acmeChallenge: "http", apexOnServer: "true" }, SECRETS));
    const files = nginxFiles(webSettings(cfg));
    expect(Object.keys(files)).toContain("conf.d/phillymesh-chat-workers.conf");
    expect(files["sites-available/phillymesh-chat-matrix.conf"]).toContain("proxy_pass http://$phillymesh_chat_synapse;");
    const r = nginxSyntaxCheck(files, cfg.domain);
    expect(r.stderr).toContain("syntax is ok");
    expect(r.status).toBe(0);
});
