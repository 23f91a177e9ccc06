// Synapse's Python dependencies get their security releases: drill 18. The weekly refresh builds the
// running release again with the newest dependencies its constraints allow, switches and restarts
// (18a-c); the daily audit checks every package against the advisories published on the feed (the
// testbed's stand-in of PyPI's JSON API, testbed/pypi-proxy.py, which serves what this drill plants
// in $B/pypi/advisories.json) and refreshes the same day when one is in force (18d-f).
// Registered by drills.test.ts.
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import * as L from "./lib.ts";
import type { DrillSet } from "./harness.ts";

/** A dependency the first install could have got at an older release (pure Python, allowed by Synapse). */
const PLANTED = { name: "attrs", version: "23.2.0" };
/** The file the PyPI stand-in reads its advisories from on each request. */
const ADVISORIES = `${L.B}/pypi/advisories.json`;

/** An advisory in PyPI's JSON API format (warehouse docs/dev/api-reference/json.rst). */
const advisory = (id: string, fixedIn: string[]) => ({
    aliases: [],
    details: `Planted by drill 18 (${id}).`,
    summary: "planted",
    fixed_in: fixedIn,
    id,
    link: `https://osv.dev/vulnerability/${id}`,
    source: "osv",
    withdrawn: null,
});

function plant(advisories: Record<string, Record<string, unknown[]>>): void {
    writeFileSync(ADVISORIES, JSON.stringify(advisories));
}

const current = async () => (await L.tsshOk("readlink /opt/synapse/current")).trim();
const venvs = async () => (await L.tsshOk("ls /opt/synapse/venvs")).trim();
const synapsePid = async () => (await L.tsshOk("systemctl show -p MainPID --value matrix-synapse")).trim();
const depVersion = async (venv: string) =>
    (await L.tsshOk(`${venv}/bin/python -c 'import importlib.metadata as m; print(m.version("${PLANTED.name}"))'`)).trim();

/** Runs a unit to its end; its Result and what it logged meanwhile. */
async function runUnit(unit: string): Promise<{ result: string; log: string }> {
    const since = (await L.tsshOk("date '+%Y-%m-%d %H:%M:%S'")).trim();
    await L.tssh(`systemctl start ${unit}`, { timeoutMs: 600_000 });
    return {
        result: (await L.tsshOk(`systemctl show -p Result --value ${unit}`)).trim(),
        log: (await L.tsshOk(`journalctl -u ${unit} --since '${since}' -o cat --no-pager`)).trim(),
    };
}
const refresh = () => runUnit("phillymesh-chat-synapse-refresh.service");
const audit = () => runUnit("phillymesh-chat-advisory-audit.service");

/** The running venv gets the old release of PLANTED, as a venv built months ago would have (by hand, as root). */
async function plantOldDependency(venv: string): Promise<void> {
    await L.tsshOk(
        `${venv}/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --only-binary :all: ` +
            `--index-url https://pypi.test:3143/simple/ '${PLANTED.name}==${PLANTED.version}'`,
        { timeoutMs: 180_000 },
    );
    assert.equal(await depVersion(venv), PLANTED.version);
}

const escaped = (s: string) => s.replace(/[.+]/g, "\\$&");

