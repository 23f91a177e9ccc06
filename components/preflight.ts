// Look-ups in the clouds before anything is declared, so that what the user must fix fails the
// preview with one clear message and nothing half-made: the SSH key named by doSshKey must be in the
// DigitalOcean account, and the Cloudflare zone must hold no record this stack would add beside.
import * as pulumi from "@pulumi/pulumi";
import * as cloudflare from "@pulumi/cloudflare";
import * as digitalocean from "@pulumi/digitalocean";
import type { ChatConfig } from "./config";
import { CHAT_DNS_TYPE, conflictingRecords, conflictMessage, DnsRecordSpec, ownerComment, recordResourceName, recordShape, ZoneRecord } from "./dns";
import { hostnames } from "./layout";

/** What the look-ups found, for buildChat. */
export interface CloudFacts {
    /** The fingerprint of the account key named by doSshKey (undefined: a new key is made). */
    readonly accountKeyFingerprint?: string;
}

async function accountKeyFingerprint(ref: string): Promise<string> {
    const { sshKeys } = await digitalocean.getSshKeys({});
    const found = sshKeys.find((k) => k.fingerprint === ref || String(k.id) === ref);
    if (!found) {
        const have = sshKeys.map((k) => `${k.name} (${k.fingerprint}, id ${k.id})`).join("; ") || "none";
        throw new pulumi.RunError(`phillymesh-chat:doSshKey ${ref} is not an SSH key of this DigitalOcean account (it has: ${have})`);
    }
    return found.fingerprint;
}

/**
 * The records this stack published at its last deployment (its own `dnsRecords` output, read back
 * through a reference to itself): records in the zone that match one of these are the stack's own,
 * even when a program from before the owner comment made them. Empty for a new stack.
 */
async function lastPublished(): Promise<DnsRecordSpec[]> {
    const self = new pulumi.StackReference(`${pulumi.getOrganization()}/${pulumi.getProject()}/${pulumi.getStack()}`);
    const details = await self.getOutputDetails("dnsRecords").catch(() => undefined);
    const value = details?.value ?? details?.secretValue;
    return Array.isArray(value) ? (value as DnsRecordSpec[]) : [];
}

async function checkZone(cfg: ChatConfig, zoneId: string, resourceName: string): Promise<void> {
    // The same set ChatDns declares: AAAA records exactly when the droplet has IPv6.
    const withIpv6 = cfg.hosting.kind === "digitalocean" && cfg.hosting.ipv6;
    const shape = recordShape(hostnames(cfg.domain), withIpv6, cfg.tls.apexOnServer, { issuer: cfg.tls.caaIssuer, email: cfg.adminEmail });
    const names = [...new Set(shape.map((s) => s.name))];
    const [found, published] = await Promise.all([
        Promise.all(names.map((name) => cloudflare.getDnsRecords({ zoneId, name: { exact: name } }))),
        lastPublished(),
    ]);
    const owner = ownerComment(pulumi.getStack());
    const conflicts = conflictingRecords(shape, found.flatMap((f) => f.results) as ZoneRecord[], owner, published);
    if (conflicts.length === 0) return;
    const resourceNameOf = (r: ZoneRecord) => {
        const spec = shape.find((s) => s.name === r.name && s.type === r.type && (s.type !== "CAA" || s.tag === r.data?.tag));
        return spec ? recordResourceName(resourceName, spec) : undefined;
    };
    const parentUrn = `urn:pulumi:${pulumi.getStack()}::${pulumi.getProject()}::${CHAT_DNS_TYPE}::${resourceName}`;
    throw new pulumi.RunError(conflictMessage(conflicts, zoneId, owner, resourceNameOf, parentUrn));
}

/** Runs the look-ups the config calls for; rejects with the message to show when one fails. */
export async function preflight(cfg: ChatConfig, name = "chat"): Promise<CloudFacts> {
    const key = cfg.hosting.kind === "digitalocean" && cfg.hosting.sshKey.kind === "account" ? cfg.hosting.sshKey.fingerprintOrId : undefined;
    const [fingerprint] = await Promise.all([
        key ? accountKeyFingerprint(key) : undefined,
        cfg.dns.kind === "cloudflare" ? checkZone(cfg, cfg.dns.zoneId, name) : undefined,
    ]);
    return { accountKeyFingerprint: fingerprint };
}
