// The DigitalOcean stand-in's SshKey and getSshKeys.
//
// What it mirrors (terraform-provider-digitalocean, github.com/digitalocean/terraform-provider-digitalocean):
//   SshKey     digitalocean/sshkey/resource_ssh_key.go: name (update in place), public_key ForceNew
//              with a TrimSpace diff-suppress; id numeric; fingerprint = MD5 of the key blob, colon
//              hex (what the API returns); a key already in the account: 422 "SSH Key is already in
//              use on your account".
//   getSshKeys digitalocean/sshkey/datasource_ssh_keys.go + ssh_keys.go (internal/datalist): ssh_keys
//              [{id (int), name, fingerprint, public_key}], with the datalist's filter/sort.
//
// Serialized into the state with the providers (the SDK's function serializer captures what they
// use, from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import type * as pulumi from "@pulumi/pulumi";
import { isUnknown, plain } from "../shimKit";
import { apiError, readAccount, withAccount } from "./account";
import { tfDiff } from "./terraform";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

/** Parses "type base64 [comment]"; the blob's MD5 as aa:bb:... is DigitalOcean's fingerprint. */
export function parsePublicKey(publicKey: string): { type: string; blob: Buffer; fingerprint: string } | string {
    const parts = String(publicKey ?? "")
        .trim()
        .split(/\s+/);
    const types = [
        "ssh-ed25519",
        "ssh-rsa",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    if (parts.length < 2 || !types.includes(parts[0]) || !/^[A-Za-z0-9+/]+={0,2}$/.test(parts[1])) {
        return "Key invalid, key should be of the format `type key [comment]`";
    }
    const blob = Buffer.from(parts[1], "base64");
    // The blob starts with the key type as an SSH string: a wrong paste (or a private key) is caught here.
    const len = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
    if (len !== parts[0].length || blob.subarray(4, 4 + len).toString() !== parts[0]) {
        return "Key invalid, key should be of the format `type key [comment]`";
    }
    const md5 = require("crypto").createHash("md5").update(blob).digest("hex") as string;
    return { type: parts[0], blob, fingerprint: md5.match(/../g)!.join(":") };
}

export const sshKeyProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.name) && !news.name) failures.push({ property: "name", reason: "name must not be empty" });
        if (!isUnknown(news.publicKey) && !news.publicKey) failures.push({ property: "publicKey", reason: "publicKey must not be empty" });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, { forceNew: ["publicKey"], update: ["name"], normalize: { publicKey: (v: any) => String(v ?? "").trim() } });
    },
    async create(inputs: any) {
        const parsed = parsePublicKey(inputs.publicKey);
        if (typeof parsed === "string") throw apiError("Error creating SSH Key", "POST", "account/keys", 422, parsed);
        return withAccount((a) => {
            if (a.sshKeys.some((k: any) => k.fingerprint === parsed.fingerprint)) {
                throw apiError("Error creating SSH Key", "POST", "account/keys", 422, "SSH Key is already in use on your account");
            }
            const key = { id: a.nextKeyId++, name: inputs.name, fingerprint: parsed.fingerprint, publicKey: String(inputs.publicKey).trim() };
            a.sshKeys.push(key);
            return { id: String(key.id), outs: plain({ __repo: inputs.__repo, name: key.name, publicKey: inputs.publicKey, fingerprint: key.fingerprint }) };
        });
    },
    async update(id: string, olds: any, news: any) {
        return withAccount((a) => {
            const key = a.sshKeys.find((k: any) => String(k.id) === id);
            if (!key) throw apiError("Failed to update SSH key", "PUT", `account/keys/${id}`, 404, "The resource you were accessing could not be found.");
            key.name = news.name;
            return { outs: plain({ ...olds, __repo: news.__repo, name: news.name, publicKey: news.publicKey }) };
        });
    },
    async delete(id: string) {
        await withAccount((a) => {
            const before = a.sshKeys.length;
            a.sshKeys = a.sshKeys.filter((k: any) => String(k.id) !== id);
            if (a.sshKeys.length === before)
                throw apiError("Error deleting SSH key", "DELETE", `account/keys/${id}`, 404, "The resource you were accessing could not be found.");
        });
    },
};

export interface GetSshKeysArgs {
    filters?: { key: string; values: string[]; all?: boolean; matchBy?: "exact" | "re" | "substring" }[];
    sorts?: { key: string; direction?: "asc" | "desc" }[];
}

export interface GetSshKeysResult {
    readonly id: string;
    readonly filters?: GetSshKeysArgs["filters"];
    readonly sorts?: GetSshKeysArgs["sorts"];
    readonly sshKeys: { id: number; name: string; fingerprint: string; publicKey: string }[];
}

/**
 * digitalocean.getSshKeys: the account's keys (datasource_ssh_keys.go), with the datalist's filters
 * (key, values, all, match_by exact|re|substring) and sorts. Read in the program's own process.
 */
export async function getSshKeys(args?: GetSshKeysArgs): Promise<GetSshKeysResult> {
    const account = readAccount();
    let keys = account.sshKeys.map((k: { id: number; name: string; fingerprint: string; publicKey: string }) => ({
        id: k.id,
        name: k.name,
        fingerprint: k.fingerprint,
        publicKey: k.publicKey,
    }));
    const field = (k: Record<string, unknown>, key: string) => String(k[key === "public_key" ? "publicKey" : key] ?? "");
    for (const f of args?.filters ?? []) {
        if (!["id", "name", "fingerprint", "public_key", "publicKey"].includes(f.key)) throw new Error(`getSshKeys: unknown filter key '${f.key}'`);
        const match = (v: string, want: string) => (f.matchBy === "re" ? new RegExp(want).test(v) : f.matchBy === "substring" ? v.includes(want) : v === want);
        keys = keys.filter((k: Record<string, unknown>) =>
            f.all ? f.values.every((w) => match(field(k, f.key), w)) : f.values.some((w) => match(field(k, f.key), w)),
        );
    }
    for (const s of [...(args?.sorts ?? [])].reverse()) {
        const dir = s.direction === "desc" ? -1 : 1;
        keys = [...keys].sort((a: Record<string, unknown>, b: Record<string, unknown>) =>
            s.key === "id" ? (Number(a.id) - Number(b.id)) * dir : field(a, s.key).localeCompare(field(b, s.key)) * dir,
        );
    }
    return { id: "ssh-keys", filters: args?.filters, sorts: args?.sorts, sshKeys: keys };
}

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
