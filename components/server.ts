// The DigitalOcean side. The droplet is DISPOSABLE: a change of image or region replaces it, and
// every step then runs again on the new one. What must outlive it is protected: the data volume
// (PostgreSQL, media, signing key, certificates, backups) and the reserved IP the DNS records point at.
//
// A replacement, in the order the engine runs it (deleteBeforeReplace where DigitalOcean needs it):
//   1. the new droplet is created (the old one keeps serving);
//   2. the data-release command's delete runs on the OLD droplet: Synapse, nginx, the timers and
//      PostgreSQL stop, the volume is unmounted (files/steps/release-volume.sh);
//   3. the old attachment is deleted (DigitalOcean attaches a volume to one droplet at a time and
//      answers 422 while it is still on the old one), then the volume is attached to the new droplet;
//   4. the reserved IP is unassigned from the old droplet and assigned to the new one;
//   5. every step runs on the new droplet (they carry the droplet id), the old droplet is deleted.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import * as digitalocean from "@pulumi/digitalocean";
import type { DropletHosting, DropletSshKey } from "./config";
import { Host, sshCommand, sshConnection } from "./host";
import { PORTS } from "./layout";
import { readFile, shellQuote } from "./templates";

/** What the droplet is built from: the hosting settings, plus the deploy key and the data directory. */
export interface DropletServerArgs extends Omit<DropletHosting, "kind"> {
    /** The private half of the SSH key, for the steps. */
    readonly privateKey: pulumi.Input<string>;
    /** Where the volume is mounted. */
    readonly dataDir: string;
    /** The fingerprint of the account key named by doSshKey, as preflight found it. */
    readonly accountKeyFingerprint?: string;
}

const ANYWHERE = ["0.0.0.0/0", "::/0"];

/** The firewall's rules: SSH from the admin CIDRs; web, federation and ping from anywhere; all outbound. */
function firewallRules(sshAllowedCidrs: readonly string[]) {
    const tcp = (port: number, from: readonly string[]) => ({ protocol: "tcp", portRange: String(port), sourceAddresses: [...from] });
    return {
        inboundRules: [
            tcp(PORTS.ssh, sshAllowedCidrs),
            tcp(PORTS.http, ANYWHERE),
            tcp(PORTS.https, ANYWHERE),
            tcp(PORTS.federation, ANYWHERE),
            { protocol: "icmp", sourceAddresses: ANYWHERE },
        ],
        // A DigitalOcean firewall blocks what it does not allow in both directions: without these,
        // apt, ACME, DNS and federation all fail.
        outboundRules: [
            { protocol: "tcp", portRange: "1-65535", destinationAddresses: ANYWHERE },
            { protocol: "udp", portRange: "1-65535", destinationAddresses: ANYWHERE },
            { protocol: "icmp", destinationAddresses: ANYWHERE },
        ],
    };
}

/** The volume's name in DigitalOcean (and so its device: /dev/disk/by-id/scsi-0DO_Volume_<name>). */
function volumeName(name: string): string {
    return `${name}-data`.replace(/[^a-z0-9-]/g, "-").slice(0, 64);
}

/**
 * The fingerprint the droplet is created with: of a new key made from the public key, or of the key
 * already in the account (DigitalOcean refuses to add the same public key twice, with 422 "SSH Key is
 * already in use on your account"); preflight.ts has looked that one up.
 */
function dropletKey(name: string, key: DropletSshKey, accountKeyFingerprint: string | undefined, opts: pulumi.CustomResourceOptions): pulumi.Input<string> {
    if (key.kind === "new") {
        return new digitalocean.SshKey(`${name}-ssh-key`, { name: `${name}-deploy`, publicKey: key.publicKey }, opts).fingerprint;
    }
    if (!accountKeyFingerprint) throw new Error("internal: doSshKey was not looked up (preflight)");
    return accountKeyFingerprint;
}

