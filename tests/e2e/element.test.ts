// Element Web on server 0: what nginx serves (config, headers, caching), then a real headless
// Chromium loading it, so TLS and CORS are checked as a browser sees them.
// Run:  node --test --test-concurrency=1 --test-force-exit 'tests/e2e/*.test.ts'   (see README.md)
// Needs Debian's chromium and libnss3-tools (certutil): apt-get install -y chromium libnss3-tools
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { chromium } from "playwright-core";
import { closeTestbed, resolver, rootsPem, testbed, testbedFetch } from "./testbed.ts";

const server = testbed.servers[0];
const webUrl = server.webClientUrl.replace(/\/+$/, "");
const hsUrl = server.homeserverUrl.replace(/\/+$/, "");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOT = "/tmp/e2e-element.png";
const run = promisify(execFile);

interface ElementConfig {
    default_server_name?: string;
    default_server_config?: { "m.homeserver"?: { base_url?: string; server_name?: string } };
    room_directory?: { servers?: string[] };
    brand?: string;
}
let config: ElementConfig | undefined;

/** The headers nginx must send with Element's files (clickjacking, sniffing, HSTS, no stale config). */
function assertHeaders(res: Response, what: string): void {
    const h = (n: string) => res.headers.get(n) ?? "";
    assert.equal(h("x-frame-options").toUpperCase(), "SAMEORIGIN", `${what}: X-Frame-Options`);
    assert.equal(h("x-content-type-options").toLowerCase(), "nosniff", `${what}: X-Content-Type-Options`);
    assert.match(h("content-security-policy"), /(^|;)\s*frame-ancestors\s+'self'\s*(;|$)/, `${what}: Content-Security-Policy`);
    const hsts = /max-age=(\d+)/.exec(h("strict-transport-security"));
    assert.ok(hsts && Number(hsts[1]) > 0, `${what}: Strict-Transport-Security "${h("strict-transport-security")}"`);
    assert.match(h("cache-control"), /(^|,)\s*no-cache\s*(,|$)/, `${what}: Cache-Control "${h("cache-control")}"`);
}

void describe(`Element Web at ${webUrl}`, () => {
    after(closeTestbed);

    void test("index.html is served, with the security headers and not cacheable", async () => {
        const res = await testbedFetch(`${webUrl}/`);
        assert.equal(res.status, 200);
        assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
        assertHeaders(res, "index.html");
        const html = await res.text();
        assert.match(html, /id="hs-status"/);
        assert.match(html, /<script src="bundles\/[^"]+\/app\.js"/);
    });

    void test(`the release is ${server.elementVersion} (/version)`, async () => {
        const res = await testbedFetch(`${webUrl}/version`);
        assert.equal(res.status, 200);
        assert.equal((await res.text()).trim(), server.elementVersion);
    });

    void test(`config.json points at ${hsUrl} for ${server.domain}, with the headers and not cacheable`, async () => {
        const res = await testbedFetch(`${webUrl}/config.json`);
        assert.equal(res.status, 200);
        assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
        assertHeaders(res, "config.json");
        config = (await res.json()) as ElementConfig;
        const hs = config.default_server_config?.["m.homeserver"];
        assert.equal(hs?.base_url?.replace(/\/+$/, ""), hsUrl);
        assert.equal(hs?.server_name, server.domain);
        assert.ok(config.room_directory?.servers?.includes(server.domain), `room_directory.servers: ${JSON.stringify(config.room_directory)}`);
        assert.equal(config.default_server_name, undefined, "Element refuses default_server_name together with default_server_config");
    });

    void test(`headless Chromium opens ${webUrl}/ and the page reaches the homeserver (#hs-status ok:)`, async (t) => {
        assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium (or set CHROMIUM)`);
        const dir = await mkdtemp(join(tmpdir(), "e2e-chromium-"));
        const cleanup: (() => Promise<unknown>)[] = [() => rm(dir, { recursive: true, force: true })];
        t.after(async () => {
            for (const f of cleanup.reverse()) await f();
        });

        // Trust the testbed's ACME root(s) the way a user would: an NSS db in a private HOME.
        const nssdb = join(dir, "home", ".pki", "nssdb");
        await mkdir(nssdb, { recursive: true });
        await run("certutil", ["-d", `sql:${nssdb}`, "-N", "--empty-password"], { timeout: 10_000 }).catch((e: Error) =>
            assert.fail(`certutil (apt-get install -y libnss3-tools): ${e.message}`),
        );
        const pems = rootsPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
        const roots = pems.filter((p) => {
            const c = new X509Certificate(p);
            return c.subject === c.issuer && c.verify(c.publicKey);
        });
        assert.ok(roots.length, `no self-signed root in ${testbed.roots}`);
        for (const [i, pem] of roots.entries()) {
            const file = join(dir, `root${i}.pem`);
            await writeFile(file, pem);
            await run("certutil", ["-d", `sql:${nssdb}`, "-A", "-t", "C,,", "-n", `testbed-root-${i}`, "-i", file], { timeout: 10_000 });
        }

        // Names resolve only through the testbed DNS: hand Chromium the answers, and nothing else.
        const hosts = [...new Set([new URL(webUrl).hostname, new URL(hsUrl).hostname])];
        const maps = await Promise.all(hosts.map(async (h) => `MAP ${h} ${(await resolver.resolve4(h))[0]}`));
        const context = await chromium.launchPersistentContext(join(dir, "profile"), {
            executablePath: CHROMIUM,
            headless: true,
            env: { ...process.env, HOME: join(dir, "home") },
            // Generous: on a loaded 2-core machine Chromium's first start can take half a minute.
            timeout: 120_000,
            args: [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                `--host-resolver-rules=${[...maps, "MAP * ~NOTFOUND"].join(", ")}`,
            ],
        });
        cleanup.push(() => context.close());
        const page = context.pages()[0] ?? (await context.newPage());
        // Failed page requests fail the test; console errors are only reported (the stand-in has no
        // favicon.ico, which the browser asks for on its own).
        const failed: string[] = [];
        const consoleErrors: string[] = [];
        page.on("console", (m) => {
            if (m.type() === "error") consoleErrors.push(m.text());
        });
        page.on("requestfailed", (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`));
        page.on("response", (r) => {
            if (r.status() >= 400) failed.push(`${r.url()}: HTTP ${r.status()}`);
        });
        const problems = () => `failed requests: ${failed.join("; ") || "none"}; console errors: ${consoleErrors.join("; ") || "none"}`;

        const resp = await page.goto(`${webUrl}/`, { waitUntil: "load", timeout: 20_000 });
        assert.equal(resp?.status(), 200);
        const status = page.locator("#hs-status");
        await page
            .waitForFunction(() => /^(ok|error):/.test(document.querySelector("#hs-status")?.textContent ?? ""), null, { timeout: 20_000 })
            .catch(async () => assert.fail(`#hs-status stayed "${await status.textContent()}"; ${problems()}`));
        await page.screenshot({ path: SCREENSHOT, timeout: 10_000 });
        const text = (await status.textContent()) ?? "";
        assert.match(text, /^ok: /, `${text}; ${problems()}`);

        // What the browser got is what the homeserver says, and the brand came from config.json.
        const versions = ((await (await testbedFetch(`${hsUrl}/_matrix/client/versions`)).json()) as { versions: string[] }).versions;
        assert.equal(text, `ok: ${versions.join(" ")}`);
        if (config?.brand) assert.equal(await page.locator("#brand").textContent(), config.brand);
        assert.equal(await page.locator("#server-name").textContent(), server.domain);
        assert.deepEqual(failed, [], problems());
    });
});
