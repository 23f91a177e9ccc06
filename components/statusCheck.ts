// The daily status check (phillymesh-chat-status): the certificate's expiry, the age of the newest
// backup, the disk's use and Synapse's health, logged to the journal, recorded in STATUS_FILE, and a
// failed unit when one is wrong. Installed by the certificates step (webServer.ts), where the
// certificate expiry check it replaces was.
import { dataPaths, PORTS, SERVER_PATHS } from "./layout";
import { ServerFile } from "./remoteStep";
import { readFile, renderTemplate } from "./templates";

/** Where the check records its last results (JSON: checkedAt, ok, checks[{name, ok, detail}]); root's to read. */
export const STATUS_FILE = "/var/lib/phillymesh-chat/status.json";

/** The checks, by the name the status file and the journal give them. */
export const STATUS_CHECKS = ["certificate", "backup", "disk", "synapse"] as const;

/** What the check script is rendered with: the paths it looks at, Synapse's port, the disk threshold. */
export interface StatusScriptValues {
    readonly certificateFile: string;
    readonly dataDir: string;
    readonly backupDir: string;
    readonly synapsePort: number;
    /** A file system at this use (percent) or above fails the disk check. */
    readonly diskAlertPercent: number;
    /** Where systemd's control groups are (worker mode's checks read the units' there). Default /sys/fs/cgroup. */
    readonly cgroupRoot?: string;
}

/** The check program, rendered (tests render it with their own paths and run it). */
export function statusScript(v: StatusScriptValues): string {
    return renderTemplate("server/sbin/phillymesh-chat-status.sh", {
        certificate_file: v.certificateFile,
        data_dir: v.dataDir,
        backup_dir: v.backupDir,
        synapse_port: v.synapsePort,
        disk_alert_percent: v.diskAlertPercent,
        cgroup_root: v.cgroupRoot ?? "/sys/fs/cgroup",
    });
}

/** The check program, its service and its daily timer. */
export function statusCheckFiles(dataDir: string, diskAlertPercent: number): ServerFile[] {
    const root = (path: string, content: string, mode: "0644" | "0755"): ServerFile => ({ path, content, mode, owner: "root:root" });
    return [
        root(
            "/usr/local/sbin/phillymesh-chat-status",
            statusScript({
                certificateFile: `${SERVER_PATHS.certificateDir}/fullchain.pem`,
                dataDir,
                backupDir: dataPaths(dataDir).backups,
                synapsePort: PORTS.synapse,
                diskAlertPercent,
            }),
            "0755",
        ),
        root(
            "/etc/systemd/system/phillymesh-chat-status.service",
            renderTemplate("server/systemd/status.service", { certificate_dir: SERVER_PATHS.certificateDir, data_dir: dataDir }),
            "0644",
        ),
        root("/etc/systemd/system/phillymesh-chat-status.timer", readFile("server/systemd/status.timer"), "0644"),
    ];
}
