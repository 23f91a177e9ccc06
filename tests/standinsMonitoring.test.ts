// The DigitalOcean stand-in's monitoring (testbed/deploy/digitalocean/monitoring.ts): MonitorAlert,
// UptimeCheck and UptimeAlert refuse what terraform-provider-digitalocean and the API refuse, with
// their kind of message, and keep their records in the stand-in's account. Each test works on a
// throwaway account in a temporary TESTBED_DIR; none of these resources touches the machine.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as dox from "../testbed/deploy/digitalocean";
import { BASE_CONFIG, SECRETS, runProgram } from "./harness";

let dir: string;
const saved = { TESTBED_DIR: process.env.TESTBED_DIR, TESTBED_REPO: process.env.TESTBED_REPO };
beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "standins-monitoring-"));
    process.env.TESTBED_DIR = dir;
    process.env.TESTBED_REPO = "/nonexistent-repo"; // a host operation would fail loudly: none must be reached
});
afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
});

const DROPLET = 500000001;
const OTHER = 500000002;
function account(a: Record<string, unknown> = {}): void {
    fs.mkdirSync(path.join(dir, "cloud"), { recursive: true });
    const droplet = (id: number) => ({ id, name: `d${id}`, ipv4: "10.250.0.100" });
    fs.writeFileSync(path.join(dir, "cloud", "do-account.json"), JSON.stringify({ droplets: [droplet(DROPLET), droplet(OTHER)], ...a }));
}
function readAccount(): any {
    return JSON.parse(fs.readFileSync(path.join(dir, "cloud", "do-account.json"), "utf8"));
}
const reasons = (fs: { reason: string }[]) => fs.map((f) => f.reason);

const ALERT = {
    type: "v1/insights/droplet/memory_utilization_percent",
    compare: "GreaterThan",
    value: 90,
    window: "10m",
    entities: [String(DROPLET)],
    alerts: { emails: ["hello@phillymesh.net"] },
    description: "phillymesh.net: memory use above 90% for 10m",
    enabled: true,
};
const CHECK = {
    name: "phillymesh.net client API",
    target: "https://matrix.phillymesh.net/_matrix/client/versions",
    type: "https",
    regions: ["us_east", "eu_west"],
};
const UPTIME_ALERT = { checkId: "c", name: "down", type: "down_global", period: "2m", notifications: [{ emails: ["hello@phillymesh.net"] }] };

