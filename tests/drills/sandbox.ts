// No one in, even when something else breaks: drill 15. Should Synapse (which decodes images and
// parses JSON from any server) be taken over, or a backup go wrong, the units the program installs
// hold it in: `systemd-analyze security` scores at most 3.0, Synapse's own process cannot write
// outside its data, has no capabilities and a system-call filter, and when memory runs out the
// kernel picks Synapse before PostgreSQL and sshd (drill 15). And root, running the steps again,
// never follows a link a service user planted (drill 16). Registered by drills.test.ts.
import assert from "node:assert/strict";
import * as L from "./lib.ts";
import type { DrillSet } from "./harness.ts";
import { mustConverge, upAndWait, writeConfig } from "./converge.ts";

/** Every unit the program installs that runs a program, with the exposure it may have at most. */
const UNITS = [
    "matrix-synapse.service",
    "phillymesh-chat-backup.service",
    "phillymesh-chat-status.service",
    "phillymesh-chat-firewall.service",
    "phillymesh-chat-synapse-refresh.service",
    "phillymesh-chat-advisory-audit.service",
    "phillymesh-chat-db-housekeeping.service",
];
const MAX_EXPOSURE = 3.0;

/** Paths a taken-over Synapse would write to stay in: units, its own code, config, root's programs. */
const OUTSIDE = ["/etc/systemd/system", "/opt/synapse/current", "/etc/matrix-synapse", "/usr/local/sbin", "/var/www/element", "/root"];

