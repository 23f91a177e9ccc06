// The DigitalOcean stand-in's monitoring: MonitorAlert (alert policies), UptimeCheck, UptimeAlert.
// Account-level objects that name a droplet or a check, kept in the account file like firewalls.
//
// What it mirrors (terraform-provider-digitalocean, github.com/digitalocean/terraform-provider-digitalocean,
// at 401992a1, v2.99.1):
//   MonitorAlert  digitalocean/monitoring/resource_monitor_alert.go: nothing ForceNew (every change
//                 is an update: PUT /v2/monitoring/alerts/<uuid>); `type` one of the droplet, lbaas
//                 and dbaas metrics (StringInSlice), `compare` GreaterThan|LessThan, `window`
//                 5m|10m|30m|1h, `value` FloatAtLeast(0), `description` and `alerts` required
//                 (`alerts` MaxItems 1: the SDK's single object), `entities` a TypeSet, `enabled`
//                 defaults to true. Errors: "Error creating Alert Policy: ...", "Error updating
//                 monitoring alert: ...", "Error deleting monitor alert: ...".
//   UptimeCheck   digitalocean/uptime/resource_uptime_check.go: nothing ForceNew; `name` and
//                 `target` required, `type` ping|http|https (default https), `regions` a TypeSet,
//                 `enabled` default true. Errors: "Error creating Check", "Error updating uptime
//                 check", "Error deleting uptime checks".
//   UptimeAlert   digitalocean/uptime/resource_uptime_alert.go: nothing ForceNew, `check_id`
//                 included (an update PUTs /v2/uptime/checks/<new check>/alerts/<id>, which cannot
//                 find the alert: 404); `name`, `check_id`, `type`, `notifications` required;
//                 `type` latency|down|down_global|ssl_expiry, `comparison` greater_than|less_than,
//                 `period` 2m|3m|5m|10m|15m|30m|1h. expandNotifications reads notifications[0] (an
//                 empty list would panic the provider: refused at preview here). Errors: "Error
//                 creating Uptime Alert", "Error updating Alert", "Error deleting uptime alerts".
// And the API (docs.digitalocean.com/reference/api, Monitoring and Uptime): an uptime alert's
// `period` is required; `threshold` is in ms for latency and days for ssl_expiry (required for
// those); the probe regions are us_east, us_west, eu_west, se_asia; an alert policy with neither
// entities nor tags applies to every droplet of the account. Texts not cited above (unknown droplet,
// unknown check, no recipient, a target that is not a URL) are ours, in godo's form.
//
// The stand-in is stricter than DigitalOcean on purpose where the program's intent is at stake: an
// alert policy must name droplets (`entities`) and they must exist in the account; an alert must
// mail someone (an e-mail address; Slack is not in the stand-in).
//
// NOT covered: no metric is collected and no alert is ever sent; the uptime check probes nothing;
// that DigitalOcean mails only addresses verified on the account is not checked (the testbed has no
// account e-mail); tags as alert targets, lbaas/dbaas metric types (refused as not in the stand-in),
// Slack; what happens to a policy's entities when its droplet is deleted (they are left as they are);
// refresh and import.
//
// Serialized into the state with the providers (the SDK's function serializer captures what they
// use, from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import type * as pulumi from "@pulumi/pulumi";
import { isUnknown, plain } from "../shimKit";
import { apiError, dropletOf, withAccount } from "./account";
import { tfDiff } from "./terraform";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

type Failure = { property: string; reason: string };

/** validation.StringInSlice's message, as terraform-plugin-sdk words it. */
function inSlice(failures: Failure[], news: any, key: string, tfKey: string, allowed: string[], required: boolean): void {
    const v = news[key];
    if (isUnknown(v)) return;
    if (v === undefined || v === null || v === "") {
        if (required) failures.push({ property: key, reason: `The argument "${tfKey}" is required, but no definition was found.` });
        return;
    }
    if (!allowed.includes(v))
        failures.push({ property: key, reason: `expected ${tfKey} to be one of ${JSON.stringify(allowed).replace(/,/g, " ")}, got ${v}` });
}

function requiredString(failures: Failure[], news: any, key: string, tfKey: string): void {
    if (!isUnknown(news[key]) && (news[key] === undefined || news[key] === null || news[key] === ""))
        failures.push({ property: key, reason: `The argument "${tfKey}" is required, but no definition was found.` });
}

