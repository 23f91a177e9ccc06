// Trouble reaches the admin: drill 19. The daily status check (phillymesh-chat-status), run through
// its unit as its timer runs it, on a healthy server and then with a problem made on purpose each
// time: the newest backup aged 40 hours, Synapse stopped, and a stack whose disk threshold changed on
// a server that still has the certificate check the status check replaced. Each problem fails the
// unit (`systemctl --failed`) and is named, with what was found, in the journal (priority err) and in
// the status file. Registered by drills.test.ts.
import assert from "node:assert/strict";
import * as L from "./lib.ts";
import type { DrillSet } from "./harness.ts";
import { mustConverge, upAndWait, writeConfig } from "./converge.ts";

const UNIT = "phillymesh-chat-status.service";
const STATUS_FILE = "/var/lib/phillymesh-chat/status.json";
const BACKUPS = "/mnt/matrix_data/backups";
const CHECKS = ["certificate", "backup", "disk", "synapse"];

interface Status {
    checkedAt: string;
    ok: boolean;
    checks: { name: string; ok: boolean; detail: string }[];
}

/** Runs the check through its unit; its Result, what it logged at error priority, and the status file. */
async function runCheck(): Promise<{ result: string; errors: string; log: string; status: Status }> {
    const since = (await L.tsshOk("date '+%Y-%m-%d %H:%M:%S'")).trim();
    await L.tssh(`systemctl start ${UNIT}`, { timeoutMs: 120_000 });
    const journal = (priority: string) => L.tsshOk(`journalctl -u ${UNIT} --since '${since}' ${priority} -o cat --no-pager`);
    return {
        result: (await L.tsshOk(`systemctl show -p Result --value ${UNIT}`)).trim(),
        errors: (await journal("-p err")).trim(),
        log: (await journal("")).trim(),
        status: JSON.parse(await L.tsshOk(`cat ${STATUS_FILE}`)) as Status,
    };
}

const verdicts = (s: Status) => Object.fromEntries(s.checks.map((c) => [c.name, c.ok]));
const detail = (s: Status, name: string) => s.checks.find((c) => c.name === name)?.detail ?? "";
const failedUnits = async () => (await L.tsshOk("systemctl --failed --plain --no-legend")).trim();

/** The old certificate check as a server deployed before the status check has it: script, unit, timer enabled. */
const PLANT_OLD_CERT_CHECK = [
    "printf '#!/bin/bash\\necho old certificate check\\n' > /usr/local/sbin/phillymesh-chat-cert-check",
    "chmod 755 /usr/local/sbin/phillymesh-chat-cert-check",
    "printf '[Service]\\nType=oneshot\\nExecStart=/usr/local/sbin/phillymesh-chat-cert-check\\n' > /etc/systemd/system/phillymesh-chat-cert-check.service",
    "printf '[Timer]\\nOnCalendar=daily\\n\\n[Install]\\nWantedBy=timers.target\\n' > /etc/systemd/system/phillymesh-chat-cert-check.timer",
    "systemctl daemon-reload",
    "systemctl enable --now phillymesh-chat-cert-check.timer",
].join(" && ");
const OLD_CERT_CHECK_LEFT =
    "ls /usr/local/sbin/phillymesh-chat-cert-check /etc/systemd/system/phillymesh-chat-cert-check.* /etc/systemd/system/timers.target.wants/phillymesh-chat-cert-check.timer 2>/dev/null; " +
    "systemctl list-units --all --plain --no-legend 'phillymesh-chat-cert-check*' | grep -v not-found || true";

