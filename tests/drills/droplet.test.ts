// The droplet-path drills (11-14): the testbed's own stack phillymesh (hosting digitalocean + dns
// cloudflare, on the stand-ins) replaced, grown, refused at preview; nycmesh for federation.
//   node --test tests/drills/droplet.test.ts                       (all four, about 10 minutes)
//   node --test --test-name-pattern='^13 ' tests/drills/droplet.test.ts
// They bring the testbed up when phillymesh is not there, and leave it deployed and converged at the
// config in $B/stacks/phillymesh.json (which drills 11 and 12 update). See README.md.
import { after, before } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import * as L from "./lib.ts";
import * as D from "./droplet-lib.ts";
import { check, drill } from "./droplet-lib.ts";

L.useServer({ name: D.PM, ip: "", guest: "" }); // located by ensurePhilly() before each drill

before(() => {
    assert.equal(process.getuid?.(), 0, "the drills boot guests and need root");
    mkdirSync(L.WORK, { recursive: true, mode: 0o700 });
});

after(async () => {
    if (D.anyFailed() && existsSync(D.PM_FILE)) {
        // A drill stopped half way: give the stack its recorded config back, and say whether it converged.
        const r = await D.previewWith(D.PM_FILE, "final-restore-config", ["--expect-no-changes"]).catch((e: unknown) => ({ code: -1, out: String(e) }));
        L.note(`after the drills: preview --expect-no-changes with ${D.PM_FILE}: exit ${r.code}${r.code ? `\n${L.tail(r.out, 20)}` : ""}`);
    }
    // The config copies hold the stack's secrets: only the logs stay.
    for (const f of readdirSync(L.WORK).filter((n) => n.endsWith(".json"))) rmSync(`${L.WORK}/${f}`, { force: true });
    await L.closeHttp();
    D.printSummary();
});

const sessionOf = (u: L.User): L.Session => ({ userId: u.userId, token: u.token });

