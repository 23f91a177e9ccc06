// The DigitalOcean stand-in's Volume: a sparse image $B/cloud/volumes/<uuid>.img.
//
// What it mirrors (terraform-provider-digitalocean, github.com/digitalocean/terraform-provider-digitalocean):
//   Volume     digitalocean/volume/resource_volume.go: region, name, description, snapshot_id,
//              initial_filesystem_type, initial_filesystem_label ForceNew (description too: a new
//              description REPLACES the volume); size updates in place (StorageActions.Resize: the
//              block device grows, the filesystem does not); CustomizeDiff refuses a smaller size
//              at plan time ("volumes `size` can only be expanded and not shrunk"); id a UUID;
//              initial_filesystem_type ext4 is pre-formatted at create (mkfs.ext4 on the image).
//              Deleting an attached volume: 409 "attached volume cannot be deleted" (doctl#358).
//              A second volume of the same name in a region: 409 "already exists" (hashicorp/terraform#8023).
//
// Serialized into the state with the providers (the SDK's function serializer captures what they
// use, from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import type * as pulumi from "@pulumi/pulumi";
import { isUnknown, plain } from "../shimKit";
import { apiError, cloudDir, DO_REGIONS, hostOp, volumeOf, withAccount } from "./account";
import { tfDiff } from "./terraform";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

export const volumeProvider: pulumi.dynamic.ResourceProvider = {
    async check(olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.name) && !/^[a-z][a-z0-9-]{0,63}$/.test(String(news.name ?? ""))) {
            failures.push({
                property: "name",
                reason: "name: lowercase letters, digits and -, starting with a letter, at most 64 (the testbed stand-in needs a name: no autonaming)",
            });
        }
        if (!isUnknown(news.region) && !news.region) failures.push({ property: "region", reason: "region is required" });
        if (!isUnknown(news.size) && !(Number.isInteger(news.size) && news.size >= 1))
            failures.push({ property: "size", reason: `expected size to be at least (1), got ${news.size}` });
        if (news.initialFilesystemType !== undefined && !isUnknown(news.initialFilesystemType) && !["ext4", "xfs"].includes(news.initialFilesystemType)) {
            failures.push({
                property: "initialFilesystemType",
                reason: `expected initial_filesystem_type to be one of ["ext4" "xfs"], got ${news.initialFilesystemType}`,
            });
        }
        if (news.snapshotId) failures.push({ property: "snapshotId", reason: "snapshots are not in the testbed stand-in" });
        if (news.filesystemType && news.initialFilesystemType)
            failures.push({ property: "filesystemType", reason: '"filesystem_type": conflicts with initial_filesystem_type' });
        // resource_volume.go CustomizeDiff: at plan time.
        if (olds && olds.size !== undefined && !isUnknown(news.size) && Number(news.size) < Number(olds.size)) {
            failures.push({ property: "size", reason: "volumes `size` can only be expanded and not shrunk" });
        }
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, {
            forceNew: ["region", "name", "description", "snapshotId", "initialFilesystemType", "initialFilesystemLabel"],
            update: ["size", "tags"],
            sets: ["tags"],
            computed: ["filesystemType"],
            normalize: { region: (v: any) => (v === undefined ? v : String(v).toLowerCase()) },
        });
    },
    async create(inputs: any) {
        const path = require("path");
        const region = String(inputs.region).toLowerCase();
        const fstype = inputs.initialFilesystemType ?? inputs.filesystemType ?? "";
        const id = require("crypto").randomUUID();
        const image = path.join(cloudDir(), "volumes", `${id}.img`);
        await withAccount((a) => {
            if (!DO_REGIONS.includes(region)) throw apiError("Error creating Volume", "POST", "volumes", 422, "invalid region");
            if (inputs.size > 16384) throw apiError("Error creating Volume", "POST", "volumes", 422, "size_gigabytes must be at most 16384");
            if (a.volumes.some((v: any) => v.name === inputs.name && v.region === region))
                throw apiError("Error creating Volume", "POST", "volumes", 409, "already exists");
            a.volumes.push({
                id,
                name: inputs.name,
                region,
                size: inputs.size,
                description: inputs.description,
                filesystemType: fstype || undefined,
                filesystemLabel: inputs.initialFilesystemLabel,
                image,
                dropletIds: [],
                autoMountPending: !!fstype,
                status: "creating",
                createdAt: new Date().toISOString(),
            });
        });
        try {
            await hostOp(inputs, ["volume-create", image, String(inputs.size), fstype, inputs.initialFilesystemLabel ?? ""]);
        } catch (e) {
            await withAccount((a) => void (a.volumes = a.volumes.filter((v: any) => v.id !== id)));
            throw new Error(`Error creating Volume: ${(e as Error).message}`);
        }
        await withAccount((a) => void (volumeOf(a, id).status = "available"));
        return {
            id,
            outs: plain({
                ...inputs,
                region,
                volumeUrn: `do:volume:${id}`,
                dropletIds: [],
                filesystemType: fstype || undefined,
                filesystemLabel: inputs.initialFilesystemLabel,
            }),
        };
    },
    async update(id: string, olds: any, news: any) {
        if (Number(news.size) !== Number(olds.size)) {
            await withAccount(async (a) => {
                const v = volumeOf(a, id);
                if (!v)
                    throw apiError(
                        `Error resizing volume (${id})`,
                        "POST",
                        `volumes/${id}/actions`,
                        404,
                        "The resource you were accessing could not be found.",
                    );
                if (Number(news.size) < v.size)
                    throw apiError(`Error resizing volume (${id})`, "POST", `volumes/${id}/actions`, 422, "new size must be larger than the current size");
                await hostOp(news, ["volume-resize", v.image, String(news.size)]);
                v.size = Number(news.size);
            });
        }
        await withAccount((a) => void (volumeOf(a, id).tags = news.tags));
        return { outs: plain({ ...olds, ...news, region: olds.region }) };
    },
    async delete(id: string, props: any) {
        const v = await withAccount((a) => {
            const v = volumeOf(a, id);
            if (!v) return undefined;
            if (v.dropletIds.length > 0) throw apiError("Error deleting volume", "DELETE", `volumes/${id}`, 409, "attached volume cannot be deleted");
            v.status = "deleting";
            return v;
        });
        if (!v) throw apiError("Error deleting volume", "DELETE", `volumes/${id}`, 404, "The resource you were accessing could not be found.");
        await hostOp(props, ["volume-delete", v.image]);
        await withAccount((a) => void (a.volumes = a.volumes.filter((x: any) => x.id !== id)));
    },
};

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
