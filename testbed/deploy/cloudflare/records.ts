// What the Cloudflare API and terraform-provider-cloudflare v5 accept as a DNS record
// (github.com/cloudflare/terraform-provider-cloudflare, internal/services/dns_record/schema.go and
// custom.go, v5.x; and the API's answers):
//   - plan-time validators (schema.go): type one of the 21 types (case-insensitive); content
//     ConflictsWith data; priority and data.priority/weight/port 0-65535; data.flags a number or string;
//   - the API, at apply time: the zone must exist (7003 "Could not route to /zones/<id>/dns_records,
//     perhaps your object identifier is invalid?"); the name is made fully qualified as the API does
//     ("@" is the apex; a name not ending in the zone gets the zone appended); an identical record
//     (same name, type and content/data): 81058 "An identical record already exists."; a CNAME where
//     an A/AAAA/CNAME of that name exists: 81053 "An A, AAAA, or CNAME record with that host already
//     exists."; an A/AAAA where a CNAME exists: 81054 "A CNAME record with that host already exists."
//     (developers.cloudflare.com/dns/manage-dns-records/troubleshooting/records-with-same-name);
//     proxied on a type other than A/AAAA/CNAME: 9004 "This record type cannot be proxied.";
//     malformed content or data: 1004 "DNS Validation Error" (error_chain text ours): A needs an IPv4
//     address, AAAA an IPv6 one, SRV needs `data` {priority, weight, port, target} (v5's shape; an SRV
//     with `content` only is refused) and a _service._proto name, CAA needs data {flags, tag, value};
//     ttl 1 (automatic) or 60-86400.
//
// Serialized into the state with the provider (the SDK's function serializer captures what it uses,
// from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import { canon, isUnknown } from "../shimKit";
import { cfError, cfValidation } from "./zones";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

const CF_TYPES = [
    "A",
    "AAAA",
    "CNAME",
    "MX",
    "NS",
    "OPENPGPKEY",
    "PTR",
    "TXT",
    "CAA",
    "CERT",
    "DNSKEY",
    "DS",
    "HTTPS",
    "LOC",
    "NAPTR",
    "SMIMEA",
    "SRV",
    "SSHFP",
    "SVCB",
    "TLSA",
    "URI",
];
/** What the testbed DNS (dnsmasq, testbed/dns-load.sh) can serve. */
const CF_SERVED = ["A", "AAAA", "CNAME", "SRV", "CAA", "TXT", "MX"];

/** The name as the API stores it: "@" is the apex, a name outside the zone gets the zone appended. */
export function fqdnIn(name: string, zone: string): string {
    const n = String(name).trim().replace(/\.$/, "").toLowerCase();
    if (n === "@" || n === zone) return zone;
    return n.endsWith(`.${zone}`) ? n : `${n}.${zone}`;
}

function isIpv4(s: unknown): boolean {
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(String(s ?? ""));
    return !!m && m.slice(1).every((o) => Number(o) <= 255 && String(Number(o)) === o);
}

function isIpv6(s: unknown): boolean {
    return require("net").isIPv6(String(s ?? ""));
}

function isHostname(s: unknown): boolean {
    return /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i.test(String(s ?? ""));
}

function num(v: unknown): number | undefined {
    if (typeof v === "number") return v;
    if (typeof v === "string" && /^\d+$/.test(v)) return Number(v);
    return undefined;
}

/** Plan-time failures (schema.go's validators). */
export function dnsRecordFailures(news: any): { property: string; reason: string }[] {
    const failures: { property: string; reason: string }[] = [];
    const known = (v: unknown) => v !== undefined && v !== null && !isUnknown(v);
    for (const k of ["zoneId", "name", "type", "ttl"])
        if (news[k] === undefined || news[k] === null || news[k] === "")
            failures.push({ property: k, reason: `Missing required argument: The argument "${k}" is required` });
    if (known(news.type) && !CF_TYPES.includes(String(news.type).toUpperCase()))
        failures.push({ property: "type", reason: `Attribute type value must be one of: ${CF_TYPES.map((t) => `"${t}"`).join(", ")}, got: "${news.type}"` });
    if (news.content !== undefined && news.content !== null && news.data !== undefined && news.data !== null) {
        failures.push({ property: "content", reason: 'Invalid Attribute Combination: Attribute "data" cannot be specified when "content" is specified' });
    }
    const range = (v: unknown, prop: string, lo: number, hi: number) => {
        if (!known(v)) return;
        if (typeof v !== "number" || v < lo || v > hi)
            failures.push({ property: prop, reason: `Attribute ${prop} value must be between ${lo} and ${hi}, got: ${JSON.stringify(v)}` });
    };
    range(news.priority, "priority", 0, 65535);
    range(news.ttl, "ttl", -Infinity, Infinity);
    if (news.data && typeof news.data === "object" && !isUnknown(news.data)) {
        for (const k of ["priority", "weight", "port"]) range(news.data[k], `data.${k}`, 0, 65535);
        if (known(news.data.flags) && !["number", "string"].includes(typeof news.data.flags))
            failures.push({ property: "data.flags", reason: "data.flags must be a number or a string" });
    }
    if (news.proxied !== undefined && typeof news.proxied !== "boolean" && !isUnknown(news.proxied))
        failures.push({ property: "proxied", reason: "proxied must be a boolean" });
    return failures;
}

