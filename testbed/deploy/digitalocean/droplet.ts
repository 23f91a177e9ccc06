// The DigitalOcean stand-in's Droplet: a booted testbed guest do-<id>.
//
// What it mirrors (terraform-provider-digitalocean, github.com/digitalocean/terraform-provider-digitalocean):
//   Droplet    digitalocean/droplet/resource_droplet.go: image, region, ssh_keys, user_data, monitoring,
//              droplet_agent, vpc_uuid, public_networking, gpu_partition_mode ForceNew, and ipv6
//              true->false ForceNew (CustomizeDiff, issue 1104); name, size, tags, backups, ipv6
//              false->true update in place. Create BOOTS A TESTBED GUEST (boot.sh --no-data-dir
//              --authorized-keys: root holds exactly the keys named in ssh_keys, by fingerprint or
//              id as expandSshKeys reads them; a new machine-id). Unknown image: 422 "You specified an
//              invalid image for Droplet creation." (terraform-provider-digitalocean PR 1035); unknown
//              keys: 422 "<keys> are invalid key identifiers for Droplet creation." (issue 331).
//              Size update: the guest's memory cap changes (DO powers the droplet off for a resize).
//              Delete destroys the guest (clean poweroff) and, as the API does, detaches its volumes,
//              unassigns its reserved IPs and drops it from firewalls.
//
// Serialized into the state with the providers (the SDK's function serializer captures what they
// use, from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import type * as pulumi from "@pulumi/pulumi";
import { isUnknown, plain } from "../shimKit";
import { apiError, cloudDir, DO_IMAGES, DO_REGIONS, DO_SIZES, dropletOf, freeAddress, hostOp, takenAddresses, withAccount } from "./account";
import { applyFirewalls } from "./firewall";
import { tfDiff } from "./terraform";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

const DROPLET_FORCE_NEW = ["image", "region", "sshKeys", "userData", "monitoring", "dropletAgent", "vpcUuid", "publicNetworking", "gpuPartitionMode"];
const DROPLET_UPDATE = ["name", "size", "tags", "backups", "backupPolicy", "gracefulShutdown", "resizeDisk", "ipv6", "privateNetworking", "volumeIds"];

