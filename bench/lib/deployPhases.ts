// The run's deploy phases: the federated partner (bench3) brought up and checked, the timed cold
// deploy of a server from an empty host, the no-op `deploy.ts up` and the Synapse version bump with
// its downtime measured through nginx.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fetch } from "undici";
import { round1, sleep } from "./figures.ts";
import { adminBatch, agent, call } from "./matrix.ts";
import { configFor, FROM_VERSION, homeserver, PARTNER, saveToken, TO_VERSION, TUNED } from "./servers.ts";
import { B, REPO, boot, deploy, deployUp, destroy, isRunning, say, type Server } from "./testbed.ts";
import type { Homeserver } from "./workload.ts";

/** A server that is up, deployed and federating with the partner (bench3 can query its users' keys). */
async function waitFederating(partner: Homeserver, target: Homeserver, timeoutMs = 180_000): Promise<number> {
    const t0 = performance.now();
    let last = "";
    while (performance.now() - t0 < timeoutMs) {
        try {
            // The partner's admin asks for the device keys of the new server's admin: a federation
            // query (user/keys/query) that Synapse answers with "failures" naming a server it could
            // not reach. (Not a profile: the program shows profiles only to users who share a room.)
            const user = `@admin:${target.domain}`;
            const [[st, body]] = await adminBatch(partner.admin, [["POST", "/_matrix/client/v3/keys/query", { device_keys: { [user]: [] } }]]);
            const failures = (body.failures ?? {}) as Record<string, unknown>;
            const keys = (body.device_keys ?? {}) as Record<string, unknown>;
            if (st === 200 && Object.keys(failures).length === 0 && user in keys) return (performance.now() - t0) / 1000;
            last = `${st} ${JSON.stringify(body)}`;
        } catch (e) {
            last = String(e);
        }
        await sleep(1000);
    }
    throw new Error(`${partner.domain} cannot reach ${target.domain} over federation: ${last}`);
}

/** A hash of the program's files: a no-op up is only a no-op when the program did not change since the deploy. */
function programHash(): string {
    const files: string[] = [];
    const walk = (d: string) => {
        for (const e of fs.readdirSync(path.join(REPO, d), { withFileTypes: true })) {
            const rel = path.join(d, e.name);
            if (e.isDirectory()) walk(rel);
            else files.push(rel);
        }
    };
    for (const d of ["components", "files"]) walk(d);
    files.push("index.ts", "Pulumi.yaml");
    const h = crypto.createHash("sha256");
    for (const f of files.sort()) h.update(f + "\0" + fs.readFileSync(path.join(REPO, f)) + "\0");
    return h.digest("hex").slice(0, 16);
}
/** The program's hash when bench1 was last cold-deployed ("" before): the no-op up compares with it. */
let deployedProgram = "";

/** bench3 running and deployed (a no-op when it is), answering with a certificate of today's test CA. */
export async function ensurePartner(): Promise<Homeserver> {
    const t0 = performance.now();
    if (!isRunning(PARTNER.name)) {
        // Leftovers of a guest that is gone (the host rebooted): clear them, keep its data disk.
        if (fs.existsSync(`${B}/run-${PARTNER.name}`)) await destroy(PARTNER, false);
        await boot(PARTNER);
    }
    const r = await deployUp(PARTNER, await configFor(PARTNER, FROM_VERSION, {}));
    say(`${PARTNER.name}: deployed (${JSON.stringify(r.changes)}) in ${((performance.now() - t0) / 1000).toFixed(0)}s`);
    if (!(await answersTls(`https://matrix.${PARTNER.name}.test`))) {
        // Its certificate is from an earlier ACME CA (pebble makes a new one each start, e.g. after
        // the host rebooted): the partner's clients would all fail. Start it over, from an empty disk.
        say(`${PARTNER.name}: not answering with a certificate of today's test CA; deploying it again from nothing`);
        await destroy(PARTNER, true);
        await deploy("forget", PARTNER.name);
        await boot(PARTNER);
        const again = await deployUp(PARTNER, await configFor(PARTNER, FROM_VERSION, {}));
        say(`${PARTNER.name}: deployed (${JSON.stringify(again.changes)})`);
        if (!(await answersTls(`https://matrix.${PARTNER.name}.test`)))
            throw new Error(`${PARTNER.name} does not answer at https://matrix.${PARTNER.name}.test`);
    }
    return homeserver(PARTNER);
}

/** The homeserver answers the client API over TLS that this run trusts. */
async function answersTls(base: string): Promise<boolean> {
    try {
        const r = await fetch(`${base}/_matrix/client/versions`, { dispatcher: agent, signal: AbortSignal.timeout(15_000) });
        return r.ok;
    } catch (e) {
        say(`${base}: ${String((e as Error).cause ?? e)}`);
        return false;
    }
}

export interface ColdDeploy {
    coldDeploySeconds: number;
    breakdown: { destroySeconds: number; forgetStateSeconds: number; bootSeconds: number; upSeconds: number; federationSeconds: number };
    changes: Record<string, number>;
}

