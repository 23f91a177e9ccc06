// Worker mode on the testbed (synapseWorkers, issue 14): each process seen serving its share, the
// daily status check watching Redis and every worker, and the way back to one process leaving nothing
// behind. Not part of `npm run test:drills` (its glob is *.test.ts): testbed/workers-e2e.sh runs the
// "on" half after the end-to-end checks on a worker-mode guest of its own. By hand, under the lock:
//
//   WORKERS_PROOF=on  flock -o /var/tmp/phillymesh-testbed.lock node --test tests/drills/workers.ts
//   WORKERS_PROOF=off flock -o /var/tmp/phillymesh-testbed.lock node --test tests/drills/workers.ts
//
// WORKERS_STACK (default workers1) names the stack; its guest, domain and admin password are read
// from $B/stacks/<stack>.json and $B/secrets/<stack>.json. Read-only on the server, apart from the
// room, message and file it makes as the admin, and media_worker1 stopped and started again.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { after, before, test } from "node:test";
import { sshOk, sshTarget, readSecrets } from "../../testbed/lib/guest.ts";
import { TestbedHttp } from "../../testbed/lib/http.ts";
import { login, mxOk, type MxSession } from "../../testbed/lib/matrix.ts";
import { secretsFile, stackFile } from "../../testbed/lib/paths.ts";

const STACK = process.env.WORKERS_STACK ?? "workers1";
const MODE = process.env.WORKERS_PROOF ?? "on";
const config = JSON.parse(fs.readFileSync(stackFile(STACK), "utf8")).config as Record<string, string>;
const target = sshTarget(config.sshHost, config.sshUser ?? "root");
const base = `https://matrix.${config.domain}`;
const WORKERS = ["generic_worker1", "federation_sender1", "media_worker1"];
/** A word only this run's requests carry, so the logs can say which process served them. */
const marker = `proof${randomBytes(4).toString("hex")}`;

const http = new TestbedHttp();
let admin: MxSession;
const on = (cmd: string) => sshOk(target, cmd, { timeoutMs: 60_000 });

/** Lines of a Synapse log that carry this run's marker (access log lines: "Processed request: ... "). */
async function served(log: string): Promise<string[]> {
    const out = await on(`grep -h -- '${marker}' /var/log/matrix-synapse/${log}.log 2>/dev/null || true`); // log may be a glob
    return out.split("\n").filter((l) => l.includes("Processed request"));
}

void before(async () => {
    admin = await login(http, base, config.adminUser ?? "admin", readSecrets(secretsFile(STACK)).adminPassword, { deviceName: marker });
});
void after(() => http.close());

/** The admin's traffic of this run: a room, a message, a sync, a file up and down, and a federation request. */
async function traffic(): Promise<{ roomId: string; mxc: string; version: string }> {
    const auth = { token: admin.token };
    const room = await mxOk(http, base, "POST", "/_matrix/client/v3/createRoom", { ...auth, body: { name: marker } });
    await mxOk(http, base, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(room.room_id)}/send/m.room.message/${marker}`, {
        ...auth,
        body: { msgtype: "m.text", body: marker },
    });
    await mxOk(http, base, "GET", `/_matrix/client/v3/sync?timeout=0&${marker}=1`, auth);
    const up = await http.request(`${base}/_matrix/media/v3/upload?filename=${marker}.txt`, {
        method: "POST",
        headers: { authorization: `Bearer ${admin.token}`, "content-type": "text/plain" },
        body: `bytes of ${marker}`,
    });
    assert.equal(up.status, 200, up.text);
    const mxc = up.json.content_uri as string;
    const down = await http.request(`${base}/_matrix/client/v1/media/download/${mxc.slice("mxc://".length)}?${marker}=1`, {
        headers: { authorization: `Bearer ${admin.token}` },
    });
    assert.deepEqual([down.status, down.text], [200, `bytes of ${marker}`]);
    const fed = await http.request(`https://matrix.${config.domain}:8448/_matrix/federation/v1/version?${marker}=1`);
    assert.equal(fed.status, 200);
    return { roomId: room.room_id as string, mxc, version: fed.json.server.version as string };
}

