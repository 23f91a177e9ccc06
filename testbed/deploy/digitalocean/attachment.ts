// The DigitalOcean stand-in's VolumeAttachment: a loop device over the volume's image, inside the guest.
//
// What it mirrors (terraform-provider-digitalocean, github.com/digitalocean/terraform-provider-digitalocean):
//   VolumeAttachment digitalocean/volume/resource_volume_attachment.go: droplet_id, volume_id
//              ForceNew; create attaches unless the volume is already on that droplet; only "Droplet
//              already has a pending event." is retried, so a volume attached ELSEWHERE fails at once
//              with the API's 422 (csi-digitalocean driver/controller.go matches "This volume is
//              already attached"); delete DetachByDropletID: 422 "Attachment not found" (doctl#207)
//              when it is not on that droplet. The device appears in the guest as /dev/sdX with
//              /dev/disk/by-id/scsi-0DO_Volume_<name> (docs.digitalocean.com/products/volumes/
//              details/naming-conventions). The FIRST attach of a volume created pre-formatted
//              auto-mounts it at /mnt/<name, - replaced by _> with an enabled systemd mount unit
//              /etc/systemd/system/mnt-<name_>.mount, options defaults,nofail,discard,noatime
//              (docs .../volumes/how-to/mount: "only during a volume's initial creation"); later
//              attaches do not. The program must clean that mount up itself.
//              (TESTBED_DO_AUTOMOUNT=fstab writes an /etc/fstab line instead of the unit.)
//              STRICTER THAN DIGITALOCEAN: detaching while the filesystem is mounted anywhere inside
//              the guest FAILS LOUDLY. DigitalOcean would pull the disk from under the running
//              system (and PostgreSQL); that is the data-loss bug the program's clean-stop step exists
//              to prevent, and the stand-in makes its absence visible.
//
// Serialized into the state with the providers (the SDK's function serializer captures what they
// use, from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import type * as pulumi from "@pulumi/pulumi";
import { isUnknown, plain } from "../shimKit";
import { apiError, dropletOf, hostOp, volumeOf, withAccount } from "./account";
import { prefixedUniqueId, tfDiff } from "./terraform";

/* eslint-disable @typescript-eslint/no-explicit-any */

export const volumeAttachmentProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.dropletId) && !(Number.isInteger(news.dropletId) && news.dropletId !== 0))
            failures.push({ property: "dropletId", reason: `expected a non-zero integer droplet_id, got ${JSON.stringify(news.dropletId)}` });
        if (!isUnknown(news.volumeId) && !news.volumeId) failures.push({ property: "volumeId", reason: "volume_id must not be empty" });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, { forceNew: ["dropletId", "volumeId"], update: [] });
    },
    async create(inputs: any) {
        const { dropletId, volumeId } = inputs;
        const prefix = "Error attaching volume to droplet after retry timeout";
        await withAccount(async (a) => {
            const v = volumeOf(a, volumeId);
            if (!v) throw apiError("Error retrieving volume", "GET", `volumes/${volumeId}`, 404, "The resource you were accessing could not be found.");
            // resource_volume_attachment.go: no API call when it is already on this droplet.
            if (v.dropletIds.length > 0 && String(v.dropletIds[0]) === String(dropletId)) return;
            const wrap = (status: number, msg: string) =>
                apiError(
                    `${prefix}: [WARN] Error attaching volume (${volumeId}) to Droplet (${dropletId})`,
                    "POST",
                    `volumes/${volumeId}/actions`,
                    status,
                    msg,
                );
            const d = dropletOf(a, dropletId);
            if (!d || d.status !== "active") throw wrap(422, `Droplet ${dropletId} not found`);
            // Only "Droplet already has a pending event." is retried: this fails at once.
            if (v.dropletIds.length > 0) throw wrap(422, `This volume is already attached to another Droplet (${v.dropletIds[0]}).`);
            if (d.region !== v.region) throw wrap(422, "Droplet and Volume must be in the same region.");
            const [loop, dev] = (await hostOp(inputs, ["volume-attach", d.guest, v.name, v.image, v.autoMountPending ? "1" : "0"]))
                .split("\n")
                .pop()!
                .split(" ");
            v.dropletIds = [dropletId];
            v.attachment = { dropletId, loop, dev };
            v.autoMountPending = false;
        });
        return { id: prefixedUniqueId(`${dropletId}-${volumeId}-`), outs: plain({ __repo: inputs.__repo, dropletId, volumeId }) };
    },
    async delete(_id: string, props: any) {
        const { dropletId, volumeId } = props;
        await withAccount(async (a) => {
            const wrap = (status: number, msg: string) =>
                apiError(
                    `Error detaching volume from droplet after retry timeout: [WARN] Error detaching volume (${volumeId}) from Droplet (${dropletId})`,
                    "POST",
                    `volumes/${volumeId}/actions`,
                    status,
                    msg,
                );
            const v = volumeOf(a, volumeId);
            if (!v) throw wrap(404, "The resource you were accessing could not be found.");
            if (String(v.dropletIds[0]) !== String(dropletId)) throw wrap(422, "Attachment not found");
            const d = dropletOf(a, dropletId);
            await hostOp(props, ["volume-detach", d?.guest ?? `do-${dropletId}`, v.name, v.attachment?.loop ?? "-", v.attachment?.dev ?? "-"]);
            v.dropletIds = [];
            delete v.attachment;
        });
    },
};

/* eslint-enable @typescript-eslint/no-explicit-any */