// ---- 11 ----
drill(
    "11 replaced droplet: preview shows exactly the replacement chain; up moves the volume cleanly; users, rooms, media, signing key and federation survive",
    30,
    async (t) => {
        const base = D.readStack();
        const domain = L.DOMAIN;
        const w = await L.seedWorld(L.randomTag("d11"));
        const keys = await L.verifyKeys();
        const alice = sessionOf(w.users[0]);
        // A public room on phillymesh that a nycmesh user joins over federation, before the replacement.
        const aliasLocal = `${w.tag}-fed`;
        const fedRoom = (
            await L.mxOk("POST", "/_matrix/client/v3/createRoom", {
                token: alice.token,
                body: { preset: "public_chat", name: `${w.tag} federated`, room_alias_name: aliasLocal },
            })
        ).room_id as string;
        const nyc = D.nycTarget();
        const visitor = await L.withServer(nyc, async () => {
            const token = await L.newRegistrationToken(1);
            const r = await L.register(`${w.tag}-visitor`, randomBytes(12).toString("base64url"), token);
            if (r.status !== 200) throw new Error(`registering on ${L.DOMAIN}: HTTP ${r.status}: ${r.text}`);
            const s: L.Session = { userId: r.json.user_id, token: r.json.access_token };
            await L.mxOk("POST", `/_matrix/client/v3/join/${encodeURIComponent(`#${aliasLocal}:${domain}`)}`, { token: s.token, body: {} });
            return s;
        });
        const hello = `${w.tag} from nycmesh before the replacement`;
        await L.withServer(nyc, () => L.sendText(visitor, fedRoom, hello));
        await D.waitForBody(alice, fedRoom, hello, "phillymesh receiving nycmesh's message before the replacement");

        const old = await D.stackDroplet();
        const oldMachine = (await L.tsshOk("cat /etc/machine-id")).trim();
        const oldIp = L.IP;
        const image = String(base.config.dropletImage ?? "debian-13-x64");
        const other = image === "debian-12-x64" ? "debian-13-x64" : "debian-12-x64";
        L.note(`droplet ${old.id} (${old.guest}, machine-id ${oldMachine}) at ${oldIp}; dropletImage ${image} -> ${other}`);
        const file = D.configCopy(`${D.PM}.image`, (c) => {
            c.dropletImage = other;
        });

        const { r: pr, plan } = await D.previewPlan(file, "d11-preview");
        const planOk = await check(
            t,
            "11a preview: replace Droplet, VolumeAttachment, ReservedIpAssignment, data-release; update Firewall, the 3 monitoring alert policies (their droplet) and the 9 step commands; nothing else",
            () => {
                assert.equal(pr.code, 0, `preview failed:\n${L.tail(pr.out, 40)}`);
                const runs = [...plan.keys()].filter((n) => n.endsWith("-run"));
                assert.equal(runs.length, 9, `step commands: ${runs.join(", ")}`);
                const want = [
                    ...["chat-droplet", "chat-data-attachment", "chat-ip-assignment", "chat-data-release"].map((n) => `replace ${n}`),
                    "update chat-firewall",
                    // DigitalOcean's alert policies name the droplet (monitoring.ts): updated in place.
                    ...["chat-alert-disk", "chat-alert-load", "chat-alert-memory"].map((n) => `update ${n}`),
                    ...runs.map((n) => `update ${n}`),
                ].sort();
                const got = [...plan]
                    .filter(([, p]) => p.kind !== "same")
                    .map(([n, p]) => `${p.kind} ${n}`)
                    .sort();
                assert.deepEqual(got, want);
                const kept = [...plan].filter(([, p]) => /^(Volume|ReservedIp|SshKey|DnsRecord)$/.test(p.type));
                t.diagnostic(`unchanged: ${kept.map(([n, p]) => `${p.type} ${n}`).join(", ")}`);
                assert.ok(
                    kept.some(([, p]) => p.type === "Volume") &&
                        kept.some(([, p]) => p.type === "ReservedIp") &&
                        kept.filter(([, p]) => p.type === "DnsRecord").length >= 5,
                );
            },
        );
        if (!planOk) throw new Error("the preview does not plan the replacement chain: not running the up");

        const up = await D.upWith(file, "d11-up");
        if (up.code === 0) D.recordInStackFile("dropletImage", other);
        await check(t, "11b up succeeds", () => assert.equal(up.code, 0, `up failed (log ${up.log}):\n${L.tail(up.out, 60)}`));
        if (up.code !== 0) throw new Error("the replacement failed; see 11b");
        const now = await D.retarget();
        const neu = await D.stackDroplet();
        await check(t, "11c a new droplet and a new machine behind the same serverIp; the old guest is gone", async () => {
            assert.notEqual(neu.id, old.id, "the droplet id did not change");
            assert.equal(now.ip, oldIp, "serverIp changed");
            const ids = D.account().droplets.map((d: { id: number }) => String(d.id));
            assert.ok(!ids.includes(old.id), `the old droplet ${old.id} is still in the account (${ids.join(", ")})`);
            assert.ok(ids.includes(neu.id));
            assert.ok(!existsSync(`${L.B}/run-${old.guest}`), `${old.guest} still has a run directory`);
            assert.ok(L.guestRunning(), `${neu.guest} is not running`);
            const machine = (await L.tsshOk("cat /etc/machine-id")).trim();
            assert.notEqual(machine, oldMachine, "the same machine-id answers at serverIp");
            t.diagnostic(`droplet ${old.id} -> ${neu.id}, machine-id ${oldMachine} -> ${machine}, serverIp ${now.ip}`);
        });
        await check(t, "11d the volume is attached to the new droplet and mounted once, at /mnt/matrix_data (no /mnt/chat_data)", async () => {
            const vol = D.account().volumes.find((v: { name: string }) => v.name === "chat-data");
            assert.deepEqual((vol?.dropletIds ?? []).map(String), [neu.id]);
            const out = await L.tsshOk(
                `findmnt -rn -o TARGET -S "$(readlink -f ${D.VOLUME_DEVICE})"; echo "--"; ` +
                    "mountpoint -q /mnt/chat_data && echo chat_data-mounted; ls /etc/systemd/system/*.mount 2>/dev/null; grep -c chat_data /etc/fstab || true",
            );
            t.diagnostic(out.trim().replace(/\n/g, "; "));
            assert.deepEqual(out.split("--")[0].trim().split("\n"), ["/mnt/matrix_data"]);
            assert.equal(out.split("--")[1].trim(), "0", "a mount of the volume at /mnt/chat_data, its unit or fstab line");
        });
        await check(t, "11e the data-release ran on the old droplet (clean stop, unmount) before the attachment was replaced", () => {
            // The engine's progress, in the order things happened (the Diagnostics summary repeats the output).
            const lines = up.out.split("\nDiagnostics:")[0].split("\n");
            const release = lines.map((l, i) => (l.includes("[release") ? i : -1)).filter((i) => i >= 0);
            const detach = lines.findIndex((l) => /VolumeAttachment chat-data-attachment (deleting|deleted|replacing)/.test(l));
            assert.ok(release.length > 0, "no [release ...] lines in the up output");
            assert.ok(detach > 0, "no line of the attachment's replacement in the up output");
            assert.ok(release[release.length - 1] < detach, `a [release line (${release[release.length - 1]}) comes after the attachment's line ${detach}`);
            assert.match(up.out, /\[release [^\n]*unmounted \/mnt\/matrix_data/);
            assert.match(up.out, /\[release [^\n]*the data volume is released/);
        });
        await L.waitFor("Synapse on the new droplet", 120_000, L.healthy);
        L.forgetAdmin();
        await check(t, "11f users log in; room, messages and media identical; signing key unchanged", async () => {
            assert.deepEqual(await L.checkWorld(w, { login: true }), []);
            assert.deepEqual(await L.verifyKeys(), keys, "the signing key changed");
        });
        await check(t, "11g federation with nycmesh works again: messages cross both ways in the federated room", async () => {
            const there = `${w.tag} from the new phillymesh droplet`;
            const back = `${w.tag} from nycmesh after the replacement`;
            await L.sendText(alice, fedRoom, there);
            await L.withServer(nyc, () => D.waitForBody(visitor, fedRoom, there, "nycmesh receiving from the new droplet"));
            await L.withServer(nyc, () => L.sendText(visitor, fedRoom, back));
            await D.waitForBody(alice, fedRoom, back, "the new droplet receiving from nycmesh");
        });
        await check(t, `11h converged: preview with ${D.PM_FILE} (dropletImage now ${other}) changes nothing`, () => D.assertConverged("d11-converged"));
    },
);

// ---- 12 ----
drill("12 growing the volume: volumeSizeGb +2, the filesystem grows; Synapse keeps running where the host allows an online resize", 15, async (t) => {
    const size = Number(D.readStack().config.volumeSizeGb ?? 10);
    const grown = size + 2;
    const df = async () => Number((await L.tsshOk("df -B1 --output=size /mnt/matrix_data | tail -n 1")).trim());
    const pid = async () => (await L.tsshOk("systemctl show -p MainPID --value matrix-synapse")).trim();
    const [dfBefore, pidBefore] = [await df(), await pid()];
    // Online growth of a mounted ext4 needs CAP_SYS_RESOURCE (EXT4_IOC_RESIZE_FS): does root on the droplet have it?
    const capEff = (await L.tsshOk("awk '/^CapEff/ {print $2}' /proc/self/status")).trim();
    const canOnline = ((BigInt(`0x${capEff}`) >> 24n) & 1n) === 1n;
    L.note(`volume ${size} -> ${grown} GiB; df ${dfBefore}; Synapse pid ${pidBefore}; root's CapEff ${capEff} (CAP_SYS_RESOURCE: ${canOnline})`);
    const file = D.configCopy(`${D.PM}.grow`, (c) => {
        c.volumeSizeGb = grown;
    });
    const { r: pr, plan } = await D.previewPlan(file, "d12-preview");
    await check(t, "12a preview: the Volume and the base step are updated, nothing else", () => {
        assert.equal(pr.code, 0, L.tail(pr.out, 40));
        assert.deepEqual(
            [...plan]
                .filter(([, p]) => p.kind !== "same")
                .map(([n, p]) => `${p.kind} ${n}`)
                .sort(),
            ["update chat-base-run", "update chat-data"],
        );
    });
    const up = await D.upWith(file, "d12-up");
    // Volumes never shrink: once the account's volume has grown, that size is the stack's config.
    if (D.account().volumes.find((v: { name: string }) => v.name === "chat-data")?.size === grown) D.recordInStackFile("volumeSizeGb", grown);
    const dfAfter = up.code === 0 ? await df() : 0;
    await check(t, `12b up succeeds, the filesystem on /mnt/matrix_data grows by about 2 GiB and Synapse serves`, async () => {
        assert.equal(up.code, 0, `up failed (log ${up.log}):\n${L.tail(up.out, 40)}`);
        t.diagnostic(`df -B1: ${dfBefore} -> ${dfAfter} (+${((dfAfter - dfBefore) / 2 ** 30).toFixed(2)} GiB)`);
        assert.ok(dfAfter - dfBefore > 1.8 * 2 ** 30, `the filesystem grew by ${dfAfter - dfBefore} bytes only`);
        await L.waitFor("Synapse after the growth", 60_000, L.healthy);
    });
    const refused = /online resize refused[^\n]*/.exec(up.out)?.[0];
    const pidAfter = await pid();
    await check(t, "12c Synapse's main process unchanged (online resize)", (skip) => {
        t.diagnostic(`Synapse MainPID ${pidBefore} -> ${pidAfter}; up said: ${refused ?? "(no refusal)"}`);
        if (!canOnline) {
            return skip(
                `this host withholds CAP_SYS_RESOURCE (root's CapEff on the droplet ${capEff}), so resize2fs cannot grow a mounted ext4; ` +
                    `base.sh ${refused ? `fell back to an offline resize ("${refused.slice(0, 120)}")` : "reported no refusal"} and Synapse was restarted`,
            );
        }
        assert.equal(refused, undefined, "the host allows an online resize, yet base.sh resized offline");
        assert.equal(pidAfter, pidBefore, "Synapse was restarted");
    });
    await check(t, `12d converged: preview with ${D.PM_FILE} (volumeSizeGb now ${grown}) changes nothing`, () => D.assertConverged("d12-converged"));
});

// ---- 13 ----
drill("13 records already in the zone: preview fails naming each foreign record with both ways out; once deleted, no changes", 10, async (t) => {
    const domain = L.DOMAIN;
    const zone = await D.cfZone(["id", domain]);
    const ids: string[] = [];
    let r: L.RunResult;
    try {
        ids.push(await D.cfZone(["add-record", domain, JSON.stringify({ name: `matrix.${domain}`, type: "A", content: "10.250.0.9" })]));
        ids.push(
            await D.cfZone([
                "add-record",
                domain,
                JSON.stringify({ name: `_matrix._tcp.${domain}`, type: "SRV", data: { priority: 10, weight: 5, port: 8448, target: `old.${domain}` } }),
            ]),
        );
        L.note(`added by hand: A matrix.${domain} 10.250.0.9 (${ids[0]}), SRV _matrix._tcp.${domain} -> old.${domain}:8448 (${ids[1]})`);
        r = await D.previewWith(D.PM_FILE, "d13-preview-foreign");
    } finally {
        for (const id of ids) await D.cfZone(["delete-record", domain, id]);
    }
    await check(
        t,
        "13a preview fails and names each record (type, name, content, record id) with the curl -X DELETE and, for the A record, the pulumi import",
        () => {
            assert.notEqual(r.code, 0, "preview passed with foreign records in the zone");
            const api = (id: string) => `https://api.cloudflare.com/client/v4/zones/${zone}/dns_records/${id}`;
            assert.ok(r.out.includes(`A matrix.${domain} 10.250.0.9 (record id ${ids[0]})`), `the A record is not named:\n${L.tail(r.out, 30)}`);
            assert.ok(r.out.includes(`SRV _matrix._tcp.${domain} 5 8448 old.${domain} (record id ${ids[1]})`), "the SRV record is not named");
            for (const id of ids)
                assert.ok(r.out.includes(`curl -X DELETE -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" ${api(id)}`), `no curl -X DELETE for ${id}`);
            const name = `chat-a-matrix-${domain.replace(/\./g, "-")}`;
            assert.ok(r.out.includes(`cloudflare:index/dnsRecord:DnsRecord ${name} '${zone}/${ids[0]}'`), "no pulumi import line for the A record");
            assert.match(r.out, /pulumi import --generate-code=false/);
            assert.match(r.out, /nothing was changed/);
        },
    );
    await check(t, "13b with the records deleted, preview passes with no changes", () => D.assertConverged("d13-converged"));
});

// ---- 14 ----
const DK = "dokey";
const DK_DOMAIN = `${DK}.test`;

async function forgetDokey(): Promise<void> {
    const res = existsSync(`${L.B}/state/work/${DK}`) ? await D.stackResources(DK).catch(() => [] as D.StateResource[]) : [];
    const made = res.filter((x) => !/^(pulumi:|phillymesh-chat:)/.test(x.type));
    if (made.length) {
        L.note(`${DK}: removing what its failed up made: ${made.map((x) => x.type.split(":").pop()).join(", ")}`);
        if (made.some((x) => x.protect)) await D.unprotectAll(DK);
        const d = await L.deploy("destroy", [], { label: `${DK}-destroy`, stack: DK, timeoutMs: 5 * 60_000 });
        if (d.code !== 0) throw new Error(`deploy.ts destroy --stack ${DK}: exit ${d.code}\n${L.tail(d.out)}`);
    }
    await L.deploy("forget", [], { label: `${DK}-forget`, stack: DK, timeoutMs: 120_000 });
    await D.cfZone(["remove", DK_DOMAIN]).catch(() => undefined);
}

drill(
    "14 SSH keys: an encrypted sshPrivateKey is refused at preview without showing it; a key already in the account: 422 on up, doSshKey is the way",
    15,
    async (t) => {
        const base = D.readStack();
        const keyFile = `${L.WORK}/drill14-encrypted`;
        rmSync(keyFile, { force: true });
        rmSync(`${keyFile}.pub`, { force: true });
        await L.runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "pw", "-C", "drill14", "-f", keyFile], { timeoutMs: 30_000 });
        const encrypted = readFileSync(keyFile, "utf8");
        const file = D.configCopy(`${D.PM}.enckey`, (_c, s) => {
            s.sshPrivateKey = encrypted;
        });
        const r = await D.previewWith(file, "d14-preview-encrypted-key");
        await check(t, "14a preview fails naming phillymesh-chat:sshPrivateKey, and the key's text appears nowhere in the output", () => {
            assert.notEqual(r.code, 0);
            assert.match(r.out, /phillymesh-chat:sshPrivateKey/);
            assert.match(r.out, /passphrase|encrypted/);
            // The lines after the first (which every OpenSSH key shares) are the key's own.
            const own = encrypted
                .split("\n")
                .filter((l) => l.length >= 16 && !/^-----/.test(l))
                .slice(1);
            assert.ok(own.length > 0);
            assert.deepEqual(
                own.filter((l) => r.out.includes(l)),
                [],
                "lines of the key in the output",
            );
            assert.doesNotMatch(r.out, /\[secret:sshPrivateKey\]|SECRET LEAK/, "the key reached the engine's output (deploy.ts masked it)");
        });
        rmSync(keyFile, { force: true });
        rmSync(`${keyFile}.pub`, { force: true });
        await check(t, `14b phillymesh converged again: preview with ${D.PM_FILE} changes nothing`, () => D.assertConverged("d14-converged"));

        // A new stack whose deploy key is already in the account (the testbed's key is: phillymesh's
        // SshKey put it there; account-key only makes sure and prints its fingerprint).
        const pubFile = `${L.B}/id_ed25519.pub`;
        const fingerprint = (await L.runOk("bash", [`${L.REPO}/testbed/cloud/do-host.sh`, "account-key", "testbed", pubFile], { timeoutMs: 60_000 })).out
            .trim()
            .split("\n")
            .pop()!;
        await forgetDokey();
        try {
            const zone = await D.cfZone(["ensure", DK_DOMAIN]);
            const dk = (edit: (c: Record<string, unknown>) => void) =>
                D.configCopy(
                    `${DK}.${randomBytes(3).toString("hex")}`,
                    (c) => {
                        Object.assign(c, {
                            domain: DK_DOMAIN,
                            adminEmail: `admin@${DK_DOMAIN}`,
                            cloudflareZoneId: zone,
                            elementBrand: "dokey chat",
                            roomDirectoryServers: [DK_DOMAIN],
                        });
                        // Another region: both stacks name their volume chat-data, and a region holds one volume of a name.
                        c.doRegion = "sfo3";
                        // Each case sets the one key setting it is about (the base stack may use either).
                        delete c.doSshKey;
                        delete c.sshPublicKey;
                        edit(c);
                    },
                    base,
                );
            const dropletsBefore = D.account().droplets.length;
            const up = await D.upWith(
                dk((c) => {
                    c.sshPublicKey = readFileSync(pubFile, "utf8").trim();
                }),
                "d14-dokey-up-public-key",
                DK,
            );
            await check(t, "14c sshPublicKey of a key already in the account: up fails with DigitalOcean's 422 at the key, before any droplet", async () => {
                assert.notEqual(up.code, 0, "up succeeded");
                assert.match(up.out, /422[^\n]*SSH Key is already in use on your account/);
                assert.equal(D.account().droplets.length, dropletsBefore, "a droplet was created");
                assert.ok(!(await D.stackResources(DK)).some((x) => x.type.endsWith(":Droplet")), "the stack has a droplet");
            });
            const { r: pv, plan } = await D.previewPlan(
                dk((c) => {
                    c.doSshKey = fingerprint;
                }),
                "d14-dokey-preview-doSshKey",
                DK,
            );
            const bad = await D.previewWith(
                dk((c) => {
                    c.doSshKey = "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff";
                }),
                "d14-dokey-preview-unknown-key",
                [],
                DK,
            );
            await check(
                t,
                `14d doSshKey = that key's fingerprint (${fingerprint}): preview plans the droplet and no SshKey; an unknown fingerprint fails naming doSshKey`,
                () => {
                    assert.equal(pv.code, 0, L.tail(pv.out, 30));
                    assert.equal(plan.get("chat-droplet")?.kind, "create");
                    assert.deepEqual(
                        [...plan.values()].filter((p) => p.type === "SshKey"),
                        [],
                    );
                    assert.notEqual(bad.code, 0);
                    assert.match(bad.out, /phillymesh-chat:doSshKey 00:11:[0-9a-f:]+ is not an SSH key of this DigitalOcean account/);
                    t.diagnostic(
                        "a full up of the doSshKey stack is skipped (a whole droplet deploy, ~3 min): the preview's look-up of the fingerprint in the account is what is checked",
                    );
                },
            );
        } finally {
            await forgetDokey();
            for (const f of readdirSync(L.WORK).filter((n) => n.startsWith(`${DK}.`))) rmSync(`${L.WORK}/${f}`, { force: true });
        }
    },
);
