// DigitalOcean's own monitoring (components/monitoring.ts) as the program declares it under mocks:
// it watches THIS droplet and THIS stack's client API, mails adminEmail, carries the configured
// thresholds, and is declared only when there is a droplet and monitoringAlerts is on.
import { BASE_CONFIG, SECRETS, runProgram, ProgramRun } from "./harness";

const ALERT = "digitalocean:index/monitorAlert:MonitorAlert";
const CHECK = "digitalocean:index/uptimeCheck:UptimeCheck";
const UPTIME_ALERT = "digitalocean:index/uptimeAlert:UptimeAlert";
const MONITORING = "phillymesh-chat:index:Monitoring";
const EMAIL = BASE_CONFIG.adminEmail;

/** Every monitoring resource of a run. */
const monitoring = (run: ProgramRun) => run.resources.filter((r) => [ALERT, CHECK, UPTIME_ALERT, MONITORING].includes(r.type));

describe("DigitalOcean's monitoring, hosting digitalocean", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram(BASE_CONFIG, SECRETS);
    });

    test("three alert policies on this droplet: memory 90%, disk 85% (diskAlertPercent), load 3; GreaterThan, mailed to adminEmail", () => {
        const dropletId = `${run.byName("chat-droplet").name}-id`;
        const alerts = run.ofType(ALERT).map((r): Record<string, any> => ({ name: r.name, ...r.inputs }));
        expect(alerts).toEqual([
            expect.objectContaining({ name: "chat-alert-memory", type: "v1/insights/droplet/memory_utilization_percent", value: 90, window: "10m" }),
            expect.objectContaining({ name: "chat-alert-disk", type: "v1/insights/droplet/disk_utilization_percent", value: 85, window: "5m" }),
            expect.objectContaining({ name: "chat-alert-load", type: "v1/insights/droplet/load_5", value: 3, window: "10m" }),
        ]);
        for (const a of alerts) {
            expect(a).toMatchObject({ compare: "GreaterThan", entities: [dropletId], alerts: { emails: [EMAIL] }, enabled: true });
            expect(a.description).toMatch(/^phillymesh\.net: /);
        }
    });

    test("an https uptime check of this stack's client API from the four regions, started once the sites and Synapse are in place", () => {
        const [check] = run.ofType(CHECK);
        expect(check.name).toBe("chat-uptime");
        expect(check.inputs).toEqual({
            name: "phillymesh.net client API",
            target: "https://matrix.phillymesh.net/_matrix/client/versions",
            type: "https",
            regions: ["us_east", "us_west", "eu_west", "se_asia"],
            enabled: true,
        });
        expect(check.dependsOn).toEqual(["chat-sites-run", "chat-synapse-run"]);
        expect(run.outputs.homeserverUrl).toBe("https://matrix.phillymesh.net");
    });

    test("two uptime alerts on that check, mailed to adminEmail: down everywhere for 2 minutes, certificate within 14 days", () => {
        const alerts = run.ofType(UPTIME_ALERT);
        expect(alerts.map((a) => a.name)).toEqual(["chat-uptime-down", "chat-uptime-certificate"]);
        for (const a of alerts) expect(a.inputs).toMatchObject({ checkId: "chat-uptime-id", notifications: [{ emails: [EMAIL] }] });
        expect(alerts[0].inputs).toMatchObject({ type: "down_global", period: "2m" });
        expect(alerts[1].inputs).toMatchObject({ type: "ssl_expiry", threshold: 14, comparison: "less_than", period: "5m" });
    });

    test("all of them are children of one Monitoring component; nothing existing is renamed or re-parented", () => {
        expect(run.ofType(MONITORING).map((r) => r.name)).toEqual(["chat"]);
        for (const r of monitoring(run).filter((x) => x.type !== MONITORING)) expect(r.parent).toBe("chat");
        // The droplet and its neighbours keep their names and parent (an existing stack only gains resources).
        for (const n of ["chat-droplet", "chat-data", "chat-ip", "chat-firewall"]) expect(run.byName(n).parent).toBe("chat");
        expect(run.resources.filter((r) => r.name === "chat").map((r) => r.type)).toEqual(
            expect.arrayContaining(["phillymesh-chat:index:DropletServer", MONITORING]),
        );
    });

    test("a preview: the droplet id is unknown, the monitoring is still declared (an update of thresholds needs no droplet)", async () => {
        const preview = await runProgram(BASE_CONFIG, SECRETS, { preview: true });
        expect(preview.ofType(ALERT)).toHaveLength(3);
        expect(preview.ofType(UPTIME_ALERT)).toHaveLength(2);
    });
});

describe("the monitoring config", () => {
    test("the thresholds are the stack's: alertMemoryPercent, diskAlertPercent (shared with the status check) and a decimal alertLoad5", async () => {
        const run = await runProgram({ ...BASE_CONFIG, alertMemoryPercent: "75", diskAlertPercent: "92", alertLoad5: "1.5" }, SECRETS);
        expect(run.byName("chat-alert-memory").inputs.value).toBe(75);
        expect(run.byName("chat-alert-disk").inputs.value).toBe(92);
        expect(run.byName("chat-alert-load").inputs.value).toBe(1.5);
        expect(run.byName("chat-alert-load").inputs.description).toBe("phillymesh.net: 5-minute load average above 1.5 for 10m");
    });

    test("monitoringAlerts false: none is declared, and the rest of the stack is as before", async () => {
        const on = await runProgram(BASE_CONFIG, SECRETS);
        const off = await runProgram({ ...BASE_CONFIG, monitoringAlerts: "false" }, SECRETS);
        expect(monitoring(off)).toEqual([]);
        const names = (r: ProgramRun) => r.resources.map((x) => `${x.type}::${x.name}`);
        expect(
            names(on)
                .filter((n) => !names(off).includes(n))
                .sort(),
        ).toEqual(
            [
                `${MONITORING}::chat`,
                `${ALERT}::chat-alert-memory`,
                `${ALERT}::chat-alert-disk`,
                `${ALERT}::chat-alert-load`,
                `${CHECK}::chat-uptime`,
                `${UPTIME_ALERT}::chat-uptime-down`,
                `${UPTIME_ALERT}::chat-uptime-certificate`,
            ].sort(),
        );
        expect(names(off).every((n) => names(on).includes(n))).toBe(true);
    });

    test("hosting existing: none is declared (DigitalOcean's monitoring needs a droplet), whatever monitoringAlerts says", async () => {
        const run = await runProgram(
            { ...BASE_CONFIG, hosting: "existing", sshHost: "192.0.2.7", dns: "none", acmeChallenge: "dns-cloudflare", monitoringAlerts: "true" },
            SECRETS,
        );
        expect(monitoring(run)).toEqual([]);
        expect(run.resources.filter((r) => r.type.startsWith("digitalocean:"))).toEqual([]);
    });
});
