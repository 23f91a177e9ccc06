// The DigitalOcean stand-in's ReservedIp and ReservedIpAssignment.
//
// What it mirrors (terraform-provider-digitalocean, github.com/digitalocean/terraform-provider-digitalocean):
//   ReservedIp digitalocean/reservedip/resource_reserved_ip.go: region ForceNew; ip from the
//              testbed's pool (10.250.0.130-140; TESTBED_DO_RESERVED_IPS=FROM-TO of the last octet);
//              id = the address. Droplets get 10.250.0.100-129 (TESTBED_DO_DROPLET_IPS), guest
//              do-<droplet id>, and with ipv6 2001:db8:250::<octet in hex> on their interface.
//   ReservedIpAssignment .../resource_reserved_ip_assignment.go: ip_address, droplet_id ForceNew;
//              create = the Assign action, which MOVES an address assigned to another droplet;
//              delete unassigns only if it is still on that droplet ("reserved IP already
//              unassigned, removing from state" otherwise; the real code would dereference a nil
//              Droplet there if it is on none: the stand-in treats that as unassigned). Assigning adds
//              the address as /32 to the guest's host0, sends a gratuitous ARP and flushes the host's
//              neighbour entry, so traffic follows at once.
//
// Serialized into the state with the providers (the SDK's function serializer captures what they
// use, from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import type * as pulumi from "@pulumi/pulumi";
import { isUnknown, plain } from "../shimKit";
import { apiError, DO_REGIONS, dropletOf, freeAddress, hostOp, takenAddresses, withAccount } from "./account";
import { applyFirewalls } from "./firewall";
import { prefixedUniqueId, tfDiff } from "./terraform";

/* eslint-disable @typescript-eslint/no-explicit-any */

export const reservedIpProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.region) && !news.region) failures.push({ property: "region", reason: "region is required" });
        if (news.dropletId !== undefined)
            failures.push({ property: "dropletId", reason: "droplet_id on the ReservedIp is not in the testbed stand-in: use a ReservedIpAssignment" });
        if (news.ipAddress !== undefined)
            failures.push({ property: "ipAddress", reason: "ip_address (adopting an existing address) is not in the testbed stand-in" });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, { forceNew: ["region"], update: [], normalize: { region: (v: any) => (v === undefined ? v : String(v).toLowerCase()) } });
    },
    async create(inputs: any) {
        const region = String(inputs.region).toLowerCase();
        const ip = await withAccount((a) => {
            if (!DO_REGIONS.includes(region)) throw apiError("Error creating reserved IP", "POST", "reserved_ips", 422, "invalid region");
            const ip = freeAddress(process.env.TESTBED_DO_RESERVED_IPS || "130-140", takenAddresses(a));
            if (!ip)
                throw apiError(
                    "Error creating reserved IP",
                    "POST",
                    "reserved_ips",
                    422,
                    "the testbed's reserved IP pool is exhausted (TESTBED_DO_RESERVED_IPS)",
                );
            a.reservedIps.push({ ip, region });
            return ip;
        });
        return { id: ip, outs: plain({ __repo: inputs.__repo, region, ipAddress: ip, reservedIpUrn: `do:reservedip:${ip}` }) };
    },
    async delete(id: string, props: any) {
        await withAccount(async (a) => {
            const r = a.reservedIps.find((x: any) => x.ip === id);
            if (!r) throw apiError("Error deleting reserved IP", "DELETE", `reserved_ips/${id}`, 404, "The resource you were accessing could not be found.");
            if (r.dropletId !== undefined) {
                const d = dropletOf(a, r.dropletId);
                if (d) await hostOp(props, ["ip-unassign", d.guest, id]);
            }
            a.reservedIps = a.reservedIps.filter((x: any) => x.ip !== id);
            await applyFirewalls(props, a);
        });
    },
};

export const reservedIpAssignmentProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.ipAddress) && !/^(\d{1,3}\.){3}\d{1,3}$/.test(String(news.ipAddress ?? "")))
            failures.push({ property: "ipAddress", reason: `expected ip_address to contain a valid IPv4 address, got: ${news.ipAddress}` });
        if (!isUnknown(news.dropletId) && !(Number.isInteger(news.dropletId) && news.dropletId !== 0))
            failures.push({ property: "dropletId", reason: `expected a non-zero integer droplet_id, got ${JSON.stringify(news.dropletId)}` });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, { forceNew: ["ipAddress", "dropletId"], update: [] });
    },
    async create(inputs: any) {
        const { ipAddress, dropletId } = inputs;
        await withAccount(async (a) => {
            const d = dropletOf(a, dropletId);
            if (!d || d.status !== "active") throw new Error(`Error waiting for droplet (${dropletId}) to be ready for reserved IP assign: droplet not found`);
            const r = a.reservedIps.find((x: any) => x.ip === ipAddress);
            if (!r)
                throw apiError(
                    `Error Assigning reserved IP (${ipAddress}) to the droplet`,
                    "POST",
                    `reserved_ips/${ipAddress}/actions`,
                    404,
                    "The resource you were accessing could not be found.",
                );
            if (r.region !== d.region)
                throw apiError(
                    `Error Assigning reserved IP (${ipAddress}) to the droplet`,
                    "POST",
                    `reserved_ips/${ipAddress}/actions`,
                    422,
                    "The reserved IP and the Droplet must be in the same region.",
                );
            if (r.dropletId !== undefined && String(r.dropletId) !== String(dropletId)) {
                // The Assign action moves an address that is on another droplet.
                const old = dropletOf(a, r.dropletId);
                if (old) await hostOp(inputs, ["ip-unassign", old.guest, ipAddress]);
            }
            await hostOp(inputs, ["ip-assign", d.guest, ipAddress]);
            r.dropletId = dropletId;
            await applyFirewalls(inputs, a);
        });
        return { id: prefixedUniqueId(`${dropletId}-${ipAddress}-`), outs: plain({ __repo: inputs.__repo, ipAddress, dropletId }) };
    },
    async delete(_id: string, props: any) {
        const { ipAddress, dropletId } = props;
        await withAccount(async (a) => {
            const r = a.reservedIps.find((x: any) => x.ip === ipAddress);
            if (!r)
                throw apiError("Error retrieving reserved IP", "GET", `reserved_ips/${ipAddress}`, 404, "The resource you were accessing could not be found.");
            if (String(r.dropletId) !== String(dropletId)) return; // "reserved IP already unassigned, removing from state"
            const d = dropletOf(a, dropletId);
            if (d) await hostOp(props, ["ip-unassign", d.guest, ipAddress]);
            delete r.dropletId;
            await applyFirewalls(props, a);
        });
    },
};

/* eslint-enable @typescript-eslint/no-explicit-any */
