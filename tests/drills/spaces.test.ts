// Drill 26: a running droplet server's media moved into Spaces (mediaStorage: spaces, issue 14), on
// the testbed's Spaces stand-in (a real S3 server, testbed/cloud/spaces.sh). OPT-IN: it runs only
// with DRILLS_SPACES=1 (else reported skipped), because the S3 server's first build of SeaweedFS
// takes about 7 minutes on a cold machine; .ci/run sets it.
//   DRILLS_SPACES=1 node --test tests/drills/spaces.test.ts
// A throwaway stack `spacesdrill` (hosting digitalocean + dns cloudflare on the stand-ins, zone
// spacesdrill.test, droplet region ams3 so its volume name does not collide with phillymesh's in
// nyc3), built from phillymesh's config, deployed with mediaStorage local, then switched to spaces by
// a config edit and `up`; removed at the end (bucket included: the program retains it on delete).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import * as L from "./lib.ts";
import * as D from "./droplet-lib.ts";
import { check, drill } from "./droplet-lib.ts";

const ON = process.env.DRILLS_SPACES === "1";
const SD = "spacesdrill";
const SD_DOMAIN = `${SD}.test`;
const REGION = "ams3";
const BUCKET = `${SD}-test-media`;
const SPACES = `${L.REPO}/testbed/cloud/spaces.sh`;
const MEDIA = "/mnt/matrix_data/synapse/media";
const SSH_OPTS = [
    "-i",
    `${L.B}/id_ed25519`,
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
];

before(() => {
    if (!ON) return;
    assert.equal(process.getuid?.(), 0, "the drills boot guests and need root");
    mkdirSync(L.WORK, { recursive: true, mode: 0o700 });
});

after(async () => {
    if (!ON) return;
    for (const f of readdirSync(L.WORK).filter((n) => n.startsWith(`${SD}.`))) rmSync(`${L.WORK}/${f}`, { force: true });
    await L.closeHttp();
    D.printSummary();
});

/** One signed request to the stand-in with the account's keys: status and body. */
async function s3(method: string, path: string, extra: string[] = []): Promise<{ status: number; body: string }> {
    const keys = (await L.runOk("bash", [SPACES, "keypair", "account"], { timeoutMs: 30_000 })).out.trim();
    const r = await L.run("bash", [SPACES, "s3", REGION, method, path, ...extra], { input: `${keys}\n`, timeoutMs: 60_000 });
    const m = /HTTP (\d+)\s*$/.exec(r.out);
    return { status: m ? Number(m[1]) : -1, body: r.out };
}

/** The bucket's objects: key -> size. */
async function objects(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    let token = "";
    for (let page = 0; page < 50; page++) {
        const r = await s3("GET", `${BUCKET}?list-type=2${token ? `&continuation-token=${encodeURIComponent(token)}` : ""}`);
        if (r.status !== 200) throw new Error(`listing ${BUCKET}: HTTP ${r.status}: ${r.body.slice(0, 300)}`);
        for (const m of r.body.matchAll(/<Contents>[\s\S]*?<Key>([^<]*)<\/Key>[\s\S]*?<Size>(\d+)<\/Size>[\s\S]*?<\/Contents>/g)) out.set(m[1], Number(m[2]));
        const next = /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(r.body);
        if (!next) break;
        token = next[1];
    }
    return out;
}

/** The media files on the server (relative to the media store) with their sizes. */
async function localFiles(): Promise<Map<string, number>> {
    const out = await L.tsshOk(`cd ${MEDIA} && find . -type f -printf '%s %P\\n'`);
    return new Map(
        out
            .split("\n")
            .filter(Boolean)
            .map((l) => {
                const i = l.indexOf(" ");
                return [l.slice(i + 1), Number(l.slice(0, i))] as [string, number];
            }),
    );
}

