// The server made ready for everything after it: cloud-init finished, security upgrades on, SSH keys
// only, the data volume mounted (once) at dataDir and grown to its size, the swap file.
import * as pulumi from "@pulumi/pulumi";
import type { DataVolume, Target } from "./host";
import { FIREWALL_RULES_PATH, FIREWALL_UNIT, hostFirewallFiles, HostFirewallSettings } from "./hostFirewall";
import { RemoteStep, ServerFile } from "./remoteStep";

/** The program's sshd settings (sorting before any other drop-in). */
export const SSHD_DROP_IN = "/etc/ssh/sshd_config.d/10-phillymesh-chat.conf";

/** What every server gets: security updates every day, without asking, and SSH by key only. */
export const BASE_FILES: readonly ServerFile[] = [
    // Debian's unattended-upgrades defaults: security updates only.
    {
        path: "/etc/apt/apt.conf.d/20auto-upgrades",
        content: 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";',
        mode: "0644",
        owner: "root:root",
    },
    // A homeserver on the open internet is probed for passwords from its first hour. sshd keeps the
    // first value it reads and reads sshd_config.d in name order: "10-" comes before the image's own
    // 50-cloud-init.conf (which may say PasswordAuthentication yes). No forwarding of any kind: the
    // server is administered, not used as a jump host.
    {
        path: SSHD_DROP_IN,
        content: [
            "# Managed by phillymesh-chat.",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "MaxAuthTries 3",
            "LoginGraceTime 30",
            "X11Forwarding no",
            "AllowAgentForwarding no",
            "AllowTcpForwarding no",
            "AllowStreamLocalForwarding no",
            "PermitTunnel no",
        ].join("\n"),
        mode: "0644",
        owner: "root:root",
    },
    // After apt upgrades a library (unattended-upgrades, daily), the services still running the old
    // code are restarted, not left so until the next reboot: needrestart's automatic mode.
    {
        path: "/etc/needrestart/conf.d/50-phillymesh-chat.conf",
        content: "# Managed by phillymesh-chat.\n$nrconf{restart} = 'a';\n$nrconf{kernelhints} = 0;",
        mode: "0644",
        owner: "root:root",
    },
    // When memory runs out, the kernel kills Synapse first (its unit) and sshd last: the admin can
    // still get in.
    { path: "/etc/systemd/system/ssh.service.d/50-phillymesh-chat.conf", content: "[Service]\nOOMScoreAdjust=-900", mode: "0644", owner: "root:root" },
];

export const JOURNALD_DROP_IN = "/etc/systemd/journald.conf.d/50-phillymesh-chat.conf";

/** journald's cap: years of logs must not fill a small disk. */
function journalFile(maxMb: number): ServerFile {
    return { path: JOURNALD_DROP_IN, content: `# Managed by phillymesh-chat.\n[Journal]\nSystemMaxUse=${maxMb}M`, mode: "0644", owner: "root:root" };
}

export interface HostBaseArgs {
    readonly target: Target;
    /** Where data lives. */
    readonly dataDir: string;
    /** The data volume; undefined: dataDir is a plain directory on the host. */
    readonly volume?: DataVolume;
    /** Swap file size in MB; 0 for none. */
    readonly swapSizeMb: number;
    /** The most disk the journal may take, in MB. */
    readonly journalMaxMb: number;
    /** The server's own firewall; undefined: none (hostFirewall false). */
    readonly firewall?: HostFirewallSettings;
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
                files: [...BASE_FILES, journalFile(args.journalMaxMb), ...(args.firewall ? hostFirewallFiles(args.firewall) : [])],
                env: {
                    DATA_DIR: args.dataDir,
                    DATA_DEVICE: args.volume?.device ?? "",
                    SWAP_MB: String(args.swapSizeMb),
                    SSHD_DROP_IN,
                    JOURNALD_DROP_IN,
                    FIREWALL_RULES: FIREWALL_RULES_PATH,
                    FIREWALL_UNIT,
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
