// Client-server API of server 0 through nginx + TLS, as a Matrix client sees it: login,
// token-only registration, a room with messages synced by a second user, media, discovery.
// Run:  node --test --test-concurrency=1 --test-force-exit 'tests/e2e/*.test.ts'   (see README.md)
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, describe, test } from "node:test";
import { MatrixError, Preset } from "matrix-js-sdk";
import {
    adminApi,
    closeTestbed,
    createRegistrationToken,
    DUMMY_STAGE,
    login,
    logoutAll,
    makeClient,
    registerWithToken,
    registrationChallenge,
    resolver,
    runId,
    startSync,
    syncedBodies,
    testbed,
    testbedFetch,
    TOKEN_STAGE,
    userId,
    waitFor,
    type Session,
} from "./testbed.ts";

const server = testbed.servers[0];
const matrixHost = new URL(server.homeserverUrl).hostname;
const password = `pw-${runId}-${randomBytes(6).toString("hex")}`;

let admin: Session | undefined;
let token: string | undefined;
let alice: Session | undefined;
let bob: Session | undefined;
let roomId: string | undefined;

function need<T>(v: T | undefined, what: string): T {
    if (v === undefined) throw new Error(`needs ${what} from an earlier test, which failed`);
    return v;
}

/** A /register attempt that must be refused: returns the 401's body. */
async function refusedRegistration(data: Parameters<Session["client"]["registerRequest"]>[0]): Promise<MatrixError> {
    try {
        const r = await makeClient(server).registerRequest(data);
        assert.fail(`registration of ${data.username} was accepted (${r.user_id})`);
    } catch (e) {
        if (e instanceof MatrixError) return e;
        throw e;
    }
}

