// Proof of the DigitalOcean and Cloudflare stand-ins through the real engine (the Automation API, as
// deploy.ts runs the program): a small inline program of its own (project phillymesh-cloud-selftest)
// declares key, volume, droplet, attachment, reserved IP + assignment, firewall and DNS records, and
// this script changes it step by step, checking from outside what the engine did.
//
//   PATH=$PWD/node_modules/.bin:$PATH ts-node --transpile-only testbed/deploy/cloudSelftest.ts [--keep]
//
// Needs the testbed's host services (testbed/host.sh up) and template. Its guests and addresses stay
// in 10.250.0.100-10.250.0.140 (droplets .100-.119, reserved IPs .130-.135, a scanning namespace at
// .125); its zone is selftest.test. --keep leaves everything up at the end (else: destroy, and check
// nothing is left). Exit 0 when every check passed.
import * as childProcess from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { EngineEvent, LocalWorkspace, PulumiCommand, Stack } from "@pulumi/pulumi/automation";
import { cliEnv, engineDir } from "./driver/engine";
import { program, VOLUME, ZONE, type Cfg } from "./selftestProgram";

const REPO = path.resolve(__dirname, "..", "..");
const B = process.env.TESTBED_DIR || "/var/tmp/phillymesh-testbed";
const STATE_DIR = path.resolve(process.env.PHILLYMESH_TESTBED_STATE || path.join(B, "state"));
const MOUNT = "/mnt/selftest_data";
const SCAN_NS = "do-scan";
const SCAN_IP = "10.250.0.125";
// The stand-in's pools for this run (the env reaches the provider through the CLI).
process.env.TESTBED_DO_DROPLET_IPS = "100-119";
process.env.TESTBED_DO_RESERVED_IPS = "130-135";

let failures = 0;
const T0 = Date.now();
const log = (m: string) => process.stdout.write(`[selftest +${((Date.now() - T0) / 1000).toFixed(1)}s] ${m}\n`);
function check(ok: boolean, what: string, detail = ""): void {
    if (!ok) failures++;
    log(`${ok ? "PASS" : "FAIL"} ${what}${detail ? ` (${detail})` : ""}`);
}

function sh(cmd: string, args: string[], input?: string): { code: number; out: string; err: string } {
    const r = childProcess.spawnSync(cmd, args, { encoding: "utf8", input, timeout: 120000 });
    return { code: r.status ?? -1, out: (r.stdout ?? "").trim(), err: (r.stderr ?? "").trim() };
}

let keyFile = "";
/** ssh to the guest with the self-test's key (or another key). */
function ssh(host: string, command: string, key = keyFile): { code: number; out: string; err: string } {
    return sh("ssh", [
        "-F",
        "/dev/null",
        "-i",
        key,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        `root@${host}`,
        command,
    ]);
}

/** TCP connect from the host (or from the scanning namespace): open | refused | filtered. */
function probe(ip: string, port: number, ns?: string): string {
    const script = `exec 3<>/dev/tcp/${ip}/${port}`;
    const argv = ns ? ["ip", ["netns", "exec", ns, "timeout", "2", "bash", "-c", script]] : ["timeout", ["2", "bash", "-c", script]];
    const r = sh(argv[0] as string, argv[1] as string[]);
    if (r.code === 0) return "open";
    if (r.code === 124) return "filtered";
    return "refused";
}

function scan(ip: string, ports: number[], ns?: string): Record<string, string> {
    return Object.fromEntries(ports.map((p) => [p, probe(ip, p, ns)]));
}

interface StepEvent {
    t: number;
    op: string;
    name: string;
    end?: number;
    failed?: boolean;
}

