// The Cloudflare stand-in's DnsRecord provider.
//
// What it mirrors (github.com/cloudflare/terraform-provider-cloudflare, internal/services/dns_record/
// schema.go and custom.go, v5.x; and the API's answers):
//   - inputs zone_id, name, type, ttl (required), content, data, priority, proxied (default false),
//     comment, tags; zone_id and type are RequiresReplace (schema.go), everything else updates in
//     place (PUT); `content` is Optional+Computed: left out of the config (SRV, CAA) it keeps the value
//     the API computed, as a framework provider does;
//   - outputs as the API returns them: id (32 hex), the FQDN as name (the state keeps the configured
//     name, as custom.go's FQDN normalisation does), content (for SRV "weight port target", for CAA
//     `flags tag "value"`), proxiable, created_on, modified_on, comment, tags, settings, meta.
//
// Serialized into the state with the provider (the SDK's function serializer captures what it uses,
// from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import type * as pulumi from "@pulumi/pulumi";
import { canon, plain } from "../shimKit";
import { dnsRecordFailures, duplicateError, normalizeRecord } from "./records";
import { cfError, serveZone, withZones } from "./zones";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

/** The outputs of a stored record. */
function recordOutputs(inputs: any, r: any): any {
    return {
        ...inputs,
        content: r.content,
        data: r.data ?? inputs.data,
        priority: r.priority ?? inputs.priority,
        proxied: r.proxied,
        proxiable: r.proxiable,
        ttl: r.ttl,
        comment: r.comment ?? undefined,
        tags: r.tags ?? [],
        settings: {},
        meta: "{}",
        createdOn: r.createdOn,
        modifiedOn: r.modifiedOn,
        fqdn: r.name,
    };
}

export const dnsRecordProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        return { inputs: news, failures: dnsRecordFailures(news) };
    },
    async diff(_id: string, olds: any, news: any) {
        const replaces: string[] = [];
        let changes = false;
        const keys = ["zoneId", "type", "name", "ttl", "content", "data", "priority", "proxied", "comment", "tags"];
        for (const k of keys) {
            let o = olds[k];
            let n = news[k];
            if (k === "content" && (n === undefined || n === null)) continue; // Optional+Computed
            if (k === "proxied") {
                o = o ?? false;
                n = n ?? false;
            }
            if (k === "type") {
                o = String(o ?? "").toUpperCase();
                n = String(n ?? "").toUpperCase();
            }
            if (k === "tags" && (n === undefined || n === null)) continue; // Optional+Computed
            if (canon(o) === canon(n)) continue;
            changes = true;
            if (k === "zoneId" || k === "type") replaces.push(k);
        }
        return { changes, replaces };
    },
    async create(inputs: any) {
        const path = `zones/${inputs.zoneId}/dns_records`;
        const id = require("crypto").randomBytes(16).toString("hex");
        const stored = await withZones(async (zones, records) => {
            const zone = zones[inputs.zoneId];
            if (!zone)
                throw cfError("POST", path, 404, [
                    { code: 7003, message: `Could not route to /zones/${inputs.zoneId}/dns_records, perhaps your object identifier is invalid?` },
                    { code: 7000, message: "No route for that URI" },
                ]);
            const r = normalizeRecord(inputs, zone, "POST", path);
            const list = records[inputs.zoneId] ?? [];
            const dup = duplicateError(r, list, "POST", path);
            if (dup) throw dup;
            const now = new Date().toISOString();
            const rec = { id, zoneId: inputs.zoneId, zoneName: zone, ...r, createdOn: now, modifiedOn: now };
            const next = [...list, rec];
            await serveZone(inputs, zone, next);
            records[inputs.zoneId] = next;
            return rec;
        });
        return { id, outs: plain(recordOutputs(inputs, stored)) };
    },
    async update(id: string, olds: any, news: any) {
        const path = `zones/${news.zoneId}/dns_records/${id}`;
        const stored = await withZones(async (zones, records) => {
            const zone = zones[news.zoneId];
            const list = records[news.zoneId] ?? [];
            const old = list.find((r: any) => r.id === id);
            if (!zone || !old) throw cfError("PUT", path, 404, [{ code: 81044, message: "Record does not exist." }]);
            // A computed content (SRV/CAA) left out of the config is not an input to the PUT.
            const r = normalizeRecord(
                { ...news, content: news.content ?? (["SRV", "CAA"].includes(String(news.type).toUpperCase()) ? undefined : olds.content) },
                zone,
                "PUT",
                path,
            );
            const dup = duplicateError(
                r,
                list.filter((x: any) => x.id !== id),
                "PUT",
                path,
            );
            if (dup) throw dup;
            const rec = { ...old, ...r, modifiedOn: new Date().toISOString() };
            const next = list.map((x: any) => (x.id === id ? rec : x));
            await serveZone(news, zone, next);
            records[news.zoneId] = next;
            return rec;
        });
        return { outs: plain(recordOutputs(news, stored)) };
    },
    async delete(id: string, props: any) {
        await withZones(async (zones, records) => {
            const zone = zones[props.zoneId];
            const list = records[props.zoneId] ?? [];
            if (!zone || !list.some((r: any) => r.id === id)) {
                throw cfError("DELETE", `zones/${props.zoneId}/dns_records/${id}`, 404, [{ code: 81044, message: "Record does not exist." }]);
            }
            const next = list.filter((r: any) => r.id !== id);
            await serveZone(props, zone, next);
            records[props.zoneId] = next;
        });
    },
};

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
