// The self test's own inline Pulumi program (cloudSelftest.ts drives it): key, volume, droplet,
// attachment, reserved IP + assignment, firewall and DNS records, shaped by a Cfg that each step of
// the self test changes, through the same stand-ins the program under test gets (cloudShims.ts).
import * as path from "path";
import { installCloudShims } from "./cloudShims";

const REPO = path.resolve(__dirname, "..", "..");
export const ZONE = "selftest.test";
export const VOLUME = "selftest-data";

export interface Cfg {
    publicKey: string;
    zoneId: string;
    image: string;
    volumeSize: number;
    attachDeleteBeforeReplace: boolean;
    inboundPorts: number[];
    duplicateRecord: boolean;
}

export function program(cfg: Cfg) {
    return async () => {
        installCloudShims(REPO);
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const digitalocean = require("@pulumi/digitalocean");
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const cloudflare = require("@pulumi/cloudflare");
        const key = new digitalocean.SshKey("key", { name: "cloud-selftest", publicKey: cfg.publicKey });
        const volume = new digitalocean.Volume("data", {
            name: VOLUME,
            region: "nyc3",
            size: cfg.volumeSize,
            initialFilesystemType: "ext4",
            description: "cloud selftest data",
        });
        const droplet = new digitalocean.Droplet(
            "droplet",
            {
                name: "selftest",
                region: "nyc3",
                size: "s-1vcpu-1gb",
                image: cfg.image,
                ipv6: false,
                monitoring: true,
                sshKeys: [key.fingerprint],
                tags: ["selftest"],
            },
            { ignoreChanges: ["sshKeys"] },
        );
        const dropletId = droplet.id.apply(Number);
        new digitalocean.VolumeAttachment("attach", { dropletId, volumeId: volume.id }, { deleteBeforeReplace: cfg.attachDeleteBeforeReplace });
        const ip = new digitalocean.ReservedIp("ip", { region: "nyc3" });
        new digitalocean.ReservedIpAssignment("ip-assign", { ipAddress: ip.ipAddress, dropletId }, { deleteBeforeReplace: true });
        const anywhere = ["0.0.0.0/0", "::/0"];
        new digitalocean.Firewall("fw", {
            name: "selftest-fw",
            dropletIds: [dropletId],
            inboundRules: [
                ...cfg.inboundPorts.map((p) => ({ protocol: "tcp", portRange: String(p), sourceAddresses: anywhere })),
                { protocol: "icmp", sourceAddresses: anywhere },
            ],
            outboundRules: [
                { protocol: "tcp", portRange: "1-65535", destinationAddresses: anywhere },
                { protocol: "udp", portRange: "1-65535", destinationAddresses: anywhere },
                { protocol: "icmp", destinationAddresses: anywhere },
            ],
        });
        const common = { zoneId: cfg.zoneId, ttl: 1, proxied: false, comment: "cloud selftest" };
        new cloudflare.DnsRecord("a-matrix", { ...common, name: `matrix.${ZONE}`, type: "A", content: ip.ipAddress });
        new cloudflare.DnsRecord("srv-fed", {
            ...common,
            name: `_matrix-fed._tcp.${ZONE}`,
            type: "SRV",
            priority: 10,
            data: { priority: 10, weight: 5, port: 8448, target: `matrix.${ZONE}` },
        });
        new cloudflare.DnsRecord("caa", { ...common, name: ZONE, type: "CAA", data: { flags: 0, tag: "issue", value: "letsencrypt.org" } });
        if (cfg.duplicateRecord) new cloudflare.DnsRecord("a-matrix-again", { ...common, name: `matrix.${ZONE}`, type: "A", content: ip.ipAddress });
        const keys = await digitalocean.getSshKeys({});
        return {
            dropletId: droplet.id,
            dropletIp: droplet.ipv4Address,
            reservedIp: ip.ipAddress,
            fingerprint: key.fingerprint,
            accountKeys: keys.sshKeys.length,
        };
    };
}