/** The e-mail addresses of a notification block ({ emails, slacks }), refusing what the stand-in does not do. */
function recipients(failures: Failure[], block: any, prop: string): void {
    if (isUnknown(block)) return;
    if (block?.slacks && block.slacks.length > 0) failures.push({ property: `${prop}.slacks`, reason: "Slack notifications are not in the testbed stand-in" });
    const emails: unknown[] = block?.emails ?? [];
    if (emails.length === 0)
        failures.push({ property: `${prop}.emails`, reason: "an alert must mail someone: no e-mail address given (the testbed stand-in has no Slack)" });
    for (const e of emails) {
        if (!isUnknown(e) && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(String(e)))
            failures.push({ property: `${prop}.emails`, reason: `invalid e-mail address ${JSON.stringify(e)}` });
    }
}

const DROPLET_METRICS = [
    "v1/insights/droplet/cpu",
    "v1/insights/droplet/memory_utilization_percent",
    "v1/insights/droplet/disk_utilization_percent",
    "v1/insights/droplet/public_outbound_bandwidth",
    "v1/insights/droplet/public_inbound_bandwidth",
    "v1/insights/droplet/private_outbound_bandwidth",
    "v1/insights/droplet/private_inbound_bandwidth",
    "v1/insights/droplet/disk_read",
    "v1/insights/droplet/disk_write",
    "v1/insights/droplet/load_1",
    "v1/insights/droplet/load_5",
    "v1/insights/droplet/load_15",
];
/** The provider's list beyond the droplet metrics (godo's constants), accepted by it but not by the stand-in. */
const OTHER_METRICS = [
    "v1/insights/lbaas/avg_cpu_utilization_percent",
    "v1/insights/lbaas/connection_utilization_percent",
    "v1/insights/lbaas/droplet_health",
    "v1/insights/lbaas/tls_connections_per_second_utilization_percent",
    "v1/insights/lbaas/increase_in_http_error_rate_percentage_4xx",
    "v1/insights/lbaas/increase_in_http_error_rate_percentage_5xx",
    "v1/insights/lbaas/increase_in_http_error_rate_count_4xx",
    "v1/insights/lbaas/increase_in_http_error_rate_count_5xx",
    "v1/insights/lbaas/high_http_request_response_time",
    "v1/insights/lbaas/high_http_request_response_time_50p",
    "v1/insights/lbaas/high_http_request_response_time_95p",
    "v1/insights/lbaas/high_http_request_response_time_99p",
    "v1/dbaas/alerts/load_15_alerts",
    "v1/dbaas/alerts/memory_utilization_alerts",
    "v1/dbaas/alerts/disk_utilization_alerts",
    "v1/dbaas/alerts/cpu_alerts",
];

/** Plan-time checks of an alert policy (the schema's validators, and what the stand-in refuses). */
export function monitorAlertFailures(news: any): Failure[] {
    const failures: Failure[] = [];
    inSlice(failures, news, "type", "type", [...DROPLET_METRICS, ...OTHER_METRICS], true);
    if (OTHER_METRICS.includes(news.type)) failures.push({ property: "type", reason: `${news.type}: only droplet metrics are in the testbed stand-in` });
    inSlice(failures, news, "compare", "compare", ["GreaterThan", "LessThan"], true);
    inSlice(failures, news, "window", "window", ["5m", "10m", "30m", "1h"], true);
    requiredString(failures, news, "description", "description");
    if (!isUnknown(news.value)) {
        if (typeof news.value !== "number" || !Number.isFinite(news.value))
            failures.push({ property: "value", reason: 'The argument "value" is required, but no definition was found.' });
        else if (news.value < 0) failures.push({ property: "value", reason: `expected value to be at least (0.000000), got ${news.value.toFixed(6)}` });
    }
    if (news.alerts === undefined || news.alerts === null)
        failures.push({ property: "alerts", reason: 'Insufficient alerts blocks: At least 1 "alerts" blocks are required.' });
    else recipients(failures, news.alerts, "alerts");
    if (news.tags && news.tags.length > 0)
        failures.push({ property: "tags", reason: "alert policy tags are not in the testbed stand-in (name the droplets in entities)" });
    if (!isUnknown(news.entities) && !(Array.isArray(news.entities) && news.entities.length > 0))
        failures.push({
            property: "entities",
            reason: "no entities: DigitalOcean would apply the policy to every droplet of the account; the testbed stand-in wants the droplets named",
        });
    return failures;
}

