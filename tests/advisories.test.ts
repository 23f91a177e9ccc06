/**
 * files/lib/advisories.py, the daily advisory audit's reader, run by a real Python in a real
 * virtualenv against a feed served here over HTTP in PyPI's JSON API format (warehouse
 * docs/dev/api-reference/json.rst, "Known vulnerabilities"). Drill 18 runs it on a server, through
 * its unit, against the testbed's stand-in.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";

const SCRIPT = path.join(__dirname, "..", "files", "lib", "advisories.py");

let venv: string;
let pipVersion: string;

type Handler = (name: string, version: string) => { status: number; body?: unknown };

/** A PyPI JSON API on 127.0.0.1 that answers each release with `handler`; the requests it saw. */
async function feed(handler: Handler): Promise<{ url: string; seen: string[]; close: () => Promise<void> }> {
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
        seen.push(req.url ?? "");
        const m = /^\/pypi\/([^/]+)\/([^/]+)\/json$/.exec(req.url ?? "");
        const { status, body } = m ? handler(decodeURIComponent(m[1]), decodeURIComponent(m[2])) : { status: 404, body: {} };
        res.writeHead(status, { "Content-Type": "application/json" });
        res.end(JSON.stringify(body ?? {}));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}/pypi`, seen, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** advisories.py in the virtualenv, asynchronously (the feed answers from this process). */
function audit(url: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
        const child = spawn(path.join(venv, "bin", "python"), [SCRIPT, url], { stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
}

const advisory = (id: string, fixedIn: string[], withdrawn: string | null = null) => ({
    aliases: [`CVE-${id}`],
    details: "details",
    summary: "summary",
    fixed_in: fixedIn,
    id,
    link: `https://osv.dev/vulnerability/${id}`,
    source: "osv",
    withdrawn,
});

beforeAll(() => {
    venv = fs.mkdtempSync(path.join(os.tmpdir(), "advisories-venv-"));
    const made = spawnSync("python3", ["-m", "venv", venv], { encoding: "utf8" });
    expect(made.stderr).toBe("");
    pipVersion = spawnSync(path.join(venv, "bin", "python"), ["-c", "import importlib.metadata as m; print(m.version('pip'))"], {
        encoding: "utf8",
    }).stdout.trim();
    expect(pipVersion).toMatch(/^\d+\./);
}, 60_000);

afterAll(() => fs.rmSync(venv, { recursive: true, force: true }));

describe("advisories.py: the advisories in force against a virtualenv", () => {
    test("an advisory against an installed release is printed (name, version, id, fixed releases, link), exit 3; a withdrawn one is not", async () => {
        const f = await feed((name, version) =>
            name === "pip" && version === pipVersion
                ? {
                      status: 200,
                      body: { info: {}, vulnerabilities: [advisory("PYSEC-1", ["99.0", "98.1"]), advisory("PYSEC-2", ["99.0"], "2026-01-01T00:00:00Z")] },
                  }
                : { status: 200, body: { info: {}, vulnerabilities: [] } },
        );
        try {
            const r = await audit(f.url);
            expect(r.code).toBe(3);
            expect(r.stdout.trim().split("\n")).toEqual([`pip\t${pipVersion}\tPYSEC-1\t99.0,98.1\thttps://osv.dev/vulnerability/PYSEC-1`]);
            // Every installed distribution was asked for, by its canonical name and exact version.
            expect(f.seen).toContain(`/pypi/pip/${pipVersion}/json`);
            expect(r.stderr).toMatch(new RegExp(`checked ${f.seen.length} packages against ${f.url}`));
        } finally {
            await f.close();
        }
    });

    test("nothing in force: no output, exit 0", async () => {
        const f = await feed(() => ({ status: 200, body: { info: {}, vulnerabilities: [] } }));
        try {
            const r = await audit(f.url);
            expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: "" });
        } finally {
            await f.close();
        }
    });

    test("a release the feed does not know (404) is named and skipped", async () => {
        const f = await feed((name) => (name === "pip" ? { status: 404 } : { status: 200, body: { info: {}, vulnerabilities: [] } }));
        try {
            const r = await audit(f.url);
            expect(r.code).toBe(0);
            expect(r.stderr).toContain(`pip ${pipVersion}: not known to ${f.url}; not checked`);
        } finally {
            await f.close();
        }
    });

    test.each([
        ["a server error", { status: 500, body: {} }, /HTTP Error 500/],
        ["an answer without a vulnerabilities list (not a PyPI JSON API)", { status: 200, body: { hello: 1 } }, /no "vulnerabilities" list/],
    ])("%s: exit 1, naming the feed", async (_what, answer, why) => {
        const f = await feed(() => answer);
        try {
            const r = await audit(f.url);
            expect(r.code).toBe(1);
            expect(r.stderr).toContain(`the advisory feed ${f.url} could not be read`);
            expect(r.stderr).toMatch(why);
            expect(r.stdout).toBe("");
        } finally {
            await f.close();
        }
    });

    test("a feed that does not answer at all: exit 1, naming the feed", async () => {
        const f = await feed(() => ({ status: 200 }));
        await f.close();
        const r = await audit(f.url);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(`the advisory feed ${f.url} could not be read`);
    });
});