export function dependencyRefreshDrill({ drill, check }: DrillSet): void {
    drill(
        "18 dependency refresh: an outdated Python dependency is replaced within Synapse's release, weekly and within a day of an advisory; an advisory a rebuild cannot fix fails the audit, naming what to do",
        20,
        async (t) => {
            rmSync(ADVISORIES, { force: true });
            const before = await current();
            await plantOldDependency(before);
            const pidBefore = await synapsePid();
            let refreshed = "";
            await check(
                t,
                `18a the weekly job (run now through its unit) builds the same release with ${PLANTED.name} newer than ${PLANTED.version}, switches and restarts Synapse`,
                async () => {
                    const r = await refresh();
                    t.diagnostic(
                        r.log
                            .split("\n")
                            .filter((l) => /newer releases|healthy|nothing to do/.test(l))
                            .join(" | "),
                    );
                    assert.equal(r.result, "success", r.log);
                    assert.match(r.log, new RegExp(`newer releases: .*${PLANTED.name} ${escaped(PLANTED.version)} -> `));
                    refreshed = await current();
                    assert.notEqual(refreshed, before);
                    assert.match(refreshed, /^\/opt\/synapse\/venvs\/\d+\.\d+\.\d+\+\d{8}T\d{6}Z$/);
                    assert.equal((await L.tsshOk("readlink /opt/synapse/previous")).trim(), before);
                    assert.notEqual(await depVersion(refreshed), PLANTED.version);
                    assert.notEqual(await synapsePid(), pidBefore, "Synapse was not restarted");
                    await L.waitFor("Synapse on the refreshed venv", 60_000, L.healthy);
                    assert.equal((await L.tsshOk(`stat -c '%U' ${refreshed} ${refreshed}/bin/python3 | sort -u`)).trim(), "root");
                },
            );
            await check(t, "18b run again, nothing newer: the job says so and leaves no new venv behind", async () => {
                const listed = await venvs();
                const r = await refresh();
                assert.equal(r.result, "success", r.log);
                assert.match(r.log, /nothing to do/);
                assert.equal(await venvs(), listed);
                assert.equal(await current(), refreshed);
            });
            await check(t, "18c every step run again keeps the refreshed venv and does not restart Synapse", async () => {
                const pid = await synapsePid();
                const up = await L.deployUp(L.currentConfigFile(), "drill18-rerun", ["--rerun-steps"]);
                assert.equal(up.code, 0, L.tail(up.out));
                assert.equal(await current(), refreshed);
                assert.equal(await synapsePid(), pid, "the synapse step restarted Synapse");
            });

            try {
                await check(t, "18d the daily audit's timer is on; with no advisory in force it builds nothing and restarts nothing", async () => {
                    assert.equal((await L.tssh("systemctl is-enabled phillymesh-chat-advisory-audit.timer")).out.trim(), "enabled");
                    const listed = await venvs();
                    const pid = await synapsePid();
                    const r = await audit();
                    assert.equal(r.result, "success", r.log);
                    assert.match(r.log, /checked \d+ packages against https:\/\/pypi\.test:3143\/pypi/);
                    assert.match(r.log, /no published advisory against Synapse [\d.]+'s virtualenv/);
                    assert.equal(await venvs(), listed);
                    assert.equal(await synapsePid(), pid);
                });

                await check(
                    t,
                    `18e an advisory published against ${PLANTED.name} ${PLANTED.version}, fixed in a release Synapse allows: the audit rebuilds, switches and restarts the same day`,
                    async () => {
                        const running = await current();
                        await plantOldDependency(running);
                        plant({ [PLANTED.name]: { [PLANTED.version]: [advisory("PYSEC-DRILL-18E", ["24.1.0"])] } });
                        const pid = await synapsePid();
                        const r = await audit();
                        t.diagnostic(
                            r.log
                                .split("\n")
                                .filter((l) => /advisory|newer releases|no longer/.test(l))
                                .join(" | "),
                        );
                        assert.equal(r.result, "success", r.log);
                        assert.match(r.log, new RegExp(`advisory PYSEC-DRILL-18E against ${PLANTED.name} ${escaped(PLANTED.version)}, fixed in 24\\.1\\.0`));
                        assert.match(r.log, new RegExp(`newer releases: .*${PLANTED.name} ${escaped(PLANTED.version)} -> `));
                        assert.match(r.log, /no longer affected by: PYSEC-DRILL-18E/);
                        const now = await current();
                        assert.notEqual(now, running);
                        assert.notEqual(await depVersion(now), PLANTED.version);
                        assert.notEqual(await synapsePid(), pid, "Synapse was not restarted");
                        await L.waitFor("Synapse on the audited venv", 60_000, L.healthy);
                    },
                );

                await check(
                    t,
                    "18f an advisory against Synapse itself: the audit fails naming synapseVersion, builds nothing, and Synapse keeps running; withdrawn, it passes again",
                    async () => {
                        const version = (await L.tsshOk(`${await current()}/bin/python -c 'import synapse; print(synapse.__version__)'`)).trim();
                        plant({ "matrix-synapse": { [version]: [advisory("PYSEC-DRILL-18F", ["99.0.0"])] } });
                        const listed = await venvs();
                        const pid = await synapsePid();
                        const r = await audit();
                        assert.equal(r.result, "exit-code", r.log);
                        assert.match(
                            r.log,
                            new RegExp(
                                `advisory PYSEC-DRILL-18F against Synapse ${escaped(version)} itself .*set synapseVersion to a fixed release in the stack config`,
                            ),
                        );
                        assert.match(r.log, /1 advisory still in force against Synapse's virtualenv/);
                        assert.equal((await L.tssh("systemctl is-failed phillymesh-chat-advisory-audit.service")).out.trim(), "failed");
                        assert.equal(await venvs(), listed);
                        assert.equal(await synapsePid(), pid);
                        assert.ok(await L.healthy(), "Synapse stopped answering");
                        // The advisory withdrawn upstream: the next run is clean again.
                        plant({ "matrix-synapse": { [version]: [{ ...advisory("PYSEC-DRILL-18F", ["99.0.0"]), withdrawn: "2026-12-01T00:00:00Z" }] } });
                        const again = await audit();
                        assert.equal(again.result, "success", again.log);
                        assert.match(again.log, /no published advisory/);
                    },
                );
            } finally {
                rmSync(ADVISORIES, { force: true });
                await L.tssh("systemctl reset-failed phillymesh-chat-advisory-audit.service");
            }
        },
    );
}
