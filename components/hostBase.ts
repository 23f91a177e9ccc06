// The server made ready for everything after it: cloud-init finished, security upgrades on, SSH keys
// only, the data volume mounted at dataDir, the swap file.
import * as pulumi from "@pulumi/pulumi";
import { RemoteStep, Target } from "./remoteStep";

export interface HostBaseArgs {
    /** The server, and how to reach it. */
    readonly target: Target;
    /** Where data lives. */
    readonly dataDir: string;
    /** Block device of the data volume; undefined: dataDir is a plain directory on the host. */
    readonly dataDevice?: pulumi.Input<string>;
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
                    DATA_DEVICE: args.dataDevice ?? "",
                    SWAP_MB: String(args.swapSizeMb),
                },
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.ready = step.command;
        this.registerOutputs({});
    }
}
