// Drills 1-10 and 15-24: "nothing lost, no one in", proved on the local testbed with the real program, on a
// guest of their own (drill1) from nothing to cleaned up; the worst days (22-24) on another guest
// of their own (worst-days.ts), whose data volume can be filled. One process for them all: the guest is
// brought up by the first drill that needs it and removed once at the end, and drill 7 reads the
// deploy logs of every drill before it. The drills themselves are in one file per theme.
//   node --test --test-concurrency=1 tests/drills/          (all; package.json "main" is this file)
//   node --test --test-name-pattern='^3 ' tests/drills/     (one; it brings drill1 up if needed)
// DRILLS_KEEP=1 leaves the guest and the stack for a look afterwards. See README.md.
import { after, before } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import * as L from "./lib.ts";
import { drillSet } from "./harness.ts";
import { replaceAndRestore } from "./replace-restore.ts";
import { portsAndTls, removeScanNetns } from "./ports-tls.ts";
import { previewsAndSignup } from "./previews-signup.ts";
import { halfWayDrill } from "./half-way.ts";
import { adoptionDrills } from "./adopt.ts";
import { secretsDrill } from "./secrets.ts";
import { offsiteCopyDrill, plantedLinksDrill, sandboxDrill } from "./sandbox.ts";
import { dependencyRefreshDrill } from "./refresh.ts";
import { statusCheckDrill } from "./status.ts";
import { healthDrill } from "./health.ts";
import { housekeepingDrill } from "./housekeeping.ts";
import { worstDays } from "./worst-days.ts";

// Which guests this run used: only those are cleaned up (a run of drills 22-24 leaves drill1 alone).
const used = { drill1: false, worstdays: false };
const drills = drillSet("drills", async () => {
    used.drill1 = true;
    await L.ensureUp();
});

before(() => {
    assert.equal(process.getuid?.(), 0, "the drills boot guests and need root");
    mkdirSync(L.WORK, { recursive: true, mode: 0o700 });
});

after(async () => {
    await L.closeHttp();
    drills.printSummary();
    worst.set.printSummary();
    if (process.env.DRILLS_KEEP === "1") {
        process.stderr.write(`DRILLS_KEEP=1: ${L.NAME} and stack ${L.NAME} (and the worst days' guest) are left running\n`);
        return;
    }
    if (used.drill1) await cleanup();
    if (used.worstdays) await worst.cleanup();
});

async function cleanup(): Promise<void> {
    L.note(`cleanup: ${L.NAME} destroyed with --wipe-data, stack state forgotten, DNS set and files removed`);
    const quiet = { timeoutMs: 120_000 };
    await removeScanNetns();
    if (L.guestRunning() || existsSync(`${L.B}/run-${L.NAME}`)) await L.destroyGuest(true);
    else rmSync(`${L.B}/data-${L.NAME}`, { recursive: true, force: true });
    if (existsSync(L.STACK_FILE)) await L.deploy("destroy", [], { label: "cleanup-forget-state", timeoutMs: 180_000 });
    await L.run("bash", [`${L.REPO}/testbed/dns-load.sh`, "--remove", L.NAME], quiet);
    for (const f of [
        L.STACK_FILE,
        `${L.B}/stacks/${L.NAME}.outputs.json`,
        L.SECRETS_FILE,
        L.E2E_FILE,
        L.CURRENT_CONFIG,
        `${L.WORK}/${L.NAME}.bad.json`,
        `${L.WORK}/${L.NAME}.bumped.json`,
        `${L.WORK}/${L.NAME}.bad2.json`,
        `${L.WORK}/${L.NAME}.bumped2.json`,
        `${L.WORK}/${L.NAME}.housekeeping.json`,
        `${L.WORK}/backup-copy`,
        `${L.WORK}/${L.NAME}.adopt.json`,
        `${L.WORK}/${L.NAME}.adopt-dump.json`,
        `${L.WORK}/pg-export`,
        `${L.WORK}/askpass.sh`,
        `${L.WORK}/roots.pem`,
    ]) {
        rmSync(f, { recursive: true, force: true });
    }
}

// The order of the run: 7 last, so that it reads every deploy log of the run.
replaceAndRestore(drills); //  1 replaced server, 2 backup and restore
portsAndTls(drills); //        3 ports, 4 TLS
sandboxDrill(drills); //       15 the units' sandboxes
plantedLinksDrill(drills); //  16 links planted by service users
offsiteCopyDrill(drills); //   17 the off-site copy's pinned host key
dependencyRefreshDrill(drills); // 18 Synapse's dependencies refreshed
statusCheckDrill(drills); //   19 the daily status check reports trouble
healthDrill(drills); //        20 up checks its own work
housekeepingDrill(drills); //  21 database housekeeping, retention, a failing compressor
previewsAndSignup(drills); //  5 URL previews, 6 registration
const worst = worstDays(() => (used.worstdays = true)); // 22 out of memory, 23 disk full, 24 killed mid-write
halfWayDrill(drills); //       8 a step that fails half way
adoptionDrills(drills); //     9 adopting SQLite, 10 adopting a PostgreSQL dump
secretsDrill(drills); //       7 secrets never in plain text