/** Plan-time checks of an uptime check. */
export function uptimeCheckFailures(news: any): Failure[] {
    const failures: Failure[] = [];
    requiredString(failures, news, "name", "name");
    requiredString(failures, news, "target", "target");
    inSlice(failures, news, "type", "type", ["ping", "http", "https"], false);
    for (const r of news.regions ?? []) {
        if (!isUnknown(r) && !["us_east", "us_west", "eu_west", "se_asia"].includes(r))
            failures.push({ property: "regions", reason: `invalid region ${JSON.stringify(r)}: one of us_east, us_west, eu_west, se_asia` });
    }
    const type = news.type ?? "https";
    if (typeof news.target === "string" && news.target && (type === "http" || type === "https")) {
        let ok = false;
        try {
            ok = new URL(news.target).protocol === `${type}:`;
        } catch {
            ok = false;
        }
        if (!ok) failures.push({ property: "target", reason: `an ${type} check needs an ${type}:// URL as its target, got ${JSON.stringify(news.target)}` });
    }
    return failures;
}

/** Plan-time checks of an uptime alert. */
export function uptimeAlertFailures(news: any): Failure[] {
    const failures: Failure[] = [];
    requiredString(failures, news, "name", "name");
    requiredString(failures, news, "checkId", "check_id");
    inSlice(failures, news, "type", "type", ["latency", "down", "down_global", "ssl_expiry"], true);
    inSlice(failures, news, "comparison", "comparison", ["greater_than", "less_than"], false);
    // The API requires period; the provider's schema leaves it optional.
    inSlice(failures, news, "period", "period", ["2m", "3m", "5m", "10m", "15m", "30m", "1h"], true);
    if ((news.type === "latency" || news.type === "ssl_expiry") && !isUnknown(news.threshold) && typeof news.threshold !== "number")
        failures.push({ property: "threshold", reason: `a ${news.type} alert needs a threshold (${news.type === "latency" ? "milliseconds" : "days"})` });
    if (news.threshold !== undefined && !isUnknown(news.threshold) && !Number.isInteger(news.threshold))
        failures.push({ property: "threshold", reason: `threshold is a whole number (TypeInt), got ${news.threshold}` });
    const n = news.notifications;
    if (!isUnknown(n) && !(Array.isArray(n) && n.length > 0))
        failures.push({ property: "notifications", reason: 'Insufficient notifications blocks: At least 1 "notifications" blocks are required.' });
    else if (Array.isArray(n)) recipients(failures, n[0], "notifications[0]");
    return failures;
}

const byId = (list: any[], id: string) => list.find((x: any) => x.id === id);

/** Every entity must be a droplet of the account (the API's answer; the wording is ours). */
function checkEntities(a: any, entities: unknown[], what: string, method: string, path: string): void {
    for (const e of entities ?? []) {
        if (!dropletOf(a, e)) throw apiError(what, method, path, 422, `entity ${String(e)} is not a droplet of this account`);
    }
}

export const monitorAlertProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        return { inputs: news, failures: monitorAlertFailures(news) };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, {
            forceNew: [],
            update: ["type", "compare", "description", "enabled", "value", "tags", "alerts", "entities", "window"],
            sets: ["entities", "tags"],
            defaults: { enabled: true },
            normalize: { entities: (v: any) => (Array.isArray(v) ? v.map(String) : v) },
        });
    },
    async create(inputs: any) {
        const uuid = require("crypto").randomUUID();
        await withAccount((a) => {
            checkEntities(a, inputs.entities, "Error creating Alert Policy", "POST", "monitoring/alerts");
            a.alertPolicies.push(alertPolicyRecord(uuid, inputs));
        });
        return { id: uuid, outs: plain({ ...inputs, enabled: inputs.enabled ?? true, uuid }) };
    },
    async update(id: string, olds: any, news: any) {
        await withAccount((a) => {
            const i = a.alertPolicies.findIndex((p: any) => p.id === id);
            if (i < 0)
                throw apiError("Error updating monitoring alert", "PUT", `monitoring/alerts/${id}`, 404, "The resource you were accessing could not be found.");
            checkEntities(a, news.entities, "Error updating monitoring alert", "PUT", `monitoring/alerts/${id}`);
            a.alertPolicies[i] = alertPolicyRecord(id, news);
        });
        return { outs: plain({ ...olds, ...news, enabled: news.enabled ?? true, uuid: id }) };
    },
    async delete(id: string) {
        await withAccount((a) => {
            if (!byId(a.alertPolicies, id))
                throw apiError("Error deleting monitor alert", "DELETE", `monitoring/alerts/${id}`, 404, "The resource you were accessing could not be found.");
            a.alertPolicies = a.alertPolicies.filter((p: any) => p.id !== id);
        });
    },
};

