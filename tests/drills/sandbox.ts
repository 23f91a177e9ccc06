// No one in, even when something else breaks: drill 15. Should Synapse (which decodes images and
// parses JSON from any server) be taken over, or a backup go wrong, the units the program installs
// hold it in: `systemd-analyze security` scores at most 3.0, Synapse's own process cannot write
// outside its data, has no capabilities and a system-call filter, and when memory runs out the
// kernel picks Synapse before PostgreSQL and sshd. Registered by drills.test.ts.
import assert from "node:assert/strict";
import * as L from "./lib.ts";
import type { DrillSet } from "./harness.ts";

/** Every unit the program installs that runs a program, with the exposure it may have at most. */
const UNITS = ["matrix-synapse.service", "phillymesh-chat-backup.service", "phillymesh-chat-cert-check.service"];
const MAX_EXPOSURE = 3.0;

/** Paths a taken-over Synapse would write to stay in: units, its own code, config, root's programs. */
const OUTSIDE = ["/etc/systemd/system", "/opt/synapse/current", "/etc/matrix-synapse", "/usr/local/sbin", "/var/www/element", "/root"];

export function sandboxDrill({ drill, check }: DrillSet): void {
    drill("15 sandbox: every unit scores at most 3.0; a taken-over Synapse writes only its data; OOM kills Synapse first", 10, async (t) => {
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

        await check(t, "15b the units still do their work in their sandboxes: a backup and the certificate check run to success", async () => {
            for (const unit of ["phillymesh-chat-backup.service", "phillymesh-chat-cert-check.service"]) {
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
                const own = await asSynapse(
                    `touch "$(readlink -f /proc/${pid}/cwd)/media/.drill-15c" && rm "$(readlink -f /proc/${pid}/cwd)/media/.drill-15c"`,
                );
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
            assert.deepEqual(set.trim().split("\n"), ["-500", "-900", "500"], `OOMScoreAdjust of ${pg}, ssh, synapse`);
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
    });
}
