// DigitalOcean's own monitoring of the droplet, mailed to the admin (hosting digitalocean only): it
// keeps watching when the server itself cannot say anything (down, out of memory, disk full), which
// the daily status check on the server (statusCheck.ts) cannot.
//
// - three alert policies on the droplet (the metrics agent reports them: the droplet is created with
//   `monitoring: true`): memory use, disk use and the 5-minute load average above their thresholds;
// - an uptime check of the client API from DigitalOcean's four probe regions, with two alerts: the
//   API down from every region, and its certificate within 14 days of expiry (certbot renews at 30).
//
// Schemas: terraform-provider-digitalocean digitalocean/monitoring/resource_monitor_alert.go and
// digitalocean/uptime/resource_uptime_check.go, resource_uptime_alert.go (nothing there forces a
// replacement: a threshold or a new droplet id is an update). DigitalOcean sends the mail only to
// addresses verified on the account (its API reference, "The Email has to be one that is verified on
// that DigitalOcean account").
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";
import type { MonitoringSettings } from "./config";

export interface MonitoringArgs {
    /** The droplet's id (DigitalOcean's, as the Droplet resource's id). */
    readonly dropletId: pulumi.Input<string>;
    /** Who gets the mail. */
    readonly adminEmail: string;
    /** The server's name, in each alert's description (the mail's subject line names the policy). */
    readonly label: string;
    /** What the uptime check fetches: https://matrix.<domain>/_matrix/client/versions. */
    readonly uptimeUrl: string;
    readonly thresholds: Pick<MonitoringSettings, "memoryPercent" | "diskPercent" | "load5">;
    /** What must be serving before the uptime check starts (else the first deploy mails "down"). */
    readonly serving?: pulumi.Input<pulumi.Resource>[];
}

/** DigitalOcean's uptime probe regions (the API's enum), all of them. */
export const UPTIME_REGIONS = ["us_east", "us_west", "eu_west", "se_asia"];

/** The three droplet alert policies: metric, threshold, window. */
export function dropletAlerts(t: MonitoringArgs["thresholds"]) {
    return [
        {
            key: "memory",
            type: "v1/insights/droplet/memory_utilization_percent",
            value: t.memoryPercent,
            window: "10m",
            what: `memory use above ${t.memoryPercent}%`,
        },
        { key: "disk", type: "v1/insights/droplet/disk_utilization_percent", value: t.diskPercent, window: "5m", what: `disk use above ${t.diskPercent}%` },
        { key: "load", type: "v1/insights/droplet/load_5", value: t.load5, window: "10m", what: `5-minute load average above ${t.load5}` },
    ];
}

export class Monitoring extends pulumi.ComponentResource {
    /** The uptime check's id. */
    public readonly uptimeCheckId: pulumi.Output<string>;

    constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:Monitoring", name, {}, opts);
        const child = { parent: this };
        const emails = [args.adminEmail];

        for (const a of dropletAlerts(args.thresholds)) {
            new digitalocean.MonitorAlert(
                `${name}-alert-${a.key}`,
                {
                    type: a.type,
                    compare: "GreaterThan",
                    value: a.value,
                    window: a.window,
                    entities: [args.dropletId],
                    alerts: { emails },
                    description: `${args.label}: ${a.what} for ${a.window}`,
                    enabled: true,
                },
                child,
            );
        }

        const check = new digitalocean.UptimeCheck(
            `${name}-uptime`,
            { name: `${args.label} client API`, target: args.uptimeUrl, type: "https", regions: UPTIME_REGIONS, enabled: true },
            { ...child, dependsOn: args.serving },
        );
        new digitalocean.UptimeAlert(
            `${name}-uptime-down`,
            { checkId: check.id, name: `${args.label}: client API down`, type: "down_global", period: "2m", notifications: [{ emails }] },
            child,
        );
        new digitalocean.UptimeAlert(
            `${name}-uptime-certificate`,
            {
                checkId: check.id,
                name: `${args.label}: certificate expires within 14 days`,
                type: "ssl_expiry",
                threshold: 14,
                comparison: "less_than",
                period: "5m",
                notifications: [{ emails }],
            },
            child,
        );
        this.uptimeCheckId = check.id;
        this.registerOutputs({ uptimeCheckId: check.id });
    }
}