export function sandboxDrill({ drill, check }: DrillSet): void {
    drill(
        "15 sandbox: every unit scores at most 3.0; a taken-over Synapse writes only its data; OOM kills Synapse first; upgraded libraries restart what uses them; stray ports closed",
        10,
        async (t) => {
            await check(t, `15a systemd-analyze security: ${UNITS.join(", ")} at most ${MAX_EXPOSURE}`, async () => {
                const scores: string[] = [];
                for (const unit of UNITS) {
                    const out = await L.tsshOk(`systemd-analyze security --no-pager ${unit} 2>&1 | tail -n 1`);
                    const m = /Overall exposure level for \S+: ([\d.]+)/.exec(out);
                    assert.ok(m, `${unit}: no score in ${out.trim()}`);
                    scores.push(`${unit} ${m[1]}`);
                    assert.ok(Number(m[1]) <= MAX_EXPOSURE, `${unit} scores ${m[1]}: ${out.trim()}`);
                }
                L.note(`15a exposure: ${scores.join(", ")}`);
            });

            await check(t, "15b the units still do their work in their sandboxes: a backup and the status check run to success", async () => {
                for (const unit of ["phillymesh-chat-backup.service", "phillymesh-chat-status.service"]) {
                    const r = await L.tssh(`systemctl start ${unit}; systemctl show -p Result --value ${unit}`, { timeoutMs: 300_000 });
                    const log = await L.tssh(`journalctl -u ${unit} -n 5 -o cat --no-pager`);
                    assert.equal(r.out.trim().split("\n").pop(), "success", `${unit}: ${r.out.trim()}\n${log.out}`);
                }
            });

            await check(
                t,
                "15c Synapse's process: no capabilities, no new privileges, seccomp on; inside its namespace it can write its data, nothing outside",
                async () => {
                    const pid = (await L.tsshOk("systemctl show -p MainPID --value matrix-synapse")).trim();
                    assert.match(pid, /^[1-9]\d*$/, `Synapse's main pid: ${pid}`);
                    const status = await L.tsshOk(`grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/${pid}/status`);
                    t.diagnostic(status.trim().replace(/\s+/g, " "));
                    assert.match(status, /^CapEff:\s+0+$/m);
                    assert.match(status, /^CapBnd:\s+0+$/m);
                    assert.match(status, /^NoNewPrivs:\s+1$/m);
                    assert.match(status, /^Seccomp:\s+2$/m);
                    // The attack: a write as Synapse's user, from inside Synapse's own mount namespace (what an
                    // exploit in Synapse would see), to where a unit or a program run by root could be planted.
                    const asSynapse = (cmd: string) =>
                        L.tssh(`nsenter -t ${pid} -m -- setpriv --reuid synapse --regid synapse --clear-groups -- sh -c ${L.shQuote(cmd)}`);
                    const own = await asSynapse("touch /mnt/matrix_data/synapse/media/.drill-15c && rm /mnt/matrix_data/synapse/media/.drill-15c");
                    assert.equal(own.code, 0, `Synapse cannot write its own media store: ${own.out}`);
                    for (const dir of OUTSIDE) {
                        const r = await asSynapse(`touch ${dir}/drill-15c-planted`);
                        t.diagnostic(`write to ${dir}: ${r.out.trim() || r.code}`);
                        assert.notEqual(r.code, 0, `Synapse wrote to ${dir}`);
                        assert.match(r.out, /Read-only file system|Permission denied|No such file/, `${dir}: ${r.out}`);
                    }
                    const planted = await L.tssh(`ls -d ${OUTSIDE.map((d) => `${d}/drill-15c-planted`).join(" ")} 2>/dev/null`);
                    assert.equal(planted.out.trim(), "", `planted: ${planted.out}`);
                    // As root inside the namespace, too: the file system is read-only, not just not Synapse's.
                    const root = await L.tssh(`nsenter -t ${pid} -m -- touch /etc/systemd/system/drill-15c-planted`);
                    assert.match(root.out, /Read-only file system/, `root in Synapse's namespace: ${root.out}`);
                },
            );

            await check(t, "15d when memory runs out the kernel picks Synapse (+500) and spares PostgreSQL (-500) and sshd (-900)", async (skip) => {
                const pid = (await L.tsshOk("systemctl show -p MainPID --value matrix-synapse")).trim();
                assert.equal((await L.tsshOk(`cat /proc/${pid}/oom_score_adj`)).trim(), "500");
                const pg = (await L.tsshOk("systemctl list-units --plain --no-legend 'postgresql@*' | awk '{print $1; exit}'")).trim();
                const set = await L.tsshOk(`systemctl show -p OOMScoreAdjust --value ${pg} ssh.service matrix-synapse.service`);
                assert.deepEqual(set.split("\n").filter(Boolean), ["-500", "-900", "500"], `OOMScoreAdjust of ${pg}, ssh, synapse`);
                const limits = await L.tsshOk("systemctl show -p MemoryHigh -p MemoryMax matrix-synapse.service");
                t.diagnostic(limits.trim().replace(/\n/g, " "));
                assert.doesNotMatch(limits, /=infinity/, `Synapse has no memory ceiling: ${limits}`);
                // Lowering a score needs CAP_SYS_RESOURCE; the testbed's containers withhold it from root
                // (a droplet's root has it), so there the negative scores are configured but not applied.
                const pgPid = (await L.tsshOk(`systemctl show -p MainPID --value ${pg}`)).trim();
                const applied = (await L.tsshOk(`cat /proc/${pgPid}/oom_score_adj`)).trim();
                if (applied !== "-500") {
                    const cap = await L.tssh("grep CapBnd /proc/self/status");
                    skip(`PostgreSQL runs at oom_score_adj ${applied}: this host's root cannot lower it (${cap.out.trim()}); the drop-in is in place`);
                }
            });

            await check(t, "15e a service left running old code after an upgrade is restarted by apt's own hook (needrestart, automatic mode)", async () => {
                // What a package upgrade does to a running program: its file replaced by a new inode.
                // nginx's binary is swapped for an identical copy, and apt's post-invoke hook is run as apt runs it
                // after dpkg has unpacked something (dpkg's trigger leaves /run/needrestart/unpacked).
                const before = (await L.tsshOk("systemctl show -p MainPID --value nginx")).trim();
                await L.tsshOk("cp -a /usr/sbin/nginx /usr/sbin/nginx.drill15e && mv -f /usr/sbin/nginx.drill15e /usr/sbin/nginx");
                const listed = await L.tsshOk("needrestart -b -r l 2>&1");
                assert.match(listed, /^NEEDRESTART-SVC: nginx\.service$/m, `needrestart does not see nginx's old binary:\n${listed}`);
                const hook = await L.tssh(
                    "install -d /run/needrestart && touch /run/needrestart/unpacked && DEBIAN_FRONTEND=noninteractive /usr/lib/needrestart/apt-pinvoke 2>&1",
                    { timeoutMs: 120_000 },
                );
                t.diagnostic(hook.out.trim().split("\n").slice(-3).join(" | "));
                const after = (await L.tsshOk("systemctl show -p MainPID --value nginx")).trim();
                assert.notEqual(after, before, `nginx was not restarted (pid ${before}):\n${hook.out}`);
                await L.waitFor("nginx answering after needrestart", 30_000, L.healthy);
            });

            await check(t, "15f a program started on another port by mistake is not reachable from outside (the server's own firewall)", async () => {
                const table = await L.tsshOk("nft list table inet phillymesh_chat");
                assert.match(table, /policy drop;/);
                await L.tsshOk("systemd-run --unit drill-15f --quiet python3 -m http.server 9999 --bind 0.0.0.0 --directory /srv");
                try {
                    await L.waitFor(
                        "the stray server on the guest's loopback",
                        15_000,
                        async () => (await L.tssh("curl -fsS -o /dev/null http://127.0.0.1:9999/")).code === 0,
                    );
                    const outside = await L.run("curl", ["-sS", "--max-time", "5", "-o", "/dev/null", `http://${L.IP}:9999/`], { timeoutMs: 15_000 });
                    t.diagnostic(`from the host: ${outside.out.trim()}`);
                    assert.notEqual(outside.code, 0, "port 9999 answers from outside");
                    assert.match(outside.out, /refused|reset|Couldn.t connect/i, `not refused: ${outside.out}`);
                } finally {
                    await L.tssh("systemctl stop drill-15f");
                }
            });
        },
    );
}