export class DropletServer extends pulumi.ComponentResource {
    /** The server, for the steps. */
    public readonly host: Host;
    /** The droplet's id, for DigitalOcean's monitoring (monitoring.ts). */
    public readonly dropletId: pulumi.Output<string>;

    constructor(name: string, args: DropletServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:DropletServer", name, {}, opts);
        const child = { parent: this };

        // Everything that is data lives here. protect: a `pulumi destroy` or a rename cannot delete it.
        const volume = new digitalocean.Volume(
            `${name}-data`,
            {
                name: volumeName(name),
                region: args.region,
                size: args.volumeSizeGb,
                initialFilesystemType: "ext4",
                description: "Matrix chat data: PostgreSQL, media, signing key, backups",
            },
            { ...child, protect: true },
        );

        // No userData: image, userData and sshKeys replace the droplet when they change, so none of
        // them follows a normal config edit (a new key is added to the account, not forced onto a
        // running droplet). Not protected: it is disposable, and a changed image must replace it.
        const droplet = new digitalocean.Droplet(
            `${name}-droplet`,
            {
                name: `${name}`,
                region: args.region,
                size: args.size,
                image: args.image,
                ipv6: args.ipv6,
                monitoring: true,
                sshKeys: [dropletKey(name, args.sshKey, args.accountKeyFingerprint, child)],
                tags: ["phillymesh-chat"],
            },
            { ...child, ignoreChanges: ["sshKeys"] },
        );
        const dropletId = droplet.id.apply(Number);

        // DigitalOcean attaches a volume to one droplet at a time: the old attachment must go first.
        const attachment = new digitalocean.VolumeAttachment(
            `${name}-data-attachment`,
            { dropletId, volumeId: volume.id },
            { ...child, deleteBeforeReplace: true },
        );

        // Before any detach, on the droplet that holds the volume: stop what writes to it and unmount it.
        // Its triggers name the attachment, so when the attachment is replaced the engine deletes this
        // first (dependents of a delete-before-replace resource go before it), running `delete` on the
        // old droplet over its own address.
        const release = new command.remote.Command(
            `${name}-data-release`,
            {
                connection: { ...sshConnection(droplet.ipv4Address, PORTS.ssh, "root", args.privateKey), dialErrorLimit: 6 },
                delete: `DATA_DIR=${shellQuote(args.dataDir)} bash -c ${shellQuote(readFile("steps/release-volume.sh"))}`,
                triggers: [droplet.id, attachment.id],
                logging: "stdoutAndStderr",
            },
            { ...child, deleteBeforeReplace: true, dependsOn: [attachment] },
        );

        const reservedIp = new digitalocean.ReservedIp(`${name}-ip`, { region: args.region }, { ...child, protect: true });
        // Unassign from the old droplet before assigning to the new one.
        const assignment = new digitalocean.ReservedIpAssignment(
            `${name}-ip-assignment`,
            { ipAddress: reservedIp.ipAddress, dropletId },
            { ...child, deleteBeforeReplace: true },
        );

        new digitalocean.Firewall(`${name}-firewall`, { name: `${name}-firewall`, dropletIds: [dropletId], ...firewallRules(args.sshAllowedCidrs) }, child);

        this.host = {
            connection: sshConnection(reservedIp.ipAddress, PORTS.ssh, "root", args.privateKey),
            sudo: false,
            serverId: droplet.id,
            ipv4: reservedIp.ipAddress,
            ipv6: args.ipv6 ? droplet.ipv6Address : undefined,
            volume: { device: pulumi.interpolate`/dev/disk/by-id/scsi-0DO_Volume_${volume.name}`, sizeGb: args.volumeSizeGb },
            ready: [attachment, assignment, release],
            sshCommand: sshCommand("root", reservedIp.ipAddress),
        };
        this.dropletId = droplet.id;
        this.registerOutputs({ ipv4: this.host.ipv4, ipv6: this.host.ipv6, dropletId: droplet.id });
    }
}