async function removeStack(): Promise<void> {
    const res = await D.stackResources(SD).catch(() => [] as D.StateResource[]);
    if (res.some((x) => !/^(pulumi:|phillymesh-chat:)/.test(x.type))) {
        if (res.some((x) => x.protect)) await D.unprotectAll(SD);
        // media-storage-off.sh refuses while trimmed media lives only in the bucket (as it must on a
        // real server); this server and its bucket are thrown away, so the drill says so by hand.
        const ip = await D.stackOutputs(SD)
            .then((o) => String(o.serverIp ?? ""))
            .catch(() => "");
        if (ip) {
            const r = await L.run("ssh", [...SSH_OPTS, `root@${ip}`, "rm -f /var/lib/phillymesh-chat-media/trimmed.json"], { timeoutMs: 60_000 });
            L.note(`${SD}: trimmed.json removed before the destroy (exit ${r.code})`);
        }
        const d = await L.deploy("destroy", [], { label: `${SD}-destroy`, stack: SD, timeoutMs: 10 * 60_000 });
        // Never forget a stack whose destroy failed: its droplet, volume and IP would be orphaned.
        if (d.code !== 0) throw new Error(`deploy.ts destroy --stack ${SD}: exit ${d.code} (stack kept; remove it by hand)\n${L.tail(d.out)}`);
    }
    await L.deploy("forget", [], { label: `${SD}-forget`, stack: SD, timeoutMs: 120_000 });
    await D.cfZone(["remove", SD_DOMAIN]).catch(() => undefined);
    // The program retains the bucket on delete (data is sacred); this drill's bucket goes by hand.
    if ((await s3("HEAD", BUCKET, ["-I"])).status === 200) {
        for (const k of (await objects()).keys()) await s3("DELETE", `${BUCKET}/${k.split("/").map(encodeURIComponent).join("/")}`);
        const d = await s3("DELETE", BUCKET);
        L.note(`bucket ${BUCKET} removed by hand: HTTP ${d.status}`);
    }
}

const title =
    "26 media into Spaces: media from before the switch uploaded and verified, byte-equal downloads, a trim that removes only verified copies, everything else intact";