void describe(`client API of ${server.name} (${server.homeserverUrl})`, () => {
    after(async () => {
        await logoutAll([alice, bob, admin]);
        await closeTestbed();
    });

    void test("the admin logs in with the password", async () => {
        admin = await login(server, server.adminUser, server.adminPassword);
        assert.equal(admin.userId, userId(server, server.adminUser));
        const who = await admin.client.whoami();
        assert.equal(who.user_id, admin.userId);
    });

    void test("the admin creates a registration token via the admin API (localhost:8008 over ssh)", async () => {
        const a = need(admin, "the admin session");
        token = await createRegistrationToken(server, a.accessToken, 2);
        const info = await adminApi<{ token: string; completed: number; uses_allowed: number }>(
            server,
            a.accessToken,
            "GET",
            `/_synapse/admin/v1/registration_tokens/${encodeURIComponent(token)}`,
        );
        assert.deepEqual([info.token, info.uses_allowed, info.completed], [token, 2, 0]);
    });

    void test("registration without a valid token is refused", async () => {
        const username = `e2e${runId}x`;
        const uia = await registrationChallenge(makeClient(server), username, password);
        assert.ok(uia.flows?.length, `no UIA flows offered: ${JSON.stringify(uia)}`);
        for (const f of uia.flows ?? []) assert.ok(f.stages.includes(TOKEN_STAGE), `flow without a token: ${f.stages.join(",")}`);

        const dummy = await refusedRegistration({ username, password, auth: { type: DUMMY_STAGE, session: uia.session } });
        assert.equal(dummy.httpStatus, 401, `dummy auth: ${dummy.message}`);

        const bogus = await refusedRegistration({ username, password, auth: { type: TOKEN_STAGE, token: `not-${runId}`, session: uia.session } });
        assert.equal(bogus.httpStatus, 401, `bogus token: ${bogus.message}`);
        assert.equal(bogus.errcode, "M_UNAUTHORIZED");

        assert.equal(await makeClient(server).isUsernameAvailable(username), true, `${username} was created after all`);
    });

    void test("two users register with the token (m.login.registration_token)", async () => {
        const t = need(token, "the registration token");
        alice = await registerWithToken(server, `e2e${runId}a`, password, t);
        bob = await registerWithToken(server, `e2e${runId}b`, password, t);
        assert.equal(alice.userId, userId(server, `e2e${runId}a`));
        assert.equal(bob.userId, userId(server, `e2e${runId}b`));
        assert.equal((await alice.client.whoami()).user_id, alice.userId);
        assert.equal((await bob.client.whoami()).user_id, bob.userId);
    });

    void test("the used-up token (2 uses) is refused for a third user", async () => {
        const t = need(token, "the registration token");
        await assert.rejects(
            registerWithToken(server, `e2e${runId}c`, password, t),
            (e: unknown) => e instanceof MatrixError && e.httpStatus === 401 && e.errcode === "M_UNAUTHORIZED",
        );
    });

    void test("A creates a room and sends 5 messages; B joins and syncs them in order", async () => {
        const a = need(alice, "user A");
        const b = need(bob, "user B");
        const created = await a.client.createRoom({ name: `e2e ${runId}`, preset: Preset.PrivateChat, invite: [b.userId] });
        roomId = created.room_id;
        const sent = Array.from({ length: 5 }, (_, i) => `message ${i + 1} of 5 (${runId})`);
        for (const body of sent) await a.client.sendTextMessage(roomId, body);

        await b.client.joinRoom(roomId);
        await startSync(b.client);
        const rid = roomId;
        const bodies = await waitFor("B's sync to hold the 5 messages", () => {
            const got = syncedBodies(b.client, rid);
            return got.length >= sent.length ? got : undefined;
        });
        assert.deepEqual(bodies, sent);
        const senders = new Set(
            b.client
                .getRoom(rid)!
                .getLiveTimeline()
                .getEvents()
                .filter((e) => e.getType() === "m.room.message")
                .map((e) => e.getSender()),
        );
        assert.deepEqual([...senders], [a.userId]);
        b.client.stopClient();
    });

    void test("media: an upload of random bytes downloads identical", async () => {
        const a = need(alice, "user A");
        const b = need(bob, "user B");
        const bytes = randomBytes(48 * 1024 + 123);
        const up = await a.client.uploadContent(bytes, { type: "application/octet-stream", name: `e2e-${runId}.bin` });
        assert.match(up.content_uri, new RegExp(`^mxc://${server.domain.replaceAll(".", "\\.")}/[A-Za-z0-9_-]+$`));
        // Authenticated media (client v1), downloaded by the other user.
        const url = b.client.mxcUrlToHttp(up.content_uri, undefined, undefined, undefined, false, true, true) ?? "";
        assert.ok(url.startsWith(`${server.homeserverUrl}/_matrix/client/v1/media/download/`), `download URL ${url}`);
        const res = await testbedFetch(url, { headers: { Authorization: `Bearer ${b.accessToken}` } });
        assert.equal(res.status, 200, `GET ${url}: HTTP ${res.status}`);
        const got = Buffer.from(await res.arrayBuffer());
        assert.equal(got.length, bytes.length);
        assert.ok(got.equals(bytes), "downloaded bytes differ from the upload");
    });

    void test(`/.well-known/matrix/client on https://${server.domain} points at ${matrixHost}`, async () => {
        const res = await testbedFetch(`https://${server.domain}/.well-known/matrix/client`);
        assert.equal(res.status, 200);
        assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
        assert.equal(res.headers.get("access-control-allow-origin"), "*", "web clients need CORS on .well-known");
        const wk = (await res.json()) as { "m.homeserver"?: { base_url?: string } };
        assert.equal(wk["m.homeserver"]?.base_url?.replace(/\/+$/, ""), server.homeserverUrl.replace(/\/+$/, ""));
        assert.equal(new URL(wk["m.homeserver"]!.base_url!).hostname, `matrix.${server.domain}`);
        // and that homeserver answers as one
        const v = await testbedFetch(`${wk["m.homeserver"]!.base_url!.replace(/\/+$/, "")}/_matrix/client/versions`);
        assert.equal(v.status, 200);
        assert.ok(((await v.json()) as { versions?: string[] }).versions?.length);
    });

    void test(`SRV _matrix-fed._tcp.${server.domain} (at ${testbed.dnsServer}) points at ${matrixHost}:8448`, async () => {
        const srv = await resolver.resolveSrv(`_matrix-fed._tcp.${server.domain}`);
        assert.equal(srv.length, 1, JSON.stringify(srv));
        assert.equal(srv[0].name.replace(/\.$/, ""), `matrix.${server.domain}`);
        assert.equal(srv[0].name.replace(/\.$/, ""), matrixHost);
        assert.equal(srv[0].port, 8448);
        assert.deepEqual(await resolver.resolve4(srv[0].name), [server.ip]);
    });
});
