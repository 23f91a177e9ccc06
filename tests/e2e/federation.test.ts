// Federation between server 0 and server 1: a user of server 1 joins a room of server 0 by its
// alias, messages go both ways; server 0's federation port answers by the server name.
// Run:  node --test --test-concurrency=1 --test-force-exit 'tests/e2e/*.test.ts'   (see README.md)
import assert from "node:assert/strict";
import { createPublicKey, randomBytes, verify, X509Certificate } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { request } from "node:https";
import { after, describe, test } from "node:test";
import type { DetailedPeerCertificate, TLSSocket } from "node:tls";
import { Preset } from "matrix-js-sdk";
import {
    adminSession,
    closeTestbed,
    createRegistrationToken,
    logoutAll,
    registerWithToken,
    resolver,
    rootsPem,
    runId,
    startSync,
    syncedBodies,
    testbed,
    testbedFetch,
    TIMEOUTS,
    waitFor,
    type Server,
    type Session,
} from "./testbed.ts";

const [home, remote] = testbed.servers;
const password = `pw-${runId}-${randomBytes(6).toString("hex")}`;
const alias = `#e2e-fed-${runId}:${home.domain}`;

let local: Session | undefined; // on home (server 0)
let visitor: Session | undefined; // on remote (server 1)
let roomId: string | undefined;

function need<T>(v: T | undefined, what: string): T {
    if (v === undefined) throw new Error(`needs ${what} from an earlier test, which failed`);
    return v;
}

interface TlsAnswer {
    status: number;
    headers: IncomingHttpHeaders;
    body: string;
    cert: DetailedPeerCertificate;
    authorized: boolean;
}

/**
 * GET over TLS to ip:port with the given SNI name (Host: the server name, as Synapse sends it), trusting only the testbed roots; rejects if the
 * certificate does not verify for that name (Node's default checks), bounded by TIMEOUTS.httpMs.
 */
function tlsGet(ip: string, port: number, name: string, path: string, host = name): Promise<TlsAnswer> {
    return new Promise((resolve, reject) => {
        const req = request(
            { host: ip, port, path, servername: name, headers: { Host: host }, ca: rootsPem, agent: false, timeout: TIMEOUTS.httpMs },
            (res) => {
                const socket = res.socket as TLSSocket;
                const cert = socket.getPeerCertificate(true);
                const authorized = socket.authorized;
                let body = "";
                res.setEncoding("utf8");
                res.on("data", (d: string) => (body += d));
                res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, cert, authorized }));
                res.on("error", reject);
            },
        );
        req.on("timeout", () => req.destroy(new Error(`https://${name}:${port}${path} (${ip}): no answer in ${TIMEOUTS.httpMs} ms`)));
        req.on("error", reject);
        req.end();
    });
}

/** Server discovery for a server name without delegation: SRV _matrix-fed._tcp → target's A record. */
async function viaSrv(server: Server): Promise<{ target: string; port: number; ip: string }> {
    const srv = (await resolver.resolveSrv(`_matrix-fed._tcp.${server.domain}`)).sort((a, b) => a.priority - b.priority || b.weight - a.weight);
    assert.ok(srv.length, `no SRV _matrix-fed._tcp.${server.domain}`);
    const target = srv[0].name.replace(/\.$/, "");
    const [ip] = await resolver.resolve4(target);
    return { target, port: srv[0].port, ip };
}

/** Matrix canonical JSON (sorted keys, no whitespace). */
function canonicalJson(v: unknown): string {
    if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
    if (v !== null && typeof v === "object") {
        const o = v as Record<string, unknown>;
        return `{${Object.keys(o)
            .sort()
            .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
            .join(",")}}`;
    }
    return JSON.stringify(v);
}

function verifyKeyResponse(keys: {
    server_name: string;
    verify_keys: Record<string, { key: string }>;
    signatures?: Record<string, Record<string, string>>;
}): number {
    const { signatures, ...signed } = keys as typeof keys & { unsigned?: unknown };
    delete (signed as { unsigned?: unknown }).unsigned;
    const message = Buffer.from(canonicalJson(signed));
    let good = 0;
    for (const [keyId, sig] of Object.entries(signatures?.[keys.server_name] ?? {})) {
        const pub = keys.verify_keys[keyId]?.key;
        assert.ok(pub, `signature by ${keyId}, which is not among verify_keys`);
        const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(pub, "base64").toString("base64url") }, format: "jwk" });
        assert.ok(verify(null, message, key, Buffer.from(sig, "base64")), `bad ed25519 signature by ${keyId}`);
        good++;
    }
    return good;
}

