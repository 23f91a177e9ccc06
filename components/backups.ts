// Daily backups of everything that is data (database dump, keys, media) to the data volume, and
// optionally off the server, plus the restore command.
import * as pulumi from "@pulumi/pulumi";
import type { BackupSettings } from "./config";
import { Target } from "./host";
import { RemoteStep, ServerFile } from "./remoteStep";
import { readFile, renderTemplate } from "./templates";

/** The off-site target's pinned host key (ssh's known_hosts format). */
export const BACKUP_KNOWN_HOSTS = "/etc/phillymesh-chat/backup_known_hosts";

/** The known_hosts line for user@host:/path and its host key. */
export function knownHostsLine(rsyncTarget: string, hostKey: string): string {
    const host = rsyncTarget.slice(rsyncTarget.indexOf("@") + 1, rsyncTarget.indexOf(":"));
    return `${host} ${hostKey}`;
}

/** The passphrase the dumps and keys are encrypted with (backupPassphrase); root's, 0600. */
export const BACKUP_PASSPHRASE = "/etc/phillymesh-chat/backup.passphrase";

/** The line of the backup program after which its settings are in place. */
const BACKUP_SETTINGS_LINE = '[ -f "$CONF" ] && . "$CONF"';

/**
 * The backup program. With database managed (`pgServiceFile`), the same program with libpq's service
 * for the cluster in its environment, so pg_dump dumps the database Synapse uses (its address, CA,
 * verify-full and passfile from the service file), not the local one it left. Only this program gets
 * it: the restore, which reads the same settings file, must never reach the cluster.
 */
export function backupProgram(pgServiceFile?: string): string {
    const program = readFile("server/sbin/phillymesh-chat-backup.sh");
    if (!pgServiceFile) return program;
    if (!program.includes(`\n${BACKUP_SETTINGS_LINE}\n`)) throw new Error(`internal: phillymesh-chat-backup.sh no longer has the line ${BACKUP_SETTINGS_LINE}`);
    return program.replace(
        `\n${BACKUP_SETTINGS_LINE}\n`,
        `\n${BACKUP_SETTINGS_LINE}\n# database managed (backups.ts): the dump is of the cluster.\nexport PGSERVICEFILE=${pgServiceFile} PGSERVICE=synapse\n`,
    );
}

/** The backup and restore programs, the settings they read, and the daily timer. */
export function backupFiles(dataDir: string, b: BackupSettings, pgServiceFile?: string): ServerFile[] {
    const root = (path: string, content: string, mode: "0600" | "0644" | "0755"): ServerFile => ({ path, content, mode, owner: "root:root" });
    return [
        root(
            "/etc/phillymesh-chat/backup.env",
            [`DATA_DIR=${dataDir}`, `BACKUP_KEEP=${b.keep}`, `BACKUP_RSYNC_TARGET=${b.rsyncTarget}`, `BACKUP_ENCRYPT=${b.passphrase ? 1 : 0}`].join("\n"),
            "0600",
        ),
        ...(b.passphrase ? [{ path: BACKUP_PASSPHRASE, content: b.passphrase, mode: "0600", owner: "root:root" } as ServerFile] : []),
        // The off-site target's host key, pinned: ssh checks the target against this file alone.
        ...(b.rsyncTarget ? [root(BACKUP_KNOWN_HOSTS, knownHostsLine(b.rsyncTarget, b.rsyncHostKey), "0644")] : []),
        root("/usr/local/sbin/phillymesh-chat-backup", backupProgram(pgServiceFile), "0755"),
        // database managed: the local restore would restore into the PostgreSQL Synapse left.
        root("/usr/local/sbin/phillymesh-chat-restore", readFile(`server/sbin/phillymesh-chat-restore${pgServiceFile ? "-managed" : ""}.sh`), "0755"),
        root("/etc/systemd/system/phillymesh-chat-backup.service", renderTemplate("server/systemd/backup.service", { data_dir: dataDir }), "0644"),
        root("/etc/systemd/system/phillymesh-chat-backup.timer", readFile("server/systemd/backup.timer"), "0644"),
    ];
}

export interface BackupsArgs {
    readonly target: Target;
    readonly dataDir: string;
    readonly backups: BackupSettings;
    /** database managed: libpq's service file for the cluster, which the dump then reads. Default none (the local database). */
    readonly pgServiceFile?: string;
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
                },
                files: backupFiles(args.dataDir, args.backups, args.pgServiceFile),
                handlesSecrets: args.backups.passphrase !== undefined,
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.registerOutputs({});
    }
}