/** What root's re-run must not have touched: owner, group and mode of everything outside the data. */
const SNAPSHOT = "find /etc /usr /opt /var/www /var/lib /root /boot -xdev -printf '%p %U %G %m\\n' 2>/dev/null | sort";

export function plantedLinksDrill({ drill, check }: DrillSet): void {
    drill("16 planted links: with links planted by the synapse user, every step run again changes no file outside the data", 15, async (t) => {
        const syn = "/mnt/matrix_data/synapse";
        const asUser = (user: string, cmd: string) => L.tssh(`runuser -u ${user} -- sh -c ${L.shQuote(cmd)}`);
        await check(t, "16a the service users cannot put anything where root writes: the data root, secrets/, the PostgreSQL config", async () => {
            for (const [user, dir] of [
                ["synapse", syn],
                ["synapse", `${syn}/secrets`],
                ["synapse", "/etc/matrix-synapse"],
                ["postgres", "/mnt/matrix_data/postgresql/etc"],
                ["postgres", "$(ls -d /mnt/matrix_data/postgresql/etc/*/main/conf.d)"],
            ]) {
                const r = await asUser(user, `ln -s /etc/systemd/system ${dir}/drill16-link`);
                t.diagnostic(`${user} ln -s into ${dir}: ${r.out.trim()}`);
                assert.notEqual(r.code, 0, `${user} could plant a link in ${dir}`);
            }
        });
        // What synapse can plant: in its own directories (keys/, media/), links to root's files.
        const plant = [
            `mv ${syn}/keys/signing.key ${syn}/keys/signing.key.drill16`,
            `ln -s /etc/shadow ${syn}/keys/signing.key`,
            `ln -s /etc/systemd/system ${syn}/media/drill16-units`,
            `ln -s /etc/passwd ${syn}/media/drill16-passwd`,
        ].join(" && ");
        const unplant = `rm -f ${syn}/keys/signing.key ${syn}/media/drill16-units ${syn}/media/drill16-passwd && mv ${syn}/keys/signing.key.drill16 ${syn}/keys/signing.key`;
        await L.tsshOk(`${SNAPSHOT} > /root/drill16.before`, { timeoutMs: 120_000 });
        const planted = await asUser("synapse", plant);
        assert.equal(planted.code, 0, `planting as synapse: ${planted.out}`);
        try {
            const up = await L.deployUp(L.currentConfigFile(), "drill16-rerun", ["--rerun-steps"]);
            await check(t, "16b every step ran again and root refused the planted link (or never touched it)", () => {
                assert.match(up.out, /--rerun-steps: [1-9]\d* steps run again/);
                if (up.code !== 0) assert.match(up.out, /refusing to use \S+: it is a symlink/, L.tail(up.out));
                t.diagnostic(`up exit ${up.code}: ${/refusing to use [^\n]*/.exec(up.out)?.[0] ?? "no refusal"}`);
            });
            await check(t, "16c no file outside the data changed owner, group or mode; /etc/shadow is still root's 640", async () => {
                const diff = await L.tssh(
                    `${SNAPSHOT} > /root/drill16.after; join -j1 <(awk '{print $1, $2":"$3":"$4}' /root/drill16.before) <(awk '{print $1, $2":"$3":"$4}' /root/drill16.after) | awk '$2 != $3'`,
                    {
                        timeoutMs: 120_000,
                    },
                );
                assert.equal(diff.out.trim(), "", `changed owner/mode:\n${diff.out}`);
                assert.equal(
                    (await L.tsshOk("stat -c '%U:%G %a' /etc/shadow /etc/passwd /etc/systemd/system")).trim().split("\n").join(" | "),
                    "root:shadow 640 | root:root 644 | root:root 755",
                );
            });
        } finally {
            await L.tssh(unplant);
            await L.tssh("rm -f /root/drill16.before /root/drill16.after");
        }
        await check(t, "16d with the links gone, the server converges and keeps its signing key", async () => {
            await mustConverge(L.currentConfigFile(), "drill16-converge", "Synapse after drill 16");
            assert.equal((await L.tssh(`test -f ${syn}/keys/signing.key && ! test -L ${syn}/keys/signing.key`)).code, 0);
        });
    });
}

