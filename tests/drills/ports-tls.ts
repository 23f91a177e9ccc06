// No one in from the network: drill 3 (only 22, 80, 443 and 8448 reachable; PostgreSQL and Synapse
// on loopback; no ssh password login) and drill 4 (TLS versions, ciphers, HSTS). Registered by
// drills.test.ts.
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import * as L from "./lib.ts";
import type { DrillSet } from "./harness.ts";

const SCAN_NS = "drillscan";
const SCAN_IP = "10.250.0.49";

export async function removeScanNetns(): Promise<void> {
    await L.run("ip", ["netns", "del", SCAN_NS], { timeoutMs: 10_000 });
    await L.run("ip", ["link", "del", `vh-${SCAN_NS}`], { timeoutMs: 10_000 });
}

interface Probe {
    ok: boolean;
    protocol?: string;
    cipher?: string;
    out: string;
}

async function sClient(port: number, servername: string, args: string[]): Promise<Probe> {
    const roots = `${L.WORK}/roots.pem`;
    const r = await L.run("openssl", ["s_client", "-connect", `${L.IP}:${port}`, "-servername", servername, "-CAfile", roots, ...args], { timeoutMs: 20_000 });
    const cipher = /Cipher is (\S+)/.exec(r.out)?.[1];
    const protocol = /New, (TLSv[\d.]+|SSLv\d), Cipher is/.exec(r.out)?.[1] ?? /^\s*Protocol\s*:\s*(\S+)/m.exec(r.out)?.[1];
    return { ok: r.code === 0 && !!cipher && cipher !== "(NONE)", protocol, cipher, out: r.out };
}

/** The host's openssl TLS 1.2-and-older ciphers for a cipher string (empty when it cannot offer any). */
async function localCiphers(spec: string): Promise<{ name: string; kx: string; mac: string }[]> {
    const r = await L.run("openssl", ["ciphers", "-v", spec], { timeoutMs: 10_000 });
    if (r.code !== 0) return [];
    return r.out
        .trim()
        .split("\n")
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => f[1] !== "TLSv1.3")
        .map((f) => ({
            name: f[0],
            kx: f.find((x) => x.startsWith("Kx="))?.slice(3) ?? "",
            mac: f.find((x) => x.startsWith("Mac="))?.slice(4) ?? "",
        }));
}

