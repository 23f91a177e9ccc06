// The DigitalOcean side: a droplet that is disposable, and around it what must outlive it — the
// data volume, the reserved IP the DNS records point at — plus the cloud firewall.
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";

export interface DropletServerArgs {
    /** Region slug, e.g. nyc3. */
    readonly region: string;
    /** Size slug; s-1vcpu-1gb is the 1 GB droplet. */
    readonly size: string;
    /** Image slug, e.g. debian-13-x64. Changing it replaces the droplet (the volume survives). */
    readonly image: string;
    /** Data volume size in GB. */
    readonly volumeSizeGb: number;
    /** Give the droplet IPv6. */
    readonly ipv6: boolean;
    /** The public key installed for root. */
    readonly sshPublicKey: string;
    /** Who may reach port 22. */
    readonly sshAllowedCidrs: readonly string[];
}

const ANYWHERE = ["0.0.0.0/0", "::/0"];

/** The firewall's rules: SSH from the admin CIDRs; web, federation and ping from anywhere; all outbound. */
export function firewallRules(sshAllowedCidrs: readonly string[]) {
    const tcp = (port: string, from: readonly string[]) => ({ protocol: "tcp", portRange: port, sourceAddresses: [...from] });
    return {
        inboundRules: [tcp("22", sshAllowedCidrs), tcp("80", ANYWHERE), tcp("443", ANYWHERE), tcp("8448", ANYWHERE), { protocol: "icmp", sourceAddresses: ANYWHERE }],
        // A DigitalOcean firewall blocks what it does not allow in both directions: without these,
        // apt, ACME, DNS and federation all fail.
        outboundRules: [
            { protocol: "tcp", portRange: "1-65535", destinationAddresses: ANYWHERE },
            { protocol: "udp", portRange: "1-65535", destinationAddresses: ANYWHERE },
            { protocol: "icmp", destinationAddresses: ANYWHERE },
        ],
    };
}

export class DropletServer extends pulumi.ComponentResource {
    /** The reserved IPv4 address: the server's public address for as long as the stack exists. */
    public readonly ipv4: pulumi.Output<string>;
    /** The droplet's IPv6 address, or undefined when IPv6 is off. */
    public readonly ipv6?: pulumi.Output<string>;
    /** The data volume's block device on the droplet. */
    public readonly dataDevice: pulumi.Output<string>;
    /** The droplet's id: a new one means a new machine, on which every step must run. */
    public readonly dropletId: pulumi.Output<string>;
    /** Steps that need the volume attached and the address assigned wait for this. */
    public readonly ready: pulumi.Resource[];

    constructor(name: string, args: DropletServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:DropletServer", name, {}, opts);
        const child = { parent: this };

        const key = new digitalocean.SshKey(`${name}-ssh-key`, { name: `${name}-deploy`, publicKey: args.sshPublicKey }, child);

        // Everything that is data lives here. protect: a `pulumi destroy` or a rename cannot delete it.
        const volumeName = `${name}-data`.replace(/[^a-z0-9-]/g, "-").slice(0, 64);
        const volume = new digitalocean.Volume(
            `${name}-data`,
            {
                name: volumeName,
                region: args.region,
                size: args.volumeSizeGb,
                initialFilesystemType: "ext4",
                description: "Matrix chat data: PostgreSQL, media, signing key, backups",
            },
            { ...child, protect: true },
        );

        // No userData: image, userData and sshKeys replace the droplet when they change, so none of
        // them follows a normal config edit (a new sshPublicKey is added to the account, not forced
        // onto a running droplet).
        const droplet = new digitalocean.Droplet(
            `${name}-droplet`,
            {
                name: `${name}`,
                region: args.region,
                size: args.size,
                image: args.image,
                ipv6: args.ipv6,
                monitoring: true,
                sshKeys: [key.fingerprint],
                tags: ["phillymesh-chat"],
            },
            { ...child, protect: true, ignoreChanges: ["sshKeys"] },
        );

        const attachment = new digitalocean.VolumeAttachment(
            `${name}-data-attachment`,
            { dropletId: droplet.id.apply(Number), volumeId: volume.id },
            child,
        );

        const reservedIp = new digitalocean.ReservedIp(`${name}-ip`, { region: args.region }, { ...child, protect: true });
        const assignment = new digitalocean.ReservedIpAssignment(
            `${name}-ip-assignment`,
            { ipAddress: reservedIp.ipAddress, dropletId: droplet.id.apply(Number) },
            child,
        );

        const rules = firewallRules(args.sshAllowedCidrs);
        new digitalocean.Firewall(
            `${name}-firewall`,
            { name: `${name}-firewall`, dropletIds: [droplet.id.apply(Number)], ...rules },
            child,
        );

        this.ipv4 = reservedIp.ipAddress;
        this.dropletId = droplet.id;
        this.ipv6 = args.ipv6 ? droplet.ipv6Address : undefined;
        this.dataDevice = pulumi.interpolate`/dev/disk/by-id/scsi-0DO_Volume_${volume.name}`;
        this.ready = [attachment, assignment];
        this.registerOutputs({ ipv4: this.ipv4, ipv6: this.ipv6, dataDevice: this.dataDevice });
    }
}