void describe(`federation ${home.domain} <-> ${remote.domain}`, () => {
    after(async () => {
        await logoutAll([local, visitor]);
        await closeTestbed();
    });

    void test(`a user registers on each server (tokens from each admin)`, async () => {
        const [homeAdmin, remoteAdmin] = await Promise.all([adminSession(home), adminSession(remote)]);
        const [homeToken, remoteToken] = await Promise.all([
            createRegistrationToken(home, homeAdmin.accessToken, 1),
            createRegistrationToken(remote, remoteAdmin.accessToken, 1),
        ]);
        [local, visitor] = await Promise.all([
            registerWithToken(home, `e2e${runId}p`, password, homeToken),
            registerWithToken(remote, `e2e${runId}n`, password, remoteToken),
        ]);
        assert.ok(local.userId.endsWith(`:${home.domain}`) && visitor.userId.endsWith(`:${remote.domain}`));
    });

    void test(`a ${remote.name} user joins a public ${home.name} room by its alias over federation`, async () => {
        const p = need(local, `the ${home.name} user`);
        const n = need(visitor, `the ${remote.name} user`);
        const created = await p.client.createRoom({
            name: `e2e federation ${runId}`,
            preset: Preset.PublicChat,
            room_alias_name: alias.slice(1, alias.indexOf(":")),
        });
        roomId = created.room_id;
        const joined = await n.client.joinRoom(alias);
        assert.equal(joined.roomId, roomId);
        const rid = roomId;
        await waitFor(`${home.name} to see ${n.userId} joined`, async () => Object.keys((await p.client.getJoinedRoomMembers(rid)).joined).includes(n.userId));
    });

    void test("messages flow both ways and both sides see both, in order", async () => {
        const p = need(local, `the ${home.name} user`);
        const n = need(visitor, `the ${remote.name} user`);
        const rid = need(roomId, "the federated room");
        await Promise.all([startSync(p.client), startSync(n.client)]);
        const there = `hello ${remote.domain}, from ${home.domain} (${runId})`;
        const back = `hello ${home.domain}, from ${remote.domain} (${runId})`;

        await p.client.sendTextMessage(rid, there);
        await waitFor(`${remote.name} to receive the message from ${home.name}`, () => syncedBodies(n.client, rid).includes(there));
        await n.client.sendTextMessage(rid, back);
        await waitFor(`${home.name} to receive the answer from ${remote.name}`, () => syncedBodies(p.client, rid).includes(back));
        await waitFor(`${remote.name} to have its own message back from sync`, () => syncedBodies(n.client, rid).includes(back));

        for (const s of [p, n]) {
            assert.deepEqual(
                syncedBodies(s.client, rid).filter((b) => b === there || b === back),
                [there, back],
                `as ${s.userId} sees it`,
            );
            const senders = s.client
                .getRoom(rid)!
                .getLiveTimeline()
                .getEvents()
                .filter((e) => e.getType() === "m.room.message")
                .map((e) => [e.getContent().body, e.getSender()]);
            assert.deepEqual(
                senders.filter(([b]) => b === there || b === back),
                [
                    [there, p.userId],
                    [back, n.userId],
                ],
            );
        }
        p.client.stopClient();
        n.client.stopClient();
    });

    void test(`${home.domain}'s key server on :8448, reached by the server name via SRV, has a certificate for ${home.domain}`, async () => {
        const { target, port, ip } = await viaSrv(home);
        assert.equal(target, new URL(home.homeserverUrl).hostname, "SRV target");
        const res = await tlsGet(ip, port, home.domain, "/_matrix/key/v2/server");
        assert.equal(res.authorized, true, "certificate chain does not verify against the testbed roots");
        const sans = (res.cert.subjectaltname ?? "").split(/,\s*/);
        assert.ok(sans.includes(`DNS:${home.domain}`), `subjectaltname ${res.cert.subjectaltname} lacks DNS:${home.domain}`);
        assert.equal(new X509Certificate(res.cert.raw).checkHost(home.domain), home.domain);
        assert.ok(new Date(res.cert.valid_to).getTime() > Date.now(), `certificate expired ${res.cert.valid_to}`);
        assert.equal(res.status, 200, res.body);
        const keys = JSON.parse(res.body) as Parameters<typeof verifyKeyResponse>[0] & { valid_until_ts: number };
        assert.equal(keys.server_name, home.domain);
        assert.ok(keys.valid_until_ts > Date.now(), "keys already expired");
        assert.ok(verifyKeyResponse(keys) >= 1, "no signature by the server's own key");
    });

    void test(`${home.domain}'s /.well-known/matrix/server delegation leads to the same key server`, async () => {
        const res = await testbedFetch(`https://${home.domain}/.well-known/matrix/server`);
        assert.equal(res.status, 200);
        const delegated = ((await res.json()) as { "m.server"?: string })["m.server"] ?? "";
        const { target, port } = await viaSrv(home);
        assert.equal(delegated, `${target}:${port}`, "well-known and SRV disagree");
        const [ip] = await resolver.resolve4(target);
        const keys = await tlsGet(ip, port, target, "/_matrix/key/v2/server", delegated);
        assert.equal(keys.authorized, true);
        assert.equal((JSON.parse(keys.body) as { server_name: string }).server_name, home.domain);
    });

    for (const server of testbed.servers) {
        void test(`${server.domain} runs Synapse ${server.synapseVersion} (federation version endpoint)`, async () => {
            const { port, ip } = await viaSrv(server);
            const res = await tlsGet(ip, port, server.domain, "/_matrix/federation/v1/version");
            assert.equal(res.status, 200, res.body);
            const v = (JSON.parse(res.body) as { server?: { name?: string; version?: string } }).server;
            assert.deepEqual({ name: v?.name, version: v?.version }, { name: "Synapse", version: server.synapseVersion });
        });
    }
});
