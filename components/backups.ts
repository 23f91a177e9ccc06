// Daily backups of everything that is data (database dump, keys, media) to the data volume, and
// optionally off the server, plus the restore command.
import * as pulumi from "@pulumi/pulumi";
import { ChatConfig } from "./config";
import { RemoteStep, Target } from "./remoteStep";
import { readFile } from "./templates";

export interface BackupsArgs {
    /** The server, and how to reach it. */
    readonly target: Target;
    readonly config: ChatConfig;
}

export class Backups extends pulumi.ComponentResource {
    constructor(name: string, args: BackupsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:Backups", name, {}, opts);
        const cfg = args.config;
        new RemoteStep(
            `${name}-backups`,
            {
                target: args.target,
                script: "backups.sh",
                env: {
                    DATA_DIR: cfg.dataDir,
                    BACKUP_KEEP: String(cfg.backups.keep),
                    BACKUP_RSYNC_TARGET: cfg.backups.rsyncTarget,
                    BACKUP_SCRIPT: readFile("scripts/backup.sh"),
                    RESTORE_SCRIPT: readFile("scripts/restore.sh"),
                    BACKUP_SERVICE: readFile("systemd/backup.service"),
                    BACKUP_TIMER: readFile("systemd/backup.timer"),
                },
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.registerOutputs({});
    }
}
