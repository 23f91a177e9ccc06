// No one in through Synapse: drill 5 (URL previews never fetch private, loopback or link-local
// targets) and drill 6 (sign-up only with an admin-made registration token). Registered by
// drills.test.ts.
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import * as L from "./lib.ts";
import type { DrillSet } from "./harness.ts";

export function previewsAndSignup({ drill, check }: DrillSet): void {
    drill(
        "5 URL previews: private, loopback, link-local and IPv6-loopback targets are refused (also 10.250.0.0/24, despite the federation allowlist)",
        10,
        async (t) => {
            const regToken = await L.newRegistrationToken(1);
            const name = L.randomTag("d5");
            const reg = await L.register(name, `pw-${L.randomTag("")}-x`, regToken);
            assert.equal(reg.status, 200, reg.text);
            const s: L.Session = { userId: reg.json.user_id, token: reg.json.access_token };
            const hostLog = `${L.B}/log/element-http.log`;
            const logBefore = existsSync(hostLog) ? statSync(hostLog).size : 0;
            const hsYaml = await L.tsshOk("cat /etc/matrix-synapse/homeserver.yaml");
            t.diagnostic(
                `homeserver.yaml: ip_range_whitelist ${/ip_range_whitelist:\n((?:\s+- .*\n)+)/.exec(hsYaml)?.[1]?.replace(/\s+/g, " ") ?? "none"}; ` +
                    `url_preview_ip_range_whitelist ${/url_preview_ip_range_whitelist/.test(hsYaml) ? "set" : "not set"}`,
            );

            const targets = [
                "http://10.250.0.1:8090/", // the testbed host (its Element server answers): private, and inside federationIpAllowlist
                "http://127.0.0.1:8008/",
                "http://169.254.169.254/latest/meta-data/",
                "http://[::1]/",
                "http://0.0.0.0:8008/",
                "http://localhost:8008/",
                `http://${L.DOMAIN}/`, // a name that resolves to the server's own private address
                "http://2130706433:8008/", // 127.0.0.1 as one decimal number
            ];
            const seen: string[] = [];
            const previewed: string[] = [];
            for (const url of targets) {
                for (const path of ["/_matrix/media/v3/preview_url", "/_matrix/client/v1/media/preview_url"]) {
                    const r = await L.mx("GET", `${path}?url=${encodeURIComponent(url)}`, { token: s.token });
                    seen.push(`${url} ${path.includes("v3") ? "v3" : "v1"}: ${r.status} ${r.json?.error ?? r.text.slice(0, 80)}`);
                    if (r.status === 200) previewed.push(`${url} via ${path}: ${r.text.slice(0, 200)}`);
                }
            }
            for (const line of seen) t.diagnostic(line);
            await check(t, "5a no preview is made for any of them (each request is an error)", () => assert.deepEqual(previewed, []));
            await check(
                t,
                "5b 10.250.0.1 (in federationIpAllowlist) is refused by the preview blocklist itself: 'IP address blocked', no request reached it",
                () => {
                    for (const line of seen.filter((l) => l.startsWith("http://10.250.0.1:8090/"))) assert.match(line, /: 403 IP address blocked$/);
                    const log = existsSync(hostLog) ? readFileSync(hostLog).subarray(logBefore).toString() : "";
                    const hits = log.split("\n").filter((l) => l.startsWith(`${L.IP} `) && /"GET \/ /.test(l));
                    assert.deepEqual(hits, [], "the server fetched the preview target");
                },
            );
            await check(t, "5c loopback, link-local, 0.0.0.0 and names resolving to private addresses are blocked, not merely unreachable", async () => {
                for (const u of ["http://127.0.0.1:8008/", "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0:8008/"]) {
                    for (const line of seen.filter((l) => l.startsWith(`${u} `))) assert.match(line, /: 403 IP address blocked$/);
                }
                const log = await L.tsshOk(`grep -F 'from DNS resolution to' /var/log/matrix-synapse/homeserver.log | tail -n 50`);
                assert.match(log, new RegExp(`Blocked ${L.IP.replaceAll(".", "\\.")} from DNS resolution to ${L.DOMAIN.replaceAll(".", "\\.")}`));
                assert.match(log, /Blocked 127\.0\.0\.1 from DNS resolution to localhost/);
            });
        },
    );

    drill("6 registration: refused without a token or with a bad one; an admin-made token works; uses_allowed 1 admits exactly one", 10, async (t) => {
        const tag = L.randomTag("d6");
        const pw = `pw-${L.randomTag("")}-drill`;
        const exists = async (name: string) =>
            (await L.adminApi("GET", `/_synapse/admin/v2/users/${encodeURIComponent(`@${name}:${L.DOMAIN}`)}`)).status === 200;

        await check(t, "6a without a token: 401, every flow needs m.login.registration_token, dummy auth does not get in, no account", async () => {
            const r = await L.register(`${tag}-none`, pw);
            assert.equal(r.status, 401, r.text);
            assert.equal(r.json.access_token, undefined);
            const flows: { stages: string[] }[] = r.json.flows;
            assert.ok(flows.length > 0 && flows.every((f) => f.stages.includes("m.login.registration_token")), JSON.stringify(flows));
            const dummy = await L.mx("POST", "/_matrix/client/v3/register", {
                body: { username: `${tag}-none`, password: pw, auth: { type: "m.login.dummy", session: r.json.session } },
            });
            assert.notEqual(dummy.status, 200, dummy.text);
            assert.equal(dummy.json?.access_token, undefined);
            assert.equal(await exists(`${tag}-none`), false);
        });
        await check(t, "6b a made-up token is refused and reported invalid", async () => {
            const r = await L.register(`${tag}-bogus`, pw, "drill-not-a-token");
            assert.notEqual(r.status, 200, r.text);
            assert.equal(r.json?.access_token, undefined);
            const v = await L.mxOk("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=drill-not-a-token");
            assert.equal(v.valid, false);
            assert.equal(await exists(`${tag}-bogus`), false);
        });
        const token = await L.newRegistrationToken(1);
        await check(t, "6c an admin-API token with uses_allowed 1 registers one account, which can log in", async () => {
            const r = await L.register(`${tag}-first`, pw, token);
            assert.equal(r.status, 200, r.text);
            assert.match(r.json.access_token, /./);
            assert.equal((await L.login(`${tag}-first`, pw)).userId, `@${tag}-first:${L.DOMAIN}`);
        });
        await check(t, "6d the same token then admits no one: second registration refused, token reported used up", async () => {
            const r = await L.register(`${tag}-second`, pw, token);
            assert.notEqual(r.status, 200, r.text);
            assert.equal(r.json?.access_token, undefined);
            assert.equal(await exists(`${tag}-second`), false);
            const v = await L.mxOk("GET", `/_matrix/client/v1/register/m.login.registration_token/validity?token=${encodeURIComponent(token)}`);
            assert.equal(v.valid, false);
            const info = await L.adminApi("GET", `/_synapse/admin/v1/registration_tokens/${encodeURIComponent(token)}`);
            assert.equal(info.status, 200, info.text);
            assert.equal(info.json.uses_allowed, 1);
            assert.equal(info.json.completed, 1);
            assert.equal(info.json.pending, 0);
        });
        // Synapse hands out a guest account before it asks for a registration token: with guests
        // on (the runbook's choice) anyone gets in without a token, so they are off by default.
        await check(t, "6e no guest account without a token (allowGuestAccess is off by default)", async () => {
            const guest = await L.mx("POST", "/_matrix/client/v3/register?kind=guest", { body: {} });
            t.diagnostic(`guest registration: HTTP ${guest.status} ${guest.json?.errcode ?? guest.text.slice(0, 120)}`);
            assert.equal(guest.status, 403, guest.text);
            assert.equal(guest.json?.access_token, undefined);
        });
    });
}