function alertPolicyRecord(id: string, v: any): any {
    return {
        id,
        type: v.type,
        compare: v.compare,
        value: v.value,
        window: v.window,
        description: v.description,
        enabled: v.enabled ?? true,
        entities: (v.entities ?? []).map(String),
        emails: v.alerts?.emails ?? [],
    };
}

export const uptimeCheckProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        return { inputs: news, failures: uptimeCheckFailures(news) };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, {
            forceNew: [],
            update: ["name", "target", "type", "regions", "enabled"],
            sets: ["regions"],
            defaults: { type: "https", enabled: true },
        });
    },
    async create(inputs: any) {
        const id = require("crypto").randomUUID();
        const rec = {
            id,
            name: inputs.name,
            target: inputs.target,
            type: inputs.type ?? "https",
            regions: inputs.regions ?? [],
            enabled: inputs.enabled ?? true,
            alerts: [],
        };
        await withAccount((a) => {
            a.uptimeChecks.push(rec);
        });
        return { id, outs: plain({ ...inputs, type: rec.type, enabled: rec.enabled }) };
    },
    async update(id: string, olds: any, news: any) {
        await withAccount((a) => {
            const c = byId(a.uptimeChecks, id);
            if (!c) throw apiError("Error updating uptime check", "PUT", `uptime/checks/${id}`, 404, "The resource you were accessing could not be found.");
            Object.assign(c, { name: news.name, target: news.target, type: news.type ?? "https", regions: news.regions ?? [], enabled: news.enabled ?? true });
        });
        return { outs: plain({ ...olds, ...news, type: news.type ?? "https", enabled: news.enabled ?? true }) };
    },
    async delete(id: string) {
        await withAccount((a) => {
            if (!byId(a.uptimeChecks, id))
                throw apiError("Error deleting uptime checks", "DELETE", `uptime/checks/${id}`, 404, "The resource you were accessing could not be found.");
            // Its alerts live under it (/v2/uptime/checks/<id>/alerts): they go with it.
            a.uptimeChecks = a.uptimeChecks.filter((c: any) => c.id !== id);
        });
    },
};

function uptimeAlertRecord(id: string, v: any): any {
    return {
        id,
        name: v.name,
        type: v.type,
        threshold: v.threshold,
        comparison: v.comparison,
        period: v.period,
        emails: v.notifications?.[0]?.emails ?? [],
    };
}

export const uptimeAlertProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        return { inputs: news, failures: uptimeAlertFailures(news) };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, {
            forceNew: [],
            update: ["checkId", "name", "type", "threshold", "comparison", "period", "notifications"],
        });
    },
    async create(inputs: any) {
        const id = require("crypto").randomUUID();
        await withAccount((a) => {
            const c = byId(a.uptimeChecks, inputs.checkId);
            if (!c)
                throw apiError(
                    "Error creating Uptime Alert",
                    "POST",
                    `uptime/checks/${inputs.checkId}/alerts`,
                    404,
                    "The resource you were accessing could not be found.",
                );
            c.alerts.push(uptimeAlertRecord(id, inputs));
        });
        return { id, outs: plain(inputs) };
    },
    async update(id: string, olds: any, news: any) {
        await withAccount((a) => {
            // The provider PUTs to the check named by the NEW check_id: an alert of another check is not found there.
            const c = byId(a.uptimeChecks, news.checkId);
            const i = c ? c.alerts.findIndex((x: any) => x.id === id) : -1;
            if (i < 0)
                throw apiError(
                    "Error updating Alert",
                    "PUT",
                    `uptime/checks/${news.checkId}/alerts/${id}`,
                    404,
                    "The resource you were accessing could not be found.",
                );
            c.alerts[i] = uptimeAlertRecord(id, news);
        });
        return { outs: plain({ ...olds, ...news }) };
    },
    async delete(id: string, props: any) {
        await withAccount((a) => {
            const c = byId(a.uptimeChecks, props.checkId);
            if (!c || !byId(c.alerts, id))
                throw apiError(
                    "Error deleting uptime alerts",
                    "DELETE",
                    `uptime/checks/${props.checkId}/alerts/${id}`,
                    404,
                    "The resource you were accessing could not be found.",
                );
            c.alerts = c.alerts.filter((x: any) => x.id !== id);
        });
    },
};

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
