// The server made ready for everything after it: cloud-init finished, security upgrades on, SSH keys
// only, the data volume mounted (once) at dataDir and grown to its size, the swap file.
import * as pulumi from "@pulumi/pulumi";
import type { DataVolume, Target } from "./host";
import { RemoteStep } from "./remoteStep";

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
