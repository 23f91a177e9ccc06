// The server made ready for everything after it: cloud-init finished, security upgrades on, SSH keys
// only, the data volume mounted (once) at dataDir and grown to its size, the swap file.
import * as pulumi from "@pulumi/pulumi";
import type { DataVolume, Target } from "./host";
import { RemoteStep, ServerFile } from "./remoteStep";

/** What every server gets: security updates every day, without asking, and SSH by key only. */
export const BASE_FILES: readonly ServerFile[] = [
    // Debian's unattended-upgrades defaults: security updates only.
    {
        path: "/etc/apt/apt.conf.d/20auto-upgrades",
        content: 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";',
        mode: "0644",
        owner: "root:root",
    },
    // A homeserver on the open internet is probed for passwords from its first hour.
    {
        path: "/etc/ssh/sshd_config.d/50-phillymesh-chat.conf",
        content: ["# Managed by phillymesh-chat.", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password"].join(
            "\n",
        ),
        mode: "0644",
        owner: "root:root",
    },
];

export interface HostBaseArgs {
    readonly target: Target;
    /** Where data lives. */
    readonly dataDir: string;
    /** The data volume; undefined: dataDir is a plain directory on the host. */
    readonly volume?: DataVolume;
    /** Swap file size in MB; 0 for none. */
    readonly swapSizeMb: number;
}

export class HostBase extends pulumi.ComponentResource {
    /** Depend on this before any other step. */
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: HostBaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:HostBase", name, {}, opts);
        const step = new RemoteStep(
            `${name}-base`,
            {
                target: args.target,
                script: "base.sh",
                files: BASE_FILES,
                env: {
                    DATA_DIR: args.dataDir,
                    DATA_DEVICE: args.volume?.device ?? "",
                    SWAP_MB: String(args.swapSizeMb),
                    // The size in config: growing it re-runs this step, which grows the filesystem.
                    ...(args.volume ? { VOLUME_SIZE_GB: String(args.volume.sizeGb) } : {}),
                },
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.ready = step.command;
        this.registerOutputs({});
    }
}
