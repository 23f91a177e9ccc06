// Every systemd service the program installs, as rendered, scored by the real `systemd-analyze
// security --offline` (this machine's systemd; drill 15a scores them again on a Debian 13 server):
// none may expose more than 3.0, the bar of issue 15.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { backupFiles } from "../components/backups";
import { hostFirewallFiles } from "../components/hostFirewall";
import { ServerFile } from "../components/remoteStep";
import { refreshFiles, synapseUnit } from "../components/synapse";
import { statusCheckFiles } from "../components/statusCheck";
import { housekeepingFiles } from "../components/housekeeping";
import { DEFAULT_HOUSEKEEPING } from "./harness";

const MAX_EXPOSURE = 3.0;

const units: ServerFile[] = [
    {
        path: "/etc/systemd/system/matrix-synapse.service",
        content: synapseUnit("/mnt/matrix_data", { jemalloc: true }),
        mode: "0644",
        owner: "root:root",
    } as ServerFile,
    ...backupFiles("/mnt/matrix_data", { keep: 7, rsyncTarget: "", rsyncHostKey: "" }),
    ...statusCheckFiles("/mnt/matrix_data", 85),
    ...hostFirewallFiles({ sshPort: 22, sshAllowedCidrs: ["0.0.0.0/0", "::/0"] }),
    ...refreshFiles("https://pypi.org/simple/", "https://pypi.org/pypi"),
    ...housekeepingFiles("/mnt/matrix_data", DEFAULT_HOUSEKEEPING),
].filter((f) => f.path.startsWith("/etc/systemd/system/") && f.path.endsWith(".service"));

/** The housekeeping unit with database managed: the same file name, with the network to the cluster and a credential. */
const managedHousekeeping = housekeepingFiles("/mnt/matrix_data", DEFAULT_HOUSEKEEPING, "managed").filter((f) => f.path.endsWith(".service"));

describe("the services' sandboxes (systemd-analyze security --offline)", () => {
    test("every service the program installs is here", () => {
        expect(units.map((u) => path.basename(u.path)).sort()).toEqual([
            "matrix-synapse.service",
            "phillymesh-chat-advisory-audit.service",
            "phillymesh-chat-backup.service",
            "phillymesh-chat-db-housekeeping.service",
            "phillymesh-chat-firewall.service",
            "phillymesh-chat-status.service",
            "phillymesh-chat-synapse-refresh.service",
        ]);
    });

    test.each([
        ...units.map((u) => [path.basename(u.path), u.content as string]),
        ...managedHousekeeping.map((u) => [`${path.basename(u.path)} (database managed)`, u.content as string]),
    ])(`%s exposes at most ${MAX_EXPOSURE}`, (label, content) => {
        const name = label.replace(/ \(.*\)$/, "");
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "units-"));
        try {
            const file = path.join(dir, name);
            fs.writeFileSync(file, content + "\n");
            const r = spawnSync("systemd-analyze", ["security", "--offline=true", "--no-pager", file], { encoding: "utf8" });
            const score = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout)?.[1];
            expect({ name, score, stderr: r.stderr.trim() }).toEqual({ name, score: expect.stringMatching(/^\d+\.\d$/), stderr: "" });
            expect(Number(score)).toBeLessThanOrEqual(MAX_EXPOSURE);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