/** One `up` (or preview) of the program with cfg: its outcome, wall time and the resource steps in order. */
async function run(stack: Stack, cfg: Cfg, title: string, mode: "up" | "preview" | "destroy" = "up") {
    const t0 = Date.now();
    const steps: StepEvent[] = [];
    const onEvent = (e: EngineEvent) => {
        const meta = e.resourcePreEvent?.metadata ?? e.resOutputsEvent?.metadata ?? e.resOpFailedEvent?.metadata;
        if (!meta || meta.type.startsWith("pulumi:")) return;
        const name = meta.urn.split("::").pop()!;
        if (e.resourcePreEvent && meta.op !== "same" && meta.op !== "read") steps.push({ t: Date.now() - t0, op: meta.op, name });
        const open = [...steps].reverse().find((s) => s.name === name && s.op === meta.op && s.end === undefined);
        if (open && e.resOutputsEvent) open.end = Date.now() - t0;
        if (open && e.resOpFailedEvent) {
            open.failed = true;
            open.end = Date.now() - t0;
        }
    };
    stack.workspace.program = program(cfg);
    let error = "";
    let outputs: Record<string, unknown> = {};
    try {
        if (mode === "up") {
            const r = await stack.up({ onEvent, color: "never" });
            outputs = Object.fromEntries(Object.entries(r.outputs).map(([k, v]) => [k, v.value]));
        } else if (mode === "preview") await stack.preview({ onEvent, color: "never" });
        else await stack.destroy({ onEvent, color: "never" });
    } catch (e) {
        const m = e instanceof Error ? e.message : String(e);
        const lines = m.split("\n").filter((l) => /error|refusing|422|409|81058|expanded/i.test(l) && !/^\s*at /.test(l));
        error = [...new Set(lines.map((l) => l.trim()))].slice(0, 6).join("\n    ") || m.slice(0, 800);
    }
    const wall = (Date.now() - t0) / 1000;
    log(`${title}: ${mode} ${error ? "FAILED" : "ok"} in ${wall.toFixed(1)} s`);
    for (const s of steps)
        log(
            `    ${(s.t / 1000).toFixed(1).padStart(6)}s ${s.op.padEnd(16)} ${s.name.padEnd(16)}${s.end !== undefined ? ` ${((s.end - s.t) / 1000).toFixed(1)} s` : ""}${s.failed ? " FAILED" : ""}`,
        );
    if (error) log(`    error: ${error}`);
    return { error, wall, steps, outputs };
}

function order(steps: StepEvent[], a: string, b: string): boolean {
    const ia = steps.findIndex((s) => `${s.op} ${s.name}` === a);
    const ib = steps.findIndex((s) => `${s.op} ${s.name}` === b);
    return ia >= 0 && ib >= 0 && ia < ib && (steps[ia].end ?? Infinity) <= steps[ib].t;
}

interface AccountView {
    droplets: unknown[];
    volumes: unknown[];
    reservedIps: unknown[];
    firewalls: unknown[];
    sshKeys: unknown[];
}

function account(): AccountView {
    try {
        return JSON.parse(fs.readFileSync(path.join(B, "cloud", "do-account.json"), "utf8"));
    } catch {
        return { droplets: [], volumes: [], reservedIps: [], firewalls: [], sshKeys: [] };
    }
}