export function statusCheckDrill({ drill, check }: DrillSet): void {
    drill(
        "19 status check: a healthy server reports its certificate, backups, disks and Synapse ok; an old backup, a stopped Synapse, a lowered disk threshold each fail the daily check, named in the journal and the status file",
        12,
        async (t) => {
            await check(
                t,
                "19a on a healthy server the check, run through its unit, succeeds: all four checks ok in the status file, the timer enabled",
                async () => {
                    const r = await runCheck();
                    t.diagnostic(r.log.split("\n").join(" | "));
                    assert.equal(r.result, "success", r.log);
                    assert.equal(r.errors, "", "errors logged on a healthy server");
                    assert.deepEqual(
                        r.status.checks.map((c) => c.name),
                        CHECKS,
                    );
                    assert.ok(r.status.ok, JSON.stringify(r.status));
                    assert.deepEqual(verdicts(r.status), { certificate: true, backup: true, disk: true, synapse: true });
                    assert.ok(Date.now() - Date.parse(r.status.checkedAt) < 5 * 60_000, `checkedAt ${r.status.checkedAt}`);
                    // The sandbox lets it see what it checks: the certificate (a credential), the backups
                    // (root's, 0700), both file systems, Synapse on the loopback.
                    assert.match(detail(r.status, "certificate"), /valid until .* \(\d+ days\)/);
                    assert.match(detail(r.status, "backup"), /^newest backup 20\d{6}T\d{6}Z, \d+ hours old$/);
                    assert.match(detail(r.status, "disk"), /^\/mnt\/matrix_data \d+% used, \/ \d+% used \(the alert is at 85%\)$/);
                    assert.match(detail(r.status, "synapse"), /^Synapse answers http:\/\/127\.0\.0\.1:8008\/health$/);
                    const score = /Overall exposure level for \S+: ([\d.]+)/.exec(
                        await L.tsshOk(`systemd-analyze security --no-pager ${UNIT} 2>&1 | tail -n 1`),
                    );
                    L.note(`19a ${UNIT} exposure ${score?.[1]} (drill 15a holds it to 3.0)`);
                    assert.equal((await L.tsshOk("systemctl is-enabled phillymesh-chat-status.timer")).trim(), "enabled");
                    assert.equal((await L.tsshOk("systemctl is-active phillymesh-chat-status.timer")).trim(), "active");
                },
            );

            await check(
                t,
                "19b the newest backup aged 40 hours (touch -d): the unit fails, and the journal (err) and the status file name the backup and its age; its time restored, it passes",
                async () => {
                    const newest = (await L.tsshOk(`ls -1 ${BACKUPS} | grep -v partial | sort | tail -n 1`)).trim();
                    assert.match(newest, /^20\d{6}T\d{6}Z$/, `newest backup: ${newest}`);
                    const mtime = (await L.tsshOk(`stat -c %Y ${BACKUPS}/${newest}`)).trim();
                    await L.tsshOk(`touch -d '40 hours ago' ${BACKUPS}/${newest}`);
                    try {
                        const r = await runCheck();
                        t.diagnostic(r.errors.split("\n").join(" | "));
                        assert.equal(r.result, "exit-code", r.log);
                        assert.match(await failedUnits(), new RegExp(`^${UNIT} `, "m"));
                        assert.equal(r.status.ok, false);
                        assert.deepEqual(verdicts(r.status), { certificate: true, backup: false, disk: true, synapse: true });
                        const said = `newest backup ${BACKUPS}/${newest} is 40 hours old (the limit is 36)`;
                        assert.ok(detail(r.status, "backup").startsWith(said), detail(r.status, "backup"));
                        assert.match(r.errors, new RegExp(`^backup: ${said.replace(/[.()/]/g, "\\$&")}: the nightly backup is failing`, "m"));
                        assert.match(r.errors, /^1 of 4 checks failed$/m);
                    } finally {
                        await L.tsshOk(`touch -d @${mtime} ${BACKUPS}/${newest}`);
                    }
                    const again = await runCheck();
                    assert.equal(again.result, "success", again.log);
                    assert.doesNotMatch(await failedUnits(), /phillymesh-chat-status/);
                },
            );

            await check(
                t,
                "19c Synapse stopped: the check fails naming Synapse (connection refused); started again, it answers and the check passes",
                async () => {
                    await L.tsshOk("systemctl stop matrix-synapse", { timeoutMs: 120_000 });
                    try {
                        const r = await runCheck();
                        t.diagnostic(r.errors.split("\n").join(" | "));
                        assert.equal(r.result, "exit-code", r.log);
                        assert.deepEqual(verdicts(r.status), { certificate: true, backup: true, disk: true, synapse: false });
                        assert.match(detail(r.status, "synapse"), /^Synapse does not answer http:\/\/127\.0\.0\.1:8008\/health \(connection refused\)/);
                        assert.match(r.errors, /^synapse: Synapse does not answer .*journalctl -u matrix-synapse/m);
                    } finally {
                        await L.tsshOk("systemctl start matrix-synapse", { timeoutMs: 180_000 });
                        await L.waitFor("Synapse after drill 19c", 180_000, L.healthy);
                    }
                    const again = await runCheck();
                    assert.equal(again.result, "success", again.log);
                },
            );

            // An upgrade as an operator makes it: a server that still has the old certificate check,
            // and a config edit (diskAlertPercent) that runs the certificates step again in place.
            const base = L.readJson(L.currentConfigFile());
            try {
                await check(
                    t,
                    "19d diskAlertPercent 50 deployed to a server with the old certificate check: the step removes that unit and timer, and the check alerts at 50%",
                    async () => {
                        await L.tsshOk(PLANT_OLD_CERT_CHECK);
                        assert.notEqual((await L.tsshOk(OLD_CERT_CHECK_LEFT)).trim(), "", "the old check was not planted");
                        const file = writeConfig(`${L.WORK}/${L.NAME}.status-disk.json`, { ...base, config: { ...base.config, diskAlertPercent: "50" } });
                        const up = await upAndWait(file, "drill19-disk-threshold", { what: "Synapse (drill 19)" });
                        assert.equal(up.code, 0, L.tail(up.out));
                        assert.match(up.out, /the certificate check is now part of the daily status check/);
                        assert.equal((await L.tsshOk(OLD_CERT_CHECK_LEFT)).trim(), "", "the old certificate check is still there");
                        assert.equal((await L.tsshOk("grep -c '^DISK_ALERT_PERCENT=.50.$' /usr/local/sbin/phillymesh-chat-status")).trim(), "1");
                        const r = await runCheck();
                        assert.equal(r.result, "success", r.log);
                        assert.match(detail(r.status, "disk"), /\(the alert is at 50%\)$/);
                    },
                );
            } finally {
                await L.tssh(
                    "systemctl disable --now phillymesh-chat-cert-check.timer 2>/dev/null; rm -f /usr/local/sbin/phillymesh-chat-cert-check /etc/systemd/system/phillymesh-chat-cert-check.*; systemctl daemon-reload",
                );
                await mustConverge(L.currentConfigFile(), "drill19-restore-config", "Synapse after drill 19");
            }

            await check(t, "19e back to the stack's config: the check is green again, alerting at 85%, and no longer in systemctl --failed", async () => {
                const r = await runCheck();
                assert.equal(r.result, "success", r.log);
                assert.ok(r.status.ok, JSON.stringify(r.status));
                assert.match(detail(r.status, "disk"), /\(the alert is at 85%\)$/);
                assert.doesNotMatch(await failedUnits(), /phillymesh-chat-status/);
            });
        },
    );
}
