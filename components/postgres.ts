// PostgreSQL for Synapse: the distribution's server, cluster on the data volume, localhost only.
import * as pulumi from "@pulumi/pulumi";
import type { PostgresSettings } from "./config";
import { Target } from "./host";
import { RemoteStep } from "./remoteStep";

export interface PostgresArgs {
    readonly target: Target;
    readonly dataDir: string;
    readonly settings: PostgresSettings;
}

export class Postgres extends pulumi.ComponentResource {
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: PostgresArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:Postgres", name, {}, opts);
        const s = args.settings;
        const step = new RemoteStep(
            `${name}-postgres`,
            {
                target: args.target,
                script: "postgres.sh",
                handlesSecrets: true,
                env: {
                    DATA_DIR: args.dataDir,
                    PG_PASSWORD: s.password,
                    PG_SHARED_BUFFERS_MB: String(s.sharedBuffersMb),
                    PG_WORK_MEM_MB: String(s.workMemMb),
                    PG_MAX_CONNECTIONS: String(s.maxConnections),
                    PG_LOW_MEMORY: String(s.lowMemory),
                },
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.ready = step.command;
        this.registerOutputs({});
    }
}