export function portsAndTls({ drill, check }: DrillSet): void {
    drill("3 ports: from another host only 22, 80, 443 and 8448 answer; PostgreSQL and Synapse on loopback only; no SSH password login", 10, async (t) => {
        const taken = readdirSync(L.B)
            .filter((d) => d.startsWith("run-"))
            .map((d) => {
                try {
                    return readFileSync(`${L.B}/${d}/ip`, "utf8").trim();
                } catch {
                    return "";
                }
            });
        assert.ok(!taken.includes(SCAN_IP), `${SCAN_IP} is taken by a guest`);
        await removeScanNetns();
        try {
            for (const args of [
                ["netns", "add", SCAN_NS],
                ["link", "add", `vh-${SCAN_NS}`, "type", "veth", "peer", "name", "eth0", "netns", SCAN_NS],
                ["link", "set", `vh-${SCAN_NS}`, "master", "brtest", "up"],
                ["-n", SCAN_NS, "link", "set", "lo", "up"],
                ["-n", SCAN_NS, "addr", "add", `${SCAN_IP}/24`, "dev", "eth0"],
                ["-n", SCAN_NS, "link", "set", "eth0", "up"],
            ]) {
                await L.runOk("ip", args, { timeoutMs: 10_000 });
            }
            const scan = await L.runOk(
                "ip",
                ["netns", "exec", SCAN_NS, process.execPath, `${L.REPO}/tests/drills/portscan.ts`, L.IP, "1", "10000", "400", "2000"],
                { timeoutMs: 180_000, label: "d3-portscan" },
            );
            const s = JSON.parse(scan.out.trim().split("\n").pop()!);
            L.note(
                `scan of ${L.IP} from ${SCAN_IP}: open ${JSON.stringify(s.open)}, filtered ${s.filtered.length}, closed ${s.closed}, errors ${JSON.stringify(s.errors)} in ${s.ms} ms`,
            );
            await check(t, "3a a TCP scan of ports 1-10000 from 10.250.0.49 finds exactly 22, 80, 443, 8448 open", () => {
                assert.deepEqual(s.open, [22, 80, 443, 8448]);
                assert.deepEqual(s.filtered, [], "ports that neither answered nor refused");
                assert.deepEqual(s.errors, {});
                assert.equal(s.closed, 10000 - 4);
            });
        } finally {
            await removeScanNetns();
        }

        const ss = await L.tsshOk("ss -Hltn");
        const listeners = ss
            .trim()
            .split("\n")
            .map((line) => {
                const local = line.trim().split(/\s+/)[3];
                const i = local.lastIndexOf(":");
                return { addr: local.slice(0, i), port: Number(local.slice(i + 1)) };
            });
        t.diagnostic(`listeners: ${listeners.map((l) => `${l.addr}:${l.port}`).join(" ")}`);
        const loopback = (a: string) => a === "127.0.0.1" || a === "[::1]" || /^127\./.test(a);
        await check(t, "3b on the server 5432 and 8008 listen on 127.0.0.1/::1 only; nothing else but 22/80/443/8448 beyond loopback", () => {
            for (const port of [5432, 8008]) {
                const on = listeners.filter((l) => l.port === port);
                assert.ok(on.length > 0, `nothing listens on ${port}`);
                assert.deepEqual(
                    on.filter((l) => !loopback(l.addr)),
                    [],
                    `${port} is bound beyond loopback`,
                );
            }
            assert.deepEqual(
                listeners.filter((l) => !loopback(l.addr) && ![22, 80, 443, 8448].includes(l.port)),
                [],
            );
        });
        await check(t, "3c the admin API is not served publicly (443 and 8448), nor through encoded, double-encoded or dot-segment paths", async () => {
            for (const base of [L.HS, L.FED]) {
                const r = await L.http(`${base}/_synapse/admin/v1/server_version`);
                assert.notEqual(r.status, 200, `${base}/_synapse/admin answers: ${r.text.slice(0, 200)}`);
                assert.ok(!/server_version/.test(r.text), `${base}/_synapse/admin serves the admin API`);
            }
            // nginx picks a location by the decoded, normalised path, Synapse routes on the raw one:
            // these reach nginx as written (curl --path-as-is), and none may reach an admin handler,
            // which answers 401 M_MISSING_TOKEN to a request without a token.
            const attacks = [
                "/_synapse/admin/v2/users/..%2F..%2F..%2F..%2F_matrix",
                "/_synapse/admin/v2/users/..%2f..%2f..%2f..%2f_matrix/client/versions",
                "/_synapse/admin/v2/users/..%252F..%252F..%252F..%252F_matrix",
                "/_synapse/admin/v1/users/..%2F..%2F..%2F..%2F_synapse/client/x",
                "/_matrix/../_synapse/admin/v1/server_version",
                "/_matrix/client/../../_synapse/admin/v1/server_version",
                "/_matrix/%2e%2e/_synapse/admin/v1/server_version",
                "/_synapse%2Fadmin/v1/server_version",
                "/_matrix/x/..%2F..%2F_synapse/admin/v2/users/..%2F..%2F..%2F..%2F_matrix",
            ];
            for (const [port, host] of [
                [443, `matrix.${L.DOMAIN}`],
                [8448, L.DOMAIN],
            ] as const) {
                for (const path of attacks) {
                    const url = `https://${host}:${port}${path}`;
                    // -k: the attacker does not care whose certificate it is; only the answer matters.
                    const r = await L.run(
                        "curl",
                        ["-sk", "--path-as-is", "--max-time", "10", "--resolve", `${host}:${port}:${L.IP}`, "-o", "-", "-w", "\n%{http_code}", url],
                        { timeoutMs: 20_000 },
                    );
                    const lines = r.out.trimEnd().split("\n");
                    const status = Number(lines.pop());
                    const body = lines.join("\n");
                    t.diagnostic(`${port} ${path} -> ${status}`);
                    assert.ok(status > 0, `${url}: no answer (${r.out.slice(0, 200)})`);
                    assert.ok(![200, 401, 403].includes(status), `${url} answers ${status}: ${body.slice(0, 200)}`);
                    assert.ok(!/M_MISSING_TOKEN|server_version/.test(body), `${url} reaches Synapse's admin API: ${body.slice(0, 200)}`);
                }
            }
        });
        await check(t, "3g port 8448 serves what other servers use (federation, keys, media) and not the client API", async () => {
            for (const [path, expected] of [
                ["/_matrix/federation/v1/version", 200],
                ["/_matrix/key/v2/server", 200],
                ["/_matrix/client/versions", 404],
                ["/_matrix/client/v3/login", 404],
                ["/_synapse/client/password_reset/email/submit_token", 404],
            ] as [string, number][]) {
                const r = await L.http(`${L.FED}${path}`);
                t.diagnostic(`8448 ${path} -> ${r.status}`);
                assert.equal(r.status, expected, `${L.FED}${path}: ${r.status} ${r.text.slice(0, 200)}`);
            }
            const client = await L.http(`${L.HS}/_matrix/client/versions`);
            assert.equal(client.status, 200, `the client API on 443: ${client.status}`);
        });
        await check(t, "3f an access token sent in the query string stays out of nginx's access log", async () => {
            const canary = `syt_drill_canary_${Date.now().toString(36)}`;
            const r = await L.http(`${L.HS}/_matrix/client/v3/account/whoami?access_token=${canary}`);
            assert.equal(r.status, 401, `whoami with a made-up token: ${r.status} ${r.text.slice(0, 200)}`);
            // nginx writes the line when the request ends; the path must be there, the token not.
            await L.waitFor(
                "the whoami request in nginx's access log",
                10_000,
                async () => (await L.tssh("grep -c 'GET /_matrix/client/v3/account/whoami' /var/log/nginx/access.log")).code === 0,
            );
            const found = await L.tssh(`grep -rlF ${L.shQuote(canary)} /var/log/nginx/`);
            assert.notEqual(found.code, 0, `the token is in ${found.out.trim()}`);
        });
        await check(t, "3d sshd: keys only, no forwarding, 3 tries (sshd -T), even with a later drop-in saying otherwise", async () => {
            const expected = [
                /^passwordauthentication no$/m,
                /^kbdinteractiveauthentication no$/m,
                /^permitrootlogin (without-password|prohibit-password)$/m,
                /^maxauthtries 3$/m,
                /^x11forwarding no$/m,
                /^allowagentforwarding no$/m,
                /^allowtcpforwarding no$/m,
                /^allowstreamlocalforwarding no$/m,
                /^permittunnel no$/m,
            ];
            const effective = await L.tsshOk("sshd -T");
            for (const re of expected) assert.match(effective, re);
            // What a cloud image's own drop-in may say (50-cloud-init.conf): sshd keeps the first value
            // it reads, and the program's drop-in is read first. (Written beside, checked, removed.)
            const planted = "/etc/ssh/sshd_config.d/50-cloud-init.conf";
            const had = (await L.tssh(`test -e ${planted}`)).code === 0;
            assert.ok(!had, `${planted} exists on the guest; the drill would overwrite it`);
            try {
                await L.tsshOk(`printf 'PasswordAuthentication yes\\nX11Forwarding yes\\nMaxAuthTries 10\\n' > ${planted}`);
                const withPlant = await L.tsshOk("sshd -T");
                for (const re of expected) assert.match(withPlant, re, `with ${planted} saying otherwise`);
            } finally {
                await L.tssh(`rm -f ${planted}`);
            }
            assert.equal((await L.tssh("test -e /etc/ssh/sshd_config.d/50-phillymesh-chat.conf")).code, 1, "the old drop-in name is still there");
        });
        await check(t, "3e an ssh login with a password is refused (the server offers publickey only)", async () => {
            const askpass = `${L.WORK}/askpass.sh`;
            writeFileSync(askpass, "#!/bin/sh\necho not-the-password-drill\n", { mode: 0o700 });
            for (const user of ["root", "debian"]) {
                const r = await L.run(
                    "ssh",
                    [
                        "-F",
                        "/dev/null",
                        "-v",
                        "-o",
                        "PreferredAuthentications=password,keyboard-interactive",
                        "-o",
                        "PubkeyAuthentication=no",
                        "-o",
                        "StrictHostKeyChecking=no",
                        "-o",
                        "UserKnownHostsFile=/dev/null",
                        "-o",
                        "NumberOfPasswordPrompts=1",
                        "-o",
                        "ConnectTimeout=5",
                        `${user}@${L.IP}`,
                        "true",
                    ],
                    { timeoutMs: 30_000, env: { ...L.CHILD_ENV, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: "drills:0" } },
                );
                assert.notEqual(r.code, 0, `ssh ${user}@${L.IP} with a password got in`);
                const methods = /Authentications that can continue: (\S+)/.exec(r.out)?.[1];
                assert.ok(methods, `no authentication methods seen for ${user}:\n${L.tail(r.out, 10)}`);
                assert.deepEqual(methods.split(","), ["publickey"], `${user}: the server offers ${methods}`);
                assert.match(r.out, /Permission denied \(publickey\)/);
            }
        });
    });

    drill("4 TLS: 1.0 and 1.1 refused, 1.2 and 1.3 accepted, only ECDHE + AEAD ciphers, HSTS max-age=63072000", 20, async (t) => {
        writeFileSync(
            `${L.WORK}/roots.pem`,
            [`${L.B}/pebble/roots.pem`, `${L.B}/pebble/roots-all.pem`]
                .filter(existsSync)
                .map((f) => readFileSync(f, "utf8"))
                .join("\n"),
            { mode: 0o600 },
        );
        const targets: [number, string][] = [
            [443, `matrix.${L.DOMAIN}`],
            [443, `chat.${L.DOMAIN}`],
            [443, L.DOMAIN],
            [8448, L.DOMAIN],
        ];
        const all = await localCiphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0");
        const weak: [string, string[]][] = [
            ["non-ECDHE key exchange", all.filter((c) => c.kx !== "ECDH").map((c) => c.name)],
            ["CBC and other non-AEAD", all.filter((c) => c.mac !== "AEAD").map((c) => c.name)],
            ["3DES", all.filter((c) => /DES-CBC3|3DES/.test(c.name)).map((c) => c.name)],
            ["RC4", all.filter((c) => /RC4/.test(c.name)).map((c) => c.name)],
            ["NULL / anonymous", all.filter((c) => /NULL|ADH|AECDH/.test(c.name)).map((c) => c.name)],
        ];
        for (const [cls, names] of weak) {
            t.diagnostic(
                names.length === 0
                    ? `this host's openssl cannot offer ${cls} ciphers; testssl.sh covers them`
                    : `${cls}: ${names.length} ciphers offered per probe`,
            );
        }
        const problems: string[] = [];
        const seen: string[] = [];
        for (const [port, sni] of targets) {
            for (const v of ["-tls1", "-tls1_1"]) {
                const p = await sClient(port, sni, [v, "-cipher", "DEFAULT@SECLEVEL=0"]);
                if (p.ok) problems.push(`${sni}:${port} accepts ${v} (${p.cipher})`);
                else if (!/alert protocol version|unsupported protocol|wrong version/i.test(p.out))
                    problems.push(`${sni}:${port} ${v}: refused, but not with a protocol_version alert: ${L.tail(p.out, 3)}`);
            }
            for (const v of ["-tls1_2", "-tls1_3"]) {
                const p = await sClient(port, sni, [v]);
                seen.push(`${sni}:${port} ${v} -> ${p.protocol ?? "?"} ${p.cipher ?? "?"}`);
                if (!p.ok || !/Verify return code: 0 \(ok\)/.test(p.out)) problems.push(`${sni}:${port} ${v} not accepted/verified: ${L.tail(p.out, 4)}`);
            }
            for (const [cls, names] of weak) {
                if (names.length === 0) continue;
                const p = await sClient(port, sni, ["-tls1_2", "-cipher", `${names.join(":")}:@SECLEVEL=0`]);
                if (p.ok) problems.push(`${sni}:${port} accepts ${cls}: ${p.cipher}`);
                // A refusal must come from the server (a handshake_failure alert), not from a client that could not offer them.
                else if (!/alert handshake failure/.test(p.out)) problems.push(`${sni}:${port} ${cls}: no server refusal seen: ${L.tail(p.out, 3)}`);
            }
            const tickets = await sClient(port, sni, ["-tls1_2"]);
            if (/TLS session ticket:/.test(tickets.out)) problems.push(`${sni}:${port} issues TLS 1.2 session tickets (ssl_session_tickets off)`);
        }
        for (const line of seen) t.diagnostic(line);
        await check(t, "4a openssl s_client probes of 443 (matrix., chat., apex) and 8448", () => assert.deepEqual(problems, []));

        await check(t, "4b HSTS max-age=63072000 on every HTTPS answer (matrix., chat., apex, 8448)", async () => {
            for (const url of [
                `${L.HS}/_matrix/client/versions`,
                `https://chat.${L.DOMAIN}/`,
                `https://${L.DOMAIN}/.well-known/matrix/client`,
                `${L.FED}/_matrix/key/v2/server`,
                `${L.HS}/no-such-page`,
            ]) {
                const r = await L.http(url);
                assert.equal(r.headers.get("strict-transport-security"), "max-age=63072000", `${url} (HTTP ${r.status})`);
            }
        });

        if (!existsSync("/usr/bin/testssl")) {
            L.note("testssl.sh is not installed: apt-get install testssl.sh");
            await L.run("apt-get", ["install", "-y", "-q", "-o", "DPkg::Lock::Timeout=120", "testssl.sh"], {
                timeoutMs: 300_000,
                label: "apt-install-testssl",
            });
        }
        if (!existsSync("/usr/bin/testssl")) {
            t.diagnostic("testssl.sh could not be installed: only the openssl probes ran");
            return;
        }
        await check(t, "4c testssl.sh: no SSLv2/3, TLS 1.0/1.1; TLS 1.2/1.3 offered; no NULL/aNULL/EXPORT/LOW/3DES/CBC; HSTS 730 days", async () => {
            const bad: string[] = [];
            for (const [port, host] of [
                [443, `matrix.${L.DOMAIN}`],
                [443, `chat.${L.DOMAIN}`],
                [8448, L.DOMAIN],
            ] as [number, string][]) {
                const json = `${L.WORK}/testssl-${host}-${port}.json`;
                rmSync(json, { force: true });
                await L.run(
                    "testssl",
                    [
                        "--quiet",
                        "--color",
                        "0",
                        "--warnings",
                        "off",
                        "--add-ca",
                        `${L.WORK}/roots.pem`,
                        "--ip",
                        L.IP,
                        "--nodns",
                        "none",
                        "-p",
                        "-s",
                        "-f",
                        "-h",
                        "--jsonfile",
                        json,
                        `https://${host}:${port}/`,
                    ],
                    { timeoutMs: 300_000, label: `d4-testssl-${host}-${port}` },
                );
                assert.ok(existsSync(json), `testssl.sh wrote no ${json}`);
                const findings = new Map(L.readJson<{ id: string; severity: string; finding: string }[]>(json).map((f) => [f.id, f]));
                const want = (id: string, re: RegExp) => {
                    const f = findings.get(id);
                    if (!f || !re.test(f.finding)) bad.push(`${host}:${port} ${id}: ${f ? f.finding : "missing"}`);
                };
                for (const id of ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]) want(id, /^not offered/);
                want("TLS1_2", /^offered/);
                want("TLS1_3", /^offered/);
                for (const id of ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"])
                    want(id, /^not offered/);
                want("cipherlist_STRONG", /^offered/);
                want("HSTS_time", /63072000/);
                const notable = [...findings.values()].filter((f) => ["MEDIUM", "HIGH", "CRITICAL"].includes(f.severity));
                t.diagnostic(`testssl ${host}:${port} MEDIUM+ findings: ${notable.map((f) => `${f.id}=${f.finding}`).join("; ") || "none"}`);
            }
            assert.deepEqual(bad, []);
        });
    });
}