/**
 * What the API does with a record before storing it: checks content/data per type and returns the
 * record as stored (FQDN name, computed content), or throws the API's error.
 */
export function normalizeRecord(inputs: any, zone: string, method: string, path: string): any {
    const type = String(inputs.type).toUpperCase();
    const name = fqdnIn(inputs.name, zone);
    const bad = (msg: string) => cfValidation(method, path, msg);
    if (!CF_SERVED.includes(type)) throw new Error(`DNS record type ${type} is not in the testbed stand-in (the testbed DNS serves ${CF_SERVED.join(", ")})`);
    const ttl = Number(inputs.ttl);
    if (!(ttl === 1 || (ttl >= 60 && ttl <= 86400))) throw bad("TTL must be between 60 and 86400 seconds, or 1 for Automatic.");
    const proxied = inputs.proxied ?? false;
    if (proxied && !["A", "AAAA", "CNAME"].includes(type)) throw cfError(method, path, 400, [{ code: 9004, message: "This record type cannot be proxied." }]);
    let content: string;
    let data: any;
    let priority: number | undefined = inputs.priority;
    switch (type) {
        case "A":
            if (!isIpv4(inputs.content)) throw bad(`Content for A record must be a valid IPv4 address, got ${JSON.stringify(inputs.content ?? null)}.`);
            content = String(inputs.content);
            break;
        case "AAAA":
            if (!isIpv6(inputs.content)) throw bad(`Content for AAAA record must be a valid IPv6 address, got ${JSON.stringify(inputs.content ?? null)}.`);
            content = String(inputs.content).toLowerCase();
            break;
        case "CNAME":
        case "MX":
            if (!isHostname(inputs.content)) throw bad(`Content for ${type} record must be a hostname, got ${JSON.stringify(inputs.content ?? null)}.`);
            content = String(inputs.content).replace(/\.$/, "").toLowerCase();
            if (type === "MX" && priority === undefined) throw bad("MX records need a priority.");
            break;
        case "TXT":
            if (typeof inputs.content !== "string") throw bad("Content for TXT record is required.");
            content = inputs.content;
            break;
        case "SRV": {
            const d = inputs.data;
            if (!d || typeof d !== "object") throw bad("SRV records need data {priority, weight, port, target}; content alone is not accepted.");
            const p = num(d.priority),
                w = num(d.weight),
                port = num(d.port);
            if (p === undefined || w === undefined || port === undefined || !isHostname(d.target))
                throw bad("SRV data needs priority, weight, port (0-65535) and a target hostname.");
            if (!/^_[a-z0-9-]+\._(tcp|udp|tls|sctp)\./i.test(name)) throw bad(`SRV record name must be _service._proto.name, got ${name}.`);
            data = { priority: p, weight: w, port, target: String(d.target).replace(/\.$/, "").toLowerCase() };
            content = `${w} ${port} ${data.target}`;
            priority = p;
            break;
        }
        case "CAA": {
            const d = inputs.data;
            if (!d || typeof d !== "object") throw bad("CAA records need data {flags, tag, value}.");
            const flags = num(d.flags);
            if (flags === undefined || flags > 255 || !/^[A-Za-z0-9]{1,15}$/.test(String(d.tag ?? "")) || typeof d.value !== "string")
                throw bad("CAA data needs flags (0-255), a tag and a value.");
            data = { flags, tag: String(d.tag), value: d.value };
            content = `${flags} ${data.tag} "${data.value}"`;
            break;
        }
        default:
            throw new Error(`unreachable: ${type}`);
    }
    return {
        name,
        type,
        content,
        data,
        priority,
        ttl,
        proxied,
        proxiable: ["A", "AAAA", "CNAME"].includes(type),
        comment: inputs.comment ?? null,
        tags: inputs.tags ?? [],
    };
}

/** The API's duplicate rules, checked against the other records of the zone. */
export function duplicateError(record: any, others: any[], method: string, path: string): Error | undefined {
    const same = others.filter((r) => r.name === record.name);
    if (same.some((r) => r.type === record.type && canon(r.data ?? r.content) === canon(record.data ?? record.content))) {
        return cfError(method, path, 400, [{ code: 81058, message: "An identical record already exists." }]);
    }
    if (record.type === "CNAME" && same.some((r) => ["A", "AAAA", "CNAME"].includes(r.type))) {
        return cfError(method, path, 400, [{ code: 81053, message: "An A, AAAA, or CNAME record with that host already exists." }]);
    }
    if (["A", "AAAA"].includes(record.type) && same.some((r) => r.type === "CNAME")) {
        return cfError(method, path, 400, [{ code: 81054, message: "A CNAME record with that host already exists." }]);
    }
    return undefined;
}

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
