// A step that fails half way: drill 8, a Synapse bump whose package proxy is cut mid-install leaves
// the old Synapse serving, and the same up converges once the proxy is back; a setting that rode
// along with a failed bump still reaches Synapse later. Registered by drills.test.ts.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import * as L from "./lib.ts";
import { CutProxy, PYPI_PROXY } from "./cutproxy.ts";
import { recordCurrent, writeConfig } from "./converge.ts";
import type { DrillSet } from "./harness.ts";

/** The suffix of a venv rebuilt by phillymesh-chat-synapse-refresh (the same release, newer dependencies). */
const REFRESHED = /\+\d{8}T\d{6}Z$/;

export function halfWayDrill({ drill, check }: DrillSet): void {
    drill(
        "8 a step that fails half way: the package proxy cut mid-install of a Synapse bump fails naming the synapse step and pip's error, the old Synapse keeps serving; the same up converges once the proxy is back",
        30,
        async (t) => {
            const base = L.readJson(L.currentConfigFile());
            const from: string = base.config.synapseVersion;
            const to = process.env.DRILL_SYNAPSE_BUMP ?? "1.163.2";
            assert.notEqual(from, to, `the stack already runs ${to}: set DRILL_SYNAPSE_BUMP to another version`);
            assert.equal(await L.synapseVersion(), from);
            const w = await L.seedWorld(L.randomTag("d8"));
            const mainPid = async () => (await L.tsshOk("systemctl show -p MainPID --value matrix-synapse")).trim();
            const pidBefore = await mainPid();
            // pip's own cache on the server may already hold the new release (an earlier run of this drill):
            // emptied, so that the new release's files really come through the proxy that is cut.
            await L.tsshOk("rm -rf /root/.cache/pip /var/cache/synapse-build/pip");

            // The PyPI proxy, through a forwarder that is cut when the install is well under way: pip has
            // fetched the new release's own wheel (matrix_synapse-<to>-*.whl, ~8.7 MiB) and CUT_FROM bytes
            // in all, and is CUT_INTO bytes into the next file it downloads (a dependency: the whole install
            // fetches ~110 files, ~39 MiB, with pip's cache emptied).
            const CUT_FROM = 16 * 1048576;
            const CUT_INTO = 512 * 1024;
            const release = new RegExp(`/matrix_synapse-${to.replaceAll(".", "\\.")}[-.][^/]*\\.(whl|tar\\.gz)$`);
            const isFile = (path: string) => /\.(whl|tar\.gz|zip)$/.test(path);
            const proxy = await CutProxy.start({
                cutWhen: (s, req) =>
                    req && isFile(req.path) && req.bytes >= CUT_INTO && s.bytesToGuest - req.bytes >= CUT_FROM && s.requests.some((q) => release.test(q.path))
                        ? `${CUT_INTO} bytes into ${req.path.split("/").pop()}, ${s.requests.length} requests in`
                        : false,
            });
            L.note(`cut proxy on ${proxy.indexUrl} (to the PyPI proxy ${PYPI_PROXY.host}:${PYPI_PROXY.port})`);
            proxy.whenCut().then(
                (c) => L.note(`proxy cut: ${c.reason}`),
                () => undefined,
            );
            const badFile = `${L.WORK}/${L.NAME}.bad.json`;
            writeConfig(badFile, { ...base, config: { ...base.config, synapseVersion: to, pipIndexUrl: proxy.indexUrl } });
            const events = `${L.LOGS}/d8-cut.events.json`;
            let r: L.RunResult;
            try {
                r = await L.deployUp(badFile, "d8-up-proxy-cut", ["--events", events]);
            } finally {
                await proxy.close();
            }
            const cut = proxy.cutAt;
            t.diagnostic(`proxy: ${proxy.summary()}`);
            L.note(`proxy: ${proxy.summary()}`);
            type StepEvent = { urn: string; type: string; ops: string[]; failed?: boolean; start?: number };
            const steps = existsSync(events)
                ? L.readJson<StepEvent[]>(events).filter((s) => s.type.endsWith("Command") && s.ops.some((o) => o !== "same"))
                : [];
            const stepName = (s: StepEvent) => s.urn.split("::").pop()!;
            const ran = steps.map((s) => `${stepName(s)}${s.failed ? " FAILED" : ""}`);
            const synStart = steps.find((s) => stepName(s) === "chat-synapse-run")?.start ?? Infinity;
            t.diagnostic(`cut up: exit ${r.code}; steps run: ${ran.join(", ") || "none"}`);
            const pipError = L.tail(r.out, 400)
                .split("\n")
                .filter((l) => /ERROR|Error|rror:/.test(l))
                .slice(-4)
                .join(" | ");
            t.diagnostic(`pip: ${pipError}`);
            await check(
                t,
                "8a the proxy is cut mid-install (the new release's wheel and 16 MiB fetched, a dependency part way); deploy.ts up exits non-zero, naming the synapse step and pip's error; no later step runs",
                () => {
                    assert.ok(cut, `the proxy was never cut: ${proxy.summary()}`);
                    // Mid-install, not before: the release's wheel and CUT_FROM bytes had come through, and a
                    // file was partly through when the connection was reset.
                    assert.ok(cut.requests.length >= 10, `only ${cut.requests.length} requests before the cut`);
                    assert.ok(
                        cut.requests.some((q) => release.test(q.path) && q.bytes > CUT_INTO),
                        `the release's wheel was not fetched before the cut: ${proxy.summary()}`,
                    );
                    assert.ok(isFile(cut.during?.path ?? "") && (cut.during?.bytes ?? 0) >= CUT_INTO, proxy.summary());
                    assert.ok(cut.bytesToGuest >= CUT_FROM + CUT_INTO && cut.open >= 1, proxy.summary());
                    assert.notEqual(r.code, 0);
                    assert.match(r.out, /chat-synapse-run/);
                    assert.match(r.out, /\[synapse\] FAILED \(exit \d+\)/);
                    assert.match(
                        r.out,
                        /pip could not install Synapse \S+ from \S+(, wheels only)? \(its error is above\); the running Synapse was not touched/,
                    );
                    // pip's own words: the broken download, or the refused connection of its retry.
                    assert.match(
                        r.out,
                        /Connection reset by peer|ConnectionResetError|IncompleteRead|Connection broken|Connection refused|Max retries exceeded/,
                    );
                    assert.match(r.out, new RegExp(`(10\\.250\\.0\\.1|pypi\\.test).{0,40}${proxy.port}|matrix_synapse-${to.replaceAll(".", "\\.")}`));
                    // Steps before it may run when their own inputs changed; none after it, and no other failure.
                    assert.deepEqual(
                        ran.filter((x) => x.endsWith(" FAILED")),
                        ["chat-synapse-run FAILED"],
                    );
                    assert.deepEqual(steps.filter((s) => stepName(s) !== "chat-synapse-run" && (s.start ?? 0) >= synStart).map(stepName), []);
                },
            );
            await check(
                t,
                `8b the running Synapse was not restarted and still answers ${from}, /opt/synapse/current untouched, the half-made ${to} venv not marked complete, users still log in`,
                async () => {
                    assert.equal(await L.synapseVersion(), from);
                    assert.equal(await mainPid(), pidBefore, "Synapse's main process changed: it was stopped or restarted by the failed run");
                    const cur = (
                        await L.tsshOk(
                            "readlink /opt/synapse/current; ls /opt/synapse/venvs; test -f /opt/synapse/venvs/" +
                                to +
                                "/.complete && echo complete || echo incomplete",
                        )
                    )
                        .trim()
                        .split("\n");
                    t.diagnostic(`after the cut: current -> ${cur[0]}; venvs: ${cur.slice(1, -1).join(" ")}; ${to}: ${cur.at(-1)}`);
                    // (The weekly refresh may have rebuilt the running release as <version>+<time>.)
                    assert.equal(cur[0].replace(REFRESHED, ""), `/opt/synapse/venvs/${from}`);
                    assert.equal(cur.at(-1), "incomplete");
                    assert.deepEqual(await L.checkWorld(w), []);
                },
            );

            // The proxy is back (a fresh forwarder on the same port) and the operator runs the same `up` again.
            const back = await CutProxy.start({ port: proxy.port });
            let r2: L.RunResult;
            try {
                r2 = await L.deployUp(badFile, "d8-up-proxy-back");
            } finally {
                await back.close();
            }
            t.diagnostic(`proxy back: ${back.summary()}`);
            const goodFile = `${L.WORK}/${L.NAME}.bumped.json`;
            writeConfig(goodFile, { ...base, config: { ...base.config, synapseVersion: to } });
            // What later drills deploy with: the bumped release from the testbed's own index (the forwarder
            // is gone after this drill; only pipIndexUrl differs, so their next `up` re-runs the step once).
            if (r2.code === 0) recordCurrent(goodFile);
            await check(
                t,
                `8c the same up with the proxy back converges: the cut file fetched in full, ${to} answering, ${from} kept for a rollback, a preview then shows no changes`,
                async () => {
                    assert.equal(r2.code, 0, L.tail(r2.out));
                    // The file that was cut now came through the forwarder in full. (The files completed before
                    // the cut, the release's wheel among them, may come from pip's own cache instead: it keeps
                    // whole responses only.)
                    assert.ok(back.state.requests.length > 0, "nothing came through the forwarder");
                    if (cut?.during) {
                        const again = back.state.requests.find((q) => q.path === cut.during!.path);
                        assert.ok(again && again.bytes > cut.during.bytes, `${cut.during.path} did not come through again in full: ${back.summary()}`);
                    }
                    await L.waitFor(`Synapse ${to}`, 60_000, async () => (await L.synapseVersion()) === to);
                    const v = (
                        await L.tsshOk(`readlink /opt/synapse/current; ls /opt/synapse/venvs; test -f /opt/synapse/venvs/${to}/.complete && echo complete`)
                    )
                        .trim()
                        .split("\n");
                    assert.equal(v[0], `/opt/synapse/venvs/${to}`);
                    assert.equal(v.at(-1), "complete");
                    assert.deepEqual(
                        v
                            .slice(1, -1)
                            .map((n) => n.replace(REFRESHED, ""))
                            .sort(),
                        [from, to].sort(),
                    );
                    assert.deepEqual(await L.checkWorld(w, { login: true }), []);
                    const p = await L.deploy("preview", ["--config", badFile, "--expect-no-changes"], { label: "d8-preview-after" });
                    assert.equal(p.code, 0, L.tail(p.out));
                },
            );
            if (r2.code !== 0) return;

            // The same failure once more, now from a dead index (nothing fetched at all) with a setting
            // riding along (maxUploadSizeMb 50 -> 49); then the operator drops the bump and keeps the
            // setting: does the setting reach the running Synapse?
            const mb = 49;
            const withSetting = { ...base.config, synapseVersion: to, maxUploadSizeMb: String(mb) };
            const bad2File = `${L.WORK}/${L.NAME}.bad2.json`;
            writeConfig(bad2File, { ...base, config: { ...withSetting, synapseVersion: "1.999.0", pipIndexUrl: L.DEAD_INDEX } });
            const r3 = await L.deployUp(bad2File, "d8-up-dead-index-with-setting");
            assert.notEqual(r3.code, 0, "the second bump from the dead index did not fail");
            const good2File = `${L.WORK}/${L.NAME}.bumped2.json`;
            writeConfig(good2File, { ...base, config: withSetting });
            const r4 = await L.deployUp(good2File, "d8-up-setting-only");
            if (r4.code === 0) recordCurrent(good2File);
            await check(
                t,
                `8d a setting changed together with a failed bump reaches the running Synapse once the step succeeds (max upload ${mb} MB)`,
                async () => {
                    assert.equal(r4.code, 0, L.tail(r4.out));
                    const admin = await L.adminLogin();
                    const cfg = await L.mxOk("GET", "/_matrix/client/v1/media/config", { token: admin.token });
                    const file = (await L.tsshOk("grep '^max_upload_size' /etc/matrix-synapse/homeserver.yaml")).trim();
                    assert.equal(
                        cfg["m.upload.size"],
                        mb * 1024 * 1024,
                        `homeserver.yaml says "${file}" but the running Synapse still enforces ${cfg["m.upload.size"]} bytes: ` +
                            "the failed run wrote the file, the next run saw no change and did not restart Synapse",
                    );
                },
            );
            await check(t, `8e the previous release (${from}) is still kept for a rollback after a later run of the synapse step`, async () => {
                const venvs = (await L.tsshOk("ls /opt/synapse/venvs")).trim().split("\n");
                assert.ok(venvs.map((n) => n.replace(REFRESHED, "")).includes(from), `/opt/synapse/venvs holds only ${venvs.join(", ")}`);
            });
            await check(
                t,
                '8f the bump from a dead index (nothing fetched at all) failed naming the synapse step, pip\'s "No matching distribution" and the dead index',
                () => {
                    assert.match(r3.out, /chat-synapse-run/);
                    assert.match(r3.out, /\[synapse\] FAILED \(exit \d+\)/);
                    assert.match(r3.out, /No matching distribution found for matrix-synapse|Could not find a version that satisfies/);
                    assert.match(r3.out, /pypi\.test.*3999|3999.*pypi\.test|Connection refused/);
                },
            );
        },
    );
}