async function main(): Promise<number> {
    const keep = process.argv.includes("--keep");
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cloud-selftest-"));
    keyFile = path.join(tmp, "id");
    sh("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "cloud-selftest", "-f", keyFile]);
    const publicKey = fs.readFileSync(`${keyFile}.pub`, "utf8").trim();
    const zoneId = sh("bash", [path.join(REPO, "testbed", "cloud", "cf-zone.sh"), "ensure", ZONE]).out;
    if (!/^[0-9a-f]{32}$/.test(zoneId)) throw new Error(`cf-zone.sh ensure ${ZONE} failed`);

    const engine = engineDir();
    const env = cliEnv(engine);
    const workDir = path.join(STATE_DIR, "work", "cloud-selftest");
    fs.mkdirSync(workDir, { recursive: true });
    const pulumiCommand = await PulumiCommand.get({ root: path.dirname(engine), skipVersionCheck: true });
    const cfg: Cfg = {
        publicKey,
        zoneId,
        image: "debian-13-x64",
        volumeSize: 1,
        attachDeleteBeforeReplace: true,
        inboundPorts: [22, 80, 443, 8448],
        duplicateRecord: false,
    };
    const stack = await LocalWorkspace.createOrSelectStack(
        { stackName: "selftest", projectName: "phillymesh-cloud-selftest", program: program(cfg) },
        { workDir, envVars: env, pulumiCommand, projectSettings: { name: "phillymesh-cloud-selftest", runtime: "nodejs" } },
    );
    // A run that died half-way left resources: start from nothing.
    await run(stack, cfg, "0. clean start", "destroy");

    // 1. Everything from nothing.
    const r1 = await run(stack, cfg, "1. create key, volume, droplet, attachment, reserved IP, assignment, firewall, DNS");
    check(!r1.error, "1. up succeeds", r1.error);
    const rip = String(r1.outputs.reservedIp);
    const dip = String(r1.outputs.dropletIp);
    const d1 = String(r1.outputs.dropletId);
    const auth = ssh(rip, "cat /root/.ssh/authorized_keys; ls /home/debian/.ssh/authorized_keys 2>&1 | head -1");
    check(
        auth.code === 0 && auth.out.split("\n")[0] === publicKey,
        "1. ssh root@reserved IP with the SshKey works; authorized_keys is exactly that key",
        auth.out.split("\n")[0],
    );
    check(ssh(rip, "true", path.join(B, "id_ed25519")).code !== 0, "1. the testbed's own key is not let in");
    const dev = ssh(
        rip,
        `readlink -f /dev/disk/by-id/scsi-0DO_Volume_${VOLUME}; findmnt -n -o SOURCE,FSTYPE,OPTIONS ${MOUNT}; systemctl is-enabled mnt-selftest_data.mount; echo written-on-${d1} > ${MOUNT}/proof`,
    );
    check(
        dev.code === 0 && /^\/dev\/sd[a-z]\n\/dev\/sd[a-z] +ext4 +rw,noatime,discard/.test(dev.out) && dev.out.endsWith("enabled"),
        `1. the volume is /dev/disk/by-id/scsi-0DO_Volume_${VOLUME}, auto-mounted at ${MOUNT} by an enabled mount unit`,
        dev.out.replace(/\n/g, " | "),
    );
    // Something listening on allowed and on forbidden ports, then scan from the host and from another namespace.
    const ports = [22, 80, 443, 8448, 8080, 5432];
    ssh(
        rip,
        ports
            .filter((p) => p !== 22)
            .map((p) => `systemd-run -q --unit=listen-${p} systemd-socket-activate -l ${p} --inetd -a /bin/cat`)
            .join("; "),
    );
    sh("bash", [
        "-c",
        `ip link del vh-${SCAN_NS} 2>/dev/null; ip netns del ${SCAN_NS} 2>/dev/null; ip netns add ${SCAN_NS} && ip link add vh-${SCAN_NS} type veth peer name host0 netns ${SCAN_NS} && ip link set vh-${SCAN_NS} master brtest up && ip -n ${SCAN_NS} addr add ${SCAN_IP}/24 dev host0 && ip -n ${SCAN_NS} link set host0 up && ip -n ${SCAN_NS} link set lo up`,
    ]);
    const want = { 22: "open", 80: "open", 443: "open", 8448: "open", 8080: "filtered", 5432: "filtered" };
    for (const [who, ip, ns] of [
        ["host", rip, undefined],
        ["host", dip, undefined],
        [`namespace ${SCAN_IP}`, rip, SCAN_NS],
    ] as [string, string, string | undefined][]) {
        const got = scan(ip, ports, ns);
        check(
            JSON.stringify(got) === JSON.stringify(want),
            `1. scan of ${ip} from the ${who}: only 22/80/443/8448 open, the rest dropped`,
            JSON.stringify(got),
        );
    }
    check(sh("ping", ["-c", "1", "-W", "2", rip]).code === 0, "1. ICMP (ping) is allowed");
    check(
        ssh(rip, "nft list ruleset 2>/dev/null | grep -c phillymesh_do_fw || true").out !== "1" &&
            sh("nft", ["list", "table", "inet", "phillymesh_do_fw"]).code === 0,
        "1. the rules live on the host (nftables table inet phillymesh_do_fw), not in the guest",
    );
    const dig = (name: string, type: string) => sh("dig", ["+short", "@10.250.0.1", name, type]).out;
    check(
        dig(`matrix.${ZONE}`, "A") === rip &&
            dig(`_matrix-fed._tcp.${ZONE}`, "SRV") === `10 5 8448 matrix.${ZONE}.` &&
            dig(ZONE, "CAA") === '0 issue "letsencrypt.org"',
        "1. the DNS records are served by the testbed DNS (A, SRV, CAA)",
    );

    // 1b. A firewall edit is an update in place that takes effect.
    cfg.inboundPorts = [22, 80, 443];
    const r1b = await run(stack, cfg, "1b. firewall without 8448");
    check(
        !r1b.error && r1b.steps.map((s) => `${s.op} ${s.name}`).join(",") === "update fw",
        "1b. only the firewall is updated, in place",
        r1b.steps.map((s) => `${s.op} ${s.name}`).join(","),
    );
    check(Number(r1b.outputs.accountKeys) === 1, "1b. getSshKeys (the invoke, at program run) lists the account's key", `${r1b.outputs.accountKeys} keys`);
    check(probe(rip, 8448) === "filtered" && probe(rip, 443) === "open", "1b. 8448 is now dropped, 443 still open");
    cfg.inboundPorts = [22, 80, 443, 8448];

    // 1c. An identical record fails as Cloudflare does.
    cfg.duplicateRecord = true;
    const r1c = await run(stack, cfg, "1c. a second, identical A record");
    check(
        /81058/.test(r1c.error) && /An identical record already exists/.test(r1c.error),
        "1c. the engine reports Cloudflare's 81058",
        r1c.error.split("\n")[0],
    );
    cfg.duplicateRecord = false;

    // 2. A new image with the volume still mounted in the droplet: the detach is refused, loudly.
    cfg.image = "debian-12-x64";
    const r2 = await run(stack, cfg, "2. image change while the volume is mounted (deleteBeforeReplace on the attachment)");
    check(
        /refusing to detach volume selftest-data/.test(r2.error),
        "2. the attachment's delete refuses while the filesystem is mounted in the old droplet",
        r2.error.split("\n")[0],
    );
    check(
        order(r2.steps, "create-replacement droplet", "delete-replaced attach"),
        "2. the engine created the new droplet, then tried to detach (the failed step)",
    );

    // 3. Unmount (what the program's release step does, over the OLD droplet's own address: the
    //    reserved IP may already be on the new one), then the same up goes through.
    const um = ssh(dip, `systemctl stop mnt-selftest_data.mount; umount ${MOUNT} 2>/dev/null; findmnt ${MOUNT} || echo unmounted`);
    check(um.out.endsWith("unmounted"), "3. unmounted over ssh on the old droplet (command-less, before the up)", um.out);
    const r3 = await run(stack, cfg, "3. the replacement, volume unmounted");
    check(!r3.error, "3. up succeeds", r3.error);
    check(
        order(r3.steps, "delete-replaced attach", "create-replacement attach"),
        "3. deleteBeforeReplace honoured: old attachment deleted (detach) before the new one is created (attach)",
    );
    // The assignment's replacement runs beside the attachment's: in step 2 or 3, depending on timing.
    const both = [...r2.steps, ...r3.steps.map((x) => ({ ...x, t: x.t + 1e6, end: x.end === undefined ? undefined : x.end + 1e6 }))];
    check(
        order(both, "delete-replaced ip-assign", "create-replacement ip-assign"),
        "2/3. the reserved IP was unassigned from the old droplet before it was assigned to the new one (deleteBeforeReplace)",
    );
    check(
        order(r3.steps, "create-replacement attach", "delete droplet") || order(r3.steps, "create-replacement attach", "delete-replaced droplet"),
        "3. the old droplet is deleted last",
    );
    const d2 = String(r3.outputs.dropletId);
    check(d2 !== d1 && String(r3.outputs.reservedIp) === rip, "3. a new droplet id, the same reserved IP", `${d1} -> ${d2}`);
    const after = ssh(
        rip,
        `readlink -f /dev/disk/by-id/scsi-0DO_Volume_${VOLUME}; findmnt -n ${MOUNT} >/dev/null && echo mounted || echo not-mounted; mkdir -p /mnt/check && mount /dev/disk/by-id/scsi-0DO_Volume_${VOLUME} /mnt/check && cat /mnt/check/proof; umount /mnt/check`,
    );
    check(
        after.code === 0 && after.out.includes("not-mounted") && after.out.endsWith(`written-on-${d1}`),
        "3. on the new droplet the volume is there, NOT auto-mounted (only a new volume's first attach is), and holds the data",
        after.out.replace(/\n/g, " | "),
    );
    check(account().droplets.length === 1 && !fs.existsSync(path.join(B, `run-do-${d1}`)), `3. the old droplet's guest do-${d1} is gone`);

    // 4. Without deleteBeforeReplace the new attachment is created first: DigitalOcean's 422, not retried.
    cfg.attachDeleteBeforeReplace = false;
    cfg.image = "debian-13-x64";
    const r4 = await run(stack, cfg, "4. image change WITHOUT deleteBeforeReplace on the attachment");
    const failed = r4.steps.find((s) => s.failed);
    check(
        /422 .*This volume is already attached/.test(r4.error),
        "4. attaching to the new droplet fails with 422 while the volume is on the old one",
        r4.error.split("\n")[0],
    );
    check(
        !!failed && failed.name === "attach" && failed.end! - failed.t < 3000,
        "4. ... at once (no retry)",
        failed ? `${failed.op} ${failed.name} ${((failed.end! - failed.t) / 1000).toFixed(1)} s` : "no failed step",
    );

    // 5. Back to deleteBeforeReplace: the engine finishes the replacement.
    cfg.attachDeleteBeforeReplace = true;
    const r5 = await run(stack, cfg, "5. deleteBeforeReplace again");
    check(!r5.error && account().droplets.length === 1, "5. up succeeds, one droplet left", r5.error);

    // 6. Grow the volume: the device grows, the filesystem does not.
    cfg.volumeSize = 2;
    const r6 = await run(stack, cfg, "6. volume 1 -> 2 GB");
    check(
        !r6.error && r6.steps.map((s) => `${s.op} ${s.name}`).join(",") === "update data",
        "6. the volume is updated in place",
        r6.steps.map((s) => `${s.op} ${s.name}`).join(","),
    );
    const grow = ssh(
        rip,
        `D=/dev/disk/by-id/scsi-0DO_Volume_${VOLUME}; mkdir -p /mnt/check; blockdev --getsize64 $D; mount $D /mnt/check && df -B1M --output=size /mnt/check | tail -1; m=$(resize2fs $D 2>&1 | grep -i -E "denied|is now|nothing to do" | head -1); echo "\${m:-(no message)}"; umount /mnt/check; e2fsck -fy $D >/dev/null 2>&1; resize2fs $D >/dev/null 2>&1; mount $D /mnt/check && df -B1M --output=size /mnt/check | tail -1; cat /mnt/check/proof; umount /mnt/check`,
    );
    const g = grow.out.split("\n").map((l) => l.trim());
    check(g[0] === String(2 * 1024 ** 3) && Number(g[1]) < 1100, "6. the block device is 2 GiB, the filesystem still ~1 GiB", `${g[0]} bytes, fs ${g[1]} MB`);
    log(`    online resize2fs in the guest: ${g[2]}`);
    check(Number(g[3]) > 1900 && g[4] === `written-on-${d1}`, "6. resize2fs (offline here) grows it to ~2 GiB, data intact", `fs ${g[3]} MB`);
    const p6 = await run(stack, { ...cfg, volumeSize: 1 }, "6a. shrink 2 -> 1 GB", "preview");
    check(
        /can only be expanded and not shrunk/.test(p6.error),
        "6a. a smaller size fails at preview, as the provider's CustomizeDiff does",
        p6.error.split("\n")[0],
    );

    const scanNs = () => sh("bash", ["-c", `ip link del vh-${SCAN_NS} 2>/dev/null; ip netns del ${SCAN_NS} 2>/dev/null; true`]);
    if (keep) {
        scanNs();
        log(`--keep: left up (reserved IP ${rip}, key ${keyFile}); destroy with: ts-node testbed/deploy/cloudSelftest.ts (it starts with a destroy)`);
    } else {
        // 7. Everything goes.
        const r7 = await run(stack, cfg, "7. destroy", "destroy");
        scanNs();
        const a = account();
        const leftovers = [a.droplets.length, a.volumes.length, a.reservedIps.length, a.firewalls.length, a.sshKeys.length];
        check(!r7.error && leftovers.every((n) => n === 0), "7. destroy leaves an empty account", JSON.stringify(leftovers));
        check(!fs.readdirSync(B).some((d) => d.startsWith("run-do-")), "7. no do-* guest is left");
        check(sh("losetup", ["-a"]).out.includes("/cloud/volumes/") === false, "7. no loop device over a stand-in volume");
        check(sh("nft", ["list", "table", "inet", "phillymesh_do_fw"]).code !== 0, "7. the nftables table is gone");
        check(dig(`matrix.${ZONE}`, "A") === "", "7. the zone's records are gone from the testbed DNS");
        fs.rmSync(tmp, { recursive: true, force: true });
    }
    log(`${failures === 0 ? "ALL PASSED" : `${failures} FAILED`} in ${((Date.now() - T0) / 1000).toFixed(1)} s`);
    return failures === 0 ? 0 : 1;
}

main().then(
    (code) => process.exit(code),
    (e: unknown) => {
        log(`ERROR: ${e instanceof Error ? e.stack : String(e)}`);
        process.exit(2);
    },
);