describe("DigitalOcean stand-in: MonitorAlert", () => {
    test("the schema's validators, with the provider's messages: type, compare, window, value at least 0, required fields", () => {
        expect(dox.monitorAlertFailures(ALERT)).toEqual([]);
        expect(reasons(dox.monitorAlertFailures({ ...ALERT, type: "v1/insights/droplet/memory" }))).toEqual([
            expect.stringMatching(
                /^expected type to be one of \["v1\/insights\/droplet\/cpu" "v1\/insights\/droplet\/memory_utilization_percent" .*, got v1\/insights\/droplet\/memory$/,
            ),
        ]);
        expect(reasons(dox.monitorAlertFailures({ ...ALERT, compare: "greater_than" }))).toEqual([
            'expected compare to be one of ["GreaterThan" "LessThan"], got greater_than',
        ]);
        expect(reasons(dox.monitorAlertFailures({ ...ALERT, window: "15m" }))).toEqual(['expected window to be one of ["5m" "10m" "30m" "1h"], got 15m']);
        expect(reasons(dox.monitorAlertFailures({ ...ALERT, value: -1 }))).toEqual(["expected value to be at least (0.000000), got -1.000000"]);
        const { description, alerts, ...bare } = ALERT;
        void description;
        void alerts;
        expect(reasons(dox.monitorAlertFailures(bare))).toEqual([
            'The argument "description" is required, but no definition was found.',
            'Insufficient alerts blocks: At least 1 "alerts" blocks are required.',
        ]);
    });

    test("it must mail someone, name its droplets, and use a droplet metric (what the stand-in covers)", () => {
        expect(reasons(dox.monitorAlertFailures({ ...ALERT, alerts: { emails: [] } }))).toEqual([expect.stringMatching(/^an alert must mail someone/)]);
        expect(reasons(dox.monitorAlertFailures({ ...ALERT, alerts: { emails: ["hello@"] } }))).toEqual(['invalid e-mail address "hello@"']);
        expect(reasons(dox.monitorAlertFailures({ ...ALERT, entities: [] }))).toEqual([
            expect.stringMatching(/would apply the policy to every droplet of the account/),
        ]);
        expect(reasons(dox.monitorAlertFailures({ ...ALERT, type: "v1/insights/lbaas/droplet_health" }))).toEqual([
            expect.stringMatching(/only droplet metrics/),
        ]);
    });

    test("an entity that is not a droplet of the account: 422 at create and at update; a droplet that is: recorded", async () => {
        account();
        await expect(dox.monitorAlertProvider.create!({ ...ALERT, entities: ["123"] })).rejects.toThrow(
            /^Error creating Alert Policy: POST https:\/\/api\.digitalocean\.com\/v2\/monitoring\/alerts: 422 \(request "[0-9a-f-]+"\) entity 123 is not a droplet of this account$/,
        );
        expect(readAccount().alertPolicies ?? []).toEqual([]);
        const created = await dox.monitorAlertProvider.create!(ALERT);
        expect(created.outs).toMatchObject({ uuid: created.id, entities: [String(DROPLET)] });
        expect(readAccount().alertPolicies).toEqual([
            expect.objectContaining({ id: created.id, type: ALERT.type, value: 90, entities: [String(DROPLET)], emails: ["hello@phillymesh.net"] }),
        ]);
        await expect(dox.monitorAlertProvider.update!(created.id, created.outs, { ...ALERT, entities: ["999"] })).rejects.toThrow(
            /^Error updating monitoring alert: PUT https:\/\/api\.digitalocean\.com\/v2\/monitoring\/alerts\/[0-9a-f-]+: 422 .* entity 999 is not a droplet/,
        );
        await dox.monitorAlertProvider.update!(created.id, created.outs, { ...ALERT, entities: [String(OTHER)], value: 80 });
        expect(readAccount().alertPolicies[0]).toMatchObject({ entities: [String(OTHER)], value: 80 });
        await dox.monitorAlertProvider.delete!(created.id, created.outs);
        expect(readAccount().alertPolicies).toEqual([]);
        await expect(dox.monitorAlertProvider.delete!(created.id, created.outs)).rejects.toThrow(/^Error deleting monitor alert: DELETE .* 404 /);
    });

    test("nothing forces a new policy: a threshold or a new droplet is an update; entities are a set, enabled defaults to true", async () => {
        const olds = { ...ALERT, uuid: "u" };
        expect(await dox.monitorAlertProvider.diff!("u", olds, { ...ALERT, value: 75 })).toEqual({ changes: true, replaces: [] });
        expect(await dox.monitorAlertProvider.diff!("u", olds, { ...ALERT, entities: [String(OTHER)], type: "v1/insights/droplet/load_5" })).toEqual({
            changes: true,
            replaces: [],
        });
        const { enabled, ...withoutEnabled } = ALERT;
        void enabled;
        expect(await dox.monitorAlertProvider.diff!("u", olds, withoutEnabled)).toEqual({ changes: false, replaces: [] });
        expect(await dox.monitorAlertProvider.diff!("u", { ...olds, entities: ["2", "1"] }, { ...ALERT, entities: ["1", "2"] })).toEqual({
            changes: false,
            replaces: [],
        });
    });
});

describe("DigitalOcean stand-in: UptimeCheck", () => {
    test("name and target required, type ping|http|https, the API's four regions, an https check needs an https URL", () => {
        expect(dox.uptimeCheckFailures(CHECK)).toEqual([]);
        expect(reasons(dox.uptimeCheckFailures({ target: CHECK.target }))).toEqual(['The argument "name" is required, but no definition was found.']);
        expect(reasons(dox.uptimeCheckFailures({ name: "x" }))).toEqual(['The argument "target" is required, but no definition was found.']);
        expect(reasons(dox.uptimeCheckFailures({ ...CHECK, type: "tcp" }))).toEqual(['expected type to be one of ["ping" "http" "https"], got tcp']);
        // The SDK's doc comment spells the regions "usEast"...: the API's are us_east...
        expect(reasons(dox.uptimeCheckFailures({ ...CHECK, regions: ["usEast"] }))).toEqual([
            'invalid region "usEast": one of us_east, us_west, eu_west, se_asia',
        ]);
        expect(reasons(dox.uptimeCheckFailures({ ...CHECK, target: "matrix.phillymesh.net" }))).toEqual([
            expect.stringMatching(/^an https check needs an https:\/\/ URL/),
        ]);
        expect(reasons(dox.uptimeCheckFailures({ ...CHECK, type: undefined, target: "http://matrix.phillymesh.net/" }))).toEqual([
            expect.stringMatching(/^an https check needs an https:\/\/ URL/),
        ]);
    });

    test("nothing forces a new check; type defaults to https, enabled to true, regions are a set", async () => {
        const olds = { ...CHECK, enabled: true };
        expect(await dox.uptimeCheckProvider.diff!("c", olds, { ...CHECK, type: undefined, regions: ["eu_west", "us_east"] })).toEqual({
            changes: false,
            replaces: [],
        });
        expect(await dox.uptimeCheckProvider.diff!("c", olds, { ...CHECK, target: "https://matrix.example.org/_matrix/client/versions" })).toEqual({
            changes: true,
            replaces: [],
        });
    });
});

describe("DigitalOcean stand-in: UptimeAlert", () => {
    test("the schema's enums (the API's spellings, not the SDK comment's), period required, a threshold for ssl_expiry, someone to mail", () => {
        expect(dox.uptimeAlertFailures(UPTIME_ALERT)).toEqual([]);
        expect(reasons(dox.uptimeAlertFailures({ ...UPTIME_ALERT, type: "downGlobal" }))).toEqual([
            'expected type to be one of ["latency" "down" "down_global" "ssl_expiry"], got downGlobal',
        ]);
        expect(reasons(dox.uptimeAlertFailures({ ...UPTIME_ALERT, comparison: "greaterThan" }))).toEqual([
            'expected comparison to be one of ["greater_than" "less_than"], got greaterThan',
        ]);
        expect(reasons(dox.uptimeAlertFailures({ ...UPTIME_ALERT, period: "1m" }))).toEqual([
            'expected period to be one of ["2m" "3m" "5m" "10m" "15m" "30m" "1h"], got 1m',
        ]);
        expect(reasons(dox.uptimeAlertFailures({ ...UPTIME_ALERT, period: undefined }))).toEqual([
            'The argument "period" is required, but no definition was found.',
        ]);
        expect(reasons(dox.uptimeAlertFailures({ ...UPTIME_ALERT, checkId: "" }))).toEqual([
            'The argument "check_id" is required, but no definition was found.',
        ]);
        expect(reasons(dox.uptimeAlertFailures({ ...UPTIME_ALERT, type: "ssl_expiry" }))).toEqual(["a ssl_expiry alert needs a threshold (days)"]);
        expect(reasons(dox.uptimeAlertFailures({ ...UPTIME_ALERT, type: "ssl_expiry", threshold: 14.5 }))).toEqual([
            "threshold is a whole number (TypeInt), got 14.5",
        ]);
        expect(reasons(dox.uptimeAlertFailures({ ...UPTIME_ALERT, notifications: [] }))).toEqual([
            'Insufficient notifications blocks: At least 1 "notifications" blocks are required.',
        ]);
        expect(reasons(dox.uptimeAlertFailures({ ...UPTIME_ALERT, notifications: [{ emails: [] }] }))).toEqual([
            expect.stringMatching(/^an alert must mail someone/),
        ]);
    });

    test("its check must exist: 404 at create; an update to another check's id: 404 (the provider PUTs under the new check); deleting the check takes its alerts", async () => {
        account();
        await expect(dox.uptimeAlertProvider.create!({ ...UPTIME_ALERT, checkId: "nope" })).rejects.toThrow(
            /^Error creating Uptime Alert: POST https:\/\/api\.digitalocean\.com\/v2\/uptime\/checks\/nope\/alerts: 404 \(request "[0-9a-f-]+"\) The resource you were accessing could not be found\.$/,
        );
        const check = await dox.uptimeCheckProvider.create!(CHECK);
        const other = await dox.uptimeCheckProvider.create!({ ...CHECK, name: "other" });
        const alert = await dox.uptimeAlertProvider.create!({ ...UPTIME_ALERT, checkId: check.id });
        expect(readAccount().uptimeChecks.find((c: any) => c.id === check.id).alerts).toEqual([
            expect.objectContaining({ id: alert.id, type: "down_global", period: "2m", emails: ["hello@phillymesh.net"] }),
        ]);
        expect(await dox.uptimeAlertProvider.diff!(alert.id, alert.outs, { ...UPTIME_ALERT, checkId: other.id })).toEqual({ changes: true, replaces: [] });
        await expect(dox.uptimeAlertProvider.update!(alert.id, alert.outs, { ...UPTIME_ALERT, checkId: other.id })).rejects.toThrow(
            /^Error updating Alert: PUT https:\/\/api\.digitalocean\.com\/v2\/uptime\/checks\/[0-9a-f-]+\/alerts\/[0-9a-f-]+: 404 /,
        );
        await dox.uptimeAlertProvider.update!(alert.id, alert.outs, { ...UPTIME_ALERT, checkId: check.id, period: "5m" });
        expect(readAccount().uptimeChecks.find((c: any) => c.id === check.id).alerts[0].period).toBe("5m");
        await dox.uptimeCheckProvider.delete!(check.id, check.outs);
        expect(readAccount().uptimeChecks.map((c: any) => c.id)).toEqual([other.id]);
        await expect(dox.uptimeAlertProvider.delete!(alert.id, { ...alert.outs, checkId: check.id })).rejects.toThrow(
            /^Error deleting uptime alerts: DELETE .* 404 /,
        );
    });
});

describe("the stand-in and the program", () => {
    test("the program's monitoring passes the stand-in's plan checks (with its droplet and check ids)", async () => {
        const run = await runProgram(BASE_CONFIG, SECRETS);
        const alerts = run.ofType("digitalocean:index/monitorAlert:MonitorAlert");
        const checks = run.ofType("digitalocean:index/uptimeCheck:UptimeCheck");
        const uptimeAlerts = run.ofType("digitalocean:index/uptimeAlert:UptimeAlert");
        expect([alerts.length, checks.length, uptimeAlerts.length]).toEqual([3, 1, 2]);
        for (const a of alerts) expect(dox.monitorAlertFailures(a.inputs)).toEqual([]);
        for (const c of checks) expect(dox.uptimeCheckFailures(c.inputs)).toEqual([]);
        for (const a of uptimeAlerts) expect(dox.uptimeAlertFailures(a.inputs)).toEqual([]);
    });

    test("the module provides the three classes", () => {
        for (const k of ["MonitorAlert", "UptimeCheck", "UptimeAlert"]) expect(typeof (dox.digitaloceanModule as any)[k]).toBe("function");
    });
});
