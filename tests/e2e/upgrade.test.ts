// Operating the deployed stacks through the real engine, as an operator would: a second `up` changes
// nothing, and a Synapse version bump in stack config updates the Synapse step alone, after which the
// new version answers and the messages from before are all there. Runs last (file order): it
// changes server 0.
// Run:  node --test --test-concurrency=1 --test-force-exit 'tests/e2e/*.test.ts'   (see README.md)
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { after, describe, test } from "node:test";
import { Preset } from "matrix-js-sdk";
import { adminSession, closeTestbed, testbed, testbedFetch, type Session } from "./testbed.ts";

const TESTBED_SH = fileURLToPath(new URL("../../testbed/testbed.sh", import.meta.url));
const STATE = process.env.TESTBED_DIR ?? "/var/tmp/phillymesh-testbed";
const [server] = testbed.servers;
// The version to bump to: E2E_BUMP_TO, else the newer of the two the testbed is made with.
const BUMP_TO = process.env.E2E_BUMP_TO ?? "1.163.2";

/** Runs testbed.sh with the arguments; resolves with its output, rejects on a non-zero exit. */
function testbedSh(args: string[], timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
        const child = spawn("bash", [TESTBED_SH, ...args], { timeout: timeoutMs, stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        child.stderr.on("data", (d: Buffer) => (out += d.toString()));
        child.on("error", reject);
        child.on("close", (code, signal) =>
            code === 0 ? resolve(out) : reject(new Error(`testbed.sh ${args.join(" ")}: ${signal ?? `exit ${code}`}\n${out.slice(-3000)}`)),
        );
    });
}

async function runningVersion(): Promise<string> {
    const r = await testbedFetch(`${server.homeserverUrl}/_matrix/federation/v1/version`);
    assert.equal(r.status, 200);
    return ((await r.json()) as { server: { version: string } }).server.version;
}

let admin: Session | undefined;
after(async () => {
    admin?.client.stopClient();
    await closeTestbed();
});

void describe("the stacks under the real engine", () => {
    void test("a second pulumi up would change nothing (preview --expect-no-changes on every stack)", async () => {
        const out = await testbedSh(["preview"], 180_000);
        const summaries = [...out.matchAll(/preview: [\d.]+s; changes (\{.*\})/g)].map((m) => JSON.parse(m[1]) as Record<string, number>);
        assert.equal(summaries.length, testbed.servers.length, out);
        // Nothing but "same", and at most the one "read" of the stack's own last outputs that the
        // droplet path's preflight makes (components/preflight.ts): a read changes nothing.
        for (const s of summaries) {
            assert.deepEqual(
                Object.keys(s).filter((op) => op !== "same" && op !== "read"),
                [],
                JSON.stringify(s),
            );
            assert.ok((s.read ?? 0) <= 1, JSON.stringify(s));
        }
    });

    void test(
        `a bump of synapseVersion to ${BUMP_TO} updates the Synapse step only; messages survive`,
        { skip: server.synapseVersion === BUMP_TO ? `server 0 already runs ${BUMP_TO}` : false },
        async () => {
            admin = await adminSession(server);
            const room = await admin.client.createRoom({ preset: Preset.PrivateChat, name: "before the bump" });
            const bodies = [1, 2, 3].map((i) => `before bump ${i} (${server.synapseVersion})`);
            for (const body of bodies) await admin.client.sendTextMessage(room.room_id, body);
            assert.equal(await runningVersion(), server.synapseVersion);

            await testbedSh(["bump", `synapseVersion=${BUMP_TO}`, server.name], 600_000);

            // What the preview planned: one update, of the Synapse step, and nothing else (but the workers step).
            // (Provider resources are left out: the testbed's stand-in for the command provider is a
            // dynamic provider, whose default instance the engine re-reads when stack config changes.
            // A "read" changes nothing: the program reads its own stack's last outputs, preflight.ts.)
            const planned = JSON.parse(readFileSync(`${STATE}/stacks/${server.name}.bump-preview.json`, "utf8")) as {
                urn: string;
                type: string;
                ops: string[];
            }[];
            const changed = planned
                .filter((r) => !r.type.startsWith("pulumi:providers:") && r.ops.some((op) => op !== "same" && op !== "read"))
                .map((r) => `${r.urn.split("::").pop()}:${r.ops.join(",")}`);
            // In worker mode the workers step carries the version too: it runs after the Synapse step
            // and waits until every worker answers on the new release.
            assert.deepEqual(changed.sort(), ["chat-synapse-run:update", ...(server.synapseWorkers ? ["chat-synapse-workers-run:update"] : [])]);

            assert.equal(await runningVersion(), BUMP_TO);
            const r = await testbedFetch(`${server.homeserverUrl}/_matrix/client/v3/rooms/${encodeURIComponent(room.room_id)}/messages?dir=b&limit=20`, {
                headers: { Authorization: `Bearer ${admin.accessToken}` },
            });
            assert.equal(r.status, 200);
            const chunk = ((await r.json()) as { chunk: { type: string; content: { body?: string } }[] }).chunk;
            const seen = chunk
                .filter((e) => e.type === "m.room.message")
                .map((e) => e.content.body)
                .reverse();
            assert.deepEqual(seen, bodies);
        },
    );
});