/** Empty host → federating homeserver: destroy (data wiped), forget the stack, boot, deploy.ts up. */
export async function coldDeploy(s: Server, extra: Record<string, unknown>, partner: Homeserver): Promise<ColdDeploy> {
    let t = performance.now();
    const lap = () => {
        const now = performance.now();
        const d = (now - t) / 1000;
        t = now;
        return Math.round(d * 10) / 10;
    };
    await destroy(s, true);
    const destroySeconds = lap();
    // Forget the stack's state, not `destroy`: the guest is gone already, and a destroy would run the
    // steps' teardowns over ssh (the worker steps have some), retrying against no machine for minutes.
    await deploy("forget", s.name);
    const forgetStateSeconds = lap();
    say(`${s.name}: cold deploy (boot + deploy.ts up + first federation request)`);
    const tCold = performance.now();
    await boot(s);
    const bootSeconds = lap();
    if (s === TUNED) deployedProgram = programHash();
    const up = await deployUp(s, await configFor(s, FROM_VERSION, extra));
    const upSeconds = lap();
    const h = homeserver(s);
    const federationSeconds = round1(await waitFederating(partner, h))!;
    saveToken(partner.server.name, partner.admin);
    const coldDeploySeconds = round1((performance.now() - tCold) / 1000)!;
    say(`${s.name}: cold deploy ${coldDeploySeconds}s (boot ${bootSeconds}s, up ${upSeconds}s, federation ${federationSeconds}s)`);
    return { coldDeploySeconds, breakdown: { destroySeconds, forgetStateSeconds, bootSeconds, upSeconds, federationSeconds }, changes: up.changes };
}

/** `deploy.ts up` again with the same config (time, changes), then `preview --expect-no-changes`. */
export async function noopUp(s: Server, extra: Record<string, unknown>) {
    const cfg = await configFor(s, FROM_VERSION, extra);
    say(`${s.name}: no-op deploy.ts up`);
    const up = await deployUp(s, cfg);
    const pv = await deploy("preview", s.name, ["--expect-no-changes"]);
    const res = {
        noopUpSeconds: round1(up.seconds)!,
        noopChanges: up.changed,
        noopUpSummary: up.changes,
        previewSeconds: round1(pv.seconds),
        previewExpectNoChangesExit: pv.code,
        previewSummary: pv.changes,
        // false: the program's files changed (someone edited the work tree) between the cold deploy and this up.
        programUnchangedSinceDeploy: deployedProgram === "" ? null : deployedProgram === programHash(),
    };
    say(`${s.name}: no-op up ${res.noopUpSeconds}s, ${res.noopChanges} changes; preview --expect-no-changes exit ${pv.code} in ${res.previewSeconds}s`);
    return res;
}

/** The version bump FROM_VERSION -> TO_VERSION with `deploy.ts up`, `/_matrix/client/versions` polled every 0.2 s. */
export async function bump(h: Homeserver, extra: Record<string, unknown>) {
    const s = h.server;
    const cfg = await configFor(s, TO_VERSION, extra, `${s.name}-bump`);
    const polls: { t: number; ok: boolean; ms: number }[] = [];
    let stop = false;
    const t0 = performance.now();
    const poller = (async () => {
        while (!stop) {
            const start = performance.now();
            let ok = false;
            try {
                const r = await fetch(`${h.base}/_matrix/client/versions`, { dispatcher: agent, signal: AbortSignal.timeout(2000) });
                ok = r.status === 200 && Array.isArray(((await r.json()) as { versions?: unknown }).versions);
            } catch {
                ok = false;
            }
            polls.push({ t: (start - t0) / 1000, ok, ms: performance.now() - start });
            const wait = 200 - (performance.now() - start);
            if (wait > 0) await sleep(wait);
        }
    })();
    say(`${s.name}: synapseVersion ${FROM_VERSION} -> ${TO_VERSION} (polling /_matrix/client/versions every 0.2 s)`);
    await sleep(2000);
    const up = await deployUp(s, cfg);
    await sleep(3000);
    stop = true;
    await poller;
    // Downtime: the longest run of failed polls, from the first failure to the next success.
    let longest = 0;
    let failedPolls = 0;
    let gapStart: number | null = null;
    const gaps: { fromS: number; toS: number }[] = [];
    for (const p of polls) {
        if (!p.ok) {
            failedPolls++;
            gapStart ??= p.t;
        } else if (gapStart !== null) {
            longest = Math.max(longest, p.t - gapStart);
            gaps.push({ fromS: round1(gapStart)!, toS: round1(p.t)! });
            gapStart = null;
        }
    }
    if (gapStart !== null) {
        longest = Math.max(longest, polls[polls.length - 1].t - gapStart);
        gaps.push({ fromS: round1(gapStart)!, toS: round1(polls[polls.length - 1].t)! });
    }
    const v = await call<{ server?: { version?: string } }>(h.base, undefined, "GET", "/_matrix/federation/v1/version").catch(
        () => ({}) as { server?: { version?: string } },
    );
    const res = {
        bumpDowntimeSeconds: round1(longest)!,
        bumpUpSeconds: round1(up.seconds),
        bumpChanges: up.changed,
        bumpSummary: up.changes,
        bumpPolls: polls.length,
        bumpFailedPolls: failedPolls,
        bumpGaps: gaps,
        bumpDeployStartedAtS: 2,
        versionAfter: v.server?.version ?? null,
    };
    say(
        `${s.name}: bump up ${res.bumpUpSeconds}s, downtime ${res.bumpDowntimeSeconds}s (${failedPolls}/${polls.length} polls failed), now ${res.versionAfter}`,
    );
    return res;
}
