/**
 * The health checks' verdicts (components/health/checks.ts) on recorded answers: a server as the
 * program sets it up, and each thing an operator can get wrong (the SRV record, the certificate on
 * 8448, the well-known answers, Element's config, the signing key, the running version, a failing
 * renewal). The signing-key answer is a real one, recorded from a testbed Synapse
 * (tests/fixtures/key-v2-server.bench3.json), so the signature check runs on what Synapse signs.
 * The same checks run against the testbed's servers at the end of every `up` and in the e2e checks.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { checkService, Expected, resolveFederation, Verdict } from "../components/health/checks";
import { CertSeen, HttpAnswer, Probe, SrvAnswer } from "../components/health/probe";
import { canonicalJson, verifySignature } from "../components/health/signedJson";
import { statusVerdicts, workerVerdicts } from "../components/health/serverStatus";
import { BASE_CONFIG, runProgram, SECRETS, UNKNOWN } from "./harness";

const KEYS = JSON.parse(fs.readFileSync(path.join(__dirname, "fixtures", "key-v2-server.bench3.json"), "utf8")) as Record<string, unknown>;
const D = "bench3.test";
const M = `matrix.${D}`;
/** Before the recorded key answer's valid_until_ts. */
const NOW = new Date(Number(KEYS.valid_until_ts) - 3600_000);
const IN_90_DAYS = new Date(NOW.getTime() + 90 * 86400_000);

const cert = (names: string[], over: Partial<CertSeen> = {}): CertSeen => ({ trusted: true, names, validTo: IN_90_DAYS, ...over });
const GOOD_CERT = cert([D, M, `chat.${D}`]);
const ok = (body: unknown, c: CertSeen = GOOD_CERT, headers: Record<string, string> = {}): HttpAnswer => ({
    status: 200,
    headers,
    body: JSON.stringify(body),
    cert: c,
});

/** A server as the program sets it up (apex on the server: well-known served by its nginx). */
function goodServer(): { answers: Map<string, HttpAnswer | Error>; srv: Map<string, SrvAnswer[]> } {
    return {
        answers: new Map<string, HttpAnswer | Error>([
            [`https://${D}/.well-known/matrix/client`, ok({ "m.homeserver": { base_url: `https://${M}` } }, GOOD_CERT, { "access-control-allow-origin": "*" })],
            [`https://${D}/.well-known/matrix/server`, ok({ "m.server": `${M}:8448` })],
            [`https://${M}/_matrix/client/versions`, ok({ versions: ["v1.11", "v1.12"] })],
            [`https://chat.${D}/config.json`, ok({ default_server_config: { "m.homeserver": { base_url: `https://${M}`, server_name: D } } })],
            [`https://${M}/_matrix/key/v2/server via ${M}:8448`, ok(KEYS)],
            [`https://${M}/_matrix/federation/v1/version via ${M}:8448`, ok({ server: { name: "Synapse", version: "1.163.2" } })],
        ]),
        srv: new Map([[`_matrix-fed._tcp.${D}`, [{ target: `${M}.`, port: 8448, priority: 10, weight: 5 }]]]),
    };
}

function probeOf(s: ReturnType<typeof goodServer>): Probe & { asked: string[] } {
    const asked: string[] = [];
    return {
        asked,
        async srv(name) {
            asked.push(`SRV ${name}`);
            return s.srv.get(name) ?? [];
        },
        async get(url, connectTo) {
            const key = connectTo ? `${url} via ${connectTo.host}:${connectTo.port}` : url;
            asked.push(key);
            const a = s.answers.get(key);
            if (a instanceof Error) throw a;
            return a ?? { status: 404, headers: {}, body: '{"errcode":"M_UNRECOGNIZED"}' };
        },
    };
}

const EXPECTED: Expected = {
    serverName: D,
    homeserverUrl: `https://${M}`,
    webClientUrl: `https://chat.${D}`,
    federationTarget: { host: M, port: 8448 },
    synapseVersion: "1.163.2",
    wellKnownOnServer: true,
};

const byCheck = (vs: Verdict[]) => Object.fromEntries(vs.map((v) => [v.check, v]));
const failures = (vs: Verdict[]) => vs.filter((v) => v.level === "fail").map((v) => `${v.check}: ${v.detail}`);