if (!ON) {
    void test(title, { skip: "opt-in: DRILLS_SPACES=1 (the S3 stand-in's first SeaweedFS build takes ~7 min; .ci/run sets it)" }, () => undefined);
} else {
    drill(title, 30, async (t) => {
        const base = D.readStack();
        const ensure = await L.run("bash", [SPACES, "ensure"], { timeoutMs: 20 * 60_000, label: `${SD}-spaces-ensure` });
        if (ensure.code !== 0) throw new Error(`spaces.sh ensure: exit ${ensure.code}\n${L.tail(ensure.out)}`);
        const keys = JSON.parse((await L.runOk("bash", [SPACES, "keys", "account"], { timeoutMs: 30_000 })).out);
        await removeStack();
        try {
            const zone = await D.cfZone(["ensure", SD_DOMAIN]);
            const cfg = (label: string, edit: (c: Record<string, unknown>, s: Record<string, unknown>) => void) =>
                D.configCopy(
                    `${SD}.${label}`,
                    (c, s) => {
                        Object.assign(c, {
                            domain: SD_DOMAIN,
                            adminEmail: `admin@${SD_DOMAIN}`,
                            cloudflareZoneId: zone,
                            elementBrand: "spaces drill",
                            roomDirectoryServers: [SD_DOMAIN],
                            doRegion: REGION,
                        });
                        delete c.mediaStorage;
                        edit(c, s);
                    },
                    base,
                );
            // phillymesh's key is already in the account: use it by fingerprint (drill 14).
            const fingerprint = (
                await L.runOk("bash", [`${L.REPO}/testbed/cloud/do-host.sh`, "account-key", "testbed", `${L.B}/id_ed25519.pub`], { timeoutMs: 60_000 })
            ).out
                .trim()
                .split("\n")
                .pop()!;
            const local = cfg("local", (c) => {
                delete c.sshPublicKey;
                c.doSshKey = fingerprint;
            });
            const up0 = await D.upWith(local, `${SD}-up-local`, SD);
            if (up0.code !== 0) throw new Error(`up of ${SD} with mediaStorage local failed (log ${up0.log}):\n${L.tail(up0.out, 40)}`);
            // The admin helpers read the server's secrets file: the stack's are phillymesh's.
            copyFileSync(`${L.B}/secrets/${D.PM}.json`, `${L.B}/secrets/${SD}.json`);
            const out = await D.stackOutputs(SD);
            const d = await D.stackDroplet(SD);
            L.useServer({ name: SD, ip: String(out.serverIp), guest: d.guest });
            await L.resetHttp();
            await L.waitFor(`${SD} answering`, 120_000, L.healthy);

            const w = await L.seedWorld(L.randomTag("d26"));
            const alice: L.Session = { userId: w.users[0].userId, token: w.users[0].token };
            // A file above boto3's 8 MiB multipart threshold: its ETag is not a plain MD5.
            const big = new Uint8Array(randomBytes(9 * 1024 * 1024 + 17));
            const bigMxc = (await L.mxOk("POST", `/_matrix/media/v3/upload?filename=${w.tag}-big.bin`, { token: alice.token, raw: big })).content_uri as string;
            const keysBefore = await L.verifyKeys();
            const before = await localFiles();
            L.note(`before the switch: ${before.size} media files on the volume`);

            const spaces = cfg("spaces", (c, s) => {
                delete c.sshPublicKey;
                c.doSshKey = fingerprint;
                c.mediaStorage = "spaces";
                s.spacesAccessKeyId = keys.accessKeyId;
                s.spacesSecretKey = keys.secretKey;
            });
            const t0 = Date.now();
            const up = await D.upWith(spaces, `${SD}-up-spaces`, SD);
            await check(t, "26a the config edit + up to mediaStorage spaces succeeds", () =>
                assert.equal(up.code, 0, `up failed (log ${up.log}):\n${L.tail(up.out, 60)}`),
            );
            if (up.code !== 0) throw new Error("the switch failed; see 26a");
            L.note(`switch to spaces: ${((Date.now() - t0) / 1000).toFixed(0)} s`);

            await check(t, "26b every file that was on the volume is in the bucket with its size; the move is recorded; the trim's timer is on", async () => {
                const inBucket = await objects();
                const missing = [...before].filter(([k, size]) => inBucket.get(k) !== size);
                assert.deepEqual(missing, [], `not in ${BUCKET} with the same size`);
                const state = await L.tsshOk("cat /var/lib/phillymesh-chat-media/moved.json; echo; systemctl is-enabled phillymesh-chat-media-trim.timer");
                assert.match(state, /enabled\s*$/);
                t.diagnostic(`${inBucket.size} objects; moved.json: ${state.split("\n")[0].slice(0, 200)}`);
            });

            await check(t, "26c after the switch: the media downloads byte-equal, and a new upload is in the bucket at once", async () => {
                assert.equal(L.sha256(await L.downloadMedia(alice, bigMxc)), L.sha256(big));
                assert.deepEqual(await L.checkWorld(w), []);
                const fresh = new Uint8Array(randomBytes(4096));
                const mxc = (await L.mxOk("POST", `/_matrix/media/v3/upload?filename=${w.tag}-after.bin`, { token: alice.token, raw: fresh }))
                    .content_uri as string;
                const id = mxc.split("/").pop()!;
                const key = `local_content/${id.slice(0, 2)}/${id.slice(2, 4)}/${id.slice(4)}`;
                assert.equal((await objects()).get(key), 4096, `${key} not in the bucket`);
            });

            // The trim, through its own unit (sandbox and all), with the media dated 40 days back in
            // Synapse's database (what the provider's tool reads to pick copies not read lately).
            const ids = [w.media.mxc, bigMxc].map((m) => m.split("/").pop()!);
            const paths = ids.map((id) => `local_content/${id.slice(0, 2)}/${id.slice(2, 4)}/${id.slice(4)}`);
            await L.tsshOk(
                `runuser -u postgres -- psql -d synapse -v ON_ERROR_STOP=1 -c "UPDATE local_media_repository SET last_access_ts = (extract(epoch from now()) * 1000)::bigint - 40::bigint * 86400000"`,
            );
            const trim = await L.tssh(
                "systemctl start phillymesh-chat-media-trim.service; echo rc=$?; journalctl -u phillymesh-chat-media-trim --no-pager -n 30 -o cat",
                {
                    timeoutMs: 10 * 60_000,
                },
            );
            await check(t, "26d the trim unit succeeds and removes the local copies, each verified in the bucket first", async () => {
                assert.match(trim.out, /rc=0/, L.tail(trim.out, 30));
                const after = await localFiles();
                const still = paths.filter((p) => after.has(p));
                assert.deepEqual(still, [], "local copies left");
                const inBucket = await objects();
                assert.deepEqual(
                    paths.filter((p) => !inBucket.has(p)),
                    [],
                    "not in the bucket",
                );
                t.diagnostic(`trim: ${L.tail(trim.out, 4).replace(/\n/g, " | ")}; ${after.size} files left on the volume`);
            });
            await check(
                t,
                "26e after the trim: the media downloads byte-equal from the bucket; users (password login), room, messages and signing key are there",
                async () => {
                    assert.equal(L.sha256(await L.downloadMedia(alice, bigMxc)), L.sha256(big));
                    assert.deepEqual(await L.checkWorld(w, { login: true }), []);
                    assert.deepEqual(await L.verifyKeys(), keysBefore);
                },
            );
        } finally {
            L.useServer({ name: D.PM, ip: "", guest: "" });
            await removeStack();
            rmSync(`${L.B}/secrets/${SD}.json`, { force: true });
        }
    });
}