export function offsiteCopyDrill({ drill, check }: DrillSet): void {
    drill(
        "17 off-site copy: the backup goes only to the host whose key is pinned, and adds without replacing; with a passphrase it is encrypted",
        10,
        async (t) => {
            // The "off-site" target is the guest's own sshd on 127.0.0.1, reached by root's own key: what
            // counts is which host key ssh accepts, and that is the pinned one or none.
            const target = "root@127.0.0.1:/srv/drill17-offsite";
            const base = L.readJson(L.currentConfigFile());
            const goodKey = (await L.tsshOk("cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub")).trim();
            const wrongKey = (await L.tsshOk("d=$(mktemp -d) && ssh-keygen -q -t ed25519 -N '' -f $d/k && cut -d' ' -f1,2 $d/k.pub && rm -rf $d")).trim();
            assert.notEqual((await L.tssh("test -e /root/.ssh/id_ed25519")).code, 0, "root on the guest has a key of its own; the drill would replace it");
            await L.tsshOk(
                "install -d -m 700 /root/.ssh && ssh-keygen -q -t ed25519 -N '' -C drill17 -f /root/.ssh/id_ed25519 && " +
                    "cat /root/.ssh/id_ed25519.pub >> /root/.ssh/authorized_keys && install -d -m 700 /srv/drill17-offsite",
            );
            const backupOnce = async () => {
                await L.tssh("systemctl start phillymesh-chat-backup.service", { timeoutMs: 300_000 });
                return {
                    result: (await L.tsshOk("systemctl show -p Result --value phillymesh-chat-backup.service")).trim(),
                    log: (await L.tsshOk("journalctl -u phillymesh-chat-backup.service -n 8 -o cat --no-pager")).trim(),
                    copies: (await L.tsshOk("ls /srv/drill17-offsite")).trim(),
                };
            };
            try {
                await check(t, "17a with another host's key pinned, the copy is refused by ssh and nothing reaches the target", async () => {
                    const file = writeConfig(`${L.WORK}/${L.NAME}.offsite-wrong.json`, {
                        ...base,
                        config: { ...base.config, backupRsyncTarget: target, backupRsyncHostKey: wrongKey },
                    });
                    const up = await upAndWait(file, "drill17-wrong-key", { what: "Synapse (drill 17)" });
                    assert.equal(up.code, 0, L.tail(up.out));
                    const b = await backupOnce();
                    t.diagnostic(b.log.split("\n").slice(-2).join(" | "));
                    assert.notEqual(b.result, "success", `the backup with a wrong host key succeeded:\n${b.log}`);
                    assert.match(b.log, /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
                    assert.equal(b.copies, "", "something reached the target");
                });
                await check(
                    t,
                    "17b with the target's own key pinned, each backup adds a dated directory there; a file already there is never replaced",
                    async () => {
                        const file = writeConfig(`${L.WORK}/${L.NAME}.offsite-good.json`, {
                            ...base,
                            config: { ...base.config, backupRsyncTarget: target, backupRsyncHostKey: goodKey },
                        });
                        const up = await upAndWait(file, "drill17-good-key", { what: "Synapse (drill 17)" });
                        assert.equal(up.code, 0, L.tail(up.out));
                        const first = await backupOnce();
                        assert.equal(first.result, "success", first.log);
                        const dirs = first.copies.split("\n").filter(Boolean);
                        assert.equal(dirs.length, 1, `copies: ${first.copies}`);
                        // An older copy on the target, changed there (as an attacker with the key would want to
                        // undo): the next copy leaves it as it is.
                        await L.tsshOk(`echo kept > /srv/drill17-offsite/${dirs[0]}/marker && sleep 1`);
                        const second = await backupOnce();
                        assert.equal(second.result, "success", second.log);
                        assert.equal(second.copies.split("\n").filter(Boolean).length, 2, `copies: ${second.copies}`);
                        assert.equal((await L.tsshOk(`cat /srv/drill17-offsite/${dirs[0]}/marker`)).trim(), "kept");
                        assert.equal(
                            (await L.tssh("test -s /root/.ssh/known_hosts && grep -c 127.0.0.1 /root/.ssh/known_hosts")).out.trim() || "0",
                            "0",
                            "ssh wrote root's known_hosts",
                        );
                    },
                );
                await check(
                    t,
                    "17c with backupPassphrase, the dump and keys.tar are written encrypted (no user id readable in them), and the restore decrypts them",
                    async () => {
                        const file = writeConfig(`${L.WORK}/${L.NAME}.encrypted.json`, {
                            ...base,
                            secrets: { ...(base.secrets ?? {}), backupPassphrase: "drill17-correct-horse-battery-staple" },
                        });
                        const up = await upAndWait(file, "drill17-encrypted", { what: "Synapse (drill 17)" });
                        assert.equal(up.code, 0, L.tail(up.out));
                        await L.tsshOk("systemctl start phillymesh-chat-backup.service", { timeoutMs: 300_000 });
                        const dir = (await L.tsshOk("ls -d /mnt/matrix_data/backups/20* | sort | tail -n 1")).trim();
                        const files = (await L.tsshOk(`ls ${dir}`)).trim().split("\n");
                        t.diagnostic(`${dir}: ${files.join(" ")}`);
                        assert.deepEqual(files.filter((f) => f !== "media").sort(), ["keys.tar.gpg", "synapse.dump.gpg"]);
                        const readable = await L.tssh(`grep -c -a '@admin:' ${dir}/synapse.dump.gpg ${dir}/keys.tar.gpg`);
                        assert.doesNotMatch(readable.out, /:[1-9]/, `readable in the encrypted files: ${readable.out}`);
                        const restore = await L.tssh(`phillymesh-chat-restore ${dir}`, { timeoutMs: 300_000 });
                        assert.equal(restore.code, 0, restore.out);
                        assert.match(restore.out, /^restored /m);
                        await L.waitFor("Synapse after the encrypted restore", 120_000, L.healthy);
                    },
                );
            } finally {
                const back = await upAndWait(L.currentConfigFile(), "drill17-restore-config", { what: "Synapse after drill 17" });
                t.diagnostic(`config restored: exit ${back.code}`);
                await L.tssh(
                    "rm -rf /srv/drill17-offsite; sed -i '/ drill17$/d' /root/.ssh/authorized_keys; rm -f /root/.ssh/id_ed25519 /root/.ssh/id_ed25519.pub",
                );
            }
        },
    );
}