if (MODE === "on") {
    void test("worker mode: every process runs, Redis and the replication listener only on the loopback addresses", async () => {
        const states = await on(`systemctl is-active matrix-synapse redis-server ${WORKERS.map((w) => `matrix-synapse-worker@${w}`).join(" ")}`);
        assert.deepEqual(states.trim().split("\n"), Array(2 + WORKERS.length).fill("active"));
        const listening = (await on("ss -ltnH | awk '{print $4}'")).split("\n");
        for (const port of ["6379", "9093", "8090", "8091"]) {
            const addrs = listening.filter((a) => a.endsWith(`:${port}`));
            assert.ok(addrs.length > 0, `nothing listens on ${port}`);
            for (const a of addrs) assert.match(a, /^(127\.0\.0\.1|\[::1\]):\d+$/, `${a} is not a loopback address`);
        }
        // Redis wants its password.
        assert.match(await on("redis-cli -h 127.0.0.1 ping 2>&1 || true"), /NOAUTH/);
    });

    void test("each process serves its share: client API and federation on the generic workers, media on the media worker", async () => {
        const { roomId, version } = await traffic();
        // Answered by a generic worker: the workers run the release in stack config (after a bump too).
        assert.equal(version, config.synapseVersion);
        const generic = await served("generic_worker*");
        const media = await served("media_worker1");
        const main = await served("homeserver");
        const has = (lines: string[], re: RegExp) => lines.some((l) => re.test(l));
        assert.ok(
            has(generic, new RegExp(`PUT /_matrix/client/v3/rooms/[^ ]+/send/m\\.room\\.message/${marker}`)),
            "the message was not sent by a generic worker",
        );
        assert.ok(has(generic, new RegExp(`GET /_matrix/client/v3/sync\\?timeout=0&${marker}=1`)), "the sync was not served by a generic worker");
        assert.ok(has(generic, new RegExp(`GET /_matrix/federation/v1/version\\?${marker}=1`)), "federation was not served by a generic worker");
        assert.ok(has(media, new RegExp(`POST /_matrix/media/v3/upload\\?filename=${marker}\\.txt`)), "the upload was not served by media_worker1");
        assert.ok(has(media, new RegExp(`GET /_matrix/client/v1/media/download/[^ ]+\\?${marker}=1`)), "the download was not served by media_worker1");
        assert.deepEqual(main, [], "the main process served requests the workers should have");
        console.log(`room ${roomId}; Synapse ${version}; generic workers ${generic.length} requests, media_worker1 ${media.length}, main 0`);
    });

    void test("outbound federation is the federation sender's: it runs the sender, the main process does not", async () => {
        const journal = await on("journalctl -u matrix-synapse-worker@federation_sender1 -u matrix-synapse --since '-30min' -o cat --no-pager | tail -n 400");
        // Synapse's own check (FederationSender is set up only where send_federation holds).
        const cfg = await on(
            "cd /tmp && PYTHONPATH=/opt/synapse/redis-lib runuser -u synapse -- /opt/synapse/current/bin/python -c " +
                `'from synapse.config.homeserver import HomeServerConfig as C; import sys; ` +
                `m = C.load_config("", ["-c", "/etc/matrix-synapse/homeserver.yaml", "-c", "/etc/matrix-synapse/conf.d/"]); ` +
                `w = C.load_config("", ["-c", "/etc/matrix-synapse/homeserver.yaml", "-c", "/etc/matrix-synapse/conf.d/", "-c", "/etc/matrix-synapse/workers/federation_sender1.yaml"]); ` +
                `print(m.worker.send_federation, w.worker.send_federation, m.media.can_load_media_repo)'`,
        );
        assert.equal(cfg.trim(), "False True False", journal.slice(-2000));
    });

    void test("the daily status check checks Redis and each worker, and names a stopped one", async () => {
        type Status = { checks: { name: string; ok: boolean; detail: string }[] };
        // Through its unit, as its timer runs it (sandboxed, as a dynamic user: it reads the units'
        // control groups). A fresh server may have no backup yet: only the worker-mode checks are asserted.
        const check = async () => {
            await on("systemctl start phillymesh-chat-status >/dev/null 2>&1 || true");
            const status = JSON.parse(await on("cat /var/lib/phillymesh-chat/status.json")) as Status;
            return Object.fromEntries(status.checks.map((c) => [c.name, c]));
        };
        const before = await check();
        assert.equal(before.redis?.ok, true, JSON.stringify(before));
        assert.equal(before.workers?.ok, true, JSON.stringify(before));
        for (const w of WORKERS) assert.ok(before.workers.detail.includes(w), before.workers.detail);
        let stoppedDetail = "";
        await on("systemctl stop matrix-synapse-worker@media_worker1");
        try {
            const stopped = await check();
            stoppedDetail = stopped.workers?.detail ?? "";
            assert.equal(stopped.workers?.ok, false, JSON.stringify(stopped));
            assert.match(stopped.workers.detail, /^media_worker1 is not running: see 'systemctl status matrix-synapse-worker@<name>'/);
            assert.equal(stopped.redis?.ok, true);
            assert.match(await on("journalctl -u phillymesh-chat-status -p err -n 20 -o cat --no-pager"), /workers: media_worker1 is not running/);
        } finally {
            await on("systemctl start matrix-synapse-worker@media_worker1");
        }
        // Back: it answers its /health again, and the check is green for it.
        await on("for i in $(seq 60); do curl -fsS http://127.0.0.1:8090/health >/dev/null 2>&1 && exit 0; sleep 1; done; exit 1");
        const after = await check();
        assert.equal(after.workers?.ok, true, JSON.stringify(after));
        console.log(`status check: ${before.redis.detail}; ${before.workers.detail}; stopped: ${stoppedDetail}`);
    });
} else {
    void test("one process again: no worker unit, no Redis, no routing, no worker configuration left", async () => {
        assert.equal((await on("systemctl list-unit-files --no-legend 'matrix-synapse-worker@*' | wc -l")).trim(), "0");
        assert.equal((await on("systemctl list-units --all --no-legend 'matrix-synapse-worker@*' | wc -l")).trim(), "0");
        assert.match(await on("systemctl is-active redis-server 2>&1 || true"), /inactive|could not be found/);
        assert.equal(
            (
                await on(
                    "ls -d /etc/nginx/conf.d/phillymesh-chat-workers.conf /etc/matrix-synapse/workers /opt/synapse/redis-lib /etc/phillymesh-chat/redis.conf " +
                        "/etc/systemd/system/phillymesh-chat-status.service.d " +
                        "/etc/systemd/system/matrix-synapse.service.d /etc/systemd/system/redis-server.service.d 2>/dev/null | wc -l",
                )
            ).trim(),
            "0",
        );
        assert.equal((await on("ss -ltnH | awk '{print $4}' | grep -cE ':(6379|9093|8090|8091)$' || true")).trim(), "0");
        // The daily status check is back to its four checks.
        await on("systemctl start phillymesh-chat-status >/dev/null 2>&1 || true");
        const status = JSON.parse(await on("cat /var/lib/phillymesh-chat/status.json")) as { checks: { name: string }[] };
        assert.deepEqual(
            status.checks.map((c) => c.name),
            ["certificate", "backup", "disk", "synapse"],
        );
    });

    void test("the main process serves everything, and what was written in worker mode is all there", async () => {
        await traffic();
        const main = await served("homeserver");
        assert.ok(
            main.some((l) => new RegExp(`POST /_matrix/media/v3/upload\\?filename=${marker}\\.txt`).test(l)),
            "the upload did not reach the main process",
        );
        assert.ok(
            main.some((l) => new RegExp(`GET /_matrix/client/v3/sync\\?timeout=0&${marker}=1`).test(l)),
            "the sync did not reach the main process",
        );
        // The rooms made in worker mode (named proof...) still hold their message.
        const rooms = (await mxOk(http, base, "GET", "/_matrix/client/v3/joined_rooms", { token: admin.token })).joined_rooms as string[];
        let older = 0;
        for (const id of rooms) {
            const name = await mxOk(http, base, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(id)}/state/m.room.name/`, { token: admin.token }).catch(
                () => ({}),
            );
            if (typeof name.name !== "string" || !name.name.startsWith("proof") || name.name === marker) continue;
            const msgs = await mxOk(http, base, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(id)}/messages?dir=b&limit=20`, { token: admin.token });
            assert.ok(
                (msgs.chunk as { content?: { body?: string } }[]).some((e) => e.content?.body === name.name),
                `room ${name.name} lost its message`,
            );
            older++;
        }
        console.log(`${older} room(s) from worker mode checked`);
    });
}