/**
 * The server's key answer signed now with a throwaway key, valid for a day (the recorded one
 * expires; the checks in `up` read the clock). The signature is checked against the real
 * Synapse answer above.
 */
function freshKeys(): Record<string, unknown> {
    const { publicKey, privateKey } = crypto.generateKeyPairSync("ed25519");
    const raw = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
    const body = {
        old_verify_keys: {},
        server_name: D,
        valid_until_ts: Date.now() + 86400_000,
        verify_keys: { "ed25519:test": { key: raw.toString("base64").replace(/=+$/, "") } },
    };
    const sig = crypto
        .sign(null, Buffer.from(canonicalJson(body)), privateKey)
        .toString("base64")
        .replace(/=+$/, "");
    return { ...body, signatures: { [D]: { "ed25519:test": sig } } };
}

describe("signed JSON", () => {
    test("canonical JSON sorts keys at every level and drops whitespace", () => {
        expect(canonicalJson({ b: 1, a: { d: [1, { z: 0, y: "é" }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"y":"é","z":0}]},"b":1}');
    });

    test("Synapse's real self-signature verifies; one changed byte of the signed content or the key does not", () => {
        const [[keyId, { key }]] = Object.entries(KEYS.verify_keys as Record<string, { key: string }>);
        expect(verifySignature(KEYS, D, keyId, key)).toBe(true);
        expect(verifySignature({ ...KEYS, valid_until_ts: Number(KEYS.valid_until_ts) + 1 }, D, keyId, key)).toBe(false);
        expect(
            verifySignature(
                KEYS,
                D,
                keyId,
                key.replace(/^./, (c) => (c === "A" ? "B" : "A")),
            ),
        ).toBe(false);
        expect(verifySignature(KEYS, "other.test", keyId, key)).toBe(false);
    });
});

describe("the health checks' verdicts", () => {
    test("a server as the program sets it up: every check passes, and each says what it saw", async () => {
        const vs = await checkService(probeOf(goodServer()), EXPECTED, NOW);
        expect(failures(vs)).toEqual([]);
        expect(vs.map((v) => `${v.level} ${v.check}`)).toEqual([
            "ok well-known client",
            "ok well-known server",
            "ok client API",
            "ok Element",
            "ok SRV record",
            "ok federation route",
            "ok federation TLS",
            "ok signing keys",
            "ok Synapse version",
            "ok certificate expiry",
        ]);
        const v = byCheck(vs);
        expect(v["federation route"].detail).toBe(`.well-known/matrix/server (${M}:8448) -> ${M}:8448`);
        expect(v["signing keys"].detail).toMatch(/^bench3\.test signs with ed25519:/);
    });

    test("no well-known (the apex is the community's website): federation goes by SRV, and the certificate must then be valid for the server name", async () => {
        const s = goodServer();
        s.answers.delete(`https://${D}/.well-known/matrix/server`);
        s.answers.delete(`https://${D}/.well-known/matrix/client`);
        // Through SRV the Host and SNI are the server name itself.
        s.answers.set(
            `https://${D}/_matrix/key/v2/server via ${M}:8448`,
            ok(KEYS, cert([M, `chat.${D}`], { trusted: false, problem: `Hostname/IP does not match certificate's altnames: Host: ${D}.` })),
        );
        s.answers.set(`https://${D}/_matrix/federation/v1/version via ${M}:8448`, ok({ server: { name: "Synapse", version: "1.163.2" } }));
        const vs = byCheck(await checkService(probeOf(s), { ...EXPECTED, wellKnownOnServer: false }, NOW));
        expect(vs["well-known server"].level).toBe("warn");
        expect(vs["well-known client"].detail).toContain(`the website at https://${D} should serve the stack output wellKnownMatrixClient`);
        expect(vs["federation route"]).toEqual({ check: "federation route", level: "ok", detail: `SRV _matrix-fed._tcp.${D} -> ${M}:8448` });
        expect(vs["federation TLS"].level).toBe("fail");
        expect(vs["federation TLS"].detail).toContain(`the certificate on ${M}:8448 is for ${M}, chat.${D}, not accepted for ${D}`);
    });

    test("the SRV record points elsewhere: the verdict names the record, what it points at and what is expected", async () => {
        const s = goodServer();
        s.answers.delete(`https://${D}/.well-known/matrix/server`);
        s.srv.set(`_matrix-fed._tcp.${D}`, [{ target: "old-server.example.", port: 8448, priority: 10, weight: 5 }]);
        const vs = byCheck(await checkService(probeOf(s), { ...EXPECTED, wellKnownOnServer: false }, NOW));
        expect(vs["federation route"].level).toBe("fail");
        expect(vs["federation route"].detail).toBe(
            `SRV _matrix-fed._tcp.${D} points at old-server.example:8448, expected ${M}:8448: fix the record (the stack output dnsRecords lists it)`,
        );
    });

    test("with the well-known served, a wrong or missing SRV record still fails (the fallback of a server that cannot read the well-known)", async () => {
        const s = goodServer();
        s.srv.set(`_matrix-fed._tcp.${D}`, [{ target: `${M}.`, port: 443, priority: 10, weight: 5 }]);
        const wrong = byCheck(await checkService(probeOf(s), EXPECTED, NOW));
        expect(wrong["federation route"].level).toBe("ok");
        expect(wrong["SRV record"].detail).toBe(
            `the SRV record _matrix-fed._tcp.${D} points at ${M}:443, expected ${M}:8448: fix the record (the stack output dnsRecords lists it)`,
        );
        s.srv.delete(`_matrix-fed._tcp.${D}`);
        expect(byCheck(await checkService(probeOf(s), EXPECTED, NOW))["SRV record"].detail).toBe(
            `there is no SRV record _matrix-fed._tcp.${D}: create it (the stack output dnsRecords lists it)`,
        );
    });

    test("only the legacy SRV record: federation still resolves through it (as Synapse does)", async () => {
        const s = goodServer();
        s.answers.delete(`https://${D}/.well-known/matrix/server`);
        s.srv.set(`_matrix._tcp.${D}`, s.srv.get(`_matrix-fed._tcp.${D}`)!);
        s.srv.delete(`_matrix-fed._tcp.${D}`);
        const route = await resolveFederation(probeOf(s), D);
        expect(route).toEqual({ target: { host: M, port: 8448 }, certName: D, via: `SRV _matrix._tcp.${D}` });
    });

    test("a well-known served by this server with the wrong answer fails; a missing one on this server fails too", async () => {
        const s = goodServer();
        s.answers.set(`https://${D}/.well-known/matrix/server`, ok({ "m.server": `${M}:443` }));
        const wrong = byCheck(await checkService(probeOf(s), EXPECTED, NOW));
        expect(wrong["well-known server"].detail).toBe(
            `https://${D}/.well-known/matrix/server says m.server ${M}:443, expected ${M}:8448: serve the stack output wellKnownMatrixServer there`,
        );
        s.answers.delete(`https://${D}/.well-known/matrix/client`);
        const missing = byCheck(await checkService(probeOf(s), EXPECTED, NOW));
        expect(missing["well-known client"]).toEqual({
            check: "well-known client",
            level: "fail",
            detail: `https://${D}/.well-known/matrix/client answers 404; this server's nginx (apexOnServer) should serve the stack output wellKnownMatrixClient`,
        });
    });

    test("a well-known client answer without CORS is a warning (web clients on other origins cannot read it)", async () => {
        const s = goodServer();
        s.answers.set(`https://${D}/.well-known/matrix/client`, ok({ "m.homeserver": { base_url: `https://${M}` } }));
        expect(byCheck(await checkService(probeOf(s), EXPECTED, NOW))["well-known client"].level).toBe("warn");
    });

    test("Element pointing at another homeserver fails, naming both", async () => {
        const s = goodServer();
        s.answers.set(
            `https://chat.${D}/config.json`,
            ok({ default_server_config: { "m.homeserver": { base_url: "https://matrix-client.matrix.org", server_name: "matrix.org" } } }),
        );
        expect(byCheck(await checkService(probeOf(s), EXPECTED, NOW)).Element.detail).toBe(
            `https://chat.${D}/config.json points at https://matrix-client.matrix.org (matrix.org), expected https://${M} (${D}): run pulumi up again to rewrite it`,
        );
    });

    test("signing keys: another server's name, an answer past its valid_until_ts, a signature that does not verify: each fails", async () => {
        const cases: [Record<string, unknown>, Date, RegExp][] = [
            [{ ...KEYS, server_name: "other.test" }, NOW, /is for server_name other\.test, not bench3\.test/],
            [KEYS, new Date(Number(KEYS.valid_until_ts) + 1000), /valid_until_ts \d+ is in the past/],
            [{ ...KEYS, old_verify_keys: { "ed25519:x": { key: "AAAA", expired_ts: 1 } } }, NOW, /no valid self-signature by any of ed25519:/],
        ];
        for (const [answer, now, why] of cases) {
            const s = goodServer();
            s.answers.set(`https://${M}/_matrix/key/v2/server via ${M}:8448`, ok(answer));
            const v = byCheck(await checkService(probeOf(s), EXPECTED, now))["signing keys"];
            expect(v.level).toBe("fail");
            expect(v.detail).toMatch(why);
        }
    });

    test("a Synapse other than the configured release fails, naming both versions", async () => {
        const vs = byCheck(await checkService(probeOf(goodServer()), { ...EXPECTED, synapseVersion: "1.164.0" }, NOW));
        expect(vs["Synapse version"].detail).toMatch(/^the server runs Synapse 1\.163\.2 \(HTTP 200\), expected 1\.164\.0/);
    });

    test("a certificate within 14 days of expiry fails, pointing at certbot; 15 days out passes", async () => {
        for (const [days, level] of [
            [5, "fail"],
            [15, "ok"],
        ] as const) {
            const s = goodServer();
            const soon = cert([D, M, `chat.${D}`], { validTo: new Date(NOW.getTime() + days * 86400_000 + 60_000) });
            s.answers.set(`https://${M}/_matrix/key/v2/server via ${M}:8448`, ok(KEYS, soon));
            const v = byCheck(await checkService(probeOf(s), EXPECTED, NOW))["certificate expiry"];
            expect(v.level).toBe(level);
            if (level === "fail")
                expect(v.detail).toMatch(new RegExp(`^${M}:8448's certificate expires \\d{4}-\\d\\d-\\d\\d \\(5 days\\): renewal is failing`));
        }
    });

    test("a server that does not answer: the client API and federation fail with the network's error", async () => {
        const s = goodServer();
        s.answers.set(`https://${D}/_matrix/key/v2/server via ${M}:8448`, ok(KEYS));
        for (const k of s.answers.keys()) s.answers.set(k, new Error("connect ECONNREFUSED 10.0.0.1:443"));
        const vs = byCheck(await checkService(probeOf(s), EXPECTED, NOW));
        expect(vs["client API"].detail).toBe(`https://${M}/_matrix/client/versions: connect ECONNREFUSED 10.0.0.1:443`);
        expect(vs["federation TLS"].detail).toBe(`${M}:8448: connect ECONNREFUSED 10.0.0.1:443: other servers cannot reach this one`);
    });
});

describe("the health output: `up` checks its own work", () => {
    const answering = () => {
        const s = goodServer();
        s.answers.set(`https://${M}/_matrix/key/v2/server via ${M}:8448`, ok(freshKeys()));
        s.answers.set(`https://${D}/_matrix/key/v2/server via ${M}:8448`, ok(freshKeys()));
        return probeOf(s);
    };

    test("after an up where every check passes, `health` lists each verdict", async () => {
        const probe = answering();
        // The recorded key answer is bench3.test's: check a stack of that name (its real signature).
        const run = await runProgram({ ...BASE_CONFIG, domain: D, apexOnServer: "true", synapseVersion: "1.163.2" }, SECRETS, { probe: probe });
        expect(run.outputs.health).toEqual(expect.arrayContaining([`ok   federation route: .well-known/matrix/server (${M}:8448) -> ${M}:8448`]));
        expect((run.outputs.health as string[]).filter((l) => !l.startsWith("ok "))).toEqual([]);
    });

    test("a failed check fails the up (an error logged), naming the check, what is wrong and the fix; `health` keeps every verdict", async () => {
        const s = goodServer();
        s.answers.delete(`https://${D}/.well-known/matrix/server`);
        s.srv.set(`_matrix-fed._tcp.${D}`, [{ target: "old-server.example.", port: 8448, priority: 10, weight: 5 }]);
        const errors = jest.spyOn(pulumi.log, "error").mockImplementation(() => Promise.resolve());
        try {
            const run = await runProgram({ ...BASE_CONFIG, domain: D, apexOnServer: "false", synapseVersion: "1.163.2" }, SECRETS, { probe: probeOf(s) });
            expect(errors).toHaveBeenCalledTimes(1);
            const message = String(errors.mock.calls[0][0]);
            expect(message).toMatch(/^the service is up but \d+ health checks? failed, as its users and other servers see it:\n/);
            expect(message).toContain(`FAIL federation route: SRV _matrix-fed._tcp.${D} points at old-server.example:8448, expected ${M}:8448`);
            expect(message).toContain(`npm run check -- ${D}`);
            expect(run.outputs.health).toEqual(
                expect.arrayContaining([expect.stringMatching(/^FAIL federation route: /), expect.stringMatching(/^ok   client API: /)]),
            );
        } finally {
            errors.mockRestore();
        }
    });

    test("a preview checks nothing: `health` is unknown and nothing is asked", async () => {
        const probe = answering();
        const run = await runProgram({ ...BASE_CONFIG, domain: D }, SECRETS, { preview: true, probe });
        expect(run.outputs.health).toBe(UNKNOWN);
        expect(probe.asked).toEqual([]);
    });
});

describe("the server's own daily status in the health output", () => {
    const FILE = "/var/lib/phillymesh-chat/status.json";
    const status = (backupOk: boolean) =>
        JSON.stringify({
            checkedAt: "2026-12-01T18:00:00Z",
            ok: backupOk,
            checks: [
                { name: "certificate", ok: true, detail: "valid until Mar 1 2027 (90 days)" },
                {
                    name: "backup",
                    ok: backupOk,
                    detail: backupOk ? "newest backup 20261201T041500Z, 13 hours old" : "newest backup is 40 hours old (the limit is 36)",
                },
            ],
        });

    test("each daily check becomes a line; a failed one is a warning that says where to look; none yet, or a file that is not JSON, says so", () => {
        expect(statusVerdicts(status(false), FILE)).toEqual([
            { check: "server certificate", level: "ok", detail: "valid until Mar 1 2027 (90 days) (daily check of 2026-12-01T18:00:00Z)" },
            {
                check: "server backup",
                level: "warn",
                detail: "newest backup is 40 hours old (the limit is 36) (daily check of 2026-12-01T18:00:00Z; journalctl -u phillymesh-chat-status on the server)",
            },
        ]);
        expect(statusVerdicts(undefined, FILE)).toEqual([
            { check: "server status", level: "ok", detail: `the daily status check has not run yet (${FILE} appears after its first run)` },
        ]);
        expect(statusVerdicts("{oops", FILE)[0].level).toBe("warn");
    });

    test("after an up, health shows the server's status; a failed daily check or an unreadable file warns and does not fail the up", async () => {
        for (const [read, expected] of [
            [async () => status(false), /^WARN server backup: newest backup is 40 hours old/],
            [
                async () => {
                    throw new Error("ssh root@10.250.0.10 exited 255: Connection refused");
                },
                /^WARN server status: could not read \/var\/lib\/phillymesh-chat\/status\.json: ssh root@10\.250\.0\.10 exited 255/,
            ],
        ] as const) {
            const s = goodServer();
            s.answers.set(`https://${M}/_matrix/key/v2/server via ${M}:8448`, ok(freshKeys()));
            const asked: { host: string; user: string; sudo: boolean; file: string }[] = [];
            const probe: Probe = {
                ...probeOf(s),
                readServerFile: (ssh, file) => {
                    asked.push({ host: ssh.host, user: ssh.user, sudo: ssh.sudo, file });
                    return read();
                },
            };
            const errors = jest.spyOn(pulumi.log, "error").mockImplementation(() => Promise.resolve());
            try {
                const existing = { hosting: "existing", sshHost: "10.250.0.11", sshUser: "debian", dns: "none", acmeChallenge: "http", serverId: "test" };
                const run = await runProgram({ ...BASE_CONFIG, ...existing, domain: D, apexOnServer: "true", synapseVersion: "1.163.2" }, SECRETS, { probe });
                expect(errors).not.toHaveBeenCalled();
                expect(run.outputs.health).toEqual(expect.arrayContaining([expect.stringMatching(expected)]));
                // Over the steps' own connection: that host and user, through sudo for a user other than root.
                expect(asked).toEqual([{ host: "10.250.0.11", user: "debian", sudo: true, file: FILE }]);
                expect(JSON.stringify(run.outputs.health)).not.toContain("PRIVATE KEY");
            } finally {
                errors.mockRestore();
            }
        }
    });
});

describe("worker mode in the health output: Redis and each worker running", () => {
    const WORKERS = ["generic_worker1", "generic_worker2", "federation_sender1", "media_worker1"];
    const UNITS = ["redis-server.service", ...WORKERS.map((w) => `matrix-synapse-worker@${w}.service`)];

    test("every unit active: one ok line each; one not active fails, naming it, its state and what to run", async () => {
        const all = await workerVerdicts(async (units) => units.map(() => "active"), WORKERS);
        expect(all.map((v) => [v.check, v.level])).toEqual([
            ["Redis", "ok"],
            ["worker generic_worker1", "ok"],
            ["worker generic_worker2", "ok"],
            ["worker federation_sender1", "ok"],
            ["worker media_worker1", "ok"],
        ]);
        const some = await workerVerdicts(
            async (units) => units.map((u) => (u.includes("federation_sender1") ? "failed" : u.startsWith("redis") ? "inactive" : "active")),
            WORKERS,
        );
        expect(failures(some)).toEqual([
            "Redis: redis-server.service is inactive: the workers cannot reach the main process; on the server: systemctl status redis-server, journalctl -u redis-server, then systemctl restart redis-server",
            "worker federation_sender1: matrix-synapse-worker@federation_sender1.service is failed: its share of the service is down; on the server: systemctl status matrix-synapse-worker@federation_sender1, journalctl -u matrix-synapse-worker@federation_sender1, then systemctl restart matrix-synapse-worker@federation_sender1",
        ]);
        const unread = await workerVerdicts(async () => {
            throw new Error("ssh root@10.250.0.77 exited 255: Connection refused");
        }, WORKERS);
        expect(unread).toEqual([
            { check: "workers", level: "warn", detail: "could not ask systemd on the server: ssh root@10.250.0.77 exited 255: Connection refused" },
        ]);
    });

    /** An up of a stack with `config`, its probe answering well and systemd answering `state(unit)`; what systemd was asked. */
    async function upWith(config: Record<string, string>, state: (unit: string) => string) {
        const s = goodServer();
        s.answers.set(`https://${M}/_matrix/key/v2/server via ${M}:8448`, ok(freshKeys()));
        const asked: { host: string; units: readonly string[] }[] = [];
        const probe: Probe = {
            ...probeOf(s),
            readServerFile: async () => undefined,
            unitStates: async (ssh, units) => {
                asked.push({ host: ssh.host, units });
                return units.map(state);
            },
        };
        const errors = jest.spyOn(pulumi.log, "error").mockImplementation(() => Promise.resolve());
        try {
            const run = await runProgram({ ...BASE_CONFIG, domain: D, apexOnServer: "true", synapseVersion: "1.163.2", ...config }, SECRETS, { probe });
            return { health: run.outputs.health as string[], asked, errors: errors.mock.calls.map((c) => String(c[0])) };
        } finally {
            errors.mockRestore();
        }
    }
    const WORKERS_ON = { synapseWorkers: "2", postgresMaxConnections: "24" };

    test("after an up in worker mode, health asks systemd of Redis and each worker and lists them", async () => {
        const r = await upWith(WORKERS_ON, () => "active");
        expect(r.asked.map((a) => a.units)).toEqual([UNITS]);
        expect(r.errors).toEqual([]);
        expect(r.health).toEqual(
            expect.arrayContaining([
                "ok   Redis: redis-server.service is active",
                "ok   worker media_worker1: matrix-synapse-worker@media_worker1.service is active",
            ]),
        );
        expect(r.health.filter((l) => !l.startsWith("ok "))).toEqual([]);
    });

    test("a worker that stopped fails the up, naming it", async () => {
        const r = await upWith(WORKERS_ON, (u) => (u === "matrix-synapse-worker@generic_worker2.service" ? "inactive" : "active"));
        expect(r.errors).toHaveLength(1);
        expect(r.errors[0]).toMatch(/^the service is up but 1 health check failed/);
        expect(r.errors[0]).toContain("FAIL worker generic_worker2: matrix-synapse-worker@generic_worker2.service is inactive");
    });

    test("without workers systemd is not asked, and the health output is what it was", async () => {
        const r = await upWith({}, () => "active");
        expect(r.asked).toEqual([]);
        expect(r.health.some((l) => /Redis|worker/.test(l))).toBe(false);
    });
});
