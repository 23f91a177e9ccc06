// `up` checks its own work: on both servers, the `health` output the last `up` left lists every check
// (well-known, client API, Element, SRV, federation route and TLS, signing keys, Synapse version,
// certificate expiry; in worker mode Redis and each worker running) as passed, and the server's daily status read over SSH; and `npm run check -- <server name>`, the same checks as a command,
// passes from the host through the testbed's DNS and CA.
// Run:  node --test --test-concurrency=1 --test-force-exit 'tests/e2e/*.test.ts'   (see README.md)
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { stackOutputs } from "../../testbed/lib/deployClient.ts";
import { childEnv, REPO } from "../../testbed/lib/paths.ts";
import { runProcess } from "../../testbed/lib/run.ts";
import { testbed } from "./testbed.ts";

const CHECKS = [
    "well-known client",
    "well-known server",
    "client API",
    "Element",
    "SRV record",
    "federation route",
    "federation TLS",
    "signing keys",
    "Synapse version",
    "certificate expiry",
];

/** In worker mode, up also asks systemd on the server: Redis and each worker running (workerLayout.ts's names). */
const workerChecks = (count: number): string[] =>
    count > 0
        ? ["Redis", ...Array.from({ length: count }, (_, i) => `worker generic_worker${i + 1}`), "worker federation_sender1", "worker media_worker1"]
        : [];

void describe("up checks its own work", () => {
    for (const server of testbed.servers) {
        void test(`${server.domain}: the health output of the last up has every check, all passed`, async () => {
            const health = (await stackOutputs(server.name)).health as string[];
            assert.ok(Array.isArray(health), `health output: ${JSON.stringify(health)}`);
            const names = health.map((l) => /^\S+\s+([^:]+):/.exec(l)?.[1] ?? l);
            assert.deepEqual(
                names.filter((n) => !n.startsWith("server ")),
                [...CHECKS, ...workerChecks(server.synapseWorkers ?? 0)],
                health.join("\n"),
            );
            // The server's own daily status, read over SSH with the stack's key (as root on one, through
            // sudo on the other): its checks, or that it has not run yet. A failed read would be a WARN.
            assert.ok(
                health.some((l) => /^ok {3}server (status: the daily status check has not run yet|(certificate|backup|disk|synapse): )/.test(l)),
                health.join("\n"),
            );
            assert.deepEqual(
                health.filter((l) => !l.startsWith("ok ")),
                [],
            );
            assert.ok(health.includes(`ok   Synapse version: Synapse ${server.synapseVersion}`), health.join("\n"));
        });

        void test(`${server.domain}: npm run check passes against it, through the testbed's DNS and CA`, async () => {
            const r = await runProcess(
                "npm",
                ["run", "-s", "check", "--", server.domain, "--dns", testbed.dnsServer, "--ca", testbed.roots, "--synapse-version", server.synapseVersion],
                { cwd: REPO, env: childEnv(), timeoutMs: 120_000 },
            );
            const out = r.stdout + r.stderr;
            assert.equal(r.code, 0, out);
            assert.match(out, new RegExp(`^${server.domain.replace(/\./g, "\\.")}: 8 checks, 0 failed, 0 warnings$`, "m"));
        });
    }
});
