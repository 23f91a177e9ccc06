// Daily backups of everything that is data (database dump, keys, media) to the data volume, and
// optionally off the server, plus the restore command.
import * as pulumi from "@pulumi/pulumi";
import type { BackupSettings } from "./config";
import { Target } from "./host";
import { RemoteStep } from "./remoteStep";
import { readFile } from "./templates";

export interface BackupsArgs {
    readonly target: Target;
    readonly dataDir: string;
    readonly backups: BackupSettings;
}

export class Backups extends pulumi.ComponentResource {
    constructor(name: string, args: BackupsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:Backups", name, {}, opts);
        new RemoteStep(
            `${name}-backups`,
            {
                target: args.target,
                script: "backups.sh",
                env: {
                    DATA_DIR: args.dataDir,
                    BACKUP_KEEP: String(args.backups.keep),
                    BACKUP_RSYNC_TARGET: args.backups.rsyncTarget,
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