export const dropletProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.name) && !news.name) failures.push({ property: "name", reason: "the testbed stand-in needs a name (no autonaming)" });
        if (!isUnknown(news.image) && !news.image) failures.push({ property: "image", reason: "image is required" });
        if (!isUnknown(news.size) && !news.size) failures.push({ property: "size", reason: "size is required" });
        if (news.userData) failures.push({ property: "userData", reason: "user_data is not in the testbed stand-in (no cloud-init in the testbed guests)" });
        for (const k of ["volumeIds", "vpcUuid", "backupPolicy", "gpuPartitionMode"]) {
            if (news[k] !== undefined && !(Array.isArray(news[k]) && news[k].length === 0))
                failures.push({ property: k, reason: `${k} is not in the testbed stand-in` });
        }
        if (news.backupPolicy && !news.backups) failures.push({ property: "backupPolicy", reason: "backup_policy can only be set when backups are enabled" });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        const r = tfDiff(olds, news, {
            forceNew: DROPLET_FORCE_NEW,
            update: DROPLET_UPDATE,
            sets: ["sshKeys", "tags", "volumeIds"],
            computed: ["region", "vpcUuid", "publicNetworking", "privateNetworking", "volumeIds"],
            defaults: { monitoring: false, ipv6: false, backups: false, gracefulShutdown: false, resizeDisk: true },
            normalize: {
                region: (v: any) => (v === undefined ? v : String(v).toLowerCase()),
                size: (v: any) => (v === undefined ? v : String(v).toLowerCase()),
            },
        });
        // resource_droplet.go CustomizeDiff: ipv6 true -> false forces a new droplet (issue 1104).
        if ((olds.ipv6 ?? false) === true && news.ipv6 === false) return { changes: true, replaces: [...(r.replaces ?? []), "ipv6"] };
        return r;
    },
    async create(inputs: any) {
        const fs = require("fs");
        const path = require("path");
        const region = String(inputs.region ?? "nyc3").toLowerCase();
        const size = String(inputs.size).toLowerCase();
        const fail = (status: number, msg: string) => apiError("Error creating droplet", "POST", "droplets", status, msg);
        const d = await withAccount((a) => {
            if (!(inputs.image in DO_IMAGES)) throw fail(422, "You specified an invalid image for Droplet creation.");
            if (!DO_REGIONS.includes(region)) throw fail(422, "You specified an invalid region for Droplet creation.");
            if (!(size in DO_SIZES)) throw fail(422, "You specified an invalid size for Droplet creation.");
            // expandSshKeys: an integer is a key id, anything else a fingerprint.
            const wanted: string[] = (inputs.sshKeys ?? []).map(String);
            const keys = wanted.map((k) => a.sshKeys.find((x: any) => (/^\d+$/.test(k) ? String(x.id) === k : x.fingerprint === k)));
            const bad = wanted.filter((_k, i) => !keys[i]);
            if (bad.length > 0) throw fail(422, `${bad.join(", ")} are invalid key identifiers for Droplet creation.`);
            const ipv4 = freeAddress(process.env.TESTBED_DO_DROPLET_IPS || "100-129", takenAddresses(a));
            if (!ipv4) throw fail(422, "the testbed's droplet address pool is exhausted (TESTBED_DO_DROPLET_IPS)");
            const id = a.nextDropletId++;
            const octet = Number(ipv4.split(".")[3]);
            const d = {
                id,
                name: inputs.name,
                guest: `do-${id}`,
                ipv4,
                ipv6: inputs.ipv6 ? `2001:db8:250::${octet.toString(16)}` : undefined,
                image: inputs.image,
                region,
                size,
                tags: inputs.tags ?? [],
                sshKeys: keys.map((k: any) => k.id),
                monitoring: !!inputs.monitoring,
                status: "new",
                createdAt: new Date().toISOString(),
                authorizedKeys: keys.map((k: any) => k.publicKey),
            };
            a.droplets.push(d);
            return d;
        });
        const keysFile = path.join(cloudDir(), `keys-${d.id}.pub`);
        try {
            fs.writeFileSync(keysFile, d.authorizedKeys.map((k: string) => k + "\n").join(""), { mode: 0o600 });
            await hostOp(inputs, ["droplet-boot", d.guest, d.ipv4, `${DO_SIZES[size].memory}M`, keysFile, ...(d.ipv6 ? [d.ipv6] : [])]);
        } catch (e) {
            // No half-made droplet: the guest goes, and so does the account's record of it.
            await hostOp(inputs, ["droplet-destroy", d.guest]).catch(() => undefined);
            await withAccount((a) => void (a.droplets = a.droplets.filter((x: any) => x.id !== d.id)));
            throw new Error(`Error creating droplet: ${(e as Error).message}`);
        } finally {
            fs.rmSync(keysFile, { force: true });
        }
        await withAccount((a) => void (dropletOf(a, d.id).status = "active"));
        const s = DO_SIZES[size];
        return {
            id: String(d.id),
            outs: plain({
                ...inputs,
                region,
                size,
                dropletUrn: `do:droplet:${d.id}`,
                ipv4Address: d.ipv4,
                ipv4AddressPrivate: "",
                ipv6Address: d.ipv6 ?? "",
                status: "active",
                locked: false,
                memory: s.memory,
                vcpus: s.vcpus,
                disk: s.disk,
                createdAt: d.createdAt,
                volumeIds: [],
                ipv6: !!inputs.ipv6,
                monitoring: !!inputs.monitoring,
                __guest: d.guest,
            }),
        };
    },
    async update(id: string, olds: any, news: any) {
        const outs = { ...olds, ...news, region: olds.region, sshKeys: olds.sshKeys };
        await withAccount(async (a) => {
            const d = dropletOf(a, id);
            if (!d) throw new Error(`droplet (${id}) not found during update`);
            const size = String(news.size).toLowerCase();
            if (size !== d.size) {
                if (!(size in DO_SIZES))
                    throw apiError(
                        `Error resizing droplet (${id})`,
                        "POST",
                        `droplets/${id}/actions`,
                        422,
                        "You specified an invalid size for Droplet resize.",
                    );
                await hostOp(news, ["droplet-mem", d.guest, `${DO_SIZES[size].memory}M`]);
                d.size = size;
                Object.assign(outs, { size, memory: DO_SIZES[size].memory, vcpus: DO_SIZES[size].vcpus, disk: DO_SIZES[size].disk });
            }
            if (news.ipv6 && !d.ipv6) {
                d.ipv6 = `2001:db8:250::${Number(d.ipv4.split(".")[3]).toString(16)}`;
                await hostOp(news, ["droplet-ipv6", d.guest, d.ipv6]);
                outs.ipv6Address = d.ipv6;
                await applyFirewalls(news, a);
            }
            d.name = news.name;
            d.tags = news.tags ?? [];
        });
        return { outs: plain(outs) };
    },
    async delete(id: string, props: any) {
        const d = await withAccount((a) => {
            const d = dropletOf(a, id);
            if (d) d.status = "deleting";
            return d;
        });
        if (!d) return; // "Handle already destroyed droplets": a 404 on delete is success.
        await hostOp(props, ["droplet-destroy", d.guest]);
        await withAccount(async (a) => {
            // What the API does to a destroyed droplet's attachments.
            for (const v of a.volumes.filter((v: any) => v.dropletIds.map(String).includes(String(id)))) {
                if (v.attachment?.loop) await hostOp(props, ["volume-detach", d.guest, v.name, v.attachment.loop, v.attachment.dev]);
                v.dropletIds = [];
                delete v.attachment;
            }
            for (const r of a.reservedIps.filter((r: any) => String(r.dropletId) === String(id))) delete r.dropletId;
            for (const fw of a.firewalls) fw.dropletIds = (fw.dropletIds ?? []).filter((x: any) => String(x) !== String(id));
            a.droplets = a.droplets.filter((x: any) => String(x.id) !== String(id));
            await applyFirewalls(props, a);
        });
    },
};

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
